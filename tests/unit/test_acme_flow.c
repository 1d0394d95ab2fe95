/*
 * The ACME engine driven through complete flows against a canned, strict CA
 * (support/fakeca.c): every JWS is verified with plain OpenSSL, nonces are
 * tracked, and the CA records what the engine sent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include "atls_acme.h"
#include "atls_b64.h"
#include "atls_schedule.h"
#include "support/fakeca.h"
#include "support/testpki.h"

#define NOW 1700000000

typedef struct {
    EVP_PKEY            *acct;
    EVP_PKEY            *certkey;
    fakeca_t            *ca;
    fakeca_run_t         run;
    atls_order_params_t  p;
    const char          *names[4];
    const char          *contact[1];
    atls_acme_t         *e;
} fx_t;

static int
fx_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    fx->acct = testpki_key(0);
    fx->certkey = testpki_key(0);
    assert_non_null(fx->acct);
    assert_non_null(fx->certkey);
    fx->ca = fakeca_new(fx->acct);
    assert_non_null(fx->ca);
    fx->names[0] = "example.com";
    fx->names[1] = "www.example.com";
    fx->contact[0] = "admin@example.com";
    fx->p.directory_url = FAKECA_BASE "/dir";
    fx->p.account_key = fx->acct;
    fx->p.contact = fx->contact;
    fx->p.n_contact = 1;
    fx->p.agree_tos = 1;
    fx->p.names = fx->names;
    fx->p.n_names = 2;
    fx->p.challenge = ATLS_CHAL_HTTP01;
    fx->p.cert_key = fx->certkey;
    fx->run.now = NOW;
    *state = fx;
    return 0;
}

static int
fx_teardown(void **state)
{
    fx_t *fx = *state;

    atls_acme_free(fx->e);
    fakeca_run_clear(&fx->run);
    fakeca_free(fx->ca);
    EVP_PKEY_free(fx->acct);
    EVP_PKEY_free(fx->certkey);
    free(fx);
    return 0;
}

static atls_action_kind_t
fx_order(fx_t *fx)
{
    atls_error_t err;

    fx->e = atls_acme_order_new(&fx->p, &err);
    assert_non_null(fx->e);
    return fakeca_run(fx->ca, fx->e, &fx->run);
}

static void
assert_done(fx_t *fx)
{
    if (fx->run.final != ATLS_ACT_DONE) {
        fail_msg("engine failed in %s: %s: %s", atls_acme_state_name(fx->e),
                 atls_acme_error(fx->e)->type, atls_acme_error(fx->e)->detail);
    }
    assert_int_equal(fx->ca->violations, 0);
}

static void
assert_failed(fx_t *fx, atls_err_class_t cls, const char *type)
{
    const atls_error_t *err = atls_acme_error(fx->e);

    assert_int_equal(fx->run.final, ATLS_ACT_FAILED);
    assert_int_equal(fx->ca->violations, 0);
    assert_int_equal(err->cls, cls);
    assert_string_equal(err->type, type);
    assert_string_equal(atls_acme_state_name(fx->e), "failed");
}

/* RFC 7638 thumbprint of a P-256 key, computed here without the JWS code. */
static char *
thumbprint(EVP_PKEY *k)
{
    unsigned char pub[65], md[SHA256_DIGEST_LENGTH];
    size_t        len = 0;
    char         *x, *y, json[256];

    assert_int_equal(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pub,
                                                     sizeof(pub), &len), 1);
    assert_int_equal(len, 65);
    x = atls_b64url_encode(pub + 1, 32);
    y = atls_b64url_encode(pub + 33, 32);
    snprintf(json, sizeof(json), "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
             x, y);
    free(x);
    free(y);
    SHA256((unsigned char *) json, strlen(json), md);
    return atls_b64url_encode(md, sizeof(md));
}

static char *
expected_chain(fakeca_t *ca, int alt)
{
    X509 *certs[2] = { ca->leaf, alt < 0 ? ca->inter : ca->alt_inter[alt] };

    return testpki_pem(certs, 2);
}

/* ---- full flows ---------------------------------------------------------- */

static void
test_http01_two_names(void **state)
{
    fx_t       *fx = *state;
    char       *tp, ka[256], *chain;
    json_t     *contact, *ids;
    size_t      i;

    fx_order(fx);
    assert_done(fx);

    /* directory first, then one nonce fetch: every later nonce is recycled */
    assert_string_equal(fx->ca->log[0].method, "GET");
    assert_string_equal(fx->ca->log[0].path, "/dir");
    assert_int_equal(fakeca_count(fx->ca, "HEAD", "/nonce"), 1);

    /* the account: created with ToS agreement and a mailto: contact */
    assert_string_equal(atls_acme_result_account_url(fx->e), FAKECA_ACCT_URL);
    assert_true(json_is_true(json_object_get(fx->ca->account_payload,
                                             "termsOfServiceAgreed")));
    contact = json_object_get(fx->ca->account_payload, "contact");
    assert_int_equal(json_array_size(contact), 1);
    assert_string_equal(json_string_value(json_array_get(contact, 0)),
                        "mailto:admin@example.com");
    assert_true(fakeca_find(fx->ca, "POST", "/new-acct", 0)->jwk);

    ids = json_object_get(fx->ca->order_payload, "identifiers");
    assert_int_equal(json_array_size(ids), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ids, 1), "type")),
                        "dns");
    assert_null(json_object_get(fx->ca->order_payload, "profile"));
    assert_null(json_object_get(fx->ca->order_payload, "replaces"));
    assert_string_equal(atls_acme_result_order_url(fx->e), FAKECA_ORDER_URL);

    /* both challenges published before either is answered */
    assert_int_equal(fx->run.n_setup, 2);
    assert_true(fx->run.last_setup_step < fx->run.first_respond_step);
    tp = thumbprint(fx->acct);
    for (i = 0; i < 2; i++) {
        assert_string_equal(fx->run.setup_ident[i], fx->names[i]);
        assert_int_equal(fx->run.setup_type[i], ATLS_CHAL_HTTP01);
        assert_string_equal(fx->run.setup_token[i], fx->ca->tokens[i]);
        snprintf(ka, sizeof(ka), "%s.%s", fx->ca->tokens[i], tp);
        assert_string_equal(fx->run.setup_key_authz[i], ka);
        assert_null(fx->run.setup_dns_name[i]);
    }
    free(tp);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/chal/0/http-01"), 1);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/chal/1/http-01"), 1);
    assert_int_equal(fx->run.n_teardown, 2);
    assert_string_equal(fx->run.teardown_ident[0], "example.com");
    assert_string_equal(fx->run.teardown_ident[1], "www.example.com");

    /* the CSR named exactly the order's names */
    assert_int_equal(fx->ca->n_csr_names, 2);
    assert_string_equal(fx->ca->csr_names[0], "example.com");
    assert_string_equal(fx->ca->csr_names[1], "www.example.com");

    /* no CN unless asked for */
    assert_null(fx->ca->csr_cn);

    chain = expected_chain(fx->ca, -1);
    assert_string_equal(atls_acme_result_chain_pem(fx->e), chain);
    free(chain);
    /* the one download asked for the PEM chain type (fakeca counts it) */
    assert_int_equal(fakeca_count(fx->ca, "POST", "/cert/1"), 1);
    assert_int_equal(fx->ca->n_cert_accept, 1);
    assert_string_equal(atls_acme_state_name(fx->e), "done");
}

