/*
 * Fallback certificates in the store (fallback/<id>/): the self-signed
 * certificate a name is served with until its real one is there.  Moved
 * from store.c; typed helpers over the store ops like it, backend-agnostic.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include "atls_b64.h"
#include "atls_store.h"
#include "store_int.h"

/* ---- fallback certificates ------------------------------------------------- */

/* fallback/<id>/<keytype>.<ext>; NULL (err set) when id or kt does not pass. */
static char *
fallback_path(const char *id, atls_key_type_t kt, const char *ext, char *err, size_t errlen)
{
    const char *ktn = atls_key_type_name(kt);

    if (!atls_store_id_ok(id) || ktn == NULL) {
        snprintf(err, errlen, "invalid certificate id or key type");
        return NULL;
    }
    return atls_store_cat("fallback/", id, "/", ktn, ".", ext, NULL);
}

int
atls_store_save_fallback(atls_store_t *st, const char *id, atls_key_type_t kt,
                         EVP_PKEY *key, X509 *cert, char *err, size_t errlen)
{
    STACK_OF(X509) *one = NULL;
    char           *kpath, *cpath, *kpem = NULL, *cpem = NULL, why[256];
    int             rc = ATLS_STORE_ERROR;

    kpath = fallback_path(id, kt, "key", err, errlen);
    cpath = fallback_path(id, kt, "crt", err, errlen);
    if (kpath == NULL || cpath == NULL || key == NULL || cert == NULL) {
        snprintf(err, errlen, "save fallback: invalid arguments");
        goto done;
    }
    one = sk_X509_new_null();
    if (one == NULL || !sk_X509_push(one, cert)) {
        abort();
    }
    if (atls_key_type_of(key) != kt) {
        snprintf(err, errlen, "fallback %s (%s): key of another type", id,
                 atls_key_type_name(kt));
        goto done;
    }
    if (atls_chain_check(one, key, NULL, 0, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "fallback %s (%s): %s", id, atls_key_type_name(kt), why);
        goto done;
    }
    kpem = atls_key_to_pem(key);
    cpem = atls_chain_to_pem(one);
    if (kpem == NULL || cpem == NULL) {
        snprintf(err, errlen, "fallback %s (%s): cannot encode PEM", id,
                 atls_key_type_name(kt));
        goto done;
    }
    /* Key first: a crash between the two leaves a pair that does not match,
     * which load refuses, so the next start makes a new one. */
    rc = st->ops->put(st, kpath, kpem, strlen(kpem), 1, err, errlen);
    if (rc == ATLS_STORE_OK) {
        rc = st->ops->put(st, cpath, cpem, strlen(cpem), 0, err, errlen);
    }

done:
    if (kpem != NULL) {
        OPENSSL_cleanse(kpem, strlen(kpem));
        free(kpem);
    }
    free(cpem);
    free(kpath);
    free(cpath);
    sk_X509_free(one);     /* cert stays the caller's */
    return rc;
}

int
atls_store_load_fallback(atls_store_t *st, const char *id, atls_key_type_t kt,
                         EVP_PKEY **key, STACK_OF(X509) **chain, char *err, size_t errlen)
{
    char   *kpath, *cpath, *kpem = NULL, *cpem = NULL;
    size_t  klen = 0, clen = 0;
    int     rc = ATLS_STORE_ERROR;

    *key = NULL;
    *chain = NULL;
    kpath = fallback_path(id, kt, "key", err, errlen);
    cpath = fallback_path(id, kt, "crt", err, errlen);
    if (kpath == NULL || cpath == NULL) {
        goto done;
    }
    rc = st->ops->get(st, cpath, &cpem, &clen, err, errlen);
    if (rc == ATLS_STORE_OK) {
        rc = st->ops->get(st, kpath, &kpem, &klen, err, errlen);
    }
    if (rc == ATLS_STORE_OK) {
        /* refuses a pair half-written by a crash, or one the owner changed */
        rc = atls_store_parse_pair(st, kpem, klen, kpath, cpem, clen, cpath, key, chain,
                              err, errlen);
    }
    if (rc == ATLS_STORE_OK && atls_key_type_of(*key) != kt) {
        atls_store_err_path(st, kpath, err, errlen, "key of another type");
        EVP_PKEY_free(*key);
        atls_chain_free(*chain);
        *key = NULL;
        *chain = NULL;
        rc = ATLS_STORE_ERROR;
    }

done:
    if (kpem != NULL) {
        OPENSSL_cleanse(kpem, klen);
        free(kpem);
    }
    free(cpem);
    free(kpath);
    free(cpath);
    return rc;
}

int
atls_store_del_fallback(atls_store_t *st, const char *id, atls_key_type_t kt,
                        char *err, size_t errlen)
{
    char *kpath, *cpath;
    int   rc = ATLS_STORE_ERROR, rc_crt, rc_key;

    kpath = fallback_path(id, kt, "key", err, errlen);
    cpath = fallback_path(id, kt, "crt", err, errlen);
    if (kpath == NULL || cpath == NULL) {
        goto done;
    }
    /* certificate first: a key left alone is never served */
    rc_crt = st->ops->del(st, cpath, err, errlen);
    if (rc_crt == ATLS_STORE_ERROR) {
        goto done;
    }
    rc_key = st->ops->del(st, kpath, err, errlen);
    if (rc_key == ATLS_STORE_ERROR) {
        goto done;
    }
    rc = (rc_crt == ATLS_STORE_OK || rc_key == ATLS_STORE_OK) ? ATLS_STORE_OK
                                                               : ATLS_STORE_NOTFOUND;
done:
    free(kpath);
    free(cpath);
    return rc;
}

/* Whether name is "<keytype>.crt" or "<keytype>.key" of one of keep. */
static int
fallback_kept(const char *name, const atls_key_type_t *keep, size_t n_keep)
{
    size_t i, l;

    for (i = 0; i < n_keep; i++) {
        const char *ktn = atls_key_type_name(keep[i]);

        l = ktn != NULL ? strlen(ktn) : 0;
        if (l > 0 && strncmp(name, ktn, l) == 0
            && (strcmp(name + l, ".crt") == 0 || strcmp(name + l, ".key") == 0))
        {
            return 1;
        }
    }
    return 0;
}

int
atls_store_prune_fallbacks(atls_store_t *st, const char *id, const atls_key_type_t *keep,
                           size_t n_keep, char *err, size_t errlen)
{
    char  **names = NULL, *dir, *path;
    size_t  n = 0, i;
    int     rc;

    if (!atls_store_id_ok(id)) {
        snprintf(err, errlen, "invalid certificate id \"%s\"", id ? id : "(null)");
        return ATLS_STORE_ERROR;
    }
    dir = atls_store_cat("fallback/", id, NULL);
    rc = st->ops->list(st, dir, &names, &n, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        rc = ATLS_STORE_OK;
    }
    for (i = 0; rc == ATLS_STORE_OK && i < n; i++) {
        if (!fallback_kept(names[i], keep, n_keep)) {
            path = atls_store_cat(dir, "/", names[i], NULL);
            if (st->ops->del(st, path, err, errlen) == ATLS_STORE_ERROR) {
                rc = ATLS_STORE_ERROR;
            }
            free(path);
        }
    }
    atls_strv_free(names, n);
    free(dir);
    return rc;
}
