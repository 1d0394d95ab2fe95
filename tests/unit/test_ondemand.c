/* The on-demand gate: the order of checks, patterns, the allow file, the
 * verdict cache (its times and its bound), the ask URL, the budgets and
 * their windows in the store, the settings' JSON and the children's
 * requests. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_ondemand.h"
#include "atls_store.h"
#include "ondemand_int.h"
#include "support/logcap.h"
#include "support/storefx.h"

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, storefx_setup, storefx_teardown)
#define T0 ((time_t) 1700000000)

static char *deny_list[] = { "bad.example.com", "*.evil.example.com" };
static char *allow_list[] = { "bad.example.com", "good.example.com", "*.shop.example.org",
                              "~^store[0-9]+\\.example\\.net$" };

static atls_od_t *
gate(atls_od_conf_t *c, atls_store_t *st)
{
    char       err[512] = "";
    atls_od_t *od = atls_od_new(c, st, err, sizeof(err));

    if (od == NULL) {
        fail_msg("atls_od_new: %s", err);
    }
    return od;
}

static atls_od_verdict_t
check_at(atls_od_t *od, const char *name, time_t now, char *out, char *why)
{
    return atls_od_check(od, name, strlen(name), now, out, why, 256);
}

static void
expect(atls_od_t *od, const char *name, time_t now, atls_od_verdict_t want,
       const char *why_part)
{
    char out[254], why[256] = "";
    atls_od_verdict_t v = check_at(od, name, now, out, why);

    if (v != want || (why_part != NULL && strstr(why, why_part) == NULL)) {
        fail_msg("%s: %s (%s), wanted %s with \"%s\"", name, atls_od_verdict_name(v), why,
                 atls_od_verdict_name(want), why_part ? why_part : "");
    }
}

static void
answer(atls_od_t *od, const char *name, long status, time_t now)
{
    atls_http_response_t resp;
    char                 why[256];

    memset(&resp, 0, sizeof(resp));
    resp.status = status;
    resp.transport_error = status == 0;
    if (status == 0) {
        snprintf(resp.error, sizeof(resp.error), "Connection refused");
    }
    (void) atls_od_ask_done(od, name, &resp, now, why, sizeof(why));
}

/* ---- the order of checks ------------------------------------------------------ */

