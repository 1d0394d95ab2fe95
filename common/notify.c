/*
 * The notifier (notify_int.h): the store's notification queue to the
 * sinks, inside the scheduler, so that every host delivers through the
 * callbacks it already has.
 *
 * A queue entry (store_events.c writes it at emit time) is
 *   {"event":{...},"pending":["exec","webhook"],
 *    "attempts":{"webhook":N},"retry_at":{"webhook":T},
 *    "last_error":{"webhook":"HTTP 503"},"next_attempt":T}
 * The notifier keeps the last four up to date: each sink takes the oldest
 * entry that still names it, one delivery in flight per sink, so events
 * reach a sink in the order they were queued (a failing entry holds the
 * ones behind it for that sink only).  An entry changes only once the
 * sink answered (at-least-once: a crash or a stop in between delivers it
 * again), and goes once no sink is pending.
 *
 * Only one process delivers a store's queue at a time: the store lock
 * "notify", taken without waiting while deliveries are in flight.  A
 * sink an entry names that this process has not configured (the server's
 * settings changed, the CLI queued for a sink the server lacks) is taken
 * off that entry with an INFO line: whoever delivers decides.
 *
 * Nothing here waits: the host runs the request and the command, and the
 * scheduler's timer brings the notifier back for time limits, retries and
 * looks at the queue (after each emit in this process, each pass,
 * atls_sched_notify(), and every ATLS_NOTIFY_POLL_S: events the CLI
 * queued reach the server's sinks without a pass).
 *
 * Here: the lock, the sinks' cursors, looking at the queue and the
 * scheduler's side.  Reading and writing entries is notify_entry.c; one
 * delivery and what its outcome does to the entry, notify_deliver.c.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include "atls.h"
#include "atls_store.h"
#include "notify_int.h"
#include "sched_internal.h"

const char *const atls_notify_sink_names[SINK_MAX] = { "webhook", "exec" };

/* ---- the lock ----------------------------------------------------------------- */

static int
notify_in_flight(const atls_notify_t *n)
{
    size_t k;

    for (k = 0; k < SINK_MAX; k++) {
        if (n->sink[k].op != NULL) {
            return 1;
        }
    }
    return 0;
}

/* 1 when this process may deliver now. */
static int
notify_lock(atls_notify_t *n)
{
    char err[512];
    int  rc;

    if (n->lock != NULL) {
        return 1;
    }
    rc = n->s->st->ops->lock(n->s->st, "notify", 0, &n->lock, err, sizeof(err));
    if (rc == ATLS_STORE_OK) {
        n->lock_said = 0;
        return 1;
    }
    n->lock = NULL;
    if (!n->lock_said) {
        n->lock_said = 1;
        atls_log(rc == ATLS_STORE_BUSY ? ATLS_LOG_INFO : ATLS_LOG_WARN,
                 "autotls: notifications of %s: %s", n->s->st->location,
                 rc == ATLS_STORE_BUSY ? "another process delivers them" : err);
    }
    return 0;
}

void
atls_notify_unlock(atls_notify_t *n)
{
    if (n->lock != NULL && !notify_in_flight(n)) {
        atls_store_unlock(n->s->st, n->lock);
        n->lock = NULL;
    }
}

/* ---- the cursors ---------------------------------------------------------------- */

/* Sink k is done with every entry up to key: a look reads, for k, no entry
 * queued more than ATLS_NOTIFY_CURSOR_SLACK_MS before it.  Sound because
 * an entry's pending sinks only shrink and a new entry's key is later
 * than those already there, except within a few ms (keys of one ms sort
 * by their random part; another process writes its entry a little after
 * taking its key): the slack covers that, and the full look every
 * ATLS_NOTIFY_RESCAN_S covers the rest (a clock stepped back). */
static int
sink_done_with(const notify_sink_t *sk, const char *key)
{
    return sk->done_to != NULL
           && strtoll(key, NULL, 10) + ATLS_NOTIFY_CURSOR_SLACK_MS
              < strtoll(sk->done_to, NULL, 10);
}

