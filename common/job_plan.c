/*
 * What a certificate needs now, decided from its stored meta alone.
 *
 * Every host (the scheduler, the CLI) asks the same question; the answer
 * reads no file: the certificates' facts are in meta (kt_info, recorded at
 * each deploy), so a pass over a thousand certificates parses nothing.
 * Order of the rules:
 *   1. backoff after a failure holds, unless forced, or an operator request
 *      made since the last attempt (it overrides once: if that attempt
 *      fails too, the next request waits for the backoff like any other),
 *      or a key type learned revoked since the last attempt (kt_info
 *      revoked_seen >= last_attempt: it overrides once, the same way);
 *   2. a renewal of the whole set (forced, requested, renew_at passed or
 *      unknown) orders every configured key type;
 *   3. key types without a certificate, with an expired one, with one
 *      known revoked (an OCSP answer, a CRL, `autotls revoke`: reason
 *      "revoked"), or with one that does not cover every configured name:
 *      only those are ordered;
 *   4. renewal information (ARI) when the host asks for it and it is due;
 *   5. else nothing, and when to look again.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "atls.h"
#include "atls_job.h"
#include "atls_store.h"

const atls_cert_kt_info_t *
atls_job_kt_info(const atls_cert_meta_t *m, atls_key_type_t kt)
{
    size_t i;

    for (i = 0; i < m->n_kt_info && i < ATLS_KEY_TYPE_MAX; i++) {
        if (m->kt_info[i].key_type == kt) {
            return &m->kt_info[i];
        }
    }
    return NULL;
}

/* 1 when the stored name san covers the configured name: the same DNS name
 * (case-insensitive) or address, or a wildcard one label deep. */
static int
plan_name_covers(const char *san, const char *name)
{
    const char *dot;

    if (atls_ident_is_ip(san) || atls_ident_is_ip(name)) {
        return atls_ident_is_ip(san) && atls_ident_is_ip(name)
               && atls_ident_ip_equal(san, name);
    }
    if (strcasecmp(san, name) == 0) {
        return 1;
    }
    if (san[0] != '*' || san[1] != '.' || name[0] == '*') {
        return 0;
    }
    dot = strchr(name, '.');
    return dot != NULL && dot != name && strcasecmp(dot + 1, san + 2) == 0;
}

static int
plan_names_covered(const atls_cert_kt_info_t *ki, const atls_cert_meta_t *m)
{
    size_t i, k;

    for (i = 0; i < m->n_names; i++) {
        for (k = 0; k < ki->n_names; k++) {
            if (ki->names[k] != NULL && m->names[i] != NULL
                && plan_name_covers(ki->names[k], m->names[i]))
            {
                break;
            }
        }
        if (k == ki->n_names) {
            return 0;
        }
    }
    return 1;
}

/* Why kt must be ordered on its own, or NULL when its certificate is fine. */
static const char *
plan_kt_outdated(const atls_cert_meta_t *m, atls_key_type_t kt, time_t now)
{
    const atls_cert_kt_info_t *ki = atls_job_kt_info(m, kt);

    if (ki == NULL) {
        return "no certificate yet";
    }
    if (ki->not_after <= now) {
        return "certificate expired";
    }
    if (ki->revoked_seen != 0) {
        return "revoked";
    }
    if (!plan_names_covered(ki, m)) {
        return "names changed";
    }
    return NULL;
}

/* 1 when a configured key type was learned revoked at or after `since`:
 * like an operator request, that beats the backoff once (the attempt it
 * causes moves last_attempt past it). */
static int
plan_revoked_since(const atls_cert_meta_t *m, const atls_key_type_t *kts, size_t n,
                   time_t since)
{
    size_t i;

    for (i = 0; i < n; i++) {
        const atls_cert_kt_info_t *ki = atls_job_kt_info(m, kts[i]);

        if (ki != NULL && ki->revoked_seen != 0 && ki->revoked_seen >= since) {
            return 1;
        }
    }
    return 0;
}

