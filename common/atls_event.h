/*
 * Events, the audit trail and notification settings: one model for every
 * host (the nginx driver, Apache's watchdog, the CLI).
 *
 * The scheduler and the CLI describe what happened as an atls_event_t and
 * hand it to atls_events_emit(), which
 *   1. appends one JSON line to the store's audit log (every event; the
 *      log is append-only, rotated by size, never rewritten);
 *   2. adds one to the store's counters ("events.<name>");
 *   3. queues it in the store for the notification sinks when the
 *      emitter's settings name any (the durable queue that the scheduler's
 *      notifier, notify.c, drains: at-least-once delivery, across restarts);
 *   4. calls the emitter's listener (the CLI prints events with -v).
 * Emitting never blocks on a sink: a hanging command or a dead webhook
 * receiver only delays its own delivery.
 *
 * The JSON of an event (also the audit record and what sinks receive;
 * members that do not apply are left out):
 *   {"event":"renewed","time":"2026-11-29T19:00:00Z","id":"example.com",
 *    "names":["example.com","www.example.com"],"key_type":"ec256",
 *    "serial":"04ab...","old_serial":"03cd...","issuer":"CN=...,O=...",
 *    "not_after":"2027-02-27T18:00:00Z","source":"managed",
 *    "directory":"https://ca/dir","outcome":"ok",
 *    "server":"<hostname>",
 *    "actor":{"kind":"server","software":"nginx/1.30.0","pid":1234}
 *         | {"kind":"cli","software":"autotls/0.1.0","pid":99,"uid":0,"user":"root"},
 *    "error":{"class":"retry-later","type":"urn:...:rateLimited",
 *             "detail":"...","attempt":3,"next_attempt":"RFC3339"},  (failed)
 *    "level":"7d","level_seconds":604800,                           (expiring)
 *    "reason":"keyCompromise","revoked_source":"ocsp",               (revoked)
 *    "rule":"names","detail":"...",                                  (policy-denied
 *                                                                     and others)
 *    "path":"/etc/ssl/site.pem"}                                     (static)
 * Never key material, never an EAB secret, never a webhook header value.
 */
#ifndef ATLS_EVENT_H
#define ATLS_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "atls.h"

struct atls_store_s;

typedef enum {
    ATLS_EV_OBTAINING = 0,      /* an order starts (scheduler) */
    ATLS_EV_OBTAINED,           /* first certificate of a key type stored */
    ATLS_EV_RENEWED,            /* a certificate replaced another (old_serial) */
    ATLS_EV_DEPLOYED,           /* the server serves it (after host deployed()) */
    ATLS_EV_FAILED,             /* an order failed (error members) */
    ATLS_EV_EXPIRING,           /* an alert level crossed (level_s) */
    ATLS_EV_EXPIRED,
    ATLS_EV_REVOKED,            /* learned revoked, or revoked by an operator */
    ATLS_EV_OCSP_REFRESHED,
    ATLS_EV_OCSP_FAILED,        /* first failure of a streak */
    ATLS_EV_POLICY_DENIED,      /* rule + detail */
    ATLS_EV_IMPORTED,
    ATLS_EV_REMOVED,
    ATLS_EV_RENEWAL_REQUESTED,  /* autotls renew --request */
    ATLS_EV_KEY_GENERATED,      /* a certificate or account key was made */
    ATLS_EV_ACCOUNT_CREATED,    /* the CA created our account (directory) */
    ATLS_EV_TEST,               /* autotls notify-test */
    ATLS_EV_NAME_ADDED,         /* a dynamic name registered (atls_names.h) */
    ATLS_EV_NAME_REMOVED,       /* a dynamic name no longer served */
    ATLS_EV_MAX
} atls_event_type_t;

/* "obtaining", "obtained", "renewed", "deployed", "failed", "expiring",
 * "expired", "revoked", "ocsp-refreshed", "ocsp-failed", "policy-denied",
 * "imported", "removed", "renewal-requested", "key-generated",
 * "account-created", "test", "name-added", "name-removed". */
const char *atls_event_name(atls_event_type_t t);
/* -1 when name is none of them. */
int atls_event_type_from_name(const char *name);

/* One event.  Every pointer is borrowed for the call and may be NULL
 * (left out of the JSON); times 0 are left out too. */
