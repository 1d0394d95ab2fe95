/*
 * The scheduler, one slot: an order per key type of one certificate (or
 * an ARI query) driven through the ACME action switch.  Each action goes
 * to the host (send; publish, withdraw and hooks through sched_hook.c) or
 * becomes a deadline on the scheduler's one timer; the slot then waits for
 * the host's report and steps on.  No step ever blocks, so a slow hook
 * keeps only its own order waiting.
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
#include "job_int.h"
#include "sched_internal.h"

static void slot_job_end(sched_slot_t *sl, int failed);
static void slot_ari_end(sched_slot_t *sl, int failed);

/* ---- small helpers --------------------------------------------------------- */

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

/* ---- the action switch -------------------------------------------------------- */

int
atls_sched_slot_send(sched_slot_t *sl, const atls_http_request_t *req)
{
    atls_sched_t *s = sl->s;

    sl->op = atls_sched_op_new(sl, 0);
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

    if (sl->rev) {
        atls_sched_rev_done(sl, resp);
        return;
    }
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
                atls_sched_emit_cert(sl, ATLS_EV_ACCOUNT_CREATED, sl->kt, NULL);
            }
        }

        switch (act.kind) {
        case ATLS_ACT_SEND:
            if (atls_sched_slot_send(sl, act.request) == 0) {
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
            if (!atls_sched_slot_setup(sl, act.challenge)) {
                return;
            }
            break;

        case ATLS_ACT_TEARDOWN:
            if (!atls_sched_slot_teardown(sl, act.challenge)) {
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
 * An order waits while
 *   - another order is creating the account of its directory: a CA must
 *     not see several orders create the same account at once (Pebble
 *     answers all but one with serverInternal);
 *   - a dns hook still removes a record of its certificate after a failed
 *     order (the same names: a hook must not remove what the next order
 *     sets up), at most for the hook's time limit.
 */
static int
slot_blocked(const sched_slot_t *sl)
{
    const atls_sched_t    *s = sl->s;
    const atls_sched_op_t *op;
    size_t                 i;

    for (op = s->orphans; op != NULL; op = op->next) {
        if (op->cert == sl->cert) {
            return 1;
        }
    }
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

/* An operator asked for this attempt, and it succeeded: the request is
 * answered, unless a new one came in meanwhile. */
static void
answer_request(sched_slot_t *sl)
{
    time_t when;

    if (atls_store_peek_request(sl->s->st, sl->cert->id, &when)
        && (when == 0 || when <= sl->request_at))
    {
        (void) atls_store_take_request(sl->s->st, sl->cert->id);
    }
}

/* After an order or an ARI query: the certificate's revocation checks go
 * on in the same slot (an OCSP response for a certificate just deployed is
 * fetched right away).  1 when a request of those is in flight. */
static int
slot_rev_after(sched_slot_t *sl)
{
    atls_sched_t     *s = sl->s;
    atls_cert_meta_t  m;
    char              err[256];

    if (s->stopping || s->freeing) {
        return 0;
    }
    memset(&m, 0, sizeof(m));
    if (atls_store_load_meta(s->st, sl->cert->id, &m, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_cert_meta_free(&m);
        return 0;
    }
    atls_issuer_free(&m.issuer);
    atls_issuer_copy(&m.issuer, &sl->cert->issuer);
    atls_cert_meta_free(&sl->meta);
    sl->meta = m;
    if (!sl->ari) {
        sl->ordered = 1;    /* one order per slot: the next pass re-plans */
        sl->tried = 0;      /* new certificates: ask about each of them */
    }
    sl->ari = 0;
    return atls_sched_rev_next(sl, 1) == SCHED_REV_OP;
}

/* The attempt on the slot's certificate is over: free the slot, tell the host. */
static void
slot_cert_end(sched_slot_t *sl)
{
    atls_sched_t      *s = sl->s;
    atls_sched_cert_t *c = sl->cert;
    atls_error_t       err = sl->err;
    int                rc = sl->rc, tell = !sl->ari && !sl->rev;

    if (rc == 0 && tell && sl->request_at != 0) {
        answer_request(sl);
    }
    s->kick_due = 1;
    if (!sl->rev && slot_rev_after(sl)) {
        /* the attempt is over for the host; the slot stays busy */
        sl->rc = 0;
        memset(&sl->err, 0, sizeof(sl->err));
        if (tell) {
            atls_sched_od_ended(s, c, rc, rc != 0 ? &err : NULL);
        }
        if (tell && s->host.done != NULL) {
            s->host.done(s->host.ctx, c->data, c->id, rc, rc != 0 ? &err : NULL);
        }
        return;
    }
    atls_sched_slot_clear(sl);
    c->busy = 0;
    /* its meta was written: the next pass looks (a busy lock: soon) */
    atls_sched_due_set(s, c, c->retry_at);
    if (c->retry_at != 0) {
        atls_sched_retry_pass(s, c->retry_at);
        c->retry_at = 0;
    }
    s->kick_due = 1;    /* the slot is free for the next certificate */
    if (tell) {
        atls_sched_od_ended(s, c, rc, rc != 0 ? &err : NULL);
    }
    if (tell && s->host.done != NULL) {
        s->host.done(s->host.ctx, c->data, c->id, rc, rc != 0 ? &err : NULL);
    }
}

void
atls_sched_slot_end(sched_slot_t *sl)
{
    slot_cert_end(sl);
}

static sched_start_t
slot_ari_start(sched_slot_t *sl)
{
    atls_sched_t *s = sl->s;
    char          err[512];

    if (s->stopping) {
        slot_cert_end(sl);
        return SCHED_OVER;
    }
    err[0] = '\0';
    sl->e = atls_job_ari_start(s->st, &sl->meta, err, sizeof(err));
    if (sl->e == NULL) {
        atls_log(ATLS_LOG_DEBUG, "autotls: certificate \"%s\": no renewal information "
                 "to ask for: %s", sl->cert->id, err);
        /* its leaf will not change that before a renewal: not looked at
         * again for a day by this process, and nothing written */
        sl->cert->ari_after = time(NULL) + SCHED_NO_ARI_S;
        slot_cert_end(sl);
        return SCHED_OVER;
    }
    atls_job_http_opts(&sl->meta.issuer, &sl->http);
    atls_sched_slot_step(sl, NULL);
    return SCHED_STARTED;
}

/* An order started: obtaining, and the keys its job generated. */
static void
slot_emit_start(sched_slot_t *sl)
{
    atls_event_t e;

    atls_sched_emit_cert(sl, ATLS_EV_OBTAINING, sl->kt, NULL);
    atls_sched_event_init(&e, ATLS_EV_KEY_GENERATED);
    e.detail = "certificate key";
    atls_sched_emit_cert(sl, ATLS_EV_KEY_GENERATED, sl->kt, &e);
    if (atls_job_made_account_key(sl->job)) {
        e.detail = "account key";
        e.key_type = "ec256";   /* the store makes ES256 account keys */
        atls_sched_emit_cert(sl, ATLS_EV_KEY_GENERATED, sl->kt, &e);
    }
}

/* Another process (a node of the cluster) orders the certificate: not a
 * failure of ours (nothing is written), but looked at again soon rather
 * than at the next check, so that the order is taken over once the
 * holder's lease expires, and seen deployed once it is. */
static void
slot_busy(sched_slot_t *sl, const char *why)
{
    atls_error_t err;

    atls_log(ATLS_LOG_INFO, "autotls: certificate \"%s\": %s: looked at again in %d s",
             sl->cert->id, why, SCHED_BUSY_RETRY_S);
    sl->cert->retry_at = time(NULL) + SCHED_BUSY_RETRY_S;
    sl->next_kt = sl->plan.n_kts;   /* its other key types share the lock */
    memset(&err, 0, sizeof(err));
    atls_error_set(&err, ATLS_ERR_RETRY_LATER, "autotls:busy", "%s", why);
    slot_failed(sl, &err);
}

/* Starts the slot's next order: STARTED, BLOCKED (the account first) or
 * OVER (every key type tried; the slot is free again). */
sched_start_t
atls_sched_slot_start(sched_slot_t *sl)
{
    atls_sched_t       *s = sl->s;
    atls_error_t        err;
    atls_job_refusal_t  refused;
    char                why[512];

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
            return SCHED_BLOCKED;   /* kicked again when that changes */
        }
        sl->kt = sl->plan.kts[sl->next_kt++];
        why[0] = '\0';
        sl->job = atls_job_start_planned(s->st, &sl->meta, sl->kt, &refused, why,
                                         sizeof(why));
        if (sl->job == NULL && refused == ATLS_JOB_SUPERSEDED) {
            atls_log(ATLS_LOG_INFO, "autotls: certificate \"%s\" (%s): %s: not ordered "
                     "again", sl->cert->id, atls_key_type_name(sl->kt), why);
            continue;
        }
        if (sl->job == NULL && refused == ATLS_JOB_BUSY) {
            slot_busy(sl, why);
            break;
        }
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
        free(sl->lagged);   /* about this order's challenges only */
        sl->lagged = NULL;
        atls_job_http_opts(&sl->meta.issuer, &sl->http);
        sl->hold = first_contact(s, sl->meta.issuer.directory);
        slot_emit_start(sl);
        atls_log(ATLS_LOG_INFO, "autotls: ordering certificate \"%s\" (%s) from %s, "
                 "%zu of %zu orders in flight%s", sl->cert->id, atls_key_type_name(sl->kt),
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
    } else if (atls_acme_result_ari(sl->e, &ws, &we) != 0) {
        atls_log(ATLS_LOG_INFO, "autotls: certificate \"%s\": renewal information (ARI): "
                 "none at this CA, asked again in a day", sl->cert->id);
    } else {
        char a[32], b[32];

        atls_rfc3339_format(ws, a, sizeof(a));
        atls_rfc3339_format(we, b, sizeof(b));
        atls_log(ATLS_LOG_INFO, "autotls: certificate \"%s\": renewal information (ARI): "
                 "the CA suggests renewing between %s and %s", sl->cert->id, a, b);
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
    const atls_error_t     *lagged = atls_job_lagged_error(sl->job);
    const atls_cert_meta_t *m = atls_job_meta(sl->job);

    memset(out, 0, sizeof(*out));
    if (lagged != NULL) {
        *out = *lagged;     /* transient, naming the nodes, as logged */
    } else if (failed && ae != NULL && ae->type[0] != '\0') {
        *out = *ae;
    } else if (m != NULL && m->last_error_type != NULL) {
        atls_error_set(out, m->last_error_class, m->last_error_type, "%s",
                       m->last_error_detail ? m->last_error_detail : "");
    } else {
        atls_error_set(out, ATLS_ERR_RETRY_LATER, "autotls:internal", "%s", why);
    }
}

/* A failure counted transient because cluster nodes lagged is retried
 * soon: the scheduler wakes for it then, not at the next check. */
static void
slot_lagged_wake(sched_slot_t *sl)
{
    const atls_cert_meta_t *m = atls_job_meta(sl->job);

    if (atls_job_lagged_error(sl->job) == NULL || m == NULL || m->next_attempt == 0) {
        return;
    }
    if (sl->cert->retry_at == 0 || m->next_attempt < sl->cert->retry_at) {
        sl->cert->retry_at = m->next_attempt;
    }
}

/* The order of sl reached DONE or FAILED: withdraw what is left, persist the
 * outcome (the job layer logs it), then the next key type or the end. */
static void
slot_job_end(sched_slot_t *sl, int failed)
{
    atls_sched_t              *s = sl->s;
    const atls_cert_kt_info_t *was = atls_job_kt_info(&sl->meta, sl->kt);
    atls_error_t               err;
    char                       why[512];
    int                        deployed;

    atls_published_teardown_all(&sl->pub, &sl->ops);
    if (sl->hold) {
        sl->hold = 0;   /* ended without an account: the next one tries */
    }
    s->kick_due = 1;
    why[0] = '\0';
    /* the nodes that had not confirmed this order's challenges: the job
     * counts a failure they cause as transient when it records it */
    atls_job_set_lagged(sl->job, sl->lagged);
    free(sl->lagged);
    sl->lagged = NULL;
    deployed = atls_job_finish(sl->job, time(NULL), why, sizeof(why)) == 0;
    if (!deployed) {
        job_error(sl, failed, why, &err);
        slot_failed(sl, &err);
        slot_lagged_wake(sl);
    }
    /* sl->meta is as planned: what the order replaced */
    atls_sched_emit_order_end(sl, atls_job_meta(sl->job), deployed ? NULL : &err,
                              was != NULL ? was->serial : NULL);
    atls_job_free(sl->job);
    sl->job = NULL;
    sl->e = NULL;
    if (deployed && s->host.deployed != NULL) {
        s->host.deployed(s->host.ctx, sl->cert->data, sl->cert->id, sl->kt);
    }
    if (deployed) {
        atls_sched_emit_cert(sl, ATLS_EV_DEPLOYED, sl->kt, NULL);
    }
    if (sl->next_kt == sl->plan.n_kts) {
        slot_cert_end(sl);
    }
    /* else the next key type starts from the timer, like any pending start */
}

/* ---- cancelling ------------------------------------------------------------------ */

/* Abandons what the slot has in flight (the next run restarts the order:
 * its meta says "renewing" without a new certificate). */
void
atls_sched_slot_cancel(sched_slot_t *sl)
{
    atls_sched_t *s = sl->s;

    if (sl->op != NULL) {
        atls_sched_op_abandon(s, sl->op);
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
    atls_sched_rev_clear(sl);
    atls_cert_meta_free(&sl->meta);
    free(sl->lagged);
    memset(sl, 0, sizeof(*sl));
    sl->s = s;
    atls_sched_slot_ops(sl);
}
