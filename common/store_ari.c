/*
 * The per-directory renewal information record (store_ari.h): one small
 * public file beside the directory's account, read strictly like every
 * other store entry (it is as untrusted as the rest of the store).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "atls.h"
#include "store_ari.h"
#include "store_int.h"

static char *
ari_path(const char *directory, char *err, size_t errlen)
{
    char *caid = atls_ca_id(directory), *path;

    if (caid == NULL) {
        snprintf(err, errlen, "renewal information record: no ACME directory URL");
        return NULL;
    }
    path = atls_store_cat("accounts/", caid, "/ari.json", NULL);
    free(caid);
    return path;
}

int
atls_store_load_ari_dir(atls_store_t *st, const char *directory, time_t *no_ari_until,
                        char *err, size_t errlen)
{
    json_error_t jerr;
    json_t      *root = NULL;
    char        *path, *data = NULL, why[256];
    size_t       len = 0;
    int          rc;

    *no_ari_until = 0;
    path = ari_path(directory, err, errlen);
    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = st->ops->get(st, path, &data, &len, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        rc = ATLS_STORE_OK;     /* nothing learned yet */
        goto done;
    }
    if (rc != ATLS_STORE_OK) {
        goto done;
    }
    root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        snprintf(why, sizeof(why), "not a JSON object%s%s", root ? "" : ": ",
                 root ? "" : jerr.text);
        atls_store_err_path(st, path, err, errlen, why);
        rc = ATLS_STORE_ERROR;
        goto done;
    }
    if (atls_meta_get_time(root, "no_ari_until", no_ari_until, why, sizeof(why)) != 0) {
        atls_store_err_path(st, path, err, errlen, why);
        *no_ari_until = 0;
        rc = ATLS_STORE_ERROR;
    }

done:
    json_decref(root);
    free(data);
    free(path);
    return rc;
}

int
atls_store_save_ari_dir(atls_store_t *st, const char *directory, time_t no_ari_until,
                        char *err, size_t errlen)
{
    json_t *o;
    char   *path, *json = NULL;
    int     rc;

    path = ari_path(directory, err, errlen);
    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    if (no_ari_until <= 0) {
        rc = st->ops->del(st, path, err, errlen);
        free(path);
        return rc == ATLS_STORE_NOTFOUND ? ATLS_STORE_OK : rc;
    }
    o = json_object();
    if (o != NULL && atls_meta_set_time(o, "no_ari_until", no_ari_until) == 0) {
        json = json_dumps(o, JSON_COMPACT);
    }
    json_decref(o);
    if (json == NULL) {
        snprintf(err, errlen, "renewal information record: out of memory");
        free(path);
        return ATLS_STORE_ERROR;
    }
    /* public: a fact about the CA, no secret */
    rc = st->ops->put(st, path, json, strlen(json), 0, err, errlen);
    free(json);
    free(path);
    return rc;
}
