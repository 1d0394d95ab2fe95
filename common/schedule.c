/*
 * Renewal windows, retry backoff and RFC 3339 time: pure functions of their
 * arguments (the caller passes the clock and the randomness).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "atls_schedule.h"

#define DAY              86400L
#define SHORT_LIFETIME   (10 * DAY)
#define JITTER_CAP       3600L
#define BACKOFF_BASE     60L
#define BACKOFF_CAP      DAY
/* An error a resend cannot fix (the CA refuses the names, the account or
 * the request) waits for the operator: retrying every minute only burns
 * the CA's rate limits. */
#define PERMANENT_BASE   (6 * 3600L)
#define PERMANENT_CAP    (7 * DAY)
/* Durations beyond ~100 years are typos, and keep arithmetic far from overflow. */
#define DURATION_MAX     (100L * 366 * DAY)

/* Maps rnd uniformly onto [0, n): the high bits of rnd * n. */
static uint64_t
sched_scale(uint64_t rnd, uint64_t n)
{
    return (uint64_t) (((unsigned __int128) rnd * n) >> 64);
}

long
atls_duration_parse(const char *s)
{
    long   v = 0, mult = 1;
    size_t i;

    if (s == NULL || *s < '0' || *s > '9') {
        return -1;
    }
    for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
        v = v * 10 + (s[i] - '0');
        if (v > DURATION_MAX) {
            return -1;
        }
    }
    switch (s[i]) {
    case '\0': return v;
    case 's':  mult = 1; break;
    case 'm':  mult = 60; break;
    case 'h':  mult = 3600; break;
    case 'd':  mult = DAY; break;
    default:   return -1;
    }
    if (s[i + 1] != '\0' || v > DURATION_MAX / mult) {
        return -1;
    }
    return v * mult;
}

int
atls_renew_policy_parse(const char *s, atls_renew_policy_t *p)
{
    size_t len, i;
    int    dots = 0;
    double pct;
    long   d;

    if (s == NULL || p == NULL || *s == '\0') {
        return -1;
    }
    len = strlen(s);
    if (s[len - 1] == '%') {
        /* digits with at most one '.', nothing strtod would also take
         * ("inf", hex, blanks) */
        if (len < 2 || s[0] == '.' || s[len - 2] == '.') {
            return -1;
        }
        for (i = 0; i + 1 < len; i++) {
            if (s[i] == '.') {
                dots++;
            } else if (s[i] < '0' || s[i] > '9') {
                return -1;
            }
        }
        if (dots > 1) {
            return -1;
        }
        pct = strtod(s, NULL);
        if (pct < 1.0 || pct > 99.0) {
            return -1;
        }
        p->renew_fraction = pct / 100.0;
        p->renew_before = 0;
        return 0;
    }
    d = atls_duration_parse(s);
    if (d <= 0) {
        return -1;
    }
    p->renew_fraction = 0;
    p->renew_before = d;
    return 0;
}

time_t
atls_schedule_renew_at(time_t not_before, time_t not_after,
                       const atls_renew_policy_t *p, uint64_t rnd)
{
    time_t lifetime = not_after - not_before;
    time_t window, jmax, at;

    if (lifetime <= 0) {
        return not_before;
    }
    if (p != NULL && p->renew_before > 0) {
        window = p->renew_before;
    } else if (p != NULL && p->renew_fraction > 0 && p->renew_fraction < 1) {
        window = (time_t) ((double) lifetime * p->renew_fraction + 0.5);
    } else if (lifetime < SHORT_LIFETIME) {
        window = lifetime / 2;
    } else {
        /* integer division: 90 days -> exactly 30 days */
        window = lifetime / 3;
    }
    if (window > lifetime) {
        window = lifetime;
    }
    jmax = window / 20;
    if (jmax > JITTER_CAP) {
        jmax = JITTER_CAP;
    }
    /* Spreads a fleet's renewals so they do not hit the CA in one second. */
    at = not_after - window - (time_t) sched_scale(rnd, (uint64_t) jmax + 1);
    return at < not_before ? not_before : at;
}

long
atls_schedule_doubling(long first, long cap, unsigned failures)
{
    long     d = first;
    unsigned i;

    for (i = 1; i < failures && d < cap; i++) {
        d *= 2;
    }
    return d < cap ? d : cap;
}

/* base * 2^(failures-1) capped at cap, ±20% jitter (never above cap), and
 * a Retry-After later than that honoured up to the same cap. */
static time_t
sched_backoff(long first, long cap, unsigned failures, time_t now, time_t retry_after,
              uint64_t rnd)
{
    long     base = atls_schedule_doubling(first, cap, failures), spread, delay;
    time_t   next;

    spread = base / 5;
    delay = base - spread + (long) sched_scale(rnd, (uint64_t) (2 * spread) + 1);
    /* The cap is a promise to the operator, even with jitter. */
    if (delay > cap) {
        delay = cap;
    }
    next = now + delay;
    /* A year-long Retry-After (mistaken or hostile) must not park a
     * certificate until it expires. */
    if (retry_after > now + cap) {
        retry_after = now + cap;
    }
    if (retry_after > next) {
        next = retry_after;
    }
    return next;
}

