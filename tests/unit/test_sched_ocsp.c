/*
 * The scheduler's revocation checks (sched_ocsp.c, sched_crl.c) on a real
 * filesystem store, driven by the fake host: certificates minted by
 * support/ocsppki with or without an OCSP responder / CRL Distribution
 * Point are stored, and the host answers their URLs with canned responses
 * and CRLs.  A revoked certificate is replaced through the fake CA.
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
#include "atls_ocsp.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "support/fakeca.h"
#include "support/fakehost.h"
#include "support/logcap.h"
#include "support/ocsppki.h"
#include "support/tmptree.h"

#define DIRECTORY  FAKECA_BASE "/dir"
#define OCSP_URL   "http://ocsp.test/r"
#define CRL_URL    "http://crl.test/1.crl"
#define MAX_CERTS  6
#define RUN_MS     20000
#define EC         ATLS_KEY_EC256

static char            root[256];
static atls_store_t   *st;
static EVP_PKEY       *akey;
static ocsppki_t       pki;
static fakehost_t      h;
static fakehost_cert_t certs[MAX_CERTS];
static X509           *leaves[MAX_CERTS];
static size_t          n_certs;

/* ---- fixtures --------------------------------------------------------------------- */

static int
setup(void **state)
{
    char  err[256];
    char *url = NULL;
    int   created = 0;

    (void) state;
    logcap_start(ATLS_LOG_INFO);
    snprintf(root, sizeof(root), "/tmp/atls-schedocsp-XXXXXX");
    if (mkdtemp(root) == NULL || ocsppki_make(&pki) != 0) {
        return -1;
    }
    st = atls_store_fs_open(root, err, sizeof(err));
    if (st == NULL) {
        return -1;
    }
    akey = NULL;
    if (atls_store_load_account(st, DIRECTORY, &akey, &url, &created, err, sizeof(err))
        != ATLS_STORE_OK
        || atls_store_save_account(st, DIRECTORY, FAKECA_ACCT_URL, NULL, 0, err,
                                   sizeof(err)) != ATLS_STORE_OK)
    {
        return -1;
    }
    free(url);
    fakehost_init(&h);
    n_certs = 0;
    return 0;
}

static int
teardown(void **state)
{
    size_t i;

    (void) state;
    fakehost_teardown(&h, certs, n_certs);
    for (i = 0; i < n_certs; i++) {
        X509_free(leaves[i]);
        leaves[i] = NULL;
    }
    EVP_PKEY_free(akey);
    atls_store_close(st);
    tmptree_rm(root);
    ocsppki_free(&pki);
    logcap_stop();
    return 0;
}

static void
sched_start(void)
{
    char err[256];

    h.s = atls_sched_new(st, &h.host, NULL, err, sizeof(err));
    assert_non_null(h.s);
}

static void
issuer_init(atls_issuer_t *is)
{
    memset(is, 0, sizeof(*is));
    is->directory = (char *) DIRECTORY;
    is->challenge = ATLS_CHAL_HTTP01;
    is->agree_tos = 1;
}

/* An authority key identifier, so that the ARI "replaces" field can name
 * the leaf (ocsppki leaves carry none); signed again. */
static void
leaf_add_aki(X509 *leaf)
{
    AUTHORITY_KEYID *aki = AUTHORITY_KEYID_new();
    unsigned char    md[EVP_MAX_MD_SIZE];
    unsigned int     n = 0;

    assert_non_null(aki);
    assert_int_equal(X509_pubkey_digest(pki.ca, EVP_sha1(), md, &n), 1);
    aki->keyid = ASN1_OCTET_STRING_new();
    assert_non_null(aki->keyid);
    assert_int_equal(ASN1_OCTET_STRING_set(aki->keyid, md, (int) n), 1);
    assert_int_equal(X509_add1_ext_i2d(leaf, NID_authority_key_identifier, aki, 0, 0), 1);
    AUTHORITY_KEYID_free(aki);
    assert_true(X509_sign(leaf, pki.ca_key, EVP_sha256()) > 0);
}

