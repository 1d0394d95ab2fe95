/*
 * Jobs: one certificate's life, tying the ACME engine to the store.
 *
 * The store is the durable truth: a job reads the job state (failures,
 * backoff, generation) from it under the certificate's lock, and writes the
 * outcome back before unlocking.  A failed attempt never touches the stored
 * key and chain: the server keeps serving what it has.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/x509.h>
#include "atls.h"
#include "atls_acme.h"
#include "atls_crypto.h"
#include "atls_job.h"
#include "job_int.h"
#include "atls_problem.h"
#include "atls_schedule.h"
#include "atls_store.h"

struct atls_job_s {
    atls_store_t      *st;
    atls_cert_meta_t   meta;        /* names/issuer from the caller, job state from the store */
    atls_key_type_t    kt;
    atls_acme_t       *engine;
    EVP_PKEY          *cert_key;
    EVP_PKEY          *account_key;
    char              *account_url;
    char              *replaces;
    atls_store_lock_t *lock;
    atls_error_t       error;       /* why finish failed (cls NONE: it did not) */
    int                account_key_made; /* start generated the account key */
    char              *lagged;      /* cluster nodes that had not confirmed the
                                       challenges ("" unknown which); NULL: all
                                       did (atls_job_set_lagged) */
    int                lag_counted; /* finish counted the failure transient
                                       because of them */
};

/* ---- small helpers ------------------------------------------------------ */

/* equal strings, NULL equal only to NULL (job_ensure.c too) */
int
atls_job_str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return strcmp(a, b) == 0;
}

static char *
names_join(const atls_cert_meta_t *m)
{
    size_t i, len = 1;
    char  *s;

    for (i = 0; i < m->n_names; i++) {
        len += strlen(m->names[i]) + 2;
    }
    s = malloc(len);
    if (s == NULL) {
        abort();
    }
    s[0] = '\0';
    for (i = 0; i < m->n_names; i++) {
        if (i > 0) {
            strcat(s, ", ");
        }
        strcat(s, m->names[i]);
    }
    return s;
}

/* ---- start / finish ----------------------------------------------------- */

/* 1 when stored holds another certificate of kt than planned did (a
 * serial where there was none, or a different one). */
static int
job_superseded(const atls_cert_meta_t *planned, const atls_cert_meta_t *stored,
               atls_key_type_t kt)
{
    const atls_cert_kt_info_t *p = atls_job_kt_info(planned, kt);
    const atls_cert_kt_info_t *n = atls_job_kt_info(stored, kt);

    if (n == NULL || n->serial == NULL || n->serial[0] == '\0') {
        return 0;
    }
    return p == NULL || p->serial == NULL || strcmp(p->serial, n->serial) != 0;
}

static atls_job_t *job_start(atls_store_t *st, const atls_cert_meta_t *m, atls_key_type_t kt,
                             int planned, atls_job_refusal_t *why, char *err, size_t errlen);

atls_job_t *
atls_job_start(atls_store_t *st, const atls_cert_meta_t *m, atls_key_type_t kt,
               char *err, size_t errlen)
{
    atls_job_refusal_t why;

    return job_start(st, m, kt, 0, &why, err, errlen);
}

atls_job_t *
atls_job_start_planned(atls_store_t *st, const atls_cert_meta_t *m, atls_key_type_t kt,
                       atls_job_refusal_t *why, char *err, size_t errlen)
{
    return job_start(st, m, kt, 1, why, err, errlen);
}

