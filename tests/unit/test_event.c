/* The event model: names, JSON, alert levels, notification settings. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include <cmocka.h>
#include "atls_event.h"

#define DAY 86400L

static json_t *
parse(const char *s)
{
    json_error_t je;
    json_t      *j = json_loads(s, 0, &je);

    if (j == NULL) {
        fail_msg("not JSON (%s): %s", je.text, s);
    }
    return j;
}

static const char *
str_of(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* ---- names ---------------------------------------------------------------- */

static void
test_names_round_trip(void **state)
{
    int t;

    (void) state;
    for (t = 0; t < ATLS_EV_MAX; t++) {
        assert_int_equal(atls_event_type_from_name(atls_event_name(t)), t);
    }
    assert_string_equal(atls_event_name(ATLS_EV_OCSP_REFRESHED), "ocsp-refreshed");
    assert_string_equal(atls_event_name(ATLS_EV_POLICY_DENIED), "policy-denied");
    assert_string_equal(atls_event_name(ATLS_EV_RENEWAL_REQUESTED), "renewal-requested");
    assert_int_equal(atls_event_type_from_name("nope"), -1);
    assert_int_equal(atls_event_type_from_name(NULL), -1);
}

/* ---- JSON ------------------------------------------------------------------ */

static void
test_json_renewed(void **state)
{
    const char  *names[] = { "example.com", "www.example.com" };
    atls_event_t e;
    atls_actor_t a = { "server", "nginx/1.22.1", 1234, -1, NULL };
    json_t      *j, *actor;
    char        *s, host[256];

    (void) state;
    memset(&e, 0, sizeof(e));
    e.type = ATLS_EV_RENEWED;
    e.time = 1795978800;            /* 2026-11-29T19:00:00Z */
    e.cert_id = "example.com";
    e.names = names;
    e.n_names = 2;
    e.key_type = "ec256";
    e.serial = "04ab";
    e.old_serial = "03cd";
    e.issuer = "CN=Pebble";
    e.not_after = 1795978800 + 90 * DAY;
    e.directory = "https://ca/dir";
    s = atls_event_to_json(&e, &a);
    assert_non_null(s);
    assert_null(strchr(s, '\n'));
    j = parse(s);
    assert_string_equal(str_of(j, "event"), "renewed");
    assert_string_equal(str_of(j, "time"), "2026-11-29T19:00:00Z");
    assert_string_equal(str_of(j, "id"), "example.com");
    assert_int_equal(json_array_size(json_object_get(j, "names")), 2);
    assert_string_equal(str_of(j, "key_type"), "ec256");
    assert_string_equal(str_of(j, "serial"), "04ab");
    assert_string_equal(str_of(j, "old_serial"), "03cd");
    assert_string_equal(str_of(j, "issuer"), "CN=Pebble");
    assert_string_equal(str_of(j, "not_after"), "2027-02-27T19:00:00Z");
    assert_string_equal(str_of(j, "source"), "managed");
    assert_string_equal(str_of(j, "directory"), "https://ca/dir");
    assert_string_equal(str_of(j, "outcome"), "ok");
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    assert_string_equal(str_of(j, "server"), host);
    actor = json_object_get(j, "actor");
    assert_string_equal(str_of(actor, "kind"), "server");
    assert_string_equal(str_of(actor, "software"), "nginx/1.22.1");
    assert_int_equal(json_integer_value(json_object_get(actor, "pid")), 1234);
    assert_null(json_object_get(actor, "uid"));
    /* what does not apply is left out */
    assert_null(json_object_get(j, "error"));
    assert_null(json_object_get(j, "level"));
    assert_null(json_object_get(j, "reason"));
    assert_null(json_object_get(j, "rule"));
    assert_null(json_object_get(j, "path"));
    json_decref(j);
    free(s);
}

