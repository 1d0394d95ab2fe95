/*
 * The scheduler's events (sched_event.c) on a real filesystem store,
 * driven by the fake host and the fake CA (support/revfix): what an order,
 * a deploy, a failure, the policy and OCSP emit, and the expiry alerts of
 * managed and static certificates, once per level across passes and
 * restarts.  Events are seen through the emitter's listener.
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
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <openssl/pem.h>
#include "atls.h"
#include "atls_event.h"
#include "atls_inventory.h"
#include "atls_policy.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "support/ocsppki.h"
#include "support/revfix.h"

#define OCSP_URL   "http://ocsp.test/r"
#define EC         ATLS_KEY_EC256
#define MAX_RECS   256

/* ---- what the listener saw ----------------------------------------------------- */

typedef struct {
    atls_event_type_t type;
    char              id[128];
    char              key_type[16];
    char              serial[132];
    char              old_serial[132];
    char              issuer[256];
    time_t            not_after;
    char              directory[128];
    char              source[16];
    char              path[256];
    long              level_s;
    unsigned          attempt;
    time_t            next_attempt;
    char              err_class[32];
    char              err_type[128];
    char              rule[32];
    char              revoked_source[16];
    int               reason;
    char              outcome[16];
} rec_t;

static rec_t               recs[MAX_RECS];
static size_t              n_recs;
static atls_events_t      *ev;
static atls_notify_conf_t  conf;
static atls_policy_t      *policy;

#define COPY(f, v) snprintf(r->f, sizeof(r->f), "%s", (v) != NULL ? (v) : "")

static void
listener(void *ctx, const atls_event_t *e, const char *json)
{
    rec_t *r;

    (void) ctx;
    assert_non_null(json);
    assert_true(n_recs < MAX_RECS);
    r = &recs[n_recs++];
    r->type = e->type;
    COPY(id, e->cert_id);
    COPY(key_type, e->key_type);
    COPY(serial, e->serial);
    COPY(old_serial, e->old_serial);
    COPY(issuer, e->issuer);
    COPY(directory, e->directory);
    COPY(source, e->source);
    COPY(path, e->path);
    COPY(err_class, e->err_class);
    COPY(err_type, e->err_type);
    COPY(rule, e->rule);
    COPY(revoked_source, e->revoked_source);
    COPY(outcome, e->outcome);
    r->not_after = e->not_after;
    r->level_s = e->level_s;
    r->attempt = e->attempt;
    r->next_attempt = e->next_attempt;
    r->reason = e->reason;
}

static size_t
count(atls_event_type_t t, const char *id)
{
    size_t i, n = 0;

    for (i = 0; i < n_recs; i++) {
        n += recs[i].type == t && (id == NULL || strcmp(recs[i].id, id) == 0);
    }
    return n;
}

/* The k-th event of type t about id (asserted to exist); its index in *at. */
static const rec_t *
nth(atls_event_type_t t, const char *id, size_t k, size_t *at)
{
    size_t i;

    for (i = 0; i < n_recs; i++) {
        if (recs[i].type == t && strcmp(recs[i].id, id) == 0 && k-- == 0) {
            if (at != NULL) {
                *at = i;
            }
            return &recs[i];
        }
    }
    fail_msg("no %s event #%zu about %s", atls_event_name(t), k, id);
    return NULL;
}

