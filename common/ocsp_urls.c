/* Where a certificate says to ask about its revocation (AIA OCSP, CRL
 * Distribution Points) and whether it demands a staple (RFC 7633).  The
 * certificate was verified as issued by the CA before it got here, but the
 * URLs are still checked for what autotls can fetch: plain http(s), no NUL
 * hidden inside the IA5String. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/err.h>
#include <openssl/tls1.h>
#include <openssl/x509v3.h>
#include "atls_ocsp.h"
#include "crypto_int.h"

static int
has_scheme(const char *s, size_t len, int https_too)
{
    if (len > 7 && strncasecmp(s, "http://", 7) == 0) {
        return 1;
    }
    return https_too && len > 8 && strncasecmp(s, "https://", 8) == 0;
}

char *
atls_ocsp_url(X509 *leaf)
{
    STACK_OF(OPENSSL_STRING) *urls;
    const char               *u;
    char                     *out = NULL;
    int                       i;

    if (leaf == NULL) {
        return NULL;
    }
    /* X509_get1_ocsp keeps only the URI entries of the id-ad-ocsp method. */
    urls = X509_get1_ocsp(leaf);
    for (i = 0; i < sk_OPENSSL_STRING_num(urls); i++) {
        u = sk_OPENSSL_STRING_value(urls, i);
        if (has_scheme(u, strlen(u), 0)) {
            out = strdup(u);
            break;
        }
    }
    X509_email_free(urls);
    ERR_clear_error();
    return out;
}

/* The first http(s) URI among a distribution point's full names. */
static char *
first_uri(GENERAL_NAMES *names)
{
    GENERAL_NAME   *gen;
    ASN1_IA5STRING *uri;
    const char     *s;
    size_t          len;
    char           *out;
    int             i, type;

    for (i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        gen = sk_GENERAL_NAME_value(names, i);
        uri = GENERAL_NAME_get0_value(gen, &type);

        if (type != GEN_URI) {
            continue;
        }
        s = (const char *) ASN1_STRING_get0_data(uri);
        len = (size_t) ASN1_STRING_length(uri);
        if (memchr(s, '\0', len) != NULL || !has_scheme(s, len, 1)) {
            continue;
        }
        out = malloc(len + 1);
        if (out != NULL) {
            memcpy(out, s, len);
            out[len] = '\0';
        }
        return out;
    }
    return NULL;
}

char *
atls_crl_url(X509 *leaf)
{
    CRL_DIST_POINTS *dps;
    DIST_POINT      *dp;
    char            *out = NULL;
    int              i;

    if (leaf == NULL) {
        return NULL;
    }
    dps = X509_get_ext_d2i(leaf, NID_crl_distribution_points, NULL, NULL);
    for (i = 0; out == NULL && i < sk_DIST_POINT_num(dps); i++) {
        dp = sk_DIST_POINT_value(dps, i);
        /* A point with a cRLIssuer names an indirect CRL signed by someone
         * else than the issuer; one limited to some reasons is partial.
         * Neither is what atls_crl_verify checks against. */
        if (dp->distpoint == NULL || dp->distpoint->type != 0
            || dp->CRLissuer != NULL || dp->reasons != NULL) {
            continue;
        }
        out = first_uri(dp->distpoint->name.fullname);
    }
    CRL_DIST_POINTS_free(dps);
    ERR_clear_error();
    return out;
}

int
atls_cert_must_staple(X509 *leaf)
{
    TLS_FEATURE *features;
    int          i, found = 0;

    if (leaf == NULL) {
        return 0;
    }
    features = X509_get_ext_d2i(leaf, NID_tlsfeature, NULL, NULL);
    for (i = 0; i < sk_ASN1_INTEGER_num(features); i++) {
        if (ASN1_INTEGER_get(sk_ASN1_INTEGER_value(features, i))
            == TLSEXT_TYPE_status_request) {
            found = 1;
            break;
        }
    }
    TLS_FEATURE_free(features);
    ERR_clear_error();
    return found;
}
