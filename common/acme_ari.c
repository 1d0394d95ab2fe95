/*
 * ACME Renewal Information (RFC 9773): ask the CA when to renew a
 * certificate.  An unauthenticated GET of renewalInfo/<cert-id>.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "acme_internal.h"
#include "atls_schedule.h"

atls_acme_t *
atls_acme_ari_new(const char *directory_url, X509 *leaf, atls_error_t *err)
{
    atls_acme_t *e;
    char        *id;

    if (directory_url == NULL || leaf == NULL) {
        atls_error_set(err, ATLS_ERR_PERMANENT, "autotls:config",
                       "renewal information needs a directory URL and a certificate");
        return NULL;
    }
    id = atls_ari_cert_id(leaf);
    if (id == NULL) {
        atls_error_set(err, ATLS_ERR_PERMANENT, "autotls:ari",
                       "the certificate has no authority key identifier, so it "
                       "has no ARI certificate identifier");
        return NULL;
    }
    e = atls_acme_alloc(ATLS_ACME_ARI, directory_url);
    if (e == NULL) {
        free(id);
        atls_error_set(err, ATLS_ERR_RETRY_LATER, "autotls:internal", "out of memory");
        return NULL;
    }
    e->ari_cert_id = id;
    if (err != NULL) {
        memset(err, 0, sizeof(*err));
    }
    return e;
}

int
atls_acme_ari_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    const char *base = e->dir.renewal_info;
    size_t      blen, n;
    char       *url;
    int         rc;

    if (base == NULL) {
        atls_log(ATLS_LOG_DEBUG, "acme: the CA offers no renewal information");
        atls_acme_set_state(e, ATLS_ST_DONE);
        return ATLS_STEP_AGAIN;
    }
    blen = strlen(base);
    n = blen + strlen(e->ari_cert_id) + 2;
    url = malloc(n);
    if (url == NULL) {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:internal", "out of memory");
        return ATLS_STEP_AGAIN;
    }
    /* RFC 9773 §4.1: the path is renewalInfo "/" certID; tolerate a
     * directory URL that already ends in a slash. */
    snprintf(url, n, "%s%s%s", base, blen > 0 && base[blen - 1] == '/' ? "" : "/",
             e->ari_cert_id);
    rc = atls_acme_send_get(e, "GET", url, act);
    free(url);
    return rc;
}

void
atls_acme_ari_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                          time_t now)
{
    time_t start, end;

    if (resp->body == NULL
        || atls_ari_parse(resp->body, resp->body_len, &start, &end) != 0)
    {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:protocol",
                       "the CA's renewal information is malformed");
        return;
    }
    e->ari_have = 1;
    e->ari_start = start;
    e->ari_end = end;
    e->ari_retry_after = atls_http_retry_after(resp->retry_after, now);
    atls_acme_set_state(e, ATLS_ST_DONE);
}
