/*
 * A Redis that accepts connections but does not answer (redis_sync.c's
 * health gate, redis_conn.c's PING): the first blocking call that times
 * out closes the gate, the blocking calls after it fail at once without
 * touching the network, until the host opens it again; a PING on a
 * connection driven without blocking tells how long the server has been
 * silent.  A listener that never accepts stands for the hung server (the
 * kernel completes the connect), a real redis-server for the live one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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

/* A loopback listener nobody accepts on: non-blocking, its port in *port. */
static int
silent_listener(int *port)
{
    struct sockaddr_in sa;
    socklen_t          sl = sizeof(sa);
    int                lfd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(lfd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *) &sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *) &sa, &sl), 0);
    assert_int_equal(fcntl(lfd, F_SETFL, O_NONBLOCK), 0);
    *port = ntohs(sa.sin_port);
    return lfd;
}

/* 1 when a connection is waiting on the listener: taken, and kept open
 * (a hung server does not close) until the listener's test closes
 * everything below fds[0..n). */
static int
took_connection(int lfd, int *fds, int *n)
{
    int fd = accept(lfd, NULL, NULL);

    if (fd < 0) {
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        return 0;
    }
    fds[(*n)++] = fd;
    return 1;
}

static void
test_gate_closes_on_timeout_and_opens_again(void **state)
{
    redisfx_t           *fx = *state;
    atls_redis_health_t  h;
    atls_redis_conf_t    conf, live;
    atls_redis_t        *c, *before;
    redisReply          *r;
    char                 err[512];
    int                  lfd, port, fds[4], nfds = 0;

    memset(&h, 0, sizeof(h));
    lfd = silent_listener(&port);

    /* a connection to the live server, opened while the gate is open */
    redisfx_conf(fx, &live);
    live.health = &h;
    before = atls_redis_open_sync(&live, err, sizeof(err));
    if (before == NULL) {
        fail_msg("open: %s", err);
    }

    redisfx_conf(fx, &conf);
    conf.port = port;
    conf.timeout_ms = 200;
    conf.health = &h;
    c = atls_redis_open_sync(&conf, err, sizeof(err));   /* no AUTH: ready at once */
    if (c == NULL) {
        fail_msg("open: %s", err);
    }
    assert_int_equal(took_connection(lfd, fds, &nfds), 1);
    /* a call's timeout 0 is the conf's */
    assert_int_equal(atls_redis_timeout_ms(c), 200);
    assert_int_equal(atls_redis_call(c, 1, (const char *[]) { "PING" }, NULL, &r, 0,
                                     err, sizeof(err)), -1);
    assert_non_null(strstr(err, "timed out"));
    assert_int_equal(h.unresponsive, 1);
    assert_non_null(strstr(h.why, "timed out"));
    atls_redis_free(c);

    /* closed: a new connection is not even attempted ... */
    assert_null(atls_redis_open_sync(&conf, err, sizeof(err)));
    assert_non_null(strstr(err, "not answering"));
    assert_non_null(strstr(err, "timed out"));   /* says what timed out */
    assert_int_equal(took_connection(lfd, fds, &nfds), 0);
    /* ... nor a command sent on one that was open before */
    assert_int_equal(atls_redis_call(before, 1, (const char *[]) { "PING" }, NULL, &r, 0,
                                     err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not answering"));
    assert_int_equal(atls_redis_pending(before), 0);
    assert_int_equal(atls_redis_state(before), ATLS_REDIS_READY);

    /* a second timeout does not replace the first reason */
    assert_int_equal(atls_redis_health_down(&h, "other"), 0);
    assert_non_null(strstr(h.why, "timed out"));

    /* the host saw Redis answer: blocking calls go out again */
    atls_redis_health_up(&h);
    assert_int_equal(h.unresponsive, 0);
    assert_int_equal(atls_redis_call(before, 1, (const char *[]) { "PING" }, NULL, &r, 0,
                                     err, sizeof(err)), 0);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    atls_redis_free(before);

    /* without a gate (the CLI, Apache) every call waits its own timeout */
    conf.health = NULL;
    c = atls_redis_open_sync(&conf, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(atls_redis_call(c, 1, (const char *[]) { "PING" }, NULL, &r, 0,
                                     err, sizeof(err)), -1);
    assert_int_equal(h.unresponsive, 0);
    atls_redis_free(c);
    c = atls_redis_open_sync(&conf, err, sizeof(err));
    assert_non_null(c);
    atls_redis_free(c);
    assert_int_equal(took_connection(lfd, fds, &nfds), 1);
    assert_int_equal(took_connection(lfd, fds, &nfds), 1);

    /* a refused connection is no hang: the gate stays open */
    conf.health = &h;
    close(lfd);
    while (nfds > 0) {
        close(fds[--nfds]);
    }
    assert_null(atls_redis_open_sync(&conf, err, sizeof(err)));
    assert_non_null(strstr(err, "refused"));
    assert_int_equal(h.unresponsive, 0);

    atls_redis_conf_free(&conf);
    atls_redis_conf_free(&live);
}

/* Waits up to ms for c to be readable, and drives it once. */
static void
drive_a_while(atls_redis_t *c, int ms)
{
    struct pollfd pfd;

    pfd.fd = atls_redis_fd(c);
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (poll(&pfd, 1, ms) > 0) {
        assert_int_equal(atls_redis_io(c, ATLS_REDIS_WANT_READ | ATLS_REDIS_WANT_WRITE), 0);
    }
}

static void
test_ping_tells_a_silent_server(void **state)
{
    redisfx_t         *fx = *state;
    atls_redis_conf_t  conf;
    atls_redis_t      *c;
    redisReply        *r = NULL;
    char               err[512];
    int                lfd, port, tries;
    long               silent;

    /* a live server answers: the PING is cleared, a new one goes out */
    redisfx_conf(fx, &conf);
    c = atls_redis_open_sync(&conf, err, sizeof(err));
    if (c == NULL) {
        fail_msg("open: %s", err);
    }
    assert_int_equal(atls_redis_ping(c), 0);
    assert_int_equal(atls_redis_pending(c), 1);
    assert_true(atls_redis_wants(c) & ATLS_REDIS_WANT_WRITE);
    assert_int_equal(atls_redis_io(c, ATLS_REDIS_WANT_WRITE), 0);
    for (tries = 0; tries < 100 && atls_redis_reply(c, &r) == 0; tries++) {
        drive_a_while(c, 20);
    }
    assert_non_null(r);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    assert_int_equal(atls_redis_ping(c), 0);   /* answered: a new one */
    assert_int_equal(atls_redis_pending(c), 1);
    atls_redis_free(c);
    atls_redis_conf_free(&conf);

    /* a silent one: the same PING waits, and how long it has waited grows */
    lfd = silent_listener(&port);
    redisfx_conf(fx, &conf);
    conf.port = port;
    conf.timeout_ms = 1000;
    c = atls_redis_open_sync(&conf, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(atls_redis_ping(c), 0);
    assert_int_equal(atls_redis_io(c, ATLS_REDIS_WANT_WRITE), 0);
    drive_a_while(c, 60);
    silent = atls_redis_ping(c);
    assert_true(silent >= 50);
    assert_int_equal(atls_redis_pending(c), 1);   /* not queued again */

    /* not READY: nothing to ask */
    close(lfd);
    assert_int_equal(atls_redis_io(c, ATLS_REDIS_WANT_READ), -1);
    assert_int_equal(atls_redis_ping(c), -1);
    atls_redis_free(c);
    atls_redis_conf_free(&conf);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        RFX_TEST(test_gate_closes_on_timeout_and_opens_again),
        RFX_TEST(test_ping_tells_a_silent_server),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
