/* Verification of OCSP responses (RFC 6960 section 3.2): nothing a
 * responder says is believed before its signature is traced to the
 * certificate's issuer, its CertID names the certificate and its times
 * make sense at `now`. */
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>
#include "atls_ocsp.h"
#include "crypto_int.h"

/* The responseStatus names of RFC 6960 section 4.2.1. */
static const char *
response_status_name(int s)
{
    switch (s) {
    case OCSP_RESPONSE_STATUS_MALFORMEDREQUEST: return "malformedRequest";
    case OCSP_RESPONSE_STATUS_INTERNALERROR:    return "internalError";
    case OCSP_RESPONSE_STATUS_TRYLATER:         return "tryLater";
    case OCSP_RESPONSE_STATUS_SIGREQUIRED:      return "sigRequired";
    case OCSP_RESPONSE_STATUS_UNAUTHORIZED:     return "unauthorized";
    default:                                    return "unassigned status";
    }
}

/* A responder other than the issuer is believed only when the issuer
 * certified it for exactly this (RFC 6960 section 4.2.2.2), now. */
static int
check_delegate(X509 *signer, X509 *issuer, time_t now, char *err, size_t errlen)
{
    time_t not_before, not_after;

    if (X509_check_issued(issuer, signer) != X509_V_OK
        || X509_verify(signer, X509_get0_pubkey(issuer)) != 1) {
        atls_crypto_err(err, errlen, "OCSP response: signed by a responder "
                        "certificate the issuer did not issue");
        return -1;
    }
    if (!(X509_get_extension_flags(signer) & EXFLAG_XKUSAGE)
        || !(X509_get_extended_key_usage(signer) & XKU_OCSP_SIGN)) {
        atls_crypto_err(err, errlen, "OCSP response: delegated responder "
                        "certificate lacks the id-kp-OCSPSigning EKU");
        return -1;
    }
    if (atls_crypto_time(X509_get0_notBefore(signer), &not_before) != 0
        || atls_crypto_time(X509_get0_notAfter(signer), &not_after) != 0
        || not_before > now + ATLS_OCSP_SKEW_S || not_after < now) {
        atls_crypto_err(err, errlen, "OCSP response: delegated responder "
                        "certificate not valid now");
        return -1;
    }
    return 0;
}

/* 1 when the response's ResponderID (byName or byKey) names issuer. */
static int
responder_is(OCSP_BASICRESP *bs, X509 *issuer)
{
    const ASN1_OCTET_STRING *keyid = NULL;
    const X509_NAME         *name = NULL;
    unsigned char            md[EVP_MAX_MD_SIZE];
    unsigned int             len = 0;

    if (OCSP_resp_get0_id(bs, &keyid, &name) != 1) {
        return 0;
    }
    if (name != NULL) {
        return X509_NAME_cmp(name, X509_get_subject_name(issuer)) == 0;
    }
    /* byKey: the SHA-1 of the subjectPublicKey bits (RFC 6960 4.2.1) */
    return keyid != NULL && X509_pubkey_digest(issuer, EVP_sha1(), md, &len) == 1
           && ASN1_STRING_length(keyid) == (int) len
           && memcmp(ASN1_STRING_get0_data(keyid), md, len) == 0;
}

/* The response's signer is the issuer, or else a responder certificate
 * the response carries; either way its signature must verify with that
 * key.  The issuer is tried first so that a copy of the CA certificate
 * cross-signed by someone else, sent along by the responder, is not taken
 * for a delegate.  OCSP_TRUSTOTHER with the one signer in `certs` makes
 * OCSP_basic_verify check the signature only: the trust decision is the
 * one made here. */
static int
check_signature(OCSP_BASICRESP *bs, X509 *issuer, time_t now, char *err, size_t errlen)
{
    STACK_OF(X509) *certs = NULL;
    X509           *signer = issuer;
    int             rc = -1;

    if (!responder_is(bs, issuer)) {
        if (OCSP_resp_get0_signer(bs, &signer, NULL) != 1 || signer == NULL) {
            atls_crypto_err(err, errlen, "OCSP response: the ResponderID names "
                            "neither the issuer nor a certificate in the response");
            return -1;
        }
        if (check_delegate(signer, issuer, now, err, errlen) != 0) {
            return -1;
        }
    }
    certs = sk_X509_new_null();
    if (certs == NULL || sk_X509_push(certs, signer) <= 0) {
        atls_crypto_err(err, errlen, "OCSP response: out of memory");
        goto done;
    }
    if (OCSP_basic_verify(bs, certs, NULL,
                          OCSP_TRUSTOTHER | OCSP_NOINTERN | OCSP_NOCHECKS) != 1) {
        atls_crypto_err(err, errlen, "OCSP response: the signature does not "
                        "verify with the responder's key");
        goto done;
    }
    rc = 0;

done:
    sk_X509_free(certs);
    return rc;
}

