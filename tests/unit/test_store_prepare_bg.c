/*
 * atls_store_fs_prepare_start: a store never walked, with a budget too
 * short for it, gets its top level handed over at once and the rest from
 * one detached walker (a child of no one the server knows, holding none of
 * its descriptors), which writes the `prepared` stamp when done, follows no
 * link planted meanwhile, and is not doubled by a second start.
 *
 * The walker is held at its start by a test hook (it inherits the hook
 * through fork) until the test has looked at it.  This process is made a
 * child subreaper, so the detached walker becomes its child: counted and
 * reaped here, never left behind.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_store.h"
#include "store_fs_int.h"
#include "support/storefx.h"

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, storefx_setup, storefx_teardown)
#define WORKER_UID 65534
#define WORKER_GID 65534
#define N_CERTS    300

/* the file the held walker waits for (set before each test) */
static char go_path[160];

static void
sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

/* In the walker: wait (at most 60 s) until the test says go. */
static void
hold_walker(void)
{
    int i;

    for (i = 0; i < 6000 && access(go_path, F_OK) != 0; i++) {
        sleep_ms(10);
    }
}

static void
write_file(const char *p, const char *data, mode_t mode)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, strlen(data)), (ssize_t) strlen(data));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* N_CERTS certificate directories made by root the way a restore or a
 * careless root tool leaves them: root's, and every tenth key 0644. */
static void
seed_root_made(storefx_t *fx)
{
    char rel[64];
    int  i;

    for (i = 0; i < N_CERTS; i++) {
        snprintf(rel, sizeof(rel), "certs/c%03d", i);
        assert_int_equal(mkdir(storefx_path(fx, rel), 0700), 0);
        snprintf(rel, sizeof(rel), "certs/c%03d/meta.json", i);
        write_file(storefx_path(fx, rel), "{}", 0644);
        snprintf(rel, sizeof(rel), "certs/c%03d/ec256.pem", i);
        write_file(storefx_path(fx, rel), "key", i % 10 == 0 ? 0644 : 0600);
    }
    write_file(storefx_path(fx, "generation"), "1\n", 0644);
    assert_int_equal(unlink(storefx_path(fx, "prepared")) == 0 || errno == ENOENT, 1);
}

/* The pids of this process's children named like the walker. */
static int
walkers(pid_t *pids, int max)
{
    DIR           *d = opendir("/proc");
    struct dirent *de;
    char           p[300], buf[512], *rp;
    int            n = 0, fd;
    ssize_t        len;
    long           ppid;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9') {
            continue;
        }
        snprintf(p, sizeof(p), "/proc/%s/stat", de->d_name);
        fd = open(p, O_RDONLY);
        if (fd < 0) {
            continue;
        }
        len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0) {
            continue;
        }
        buf[len] = '\0';
        /* "pid (comm) state ppid ..." */
        rp = strrchr(buf, ')');
        if (rp == NULL || strstr(buf, "(autotls-walk)") == NULL
            || sscanf(rp + 2, "%*c %ld", &ppid) != 1 || ppid != (long) getpid())
        {
            continue;
        }
        if (n < max) {
            pids[n] = (pid_t) atoi(de->d_name);
        }
        n++;
    }
    closedir(d);
    return n;
}

/* The walkers once one is there (it names itself once it has closed
 * what it does not keep): at most 60 s. */
static int
walkers_started(pid_t *pids, int max)
{
    int i, n = 0;

    for (i = 0; i < 6000 && (n = walkers(pids, max)) == 0; i++) {
        sleep_ms(10);
    }
    return n;
}

static uid_t
owner_of(const char *p)
{
    struct stat sb;

    assert_int_equal(lstat(p, &sb), 0);
    return sb.st_uid;
}

/* What the walker holds open: /dev/null on 0-2, the store root and the
 * log, never the "server's" listening socket (nor anything else). */