typedef struct {
    atls_event_type_t   type;
    time_t              time;           /* 0: now */
    const char         *cert_id;
    const char *const  *names;
    size_t              n_names;
    const char         *key_type;       /* "ec256"... */
    const char         *serial;         /* the certificate concerned (new one) */
    const char         *old_serial;     /* the one it replaced */
    const char         *issuer;         /* issuer DN, one line */
    time_t              not_after;
    const char         *source;         /* "managed" (NULL means it) or "static" */
    const char         *path;           /* static: the file */
    const char         *directory;      /* CA directory URL */
    const char         *outcome;        /* NULL: "ok", or "error" for failed,
                                           ocsp-failed, "denied" for policy-denied */
    /* failed */
    const char         *err_class;      /* atls_err_class_name() */
    const char         *err_type;
    const char         *err_detail;
    unsigned            attempt;        /* consecutive failures incl. this one */
    time_t              next_attempt;
    /* expiring */
    long                level_s;
    /* revoked: CRLReason (-1 none given) and who said so */
    int                 reason;
    const char         *revoked_source; /* "ocsp", "crl", "operator" */
    /* policy-denied and free text for the others */
    const char         *rule;
    const char         *detail;
} atls_event_t;

/* Who emits: the server (software, pid) or the CLI (uid and user too). */
typedef struct {
    const char *kind;       /* "server" or "cli" */
    const char *software;   /* "nginx/1.30.0", "Apache/2.4.62", "autotls/0.1.0" */
    long        pid;
    long        uid;        /* cli only; -1 when not recorded */
    const char *user;       /* cli only */
} atls_actor_t;

/* The event as one JSON object (malloc'd, no newline), with actor and
 * server (the host name) filled in.  NULL only on out-of-memory. */
char *atls_event_to_json(const atls_event_t *e, const atls_actor_t *actor);

/* ---- expiry alert levels ------------------------------------------------ */

#define ATLS_WARN_MAX 8

/* Seconds before notAfter, strictly descending; n 0 means the defaults
 * (21d 7d 3d 1d). */
typedef struct {
    long   level[ATLS_WARN_MAX];
    size_t n;
} atls_warn_t;

void atls_warn_default(atls_warn_t *w);
/* args: durations "21d", "12h", "30m", "90s" (a bare number is seconds);
 * sorted descending, duplicates refused.  -1 + err naming the bad value. */
int atls_warn_parse(const char *const *args, size_t n, atls_warn_t *w,
                    char *err, size_t errlen);
/* The smallest level already reached at now (not_after - now <= level),
 * 0 when none is (or the certificate has expired: see the caller). */
long atls_warn_level(const atls_warn_t *w, time_t not_after, time_t now);
/* When the next level not yet reached at now will be, else 0. */
time_t atls_warn_next(const atls_warn_t *w, time_t not_after, time_t now);
/* "21d", "12h", "30m", "45s": the largest unit that divides s. */
char *atls_duration_format(long s, char *buf, size_t len);
/* "30s", "5m", "2h", "7d" or a bare number of seconds -> seconds; -1 bad. */
long atls_duration_parse(const char *s);

/* ---- notification settings ---------------------------------------------- */

#define ATLS_NOTIFY_QUEUE_MAX     10000   /* default bound of the queue */
#define ATLS_NOTIFY_EXEC_TIMEOUT  30      /* s, default limit of one command run */
#define ATLS_NOTIFY_MAX_HEADERS   16
/* A batch of events (atls_events_emit_many: a bulk add or remove of
 * names) reaches the sinks in queue entries of at most this many events
 * of one type and about this many bytes: one delivery per entry, not per
 * event (docs/events.md, "Batches"). */
#define ATLS_NOTIFY_BATCH_MAX     500
#define ATLS_NOTIFY_BATCH_BYTES   (256 * 1024)

/* What a server was configured with (autotls_warn, autotls_notify_exec,
 * autotls_notify_webhook / AutoTLSWarn, AutoTLSNotifyCmd,
 * AutoTLSNotifyWebhook).  Saved in the store (atls_store_save_notify_conf,
 * private: headers may carry a token) so that the CLI queues its events for
 * the same sinks and `autotls notify-test` finds them. */
