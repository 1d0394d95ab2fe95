/*
 * atls_store_fs_prepare: the privileged parent (nginx master, Apache
 * parent, an installer) creates the store tree and hands it to the worker
 * user, tightening modes on the way.  In two parts: the top level (the
 * root, its fixed sub-directories and its own entries, none entered) and
 * the walk beneath, which a caller may bound by a deadline; a server's
 * start runs that walk in a time budget and, past it, in a detached
 * process (store_fs_prepare_bg.c), with the same rules.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "store_fs_int.h"

/*
 * Runs as root over a tree the worker user may be rewriting meanwhile, so
 * it works on descriptors only: each entry is opened relative to its
 * directory's descriptor with O_NOFOLLOW | O_NONBLOCK, checked with fstat
 * and changed with fchmod/fchown; directories are walked with fdopendir.
 * A link swapped in for a directory mid-walk is refused by O_NOFOLLOW, a
 * directory swapped in for a link is simply walked (it is inside the
 * store).  Links, FIFOs and other special files are left alone (never
 * opened for real, never chowned), as are hard-linked files: their other
 * name may be anywhere.  Such entries are logged; they do not stop the
 * server from starting.
 *
 * At 100,000 certificates the walk opens 300,000 entries: a minute and more
 * of the master's start-up (on a store never walked, what remains of it
 * after the budget now runs beside the server: store_fs_prepare_bg.c).  So an entry whose owner and mode are already
 * right is not opened at all (one fstatat), and a directory whose inode
 * has not changed since the last complete walk began (ctime: any entry
 * created, removed or renamed in it, or its own mode or owner changed) is
 * not walked again: the time is kept in the store's `prepared` file.  A
 * file whose own mode or owner changed in a directory that did not is
 * left for a walk that has a reason to look (a forged stamp only makes
 * root skip entries the worker owns the directory of).
 *
 * The registry of dynamic names (`names/`, one file per name: 100,000 at
 * a hosting provider) is entered only while the directory itself is not
 * yet the worker's: once, when a store made by root is handed over.
 * After that every writer of names/ writes as the store's owner (the
 * servers' workers; the CLI, which drops to the owner; root parents through
 * setfsuid, store_fs.c), and nothing reads it with root's powers (nginx's
 * master counts it as the owner), so a later walk has nothing to hand over there and nothing
 * to protect root from: walking it again only cost each start after an
 * `autotls add` one fstatat per name (0.7 s at 100,000).  The directory's
 * own owner and mode are still checked and fixed like any other's.
 */

typedef struct {
    long         uid, gid;
    const char  *root;
    char        *err;
    size_t       errlen;
    time_t       since;     /* the last complete walk began then (0: never) */
    const struct timespec *deadline;   /* CLOCK_MONOTONIC; NULL: none */
    int          top_only;  /* the root's own entries, none entered */
    int          keep_going;    /* log an entry's error and go on */
    unsigned     failed;    /* entries keep_going went past */
    atls_fs_prep_handed_fn handed;  /* told of each entry handed over */
    void        *handed_ctx;
} fs_prep_t;

#define FS_PREP_STAMP  "prepared"
/* Entered only while not yet the worker's (see above). */
#define FS_PREP_ONCE   "names"


static int
fs_is_private_name(const char *base)
{
    size_t n = strlen(base);

    return (n > 4 && strcmp(base + n - 4, ".key") == 0)
           || (n > 4 && strcmp(base + n - 4, ".pem") == 0)
           || (n > 5 && strcmp(base + n - 5, ".lock") == 0)
           || strncmp(base, ".tmp.", 5) == 0
           /* the audit trail names operators; notify.json may hold a token */
           || strncmp(base, "audit.log", 9) == 0 || strcmp(base, "notify.json") == 0;
}

/* The mode an entry should have: never a set-id bit, never writable by
 * others, private files and directories not even readable. */
static mode_t
fs_prep_mode(const struct stat *sb, const char *base)
{
    mode_t cur = sb->st_mode & 07777;

    if (S_ISDIR(sb->st_mode)) {
        return (cur & 07077) ? FS_DIR_MODE : cur;
    }
    if (fs_is_private_name(base) && (cur & 077)) {
        return FS_PRIVATE_MODE;
    }
    return cur & ~(mode_t) 07022;
}