static void
test_json_failed_expiring_revoked(void **state)
{
    atls_event_t e;
    atls_actor_t a = { "cli", "autotls/0.1.0", 99, 0, "root" };
    json_t      *j, *err, *actor;
    char        *s;

    (void) state;
    memset(&e, 0, sizeof(e));
    e.type = ATLS_EV_FAILED;
    e.time = 1795978800;
    e.cert_id = "x.test";
    e.err_class = "retry-later";
    e.err_type = "urn:ietf:params:acme:error:rateLimited";
    e.err_detail = "slow down";
    e.attempt = 3;
    e.next_attempt = 1795978800 + 3600;
    s = atls_event_to_json(&e, &a);
    j = parse(s);
    assert_string_equal(str_of(j, "outcome"), "error");
    err = json_object_get(j, "error");
    assert_string_equal(str_of(err, "class"), "retry-later");
    assert_string_equal(str_of(err, "type"), "urn:ietf:params:acme:error:rateLimited");
    assert_string_equal(str_of(err, "detail"), "slow down");
    assert_int_equal(json_integer_value(json_object_get(err, "attempt")), 3);
    assert_string_equal(str_of(err, "next_attempt"), "2026-11-29T20:00:00Z");
    actor = json_object_get(j, "actor");
    assert_string_equal(str_of(actor, "kind"), "cli");
    assert_int_equal(json_integer_value(json_object_get(actor, "uid")), 0);
    assert_string_equal(str_of(actor, "user"), "root");
    assert_null(json_object_get(j, "not_after"));
    json_decref(j);
    free(s);

    memset(&e, 0, sizeof(e));
    e.type = ATLS_EV_EXPIRING;
    e.level_s = 7 * DAY;
    e.source = "static";
    e.path = "/etc/ssl/site.pem";
    s = atls_event_to_json(&e, &a);
    j = parse(s);
    assert_string_equal(str_of(j, "level"), "7d");
    assert_int_equal(json_integer_value(json_object_get(j, "level_seconds")), 7 * DAY);
    assert_string_equal(str_of(j, "source"), "static");
    assert_string_equal(str_of(j, "path"), "/etc/ssl/site.pem");
    /* time 0: now */
    assert_non_null(str_of(j, "time"));
    /* reason 0 outside `revoked` is not a reason */
    assert_null(json_object_get(j, "reason"));
    json_decref(j);
    free(s);

    memset(&e, 0, sizeof(e));
    e.type = ATLS_EV_REVOKED;
    e.reason = 1;
    e.revoked_source = "ocsp";
    s = atls_event_to_json(&e, NULL);
    j = parse(s);
    assert_string_equal(str_of(j, "reason"), "keyCompromise");
    assert_string_equal(str_of(j, "revoked_source"), "ocsp");
    json_decref(j);
    free(s);

    memset(&e, 0, sizeof(e));
    e.type = ATLS_EV_POLICY_DENIED;
    e.rule = "names";
    e.detail = "evil.test is not allowed";
    s = atls_event_to_json(&e, NULL);
    j = parse(s);
    assert_string_equal(str_of(j, "outcome"), "denied");
    assert_string_equal(str_of(j, "rule"), "names");
    assert_string_equal(str_of(j, "detail"), "evil.test is not allowed");
    json_decref(j);
    free(s);
}

static void
test_actor_self(void **state)
{
    atls_actor_t a;

    (void) state;
    atls_actor_self(&a, "cli", "autotls/0.1.0");
    assert_string_equal(a.kind, "cli");
    assert_int_equal(a.pid, (long) getpid());
    assert_int_equal(a.uid, (long) getuid());
    assert_non_null(a.user);
    assert_true(strlen(a.user) > 0);
    atls_actor_self(&a, "server", "nginx/1.22.1");
    assert_int_equal(a.uid, -1);
    assert_null(a.user);
}

/* ---- durations and alert levels -------------------------------------------- */

static void
test_duration_format(void **state)
{
    char buf[32];

    (void) state;
    assert_string_equal(atls_duration_format(21 * DAY, buf, sizeof(buf)), "21d");
    assert_string_equal(atls_duration_format(36 * 3600, buf, sizeof(buf)), "36h");
    assert_string_equal(atls_duration_format(90 * 60, buf, sizeof(buf)), "90m");
    assert_string_equal(atls_duration_format(45, buf, sizeof(buf)), "45s");
    assert_string_equal(atls_duration_format(0, buf, sizeof(buf)), "0s");
    assert_int_equal(atls_duration_parse("7d"), 7 * DAY);
    assert_int_equal(atls_duration_parse("90"), 90);
    assert_int_equal(atls_duration_parse("99999999999999999999d"), -1);
    assert_int_equal(atls_duration_parse("1w"), -1);
    assert_int_equal(atls_duration_parse("-1d"), -1);
    assert_int_equal(atls_duration_parse("1dd"), -1);
}

