/* OCSP: the facts a certificate carries, requests, verification of every
 * shape of response (support/ocsppki mints them with plain OpenSSL), when
 * to ask again, and the Must-Staple CSR. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "atls_crypto.h"
#include "atls_ocsp.h"
#include "support/ocsppki.h"
#include "support/testpki.h"
#include "../fuzz/ocsp_fixture.h"

#define RESPONDER "http://127.0.0.1:8888/ocsp"

static ocsppki_t pki;
static X509     *leaf;          /* names RESPONDER */
static time_t    now;

static int
setup(void **state)
{
    now = time(NULL);
    if (ocsppki_make(&pki) != 0) {
        return -1;
    }
    leaf = ocsppki_leaf(&pki, "a.test", RESPONDER, NULL, 0);
    return leaf != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
    X509_free(leaf);
    ocsppki_free(&pki);
    return 0;
}

/* Verifies the response o describes; returns atls_ocsp_verify's result. */
static int
verify(const ocsppki_resp_t *o, atls_ocsp_answer_t *a, char *err, size_t errlen)
{
    unsigned char *der;
    size_t         len = 0;
    int            rc;

    der = ocsppki_response(&pki, leaf, o, &len);
    assert_non_null(der);
    err[0] = '\0';
    rc = atls_ocsp_verify(der, len, leaf, pki.ca, now, a, err, errlen);
    free(der);
    return rc;
}

/* ---- names and facts ---------------------------------------------------- */

static void
test_status_names(void **state)
{
    atls_ocsp_status_t s, out;
    const char        *names[] = { "none", "good", "revoked", "unknown", "error" };

    for (s = ATLS_OCSP_NONE; s <= ATLS_OCSP_ERROR; s++) {
        assert_string_equal(atls_ocsp_status_name(s), names[s]);
        assert_int_equal(atls_ocsp_status_parse(names[s], &out), 0);
        assert_int_equal(out, s);
    }
    assert_int_equal(atls_ocsp_status_parse("Good", &out), -1);
    assert_int_equal(atls_ocsp_status_parse("", &out), -1);
    assert_int_equal(atls_ocsp_status_parse(NULL, &out), -1);
}

static void
test_cert_facts(void **state)
{
    X509 *plain, *crl_only, *ldap, *staple;
    char *s;

    plain = ocsppki_leaf(&pki, "plain.test", NULL, NULL, 0);
    crl_only = ocsppki_leaf(&pki, "crl.test", NULL, "http://127.0.0.1:9/shard/7.crl", 0);
    ldap = ocsppki_leaf(&pki, "ldap.test", "ldap://127.0.0.1/ocsp", NULL, 0);
    staple = ocsppki_leaf(&pki, "staple.test", RESPONDER, NULL, 1);
    assert_non_null(plain);
    assert_non_null(crl_only);
    assert_non_null(ldap);
    assert_non_null(staple);

    s = atls_ocsp_url(leaf);
    assert_string_equal(s, RESPONDER);
    free(s);
    assert_null(atls_ocsp_url(plain));
    assert_null(atls_ocsp_url(crl_only));
    assert_null(atls_ocsp_url(ldap));        /* only http:// is asked */
    assert_null(atls_ocsp_url(NULL));

    s = atls_crl_url(crl_only);
    assert_string_equal(s, "http://127.0.0.1:9/shard/7.crl");
    free(s);
    assert_null(atls_crl_url(leaf));
    assert_null(atls_crl_url(NULL));

    assert_int_equal(atls_cert_must_staple(staple), 1);
    assert_int_equal(atls_cert_must_staple(leaf), 0);
    assert_int_equal(atls_cert_must_staple(NULL), 0);

    X509_free(plain);
    X509_free(crl_only);
    X509_free(ldap);
    X509_free(staple);
}

/* ---- requests ------------------------------------------------------------ */

/* The OCSPRequest inside a GET URL: strip the prefix, undo the
 * url-encoding and the base64. */