static void
assert_walker_fds(pid_t pid, storefx_t *fx, const char *log_path)
{
    DIR           *d;
    struct dirent *de;
    char           p[300], target[512];
    ssize_t        n;
    int            count = 0, fd;

    snprintf(p, sizeof(p), "/proc/%ld/fd", (long) pid);
    d = opendir(p);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }
        fd = atoi(de->d_name);
        snprintf(p, sizeof(p), "/proc/%ld/fd/%s", (long) pid, de->d_name);
        n = readlink(p, target, sizeof(target) - 1);
        assert_true(n > 0);
        target[n] = '\0';
        if (fd <= 2) {
            assert_string_equal(target, "/dev/null");
        } else if (strcmp(target, fx->root) != 0 && strcmp(target, log_path) != 0) {
            fail_msg("walker holds fd %d: %s", fd, target);
        }
        count++;
    }
    closedir(d);
    assert_int_equal(count, 5);
}

static void
assert_handed_over(storefx_t *fx)
{
    struct stat sb;
    char        rel[64];
    int         i;

    for (i = 0; i < N_CERTS; i++) {
        snprintf(rel, sizeof(rel), "certs/c%03d", i);
        assert_int_equal(lstat(storefx_path(fx, rel), &sb), 0);
        assert_int_equal(sb.st_uid, WORKER_UID);
        assert_int_equal(sb.st_mode & 07777, 0700);
        snprintf(rel, sizeof(rel), "certs/c%03d/ec256.pem", i);
        assert_int_equal(lstat(storefx_path(fx, rel), &sb), 0);
        assert_int_equal(sb.st_uid, WORKER_UID);
        assert_int_equal(sb.st_mode & 07777, 0600);
        snprintf(rel, sizeof(rel), "certs/c%03d/meta.json", i);
        assert_int_equal(owner_of(storefx_path(fx, rel)), WORKER_UID);
    }
}

static void
wait_for(const char *p)
{
    int i;

    for (i = 0; i < 6000 && access(p, F_OK) != 0; i++) {
        sleep_ms(10);
    }
    assert_int_equal(access(p, F_OK), 0);
}

static int
file_has(const char *p, const char *needle)
{
    char  buf[65536];
    FILE *f = fopen(p, "r");
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

/* A listening socket, as the server holding its ports would have. */
static int
listener(void)
{
    struct sockaddr_in sa;
    int                s = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(s >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *) &sa, sizeof(sa)), 0);
    assert_int_equal(listen(s, 4), 0);
    return s;
}

