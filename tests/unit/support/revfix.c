/*
 * Fixtures of the scheduler's revocation tests (see revfix.h).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "atls.h"
#include "atls_job.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "support/logcap.h"
#include "support/revfix.h"
#include "support/tmptree.h"

revfix_t rf;

int
revfix_setup(void **state)
{
    char  err[256];
    char *url = NULL;
    int   created = 0;

    (void) state;
    logcap_start(ATLS_LOG_INFO);
    snprintf(rf.root, sizeof(rf.root), "/tmp/atls-schedocsp-XXXXXX");
    if (mkdtemp(rf.root) == NULL || ocsppki_make(&rf.pki) != 0) {
        return -1;
    }
    rf.st = atls_store_fs_open(rf.root, err, sizeof(err));
    if (rf.st == NULL) {
        return -1;
    }
    rf.akey = NULL;
    if (atls_store_load_account(rf.st, REVFIX_DIRECTORY, &rf.akey, &url, &created, err, sizeof(err))
        != ATLS_STORE_OK
        || atls_store_save_account(rf.st, REVFIX_DIRECTORY, FAKECA_ACCT_URL, NULL, 0, err,
                                   sizeof(err)) != ATLS_STORE_OK)
    {
        return -1;
    }
    free(url);
    fakehost_init(&rf.h);
    rf.n_certs = 0;
    return 0;
}

int
revfix_teardown(void **state)
{
    size_t i;

    (void) state;
    fakehost_teardown(&rf.h, rf.certs, rf.n_certs);
    for (i = 0; i < rf.n_certs; i++) {
        X509_free(rf.leaves[i]);
        rf.leaves[i] = NULL;
    }
    EVP_PKEY_free(rf.akey);
    atls_store_close(rf.st);
    tmptree_rm(rf.root);
    ocsppki_free(&rf.pki);
    logcap_stop();
    return 0;
}

void
revfix_sched_start(void)
{
    char err[256];

    rf.h.s = atls_sched_new(rf.st, &rf.h.host, NULL, err, sizeof(err));
    assert_non_null(rf.h.s);
}

void
revfix_issuer(atls_issuer_t *is)
{
    memset(is, 0, sizeof(*is));
    is->directory = (char *) REVFIX_DIRECTORY;
    is->challenge = ATLS_CHAL_HTTP01;
    is->agree_tos = 1;
}

/* An authority key identifier, so that the ARI "replaces" field can name
 * the leaf (ocsppki rf.leaves carry none); signed again. */
void
revfix_leaf_add_aki(const ocsppki_t *pki, X509 *leaf)
{
    AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
    unsigned char    md[EVP_MAX_MD_SIZE];
    unsigned int     n = 0;

    assert_non_null(aki);
    assert_int_equal(X509_pubkey_digest(pki->ca, EVP_sha1(), md, &n), 1);
    aki->keyid = ASN1_OCTET_STRING_new();
    assert_non_null(aki->keyid);
    assert_int_equal(ASN1_OCTET_STRING_set(aki->keyid, md, (int) n), 1);
    assert_int_equal(X509_add1_ext_i2d(leaf, NID_authority_key_identifier, aki, 0, 0), 1);
    AUTHORITY_KEYID_free(aki);
    assert_true(X509_sign(leaf, pki->ca_key, EVP_sha256()) > 0);
}

char *
revfix_pem_of(X509 *x)
{
    BIO  *b = BIO_new(BIO_s_mem());
    char *data, *out;
    long  len;

    assert_non_null(b);
    assert_int_equal(PEM_write_bio_X509(b, x), 1);
    len = BIO_get_mem_data(b, &data);
    out = malloc((size_t) len + 1);
    assert_non_null(out);
    memcpy(out, data, (size_t) len);
    out[len] = '\0';
    BIO_free(b);
    return out;
}

/*
 * A managed certificate for name whose stored (ec256) certificate is an
 * ocsppki leaf naming ocsp_url / crl_url; valid, renewal far away, so
 * only revocation checks are due.  with_issuer 0: the stored chain lacks
 * the issuer.
 */