static char *
pem_of(X509 *x)
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
static fakehost_cert_t *
cert_seed(const char *name, const char *ocsp_url, const char *crl_url, int with_issuer)
{
    atls_cert_meta_t  m;
    atls_issuer_t     is;
    fakehost_cert_t  *c;
    X509             *leaf;
    char             *a, *b, *pem, err[256];

    assert_true(n_certs < MAX_CERTS);
    leaf = ocsppki_leaf(&pki, name, ocsp_url, crl_url, 0);
    assert_non_null(leaf);
    leaf_add_aki(leaf);
    a = pem_of(leaf);
    b = with_issuer ? pem_of(pki.ca) : atls_strdup("");
    pem = malloc(strlen(a) + strlen(b) + 1);
    assert_non_null(pem);
    strcpy(pem, a);
    strcat(pem, b);
    assert_int_equal(atls_store_save_cert(st, name, EC, pki.leaf_key, pem, err, sizeof(err)),
                     ATLS_STORE_OK);
    free(a);
    free(b);
    free(pem);

    issuer_init(&is);
    assert_int_equal(atls_job_ensure(st, &name, 1, &is, &m, err, sizeof(err)), 0);
    assert_int_equal(m.n_kt_info, 1);
    /* read from the leaf when the store learned the certificate */
    assert_true((m.kt_info[0].ocsp_url != NULL) == (ocsp_url != NULL));
    assert_true((m.kt_info[0].crl_url != NULL) == (crl_url != NULL));
    m.state = ATLS_STATE_VALID;
    m.renew_at = time(NULL) + 20 * 86400;
    assert_int_equal(atls_store_save_meta(st, &m, err, sizeof(err)), ATLS_STORE_OK);
    atls_cert_meta_free(&m);

    c = &certs[n_certs];
    leaves[n_certs++] = leaf;
    assert_int_equal(fakehost_cert_init(c, name, akey, 1), 0);
    c->sched = atls_sched_add(h.s, &name, 1, &is, c, err, sizeof(err));
    assert_non_null(c->sched);
    return c;
}

static void
run_pass(void)
{
    atls_sched_check(h.s);
    assert_int_equal(fakehost_run(&h, fakehost_until_idle, NULL, RUN_MS, NULL), 0);
}

static atls_cert_meta_t
meta_of(const char *id)
{
    atls_cert_meta_t m;
    char             err[256];

    memset(&m, 0, sizeof(m));
    assert_int_equal(atls_store_load_meta(st, id, &m, err, sizeof(err)), ATLS_STORE_OK);
    return m;
}

/* Moves kt_info's next OCSP refresh of id to the past. */
static void
refresh_due(const char *id)
{
    atls_cert_meta_t m = meta_of(id);
    char             err[256];

    atls_cert_meta_kt(&m, EC)->ocsp_next_refresh = time(NULL) - 1;
    assert_int_equal(atls_store_save_meta(st, &m, err, sizeof(err)), ATLS_STORE_OK);
    atls_cert_meta_free(&m);
}

static unsigned char *
response(X509 *leaf, int status, ocsppki_signer_t signer, size_t *len)
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
    der = ocsppki_response(&pki, leaf, &o, len);
    assert_non_null(der);
    return der;
}

static int
ocsp_stored(const char *id, unsigned char **der, size_t *len)
{
    char err[256];

    *der = NULL;
    *len = 0;
    return atls_store_load_ocsp(st, id, EC, der, len, err, sizeof(err));
}

/* ---- OCSP ------------------------------------------------------------------------- */

/* A good answer is stored, stapled (callback, both generations) and not
 * asked again before its refresh time. */
