/*
 * ACME problem documents (RFC 7807, RFC 8555 §6.7) -> retry classes.
 *
 * The class decides what the caller does next: resend at once (badNonce),
 * come back later (the CA is overloaded or rate limiting us), or give up on
 * this attempt (everything that a resend cannot fix).  The CA's own type and
 * detail always survive into the error so operators see what the CA said.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <jansson.h>
#include "atls_problem.h"

#define ACME_ERR_PREFIX "urn:ietf:params:acme:error:"

typedef struct {
    const char      *name;
    atls_err_class_t cls;
} problem_class_t;

/* connection/dns/tls/incorrectResponse are permanent for this attempt: the
 * validation failed and resending the same request cannot change that; the
 * scheduler's backoff still tries again later with a fresh order. */
static const problem_class_t problem_classes[] = {
    { "badNonce",                ATLS_ERR_RETRY_NOW },
    { "rateLimited",             ATLS_ERR_RETRY_LATER },
    { "serverInternal",          ATLS_ERR_RETRY_LATER },
    { "accountDoesNotExist",     ATLS_ERR_PERMANENT },
    { "alreadyRevoked",          ATLS_ERR_PERMANENT },
    { "badCSR",                  ATLS_ERR_PERMANENT },
    { "badPublicKey",            ATLS_ERR_PERMANENT },
    { "badRevocationReason",     ATLS_ERR_PERMANENT },
    { "badSignatureAlgorithm",   ATLS_ERR_PERMANENT },
    { "caa",                     ATLS_ERR_PERMANENT },
    { "compound",                ATLS_ERR_PERMANENT },
    { "connection",              ATLS_ERR_PERMANENT },
    { "dns",                     ATLS_ERR_PERMANENT },
    { "externalAccountRequired", ATLS_ERR_PERMANENT },
    { "incorrectResponse",       ATLS_ERR_PERMANENT },
    { "invalidContact",          ATLS_ERR_PERMANENT },
    { "malformed",               ATLS_ERR_PERMANENT },
    { "orderNotReady",           ATLS_ERR_PERMANENT },
    { "rejectedIdentifier",      ATLS_ERR_PERMANENT },
    { "tls",                     ATLS_ERR_PERMANENT },
    { "unauthorized",            ATLS_ERR_PERMANENT },
    { "unsupportedContact",      ATLS_ERR_PERMANENT },
    { "unsupportedIdentifier",   ATLS_ERR_PERMANENT },
    { "userActionRequired",      ATLS_ERR_PERMANENT },
};

/* Validation failures: permanent for this order, but a fresh order may pass
 * once a record or a firewall is fixed, so they retry on the usual backoff. */
static const char *const problem_validation[] = {
    "connection", "dns", "incorrectResponse", "tls",
};

static const char *
problem_short_name(const char *type)
{
    size_t plen = sizeof(ACME_ERR_PREFIX) - 1;

    if (strncmp(type, ACME_ERR_PREFIX, plen) == 0) {
        return type + plen;
    }
    return type;
}

atls_err_class_t
atls_problem_classify(const char *type, int http_status)
{
    const char *name;
    size_t      i;

    if (type != NULL) {
        name = problem_short_name(type);
        for (i = 0; i < sizeof(problem_classes) / sizeof(problem_classes[0]); i++) {
            if (strcmp(problem_classes[i].name, name) == 0) {
                return problem_classes[i].cls;
            }
        }
    }
    if (http_status == 429 || (http_status >= 500 && http_status <= 599)) {
        return ATLS_ERR_RETRY_LATER;
    }
    return ATLS_ERR_PERMANENT;
}

atls_err_class_t
atls_problem_backoff_class(const atls_error_t *err)
{
    const char *name;
    size_t      i;

    if (err == NULL || err->cls != ATLS_ERR_PERMANENT) {
        return ATLS_ERR_RETRY_LATER;
    }
    name = problem_short_name(err->type);
    for (i = 0; i < sizeof(problem_validation) / sizeof(problem_validation[0]); i++) {
        if (strcmp(problem_validation[i], name) == 0) {
            return ATLS_ERR_RETRY_LATER;
        }
    }
    return ATLS_ERR_PERMANENT;
}

/* Appends s to buf (size cap), marking truncation with "..." so a cut
 * detail is never mistaken for the CA's complete message. */
