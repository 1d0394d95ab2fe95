/*
 * A fake scheduler host (see fakehost.h).
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
#include "atls_sched.h"
#include "support/fakehost.h"

static long long
fh_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *
fh_dup(const char *s)
{
    return s != NULL ? atls_strdup(s) : NULL;
}

static void
fh_req_free(atls_http_request_t *r)
{
    free((char *) r->method);
    free(r->url);
    free(r->body);
    free((char *) r->content_type);
    free((char *) r->accept);
    free((char *) r->if_none_match);
    free((char *) r->if_modified_since);
    memset(r, 0, sizeof(*r));
}

/* ---- the callbacks -------------------------------------------------------- */

static int
fh_http_send(void *ctx, atls_sched_op_t *op, const atls_http_opts_t *o,
             const atls_http_request_t *req)
{
    fakehost_t      *h = ctx;
    fakehost_http_t *x;
    fakehost_cert_t *c = atls_sched_op_data(op);
    const char      *path;
    size_t           running;

    (void) o;
    assert_non_null(c);
    if (h->http_send_fails) {
        return -1;
    }
    assert_true(h->n_http < FAKEHOST_MAX_HTTP);
    x = &h->http[h->n_http++];
    memset(x, 0, sizeof(*x));
    x->op = op;
    x->cert = c;
    x->req.method = fh_dup(req->method);
    x->req.url = fh_dup(req->url);
    x->req.content_type = fh_dup(req->content_type);
    x->req.accept = fh_dup(req->accept);
    x->req.if_none_match = fh_dup(req->if_none_match);
    x->req.if_modified_since = fh_dup(req->if_modified_since);
    if (req->body != NULL) {
        x->req.body = malloc(req->body_len + 1);
        assert_non_null(x->req.body);
        memcpy(x->req.body, req->body, req->body_len);
        x->req.body[req->body_len] = '\0';
        x->req.body_len = req->body_len;
    }

    if (h->n_log < FAKEHOST_MAX_LOG) {
        fakehost_log_t *l = &h->log[h->n_log++];

        path = strncmp(req->url, FAKECA_BASE, strlen(FAKECA_BASE)) == 0
               ? req->url + strlen(FAKECA_BASE) : req->url;
        l->cert = c;
        snprintf(l->path, sizeof(l->path), "%s", path);
        l->deployed = c->n_deployed;
    }
    if (!c->started) {
        c->started = 1;
        h->active++;
        if (h->active > h->max_active) {
            h->max_active = h->active;
        }
    }
    running = atls_sched_running(h->s);
    if (running > h->max_running) {
        h->max_running = running;
    }
    return 0;
}

static void
fh_http_cancel(void *ctx, atls_sched_op_t *op)
{
    fakehost_t *h = ctx;
    size_t      i;

    for (i = 0; i < h->n_http; i++) {
        if (h->http[i].op == op) {
            fh_req_free(&h->http[i].req);
            memmove(&h->http[i], &h->http[i + 1], (h->n_http - i - 1) * sizeof(h->http[0]));
            h->n_http--;
            h->cancels++;
            return;
        }
    }
    fail_msg("http_cancel of a transfer that is not in flight");
}

static void
fh_timer(void *ctx, long ms)
{
    fakehost_t *h = ctx;

    h->timer_calls++;
    h->timer_at = ms < 0 ? -1 : fh_now_ms() + ms;
}

static int
fh_hook_start(void *ctx, atls_sched_op_t *op, char *const argv[], char *why, size_t whylen)
{
    fakehost_t      *h = ctx;
    fakehost_hook_t *hk;
    size_t           i;

    if (h->hook_start_fails) {
        snprintf(why, whylen, "cannot fork");
        return -1;
    }
    assert_true(h->n_hooks < FAKEHOST_MAX_HOOKS);
    hk = &h->hooks[h->n_hooks++];
    memset(hk, 0, sizeof(*hk));
    hk->op = op;
    hk->cert = atls_sched_op_data(op);
    for (i = 0; i < 4; i++) {
        assert_non_null(argv[i]);
        hk->argv[i] = atls_strdup(argv[i]);
    }
    assert_null(argv[4]);
    hk->live = 1;
    return 0;
}

static void
fh_hook_kill(void *ctx, atls_sched_op_t *op)
{
    fakehost_t *h = ctx;
    size_t      i;

    for (i = 0; i < h->n_hooks; i++) {
        if (h->hooks[i].live && h->hooks[i].op == op) {
            h->hooks[i].live = 0;
            h->hooks[i].killed = 1;
            h->kills++;
            return;
        }
    }
    fail_msg("hook_kill of a hook that is not running");
}

static int
fh_publish(void *ctx, void *cert_data, const atls_challenge_t *c, char *why, size_t whylen)
{
    fakehost_t *h = ctx;

    (void) cert_data;
    (void) c;
    (void) why;
    (void) whylen;
    h->publishes++;
    h->live_published++;
    return 0;
}

