/*
 * The scheduler (atls_sched.h) on one curl multi handle and poll, in the
 * calling thread: the host of the CLI's runs (job_multi.c) and of Apache's
 * watchdog thread, which keeps one loop, and so one scheduler, from its
 * start to its stop.
 *
 * Everything the scheduler decides stays there; this file only carries
 * its requests to curl, its timer to the poll timeout and its hook runs to
 * extra descriptors of the same poll, and feeds the outcomes back.  The
 * waits of many orders overlap, and connections to a CA are reused across
 * orders.  A hook is a process watched through its report pipe, so a slow
 * dns hook of one certificate keeps only that order waiting; the commands
 * of the notifier (exec_start) are watched the same way.
 *
 * Kept between runs, the scheduler's due index (sched_due.c) makes a pass
 * cost the certificates whose time came, and its copy of the registry
 * follows the names journal (atls_sched_names_sync).  Between runs nothing
 * runs here: a timer the scheduler armed for later (a retry, a
 * notification's next delivery) is looked at by atls_loop_pending.
 */
#define _GNU_SOURCE
#include <poll.h>
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

#define LOOP_DEFAULT_PARALLEL 8
/* An upper bound on one poll, so that `stopping` and `tick` are asked at
 * least twice a second (Apache also publishes others' deploys from there);
 * the host's wake may ask for sooner. */
#define LOOP_MAX_POLL_MS      500
/* A stopping host waits this long for what is in flight (a server child
 * that exits must not leave the loop running); then it is cancelled. */
#define LOOP_STOP_GRACE_MS    60000

/* One transfer (easy != NULL) or process (a dns hook, a notification
 * command) of the scheduler in flight. */
typedef struct loop_run_s {
    atls_sched_op_t      *op;
    CURL                 *easy;
    atls_http_xfer_t     *xfer;
    atls_hook_proc_t      hp;
    struct loop_run_s    *next;
} loop_run_t;

/* What the scheduler hands back as cert_data. */
typedef struct loop_cert_s {
    size_t                      i;       /* index into the caller's list, or
                                            ATLS_JOB_DYNAMIC */
    const atls_challenge_ops_t *ops;     /* http-01 / tls-alpn-01 answers */
    atls_sched_cert_t          *c;       /* NULL: refused by the scheduler */
    struct loop_cert_s         *next;    /* dynamic names' (freed with the loop) */
} loop_cert_t;

struct atls_loop_s {
    atls_loop_conf_t  conf;
    atls_sched_t     *sched;
    CURLM            *multi;
    loop_cert_t      *certs;      /* one per listed certificate */
    size_t            n_certs;
    loop_cert_t      *dyn_certs;  /* dynamic names' cert_data */
    loop_run_t       *runs;
    size_t            n_procs;
    long long         timer_at;   /* monotonic ms; -1 disarmed */
    long long         stopped;    /* when the host said stop; 0 not */
    unsigned long     passes;
};

static long long
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *
loop_alloc(size_t n)
{
    void *p = calloc(1, n);

    if (p == NULL) {
        abort();
    }
    return p;
}

/* ---- what is in flight ------------------------------------------- */

static void
loop_run_add(atls_loop_t *l, loop_run_t *r)
{
    r->next = l->runs;
    l->runs = r;
    l->n_procs += r->easy == NULL;
}

/* Takes the run of op, or the transfer of easy out of the list (a
 * transfer also out of curl); NULL when it is not there. */
static loop_run_t *
loop_run_take(atls_loop_t *l, atls_sched_op_t *op, CURL *easy)
{
    loop_run_t **pp, *r;

    for (pp = &l->runs; (r = *pp) != NULL; pp = &r->next) {
        if ((op != NULL && r->op == op) || (easy != NULL && r->easy == easy)) {
            *pp = r->next;
            if (r->easy != NULL) {
                (void) curl_multi_remove_handle(l->multi, r->easy);
            } else {
                l->n_procs--;
            }
            return r;
        }
    }
    return NULL;
}

