/*
 * Private to the ACME engine (acme*.c): the engine object, its one state
 * enum, and the helpers the per-phase files share.
 */
#ifndef ATLS_ACME_INTERNAL_H
#define ATLS_ACME_INTERNAL_H

#include <jansson.h>
#include "atls_acme.h"

/* badNonce resends in a row: with 5, a CA rejecting half of all nonces
 * (Pebble's PEBBLE_WFE_NONCEREJECT=50) failed about one order in five */
#define ATLS_ACME_MAX_BAD_NONCE   20
#define ATLS_ACME_MAX_POLLS       60    /* per authorization / order wait */
#define ATLS_ACME_POLL_CAP        10    /* seconds between polls without Retry-After */
#define ATLS_ACME_MAX_WAIT        3600  /* a CA's Retry-After longer than this is capped */
#define ATLS_ACME_MAX_AUTHZ       1000

typedef enum {
    ATLS_ACME_ORDER = 0,
    ATLS_ACME_REVOKE,
    ATLS_ACME_ARI
} atls_acme_kind_t;

/* The whole flow as one explicit state machine; see the table in acme.c. */
typedef enum {
    ATLS_ST_DIRECTORY = 0,
    ATLS_ST_ACCOUNT,            /* decide: known kid, lookup or create */
    ATLS_ST_ACCOUNT_LOOKUP,     /* newAccount onlyReturnExisting */
    ATLS_ST_ACCOUNT_CREATE,     /* newAccount */
    ATLS_ST_NEW_ORDER,
    ATLS_ST_AUTHZ_FETCH,
    ATLS_ST_CHAL_SETUP,
    ATLS_ST_CHAL_RESPOND,
    ATLS_ST_AUTHZ_POLL,
    ATLS_ST_AUTHZ_TEARDOWN,
    ATLS_ST_ORDER_POLL,
    ATLS_ST_FINALIZE,
    ATLS_ST_DOWNLOAD,
    ATLS_ST_DOWNLOAD_ALT,
    ATLS_ST_REVOKE,
    ATLS_ST_RENEWAL_INFO,
    ATLS_ST_CLEANUP,            /* withdraw published challenges, then FAILED */
    ATLS_ST_DONE,
    ATLS_ST_FAILED,
    ATLS_ST__COUNT
} atls_acme_state_t;

/* What a state function tells the dispatcher. */
#define ATLS_STEP_AGAIN 0       /* state changed without an action: run again */
#define ATLS_STEP_EMIT  1       /* act is filled: hand it to the host */

typedef struct {
    char                 *url;
    char                 *status;       /* "pending", "valid", ... */
    int                   needs_chal;   /* pending: we must validate it */
    int                   setup_done;   /* SETUP acknowledged by the host */
    int                   torn_down;
    int                   responded;
    int                   settled;
    char                 *chal_url;
    char                 *chal_status;
    atls_challenge_t      chal;
} atls_authz_t;

typedef struct {
    char   *new_nonce;
    char   *new_account;
    char   *new_order;
    char   *revoke_cert;
    char   *renewal_info;
    char   *tos;
    int     eab_required;
    json_t *profiles;           /* meta.profiles object, or NULL */
} atls_directory_t;

struct atls_acme_s {
    atls_acme_kind_t   kind;
    atls_acme_state_t  state;
    atls_error_t       err;

    /* configuration (owned copies; keys borrowed) */
    char              *directory_url;
    EVP_PKEY          *account_key;
    char              *account_url;     /* kid, known or learned */
    int                account_known_key;
    char             **contact;
    size_t             n_contact;
    int                agree_tos;
    char              *eab_kid;
    char              *eab_hmac;
    char             **names;
    size_t             n_names;
    atls_challenge_type_t chal_type;
    EVP_PKEY          *cert_key;
    int                csr_with_cn;
    int                must_staple;
    char              *profile;
    int                profile_required;
    char              *preferred_chain;
    char              *replaces;
    int                allow_foreign_urls;  /* tests only: see atls_acme_allow_foreign_urls */

    atls_directory_t   dir;

    /* transport: the request in flight and what it needs */
    char              *nonce;
    atls_http_request_t req;
    int                awaiting;        /* a SEND is outstanding */
    int                fetching_nonce;  /* ... and it is HEAD newNonce */
    char              *post_url;        /* the signed POST to (re)send */
    char              *post_payload;    /* NULL: POST-as-GET */
    int                post_jwk;        /* sign with jwk instead of kid */
    const char        *post_accept;     /* Accept header of the POST, or NULL */
    unsigned           bad_nonce;
    time_t             wait_until;      /* next act emits WAIT first */
    long               wait_ms;         /* the same wait in ms from the step's now */

    /* order */
    char              *order_url;
    char              *order_status;
    char              *finalize_url;
    char              *cert_url;
    int                finalized;
    atls_authz_t      *authz;
    size_t             n_authz;
    size_t             cur;
    unsigned           polls;
    int                setup_outstanding;
    int                setup_result;    /* -1 not reported, 0 failed, 1 ok */
    char               setup_why[256];
    char              *chain_pem;
    char             **alt;
    size_t             n_alt;
    size_t             alt_idx;

    /* revoke */
    unsigned char     *cert_der;
    size_t             cert_der_len;
    int                reason;

    /* ARI */
    char              *ari_cert_id;
    int                ari_have;
    time_t             ari_start;
    time_t             ari_end;
    time_t             ari_retry_after; /* absolute; 0 when the CA sent none */
};