static void
fh_withdraw(void *ctx, void *cert_data, const atls_challenge_t *c)
{
    fakehost_t *h = ctx;

    (void) cert_data;
    (void) c;
    assert_true(h->live_published > 0);
    h->withdraws++;
    h->live_published--;
}

static void
fh_deployed(void *ctx, void *cert_data, const char *id, atls_key_type_t kt)
{
    fakehost_cert_t *c = cert_data;

    (void) ctx;
    (void) id;
    assert_true(c->n_deployed < ATLS_KEY_TYPE_MAX);
    c->deployed[c->n_deployed++] = kt;
}

static void
fh_stapled(void *ctx, void *cert_data, const char *id, atls_key_type_t kt)
{
    fakehost_cert_t *c = cert_data;

    (void) ctx;
    (void) id;
    (void) kt;
    c->n_stapled++;
}

static void
fh_done(void *ctx, void *cert_data, const char *id, int rc, const atls_error_t *err)
{
    fakehost_t      *h = ctx;
    fakehost_cert_t *c = cert_data;
    char            *want = atls_cert_id(c->name);

    assert_string_equal(id, want);
    free(want);
    c->done++;
    c->rc = rc;
    if (rc != 0) {
        assert_non_null(err);
        c->err = *err;
    }
    if (c->started) {
        c->started = 0;
        h->active--;
    }
    h->n_done++;
    if (h->stop_in_done) {
        atls_sched_stop(h->s);
    }
    if (h->free_in_done) {
        atls_sched_free(h->s);
        h->s = NULL;
    }
}

void
fakehost_init(fakehost_t *h)
{
    memset(h, 0, sizeof(*h));
    h->timer_at = -1;
    h->host.ctx = h;
    h->host.http_send = fh_http_send;
    h->host.http_cancel = fh_http_cancel;
    h->host.timer = fh_timer;
    h->host.hook_start = fh_hook_start;
    h->host.hook_kill = fh_hook_kill;
    h->host.publish = fh_publish;
    h->host.withdraw = fh_withdraw;
    h->host.deployed = fh_deployed;
    h->host.stapled = fh_stapled;
    h->host.done = fh_done;
}

int
fakehost_cert_init(fakehost_cert_t *c, const char *name, EVP_PKEY *account_key,
                   int account_exists)
{
    memset(c, 0, sizeof(*c));
    c->name = name;
    c->account_key = account_key;
    c->ca = fakeca_new(account_key);
    if (c->ca == NULL) {
        return -1;
    }
    c->ca->account_exists = account_exists;
    return 0;
}

void
fakehost_cert_clear(fakehost_cert_t *c)
{
    size_t i;

    fakeca_free(c->ca);
    for (i = 0; i < c->n_retired; i++) {
        fakeca_free(c->retired[i]);
    }
    memset(c, 0, sizeof(*c));
}

void
fakehost_clear(fakehost_t *h)
{
    size_t i, k;

    for (i = 0; i < h->n_http; i++) {
        fh_req_free(&h->http[i].req);
    }
    h->n_http = 0;
    for (i = 0; i < h->n_hooks; i++) {
        for (k = 0; k < 4; k++) {
            free(h->hooks[i].argv[k]);
        }
    }
    h->n_hooks = 0;
}

void
fakehost_teardown(fakehost_t *h, fakehost_cert_t *certs, size_t n)
{
    size_t i;

    if (h->s != NULL) {
        atls_sched_free(h->s);
        h->s = NULL;
    }
    fakehost_clear(h);
    for (i = 0; i < n; i++) {
        fakehost_cert_clear(&certs[i]);
    }
}

/* ---- the loop ---------------------------------------------------------------- */

fakehost_url_t *
fakehost_url(fakehost_t *h, const char *prefix, long status, const unsigned char *body,
             size_t len)
{
    fakehost_url_t *u;

    assert_true(h->n_urls < FAKEHOST_MAX_URLS);
    u = &h->urls[h->n_urls++];
    memset(u, 0, sizeof(*u));
    u->prefix = prefix;
    u->status = status;
    u->body = body;
    u->body_len = len;
    return u;
}

/* The canned answer to req when its URL is one of the table's; 0 when not. */
static int
fh_url_answer(fakehost_t *h, const atls_http_request_t *req, atls_http_response_t *resp)
{
    size_t i;

    for (i = 0; i < h->n_urls; i++) {
        fakehost_url_t *u = &h->urls[i];

        if (strncmp(req->url, u->prefix, strlen(u->prefix)) != 0) {
            continue;
        }
        u->hits++;
        u->conditional += req->if_none_match != NULL;
        if (u->answer != NULL) {
            u->answer(u->arg, req, resp);
            return 1;
        }
        if (u->status == 0) {
            resp->transport_error = 1;
            snprintf(resp->error, sizeof(resp->error), "Connection refused");
            return 1;
        }
        if (u->etag != NULL && req->if_none_match != NULL
            && strcmp(u->etag, req->if_none_match) == 0)
        {
            resp->status = 304;
            return 1;
        }
        resp->status = u->status;
        resp->etag = u->etag != NULL ? atls_strdup(u->etag) : NULL;
        if (u->body != NULL) {
            resp->body = malloc(u->body_len + 1);
            assert_non_null(resp->body);
            memcpy(resp->body, u->body, u->body_len);
            resp->body[u->body_len] = '\0';
            resp->body_len = u->body_len;
        }
        return 1;
    }
    return 0;
}

