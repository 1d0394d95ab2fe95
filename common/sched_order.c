/*
 * The scheduler, one slot: an order per key type of one certificate (or
 * an ARI query) driven through the ACME action switch.  Each action goes
 * to the host (send, publish, withdraw, hook) or becomes a deadline on the
 * scheduler's one timer; the slot then waits for the host's report and
 * steps on.  No step ever blocks, so a slow hook keeps only its own order
 * waiting.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "atls.h"
#include "atls_acme.h"
#include "atls_job.h"
#include "atls_sched.h"
#include "acme_published.h"
#include "sched_internal.h"

static void slot_job_end(sched_slot_t *sl, int failed);
static void slot_ari_end(sched_slot_t *sl, int failed);

/* ---- small helpers --------------------------------------------------------- */

static atls_sched_op_t *
op_new(atls_sched_t *s, sched_slot_t *sl, int hook)
{
    atls_sched_op_t *op = calloc(1, sizeof(*op));

    if (op == NULL) {
        abort();
    }
    op->s = s;
    op->slot = sl;
    op->hook = hook;
    op->data = sl != NULL && sl->cert != NULL ? sl->cert->data : NULL;
    return op;
}

void
atls_sched_op_free(atls_sched_op_t *op)
{
    if (op != NULL) {
        free(op->what);
        free(op);
    }
}

static void
error_fill(atls_error_t *err, const sched_slot_t *sl, atls_key_type_t kt)
{
    snprintf(err->cert_id, sizeof(err->cert_id), "%s", sl->cert->id);
    snprintf(err->key_type, sizeof(err->key_type), "%s", atls_key_type_name(kt));
}

/* The first failure of the attempt is the one done() reports. */
static void
slot_failed(sched_slot_t *sl, const atls_error_t *err)
{
    if (sl->rc == 0) {
        sl->rc = -1;
        sl->err = *err;
        error_fill(&sl->err, sl, sl->kt);
    }
}

static int
slot_uses_dns_hook(const sched_slot_t *sl, const atls_challenge_t *c)
{
    return c->type == ATLS_CHAL_DNS01 && sl->meta.issuer.dns_hook != NULL
           && sl->meta.issuer.dns_hook[0] != '\0';
}

/* The in-memory facts about directory, created on first use. */
sched_dir_t *
atls_sched_dir(atls_sched_t *s, const char *directory)
{
    sched_dir_t *v;
    size_t       i;

    for (i = 0; i < s->n_dirs; i++) {
        if (strcmp(s->dirs[i].directory, directory) == 0) {
            return &s->dirs[i];
        }
    }
    v = realloc(s->dirs, (s->n_dirs + 1) * sizeof(*v));
    if (v == NULL) {
        abort();
    }
    s->dirs = v;
    memset(&v[s->n_dirs], 0, sizeof(*v));
    v[s->n_dirs].directory = atls_strdup(directory);
    return &v[s->n_dirs++];
}

/* the dns hook already published the record: remember it */
static int
setup_recorded(void *ctx, const atls_challenge_t *c, char *why, size_t whylen)
{
    (void) ctx;
    (void) c;
    (void) why;
    (void) whylen;
    return 0;
}

/* ---- hooks ------------------------------------------------------------------ */

/* Starts the issuer's dns hook for c; 0 ok, -1 + why. */
static int
hook_run(atls_sched_t *s, atls_sched_op_t *op, const char *hook, const atls_challenge_t *c,
         char *why, size_t whylen)
{
    char *argv[5];

    argv[0] = (char *) hook;
    argv[1] = (char *) (op->setup ? "setup" : "teardown");
    argv[2] = c->dns_name;
    argv[3] = c->dns_value;
    argv[4] = NULL;
    op->what = atls_strdup(c->dns_name);
    op->deadline = atls_sched_now_ms() + s->hook_timeout_s * 1000;
    why[0] = '\0';
    if (s->host.hook_start == NULL) {
        snprintf(why, whylen, "this server cannot run hooks");
        return -1;
    }
    if (s->host.hook_start(s->host.ctx, op, argv, why, whylen) != 0) {
        if (why[0] == '\0') {
            snprintf(why, whylen, "cannot start the dns hook");
        }
        return -1;
    }
    return 0;
}

