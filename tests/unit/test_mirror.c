/*
 * Two nodes' mirrors (atls_mirror.h) on one real redis-server: deploys
 * reaching the other node by announcement and by the sync at start,
 * leases and fencing across nodes, Redis stopped (before and in the middle
 * of a sync) and back, repopulation after FLUSHALL, the subscriber's
 * reconnection.  The store side is in test_mirror_store.c.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_mirror.h"
#include "support/mirrorfx.h"
#include "support/testpki.h"

typedef mirrorfx_t fx_t;
#define WAIT_MS MIRRORFX_WAIT_MS
#define MX_TEST(f) cmocka_unit_test_setup_teardown(f, mirrorfx_setup, mirrorfx_teardown)

/* ---- tests ------------------------------------------------------------------------ */

/* A deploy on A reaches B through the announcement alone (no sync call). */
static void
test_announcement_reaches_other_node(void **state)
{
    fx_t     *fx = *state;
    char      err[512];
    long long deadline;
    int       serial;

    assert_int_equal(atls_mirror_listen(fx->b, err, sizeof(err)), 0);
    deadline = mirrorfx_now_ms() + WAIT_MS;
    while (!atls_mirror_listening(fx->b) && mirrorfx_now_ms() < deadline) {
        assert_true(atls_mirror_poll(fx->b, 100, err, sizeof(err)) >= 0);
    }
    assert_true(atls_mirror_listening(fx->b));
    for (serial = 1; serial <= 2; serial++) {
        uint64_t workers_saw = atls_store_generation(atls_mirror_fs(fx->b));

        mirrorfx_deploy(fx->a, "example.com", serial);
        assert_int_equal(atls_mirror_generation(fx->a, "example.com"), serial);
        assert_int_equal(mirrorfx_redis_gen(fx->a, "example.com"), serial);
        deadline = mirrorfx_now_ms() + WAIT_MS;
        while (atls_mirror_generation(fx->b, "example.com") < (uint64_t) serial
               && mirrorfx_now_ms() < deadline)
        {
            if (atls_mirror_poll(fx->b, 100, err, sizeof(err)) < 0) {
                fail_msg("poll: %s", err);
            }
        }
        assert_int_equal(atls_mirror_generation(fx->b, "example.com"), serial);
        mirrorfx_assert_same_cert(fx->dir_a, fx->dir_b, "example.com");
        /* B's workers, watching their mirror, load it again */
        assert_true(atls_store_generation(atls_mirror_fs(fx->b)) > workers_saw);
    }
}

/* A node that was down catches up at start from the generations. */
static void
test_sync_at_start(void **state)
{
    fx_t          *fx = *state;
    atls_mirror_t *c;
    char           dir_c[200];

    mirrorfx_deploy(fx->a, "a.example", 1);
    mirrorfx_deploy(fx->a, "b.example", 1);
    mirrorfx_deploy(fx->a, "b.example", 2);
    mirrorfx_deploy(fx->a, "c.example", 1);
    snprintf(dir_c, sizeof(dir_c), "%s/node-c", fx->rfx.dir);
    c = mirrorfx_node(fx, dir_c);
    mirrorfx_sync_ok(c, 3, 0);
    assert_int_equal(atls_mirror_generation(c, "b.example"), 2);
    mirrorfx_assert_same_cert(fx->dir_a, dir_c, "a.example");
    mirrorfx_assert_same_cert(fx->dir_a, dir_c, "b.example");
    mirrorfx_assert_same_cert(fx->dir_a, dir_c, "c.example");
    mirrorfx_sync_ok(c, 0, 0);    /* current: nothing moves */
    mirrorfx_sync_ok(fx->a, 0, 0);
    atls_mirror_free(c);
}

/* One order per certificate: A's lease blocks B; when A dies its lease
 * runs out, B takes over, and A's late write is refused everywhere. */
