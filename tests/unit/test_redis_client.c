/*
 * The Redis client (redis_conn.c, redis_sync.c) against a real
 * redis-server started per test: blocking calls, a non-blocking client
 * driven by a poll loop, AUTH (password, ACL user), SELECT, TLS with a
 * test CA (Debian's redis-server 7.0 is built with TLS), failures named.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>
#include "atls_redis.h"
#include "support/redisfx.h"

#define RFX_TEST(f) cmocka_unit_test_setup_teardown(f, redisfx_setup, redisfx_teardown)

static atls_redis_t *
open_ok(const atls_redis_conf_t *conf)
{
    char          err[512];
    atls_redis_t *c = atls_redis_open_sync(conf, err, sizeof(err));

    if (c == NULL) {
        fail_msg("open: %s", err);
    }
    return c;
}

static redisReply *
call_ok(atls_redis_t *c, ...)
{
    const char *argv[16], *a;
    int         argc = 0;
    va_list     ap;
    redisReply *r = NULL;
    char        err[512];

    va_start(ap, c);
    while ((a = va_arg(ap, const char *)) != NULL) {
        argv[argc++] = a;
    }
    va_end(ap);
    if (atls_redis_call(c, argc, argv, NULL, &r, 0, err, sizeof(err)) != 0) {
        fail_msg("%s: %s", argv[0], err);
    }
    return r;
}

static void
reply_is_status(redisReply *r, const char *s)
{
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    assert_string_equal(r->str, s);
    freeReplyObject(r);
}

static void
reply_is_string(redisReply *r, const char *s)
{
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, s);
    freeReplyObject(r);
}

/* ---- blocking ------------------------------------------------------------- */

static void
test_sync_binary_and_errors(void **state)
{
    redisfx_t        *fx = *state;
    atls_redis_conf_t conf;
    atls_redis_t     *c;
    redisReply       *r;
    char              bin[300], err[256];
    const char       *argv[3];
    size_t            lens[3], i;

    redisfx_conf(fx, &conf);
    c = open_ok(&conf);
    assert_int_equal(atls_redis_state(c), ATLS_REDIS_READY);
    for (i = 0; i < sizeof(bin); i++) {
        bin[i] = (char) (i * 13);   /* NUL bytes and CR LF in the value */
    }
    argv[0] = "SET";
    argv[1] = "k\r\nbin";
    argv[2] = bin;
    lens[0] = 3;
    lens[1] = 6;
    lens[2] = sizeof(bin);
    assert_int_equal(atls_redis_call(c, 3, argv, lens, &r, 0, err, sizeof(err)), 0);
    reply_is_status(r, "OK");
    argv[0] = "GET";
    lens[0] = 3;
    assert_int_equal(atls_redis_call(c, 2, argv, lens, &r, 0, err, sizeof(err)), 0);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, sizeof(bin));
    assert_memory_equal(r->str, bin, sizeof(bin));
    freeReplyObject(r);

    /* a Redis error is a reply, and the connection goes on */
    reply_is_status(call_ok(c, "SET", "n", "notanumber", NULL), "OK");
    r = call_ok(c, "INCR", "n", NULL);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    r = call_ok(c, "INCRBY", "m", "41", NULL);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 41);
    freeReplyObject(r);
    assert_int_equal(atls_redis_pending(c), 0);
    atls_redis_free(c);
    atls_redis_conf_free(&conf);
}

/* A reply beyond the limits (Redis content is untrusted) fails the
 * connection instead of being read into memory, whatever its shape. */
static void
limit_refused(const redisfx_t *fx, const char *script)
{
    atls_redis_conf_t conf;
    atls_redis_t     *c;
    redisReply       *r = NULL;
    char              err[512];
    const char       *argv[] = { "EVAL", script, "0" };

    redisfx_conf(fx, &conf);
    c = open_ok(&conf);
    assert_int_not_equal(atls_redis_call(c, 3, argv, NULL, &r, 60000, err, sizeof(err)), 0);
    assert_null(r);
    if (strstr(err, "refused") == NULL) {
        fail_msg("%s", err);
    }
    assert_int_equal(atls_redis_state(c), ATLS_REDIS_FAILED);
    atls_redis_free(c);
    atls_redis_conf_free(&conf);
}

