/*
 * The scheduler's notifier (notify.c) on a fake host: webhook answers are
 * given by the test, commands are real small scripts run through
 * atls_hook_spawn_input, the one timer is fired by the test.  What is
 * delivered, in which order, what stays queued (with its retry state) and
 * what a new scheduler on the same store picks up.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>
#include "atls.h"
#include "atls_event.h"
#include "atls_hook.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "support/logcap.h"
#include "support/tmptree.h"

#define MAX_REQ 32

typedef struct {
    atls_sched_op_t *op;
    char            *url;
    char            *body;
    char            *headers[8];
    size_t           n_headers;
    long             timeout_ms;
    int              answered;
} req_t;

typedef struct {
    atls_sched_t     *s;
    req_t             req[MAX_REQ];
    size_t            n_req;
    long              timer_ms;     /* last armed; -1 disarmed */
    int               timer_armed;
    atls_sched_op_t  *exec_op;
    atls_hook_proc_t  exec_hp;
    int               exec_runs;
    int               kills, cancels;
} host_t;

typedef struct {
    char            dir[256];
    char            script_ok[300], script_fail[300], script_hang[300], out[300];
    atls_store_t   *st;
    atls_events_t  *ev;
    host_t          h;
} fx_t;

/* ---- the fake host --------------------------------------------------------- */

static int
h_http_send(void *ctx, atls_sched_op_t *op, const atls_http_opts_t *o,
            const atls_http_request_t *r)
{
    host_t *h = ctx;
    req_t  *q;
    size_t  i;

    assert_true(h->n_req < MAX_REQ);
    q = &h->req[h->n_req++];
    memset(q, 0, sizeof(*q));
    q->op = op;
    q->url = strdup(r->url);
    q->body = strndup(r->body, r->body_len);
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->content_type, "application/json");
    for (i = 0; i < r->n_headers && i < 8; i++) {
        q->headers[q->n_headers++] = strdup(r->headers[i]);
    }
    q->timeout_ms = o->total_timeout_ms;
    return 0;
}

static void
h_http_cancel(void *ctx, atls_sched_op_t *op)
{
    host_t *h = ctx;
    size_t  i;

    h->cancels++;
    for (i = 0; i < h->n_req; i++) {
        if (h->req[i].op == op) {
            h->req[i].answered = 1;
        }
    }
}

static void
h_timer(void *ctx, long ms)
{
    host_t *h = ctx;

    h->timer_ms = ms;
    h->timer_armed = ms >= 0;
}

static int
h_hook_start(void *ctx, atls_sched_op_t *op, char *const argv[], char *why, size_t whylen)
{
    snprintf(why, whylen, "no hooks here");
    return -1;
}

static int
h_exec_start(void *ctx, atls_sched_op_t *op, char *const argv[], const char *input,
             size_t len, char *why, size_t whylen)
{
    host_t *h = ctx;

    assert_null(h->exec_op);    /* one in flight per sink */
    if (atls_hook_spawn_input(argv, input, len, &h->exec_hp, why, whylen) != 0) {
        return -1;
    }
    h->exec_op = op;
    h->exec_runs++;
    return 0;
}

static void
h_hook_kill(void *ctx, atls_sched_op_t *op)
{
    host_t *h = ctx;

    if (op == h->exec_op) {
        atls_hook_kill(&h->exec_hp);
        h->exec_op = NULL;
        h->kills++;
    }
}

static atls_sched_t *
sched_start(fx_t *f, const atls_notify_conf_t *conf)
{
    atls_sched_host_t host;
    atls_sched_opts_t so;
    char              err[256];

    memset(&host, 0, sizeof(host));
    host.ctx = &f->h;
    host.http_send = h_http_send;
    host.http_cancel = h_http_cancel;
    host.timer = h_timer;
    host.hook_start = h_hook_start;
    host.hook_kill = h_hook_kill;
    host.exec_start = h_exec_start;
    if (f->ev == NULL) {
        atls_actor_t a;

        atls_actor_self(&a, "server", "test/1");
        f->ev = atls_events_new(f->st, &a, conf);
        assert_non_null(f->ev);
    }
    memset(&so, 0, sizeof(so));
    so.events = f->ev;
    f->h.timer_ms = -1;
    f->h.s = atls_sched_new(f->st, &host, &so, err, sizeof(err));
    assert_non_null(f->h.s);
    atls_sched_check(f->h.s);   /* as hosts do: a pass looks at the queue */
    return f->h.s;
}

static void
sched_end(fx_t *f)
{
    size_t i, j;

    atls_sched_free(f->h.s);
    f->h.s = NULL;
    for (i = 0; i < f->h.n_req; i++) {
        free(f->h.req[i].url);
        free(f->h.req[i].body);
        for (j = 0; j < f->h.req[i].n_headers; j++) {
            free(f->h.req[i].headers[j]);
        }
    }
    f->h.n_req = 0;
    atls_events_free(f->ev);
    f->ev = NULL;
}