static OCSP_REQUEST *
request_from_url(const char *url, const char *prefix)
{
    char                 b64[1024];
    unsigned char        der[1024];
    const unsigned char *p = der;
    const char          *s;
    size_t               n = 0;
    int                  len;

    assert_memory_equal(url, prefix, strlen(prefix));
    for (s = url + strlen(prefix); *s != '\0' && n < sizeof(b64) - 1; s++) {
        if (s[0] == '%') {
            assert_true(strncmp(s, "%2B", 3) == 0 || strncmp(s, "%2F", 3) == 0
                        || strncmp(s, "%3D", 3) == 0);
            b64[n++] = s[2] == 'B' ? '+' : s[2] == 'F' ? '/' : '=';
            s += 2;
        } else {
            assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789", *s));
            b64[n++] = *s;
        }
    }
    b64[n] = '\0';
    len = EVP_DecodeBlock(der, (const unsigned char *) b64, (int) n);
    assert_true(len > 0);
    while (n > 0 && b64[--n] == '=') {
        len--;                  /* EVP_DecodeBlock counts the padding */
    }
    return d2i_OCSP_REQUEST(NULL, &p, len);
}

/* req asks about leaf under pki.ca with a SHA-1 CertID and nothing else. */
static void
assert_request_for_leaf(OCSP_REQUEST *req)
{
    OCSP_CERTID *want;

    assert_non_null(req);
    assert_int_equal(OCSP_request_onereq_count(req), 1);
    want = OCSP_cert_to_id(EVP_sha1(), leaf, pki.ca);
    assert_int_equal(OCSP_id_cmp(want, OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, 0))),
                     0);
    /* no nonce: RFC 5019 responders pre-sign */
    assert_int_equal(OCSP_REQUEST_get_ext_count(req), 0);
    OCSP_CERTID_free(want);
    OCSP_REQUEST_free(req);
}

static void
test_request_get(void **state)
{
    atls_http_request_t req;
    char                err[256];

    assert_int_equal(atls_ocsp_request(leaf, pki.ca, RESPONDER, &req, err, sizeof(err)), 0);
    assert_string_equal(req.method, "GET");
    assert_true(strlen(req.url) < 255);
    assert_null(req.body);
    assert_string_equal(req.accept, "application/ocsp-response");
    assert_request_for_leaf(request_from_url(req.url, RESPONDER "/"));
    atls_http_request_free(&req);

    /* a responder URL ending in '/' gets no second one */
    assert_int_equal(atls_ocsp_request(leaf, pki.ca, RESPONDER "/", &req, err,
                                       sizeof(err)), 0);
    assert_string_equal(req.method, "GET");
    assert_request_for_leaf(request_from_url(req.url, RESPONDER "/"));
    assert_null(strstr(req.url, "ocsp//"));
    atls_http_request_free(&req);
}

static void
test_request_post_when_long(void **state)
{
    atls_http_request_t  req;
    char                 url[300], err[256];
    const unsigned char *p;

    /* the request alone is ~100 base64 characters: 200 bytes of URL push
     * the GET form over 255 */
    snprintf(url, sizeof(url), "http://127.0.0.1:8888/%0200d", 0);
    assert_int_equal(atls_ocsp_request(leaf, pki.ca, url, &req, err, sizeof(err)), 0);
    assert_string_equal(req.method, "POST");
    assert_string_equal(req.url, url);
    assert_string_equal(req.content_type, "application/ocsp-request");
    assert_string_equal(req.accept, "application/ocsp-response");
    assert_non_null(req.body);
    p = (const unsigned char *) req.body;
    assert_request_for_leaf(d2i_OCSP_REQUEST(NULL, &p, (long) req.body_len));
    assert_ptr_equal(p, (const unsigned char *) req.body + req.body_len);
    atls_http_request_free(&req);
    assert_null(req.url);
    assert_null(req.body);
}

static void
test_request_bad_input(void **state)
{
    atls_http_request_t req;
    char                err[256];

    assert_int_equal(atls_ocsp_request(NULL, pki.ca, RESPONDER, &req, err, sizeof(err)), -1);
    assert_null(req.url);
    assert_int_equal(atls_ocsp_request(leaf, NULL, RESPONDER, &req, err, sizeof(err)), -1);
    assert_int_equal(atls_ocsp_request(leaf, pki.ca, "", &req, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "OCSP request"));
}

