/*
 * The scheduler's host in the watchdog thread: one scheduler (atls_sched.h)
 * that lives as long as the watchdog does, as nginx's driver keeps one for
 * as long as its worker drives.
 *
 * A scheduler built anew at each check (atls_job_check_pass) knows nothing
 * of the last one: every check listed the registry and looked at every
 * certificate's meta to learn that nothing was due.  Kept, its due index
 * (sched_due.c) makes a pass cost the certificates whose time came, and
 * its copy of the registry follows the names journal
 * (atls_sched_names_sync).
 *
 * mod_watchdog calls us; between its calls nothing runs here.  So a run
 * (autotls_loop_run) carries the scheduler's requests to curl, its timer
 * to the poll timeout and its hooks to extra descriptors of the same poll
 * until it is idle, then returns to mod_watchdog; a timer the scheduler
 * armed for later (a retry, a notification's next delivery) is looked at
 * by the next watch (autotls_loop_pending).
 */
#include <stdlib.h>
#include <string.h>
#include <poll.h>

#include <curl/curl.h>

#include "httpd.h"
#include "http_log.h"
#include "apr_time.h"

#include "atls_hook.h"
#include "atls_http.h"
#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

/* the longest poll: `stopping` and the tick are asked at least this often
 * (sooner when the host's wake asks) */
#define LOOP_POLL_MAX_MS   500
/* what is in flight this long after the child was told to stop is cancelled */
#define LOOP_STOP_GRACE    apr_time_from_sec(60)

/* One transfer (easy set) or process (a dns hook, a notification command)
 * of the scheduler in flight. */
typedef struct loop_op_s loop_op_t;

struct loop_op_s {
    atls_sched_op_t    *op;
    CURL               *easy;
    atls_http_xfer_t   *xfer;
    atls_hook_proc_t    proc;
    loop_op_t          *next;
};

/* The cert_data the scheduler hands back: a configured host's index, or
 * ATLS_JOB_DYNAMIC for a registered name. */
typedef struct loop_cert_s loop_cert_t;

struct loop_cert_s {
    size_t              i;
    loop_cert_t        *next;      /* the dynamic names', freed with the loop */
};

struct autotls_loop_s {
    autotls_loop_conf_t conf;
    atls_sched_t       *sched;
    CURLM              *multi;
    loop_op_t          *ops;
    size_t              n_procs;
    apr_time_t          timer_at;  /* 0: disarmed */
    apr_time_t          stopped;   /* when `stopping` said so; 0: not */
    loop_cert_t        *certs;     /* one per configured host */
    loop_cert_t        *dyn;
    unsigned long       passes;
};

static void *
loop_alloc(size_t n)
{
    void *p = calloc(1, n);

    if (p == NULL) {
        abort();
    }
    return p;
}

/* ---- what is in flight --------------------------------------------------- */

static void
loop_op_push(autotls_loop_t *l, loop_op_t *r)
{
    r->next = l->ops;
    l->ops = r;
    l->n_procs += r->easy == NULL;
}