/* A teardown after a failed order: the TXT record must not stay behind,
 * but nobody waits for it beyond its time limit. */
static void
hook_orphan_teardown(sched_slot_t *sl, const atls_challenge_t *c)
{
    atls_sched_t    *s = sl->s;
    atls_sched_op_t *op;
    char             why[256];

    if (s->freeing) {
        atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\": the TXT record %s is left "
                 "behind (shutting down)", sl->cert->id, c->dns_name);
        return;
    }
    op = op_new(s, sl, 1);
    op->slot = NULL;
    op->setup = 0;
    if (hook_run(s, op, sl->meta.issuer.dns_hook, c, why, sizeof(why)) != 0) {
        atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\": cannot remove the TXT "
                 "record %s: %s", sl->cert->id, c->dns_name, why);
        atls_sched_op_free(op);
        return;
    }
    op->next = s->orphans;
    s->orphans = op;
}

void
atls_sched_orphan_end(atls_sched_t *s, atls_sched_op_t *op, int ok, const char *why)
{
    atls_sched_op_t **pp;

    for (pp = &s->orphans; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    }
    if (!ok) {
        atls_log(ATLS_LOG_WARN, "autotls: dns hook teardown of %s failed: %s",
                 op->what ? op->what : "?", why ? why : "?");
    }
    atls_sched_op_free(op);
}

/* The hook of the slot ended (ok, or why not): the order goes on. */
void
atls_sched_slot_hook_end(sched_slot_t *sl, int ok, const char *why)
{
    atls_sched_op_t *op = sl->op;
    int              setup = op->setup;
    char             what[256];

    snprintf(what, sizeof(what), "%s", op->what ? op->what : "?");
    sl->op = NULL;
    atls_sched_op_free(op);
    if (sl->e == NULL) {
        return;
    }
    if (setup) {
        const atls_challenge_t *c = sl->hook_ch;

        sl->hook_ch = NULL;
        if (ok) {
            /* remembered, so that a failed order removes the record */
            atls_challenge_ops_t done;

            memset(&done, 0, sizeof(done));
            done.setup = setup_recorded;
            atls_published_setup(&sl->pub, sl->e, &done, c);
        } else {
            char msg[400];

            snprintf(msg, sizeof(msg), "dns hook setup failed: %s", why ? why : "?");
            atls_acme_challenge_result(sl->e, 0, msg);
        }
    } else if (!ok) {
        atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\": dns hook teardown of %s "
                 "failed: %s", sl->cert->id, what, why ? why : "?");
    }
    atls_sched_slot_step(sl, NULL);
}

/* ---- challenges ------------------------------------------------------------- */

static int
slot_publish(void *ctx, const atls_challenge_t *c, char *why, size_t whylen)
{
    sched_slot_t *sl = ctx;
    atls_sched_t *s = sl->s;

    if (s->host.publish == NULL) {
        snprintf(why, whylen, "no responder for %s", atls_challenge_type_name(c->type));
        return -1;
    }
    return s->host.publish(s->host.ctx, sl->cert->data, c, why, whylen);
}

static void
slot_withdraw(void *ctx, const atls_challenge_t *c)
{
    sched_slot_t *sl = ctx;
    atls_sched_t *s = sl->s;

    if (slot_uses_dns_hook(sl, c)) {
        hook_orphan_teardown(sl, c);
    } else if (s->host.withdraw != NULL) {
        s->host.withdraw(s->host.ctx, sl->cert->data, c);
    }
}

/* SETUP: 1 when the engine can step on, 0 when a hook runs. */
static int
slot_setup(sched_slot_t *sl, const atls_challenge_t *c)
{
    char why[256];

    if (!slot_uses_dns_hook(sl, c)) {
        atls_published_setup(&sl->pub, sl->e, &sl->ops, c);
        return 1;
    }
    sl->op = op_new(sl->s, sl, 1);
    sl->op->setup = 1;
    sl->hook_ch = c;
    if (hook_run(sl->s, sl->op, sl->meta.issuer.dns_hook, c, why, sizeof(why)) != 0) {
        atls_sched_op_free(sl->op);
        sl->op = NULL;
        sl->hook_ch = NULL;
        atls_acme_challenge_result(sl->e, 0, why);
        return 1;
    }
    return 0;
}

