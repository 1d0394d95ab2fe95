/*
 * TEMPORARY (deleted before the branch is final): weak stand-ins for the
 * functions of atls_ocsp.h that the store, status and CLI code call, so
 * this branch builds before the crypto helper's common/ocsp*.c lands.
 * Their strong definitions win whenever both are linked.
 */
#include <stdlib.h>
#include <string.h>
#include <openssl/x509v3.h>
#include "atls.h"
#include "atls_ocsp.h"

static const char *const tmp_status_names[] = { "none", "good", "revoked", "unknown",
                                                "error" };

__attribute__((weak)) const char *
atls_ocsp_status_name(atls_ocsp_status_t s)
{
    return (unsigned) s <= ATLS_OCSP_ERROR ? tmp_status_names[s] : "none";
}

__attribute__((weak)) int
atls_ocsp_status_parse(const char *name, atls_ocsp_status_t *out)
{
    size_t i;

    for (i = 0; name != NULL && i < 5; i++) {
        if (strcmp(name, tmp_status_names[i]) == 0) {
            *out = (atls_ocsp_status_t) i;
            return 0;
        }
    }
    return -1;
}

__attribute__((weak)) char *
atls_ocsp_url(X509 *leaf)
{
    STACK_OF(OPENSSL_STRING) *v = X509_get1_ocsp(leaf);
    char                     *url = NULL;
    int                       i;

    for (i = 0; v != NULL && i < sk_OPENSSL_STRING_num(v) && url == NULL; i++) {
        if (strncmp(sk_OPENSSL_STRING_value(v, i), "http://", 7) == 0) {
            url = atls_strdup(sk_OPENSSL_STRING_value(v, i));
        }
    }
    X509_email_free(v);
    return url;
}

__attribute__((weak)) char *
atls_crl_url(X509 *leaf)
{
    (void) leaf;
    return NULL;
}

__attribute__((weak)) const char *
atls_crl_reason_name(int reason)
{
    static const char *const names[] = {
        "unspecified", "keyCompromise", "cACompromise", "affiliationChanged",
        "superseded", "cessationOfOperation", "certificateHold", "unspecified",
        "removeFromCRL", "privilegeWithdrawn", "aACompromise"
    };

    return reason >= 0 && reason <= 10 ? names[reason] : "unspecified";
}
