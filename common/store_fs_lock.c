/*
 * Filesystem store backend: the locks, one flock'd file per name in
 * locks/ (locks/<name>.lock, 0600), opened beneath the root as the
 * store's owner.  A lock dies with its process, so a crashed holder never
 * leaves one behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#include "atls_priv.h"
#include "atls_store.h"
#include "store_fs_int.h"
#include "store_int.h"

/* locks/<name>.lock, already as the owner (inside atls_fs_begin). */
int
atls_fs_lock_as(fs_impl_t *fs, const char *name, int wait, atls_store_lock_t **out,
                char *err, size_t errlen)
{
    char rel[300];
    int  dirfd, fd, rc;

    snprintf(rel, sizeof(rel), "locks/%s.lock", name);
    dirfd = atls_fs_dir_open(fs, "locks", 1);
    if (dirfd < 0) {
        atls_fs_error(fs, err, errlen, NULL, "locks", atls_fs_strerror(errno));
        return ATLS_STORE_ERROR;
    }
    fd = atls_fs_open_reg(fs, dirfd, rel + sizeof("locks/") - 1, rel, O_RDWR | O_CREAT,
                          FS_PRIVATE_MODE, err, errlen);
    close(dirfd);
    if (fd < 0) {
        return ATLS_STORE_ERROR;
    }
    do {
        rc = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB));
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int e = errno;

        close(fd);
        if (e == EWOULDBLOCK) {
            atls_fs_error(fs, err, errlen, NULL, rel, "held by another process");
            return ATLS_STORE_BUSY;
        }
        atls_fs_error(fs, err, errlen, "flock", rel, strerror(e));
        return ATLS_STORE_ERROR;
    }
    *out = malloc(sizeof(**out));
    if (*out == NULL) {
        abort();
    }
    (*out)->fd = fd;
    return ATLS_STORE_OK;
}

int
atls_fs_lock(atls_store_t *st, const char *name, int wait, atls_store_lock_t **out,
             char *err, size_t errlen)
{
    fs_impl_t   *fs = st->impl;
    atls_fsid_t  id;
    int          rc;

    *out = NULL;
    if (name == NULL || strchr(name, '/') != NULL || !atls_store_path_ok(name, 0)
        || strlen(name) > 200)
    {
        snprintf(err, errlen, "invalid lock name \"%s\"", name ? name : "(null)");
        return ATLS_STORE_ERROR;
    }
    if (atls_fs_enter(fs, &id, err, errlen) != 0) {
        return ATLS_STORE_ERROR;
    }
    rc = atls_fs_lock_as(fs, name, wait, out, err, errlen);
    atls_fsid_leave(&id);
    return rc;
}

void
atls_fs_unlock(atls_store_t *st, atls_store_lock_t *lk)
{
    (void) st;
    if (lk == NULL) {
        return;
    }
    /* The lock file stays: unlinking it would let a waiter lock an inode
     * nobody else can find any more. */
    (void) flock(lk->fd, LOCK_UN);
    close(lk->fd);
    free(lk);
}
