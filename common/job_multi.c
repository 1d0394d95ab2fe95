/*
 * The scheduler (atls_sched.h) on one curl multi handle and poll, in the
 * calling thread: the host of the CLI and of Apache's watchdog thread.
 *
 * Everything the scheduler decides stays there; this file only carries
 * its requests to curl, its timer to the poll timeout and its hook runs to
 * extra descriptors of the same poll, and feeds the outcomes back.  The
 * waits of many orders overlap, and connections to a CA are reused across
 * orders.  A hook is a process watched through its report pipe, so a slow
 * dns hook of one certificate keeps only that order waiting; the commands
 * of the notifier (exec_start) are watched the same way.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include "atls.h"
#include "atls_hook.h"
#include "atls_http.h"
#include "atls_job.h"
#include "atls_sched.h"

#define MULTI_DEFAULT_PARALLEL 8
/* An upper bound on one poll, so that `stopping` is looked at at least
 * twice a second (Apache also publishes others' deploys from there). */
#define MULTI_MAX_POLL_MS      500
/* A stopping host waits this long for what is in flight (a server child
 * that exits must not leave the loop running); then it is cancelled. */
#define MULTI_STOP_GRACE_MS    60000

/* One transfer (easy != NULL) or hook run of the scheduler in flight. */
typedef struct multi_run_s {
    atls_sched_op_t      *op;
    CURL                 *easy;
    atls_http_xfer_t     *xfer;
    atls_hook_proc_t      hp;
    struct multi_run_s   *next;
} multi_run_t;

/* What the scheduler hands back as cert_data. */
typedef struct multi_cert_s {
    size_t                      i;       /* index into the caller's list, or
                                            ATLS_JOB_DYNAMIC */
    const atls_challenge_ops_t *ops;     /* http-01 / tls-alpn-01 answers */
    atls_sched_cert_t          *c;       /* NULL: refused by the scheduler */
    int                         done;
    struct multi_cert_s        *next;    /* dynamic names' (freed at the end) */
} multi_cert_t;

typedef struct {
    const atls_job_many_opts_t *o;
    atls_sched_t               *sched;
    CURLM                      *multi;
    multi_cert_t               *certs;
    multi_cert_t               *dyn_certs;  /* dynamic names' cert_data */
    size_t                      n_done;
    size_t                      failed;
    multi_run_t                *runs;
    size_t                      n_hooks;
    long long                   timer_at;   /* monotonic ms; -1 disarmed */
    long long                   stopped;    /* when the host said stop; 0 not */
    long long                   recheck_at; /* the next pass; 0 none */
    int                        *results;
    char                       *err;
    size_t                      errlen;
} multi_t;

static long long
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *
multi_alloc(size_t n)
{
    void *p = calloc(1, n);

    if (p == NULL) {
        abort();
    }
    return p;
}

/* ---- what is in flight ------------------------------------------- */

static void
multi_run_add(multi_t *m, multi_run_t *r)
{
    r->next = m->runs;
    m->runs = r;
    m->n_hooks += r->easy == NULL;
}

/* Takes r, or the run of op, or the transfer of easy out of the list (a
 * transfer also out of curl); NULL when it is not there. */
static multi_run_t *
multi_run_unlink(multi_t *m, multi_run_t *which, atls_sched_op_t *op, CURL *easy)
{
    multi_run_t **pp, *r;

    for (pp = &m->runs; (r = *pp) != NULL; pp = &r->next) {
        if (r == which || (op != NULL && r->op == op) || (easy != NULL && r->easy == easy)) {
            *pp = r->next;
            if (r->easy != NULL) {
                (void) curl_multi_remove_handle(m->multi, r->easy);
            } else {
                m->n_hooks--;
            }
            return r;
        }
    }
    return NULL;
}

/* ---- HTTP ---------------------------------------------------------- */

/* Ends transfer r: its answer into resp (which may be a throwaway). */
static void
multi_xfer_end(multi_run_t *r, int curl_code, atls_http_response_t *resp)
{
    memset(resp, 0, sizeof(*resp));
    atls_http_easy_collect(r->xfer, r->easy, curl_code, resp);
    curl_easy_cleanup(r->easy);
    free(r);
}

