/*
 * ACME authorizations and challenges (RFC 8555 §7.5, §8): fetch every
 * authorization, publish all pending challenges, answer them all, then poll
 * each one; withdraw each challenge as soon as its authorization settles.
 * Publishing everything before answering lets the CA validate many names in
 * parallel instead of one round trip after another.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "acme_internal.h"
#include "atls_b64.h"
#include "atls_jws.h"
#include "atls_problem.h"

void
atls_acme_authz_free(atls_authz_t *a, size_t n)
{
    size_t i;

    if (a == NULL) {
        return;
    }
    for (i = 0; i < n; i++) {
        free(a[i].url);
        free(a[i].status);
        free(a[i].chal_url);
        free(a[i].chal_status);
        free(a[i].chal.identifier);
        free(a[i].chal.identifier_type);
        free(a[i].chal.token);
        free(a[i].chal.key_authz);
        free(a[i].chal.dns_name);
        free(a[i].chal.dns_value);
    }
    free(a);
}

/* The CA's reason an authorization failed: the error of our challenge (or
 * of any challenge, or of the authorization), prefixed with the name. */
static void
atls_acme_authz_failed(atls_acme_t *e, json_t *authz, const char *status)
{
    const char *want = atls_challenge_type_name(e->chal_type);
    const char *ident = atls_acme_json_str(json_object_get(authz, "identifier"), "value");
    json_t     *chals = json_object_get(authz, "challenges"), *c, *error = NULL;
    char       *text, detail[sizeof(e->err.detail)];
    size_t      i;

    json_array_foreach(chals, i, c) {
        json_t *ce = json_object_get(c, "error");
        const char *t = atls_acme_json_str(c, "type");

        if (json_is_object(ce) && (error == NULL || (t && strcmp(t, want) == 0))) {
            error = ce;
        }
    }
    if (error == NULL && json_is_object(json_object_get(authz, "error"))) {
        error = json_object_get(authz, "error");
    }
    if (error == NULL || (text = json_dumps(error, JSON_COMPACT)) == NULL) {
        atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:authorization",
                       "the authorization for %s is %s", ident ? ident : "?", status);
        return;
    }
    atls_problem_from_json(text, strlen(text), 0, &e->err);
    free(text);
    if (snprintf(detail, sizeof(detail), "%s: %s", ident ? ident : "?", e->err.detail)
        >= (int) sizeof(detail))
    {
        memcpy(detail + sizeof(detail) - 4, "...", 4);
    }
    memcpy(e->err.detail, detail, sizeof(detail));
    atls_log(ATLS_LOG_WARN, "acme: authorization for %s %s: %s %s",
             ident ? ident : "?", status, e->err.type, e->err.detail);
    atls_acme_fail_err(e);
}

/* Builds a->chal from the challenge object of the configured type. */
static int
atls_acme_chal_build(atls_acme_t *e, atls_authz_t *a, json_t *authz, json_t *chal)
{
    json_t     *id = json_object_get(authz, "identifier");
    const char *value = atls_acme_json_str(id, "value");
    const char *itype = atls_acme_json_str(id, "type");
    const char *token = atls_acme_json_str(chal, "token");
    const char *url = atls_acme_json_str(chal, "url");
    const char *cstatus = atls_acme_json_str(chal, "status");
    size_t      n;

    if (value == NULL || itype == NULL || url == NULL) {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                       "the CA's authorization %s lacks an identifier or challenge URL",
                       a->url);
        return -1;
    }
    if (token == NULL || !atls_b64url_is_token(token, strlen(token))) {
        atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:protocol",
                       "the CA's challenge token for %s is not base64url", value);
        return -1;
    }
    if (atls_acme_url_ok(e, "challenge", url) != 0) {
        return -1;
    }
    /* value was checked against the ordered names by atls_acme_authz_ours */
    a->chal.type = e->chal_type;
    a->chal.identifier = atls_strdup(value);
    a->chal.identifier_type = atls_strdup(itype);
    a->chal.token = atls_strdup(token);
    a->chal.key_authz = atls_key_authorization(token, e->account_key);
    if (a->chal.key_authz == NULL) {
        atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:internal",
                       "cannot compute the key authorization (account key?)");
        return -1;
    }
    if (e->chal_type == ATLS_CHAL_DNS01) {
        n = strlen(value) + sizeof("_acme-challenge.");
        a->chal.dns_name = malloc(n);
        a->chal.dns_value = atls_dns01_txt_value(a->chal.key_authz);
        if (a->chal.dns_name == NULL || a->chal.dns_value == NULL) {
            atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:internal", "out of memory");
            return -1;
        }
        snprintf(a->chal.dns_name, n, "_acme-challenge.%s", value);
    }
    a->chal_url = atls_strdup(url);
    a->chal_status = atls_strdup(cstatus ? cstatus : "pending");
    a->needs_chal = 1;
    return 0;
}