static void
test_reply_limits(void **state)
{
    redisfx_t        *fx = *state;
    atls_redis_conf_t conf;
    atls_redis_t     *c;
    redisReply       *r = NULL;
    char              err[512];
    const char       *argv[] = { "EVAL", "local t = {} for i = 1, 600000 do t[i] = 1 end "
                                 "return t", "0" };

    /* one value more than an array may hold */
    limit_refused(fx, "local t = {} for i = 1, 1048577 do t[i] = 1 end return t");
    /* as many, spread over nested arrays */
    limit_refused(fx, "local t = {} for i = 1, 1100 do local u = {} "
                  "for j = 1, 1000 do u[j] = 1 end t[i] = u end return t");
    /* a string larger than a reply may be */
    limit_refused(fx, "return string.rep('x', 81 * 1024 * 1024)");

    /* what fits is read, and the limits start again with each reply */
    redisfx_conf(fx, &conf);
    c = open_ok(&conf);
    assert_int_equal(atls_redis_call(c, 3, argv, NULL, &r, 60000, err, sizeof(err)), 0);
    assert_int_equal(r->elements, 600000);
    freeReplyObject(r);
    assert_int_equal(atls_redis_call(c, 3, argv, NULL, &r, 60000, err, sizeof(err)), 0);
    assert_int_equal(r->elements, 600000);
    freeReplyObject(r);
    atls_redis_free(c);
    atls_redis_conf_free(&conf);
}

/* ---- non-blocking, driven by our own poll loop ---------------------------- */

/* Polls for what the client wants until pred holds (5 s deadline). */
static void
drive(atls_redis_t *c, int (*pred)(atls_redis_t *, void *), void *arg)
{
    int rounds = 0;

    while (!pred(c, arg)) {
        struct pollfd pfd;
        int           w = atls_redis_wants(c);

        assert_int_not_equal(atls_redis_state(c), ATLS_REDIS_FAILED);
        assert_true(w != 0);
        pfd.fd = atls_redis_fd(c);
        pfd.events = (short) (((w & ATLS_REDIS_WANT_READ) ? POLLIN : 0)
                              | ((w & ATLS_REDIS_WANT_WRITE) ? POLLOUT : 0));
        assert_true(poll(&pfd, 1, 5000) > 0);
        if (atls_redis_io(c, ((pfd.revents & POLLIN) ? ATLS_REDIS_WANT_READ : 0)
                             | ((pfd.revents & POLLOUT) ? ATLS_REDIS_WANT_WRITE : 0)) != 0)
        {
            fail_msg("io: %s", atls_redis_error(c));
        }
        assert_true(++rounds < 10000);
    }
}

typedef struct {
    long long  *got;
    size_t      n, want;
} replies_t;

static int
take_replies(atls_redis_t *c, void *arg)
{
    replies_t  *rp = arg;
    redisReply *r;

    while (rp->n < rp->want && atls_redis_reply(c, &r) == 1) {
        rp->got[rp->n++] = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
        freeReplyObject(r);
    }
    return rp->n == rp->want;
}

static void
poll_loop_pipeline(atls_redis_conf_t *conf)
{
    const char   *argv[] = { "INCR", "counter" };
    char          err[512];
    long long     got[200];
    replies_t     rp = { got, 0, 200 };
    atls_redis_t *c = atls_redis_connect(conf, err, sizeof(err));
    size_t        i;

    if (c == NULL) {
        fail_msg("connect: %s", err);
    }
    /* queued before the connection is even up: sent behind AUTH/SELECT */
    assert_int_equal(atls_redis_state(c), ATLS_REDIS_CONNECTING);
    assert_true(atls_redis_wants(c) & ATLS_REDIS_WANT_WRITE);
    for (i = 0; i < rp.want; i++) {
        assert_int_equal(atls_redis_send(c, 2, argv, NULL), 0);
    }
    assert_int_equal(atls_redis_pending(c), rp.want);
    drive(c, take_replies, &rp);
    for (i = 0; i < rp.want; i++) {
        assert_int_equal(got[i], (long long) i + 1);   /* in order */
    }
    assert_int_equal(atls_redis_pending(c), 0);
    assert_int_equal(atls_redis_state(c), ATLS_REDIS_READY);
    /* idle: only waits to read (a reply, or the server closing) */
    assert_int_equal(atls_redis_wants(c), ATLS_REDIS_WANT_READ);
    atls_redis_free(c);
}