static atls_job_t *
job_start(atls_store_t *st, const atls_cert_meta_t *m, atls_key_type_t kt, int planned,
          atls_job_refusal_t *why, char *err, size_t errlen)
{
    atls_job_t          *j;
    atls_cert_meta_t     stored;
    atls_order_params_t  p;
    atls_error_t         aerr;
    STACK_OF(X509)      *chain = NULL;
    char                 tmp[256];
    int                  rc, created = 0;

    if (m == NULL || m->id == NULL || m->n_names == 0 || m->issuer.directory == NULL) {
        snprintf(err, errlen, "incomplete certificate settings");
        return NULL;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    j->st = st;
    j->kt = kt;
    *why = ATLS_JOB_NOT_STARTED;

    rc = atls_job_lock(st, m->id, &j->lock, err, errlen);
    if (rc != 0) {
        *why = rc == -2 ? ATLS_JOB_BUSY : ATLS_JOB_NOT_STARTED;
        goto failed;
    }

    /* Job state from the store (another process may have moved it on),
     * configuration from the caller (it holds the EAB secret). */
    memset(&stored, 0, sizeof(stored));
    rc = atls_store_load_meta(st, m->id, &stored, err, errlen);
    if (rc == ATLS_STORE_OK && planned && job_superseded(m, &stored, kt)) {
        snprintf(err, errlen, "already renewed by another process (serial %s)",
                 atls_job_kt_info(&stored, kt)->serial);
        *why = ATLS_JOB_SUPERSEDED;
        atls_cert_meta_free(&stored);
        goto failed;
    }
    if (rc == ATLS_STORE_OK) {
        atls_cert_meta_copy(&j->meta, &stored);
        atls_cert_meta_free(&stored);
        atls_strv_free(j->meta.names, j->meta.n_names);
        j->meta.names = atls_strv_dup(m->names, m->n_names);
        j->meta.n_names = m->n_names;
        atls_issuer_free(&j->meta.issuer);
        atls_issuer_copy(&j->meta.issuer, &m->issuer);
    } else if (rc == ATLS_STORE_NOTFOUND) {
        atls_cert_meta_free(&stored);
        atls_cert_meta_copy(&j->meta, m);
    } else {
        atls_cert_meta_free(&stored);
        goto failed;
    }

    if (atls_store_load_account(st, j->meta.issuer.directory, &j->account_key,
                                &j->account_url, &created, err, errlen) != ATLS_STORE_OK)
    {
        goto failed;
    }
    j->account_key_made = created;

    j->cert_key = atls_key_generate(kt);
    if (j->cert_key == NULL) {
        snprintf(err, errlen, "cannot generate a %s key", atls_key_type_name(kt));
        goto failed;
    }

    if (atls_store_load_cert(st, m->id, kt, NULL, &chain, tmp, sizeof(tmp)) == ATLS_STORE_OK
        && chain != NULL && sk_X509_num(chain) > 0)
    {
        j->replaces = atls_ari_cert_id(sk_X509_value(chain, 0));
    }
    atls_chain_free(chain);

    memset(&p, 0, sizeof(p));
    p.directory_url = j->meta.issuer.directory;
    p.account_key = j->account_key;
    p.account_url = j->account_url;
    p.account_known_key = !created;
    p.contact = (const char *const *) j->meta.issuer.contact;
    p.n_contact = j->meta.issuer.n_contact;
    p.agree_tos = j->meta.issuer.agree_tos;
    p.eab_kid = j->meta.issuer.eab_kid;
    p.eab_hmac_b64url = j->meta.issuer.eab_hmac;
    p.names = (const char *const *) j->meta.names;
    p.n_names = j->meta.n_names;
    p.challenge = j->meta.issuer.challenge;
    p.cert_key = j->cert_key;
    p.csr_with_cn = j->meta.issuer.csr_cn;
    p.must_staple = j->meta.issuer.must_staple;
    p.profile = j->meta.issuer.profile;
    p.profile_required = j->meta.issuer.profile_required;
    p.preferred_chain = j->meta.issuer.preferred_chain;
    p.replaces = j->replaces;

    memset(&aerr, 0, sizeof(aerr));
    j->engine = atls_acme_order_new(&p, &aerr);
    if (j->engine == NULL) {
        snprintf(err, errlen, "%s: %s", aerr.type[0] ? aerr.type : "autotls:internal",
                 aerr.detail[0] ? aerr.detail : "cannot start the order");
        goto failed;
    }
    atls_acme_allow_foreign_urls(j->engine, j->meta.issuer.insecure_ca_urls);

    /* The old certificate stays in place and keeps being served. */
    j->meta.state = ATLS_STATE_RENEWING;
    j->meta.last_attempt = time(NULL);
    if (atls_store_save_meta(st, &j->meta, err, errlen) != ATLS_STORE_OK) {
        goto failed;
    }
    return j;

failed:
    atls_job_free(j);
    return NULL;
}

atls_acme_t *
atls_job_engine(atls_job_t *j)
{
    return j ? j->engine : NULL;
}

const atls_cert_meta_t *
atls_job_meta(atls_job_t *j)
{
    return j ? &j->meta : NULL;
}

int
atls_job_made_account_key(const atls_job_t *j)
{
    return j != NULL && j->account_key_made;
}

void
atls_job_set_lagged(atls_job_t *j, const char *missing)
{
    free(j->lagged);
    j->lagged = missing != NULL ? atls_strdup(missing) : NULL;
}

const atls_error_t *
atls_job_lagged_error(const atls_job_t *j)
{
    return j != NULL && j->lag_counted ? &j->error : NULL;
}

static void
job_unlock(atls_job_t *j)
{
    if (j->lock != NULL) {
        atls_store_unlock(j->st, j->lock);
        j->lock = NULL;
    }
}

/* 1 when kt is the last key type of the certificate to be worked on. */
static int
is_last_key_type(const atls_cert_meta_t *m, atls_key_type_t kt)
{
    atls_key_type_t kts[ATLS_KEY_TYPE_MAX];
    size_t          n = atls_job_key_types(&m->issuer, kts);

    return kts[n - 1] == kt;
}

static void
save_account_url(atls_job_t *j, atls_cert_meta_t *cur)
{
    const char *url = atls_acme_result_account_url(j->engine);
    char        err[256];

    if (url == NULL || url[0] == '\0') {
        return;
    }
    if (!atls_job_str_eq(url, j->account_url)) {
        if (atls_store_save_account(j->st, j->meta.issuer.directory, url,
                                    j->meta.issuer.contact, j->meta.issuer.n_contact,
                                    err, sizeof(err)) != ATLS_STORE_OK)
        {
            atls_log(ATLS_LOG_WARN, "autotls: %s: cannot save the account URL: %s",
                     j->meta.id, err);
        } else {
            free(j->account_url);
            j->account_url = atls_strdup(url);
        }
    }
    if (!atls_job_str_eq(url, cur->account_url)) {
        free(cur->account_url);
        cur->account_url = atls_strdup(url);
    }
}

/* The earliest renewal moment over the configured key types' certificates. */
static time_t
job_renew_at(const atls_cert_meta_t *m)
{
    atls_key_type_t kts[ATLS_KEY_TYPE_MAX];
    size_t          i, n = atls_job_key_types(&m->issuer, kts);
    time_t          best = 0, t;

    for (i = 0; i < n; i++) {
        const atls_cert_kt_info_t *ki = atls_job_kt_info(m, kts[i]);

        if (ki == NULL) {
            continue;
        }
        t = atls_schedule_renew_at(ki->not_before, ki->not_after, &m->issuer.renew,
                                   atls_random_u64());
        if (best == 0 || t < best) {
            best = t;
        }
    }
    return best;
}

/* The earliest notAfter of m's certificates; 0 when it has none. */
static time_t
job_not_after(const atls_cert_meta_t *m)
{
    atls_key_type_t kts[ATLS_KEY_TYPE_MAX];
    size_t          i, n = atls_job_key_types(&m->issuer, kts);
    time_t          earliest = 0;

    for (i = 0; i < n; i++) {
        const atls_cert_kt_info_t *ki = atls_job_kt_info(m, kts[i]);

        if (ki != NULL && (earliest == 0 || ki->not_after < earliest)) {
            earliest = ki->not_after;
        }
    }
    return earliest;
}

static int
job_deploy(atls_job_t *j, atls_cert_meta_t *cur, const char *chain_pem, time_t now,
           char *err, size_t errlen)
{
    STACK_OF(X509)   *chain;
    atls_cert_info_t  info;
    char             *names;
    char              until[32];
    char              serr[256];

    if (atls_store_save_cert(j->st, j->meta.id, j->kt, j->cert_key, chain_pem,
                             err, errlen) != ATLS_STORE_OK)
    {
        return -1;
    }

    /* save_cert validated this chain: its leaf is what the store now holds */
    memset(&info, 0, sizeof(info));
    chain = atls_chain_parse(chain_pem, strlen(chain_pem), serr, sizeof(serr));
    if (chain != NULL && sk_X509_num(chain) > 0
        && atls_cert_info(sk_X509_value(chain, 0), &info) == 0)
    {
        info.key_type = j->kt;
        /* with where its revocation is published; its OCSP facts start over */
        atls_cert_meta_set_kt_leaf(cur, &info, sk_X509_value(chain, 0));
    }
    /* The response stapled with the previous certificate says nothing about
     * this one: never staple it again.  The scheduler fetches one for the
     * new certificate right after this deploy (ocsp_next_refresh 0). */
    if (atls_store_del_ocsp(j->st, j->meta.id, j->kt, serr, sizeof(serr)) == ATLS_STORE_ERROR) {
        atls_log(ATLS_LOG_WARN, "autotls: %s (%s): cannot remove the previous OCSP "
                 "response: %s", cur->id, atls_key_type_name(j->kt), serr);
    }

    cur->state = ATLS_STATE_VALID;
    cur->failures = 0;
    cur->next_attempt = 0;
    atls_cert_meta_set_error(cur, NULL);
    cur->last_success = now;
    cur->renew_at = job_renew_at(cur);
    cur->generation++;
    /* ARI answers were about the certificate just replaced. */
    cur->ari_next_check = 0;
    cur->ari_window_start = 0;
    cur->ari_window_end = 0;
    cur->ari_failures = 0;

    if (atls_store_save_meta(j->st, cur, serr, sizeof(serr)) != ATLS_STORE_OK) {
        /* The certificate is deployed; stale meta only means an early renewal. */
        atls_log(ATLS_LOG_WARN, "autotls: %s: cannot save job state: %s", cur->id, serr);
    }
    if (atls_store_bump_generation_for(j->st, cur->id) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "autotls: %s: cannot bump the store generation", cur->id);
    }
    if (is_last_key_type(cur, j->kt)) {
        (void) atls_store_take_request(j->st, cur->id);
    }

    names = names_join(cur);
    atls_rfc3339_format(info.not_after, until, sizeof(until));
    atls_log(ATLS_LOG_INFO,
             "autotls: certificate \"%s\" (%s) issued and deployed: %s, issued by %s, "
             "serial %s, valid until %s", cur->id, atls_key_type_name(j->kt), names,
             info.issuer[0] ? info.issuer : "?", info.serial[0] ? info.serial : "?", until);
    free(names);
    atls_cert_info_free(&info);
    atls_chain_free(chain);
    return 0;
}