/* ---- verification: accepted ---------------------------------------------- */

static void
test_verify_good_by_issuer(void **state)
{
    ocsppki_resp_t     o;
    atls_ocsp_answer_t a;
    char               err[256];

    ocsppki_resp_defaults(&o, now);
    assert_int_equal(verify(&o, &a, err, sizeof(err)), 0);
    assert_int_equal(a.status, ATLS_OCSP_GOOD);
    assert_int_equal(a.this_update, o.this_update);
    assert_int_equal(a.next_update, o.next_update);
    assert_true(a.produced_at >= now - 5 && a.produced_at <= now + 5);
    assert_int_equal(a.reason, -1);
    assert_int_equal(atls_ocsp_valid_until(&a), o.next_update);
}

static void
test_verify_revoked_and_unknown(void **state)
{
    ocsppki_resp_t     o;
    atls_ocsp_answer_t a;
    char               err[256];

    ocsppki_resp_defaults(&o, now);
    o.status = V_OCSP_CERTSTATUS_REVOKED;
    o.reason = OCSP_REVOKED_STATUS_KEYCOMPROMISE;
    o.revoked_at = now - 7200;
    assert_int_equal(verify(&o, &a, err, sizeof(err)), 0);
    assert_int_equal(a.status, ATLS_OCSP_REVOKED);
    assert_int_equal(a.reason, 1);
    assert_int_equal(a.revoked_at, now - 7200);
    assert_string_equal(atls_crl_reason_name(a.reason), "keyCompromise");

    o.reason = -1;
    assert_int_equal(verify(&o, &a, err, sizeof(err)), 0);
    assert_int_equal(a.status, ATLS_OCSP_REVOKED);
    assert_int_equal(a.reason, -1);

    ocsppki_resp_defaults(&o, now);
    o.status = V_OCSP_CERTSTATUS_UNKNOWN;
    assert_int_equal(verify(&o, &a, err, sizeof(err)), 0);
    assert_int_equal(a.status, ATLS_OCSP_UNKNOWN);
}

static void
test_verify_delegated_and_variants(void **state)
{
    X509              *cross;
    ocsppki_resp_t     o;
    atls_ocsp_answer_t a;
    char               err[256];

    ocsppki_resp_defaults(&o, now);
    o.signer = OCSPPKI_BY_RESPONDER;
    assert_int_equal(verify(&o, &a, err, sizeof(err)), 0);
    assert_int_equal(a.status, ATLS_OCSP_GOOD);

    o.by_key = 1;                       /* ResponderID byKey */
    assert_int_equal(verify(&o, &a, err, sizeof(err)), 0);

    ocsppki_resp_defaults(&o, now);
    o.by_key = 1;
    o.id_md = EVP_sha256();             /* SHA-256 CertID */
    assert_int_equal(verify(&o, &a, err, sizeof(err)), 0);
    assert_int_equal(a.status, ATLS_OCSP_GOOD);

    /* the issuer's signature, with a copy of the CA certificate that
     * another CA cross-signed sent along: still the issuer's answer */
    cross = testpki_cert(pki.ca_key, OCSPPKI_CA_CN, NULL, 0, pki.other, pki.other_key, 1,
                         -3600, 86400);
    assert_non_null(cross);
    ocsppki_resp_defaults(&o, now);
    o.extra_cert = cross;
    assert_int_equal(verify(&o, &a, err, sizeof(err)), 0);
    o.by_key = 1;
    assert_int_equal(verify(&o, &a, err, sizeof(err)), 0);
    X509_free(cross);

    /* within the tolerated clock skew on both ends */
    ocsppki_resp_defaults(&o, now);
    o.this_update = now + ATLS_OCSP_SKEW_S - 10;
    assert_int_equal(verify(&o, &a, err, sizeof(err)), 0);
    o.this_update = now - 86400;
    o.next_update = now - ATLS_OCSP_SKEW_S + 10;
    assert_int_equal(verify(&o, &a, err, sizeof(err)), 0);
}