/* ARI is asked about the first key type's certificate, while it is valid. */
static int
plan_ari_due(const atls_cert_meta_t *m, const atls_key_type_t *kts, time_t now)
{
    const atls_cert_kt_info_t *ki = atls_job_kt_info(m, kts[0]);

    if (ki == NULL || ki->not_after <= now || !atls_job_ari_due(m, now)) {
        return 0;
    }
    return 1;
}

static time_t
plan_earliest(time_t a, time_t b)
{
    if (a <= 0) {
        return b;
    }
    return b <= 0 || a < b ? a : b;
}

void
atls_job_plan(const atls_cert_meta_t *m, time_t now, time_t request_at, int force,
              int ari, atls_plan_t *out)
{
    atls_key_type_t kts[ATLS_KEY_TYPE_MAX];
    const char     *why;
    size_t          i, n;

    memset(out, 0, sizeof(*out));
    out->reason = "nothing due";
    if (m == NULL) {
        return;
    }
    n = atls_job_key_types(&m->issuer, kts);

    /* A request counts when made at or after the last attempt: times are
     * whole seconds, and a request right after a failure (same second)
     * must not wait for the backoff; an attempt it caused and that failed
     * starts a later second, so the backoff holds again after it. */
    if (!force && m->next_attempt != 0 && now < m->next_attempt
        && !(request_at != 0 && request_at >= m->last_attempt)
        && !plan_revoked_since(m, kts, n, m->last_attempt))
    {
        out->reason = "backing off after a failure";
        out->next = m->next_attempt;
        return;
    }

    if (force || request_at != 0 || m->renew_at == 0 || now >= m->renew_at) {
        out->kind = ATLS_PLAN_ORDER;
        memcpy(out->kts, kts, n * sizeof(kts[0]));
        out->n_kts = n;
        out->reason = force ? "forced" : request_at != 0 ? "requested by an operator"
                      : "renewal due";
        /* a set never ordered has no renew_at: say why in its own words */
        if (!force && request_at == 0 && m->renew_at == 0) {
            why = plan_kt_outdated(m, kts[0], now);
            out->reason = why != NULL ? why : "renewal due";
        }
        return;
    }

    for (i = 0; i < n; i++) {
        why = plan_kt_outdated(m, kts[i], now);
        if (why != NULL) {
            out->kts[out->n_kts++] = kts[i];
            if (out->reason == NULL || out->n_kts == 1) {
                out->reason = why;
            }
        }
    }
    if (out->n_kts > 0) {
        out->kind = ATLS_PLAN_ORDER;
        return;
    }

    if (ari && plan_ari_due(m, kts, now)) {
        out->kind = ATLS_PLAN_ARI;
        out->reason = "renewal information due";
        return;
    }
    out->next = m->renew_at;
    if (ari && atls_job_kt_info(m, kts[0]) != NULL) {
        out->next = plan_earliest(out->next, m->ari_next_check);
    }
    return;
}

int
atls_job_due(atls_store_t *st, const atls_cert_meta_t *m, time_t now, int force)
{
    atls_cert_meta_t look;
    atls_plan_t      plan;
    time_t           asked = 0;
    size_t           i;

    if (m == NULL) {
        return 0;
    }
    /* a request whose time cannot be read still counts, just not as newer
     * than an attempt */
    if (!force && atls_store_peek_request(st, m->id, &asked) && asked <= 0) {
        asked = 1;
    }
    /* A shallow copy: only the entries looked up here are its own. */
    look = *m;
    (void) atls_job_kt_info_load(st, &look);
    atls_job_plan(&look, now, asked, force, 0, &plan);
    for (i = m->n_kt_info; i < look.n_kt_info; i++) {
        atls_cert_kt_info_clear(&look.kt_info[i]);
    }
    return plan.kind == ATLS_PLAN_ORDER;
}
