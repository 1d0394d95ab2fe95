/*
 * The small guards against an untrusted CA and client: log escaping,
 * identifier syntax, URL origins, and the clamps on a CA's Retry-After.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "atls.h"
#include "atls_problem.h"
#include "atls_schedule.h"
#include "atls_store.h"

#define NOW 1700000000
#define DAY 86400

static void
assert_printable(const char *s)
{
    for (; *s != '\0'; s++) {
        if (!(*s >= 0x20 && *s < 0x7f)) {
            fail_msg("byte 0x%02x is not printable", (unsigned char) *s);
        }
    }
}

static void
test_log_escape(void **state)
{
    char out[64], small[12];

    (void) state;
    assert_string_equal(atls_log_escape("plain text: ok", out, sizeof(out)),
                        "plain text: ok");
    assert_string_equal(atls_log_escape("a\nb\r\tc", out, sizeof(out)),
                        "a\\x0ab\\x0d\\x09c");
    assert_string_equal(atls_log_escape("\x1b[31mred\x1b[0m", out, sizeof(out)),
                        "\\x1b[31mred\\x1b[0m");
    assert_string_equal(atls_log_escape("caf\xc3\xa9 \x7f", out, sizeof(out)),
                        "caf\\xc3\\xa9 \\x7f");
    /* the backslash itself, so "\x0a" in the CA's text is not a newline */
    assert_string_equal(atls_log_escape("a\\x0a", out, sizeof(out)), "a\\x5cx0a");
    assert_string_equal(atls_log_escape(NULL, out, sizeof(out)), "(null)");
    /* the cap: cut with "...", never in the middle of an escape */
    atls_log_escape("0123456789abcdef", small, sizeof(small));
    assert_string_equal(small, "01234567...");
    atls_log_escape("\n\n\n\n\n", small, sizeof(small));
    assert_int_equal(strlen(small), 11);
    assert_string_equal(small + 8, "...");
    assert_string_equal(atls_log_escape_mem("ab\0cd", 5, out, sizeof(out)), "ab\\x00cd");
}

static char captured[1024];

static void
capture(void *ctx, atls_log_level_t level, const char *msg)
{
    (void) ctx;
    (void) level;
    snprintf(captured, sizeof(captured), "%s", msg);
}

static void
test_log_line_scrubbed(void **state)
{
    (void) state;
    atls_log_set(capture, NULL, ATLS_LOG_DEBUG);
    atls_log(ATLS_LOG_WARN, "detail: %s", "x\nautotls: error: forged\x1b[2J\xff");
    atls_log_set(NULL, NULL, ATLS_LOG_INFO);
    assert_printable(captured);
    assert_string_equal(captured, "detail: x?autotls: error: forged?[2J?");
}

static void
test_error_detail_scrubbed(void **state)
{
    atls_error_t err;

    (void) state;
    /* our own messages quote the CA's URLs: no control byte survives */
    atls_error_set(&err, ATLS_ERR_PERMANENT, "autotls:test", "order %s failed",
                   "https://ca.test/o\r\n\x1b[2J1");
    assert_string_equal(err.detail, "order https://ca.test/o???[2J1 failed");
}

static void
test_problem_detail_escaped(void **state)
{
    const char  *j = "{\"type\":\"urn:ietf:params:acme:error:malformed\\n\","
                     "\"detail\":\"line1\\nline2 \\u001b[31m\\u00e9\","
                     "\"subproblems\":[{\"type\":\"x\",\"detail\":\"s\\r\\n\","
                     "\"identifier\":{\"type\":\"dns\",\"value\":\"a\\u0007.b\"}}]}";
    atls_error_t err;

    (void) state;
    atls_problem_from_json(j, strlen(j), 400, &err);
    assert_printable(err.type);
    assert_printable(err.detail);
    assert_string_equal(err.type, "urn:ietf:params:acme:error:malformed\\x0a");
    assert_non_null(strstr(err.detail, "line1\\x0aline2 \\x1b[31m\\xc3\\xa9"));
    assert_non_null(strstr(err.detail, "a\\x07.b"));
}

