/*
 * A write that changes nothing moves no generation (issue 12's
 * "ping-pong"): two nodes that each save a certificate's meta as they
 * found it after pulling it must not bump each other's generations
 * without end, nor rewrite it for settings that are each node's own (its
 * CA trust file, hook, challenge ports).  A real change still bumps once.
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
#include "atls_job.h"
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

/* Node n's configured issuer: the same CA and certificate settings, its
 * own trust file and challenge port (as two Apache nodes have). */
static void
node_issuer(atls_issuer_t *is, int n)
{
    static char ca[2][64];

    memset(is, 0, sizeof(*is));
    snprintf(ca[n], sizeof(ca[n]), "/srv/node%d/pebble-ca.pem", n);
    is->directory = "https://127.0.0.1:14000/dir";
    is->ca_file = ca[n];
    is->challenge = ATLS_CHAL_HTTP01;
    is->http_port = 5000 + n;
    is->n_key_types = 1;
    is->key_types[0] = ATLS_KEY_EC256;
}

/* Each node's scheduler ensures the certificate after every pull (what a
 * pulled change makes it do): node-local settings that differ must not
 * rewrite the shared meta, or the nodes bump each other without end. */
static void
test_ensure_node_local_settings(void **state)
{
    fx_t             *fx = *state;
    atls_store_t     *st[2] = { atls_mirror_store(fx->a), atls_mirror_store(fx->b) };
    atls_mirror_t    *node[2] = { fx->a, fx->b };
    const char *const names[] = { "ensure.example" };
    atls_issuer_t     is;
    char              err[512];
    int               i;
    uint64_t          first;

    node_issuer(&is, 0);
    assert_int_equal(atls_job_ensure(st[0], names, 1, &is, NULL, err, sizeof(err)), 0);
    first = mirrorfx_redis_gen(fx->a, "ensure.example");
    for (i = 1; i <= ROUNDS; i++) {
        mirrorfx_sync_ok(node[i % 2], -1, 0);
        node_issuer(&is, i % 2);
        assert_int_equal(atls_job_ensure(st[i % 2], names, 1, &is, NULL, err, sizeof(err)),
                         0);
    }
    assert_int_equal(mirrorfx_redis_gen(fx->a, "ensure.example"), first);

    /* a certificate setting still is a change, recorded once */
    node_issuer(&is, 1);
    is.key_types[0] = ATLS_KEY_RSA2048;
    assert_int_equal(atls_job_ensure(st[1], names, 1, &is, NULL, err, sizeof(err)), 0);
    assert_int_equal(mirrorfx_redis_gen(fx->a, "ensure.example"), first + 1);
    mirrorfx_sync_ok(fx->a, 1, 0);
    assert_int_equal(atls_job_ensure(st[0], names, 1, &is, NULL, err, sizeof(err)), 0);
    assert_int_equal(mirrorfx_redis_gen(fx->a, "ensure.example"), first + 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        MX_TEST(test_same_meta_saved_back_and_forth),
        MX_TEST(test_same_meta_under_lease),
        MX_TEST(test_ensure_node_local_settings),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
