/*
 * The scheduler, revocation checks in a slot: for each key type of a
 * certificate, an OCSP request when its issuer staples and its leaf names a
 * responder, else its CRL (sched_crl.c) when the leaf names one.  A slot
 * takes these like an ARI query: counted in max_parallel, one request in
 * flight at a time, no engine.  A key type learned revoked is re-planned
 * at once into an order in the same slot (atls_job_plan: revoked_seen).
 *
 * What is logged: a revocation once (WARN); an OCSP failure once per
 * streak (WARN) and its recovery (INFO); a certificate that names no
 * responder and no CRL never logs anything.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <openssl/x509.h>
#include "atls.h"
#include "atls_job.h"
#include "atls_ocsp.h"
#include "atls_sched.h"
#include "atls_schedule.h"
#include "atls_store.h"
#include "job_int.h"
#include "sched_internal.h"

/* An OCSP responder gets this long to answer (it answers from a cache of
 * pre-signed responses, RFC 5019). */
#define SCHED_OCSP_TIMEOUT_MS  10000
#define SCHED_OCSP_CONNECT_MS  5000

/* ---- shared by OCSP and CRLs -------------------------------------------------- */

/* Spreads the refreshes of 10,000 certificates: a hash of id and key type. */
static unsigned
rev_jitter(const char *id, atls_key_type_t kt)
{
    unsigned h = 2166136261u;

    while (*id != '\0') {
        h = (h ^ (unsigned char) *id++) * 16777619u;
    }
    return (h ^ (unsigned) kt) * 16777619u;
}

int
atls_sched_rev_chain(sched_slot_t *sl, atls_key_type_t kt, X509 **leaf, X509 **issuer,
                     char *err, size_t errlen)
{
    /* the leaf and its issuer only: the key block stays undecoded */
    if (atls_store_load_leaf_issuer(sl->s->st, sl->cert->id, kt, leaf, issuer, err, errlen)
        != ATLS_STORE_OK || *leaf == NULL)
    {
        if (err[0] == '\0') {
            snprintf(err, errlen, "no stored certificate");
        }
        X509_free(*leaf);
        X509_free(*issuer);
        *leaf = NULL;
        *issuer = NULL;
        return -1;
    }
    return 0;
}

static int
serial_eq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcasecmp(a, b) == 0;
}

/* The leaf's serial as kt_info records it. */
static void
leaf_serial(X509 *leaf, char *buf, size_t len)
{
    atls_cert_info_t info;

    memset(&info, 0, sizeof(info));
    buf[0] = '\0';
    if (leaf != NULL && atls_cert_info(leaf, &info) == 0) {
        snprintf(buf, len, "%s", info.serial);
    }
    atls_cert_info_free(&info);
}

/* What an update of one key type's facts changed. */
#define REV_CHANGED   0x1     /* meta must be saved */
#define REV_STAPLED   0x2     /* what workers staple changed: generations */

/*
 * Loads the certificate's meta under its lock, hands kt's entry to apply
 * (only while it still records the certificate with serial), saves what
 * changed and bumps the generations when the stapled response changed.
 * The lock is taken without waiting: another process renewing the
 * certificate wins, and the check is made again at the next pass.
 */