static int
multi_http_send(void *ctx, atls_sched_op_t *op, const atls_http_opts_t *o,
                const atls_http_request_t *req)
{
    multi_t     *m = ctx;
    multi_run_t *r = multi_alloc(sizeof(*r));

    r->op = op;
    r->easy = atls_http_easy_prepare(o, req, &r->xfer);
    if (r->easy == NULL) {
        free(r);
        return -1;
    }
    (void) curl_easy_setopt(r->easy, CURLOPT_PRIVATE, (char *) op);
    if (curl_multi_add_handle(m->multi, r->easy) != CURLM_OK) {
        atls_http_response_t resp;

        multi_xfer_end(r, CURLE_FAILED_INIT, &resp);
        atls_http_response_free(&resp);
        return -1;
    }
    multi_run_add(m, r);
    return 0;
}

/* Ends the run of op, which the scheduler gave up on. */
static void
multi_cancel(void *ctx, atls_sched_op_t *op)
{
    multi_t              *m = ctx;
    multi_run_t          *r = multi_run_unlink(m, NULL, op, NULL);
    atls_http_response_t  resp;

    if (r == NULL) {
        return;
    }
    if (r->easy != NULL) {
        multi_xfer_end(r, CURLE_ABORTED_BY_CALLBACK, &resp);
        atls_http_response_free(&resp);
    } else {
        atls_hook_kill(&r->hp);
        free(r);
    }
}

/* Every finished transfer back to the scheduler. */
static void
multi_harvest(multi_t *m)
{
    CURLMsg *msg;
    int      left;

    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        atls_http_response_t  resp;
        multi_run_t          *r;
        atls_sched_op_t      *op;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        /* looked up by pointer: never touches a handle that is not ours */
        r = multi_run_unlink(m, NULL, NULL, msg->easy_handle);
        if (r == NULL) {
            continue;
        }
        op = r->op;
        multi_xfer_end(r, (int) msg->data.result, &resp);
        atls_sched_http_done(m->sched, op, &resp);
        atls_http_response_free(&resp);
    }
}

/* ---- timer and hooks ---------------------------------------------- */

static void
multi_timer(void *ctx, long ms)
{
    multi_t *m = ctx;

    m->timer_at = ms < 0 ? -1 : mono_ms() + ms;
}

/* A dns hook (input NULL) or a notification command, watched alike. */
static int
multi_proc_start(multi_t *m, atls_sched_op_t *op, char *const argv[], const char *input,
                 size_t len, char *why, size_t whylen)
{
    multi_run_t *r = multi_alloc(sizeof(*r));
    int          rc;

    r->op = op;
    rc = input != NULL ? atls_hook_spawn_input(argv, input, len, &r->hp, why, whylen)
                       : atls_hook_spawn(argv, &r->hp, why, whylen);
    if (rc != 0) {
        free(r);
        return -1;
    }
    multi_run_add(m, r);
    return 0;
}

static int
multi_hook_start(void *ctx, atls_sched_op_t *op, char *const argv[],
                 char *why, size_t whylen)
{
    return multi_proc_start(ctx, op, argv, NULL, 0, why, whylen);
}

static int
multi_exec_start(void *ctx, atls_sched_op_t *op, char *const argv[], const char *input,
                 size_t len, char *why, size_t whylen)
{
    return multi_proc_start(ctx, op, argv, input != NULL ? input : "", len, why, whylen);
}

/* Every hook that reported back to the scheduler.  A report may make the
 * scheduler kill or start hooks, so the scan starts over after each. */
static void
multi_hooks_read(multi_t *m)
{
    multi_run_t *r;
    char         why[512];
    int          ok;

again:
    for (r = m->runs; r != NULL; r = r->next) {
        atls_sched_op_t *op = r->op;

        if (r->easy == NULL && atls_hook_read(&r->hp, &ok, why, sizeof(why)) == 1) {
            free(multi_run_unlink(m, r, NULL, NULL));
            atls_sched_hook_done(m->sched, op, ok, why);
            goto again;
        }
    }
}

/* ---- challenge answers and outcomes -------------------------------- */

