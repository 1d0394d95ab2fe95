/*
 * Filesystem store backend.
 *
 * Every write goes to a temp file in the destination directory, created
 * with its final mode (so a private file is never readable by others, not
 * even for an instant), fsync'd, renamed over the final name, and the
 * directory fsync'd: a crash leaves either the old or the new file.
 *
 * The store is a privilege boundary.  It belongs to the server's worker
 * user, who can rewrite any part of it at any moment, while root (nginx
 * master, Apache parent, an operator's CLI) uses it too.  Hence:
 *  - the root directory is held open, and every path is resolved beneath
 *    it without following any symbolic link: openat2(RESOLVE_BENEATH |
 *    RESOLVE_NO_SYMLINKS), or, on kernels without openat2, one openat
 *    (O_NOFOLLOW | O_DIRECTORY) per component.  What follows works on
 *    descriptors only (fstat, fchmod, renameat, unlinkat, fdopendir, flock);
 *  - only regular files are opened, with O_NONBLOCK until fstat says so,
 *    so that a FIFO planted where a file should be cannot hang us; reads
 *    are capped; set-id bits are stripped wherever found;
 *  - a root process works on a store that someone else owns with that
 *    user's filesystem identity (setfsuid/setfsgid around each operation,
 *    per thread, atls_priv.h): the kernel then refuses whatever the owner
 *    could not do, and what we create belongs to the owner.  Only
 *    atls_store_fs_prepare() acts as root, through descriptors.
 *
 * This file: resolving beneath the root, acting as the owner, the ops
 * table with put, del and sync_dir, and open/close.  The read ops (get,
 * list, the paged listing) are in store_fs_read.c, the locks in
 * store_fs_lock.c, the atomic writers in store_fs_write.c, the audit log's
 * append op in store_fs_append.c, prepare in store_fs_prepare.c; what they
 * share with this file is store_fs_int.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/openat2.h>
#include "atls_priv.h"
#include "atls_store.h"
#include "store_fs_int.h"
#include "store_int.h"

const char *const atls_fs_subdirs[FS_N_SUBDIRS] = { "accounts", "certs", "requests",
                                                    "locks", "crl" };

/* Cleared for good the first time the kernel says it has no openat2. */
static int fs_have_openat2 = 1;

const char *
atls_fs_strerror(int e)
{
    /* O_NOFOLLOW and RESOLVE_NO_SYMLINKS both answer ELOOP */
    return e == ELOOP ? "a symbolic link, refused" : strerror(e);
}

/* "<root>/<rel>: <why>" (or "<what> <root>/<rel>: <why>") into err. */
void
atls_fs_error(fs_impl_t *fs, char *err, size_t errlen, const char *what, const char *rel,
              const char *why)
{
    snprintf(err, errlen, "%s%s%s%s%s: %s", what ? what : "", what ? " " : "", fs->root,
             *rel ? "/" : "", rel, why);
}

/* ---- resolving beneath the root ------------------------------------------ */

/* Makes fd (-1 passes through) a directory or fails with ENOTDIR.  The
 * directories are opened without O_DIRECTORY, so that a link is told
 * apart by its ELOOP, and with O_NONBLOCK, so that a FIFO does not hang. */
static int
fs_must_be_dir(int fd)
{
    struct stat sb;

    if (fd < 0) {
        return -1;
    }
    if (fstat(fd, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        close(fd);
        errno = ENOTDIR;
        return -1;
    }
    return fd;
}

#define FS_DIR_FLAGS (O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)

/* One component at a time from the root, never following a link; with
 * create, missing directories are made (0700; they belong to whoever we
 * are, which is the owner: see atls_fs_enter). */
static int
fs_walk(fs_impl_t *fs, const char *rel, int create)
{
    char *copy, *comp, *save = NULL;
    int   fd, nfd, e;

    fd = fcntl(fs->rootfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    copy = atls_strdup(rel);
    for (comp = strtok_r(copy, "/", &save); comp != NULL; comp = strtok_r(NULL, "/", &save)) {
        nfd = fs_must_be_dir(openat(fd, comp, FS_DIR_FLAGS));
        if (nfd < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, comp, FS_DIR_MODE) != 0 && errno != EEXIST) {
                nfd = -1;
            } else {
                nfd = fs_must_be_dir(openat(fd, comp, FS_DIR_FLAGS));
            }
        }
        e = errno;
        close(fd);
        if (nfd < 0) {
            free(copy);
            errno = e;
            return -1;
        }
        fd = nfd;
    }
    free(copy);
    return fd;
}

