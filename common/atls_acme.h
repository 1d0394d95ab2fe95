/*
 * The ACME engine (RFC 8555): a sans-I/O state machine.
 *
 * The host calls atls_acme_step() with the response to the request it was
 * last asked to send (or NULL after WAIT/SETUP/TEARDOWN, or for the first
 * step); the engine answers with the next action.  The engine never blocks,
 * never sleeps, never touches sockets, files or the clock (now is passed in).
 *
 *   atls_acme_t *e = atls_acme_order_new(&params, &err);
 *   atls_http_response_t *resp = NULL;
 *   for (;;) {
 *       atls_acme_step(e, resp, now, &act);
 *       switch (act.kind) {
 *       case ATLS_ACT_SEND:     send act.request, resp = its response; break;
 *       case ATLS_ACT_WAIT:     come back at act.until with resp = NULL; break;
 *       case ATLS_ACT_SETUP:    publish act.challenge, then
 *                               atls_acme_challenge_result(e, ok, why); resp = NULL; break;
 *       case ATLS_ACT_TEARDOWN: withdraw act.challenge; resp = NULL; break;
 *       case ATLS_ACT_DONE:     atls_acme_result_*(); return;
 *       case ATLS_ACT_FAILED:   atls_acme_error(e); return;
 *       }
 *   }
 *
 * Nonces: Replay-Nonce of every response is kept; badNonce is retried
 * (bounded) with the fresh nonce.  Polling honours Retry-After.
 */
#ifndef ATLS_ACME_H
#define ATLS_ACME_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include "atls.h"
#include "atls_http.h"

typedef enum {
    ATLS_CHAL_HTTP01 = 0,
    ATLS_CHAL_TLSALPN01,
    ATLS_CHAL_DNS01
} atls_challenge_type_t;

const char *atls_challenge_type_name(atls_challenge_type_t t); /* "http-01"... */
int atls_challenge_type_parse(const char *s, atls_challenge_type_t *out);

typedef struct {
    atls_challenge_type_t type;
    char *identifier;       /* "example.com" or "127.0.0.1" (wildcard: base name) */
    char *identifier_type;  /* "dns" or "ip" */
    char *token;            /* validated base64url */
    char *key_authz;        /* token.thumbprint */
    char *dns_name;         /* dns-01: "_acme-challenge.example.com" */
    char *dns_value;        /* dns-01: TXT value */
} atls_challenge_t;

typedef enum {
    ATLS_ACT_SEND = 0,
    ATLS_ACT_WAIT,
    ATLS_ACT_SETUP,
    ATLS_ACT_TEARDOWN,
    ATLS_ACT_DONE,
    ATLS_ACT_FAILED
} atls_action_kind_t;

typedef struct {
    atls_action_kind_t      kind;
    atls_http_request_t    *request;    /* SEND: owned by the engine, valid until next step */
    time_t                  until;      /* WAIT */
    const atls_challenge_t *challenge;  /* SETUP/TEARDOWN: owned by the engine */
    long                    delay_ms;   /* WAIT: the same wait relative to the step's
                                           now, in milliseconds; drivers that can
                                           sleep less than a second use this */
} atls_action_t;

/* Revocation reasons (RFC 5280 CRLReason). */
typedef enum {
    ATLS_REVOKE_UNSPECIFIED = 0,
    ATLS_REVOKE_KEY_COMPROMISE = 1,
    ATLS_REVOKE_AFFILIATION_CHANGED = 3,
    ATLS_REVOKE_SUPERSEDED = 4,
    ATLS_REVOKE_CESSATION_OF_OPERATION = 5
} atls_revoke_reason_t;
int atls_revoke_reason_parse(const char *s, int *out);  /* "keyCompromise" or number */

typedef struct {
    const char *directory_url;
    EVP_PKEY   *account_key;       /* borrowed; ES256/ES384/RS256 */
    const char *account_url;       /* known kid, or NULL to find/create */
    int         account_known_key; /* 1: key existed before -> try onlyReturnExisting first */
    const char *const *contact;    /* "mailto:..." (a bare address gets mailto: added) */
    size_t      n_contact;
    int         agree_tos;
    const char *eab_kid;           /* both or neither */
    const char *eab_hmac_b64url;

    const char *const *names;      /* identifiers; IP literals become "ip" */
    size_t      n_names;
    atls_challenge_type_t challenge;
    EVP_PKEY   *cert_key;          /* borrowed; the certificate's key for the CSR */
    int         csr_with_cn;
    int         must_staple;       /* TLS Feature status_request in the CSR (RFC 7633) */
    const char *profile;           /* sent only if the directory advertises it */
    int         profile_required;  /* fail if the directory lacks the profile */
    const char *preferred_chain;   /* issuer name; default chain if none matches */
    const char *replaces;          /* ARI cert ID of the certificate being renewed, or NULL */
} atls_order_params_t;

typedef struct atls_acme_s atls_acme_t;

atls_acme_t *atls_acme_order_new(const atls_order_params_t *p, atls_error_t *err);

/* Revoke cert (DER in X509) signed with the account key (kid required). */
atls_acme_t *atls_acme_revoke_new(const char *directory_url, EVP_PKEY *account_key,
                                  const char *account_url, X509 *cert, int reason,
                                  atls_error_t *err);

/* Fetch renewalInfo (RFC 9773) for leaf; DONE with atls_acme_result_ari()
 * filled, or DONE with no window when the directory has no renewalInfo. */
atls_acme_t *atls_acme_ari_new(const char *directory_url, X509 *leaf, atls_error_t *err);

/* Every URL the CA hands back (directory entries, Locations, authorizations,
 * challenges, finalize, certificate, alternates) must be https on the
 * directory URL's origin, else the engine fails (autotls:ca-url) naming the
 * field; a foreign alternate chain is skipped.  allow=1 lifts that for test
 * CAs on other origins; no host configuration reaches it. */
void atls_acme_allow_foreign_urls(atls_acme_t *e, int allow);

/* Drive one step. Returns act->kind. resp is borrowed. */
atls_action_kind_t atls_acme_step(atls_acme_t *e, const atls_http_response_t *resp,
                                  time_t now, atls_action_t *act);

/* After ATLS_ACT_SETUP: ok=1 the challenge is published; ok=0 it could not
 * be (why says so) and the order fails permanently-for-this-attempt. */
void atls_acme_challenge_result(atls_acme_t *e, int ok, const char *why);

/* Results (valid after DONE; borrowed, live until atls_acme_free). */
const char *atls_acme_result_account_url(const atls_acme_t *e);  /* also after FAILED if learned */
const char *atls_acme_result_chain_pem(const atls_acme_t *e);    /* chosen chain, leaf first */
const char *atls_acme_result_order_url(const atls_acme_t *e);
/* ARI: 0 and window set, -1 when none. */
int atls_acme_result_ari(const atls_acme_t *e, time_t *start, time_t *end);
/* ARI: the absolute time the CA's Retry-After (RFC 9773 §4.3) names for the
 * next check; 0 when it sent none. */
time_t atls_acme_result_ari_retry_after(const atls_acme_t *e);
/* ARI: the certificate identifier the engine asks about (for checking that a
 * result still belongs to the stored certificate); NULL for other engines. */
const char *atls_acme_result_ari_cert_id(const atls_acme_t *e);

const atls_error_t *atls_acme_error(const atls_acme_t *e);
/* A short name of the current state, for logs and status ("new-order", "poll-authz"...). */
const char *atls_acme_state_name(const atls_acme_t *e);
void atls_acme_free(atls_acme_t *e);

#endif