static void
atls_acme_authz_pending(atls_acme_t *e, atls_authz_t *a, json_t *authz)
{
    const char *want = atls_challenge_type_name(e->chal_type);
    const char *ident = atls_acme_json_str(json_object_get(authz, "identifier"), "value");
    json_t     *chals = json_object_get(authz, "challenges"), *c;
    char        offered[256] = "";
    size_t      i;

    json_array_foreach(chals, i, c) {
        const char *t = atls_acme_json_str(c, "type");

        if (t == NULL) {
            continue;
        }
        if (strcmp(t, want) == 0) {
            if (atls_acme_chal_build(e, a, authz, c) == 0) {
                e->cur++;
            }
            return;
        }
        if (strlen(offered) + strlen(t) + 3 < sizeof(offered)) {
            strcat(offered, offered[0] ? ", " : "");
            strcat(offered, t);
        }
    }
    atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:challenge-type",
                   "the CA offers no %s challenge for %s (offered: %s)", want,
                   ident ? ident : a->url, offered[0] ? offered : "none");
}

int
atls_acme_authz_fetch_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    size_t i;

    if (e->cur < e->n_authz) {
        return atls_acme_send_post(e, e->authz[e->cur].url, NULL, 0, act);
    }
    for (i = 0; i < e->n_authz; i++) {
        if (e->authz[i].needs_chal) {
            atls_acme_set_state(e, ATLS_ST_CHAL_SETUP);
            return ATLS_STEP_AGAIN;
        }
    }
    atls_acme_order_after_authz(e);
    return ATLS_STEP_AGAIN;
}

/* An authorization must be for one of the names ordered, in strict syntax
 * (RFC 8555 §7.1.4: a wildcard one names the base domain and says
 * "wildcard": true).  Anything else is refused before its challenge is
 * published, handed to a hook or logged unescaped. */
static int
atls_acme_authz_ours(atls_acme_t *e, atls_authz_t *a, json_t *authz)
{
    json_t     *id = json_object_get(authz, "identifier");
    const char *type = atls_acme_json_str(id, "type");
    const char *value = atls_acme_json_str(id, "value");
    int         wildcard = json_is_true(json_object_get(authz, "wildcard"));
    char        esc[128];

    if (atls_acme_name_index(e, type, value, wildcard) >= 0) {
        return 0;
    }
    atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:ca-identifier",
                   "the CA's authorization %s is for %s identifier \"%s\"%s, which "
                   "was not ordered or is not a valid name", a->url,
                   type ? type : "an untyped", atls_log_escape(value, esc, sizeof(esc)),
                   wildcard ? " (wildcard)" : "");
    return -1;
}

void
atls_acme_authz_fetch_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                  time_t now)
{
    atls_authz_t *a = &e->authz[e->cur];
    json_t       *authz = atls_acme_json_body(e, resp, "authorization");
    const char   *status;

    if (authz == NULL) {
        return;
    }
    status = atls_acme_json_str(authz, "status");
    free(a->status);
    a->status = atls_strdup(status);
    if (atls_acme_authz_ours(e, a, authz) != 0) {
        /* refused whatever its status */
    } else if (status == NULL) {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                       "the CA's authorization %s has no status", a->url);
    } else if (strcmp(status, "valid") == 0) {
        a->settled = 1;
        e->cur++;
    } else if (strcmp(status, "pending") == 0) {
        atls_acme_authz_pending(e, a, authz);
    } else {
        atls_acme_authz_failed(e, authz, status);
    }
    json_decref(authz);
}