static void
test_tls_alpn01(void **state)
{
    fx_t *fx = *state;

    fx->p.challenge = ATLS_CHAL_TLSALPN01;
    fx->p.n_names = 1;
    fx_order(fx);
    assert_done(fx);
    assert_int_equal(fx->run.n_setup, 1);
    assert_int_equal(fx->run.setup_type[0], ATLS_CHAL_TLSALPN01);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/chal/0/tls-alpn-01"), 1);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/chal/0/http-01"), 0);
    assert_null(fx->run.setup_dns_value[0]);
}

static void
test_dns01_wildcard(void **state)
{
    fx_t          *fx = *state;
    unsigned char  md[SHA256_DIGEST_LENGTH];
    char          *want;
    size_t         i;

    fx->names[0] = "*.example.com";
    fx->names[1] = "example.com";
    fx->p.challenge = ATLS_CHAL_DNS01;
    fx_order(fx);
    assert_done(fx);
    assert_int_equal(fx->run.n_setup, 2);
    for (i = 0; i < 2; i++) {
        /* the wildcard's authorization names the base domain */
        assert_string_equal(fx->run.setup_ident[i], "example.com");
        assert_int_equal(fx->run.setup_type[i], ATLS_CHAL_DNS01);
        assert_string_equal(fx->run.setup_dns_name[i], "_acme-challenge.example.com");
        SHA256((unsigned char *) fx->run.setup_key_authz[i],
               strlen(fx->run.setup_key_authz[i]), md);
        want = atls_b64url_encode(md, sizeof(md));
        assert_string_equal(fx->run.setup_dns_value[i], want);
        free(want);
    }
    assert_string_not_equal(fx->run.setup_dns_value[0], fx->run.setup_dns_value[1]);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/chal/0/dns-01"), 1);
    assert_string_equal(fx->ca->csr_names[0], "*.example.com");
}

static void
test_ip_identifier(void **state)
{
    fx_t   *fx = *state;
    json_t *id;

    fx->names[0] = "127.0.0.1";
    fx->p.n_names = 1;
    fx_order(fx);
    assert_done(fx);
    id = json_array_get(json_object_get(fx->ca->order_payload, "identifiers"), 0);
    assert_string_equal(json_string_value(json_object_get(id, "type")), "ip");
    assert_string_equal(fx->run.setup_ident[0], "127.0.0.1");
    assert_string_equal(fx->ca->csr_names[0], "127.0.0.1");
}

static void
test_valid_authz_skipped(void **state)
{
    fx_t *fx = *state;

    fx->ca->prevalid[0] = "example.com";
    fx_order(fx);
    assert_done(fx);
    assert_int_equal(fx->run.n_setup, 1);
    assert_string_equal(fx->run.setup_ident[0], "www.example.com");
    assert_int_equal(fakeca_count(fx->ca, "POST", "/chal/0/"), 0);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/chal/1/"), 1);
    assert_int_equal(fx->run.n_teardown, 1);
}

static void
test_all_authz_valid(void **state)
{
    fx_t *fx = *state;

    fx->ca->prevalid[0] = "example.com";
    fx->ca->prevalid[1] = "www.example.com";
    fx_order(fx);
    assert_done(fx);
    assert_int_equal(fx->run.n_setup, 0);
    /* a ready order goes straight to finalize */
    assert_int_equal(fakeca_count(fx->ca, "POST", "/authz/"), 0);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/finalize/1"), 1);
}

/* ---- nonces and errors ---------------------------------------------------- */

static void
test_bad_nonce_once(void **state)
{
    fx_t           *fx = *state;
    fakeca_fault_t  f = { "POST", "/new-order", 0, 1, 400, "badNonce", "stale", NULL };

    fx->ca->faults[0] = f;
    fx_order(fx);
    assert_done(fx);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/new-order"), 2);
    /* the fresh nonce from the badNonce answer was used: no second HEAD */
    assert_int_equal(fakeca_count(fx->ca, "HEAD", "/nonce"), 1);
    assert_string_equal(fakeca_find(fx->ca, "POST", "/new-order", 0)->payload,
                        fakeca_find(fx->ca, "POST", "/new-order", 1)->payload);
}

/* A badNonce on the certificate download: the resend still asks for PEM. */
static void
test_download_bad_nonce_keeps_accept(void **state)
{
    fx_t           *fx = *state;
    fakeca_fault_t  f = { "POST", "/cert/1", 0, 1, 400, "badNonce", "stale", NULL };

    fx->ca->faults[0] = f;
    fx_order(fx);
    assert_done(fx);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/cert/1"), 2);
    assert_int_equal(fx->ca->n_cert_accept, 1);
}

/* csr_with_cn puts the first name in the CSR subject as well. */
static void
test_csr_with_cn(void **state)
{
    fx_t *fx = *state;

    fx->p.csr_with_cn = 1;
    fx_order(fx);
    assert_done(fx);
    assert_non_null(fx->ca->csr_cn);
    assert_string_equal(fx->ca->csr_cn, "example.com");
}

/* must_staple asks for the TLS Feature extension in the CSR; not asked
 * for, it is not there. */
static void
test_csr_must_staple(void **state)
{
    fx_t *fx = *state;

    fx->p.must_staple = 1;
    fx_order(fx);
    assert_done(fx);
    assert_int_equal(fx->ca->csr_must_staple, 1);
}

static void
test_csr_no_must_staple(void **state)
{
    fx_t *fx = *state;

    fx_order(fx);
    assert_done(fx);
    assert_int_equal(fx->ca->csr_must_staple, 0);
}

static void
test_bad_nonce_forever(void **state)
{
    fx_t           *fx = *state;
    fakeca_fault_t  f = { "POST", "/authz/", 0, -1, 400, "badNonce", "stale", NULL };

    fx->ca->faults[0] = f;
    fx_order(fx);
    assert_failed(fx, ATLS_ERR_RETRY_LATER, "urn:ietf:params:acme:error:badNonce");
    /* the first try and 20 resends, then a retry-later failure */
    assert_int_equal(fakeca_count(fx->ca, "POST", "/authz/"), 21);
}