static void
test_warn_parse(void **state)
{
    const char *ok[] = { "1d", "21d", "12h", "7d" };
    const char *dup[] = { "1d", "24h" };
    const char *bad[] = { "7d", "soon" };
    const char *zero[] = { "0d" };
    const char *many[ATLS_WARN_MAX + 1];
    atls_warn_t w;
    char        err[256];
    size_t      i;

    (void) state;
    assert_int_equal(atls_warn_parse(ok, 4, &w, err, sizeof(err)), 0);
    assert_int_equal(w.n, 4);
    assert_int_equal(w.level[0], 21 * DAY);
    assert_int_equal(w.level[1], 7 * DAY);
    assert_int_equal(w.level[2], 1 * DAY);
    assert_int_equal(w.level[3], 12 * 3600);
    assert_int_equal(atls_warn_parse(dup, 2, &w, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "1d"));
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(atls_warn_parse(bad, 2, &w, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "\"soon\""));
    assert_int_equal(atls_warn_parse(zero, 1, &w, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "\"0d\""));
    assert_int_equal(atls_warn_parse(ok, 0, &w, err, sizeof(err)), -1);
    for (i = 0; i < ATLS_WARN_MAX + 1; i++) {
        many[i] = ok[0];
    }
    assert_int_equal(atls_warn_parse(many, ATLS_WARN_MAX + 1, &w, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "at most"));
    atls_warn_default(&w);
    assert_int_equal(w.n, 4);
    assert_int_equal(w.level[0], 21 * DAY);
    assert_int_equal(w.level[3], 1 * DAY);
}

static void
test_warn_level_next(void **state)
{
    atls_warn_t w, none;
    time_t      na = 1000 * DAY;

    (void) state;
    atls_warn_default(&w);
    memset(&none, 0, sizeof(none));     /* n 0: the defaults */
    assert_int_equal(atls_warn_level(&w, na, na - 30 * DAY), 0);
    assert_int_equal(atls_warn_next(&w, na, na - 30 * DAY), na - 21 * DAY);
    /* exactly at a level: reached */
    assert_int_equal(atls_warn_level(&w, na, na - 21 * DAY), 21 * DAY);
    assert_int_equal(atls_warn_next(&w, na, na - 21 * DAY), na - 7 * DAY);
    assert_int_equal(atls_warn_level(&w, na, na - 5 * DAY), 7 * DAY);
    assert_int_equal(atls_warn_level(&none, na, na - 5 * DAY), 7 * DAY);
    assert_int_equal(atls_warn_level(&w, na, na - 3600), 1 * DAY);
    assert_int_equal(atls_warn_next(&w, na, na - 3600), 0);
    /* expired: the caller emits `expired` */
    assert_int_equal(atls_warn_level(&w, na, na + 1), 0);
    assert_int_equal(atls_warn_next(&w, na, na + 1), 0);
}

/* ---- notification settings --------------------------------------------------- */

static void
check_fails(const atls_notify_conf_t *c, const char *needle)
{
    char err[512] = "";

    assert_int_equal(atls_notify_conf_check(c, err, sizeof(err)), -1);
    if (strstr(err, needle) == NULL) {
        fail_msg("\"%s\" not in \"%s\"", needle, err);
    }
}

