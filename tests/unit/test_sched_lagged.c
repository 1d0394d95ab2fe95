/*
 * A cluster's publish that went on without every node (issue 12,
 * atls_sched_hook_done_partial): a validation the CA then fails the way a
 * node without the answer makes it fail is retried after the short
 * backoff, with the missing nodes named in the log, done()'s error, the
 * stored job state and the failed event; the same failure after a
 * confirmed publish, and other failures after an unconfirmed one, keep
 * their class and backoff (atls_schedule_lagged).  Either way a failure
 * is recorded once: one meta write, one log line.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "atls.h"
#include "atls_event.h"
#include "atls_sched.h"
#include "atls_schedule.h"
#include "atls_store.h"
#include "support/fakeca.h"
#include "support/fakehost.h"
#include "support/logcap.h"
#include "support/schedfx.h"

#define RUN_MS     20000
#define LAG_TEXT   "validation failed while nodes web-2,web-3 had not confirmed the " \
                   "challenge: retrying in "
#define ERR(name)  "urn:ietf:params:acme:error:" name

static schedfx_t           fx;
static fakehost_t          h;
static fakehost_cert_t     cert;
static int                 have_cert;
static atls_events_t      *ev;
static atls_notify_conf_t  conf;

/* The store's writes of a failed job state (meta.json in state "failed"),
 * counted: a failure is recorded by one write, not corrected by a second. */
static const atls_store_ops_t *real_ops;
static atls_store_ops_t        counting_ops;
static size_t                  failed_meta_puts;

static int
counting_put(atls_store_t *st, const char *path, const char *data, size_t len,
             int is_private, char *err, size_t errlen)
{
    size_t n = strlen(path);

    if (n >= 10 && strcmp(path + n - 10, "/meta.json") == 0
        && memmem(data, len, "\"failed\"", 8) != NULL)
    {
        failed_meta_puts++;
    }
    return real_ops->put(st, path, data, len, is_private, err, errlen);
}

/* The host's wait in progress, and the failed events seen. */
static atls_sched_op_t    *waiting;
static struct {
    size_t   n;
    char     err_class[32];
    char     err_type[128];
    char     detail[512];
    time_t   next_attempt;
    unsigned attempt;
} failed;

static int
wait_publish(void *ctx, atls_sched_op_t *op, void *cert_data, const atls_challenge_t *c,
             char *why, size_t whylen)
{
    (void) ctx;
    (void) cert_data;
    (void) c;
    (void) why;
    (void) whylen;
    waiting = op;
    return 1;
}

static void
cancel_publish(void *ctx, atls_sched_op_t *op)
{
    (void) ctx;
    assert_ptr_equal(op, waiting);
    waiting = NULL;
}

static void
listener(void *ctx, const atls_event_t *e, const char *json)
{
    (void) ctx;
    (void) json;
    if (e->type != ATLS_EV_FAILED) {
        return;
    }
    failed.n++;
    snprintf(failed.err_class, sizeof(failed.err_class), "%s", e->err_class);
    snprintf(failed.err_type, sizeof(failed.err_type), "%s", e->err_type);
    snprintf(failed.detail, sizeof(failed.detail), "%s", e->err_detail);
    failed.next_attempt = e->next_attempt;
    failed.attempt = e->attempt;
}

static int
setup(void **state)
{
    (void) state;
    waiting = NULL;
    have_cert = 0;
    memset(&failed, 0, sizeof(failed));
    memset(&conf, 0, sizeof(conf));
    if (schedfx_begin(&fx, &h) != 0) {
        return -1;
    }
    h.host.publish_wait = wait_publish;
    h.host.publish_cancel = cancel_publish;
    failed_meta_puts = 0;
    real_ops = fx.st->ops;
    counting_ops = *real_ops;
    counting_ops.put = counting_put;
    fx.st->ops = &counting_ops;
    return 0;
}

static int
teardown(void **state)
{
    (void) state;
    /* the scheduler borrows the emitter, which borrows the store */
    atls_sched_free(h.s);
    h.s = NULL;
    atls_events_free(ev);
    ev = NULL;
    fx.st->ops = real_ops;
    schedfx_end(&fx, &h, &cert, have_cert ? 1 : 0);
    return 0;
}

