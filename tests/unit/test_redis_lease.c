/*
 * Leases (redis_lease.c) against a real redis-server: one holder at a time,
 * expiry and another holder taking over, renew and compare-and-delete
 * refusing a stale token, and the fencing counter checked before a deploy.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_redis.h"
#include "support/redisfx.h"

#define RFX_TEST(f) cmocka_unit_test_setup_teardown(f, redisfx_setup, redisfx_teardown)

static atls_redis_t *
open_ok(redisfx_t *fx)
{
    atls_redis_conf_t conf;
    char              err[512];
    atls_redis_t     *c;

    redisfx_conf(fx, &conf);
    c = atls_redis_open_sync(&conf, err, sizeof(err));
    atls_redis_conf_free(&conf);
    if (c == NULL) {
        fail_msg("open: %s", err);
    }
    return c;
}

static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
test_keys_share_a_slot(void **state)
{
    atls_redis_lease_t l;

    (void) state;
    atls_redis_lease_keys("p:", "cert-example.com", &l);
    assert_string_equal(l.lease_key, "p:{example.com}:lease");
    assert_string_equal(l.fence_key, "p:{example.com}:fence");
    atls_redis_lease_keys("p:", "account-x", &l);
    assert_string_equal(l.lease_key, "p:{/locks/account-x}:lease");
    assert_string_equal(l.fence_key, "p:{/locks/account-x}:fence");
}

static void
test_one_holder_then_takeover(void **state)
{
    redisfx_t         *fx = *state;
    atls_redis_t      *a = open_ok(fx), *b = open_ok(fx);
    atls_redis_lease_t la, lb;
    long long          deadline;
    redisReply        *r;
    char               err[512];
    int                rc;

    atls_redis_lease_keys("t:", "cert-example.com", &la);
    lb = la;
    assert_int_equal(atls_redis_lease_acquire(a, &la, 300, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(la.fence, 1);
    assert_int_equal(strlen(la.token), ATLS_REDIS_TOKEN_HEX);
    /* the key holds the token, with a time to live */
    r = redisfx_cmd(fx, "GET", "t:{example.com}:lease", NULL);
    assert_string_equal(r->str, la.token);
    freeReplyObject(r);
    r = redisfx_cmd(fx, "PTTL", "t:{example.com}:lease", NULL);
    assert_true(r->integer > 0 && r->integer <= 300);
    freeReplyObject(r);

    /* another holder is refused while it lasts */
    assert_int_equal(atls_redis_lease_acquire(b, &lb, 300, err, sizeof(err)), ATLS_STORE_BUSY);
    assert_non_null(strstr(err, "t:{example.com}:lease"));
    assert_int_equal(atls_redis_lease_renew(a, &la, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_redis_lease_check(a, &la, err, sizeof(err)), ATLS_STORE_OK);

    /* the holder stops renewing (it died): the lease runs out and b takes it */
    deadline = now_ms() + 5000;
    do {
        rc = atls_redis_lease_acquire(b, &lb, 60000, err, sizeof(err));
        assert_true(rc == ATLS_STORE_OK || rc == ATLS_STORE_BUSY);
        if (rc == ATLS_STORE_BUSY) {
            usleep(20000);
        }
    } while (rc != ATLS_STORE_OK && now_ms() < deadline);
    assert_int_equal(rc, ATLS_STORE_OK);
    assert_int_equal(lb.fence, 2);
    assert_string_not_equal(la.token, lb.token);

    /* a wakes up: it can neither extend nor delete b's lease, and its
     * fence is stale */
    assert_int_equal(atls_redis_lease_renew(a, &la, err, sizeof(err)), ATLS_STORE_BUSY);
    assert_non_null(strstr(err, "lost"));
    assert_int_equal(atls_redis_lease_release(a, &la, err, sizeof(err)), ATLS_STORE_BUSY);
    r = redisfx_cmd(fx, "GET", "t:{example.com}:lease", NULL);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, lb.token);   /* untouched */
    freeReplyObject(r);
    assert_int_equal(atls_redis_lease_check(a, &la, err, sizeof(err)), ATLS_STORE_BUSY);
    assert_non_null(strstr(err, "stale"));
    assert_int_equal(atls_redis_lease_check(b, &lb, err, sizeof(err)), ATLS_STORE_OK);

    /* b lets go: compare-and-delete */
    assert_int_equal(atls_redis_lease_release(b, &lb, err, sizeof(err)), ATLS_STORE_OK);
    r = redisfx_cmd(fx, "EXISTS", "t:{example.com}:lease", NULL);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    assert_int_equal(atls_redis_lease_check(b, &lb, err, sizeof(err)), ATLS_STORE_BUSY);
    atls_redis_free(a);
    atls_redis_free(b);
}

/* A holder that keeps its lease but whose fence was overtaken (the lease
 * key was lost and re-taken in between, e.g. Redis failed over without
 * it) is stale too: the fence alone decides. */
static void
test_fence_alone_makes_stale(void **state)
{
    redisfx_t         *fx = *state;
    atls_redis_t      *a = open_ok(fx);
    atls_redis_lease_t la;
    redisReply        *r;
    char               err[512];

    atls_redis_lease_keys("t:", "cert-f.example", &la);
    assert_int_equal(atls_redis_lease_acquire(a, &la, 60000, err, sizeof(err)), ATLS_STORE_OK);
    r = redisfx_cmd(fx, "INCR", "t:{f.example}:fence", NULL);
    freeReplyObject(r);
    assert_int_equal(atls_redis_lease_check(a, &la, err, sizeof(err)), ATLS_STORE_BUSY);
    /* the scripts survive SCRIPT FLUSH (EVALSHA falls back to EVAL) */
    r = redisfx_cmd(fx, "SCRIPT", "FLUSH", NULL);
    freeReplyObject(r);
    assert_int_equal(atls_redis_lease_renew(a, &la, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_redis_lease_release(a, &la, err, sizeof(err)), ATLS_STORE_OK);
    atls_redis_free(a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_share_a_slot),
        RFX_TEST(test_one_holder_then_takeover),
        RFX_TEST(test_fence_alone_makes_stale),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
