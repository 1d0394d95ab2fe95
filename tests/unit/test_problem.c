/* ACME problem documents -> retry classes, details with subproblems. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "atls_problem.h"

#define NOW 1700000000

static void
test_classify_table(void **state)
{
    static const char *const permanent[] = {
        "accountDoesNotExist", "alreadyRevoked", "badCSR", "badPublicKey",
        "badRevocationReason", "badSignatureAlgorithm", "caa", "compound",
        "connection", "dns", "externalAccountRequired", "incorrectResponse",
        "invalidContact", "malformed", "orderNotReady", "rejectedIdentifier", "tls",
        "unauthorized", "unsupportedContact", "unsupportedIdentifier",
        "userActionRequired",
    };
    char   urn[128];
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(permanent) / sizeof(permanent[0]); i++) {
        snprintf(urn, sizeof(urn), "urn:ietf:params:acme:error:%s", permanent[i]);
        /* the table wins over the status, even a 5xx one */
        assert_int_equal(atls_problem_classify(urn, 503), ATLS_ERR_PERMANENT);
        assert_int_equal(atls_problem_classify(permanent[i], 400), ATLS_ERR_PERMANENT);
    }
    assert_int_equal(atls_problem_classify("urn:ietf:params:acme:error:badNonce", 400),
                     ATLS_ERR_RETRY_NOW);
    assert_int_equal(atls_problem_classify("badNonce", 400), ATLS_ERR_RETRY_NOW);
    assert_int_equal(atls_problem_classify("urn:ietf:params:acme:error:rateLimited", 429),
                     ATLS_ERR_RETRY_LATER);
    assert_int_equal(atls_problem_classify("urn:ietf:params:acme:error:serverInternal", 500),
                     ATLS_ERR_RETRY_LATER);
    /* rateLimited stays "later" even with an odd status */
    assert_int_equal(atls_problem_classify("urn:ietf:params:acme:error:rateLimited", 403),
                     ATLS_ERR_RETRY_LATER);
}

static void
test_classify_unknown(void **state)
{
    (void) state;
    assert_int_equal(atls_problem_classify("urn:ietf:params:acme:error:brandNew", 503),
                     ATLS_ERR_RETRY_LATER);
    assert_int_equal(atls_problem_classify("urn:ietf:params:acme:error:brandNew", 400),
                     ATLS_ERR_PERMANENT);
    assert_int_equal(atls_problem_classify(NULL, 429), ATLS_ERR_RETRY_LATER);
    assert_int_equal(atls_problem_classify(NULL, 500), ATLS_ERR_RETRY_LATER);
    assert_int_equal(atls_problem_classify(NULL, 404), ATLS_ERR_PERMANENT);
    assert_int_equal(atls_problem_classify("about:blank", 403), ATLS_ERR_PERMANENT);
    /* a prefix of a known name is not that name */
    assert_int_equal(atls_problem_classify("urn:ietf:params:acme:error:badNonc", 400),
                     ATLS_ERR_PERMANENT);
}

static void
resp_init(atls_http_response_t *r, long status, const char *body, const char *ra)
{
    memset(r, 0, sizeof(*r));
    r->status = status;
    r->body = (char *) body;
    r->body_len = body ? strlen(body) : 0;
    r->retry_after = (char *) ra;
}

static void
test_response_rate_limited(void **state)
{
    atls_http_response_t r;
    atls_error_t         err;

    (void) state;
    resp_init(&r, 429, "{\"type\":\"urn:ietf:params:acme:error:rateLimited\","
                       "\"detail\":\"too many new orders recently\",\"status\":429}", "120");
    atls_problem_from_response(&r, NOW, &err);
    assert_int_equal(err.cls, ATLS_ERR_RETRY_LATER);
    assert_string_equal(err.type, "urn:ietf:params:acme:error:rateLimited");
    assert_string_equal(err.detail, "too many new orders recently");
    assert_int_equal(err.http_status, 429);
    assert_int_equal(err.retry_after, NOW + 120);
}

