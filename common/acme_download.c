/*
 * ACME certificate download (RFC 8555 §7.4.2): the default chain, and the
 * alternates the CA links (rel="alternate") when the operator prefers a
 * chain issued by a particular root.
 */
#include <stdlib.h>
#include <string.h>
#include "acme_internal.h"
#include "atls_crypto.h"

/* RFC 8555 §7.4.2: the client asks for the PEM chain format explicitly. */
#define ATLS_PEM_CHAIN_TYPE "application/pem-certificate-chain"

int
atls_acme_download_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    return atls_acme_send_post_accept(e, e->cert_url, NULL, 0, ATLS_PEM_CHAIN_TYPE, act);
}

/* Parses a downloaded chain; NULL (and a log line) when it is not one. */
static STACK_OF(X509) *
atls_acme_chain_of(const atls_http_response_t *resp, const char *url)
{
    STACK_OF(X509) *chain;
    char            why[256] = "";

    if (resp->body == NULL || resp->body_len == 0) {
        atls_log(ATLS_LOG_WARN, "acme: empty certificate chain from %s", url);
        return NULL;
    }
    chain = atls_chain_parse(resp->body, resp->body_len, why, sizeof(why));
    if (chain == NULL) {
        atls_log(ATLS_LOG_WARN, "acme: bad certificate chain from %s: %s", url, why);
    }
    return chain;
}

/* The CA is not trusted to have issued what we asked for: a chain that
 * fails atls_cert_check_issued never reaches DONE, so no host stores or
 * serves it and the current certificate keeps being served. */
static int
atls_acme_chain_ours(atls_acme_t *e, STACK_OF(X509) *chain, const char *url, time_t now,
                     char *why, size_t whylen)
{
    atls_cert_fault_t fault;

    fault = atls_cert_check_issued(chain, e->cert_key, (const char *const *) e->names,
                                   e->n_names, now, why, whylen);
    if (fault != ATLS_CERT_OK) {
        atls_log(ATLS_LOG_WARN, "acme: refusing the certificate from %s: %s", url, why);
    }
    return (int) fault;
}

void
atls_acme_download_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                               time_t now)
{
    STACK_OF(X509) *chain = atls_acme_chain_of(resp, e->cert_url);
    size_t          i;
    int             preferred_ok;

    char            why[256];
    int             fault;

    if (chain == NULL) {
        atls_acme_fail(e, ATLS_ERR_PERMANENT, "autotls:chain",
                       "the CA's certificate download %s is not a PEM chain", e->cert_url);
        return;
    }
    fault = atls_acme_chain_ours(e, chain, e->cert_url, now, why, sizeof(why));
    if (fault != ATLS_CERT_OK) {
        atls_chain_free(chain);
        /* wrong names or key: the CA issued something else than ordered;
         * dates or links may be a clock or a CA hiccup */
        atls_acme_fail(e, fault == ATLS_CERT_BAD_KEY || fault == ATLS_CERT_BAD_NAMES
                          ? ATLS_ERR_PERMANENT : ATLS_ERR_RETRY_LATER,
                       "autotls:ca-certificate",
                       "the certificate the CA issued at %s is refused: %s",
                       e->cert_url, why);
        return;
    }
    free(e->chain_pem);
    e->chain_pem = atls_chain_to_pem(chain);
    preferred_ok = e->preferred_chain == NULL
                   || atls_chain_issued_by(chain, e->preferred_chain);
    atls_chain_free(chain);
    if (e->chain_pem == NULL) {
        atls_acme_fail(e, ATLS_ERR_RETRY_LATER, "autotls:internal", "out of memory");
        return;
    }

    atls_strv_free(e->alt, e->n_alt);
    e->alt = NULL;
    e->n_alt = 0;
    if (resp->n_link_alternate > 0) {
        e->alt = calloc(resp->n_link_alternate, sizeof(char *));
        if (e->alt != NULL) {
            for (i = 0; i < resp->n_link_alternate; i++) {
                const char *u = resp->link_alternate[i];
                char        esc[256];

                if (u == NULL) {
                    continue;
                }
                /* the certificate is issued: a foreign alternate is skipped,
                 * never fetched */
                if (!e->allow_foreign_urls && !atls_url_same_origin(e->directory_url, u)) {
                    atls_log(ATLS_LOG_WARN, "acme: ignoring the CA's alternate chain "
                             "URL \"%s\": not https on the directory's origin",
                             atls_log_escape(u, esc, sizeof(esc)));
                    continue;
                }
                e->alt[e->n_alt++] = atls_strdup(u);
            }
        }
    }
    if (!preferred_ok && e->n_alt > 0) {
        e->alt_idx = 0;
        atls_acme_set_state(e, ATLS_ST_DOWNLOAD_ALT);
        return;
    }
    if (!preferred_ok) {
        atls_log(ATLS_LOG_INFO, "acme: the CA offers no chain issued by \"%s\"; "
                 "keeping the default chain", e->preferred_chain);
    }
    atls_acme_set_state(e, ATLS_ST_DONE);
}

int
atls_acme_alt_act(atls_acme_t *e, time_t now, atls_action_t *act)
{
    if (e->alt_idx >= e->n_alt) {
        atls_log(ATLS_LOG_INFO, "acme: no alternate chain is issued by \"%s\"; "
                 "keeping the default chain", e->preferred_chain);
        atls_acme_set_state(e, ATLS_ST_DONE);
        return ATLS_STEP_AGAIN;
    }
    return atls_acme_send_post_accept(e, e->alt[e->alt_idx], NULL, 0, ATLS_PEM_CHAIN_TYPE,
                                      act);
}

void
atls_acme_alt_on_response(atls_acme_t *e, const atls_http_response_t *resp,
                          time_t now)
{
    STACK_OF(X509) *chain = atls_acme_chain_of(resp, e->alt[e->alt_idx]);
    char           *pem;
    char            why[256];

    if (chain != NULL && atls_chain_issued_by(chain, e->preferred_chain)
        && atls_acme_chain_ours(e, chain, e->alt[e->alt_idx], now, why, sizeof(why))
           == ATLS_CERT_OK)
    {
        pem = atls_chain_to_pem(chain);
        if (pem != NULL) {
            free(e->chain_pem);
            e->chain_pem = pem;
            atls_log(ATLS_LOG_INFO, "acme: using the alternate chain issued by \"%s\"",
                     e->preferred_chain);
            atls_chain_free(chain);
            atls_acme_set_state(e, ATLS_ST_DONE);
            return;
        }
    }
    atls_chain_free(chain);
    e->alt_idx++;
}

/* The certificate is issued already: a broken alternate must not cost it. */
int
atls_acme_alt_on_problem(atls_acme_t *e, const atls_http_response_t *resp,
                         time_t now)
{
    atls_log(ATLS_LOG_WARN, "acme: alternate chain %s: %s %s",
             e->alt[e->alt_idx], e->err.type, e->err.detail);
    memset(&e->err, 0, sizeof(e->err));
    e->alt_idx++;
    return 1;
}