static void
test_ocsp_good(void **state)
{
    fakehost_cert_t *c;
    fakehost_url_t  *u;
    atls_cert_meta_t m;
    unsigned char   *der, *held;
    size_t           len, hlen;
    uint64_t         gen0;
    time_t           now = time(NULL);

    (void) state;
    sched_start();
    c = cert_seed("good.test", OCSP_URL, NULL, 1);
    der = response(leaves[0], V_OCSP_CERTSTATUS_GOOD, OCSPPKI_BY_CA, &len);
    u = fakehost_url(&h, "http://ocsp.test/", 200, der, len);
    gen0 = atls_store_generation(st);
    m = meta_of("good.test");
    run_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(c->n_stapled, 1);
    assert_int_equal(c->done, 0);           /* no order: done() is for orders */
    assert_true(atls_store_generation(st) > gen0);
    assert_int_equal(ocsp_stored("good.test", &held, &hlen), ATLS_STORE_OK);
    assert_int_equal(hlen, len);
    assert_memory_equal(held, der, len);
    free(held);
    {
        atls_cert_meta_t after = meta_of("good.test");
        atls_cert_kt_info_t *ki = atls_cert_meta_kt(&after, EC);

        assert_int_equal(after.generation, m.generation + 1);
        assert_int_equal(ki->ocsp_status, ATLS_OCSP_GOOD);
        assert_int_equal(ki->ocsp_failures, 0);
        assert_null(ki->ocsp_error);
        assert_true(ki->ocsp_next_update > now);
        assert_true(ki->ocsp_next_refresh > now + 60);
        assert_true(ki->ocsp_next_refresh < ki->ocsp_next_update);
        atls_cert_meta_free(&after);
    }
    atls_cert_meta_free(&m);

    /* not due: not asked */
    run_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(c->n_stapled, 1);

    /* due: asked again */
    refresh_due("good.test");
    run_pass();
    assert_int_equal(u->hits, 2);
    assert_int_equal(c->n_stapled, 2);
    assert_int_equal(logcap_count("OCSP"), 0);     /* nothing at the default level */
    free(der);
}

/* "revoked": the stored response goes, the facts are recorded, the line
 * is logged once, and the certificate is ordered again in the same pass
 * with a new key and the ARI "replaces" field. */
static void
test_ocsp_revoked(void **state)
{
    fakehost_cert_t *c;
    fakehost_url_t  *u;
    atls_cert_meta_t m;
    unsigned char   *good, *revoked, *held;
    size_t           glen, rlen, hlen;
    char             old_serial[132];
    int              replaces = 0;

    (void) state;
    sched_start();
    c = cert_seed("rev.test", OCSP_URL, NULL, 1);
    c->ca->renewal_info = 1;    /* so that the order names what it replaces */
    good = response(leaves[0], V_OCSP_CERTSTATUS_GOOD, OCSPPKI_BY_CA, &glen);
    revoked = response(leaves[0], V_OCSP_CERTSTATUS_REVOKED, OCSPPKI_BY_CA, &rlen);
    u = fakehost_url(&h, "http://ocsp.test/", 200, good, glen);
    run_pass();
    assert_int_equal(ocsp_stored("rev.test", &held, &hlen), ATLS_STORE_OK);
    free(held);
    m = meta_of("rev.test");
    snprintf(old_serial, sizeof(old_serial), "%s", atls_cert_meta_kt(&m, EC)->serial);
    atls_cert_meta_free(&m);

    u->body = revoked;
    u->body_len = rlen;
    refresh_due("rev.test");
    run_pass();
    assert_int_equal(u->hits, 2);
    /* replaced in this very pass */
    assert_int_equal(c->done, 1);
    assert_int_equal(c->rc, 0);
    assert_int_equal(c->n_deployed, 1);
    assert_int_equal(c->n_stapled, 2);      /* stapled, then withdrawn */
    assert_int_equal(logcap_count("was revoked at"), 1);
    assert_int_equal(logcap_count("reason keyCompromise, reported by its OCSP responder): "
                               "replacing it now"), 1);
    assert_non_null(c->ca->order_payload);
    replaces = json_object_get(c->ca->order_payload, "replaces") != NULL;
    assert_true(replaces);
    assert_int_equal(ocsp_stored("rev.test", &held, &hlen), ATLS_STORE_NOTFOUND);

    m = meta_of("rev.test");
    {
        atls_cert_kt_info_t *ki = atls_cert_meta_kt(&m, EC);

        /* a new certificate: its facts start over */
        assert_string_not_equal(ki->serial, old_serial);
        assert_int_equal(ki->revoked_seen, 0);
        assert_null(ki->ocsp_url);          /* the fake CA names no responder */
    }
    atls_cert_meta_free(&m);

    /* nothing more to do: no new order, no new question */
    run_pass();
    assert_int_equal(c->done, 1);
    assert_int_equal(u->hits, 2);
    free(good);
    free(revoked);
}

