/*
 * The store's batch write (atls_store_put_many, issue 11): n files of one
 * directory with one sync.  What a batch leaves is defined: every file
 * new, or (a temp that cannot be written, the sync failing) every file
 * old, or (a rename failing) the first *done files new and the rest old;
 * never a temp file behind, never a link followed.  Backends without the
 * op get the same answers from a loop over put.  And get_max: a file
 * larger than its bound is refused, the file named (names-count).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include "atls.h"
#include "atls_names.h"
#include "atls_store.h"
#include "support/logcap.h"
#include "support/tmptree.h"

static struct {
    char          dir[64];      /* parent of the store and of "outside" */
    char          root[96];
    atls_store_t *st;
} fx;

static int
setup(void **state)
{
    char err[256];

    (void) state;
    logcap_start(ATLS_LOG_WARN);
    snprintf(fx.dir, sizeof(fx.dir), "/tmp/atls-putmany-XXXXXX");
    if (mkdtemp(fx.dir) == NULL) {
        return -1;
    }
    snprintf(fx.root, sizeof(fx.root), "%s/store", fx.dir);
    fx.st = atls_store_fs_open(fx.root, err, sizeof(err));
    return fx.st != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
    (void) state;
    atls_store_close(fx.st);
    tmptree_rm(fx.dir);
    logcap_stop();
    return 0;
}

static void
put(const char *path, const char *data)
{
    char err[256];

    assert_int_equal(fx.st->ops->put(fx.st, path, data, strlen(data), 0, err, sizeof(err)),
                     ATLS_STORE_OK);
}

