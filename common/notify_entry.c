/*
 * The notification queue's entries (notify_int.h): read, checked, changed
 * and written back for the notifier.  The format (store_events.c writes
 * an entry at emit time, docs/store.md):
 *   {"event":{...},"pending":["exec","webhook"],
 *    "attempts":{"webhook":N},"retry_at":{"webhook":T},
 *    "last_error":{"webhook":"HTTP 503"},"next_attempt":T}
 * An entry is removed once no sink is pending.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include "atls.h"
#include "atls_store.h"
#include "notify_int.h"
#include "sched_internal.h"

/* The event name and id become a command's argv: a known event name, and
 * an id without control characters that cannot pass for an option. */
static int
entry_event_ok(json_t *ev)
{
    json_t     *name = json_object_get(ev, "event"), *id = json_object_get(ev, "id");
    const char *s;

    if (!json_is_string(name) || atls_event_type_from_name(json_string_value(name)) < 0) {
        return 0;
    }
    if (id == NULL) {
        return 1;
    }
    if (!json_is_string(id)) {
        return 0;
    }
    s = json_string_value(id);
    if (s[0] == '\0' || s[0] == '-' || strlen(s) > 255) {
        return 0;
    }
    for (; *s != '\0'; s++) {
        if ((unsigned char) *s < 0x20 || *s == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* The entry, or NULL (gone meanwhile: delivered by another process, or
 * unreadable: logged). */
json_t *
atls_notify_entry_load(atls_notify_t *n, const char *key)
{
    json_t *e = NULL;
    char   *data = NULL, err[512];
    size_t  len = 0;
    int     rc;

    rc = atls_store_queue_get(n->s->st, key, &data, &len, err, sizeof(err));
    if (rc == ATLS_STORE_OK) {
        e = json_loadb(data, len, 0, NULL);
        if (e != NULL && !json_is_object(e)) {
            json_decref(e);
            e = NULL;
        }
        if (e == NULL || !json_is_object(json_object_get(e, "event"))
            || !json_is_array(json_object_get(e, "pending"))
            || !entry_event_ok(json_object_get(e, "event")))
        {
            atls_log(ATLS_LOG_WARN, "autotls: notification queue entry %s in %s is not "
                     "a queue entry (\"pending\", an \"event\" with a known name and a "
                     "plain id): removed", key, n->s->st->location);
            json_decref(e);
            e = NULL;
            (void) atls_store_queue_del(n->s->st, key, err, sizeof(err));
        }
    } else if (rc != ATLS_STORE_NOTFOUND) {
        atls_log(ATLS_LOG_WARN, "autotls: notification queue: %s", err);
    }
    free(data);
    return e;
}

int
atls_notify_entry_pending(json_t *e, const char *sink)
{
    json_t *v;
    size_t  i;

    json_array_foreach(json_object_get(e, "pending"), i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), sink) == 0) {
            return 1;
        }
    }
    return 0;
}

/* sink is done with e (delivered or given up): its state goes too. */
void
atls_notify_entry_drop_sink(json_t *e, const char *sink)
{
    json_t *pending = json_object_get(e, "pending"), *v;
    size_t  i;

    for (i = 0; i < json_array_size(pending); i++) {
        v = json_array_get(pending, i);
        if (!json_is_string(v) || strcmp(json_string_value(v), sink) == 0) {
            json_array_remove(pending, i--);
        }
    }
    (void) json_object_del(json_object_get(e, "attempts"), sink);
    (void) json_object_del(json_object_get(e, "retry_at"), sink);
    (void) json_object_del(json_object_get(e, "last_error"), sink);
}

json_t *
atls_notify_entry_member(json_t *e, const char *name)
{
    json_t *o = json_object_get(e, name);

    if (!json_is_object(o)) {
        o = json_object();
        (void) json_object_set_new(e, name, o);
    }
    return o;
}

long long
atls_notify_entry_int(json_t *e, const char *member, const char *sink)
{
    json_t *v = json_object_get(json_object_get(e, member), sink);

    return json_is_integer(v) ? (long long) json_integer_value(v) : 0;
}

/* Rewritten, or removed once no sink is pending; next_attempt is the
 * earliest retry of any sink (for `autotls` tools that show the queue). */
void
atls_notify_entry_save(atls_notify_t *n, const char *key, json_t *e)
{
    const char *sink;
    json_t     *v;
    long long   next = 0;
    char       *text, err[512];
    int         rc;

    if (json_array_size(json_object_get(e, "pending")) == 0) {
        rc = atls_store_queue_del(n->s->st, key, err, sizeof(err));
    } else {
        json_object_foreach(json_object_get(e, "retry_at"), sink, v) {
            if (json_is_integer(v) && (next == 0 || json_integer_value(v) < next)) {
                next = (long long) json_integer_value(v);
            }
        }
        (void) json_object_set_new(e, "next_attempt", json_integer(next));
        text = json_dumps(e, JSON_COMPACT);
        rc = text == NULL ? ATLS_STORE_ERROR
                          : atls_store_queue_update(n->s->st, key, text, strlen(text),
                                                    err, sizeof(err));
        if (text == NULL) {
            snprintf(err, sizeof(err), "out of memory");
        }
        free(text);
    }
    if (rc != ATLS_STORE_OK && rc != ATLS_STORE_NOTFOUND) {
        atls_log(ATLS_LOG_WARN, "autotls: notification queue: %s", err);
    }
}

/* When the entry was queued: its key starts with the time in ms. */
time_t
atls_notify_entry_queued(const char *key)
{
    return (time_t) (strtoll(key, NULL, 10) / 1000);
}

const char *
atls_notify_entry_event(json_t *e, const char *member)
{
    return json_string_value(json_object_get(json_object_get(e, "event"), member));
}

/* What the logs call an entry about no one certificate: "batch of N"
 * for a batch of events (docs/events.md), else "-". */
const char *
atls_notify_entry_batch_label(json_t *e, char *buf, size_t len)
{
    json_t *count = json_object_get(json_object_get(e, "event"), "count");

    if (!json_is_integer(count)) {
        return "-";
    }
    snprintf(buf, len, "batch of %" JSON_INTEGER_FORMAT, json_integer_value(count));
    return buf;
}
