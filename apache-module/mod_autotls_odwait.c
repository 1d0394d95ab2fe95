/*
 * The first handshake of a name nobody registered, on an `AutoTLS
 * OnDemand` host.
 *
 * mod_ssl runs a handshake in a worker thread, and that thread may wait:
 * unlike nginx, nothing else is served from it meanwhile.  So the
 * certificate callback asks the child's own gate (syntax, deny list,
 * allow list, cached verdicts: no network), writes a request for a name
 * that may be allowed into the store (ondemand/<id>.json, bounded by the
 * gate's max_pending), tells the watchdog through shared memory, and waits
 * on a condition with a deadline (AutoTLSOnDemandWait) while the
 * watchdog's scheduler asks the ask URL, applies the budgets, registers
 * the name and orders it.  Once the certificate is in the store the same
 * handshake serves it; a denied or limited answer, or the deadline, serve
 * the fallback, and the order goes on for the next handshake.
 *
 * Waiting threads are bounded (half of a child's threads), so a flood of
 * new names cannot take every thread of a child: beyond the bound, and
 * when the request queue is full, the fallback is served at once.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "apr_strings.h"

#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

/* how often a waiting thread looks at the store while nothing wakes it */
#define ODWAIT_TICK_MS     200
/* the gate's defaults (atls_ondemand.h) for what the directives left out */
#define ODWAIT_DEFAULT_WAIT_MS  10000
#define ODWAIT_DEFAULT_PENDING  100

/* Per child: the gate is not thread-safe (its verdict cache moves), so
 * one lock around it; waiting threads share one condition, broadcast by
 * whichever of them sees the generation move (a deploy) and at exit. */
static struct {
    atls_od_t       *gate;
    pthread_mutex_t  gate_lock;
    pthread_mutex_t  lock;
    pthread_cond_t   cond;
    int              waiting;
    int              max_waiting;
    int              stopping;
    long             wait_ms;
    long             max_pending;
} odw = {
    .gate_lock = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .cond = PTHREAD_COND_INITIALIZER
};

static apr_status_t
odwait_child_exit(void *data)
{
    pthread_mutex_lock(&odw.lock);
    odw.stopping = 1;
    pthread_cond_broadcast(&odw.cond);
    pthread_mutex_unlock(&odw.lock);
    pthread_mutex_lock(&odw.gate_lock);
    atls_od_free(odw.gate);
    odw.gate = NULL;
    pthread_mutex_unlock(&odw.gate_lock);
    return APR_SUCCESS;
}

void
autotls_odwait_child_init(apr_pool_t *pchild, server_rec *s)
{
    autotls_srv_conf_t *home = autotls_global.od_home;
    atls_od_conf_t c;
    char err[256];
    int threads = 1;

    if (home == NULL) {
        return;
    }
    autotls_ondemand_conf(pchild, &home->od, &c);
    /* no store: the child takes no budget, the watchdog's gate does */
    odw.gate = atls_od_new(&c, NULL, err, sizeof(err));
    if (odw.gate == NULL) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "autotls: on-demand policy of %s: %s; new names get the fallback",
                     home->s->server_hostname, err);
        return;
    }
    (void) ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    odw.max_waiting = threads > 1 ? threads / 2 : 1;
    odw.wait_ms = c.wait_ms > 0 ? c.wait_ms : ODWAIT_DEFAULT_WAIT_MS;
    odw.max_pending = c.max_pending > 0 ? c.max_pending : ODWAIT_DEFAULT_PENDING;
    odw.stopping = 0;
    apr_pool_cleanup_register(pchild, NULL, odwait_child_exit, apr_pool_cleanup_null);
}

/* ---- the watchdog is told through shared memory ------------------------- */

static void
odwait_signal(void)
{
    if (autotls_global.od_requests != NULL) {
        __atomic_add_fetch(autotls_global.od_requests, 1, __ATOMIC_RELEASE);
    }
}

int
autotls_odwait_requested(void)
{
    static uint64_t seen;   /* the watchdog thread only */
    uint64_t now;

    if (autotls_global.od_requests == NULL) {
        return 0;
    }
    now = __atomic_load_n(autotls_global.od_requests, __ATOMIC_ACQUIRE);
    if (now == seen) {
        return 0;
    }
    seen = now;
    return 1;
}