static void
test_ident_dns(void **state)
{
    static const char *const good[] = {
        "example.com", "a.b", "a-b.example.com", "xn--bcher-kva.example", "1.example",
        "EXAMPLE.com", "localhost",
    };
    static const char *const bad[] = {
        "", ".", "example.com.", ".example.com", "a..b", "-a.com", "a-.com",
        "exa mple.com", "ex_ample.com", "*.example.com", "a.*.com", "*", "exa\nmple.com",
        "b\xc3\xbc" "cher.example", "a/b.com", "a:b.com", "a@b.com",
    };
    char   label[64], name[400];
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!atls_ident_is_dns(good[i], 0)) {
            fail_msg("\"%s\" refused", good[i]);
        }
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (atls_ident_is_dns(bad[i], 0)) {
            fail_msg("\"%s\" accepted", bad[i]);
        }
    }
    assert_int_equal(atls_ident_is_dns(NULL, 1), 0);
    /* a wildcard only where asked for, only leading, only one */
    assert_int_equal(atls_ident_is_dns("*.example.com", 1), 1);
    assert_int_equal(atls_ident_is_dns("*.*.example.com", 1), 0);
    assert_int_equal(atls_ident_is_dns("*example.com", 1), 0);
    assert_int_equal(atls_ident_is_dns("*.", 1), 0);
    /* 63 bytes a label, 253 a name */
    memset(label, 'a', 63);
    label[63] = '\0';
    snprintf(name, sizeof(name), "%s.com", label);
    assert_int_equal(atls_ident_is_dns(name, 0), 1);
    snprintf(name, sizeof(name), "a%s.com", label);
    assert_int_equal(atls_ident_is_dns(name, 0), 0);
    snprintf(name, sizeof(name), "%s.%s.%s.%.61s", label, label, label, label);
    assert_int_equal(strlen(name), 253);
    assert_int_equal(atls_ident_is_dns(name, 0), 1);
    snprintf(name, sizeof(name), "%s.%s.%s.%.62s", label, label, label, label);
    assert_int_equal(atls_ident_is_dns(name, 0), 0);
}

static void
test_ident_ip(void **state)
{
    static const char *const good[] = { "127.0.0.1", "::1", "2001:db8::1", "0.0.0.0" };
    static const char *const bad[] = {
        "", "127.1", "1.2.3.4.5", "256.0.0.1", "::g", "[::1]", "127.0.0.1 ", "example.com",
        "1.2.3.4/8", "fe80::1%eth0",
    };
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(atls_ident_is_ip(good[i]), 1);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (atls_ident_is_ip(bad[i])) {
            fail_msg("\"%s\" accepted", bad[i]);
        }
    }
    assert_int_equal(atls_ident_ip_equal("::1", "0:0::1"), 1);
    assert_int_equal(atls_ident_ip_equal("2001:DB8::1", "2001:db8:0:0::1"), 1);
    assert_int_equal(atls_ident_ip_equal("127.0.0.1", "127.0.0.2"), 0);
    assert_int_equal(atls_ident_ip_equal("127.0.0.1", "::ffff:127.0.0.1"), 0);
    assert_int_equal(atls_ident_ip_equal("127.0.0.1", NULL), 0);
}

