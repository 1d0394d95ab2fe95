/*
 * On-demand issuance in the scheduler (atls_sched_on_demand) on a real
 * filesystem store, with the fake host and its canned CA: an allowed name
 * is registered and ordered, a denied one never costs an order, the ask
 * URL (answered by this test's host) down denies new names until its
 * failure is retried, budgets stop orders beyond them with the limit
 * named, a flood of random names orders nothing, and the requests Apache
 * children leave in the store are answered at each pass.
 *
 * The fake host stands for a server with one dynamic home: home() gives
 * one fakehost_cert_t for every on-demand name (max_parallel 1, so that
 * its canned CA serves one order at a time), and this test's done()
 * records which name ended how.
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
#include "atls_names.h"
#include "atls_ondemand.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "support/fakeca.h"
#include "support/fakehost.h"
#include "support/logcap.h"
#include "support/tmptree.h"

#define DIRECTORY  FAKECA_BASE "/dir"
#define ASK_URL    "http://ask.test/check"
#define RUN_MS     20000
#define MAX_ASKS   1100
#define MAX_SEEN   2100

typedef struct {
    atls_sched_op_t *op;
    char             url[300];
} ask_t;

typedef struct {
    char name[300];
    int  verdict;
    char why[300];
} seen_t;

static char            root[256];
static atls_store_t   *st;
static EVP_PKEY       *akey;
static fakehost_t      h;
static fakehost_cert_t home_cert;
static atls_issuer_t   home_issuer;
static atls_sched_host_t orig;          /* the fake host's own callbacks */
static atls_od_t      *gate;
static atls_events_t  *events;

static struct {
    ask_t   asks[MAX_ASKS];
    size_t  n_asks, asked;
    long    status;         /* the ask endpoint's answer; 0: down */
    int     hold;           /* leave asks in flight */
    seen_t  seen[MAX_SEEN];
    size_t  n_seen;
    char    done_name[8][254];
    int     done_rc[8];
    size_t  n_done;
} t;

/* ---- the host ------------------------------------------------------------------ */

static int
t_http_send(void *ctx, atls_sched_op_t *op, const atls_http_opts_t *o,
            const atls_http_request_t *req)
{
    if (atls_sched_op_data(op) != NULL) {
        return orig.http_send(ctx, op, o, req);
    }
    /* an ask: GET, no body, the gate's short timeout */
    assert_string_equal(req->method, "GET");
    assert_null(req->body);
    assert_int_equal(o->total_timeout_ms, 2000);
    assert_true(t.n_asks < MAX_ASKS);
    t.asks[t.n_asks].op = op;
    snprintf(t.asks[t.n_asks].url, sizeof(t.asks[0].url), "%s", req->url);
    t.n_asks++;
    t.asked++;
    return 0;
}

static void
t_http_cancel(void *ctx, atls_sched_op_t *op)
{
    size_t i;

    for (i = 0; i < t.n_asks; i++) {
        if (t.asks[i].op == op) {
            t.asks[i] = t.asks[--t.n_asks];
            return;
        }
    }
    orig.http_cancel(ctx, op);
}

static const atls_issuer_t *
t_home(void *ctx, const char *home, void **data)
{
    (void) ctx;
    if (home != NULL && home[0] != '\0' && strcmp(home, "shop") != 0) {
        return NULL;
    }
    *data = &home_cert;
    return &home_issuer;
}

static void
t_on_demand(void *ctx, const char *name, int verdict, const char *why)
{
    (void) ctx;
    assert_true(t.n_seen < MAX_SEEN);
    snprintf(t.seen[t.n_seen].name, sizeof(t.seen[0].name), "%s", name);
    t.seen[t.n_seen].verdict = verdict;
    snprintf(t.seen[t.n_seen].why, sizeof(t.seen[0].why), "%s", why);
    t.n_seen++;
}

static void
t_done(void *ctx, void *cert_data, const char *id, int rc, const atls_error_t *err)
{
    fakehost_t      *fh = ctx;
    fakehost_cert_t *c = cert_data;

    (void) err;
    assert_ptr_equal(c, &home_cert);
    assert_true(t.n_done < 8);
    snprintf(t.done_name[t.n_done], sizeof(t.done_name[0]), "%s", id);
    t.done_rc[t.n_done++] = rc;
    c->done++;
    if (c->started) {
        c->started = 0;
        fh->active--;
    }
    fh->n_done++;
}