/* The SingleResponse about leaf, by a SHA-1 or SHA-256 CertID. */
static OCSP_SINGLERESP *
find_single(OCSP_BASICRESP *bs, X509 *leaf, X509 *issuer)
{
    const EVP_MD *mds[2] = { EVP_sha1(), EVP_sha256() };
    OCSP_CERTID  *id;
    size_t        i;
    int           idx;

    for (i = 0; i < 2; i++) {
        id = OCSP_cert_to_id(mds[i], leaf, issuer);
        idx = id != NULL ? OCSP_resp_find(bs, id, -1) : -1;
        OCSP_CERTID_free(id);
        if (idx >= 0) {
            return OCSP_resp_get0(bs, idx);
        }
    }
    return NULL;
}

/* Status and times of the single response, checked against now. */
static int
read_single(OCSP_SINGLERESP *single, time_t now, atls_ocsp_answer_t *out,
            char *err, size_t errlen)
{
    ASN1_GENERALIZEDTIME *rev = NULL, *thisupd = NULL, *nextupd = NULL;
    int                   status, reason = -1;

    status = OCSP_single_get0_status(single, &reason, &rev, &thisupd, &nextupd);
    switch (status) {
    case V_OCSP_CERTSTATUS_GOOD:    out->status = ATLS_OCSP_GOOD; break;
    case V_OCSP_CERTSTATUS_REVOKED: out->status = ATLS_OCSP_REVOKED; break;
    case V_OCSP_CERTSTATUS_UNKNOWN: out->status = ATLS_OCSP_UNKNOWN; break;
    default:
        atls_crypto_err(err, errlen, "OCSP response: no certStatus");
        return -1;
    }
    if (atls_crypto_time(thisupd, &out->this_update) != 0
        || (nextupd != NULL && atls_crypto_time(nextupd, &out->next_update) != 0)
        || (status == V_OCSP_CERTSTATUS_REVOKED
            && atls_crypto_time(rev, &out->revoked_at) != 0)) {
        atls_crypto_err(err, errlen, "OCSP response: malformed time");
        return -1;
    }
    out->reason = status == V_OCSP_CERTSTATUS_REVOKED ? reason : -1;
    if (out->this_update > now + ATLS_OCSP_SKEW_S) {
        atls_crypto_err(err, errlen, "OCSP response: thisUpdate is in the future");
        return -1;
    }
    if (nextupd != NULL && out->next_update <= out->this_update) {
        atls_crypto_err(err, errlen, "OCSP response: nextUpdate is not after thisUpdate");
        return -1;
    }
    if (nextupd != NULL && out->next_update < now - ATLS_OCSP_SKEW_S) {
        atls_crypto_err(err, errlen, "OCSP response: nextUpdate has passed (stale)");
        return -1;
    }
    return 0;
}

/* The basic response inside a successful OCSPResponse. */
static OCSP_BASICRESP *
parse_basic(const unsigned char *der, size_t len, char *err, size_t errlen)
{
    const unsigned char *p = der;
    OCSP_RESPONSE       *resp;
    OCSP_BASICRESP      *bs = NULL;
    int                  status;

    if (der == NULL || len == 0 || len > ATLS_OCSP_MAX_BYTES) {
        atls_crypto_err(err, errlen, "OCSP response: empty or larger than %d bytes",
                        ATLS_OCSP_MAX_BYTES);
        return NULL;
    }
    resp = d2i_OCSP_RESPONSE(NULL, &p, (long) len);
    if (resp == NULL || p != der + len) {
        atls_crypto_err(err, errlen, "OCSP response: not a DER OCSPResponse");
        goto done;
    }
    status = OCSP_response_status(resp);
    if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        atls_crypto_err(err, errlen, "OCSP response: responseStatus %s (%d)",
                        response_status_name(status), status);
        goto done;
    }
    bs = OCSP_response_get1_basic(resp);
    if (bs == NULL) {
        atls_crypto_err(err, errlen, "OCSP response: not a basic response");
    }

done:
    OCSP_RESPONSE_free(resp);
    return bs;
}

int
atls_ocsp_verify(const unsigned char *der, size_t len, X509 *leaf, X509 *issuer,
                 time_t now, atls_ocsp_answer_t *out, char *err, size_t errlen)
{
    OCSP_BASICRESP  *bs;
    OCSP_SINGLERESP *single;
    int              rc = -1;

    memset(out, 0, sizeof(*out));
    out->reason = -1;
    if (leaf == NULL || issuer == NULL) {
        atls_crypto_err(err, errlen, "OCSP response: no certificate or issuer to check");
        return -1;
    }
    bs = parse_basic(der, len, err, errlen);
    if (bs == NULL || check_signature(bs, issuer, now, err, errlen) != 0) {
        goto done;
    }
    single = find_single(bs, leaf, issuer);
    if (single == NULL) {
        atls_crypto_err(err, errlen, "OCSP response: no SingleResponse for this "
                        "certificate (CertID mismatch)");
        goto done;
    }
    if (read_single(single, now, out, err, errlen) != 0) {
        goto done;
    }
    if (atls_crypto_time(OCSP_resp_get0_produced_at(bs), &out->produced_at) != 0) {
        atls_crypto_err(err, errlen, "OCSP response: malformed producedAt");
        goto done;
    }
    rc = 0;

done:
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
        out->reason = -1;
    }
    OCSP_BASICRESP_free(bs);
    ERR_clear_error();
    return rc;
}
