/*
 * The scheduler (atls_sched.h): the managed certificates, passes over
 * them, the slots, the host's one timer and the host's reports.  What
 * happens inside a slot is in sched_order.c.
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
#include "atls_sched.h"
#include "atls_store.h"
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

/* ---- certificates -------------------------------------------------------------- */

static void
cert_free(atls_sched_cert_t *c)
{
    free(c->id);
    atls_strv_free(c->names, c->n_names);
    atls_issuer_free(&c->issuer);
    free(c);
}

static atls_sched_cert_t *
cert_find(const atls_sched_t *s, const char *id)
{
    size_t i;

    for (i = 0; i < s->n_certs; i++) {
        if (strcmp(s->certs[i]->id, id) == 0) {
            return s->certs[i];
        }
    }
    return NULL;
}

atls_sched_cert_t *
atls_sched_add(atls_sched_t *s, const char *const *names, size_t n,
               const atls_issuer_t *is, void *data, char *err, size_t errlen)
{
    atls_sched_cert_t *c;
    char              *id;

    if (names == NULL || n == 0 || names[0] == NULL || names[0][0] == '\0') {
        snprintf(err, errlen, "a certificate needs at least one name");
        return NULL;
    }
    if (is == NULL || is->directory == NULL || is->directory[0] == '\0') {
        snprintf(err, errlen, "no ACME directory URL configured for %s", names[0]);
        return NULL;
    }
    id = atls_cert_id(names[0]);
    if (id == NULL) {
        snprintf(err, errlen, "cannot derive a certificate id from \"%s\"", names[0]);
        return NULL;
    }

    c = cert_find(s, id);
    if (c != NULL) {
        /* a slot at work on c keeps its own copy of the settings */
        free(id);
        atls_strv_free(c->names, c->n_names);
        atls_issuer_free(&c->issuer);
    } else {
        if (s->n_certs == s->cap_certs) {
            size_t              cap = s->cap_certs ? s->cap_certs * 2 : 16;
            atls_sched_cert_t **v = realloc(s->certs, cap * sizeof(*v));

            if (v == NULL) {
                free(id);
                snprintf(err, errlen, "out of memory");
                return NULL;
            }
            s->certs = v;
            s->cap_certs = cap;
        }
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            free(id);
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        c->id = id;
        s->certs[s->n_certs++] = c;
    }
    c->names = atls_strv_dup((char *const *) names, n);
    c->n_names = n;
    atls_issuer_copy(&c->issuer, is);
    c->data = data;
    return c;
}

const char *
atls_sched_cert_id(const atls_sched_cert_t *c)
{
    return c->id;
}

void *
atls_sched_op_data(const atls_sched_op_t *op)
{
    return op->data;
}

/* ---- the pass -------------------------------------------------------------------- */

static void
slot_fail_early(atls_sched_t *s, atls_sched_cert_t *c, const char *why)
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
        if (force) {
            slot_fail_early(s, c, err);
        }
        return 0;
    }
    /* EAB secrets are never persisted: from the settings */
    if (sl->meta.issuer.eab_kid == NULL && c->issuer.eab_kid != NULL) {
        sl->meta.issuer.eab_kid = atls_strdup(c->issuer.eab_kid);
        free(sl->meta.issuer.eab_hmac);
        sl->meta.issuer.eab_hmac = atls_strdup(c->issuer.eab_hmac);
    }

    now = time(NULL);
    if (atls_store_peek_request(s->st, c->id, &asked)) {
        request_at = asked > 0 ? asked : 1;
    }
    atls_job_plan(&sl->meta, now, request_at, force, s->ari, &sl->plan);
    if (sl->plan.kind == ATLS_PLAN_NOTHING
        || (sl->plan.kind == ATLS_PLAN_ARI
            && now < atls_sched_dir(s, sl->meta.issuer.directory)->no_ari_until)
        || (sl->plan.kind == ATLS_PLAN_ORDER && sl->plan.n_kts == 0))
    {
        atls_sched_slot_clear(sl);
        return 0;
    }
    if (sl->plan.kind == ATLS_PLAN_ORDER) {
        atls_log(ATLS_LOG_DEBUG, "autotls: certificate \"%s\": %s", c->id,
                 sl->plan.reason ? sl->plan.reason : "due");
    }
    sl->cert = c;
    sl->ari = sl->plan.kind == ATLS_PLAN_ARI;
    sl->force = force;
    c->busy = 1;
    return 1;
}

static sched_slot_t *
slot_free_one(atls_sched_t *s)
{
    size_t i;

    for (i = 0; i < s->n_slots; i++) {
        if (s->slots[i].cert == NULL) {
            return &s->slots[i];
        }
    }
    return NULL;
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
    }
    for (i = 0; i < s->n_slots; i++) {
        sched_slot_t *sl = &s->slots[i];

        if (sl->cert != NULL && sl->e == NULL) {
            (void) atls_sched_slot_start(sl);
        }
    }
    kick_forced(s);

    while (s->pass_active && s->pass_next < s->n_certs) {
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
        c = s->certs[s->pass_next++];
        if (c->busy) {
            continue;   /* its order outlived a pass */
        }
        if (slot_prepare(s, sl, c, 0)) {
            (void) atls_sched_slot_start(sl);
        }
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
atls_sched_check(atls_sched_t *s)
{
    sched_enter(s);
    if (!s->stopping && !s->pass_active) {
        s->pass_active = 1;
        s->pass_next = 0;
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
    if (sl != NULL && sl->op == op) {
        sl->op = NULL;
        atls_sched_op_free(op);
        atls_sched_slot_step(sl, resp);
    }
    sched_leave(s);
}

void
atls_sched_hook_done(atls_sched_t *s, atls_sched_op_t *op, int ok, const char *why)
{
    sched_enter(s);
    if (op->slot == NULL) {
        atls_sched_orphan_end(s, op, ok, why);
    } else if (op->slot->op == op) {
        atls_sched_slot_hook_end(op->slot, ok, why);
    }
    sched_leave(s);
}

/* A hook ran out of time: killed, and counted as a failure. */
static void
hook_expire(atls_sched_t *s, atls_sched_op_t *op)
{
    char why[128];

    if (s->host.hook_kill != NULL) {
        s->host.hook_kill(s->host.ctx, op);
    }
    snprintf(why, sizeof(why), "dns hook timed out after %ld s", s->hook_timeout_s);
    if (op->slot == NULL) {
        atls_sched_orphan_end(s, op, 0, why);
    } else {
        atls_sched_slot_hook_end(op->slot, 0, why);
    }
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
    if (s->kick_due || (s->pass_resume != 0 && s->pass_resume <= now)) {
        sched_kick(s);
    }
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
    return s;
}

static void
sched_destroy(atls_sched_t *s)
{
    atls_sched_op_t *op;
    size_t           i;

    s->freeing = 1;
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
        cert_free(s->certs[i]);
    }
    for (i = 0; i < s->n_dirs; i++) {
        free(s->dirs[i].directory);
    }
    free(s->dirs);
    free(s->certs);
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
    /* pending slots end (done() says "stopped") from the next kick */
    s->kick_due = 1;
    sched_leave(s);
}

int
atls_sched_idle(const atls_sched_t *s)
{
    size_t i;

    if (s->pass_active || s->forced != NULL || s->orphans != NULL) {
        return 0;
    }
    for (i = 0; i < s->n_slots; i++) {
        if (s->slots[i].cert != NULL) {
            return 0;
        }
    }
    return 1;
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
