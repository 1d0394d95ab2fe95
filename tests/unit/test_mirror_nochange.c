/*
 * A write that changes nothing moves no generation (issue 12's
 * "ping-pong"): two nodes that each save a certificate's meta as they
 * found it after pulling it must not bump each other's generations
 * without end.  A real change (a deploy) still bumps once.
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
#include "atls_mirror.h"
#include "support/mirrorfx.h"

typedef mirrorfx_t fx_t;
#define MX_TEST(f) cmocka_unit_test_setup_teardown(f, mirrorfx_setup, mirrorfx_teardown)
#define ROUNDS     20

/* Each node saves, after every pull, the meta it pulled: the generation
 * stays where the deploy put it and no node has anything to pull. */
static void
test_same_meta_saved_back_and_forth(void **state)
{
    fx_t         *fx = *state;
    atls_store_t *sa = atls_mirror_store(fx->a), *sb = atls_mirror_store(fx->b);
    int           i;

    mirrorfx_deploy(fx->a, "pp.example", 1);
    mirrorfx_sync_ok(fx->b, 1, 0);
    assert_int_equal(mirrorfx_redis_gen(fx->a, "pp.example"), 1);
    for (i = 0; i < ROUNDS; i++) {
        mirrorfx_write_meta(sb, "pp.example", 1);
        mirrorfx_sync_ok(fx->a, 0, 0);
        mirrorfx_write_meta(sa, "pp.example", 1);
        mirrorfx_sync_ok(fx->b, 0, 0);
    }
    assert_int_equal(mirrorfx_redis_gen(fx->a, "pp.example"), 1);
    mirrorfx_assert_same_cert(fx->dir_a, fx->dir_b, "pp.example");

    /* a change is still one: written on B, pulled by A */
    mirrorfx_write_meta(sb, "pp.example", 2);
    assert_int_equal(mirrorfx_redis_gen(fx->a, "pp.example"), 2);
    mirrorfx_sync_ok(fx->a, 1, 0);
    mirrorfx_assert_same_cert(fx->dir_a, fx->dir_b, "pp.example");
}

/* Under the certificate's lease: an unchanged save is no deploy, a
 * changed one bumps once at unlock. */
static void
test_same_meta_under_lease(void **state)
{
    fx_t              *fx = *state;
    atls_store_t      *sb = atls_mirror_store(fx->b);
    atls_store_lock_t *lk = NULL;
    char               err[512];
    int                i;

    mirrorfx_deploy(fx->a, "lease.example", 1);
    mirrorfx_sync_ok(fx->b, 1, 0);
    for (i = 0; i < ROUNDS; i++) {
        assert_int_equal(atls_store_lock_cert(sb, "lease.example", 0, &lk, err, sizeof(err)),
                         ATLS_STORE_OK);
        mirrorfx_write_meta(sb, "lease.example", 1);
        atls_store_unlock(sb, lk);
    }
    assert_int_equal(mirrorfx_redis_gen(fx->a, "lease.example"), 1);
    mirrorfx_sync_ok(fx->a, 0, 0);

    assert_int_equal(atls_store_lock_cert(sb, "lease.example", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    mirrorfx_write_meta(sb, "lease.example", 3);
    atls_store_unlock(sb, lk);
    assert_int_equal(mirrorfx_redis_gen(fx->a, "lease.example"), 2);
    mirrorfx_sync_ok(fx->a, 1, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        MX_TEST(test_same_meta_saved_back_and_forth),
        MX_TEST(test_same_meta_under_lease),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