/* "6h00m", "2m30s": a delay for a log line. */
static void
job_delay_text(time_t d, char *buf, size_t len)
{
    if (d >= 3600) {
        snprintf(buf, len, "%ldh%02ldm", (long) (d / 3600), (long) (d % 3600 / 60));
    } else if (d >= 60) {
        snprintf(buf, len, "%ldm%02lds", (long) (d / 60), (long) (d % 60));
    } else {
        snprintf(buf, len, "%lds", (long) (d > 0 ? d : 0));
    }
}

/* The next attempt after failure number cur->failures: the backoff of the
 * error's class (*backoff), never letting the served certificate run out;
 * sooner, and the error transient, when a cluster node that had not
 * confirmed the challenges caused it (job_lagged.c). */
static time_t
job_next_attempt(atls_job_t *j, const atls_cert_meta_t *cur, time_t now,
                 atls_err_class_t *backoff)
{
    time_t next;

    next = atls_schedule_backoff_class(*backoff, cur->failures, now, j->error.retry_after,
                                       atls_random_u64());
    /* No Retry-After or backoff may let the served certificate run out. */
    next = atls_schedule_before_expiry(next, now, job_not_after(cur));
    if (j->lagged != NULL
        && atls_job_lagged_failure(&j->error, j->lagged, cur->failures, now, &next) == 1)
    {
        j->lag_counted = 1;
        *backoff = ATLS_ERR_RETRY_LATER;
    }
    return next;
}

