/*
 * The job files' way into the store: a certificate's meta loaded (alone or
 * under its job lock) with the messages operators see, and the facts of
 * its stored certificates learned from the files for a meta that predates
 * kt_info.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/x509.h>
#include "atls.h"
#include "atls_crypto.h"
#include "atls_job.h"
#include "atls_store.h"
#include "job_int.h"

int
atls_job_kt_info_load(atls_store_t *st, atls_cert_meta_t *m)
{
    atls_key_type_t kts[ATLS_KEY_TYPE_MAX];
    size_t          i, n = atls_job_key_types(&m->issuer, kts);
    int             added = 0;

    for (i = 0; i < n; i++) {
        atls_cert_info_t info;
        X509            *leaf = NULL;
        char             err[256];

        if (atls_job_kt_info(m, kts[i]) != NULL
            || atls_store_load_leaf(st, m->id, kts[i], &leaf, err, sizeof(err))
               != ATLS_STORE_OK || leaf == NULL)
        {
            X509_free(leaf);
            continue;
        }
        memset(&info, 0, sizeof(info));
        if (atls_cert_info(leaf, &info) == 0 && info.key_type == kts[i]) {
            /* where its revocation is published, too */
            atls_cert_meta_set_kt_leaf(m, &info, leaf);
            added++;
        }
        atls_cert_info_free(&info);
        X509_free(leaf);
    }
    return added;
}

int
atls_job_load(atls_store_t *st, const char *id, atls_cert_meta_t *m,
              char *err, size_t errlen)
{
    int rc = atls_store_load_meta(st, id, m, err, errlen);

    if (rc == ATLS_STORE_OK) {
        return 0;
    }
    if (rc == ATLS_STORE_NOTFOUND) {
        snprintf(err, errlen, "no certificate \"%s\" in the store %s", id,
                 st->location ? st->location : "");
    }
    atls_cert_meta_free(m);
    return -1;
}

int
atls_job_lock(atls_store_t *st, const char *id, atls_store_lock_t **lk,
              char *err, size_t errlen)
{
    int rc;

    rc = atls_store_lock_cert(st, id, 0, lk, err, errlen);
    if (rc == ATLS_STORE_OK) {
        return 0;
    }
    *lk = NULL;
    if (rc == ATLS_STORE_BUSY) {
        snprintf(err, errlen, "another process is renewing %s", id);
        return -2;
    }
    return -1;
}

int
atls_job_lock_load(atls_store_t *st, const char *id, atls_store_lock_t **lk,
                   atls_cert_meta_t *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    if (atls_job_lock(st, id, lk, err, errlen) != 0) {
        return -1;
    }
    if (atls_job_load(st, id, m, err, errlen) != 0) {
        atls_store_unlock(st, *lk);
        *lk = NULL;
        return -1;
    }
    return 0;
}

void
atls_job_issuer_dn(X509 *leaf, char *buf, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());
    int  n = -1;

    if (b != NULL
        && X509_NAME_print_ex(b, X509_get_issuer_name(leaf), 0, XN_FLAG_RFC2253) >= 0)
    {
        n = BIO_read(b, buf, (int) len - 1);
    }
    buf[n > 0 ? n : 0] = '\0';
    BIO_free(b);
}
