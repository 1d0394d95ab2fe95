/*
 * The scheduler's OCSP checks (sched_ocsp.c) on a real filesystem store,
 * driven by the fake host: certificates minted by support/ocsppki with or
 * without a responder are stored (support/revfix), and the host answers
 * the responder's URL with canned responses.  A revoked certificate is
 * replaced through the fake CA.
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
#include "atls.h"
#include "atls_ocsp.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "support/logcap.h"
#include "support/revfix.h"

#define OCSP_URL   "http://ocsp.test/r"
#define CRL_URL    "http://crl.test/1.crl"
#define EC         ATLS_KEY_EC256

static int
ocsp_stored(const char *id, unsigned char **der, size_t *len)
{
    char err[256];

    *der = NULL;
    *len = 0;
    return atls_store_load_ocsp(rf.st, id, EC, der, len, err, sizeof(err));
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
    unsigned char   *der, *der2, *held;
    size_t           len, len2, hlen;
    uint64_t         gen0;
    time_t           now = time(NULL);

    (void) state;
    revfix_sched_start();
    c = revfix_seed("good.test", OCSP_URL, NULL, 1);
    der = revfix_response(rf.leaves[0], V_OCSP_CERTSTATUS_GOOD, OCSPPKI_BY_CA, &len);
    u = fakehost_url(&rf.h, "http://ocsp.test/", 200, der, len);
    gen0 = atls_store_generation(rf.st);
    m = revfix_meta("good.test");
    revfix_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(c->n_stapled, 1);
    assert_int_equal(c->done, 0);           /* no order: done() is for orders */
    assert_true(atls_store_generation(rf.st) > gen0);
    assert_int_equal(ocsp_stored("good.test", &held, &hlen), ATLS_STORE_OK);
    assert_int_equal(hlen, len);
    assert_memory_equal(held, der, len);
    free(held);
    {
        atls_cert_meta_t after = revfix_meta("good.test");
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
    revfix_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(c->n_stapled, 1);

    /* due: asked again; the same bytes again are nothing new to staple */
    revfix_refresh_due("good.test");
    revfix_pass();
    assert_int_equal(u->hits, 2);
    assert_int_equal(c->n_stapled, 1);
    m = revfix_meta("good.test");
    assert_true(atls_cert_meta_kt(&m, EC)->ocsp_next_refresh > now + 60);
    atls_cert_meta_free(&m);

    /* a fresh response is */
    der2 = revfix_response(rf.leaves[0], V_OCSP_CERTSTATUS_GOOD, OCSPPKI_BY_CA, &len2);
    u->body = der2;
    u->body_len = len2;
    revfix_refresh_due("good.test");
    revfix_pass();
    assert_int_equal(u->hits, 3);
    assert_int_equal(c->n_stapled, 2);
    assert_int_equal(ocsp_stored("good.test", &held, &hlen), ATLS_STORE_OK);
    assert_int_equal(hlen, len2);
    assert_memory_equal(held, der2, len2);
    free(held);
    free(der2);
    assert_int_equal(logcap_count("OCSP"), 0);     /* nothing at the default level */
    free(der);
}