/* "unknown": nothing stapled, the status says so, asked again later. */
static void
test_ocsp_unknown(void **state)
{
    fakehost_cert_t *c;
    fakehost_url_t  *u;
    atls_cert_meta_t m;
    unsigned char   *der, *held;
    size_t           len, hlen;

    (void) state;
    sched_start();
    c = cert_seed("unk.test", OCSP_URL, NULL, 1);
    der = response(leaves[0], V_OCSP_CERTSTATUS_UNKNOWN, OCSPPKI_BY_CA, &len);
    u = fakehost_url(&h, "http://ocsp.test/", 200, der, len);
    run_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(c->n_stapled, 0);
    assert_int_equal(ocsp_stored("unk.test", &held, &hlen), ATLS_STORE_NOTFOUND);
    m = meta_of("unk.test");
    assert_int_equal(atls_cert_meta_kt(&m, EC)->ocsp_status, ATLS_OCSP_UNKNOWN);
    assert_true(atls_cert_meta_kt(&m, EC)->ocsp_next_refresh > time(NULL));
    assert_int_equal(atls_cert_meta_kt(&m, EC)->revoked_seen, 0);
    atls_cert_meta_free(&m);
    assert_int_equal(logcap_count("status unknown"), 1);
    assert_int_equal(c->done, 0);
    free(der);
}

/* A response signed by the wrong key is never stored; the state is an
 * error, backed off, logged once; a good response held before keeps
 * being stapled while it is valid. */
static void
test_ocsp_wrong_key(void **state)
{
    fakehost_cert_t *c;
    fakehost_url_t  *u;
    atls_cert_meta_t m;
    unsigned char   *bad, *good, *held;
    size_t           blen, glen, hlen;

    (void) state;
    sched_start();
    c = cert_seed("bad.test", OCSP_URL, NULL, 1);
    bad = response(leaves[0], V_OCSP_CERTSTATUS_GOOD, OCSPPKI_BY_OTHER, &blen);
    good = response(leaves[0], V_OCSP_CERTSTATUS_GOOD, OCSPPKI_BY_CA, &glen);
    u = fakehost_url(&h, "http://ocsp.test/", 200, bad, blen);
    run_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(c->n_stapled, 0);
    assert_int_equal(ocsp_stored("bad.test", &held, &hlen), ATLS_STORE_NOTFOUND);
    m = meta_of("bad.test");
    assert_int_equal(atls_cert_meta_kt(&m, EC)->ocsp_status, ATLS_OCSP_ERROR);
    assert_int_equal(atls_cert_meta_kt(&m, EC)->ocsp_failures, 1);
    assert_non_null(atls_cert_meta_kt(&m, EC)->ocsp_error);
    assert_true(atls_cert_meta_kt(&m, EC)->ocsp_next_refresh >= time(NULL) + 10);
    atls_cert_meta_free(&m);
    assert_int_equal(logcap_count("autotls: certificate \"bad.test\" (ec256): OCSP"), 1);

    /* backing off: not asked at the next pass */
    run_pass();
    assert_int_equal(u->hits, 1);

    /* a failure streak is one line; a recovery is said */
    refresh_due("bad.test");
    run_pass();
    assert_int_equal(u->hits, 2);
    assert_int_equal(logcap_count("autotls: certificate \"bad.test\" (ec256): OCSP"), 1);
    u->body = good;
    u->body_len = glen;
    refresh_due("bad.test");
    run_pass();
    assert_int_equal(c->n_stapled, 1);
    assert_int_equal(logcap_count("answers again after 2 failure(s)"), 1);

    /* the responder goes bad again: the good response held stays */
    u->body = bad;
    u->body_len = blen;
    refresh_due("bad.test");
    run_pass();
    assert_int_equal(u->hits, 4);
    assert_int_equal(c->n_stapled, 1);
    assert_int_equal(ocsp_stored("bad.test", &held, &hlen), ATLS_STORE_OK);
    free(held);
    m = meta_of("bad.test");
    assert_int_equal(atls_cert_meta_kt(&m, EC)->ocsp_status, ATLS_OCSP_GOOD);
    assert_int_equal(atls_cert_meta_kt(&m, EC)->ocsp_failures, 1);
    assert_non_null(atls_cert_meta_kt(&m, EC)->ocsp_error);
    atls_cert_meta_free(&m);
    free(bad);
    free(good);
}

