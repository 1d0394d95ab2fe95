/*
 * The ACME engine's core: the state table, the step dispatcher, nonces and
 * request building, results.  The per-phase logic lives in acme_account.c,
 * acme_order.c, acme_authz.c, acme_revoke.c and acme_ari.c.
 *
 * The engine never does I/O: every request it wants sent is handed to the
 * host as an action, and every response comes back through atls_acme_step.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include "acme_internal.h"
#include "atls_jws.h"
#include "atls_problem.h"

static int atls_acme_done_act(atls_acme_t *e, time_t now, atls_action_t *act);
static int atls_acme_failed_act(atls_acme_t *e, time_t now, atls_action_t *act);

static const atls_acme_state_ops_t atls_acme_states[ATLS_ST__COUNT] = {
    [ATLS_ST_DIRECTORY] = { "directory", atls_acme_directory_act,
                            atls_acme_directory_on_response, NULL },
    [ATLS_ST_ACCOUNT] = { "account", atls_acme_account_act, NULL, NULL },
    [ATLS_ST_ACCOUNT_LOOKUP] = { "find-account", atls_acme_lookup_act,
                                 atls_acme_lookup_on_response,
                                 atls_acme_lookup_on_problem },
    [ATLS_ST_ACCOUNT_CREATE] = { "new-account", atls_acme_create_act,
                                 atls_acme_create_on_response, NULL },
    [ATLS_ST_NEW_ORDER] = { "new-order", atls_acme_new_order_act,
                            atls_acme_new_order_on_response, NULL },
    [ATLS_ST_AUTHZ_FETCH] = { "get-authz", atls_acme_authz_fetch_act,
                              atls_acme_authz_fetch_on_response, NULL },
    [ATLS_ST_CHAL_SETUP] = { "setup-challenge", atls_acme_chal_setup_act, NULL, NULL },
    [ATLS_ST_CHAL_RESPOND] = { "respond-challenge", atls_acme_chal_respond_act,
                               atls_acme_chal_respond_on_response, NULL },
    [ATLS_ST_AUTHZ_POLL] = { "poll-authz", atls_acme_authz_poll_act,
                             atls_acme_authz_poll_on_response, NULL },
    [ATLS_ST_AUTHZ_TEARDOWN] = { "teardown-challenge", atls_acme_authz_teardown_act,
                                 NULL, NULL },
    [ATLS_ST_ORDER_POLL] = { "poll-order", atls_acme_order_poll_act,
                             atls_acme_order_poll_on_response, NULL },
    [ATLS_ST_FINALIZE] = { "finalize", atls_acme_finalize_act,
                           atls_acme_finalize_on_response, NULL },
    [ATLS_ST_DOWNLOAD] = { "download", atls_acme_download_act,
                           atls_acme_download_on_response, NULL },
    [ATLS_ST_DOWNLOAD_ALT] = { "download-alternate", atls_acme_alt_act,
                               atls_acme_alt_on_response, atls_acme_alt_on_problem },
    [ATLS_ST_REVOKE] = { "revoke", atls_acme_revoke_act,
                         atls_acme_revoke_on_response, NULL },
    [ATLS_ST_RENEWAL_INFO] = { "renewal-info", atls_acme_ari_act,
                               atls_acme_ari_on_response, NULL },
    [ATLS_ST_CLEANUP] = { "cleanup", atls_acme_cleanup_act, NULL, NULL },
    [ATLS_ST_DONE] = { "done", atls_acme_done_act, NULL, NULL },
    [ATLS_ST_FAILED] = { "failed", atls_acme_failed_act, NULL, NULL },
};

/* ---- names --------------------------------------------------------------- */

static const char *const chal_names[] = { "http-01", "tls-alpn-01", "dns-01" };

const char *
atls_challenge_type_name(atls_challenge_type_t t)
{
    if ((unsigned) t < sizeof(chal_names) / sizeof(chal_names[0])) {
        return chal_names[t];
    }
    return "unknown";
}