static void
test_rate_limited(void **state)
{
    fx_t               *fx = *state;
    fakeca_fault_t      f = { "POST", "/new-order", 0, 1, 429, "rateLimited",
                              "too many certificates already issued for example.com",
                              "3600" };
    const atls_error_t *err;

    fx->ca->faults[0] = f;
    fx_order(fx);
    assert_failed(fx, ATLS_ERR_RETRY_LATER, "urn:ietf:params:acme:error:rateLimited");
    err = atls_acme_error(fx->e);
    assert_int_equal(err->http_status, 429);
    assert_int_equal(err->retry_after, NOW + 3600);
    assert_non_null(strstr(err->detail, "too many certificates already issued"));
    /* the account learned before the failure is kept for next time */
    assert_string_equal(atls_acme_result_account_url(fx->e), FAKECA_ACCT_URL);
    assert_null(atls_acme_result_chain_pem(fx->e));
}

static void
test_server_error_on_finalize(void **state)
{
    fx_t           *fx = *state;
    fakeca_fault_t  f = { "POST", "/finalize/", 0, 1, 503, NULL, "<html>down</html>", NULL };

    fx->ca->faults[0] = f;
    fx_order(fx);
    assert_failed(fx, ATLS_ERR_RETRY_LATER, "autotls:http");
    assert_int_equal(atls_acme_error(fx->e)->http_status, 503);
    /* challenges were withdrawn as their authorizations settled */
    assert_int_equal(fx->run.n_teardown, 2);
}

static void
test_transport_error(void **state)
{
    fx_t           *fx = *state;
    fakeca_fault_t  f = { "POST", "/new-order", 0, 1, 0, NULL, NULL, NULL };

    fx->ca->faults[0] = f;
    fx_order(fx);
    assert_failed(fx, ATLS_ERR_RETRY_LATER, "autotls:transport");
    assert_non_null(strstr(atls_acme_error(fx->e)->detail, "Connection refused"));
}

static void
test_invalid_challenge(void **state)
{
    fx_t               *fx = *state;
    const atls_error_t *err;

    fx->ca->invalid[0] = "www.example.com";
    fx_order(fx);
    assert_failed(fx, ATLS_ERR_PERMANENT, "urn:ietf:params:acme:error:connection");
    err = atls_acme_error(fx->e);
    assert_non_null(strstr(err->detail, "Connection refused"));
    assert_non_null(strstr(err->detail, "www.example.com"));
    /* every published challenge is withdrawn, the failed one included */
    assert_int_equal(fx->run.n_setup, 2);
    assert_int_equal(fx->run.n_teardown, 2);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/finalize/"), 0);
}

static void
test_setup_failure(void **state)
{
    fx_t *fx = *state;

    fx->run.fail_setup_for = "www.example.com";
    fx_order(fx);
    assert_failed(fx, ATLS_ERR_PERMANENT, "autotls:challenge-setup");
    assert_non_null(strstr(atls_acme_error(fx->e)->detail, "the hook said no"));
    assert_int_equal(fakeca_count(fx->ca, "POST", "/chal/"), 0);
    /* the one that was published is withdrawn; the failed one never was */
    assert_int_equal(fx->run.n_teardown, 1);
    assert_string_equal(fx->run.teardown_ident[0], "example.com");
}

static void
test_challenge_type_not_offered(void **state)
{
    fx_t *fx = *state;

    fx->ca->challenges = "http-01,tls-alpn-01";
    fx->p.challenge = ATLS_CHAL_DNS01;
    fx_order(fx);
    assert_failed(fx, ATLS_ERR_PERMANENT, "autotls:challenge-type");
    assert_non_null(strstr(atls_acme_error(fx->e)->detail, "offered: http-01, tls-alpn-01"));
    assert_int_equal(fx->run.n_setup, 0);
}

static void
test_bad_token(void **state)
{
    fx_t *fx = *state;

    /* a token is used in a URL path and a lookup key: never trust it */
    fx->ca->token_override = "../../etc/passwd";
    fx_order(fx);
    assert_failed(fx, ATLS_ERR_PERMANENT, "autotls:protocol");
    assert_non_null(strstr(atls_acme_error(fx->e)->detail, "token"));
    assert_int_equal(fx->run.n_setup, 0);
}

/* ---- accounts ------------------------------------------------------------ */

static void
test_account_exists(void **state)
{
    fx_t               *fx = *state;
    const fakeca_req_t *r;

    fx->p.account_known_key = 1;
    fx->ca->account_exists = 1;
    fx_order(fx);
    assert_done(fx);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/new-acct"), 1);
    r = fakeca_find(fx->ca, "POST", "/new-acct", 0);
    assert_string_equal(r->payload, "{\"onlyReturnExisting\":true}");
    assert_true(r->jwk);
    assert_null(fx->ca->account_payload);
    assert_string_equal(atls_acme_result_account_url(fx->e), FAKECA_ACCT_URL);
}

static void
test_account_known_key_missing(void **state)
{
    fx_t *fx = *state;

    fx->p.account_known_key = 1;
    fx_order(fx);
    assert_done(fx);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/new-acct"), 2);
    assert_non_null(fx->ca->account_payload);
}

static void
test_account_url_known(void **state)
{
    fx_t *fx = *state;

    fx->p.account_url = FAKECA_ACCT_URL;
    fx_order(fx);
    assert_done(fx);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/new-acct"), 0);
    assert_false(fakeca_find(fx->ca, "POST", "/new-order", 0)->jwk);
}

static void
test_eab(void **state)
{
    fx_t          *fx = *state;
    unsigned char  key[32];
    char          *b64;
    size_t         i;

    for (i = 0; i < sizeof(key); i++) {
        key[i] = (unsigned char) (i * 7 + 1);
    }
    b64 = atls_b64url_encode(key, sizeof(key));
    fx->ca->eab_required = 1;
    fx->ca->eab_kid = "kid-1";
    fx->ca->eab_key = key;
    fx->ca->eab_key_len = sizeof(key);
    fx->p.eab_kid = "kid-1";
    fx->p.eab_hmac_b64url = b64;
    fx_order(fx);
    free(b64);
    assert_done(fx);
    assert_true(fx->ca->eab_verified);
}

static void
test_eab_wrong_key_detected(void **state)
{
    fx_t          *fx = *state;
    unsigned char  key[32] = { 1 }, other[32] = { 2 };
    char          *b64 = atls_b64url_encode(other, sizeof(other));

    fx->ca->eab_kid = "kid-1";
    fx->ca->eab_key = key;
    fx->ca->eab_key_len = sizeof(key);
    fx->p.eab_kid = "kid-1";
    fx->p.eab_hmac_b64url = b64;
    fx_order(fx);
    free(b64);
    assert_done(fx);
    /* the fake CA's check is real: a different key does not verify */
    assert_false(fx->ca->eab_verified);
}

