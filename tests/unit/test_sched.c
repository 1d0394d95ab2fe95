/*
 * The scheduler (atls_sched.h) on a real filesystem store, driven by a fake
 * host (support/fakehost) whose requests a canned CA per certificate
 * (support/fakeca) answers: slots, account gating, key types in turn, dns
 * hooks and their time limits, stop and free.
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
#include "atls.h"
#include "atls_job.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "support/arileaf.h"
#include "support/fakeca.h"
#include "support/fakehost.h"
#include "support/logcap.h"
#include "support/tmptree.h"

#define DIRECTORY  FAKECA_BASE "/dir"
#define MAX_CERTS  8
#define RUN_MS     20000

static char            root[256];
static atls_store_t   *st;
static EVP_PKEY       *akey;
static fakehost_t      h;
static fakehost_cert_t certs[MAX_CERTS];
static size_t          n_certs;
static int             opt_ari;        /* sched_start asks for ARI */

/* ---- fixtures ------------------------------------------------------------------- */

static int
setup(void **state)
{
    char  err[256];
    char *url = NULL;
    int   created = 0;

    (void) state;
    logcap_start(ATLS_LOG_DEBUG);
    snprintf(root, sizeof(root), "/tmp/atls-sched-XXXXXX");
    if (mkdtemp(root) == NULL) {
        return -1;
    }
    st = atls_store_fs_open(root, err, sizeof(err));
    if (st == NULL) {
        return -1;
    }
    /* the account key every fakeca expects; no account URL yet */
    akey = NULL;
    if (atls_store_load_account(st, DIRECTORY, &akey, &url, &created, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        return -1;
    }
    free(url);
    fakehost_init(&h);
    n_certs = 0;
    opt_ari = 0;
    return 0;
}

static int
teardown(void **state)
{
    (void) state;
    fakehost_teardown(&h, certs, n_certs);
    EVP_PKEY_free(akey);
    atls_store_close(st);
    tmptree_rm(root);
    logcap_stop();
    return 0;
}

static void
account_known(void)
{
    char err[256];

    assert_int_equal(atls_store_save_account(st, DIRECTORY, FAKECA_ACCT_URL, NULL, 0, err,
                                             sizeof(err)), ATLS_STORE_OK);
}

static void
sched_start(size_t max_parallel, long hook_timeout_s, long slice_ms)
{
    atls_sched_opts_t o;
    char              err[256];

    memset(&o, 0, sizeof(o));
    o.max_parallel = max_parallel;
    o.hook_timeout_s = hook_timeout_s;
    o.slice_ms = slice_ms;
    o.ari = opt_ari;
    h.s = atls_sched_new(st, &h.host, &o, err, sizeof(err));
    assert_non_null(h.s);
}

static void
issuer_init(atls_issuer_t *is, atls_challenge_type_t t)
{
    memset(is, 0, sizeof(*is));
    is->directory = (char *) DIRECTORY;
    is->challenge = t;
    is->agree_tos = 1;
    if (t == ATLS_CHAL_DNS01) {
        is->dns_hook = (char *) "/usr/local/bin/dns-hook";
    }
}

/* A managed certificate for names, with its own fakeca. */
static fakehost_cert_t *
cert_add(const char *const *names, size_t n, const atls_issuer_t *is, int account_exists)
{
    fakehost_cert_t *c;
    char             err[256];

    assert_true(n_certs < MAX_CERTS);
    c = &certs[n_certs++];
    assert_int_equal(fakehost_cert_init(c, names[0], akey, account_exists), 0);
    c->sched = atls_sched_add(h.s, names, n, is, c, err, sizeof(err));
    assert_non_null(c->sched);
    return c;
}

static fakehost_cert_t *
cert_add_one(const char *name, atls_challenge_type_t t, int account_exists)
{
    atls_issuer_t is;

    issuer_init(&is, t);
    return cert_add(&name, 1, &is, account_exists);
}

/* One certificate of its own, with the account known, run until idle. */
static fakehost_cert_t *
run_alone(const char *name, atls_challenge_type_t t)
{
    fakehost_cert_t *c;

    account_known();
    sched_start(0, 0, 0);
    c = cert_add_one(name, t, 1);
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(c->done, 1);
    return c;
}

static void
assert_stored(const fakehost_cert_t *c, atls_key_type_t kt)
{
    EVP_PKEY       *key = NULL;
    STACK_OF(X509) *chain = NULL;
    char           *id = atls_cert_id(c->name);
    char            err[256];

    assert_int_equal(atls_store_load_cert(st, id, kt, &key, &chain, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_chain_check(chain, key, &c->name, 1, err, sizeof(err)), 0);
    EVP_PKEY_free(key);
    atls_chain_free(chain);
    free(id);
}

static int
until_all_done(fakehost_t *fh, void *arg)
{
    size_t i;

    (void) fh;
    (void) arg;
    for (i = 0; i < n_certs; i++) {
        if (certs[i].done == 0) {
            return 0;
        }
    }
    return 1;
}

static int
until_started(fakehost_t *fh, void *arg)
{
    (void) fh;
    return ((fakehost_cert_t *) arg)->started;
}

/* Runs until the hook "action _acme-challenge.<name>" runs; returns it. */
static fakehost_hook_t *
hook_wait(const char *action, const char *name)
{
    char what[160];

    snprintf(what, sizeof(what), "%s _acme-challenge.%s", action, name);
    assert_int_equal(fakehost_run(&h, fakehost_until_hook, what, RUN_MS, NULL), 0);
    return fakehost_hook_find(&h, action, what + strlen(action) + 1);
}

/* Puts c in backoff: nothing is due for an hour. */
static void
backoff(const char *name)
{
    atls_cert_meta_t m;
    atls_issuer_t    is;
    char             err[256];

    issuer_init(&is, ATLS_CHAL_HTTP01);
    assert_int_equal(atls_job_ensure(st, &name, 1, &is, &m, err, sizeof(err)), 0);
    m.failures = 1;
    m.next_attempt = time(NULL) + 3600;
    m.state = ATLS_STATE_FAILED;
    assert_int_equal(atls_store_save_meta(st, &m, err, sizeof(err)), ATLS_STORE_OK);
    atls_cert_meta_free(&m);
}

/* ---- the tests ------------------------------------------------------------------ */

static void
test_issue_one(void **state)
{
    fakehost_cert_t *c;
    char            *url = NULL;
    EVP_PKEY        *k = NULL;
    char             err[256];
    int              created = 0;

    (void) state;
    sched_start(0, 0, 0);
    c = cert_add_one("one.example", ATLS_CHAL_HTTP01, 0);
    assert_int_equal(atls_sched_idle(h.s), 1);
    atls_sched_check(h.s);
    assert_int_equal(atls_sched_idle(h.s), 0);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);

    assert_int_equal(c->done, 1);
    assert_int_equal(c->rc, 0);
    assert_int_equal(c->n_deployed, 1);
    assert_int_equal(c->deployed[0], ATLS_KEY_EC256);
    assert_int_equal(c->ca->violations, 0);
    assert_stored(c, ATLS_KEY_EC256);
    /* the challenge was published and withdrawn again */
    assert_int_equal(h.publishes, 1);
    assert_int_equal(h.live_published, 0);
    assert_int_equal(atls_sched_running(h.s), 0);
    /* the job saved the account URL */
    assert_int_equal(atls_store_load_account(st, DIRECTORY, &k, &url, &created, err,
                                             sizeof(err)), ATLS_STORE_OK);
    assert_string_equal(url, FAKECA_ACCT_URL);
    free(url);
    EVP_PKEY_free(k);
    assert_int_equal(logcap_count("ordering certificate \"one.example\" (ec256) from "
                               DIRECTORY ", 1 of 8 orders in flight, creating the account first"),
                     1);
}

static void
test_slots_limit(void **state)
{
    static const char *names[] = { "s1.example", "s2.example", "s3.example", "s4.example",
                                   "s5.example" };
    size_t             i;

    (void) state;
    account_known();
    sched_start(2, 0, 0);
    for (i = 0; i < 5; i++) {
        cert_add_one(names[i], ATLS_CHAL_HTTP01, 1);
    }
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    for (i = 0; i < 5; i++) {
        assert_int_equal(certs[i].done, 1);
        assert_int_equal(certs[i].rc, 0);
        assert_stored(&certs[i], ATLS_KEY_EC256);
    }
    /* never more than 2, but 2 side by side */
    assert_int_equal(h.max_active, 2);
    assert_true(h.max_running <= 2);
}

static void
test_account_gating(void **state)
{
    static const char *names[] = { "g1.example", "g2.example", "g3.example" };
    fakehost_cert_t   *first;
    size_t             i, k, new_order = 0;

    (void) state;
    sched_start(0, 0, 0);
    for (i = 0; i < 3; i++) {
        cert_add_one(names[i], ATLS_CHAL_HTTP01, 0);
    }
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, until_all_done, NULL, RUN_MS, NULL), 0);
    for (i = 0; i < 3; i++) {
        assert_int_equal(certs[i].rc, 0);
    }
    /* one order went first; the others sent nothing until it had an account
     * (it asks for an order only then) */
    first = h.log[0].cert;
    for (k = 0; k < h.n_log && h.log[k].cert == first; k++) {
        if (strcmp(h.log[k].path, "/new-order") == 0) {
            new_order++;
        }
    }
    assert_true(k < h.n_log);
    assert_int_equal(new_order, 1);
    assert_int_equal(logcap_count("creating the account first"), 1);
}

