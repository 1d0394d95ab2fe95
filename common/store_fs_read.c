/*
 * Filesystem store backend: the read ops (get, get_max, list and the paged
 * listing), each as the store's owner, every path resolved beneath the
 * root and every file refused unless regular (store_fs.c says why).
 * Reads are capped per path (fs_read_cap).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "atls_priv.h"
#include "atls_store.h"
#include "store_fs_int.h"
#include "store_int.h"

/* The most read from rel: the CRLs of the CRL cache (crl/<url-id>.der)
 * may be as large as a CA's CRL gets; everything else stays under the
 * store's usual cap. */
static size_t
fs_read_cap(const char *rel)
{
    size_t n = strlen(rel);

    if (strncmp(rel, "crl/", 4) == 0 && strchr(rel + 4, '/') == NULL
        && n > 8 && strcmp(rel + n - 4, ".der") == 0)
    {
        return ATLS_CRL_MAX_BYTES;
    }
    /* rotated once past ATLS_AUDIT_ROTATE_BYTES: concurrent appenders may
     * each add a record beyond it before one of them rotates */
    if (strncmp(rel, "audit.log", 9) == 0 && strchr(rel, '/') == NULL) {
        return 2 * ATLS_AUDIT_ROTATE_BYTES + FS_MAX_READ;
    }
    return FS_MAX_READ;
}

/* At most max bytes of fd (rel for messages), or refused before more is
 * read. */
static int
fs_read_all(fs_impl_t *fs, int fd, const char *rel, size_t max, char **data, size_t *len,
            char *err, size_t errlen)
{
    char    *buf, *nb, why[64];
    size_t   cap = max < 4096 ? max + 2 : 4096, n = 0;
    ssize_t  r;

    buf = malloc(cap);
    if (buf == NULL) {
        abort();
    }
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                abort();
            }
            buf = nb;
        }
        r = read(fd, buf + n, cap - n - 1);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            atls_fs_error(fs, err, errlen, "read", rel, strerror(errno));
            free(buf);
            return -1;
        }
        if (r == 0) {
            break;
        }
        n += (size_t) r;
        if (n > max) {
            if (max >= 1024 * 1024) {
                snprintf(why, sizeof(why), "larger than %zu MiB, refused", max >> 20);
            } else {
                snprintf(why, sizeof(why), "larger than %zu bytes, refused", max);
            }
            atls_fs_error(fs, err, errlen, NULL, rel, why);
            free(buf);
            return -1;
        }
    }
    buf[n] = '\0';
    *data = buf;
    if (len != NULL) {
        *len = n;
    }
    return 0;
}

static int
fs_get_as(fs_impl_t *fs, const char *path, size_t max, char **data, size_t *len,
          char *err, size_t errlen)
{
    int fd, rc;

    fd = atls_fs_open_read(fs, path, err, errlen);
    if (fd < 0) {
        return errno == ENOENT ? ATLS_STORE_NOTFOUND : ATLS_STORE_ERROR;
    }
    rc = fs_read_all(fs, fd, path, max, data, len, err, errlen) == 0
         ? ATLS_STORE_OK : ATLS_STORE_ERROR;
    close(fd);
    return rc;
}

static int
fs_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* dir opened for readdir, as the owner: *d NULL (and ATLS_STORE_OK) when
 * it does not exist, the same answer as a key-value backend gives for an
 * empty prefix */
static int
fs_dir_stream(fs_impl_t *fs, const char *dir, DIR **d, char *err, size_t errlen)
{
    int fd;

    *d = NULL;
    fd = atls_fs_dir_open(fs, dir, 0);
    if (fd < 0) {
        if (errno == ENOENT) {
            return ATLS_STORE_OK;
        }
        atls_fs_error(fs, err, errlen, NULL, dir, atls_fs_strerror(errno));
        return ATLS_STORE_ERROR;
    }
    *d = fdopendir(fd);
    if (*d == NULL) {
        atls_fs_error(fs, err, errlen, NULL, dir, strerror(errno));
        close(fd);
        return ATLS_STORE_ERROR;
    }
    return ATLS_STORE_OK;
}