static void
test_eab_required_missing(void **state)
{
    fx_t *fx = *state;

    fx->ca->eab_required = 1;
    fx_order(fx);
    assert_failed(fx, ATLS_ERR_PERMANENT,
                  "urn:ietf:params:acme:error:externalAccountRequired");
    assert_non_null(strstr(atls_acme_error(fx->e)->detail, "external account binding"));
    assert_int_equal(fakeca_count(fx->ca, "POST", "/new-acct"), 0);
}

static void
test_tos_not_agreed(void **state)
{
    fx_t *fx = *state;

    fx->ca->tos_url = "https://ca.test/terms.pdf";
    fx->p.agree_tos = 0;
    fx_order(fx);
    assert_failed(fx, ATLS_ERR_PERMANENT, "autotls:tos");
    assert_non_null(strstr(atls_acme_error(fx->e)->detail,
                           "the CA requires agreeing to its terms of service: "
                           "https://ca.test/terms.pdf"));
    assert_int_equal(fakeca_count(fx->ca, "POST", "/new-acct"), 0);
}

/* ---- profiles, ARI replaces ---------------------------------------------- */

static void
test_profile_advertised(void **state)
{
    fx_t *fx = *state;

    fx->ca->profiles_json = "{\"classic\":\"90 days\",\"shortlived\":\"6 days\"}";
    fx->p.profile = "shortlived";
    fx->p.profile_required = 1;
    fx_order(fx);
    assert_done(fx);
    assert_string_equal(json_string_value(json_object_get(fx->ca->order_payload, "profile")),
                        "shortlived");
}

static void
test_profile_not_advertised(void **state)
{
    fx_t *fx = *state;

    fx->ca->profiles_json = "{\"classic\":\"90 days\"}";
    fx->p.profile = "shortlived";
    fx_order(fx);
    assert_done(fx);
    assert_null(json_object_get(fx->ca->order_payload, "profile"));
}

static void
test_profile_required_missing(void **state)
{
    fx_t *fx = *state;

    fx->p.profile = "shortlived";
    fx->p.profile_required = 1;
    fx_order(fx);
    assert_failed(fx, ATLS_ERR_PERMANENT, "autotls:profile");
    assert_non_null(strstr(atls_acme_error(fx->e)->detail, "shortlived"));
    assert_int_equal(fakeca_count(fx->ca, "POST", "/new-order"), 0);
}

static void
test_replaces(void **state)
{
    fx_t *fx = *state;

    fx->p.replaces = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";
    fx->ca->renewal_info = 1;
    fx_order(fx);
    assert_done(fx);
    assert_string_equal(json_string_value(json_object_get(fx->ca->order_payload, "replaces")),
                        "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
}

static void
test_replaces_without_ari(void **state)
{
    fx_t *fx = *state;

    fx->p.replaces = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";
    fx_order(fx);
    assert_done(fx);
    assert_null(json_object_get(fx->ca->order_payload, "replaces"));
}

/* ---- polling ------------------------------------------------------------- */

static void
test_poll_retry_after(void **state)
{
    fx_t *fx = *state;

    fx->p.n_names = 1;
    fx->ca->authz_pending_polls = 2;
    fx->ca->authz_retry_after = "7";
    fx->ca->order_processing_polls = 1;
    fx->ca->order_retry_after = "3";
    fx_order(fx);
    assert_done(fx);
    /* authz pending twice (7 s each); finalize answered "processing" and the
     * first order poll too (3 s each) */
    assert_int_equal(fx->run.n_wait, 4);
    assert_int_equal(fx->run.wait_delta[0], 7);
    assert_int_equal(fx->run.wait_delta[1], 7);
    assert_int_equal(fx->run.wait_delta[2], 3);
    assert_int_equal(fx->run.wait_delta[3], 3);
    /* the CA's Retry-After wins over the sub-second schedule */
    assert_int_equal(fx->run.wait_ms[0], 7000);
    assert_int_equal(fx->run.wait_ms[3], 3000);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/authz/0"), 4);
}

static void
test_poll_default_backoff(void **state)
{
    fx_t  *fx = *state;
    size_t i;

    fx->p.n_names = 1;
    fx->ca->authz_pending_polls = 30;
    fx_order(fx);
    assert_done(fx);
    assert_int_equal(fx->run.n_wait, 30);
    assert_int_equal(fx->run.wait_delta[0], 1);
    for (i = 1; i < fx->run.n_wait; i++) {
        /* grows gently, never shrinks, capped at 10 s */
        assert_true(fx->run.wait_delta[i] >= fx->run.wait_delta[i - 1]);
        assert_true(fx->run.wait_delta[i] <= 10);
    }
    assert_int_equal(fx->run.wait_delta[29], 10);
    /* sub-second first polls: a CA that validates in milliseconds must not
     * cost a second per order */
    assert_int_equal(fx->run.wait_ms[0], 100);
    assert_int_equal(fx->run.wait_ms[1], 200);
    assert_int_equal(fx->run.wait_ms[2], 400);
    assert_int_equal(fx->run.wait_ms[3], 800);
    for (i = 4; i < fx->run.n_wait; i++) {
        assert_true(fx->run.wait_ms[i] >= fx->run.wait_ms[i - 1]);
        assert_true(fx->run.wait_ms[i] >= 1000 && fx->run.wait_ms[i] <= 10000);
        assert_int_equal(fx->run.wait_ms[i] % 1000, 0);
    }
    assert_int_equal(fx->run.wait_ms[29], 10000);
}

static void
test_poll_gives_up(void **state)
{
    fx_t *fx = *state;

    fx->p.n_names = 1;
    fx->ca->authz_pending_polls = 1000;
    fx_order(fx);
    assert_failed(fx, ATLS_ERR_RETRY_LATER, "autotls:timeout");
    assert_int_equal(fx->run.n_teardown, 1);
}

/* ---- alternate chains ---------------------------------------------------- */

static void
test_alternate_preferred(void **state)
{
    fx_t *fx = *state;
    char *want;

    fx->ca->n_alternates = 3;
    fx->p.preferred_chain = "autotls Alt Root 1";
    fx_order(fx);
    assert_done(fx);
    want = expected_chain(fx->ca, 1);
    assert_string_equal(atls_acme_result_chain_pem(fx->e), want);
    free(want);
    /* alternates are fetched one by one and the search stops at the match */
    assert_int_equal(fakeca_count(fx->ca, "POST", "/cert/1/alt/0"), 1);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/cert/1/alt/1"), 1);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/cert/1/alt/2"), 0);
    /* the default chain and both alternates, each with the Accept header */
    assert_int_equal(fx->ca->n_cert_accept, 3);
}

