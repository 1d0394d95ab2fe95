/*
 * The ACME accounts in the store (accounts/<ca-id>/): their keys and
 * account records, written and looked at.  Moved from store.c; typed
 * helpers over the store ops like it, backend-agnostic.
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

/* ---- accounts -------------------------------------------------------------- */

static int
store_read_account_url(atls_store_t *st, const char *caid, char **url,
                       char *err, size_t errlen)
{
    char        *path, *data = NULL;
    size_t       len = 0;
    json_t      *root, *v;
    json_error_t jerr;
    int          rc;

    path = atls_store_cat("accounts/", caid, "/account.json", NULL);
    rc = st->ops->get(st, path, &data, &len, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        free(path);
        return ATLS_STORE_OK;
    }
    if (rc != ATLS_STORE_OK) {
        free(path);
        return rc;
    }
    root = json_loadb(data, len, 0, &jerr);
    v = json_object_get(root, "url");
    if (root == NULL) {
        char why[256];

        snprintf(why, sizeof(why), "invalid JSON at line %d: %s", jerr.line, jerr.text);
        atls_store_err_path(st, path, err, errlen, why);
        rc = ATLS_STORE_ERROR;
    } else if (v != NULL && !json_is_null(v) && !json_is_string(v)) {
        atls_store_err_path(st, path, err, errlen, "field \"url\" must be a string");
        rc = ATLS_STORE_ERROR;
    } else {
        *url = atls_strdup(json_string_value(v));
    }
    json_decref(root);
    free(data);
    free(path);
    return rc;
}

int
atls_store_load_account(atls_store_t *st, const char *directory_url,
                        EVP_PKEY **key, char **url, int *created,
                        char *err, size_t errlen)
{
    char              *caid, *path = NULL, *data = NULL, *pem = NULL, *lname = NULL;
    size_t             len = 0;
    EVP_PKEY          *k = NULL;
    atls_store_lock_t *lk = NULL;
    int                rc;

    if (key != NULL) {
        *key = NULL;
    }
    if (url != NULL) {
        *url = NULL;
    }
    if (created != NULL) {
        *created = 0;
    }
    caid = atls_ca_id(directory_url);
    if (caid == NULL) {
        snprintf(err, errlen, "account: no ACME directory URL");
        return ATLS_STORE_ERROR;
    }
    path = atls_store_cat("accounts/", caid, "/account.key", NULL);
    rc = st->ops->get(st, path, &data, &len, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        /* Two processes must not each create a key and overwrite the other's:
         * take the account lock and look again. */
        lname = atls_store_cat("account-", caid, NULL);
        rc = st->ops->lock(st, lname, 1, &lk, err, errlen);
        if (rc != ATLS_STORE_OK) {
            goto done;
        }
        rc = st->ops->get(st, path, &data, &len, err, errlen);
        if (rc == ATLS_STORE_NOTFOUND) {
            k = atls_key_generate(ATLS_KEY_EC256);
            pem = k ? atls_key_to_pem(k) : NULL;
            if (pem == NULL) {
                snprintf(err, errlen, "account: cannot generate a key");
                rc = ATLS_STORE_ERROR;
                goto done;
            }
            rc = st->ops->put(st, path, pem, strlen(pem), 1, err, errlen);
            if (rc != ATLS_STORE_OK) {
                goto done;
            }
            atls_log(ATLS_LOG_INFO, "store: created account key for %s", directory_url);
            if (created != NULL) {
                *created = 1;
            }
        }
        if (rc != ATLS_STORE_OK) {
            goto done;
        }
    } else if (rc != ATLS_STORE_OK) {
        goto done;
    }
    if (k == NULL) {
        k = atls_key_from_pem(data, len);
        if (k == NULL) {
            atls_store_err_path(st, path, err, errlen, "not a usable private key");
            rc = ATLS_STORE_ERROR;
            goto done;
        }
    }
    if (url != NULL) {
        rc = store_read_account_url(st, caid, url, err, errlen);
        if (rc != ATLS_STORE_OK) {
            goto done;
        }
    }
    if (key != NULL) {
        *key = k;
        k = NULL;
    }
    rc = ATLS_STORE_OK;

done:
    if (lk != NULL) {
        st->ops->unlock(st, lk);
    }
    if (data != NULL) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
    if (pem != NULL) {
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
    }
    EVP_PKEY_free(k);
    free(lname);
    free(path);
    free(caid);
    return rc;
}

int
atls_store_save_account(atls_store_t *st, const char *directory_url,
                        const char *url, char *const *contact, size_t n_contact,
                        char *err, size_t errlen)
{
    char   *caid, *path, *json;
    json_t *o, *c;
    size_t  i;
    int     rc;

    caid = atls_ca_id(directory_url);
    if (caid == NULL) {
        snprintf(err, errlen, "account: no ACME directory URL");
        return ATLS_STORE_ERROR;
    }
    o = json_object();
    c = json_array();
    if (o == NULL || c == NULL) {
        abort();
    }
    for (i = 0; i < n_contact; i++) {
        if (contact[i] != NULL) {
            json_array_append_new(c, json_string(contact[i]));
        }
    }
    json_object_set_new(o, "directory", json_string(directory_url));
    json_object_set_new(o, "url", url ? json_string(url) : json_null());
    json_object_set_new(o, "contact", c);
    json = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (json == NULL) {
        free(caid);
        snprintf(err, errlen, "account: cannot serialise");
        return ATLS_STORE_ERROR;
    }
    path = atls_store_cat("accounts/", caid, "/account.json", NULL);
    rc = st->ops->put(st, path, json, strlen(json), 0, err, errlen);
    free(path);
    free(json);
    free(caid);
    return rc;
}

/* ---- accounts, looked at --------------------------------------------------- */

int
atls_store_has_account(atls_store_t *st, const char *directory_url)
{
    char  *caid = atls_ca_id(directory_url), *path, *data = NULL, err[256];
    size_t len = 0;
    int    rc;

    if (caid == NULL) {
        return 0;
    }
    path = atls_store_cat("accounts/", caid, "/account.json", NULL);
    rc = st->ops->get(st, path, &data, &len, err, sizeof(err));
    free(data);
    free(path);
    free(caid);
    return rc == ATLS_STORE_OK;
}
