/*
 * ACME directory and account (RFC 8555 §7.1.1, §7.3): read the directory,
 * then find the account for our key or create it (terms of service,
 * contacts, external account binding).
 */
#include <stdlib.h>
#include <string.h>
#include "acme_internal.h"
#include "atls_jws.h"

void
atls_acme_directory_free(atls_directory_t *d)
{
    free(d->new_nonce);
    free(d->new_account);
    free(d->new_order);
    free(d->revoke_cert);
    free(d->renewal_info);
    free(d->tos);
    json_decref(d->profiles);
    memset(d, 0, sizeof(*d));
}

int
atls_acme_directory_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    return atls_acme_send_get(e, "GET", e->directory_url, act);
}

void
atls_acme_directory_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                                time_t now)
{
    atls_directory_t *d = &e->dir;
    json_t           *root, *meta, *profiles;
    const char       *missing = NULL;

    root = atls_acme_json_body(e, resp, "directory");
    if (root == NULL) {
        return;
    }
    atls_acme_directory_free(d);
    d->new_nonce = atls_acme_json_dup(root, "newNonce");
    d->new_account = atls_acme_json_dup(root, "newAccount");
    d->new_order = atls_acme_json_dup(root, "newOrder");
    d->revoke_cert = atls_acme_json_dup(root, "revokeCert");
    d->renewal_info = atls_acme_json_dup(root, "renewalInfo");
    meta = json_object_get(root, "meta");
    if (json_is_object(meta)) {
        d->tos = atls_acme_json_dup(meta, "termsOfService");
        d->eab_required = json_is_true(json_object_get(meta, "externalAccountRequired"));
        profiles = json_object_get(meta, "profiles");
        if (json_is_object(profiles)) {
            d->profiles = json_incref(profiles);
        }
    }
    json_decref(root);
    if ((d->new_nonce && atls_acme_url_ok(e, "newNonce", d->new_nonce) != 0)
        || (d->new_account && atls_acme_url_ok(e, "newAccount", d->new_account) != 0)
        || (d->new_order && atls_acme_url_ok(e, "newOrder", d->new_order) != 0)
        || (d->revoke_cert && atls_acme_url_ok(e, "revokeCert", d->revoke_cert) != 0)
        || (d->renewal_info && atls_acme_url_ok(e, "renewalInfo", d->renewal_info) != 0))
    {
        return;
    }

    switch (e->kind) {
    case ATLS_ACME_ORDER:
        missing = d->new_nonce == NULL ? "newNonce"
                  : d->new_account == NULL ? "newAccount"
                  : d->new_order == NULL ? "newOrder" : NULL;
        break;
    case ATLS_ACME_REVOKE:
        missing = d->new_nonce == NULL ? "newNonce"
                  : d->revoke_cert == NULL ? "revokeCert" : NULL;
        break;
    case ATLS_ACME_ARI:
        break;
    }
    if (missing != NULL) {
        atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:protocol",
                       "the ACME directory %s has no %s URL (is it an ACME v2 directory?)",
                       e->directory_url, missing);
        return;
    }
    switch (e->kind) {
    case ATLS_ACME_ORDER:
        atls_acme_set_state(e, ATLS_ST_ACCOUNT);
        break;
    case ATLS_ACME_REVOKE:
        atls_acme_set_state(e, ATLS_ST_REVOKE);
        break;
    case ATLS_ACME_ARI:
        atls_acme_set_state(e, ATLS_ST_RENEWAL_INFO);
        break;
    }
}

int
atls_acme_account_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    if (e->account_url != NULL) {
        atls_acme_set_state(e, ATLS_ST_NEW_ORDER);
    } else if (e->account_known_key) {
        atls_acme_set_state(e, ATLS_ST_ACCOUNT_LOOKUP);
    } else {
        atls_acme_set_state(e, ATLS_ST_ACCOUNT_CREATE);
    }
    return ATLS_STEP_AGAIN;
}

