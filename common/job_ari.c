/*
 * ARI (RFC 9773) in the renewal schedule: ask the CA when it wants the
 * current certificate renewed, and let an earlier answer win.
 *
 * The CA can only pull renewal forward: a window later than our own
 * schedule never postpones it (our schedule already leaves room for a CA
 * outage), while an earlier one -- a CA that revokes early after an
 * incident -- moves renew_at into the window.  What was asked and when to
 * ask again are persisted in the meta, so a reload does not re-ask.
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
#include "atls_schedule.h"
#include "atls_store.h"
#include "store_ari.h"

#define ARI_RECHECK_DEFAULT  (6 * 3600)     /* no Retry-After from the CA */
#define ARI_RECHECK_NONE     (24 * 3600)    /* the CA offers no renewalInfo */
#define ARI_RECHECK_MIN      60             /* a CA asking for less is clamped */
#define ARI_RECHECK_MAX      (24 * 3600)    /* ... and for more, too */

int
atls_job_ari_due(const atls_cert_meta_t *m, time_t now)
{
    if (m == NULL || m->state != ATLS_STATE_VALID) {
        return 0;
    }
    return m->ari_next_check == 0 || now >= m->ari_next_check;
}

/* The leaf ARI is asked about: the first configured key type's. */
static X509 *
ari_leaf(atls_store_t *st, const atls_cert_meta_t *m, char *err, size_t errlen)
{
    STACK_OF(X509)  *chain = NULL;
    atls_key_type_t  kt = m->issuer.n_key_types > 0 ? m->issuer.key_types[0]
                                                    : ATLS_KEY_EC256;
    X509            *leaf;

    if (atls_store_load_cert(st, m->id, kt, NULL, &chain, err, errlen) != ATLS_STORE_OK
        || chain == NULL || sk_X509_num(chain) < 1)
    {
        atls_chain_free(chain);
        snprintf(err, errlen, "%s has no %s certificate to ask renewal information for",
                 m->id, atls_key_type_name(kt));
        return NULL;
    }
    leaf = sk_X509_value(chain, 0);
    if (X509_up_ref(leaf) != 1) {
        leaf = NULL;
        snprintf(err, errlen, "out of memory");
    }
    atls_chain_free(chain);
    return leaf;
}

/*
 * "This directory offers no renewalInfo", said once for the directory
 * (store_ari.h), not in each certificate's meta: 10,000 certificates of
 * one CA cost one write a day, not 10,000.  Written only when the store
 * does not say so already (several queries may end at once).
 */
