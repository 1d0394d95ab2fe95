/*
 * A throw-away OCSP and CRL world for unit tests, minted with plain OpenSSL
 * calls (not the code under test): an issuing CA, leaves that do or do not
 * name a responder / a CRL / Must-Staple, OCSP responses of every shape a
 * responder could send (good, revoked, unknown, signed by the right or the
 * wrong key, stale, from the future, tryLater), and CRLs (DER or PEM, with
 * or without an Issuing Distribution Point, signed by the right or the
 * wrong key).
 *
 * Usage:
 *     ocsppki_t p;
 *     ocsppki_make(&p);
 *     X509 *leaf = ocsppki_leaf(&p, "a.test", "http://127.0.0.1:9/ocsp", NULL, 0);
 *     ocsppki_resp_t o;
 *     ocsppki_resp_defaults(&o, time(NULL));            (good, signed by p.ca)
 *     o.status = V_OCSP_CERTSTATUS_REVOKED;
 *     der = ocsppki_response(&p, leaf, &o, &len);        (free())
 *     ...
 *     X509_free(leaf);
 *     ocsppki_free(&p);
 */
#ifndef OCSPPKI_H
#define OCSPPKI_H

#include <stddef.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509.h>

#define OCSPPKI_CA_CN     "autotls OCSP Test CA"
#define OCSPPKI_OTHER_CN  "autotls Unrelated CA"

typedef struct {
    EVP_PKEY *ca_key;
    X509     *ca;                 /* the issuer of every leaf (self-signed) */
    EVP_PKEY *other_key;
    X509     *other;              /* an unrelated CA (self-signed) */
    EVP_PKEY *resp_key;           /* the key of the three responders below */
    X509     *responder;          /* issued by ca, EKU OCSPSigning: legitimate */
    X509     *responder_noeku;    /* issued by ca, no EKU: must be refused */
    X509     *responder_foreign;  /* issued by other, EKU OCSPSigning: refused */
    EVP_PKEY *leaf_key;           /* the key every leaf certifies */
} ocsppki_t;

/* Everything valid from an hour ago for 30 days.  0 or -1. */
int  ocsppki_make(ocsppki_t *p);
void ocsppki_free(ocsppki_t *p);

/* A leaf issued by p->ca for name (CN and dNSName), valid from an hour ago
 * for 30 days, with a random serial.  ocsp_url: AIA OCSP entry (NULL:
 * none); crl_url: CRL Distribution Point (NULL: none); must_staple: the
 * TLS Feature extension with status_request.  NULL on failure. */
X509 *ocsppki_leaf(ocsppki_t *p, const char *name, const char *ocsp_url,
                   const char *crl_url, int must_staple);

/* Who signs a response. */
typedef enum {
    OCSPPKI_BY_CA = 0,           /* the issuer itself (no certificates sent) */
    OCSPPKI_BY_RESPONDER,        /* p->responder, included in the response */
    OCSPPKI_BY_RESPONDER_NOEKU,  /* p->responder_noeku, included */
    OCSPPKI_BY_RESPONDER_FOREIGN,/* p->responder_foreign, included */
    OCSPPKI_BY_OTHER             /* p->other's key, ResponderID naming p->ca */
} ocsppki_signer_t;

typedef struct {
    int              response_status; /* OCSP_RESPONSE_STATUS_*: anything but
                                         SUCCESSFUL gives a bare response */
    int              status;          /* V_OCSP_CERTSTATUS_GOOD/REVOKED/UNKNOWN */
    int              reason;          /* REVOKED: CRLReason code, -1 none */
    time_t           revoked_at;      /* REVOKED */
    time_t           this_update;
    time_t           next_update;     /* 0: no nextUpdate */
    ocsppki_signer_t signer;
    int              by_key;          /* ResponderID byKey instead of byName */
    const EVP_MD    *id_md;           /* CertID hash: NULL = SHA-1 */
    int              wrong_certid;    /* CertID of the leaf under p->other */
    X509            *extra_cert;      /* also sent in the response's certs
                                         (after signing; NULL: none) */
} ocsppki_resp_t;

/* GOOD, successful, signed by p->ca, byName, SHA-1 CertID, thisUpdate
 * now - 60, nextUpdate now + 4 days, reason -1. */
void ocsppki_resp_defaults(ocsppki_resp_t *o, time_t now);

/* The DER OCSP response about leaf (malloc'd, *len set), NULL on failure. */
unsigned char *ocsppki_response(ocsppki_t *p, X509 *leaf, const ocsppki_resp_t *o,
                                size_t *len);

/* One CRL entry. */
typedef struct {
    X509   *cert;        /* its serial is listed */
    int     reason;      /* CRLReason code, -1: no reason extension */
    time_t  revoked_at;
} ocsppki_revoked_t;

typedef struct {
    const ocsppki_revoked_t *revoked;
    size_t                   n_revoked;
    time_t                   this_update;
    time_t                   next_update;   /* 0: none */
    const char              *idp_uri;       /* Issuing Distribution Point
                                               fullName URI; NULL: no IDP */
    int                      wrong_signer;  /* issuer name of p->ca, signed
                                               with p->other_key */
    int                      pem;           /* PEM instead of DER */
    int                      indirect;      /* the IDP says indirectCRL
                                               (with idp_uri) */
    int                      critical_unknown; /* carries a critical
                                               extension of a private OID */
} ocsppki_crl_t;

/* The CRL issued by p->ca (malloc'd bytes, *len set), NULL on failure. */
unsigned char *ocsppki_crl(ocsppki_t *p, const ocsppki_crl_t *o, size_t *len);

#endif