/* A scheduler with events over the store and one http-01 certificate
 * whose CA fails its validation with problem (short name; NULL: it
 * validates), not started yet. */
static void
start(const char *name, const char *problem)
{
    atls_sched_opts_t o;
    atls_actor_t      a;
    char              err[256];

    memset(&a, 0, sizeof(a));
    a.kind = "server";
    a.software = "test/1";
    a.pid = (long) getpid();
    a.uid = -1;
    ev = atls_events_new(fx.st, &a, &conf);
    assert_non_null(ev);
    atls_events_set_listener(ev, listener, NULL);
    memset(&o, 0, sizeof(o));
    o.events = ev;
    h.s = atls_sched_new(fx.st, &h.host, &o, err, sizeof(err));
    assert_non_null(h.s);
    schedfx_add(&h, &fx, &cert, name);
    have_cert = 1;
    if (problem != NULL) {
        cert.ca->invalid[0] = name;
        cert.ca->invalid_type = problem;
    }
}

static int
until_waiting(fakehost_t *fh, void *arg)
{
    (void) fh;
    (void) arg;
    return waiting != NULL;
}

/* The failure was recorded once: one write of the failed job state, one
 * "order failed" line (whatever its class), never a second line
 * correcting the first. */
static void
assert_once(void)
{
    if (logcap_count("order failed") != 1) {
        fail_msg("not one \"order failed\" line:\n%s", logcap_text());
    }
    assert_int_equal(failed_meta_puts, 1);
    assert_int_equal(logcap_count("logged above"), 0);
}

/* Runs the order to the host's wait, then reports it: partial with
 * missing (confirmed when missing is NULL); then the order to its end. */
static void
run_order(const char *missing)
{
    atls_sched_op_t *op;

    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, until_waiting, NULL, RUN_MS, NULL), 0);
    op = waiting;
    waiting = NULL;
    if (missing != NULL) {
        atls_sched_hook_done_partial(h.s, op, missing);
    } else {
        atls_sched_hook_done(h.s, op, 1, NULL);
    }
    assert_int_equal(fakehost_run(&h, fakehost_until_done, &cert, RUN_MS, NULL), 0);
    assert_int_equal(fakehost_run(&h, fakehost_until_settled, NULL, RUN_MS, NULL), 0);
    assert_int_equal(cert.done, 1);
    assert_int_equal(cert.rc, -1);
    assert_int_equal(failed.n, 1);
    assert_once();
}

/* fakehost's clock for the scheduler's timer */
static long long
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
load_meta(const char *name, atls_cert_meta_t *m)
{
    char *id = atls_cert_id(name);
    char  err[256];

    memset(m, 0, sizeof(*m));
    assert_int_equal(atls_store_load_meta(fx.st, id, m, err, sizeof(err)), ATLS_STORE_OK);
    free(id);
}

/* The stored next attempt lies where the backoff of cls puts a first
 * failure between before and after (jitter at its two ends). */
static void
assert_backoff(const atls_cert_meta_t *m, atls_err_class_t cls, time_t before, time_t after)
{
    assert_int_equal(m->failures, 1);
    assert_true(m->next_attempt >= atls_schedule_backoff_class(cls, 1, before, 0, 0));
    assert_true(m->next_attempt <= atls_schedule_backoff_class(cls, 1, after, 0, UINT64_MAX));
}

