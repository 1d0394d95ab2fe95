/*
 * ACME Renewal Information (RFC 9773): the certificate identifier, the
 * renewalInfo body, and picking a moment inside the suggested window.
 */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/x509v3.h>
#include "atls_schedule.h"
#include "atls_b64.h"

char *
atls_ari_cert_id(X509 *leaf)
{
    const ASN1_OCTET_STRING *aki;
    const ASN1_INTEGER      *serial;
    unsigned char           *der = NULL;
    const unsigned char     *p;
    long                     clen;
    int                      dlen, tag, cls, rc;
    char                    *a = NULL, *b = NULL, *out = NULL;
    size_t                   n;

    if (leaf == NULL) {
        return NULL;
    }
    aki = X509_get0_authority_key_id(leaf);
    serial = X509_get0_serialNumber(leaf);
    if (aki == NULL || ASN1_STRING_length(aki) <= 0 || serial == NULL) {
        return NULL;
    }
    /* The identifier uses the DER *content* octets of the serial INTEGER,
     * i.e. including a leading 0x00 when the high bit is set: take them
     * from the encoding rather than from the magnitude. */
    dlen = i2d_ASN1_INTEGER((ASN1_INTEGER *) serial, &der);
    if (dlen <= 0) {
        return NULL;
    }
    p = der;
    rc = ASN1_get_object(&p, &clen, &tag, &cls, dlen);
    if ((rc & 0x80) || tag != V_ASN1_INTEGER || clen <= 0
        || p + clen != der + dlen)
    {
        goto done;
    }
    a = atls_b64url_encode(ASN1_STRING_get0_data(aki), (size_t) ASN1_STRING_length(aki));
    b = atls_b64url_encode(p, (size_t) clen);
    if (a == NULL || b == NULL) {
        goto done;
    }
    n = strlen(a) + strlen(b) + 2;
    out = malloc(n);
    if (out != NULL) {
        memcpy(out, a, strlen(a));
        out[strlen(a)] = '.';
        memcpy(out + strlen(a) + 1, b, strlen(b) + 1);
    }

done:
    OPENSSL_free(der);
    free(a);
    free(b);
    return out;
}

int
atls_ari_parse(const char *json, size_t len, time_t *start, time_t *end)
{
    json_t       *root, *win, *js, *je;
    json_error_t  jerr;
    time_t        s, e;
    int           rc = -1;

    if (json == NULL) {
        return -1;
    }
    root = json_loadb(json, len, 0, &jerr);
    if (root == NULL) {
        return -1;
    }
    win = json_object_get(root, "suggestedWindow");
    js = json_object_get(win, "start");
    je = json_object_get(win, "end");
    if (!json_is_object(win) || !json_is_string(js) || !json_is_string(je)) {
        goto done;
    }
    s = atls_rfc3339_parse(json_string_value(js));
    e = atls_rfc3339_parse(json_string_value(je));
    if (s < 0 || e < 0 || e <= s) {
        goto done;
    }
    if (start != NULL) {
        *start = s;
    }
    if (end != NULL) {
        *end = e;
    }
    rc = 0;

done:
    json_decref(root);
    return rc;
}

time_t
atls_ari_pick(time_t start, time_t end, time_t now, uint64_t rnd)
{
    time_t t;

    if (end <= now) {
        return now;
    }
    if (end <= start) {
        return start < now ? now : start;
    }
    /* RFC 9773 section 4.2: a uniform point in the whole window; if it is
     * already behind us, renew now. */
    t = start + (time_t) (((unsigned __int128) rnd * (uint64_t) (end - start)) >> 64);
    return t < now ? now : t;
}