static void
test_key_types_in_turn(void **state)
{
    const char      *name = "kt.example";
    atls_issuer_t    is;
    fakehost_cert_t *c;
    size_t           i, orders[3] = { 0, 0, 0 };

    (void) state;
    account_known();
    sched_start(0, 0, 0);
    issuer_init(&is, ATLS_CHAL_HTTP01);
    is.key_types[0] = ATLS_KEY_EC256;
    is.key_types[1] = ATLS_KEY_RSA2048;
    is.n_key_types = 2;
    c = cert_add(&name, 1, &is, 1);
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);

    assert_int_equal(c->done, 1);
    assert_int_equal(c->rc, 0);
    assert_int_equal(c->n_deployed, 2);
    assert_int_equal(c->deployed[0], ATLS_KEY_EC256);
    assert_int_equal(c->deployed[1], ATLS_KEY_RSA2048);
    assert_stored(c, ATLS_KEY_EC256);
    assert_stored(c, ATLS_KEY_RSA2048);
    /* the second order sent its first request after the first one ended */
    assert_int_equal(fakeca_count(c->retired[0], "POST", "/new-order"), 1);
    assert_int_equal(fakeca_count(c->ca, "POST", "/new-order"), 1);
    for (i = 0; i < h.n_log; i++) {
        if (strcmp(h.log[i].path, "/new-order") == 0) {
            orders[h.log[i].deployed]++;
        }
    }
    assert_int_equal(orders[0], 1);
    assert_int_equal(orders[1], 1);
}

