/*
 * The registry of dynamic names listed (atls_names.h): every entry read
 * (atls_names_list) or only the names its file names give
 * (atls_names_list_names).  Moved from store_names.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "names_int.h"
#include "store_int.h"

/* One directory entry ("<id>.json"); NOTFOUND for strangers and
 * temporary files, ERROR (err) for a broken entry. */
static int
names_load_file(atls_store_t *st, const char *file, atls_name_entry_t *e,
                char *err, size_t errlen)
{
    size_t  n = strlen(file), idlen;
    char   *path, *id;
    int     rc;

    idlen = n > sizeof(NAMES_EXT) - 1 ? n - (sizeof(NAMES_EXT) - 1) : 0;
    if (idlen == 0 || strcmp(file + idlen, NAMES_EXT) != 0) {
        return ATLS_STORE_NOTFOUND;
    }
    path = atls_store_cat(NAMES_DIR "/", file, NULL);
    rc = atls_names_read(st, path, NULL, e, err, errlen);
    if (rc == ATLS_STORE_OK) {
        id = atls_cert_id(e->name);
        if (id == NULL || strlen(id) != idlen || strncmp(id, file, idlen) != 0) {
            atls_store_err_path(st, path, err, errlen, "its \"name\" is not its file name");
            atls_name_entry_free(e);
            rc = ATLS_STORE_ERROR;
        }
        free(id);
    }
    free(path);
    return rc;
}

/* The file names under names/ (none when there is no registry yet). */
static int
names_files(atls_store_t *st, char ***files, size_t *nf, char *err, size_t errlen)
{
    int rc = st->ops->list(st, NAMES_DIR, files, nf, err, errlen);

    if (rc == ATLS_STORE_NOTFOUND) {
        *files = NULL;
        *nf = 0;
        rc = ATLS_STORE_OK;
    }
    return rc;
}

static int
names_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const atls_name_entry_t *) a)->name, ((const atls_name_entry_t *) b)->name);
}

int
atls_names_list(atls_store_t *st, atls_name_entry_t **v, size_t *n, char *err, size_t errlen)
{
    char              **files = NULL, why[512];
    size_t              nf = 0, i;
    atls_name_entry_t  *out;
    int                 rc;

    *v = NULL;
    *n = 0;
    rc = names_files(st, &files, &nf, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    out = calloc(nf + 1, sizeof(*out));
    if (out == NULL) {
        abort();
    }
    for (i = 0; i < nf; i++) {
        rc = names_load_file(st, files[i], &out[*n], why, sizeof(why));
        if (rc == ATLS_STORE_OK) {
            (*n)++;
        } else if (rc == ATLS_STORE_ERROR) {
            atls_log(ATLS_LOG_WARN, "names: entry skipped: %s", why);
        }
    }
    atls_strv_free(files, nf);
    /* by name: file names sort differently ("a-b.json" before "a.json") */
    qsort(out, *n, sizeof(*out), names_entry_cmp);
    *v = out;
    return ATLS_STORE_OK;
}

static int
names_str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* "<id>.json", and an id is its name: only the ones a name can be */
int
atls_names_file_name(char *file)
{
    char   folded[256], why[160];
    size_t len = strlen(file);

    if (len <= sizeof(NAMES_EXT) - 1
        || strcmp(file + len - (sizeof(NAMES_EXT) - 1), NAMES_EXT) != 0)
    {
        return 0;
    }
    file[len - (sizeof(NAMES_EXT) - 1)] = '\0';
    return atls_name_check(file, strlen(file), 1, 127, folded, sizeof(folded), why,
                           sizeof(why)) == 0
           && strcmp(folded, file) == 0;
}

int
atls_names_list_names(atls_store_t *st, char ***names, size_t *n, char *err, size_t errlen)
{
    char  **files = NULL;
    size_t  nf = 0, i, k = 0;
    int     rc;

    *names = NULL;
    *n = 0;
    rc = names_files(st, &files, &nf, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    for (i = 0; i < nf; i++) {
        if (atls_names_file_name(files[i])) {
            files[k++] = files[i];
        } else {
            free(files[i]);
        }
    }
    qsort(files, k, sizeof(*files), names_str_cmp);
    *names = files;
    *n = k;
    return ATLS_STORE_OK;
}