/* The run of op, or of easy, out of the list (a transfer out of curl too). */
static loop_op_t *
loop_op_take(autotls_loop_t *l, atls_sched_op_t *op, CURL *easy)
{
    loop_op_t **pp, *r;

    for (pp = &l->ops; (r = *pp) != NULL; pp = &r->next) {
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

/* Ends transfer r with curl's code, its answer into resp. */
static void
loop_xfer_end(loop_op_t *r, int code, atls_http_response_t *resp)
{
    memset(resp, 0, sizeof(*resp));
    atls_http_easy_collect(r->xfer, r->easy, code, resp);
    curl_easy_cleanup(r->easy);
    free(r);
}

static int
loop_http_send(void *ctx, atls_sched_op_t *op, const atls_http_opts_t *o,
               const atls_http_request_t *req)
{
    autotls_loop_t *l = ctx;
    loop_op_t *r = loop_alloc(sizeof(*r));
    atls_http_response_t resp;

    r->op = op;
    r->easy = atls_http_easy_prepare(o, req, &r->xfer);
    if (r->easy == NULL) {
        free(r);
        return -1;
    }
    if (curl_multi_add_handle(l->multi, r->easy) != CURLM_OK) {
        loop_xfer_end(r, CURLE_FAILED_INIT, &resp);
        atls_http_response_free(&resp);
        return -1;
    }
    loop_op_push(l, r);
    return 0;
}

/* The scheduler gave up on op: it is never reported. */
static void
loop_cancel(void *ctx, atls_sched_op_t *op)
{
    autotls_loop_t *l = ctx;
    loop_op_t *r = loop_op_take(l, op, NULL);
    atls_http_response_t resp;

    if (r == NULL) {
        return;
    }
    if (r->easy != NULL) {
        loop_xfer_end(r, CURLE_ABORTED_BY_CALLBACK, &resp);
        atls_http_response_free(&resp);
        return;
    }
    atls_hook_kill(&r->proc);
    free(r);
}

static void
loop_timer(void *ctx, long ms)
{
    autotls_loop_t *l = ctx;

    l->timer_at = ms < 0 ? 0 : apr_time_now() + apr_time_from_msec(ms);
}

/* A dns hook (input NULL) or a notification command: watched alike. */
static int
loop_spawn(autotls_loop_t *l, atls_sched_op_t *op, char *const argv[], const char *input,
           size_t len, char *why, size_t whylen)
{
    loop_op_t *r = loop_alloc(sizeof(*r));
    int rc;

    r->op = op;
    rc = input != NULL ? atls_hook_spawn_input(argv, input, len, &r->proc, why, whylen)
                       : atls_hook_spawn(argv, &r->proc, why, whylen);
    if (rc != 0) {
        free(r);
        return -1;
    }
    loop_op_push(l, r);
    return 0;
}

static int
loop_hook_start(void *ctx, atls_sched_op_t *op, char *const argv[], char *why,
                size_t whylen)
{
    return loop_spawn(ctx, op, argv, NULL, 0, why, whylen);
}

static int
loop_exec_start(void *ctx, atls_sched_op_t *op, char *const argv[], const char *input,
                size_t len, char *why, size_t whylen)
{
    return loop_spawn(ctx, op, argv, input != NULL ? input : "", len, why, whylen);
}

/* ---- answers and outcomes ------------------------------------------------- */

static int
loop_publish(void *ctx, void *cert_data, const atls_challenge_t *c, char *why,
             size_t whylen)
{
    autotls_loop_t *l = ctx;

    return l->conf.ops->setup(l->conf.ops->ctx, c, why, whylen);
}

static void
loop_withdraw(void *ctx, void *cert_data, const atls_challenge_t *c)
{
    autotls_loop_t *l = ctx;

    l->conf.ops->teardown(l->conf.ops->ctx, c);
}

static int
loop_publish_wait(void *ctx, atls_sched_op_t *op, void *cert_data,
                  const atls_challenge_t *c, char *why, size_t whylen)
{
    autotls_loop_t *l = ctx;

    return l->conf.publish_wait(l->conf.ctx, op, c, why, whylen);
}

static void
loop_publish_cancel(void *ctx, atls_sched_op_t *op)
{
    autotls_loop_t *l = ctx;

    l->conf.publish_cancel(l->conf.ctx, op);
}

/* "<id> (<key type>): type: detail", as the CLI says it */
static void
loop_done(void *ctx, void *cert_data, const char *id, int rc, const atls_error_t *err)
{
    autotls_loop_t *l = ctx;
    loop_cert_t *lc = cert_data;
    char msg[1200];

    msg[0] = '\0';
    if (rc != 0 && err != NULL) {
        snprintf(msg, sizeof(msg), "%s (%s): %s%s%s",
                 err->cert_id[0] ? err->cert_id : id,
                 err->key_type[0] ? err->key_type : "?",
                 err->type, err->type[0] ? ": " : "", err->detail);
    } else if (rc != 0) {
        snprintf(msg, sizeof(msg), "%s: failed", id);
    }
    l->conf.done(l->conf.ctx, lc->i, rc, msg);
}

static const atls_issuer_t *
loop_home(void *ctx, const char *home, void **cert_data)
{
    autotls_loop_t *l = ctx;
    const atls_issuer_t *is = l->conf.home(l->conf.ctx, home);
    loop_cert_t *lc;

    if (is == NULL) {
        return NULL;
    }
    /* one per name the scheduler adds; all alike, so one would do, but the
     * scheduler may tell them apart by pointer */
    lc = loop_alloc(sizeof(*lc));
    lc->i = ATLS_JOB_DYNAMIC;
    lc->next = l->dyn;
    l->dyn = lc;
    *cert_data = lc;
    return is;
}

/* ---- life ------------------------------------------------------------------ */

autotls_loop_t *
autotls_loop_new(atls_store_t *st, const atls_job_conf_t *confs, size_t n,
                 const atls_sched_opts_t *so, const autotls_loop_conf_t *conf,
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
    atls_sched_host_t host = callbacks;
    autotls_loop_t *l = loop_alloc(sizeof(*l));
    char why[512];
    size_t i;

    l->conf = *conf;
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
        snprintf(err, errlen, "curl_multi_init() failed");
        goto failed;
    }
    /* orders to one CA share its connection; never more of them than
     * orders in flight */
    (void) curl_multi_setopt(l->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                             (long) (so->max_parallel > 0 ? so->max_parallel : 8));
    l->sched = atls_sched_new(st, &host, so, err, errlen);
    if (l->sched == NULL) {
        goto failed;
    }
    l->certs = loop_alloc((n + 1) * sizeof(*l->certs));
    for (i = 0; i < n; i++) {
        l->certs[i].i = i;
        if (atls_sched_add(l->sched, confs[i].names, confs[i].n_names, confs[i].issuer,
                           &l->certs[i], why, sizeof(why)) == NULL) {
            char msg[1024];

            snprintf(msg, sizeof(msg), "%s: %s",
                     confs[i].n_names > 0 ? confs[i].names[0] : "?", why);
            conf->done(conf->ctx, i, -1, msg);
        }
    }
    if (conf->home != NULL) {
        atls_sched_names_sync(l->sched);    /* the registry joins */
    }
    return l;

failed:
    autotls_loop_free(l);
    return NULL;
}

void
autotls_loop_free(autotls_loop_t *l)
{
    loop_cert_t *next;

    if (l == NULL) {
        return;
    }
    if (l->sched != NULL) {
        atls_sched_free(l->sched);          /* cancels what is left */
    }
    while (l->ops != NULL) {
        loop_cancel(l, l->ops->op);
    }
    if (l->multi != NULL) {
        curl_multi_cleanup(l->multi);
    }
    for (; l->dyn != NULL; l->dyn = next) {
        next = l->dyn->next;
        free(l->dyn);
    }
    free(l->certs);
    free(l);
}

atls_sched_t *
autotls_loop_sched(autotls_loop_t *l)
{
    return l->sched;
}

unsigned long
autotls_loop_passes(const autotls_loop_t *l)
{
    return l->passes;
}

void
autotls_loop_check(autotls_loop_t *l)
{
    if (l->stopped == 0) {
        l->passes++;
        atls_sched_check(l->sched);
    }
}

int
autotls_loop_pending(const autotls_loop_t *l)
{
    return l->stopped == 0
           && (!atls_sched_idle(l->sched)
               || (l->timer_at != 0 && l->timer_at <= apr_time_now()));
}

int
autotls_loop_stopped(const autotls_loop_t *l)
{
    return l->stopped != 0;
}

/* ---- running ------------------------------------------------------------------ */

/* Every finished transfer back to the scheduler. */
static void
loop_harvest(autotls_loop_t *l)
{
    atls_http_response_t resp;
    atls_sched_op_t *op;
    loop_op_t *r;
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(l->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE
            || (r = loop_op_take(l, NULL, msg->easy_handle)) == NULL) {
            continue;
        }
        op = r->op;
        loop_xfer_end(r, (int) msg->data.result, &resp);
        atls_sched_http_done(l->sched, op, &resp);
        atls_http_response_free(&resp);
    }
}