static void
test_hanging_hook(void **state)
{
    fakehost_cert_t *hooked, *plain;
    fakehost_hook_t *hk;

    (void) state;
    account_known();
    sched_start(0, 3, 0);     /* room for the other order on a busy machine */
    hooked = cert_add_one("hang.example", ATLS_CHAL_DNS01, 1);
    plain = cert_add_one("plain.example", ATLS_CHAL_HTTP01, 1);
    atls_sched_check(h.s);

    /* the other order is issued while the hook hangs */
    assert_int_equal(fakehost_run(&h, fakehost_until_done, plain, RUN_MS, NULL), 0);
    assert_int_equal(plain->rc, 0);
    hk = fakehost_hook_find(&h, "setup", "_acme-challenge.hang.example");
    assert_non_null(hk);
    assert_string_equal(hk->argv[0], "/usr/local/bin/dns-hook");
    assert_int_equal(hooked->done, 0);
    assert_int_equal(h.kills, 0);

    /* the time limit kills it and fails the order */
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(h.kills, 1);
    assert_int_equal(hk->killed, 1);
    assert_int_equal(hooked->done, 1);
    assert_int_equal(hooked->rc, -1);
    assert_non_null(strstr(hooked->err.detail, "dns hook timed out after 3 s"));
    assert_string_equal(hooked->err.cert_id, "hang.example");
    assert_string_equal(hooked->err.key_type, "ec256");
    /* the job layer logs the failure; the scheduler does not repeat it */
    assert_int_equal(logcap_count("timed out after 3 s"), 1);
}