int
atls_challenge_type_parse(const char *s, atls_challenge_type_t *out)
{
    size_t i;

    if (s == NULL) {
        return -1;
    }
    for (i = 0; i < sizeof(chal_names) / sizeof(chal_names[0]); i++) {
        if (strcasecmp(s, chal_names[i]) == 0) {
            *out = (atls_challenge_type_t) i;
            return 0;
        }
    }
    return -1;
}

/* Only the reasons ACME CAs accept (RFC 8555 §7.6 defers to RFC 5280 but
 * public CAs reject the others with badRevocationReason). */
static const struct {
    const char *name;
    int         code;
} revoke_reasons[] = {
    { "unspecified",          ATLS_REVOKE_UNSPECIFIED },
    { "keyCompromise",        ATLS_REVOKE_KEY_COMPROMISE },
    { "affiliationChanged",   ATLS_REVOKE_AFFILIATION_CHANGED },
    { "superseded",           ATLS_REVOKE_SUPERSEDED },
    { "cessationOfOperation", ATLS_REVOKE_CESSATION_OF_OPERATION },
};

int
atls_revoke_reason_parse(const char *s, int *out)
{
    size_t  i;
    char   *end;
    long    n;

    if (s == NULL || *s == '\0') {
        return -1;
    }
    for (i = 0; i < sizeof(revoke_reasons) / sizeof(revoke_reasons[0]); i++) {
        if (strcasecmp(s, revoke_reasons[i].name) == 0) {
            *out = revoke_reasons[i].code;
            return 0;
        }
    }
    n = strtol(s, &end, 10);
    if (*end != '\0') {
        return -1;
    }
    for (i = 0; i < sizeof(revoke_reasons) / sizeof(revoke_reasons[0]); i++) {
        if (n == revoke_reasons[i].code) {
            *out = (int) n;
            return 0;
        }
    }
    return -1;
}

/* ---- life cycle ---------------------------------------------------------- */

atls_acme_t *
atls_acme_alloc(atls_acme_kind_t kind, const char *directory_url)
{
    atls_acme_t *e = calloc(1, sizeof(*e));

    if (e == NULL) {
        return NULL;
    }
    e->kind = kind;
    e->state = ATLS_ST_DIRECTORY;
    e->setup_result = -1;
    e->directory_url = atls_strdup(directory_url);
    return e;
}

void
atls_acme_free(atls_acme_t *e)
{
    if (e == NULL) {
        return;
    }
    free(e->directory_url);
    free(e->account_url);
    atls_strv_free(e->contact, e->n_contact);
    free(e->eab_kid);
    if (e->eab_hmac != NULL) {
        OPENSSL_cleanse(e->eab_hmac, strlen(e->eab_hmac));
        free(e->eab_hmac);
    }
    atls_strv_free(e->names, e->n_names);
    free(e->profile);
    free(e->preferred_chain);
    free(e->replaces);
    atls_acme_directory_free(&e->dir);
    free(e->nonce);
    atls_http_request_free(&e->req);
    free(e->post_url);
    free(e->post_payload);
    free(e->order_url);
    free(e->order_status);
    free(e->finalize_url);
    free(e->cert_url);
    atls_acme_authz_free(e->authz, e->n_authz);
    free(e->chain_pem);
    atls_strv_free(e->alt, e->n_alt);
    free(e->cert_der);
    free(e->ari_cert_id);
    free(e);
}

/* ---- transitions and failures ------------------------------------------- */

void
atls_acme_set_state(atls_acme_t *e, atls_acme_state_t st)
{
    if (e->state != st) {
        atls_log(ATLS_LOG_DEBUG, "acme: %s -> %s", atls_acme_states[e->state].name,
                 atls_acme_states[st].name);
        e->polls = 0;
    }
    e->state = st;
}

void
atls_acme_fail_err(atls_acme_t *e)
{
    size_t i;

    /* Published challenges must be withdrawn even when the order fails, or
     * stale tokens and TXT records pile up at the host. */
    for (i = 0; i < e->n_authz; i++) {
        if (e->authz[i].setup_done && !e->authz[i].torn_down) {
            e->state = ATLS_ST_CLEANUP;
            return;
        }
    }
    e->state = ATLS_ST_FAILED;
}

