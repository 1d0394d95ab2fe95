/*
 * A node's mirror filled from Redis in batches (mirror_batch.c, issue 12):
 * a step of a sync writes every certificate it pulled with one syncfs,
 * not a few fsyncs a certificate (a cold node over 10,000 certificates
 * was bound by them), and every certificate still reads back whole, at
 * Redis's generation.  The syncs are counted through the filesystem
 * writers' test hook.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <dirent.h>
#include <sys/stat.h>
#include "atls.h"
#include "atls_mirror.h"
#include "store_fs_int.h"
#include "store_int.h"
#include "support/mirrorfx.h"

#define MX_TEST(f) cmocka_unit_test_setup_teardown(f, mirrorfx_setup, mirrorfx_teardown)
#define N_CERTS    40

static unsigned syncfs_calls, fsync_calls;

/* a step's syncfs: the certificates' temps, the renames into their
 * directories, then the generation records' temps (mirror_batch.c) */
#define MIRROR_STEP_SYNCFS  3

static void
count_sync(const char *what)
{
    if (strcmp(what, "syncfs") == 0) {
        syncfs_calls++;
    } else {
        fsync_calls++;
    }
}

/* on: counted from 0; off: the counts kept */
static void
counting(int on)
{
    if (on) {
        syncfs_calls = 0;
        fsync_calls = 0;
    }
    atls_fs_sync_test_hook = on ? count_sync : NULL;
}

static void
cert_id(int i, char *id, size_t len)
{
    snprintf(id, len, "b%02d.example", i);
}

static void
deploy_all(mirrorfx_t *fx, int serial)
{
    char id[64];
    int  i;

    for (i = 0; i < N_CERTS; i++) {
        cert_id(i, id, sizeof(id));
        mirrorfx_deploy(fx->a, id, serial);
    }
}

static void
assert_all_whole(mirrorfx_t *fx, uint64_t gen)
{
    char id[64];
    int  i;

    for (i = 0; i < N_CERTS; i++) {
        cert_id(i, id, sizeof(id));
        assert_int_equal(atls_mirror_generation(fx->b, id), gen);
        mirrorfx_assert_same_cert(fx->dir_a, fx->dir_b, id);
    }
}

/* An empty mirror, one step without a budget: one syncfs for all the
 * certificates, and a number of fsyncs that does not grow with them
 * (it was nine a certificate). */
static void
test_cold_pull_one_syncfs(void **state)
{
    mirrorfx_t *fx = *state;
    char        err[512];
    int         done = 0;

    deploy_all(fx, 1);
    counting(1);
    assert_int_equal(atls_mirror_sync_step(fx->b, 0, &done, NULL, err, sizeof(err)), N_CERTS);
    counting(0);
    assert_true(done);
    print_message("%u syncfs, %u fsyncs\n", syncfs_calls, fsync_calls);
    /* the certificates' temps, their renames, the records' temps: a
     * number of the step, not of its certificates */
    assert_int_equal(syncfs_calls, MIRROR_STEP_SYNCFS);
    assert_true(fsync_calls < 8);
    assert_all_whole(fx, 1);
}

/* In slices: at most one syncfs a step, whatever each pulled. */
static void
test_sliced_pull_syncfs_per_step(void **state)
{
    mirrorfx_t *fx = *state;
    char        err[512];
    int         done = 0, calls = 0, pulled = 0;

    deploy_all(fx, 1);
    counting(1);
    while (!done) {
        pulled = atls_mirror_sync_step(fx->b, 1, &done, NULL, err, sizeof(err));
        if (pulled < 0) {
            counting(0);
            fail_msg("sync step: %s", err);
        }
        calls++;
    }
    counting(0);
    assert_int_equal(pulled, N_CERTS);
    assert_true(syncfs_calls <= MIRROR_STEP_SYNCFS * (unsigned) calls);
    assert_true(fsync_calls < 8 * (unsigned) calls);
    assert_all_whole(fx, 1);
}

