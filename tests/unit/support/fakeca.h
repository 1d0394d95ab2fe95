/*
 * A canned ACME CA for unit tests of the sans-I/O engine.  It answers the
 * engine's requests by method and URL the way RFC 8555 says a CA does, and
 * checks every request like a strict CA: JWS signature with the account key
 * (plain OpenSSL, not the code under test), protected "url" equal to the
 * request URL, nonces it issued and not yet used, kid vs jwk.  Any breach
 * is counted in violations and described in violation (tests assert 0).
 */
#ifndef FAKECA_H
#define FAKECA_H

#include <stddef.h>
#include <time.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include "atls_acme.h"

#define FAKECA_BASE     "https://ca.test"
#define FAKECA_ACCT_URL FAKECA_BASE "/acct/1"
#define FAKECA_ORDER_URL FAKECA_BASE "/order/1"
#define FAKECA_ALT_ROOT_CN "autotls Alt Root %d"   /* alternate k's top issuer */
#define FAKECA_MAX_NAMES 16
#define FAKECA_MAX_LOG   256

typedef struct {
    const char *method;         /* NULL: any */
    const char *path;           /* prefix of the URL path, e.g. "/new-order" */
    int         skip;           /* let this many matching requests through first */
    int         count;          /* answer this many with the fault; -1 forever */
    int         status;         /* 0: transport error */
    const char *type;           /* short ACME error name, NULL: none */
    const char *detail;
    const char *retry_after;
} fakeca_fault_t;

typedef struct {
    char *method;
    char *path;
    char *payload;              /* decoded JWS payload ("" for POST-as-GET) */
    int   jwk;                  /* signed with an embedded jwk */
} fakeca_req_t;

typedef struct {
    /* configuration (set before running) */
    EVP_PKEY       *account_key;        /* the key the engine must sign with */
    const char     *tos_url;            /* meta.termsOfService */
    int             eab_required;
    const char     *eab_kid;
    const unsigned char *eab_key;       /* raw HMAC key */
    size_t          eab_key_len;
    const char     *profiles_json;      /* meta.profiles, e.g. {"classic":"..."} */
    int             renewal_info;       /* advertise renewalInfo */
    const char     *ari_body;           /* renewalInfo response */
    int             account_exists;     /* onlyReturnExisting finds it */
    const char     *challenges;         /* offered types, comma-separated */
    const char     *prevalid[FAKECA_MAX_NAMES];   /* already-valid authz */
    const char     *invalid[FAKECA_MAX_NAMES];    /* validation fails */
    int             authz_pending_polls;  /* polls answered "pending" after respond */
    const char     *authz_retry_after;
    int             order_processing_polls;
    const char     *order_retry_after;
    int             n_alternates;
    const char     *token_override;     /* hand out this token (e.g. "../x") */
    fakeca_fault_t  faults[8];

    /* state and records */
    EVP_PKEY       *root_key, *inter_key, *alt_root_key[4];
    X509           *root, *inter, *alt_root[4], *alt_inter[4];
    char           *nonces[512];
    int             nonce_used[512];
    size_t          n_nonces;
    char           *names[FAKECA_MAX_NAMES];   /* order identifiers */
    char           *name_types[FAKECA_MAX_NAMES];
    size_t          n_names;
    char            authz_status[FAKECA_MAX_NAMES][16];
    int             authz_polls_left[FAKECA_MAX_NAMES];
    char           *tokens[FAKECA_MAX_NAMES];
    int             order_created;
    int             finalized;
    int             processing_left;
    X509           *leaf;
    char           *csr_names[FAKECA_MAX_NAMES];
    size_t          n_csr_names;
    json_t         *account_payload;   /* last newAccount (create) payload */
    int             eab_verified;      /* its EAB checked out with eab_key */
    json_t         *order_payload;
    json_t         *revoke_payload;
    char           *ari_path;
    fakeca_req_t    log[FAKECA_MAX_LOG];
    size_t          n_log;
    int             violations;
    char            violation[512];

    /* added later (keep appending) */
    const char     *ari_retry_after;    /* renewalInfo Retry-After; NULL: "21600" */
    long            ari_status;         /* renewalInfo HTTP status; 0: 200 */
    char           *csr_cn;             /* subject CN of the finalized CSR, or NULL */
    size_t          n_cert_accept;      /* certificate fetches that sent the Accept
                                           of RFC 8555 §7.4.2 (others are violations) */

    /* an untrusted CA: faults the client must catch */
    const char     *authz_ident;        /* authz 0 names this identifier instead */
    const char     *order_ident;        /* the order lists this instead of name 0 */
    int             cert_fault;         /* FAKECA_CERT_*: what is wrong with the leaf */
    const char     *url_field;          /* hand out url_value in place of this URL: */
    const char     *url_value;          /* "newNonce", "newAccount", "newOrder",
                                           "account", "order", "authorization",
                                           "challenge", "finalize", "certificate",
                                           "alternate", "renewalInfo" */
    time_t          clock;              /* the driver's simulated now (leaf dates) */
    int             authz_wildcard_flip; /* authz 0 says "wildcard" the wrong way */
    const char     *ocsp_url;           /* AIA OCSP responder of issued leaves */
    int             csr_must_staple;    /* the finalized CSR asked for the TLS
                                           Feature status_request (RFC 7633) */
    const char     *invalid_type;       /* the error of a failed validation
                                           (short ACME name); NULL: "connection" */
} fakeca_t;

