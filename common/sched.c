/*
 * The scheduler (atls_sched.h): passes over the managed certificates, the
 * slots, the host's one timer and the host's reports.  The certificates
 * themselves are in sched_cert.c, what happens inside a slot in
 * sched_order.c, challenges and hooks in sched_hook.c.
 *
 * Work is started only from a "kick": from atls_sched_check/force when
 * the host calls them from its own loop, else from the timer (armed to 0),
 * the way nginx posts an event.  So a report from the host (a response, a
 * hook's end) costs one engine step, and a done() callback that calls back
 * into the scheduler never finds it half-way through a pass.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "atls.h"
#include "atls_job.h"
#include "atls_names.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "notify_int.h"
#include "sched_internal.h"

long long
atls_sched_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sched_destroy(atls_sched_t *s);

/* ---- re-entrancy and the one timer ------------------------------------------ */

static void
sched_enter(atls_sched_t *s)
{
    s->depth++;
}

static long long
earlier(long long a, long long b)
{
    return b < a ? b : a;
}

/* Arms the host's timer for the earliest deadline, when that changed. */
static void
sched_arm(atls_sched_t *s)
{
    atls_sched_op_t *op;
    long long        best = LLONG_MAX, now;
    size_t           i;

    if (s->kick_due) {
        best = 0;       /* as soon as the host's loop comes round */
    }
    if (s->pass_resume != 0) {
        best = earlier(best, s->pass_resume);
    }
    if (s->names_resume != 0) {
        best = earlier(best, s->names_resume);
    }
    if (s->rev_wake != 0 && !s->stopping) {
        best = earlier(best, s->rev_wake);
    }
    if (s->warn_wake != 0 && !s->stopping) {
        best = earlier(best, s->warn_wake);
    }
    if (s->retry_wake != 0 && !s->stopping) {
        best = earlier(best, s->retry_wake);
    }
    for (i = 0; i < s->n_slots; i++) {
        const sched_slot_t *sl = &s->slots[i];

        if (sl->wake != 0) {
            best = earlier(best, sl->wake);
        }
        if (sl->op != NULL && sl->op->hook) {
            best = earlier(best, sl->op->deadline);
        }
    }
    for (op = s->orphans; op != NULL; op = op->next) {
        best = earlier(best, op->deadline);
    }
    best = earlier(best, atls_notify_deadline(s->notify));

    if (best == LLONG_MAX) {
        if (s->armed != -1) {
            s->armed = -1;
            s->host.timer(s->host.ctx, -1);
        }
        return;
    }
    if (best == s->armed) {
        return;
    }
    s->armed = best;
    now = atls_sched_now_ms();
    s->host.timer(s->host.ctx, best > now ? (long) (best - now) : 0);
}

/* Leaving the outermost call: free when asked to meanwhile, else arm. */
static void
sched_leave(atls_sched_t *s)
{
    if (--s->depth > 0) {
        return;
    }
    if (s->dying) {
        sched_destroy(s);
        return;
    }
    sched_arm(s);
}

void
atls_sched_touch(atls_sched_t *s)
{
    sched_enter(s);
    sched_leave(s);
}

/* ---- the pass -------------------------------------------------------------------- */

static void
cert_fail_unplanned(atls_sched_t *s, atls_sched_cert_t *c, const char *why)
{
    atls_error_t err;

    if (s->host.done == NULL) {
        return;
    }
    memset(&err, 0, sizeof(err));
    atls_error_set(&err, ATLS_ERR_RETRY_LATER, "autotls:store", "%s", why);
    snprintf(err.cert_id, sizeof(err.cert_id), "%s", c->id);
    s->host.done(s->host.ctx, c->data, c->id, -1, &err);
}

/*
 * Ensures c in the store and plans it into the free slot sl.  1 when the
 * slot took it (an order or an ARI query), 0 when nothing is due.
 */