/* Records j->error as the outcome: the backoff its class calls for, the
 * error in parts in meta; never the stored certificate (still served).
 * One meta write and one log line per failure. */
static void
job_failed(atls_job_t *j, atls_cert_meta_t *cur, time_t now, char *err, size_t errlen)
{
    atls_error_t     *e = &j->error;
    atls_err_class_t  backoff = atls_problem_backoff_class(e);
    char              next[32], delay[32];
    char              serr[256];

    snprintf(e->cert_id, sizeof(e->cert_id), "%s", cur->id);
    snprintf(e->key_type, sizeof(e->key_type), "%s", atls_key_type_name(j->kt));
    if (e->cls == ATLS_ERR_NONE || e->cls == ATLS_ERR_RETRY_NOW) {
        /* the engine gave up on what it retries itself: come back later */
        e->cls = ATLS_ERR_RETRY_LATER;
    }
    cur->failures++;
    cur->next_attempt = job_next_attempt(j, cur, now, &backoff);
    atls_cert_meta_set_error(cur, e);
    cur->state = ATLS_STATE_FAILED;

    if (atls_store_save_meta(j->st, cur, serr, sizeof(serr)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "autotls: %s: cannot save job state: %s", cur->id, serr);
    }
    atls_rfc3339_format(cur->next_attempt, next, sizeof(next));
    job_delay_text(cur->next_attempt - now, delay, sizeof(delay));
    if (backoff == ATLS_ERR_PERMANENT) {
        atls_log(ATLS_LOG_ERR, "autotls: certificate \"%s\" (%s): order failed: %s: %s "
                 "(attempt %u; permanent error: next attempt in %s, at %s, or on an "
                 "operator request)", cur->id, e->key_type, e->type, e->detail,
                 cur->failures, delay, next);
    } else {
        atls_log(ATLS_LOG_ERR, "autotls: certificate \"%s\" (%s): order failed: %s: %s "
                 "(attempt %u, next at %s)", cur->id, e->key_type, e->type, e->detail,
                 cur->failures, next);
    }
    snprintf(err, errlen, "%s", cur->last_error);
}