/* Fires the timer when the scheduler armed it for now (0 ms). */
static void
run_soon(fx_t *f)
{
    int i;

    for (i = 0; i < 20 && f->h.timer_armed && f->h.timer_ms == 0; i++) {
        f->h.timer_armed = 0;
        atls_sched_timer(f->h.s);
    }
}

/* The last webhook request not answered yet. */
static req_t *
open_req(fx_t *f)
{
    size_t i;

    for (i = 0; i < f->h.n_req; i++) {
        if (!f->h.req[i].answered) {
            return &f->h.req[i];
        }
    }
    return NULL;
}

static void
answer(fx_t *f, long status)
{
    req_t               *q = open_req(f);
    atls_http_response_t resp;

    assert_non_null(q);
    memset(&resp, 0, sizeof(resp));
    resp.status = status;
    if (status == 0) {
        resp.transport_error = 1;
        snprintf(resp.error, sizeof(resp.error), "Operation timed out after 10000 ms");
    }
    q->answered = 1;
    atls_sched_http_done(f->h.s, q->op, &resp);
    run_soon(f);
}

/* Waits (polling the report pipe) until the running command reported;
 * with fire_timer, fires the scheduler's timer when its deadline comes. */
static void
exec_wait(fx_t *f, int fire_timer)
{
    int i;

    for (i = 0; i < 1000 && f->h.exec_op != NULL; i++) {
        struct pollfd p = { f->h.exec_hp.fd, POLLIN, 0 };
        char          why[512];
        int           ok;

        if (poll(&p, 1, 20) > 0 && atls_hook_read(&f->h.exec_hp, &ok, why, sizeof(why)) == 1) {
            atls_sched_op_t *op = f->h.exec_op;

            f->h.exec_op = NULL;
            atls_sched_hook_done(f->h.s, op, ok, why);
            break;
        }
        if (fire_timer) {
            f->h.timer_armed = 0;
            atls_sched_timer(f->h.s);
        }
    }
    assert_null(f->h.exec_op);
    run_soon(f);
}

static void
emit(fx_t *f, atls_event_type_t t, const char *id)
{
    atls_event_t e;

    memset(&e, 0, sizeof(e));
    e.type = t;
    e.cert_id = id;
    e.reason = -1;
    (void) atls_events_emit(f->ev, &e);
}

static size_t
queue_len(fx_t *f)
{
    char   **keys = NULL, err[256];
    size_t   n = 0, i;

    assert_int_equal(atls_store_queue_list(f->st, &keys, &n, err, sizeof(err)), ATLS_STORE_OK);
    for (i = 0; i < n; i++) {
        free(keys[i]);
    }
    free(keys);
    return n;
}

/* The oldest entry, parsed (the caller decrefs); key into buf. */
static json_t *
queue_head(fx_t *f, char *keybuf, size_t keylen)
{
    char   **keys = NULL, *data = NULL, err[256];
    size_t   n = 0, len = 0, i;
    json_t  *e;

    assert_int_equal(atls_store_queue_list(f->st, &keys, &n, err, sizeof(err)), ATLS_STORE_OK);
    assert_true(n > 0);
    snprintf(keybuf, keylen, "%s", keys[0]);
    for (i = 0; i < n; i++) {
        free(keys[i]);
    }
    free(keys);
    assert_int_equal(atls_store_queue_get(f->st, keybuf, &data, &len, err, sizeof(err)),
                     ATLS_STORE_OK);
    e = json_loadb(data, len, 0, NULL);
    free(data);
    assert_non_null(e);
    return e;
}

/* Makes the oldest entry's retry of sink due now (the backoff passed). */
static void
head_retry_now(fx_t *f, const char *sink)
{
    char    key[64], *text, err[256];
    json_t *e = queue_head(f, key, sizeof(key));

    json_object_set_new(json_object_get(e, "retry_at"), sink, json_integer(time(NULL) - 1));
    text = json_dumps(e, JSON_COMPACT);
    assert_int_equal(atls_store_queue_update(f->st, key, text, strlen(text), err, sizeof(err)),
                     ATLS_STORE_OK);
    free(text);
    json_decref(e);
}

/* attempts[sink] of the oldest entry, and its retry time into *at. */
static long long
head_attempts(fx_t *f, const char *sink, long long *at)
{
    char      key[64];
    json_t   *e = queue_head(f, key, sizeof(key));
    long long n = json_integer_value(json_object_get(json_object_get(e, "attempts"), sink));

    if (at != NULL) {
        *at = json_integer_value(json_object_get(json_object_get(e, "retry_at"), sink));
    }
    json_decref(e);
    return n;
}