/* The responder unreachable: the same rules as a bad answer. */
static void
test_ocsp_transport_error(void **state)
{
    fakehost_url_t  *u;
    atls_cert_meta_t m;

    (void) state;
    sched_start();
    (void) cert_seed("down.test", OCSP_URL, NULL, 1);
    u = fakehost_url(&h, "http://ocsp.test/", 0, NULL, 0);
    run_pass();
    assert_int_equal(u->hits, 1);
    m = meta_of("down.test");
    assert_int_equal(atls_cert_meta_kt(&m, EC)->ocsp_status, ATLS_OCSP_ERROR);
    assert_non_null(strstr(atls_cert_meta_kt(&m, EC)->ocsp_error, "Connection refused"));
    atls_cert_meta_free(&m);
}

/* A chain without its issuer: an error state, and no request at all. */
static void
test_ocsp_no_issuer(void **state)
{
    fakehost_url_t  *u;
    atls_cert_meta_t m;

    (void) state;
    sched_start();
    (void) cert_seed("alone.test", OCSP_URL, NULL, 0);
    u = fakehost_url(&h, "http://ocsp.test/", 0, NULL, 0);
    run_pass();
    assert_int_equal(u->hits, 0);
    assert_int_equal(h.n_log, 0);
    m = meta_of("alone.test");
    assert_int_equal(atls_cert_meta_kt(&m, EC)->ocsp_status, ATLS_OCSP_ERROR);
    assert_non_null(strstr(atls_cert_meta_kt(&m, EC)->ocsp_error, "issuer"));
    atls_cert_meta_free(&m);
}

/* No responder, no CRL: no request and not a word, ever; stapling off:
 * the responder is never asked. */
static void
test_no_url_no_request(void **state)
{
    atls_issuer_t is;
    char          err[256];
    const char   *name = "quiet2.test";

    (void) state;
    sched_start();
    (void) cert_seed("quiet.test", NULL, NULL, 1);
    (void) cert_seed("quiet2.test", OCSP_URL, NULL, 1);
    issuer_init(&is);
    is.stapling_off = 1;
    assert_non_null(atls_sched_add(h.s, &name, 1, &is, &certs[1], err, sizeof(err)));
    logcap_start(ATLS_LOG_INFO);    /* what the passes say, not the set-up */
    run_pass();
    run_pass();
    assert_int_equal(h.n_log, 0);
    if (logcap_len() != 0) {
        fail_msg("said: %s", logcap_text());
    }
}

/* ---- after a deploy --------------------------------------------------------------- */