static void
test_order_of_checks(void **state)
{
    atls_od_conf_t c;
    atls_od_t     *od;
    char           out[254], why[256];

    (void) state;
    memset(&c, 0, sizeof(c));
    c.deny = deny_list;
    c.n_deny = 2;
    c.allow = allow_list;
    c.n_allow = 4;
    c.ask_url = "https://ask.test/check";
    c.max_labels = 4;
    od = gate(&c, NULL);

    /* 1. syntax: before any list is looked at */
    expect(od, "a..example.com", T0, ATLS_OD_INVALID, "empty label");
    expect(od, "127.0.0.1", T0, ATLS_OD_INVALID, NULL);
    expect(od, "a.b.c.good.example.com", T0, ATLS_OD_INVALID, "labels");
    expect(od, "*.good.example.com", T0, ATLS_OD_INVALID, NULL);
    assert_int_equal(atls_od_check(od, "good.example.com\0x", 18, T0, out, why, sizeof(why)),
                     ATLS_OD_INVALID);
    assert_int_equal(atls_od_check(od, "good.example.com", 16, T0, out, why, sizeof(why)),
                     ATLS_OD_ALLOW);
    /* folded, one trailing dot dropped */
    assert_int_equal(check_at(od, "GOOD.Example.COM.", T0, out, why), ATLS_OD_ALLOW);
    assert_string_equal(out, "good.example.com");

    /* 2. the deny list wins over the allow list */
    expect(od, "bad.example.com", T0, ATLS_OD_DENY, "deny list");
    expect(od, "x.evil.example.com", T0, ATLS_OD_DENY, "deny list");

    /* the cooldown after a failed order, then allowed again */
    atls_od_failed(od, "good.example.com", T0);
    expect(od, "good.example.com", T0 + 10, ATLS_OD_LIMITED, "cooldown");
    expect(od, "bad.example.com", T0 + 10, ATLS_OD_DENY, "deny list");

    /* 3. a cached answer of the ask URL before 4. the allow list */
    answer(od, "store1.example.net", 403, T0);
    expect(od, "store1.example.net", T0 + 1, ATLS_OD_DENY, "HTTP 403 (cached)");
    expect(od, "store2.example.net", T0 + 1, ATLS_OD_ALLOW, "allow list");

    /* 5. the ask URL for the rest, 6. default deny without one */
    expect(od, "other.example.com", T0, ATLS_OD_ASK, "ask URL");
    atls_od_free(od);
    c.ask_url = NULL;
    od = gate(&c, NULL);
    expect(od, "other.example.com", T0, ATLS_OD_DENY, "default deny");
    expect(od, "good.example.com", T0, ATLS_OD_ALLOW, NULL);
    atls_od_free(od);

    /* IP literals only when allowed */
    c.allow_ip = 1;
    c.allow = (char *[]) { "127.0.0.1" };
    c.n_allow = 1;
    od = gate(&c, NULL);
    expect(od, "127.0.0.1", T0, ATLS_OD_ALLOW, NULL);
    expect(od, "127.0.0.2", T0, ATLS_OD_DENY, "default deny");
    atls_od_free(od);

    /* an IPv6 address has one name whatever its spelling: the deny list,
     * the cache and the cooldown are not passed by writing it another way */
    c.deny = (char *[]) { "2001:db8:0:0::1" };
    c.n_deny = 1;
    c.allow = (char *[]) { "~.*" };
    od = gate(&c, NULL);
    expect(od, "2001:DB8::1", T0, ATLS_OD_DENY, "deny list");
    expect(od, "2001:db8:0:0:0:0:0:1", T0, ATLS_OD_DENY, "deny list");
    assert_int_equal(check_at(od, "2001:db8:0:0::2", T0, out, why), ATLS_OD_ALLOW);
    assert_string_equal(out, "2001:db8::2");
    atls_od_failed(od, "2001:db8::2", T0);
    expect(od, "2001:0db8:0::2", T0 + 10, ATLS_OD_LIMITED, "cooldown");
    atls_od_free(od);
}

static void
test_patterns(void **state)
{
    atls_od_conf_t c;
    atls_od_t     *od;
    char           err[512];

    (void) state;
    memset(&c, 0, sizeof(c));
    c.allow = allow_list;
    c.n_allow = 4;
    od = gate(&c, NULL);
    /* exact */
    expect(od, "good.example.com", T0, ATLS_OD_ALLOW, NULL);
    expect(od, "www.good.example.com", T0, ATLS_OD_DENY, NULL);
    /* "*.suffix": any depth below, never the suffix itself */
    expect(od, "a.shop.example.org", T0, ATLS_OD_ALLOW, NULL);
    expect(od, "a.b.shop.example.org", T0, ATLS_OD_ALLOW, NULL);
    expect(od, "shop.example.org", T0, ATLS_OD_DENY, NULL);
    expect(od, "xshop.example.org", T0, ATLS_OD_DENY, NULL);
    /* "~regex", anchored as written, case-folded name */
    expect(od, "store42.example.net", T0, ATLS_OD_ALLOW, NULL);
    expect(od, "STORE7.example.net", T0, ATLS_OD_ALLOW, NULL);
    expect(od, "store.example.net", T0, ATLS_OD_DENY, NULL);
    expect(od, "x.store1.example.net", T0, ATLS_OD_DENY, NULL);
    atls_od_free(od);

    /* refused patterns name the setting and the pattern */
    c.n_allow = 1;
    c.allow = (char *[]) { "~((a{30}){30}){30}" };
    assert_null(atls_od_new(&c, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "allow"));
    assert_non_null(strstr(err, "regex refused"));
    c.allow = (char *[]) { "~(a)\\1" };
    assert_null(atls_od_new(&c, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "back-references"));
    c.allow = (char *[]) { "~[a-" };
    assert_null(atls_od_new(&c, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "not a POSIX extended regex"));
    c.allow = NULL;
    c.n_allow = 0;
    c.deny = (char *[]) { "exa mple.com" };
    c.n_deny = 1;
    assert_null(atls_od_new(&c, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "deny"));
    assert_non_null(strstr(err, "exa mple.com"));
    c.deny = (char *[]) { "*.com" };
    od = gate(&c, NULL);
    expect(od, "example.com", T0, ATLS_OD_DENY, "deny list");
    atls_od_free(od);
}

