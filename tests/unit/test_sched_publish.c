/*
 * The scheduler's publish_wait / publish_cancel (atls_sched.h; a cluster's
 * host holds the validation until every live node answers the challenge):
 * the challenge is POSTed to the CA only after the host says ok, a "no"
 * fails it with the host's reason, and a scheduler that drops the order
 * cancels the wait and hears nothing more of it.
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
#include "atls.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "support/fakeca.h"
#include "support/fakehost.h"
#include "support/schedfx.h"

#define CHAL_PATH  "/chal/0/http-01"
#define RUN_MS     20000

static schedfx_t       fx;
static fakehost_t      h;
static fakehost_cert_t cert;
static int             have_cert;

/* What the cluster's host saw. */
static struct {
    int              answer;        /* publish_wait's return */
    atls_sched_op_t *op;            /* the wait in progress */
    size_t           waits, cancels;
    char             token[256];    /* of the challenge waited for */
} w;

static int
wait_publish(void *ctx, atls_sched_op_t *op, void *cert_data, const atls_challenge_t *c,
             char *why, size_t whylen)
{
    (void) ctx;
    assert_ptr_equal(cert_data, &cert);
    assert_true(h.live_published > 0);     /* published before the wait */
    w.waits++;
    snprintf(w.token, sizeof(w.token), "%s", c->token != NULL ? c->token : "");
    if (w.answer == 1) {
        w.op = op;
    } else if (w.answer < 0) {
        snprintf(why, whylen, "the member registry cannot be read");
    }
    return w.answer;
}

static void
cancel_publish(void *ctx, atls_sched_op_t *op)
{
    (void) ctx;
    assert_ptr_equal(op, w.op);
    w.cancels++;
    w.op = NULL;
}

static int
setup(void **state)
{
    (void) state;
    memset(&w, 0, sizeof(w));
    have_cert = 0;
    if (schedfx_begin(&fx, &h) != 0) {
        return -1;
    }
    h.host.publish_wait = wait_publish;
    h.host.publish_cancel = cancel_publish;
    return 0;
}

static int
teardown(void **state)
{
    (void) state;
    schedfx_end(&fx, &h, &cert, have_cert ? 1 : 0);
    return 0;
}

/* A scheduler with one http-01 certificate, started. */
static void
start(const char *name)
{
    schedfx_start(&h, fx.st);
    schedfx_add(&h, &fx, &cert, name);
    have_cert = 1;
    atls_sched_check(h.s);
}

static int
until_waiting(fakehost_t *fh, void *arg)
{
    (void) fh;
    (void) arg;
    return w.op != NULL;
}

/* Runs the loop until the host is asked to wait, then until nothing moves
 * without it. */
static void
run_to_wait(void)
{
    assert_int_equal(fakehost_run(&h, until_waiting, NULL, RUN_MS, NULL), 0);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, 200, NULL), -1);
    assert_non_null(w.op);
}

/* The host's report of the wait in progress. */
static void
report(int ok, const char *why)
{
    atls_sched_op_t *op = w.op;

    w.op = NULL;
    atls_sched_hook_done(h.s, op, ok, why);
}

static void
test_validation_waits_for_the_cluster(void **state)
{
    (void) state;
    w.answer = 1;
    start("wait.example");
    run_to_wait();
    /* published, but the CA is not told to validate while the nodes load it */
    assert_int_equal(w.waits, 1);
    assert_string_equal(w.token, cert.ca->tokens[0]);
    assert_int_equal(fakeca_count(cert.ca, "POST", CHAL_PATH), 0);
    assert_int_equal(h.live_published, 1);
    assert_int_equal(cert.done, 0);

    report(1, NULL);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(fakeca_count(cert.ca, "POST", CHAL_PATH), 1);
    assert_int_equal(cert.done, 1);
    assert_int_equal(cert.rc, 0);
    assert_int_equal(cert.n_deployed, 1);
    assert_int_equal(h.live_published, 0);     /* withdrawn after the order */
    assert_int_equal(w.cancels, 0);
}

static void
test_a_no_fails_the_challenge_with_why(void **state)
{
    (void) state;
    w.answer = 1;
    start("nowait.example");
    run_to_wait();
    report(0, "nodes web-2, web-3 did not load it");
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(fakeca_count(cert.ca, "POST", CHAL_PATH), 0);
    assert_int_equal(cert.done, 1);
    assert_int_equal(cert.rc, -1);
    assert_non_null(strstr(cert.err.detail, "nodes web-2, web-3 did not load it"));
    assert_int_equal(h.live_published, 0);
    assert_int_equal(w.cancels, 0);
}

static void
test_no_wait_and_refusal(void **state)
{
    (void) state;
    /* 0: validated at once, as without a cluster */
    w.answer = 0;
    start("direct.example");
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(w.waits, 1);
    assert_int_equal(cert.rc, 0);
    assert_int_equal(fakeca_count(cert.ca, "POST", CHAL_PATH), 1);
    fakehost_teardown(&h, &cert, 1);
    have_cert = 0;

    /* -1: the challenge fails at once with the host's reason, withdrawn */
    fakehost_init(&h);
    h.host.publish_wait = wait_publish;
    h.host.publish_cancel = cancel_publish;
    w.answer = -1;
    start("refused.example");
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(cert.rc, -1);
    assert_non_null(strstr(cert.err.detail, "the member registry cannot be read"));
    assert_int_equal(fakeca_count(cert.ca, "POST", CHAL_PATH), 0);
    assert_int_equal(h.live_published, 0);
}

static void
test_free_mid_wait_cancels(void **state)
{
    (void) state;
    w.answer = 1;
    start("freed.example");
    run_to_wait();
    atls_sched_free(h.s);
    h.s = NULL;
    assert_int_equal(w.cancels, 1);
    assert_null(w.op);
    assert_int_equal(h.live_published, 0);     /* withdrawn */
    assert_int_equal(h.n_done, 0);
}

static void
test_remove_mid_wait_cancels(void **state)
{
    (void) state;
    w.answer = 1;
    start("removed.example");
    run_to_wait();
    atls_sched_remove(h.s, cert.sched);
    cert.sched = NULL;
    assert_int_equal(w.cancels, 1);
    assert_int_equal(h.live_published, 0);
    /* nothing else is asked of the host for it */
    (void) fakehost_run(&h, fakehost_until_idle, NULL, 500, NULL);
    assert_int_equal(w.waits, 1);
    assert_int_equal(fakeca_count(cert.ca, "POST", CHAL_PATH), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_validation_waits_for_the_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_no_fails_the_challenge_with_why, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_wait_and_refusal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_mid_wait_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_mid_wait_cancels, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