void
atls_notify_sink_done_to(notify_sink_t *sk, const char *key)
{
    char *dup;

    if (sk->done_to != NULL && strcmp(key, sk->done_to) <= 0) {
        return;
    }
    dup = strdup(key);
    if (dup != NULL) {      /* out of memory: the old cursor is still true */
        free(sk->done_to);
        sk->done_to = dup;
    }
}

static void
cursors_forget(atls_notify_t *n)
{
    int k;

    for (k = 0; k < SINK_MAX; k++) {
        free(n->sink[k].done_to);
        n->sink[k].done_to = NULL;
    }
}

/* ---- looking at the queue -------------------------------------------------- */

static int
sink_kind(const char *name)
{
    int k;

    for (k = 0; k < SINK_MAX; k++) {
        if (name != NULL && strcmp(name, atls_notify_sink_names[k]) == 0) {
            return k;
        }
    }
    return -1;
}

/* Takes the sinks not configured here off e; 1 when e changed. */
static int
entry_prune(atls_notify_t *n, const char *key, json_t *e)
{
    json_t *pending = json_object_get(e, "pending");
    size_t  i;
    int     changed = 0;

    for (i = 0; i < json_array_size(pending); i++) {
        const char *name = json_string_value(json_array_get(pending, i));
        const char *event = atls_notify_entry_event(e, "event");
        int         k = sink_kind(name);

        if ((k >= 0 && n->sink[k].on) || atls_events_keeps_other_sinks(n->ev)) {
            continue;
        }
        atls_log(ATLS_LOG_INFO, "autotls: notification %s (%s): no %s sink is configured "
                 "here: not delivered to it", event != NULL ? event : "?",
                 key, name != NULL ? name : "(not a name)");
        json_array_remove(pending, i--);
        changed = 1;
    }
    if (changed) {
        atls_notify_entry_save(n, key, e);
    }
    return changed;
}

/* Gives the free sinks their oldest pending entry.  busy[k]: sink k is in
 * flight, waiting or served already in this look. */
static void
notify_assign(atls_notify_t *n, const char *key, json_t *e, int *busy, time_t now,
              long long mono)
{
    int k;

    for (k = 0; k < SINK_MAX; k++) {
        long long at;

        if (busy[k] || !atls_notify_entry_pending(e, atls_notify_sink_names[k])) {
            continue;
        }
        busy[k] = 1;
        /* a retry time stored by an earlier run (a restart) holds too,
         * up to the longest backoff: the worker can write the entry, and
         * a time beyond that (or a clock that was far ahead) must neither
         * hold the sink for ever nor overflow into a timer in the past */
        at = atls_notify_entry_int(e, "retry_at", atls_notify_sink_names[k]);
        if (at > now + ATLS_NOTIFY_RETRY_MAX_S) {
            at = now + ATLS_NOTIFY_RETRY_MAX_S;
        }
        if (at > now) {
            n->sink[k].retry_at = mono + (at - now) * 1000;
            continue;
        }
        if (k == SINK_WEBHOOK
            && atls_notify_entry_int(e, "attempts", atls_notify_sink_names[k]) > 0
            && now > atls_notify_entry_queued(key) + ATLS_NOTIFY_WEBHOOK_GIVEUP_S)
        {
            atls_log(ATLS_LOG_ERR, "autotls: webhook %s: event %s (%s) dropped: not "
                     "delivered within 24 h", n->where,
                     atls_notify_entry_event(e, "event") ? atls_notify_entry_event(e, "event")
                                                         : "?",
                     key);
            atls_notify_entry_drop_sink(e, atls_notify_sink_names[k]);
            atls_notify_entry_save(n, key, e);
            busy[k] = 0;
            continue;
        }
        atls_notify_sink_start(n, (sink_kind_t) k, key, e);
    }
}

