/*
 * Batches over the store ops (atls_store.h): a backend with its own
 * put_many writes many files of one directory with O(1) syncs; the others
 * (Redis: no fsync to save) are written with put, one after the other,
 * which gives the same answer (*done: the files written, from the first).
 * And get with a size bound, for the small files a privileged process
 * reads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "store_int.h"

/* every name one component of dir */
static int
batch_names_ok(const char *dir, const atls_store_file_t *files, size_t n, char *err,
               size_t errlen)
{
    size_t i;

    if (!atls_store_path_ok(dir, 0)) {
        snprintf(err, errlen, "invalid store path \"%s\"", dir != NULL ? dir : "(null)");
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (files[i].name == NULL || !atls_store_id_ok(files[i].name)) {
            snprintf(err, errlen, "%s: invalid file name \"%s\" in a batch", dir,
                     files[i].name != NULL ? files[i].name : "(null)");
            return 0;
        }
    }
    return 1;
}

static int
batch_put_each(atls_store_t *st, const char *dir, const atls_store_file_t *files, size_t n,
               size_t *done, char *err, size_t errlen)
{
    char  *path;
    size_t i;
    int    rc = ATLS_STORE_OK;

    for (i = 0; i < n && rc == ATLS_STORE_OK; i++) {
        path = atls_store_cat(dir, "/", files[i].name, NULL);
        rc = st->ops->put(st, path, files[i].data, files[i].len, files[i].is_private,
                          err, errlen);
        free(path);
        *done += rc == ATLS_STORE_OK;
    }
    return rc;
}

int
atls_store_put_many(atls_store_t *st, const char *dir, const atls_store_file_t *files,
                    size_t n, size_t *done, char *err, size_t errlen)
{
    *done = 0;
    if (n == 0) {
        return ATLS_STORE_OK;
    }
    if (!batch_names_ok(dir, files, n, err, errlen)) {
        return ATLS_STORE_ERROR;
    }
    if (st->ops->put_many != NULL) {
        return st->ops->put_many(st, dir, files, n, done, err, errlen);
    }
    return batch_put_each(st, dir, files, n, done, err, errlen);
}

int
atls_store_put_groups(atls_store_t *st, const atls_store_group_t *groups, size_t n,
                      size_t *done, char *err, size_t errlen)
{
    size_t i, files;
    int    rc = ATLS_STORE_OK;

    *done = 0;
    for (i = 0; i < n; i++) {
        if (!batch_names_ok(groups[i].dir, groups[i].files, groups[i].n, err, errlen)) {
            return ATLS_STORE_ERROR;
        }
    }
    if (n > 0 && st->ops->put_groups != NULL) {
        return st->ops->put_groups(st, groups, n, done, err, errlen);
    }
    for (i = 0; i < n && rc == ATLS_STORE_OK; i++) {
        rc = atls_store_put_many(st, groups[i].dir, groups[i].files, groups[i].n, &files,
                                 err, errlen);
        *done += rc == ATLS_STORE_OK;
    }
    return rc;
}

int
atls_store_get_max(atls_store_t *st, const char *path, size_t max, char **data,
                   size_t *len, char *err, size_t errlen)
{
    size_t got = 0;
    int    rc;

    if (st->ops->get_max != NULL) {
        return st->ops->get_max(st, path, max, data, len, err, errlen);
    }
    rc = st->ops->get(st, path, data, &got, err, errlen);
    if (rc == ATLS_STORE_OK && got > max) {
        char why[64];

        snprintf(why, sizeof(why), "larger than %zu bytes, refused", max);
        atls_store_err_path(st, path, err, errlen, why);
        free(*data);
        *data = NULL;
        got = 0;
        rc = ATLS_STORE_ERROR;
    }
    if (len != NULL) {
        *len = got;
    }
    return rc;
}
