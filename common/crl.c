/* CRLs (RFC 5280 section 5): parsed and verified against the certificate's
 * issuer before a serial in them is believed, then looked up by serial. */
#include <ctype.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "atls_ocsp.h"
#include "crypto_int.h"

/* serials are at most 20 octets (RFC 5280 4.1.2.2); tolerate some more */
#define ATLS_SERIAL_HEX_MAX 128

/* DER, or PEM ("-----BEGIN X509 CRL-----") as some servers publish it. */
static X509_CRL *
parse_crl(const unsigned char *data, size_t len)
{
    const unsigned char *p = data;
    X509_CRL            *crl;
    BIO                 *bio;

    if (len > 10 && memcmp(data, "-----BEGIN", 10) == 0) {
        bio = BIO_new_mem_buf(data, (int) len);
        crl = bio != NULL ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        return crl;
    }
    crl = d2i_X509_CRL(NULL, &p, (long) len);
    if (crl != NULL && p != data + len) {
        X509_CRL_free(crl);
        crl = NULL;
    }
    return crl;
}

/* 1 when uri is one of names' URIs, 0 when it is not, -1 when names holds
 * no URI at all. */
static int
uri_listed(GENERAL_NAMES *names, const char *uri)
{
    GENERAL_NAME   *gen;
    ASN1_IA5STRING *s;
    size_t          len = strlen(uri);
    int             i, type, seen = 0;

    for (i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        gen = sk_GENERAL_NAME_value(names, i);
        s = GENERAL_NAME_get0_value(gen, &type);
        if (type != GEN_URI) {
            continue;
        }
        seen = 1;
        if ((size_t) ASN1_STRING_length(s) == len
            && memcmp(ASN1_STRING_get0_data(s), uri, len) == 0) {
            return 1;
        }
    }
    return seen ? 0 : -1;
}

/* An Issuing Distribution Point with URIs must name the URL the CRL came
 * from: a shard of a sharded CRL cannot stand in for another. */
static int
check_idp(X509_CRL *crl, const char *url, char *err, size_t errlen)
{
    ISSUING_DIST_POINT *idp;
    int                 crit = 0, rc = 0;

    idp = X509_CRL_get_ext_d2i(crl, NID_issuing_distribution_point, &crit, NULL);
    if (idp == NULL) {
        if (crit != -1) {
            atls_crypto_err(err, errlen, "CRL %s: malformed Issuing Distribution Point", url);
            return -1;
        }
        return 0;
    }
    if (idp->distpoint != NULL && idp->distpoint->type == 0
        && uri_listed(idp->distpoint->name.fullname, url) == 0) {
        atls_crypto_err(err, errlen, "CRL %s: its Issuing Distribution Point "
                        "names another URL", url);
        rc = -1;
    } else if (idp->indirectCRL > 0) {
        /* its entries may belong to other CAs: a serial in it says
         * nothing certain about this issuer's certificates */
        atls_crypto_err(err, errlen, "CRL %s: an indirect CRL, not supported", url);
        rc = -1;
    }
    ISSUING_DIST_POINT_free(idp);
    return rc;
}

/* RFC 5280 section 5.2: a CRL with a critical extension the reader does
 * not process must not be used. */
static int
check_critical(X509_CRL *crl, const char *url, char *err, size_t errlen)
{
    X509_EXTENSION *ext;
    int             i, nid;

    for (i = 0; i < X509_CRL_get_ext_count(crl); i++) {
        ext = X509_CRL_get_ext(crl, i);
        nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
        if (X509_EXTENSION_get_critical(ext) && nid != NID_issuing_distribution_point
            && nid != NID_delta_crl) {
            atls_crypto_err(err, errlen, "CRL %s: an unsupported critical extension "
                            "(%s)", url, nid != NID_undef ? OBJ_nid2sn(nid) : "unknown");
            return -1;
        }
    }
    return 0;
}