static void
test_lagged_unauthorized_retries_soon(void **state)
{
    atls_cert_meta_t m;
    time_t           before, after;

    (void) state;
    start("lag.example", "unauthorized");
    before = time(NULL);
    run_order("web-2,web-3");
    after = time(NULL);

    /* transient, the nodes named, done() and the event alike */
    assert_string_equal(cert.err.type, ERR("unauthorized"));
    assert_int_equal(cert.err.cls, ATLS_ERR_RETRY_LATER);
    assert_non_null(strstr(cert.err.detail, LAG_TEXT));
    assert_string_equal(failed.err_class, atls_err_class_name(ATLS_ERR_RETRY_LATER));
    assert_string_equal(failed.err_type, ERR("unauthorized"));
    assert_non_null(strstr(failed.detail, LAG_TEXT));
    assert_non_null(strstr(failed.detail, "the CA said: "));
    /* one line, the transient one: never first "permanent" then a fix */
    assert_int_equal(logcap_count(LAG_TEXT), 1);
    assert_int_equal(logcap_count("permanent error"), 0);
    assert_int_equal(logcap_count("order failed: " ERR("unauthorized") ": " LAG_TEXT), 1);

    /* stored: the retry-later backoff, not the permanent one */
    load_meta("lag.example", &m);
    assert_backoff(&m, ATLS_ERR_RETRY_LATER, before, after);
    assert_true(m.next_attempt < before + 3600);
    assert_int_equal(m.last_error_class, ATLS_ERR_RETRY_LATER);
    assert_non_null(strstr(m.last_error_detail, LAG_TEXT));
    assert_int_equal(failed.next_attempt, m.next_attempt);
    assert_int_equal(failed.attempt, 1);
    /* the scheduler wakes for it by itself then, not at the next check */
    assert_true(h.timer_at > 0);
    assert_true(h.timer_at <= mono_ms() + (m.next_attempt - time(NULL) + 1) * 1000);
    atls_cert_meta_free(&m);
}

static void
test_confirmed_unauthorized_is_permanent(void **state)
{
    atls_cert_meta_t m;
    time_t           before, after;

    (void) state;
    start("nolag.example", "unauthorized");
    before = time(NULL);
    run_order(NULL);
    after = time(NULL);

    assert_int_equal(cert.err.cls, ATLS_ERR_PERMANENT);
    assert_null(strstr(cert.err.detail, "had not confirmed"));
    assert_string_equal(failed.err_class, atls_err_class_name(ATLS_ERR_PERMANENT));
    assert_int_equal(logcap_count("had not confirmed"), 0);
    assert_int_equal(logcap_count("permanent error"), 1);
    load_meta("nolag.example", &m);
    assert_backoff(&m, ATLS_ERR_PERMANENT, before, after);
    assert_int_equal(m.last_error_class, ATLS_ERR_PERMANENT);
    assert_int_equal(failed.next_attempt, m.next_attempt);
    /* no wake of its own: the next check looks at it */
    assert_true(h.timer_at < 0 || h.timer_at > mono_ms() + 3600 * 1000);
    atls_cert_meta_free(&m);
}

/* caa is about the name, not a node: permanent after a partial publish */
static void
test_lagged_caa_stays_permanent(void **state)
{
    atls_cert_meta_t m;
    time_t           before, after;

    (void) state;
    start("caa.example", "caa");
    before = time(NULL);
    run_order("web-2");
    after = time(NULL);

    assert_string_equal(cert.err.type, ERR("caa"));
    assert_int_equal(cert.err.cls, ATLS_ERR_PERMANENT);
    assert_null(strstr(cert.err.detail, "had not confirmed"));
    assert_int_equal(logcap_count("had not confirmed"), 0);
    load_meta("caa.example", &m);
    assert_backoff(&m, ATLS_ERR_PERMANENT, before, after);
    atls_cert_meta_free(&m);
}

/* a failure that is no validation keeps its own class and text */
static void
test_lagged_rate_limit_unchanged(void **state)
{
    fakeca_fault_t   f = { "POST", "/finalize", 0, -1, 429, "rateLimited",
                           "too many certificates", NULL };
    atls_cert_meta_t m;

    (void) state;
    start("rate.example", NULL);
    cert.ca->faults[0] = f;
    run_order("web-2,web-3");

    assert_string_equal(cert.err.type, ERR("rateLimited"));
    assert_int_equal(cert.err.cls, ATLS_ERR_RETRY_LATER);
    assert_null(strstr(cert.err.detail, "had not confirmed"));
    assert_string_equal(failed.err_type, ERR("rateLimited"));
    assert_null(strstr(failed.detail, "had not confirmed"));
    assert_int_equal(logcap_count("had not confirmed"), 0);
    load_meta("rate.example", &m);
    assert_null(strstr(m.last_error_detail, "had not confirmed"));
    assert_int_equal(failed.next_attempt, m.next_attempt);
    atls_cert_meta_free(&m);
}

