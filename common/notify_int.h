/*
 * The notifier: delivers the store's notification queue (events queued by
 * atls_events_emit) to the sinks of the scheduler's events settings, a
 * webhook through the host's http_send and a command through its
 * exec_start.  Owned by the scheduler (sched.c), which routes the host's
 * reports of the notifier's ops here and arms its one timer for the
 * notifier's deadlines too.  Internal to common/.
 */
#ifndef ATLS_NOTIFY_INT_H
#define ATLS_NOTIFY_INT_H

#include <time.h>
#include <jansson.h>
#include "atls_event.h"
#include "atls_http.h"
#include "atls_sched.h"
#include "atls_store.h"

typedef struct atls_notify_s atls_notify_t;

/* The webhook's limits: one request, then retries 10 s doubling up to
 * 10 min (with jitter) for a day; a command is tried at most 1 + 3 times. */
#define ATLS_NOTIFY_HTTP_TIMEOUT_MS   10000
#define ATLS_NOTIFY_RETRY_FIRST_S     10
#define ATLS_NOTIFY_RETRY_MAX_S       600
#define ATLS_NOTIFY_WEBHOOK_GIVEUP_S  86400
#define ATLS_NOTIFY_EXEC_RETRIES      3
/* The queue is looked at again after this long (entries waiting, another
 * process holding the queue, events another process queued). */
#define ATLS_NOTIFY_POLL_S            30
/* A look reads only the entries after each sink's cursor, less this slack
 * (notify.c); all of them are read again every RESCAN_S, and at start. */
#define ATLS_NOTIFY_CURSOR_SLACK_MS   5000
#define ATLS_NOTIFY_RESCAN_S          600

/* A notifier for s's events settings; NULL when they name no sink (or out
 * of memory, logged).  Sets the emitter's wake-up. */
atls_notify_t *atls_notify_new(atls_sched_t *s, atls_events_t *ev);
/* Cancels what is in flight (it stays queued), clears the wake-up. */
void atls_notify_free(atls_notify_t *n);
/* No more deliveries; what is in flight is cancelled (stays queued). */
void atls_notify_stop(atls_notify_t *n);

/* Look at the queue soon (from the next timer). */
void atls_notify_look(atls_notify_t *n);
/* The earliest moment (monotonic ms) the notifier needs the timer;
 * LLONG_MAX when none. */
long long atls_notify_deadline(const atls_notify_t *n);
/* The timer fired (now: monotonic ms): time limits, retries, looks. */
void atls_notify_timer(atls_notify_t *n, long long now);
/* 1 while a delivery is in flight or a look is due (atls_sched_idle). */
int atls_notify_busy(const atls_notify_t *n);

/* The host's reports: 1 when op was the notifier's (handled), else 0. */
int atls_notify_http_done(atls_notify_t *n, atls_sched_op_t *op,
                          const atls_http_response_t *resp);
int atls_notify_hook_done(atls_notify_t *n, atls_sched_op_t *op, int ok, const char *why);

/* ---- between notify.c, notify_deliver.c and notify_entry.c only ---------- */

typedef enum { SINK_WEBHOOK = 0, SINK_EXEC, SINK_MAX } sink_kind_t;

/* as queue entries name the sinks in "pending" */
extern const char *const atls_notify_sink_names[SINK_MAX];

typedef struct {
    int              on;        /* configured, and runnable by this host */
    atls_sched_op_t *op;        /* the delivery in flight */
    char            *key;       /* its entry */
    long long        deadline;  /* exec: killed then (monotonic ms) */
    long long        retry_at;  /* its oldest entry is tried again then; 0 none */
    int              failing;   /* in a failure streak (the webhook's is logged once) */
    char            *done_to;   /* no entry up to this key is pending for it; NULL: unknown */
} notify_sink_t;

struct atls_notify_s {
    atls_sched_t       *s;
    atls_events_t      *ev;
    atls_notify_conf_t  conf;
    char               *where;      /* the webhook URL up to '?', for logs */
    notify_sink_t       sink[SINK_MAX];
    int                 look_soon;
    long long           poll_at;    /* entries wait: looked at then; 0 none */
    long long           rescan_at;  /* the cursors (done_to) are forgotten then */
    atls_store_lock_t  *lock;
    int                 lock_said;  /* "another process delivers" logged */
    int                 stopped;
};

/* Queue entries (notify_entry.c).  load: the entry, or NULL (gone
 * meanwhile: delivered by another process, or unreadable: logged and
 * removed).  save: rewritten, or removed once no sink is pending. */
json_t *atls_notify_entry_load(atls_notify_t *n, const char *key);
void atls_notify_entry_save(atls_notify_t *n, const char *key, json_t *e);
int atls_notify_entry_pending(json_t *e, const char *sink);
/* sink is done with e (delivered or given up): its state goes too. */
void atls_notify_entry_drop_sink(json_t *e, const char *sink);
/* e's object member name, made when missing */
json_t *atls_notify_entry_member(json_t *e, const char *name);
/* e's member[sink] as an integer; 0 when missing */
long long atls_notify_entry_int(json_t *e, const char *member, const char *sink);
/* when the entry was queued (its key starts with the time in ms) */
time_t atls_notify_entry_queued(const char *key);
/* the event's string member, or NULL */
const char *atls_notify_entry_event(json_t *e, const char *member);
/* "batch of N" for a batch of events, else "-" */
const char *atls_notify_entry_batch_label(json_t *e, char *buf, size_t len);

/* One delivery (notify_deliver.c): sink k starts on entry key (a start
 * that fails counts as a failed delivery); its delivery in flight is over. */
void atls_notify_sink_start(atls_notify_t *n, sink_kind_t k, const char *key, json_t *e);
void atls_notify_sink_end(atls_notify_t *n, sink_kind_t k, int ok, const char *why);

/* The notifier (notify.c): sink sk is done with every entry up to key;
 * the store lock "notify" is let go once nothing is in flight. */
void atls_notify_sink_done_to(notify_sink_t *sk, const char *key);
void atls_notify_unlock(atls_notify_t *n);

#endif