static int
slot_prepare(atls_sched_t *s, sched_slot_t *sl, atls_sched_cert_t *c, int force)
{
    time_t now, request_at = 0, asked;
    char   err[512];

    err[0] = '\0';
    /* writes the store only when the configuration changed */
    if (atls_job_ensure(s->st, (const char *const *) c->names, c->n_names, &c->issuer,
                        &sl->meta, err, sizeof(err)) != 0)
    {
        atls_log(ATLS_LOG_ERR, "autotls: certificate \"%s\": %s", c->id, err);
        atls_sched_slot_clear(sl);
        atls_sched_due_set(s, c, 0);    /* tried again at each pass */
        if (force) {
            cert_fail_unplanned(s, c, err);
        }
        return 0;
    }
    /* The settings as configured, never as stored: EAB secrets are not
     * persisted, and the store (the worker's) must not name the program a
     * dns hook runs or the CA's trust. */
    atls_issuer_free(&sl->meta.issuer);
    atls_issuer_copy(&sl->meta.issuer, &c->issuer);
    sl->cert = c;
    atls_sched_warn_cert(sl);   /* expiry alerts, whatever is due */

    now = time(NULL);
    if (atls_store_peek_request(s->st, c->id, &asked)) {
        request_at = asked > 0 ? asked : 1;
    }
    atls_job_plan(&sl->meta, now, request_at, force, s->ari, &sl->plan);
    sl->request_at = request_at;
    if (sl->plan.kind == ATLS_PLAN_NOTHING
        || (sl->plan.kind == ATLS_PLAN_ARI && !atls_sched_ari_may(s, c, now))
        || (sl->plan.kind == ATLS_PLAN_ORDER && sl->plan.n_kts == 0))
    {
        /* nothing to order: OCSP and CRLs may still have something to ask */
        switch (atls_sched_rev_next(sl, 1)) {
        case SCHED_REV_OP:
            c->busy = 1;
            return 0;       /* in flight already */
        case SCHED_REV_ORDER:
            break;          /* learned revoked from a CRL held */
        case SCHED_REV_NONE:
        default:
            atls_sched_due_planned(s, sl, now);
            atls_sched_slot_clear(sl);
            return 0;
        }
    }
    if (sl->plan.kind == ATLS_PLAN_ORDER) {
        /* an operator's word is worth a line at the default level */
        atls_log(request_at != 0 && !force ? ATLS_LOG_INFO : ATLS_LOG_DEBUG,
                 "autotls: certificate \"%s\": %s%s", c->id,
                 request_at != 0 && !force ? "renewal " : "",
                 sl->plan.reason ? sl->plan.reason : "due");
    }
    sl->ari = sl->plan.kind == ATLS_PLAN_ARI;
    c->busy = 1;
    return 1;
}

/*
 * A free slot, if the limit allows one more: the record removals of failed
 * orders still running count against max_parallel too, so that no more
 * than that many orders' challenges are ever out at once.
 */
static sched_slot_t *
slot_free_one(atls_sched_t *s)
{
    atls_sched_op_t *op;
    sched_slot_t    *free_sl = NULL;
    size_t           i, used = 0;

    for (i = 0; i < s->n_slots; i++) {
        if (s->slots[i].cert != NULL) {
            used++;
        } else if (free_sl == NULL) {
            free_sl = &s->slots[i];
        }
    }
    for (op = s->orphans; op != NULL; op = op->next) {
        used++;
    }
    return used < s->n_slots ? free_sl : NULL;
}

/* Forced certificates first: each as soon as it is not in flight. */
static void
kick_forced(atls_sched_t *s)
{
    atls_sched_cert_t **pp = &s->forced, *prev = NULL;

    while (*pp != NULL) {
        atls_sched_cert_t *c = *pp;
        sched_slot_t      *sl;

        if (c->busy) {
            prev = c;
            pp = &c->force_next;
            continue;
        }
        sl = slot_free_one(s);
        if (sl == NULL) {
            return;
        }
        *pp = c->force_next;
        if (s->forced_tail == c) {
            s->forced_tail = prev;
        }
        c->force_next = NULL;
        c->forced = 0;
        if (slot_prepare(s, sl, c, 1)) {
            (void) atls_sched_slot_start(sl);
        }
    }
}