/* nodes unknown (the member registry could not be read) */
static void
test_lagged_nodes_unknown(void **state)
{
    atls_cert_meta_t m;
    time_t           before, after;

    (void) state;
    start("unknown.example", "connection");
    before = time(NULL);
    run_order("");
    after = time(NULL);

    assert_non_null(strstr(cert.err.detail, "validation failed while some nodes had not "
                           "confirmed the challenge: retrying in "));
    load_meta("unknown.example", &m);
    assert_backoff(&m, ATLS_ERR_RETRY_LATER, before, after);
    atls_cert_meta_free(&m);
}

/* Two names, a wait each: every node missing from either is named once,
 * in the order first seen. */
static void
test_nodes_of_every_challenge(void **state)
{
    static const char *const names[] = { "a.two.example", "b.two.example" };
    const char              *missing[] = { "web-2", " web-3, web-2" };
    atls_issuer_t            is;
    atls_sched_op_t         *op;
    char                     err[256];
    size_t                   i;

    (void) state;
    start(names[0], "unauthorized");
    /* the same certificate, with both names */
    atls_sched_remove(h.s, cert.sched);
    memset(&is, 0, sizeof(is));
    is.directory = (char *) SCHEDFX_DIRECTORY;
    is.challenge = ATLS_CHAL_HTTP01;
    is.agree_tos = 1;
    cert.sched = atls_sched_add(h.s, names, 2, &is, &cert, err, sizeof(err));
    assert_non_null(cert.sched);
    cert.ca->invalid[1] = names[1];

    atls_sched_check(h.s);
    for (i = 0; i < 2; i++) {
        assert_int_equal(fakehost_run(&h, until_waiting, NULL, RUN_MS, NULL), 0);
        op = waiting;
        waiting = NULL;
        atls_sched_hook_done_partial(h.s, op, missing[i]);
    }
    assert_int_equal(fakehost_run(&h, fakehost_until_done, &cert, RUN_MS, NULL), 0);
    assert_int_equal(cert.rc, -1);
    assert_int_equal(cert.err.cls, ATLS_ERR_RETRY_LATER);
    assert_non_null(strstr(cert.err.detail, LAG_TEXT));
    assert_once();
}

/* The rule alone: which problems, which backoff. */
static void
test_rule(void **state)
{
    static const char *const lagged[] = {
        ERR("unauthorized"), ERR("incorrectResponse"), ERR("connection"), ERR("tls"),
    };
    static const char *const kept[] = {
        ERR("badNonce"), ERR("rateLimited"), ERR("dns"), ERR("caa"), ERR("malformed"),
        ERR("serverInternal"), "autotls:transport", "unauthorized", "",
    };
    atls_error_t e;
    time_t       now = 1700000000;
    size_t       i;

    (void) state;
    assert_int_equal(atls_schedule_lagged(NULL, 1, now, 0), 0);
    for (i = 0; i < sizeof(lagged) / sizeof(lagged[0]); i++) {
        atls_error_set(&e, ATLS_ERR_PERMANENT, lagged[i], "x");
        assert_int_equal(atls_schedule_lagged(&e, 1, now, 7),
                         atls_schedule_backoff(1, now, 0, 7));
        assert_int_equal(atls_schedule_lagged(&e, 3, now, 7),
                         atls_schedule_backoff(3, now, 0, 7));
    }
    for (i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
        atls_error_set(&e, ATLS_ERR_PERMANENT, kept[i], "x");
        assert_int_equal(atls_schedule_lagged(&e, 1, now, 7), 0);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lagged_unauthorized_retries_soon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_confirmed_unauthorized_is_permanent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lagged_caa_stays_permanent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lagged_rate_limit_unchanged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lagged_nodes_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nodes_of_every_challenge, setup, teardown),
        cmocka_unit_test(test_rule),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
