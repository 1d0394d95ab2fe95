/* Keys, CSRs, chains, certificate facts, tls-alpn-01 and fallback
 * certificates.  Expected values come from plain OpenSSL calls. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "atls_crypto.h"
#include "support/testpki.h"

static const atls_key_type_t all_types[] = {
    ATLS_KEY_EC256, ATLS_KEY_EC384, ATLS_KEY_RSA2048, ATLS_KEY_RSA3072,
    ATLS_KEY_RSA4096
};
#define N_TYPES (sizeof(all_types) / sizeof(all_types[0]))

/* ---- helpers ---------------------------------------------------------- */

/* The SAN entries of a certificate or CSR extension list as text, in
 * order: "DNS:x" / "IP:x". */
static size_t
san_list(GENERAL_NAMES *gens, char out[][64], size_t max)
{
    size_t i, n = 0;
    char   buf[INET6_ADDRSTRLEN];

    for (i = 0; gens != NULL && i < (size_t) sk_GENERAL_NAME_num(gens) && n < max; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, (int) i);

        if (g->type == GEN_DNS) {
            snprintf(out[n++], 64, "DNS:%.*s", ASN1_STRING_length(g->d.dNSName),
                     (const char *) ASN1_STRING_get0_data(g->d.dNSName));
        } else if (g->type == GEN_IPADD) {
            int len = ASN1_STRING_length(g->d.iPAddress);

            assert_non_null(inet_ntop(len == 4 ? AF_INET : AF_INET6,
                                      ASN1_STRING_get0_data(g->d.iPAddress),
                                      buf, sizeof(buf)));
            snprintf(out[n++], 64, "IP:%s", buf);
        } else {
            snprintf(out[n++], 64, "OTHER");
        }
    }
    return n;
}

static int
cn_equals(X509_NAME *xn, const char *want)
{
    char buf[256];

    if (X509_NAME_get_text_by_NID(xn, NID_commonName, buf, sizeof(buf)) < 0) {
        return 0;
    }
    return strcmp(buf, want) == 0;
}

/* ---- keys ------------------------------------------------------------- */

static void
test_key_type_names(void **state)
{
    atls_key_type_t t;
    size_t          i;

    for (i = 0; i < N_TYPES; i++) {
        t = ATLS_KEY_UNKNOWN;
        assert_int_equal(atls_key_type_parse(atls_key_type_name(all_types[i]), &t), 0);
        assert_int_equal(t, all_types[i]);
    }
    assert_string_equal(atls_key_type_name(ATLS_KEY_EC256), "ec256");
    assert_string_equal(atls_key_type_name(ATLS_KEY_RSA4096), "rsa4096");
    t = ATLS_KEY_EC384;
    assert_int_equal(atls_key_type_parse("ec521", &t), -1);
    assert_int_equal(atls_key_type_parse("", &t), -1);
    assert_int_equal(atls_key_type_parse("rsa", &t), -1);
    assert_int_equal(atls_key_type_parse(NULL, &t), -1);
    assert_int_equal(t, ATLS_KEY_EC384);       /* untouched on failure */
    assert_false(atls_key_type_is_rsa(ATLS_KEY_EC256));
    assert_false(atls_key_type_is_rsa(ATLS_KEY_EC384));
    assert_true(atls_key_type_is_rsa(ATLS_KEY_RSA2048));
    assert_true(atls_key_type_is_rsa(ATLS_KEY_RSA3072));
    assert_true(atls_key_type_is_rsa(ATLS_KEY_RSA4096));
}