static const char *
body_id(const req_t *q, char *buf, size_t len)
{
    json_t *j = json_loads(q->body, 0, NULL);

    assert_non_null(j);
    snprintf(buf, len, "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    return buf;
}

/* ---- fixture ------------------------------------------------------------------ */

static void
write_script(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    assert_int_equal(chmod(path, 0700), 0);
}

static int
setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    char  err[256], text[700];

    snprintf(f->dir, sizeof(f->dir), "/tmp/atls-notify-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->out, sizeof(f->out), "%s/out.txt", f->dir);
    snprintf(f->script_ok, sizeof(f->script_ok), "%s/ok.sh", f->dir);
    snprintf(f->script_fail, sizeof(f->script_fail), "%s/fail.sh", f->dir);
    snprintf(f->script_hang, sizeof(f->script_hang), "%s/hang.sh", f->dir);
    snprintf(text, sizeof(text), "#!/bin/sh\n{ echo \"$1 $2\"; cat; echo; } >> %s\n", f->out);
    write_script(f->script_ok, text);
    write_script(f->script_fail, "#!/bin/sh\ncat >/dev/null\necho 'receiver said no' >&2\n"
                 "exit 3\n");
    write_script(f->script_hang, "#!/bin/sh\nexec sleep 60\n");
    snprintf(text, sizeof(text), "%s/store", f->dir);
    f->st = atls_store_fs_open(text, err, sizeof(err));
    assert_non_null(f->st);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fx_t *f = *state;

    if (f->h.s != NULL || f->ev != NULL) {
        sched_end(f);
    }
    atls_store_close(f->st);
    tmptree_rm(f->dir);
    free(f);
    return 0;
}

static void
conf_webhook(atls_notify_conf_t *c, char **headers)
{
    memset(c, 0, sizeof(*c));
    c->webhook = "http://hookuser:pw-sekrit@127.0.0.1:9/hook?token=abc";
    headers[0] = "Authorization: Bearer sekrit";
    c->headers = headers;
    c->n_headers = 1;
}

/* One event queued for both sinks by an emitter of its own, gone after. */
static void
queue_for_both(fx_t *f, atls_event_type_t t, const char *id)
{
    atls_notify_conf_t both;
    atls_actor_t       a;
    char              *hdr[1];

    conf_webhook(&both, hdr);
    both.exec = f->script_ok;
    atls_actor_self(&a, "server", "test/1");
    f->ev = atls_events_new(f->st, &a, &both);
    emit(f, t, id);
    atls_events_free(f->ev);
    f->ev = NULL;
}

/* ---- tests ---------------------------------------------------------------------- */

/* 2xx delivers and removes the entry; events arrive in the order queued,
 * one request in flight at a time; the configured header is sent. */
static void
webhook_in_order(void **state)
{
    fx_t               *f = *state;
    atls_notify_conf_t  c;
    char               *hdr[1], id[64];

    conf_webhook(&c, hdr);
    sched_start(f, &c);
    emit(f, ATLS_EV_OBTAINED, "a.test");
    emit(f, ATLS_EV_DEPLOYED, "b.test");
    emit(f, ATLS_EV_RENEWED, "c.test");
    run_soon(f);
    assert_int_equal(f->h.n_req, 1);
    assert_string_equal(body_id(&f->h.req[0], id, sizeof(id)), "a.test");
    assert_string_equal(f->h.req[0].headers[0], "Authorization: Bearer sekrit");
    assert_int_equal(f->h.req[0].timeout_ms, 10000);
    assert_false(atls_sched_idle(f->h.s));      /* a delivery in flight */
    answer(f, 204);
    assert_int_equal(f->h.n_req, 2);
    assert_string_equal(body_id(&f->h.req[1], id, sizeof(id)), "b.test");
    answer(f, 200);
    answer(f, 200);
    assert_int_equal(f->h.n_req, 3);
    assert_string_equal(body_id(&f->h.req[2], id, sizeof(id)), "c.test");
    assert_int_equal(queue_len(f), 0);
    assert_true(atls_sched_idle(f->h.s));
}

/* 5xx and a timeout: the entry stays first with its attempts and a retry
 * 10 s then 20 s away (±20%), the ones behind it wait; one WARN for the
 * streak, never the header value; a new scheduler honours the stored
 * retry time and delivers once it has passed, in order, then INFO. */
static void
webhook_retry_and_restart(void **state)
{
    fx_t               *f = *state;
    atls_notify_conf_t  c;
    char               *hdr[1], key[64], id[64];
    json_t             *e;
    time_t              now;
    long long           at;

    conf_webhook(&c, hdr);
    logcap_start(ATLS_LOG_INFO);
    sched_start(f, &c);
    emit(f, ATLS_EV_OBTAINED, "a.test");
    emit(f, ATLS_EV_DEPLOYED, "b.test");
    run_soon(f);
    answer(f, 503);
    assert_int_equal(f->h.n_req, 1);            /* b waits behind a */
    now = time(NULL);
    assert_int_equal(head_attempts(f, "webhook", &at), 1);
    assert_true(at >= now + 7 && at <= now + 13);
    e = queue_head(f, key, sizeof(key));
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "last_error"),
                                                           "webhook")), "HTTP 503");
    json_decref(e);
    assert_true(f->h.timer_armed && f->h.timer_ms > 5000 && f->h.timer_ms <= 30000);
    assert_true(atls_sched_idle(f->h.s));       /* a waiting retry does not count */
    assert_int_equal(logcap_count("not delivered: HTTP 503"), 1);
    assert_int_equal(logcap_count("sekrit"), 0);
    assert_int_equal(logcap_count("token=abc"), 0);
    /* the URL's userinfo is a credential too: the host only */
    assert_int_equal(logcap_count("hookuser"), 0);
    assert_int_equal(logcap_count("webhook http://127.0.0.1:9/hook:"), 1);

    /* restart: the stored retry time holds for the new scheduler too */
    sched_end(f);
    sched_start(f, &c);
    run_soon(f);
    assert_int_equal(f->h.n_req, 0);

    /* the retry time passed (rewritten in the store): a timeout next */
    head_retry_now(f, "webhook");
    atls_sched_notify(f->h.s);
    run_soon(f);
    assert_int_equal(f->h.n_req, 1);
    assert_string_equal(body_id(&f->h.req[0], id, sizeof(id)), "a.test");
    answer(f, 0);
    now = time(NULL);
    assert_int_equal(head_attempts(f, "webhook", &at), 2);
    assert_true(at >= now + 15 && at <= now + 25);
    head_retry_now(f, "webhook");

    atls_sched_notify(f->h.s);
    run_soon(f);
    assert_int_equal(f->h.n_req, 2);
    answer(f, 200);
    assert_int_equal(f->h.n_req, 3);
    assert_string_equal(body_id(&f->h.req[2], id, sizeof(id)), "b.test");
    answer(f, 200);
    assert_int_equal(queue_len(f), 0);
    assert_int_equal(logcap_count("delivering again"), 1);
    logcap_stop();
}