static void
test_url_same_origin(void **state)
{
    static const char *const same[] = {
        "https://ca.test/acme/order/1", "https://CA.TEST/x", "https://ca.test:443/x",
        "HTTPS://ca.test/x", "https://ca.test", "https://ca.test?x", "https://ca.test#f",
    };
    static const char *const foreign[] = {
        "http://ca.test/x", "https://ca.test:8443/x", "https://evil.test/x",
        "https://ca.test@evil.test/x", "https://u:p@ca.test/x", "https://ca.test.evil.test/x",
        "https://ca.testx/x", "//ca.test/x", "/acme/x", "ca.test/x", "https://", "",
        "https://ca.test:/x", "https://ca.test:44a/x", "ftp://ca.test/x",
    };
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        if (!atls_url_same_origin("https://ca.test/dir", same[i])) {
            fail_msg("\"%s\" refused", same[i]);
        }
    }
    for (i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
        if (atls_url_same_origin("https://ca.test/dir", foreign[i])) {
            fail_msg("\"%s\" accepted", foreign[i]);
        }
    }
    assert_int_equal(atls_url_same_origin(NULL, "https://ca.test/"), 0);
    assert_int_equal(atls_url_same_origin("https://ca.test/dir", NULL), 0);
    /* Pebble's shape: everything on one https://127.0.0.1:PORT */
    assert_int_equal(atls_url_same_origin("https://127.0.0.1:14000/dir",
                                          "https://127.0.0.1:14000/order/abc"), 1);
    assert_int_equal(atls_url_same_origin("https://127.0.0.1:14000/dir",
                                          "https://127.0.0.1:15000/order/abc"), 0);
    assert_int_equal(atls_url_same_origin("https://127.0.0.1:14000/dir",
                                          "https://127.0.0.2:14000/order/abc"), 0);
    assert_int_equal(atls_url_same_origin("https://[::1]:14000/dir",
                                          "https://[::1]:14000/x"), 1);
    assert_int_equal(atls_url_same_origin("https://[::1]:14000/dir",
                                          "https://[::2]:14000/x"), 0);
    /* an http directory is never an origin for anything (the test option
     * lifts the whole check instead) */
    assert_int_equal(atls_url_same_origin("http://ca.test/dir", "http://ca.test/x"), 0);
}

static void
test_backoff_retry_after_capped(void **state)
{
    time_t next;

    (void) state;
    /* a year-long Retry-After is honoured only up to the day-long cap */
    next = atls_schedule_backoff(1, NOW, NOW + 365L * DAY, 0);
    assert_true(next <= NOW + DAY);
    assert_true(next >= NOW + DAY - 1);
    /* a short one still wins over a shorter backoff */
    assert_int_equal(atls_schedule_backoff(1, NOW, NOW + 3600, 0), NOW + 3600);
}

static void
test_retry_before_expiry(void **state)
{
    (void) state;
    /* half of the time left */
    assert_int_equal(atls_schedule_before_expiry(NOW + DAY, NOW, NOW + 10 * 3600),
                     NOW + 5 * 3600);
    /* an earlier attempt is left alone */
    assert_int_equal(atls_schedule_before_expiry(NOW + 60, NOW, NOW + 10 * 3600),
                     NOW + 60);
    /* no current certificate, or already expired: unchanged */
    assert_int_equal(atls_schedule_before_expiry(NOW + DAY, NOW, 0), NOW + DAY);
    assert_int_equal(atls_schedule_before_expiry(NOW + DAY, NOW, NOW - 1), NOW + DAY);
    /* close to expiry: not sooner than a minute */
    assert_int_equal(atls_schedule_before_expiry(NOW + DAY, NOW, NOW + 30), NOW + 60);
}

/* The test-only switch that lifts the URL-origin check never travels
 * through meta.json: the worker user owns that file. */
static void
test_insecure_urls_not_stored(void **state)
{
    static const char planted[] =
        "{\"names\":[\"a.example\"],\"issuer\":{\"insecure_ca_urls\":true}}";
    atls_cert_meta_t m;
    char             err[256], *json;

    (void) state;
    memset(&m, 0, sizeof(m));
    assert_int_equal(atls_cert_meta_from_json(planted, strlen(planted), &m,
                                              err, sizeof(err)), 0);
    assert_int_equal(m.issuer.insecure_ca_urls, 0);
    m.issuer.insecure_ca_urls = 1;
    json = atls_cert_meta_to_json(&m);
    assert_non_null(json);
    assert_null(strstr(json, "insecure"));
    free(json);
    atls_cert_meta_free(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_escape),
        cmocka_unit_test(test_log_line_scrubbed),
        cmocka_unit_test(test_error_detail_scrubbed),
        cmocka_unit_test(test_problem_detail_escaped),
        cmocka_unit_test(test_ident_dns),
        cmocka_unit_test(test_ident_ip),
        cmocka_unit_test(test_url_same_origin),
        cmocka_unit_test(test_backoff_retry_after_capped),
        cmocka_unit_test(test_retry_before_expiry),
        cmocka_unit_test(test_insecure_urls_not_stored),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
