/*
 * ACME certificate revocation (RFC 8555 §7.6), signed by the account that
 * ordered the certificate (kid).
 */
#include <stdlib.h>
#include <string.h>
#include <openssl/x509.h>
#include "acme_internal.h"
#include "atls_b64.h"

atls_acme_t *
atls_acme_revoke_new(const char *directory_url, EVP_PKEY *account_key,
                     const char *account_url, X509 *cert, int reason,
                     atls_error_t *err)
{
    atls_acme_t   *e;
    unsigned char *der = NULL;
    int            len;

    if (directory_url == NULL || account_key == NULL || account_url == NULL
        || cert == NULL)
    {
        atls_error_set(err, ATLS_ERR_PERMANENT, "autotls:config",
                       "revocation needs a directory URL, the account key, the "
                       "account URL and the certificate");
        return NULL;
    }
    if (reason < 0 || reason > 10 || reason == 7) {
        atls_error_set(err, ATLS_ERR_PERMANENT, "autotls:config",
                       "%d is not a CRL reason code", reason);
        return NULL;
    }
    len = i2d_X509(cert, &der);
    if (len <= 0) {
        atls_error_set(err, ATLS_ERR_PERMANENT, "autotls:config",
                       "cannot encode the certificate to revoke");
        return NULL;
    }
    e = atls_acme_alloc(ATLS_ACME_REVOKE, directory_url);
    if (e == NULL) {
        OPENSSL_free(der);
        atls_error_set(err, ATLS_ERR_RETRY_LATER, "autotls:internal", "out of memory");
        return NULL;
    }
    e->cert_der = malloc((size_t) len);
    if (e->cert_der == NULL) {
        OPENSSL_free(der);
        atls_acme_free(e);
        atls_error_set(err, ATLS_ERR_RETRY_LATER, "autotls:internal", "out of memory");
        return NULL;
    }
    memcpy(e->cert_der, der, (size_t) len);
    e->cert_der_len = (size_t) len;
    OPENSSL_free(der);
    e->account_key = account_key;
    e->account_url = atls_strdup(account_url);
    e->reason = reason;
    if (err != NULL) {
        memset(err, 0, sizeof(*err));
    }
    return e;
}

int
atls_acme_revoke_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    json_t *root;
    char   *cert, *payload;
    int     rc;

    cert = atls_b64url_encode(e->cert_der, e->cert_der_len);
    if (cert == NULL) {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:internal", "out of memory");
        return ATLS_STEP_AGAIN;
    }
    root = json_object();
    json_object_set_new(root, "certificate", json_string(cert));
    json_object_set_new(root, "reason", json_integer(e->reason));
    free(cert);
    payload = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (payload == NULL) {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:internal", "out of memory");
        return ATLS_STEP_AGAIN;
    }
    rc = atls_acme_send_post(e, e->dir.revoke_cert, payload, 0, act);
    free(payload);
    return rc;
}

void
atls_acme_revoke_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                             time_t now)
{
    atls_log(ATLS_LOG_INFO, "acme: certificate revoked (reason %d)", e->reason);
    atls_acme_set_state(e, ATLS_ST_DONE);
}