/* rel opened beneath the root in one openat2, no link followed anywhere;
 * -1 + errno, ENOSYS when the kernel has no openat2 (remembered). */
static int
fs_openat2(fs_impl_t *fs, const char *rel, int flags, mode_t mode)
{
    struct open_how how;
    int             fd = -1, tries;

    if (!__atomic_load_n(&fs_have_openat2, __ATOMIC_RELAXED)) {
        errno = ENOSYS;
        return -1;
    }
    memset(&how, 0, sizeof(how));
    how.flags = (unsigned) flags;
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    /* EAGAIN: a rename raced the lookup; the kernel asks for a retry */
    for (tries = 0; tries < 16; tries++) {
        fd = (int) syscall(SYS_openat2, fs->rootfd, rel, &how, sizeof(how));
        if (fd >= 0 || errno != EAGAIN) {
            break;
        }
    }
    if (fd < 0 && errno == ENOSYS) {
        __atomic_store_n(&fs_have_openat2, 0, __ATOMIC_RELAXED);
    }
    return fd;
}

/* The directory rel ("" = the root) as a descriptor; -1 + errno (ELOOP for
 * a symbolic link anywhere on the way). */
int
atls_fs_dir_open(fs_impl_t *fs, const char *rel, int create)
{
    int fd;

    if (*rel == '\0') {
        return fcntl(fs->rootfd, F_DUPFD_CLOEXEC, 0);
    }
    fd = fs_openat2(fs, rel, FS_DIR_FLAGS, 0);
    if (fd >= 0 || (errno != ENOSYS && !(errno == ENOENT && create))) {
        return fs_must_be_dir(fd);
    }
    return fs_walk(fs, rel, create);
}

/* The directory holding path (created when create), *base its last
 * component; -1 + err naming the directory. */
int
atls_fs_parent_open(fs_impl_t *fs, const char *path, int create, const char **base,
                    char *err, size_t errlen)
{
    const char *slash = strrchr(path, '/');
    char       *dir;
    int         fd, e;

    dir = slash != NULL ? strndup(path, (size_t) (slash - path)) : atls_strdup("");
    if (dir == NULL) {
        abort();
    }
    *base = slash != NULL ? slash + 1 : path;
    fd = atls_fs_dir_open(fs, dir, create);
    if (fd < 0) {
        e = errno;
        atls_fs_error(fs, err, errlen, NULL, dir, atls_fs_strerror(e));
        errno = e;
    }
    free(dir);
    return fd;
}

/* Takes set-id bits off an open file that is ours alone to change. */
static void
fs_strip_setid(fs_impl_t *fs, int fd, const struct stat *sb, const char *rel)
{
    if ((sb->st_mode & 07000) == 0 || sb->st_nlink != 1) {
        return;
    }
    atls_log(ATLS_LOG_WARN, "store: %s/%s had mode %04o; set-id bits removed",
             fs->root, rel, (unsigned) (sb->st_mode & 07777));
    (void) fchmod(fd, sb->st_mode & 0777);
}

#define FS_FILE_FLAGS (O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)

/* What follows the open (with FS_FILE_FLAGS) of a store file: a regular
 * file, or refused (a FIFO or device was not waited on thanks to
 * O_NONBLOCK, which is then cleared), set-id bits stripped.  fd is closed
 * on failure; rel names it in err; errno kept. */
