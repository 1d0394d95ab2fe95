/*
 * The cluster's members and challenges (atls_mirror.h, mirror_cluster.c)
 * with two nodes' mirrors on one real redis-server: a challenge published
 * on A reaches B's responder through the announcement, and is "ready" only
 * once B acked it; expired members are not waited for; a node that joins
 * late loads what is published; withdrawals reach B; tls-alpn-01 answers
 * are sealed in Redis; what Redis holds is checked before use.
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
#include <cmocka.h>
#include "atls_mirror.h"
#include "support/logcap.h"
#include "support/mirrorfx.h"

typedef mirrorfx_t fx_t;
#define WAIT_MS   MIRRORFX_WAIT_MS
#define TOKEN     "tok_A-1"
#define KEYAUTHZ  TOKEN ".thumbprint_0-9"
#define ALPN_NAME "alpn.example"
#define MAX_CHAL  16

/* ---- a node's responder -------------------------------------------------------- */

typedef struct {
    struct {
        atls_challenge_type_t t;
        char                  key[256];
        char                 *data;
        size_t                len;
    }      v[MAX_CHAL];
    size_t n;
    size_t adds, removes;
} resp_t;

static resp_t resp_a, resp_b;

static int
responder(void *ctx, int add, atls_challenge_type_t t, const char *key, const char *data,
          size_t len, char *why, size_t whylen)
{
    resp_t *r = ctx;
    size_t  i;

    (void) why;
    (void) whylen;
    for (i = 0; i < r->n; i++) {
        if (r->v[i].t == t && strcmp(r->v[i].key, key) == 0) {
            free(r->v[i].data);
            r->v[i] = r->v[--r->n];
            break;
        }
    }
    if (!add) {
        r->removes++;
        return 0;
    }
    assert_true(r->n < MAX_CHAL);
    r->v[r->n].t = t;
    snprintf(r->v[r->n].key, sizeof(r->v[r->n].key), "%s", key);
    r->v[r->n].data = malloc(len + 1);
    memcpy(r->v[r->n].data, data, len);
    r->v[r->n].data[len] = '\0';
    r->v[r->n].len = len;
    r->n++;
    r->adds++;
    return 0;
}

/* What r answers for (t, key), or NULL. */
static const char *
answer(const resp_t *r, atls_challenge_type_t t, const char *key)
{
    size_t i;

    for (i = 0; i < r->n; i++) {
        if (r->v[i].t == t && strcmp(r->v[i].key, key) == 0) {
            return r->v[i].data;
        }
    }
    return NULL;
}

static void
resp_clear(resp_t *r)
{
    size_t i;

    for (i = 0; i < r->n; i++) {
        free(r->v[i].data);
    }
    memset(r, 0, sizeof(*r));
}

static int
setup(void **state)
{
    fx_t *fx;

    logcap_start(ATLS_LOG_DEBUG);
    if (mirrorfx_setup(state) != 0) {
        return -1;
    }
    fx = *state;
    memset(&resp_a, 0, sizeof(resp_a));
    memset(&resp_b, 0, sizeof(resp_b));
    atls_mirror_set_responder(fx->a, responder, &resp_a);
    atls_mirror_set_responder(fx->b, responder, &resp_b);
    return 0;
}