static void
test_verify_no_next_update(void **state)
{
    ocsppki_resp_t     o;
    atls_ocsp_answer_t a;
    char               err[256];

    ocsppki_resp_defaults(&o, now);
    o.next_update = 0;
    assert_int_equal(verify(&o, &a, err, sizeof(err)), 0);
    assert_int_equal(a.next_update, 0);
    assert_int_equal(atls_ocsp_valid_until(&a), o.this_update + ATLS_OCSP_NO_NEXT_S);
    assert_int_equal(atls_ocsp_valid_until(NULL), 0);
}

/* ---- verification: refused ----------------------------------------------- */

typedef struct {
    const char *what;
    void      (*shape)(ocsppki_resp_t *o);
    const char *reason;         /* in err */
} refusal_t;

static void shape_noeku(ocsppki_resp_t *o) { o->signer = OCSPPKI_BY_RESPONDER_NOEKU; }
static void shape_foreign(ocsppki_resp_t *o) { o->signer = OCSPPKI_BY_RESPONDER_FOREIGN; }
static void shape_other(ocsppki_resp_t *o) { o->signer = OCSPPKI_BY_OTHER; }
static void shape_other_by_key(ocsppki_resp_t *o) { o->signer = OCSPPKI_BY_OTHER; o->by_key = 1; }
static void shape_certid(ocsppki_resp_t *o) { o->wrong_certid = 1; }
static void shape_future(ocsppki_resp_t *o) { o->this_update = now + ATLS_OCSP_SKEW_S + 60; o->next_update = now + 86400; }
static void shape_stale(ocsppki_resp_t *o) { o->this_update = now - 86400; o->next_update = now - ATLS_OCSP_SKEW_S - 60; }
static void shape_backwards(ocsppki_resp_t *o) { o->this_update = now - 60; o->next_update = now - 120; }
static void shape_trylater(ocsppki_resp_t *o) { o->response_status = OCSP_RESPONSE_STATUS_TRYLATER; }
static void shape_unauthorized(ocsppki_resp_t *o) { o->response_status = OCSP_RESPONSE_STATUS_UNAUTHORIZED; }

static void
test_verify_refusals(void **state)
{
    static const refusal_t cases[] = {
        { "delegate without EKU", shape_noeku, "id-kp-OCSPSigning" },
        { "delegate of another CA", shape_foreign, "did not issue" },
        { "unrelated key naming the issuer", shape_other, "signature does not verify" },
        { "unrelated key byKey", shape_other_by_key, "ResponderID" },
        { "wrong CertID", shape_certid, "CertID" },
        { "thisUpdate in the future", shape_future, "thisUpdate is in the future" },
        { "nextUpdate passed", shape_stale, "stale" },
        { "nextUpdate before thisUpdate", shape_backwards, "not after thisUpdate" },
        { "tryLater", shape_trylater, "tryLater" },
        { "unauthorized", shape_unauthorized, "unauthorized" },
    };
    ocsppki_resp_t     o;
    atls_ocsp_answer_t a;
    char               err[256];
    size_t             i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ocsppki_resp_defaults(&o, now);
        cases[i].shape(&o);
        if (verify(&o, &a, err, sizeof(err)) != -1) {
            fail_msg("%s: accepted", cases[i].what);
        }
        if (strstr(err, cases[i].reason) == NULL) {
            fail_msg("%s: err \"%s\" lacks \"%s\"", cases[i].what, err, cases[i].reason);
        }
        /* nothing of a refused answer is believed */
        assert_int_equal(a.status, ATLS_OCSP_NONE);
        assert_int_equal(a.this_update, 0);
    }
}