/*
 * Revocation checks between passes: at the earliest rev_due (an OCSP
 * refresh, a CRL fetch), the certificates due are queued and each gets a
 * slot of its own, as in a pass (a response valid for minutes is refreshed
 * in time whatever the host's check interval).  One look at every
 * certificate's rev_due, no store access, per wake.
 */
static void
rev_sweep(atls_sched_t *s)
{
    time_t    now = time(NULL);
    long long mono = atls_sched_now_ms();
    size_t    i;

    s->rev_wake = 0;
    for (i = 0; i < s->n_certs; i++) {
        atls_sched_cert_t *c = s->certs[i];

        if (c->rev_due == 0 || c->rev_queued) {
            continue;
        }
        if (c->rev_due > now) {
            long long at = mono + (long long) (c->rev_due - now) * 1000;

            if (s->rev_wake == 0 || at < s->rev_wake) {
                s->rev_wake = at;
            }
            continue;
        }
        if (c->busy) {
            continue;   /* its slot schedules it again when it ends */
        }
        c->rev_due = 0;
        c->rev_queued = 1;
        c->rev_next = NULL;
        if (s->rev_queue_tail != NULL) {
            s->rev_queue_tail->rev_next = c;
        } else {
            s->rev_queue = c;
        }
        s->rev_queue_tail = c;
        s->kick_due = 1;
    }
}

/* Queued certificates get free slots, after forced ones, before a pass. */
static void
kick_rev_queue(atls_sched_t *s)
{
    while (s->rev_queue != NULL) {
        atls_sched_cert_t *c = s->rev_queue;
        sched_slot_t      *sl = NULL;

        if (!c->busy) {
            sl = slot_free_one(s);
            if (sl == NULL) {
                return;
            }
        }
        s->rev_queue = c->rev_next;
        if (s->rev_queue == NULL) {
            s->rev_queue_tail = NULL;
        }
        c->rev_next = NULL;
        c->rev_queued = 0;
        if (sl != NULL && slot_prepare(s, sl, c, 0)) {
            (void) atls_sched_slot_start(sl);
        }
    }
}

static void
rev_queue_clear(atls_sched_t *s)
{
    while (s->rev_queue != NULL) {
        atls_sched_cert_t *c = s->rev_queue;

        s->rev_queue = c->rev_next;
        c->rev_next = NULL;
        c->rev_queued = 0;
    }
    s->rev_queue_tail = NULL;
    s->rev_wake = 0;
}

static void
forced_clear(atls_sched_t *s)
{
    while (s->forced != NULL) {
        atls_sched_cert_t *c = s->forced;

        s->forced = c->force_next;
        c->force_next = NULL;
        c->forced = 0;
    }
    s->forced_tail = NULL;
}

/*
 * Starts what can start: pending slots (a next key type, or held back while
 * an account was created), forced certificates, then the pass fills free
 * slots.  With slice_ms the pass yields after that long and goes on from
 * the timer: each check reads (after a configuration change writes) the
 * store, and nginx serves clients in between.
 */
