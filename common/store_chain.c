/*
 * Certificate-only reads of a stored certificate, for code that shows
 * certificates and never needs their key (the status pages).
 *
 * certs/<id>/<keytype>.pem holds the key PEM block, then the chain.  Only
 * what follows the key block is handed to the certificate parser: the key
 * block is skipped as text, never base64-decoded nor parsed, so a status
 * request costs no key decoding (the dominant cost of a full load) and a
 * damaged key block does not hide the certificate from the operator.
 * Only the leaf is decoded: what a status shows is the leaf's, and with
 * OpenSSL 3 each decoded certificate costs a public-key decoder run.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include "atls_store.h"

#define CERT_BEGIN  "-----BEGIN CERTIFICATE-----"

/* The first CERTIFICATE block that starts a line, or NULL. */
static const char *
chain_start(const char *data, size_t len)
{
    const char *p = data, *end = data + len;

    while (p < end) {
        if ((size_t) (end - p) >= sizeof(CERT_BEGIN) - 1
            && memcmp(p, CERT_BEGIN, sizeof(CERT_BEGIN) - 1) == 0)
        {
            return p;
        }
        p = memchr(p, '\n', (size_t) (end - p));
        if (p == NULL) {
            return NULL;
        }
        p++;
    }
    return NULL;
}

/* The first certificate of the PEM text, or NULL with why. */
static X509 *
leaf_parse(const char *pem, size_t len, char *why, size_t whylen)
{
    BIO  *bio;
    X509 *x = NULL;

    if (len > INT_MAX) {
        snprintf(why, whylen, "file too large");
        return NULL;
    }
    bio = BIO_new_mem_buf(pem, (int) len);
    if (bio != NULL) {
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    }
    if (x == NULL) {
        snprintf(why, whylen, "unreadable certificate");
    }
    BIO_free(bio);
    ERR_clear_error();
    return x;
}

int
atls_store_load_leaf(atls_store_t *st, const char *id, atls_key_type_t kt,
                     X509 **leaf, char *err, size_t errlen)
{
    const char *ktn = atls_key_type_name(kt), *certs;
    char        path[512], why[256], *data = NULL;
    size_t      len = 0;
    int         rc;

    *leaf = NULL;
    /* an id is exactly one path component */
    if (id == NULL || *id == '\0' || *id == '.' || strchr(id, '/') != NULL
        || ktn == NULL
        || (size_t) snprintf(path, sizeof(path), "certs/%s/%s.pem", id, ktn)
           >= sizeof(path))
    {
        snprintf(err, errlen, "invalid certificate id or key type");
        return ATLS_STORE_ERROR;
    }
    rc = st->ops->get(st, path, &data, &len, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    certs = chain_start(data, len);
    if (certs == NULL) {
        snprintf(why, sizeof(why), "no certificate in file");
    } else {
        *leaf = leaf_parse(certs, len - (size_t) (certs - data), why, sizeof(why));
    }
    if (*leaf == NULL) {
        snprintf(err, errlen, "%s/%s: %s", st->location ? st->location : "", path, why);
        rc = ATLS_STORE_ERROR;
    }
    OPENSSL_cleanse(data, len);    /* the key block was in there */
    free(data);
    return rc;
}
