/*
 * ACME order (RFC 8555 §7.4): newOrder, order polling and finalize with a
 * CSR.  Authorizations and challenges are in acme_authz.c, the certificate
 * download and alternate chains in acme_download.c.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "acme_internal.h"
#include "atls_b64.h"
#include "atls_crypto.h"
#include "atls_jws.h"
#include "atls_problem.h"

atls_acme_t *
atls_acme_order_new(const atls_order_params_t *p, atls_error_t *err)
{
    atls_acme_t *e;
    size_t       i;

    if (p->directory_url == NULL || p->account_key == NULL || p->cert_key == NULL
        || p->names == NULL || p->n_names == 0)
    {
        atls_error_set(err, ATLS_ERR_PERMANENT, "autotls:config",
                       "an order needs a directory URL, an account key, a "
                       "certificate key and at least one name");
        return NULL;
    }
    if ((p->eab_kid == NULL) != (p->eab_hmac_b64url == NULL)) {
        atls_error_set(err, ATLS_ERR_PERMANENT, "autotls:config",
                       "external account binding needs both a key id and an HMAC key");
        return NULL;
    }
    if (atls_jws_alg(p->account_key) == NULL) {
        atls_error_set(err, ATLS_ERR_PERMANENT, "autotls:config",
                       "the account key must be P-256, P-384 or RSA");
        return NULL;
    }
    if ((unsigned) p->challenge > ATLS_CHAL_DNS01) {
        atls_error_set(err, ATLS_ERR_PERMANENT, "autotls:config",
                       "unknown challenge type %d", (int) p->challenge);
        return NULL;
    }
    for (i = 0; i < p->n_names; i++) {
        if (p->names[i] == NULL || p->names[i][0] == '\0') {
            atls_error_set(err, ATLS_ERR_PERMANENT, "autotls:config",
                           "empty name in the order");
            return NULL;
        }
    }
    e = atls_acme_alloc(ATLS_ACME_ORDER, p->directory_url);
    if (e == NULL) {
        atls_error_set(err, ATLS_ERR_RETRY_LATER, "autotls:internal", "out of memory");
        return NULL;
    }
    e->account_key = p->account_key;
    e->account_url = atls_strdup(p->account_url);
    e->account_known_key = p->account_known_key;
    if (p->n_contact > 0 && p->contact != NULL) {
        e->contact = atls_strv_dup((char *const *) p->contact, p->n_contact);
        e->n_contact = p->n_contact;
    }
    e->agree_tos = p->agree_tos;
    e->eab_kid = atls_strdup(p->eab_kid);
    e->eab_hmac = atls_strdup(p->eab_hmac_b64url);
    e->names = atls_strv_dup((char *const *) p->names, p->n_names);
    e->n_names = p->n_names;
    e->chal_type = p->challenge;
    e->cert_key = p->cert_key;
    e->csr_with_cn = p->csr_with_cn;
    e->must_staple = p->must_staple;
    e->profile = atls_strdup(p->profile);
    e->profile_required = p->profile_required;
    e->preferred_chain = atls_strdup(p->preferred_chain);
    e->replaces = atls_strdup(p->replaces);
    if (e->names == NULL) {
        atls_acme_free(e);
        atls_error_set(err, ATLS_ERR_RETRY_LATER, "autotls:internal", "out of memory");
        return NULL;
    }
    if (err != NULL) {
        memset(err, 0, sizeof(*err));
    }
    return e;
}

int
atls_acme_name_index(const atls_acme_t *e, const char *type, const char *value,
                     int wildcard)
{
    size_t i;
    int    ip;

    if (type == NULL || value == NULL) {
        return -1;
    }
    if (strcmp(type, "ip") == 0) {
        if (wildcard || !atls_ident_is_ip(value)) {
            return -1;
        }
        ip = 1;
    } else if (strcmp(type, "dns") == 0) {
        if (!atls_ident_is_dns(value, 0)) {
            return -1;
        }
        ip = 0;
    } else {
        return -1;
    }
    for (i = 0; i < e->n_names; i++) {
        const char *n = e->names[i];

        if (ip) {
            if (atls_ident_ip_equal(n, value)) {
                return (int) i;
            }
            continue;
        }
        if (atls_ident_is_ip(n)) {
            continue;
        }
        if (wildcard) {
            if (strncmp(n, "*.", 2) == 0 && strcasecmp(n + 2, value) == 0) {
                return (int) i;
            }
        } else if (strcasecmp(n, value) == 0) {
            return (int) i;
        }
    }
    return -1;
}

/* The order must be for exactly the names we asked for: a CA that swapped,
 * dropped or added one would have us validate or deploy the wrong names. */
