/* The filesystem store and the typed helpers over it. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_store.h"
#include "store_int.h"
#include "support/storefx.h"
#include "support/testpki.h"

/* the store in a temp directory every test starts from */
typedef storefx_t fx_t;
#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, storefx_setup, storefx_teardown)

static char *
fx_path(fx_t *fx, const char *rel)
{
    return storefx_path(fx, rel);
}

static mode_t
mode_of(const char *p)
{
    return storefx_mode(p);
}

static void
put_ok(atls_store_t *st, const char *path, const char *data, size_t len, int priv)
{
    char err[512];
    int  rc = st->ops->put(st, path, data, len, priv, err, sizeof(err));

    if (rc != ATLS_STORE_OK) {
        fail_msg("put %s: %s", path, err);
    }
}

static char *
get_ok(atls_store_t *st, const char *path, size_t *len)
{
    char  err[512], *data = NULL;
    int   rc = st->ops->get(st, path, &data, len, err, sizeof(err));

    if (rc != ATLS_STORE_OK) {
        fail_msg("get %s: %s", path, err);
    }
    return data;
}

/* Number of entries in dir whose name starts with ".tmp." */
static int
count_temps(const char *dir)
{
    DIR           *d = opendir(dir);
    struct dirent *de;
    int            n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        n += strncmp(de->d_name, ".tmp.", 5) == 0;
    }
    closedir(d);
    return n;
}

/* ---- raw ops ---------------------------------------------------------------- */