static void
test_key_generate_pem_round_trip(void **state)
{
    static const int bits[] = { 256, 384, 2048, 3072, 4096 };
    EVP_PKEY        *k, *back;
    char            *pem;
    size_t           i;

    for (i = 0; i < N_TYPES; i++) {
        k = atls_key_generate(all_types[i]);
        assert_non_null(k);
        assert_int_equal(atls_key_type_of(k), all_types[i]);
        assert_int_equal(EVP_PKEY_get_bits(k), bits[i]);
        assert_int_equal(EVP_PKEY_is_a(k, "RSA"), atls_key_type_is_rsa(all_types[i]));

        pem = atls_key_to_pem(k);
        assert_non_null(pem);
        assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
        back = atls_key_from_pem(pem, strlen(pem));
        assert_non_null(back);
        assert_int_equal(EVP_PKEY_eq(k, back), 1);
        assert_int_equal(atls_key_type_of(back), all_types[i]);
        /* the private half survived too: it can sign for the public half */
        {
            EVP_MD_CTX   *ctx = EVP_MD_CTX_new();
            unsigned char sig[1024];
            size_t        siglen = sizeof(sig);

            assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, back), 1);
            assert_int_equal(EVP_DigestSign(ctx, sig, &siglen,
                                            (const unsigned char *) "x", 1), 1);
            EVP_MD_CTX_free(ctx);
            ctx = EVP_MD_CTX_new();
            assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
            assert_int_equal(EVP_DigestVerify(ctx, sig, siglen,
                                              (const unsigned char *) "x", 1), 1);
            EVP_MD_CTX_free(ctx);
        }
        EVP_PKEY_free(back);
        free(pem);
        EVP_PKEY_free(k);
    }
    assert_null(atls_key_generate(ATLS_KEY_UNKNOWN));
    assert_int_equal(atls_key_type_of(NULL), ATLS_KEY_UNKNOWN);
    assert_null(atls_key_from_pem("garbage", 7));
    assert_null(atls_key_from_pem("", 0));
    {
        EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

        assert_int_equal(atls_key_type_of(ed), ATLS_KEY_UNKNOWN);
        EVP_PKEY_free(ed);
    }
}

/* ---- CSR -------------------------------------------------------------- */

static void
check_csr(atls_key_type_t t, int with_cn)
{
    static const char *const names[] = {
        "example.com", "www.example.com", "192.0.2.1", "2001:db8::1"
    };
    EVP_PKEY                 *key = atls_key_generate(t);
    unsigned char            *der;
    const unsigned char      *p;
    size_t                    len;
    X509_REQ                 *req;
    STACK_OF(X509_EXTENSION) *exts;
    GENERAL_NAMES            *gens = NULL;
    char                      got[8][64];
    int                       i;

    der = atls_csr_make(key, names, 4, with_cn, &len);
    assert_non_null(der);
    assert_true(len > 0);
    p = der;
    req = d2i_X509_REQ(NULL, &p, (long) len);
    assert_non_null(req);
    assert_ptr_equal(p, der + len);

    assert_int_equal(X509_REQ_verify(req, key), 1);
    assert_int_equal(EVP_PKEY_eq(X509_REQ_get0_pubkey(req), key), 1);
    assert_int_equal(X509_REQ_get_signature_nid(req),
                     atls_key_type_is_rsa(t) ? NID_sha256WithRSAEncryption
                                             : NID_ecdsa_with_SHA256);
    if (with_cn) {
        assert_int_equal(X509_NAME_entry_count(X509_REQ_get_subject_name(req)), 1);
        assert_true(cn_equals(X509_REQ_get_subject_name(req), "example.com"));
    } else {
        assert_int_equal(X509_NAME_entry_count(X509_REQ_get_subject_name(req)), 0);
    }

    exts = X509_REQ_get_extensions(req);
    assert_non_null(exts);
    for (i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);

        if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name) {
            gens = X509V3_EXT_d2i(e);
        }
    }
    assert_non_null(gens);
    assert_int_equal(san_list(gens, got, 8), 4);
    assert_string_equal(got[0], "DNS:example.com");
    assert_string_equal(got[1], "DNS:www.example.com");
    assert_string_equal(got[2], "IP:192.0.2.1");
    assert_string_equal(got[3], "IP:2001:db8::1");

    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    free(der);
    EVP_PKEY_free(key);
}

