/* The emitter: audit record, counter, queue entry, listener and wake-up. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include <cmocka.h>
#include "atls_store.h"
#include "support/logcap.h"
#include "support/storefx.h"

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, storefx_setup, storefx_teardown)

typedef struct {
    int    calls;
    char  *last_json;
    int    wakeups;
} seen_t;

static void
on_event(void *ctx, const atls_event_t *e, const char *json)
{
    seen_t *s = ctx;

    (void) e;
    s->calls++;
    free(s->last_json);
    s->last_json = strdup(json);
}

static void
on_wakeup(void *ctx)
{
    ((seen_t *) ctx)->wakeups++;
}

static char *
audit_text(atls_store_t *st)
{
    char   err[512], *data = NULL;
    size_t len = 0;

    if (atls_store_audit_read(st, 0, &data, &len, err, sizeof(err)) != ATLS_STORE_OK) {
        return NULL;
    }
    return data;
}

static size_t
count_char(const char *s, char c)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        n += *s == c;
    }
    return n;
}

static uint64_t
counter(atls_store_t *st, const char *name)
{
    char     err[512], **names = NULL;
    uint64_t *values = NULL, v = 0;
    size_t    n = 0, i;

    assert_int_equal(atls_store_counters_load(st, &names, &values, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    for (i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0) {
            v = values[i];
        }
    }
    atls_strv_free(names, n);
    free(values);
    return v;
}

static size_t
queued(atls_store_t *st, char ***keys)
{
    char   err[512];
    size_t n = 0;

    assert_int_equal(atls_store_queue_list(st, keys, &n, err, sizeof(err)), ATLS_STORE_OK);
    return n;
}

static atls_event_t
obtained(void)
{
    static const char *names[] = { "a.test" };
    atls_event_t       e;

    memset(&e, 0, sizeof(e));
    e.type = ATLS_EV_OBTAINED;
    e.cert_id = "a.test";
    e.names = names;
    e.n_names = 1;
    e.key_type = "ec256";
    e.serial = "0abc";
    return e;
}

/* No sinks: audited, counted, listened to; nothing queued, no wake-up. */
static void
test_emit_without_sinks(void **state)
{
    storefx_t     *fx = *state;
    atls_actor_t   a;
    atls_events_t *ev;
    atls_event_t   e = obtained();
    seen_t         s = { 0 };
    char          *text, **keys = NULL, line[8192];

    atls_actor_self(&a, "cli", "autotls/0.1.0");
    ev = atls_events_new(fx->st, &a, NULL);
    assert_non_null(ev);
    assert_false(atls_notify_conf_has_sinks(atls_events_conf(ev)));
    assert_string_equal(atls_events_actor(ev)->kind, "cli");
    atls_events_set_listener(ev, on_event, &s);
    atls_events_set_wakeup(ev, on_wakeup, &s);
    assert_int_equal(atls_events_emit(ev, &e), 0);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.wakeups, 0);
    text = audit_text(fx->st);
    assert_non_null(text);
    /* the audit record is the listener's JSON, one line */
    snprintf(line, sizeof(line), "%s\n", s.last_json);
    assert_string_equal(text, line);
    assert_non_null(strstr(text, "\"event\":\"obtained\""));
    assert_non_null(strstr(text, "\"kind\":\"cli\""));
    free(text);
    assert_int_equal(counter(fx->st, "events.obtained"), 1);
    assert_int_equal(queued(fx->st, &keys), 0);
    atls_events_free(ev);
    free(s.last_json);
}

/* With sinks: one queue entry in the documented format, then a wake-up. */
static void
test_emit_with_sinks(void **state)
{
    storefx_t         *fx = *state;
    atls_actor_t       a = { "server", "nginx/1.22.1", 42, -1, NULL };
    atls_notify_conf_t c;
    atls_events_t     *ev;
    atls_event_t       e = obtained();
    seen_t             s = { 0 };
    char              *hdr[] = { "Authorization: Bearer TOPSECRET" };
    char               err[512], **keys = NULL, *entry = NULL, *text;
    size_t             n, len;
    json_t            *j, *ej, *pending;

    memset(&c, 0, sizeof(c));
    c.exec = "/bin/true";
    c.webhook = "http://127.0.0.1:9/h";
    c.headers = hdr;
    c.n_headers = 1;
    ev = atls_events_new(fx->st, &a, &c);
    assert_non_null(ev);
    atls_events_set_listener(ev, on_event, &s);
    atls_events_set_wakeup(ev, on_wakeup, &s);
    assert_int_equal(atls_events_emit(ev, &e), 0);
    e.type = ATLS_EV_DEPLOYED;
    assert_int_equal(atls_events_emit(ev, &e), 0);
    assert_int_equal(s.wakeups, 2);
    n = queued(fx->st, &keys);
    assert_int_equal(n, 2);
    assert_int_equal(atls_store_queue_get(fx->st, keys[0], &entry, &len, err, sizeof(err)),
                     ATLS_STORE_OK);
    j = json_loads(entry, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 4);
    ej = json_object_get(j, "event");
    assert_string_equal(json_string_value(json_object_get(ej, "event")), "obtained");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(ej, "actor"),
                                                        "pid")), 42);
    pending = json_object_get(j, "pending");
    assert_int_equal(json_array_size(pending), 2);
    assert_string_equal(json_string_value(json_array_get(pending, 0)), "exec");
    assert_string_equal(json_string_value(json_array_get(pending, 1)), "webhook");
    assert_true(json_is_object(json_object_get(j, "attempts")));
    assert_int_equal(json_object_size(json_object_get(j, "attempts")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "next_attempt")), 0);
    json_decref(j);
    free(entry);
    atls_strv_free(keys, n);
    /* a header value never reaches the audit log */
    text = audit_text(fx->st);
    assert_null(strstr(text, "TOPSECRET"));
    assert_null(strstr(text, "Authorization"));
    assert_int_equal(counter(fx->st, "events.deployed"), 1);
    free(text);
    atls_events_free(ev);
    free(s.last_json);
}