/* 1 when the owner of sb is the one prepare hands the store to. */
static int
fs_prep_owned(fs_prep_t *p, const struct stat *sb)
{
    return (p->uid == -1 || sb->st_uid == (uid_t) p->uid)
           && (p->gid == -1 || sb->st_gid == (gid_t) p->gid);
}

/* Tightens the mode of the open entry fd and hands it to the worker. */
static int
fs_prep_fix(fs_prep_t *p, int fd, const struct stat *sb, const char *rel, const char *base)
{
    mode_t cur = sb->st_mode & 07777, want = fs_prep_mode(sb, base);

    if (want != cur) {
        atls_log(ATLS_LOG_WARN, "store: %s%s%s had mode %04o, too open; setting %04o",
                 p->root, *rel ? "/" : "", rel, (unsigned) cur, (unsigned) want);
        if (fchmod(fd, want) != 0) {
            snprintf(p->err, p->errlen, "chmod %s/%s: %s", p->root, rel, strerror(errno));
            return -1;
        }
    }
    if (!fs_prep_owned(p, sb)) {
        if (fchown(fd, p->uid == -1 ? (uid_t) -1 : (uid_t) p->uid,
                   p->gid == -1 ? (gid_t) -1 : (gid_t) p->gid) != 0)
        {
            snprintf(p->err, p->errlen, "chown %s/%s: %s", p->root, rel, strerror(errno));
            return -1;
        }
        if (p->handed != NULL) {
            p->handed(p->handed_ctx, rel, 0);
        }
    }
    return 0;
}

static int fs_prep_dir(fs_prep_t *p, int dirfd, const char *rel, int depth);

/* 1 when name, an entry of the directory at depth, is a directory handed
 * over with its entries once (FS_PREP_ONCE: entered only while its owner
 * is not yet the worker's). */
static int
fs_prep_once(const char *name, int depth)
{
    return depth == 0 && strcmp(name, FS_PREP_ONCE) == 0;
}

/* 1 when the entry needs no look: owner and mode right, and for a
 * directory, not changed since the last complete walk (looked at without
 * opening it; a link or special file is never skipped here, so that it is
 * reported as before). */
static int
fs_prep_unchanged(fs_prep_t *p, int dirfd, const char *name, int depth)
{
    struct stat sb;

    if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0
        || (!S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode))
        || (S_ISREG(sb.st_mode) && sb.st_nlink > 1)
        || !fs_prep_owned(p, &sb)
        || fs_prep_mode(&sb, name) != (sb.st_mode & 07777))
    {
        return 0;
    }
    return S_ISREG(sb.st_mode) || fs_prep_once(name, depth)
           || (p->since > 0 && sb.st_ctime < p->since);
}

/* One entry of a directory: -1 only for errors that are not the worker's
 * doing (those are skipped with a warning); ATLS_FS_PREP_LATE from below
 * when the deadline passed. */
