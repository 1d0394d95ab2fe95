/*
 * When to renew, when to retry: pure functions of a clock and a random
 * number (pass atls_random_u64() in production, a constant in tests).
 */
#ifndef ATLS_SCHEDULE_H
#define ATLS_SCHEDULE_H

#include <stdint.h>
#include <time.h>
#include <openssl/x509.h>
#include "atls.h"

typedef struct {
    double renew_fraction;   /* share of lifetime left when renewing; 0 = default
                                (1/3, or 1/2 for lifetimes under 10 days) */
    long   renew_before;     /* seconds before notAfter; > 0 overrides fraction */
} atls_renew_policy_t;

/* Parses "33%" or a duration "30d", "12h", "90m", "3600s", "3600" into p.
 * 0 ok, -1 bad syntax (percent must be 1..99). */
int atls_renew_policy_parse(const char *s, atls_renew_policy_t *p);

/* Parses a duration like "1m", "30s", "2h", "7d" (bare number = seconds). -1 bad. */
long atls_duration_parse(const char *s);

/* The moment renewal is due: notAfter - window, minus up to 5% of the
 * window (capped at 1 h) of jitter derived from rnd; never before notBefore. */
time_t atls_schedule_renew_at(time_t not_before, time_t not_after,
                              const atls_renew_policy_t *p, uint64_t rnd);

/* Next attempt after `failures` consecutive failures (failures >= 1):
 * 60 s * 2^(failures-1) capped at 24 h, with up to ±20% jitter from rnd;
 * a CA Retry-After later than that wins, but never beyond now + 24 h. */
/* first * 2^(failures-1), capped at cap (failures 0 counts as 1): the
 * doubling every backoff shares, before any jitter. */
long atls_schedule_doubling(long first, long cap, unsigned failures);
time_t atls_schedule_backoff(unsigned failures, time_t now, time_t retry_after, uint64_t rnd);

/* The same by the class of the error that failed the attempt: PERMANENT
 * (the CA refused the request itself; only the operator can fix it) starts
 * at 6 h and doubles up to 7 days, Retry-After honoured up to 7 days; any
 * other class as atls_schedule_backoff.  Pass the result through
 * atls_schedule_before_expiry so a valid certificate never lapses without
 * retries. */
time_t atls_schedule_backoff_class(atls_err_class_t cls, unsigned failures, time_t now,
                                   time_t retry_after, uint64_t rnd);

/* Cluster (issue 12): the next attempt after an order failed with err
 * while nodes of the cluster had not confirmed its challenge (the host's
 * publish_wait gave up waiting, atls_sched_hook_done_partial).  When err
 * is what a node without the answer makes the CA say (unauthorized,
 * incorrectResponse, connection, tls), the failure is counted transient:
 * atls_schedule_backoff(failures, ...), not the 6 h of a permanent error.
 * 0 when err is any other failure (badNonce, rateLimited, dns, caa...),
 * whose class and backoff stand.  The job applies it as it records the
 * failed order (atls_job_set_lagged, job_lagged.c). */
time_t atls_schedule_lagged(const atls_error_t *err, unsigned failures, time_t now,
                            uint64_t rnd);

/* next, pulled in so a retry happens while the current certificate is still
 * valid: at most half the time left until not_after (but not under 60 s).
 * next unchanged when there is no current certificate (not_after <= now). */
time_t atls_schedule_before_expiry(time_t next, time_t now, time_t not_after);

/* ---- ARI (RFC 9773) ---------------------------------------------------- */

/* Certificate identifier: base64url(AKI keyIdentifier) "." base64url(serial
 * DER content bytes).  malloc'd, NULL if the leaf has no AKI. */
char *atls_ari_cert_id(X509 *leaf);

/* Parses a renewalInfo body: {"suggestedWindow":{"start":RFC3339,"end":RFC3339},
 * "explanationURL":...}.  0 ok, -1 malformed or end <= start. */
int atls_ari_parse(const char *json, size_t len, time_t *start, time_t *end);

/* Pick the moment to renew in a window: uniformly random within
 * [start,end) from rnd; if the window is already past (end <= now) -> now. */
time_t atls_ari_pick(time_t start, time_t end, time_t now, uint64_t rnd);

/* Parses RFC 3339 ("2025-01-02T03:04:05Z", fractional seconds and offsets
 * allowed) to time_t; -1 on error. */
time_t atls_rfc3339_parse(const char *s);
/* Formats t as "YYYY-MM-DDTHH:MM:SSZ" into buf (>= 21 bytes). */
void atls_rfc3339_format(time_t t, char *buf, size_t len);

#endif