/* Stopping cancels the request in flight; the event stays queued. */
static void
stop_keeps_queue(void **state)
{
    fx_t               *f = *state;
    atls_notify_conf_t  c;
    char               *hdr[1];

    conf_webhook(&c, hdr);
    sched_start(f, &c);
    emit(f, ATLS_EV_OBTAINED, "a.test");
    run_soon(f);
    assert_int_equal(f->h.n_req, 1);
    atls_sched_stop(f->h.s);
    assert_int_equal(f->h.cancels, 1);
    assert_true(atls_sched_idle(f->h.s));
    assert_int_equal(queue_len(f), 1);
}

/* Only one process delivers a store's queue: a second scheduler on the
 * same store sends nothing while the first has a delivery in flight. */
static void
one_deliverer(void **state)
{
    fx_t               *f = *state;
    atls_notify_conf_t  c;
    char               *hdr[1];
    fx_t                g;

    conf_webhook(&c, hdr);
    sched_start(f, &c);
    emit(f, ATLS_EV_OBTAINED, "a.test");
    run_soon(f);
    assert_int_equal(f->h.n_req, 1);

    memset(&g, 0, sizeof(g));
    g.st = f->st;
    sched_start(&g, &c);
    run_soon(&g);
    assert_int_equal(g.h.n_req, 0);
    sched_end(&g);

    answer(f, 200);
    assert_int_equal(queue_len(f), 0);
}

/* A full queue drops the new notification (logged), the queued ones are
 * still delivered. */
static void
full_queue(void **state)
{
    fx_t               *f = *state;
    atls_notify_conf_t  c;
    char               *hdr[1], id[64];

    conf_webhook(&c, hdr);
    c.queue_max = 2;
    logcap_start(ATLS_LOG_ERR);
    sched_start(f, &c);
    emit(f, ATLS_EV_OBTAINED, "a.test");
    emit(f, ATLS_EV_OBTAINED, "b.test");
    emit(f, ATLS_EV_OBTAINED, "c.test");
    assert_int_equal(queue_len(f), 2);
    assert_true(logcap_len() > 0);
    logcap_stop();
    run_soon(f);
    answer(f, 200);
    answer(f, 200);
    assert_int_equal(f->h.n_req, 2);
    assert_string_equal(body_id(&f->h.req[1], id, sizeof(id)), "b.test");
    assert_int_equal(queue_len(f), 0);
}

/* A command gets PATH EVENT ID and the event on stdin ("-" without id). */
static void
exec_success(void **state)
{
    fx_t               *f = *state;
    atls_notify_conf_t  c;
    char                buf[4096];
    FILE               *fp;
    size_t              n;

    memset(&c, 0, sizeof(c));
    c.exec = f->script_ok;
    sched_start(f, &c);
    emit(f, ATLS_EV_RENEWED, "a.test");
    emit(f, ATLS_EV_TEST, NULL);
    run_soon(f);
    assert_false(atls_sched_idle(f->h.s));
    exec_wait(f, 0);
    exec_wait(f, 0);
    assert_int_equal(f->h.exec_runs, 2);
    assert_int_equal(queue_len(f), 0);
    fp = fopen(f->out, "r");
    assert_non_null(fp);
    n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "renewed a.test\n{\"event\":\"renewed\""));
    assert_non_null(strstr(buf, "test -\n{\"event\":\"test\""));
    assert_true(strstr(buf, "renewed a.test") < strstr(buf, "test -"));
}