/* Answers the asks in flight (unless held). */
static int
answer_asks(void)
{
    int n = 0;

    while (!t.hold && t.n_asks > 0) {
        atls_http_response_t resp;
        atls_sched_op_t     *op = t.asks[0].op;

        t.asks[0] = t.asks[--t.n_asks];
        memset(&resp, 0, sizeof(resp));
        resp.status = t.status;
        if (t.status == 0) {
            resp.transport_error = 1;
            snprintf(resp.error, sizeof(resp.error), "Connection refused");
        }
        atls_sched_http_done(h.s, op, &resp);
        n++;
    }
    return n;
}

static int
until_asks_or(fakehost_t *fh, void *arg)
{
    int (*until)(fakehost_t *, void *) = (int (*)(fakehost_t *, void *)) arg;

    return (!t.hold && t.n_asks > 0) || until(fh, NULL);
}

/* Runs the host until until() holds: asks answered, the CA's requests,
 * the timer. */
static int
run(int (*until)(fakehost_t *, void *))
{
    for (;;) {
        answer_asks();
        if (until(&h, NULL)) {
            return 0;
        }
        if (fakehost_run(&h, until_asks_or, (void *) until, RUN_MS, NULL) != 0
            && !(t.n_asks > 0 && !t.hold))
        {
            return -1;
        }
    }
}

static int
until_settled(fakehost_t *fh, void *arg)
{
    return fakehost_until_settled(fh, arg);
}

/* ---- fixtures ------------------------------------------------------------------ */

static int
setup(void **state)
{
    char  err[256];
    char *url = NULL;
    int   created = 0;

    (void) state;
    memset(&t, 0, sizeof(t));
    logcap_start(ATLS_LOG_DEBUG);
    snprintf(root, sizeof(root), "/tmp/atls-sched-od-XXXXXX");
    if (mkdtemp(root) == NULL) {
        return -1;
    }
    st = atls_store_fs_open(root, err, sizeof(err));
    if (st == NULL) {
        return -1;
    }
    akey = NULL;
    if (atls_store_load_account(st, DIRECTORY, &akey, &url, &created, err, sizeof(err))
        != ATLS_STORE_OK
        || atls_store_save_account(st, DIRECTORY, FAKECA_ACCT_URL, NULL, 0, err,
                                   sizeof(err)) != ATLS_STORE_OK)
    {
        return -1;
    }
    free(url);
    fakehost_init(&h);
    orig = h.host;
    h.host.http_send = t_http_send;
    h.host.http_cancel = t_http_cancel;
    h.host.home = t_home;
    h.host.on_demand = t_on_demand;
    h.host.done = t_done;
    if (fakehost_cert_init(&home_cert, "home.example.com", akey, 1) != 0) {
        return -1;
    }
    memset(&home_issuer, 0, sizeof(home_issuer));
    home_issuer.directory = (char *) DIRECTORY;
    home_issuer.challenge = ATLS_CHAL_HTTP01;
    home_issuer.agree_tos = 1;
    gate = NULL;
    events = NULL;
    return 0;
}

static int
teardown(void **state)
{
    (void) state;
    fakehost_teardown(&h, &home_cert, 1);
    atls_od_free(gate);
    atls_events_free(events);
    EVP_PKEY_free(akey);
    atls_store_close(st);
    tmptree_rm(root);
    logcap_stop();
    return 0;
}

static void
start(atls_od_conf_t *c)
{
    atls_sched_opts_t o;
    char              err[512];

    gate = atls_od_new(c, st, err, sizeof(err));
    if (gate == NULL) {
        fail_msg("atls_od_new: %s", err);
    }
    if (events == NULL) {
        atls_actor_t actor = { "server", "nginx/test", 1, -1, NULL };

        events = atls_events_new(st, &actor, NULL);
        assert_non_null(events);
    }
    memset(&o, 0, sizeof(o));
    o.max_parallel = 1;
    o.on_demand = gate;
    o.events = events;
    h.s = atls_sched_new(st, &h.host, &o, err, sizeof(err));
    assert_non_null(h.s);
}