static int
fs_prep_entry(fs_prep_t *p, int dirfd, const char *name, const char *rel, int depth)
{
    struct stat sb;
    const char *skip = NULL;
    int         fd, rc = 0;

    if (fs_prep_unchanged(p, dirfd, name, depth)) {
        return 0;
    }
    fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return 0;       /* gone meanwhile */
        }
        if (errno != ELOOP && errno != ENXIO && errno != EOPNOTSUPP) {
            snprintf(p->err, p->errlen, "store entry %s/%s: %s", p->root, rel,
                     strerror(errno));
            return -1;
        }
        /* a link, or a socket */
        atls_log(ATLS_LOG_WARN, "store: %s/%s: %s; left alone", p->root, rel,
                 errno == ELOOP ? "a symbolic link" : "not a regular file");
        return 0;
    }
    if (fstat(fd, &sb) != 0) {
        snprintf(p->err, p->errlen, "store entry %s/%s: %s", p->root, rel, strerror(errno));
        close(fd);
        return -1;
    }
    if (S_ISDIR(sb.st_mode)) {
        if (depth >= FS_MAX_DEPTH) {
            skip = "nested too deep";
        }
    } else if (!S_ISREG(sb.st_mode)) {
        skip = "not a regular file";
    } else if (sb.st_nlink > 1) {
        skip = "a hard-linked file";
    }
    if (skip != NULL) {
        atls_log(ATLS_LOG_WARN, "store: %s/%s: %s; left alone", p->root, rel, skip);
    } else if (S_ISDIR(sb.st_mode) && fs_prep_once(name, depth)) {
        if (fs_prep_owned(p, &sb)) {
            rc = fs_prep_fix(p, fd, &sb, rel, name);
        } else if (!p->top_only) {
            /* its entries first: handed over, it is not entered again
             * (so the top-level pass leaves it to the walk) */
            rc = fs_prep_dir(p, fd, rel, depth + 1);
            if (rc == 0) {
                rc = fs_prep_fix(p, fd, &sb, rel, name);
            }
        }
    } else {
        rc = fs_prep_fix(p, fd, &sb, rel, name);
        if (rc == 0 && S_ISDIR(sb.st_mode) && !p->top_only) {
            rc = fs_prep_dir(p, fd, rel, depth + 1);
            if (rc == 0 && p->handed != NULL) {
                p->handed(p->handed_ctx, rel, 1);
            }
        }
    }
    close(fd);
    return rc;
}

/* 1 when the caller's time for the walk is over (one clock read an entry:
 * a vDSO call, next to the fstatat each entry costs anyway). */
static int
fs_prep_late(fs_prep_t *p)
{
    struct timespec now;

    if (p->deadline == NULL || clock_gettime(CLOCK_MONOTONIC, &now) != 0) {
        return 0;
    }
    return now.tv_sec > p->deadline->tv_sec
           || (now.tv_sec == p->deadline->tv_sec && now.tv_nsec >= p->deadline->tv_nsec);
}

static int
fs_prep_dir(fs_prep_t *p, int dirfd, const char *rel, int depth)
{
    DIR           *d;
    struct dirent *de;
    char           sub[1024];
    int            fd, rc = 0;

    fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        snprintf(p->err, p->errlen, "store directory %s/%s: %s", p->root, rel,
                 strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    /* the duplicate shares the offset of a directory walked before (the
     * root: by the top-level pass) */
    rewinddir(d);
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        if (fs_prep_late(p)) {
            rc = ATLS_FS_PREP_LATE;
            break;
        }
        snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
        rc = fs_prep_entry(p, dirfd, de->d_name, sub, depth);
        if (rc == -1 && p->keep_going) {
            atls_log(ATLS_LOG_ERR, "store: %s", p->err);
            p->failed++;
            rc = 0;
        }
    }
    closedir(d);
    return rc;
}

/* One of the fixed sub-directories: made when missing; anything else in
 * its place (a link, a file, a FIFO) is removed first, which unlinkat does
 * to the entry itself, never to what a link points to. */
static int
fs_prep_subdir(int rootfd, const char *dir, const char *sub, char *err, size_t errlen)
{
    struct stat sb;

    if (fstatat(rootfd, sub, &sb, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(sb.st_mode)) {
        atls_log(ATLS_LOG_WARN, "store: %s/%s: %s; replaced by a directory", dir, sub,
                 S_ISLNK(sb.st_mode) ? "a symbolic link" : "not a directory");
        if (unlinkat(rootfd, sub, 0) != 0 && errno != ENOENT) {
            snprintf(err, errlen, "remove %s/%s: %s", dir, sub, strerror(errno));
            return -1;
        }
    }
    if (mkdirat(rootfd, sub, FS_DIR_MODE) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "mkdir %s/%s: %s", dir, sub, strerror(errno));
        return -1;
    }
    return 0;
}

/* When the last complete walk began (0: unknown). */
static time_t
fs_prep_stamp_read(int rootfd)
{
    struct stat sb;
    char        buf[32];
    ssize_t     n;
    long long   t;
    int         fd;

    fd = openat(rootfd, FS_PREP_STAMP, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    n = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) ? read(fd, buf, sizeof(buf) - 1) : -1;
    close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    return sscanf(buf, "%lld", &t) == 1 && t > 0 ? (time_t) t : 0;
}

