/* OCSP responses, CRLs and the certificates they speak about, built with
 * plain OpenSSL; see ocsppki.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "ocsppki.h"
#include "testpki.h"

#define OCSPPKI_VALIDITY (30L * 86400)

/* Adds the extensions in nids/values to x and signs it again with key. */
static int
extend(X509 *x, X509 *issuer, EVP_PKEY *key, const int *nids,
       const char *const *values, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (values[i] != NULL && testpki_ext(x, issuer, nids[i], values[i]) != 0) {
            return -1;
        }
    }
    return X509_sign(x, key, EVP_sha256()) > 0 ? 0 : -1;
}

static X509 *
responder(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, int eku)
{
    static const int nids[] = { NID_ext_key_usage };
    const char      *values[] = { eku ? "OCSPSigning" : NULL };
    X509            *x;

    x = testpki_cert(key, "autotls OCSP Responder", NULL, 0, issuer, issuer_key, 0,
                     -3600, OCSPPKI_VALIDITY);
    if (x != NULL && extend(x, issuer, issuer_key, nids, values, 1) != 0) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

int
ocsppki_make(ocsppki_t *p)
{
    memset(p, 0, sizeof(*p));
    p->ca_key = testpki_key(0);
    p->other_key = testpki_key(0);
    p->resp_key = testpki_key(0);
    p->leaf_key = testpki_key(0);
    if (p->ca_key == NULL || p->other_key == NULL || p->resp_key == NULL
        || p->leaf_key == NULL) {
        goto failed;
    }
    p->ca = testpki_cert(p->ca_key, OCSPPKI_CA_CN, NULL, 0, NULL, NULL, 1,
                         -3600, OCSPPKI_VALIDITY);
    p->other = testpki_cert(p->other_key, OCSPPKI_OTHER_CN, NULL, 0, NULL, NULL, 1,
                            -3600, OCSPPKI_VALIDITY);
    if (p->ca == NULL || p->other == NULL) {
        goto failed;
    }
    p->responder = responder(p->resp_key, p->ca, p->ca_key, 1);
    p->responder_noeku = responder(p->resp_key, p->ca, p->ca_key, 0);
    p->responder_foreign = responder(p->resp_key, p->other, p->other_key, 1);
    if (p->responder == NULL || p->responder_noeku == NULL
        || p->responder_foreign == NULL) {
        goto failed;
    }
    return 0;

failed:
    ocsppki_free(p);
    return -1;
}

void
ocsppki_free(ocsppki_t *p)
{
    X509_free(p->ca);
    X509_free(p->other);
    X509_free(p->responder);
    X509_free(p->responder_noeku);
    X509_free(p->responder_foreign);
    EVP_PKEY_free(p->ca_key);
    EVP_PKEY_free(p->other_key);
    EVP_PKEY_free(p->resp_key);
    EVP_PKEY_free(p->leaf_key);
    memset(p, 0, sizeof(*p));
}

X509 *
ocsppki_leaf(ocsppki_t *p, const char *name, const char *ocsp_url,
             const char *crl_url, int must_staple)
{
    static const int nids[] = { NID_info_access, NID_crl_distribution_points,
                                NID_tlsfeature };
    const char      *values[3];
    char             aia[512], cdp[512];
    const char      *names[] = { name };
    X509            *x;

    snprintf(aia, sizeof(aia), "OCSP;URI:%s", ocsp_url != NULL ? ocsp_url : "");
    snprintf(cdp, sizeof(cdp), "URI:%s", crl_url != NULL ? crl_url : "");
    values[0] = ocsp_url != NULL ? aia : NULL;
    values[1] = crl_url != NULL ? cdp : NULL;
    values[2] = must_staple ? "status_request" : NULL;

    x = testpki_cert(p->leaf_key, name, names, 1, p->ca, p->ca_key, 0,
                     -3600, OCSPPKI_VALIDITY);
    if (x != NULL && extend(x, p->ca, p->ca_key, nids, values, 3) != 0) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

void
ocsppki_resp_defaults(ocsppki_resp_t *o, time_t now)
{
    memset(o, 0, sizeof(*o));
    o->response_status = OCSP_RESPONSE_STATUS_SUCCESSFUL;
    o->status = V_OCSP_CERTSTATUS_GOOD;
    o->reason = -1;
    o->this_update = now - 60;
    o->next_update = now + 4 * 86400;
    o->signer = OCSPPKI_BY_CA;
}

/* A certificate with p->ca's subject name but p->other_key: the ResponderID
 * of a response signed by it names the issuer, the signature does not
 * verify with the issuer's key. */
static X509 *
impostor(ocsppki_t *p)
{
    return testpki_cert(p->other_key, OCSPPKI_CA_CN, NULL, 0, NULL, NULL, 1,
                        -3600, OCSPPKI_VALIDITY);
}

static int
sign_response(ocsppki_t *p, OCSP_BASICRESP *bs, const ocsppki_resp_t *o)
{
    X509          *signer = NULL, *fake = NULL;
    EVP_PKEY      *key = p->resp_key;
    unsigned long  flags = o->by_key ? OCSP_RESPID_KEY : 0;
    int            ok;

    switch (o->signer) {
    case OCSPPKI_BY_CA:
        signer = p->ca;
        key = p->ca_key;
        flags |= OCSP_NOCERTS;
        break;
    case OCSPPKI_BY_RESPONDER:
        signer = p->responder;
        break;
    case OCSPPKI_BY_RESPONDER_NOEKU:
        signer = p->responder_noeku;
        break;
    case OCSPPKI_BY_RESPONDER_FOREIGN:
        signer = p->responder_foreign;
        break;
    case OCSPPKI_BY_OTHER:
        fake = impostor(p);
        signer = fake;
        key = p->other_key;
        flags |= OCSP_NOCERTS;
        break;
    }
    ok = signer != NULL && OCSP_basic_sign(bs, signer, key, EVP_sha256(), NULL, flags) == 1
         && (o->extra_cert == NULL || OCSP_basic_add1_cert(bs, o->extra_cert) == 1);
    X509_free(fake);
    return ok ? 0 : -1;
}

static int
add_status(ocsppki_t *p, OCSP_BASICRESP *bs, X509 *leaf, const ocsppki_resp_t *o)
{
    OCSP_CERTID          *id;
    ASN1_GENERALIZEDTIME *thisupd = NULL, *nextupd = NULL, *revtime = NULL;
    int                   ok = 0;

    id = OCSP_cert_to_id(o->id_md != NULL ? o->id_md : EVP_sha1(), leaf,
                         o->wrong_certid ? p->other : p->ca);
    thisupd = ASN1_GENERALIZEDTIME_set(NULL, o->this_update);
    if (o->next_update != 0) {
        nextupd = ASN1_GENERALIZEDTIME_set(NULL, o->next_update);
    }
    if (o->status == V_OCSP_CERTSTATUS_REVOKED) {
        revtime = ASN1_GENERALIZEDTIME_set(NULL, o->revoked_at);
    }
    if (id != NULL && thisupd != NULL
        && (o->next_update == 0 || nextupd != NULL)
        && (o->status != V_OCSP_CERTSTATUS_REVOKED || revtime != NULL)) {
        ok = OCSP_basic_add1_status(bs, id, o->status, o->reason, revtime,
                                    thisupd, nextupd) != NULL;
    }
    OCSP_CERTID_free(id);
    ASN1_GENERALIZEDTIME_free(thisupd);
    ASN1_GENERALIZEDTIME_free(nextupd);
    ASN1_GENERALIZEDTIME_free(revtime);
    return ok ? 0 : -1;
}

unsigned char *
ocsppki_response(ocsppki_t *p, X509 *leaf, const ocsppki_resp_t *o, size_t *len)
{
    OCSP_BASICRESP *bs = NULL;
    OCSP_RESPONSE  *resp = NULL;
    unsigned char  *der = NULL, *q;
    int             n;

    if (o->response_status == OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        bs = OCSP_BASICRESP_new();
        if (bs == NULL || add_status(p, bs, leaf, o) != 0
            || sign_response(p, bs, o) != 0) {
            goto done;
        }
    }
    resp = OCSP_response_create(o->response_status, bs);
    n = resp != NULL ? i2d_OCSP_RESPONSE(resp, NULL) : -1;
    if (n <= 0 || (der = malloc((size_t) n)) == NULL) {
        goto done;
    }
    q = der;
    i2d_OCSP_RESPONSE(resp, &q);
    *len = (size_t) n;

done:
    OCSP_RESPONSE_free(resp);
    OCSP_BASICRESP_free(bs);
    return der;
}

static int
add_revoked(X509_CRL *crl, const ocsppki_revoked_t *r)
{
    X509_REVOKED    *rev;
    ASN1_TIME       *when;
    ASN1_ENUMERATED *code = NULL;
    int              ok = 0;

    rev = X509_REVOKED_new();
    when = ASN1_TIME_set(NULL, r->revoked_at);
    if (rev == NULL || when == NULL
        || X509_REVOKED_set_serialNumber(rev, X509_get_serialNumber(r->cert)) != 1
        || X509_REVOKED_set_revocationDate(rev, when) != 1) {
        goto done;
    }
    if (r->reason >= 0) {
        code = ASN1_ENUMERATED_new();
        if (code == NULL || ASN1_ENUMERATED_set(code, r->reason) != 1
            || X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, code, 0, 0) != 1) {
            goto done;
        }
    }
    if (X509_CRL_add0_revoked(crl, rev) == 1) {
        rev = NULL;
        ok = 1;
    }

done:
    ASN1_ENUMERATED_free(code);
    ASN1_TIME_free(when);
    X509_REVOKED_free(rev);
    return ok ? 0 : -1;
}

static int
add_idp(X509_CRL *crl, const char *uri, int indirect)
{
    ISSUING_DIST_POINT *idp;
    GENERAL_NAME       *gen = NULL;
    ASN1_IA5STRING     *ia5;
    int                 ok = 0;

    idp = ISSUING_DIST_POINT_new();
    ia5 = ASN1_IA5STRING_new();
    if (idp == NULL || ia5 == NULL || ASN1_STRING_set(ia5, uri, -1) != 1
        || (gen = GENERAL_NAME_new()) == NULL) {
        ASN1_IA5STRING_free(ia5);
        goto done;
    }
    GENERAL_NAME_set0_value(gen, GEN_URI, ia5);
    idp->distpoint = DIST_POINT_NAME_new();
    if (idp->distpoint == NULL) {
        goto done;
    }
    idp->distpoint->type = 0;
    idp->distpoint->name.fullname = GENERAL_NAMES_new();
    if (idp->distpoint->name.fullname == NULL
        || sk_GENERAL_NAME_push(idp->distpoint->name.fullname, gen) <= 0) {
        goto done;
    }
    gen = NULL;
    idp->indirectCRL = indirect ? 0xff : 0;
    ok = X509_CRL_add1_ext_i2d(crl, NID_issuing_distribution_point, idp, 1, 0) == 1;

done:
    GENERAL_NAME_free(gen);
    ISSUING_DIST_POINT_free(idp);
    return ok ? 0 : -1;
}

/* A critical extension no reader knows: 1.3.6.1.4.1.55555.1, NULL value. */
static int
add_critical_unknown(X509_CRL *crl)
{
    static const unsigned char null_der[] = { 0x05, 0x00 };
    ASN1_OBJECT       *oid;
    ASN1_OCTET_STRING *value;
    X509_EXTENSION    *ext = NULL;
    int                ok = 0;

    oid = OBJ_txt2obj("1.3.6.1.4.1.55555.1", 1);
    value = ASN1_OCTET_STRING_new();
    if (oid != NULL && value != NULL
        && ASN1_OCTET_STRING_set(value, null_der, sizeof(null_der)) == 1) {
        ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, value);
        ok = ext != NULL && X509_CRL_add_ext(crl, ext, -1) == 1;
    }
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(value);
    ASN1_OBJECT_free(oid);
    return ok ? 0 : -1;
}