static void
on_demand(const char *name)
{
    atls_sched_on_demand(h.s, name, strlen(name), NULL);
}

/* The last verdict on name; fails when there was none. */
static const seen_t *
verdict(const char *name)
{
    size_t i;

    for (i = t.n_seen; i > 0; i--) {
        if (strcmp(t.seen[i - 1].name, name) == 0) {
            return &t.seen[i - 1];
        }
    }
    fail_msg("no verdict on %s", name);
    return NULL;
}

static size_t
verdicts_on(const char *name)
{
    size_t i, n = 0;

    for (i = 0; i < t.n_seen; i++) {
        n += strcmp(t.seen[i].name, name) == 0;
    }
    return n;
}

/* New orders the CA saw (all of home_cert's canned CAs). */
static size_t
orders(void)
{
    size_t i, n = fakeca_count(home_cert.ca, "POST", "/new-order");

    for (i = 0; i < home_cert.n_retired; i++) {
        n += fakeca_count(home_cert.retired[i], "POST", "/new-order");
    }
    return n;
}

static int
registered(const char *name, atls_name_entry_t *e)
{
    char err[256];
    int  rc = atls_names_get(st, name, e, err, sizeof(err));

    return rc;
}

/* Audit records naming event and name. */
static size_t
audited(const char *event, const char *name)
{
    char   *audit = NULL, *p, *line, err[256], want_ev[64], want_name[300];
    size_t  len = 0, n = 0;

    if (atls_store_audit_read(st, 0, &audit, &len, err, sizeof(err)) != ATLS_STORE_OK) {
        return 0;
    }
    snprintf(want_ev, sizeof(want_ev), "\"event\":\"%s\"", event);
    snprintf(want_name, sizeof(want_name), "\"%s\"", name);
    for (line = strtok_r(audit, "\n", &p); line != NULL; line = strtok_r(NULL, "\n", &p)) {
        n += strstr(line, want_ev) != NULL && strstr(line, want_name) != NULL
             && strstr(line, "on-demand") != NULL;
    }
    free(audit);
    return n;
}

static void
assert_has_cert(const char *name)
{
    atls_cert_meta_t m;
    char             err[256];

    memset(&m, 0, sizeof(m));
    assert_int_equal(atls_store_load_meta(st, name, &m, err, sizeof(err)), ATLS_STORE_OK);
    assert_true(m.n_kt_info > 0);
    atls_cert_meta_free(&m);
}

/* ---- tests ------------------------------------------------------------------------ */

static void
test_allowed_name_ordered(void **state)
{
    atls_od_conf_t    c;
    atls_name_entry_t e;

    (void) state;
    memset(&c, 0, sizeof(c));
    c.allow = (char *[]) { "shop.example.com" };
    c.n_allow = 1;
    start(&c);

    on_demand("Shop.Example.COM");
    on_demand("shop.example.com");      /* in flight: not asked twice */
    assert_int_equal(verdict("shop.example.com")->verdict, ATLS_OD_ALLOW);
    assert_int_equal(verdicts_on("shop.example.com"), 1);
    assert_int_equal(registered("shop.example.com", &e), ATLS_STORE_OK);
    assert_string_equal(e.source, "on-demand");
    assert_int_equal(e.state, ATLS_NAME_ACTIVE);
    atls_name_entry_free(&e);

    assert_int_equal(run(until_settled), 0);
    assert_int_equal(t.n_done, 1);
    assert_string_equal(t.done_name[0], "shop.example.com");
    assert_int_equal(t.done_rc[0], 0);
    assert_int_equal(orders(), 1);
    assert_has_cert("shop.example.com");
    assert_int_equal(home_cert.n_deployed, 1);
    assert_int_equal(logcap_count("on-demand name shop.example.com allowed"), 1);
    assert_int_equal(audited("name-added", "shop.example.com"), 1);

    /* served from now on: asked about again, nothing is ordered */
    on_demand("shop.example.com");
    assert_int_equal(run(until_settled), 0);
    assert_int_equal(orders(), 1);
    assert_int_equal(verdict("shop.example.com")->verdict, ATLS_OD_ALLOW);
}