/* The responder of the fake CA signs for whatever certificate is stored. */
static void
issued_answer(void *arg, const atls_http_request_t *req, atls_http_response_t *resp)
{
    fakehost_cert_t *c = arg;
    STACK_OF(X509)  *chain = NULL;
    ocsppki_t        ca = rf.pki;
    ocsppki_resp_t   o;
    char             err[256];
    size_t           len = 0;

    (void) req;
    assert_int_equal(atls_store_load_cert(rf.st, c->name, EC, NULL, &chain, err,
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

/* "revoked": the stored response goes, the facts are recorded, the line
 * is logged once, and the certificate is ordered again in the same pass
 * with a new key and the ARI "replaces" field. */
static void
test_ocsp_revoked(void **state)
{
    fakehost_cert_t *c;
    fakehost_url_t  *u, *issued;
    atls_cert_meta_t m;
    unsigned char   *good, *revoked, *held;
    size_t           glen, rlen, hlen;
    char             old_serial[132];
    int              replaces = 0;

    (void) state;
    revfix_sched_start();
    c = revfix_seed("rev.test", OCSP_URL, NULL, 1);
    c->ca->renewal_info = 1;    /* so that the order names what it replaces */
    c->ca->ocsp_url = "http://ocsp.ca.test/";
    issued = fakehost_url(&rf.h, "http://ocsp.ca.test/", 200, NULL, 0);
    issued->answer = issued_answer;
    issued->arg = c;
    good = revfix_response(rf.leaves[0], V_OCSP_CERTSTATUS_GOOD, OCSPPKI_BY_CA, &glen);
    revoked = revfix_response(rf.leaves[0], V_OCSP_CERTSTATUS_REVOKED, OCSPPKI_BY_CA, &rlen);
    u = fakehost_url(&rf.h, "http://ocsp.test/", 200, good, glen);
    revfix_pass();
    assert_int_equal(ocsp_stored("rev.test", &held, &hlen), ATLS_STORE_OK);
    free(held);
    m = revfix_meta("rev.test");
    snprintf(old_serial, sizeof(old_serial), "%s", atls_cert_meta_kt(&m, EC)->serial);
    atls_cert_meta_free(&m);

    u->body = revoked;
    u->body_len = rlen;
    revfix_refresh_due("rev.test");
    revfix_pass();
    assert_int_equal(u->hits, 2);
    /* replaced in this very pass */
    assert_int_equal(c->done, 1);
    assert_int_equal(c->rc, 0);
    assert_int_equal(c->n_deployed, 1);
    /* stapled, withdrawn, and the new certificate's stapled right away */
    assert_int_equal(c->n_stapled, 3);
    assert_int_equal(issued->hits, 1);
    assert_int_equal(logcap_count("was revoked at"), 1);
    assert_int_equal(logcap_count("reason keyCompromise, reported by its OCSP responder): "
                               "replacing it now"), 1);
    assert_non_null(c->ca->order_payload);
    replaces = json_object_get(c->ca->order_payload, "replaces") != NULL;
    assert_true(replaces);
    assert_int_equal(ocsp_stored("rev.test", &held, &hlen), ATLS_STORE_OK);
    free(held);

    m = revfix_meta("rev.test");
    {
        atls_cert_kt_info_t *ki = atls_cert_meta_kt(&m, EC);

        /* a new certificate: its facts start over */
        assert_string_not_equal(ki->serial, old_serial);
        assert_int_equal(ki->revoked_seen, 0);
        assert_string_equal(ki->ocsp_url, "http://ocsp.ca.test/");
        assert_int_equal(ki->ocsp_status, ATLS_OCSP_GOOD);
    }
    atls_cert_meta_free(&m);

    /* nothing more to do: no new order, no new question */
    revfix_pass();
    assert_int_equal(c->done, 1);
    assert_int_equal(u->hits, 2);
    assert_int_equal(issued->hits, 1);
    free(good);
    free(revoked);
}

static int
until_hits(fakehost_t *h, void *arg)
{
    (void) h;
    return ((fakehost_url_t *) arg)->hits >= 2;
}

/* A response valid for a minute is refreshed by the scheduler's own timer,
 * with no pass from the host in between. */
static void
test_ocsp_refresh_between_passes(void **state)
{
    fakehost_cert_t *c;
    fakehost_url_t  *u;
    ocsppki_resp_t   o;
    unsigned char   *der, *der2;
    size_t           len, len2;

    (void) state;
    revfix_sched_start();
    c = revfix_seed("short.test", OCSP_URL, NULL, 1);
    ocsppki_resp_defaults(&o, time(NULL));
    o.this_update = time(NULL) - 30;
    o.next_update = time(NULL) + 30;
    der = ocsppki_response(&rf.pki, rf.leaves[0], &o, &len);
    assert_non_null(der);
    u = fakehost_url(&rf.h, "http://ocsp.test/", 200, der, len);
    revfix_pass();
    assert_int_equal(u->hits, 1);
    assert_true(rf.h.timer_at >= 0);        /* armed for the refresh */
    der2 = ocsppki_response(&rf.pki, rf.leaves[0], &o, &len2);   /* fresh bytes */
    assert_non_null(der2);
    u->body = der2;
    u->body_len = len2;
    assert_int_equal(fakehost_run(&rf.h, until_hits, u, 40000, NULL), 0);
    assert_int_equal(c->n_stapled, 2);
    assert_int_equal(fakehost_run(&rf.h, fakehost_until_settled, NULL, 5000, NULL), 0);
    free(der);
    free(der2);
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
    revfix_sched_start();
    c = revfix_seed("unk.test", OCSP_URL, NULL, 1);
    der = revfix_response(rf.leaves[0], V_OCSP_CERTSTATUS_UNKNOWN, OCSPPKI_BY_CA, &len);
    u = fakehost_url(&rf.h, "http://ocsp.test/", 200, der, len);
    revfix_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(c->n_stapled, 0);
    assert_int_equal(ocsp_stored("unk.test", &held, &hlen), ATLS_STORE_NOTFOUND);
    m = revfix_meta("unk.test");
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
    revfix_sched_start();
    c = revfix_seed("bad.test", OCSP_URL, NULL, 1);
    bad = revfix_response(rf.leaves[0], V_OCSP_CERTSTATUS_GOOD, OCSPPKI_BY_OTHER, &blen);
    good = revfix_response(rf.leaves[0], V_OCSP_CERTSTATUS_GOOD, OCSPPKI_BY_CA, &glen);
    u = fakehost_url(&rf.h, "http://ocsp.test/", 200, bad, blen);
    revfix_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(c->n_stapled, 0);
    assert_int_equal(ocsp_stored("bad.test", &held, &hlen), ATLS_STORE_NOTFOUND);
    m = revfix_meta("bad.test");
    assert_int_equal(atls_cert_meta_kt(&m, EC)->ocsp_status, ATLS_OCSP_ERROR);
    assert_int_equal(atls_cert_meta_kt(&m, EC)->ocsp_failures, 1);
    assert_non_null(atls_cert_meta_kt(&m, EC)->ocsp_error);
    assert_true(atls_cert_meta_kt(&m, EC)->ocsp_next_refresh >= time(NULL) + 10);
    atls_cert_meta_free(&m);
    assert_int_equal(logcap_count("autotls: certificate \"bad.test\" (ec256): OCSP"), 1);

    /* backing off: not asked at the next pass */
    revfix_pass();
    assert_int_equal(u->hits, 1);

    /* a failure streak is one line; a recovery is said */
    revfix_refresh_due("bad.test");
    revfix_pass();
    assert_int_equal(u->hits, 2);
    assert_int_equal(logcap_count("autotls: certificate \"bad.test\" (ec256): OCSP"), 1);
    u->body = good;
    u->body_len = glen;
    revfix_refresh_due("bad.test");
    revfix_pass();
    assert_int_equal(c->n_stapled, 1);
    assert_int_equal(logcap_count("answers again after 2 failure(s)"), 1);

    /* the responder goes bad again: the good response held stays */
    u->body = bad;
    u->body_len = blen;
    revfix_refresh_due("bad.test");
    revfix_pass();
    assert_int_equal(u->hits, 4);
    assert_int_equal(c->n_stapled, 1);
    assert_int_equal(ocsp_stored("bad.test", &held, &hlen), ATLS_STORE_OK);
    free(held);
    m = revfix_meta("bad.test");
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
    revfix_sched_start();
    (void) revfix_seed("down.test", OCSP_URL, NULL, 1);
    u = fakehost_url(&rf.h, "http://ocsp.test/", 0, NULL, 0);
    revfix_pass();
    assert_int_equal(u->hits, 1);
    m = revfix_meta("down.test");
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
    revfix_sched_start();
    (void) revfix_seed("alone.test", OCSP_URL, NULL, 0);
    u = fakehost_url(&rf.h, "http://ocsp.test/", 0, NULL, 0);
    revfix_pass();
    assert_int_equal(u->hits, 0);
    assert_int_equal(rf.h.n_log, 0);
    m = revfix_meta("alone.test");
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
    revfix_sched_start();
    (void) revfix_seed("quiet.test", NULL, NULL, 1);
    (void) revfix_seed("quiet2.test", OCSP_URL, NULL, 1);
    revfix_issuer(&is);
    is.stapling_off = 1;
    assert_non_null(atls_sched_add(rf.h.s, &name, 1, &is, &rf.certs[1], err, sizeof(err)));
    logcap_start(ATLS_LOG_INFO);    /* what the passes say, not the set-up */
    revfix_pass();
    revfix_pass();
    assert_int_equal(rf.h.n_log, 0);
    if (logcap_len() != 0) {
        fail_msg("said: %s", logcap_text());
    }
}

/* A store from before the URLs were recorded: they are read from the
 * stored leaf once, and the responder is asked. */
static void
test_urls_backfilled(void **state)
{
    fakehost_url_t  *u;
    atls_cert_meta_t m;
    unsigned char   *der;
    size_t           len;
    char             err[256];

    (void) state;
    revfix_sched_start();
    (void) revfix_seed("old.test", OCSP_URL, CRL_URL, 1);
    m = revfix_meta("old.test");
    free(m.kt_info[0].ocsp_url);
    free(m.kt_info[0].crl_url);
    m.kt_info[0].ocsp_url = NULL;
    m.kt_info[0].crl_url = NULL;
    assert_int_equal(atls_store_save_meta(rf.st, &m, err, sizeof(err)), ATLS_STORE_OK);
    atls_cert_meta_free(&m);
    der = revfix_response(rf.leaves[0], V_OCSP_CERTSTATUS_GOOD, OCSPPKI_BY_CA, &len);
    u = fakehost_url(&rf.h, "http://ocsp.test/", 200, der, len);
    revfix_pass();
    assert_int_equal(u->hits, 1);
    m = revfix_meta("old.test");
    assert_string_equal(m.kt_info[0].ocsp_url, OCSP_URL);
    assert_string_equal(m.kt_info[0].crl_url, CRL_URL);
    assert_int_equal(m.kt_info[0].ocsp_status, ATLS_OCSP_GOOD);
    atls_cert_meta_free(&m);
    free(der);
}

/* ---- after a deploy --------------------------------------------------------------- */

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
    revfix_sched_start();
    revfix_issuer(&is);
    is.must_staple = 1;        /* handed to the order: the CSR asks for it */
    c = &rf.certs[rf.n_certs++];
    assert_int_equal(fakehost_cert_init(c, name, rf.akey, 1), 0);
    c->ca->ocsp_url = "http://ocsp.ca.test/";
    c->sched = atls_sched_add(rf.h.s, &name, 1, &is, c, err, sizeof(err));
    assert_non_null(c->sched);
    u = fakehost_url(&rf.h, "http://ocsp.ca.test/", 200, NULL, 0);
    u->answer = issued_answer;
    u->arg = c;
    revfix_pass();
    assert_int_equal(c->n_deployed, 1);
    assert_int_equal(c->ca->csr_must_staple, 1);
    assert_int_equal(u->hits, 1);
    assert_int_equal(c->n_stapled, 1);
    assert_int_equal(ocsp_stored("new.test", &held, &hlen), ATLS_STORE_OK);
    free(held);
}

/* Known revoked (`autotls revoke` on another machine): replaced at the
 * next pass, whatever the backoff. */
static void
test_operator_revoked(void **state)
{
    atls_cert_meta_t m;
    char             err[256];

    (void) state;
    revfix_sched_start();
    (void) revfix_seed("op.test", NULL, NULL, 1);
    m = revfix_meta("op.test");
    m.kt_info[0].revoked_seen = time(NULL);
    m.kt_info[0].revoked_at = time(NULL);
    m.kt_info[0].revoked_reason = 1;
    m.kt_info[0].revoked_source = atls_strdup("operator");
    m.failures = 3;
    m.last_attempt = time(NULL) - 600;
    m.next_attempt = time(NULL) + 3600;
    assert_int_equal(atls_store_save_meta(rf.st, &m, err, sizeof(err)), ATLS_STORE_OK);
    atls_cert_meta_free(&m);
    revfix_pass();
    assert_int_equal(rf.certs[0].done, 1);
    assert_int_equal(rf.certs[0].rc, 0);
    assert_int_equal(rf.certs[0].n_deployed, 1);
    m = revfix_meta("op.test");
    assert_int_equal(m.kt_info[0].revoked_seen, 0);
    atls_cert_meta_free(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ocsp_good, revfix_setup, revfix_teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_revoked, revfix_setup, revfix_teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_refresh_between_passes, revfix_setup,
                                        revfix_teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_unknown, revfix_setup, revfix_teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_wrong_key, revfix_setup, revfix_teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_transport_error, revfix_setup, revfix_teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_no_issuer, revfix_setup, revfix_teardown),
        cmocka_unit_test_setup_teardown(test_no_url_no_request, revfix_setup, revfix_teardown),
        cmocka_unit_test_setup_teardown(test_urls_backfilled, revfix_setup, revfix_teardown),
        cmocka_unit_test_setup_teardown(test_deploy_fetches_at_once, revfix_setup, revfix_teardown),
        cmocka_unit_test_setup_teardown(test_operator_revoked, revfix_setup, revfix_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