static int
fs_reg_check(fs_impl_t *fs, int fd, const char *rel, char *err, size_t errlen)
{
    struct stat sb;
    int         e, flags;

    if (fd < 0) {
        e = errno;
        atls_fs_error(fs, err, errlen, NULL, rel, atls_fs_strerror(e));
        errno = e;
        return -1;
    }
    if (fstat(fd, &sb) != 0) {
        atls_fs_error(fs, err, errlen, "fstat", rel, strerror(errno));
        goto failed;
    }
    if (!S_ISREG(sb.st_mode)) {
        atls_fs_error(fs, err, errlen, NULL, rel, "not a regular file, refused");
        errno = EINVAL;
        goto failed;
    }
    /* O_NONBLOCK off; O_APPEND (the audit log) stays */
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        atls_fs_error(fs, err, errlen, "fcntl", rel, strerror(errno));
        goto failed;
    }
    fs_strip_setid(fs, fd, &sb, rel);
    return fd;

failed:
    e = errno;
    close(fd);
    errno = e;
    return -1;
}

/* base in dirfd as a regular file (see fs_reg_check). */
int
atls_fs_open_reg(fs_impl_t *fs, int dirfd, const char *base, const char *rel, int flags,
                 mode_t mode, char *err, size_t errlen)
{
    return fs_reg_check(fs, openat(dirfd, base, flags | FS_FILE_FLAGS, mode), rel,
                        err, errlen);
}

/* rel for reading: one openat2 beneath the root, or, without openat2, its
 * directory first (component by component) and then the file. */
int
atls_fs_open_read(fs_impl_t *fs, const char *rel, char *err, size_t errlen)
{
    const char *base;
    int         dirfd, fd, e;

    fd = fs_openat2(fs, rel, O_RDONLY | FS_FILE_FLAGS, 0);
    if (fd >= 0 || errno != ENOSYS) {
        return fs_reg_check(fs, fd, rel, err, errlen);
    }
    dirfd = atls_fs_parent_open(fs, rel, 0, &base, err, errlen);
    if (dirfd < 0) {
        return -1;
    }
    fd = atls_fs_open_reg(fs, dirfd, base, rel, O_RDONLY, 0, err, errlen);
    e = errno;
    close(dirfd);
    errno = e;
    return fd;
}

/* ---- acting as the store's owner ------------------------------------------ */

/* A root process takes the owner's filesystem identity for the length of
 * one operation.  Per thread (setfsuid), so that a long-lived root process
 * (nginx master, Apache parent) can use the store without ever dropping
 * root for good; its other threads, if any, are not affected.  What is
 * left of root while switched: the supplementary groups, which gain
 * nothing beneath a root directory the owner holds 0700. */
int
atls_fs_enter(fs_impl_t *fs, atls_fsid_t *id, char *err, size_t errlen)
{
    id->active = 0;
    if (!fs->as_owner) {
        return 0;
    }
    return atls_fsid_enter(id, fs->uid, fs->gid, err, errlen);
}

/* ---- removal (the read ops are in store_fs_read.c) ----------------------- */

/* Removes name (a directory) from dirfd with everything in it, through
 * descriptors: a link inside is removed, never followed. */
static int
fs_rm_tree(int dirfd, const char *name, int depth)
{
    DIR           *d;
    struct dirent *de;
    int            fd, rc = 0;

    if (depth > FS_MAX_DEPTH) {
        errno = ELOOP;
        return -1;
    }
    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -1;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        if (unlinkat(fd, de->d_name, 0) != 0) {
            rc = (errno == EISDIR || errno == EPERM)
                 ? fs_rm_tree(fd, de->d_name, depth + 1) : -1;
        }
    }
    closedir(d);
    if (rc != 0) {
        return -1;
    }
    return unlinkat(dirfd, name, AT_REMOVEDIR);
}

