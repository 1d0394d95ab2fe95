/* Facts about one certificate, and the certificates autotls makes itself:
 * the tls-alpn-01 challenge certificate (RFC 8737) and the self-signed
 * fallback served until a real certificate arrives. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include "atls.h"
#include "atls_crypto.h"
#include "crypto_int.h"

#define ATLS_CN_MAX          64
#define ATLS_ALPN_VALIDITY   (24L * 3600)       /* lives only while validating */
#define ATLS_FALLBACK_VALID  (7L * 24 * 3600)
#define ATLS_BACKDATE        3600L              /* tolerate client clock skew */
#define ATLS_ACME_ID_OID     "1.3.6.1.5.5.7.1.31"

/* ---- certificate facts --------------------------------------------------- */

static int
push_name(atls_cert_info_t *out, const char *s, size_t len)
{
    char **v;
    char  *copy;

    copy = malloc(len + 1);
    if (copy == NULL) {
        return -1;
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    v = realloc(out->names, (out->n_names + 1) * sizeof(char *));
    if (v == NULL) {
        free(copy);
        return -1;
    }
    out->names = v;
    out->names[out->n_names++] = copy;
    return 0;
}

static int
collect_names(X509 *x, atls_cert_info_t *out)
{
    GENERAL_NAMES *gens;
    GENERAL_NAME  *gen;
    char           buf[INET6_ADDRSTRLEN];
    const unsigned char *d;
    int            i, len, rc = 0;

    gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (gens == NULL) {
        ERR_clear_error();
        return 0;
    }
    for (i = 0; i < sk_GENERAL_NAME_num(gens) && rc == 0; i++) {
        gen = sk_GENERAL_NAME_value(gens, i);
        if (gen->type == GEN_DNS) {
            d = ASN1_STRING_get0_data(gen->d.dNSName);
            len = ASN1_STRING_length(gen->d.dNSName);
            /* An embedded NUL would make the C string lie about the name. */
            if (len > 0 && memchr(d, '\0', (size_t) len) == NULL) {
                rc = push_name(out, (const char *) d, (size_t) len);
            }
        } else if (gen->type == GEN_IPADD) {
            d = ASN1_STRING_get0_data(gen->d.iPAddress);
            len = ASN1_STRING_length(gen->d.iPAddress);
            if ((len == 4 && inet_ntop(AF_INET, d, buf, sizeof(buf)) != NULL)
                || (len == 16 && inet_ntop(AF_INET6, d, buf, sizeof(buf)) != NULL)) {
                rc = push_name(out, buf, strlen(buf));
            }
        }
    }
    GENERAL_NAMES_free(gens);
    return rc;
}

static int
cn_of(const X509_NAME *xn, char *buf, size_t size)
{
    unsigned char *utf8;
    int            idx, len;

    idx = X509_NAME_get_index_by_NID(xn, NID_commonName, -1);
    if (idx < 0) {
        return -1;
    }
    len = ASN1_STRING_to_UTF8(&utf8,
                              X509_NAME_ENTRY_get_data(X509_NAME_get_entry(xn, idx)));
    if (len < 0) {
        ERR_clear_error();
        return -1;
    }
    snprintf(buf, size, "%.*s", len, (const char *) utf8);
    OPENSSL_free(utf8);
    return 0;
}

static void
dn_oneline(const X509_NAME *xn, char *buf, size_t size)
{
    BIO  *bio;
    char *data;
    long  len;

    buf[0] = '\0';
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return;
    }
    if (X509_NAME_print_ex(bio, xn, 0, XN_FLAG_RFC2253) >= 0) {
        len = BIO_get_mem_data(bio, &data);
        if (len > 0) {
            snprintf(buf, size, "%.*s", (int) len, data);
        }
    }
    BIO_free(bio);
}

int
atls_crypto_time(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return -1;
    }
    *out = timegm(&tm);
    return 0;
}

int
atls_cert_info(X509 *x, atls_cert_info_t *out)
{
    BIGNUM *bn = NULL;
    char   *hex = NULL, *p;

    if (out == NULL) {
        return -1;
    }
    memset(out, 0, sizeof(*out));
    out->key_type = ATLS_KEY_UNKNOWN;
    if (x == NULL) {
        return -1;
    }

    if (collect_names(x, out) != 0) {
        goto failed;
    }

    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    if (hex == NULL) {
        goto failed;
    }
    for (p = hex; *p != '\0'; p++) {
        *p = (char) tolower((unsigned char) *p);
    }
    snprintf(out->serial, sizeof(out->serial), "%s", hex);

    dn_oneline(X509_get_subject_name(x), out->subject, sizeof(out->subject));
    if (cn_of(X509_get_issuer_name(x), out->issuer, sizeof(out->issuer)) != 0) {
        dn_oneline(X509_get_issuer_name(x), out->issuer, sizeof(out->issuer));
    }

    if (atls_crypto_time(X509_get0_notBefore(x), &out->not_before) != 0
        || atls_crypto_time(X509_get0_notAfter(x), &out->not_after) != 0) {
        goto failed;
    }
    out->key_type = atls_key_type_of(X509_get0_pubkey(x));

    OPENSSL_free(hex);
    BN_free(bn);
    ERR_clear_error();
    return 0;

failed:
    OPENSSL_free(hex);
    BN_free(bn);
    atls_cert_info_free(out);
    ERR_clear_error();
    return -1;
}

void
atls_cert_info_free(atls_cert_info_t *info)
{
    if (info == NULL) {
        return;
    }
    /* names is NULL whenever n_names is 0, so the counted form is safe. */
    atls_strv_free(info->names, info->n_names);
    info->names = NULL;
    info->n_names = 0;
}

