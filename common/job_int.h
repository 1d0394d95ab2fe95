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

/* Takes id's job lock without waiting; -1 with err, or -2 with err
 * "another process is renewing <id>" when held; *lk NULL. */
int atls_job_lock(atls_store_t *st, const char *id, atls_store_lock_t **lk,
                  char *err, size_t errlen);

/* Both, lock first: meta read under the lock is what a renewal left. */
int atls_job_lock_load(atls_store_t *st, const char *id, atls_store_lock_t **lk,
                       atls_cert_meta_t *m, char *err, size_t errlen);

/* The issuer DN of leaf on one line (RFC 2253), as events give it; ""
 * when it cannot be printed. */
void atls_job_issuer_dn(X509 *leaf, char *buf, size_t len);

/* 1 when atls_job_start generated the account key of the certificate's CA
 * (there was none in the store): the scheduler's key-generated event. */
struct atls_job_s;
int atls_job_made_account_key(const struct atls_job_s *j);

/* After atls_job_finish failed: the error when it was counted transient
 * because cluster nodes had not confirmed the challenges (atls_job_set_lagged:
 * class retry-later, the detail naming them, as logged and stored); NULL
 * otherwise, the failure then as the engine reported it. */
const atls_error_t *atls_job_lagged_error(const struct atls_job_s *j);

/* e, the failure number `failures` of an order whose challenges went to
 * validation unconfirmed by the nodes of missing ("n1,n2"; "" not known
 * which), *next the attempt its own class puts next: when a node without
 * the answer causes such a failure (atls_schedule_lagged), *next becomes
 * the short backoff if sooner, e is made transient and its detail says
 * "validation failed while nodes n1,n2 had not confirmed the challenge:
 * retrying in S s; the CA said: ...": 1.  Else 0, e and *next unchanged
 * (job_lagged.c). */
int atls_job_lagged_failure(atls_error_t *e, const char *missing, unsigned failures,
                            time_t now, time_t *next);

/* job.c: equal strings, NULL equal only to NULL */
int atls_job_str_eq(const char *a, const char *b);

#endif
