/* JOSE for ACME: public JWK, RFC 7638 thumbprint, flattened JWS (RFC 7515
 * §7.2.2) and External Account Binding (RFC 8555 §7.3.4). */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include "atls_b64.h"
#include "atls_crypto.h"
#include "atls_jws.h"

#define ATLS_JSON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS)

const char *
atls_jws_alg(const EVP_PKEY *key)
{
    if (key == NULL) {
        return NULL;
    }
    if (EVP_PKEY_is_a(key, "RSA")) {
        return "RS256";
    }
    switch (atls_key_type_of(key)) {
    case ATLS_KEY_EC256:
        return "ES256";
    case ATLS_KEY_EC384:
        return "ES384";
    default:
        return NULL;
    }
}

/* base64url of a key parameter; pad > 0 left-pads to that many bytes (EC
 * coordinates), pad == 0 gives the minimal big-endian form (RSA n, e). */
static char *
bn_param_b64(const EVP_PKEY *key, const char *param, int pad)
{
    BIGNUM        *bn = NULL;
    unsigned char *buf = NULL;
    char          *s = NULL;
    int            len;

    if (EVP_PKEY_get_bn_param(key, param, &bn) != 1) {
        ERR_clear_error();
        return NULL;
    }
    len = pad > 0 ? pad : BN_num_bytes(bn);
    if (len <= 0 || (buf = malloc((size_t) len)) == NULL) {
        goto done;
    }
    if ((pad > 0 ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf)) != len) {
        goto done;
    }
    s = atls_b64url_encode(buf, (size_t) len);

done:
    free(buf);
    BN_free(bn);
    return s;
}

/* The public JWK as a jansson object holding exactly the RFC 7638 required
 * members, so that the sorted compact dump is the thumbprint input. */
static json_t *
jwk_object(EVP_PKEY *key)
{
    json_t *o = NULL;
    char   *a = NULL, *b = NULL;

    switch (atls_key_type_of(key)) {
    case ATLS_KEY_EC256:
    case ATLS_KEY_EC384: {
        int         size = atls_key_type_of(key) == ATLS_KEY_EC256 ? 32 : 48;
        const char *crv = size == 32 ? "P-256" : "P-384";

        a = bn_param_b64(key, OSSL_PKEY_PARAM_EC_PUB_X, size);
        b = bn_param_b64(key, OSSL_PKEY_PARAM_EC_PUB_Y, size);
        if (a != NULL && b != NULL) {
            o = json_pack("{s:s, s:s, s:s, s:s}", "crv", crv, "kty", "EC",
                          "x", a, "y", b);
        }
        break;
    }
    default:
        /* Any RSA size signs RS256, also ones autotls would not generate. */
        if (!EVP_PKEY_is_a(key, "RSA")) {
            break;
        }
        a = bn_param_b64(key, OSSL_PKEY_PARAM_RSA_E, 0);
        b = bn_param_b64(key, OSSL_PKEY_PARAM_RSA_N, 0);
        if (a != NULL && b != NULL) {
            o = json_pack("{s:s, s:s, s:s}", "e", a, "kty", "RSA", "n", b);
        }
        break;
    }
    free(a);
    free(b);
    return o;
}

char *
atls_jwk_json(EVP_PKEY *key)
{
    json_t *o;
    char   *s;

    if (key == NULL || (o = jwk_object(key)) == NULL) {
        return NULL;
    }
    s = json_dumps(o, ATLS_JSON_FLAGS);
    json_decref(o);
    return s;
}

static char *
sha256_b64(const void *data, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int  mdlen = 0;

    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        ERR_clear_error();
        return NULL;
    }
    return atls_b64url_encode(md, mdlen);
}

char *
atls_jwk_thumbprint(EVP_PKEY *key)
{
    char *jwk, *tp;

    jwk = atls_jwk_json(key);
    if (jwk == NULL) {
        return NULL;
    }
    tp = sha256_b64(jwk, strlen(jwk));
    free(jwk);
    return tp;
}

char *
atls_key_authorization(const char *token, EVP_PKEY *account_key)
{
    char   *tp, *ka;
    size_t  len;

    if (token == NULL || account_key == NULL) {
        return NULL;
    }
    tp = atls_jwk_thumbprint(account_key);
    if (tp == NULL) {
        return NULL;
    }
    len = strlen(token) + 1 + strlen(tp) + 1;
    ka = malloc(len);
    if (ka != NULL) {
        snprintf(ka, len, "%s.%s", token, tp);
    }
    free(tp);
    return ka;
}

char *
atls_dns01_txt_value(const char *key_authz)
{
    if (key_authz == NULL) {
        return NULL;
    }
    return sha256_b64(key_authz, strlen(key_authz));
}

/* JWS wants ECDSA signatures as R||S, each left-padded to the field size
 * (RFC 7518 §3.4); OpenSSL produces DER. */
static int
ecdsa_der_to_raw(const unsigned char *der, size_t der_len,
                 unsigned char *raw, int size)
{
    const unsigned char *p = der;
    const BIGNUM        *r, *s;
    ECDSA_SIG           *sig;
    int                  rc = -1;

    sig = d2i_ECDSA_SIG(NULL, &p, (long) der_len);
    if (sig == NULL) {
        return -1;
    }
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_bn2binpad(r, raw, size) == size
        && BN_bn2binpad(s, raw + size, size) == size) {
        rc = 0;
    }
    ECDSA_SIG_free(sig);
    return rc;
}