static void
sched_kick(atls_sched_t *s)
{
    long long start = atls_sched_now_ms(), now;
    size_t    i, checked = 0;

    s->kick_due = 0;
    s->pass_resume = 0;
    if (s->stopping) {
        s->pass_active = 0;
        forced_clear(s);
        rev_queue_clear(s);
    }
    for (i = 0; i < s->n_slots; i++) {
        sched_slot_t *sl = &s->slots[i];

        if (sl->cert != NULL && sl->e == NULL && !sl->rev) {
            (void) atls_sched_slot_start(sl);
        }
    }
    kick_forced(s);
    kick_rev_queue(s);

    while (s->pass_active) {
        atls_sched_cert_t *c;
        sched_slot_t      *sl = slot_free_one(s);

        if (sl == NULL) {
            return;     /* resumed when a slot frees */
        }
        now = atls_sched_now_ms();
        if (s->slice_ms > 0 && checked++ > 0 && now - start >= s->slice_ms) {
            s->pass_resume = now + (s->slice_ms < SCHED_PASS_PAUSE_MS ? s->slice_ms
                                                                      : SCHED_PASS_PAUSE_MS);
            return;
        }
        c = atls_sched_due_next(s);
        if (c == NULL) {
            break;
        }
        if (c->busy) {
            continue;   /* its order outlived a pass */
        }
        if (slot_prepare(s, sl, c, 0)) {
            (void) atls_sched_slot_start(sl);
        }
    }
    if (s->pass_active && s->crl_recheck && !s->stopping) {
        /* A newer CRL arrived while the pass went on: the certificates
         * passed over while it was fetched are looked up in it now (a
         * pass looks a key type up once per new CRL, and fetches none). */
        s->crl_recheck = 0;
        atls_sched_due_all(s);
        s->kick_due = 1;
        return;
    }
    if (s->pass_active) {
        atls_sched_due_end(s);
    }
    s->pass_active = 0;
}

/* Kicks now when called from the host's loop, else from the timer. */
static void
sched_kick_soon(atls_sched_t *s)
{
    if (s->depth == 1) {
        sched_kick(s);
    } else {
        s->kick_due = 1;
    }
}

void
atls_sched_retry_pass(atls_sched_t *s, time_t at)
{
    long long when = atls_sched_now_ms() + (long long) (at - time(NULL)) * 1000;

    if (s->retry_wake == 0 || when < s->retry_wake) {
        s->retry_wake = when;
    }
}

/* A certificate's busy lock is due for another look: a pass over the due
 * ones (cheap: the due index), or a second later when one runs now. */
static void
retry_pass(atls_sched_t *s, long long now)
{
    if (s->pass_active) {
        s->retry_wake = now + 1000;
        return;
    }
    s->retry_wake = 0;
    s->pass_active = 1;
    atls_sched_due_begin(s);
    sched_kick_soon(s);
}

void
atls_sched_check(atls_sched_t *s)
{
    sched_enter(s);
    atls_notify_look(s->notify);
    if (!s->stopping && !s->pass_active) {
        s->pass_active = 1;
        atls_sched_due_begin(s);
        atls_sched_warn_static(s);
        atls_sched_names_pass(s);
        atls_sched_od_pass(s);
        sched_kick_soon(s);
    }
    sched_leave(s);
}

void
atls_sched_force(atls_sched_t *s, atls_sched_cert_t *c)
{
    sched_enter(s);
    if (!s->stopping && !c->forced) {
        c->forced = 1;
        c->force_next = NULL;
        if (s->forced_tail != NULL) {
            s->forced_tail->force_next = c;
        } else {
            s->forced = c;
        }
        s->forced_tail = c;
        sched_kick_soon(s);
    }
    sched_leave(s);
}

/* ---- the host's reports -------------------------------------------------------------- */

void
atls_sched_http_done(atls_sched_t *s, atls_sched_op_t *op, const atls_http_response_t *resp)
{
    sched_slot_t *sl = op->slot;

    sched_enter(s);
    if (atls_notify_http_done(s->notify, op, resp)) {
        /* a notification's request */
    } else if (atls_sched_od_http_done(s, op, resp)) {
        /* an on-demand name's ask URL */
    } else if (sl != NULL && sl->op == op) {
        sl->op = NULL;
        atls_sched_op_free(op);
        atls_sched_slot_step(sl, resp);
    }
    sched_leave(s);
}