/* Every process that ended; a report may start or kill others, so the
 * scan starts over after each. */
static void
loop_procs_read(autotls_loop_t *l)
{
    atls_sched_op_t *op;
    loop_op_t *r;
    char why[512];
    int ok;

again:
    for (r = l->ops; r != NULL; r = r->next) {
        if (r->easy == NULL && atls_hook_read(&r->proc, &ok, why, sizeof(why)) == 1) {
            op = r->op;
            free(loop_op_take(l, op, NULL));
            atls_sched_hook_done(l->sched, op, ok, why);
            goto again;
        }
    }
}

/* The host's wish (conf.wake): a shorter wait, and its fd among the
 * poll's.  Asked only while `stopping` is, which services that fd: once
 * stopped, a readable fd would end every wait at once. */
static long
loop_wake(autotls_loop_t *l, long ms, struct curl_waitfd *hfd)
{
    const autotls_loop_conf_t *c = &l->conf;
    int fd = -1, events = 0;
    long want;

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
    if (want >= 0 && want < ms) {
        ap_log_error(APLOG_MARK, APLOG_TRACE1, 0, autotls_global.main_server,
                     "autotls: loop waits %ld ms, as the host asked", want);
        ms = want;
    }
    return ms;
}

static void
loop_wait(autotls_loop_t *l)
{
    struct curl_waitfd *fds;
    apr_time_t left;
    unsigned int n = 0;
    long ms = LOOP_POLL_MAX_MS;
    loop_op_t *r;

    if (l->timer_at != 0) {
        left = l->timer_at - apr_time_now();
        ms = left <= 0 ? 0 : left < apr_time_from_msec(ms) ? (long) apr_time_as_msec(left)
                                                            : ms;
    }
    /* the processes' fds and the host's */
    fds = loop_alloc((l->n_procs + 1) * sizeof(*fds));
    ms = loop_wake(l, ms, &fds[0]);
    n = fds[0].fd >= 0;
    for (r = l->ops; r != NULL; r = r->next) {
        if (r->easy == NULL) {
            fds[n].fd = r->proc.fd;
            fds[n].events = CURL_WAIT_POLLIN;
            n++;
        }
    }
    (void) curl_multi_poll(l->multi, fds, n, (int) ms, NULL);
    free(fds);
}

