/*
 * A certificate's key and chain in the store (certs/<id>/<keytype>.pem:
 * the key PEM, then the chain PEM): loading them parsed and checked to
 * belong together, the leaf (and its issuer) alone, and saving them.
 * Split from store.c, which keeps the ids, paths and the other typed
 * helpers.  Backend-agnostic.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include "atls_store.h"
#include "store_int.h"
/* ---- key + chain ----------------------------------------------------------- */

/* Reads certs/<id>/<keytype>.pem (key PEM, then chain PEM) and finds where
 * the chain starts, so neither parser has to skip the other's blocks.  On
 * ATLS_STORE_OK the caller owns *data (cleanse it: the key is in there) and
 * *path; *certs points into *data. */
static int
store_read_cert_file(atls_store_t *st, const char *id, atls_key_type_t kt,
                     char **path, char **data, size_t *len, const char **certs,
                     char *err, size_t errlen)
{
    const char *ktn = atls_key_type_name(kt);
    int         rc;

    *path = NULL;
    *data = NULL;
    *len = 0;
    if (!atls_store_id_ok(id) || ktn == NULL) {
        snprintf(err, errlen, "invalid certificate id or key type");
        return ATLS_STORE_ERROR;
    }
    *path = atls_store_cat("certs/", id, "/", ktn, ".pem", NULL);
    rc = st->ops->get(st, *path, data, len, err, errlen);
    if (rc != ATLS_STORE_OK) {
        free(*path);
        *path = NULL;
        return rc;
    }
    *certs = strstr(*data, "-----BEGIN CERTIFICATE-----");
    if (*certs == NULL) {
        atls_store_err_path(st, *path, err, errlen, "no certificate in file");
        OPENSSL_cleanse(*data, *len);
        free(*data);
        free(*path);
        *data = *path = NULL;
        return ATLS_STORE_ERROR;
    }
    return ATLS_STORE_OK;
}

/* A private key and the chain it belongs to, parsed and checked to match:
 * what load_cert and load_fallback hand out.  kpath and cpath name the
 * files in err.  On error both outs are NULL. */
int
atls_store_parse_pair(atls_store_t *st, const char *kpem, size_t klen, const char *kpath,
                      const char *cpem, size_t clen, const char *cpath, EVP_PKEY **key,
                      STACK_OF(X509) **chain, char *err, size_t errlen)
{
    char why[256];

    *chain = NULL;
    *key = atls_key_from_pem(kpem, klen);
    if (*key == NULL) {
        atls_store_err_path(st, kpath, err, errlen, "no usable private key in file");
        return ATLS_STORE_ERROR;
    }
    *chain = atls_chain_parse(cpem, clen, why, sizeof(why));
    if (*chain == NULL || atls_chain_check(*chain, *key, NULL, 0, why, sizeof(why)) != 0) {
        atls_store_err_path(st, cpath, err, errlen, why);
        EVP_PKEY_free(*key);
        atls_chain_free(*chain);
        *key = NULL;
        *chain = NULL;
        return ATLS_STORE_ERROR;
    }
    return ATLS_STORE_OK;
}

