/* Certificate signing requests for ACME finalize (RFC 8555 §7.4). */
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/tls1.h>
#include <openssl/x509v3.h>
#include "atls_crypto.h"
#include "crypto_int.h"

/* X.520 caps commonName at 64 characters; longer names live in the SAN only. */
#define ATLS_CN_MAX 64

GENERAL_NAMES *
atls_crypto_san_build(const char *const *names, size_t n)
{
    GENERAL_NAMES     *gens;
    GENERAL_NAME      *gen;
    ASN1_OCTET_STRING *ip;
    ASN1_IA5STRING    *ia5;
    size_t             i;

    gens = GENERAL_NAMES_new();
    if (gens == NULL) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (names[i] == NULL || names[i][0] == '\0') {
            goto failed;
        }
        gen = GENERAL_NAME_new();
        if (gen == NULL) {
            goto failed;
        }
        /* a2i_IPADDRESS accepts exactly the IPv4 and IPv6 literals. */
        ip = a2i_IPADDRESS(names[i]);
        if (ip != NULL) {
            GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
        } else {
            ERR_clear_error();
            ia5 = ASN1_IA5STRING_new();
            if (ia5 == NULL
                || ASN1_STRING_set(ia5, names[i], (int) strlen(names[i])) != 1) {
                ASN1_IA5STRING_free(ia5);
                GENERAL_NAME_free(gen);
                goto failed;
            }
            GENERAL_NAME_set0_value(gen, GEN_DNS, ia5);
        }
        if (sk_GENERAL_NAME_push(gens, gen) <= 0) {
            GENERAL_NAME_free(gen);
            goto failed;
        }
    }
    return gens;

failed:
    GENERAL_NAMES_free(gens);
    ERR_clear_error();
    return NULL;
}

/* The TLS Feature extension asking for status_request (RFC 7633: OCSP
 * Must-Staple), added to the extensions the CSR requests. */
static int
add_must_staple(STACK_OF(X509_EXTENSION) **exts)
{
    TLS_FEATURE  *features;
    ASN1_INTEGER *status_request;
    int           ok = 0;

    features = TLS_FEATURE_new();
    status_request = ASN1_INTEGER_new();
    if (features == NULL || status_request == NULL
        || ASN1_INTEGER_set(status_request, TLSEXT_TYPE_status_request) != 1
        || sk_ASN1_INTEGER_push(features, status_request) <= 0) {
        ASN1_INTEGER_free(status_request);
        goto done;
    }
    ok = X509V3_add1_i2d(exts, NID_tlsfeature, features, 0, X509V3_ADD_DEFAULT) == 1;

done:
    TLS_FEATURE_free(features);
    return ok ? 0 : -1;
}

unsigned char *
atls_csr_make(EVP_PKEY *key, const char *const *names, size_t n,
              int with_cn, size_t *der_len)
{
    return atls_csr_make_flags(key, names, n, with_cn ? ATLS_CSR_CN : 0, der_len);
}

unsigned char *
atls_csr_make_flags(EVP_PKEY *key, const char *const *names, size_t n,
                    unsigned flags, size_t *der_len)
{
    X509_REQ                  *req = NULL;
    X509_NAME                 *subj;
    GENERAL_NAMES             *gens = NULL;
    STACK_OF(X509_EXTENSION)  *exts = NULL;
    unsigned char             *der = NULL, *p;
    int                        len;

    if (der_len != NULL) {
        *der_len = 0;
    }
    if (key == NULL || names == NULL || n == 0 || der_len == NULL) {
        return NULL;
    }

    req = X509_REQ_new();
    if (req == NULL || X509_REQ_set_version(req, 0) != 1
        || X509_REQ_set_pubkey(req, key) != 1) {
        goto done;
    }

    subj = X509_REQ_get_subject_name(req);
    if ((flags & ATLS_CSR_CN) && strlen(names[0]) <= ATLS_CN_MAX
        && X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8,
                                      (const unsigned char *) names[0],
                                      -1, -1, 0) != 1) {
        goto done;
    }

    gens = atls_crypto_san_build(names, n);
    if (gens == NULL) {
        goto done;
    }
    /* RFC 5280: the SAN is critical when the subject is empty. */
    if (X509V3_add1_i2d(&exts, NID_subject_alt_name, gens,
                        X509_NAME_entry_count(subj) == 0, X509V3_ADD_DEFAULT) != 1
        || ((flags & ATLS_CSR_MUST_STAPLE) && add_must_staple(&exts) != 0)
        || X509_REQ_add_extensions(req, exts) != 1) {
        goto done;
    }

    /* SHA-256 with RSA PKCS#1 v1.5 or ECDSA, chosen by the key type. */
    if (X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
        goto done;
    }

    len = i2d_X509_REQ(req, NULL);
    if (len <= 0) {
        goto done;
    }
    der = malloc((size_t) len);
    if (der == NULL) {
        goto done;
    }
    p = der;
    if (i2d_X509_REQ(req, &p) != len) {
        free(der);
        der = NULL;
        goto done;
    }
    *der_len = (size_t) len;

done:
    if (der == NULL) {
        ERR_clear_error();
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    X509_REQ_free(req);
    return der;
}