/* ---- one waiting handshake ------------------------------------------------ */

typedef struct {
    autotls_srv_conf_t *home;
    atls_store_t       *st;
    const char         *name;      /* canonical */
    char                esc[300];  /* name for the log */
} odwait_t;

/* 1 when this child serves the name its certificate now (what the
 * certificate callback will install: the child's copy of the registry) */
static int
odwait_cert_ready(odwait_t *w)
{
    return autotls_dyn_state(w->home, w->name) == AUTOTLS_DYN_SERVING;
}

/* The name's request entry (free with atls_od_entries_free(e, 1)), or
 * NULL when there is none. */
static atls_od_entry_t *
odwait_entry(odwait_t *w)
{
    atls_od_entry_t *e = calloc(1, sizeof(*e));
    char err[256];

    if (e != NULL
        && atls_od_request_get(w->st, w->name, e, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_od_entries_free(e, 1);
        e = NULL;
    }
    return e;
}

/* The watchdog's answer, if any: 1 denied or limited (why logged), else 0.
 * now 0: any answer counts, however short its validity (a waiting
 * handshake: the entry was "requested" when it began to wait, so an answer
 * is the one to its request, even when the ask failure cache of 1 s has
 * run out by the next tick; waiting on would last AutoTLSOnDemandWait). */
static int
odwait_refused(odwait_t *w, time_t now, int log_level)
{
    atls_od_entry_t *e = odwait_entry(w);
    int refused;

    if (e == NULL) {
        return 0;
    }
    refused = e->state != NULL && (strcmp(e->state, "denied") == 0
                                   || strcmp(e->state, "limited") == 0)
              && (now == 0 || e->until == 0 || e->until > now);
    if (refused) {
        ap_log_error(APLOG_MARK, log_level, 0, w->home->s,
                     "autotls: on demand: %s %s (%s): served the fallback", w->esc,
                     e->state, e->why ? e->why : "no reason given");
    }
    atls_od_entries_free(e, 1);
    return refused;
}

/* Writes the request unless one is pending; 0, or -1 to fall back now. */
static int
odwait_request(odwait_t *w, time_t now)
{
    char err[256];
    int rc;

    if (odwait_refused(w, now, APLOG_DEBUG)) {
        return -1;
    }
    rc = atls_od_request_put(w->st, w->name, w->home->s->server_hostname,
                             odw.max_pending, now, err, sizeof(err));
    if (rc == ATLS_STORE_BUSY) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, w->home->s,
                     "autotls: on demand: %s: %ld names already pending "
                     "(AutoTLSOnDemandLimits max_pending=): served the fallback",
                     w->esc, odw.max_pending);
        return -1;
    }
    if (rc != ATLS_STORE_OK) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, w->home->s,
                     "autotls: on demand: %s: cannot write the request: %s",
                     w->esc, err);
        return -1;
    }
    odwait_signal();
    return 0;
}

static void
odwait_deadline(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static long long
odwait_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Until the certificate, an answer that refuses it, or the deadline:
 * 1 when the certificate is there. */
static int
odwait_until_ready(odwait_t *w)
{
    long long end = odwait_mono_ms() + odw.wait_ms;
    uint64_t seen = 0;
    int ready = 0;

    for (;;) {
        uint64_t gen = autotls_generation_get();
        long long left;
        struct timespec ts;

        if (gen != seen) {
            seen = gen;
            if (odwait_cert_ready(w)) {
                ready = 1;
                break;
            }
        }
        if (odwait_refused(w, 0, APLOG_INFO)) {
            break;
        }
        left = end - odwait_mono_ms();
        if (left <= 0) {
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, w->home->s,
                         "autotls: on demand: %s: no certificate after %ldms "
                         "(AutoTLSOnDemandWait): served the fallback, the order goes on",
                         w->esc, odw.wait_ms);
            break;
        }
        odwait_deadline(&ts, left < ODWAIT_TICK_MS ? (long) left : ODWAIT_TICK_MS);
        pthread_mutex_lock(&odw.lock);
        if (!odw.stopping) {
            (void) pthread_cond_timedwait(&odw.cond, &odw.lock, &ts);
        }
        if (odw.stopping) {
            pthread_mutex_unlock(&odw.lock);
            break;
        }
        pthread_mutex_unlock(&odw.lock);
    }
    if (ready) {
        /* the others waiting may be waiting for this very deploy */
        pthread_mutex_lock(&odw.lock);
        pthread_cond_broadcast(&odw.cond);
        pthread_mutex_unlock(&odw.lock);
    }
    return ready;
}