static uint64_t
counter(const char *name)
{
    char     **names = NULL, err[256];
    uint64_t  *values = NULL, v = 0;
    size_t     i, n = 0;

    assert_int_equal(atls_store_counters_load(rf.st, &names, &values, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    for (i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0) {
            v = values[i];
        }
        free(names[i]);
    }
    free(names);
    free(values);
    return v;
}

/* ---- fixtures ------------------------------------------------------------------ */

static int
setup(void **state)
{
    if (revfix_setup(state) != 0) {
        return -1;
    }
    n_recs = 0;
    memset(recs, 0, sizeof(recs));
    memset(&conf, 0, sizeof(conf));
    policy = NULL;
    ev = NULL;
    return 0;
}

static int
teardown(void **state)
{
    /* the scheduler borrows the emitter, which borrows the store */
    atls_sched_free(rf.h.s);
    rf.h.s = NULL;
    atls_events_free(ev);
    atls_policy_free(policy);
    ev = NULL;
    policy = NULL;
    return revfix_teardown(state);
}

/* The emitter (with conf's alert levels) and a scheduler using it. */
static void
sched_start(void)
{
    atls_sched_opts_t o;
    atls_actor_t      a;
    char              err[256];

    if (ev == NULL) {
        memset(&a, 0, sizeof(a));
        a.kind = "server";
        a.software = "test/1";
        a.pid = (long) getpid();
        a.uid = -1;
        ev = atls_events_new(rf.st, &a, &conf);
        assert_non_null(ev);
        atls_events_set_listener(ev, listener, NULL);
    }
    memset(&o, 0, sizeof(o));
    o.events = ev;
    o.policy = policy;
    rf.h.s = atls_sched_new(rf.st, &rf.h.host, &o, err, sizeof(err));
    assert_non_null(rf.h.s);
}

/* The scheduler of a server that restarted: its certificates added again. */
static void
sched_restart(void)
{
    atls_issuer_t is;
    char          err[256];
    size_t        i;

    atls_sched_free(rf.h.s);
    rf.h.s = NULL;
    sched_start();
    revfix_issuer(&is);
    for (i = 0; i < rf.n_certs; i++) {
        rf.certs[i].sched = atls_sched_add(rf.h.s, &rf.certs[i].name, 1, &is,
                                           &rf.certs[i], err, sizeof(err));
        assert_non_null(rf.certs[i].sched);
    }
}

/* c (set up with its fake CA) managed as the next certificate. */
static fakehost_cert_t *
cert_new_with(fakehost_cert_t *c)
{
    atls_issuer_t is;
    char          err[256];

    assert_true(c == &rf.certs[rf.n_certs] && rf.n_certs < REVFIX_MAX_CERTS);
    rf.n_certs++;
    revfix_issuer(&is);
    c->sched = atls_sched_add(rf.h.s, &c->name, 1, &is, c, err, sizeof(err));
    assert_non_null(c->sched);
    return c;
}

/* A certificate that has none in the store yet (the account is known). */
static fakehost_cert_t *
cert_new(const char *name)
{
    assert_true(rf.n_certs < REVFIX_MAX_CERTS);
    assert_int_equal(fakehost_cert_init(&rf.certs[rf.n_certs], name, rf.akey, 1), 0);
    return cert_new_with(&rf.certs[rf.n_certs]);
}

static void
stored_serial(const char *id, char *buf, size_t len)
{
    atls_cert_meta_t m = revfix_meta(id);

    assert_non_null(atls_cert_meta_kt(&m, EC));
    snprintf(buf, len, "%s", atls_cert_meta_kt(&m, EC)->serial);
    atls_cert_meta_free(&m);
}

static time_t
leaf_not_after(X509 *leaf)
{
    atls_cert_info_t info;
    time_t           t;

    memset(&info, 0, sizeof(info));
    assert_int_equal(atls_cert_info(leaf, &info), 0);
    t = info.not_after;
    atls_cert_info_free(&info);
    return t;
}

/* When the store file rel was last written (ns). */
static long long
written_at(const char *rel)
{
    char        path[512];
    struct stat sb;

    snprintf(path, sizeof(path), "%s/%s", rf.root, rel);
    assert_int_equal(stat(path, &sb), 0);
    return (long long) sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
}

/* ---- orders -------------------------------------------------------------------- */

/* A first certificate: obtaining, key-generated, obtained (its serial and
 * issuer), then deployed after the host's deployed(); counted once. */
static void
test_first_issue(void **state)
{
    fakehost_cert_t *c;
    const rec_t     *r;
    size_t           i_obtaining, i_obtained, i_deployed;
    char             serial[132];

    (void) state;
    sched_start();
    c = cert_new("new.test");
    revfix_pass();
    assert_int_equal(c->done, 1);
    assert_int_equal(c->rc, 0);
    assert_int_equal(c->n_deployed, 1);
    stored_serial("new.test", serial, sizeof(serial));

    assert_int_equal(count(ATLS_EV_OBTAINING, "new.test"), 1);
    r = nth(ATLS_EV_OBTAINING, "new.test", 0, &i_obtaining);
    assert_string_equal(r->key_type, "ec256");
    assert_string_equal(r->old_serial, "");
    assert_string_equal(r->directory, REVFIX_DIRECTORY);

    assert_int_equal(count(ATLS_EV_KEY_GENERATED, "new.test"), 1);  /* no account key */
    assert_int_equal(count(ATLS_EV_RENEWED, NULL), 0);
    assert_int_equal(count(ATLS_EV_OBTAINED, "new.test"), 1);
    r = nth(ATLS_EV_OBTAINED, "new.test", 0, &i_obtained);
    assert_string_equal(r->serial, serial);
    assert_string_equal(r->old_serial, "");
    assert_non_null(strstr(r->issuer, "CN="));
    assert_true(r->not_after > time(NULL));

    assert_int_equal(count(ATLS_EV_DEPLOYED, "new.test"), 1);
    r = nth(ATLS_EV_DEPLOYED, "new.test", 0, &i_deployed);
    assert_string_equal(r->serial, serial);
    assert_true(i_obtaining < i_obtained);
    assert_true(i_obtained < i_deployed);
    assert_int_equal(count(ATLS_EV_FAILED, NULL), 0);

    assert_int_equal(counter("orders.ok"), 1);
    assert_int_equal(counter("orders.failed"), 0);

    /* nothing due: a second pass says nothing */
    revfix_pass();
    assert_int_equal(count(ATLS_EV_OBTAINING, NULL), 1);
    assert_int_equal(counter("orders.ok"), 1);
}

/* The store knows no account at the CA: the first order creates it, and
 * says so once (the key was there: no account key generated). */
static void
test_account_created(void **state)
{
    fakehost_cert_t *c;
    const rec_t     *r;
    char            *caid = atls_ca_id(REVFIX_DIRECTORY), path[300], err[256];

    (void) state;
    snprintf(path, sizeof(path), "accounts/%s/account.json", caid);
    free(caid);
    assert_int_equal(rf.st->ops->del(rf.st, path, err, sizeof(err)), ATLS_STORE_OK);
    assert_false(atls_store_has_account(rf.st, REVFIX_DIRECTORY));
    sched_start();
    assert_int_equal(fakehost_cert_init(&rf.certs[0], "acct.test", rf.akey, 0), 0);
    c = cert_new_with(&rf.certs[0]);
    revfix_pass();
    assert_int_equal(c->rc, 0);
    assert_true(atls_store_has_account(rf.st, REVFIX_DIRECTORY));
    assert_int_equal(count(ATLS_EV_ACCOUNT_CREATED, NULL), 1);
    r = nth(ATLS_EV_ACCOUNT_CREATED, "acct.test", 0, NULL);
    assert_string_equal(r->directory, REVFIX_DIRECTORY);
    assert_int_equal(count(ATLS_EV_KEY_GENERATED, NULL), 1);

    /* known from now on */
    atls_sched_force(rf.h.s, c->sched);
    assert_int_equal(fakehost_run(&rf.h, fakehost_until_settled, NULL, REVFIX_RUN_MS, NULL),
                     0);
    assert_int_equal(count(ATLS_EV_RENEWED, "acct.test"), 1);
    assert_int_equal(count(ATLS_EV_ACCOUNT_CREATED, NULL), 1);
}

/* A replaced certificate: renewed, naming the serial it replaced. */
static void
test_renewed(void **state)
{
    fakehost_cert_t *c;
    const rec_t     *r;
    char             before[132], after[132];

    (void) state;
    sched_start();
    c = revfix_seed("renew.test", NULL, NULL, 1);
    stored_serial("renew.test", before, sizeof(before));
    atls_sched_force(rf.h.s, c->sched);
    assert_int_equal(fakehost_run(&rf.h, fakehost_until_settled, NULL, REVFIX_RUN_MS, NULL),
                     0);
    assert_int_equal(c->rc, 0);
    stored_serial("renew.test", after, sizeof(after));
    assert_string_not_equal(before, after);

    assert_int_equal(count(ATLS_EV_OBTAINED, NULL), 0);
    r = nth(ATLS_EV_OBTAINING, "renew.test", 0, NULL);
    assert_string_equal(r->old_serial, before);
    assert_int_equal(count(ATLS_EV_RENEWED, "renew.test"), 1);
    r = nth(ATLS_EV_RENEWED, "renew.test", 0, NULL);
    assert_string_equal(r->old_serial, before);
    assert_string_equal(r->serial, after);
    r = nth(ATLS_EV_DEPLOYED, "renew.test", 0, NULL);
    assert_string_equal(r->serial, after);
    assert_int_equal(counter("orders.ok"), 1);
}

/* A CA that refuses: failed with class, problem type and detail, the
 * attempt counted across attempts, the next one in the future. */
static void
test_failed(void **state)
{
    fakehost_cert_t *c;
    const rec_t     *r;
    fakeca_fault_t   f = { "POST", "/new-order", 0, -1, 429, "rateLimited",
                           "too many certificates", NULL };

    (void) state;
    sched_start();
    c = cert_new("fail.test");
    c->ca->faults[0] = f;
    revfix_pass();
    assert_int_equal(c->rc, -1);
    assert_int_equal(count(ATLS_EV_FAILED, "fail.test"), 1);
    r = nth(ATLS_EV_FAILED, "fail.test", 0, NULL);
    assert_string_equal(r->err_class, atls_err_class_name(ATLS_ERR_RETRY_LATER));
    assert_string_equal(r->err_type, "urn:ietf:params:acme:error:rateLimited");
    assert_string_equal(r->outcome, "error");
    assert_int_equal(r->attempt, 1);
    assert_true(r->next_attempt > time(NULL));
    assert_int_equal(count(ATLS_EV_OBTAINED, NULL) + count(ATLS_EV_DEPLOYED, NULL), 0);

    atls_sched_force(rf.h.s, c->sched);
    assert_int_equal(fakehost_run(&rf.h, fakehost_until_settled, NULL, REVFIX_RUN_MS, NULL),
                     0);
    assert_int_equal(count(ATLS_EV_FAILED, "fail.test"), 2);
    assert_int_equal(nth(ATLS_EV_FAILED, "fail.test", 1, NULL)->attempt, 2);
    assert_int_equal(counter("orders.failed"), 2);
    assert_int_equal(counter("orders.ok"), 0);
}

/* The policy refuses a certificate at atls_sched_add: NULL, the rule
 * named, policy-denied emitted; an allowed one is added. */
static void
test_policy_denied(void **state)
{
    atls_issuer_t       is;
    const char         *bad = "www.other.org", *good = "a.allowed.test";
    char                err[256];
    const rec_t        *r;

    (void) state;
    policy = atls_policy_new();
    assert_non_null(policy);
    assert_int_equal(atls_policy_add_names(policy, "*.allowed.test", err, sizeof(err)), 0);
    sched_start();
    revfix_issuer(&is);
    err[0] = '\0';
    assert_null(atls_sched_add(rf.h.s, &bad, 1, &is, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, ATLS_POLICY_RULE_NAMES));
    assert_int_equal(count(ATLS_EV_POLICY_DENIED, "www.other.org"), 1);
    r = nth(ATLS_EV_POLICY_DENIED, "www.other.org", 0, NULL);
    assert_string_equal(r->rule, ATLS_POLICY_RULE_NAMES);
    assert_string_equal(r->outcome, "denied");

    assert_non_null(atls_sched_add(rf.h.s, &good, 1, &is, NULL, err, sizeof(err)));
    assert_int_equal(count(ATLS_EV_POLICY_DENIED, NULL), 1);
}

/* ---- OCSP and revocation ------------------------------------------------------- */

/* ocsp-refreshed at each good answer; ocsp-failed once per streak. */
static void
test_ocsp_events(void **state)
{
    fakehost_url_t *u;
    unsigned char  *good;
    size_t          len;
    int             i;

    (void) state;
    sched_start();
    (void) revfix_seed("ocsp.test", OCSP_URL, NULL, 1);
    good = revfix_response(rf.leaves[0], V_OCSP_CERTSTATUS_GOOD, OCSPPKI_BY_CA, &len);
    u = fakehost_url(&rf.h, "http://ocsp.test/", 200, good, len);
    revfix_pass();
    assert_int_equal(count(ATLS_EV_OCSP_REFRESHED, "ocsp.test"), 1);
    assert_string_equal(nth(ATLS_EV_OCSP_REFRESHED, "ocsp.test", 0, NULL)->key_type,
                        "ec256");

    /* a streak of three failures says so once */
    u->status = 500;
    for (i = 0; i < 3; i++) {
        revfix_refresh_due("ocsp.test");
        revfix_pass();
    }
    assert_int_equal(u->hits, 4);
    assert_int_equal(count(ATLS_EV_OCSP_FAILED, "ocsp.test"), 1);
    assert_string_equal(nth(ATLS_EV_OCSP_FAILED, "ocsp.test", 0, NULL)->outcome, "error");

    /* it answers again, then a new streak is a new event */
    u->status = 200;
    revfix_refresh_due("ocsp.test");
    revfix_pass();
    assert_int_equal(count(ATLS_EV_OCSP_REFRESHED, "ocsp.test"), 2);
    u->status = 500;
    revfix_refresh_due("ocsp.test");
    revfix_pass();
    revfix_refresh_due("ocsp.test");
    revfix_pass();
    assert_int_equal(count(ATLS_EV_OCSP_FAILED, "ocsp.test"), 2);
    free(good);
}

/* Learned revoked from OCSP: revoked (reason, source), then renewed. */
static void
test_ocsp_revoked(void **state)
{
    fakehost_url_t *u;
    unsigned char  *der;
    const rec_t    *r;
    size_t          len;
    char            old[132];

    (void) state;
    sched_start();
    (void) revfix_seed("rev.test", OCSP_URL, NULL, 1);
    stored_serial("rev.test", old, sizeof(old));
    der = revfix_response(rf.leaves[0], V_OCSP_CERTSTATUS_REVOKED, OCSPPKI_BY_CA, &len);
    u = fakehost_url(&rf.h, "http://ocsp.test/", 200, der, len);
    revfix_pass();
    assert_true(u->hits >= 1);
    assert_int_equal(count(ATLS_EV_REVOKED, "rev.test"), 1);
    r = nth(ATLS_EV_REVOKED, "rev.test", 0, NULL);
    assert_string_equal(r->serial, old);
    assert_string_equal(r->revoked_source, "ocsp");
    assert_int_equal(r->reason, 1);
    assert_int_equal(count(ATLS_EV_OCSP_REFRESHED, NULL), 0);
    r = nth(ATLS_EV_RENEWED, "rev.test", 0, NULL);
    assert_string_equal(r->old_serial, old);
    free(der);
}

/* Learned revoked from a CRL: revoked (source "crl") for the listed
 * certificate alone, once. */
static void
test_crl_revoked(void **state)
{
    fakehost_url_t *u;
    unsigned char  *crl;
    const rec_t    *r;
    size_t          len;
    char            old[132];

    (void) state;
    sched_start();
    (void) revfix_seed("ok.test", NULL, "http://crl.test/1.crl", 1);
    (void) revfix_seed("listed.test", NULL, "http://crl.test/1.crl", 1);
    stored_serial("listed.test", old, sizeof(old));
    crl = revfix_crl(rf.leaves[1], time(NULL) + 7 * 86400, &len);
    u = fakehost_url(&rf.h, "http://crl.test/", 200, crl, len);
    revfix_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(count(ATLS_EV_REVOKED, NULL), 1);
    r = nth(ATLS_EV_REVOKED, "listed.test", 0, NULL);
    assert_string_equal(r->serial, old);
    assert_string_equal(r->revoked_source, "crl");
    assert_int_equal(r->reason, 1);
    revfix_pass();
    assert_int_equal(count(ATLS_EV_REVOKED, NULL), 1);
    assert_int_equal(count(ATLS_EV_RENEWED, "listed.test"), 1);
    free(crl);
}

/* ---- expiry alerts ------------------------------------------------------------- */

/* Levels around the leaf's notAfter: the first two already reached (only
 * the smaller one is said), the third crossed secs_ahead from now. */
static void
levels_around(time_t not_after, long secs_ahead)
{
    long left = (long) (not_after - time(NULL));

    conf.warn.n = 3;
    conf.warn.level[0] = left + 200;
    conf.warn.level[1] = left + 100;
    conf.warn.level[2] = left - secs_ahead;
}

static int
until_two_expiring(fakehost_t *fh, void *arg)
{
    (void) fh;
    return count(ATLS_EV_EXPIRING, arg) >= 2;
}

/* One expiring per level, the smallest reached; not again at the next pass
 * nor after a restart (the state is in the store); the next level through
 * the scheduler's timer. */
static void
test_expiring_levels(void **state)
{
    atls_cert_meta_t m;
    const rec_t     *r;
    time_t           na;
    long long        meta_at;

    (void) state;
    revfix_sched_start();   /* to seed; replaced by one with events */
    (void) revfix_seed("exp.test", NULL, NULL, 1);
    na = leaf_not_after(rf.leaves[0]);
    /* 8 s ahead: the restarts and passes before the timer's turn must not
     * reach the third level, even on a loaded machine */
    levels_around(na, 8);
    sched_restart();

    revfix_pass();
    assert_int_equal(count(ATLS_EV_EXPIRING, "exp.test"), 1);
    r = nth(ATLS_EV_EXPIRING, "exp.test", 0, NULL);
    assert_int_equal(r->level_s, conf.warn.level[1]);
    assert_int_equal(r->not_after, na);
    assert_string_equal(r->key_type, "ec256");
    m = revfix_meta("exp.test");
    assert_int_equal(atls_cert_meta_kt(&m, EC)->warned_level, conf.warn.level[1]);
    assert_int_equal(atls_cert_meta_kt(&m, EC)->expired_sent, 0);
    atls_cert_meta_free(&m);

    /* nothing new to say: nothing written */
    meta_at = written_at("certs/exp.test/meta.json");
    revfix_pass();
    sched_restart();
    revfix_pass();
    assert_int_equal(count(ATLS_EV_EXPIRING, "exp.test"), 1);
    assert_true(written_at("certs/exp.test/meta.json") == meta_at);

    /* the third level is crossed a few seconds on: the timer looks */
    assert_int_equal(fakehost_run(&rf.h, until_two_expiring, (void *) "exp.test",
                                  REVFIX_RUN_MS, NULL), 0);
    r = nth(ATLS_EV_EXPIRING, "exp.test", 1, NULL);
    assert_int_equal(r->level_s, conf.warn.level[2]);
    revfix_pass();
    assert_int_equal(count(ATLS_EV_EXPIRING, "exp.test"), 2);
    assert_int_equal(count(ATLS_EV_EXPIRED, NULL), 0);
}

/* Another process holds the certificate's lock: nothing is said until the
 * alert can be recorded, then it is said once. */
static void
test_expiring_lock_busy(void **state)
{
    atls_store_lock_t *lk = NULL;
    char               err[256];

    (void) state;
    revfix_sched_start();
    (void) revfix_seed("busy.test", NULL, NULL, 1);
    levels_around(leaf_not_after(rf.leaves[0]), 3600);
    sched_restart();
    assert_int_equal(atls_store_lock_cert(rf.st, "busy.test", 1, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    revfix_pass();
    assert_int_equal(count(ATLS_EV_EXPIRING, NULL), 0);
    atls_store_unlock(rf.st, lk);
    revfix_pass();
    assert_int_equal(count(ATLS_EV_EXPIRING, "busy.test"), 1);
    revfix_pass();
    assert_int_equal(count(ATLS_EV_EXPIRING, "busy.test"), 1);
}

/* An expired certificate the CA will not replace: expired once, across
 * passes and a restart, no expiring with it. */
static void
test_expired_once(void **state)
{
    fakehost_cert_t *c;
    atls_cert_meta_t m;
    fakeca_fault_t   f = { "POST", "/new-order", 0, -1, 429, "rateLimited", "later",
                           NULL };
    char             err[256];

    (void) state;
    revfix_sched_start();
    c = revfix_seed("old.test", NULL, NULL, 1);
    m = revfix_meta("old.test");
    atls_cert_meta_kt(&m, EC)->not_after = time(NULL) - 60;
    assert_int_equal(atls_store_save_meta(rf.st, &m, err, sizeof(err)), ATLS_STORE_OK);
    atls_cert_meta_free(&m);
    c->ca->faults[0] = f;
    sched_restart();

    revfix_pass();
    assert_int_equal(count(ATLS_EV_EXPIRED, "old.test"), 1);
    assert_int_equal(count(ATLS_EV_EXPIRING, NULL), 0);
    assert_int_equal(count(ATLS_EV_FAILED, "old.test"), 1);
    m = revfix_meta("old.test");
    assert_true(atls_cert_meta_kt(&m, EC)->expired_sent != 0);
    atls_cert_meta_free(&m);

    revfix_pass();
    sched_restart();
    revfix_pass();
    assert_int_equal(count(ATLS_EV_EXPIRED, "old.test"), 1);
}

/* A static certificate file: its leaf, valid until not_after. */
static void
static_file(const char *path, const char *name, time_t not_after)
{
    X509 *leaf = ocsppki_leaf(&rf.pki, name, NULL, NULL, 0);
    FILE *f;

    assert_non_null(leaf);
    assert_non_null(ASN1_TIME_set(X509_getm_notAfter(leaf), not_after));
    assert_true(X509_sign(leaf, rf.pki.ca_key, EVP_sha256()) > 0);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, leaf), 1);
    fclose(f);
    X509_free(leaf);
}

static void
inventory_of(const char *const *paths, size_t n)
{
    atls_inventory_item_t items[4];
    char                  err[256];
    size_t                i;

    memset(items, 0, sizeof(items));
    for (i = 0; i < n; i++) {
        assert_int_equal(atls_inventory_load_file(paths[i], &items[i]), 0);
        assert_null(items[i].error);
        items[i].server = atls_strdup("nginx");
    }
    assert_int_equal(atls_store_inventory_sync(rf.st, "nginx", items, n, err, sizeof(err)),
                     ATLS_STORE_OK);
    for (i = 0; i < n; i++) {
        atls_inventory_item_free(&items[i]);
    }
}

static const atls_inventory_item_t *
inventory_find(atls_inventory_item_t *items, size_t n, const char *path)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(items[i].path, path) == 0) {
            return &items[i];
        }
    }
    fail_msg("%s is not in the inventory", path);
    return NULL;
}