static void
test_failing_hook(void **state)
{
    static const char *names[] = { "a.example", "b.example" };
    atls_issuer_t      is;
    fakehost_cert_t   *hooked, *plain;
    fakehost_hook_t   *hk;
    size_t             i, teardowns = 0;

    (void) state;
    account_known();
    sched_start(0, 0, 0);
    issuer_init(&is, ATLS_CHAL_DNS01);
    hooked = cert_add(names, 2, &is, 1);
    plain = cert_add_one("plain.example", ATLS_CHAL_HTTP01, 1);
    atls_sched_check(h.s);

    hk = hook_wait("setup", "a.example");
    assert_non_null(hk->argv[3]);
    fakehost_hook_report(&h, hk, 1, NULL);
    fakehost_hook_report(&h, hook_wait("setup", "b.example"), 0, "no such zone");
    /* the record of a.example is removed again */
    hk = hook_wait("teardown", "a.example");
    assert_int_equal(hooked->done, 1);  /* not held up by the removal */
    fakehost_hook_report(&h, hk, 1, NULL);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);

    assert_int_equal(hooked->done, 1);
    assert_int_equal(hooked->rc, -1);
    assert_non_null(strstr(hooked->err.detail, "no such zone"));
    assert_string_equal(hooked->err.cert_id, "a.example");
    assert_int_equal(plain->done, 1);
    assert_int_equal(plain->rc, 0);
    for (i = 0; i < h.n_hooks; i++) {
        teardowns += strcmp(h.hooks[i].argv[1], "teardown") == 0;
    }
    assert_int_equal(teardowns, 1);
    assert_int_equal(h.kills, 0);
}

static void
test_teardown_hook_times_out(void **state)
{
    static const char *names[] = { "c.example", "d.example" };
    atls_issuer_t      is;
    fakehost_cert_t   *c;
    fakehost_hook_t   *hk, *again;

    (void) state;
    account_known();
    sched_start(0, 1, 0);
    issuer_init(&is, ATLS_CHAL_DNS01);
    is.key_types[0] = ATLS_KEY_EC256;
    is.key_types[1] = ATLS_KEY_EC384;
    is.n_key_types = 2;
    c = cert_add(names, 2, &is, 1);
    atls_sched_check(h.s);
    fakehost_hook_report(&h, hook_wait("setup", "c.example"), 1, NULL);
    fakehost_hook_report(&h, hook_wait("setup", "d.example"), 0, NULL);
    hk = hook_wait("teardown", "c.example");

    /* the ec384 order waits for the removal, which never reports: it starts
     * once the time limit killed the hook */
    again = hook_wait("setup", "c.example");
    assert_int_equal(hk->killed, 1);
    assert_int_equal(logcap_count("dns hook timed out after 1 s (removing "
                               "_acme-challenge.c.example)"), 1);
    assert_int_equal(c->done, 0);
    fakehost_hook_report(&h, again, 0, "refused");
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);

    /* the first failure is the one reported */
    assert_int_equal(c->done, 1);
    assert_int_equal(c->rc, -1);
    assert_string_equal(c->err.key_type, "ec256");
    assert_non_null(strstr(c->err.detail, "dns hook setup failed: no reason given"));
    assert_int_equal(h.kills, 1);
}

static int
until_published(fakehost_t *fh, void *arg)
{
    (void) arg;
    return fh->live_published > 0;
}

static void
test_free_withdraws(void **state)
{
    (void) state;
    account_known();
    sched_start(0, 0, 0);
    cert_add_one("pub.example", ATLS_CHAL_HTTP01, 1);
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, until_published, NULL, RUN_MS, NULL), 0);
    atls_sched_free(h.s);
    h.s = NULL;
    assert_int_equal(h.live_published, 0);
    assert_int_equal(h.withdraws, 1);
    assert_int_equal(h.n_done, 0);
}

static void
test_hook_cannot_start(void **state)
{
    fakehost_cert_t *c;

    (void) state;
    h.hook_start_fails = 1;
    c = run_alone("nofork.example", ATLS_CHAL_DNS01);
    assert_int_equal(c->rc, -1);
    assert_non_null(strstr(c->err.detail, "cannot fork"));
}