static int
teardown(void **state)
{
    mirrorfx_teardown(state);
    resp_clear(&resp_a);
    resp_clear(&resp_b);
    logcap_stop();
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------ */

static void
join(atls_mirror_t *m)
{
    char err[512];

    if (atls_mirror_join(m, err, sizeof(err)) != 0) {
        fail_msg("join: %s", err);
    }
}

static void
listen_ready(atls_mirror_t *m)
{
    char      err[512];
    long long deadline = mirrorfx_now_ms() + WAIT_MS;

    assert_int_equal(atls_mirror_listen(m, err, sizeof(err)), 0);
    while (!atls_mirror_listening(m) && mirrorfx_now_ms() < deadline) {
        assert_true(atls_mirror_poll(m, 100, err, sizeof(err)) >= 0);
    }
    assert_true(atls_mirror_listening(m));
}

static void
publish(atls_mirror_t *m, atls_challenge_type_t t, const char *key, const char *data)
{
    char err[512];

    if (atls_mirror_challenge_publish(m, t, key, data, strlen(data), err, sizeof(err)) != 0) {
        fail_msg("publish %s: %s", key, err);
    }
}

/* Polls m until r answers (t, key) (want 1) or no longer does (want 0). */
static void
poll_until(atls_mirror_t *m, const resp_t *r, atls_challenge_type_t t, const char *key,
           int want)
{
    char      err[512];
    long long deadline = mirrorfx_now_ms() + WAIT_MS;

    while ((answer(r, t, key) != NULL) != want && mirrorfx_now_ms() < deadline) {
        if (atls_mirror_poll(m, 100, err, sizeof(err)) < 0) {
            fail_msg("poll: %s", err);
        }
    }
    assert_int_equal(answer(r, t, key) != NULL, want);
}

static int
ready(atls_mirror_t *m, atls_challenge_type_t t, const char *key, char **missing)
{
    char err[512];
    int  rc = atls_mirror_challenge_ready(m, t, key, missing, err, sizeof(err));

    if (rc < 0) {
        fail_msg("ready: %s", err);
    }
    return rc;
}

/* A member entered by hand with its expiry ms from now (Redis's clock is
 * this machine's). */
static void
member_set(fx_t *fx, const char *id, long long from_now_ms)
{
    struct timespec ts;
    char            score[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(score, sizeof(score), "%lld",
             (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + from_now_ms);
    freeReplyObject(redisfx_cmd(&fx->rfx, "ZADD", "t:{/cluster}:members", score, id, NULL));
}

/* ---- the tests ------------------------------------------------------------------------ */

static void
test_publish_reaches_other_node_ready_after_ack(void **state)
{
    fx_t *fx = *state;
    char *missing = NULL;

    join(fx->a);
    join(fx->b);
    listen_ready(fx->b);
    publish(fx->a, ATLS_CHAL_HTTP01, TOKEN, KEYAUTHZ);
    assert_string_equal(answer(&resp_a, ATLS_CHAL_HTTP01, TOKEN), KEYAUTHZ);

    /* B has not read the announcement yet: not ready, and B is named */
    assert_int_equal(ready(fx->a, ATLS_CHAL_HTTP01, TOKEN, &missing), 0);
    assert_non_null(missing);
    assert_string_equal(missing, atls_mirror_node_id(fx->b));
    free(missing);

    poll_until(fx->b, &resp_b, ATLS_CHAL_HTTP01, TOKEN, 1);
    assert_string_equal(answer(&resp_b, ATLS_CHAL_HTTP01, TOKEN), KEYAUTHZ);
    missing = (char *) "x";
    assert_int_equal(ready(fx->a, ATLS_CHAL_HTTP01, TOKEN, &missing), 1);
    assert_null(missing);
    assert_int_equal(ready(fx->b, ATLS_CHAL_HTTP01, TOKEN, NULL), 1);
}

static void
test_expired_member_not_waited_for(void **state)
{
    fx_t   *fx = *state;
    char  **ids = NULL, *missing = NULL, err[512];
    size_t  n = 0, i;

    join(fx->a);
    member_set(fx, "ghost", -1000);        /* its heartbeat ran out */
    member_set(fx, "slow", 60000);         /* live, never acks */
    publish(fx->a, ATLS_CHAL_HTTP01, TOKEN, KEYAUTHZ);
    assert_int_equal(ready(fx->a, ATLS_CHAL_HTTP01, TOKEN, &missing), 0);
    assert_string_equal(missing, "slow");
    free(missing);

    assert_int_equal(atls_mirror_members(fx->a, &ids, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    for (i = 0; i < n; i++) {
        assert_true(strcmp(ids[i], "slow") == 0 || strcmp(ids[i], atls_mirror_node_id(fx->a)) == 0);
        free(ids[i]);
    }
    free(ids);

    member_set(fx, "slow", -1);            /* it died: no longer waited for */
    assert_int_equal(ready(fx->a, ATLS_CHAL_HTTP01, TOKEN, NULL), 1);

    /* a clean leave is at once */
    member_set(fx, "slow", 60000);
    assert_int_equal(ready(fx->a, ATLS_CHAL_HTTP01, TOKEN, NULL), 0);
    freeReplyObject(redisfx_cmd(&fx->rfx, "ZREM", "t:{/cluster}:members", "slow", NULL));
    assert_int_equal(ready(fx->a, ATLS_CHAL_HTTP01, TOKEN, NULL), 1);
    atls_mirror_leave(fx->a);
    assert_int_equal(atls_mirror_members(fx->a, &ids, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    free(ids);
}

static void
test_late_joiner_loads_at_join(void **state)
{
    fx_t *fx = *state;
    char *pem = mirrorfx_pem(7);

    join(fx->a);
    publish(fx->a, ATLS_CHAL_HTTP01, TOKEN, KEYAUTHZ);
    publish(fx->a, ATLS_CHAL_TLSALPN01, ALPN_NAME, pem);
    assert_null(answer(&resp_b, ATLS_CHAL_HTTP01, TOKEN));

    join(fx->b);
    assert_string_equal(answer(&resp_b, ATLS_CHAL_HTTP01, TOKEN), KEYAUTHZ);
    assert_string_equal(answer(&resp_b, ATLS_CHAL_TLSALPN01, ALPN_NAME), pem);
    assert_int_equal(ready(fx->a, ATLS_CHAL_HTTP01, TOKEN, NULL), 1);
    assert_int_equal(ready(fx->a, ATLS_CHAL_TLSALPN01, ALPN_NAME, NULL), 1);

    /* a heartbeat does not load again */
    join(fx->b);
    assert_int_equal(resp_b.adds, 2);
    free(pem);
}

static void
test_withdraw_reaches_other_node(void **state)
{
    fx_t       *fx = *state;
    redisReply *r;

    join(fx->a);
    join(fx->b);
    listen_ready(fx->b);
    publish(fx->a, ATLS_CHAL_HTTP01, TOKEN, KEYAUTHZ);
    poll_until(fx->b, &resp_b, ATLS_CHAL_HTTP01, TOKEN, 1);

    atls_mirror_challenge_withdraw(fx->a, ATLS_CHAL_HTTP01, TOKEN);
    assert_null(answer(&resp_a, ATLS_CHAL_HTTP01, TOKEN));
    poll_until(fx->b, &resp_b, ATLS_CHAL_HTTP01, TOKEN, 0);
    r = redisfx_cmd(&fx->rfx, "EXISTS", "t:{/chal}:http-01:" TOKEN,
                    "t:{/chal}:ack:http-01:" TOKEN, NULL);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    r = redisfx_cmd(&fx->rfx, "SCARD", "t:{/chal}:index", NULL);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
}

static void
test_tls_alpn_answer_sealed(void **state)
{
    fx_t       *fx = *state;
    char       *pem = mirrorfx_pem(3);
    redisReply *r;

    join(fx->a);
    publish(fx->a, ATLS_CHAL_TLSALPN01, ALPN_NAME, pem);
    r = redisfx_get_raw(&fx->rfx, "t:{/chal}:tls-alpn-01:" ALPN_NAME);
    assert_non_null(r);
    assert_int_equal((unsigned char) r->str[0], ATLS_REDIS_SEAL_VERSION);
    assert_null(memmem(r->str, r->len, "PRIVATE KEY", 11));
    assert_null(memmem(r->str, r->len, "BEGIN", 5));
    freeReplyObject(r);
    /* the key authorisation of http-01 is public: clear */
    publish(fx->a, ATLS_CHAL_HTTP01, TOKEN, KEYAUTHZ);
    r = redisfx_get_raw(&fx->rfx, "t:{/chal}:http-01:" TOKEN);
    assert_string_equal(r->str, "p" KEYAUTHZ);
    freeReplyObject(r);

    join(fx->b);
    assert_string_equal(answer(&resp_b, ATLS_CHAL_TLSALPN01, ALPN_NAME), pem);
    free(pem);
}

static void
test_untrusted_values_refused(void **state)
{
    fx_t *fx = *state;
    char *pem = mirrorfx_pem(5);
    char  clear[4096], err[512];

    /* corrupt, a clear private key, a bad token in the index */
    redisfx_set_raw(&fx->rfx, "t:{/chal}:http-01:broken", "\x01garbage", 8);
    snprintf(clear, sizeof(clear), "p%s", pem);
    redisfx_set_raw(&fx->rfx, "t:{/chal}:tls-alpn-01:clear.example", clear, strlen(clear));
    freeReplyObject(redisfx_cmd(&fx->rfx, "SADD", "t:{/chal}:index", "http-01 broken",
                                "tls-alpn-01 clear.example", "http-01 ../../etc/passwd",
                                "gopher-01 x", NULL));
    join(fx->b);
    assert_int_equal(resp_b.adds, 0);
    assert_int_equal(logcap_count("t:{/chal}:http-01:broken"), 1);
    assert_int_equal(logcap_count("t:{/chal}:tls-alpn-01:clear.example: corrupt value: "
                                  "in clear"), 1);
    assert_int_equal(logcap_count("an entry that names no challenge"), 2);
    assert_null(strstr(logcap_text(), "PRIVATE KEY"));

    /* announcements are checked the same way */
    listen_ready(fx->b);
    freeReplyObject(redisfx_cmd(&fx->rfx, "PUBLISH", "t:chal", "+http-01 a/b", NULL));
    freeReplyObject(redisfx_cmd(&fx->rfx, "PUBLISH", "t:chal", "+http-01 broken", NULL));
    publish(fx->a, ATLS_CHAL_HTTP01, TOKEN, KEYAUTHZ);
    poll_until(fx->b, &resp_b, ATLS_CHAL_HTTP01, TOKEN, 1);
    assert_int_equal(resp_b.adds, 1);
    assert_int_equal(logcap_count("not a challenge announcement"), 1);
    assert_int_equal(logcap_count("t:{/chal}:http-01:broken"), 2);

    /* and what a host publishes */
    assert_int_equal(atls_mirror_challenge_publish(fx->a, ATLS_CHAL_HTTP01, "../x", "v", 1,
                                                   err, sizeof(err)), -1);
    assert_int_equal(atls_mirror_challenge_publish(fx->a, ATLS_CHAL_DNS01, "x", "v", 1,
                                                   err, sizeof(err)), -1);
    free(pem);
}

/* Redis unreachable: join fails (the node is not counted), and the first
 * join after it came back loads what is there. */
static void
test_join_after_redis_returns(void **state)
{
    fx_t *fx = *state;
    char  err[512];

    join(fx->b);
    redisfx_kill(&fx->rfx);
    assert_int_equal(atls_mirror_join(fx->b, err, sizeof(err)), -1);
    assert_int_equal(atls_mirror_challenge_publish(fx->a, ATLS_CHAL_HTTP01, TOKEN, KEYAUTHZ,
                                                   strlen(KEYAUTHZ), err, sizeof(err)), -1);
    assert_null(answer(&resp_a, ATLS_CHAL_HTTP01, TOKEN));   /* not published anywhere */
    assert_int_equal(redisfx_restart(&fx->rfx), 0);
    publish(fx->a, ATLS_CHAL_HTTP01, TOKEN, KEYAUTHZ);
    join(fx->b);
    assert_string_equal(answer(&resp_b, ATLS_CHAL_HTTP01, TOKEN), KEYAUTHZ);
}

int
main(void)
{
#define CL_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        CL_TEST(test_publish_reaches_other_node_ready_after_ack),
        CL_TEST(test_expired_member_not_waited_for),
        CL_TEST(test_late_joiner_loads_at_join),
        CL_TEST(test_withdraw_reaches_other_node),
        CL_TEST(test_tls_alpn_answer_sealed),
        CL_TEST(test_untrusted_values_refused),
        CL_TEST(test_join_after_redis_returns),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
