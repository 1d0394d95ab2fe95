/*
 * On-demand issuance in the scheduler (atls_sched_on_demand): a name no
 * configuration and no registry entry covers goes through the gate
 * (opts.on_demand, atls_ondemand.h): its checks, then its ask URL sent
 * through the host's http_send like the notifier's webhook (GET, the
 * gate's short timeout, no redirect followed), then the abuse limits.  A
 * name allowed within budget is registered (source "on-demand"), its
 * certificate added for its home and forced at once.  The verdict reaches
 * host->on_demand.
 *
 * Names being decided (an ask in flight) or ordered are "in flight": one
 * such name is never asked about or ordered twice, and those ordered
 * count against the gate's max_pending, as do the asks in flight (a flood
 * of names needing the ask URL cannot open unbounded requests).  An order
 * that fails puts its name in cooldown and, when it left no certificate,
 * takes it out of the registry again: a name nobody could get a
 * certificate for is not retried forever, only when it is asked for again
 * after its cooldown.
 *
 * Apache children cannot order: they write requests in the store
 * (atls_od_request_put); at each pass the scheduler runs the "requested"
 * ones through the same pipeline, answers them in their entry
 * ("ordering", "denied" or "limited" until a time), deletes an entry when
 * its order ended and expired answers.  Those requests are in the store
 * the gate names (atls_od_set_requests: a cluster node's mirror directory,
 * which its children reach without the network); the registry and the
 * budgets are in the scheduler's store (on a cluster, Redis: a name
 * admitted by one node is served and ordered once by all of them).  An
 * order that another process of the store holds the lease for
 * ("autotls:busy") is that process's, not a failure of ours.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "atls.h"
#include "atls_names.h"
#include "atls_ondemand.h"
#include "atls_policy.h"
#include "ondemand_int.h"
#include "sched_internal.h"

#define OD_NAME_BUF  254
/* who registers, in the registry and the audit trail */
#define OD_BY        "on-demand gate"

typedef struct {
    char             name[OD_NAME_BUF];
    char            *home;
    atls_sched_op_t *ask;       /* the ask URL's answer awaited; NULL: ordering */
    int              request;   /* an Apache child's entry: answered there */
} od_flight_t;

struct sched_od_s {
    od_flight_t *v;
    size_t       n, cap;
    int          limited;       /* a budget refused the last order (logged once) */
};

/* ---- names in flight -------------------------------------------------------------- */

/* Where the server's own processes leave requests and read the answers:
 * the gate says (a cluster node: its mirror directory), else this store. */
static atls_store_t *
od_requests(atls_sched_t *s)
{
    atls_store_t *r = s->od_gate != NULL ? atls_od_requests(s->od_gate) : NULL;

    return r != NULL ? r : s->st;
}

static sched_od_t *
od_state(atls_sched_t *s)
{
    if (s->od == NULL) {
        s->od = calloc(1, sizeof(*s->od));
        if (s->od == NULL) {
            abort();
        }
    }
    return s->od;
}

static od_flight_t *
flight_find(sched_od_t *o, const char *name)
{
    size_t i;

    for (i = 0; o != NULL && i < o->n; i++) {
        if (strcmp(o->v[i].name, name) == 0) {
            return &o->v[i];
        }
    }
    return NULL;
}

/* How many are ordering (ask 0) or asking (ask 1). */
static size_t
flight_count(const sched_od_t *o, int ask)
{
    size_t i, n = 0;

    for (i = 0; o != NULL && i < o->n; i++) {
        n += (o->v[i].ask != NULL) == ask;
    }
    return n;
}

static od_flight_t *
flight_add(sched_od_t *o, const char *name, const char *home, int request)
{
    od_flight_t *f;

    if (o->n == o->cap) {
        size_t cap = o->cap == 0 ? 16 : o->cap * 2;

        f = realloc(o->v, cap * sizeof(*f));
        if (f == NULL) {
            abort();
        }
        o->v = f;
        o->cap = cap;
    }
    f = &o->v[o->n++];
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    f->home = home != NULL && home[0] != '\0' ? atls_strdup(home) : NULL;
    f->request = request;
    return f;
}

