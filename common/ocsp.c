/* OCSP requests (RFC 6960, RFC 5019), the status vocabulary and when to
 * ask again.  Verification of answers is in ocsp_verify.c. */
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include "atls_ocsp.h"
#include "atls_schedule.h"
#include "crypto_int.h"

/* RFC 5019 section 5: a GET is used when the encoded request keeps the
 * whole URL under 255 bytes, so that caches and proxies store it. */
#define ATLS_OCSP_GET_MAX      255
#define ATLS_OCSP_MIN_WAIT     10
#define ATLS_OCSP_BACKOFF_MIN  60
#define ATLS_OCSP_BACKOFF_MAX  3600

static const char *const status_names[] = {
    [ATLS_OCSP_NONE] = "none",
    [ATLS_OCSP_GOOD] = "good",
    [ATLS_OCSP_REVOKED] = "revoked",
    [ATLS_OCSP_UNKNOWN] = "unknown",
    [ATLS_OCSP_ERROR] = "error",
};

const char *
atls_ocsp_status_name(atls_ocsp_status_t s)
{
    if ((unsigned) s >= sizeof(status_names) / sizeof(status_names[0])) {
        return "error";
    }
    return status_names[s];
}

int
atls_ocsp_status_parse(const char *name, atls_ocsp_status_t *out)
{
    size_t i;

    for (i = 0; name != NULL && i < sizeof(status_names) / sizeof(status_names[0]); i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *out = (atls_ocsp_status_t) i;
            return 0;
        }
    }
    return -1;
}

/* ---- requests ------------------------------------------------------------ */

/* The DER OCSPRequest for one certificate, SHA-1 CertID (the hash every
 * responder must support, RFC 5019 section 2.1.1), no nonce. */
static unsigned char *
request_der(X509 *leaf, X509 *issuer, size_t *len)
{
    OCSP_REQUEST  *req;
    OCSP_CERTID   *id;
    unsigned char *der = NULL, *p;
    int            n;

    req = OCSP_REQUEST_new();
    id = OCSP_cert_to_id(EVP_sha1(), leaf, issuer);
    if (req == NULL || id == NULL || OCSP_request_add0_id(req, id) == NULL) {
        OCSP_CERTID_free(id);
        goto done;
    }
    n = i2d_OCSP_REQUEST(req, NULL);
    if (n <= 0 || (der = malloc((size_t) n)) == NULL) {
        goto done;
    }
    p = der;
    if (i2d_OCSP_REQUEST(req, &p) != n) {
        free(der);
        der = NULL;
        goto done;
    }
    *len = (size_t) n;

done:
    OCSP_REQUEST_free(req);
    return der;
}

/* url + "/" + url-encoded standard base64 of der (RFC 6960 appendix A.1). */
static char *
get_url(const char *url, const unsigned char *der, size_t len)
{
    char   *b64, *out, *o;
    size_t  ulen = strlen(url), i;
    int     n;

    b64 = malloc(4 * ((len + 2) / 3) + 1);
    if (b64 == NULL) {
        return NULL;
    }
    n = EVP_EncodeBlock((unsigned char *) b64, der, (int) len);
    /* every base64 character may become %XX */
    out = malloc(ulen + 1 + 3 * (size_t) n + 1);
    if (out != NULL) {
        memcpy(out, url, ulen);
        o = out + ulen;
        if (ulen == 0 || url[ulen - 1] != '/') {
            *o++ = '/';
        }
        for (i = 0; i < (size_t) n; i++) {
            switch (b64[i]) {
            case '+': memcpy(o, "%2B", 3); o += 3; break;
            case '/': memcpy(o, "%2F", 3); o += 3; break;
            case '=': memcpy(o, "%3D", 3); o += 3; break;
            default:  *o++ = b64[i]; break;
            }
        }
        *o = '\0';
    }
    free(b64);
    return out;
}

int
atls_ocsp_request(X509 *leaf, X509 *issuer, const char *url,
                  atls_http_request_t *req, char *err, size_t errlen)
{
    unsigned char *der;
    size_t         len = 0;
    char          *get;

    memset(req, 0, sizeof(*req));
    if (leaf == NULL || issuer == NULL || url == NULL || url[0] == '\0') {
        atls_crypto_err(err, errlen, "OCSP request: no certificate, issuer or URL");
        return -1;
    }
    der = request_der(leaf, issuer, &len);
    if (der == NULL) {
        atls_crypto_err(err, errlen, "OCSP request: OCSP_cert_to_id() failed");
        return -1;
    }
    req->accept = "application/ocsp-response";
    get = get_url(url, der, len);
    if (get != NULL && strlen(get) < ATLS_OCSP_GET_MAX) {
        req->method = "GET";
        req->url = get;
        free(der);
        return 0;
    }
    free(get);
    req->method = "POST";
    req->url = strdup(url);
    req->body = (char *) der;
    req->body_len = len;
    req->content_type = "application/ocsp-request";
    if (req->url == NULL) {
        atls_http_request_free(req);
        atls_crypto_err(err, errlen, "OCSP request: out of memory");
        return -1;
    }
    return 0;
}

/* ---- when to ask again --------------------------------------------------- */

time_t
atls_ocsp_valid_until(const atls_ocsp_answer_t *a)
{
    if (a == NULL) {
        return 0;
    }
    return a->next_update != 0 ? a->next_update : a->this_update + ATLS_OCSP_NO_NEXT_S;
}

/* Halfway through the answer's validity, earlier by up to a tenth of it. */
static time_t
refresh_after_success(const atls_ocsp_answer_t *a, unsigned jitter)
{
    time_t end = atls_ocsp_valid_until(a);
    time_t validity = end - a->this_update;
    time_t at;

    if (validity <= 0) {
        return 0;
    }
    at = a->this_update + validity / 2
         - (time_t) (jitter % (unsigned long long) (validity / 10 + 1));
    if (at > end - validity / 4) {
        at = end - validity / 4;
    }
    return at;
}

/* 60 s doubling to 1 h; while a good answer still holds, no later than
 * halfway to its end, so that another try comes before it runs out. */
static time_t
refresh_after_failure(const atls_ocsp_answer_t *a, time_t now, unsigned failures)
{
    time_t wait = atls_schedule_doubling(ATLS_OCSP_BACKOFF_MIN, ATLS_OCSP_BACKOFF_MAX,
                                         failures), end;

    if (a != NULL && a->status == ATLS_OCSP_GOOD) {
        end = atls_ocsp_valid_until(a);
        if (end > now && wait > (end - now) / 2) {
            wait = (end - now) / 2;
        }
    }
    return now + wait;
}

time_t
atls_ocsp_next_refresh(const atls_ocsp_answer_t *a, time_t now,
                       unsigned failures, unsigned jitter)
{
    time_t at;

    if (failures > 0) {
        at = refresh_after_failure(a, now, failures);
    } else if (a != NULL) {
        at = refresh_after_success(a, jitter);
    } else {
        at = now;                       /* nothing held: ask now */
    }
    return at < now + ATLS_OCSP_MIN_WAIT ? now + ATLS_OCSP_MIN_WAIT : at;
}