/* base64url(signature of input) with key, in JWS form. */
static char *
sign_b64(EVP_PKEY *key, const char *input)
{
    EVP_MD_CTX    *ctx;
    const EVP_MD  *md;
    unsigned char *sig = NULL, raw[2 * 66];
    size_t         siglen = 0;
    char          *out = NULL;
    int            size = 0;

    switch (atls_key_type_of(key)) {
    case ATLS_KEY_EC256:
        md = EVP_sha256();
        size = 32;
        break;
    case ATLS_KEY_EC384:
        md = EVP_sha384();
        size = 48;
        break;
    default:
        if (!EVP_PKEY_is_a(key, "RSA")) {
            return NULL;
        }
        md = EVP_sha256();      /* PKCS#1 v1.5 is the RSA default padding */
        break;
    }

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return NULL;
    }
    if (EVP_DigestSignInit(ctx, NULL, md, NULL, key) != 1
        || EVP_DigestSign(ctx, NULL, &siglen,
                          (const unsigned char *) input, strlen(input)) != 1
        || (sig = malloc(siglen)) == NULL
        || EVP_DigestSign(ctx, sig, &siglen,
                          (const unsigned char *) input, strlen(input)) != 1) {
        goto done;
    }
    if (size > 0) {
        if (ecdsa_der_to_raw(sig, siglen, raw, size) != 0) {
            goto done;
        }
        out = atls_b64url_encode(raw, (size_t) size * 2);
    } else {
        out = atls_b64url_encode(sig, siglen);
    }

done:
    if (out == NULL) {
        ERR_clear_error();
    }
    free(sig);
    EVP_MD_CTX_free(ctx);
    return out;
}

/* Assembles {"protected","payload","signature"}: protected header object
 * (stolen), payload bytes, and a signer for "b64(protected).b64(payload)". */
typedef char *(*signer_fn)(void *ctx, const char *input);

static char *
jws_build(json_t *protected_hdr, const char *payload, signer_fn sign, void *ctx)
{
    char   *hdr = NULL, *hdr64 = NULL, *pay64 = NULL, *input = NULL;
    char   *sig64 = NULL, *out = NULL;
    json_t *jws;
    size_t  len;

    if (protected_hdr == NULL) {
        return NULL;
    }
    hdr = json_dumps(protected_hdr, ATLS_JSON_FLAGS);
    json_decref(protected_hdr);
    if (hdr == NULL) {
        return NULL;
    }
    hdr64 = atls_b64url_encode((const unsigned char *) hdr, strlen(hdr));
    pay64 = atls_b64url_encode((const unsigned char *) payload, strlen(payload));
    if (hdr64 == NULL || pay64 == NULL) {
        goto done;
    }
    len = strlen(hdr64) + 1 + strlen(pay64) + 1;
    input = malloc(len);
    if (input == NULL) {
        goto done;
    }
    snprintf(input, len, "%s.%s", hdr64, pay64);
    sig64 = sign(ctx, input);
    if (sig64 == NULL) {
        goto done;
    }
    jws = json_pack("{s:s, s:s, s:s}", "protected", hdr64, "payload", pay64,
                    "signature", sig64);
    if (jws != NULL) {
        out = json_dumps(jws, ATLS_JSON_FLAGS);
        json_decref(jws);
    }

done:
    free(hdr);
    free(hdr64);
    free(pay64);
    free(input);
    free(sig64);
    return out;
}

static char *
pkey_signer(void *ctx, const char *input)
{
    return sign_b64(ctx, input);
}

char *
atls_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce,
              const char *url, const char *payload)
{
    const char *alg;
    json_t     *hdr, *jwk;

    alg = atls_jws_alg(key);
    if (alg == NULL || url == NULL) {
        return NULL;
    }
    hdr = json_pack("{s:s, s:s}", "alg", alg, "url", url);
    if (hdr == NULL) {
        return NULL;
    }
    if (nonce != NULL && json_object_set_new(hdr, "nonce", json_string(nonce)) != 0) {
        goto failed;
    }
    if (kid != NULL) {
        if (json_object_set_new(hdr, "kid", json_string(kid)) != 0) {
            goto failed;
        }
    } else {
        jwk = jwk_object(key);
        if (jwk == NULL || json_object_set_new(hdr, "jwk", jwk) != 0) {
            goto failed;
        }
    }
    return jws_build(hdr, payload != NULL ? payload : "", pkey_signer, key);

failed:
    json_decref(hdr);
    return NULL;
}

typedef struct {
    const unsigned char *key;
    size_t               len;
} hmac_key_t;

static char *
hmac_signer(void *ctx, const char *input)
{
    hmac_key_t    *k = ctx;
    unsigned char  mac[EVP_MAX_MD_SIZE];
    size_t         maclen = 0;

    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, k->key, k->len,
                  (const unsigned char *) input, strlen(input),
                  mac, sizeof(mac), &maclen) == NULL) {
        ERR_clear_error();
        return NULL;
    }
    return atls_b64url_encode(mac, maclen);
}

char *
atls_jws_eab(const char *eab_kid, const char *hmac_b64url,
             EVP_PKEY *account_key, const char *url)
{
    hmac_key_t  k;
    json_t     *hdr;
    char       *jwk, *out;
    unsigned char *raw;

    if (eab_kid == NULL || hmac_b64url == NULL || account_key == NULL || url == NULL) {
        return NULL;
    }
    raw = atls_b64url_decode(hmac_b64url, strlen(hmac_b64url), &k.len);
    if (raw == NULL || k.len == 0) {
        free(raw);
        return NULL;
    }
    k.key = raw;

    out = NULL;
    jwk = atls_jwk_json(account_key);
    hdr = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "kid", eab_kid, "url", url);
    if (jwk != NULL && hdr != NULL) {
        out = jws_build(hdr, jwk, hmac_signer, &k);
    } else {
        json_decref(hdr);
    }
    OPENSSL_cleanse(raw, k.len);
    free(raw);
    free(jwk);
    return out;
}
