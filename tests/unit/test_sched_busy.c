/*
 * A certificate another process (another node of a cluster) is ordering:
 * its lock is busy.  The scheduler looks again soon (SCHED_BUSY_RETRY_S),
 * not at the host's next check: when the holder dies the order is taken
 * over, when the holder deploys nothing is ordered again; and an order
 * whose lock is taken after another process deployed does not start
 * (atls_job_start_planned).  Two schedulers on one store stand for two
 * nodes.
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
#include "atls_job.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "support/fakeca.h"
#include "support/fakehost.h"
#include "support/logcap.h"
#include "support/schedfx.h"
#include "sched_internal.h"     /* SCHED_BUSY_RETRY_S, atls_sched_now_ms */

#define NAME    "busy.example"
#define RUN_MS  30000       /* beyond the retry, far below a check interval */

static schedfx_t       fx;
static fakehost_t      h;           /* node A */
static fakehost_cert_t cert;

static int
setup(void **state)
{
    (void) state;
    return schedfx_begin(&fx, &h);
}

static int
teardown(void **state)
{
    (void) state;
    schedfx_end(&fx, &h, &cert, 1);
    return 0;
}

static int
until_done(fakehost_t *fh, void *arg)
{
    const int *n = arg;

    (void) fh;
    return cert.done >= *n;
}

/* A's first attempt while another store handle holds the lock: reported
 * busy, nothing asked of the CA, the timer set for a look within the
 * retry time. */
static atls_store_lock_t *
first_attempt_busy(atls_store_t *other)
{
    atls_store_lock_t *lk = NULL;
    char               err[256];
    int                one = 1;

    assert_int_equal(atls_store_lock_cert(other, NAME, 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    schedfx_start(&h, fx.st);
    schedfx_add(&h, &fx, &cert, NAME);
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, until_done, &one, RUN_MS, NULL), 0);
    assert_int_equal(cert.rc, -1);
    assert_string_equal(cert.err.type, "autotls:busy");
    assert_int_equal(fakeca_count(cert.ca, "POST", "/new-order"), 0);
    /* quiet until the look SCHED_BUSY_RETRY_S from now */
    assert_int_equal(fakehost_run(&h, fakehost_until_settled, NULL, RUN_MS, NULL), 0);
    assert_true(h.timer_at > atls_sched_now_ms());
    assert_true(h.timer_at <= atls_sched_now_ms() + SCHED_BUSY_RETRY_S * 1000);
    return lk;
}

/* The holder dies (its lock is gone, nothing deployed): A orders it
 * itself at the retry, without another check from the host. */
static void
test_busy_holder_dies_order_taken_over(void **state)
{
    atls_store_t      *other;
    atls_store_lock_t *lk;
    char               err[256];
    int                two = 2;

    (void) state;
    other = atls_store_fs_open(fx.root, err, sizeof(err));
    assert_non_null(other);
    lk = first_attempt_busy(other);
    atls_store_unlock(other, lk);
    atls_store_close(other);

    assert_int_equal(fakehost_run(&h, until_done, &two, RUN_MS, NULL), 0);
    assert_int_equal(cert.rc, 0);
    assert_int_equal(cert.n_deployed, 1);
    assert_int_equal(logcap_count("looked at again in"), 1);
}

static int
until_retried(fakehost_t *fh, void *arg)
{
    const long long *retry_at = arg;

    /* the retry's time passed (the test before shows it orders when the
     * lock is free) and all is quiet */
    return atls_sched_now_ms() > *retry_at && fakehost_until_settled(fh, NULL);
}

/* The holder deploys: A's retry finds the certificate valid and orders
 * nothing. */
static void
test_busy_holder_deploys_nothing_ordered(void **state)
{
    fakehost_t         hb;          /* node B, on its own store handle */
    fakehost_cert_t    bcert;
    atls_store_t      *other;
    atls_store_lock_t *lk;
    char               err[256];
    long long          retry_at;

    (void) state;
    other = atls_store_fs_open(fx.root, err, sizeof(err));
    assert_non_null(other);
    lk = first_attempt_busy(other);
    retry_at = atls_sched_now_ms() + SCHED_BUSY_RETRY_S * 1000;

    /* B finishes its order (the lock it held is its order's) */
    atls_store_unlock(other, lk);
    fakehost_init(&hb);
    schedfx_start(&hb, other);
    schedfx_add(&hb, &fx, &bcert, NAME);
    atls_sched_check(hb.s);
    assert_int_equal(fakehost_run(&hb, fakehost_until_done, &bcert, RUN_MS, NULL), 0);
    assert_int_equal(bcert.rc, 0);
    assert_int_equal(bcert.n_deployed, 1);

    assert_int_equal(fakehost_run(&h, until_retried, &retry_at, RUN_MS, NULL), 0);
    assert_int_equal(cert.done, 1);                 /* no second attempt */
    assert_int_equal(fakeca_count(cert.ca, "POST", "/new-order"), 0);

    fakehost_teardown(&hb, &bcert, 1);
    atls_store_close(other);
}

/* The lock taken just after another process deployed: an order planned
 * from the meta before that deploy does not start. */
static void
test_superseded_plan_not_ordered(void **state)
{
    atls_cert_meta_t    m;
    atls_cert_kt_info_t *ki;
    atls_job_refusal_t  why;
    atls_job_t         *j;
    char               *was, err[256];
    int                 one = 1;

    (void) state;
    schedfx_start(&h, fx.st);
    schedfx_add(&h, &fx, &cert, NAME);
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, until_done, &one, RUN_MS, NULL), 0);
    assert_int_equal(cert.rc, 0);
    atls_sched_free(h.s);
    h.s = NULL;

    assert_int_equal(atls_store_load_meta(fx.st, NAME, &m, err, sizeof(err)), ATLS_STORE_OK);
    ki = atls_cert_meta_kt(&m, ATLS_KEY_EC256);
    assert_non_null(ki);
    assert_non_null(ki->serial);
    /* planned from the meta before the deploy: another serial */
    was = ki->serial;
    ki->serial = strdup("0bad");
    j = atls_job_start_planned(fx.st, &m, ATLS_KEY_EC256, &why, err, sizeof(err));
    assert_null(j);
    assert_int_equal(why, ATLS_JOB_SUPERSEDED);
    assert_non_null(strstr(err, "already renewed by another process"));
    assert_non_null(strstr(err, was));
    /* planned from the meta as it is: it starts */
    free(ki->serial);
    ki->serial = was;
    j = atls_job_start_planned(fx.st, &m, ATLS_KEY_EC256, &why, err, sizeof(err));
    if (j == NULL) {
        fail_msg("start: %s", err);
    }
    atls_job_free(j);
    atls_cert_meta_free(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_busy_holder_dies_order_taken_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_busy_holder_deploys_nothing_ordered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_superseded_plan_not_ordered, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
