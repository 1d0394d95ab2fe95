/*
 * One delivery of a queue entry (notify_int.h): a webhook POST through the
 * host's http_send, a command through its exec_start, and what its
 * outcome does to the entry: taken off for that sink, or retried with
 * backoff (10 s doubling up to 10 min; a webhook for a day, a command
 * 1 + ATLS_NOTIFY_EXEC_RETRIES times), or given up.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include "atls.h"
#include "atls_schedule.h"
#include "notify_int.h"
#include "sched_internal.h"

static int
webhook_start(atls_notify_t *n, atls_sched_op_t *op, char *body, char *why, size_t whylen)
{
    atls_http_request_t req;
    atls_http_opts_t    o;

    memset(&req, 0, sizeof(req));
    memset(&o, 0, sizeof(o));
    req.method = "POST";
    req.url = n->conf.webhook;
    req.body = body;
    req.body_len = strlen(body);
    req.content_type = "application/json";
    req.headers = (const char *const *) n->conf.headers;
    req.n_headers = n->conf.n_headers;
    o.connect_timeout_ms = ATLS_NOTIFY_HTTP_TIMEOUT_MS;
    o.total_timeout_ms = ATLS_NOTIFY_HTTP_TIMEOUT_MS;
    o.max_response = 64 * 1024;
    if (n->s->host.http_send(n->s->host.ctx, op, &o, &req) != 0) {
        snprintf(why, whylen, "the request could not be started");
        return -1;
    }
    return 0;
}

static int
exec_start(atls_notify_t *n, atls_sched_op_t *op, json_t *e, char *body,
           char *why, size_t whylen)
{
    const char *name = atls_notify_entry_event(e, "event");
    const char *id = atls_notify_entry_event(e, "id");
    char       *argv[4];
    long        limit = n->conf.exec_timeout_s > 0 ? n->conf.exec_timeout_s
                                                   : ATLS_NOTIFY_EXEC_TIMEOUT;

    argv[0] = n->conf.exec;
    argv[1] = (char *) (name != NULL ? name : "unknown");
    argv[2] = (char *) (id != NULL && id[0] != '\0' ? id : "-");
    argv[3] = NULL;
    op->hook = 1;
    n->sink[SINK_EXEC].deadline = atls_sched_now_ms() + limit * 1000;
    return n->s->host.exec_start(n->s->host.ctx, op, argv, body, strlen(body), why, whylen);
}

/* Starts sink k on entry key; a start that fails counts as a failed
 * delivery. */
void
atls_notify_sink_start(atls_notify_t *n, sink_kind_t k, const char *key, json_t *e)
{
    notify_sink_t   *sk = &n->sink[k];
    atls_sched_op_t *op = calloc(1, sizeof(*op));
    char            *body = json_dumps(json_object_get(e, "event"), JSON_COMPACT);
    char             why[512];
    int              rc;

    sk->key = strdup(key);
    if (op == NULL || body == NULL || sk->key == NULL) {
        atls_log(ATLS_LOG_ERR, "autotls: notifications: out of memory");
        free(op);
        free(body);
        free(sk->key);
        sk->key = NULL;
        return;
    }
    sk->op = op;
    why[0] = '\0';
    rc = k == SINK_WEBHOOK ? webhook_start(n, op, body, why, sizeof(why))
                           : exec_start(n, op, e, body, why, sizeof(why));
    free(body);
    if (rc != 0) {
        atls_notify_sink_end(n, k, 0, why[0] ? why : "could not be started");
    }
}

/* Seconds until the next try after `attempts` failures: 10 s doubling up
 * to 10 min, within ±20% (never above the cap). */
static long
retry_delay(unsigned attempts)
{
    long base = atls_schedule_doubling(ATLS_NOTIFY_RETRY_FIRST_S, ATLS_NOTIFY_RETRY_MAX_S,
                                       attempts);
    long spread = base / 5;
    long d = base - spread + (long) (atls_random_u64() % (uint64_t) (2 * spread + 1));

    return d > ATLS_NOTIFY_RETRY_MAX_S ? ATLS_NOTIFY_RETRY_MAX_S : d;
}