static void
test_nonblocking_poll_loop(void **state)
{
    redisfx_t        *fx = *state;
    atls_redis_conf_t conf;

    redisfx_conf(fx, &conf);
    conf.db = 2;   /* a SETUP step before the commands */
    poll_loop_pipeline(&conf);
    atls_redis_conf_free(&conf);
}

/* ---- AUTH and SELECT -------------------------------------------------------- */

static void
test_auth_password(void **state)
{
    redisfx_t        *fx = *state;
    atls_redis_conf_t conf;
    atls_redis_t     *c;
    redisReply       *r;
    char              err[512];

    reply_is_status(redisfx_cmd(fx, "CONFIG", "SET", "requirepass", "s3cret-pw", NULL), "OK");
    redisfx_conf(fx, &conf);
    c = open_ok(&conf);
    r = call_ok(c, "PING", NULL);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "NOAUTH"));
    freeReplyObject(r);
    atls_redis_free(c);

    conf.password = strdup("wrong-pw");
    assert_null(atls_redis_open_sync(&conf, err, sizeof(err)));
    assert_non_null(strstr(err, "AUTH"));
    assert_non_null(strstr(err, "WRONGPASS"));
    assert_null(strstr(err, "wrong-pw"));
    free(conf.password);

    conf.password = strdup("s3cret-pw");
    c = open_ok(&conf);
    reply_is_status(call_ok(c, "PING", NULL), "PONG");
    atls_redis_free(c);
    atls_redis_conf_free(&conf);
}

static void
test_auth_acl_user(void **state)
{
    redisfx_t        *fx = *state;
    atls_redis_conf_t conf;
    atls_redis_t     *c;
    char              err[512];

    reply_is_status(redisfx_cmd(fx, "ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "&*",
                              "+@all", NULL), "OK");
    redisfx_conf(fx, &conf);
    conf.user = strdup("alice");
    conf.password = strdup("alice-pw");
    c = open_ok(&conf);
    reply_is_string(call_ok(c, "ACL", "WHOAMI", NULL), "alice");
    atls_redis_free(c);

    free(conf.password);
    conf.password = strdup("not-alice-pw");
    assert_null(atls_redis_open_sync(&conf, err, sizeof(err)));
    assert_non_null(strstr(err, "AUTH: WRONGPASS"));
    assert_null(strstr(err, "not-alice-pw"));
    atls_redis_conf_free(&conf);
}

static void
test_select_db(void **state)
{
    redisfx_t        *fx = *state;
    atls_redis_conf_t conf;
    atls_redis_t     *c;
    redisReply       *r;
    char              err[512];

    redisfx_conf(fx, &conf);
    conf.db = 3;
    c = open_ok(&conf);
    reply_is_status(call_ok(c, "SET", "where", "db3", NULL), "OK");
    atls_redis_free(c);
    r = redisfx_cmd(fx, "GET", "where", NULL);   /* db 0 */
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    conf.db = 3;
    c = open_ok(&conf);
    reply_is_string(call_ok(c, "GET", "where", NULL), "db3");
    atls_redis_free(c);

    conf.db = 100000;   /* beyond the server's databases: SELECT is named */
    assert_null(atls_redis_open_sync(&conf, err, sizeof(err)));
    assert_non_null(strstr(err, "SELECT"));
    atls_redis_conf_free(&conf);
}

/* ---- failures ------------------------------------------------------------- */