static void
test_emit_webhook_only(void **state)
{
    storefx_t         *fx = *state;
    atls_notify_conf_t c;
    atls_events_t     *ev;
    atls_event_t       e = obtained();
    char               err[512], **keys = NULL, *entry = NULL;
    size_t             n, len;

    memset(&c, 0, sizeof(c));
    c.webhook = "http://127.0.0.1:9/h";
    ev = atls_events_new(fx->st, NULL, &c);
    assert_int_equal(atls_events_emit(ev, &e), 0);
    n = queued(fx->st, &keys);
    assert_int_equal(n, 1);
    assert_int_equal(atls_store_queue_get(fx->st, keys[0], &entry, &len, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_non_null(strstr(entry, "\"pending\":[\"webhook\"]"));
    free(entry);
    atls_strv_free(keys, n);
    atls_events_free(ev);
}

/* A full queue: the event is still audited and counted; one ERR naming
 * the store and the bound per streak. */
static void
test_emit_queue_full(void **state)
{
    storefx_t         *fx = *state;
    atls_notify_conf_t c;
    atls_events_t     *ev;
    atls_event_t       e = obtained();
    char              *text, **keys = NULL;
    size_t             n;

    memset(&c, 0, sizeof(c));
    c.exec = "/bin/true";
    c.queue_max = 1;
    ev = atls_events_new(fx->st, NULL, &c);
    logcap_start(ATLS_LOG_ERR);
    assert_int_equal(atls_events_emit(ev, &e), 0);
    assert_int_equal(logcap_len(), 0);
    assert_int_equal(atls_events_emit(ev, &e), 0);
    assert_int_equal(atls_events_emit(ev, &e), 0);
    assert_int_equal(logcap_count("queue is full"), 1);
    assert_int_equal(logcap_count(fx->root), 1);
    assert_int_equal(logcap_count("bound is 1"), 1);
    logcap_stop();
    n = queued(fx->st, &keys);
    assert_int_equal(n, 1);
    atls_strv_free(keys, n);
    text = audit_text(fx->st);
    assert_non_null(text);
    assert_int_equal(count_char(text, '\n'), 3);
    free(text);
    assert_int_equal(counter(fx->st, "events.obtained"), 3);
    atls_events_free(ev);
}

/* The audit log cannot be written: -1, said once per streak, the rest is
 * still done; it working again is said too. */
static void
test_emit_audit_failure(void **state)
{
    storefx_t     *fx = *state;
    atls_events_t *ev;
    atls_event_t   e = obtained();
    seen_t         s = { 0 };

    assert_int_equal(mkdir(storefx_path(fx, "audit.log"), 0700), 0);
    ev = atls_events_new(fx->st, NULL, NULL);
    atls_events_set_listener(ev, on_event, &s);
    logcap_start(ATLS_LOG_WARN);
    assert_int_equal(atls_events_emit(ev, &e), -1);
    assert_int_equal(atls_events_emit(ev, &e), -1);
    assert_int_equal(logcap_count("audit record"), 1);
    assert_int_equal(logcap_count(fx->root), 1);
    assert_int_equal(s.calls, 2);
    assert_int_equal(counter(fx->st, "events.obtained"), 2);
    assert_int_equal(rmdir(storefx_path(fx, "audit.log")), 0);
    assert_int_equal(atls_events_emit(ev, &e), 0);
    assert_int_equal(logcap_count("works again;"), 1);
    logcap_stop();
    atls_events_free(ev);
    free(s.last_json);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_emit_without_sinks),
        STORE_TEST(test_emit_with_sinks),
        STORE_TEST(test_emit_webhook_only),
        STORE_TEST(test_emit_queue_full),
        STORE_TEST(test_emit_audit_failure),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
