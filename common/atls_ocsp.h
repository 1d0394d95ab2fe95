/*
 * OCSP (RFC 6960, RFC 5019) and CRLs (RFC 5280): requests, verification of
 * answers, and the facts a certificate carries about where to ask.
 *
 * Pure functions over OpenSSL objects: no I/O, no store, no clock of their
 * own (callers pass `now`).  Everything a responder or a CRL server sends is
 * untrusted input: it is verified against the certificate's issuer before a
 * single fact from it is believed.
 */
#ifndef ATLS_OCSP_H
#define ATLS_OCSP_H

#include <stddef.h>
#include <time.h>
#include <openssl/x509.h>
#include "atls_http.h"

/* What is known about a certificate's revocation through OCSP. */
typedef enum {
    ATLS_OCSP_NONE = 0,   /* no answer yet, or the certificate names no
                             responder (normal: Let's Encrypt since 2025) */
    ATLS_OCSP_GOOD,
    ATLS_OCSP_REVOKED,
    ATLS_OCSP_UNKNOWN,    /* the responder does not know the certificate */
    ATLS_OCSP_ERROR       /* the last fetch or verification failed */
} atls_ocsp_status_t;

/* "none", "good", "revoked", "unknown", "error" */
const char *atls_ocsp_status_name(atls_ocsp_status_t s);
/* The inverse; -1 when name is none of them. */
int atls_ocsp_status_parse(const char *name, atls_ocsp_status_t *out);

/* Clock skew tolerated on thisUpdate in the future, and on nextUpdate. */
#define ATLS_OCSP_SKEW_S          300
/* A response without nextUpdate is treated as valid this long after its
 * thisUpdate (for stapling and refresh). */
#define ATLS_OCSP_NO_NEXT_S       3600
/* The largest OCSP response and CRL accepted (bytes). */
#define ATLS_OCSP_MAX_BYTES       (64 * 1024)
#define ATLS_CRL_MAX_BYTES        (8 * 1024 * 1024)

/* ---- where to ask: facts of the leaf ---------------------------------- */

/* The first http:// OCSP responder URL in leaf's Authority Information
 * Access, malloc'd; NULL when there is none (not an error). */
char *atls_ocsp_url(X509 *leaf);

/* The first http:// or https:// fullName URI of leaf's CRL Distribution
 * Points, malloc'd; NULL when there is none.  (Sharded CRLs: every
 * certificate names its own shard, so fetching the URLs the managed
 * certificates name fetches only the shards that matter.) */
char *atls_crl_url(X509 *leaf);

/* 1 when leaf carries the TLS Feature extension with status_request
 * (OCSP Must-Staple, RFC 7633). */
int atls_cert_must_staple(X509 *leaf);

/* ---- OCSP -------------------------------------------------------------- */

/* Builds the request for leaf (issued by issuer) to url: a GET with the
 * base64 DER in the path (RFC 5019) when the whole URL stays under 255
 * bytes, else a POST of application/ocsp-request.  No nonce (RFC 5019:
 * responders pre-sign).  req's members are allocated (atls_http_request_free).
 * 0, or -1 with err. */
int atls_ocsp_request(X509 *leaf, X509 *issuer, const char *url,
                      atls_http_request_t *req, char *err, size_t errlen);

typedef struct {
    atls_ocsp_status_t status;       /* GOOD, REVOKED or UNKNOWN */
    time_t             produced_at;
    time_t             this_update;
    time_t             next_update;  /* 0: the responder gave none */
    time_t             revoked_at;   /* REVOKED only */
    int                reason;       /* REVOKED: CRLReason code, -1 absent */
} atls_ocsp_answer_t;

/*
 * Verifies a DER OCSP response (at most ATLS_OCSP_MAX_BYTES) for leaf at
 * now, and says what it answers:
 *   - responseStatus successful (else err names it: "tryLater", ...);
 *   - a basic response whose signature verifies with issuer's key, or with
 *     a delegated responder certificate included in the response that
 *     issuer signed and that carries the id-kp-OCSPSigning EKU (RFC 6960
 *     4.2.2.2); no other trust anchor is consulted;
 *   - a SingleResponse whose CertID (SHA-1 or SHA-256) matches leaf and
 *     issuer;
 *   - thisUpdate not after now + ATLS_OCSP_SKEW_S, nextUpdate (when given)
 *     after thisUpdate and not before now - ATLS_OCSP_SKEW_S.
 * 0 with out filled, or -1 with err (for logs and the status page).
 */
int atls_ocsp_verify(const unsigned char *der, size_t len, X509 *leaf, X509 *issuer,
                     time_t now, atls_ocsp_answer_t *out, char *err, size_t errlen);

/* The end of a verified answer's validity: next_update, or this_update +
 * ATLS_OCSP_NO_NEXT_S when it has none. */
time_t atls_ocsp_valid_until(const atls_ocsp_answer_t *a);

/*
 * When to fetch a fresh response.  After a success (failures 0): halfway
 * through the answer's validity (thisUpdate .. valid_until), minus a jitter
 * of up to a tenth of the validity drawn from `jitter` (any value, e.g.
 * a hash of the certificate id, so that 10,000 certificates do not ask in
 * the same second), and never later than valid_until - 1/4 of the validity.
 * After failures (a consecutive count, >= 1): 60 s doubling to 1 h, but
 * while a good answer is still held, early enough to retry before it ends.
 * Never earlier than now + 10 s.  a may be NULL after failures with no
 * answer held.
 */
time_t atls_ocsp_next_refresh(const atls_ocsp_answer_t *a, time_t now,
                              unsigned failures, unsigned jitter);

/* ---- CRLs -------------------------------------------------------------- */

typedef struct {
    time_t this_update;
    time_t next_update;   /* 0: none given */
} atls_crl_info_t;

/*
 * Parses a CRL (DER, or PEM; at most ATLS_CRL_MAX_BYTES) fetched from url
 * and verifies it for issuer at now: the CRL's issuer name equals issuer's
 * subject, its signature verifies with issuer's key, thisUpdate is not
 * after now + ATLS_OCSP_SKEW_S, and when it carries an Issuing
 * Distribution Point with URIs, url is one of them (a shard cannot be
 * passed off as another).  A nextUpdate in the past is allowed (reported in
 * info: the caller decides how stale is too stale).  The CRL, or NULL with
 * err.
 */
X509_CRL *atls_crl_verify(const unsigned char *data, size_t len, const char *url,
                          X509 *issuer, time_t now, atls_crl_info_t *info,
                          char *err, size_t errlen);

/* Whether crl lists the certificate with this serial (lower-case hex, as
 * atls_cert_info gives it): 1 revoked (revoked_at, reason: CRLReason or
 * -1), 0 not listed, -1 bad serial. */
int atls_crl_lookup(X509_CRL *crl, const char *serial_hex, time_t *revoked_at,
                    int *reason);

/* The CRLReason name for logs ("keyCompromise", ...; "unspecified" for -1
 * or an unknown code). */
const char *atls_crl_reason_name(int reason);

#endif