static unsigned char *
crl_bytes(X509_CRL *crl, int pem, size_t *len)
{
    BIO           *bio;
    BUF_MEM       *mem;
    unsigned char *out = NULL;

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return NULL;
    }
    if ((pem ? PEM_write_bio_X509_CRL(bio, crl) : i2d_X509_CRL_bio(bio, crl)) == 1) {
        BIO_get_mem_ptr(bio, &mem);
        out = malloc(mem->length);
        if (out != NULL) {
            memcpy(out, mem->data, mem->length);
            *len = mem->length;
        }
    }
    BIO_free(bio);
    return out;
}

unsigned char *
ocsppki_crl(ocsppki_t *p, const ocsppki_crl_t *o, size_t *len)
{
    X509_CRL      *crl;
    ASN1_TIME     *thisupd = NULL, *nextupd = NULL;
    unsigned char *out = NULL;
    size_t         i;

    crl = X509_CRL_new();
    thisupd = ASN1_TIME_set(NULL, o->this_update);
    if (crl == NULL || thisupd == NULL || X509_CRL_set_version(crl, 1) != 1
        || X509_CRL_set_issuer_name(crl, X509_get_subject_name(p->ca)) != 1
        || X509_CRL_set1_lastUpdate(crl, thisupd) != 1) {
        goto done;
    }
    if (o->next_update != 0) {
        nextupd = ASN1_TIME_set(NULL, o->next_update);
        if (nextupd == NULL || X509_CRL_set1_nextUpdate(crl, nextupd) != 1) {
            goto done;
        }
    }
    for (i = 0; i < o->n_revoked; i++) {
        if (add_revoked(crl, &o->revoked[i]) != 0) {
            goto done;
        }
    }
    if (o->idp_uri != NULL && add_idp(crl, o->idp_uri, o->indirect) != 0) {
        goto done;
    }
    if (o->critical_unknown && add_critical_unknown(crl) != 0) {
        goto done;
    }
    if (X509_CRL_sort(crl) != 1
        || X509_CRL_sign(crl, o->wrong_signer ? p->other_key : p->ca_key,
                         EVP_sha256()) <= 0) {
        goto done;
    }
    out = crl_bytes(crl, o->pem, len);

done:
    ASN1_TIME_free(thisupd);
    ASN1_TIME_free(nextupd);
    X509_CRL_free(crl);
    return out;
}