static int
atls_acme_order_ids_match(atls_acme_t *e, json_t *order)
{
    json_t        *ids = json_object_get(order, "identifiers"), *id;
    const char    *type, *value;
    char           esc[128];
    size_t         i;
    int            idx;
    unsigned char *hit;

    if (!json_is_array(ids) || json_array_size(ids) != e->n_names) {
        atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:ca-identifier",
                       "the CA's order %s lists %zu identifiers, %zu were ordered",
                       e->order_url ? e->order_url : "(new)",
                       json_is_array(ids) ? json_array_size(ids) : (size_t) 0, e->n_names);
        return -1;
    }
    hit = calloc(e->n_names, 1);
    if (hit == NULL) {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:internal", "out of memory");
        return -1;
    }
    json_array_foreach(ids, i, id) {
        type = atls_acme_json_str(id, "type");
        value = atls_acme_json_str(id, "value");
        /* orders name wildcards with their "*." (RFC 8555 §7.1.3) */
        if (type != NULL && strcmp(type, "dns") == 0 && value != NULL
            && strncmp(value, "*.", 2) == 0)
        {
            idx = atls_acme_name_index(e, type, value + 2, 1);
        } else {
            idx = atls_acme_name_index(e, type, value, 0);
        }
        if (idx < 0 || hit[idx]) {
            free(hit);
            atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:ca-identifier",
                           "the CA's order lists %s identifier \"%s\", which was not "
                           "ordered", type ? type : "an untyped",
                           atls_log_escape(value, esc, sizeof(esc)));
            return -1;
        }
        hit[idx] = 1;
    }
    /* as many entries as names and none twice: the sets are equal */
    free(hit);
    return 0;
}

/* Whether to send "profile": only when the CA advertises it, so a CA without
 * profile support still issues (unless the operator insists). */
static int
atls_acme_profile_decide(atls_acme_t *e, int *send)
{
    *send = 0;
    if (e->profile == NULL) {
        return 0;
    }
    if (e->dir.profiles != NULL && json_object_get(e->dir.profiles, e->profile) != NULL) {
        *send = 1;
        return 0;
    }
    if (e->profile_required) {
        atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:profile",
                       "the CA does not offer the certificate profile \"%s\"%s",
                       e->profile, e->dir.profiles ? "" : " (it advertises no profiles)");
        return -1;
    }
    atls_log(ATLS_LOG_INFO, "acme: the CA does not offer profile \"%s\"; "
             "ordering without a profile", e->profile);
    return 0;
}

int
atls_acme_new_order_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    json_t *root, *ids, *id;
    char   *payload;
    size_t  i;
    int     send_profile, rc;

    if (atls_acme_profile_decide(e, &send_profile) != 0) {
        return ATLS_STEP_AGAIN;
    }
    root = json_object();
    ids = json_array();
    for (i = 0; i < e->n_names; i++) {
        id = json_object();
        json_object_set_new(id, "type", json_string(atls_ident_is_ip(e->names[i])
                                                    ? "ip" : "dns"));
        json_object_set_new(id, "value", json_string(e->names[i]));
        json_array_append_new(ids, id);
    }
    json_object_set_new(root, "identifiers", ids);
    if (send_profile) {
        json_object_set_new(root, "profile", json_string(e->profile));
    }
    if (e->replaces != NULL && e->dir.renewal_info != NULL) {
        json_object_set_new(root, "replaces", json_string(e->replaces));
    }
    payload = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (payload == NULL) {
        atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:config",
                       "cannot encode the order (a name is not valid UTF-8?)");
        return ATLS_STEP_AGAIN;
    }
    rc = atls_acme_send_post(e, e->dir.new_order, payload, 0, act);
    free(payload);
    return rc;
}

static void
atls_acme_order_invalid(atls_acme_t *e, json_t *order)
{
    json_t *error = json_object_get(order, "error");
    char   *text;

    if (json_is_object(error) && (text = json_dumps(error, JSON_COMPACT)) != NULL) {
        atls_problem_from_json(text, strlen(text), 0, &e->err);
        free(text);
        if (e->err.cls != ATLS_ERR_RETRY_LATER) {
            e->err.cls = ATLS_ERR_PERMANENT;
        }
        atls_acme_fail_err(e);
        return;
    }
    atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:order-invalid",
                   "the CA marked the order %s invalid", e->order_url);
}

static int
atls_acme_order_take_authz(atls_acme_t *e, json_t *order)
{
    json_t *list = json_object_get(order, "authorizations"), *u;
    size_t  i, n;

    if (e->authz != NULL) {
        return 0;
    }
    n = json_is_array(list) ? json_array_size(list) : 0;
    if (n == 0 || n > ATLS_ACME_MAX_AUTHZ) {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                       "the CA's order has %zu authorizations", n);
        return -1;
    }
    e->authz = calloc(n, sizeof(*e->authz));
    if (e->authz == NULL) {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:internal", "out of memory");
        return -1;
    }
    e->n_authz = n;
    json_array_foreach(list, i, u) {
        if (!json_is_string(u)) {
            atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                           "the CA's order lists a non-string authorization");
            return -1;
        }
        if (atls_acme_url_ok(e, "authorization", json_string_value(u)) != 0) {
            return -1;
        }
        e->authz[i].url = atls_strdup(json_string_value(u));
    }
    return 0;
}

