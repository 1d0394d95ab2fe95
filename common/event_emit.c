/*
 * The emitter: one event becomes an audit record, a counter, a queue
 * entry for the sinks (when any are configured) and a listener call.
 * Nothing here waits on a sink: the queue is drained by the notifier.
 *
 * The queue entry (docs/store.md; notify.c reads and updates it):
 *   {"event":{...the event JSON...},"pending":["exec","webhook"],
 *    "attempts":{},"next_attempt":0}
 * pending: the sinks configured when it was queued.  The "event" of a
 * batch (atls_events_emit_many: a run of events of one type) is
 *   {"event":"name-added","batch":true,"count":N,"events":[{...},...]}
 * with at most ATLS_NOTIFY_BATCH_MAX events, so that 10,000 names added
 * at once cost 20 queue entries and 20 deliveries per sink, not 10,000.
 *
 * A store that cannot be written would otherwise log once per event, for
 * ever: each kind of failure is logged when a streak starts and when it
 * ends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_event.h"
#include "atls_store.h"

typedef enum {
    EMIT_AUDIT = 0,
    EMIT_COUNTER,
    EMIT_QUEUE,
    EMIT_FULL,
    EMIT_N
} emit_what_t;

static const char *const emit_what_names[EMIT_N] = {
    "audit record", "event counter", "notification queue", "full notification queue"
};

struct atls_events_s {
    atls_store_t           *st;
    atls_actor_t            actor;      /* its strings are the members below */
    char                   *kind;
    char                   *software;
    char                   *user;
    atls_notify_conf_t      conf;
    atls_event_listener_fn  listener;
    void                   *listener_ctx;
    void                  (*wakeup)(void *ctx);
    void                   *wakeup_ctx;
    unsigned                failing[EMIT_N];   /* events lost in the current streak */
    int                     keep_other_sinks;
};

atls_events_t *
atls_events_new(atls_store_t *st, const atls_actor_t *actor, const atls_notify_conf_t *conf)
{
    atls_events_t *ev = calloc(1, sizeof(*ev));

    if (ev == NULL) {
        return NULL;
    }
    ev->st = st;
    if (actor != NULL) {
        ev->actor = *actor;
        ev->kind = atls_strdup(actor->kind);
        ev->software = atls_strdup(actor->software);
        ev->user = atls_strdup(actor->user);
    } else {
        ev->actor.uid = -1;
    }
    ev->actor.kind = ev->kind;
    ev->actor.software = ev->software;
    ev->actor.user = ev->user;
    if (conf != NULL) {
        atls_notify_conf_copy(&ev->conf, conf);
    }
    return ev;
}

void
atls_events_free(atls_events_t *ev)
{
    if (ev == NULL) {
        return;
    }
    free(ev->kind);
    free(ev->software);
    free(ev->user);
    atls_notify_conf_free(&ev->conf);
    free(ev);
}

void
atls_events_set_listener(atls_events_t *ev, atls_event_listener_fn fn, void *ctx)
{
    ev->listener = fn;
    ev->listener_ctx = ctx;
}

void
atls_events_set_wakeup(atls_events_t *ev, void (*fn)(void *ctx), void *ctx)
{
    ev->wakeup = fn;
    ev->wakeup_ctx = ctx;
}

const atls_notify_conf_t *
atls_events_conf(const atls_events_t *ev)
{
    return &ev->conf;
}

void
atls_events_keep_other_sinks(atls_events_t *ev)
{
    ev->keep_other_sinks = 1;
}

int
atls_events_keeps_other_sinks(const atls_events_t *ev)
{
    return ev != NULL && ev->keep_other_sinks;
}

const atls_actor_t *
atls_events_actor(const atls_events_t *ev)
{
    return &ev->actor;
}

/* ---- emit -------------------------------------------------------------------- */

