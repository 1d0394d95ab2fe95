/*
 * The mirror's sync in slices (atls_mirror_sync_step, issue 12): a cold
 * mirror over many certificates is filled a budget at a time, each
 * certificate whole, and the mirror's store generation (what the node's
 * workers watch) moves once per slice, not once per certificate, with
 * every pulled certificate in its change journal.
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
#include "atls.h"
#include "atls_mirror.h"
#include "support/mirrorfx.h"

#define MX_TEST(f) cmocka_unit_test_setup_teardown(f, mirrorfx_setup, mirrorfx_teardown)
#define N_CERTS    50

static void
cert_id(int i, char *id, size_t len)
{
    snprintf(id, len, "c%02d.example", i);
}

static void
deploy_all(mirrorfx_t *fx)
{
    char id[64];
    int  i;

    for (i = 0; i < N_CERTS; i++) {
        cert_id(i, id, sizeof(id));
        mirrorfx_deploy(fx->a, id, 1);
    }
}

/* Every certificate in B whole, at A's generation, and named by B's
 * change journal since `since`. */
static void
assert_all_pulled(mirrorfx_t *fx, uint64_t since)
{
    atls_store_t *fs = atls_mirror_fs(fx->b);
    char          id[64], err[256], **ids = NULL;
    size_t        n = 0, k;
    int           i, found;

    assert_int_equal(atls_store_changes_since(fs, since, atls_store_generation(fs), &ids, &n,
                                              err, sizeof(err)), ATLS_STORE_OK);
    for (i = 0; i < N_CERTS; i++) {
        cert_id(i, id, sizeof(id));
        assert_int_equal(atls_mirror_generation(fx->b, id), 1);
        mirrorfx_assert_same_cert(fx->dir_a, fx->dir_b, id);
        for (k = 0, found = 0; k < n; k++) {
            found |= strcmp(ids[k], id) == 0;
        }
        assert_true(found);
    }
    atls_strv_free(ids, n);
}

/* A tiny budget: several calls, resumed where they stopped. */
static void
test_sync_in_slices(void **state)
{
    mirrorfx_t *fx = *state;
    uint64_t    g0, g1;
    char        err[512];
    int         calls = 0, done = 0, pushed = -1, pulled = 0;

    deploy_all(fx);
    g0 = atls_store_generation(atls_mirror_fs(fx->b));
    while (!done) {
        pulled = atls_mirror_sync_step(fx->b, 1, &done, &pushed, err, sizeof(err));
        if (pulled < 0) {
            fail_msg("sync step: %s", err);
        }
        calls++;
        assert_true(calls <= N_CERTS + 1);   /* one certificate a call at least */
    }
    assert_true(calls > 1);
    assert_int_equal(pulled, N_CERTS);
    assert_int_equal(pushed, 0);
    g1 = atls_store_generation(atls_mirror_fs(fx->b));
    /* at most once a call, whatever it pulled */
    assert_true(g1 - g0 <= (uint64_t) calls);
    assert_all_pulled(fx, g0);

    /* a call after done starts a new sync: nothing left to pull */
    assert_int_equal(atls_mirror_sync_step(fx->b, 1000, &done, NULL, err, sizeof(err)), 0);
    while (!done) {
        assert_int_equal(atls_mirror_sync_step(fx->b, 1000, &done, NULL, err, sizeof(err)),
                         0);
    }
}

/* Without a budget: one call, one bump for all. */
static void
test_sync_bumps_once(void **state)
{
    mirrorfx_t *fx = *state;
    uint64_t    g0;
    char        err[512];
    int         done = 0;

    deploy_all(fx);
    g0 = atls_store_generation(atls_mirror_fs(fx->b));
    assert_int_equal(atls_mirror_sync_step(fx->b, 0, &done, NULL, err, sizeof(err)), N_CERTS);
    assert_true(done);
    assert_int_equal(atls_store_generation(atls_mirror_fs(fx->b)), g0 + 1);
    assert_all_pulled(fx, g0);
}

/* A sync dropped midway (the host's connection failed): the next one
 * lists again and completes. */
static void
test_sync_cancelled(void **state)
{
    mirrorfx_t *fx = *state;
    char        err[512];
    int         done = 0, pulled;

    deploy_all(fx);
    pulled = atls_mirror_sync_step(fx->b, 1, &done, NULL, err, sizeof(err));
    assert_true(pulled >= 1);
    atls_mirror_sync_cancel(fx->b);
    mirrorfx_sync_ok(fx->b, N_CERTS - pulled, 0);
    assert_all_pulled(fx, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        MX_TEST(test_sync_in_slices),
        MX_TEST(test_sync_bumps_once),
        MX_TEST(test_sync_cancelled),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
