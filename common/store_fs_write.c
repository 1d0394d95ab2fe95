/*
 * The filesystem store's atomic writers: every file goes to a temp file in
 * its directory, created with its final mode (a private file is never
 * readable by others, not even for an instant), fsync'd, renamed over the
 * final name, and the directory fsync'd: a crash leaves either the old or
 * the new file.  Temps are dot files (".tmp.<name>.<random>"): listings
 * skip them and the privileged parent's hand-over removes those a crash
 * left (store_fs_prepare.c).  The rules of store_fs.c hold here too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "atls_priv.h"
#include "atls_store.h"
#include "store_fs_int.h"
#include "store_int.h"

/* ".tmp.<base>.<6 hex>" for a base of at most 200 bytes */
#define FS_TMP_NAME_MAX  224

void (*atls_fs_sync_test_hook)(const char *what);

/* Unit tests count the syncs a writer costs (issue 12: O(1) a batch). */
static void
fs_sync_counted(const char *what)
{
    if (atls_fs_sync_test_hook != NULL) {
        atls_fs_sync_test_hook(what);
    }
}

static int
fs_write_all(int fd, const char *data, size_t len)
{
    ssize_t w;

    while (len > 0) {
        w = write(fd, data, len);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        data += w;
        len -= (size_t) w;
    }
    return 0;
}

void
atls_fs_fsync_dir(fs_impl_t *fs, int dirfd, const char *path)
{
    /* Some filesystems refuse fsync on directories; the rename is still
     * as durable there as they can make it. */
    fs_sync_counted("fsync-dir");
    if (fsync(dirfd) != 0 && errno != EINVAL && errno != EROFS) {
        atls_log(ATLS_LOG_WARN, "fsync the directory of %s/%s: %s", fs->root, path,
                 strerror(errno));
    }
}

/* A fresh temp file for base in dirfd, created with its final mode (never
 * following a link: O_EXCL refuses anything already there, a planted link
 * included, and another name is drawn), holding data, fsync'd when
 * do_sync; its name in tmp.  0, or -1 + err with no temp left behind. */
static int
fs_temp_write(fs_impl_t *fs, int dirfd, const char *base, const char *path,
              const char *data, size_t len, mode_t mode, int do_sync, char *tmp,
              size_t tmplen, char *err, size_t errlen)
{
    int fd = -1, tries;

    if (strlen(base) > 200) {
        atls_fs_error(fs, err, errlen, NULL, path, "name too long");
        return -1;
    }
    for (tries = 0; tries < 100; tries++) {
        snprintf(tmp, tmplen, ".tmp.%s.%06llx", base,
                 (unsigned long long) (atls_random_u64() & 0xffffff));
        fd = openat(dirfd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd >= 0 || errno != EEXIST) {
            break;
        }
    }
    if (fd < 0) {
        atls_fs_error(fs, err, errlen, "create a temp file for", path, strerror(errno));
        return -1;
    }
    /* The umask may have narrowed the mode; public files must stay readable
     * by the server's workers. It can never have widened it. */
    if (fchmod(fd, mode) != 0) {
        atls_fs_error(fs, err, errlen, "chmod the temp file of", path, strerror(errno));
        goto failed;
    }
    if (fs_write_all(fd, data, len) != 0) {
        atls_fs_error(fs, err, errlen, "write", path, strerror(errno));
        goto failed;
    }
    if (do_sync) {
        fs_sync_counted("fsync");
    }
    if (do_sync && fsync(fd) != 0) {
        atls_fs_error(fs, err, errlen, "fsync", path, strerror(errno));
        goto failed;
    }
    if (close(fd) != 0) {
        fd = -1;
        atls_fs_error(fs, err, errlen, "close", path, strerror(errno));
        goto failed;
    }
    return 0;

failed:
    if (fd >= 0) {
        close(fd);
    }
    (void) unlinkat(dirfd, tmp, 0);
    return -1;
}

/* Writes data to a fresh temp file in dirfd (fs_temp_write, fsync'd),
 * then renames it over base; the directory is fsync'd unless the caller
 * does it once for a batch (put_nosync, then sync_dir). */