static void
test_denied_never_orders(void **state)
{
    atls_od_conf_t    c;
    atls_name_entry_t e;

    (void) state;
    memset(&c, 0, sizeof(c));
    c.deny = (char *[]) { "*.example.com" };
    c.n_deny = 1;
    c.allow = (char *[]) { "ok.example.com", "*.example.org" };
    c.n_allow = 2;
    start(&c);

    on_demand("ok.example.com");                /* the deny list wins */
    on_demand("other.example.net");             /* default deny */
    atls_sched_on_demand(h.s, "a\0b.example.org", 15, NULL);
    assert_int_equal(verdict("ok.example.com")->verdict, ATLS_OD_DENY);
    assert_non_null(strstr(verdict("ok.example.com")->why, "deny list"));
    assert_int_equal(verdict("other.example.net")->verdict, ATLS_OD_DENY);
    assert_int_equal(verdict("a\\x00b.example.org")->verdict, ATLS_OD_INVALID);

    assert_int_equal(run(until_settled), 0);
    assert_int_equal(h.n_log, 0);               /* not one request to the CA */
    assert_int_equal(orders(), 0);
    assert_int_equal(registered("ok.example.com", &e), ATLS_STORE_NOTFOUND);
    assert_int_equal(registered("other.example.net", &e), ATLS_STORE_NOTFOUND);

    /* a home this server does not have: nothing ordered either */
    atls_sched_on_demand(h.s, "x.example.org", 13, "elsewhere");
    assert_int_equal(verdict("x.example.org")->verdict, ATLS_OD_DENY);
    assert_non_null(strstr(verdict("x.example.org")->why, "no dynamic home"));
    assert_int_equal(orders(), 0);
}

static void
test_ask(void **state)
{
    atls_od_conf_t c;

    (void) state;
    memset(&c, 0, sizeof(c));
    c.ask_url = ASK_URL;
    start(&c);

    t.status = 200;
    t.hold = 1;
    on_demand("yes.example.com");
    on_demand("yes.example.com");       /* being decided: one ask */
    assert_int_equal(t.asked, 1);
    assert_string_equal(t.asks[0].url, ASK_URL "?domain=yes.example.com");
    assert_int_equal(atls_sched_idle(h.s), 0);      /* an ask in flight */
    t.hold = 0;
    assert_int_equal(run(until_settled), 0);
    assert_int_equal(verdict("yes.example.com")->verdict, ATLS_OD_ALLOW);
    assert_non_null(strstr(verdict("yes.example.com")->why, "HTTP 200"));
    assert_int_equal(orders(), 1);
    assert_has_cert("yes.example.com");

    t.status = 403;
    on_demand("no.example.com");
    assert_int_equal(run(until_settled), 0);
    assert_int_equal(verdict("no.example.com")->verdict, ATLS_OD_DENY);
    assert_non_null(strstr(verdict("no.example.com")->why, "HTTP 403"));
    assert_int_equal(orders(), 1);
    /* the answer is cached: asked again, the URL is not */
    on_demand("no.example.com");
    assert_int_equal(t.asked, 2);
}

static int
time_passed(time_t since, long s)
{
    return time(NULL) >= since + s;
}

static void
test_ask_down(void **state)
{
    atls_od_conf_t c;
    time_t         t0;
    long           waited = 0;

    (void) state;
    memset(&c, 0, sizeof(c));
    c.ask_url = ASK_URL;
    c.ask_fail_cache_s = 2;
    start(&c);

    /* a name with a certificate first */
    t.status = 200;
    on_demand("old.example.com");
    assert_int_equal(run(until_settled), 0);
    assert_has_cert("old.example.com");

    /* the endpoint goes down: new names denied, nothing ordered */
    t.status = 0;
    t0 = time(NULL);
    on_demand("new.example.com");
    assert_int_equal(run(until_settled), 0);
    assert_int_equal(verdict("new.example.com")->verdict, ATLS_OD_DENY);
    assert_non_null(strstr(verdict("new.example.com")->why, "could not be reached"));
    assert_int_equal(t.asked, 2);
    on_demand("new.example.com");               /* the failure is cached */
    assert_int_equal(t.asked, 2);
    assert_int_equal(orders(), 1);
    /* the stored name is served without the gate asking anyone */
    on_demand("old.example.com");
    assert_int_equal(verdict("old.example.com")->verdict, ATLS_OD_ALLOW);
    assert_int_equal(t.asked, 2);

    /* after ask_fail_cache_s the name is asked about again */
    t.status = 200;
    while (!time_passed(t0, 3)) {
        struct timespec ts = { 0, 50 * 1000000L };

        assert_true(waited++ < 100);
        nanosleep(&ts, NULL);
    }
    on_demand("new.example.com");
    assert_int_equal(t.asked, 3);
    assert_int_equal(run(until_settled), 0);
    assert_int_equal(verdict("new.example.com")->verdict, ATLS_OD_ALLOW);
    assert_int_equal(orders(), 2);
}

