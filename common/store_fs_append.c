/*
 * The filesystem backend's append op: the audit log.  One record is one
 * write(2) of the JSON and its newline on a file opened O_APPEND beneath
 * the root without following a link, then fsync, so that the records of
 * concurrent writers never interleave.  Past a size the file is rotated by
 * renames only: a record is never copied, truncated or rewritten.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "store_fs_int.h"

/* The size of base in dirfd (0 when missing); -1 + err. */
static int
fs_append_size(fs_impl_t *fs, int dirfd, const char *base, const char *path, off_t *size,
               char *err, size_t errlen)
{
    struct stat sb;

    *size = 0;
    if (fstatat(dirfd, base, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) {
            return 0;
        }
        atls_fs_error(fs, err, errlen, "stat", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        atls_fs_error(fs, err, errlen, NULL, path, "not a regular file, refused");
        return -1;
    }
    *size = sb.st_size;
    return 0;
}

/* path.N -> path.N+1 from the oldest kept down, path -> path.1: renames
 * only, so no record is ever rewritten; what falls off the end is the
 * oldest file, replaced by the rename onto its name. */
static int
fs_rotate_in(fs_impl_t *fs, int dirfd, const char *base, const char *path, unsigned keep,
             char *err, size_t errlen)
{
    char     from[300], to[300];
    unsigned i;

    if (strlen(base) > 200) {
        atls_fs_error(fs, err, errlen, NULL, path, "name too long");
        return -1;
    }
    for (i = keep; i > 1; i--) {
        snprintf(from, sizeof(from), "%s.%u", base, i - 1);
        snprintf(to, sizeof(to), "%s.%u", base, i);
        if (renameat(dirfd, from, dirfd, to) != 0 && errno != ENOENT) {
            atls_fs_error(fs, err, errlen, "rotate", path, strerror(errno));
            return -1;
        }
    }
    if (keep == 0) {
        if (unlinkat(dirfd, base, 0) != 0 && errno != ENOENT) {
            atls_fs_error(fs, err, errlen, "rotate", path, strerror(errno));
            return -1;
        }
    } else {
        snprintf(to, sizeof(to), "%s.1", base);
        if (renameat(dirfd, base, dirfd, to) != 0 && errno != ENOENT) {
            atls_fs_error(fs, err, errlen, "rotate", path, strerror(errno));
            return -1;
        }
    }
    atls_fs_fsync_dir(fs, dirfd, path);
    return 0;
}

/* Rotates when the file has reached rotate_bytes, under the lock
 * "rotate-<base>" so that one appender rotates and the others, seeing the
 * size again once they hold the lock, do not rotate the fresh file. */
static int
fs_append_rotate(fs_impl_t *fs, int dirfd, const char *base, const char *path,
                 size_t rotate_bytes, unsigned keep, char *err, size_t errlen)
{
    atls_store_lock_t *lk = NULL;
    char               lname[300];
    off_t              size;
    int                rc;

    if (rotate_bytes == 0
        || fs_append_size(fs, dirfd, base, path, &size, err, errlen) != 0)
    {
        return rotate_bytes == 0 ? 0 : -1;
    }
    if ((size_t) size < rotate_bytes) {
        return 0;
    }
    snprintf(lname, sizeof(lname), "rotate-%s", base);
    if (atls_fs_lock_as(fs, lname, 1, &lk, err, errlen) != ATLS_STORE_OK) {
        return -1;
    }
    rc = fs_append_size(fs, dirfd, base, path, &size, err, errlen);
    if (rc == 0 && (size_t) size >= rotate_bytes) {
        rc = fs_rotate_in(fs, dirfd, base, path, keep, err, errlen);
    }
    atls_fs_unlock(NULL, lk);
    return rc;
}

/* Writes of whole records stay below this: records of concurrent
 * appenders never interleave within one write, and a batch of 1,000 costs
 * a few writes. */
#define FS_APPEND_CHUNK  (256 * 1024)

/* Records [*i, n) as far as they fit one chunk (at least one), each with
 * its newline, into one write(2) with O_APPEND. */
static int
fs_append_chunk(fs_impl_t *fs, int fd, const char *path, const char *const *recs,
                const size_t *lens, size_t n, size_t *i, char *err, size_t errlen)
{
    size_t  total = 0, k, off = 0;
    char   *buf;
    ssize_t w;

    for (k = *i; k < n && (k == *i || total + lens[k] + 1 <= FS_APPEND_CHUNK); k++) {
        total += lens[k] + 1;
    }
    buf = malloc(total);
    if (buf == NULL) {
        abort();
    }
    for (; *i < k; (*i)++) {
        memcpy(buf + off, recs[*i], lens[*i]);
        off += lens[*i];
        buf[off++] = '\n';
    }
    do {
        w = write(fd, buf, total);
    } while (w < 0 && errno == EINTR);
    free(buf);
    if (w != (ssize_t) total) {
        /* a short write (disk full) leaves a partial line; the next record
         * starts on the same line and the reader skips what is not JSON */
        atls_fs_error(fs, err, errlen, "append to", path,
                      w < 0 ? strerror(errno) : "short write");
        return -1;
    }
    return 0;
}

/* The records in writes of whole records with O_APPEND (so that records
 * of concurrent appenders never interleave), then one fsync. */
static int
fs_append_as(fs_impl_t *fs, const char *path, const char *const *recs, const size_t *lens,
             size_t n, size_t rotate_bytes, unsigned keep, char *err, size_t errlen)
{
    const char *base;
    size_t      i = 0;
    int         dirfd, fd = -1, rc = ATLS_STORE_ERROR;

    dirfd = atls_fs_parent_open(fs, path, 1, &base, err, errlen);
    if (dirfd < 0) {
        return ATLS_STORE_ERROR;
    }
    if (fs_append_rotate(fs, dirfd, base, path, rotate_bytes, keep, err, errlen) != 0) {
        goto out;
    }
    fd = atls_fs_open_reg(fs, dirfd, base, path, O_WRONLY | O_APPEND | O_CREAT,
                          FS_PRIVATE_MODE, err, errlen);
    if (fd < 0) {
        goto out;
    }
    while (i < n) {
        if (fs_append_chunk(fs, fd, path, recs, lens, n, &i, err, errlen) != 0) {
            goto out;
        }
    }
    if (fsync(fd) != 0) {
        atls_fs_error(fs, err, errlen, "fsync", path, strerror(errno));
        goto out;
    }
    rc = ATLS_STORE_OK;

out:
    if (fd >= 0) {
        close(fd);
    }
    close(dirfd);
    return rc;
}

int
atls_fs_append_many(atls_store_t *st, const char *path, const char *const *recs,
                    const size_t *lens, size_t n, size_t rotate_bytes, unsigned keep,
                    char *err, size_t errlen)
{
    fs_impl_t   *fs = st->impl;
    atls_fsid_t  id;
    size_t       i;
    int          rc;

    for (i = 0; i < n; i++) {
        if (recs[i] == NULL || memchr(recs[i], '\n', lens[i]) != NULL) {
            snprintf(err, errlen, "%s/%s: a record holding a newline, refused", fs->root,
                     path ? path : "(null)");
            return ATLS_STORE_ERROR;
        }
    }
    if (n == 0) {
        return ATLS_STORE_OK;
    }
    if (atls_fs_begin(fs, path, 0, &id, err, errlen) != 0) {
        return ATLS_STORE_ERROR;
    }
    rc = fs_append_as(fs, path, recs, lens, n, rotate_bytes, keep, err, errlen);
    atls_fsid_leave(&id);
    return rc;
}

int
atls_fs_append(atls_store_t *st, const char *path, const char *data, size_t len,
               size_t rotate_bytes, unsigned keep, char *err, size_t errlen)
{
    return atls_fs_append_many(st, path, &data, &len, 1, rotate_bytes, keep, err, errlen);
}