/* ---- HTTP ---------------------------------------------------------- */

/* Ends transfer r: its answer into resp (which may be a throwaway). */
static void
loop_xfer_end(loop_run_t *r, int curl_code, atls_http_response_t *resp)
{
    memset(resp, 0, sizeof(*resp));
    atls_http_easy_collect(r->xfer, r->easy, curl_code, resp);
    curl_easy_cleanup(r->easy);
    free(r);
}

static int
loop_http_send(void *ctx, atls_sched_op_t *op, const atls_http_opts_t *o,
               const atls_http_request_t *req)
{
    atls_loop_t *l = ctx;
    loop_run_t  *r = loop_alloc(sizeof(*r));

    r->op = op;
    r->easy = atls_http_easy_prepare(o, req, &r->xfer);
    if (r->easy == NULL) {
        free(r);
        return -1;
    }
    (void) curl_easy_setopt(r->easy, CURLOPT_PRIVATE, (char *) op);
    if (curl_multi_add_handle(l->multi, r->easy) != CURLM_OK) {
        atls_http_response_t resp;

        loop_xfer_end(r, CURLE_FAILED_INIT, &resp);
        atls_http_response_free(&resp);
        return -1;
    }
    loop_run_add(l, r);
    return 0;
}

/* Ends the run of op, which the scheduler gave up on (never reported). */
static void
loop_cancel(void *ctx, atls_sched_op_t *op)
{
    atls_loop_t          *l = ctx;
    loop_run_t           *r = loop_run_take(l, op, NULL);
    atls_http_response_t  resp;

    if (r == NULL) {
        return;
    }
    if (r->easy != NULL) {
        loop_xfer_end(r, CURLE_ABORTED_BY_CALLBACK, &resp);
        atls_http_response_free(&resp);
    } else {
        atls_hook_kill(&r->hp);
        free(r);
    }
}

/* Every finished transfer back to the scheduler. */
static void
loop_harvest(atls_loop_t *l)
{
    CURLMsg *msg;
    int      left;

    while ((msg = curl_multi_info_read(l->multi, &left)) != NULL) {
        atls_http_response_t  resp;
        loop_run_t           *r;
        atls_sched_op_t      *op;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        /* looked up by pointer: never touches a handle that is not ours */
        r = loop_run_take(l, NULL, msg->easy_handle);
        if (r == NULL) {
            continue;
        }
        op = r->op;
        loop_xfer_end(r, (int) msg->data.result, &resp);
        atls_sched_http_done(l->sched, op, &resp);
        atls_http_response_free(&resp);
    }
}

/* ---- timer and processes ------------------------------------------ */

static void
loop_timer(void *ctx, long ms)
{
    atls_loop_t *l = ctx;

    l->timer_at = ms < 0 ? -1 : mono_ms() + ms;
}

/* A dns hook (input NULL) or a notification command, watched alike. */
static int
loop_proc_start(atls_loop_t *l, atls_sched_op_t *op, char *const argv[], const char *input,
                size_t len, char *why, size_t whylen)
{
    loop_run_t *r = loop_alloc(sizeof(*r));
    int         rc;

    r->op = op;
    rc = input != NULL ? atls_hook_spawn_input(argv, input, len, &r->hp, why, whylen)
                       : atls_hook_spawn(argv, &r->hp, why, whylen);
    if (rc != 0) {
        free(r);
        return -1;
    }
    loop_run_add(l, r);
    return 0;
}

static int
loop_hook_start(void *ctx, atls_sched_op_t *op, char *const argv[],
                char *why, size_t whylen)
{
    return loop_proc_start(ctx, op, argv, NULL, 0, why, whylen);
}

static int
loop_exec_start(void *ctx, atls_sched_op_t *op, char *const argv[], const char *input,
                size_t len, char *why, size_t whylen)
{
    return loop_proc_start(ctx, op, argv, input != NULL ? input : "", len, why, whylen);
}

/* Every process that reported back to the scheduler.  A report may make
 * the scheduler kill or start others, so the scan starts over after each. */
