/*
 * Many jobs at once in one thread: engines run side by side on one curl
 * multi handle.  An order is mostly waiting (for the CA's answers, for
 * validation), so running orders one after the other makes issuing many
 * certificates as slow as the sum of their waits; here the waits overlap
 * and connections to the CA are reused across orders.
 *
 * Each slot holds one job (one key type of one certificate).  A slot is in
 * exactly one of three states: a transfer in flight (easy != NULL), a
 * timer (wake_ms != 0), or ready to step.  The key types of one
 * certificate share its store lock, so they go one after the other in the
 * same slot.
 *
 * A CA must not see several orders create the same account at once (Pebble
 * answers all but one with serverInternal), so while the store knows no
 * account URL for a directory, one order goes first and the others wait
 * until it has learned the URL.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include "atls.h"
#include "atls_acme.h"
#include "atls_crypto.h"
#include "atls_http.h"
#include "atls_job.h"
#include "acme_published.h"

#define MANY_DEFAULT_PARALLEL 8
/* An upper bound on one poll, so that `stopping` is looked at regularly. */
#define MANY_MAX_POLL_MS      1000

typedef struct {
    int                          busy;
    size_t                       meta;       /* index into metas */
    size_t                       kt;         /* index into kts */
    atls_key_type_t              kts[ATLS_KEY_TYPE_MAX];
    size_t                       n_kts;
    int                          rc;         /* 0 until a key type failed */
    atls_job_t                  *job;
    atls_acme_t                 *e;
    const atls_challenge_ops_t  *ops;
    atls_challenge_ops_t         hook_ops;   /* storage for the dns-01 hook ops */
    atls_http_opts_t             http;
    atls_published_t             pub;
    CURL                        *easy;       /* transfer in flight */
    atls_http_xfer_t            *xfer;
    atls_http_response_t         resp;       /* the answer to hand to the next step */
    int                          have_resp;
    long long                    wake_ms;    /* WAIT deadline (monotonic), 0 none */
    int                          hold;       /* first contact with this CA: the
                                                account is being created */
} many_slot_t;

typedef struct {
    atls_store_t                *st;
    atls_cert_meta_t *const     *metas;
    size_t                       n;
    const atls_job_many_opts_t  *o;
    int                         *results;
    char                        *err;
    size_t                       errlen;
    CURLM                       *multi;
    many_slot_t                 *slots;
    size_t                       n_slots;
    size_t                       next;       /* next meta to start */
    size_t                       failed;     /* certificates not all deployed */
} many_t;

static long long
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
many_fail_msg(many_t *m, const char *id, atls_key_type_t kt, const char *why)
{
    if (m->err != NULL && m->errlen > 0 && m->err[0] == '\0') {
        snprintf(m->err, m->errlen, "%s (%s): %s", id, atls_key_type_name(kt), why);
    }
}

/* The certificate of slot s is finished (all key types tried, or one
 * could not start): record, tell the host, free the slot. */
static void
many_cert_done(many_t *m, many_slot_t *s, const char *why)
{
    char msg[1200];

    msg[0] = '\0';
    if (s->rc != 0 && why != NULL) {
        snprintf(msg, sizeof(msg), "%s (%s): %s", m->metas[s->meta]->id,
                 atls_key_type_name(s->kts[s->kt]), why);
    }
    if (m->results != NULL) {
        m->results[s->meta] = s->rc;
    }
    if (s->rc != 0) {
        m->failed++;
    }
    if (m->o->done != NULL) {
        m->o->done(m->o->ctx, s->meta, s->rc, msg);
    }
    s->busy = 0;
}

/* 1 when meta must wait for another order to create its account. */
static int
many_blocked(many_t *m, const atls_cert_meta_t *meta)
{
    size_t i;

    for (i = 0; i < m->n_slots; i++) {
        many_slot_t *s = &m->slots[i];

        if (s->busy && s->hold
            && strcmp(m->metas[s->meta]->issuer.directory, meta->issuer.directory) == 0)
        {
            return 1;
        }
    }
    return 0;
}