static int
fs_put_in(fs_impl_t *fs, int dirfd, const char *base, const char *path,
          const char *data, size_t len, mode_t mode, int sync_dir, char *err, size_t errlen)
{
    char tmp[FS_TMP_NAME_MAX];

    if (fs_temp_write(fs, dirfd, base, path, data, len, mode, 1, tmp, sizeof(tmp),
                      err, errlen) != 0)
    {
        return ATLS_STORE_ERROR;
    }
    /* rename replaces a link planted under the final name, never its target */
    if (renameat(dirfd, tmp, dirfd, base) != 0) {
        atls_fs_error(fs, err, errlen, "rename into", path, strerror(errno));
        (void) unlinkat(dirfd, tmp, 0);
        return ATLS_STORE_ERROR;
    }
    if (sync_dir) {
        atls_fs_fsync_dir(fs, dirfd, path);
    }
    return ATLS_STORE_OK;
}

int
atls_fs_put_as(fs_impl_t *fs, const char *path, const char *data, size_t len,
               int is_private, int sync_dir, char *err, size_t errlen)
{
    const char *base;
    int         dirfd, rc;

    dirfd = atls_fs_parent_open(fs, path, 1, &base, err, errlen);
    if (dirfd < 0) {
        return ATLS_STORE_ERROR;
    }
    rc = fs_put_in(fs, dirfd, base, path, data, len,
                   is_private ? FS_PRIVATE_MODE : FS_PUBLIC_MODE, sync_dir, err, errlen);
    close(dirfd);
    return rc;
}


/* ---- batches: files of one directory (put_many) or several (put_groups) --- */

/* The temps of a batch, one a file across the groups in order; a temp's
 * name is "" once renamed or removed. */
typedef struct {
    fs_impl_t                *fs;
    const atls_store_group_t *g;
    size_t                    ng;
    int                      *dirfd;     /* one a group, -1 until opened */
    char                    (*tmp)[FS_TMP_NAME_MAX];
    int                      *tmpfd;     /* the directory of each temp */
    size_t                    n;         /* temps written */
} fs_batch_t;

static void
fs_batch_unlink_from(fs_batch_t *b, size_t from)
{
    size_t i;

    for (i = from; i < b->n; i++) {
        if (b->tmp[i][0] != '\0') {
            (void) unlinkat(b->tmpfd[i], b->tmp[i], 0);
            b->tmp[i][0] = '\0';
        }
    }
}

/* Each group's directory, made when missing, no link followed. */
static int
fs_batch_open(fs_batch_t *b, char *err, size_t errlen)
{
    const char *base;
    char       *probe;
    size_t      i;

    for (i = 0; i < b->ng; i++) {
        probe = atls_store_cat(b->g[i].dir, "/x", NULL);
        b->dirfd[i] = atls_fs_parent_open(b->fs, probe, 1, &base, err, errlen);
        free(probe);
        if (b->dirfd[i] < 0) {
            return -1;
        }
    }
    return 0;
}

/* Every temp written, none fsync'd: 0, or -1 + err and none left. */
static int
fs_batch_write(fs_batch_t *b, char *err, size_t errlen)
{
    const atls_store_file_t *f;
    char                    *path;
    size_t                   gi, i;
    int                      rc;

    for (b->n = 0, gi = 0; gi < b->ng; gi++) {
        for (i = 0; i < b->g[gi].n; i++, b->n++) {
            f = &b->g[gi].files[i];
            path = atls_store_cat(b->g[gi].dir, "/", f->name, NULL);
            b->tmpfd[b->n] = b->dirfd[gi];
            rc = fs_temp_write(b->fs, b->dirfd[gi], f->name, path, f->data, f->len,
                               f->is_private ? FS_PRIVATE_MODE : FS_PUBLIC_MODE, 0,
                               b->tmp[b->n], sizeof(b->tmp[b->n]), err, errlen);
            free(path);
            if (rc != 0) {
                fs_batch_unlink_from(b, 0);
                return -1;
            }
        }
    }
    return 0;
}

/* One barrier for every temp: syncfs(2) writes back the whole filesystem
 * the store is on (one journal commit on ext4/xfs), where an fdatasync a
 * temp would cost one commit each (docs/bench.md "Bulk registration").
 * Since Linux 5.8 it reports a writeback error of any file of it. */
static int
fs_batch_barrier(fs_batch_t *b, char *err, size_t errlen)
{
    fs_sync_counted("syncfs");
    if (syncfs(b->dirfd[0]) != 0) {
        atls_fs_error(b->fs, err, errlen, "syncfs", b->g[0].dir, strerror(errno));
        fs_batch_unlink_from(b, 0);
        return -1;
    }
    return 0;
}