static void
test_verify_garbage(void **state)
{
    ocsppki_resp_t     o;
    atls_ocsp_answer_t a;
    unsigned char     *der, *longer;
    size_t             len = 0;
    char               err[256];

    assert_int_equal(atls_ocsp_verify((const unsigned char *) "\x30\x03\x0a\x01\x00", 5,
                                      leaf, pki.ca, now, &a, err, sizeof(err)), -1);
    /* successful, but without responseBytes */
    assert_non_null(strstr(err, "not a basic response"));
    assert_int_equal(atls_ocsp_verify((const unsigned char *) "garbage", 7,
                                      leaf, pki.ca, now, &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a DER OCSPResponse"));
    assert_int_equal(atls_ocsp_verify(NULL, 0, leaf, pki.ca, now, &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "empty"));

    ocsppki_resp_defaults(&o, now);
    der = ocsppki_response(&pki, leaf, &o, &len);
    assert_non_null(der);
    /* one byte of trailing garbage */
    longer = calloc(1, ATLS_OCSP_MAX_BYTES + 1);
    assert_non_null(longer);
    memcpy(longer, der, len);
    assert_int_equal(atls_ocsp_verify(longer, len + 1, leaf, pki.ca, now, &a, err,
                                      sizeof(err)), -1);
    assert_non_null(strstr(err, "not a DER OCSPResponse"));
    assert_int_equal(atls_ocsp_verify(longer, ATLS_OCSP_MAX_BYTES + 1, leaf, pki.ca, now,
                                      &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "larger than"));
    /* the right response checked for another issuer or without one */
    assert_int_equal(atls_ocsp_verify(der, len, leaf, pki.other, now, &a, err,
                                      sizeof(err)), -1);
    assert_int_equal(atls_ocsp_verify(der, len, leaf, NULL, now, &a, err, sizeof(err)), -1);
    assert_int_equal(atls_ocsp_verify(der, len, leaf, pki.ca, now, &a, err, sizeof(err)), 0);
    free(longer);
    free(der);
}

/* ---- interoperability ------------------------------------------------------ */

static X509 *
fixture_cert(const char *pem)
{
    BIO  *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);

    BIO_free(bio);
    assert_non_null(x);
    return x;
}

/* The seeds of fuzz_ocsp_response were answered by `openssl ocsp` acting as
 * a real responder (tests/fuzz/mkseeds_ocsp.sh): each verifies at the
 * moment it was made and says what the index said. */
static void
test_verify_openssl_responder(void **state)
{
    static const struct { const char *file; atls_ocsp_status_t status; } seeds[] = {
        { "good-by-ca.der", ATLS_OCSP_GOOD },
        { "good-by-responder.der", ATLS_OCSP_GOOD },
        { "good-no-nextupdate.der", ATLS_OCSP_GOOD },
        { "good-sha256.der", ATLS_OCSP_GOOD },
        { "revoked.der", ATLS_OCSP_REVOKED },
        { "unknown.der", ATLS_OCSP_UNKNOWN },
    };
    X509              *ca = fixture_cert(fixture_ca_pem);
    X509              *fleaf = fixture_cert(fixture_leaf_pem);
    atls_ocsp_answer_t a;
    unsigned char      der[4096];
    char               path[256], err[256];
    size_t             i, len;
    FILE              *f;

    for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        snprintf(path, sizeof(path), "tests/fuzz/corpus/fuzz_ocsp_response/%s",
                 seeds[i].file);
        f = fopen(path, "rb");
        assert_non_null(f);
        len = fread(der, 1, sizeof(der), f);
        fclose(f);
        if (atls_ocsp_verify(der, len, fleaf, ca, FIXTURE_NOW, &a, err, sizeof(err)) != 0) {
            fail_msg("%s: %s", seeds[i].file, err);
        }
        assert_int_equal(a.status, seeds[i].status);
        if (a.status == ATLS_OCSP_REVOKED) {
            assert_int_equal(a.reason, 1);
        }
        /* the same answer is not about another certificate */
        assert_int_equal(atls_ocsp_verify(der, len, leaf, ca, FIXTURE_NOW, &a, err,
                                          sizeof(err)), -1);
    }
    X509_free(fleaf);
    X509_free(ca);
}

/* ---- when to ask again --------------------------------------------------- */

#define T0       1800000000L
#define VALIDITY (4L * 86400)

static atls_ocsp_answer_t
answer(atls_ocsp_status_t status, time_t this_update, time_t next_update)
{
    atls_ocsp_answer_t a;

    memset(&a, 0, sizeof(a));
    a.status = status;
    a.this_update = this_update;
    a.next_update = next_update;
    a.reason = -1;
    return a;
}