/* j->error for an engine that ended without a certificate. */
static void
job_engine_error(atls_job_t *j)
{
    const atls_error_t *ae = atls_acme_error(j->engine);

    if (ae != NULL && ae->type[0] != '\0') {
        j->error = *ae;
        if (j->error.detail[0] == '\0') {
            snprintf(j->error.detail, sizeof(j->error.detail), "(no detail)");
        }
        return;
    }
    atls_error_set(&j->error, ATLS_ERR_RETRY_LATER, "autotls:internal",
                   "the order stopped in state %s", atls_acme_state_name(j->engine));
}

int
atls_job_finish(atls_job_t *j, time_t now, char *err, size_t errlen)
{
    atls_cert_meta_t    cur;
    const char         *chain_pem;
    char                serr[256];
    int                 rc = -1;

    if (j == NULL || j->engine == NULL) {
        snprintf(err, errlen, "no job");
        return -1;
    }
    memset(&j->error, 0, sizeof(j->error));
    j->lag_counted = 0;

    /* Configuration may have been changed by ensure() meanwhile: apply the
     * outcome to what is stored now. */
    memset(&cur, 0, sizeof(cur));
    if (atls_store_load_meta(j->st, j->meta.id, &cur, serr, sizeof(serr)) != ATLS_STORE_OK) {
        atls_cert_meta_free(&cur);
        atls_cert_meta_copy(&cur, &j->meta);
    }

    /* a store from before kt_info: the backoff below must know what expires */
    (void) atls_job_kt_info_load(j->st, &cur);
    save_account_url(j, &cur);

    chain_pem = atls_acme_result_chain_pem(j->engine);
    /* Only a DONE engine has a chain; its error may still hold a badNonce
     * that was retried successfully, so the error is not consulted here. */
    if (chain_pem != NULL && chain_pem[0] != '\0') {
        if (job_deploy(j, &cur, chain_pem, now, err, errlen) == 0) {
            rc = 0;
        } else {
            atls_error_set(&j->error, ATLS_ERR_RETRY_LATER, "autotls:store", "%s", err);
            job_failed(j, &cur, now, err, errlen);
        }
    } else {
        job_engine_error(j);
        job_failed(j, &cur, now, err, errlen);
    }

    atls_cert_meta_free(&j->meta);
    j->meta = cur;
    job_unlock(j);
    return rc;
}