static void
ari_record_directory(atls_store_t *st, const char *directory, time_t now)
{
    time_t until = 0;
    char   err[512];

    if (directory == NULL
        || (atls_store_load_ari_dir(st, directory, &until, err, sizeof(err))
            == ATLS_STORE_OK && until > now + ARI_RECHECK_NONE / 2))
    {
        return;
    }
    if (atls_store_save_ari_dir(st, directory, now + ARI_RECHECK_NONE, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        atls_log(ATLS_LOG_WARN, "autotls: %s: cannot record that the CA offers no "
                 "renewal information: %s", directory, err);
    }
}

/* A query that failed (transport, bad answer): asked again after a backoff
 * of its own per certificate (60 s doubling, capped at 24 h, the CA's
 * Retry-After honoured within that), so an unreachable renewalInfo
 * endpoint is not asked on every pass. */
static void
ari_record_failure(atls_store_t *st, const char *id, const atls_error_t *ae, time_t now)
{
    atls_store_lock_t *lk;
    atls_cert_meta_t   m;
    char               err[256];

    if (atls_job_lock_load(st, id, &lk, &m, err, sizeof(err)) != 0) {
        return;
    }
    m.ari_failures++;
    m.ari_next_check = atls_schedule_backoff(m.ari_failures, now,
                                             ae != NULL ? ae->retry_after : 0,
                                             atls_random_u64());
    if (atls_store_save_meta(st, &m, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "autotls: %s: cannot save the renewal information "
                 "state: %s", id, err);
    }
    atls_cert_meta_free(&m);
    atls_store_unlock(st, lk);
}

atls_acme_t *
atls_job_ari_start(atls_store_t *st, const atls_cert_meta_t *m, char *err, size_t errlen)
{
    atls_error_t  aerr;
    atls_acme_t  *e;
    X509         *leaf;
    char         *cid;

    if (m == NULL || m->id == NULL || m->issuer.directory == NULL) {
        snprintf(err, errlen, "incomplete certificate settings");
        return NULL;
    }
    leaf = ari_leaf(st, m, err, errlen);
    if (leaf == NULL) {
        return NULL;
    }
    cid = atls_ari_cert_id(leaf);
    if (cid == NULL) {
        /* No authority key identifier: the CA cannot be asked about it.
         * Nothing is written (10,000 such leaves would cost 10,000 meta
         * writes at every start): the host does not ask again for a while
         * (the scheduler: a day, in memory). */
        X509_free(leaf);
        snprintf(err, errlen, "%s: the certificate has no authority key identifier, "
                 "so it has no ARI identifier", m->id);
        return NULL;
    }
    free(cid);
    memset(&aerr, 0, sizeof(aerr));
    e = atls_acme_ari_new(m->issuer.directory, leaf, &aerr);
    X509_free(leaf);
    if (e == NULL) {
        snprintf(err, errlen, "%s: %s", aerr.type[0] ? aerr.type : "autotls:internal",
                 aerr.detail[0] ? aerr.detail : "cannot ask for renewal information");
        return NULL;
    }
    atls_acme_allow_foreign_urls(e, m->issuer.insecure_ca_urls);
    return e;
}

/* 1 when id's current leaf is still the one e asked about. */
static int
ari_same_leaf(atls_store_t *st, const atls_cert_meta_t *m, atls_acme_t *e)
{
    const char *asked = atls_acme_result_ari_cert_id(e);
    char        tmp[256];
    char       *cid;
    X509       *leaf;
    int         same;

    leaf = ari_leaf(st, m, tmp, sizeof(tmp));
    if (leaf == NULL || asked == NULL) {
        X509_free(leaf);
        return 0;
    }
    cid = atls_ari_cert_id(leaf);
    X509_free(leaf);
    same = cid != NULL && strcmp(cid, asked) == 0;
    free(cid);
    return same;
}

static time_t
ari_next_check(atls_acme_t *e, time_t now)
{
    time_t ra = atls_acme_result_ari_retry_after(e);
    time_t delay = ra > now ? ra - now : ARI_RECHECK_DEFAULT;

    if (delay < ARI_RECHECK_MIN) {
        delay = ARI_RECHECK_MIN;
    }
    if (delay > ARI_RECHECK_MAX) {
        delay = ARI_RECHECK_MAX;
    }
    return now + delay;
}

int
atls_job_ari_finish(atls_store_t *st, const char *id, atls_acme_t *e, time_t now,
                    char *err, size_t errlen)
{
    const atls_error_t *ae;
    atls_store_lock_t  *lk;
    atls_cert_meta_t    m;
    time_t              start, end, pick;
    char                a[32], b[32], c[32];
    int                 rc = -1;

    if (st == NULL || id == NULL || e == NULL) {
        snprintf(err, errlen, "no renewal information request");
        return -1;
    }
    if (strcmp(atls_acme_state_name(e), "done") != 0) {
        /* Transport error, bad body: nothing is learned but the failure. */
        ae = atls_acme_error(e);
        snprintf(err, errlen, "%s: renewal information: %s: %s", id,
                 ae && ae->type[0] ? ae->type : "autotls:internal",
                 ae && ae->detail[0] ? ae->detail : "the request did not finish");
        ari_record_failure(st, id, ae, now);
        return -1;
    }
    if (atls_job_lock_load(st, id, &lk, &m, err, errlen) != 0) {
        return -1;
    }
    if (atls_acme_result_ari_cert_id(e) == NULL || !ari_same_leaf(st, &m, e)) {
        snprintf(err, errlen, "%s: the certificate changed while its renewal "
                 "information was fetched", id);
        goto done;
    }

    if (atls_acme_result_ari(e, &start, &end) != 0) {
        atls_log(ATLS_LOG_DEBUG, "autotls: %s: the CA offers no renewal information", id);
        ari_record_directory(st, m.issuer.directory, now);
        if (m.ari_window_start == 0 && m.ari_window_end == 0 && m.ari_failures == 0) {
            rc = 0;     /* nothing about this certificate changed */
            goto done;
        }
        /* the directory's record says when to ask again */
        m.ari_next_check = 0;
        m.ari_window_start = 0;
        m.ari_window_end = 0;
    } else {
        /* RFC 9773 §4.2: one random point per window.  Re-picking for an
         * unchanged window would creep renew_at towards its start. */
        if (start != m.ari_window_start || end != m.ari_window_end) {
            pick = atls_ari_pick(start, end, now, atls_random_u64());
            atls_rfc3339_format(start, a, sizeof(a));
            atls_rfc3339_format(end, b, sizeof(b));
            if (m.renew_at != 0 && pick < m.renew_at) {
                atls_rfc3339_format(pick, c, sizeof(c));
                atls_log(ATLS_LOG_INFO, "autotls: %s: the CA suggests renewing between "
                         "%s and %s: renewal moved to %s", id, a, b, c);
                m.renew_at = pick;
            } else {
                atls_log(ATLS_LOG_DEBUG, "autotls: %s: the CA suggests renewing between "
                         "%s and %s: keeping the earlier schedule", id, a, b);
            }
            m.ari_window_start = start;
            m.ari_window_end = end;
        }
        m.ari_next_check = ari_next_check(e, now);
    }
    m.ari_failures = 0;
    if (atls_store_save_meta(st, &m, err, errlen) != ATLS_STORE_OK) {
        goto done;
    }
    rc = 0;

done:
    atls_cert_meta_free(&m);
    atls_store_unlock(st, lk);
    return rc;
}

int
atls_job_ari_refresh_blocking(atls_store_t *st, const char *id, char *err, size_t errlen)
{
    atls_cert_meta_t  m;
    atls_http_opts_t  http;
    atls_acme_t      *e;
    time_t            none_until = 0;
    int               rc;

    if (atls_job_load(st, id, &m, err, errlen) != 0) {
        return -1;
    }
    if (m.issuer.directory != NULL
        && atls_store_load_ari_dir(st, m.issuer.directory, &none_until, err, errlen)
           == ATLS_STORE_OK && none_until > time(NULL))
    {
        /* the directory offers none: known without asking */
        atls_cert_meta_free(&m);
        return 0;
    }
    e = atls_job_ari_start(st, &m, err, errlen);
    if (e == NULL) {
        atls_cert_meta_free(&m);
        return -1;
    }
    atls_job_http_opts(&m.issuer, &http);
    (void) atls_acme_run_blocking(e, &http, NULL);
    rc = atls_job_ari_finish(st, id, e, time(NULL), err, errlen);
    atls_acme_free(e);
    atls_cert_meta_free(&m);
    return rc;
}