static void
loop_procs_read(atls_loop_t *l)
{
    loop_run_t *r;
    char        why[512];
    int         ok;

again:
    for (r = l->runs; r != NULL; r = r->next) {
        atls_sched_op_t *op = r->op;

        if (r->easy == NULL && atls_hook_read(&r->hp, &ok, why, sizeof(why)) == 1) {
            free(loop_run_take(l, op, NULL));
            atls_sched_hook_done(l->sched, op, ok, why);
            goto again;
        }
    }
}

/* ---- challenge answers and outcomes -------------------------------- */

static int
loop_publish(void *ctx, void *cert_data, const atls_challenge_t *c,
             char *why, size_t whylen)
{
    loop_cert_t *lc = cert_data;

    if (lc->ops == NULL || lc->ops->setup == NULL) {
        snprintf(why, whylen, "no way to publish %s answers here",
                 atls_challenge_type_name(c->type));
        return -1;
    }
    return lc->ops->setup(lc->ops->ctx, c, why, whylen);
}

static void
loop_withdraw(void *ctx, void *cert_data, const atls_challenge_t *c)
{
    loop_cert_t *lc = cert_data;

    if (lc->ops != NULL && lc->ops->teardown != NULL) {
        lc->ops->teardown(lc->ops->ctx, c);
    }
}

static int
loop_publish_wait(void *ctx, atls_sched_op_t *op, void *cert_data,
                  const atls_challenge_t *c, char *why, size_t whylen)
{
    atls_loop_t *l = ctx;

    return l->conf.publish_wait(l->conf.ctx, op, c, why, whylen);
}

static void
loop_publish_cancel(void *ctx, atls_sched_op_t *op)
{
    atls_loop_t *l = ctx;

    l->conf.publish_cancel(l->conf.ctx, op);
}

/* msg is "<id> (<keytype>): type: detail" on failure */
static void
loop_done(void *ctx, void *cert_data, const char *id, int rc, const atls_error_t *err)
{
    atls_loop_t *l = ctx;
    loop_cert_t *lc = cert_data;
    char         msg[1200];

    msg[0] = '\0';
    if (rc != 0 && err != NULL) {
        snprintf(msg, sizeof(msg), "%s (%s): %s%s%s",
                 err->cert_id[0] ? err->cert_id : id,
                 err->key_type[0] ? err->key_type : "?",
                 err->type, err->type[0] ? ": " : "", err->detail);
    } else if (rc != 0) {
        snprintf(msg, sizeof(msg), "%s: failed", id);
    }
    if (l->conf.done != NULL) {
        l->conf.done(l->conf.ctx, lc->i, rc, msg);
    }
}

/* A dynamic home for the scheduler: its issuer from the host, and a
 * cert_data of its own for each name (the scheduler may tell them apart by
 * pointer; outcomes told as ATLS_JOB_DYNAMIC). */
static const atls_issuer_t *
loop_home(void *ctx, const char *home, void **cert_data)
{
    atls_loop_t                *l = ctx;
    const atls_challenge_ops_t *ops = NULL;
    const atls_issuer_t        *is;
    loop_cert_t                *lc;

    is = l->conf.home(l->conf.ctx, home, &ops);
    if (is == NULL) {
        return NULL;
    }
    lc = loop_alloc(sizeof(*lc));
    lc->i = ATLS_JOB_DYNAMIC;
    lc->ops = ops != NULL ? ops : l->conf.default_ops;
    lc->next = l->dyn_certs;
    l->dyn_certs = lc;
    *cert_data = lc;
    return is;
}

/* ---- life ---------------------------------------------------------- */

/* Every listed certificate to the scheduler; one it refuses is done
 * (failed) at once. */
