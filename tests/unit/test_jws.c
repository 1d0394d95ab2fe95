/* JOSE: JWK, RFC 7638 thumbprint, key authorization, flattened JWS, EAB.
 * Every signature is checked with plain OpenSSL, not with the code under
 * test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include "atls_b64.h"
#include "atls_crypto.h"
#include "atls_jws.h"

/* RFC 7638 §3.1 example key (public part) and its thumbprint. */
static const char rfc7638_n[] =
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFx"
    "uhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_R"
    "N5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL"
    "5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBn"
    "iIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
static const char rfc7638_e[] = "AQAB";
static const char rfc7638_tp[] = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

static BIGNUM *
b64_bn(const char *s)
{
    unsigned char *raw;
    size_t         len;
    BIGNUM        *bn;

    raw = atls_b64url_decode(s, strlen(s), &len);
    assert_non_null(raw);
    bn = BN_bin2bn(raw, (int) len, NULL);
    assert_non_null(bn);
    free(raw);
    return bn;
}

static EVP_PKEY *
rfc7638_key(void)
{
    OSSL_PARAM_BLD *bld;
    OSSL_PARAM     *params;
    EVP_PKEY_CTX   *ctx;
    EVP_PKEY       *key = NULL;
    BIGNUM         *n = b64_bn(rfc7638_n), *e = b64_bn(rfc7638_e);

    bld = OSSL_PARAM_BLD_new();
    assert_non_null(bld);
    assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e), 1);
    params = OSSL_PARAM_BLD_to_param(bld);
    assert_non_null(params);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return key;
}

static void
test_rfc7638_thumbprint(void **state)
{
    EVP_PKEY *key = rfc7638_key();
    char     *tp, *jwk, expect[1024];

    assert_string_equal(atls_jws_alg(key), "RS256");
    jwk = atls_jwk_json(key);
    assert_non_null(jwk);
    snprintf(expect, sizeof(expect), "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}",
             rfc7638_e, rfc7638_n);
    assert_string_equal(jwk, expect);
    tp = atls_jwk_thumbprint(key);
    assert_non_null(tp);
    assert_string_equal(tp, rfc7638_tp);
    free(tp);
    free(jwk);
    EVP_PKEY_free(key);
}

static void
test_key_authorization_and_dns01(void **state)
{
    EVP_PKEY     *key = rfc7638_key();
    const char   *token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
    char          expect[256], *ka, *txt, *want;
    unsigned char md[32];
    unsigned int  mdlen = 0;

    ka = atls_key_authorization(token, key);
    assert_non_null(ka);
    snprintf(expect, sizeof(expect), "%s.%s", token, rfc7638_tp);
    assert_string_equal(ka, expect);

    txt = atls_dns01_txt_value(ka);
    assert_non_null(txt);
    assert_int_equal(EVP_Digest(ka, strlen(ka), md, &mdlen, EVP_sha256(), NULL), 1);
    want = atls_b64url_encode(md, mdlen);
    assert_string_equal(txt, want);
    assert_int_equal(strlen(txt), 43);
    /* a different key authorization gives a different value */
    free(txt);
    txt = atls_dns01_txt_value("x.y");
    assert_string_not_equal(txt, want);

    assert_null(atls_key_authorization(NULL, key));
    assert_null(atls_key_authorization(token, NULL));
    free(want);
    free(txt);
    free(ka);
    EVP_PKEY_free(key);
}

/* The EC JWK must carry the public point's coordinates left-padded to the
 * field size, with members in lexicographic order and no whitespace. */
static void
check_ec_jwk(EVP_PKEY *key, size_t size, const char *crv)
{
    unsigned char pub[1 + 2 * 48];
    size_t        publen = 0;
    char         *x, *y, *jwk, expect[512];

    assert_int_equal(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY,
                                                     pub, sizeof(pub), &publen), 1);
    if (publen != 1 + 2 * size) {
        /* stored compressed: ask for the uncompressed form */
        assert_int_equal(EVP_PKEY_set_utf8_string_param(key,
                             OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                             "uncompressed"), 1);
        assert_int_equal(EVP_PKEY_get_octet_string_param(key,
                             OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &publen), 1);
    }
    assert_int_equal(publen, 1 + 2 * size);
    assert_int_equal(pub[0], 0x04);
    x = atls_b64url_encode(pub + 1, size);
    y = atls_b64url_encode(pub + 1 + size, size);
    snprintf(expect, sizeof(expect),
             "{\"crv\":\"%s\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", crv, x, y);
    jwk = atls_jwk_json(key);
    assert_non_null(jwk);
    assert_string_equal(jwk, expect);
    free(jwk);
    free(x);
    free(y);
}