/* Drops f (its ask op is the caller's); f's slot is reused. */
static void
flight_drop(sched_od_t *o, od_flight_t *f)
{
    free(f->home);
    *f = o->v[--o->n];
}

/* ---- verdicts ----------------------------------------------------------------------- */

/*
 * The verdict on name reaches the host, and a child's request its answer:
 * "denied" until the gate would ask again, "limited" until retry_at (or
 * the failure cache), "ordering" while the order runs.
 */
static void
od_tell(atls_sched_t *s, const char *name, atls_od_verdict_t v, const char *why,
        int request, time_t retry_at)
{
    const atls_od_conf_t *c = atls_od_conf(s->od_gate);
    time_t                now = time(NULL), until = 0;
    const char           *state = "ordering";
    char                  err[512];

    if (s->host.on_demand != NULL) {
        s->host.on_demand(s->host.ctx, name, (int) v, why);
    }
    if (!request) {
        return;
    }
    if (v == ATLS_OD_LIMITED) {
        state = "limited";
        until = retry_at > now ? retry_at : now + c->ask_fail_cache_s;
    } else if (v != ATLS_OD_ALLOW) {
        state = "denied";
        until = retry_at > now ? retry_at : now + c->ask_cache_s;
    }
    if (atls_od_answer_put(od_requests(s), name, state, until, why, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        atls_log(ATLS_LOG_ERR, "autotls: on-demand request %s not answered: %s", name, err);
    }
}

/* A name allowed by a list or the ask URL: within the limits, registered
 * and ordered. */
static void
od_allowed(atls_sched_t *s, const char *name, const char *home, int request,
           const char *why_allowed)
{
    sched_od_t          *o = od_state(s);
    const atls_issuer_t *is = NULL;
    atls_sched_cert_t   *c;
    atls_name_entry_t    e;
    const char          *names[1] = { name }, *rule;
    void                *data = NULL;
    time_t               now = time(NULL), retry_at = 0;
    long                 max_pending = atls_od_conf(s->od_gate)->max_pending;
    char                 why[700], err[512];

    memset(&e, 0, sizeof(e));
    if (atls_sched_find(s, name) != NULL
        || (atls_names_get(s->st, name, &e, err, sizeof(err)) == ATLS_STORE_OK
            && e.state == ATLS_NAME_ACTIVE))
    {
        /* registered meanwhile (the CLI, the API, another server): served */
        atls_name_entry_free(&e);
        if (request) {
            (void) atls_od_request_del(od_requests(s), name, err, sizeof(err));
        }
        if (s->host.on_demand != NULL) {
            s->host.on_demand(s->host.ctx, name, ATLS_OD_ALLOW, "registered already");
        }
        return;
    }
    atls_name_entry_free(&e);
    if ((long) flight_count(o, 0) >= max_pending) {
        snprintf(why, sizeof(why), "on_demand_max_pending %ld reached", max_pending);
        od_tell(s, name, ATLS_OD_LIMITED, why, request, 0);
        return;
    }
    if (s->host.home != NULL) {
        is = s->host.home(s->host.ctx, home, &data);
    }
    if (is == NULL) {
        snprintf(why, sizeof(why), "no dynamic home \"%s\" on this server",
                 home != NULL ? home : "");
        od_tell(s, name, ATLS_OD_DENY, why, request, 0);
        return;
    }
    if (atls_policy_check(s->policy, names, 1, is, &rule, err, sizeof(err)) != 0) {
        snprintf(why, sizeof(why), "the certificate policy refuses it: %s", err);
        od_tell(s, name, ATLS_OD_DENY, why, request, 0);
        return;
    }
    if (atls_od_budget_take(s->od_gate, name, is->directory, now, why, sizeof(why),
                            &retry_at) != 0)
    {
        /* once per streak at the default level: a flood would repeat it */
        atls_log(o->limited ? ATLS_LOG_DEBUG : ATLS_LOG_WARN, "autotls: on-demand name %s "
                 "not ordered: %s (tried again when asked for after %ld s)", name, why,
                 retry_at > now ? (long) (retry_at - now) : 0L);
        o->limited = 1;
        od_tell(s, name, ATLS_OD_LIMITED, why, request, retry_at);
        return;
    }
    o->limited = 0;
    c = atls_sched_add(s, names, 1, is, data, err, sizeof(err));
    if (c == NULL) {
        atls_log(ATLS_LOG_ERR, "autotls: on-demand name %s not managed: %s", name, err);
        od_tell(s, name, ATLS_OD_DENY, err, request, 0);
        return;
    }
    c->dynamic = 1;     /* the registry's from now on */
    if (atls_names_add(s->st, name, home, "on-demand", OD_BY, now, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        atls_log(ATLS_LOG_ERR, "autotls: on-demand name %s not registered: %s", name, err);
        atls_sched_remove(s, c);
        od_tell(s, name, ATLS_OD_DENY, err, request, 0);
        return;
    }
    atls_names_emit(s->events, 1, name, home, "on-demand", OD_BY, now);
    atls_log(ATLS_LOG_INFO, "autotls: on-demand name %s allowed (%s): registered, "
             "ordering", name, why_allowed);
    flight_add(o, name, home, request);
    od_tell(s, name, ATLS_OD_ALLOW, why_allowed, request, 0);
    atls_sched_force(s, c);
}

/* Sends the ask URL's request for name. */
static void
od_ask(atls_sched_t *s, const char *name, const char *home, int request)
{
    sched_od_t           *o = od_state(s);
    atls_http_request_t   req;
    atls_http_opts_t      opts;
    atls_http_response_t  resp;
    atls_od_verdict_t     v;
    od_flight_t          *f;
    long                  max_pending = atls_od_conf(s->od_gate)->max_pending;
    char                  why[512];

    if ((long) flight_count(o, 1) >= max_pending) {
        snprintf(why, sizeof(why), "on_demand_max_pending %ld reached (names waiting "
                 "for the ask URL)", max_pending);
        od_tell(s, name, ATLS_OD_LIMITED, why, request, 0);
        return;
    }
    f = flight_add(o, name, home, request);
    f->ask = calloc(1, sizeof(*f->ask));
    if (f->ask == NULL) {
        abort();
    }
    if (atls_od_ask_request(s->od_gate, name, &req, &opts) == 0
        && s->host.http_send(s->host.ctx, f->ask, &opts, &req) == 0)
    {
        atls_http_request_free(&req);
        return;
    }
    /* not started: the answer is a transport failure */
    atls_http_request_free(&req);
    free(f->ask);
    flight_drop(o, f);
    memset(&resp, 0, sizeof(resp));
    resp.transport_error = 1;
    snprintf(resp.error, sizeof(resp.error), "the request could not be started");
    v = atls_od_ask_done(s->od_gate, name, &resp, time(NULL), why, sizeof(why));
    od_tell(s, name, v, why, request,
            time(NULL) + od_answer_ttl(atls_od_conf(s->od_gate), 0));
}

/* The pipeline for a name as received (raw, len bytes); request: it came
 * from a child's entry. */
static void
od_run(atls_sched_t *s, const char *raw, size_t len, const char *home, int request)
{
    atls_od_verdict_t v;
    char              name[OD_NAME_BUF], why[512], shown[96];

    if (s->stopping) {
        return;
    }
    if (s->od_gate == NULL) {
        if (s->host.on_demand != NULL) {
            s->host.on_demand(s->host.ctx, atls_log_escape_mem(raw, len, shown,
                                                               sizeof(shown)),
                              ATLS_OD_DENY, "on-demand issuance is not configured");
        }
        return;
    }
    v = atls_od_check(s->od_gate, raw, len, time(NULL), name, why, sizeof(why));
    if (v == ATLS_OD_INVALID) {
        /* the name is no name: the host sees it escaped */
        od_tell(s, atls_log_escape_mem(raw, len, shown, sizeof(shown)), v, why, 0, 0);
        return;
    }
    if (v != ATLS_OD_ASK && v != ATLS_OD_ALLOW) {
        atls_log(ATLS_LOG_DEBUG, "autotls: on-demand name %s: %s: %s", name,
                 atls_od_verdict_name(v), why);
        /* a child asks again soon: the verdict may be a cached failure of
         * the ask URL, which must not outlive ask_fail_cache_s */
        od_tell(s, name, v, why, request,
                time(NULL) + od_answer_ttl(atls_od_conf(s->od_gate), 0));
        return;
    }
    if (flight_find(s->od, name) != NULL) {
        return;         /* being decided or ordered: not asked twice */
    }
    if (atls_sched_find(s, name) != NULL) {
        /* managed (configured, registered): served whatever the gate
         * would say now, and never a reason to ask its URL */
        if (s->host.on_demand != NULL) {
            s->host.on_demand(s->host.ctx, name, ATLS_OD_ALLOW, "managed already");
        }
        return;
    }
    if (v == ATLS_OD_ASK) {
        od_ask(s, name, home, request);
    } else {
        od_allowed(s, name, home, request, why);
    }
}

void
atls_sched_on_demand(atls_sched_t *s, const char *name, size_t len, const char *home)
{
    if (s != NULL && name != NULL) {
        od_run(s, name, len, home, 0);
    }
}

/* ---- the host's reports, the end of an order ---------------------------------------- */

int
atls_sched_od_http_done(atls_sched_t *s, atls_sched_op_t *op, const atls_http_response_t *resp)
{
    sched_od_t        *o = s->od;
    od_flight_t       *f = NULL;
    atls_od_verdict_t  v;
    char               name[OD_NAME_BUF], why[512], *home;
    size_t             i;
    long               status;
    int                request;

    for (i = 0; o != NULL && i < o->n && f == NULL; i++) {
        if (o->v[i].ask == op) {
            f = &o->v[i];
        }
    }
    if (f == NULL) {
        return 0;
    }
    snprintf(name, sizeof(name), "%s", f->name);
    home = f->home;
    f->home = NULL;
    request = f->request;
    free(f->ask);
    flight_drop(o, f);
    status = resp == NULL || resp->transport_error ? 0 : resp->status;
    v = atls_od_ask_done(s->od_gate, name, resp, time(NULL), why, sizeof(why));
    if (v == ATLS_OD_ALLOW && !s->stopping) {
        od_allowed(s, name, home, request, why);
    } else if (v != ATLS_OD_ALLOW) {
        atls_log(ATLS_LOG_DEBUG, "autotls: on-demand name %s denied: %s", name, why);
        od_tell(s, name, v, why, request,
                time(NULL) + od_answer_ttl(atls_od_conf(s->od_gate), status));
    }
    free(home);
    return 1;
}

/* 1 when the store holds a certificate of any key type for id. */
static int
od_has_certificate(atls_sched_t *s, const char *id)
{
    atls_cert_meta_t m;
    char             err[256];
    int              has;

    memset(&m, 0, sizeof(m));
    has = atls_store_load_meta(s->st, id, &m, err, sizeof(err)) == ATLS_STORE_OK
          && m.n_kt_info > 0;
    atls_cert_meta_free(&m);
    return has;
}

/* An on-demand order failed: the name's cooldown, out of the registry
 * when it left no certificate, the child's request answered. */
static void
od_order_failed(atls_sched_t *s, const char *id, const char *home, int request,
                const atls_error_t *err)
{
    time_t now = time(NULL);
    long   cooldown = atls_od_conf(s->od_gate)->cooldown_s;
    char   msg[512], why[700];
    int    removed = 0;

    atls_od_failed(s->od_gate, id, now);
    snprintf(why, sizeof(why), "its order failed (%s: %s): on_demand_cooldown %ld s",
             err != NULL ? err->type : "?", err != NULL ? err->detail : "?", cooldown);
    atls_log(ATLS_LOG_WARN, "autotls: on-demand name %s: %s", id, why);
    if (!od_has_certificate(s, id)) {
        if (atls_names_remove_entry(s->st, id, now, NULL, &removed, msg, sizeof(msg))
            == ATLS_STORE_OK)
        {
            if (removed) {      /* not by someone else meanwhile */
                atls_names_emit(s->events, 0, id, home, "on-demand", OD_BY, now);
            }
        } else {
            atls_log(ATLS_LOG_ERR, "autotls: on-demand name %s not unregistered: %s", id,
                     msg);
        }
    }
    if (request
        && atls_od_answer_put(od_requests(s), id, "limited", now + cooldown, why, msg,
                              sizeof(msg)) != ATLS_STORE_OK)
    {
        atls_log(ATLS_LOG_ERR, "autotls: on-demand request %s not answered: %s", id, msg);
    }
}

/* The order was not ours to place: another process sharing the store (a
 * node of the cluster, a CLI) held the certificate's lease (sched_order.c,
 * "autotls:busy").  The name is registered for the whole store, and that
 * process's order serves it; a cooldown here, or taking the name out of
 * the registry, would undo the other's work. */
static int
od_ordered_elsewhere(const atls_error_t *err)
{
    return err != NULL && strcmp(err->type, "autotls:busy") == 0;
}

void
atls_sched_od_ended(atls_sched_t *s, atls_sched_cert_t *c, int rc, const atls_error_t *err)
{
    od_flight_t *f = flight_find(s->od, c->id);
    char         msg[512], *home;
    int          request;

    if (f == NULL || f->ask != NULL || s->od_gate == NULL) {
        return;     /* not an on-demand order */
    }
    request = f->request;
    home = f->home;
    f->home = NULL;
    flight_drop(s->od, f);
    if (rc != 0 && od_ordered_elsewhere(err)) {
        /* another node of the cluster holds its lease: its order, not a
         * failure of ours (the certificate reaches this node's mirror) */
        atls_log(ATLS_LOG_INFO, "autotls: on-demand name %s: ordered by another "
                 "process of the store", c->id);
        if (request) {
            (void) atls_od_request_del(od_requests(s), c->id, msg, sizeof(msg));
        }
    } else if (rc != 0) {
        od_order_failed(s, c->id, home, request, err);
    } else {
        atls_log(ATLS_LOG_INFO, "autotls: on-demand name %s: certificate obtained", c->id);
        if (request) {
            (void) atls_od_request_del(od_requests(s), c->id, msg, sizeof(msg));
        }
    }
    free(home);
}

/* ---- at each pass: the children's requests --------------------------------------------- */

/* Orders that ended without telling (nothing was planned, the
 * certificate was removed): no longer in flight. */
static void
od_sweep(atls_sched_t *s)
{
    sched_od_t *o = s->od;
    size_t      i = 0;
    char        err[256];

    while (o != NULL && i < o->n) {
        od_flight_t       *f = &o->v[i];
        atls_sched_cert_t *c = f->ask == NULL ? atls_sched_find(s, f->name) : NULL;

        if (f->ask == NULL && (c == NULL || (!c->busy && !c->forced))) {
            if (f->request) {
                (void) atls_od_request_del(od_requests(s), f->name, err, sizeof(err));
            }
            flight_drop(o, f);
            continue;
        }
        i++;
    }
}

void
atls_sched_od_pass(atls_sched_t *s)
{
    atls_od_entry_t *v = NULL;
    size_t           n = 0, i;
    time_t           now = time(NULL);
    char             err[512];

    if (s->od_gate == NULL || s->stopping) {
        return;
    }
    od_sweep(s);
    if (atls_od_request_list(od_requests(s), &v, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_ERR, "autotls: on-demand requests not read: %s", err);
        return;
    }
    for (i = 0; i < n; i++) {
        const atls_od_entry_t *e = &v[i];
        int                    answered = strcmp(e->state, "denied") == 0
                                          || strcmp(e->state, "limited") == 0;

        if (flight_find(s->od, e->name) != NULL) {
            continue;
        }
        if (strcmp(e->state, "requested") == 0) {
            od_run(s, e->name, strlen(e->name), e->home, 1);
        } else if (!answered || e->until <= now) {
            /* an expired answer, or an order no longer running here */
            (void) atls_od_request_del(od_requests(s), e->name, err, sizeof(err));
        }
    }
    atls_od_entries_free(v, n);
}

int
atls_sched_od_busy(const atls_sched_t *s)
{
    return flight_count(s->od, 1) > 0;
}

void
atls_sched_od_free(atls_sched_t *s)
{
    sched_od_t *o = s->od;
    size_t      i;

    if (o == NULL) {
        return;
    }
    for (i = 0; i < o->n; i++) {
        if (o->v[i].ask != NULL) {
            if (s->host.http_cancel != NULL) {
                s->host.http_cancel(s->host.ctx, o->v[i].ask);
            }
            free(o->v[i].ask);
        }
        free(o->v[i].home);
    }
    free(o->v);
    free(o);
    s->od = NULL;
}
