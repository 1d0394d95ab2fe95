/*
 * Filesystem store backend.
 *
 * Every write goes to a temp file in the destination directory, created
 * with its final mode (so a private file is never readable by others, not
 * even for an instant), fsync'd, renamed over the final name, and the
 * directory fsync'd: a crash leaves either the old or the new file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include "atls_store.h"

#define FS_DIR_MODE      0700
#define FS_PRIVATE_MODE  0600
#define FS_PUBLIC_MODE   0644
/* Parents above the store root we had to create: traversable (workers must
 * reach their store) but not listable. */
#define FS_PARENT_MODE   0711

typedef struct {
    char  *root;
    int    give_owner;  /* euid 0 on a store owned by someone else */
    uid_t  uid;
    gid_t  gid;
} fs_impl_t;

struct atls_store_lock_s {
    int   fd;
};

static const char *const fs_subdirs[] = { "accounts", "certs", "requests", "locks" };

/* Rejects anything that could leave the root or hide in a dot file:
 * leading '/', empty components, and components starting with '.'. */
static int
fs_path_ok(const char *path, int allow_empty)
{
    const char *p, *c;

    if (path == NULL) {
        return 0;
    }
    if (*path == '\0') {
        return allow_empty;
    }
    c = path;
    for (p = path;; p++) {
        if (*p == '/' || *p == '\0') {
            if (p == c || *c == '.') {
                return 0;
            }
            if (*p == '\0') {
                return 1;
            }
            c = p + 1;
        }
    }
}

static char *
fs_full(fs_impl_t *fs, const char *path)
{
    char  *s;
    size_t n = strlen(fs->root) + strlen(path) + 2;

    s = malloc(n);
    if (s == NULL) {
        abort();
    }
    if (*path == '\0') {
        snprintf(s, n, "%s", fs->root);
    } else {
        snprintf(s, n, "%s/%s", fs->root, path);
    }
    return s;
}

static int
fs_give_fd(fs_impl_t *fs, int fd)
{
    if (!fs->give_owner) {
        return 0;
    }
    return fchown(fd, fs->uid, fs->gid);
}

static int
fs_give_path(fs_impl_t *fs, const char *path)
{
    if (!fs->give_owner) {
        return 0;
    }
    return lchown(path, fs->uid, fs->gid);
}

/* mkdir -p of the directory part of root/rel (rel excluded when !whole). */
static int
fs_mkdirs(fs_impl_t *fs, const char *rel, int whole, char *err, size_t errlen)
{
    char  *full, *p, *start;
    size_t rootlen = strlen(fs->root);

    full = fs_full(fs, rel);
    if (!whole) {
        p = strrchr(full + rootlen, '/');
        if (p == NULL || p == full + rootlen) {
            free(full);
            return 0;   /* directly under the root */
        }
        *p = '\0';
    }
    start = full + rootlen + 1;
    if (start > full + strlen(full)) {
        free(full);
        return 0;
    }
    for (p = start;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;

            *p = '\0';
            if (mkdir(full, FS_DIR_MODE) == 0) {
                if (fs_give_path(fs, full) != 0) {
                    snprintf(err, errlen, "chown %s: %s", full, strerror(errno));
                    free(full);
                    return -1;
                }
            } else if (errno != EEXIST) {
                snprintf(err, errlen, "mkdir %s: %s", full, strerror(errno));
                free(full);
                return -1;
            }
            *p = saved;
            if (saved == '\0') {
                break;
            }
        }
    }
    free(full);
    return 0;
}

static int
fs_fsync_dir(const char *dir)
{
    int fd, rc;

    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    rc = fsync(fd);
    /* Some filesystems refuse fsync on directories; the rename is still
     * durable there as far as they can make it. */
    if (rc != 0 && (errno == EINVAL || errno == EROFS)) {
        rc = 0;
    }
    close(fd);
    return rc;
}