static void
notify_scan(atls_notify_t *n)
{
    long long mono = atls_sched_now_ms();
    time_t    now = time(NULL);
    char    **keys = NULL, err[512];
    size_t    nk = 0, i;
    int       busy[SINK_MAX], k, all;

    n->look_soon = 0;
    n->poll_at = 0;
    if (n->stopped) {
        return;
    }
    if (atls_store_queue_list(n->s->st, &keys, &nk, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "autotls: notification queue: %s", err);
        n->poll_at = mono + ATLS_NOTIFY_POLL_S * 1000LL;
        return;
    }
    if (mono >= n->rescan_at) {
        cursors_forget(n);
        n->rescan_at = mono + ATLS_NOTIFY_RESCAN_S * 1000LL;
    }
    if (nk > 0 && notify_lock(n)) {
        /* the stored retry times are the truth (another process, an
         * earlier run may have written them): found again below */
        for (k = 0; k < SINK_MAX; k++) {
            busy[k] = !n->sink[k].on || n->sink[k].op != NULL;
            n->sink[k].retry_at = 0;
        }
        for (i = 0; i < nk; i++) {
            json_t *e;
            int     skip[SINK_MAX], read[SINK_MAX], want = 0;

            for (all = 1, k = 0; k < SINK_MAX; k++) {
                all &= busy[k];
            }
            if (all) {
                break;
            }
            /* read only for the free sinks not done with it yet: with one
             * sink held by its oldest entry, the other's entries behind
             * it are not read again on every look */
            for (k = 0; k < SINK_MAX; k++) {
                skip[k] = busy[k] || sink_done_with(&n->sink[k], keys[i]);
                read[k] = !skip[k];
                want |= read[k];
            }
            if (!want) {
                continue;
            }
            e = atls_notify_entry_load(n, keys[i]);
            if (e != NULL) {
                (void) entry_prune(n, keys[i], e);
                notify_assign(n, keys[i], e, skip, now, mono);
                for (k = 0; k < SINK_MAX; k++) {
                    if (read[k] && skip[k]) {
                        busy[k] = 1;                /* holds this entry */
                    } else if (read[k]
                               && !atls_notify_entry_pending(e, atls_notify_sink_names[k]))
                    {
                        atls_notify_sink_done_to(&n->sink[k], keys[i]);
                    }
                }
            }
            json_decref(e);
        }
    }
    /* also when empty: another process (the CLI) may queue events and
     * leave them to this one; a listing every ATLS_NOTIFY_POLL_S is cheap */
    n->poll_at = mono + ATLS_NOTIFY_POLL_S * 1000LL;
    atls_notify_unlock(n);
    for (i = 0; i < nk; i++) {
        free(keys[i]);
    }
    free(keys);
}

/* ---- the scheduler's side ------------------------------------------------------- */

/* From atls_events_emit in this process: the scheduler's timer soon. */
static void
notify_wakeup(void *ctx)
{
    atls_notify_t *n = ctx;

    if (n->s->depth > 0) {
        n->look_soon = 1;   /* armed when the outermost call returns */
    } else {
        atls_sched_notify(n->s);
    }
}

atls_notify_t *
atls_notify_new(atls_sched_t *s, atls_events_t *ev)
{
    const atls_notify_conf_t *conf = ev != NULL ? atls_events_conf(ev) : NULL;
    atls_notify_t            *n;
    char                      where[ATLS_LOG_ESCAPE_MAX];

    if (!atls_notify_conf_has_sinks(conf)) {
        return NULL;
    }
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        atls_log(ATLS_LOG_ERR, "autotls: notifications: out of memory");
        return NULL;
    }
    n->s = s;
    n->ev = ev;
    atls_notify_conf_copy(&n->conf, conf);
    n->where = atls_strdup(atls_notify_url_shown(n->conf.webhook != NULL ? n->conf.webhook
                                                                           : "",
                                                 where, sizeof(where)));
    n->sink[SINK_WEBHOOK].on = n->conf.webhook != NULL;
    n->sink[SINK_EXEC].on = n->conf.exec != NULL && s->host.exec_start != NULL;
    if (n->conf.exec != NULL && s->host.exec_start == NULL) {
        atls_log(ATLS_LOG_WARN, "autotls: notify command %s: this server cannot run "
                 "notification commands; events are not sent to it", n->conf.exec);
    }
    atls_events_set_wakeup(ev, notify_wakeup, n);
    n->look_soon = 1;       /* what earlier runs left queued */
    return n;
}