/* A failed delivery of e by sink k: retried later, or dropped (1). */
static int
sink_failed(atls_notify_t *n, sink_kind_t k, const char *key, json_t *e, const char *why)
{
    notify_sink_t *sk = &n->sink[k];
    const char    *sink = atls_notify_sink_names[k];
    const char    *name = atls_notify_entry_event(e, "event");
    const char    *id = atls_notify_entry_event(e, "id");
    unsigned       attempts = (unsigned) atls_notify_entry_int(e, "attempts", sink) + 1;
    time_t         now = time(NULL);
    long           delay = retry_delay(attempts);
    char           what[48];

    name = name != NULL ? name : "?";
    if (k == SINK_EXEC) {
        id = id != NULL ? id : "-";     /* as its argv had it */
        atls_log(ATLS_LOG_WARN, "autotls: notify command %s %s %s: %s%s", n->conf.exec,
                 name, id, why, attempts > ATLS_NOTIFY_EXEC_RETRIES ? "; given up" : "");
        if (attempts > ATLS_NOTIFY_EXEC_RETRIES) {
            atls_notify_entry_drop_sink(e, sink);
            return 1;
        }
    } else {
        id = id != NULL ? id : atls_notify_entry_batch_label(e, what, sizeof(what));
        if (!sk->failing) {
            atls_log(ATLS_LOG_WARN, "autotls: webhook %s: event %s (%s) not delivered: %s; "
                     "retrying with backoff", n->where, name, id, why);
        }
        if (now + delay > atls_notify_entry_queued(key) + ATLS_NOTIFY_WEBHOOK_GIVEUP_S) {
            atls_log(ATLS_LOG_ERR, "autotls: webhook %s: event %s (%s) dropped: not "
                     "delivered within 24 h (last: %s)", n->where, name, id, why);
            atls_notify_entry_drop_sink(e, sink);
            return 1;
        }
    }
    sk->failing = 1;
    (void) json_object_set_new(atls_notify_entry_member(e, "attempts"), sink,
                               json_integer(attempts));
    (void) json_object_set_new(atls_notify_entry_member(e, "retry_at"), sink,
                               json_integer((json_int_t) (now + delay)));
    (void) json_object_set_new(atls_notify_entry_member(e, "last_error"), sink,
                               json_string(why));
    sk->retry_at = atls_sched_now_ms() + (long long) delay * 1000;
    return 0;
}

/* The delivery in flight of sink k is over. */
void
atls_notify_sink_end(atls_notify_t *n, sink_kind_t k, int ok, const char *why)
{
    notify_sink_t *sk = &n->sink[k];
    char          *key = sk->key;
    json_t        *e;

    free(sk->op);
    sk->op = NULL;
    sk->key = NULL;
    e = atls_notify_entry_load(n, key);
    if (e != NULL && atls_notify_entry_pending(e, atls_notify_sink_names[k])) {
        if (ok) {
            if (sk->failing) {
                atls_log(ATLS_LOG_INFO, "autotls: %s %s: delivering again",
                         k == SINK_WEBHOOK ? "webhook" : "notify command",
                         k == SINK_WEBHOOK ? n->where : n->conf.exec);
            }
            sk->failing = 0;
            sk->retry_at = 0;
            atls_notify_entry_drop_sink(e, atls_notify_sink_names[k]);
            atls_notify_sink_done_to(sk, key);
        } else if (sink_failed(n, k, key, e, why)) {
            atls_notify_sink_done_to(sk, key);
        }
        atls_notify_entry_save(n, key, e);
    }
    json_decref(e);
    free(key);
    n->look_soon = 1;       /* the next entry, or the retry's wait */
    atls_notify_unlock(n);
}