void
atls_acme_fail(atls_acme_t *e, atls_err_class_t cls, const char *type,
               const char *fmt, ...)
{
    va_list ap;

    memset(&e->err, 0, sizeof(e->err));
    e->err.cls = cls;
    snprintf(e->err.type, sizeof(e->err.type), "%s", type);
    va_start(ap, fmt);
    vsnprintf(e->err.detail, sizeof(e->err.detail), fmt, ap);
    va_end(ap);
    /* details quote the CA's URLs and names; they reach logs and status */
    atls_log_scrub(e->err.detail);
    atls_acme_fail_err(e);
}

void
atls_acme_allow_foreign_urls(atls_acme_t *e, int allow)
{
    e->allow_foreign_urls = allow;
}

int
atls_acme_url_ok(atls_acme_t *e, const char *field, const char *url)
{
    char esc[256];

    if (e->allow_foreign_urls || (url != NULL && atls_url_same_origin(e->directory_url, url))) {
        return 0;
    }
    atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:ca-url",
                   "the CA's %s URL \"%s\" is not https on the directory's origin (%s)",
                   field, atls_log_escape(url, esc, sizeof(esc)), e->directory_url);
    return -1;
}

static int
atls_acme_done_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    act->kind = ATLS_ACT_DONE;
    return ATLS_STEP_EMIT;
}

static int
atls_acme_failed_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    act->kind = ATLS_ACT_FAILED;
    return ATLS_STEP_EMIT;
}

/* ---- requests ------------------------------------------------------------ */

static void
atls_acme_emit(atls_acme_t *e, atls_action_t *act)
{
    atls_log(ATLS_LOG_DEBUG, "acme: %s %s", e->req.method, e->req.url);
    e->awaiting = 1;
    act->kind = ATLS_ACT_SEND;
    act->request = &e->req;
}

int
atls_acme_send_get(atls_acme_t *e, const char *method, const char *url,
                   atls_action_t *act)
{
    /* every field is checked where it arrives; this catches any other */
    if (atls_acme_url_ok(e, "request", url) != 0) {
        return ATLS_STEP_AGAIN;
    }
    atls_http_request_free(&e->req);
    memset(&e->req, 0, sizeof(e->req));
    e->req.method = method;
    e->req.url = atls_strdup(url);
    e->fetching_nonce = 0;
    atls_acme_emit(e, act);
    return ATLS_STEP_EMIT;
}

/* Signs and emits e->post_*, or first fetches a nonce when none is held. */
static int
atls_acme_emit_post(atls_acme_t *e, atls_action_t *act)
{
    char *jws;

    if (e->nonce == NULL) {
        if (e->dir.new_nonce == NULL) {
            atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:protocol",
                           "the CA's directory has no newNonce URL");
            return ATLS_STEP_AGAIN;
        }
        atls_acme_send_get(e, "HEAD", e->dir.new_nonce, act);
        e->fetching_nonce = 1;
        return ATLS_STEP_EMIT;
    }
    jws = atls_jws_sign(e->account_key, e->post_jwk ? NULL : e->account_url,
                        e->nonce, e->post_url, e->post_payload);
    /* A nonce is single-use whether or not the request gets through. */
    free(e->nonce);
    e->nonce = NULL;
    if (jws == NULL) {
        atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:internal",
                       "could not sign the request to %s (account key type?)",
                       e->post_url);
        return ATLS_STEP_AGAIN;
    }
    atls_http_request_free(&e->req);
    memset(&e->req, 0, sizeof(e->req));
    e->req.method = "POST";
    e->req.url = atls_strdup(e->post_url);
    e->req.body = jws;
    e->req.body_len = strlen(jws);
    e->req.content_type = "application/jose+json";
    e->req.accept = e->post_accept;
    e->fetching_nonce = 0;
    atls_acme_emit(e, act);
    return ATLS_STEP_EMIT;
}