static void
test_alternate_none_matches(void **state)
{
    fx_t *fx = *state;
    char *want;

    fx->ca->n_alternates = 2;
    fx->p.preferred_chain = "Nobody's Root";
    fx_order(fx);
    assert_done(fx);
    want = expected_chain(fx->ca, -1);
    assert_string_equal(atls_acme_result_chain_pem(fx->e), want);
    free(want);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/cert/1/alt/"), 2);
}

static void
test_alternate_default_matches(void **state)
{
    fx_t *fx = *state;
    char *want;

    fx->ca->n_alternates = 2;
    fx->p.preferred_chain = TESTPKI_ROOT_CN;
    fx_order(fx);
    assert_done(fx);
    want = expected_chain(fx->ca, -1);
    assert_string_equal(atls_acme_result_chain_pem(fx->e), want);
    free(want);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/cert/1/alt/"), 0);
}

static void
test_alternate_broken_is_skipped(void **state)
{
    fx_t           *fx = *state;
    fakeca_fault_t  f = { "POST", "/cert/1/alt/0", 0, 1, 500, "serverInternal", "x", NULL };
    char           *want;

    fx->ca->faults[0] = f;
    fx->ca->n_alternates = 2;
    fx->p.preferred_chain = "autotls Alt Root 1";
    fx_order(fx);
    assert_done(fx);
    want = expected_chain(fx->ca, 1);
    assert_string_equal(atls_acme_result_chain_pem(fx->e), want);
    free(want);
}

/* ---- revocation and ARI -------------------------------------------------- */

static void
test_revoke(void **state)
{
    fx_t            *fx = *state;
    testpki_chain_t  c;
    const char      *names[] = { "example.com" };
    atls_error_t     err;
    unsigned char   *der = NULL, *got;
    size_t           got_len;
    int              len;
    const char      *cert64;

    assert_int_equal(testpki_chain_make(&c, names, 1, ATLS_KEY_EC256), 0);
    fx->e = atls_acme_revoke_new(FAKECA_BASE "/dir", fx->acct, FAKECA_ACCT_URL, c.leaf,
                                 ATLS_REVOKE_KEY_COMPROMISE, &err);
    assert_non_null(fx->e);
    fakeca_run(fx->ca, fx->e, &fx->run);
    assert_done(fx);
    assert_non_null(fx->ca->revoke_payload);
    assert_int_equal(json_integer_value(json_object_get(fx->ca->revoke_payload, "reason")), 1);
    cert64 = json_string_value(json_object_get(fx->ca->revoke_payload, "certificate"));
    assert_non_null(cert64);
    got = atls_b64url_decode(cert64, strlen(cert64), &got_len);
    len = i2d_X509(c.leaf, &der);
    assert_int_equal(got_len, (size_t) len);
    assert_memory_equal(got, der, got_len);
    assert_false(fakeca_find(fx->ca, "POST", "/revoke", 0)->jwk);
    free(got);
    OPENSSL_free(der);
    testpki_chain_free(&c);
}

static void
test_revoke_already_revoked(void **state)
{
    fx_t            *fx = *state;
    testpki_chain_t  c;
    const char      *names[] = { "example.com" };
    atls_error_t     err;
    fakeca_fault_t   f = { "POST", "/revoke", 0, 1, 400, "alreadyRevoked", "gone", NULL };

    assert_int_equal(testpki_chain_make(&c, names, 1, ATLS_KEY_EC256), 0);
    fx->ca->faults[0] = f;
    fx->e = atls_acme_revoke_new(FAKECA_BASE "/dir", fx->acct, FAKECA_ACCT_URL, c.leaf,
                                 ATLS_REVOKE_SUPERSEDED, &err);
    assert_non_null(fx->e);
    fakeca_run(fx->ca, fx->e, &fx->run);
    assert_failed(fx, ATLS_ERR_PERMANENT, "urn:ietf:params:acme:error:alreadyRevoked");
    testpki_chain_free(&c);
}

/* A leaf with the RFC 9773 §4.1 example's AKI and serial. */
static X509 *
ari_leaf(fx_t *fx)
{
    static const unsigned char keyid[] = {
        0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
        0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4
    };
    const char          *names[] = { "example.com" };
    X509                *x, *y;
    AUTHORITY_KEYID     *akid = AUTHORITY_KEYID_new();
    unsigned char       *der = NULL;
    const unsigned char *p;
    int                  len;

    x = testpki_cert(fx->certkey, NULL, names, 1, fx->ca->inter, fx->ca->inter_key, 0,
                     -3600, 86400);
    assert_non_null(x);
    assert_int_equal(ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), 0x87654321), 1);
    akid->keyid = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(akid->keyid, keyid, sizeof(keyid));
    assert_int_equal(X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0,
                                       X509V3_ADD_DEFAULT), 1);
    AUTHORITY_KEYID_free(akid);
    assert_true(X509_sign(x, fx->ca->inter_key, EVP_sha256()) > 0);
    len = i2d_X509(x, &der);
    p = der;
    y = d2i_X509(NULL, &p, len);
    OPENSSL_free(der);
    X509_free(x);
    return y;
}

