/*
 * Revocation (RFC 8555 §7.6) of a certificate's stored certificates with the
 * account that ordered them, under the certificate's lock, so that it never
 * races a renewal.  A revoked certificate is due for replacement at once:
 * each revoked key type is recorded as known revoked (kt_info revoked_*,
 * source "operator"), so every server sharing the store replaces it at its
 * next check through the plan, whatever its backoff.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/x509.h>
#include "atls.h"
#include "atls_acme.h"
#include "atls_crypto.h"
#include "atls_job.h"
#include "job_int.h"
#include "atls_store.h"

/* What the CA was told, as the certificate's revocation facts. */
static void
revoke_record(atls_cert_meta_t *m, atls_key_type_t kt, int reason, time_t now)
{
    atls_cert_kt_info_t *ki = atls_cert_meta_kt(m, kt);

    if (ki == NULL) {
        return;
    }
    ki->revoked_seen = now;
    ki->revoked_at = now;
    ki->revoked_reason = reason;
    free(ki->revoked_source);
    ki->revoked_source = atls_strdup("operator");
}

int
atls_job_revoke_blocking(atls_store_t *st, const char *id, int reason,
                         char *err, size_t errlen)
{
    atls_cert_meta_t   m;
    atls_key_type_t    kts[ATLS_KEY_TYPE_MAX];
    atls_http_opts_t   http;
    atls_store_lock_t *lock = NULL;
    EVP_PKEY          *akey = NULL;
    char              *aurl = NULL;
    atls_error_t       why;
    size_t             i, n;
    int                created = 0, revoked = 0, failed = 0, result = -1;
    char               serr[256];

    if (atls_job_lock_load(st, id, &lock, &m, err, errlen) != 0) {
        return -1;
    }

    /* Checked first: load_account would create a key as a side effect. */
    if (!atls_store_has_account(st, m.issuer.directory)) {
        snprintf(err, errlen, "no ACME account for %s in the store: cannot revoke",
                 m.issuer.directory);
        goto done;
    }
    if (atls_store_load_account(st, m.issuer.directory, &akey, &aurl, &created,
                                err, errlen) != ATLS_STORE_OK)
    {
        goto done;
    }
    if (created || aurl == NULL || aurl[0] == '\0') {
        snprintf(err, errlen, "the ACME account for %s has no URL: cannot revoke",
                 m.issuer.directory);
        goto done;
    }

    /* a store from before kt_info: the facts below need an entry */
    (void) atls_job_kt_info_load(st, &m);
    atls_job_http_opts(&m.issuer, &http);
    n = atls_job_key_types(&m.issuer, kts);
    for (i = 0; i < n; i++) {
        X509             *leaf = NULL;
        atls_cert_info_t  info;
        atls_error_t      aerr;
        atls_acme_t      *e;
        char              tmp[256];

        /* the leaf is all the CA needs: the key block stays undecoded */
        if (atls_store_load_leaf(st, id, kts[i], &leaf, tmp, sizeof(tmp))
            != ATLS_STORE_OK || leaf == NULL)
        {
            continue;
        }
        memset(&info, 0, sizeof(info));
        (void) atls_cert_info(leaf, &info);
        memset(&aerr, 0, sizeof(aerr));
        e = atls_acme_revoke_new(m.issuer.directory, akey, aurl, leaf,
                                 reason, &aerr);
        if (e == NULL) {
            snprintf(err, errlen, "%s (%s): %s: %s", id, atls_key_type_name(kts[i]),
                     aerr.type, aerr.detail);
            atls_cert_info_free(&info);
            X509_free(leaf);
            failed = 1;
            break;
        }
        atls_acme_allow_foreign_urls(e, m.issuer.insecure_ca_urls);
        if (atls_acme_run_blocking(e, &http, NULL) != 0) {
            const atls_error_t *ae = atls_acme_error(e);

            snprintf(err, errlen, "%s (%s): %s: %s", id, atls_key_type_name(kts[i]),
                     ae ? ae->type : "autotls:internal", ae ? ae->detail : "revocation failed");
            atls_acme_free(e);
            atls_cert_info_free(&info);
            X509_free(leaf);
            failed = 1;
            break;
        }
        atls_acme_free(e);
        atls_log(ATLS_LOG_INFO, "autotls: %s (%s): certificate serial %s revoked (reason %d)",
                 id, atls_key_type_name(kts[i]), info.serial, reason);
        revoked++;
        revoke_record(&m, kts[i], reason, time(NULL));
        atls_cert_info_free(&info);
        X509_free(leaf);
    }

    if (revoked == 0) {
        if (!failed) {
            snprintf(err, errlen, "%s has no certificate to revoke", id);
        }
        goto done;
    }
    /* A key type revoked before another one failed is revoked at the CA:
     * it is recorded whatever happened next, and the failure reported. */

    /* A revoked certificate must be replaced: due at once.  Not a failure
     * (class none), but what the operator sees as the last event. */
    atls_error_set(&why, ATLS_ERR_NONE, "autotls:revoked",
                   "certificate revoked by the operator (reason %d)", reason);
    snprintf(why.cert_id, sizeof(why.cert_id), "%s", id);
    atls_cert_meta_set_error(&m, &why);
    m.renew_at = 0;
    m.next_attempt = 0;
    if (atls_store_save_meta(st, &m, serr, sizeof(serr)) != ATLS_STORE_OK) {
        if (!failed) {
            snprintf(err, errlen, "%s", serr);
        }
        goto done;
    }
    /* the scheduler of a running server reads the change journal, not
     * every meta, to learn that it must replace this one */
    (void) atls_store_bump_generation_for(st, id);
    result = failed ? -1 : 0;

done:
    if (lock != NULL) {
        atls_store_unlock(st, lock);
    }
    EVP_PKEY_free(akey);
    free(aurl);
    atls_cert_meta_free(&m);
    return result;
}