static int
fs_get(atls_store_t *st, const char *path, char **data, size_t *len,
       char *err, size_t errlen)
{
    fs_impl_t  *fs = st->impl;
    char       *full, *buf = NULL, *nb;
    size_t      cap = 0, n = 0;
    ssize_t     r;
    int         fd;
    struct stat sb;

    *data = NULL;
    if (len != NULL) {
        *len = 0;
    }
    if (!fs_path_ok(path, 0)) {
        snprintf(err, errlen, "invalid store path \"%s\"", path ? path : "(null)");
        return ATLS_STORE_ERROR;
    }
    full = fs_full(fs, path);
    fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        int e = errno;

        snprintf(err, errlen, "%s: %s", full, strerror(e));
        free(full);
        return e == ENOENT ? ATLS_STORE_NOTFOUND : ATLS_STORE_ERROR;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", full);
        goto failed;
    }
    /* Sized from fstat, but grown if the file changes under us. */
    cap = (size_t) sb.st_size + 1;
    buf = malloc(cap);
    if (buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", full);
        goto failed;
    }
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                snprintf(err, errlen, "%s: out of memory", full);
                goto failed;
            }
            buf = nb;
        }
        r = read(fd, buf + n, cap - n - 1);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            snprintf(err, errlen, "read %s: %s", full, strerror(errno));
            goto failed;
        }
        if (r == 0) {
            break;
        }
        n += (size_t) r;
    }
    buf[n] = '\0';
    close(fd);
    free(full);
    *data = buf;
    if (len != NULL) {
        *len = n;
    }
    return ATLS_STORE_OK;

failed:
    close(fd);
    free(buf);
    free(full);
    return ATLS_STORE_ERROR;
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

static int
fs_put(atls_store_t *st, const char *path, const char *data, size_t len,
       int is_private, char *err, size_t errlen)
{
    fs_impl_t *fs = st->impl;
    char      *full = NULL, *tmp = NULL, *slash;
    mode_t     mode = is_private ? FS_PRIVATE_MODE : FS_PUBLIC_MODE;
    size_t     tlen;
    int        fd = -1, tries;

    if (!fs_path_ok(path, 0)) {
        snprintf(err, errlen, "invalid store path \"%s\"", path ? path : "(null)");
        return ATLS_STORE_ERROR;
    }
    if (fs_mkdirs(fs, path, 0, err, errlen) != 0) {
        return ATLS_STORE_ERROR;
    }
    full = fs_full(fs, path);
    slash = strrchr(full, '/');
    tlen = strlen(full) + 32;
    tmp = malloc(tlen);
    if (tmp == NULL) {
        abort();
    }

    for (tries = 0; tries < 100; tries++) {
        snprintf(tmp, tlen, "%.*s/.tmp.%s.%06llx", (int) (slash - full), full,
                 slash + 1, (unsigned long long) (atls_random_u64() & 0xffffff));
        fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd >= 0 || errno != EEXIST) {
            break;
        }
    }
    if (fd < 0) {
        snprintf(err, errlen, "create %s: %s", tmp, strerror(errno));
        free(tmp);
        free(full);
        return ATLS_STORE_ERROR;
    }
    /* The umask may have narrowed the mode; public files must stay readable
     * by the server's workers. It can never have widened it. */
    if (fchmod(fd, mode) != 0) {
        snprintf(err, errlen, "chmod %s: %s", tmp, strerror(errno));
        goto failed;
    }
    if (fs_give_fd(fs, fd) != 0) {
        snprintf(err, errlen, "chown %s: %s", tmp, strerror(errno));
        goto failed;
    }
    if (fs_write_all(fd, data, len) != 0) {
        snprintf(err, errlen, "write %s: %s", tmp, strerror(errno));
        goto failed;
    }
    if (fsync(fd) != 0) {
        snprintf(err, errlen, "fsync %s: %s", tmp, strerror(errno));
        goto failed;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(err, errlen, "close %s: %s", tmp, strerror(errno));
        goto failed;
    }
    fd = -1;
    if (rename(tmp, full) != 0) {
        snprintf(err, errlen, "rename %s -> %s: %s", tmp, full, strerror(errno));
        goto failed;
    }
    *slash = '\0';
    if (fs_fsync_dir(full) != 0) {
        /* The new file is in place; only its durability is in doubt. */
        atls_log(ATLS_LOG_WARN, "fsync directory %s: %s", full, strerror(errno));
    }
    free(tmp);
    free(full);
    return ATLS_STORE_OK;