/* A failing command: WARN with its stderr line, retried at most 3 times
 * (attempts kept in the entry), then dropped. */
static void
exec_failure(void **state)
{
    fx_t               *f = *state;
    atls_notify_conf_t  c;
    int                 i;

    memset(&c, 0, sizeof(c));
    c.exec = f->script_fail;
    logcap_start(ATLS_LOG_WARN);
    sched_start(f, &c);
    emit(f, ATLS_EV_FAILED, "a.test");
    run_soon(f);
    for (i = 1; i <= 4; i++) {
        exec_wait(f, 0);
        assert_int_equal(f->h.exec_runs, i);
        assert_int_equal(logcap_count("receiver said no"), (size_t) i);
        if (i == 4) {
            break;
        }
        assert_int_equal(head_attempts(f, "exec", NULL), i);
        head_retry_now(f, "exec");
        /* a new scheduler takes the stored state (the in-memory wait is
         * this one's) */
        sched_end(f);
        sched_start(f, &c);
        run_soon(f);
    }
    assert_int_equal(queue_len(f), 0);
    assert_int_equal(logcap_count("given up"), 1);
    logcap_stop();
}

/* A command that hangs is killed at its time limit (a failure), and does
 * not hold the webhook meanwhile. */
static void
exec_timeout(void **state)
{
    fx_t               *f = *state;
    atls_notify_conf_t  c;
    char               *hdr[1], key[64];
    json_t             *e;

    conf_webhook(&c, hdr);
    c.exec = f->script_hang;
    c.exec_timeout_s = 1;
    logcap_start(ATLS_LOG_WARN);
    sched_start(f, &c);
    emit(f, ATLS_EV_EXPIRING, "a.test");
    run_soon(f);
    assert_non_null(f->h.exec_op);
    assert_int_equal(f->h.n_req, 1);
    answer(f, 200);                 /* the webhook is done meanwhile */
    exec_wait(f, 1);
    assert_int_equal(f->h.kills, 1);
    assert_int_equal(logcap_count("timed out after 1 s"), 1);
    e = queue_head(f, key, sizeof(key));
    assert_int_equal(json_array_size(json_object_get(e, "pending")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(e, "pending"), 0)),
                        "exec");
    json_decref(e);
    logcap_stop();
}

/* A sink not configured here is taken off the entry. */
static void
unconfigured_sink_dropped(void **state)
{
    fx_t               *f = *state;
    atls_notify_conf_t  c;
    char               *hdr[1];

    queue_for_both(f, ATLS_EV_IMPORTED, "a.test");

    conf_webhook(&c, hdr);
    sched_start(f, &c);
    run_soon(f);
    assert_int_equal(f->h.exec_runs, 0);
    answer(f, 200);
    assert_int_equal(queue_len(f), 0);
}

/* The store is the worker's: an entry whose event name is unknown or
 * whose id could pass for an option is removed, never run or sent. */
static void
planted_entries_refused(void **state)
{
    fx_t               *f = *state;
    atls_notify_conf_t  c;
    char                err[256];
    static const char  *planted[] = {
        "{\"event\":{\"event\":\"--help\"},\"pending\":[\"exec\"]}",
        "{\"event\":{\"event\":\"renewed\",\"id\":\"-rf\"},\"pending\":[\"exec\"]}",
        "{\"event\":{\"event\":\"renewed\",\"id\":\"a\\nb\"},\"pending\":[\"exec\"]}",
        "{\"pending\":[\"exec\"]}",
        "not json",
    };
    size_t              i;

    for (i = 0; i < sizeof(planted) / sizeof(planted[0]); i++) {
        assert_int_equal(atls_store_queue_put(f->st, planted[i], strlen(planted[i]), 0, NULL,
                                              err, sizeof(err)), ATLS_STORE_OK);
    }
    memset(&c, 0, sizeof(c));
    c.exec = f->script_ok;
    logcap_start(ATLS_LOG_WARN);
    sched_start(f, &c);
    run_soon(f);
    assert_int_equal(f->h.exec_runs, 0);
    assert_int_equal(queue_len(f), 0);
    assert_int_equal(logcap_count("is not a queue entry"), 5);
    logcap_stop();
}

/* Runs argv with input through atls_hook_spawn_input; ok. */
static int
run_input(char *const argv[], const char *input, size_t len)
{
    atls_hook_proc_t hp;
    char             why[256];
    int              ok = 0, i;

    assert_int_equal(atls_hook_spawn_input(argv, input, len, &hp, why, sizeof(why)), 0);
    for (i = 0; i < 1000; i++) {
        struct pollfd p = { hp.fd, POLLIN, 0 };

        if (poll(&p, 1, 20) > 0 && atls_hook_read(&hp, &ok, why, sizeof(why)) == 1) {
            return ok;
        }
    }
    atls_hook_kill(&hp);
    fail_msg("the command did not end");
    return 0;
}