/* Records began as the start of a complete walk: a new file (whatever had
 * the name is unlinked first, and O_EXCL refuses one planted meanwhile), the
 * worker's like everything else. */
static void
fs_prep_stamp_write(fs_prep_t *p, int rootfd, time_t began)
{
    char buf[32];
    int  fd, n;

    (void) unlinkat(rootfd, FS_PREP_STAMP, 0);
    fd = openat(rootfd, FS_PREP_STAMP,
                O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        return;     /* the next start walks everything: slower, not wrong */
    }
    n = snprintf(buf, sizeof(buf), "%lld\n", (long long) began);
    if (write(fd, buf, (size_t) n) != n
        || ((p->uid != -1 || p->gid != -1)
            && fchown(fd, p->uid == -1 ? (uid_t) -1 : (uid_t) p->uid,
                      p->gid == -1 ? (gid_t) -1 : (gid_t) p->gid) != 0))
    {
        atls_log(ATLS_LOG_WARN, "store: %s/%s: %s", p->root, FS_PREP_STAMP,
                 strerror(errno));
    }
    close(fd);
}

static void
fs_prep_init(fs_prep_t *p, const char *dir, long uid, long gid, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    p->uid = uid;
    p->gid = gid;
    p->root = dir;
    p->err = err;
    p->errlen = errlen;
}

int
atls_fs_prepare_top(const char *dir, long uid, long gid, char *err, size_t errlen)
{
    fs_prep_t   p;
    struct stat sb;
    size_t      i;
    int         rootfd;

    rootfd = atls_fs_root_open(dir, &sb, err, errlen);
    if (rootfd < 0) {
        return -1;
    }
    for (i = 0; i < sizeof(atls_fs_subdirs) / sizeof(atls_fs_subdirs[0]); i++) {
        if (fs_prep_subdir(rootfd, dir, atls_fs_subdirs[i], err, errlen) != 0) {
            close(rootfd);
            return -1;
        }
    }
    /* The root and what it holds (the fixed sub-directories, the
     * generation and registry files), none entered: what the workers need
     * before anything else, whatever the walk below has time for. */
    fs_prep_init(&p, dir, uid, gid, err, errlen);
    p.since = fs_prep_stamp_read(rootfd);
    p.top_only = 1;
    if (fs_prep_fix(&p, rootfd, &sb, "", "") != 0 || fs_prep_dir(&p, rootfd, "", 0) != 0) {
        close(rootfd);
        return -1;
    }
    return rootfd;
}

int
atls_fs_prepare_walk(int rootfd, const char *dir, long uid, long gid,
                     const struct timespec *deadline, int keep_going,
                     atls_fs_prep_handed_fn handed, void *handed_ctx, char *err,
                     size_t errlen)
{
    fs_prep_t p;
    time_t    began;
    int       rc;

    /* One walk both tightens modes and hands everything to the worker
     * user, so files an earlier root-run CLI made become usable. */
    fs_prep_init(&p, dir, uid, gid, err, errlen);
    p.since = fs_prep_stamp_read(rootfd);
    p.deadline = deadline;
    p.keep_going = keep_going;
    p.handed = handed;
    p.handed_ctx = handed_ctx;
    began = time(NULL);
    rc = fs_prep_dir(&p, rootfd, "", 0);
    if (rc == 0 && p.failed > 0) {
        snprintf(err, errlen, "%s: %u entries not handed over (logged above)", dir,
                 p.failed);
        rc = -1;
    }
    if (rc == 0) {
        fs_prep_stamp_write(&p, rootfd, began);
    }
    return rc;
}

int
atls_store_fs_prepare(const char *dir, long uid, long gid, char *err, size_t errlen)
{
    int rootfd, rc;

    rootfd = atls_fs_prepare_top(dir, uid, gid, err, errlen);
    if (rootfd < 0) {
        return -1;
    }
    rc = atls_fs_prepare_walk(rootfd, dir, uid, gid, NULL, 0, NULL, NULL, err, errlen);
    close(rootfd);
    return rc;
}