static int
multi_publish(void *ctx, void *cert_data, const atls_challenge_t *c,
              char *why, size_t whylen)
{
    multi_cert_t *mc = cert_data;

    if (mc->ops == NULL || mc->ops->setup == NULL) {
        snprintf(why, whylen, "no way to publish %s answers here",
                 atls_challenge_type_name(c->type));
        return -1;
    }
    return mc->ops->setup(mc->ops->ctx, c, why, whylen);
}

static void
multi_withdraw(void *ctx, void *cert_data, const atls_challenge_t *c)
{
    multi_cert_t *mc = cert_data;

    if (mc->ops != NULL && mc->ops->teardown != NULL) {
        mc->ops->teardown(mc->ops->ctx, c);
    }
}

/* Records the outcome of certificate i and tells the host; msg is
 * "<id> (<keytype>): type: detail" on failure. */
static void
multi_outcome(multi_t *m, multi_cert_t *mc, int rc, const char *msg)
{
    if (mc->i == ATLS_JOB_DYNAMIC) {
        /* not one of the caller's list: each attempt is told */
        if (m->o->done != NULL) {
            m->o->done(m->o->ctx, mc->i, rc, msg);
        }
        return;
    }
    if (mc->done) {
        return;
    }
    mc->done = 1;
    m->n_done++;
    if (m->results != NULL) {
        m->results[mc->i] = rc;
    }
    if (rc != 0) {
        m->failed++;
        if (m->err != NULL && m->errlen > 0 && m->err[0] == '\0') {
            snprintf(m->err, m->errlen, "%s", msg);
        }
    }
    if (m->o->done != NULL) {
        m->o->done(m->o->ctx, mc->i, rc, msg);
    }
}

static void
multi_done(void *ctx, void *cert_data, const char *id, int rc, const atls_error_t *err)
{
    multi_t *m = ctx;
    char     msg[1200];

    msg[0] = '\0';
    if (rc != 0 && err != NULL) {
        snprintf(msg, sizeof(msg), "%s (%s): %s%s%s",
                 err->cert_id[0] ? err->cert_id : id,
                 err->key_type[0] ? err->key_type : "?",
                 err->type, err->type[0] ? ": " : "", err->detail);
    } else if (rc != 0) {
        snprintf(msg, sizeof(msg), "%s: failed", id);
    }
    multi_outcome(m, cert_data, rc, msg);
}

/* A dynamic home for the scheduler: its issuer from the caller, and a
 * cert_data of its own for each name (outcomes told as ATLS_JOB_DYNAMIC). */
static const atls_issuer_t *
multi_home(void *ctx, const char *home, void **cert_data)
{
    multi_t                    *m = ctx;
    const atls_challenge_ops_t *ops = NULL;
    const atls_issuer_t        *is;
    multi_cert_t               *mc;

    is = m->o->home(m->o->ctx, home, &ops);
    if (is == NULL) {
        return NULL;
    }
    mc = multi_alloc(sizeof(*mc));
    mc->i = ATLS_JOB_DYNAMIC;
    mc->ops = ops != NULL ? ops : m->o->default_ops;
    mc->next = m->dyn_certs;
    m->dyn_certs = mc;
    *cert_data = mc;
    return is;
}

/* ---- the loop ------------------------------------------------------ */

/* How long poll may wait: until the scheduler's timer, at most a second. */
static long
multi_poll_ms(const multi_t *m)
{
    long long left;

    if (m->timer_at < 0) {
        return MULTI_MAX_POLL_MS;
    }
    left = m->timer_at - mono_ms();
    return left <= 0 ? 0 : left < MULTI_MAX_POLL_MS ? (long) left : MULTI_MAX_POLL_MS;
}

static void
multi_wait(multi_t *m)
{
    struct curl_waitfd *fds = NULL;
    multi_run_t        *r;
    unsigned int        n = 0;

    if (m->n_hooks > 0) {
        fds = multi_alloc(m->n_hooks * sizeof(*fds));
        for (r = m->runs; r != NULL; r = r->next) {
            if (r->easy == NULL) {
                fds[n].fd = r->hp.fd;
                fds[n].events = CURL_WAIT_POLLIN;
                fds[n].revents = 0;
                n++;
            }
        }
    }
    (void) curl_multi_poll(m->multi, fds, n, (int) multi_poll_ms(m), NULL);
    free(fds);
}