/* Input larger than a pipe holds: all of it reaches a command that reads
 * it; one that does not read it still ends (EPIPE ignored). */
static void
spawn_input_large(void **state)
{
    fx_t        *f = *state;
    char         script[300], copy[300], text[700], *argv[2];
    size_t       len = 300 * 1024;
    char        *big = malloc(len);
    struct stat  sb;

    assert_non_null(big);
    memset(big, 'x', len);
    snprintf(copy, sizeof(copy), "%s/copy", f->dir);
    snprintf(script, sizeof(script), "%s/reader.sh", f->dir);
    snprintf(text, sizeof(text), "#!/bin/sh\ncat > %s\n", copy);
    write_script(script, text);
    argv[0] = script;
    argv[1] = NULL;
    assert_true(run_input(argv, big, len));
    assert_int_equal(stat(copy, &sb), 0);
    assert_int_equal((size_t) sb.st_size, len);

    snprintf(script, sizeof(script), "%s/deaf.sh", f->dir);
    write_script(script, "#!/bin/sh\nexec true\n");
    assert_true(run_input(argv, big, len));
    free(big);
}

/* Root: a notification command runs with the identity set for the
 * process (a dns hook keeps the process's own). */
static void
exec_identity(void **state)
{
    fx_t *f = *state;
    char  script[300], out[300], buf[800], *argv[2];
    FILE *fp;
    int   ok;

    if (geteuid() != 0) {
        skip();
    }
    snprintf(out, sizeof(out), "%s/uid.txt", f->dir);
    snprintf(script, sizeof(script), "%s/uid.sh", f->dir);
    /* and the environment: not the process's (root's, in the CLI) */
    assert_int_equal(setenv("ATLS_TEST_SECRET", "from-root", 1), 0);
    snprintf(buf, sizeof(buf), "#!/bin/sh\nid -u > %s\n"
             "echo \"${ATLS_TEST_SECRET:-unset} $PATH\" >> %s\n", out, out);
    write_script(script, buf);
    /* nobody runs it and writes next to it */
    assert_int_equal(chmod(script, 0755), 0);
    assert_int_equal(chmod(f->dir, 0777), 0);
    argv[0] = script;
    argv[1] = NULL;
    atls_hook_set_identity(65534, 65534);
    ok = run_input(argv, "{}", 2);
    atls_hook_set_identity(-1, -1);
    assert_true(ok);
    fp = fopen(out, "r");
    assert_non_null(fp);
    assert_non_null(fgets(buf, sizeof(buf), fp));
    assert_string_equal(buf, "65534\n");
    assert_non_null(fgets(buf, sizeof(buf), fp));
    fclose(fp);
    unsetenv("ATLS_TEST_SECRET");
    assert_string_equal(buf, "unset /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                        "/sbin:/bin\n");
}

/* What messages show of a webhook URL: no userinfo, query or fragment
 * (credentials), nothing that could drive a terminal. */
static void
url_shown(void **state)
{
    char buf[ATLS_LOG_ESCAPE_MAX];

    (void) state;
    assert_string_equal(atls_notify_url_shown("https://u:p@h.test:8443/x?token=t#f", buf,
                                              sizeof(buf)), "https://h.test:8443/x");
    assert_string_equal(atls_notify_url_shown("http://a@b@h.test/p@q?x@y", buf,
                                              sizeof(buf)), "http://h.test/p@q");
    assert_string_equal(atls_notify_url_shown("http://h.test", buf, sizeof(buf)),
                        "http://h.test");
    assert_string_equal(atls_notify_url_shown("http://h.test/\x1b[2J\xc2\x9b", buf,
                                              sizeof(buf)),
                        "http://h.test/\\x1b[2J\\xc2\\x9b");
}

/* A stored retry time far ahead (planted by the worker, or written by a
 * clock that was wrong) counts as the longest backoff: the timer is not
 * armed in the past by an overflow (a busy loop), nor the sink held for
 * ever. */
static void
retry_at_far_ahead(void **state)
{
    fx_t               *f = *state;
    atls_notify_conf_t  c;
    char               *hdr[1], key[64], *text, err[256];
    json_t             *e;

    conf_webhook(&c, hdr);
    sched_start(f, &c);
    emit(f, ATLS_EV_OBTAINED, "a.test");
    run_soon(f);
    answer(f, 503);
    sched_end(f);

    e = queue_head(f, key, sizeof(key));
    /* (at - now) * 1000 would wrap below zero */
    json_object_set_new(json_object_get(e, "retry_at"), "webhook",
                        json_integer((json_int_t) time(NULL) + 9223372036854776LL));
    text = json_dumps(e, JSON_COMPACT);
    assert_int_equal(atls_store_queue_update(f->st, key, text, strlen(text), err, sizeof(err)),
                     ATLS_STORE_OK);
    free(text);
    json_decref(e);

    sched_start(f, &c);
    run_soon(f);
    assert_int_equal(f->h.n_req, 0);
    assert_true(f->h.timer_armed);
    assert_true(f->h.timer_ms > 0 && f->h.timer_ms <= 30000);
    assert_true(atls_sched_idle(f->h.s));
}

/* A notifier whose sinks are not the store's (notify-test --exec) leaves
 * the other sinks of queued entries alone: the server's webhook queue is
 * not dropped by an operator testing a command. */
static void
other_sinks_kept(void **state)
{
    fx_t               *f = *state;
    atls_notify_conf_t  c;
    json_t             *e;
    char                key[64];

    queue_for_both(f, ATLS_EV_RENEWED, "a.test");

    memset(&c, 0, sizeof(c));
    c.exec = f->script_ok;
    {
        atls_actor_t a;

        atls_actor_self(&a, "cli", "test/1");
        f->ev = atls_events_new(f->st, &a, &c);
        atls_events_keep_other_sinks(f->ev);
    }
    sched_start(f, &c);
    run_soon(f);
    exec_wait(f, 0);
    assert_int_equal(f->h.exec_runs, 1);
    assert_int_equal(queue_len(f), 1);
    e = queue_head(f, key, sizeof(key));
    assert_int_equal(json_array_size(json_object_get(e, "pending")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(e, "pending"), 0)),
                        "webhook");
    json_decref(e);
}