static void
test_ari_window(void **state)
{
    fx_t         *fx = *state;
    X509         *leaf = ari_leaf(fx);
    atls_error_t  err;
    time_t        start = 0, end = 0;

    fx->ca->renewal_info = 1;
    fx->ca->ari_body = "{\"suggestedWindow\":{\"start\":\"2025-01-02T04:00:00Z\","
                       "\"end\":\"2025-01-03T04:00:00Z\"}}";
    fx->e = atls_acme_ari_new(FAKECA_BASE "/dir", leaf, &err);
    assert_non_null(fx->e);
    fakeca_run(fx->ca, fx->e, &fx->run);
    assert_done(fx);
    assert_string_equal(fx->ca->ari_path, "/ari/aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    assert_int_equal(atls_acme_result_ari(fx->e, &start, &end), 0);
    assert_int_equal(start, 1735790400);
    assert_int_equal(end, 1735876800);
    /* fakeca's default Retry-After: 21600 s from the simulated clock */
    assert_int_equal(atls_acme_result_ari_retry_after(fx->e), fx->run.now + 21600);
    assert_string_equal(atls_acme_result_ari_cert_id(fx->e),
                        "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    /* ARI is unauthenticated: no nonce, no POST */
    assert_int_equal(fakeca_count(fx->ca, "HEAD", "/nonce"), 0);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/"), 0);
    X509_free(leaf);
}

static void
test_ari_unsupported(void **state)
{
    fx_t         *fx = *state;
    X509         *leaf = ari_leaf(fx);
    atls_error_t  err;
    time_t        start, end;

    fx->e = atls_acme_ari_new(FAKECA_BASE "/dir", leaf, &err);
    assert_non_null(fx->e);
    fakeca_run(fx->ca, fx->e, &fx->run);
    assert_done(fx);
    assert_int_equal(atls_acme_result_ari(fx->e, &start, &end), -1);
    assert_int_equal(atls_acme_result_ari_retry_after(fx->e), 0);
    assert_int_equal(fx->ca->n_log, 1);
    X509_free(leaf);
}

static void
test_ari_malformed(void **state)
{
    fx_t         *fx = *state;
    X509         *leaf = ari_leaf(fx);
    atls_error_t  err;

    fx->ca->renewal_info = 1;
    fx->ca->ari_body = "{\"suggestedWindow\":{}}";
    fx->e = atls_acme_ari_new(FAKECA_BASE "/dir", leaf, &err);
    fakeca_run(fx->ca, fx->e, &fx->run);
    assert_failed(fx, ATLS_ERR_RETRY_LATER, "autotls:protocol");
    X509_free(leaf);
}

/* ---- engine contract ----------------------------------------------------- */

static void
test_missing_challenge_result(void **state)
{
    fx_t          *fx = *state;
    atls_error_t   err;
    atls_action_t  act;
    atls_http_response_t resp;
    int            have = 0, i;

    fx->e = atls_acme_order_new(&fx->p, &err);
    for (i = 0; i < 100; i++) {
        atls_acme_step(fx->e, have ? &resp : NULL, NOW, &act);
        if (have) {
            fakeca_response_clear(&resp);
            have = 0;
        }
        if (act.kind == ATLS_ACT_SEND) {
            fakeca_handle(fx->ca, act.request, &resp);
            have = 1;
        } else if (act.kind != ATLS_ACT_SETUP && act.kind != ATLS_ACT_TEARDOWN) {
            break;
        }
        /* SETUP without atls_acme_challenge_result: a host bug */
    }
    assert_int_equal(act.kind, ATLS_ACT_FAILED);
    assert_string_equal(atls_acme_error(fx->e)->type, "autotls:internal");
}

static void
test_bad_params(void **state)
{
    fx_t         *fx = *state;
    atls_error_t  err;

    fx->p.eab_kid = "kid";
    assert_null(atls_acme_order_new(&fx->p, &err));
    assert_int_equal(err.cls, ATLS_ERR_PERMANENT);
    fx->p.eab_kid = NULL;
    fx->p.n_names = 0;
    assert_null(atls_acme_order_new(&fx->p, &err));
    assert_null(atls_acme_revoke_new(FAKECA_BASE "/dir", fx->acct, NULL, NULL, 0, &err));
}

static void
test_names(void **state)
{
    atls_challenge_type_t t;
    int                   r;

    (void) state;
    assert_string_equal(atls_challenge_type_name(ATLS_CHAL_DNS01), "dns-01");
    assert_int_equal(atls_challenge_type_parse("tls-alpn-01", &t), 0);
    assert_int_equal(t, ATLS_CHAL_TLSALPN01);
    assert_int_equal(atls_challenge_type_parse("http-02", &t), -1);
    assert_int_equal(atls_revoke_reason_parse("keyCompromise", &r), 0);
    assert_int_equal(r, 1);
    assert_int_equal(atls_revoke_reason_parse("4", &r), 0);
    assert_int_equal(r, 4);
    assert_int_equal(atls_revoke_reason_parse("cACompromise", &r), -1);
    assert_int_equal(atls_revoke_reason_parse("2", &r), -1);
    assert_int_equal(atls_revoke_reason_parse("4x", &r), -1);
}

/* ---- an untrusted CA (issue 7) ------------------------------------------ */

/* A fresh CA and engine for one faulty run, so a test can try many faults. */
static atls_action_kind_t
fx_order_on(fx_t *fx, fakeca_t **ca_out, void (*spoil)(fakeca_t *, const void *),
            const void *arg)
{
    atls_error_t err;

    atls_acme_free(fx->e);
    fakeca_run_clear(&fx->run);
    memset(&fx->run, 0, sizeof(fx->run));
    fx->run.now = NOW;
    fakeca_free(fx->ca);
    fx->ca = fakeca_new(fx->acct);
    assert_non_null(fx->ca);
    spoil(fx->ca, arg);
    fx->e = atls_acme_order_new(&fx->p, &err);
    assert_non_null(fx->e);
    *ca_out = fx->ca;
    return fakeca_run(fx->ca, fx->e, &fx->run);
}

static void
spoil_authz_ident(fakeca_t *ca, const void *arg)
{
    ca->authz_ident = arg;
}

/* Nothing of a foreign authorization is published, hooked or answered. */
static void
assert_refused_before_publishing(fx_t *fx, const char *type)
{
    assert_failed(fx, ATLS_ERR_PERMANENT, type);
    assert_int_equal(fx->run.n_setup, 0);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/chal/"), 0);
    assert_int_equal(fakeca_count(fx->ca, "POST", "/finalize"), 0);
    assert_null(atls_acme_result_chain_pem(fx->e));
}

static void
test_authz_foreign_identifier(void **state)
{
    static const atls_challenge_type_t types[] = {
        ATLS_CHAL_HTTP01, ATLS_CHAL_TLSALPN01, ATLS_CHAL_DNS01
    };
    static const char *const bad[] = {
        "evil.example.net",         /* a name nobody ordered */
        "example.com.evil.net",
        "exa\nmple.com",            /* not a hostname at all */
        "*.example.com",            /* RFC 8555 §7.1.4: the base name, not "*." */
        "127.0.0.1",                /* an address dressed as a dns identifier */
        "../../etc/passwd",
    };
    fx_t      *fx = *state;
    fakeca_t  *ca;
    size_t     t, b;

    for (t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        for (b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
            fx->p.challenge = types[t];
            fx_order_on(fx, &ca, spoil_authz_ident, bad[b]);
            assert_refused_before_publishing(fx, "autotls:ca-identifier");
            assert_non_null(strstr(atls_acme_error(fx->e)->detail, "was not ordered"));
            /* the CA's text is escaped in the error (and so in logs) */
            assert_null(strchr(atls_acme_error(fx->e)->detail, '\n'));
        }
    }
}

static void
test_authz_ip_for_dns_name(void **state)
{
    fx_t     *fx = *state;
    fakeca_t *ca;

    /* an address we ordered, but the authorization claims a different one */
    fx->names[0] = "192.0.2.1";
    fx->p.n_names = 1;
    fx_order_on(fx, &ca, spoil_authz_ident, "192.0.2.2");
    assert_refused_before_publishing(fx, "autotls:ca-identifier");
}

static void
spoil_wildcard_flag(fakeca_t *ca, const void *arg)
{
    (void) arg;
    ca->authz_wildcard_flip = 1;
}

/* RFC 8555 §7.1.4: "wildcard": true on the base name stands for "*.base";
 * either the other way round is a name we did not order. */
static void
test_authz_wildcard_flag_mismatch(void **state)
{
    fx_t     *fx = *state;
    fakeca_t *ca;

    fx->p.challenge = ATLS_CHAL_DNS01;
    fx->p.n_names = 1;
    fx->names[0] = "*.example.com";     /* the CA drops the flag: "example.com" */
    fx_order_on(fx, &ca, spoil_wildcard_flag, NULL);
    assert_refused_before_publishing(fx, "autotls:ca-identifier");
    fx->names[0] = "example.com";       /* the CA adds it: "*.example.com" */
    fx_order_on(fx, &ca, spoil_wildcard_flag, NULL);
    assert_refused_before_publishing(fx, "autotls:ca-identifier");
    assert_non_null(strstr(atls_acme_error(fx->e)->detail, "(wildcard)"));
}

static void
spoil_order_ident(fakeca_t *ca, const void *arg)
{
    ca->order_ident = arg;
}

static void
test_order_foreign_identifier(void **state)
{
    fx_t     *fx = *state;
    fakeca_t *ca;

    fx_order_on(fx, &ca, spoil_order_ident, "evil.example.net");
    assert_refused_before_publishing(fx, "autotls:ca-identifier");
    assert_int_equal(fakeca_count(ca, "POST", "/authz/"), 0);
    assert_non_null(strstr(atls_acme_error(fx->e)->detail, "evil.example.net"));
}

static void
spoil_cert(fakeca_t *ca, const void *arg)
{
    ca->cert_fault = *(const int *) arg;
}

static void
assert_cert_refused(fx_t *fx, int fault, atls_err_class_t cls, const char *why)
{
    fakeca_t *ca;

    fx_order_on(fx, &ca, spoil_cert, &fault);
    assert_failed(fx, cls, "autotls:ca-certificate");
    assert_non_null(strstr(atls_acme_error(fx->e)->detail, why));
    /* the chain went nowhere: no host can store or serve it */
    assert_null(atls_acme_result_chain_pem(fx->e));
    assert_int_equal(fakeca_count(ca, "POST", "/cert/1"), 1);
}

static void
test_cert_wrong_names(void **state)
{
    fx_t *fx = *state;

    assert_cert_refused(fx, FAKECA_CERT_EXTRA_NAME, ATLS_ERR_PERMANENT,
                        "also names evil.example.net");
    assert_cert_refused(fx, FAKECA_CERT_MISSING_NAME, ATLS_ERR_PERMANENT,
                        "does not cover");
}

static void
test_cert_expired(void **state)
{
    fx_t *fx = *state;

    assert_cert_refused(fx, FAKECA_CERT_EXPIRED, ATLS_ERR_RETRY_LATER, "expired");
    assert_cert_refused(fx, FAKECA_CERT_NOT_YET_VALID, ATLS_ERR_RETRY_LATER,
                        "not valid yet");
}

static void
test_cert_foreign_key(void **state)
{
    fx_t *fx = *state;

    assert_cert_refused(fx, FAKECA_CERT_FOREIGN_KEY, ATLS_ERR_PERMANENT,
                        "private key does not match");
}

static void
test_cert_broken_chain(void **state)
{
    fx_t *fx = *state;

    assert_cert_refused(fx, FAKECA_CERT_BROKEN_CHAIN, ATLS_ERR_RETRY_LATER,
                        "does not verify");
}

typedef struct {
    const char *field;
    const char *value;
} url_spoil_t;

static void
spoil_url(fakeca_t *ca, const void *arg)
{
    const url_spoil_t *u = arg;

    ca->url_field = u->field;
    ca->url_value = u->value;
}

/* Each URL field the CA hands back, made http, cross-host and cross-port. */
static void
test_ca_urls_foreign(void **state)
{
    static const char *const fields[] = {
        "newNonce", "newAccount", "newOrder", "account", "order", "authorization",
        "challenge", "finalize", "certificate",
    };
    static const char *const bad[] = {
        "http://ca.test/x", "https://evil.test/x", "https://ca.test:8443/x",
        "https://ca.test@evil.test/x", "https://ca.test.evil.test/x", "ca.test/x",
    };
    fx_t        *fx = *state;
    fakeca_t    *ca;
    url_spoil_t  u;
    size_t       f, b;
    const char  *detail;

    for (f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
        for (b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
            u.field = fields[f];
            u.value = bad[b];
            fx_order_on(fx, &ca, spoil_url, &u);
            assert_failed(fx, ATLS_ERR_PERMANENT, "autotls:ca-url");
            detail = atls_acme_error(fx->e)->detail;
            if (strstr(detail, fields[f]) == NULL || strstr(detail, bad[b]) == NULL) {
                fail_msg("%s=%s: detail \"%s\" names neither", fields[f], bad[b], detail);
            }
            /* the foreign URL was never contacted */
            assert_int_equal(fakeca_count(ca, "POST", bad[b]), 0);
            assert_int_equal(fakeca_count(ca, "HEAD", bad[b]), 0);
            assert_null(atls_acme_result_chain_pem(fx->e));
        }
    }
}

static void
test_ca_url_same_origin_spelled_differently(void **state)
{
    fx_t        *fx = *state;
    fakeca_t    *ca;
    url_spoil_t  u = { "finalize", "https://CA.test:443/finalize/1" };

    /* same scheme, host and (default) port: allowed, and the flow completes
     * once the fake CA sees its own path (it only strips FAKECA_BASE) */
    fx_order_on(fx, &ca, spoil_url, &u);
    assert_string_not_equal(atls_acme_error(fx->e)->type, "autotls:ca-url");
}

static void
test_ca_url_foreign_allowed_for_tests(void **state)
{
    fx_t        *fx = *state;
    atls_error_t err;

    fakeca_free(fx->ca);
    fx->ca = fakeca_new(fx->acct);
    fx->ca->url_field = "newNonce";
    fx->ca->url_value = "http://evil.test/nonce";
    fx->e = atls_acme_order_new(&fx->p, &err);
    atls_acme_allow_foreign_urls(fx->e, 1);
    fakeca_run(fx->ca, fx->e, &fx->run);
    /* allowed: the engine went there (and the fake CA does not answer it) */
    assert_int_equal(fakeca_count(fx->ca, "HEAD", "http://evil.test/nonce"), 1);
    assert_string_not_equal(atls_acme_error(fx->e)->type, "autotls:ca-url");
}

static void
test_alternate_foreign_skipped(void **state)
{
    fx_t *fx = *state;
    char  cn[64];

    snprintf(cn, sizeof(cn), FAKECA_ALT_ROOT_CN, 0);
    fx->p.preferred_chain = cn;
    fx->ca->n_alternates = 1;
    fx->ca->url_field = "alternate";
    fx->ca->url_value = "https://evil.test/cert/1/alt/0";
    fx_order(fx);
    /* the issued certificate is kept on the default chain; the foreign
     * alternate is never fetched */
    assert_done(fx);
    assert_non_null(atls_acme_result_chain_pem(fx->e));
    assert_int_equal(fakeca_count(fx->ca, "POST", "https://evil.test"), 0);
}

static void
test_revoke_url_foreign(void **state)
{
    fx_t            *fx = *state;
    testpki_chain_t  c;
    const char      *names[] = { "example.com" };
    atls_error_t     err;

    assert_int_equal(testpki_chain_make(&c, names, 1, ATLS_KEY_EC256), 0);
    fx->ca->url_field = "revokeCert";
    fx->ca->url_value = "https://evil.test/revoke";
    fx->e = atls_acme_revoke_new(FAKECA_BASE "/dir", fx->acct, FAKECA_ACCT_URL, c.leaf,
                                 ATLS_REVOKE_KEY_COMPROMISE, &err);
    assert_non_null(fx->e);
    fakeca_run(fx->ca, fx->e, &fx->run);
    assert_failed(fx, ATLS_ERR_PERMANENT, "autotls:ca-url");
    assert_non_null(strstr(atls_acme_error(fx->e)->detail, "revokeCert"));
    assert_int_equal(fakeca_count(fx->ca, "POST", "https://evil.test"), 0);
    testpki_chain_free(&c);
}

static void
test_ari_url_foreign(void **state)
{
    fx_t         *fx = *state;
    X509         *leaf = ari_leaf(fx);
    atls_error_t  err;

    fx->ca->renewal_info = 1;
    fx->ca->ari_body = "{}";
    fx->ca->url_field = "renewalInfo";
    fx->ca->url_value = "https://evil.test/ari";
    fx->e = atls_acme_ari_new(FAKECA_BASE "/dir", leaf, &err);
    assert_non_null(fx->e);
    fakeca_run(fx->ca, fx->e, &fx->run);
    assert_failed(fx, ATLS_ERR_PERMANENT, "autotls:ca-url");
    assert_non_null(strstr(atls_acme_error(fx->e)->detail, "renewalInfo"));
    assert_int_equal(fakeca_count(fx->ca, "GET", "https://evil.test"), 0);
    X509_free(leaf);
}

static void
test_directory_http_refused(void **state)
{
    fx_t *fx = *state;

    fx->p.directory_url = "http://ca.test/dir";
    fx_order(fx);
    assert_failed(fx, ATLS_ERR_PERMANENT, "autotls:ca-url");
    assert_int_equal(fx->ca->n_log, 0);
}

static void
test_retry_after_one_year_clamped(void **state)
{
    fx_t               *fx = *state;
    fakeca_fault_t      f = { "POST", "/new-order", 0, 1, 429, "rateLimited",
                              "come back next year", "31536000" };
    const atls_error_t *err;
    time_t              next;

    fx->ca->faults[0] = f;
    fx_order(fx);
    err = atls_acme_error(fx->e);
    assert_true(err->retry_after > NOW + 300 * 86400);
    /* the scheduler honours it only up to its cap of a day */
    next = atls_schedule_backoff(1, NOW, err->retry_after, 0);
    assert_true(next <= NOW + 86400);
    /* and never past half the time the current certificate has left */
    assert_int_equal(atls_schedule_before_expiry(next, NOW, NOW + 6 * 3600),
                     NOW + 3 * 3600);
}

static void
test_poll_retry_after_one_year_clamped(void **state)
{
    fx_t *fx = *state;

    fx->ca->authz_pending_polls = 1;
    fx->ca->authz_retry_after = "31536000";
    fx_order(fx);
    assert_done(fx);
    assert_true(fx->run.n_wait >= 1);
    assert_true(fx->run.wait_delta[0] <= 3600);
}

static void
test_problem_detail_escaped(void **state)
{
    fx_t               *fx = *state;
    fakeca_fault_t      f = { "POST", "/new-order", 0, 1, 400, "rejectedIdentifier",
                              "no\nautotls: error: forged line \x1b[31mred\x1b[0m \xc3\xa9",
                              NULL };
    const atls_error_t *err;
    const char         *p;

    fx->ca->faults[0] = f;
    fx_order(fx);
    err = atls_acme_error(fx->e);
    for (p = err->detail; *p != '\0'; p++) {
        assert_true(*p >= 0x20 && *p < 0x7f);
    }
    assert_non_null(strstr(err->detail, "no\\x0aautotls: error: forged line \\x1b[31mred"));
    assert_non_null(strstr(err->detail, "\\xc3\\xa9"));
}

#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_http01_two_names),
        T(test_tls_alpn01),
        T(test_dns01_wildcard),
        T(test_ip_identifier),
        T(test_valid_authz_skipped),
        T(test_all_authz_valid),
        T(test_bad_nonce_once),
        T(test_download_bad_nonce_keeps_accept),
        T(test_csr_with_cn),
        T(test_csr_must_staple),
        T(test_csr_no_must_staple),
        T(test_bad_nonce_forever),
        T(test_rate_limited),
        T(test_server_error_on_finalize),
        T(test_transport_error),
        T(test_invalid_challenge),
        T(test_setup_failure),
        T(test_challenge_type_not_offered),
        T(test_bad_token),
        T(test_account_exists),
        T(test_account_known_key_missing),
        T(test_account_url_known),
        T(test_eab),
        T(test_eab_wrong_key_detected),
        T(test_eab_required_missing),
        T(test_tos_not_agreed),
        T(test_profile_advertised),
        T(test_profile_not_advertised),
        T(test_profile_required_missing),
        T(test_replaces),
        T(test_replaces_without_ari),
        T(test_poll_retry_after),
        T(test_poll_default_backoff),
        T(test_poll_gives_up),
        T(test_alternate_preferred),
        T(test_alternate_none_matches),
        T(test_alternate_default_matches),
        T(test_alternate_broken_is_skipped),
        T(test_revoke),
        T(test_revoke_already_revoked),
        T(test_ari_window),
        T(test_ari_unsupported),
        T(test_ari_malformed),
        T(test_missing_challenge_result),
        T(test_bad_params),
        cmocka_unit_test(test_names),
        T(test_authz_foreign_identifier),
        T(test_authz_ip_for_dns_name),
        T(test_authz_wildcard_flag_mismatch),
        T(test_order_foreign_identifier),
        T(test_cert_wrong_names),
        T(test_cert_expired),
        T(test_cert_foreign_key),
        T(test_cert_broken_chain),
        T(test_ca_urls_foreign),
        T(test_ca_url_same_origin_spelled_differently),
        T(test_ca_url_foreign_allowed_for_tests),
        T(test_alternate_foreign_skipped),
        T(test_revoke_url_foreign),
        T(test_ari_url_foreign),
        T(test_directory_http_refused),
        T(test_retry_after_one_year_clamped),
        T(test_poll_retry_after_one_year_clamped),
        T(test_problem_detail_escaped),
};

    atls_log_set(NULL, NULL, ATLS_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