/* ---- the allow file ------------------------------------------------------------ */

static void
write_file(const char *path, const char *text, time_t mtime)
{
    struct timespec ts[2];
    FILE           *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    /* an explicit mtime: the re-read must not depend on the clock's grain */
    ts[0].tv_sec = ts[1].tv_sec = mtime;
    ts[0].tv_nsec = ts[1].tv_nsec = 0;
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void
test_allow_file(void **state)
{
    storefx_t      *fx = *state;
    atls_od_conf_t  c;
    atls_od_t      *od;
    char            path[256], err[512];

    snprintf(path, sizeof(path), "%s/allow.txt", fx->dir);
    write_file(path, "# customers\na.example.com\n\n  *.b.example.com  \n", T0);
    memset(&c, 0, sizeof(c));
    c.allow_file = path;
    od = gate(&c, NULL);
    expect(od, "a.example.com", T0, ATLS_OD_ALLOW, "allow file");
    expect(od, "x.b.example.com", T0, ATLS_OD_ALLOW, NULL);
    expect(od, "c.example.com", T0, ATLS_OD_DENY, NULL);

    /* rewritten: read again when its mtime moved, at most once a second */
    write_file(path, "a.example.com\nc.example.com\n", T0 + 5);
    expect(od, "c.example.com", T0, ATLS_OD_DENY, NULL);
    expect(od, "c.example.com", T0 + 1, ATLS_OD_ALLOW, "allow file");
    expect(od, "x.b.example.com", T0 + 1, ATLS_OD_DENY, NULL);

    /* a broken file keeps the list read before, and says where */
    logcap_start(ATLS_LOG_ERR);
    write_file(path, "a.example.com\nnot a name\n", T0 + 9);
    expect(od, "c.example.com", T0 + 2, ATLS_OD_ALLOW, NULL);
    logcap_stop();
    assert_int_equal(logcap_count("allow.txt:2"), 1);
    /* once: the same broken file is not read every second */
    logcap_start(ATLS_LOG_ERR);
    expect(od, "c.example.com", T0 + 3, ATLS_OD_ALLOW, NULL);
    logcap_stop();
    assert_int_equal(logcap_count("allow.txt"), 0);

    /* gone: nothing from it is allowed */
    unlink(path);
    expect(od, "a.example.com", T0 + 4, ATLS_OD_DENY, NULL);
    atls_od_free(od);

    /* at start, a missing or broken file is an error naming it */
    assert_null(atls_od_new(&c, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "allow.txt"));
    write_file(path, "ok.example.com\n~(a\n", T0);
    assert_null(atls_od_new(&c, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "allow.txt:2"));
    c.allow_file = "relative.txt";
    assert_null(atls_od_new(&c, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "allow_file"));
}

/* ---- the verdict cache ------------------------------------------------------------ */

static void
test_cache_ttls(void **state)
{
    atls_od_conf_t c;
    atls_od_t     *od;

    (void) state;
    memset(&c, 0, sizeof(c));
    c.ask_url = "https://ask.test/";
    c.ask_cache_s = 100;
    c.ask_fail_cache_s = 10;
    od = gate(&c, NULL);

    answer(od, "yes.example.com", 200, T0);
    expect(od, "yes.example.com", T0 + 99, ATLS_OD_ALLOW, "HTTP 200 (cached)");
    expect(od, "yes.example.com", T0 + 100, ATLS_OD_ASK, NULL);

    answer(od, "no.example.com", 403, T0);
    expect(od, "no.example.com", T0 + 99, ATLS_OD_DENY, "HTTP 403");
    expect(od, "no.example.com", T0 + 100, ATLS_OD_ASK, NULL);

    /* failures are retried soon: no answer, 5xx, a redirect, 429 */
    answer(od, "down.example.com", 0, T0);
    expect(od, "down.example.com", T0 + 9, ATLS_OD_DENY, "could not be reached");
    expect(od, "down.example.com", T0 + 10, ATLS_OD_ASK, NULL);
    answer(od, "err.example.com", 500, T0);
    expect(od, "err.example.com", T0 + 9, ATLS_OD_DENY, "HTTP 500");
    expect(od, "err.example.com", T0 + 10, ATLS_OD_ASK, NULL);
    answer(od, "moved.example.com", 302, T0);
    expect(od, "moved.example.com", T0 + 10, ATLS_OD_ASK, NULL);
    answer(od, "busy.example.com", 429, T0);
    expect(od, "busy.example.com", T0 + 10, ATLS_OD_ASK, NULL);
    atls_od_free(od);
}

static void
random_name(char *buf, size_t len)
{
    static const char alpha[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    size_t            i, n = 8 + (size_t) (rand() % 20);

    for (i = 0; i < n && i + 14 < len; i++) {
        buf[i] = alpha[rand() % 36];
    }
    snprintf(buf + i, len - i, ".flood.test");
}

static void
test_cache_bound(void **state)
{
    atls_od_conf_t  c;
    atls_od_t      *od;
    struct mallinfo2 before, after;
    char            name[64], out[254], why[256];
    int             i;

    (void) state;
    memset(&c, 0, sizeof(c));
    c.ask_url = "https://ask.test/";
    c.cache_entries = 1000;
    od = gate(&c, NULL);
    srand(7);
    answer(od, "hot.example.com", 403, T0);
    answer(od, "cold.example.com", 403, T0);
    before = mallinfo2();
    for (i = 0; i < 100000; i++) {
        random_name(name, sizeof(name));
        assert_int_equal(check_at(od, name, T0, out, why), ATLS_OD_ASK);
        answer(od, out, 403, T0);
        if (i % 100 == 0) {
            /* kept in use: never the least recently used */
            expect(od, "hot.example.com", T0, ATLS_OD_DENY, "cached");
        }
    }
    after = mallinfo2();
    assert_true(od_cache_count(od->verdicts) <= 1000);
    /* 100,000 entries would take megabytes; the bound keeps ~1000 */
    if (after.uordblks > before.uordblks + 512 * 1024) {
        fail_msg("the cache grew by %zu bytes", after.uordblks - before.uordblks);
    }
    expect(od, "hot.example.com", T0, ATLS_OD_DENY, "cached");
    expect(od, "cold.example.com", T0, ATLS_OD_ASK, NULL);   /* evicted */
    atls_od_free(od);
}

/* ---- the ask URL -------------------------------------------------------------------- */

static void
ask_url_is(const char *ask, const char *name, const char *want)
{
    atls_od_conf_t      c;
    atls_od_t          *od;
    atls_http_request_t req;
    atls_http_opts_t    o;

    memset(&c, 0, sizeof(c));
    c.ask_url = (char *) ask;
    c.ask_timeout_ms = 1500;
    od = gate(&c, NULL);
    assert_int_equal(atls_od_ask_request(od, name, &req, &o), 0);
    assert_string_equal(req.method, "GET");
    assert_null(req.body);
    assert_string_equal(req.url, want);
    assert_int_equal(o.total_timeout_ms, 1500);
    assert_int_equal(o.connect_timeout_ms, 1500);
    atls_http_request_free(&req);
    atls_od_free(od);
}

static void
test_ask_request(void **state)
{
    atls_od_conf_t      c;
    atls_od_t          *od;
    atls_http_request_t req;
    atls_http_opts_t    o;
    char                err[512];

    (void) state;
    ask_url_is("https://ask.test/check", "a.example.com",
               "https://ask.test/check?domain=a.example.com");
    ask_url_is("https://ask.test/check?key=1", "a.example.com",
               "https://ask.test/check?key=1&domain=a.example.com");
    ask_url_is("http://ask.test/c?", "a.example.com",
               "http://ask.test/c?domain=a.example.com");
    /* anything but unreserved bytes is escaped (an IPv6 literal's colons) */
    ask_url_is("https://ask.test/", "2001:db8::1",
               "https://ask.test/?domain=2001%3Adb8%3A%3A1");
    ask_url_is("https://ask.test/", "a&b=c#d", "https://ask.test/?domain=a%26b%3Dc%23d");

    memset(&c, 0, sizeof(c));
    od = gate(&c, NULL);
    assert_int_equal(atls_od_ask_request(od, "a.example.com", &req, &o), -1);
    assert_int_equal(atls_od_conf(od)->ask_timeout_ms, 2000);   /* the default */
    atls_od_free(od);
    c.ask_url = "ftp://ask.test/";
    assert_null(atls_od_new(&c, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "ask_url"));
    c.ask_url = "https://ask.test/#frag";
    assert_null(atls_od_new(&c, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "ask_url"));
}

static atls_od_verdict_t
ask_answer(atls_od_t *od, const char *name, long status, char *why)
{
    atls_http_response_t resp;

    memset(&resp, 0, sizeof(resp));
    resp.status = status;
    if (status == 0) {
        resp.transport_error = 1;
        snprintf(resp.error, sizeof(resp.error), "Connection timed out");
    }
    return atls_od_ask_done(od, name, &resp, T0, why, 256);
}

static void
test_ask_answers(void **state)
{
    atls_od_conf_t c;
    atls_od_t     *od;
    char           why[256];

    (void) state;
    memset(&c, 0, sizeof(c));
    c.ask_url = "https://ask.test/";
    od = gate(&c, NULL);
    assert_int_equal(ask_answer(od, "a.example.com", 200, why), ATLS_OD_ALLOW);
    assert_int_equal(ask_answer(od, "b.example.com", 204, why), ATLS_OD_ALLOW);
    assert_int_equal(ask_answer(od, "c.example.com", 403, why), ATLS_OD_DENY);
    assert_non_null(strstr(why, "403"));
    assert_int_equal(ask_answer(od, "d.example.com", 500, why), ATLS_OD_DENY);
    assert_int_equal(ask_answer(od, "e.example.com", 301, why), ATLS_OD_DENY);
    assert_int_equal(ask_answer(od, "f.example.com", 0, why), ATLS_OD_DENY);
    assert_non_null(strstr(why, "Connection timed out"));
    assert_int_equal(atls_od_ask_done(od, "g.example.com", NULL, T0, why, sizeof(why)),
                     ATLS_OD_DENY);
    atls_od_free(od);
}

/* ---- budgets ----------------------------------------------------------------------- */

#define DIR1 "https://ca.test/dir"
#define DIR2 "https://other-ca.test/dir"

static int
take(atls_od_t *od, const char *name, const char *dir, time_t now, char *why,
     time_t *retry_at)
{
    return atls_od_budget_take(od, name, dir, now, why, 256, retry_at);
}

static void
test_budgets(void **state)
{
    atls_od_conf_t c;
    atls_od_t     *od;
    char           why[256];
    time_t         retry, now = time(NULL);

    (void) state;
    memset(&c, 0, sizeof(c));
    c.orders_per_min = 2;
    od = gate(&c, NULL);
    assert_int_equal(take(od, "a.example.com", DIR1, now, why, &retry), 0);
    assert_int_equal(take(od, "b.example.com", DIR1, now + 1, why, &retry), 0);
    assert_int_equal(take(od, "c.example.com", DIR1, now + 2, why, &retry), -1);
    assert_string_equal(why, "on_demand_orders_per_min 2 reached");
    assert_int_equal(retry, now + 60);
    assert_int_equal(take(od, "c.example.com", DIR1, now + 60, why, &retry), 0);
    atls_od_free(od);

    c.orders_per_min = 1000;
    c.per_account_3h = 2;
    od = gate(&c, NULL);
    assert_int_equal(take(od, "a.example.com", DIR1, now, why, &retry), 0);
    assert_int_equal(take(od, "b.example.org", DIR1, now, why, &retry), 0);
    assert_int_equal(take(od, "c.example.net", DIR1, now, why, &retry), -1);
    assert_non_null(strstr(why, "on_demand_per_account_3h 2 reached for " DIR1));
    assert_int_equal(retry, now + 3 * 3600);
    assert_int_equal(take(od, "c.example.net", DIR2, now, why, &retry), 0);
    assert_int_equal(take(od, "d.example.net", DIR1, now + 3 * 3600, why, &retry), 0);
    atls_od_free(od);

    /* per registered domain, with the public suffix list */
    c.per_account_3h = 0;
    c.per_domain_week = 2;
    od = gate(&c, NULL);
    assert_int_equal(take(od, "a.b.example.co.uk", DIR1, now, why, &retry), 0);
    assert_int_equal(take(od, "c.example.co.uk", DIR1, now, why, &retry), 0);
    assert_int_equal(take(od, "example.co.uk", DIR1, now, why, &retry), -1);
    assert_string_equal(why, "on_demand_per_domain_week 2 reached for example.co.uk");
    assert_int_equal(retry, now + 7 * 86400);
    assert_int_equal(take(od, "other.co.uk", DIR1, now, why, &retry), 0);
    assert_int_equal(take(od, "x.example.com", DIR1, now, why, &retry), 0);

    /* the cooldown after a failed order */
    atls_od_failed(od, "y.example.com", now);
    assert_int_equal(take(od, "y.example.com", DIR1, now + 1, why, &retry), -1);
    assert_non_null(strstr(why, "on_demand_cooldown 3600"));
    assert_int_equal(retry, now + 3600);
    assert_int_equal(take(od, "y.example.com", DIR1, now + 3600, why, &retry), 0);
    atls_od_free(od);
}

static void
domain_is(const char *name, const char *want)
{
    char out[254];

    assert_int_equal(atls_od_registered_domain(name, out, sizeof(out)), 0);
    assert_string_equal(out, want);
}

static void
test_registered_domain(void **state)
{
    char out[8];

    (void) state;
    domain_is("a.b.example.co.uk", "example.co.uk");
    domain_is("example.co.uk", "example.co.uk");
    domain_is("www.example.com", "example.com");
    domain_is("x.y.example.com.au", "example.com.au");
    domain_is("co.uk", "co.uk");                /* a suffix: itself */
    domain_is("192.0.2.7", "192.0.2.7");
    domain_is("2001:db8::1", "2001:db8::1");
    assert_int_equal(atls_od_registered_domain("www.example.com", out, sizeof(out)), -1);
}

static void
test_budget_persisted(void **state)
{
    storefx_t     *fx = *state;
    atls_od_conf_t c;
    atls_od_t     *od;
    char           why[256];
    time_t         retry, now = time(NULL);

    memset(&c, 0, sizeof(c));
    c.orders_per_min = 2;
    c.per_domain_week = 3;
    od = gate(&c, fx->st);
    assert_int_equal(take(od, "a.example.com", DIR1, now, why, &retry), 0);
    assert_int_equal(take(od, "b.example.com", DIR1, now, why, &retry), 0);
    atls_od_failed(od, "c.example.org", now);
    atls_od_free(od);
    assert_int_equal(access(storefx_path(fx, "ondemand/budget.json"), F_OK), 0);

    /* a new gate (a restart) over the same store: nothing reset */
    od = gate(&c, fx->st);
    expect(od, "c.example.org", now + 1, ATLS_OD_LIMITED, "cooldown");
    assert_int_equal(take(od, "d.example.net", DIR1, now + 1, why, &retry), -1);
    assert_string_equal(why, "on_demand_orders_per_min 2 reached");
    assert_int_equal(take(od, "c.example.com", DIR1, now + 61, why, &retry), 0);
    assert_int_equal(take(od, "e.example.com", DIR1, now + 122, why, &retry), -1);
    assert_string_equal(why, "on_demand_per_domain_week 3 reached for example.com");
    atls_od_free(od);

    /* a file that is not JSON: logged, empty windows */
    {
        FILE *f = fopen(storefx_path(fx, "ondemand/budget.json"), "w");

        assert_non_null(f);
        fputs("{not json", f);
        fclose(f);
    }
    logcap_start(ATLS_LOG_ERR);
    od = gate(&c, fx->st);
    logcap_stop();
    assert_int_equal(logcap_count("budget.json"), 1);
    assert_int_equal(take(od, "e.example.com", DIR1, now + 122, why, &retry), 0);
    atls_od_free(od);

    /* orders dated far in the future (the file is the worker's, or
     * another node's through Redis) fill no window: they would stop every
     * order until then */
    {
        FILE *f = fopen(storefx_path(fx, "ondemand/budget.json"), "w");
        long  far = (long) now + 30L * 86400;

        assert_non_null(f);
        fprintf(f, "{\"minute\": [%ld, %ld], \"domains\": {\"example.com\": [%ld, "
                "%ld, %ld]}, \"accounts\": {}, \"cooldown\": {}}", far, far, far, far,
                far);
        fclose(f);
    }
    od = gate(&c, fx->st);
    assert_int_equal(take(od, "f.example.com", DIR1, now + 200, why, &retry), 0);
    atls_od_free(od);
}

/* ---- settings as JSON ---------------------------------------------------------------- */

static void
conf_bad(const char *json, const char *field)
{
    atls_od_conf_t c;
    char           err[512] = "";

    if (atls_od_conf_from_json(json, strlen(json), &c, err, sizeof(err)) == 0) {
        fail_msg("accepted: %s", json);
    }
    if (strstr(err, field) == NULL) {
        fail_msg("%s: \"%s\" does not name %s", json, err, field);
    }
}

static void
test_conf_json(void **state)
{
    atls_od_conf_t c, d;
    char          *json, *again, err[512];

    (void) state;
    memset(&c, 0, sizeof(c));
    c.deny = deny_list;
    c.n_deny = 2;
    c.allow = allow_list;
    c.n_allow = 4;
    c.allow_file = "/etc/autotls/allow.txt";
    c.ask_url = "https://ask.test/check";
    c.ask_timeout_ms = 1500;
    c.orders_per_min = 5;
    c.per_domain_week = 20;
    c.max_pending = 7;
    c.cache_entries = 500;
    c.allow_ip = 1;
    c.max_labels = 6;
    c.wait_ms = 3000;
    json = atls_od_conf_to_json(&c);
    assert_non_null(json);
    assert_int_equal(atls_od_conf_from_json(json, strlen(json), &d, err, sizeof(err)), 0);
    assert_int_equal(d.n_allow, 4);
    assert_string_equal(d.allow[3], allow_list[3]);
    assert_string_equal(d.deny[1], "*.evil.example.com");
    assert_string_equal(d.ask_url, c.ask_url);
    assert_int_equal(d.max_pending, 7);
    assert_int_equal(d.allow_ip, 1);
    assert_int_equal(d.max_labels, 6);
    assert_int_equal(d.ask_cache_s, 0);     /* left out: the default */
    again = atls_od_conf_to_json(&d);
    assert_string_equal(json, again);
    free(json);
    free(again);
    atls_od_conf_free(&d);

    conf_bad("[]", "JSON object");
    conf_bad("{\"orders_per_minute\": 3}", "\"orders_per_minute\"");
    conf_bad("{\"orders_per_min\": -1}", "\"orders_per_min\"");
    conf_bad("{\"max_pending\": \"10\"}", "\"max_pending\"");
    conf_bad("{\"allow\": \"a.example.com\"}", "\"allow\"");
    conf_bad("{\"deny\": [1]}", "deny");
    conf_bad("{\"ask_url\": \"gopher://x\"}", "\"ask_url\"");
    conf_bad("{\"max_labels\": 500}", "\"max_labels\"");
    conf_bad("{\"allow_ip\": 1}", "\"allow_ip\"");
    conf_bad("{\"allow_file\": \"rel/path\"}", "\"allow_file\"");
}

/* ---- requests between processes -------------------------------------------------------- */

static void
test_requests(void **state)
{
    storefx_t       *fx = *state;
    atls_od_entry_t *v, e;
    size_t           n;
    char             err[512];
    time_t           now = time(NULL);
    FILE            *f;

    assert_int_equal(atls_od_request_put(fx->st, "A.example.com", "shop", 2, now, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_od_request_put(fx->st, "b.example.com", NULL, 2, now, err,
                                         sizeof(err)), ATLS_STORE_OK);
    /* asked already: nothing new, no error */
    assert_int_equal(atls_od_request_put(fx->st, "a.example.com", "shop", 2, now, err,
                                         sizeof(err)), ATLS_STORE_OK);
    /* the bound of pending requests */
    assert_int_equal(atls_od_request_put(fx->st, "c.example.com", NULL, 2, now, err,
                                         sizeof(err)), ATLS_STORE_BUSY);
    assert_non_null(strstr(err, "max_pending 2"));
    assert_int_equal(atls_od_request_put(fx->st, "bad..name", NULL, 2, now, err,
                                         sizeof(err)), ATLS_STORE_ERROR);

    assert_int_equal(atls_od_request_get(fx->st, "a.example.com", &e, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_string_equal(e.name, "a.example.com");
    assert_string_equal(e.home, "shop");
    assert_string_equal(e.state, "requested");
    assert_int_equal(e.at, now);
    free(e.name);
    free(e.home);
    free(e.state);

    /* the scheduler's answer frees a pending place */
    assert_int_equal(atls_od_answer_put(fx->st, "b.example.com", "denied", now + 60,
                                        "the ask URL answered HTTP 403", err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_od_request_put(fx->st, "c.example.com", NULL, 2, now, err,
                                         sizeof(err)), ATLS_STORE_OK);
    /* a valid answer is not replaced by a new request */
    assert_int_equal(atls_od_request_put(fx->st, "b.example.com", NULL, 3, now, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_od_answer_put(fx->st, "a.example.com", "maybe", 0, NULL, err,
                                        sizeof(err)), ATLS_STORE_ERROR);

    /* a hostile entry (another name than its file's) is skipped */
    f = fopen(storefx_path(fx, "ondemand/evil.example.com.json"), "w");
    assert_non_null(f);
    fputs("{\"name\":\"other.example.com\",\"state\":\"requested\"}", f);
    fclose(f);
    logcap_start(ATLS_LOG_WARN);
    assert_int_equal(atls_od_request_list(fx->st, &v, &n, err, sizeof(err)), ATLS_STORE_OK);
    logcap_stop();
    assert_int_equal(logcap_count("evil.example.com.json"), 1);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].name, "a.example.com");
    assert_string_equal(v[1].name, "b.example.com");
    assert_string_equal(v[1].state, "denied");
    assert_int_equal(v[1].until, now + 60);
    assert_string_equal(v[1].why, "the ask URL answered HTTP 403");
    assert_string_equal(v[2].state, "requested");
    atls_od_entries_free(v, n);

    assert_int_equal(atls_od_request_del(fx->st, "a.example.com", err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_od_request_get(fx->st, "a.example.com", &e, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_of_checks),
        cmocka_unit_test(test_patterns),
        STORE_TEST(test_allow_file),
        cmocka_unit_test(test_cache_ttls),
        cmocka_unit_test(test_cache_bound),
        cmocka_unit_test(test_ask_request),
        cmocka_unit_test(test_ask_answers),
        cmocka_unit_test(test_budgets),
        cmocka_unit_test(test_registered_domain),
        STORE_TEST(test_budget_persisted),
        cmocka_unit_test(test_conf_json),
        STORE_TEST(test_requests),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