void
atls_sched_hook_done(atls_sched_t *s, atls_sched_op_t *op, int ok, const char *why)
{
    char msg[400];

    sched_enter(s);
    if (atls_notify_hook_done(s->notify, op, ok, why)) {
        /* a notification's command */
    } else if (op->publish) {
        snprintf(msg, sizeof(msg), "%s", why != NULL && why[0] != '\0' ? why
                 : "the cluster's nodes did not load the challenge");
        atls_sched_hook_end(s, op, ok, msg);
    } else {
        snprintf(msg, sizeof(msg), "dns hook %s failed: %s", op->setup ? "setup" : "teardown",
                 why != NULL && why[0] != '\0' ? why : "no reason given");
        atls_sched_hook_end(s, op, ok, msg);
    }
    sched_leave(s);
}

/* A hook ran out of time: killed, and counted as a failure. */
static void
hook_expire(atls_sched_t *s, atls_sched_op_t *op)
{
    char msg[128];

    atls_sched_op_abandon(s, op);
    snprintf(msg, sizeof(msg), op->publish
             ? "the cluster's nodes did not load the challenge within %ld s"
             : "dns hook timed out after %ld s", s->hook_timeout_s);
    atls_sched_hook_end(s, op, 0, msg);
}

void
atls_sched_timer(atls_sched_t *s)
{
    atls_sched_op_t *op, *next;
    long long        now = atls_sched_now_ms();
    size_t           i;

    sched_enter(s);
    s->armed = -1;      /* it fired */
    for (i = 0; i < s->n_slots; i++) {
        sched_slot_t *sl = &s->slots[i];

        if (sl->op != NULL && sl->op->hook && sl->op->deadline <= now) {
            hook_expire(s, sl->op);
        } else if (sl->wake != 0 && sl->wake <= now) {
            sl->wake = 0;
            atls_sched_slot_step(sl, NULL);
        }
    }
    for (op = s->orphans; op != NULL; op = next) {
        next = op->next;
        if (op->deadline <= now) {
            hook_expire(s, op);
        }
    }
    if (s->rev_wake != 0 && s->rev_wake <= now && !s->stopping) {
        rev_sweep(s);
    }
    if (s->warn_wake != 0 && s->warn_wake <= now && !s->stopping) {
        atls_sched_warn_static(s);
    }
    if (s->names_resume != 0 && s->names_resume <= now) {
        s->names_resume = 0;
        atls_sched_names_sync(s);   /* the first sync's next slice */
    }
    if (s->retry_wake != 0 && s->retry_wake <= now && !s->stopping) {
        retry_pass(s, now);
    }
    if (s->kick_due || (s->pass_resume != 0 && s->pass_resume <= now)) {
        sched_kick(s);
    }
    atls_notify_timer(s->notify, now);
    sched_leave(s);
}

/* ---- life -------------------------------------------------------------------------- */

