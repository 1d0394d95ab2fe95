/* Renewal windows, backoff, durations and RFC 3339 times. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include "atls_schedule.h"

#define DAY 86400L
#define NB  ((time_t) 1700000000)   /* 2023-11-14T22:13:20Z */

static void
test_renew_at_90_days(void **state)
{
    time_t na = NB + 90 * DAY, t;
    uint64_t r;

    (void) state;
    /* default policy: renew with 1/3 of the lifetime left = 60 days in */
    assert_int_equal(atls_schedule_renew_at(NB, na, NULL, 0), NB + 60 * DAY);
    /* jitter at most 5% of the window, capped at 1 h */
    assert_int_equal(atls_schedule_renew_at(NB, na, NULL, UINT64_MAX),
                     NB + 60 * DAY - 3600);
    for (r = 1; r < 1000; r++) {
        t = atls_schedule_renew_at(NB, na, NULL, r * 0x9e3779b97f4a7c15ULL);
        assert_true(t <= NB + 60 * DAY);
        assert_true(t >= NB + 60 * DAY - 3600);
    }
    /* a zeroed policy is the default policy */
    {
        atls_renew_policy_t p = { 0, 0 };

        assert_int_equal(atls_schedule_renew_at(NB, na, &p, 0), NB + 60 * DAY);
    }
}

static void
test_renew_at_short_lifetimes(void **state)
{
    (void) state;
    /* 6-day certificate: renew at half-life */
    assert_int_equal(atls_schedule_renew_at(NB, NB + 6 * DAY, NULL, 0), NB + 3 * DAY);
    assert_int_equal(atls_schedule_renew_at(NB, NB + 6 * DAY, NULL, UINT64_MAX),
                     NB + 3 * DAY - 3600);
    /* exactly 10 days is not "under 10 days" */
    assert_int_equal(atls_schedule_renew_at(NB, NB + 10 * DAY, NULL, 0),
                     NB + 10 * DAY - (10 * DAY) / 3);
    /* 1-hour certificate: window 30 min, jitter at most 5% of it (90 s) */
    assert_int_equal(atls_schedule_renew_at(NB, NB + 3600, NULL, 0), NB + 1800);
    assert_int_equal(atls_schedule_renew_at(NB, NB + 3600, NULL, UINT64_MAX), NB + 1710);
    /* degenerate: expired-at-birth certificate is due at once */
    assert_int_equal(atls_schedule_renew_at(NB, NB, NULL, 0), NB);
}

static void
test_renew_before(void **state)
{
    atls_renew_policy_t p;
    time_t na = NB + 90 * DAY;

    (void) state;
    assert_int_equal(atls_renew_policy_parse("30d", &p), 0);
    assert_int_equal(p.renew_before, 30 * DAY);
    assert_true(p.renew_fraction == 0);
    assert_int_equal(atls_schedule_renew_at(NB, na, &p, 0), na - 30 * DAY);
    assert_int_equal(atls_schedule_renew_at(NB, na, &p, UINT64_MAX), na - 30 * DAY - 3600);

    /* renew_before overrides a fraction */
    p.renew_fraction = 0.5;
    assert_int_equal(atls_schedule_renew_at(NB, na, &p, 0), na - 30 * DAY);

    /* longer than the lifetime: due from notBefore, never earlier */
    assert_int_equal(atls_renew_policy_parse("120d", &p), 0);
    assert_int_equal(atls_schedule_renew_at(NB, na, &p, UINT64_MAX), NB);
}

static void
test_policy_percent(void **state)
{
    atls_renew_policy_t p;

    (void) state;
    assert_int_equal(atls_renew_policy_parse("25%", &p), 0);
    assert_true(p.renew_fraction > 0.2499 && p.renew_fraction < 0.2501);
    assert_int_equal(p.renew_before, 0);
    assert_int_equal(atls_schedule_renew_at(NB, NB + 100 * DAY, &p, 0), NB + 75 * DAY);
    /* a percent policy applies to short certificates too */
    assert_int_equal(atls_schedule_renew_at(NB, NB + 4 * DAY, &p, 0), NB + 3 * DAY);

    assert_int_equal(atls_renew_policy_parse("1%", &p), 0);
    assert_int_equal(atls_renew_policy_parse("99%", &p), 0);
    assert_int_equal(atls_renew_policy_parse("33.5%", &p), 0);
    assert_true(p.renew_fraction > 0.3349 && p.renew_fraction < 0.3351);
    assert_int_equal(atls_renew_policy_parse("12h", &p), 0);
    assert_int_equal(p.renew_before, 12 * 3600);
    assert_int_equal(atls_renew_policy_parse("3600", &p), 0);
    assert_int_equal(p.renew_before, 3600);

    assert_int_equal(atls_renew_policy_parse("0%", &p), -1);
    assert_int_equal(atls_renew_policy_parse("100%", &p), -1);
    assert_int_equal(atls_renew_policy_parse("%", &p), -1);
    assert_int_equal(atls_renew_policy_parse("-5%", &p), -1);
    assert_int_equal(atls_renew_policy_parse("1.2.3%", &p), -1);
    assert_int_equal(atls_renew_policy_parse("inf%", &p), -1);
    assert_int_equal(atls_renew_policy_parse("abc", &p), -1);
    assert_int_equal(atls_renew_policy_parse("0", &p), -1);
    assert_int_equal(atls_renew_policy_parse("", &p), -1);
    assert_int_equal(atls_renew_policy_parse(NULL, &p), -1);
}

