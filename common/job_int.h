/*
 * Shared by the job files (job.c, job_ari.c, job_revoke.c): loading a
 * certificate's meta and taking its lock, with the messages operators see.
 * Not for hosts.
 */
#ifndef ATLS_JOB_INT_H
#define ATLS_JOB_INT_H

#include "atls_store.h"

/* Loads id's meta; -1 with err ("no certificate ... in the store" when
 * there is none), m zeroed. */
int atls_job_load(atls_store_t *st, const char *id, atls_cert_meta_t *m,
                  char *err, size_t errlen);

/* Takes id's job lock without waiting; -1 with err ("another process is
 * renewing <id>" when held), *lk NULL. */
int atls_job_lock(atls_store_t *st, const char *id, atls_store_lock_t **lk,
                  char *err, size_t errlen);

/* Both, lock first: meta read under the lock is what a renewal left. */
int atls_job_lock_load(atls_store_t *st, const char *id, atls_store_lock_t **lk,
                       atls_cert_meta_t *m, char *err, size_t errlen);

#endif
