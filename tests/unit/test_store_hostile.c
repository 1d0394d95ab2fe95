/*
 * The filesystem store against a hostile owner: the worker user owns the
 * store and may plant links, FIFOs, huge files, set-id bits and hard links
 * anywhere in it, or swap a directory for a link while root walks it.
 * Nothing outside the store may change, nothing may hang.
 *
 * The link tests run twice: as they are, and in a child where a seccomp
 * filter makes openat2 answer ENOSYS, so the component-wise fallback is
 * tested on this kernel too.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <cmocka.h>
#include "atls_priv.h"
#include "atls_store.h"
#include "support/tmptree.h"

#define WORKER_UID 65534
#define WORKER_GID 65534
/* every test that could hang on a FIFO is killed by SIGALRM instead */
#define HANG_GUARD_S 10

typedef struct {
    char          dir[64];       /* the temp parent, 0755 */
    char          root[96];      /* the store */
    char          outside[96];   /* a sentinel tree the store must not touch */
    atls_store_t *st;
} fx_t;

static void
write_file(const char *path, const char *data, mode_t mode)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, mode);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, strlen(data)), (ssize_t) strlen(data));
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static int
setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    char  err[512], p[256];

    if (fx == NULL) {
        return -1;
    }
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/atls-hostile-XXXXXX");
    if (mkdtemp(fx->dir) == NULL || chmod(fx->dir, 0755) != 0) {
        return -1;
    }
    snprintf(fx->root, sizeof(fx->root), "%s/store", fx->dir);
    snprintf(fx->outside, sizeof(fx->outside), "%s/outside", fx->dir);
    if (mkdir(fx->outside, 0755) != 0) {
        return -1;
    }
    snprintf(p, sizeof(p), "%s/f", fx->outside);
    write_file(p, "sentinel\n", 0666);
    snprintf(p, sizeof(p), "%s/sub", fx->outside);
    if (mkdir(p, 0755) != 0) {
        return -1;
    }
    snprintf(p, sizeof(p), "%s/sub/g", fx->outside);
    write_file(p, "sentinel too\n", 0600);
    fx->st = atls_store_fs_open(fx->root, err, sizeof(err));
    if (fx->st == NULL) {
        fprintf(stderr, "open: %s\n", err);
        return -1;
    }
    alarm(HANG_GUARD_S);
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    fx_t *fx = *state;

    alarm(0);
    atls_store_close(fx->st);
    tmptree_rm(fx->dir);
    free(fx);
    return 0;
}

static char *
fx_path(fx_t *fx, const char *rel)
{
    static char buf[4][512];
    static int  next;
    char       *b = buf[next++ % 4];

    snprintf(b, sizeof(buf[0]), "%s/%s", fx->root, rel);
    return b;
}

/* ---- the sentinel tree: every entry's name, type, mode, owner, content --- */

static char   snap_buf[8192];
static size_t snap_len;

static int
snap_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    char    data[64] = "";
    ssize_t n;
    int     fd;

    (void) flag;
    (void) ftw;
    if (S_ISREG(sb->st_mode) && (fd = open(p, O_RDONLY | O_NOFOLLOW)) >= 0) {
        n = read(fd, data, sizeof(data) - 1);
        data[n > 0 ? n : 0] = '\0';
        close(fd);
    }
    snap_len += (size_t) snprintf(snap_buf + snap_len, sizeof(snap_buf) - snap_len,
                                  "%s %o %ld:%ld %ld [%s]\n", p, (unsigned) sb->st_mode,
                                  (long) sb->st_uid, (long) sb->st_gid,
                                  (long) sb->st_nlink, data);
    return snap_len >= sizeof(snap_buf) - 1;
}

/* A malloc'd description of everything below dir (links not followed). */
static char *
snapshot(const char *dir)
{
    snap_len = 0;
    snap_buf[0] = '\0';
    assert_int_equal(nftw(dir, snap_entry, 16, FTW_PHYS), 0);
    return strdup(snap_buf);
}

static void
assert_unchanged(const char *dir, const char *before)
{
    char *now = snapshot(dir);

    assert_string_equal(now, before);
    free(now);
}