/* Until the scheduler is idle; the host's `stopping` is asked whenever
 * nothing is ready, and stops the scheduler once.  What is still in
 * flight MULTI_STOP_GRACE_MS after that is left to multi_teardown. */
static void
multi_loop(multi_t *m)
{
    const atls_job_many_opts_t *o = m->o;

    for (;;) {
        int running = 0;

        (void) curl_multi_perform(m->multi, &running);
        multi_harvest(m);
        multi_hooks_read(m);
        if (m->timer_at >= 0 && m->timer_at <= mono_ms()) {
            m->timer_at = -1;
            atls_sched_timer(m->sched);
            continue;
        }
        if (atls_sched_idle(m->sched)) {
            return;
        }
        if (m->stopped == 0 && o->stopping != NULL && o->stopping(o->ctx)) {
            m->stopped = mono_ms();
            atls_sched_stop(m->sched);
            continue;
        }
        if (m->stopped != 0 && mono_ms() - m->stopped > MULTI_STOP_GRACE_MS) {
            atls_log(ATLS_LOG_WARN, "autotls: stopping with %zu order(s) still in flight",
                     atls_sched_running(m->sched));
            return;
        }
        if (o->tick != NULL && m->stopped == 0) {
            o->tick(o->ctx, m->sched);
        }
        if (m->recheck_at != 0 && m->stopped == 0 && mono_ms() >= m->recheck_at) {
            /* what was in flight still holds the loop: another pass, so that
             * a request or a renewal due meanwhile is not held up by it */
            m->recheck_at = mono_ms() + o->recheck_ms;
            atls_sched_check(m->sched);
            continue;
        }
        multi_wait(m);
    }
}

/* Adds every certificate to a new scheduler; certificates it refuses are
 * done (failed) at once.  -1 + err when nothing can run. */
static int
multi_setup(multi_t *m, atls_store_t *st, const atls_job_conf_t *confs, size_t n)
{
    static const atls_sched_host_t callbacks = {
        .http_send = multi_http_send, .http_cancel = multi_cancel,
        .timer = multi_timer,
        .hook_start = multi_hook_start, .hook_kill = multi_cancel,
        .exec_start = multi_exec_start,
        .publish = multi_publish, .withdraw = multi_withdraw,
        .done = multi_done
    };
    atls_sched_host_t host = callbacks;
    atls_sched_opts_t so;
    char              why[512];
    size_t            i;

    host.ctx = m;
    if (m->o->home != NULL) {
        host.home = multi_home;
    }
    memset(&so, 0, sizeof(so));
    so.max_parallel = m->o->max_parallel;
    so.ari = m->o->ari;
    so.events = m->o->events;
    so.policy = m->o->policy;
    so.names_grace_s = m->o->names_grace_s;
    so.on_demand = m->o->on_demand;

    m->timer_at = -1;
    m->multi = curl_multi_init();
    if (m->multi == NULL) {
        snprintf(m->err, m->errlen, "cannot set up concurrent transfers");
        return -1;
    }
    /* A pool of orders to one CA: reuse its connection for every request,
     * and never more connections to one host than orders in flight. */
    (void) curl_multi_setopt(m->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                             (long) (so.max_parallel > 0 ? so.max_parallel
                                                         : MULTI_DEFAULT_PARALLEL));
    m->sched = atls_sched_new(st, &host, &so, why, sizeof(why));
    if (m->sched == NULL) {
        snprintf(m->err, m->errlen, "%s", why);
        return -1;
    }
    m->certs = multi_alloc((n + 1) * sizeof(*m->certs));
    for (i = 0; i < n; i++) {
        multi_cert_t *mc = &m->certs[i];
        const atls_challenge_ops_t *ops = m->o->ops_v != NULL ? m->o->ops_v[i] : NULL;
        char msg[1200];

        mc->i = i;
        mc->ops = ops != NULL ? ops : m->o->default_ops;
        mc->c = atls_sched_add(m->sched, confs[i].names, confs[i].n_names,
                               confs[i].issuer, mc, why, sizeof(why));
        if (mc->c == NULL) {
            snprintf(msg, sizeof(msg), "%s: %s",
                     confs[i].n_names > 0 ? confs[i].names[0] : "?", why);
            multi_outcome(m, mc, -1, msg);
        }
    }
    return 0;
}