static int
rev_update(sched_slot_t *sl, atls_key_type_t kt, const char *serial,
           int (*apply)(sched_slot_t *sl, atls_cert_meta_t *m, atls_cert_kt_info_t *ki,
                        void *arg),
           void *arg)
{
    atls_sched_t        *s = sl->s;
    atls_store_lock_t   *lk;
    atls_cert_meta_t     m;
    atls_cert_kt_info_t *ki;
    char                 err[256];
    int                  what = 0;

    if (atls_job_lock_load(s->st, sl->cert->id, &lk, &m, err, sizeof(err)) != 0) {
        atls_log(ATLS_LOG_DEBUG, "autotls: certificate \"%s\" (%s): revocation state "
                 "not recorded now: %s", sl->cert->id, atls_key_type_name(kt), err);
        return 0;
    }
    ki = atls_cert_meta_kt(&m, kt);
    if (ki != NULL && serial_eq(ki->serial, serial)) {
        what = apply(sl, &m, ki, arg);
    }
    if ((what & REV_STAPLED) != 0) {
        m.generation++;
    }
    if (what != 0 && atls_store_save_meta(s->st, &m, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\" (%s): cannot save the "
                 "revocation state: %s", sl->cert->id, atls_key_type_name(kt), err);
        what = 0;
    }
    atls_cert_meta_free(&m);
    atls_store_unlock(s->st, lk);
    if ((what & REV_STAPLED) != 0) {
        if (atls_store_bump_generation_for(s->st, sl->cert->id) != ATLS_STORE_OK) {
            atls_log(ATLS_LOG_WARN, "autotls: %s: cannot bump the store generation",
                     sl->cert->id);
        }
        if (s->host.stapled != NULL) {
            s->host.stapled(s->host.ctx, sl->cert->data, sl->cert->id, kt);
        }
    }
    return what;
}

/* Stops stapling kt's response: 1 when one was held (workers reload). */
static int
rev_withdraw(sched_slot_t *sl, atls_cert_kt_info_t *ki)
{
    char err[256];

    if (ki->ocsp_status != ATLS_OCSP_GOOD) {
        return 0;
    }
    if (atls_store_del_ocsp(sl->s->st, sl->cert->id, ki->key_type, err, sizeof(err))
        == ATLS_STORE_ERROR)
    {
        atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\" (%s): cannot remove the "
                 "stored OCSP response: %s", sl->cert->id,
                 atls_key_type_name(ki->key_type), err);
    }
    return 1;
}

typedef struct {
    time_t      now, revoked_at;
    int         reason;
    const char *source;
    int         learned;
} rev_revoked_t;

static int
apply_revoked(sched_slot_t *sl, atls_cert_meta_t *m, atls_cert_kt_info_t *ki, void *arg)
{
    rev_revoked_t *r = arg;
    char           at[32];
    int            what = REV_CHANGED;

    (void) m;
    if (rev_withdraw(sl, ki)) {
        what |= REV_STAPLED;
    }
    if (ki->ocsp_status == ATLS_OCSP_GOOD) {
        ki->ocsp_status = ATLS_OCSP_NONE;
    }
    if (ki->revoked_seen != 0) {
        return what;        /* known already: said once */
    }
    ki->revoked_seen = r->now;
    ki->revoked_at = r->revoked_at;
    ki->revoked_reason = r->reason;
    free(ki->revoked_source);
    ki->revoked_source = atls_strdup(r->source);
    r->learned = 1;
    if (r->revoked_at != 0) {
        atls_rfc3339_format(r->revoked_at, at, sizeof(at));
    } else {
        snprintf(at, sizeof(at), "an unknown time");
    }
    atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\" (%s) serial %s was revoked at %s "
             "(reason %s, %s): replacing it now", sl->cert->id,
             atls_key_type_name(ki->key_type), ki->serial, at,
             atls_crl_reason_name(r->reason),
             strcmp(r->source, "crl") == 0 ? "listed in its CRL"
                                           : "reported by its OCSP responder");
    return what;
}

int
atls_sched_rev_record(sched_slot_t *sl, atls_key_type_t kt, const char *serial,
                      time_t revoked_at, int reason, const char *source)
{
    rev_revoked_t r;

    memset(&r, 0, sizeof(r));
    r.now = time(NULL);
    r.revoked_at = revoked_at;
    r.reason = reason;
    r.source = source;
    (void) rev_update(sl, kt, serial, apply_revoked, &r);
    if (r.learned) {
        atls_event_t e;

        sl->revoked = 1;
        atls_sched_event_init(&e, ATLS_EV_REVOKED);
        e.reason = reason;
        e.revoked_source = source;
        atls_sched_emit_cert(sl, ATLS_EV_REVOKED, kt, &e);
    }
    return r.learned;
}

/* ---- OCSP -------------------------------------------------------------------- */