/* 1 when the store knows no account URL for directory yet. */
static int
many_first_contact(many_t *m, const char *directory)
{
    EVP_PKEY *key = NULL;
    char     *url = NULL;
    char      err[256];
    int       created = 0, first;

    if (atls_store_load_account(m->st, directory, &key, &url, &created, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        return 0;   /* the job reports store trouble itself */
    }
    first = url == NULL || url[0] == '\0';
    EVP_PKEY_free(key);
    free(url);
    return first;
}

/* Starts the job of key type s->kt; -1 when it cannot start (the
 * certificate is then done, as with the one-at-a-time driver). */
static int
many_job_start(many_t *m, many_slot_t *s)
{
    const atls_cert_meta_t *meta = m->metas[s->meta];
    char                    kerr[512];

    s->job = atls_job_start(m->st, meta, s->kts[s->kt], kerr, sizeof(kerr));
    if (s->job == NULL) {
        s->rc = -1;
        many_fail_msg(m, meta->id, s->kts[s->kt], kerr);
        many_cert_done(m, s, kerr);
        return -1;
    }
    s->e = atls_job_engine(s->job);
    s->have_resp = 0;
    s->wake_ms = 0;
    s->hold = many_first_contact(m, meta->issuer.directory);
    return 0;
}

/* Takes the next certificate into the free slot s; 0 when one started. */
static int
many_slot_fill(many_t *m, many_slot_t *s)
{
    const atls_job_many_opts_t *o = m->o;

    while (m->next < m->n) {
        const atls_cert_meta_t     *meta;
        const atls_challenge_ops_t *ops;

        if (o->stopping != NULL && o->stopping(o->ctx)) {
            return -1;
        }
        if (many_blocked(m, m->metas[m->next])) {
            return -1;  /* filled once the account exists */
        }
        memset(s, 0, sizeof(*s));
        s->busy = 1;
        s->meta = m->next++;
        meta = m->metas[s->meta];
        s->n_kts = atls_job_key_types(&meta->issuer, s->kts);
        ops = o->ops_v != NULL && o->ops_v[s->meta] != NULL ? o->ops_v[s->meta]
                                                          : o->default_ops;
        s->ops = atls_job_challenge_ops(&meta->issuer, ops, &s->hook_ops);
        atls_job_http_opts(&meta->issuer, &s->http);
        if (many_job_start(m, s) == 0) {
            return 0;
        }
    }
    return -1;
}

/* The engine of s reached DONE or FAILED: withdraw what is left, persist
 * the outcome, go on with the next key type or the next certificate. */
static void
many_job_end(many_t *m, many_slot_t *s)
{
    const atls_cert_meta_t *meta = m->metas[s->meta];
    char                    kerr[512];
    int                     ok;

    atls_published_teardown_all(&s->pub, s->ops);
    s->hold = 0;
    kerr[0] = '\0';
    ok = atls_job_finish(s->job, time(NULL), kerr, sizeof(kerr)) == 0;
    atls_job_free(s->job);
    s->job = NULL;
    s->e = NULL;
    if (!ok) {
        s->rc = -1;
        many_fail_msg(m, meta->id, s->kts[s->kt], kerr);
    }
    if (s->kt + 1 < s->n_kts) {
        s->kt++;
        if (many_job_start(m, s) == 0) {
            return;
        }
        /* could not start: many_job_start finished the certificate */
    } else {
        many_cert_done(m, s, ok ? NULL : kerr);
    }
    (void) many_slot_fill(m, s);
}

/* Hands req to curl; on failure s gets a transport-error answer instead. */
static void
many_send(many_t *m, many_slot_t *s, const atls_http_request_t *req)
{
    CURLMcode mc;

    memset(&s->resp, 0, sizeof(s->resp));
    s->easy = atls_http_easy_prepare(&s->http, req, &s->xfer);
    if (s->easy == NULL) {
        s->resp.transport_error = 1;
        snprintf(s->resp.error, sizeof(s->resp.error), "cannot prepare the request");
        s->have_resp = 1;
        return;
    }
    (void) curl_easy_setopt(s->easy, CURLOPT_PRIVATE, (char *) s);
    mc = curl_multi_add_handle(m->multi, s->easy);
    if (mc != CURLM_OK) {
        atls_http_easy_collect(s->xfer, s->easy, CURLE_FAILED_INIT, &s->resp);
        curl_easy_cleanup(s->easy);
        s->easy = NULL;
        s->xfer = NULL;
        atls_http_response_free(&s->resp);
        memset(&s->resp, 0, sizeof(s->resp));
        s->resp.transport_error = 1;
        snprintf(s->resp.error, sizeof(s->resp.error), "%s", curl_multi_strerror(mc));
        s->have_resp = 1;
    }
}

/* Steps the engine of s until it waits for the network or a timer, or
 * its job ends. */
static void
many_step(many_t *m, many_slot_t *s)
{
    atls_action_t act;

    while (s->busy && s->e != NULL && s->easy == NULL && s->wake_ms == 0) {
        time_t stepped = time(NULL);

        memset(&act, 0, sizeof(act));
        atls_acme_step(s->e, s->have_resp ? &s->resp : NULL, stepped, &act);
        if (s->hold) {
            const char *url = atls_acme_result_account_url(s->e);

            s->hold = url == NULL || url[0] == '\0';
        }
        /* the response is borrowed only for the duration of the step */
        if (s->have_resp) {
            atls_http_response_free(&s->resp);
            memset(&s->resp, 0, sizeof(s->resp));
            s->have_resp = 0;
        }

        switch (act.kind) {
        case ATLS_ACT_SEND:
            many_send(m, s, act.request);
            break;

        case ATLS_ACT_WAIT: {
            long ms = act.delay_ms > 0 ? act.delay_ms
                      : act.until > stepped ? (long) (act.until - stepped) * 1000 : 0;

            if (ms > 0) {
                s->wake_ms = mono_ms() + ms;
            }
            break;
        }

        case ATLS_ACT_SETUP:
            atls_published_setup(&s->pub, s->e, s->ops, act.challenge);
            break;

        case ATLS_ACT_TEARDOWN:
            atls_published_teardown(&s->pub, s->ops, act.challenge);
            break;

        case ATLS_ACT_DONE:
        case ATLS_ACT_FAILED:
        default:
            /* may start the next job in this slot, which the loop steps on */
            many_job_end(m, s);
            break;
        }
    }
}

/* Collects every finished transfer and steps its engine. */
static void
many_harvest(many_t *m)
{
    CURLMsg *msg;
    int      left;

    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        many_slot_t *s = NULL;
        CURL        *easy = msg->easy_handle;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &s);
        (void) curl_multi_remove_handle(m->multi, easy);
        if (s == NULL || s->easy != easy) {
            curl_easy_cleanup(easy);    /* not ours: cannot happen */
            continue;
        }
        atls_http_easy_collect(s->xfer, easy, (int) msg->data.result, &s->resp);
        curl_easy_cleanup(easy);
        s->easy = NULL;
        s->xfer = NULL;
        s->have_resp = 1;
        many_step(m, s);
    }
}