static void
assert_content(const char *path, const char *want)
{
    char  *data = NULL, err[256];
    size_t len = 0;

    assert_int_equal(fx.st->ops->get(fx.st, path, &data, &len, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_string_equal(data, want);
    free(data);
}

/* The dot files (temps) in the store's dir. */
static size_t
temps_in(const char *dir)
{
    char           path[256];
    DIR           *d;
    struct dirent *de;
    size_t         n = 0;

    snprintf(path, sizeof(path), "%s/%s", fx.root, dir);
    d = opendir(path);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        n += strncmp(de->d_name, ".tmp.", 5) == 0;
    }
    closedir(d);
    return n;
}

static mode_t
mode_of(const char *rel)
{
    char        path[256];
    struct stat sb;

    snprintf(path, sizeof(path), "%s/%s", fx.root, rel);
    assert_int_equal(lstat(path, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    return sb.st_mode & 07777;
}

/* n files f<i> with "<tag><i>" (f<i>.key private) */
typedef struct {
    char              name[32][16];
    char              data[32][32];
    atls_store_file_t f[32];
} batch_t;

static void
batch_make(batch_t *b, size_t n, const char *tag, int with_keys)
{
    size_t i;

    assert_true(n <= 32);
    for (i = 0; i < n; i++) {
        snprintf(b->name[i], sizeof(b->name[i]), "f%zu%s", i,
                 with_keys && i % 2 ? ".key" : "");
        snprintf(b->data[i], sizeof(b->data[i]), "%s%zu", tag, i);
        b->f[i].name = b->name[i];
        b->f[i].data = b->data[i];
        b->f[i].len = strlen(b->data[i]);
        b->f[i].is_private = with_keys && i % 2;
    }
}

/* Every file written reads back, modes as put gives them (0600 for the
 * private, 0644 for the others even under a umask of 077), no temp left. */
static void
test_batch_reads_back_with_modes(void **state)
{
    batch_t b;
    char    err[256], path[64];
    size_t  done = 99, i;
    mode_t  old;

    (void) state;
    batch_make(&b, 30, "new", 1);
    old = umask(077);
    assert_int_equal(atls_store_put_many(fx.st, "certs/x", b.f, 30, &done, err, sizeof(err)),
                     ATLS_STORE_OK);
    umask(old);
    assert_int_equal(done, 30);
    for (i = 0; i < 30; i++) {
        snprintf(path, sizeof(path), "certs/x/%s", b.name[i]);
        assert_content(path, b.data[i]);
        assert_int_equal(mode_of(path), i % 2 ? 0600 : 0644);
    }
    assert_int_equal(temps_in("certs/x"), 0);
}

/* A temp that cannot be written (the file size limit: the write fails
 * mid-batch) leaves every file old, *done 0, no temp, err naming it. */
static void
test_temp_failure_leaves_all_old(void **state)
{
    static char   big[8192];
    batch_t       b;
    struct rlimit saved, small;
    char          err[256], path[64];
    size_t        done = 99, i;

    (void) state;
    batch_make(&b, 5, "new", 0);
    for (i = 0; i < 5; i++) {
        snprintf(path, sizeof(path), "names/%s", b.name[i]);
        put(path, "old");
    }
    memset(big, 'x', sizeof(big));
    b.f[3].data = big;
    b.f[3].len = sizeof(big);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small = saved;
    small.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    assert_int_equal(atls_store_put_many(fx.st, "names", b.f, 5, &done, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_int_equal(done, 0);
    assert_non_null(strstr(err, "names/f3"));
    for (i = 0; i < 5; i++) {
        snprintf(path, sizeof(path), "names/%s", b.name[i]);
        assert_content(path, "old");
    }
    assert_int_equal(temps_in("names"), 0);
}

/* A rename that fails (a directory planted under f2's final name) leaves
 * f0, f1 new and f2.. old: *done 2, no temp, err naming f2. */
static void
test_rename_failure_leaves_prefix(void **state)
{
    batch_t b;
    char    err[256], path[256];
    size_t  done = 99, i;

    (void) state;
    batch_make(&b, 5, "new", 0);
    for (i = 0; i < 5; i++) {
        if (i != 2) {
            snprintf(path, sizeof(path), "names/%s", b.name[i]);
            put(path, "old");
        }
    }
    snprintf(path, sizeof(path), "%s/names/f2", fx.root);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/names/f2/inside", fx.root);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(atls_store_put_many(fx.st, "names", b.f, 5, &done, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(done, 2);
    assert_non_null(strstr(err, "names/f2"));
    assert_content("names/f0", "new0");
    assert_content("names/f1", "new1");
    assert_content("names/f3", "old");
    assert_content("names/f4", "old");
    assert_int_equal(temps_in("names"), 0);
}

/* A link planted under a final name is replaced, its target untouched;
 * the batch's directory as a link is refused, nothing written there. */
static void
test_links_not_followed(void **state)
{
    batch_t b;
    char    err[256], target[160], link[200], outside[160];
    size_t  done = 99;
    FILE   *f;
    char    buf[32] = "";

    (void) state;
    batch_make(&b, 2, "new", 0);
    snprintf(target, sizeof(target), "%s/target", fx.dir);
    f = fopen(target, "w");
    assert_non_null(f);
    fputs("outside", f);
    fclose(f);
    put("names/f1", "old");
    snprintf(link, sizeof(link), "%s/names/f0", fx.root);
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(atls_store_put_many(fx.st, "names", b.f, 2, &done, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(mode_of("names/f0"), 0644);
    assert_content("names/f0", "new0");
    f = fopen(target, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    assert_string_equal(buf, "outside");

    /* the directory itself a link to a tree outside the store */
    snprintf(outside, sizeof(outside), "%s/elsewhere", fx.dir);
    assert_int_equal(mkdir(outside, 0700), 0);
    snprintf(link, sizeof(link), "%s/crl", fx.root);
    tmptree_rm(link);
    assert_int_equal(symlink(outside, link), 0);
    assert_int_equal(atls_store_put_many(fx.st, "crl", b.f, 2, &done, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(done, 0);
    assert_non_null(strstr(err, "symbolic link"));
    snprintf(link, sizeof(link), "%s/f0", outside);
    assert_int_not_equal(access(link, F_OK), 0);
}

/* ---- a backend without put_many / get_max --------------------------------- */

static const atls_store_ops_t *real_ops;
static atls_store_ops_t        plain_ops;
static size_t                  n_puts, fail_at;

static int
plain_put(atls_store_t *st, const char *path, const char *data, size_t len,
          int is_private, char *err, size_t errlen)
{
    if (++n_puts == fail_at) {
        snprintf(err, errlen, "%s: refused by the test", path);
        return ATLS_STORE_ERROR;
    }
    return real_ops->put(st, path, data, len, is_private, err, errlen);
}

static void
use_plain_ops(void)
{
    real_ops = fx.st->ops;
    plain_ops = *real_ops;
    plain_ops.put = plain_put;
    plain_ops.put_many = NULL;
    plain_ops.get_max = NULL;
    fx.st->ops = &plain_ops;
    n_puts = 0;
    fail_at = 0;
}

/* One put a file, stopping at the first failure: *done the files written. */
static void
test_fallback_loops_over_put(void **state)
{
    batch_t b;
    char    err[256];
    size_t  done = 99;

    (void) state;
    use_plain_ops();
    batch_make(&b, 6, "new", 1);
    assert_int_equal(atls_store_put_many(fx.st, "certs/y", b.f, 6, &done, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(done, 6);
    assert_int_equal(n_puts, 6);
    assert_content("certs/y/f5.key", "new5");
    n_puts = 0;
    fail_at = 3;
    batch_make(&b, 6, "two", 0);
    assert_int_equal(atls_store_put_many(fx.st, "certs/z", b.f, 6, &done, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(done, 2);
    assert_non_null(strstr(err, "certs/z/f2"));
    fx.st->ops = real_ops;
}

/* A file name that is not one component refuses the batch before any write. */
static void
test_bad_name_refused(void **state)
{
    atls_store_file_t f[2] = { { "ok", "1", 1, 0 }, { "../escape", "2", 1, 0 } };
    char              err[256];
    size_t            done = 99;

    (void) state;
    assert_int_equal(atls_store_put_many(fx.st, "names", f, 2, &done, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(done, 0);
    assert_non_null(strstr(err, "../escape"));
    assert_int_equal(fx.st->ops->get(fx.st, "names/ok", &(char *) { NULL }, NULL, err,
                                     sizeof(err)), ATLS_STORE_NOTFOUND);
}

/* get_max: past the bound refused naming the file, fs and fallback alike. */
static void
test_get_max_refuses_larger(void **state)
{
    char   big[200], *data = NULL, err[256];
    size_t len = 0;
    int    pass;

    (void) state;
    memset(big, '7', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    put("names-count", big);
    for (pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            use_plain_ops();
        }
        assert_int_equal(atls_store_get_max(fx.st, "names-count", 63, &data, &len, err,
                                            sizeof(err)), ATLS_STORE_ERROR);
        assert_null(data);
        assert_non_null(strstr(err, "/names-count: larger than 63 bytes"));
        assert_int_equal(atls_store_get_max(fx.st, "names-count", 199, &data, &len, err,
                                            sizeof(err)), ATLS_STORE_OK);
        assert_int_equal(len, 199);
        free(data);
        data = NULL;
    }
    fx.st->ops = real_ops;
}

/* names-count as the master reads it: a planted huge file is refused and
 * said, naming it; the count then comes from a listing (NOTFOUND). */
static void
test_names_count_bounded(void **state)
{
    const char *one = "a.example.com";
    static char big[4096];
    char        err[256];
    size_t      n = 99;

    (void) state;
    assert_int_equal(atls_names_add(fx.st, one, NULL, "cli", "test", 5, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_names_count(fx.st, &n), ATLS_STORE_OK);
    assert_int_equal(n, 1);
    memset(big, '1', sizeof(big) - 1);
    put("names-count", big);
    assert_int_equal(atls_names_count(fx.st, &n), ATLS_STORE_NOTFOUND);
    assert_int_equal(logcap_count("/names-count: larger than 63 bytes, refused"), 1);
}

/* ---- the registry's batches on it ----------------------------------------- */

static char *
entry_path(const char *name)
{
    char *id = atls_cert_id(name), *p;

    assert_non_null(id);
    p = malloc(strlen(fx.root) + strlen(id) + 16);
    assert_non_null(p);
    sprintf(p, "%s/names/%s.json", fx.root, id);
    free(id);
    return p;
}

/* A name given twice in one batch is added once (the second sees the
 * first, not yet on disk) and counted once. */
static void
test_names_twice_in_a_batch(void **state)
{
    const char   *v[3] = { "d.example.com", "e.example.com", "d.example.com" };
    unsigned char added[3];
    char          err[256];
    size_t        n = 0;

    (void) state;
    assert_int_equal(atls_names_add_many(fx.st, v, 3, NULL, "cli", "test", 5, added, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(added[0], 1);
    assert_int_equal(added[1], 1);
    assert_int_equal(added[2], 0);
    assert_int_equal(atls_names_count(fx.st, &n), ATLS_STORE_OK);
    assert_int_equal(n, 2);
}

/* An entry whose write fails at the end of the batch (a directory where
 * its file goes): the names before it are registered and journalled, it
 * and those after are not, and the caller is told so per name. */
static void
test_names_batch_partial_write(void **state)
{
    const char   *v[4] = { "p0.example.com", "p1.example.com", "p2.example.com",
                           "p3.example.com" };
    unsigned char added[4];
    char          err[256], *dir, **changed = NULL;
    size_t        n = 0;
    uint64_t      g0;
    atls_name_entry_t e;

    (void) state;
    g0 = atls_names_generation(fx.st);
    dir = entry_path(v[2]);
    *strrchr(dir, '/') = '\0';
    (void) mkdir(dir, 0700);            /* names/ */
    free(dir);
    dir = entry_path(v[2]);
    assert_int_equal(mkdir(dir, 0700), 0);
    strcat(dir, "/x");
    assert_int_equal(mkdir(dir, 0700), 0);
    free(dir);
    assert_int_equal(atls_names_add_many(fx.st, v, 4, NULL, "cli", "test", 5, added, err,
                                         sizeof(err)), ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "rename into"));
    assert_int_equal(added[0], 1);
    assert_int_equal(added[1], 1);
    assert_int_equal(added[2], 0);
    assert_int_equal(added[3], 0);
    assert_int_equal(atls_names_get(fx.st, v[1], &e, err, sizeof(err)), ATLS_STORE_OK);
    atls_name_entry_free(&e);
    assert_int_equal(atls_names_get(fx.st, v[3], &e, err, sizeof(err)), ATLS_STORE_NOTFOUND);
    assert_int_equal(atls_names_changed_since(fx.st, g0, atls_names_generation(fx.st),
                                              &changed, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 2);
    atls_strv_free(changed, n);
    assert_int_equal(atls_names_count(fx.st, &n), ATLS_STORE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(temps_in("names"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batch_reads_back_with_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_temp_failure_leaves_all_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_failure_leaves_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fallback_loops_over_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_name_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_max_refuses_larger, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_count_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_twice_in_a_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_batch_partial_write, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