void
autotls_loop_run(autotls_loop_t *l, apr_interval_time_t recheck)
{
    const autotls_loop_conf_t *c = &l->conf;
    apr_time_t recheck_at = recheck > 0 ? apr_time_now() + recheck : 0;
    int running;

    for (;;) {
        (void) curl_multi_perform(l->multi, &running);
        loop_harvest(l);
        loop_procs_read(l);
        if (l->timer_at != 0 && l->timer_at <= apr_time_now()) {
            l->timer_at = 0;
            atls_sched_timer(l->sched);
            continue;
        }
        if (atls_sched_idle(l->sched)) {
            return;
        }
        if (l->stopped == 0 && c->stopping(c->ctx)) {
            /* for good: this scheduler takes no new work any more */
            l->stopped = apr_time_now();
            atls_sched_stop(l->sched);
            continue;
        }
        if (l->stopped != 0 && apr_time_now() - l->stopped > LOOP_STOP_GRACE) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, autotls_global.main_server,
                         "autotls: stopping with %lu order(s) still in flight",
                         (unsigned long) atls_sched_running(l->sched));
            return;
        }
        if (l->stopped == 0 && c->tick != NULL) {
            c->tick(c->ctx, l->sched);
        }
        if (recheck_at != 0 && l->stopped == 0 && apr_time_now() >= recheck_at) {
            /* orders still hold the run: a pass for what fell due meanwhile */
            recheck_at = apr_time_now() + recheck;
            autotls_loop_check(l);
            continue;
        }
        loop_wait(l);
    }
}