typedef struct {
    atls_warn_t  warn;
    char        *exec;            /* absolute path of the command, or NULL */
    long         exec_timeout_s;  /* 0: ATLS_NOTIFY_EXEC_TIMEOUT */
    char        *webhook;         /* http(s) URL, or NULL */
    char       **headers;         /* "Name: value" lines for the webhook */
    size_t       n_headers;
    size_t       queue_max;       /* 0: ATLS_NOTIFY_QUEUE_MAX */
} atls_notify_conf_t;

void atls_notify_conf_free(atls_notify_conf_t *c);            /* members */
void atls_notify_conf_copy(atls_notify_conf_t *d, const atls_notify_conf_t *s);
int  atls_notify_conf_has_sinks(const atls_notify_conf_t *c); /* NULL ok */
/* The one set of rules every host applies after parsing: exec absolute
 * and not in a world-writable directory chain is not checked here (the
 * host checks the file); webhook http:// or https:// with a host; header
 * "Name: value" with a token name and no CR/LF; at most
 * ATLS_NOTIFY_MAX_HEADERS.  -1 + err naming the value. */
int  atls_notify_conf_check(const atls_notify_conf_t *c, char *err, size_t errlen);
/* The webhook URL as messages show it (logs, the CLI): without userinfo
 * ("user:password@"), query and fragment, which may carry credentials,
 * and escaped for one line like atls_log_escape.  Returns buf. */
char *atls_notify_url_shown(const char *url, char *buf, size_t len);
/* JSON (malloc'd) and back; from_json: -1 + err naming the field. */
char *atls_notify_conf_to_json(const atls_notify_conf_t *c);
int  atls_notify_conf_from_json(const char *json, size_t len, atls_notify_conf_t *c,
                                char *err, size_t errlen);

/* ---- the emitter ---------------------------------------------------------- */

typedef struct atls_events_s atls_events_t;

/* json is the event's JSON text as recorded. */
typedef void (*atls_event_listener_fn)(void *ctx, const atls_event_t *e,
                                       const char *json);

/* An emitter over st (borrowed) for actor (copied).  conf (copied, may be
 * NULL): the sinks events are queued for.  NULL only on out-of-memory. */
atls_events_t *atls_events_new(struct atls_store_s *st, const atls_actor_t *actor,
                               const atls_notify_conf_t *conf);
void atls_events_free(atls_events_t *ev);
void atls_events_set_listener(atls_events_t *ev, atls_event_listener_fn fn, void *ctx);
/* Called (synchronously, from emit) after an event was queued, so that a
 * notifier in the same process delivers it without waiting for a timer. */
void atls_events_set_wakeup(atls_events_t *ev, void (*fn)(void *ctx), void *ctx);
const atls_notify_conf_t *atls_events_conf(const atls_events_t *ev);
/* ev's sinks are not the store's own (`autotls notify-test --exec/--webhook`):
 * its notifier delivers the queued entries that name them and leaves the
 * other sinks entries name alone, rather than taking them off as a server
 * does with a sink it no longer has (which would drop the server's queue). */
void atls_events_keep_other_sinks(atls_events_t *ev);
int  atls_events_keeps_other_sinks(const atls_events_t *ev);
const atls_actor_t *atls_events_actor(const atls_events_t *ev);

/* Records e (audit, counters, queue, listener).  0 ok; -1 when the audit
 * record could not be written (logged once per failure streak, the rest is
 * still done).  A full queue drops the notification with an ERR log naming
 * the store and the bound; the audit record is still written. */
int atls_events_emit(atls_events_t *ev, const atls_event_t *e);
/* The n events e[0..n-1] the same way, as one batch: one append to the
 * audit log (one write and one fsync on the fs backend) and one rewrite
 * of the counters, whatever n; then the queue entries for the sinks: a
 * run of events of one type goes in entries of at most
 * ATLS_NOTIFY_BATCH_MAX events (ATLS_NOTIFY_BATCH_BYTES), a run of one in
 * the entry atls_events_emit makes; and each one's listener call, in
 * order.  0 ok; -1 when an audit record could not be written.
 * (Added to the issue-11 contract by the bulkadd helper: `autotls add
 * --from-file` with 1,000 names; batched queue entries by the bulknames
 * helper.) */
int atls_events_emit_many(atls_events_t *ev, const atls_event_t *e, size_t n);

/* Fills a with this process: kind "server"/"cli", software, pid, and for
 * the CLI the real uid and its user name (buffers in a static area). */
void atls_actor_self(atls_actor_t *a, const char *kind, const char *software);

#endif