static void
test_nothing_due(void **state)
{
    fakehost_cert_t *c;

    (void) state;
    account_known();
    backoff("later.example");
    sched_start(0, 0, 0);
    c = cert_add_one("later.example", ATLS_CHAL_HTTP01, 1);
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(h.n_log, 0);
    assert_int_equal(c->done, 0);

    /* forced: ordered whatever the backoff */
    atls_sched_force(h.s, c->sched);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(c->done, 1);
    assert_int_equal(c->rc, 0);
    assert_stored(c, ATLS_KEY_EC256);
}

/* An issued certificate is not ordered again by the next pass.  Needs the
 * plan to know the stored certificates (meta kt_info); skipped before. */
static void
test_issued_nothing_due(void **state)
{
    fakehost_cert_t  *c;
    atls_cert_meta_t  m;
    atls_plan_t       plan;
    size_t            sent;
    char              err[256];

    (void) state;
    c = run_alone("again.example", ATLS_CHAL_HTTP01);
    assert_int_equal(c->rc, 0);
    assert_int_equal(atls_store_load_meta(st, "again.example", &m, err, sizeof(err)),
                     ATLS_STORE_OK);
    atls_job_plan(&m, time(NULL), 0, 0, 0, &plan);
    atls_cert_meta_free(&m);
    if (plan.kind != ATLS_PLAN_NOTHING) {
        skip();
    }
    sent = h.n_log;
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(h.n_log, sent);
    assert_int_equal(c->done, 1);
}

/* A valid certificate for name, renewal far off: 1 when the plan then asks
 * the CA for renewal information (it needs the plan's kt_info rules). */
static int
ari_ready(const char *name)
{
    atls_cert_meta_t m;
    atls_issuer_t    is;
    atls_plan_t      plan;
    char             err[256];

    issuer_init(&is, ATLS_CHAL_HTTP01);
    assert_int_equal(arileaf_store(st, name, &name, 1, ATLS_KEY_EC256), 0);
    assert_int_equal(atls_job_ensure(st, &name, 1, &is, &m, err, sizeof(err)), 0);
    m.state = ATLS_STATE_VALID;
    m.renew_at = time(NULL) + 86400 * 30;
    assert_int_equal(atls_store_save_meta(st, &m, err, sizeof(err)), ATLS_STORE_OK);
    atls_job_plan(&m, time(NULL), 0, 0, 1, &plan);
    atls_cert_meta_free(&m);
    return plan.kind == ATLS_PLAN_ARI;
}

static size_t
requests_to(const char *path)
{
    size_t i, n = 0;

    for (i = 0; i < h.n_log; i++) {
        n += strcmp(h.log[i].path, path) == 0;
    }
    return n;
}

static void
test_ari_once_per_directory(void **state)
{
    static const char *names[] = { "ari1.example", "ari2.example", "ari3.example" };
    size_t             i;

    (void) state;
    account_known();
    for (i = 0; i < 3; i++) {
        if (!ari_ready(names[i])) {
            skip();
        }
    }
    opt_ari = 1;
    sched_start(1, 0, 0);
    for (i = 0; i < 3; i++) {
        cert_add_one(names[i], ATLS_CHAL_HTTP01, 1);     /* no renewalInfo */
    }
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    /* asked once for the directory, not once per certificate */
    assert_int_equal(requests_to("/dir"), 1);
    assert_int_equal(requests_to("/new-order"), 0);
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(requests_to("/dir"), 1);
    for (i = 0; i < 3; i++) {
        assert_int_equal(certs[i].done, 0);     /* no attempt */
    }
    assert_int_equal(atls_sched_running(h.s), 0);
}

static void
test_ari_window_renews(void **state)
{
    const char      *name = "window.example";
    fakehost_cert_t *c;
    char             body[256], a[32], b[32];
    time_t           now = time(NULL);

    (void) state;
    account_known();
    if (!ari_ready(name)) {
        skip();
    }
    opt_ari = 1;
    sched_start(0, 0, 0);
    c = cert_add_one(name, ATLS_CHAL_HTTP01, 1);
    /* the CA wants it renewed now */
    atls_rfc3339_format(now - 7200, a, sizeof(a));
    atls_rfc3339_format(now - 3600, b, sizeof(b));
    snprintf(body, sizeof(body), "{\"suggestedWindow\":{\"start\":\"%s\",\"end\":\"%s\"}}",
             a, b);
    c->ca->renewal_info = 1;
    c->ca->ari_body = body;
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(requests_to("/new-order"), 0);
    assert_int_equal(c->done, 0);
    /* the next pass renews it */
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(requests_to("/new-order"), 1);
    assert_int_equal(c->done, 1);
    assert_int_equal(c->rc, 0);
}