int
atls_acme_chal_setup_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    atls_authz_t *a;
    size_t        i;

    if (e->setup_outstanding) {
        a = &e->authz[e->cur];
        e->setup_outstanding = 0;
        if (e->setup_result < 0) {
            atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:internal",
                           "the host did not report whether the %s challenge for %s "
                           "was published", atls_challenge_type_name(a->chal.type),
                           a->chal.identifier);
            return ATLS_STEP_AGAIN;
        }
        if (e->setup_result == 0) {
            atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:challenge-setup",
                           "could not publish the %s challenge for %s: %s",
                           atls_challenge_type_name(a->chal.type), a->chal.identifier,
                           e->setup_why[0] ? e->setup_why : "no reason given");
            return ATLS_STEP_AGAIN;
        }
        a->setup_done = 1;
        e->setup_result = -1;
    }
    for (i = 0; i < e->n_authz; i++) {
        a = &e->authz[i];
        if (a->needs_chal && !a->setup_done) {
            e->cur = i;
            e->setup_outstanding = 1;
            e->setup_result = -1;
            e->setup_why[0] = '\0';
            atls_log(ATLS_LOG_DEBUG, "acme: set up %s for %s",
                     atls_challenge_type_name(a->chal.type), a->chal.identifier);
            act->kind = ATLS_ACT_SETUP;
            act->challenge = &a->chal;
            return ATLS_STEP_EMIT;
        }
    }
    atls_acme_set_state(e, ATLS_ST_CHAL_RESPOND);
    return ATLS_STEP_AGAIN;
}

int
atls_acme_chal_respond_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    atls_authz_t *a;
    size_t        i;

    for (i = 0; i < e->n_authz; i++) {
        a = &e->authz[i];
        if (!a->needs_chal || a->responded) {
            continue;
        }
        /* A challenge already processing (an earlier attempt answered it)
         * must not be answered twice; just poll it. */
        if (a->chal_status != NULL && strcmp(a->chal_status, "pending") != 0) {
            a->responded = 1;
            continue;
        }
        e->cur = i;
        return atls_acme_send_post(e, a->chal_url, "{}", 0, act);
    }
    atls_acme_set_state(e, ATLS_ST_AUTHZ_POLL);
    return ATLS_STEP_AGAIN;
}

void
atls_acme_chal_respond_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                   time_t now)
{
    e->authz[e->cur].responded = 1;
}

int
atls_acme_authz_poll_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    size_t i;

    for (i = 0; i < e->n_authz; i++) {
        if (e->authz[i].needs_chal && !e->authz[i].settled) {
            e->cur = i;
            if (e->wait_until != 0) {
                return atls_acme_act_wait(e, act);
            }
            return atls_acme_send_post(e, e->authz[i].url, NULL, 0, act);
        }
    }
    atls_acme_order_after_authz(e);
    return ATLS_STEP_AGAIN;
}

void
atls_acme_authz_poll_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                 time_t now)
{
    atls_authz_t *a = &e->authz[e->cur];
    json_t       *authz = atls_acme_json_body(e, resp, "authorization");
    const char   *status;

    if (authz == NULL) {
        return;
    }
    status = atls_acme_json_str(authz, "status");
    if (atls_acme_authz_ours(e, a, authz) != 0) {
        /* the CA changed the identifier while we polled */
    } else if (status == NULL) {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                       "the CA's authorization %s has no status", a->url);
    } else if (strcmp(status, "valid") == 0) {
        a->settled = 1;
        atls_log(ATLS_LOG_INFO, "acme: %s validated %s",
                 atls_challenge_type_name(a->chal.type), a->chal.identifier);
        atls_acme_set_state(e, ATLS_ST_AUTHZ_TEARDOWN);
    } else if (strcmp(status, "pending") == 0 || strcmp(status, "processing") == 0) {
        if (++e->polls > ATLS_ACME_MAX_POLLS) {
            atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:timeout",
                           "the authorization for %s stayed %s for %d polls",
                           a->chal.identifier, status, ATLS_ACME_MAX_POLLS);
        } else {
            atls_acme_schedule_poll(e, resp, now, e->polls - 1);
        }
    } else {
        atls_acme_authz_failed(e, authz, status);
    }
    json_decref(authz);
}

int
atls_acme_authz_teardown_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    atls_authz_t *a = &e->authz[e->cur];

    a->torn_down = 1;
    atls_acme_set_state(e, ATLS_ST_AUTHZ_POLL);
    act->kind = ATLS_ACT_TEARDOWN;
    act->challenge = &a->chal;
    return ATLS_STEP_EMIT;
}

int
atls_acme_cleanup_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    size_t i;

    for (i = 0; i < e->n_authz; i++) {
        if (e->authz[i].setup_done && !e->authz[i].torn_down) {
            e->authz[i].torn_down = 1;
            act->kind = ATLS_ACT_TEARDOWN;
            act->challenge = &e->authz[i].chal;
            return ATLS_STEP_EMIT;
        }
    }
    e->state = ATLS_ST_FAILED;
    return ATLS_STEP_AGAIN;
}
