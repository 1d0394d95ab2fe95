/*
 * Fixtures of the scheduler's revocation tests (test_sched_ocsp.c,
 * test_sched_crl.c): a filesystem store with the fake CA's account, an
 * ocsppki world, and the fake host; certificates seeded in the store as
 * ocsppki leaves naming a responder and/or a CRL, valid with their renewal
 * far away, so that only revocation checks are due.
 */
#ifndef REVFIX_H
#define REVFIX_H

#include <stddef.h>
#include <openssl/x509.h>
#include "atls_store.h"
#include "support/fakeca.h"
#include "support/fakehost.h"
#include "support/ocsppki.h"

#define REVFIX_DIRECTORY  FAKECA_BASE "/dir"
#define REVFIX_MAX_CERTS  6
#define REVFIX_RUN_MS     20000

typedef struct {
    char            root[256];
    atls_store_t   *st;
    EVP_PKEY       *akey;
    ocsppki_t       pki;
    fakehost_t      h;
    fakehost_cert_t certs[REVFIX_MAX_CERTS];
    X509           *leaves[REVFIX_MAX_CERTS];   /* each certificate's, as seeded */
    size_t          n_certs;
} revfix_t;

/* The one fixture of a test program. */
extern revfix_t rf;

/* cmocka setup and teardown (log captured from INFO up). */
int revfix_setup(void **state);
int revfix_teardown(void **state);

/* The scheduler over rf.st with the fake host, default options. */
void revfix_sched_start(void);
/* http-01 issuer settings of REVFIX_DIRECTORY. */
void revfix_issuer(atls_issuer_t *is);
/* Stores an ec256 ocsppki leaf for name (with the issuer in its chain
 * unless with_issuer is 0), ensures its meta (valid, renewal in 20 days)
 * and manages it; its leaf is rf.leaves[i] for the returned rf.certs[i]. */
fakehost_cert_t *revfix_seed(const char *name, const char *ocsp_url, const char *crl_url,
                             int with_issuer);
/* Adds an authority key identifier of pki->ca to leaf (so that ARI can
 * name it) and signs it again. */
void revfix_leaf_add_aki(const ocsppki_t *pki, X509 *leaf);
/* x in PEM (the caller frees it). */
char *revfix_pem_of(X509 *x);
/* One pass, run until the scheduler is idle. */
void revfix_pass(void);
/* The stored meta of id (the caller frees it). */
atls_cert_meta_t revfix_meta(const char *id);
/* Moves kt_info's next OCSP refresh of id's ec256 certificate to the past. */
void revfix_refresh_due(const char *id);
/* An OCSP response about leaf (status V_OCSP_CERTSTATUS_*; revoked: reason
 * keyCompromise two minutes ago) signed by signer; the caller frees it. */
unsigned char *revfix_response(X509 *leaf, int status, ocsppki_signer_t signer,
                               size_t *len);
/* A CRL of the ocsppki CA (this update a minute ago) listing listed (NULL:
 * nothing; reason keyCompromise five minutes ago); the caller frees it. */
unsigned char *revfix_crl(X509 *listed, time_t next_update, size_t *len);

#endif