int
atls_acme_send_post_accept(atls_acme_t *e, const char *url, const char *payload,
                           int jwk, const char *accept, atls_action_t *act)
{
    char *u, *p;

    if (atls_acme_url_ok(e, "request", url) != 0) {
        return ATLS_STEP_AGAIN;
    }
    u = atls_strdup(url);
    p = atls_strdup(payload);
    free(e->post_url);
    free(e->post_payload);
    e->post_url = u;
    e->post_payload = p;
    e->post_jwk = jwk;
    /* Kept with the POST so a badNonce resend asks for the same type. */
    e->post_accept = accept;
    return atls_acme_emit_post(e, act);
}

int
atls_acme_send_post(atls_acme_t *e, const char *url, const char *payload,
                    int jwk, atls_action_t *act)
{
    return atls_acme_send_post_accept(e, url, payload, jwk, NULL, act);
}

/* ---- JSON and polling helpers ------------------------------------------- */

json_t *
atls_acme_json_body(atls_acme_t *e, const atls_http_response_t *resp, const char *what)
{
    json_error_t jerr;
    json_t      *root = NULL;

    if (resp->body != NULL && resp->body_len > 0) {
        root = json_loadb(resp->body, resp->body_len, JSON_REJECT_DUPLICATES, &jerr);
    }
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                       "the CA's %s response is not a JSON object (HTTP %ld)",
                       what, resp->status);
        return NULL;
    }
    return root;
}

const char *
atls_acme_json_str(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

char *
atls_acme_json_dup(json_t *obj, const char *key)
{
    return atls_strdup(atls_acme_json_str(obj, key));
}

time_t
atls_acme_poll_at(const atls_http_response_t *resp, time_t now, unsigned polls)
{
    long ms = atls_acme_poll_delay_ms(resp, now, polls);

    return now + (ms + 999) / 1000;
}

long
atls_acme_poll_delay_ms(const atls_http_response_t *resp, time_t now, unsigned polls)
{
    time_t ra = resp ? atls_http_retry_after(resp->retry_after, now) : 0;
    long   delay;

    if (ra > now) {
        return (ra - now > ATLS_ACME_MAX_WAIT ? ATLS_ACME_MAX_WAIT : (long) (ra - now)) * 1000;
    }
    /*
     * 100, 200, 400, 800 ms, then 1, 1, 2, 2, 3, ... s: a CA that validates
     * in milliseconds would otherwise cost a whole second per order, which
     * adds up to minutes for a host with many certificates; a slow CA still
     * sees a gentle rate.
     */
    if (polls < 4) {
        return 100L << polls;
    }
    delay = 1 + (long) (polls - 4) / 2;
    return (delay > ATLS_ACME_POLL_CAP ? ATLS_ACME_POLL_CAP : delay) * 1000;
}

void
atls_acme_schedule_poll(atls_acme_t *e, const atls_http_response_t *resp, time_t now,
                        unsigned polls)
{
    e->wait_ms = atls_acme_poll_delay_ms(resp, now, polls);
    e->wait_until = now + (e->wait_ms + 999) / 1000;
}

int
atls_acme_act_wait(atls_acme_t *e, atls_action_t *act)
{
    act->kind = ATLS_ACT_WAIT;
    act->until = e->wait_until;
    act->delay_ms = e->wait_ms;
    e->wait_until = 0;
    e->wait_ms = 0;
    return ATLS_STEP_EMIT;
}

/* ---- the dispatcher ------------------------------------------------------ */

static int
atls_acme_is_2xx(const atls_http_response_t *resp)
{
    return !resp->transport_error && resp->status >= 200 && resp->status <= 299;
}

/* Handles the response to the outstanding request.  Returns ATLS_STEP_EMIT
 * when it already produced the next action (a badNonce resend). */
static int
atls_acme_take_response(atls_acme_t *e, const atls_http_response_t *resp, time_t now,
                        atls_action_t *act)
{
    const atls_acme_state_ops_t *ops = &atls_acme_states[e->state];

    e->awaiting = 0;
    if (resp == NULL) {
        atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:internal",
                       "the host gave no response to %s %s", e->req.method, e->req.url);
        return ATLS_STEP_AGAIN;
    }
    if (resp->replay_nonce != NULL && resp->replay_nonce[0] != '\0') {
        free(e->nonce);
        e->nonce = atls_strdup(resp->replay_nonce);
    }

    if (atls_acme_is_2xx(resp)) {
        e->bad_nonce = 0;
        if (e->fetching_nonce) {
            if (e->nonce == NULL) {
                atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                               "the CA's newNonce response has no Replay-Nonce");
                return ATLS_STEP_AGAIN;
            }
            return atls_acme_emit_post(e, act);
        }
        if (ops->on_response != NULL) {
            ops->on_response(e, resp, now);
        }
        return ATLS_STEP_AGAIN;
    }

    atls_problem_from_response(resp, now, &e->err);
    atls_log(ATLS_LOG_DEBUG, "acme: %s %s -> %ld %s", e->req.method, e->req.url,
             resp->status, e->err.type);

    if (e->err.cls == ATLS_ERR_RETRY_NOW && !e->fetching_nonce
        && strcmp(e->req.method, "POST") == 0)
    {
        if (++e->bad_nonce > ATLS_ACME_MAX_BAD_NONCE) {
            e->err.cls = ATLS_ERR_RETRY_LATER;
            atls_log(ATLS_LOG_WARN, "acme: the CA rejected %u nonces in a row",
                     e->bad_nonce);
            atls_acme_fail_err(e);
            return ATLS_STEP_AGAIN;
        }
        return atls_acme_emit_post(e, act);
    }
    if (e->err.cls == ATLS_ERR_RETRY_NOW) {
        e->err.cls = ATLS_ERR_RETRY_LATER;
    }
    if (!e->fetching_nonce && ops->on_problem != NULL && ops->on_problem(e, resp, now)) {
        return ATLS_STEP_AGAIN;
    }
    atls_acme_fail_err(e);
    return ATLS_STEP_AGAIN;
}