/* ---- certificates we make ----------------------------------------------- */

/* A v3 self-signed certificate for key with the given SANs, CN (when it
 * fits) and lifetime; extra extension (may be NULL) is added as is. */
static X509 *
selfsigned_make(EVP_PKEY *key, const char *const *names, size_t n,
                long lifetime, X509_EXTENSION *extra)
{
    X509          *x;
    X509_NAME     *subj;
    GENERAL_NAMES *gens = NULL;
    BIGNUM        *bn = NULL;
    unsigned char  rnd[16];

    x = X509_new();
    if (x == NULL || X509_set_version(x, 2) != 1) {
        goto failed;
    }

    /* Positive 127-bit random serial: unique without any state. */
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        goto failed;
    }
    rnd[0] &= 0x7f;
    bn = BN_bin2bn(rnd, sizeof(rnd), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) {
        goto failed;
    }

    if (X509_gmtime_adj(X509_getm_notBefore(x), -ATLS_BACKDATE) == NULL
        || X509_gmtime_adj(X509_getm_notAfter(x), lifetime) == NULL) {
        goto failed;
    }

    subj = X509_get_subject_name(x);
    if (strlen(names[0]) <= ATLS_CN_MAX
        && X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8,
                                      (const unsigned char *) names[0],
                                      -1, -1, 0) != 1) {
        goto failed;
    }
    if (X509_set_issuer_name(x, subj) != 1 || X509_set_pubkey(x, key) != 1) {
        goto failed;
    }

    gens = atls_crypto_san_build(names, n);
    if (gens == NULL
        || X509_add1_ext_i2d(x, NID_subject_alt_name, gens,
                             X509_NAME_entry_count(subj) == 0, X509V3_ADD_DEFAULT) != 1) {
        goto failed;
    }
    if (extra != NULL && X509_add_ext(x, extra, -1) != 1) {
        goto failed;
    }
    if (X509_sign(x, key, EVP_sha256()) <= 0) {
        goto failed;
    }
    GENERAL_NAMES_free(gens);
    BN_free(bn);
    return x;

failed:
    GENERAL_NAMES_free(gens);
    BN_free(bn);
    X509_free(x);
    ERR_clear_error();
    return NULL;
}

/* id-pe-acmeIdentifier: critical, extnValue = DER OCTET STRING of the
 * SHA-256 of the key authorization (RFC 8737 §3). */
static X509_EXTENSION *
acme_identifier_ext(const char *key_authz)
{
    unsigned char      digest[32], *der = NULL, *p;
    unsigned int       dlen = 0;
    ASN1_OCTET_STRING *inner = NULL, *outer = NULL;
    ASN1_OBJECT       *obj = NULL;
    X509_EXTENSION    *ext = NULL;
    int                len;

    if (EVP_Digest(key_authz, strlen(key_authz), digest, &dlen,
                   EVP_sha256(), NULL) != 1 || dlen != sizeof(digest)) {
        goto done;
    }
    inner = ASN1_OCTET_STRING_new();
    if (inner == NULL || ASN1_OCTET_STRING_set(inner, digest, (int) dlen) != 1) {
        goto done;
    }
    len = i2d_ASN1_OCTET_STRING(inner, NULL);
    if (len <= 0 || (der = malloc((size_t) len)) == NULL) {
        goto done;
    }
    p = der;
    if (i2d_ASN1_OCTET_STRING(inner, &p) != len) {
        goto done;
    }
    outer = ASN1_OCTET_STRING_new();
    obj = OBJ_txt2obj(ATLS_ACME_ID_OID, 1);
    if (outer == NULL || obj == NULL
        || ASN1_OCTET_STRING_set(outer, der, len) != 1) {
        goto done;
    }
    ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 1, outer);

done:
    free(der);
    ASN1_OCTET_STRING_free(inner);
    ASN1_OCTET_STRING_free(outer);
    ASN1_OBJECT_free(obj);
    if (ext == NULL) {
        ERR_clear_error();
    }
    return ext;
}

int
atls_tls_alpn_cert(const char *identifier, const char *key_authz,
                   X509 **cert, EVP_PKEY **key)
{
    X509_EXTENSION *ext = NULL;
    EVP_PKEY       *k = NULL;
    X509           *x = NULL;
    const char     *names[1];

    if (identifier == NULL || identifier[0] == '\0' || key_authz == NULL
        || cert == NULL || key == NULL) {
        return -1;
    }
    *cert = NULL;
    *key = NULL;

    k = atls_key_generate(ATLS_KEY_EC256);
    ext = acme_identifier_ext(key_authz);
    if (k == NULL || ext == NULL) {
        goto failed;
    }
    names[0] = identifier;
    x = selfsigned_make(k, names, 1, ATLS_ALPN_VALIDITY, ext);
    if (x == NULL) {
        goto failed;
    }
    X509_EXTENSION_free(ext);
    *cert = x;
    *key = k;
    return 0;

failed:
    X509_EXTENSION_free(ext);
    EVP_PKEY_free(k);
    return -1;
}

int
atls_selfsigned_cert(const char *const *names, size_t n, atls_key_type_t t,
                     X509 **cert, EVP_PKEY **key)
{
    EVP_PKEY *k;
    X509     *x;

    if (names == NULL || n == 0 || names[0] == NULL || cert == NULL || key == NULL) {
        return -1;
    }
    *cert = NULL;
    *key = NULL;
    k = atls_key_generate(t);
    if (k == NULL) {
        return -1;
    }
    x = selfsigned_make(k, names, n, ATLS_FALLBACK_VALID, NULL);
    if (x == NULL) {
        EVP_PKEY_free(k);
        return -1;
    }
    *cert = x;
    *key = k;
    return 0;
}