static void
test_budgets(void **state)
{
    atls_od_conf_t c;

    (void) state;
    memset(&c, 0, sizeof(c));
    c.allow = (char *[]) { "*.example.com", "*.example.org" };
    c.n_allow = 2;
    c.orders_per_min = 2;
    c.per_domain_week = 1;
    c.max_pending = 1;
    start(&c);

    on_demand("a.example.com");
    on_demand("b.example.org");     /* a is pending: one at a time */
    assert_int_equal(verdict("b.example.org")->verdict, ATLS_OD_LIMITED);
    assert_non_null(strstr(verdict("b.example.org")->why, "on_demand_max_pending 1"));
    assert_int_equal(run(until_settled), 0);

    on_demand("c.example.com");     /* example.com had its one this week */
    assert_int_equal(verdict("c.example.com")->verdict, ATLS_OD_LIMITED);
    assert_string_equal(verdict("c.example.com")->why,
                        "on_demand_per_domain_week 1 reached for example.com");
    on_demand("b.example.org");
    assert_int_equal(run(until_settled), 0);
    on_demand("d.example.net.example.org");
    assert_int_equal(verdict("d.example.net.example.org")->verdict, ATLS_OD_LIMITED);
    on_demand("e.example.com");
    assert_int_equal(run(until_settled), 0);
    assert_int_equal(orders(), 2);
    assert_int_equal(verdict("b.example.org")->verdict, ATLS_OD_ALLOW);
    /* the minute's two orders are spent: said once at the default level */
    assert_int_equal(logcap_count("on_demand_per_domain_week 1 reached for example.com"), 1);
    assert_int_equal(logcap_count("not ordered"), 3);

    atls_sched_free(h.s);
    h.s = NULL;
    atls_od_free(gate);
    c.per_domain_week = 0;
    c.max_pending = 0;
    start(&c);      /* a restart: the windows are the store's */
    on_demand("f.example.com");
    assert_int_equal(verdict("f.example.com")->verdict, ATLS_OD_LIMITED);
    assert_string_equal(verdict("f.example.com")->why, "on_demand_orders_per_min 2 reached");
    assert_int_equal(orders(), 2);
}

static void
flood_name(char *buf, size_t len, unsigned i)
{
    snprintf(buf, len, "%08x%u.flood.example", (unsigned) rand(), i);
}

static void
test_flood(void **state)
{
    atls_od_conf_t c;
    char           name[64];
    unsigned       i;
    size_t         denied = 0, limited = 0;

    (void) state;
    memset(&c, 0, sizeof(c));
    c.ask_url = ASK_URL;
    c.max_pending = 50;
    start(&c);
    srand(11);

    /* the endpoint slow: at most max_pending asks in flight */
    t.status = 403;
    t.hold = 1;
    for (i = 0; i < 1000; i++) {
        flood_name(name, sizeof(name), i);
        on_demand(name);
    }
    assert_int_equal(t.n_asks, 50);
    t.hold = 0;
    assert_int_equal(run(until_settled), 0);
    for (i = 0; i < t.n_seen; i++) {
        denied += t.seen[i].verdict == ATLS_OD_DENY;
        limited += t.seen[i].verdict == ATLS_OD_LIMITED;
    }
    assert_int_equal(denied, 50);
    assert_int_equal(limited, 950);
    assert_int_equal(orders(), 0);
    assert_int_equal(h.n_log, 0);

    /* without an ask URL: no request at all, denied at once */
    atls_sched_free(h.s);
    h.s = NULL;
    atls_od_free(gate);
    c.ask_url = NULL;
    start(&c);
    t.asked = 0;
    t.n_seen = 0;
    for (i = 0; i < 1000; i++) {
        flood_name(name, sizeof(name), i);
        on_demand(name);
    }
    assert_int_equal(t.n_seen, 1000);
    assert_int_equal(t.asked, 0);
    assert_int_equal(run(until_settled), 0);
    assert_int_equal(orders(), 0);
}