static void
test_next_refresh_success(void **state)
{
    atls_ocsp_answer_t a = answer(ATLS_OCSP_GOOD, T0, T0 + VALIDITY);
    const unsigned     jitters[] = { 0, 1, 7, 34560, 34561, 123456789, UINT_MAX };
    time_t             at, seen_min = T0 + VALIDITY, seen_max = 0;
    size_t             i;

    /* halfway without jitter */
    assert_int_equal(atls_ocsp_next_refresh(&a, T0 + 60, 0, 0), T0 + VALIDITY / 2);
    /* jitter moves it earlier by at most a tenth of the validity, and it
     * stays before valid_until - 1/4 */
    for (i = 0; i < sizeof(jitters) / sizeof(jitters[0]); i++) {
        at = atls_ocsp_next_refresh(&a, T0 + 60, 0, jitters[i]);
        assert_true(at <= T0 + VALIDITY / 2);
        assert_true(at >= T0 + VALIDITY / 2 - VALIDITY / 10);
        assert_true(at <= T0 + VALIDITY - VALIDITY / 4);
        seen_min = at < seen_min ? at : seen_min;
        seen_max = at > seen_max ? at : seen_max;
    }
    assert_true(seen_min < seen_max);   /* the jitter does spread */
    /* deterministic for one jitter value */
    assert_int_equal(atls_ocsp_next_refresh(&a, T0 + 60, 0, 12345),
                     atls_ocsp_next_refresh(&a, T0 + 60, 0, 12345));

    /* an answer already past halfway: soon, but not before now + 10 s */
    assert_int_equal(atls_ocsp_next_refresh(&a, T0 + VALIDITY - 100, 0, 0),
                     T0 + VALIDITY - 100 + 10);
    /* no nextUpdate: halfway through ATLS_OCSP_NO_NEXT_S */
    a = answer(ATLS_OCSP_GOOD, T0, 0);
    assert_int_equal(atls_ocsp_next_refresh(&a, T0, 0, 0), T0 + ATLS_OCSP_NO_NEXT_S / 2);
    /* nothing held and nothing failed: ask now (+10 s) */
    assert_int_equal(atls_ocsp_next_refresh(NULL, T0, 0, 99), T0 + 10);
}

static void
test_next_refresh_failures(void **state)
{
    atls_ocsp_answer_t good = answer(ATLS_OCSP_GOOD, T0 - VALIDITY / 2, T0 + VALIDITY / 2);
    atls_ocsp_answer_t revoked = answer(ATLS_OCSP_REVOKED, T0 - 60, T0 + 600);
    atls_ocsp_answer_t ending = answer(ATLS_OCSP_GOOD, T0 - 3600, T0 + 1000);
    atls_ocsp_answer_t last = answer(ATLS_OCSP_GOOD, T0 - 3600, T0 + 15);

    /* 60 s doubling to 1 h */
    assert_int_equal(atls_ocsp_next_refresh(NULL, T0, 1, 0), T0 + 60);
    assert_int_equal(atls_ocsp_next_refresh(NULL, T0, 2, 0), T0 + 120);
    assert_int_equal(atls_ocsp_next_refresh(NULL, T0, 3, 0), T0 + 240);
    assert_int_equal(atls_ocsp_next_refresh(NULL, T0, 6, 0), T0 + 1920);
    assert_int_equal(atls_ocsp_next_refresh(NULL, T0, 7, 0), T0 + 3600);
    assert_int_equal(atls_ocsp_next_refresh(NULL, T0, 1000, 0), T0 + 3600);
    assert_int_equal(atls_ocsp_next_refresh(NULL, T0, UINT_MAX, 0), T0 + 3600);
    /* a good answer far from its end does not shorten the backoff */
    assert_int_equal(atls_ocsp_next_refresh(&good, T0, 7, 0), T0 + 3600);
    /* ... one near its end does: the retry comes before it runs out */
    assert_int_equal(atls_ocsp_next_refresh(&ending, T0, 7, 0), T0 + 500);
    assert_true(atls_ocsp_next_refresh(&ending, T0, 7, 0) < T0 + 1000);
    assert_int_equal(atls_ocsp_next_refresh(&last, T0, 3, 0), T0 + 10);
    /* a revoked answer is not kept alive */
    assert_int_equal(atls_ocsp_next_refresh(&revoked, T0, 7, 0), T0 + 3600);
    /* an expired good answer: plain backoff */
    assert_int_equal(atls_ocsp_next_refresh(&last, T0 + 100, 1, 0), T0 + 100 + 60);
}

