/*
 * A scheduler on a real filesystem store with the fake host (fakehost)
 * and its canned CAs, for the scheduler tests of the cluster
 * (test_sched_publish.c, test_sched_busy.c): the store with the account
 * of the fake CA's directory known, and http-01 certificates added.
 */
#ifndef ATLS_TEST_SCHEDFX_H
#define ATLS_TEST_SCHEDFX_H

#include "atls.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "support/fakehost.h"

#define SCHEDFX_DIRECTORY  FAKECA_BASE "/dir"

typedef struct {
    char           root[256];
    atls_store_t  *st;
    EVP_PKEY      *akey;     /* the account key every fakeca expects */
} schedfx_t;

/* A fresh store in a temp dir whose account at SCHEDFX_DIRECTORY is known
 * (key and URL).  0, or -1. */
int schedfx_open(schedfx_t *fx);
void schedfx_close(schedfx_t *fx);

/* A test's start: the log captured (logcap, everything), the store
 * opened, h initialised.  0, or -1. */
int schedfx_begin(schedfx_t *fx, fakehost_t *h);
/* A test's end: h's scheduler and the n certificates, the store, the log. */
void schedfx_end(schedfx_t *fx, fakehost_t *h, fakehost_cert_t *certs, size_t n);

/* h->s: a scheduler with default options over st (cmocka failure when
 * it cannot be made). */
void schedfx_start(fakehost_t *h, atls_store_t *st);
/* c: a fresh fakeca for name, added to h->s as an http-01 certificate. */
void schedfx_add(fakehost_t *h, const schedfx_t *fx, fakehost_cert_t *c, const char *name);

#endif
