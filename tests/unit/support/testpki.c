/* Test PKI built with plain OpenSSL; see testpki.h. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include "testpki.h"

EVP_PKEY *
testpki_key(int rsa_bits)
{
    if (rsa_bits == 0) {
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    }
    return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) rsa_bits);
}

int
testpki_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX      ctx;
    X509_EXTENSION *ext;
    int             ok;

    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        return -1;
    }
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

static char *
san_value(const char *const *names, size_t n)
{
    unsigned char buf[16];
    size_t        i, cap = 1, len = 0;
    char         *s;

    for (i = 0; i < n; i++) {
        cap += strlen(names[i]) + 5;
    }
    s = malloc(cap);
    if (s == NULL) {
        return NULL;
    }
    s[0] = '\0';
    for (i = 0; i < n; i++) {
        int is_ip = inet_pton(AF_INET, names[i], buf) == 1
                    || inet_pton(AF_INET6, names[i], buf) == 1;

        len += (size_t) snprintf(s + len, cap - len, "%s%s:%s", i ? "," : "",
                                 is_ip ? "IP" : "DNS", names[i]);
    }
    return s;
}

X509 *
testpki_cert(EVP_PKEY *key, const char *cn, const char *const *names,
             size_t n, X509 *issuer, EVP_PKEY *issuer_key, int is_ca,
             long nb_off, long na_off)
{
    X509          *x;
    X509_NAME     *subj;
    BIGNUM        *bn = NULL;
    unsigned char  rnd[12];
    char          *san = NULL;

    x = X509_new();
    if (x == NULL || X509_set_version(x, 2) != 1) {
        goto failed;
    }
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        goto failed;
    }
    rnd[0] = (unsigned char) ((rnd[0] & 0x7f) | 0x10);
    bn = BN_bin2bn(rnd, sizeof(rnd), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) {
        goto failed;
    }
    if (X509_gmtime_adj(X509_getm_notBefore(x), nb_off) == NULL
        || X509_gmtime_adj(X509_getm_notAfter(x), na_off) == NULL) {
        goto failed;
    }
    subj = X509_get_subject_name(x);
    if (cn != NULL
        && X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8,
                                      (const unsigned char *) cn, -1, -1, 0) != 1) {
        goto failed;
    }
    if (X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer)
                                               : subj) != 1
        || X509_set_pubkey(x, key) != 1) {
        goto failed;
    }
    if (is_ca) {
        if (testpki_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE") != 0
            || testpki_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign") != 0) {
            goto failed;
        }
    }
    if (n > 0) {
        san = san_value(names, n);
        if (san == NULL || testpki_ext(x, issuer, NID_subject_alt_name, san) != 0) {
            goto failed;
        }
    }
    if (X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) <= 0) {
        goto failed;
    }
    free(san);
    BN_free(bn);
    return x;

failed:
    free(san);
    BN_free(bn);
    X509_free(x);
    return NULL;
}

int
testpki_chain_make(testpki_chain_t *c, const char *const *names, size_t n,
                   atls_key_type_t leaf_type)
{
    memset(c, 0, sizeof(*c));
    c->root_key = testpki_key(0);
    c->inter_key = testpki_key(0);
    c->leaf_key = atls_key_generate(leaf_type);
    if (c->root_key == NULL || c->inter_key == NULL || c->leaf_key == NULL) {
        goto failed;
    }
    c->root = testpki_cert(c->root_key, TESTPKI_ROOT_CN, NULL, 0, NULL, NULL, 1,
                           -3600, 86400);
    if (c->root == NULL) {
        goto failed;
    }
    c->inter = testpki_cert(c->inter_key, TESTPKI_INTER_CN, NULL, 0, c->root,
                            c->root_key, 1, -3600, 86400);
    if (c->inter == NULL) {
        goto failed;
    }
    c->leaf = testpki_cert(c->leaf_key, n > 0 ? names[0] : NULL, names, n,
                           c->inter, c->inter_key, 0, -3600, 86400);
    if (c->leaf == NULL) {
        goto failed;
    }
    return 0;

failed:
    testpki_chain_free(c);
    return -1;
}

void
testpki_chain_free(testpki_chain_t *c)
{
    X509_free(c->leaf);
    X509_free(c->inter);
    X509_free(c->root);
    EVP_PKEY_free(c->leaf_key);
    EVP_PKEY_free(c->inter_key);
    EVP_PKEY_free(c->root_key);
    memset(c, 0, sizeof(*c));
}

static char *
bio_string(BIO *bio)
{
    char *data, *s;
    long  len = BIO_get_mem_data(bio, &data);

    if (len < 0 || (s = malloc((size_t) len + 1)) == NULL) {
        return NULL;
    }
    memcpy(s, data, (size_t) len);
    s[len] = '\0';
    return s;
}

char *
testpki_pem(X509 *const *certs, size_t n)
{
    BIO    *bio = BIO_new(BIO_s_mem());
    char   *s = NULL;
    size_t  i;

    if (bio == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (PEM_write_bio_X509(bio, certs[i]) != 1) {
            goto done;
        }
    }
    s = bio_string(bio);
done:
    BIO_free(bio);
    return s;
}

char *
testpki_key_pem(EVP_PKEY *key)
{
    BIO  *bio = BIO_new(BIO_s_mem());
    char *s = NULL;

    if (bio == NULL) {
        return NULL;
    }
    if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1) {
        s = bio_string(bio);
    }
    BIO_free(bio);
    return s;
}