/* The responder of the fake CA signs for whatever certificate is stored. */
static void
issued_answer(void *arg, const atls_http_request_t *req, atls_http_response_t *resp)
{
    fakehost_cert_t *c = arg;
    STACK_OF(X509)  *chain = NULL;
    ocsppki_t        ca = pki;
    ocsppki_resp_t   o;
    char             err[256];
    size_t           len = 0;

    (void) req;
    assert_int_equal(atls_store_load_cert(st, "new.test", EC, NULL, &chain, err,
                                          sizeof(err)), ATLS_STORE_OK);
    ca.ca = c->ca->inter;
    ca.ca_key = c->ca->inter_key;
    ocsppki_resp_defaults(&o, time(NULL));
    resp->body = (char *) ocsppki_response(&ca, sk_X509_value(chain, 0), &o, &len);
    assert_non_null(resp->body);
    resp->body_len = len;
    resp->status = 200;
    atls_chain_free(chain);
}

/* A certificate just issued is asked about right after its deploy, in the
 * same pass: stapled from its first handshakes. */
static void
test_deploy_fetches_at_once(void **state)
{
    fakehost_cert_t *c;
    fakehost_url_t  *u;
    atls_issuer_t    is;
    unsigned char   *held;
    size_t           hlen;
    const char      *name = "new.test";
    char             err[256];

    (void) state;
    sched_start();
    issuer_init(&is);
    c = &certs[n_certs++];
    assert_int_equal(fakehost_cert_init(c, name, akey, 1), 0);
    c->ca->ocsp_url = "http://ocsp.ca.test/";
    c->sched = atls_sched_add(h.s, &name, 1, &is, c, err, sizeof(err));
    assert_non_null(c->sched);
    u = fakehost_url(&h, "http://ocsp.ca.test/", 200, NULL, 0);
    u->answer = issued_answer;
    u->arg = c;
    run_pass();
    assert_int_equal(c->n_deployed, 1);
    assert_int_equal(u->hits, 1);
    assert_int_equal(c->n_stapled, 1);
    assert_int_equal(ocsp_stored("new.test", &held, &hlen), ATLS_STORE_OK);
    free(held);
}

/* ---- CRLs ------------------------------------------------------------------------- */

static unsigned char *
crl_listing(X509 *listed, time_t next_update, size_t *len)
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
    der = ocsppki_crl(&pki, &o, len);
    assert_non_null(der);
    return der;
}

/* One CRL URL named by several certificates: one fetch, every one looked
 * up, none fetched again while it is fresh. */
static void
test_crl_shared(void **state)
{
    fakehost_url_t *u;
    unsigned char  *crl;
    size_t          len, i;

    (void) state;
    sched_start();
    for (i = 0; i < 4; i++) {
        char name[32];

        snprintf(name, sizeof(name), "c%zu.test", i);
        (void) cert_seed(atls_strdup(name), NULL, CRL_URL, 1);
    }
    crl = crl_listing(NULL, time(NULL) + 7 * 86400, &len);
    u = fakehost_url(&h, CRL_URL, 200, crl, len);
    run_pass();
    assert_int_equal(u->hits, 1);
    run_pass();
    assert_int_equal(u->hits, 1);
    for (i = 0; i < 4; i++) {
        assert_int_equal(certs[i].done, 0);
        free((char *) certs[i].name);
    }
    free(crl);
}

/* A serial listed in the CRL: replaced, said once. */
static void
test_crl_listed(void **state)
{
    fakehost_url_t *u;
    unsigned char  *crl;
    size_t          len;

    (void) state;
    sched_start();
    (void) cert_seed("ok.test", NULL, CRL_URL, 1);
    (void) cert_seed("listed.test", NULL, CRL_URL, 1);
    crl = crl_listing(leaves[1], time(NULL) + 7 * 86400, &len);
    u = fakehost_url(&h, CRL_URL, 200, crl, len);
    run_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(certs[0].done, 0);
    assert_int_equal(certs[1].done, 1);
    assert_int_equal(certs[1].rc, 0);
    assert_int_equal(certs[1].n_deployed, 1);
    assert_int_equal(logcap_count("certificate \"listed.test\" (ec256) serial"), 1);
    assert_int_equal(logcap_count("listed in its CRL): replacing it now"), 1);
    run_pass();
    assert_int_equal(certs[1].done, 1);
    assert_int_equal(u->hits, 1);
    free(crl);
}