static void
test_ec_jwk_padding(void **state)
{
    EVP_PKEY     *key = NULL;
    unsigned char pub[65];
    size_t        publen;
    int           i, found = 0;

    /* About 1 in 128 P-256 keys has a coordinate with a leading zero byte,
     * which a minimal big-endian encoding would drop. */
    for (i = 0; i < 20000 && !found; i++) {
        key = atls_key_generate(ATLS_KEY_EC256);
        assert_non_null(key);
        assert_int_equal(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY,
                                                         pub, sizeof(pub), &publen), 1);
        if (publen == 65 && (pub[1] == 0 || pub[33] == 0)) {
            found = 1;
        } else {
            EVP_PKEY_free(key);
        }
    }
    assert_true(found);
    check_ec_jwk(key, 32, "P-256");
    EVP_PKEY_free(key);

    key = atls_key_generate(ATLS_KEY_EC384);
    assert_string_equal(atls_jws_alg(key), "ES384");
    check_ec_jwk(key, 48, "P-384");
    EVP_PKEY_free(key);
}

/* Parses a flattened JWS and returns its decoded protected header; *input
 * gets "protected.payload", *sig the decoded signature, *payload the
 * decoded payload. */
static json_t *
jws_open(const char *text, char **input, unsigned char **sig, size_t *siglen,
         char **payload)
{
    json_t        *jws, *hdr;
    const char    *p64, *y64, *s64;
    unsigned char *raw;
    size_t         len;
    json_error_t   jerr;

    jws = json_loads(text, 0, &jerr);
    assert_non_null(jws);
    assert_int_equal(json_object_size(jws), 3);
    p64 = json_string_value(json_object_get(jws, "protected"));
    y64 = json_string_value(json_object_get(jws, "payload"));
    s64 = json_string_value(json_object_get(jws, "signature"));
    assert_non_null(p64);
    assert_non_null(y64);
    assert_non_null(s64);

    raw = atls_b64url_decode(p64, strlen(p64), &len);
    assert_non_null(raw);
    hdr = json_loadb((const char *) raw, len, 0, &jerr);
    assert_non_null(hdr);
    free(raw);

    *payload = (char *) atls_b64url_decode(y64, strlen(y64), &len);
    assert_non_null(*payload);
    *sig = atls_b64url_decode(s64, strlen(s64), siglen);
    assert_non_null(*sig);
    len = strlen(p64) + strlen(y64) + 2;
    *input = malloc(len);
    snprintf(*input, len, "%s.%s", p64, y64);
    json_decref(jws);
    return hdr;
}

/* Verifies a JWS signature with OpenSSL; ECDSA R||S goes back to DER. */
static int
verify_sig(EVP_PKEY *key, const char *input, const unsigned char *sig, size_t siglen)
{
    const EVP_MD  *md = EVP_sha256();
    unsigned char *der = NULL;
    EVP_MD_CTX    *ctx;
    ECDSA_SIG     *es;
    int            derlen, ok;

    if (EVP_PKEY_is_a(key, "EC")) {
        size_t half = siglen / 2;

        if (atls_key_type_of(key) == ATLS_KEY_EC384) {
            md = EVP_sha384();
            assert_int_equal(siglen, 96);
        } else {
            assert_int_equal(siglen, 64);
        }
        es = ECDSA_SIG_new();
        assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(sig, (int) half, NULL),
                                        BN_bin2bn(sig + half, (int) half, NULL)), 1);
        derlen = i2d_ECDSA_SIG(es, &der);
        assert_true(derlen > 0);
        ECDSA_SIG_free(es);
        sig = der;
        siglen = (size_t) derlen;
    }
    ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, md, NULL, key), 1);
    ok = EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *) input,
                          strlen(input));
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    return ok == 1;
}