void
atls_notify_stop(atls_notify_t *n)
{
    int k;

    if (n == NULL) {
        return;
    }
    n->stopped = 1;
    n->look_soon = 0;
    n->poll_at = 0;
    for (k = 0; k < SINK_MAX; k++) {
        notify_sink_t *sk = &n->sink[k];

        if (sk->op == NULL) {
            continue;
        }
        if (sk->op->hook) {
            if (n->s->host.hook_kill != NULL) {
                n->s->host.hook_kill(n->s->host.ctx, sk->op);
            }
        } else if (n->s->host.http_cancel != NULL) {
            n->s->host.http_cancel(n->s->host.ctx, sk->op);
        }
        free(sk->op);
        sk->op = NULL;
        free(sk->key);
        sk->key = NULL;
    }
    atls_notify_unlock(n);
}

void
atls_notify_free(atls_notify_t *n)
{
    if (n == NULL) {
        return;
    }
    atls_notify_stop(n);
    atls_events_set_wakeup(n->ev, NULL, NULL);
    cursors_forget(n);
    atls_notify_conf_free(&n->conf);
    free(n->where);
    free(n);
}

void
atls_notify_look(atls_notify_t *n)
{
    if (n != NULL && !n->stopped) {
        n->look_soon = 1;
    }
}

long long
atls_notify_deadline(const atls_notify_t *n)
{
    long long best = LLONG_MAX;
    int       k;

    if (n == NULL || n->stopped) {
        return best;
    }
    if (n->look_soon) {
        return 0;
    }
    if (n->poll_at != 0) {
        best = n->poll_at;
    }
    for (k = 0; k < SINK_MAX; k++) {
        const notify_sink_t *sk = &n->sink[k];

        if (sk->op != NULL && sk->op->hook && sk->deadline < best) {
            best = sk->deadline;
        }
        if (sk->op == NULL && sk->retry_at != 0 && sk->retry_at < best) {
            best = sk->retry_at;
        }
    }
    return best;
}

void
atls_notify_timer(atls_notify_t *n, long long now)
{
    notify_sink_t *ex;
    int            k, due = 0;

    if (n == NULL || n->stopped) {
        return;
    }
    ex = &n->sink[SINK_EXEC];
    if (ex->op != NULL && ex->deadline <= now) {
        char msg[96];
        long limit = n->conf.exec_timeout_s > 0 ? n->conf.exec_timeout_s
                                                : ATLS_NOTIFY_EXEC_TIMEOUT;

        if (n->s->host.hook_kill != NULL) {
            n->s->host.hook_kill(n->s->host.ctx, ex->op);
        }
        snprintf(msg, sizeof(msg), "timed out after %ld s (killed)", limit);
        atls_notify_sink_end(n, SINK_EXEC, 0, msg);
    }
    for (k = 0; k < SINK_MAX; k++) {
        if (n->sink[k].op == NULL && n->sink[k].retry_at != 0
            && n->sink[k].retry_at <= now)
        {
            due = 1;
        }
    }
    if (n->look_soon || due || (n->poll_at != 0 && n->poll_at <= now)) {
        notify_scan(n);
    }
}

int
atls_notify_busy(const atls_notify_t *n)
{
    return n != NULL && !n->stopped && (n->look_soon || notify_in_flight(n));
}

int
atls_notify_http_done(atls_notify_t *n, atls_sched_op_t *op, const atls_http_response_t *resp)
{
    char why[400];

    if (n == NULL || op == NULL || op != n->sink[SINK_WEBHOOK].op) {
        return 0;
    }
    if (resp == NULL || resp->transport_error || resp->status == 0) {
        snprintf(why, sizeof(why), "%s", resp != NULL && resp->error[0] ? resp->error
                                                                        : "no answer");
    } else {
        snprintf(why, sizeof(why), "HTTP %ld", resp->status);
    }
    atls_notify_sink_end(n, SINK_WEBHOOK,
                         resp != NULL && resp->status >= 200 && resp->status < 300, why);
    return 1;
}

int
atls_notify_hook_done(atls_notify_t *n, atls_sched_op_t *op, int ok, const char *why)
{
    if (n == NULL || op == NULL || op != n->sink[SINK_EXEC].op) {
        return 0;
    }
    atls_notify_sink_end(n, SINK_EXEC, ok, why != NULL && why[0] != '\0' ? why : "failed");
    return 1;
}