static int
fs_list_as(fs_impl_t *fs, const char *dir, char ***names, size_t *n,
           char *err, size_t errlen)
{
    char          **v = NULL, **nv;
    size_t          cnt = 0, cap = 0;
    DIR            *d;
    struct dirent  *de;
    int             rc;

    rc = fs_dir_stream(fs, dir, &d, err, errlen);
    if (d == NULL) {
        return rc;
    }
    while ((de = readdir(d)) != NULL) {
        /* dot files include our own temp files and ".", ".." */
        if (de->d_name[0] == '.') {
            continue;
        }
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            nv = realloc(v, cap * sizeof(*v));
            if (nv == NULL) {
                abort();
            }
            v = nv;
        }
        v[cnt++] = atls_strdup(de->d_name);
    }
    closedir(d);
    if (cnt > 0) {
        qsort(v, cnt, sizeof(*v), fs_cmp);
    }
    *names = v;
    *n = cnt;
    return ATLS_STORE_OK;
}

/* get, refusing more than max bytes (at most the path's usual cap) */
int
atls_fs_get_max(atls_store_t *st, const char *path, size_t max, char **data, size_t *len,
                char *err, size_t errlen)
{
    fs_impl_t   *fs = st->impl;
    atls_fsid_t  id;
    int          rc;

    *data = NULL;
    if (len != NULL) {
        *len = 0;
    }
    if (atls_fs_begin(fs, path, 0, &id, err, errlen) != 0) {
        return ATLS_STORE_ERROR;
    }
    if (max > fs_read_cap(path)) {
        max = fs_read_cap(path);
    }
    rc = fs_get_as(fs, path, max, data, len, err, errlen);
    atls_fsid_leave(&id);
    return rc;
}

int
atls_fs_get(atls_store_t *st, const char *path, char **data, size_t *len,
            char *err, size_t errlen)
{
    return atls_fs_get_max(st, path, SIZE_MAX, data, len, err, errlen);
}

int
atls_fs_list(atls_store_t *st, const char *dir, char ***names, size_t *n,
             char *err, size_t errlen)
{
    fs_impl_t   *fs = st->impl;
    atls_fsid_t  id;
    int          rc;

    *names = NULL;
    *n = 0;
    if (dir == NULL) {
        dir = "";
    }
    if (atls_fs_begin(fs, dir, 1, &id, err, errlen) != 0) {
        return ATLS_STORE_ERROR;
    }
    rc = fs_list_as(fs, dir, names, n, err, errlen);
    atls_fsid_leave(&id);
    return rc;
}

/* The paged listing: one open directory read a page at a time (readdir
 * gives each entry present throughout once, whatever is added or removed
 * meanwhile), so 100,000 entries never cost one long call. */
void
atls_fs_list_end(atls_store_t *st, void *cursor)
{
    (void) st;
    if (cursor != NULL) {
        closedir(cursor);
    }
}

int
atls_fs_list_page(atls_store_t *st, const char *dir, void **cursor, size_t max,
                  char ***names, size_t *n, char *err, size_t errlen)
{
    fs_impl_t      *fs = st->impl;
    atls_fsid_t     id;
    DIR            *d = *cursor;
    struct dirent  *de;
    char          **v;
    int             rc;

    *names = NULL;
    *n = 0;
    if (d == NULL) {
        if (dir == NULL) {
            dir = "";
        }
        if (atls_fs_begin(fs, dir, 1, &id, err, errlen) != 0) {
            return ATLS_STORE_ERROR;
        }
        rc = fs_dir_stream(fs, dir, &d, err, errlen);
        atls_fsid_leave(&id);
        if (d == NULL) {
            return rc;   /* an error, or nothing to list: complete */
        }
    }
    v = malloc(max * sizeof(*v));
    if (v == NULL) {
        abort();
    }
    while (*n < max && (de = readdir(d)) != NULL) {
        /* dot files include our own temp files and ".", ".." */
        if (de->d_name[0] != '.') {
            v[(*n)++] = atls_strdup(de->d_name);
        }
    }
    if (*n < max) {
        closedir(d);   /* the end of the directory */
        d = NULL;
    }
    if (*n == 0) {
        free(v);
        v = NULL;
    }
    *names = v;
    *cursor = d;
    return ATLS_STORE_OK;
}