static void
check_sign(atls_key_type_t t, const char *alg)
{
    EVP_PKEY      *key = atls_key_generate(t), *other;
    char          *jws, *input, *payload, *jwk_expect, *jwk_got;
    unsigned char *sig;
    size_t         siglen;
    json_t        *hdr;
    int            round, rounds;

    assert_non_null(key);
    assert_string_equal(atls_jws_alg(key), alg);
    jwk_expect = atls_jwk_json(key);

    /* ECDSA signatures are randomised: about 1 in 128 has a short R or S
     * that must be left-padded, so 1000 P-256 rounds all but surely hit
     * one (P-384 is slow and shares the code path: fewer rounds). */
    rounds = t == ATLS_KEY_EC256 ? 1000 : t == ATLS_KEY_EC384 ? 100 : 2;
    for (round = 0; round < rounds; round++) {
        /* jwk form (newAccount) */
        jws = atls_jws_sign(key, NULL, "nonce-1", "https://ca.test/new-acct",
                            "{\"termsOfServiceAgreed\":true}");
        assert_non_null(jws);
        hdr = jws_open(jws, &input, &sig, &siglen, &payload);
        assert_string_equal(json_string_value(json_object_get(hdr, "alg")), alg);
        assert_string_equal(json_string_value(json_object_get(hdr, "nonce")), "nonce-1");
        assert_string_equal(json_string_value(json_object_get(hdr, "url")),
                            "https://ca.test/new-acct");
        assert_null(json_object_get(hdr, "kid"));
        assert_non_null(json_object_get(hdr, "jwk"));
        jwk_got = json_dumps(json_object_get(hdr, "jwk"), JSON_COMPACT | JSON_SORT_KEYS);
        assert_string_equal(jwk_got, jwk_expect);
        assert_string_equal(payload, "{\"termsOfServiceAgreed\":true}");
        assert_true(verify_sig(key, input, sig, siglen));
        /* tampering breaks it, so the check above means something */
        input[0] = input[0] == 'e' ? 'f' : 'e';
        assert_false(verify_sig(key, input, sig, siglen));
        free(jwk_got);
        json_decref(hdr);
        free(input);
        free(sig);
        free(payload);
        free(jws);
    }

    /* kid form, POST-as-GET */
    jws = atls_jws_sign(key, "https://ca.test/acct/1", "nonce-2",
                        "https://ca.test/order/7", NULL);
    assert_non_null(jws);
    hdr = jws_open(jws, &input, &sig, &siglen, &payload);
    assert_string_equal(json_string_value(json_object_get(hdr, "kid")),
                        "https://ca.test/acct/1");
    assert_null(json_object_get(hdr, "jwk"));
    assert_string_equal(json_string_value(json_object_get(hdr, "nonce")), "nonce-2");
    assert_string_equal(payload, "");
    assert_non_null(strstr(jws, "\"payload\":\"\""));
    assert_true(verify_sig(key, input, sig, siglen));
    /* a different key of the same type must not verify it */
    other = atls_key_generate(t);
    assert_false(verify_sig(other, input, sig, siglen));
    EVP_PKEY_free(other);
    json_decref(hdr);
    free(input);
    free(sig);
    free(payload);
    free(jws);

    assert_null(atls_jws_sign(key, NULL, "n", NULL, "{}"));
    free(jwk_expect);
    EVP_PKEY_free(key);
}

static void
test_sign_es256(void **state)
{
    check_sign(ATLS_KEY_EC256, "ES256");
}

static void
test_sign_es384(void **state)
{
    check_sign(ATLS_KEY_EC384, "ES384");
}

static void
test_sign_rs256(void **state)
{
    check_sign(ATLS_KEY_RSA2048, "RS256");
}

static void
test_eab(void **state)
{
    const unsigned char hmac_key[] = "a not very secret mac key, 32 bytes!";
    EVP_PKEY      *acct = atls_key_generate(ATLS_KEY_EC256);
    char          *k64, *eab, *input, *payload, *jwk;
    unsigned char *sig, mac[EVP_MAX_MD_SIZE];
    size_t         siglen, maclen = 0;
    json_t        *hdr;

    k64 = atls_b64url_encode(hmac_key, sizeof(hmac_key) - 1);
    eab = atls_jws_eab("kid-1", k64, acct, "https://ca.test/new-acct");
    assert_non_null(eab);
    hdr = jws_open(eab, &input, &sig, &siglen, &payload);
    assert_string_equal(json_string_value(json_object_get(hdr, "alg")), "HS256");
    assert_string_equal(json_string_value(json_object_get(hdr, "kid")), "kid-1");
    assert_string_equal(json_string_value(json_object_get(hdr, "url")),
                        "https://ca.test/new-acct");
    assert_null(json_object_get(hdr, "nonce"));
    assert_null(json_object_get(hdr, "jwk"));

    jwk = atls_jwk_json(acct);
    assert_string_equal(payload, jwk);

    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, hmac_key,
                              sizeof(hmac_key) - 1, (const unsigned char *) input,
                              strlen(input), mac, sizeof(mac), &maclen));
    assert_int_equal(siglen, 32);
    assert_int_equal(maclen, 32);
    assert_memory_equal(sig, mac, 32);

    /* the EAB object is itself valid JSON text to embed */
    json_decref(hdr);
    free(input);
    free(sig);
    free(payload);
    free(eab);

    /* bad key encodings */
    assert_null(atls_jws_eab("kid-1", "not+base64url/", acct, "https://ca.test/x"));
    assert_null(atls_jws_eab("kid-1", "", acct, "https://ca.test/x"));
    assert_null(atls_jws_eab("kid-1", "A", acct, "https://ca.test/x"));
    free(jwk);
    free(k64);
    EVP_PKEY_free(acct);
}

static void
test_alg_unsupported(void **state)
{
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

    assert_non_null(ed);
    assert_null(atls_jws_alg(ed));
    assert_null(atls_jwk_json(ed));
    assert_null(atls_jws_sign(ed, NULL, "n", "https://ca.test/", "{}"));
    assert_null(atls_jws_alg(NULL));
    EVP_PKEY_free(ed);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7638_thumbprint),
        cmocka_unit_test(test_key_authorization_and_dns01),
        cmocka_unit_test(test_ec_jwk_padding),
        cmocka_unit_test(test_sign_es256),
        cmocka_unit_test(test_sign_es384),
        cmocka_unit_test(test_sign_rs256),
        cmocka_unit_test(test_eab),
        cmocka_unit_test(test_alg_unsupported),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