/* The good answer kt_info says is held, for the refresh rule. */
static int
ocsp_held(const atls_cert_kt_info_t *ki, time_t now, atls_ocsp_answer_t *a)
{
    memset(a, 0, sizeof(*a));
    if (ki->ocsp_status != ATLS_OCSP_GOOD || ki->ocsp_next_update <= now) {
        return 0;
    }
    a->status = ATLS_OCSP_GOOD;
    a->this_update = ki->ocsp_this_update;
    a->next_update = ki->ocsp_next_update;
    return 1;
}

typedef struct {
    time_t                     now;
    const char                *error;      /* a failure, or NULL */
    const atls_ocsp_answer_t  *answer;     /* verified, when error is NULL */
    const unsigned char       *der;
    size_t                     len;
} ocsp_outcome_t;

/* ocsp-refreshed, or ocsp-failed (the first failure of a streak). */
static void
ocsp_emit(sched_slot_t *sl, atls_event_type_t type, const atls_cert_kt_info_t *ki,
          const char *error)
{
    atls_event_t e;

    atls_sched_event_init(&e, type);
    e.outcome = error != NULL ? "error" : NULL;
    e.detail = error;
    atls_sched_emit_cert(sl, type, ki->key_type, &e);
}

static int
ocsp_apply_failure(sched_slot_t *sl, atls_cert_kt_info_t *ki, const ocsp_outcome_t *o)
{
    atls_ocsp_answer_t held;
    char               when[32];
    int                what = REV_CHANGED, have = ocsp_held(ki, o->now, &held);

    ki->ocsp_failures++;
    free(ki->ocsp_error);
    ki->ocsp_error = atls_strdup(o->error);
    if (!have) {
        /* nothing valid to staple any more */
        if (rev_withdraw(sl, ki)) {
            what |= REV_STAPLED;
        }
        ki->ocsp_status = ATLS_OCSP_ERROR;
    }
    ki->ocsp_next_refresh = atls_ocsp_next_refresh(have ? &held : NULL, o->now,
                                                   ki->ocsp_failures,
                                                   rev_jitter(sl->cert->id, ki->key_type));
    if (ki->ocsp_failures == 1) {
        ocsp_emit(sl, ATLS_EV_OCSP_FAILED, ki, o->error);
        atls_rfc3339_format(have ? held.next_update : ki->ocsp_next_refresh, when,
                            sizeof(when));
        atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\" (%s): OCSP (%s): %s; %s %s",
                 sl->cert->id, atls_key_type_name(ki->key_type), ki->ocsp_url, o->error,
                 have ? "the response held is stapled until" : "nothing stapled, asking "
                 "again from", when);
    }
    return what;
}

/* 1 when the stapled response is already these very bytes. */
static int
ocsp_same_as_stored(sched_slot_t *sl, const atls_cert_kt_info_t *ki,
                    const ocsp_outcome_t *o)
{
    unsigned char *der = NULL;
    size_t         len = 0;
    char           err[256];
    int            same;

    if (ki->ocsp_status != ATLS_OCSP_GOOD
        || atls_store_load_ocsp(sl->s->st, sl->cert->id, ki->key_type, &der, &len, err,
                                sizeof(err)) != ATLS_STORE_OK)
    {
        return 0;
    }
    same = der != NULL && len == o->len && memcmp(der, o->der, len) == 0;
    free(der);
    return same;
}