enum {
    FAKECA_CERT_OK = 0,
    FAKECA_CERT_EXTRA_NAME,     /* a SAN nobody ordered */
    FAKECA_CERT_MISSING_NAME,   /* the last ordered name left out */
    FAKECA_CERT_EXPIRED,
    FAKECA_CERT_NOT_YET_VALID,  /* notBefore a day ahead */
    FAKECA_CERT_FOREIGN_KEY,    /* the leaf certifies another key than the CSR's */
    FAKECA_CERT_BROKEN_CHAIN    /* leaf names the intermediate, signed by another key */
};

/* A CA with a fresh PKI; account_key is borrowed. NULL on failure. */
fakeca_t *fakeca_new(EVP_PKEY *account_key);
void fakeca_free(fakeca_t *ca);

/* Answers one request (resp is filled; free with fakeca_response_clear). */
void fakeca_handle(fakeca_t *ca, const atls_http_request_t *req,
                   atls_http_response_t *resp);
void fakeca_response_clear(atls_http_response_t *resp);

/* Number of logged requests with this method and URL path prefix. */
size_t fakeca_count(const fakeca_t *ca, const char *method, const char *path);
/* The n-th (0-based) logged request with this method and path prefix. */
const fakeca_req_t *fakeca_find(const fakeca_t *ca, const char *method,
                                const char *path, size_t nth);

/* What a driver saw while running an engine against the CA. */
typedef struct {
    atls_action_kind_t final;
    size_t             steps;
    size_t             n_setup;
    size_t             n_teardown;
    char              *setup_ident[FAKECA_MAX_NAMES];
    char              *setup_token[FAKECA_MAX_NAMES];
    char              *setup_key_authz[FAKECA_MAX_NAMES];
    char              *setup_dns_name[FAKECA_MAX_NAMES];
    char              *setup_dns_value[FAKECA_MAX_NAMES];
    atls_challenge_type_t setup_type[FAKECA_MAX_NAMES];
    char              *teardown_ident[FAKECA_MAX_NAMES];
    size_t             last_setup_step;             /* step number of the last SETUP */
    size_t             first_respond_step;          /* ... of the first challenge POST */
    time_t             wait_delta[64];              /* until - now of each WAIT */
    long               wait_ms[64];                 /* delay_ms of each WAIT */
    size_t             n_wait;
    const char        *fail_setup_for;              /* SETUP of this identifier fails */
    time_t             now;                         /* simulated clock */
} fakeca_run_t;

/* Drives e against ca until DONE/FAILED (or 2000 steps). */
atls_action_kind_t fakeca_run(fakeca_t *ca, atls_acme_t *e, fakeca_run_t *run);
void fakeca_run_clear(fakeca_run_t *run);

#endif