atls_action_kind_t
atls_acme_step(atls_acme_t *e, const atls_http_response_t *resp, time_t now,
               atls_action_t *act)
{
    int rc = ATLS_STEP_AGAIN;
    int guard;

    memset(act, 0, sizeof(*act));
    if (e->awaiting) {
        rc = atls_acme_take_response(e, resp, now, act);
    }
    /* Every state either emits or moves on; the bound only catches a bug. */
    for (guard = 0; rc == ATLS_STEP_AGAIN; guard++) {
        if (guard > 100000) {
            atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:internal",
                           "the ACME engine made no progress in state %s",
                           atls_acme_states[e->state].name);
            e->state = ATLS_ST_FAILED;
        }
        rc = atls_acme_states[e->state].act(e, now, act);
    }
    return act->kind;
}

void
atls_acme_challenge_result(atls_acme_t *e, int ok, const char *why)
{
    if (!e->setup_outstanding) {
        return;
    }
    e->setup_result = ok ? 1 : 0;
    snprintf(e->setup_why, sizeof(e->setup_why), "%s", why ? why : "");
}

/* ---- results ------------------------------------------------------------- */

const char *
atls_acme_result_account_url(const atls_acme_t *e)
{
    return e->account_url;
}

const char *
atls_acme_result_chain_pem(const atls_acme_t *e)
{
    return e->state == ATLS_ST_DONE ? e->chain_pem : NULL;
}

const char *
atls_acme_result_order_url(const atls_acme_t *e)
{
    return e->order_url;
}

int
atls_acme_result_ari(const atls_acme_t *e, time_t *start, time_t *end)
{
    if (e->state != ATLS_ST_DONE || !e->ari_have) {
        return -1;
    }
    *start = e->ari_start;
    *end = e->ari_end;
    return 0;
}

time_t
atls_acme_result_ari_retry_after(const atls_acme_t *e)
{
    return e->kind == ATLS_ACME_ARI ? e->ari_retry_after : 0;
}

const char *
atls_acme_result_ari_cert_id(const atls_acme_t *e)
{
    return e->kind == ATLS_ACME_ARI ? e->ari_cert_id : NULL;
}

const atls_error_t *
atls_acme_error(const atls_acme_t *e)
{
    return &e->err;
}

const char *
atls_acme_state_name(const atls_acme_t *e)
{
    return atls_acme_states[e->state].name;
}