time_t
atls_schedule_backoff(unsigned failures, time_t now, time_t retry_after, uint64_t rnd)
{
    return sched_backoff(BACKOFF_BASE, BACKOFF_CAP, failures, now, retry_after, rnd);
}

time_t
atls_schedule_backoff_class(atls_err_class_t cls, unsigned failures, time_t now,
                            time_t retry_after, uint64_t rnd)
{
    if (cls == ATLS_ERR_PERMANENT) {
        return sched_backoff(PERMANENT_BASE, PERMANENT_CAP, failures, now, retry_after,
                             rnd);
    }
    return atls_schedule_backoff(failures, now, retry_after, rnd);
}

/*
 * What the CA answers when its validation reaches a node of our cluster
 * that has not loaded the challenge: 404 or a wrong key authorisation
 * (unauthorized, incorrectResponse), a node stopped mid-request
 * (connection), no acme-tls/1 certificate (tls).  Alone, each means the
 * operator's DNS or firewall sends the CA elsewhere; after a publish that
 * went on unconfirmed it may only mean that the node was slow.  dns and
 * caa are about the name, never about a node: they keep their class.
 */
static const char *const lagged_problems[] = {
    "urn:ietf:params:acme:error:unauthorized",
    "urn:ietf:params:acme:error:incorrectResponse",
    "urn:ietf:params:acme:error:connection",
    "urn:ietf:params:acme:error:tls",
};

time_t
atls_schedule_lagged(const atls_error_t *err, unsigned failures, time_t now, uint64_t rnd)
{
    size_t i;

    if (err == NULL) {
        return 0;
    }
    for (i = 0; i < sizeof(lagged_problems) / sizeof(lagged_problems[0]); i++) {
        if (strcmp(err->type, lagged_problems[i]) == 0) {
            /* The first retry (48-72 s) comes after ATLS_MIRROR_MEMBER_TTL_MS
             * (15 s): by then the lagging node has loaded the challenge or,
             * stopped or dead, has left the live members the next order
             * waits for.  A second failure with every node confirmed is
             * the operator's again: permanent, as any other. */
            return atls_schedule_backoff(failures, now, err->retry_after, rnd);
        }
    }
    return 0;
}

time_t
atls_schedule_before_expiry(time_t next, time_t now, time_t not_after)
{
    time_t limit;

    if (not_after <= now || next <= now) {
        return next;
    }
    /* half the time left, so a failing renewal still gets several tries
     * while the certificate is valid; never sooner than the first backoff */
    limit = now + (not_after - now) / 2;
    if (limit < now + BACKOFF_BASE) {
        limit = now + BACKOFF_BASE;
    }
    return next > limit ? limit : next;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * civil-from-days inverse), so parsing never depends on TZ or timegm. */
static long long
sched_days_from_civil(long long y, unsigned m, unsigned d)
{
    long long era;
    unsigned  yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned) (y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long) doe - 719468;
}

static int
sched_digits(const char *s, int n, int *out)
{
    int i, v = 0;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

time_t
atls_rfc3339_parse(const char *s)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int       y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0, leap;
    long long t;

    if (s == NULL || strlen(s) < 20) {
        return -1;
    }
    if (sched_digits(s, 4, &y) || s[4] != '-' || sched_digits(s + 5, 2, &mo)
        || s[7] != '-' || sched_digits(s + 8, 2, &d)
        || (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
        || sched_digits(s + 11, 2, &h) || s[13] != ':'
        || sched_digits(s + 14, 2, &mi) || s[16] != ':'
        || sched_digits(s + 17, 2, &sec))
    {
        return -1;
    }
    s += 19;
    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9') {
            return -1;
        }
        while (*s >= '0' && *s <= '9') {   /* sub-second precision is dropped */
            s++;
        }
    }
    if ((*s == 'Z' || *s == 'z') && s[1] == '\0') {
        sign = 0;
    } else if ((*s == '+' || *s == '-') && strlen(s) == 6 && s[3] == ':'
               && sched_digits(s + 1, 2, &oh) == 0
               && sched_digits(s + 4, 2, &om) == 0)
    {
        sign = *s == '+' ? 1 : -1;
        if (oh > 23 || om > 59) {
            return -1;
        }
    } else {
        return -1;
    }
    leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1]
        || (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || sec > 60)
    {
        return -1;
    }
    /* A leap second (:60) lands on the next second, as timegm would do. */
    t = sched_days_from_civil(y, (unsigned) mo, (unsigned) d) * 86400LL
        + h * 3600LL + mi * 60LL + sec;
    t -= sign * (oh * 3600LL + om * 60LL);
    if (t < 0 || (long long) (time_t) t != t) {
        return -1;
    }
    return (time_t) t;
}

void
atls_rfc3339_format(time_t t, char *buf, size_t len)
{
    struct tm tm;

    if (buf == NULL || len == 0) {
        return;
    }
    if (gmtime_r(&t, &tm) == NULL
        || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    {
        buf[0] = '\0';
    }
}