static void
test_csr_ec_with_cn(void **state)
{
    check_csr(ATLS_KEY_EC256, 1);
}

static void
test_csr_ec_without_cn(void **state)
{
    check_csr(ATLS_KEY_EC384, 0);
}

static void
test_csr_rsa(void **state)
{
    check_csr(ATLS_KEY_RSA2048, 1);
}

static void
test_csr_bad_input(void **state)
{
    EVP_PKEY          *key = atls_key_generate(ATLS_KEY_EC256);
    const char *const  names[] = { "example.com", "" };
    size_t             len = 5;

    assert_null(atls_csr_make(key, names, 0, 1, &len));
    assert_int_equal(len, 0);
    assert_null(atls_csr_make(NULL, names, 1, 1, &len));
    assert_null(atls_csr_make(key, names, 2, 1, &len));   /* empty name */
    EVP_PKEY_free(key);
}

/* ---- tls-alpn-01 -------------------------------------------------------- */

static void
check_alpn(const char *identifier, const char *san_expect)
{
    const char          *ka = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.thumb";
    X509                *x = NULL;
    EVP_PKEY            *k = NULL;
    ASN1_OBJECT         *oid;
    X509_EXTENSION      *ext;
    const ASN1_OCTET_STRING *val;
    unsigned char        expect[34];
    unsigned int         mdlen = 0;
    GENERAL_NAMES       *gens;
    char                 got[4][64];
    int                  idx;
    time_t               now = time(NULL);

    assert_int_equal(atls_tls_alpn_cert(identifier, ka, &x, &k), 0);
    assert_non_null(x);
    assert_non_null(k);
    assert_int_equal(atls_key_type_of(k), ATLS_KEY_EC256);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), k), 1);
    assert_int_equal(X509_verify(x, k), 1);

    oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    idx = X509_get_ext_by_OBJ(x, oid, -1);
    ASN1_OBJECT_free(oid);
    assert_true(idx >= 0);
    ext = X509_get_ext(x, idx);
    assert_int_equal(X509_EXTENSION_get_critical(ext), 1);
    val = X509_EXTENSION_get_data(ext);
    /* extnValue = DER OCTET STRING (04 20) of SHA-256(key authorization) */
    expect[0] = 0x04;
    expect[1] = 0x20;
    assert_int_equal(EVP_Digest(ka, strlen(ka), expect + 2, &mdlen, EVP_sha256(), NULL), 1);
    assert_int_equal(ASN1_STRING_length(val), 34);
    assert_memory_equal(ASN1_STRING_get0_data(val), expect, 34);

    gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_int_equal(san_list(gens, got, 4), 1);
    assert_string_equal(got[0], san_expect);
    GENERAL_NAMES_free(gens);

    /* short-lived: valid now, gone within a week */
    assert_true(X509_cmp_time(X509_get0_notBefore(x), &now) < 0);
    assert_true(X509_cmp_time(X509_get0_notAfter(x), &now) > 0);
    now += 7 * 86400;
    assert_true(X509_cmp_time(X509_get0_notAfter(x), &now) < 0);

    X509_free(x);
    EVP_PKEY_free(k);
}

static void
test_tls_alpn_cert(void **state)
{
    X509     *x = NULL;
    EVP_PKEY *k = NULL;

    check_alpn("example.com", "DNS:example.com");
    check_alpn("192.0.2.7", "IP:192.0.2.7");
    check_alpn("2001:db8::7", "IP:2001:db8::7");
    assert_int_equal(atls_tls_alpn_cert("", "x", &x, &k), -1);
    assert_int_equal(atls_tls_alpn_cert("example.com", NULL, &x, &k), -1);
    assert_null(x);
    assert_null(k);
}