static void
test_notify_conf_check(void **state)
{
    atls_notify_conf_t c;
    char               err[512];
    char              *hdr_ok[] = { "Authorization: Bearer abc", "X-A:b" };
    char              *hdr_crlf[] = { "X-Token: abc\r\nEvil: 1" };
    char              *hdr_name[] = { "Bad Name: x" };
    char              *hdr_nocolon[] = { "NoColon" };
    char              *many[ATLS_NOTIFY_MAX_HEADERS + 1];
    size_t             i;

    (void) state;
    memset(&c, 0, sizeof(c));
    assert_int_equal(atls_notify_conf_check(&c, err, sizeof(err)), 0);
    assert_false(atls_notify_conf_has_sinks(&c));
    assert_false(atls_notify_conf_has_sinks(NULL));

    c.exec = "/usr/bin/notify";
    c.webhook = "https://hooks.example:8443/p";
    c.headers = hdr_ok;
    c.n_headers = 2;
    assert_int_equal(atls_notify_conf_check(&c, err, sizeof(err)), 0);
    assert_true(atls_notify_conf_has_sinks(&c));

    c.exec = "notify";
    check_fails(&c, "\"notify\"");
    c.exec = "/usr/bin/notify";

    c.webhook = "ftp://x/";
    check_fails(&c, "ftp://x/");
    c.webhook = "https:///path";
    check_fails(&c, "no host");
    c.webhook = "http://user@/x";
    check_fails(&c, "no host");
    c.webhook = "http://a b/";
    check_fails(&c, "space");
    c.webhook = "http://127.0.0.1:9/hook";

    c.headers = hdr_crlf;
    c.n_headers = 1;
    check_fails(&c, "line break");
    /* the value (a token, perhaps) is never quoted */
    assert_int_equal(atls_notify_conf_check(&c, err, sizeof(err)), -1);
    assert_null(strstr(err, "abc"));
    c.headers = hdr_name;
    check_fails(&c, "header name");
    c.headers = hdr_nocolon;
    check_fails(&c, "Name: value");
    for (i = 0; i < ATLS_NOTIFY_MAX_HEADERS + 1; i++) {
        many[i] = hdr_ok[1];
    }
    c.headers = many;
    c.n_headers = ATLS_NOTIFY_MAX_HEADERS + 1;
    check_fails(&c, "at most");
    c.headers = hdr_ok;
    c.n_headers = 2;

    c.webhook = NULL;
    check_fails(&c, "without a webhook");
    c.webhook = "http://127.0.0.1:9/hook";

    c.warn.n = 2;
    c.warn.level[0] = DAY;
    c.warn.level[1] = 7 * DAY;
    check_fails(&c, "descending");
}

static void
test_notify_conf_json(void **state)
{
    atls_notify_conf_t c, back, copy;
    char              *hdr[] = { "X-Key: v" };
    const char        *lv[] = { "3d", "1h" };
    char               err[256], *s;

    (void) state;
    memset(&c, 0, sizeof(c));
    assert_int_equal(atls_warn_parse(lv, 2, &c.warn, err, sizeof(err)), 0);
    c.webhook = "http://127.0.0.1:1/x";
    c.headers = hdr;
    c.n_headers = 1;
    s = atls_notify_conf_to_json(&c);
    assert_non_null(s);
    assert_non_null(strstr(s, "\"3d\""));
    assert_int_equal(atls_notify_conf_from_json(s, strlen(s), &back, err, sizeof(err)), 0);
    assert_int_equal(back.warn.n, 2);
    assert_int_equal(back.warn.level[1], 3600);
    assert_null(back.exec);
    assert_string_equal(back.headers[0], "X-Key: v");
    atls_notify_conf_copy(&copy, &back);
    atls_notify_conf_free(&back);
    assert_string_equal(copy.webhook, "http://127.0.0.1:1/x");
    assert_string_equal(copy.headers[0], "X-Key: v");
    atls_notify_conf_free(&copy);
    free(s);

    assert_int_equal(atls_notify_conf_from_json("{\"warn\":[\"x\"]}", 14, &back, err,
                                                sizeof(err)), -1);
    assert_non_null(strstr(err, "warn"));
    assert_int_equal(atls_notify_conf_from_json("{\"queue_max\":\"a\"}", 17, &back, err,
                                                sizeof(err)), -1);
    assert_non_null(strstr(err, "queue_max"));
    assert_int_equal(atls_notify_conf_from_json("[]", 2, &back, err, sizeof(err)), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_round_trip),
        cmocka_unit_test(test_json_renewed),
        cmocka_unit_test(test_json_failed_expiring_revoked),
        cmocka_unit_test(test_actor_self),
        cmocka_unit_test(test_duration_format),
        cmocka_unit_test(test_warn_parse),
        cmocka_unit_test(test_warn_level_next),
        cmocka_unit_test(test_notify_conf_check),
        cmocka_unit_test(test_notify_conf_json),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