/* TEARDOWN: 1 when the engine can step on, 0 when a hook runs. */
static int
slot_teardown(sched_slot_t *sl, const atls_challenge_t *c)
{
    char why[256];

    if (!slot_uses_dns_hook(sl, c)) {
        atls_published_teardown(&sl->pub, &sl->ops, c);
        return 1;
    }
    /* forgotten first: the hook below removes it, the order waits for that */
    atls_published_teardown(&sl->pub, NULL, c);
    sl->op = op_new(sl->s, sl, 1);
    sl->op->setup = 0;
    if (hook_run(sl->s, sl->op, sl->meta.issuer.dns_hook, c, why, sizeof(why)) != 0) {
        atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\": cannot remove the TXT "
                 "record %s: %s", sl->cert->id, c->dns_name, why);
        atls_sched_op_free(sl->op);
        sl->op = NULL;
        return 1;
    }
    return 0;
}

/* ---- the action switch -------------------------------------------------------- */

static int
slot_send(sched_slot_t *sl, const atls_http_request_t *req)
{
    atls_sched_t *s = sl->s;

    sl->op = op_new(s, sl, 0);
    if (s->host.http_send(s->host.ctx, sl->op, &sl->http, req) == 0) {
        return 0;
    }
    atls_sched_op_free(sl->op);
    sl->op = NULL;
    return -1;
}

/*
 * Steps the engine of sl until it waits for the host (a transfer, a hook),
 * for a deadline, or its job ends.  A hook's report steps on from here.
 */
void
atls_sched_slot_step(sched_slot_t *sl, const atls_http_response_t *resp)
{
    atls_http_response_t failed;
    atls_action_t        act;
    time_t               now;
    const char          *url;
    long                 ms;

    while (sl->e != NULL && sl->op == NULL && sl->wake == 0) {
        now = time(NULL);
        memset(&act, 0, sizeof(act));
        atls_acme_step(sl->e, resp, now, &act);
        resp = NULL;

        if (sl->hold) {
            url = atls_acme_result_account_url(sl->e);
            if (url != NULL && url[0] != '\0') {
                /* the account exists: orders held back may start now */
                sl->hold = 0;
                atls_sched_dir(sl->s, sl->meta.issuer.directory)->has_account = 1;
                sl->s->kick_due = 1;
            }
        }

        switch (act.kind) {
        case ATLS_ACT_SEND:
            if (slot_send(sl, act.request) == 0) {
                return;
            }
            /* the engine treats this like any transport failure */
            memset(&failed, 0, sizeof(failed));
            failed.transport_error = 1;
            snprintf(failed.error, sizeof(failed.error), "cannot start the HTTP transfer");
            resp = &failed;
            break;

        case ATLS_ACT_WAIT:
            ms = act.delay_ms > 0 ? act.delay_ms
                 : act.until > now ? (long) (act.until - now) * 1000 : 0;
            /* never 0: a deadline is also what tells "waiting" from "ready" */
            sl->wake = atls_sched_now_ms() + (ms > 0 ? ms : 1);
            return;

        case ATLS_ACT_SETUP:
            if (!slot_setup(sl, act.challenge)) {
                return;
            }
            break;

        case ATLS_ACT_TEARDOWN:
            if (!slot_teardown(sl, act.challenge)) {
                return;
            }
            break;

        case ATLS_ACT_DONE:
        case ATLS_ACT_FAILED:
        default:
            if (sl->ari) {
                slot_ari_end(sl, act.kind != ATLS_ACT_DONE);
            } else {
                slot_job_end(sl, act.kind != ATLS_ACT_DONE);
            }
            return;
        }
    }
}

/* ---- starting --------------------------------------------------------------- */

/* 1 when no account URL is known for directory yet: not in the store, and
 * no order of ours has learned it (the job saves it only when it ends). */