/* Two different key authorizations must give different extension values. */
static void
test_tls_alpn_digest_differs(void **state)
{
    X509           *a, *b;
    EVP_PKEY       *ka, *kb;
    ASN1_OBJECT    *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    const ASN1_OCTET_STRING *va, *vb;

    assert_int_equal(atls_tls_alpn_cert("example.com", "t1.tp", &a, &ka), 0);
    assert_int_equal(atls_tls_alpn_cert("example.com", "t2.tp", &b, &kb), 0);
    va = X509_EXTENSION_get_data(X509_get_ext(a, X509_get_ext_by_OBJ(a, oid, -1)));
    vb = X509_EXTENSION_get_data(X509_get_ext(b, X509_get_ext_by_OBJ(b, oid, -1)));
    assert_int_not_equal(ASN1_STRING_cmp(va, vb), 0);
    ASN1_OBJECT_free(oid);
    X509_free(a);
    X509_free(b);
    EVP_PKEY_free(ka);
    EVP_PKEY_free(kb);
}

/* ---- self-signed fallback ---------------------------------------------- */

static void
check_selfsigned(atls_key_type_t t)
{
    const char *const names[] = { "a.example", "b.example", "127.0.0.1" };
    const char *const other[] = { "c.example" };
    X509             *x = NULL;
    EVP_PKEY         *k = NULL;
    STACK_OF(X509)   *chain;
    char              err[256];
    time_t            now = time(NULL);

    assert_int_equal(atls_selfsigned_cert(names, 3, t, &x, &k), 0);
    assert_int_equal(atls_key_type_of(k), t);
    assert_int_equal(X509_verify(x, k), 1);
    assert_true(cn_equals(X509_get_subject_name(x), "a.example"));
    assert_int_equal(X509_check_host(x, "b.example", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);

    now += 86400;
    assert_true(X509_cmp_time(X509_get0_notAfter(x), &now) > 0);    /* >= 1 day */
    now += 7 * 86400;
    assert_true(X509_cmp_time(X509_get0_notAfter(x), &now) < 0);    /* <= ~7 days */

    chain = sk_X509_new_null();
    assert_int_equal(sk_X509_push(chain, x), 1);
    assert_int_equal(atls_chain_check(chain, k, names, 3, err, sizeof(err)), 0);
    assert_int_equal(atls_chain_check(chain, k, other, 1, err, sizeof(err)), -1);
    assert_string_equal(err, "leaf does not cover c.example");
    atls_chain_free(chain);
    EVP_PKEY_free(k);
}

static void
test_selfsigned_ec(void **state)
{
    check_selfsigned(ATLS_KEY_EC256);
}

static void
test_selfsigned_rsa(void **state)
{
    check_selfsigned(ATLS_KEY_RSA2048);
}

/* ---- chains ------------------------------------------------------------- */

static const char *const leaf_names[] = { "www.example.com", "example.com", "192.0.2.1" };

static void
test_chain_good(void **state)
{
    testpki_chain_t  c;
    X509            *certs[3];
    STACK_OF(X509)  *chain;
    char            *pem, *back, err[256];

    assert_int_equal(testpki_chain_make(&c, leaf_names, 3, ATLS_KEY_EC256), 0);
    certs[0] = c.leaf;
    certs[1] = c.inter;
    certs[2] = c.root;

    /* leaf + intermediate, as ACME delivers it */
    pem = testpki_pem(certs, 2);
    chain = atls_chain_parse(pem, strlen(pem), err, sizeof(err));
    assert_non_null(chain);
    assert_int_equal(sk_X509_num(chain), 2);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 0), c.leaf), 0);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 1), c.inter), 0);
    assert_int_equal(atls_chain_check(chain, c.leaf_key, leaf_names, 3, err, sizeof(err)), 0);
    assert_int_equal(atls_chain_check(chain, NULL, NULL, 0, err, sizeof(err)), 0);
    back = atls_chain_to_pem(chain);
    assert_string_equal(back, pem);
    free(back);
    atls_chain_free(chain);
    free(pem);

    /* with the root, and text around the blocks (openssl -showcerts style) */
    {
        char *p3 = testpki_pem(certs, 3), *wrapped;
        size_t len = strlen(p3) + 200;

        wrapped = malloc(len);
        snprintf(wrapped, len, "subject=CN = www.example.com\n%s\ntrailing words\n", p3);
        chain = atls_chain_parse(wrapped, strlen(wrapped), err, sizeof(err));
        assert_non_null(chain);
        assert_int_equal(sk_X509_num(chain), 3);
        assert_int_equal(atls_chain_check(chain, c.leaf_key, leaf_names, 3, err,
                                          sizeof(err)), 0);
        back = atls_chain_to_pem(chain);
        assert_string_equal(back, p3);
        free(back);
        atls_chain_free(chain);
        free(wrapped);
        free(p3);
    }
    testpki_chain_free(&c);
}

