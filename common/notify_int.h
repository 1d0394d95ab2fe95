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

#include "atls_event.h"
#include "atls_http.h"
#include "atls_sched.h"

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

#endif