static int
first_contact(atls_sched_t *s, const char *directory)
{
    sched_dir_t *d = atls_sched_dir(s, directory);
    EVP_PKEY    *key = NULL;
    char        *url = NULL;
    char         err[256];
    int          created = 0;

    if (d->has_account) {
        return 0;
    }
    if (atls_store_load_account(s->st, directory, &key, &url, &created, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        return 0;   /* the job reports store trouble itself */
    }
    d->has_account = url != NULL && url[0] != '\0';
    EVP_PKEY_free(key);
    free(url);
    return !d->has_account;
}

/*
 * A CA must not see several orders create the same account at once (Pebble
 * answers all but one with serverInternal): while one order is creating the
 * account of a directory, the orders for that directory wait.
 */
static int
slot_blocked(const sched_slot_t *sl)
{
    const atls_sched_t *s = sl->s;
    size_t              i;

    for (i = 0; i < s->n_slots; i++) {
        const sched_slot_t *o = &s->slots[i];

        if (o != sl && o->cert != NULL && o->hold
            && strcmp(o->meta.issuer.directory, sl->meta.issuer.directory) == 0)
        {
            return 1;
        }
    }
    return 0;
}

/* The attempt on the slot's certificate is over: free the slot, tell the host. */
static void
slot_cert_end(sched_slot_t *sl)
{
    atls_sched_t      *s = sl->s;
    atls_sched_cert_t *c = sl->cert;
    atls_error_t       err = sl->err;
    int                rc = sl->rc, tell = !sl->ari;

    atls_sched_slot_clear(sl);
    c->busy = 0;
    s->kick_due = 1;    /* the slot is free for the next certificate */
    if (tell && s->host.done != NULL) {
        s->host.done(s->host.ctx, c->data, c->id, rc, rc != 0 ? &err : NULL);
    }
}

static sched_start_t
slot_ari_start(sched_slot_t *sl)
{
    atls_sched_t *s = sl->s;
    char          err[512];

    err[0] = '\0';
    sl->e = atls_job_ari_start(s->st, &sl->meta, err, sizeof(err));
    if (sl->e == NULL) {
        atls_log(ATLS_LOG_DEBUG, "autotls: certificate \"%s\": no renewal information "
                 "to ask for: %s", sl->cert->id, err);
        slot_cert_end(sl);
        return SCHED_OVER;
    }
    atls_job_http_opts(&sl->meta.issuer, &sl->http);
    atls_sched_slot_step(sl, NULL);
    return SCHED_STARTED;
}

/* Starts the slot's next order: STARTED, BLOCKED (the account first) or
 * OVER (every key type tried; the slot is free again). */
sched_start_t
atls_sched_slot_start(sched_slot_t *sl)
{
    atls_sched_t *s = sl->s;
    atls_error_t  err;
    char          why[512];

    if (sl->ari) {
        return slot_ari_start(sl);
    }
    while (sl->next_kt < sl->plan.n_kts) {
        if (s->stopping) {
            memset(&err, 0, sizeof(err));
            atls_error_set(&err, ATLS_ERR_RETRY_LATER, "autotls:stopped",
                           "stopped before the order was started");
            sl->kt = sl->plan.kts[sl->next_kt];
            slot_failed(sl, &err);
            break;
        }
        if (slot_blocked(sl)) {
            return SCHED_BLOCKED;
        }
        sl->kt = sl->plan.kts[sl->next_kt++];
        why[0] = '\0';
        sl->job = atls_job_start(s->st, &sl->meta, sl->kt, why, sizeof(why));
        if (sl->job == NULL) {
            /* once per attempt; the next key type goes on */
            atls_log(ATLS_LOG_ERR, "autotls: certificate \"%s\" (%s): cannot start an "
                     "order: %s", sl->cert->id, atls_key_type_name(sl->kt), why);
            memset(&err, 0, sizeof(err));
            atls_error_set(&err, ATLS_ERR_RETRY_LATER, "autotls:start", "%s", why);
            slot_failed(sl, &err);
            continue;
        }
        sl->e = atls_job_engine(sl->job);
        atls_job_http_opts(&sl->meta.issuer, &sl->http);
        sl->hold = first_contact(s, sl->meta.issuer.directory);
        atls_log(ATLS_LOG_INFO, "autotls: ordering certificate \"%s\" (%s) from %s, "
                 "%zu of %zu in flight%s", sl->cert->id, atls_key_type_name(sl->kt),
                 sl->meta.issuer.directory, atls_sched_running(s), s->n_slots,
                 sl->hold ? ", creating the account first" : "");
        atls_sched_slot_step(sl, NULL);
        return SCHED_STARTED;
    }
    slot_cert_end(sl);
    return SCHED_OVER;
}

/* ---- ending --------------------------------------------------------------------- */

static void
slot_ari_end(sched_slot_t *sl, int failed)
{
    atls_sched_t *s = sl->s;
    time_t        now = time(NULL), ws, we;
    char          err[512];

    /*
     * A directory without renewalInfo answers the same for every
     * certificate: ask it once a day, not once per certificate (10,000
     * names would cost 10,000 requests and store writes).
     */
    if (!failed && atls_acme_result_ari(sl->e, &ws, &we) != 0) {
        atls_sched_dir(s, sl->meta.issuer.directory)->no_ari_until = now + SCHED_NO_ARI_S;
    }
    err[0] = '\0';
    if (atls_job_ari_finish(s->st, sl->cert->id, sl->e, now, err, sizeof(err)) != 0) {
        atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\": renewal information: %s",
                 sl->cert->id, err);
    }
    atls_acme_free(sl->e);
    sl->e = NULL;
    slot_cert_end(sl);
}

