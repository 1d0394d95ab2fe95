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
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "atls_priv.h"
#include "atls_store.h"
#include "store_fs_int.h"

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
    if (fsync(dirfd) != 0 && errno != EINVAL && errno != EROFS) {
        atls_log(ATLS_LOG_WARN, "fsync the directory of %s/%s: %s", fs->root, path,
                 strerror(errno));
    }
}

/* Writes data to a fresh temp file in dirfd (created with its final mode),
 * then renames it over base; the directory is fsync'd unless the caller
 * does it once for a batch (put_nosync, then sync_dir). */
static int
fs_put_in(fs_impl_t *fs, int dirfd, const char *base, const char *path,
          const char *data, size_t len, mode_t mode, int sync_dir, char *err, size_t errlen)
{
    char tmp[300];
    int  fd = -1, tries;

    if (strlen(base) > 200) {
        atls_fs_error(fs, err, errlen, NULL, path, "name too long");
        return ATLS_STORE_ERROR;
    }
    for (tries = 0; tries < 100; tries++) {
        snprintf(tmp, sizeof(tmp), ".tmp.%s.%06llx", base,
                 (unsigned long long) (atls_random_u64() & 0xffffff));
        fd = openat(dirfd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd >= 0 || errno != EEXIST) {
            break;
        }
    }
    if (fd < 0) {
        atls_fs_error(fs, err, errlen, "create a temp file for", path, strerror(errno));
        return ATLS_STORE_ERROR;
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
    if (fsync(fd) != 0) {
        atls_fs_error(fs, err, errlen, "fsync", path, strerror(errno));
        goto failed;
    }
    if (close(fd) != 0) {
        fd = -1;
        atls_fs_error(fs, err, errlen, "close", path, strerror(errno));
        goto failed;
    }
    fd = -1;
    /* rename replaces a link planted under the final name, never its target */
    if (renameat(dirfd, tmp, dirfd, base) != 0) {
        atls_fs_error(fs, err, errlen, "rename into", path, strerror(errno));
        goto failed;
    }
    if (sync_dir) {
        atls_fs_fsync_dir(fs, dirfd, path);
    }
    return ATLS_STORE_OK;

failed:
    if (fd >= 0) {
        close(fd);
    }
    (void) unlinkat(dirfd, tmp, 0);
    return ATLS_STORE_ERROR;
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