atls_sched_t *
atls_sched_new(atls_store_t *st, const atls_sched_host_t *host,
               const atls_sched_opts_t *opts, char *err, size_t errlen)
{
    atls_sched_t *s;
    size_t        i;

    if (st == NULL || host == NULL || host->http_send == NULL || host->timer == NULL) {
        snprintf(err, errlen, "the scheduler needs a store, http_send and a timer");
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->st = st;
    s->host = *host;
    s->armed = -1;
    s->n_slots = opts != NULL && opts->max_parallel > 0 ? opts->max_parallel
                                                        : SCHED_DEFAULT_PARALLEL;
    s->slice_ms = opts != NULL && opts->slice_ms > 0 ? opts->slice_ms : 0;
    s->hook_timeout_s = opts != NULL && opts->hook_timeout_s > 0 ? opts->hook_timeout_s
                                                                 : ATLS_SCHED_HOOK_TIMEOUT_S;
    s->ari = opts != NULL && opts->ari;
    s->ca_per_min = opts != NULL && opts->ca_requests_per_min > 0
                    ? opts->ca_requests_per_min : SCHED_DEFAULT_CA_PER_MIN;
    if (s->ca_per_min < 2) {
        s->ca_per_min = 2;      /* ARI gets half */
    }
    if (s->ca_per_min > 100000) {
        s->ca_per_min = 100000;
    }
    s->started = time(NULL);
    s->events = opts != NULL ? opts->events : NULL;
    s->policy = opts != NULL ? opts->policy : NULL;
    s->names_grace_s = opts != NULL && opts->names_grace_s > 0 ? opts->names_grace_s
                                                               : ATLS_NAMES_GRACE_S;
    s->od_gate = opts != NULL ? opts->on_demand : NULL;
    s->slots = calloc(s->n_slots, sizeof(*s->slots));
    if (s->slots == NULL) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (i = 0; i < s->n_slots; i++) {
        s->slots[i].s = s;
        atls_sched_slot_clear(&s->slots[i]);
    }
    s->notify = atls_notify_new(s, opts != NULL ? opts->events : NULL);
    return s;
}

static void
sched_destroy(atls_sched_t *s)
{
    atls_sched_op_t *op;
    size_t           i;

    s->depth = 1;       /* a host that calls back meanwhile only marks it */
    s->freeing = 1;
    atls_notify_free(s->notify);
    atls_sched_od_free(s);
    atls_sched_names_free(s);
    for (i = 0; i < s->n_slots; i++) {
        atls_sched_slot_cancel(&s->slots[i]);
    }
    while ((op = s->orphans) != NULL) {
        s->orphans = op->next;
        if (s->host.hook_kill != NULL) {
            s->host.hook_kill(s->host.ctx, op);
        }
        atls_sched_op_free(op);
    }
    if (s->armed != -1) {
        s->host.timer(s->host.ctx, -1);
    }
    for (i = 0; i < s->n_certs; i++) {
        atls_sched_cert_free(s->certs[i]);
    }
    for (i = 0; i < s->n_dirs; i++) {
        free(s->dirs[i].directory);
        free(s->dirs[i].rate_ring);
    }
    atls_sched_crls_free(s);
    atls_sched_due_free(s);
    free(s->dirs);
    free(s->certs);
    free(s->index);
    free(s->slots);
    free(s);
}

void
atls_sched_free(atls_sched_t *s)
{
    if (s == NULL) {
        return;
    }
    if (s->depth > 0) {
        s->dying = 1;   /* from a callback: the outermost call frees */
        return;
    }
    sched_destroy(s);
}

void
atls_sched_stop(atls_sched_t *s)
{
    sched_enter(s);
    s->stopping = 1;
    s->pass_active = 0;
    s->pass_resume = 0;
    forced_clear(s);
    rev_queue_clear(s);
    atls_notify_stop(s->notify);
    /* pending slots end (done() says "stopped") from the next kick */
    s->kick_due = 1;
    sched_leave(s);
}

int
atls_sched_idle(const atls_sched_t *s)
{
    size_t i;

    if (s->pass_active || s->forced != NULL || s->orphans != NULL || s->names_first_on
        || s->rev_queue != NULL || atls_notify_busy(s->notify) || atls_sched_od_busy(s))
    {
        return 0;
    }
    for (i = 0; i < s->n_slots; i++) {
        if (s->slots[i].cert != NULL) {
            return 0;
        }
    }
    return 1;
}

void
atls_sched_notify(atls_sched_t *s)
{
    sched_enter(s);
    atls_notify_look(s->notify);
    sched_leave(s);
}

size_t
atls_sched_running(const atls_sched_t *s)
{
    size_t i, n = 0;

    for (i = 0; i < s->n_slots; i++) {
        n += s->slots[i].e != NULL && !s->slots[i].ari;
    }
    return n;
}