static void
test_subproblems(void **state)
{
    atls_http_response_t r;
    atls_error_t         err;

    (void) state;
    resp_init(&r, 403,
              "{\"type\":\"urn:ietf:params:acme:error:compound\","
              "\"detail\":\"Some identifiers were rejected\","
              "\"subproblems\":["
              "{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\","
              "\"detail\":\"This CA will not issue for this name\","
              "\"identifier\":{\"type\":\"dns\",\"value\":\"bad.example\"}},"
              "{\"type\":\"urn:ietf:params:acme:error:dns\",\"detail\":\"NXDOMAIN\","
              "\"identifier\":{\"type\":\"dns\",\"value\":\"www.example.com\"}},"
              "42]}", NULL);
    atls_problem_from_response(&r, NOW, &err);
    assert_int_equal(err.cls, ATLS_ERR_PERMANENT);
    assert_string_equal(err.type, "urn:ietf:params:acme:error:compound");
    assert_string_equal(err.detail,
                        "Some identifiers were rejected"
                        "; bad.example: rejectedIdentifier: This CA will not issue for this name"
                        "; www.example.com: dns: NXDOMAIN");
    assert_int_equal(err.retry_after, 0);
}

static void
test_detail_truncated(void **state)
{
    char                 body[4096], big[1500];
    atls_http_response_t r;
    atls_error_t         err;
    size_t               n;

    (void) state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(body, sizeof(body), "{\"type\":\"urn:ietf:params:acme:error:malformed\","
             "\"detail\":\"head\",\"subproblems\":[{\"type\":\"dns\",\"detail\":\"%s\","
             "\"identifier\":{\"value\":\"a.example\"}}]}", big);
    resp_init(&r, 400, body, NULL);
    atls_problem_from_response(&r, NOW, &err);
    n = strlen(err.detail);
    assert_int_equal(n, sizeof(err.detail) - 1);
    assert_memory_equal(err.detail, "head; a.example: dns: xxx", 25);
    assert_string_equal(err.detail + n - 3, "...");
}

static void
test_garbage_body(void **state)
{
    atls_http_response_t r;
    atls_error_t         err;

    (void) state;
    resp_init(&r, 502, "<html><body>Bad\x01 Gateway</body></html>", NULL);
    atls_problem_from_response(&r, NOW, &err);
    assert_int_equal(err.cls, ATLS_ERR_RETRY_LATER);
    assert_string_equal(err.type, "autotls:http");
    assert_non_null(strstr(err.detail, "502"));
    assert_non_null(strstr(err.detail, "Bad  Gateway"));
    assert_int_equal(err.http_status, 502);

    resp_init(&r, 400, "[1,2,3]", NULL);
    atls_problem_from_response(&r, NOW, &err);
    assert_int_equal(err.cls, ATLS_ERR_PERMANENT);
    assert_string_equal(err.type, "autotls:http");

    resp_init(&r, 404, NULL, NULL);
    atls_problem_from_response(&r, NOW, &err);
    assert_int_equal(err.cls, ATLS_ERR_PERMANENT);
    assert_non_null(strstr(err.detail, "404"));

    /* JSON without a type: classified by status */
    resp_init(&r, 503, "{\"detail\":\"maintenance\"}", "Mon, 21 Oct 2024 07:28:00 GMT");
    atls_problem_from_response(&r, NOW, &err);
    assert_int_equal(err.cls, ATLS_ERR_RETRY_LATER);
    assert_string_equal(err.detail, "maintenance");
    assert_int_equal(err.retry_after, 1729495680);

    /* a non-string type is ignored, not trusted */
    resp_init(&r, 400, "{\"type\":7,\"detail\":{\"x\":1}}", NULL);
    atls_problem_from_response(&r, NOW, &err);
    assert_string_equal(err.type, "autotls:http");
    assert_int_equal(err.cls, ATLS_ERR_PERMANENT);
}