/* Static certificates of the inventory: expiring and expired once each,
 * source "static" with the path, the state kept in the inventory entry
 * across passes and a restart. */
static void
test_static_alerts(void **state)
{
    atls_inventory_item_t *items = NULL;
    char                   soon[300], gone[300], err[256], entry[300];
    const char            *paths[2] = { soon, gone };
    const rec_t           *r;
    time_t                 now = time(NULL);
    size_t                 n = 0;
    long long              entry_at;

    (void) state;
    snprintf(soon, sizeof(soon), "%s/soon.pem", rf.root);
    snprintf(gone, sizeof(gone), "%s/gone.pem", rf.root);
    static_file(soon, "soon.test", now + 2 * 86400);
    static_file(gone, "gone.test", now - 3600);
    inventory_of(paths, 2);
    sched_start();      /* default levels: 21d 7d 3d 1d */

    revfix_pass();
    assert_int_equal(count(ATLS_EV_EXPIRING, NULL), 1);
    assert_int_equal(count(ATLS_EV_EXPIRED, NULL), 1);
    for (r = recs; r->type != ATLS_EV_EXPIRING; r++) {
        /* find it */
    }
    assert_string_equal(r->source, "static");
    assert_string_equal(r->path, soon);
    assert_int_equal(r->level_s, 3 * 86400);
    for (r = recs; r->type != ATLS_EV_EXPIRED; r++) {
        /* find it */
    }
    assert_string_equal(r->path, gone);
    assert_non_null(strstr(r->id, "static-"));

    assert_int_equal(atls_store_inventory_list(rf.st, &items, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(inventory_find(items, n, soon)->warned_level, 3 * 86400);
    assert_true(inventory_find(items, n, gone)->expired_sent != 0);
    snprintf(entry, sizeof(entry), "inventory/%s.json", inventory_find(items, n, soon)->id);
    atls_inventory_items_free(items, n);
    entry_at = written_at(entry);

    revfix_pass();
    sched_restart();
    revfix_pass();
    assert_true(written_at(entry) == entry_at);     /* nothing changed, nothing written */
    /* a host's start syncs the same files again: the state stays */
    inventory_of(paths, 2);
    revfix_pass();
    assert_int_equal(count(ATLS_EV_EXPIRING, NULL), 1);
    assert_int_equal(count(ATLS_EV_EXPIRED, NULL), 1);
}

static int
until_expiring(fakehost_t *fh, void *arg)
{
    (void) fh;
    (void) arg;
    return count(ATLS_EV_EXPIRING, NULL) >= 1;
}

/* A static certificate's level crossed between passes: the scheduler's
 * timer looks at the inventory then. */
static void
test_static_timer(void **state)
{
    char        path[300];
    const char *paths[1] = { path };
    time_t      now = time(NULL);

    (void) state;
    snprintf(path, sizeof(path), "%s/later.pem", rf.root);
    static_file(path, "later.test", now + 3600);
    inventory_of(paths, 1);
    conf.warn.n = 1;
    conf.warn.level[0] = 3600 - 8;     /* not reached by the first pass, even if slow */
    sched_start();
    revfix_pass();
    assert_int_equal(count(ATLS_EV_EXPIRING, NULL), 0);
    assert_true(rf.h.timer_at > 0);     /* armed for the crossing */
    assert_int_equal(fakehost_run(&rf.h, until_expiring, NULL, REVFIX_RUN_MS, NULL), 0);
    assert_string_equal(recs[n_recs - 1].path, path);
    assert_int_equal(recs[n_recs - 1].level_s, 3600 - 8);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_issue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_created, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renewed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_revoked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crl_revoked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiring_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiring_lock_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_alerts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_timer, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
