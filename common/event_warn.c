/*
 * Expiry alert levels ("21d 7d 3d 1d") and the durations they are written
 * in (parsed by atls_duration_parse, schedule.c).  A level is a number of seconds before notAfter; a certificate
 * reaches it when its remaining life is no longer than that.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_event.h"
#include "atls_schedule.h"

#define WARN_DAY  86400L

static const long warn_defaults[] = { 21 * WARN_DAY, 7 * WARN_DAY, 3 * WARN_DAY,
                                      1 * WARN_DAY };

/* unit suffixes, largest first: atls_duration_format picks the first that
 * divides */
static const struct {
    char c;
    long s;
} duration_units[] = { { 'd', WARN_DAY }, { 'h', 3600 }, { 'm', 60 }, { 's', 1 } };

#define N_UNITS (sizeof(duration_units) / sizeof(duration_units[0]))

void
atls_warn_default(atls_warn_t *w)
{
    size_t i;

    memset(w, 0, sizeof(*w));
    for (i = 0; i < sizeof(warn_defaults) / sizeof(warn_defaults[0]); i++) {
        w->level[i] = warn_defaults[i];
    }
    w->n = i;
}

/* w itself, or the defaults when it names no level. */
static const atls_warn_t *
warn_effective(const atls_warn_t *w, atls_warn_t *tmp)
{
    if (w != NULL && w->n > 0 && w->n <= ATLS_WARN_MAX) {
        return w;
    }
    atls_warn_default(tmp);
    return tmp;
}

char *
atls_duration_format(long s, char *buf, size_t len)
{
    size_t i;

    for (i = 0; s != 0 && i < N_UNITS - 1; i++) {
        if (s % duration_units[i].s == 0) {
            break;
        }
    }
    if (s == 0) {
        i = N_UNITS - 1;
    }
    snprintf(buf, len, "%ld%c", s / duration_units[i].s, duration_units[i].c);
    return buf;
}

static int
warn_cmp_desc(const void *a, const void *b)
{
    long x = *(const long *) a, y = *(const long *) b;

    return x < y ? 1 : x > y ? -1 : 0;
}

int
atls_warn_parse(const char *const *args, size_t n, atls_warn_t *w,
                char *err, size_t errlen)
{
    atls_warn_t out;
    char        a[32];
    size_t      i;
    long        v;

    memset(&out, 0, sizeof(out));
    if (n == 0) {
        snprintf(err, errlen, "no alert level given (e.g. 21d 7d 3d 1d)");
        return -1;
    }
    if (n > ATLS_WARN_MAX) {
        snprintf(err, errlen, "%zu alert levels given, at most %d", n, ATLS_WARN_MAX);
        return -1;
    }
    for (i = 0; i < n; i++) {
        v = atls_duration_parse(args[i]);
        if (v <= 0) {
            snprintf(err, errlen, "alert level \"%.64s\": not a positive duration "
                     "(a number with s, m, h or d, e.g. 7d)", args[i] ? args[i] : "");
            return -1;
        }
        out.level[i] = v;
    }
    out.n = n;
    qsort(out.level, out.n, sizeof(out.level[0]), warn_cmp_desc);
    for (i = 1; i < out.n; i++) {
        if (out.level[i] == out.level[i - 1]) {
            snprintf(err, errlen, "alert level %s given twice",
                     atls_duration_format(out.level[i], a, sizeof(a)));
            return -1;
        }
    }
    *w = out;
    return 0;
}

long
atls_warn_level(const atls_warn_t *w, time_t not_after, time_t now)
{
    atls_warn_t        tmp;
    const atls_warn_t *e = warn_effective(w, &tmp);
    long               reached = 0;
    time_t             left = not_after - now;
    size_t             i;

    if (left <= 0) {
        return 0;
    }
    /* descending: the last level reached is the smallest */
    for (i = 0; i < e->n; i++) {
        if (left <= e->level[i]) {
            reached = e->level[i];
        }
    }
    return reached;
}

time_t
atls_warn_next(const atls_warn_t *w, time_t not_after, time_t now)
{
    atls_warn_t        tmp;
    const atls_warn_t *e = warn_effective(w, &tmp);
    time_t             left = not_after - now;
    size_t             i;

    /* descending: the first level not reached yet is crossed next */
    for (i = 0; i < e->n; i++) {
        if (left > e->level[i]) {
            return not_after - e->level[i];
        }
    }
    return 0;
}
