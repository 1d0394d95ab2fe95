/*
 * Findings: what an operator must fix about a certificate a server serves,
 * judged from its facts, the names the server answers with it and the
 * expiry alert levels.  The same rules for managed certificates (status
 * page), static ones (inventory) and chains seen by `autotls scan`.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "atls.h"
#include "atls_inventory.h"
#include "atls_schedule.h"

#define FINDINGS_RSA_MIN        2048
#define FINDINGS_EC_MIN         256

static const struct {
    const char      *name;
    atls_severity_t  severity;
} finding_table[ATLS_FINDING_MAX] = {
    [ATLS_FINDING_EXPIRED]          = { "expired",          ATLS_SEV_CRITICAL },
    [ATLS_FINDING_NOT_YET_VALID]    = { "not-yet-valid",    ATLS_SEV_CRITICAL },
    [ATLS_FINDING_NAME_MISMATCH]    = { "name-mismatch",    ATLS_SEV_CRITICAL },
    [ATLS_FINDING_WEAK_KEY]         = { "weak-key",         ATLS_SEV_CRITICAL },
    [ATLS_FINDING_EXPIRING]         = { "expiring",         ATLS_SEV_WARNING },
    [ATLS_FINDING_SHA1_SIGNATURE]   = { "sha1-signature",   ATLS_SEV_WARNING },
    [ATLS_FINDING_INCOMPLETE_CHAIN] = { "incomplete-chain", ATLS_SEV_WARNING },
    [ATLS_FINDING_UNREADABLE]       = { "unreadable",       ATLS_SEV_CRITICAL },
};

const char *
atls_finding_name(atls_finding_type_t t)
{
    return (unsigned) t < ATLS_FINDING_MAX ? finding_table[t].name : "?";
}

const char *
atls_severity_name(atls_severity_t s)
{
    switch (s) {
    case ATLS_SEV_OK:       return "ok";
    case ATLS_SEV_WARNING:  return "warning";
    case ATLS_SEV_CRITICAL: return "critical";
    }
    return "?";
}

/* RFC 6125 6.4.3: a wildcard only as the whole left-most label, matching
 * exactly one label; never for an IP literal. */
static int
name_matches(const char *pattern, const char *name)
{
    const char *dot;

    if (strcasecmp(pattern, name) == 0) {
        return 1;
    }
    if (pattern[0] != '*' || pattern[1] != '.' || atls_ident_is_ip(name)) {
        return 0;
    }
    dot = strchr(name, '.');
    return dot != NULL && dot != name && strcasecmp(pattern + 1, dot) == 0;
}

int
atls_name_covered(const char *const *cert_names, size_t n, const char *name)
{
    size_t i;
    int    ip = atls_ident_is_ip(name);

    for (i = 0; i < n; i++) {
        if (ip ? atls_ident_ip_equal(cert_names[i], name)
               : name[0] == '*' ? strcasecmp(cert_names[i], name) == 0
                                : name_matches(cert_names[i], name)) {
            return 1;
        }
    }
    return 0;
}

/* "3d 4h", "5h 12m", "40m": how long until (or since) t, for people. */
static void
findings_span(long s, char *buf, size_t len)
{
    if (s < 0) {
        s = -s;
    }
    if (s >= 86400) {
        snprintf(buf, len, "%ldd %ldh", s / 86400, s % 86400 / 3600);
    } else if (s >= 3600) {
        snprintf(buf, len, "%ldh %ldm", s / 3600, s % 3600 / 60);
    } else {
        snprintf(buf, len, "%ldm", s / 60);
    }
}

typedef struct {
    atls_finding_t *out;
    size_t          max, n;
} findings_acc_t;

static void findings_add(findings_acc_t *a, atls_finding_type_t t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
findings_add(findings_acc_t *a, atls_finding_type_t t, const char *fmt, ...)
{
    va_list ap;

    if (a->n >= a->max) {
        return;
    }
    a->out[a->n].type = t;
    a->out[a->n].severity = finding_table[t].severity;
    va_start(ap, fmt);
    vsnprintf(a->out[a->n].detail, sizeof(a->out[a->n].detail), fmt, ap);
    va_end(ap);
    a->n++;
}

static void
findings_validity(findings_acc_t *a, const atls_cert_facts_t *f, const atls_warn_t *w,
                  time_t now)
{
    atls_warn_t def;
    char        span[32], when[32];
    long        window;

    if (w == NULL || w->n == 0) {
        atls_warn_default(&def);
        w = &def;
    }
    window = w->level[0];   /* the largest: levels are descending */

    if (f->not_after <= now) {
        findings_span((long) (now - f->not_after), span, sizeof(span));
        atls_rfc3339_format(f->not_after, when, sizeof(when));
        findings_add(a, ATLS_FINDING_EXPIRED, "expired %s ago (%s)", span, when);
    } else if (f->not_after - now <= window) {
        findings_span((long) (f->not_after - now), span, sizeof(span));
        atls_rfc3339_format(f->not_after, when, sizeof(when));
        findings_add(a, ATLS_FINDING_EXPIRING, "expires in %s (%s)", span, when);
    }
    if (f->not_before > now) {
        findings_span((long) (f->not_before - now), span, sizeof(span));
        atls_rfc3339_format(f->not_before, when, sizeof(when));
        findings_add(a, ATLS_FINDING_NOT_YET_VALID, "valid only in %s (%s)", span, when);
    }
}

static void
findings_key(findings_acc_t *a, const atls_cert_facts_t *f)
{
    int weak = 0;

    if (strcmp(f->key_alg, "rsa") == 0 || strcmp(f->key_alg, "dsa") == 0) {
        weak = f->key_bits < FINDINGS_RSA_MIN;
    } else if (strcmp(f->key_alg, "ec") == 0) {
        weak = f->key_bits < FINDINGS_EC_MIN;
    }
    if (weak) {
        findings_add(a, ATLS_FINDING_WEAK_KEY, "%s %d bits", f->key_alg, f->key_bits);
    }
}

size_t
atls_findings(const atls_cert_facts_t *f, const char *const *used, size_t n_used,
              const atls_warn_t *w, time_t now, atls_finding_t *out, size_t max)
{
    findings_acc_t a = { out, max, 0 };
    size_t         i;

    findings_validity(&a, f, w, now);
    for (i = 0; i < n_used; i++) {
        /* a regular expression (nginx "~...") names no one name to check */
        if (used[i][0] != '~' && !atls_name_covered((const char *const *) f->names, f->n_names, used[i])) {
            findings_add(&a, ATLS_FINDING_NAME_MISMATCH, "%s not covered", used[i]);
        }
    }
    findings_key(&a, f);
    if (f->sig_sha1) {
        findings_add(&a, ATLS_FINDING_SHA1_SIGNATURE, "signed with %s", f->sig_alg);
    }
    if (!f->chain_complete && !(f->self_signed && f->chain_len == 1)) {
        findings_add(&a, ATLS_FINDING_INCOMPLETE_CHAIN,
                     "%zu certificate%s served; the issuer of the last is missing",
                     f->chain_len, f->chain_len == 1 ? "" : "s");
    }
    return a.n;
}

atls_severity_t
atls_findings_worst(const atls_finding_t *fs, size_t n)
{
    atls_severity_t worst = ATLS_SEV_OK;
    size_t          i;

    for (i = 0; i < n; i++) {
        if (fs[i].severity > worst) {
            worst = fs[i].severity;
        }
    }
    return worst;
}