static int
ocsp_apply_answer(sched_slot_t *sl, atls_cert_kt_info_t *ki, const ocsp_outcome_t *o)
{
    const atls_ocsp_answer_t *a = o->answer;
    char                      err[256], until[32];
    int                       what = REV_CHANGED, failures = (int) ki->ocsp_failures;

    if (a->status == ATLS_OCSP_GOOD && ocsp_same_as_stored(sl, ki, o)) {
        /* a responder's cache answered the same bytes: nothing to reload */
    } else if (a->status == ATLS_OCSP_GOOD) {
        if (atls_store_save_ocsp(sl->s->st, sl->cert->id, ki->key_type, o->der, o->len,
                                 err, sizeof(err)) != ATLS_STORE_OK)
        {
            ocsp_outcome_t f = *o;
            char           why[300];

            snprintf(why, sizeof(why), "cannot store the response: %s", err);
            f.error = why;
            return ocsp_apply_failure(sl, ki, &f);
        }
        what |= REV_STAPLED;
    } else if (rev_withdraw(sl, ki)) {
        what |= REV_STAPLED;    /* never staple a revoked or unknown answer */
    }
    if (a->status == ATLS_OCSP_UNKNOWN && ki->ocsp_status != ATLS_OCSP_UNKNOWN) {
        atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\" (%s): its OCSP responder "
                 "does not know it (status unknown): nothing is stapled",
                 sl->cert->id, atls_key_type_name(ki->key_type));
    }
    if (a->status == ATLS_OCSP_GOOD) {
        ocsp_emit(sl, ATLS_EV_OCSP_REFRESHED, ki, NULL);
    }
    ki->ocsp_status = a->status;
    ki->ocsp_this_update = a->this_update;
    ki->ocsp_next_update = atls_ocsp_valid_until(a);
    ki->ocsp_failures = 0;
    free(ki->ocsp_error);
    ki->ocsp_error = NULL;
    ki->ocsp_next_refresh = atls_ocsp_next_refresh(a, o->now, 0,
                                                   rev_jitter(sl->cert->id, ki->key_type));
    atls_rfc3339_format(ki->ocsp_next_update, until, sizeof(until));
    if (failures > 0) {
        atls_log(ATLS_LOG_INFO, "autotls: certificate \"%s\" (%s): OCSP responder "
                 "answers again after %d failure(s): %s, valid until %s", sl->cert->id,
                 atls_key_type_name(ki->key_type), failures,
                 atls_ocsp_status_name(a->status), until);
    } else {
        atls_log(ATLS_LOG_DEBUG, "autotls: certificate \"%s\" (%s): OCSP %s, valid until %s",
                 sl->cert->id, atls_key_type_name(ki->key_type),
                 atls_ocsp_status_name(a->status), until);
    }
    return what;
}

static int
apply_ocsp(sched_slot_t *sl, atls_cert_meta_t *m, atls_cert_kt_info_t *ki, void *arg)
{
    const ocsp_outcome_t *o = arg;

    (void) m;
    if (ki->revoked_seen != 0) {
        return 0;   /* known revoked meanwhile (a CRL, an operator) */
    }
    return o->error != NULL ? ocsp_apply_failure(sl, ki, o) : ocsp_apply_answer(sl, ki, o);
}

/* Records an OCSP outcome for the slot's key type. */
static void
ocsp_record(sched_slot_t *sl, X509 *leaf, const ocsp_outcome_t *o)
{
    char serial[132];

    leaf_serial(leaf, serial, sizeof(serial));
    (void) rev_update(sl, sl->rev_kt, serial, apply_ocsp, (void *) o);
}

static void
ocsp_failed(sched_slot_t *sl, X509 *leaf, time_t now, const char *why)
{
    ocsp_outcome_t o;

    memset(&o, 0, sizeof(o));
    o.now = now;
    o.error = why;
    ocsp_record(sl, leaf, &o);
}