/* The child's gate, cheapest checks first; ALLOW or ASK go on. */
static atls_od_verdict_t
odwait_gate(const char *sni, char *name, char *why, size_t whylen)
{
    atls_od_verdict_t v;

    pthread_mutex_lock(&odw.gate_lock);
    if (odw.gate == NULL) {
        pthread_mutex_unlock(&odw.gate_lock);
        snprintf(why, whylen, "no on-demand policy in this child");
        return ATLS_OD_DENY;
    }
    v = atls_od_check(odw.gate, sni, strlen(sni), time(NULL), name, why, whylen);
    pthread_mutex_unlock(&odw.gate_lock);
    return v;
}

static int
odwait_slot_take(void)
{
    int ok;

    pthread_mutex_lock(&odw.lock);
    ok = !odw.stopping && odw.waiting < odw.max_waiting;
    odw.waiting += ok;
    pthread_mutex_unlock(&odw.lock);
    return ok;
}

static void
odwait_slot_give(void)
{
    pthread_mutex_lock(&odw.lock);
    odw.waiting--;
    pthread_mutex_unlock(&odw.lock);
}

/* A registered name without its certificate: 1 while an order for it is
 * asked for or running (worth waiting for), 0 otherwise (failed, or in
 * its cooldown: the fallback at once, not a wait per handshake). */
static int
odwait_ordering(odwait_t *w)
{
    atls_od_entry_t *e = odwait_entry(w);
    int on = 0;

    if (e != NULL) {
        on = e->state != NULL && (strcmp(e->state, "requested") == 0
                                  || strcmp(e->state, "ordering") == 0);
        atls_od_entries_free(e, 1);
    }
    return on;
}

/* What the handshake does before it waits: 0 wait, -1 the fallback now. */
static int
odwait_prepare(odwait_t *w, int request)
{
    if (!request) {
        return odwait_ordering(w) ? 0 : -1;
    }
    if (autotls_dyn_state(w->home, w->name) == AUTOTLS_DYN_REMOVED) {
        /* an operator's removal wins over the policy */
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, w->home->s,
                     "autotls: on demand: %s was removed from the registry: "
                     "served the fallback", w->esc);
        return -1;
    }
    return odwait_request(w, time(NULL));
}

int
autotls_odwait_handshake(autotls_srv_conf_t *sc, const char *sni, int request)
{
    odwait_t w;
    char name[256], why[256];
    atls_od_verdict_t v = ATLS_OD_ALLOW;
    int ready = 0;

    if (sni == NULL || *sni == '\0' || autotls_global.od_home == NULL
        || strlen(sni) >= sizeof(name)) {
        return 0;
    }
    memset(&w, 0, sizeof(w));
    w.home = sc;     /* registered for the home it arrived at */
    atls_log_escape(sni, w.esc, sizeof(w.esc));
    if (request) {
        v = odwait_gate(sni, name, why, sizeof(why));
    } else {
        /* registered: the policy allowed it already */
        memcpy(name, sni, strlen(sni) + 1);
    }
    if (v != ATLS_OD_ALLOW && v != ATLS_OD_ASK) {
        /* debug: a flood of random names must not flood the log */
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, sc->s,
                     "autotls: on demand: %s %s (%s): served the fallback", w.esc,
                     atls_od_verdict_name(v), why);
        return 0;
    }
    if (!odwait_slot_take()) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, sc->s,
                     "autotls: on demand: %s: %d handshakes of this child already "
                     "wait for a certificate: served the fallback", w.esc,
                     odw.max_waiting);
        return 0;
    }
    w.name = name;
    atls_log_escape(name, w.esc, sizeof(w.esc));
    w.st = autotls_store_open(sc->s);
    if (w.st != NULL && odwait_prepare(&w, request) == 0) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, sc->s,
                     "autotls: on demand: %s %s, waiting up to %ldms", w.esc,
                     request ? "requested" : "being ordered", odw.wait_ms);
        ready = odwait_until_ready(&w);
    }
    if (w.st != NULL) {
        atls_store_close(w.st);
    }
    odwait_slot_give();
    return ready;
}