static void
multi_teardown(multi_t *m)
{
    if (m->sched != NULL) {
        atls_sched_free(m->sched);   /* cancels and kills what is left */
    }
    while (m->runs != NULL) {
        multi_cancel(m, m->runs->op);
    }
    if (m->multi != NULL) {
        curl_multi_cleanup(m->multi);
    }
    while (m->dyn_certs != NULL) {
        multi_cert_t *next = m->dyn_certs->next;

        free(m->dyn_certs);
        m->dyn_certs = next;
    }
    free(m->certs);
}

/* force: every certificate gets an attempt now (CLI); else the scheduler
 * decides (a check pass). */
static int
multi_run(atls_store_t *st, const atls_job_conf_t *confs, size_t n,
          const atls_job_many_opts_t *opts, int force, int *results,
          char *err, size_t errlen)
{
    atls_job_many_opts_t defaults;
    multi_t              m;
    char                 scratch[1];
    size_t               i;
    int                  rc = 0;

    if (err == NULL || errlen == 0) {
        err = scratch;
        errlen = sizeof(scratch);
    }
    err[0] = '\0';
    if (opts == NULL) {
        memset(&defaults, 0, sizeof(defaults));
        opts = &defaults;
    }
    for (i = 0; results != NULL && i < n; i++) {
        results[i] = -1;    /* until proven otherwise (also: never started) */
    }
    if (n == 0 && opts->events == NULL) {
        return 0;   /* with events: the notifier may have a queue to deliver */
    }
    memset(&m, 0, sizeof(m));
    m.o = opts;
    m.results = results;
    m.err = err;
    m.errlen = errlen;
    if (multi_setup(&m, st, confs, n) != 0) {
        multi_teardown(&m);
        return -1;
    }
    if (force) {
        for (i = 0; i < n; i++) {
            if (m.certs[i].c != NULL) {
                atls_sched_force(m.sched, m.certs[i].c);
            }
        }
    } else {
        if (opts->home != NULL) {
            /* the registry's names of the caller's dynamic homes join */
            atls_sched_names_sync(m.sched);
        }
        atls_sched_check(m.sched);
        m.recheck_at = opts->recheck_ms > 0 ? mono_ms() + opts->recheck_ms : 0;
    }
    multi_loop(&m);
    multi_teardown(&m);

    if (m.failed > 0) {
        rc = -1;
    }
    if (force && m.n_done < n) {
        rc = -1;
        if (err[0] == '\0') {
            snprintf(err, errlen, "stopped before %zu of %zu certificates were tried",
                     n - m.n_done, n);
        }
    }
    return rc;
}

void
atls_job_conf_of_meta(atls_job_conf_t *c, const atls_cert_meta_t *m)
{
    c->names = (const char *const *) m->names;
    c->n_names = m->n_names;
    c->issuer = &m->issuer;
}

int
atls_job_run_many(atls_store_t *st, atls_cert_meta_t *const *metas, size_t n,
                  const atls_job_many_opts_t *opts, int *results,
                  char *err, size_t errlen)
{
    atls_job_conf_t *confs = multi_alloc((n + 1) * sizeof(*confs));
    size_t           i;
    int              rc;

    for (i = 0; i < n; i++) {
        atls_job_conf_of_meta(&confs[i], metas[i]);
    }
    rc = multi_run(st, confs, n, opts, 1, results, err, errlen);
    free(confs);
    return rc;
}

int
atls_job_run_many_blocking(atls_store_t *st, atls_cert_meta_t *const *metas, size_t n,
                           size_t max_parallel, const atls_challenge_ops_t *ops,
                           int *results, char *err, size_t errlen)
{
    atls_job_many_opts_t o;

    memset(&o, 0, sizeof(o));
    o.max_parallel = max_parallel;
    o.default_ops = ops;
    return atls_job_run_many(st, metas, n, &o, results, err, errlen);
}

int
atls_job_check_pass(atls_store_t *st, const atls_job_conf_t *confs, size_t n,
                    const atls_job_many_opts_t *opts, char *err, size_t errlen)
{
    return multi_run(st, confs, n, opts, 0, NULL, err, errlen);
}