/* Starts an OCSP request for ki in sl: 1 in flight, 0 not (recorded). */
static int
ocsp_start(sched_slot_t *sl, const atls_cert_kt_info_t *ki, time_t now)
{
    atls_http_request_t req;
    X509               *leaf = NULL, *issuer = NULL;
    char                err[256], serial[132];
    int                 rc = 0;

    err[0] = '\0';
    sl->rev_kt = ki->key_type;
    if (atls_sched_rev_chain(sl, ki->key_type, &leaf, &issuer, err, sizeof(err)) != 0) {
        /* the plan orders a certificate whose files are missing */
        atls_log(ATLS_LOG_DEBUG, "autotls: certificate \"%s\" (%s): no OCSP request: %s",
                 sl->cert->id, atls_key_type_name(ki->key_type), err);
        return 0;
    }
    leaf_serial(leaf, serial, sizeof(serial));
    if (!serial_eq(serial, ki->serial)) {
        goto done;          /* replaced meanwhile: the next pass asks */
    }
    if (issuer == NULL) {
        ocsp_failed(sl, leaf, now, "the stored chain has no issuer certificate to ask "
                    "about the leaf with");
        goto done;
    }
    memset(&req, 0, sizeof(req));
    if (atls_ocsp_request(leaf, issuer, ki->ocsp_url, &req, err, sizeof(err)) != 0) {
        ocsp_failed(sl, leaf, now, err);
        goto done;
    }
    memset(&sl->http, 0, sizeof(sl->http));
    sl->http.connect_timeout_ms = SCHED_OCSP_CONNECT_MS;
    sl->http.total_timeout_ms = SCHED_OCSP_TIMEOUT_MS;
    sl->http.max_response = ATLS_OCSP_MAX_BYTES;
    sl->rev_leaf = leaf;
    sl->rev_issuer = issuer;
    leaf = issuer = NULL;
    sl->rev_crl = NULL;
    if (atls_sched_slot_send(sl, &req) == 0) {
        rc = 1;
    } else {
        ocsp_failed(sl, sl->rev_leaf, now, "cannot start the HTTP transfer");
        atls_sched_rev_clear(sl);
    }
    atls_http_request_free(&req);

done:
    X509_free(leaf);
    X509_free(issuer);
    return rc;
}

static void
ocsp_end(sched_slot_t *sl, const atls_http_response_t *resp)
{
    atls_ocsp_answer_t a;
    ocsp_outcome_t     o;
    char               err[300];
    time_t             now = time(NULL);

    memset(&o, 0, sizeof(o));
    o.now = now;
    err[0] = '\0';
    if (resp == NULL || resp->transport_error) {
        snprintf(err, sizeof(err), "no answer: %s",
                 resp != NULL && resp->error[0] ? resp->error : "transfer failed");
    } else if (resp->status != 200) {
        snprintf(err, sizeof(err), "HTTP status %ld", resp->status);
    } else if (resp->body == NULL || resp->body_len == 0) {
        snprintf(err, sizeof(err), "empty response");
    } else if (atls_ocsp_verify((const unsigned char *) resp->body, resp->body_len,
                                sl->rev_leaf, sl->rev_issuer, now, &a, err, sizeof(err))
               != 0)
    {
        if (err[0] == '\0') {
            snprintf(err, sizeof(err), "the response does not verify");
        }
    } else {
        o.answer = &a;
        o.der = (const unsigned char *) resp->body;
        o.len = resp->body_len;
    }
    if (o.answer == NULL) {
        o.error = err;
        ocsp_record(sl, sl->rev_leaf, &o);
        return;
    }
    if (a.status == ATLS_OCSP_REVOKED) {
        char serial[132];

        leaf_serial(sl->rev_leaf, serial, sizeof(serial));
        /* the facts of the answer first, then the revocation itself */
        ocsp_record(sl, sl->rev_leaf, &o);
        (void) atls_sched_rev_record(sl, sl->rev_kt, serial, a.revoked_at, a.reason, "ocsp");
        return;
    }
    ocsp_record(sl, sl->rev_leaf, &o);
}

/* ---- the slot's revocation work ------------------------------------------------- */

void
atls_sched_rev_clear(sched_slot_t *sl)
{
    X509_free(sl->rev_leaf);
    X509_free(sl->rev_issuer);
    sl->rev_leaf = NULL;
    sl->rev_issuer = NULL;
    if (sl->rev_crl != NULL) {
        sl->rev_crl->fetching = 0;
        sl->rev_crl = NULL;
    }
}