/* Location of a newAccount response is the account URL (the kid). */
static void
atls_acme_account_learn(atls_acme_t *e, const atls_http_response_t *resp)
{
    json_t     *root;
    const char *status;

    if (resp->location == NULL || resp->location[0] == '\0') {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                       "the CA's newAccount response has no Location");
        return;
    }
    if (atls_acme_url_ok(e, "account (Location)", resp->location) != 0) {
        return;
    }
    /* A body is optional for us, but when present a dead account must stop
     * here rather than fail obscurely at newOrder. */
    if (resp->body != NULL && resp->body_len > 0) {
        root = json_loadb(resp->body, resp->body_len, 0, NULL);
        status = atls_acme_json_str(root, "status");
        if (status != NULL && strcmp(status, "valid") != 0) {
            atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:account",
                           "the ACME account %s is %s", resp->location, status);
            json_decref(root);
            return;
        }
        json_decref(root);
    }
    free(e->account_url);
    e->account_url = atls_strdup(resp->location);
    atls_log(ATLS_LOG_INFO, "acme: using account %s", e->account_url);
    atls_acme_set_state(e, ATLS_ST_NEW_ORDER);
}

int
atls_acme_lookup_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    return atls_acme_send_post(e, e->dir.new_account, "{\"onlyReturnExisting\":true}",
                               1, act);
}

void
atls_acme_lookup_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                             time_t now)
{
    atls_acme_account_learn(e, resp);
}

int
atls_acme_lookup_on_problem(atls_acme_t *e, const atls_http_response_t *resp,
                            time_t now)
{
    if (strcmp(e->err.type, "urn:ietf:params:acme:error:accountDoesNotExist") == 0) {
        atls_log(ATLS_LOG_INFO, "acme: no account for this key yet; creating one");
        memset(&e->err, 0, sizeof(e->err));
        atls_acme_set_state(e, ATLS_ST_ACCOUNT_CREATE);
        return 1;
    }
    return 0;
}

static char *
atls_acme_account_payload(atls_acme_t *e)
{
    json_t *root, *contact, *eab;
    char   *eab_text, *out, *mail;
    size_t  i;

    root = json_object();
    json_object_set_new(root, "termsOfServiceAgreed", json_boolean(e->agree_tos));
    if (e->n_contact > 0) {
        contact = json_array();
        for (i = 0; i < e->n_contact; i++) {
            if (strchr(e->contact[i], ':') != NULL) {
                json_array_append_new(contact, json_string(e->contact[i]));
                continue;
            }
            mail = malloc(strlen(e->contact[i]) + sizeof("mailto:"));
            if (mail == NULL) {
                json_decref(contact);
                json_decref(root);
                return NULL;
            }
            strcpy(mail, "mailto:");
            strcat(mail, e->contact[i]);
            json_array_append_new(contact, json_string(mail));
            free(mail);
        }
        json_object_set_new(root, "contact", contact);
    }
    if (e->eab_kid != NULL) {
        eab_text = atls_jws_eab(e->eab_kid, e->eab_hmac, e->account_key,
                                e->dir.new_account);
        eab = eab_text ? json_loads(eab_text, 0, NULL) : NULL;
        free(eab_text);
        if (eab == NULL) {
            json_decref(root);
            atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:config",
                           "the external account binding HMAC key is not valid base64url");
            return NULL;
        }
        json_object_set_new(root, "externalAccountBinding", eab);
    }
    out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (out == NULL) {
        atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:internal",
                       "cannot encode a contact address as JSON (not UTF-8?)");
    }
    return out;
}

int
atls_acme_create_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    char *payload;
    int   rc;

    if (e->dir.tos != NULL && !e->agree_tos) {
        atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:tos",
                       "the CA requires agreeing to its terms of service: %s",
                       e->dir.tos);
        return ATLS_STEP_AGAIN;
    }
    if (e->dir.eab_required && e->eab_kid == NULL) {
        atls_acme_fail(e, ATLS_ERR_PERMANENT,
                       "urn:ietf:params:acme:error:externalAccountRequired",
                       "the CA requires an external account binding: configure the "
                       "EAB key id and HMAC key the CA gave you");
        return ATLS_STEP_AGAIN;
    }
    payload = atls_acme_account_payload(e);
    if (payload == NULL) {
        if (e->state == ATLS_ST_ACCOUNT_CREATE) {
            atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:internal", "out of memory");
        }
        return ATLS_STEP_AGAIN;
    }
    rc = atls_acme_send_post(e, e->dir.new_account, payload, 1, act);
    free(payload);
    return rc;
}

void
atls_acme_create_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                             time_t now)
{
    atls_acme_account_learn(e, resp);
}