static STACK_OF(X509) *
parse_certs(X509 *const *certs, size_t n)
{
    char           *pem = testpki_pem(certs, n), err[256];
    STACK_OF(X509) *chain;

    assert_non_null(pem);
    chain = atls_chain_parse(pem, strlen(pem), err, sizeof(err));
    assert_non_null(chain);
    free(pem);
    return chain;
}

static void
test_chain_wrong_order(void **state)
{
    testpki_chain_t  c;
    X509            *certs[3];
    STACK_OF(X509)  *chain;
    char             err[256];

    assert_int_equal(testpki_chain_make(&c, leaf_names, 3, ATLS_KEY_EC256), 0);

    certs[0] = c.leaf;
    certs[1] = c.root;          /* intermediate missing */
    chain = parse_certs(certs, 2);
    assert_int_equal(atls_chain_check(chain, c.leaf_key, NULL, 0, err, sizeof(err)), -1);
    assert_string_equal(err, "certificate 2 of 2 is not the issuer of certificate 1");
    atls_chain_free(chain);

    certs[0] = c.leaf;
    certs[1] = c.root;
    certs[2] = c.inter;         /* swapped */
    chain = parse_certs(certs, 3);
    assert_int_equal(atls_chain_check(chain, NULL, NULL, 0, err, sizeof(err)), -1);
    assert_string_equal(err, "certificate 2 of 3 is not the issuer of certificate 1");
    atls_chain_free(chain);

    certs[0] = c.inter;         /* leaf not first: the key check catches it */
    certs[1] = c.leaf;
    chain = parse_certs(certs, 2);
    assert_int_equal(atls_chain_check(chain, c.leaf_key, NULL, 0, err, sizeof(err)), -1);
    assert_string_equal(err, "private key does not match the leaf certificate");
    assert_int_equal(atls_chain_check(chain, NULL, NULL, 0, err, sizeof(err)), -1);
    assert_string_equal(err, "certificate 2 of 2 is not the issuer of certificate 1");
    atls_chain_free(chain);
    testpki_chain_free(&c);
}

/* An intermediate with the right name but another key: the names line up,
 * only the signature check can notice. */
static void
test_chain_bad_signature(void **state)
{
    testpki_chain_t  c;
    EVP_PKEY        *impostor_key = testpki_key(0);
    X509            *impostor, *certs[2];
    STACK_OF(X509)  *chain;
    char             err[256];

    assert_int_equal(testpki_chain_make(&c, leaf_names, 1, ATLS_KEY_EC256), 0);
    impostor = testpki_cert(impostor_key, TESTPKI_INTER_CN, NULL, 0, c.root,
                            c.root_key, 1, -3600, 86400);
    assert_non_null(impostor);
    certs[0] = c.leaf;
    certs[1] = impostor;
    chain = parse_certs(certs, 2);
    assert_int_equal(atls_chain_check(chain, c.leaf_key, NULL, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "signature of certificate 1 of 2"));
    atls_chain_free(chain);
    X509_free(impostor);
    EVP_PKEY_free(impostor_key);
    testpki_chain_free(&c);
}