/* A failure of `what` for event `name`: logged when its streak starts. */
static void
emit_failed(atls_events_t *ev, emit_what_t what, const char *name, const char *err)
{
    const char *loc = ev->st->location ? ev->st->location : "";

    /* the store's messages name the file already, with the location */
    if (ev->failing[what]++ == 0) {
        atls_log(ATLS_LOG_ERR, "events: %s event not recorded in the %s%s%s: %s "
                 "(said once until it works again)", name, emit_what_names[what],
                 strstr(err, loc) != NULL ? "" : " of store ",
                 strstr(err, loc) != NULL ? "" : loc, err);
    }
}

static void
emit_ok(atls_events_t *ev, emit_what_t what)
{
    if (ev->failing[what] > 0) {
        atls_log(ATLS_LOG_WARN, "events: the %s of store %s works again; %u event(s) "
                 "missed it", emit_what_names[what],
                 ev->st->location ? ev->st->location : "", ev->failing[what]);
        ev->failing[what] = 0;
    }
}

/* The queue entry for json (see the top of this file); NULL on OOM. */
static char *
emit_queue_entry(const atls_notify_conf_t *c, const char *json)
{
    const char *pending;
    char       *out;
    size_t      n;

    pending = c->exec != NULL && c->webhook != NULL ? "\"exec\",\"webhook\""
              : c->exec != NULL ? "\"exec\"" : "\"webhook\"";
    n = strlen(json) + strlen(pending) + 64;
    out = malloc(n);
    if (out != NULL) {
        snprintf(out, n, "{\"event\":%s,\"pending\":[%s],\"attempts\":{},"
                 "\"next_attempt\":0}", json, pending);
    }
    return out;
}

static void
emit_queue(atls_events_t *ev, const char *name, const char *json)
{
    char  err[512], *entry;
    int   rc;

    entry = emit_queue_entry(&ev->conf, json);
    if (entry == NULL) {
        emit_failed(ev, EMIT_QUEUE, name, "out of memory");
        return;
    }
    rc = atls_store_queue_put(ev->st, entry, strlen(entry), ev->conf.queue_max, NULL,
                              err, sizeof(err));
    free(entry);
    if (rc == ATLS_STORE_FULL) {
        emit_failed(ev, EMIT_FULL, name, err);
        return;
    }
    emit_ok(ev, EMIT_FULL);
    if (rc != ATLS_STORE_OK) {
        emit_failed(ev, EMIT_QUEUE, name, err);
        return;
    }
    emit_ok(ev, EMIT_QUEUE);
    if (ev->wakeup != NULL) {
        ev->wakeup(ev->wakeup_ctx);
    }
}

/* What the sinks get for the n events json[0..n-1] of one type: the
 * event itself for one, else the batch (see the top of this file);
 * malloc'd, NULL on OOM. */
static char *
emit_batch_json(const char *type, char *const *json, size_t n)
{
    char   head[160], *out, *p;
    size_t i, len, total;

    if (n == 1) {
        return atls_strdup(json[0]);
    }
    snprintf(head, sizeof(head), "{\"event\":\"%s\",\"batch\":true,\"count\":%zu,"
             "\"events\":[", type, n);
    total = strlen(head) + 3;
    for (i = 0; i < n; i++) {
        total += strlen(json[i]) + 1;
    }
    out = malloc(total);
    if (out == NULL) {
        return NULL;
    }
    p = out + strlen(head);
    memcpy(out, head, strlen(head));
    for (i = 0; i < n; i++) {
        len = strlen(json[i]);
        if (i > 0) {
            *p++ = ',';
        }
        memcpy(p, json[i], len);
        p += len;
    }
    memcpy(p, "]}", 3);
    return out;
}

/* The queue entries of a batch: each run of events of one type in entries
 * of at most ATLS_NOTIFY_BATCH_MAX events and about ATLS_NOTIFY_BATCH_BYTES
 * (one event always fits), so that a bulk registration costs a bounded
 * number of entries, fsyncs and deliveries, not one per name. */