static int
fs_del_as(fs_impl_t *fs, const char *path, char *err, size_t errlen)
{
    const char  *base;
    struct stat  sb;
    int          dirfd, rc;

    dirfd = atls_fs_parent_open(fs, path, 0, &base, err, errlen);
    if (dirfd < 0) {
        return errno == ENOENT ? ATLS_STORE_NOTFOUND : ATLS_STORE_ERROR;
    }
    if (fstatat(dirfd, base, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
        int e = errno;

        atls_fs_error(fs, err, errlen, NULL, path, strerror(e));
        close(dirfd);
        return e == ENOENT ? ATLS_STORE_NOTFOUND : ATLS_STORE_ERROR;
    }
    /* a link is removed itself, whatever it points to */
    rc = S_ISDIR(sb.st_mode) ? fs_rm_tree(dirfd, base, 0) : unlinkat(dirfd, base, 0);
    if (rc != 0) {
        atls_fs_error(fs, err, errlen, "remove", path, atls_fs_strerror(errno));
        close(dirfd);
        return ATLS_STORE_ERROR;
    }
    atls_fs_fsync_dir(fs, dirfd, path);
    close(dirfd);
    return ATLS_STORE_OK;
}

/* ---- the ops: each one with the owner's identity -------------------------- */

/* Checks path and takes the owner's identity (atls_fs_enter): 0, or -1 +
 * err. */
int
atls_fs_begin(fs_impl_t *fs, const char *path, int allow_empty, atls_fsid_t *id,
              char *err, size_t errlen)
{
    id->active = 0;
    if (!atls_store_path_ok(path, allow_empty)) {
        snprintf(err, errlen, "invalid store path \"%s\"", path ? path : "(null)");
        return -1;
    }
    return atls_fs_enter(fs, id, err, errlen);
}

static int
fs_put_sync(atls_store_t *st, const char *path, const char *data, size_t len,
            int is_private, int sync_dir, char *err, size_t errlen)
{
    fs_impl_t   *fs = st->impl;
    atls_fsid_t  id;
    int          rc;

    if (atls_fs_begin(fs, path, 0, &id, err, errlen) != 0) {
        return ATLS_STORE_ERROR;
    }
    rc = atls_fs_put_as(fs, path, data, len, is_private, sync_dir, err, errlen);
    atls_fsid_leave(&id);
    return rc;
}

static int
fs_put(atls_store_t *st, const char *path, const char *data, size_t len,
       int is_private, char *err, size_t errlen)
{
    return fs_put_sync(st, path, data, len, is_private, 1, err, errlen);
}

static int
fs_put_nosync(atls_store_t *st, const char *path, const char *data, size_t len,
              int is_private, char *err, size_t errlen)
{
    return fs_put_sync(st, path, data, len, is_private, 0, err, errlen);
}

/* The renames of a batch of put_nosync in dir made durable at once. */
static int
fs_sync_dir(atls_store_t *st, const char *dir, char *err, size_t errlen)
{
    fs_impl_t   *fs = st->impl;
    atls_fsid_t  id;
    int          fd;

    if (atls_fs_begin(fs, dir, 0, &id, err, errlen) != 0) {
        return ATLS_STORE_ERROR;
    }
    fd = atls_fs_dir_open(fs, dir, 0);
    if (fd < 0) {
        atls_fs_error(fs, err, errlen, NULL, dir, atls_fs_strerror(errno));
        atls_fsid_leave(&id);
        return ATLS_STORE_ERROR;
    }
    atls_fs_fsync_dir(fs, fd, dir);
    close(fd);
    atls_fsid_leave(&id);
    return ATLS_STORE_OK;
}

static int
fs_del(atls_store_t *st, const char *path, char *err, size_t errlen)
{
    fs_impl_t   *fs = st->impl;
    atls_fsid_t  id;
    int          rc;

    if (atls_fs_begin(fs, path, 0, &id, err, errlen) != 0) {
        return ATLS_STORE_ERROR;
    }
    rc = fs_del_as(fs, path, err, errlen);
    atls_fsid_leave(&id);
    return rc;
}

static void
fs_close(atls_store_t *st)
{
    fs_impl_t *fs = st->impl;

    if (fs != NULL) {
        if (fs->rootfd >= 0) {
            close(fs->rootfd);
        }
        free(fs->root);
        free(fs);
    }
    free(st->location);
    free(st);
}

static const atls_store_ops_t fs_ops = {
    "fs", atls_fs_get, fs_put, fs_del, atls_fs_list, atls_fs_lock, atls_fs_unlock, fs_close,
    atls_fs_append,
    .list_page = atls_fs_list_page, .list_end = atls_fs_list_end,
    .put_nosync = fs_put_nosync, .sync_dir = fs_sync_dir, .append_many = atls_fs_append_many,
    .put_many = atls_fs_put_many, .put_groups = atls_fs_put_groups,
    .get_max = atls_fs_get_max
};

/* ---- open ------------------------------------------------------------------ */

/* mkdir -p of dir: the last component with `mode`, missing parents with
 * FS_PARENT_MODE.  The path up to the store root is the operator's (from
 * the configuration or the command line), not the worker's. */
static int
fs_mkdir_tree(const char *dir, mode_t mode, char *err, size_t errlen)
{
    char  *d, *p;
    size_t len;

    d = atls_strdup(dir);
    len = strlen(d);
    while (len > 1 && d[len - 1] == '/') {
        d[--len] = '\0';
    }
    for (p = d + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char   saved = *p;
            int    last = saved == '\0';

            *p = '\0';
            if (mkdir(d, last ? mode : FS_PARENT_MODE) != 0 && errno != EEXIST) {
                snprintf(err, errlen, "store directory %s: cannot create %s: %s",
                         dir, d, strerror(errno));
                free(d);
                return -1;
            }
            *p = saved;
            if (last) {
                break;
            }
        }
    }
    free(d);
    return 0;
}