static void
test_chain_key_and_names(void **state)
{
    testpki_chain_t    c;
    X509              *certs[2];
    STACK_OF(X509)    *chain;
    EVP_PKEY          *other = atls_key_generate(ATLS_KEY_EC256);
    const char *const  missing[] = { "example.com", "www.example.org" };
    const char *const  ip_missing[] = { "192.0.2.2" };
    const char *const  sub[] = { "a.www.example.com" };
    char               err[256];

    assert_int_equal(testpki_chain_make(&c, leaf_names, 3, ATLS_KEY_RSA2048), 0);
    certs[0] = c.leaf;
    certs[1] = c.inter;
    chain = parse_certs(certs, 2);

    assert_int_equal(atls_chain_check(chain, other, NULL, 0, err, sizeof(err)), -1);
    assert_string_equal(err, "private key does not match the leaf certificate");
    assert_int_equal(atls_chain_check(chain, c.inter_key, NULL, 0, err, sizeof(err)), -1);

    assert_int_equal(atls_chain_check(chain, c.leaf_key, missing, 2, err, sizeof(err)), -1);
    assert_string_equal(err, "leaf does not cover www.example.org");
    assert_int_equal(atls_chain_check(chain, c.leaf_key, ip_missing, 1, err, sizeof(err)), -1);
    assert_string_equal(err, "leaf does not cover 192.0.2.2");
    assert_int_equal(atls_chain_check(chain, c.leaf_key, sub, 1, err, sizeof(err)), -1);

    atls_chain_free(chain);
    EVP_PKEY_free(other);
    testpki_chain_free(&c);
}

static void
test_chain_wildcard(void **state)
{
    const char *const  names[] = { "*.example.com", "example.com" };
    const char *const  ok1[] = { "*.example.com", "a.example.com", "example.com" };
    const char *const  deep[] = { "a.b.example.com" };
    const char *const  other_wild[] = { "*.example.org" };
    const char *const  narrower[] = { "*.a.example.com" };
    testpki_chain_t    c;
    X509              *certs[2];
    STACK_OF(X509)    *chain;
    char               err[256];

    assert_int_equal(testpki_chain_make(&c, names, 2, ATLS_KEY_EC256), 0);
    certs[0] = c.leaf;
    certs[1] = c.inter;
    chain = parse_certs(certs, 2);
    assert_int_equal(atls_chain_check(chain, c.leaf_key, ok1, 3, err, sizeof(err)), 0);
    assert_int_equal(atls_chain_check(chain, c.leaf_key, deep, 1, err, sizeof(err)), -1);
    assert_string_equal(err, "leaf does not cover a.b.example.com");
    assert_int_equal(atls_chain_check(chain, c.leaf_key, other_wild, 1, err, sizeof(err)), -1);
    assert_int_equal(atls_chain_check(chain, c.leaf_key, narrower, 1, err, sizeof(err)), -1);
    atls_chain_free(chain);
    testpki_chain_free(&c);
}

