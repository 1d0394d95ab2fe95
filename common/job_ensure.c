/*
 * Jobs: a certificate in the store as configured (atls_job_ensure).  The
 * stored meta is rewritten only when what the certificate is changed
 * (its names, or the persisted issuer settings that say what it is), so
 * that a pass over 100,000 unchanged certificates writes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "atls_job.h"
#include "job_int.h"
#include "atls_store.h"

static int
strv_eq(char *const *a, size_t na, char *const *b, size_t nb)
{
    size_t i;

    if (na != nb) {
        return 0;
    }
    for (i = 0; i < na; i++) {
        if (!atls_job_str_eq(a[i], b[i])) {
            return 0;
        }
    }
    return 1;
}

/*
 * The persisted part of the issuer settings that says what the certificate
 * is (EAB is never persisted).  Node-local details are left out: the CA
 * trust file's path, the dns hook's program, the CLI responders' ports.
 * Nodes sharing a store (issue 12) may hold them in different places; were
 * they compared, each node's pass would rewrite meta.json with its own,
 * bump the certificate's generation and make every other node pull it
 * again, for ever.  Every run uses the configured issuer, never the stored
 * one (sched.c), so the stored paths are only the last writer's record.
 * A field that is not persisted (insecure_ca_urls, a test setting) is
 * never compared: it would read back different every time.
 */
static int
issuer_eq(const atls_issuer_t *a, const atls_issuer_t *b)
{
    atls_key_type_t kta[ATLS_KEY_TYPE_MAX], ktb[ATLS_KEY_TYPE_MAX];
    size_t          i, na, nb;

    /* the key types in effect: no list means ec256, so a meta written with
     * none (a CLI, an older version) and a configuration naming ec256 are
     * the same certificate; compared as listed, every pass rewrote it */
    na = atls_job_key_types(a, kta);
    nb = atls_job_key_types(b, ktb);
    if (!atls_job_str_eq(a->directory, b->directory)
        || !strv_eq(a->contact, a->n_contact, b->contact, b->n_contact)
        || a->agree_tos != b->agree_tos || a->challenge != b->challenge
        || na != nb
        || !atls_job_str_eq(a->profile, b->profile)
        || a->profile_required != b->profile_required
        || !atls_job_str_eq(a->preferred_chain, b->preferred_chain)
        || a->renew.renew_fraction != b->renew.renew_fraction
        || a->renew.renew_before != b->renew.renew_before
        || a->csr_cn != b->csr_cn
        || a->stapling_off != b->stapling_off || a->must_staple != b->must_staple)
    {
        return 0;
    }
    for (i = 0; i < na; i++) {
        if (kta[i] != ktb[i]) {
            return 0;
        }
    }
    return 1;
}

/* ---- ensure ------------------------------------------------------------- */

/* The stored meta of id brought to the configuration into *m; *changed
 * when it differs from what is stored.  0, or -1 + err. */
static int
ensure_read(atls_store_t *st, const char *id, const char *const *names, size_t n,
            const atls_issuer_t *is, atls_cert_meta_t *m, int *changed,
            char *err, size_t errlen)
{
    int rc;

    *changed = 0;
    memset(m, 0, sizeof(*m));
    rc = atls_store_load_meta(st, id, m, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        memset(m, 0, sizeof(*m));
        m->id = atls_strdup(id);
        m->names = atls_strv_dup((char *const *) names, n);
        m->n_names = n;
        atls_issuer_copy(&m->issuer, is);
        m->state = ATLS_STATE_PENDING;
        *changed = 1;
    } else if (rc != ATLS_STORE_OK) {
        atls_cert_meta_free(m);
        return -1;
    } else {
        int names_changed = !strv_eq(m->names, m->n_names, (char *const *) names, n);
        int ca_changed = !atls_job_str_eq(m->issuer.directory, is->directory);

        if (names_changed) {
            atls_strv_free(m->names, m->n_names);
            m->names = atls_strv_dup((char *const *) names, n);
            m->n_names = n;
            *changed = 1;
        }
        /* the configured issuer is the one used, its node-local paths
         * and ports included; the stored one is rewritten only when what
         * the certificate is changed (issuer_eq) */
        if (!issuer_eq(&m->issuer, is)) {
            *changed = 1;
        }
        atls_issuer_free(&m->issuer);
        atls_issuer_copy(&m->issuer, is);
        if (names_changed || ca_changed) {
            /* The stored certificate no longer matches the configuration:
             * due now, and an old backoff must not delay the fix. */
            m->renew_at = 0;
            m->next_attempt = 0;
        }
    }

    /* A store written before meta recorded its certificates: learn them
     * once from the files, so that deciding never reads them again. */
    if (atls_job_kt_info_load(st, m) > 0) {
        *changed = 1;
    }
    return 0;
}

int
atls_job_ensure(atls_store_t *st, const char *const *names, size_t n,
                const atls_issuer_t *is, atls_cert_meta_t *out,
                char *err, size_t errlen)
{
    atls_cert_meta_t   m;
    atls_store_lock_t *lk = NULL;
    char              *id;
    int                rc, changed = 0;

    if (names == NULL || n == 0 || names[0] == NULL || names[0][0] == '\0') {
        snprintf(err, errlen, "a certificate needs at least one name");
        return -1;
    }
    if (is == NULL || is->directory == NULL || is->directory[0] == '\0') {
        snprintf(err, errlen, "no ACME directory URL configured for %s", names[0]);
        return -1;
    }
    id = atls_cert_id(names[0]);
    if (id == NULL) {
        snprintf(err, errlen, "cannot derive a certificate id from \"%s\"", names[0]);
        return -1;
    }

    rc = ensure_read(st, id, names, n, is, &m, &changed, err, errlen);
    if (rc == 0 && changed) {
        /* Written under the certificate's lock, read again under it: a
         * meta read before another process (a node of a cluster) deployed
         * must not overwrite the deployed one.  Held by someone (an order
         * running): that one writes the meta; nothing is written here. */
        rc = atls_store_lock_cert(st, id, 0, &lk, err, errlen);
        if (rc == ATLS_STORE_BUSY) {
            rc = 0;
            changed = 0;
        } else if (rc == ATLS_STORE_OK) {
            atls_cert_meta_free(&m);
            rc = ensure_read(st, id, names, n, is, &m, &changed, err, errlen);
        } else {
            atls_cert_meta_free(&m);
            rc = -1;
        }
    }
    if (rc == 0 && changed && atls_store_save_meta(st, &m, err, errlen) != ATLS_STORE_OK) {
        atls_cert_meta_free(&m);
        rc = -1;
    }
    atls_store_unlock(st, lk);
    free(id);
    if (rc == 0 && out != NULL) {
        *out = m;
    } else if (rc == 0) {
        atls_cert_meta_free(&m);
    }
    return rc;
}