static void
detail_append(char *buf, size_t cap, const char *s)
{
    size_t used = strlen(buf);
    size_t n = strlen(s);

    if (used + 1 >= cap) {
        return;
    }
    if (used + n + 1 <= cap) {
        memcpy(buf + used, s, n + 1);
        return;
    }
    memcpy(buf + used, s, cap - used - 1);
    buf[cap - 1] = '\0';
    if (cap >= 4) {
        memcpy(buf + cap - 4, "...", 4);
    }
}

static const char *
json_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* "; www.example.com: dns: NXDOMAIN" for each subproblem (RFC 8555 §6.7.1). */
static void
detail_add_subproblems(char *buf, size_t cap, json_t *subs)
{
    char        piece[512];
    const char *type, *detail, *value;
    json_t     *sub;
    size_t      i;

    json_array_foreach(subs, i, sub) {
        if (!json_is_object(sub)) {
            continue;
        }
        type = json_str(sub, "type");
        detail = json_str(sub, "detail");
        value = json_str(json_object_get(sub, "identifier"), "value");
        snprintf(piece, sizeof(piece), "; %s%s%s%s%s",
                 value ? value : "", value ? ": " : "",
                 type ? problem_short_name(type) : "",
                 type && detail ? ": " : "",
                 detail ? detail : "");
        detail_append(buf, cap, piece);
    }
}

/* Printable excerpt of a body that was not a problem document, so a proxy's
 * HTML error page still says something useful without dumping binary. */
static void
body_excerpt(const char *body, size_t len, char *out, size_t cap)
{
    size_t i, n = 0;

    for (i = 0; i < len && n + 1 < cap && n < 120; i++) {
        unsigned char c = (unsigned char) body[i];

        out[n++] = (isprint(c) && c != '\r' && c != '\n') ? (char) c : ' ';
    }
    out[n] = '\0';
}

/* Type and detail are the CA's text: they end up in logs, the job state and
 * the status page, so they are made printable here, once, at the source. */
static void
problem_escape(atls_error_t *err)
{
    char tmp[sizeof(err->detail)];

    atls_log_escape(err->type, tmp, sizeof(err->type));
    memcpy(err->type, tmp, sizeof(err->type));
    atls_log_escape(err->detail, tmp, sizeof(tmp));
    memcpy(err->detail, tmp, sizeof(tmp));
}

static int
problem_parse(const char *body, size_t len, int http_status, atls_error_t *err)
{
    json_error_t jerr;
    json_t      *root, *st;
    const char  *type, *detail;
    int          status = http_status;

    if (body == NULL || len == 0) {
        return -1;
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return -1;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return -1;
    }
    type = json_str(root, "type");
    detail = json_str(root, "detail");

    /* Embedded errors (challenge/authorization "error") have no HTTP status
     * of their own; the document's "status" member stands in for it. */
    st = json_object_get(root, "status");
    if (status == 0 && json_is_integer(st)) {
        status = (int) json_integer_value(st);
    }

    memset(err, 0, sizeof(*err));
    snprintf(err->type, sizeof(err->type), "%s", type ? type : "autotls:http");
    err->http_status = status;
    err->cls = atls_problem_classify(type, status);
    if (detail != NULL) {
        detail_append(err->detail, sizeof(err->detail), detail);
    } else if (type == NULL) {
        snprintf(err->detail, sizeof(err->detail), "HTTP %d with no problem type", status);
    }
    detail_add_subproblems(err->detail, sizeof(err->detail),
                           json_object_get(root, "subproblems"));
    json_decref(root);
    problem_escape(err);
    return 0;
}

void
atls_problem_from_json(const char *body, size_t len, int http_status, atls_error_t *err)
{
    char excerpt[128];

    if (problem_parse(body, len, http_status, err) == 0) {
        return;
    }
    body_excerpt(body ? body : "", body ? len : 0, excerpt, sizeof(excerpt));
    atls_error_set(err, atls_problem_classify(NULL, http_status), "autotls:http",
                   "HTTP %d from the CA without a problem document%s%s",
                   http_status, excerpt[0] ? ": " : "", excerpt);
    err->http_status = http_status;
}

void
atls_problem_from_response(const atls_http_response_t *resp, time_t now,
                           atls_error_t *err)
{
    if (resp->transport_error || resp->status == 0) {
        atls_error_set(err, ATLS_ERR_RETRY_LATER, "autotls:transport", "%s",
                       resp->error[0] ? resp->error : "no HTTP response");
        return;
    }
    atls_problem_from_json(resp->body, resp->body_len, (int) resp->status, err);
    /* The HTTP status of the response is authoritative over the document's. */
    err->http_status = (int) resp->status;
    err->retry_after = atls_http_retry_after(resp->retry_after, now);
}