failed:
    if (fd >= 0) {
        close(fd);
    }
    unlink(tmp);
    free(tmp);
    free(full);
    return ATLS_STORE_ERROR;
}

static int
fs_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) ftw;
    if (flag == FTW_DP) {
        return rmdir(p);
    }
    return unlink(p);
}

static int
fs_del(atls_store_t *st, const char *path, char *err, size_t errlen)
{
    fs_impl_t  *fs = st->impl;
    char       *full, *slash;
    struct stat sb;
    int         rc;

    if (!fs_path_ok(path, 0)) {
        snprintf(err, errlen, "invalid store path \"%s\"", path ? path : "(null)");
        return ATLS_STORE_ERROR;
    }
    full = fs_full(fs, path);
    if (lstat(full, &sb) != 0) {
        int e = errno;

        snprintf(err, errlen, "%s: %s", full, strerror(e));
        free(full);
        return e == ENOENT ? ATLS_STORE_NOTFOUND : ATLS_STORE_ERROR;
    }
    if (S_ISDIR(sb.st_mode)) {
        rc = nftw(full, fs_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    } else {
        rc = unlink(full);
    }
    if (rc != 0) {
        snprintf(err, errlen, "remove %s: %s", full, strerror(errno));
        free(full);
        return ATLS_STORE_ERROR;
    }
    slash = strrchr(full, '/');
    *slash = '\0';
    (void) fs_fsync_dir(full);
    free(full);
    return ATLS_STORE_OK;
}

static int
fs_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static int
fs_list(atls_store_t *st, const char *dir, char ***names, size_t *n,
        char *err, size_t errlen)
{
    fs_impl_t     *fs = st->impl;
    char          *full, **v = NULL, **nv;
    size_t         cnt = 0, cap = 0;
    DIR           *d;
    struct dirent *de;

    *names = NULL;
    *n = 0;
    if (dir == NULL) {
        dir = "";
    }
    if (!fs_path_ok(dir, 1)) {
        snprintf(err, errlen, "invalid store path \"%s\"", dir);
        return ATLS_STORE_ERROR;
    }
    full = fs_full(fs, dir);
    d = opendir(full);
    if (d == NULL) {
        if (errno == ENOENT) {
            /* Same answer as a key-value backend gives for an empty prefix. */
            free(full);
            return ATLS_STORE_OK;
        }
        snprintf(err, errlen, "%s: %s", full, strerror(errno));
        free(full);
        return ATLS_STORE_ERROR;
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
    free(full);
    if (cnt > 0) {
        qsort(v, cnt, sizeof(*v), fs_cmp);
    }
    *names = v;
    *n = cnt;
    return ATLS_STORE_OK;
}

static int
fs_lock(atls_store_t *st, const char *name, int wait, atls_store_lock_t **out,
        char *err, size_t errlen)
{
    fs_impl_t *fs = st->impl;
    char      *rel, *full;
    size_t     rlen;
    int        fd, rc;

    *out = NULL;
    if (name == NULL || strchr(name, '/') != NULL || !fs_path_ok(name, 0)) {
        snprintf(err, errlen, "invalid lock name \"%s\"", name ? name : "(null)");
        return ATLS_STORE_ERROR;
    }
    rlen = strlen(name) + sizeof("locks/.lock");
    rel = malloc(rlen);
    if (rel == NULL) {
        abort();
    }
    snprintf(rel, rlen, "locks/%s.lock", name);
    if (fs_mkdirs(fs, rel, 0, err, errlen) != 0) {
        free(rel);
        return ATLS_STORE_ERROR;
    }
    full = fs_full(fs, rel);
    free(rel);
    fd = open(full, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, FS_PRIVATE_MODE);
    if (fd < 0) {
        snprintf(err, errlen, "open %s: %s", full, strerror(errno));
        free(full);
        return ATLS_STORE_ERROR;
    }
    if (fs_give_fd(fs, fd) != 0) {
        snprintf(err, errlen, "chown %s: %s", full, strerror(errno));
        close(fd);
        free(full);
        return ATLS_STORE_ERROR;
    }
    do {
        rc = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB));
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int e = errno;

        close(fd);
        if (e == EWOULDBLOCK) {
            snprintf(err, errlen, "%s: held by another process", full);
            free(full);
            return ATLS_STORE_BUSY;
        }
        snprintf(err, errlen, "flock %s: %s", full, strerror(e));
        free(full);
        return ATLS_STORE_ERROR;
    }
    free(full);
    *out = malloc(sizeof(**out));
    if (*out == NULL) {
        abort();
    }
    (*out)->fd = fd;
    return ATLS_STORE_OK;
}