/* Acts on an order object from newOrder, finalize or a poll. */
static void
atls_acme_order_absorb(atls_acme_t *e, const atls_http_response_t *resp, time_t now,
                       json_t *order)
{
    const char *status = atls_acme_json_str(order, "status");
    const char *s;

    if (status == NULL) {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                       "the CA's order has no status");
        return;
    }
    if (atls_acme_order_ids_match(e, order) != 0) {
        return;
    }
    free(e->order_status);
    e->order_status = atls_strdup(status);
    if ((s = atls_acme_json_str(order, "finalize")) != NULL) {
        if (atls_acme_url_ok(e, "finalize", s) != 0) {
            return;
        }
        free(e->finalize_url);
        e->finalize_url = atls_strdup(s);
    }
    if ((s = atls_acme_json_str(order, "certificate")) != NULL) {
        if (atls_acme_url_ok(e, "certificate", s) != 0) {
            return;
        }
        free(e->cert_url);
        e->cert_url = atls_strdup(s);
    }

    if (strcmp(status, "invalid") == 0) {
        atls_acme_order_invalid(e, order);
        return;
    }
    if (strcmp(status, "valid") == 0) {
        if (e->cert_url == NULL) {
            atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                           "the CA's valid order has no certificate URL");
            return;
        }
        atls_acme_set_state(e, ATLS_ST_DOWNLOAD);
        return;
    }
    if (strcmp(status, "ready") == 0 && !e->finalized) {
        if (e->finalize_url == NULL) {
            atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                           "the CA's order has no finalize URL");
            return;
        }
        atls_acme_set_state(e, ATLS_ST_FINALIZE);
        return;
    }
    if (strcmp(status, "pending") == 0 && e->state == ATLS_ST_NEW_ORDER) {
        if (atls_acme_order_take_authz(e, order) == 0) {
            e->cur = 0;
            atls_acme_set_state(e, ATLS_ST_AUTHZ_FETCH);
        }
        return;
    }
    if (strcmp(status, "pending") != 0 && strcmp(status, "ready") != 0
        && strcmp(status, "processing") != 0)
    {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                       "the CA's order has an unknown status \"%.64s\"", status);
        return;
    }
    /* pending after our authorizations settled, ready after finalize, or
     * processing: the CA is still working; poll the order. */
    if (e->order_url == NULL) {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                       "the CA's newOrder response has no Location");
        return;
    }
    atls_acme_set_state(e, ATLS_ST_ORDER_POLL);
    if (++e->polls > ATLS_ACME_MAX_POLLS) {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:timeout",
                       "the order %s stayed %s for %d polls", e->order_url, status,
                       ATLS_ACME_MAX_POLLS);
        return;
    }
    atls_acme_schedule_poll(e, resp, now, e->polls - 1);
}

void
atls_acme_new_order_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                time_t now)
{
    json_t *order;

    if (resp->location == NULL || resp->location[0] == '\0') {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                       "the CA's newOrder response has no Location");
        return;
    }
    if (atls_acme_url_ok(e, "order (Location)", resp->location) != 0
        || (order = atls_acme_json_body(e, resp, "newOrder")) == NULL)
    {
        return;
    }
    free(e->order_url);
    e->order_url = atls_strdup(resp->location);
    atls_log(ATLS_LOG_INFO, "acme: order %s", e->order_url);
    atls_acme_order_absorb(e, resp, now, order);
    json_decref(order);
}

void
atls_acme_order_after_authz(atls_acme_t *e)
{
    atls_acme_set_state(e, ATLS_ST_ORDER_POLL);
}

int
atls_acme_order_poll_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    if (e->wait_until != 0) {
        return atls_acme_act_wait(e, act);
    }
    return atls_acme_send_post(e, e->order_url, NULL, 0, act);
}

void
atls_acme_order_poll_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                 time_t now)
{
    json_t *order = atls_acme_json_body(e, resp, "order");

    if (order != NULL) {
        atls_acme_order_absorb(e, resp, now, order);
        json_decref(order);
    }
}

int
atls_acme_finalize_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    unsigned char *der;
    size_t         der_len = 0;
    char          *csr, *payload;
    json_t        *root;
    int            rc;

    der = atls_csr_make_flags(e->cert_key, (const char *const *) e->names, e->n_names,
                              (e->csr_with_cn ? ATLS_CSR_CN : 0)
                              | (e->must_staple ? ATLS_CSR_MUST_STAPLE : 0), &der_len);
    if (der == NULL) {
        atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:csr",
                       "could not make a CSR for %s", e->names[0]);
        return ATLS_STEP_AGAIN;
    }
    csr = atls_b64url_encode(der, der_len);
    free(der);
    root = json_object();
    json_object_set_new(root, "csr", json_string(csr ? csr : ""));
    free(csr);
    payload = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (payload == NULL) {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:internal", "out of memory");
        return ATLS_STEP_AGAIN;
    }
    rc = atls_acme_send_post(e, e->finalize_url, payload, 0, act);
    free(payload);
    return rc;
}

void
atls_acme_finalize_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                               time_t now)
{
    json_t *order = atls_acme_json_body(e, resp, "finalize");

    e->finalized = 1;
    if (order != NULL) {
        atls_acme_order_absorb(e, resp, now, order);
        json_decref(order);
    }
}