/* The renames in order, group after group: *done groups made whole, *k
 * files renamed, *last the group of the last rename made (-1: none); on a
 * failure the rest of the temps are removed (those files stay old). */
static int
fs_batch_rename(fs_batch_t *b, size_t *done, size_t *k, long *last, char *err,
                size_t errlen)
{
    const atls_store_file_t *f;
    size_t                   gi, i;
    char                    *path;

    *last = -1;
    *k = 0;
    for (*done = 0, gi = 0; gi < b->ng; gi++, (*done)++) {
        for (i = 0; i < b->g[gi].n; i++, (*k)++) {
            f = &b->g[gi].files[i];
            /* rename replaces a link planted under the final name, never its target */
            if (renameat(b->dirfd[gi], b->tmp[*k], b->dirfd[gi], f->name) != 0) {
                path = atls_store_cat(b->g[gi].dir, "/", f->name, NULL);
                atls_fs_error(b->fs, err, errlen, "rename into", path, strerror(errno));
                free(path);
                fs_batch_unlink_from(b, *k);
                return -1;
            }
            b->tmp[*k][0] = '\0';
            *last = (long) gi;
        }
    }
    return 0;
}

/* put_groups, with *renamed the files made new, from the first */
static int
fs_put_groups(atls_store_t *st, const atls_store_group_t *groups, size_t ng, size_t *done,
              size_t *renamed, char *err, size_t errlen)
{
    fs_batch_t   b;
    atls_fsid_t  id;
    size_t       i, files = 0;
    long         last = -1;
    int          rc = ATLS_STORE_ERROR;

    *done = 0;
    *renamed = 0;
    if (ng == 0) {
        return ATLS_STORE_OK;
    }
    memset(&b, 0, sizeof(b));
    b.fs = st->impl;
    b.g = groups;
    b.ng = ng;
    if (atls_fs_begin(b.fs, groups[0].dir, 0, &id, err, errlen) != 0) {
        return ATLS_STORE_ERROR;
    }
    b.dirfd = malloc(ng * sizeof(*b.dirfd));
    for (i = 0; i < ng; i++) {
        files += groups[i].n;
    }
    b.tmp = calloc(files ? files : 1, sizeof(*b.tmp));
    b.tmpfd = calloc(files ? files : 1, sizeof(*b.tmpfd));
    if (b.dirfd == NULL || b.tmp == NULL || b.tmpfd == NULL) {
        abort();
    }
    for (i = 0; i < ng; i++) {
        b.dirfd[i] = -1;
    }
    if (fs_batch_open(&b, err, errlen) != 0
        || fs_batch_write(&b, err, errlen) != 0
        || fs_batch_barrier(&b, err, errlen) != 0)
    {
        goto out;
    }
    rc = fs_batch_rename(&b, done, renamed, &last, err, errlen) == 0 ? ATLS_STORE_OK
                                                                     : ATLS_STORE_ERROR;
    /* the renames made durable at once, those of a partial batch too: one
     * directory's by its fsync; several directories' by a second syncfs
     * (one directory's fsync would vouch for the others' renames only on
     * a filesystem that commits metadata in the order it was made) */
    if (last > 0) {
        fs_sync_counted("syncfs");
        if (syncfs(b.dirfd[0]) != 0) {
            atls_log(ATLS_LOG_WARN, "syncfs after the renames into %s...: %s",
                     groups[0].dir, strerror(errno));
        }
    } else if (last == 0) {
        atls_fs_fsync_dir(b.fs, b.dirfd[0], groups[0].dir);
    }

out:
    for (i = 0; i < ng; i++) {
        if (b.dirfd[i] >= 0) {
            close(b.dirfd[i]);
        }
    }
    free(b.dirfd);
    free(b.tmp);
    free(b.tmpfd);
    atls_fsid_leave(&id);
    return rc;
}

int
atls_fs_put_groups(atls_store_t *st, const atls_store_group_t *groups, size_t ng,
                   size_t *done, char *err, size_t errlen)
{
    size_t renamed;

    return fs_put_groups(st, groups, ng, done, &renamed, err, errlen);
}

int
atls_fs_put_many(atls_store_t *st, const char *dir, const atls_store_file_t *files,
                 size_t n, size_t *done, char *err, size_t errlen)
{
    atls_store_group_t g = { dir, files, n };
    size_t             groups;

    return fs_put_groups(st, &g, 1, &groups, done, err, errlen);
}