static void
fs_unlock(atls_store_t *st, atls_store_lock_t *lk)
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

static void
fs_close(atls_store_t *st)
{
    fs_impl_t *fs = st->impl;

    if (fs != NULL) {
        free(fs->root);
        free(fs);
    }
    free(st->location);
    free(st);
}

static const atls_store_ops_t fs_ops = {
    "fs", fs_get, fs_put, fs_del, fs_list, fs_lock, fs_unlock, fs_close
};

/* mkdir -p of dir: the last component with `mode`, missing parents with
 * FS_PARENT_MODE.  *created = 1 when the last component was made. */
static int
fs_mkdir_tree(const char *dir, mode_t mode, int *created, char *err, size_t errlen)
{
    char  *d, *p;
    size_t len;

    *created = 0;
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
            if (mkdir(d, last ? mode : FS_PARENT_MODE) == 0) {
                if (last) {
                    *created = 1;
                }
            } else if (errno != EEXIST) {
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

static int
fs_check_dir(const char *dir, struct stat *sb, char *err, size_t errlen)
{
    if (stat(dir, sb) != 0) {
        snprintf(err, errlen, "store directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sb->st_mode)) {
        snprintf(err, errlen, "store directory %s: not a directory", dir);
        return -1;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "store directory %s: not writable: %s", dir,
                 strerror(errno));
        return -1;
    }
    return 0;
}

atls_store_t *
atls_store_fs_open(const char *dir, char *err, size_t errlen)
{
    atls_store_t *st;
    fs_impl_t    *fs;
    struct stat   sb;
    size_t        i;
    int           created;

    if (dir == NULL || *dir == '\0') {
        snprintf(err, errlen, "store directory not set");
        return NULL;
    }
    if (stat(dir, &sb) != 0) {
        if (errno != ENOENT) {
            snprintf(err, errlen, "store directory %s: %s", dir, strerror(errno));
            return NULL;
        }
        if (fs_mkdir_tree(dir, FS_DIR_MODE, &created, err, errlen) != 0) {
            return NULL;
        }
    }
    if (fs_check_dir(dir, &sb, err, errlen) != 0) {
        return NULL;
    }

    fs = calloc(1, sizeof(*fs));
    st = calloc(1, sizeof(*st));
    if (fs == NULL || st == NULL) {
        abort();
    }
    fs->root = atls_strdup(dir);
    {
        size_t len = strlen(fs->root);

        while (len > 1 && fs->root[len - 1] == '/') {
            fs->root[--len] = '\0';
        }
    }
    if (geteuid() == 0 && sb.st_uid != 0) {
        fs->give_owner = 1;
        fs->uid = sb.st_uid;
        fs->gid = sb.st_gid;
    }
    st->ops = &fs_ops;
    st->impl = fs;
    st->location = atls_strdup(fs->root);

    for (i = 0; i < sizeof(fs_subdirs) / sizeof(fs_subdirs[0]); i++) {
        if (fs_mkdirs(fs, fs_subdirs[i], 1, err, errlen) != 0) {
            fs_close(st);
            return NULL;
        }
    }
    return st;
}

/* ---- prepare: the privileged parent hands the tree to the worker user ---- */

/* nftw() has no context argument; prepare runs once in a single-threaded
 * parent at start-up, so file-scope state is acceptable here. */

static long   prep_uid, prep_gid;
static int    prep_failed;
static char  *prep_err;
static size_t prep_errlen;

static int
fs_is_private_name(const char *base)
{
    size_t n = strlen(base);

    return (n > 4 && strcmp(base + n - 4, ".key") == 0)
           || (n > 4 && strcmp(base + n - 4, ".pem") == 0)
           || (n > 5 && strcmp(base + n - 5, ".lock") == 0)
           || strncmp(base, ".tmp.", 5) == 0;
}

static int
fs_prep_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    mode_t want = 0;
    mode_t cur = sb->st_mode & 07777;

    if (flag == FTW_SL) {
        return 0;
    }
    if (flag == FTW_D || flag == FTW_DP) {
        if (cur & 077) {
            want = FS_DIR_MODE;
        }
    } else if (flag == FTW_F) {
        if (fs_is_private_name(p + ftw->base)) {
            if (cur & 077) {
                want = FS_PRIVATE_MODE;
            }
        } else if (cur & 022) {
            want = cur & ~(mode_t) 022;
        }
    } else if (flag == FTW_DNR || flag == FTW_NS) {
        snprintf(prep_err, prep_errlen, "store entry %s: cannot read", p);
        prep_failed = 1;
        return 1;
    }
    if (want != 0) {
        atls_log(ATLS_LOG_WARN, "store: %s had mode %04o, too open; setting %04o",
                 p, (unsigned) cur, (unsigned) want);
        if (chmod(p, want) != 0) {
            snprintf(prep_err, prep_errlen, "chmod %s: %s", p, strerror(errno));
            prep_failed = 1;
            return 1;
        }
    }
    if ((prep_uid != -1 && sb->st_uid != (uid_t) prep_uid)
        || (prep_gid != -1 && sb->st_gid != (gid_t) prep_gid))
    {
        if (lchown(p, prep_uid == -1 ? (uid_t) -1 : (uid_t) prep_uid,
                   prep_gid == -1 ? (gid_t) -1 : (gid_t) prep_gid) != 0) {
            snprintf(prep_err, prep_errlen, "chown %s: %s", p, strerror(errno));
            prep_failed = 1;
            return 1;
        }
    }
    return 0;
}

int
atls_store_fs_prepare(const char *dir, long uid, long gid, char *err, size_t errlen)
{
    struct stat sb;
    char        sub[4096];
    size_t      i;
    int         created;

    if (dir == NULL || *dir == '\0') {
        snprintf(err, errlen, "store directory not set");
        return -1;
    }
    if (fs_mkdir_tree(dir, FS_DIR_MODE, &created, err, errlen) != 0) {
        return -1;
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "store directory %s: not a directory", dir);
        return -1;
    }
    for (i = 0; i < sizeof(fs_subdirs) / sizeof(fs_subdirs[0]); i++) {
        if ((size_t) snprintf(sub, sizeof(sub), "%s/%s", dir, fs_subdirs[i])
            >= sizeof(sub)) {
            snprintf(err, errlen, "store directory %s: path too long", dir);
            return -1;
        }
        if (mkdir(sub, FS_DIR_MODE) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "mkdir %s: %s", sub, strerror(errno));
            return -1;
        }
    }
    /* One walk both tightens modes and hands everything to the worker
     * user, so files an earlier root-run CLI made become usable. */
    prep_uid = uid;
    prep_gid = gid;
    prep_failed = 0;
    prep_err = err;
    prep_errlen = errlen;
    if (nftw(dir, fs_prep_entry, 16, FTW_PHYS) != 0 || prep_failed) {
        if (!prep_failed) {
            snprintf(err, errlen, "store directory %s: %s", dir, strerror(errno));
        }
        return -1;
    }
    return 0;
}