fakehost_cert_t *
revfix_seed(const char *name, const char *ocsp_url, const char *crl_url, int with_issuer)
{
    atls_cert_meta_t  m;
    atls_issuer_t     is;
    fakehost_cert_t  *c;
    X509             *leaf;
    char             *a, *b, *pem, err[256];

    assert_true(rf.n_certs < REVFIX_MAX_CERTS);
    leaf = ocsppki_leaf(&rf.pki, name, ocsp_url, crl_url, 0);
    assert_non_null(leaf);
    revfix_leaf_add_aki(&rf.pki, leaf);
    a = revfix_pem_of(leaf);
    b = with_issuer ? revfix_pem_of(rf.pki.ca) : atls_strdup("");
    pem = malloc(strlen(a) + strlen(b) + 1);
    assert_non_null(pem);
    strcpy(pem, a);
    strcat(pem, b);
    assert_int_equal(atls_store_save_cert(rf.st, name, ATLS_KEY_EC256, rf.pki.leaf_key, pem,
                                          err, sizeof(err)), ATLS_STORE_OK);
    free(a);
    free(b);
    free(pem);

    revfix_issuer(&is);
    assert_int_equal(atls_job_ensure(rf.st, &name, 1, &is, &m, err, sizeof(err)), 0);
    assert_int_equal(m.n_kt_info, 1);
    /* read from the leaf when the store learned the certificate */
    assert_true((m.kt_info[0].ocsp_url != NULL) == (ocsp_url != NULL));
    assert_true((m.kt_info[0].crl_url != NULL) == (crl_url != NULL));
    m.state = ATLS_STATE_VALID;
    m.renew_at = time(NULL) + 20 * 86400;
    assert_int_equal(atls_store_save_meta(rf.st, &m, err, sizeof(err)), ATLS_STORE_OK);
    atls_cert_meta_free(&m);

    c = &rf.certs[rf.n_certs];
    rf.leaves[rf.n_certs++] = leaf;
    assert_int_equal(fakehost_cert_init(c, name, rf.akey, 1), 0);
    c->sched = atls_sched_add(rf.h.s, &name, 1, &is, c, err, sizeof(err));
    assert_non_null(c->sched);
    return c;
}

void
revfix_pass(void)
{
    atls_sched_check(rf.h.s);
    assert_int_equal(fakehost_run(&rf.h, fakehost_until_settled, NULL, REVFIX_RUN_MS,
                                  NULL), 0);
}

atls_cert_meta_t
revfix_meta(const char *id)
{
    atls_cert_meta_t m;
    char             err[256];

    memset(&m, 0, sizeof(m));
    assert_int_equal(atls_store_load_meta(rf.st, id, &m, err, sizeof(err)), ATLS_STORE_OK);
    return m;
}

void
revfix_refresh_due(const char *id)
{
    atls_cert_meta_t m = revfix_meta(id);
    char             err[256];

    atls_cert_meta_kt(&m, ATLS_KEY_EC256)->ocsp_next_refresh = time(NULL) - 1;
    assert_int_equal(atls_store_save_meta(rf.st, &m, err, sizeof(err)), ATLS_STORE_OK);
    /* a change by another process: journaled, so that the scheduler's
     * next pass looks at this certificate (it reads no other meta) */
    assert_int_equal(atls_store_bump_generation_for(rf.st, id), ATLS_STORE_OK);
    atls_cert_meta_free(&m);
}

unsigned char *
revfix_response(X509 *leaf, int status, ocsppki_signer_t signer, size_t *len)
{
    ocsppki_resp_t o;
    unsigned char *der;

    ocsppki_resp_defaults(&o, time(NULL));
    o.status = status;
    o.signer = signer;
    if (status == V_OCSP_CERTSTATUS_REVOKED) {
        o.reason = 1;   /* keyCompromise */
        o.revoked_at = time(NULL) - 120;
    }
    der = ocsppki_response(&rf.pki, leaf, &o, len);
    assert_non_null(der);
    return der;
}

unsigned char *
revfix_crl(X509 *listed, time_t next_update, size_t *len)
{
    ocsppki_revoked_t r;
    ocsppki_crl_t     o;
    unsigned char    *der;

    memset(&o, 0, sizeof(o));
    memset(&r, 0, sizeof(r));
    if (listed != NULL) {
        r.cert = listed;
        r.reason = 1;
        r.revoked_at = time(NULL) - 300;
        o.revoked = &r;
        o.n_revoked = 1;
    }
    o.this_update = time(NULL) - 60;
    o.next_update = next_update;
    der = ocsppki_crl(&rf.pki, &o, len);
    assert_non_null(der);
    return der;
}