/* Creates dir when missing and opens it: -1 + err, else the descriptor
 * and *sb. */
int
atls_fs_root_open(const char *dir, struct stat *sb, char *err, size_t errlen)
{
    int fd;

    if (dir == NULL || *dir == '\0') {
        snprintf(err, errlen, "store directory not set");
        return -1;
    }
    if (stat(dir, sb) != 0) {
        if (errno != ENOENT) {
            snprintf(err, errlen, "store directory %s: %s", dir, strerror(errno));
            return -1;
        }
        if (fs_mkdir_tree(dir, FS_DIR_MODE, err, errlen) != 0) {
            return -1;
        }
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "store directory %s: %s", dir,
                 errno == ENOTDIR ? "not a directory" : strerror(errno));
        return -1;
    }
    if (fstat(fd, sb) != 0) {
        snprintf(err, errlen, "store directory %s: %s", dir, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

atls_store_t *
atls_store_fs_open(const char *dir, char *err, size_t errlen)
{
    atls_store_t *st;
    fs_impl_t    *fs;
    atls_fsid_t   id;
    struct stat   sb;
    size_t        i, len;
    int           rootfd, fd;

    rootfd = atls_fs_root_open(dir, &sb, err, errlen);
    if (rootfd < 0) {
        return NULL;
    }
    fs = calloc(1, sizeof(*fs));
    st = calloc(1, sizeof(*st));
    if (fs == NULL || st == NULL) {
        abort();
    }
    fs->root = atls_strdup(dir);
    len = strlen(fs->root);
    while (len > 1 && fs->root[len - 1] == '/') {
        fs->root[--len] = '\0';
    }
    fs->rootfd = rootfd;
    if (geteuid() == 0 && sb.st_uid != 0) {
        fs->as_owner = 1;
        fs->uid = sb.st_uid;
        fs->gid = sb.st_gid;
    }
    st->ops = &fs_ops;
    st->impl = fs;
    st->location = atls_strdup(fs->root);

    if (atls_fs_enter(fs, &id, err, errlen) != 0) {
        fs_close(st);
        return NULL;
    }
    if (faccessat(rootfd, ".", W_OK | X_OK, AT_EACCESS) != 0) {
        snprintf(err, errlen, "store directory %s: not writable: %s", fs->root,
                 strerror(errno));
        goto failed;
    }
    /* A sub-directory the owner broke (a link, a FIFO) fails only the
     * operations that need it: the rest of the store stays usable. */
    for (i = 0; i < sizeof(atls_fs_subdirs) / sizeof(atls_fs_subdirs[0]); i++) {
        fd = atls_fs_dir_open(fs, atls_fs_subdirs[i], 1);
        if (fd < 0) {
            atls_log(ATLS_LOG_WARN, "store: %s/%s: %s", fs->root, atls_fs_subdirs[i],
                     atls_fs_strerror(errno));
            continue;
        }
        close(fd);
    }
    atls_fsid_leave(&id);
    return st;

failed:
    atls_fsid_leave(&id);
    fs_close(st);
    return NULL;
}