/* After a restart the cached CRL is used; once due, it is fetched with
 * its ETag and a 304 keeps it. */
static void
test_crl_cached_and_304(void **state)
{
    atls_crl_cache_t cache;
    fakehost_url_t  *u;
    unsigned char   *crl, *der = NULL;
    size_t           len, dlen = 0;
    time_t           now = time(NULL);
    char             err[256];

    (void) state;
    sched_start();
    (void) cert_seed("cached.test", NULL, CRL_URL, 1);
    /* nextUpdate in 10 min: fetched again after the 1 h floor */
    crl = crl_listing(NULL, now + 600, &len);
    u = fakehost_url(&h, CRL_URL, 200, crl, len);
    u->etag = "\"v1\"";
    run_pass();
    assert_int_equal(u->hits, 1);
    memset(&cache, 0, sizeof(cache));
    assert_int_equal(atls_store_load_crl(st, CRL_URL, &cache, &der, &dlen, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_string_equal(cache.etag, "\"v1\"");
    assert_true(cache.next_fetch >= cache.fetched + 3600);
    assert_true(cache.next_fetch <= cache.fetched + 3600 + 1);

    /* a new process: the cache is fresh, nothing fetched */
    atls_sched_free(h.s);
    h.s = NULL;
    sched_start();
    assert_non_null(atls_sched_add(h.s, &certs[0].name, 1, &(atls_issuer_t) {
        .directory = (char *) DIRECTORY, .challenge = ATLS_CHAL_HTTP01, .agree_tos = 1 },
        &certs[0], err, sizeof(err)));
    run_pass();
    assert_int_equal(u->hits, 1);

    /* due: a conditional fetch, answered 304 */
    atls_sched_free(h.s);
    h.s = NULL;
    cache.next_fetch = now - 1;
    assert_int_equal(atls_store_save_crl(st, &cache, NULL, 0, err, sizeof(err)),
                     ATLS_STORE_OK);
    sched_start();
    assert_non_null(atls_sched_add(h.s, &certs[0].name, 1, &(atls_issuer_t) {
        .directory = (char *) DIRECTORY, .challenge = ATLS_CHAL_HTTP01, .agree_tos = 1 },
        &certs[0], err, sizeof(err)));
    run_pass();
    assert_int_equal(u->hits, 2);
    assert_int_equal(u->conditional, 1);
    atls_crl_cache_free(&cache);
    free(der);
    der = NULL;
    memset(&cache, 0, sizeof(cache));
    assert_int_equal(atls_store_load_crl(st, CRL_URL, &cache, &der, &dlen, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_true(cache.next_fetch > now);
    assert_int_equal(dlen, len);            /* the CRL held is kept */
    assert_int_equal(certs[0].done, 0);
    atls_crl_cache_free(&cache);
    free(der);
    free(crl);
}

/* A CRL server down: one line, backed off (not fetched at the next pass). */
static void
test_crl_fetch_failure(void **state)
{
    fakehost_url_t *u;

    (void) state;
    sched_start();
    (void) cert_seed("crlfail.test", NULL, CRL_URL, 1);
    u = fakehost_url(&h, CRL_URL, 503, NULL, 0);
    run_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(logcap_count("CRL " CRL_URL ": HTTP status 503"), 1);
    run_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(certs[0].done, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ocsp_good, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_revoked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_wrong_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_transport_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_no_issuer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_url_no_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deploy_fetches_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crl_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crl_listed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crl_cached_and_304, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crl_fetch_failure, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