static void
loop_add_certs(atls_loop_t *l, const atls_job_conf_t *confs, size_t n)
{
    const atls_loop_conf_t *c = &l->conf;
    char                    why[512], msg[1200];
    size_t                  i;

    l->certs = loop_alloc((n + 1) * sizeof(*l->certs));
    l->n_certs = n;
    for (i = 0; i < n; i++) {
        loop_cert_t                *lc = &l->certs[i];
        const atls_challenge_ops_t *ops = c->ops_v != NULL ? c->ops_v[i] : NULL;

        lc->i = i;
        lc->ops = ops != NULL ? ops : c->default_ops;
        lc->c = atls_sched_add(l->sched, confs[i].names, confs[i].n_names,
                               confs[i].issuer, lc, why, sizeof(why));
        if (lc->c == NULL && c->done != NULL) {
            snprintf(msg, sizeof(msg), "%s: %s",
                     confs[i].n_names > 0 ? confs[i].names[0] : "?", why);
            c->done(c->ctx, i, -1, msg);
        }
    }
}

atls_loop_t *
atls_loop_new(atls_store_t *st, const atls_job_conf_t *confs, size_t n,
              const atls_sched_opts_t *so, const atls_loop_conf_t *conf,
              char *err, size_t errlen)
{
    static const atls_sched_host_t callbacks = {
        .http_send = loop_http_send, .http_cancel = loop_cancel,
        .timer = loop_timer,
        .hook_start = loop_hook_start, .hook_kill = loop_cancel,
        .exec_start = loop_exec_start,
        .publish = loop_publish, .withdraw = loop_withdraw,
        .done = loop_done
    };
    atls_sched_host_t  host = callbacks;
    atls_loop_t       *l = loop_alloc(sizeof(*l));

    l->conf = *conf;
    l->timer_at = -1;
    host.ctx = l;
    if (conf->home != NULL) {
        host.home = loop_home;
    }
    if (conf->publish_wait != NULL && conf->publish_cancel != NULL) {
        host.publish_wait = loop_publish_wait;
        host.publish_cancel = loop_publish_cancel;
    }
    l->multi = curl_multi_init();
    if (l->multi == NULL) {
        snprintf(err, errlen, "cannot set up concurrent transfers");
        goto failed;
    }
    /* A pool of orders to one CA: reuse its connection for every request,
     * and never more connections to one host than orders in flight. */
    (void) curl_multi_setopt(l->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                             (long) (so->max_parallel > 0 ? so->max_parallel
                                                          : LOOP_DEFAULT_PARALLEL));
    l->sched = atls_sched_new(st, &host, so, err, errlen);
    if (l->sched == NULL) {
        goto failed;
    }
    loop_add_certs(l, confs, n);
    if (conf->home != NULL) {
        atls_sched_names_sync(l->sched);    /* the registry joins */
    }
    return l;

failed:
    atls_loop_free(l);
    return NULL;
}

void
atls_loop_free(atls_loop_t *l)
{
    loop_cert_t *next;

    if (l == NULL) {
        return;
    }
    if (l->sched != NULL) {
        atls_sched_free(l->sched);   /* cancels and kills what is left */
    }
    while (l->runs != NULL) {
        loop_cancel(l, l->runs->op);
    }
    if (l->multi != NULL) {
        curl_multi_cleanup(l->multi);
    }
    for (; l->dyn_certs != NULL; l->dyn_certs = next) {
        next = l->dyn_certs->next;
        free(l->dyn_certs);
    }
    free(l->certs);
    free(l);
}

atls_sched_t *
atls_loop_sched(atls_loop_t *l)
{
    return l->sched;
}

void
atls_loop_force(atls_loop_t *l)
{
    size_t i;

    for (i = 0; i < l->n_certs; i++) {
        if (l->certs[i].c != NULL) {
            atls_sched_force(l->sched, l->certs[i].c);
        }
    }
}

void
atls_loop_check(atls_loop_t *l)
{
    if (l->stopped == 0) {
        l->passes++;
        atls_sched_check(l->sched);
    }
}

unsigned long
atls_loop_passes(const atls_loop_t *l)
{
    return l->passes;
}

int
atls_loop_pending(const atls_loop_t *l)
{
    return l->stopped == 0
           && (!atls_sched_idle(l->sched)
               || (l->timer_at >= 0 && l->timer_at <= mono_ms()));
}