static void
test_refused_and_timeout(void **state)
{
    redisfx_t         *fx = *state;
    atls_redis_conf_t  conf;
    atls_redis_t      *c;
    redisReply        *r;
    struct sockaddr_in sa;
    socklen_t          sl = sizeof(sa);
    char               err[512];
    int                lfd;

    /* a listener that never answers: the kernel completes the connect */
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *) &sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *) &sa, &sl), 0);

    redisfx_conf(fx, &conf);
    conf.port = ntohs(sa.sin_port);
    conf.timeout_ms = 200;
    conf.password = strdup("pw");   /* AUTH is never answered */
    assert_null(atls_redis_open_sync(&conf, err, sizeof(err)));
    assert_non_null(strstr(err, "timed out"));
    free(conf.password);
    conf.password = NULL;
    c = open_ok(&conf);   /* nothing to set up: ready once connected */
    assert_int_equal(atls_redis_call(c, 1, (const char *[]) { "PING" }, NULL, &r, 200,
                                     err, sizeof(err)), -1);
    assert_non_null(strstr(err, "timed out"));
    /* the stream's position is unknown: the connection is not reused */
    assert_int_equal(atls_redis_state(c), ATLS_REDIS_FAILED);
    atls_redis_free(c);
    close(lfd);

    /* nobody listens any more */
    assert_null(atls_redis_open_sync(&conf, err, sizeof(err)));
    assert_non_null(strstr(err, "connect"));
    if (strstr(err, "refused") == NULL) {
        fail_msg("%s", err);
    }
    atls_redis_conf_free(&conf);

    /* the server closes: the client says so */
    redisfx_conf(fx, &conf);
    c = open_ok(&conf);
    r = redisfx_cmd(fx, "CLIENT", "KILL", "TYPE", "normal", NULL);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer >= 1);
    freeReplyObject(r);
    assert_int_equal(atls_redis_call(c, 1, (const char *[]) { "PING" }, NULL, &r, 0,
                                     err, sizeof(err)), -1);
    assert_non_null(strstr(err, "closed"));
    atls_redis_free(c);
    atls_redis_conf_free(&conf);
}

/* ---- TLS ------------------------------------------------------------------ */

static void
test_tls(void **state)
{
    static const char *const only_localhost[] = { "localhost", NULL };
    redisfx_t         fx, other;
    atls_redis_conf_t conf;
    atls_redis_t     *c;
    char              err[512];

    (void) state;
    assert_int_equal(redisfx_start(&fx, 1, NULL), 0);
    redisfx_conf(&fx, &conf);
    c = open_ok(&conf);
    reply_is_status(call_ok(c, "PING", NULL), "PONG");
    atls_redis_free(c);
    poll_loop_pipeline(&conf);

    /* a certificate from another CA: refused, and said why */
    assert_int_equal(redisfx_start(&other, 1, NULL), 0);
    free(conf.ca_file);
    conf.ca_file = strdup(other.ca_file);
    assert_null(atls_redis_open_sync(&conf, err, sizeof(err)));
    assert_non_null(strstr(err, "TLS"));
    assert_non_null(strstr(err, "certificate verify failed"));
    redisfx_stop(&other);
    atls_redis_conf_free(&conf);

    /* plain text to a TLS port fails (it is not taken for Redis) */
    redisfx_conf(&fx, &conf);
    conf.tls = 0;
    free(conf.ca_file);
    conf.ca_file = NULL;
    conf.timeout_ms = 1000;
    conf.password = strdup("pw");
    assert_null(atls_redis_open_sync(&conf, err, sizeof(err)));
    atls_redis_conf_free(&conf);
    redisfx_stop(&fx);

    /* the host check: a certificate for "localhost" only */
    assert_int_equal(redisfx_start(&fx, 1, only_localhost), 0);
    redisfx_conf(&fx, &conf);
    assert_null(atls_redis_open_sync(&conf, err, sizeof(err)));   /* 127.0.0.1 */
    assert_non_null(strstr(err, "certificate verify failed"));
    free(conf.host);
    conf.host = strdup("localhost");   /* ::1 is refused, 127.0.0.1 follows */
    c = open_ok(&conf);
    reply_is_status(call_ok(c, "PING", NULL), "PONG");
    atls_redis_free(c);
    atls_redis_conf_free(&conf);
    redisfx_stop(&fx);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        RFX_TEST(test_sync_binary_and_errors),
        RFX_TEST(test_reply_limits),
        RFX_TEST(test_nonblocking_poll_loop),
        RFX_TEST(test_auth_password),
        RFX_TEST(test_auth_acl_user),
        RFX_TEST(test_select_db),
        RFX_TEST(test_refused_and_timeout),
        cmocka_unit_test(test_tls),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