static void
test_chain_garbage(void **state)
{
    static const char bad_b64[] =
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    static const char not_der[] =
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    testpki_chain_t c;
    X509           *certs[2];
    char           *pem, *cut, err[256];
    size_t          half;

    err[0] = '\0';
    assert_null(atls_chain_parse("", 0, err, sizeof(err)));
    assert_true(strlen(err) > 0);
    err[0] = '\0';
    assert_null(atls_chain_parse("hello world\n", 12, err, sizeof(err)));
    assert_true(strlen(err) > 0);
    err[0] = '\0';
    assert_null(atls_chain_parse(bad_b64, strlen(bad_b64), err, sizeof(err)));
    assert_string_equal(err, "certificate 1 in the chain is not valid PEM/DER");
    /* valid base64, but not a certificate */
    err[0] = '\0';
    assert_null(atls_chain_parse(not_der, strlen(not_der), err, sizeof(err)));
    assert_string_equal(err, "certificate 1 in the chain is not valid PEM/DER");
    assert_null(atls_chain_parse(NULL, 10, err, sizeof(err)));

    assert_int_equal(testpki_chain_make(&c, leaf_names, 1, ATLS_KEY_EC256), 0);
    certs[0] = c.leaf;
    certs[1] = c.inter;
    pem = testpki_pem(certs, 2);

    /* truncated in the middle of the second certificate */
    half = strlen(pem) * 3 / 4;
    cut = strndup(pem, half);
    err[0] = '\0';
    assert_null(atls_chain_parse(cut, strlen(cut), err, sizeof(err)));
    assert_string_equal(err, "certificate 2 in the chain is not valid PEM/DER");
    /* a damaged byte inside the first certificate */
    free(cut);
    cut = strdup(pem);
    cut[100] = cut[100] == 'A' ? 'B' : 'A';
    /* may still parse as DER if the flip hits a non-structural byte, but
     * then the signature no longer verifies: either way it is rejected */
    {
        STACK_OF(X509) *chain = atls_chain_parse(cut, strlen(cut), err, sizeof(err));

        if (chain != NULL) {
            assert_int_equal(atls_chain_check(chain, c.leaf_key, NULL, 0, err,
                                              sizeof(err)), -1);
            atls_chain_free(chain);
        }
    }
    free(cut);
    free(pem);
    testpki_chain_free(&c);

    assert_int_equal(atls_chain_check(NULL, NULL, NULL, 0, err, sizeof(err)), -1);
    assert_string_equal(err, "certificate chain is empty");
    assert_null(atls_chain_to_pem(NULL));
}

static void
test_chain_issued_by(void **state)
{
    testpki_chain_t c;
    X509           *certs[3];
    STACK_OF(X509) *chain;

    assert_int_equal(testpki_chain_make(&c, leaf_names, 1, ATLS_KEY_EC256), 0);
    certs[0] = c.leaf;
    certs[1] = c.inter;
    certs[2] = c.root;

    chain = parse_certs(certs, 2);
    assert_true(atls_chain_issued_by(chain, TESTPKI_ROOT_CN));     /* top's issuer */
    assert_true(atls_chain_issued_by(chain, TESTPKI_INTER_CN));    /* top's subject */
    assert_false(atls_chain_issued_by(chain, "www.example.com"));  /* leaf only */
    assert_false(atls_chain_issued_by(chain, "autotls Test"));
    assert_false(atls_chain_issued_by(chain, NULL));
    atls_chain_free(chain);

    chain = parse_certs(certs, 1);
    assert_true(atls_chain_issued_by(chain, TESTPKI_INTER_CN));
    assert_false(atls_chain_issued_by(chain, TESTPKI_ROOT_CN));
    atls_chain_free(chain);

    chain = parse_certs(certs, 3);
    assert_true(atls_chain_issued_by(chain, TESTPKI_ROOT_CN));
    assert_false(atls_chain_issued_by(chain, TESTPKI_INTER_CN));
    atls_chain_free(chain);
    assert_false(atls_chain_issued_by(NULL, TESTPKI_ROOT_CN));
    testpki_chain_free(&c);
}

/* ---- certificate facts -------------------------------------------------- */