/* A newer deploy of every certificate replaces the files the mirror
 * holds, in a batch too; a certificate with a file Redis no longer has
 * takes the path that deletes it, and is whole as well. */
static void
test_newer_pull_replaces_and_prunes(void **state)
{
    mirrorfx_t   *fx = *state;
    atls_store_t *fs = atls_mirror_fs(fx->b);
    char          err[512], id[64], *stray, *data = NULL;
    int           done = 0;

    deploy_all(fx, 1);
    mirrorfx_sync_ok(fx->b, N_CERTS, 0);
    cert_id(3, id, sizeof(id));
    stray = atls_store_cat("certs/", id, "/stray.pem", NULL);
    assert_int_equal(fs->ops->put(fs, stray, "x", 1, 0, err, sizeof(err)), ATLS_STORE_OK);
    deploy_all(fx, 2);
    counting(1);
    assert_int_equal(atls_mirror_sync_step(fx->b, 0, &done, NULL, err, sizeof(err)), N_CERTS);
    counting(0);
    assert_int_equal(syncfs_calls, MIRROR_STEP_SYNCFS);
    assert_int_equal(fs->ops->get(fs, stray, &data, NULL, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    free(data);
    free(stray);
    assert_all_whole(fx, 2);
}

/* No temp file (a dot file) left in dir. */
static void
assert_no_temps(const char *root, const char *dir)
{
    char           path[512];
    DIR           *d;
    struct dirent *e;

    snprintf(path, sizeof(path), "%s/%s", root, dir);
    d = opendir(path);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        assert_false(strncmp(e->d_name, ".tmp.", 5) == 0);
    }
    closedir(d);
}

/* The store op under the batch: groups of two directories land whole,
 * with one syncfs, a private file 0600; a rename failing in the second
 * (a directory planted under a final name) is an error naming the file,
 * with the first group done and no temp left. */
static void
test_put_groups(void **state)
{
    mirrorfx_t              *fx = *state;
    atls_store_t            *fs = atls_mirror_fs(fx->b);
    const atls_store_file_t  g0[] = { { "a.pem", "A", 1, 1 } };
    const atls_store_file_t  g1[] = { { "b.pem", "B", 1, 0 }, { "c.pem", "C", 1, 0 } };
    const atls_store_group_t gs[] = { { "certs/g0", g0, 1 }, { "certs/g1", g1, 2 } };
    char                     err[512], path[512], *data = NULL;
    size_t                   done = 9;
    struct stat              sb;

    counting(1);
    assert_int_equal(atls_store_put_groups(fs, gs, 2, &done, err, sizeof(err)), ATLS_STORE_OK);
    counting(0);
    assert_int_equal(done, 2);
    /* the temps, then the renames of two directories */
    assert_int_equal(syncfs_calls, 2);
    assert_int_equal(fs->ops->get(fs, "certs/g1/c.pem", &data, NULL, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_string_equal(data, "C");
    free(data);
    snprintf(path, sizeof(path), "%s/certs/g0/a.pem", fx->dir_b);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);

    assert_int_equal(fs->ops->del(fs, "certs/g1/c.pem", err, sizeof(err)), ATLS_STORE_OK);
    snprintf(path, sizeof(path), "%s/certs/g1/c.pem", fx->dir_b);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/certs/g1/c.pem/x", fx->dir_b);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(atls_store_put_groups(fs, gs, 2, &done, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(done, 1);
    assert_non_null(strstr(err, "c.pem"));
    assert_no_temps(fx->dir_b, "certs/g0");
    assert_no_temps(fx->dir_b, "certs/g1");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        MX_TEST(test_cold_pull_one_syncfs),
        MX_TEST(test_sliced_pull_syncfs_per_step),
        MX_TEST(test_newer_pull_replaces_and_prunes),
        MX_TEST(test_put_groups),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