static void
test_put_get_round_trip(void **state)
{
    fx_t  *fx = *state;
    char   bin[300], *data, err[256];
    size_t len, i;

    for (i = 0; i < sizeof(bin); i++) {
        bin[i] = (char) (i * 7);   /* includes NUL bytes */
    }
    put_ok(fx->st, "a/b/c.bin", bin, sizeof(bin), 0);
    data = get_ok(fx->st, "a/b/c.bin", &len);
    assert_int_equal(len, sizeof(bin));
    assert_memory_equal(data, bin, sizeof(bin));
    assert_int_equal(data[len], '\0');   /* NUL-terminated for text users */
    free(data);

    put_ok(fx->st, "a/b/c.bin", "new", 3, 0);
    data = get_ok(fx->st, "a/b/c.bin", &len);
    assert_int_equal(len, 3);
    assert_string_equal(data, "new");
    free(data);

    put_ok(fx->st, "empty", "", 0, 0);
    data = get_ok(fx->st, "empty", &len);
    assert_int_equal(len, 0);
    free(data);

    data = (char *) 1;
    assert_int_equal(fx->st->ops->get(fx->st, "a/nothing", &data, &len, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_null(data);

    assert_int_equal(fx->st->ops->del(fx->st, "a/b/c.bin", err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(fx->st->ops->get(fx->st, "a/b/c.bin", &data, &len, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_int_equal(fx->st->ops->del(fx->st, "a/b/c.bin", err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_string_equal(fx->st->ops->name, "fs");
}

/* The one path rule both backends apply (atls_store_path_ok): each clause
 * on its own, and the length bound at its edge. */
static void
test_path_rules(void **state)
{
    static const char *const good[] = {
        "a", "certs/example.com/ecdsa-p256/chain.pem", "a.b/c-d/e_f", "x..y", NULL
    };
    static const char *const bad[] = {
        "/abs", "/", "a//b", "a/", "//", ".hidden", "a/.hidden", "..", "a/../b",
        "a/./b", ".", NULL
    };
    char   longp[ATLS_STORE_PATH_MAX + 2];
    size_t i;

    (void) state;
    for (i = 0; good[i] != NULL; i++) {
        assert_true(atls_store_path_ok(good[i], 0));
        assert_true(atls_store_path_ok(good[i], 1));
    }
    for (i = 0; bad[i] != NULL; i++) {
        assert_false(atls_store_path_ok(bad[i], 0));
        assert_false(atls_store_path_ok(bad[i], 1));
    }
    /* the root: only where the caller lists it */
    assert_false(atls_store_path_ok("", 0));
    assert_true(atls_store_path_ok("", 1));
    assert_false(atls_store_path_ok(NULL, 1));
    /* ATLS_STORE_PATH_MAX bytes pass, one more does not */
    memset(longp, 'a', sizeof(longp));
    for (i = 100; i < ATLS_STORE_PATH_MAX; i += 100) {
        longp[i] = '/';
    }
    longp[ATLS_STORE_PATH_MAX] = '\0';
    assert_true(atls_store_path_ok(longp, 0));
    longp[ATLS_STORE_PATH_MAX] = 'a';
    longp[ATLS_STORE_PATH_MAX + 1] = '\0';
    assert_false(atls_store_path_ok(longp, 0));
}

static void
test_bad_paths(void **state)
{
    static const char *const bad[] = {
        "../escape", "a/../../escape", "/etc/passwd", "a//b", "a/", "", ".hidden",
        "a/./b", "certs/..", NULL
    };
    fx_t  *fx = *state;
    char   err[256], *data;
    size_t len, i, n;
    char **names;
    char   longp[ATLS_STORE_PATH_MAX + 2];
    struct stat sb;

    for (i = 0; bad[i] != NULL; i++) {
        assert_int_equal(fx->st->ops->put(fx->st, bad[i], "x", 1, 0, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_int_equal(fx->st->ops->get(fx->st, bad[i], &data, &len, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_int_equal(fx->st->ops->del(fx->st, bad[i], err, sizeof(err)),
                         ATLS_STORE_ERROR);
    }
    assert_int_equal(fx->st->ops->put(fx->st, NULL, "x", 1, 0, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(fx->st->ops->list(fx->st, "../", &names, &n, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    /* over the bound the Redis backend has too: the fs backend refuses it
     * as well, so a store migrates between them whole */
    memset(longp, 'a', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    longp[100] = '/';
    assert_int_equal(fx->st->ops->put(fx->st, longp, "x", 1, 0, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    /* nothing landed beside the store */
    snprintf(err, sizeof(err), "%s/escape", fx->dir);
    assert_int_not_equal(stat(err, &sb), 0);
}

static void
test_modes(void **state)
{
    fx_t  *fx = *state;
    mode_t old;

    assert_int_equal(mode_of(fx->root), 0700);
    assert_int_equal(mode_of(fx_path(fx, "certs")), 0700);
    assert_int_equal(mode_of(fx_path(fx, "accounts")), 0700);
    assert_int_equal(mode_of(fx_path(fx, "requests")), 0700);
    assert_int_equal(mode_of(fx_path(fx, "locks")), 0700);

    /* the process umask must not change what the store promises */
    old = umask(077);
    put_ok(fx->st, "certs/x.example/meta.json", "{}", 2, 0);
    umask(0);
    put_ok(fx->st, "certs/x.example/ec256.pem", "secret", 6, 1);
    put_ok(fx->st, "deep/er/dir/file", "x", 1, 0);
    umask(old);

    assert_int_equal(mode_of(fx_path(fx, "certs/x.example")), 0700);
    assert_int_equal(mode_of(fx_path(fx, "certs/x.example/meta.json")), 0644);
    assert_int_equal(mode_of(fx_path(fx, "certs/x.example/ec256.pem")), 0600);
    assert_int_equal(mode_of(fx_path(fx, "deep")), 0700);
    assert_int_equal(mode_of(fx_path(fx, "deep/er")), 0700);
    assert_int_equal(mode_of(fx_path(fx, "deep/er/dir")), 0700);

    /* overwriting a public file with a private one tightens it */
    put_ok(fx->st, "certs/x.example/meta.json", "{}", 2, 1);
    assert_int_equal(mode_of(fx_path(fx, "certs/x.example/meta.json")), 0600);

    assert_int_equal(count_temps(fx_path(fx, "certs/x.example")), 0);
    assert_int_equal(count_temps(fx_path(fx, "deep/er/dir")), 0);
}

static void
test_failed_put_keeps_old(void **state)
{
    fx_t         *fx = *state;
    char          err[512], *data, *big;
    size_t        len;
    struct rlimit old, lim;
    void        (*oldsig)(int);

    put_ok(fx->st, "certs/k/ec256.pem", "OLD", 3, 1);

    /* A write that fails half-way (file size limit, works even as root). */
    big = malloc(1 << 20);
    assert_non_null(big);
    memset(big, 'N', 1 << 20);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 4096;
    oldsig = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    assert_int_equal(fx->st->ops->put(fx->st, "certs/k/ec256.pem", big, 1 << 20, 1,
                                      err, sizeof(err)), ATLS_STORE_ERROR);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, oldsig);
    free(big);
    assert_non_null(strstr(err, "write"));

    data = get_ok(fx->st, "certs/k/ec256.pem", &len);
    assert_string_equal(data, "OLD");
    free(data);
    assert_int_equal(count_temps(fx_path(fx, "certs/k")), 0);

    /* A parent that is a file. */
    put_ok(fx->st, "plain", "P", 1, 0);
    assert_int_equal(fx->st->ops->put(fx->st, "plain/child", "x", 1, 0, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    data = get_ok(fx->st, "plain", &len);
    assert_string_equal(data, "P");
    free(data);

    /* A directory we may not write (only meaningful without root). */
    if (geteuid() != 0) {
        assert_int_equal(chmod(fx_path(fx, "certs/k"), 0500), 0);
        assert_int_equal(fx->st->ops->put(fx->st, "certs/k/ec256.pem", "NEW", 3, 1,
                                          err, sizeof(err)), ATLS_STORE_ERROR);
        assert_int_equal(chmod(fx_path(fx, "certs/k"), 0700), 0);
        data = get_ok(fx->st, "certs/k/ec256.pem", &len);
        assert_string_equal(data, "OLD");
        free(data);
    }
}

#define CRASH_SIZE (256 * 1024)

/* 1 when the file is exactly CRASH_SIZE bytes of one of the fill bytes. */
static int
whole_content(const char *data, size_t len, char *which)
{
    size_t i;

    if (len != CRASH_SIZE) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if (data[i] != data[0]) {
            return 0;
        }
    }
    *which = data[0];
    return data[0] == 'A' || data[0] == 'B' || data[0] == 'C';
}

static void
test_crash_atomicity(void **state)
{
    fx_t    *fx = *state;
    char    *buf, *data, which = 0, seen[3] = { 0, 0, 0 };
    size_t   len;
    int      round, status;
    pid_t    pid;
    unsigned seed = (unsigned) getpid();

    buf = malloc(CRASH_SIZE);
    assert_non_null(buf);
    memset(buf, 'A', CRASH_SIZE);
    put_ok(fx->st, "certs/crash/ec256.pem", buf, CRASH_SIZE, 1);

    for (round = 0; round < 25; round++) {
        int wrote[2];

        assert_int_equal(pipe(wrote), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            char err[256];
            int  i;

            close(wrote[0]);
            for (i = 0;; i++) {
                memset(buf, (i & 1) ? 'B' : 'C', CRASH_SIZE);
                if (fx->st->ops->put(fx->st, "certs/crash/ec256.pem", buf, CRASH_SIZE, 1,
                                     err, sizeof(err)) != ATLS_STORE_OK) {
                    _exit(3);
                }
                if (i == 0 && write(wrote[1], "w", 1) != 1) {
                    _exit(4);
                }
            }
        }
        close(wrote[1]);
        /* Every other round the kill waits for one whole put, so the writer
         * gets through however loaded the machine is; the other rounds kill
         * it wherever it happens to be, mid-put included. */
        if (round % 2 == 0) {
            char c;

            assert_int_equal(read(wrote[0], &c, 1), 1);
        }
        close(wrote[0]);
        usleep((useconds_t) (rand_r(&seed) % 30000));
        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));

        data = get_ok(fx->st, "certs/crash/ec256.pem", &len);
        if (!whole_content(data, len, &which)) {
            fail_msg("round %d: torn file (%zu bytes)", round, len);
        }
        seen[which - 'A'] = 1;
        assert_int_equal(mode_of(fx_path(fx, "certs/crash/ec256.pem")), 0600);
        free(data);
    }
    free(buf);
    /* the writer did get through at least once */
    assert_true(seen[1] || seen[2]);

    /* a killed writer may leave a temp file: invisible to list */
    {
        char **names;
        size_t n, i;
        char   err[256];

        assert_int_equal(fx->st->ops->list(fx->st, "certs/crash", &names, &n,
                                           err, sizeof(err)), ATLS_STORE_OK);
        assert_int_equal(n, 1);
        assert_string_equal(names[0], "ec256.pem");
        for (i = 0; i < n; i++) {
            free(names[i]);
        }
        free(names);
    }
}

static void
test_list(void **state)
{
    fx_t  *fx = *state;
    char **names, err[256];
    size_t n;
    int    fd;

    put_ok(fx->st, "certs/c.example/meta.json", "{}", 2, 0);
    put_ok(fx->st, "certs/a.example/meta.json", "{}", 2, 0);
    put_ok(fx->st, "certs/b.example/meta.json", "{}", 2, 0);
    put_ok(fx->st, "certs/_.wild.example/meta.json", "{}", 2, 0);
    fd = open(fx_path(fx, "certs/.tmp.meta.json.abc123"), O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);

    assert_int_equal(fx->st->ops->list(fx->st, "certs", &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 4);
    assert_string_equal(names[0], "_.wild.example");
    assert_string_equal(names[1], "a.example");
    assert_string_equal(names[2], "b.example");
    assert_string_equal(names[3], "c.example");
    atls_strv_free(names, n);

    assert_int_equal(atls_store_list_certs(fx->st, &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 4);
    assert_string_equal(names[1], "a.example");
    atls_strv_free(names, n);

    /* missing directory: empty, like any key-value backend */
    assert_int_equal(fx->st->ops->list(fx->st, "nothing/here", &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 0);
    assert_null(names);

    /* deleting a directory removes the whole certificate */
    assert_int_equal(fx->st->ops->del(fx->st, "certs/b.example", err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_list_certs(fx->st, &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 3);
    assert_string_equal(names[2], "c.example");
    atls_strv_free(names, n);
}

/* ---- locks ------------------------------------------------------------------ */

/* Child: try the lock without waiting, exit 0 on OK, 2 on BUSY, 1 otherwise. */
static int
child_try_lock(fx_t *fx, const char *name)
{
    pid_t pid = fork();
    int   status;

    assert_true(pid >= 0);
    if (pid == 0) {
        atls_store_lock_t *lk;
        char               err[256];
        int                rc = fx->st->ops->lock(fx->st, name, 0, &lk, err, sizeof(err));

        _exit(rc == ATLS_STORE_OK ? 0 : rc == ATLS_STORE_BUSY ? 2 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void
test_lock(void **state)
{
    fx_t              *fx = *state;
    atls_store_lock_t *lk = NULL, *lk2 = NULL;
    char               err[256], c;
    int                to_child[2], to_parent[2], status;
    pid_t              pid;

    assert_int_equal(fx->st->ops->lock(fx->st, "job-a", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_non_null(lk);
    assert_int_equal(mode_of(fx_path(fx, "locks/job-a.lock")), 0600);
    /* another process: busy; another name: free */
    assert_int_equal(child_try_lock(fx, "job-a"), 2);
    assert_int_equal(child_try_lock(fx, "job-b"), 0);
    /* a second open in the same process is excluded as well (flock per open) */
    assert_int_equal(fx->st->ops->lock(fx->st, "job-a", 0, &lk2, err, sizeof(err)),
                     ATLS_STORE_BUSY);
    assert_null(lk2);
    fx->st->ops->unlock(fx->st, lk);
    assert_int_equal(child_try_lock(fx, "job-a"), 0);

    /* the other way round: a child holds it, we are refused, then wait for it */
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(to_parent), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        atls_store_lock_t *held;

        if (fx->st->ops->lock(fx->st, "job-a", 1, &held, err, sizeof(err)) != ATLS_STORE_OK) {
            _exit(1);
        }
        if (write(to_parent[1], "L", 1) != 1 || read(to_child[0], &c, 1) != 1) {
            _exit(1);
        }
        fx->st->ops->unlock(fx->st, held);
        _exit(0);
    }
    assert_int_equal(read(to_parent[0], &c, 1), 1);
    assert_int_equal(fx->st->ops->lock(fx->st, "job-a", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_BUSY);
    assert_non_null(strstr(err, "job-a.lock"));
    assert_int_equal(write(to_child[1], "U", 1), 1);
    /* waiting lock: returns once the child has let go */
    assert_int_equal(fx->st->ops->lock(fx->st, "job-a", 1, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fx->st->ops->unlock(fx->st, lk);
    close(to_child[0]);
    close(to_child[1]);
    close(to_parent[0]);
    close(to_parent[1]);

    assert_int_equal(fx->st->ops->lock(fx->st, "../x", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(fx->st->ops->lock(fx->st, "a/b", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_ERROR);
}

/* ---- open / prepare ---------------------------------------------------------- */

static void
test_open_errors(void **state)
{
    fx_t         *fx = *state;
    char          err[512], p[256];
    atls_store_t *st;
    int           fd;

    snprintf(p, sizeof(p), "%s/afile", fx->dir);
    fd = open(p, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    st = atls_store_fs_open(p, err, sizeof(err));
    assert_null(st);
    assert_non_null(strstr(err, p));
    assert_non_null(strstr(err, "not a directory"));

    /* a missing parent chain is created, the store root itself 0700 */
    snprintf(p, sizeof(p), "%s/x/y/store", fx->dir);
    st = atls_store_fs_open(p, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(mode_of(p), 0700);
    snprintf(p, sizeof(p), "%s/x", fx->dir);
    assert_int_equal(mode_of(p) & 0044, 0);   /* not world/group readable */
    atls_store_close(st);

    if (geteuid() != 0) {
        snprintf(p, sizeof(p), "%s/ro", fx->dir);
        assert_int_equal(mkdir(p, 0500), 0);
        st = atls_store_fs_open(p, err, sizeof(err));
        assert_null(st);
        assert_non_null(strstr(err, p));
        assert_non_null(strstr(err, "not writable"));
    }
}

static void
test_prepare_and_ownership(void **state)
{
    fx_t         *fx = *state;
    char          err[512], p[256];
    struct stat   sb;
    atls_store_t *st;

    /* an existing store that is too open gets fixed */
    put_ok(fx->st, "certs/o.example/ec256.pem", "k", 1, 1);
    put_ok(fx->st, "certs/o.example/meta.json", "{}", 2, 0);
    assert_int_equal(chmod(fx_path(fx, "certs/o.example"), 0755), 0);
    assert_int_equal(chmod(fx_path(fx, "certs/o.example/ec256.pem"), 0644), 0);
    assert_int_equal(chmod(fx_path(fx, "certs/o.example/meta.json"), 0666), 0);
    assert_int_equal(chmod(fx->root, 0777), 0);
    assert_int_equal(atls_store_fs_prepare(fx->root, -1, -1, err, sizeof(err)), 0);
    assert_int_equal(mode_of(fx->root), 0700);
    assert_int_equal(mode_of(fx_path(fx, "certs/o.example")), 0700);
    assert_int_equal(mode_of(fx_path(fx, "certs/o.example/ec256.pem")), 0600);
    assert_int_equal(mode_of(fx_path(fx, "certs/o.example/meta.json")), 0644);

    /* a fresh tree */
    snprintf(p, sizeof(p), "%s/fresh", fx->dir);
    assert_int_equal(atls_store_fs_prepare(p, -1, -1, err, sizeof(err)), 0);
    assert_int_equal(mode_of(p), 0700);
    snprintf(p, sizeof(p), "%s/fresh/certs", fx->dir);
    assert_int_equal(mode_of(p), 0700);
    snprintf(p, sizeof(p), "%s/fresh/locks", fx->dir);
    assert_int_equal(mode_of(p), 0700);

    if (geteuid() != 0) {
        return;   /* handing over to another user needs root */
    }
    /* root hands the store to the worker user (65534 = nobody) ... */
    assert_int_equal(atls_store_fs_prepare(fx->root, 65534, 65534, err, sizeof(err)), 0);
    assert_int_equal(stat(fx_path(fx, "certs/o.example/ec256.pem"), &sb), 0);
    assert_int_equal(sb.st_uid, 65534);
    assert_int_equal(sb.st_gid, 65534);
    assert_int_equal(stat(fx_path(fx, "locks"), &sb), 0);
    assert_int_equal(sb.st_uid, 65534);

    /* ... and a root CLI writing to it afterwards keeps it usable for them */
    st = atls_store_fs_open(fx->root, err, sizeof(err));
    assert_non_null(st);
    put_ok(st, "certs/new.example/ec256.pem", "k", 1, 1);
    assert_int_equal(stat(fx_path(fx, "certs/new.example"), &sb), 0);
    assert_int_equal(sb.st_uid, 65534);
    assert_int_equal(sb.st_gid, 65534);
    assert_int_equal(stat(fx_path(fx, "certs/new.example/ec256.pem"), &sb), 0);
    assert_int_equal(sb.st_uid, 65534);
    assert_int_equal(sb.st_gid, 65534);
    assert_int_equal(sb.st_mode & 07777, 0600);
    atls_store_close(st);
}

/* ---- typed helpers ---------------------------------------------------------- */

static void
fill_meta(atls_cert_meta_t *m)
{
    static char *names[] = { "*.example.org", "example.org", "127.0.0.1" };
    static char *contact[] = { "mailto:a@example.org", "mailto:b@example.org" };

    memset(m, 0, sizeof(*m));
    m->id = atls_cert_id(names[0]);
    m->names = calloc(4, sizeof(char *));
    m->names[0] = atls_strdup(names[0]);
    m->names[1] = atls_strdup(names[1]);
    m->names[2] = atls_strdup(names[2]);
    m->n_names = 3;
    m->issuer.directory = atls_strdup("https://127.0.0.1:14000/dir");
    m->issuer.ca_file = atls_strdup("/etc/pebble/ca.pem");
    m->issuer.contact = calloc(3, sizeof(char *));
    m->issuer.contact[0] = atls_strdup(contact[0]);
    m->issuer.contact[1] = atls_strdup(contact[1]);
    m->issuer.n_contact = 2;
    m->issuer.agree_tos = 1;
    m->issuer.challenge = ATLS_CHAL_DNS01;
    m->issuer.dns_hook = atls_strdup("/usr/local/bin/hook \"quoted\"");
    m->issuer.eab_kid = atls_strdup("kid-SHOULD-NOT-PERSIST");
    m->issuer.eab_hmac = atls_strdup("hmacSECRETSHOULDNOTPERSIST");
    m->issuer.key_types[0] = ATLS_KEY_EC384;
    m->issuer.key_types[1] = ATLS_KEY_RSA2048;
    m->issuer.n_key_types = 2;
    m->issuer.profile = atls_strdup("shortlived");
    m->issuer.profile_required = 1;
    m->issuer.preferred_chain = atls_strdup("ISRG Root X1");
    m->issuer.renew.renew_fraction = 0.1;
    m->issuer.renew.renew_before = 1234567;
    m->issuer.http_port = 5002;
    m->issuer.tls_port = 5001;
    m->state = ATLS_STATE_FAILED;
    m->failures = 7;
    m->next_attempt = 1700000100;
    m->last_attempt = 1700000050;
    m->last_success = 1690000000;
    m->renew_at = 1710000000;
    m->last_error = atls_strdup("urn:ietf:params:acme:error:rateLimited: slow \"down\"\n");
    m->account_url = atls_strdup("https://127.0.0.1:14000/my-account/1");
    m->generation = 42;
    m->issuer.csr_cn = 1;
    m->ari_next_check = 1700021600;
    m->ari_window_start = 1709000000;
    m->ari_window_end = 1709086400;
    m->ari_failures = 3;
    m->last_error_class = ATLS_ERR_RETRY_LATER;
    m->last_error_type = atls_strdup("urn:ietf:params:acme:error:rateLimited");
    m->last_error_detail = atls_strdup("slow \"down\"\n");
    m->last_error_key_type = atls_strdup("rsa2048");
    m->kt_info[0].key_type = ATLS_KEY_EC384;
    m->kt_info[0].not_before = 1690000000;
    m->kt_info[0].not_after = 1697776000;
    m->kt_info[0].serial = atls_strdup("03a1ff");
    m->kt_info[0].names = atls_strv_dup(m->names, m->n_names);
    m->kt_info[0].n_names = m->n_names;
    m->kt_info[1].key_type = ATLS_KEY_RSA2048;
    m->kt_info[1].not_before = 1690000001;
    m->kt_info[1].not_after = 1697776001;
    m->kt_info[1].serial = atls_strdup("04");
    m->kt_info[1].names = atls_strv_dup(m->names, 1);
    m->kt_info[1].n_names = 1;
    m->n_kt_info = 2;
}

static void
assert_meta_equal(const atls_cert_meta_t *a, const atls_cert_meta_t *b)
{
    size_t i;

    assert_string_equal(a->id, b->id);
    assert_int_equal(a->n_names, b->n_names);
    for (i = 0; i < a->n_names; i++) {
        assert_string_equal(a->names[i], b->names[i]);
    }
    assert_string_equal(a->issuer.directory, b->issuer.directory);
    assert_string_equal(a->issuer.ca_file, b->issuer.ca_file);
    assert_int_equal(a->issuer.n_contact, b->issuer.n_contact);
    for (i = 0; i < a->issuer.n_contact; i++) {
        assert_string_equal(a->issuer.contact[i], b->issuer.contact[i]);
    }
    assert_int_equal(a->issuer.agree_tos, b->issuer.agree_tos);
    assert_int_equal(a->issuer.challenge, b->issuer.challenge);
    assert_string_equal(a->issuer.dns_hook, b->issuer.dns_hook);
    assert_int_equal(a->issuer.n_key_types, b->issuer.n_key_types);
    for (i = 0; i < a->issuer.n_key_types; i++) {
        assert_int_equal(a->issuer.key_types[i], b->issuer.key_types[i]);
    }
    assert_string_equal(a->issuer.profile, b->issuer.profile);
    assert_int_equal(a->issuer.profile_required, b->issuer.profile_required);
    assert_string_equal(a->issuer.preferred_chain, b->issuer.preferred_chain);
    assert_true(a->issuer.renew.renew_fraction == b->issuer.renew.renew_fraction);
    assert_int_equal(a->issuer.renew.renew_before, b->issuer.renew.renew_before);
    assert_int_equal(a->issuer.http_port, b->issuer.http_port);
    assert_int_equal(a->issuer.tls_port, b->issuer.tls_port);
    assert_int_equal(a->state, b->state);
    assert_int_equal(a->failures, b->failures);
    assert_int_equal(a->next_attempt, b->next_attempt);
    assert_int_equal(a->last_attempt, b->last_attempt);
    assert_int_equal(a->last_success, b->last_success);
    assert_int_equal(a->renew_at, b->renew_at);
    assert_string_equal(a->last_error, b->last_error);
    assert_string_equal(a->account_url, b->account_url);
    assert_int_equal(a->generation, b->generation);
    assert_int_equal(a->issuer.csr_cn, b->issuer.csr_cn);
    assert_int_equal(a->ari_next_check, b->ari_next_check);
    assert_int_equal(a->ari_window_start, b->ari_window_start);
    assert_int_equal(a->ari_window_end, b->ari_window_end);
    assert_int_equal(a->ari_failures, b->ari_failures);
    assert_int_equal(a->last_error_class, b->last_error_class);
    assert_string_equal(a->last_error_type, b->last_error_type);
    assert_string_equal(a->last_error_detail, b->last_error_detail);
    assert_string_equal(a->last_error_key_type, b->last_error_key_type);
    assert_int_equal(a->n_kt_info, b->n_kt_info);
    for (i = 0; i < a->n_kt_info; i++) {
        const atls_cert_kt_info_t *x = &a->kt_info[i], *y = &b->kt_info[i];
        size_t                     k;

        assert_int_equal(x->key_type, y->key_type);
        assert_int_equal(x->not_before, y->not_before);
        assert_int_equal(x->not_after, y->not_after);
        assert_string_equal(x->serial, y->serial);
        assert_int_equal(x->n_names, y->n_names);
        for (k = 0; k < x->n_names; k++) {
            assert_string_equal(x->names[k], y->names[k]);
        }
    }
}

static void
test_meta_json_round_trip(void **state)
{
    atls_cert_meta_t m, back, copy;
    char            *json, *json2, err[256];

    (void) state;
    fill_meta(&m);
    json = atls_cert_meta_to_json(&m);
    assert_non_null(json);
    assert_null(strstr(json, "SHOULD-NOT-PERSIST"));
    assert_null(strstr(json, "SHOULDNOTPERSIST"));
    assert_null(strstr(json, "eab"));
    assert_non_null(strstr(json, "\"_.example.org\""));
    assert_non_null(strstr(json, "\"dns-01\""));
    assert_non_null(strstr(json, "\"2023-11-14T22:15:00Z\""));   /* next_attempt */
    assert_non_null(strstr(json, "\"csr_cn\": true"));
    assert_non_null(strstr(json, "\"ari_window_start\": \"2024-02-27T02:13:20Z\""));
    assert_non_null(strstr(json, "\"last_error_class\": \"retry-later\""));
    assert_non_null(strstr(json, "\"not_after\": \"2023-10-20T04:26:40Z\""));
    assert_non_null(strstr(json, "\"ec384\": {"));

    assert_int_equal(atls_cert_meta_from_json(json, strlen(json), &back, err, sizeof(err)), 0);
    assert_meta_equal(&m, &back);
    assert_null(back.issuer.eab_kid);
    assert_null(back.issuer.eab_hmac);
    json2 = atls_cert_meta_to_json(&back);
    assert_string_equal(json, json2);
    free(json2);

    /* the deep copy holds the same */
    atls_cert_meta_copy(&copy, &back);
    assert_ptr_not_equal(copy.kt_info[0].serial, back.kt_info[0].serial);
    assert_meta_equal(&copy, &back);
    json2 = atls_cert_meta_to_json(&copy);
    assert_string_equal(json, json2);
    atls_cert_meta_free(&copy);

    /* issuer copy is deep and keeps the EAB fields (in memory only) */
    memset(&copy, 0, sizeof(copy));
    atls_issuer_copy(&copy.issuer, &m.issuer);
    assert_ptr_not_equal(copy.issuer.directory, m.issuer.directory);
    assert_string_equal(copy.issuer.eab_hmac, "hmacSECRETSHOULDNOTPERSIST");
    assert_string_equal(copy.issuer.contact[1], "mailto:b@example.org");
    atls_issuer_free(&copy.issuer);

    free(json);
    free(json2);
    atls_cert_meta_free(&back);
    atls_cert_meta_free(&m);
}

static void
test_meta_json_errors(void **state)
{
    static const struct { const char *json, *needle; } cases[] = {
        { "{\"names\":\"a.example\"}", "field \"names\" must be an array of strings" },
        { "{\"names\":[1]}", "field \"names\" must be an array of strings" },
        { "{\"names\":[]}", "field \"names\"" },
        { "{}", "field \"names\" is missing" },
        { "[1]", "object" },
        { "{\"names\":[\"a.example\"],\"state\":\"bogus\"}", "field \"state\"" },
        { "{\"names\":[\"a.example\"],\"failures\":-1}", "field \"failures\"" },
        { "{\"names\":[\"a.example\"],\"failures\":\"3\"}", "field \"failures\"" },
        { "{\"names\":[\"a.example\"],\"renew_at\":\"tomorrow\"}", "field \"renew_at\"" },
        { "{\"names\":[\"a.example\"],\"issuer\":[]}", "field \"issuer\"" },
        { "{\"names\":[\"a.example\"],\"issuer\":{\"key_types\":[\"dsa\"]}}",
          "field \"issuer.key_types\"" },
        { "{\"names\":[\"a.example\"],\"issuer\":{\"challenge\":\"smoke\"}}",
          "field \"issuer.challenge\"" },
        { "{\"names\":[\"a.example\"],\"issuer\":{\"http_port\":70000}}",
          "field \"issuer.http_port\"" },
        { "{\"names\":[\"a.example\"],\"issuer\":{\"renew\":{\"fraction\":2}}}",
          "field \"issuer.renew.fraction\"" },
        { "{\"names\":[\"a.example\"],\"id\":\"b.example\"}", "field \"id\"" },
        { "{\"names\":[\"a.example\"],\"names\":[\"b.example\"]}", "invalid JSON" },
        { "{\"names\":", "invalid JSON at line 1" },
        { "{\"names\":[\"a.example\"],\"issuer\":{\"csr_cn\":1}}", "field \"issuer.csr_cn\"" },
        { "{\"names\":[\"a.example\"],\"ari_next_check\":\"soon\"}",
          "field \"ari_next_check\"" },
        { "{\"names\":[\"a.example\"],\"ari_window_start\":\"2025-01-01T00:00:00Z\"}",
          "ari_window_end" },
        { "{\"names\":[\"a.example\"],\"ari_window_start\":\"2025-01-02T00:00:00Z\","
          "\"ari_window_end\":\"2025-01-01T00:00:00Z\"}", "start before end" },
        { "{\"names\":[\"a.example\"],\"certs\":[]}", "field \"certs\" must be an object" },
        { "{\"names\":[\"a.example\"],\"certs\":{\"dsa\":{}}}", "unknown key type \"dsa\"" },
        { "{\"names\":[\"a.example\"],\"certs\":{\"ec256\":1}}",
          "field \"certs.ec256\" must be an object" },
        { "{\"names\":[\"a.example\"],\"certs\":{\"ec256\":{\"serial\":\"01\","
          "\"names\":[\"a.example\"],\"not_after\":\"2025-01-01T00:00:00Z\"}}}",
          "field \"certs.ec256.not_before\" is missing" },
        { "{\"names\":[\"a.example\"],\"certs\":{\"ec256\":{\"serial\":\"01\","
          "\"names\":[\"a.example\"],\"not_before\":\"2025-01-01T00:00:00Z\","
          "\"not_after\":\"never\"}}}", "field \"certs.ec256.not_after\" must be an RFC 3339" },
        { "{\"names\":[\"a.example\"],\"certs\":{\"ec256\":{\"serial\":\"xyz\","
          "\"names\":[\"a.example\"],\"not_before\":\"2025-01-01T00:00:00Z\","
          "\"not_after\":\"2025-02-01T00:00:00Z\"}}}", "field \"certs.ec256.serial\"" },
        { "{\"names\":[\"a.example\"],\"certs\":{\"ec256\":{\"serial\":\"01\","
          "\"not_before\":\"2025-01-01T00:00:00Z\","
          "\"not_after\":\"2025-02-01T00:00:00Z\"}}}", "field \"certs.ec256.names\" must be an array" },
        { "{\"names\":[\"a.example\"],\"certs\":{\"ec256\":{\"serial\":\"01\","
          "\"names\":[\"a.example\"],\"not_before\":\"2025-01-01T00:00:00Z\","
          "\"not_after\":\"2025-02-01T00:00:00Z\",\"key\":\"x\"}}}",
          "unknown member \"key\"" },
        { "{\"names\":[\"a.example\"],\"last_error_class\":\"awful\"}",
          "field \"last_error_class\"" },
        { "{\"names\":[\"a.example\"],\"last_error_type\":5}", "field \"last_error_type\"" },
        { "{\"names\":[\"a.example\"],\"ari_failures\":-2}", "field \"ari_failures\"" },
    };
    atls_cert_meta_t m;
    char             err[256];
    size_t           i;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        assert_int_equal(atls_cert_meta_from_json(cases[i].json, strlen(cases[i].json),
                                                  &m, err, sizeof(err)), -1);
        if (strstr(err, cases[i].needle) == NULL) {
            fail_msg("%s: error \"%s\" lacks \"%s\"", cases[i].json, err, cases[i].needle);
        }
        assert_null(m.names);
        assert_null(m.id);
    }
    /* the minimum: names only, defaults for the rest */
    assert_int_equal(atls_cert_meta_from_json("{\"names\":[\"A.Example\"]}", 23, &m,
                                              err, sizeof(err)), 0);
    assert_string_equal(m.id, "a.example");
    assert_int_equal(m.state, ATLS_STATE_PENDING);
    /* files written before ARI and csr_cn existed load with them off */
    assert_int_equal(m.issuer.csr_cn, 0);
    assert_int_equal(m.ari_next_check, 0);
    assert_int_equal(m.ari_window_start, 0);
    assert_int_equal(m.ari_window_end, 0);
    atls_cert_meta_free(&m);
}

static void
test_meta_store(void **state)
{
    fx_t            *fx = *state;
    atls_cert_meta_t m, back;
    char             err[512], *raw;
    size_t           len;

    fill_meta(&m);
    assert_int_equal(atls_store_save_meta(fx->st, &m, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(mode_of(fx_path(fx, "certs/_.example.org/meta.json")), 0644);
    raw = get_ok(fx->st, "certs/_.example.org/meta.json", &len);
    assert_null(strstr(raw, "SHOULDNOTPERSIST"));
    free(raw);
    assert_int_equal(atls_store_load_meta(fx->st, "_.example.org", &back, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_meta_equal(&m, &back);
    atls_cert_meta_free(&back);
    atls_cert_meta_free(&m);

    assert_int_equal(atls_store_load_meta(fx->st, "none.example", &back, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_int_equal(atls_store_load_meta(fx->st, "../x", &back, err, sizeof(err)),
                     ATLS_STORE_ERROR);
}

static void
test_meta_corrupt(void **state)
{
    fx_t            *fx = *state;
    atls_cert_meta_t m;
    char             err[512], expect[512];
    struct stat      sb;

    put_ok(fx->st, "certs/a/meta.json", "{\"names\": [tru", strlen("{\"names\": [tru"), 0);
    assert_int_equal(atls_store_load_meta(fx->st, "a", &m, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    snprintf(expect, sizeof(expect), "%s/certs/a/meta.json: invalid JSON at line 1: ",
             fx->root);
    if (strncmp(err, expect, strlen(expect)) != 0) {
        fail_msg("error \"%s\" does not start with \"%s\"", err, expect);
    }
    assert_int_equal(stat(fx_path(fx, "certs/a/meta.json"), &sb), 0);
    assert_int_equal(sb.st_size, 14);

    put_ok(fx->st, "certs/a/meta.json", "{\"names\": \"a\"}", strlen("{\"names\": \"a\"}"), 0);
    assert_int_equal(atls_store_load_meta(fx->st, "a", &m, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    snprintf(expect, sizeof(expect),
             "%s/certs/a/meta.json: field \"names\" must be an array of strings", fx->root);
    assert_string_equal(err, expect);

    /* meta of another certificate in this directory */
    put_ok(fx->st, "certs/a/meta.json", "{\"names\": [\"b\"]}", strlen("{\"names\": [\"b\"]}"), 0);
    assert_int_equal(atls_store_load_meta(fx->st, "a", &m, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "certs/a/meta.json"));
}

static void
test_cert_round_trip(void **state)
{
    static const char *const names[] = { "www.example.net", "example.net" };
    fx_t            *fx = *state;
    testpki_chain_t  pki, other;
    X509            *certs[2];
    char            *pem, *before, *after, err[512];
    size_t           blen, alen;
    EVP_PKEY        *key;
    STACK_OF(X509)  *chain;

    assert_int_equal(testpki_chain_make(&pki, names, 2, ATLS_KEY_EC256), 0);
    assert_int_equal(testpki_chain_make(&other, names, 2, ATLS_KEY_EC256), 0);
    certs[0] = pki.leaf;
    certs[1] = pki.inter;
    pem = testpki_pem(certs, 2);
    assert_non_null(pem);

    assert_int_equal(atls_store_load_cert(fx->st, "www.example.net", ATLS_KEY_EC256,
                                          &key, &chain, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_int_equal(atls_store_save_cert(fx->st, "www.example.net", ATLS_KEY_EC256,
                                          pki.leaf_key, pem, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(mode_of(fx_path(fx, "certs/www.example.net/ec256.pem")), 0600);
    assert_int_equal(mode_of(fx_path(fx, "certs/www.example.net")), 0700);

    assert_int_equal(atls_store_load_cert(fx->st, "www.example.net", ATLS_KEY_EC256,
                                          &key, &chain, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(EVP_PKEY_eq(key, pki.leaf_key), 1);
    assert_int_equal(sk_X509_num(chain), 2);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 0), pki.leaf), 0);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 1), pki.inter), 0);
    EVP_PKEY_free(key);
    atls_chain_free(chain);
    /* either output may be skipped */
    assert_int_equal(atls_store_load_cert(fx->st, "www.example.net", ATLS_KEY_EC256,
                                          NULL, &chain, err, sizeof(err)), ATLS_STORE_OK);
    atls_chain_free(chain);
    /* another key type is another file */
    assert_int_equal(atls_store_load_cert(fx->st, "www.example.net", ATLS_KEY_RSA2048,
                                          &key, &chain, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);

    /* a chain for another key is refused and the old file stays */
    before = get_ok(fx->st, "certs/www.example.net/ec256.pem", &blen);
    assert_int_equal(atls_store_save_cert(fx->st, "www.example.net", ATLS_KEY_EC256,
                                          other.leaf_key, pem, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(atls_store_save_cert(fx->st, "www.example.net", ATLS_KEY_EC256,
                                          pki.leaf_key, "garbage", err, sizeof(err)),
                     ATLS_STORE_ERROR);
    after = get_ok(fx->st, "certs/www.example.net/ec256.pem", &alen);
    assert_int_equal(alen, blen);
    assert_memory_equal(before, after, blen);
    assert_int_equal(count_temps(fx_path(fx, "certs/www.example.net")), 0);
    free(before);
    free(after);

    /* a tampered file is reported with its path */
    put_ok(fx->st, "certs/www.example.net/ec384.pem", "-----BEGIN CERTIFICATE-----\n", 28, 1);
    assert_int_equal(atls_store_load_cert(fx->st, "www.example.net", ATLS_KEY_EC384,
                                          &key, &chain, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "certs/www.example.net/ec384.pem"));
    assert_null(key);
    assert_null(chain);

    free(pem);
    testpki_chain_free(&pki);
    testpki_chain_free(&other);
}

static void
test_account(void **state)
{
    fx_t       *fx = *state;
    const char *dir = "https://127.0.0.1:14000/dir";
    EVP_PKEY   *k1, *k2;
    char       *url, err[512], *contact[] = { "mailto:ops@example.com" }, *raw;
    int         created;
    size_t      len;

    assert_int_equal(atls_store_load_account(fx->st, dir, &k1, &url, &created,
                                             err, sizeof(err)), ATLS_STORE_OK);
    assert_non_null(k1);
    assert_int_equal(created, 1);
    assert_null(url);
    assert_int_equal(atls_key_type_of(k1), ATLS_KEY_EC256);
    assert_int_equal(mode_of(fx_path(fx, "accounts/https___127.0.0.1_14000_dir/account.key")),
                     0600);

    assert_int_equal(atls_store_save_account(fx->st, dir, "https://127.0.0.1:14000/acct/9",
                                             contact, 1, err, sizeof(err)), ATLS_STORE_OK);
    raw = get_ok(fx->st, "accounts/https___127.0.0.1_14000_dir/account.json", &len);
    assert_non_null(strstr(raw, "mailto:ops@example.com"));
    assert_null(strstr(raw, "PRIVATE"));
    free(raw);

    assert_int_equal(atls_store_load_account(fx->st, dir, &k2, &url, &created,
                                             err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(created, 0);
    assert_int_equal(EVP_PKEY_eq(k1, k2), 1);
    assert_string_equal(url, "https://127.0.0.1:14000/acct/9");
    free(url);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);

    /* another CA, another account */
    assert_int_equal(atls_store_load_account(fx->st, "https://other.example/acme", &k1,
                                             NULL, &created, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(created, 1);
    EVP_PKEY_free(k1);
}

static void
test_requests_and_generation(void **state)
{
    fx_t    *fx = *state;
    char     err[256], *raw;
    size_t   len;
    uint64_t gen;

    assert_int_equal(atls_store_take_request(fx->st, "r.example"), 0);
    assert_int_equal(atls_store_request_renew(fx->st, "r.example", err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(mode_of(fx_path(fx, "requests/r.example")), 0644);
    assert_int_equal(atls_store_take_request(fx->st, "s.example"), 0);
    assert_int_equal(atls_store_take_request(fx->st, "r.example"), 1);
    assert_int_equal(atls_store_take_request(fx->st, "r.example"), 0);
    assert_int_equal(atls_store_request_renew(fx->st, "../etc", err, sizeof(err)),
                     ATLS_STORE_ERROR);

    assert_int_equal(atls_store_generation(fx->st), 0);
    assert_int_equal(atls_store_bump_generation(fx->st), ATLS_STORE_OK);
    assert_int_equal(atls_store_generation(fx->st), 1);
    assert_int_equal(atls_store_bump_generation(fx->st), ATLS_STORE_OK);
    assert_int_equal(atls_store_generation(fx->st), 2);
    raw = get_ok(fx->st, "generation", &len);
    assert_string_equal(raw, "2\n");
    free(raw);
    put_ok(fx->st, "generation", "18446744073709551614\n", 21, 0);
    assert_true(atls_store_generation(fx->st) == 18446744073709551614ULL);

    /* the quiet read that hosts poll: the error comes back, gen is 0 */
    assert_int_equal(atls_store_read_generation(fx->st, &gen, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_true(gen == 18446744073709551614ULL);
    put_ok(fx->st, "generation", "x2\n", 3, 0);
    err[0] = '\0';
    assert_int_equal(atls_store_read_generation(fx->st, &gen, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_true(gen == 0);
    assert_non_null(strstr(err, "not a decimal number"));
    /* strtoull() would take these (" -1" as 2^64-1); the file is rejected
     * and a bump refuses to overwrite it. */
    put_ok(fx->st, "generation", " -1\n", 4, 0);
    assert_int_equal(atls_store_generation(fx->st), 0);
    assert_int_equal(atls_store_bump_generation(fx->st), ATLS_STORE_ERROR);
    put_ok(fx->st, "generation", "+7", 2, 0);
    assert_int_equal(atls_store_generation(fx->st), 0);
}

static void
test_ids(void **state)
{
    char *s;

    (void) state;
    s = atls_cert_id("*.Example.COM");
    assert_string_equal(s, "_.example.com");
    free(s);
    s = atls_cert_id("a/b");
    assert_string_equal(s, "a_b");
    free(s);
    s = atls_cert_id("..");
    assert_int_not_equal(s[0], '.');
    free(s);
    assert_null(atls_cert_id(""));
    assert_null(atls_cert_id(NULL));
    s = atls_ca_id("https://acme-v02.api.letsencrypt.org/directory");
    assert_string_equal(s, "https___acme-v02.api.letsencrypt.org_directory");
    free(s);
    assert_string_equal(atls_cert_state_name(ATLS_STATE_RENEWING), "renewing");
    assert_string_equal(atls_cert_state_name(ATLS_STATE_FAILED), "failed");
}

/* ---- every typed call, and keys that must never become paths -------------- */

static int tree_n;

static int
tree_count_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) path;
    (void) sb;
    (void) flag;
    (void) ftw;
    tree_n++;
    return 0;
}

/* Entries in the temp parent (the store and anything beside it). */
static int
tree_count(fx_t *fx)
{
    tree_n = 0;
    assert_int_equal(nftw(fx->dir, tree_count_one, 16, FTW_PHYS), 0);
    return tree_n;
}

static const char *const hostile_ids[] = { "../x", "a/b", "", ".hidden", "..", NULL };

static void
test_typed_challenges(void **state)
{
    static const char token[] = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
    static const char *const bad_tokens[] = {
        "../x", "a/b", "", "tok.en", "tok=", ".x", NULL
    };
    static const char *const bad_names[] = {
        "../x", "a/b", "", "WWW.Example.net", "*.example.net", ".example.net",
        "a..b", "a b", NULL
    };
    fx_t  *fx = *state;
    char   err[256], *data, longkey[300];
    size_t len, i;
    int    before;

    /* http-01: the key authorisation, public */
    assert_int_equal(atls_store_get_challenge(fx->st, ATLS_CHAL_HTTP01, token, &data, &len,
                                              err, sizeof(err)), ATLS_STORE_NOTFOUND);
    assert_int_equal(atls_store_put_challenge(fx->st, ATLS_CHAL_HTTP01, token, "ka.th", 5,
                                              err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(mode_of(fx_path(fx, "challenges/http-01/"
                                         "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0")),
                     0644);
    assert_int_equal(atls_store_get_challenge(fx->st, ATLS_CHAL_HTTP01, token, &data, &len,
                                              err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(data, "ka.th", 5);
    free(data);
    assert_int_equal(atls_store_del_challenge(fx->st, ATLS_CHAL_HTTP01, token,
                                              err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_get_challenge(fx->st, ATLS_CHAL_HTTP01, token, &data, &len,
                                              err, sizeof(err)), ATLS_STORE_NOTFOUND);

    /* tls-alpn-01: certificate and key, private; names and IP literals */
    assert_int_equal(atls_store_put_challenge(fx->st, ATLS_CHAL_TLSALPN01, "www.example.net",
                                              "PEM", 3, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(mode_of(fx_path(fx, "challenges/tls-alpn-01/www.example.net")), 0600);
    assert_int_equal(atls_store_put_challenge(fx->st, ATLS_CHAL_TLSALPN01, "::1",
                                              "v6", 2, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_get_challenge(fx->st, ATLS_CHAL_TLSALPN01, "www.example.net",
                                              &data, &len, err, sizeof(err)), ATLS_STORE_OK);
    assert_string_equal(data, "PEM");
    free(data);
    /* no answer is stored for dns-01 (the hook publishes it) */
    assert_int_equal(atls_store_put_challenge(fx->st, ATLS_CHAL_DNS01, "www.example.net",
                                              "x", 1, err, sizeof(err)), ATLS_STORE_ERROR);

    before = tree_count(fx);
    for (i = 0; bad_tokens[i] != NULL; i++) {
        assert_int_equal(atls_store_put_challenge(fx->st, ATLS_CHAL_HTTP01, bad_tokens[i],
                                                  "x", 1, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_int_equal(atls_store_get_challenge(fx->st, ATLS_CHAL_HTTP01, bad_tokens[i],
                                                  &data, &len, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_null(data);
        assert_int_equal(atls_store_del_challenge(fx->st, ATLS_CHAL_HTTP01, bad_tokens[i],
                                                  err, sizeof(err)), ATLS_STORE_ERROR);
    }
    for (i = 0; bad_names[i] != NULL; i++) {
        assert_int_equal(atls_store_put_challenge(fx->st, ATLS_CHAL_TLSALPN01, bad_names[i],
                                                  "x", 1, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_int_equal(atls_store_get_challenge(fx->st, ATLS_CHAL_TLSALPN01, bad_names[i],
                                                  &data, &len, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_int_equal(atls_store_del_challenge(fx->st, ATLS_CHAL_TLSALPN01, bad_names[i],
                                                  err, sizeof(err)), ATLS_STORE_ERROR);
    }
    assert_int_equal(atls_store_put_challenge(fx->st, ATLS_CHAL_TLSALPN01, NULL, "x", 1,
                                              err, sizeof(err)), ATLS_STORE_ERROR);
    memset(longkey, 'a', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    assert_int_equal(atls_store_put_challenge(fx->st, ATLS_CHAL_HTTP01, longkey, "x", 1,
                                              err, sizeof(err)), ATLS_STORE_ERROR);
    assert_int_equal(tree_count(fx), before);
    /* what was stored is still there, untouched by the refused calls */
    assert_int_equal(atls_store_del_challenge(fx->st, ATLS_CHAL_TLSALPN01, "::1",
                                              err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_del_challenge(fx->st, ATLS_CHAL_TLSALPN01, "www.example.net",
                                              err, sizeof(err)), ATLS_STORE_OK);
}

/* A self-signed pair for the fallback calls. */
static void
selfsigned(const char *name, atls_key_type_t kt, X509 **x, EVP_PKEY **k)
{
    const char *names[1];

    names[0] = name;
    assert_int_equal(atls_selfsigned_cert(names, 1, kt, x, k), 0);
}

static void
test_typed_fallback(void **state)
{
    fx_t            *fx = *state;
    static const atls_key_type_t keep[] = { ATLS_KEY_EC256 };
    X509            *x, *x2;
    EVP_PKEY        *k, *k2, *got;
    STACK_OF(X509)  *chain;
    char             err[256], *pem, **names;
    size_t           n, i;
    int              before;

    selfsigned("f.example", ATLS_KEY_EC256, &x, &k);
    selfsigned("f.example", ATLS_KEY_EC256, &x2, &k2);
    assert_int_equal(atls_store_load_fallback(fx->st, "f.example", ATLS_KEY_EC256, &got,
                                              &chain, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_int_equal(atls_store_save_fallback(fx->st, "f.example", ATLS_KEY_EC256, k, x,
                                              err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(mode_of(fx_path(fx, "fallback/f.example/ec256.key")), 0600);
    assert_int_equal(mode_of(fx_path(fx, "fallback/f.example/ec256.crt")), 0644);
    assert_int_equal(atls_store_load_fallback(fx->st, "f.example", ATLS_KEY_EC256, &got,
                                              &chain, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(EVP_PKEY_eq(got, k), 1);
    assert_int_equal(sk_X509_num(chain), 1);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 0), x), 0);
    EVP_PKEY_free(got);
    atls_chain_free(chain);
    assert_int_equal(atls_store_load_fallback(fx->st, "f.example", ATLS_KEY_RSA2048, &got,
                                              &chain, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);

    /* refused on save: a key that is not the certificate's, or of another type */
    assert_int_equal(atls_store_save_fallback(fx->st, "f.example", ATLS_KEY_EC256, k2, x,
                                              err, sizeof(err)), ATLS_STORE_ERROR);
    assert_int_equal(atls_store_save_fallback(fx->st, "f.example", ATLS_KEY_EC384, k, x,
                                              err, sizeof(err)), ATLS_STORE_ERROR);
    /* refused on load: a pair a crash (or the owner) left mismatched */
    pem = atls_key_to_pem(k2);
    put_ok(fx->st, "fallback/f.example/ec256.key", pem, strlen(pem), 1);
    free(pem);
    assert_int_equal(atls_store_load_fallback(fx->st, "f.example", ATLS_KEY_EC256, &got,
                                              &chain, err, sizeof(err)), ATLS_STORE_ERROR);
    assert_null(got);
    assert_null(chain);
    assert_non_null(strstr(err, "fallback/f.example/ec256.crt"));

    /* prune keeps the configured types, drops the rest (old single files) */
    put_ok(fx->st, "fallback/f.example/fallback.key", "k", 1, 1);
    put_ok(fx->st, "fallback/f.example/fallback.crt", "c", 1, 0);
    assert_int_equal(atls_store_save_fallback(fx->st, "f.example", ATLS_KEY_EC256, k, x,
                                              err, sizeof(err)), ATLS_STORE_OK);
    /* a matching pair under another type's name is not that type's */
    pem = get_ok(fx->st, "fallback/f.example/ec256.key", &n);
    put_ok(fx->st, "fallback/f.example/ec384.key", pem, n, 1);
    free(pem);
    pem = get_ok(fx->st, "fallback/f.example/ec256.crt", &n);
    put_ok(fx->st, "fallback/f.example/ec384.crt", pem, n, 0);
    free(pem);
    assert_int_equal(atls_store_load_fallback(fx->st, "f.example", ATLS_KEY_EC384, &got,
                                              &chain, err, sizeof(err)), ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "key of another type"));
    assert_int_equal(atls_store_prune_fallbacks(fx->st, "f.example", keep, 1,
                                                err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(fx->st->ops->list(fx->st, "fallback/f.example", &names, &n,
                                       err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "ec256.crt");
    assert_string_equal(names[1], "ec256.key");
    atls_strv_free(names, n);
    assert_int_equal(atls_store_prune_fallbacks(fx->st, "none.example", keep, 1,
                                                err, sizeof(err)), ATLS_STORE_OK);

    assert_int_equal(atls_store_del_fallback(fx->st, "f.example", ATLS_KEY_EC256,
                                             err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_del_fallback(fx->st, "f.example", ATLS_KEY_EC256,
                                             err, sizeof(err)), ATLS_STORE_NOTFOUND);

    before = tree_count(fx);
    for (i = 0; i < sizeof(hostile_ids) / sizeof(hostile_ids[0]); i++) {
        const char *id = hostile_ids[i];

        assert_int_equal(atls_store_save_fallback(fx->st, id, ATLS_KEY_EC256, k, x,
                                                  err, sizeof(err)), ATLS_STORE_ERROR);
        assert_int_equal(atls_store_load_fallback(fx->st, id, ATLS_KEY_EC256, &got,
                                                  &chain, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_int_equal(atls_store_del_fallback(fx->st, id, ATLS_KEY_EC256,
                                                 err, sizeof(err)), ATLS_STORE_ERROR);
        assert_int_equal(atls_store_prune_fallbacks(fx->st, id, keep, 1,
                                                    err, sizeof(err)), ATLS_STORE_ERROR);
    }
    assert_int_equal(tree_count(fx), before);
    X509_free(x);
    X509_free(x2);
    EVP_PKEY_free(k);
    EVP_PKEY_free(k2);
}

static void
test_typed_lock_account_request(void **state)
{
    fx_t              *fx = *state;
    const char        *dir = "https://127.0.0.1:14000/dir";
    atls_store_lock_t *lk, *lk2;
    EVP_PKEY          *key;
    char               err[256], buf[512], want[512], *abs;
    time_t             when;
    size_t             i;
    int                created, before;

    /* the certificate lock: exclusive, named after the id */
    assert_int_equal(atls_store_lock_cert(fx->st, "l.example", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(mode_of(fx_path(fx, "locks/cert-l.example.lock")), 0600);
    assert_int_equal(atls_store_lock_cert(fx->st, "l.example", 0, &lk2, err, sizeof(err)),
                     ATLS_STORE_BUSY);
    assert_null(lk2);
    atls_store_unlock(fx->st, lk);
    assert_int_equal(atls_store_lock_cert(fx->st, "l.example", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    atls_store_unlock(fx->st, lk);
    atls_store_unlock(fx->st, NULL);

    /* an account counts once the CA created it (account.json), not before */
    assert_int_equal(atls_store_has_account(fx->st, dir), 0);
    assert_int_equal(atls_store_load_account(fx->st, dir, &key, NULL, &created,
                                             err, sizeof(err)), ATLS_STORE_OK);
    EVP_PKEY_free(key);
    assert_int_equal(atls_store_has_account(fx->st, dir), 0);
    assert_int_equal(atls_store_save_account(fx->st, dir, "https://127.0.0.1:14000/acct/1",
                                             NULL, 0, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_has_account(fx->st, dir), 1);
    assert_int_equal(atls_store_has_account(fx->st, "https://other.example/dir"), 0);
    assert_int_equal(atls_store_has_account(fx->st, NULL), 0);

    /* renew requests: peek only looks, take removes */
    assert_int_equal(atls_store_peek_request(fx->st, "r.example", &when), 0);
    assert_int_equal(atls_store_request_renew(fx->st, "r.example", err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_peek_request(fx->st, "r.example", &when), 1);
    assert_true(when > time(NULL) - 60 && when <= time(NULL) + 1);
    assert_int_equal(atls_store_peek_request(fx->st, "r.example", &when), 1);
    assert_int_equal(atls_store_take_request(fx->st, "r.example"), 1);
    assert_int_equal(atls_store_peek_request(fx->st, "r.example", &when), 0);

    /* the file name shown to operators */
    abs = realpath(fx->root, NULL);
    assert_non_null(abs);
    snprintf(want, sizeof(want), "%s/certs/_.example.org/rsa2048.pem", abs);
    free(abs);
    assert_int_equal(atls_store_fs_cert_file(fx->root, "_.example.org", ATLS_KEY_RSA2048,
                                             buf, sizeof(buf)), 0);
    assert_string_equal(buf, want);

    before = tree_count(fx);
    for (i = 0; i < sizeof(hostile_ids) / sizeof(hostile_ids[0]); i++) {
        const char *id = hostile_ids[i];

        assert_int_equal(atls_store_lock_cert(fx->st, id, 0, &lk, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_null(lk);
        assert_int_equal(atls_store_request_renew(fx->st, id, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_int_equal(atls_store_peek_request(fx->st, id, &when), 0);
        assert_int_equal(atls_store_take_request(fx->st, id), 0);
        assert_int_equal(atls_store_fs_cert_file(fx->root, id, ATLS_KEY_EC256,
                                                 buf, sizeof(buf)), -1);
        assert_string_equal(buf, "-");
    }
    assert_int_equal(tree_count(fx), before);
}

/* The certificate calls refuse ids that are not one path component. */
static void
test_typed_hostile_cert_ids(void **state)
{
    fx_t             *fx = *state;
    atls_cert_meta_t  m;
    EVP_PKEY         *key = NULL;
    STACK_OF(X509)   *chain = NULL;
    X509             *leaf = NULL;
    char              err[256];
    size_t            i;
    int               before = tree_count(fx);

    for (i = 0; i < sizeof(hostile_ids) / sizeof(hostile_ids[0]); i++) {
        const char *id = hostile_ids[i];

        assert_int_equal(atls_store_load_meta(fx->st, id, &m, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        memset(&m, 0, sizeof(m));
        m.id = (char *) id;
        assert_int_equal(atls_store_save_meta(fx->st, &m, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_int_equal(atls_store_load_cert(fx->st, id, ATLS_KEY_EC256, &key, &chain,
                                              err, sizeof(err)), ATLS_STORE_ERROR);
        assert_int_equal(atls_store_load_leaf(fx->st, id, ATLS_KEY_EC256, &leaf,
                                              err, sizeof(err)), ATLS_STORE_ERROR);
        assert_null(key);
        assert_null(chain);
        assert_null(leaf);
    }
    assert_int_equal(tree_count(fx), before);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_put_get_round_trip),
        cmocka_unit_test(test_path_rules),
        STORE_TEST(test_bad_paths),
        STORE_TEST(test_modes),
        STORE_TEST(test_failed_put_keeps_old),
        STORE_TEST(test_crash_atomicity),
        STORE_TEST(test_list),
        STORE_TEST(test_lock),
        STORE_TEST(test_open_errors),
        STORE_TEST(test_prepare_and_ownership),
        cmocka_unit_test(test_meta_json_round_trip),
        cmocka_unit_test(test_meta_json_errors),
        STORE_TEST(test_meta_store),
        STORE_TEST(test_meta_corrupt),
        STORE_TEST(test_cert_round_trip),
        STORE_TEST(test_account),
        STORE_TEST(test_requests_and_generation),
        cmocka_unit_test(test_ids),
        STORE_TEST(test_typed_challenges),
        STORE_TEST(test_typed_fallback),
        STORE_TEST(test_typed_lock_account_request),
        STORE_TEST(test_typed_hostile_cert_ids),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