static void
test_failed_order_cooldown(void **state)
{
    atls_od_conf_t    c;
    atls_name_entry_t e;

    (void) state;
    memset(&c, 0, sizeof(c));
    c.allow = (char *[]) { "fail.example.com" };
    c.n_allow = 1;
    start(&c);
    home_cert.ca->invalid[0] = "fail.example.com";

    on_demand("fail.example.com");
    assert_int_equal(run(until_settled), 0);
    assert_int_equal(t.n_done, 1);
    assert_int_equal(t.done_rc[0], -1);
    assert_int_equal(logcap_count("on_demand_cooldown 3600 s"), 1);
    /* no certificate: out of the registry, not retried by the scheduler */
    assert_int_equal(registered("fail.example.com", &e), ATLS_STORE_OK);
    assert_int_equal(e.state, ATLS_NAME_REMOVED);
    atls_name_entry_free(&e);
    assert_int_equal(audited("name-added", "fail.example.com"), 1);
    assert_int_equal(audited("name-removed", "fail.example.com"), 1);
    atls_sched_names_sync(h.s);     /* the host saw the generation move */
    assert_null(atls_sched_find(h.s, "fail.example.com"));

    on_demand("fail.example.com");
    assert_int_equal(verdict("fail.example.com")->verdict, ATLS_OD_LIMITED);
    assert_non_null(strstr(verdict("fail.example.com")->why, "cooldown"));
    assert_int_equal(orders(), 1);
}