typedef struct {
    const char *name;
    /* Produce the next action (no response outstanding). */
    int  (*act)(atls_acme_t *e, time_t now, atls_action_t *act);
    /* Consume a 2xx response to this state's request. */
    void (*on_response)(atls_acme_t *e, const atls_http_response_t *resp, time_t now);
    /* Optional: an error response (e->err filled); return 1 when the state
     * handled it (moved on), 0 to fail with e->err. */
    int  (*on_problem)(atls_acme_t *e, const atls_http_response_t *resp, time_t now);
} atls_acme_state_ops_t;

/* acme.c: transitions, failures, requests */
atls_acme_t *atls_acme_alloc(atls_acme_kind_t kind, const char *directory_url);
void atls_acme_set_state(atls_acme_t *e, atls_acme_state_t st);
void atls_acme_fail(atls_acme_t *e, atls_err_class_t cls, const char *type,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void atls_acme_fail_err(atls_acme_t *e);   /* e->err already filled */
/* 0 when url (the CA's field) is https on the directory's origin; else the
 * engine fails naming field and url, and -1 is returned. */
int  atls_acme_url_ok(atls_acme_t *e, const char *field, const char *url);
int  atls_acme_send_get(atls_acme_t *e, const char *method, const char *url,
                        atls_action_t *act);
/* Signed POST; payload NULL = POST-as-GET; jwk = embed the key (no kid). */
int  atls_acme_send_post(atls_acme_t *e, const char *url, const char *payload,
                         int jwk, atls_action_t *act);
/* Same, asking for a media type (the certificate download, RFC 8555 §7.4.2). */
int  atls_acme_send_post_accept(atls_acme_t *e, const char *url, const char *payload,
                                int jwk, const char *accept, atls_action_t *act);
/* Parses a 2xx JSON object body; on garbage fails the engine and returns NULL. */
json_t *atls_acme_json_body(atls_acme_t *e, const atls_http_response_t *resp,
                            const char *what);
const char *atls_acme_json_str(json_t *obj, const char *key);
char *atls_acme_json_dup(json_t *obj, const char *key);
/* Absolute time of the next poll: Retry-After if given, else a gentle ramp. */
time_t atls_acme_poll_at(const atls_http_response_t *resp, time_t now, unsigned polls);
long   atls_acme_poll_delay_ms(const atls_http_response_t *resp, time_t now, unsigned polls);
void   atls_acme_schedule_poll(atls_acme_t *e, const atls_http_response_t *resp, time_t now,
                               unsigned polls);
int  atls_acme_act_wait(atls_acme_t *e, atls_action_t *act);

/* acme_account.c */
int  atls_acme_directory_act(atls_acme_t *e, time_t now, atls_action_t *act);
void atls_acme_directory_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                     time_t now);
void atls_acme_directory_free(atls_directory_t *d);
int  atls_acme_account_act(atls_acme_t *e, time_t now, atls_action_t *act);
int  atls_acme_lookup_act(atls_acme_t *e, time_t now, atls_action_t *act);
void atls_acme_lookup_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                  time_t now);
int  atls_acme_lookup_on_problem(atls_acme_t *e, const atls_http_response_t *resp,
                                 time_t now);
int  atls_acme_create_act(atls_acme_t *e, time_t now, atls_action_t *act);
void atls_acme_create_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                  time_t now);

/* acme_order.c (download and alternates: acme_download.c) */
int  atls_acme_new_order_act(atls_acme_t *e, time_t now, atls_action_t *act);
void atls_acme_new_order_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                     time_t now);
int  atls_acme_order_poll_act(atls_acme_t *e, time_t now, atls_action_t *act);
void atls_acme_order_poll_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                      time_t now);
int  atls_acme_finalize_act(atls_acme_t *e, time_t now, atls_action_t *act);
void atls_acme_finalize_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                    time_t now);
int  atls_acme_download_act(atls_acme_t *e, time_t now, atls_action_t *act);
void atls_acme_download_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                    time_t now);
int  atls_acme_alt_act(atls_acme_t *e, time_t now, atls_action_t *act);
void atls_acme_alt_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                               time_t now);
int  atls_acme_alt_on_problem(atls_acme_t *e, const atls_http_response_t *resp,
                              time_t now);
/* Index of the ordered name an identifier of the CA's stands for, or -1 when
 * it names nothing we ordered or is not a valid hostname/IP (value is the
 * base name and wildcard set for a wildcard authorization). */
int  atls_acme_name_index(const atls_acme_t *e, const char *type, const char *value,
                          int wildcard);
/* Moves on after the authorizations are settled (shared with acme_authz.c). */
void atls_acme_order_after_authz(atls_acme_t *e);

/* acme_authz.c */
int  atls_acme_authz_fetch_act(atls_acme_t *e, time_t now, atls_action_t *act);
void atls_acme_authz_fetch_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                       time_t now);
int  atls_acme_chal_setup_act(atls_acme_t *e, time_t now, atls_action_t *act);
int  atls_acme_chal_respond_act(atls_acme_t *e, time_t now, atls_action_t *act);
void atls_acme_chal_respond_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                        time_t now);
int  atls_acme_authz_poll_act(atls_acme_t *e, time_t now, atls_action_t *act);
void atls_acme_authz_poll_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                      time_t now);
int  atls_acme_authz_teardown_act(atls_acme_t *e, time_t now, atls_action_t *act);
int  atls_acme_cleanup_act(atls_acme_t *e, time_t now, atls_action_t *act);
void atls_acme_authz_free(atls_authz_t *a, size_t n);

/* acme_revoke.c */
int  atls_acme_revoke_act(atls_acme_t *e, time_t now, atls_action_t *act);
void atls_acme_revoke_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                  time_t now);

/* acme_ari.c */
int  atls_acme_ari_act(atls_acme_t *e, time_t now, atls_action_t *act);
void atls_acme_ari_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                               time_t now);

#endif