/* The certificate's meta as stored now, with the configured settings. */
static void
rev_reload(sched_slot_t *sl)
{
    atls_cert_meta_t m;
    char             err[256];

    memset(&m, 0, sizeof(m));
    if (atls_store_load_meta(sl->s->st, sl->cert->id, &m, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        atls_cert_meta_free(&m);
        return;
    }
    atls_issuer_free(&m.issuer);
    atls_issuer_copy(&m.issuer, &sl->cert->issuer);
    atls_cert_meta_free(&sl->meta);
    sl->meta = m;
}

/* The URLs read from a stored leaf, for an entry that records none. */
typedef struct {
    char *ocsp_url, *crl_url;
} rev_urls_t;

static int
apply_urls(sched_slot_t *sl, atls_cert_meta_t *m, atls_cert_kt_info_t *ki, void *arg)
{
    rev_urls_t *u = arg;

    (void) sl;
    (void) m;
    if (ki->ocsp_url != NULL || ki->crl_url != NULL) {
        return 0;
    }
    ki->ocsp_url = u->ocsp_url;
    ki->crl_url = u->crl_url;
    u->ocsp_url = u->crl_url = NULL;
    return REV_CHANGED;
}

/*
 * Stores written before meta recorded revocation URLs: read them from each
 * stored leaf once per process (both NULL may also mean "none": the flag
 * keeps that from being parsed again at every pass).  The lock is taken
 * only when a leaf names one.
 */
static void
rev_backfill_urls(sched_slot_t *sl)
{
    size_t i;
    int    changed = 0;

    sl->cert->urls_checked = 1;
    for (i = 0; i < sl->meta.n_kt_info && i < ATLS_KEY_TYPE_MAX; i++) {
        const atls_cert_kt_info_t *ki = &sl->meta.kt_info[i];
        X509                      *leaf = NULL, *issuer = NULL;
        rev_urls_t                 u;
        char                       err[256], serial[132];

        if (ki->ocsp_url != NULL || ki->crl_url != NULL || ki->serial == NULL
            || atls_sched_rev_chain(sl, ki->key_type, &leaf, &issuer, err, sizeof(err)) != 0)
        {
            continue;
        }
        leaf_serial(leaf, serial, sizeof(serial));
        u.ocsp_url = atls_ocsp_url(leaf);
        u.crl_url = atls_crl_url(leaf);
        if (serial_eq(serial, ki->serial) && (u.ocsp_url != NULL || u.crl_url != NULL)) {
            changed |= rev_update(sl, ki->key_type, serial, apply_urls, &u) != 0;
        }
        free(u.ocsp_url);
        free(u.crl_url);
        X509_free(leaf);
        X509_free(issuer);
    }
    if (changed) {
        rev_reload(sl);
    }
}

static unsigned
kt_bit(atls_key_type_t kt)
{
    return 1u << (unsigned) kt;
}

/* Re-plans the certificate after a key type was learned revoked. */
static sched_rev_t
rev_replan(sched_slot_t *sl, time_t now)
{
    atls_sched_t *s = sl->s;

    rev_reload(sl);
    atls_job_plan(&sl->meta, now, sl->request_at, 0, s->ari, &sl->plan);
    if (sl->plan.kind != ATLS_PLAN_ORDER || sl->plan.n_kts == 0) {
        return SCHED_REV_NONE;
    }
    sl->rev = 0;
    sl->ari = 0;
    sl->next_kt = 0;
    sl->ordered = 1;
    atls_log(ATLS_LOG_DEBUG, "autotls: certificate \"%s\": %s", sl->cert->id,
             sl->plan.reason ? sl->plan.reason : "revoked");
    return SCHED_REV_ORDER;
}

/* A key type worth asking about: served, not expired, not known revoked
 * (the plan replaces that one). */
static int
rev_kt_live(const atls_cert_kt_info_t *ki, time_t now)
{
    return ki != NULL && ki->revoked_seen == 0 && ki->serial != NULL && ki->not_after > now;
}

/* Its responder is asked (else its CRL, when it names one). */
static int
rev_uses_ocsp(const sched_slot_t *sl, const atls_cert_kt_info_t *ki)
{
    return ki->ocsp_url != NULL && !sl->meta.issuer.stapling_off;
}

sched_rev_t
atls_sched_rev_next(sched_slot_t *sl, int may_order)
{
    atls_sched_t   *s = sl->s;
    atls_key_type_t kts[ATLS_KEY_TYPE_MAX];
    time_t          now = time(NULL);
    size_t          i, n;

    if (s->stopping || s->freeing) {
        return SCHED_REV_NONE;
    }
    if (!sl->cert->urls_checked) {
        rev_backfill_urls(sl);
    }
    sl->rev = 1;
    /* the configured key types only: a certificate no longer served is
     * not asked about */
    n = atls_job_key_types(&sl->meta.issuer, kts);
    for (i = 0; i < n; i++) {
        const atls_cert_kt_info_t *ki = atls_job_kt_info(&sl->meta, kts[i]);

        if (!rev_kt_live(ki, now)) {
            continue;   /* the plan replaces it; nothing to ask about it */
        }
        if (rev_uses_ocsp(sl, ki)) {
            if (now >= ki->ocsp_next_refresh && (sl->tried & kt_bit(ki->key_type)) == 0) {
                if (!atls_sched_rate_take(s, sl->cert, now)) {
                    continue;   /* its turn under the CA's rate: cert->rate_at */
                }
                sl->tried |= kt_bit(ki->key_type);
                if (ocsp_start(sl, ki, now)) {
                    return SCHED_REV_OP;
                }
            }
            continue;
        }
        if (ki->crl_url == NULL) {
            continue;
        }
        (void) atls_sched_crl_check(sl, ki, now);
        if ((sl->tried & kt_bit(ki->key_type)) == 0 && atls_sched_crl_fetch(sl, ki, now)) {
            sl->tried |= kt_bit(ki->key_type);
            return SCHED_REV_OP;
        }
    }
    /* sl->rev stays set: the slot's end is not an order's */
    if (sl->revoked && may_order && !sl->ordered) {
        return rev_replan(sl, now);
    }
    atls_sched_rev_schedule(sl, now);
    return SCHED_REV_NONE;
}

void
atls_sched_rev_schedule(sched_slot_t *sl, time_t now)
{
    atls_sched_t   *s = sl->s;
    atls_key_type_t kts[ATLS_KEY_TYPE_MAX];
    time_t          due = 0, t;
    size_t          i, n = atls_job_key_types(&sl->meta.issuer, kts);
    long long       at;

    for (i = 0; i < n; i++) {
        const atls_cert_kt_info_t *ki = atls_job_kt_info(&sl->meta, kts[i]);
        sched_crl_t               *c;

        if (!rev_kt_live(ki, now)) {
            continue;
        }
        if (rev_uses_ocsp(sl, ki)) {
            t = ki->ocsp_next_refresh;
            if (sl->cert->rate_at > t) {
                t = sl->cert->rate_at;
            }
        } else if (ki->crl_url != NULL) {
            c = atls_sched_crl(s, ki->crl_url);
            t = c->crl != NULL || c->failures > 0 ? c->next_fetch : now;
        } else {
            continue;
        }
        if (t < now + SCHED_REV_MIN_WAIT_S) {
            t = now + SCHED_REV_MIN_WAIT_S;
        }
        if (due == 0 || t < due) {
            due = t;
        }
    }
    /* the next expiry alert comes through the same wake-up */
    t = sl->cert->warn_due > now ? sl->cert->warn_due : now + 1;
    if (sl->cert->warn_due != 0 && (due == 0 || t < due)) {
        due = t;
    }
    sl->cert->rev_due = due;
    if (due == 0) {
        return;
    }
    at = atls_sched_now_ms() + (long long) (due - now) * 1000;
    if (s->rev_wake == 0 || at < s->rev_wake) {
        s->rev_wake = at;
    }
}

void
atls_sched_rev_done(sched_slot_t *sl, const atls_http_response_t *resp)
{
    if (sl->rev_crl != NULL) {
        atls_sched_crl_end(sl, resp);
    } else {
        ocsp_end(sl, resp);
    }
    atls_sched_rev_clear(sl);
    rev_reload(sl);
    switch (atls_sched_rev_next(sl, 1)) {
    case SCHED_REV_OP:
        return;
    case SCHED_REV_ORDER:
        (void) atls_sched_slot_start(sl);
        return;
    case SCHED_REV_NONE:
    default:
        atls_sched_slot_end(sl);
        return;
    }
}