static void
emit_queue_runs(atls_events_t *ev, const atls_event_t *e, char *const *json, size_t n)
{
    const char *type;
    char       *payload;
    size_t      i, j, bytes;

    for (i = 0; i < n; i = j) {
        if (json[i] == NULL) {
            j = i + 1;
            continue;
        }
        bytes = strlen(json[i]);
        for (j = i + 1; j < n && j - i < ATLS_NOTIFY_BATCH_MAX && json[j] != NULL
             && e[j].type == e[i].type && bytes + strlen(json[j]) + 1 <= ATLS_NOTIFY_BATCH_BYTES;
             j++)
        {
            bytes += strlen(json[j]) + 1;
        }
        type = atls_event_name(e[i].type);
        payload = emit_batch_json(type, json + i, j - i);
        if (payload == NULL) {
            emit_failed(ev, EMIT_QUEUE, type, "out of memory");
            continue;
        }
        emit_queue(ev, type, payload);
        free(payload);
    }
}

/* One counter rewrite for the batch: events.<name> += how many of that type. */
static void
emit_count(atls_events_t *ev, const atls_event_t *e, size_t n)
{
    uint64_t    by[ATLS_EV_MAX];
    char        names[ATLS_EV_MAX][64], err[512];
    const char *v[ATLS_EV_MAX];
    size_t      i, k = 0;
    unsigned    t;

    memset(by, 0, sizeof(by));
    for (i = 0; i < n; i++) {
        if ((unsigned) e[i].type < ATLS_EV_MAX) {
            by[e[i].type]++;
        }
    }
    for (t = 0; t < ATLS_EV_MAX; t++) {
        if (by[t] > 0) {
            snprintf(names[k], sizeof(names[k]), "events.%s", atls_event_name(t));
            v[k] = names[k];
            by[k++] = by[t];
        }
    }
    if (k == 0) {
        return;
    }
    if (atls_store_counters_add(ev->st, v, by, k, err, sizeof(err)) != ATLS_STORE_OK) {
        emit_failed(ev, EMIT_COUNTER, atls_event_name(e[0].type), err);
    } else {
        emit_ok(ev, EMIT_COUNTER);
    }
}

int
atls_events_emit_many(atls_events_t *ev, const atls_event_t *e, size_t n)
{
    const char **recs;
    char       **json, err[512];
    size_t      *lens, i, k = 0;
    int          rc = 0;

    /* a host without events configured passes no emitter */
    if (ev == NULL || e == NULL || n == 0) {
        return 0;
    }
    json = calloc(n, sizeof(*json));
    recs = calloc(n, sizeof(*recs));
    lens = calloc(n, sizeof(*lens));
    if (json == NULL || recs == NULL || lens == NULL) {
        abort();
    }
    for (i = 0; i < n; i++) {
        json[i] = atls_event_to_json(&e[i], &ev->actor);
        if (json[i] == NULL) {
            emit_failed(ev, EMIT_AUDIT, atls_event_name(e[i].type), "out of memory");
            rc = -1;
            continue;
        }
        recs[k] = json[i];
        lens[k++] = strlen(json[i]);
    }
    /* one append (one write and fsync of the log) for the batch */
    if (k > 0) {
        if (atls_store_audit_append_many(ev->st, recs, lens, k, err, sizeof(err))
            != ATLS_STORE_OK)
        {
            emit_failed(ev, EMIT_AUDIT, atls_event_name(e[0].type), err);
            rc = -1;
        } else {
            emit_ok(ev, EMIT_AUDIT);
        }
    }
    emit_count(ev, e, n);
    if (atls_notify_conf_has_sinks(&ev->conf)) {
        emit_queue_runs(ev, e, json, n);
    }
    for (i = 0; i < n; i++) {
        if (json[i] == NULL) {
            continue;
        }
        if (ev->listener != NULL) {
            ev->listener(ev->listener_ctx, &e[i], json[i]);
        }
        free(json[i]);
    }
    free(json);
    free(recs);
    free(lens);
    return rc;
}

int
atls_events_emit(atls_events_t *ev, const atls_event_t *e)
{
    return atls_events_emit_many(ev, e, 1);
}