static void
test_stop_in_done(void **state)
{
    static const char *names[] = { "st1.example", "st2.example", "st3.example" };
    size_t             i;

    (void) state;
    account_known();
    sched_start(1, 0, 0);
    for (i = 0; i < 3; i++) {
        cert_add_one(names[i], ATLS_CHAL_HTTP01, 1);
    }
    h.stop_in_done = 1;
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(certs[0].done, 1);
    assert_int_equal(certs[0].rc, 0);
    /* no new order after stop, and no pass either */
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    for (i = 0; i < h.n_log; i++) {
        assert_ptr_equal(h.log[i].cert, &certs[0]);
    }
    assert_int_equal(certs[1].done, 0);
    assert_int_equal(certs[2].done, 0);
}

static void
test_stop_in_flight(void **state)
{
    fakehost_cert_t *a, *b;

    (void) state;
    account_known();
    sched_start(1, 0, 0);
    a = cert_add_one("run.example", ATLS_CHAL_HTTP01, 1);
    b = cert_add_one("wait.example", ATLS_CHAL_HTTP01, 1);
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, until_started, a, RUN_MS, NULL), 0);
    atls_sched_stop(h.s);
    /* what is in flight runs to its end */
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(a->rc, 0);
    assert_int_equal(a->done, 1);
    assert_int_equal(b->done, 0);
    assert_int_equal(b->started, 0);
}

static void
test_free_cancels(void **state)
{
    fakehost_cert_t *hooked, *plain;
    size_t           n_done;

    (void) state;
    account_known();
    sched_start(0, 0, 0);
    hooked = cert_add_one("kill.example", ATLS_CHAL_DNS01, 1);
    plain = cert_add_one("cancel.example", ATLS_CHAL_HTTP01, 1);
    atls_sched_check(h.s);
    /* only the hooked order moves: the other's first request stays in flight */
    assert_int_equal(fakehost_run(&h, fakehost_until_hook,
                                  "setup _acme-challenge.kill.example", RUN_MS, hooked), 0);
    assert_int_equal(h.n_http, 1);
    assert_ptr_equal(h.http[0].cert, plain);
    n_done = h.n_done;
    atls_sched_free(h.s);
    h.s = NULL;
    assert_int_equal(h.cancels, 1);
    assert_int_equal(h.kills, 1);
    assert_int_equal(h.n_http, 0);
    assert_int_equal(h.n_done, n_done);
    assert_int_equal(h.timer_at, -1);
}

static void
test_pass_in_slices(void **state)
{
    static char names[200][32];
    const char   *np;
    atls_issuer_t is;
    size_t        i;
    char          err[256];

    (void) state;
    sched_start(0, 0, 1);
    issuer_init(&is, ATLS_CHAL_HTTP01);
    for (i = 0; i < 200; i++) {
        snprintf(names[i], sizeof(names[i]), "slice%zu.example", i);
        backoff(names[i]);
        np = names[i];
        assert_non_null(atls_sched_add(h.s, &np, 1, &is, NULL, err, sizeof(err)));
    }
    atls_sched_check(h.s);
    /* 200 store reads do not fit in 1 ms: the pass yields through the timer */
    assert_int_equal(atls_sched_idle(h.s), 0);
    assert_true(h.timer_at >= 0);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
    assert_int_equal(h.n_log, 0);
    assert_true(h.timer_calls > 2);
}

static void
test_start_busy(void **state)
{
    fakehost_cert_t   *busy, *next;
    atls_store_t      *other;
    atls_store_lock_t *lk = NULL;
    char               err[256];

    (void) state;
    account_known();
    sched_start(1, 0, 0);
    busy = cert_add_one("busy.example", ATLS_CHAL_HTTP01, 1);
    next = cert_add_one("next.example", ATLS_CHAL_HTTP01, 1);
    /* a second handle stands for another process renewing busy.example */
    other = atls_store_fs_open(root, err, sizeof(err));
    assert_non_null(other);
    assert_int_equal(atls_store_lock_cert(other, "busy.example", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, until_all_done, NULL, RUN_MS, NULL), 0);
    atls_store_unlock(other, lk);
    atls_store_close(other);

    /* reported once (looked at again soon: test_sched_busy.c), and the
     * next certificate went on */
    assert_int_equal(busy->done, 1);
    assert_int_equal(busy->rc, -1);
    assert_string_equal(busy->err.type, "autotls:busy");
    assert_string_equal(busy->err.cert_id, "busy.example");
    assert_string_equal(busy->err.key_type, "ec256");
    assert_int_equal(logcap_count("another process is renewing busy.example"), 1);
    assert_int_equal(next->done, 1);
    assert_int_equal(next->rc, 0);
}