/* ---- Must-Staple --------------------------------------------------------- */

/* 1 when the CSR requests the TLS Feature status_request, 0 when it
 * requests no TLS Feature at all. */
static int
csr_must_staple(const unsigned char *der, size_t len)
{
    const unsigned char      *p = der;
    X509_REQ                 *req;
    STACK_OF(X509_EXTENSION) *exts;
    TLS_FEATURE              *features = NULL;
    GENERAL_NAMES            *gens;
    int                       found = 0, i;

    req = d2i_X509_REQ(NULL, &p, (long) len);
    assert_non_null(req);
    assert_int_equal(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1);
    exts = X509_REQ_get_extensions(req);
    assert_non_null(exts);
    gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 2);
    GENERAL_NAMES_free(gens);
    features = X509V3_get_d2i(exts, NID_tlsfeature, NULL, NULL);
    for (i = 0; i < sk_ASN1_INTEGER_num(features); i++) {
        found |= ASN1_INTEGER_get(sk_ASN1_INTEGER_value(features, i)) == 5;
    }
    if (features != NULL) {
        assert_int_equal(found, 1);
    }
    TLS_FEATURE_free(features);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    return features != NULL;
}

static int
csr_has_cn(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    X509_REQ            *req = d2i_X509_REQ(NULL, &p, (long) len);
    int                  n;

    assert_non_null(req);
    n = X509_NAME_entry_count(X509_REQ_get_subject_name(req));
    X509_REQ_free(req);
    return n > 0;
}

static void
test_csr_must_staple(void **state)
{
    const char *const names[] = { "a.test", "b.test" };
    unsigned char    *der;
    size_t            len;
    EVP_PKEY         *key = atls_key_generate(ATLS_KEY_EC256);

    assert_non_null(key);
    der = atls_csr_make_flags(key, names, 2, ATLS_CSR_MUST_STAPLE, &len);
    assert_non_null(der);
    assert_int_equal(csr_must_staple(der, len), 1);
    assert_int_equal(csr_has_cn(der, len), 0);
    free(der);

    der = atls_csr_make_flags(key, names, 2, ATLS_CSR_CN | ATLS_CSR_MUST_STAPLE, &len);
    assert_non_null(der);
    assert_int_equal(csr_must_staple(der, len), 1);
    assert_int_equal(csr_has_cn(der, len), 1);
    free(der);

    der = atls_csr_make_flags(key, names, 2, ATLS_CSR_CN, &len);
    assert_non_null(der);
    assert_int_equal(csr_must_staple(der, len), 0);
    assert_int_equal(csr_has_cn(der, len), 1);
    free(der);

    /* the old entry point is the flags one without Must-Staple */
    der = atls_csr_make(key, names, 2, 1, &len);
    assert_non_null(der);
    assert_int_equal(csr_must_staple(der, len), 0);
    assert_int_equal(csr_has_cn(der, len), 1);
    free(der);
    EVP_PKEY_free(key);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_cert_facts),
        cmocka_unit_test(test_request_get),
        cmocka_unit_test(test_request_post_when_long),
        cmocka_unit_test(test_request_bad_input),
        cmocka_unit_test(test_verify_good_by_issuer),
        cmocka_unit_test(test_verify_revoked_and_unknown),
        cmocka_unit_test(test_verify_delegated_and_variants),
        cmocka_unit_test(test_verify_no_next_update),
        cmocka_unit_test(test_verify_refusals),
        cmocka_unit_test(test_verify_garbage),
        cmocka_unit_test(test_verify_openssl_responder),
        cmocka_unit_test(test_next_refresh_success),
        cmocka_unit_test(test_next_refresh_failures),
        cmocka_unit_test(test_csr_must_staple),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