static void
test_budget_out_walker_finishes(void **state)
{
    storefx_t *fx = *state;
    char       err[256], log_path[200], outside[200], outdir[200], stamp[200];
    pid_t      pids[4];
    int        status, sock;

    if (geteuid() != 0) {
        skip();
    }
    seed_root_made(fx);
    snprintf(log_path, sizeof(log_path), "%s/walk.log", fx->dir);
    write_file(log_path, "", 0600);
    snprintf(go_path, sizeof(go_path), "%s/go", fx->dir);
    snprintf(stamp, sizeof(stamp), "%s/prepared", fx->root);
    snprintf(outside, sizeof(outside), "%s/outside", fx->dir);
    write_file(outside, "not the store's", 0644);
    snprintf(outdir, sizeof(outdir), "%s/outdir", fx->dir);
    assert_int_equal(mkdir(outdir, 0755), 0);
    sock = listener();
    atls_fs_prepare_bg_test_hook = hold_walker;
    setenv("AUTOTLS_PREPARE_BUDGET_MS", "0", 1);

    assert_int_equal(atls_store_fs_prepare_start(fx->root, WORKER_UID, WORKER_GID,
                                                 log_path, err, sizeof(err)), 1);
    /* the top level now, the certificate directories not yet */
    assert_int_equal(owner_of(fx->root), WORKER_UID);
    assert_int_equal(owner_of(storefx_path(fx, "certs")), WORKER_UID);
    assert_int_equal(owner_of(storefx_path(fx, "generation")), WORKER_UID);
    assert_int_equal(owner_of(storefx_path(fx, "certs/c001")), 0);
    assert_int_equal(access(stamp, F_OK), -1);
    assert_int_equal(walkers_started(pids, 4), 1);
    assert_walker_fds(pids[0], fx, log_path);

    /* planted while the walk is under way: links to outside the store */
    assert_int_equal(symlink(outside, storefx_path(fx, "certs/c005/evil.pem")), 0);
    assert_int_equal(symlink(outdir, storefx_path(fx, "certs/c006/linkdir")), 0);

    /* a second start meanwhile: the top level again, no second walker */
    assert_int_equal(atls_store_fs_prepare_start(fx->root, WORKER_UID, WORKER_GID,
                                                 log_path, err, sizeof(err)), 1);
    assert_int_equal(walkers(pids + 1, 3), 1);
    assert_int_equal(pids[1], pids[0]);

    write_file(go_path, "", 0600);
    wait_for(stamp);
    assert_int_equal(waitpid(pids[0], &status, 0), pids[0]);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(walkers(pids, 4), 0);

    assert_handed_over(fx);
    assert_int_equal(owner_of(stamp), WORKER_UID);
    /* links left alone, what they point to untouched */
    assert_int_equal(owner_of(storefx_path(fx, "certs/c005/evil.pem")), 0);
    assert_int_equal(owner_of(outside), 0);
    assert_int_equal(storefx_mode(outside), 0644);
    assert_int_equal(owner_of(outdir), 0);
    assert_int_equal(storefx_mode(outdir), 0755);
    assert_true(file_has(log_path, "c005/evil.pem: a symbolic link; left alone"));
    assert_true(file_has(log_path, "c010/ec256.pem had mode 0644, too open"));
    assert_true(file_has(log_path, "background walk complete"));
    assert_true(file_has(log_path, "300 certificate(s) handed over"));
    /* announced as deploys are: the generation moved, the journal names
     * them, so the workers load what they could not read before */
    assert_true(atls_store_generation(fx->st) > 1);
    assert_true(file_has(storefx_path(fx, "changes.log"), " c000\n"));
    assert_true(file_has(storefx_path(fx, "changes.log"), " c299\n"));

    /* the next start in a budget that fits: the stamp is current, nothing
     * is left for a walker */
    setenv("AUTOTLS_PREPARE_BUDGET_MS", "60000", 1);
    assert_int_equal(atls_store_fs_prepare_start(fx->root, WORKER_UID, WORKER_GID,
                                                 log_path, err, sizeof(err)), 0);
    assert_int_equal(walkers(pids, 4), 0);
    close(sock);
    unsetenv("AUTOTLS_PREPARE_BUDGET_MS");
    atls_fs_prepare_bg_test_hook = NULL;
}

/* A store whose walk fits in the budget: walked there and then, as
 * atls_store_fs_prepare, no process started. */
static void
test_walk_in_budget_is_synchronous(void **state)
{
    storefx_t *fx = *state;
    char       err[256];
    pid_t      pids[4];

    if (geteuid() != 0) {
        skip();
    }
    seed_root_made(fx);
    setenv("AUTOTLS_PREPARE_BUDGET_MS", "60000", 1);
    assert_int_equal(atls_store_fs_prepare_start(fx->root, WORKER_UID, WORKER_GID, NULL,
                                                 err, sizeof(err)), 0);
    assert_int_equal(walkers(pids, 4), 0);
    assert_handed_over(fx);
    assert_int_equal(access(storefx_path(fx, "prepared"), F_OK), 0);
    /* a value that is not a budget: the default, said in the log */
    setenv("AUTOTLS_PREPARE_BUDGET_MS", "soon", 1);
    assert_int_equal(atls_store_fs_prepare_start(fx->root, WORKER_UID, WORKER_GID, NULL,
                                                 err, sizeof(err)), 0);
    unsetenv("AUTOTLS_PREPARE_BUDGET_MS");
}

/* An error in a walk that fits fails the start, as before. */
static void
test_error_in_budget_fails(void **state)
{
    storefx_t *fx = *state;
    char       err[256];

    (void) fx;
    setenv("AUTOTLS_PREPARE_BUDGET_MS", "60000", 1);
    assert_int_equal(atls_store_fs_prepare_start("/proc/version/store", -1, -1, NULL,
                                                 err, sizeof(err)), -1);
    assert_true(strlen(err) > 0);
    unsetenv("AUTOTLS_PREPARE_BUDGET_MS");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_budget_out_walker_finishes),
        STORE_TEST(test_walk_in_budget_is_synchronous),
        STORE_TEST(test_error_in_budget_fails),
    };

    /* orphaned walkers become our children: counted and reaped here */
    (void) prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