static void
test_send_fails(void **state)
{
    fakehost_cert_t *c;

    (void) state;
    h.http_send_fails = 1;
    c = run_alone("nonet.example", ATLS_CHAL_HTTP01);
    assert_int_equal(c->rc, -1);
    assert_int_equal(c->err.cls, ATLS_ERR_RETRY_LATER);
    assert_non_null(strstr(c->err.detail, "cannot start the HTTP transfer"));
}

static void
test_free_in_done(void **state)
{
    fakehost_cert_t *a, *b;

    (void) state;
    account_known();
    sched_start(2, 0, 0);
    a = cert_add_one("f1.example", ATLS_CHAL_HTTP01, 1);
    b = cert_add_one("f2.example", ATLS_CHAL_DNS01, 1);
    h.free_in_done = 1;
    atls_sched_check(h.s);
    /* the first done() frees the scheduler: the other order is cancelled
     * (its hook killed) without a done() of its own */
    assert_int_equal(fakehost_run(&h, until_all_done, NULL, RUN_MS, NULL), -1);
    assert_null(h.s);
    assert_int_equal(a->done + b->done, 1);
    assert_int_equal(h.n_done, 1);
    assert_int_equal(h.n_http, 0);
    assert_int_equal(h.timer_at, -1);
}

static void
test_request_answered(void **state)
{
    fakehost_cert_t *c;
    time_t           when;
    char             err[256];

    (void) state;
    backoff("asked.example");
    assert_int_equal(atls_store_request_renew(st, "asked.example", err, sizeof(err)),
                     ATLS_STORE_OK);
    c = run_alone("asked.example", ATLS_CHAL_HTTP01);
    assert_int_equal(c->rc, 0);
    assert_int_equal(atls_store_peek_request(st, "asked.example", &when), 0);
}

static void
test_add_refuses(void **state)
{
    const char   *none[] = { "" };
    atls_issuer_t is;
    char          err[256];

    (void) state;
    sched_start(0, 0, 0);
    issuer_init(&is, ATLS_CHAL_HTTP01);
    assert_null(atls_sched_add(h.s, none, 1, &is, NULL, err, sizeof(err)));
    is.directory = NULL;
    none[0] = "x.example";
    assert_null(atls_sched_add(h.s, none, 1, &is, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "directory"));
}

static void
test_add_replaces(void **state)
{
    static char        names[1000][32];
    atls_sched_cert_t *added[1000], *again;
    atls_issuer_t      is;
    const char        *np;
    int                data = 0;
    size_t             i;
    char               err[256];

    (void) state;
    sched_start(0, 0, 0);
    issuer_init(&is, ATLS_CHAL_HTTP01);
    for (i = 0; i < 1000; i++) {
        snprintf(names[i], sizeof(names[i]), "n%zu.example", i);
        np = names[i];
        added[i] = atls_sched_add(h.s, &np, 1, &is, NULL, err, sizeof(err));
        assert_non_null(added[i]);
        assert_string_equal(atls_sched_cert_id(added[i]), names[i]);
    }
    /* the same first name again: new settings for the same certificate */
    for (i = 0; i < 1000; i += 97) {
        np = names[i];
        again = atls_sched_add(h.s, &np, 1, &is, &data, err, sizeof(err));
        assert_ptr_equal(again, added[i]);
    }
    np = "*.wild.example";
    assert_string_equal(atls_sched_cert_id(atls_sched_add(h.s, &np, 1, &is, NULL, err,
                                                          sizeof(err))), "_.wild.example");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_issue_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_gating, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_types_in_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hanging_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_teardown_hook_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_withdraws, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_cannot_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_issued_nothing_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ari_once_per_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ari_window_renews, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_in_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pass_in_slices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_replaces, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