/* Answers the first queued request (of only, when given); 0 when none. */
static int
fh_answer_one(fakehost_t *h, const fakehost_cert_t *only)
{
    atls_http_response_t resp;
    fakehost_http_t      x;
    size_t               i;

    for (i = 0; i < h->n_http; i++) {
        if (only == NULL || h->http[i].cert == only) {
            break;
        }
    }
    if (i == h->n_http) {
        return 0;
    }
    x = h->http[i];
    memmove(&h->http[i], &h->http[i + 1], (h->n_http - i - 1) * sizeof(h->http[0]));
    h->n_http--;
    memset(&resp, 0, sizeof(resp));
    if (fh_url_answer(h, &x.req, &resp)) {
        atls_sched_http_done(h->s, x.op, &resp);
        free(resp.etag);
        resp.etag = NULL;
        atls_http_response_free(&resp);
        fh_req_free(&x.req);
        return 1;
    }
    if (x.cert->ca->order_created && strcmp(x.req.method, "GET") == 0
        && strcmp(x.req.url, FAKECA_BASE "/dir") == 0)
    {
        /* a new engine: a fakeca serves one order, so it gets a fresh one */
        fakehost_cert_t *c = x.cert;

        assert_true(c->n_retired < FAKEHOST_MAX_CAS);
        assert_int_equal(c->ca->violations, 0);
        c->retired[c->n_retired++] = c->ca;
        c->ca = fakeca_new(c->account_key);
        assert_non_null(c->ca);
        c->ca->account_exists = 1;
    }
    memset(&resp, 0, sizeof(resp));
    fakeca_handle(x.cert->ca, &x.req, &resp);
    atls_sched_http_done(h->s, x.op, &resp);
    fakeca_response_clear(&resp);
    fh_req_free(&x.req);
    return 1;
}

int
fakehost_run(fakehost_t *h, int (*until)(fakehost_t *h, void *arg), void *arg,
             long timeout_ms, const fakehost_cert_t *only)
{
    long long end = fh_now_ms() + timeout_ms;

    while (!until(h, arg)) {
        long long now = fh_now_ms(), wait;
        struct timespec ts;

        if (now > end || h->s == NULL) {
            return -1;
        }
        if (fh_answer_one(h, only)) {
            continue;
        }
        if (h->timer_at < 0) {
            return -1;      /* nothing can happen without the test */
        }
        if (now >= h->timer_at) {
            h->timer_at = -1;
            atls_sched_timer(h->s);
            continue;
        }
        wait = h->timer_at - now;
        if (wait > end - now) {
            wait = end - now + 1;
        }
        ts.tv_sec = wait / 1000;
        ts.tv_nsec = (wait % 1000) * 1000000L;
        nanosleep(&ts, NULL);
    }
    return 0;
}

fakehost_hook_t *
fakehost_hook_find(fakehost_t *h, const char *action, const char *name)
{
    size_t i, nl = strlen(name);

    for (i = 0; i < h->n_hooks; i++) {
        fakehost_hook_t *hk = &h->hooks[i];
        size_t           al = strlen(hk->argv[2]);

        if (hk->live && strcmp(hk->argv[1], action) == 0 && al >= nl
            && strcmp(hk->argv[2] + al - nl, name) == 0)
        {
            return hk;
        }
    }
    return NULL;
}

void
fakehost_hook_report(fakehost_t *h, fakehost_hook_t *hk, int ok, const char *why)
{
    assert_true(hk->live);
    hk->live = 0;
    atls_sched_hook_done(h->s, hk->op, ok, why);
}

int
fakehost_until_idle(fakehost_t *h, void *arg)
{
    (void) arg;
    return h->s != NULL && atls_sched_idle(h->s) && h->timer_at < 0;
}

int
fakehost_until_settled(fakehost_t *h, void *arg)
{
    (void) arg;
    return h->s != NULL && atls_sched_idle(h->s)
           && (h->timer_at < 0 || h->timer_at > fh_now_ms() + 1000);
}

int
fakehost_until_done(fakehost_t *h, void *arg)
{
    (void) h;
    return ((fakehost_cert_t *) arg)->done > 0;
}

int
fakehost_until_hook(fakehost_t *h, void *arg)
{
    char        action[32];
    const char *sp = strchr(arg, ' ');

    assert_non_null(sp);
    snprintf(action, sizeof(action), "%.*s", (int) (sp - (const char *) arg),
             (const char *) arg);
    return fakehost_hook_find(h, action, sp + 1) != NULL;
}