/* ---- reads per look ------------------------------------------------------------- */

/* The store's get, counted (queue entries are read through it). */
static const atls_store_ops_t *real_ops;
static size_t                  gets_counted;

static int
counting_get(atls_store_t *st, const char *path, char **data, size_t *len, char *err,
             size_t errlen)
{
    gets_counted++;
    return real_ops->get(st, path, data, len, err, errlen);
}

/* Reads since the last call (at most `most`), shown for the record. */
static void
reads_at_most(size_t most)
{
    print_message("queue entries read in this look: %zu\n", gets_counted);
    assert_true(gets_counted <= most);
    gets_counted = 0;
}

/* The webhook receiver down, the command working, 2,000 entries left for
 * the webhook only: the first look reads them all, each later look (a
 * failed delivery, a look asked for, a new event, a due retry) reads a
 * few (the held entry, those queued in the 5 s before a cursor), not the
 * whole queue; the webhook still retries its oldest entry first and the
 * command still gets the new event. */
static void
reads_per_look_bounded(void **state)
{
    fx_t               *f = *state;
    atls_notify_conf_t  c;
    atls_store_ops_t    counting;
    char               *hdr[1], err[256], id[64], text[200], path[80];
    long long           start = (long long) (time(NULL) - 3000) * 1000;
    size_t              i;

    /* queued one a second, the last over 15 min ago (as a long outage
     * leaves them; queue_put would give them all this second's keys) */
    for (i = 0; i < 2000; i++) {
        snprintf(text, sizeof(text), "{\"event\":{\"event\":\"renewed\",\"id\":\"e%04zu.test\"},"
                 "\"pending\":[\"webhook\"]}", i);
        snprintf(path, sizeof(path), "events/%016lld-%08zx.json",
                 start + (long long) i * 1000, i);
        assert_int_equal(f->st->ops->put(f->st, path, text, strlen(text), 1, err,
                                         sizeof(err)), ATLS_STORE_OK);
    }
    real_ops = f->st->ops;
    counting = *real_ops;
    counting.get = counting_get;
    f->st->ops = &counting;
    gets_counted = 0;

    conf_webhook(&c, hdr);
    c.exec = f->script_ok;
    sched_start(f, &c);
    run_soon(f);
    assert_true(gets_counted >= 2000);          /* the first look reads them all */
    gets_counted = 0;
    assert_int_equal(f->h.n_req, 1);
    assert_string_equal(body_id(&f->h.req[0], id, sizeof(id)), "e0000.test");

    answer(f, 503);                             /* down: a retry later */
    reads_at_most(10);
    assert_int_equal(head_attempts(f, "webhook", NULL), 1);
    gets_counted = 0;

    for (i = 0; i < 3; i++) {
        atls_sched_notify(f->h.s);
        run_soon(f);
        reads_at_most(10);
    }

    /* a new event: read, and the command runs it (nothing before it for
     * the command), while the webhook waits on its oldest entry */
    emit(f, ATLS_EV_OBTAINED, "new.test");
    run_soon(f);
    reads_at_most(12);
    assert_non_null(f->h.exec_op);
    exec_wait(f, 0);
    assert_int_equal(f->h.exec_runs, 1);
    assert_int_equal(f->h.n_req, 1);

    /* another process's entry whose key sorts just before the command's
     * cursor (taken a moment before, written after): still found */
    snprintf(path, sizeof(path), "events/%016lld-00000000.json",
             (long long) time(NULL) * 1000 - 2000);
    snprintf(text, sizeof(text), "{\"event\":{\"event\":\"test\"},\"pending\":[\"exec\"]}");
    assert_int_equal(f->st->ops->put(f->st, path, text, strlen(text), 1, err, sizeof(err)),
                     ATLS_STORE_OK);
    atls_sched_notify(f->h.s);
    run_soon(f);
    assert_non_null(f->h.exec_op);
    exec_wait(f, 0);
    assert_int_equal(f->h.exec_runs, 2);
    gets_counted = 0;

    /* the retry is due: the oldest entry again, in order */
    head_retry_now(f, "webhook");
    gets_counted = 0;
    atls_sched_notify(f->h.s);
    run_soon(f);
    reads_at_most(10);
    assert_int_equal(f->h.n_req, 2);
    assert_string_equal(body_id(&f->h.req[1], id, sizeof(id)), "e0000.test");
    answer(f, 200);
    assert_int_equal(f->h.n_req, 3);
    assert_string_equal(body_id(&f->h.req[2], id, sizeof(id)), "e0001.test");
    answer(f, 200);
    sched_end(f);
    f->st->ops = real_ops;
    assert_int_equal(queue_len(f), 1999);
}