const atls_error_t *
atls_job_finish_error(const atls_job_t *j)
{
    if (j == NULL || j->error.cls == ATLS_ERR_NONE) {
        return NULL;
    }
    return &j->error;
}

void
atls_job_free(atls_job_t *j)
{
    if (j == NULL) {
        return;
    }
    job_unlock(j);
    atls_acme_free(j->engine);
    EVP_PKEY_free(j->cert_key);
    EVP_PKEY_free(j->account_key);
    free(j->account_url);
    free(j->replaces);
    free(j->lagged);
    atls_cert_meta_free(&j->meta);
    free(j);
}

/* ---- blocking runs -------------------------------------------------------- */

void
atls_job_http_opts(const atls_issuer_t *is, atls_http_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    if (is != NULL && is->ca_file != NULL && is->ca_file[0] != '\0') {
        opts->ca_file = is->ca_file;
    }
}

int
atls_job_run_blocking_meta(atls_store_t *st, const atls_cert_meta_t *m,
                           const atls_challenge_ops_t *ops, char *err, size_t errlen)
{
    atls_key_type_t      kts[ATLS_KEY_TYPE_MAX];
    atls_challenge_ops_t hook_ops;
    atls_http_opts_t     http;
    size_t               i, n = atls_job_key_types(&m->issuer, kts);
    int                  rc = 0;

    ops = atls_job_challenge_ops(&m->issuer, ops, &hook_ops);
    atls_job_http_opts(&m->issuer, &http);

    for (i = 0; i < n; i++) {
        char        kerr[512];
        atls_job_t *j = atls_job_start(st, m, kts[i], kerr, sizeof(kerr));

        if (j == NULL) {
            if (rc == 0) {
                snprintf(err, errlen, "%s (%s): %s", m->id, atls_key_type_name(kts[i]), kerr);
            }
            return -1;
        }
        (void) atls_acme_run_blocking(j->engine, &http, ops);
        if (atls_job_finish(j, time(NULL), kerr, sizeof(kerr)) != 0) {
            if (rc == 0) {
                snprintf(err, errlen, "%s (%s): %s", m->id, atls_key_type_name(kts[i]), kerr);
            }
            rc = -1;
        }
        atls_job_free(j);
    }
    return rc;
}

int
atls_job_run_blocking(atls_store_t *st, const char *id, const atls_challenge_ops_t *ops,
                      char *err, size_t errlen)
{
    atls_cert_meta_t m;
    int              rc;

    if (atls_job_load(st, id, &m, err, errlen) != 0) {
        return -1;
    }
    rc = atls_job_run_blocking_meta(st, &m, ops, err, errlen);
    atls_cert_meta_free(&m);
    return rc;
}