static void
test_backoff(void **state)
{
    const time_t now = NB;
    const uint64_t mid = 1ULL << 63;   /* no jitter */
    unsigned f;
    long expect = 60;

    (void) state;
    for (f = 1; f <= 11; f++) {
        assert_int_equal(atls_schedule_backoff(f, now, 0, mid), now + expect);
        expect *= 2;
    }
    /* 60 * 2^11 = 122880 > 24 h: capped */
    assert_int_equal(atls_schedule_backoff(12, now, 0, mid), now + DAY);
    assert_int_equal(atls_schedule_backoff(1000, now, 0, mid), now + DAY);
    assert_int_equal(atls_schedule_backoff(UINT32_MAX, now, 0, mid), now + DAY);

    /* +-20% jitter */
    assert_int_equal(atls_schedule_backoff(1, now, 0, 0), now + 48);
    assert_int_equal(atls_schedule_backoff(1, now, 0, UINT64_MAX), now + 72);
    assert_int_equal(atls_schedule_backoff(3, now, 0, 0), now + 192);
    assert_int_equal(atls_schedule_backoff(3, now, 0, UINT64_MAX), now + 288);
    /* the 24 h cap also bounds the jitter */
    assert_int_equal(atls_schedule_backoff(20, now, 0, 0), now + DAY - DAY / 5);
    assert_int_equal(atls_schedule_backoff(20, now, 0, UINT64_MAX), now + DAY);

    /* a later Retry-After wins, an earlier one does not */
    assert_int_equal(atls_schedule_backoff(1, now, now + 7200, UINT64_MAX), now + 7200);
    assert_int_equal(atls_schedule_backoff(2, now, now + 10, mid), now + 120);
}

/* The class of the failure picks the curve. */
static void
test_backoff_class(void **state)
{
    const time_t   now = NB;
    const uint64_t mid = 1ULL << 63;
    unsigned       f;
    long           expect = 6 * 3600;

    (void) state;
    /* permanent: 6 h doubling up to 7 days */
    for (f = 1; f <= 5; f++) {
        assert_int_equal(atls_schedule_backoff_class(ATLS_ERR_PERMANENT, f, now, 0, mid),
                         now + (expect < 7 * DAY ? expect : 7 * DAY));
        expect *= 2;
    }
    assert_int_equal(atls_schedule_backoff_class(ATLS_ERR_PERMANENT, 6, now, 0, mid),
                     now + 7 * DAY);
    assert_int_equal(atls_schedule_backoff_class(ATLS_ERR_PERMANENT, UINT32_MAX, now, 0,
                                                 UINT64_MAX), now + 7 * DAY);
    /* a Retry-After beyond the cap is cut to it */
    assert_int_equal(atls_schedule_backoff_class(ATLS_ERR_PERMANENT, 1, now, now + 30 * DAY,
                                                 mid), now + 7 * DAY);
    /* everything else: the usual minute-scale curve, Retry-After up to a day */
    for (f = 1; f <= 14; f++) {
        assert_int_equal(atls_schedule_backoff_class(ATLS_ERR_RETRY_LATER, f, now, 0, mid),
                         atls_schedule_backoff(f, now, 0, mid));
        assert_int_equal(atls_schedule_backoff_class(ATLS_ERR_NONE, f, now, 0, mid),
                         atls_schedule_backoff(f, now, 0, mid));
    }
    assert_int_equal(atls_schedule_backoff_class(ATLS_ERR_RETRY_LATER, 1, now, now + 7200,
                                                 mid), now + 7200);
    assert_int_equal(atls_schedule_backoff_class(ATLS_ERR_RETRY_LATER, 1, now,
                                                 now + 30 * DAY, mid), now + DAY);
    /* and before_expiry still pulls a permanent backoff in */
    assert_int_equal(atls_schedule_before_expiry(
                         atls_schedule_backoff_class(ATLS_ERR_PERMANENT, 9, now, 0, mid),
                         now, now + 4 * DAY), now + 2 * DAY);
}