int
atls_job_run_many(atls_store_t *st, atls_cert_meta_t *const *metas, size_t n,
                  const atls_job_many_opts_t *opts, int *results,
                  char *err, size_t errlen)
{
    atls_job_many_opts_t defaults;
    many_t               m;
    size_t               i, max;
    int                  rc = 0;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (opts == NULL) {
        memset(&defaults, 0, sizeof(defaults));
        opts = &defaults;
    }
    for (i = 0; results != NULL && i < n; i++) {
        results[i] = -1;    /* until proven otherwise (also: never started) */
    }
    if (n == 0) {
        return 0;
    }

    memset(&m, 0, sizeof(m));
    m.st = st;
    m.metas = metas;
    m.n = n;
    m.o = opts;
    m.results = results;
    m.err = err;
    m.errlen = errlen;
    max = opts->max_parallel > 0 ? opts->max_parallel : MANY_DEFAULT_PARALLEL;
    m.n_slots = max < n ? max : n;

    /* curl_global_init is done by the transport's first prepare; the multi
     * handle itself needs no global state before that. */
    m.multi = curl_multi_init();
    m.slots = calloc(m.n_slots, sizeof(*m.slots));
    if (m.multi == NULL || m.slots == NULL) {
        if (m.multi != NULL) {
            curl_multi_cleanup(m.multi);
        }
        free(m.slots);
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "cannot set up concurrent transfers");
        }
        return -1;
    }
    /* A pool of orders to one CA: reuse its connection for every request,
     * and never more than a few parallel connections to one host. */
    (void) curl_multi_setopt(m.multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) m.n_slots);

    for (i = 0; i < m.n_slots; i++) {
        (void) many_slot_fill(&m, &m.slots[i]);
    }
    for (i = 0; i < m.n_slots; i++) {
        many_step(&m, &m.slots[i]);
    }

    for (;;) {
        long long now, timeout;
        int       running = 0, active = 0;

        (void) curl_multi_perform(m.multi, &running);
        many_harvest(&m);

        now = mono_ms();
        timeout = MANY_MAX_POLL_MS;
        for (i = 0; i < m.n_slots; i++) {
            many_slot_t *s = &m.slots[i];

            if (!s->busy) {
                continue;
            }
            if (s->wake_ms != 0 && s->wake_ms <= now) {
                s->wake_ms = 0;
                many_step(&m, s);
            }
        }
        /* slots left free while an account was being created */
        for (i = 0; i < m.n_slots; i++) {
            if (!m.slots[i].busy && m.next < n && many_slot_fill(&m, &m.slots[i]) == 0) {
                many_step(&m, &m.slots[i]);
            }
        }
        now = mono_ms();
        for (i = 0; i < m.n_slots; i++) {
            many_slot_t *s = &m.slots[i];

            if (!s->busy) {
                continue;
            }
            active++;
            if (s->easy == NULL && s->wake_ms == 0) {
                timeout = 0;    /* ready to step: a stepped transfer failed to start */
                many_step(&m, s);
            } else if (s->wake_ms != 0 && s->wake_ms - now < timeout) {
                timeout = s->wake_ms > now ? s->wake_ms - now : 0;
            }
        }
        if (active == 0) {
            break;
        }
        (void) curl_multi_poll(m.multi, NULL, 0, (int) timeout, NULL);
    }

    curl_multi_cleanup(m.multi);
    free(m.slots);

    if (m.failed > 0) {
        rc = -1;
    }
    if (m.next < n) {
        rc = -1;
        if (err != NULL && errlen > 0 && err[0] == '\0') {
            snprintf(err, errlen, "stopped before %zu of %zu certificates were tried",
                     n - m.next, n);
        }
    }
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