int
atls_loop_stopped(const atls_loop_t *l)
{
    return l->stopped != 0;
}

/* ---- running ------------------------------------------------------- */

/* How long poll may wait: until the scheduler's timer, at most
 * LOOP_MAX_POLL_MS. */
static long
loop_poll_ms(const atls_loop_t *l)
{
    long long left;

    if (l->timer_at < 0) {
        return LOOP_MAX_POLL_MS;
    }
    left = l->timer_at - mono_ms();
    return left <= 0 ? 0 : left < LOOP_MAX_POLL_MS ? (long) left : LOOP_MAX_POLL_MS;
}

/* The host's wish (conf.wake): a shorter wait, and its fd among the
 * poll's.  Asked only while `stopping` is, which services that fd: once
 * stopped, a readable fd would end every wait at once. */
static long
loop_wake(atls_loop_t *l, long ms, struct curl_waitfd *hfd)
{
    const atls_loop_conf_t *c = &l->conf;
    int                     fd = -1, events = 0;
    long                    want;

    hfd->fd = -1;
    if (c->wake == NULL || l->stopped != 0) {
        return ms;
    }
    want = c->wake(c->ctx, &fd, &events);
    if (fd >= 0 && events != 0) {
        hfd->fd = fd;
        hfd->events = (short) (((events & POLLIN) ? CURL_WAIT_POLLIN : 0)
                               | ((events & POLLOUT) ? CURL_WAIT_POLLOUT : 0));
        hfd->revents = 0;
    }
    return want >= 0 && want < ms ? want : ms;
}

static void
loop_wait(atls_loop_t *l)
{
    struct curl_waitfd *fds;
    loop_run_t         *r;
    unsigned int        n;
    long                ms;

    /* the host's fd first, then the processes' */
    fds = loop_alloc((l->n_procs + 1) * sizeof(*fds));
    ms = loop_wake(l, loop_poll_ms(l), &fds[0]);
    n = fds[0].fd >= 0;
    for (r = l->runs; r != NULL; r = r->next) {
        if (r->easy == NULL) {
            fds[n].fd = r->hp.fd;
            fds[n].events = CURL_WAIT_POLLIN;
            fds[n].revents = 0;
            n++;
        }
    }
    (void) curl_multi_poll(l->multi, fds, n, (int) ms, NULL);
    free(fds);
}

void
atls_loop_run(atls_loop_t *l, long recheck_ms)
{
    const atls_loop_conf_t *c = &l->conf;
    long long               recheck_at = recheck_ms > 0 ? mono_ms() + recheck_ms : 0;

    for (;;) {
        int running = 0;

        (void) curl_multi_perform(l->multi, &running);
        loop_harvest(l);
        loop_procs_read(l);
        if (l->timer_at >= 0 && l->timer_at <= mono_ms()) {
            l->timer_at = -1;
            atls_sched_timer(l->sched);
            continue;
        }
        if (atls_sched_idle(l->sched)) {
            return;
        }
        if (l->stopped == 0 && c->stopping != NULL && c->stopping(c->ctx)) {
            /* for good: this scheduler takes no new work any more */
            l->stopped = mono_ms();
            atls_sched_stop(l->sched);
            continue;
        }
        if (l->stopped != 0 && mono_ms() - l->stopped > LOOP_STOP_GRACE_MS) {
            atls_log(ATLS_LOG_WARN, "autotls: stopping with %zu order(s) still in flight",
                     atls_sched_running(l->sched));
            return;
        }
        if (l->stopped == 0 && c->tick != NULL) {
            c->tick(c->ctx, l->sched);
        }
        if (recheck_at != 0 && l->stopped == 0 && mono_ms() >= recheck_at) {
            /* what is in flight still holds the run: another pass, so that
             * a request or a renewal due meanwhile is not held up by it */
            recheck_at = mono_ms() + recheck_ms;
            atls_loop_check(l);
            continue;
        }
        loop_wait(l);
    }
}