static void
test_transport(void **state)
{
    atls_http_response_t r;
    atls_error_t         err;

    (void) state;
    resp_init(&r, 0, NULL, NULL);
    r.transport_error = 1;
    snprintf(r.error, sizeof(r.error), "Could not resolve host: ca.test");
    atls_problem_from_response(&r, NOW, &err);
    assert_int_equal(err.cls, ATLS_ERR_RETRY_LATER);
    assert_string_equal(err.type, "autotls:transport");
    assert_string_equal(err.detail, "Could not resolve host: ca.test");
}

static void
test_from_json_embedded(void **state)
{
    const char  *j = "{\"type\":\"urn:ietf:params:acme:error:incorrectResponse\","
                     "\"detail\":\"key authorization mismatch\",\"status\":403}";
    atls_error_t err;

    (void) state;
    atls_problem_from_json(j, strlen(j), 0, &err);
    assert_int_equal(err.cls, ATLS_ERR_PERMANENT);
    assert_string_equal(err.type, "urn:ietf:params:acme:error:incorrectResponse");
    assert_string_equal(err.detail, "key authorization mismatch");
    assert_int_equal(err.http_status, 403);

    j = "{\"type\":\"urn:example:new\",\"status\":500}";
    atls_problem_from_json(j, strlen(j), 0, &err);
    assert_int_equal(err.cls, ATLS_ERR_RETRY_LATER);

    atls_problem_from_json("{\"type\"", 7, 0, &err);
    assert_string_equal(err.type, "autotls:http");
    assert_int_equal(err.cls, ATLS_ERR_PERMANENT);
}

/* Only what the operator must fix backs off for hours. */
static void
test_backoff_class(void **state)
{
    static const struct { atls_err_class_t cls; const char *type; atls_err_class_t want; }
    cases[] = {
        { ATLS_ERR_PERMANENT, "urn:ietf:params:acme:error:rejectedIdentifier",
          ATLS_ERR_PERMANENT },
        { ATLS_ERR_PERMANENT, "urn:ietf:params:acme:error:unauthorized", ATLS_ERR_PERMANENT },
        { ATLS_ERR_PERMANENT, "urn:ietf:params:acme:error:caa", ATLS_ERR_PERMANENT },
        { ATLS_ERR_PERMANENT, "urn:ietf:params:acme:error:badCSR", ATLS_ERR_PERMANENT },
        { ATLS_ERR_PERMANENT, "autotls:ca-certificate", ATLS_ERR_PERMANENT },
        { ATLS_ERR_PERMANENT, "urn:ietf:params:acme:error:connection", ATLS_ERR_RETRY_LATER },
        { ATLS_ERR_PERMANENT, "urn:ietf:params:acme:error:dns", ATLS_ERR_RETRY_LATER },
        { ATLS_ERR_PERMANENT, "incorrectResponse", ATLS_ERR_RETRY_LATER },
        { ATLS_ERR_PERMANENT, "urn:ietf:params:acme:error:tls", ATLS_ERR_RETRY_LATER },
        { ATLS_ERR_RETRY_LATER, "urn:ietf:params:acme:error:rateLimited",
          ATLS_ERR_RETRY_LATER },
        { ATLS_ERR_RETRY_NOW, "urn:ietf:params:acme:error:badNonce", ATLS_ERR_RETRY_LATER },
        { ATLS_ERR_NONE, "", ATLS_ERR_RETRY_LATER },
    };
    atls_error_t e;
    size_t       i;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        atls_error_set(&e, cases[i].cls, cases[i].type, "x");
        if (atls_problem_backoff_class(&e) != cases[i].want) {
            fail_msg("%s: backoff class %d", cases[i].type, (int) atls_problem_backoff_class(&e));
        }
    }
    assert_int_equal(atls_problem_backoff_class(NULL), ATLS_ERR_RETRY_LATER);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_table),
        cmocka_unit_test(test_classify_unknown),
        cmocka_unit_test(test_response_rate_limited),
        cmocka_unit_test(test_subproblems),
        cmocka_unit_test(test_detail_truncated),
        cmocka_unit_test(test_garbage_body),
        cmocka_unit_test(test_transport),
        cmocka_unit_test(test_from_json_embedded),
        cmocka_unit_test(test_backoff_class),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
