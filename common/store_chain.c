/*
 * Chain-only reads of a stored certificate, for code that shows
 * certificates and never needs their key (the status pages).
 *
 * certs/<id>/<keytype>.pem holds the key PEM block, then the chain.  Only
 * what follows the key block is handed to the certificate parser: the key
 * block is skipped as text, never base64-decoded nor parsed, so a status
 * request costs no key decoding (the dominant cost of a full load) and a
 * damaged key block does not hide the certificate from the operator.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
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

int
atls_store_load_chain(atls_store_t *st, const char *id, atls_key_type_t kt,
                      STACK_OF(X509) **chain, char *err, size_t errlen)
{
    const char *ktn = atls_key_type_name(kt), *certs;
    char        path[512], why[256], *data = NULL;
    size_t      len = 0;
    int         rc;

    *chain = NULL;
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
        snprintf(err, errlen, "%s/%s: no certificate in file",
                 st->location ? st->location : "", path);
        rc = ATLS_STORE_ERROR;
    } else {
        *chain = atls_chain_parse(certs, len - (size_t) (certs - data), why, sizeof(why));
        if (*chain == NULL) {
            snprintf(err, errlen, "%s/%s: %s", st->location ? st->location : "",
                     path, why);
            rc = ATLS_STORE_ERROR;
        }
    }
    OPENSSL_cleanse(data, len);    /* the key block was in there */
    free(data);
    return rc;
}