static void
test_lease_fencing_across_nodes(void **state)
{
    fx_t               *fx = *state;
    atls_store_t       *sa = atls_mirror_store(fx->a), *sb = atls_mirror_store(fx->b);
    atls_store_lock_t  *la = NULL, *lb = NULL;
    atls_redis_lease_t  keys;
    redisReply         *r;
    char                err[512], *late = mirrorfx_pem(99), *before, *now_b;
    long long           deadline;
    int                 rc;

    mirrorfx_deploy(fx->a, "example.com", 1);
    mirrorfx_sync_ok(fx->b, 1, 0);
    assert_int_equal(atls_store_lock_cert(sa, "example.com", 0, &la, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_lock_cert(sb, "example.com", 0, &lb, err, sizeof(err)),
                     ATLS_STORE_BUSY);
    assert_int_equal(atls_mirror_renew(fx->a), 0);   /* alive: still A's */
    /* A dies: nobody renews; the lease's time runs out (shortened here) */
    atls_redis_lease_keys("t:", "cert-example.com", &keys);
    r = redisfx_cmd(&fx->rfx, "PEXPIRE", keys.lease_key, "50", NULL);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    deadline = mirrorfx_now_ms() + WAIT_MS;
    do {
        rc = atls_store_lock_cert(sb, "example.com", 0, &lb, err, sizeof(err));
        if (rc == ATLS_STORE_BUSY) {
            usleep(20000);
        }
    } while (rc == ATLS_STORE_BUSY && mirrorfx_now_ms() < deadline);
    assert_int_equal(rc, ATLS_STORE_OK);
    /* B finishes the order */
    before = mirrorfx_pem(2);
    assert_int_equal(sb->ops->put(sb, "certs/example.com/ec256.pem", before, strlen(before),
                                  1, err, sizeof(err)), ATLS_STORE_OK);
    mirrorfx_write_meta(sb, "example.com", 2);
    atls_store_unlock(sb, lb);
    assert_int_equal(mirrorfx_redis_gen(fx->b, "example.com"), 2);
    /* A wakes up and deploys late: refused in Redis, its mirror untouched */
    assert_int_equal(atls_mirror_renew(fx->a), 1);   /* it finds its lease lost */
    rc = sa->ops->put(sa, "certs/example.com/ec256.pem", late, strlen(late), 1,
                      err, sizeof(err));
    assert_int_equal(rc, ATLS_STORE_BUSY);
    assert_non_null(strstr(err, "stale"));
    atls_store_unlock(sa, la);
    assert_int_equal(mirrorfx_redis_gen(fx->a, "example.com"), 2);   /* nothing announced */
    now_b = mirrorfx_file(fx->dir_b, "example.com", "ec256.pem");
    assert_string_equal(now_b, before);
    free(now_b);
    mirrorfx_sync_ok(fx->a, 1, 0);
    mirrorfx_assert_same_cert(fx->dir_b, fx->dir_a, "example.com");
    free(before);
    free(late);
}

/* Redis gone: sync says so and leaves the mirror alone; the node still
 * reads its certificates; after Redis returns, sync catches up. */
static void
test_redis_down_then_back(void **state)
{
    fx_t         *fx = *state;
    atls_store_t *sb = atls_mirror_store(fx->b);
    char          err[512], *pem_before, *meta_before, *pem_after, *meta_after, *data = NULL;
    redisReply   *r;

    mirrorfx_deploy(fx->a, "example.com", 1);
    mirrorfx_sync_ok(fx->b, 1, 0);
    mirrorfx_deploy(fx->a, "example.com", 2);
    r = redisfx_cmd(&fx->rfx, "SAVE", NULL);   /* Redis comes back with its data */
    freeReplyObject(r);
    pem_before = mirrorfx_file(fx->dir_b, "example.com", "ec256.pem");
    meta_before = mirrorfx_file(fx->dir_b, "example.com", "meta.json");
    redisfx_kill(&fx->rfx);
    /* B restarts while Redis is down: it opens, and serves its mirror */
    atls_mirror_free(fx->b);
    fx->b = mirrorfx_node(fx, fx->dir_b);
    sb = atls_mirror_store(fx->b);
    assert_int_equal(atls_mirror_listen(fx->b, err, sizeof(err)) == 0
                     ? atls_mirror_poll(fx->b, 1000, err, sizeof(err)) : -1, -1);

    assert_int_equal(atls_mirror_sync(fx->b, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "connect"));
    assert_non_null(strstr(err, "redis://"));
    pem_after = mirrorfx_file(fx->dir_b, "example.com", "ec256.pem");
    meta_after = mirrorfx_file(fx->dir_b, "example.com", "meta.json");
    assert_string_equal(pem_after, pem_before);
    assert_string_equal(meta_after, meta_before);
    assert_int_equal(atls_mirror_generation(fx->b, "example.com"), 1);
    /* the scheduler still knows its certificates */
    assert_int_equal(sb->ops->get(sb, "certs/example.com/meta.json", &data, NULL,
                                  err, sizeof(err)), ATLS_STORE_OK);
    assert_string_equal(data, meta_before);
    free(data);
    free(pem_after);
    free(meta_after);

    assert_int_equal(redisfx_restart(&fx->rfx), 0);
    mirrorfx_sync_ok(fx->b, 1, 0);
    assert_int_equal(atls_mirror_generation(fx->b, "example.com"), 2);
    mirrorfx_assert_same_cert(fx->dir_a, fx->dir_b, "example.com");
    free(pem_before);
    free(meta_before);
}

/* Redis dies in the middle of a sync: right after the first certificate
 * was pulled (the log line that says so kills it). */
static redisfx_t *kill_on_pull;

static void
kill_after_first_pull(void *ctx, atls_log_level_t level, const char *msg)
{
    (void) ctx;
    (void) level;
    if (kill_on_pull != NULL && strstr(msg, "from Redis") != NULL) {
        redisfx_kill(kill_on_pull);
        kill_on_pull = NULL;
    }
}

static void
test_redis_dies_mid_sync(void **state)
{
    fx_t       *fx = *state;
    char        err[512], *before[3], *now;
    const char *ids[] = { "a.example", "b.example", "c.example" };
    redisReply *r;
    size_t      i;

    for (i = 0; i < 3; i++) {
        mirrorfx_deploy(fx->a, ids[i], 1);
    }
    mirrorfx_sync_ok(fx->b, 3, 0);
    for (i = 0; i < 3; i++) {
        mirrorfx_deploy(fx->a, ids[i], 2);
        before[i] = mirrorfx_file(fx->dir_b, ids[i], "ec256.pem");
    }
    r = redisfx_cmd(&fx->rfx, "SAVE", NULL);
    freeReplyObject(r);

    kill_on_pull = &fx->rfx;
    atls_log_set(kill_after_first_pull, NULL, ATLS_LOG_INFO);
    assert_int_equal(atls_mirror_sync(fx->b, NULL, err, sizeof(err)), -1);
    atls_log_set(NULL, NULL, ATLS_LOG_INFO);
    assert_null(kill_on_pull);   /* it did die midway */
    assert_non_null(strstr(err, "redis://"));
    /* the first certificate is whole at 2, the others whole at 1 */
    mirrorfx_assert_same_cert(fx->dir_a, fx->dir_b, "a.example");
    assert_int_equal(atls_mirror_generation(fx->b, "a.example"), 2);
    for (i = 1; i < 3; i++) {
        now = mirrorfx_file(fx->dir_b, ids[i], "ec256.pem");
        assert_string_equal(now, before[i]);
        free(now);
        assert_int_equal(atls_mirror_generation(fx->b, ids[i]), 1);
    }
    assert_int_equal(redisfx_restart(&fx->rfx), 0);
    mirrorfx_sync_ok(fx->b, 2, 0);
    for (i = 0; i < 3; i++) {
        mirrorfx_assert_same_cert(fx->dir_a, fx->dir_b, ids[i]);
        free(before[i]);
    }
}

/* A certificate whose entries fail midway (a tampered value after a good
 * one) is not mirrored at all: no file of it changes, the error names the
 * Redis key, and the other certificates go on. */
static void
test_failed_pull_leaves_mirror_whole(void **state)
{
    fx_t       *fx = *state;
    char        err[512], *pem_before, *meta_before, *pem_now, *meta_now;

    mirrorfx_deploy(fx->a, "example.com", 1);
    mirrorfx_deploy(fx->a, "other.example", 1);
    mirrorfx_sync_ok(fx->b, 2, 0);
    pem_before = mirrorfx_file(fx->dir_b, "example.com", "ec256.pem");
    meta_before = mirrorfx_file(fx->dir_b, "example.com", "meta.json");
    mirrorfx_deploy(fx->a, "example.com", 2);
    mirrorfx_deploy(fx->a, "other.example", 2);
    /* ec256.pem is read first and is fine; meta.json is damaged */
    redisfx_set_raw(&fx->rfx, "t:{example.com}:v:certs/example.com/meta.json", "pXX{", 4);

    assert_int_equal(atls_mirror_sync_one(fx->b, "example.com", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "meta.json"));
    pem_now = mirrorfx_file(fx->dir_b, "example.com", "ec256.pem");
    meta_now = mirrorfx_file(fx->dir_b, "example.com", "meta.json");
    assert_string_equal(pem_now, pem_before);
    assert_string_equal(meta_now, meta_before);
    assert_int_equal(atls_mirror_generation(fx->b, "example.com"), 1);
    mirrorfx_sync_ok(fx->b, 1, 0);   /* other.example still comes */
    mirrorfx_assert_same_cert(fx->dir_a, fx->dir_b, "other.example");
    free(pem_now);
    free(meta_now);
    free(pem_before);
    free(meta_before);
}

/* Redis restarted empty: the mirrors fill it again, the newest wins (B
 * was behind on one certificate and pushes first), no entry is lost. */
static void
test_repopulate_after_flush(void **state)
{
    fx_t          *fx = *state;
    atls_store_t  *sa = atls_mirror_store(fx->a);
    atls_mirror_t *c;
    char           err[512], dir_c[200], *data = NULL;
    redisReply    *r;
    size_t         len;

    mirrorfx_deploy(fx->a, "x.example", 1);
    mirrorfx_deploy(fx->a, "y.example", 1);
    assert_int_equal(sa->ops->put(sa, "accounts/ca_one/account.json", "{\"url\":\"u\"}", 11,
                                  0, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(sa->ops->put(sa, "accounts/ca_one/account.key", "secret key", 10,
                                  1, err, sizeof(err)), ATLS_STORE_OK);
    mirrorfx_sync_ok(fx->b, 2, 0);
    mirrorfx_deploy(fx->a, "x.example", 2);   /* B does not see this one */
    r = redisfx_cmd(&fx->rfx, "FLUSHALL", NULL);
    freeReplyObject(r);

    mirrorfx_sync_ok(fx->b, 0, 2);            /* B first: its x.example is older */
    assert_int_equal(mirrorfx_redis_gen(fx->b, "x.example"), 1);
    mirrorfx_sync_ok(fx->a, 0, 1);            /* A's x.example is newer: it wins */
    assert_int_equal(mirrorfx_redis_gen(fx->a, "x.example"), 2);
    assert_int_equal(mirrorfx_redis_gen(fx->a, "y.example"), 1);
    mirrorfx_sync_ok(fx->b, 1, 0);            /* and B takes it */
    mirrorfx_assert_same_cert(fx->dir_a, fx->dir_b, "x.example");

    /* a new node gets everything back from Redis */
    snprintf(dir_c, sizeof(dir_c), "%s/node-c", fx->rfx.dir);
    c = mirrorfx_node(fx, dir_c);
    mirrorfx_sync_ok(c, 2, 0);
    mirrorfx_assert_same_cert(fx->dir_a, dir_c, "x.example");
    mirrorfx_assert_same_cert(fx->dir_a, dir_c, "y.example");
    assert_int_equal(atls_mirror_fs(c)->ops->get(atls_mirror_fs(c), "accounts/ca_one/account.key",
                                                 &data, &len, err, sizeof(err)), ATLS_STORE_OK);
    assert_string_equal(data, "secret key");
    free(data);
    r = redisfx_cmd(&fx->rfx, "EXISTS", "t:{/cluster}:gen", NULL);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    atls_mirror_free(c);
}

/* The subscriber's connection fails with Redis: the error says so; the
 * host listens again and syncs, and announcements flow again.  A message
 * that is not an announcement is ignored. */
static void
test_subscriber_reconnects(void **state)
{
    fx_t       *fx = *state;
    char        err[512] = "";
    long long   deadline;
    redisReply *r;
    int         rc = 0;

    assert_int_equal(atls_mirror_listen(fx->b, err, sizeof(err)), 0);
    deadline = mirrorfx_now_ms() + WAIT_MS;
    while (!atls_mirror_listening(fx->b) && mirrorfx_now_ms() < deadline) {
        assert_true(atls_mirror_poll(fx->b, 100, err, sizeof(err)) >= 0);
    }
    r = redisfx_cmd(&fx->rfx, "PUBLISH", "t:gen", "junk", NULL);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    assert_true(atls_mirror_poll(fx->b, 500, err, sizeof(err)) >= 0);
    mirrorfx_deploy(fx->a, "example.com", 1);
    r = redisfx_cmd(&fx->rfx, "SAVE", NULL);
    freeReplyObject(r);
    redisfx_kill(&fx->rfx);
    deadline = mirrorfx_now_ms() + WAIT_MS;
    while (rc >= 0 && mirrorfx_now_ms() < deadline) {
        rc = atls_mirror_poll(fx->b, 100, err, sizeof(err));
    }
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "closed"));
    assert_false(atls_mirror_listening(fx->b));

    assert_int_equal(redisfx_restart(&fx->rfx), 0);
    assert_int_equal(atls_mirror_listen(fx->b, err, sizeof(err)), 0);
    mirrorfx_sync_ok(fx->b, 1, 0);   /* what was announced while it was away */
    deadline = mirrorfx_now_ms() + WAIT_MS;
    while (!atls_mirror_listening(fx->b) && mirrorfx_now_ms() < deadline) {
        assert_true(atls_mirror_poll(fx->b, 100, err, sizeof(err)) >= 0);
    }
    mirrorfx_deploy(fx->a, "example.com", 2);
    deadline = mirrorfx_now_ms() + WAIT_MS;
    while (atls_mirror_generation(fx->b, "example.com") < 2 && mirrorfx_now_ms() < deadline) {
        assert_true(atls_mirror_poll(fx->b, 100, err, sizeof(err)) >= 0);
    }
    mirrorfx_assert_same_cert(fx->dir_a, fx->dir_b, "example.com");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        MX_TEST(test_announcement_reaches_other_node),
        MX_TEST(test_sync_at_start),
        MX_TEST(test_lease_fencing_across_nodes),
        MX_TEST(test_redis_down_then_back),
        MX_TEST(test_redis_dies_mid_sync),
        MX_TEST(test_failed_pull_leaves_mirror_whole),
        MX_TEST(test_repopulate_after_flush),
        MX_TEST(test_subscriber_reconnects),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