/* Replaces the store entry rel (whatever it is) with a link to target. */
static void
plant_link(fx_t *fx, const char *rel, const char *target)
{
    tmptree_rm(fx_path(fx, rel));
    assert_int_equal(symlink(target, fx_path(fx, rel)), 0);
}

static int
is_link(const char *p)
{
    struct stat sb;

    return lstat(p, &sb) == 0 && S_ISLNK(sb.st_mode);
}

/* ---- links ----------------------------------------------------------------- */

static void
links_checks(fx_t *fx)
{
    atls_store_lock_t  *lk = NULL;
    char                err[512], *data = NULL, *before, **names = NULL;
    size_t              len = 0, n = 0;
    char                outf[256];

    snprintf(outf, sizeof(outf), "%s/f", fx->outside);
    before = snapshot(fx->outside);

    /* a directory of the store is a link to the outside */
    plant_link(fx, "certs", fx->outside);
    assert_int_equal(fx->st->ops->get(fx->st, "certs/f", &data, &len, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_null(data);
    assert_non_null(strstr(err, "symbolic link"));
    assert_non_null(strstr(err, fx->root));
    assert_int_equal(fx->st->ops->put(fx->st, "certs/f", "x", 1, 0, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "symbolic link"));
    /* mkdirs through it */
    assert_int_equal(fx->st->ops->put(fx->st, "certs/new/meta.json", "x", 1, 0, err,
                                      sizeof(err)), ATLS_STORE_ERROR);
    assert_int_not_equal(fx->st->ops->del(fx->st, "certs/f", err, sizeof(err)),
                         ATLS_STORE_OK);
    assert_int_not_equal(fx->st->ops->del(fx->st, "certs/sub", err, sizeof(err)),
                         ATLS_STORE_OK);
    assert_int_equal(fx->st->ops->list(fx->st, "certs", &names, &n, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "symbolic link"));

    /* the lock directory */
    plant_link(fx, "locks", fx->outside);
    assert_int_equal(fx->st->ops->lock(fx->st, "job", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_null(lk);

    /* a deeper directory: requests/x -> outside */
    plant_link(fx, "requests", fx->outside);
    assert_int_equal(fx->st->ops->put(fx->st, "requests/f", "x", 1, 0, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    tmptree_rm(fx_path(fx, "requests"));
    unlink(fx_path(fx, "requests"));
    assert_int_equal(mkdir(fx_path(fx, "requests"), 0700), 0);
    assert_int_equal(mkdir(fx_path(fx, "requests/d"), 0700), 0);
    plant_link(fx, "requests/d/e", fx->outside);
    assert_int_equal(fx->st->ops->put(fx->st, "requests/d/e/f", "x", 1, 0, err,
                                      sizeof(err)), ATLS_STORE_ERROR);
    assert_int_not_equal(fx->st->ops->del(fx->st, "requests/d/e/sub", err, sizeof(err)),
                         ATLS_STORE_OK);

    /* a file of the store is a link to an outside file */
    plant_link(fx, "generation", outf);
    assert_int_equal(fx->st->ops->get(fx->st, "generation", &data, &len, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "generation"));
    assert_non_null(strstr(err, "symbolic link"));
    assert_int_equal(atls_store_generation(fx->st), 0);
    /* a lock file that is a link */
    assert_int_equal(mkdir(fx_path(fx, "locks2"), 0700), 0);
    unlink(fx_path(fx, "locks"));
    assert_int_equal(rename(fx_path(fx, "locks2"), fx_path(fx, "locks")), 0);
    plant_link(fx, "locks/job.lock", outf);
    assert_int_equal(fx->st->ops->lock(fx->st, "job", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "symbolic link"));

    /* deleting a link removes the link, never its target (even a tree) */
    plant_link(fx, "certs", fx->outside);
    assert_int_equal(fx->st->ops->del(fx->st, "certs", err, sizeof(err)), ATLS_STORE_OK);
    assert_false(is_link(fx_path(fx, "certs")));
    /* writing over a link replaces the link */
    plant_link(fx, "generation", outf);
    assert_int_equal(fx->st->ops->put(fx->st, "generation", "7", 1, 0, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_false(is_link(fx_path(fx, "generation")));
    assert_int_equal(atls_store_generation(fx->st), 7);

    assert_unchanged(fx->outside, before);
    free(before);
}

static void
test_links(void **state)
{
    links_checks(*state);
}

/* openat2 answers ENOSYS from here on (this process and its children). */
static int
block_openat2(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };

    if (prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) != 0) {
        return -1;
    }
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0L, 0L);
}

static void
test_links_without_openat2(void **state)
{
    fx_t  *fx = *state;
    pid_t  pid;
    int    status;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (block_openat2() != 0 || syscall(SYS_openat2, AT_FDCWD, "/", NULL, 0) != -1
            || errno != ENOSYS)
        {
            _exit(3);
        }
        /* cmocka's assertions end a child with a non-zero status too */
        links_checks(fx);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- FIFOs, sizes, set-id bits ------------------------------------------------ */

static void
test_fifo(void **state)
{
    fx_t              *fx = *state;
    atls_store_lock_t *lk = NULL;
    char               err[512], *data = NULL;
    size_t             len;

    /* alarm() (setup) ends the test if anything blocks on the FIFO */
    assert_int_equal(mkfifo(fx_path(fx, "generation"), 0600), 0);
    assert_int_equal(fx->st->ops->get(fx->st, "generation", &data, &len, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, fx_path(fx, "generation")));
    assert_non_null(strstr(err, "not a regular file"));
    assert_int_equal(atls_store_generation(fx->st), 0);

    assert_int_equal(mkfifo(fx_path(fx, "locks/job.lock"), 0600), 0);
    assert_int_equal(fx->st->ops->lock(fx->st, "job", 1, &lk, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "job.lock"));
    assert_non_null(strstr(err, "not a regular file"));

    /* a FIFO as a directory on the way */
    assert_int_equal(mkfifo(fx_path(fx, "certs/x.test"), 0600), 0);
    assert_int_equal(fx->st->ops->get(fx->st, "certs/x.test/meta.json", &data, &len, err,
                                      sizeof(err)), ATLS_STORE_ERROR);
    assert_int_equal(fx->st->ops->put(fx->st, "certs/x.test/meta.json", "x", 1, 0, err,
                                      sizeof(err)), ATLS_STORE_ERROR);

    /* a write replaces the FIFO */
    assert_int_equal(fx->st->ops->put(fx->st, "generation", "3", 1, 0, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_generation(fx->st), 3);
}

static void
test_oversized(void **state)
{
    fx_t   *fx = *state;
    char    err[512], *data = NULL;
    size_t  len;
    int     fd;

    assert_int_equal(mkdir(fx_path(fx, "certs/big.test"), 0700), 0);
    fd = open(fx_path(fx, "certs/big.test/meta.json"), O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 2 * 1024 * 1024), 0);
    close(fd);
    assert_int_equal(fx->st->ops->get(fx->st, "certs/big.test/meta.json", &data, &len,
                                      err, sizeof(err)), ATLS_STORE_ERROR);
    assert_null(data);
    assert_non_null(strstr(err, "certs/big.test/meta.json"));
    assert_non_null(strstr(err, "1 MiB"));
}

static mode_t
mode_of(const char *p)
{
    struct stat sb;

    assert_int_equal(lstat(p, &sb), 0);
    return sb.st_mode & 07777;
}

static void
test_setid_stripped(void **state)
{
    fx_t   *fx = *state;
    char    err[512], *data = NULL;
    size_t  len;

    assert_int_equal(mkdir(fx_path(fx, "certs/s.test"), 0700), 0);
    write_file(fx_path(fx, "certs/s.test/meta.json"), "{}", 06777);
    assert_int_equal(mode_of(fx_path(fx, "certs/s.test/meta.json")), 06777);
    /* any file we touch */
    assert_int_equal(fx->st->ops->get(fx->st, "certs/s.test/meta.json", &data, &len,
                                      err, sizeof(err)), ATLS_STORE_OK);
    free(data);
    assert_int_equal(mode_of(fx_path(fx, "certs/s.test/meta.json")) & 07000, 0);

    /* and the preparation walk: files and directories */
    write_file(fx_path(fx, "certs/s.test/ec256.pem"), "k", 06777);
    write_file(fx_path(fx, "certs/s.test/other"), "o", 04755);
    assert_int_equal(chmod(fx_path(fx, "certs/s.test"), 02700), 0);
    assert_int_equal(atls_store_fs_prepare(fx->root, -1, -1, err, sizeof(err)), 0);
    assert_int_equal(mode_of(fx_path(fx, "certs/s.test/ec256.pem")), 0600);
    assert_int_equal(mode_of(fx_path(fx, "certs/s.test/other")), 0755);
    assert_int_equal(mode_of(fx_path(fx, "certs/s.test")), 0700);
}

/* ---- prepare over a hostile tree ----------------------------------------------- */

static void
test_prepare_hostile(void **state)
{
    fx_t        *fx = *state;
    char         err[512], outf[256], *before;
    struct stat  sb;
    long         uid = geteuid() == 0 ? WORKER_UID : -1;
    long         gid = geteuid() == 0 ? WORKER_GID : -1;

    snprintf(outf, sizeof(outf), "%s/f", fx->outside);
    assert_int_equal(mkdir(fx_path(fx, "certs/h.test"), 0755), 0);
    assert_int_equal(symlink(fx->outside, fx_path(fx, "certs/dirlink")), 0);
    assert_int_equal(symlink(outf, fx_path(fx, "certs/h.test/meta.json")), 0);
    assert_int_equal(symlink("/nonexistent", fx_path(fx, "certs/h.test/dangling")), 0);
    assert_int_equal(mkfifo(fx_path(fx, "generation"), 0666), 0);
    plant_link(fx, "requests", fx->outside);
    write_file(fx_path(fx, "certs/h.test/setuid"), "x", 06777);
    /* a hard link to a file outside (same filesystem) */
    assert_int_equal(link(outf, fx_path(fx, "certs/h.test/ec256.pem")), 0);
    before = snapshot(fx->outside);

    assert_int_equal(atls_store_fs_prepare(fx->root, uid, gid, err, sizeof(err)), 0);

    assert_unchanged(fx->outside, before);
    free(before);
    assert_int_equal(mode_of(fx_path(fx, "certs/h.test/setuid")), 0755);
    assert_int_equal(mode_of(fx_path(fx, "certs/h.test")), 0700);
    assert_true(is_link(fx_path(fx, "certs/dirlink")));
    /* a fixed sub-directory is made a directory again (the link removed) */
    assert_int_equal(lstat(fx_path(fx, "requests"), &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(lstat(fx_path(fx, "generation"), &sb), 0);
    assert_true(S_ISFIFO(sb.st_mode));
    if (uid != -1) {
        /* everything regular handed over; the FIFO and the links left alone */
        assert_int_equal(lstat(fx_path(fx, "certs/h.test/setuid"), &sb), 0);
        assert_int_equal(sb.st_uid, WORKER_UID);
        assert_int_equal(lstat(fx_path(fx, "generation"), &sb), 0);
        assert_int_equal(sb.st_uid, 0);
        assert_int_equal(lstat(fx_path(fx, "certs/dirlink"), &sb), 0);
        assert_int_equal(sb.st_uid, 0);
    }
}

/* A child keeps exchanging certs/d, a directory too open for prepare's
 * taste, with certs/l, a link to the outside, while prepare walks the
 * store over and over: a walk that goes by path ends up changing the
 * outside through the link. */
static void
test_prepare_swap_race(void **state)
{
    fx_t   *fx = *state;
    char    err[512], *before, d[300], l[300];
    long    uid = geteuid() == 0 ? WORKER_UID : -1;
    pid_t   pid;
    int     i, status, dfd;

    snprintf(d, sizeof(d), "%s", fx_path(fx, "certs/d"));
    snprintf(l, sizeof(l), "%s", fx_path(fx, "certs/l"));
    assert_int_equal(mkdir(d, 0777), 0);
    write_file(fx_path(fx, "certs/d/file"), "x", 0666);
    assert_int_equal(symlink(fx->outside, l), 0);
    before = snapshot(fx->outside);

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dfd = open(d, O_RDONLY | O_DIRECTORY);
        for (;;) {
            int r;

            /* the worker re-opens its directory (fd: whatever its name) */
            (void) fchmod(dfd, 0777);
            r = fchown(dfd, 0, 0);      /* fails now and then: names swap */
            (void) r;
            (void) syscall(SYS_renameat2, AT_FDCWD, d, AT_FDCWD, l, RENAME_EXCHANGE);
        }
    }
    for (i = 0; i < 2000; i++) {
        if (atls_store_fs_prepare(fx->root, uid, uid, err, sizeof(err)) != 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("prepare: %s", err);
        }
    }
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_unchanged(fx->outside, before);
    free(before);
}

/* ---- root on a store the worker owns ---------------------------------------- */

static void
test_root_acts_as_owner(void **state)
{
    fx_t         *fx = *state;
    atls_store_t *st;
    struct stat   sb;
    char          err[512], *data = NULL;
    size_t        len;

    if (geteuid() != 0) {
        skip();
    }
    assert_int_equal(atls_store_fs_prepare(fx->root, WORKER_UID, WORKER_GID, err,
                                           sizeof(err)), 0);
    st = atls_store_fs_open(fx->root, err, sizeof(err));
    assert_non_null(st);

    /* new files belong to the owner, in the modes they must have */
    assert_int_equal(st->ops->put(st, "certs/o.test/ec256.pem", "k", 1, 1, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(stat(fx_path(fx, "certs/o.test"), &sb), 0);
    assert_int_equal(sb.st_uid, WORKER_UID);
    assert_int_equal(sb.st_mode & 07777, 0700);
    assert_int_equal(stat(fx_path(fx, "certs/o.test/ec256.pem"), &sb), 0);
    assert_int_equal(sb.st_uid, WORKER_UID);
    assert_int_equal(sb.st_gid, WORKER_GID);
    assert_int_equal(sb.st_mode & 07777, 0600);

    /* root's powers are not used: a root-only file in the store is unreadable */
    write_file(fx_path(fx, "certs/o.test/meta.json"), "{}", 0600);
    assert_int_equal(chown(fx_path(fx, "certs/o.test/meta.json"), 0, 0), 0);
    assert_int_equal(st->ops->get(st, "certs/o.test/meta.json", &data, &len, err,
                                  sizeof(err)), ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "Permission denied"));
    assert_null(data);

    /* and the thread is root again afterwards */
    assert_int_equal(setfsuid((uid_t) -1), 0);
    assert_int_equal(setfsgid((gid_t) -1), 0);
    atls_store_close(st);
}

/* ---- dropping root for good (the CLI) ------------------------------------- */

/* In a child: drop to the worker, check that root is gone for good, that
 * ports below 1024 can still be bound, and that a program it runs starts
 * without any capability. */
static int
drop_child(void)
{
    struct sockaddr_in sa;
    char               err[256], buf[4096];
    FILE              *f;
    int                fd, port, bound = 0;

    if (atls_priv_drop(WORKER_UID, WORKER_GID, 1, err, sizeof(err)) != 0) {
        fprintf(stderr, "drop: %s\n", err);
        return 10;
    }
    if (getuid() != WORKER_UID || geteuid() != WORKER_UID || getegid() != WORKER_GID
        || setuid(0) == 0 || setgid(0) == 0 || getgroups(0, NULL) != 1)
    {
        return 11;
    }
    for (port = 1023; port > 900 && !bound; port--) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_port = htons((unsigned short) port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bound = bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
        close(fd);
    }
    if (!bound) {
        return 12;
    }
    f = popen("grep -E '^Cap(Eff|Prm):' /proc/self/status", "r");
    if (f == NULL) {
        return 13;
    }
    while (fgets(buf, sizeof(buf), f) != NULL) {
        if (strstr(buf, "0000000000000000") == NULL) {
            fprintf(stderr, "a child program has capabilities: %s", buf);
            return 14;
        }
    }
    return pclose(f) == 0 ? 0 : 15;
}

static void
test_priv_drop(void **state)
{
    pid_t pid;
    int   status;
    char  err[256];

    (void) state;
    if (geteuid() != 0) {
        skip();
    }
    assert_int_equal(atls_priv_drop(0, 0, 0, err, sizeof(err)), -1);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(drop_child());
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links_without_openat2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setid_stripped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepare_hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepare_swap_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_acts_as_owner, setup, teardown),
        cmocka_unit_test(test_priv_drop),
    };

    /* ATLS_TEST_FILTER=test_fifo runs one test (a hang kills the program) */
    if (getenv("ATLS_TEST_FILTER") != NULL) {
        cmocka_set_test_filter(getenv("ATLS_TEST_FILTER"));
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