int
atls_store_load_cert(atls_store_t *st, const char *id, atls_key_type_t kt,
                     EVP_PKEY **key, STACK_OF(X509) **chain, char *err, size_t errlen)
{
    const char     *certs;
    char           *path, *data;
    size_t          len, klen;
    EVP_PKEY       *k = NULL;
    STACK_OF(X509) *c = NULL;
    int             rc;

    if (key != NULL) {
        *key = NULL;
    }
    if (chain != NULL) {
        *chain = NULL;
    }
    rc = store_read_cert_file(st, id, kt, &path, &data, &len, &certs, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    klen = (size_t) (certs - data);
    rc = atls_store_parse_pair(st, data, klen, path, certs, len - klen, path, &k, &c,
                          err, errlen);
    if (rc == ATLS_STORE_OK && key != NULL) {
        *key = k;
        k = NULL;
    }
    if (rc == ATLS_STORE_OK && chain != NULL) {
        *chain = c;
        c = NULL;
    }
    OPENSSL_cleanse(data, len);
    free(data);
    free(path);
    EVP_PKEY_free(k);
    atls_chain_free(c);
    return rc;
}

/*
 * The leaf alone, for code that shows certificates and never needs their key
 * (the status pages): the key block is skipped as text, never decoded, so a
 * status request costs no key decoding (the dominant cost of a full load)
 * and a damaged key block does not hide the certificate from the operator.
 * Only the leaf is decoded: with OpenSSL 3 every decoded certificate costs a
 * public-key decoder run.
 */
int
atls_store_load_leaf(atls_store_t *st, const char *id, atls_key_type_t kt,
                     X509 **leaf, char *err, size_t errlen)
{
    return atls_store_load_leaf_issuer(st, id, kt, leaf, NULL, err, errlen);
}

int
atls_store_load_leaf_issuer(atls_store_t *st, const char *id, atls_key_type_t kt,
                            X509 **leaf, X509 **issuer, char *err, size_t errlen)
{
    const char *certs;
    char       *path, *data;
    size_t      len;
    BIO        *bio;
    int         rc;

    *leaf = NULL;
    if (issuer != NULL) {
        *issuer = NULL;
    }
    rc = store_read_cert_file(st, id, kt, &path, &data, &len, &certs, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    bio = BIO_new_mem_buf(certs, (int) (len - (size_t) (certs - data)));
    if (bio != NULL) {
        *leaf = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (*leaf != NULL && issuer != NULL) {
            *issuer = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        }
    }
    BIO_free(bio);
    ERR_clear_error();
    if (*leaf == NULL) {
        atls_store_err_path(st, path, err, errlen, "unreadable certificate");
        rc = ATLS_STORE_ERROR;
    }
    OPENSSL_cleanse(data, len);
    free(data);
    free(path);
    return rc;
}

int
atls_store_save_cert(atls_store_t *st, const char *id, atls_key_type_t kt,
                     EVP_PKEY *key, const char *chain_pem, char *err, size_t errlen)
{
    const char     *ktn = atls_key_type_name(kt);
    STACK_OF(X509) *chain = NULL;
    char           *kpem = NULL, *cpem = NULL, *buf = NULL, *path = NULL, why[256];
    size_t          klen, clen;
    int             rc = ATLS_STORE_ERROR;

    if (!atls_store_id_ok(id) || ktn == NULL || key == NULL || chain_pem == NULL) {
        snprintf(err, errlen, "save certificate: invalid arguments");
        return ATLS_STORE_ERROR;
    }
    chain = atls_chain_parse(chain_pem, strlen(chain_pem), why, sizeof(why));
    if (chain == NULL) {
        snprintf(err, errlen, "certificate %s (%s): %s", id, ktn, why);
        return ATLS_STORE_ERROR;
    }
    /* Never let a key/chain mismatch reach the file the server loads. */
    if (atls_chain_check(chain, key, NULL, 0, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "certificate %s (%s): %s", id, ktn, why);
        goto done;
    }
    kpem = atls_key_to_pem(key);
    cpem = atls_chain_to_pem(chain);
    if (kpem == NULL || cpem == NULL) {
        snprintf(err, errlen, "certificate %s (%s): cannot encode PEM", id, ktn);
        goto done;
    }
    klen = strlen(kpem);
    clen = strlen(cpem);
    buf = malloc(klen + clen + 1);
    if (buf == NULL) {
        abort();
    }
    memcpy(buf, kpem, klen);
    memcpy(buf + klen, cpem, clen + 1);
    path = atls_store_cat("certs/", id, "/", ktn, ".pem", NULL);
    rc = st->ops->put(st, path, buf, klen + clen, 1, err, errlen);

done:
    if (kpem != NULL) {
        OPENSSL_cleanse(kpem, strlen(kpem));
        free(kpem);
    }
    if (buf != NULL) {
        OPENSSL_cleanse(buf, klen + clen);
        free(buf);
    }
    free(cpem);
    free(path);
    atls_chain_free(chain);
    return rc;
}