/* The text of path (malloc'd). */
static char *
slurp(const char *path)
{
    FILE  *fp = fopen(path, "r");
    char  *buf;
    long   n;

    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    rewind(fp);
    buf = malloc((size_t) n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t) n, fp), (size_t) n);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static size_t
count_of(const char *hay, const char *needle)
{
    size_t k = 0;

    for (; (hay = strstr(hay, needle)) != NULL; hay++) {
        k++;
    }
    return k;
}

/* A bulk add's 1,200 name-added events (atls_events_emit_many): 3 queue
 * entries, so 3 webhook requests and 3 command runs (`PATH name-added -`,
 * the batch on stdin), not 1,200 of each; every event is in one of them,
 * in order; a failed delivery names the batch and retries the entry. */
static void
batch_delivered_per_entry(void **state)
{
    fx_t               *f = *state;
    atls_notify_conf_t  c;
    atls_event_t       *e;
    char               *hdr[1], (*ids)[32], *out;
    size_t              i, r, seen = 0;

    conf_webhook(&c, hdr);
    c.exec = f->script_ok;
    sched_start(f, &c);
    e = calloc(1200, sizeof(*e));
    ids = calloc(1200, sizeof(*ids));
    assert_non_null(e);
    assert_non_null(ids);
    for (i = 0; i < 1200; i++) {
        snprintf(ids[i], sizeof(ids[i]), "n%04zu.test", i);
        e[i].type = ATLS_EV_NAME_ADDED;
        e[i].cert_id = ids[i];
        e[i].reason = -1;
    }
    assert_int_equal(atls_events_emit_many(f->ev, e, 1200), 0);
    assert_int_equal(queue_len(f), 3);
    run_soon(f);
    /* a failure names the batch, then the same entry is retried */
    logcap_start(ATLS_LOG_INFO);
    answer(f, 503);
    assert_int_equal(logcap_count("event name-added (batch of 500) not delivered: HTTP 503"),
                     1);
    logcap_stop();
    head_retry_now(f, "webhook");
    atls_sched_notify(f->h.s);
    run_soon(f);
    for (r = 0; r < 3; r++) {
        json_t *body, *events;
        size_t  want = r < 2 ? ATLS_NOTIFY_BATCH_MAX : 1200 - 2 * ATLS_NOTIFY_BATCH_MAX;

        assert_int_equal(f->h.n_req, r + 2);        /* after the failed one */
        body = json_loads(f->h.req[r + 1].body, 0, NULL);
        assert_non_null(body);
        assert_string_equal(json_string_value(json_object_get(body, "event")), "name-added");
        assert_true(json_is_true(json_object_get(body, "batch")));
        assert_int_equal(json_integer_value(json_object_get(body, "count")), want);
        events = json_object_get(body, "events");
        assert_int_equal(json_array_size(events), want);
        for (i = 0; i < want; i++, seen++) {
            assert_string_equal(json_string_value(json_object_get(json_array_get(events, i),
                                                                  "id")), ids[seen]);
        }
        json_decref(body);
        answer(f, 200);
        exec_wait(f, 0);
    }
    assert_int_equal(seen, 1200);
    assert_int_equal(f->h.n_req, 4);
    assert_int_equal(f->h.exec_runs, 3);
    assert_int_equal(queue_len(f), 0);
    out = slurp(f->out);
    assert_int_equal(count_of(out, "name-added -\n{\"event\":\"name-added\",\"batch\":true"),
                     3);
    assert_int_equal(count_of(out, "\"id\":\"n"), 1200);
    free(out);
    free(e);
    free(ids);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(url_shown),
        cmocka_unit_test_setup_teardown(webhook_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(webhook_retry_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(retry_at_far_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_keeps_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(one_deliverer, setup, teardown),
        cmocka_unit_test_setup_teardown(full_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(exec_success, setup, teardown),
        cmocka_unit_test_setup_teardown(exec_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(exec_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(unconfigured_sink_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(other_sinks_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(planted_entries_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(spawn_input_large, setup, teardown),
        cmocka_unit_test_setup_teardown(exec_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(reads_per_look_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(batch_delivered_per_entry, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
