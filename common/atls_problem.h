/* ACME problem documents (RFC 7807 / RFC 8555 §6.7) -> retry classes. */
#ifndef ATLS_PROBLEM_H
#define ATLS_PROBLEM_H

#include "atls.h"
#include "atls_http.h"

/* Class for an ACME error type (full URN or short name) and HTTP status. */
atls_err_class_t atls_problem_classify(const char *type, int http_status);

/* The class a failed attempt backs off by: PERMANENT for an error only the
 * operator can fix (rejectedIdentifier, unauthorized, caa, badCSR, ...);
 * RETRY_LATER for everything else, validation failures (connection, dns,
 * tls, incorrectResponse) included: a fresh order may pass once fixed. */
atls_err_class_t atls_problem_backoff_class(const atls_error_t *err);

/* Parses an error response (problem+json body, maybe garbage) into err:
 * type, detail (incl. subproblems, truncated), class, retry_after (from the
 * response's Retry-After header relative to now).  Always fills err; a
 * non-JSON body yields type "autotls:http" with the status in detail. */
void atls_problem_from_response(const atls_http_response_t *resp, time_t now,
                                atls_error_t *err);

/* Same but from a raw JSON body only (used for embedded "error" objects of
 * challenges/authorizations). */
void atls_problem_from_json(const char *body, size_t len, int http_status,
                            atls_error_t *err);

#endif