/* What done() reports about a failed order. */
static void
job_error(sched_slot_t *sl, int failed, const char *why, atls_error_t *out)
{
    const atls_error_t     *ae = atls_acme_error(sl->e);
    const atls_cert_meta_t *m = atls_job_meta(sl->job);

    memset(out, 0, sizeof(*out));
    if (failed && ae != NULL && ae->type[0] != '\0') {
        *out = *ae;
    } else if (m != NULL && m->last_error_type != NULL) {
        atls_error_set(out, m->last_error_class, m->last_error_type, "%s",
                       m->last_error_detail ? m->last_error_detail : "");
    } else {
        atls_error_set(out, ATLS_ERR_RETRY_LATER, "autotls:internal", "%s", why);
    }
}

/* The order of sl reached DONE or FAILED: withdraw what is left, persist the
 * outcome (the job layer logs it), then the next key type or the end. */
static void
slot_job_end(sched_slot_t *sl, int failed)
{
    atls_sched_t *s = sl->s;
    atls_error_t  err;
    char          why[512];
    int           deployed;

    atls_published_teardown_all(&sl->pub, &sl->ops);
    if (sl->hold) {
        sl->hold = 0;   /* ended without an account: the next one tries */
    }
    s->kick_due = 1;
    why[0] = '\0';
    deployed = atls_job_finish(sl->job, time(NULL), why, sizeof(why)) == 0;
    if (!deployed) {
        job_error(sl, failed, why, &err);
        slot_failed(sl, &err);
    }
    atls_job_free(sl->job);
    sl->job = NULL;
    sl->e = NULL;
    if (deployed && s->host.deployed != NULL) {
        s->host.deployed(s->host.ctx, sl->cert->data, sl->cert->id, sl->kt);
    }
    /* the next key type starts from the timer, like any pending start */
}

/* ---- cancelling ------------------------------------------------------------------ */

/* Abandons what the slot has in flight (the next run restarts the order:
 * its meta says "renewing" without a new certificate). */
void
atls_sched_slot_cancel(sched_slot_t *sl)
{
    atls_sched_t *s = sl->s;

    if (sl->op != NULL) {
        if (sl->op->hook) {
            if (s->host.hook_kill != NULL) {
                s->host.hook_kill(s->host.ctx, sl->op);
            }
        } else if (s->host.http_cancel != NULL) {
            s->host.http_cancel(s->host.ctx, sl->op);
        }
        atls_sched_op_free(sl->op);
        sl->op = NULL;
    }
    if (sl->cert != NULL) {
        atls_published_teardown_all(&sl->pub, &sl->ops);
    }
    if (sl->job != NULL) {
        atls_job_free(sl->job);
    } else if (sl->e != NULL) {
        atls_acme_free(sl->e);
    }
    sl->job = NULL;
    sl->e = NULL;
    atls_sched_slot_clear(sl);
}

void
atls_sched_slot_clear(sched_slot_t *sl)
{
    atls_sched_t *s = sl->s;

    atls_published_teardown_all(&sl->pub, NULL);
    atls_cert_meta_free(&sl->meta);
    memset(sl, 0, sizeof(*sl));
    sl->s = s;
    sl->ops.setup = slot_publish;
    sl->ops.teardown = slot_withdraw;
    sl->ops.ctx = sl;
}