static void
test_child_requests(void **state)
{
    atls_od_conf_t   c;
    atls_od_entry_t *v;
    size_t           n;
    char             err[256];
    time_t           now = time(NULL);

    (void) state;
    memset(&c, 0, sizeof(c));
    c.allow = (char *[]) { "req.example.com" };
    c.n_allow = 1;
    start(&c);
    assert_int_equal(atls_od_request_put(st, "req.example.com", "shop", 10, now, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_od_request_put(st, "den.example.com", NULL, 10, now, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_od_answer_put(st, "old.example.com", "denied", now - 1, "x", err,
                                        sizeof(err)), ATLS_STORE_OK);

    atls_sched_check(h.s);      /* the pass reads the requests */
    assert_int_equal(atls_od_request_list(st, &v, &n, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(n, 2);     /* the expired answer is gone */
    assert_string_equal(v[0].name, "den.example.com");
    assert_string_equal(v[0].state, "denied");
    assert_true(v[0].until > now);
    assert_non_null(strstr(v[0].why, "default deny"));
    assert_string_equal(v[1].name, "req.example.com");
    assert_string_equal(v[1].state, "ordering");
    assert_string_equal(v[1].home, "shop");
    atls_od_entries_free(v, n);

    assert_int_equal(run(until_settled), 0);
    assert_int_equal(t.n_done, 1);
    assert_int_equal(t.done_rc[0], 0);
    assert_has_cert("req.example.com");
    /* the order ended: its entry is deleted, the answer stays */
    assert_int_equal(atls_od_request_list(st, &v, &n, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].name, "den.example.com");
    atls_od_entries_free(v, n);
}

/* A cluster node: its children's requests are in its own directory (the
 * gate's requests store), the registry in the scheduler's store. */
static void
test_child_requests_local(void **state)
{
    atls_od_conf_t    c;
    atls_od_entry_t  *v;
    atls_name_entry_t e;
    atls_store_t     *local;
    size_t            n;
    char              dir[300], err[256];
    time_t            now = time(NULL);

    (void) state;
    snprintf(dir, sizeof(dir), "%s/node", root);
    local = atls_store_fs_open(dir, err, sizeof(err));
    assert_non_null(local);
    memset(&c, 0, sizeof(c));
    c.allow = (char *[]) { "loc.example.com" };
    c.n_allow = 1;
    start(&c);
    atls_od_set_requests(gate, local);
    assert_ptr_equal(atls_od_requests(gate), local);
    assert_int_equal(atls_od_request_put(local, "loc.example.com", "shop", 10, now, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_od_request_put(local, "no.example.com", NULL, 10, now, err,
                                         sizeof(err)), ATLS_STORE_OK);

    atls_sched_check(h.s);
    /* answered where the children read, nothing in the shared store */
    assert_int_equal(atls_od_request_list(local, &v, &n, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].state, "ordering");
    assert_string_equal(v[1].state, "denied");
    atls_od_entries_free(v, n);
    assert_int_equal(atls_od_request_list(st, &v, &n, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(n, 0);
    atls_od_entries_free(v, n);
    /* registered in the scheduler's store: every node of it serves it */
    assert_int_equal(registered("loc.example.com", &e), ATLS_STORE_OK);
    assert_string_equal(e.home, "shop");
    atls_name_entry_free(&e);
    assert_int_equal(atls_names_get(local, "loc.example.com", &e, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);

    assert_int_equal(run(until_settled), 0);
    assert_has_cert("loc.example.com");
    assert_int_equal(atls_od_request_list(local, &v, &n, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].name, "no.example.com");
    atls_od_entries_free(v, n);
    atls_sched_free(h.s);       /* before the store its gate borrows */
    h.s = NULL;
    atls_store_close(local);
}

/* Another process of the store (a node of the cluster) holds the
 * certificate's lease when the on-demand order would start: not a failure
 * here (no cooldown, the name stays registered), and once that process
 * deployed, nothing is ordered again. */
static void
test_ordered_elsewhere(void **state)
{
    atls_od_conf_t     c;
    atls_name_entry_t  e;
    atls_store_t      *other;
    atls_store_lock_t *lk = NULL;
    char               err[256];

    (void) state;
    other = atls_store_fs_open(root, err, sizeof(err));
    assert_non_null(other);
    assert_int_equal(atls_store_lock_cert(other, "else.example.com", 0, &lk, err,
                                          sizeof(err)), ATLS_STORE_OK);
    memset(&c, 0, sizeof(c));
    c.allow = (char *[]) { "else.example.com" };
    c.n_allow = 1;
    start(&c);

    on_demand("else.example.com");
    assert_int_equal(verdict("else.example.com")->verdict, ATLS_OD_ALLOW);
    assert_int_equal(run(until_settled), 0);
    assert_int_equal(orders(), 0);
    assert_int_equal(logcap_count("ordered by another process"), 1);
    assert_int_equal(logcap_count("on_demand_cooldown"), 0);
    assert_int_equal(registered("else.example.com", &e), ATLS_STORE_OK);
    assert_int_equal(e.state, ATLS_NAME_ACTIVE);
    atls_name_entry_free(&e);
    atls_store_unlock(other, lk);
    atls_store_close(other);

    /* not in cooldown: asked for again, it is managed, not refused */
    on_demand("else.example.com");
    assert_int_equal(verdict("else.example.com")->verdict, ATLS_OD_ALLOW);
}

static void
test_no_gate(void **state)
{
    atls_sched_opts_t o;
    char              err[256];

    (void) state;
    memset(&o, 0, sizeof(o));
    h.s = atls_sched_new(st, &h.host, &o, err, sizeof(err));
    assert_non_null(h.s);
    on_demand("a.example.com");
    assert_int_equal(verdict("a.example.com")->verdict, ATLS_OD_DENY);
    assert_int_equal(orders(), 0);
}

#define OD_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        OD_TEST(test_allowed_name_ordered),
        OD_TEST(test_denied_never_orders),
        OD_TEST(test_ask),
        OD_TEST(test_ask_down),
        OD_TEST(test_budgets),
        OD_TEST(test_flood),
        OD_TEST(test_failed_order_cooldown),
        OD_TEST(test_child_requests),
        OD_TEST(test_child_requests_local),
        OD_TEST(test_ordered_elsewhere),
        OD_TEST(test_no_gate),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