static int
check_crl(X509_CRL *crl, const char *url, X509 *issuer, time_t now,
          atls_crl_info_t *info, char *err, size_t errlen)
{
    const ASN1_TIME *next;

    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(issuer)) != 0) {
        atls_crypto_err(err, errlen, "CRL %s: issued by another CA than the "
                        "certificate's issuer", url);
        return -1;
    }
    if (X509_CRL_verify(crl, X509_get0_pubkey(issuer)) != 1) {
        atls_crypto_err(err, errlen, "CRL %s: the signature does not verify "
                        "with the issuer's key", url);
        return -1;
    }
    next = X509_CRL_get0_nextUpdate(crl);
    if (atls_crypto_time(X509_CRL_get0_lastUpdate(crl), &info->this_update) != 0
        || (next != NULL && atls_crypto_time(next, &info->next_update) != 0)) {
        atls_crypto_err(err, errlen, "CRL %s: malformed thisUpdate or nextUpdate", url);
        return -1;
    }
    if (info->this_update > now + ATLS_OCSP_SKEW_S) {
        atls_crypto_err(err, errlen, "CRL %s: thisUpdate is in the future", url);
        return -1;
    }
    if (check_critical(crl, url, err, errlen) != 0) {
        return -1;
    }
    return check_idp(crl, url, err, errlen);
}

X509_CRL *
atls_crl_verify(const unsigned char *data, size_t len, const char *url,
                X509 *issuer, time_t now, atls_crl_info_t *info,
                char *err, size_t errlen)
{
    X509_CRL *crl;

    memset(info, 0, sizeof(*info));
    if (url == NULL) {
        url = "(no URL)";
    }
    if (issuer == NULL) {
        atls_crypto_err(err, errlen, "CRL %s: no issuer to check it with", url);
        return NULL;
    }
    if (data == NULL || len == 0 || len > ATLS_CRL_MAX_BYTES) {
        atls_crypto_err(err, errlen, "CRL %s: empty or larger than %d bytes",
                        url, ATLS_CRL_MAX_BYTES);
        return NULL;
    }
    crl = parse_crl(data, len);
    if (crl == NULL) {
        atls_crypto_err(err, errlen, "CRL %s: not a DER or PEM CRL", url);
        return NULL;
    }
    if (check_crl(crl, url, issuer, now, info, err, errlen) != 0) {
        X509_CRL_free(crl);
        memset(info, 0, sizeof(*info));
        return NULL;
    }
    ERR_clear_error();
    return crl;
}

static ASN1_INTEGER *
serial_of(const char *hex)
{
    ASN1_INTEGER *serial;
    BIGNUM       *bn = NULL;
    size_t        i, len = hex != NULL ? strlen(hex) : 0;

    if (len == 0 || len > ATLS_SERIAL_HEX_MAX) {
        return NULL;
    }
    for (i = 0; i < len; i++) {
        if (!isxdigit((unsigned char) hex[i])) {
            return NULL;
        }
    }
    if (BN_hex2bn(&bn, hex) != (int) len) {
        BN_free(bn);
        return NULL;
    }
    serial = BN_to_ASN1_INTEGER(bn, NULL);
    BN_free(bn);
    return serial;
}

int
atls_crl_lookup(X509_CRL *crl, const char *serial_hex, time_t *revoked_at,
                int *reason)
{
    ASN1_INTEGER    *serial;
    X509_REVOKED    *rev = NULL;
    ASN1_ENUMERATED *code;
    int              found;

    if (revoked_at != NULL) {
        *revoked_at = 0;
    }
    if (reason != NULL) {
        *reason = -1;
    }
    serial = serial_of(serial_hex);
    if (crl == NULL || serial == NULL) {
        ASN1_INTEGER_free(serial);
        ERR_clear_error();
        return -1;
    }
    /* 2 is an entry with reason removeFromCRL (a delta CRL undoing a
     * hold): the certificate is not revoked. */
    found = X509_CRL_get0_by_serial(crl, &rev, serial) == 1;
    ASN1_INTEGER_free(serial);
    if (found) {
        if (revoked_at != NULL
            && atls_crypto_time(X509_REVOKED_get0_revocationDate(rev), revoked_at) != 0) {
            *revoked_at = 0;
        }
        code = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL);
        if (code != NULL && reason != NULL) {
            *reason = (int) ASN1_ENUMERATED_get(code);
        }
        ASN1_ENUMERATED_free(code);
    }
    ERR_clear_error();
    return found;
}

/* RFC 5280 section 5.3.1; 7 is unassigned. */
static const char *const reason_names[] = {
    "unspecified", "keyCompromise", "cACompromise", "affiliationChanged",
    "superseded", "cessationOfOperation", "certificateHold", NULL,
    "removeFromCRL", "privilegeWithdrawn", "aACompromise",
};

const char *
atls_crl_reason_name(int reason)
{
    if (reason < 0 || (size_t) reason >= sizeof(reason_names) / sizeof(reason_names[0])
        || reason_names[reason] == NULL) {
        return "unspecified";
    }
    return reason_names[reason];
}