static void
test_duration_parse(void **state)
{
    (void) state;
    assert_int_equal(atls_duration_parse("1m"), 60);
    assert_int_equal(atls_duration_parse("30s"), 30);
    assert_int_equal(atls_duration_parse("2h"), 7200);
    assert_int_equal(atls_duration_parse("7d"), 7 * DAY);
    assert_int_equal(atls_duration_parse("3600"), 3600);
    assert_int_equal(atls_duration_parse("0"), 0);
    assert_int_equal(atls_duration_parse(""), -1);
    assert_int_equal(atls_duration_parse(NULL), -1);
    assert_int_equal(atls_duration_parse("d"), -1);
    assert_int_equal(atls_duration_parse("10x"), -1);
    assert_int_equal(atls_duration_parse("-1"), -1);
    assert_int_equal(atls_duration_parse("1.5h"), -1);
    assert_int_equal(atls_duration_parse("10dd"), -1);
    assert_int_equal(atls_duration_parse(" 10"), -1);
    assert_int_equal(atls_duration_parse("10 "), -1);
    assert_int_equal(atls_duration_parse("99999999999999999999999"), -1);
    assert_int_equal(atls_duration_parse("999999999d"), -1);
}

static void
test_rfc3339_parse(void **state)
{
    struct tm tm;
    time_t    ref;

    (void) state;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = 2025 - 1900;
    tm.tm_mon = 0;
    tm.tm_mday = 2;
    tm.tm_hour = 3;
    tm.tm_min = 4;
    tm.tm_sec = 5;
    ref = timegm(&tm);

    assert_int_equal(atls_rfc3339_parse("2025-01-02T03:04:05Z"), ref);
    assert_int_equal(atls_rfc3339_parse("2025-01-02t03:04:05z"), ref);
    assert_int_equal(atls_rfc3339_parse("2025-01-02T03:04:05.123456789Z"), ref);
    assert_int_equal(atls_rfc3339_parse("2025-01-02T03:04:05.9Z"), ref);
    assert_int_equal(atls_rfc3339_parse("2025-01-02T05:04:05+02:00"), ref);
    assert_int_equal(atls_rfc3339_parse("2025-01-01T22:04:05-05:00"), ref);
    assert_int_equal(atls_rfc3339_parse("2025-01-02T08:34:05.5+05:30"), ref);
    assert_int_equal(atls_rfc3339_parse("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(atls_rfc3339_parse("2000-01-01T00:00:00Z"), 946684800);
    assert_int_equal(atls_rfc3339_parse("2024-02-29T00:00:00Z"), 1709164800);
    assert_int_equal(atls_rfc3339_parse("2100-03-01T00:00:00Z"), 4107542400LL);

    assert_int_equal(atls_rfc3339_parse("2025-02-29T00:00:00Z"), -1);
    assert_int_equal(atls_rfc3339_parse("2025-13-01T00:00:00Z"), -1);
    assert_int_equal(atls_rfc3339_parse("2025-00-01T00:00:00Z"), -1);
    assert_int_equal(atls_rfc3339_parse("2025-04-31T00:00:00Z"), -1);
    assert_int_equal(atls_rfc3339_parse("2025-01-01T24:00:00Z"), -1);
    assert_int_equal(atls_rfc3339_parse("2025-01-01T00:60:00Z"), -1);
    assert_int_equal(atls_rfc3339_parse("2025-01-02T03:04:05"), -1);
    assert_int_equal(atls_rfc3339_parse("2025-01-02T03:04:05.Z"), -1);
    assert_int_equal(atls_rfc3339_parse("2025-01-02T03:04:05+0200"), -1);
    assert_int_equal(atls_rfc3339_parse("2025-01-02T03:04:05+24:00"), -1);
    assert_int_equal(atls_rfc3339_parse("2025-01-02T03:04:05Zjunk"), -1);
    assert_int_equal(atls_rfc3339_parse("2025-1-02T03:04:05Z"), -1);
    assert_int_equal(atls_rfc3339_parse("yesterday"), -1);
    assert_int_equal(atls_rfc3339_parse(""), -1);
    assert_int_equal(atls_rfc3339_parse(NULL), -1);
    assert_int_equal(atls_rfc3339_parse("1969-12-31T00:00:00Z"), -1);
}

static void
test_rfc3339_format(void **state)
{
    char   buf[32];
    time_t t;

    (void) state;
    atls_rfc3339_format(0, buf, sizeof(buf));
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    atls_rfc3339_format(1709164800 + 3661, buf, sizeof(buf));
    assert_string_equal(buf, "2024-02-29T01:01:01Z");
    atls_rfc3339_format(NB, buf, 21);
    assert_string_equal(buf, "2023-11-14T22:13:20Z");
    for (t = 0; t < 4102444800LL; t += 86400 * 37 + 4567) {
        atls_rfc3339_format(t, buf, sizeof(buf));
        assert_int_equal(atls_rfc3339_parse(buf), t);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_renew_at_90_days),
        cmocka_unit_test(test_renew_at_short_lifetimes),
        cmocka_unit_test(test_renew_before),
        cmocka_unit_test(test_policy_percent),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_backoff_class),
        cmocka_unit_test(test_duration_parse),
        cmocka_unit_test(test_rfc3339_parse),
        cmocka_unit_test(test_rfc3339_format),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