static void
test_cert_info(void **state)
{
    const char *const names[] = { "www.example.com", "example.com", "192.0.2.1",
                                  "2001:db8::1" };
    testpki_chain_t   c;
    atls_cert_info_t  info;
    time_t            t0, t1;

    t0 = time(NULL);
    assert_int_equal(testpki_chain_make(&c, names, 4, ATLS_KEY_EC384), 0);
    t1 = time(NULL);
    /* a serial with a leading zero nibble; cert_info does not verify
     * signatures, so changing it after signing is fine here */
    assert_int_equal(ASN1_INTEGER_set_int64(X509_get_serialNumber(c.leaf),
                                            0x0a1b2c3d4e5fLL), 1);

    assert_int_equal(atls_cert_info(c.leaf, &info), 0);
    assert_int_equal(info.n_names, 4);
    assert_string_equal(info.names[0], "www.example.com");
    assert_string_equal(info.names[1], "example.com");
    assert_string_equal(info.names[2], "192.0.2.1");
    assert_string_equal(info.names[3], "2001:db8::1");
    assert_string_equal(info.serial, "0a1b2c3d4e5f");
    assert_string_equal(info.issuer, TESTPKI_INTER_CN);
    assert_string_equal(info.subject, "CN=www.example.com");
    assert_true(info.not_before >= t0 - 3600 && info.not_before <= t1 - 3600);
    assert_true(info.not_after >= t0 + 86400 && info.not_after <= t1 + 86400);
    assert_int_equal(info.key_type, ATLS_KEY_EC384);
    atls_cert_info_free(&info);
    assert_null(info.names);
    assert_int_equal(info.n_names, 0);

    /* root: no SAN, issuer = its own CN */
    assert_int_equal(atls_cert_info(c.root, &info), 0);
    assert_int_equal(info.n_names, 0);
    assert_string_equal(info.issuer, TESTPKI_ROOT_CN);
    assert_int_equal(info.key_type, ATLS_KEY_EC256);
    atls_cert_info_free(&info);

    assert_int_equal(atls_cert_info(NULL, &info), -1);
    testpki_chain_free(&c);
}

static void
test_cert_info_rsa_no_cn_issuer(void **state)
{
    const char *const names[] = { "host.example" };
    EVP_PKEY         *k = testpki_key(3072);
    X509             *x = testpki_cert(k, NULL, names, 1, NULL, NULL, 0, 0, 3600);
    atls_cert_info_t  info;

    assert_non_null(x);
    assert_int_equal(X509_NAME_add_entry_by_txt(X509_get_issuer_name(x), "O",
                                                MBSTRING_ASC,
                                                (const unsigned char *) "Example Org",
                                                -1, -1, 0), 1);
    assert_int_equal(atls_cert_info(x, &info), 0);
    assert_string_equal(info.issuer, "O=Example Org");
    assert_string_equal(info.subject, "");
    assert_int_equal(info.key_type, ATLS_KEY_RSA3072);
    /* the two times are taken a moment apart: allow a second boundary */
    assert_true(info.not_after - info.not_before >= 3600
                && info.not_after - info.not_before <= 3601);
    atls_cert_info_free(&info);
    X509_free(x);
    EVP_PKEY_free(k);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_type_names),
        cmocka_unit_test(test_key_generate_pem_round_trip),
        cmocka_unit_test(test_csr_ec_with_cn),
        cmocka_unit_test(test_csr_ec_without_cn),
        cmocka_unit_test(test_csr_rsa),
        cmocka_unit_test(test_csr_bad_input),
        cmocka_unit_test(test_tls_alpn_cert),
        cmocka_unit_test(test_tls_alpn_digest_differs),
        cmocka_unit_test(test_selfsigned_ec),
        cmocka_unit_test(test_selfsigned_rsa),
        cmocka_unit_test(test_chain_good),
        cmocka_unit_test(test_chain_wrong_order),
        cmocka_unit_test(test_chain_bad_signature),
        cmocka_unit_test(test_chain_key_and_names),
        cmocka_unit_test(test_chain_wildcard),
        cmocka_unit_test(test_chain_garbage),
        cmocka_unit_test(test_chain_issued_by),
        cmocka_unit_test(test_cert_info),
        cmocka_unit_test(test_cert_info_rsa_no_cn_issuer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
