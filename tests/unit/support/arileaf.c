/* Stored certificates with an ARI identifier (see arileaf.h). */
#include <stdlib.h>
#include <openssl/x509v3.h>
#include "support/arileaf.h"
#include "support/testpki.h"

/* Gives leaf an authority key identifier (a made-up key id) and signs it
 * again with the issuer's key. */
static int
arileaf_akid(X509 *leaf, EVP_PKEY *issuer_key)
{
    static const unsigned char id[20] = "arileaf-key-id-0123";
    AUTHORITY_KEYID           *akid = AUTHORITY_KEYID_new();
    int                        ok;

    if (akid == NULL) {
        return -1;
    }
    akid->keyid = ASN1_OCTET_STRING_new();
    ok = akid->keyid != NULL && ASN1_OCTET_STRING_set(akid->keyid, id, sizeof(id)) == 1
         && X509_add1_ext_i2d(leaf, NID_authority_key_identifier, akid, 0,
                              X509V3_ADD_DEFAULT) == 1
         && X509_sign(leaf, issuer_key, EVP_sha256()) > 0;
    AUTHORITY_KEYID_free(akid);
    return ok ? 0 : -1;
}

int
arileaf_store(atls_store_t *st, const char *id, const char *const *names, size_t n,
              atls_key_type_t kt)
{
    testpki_chain_t c;
    X509           *certs[2];
    char           *pem = NULL, err[256];
    int             rc = -1;

    if (testpki_chain_make(&c, names, n, kt) != 0) {
        return -1;
    }
    certs[0] = c.leaf;
    certs[1] = c.inter;
    if (arileaf_akid(c.leaf, c.inter_key) == 0 && (pem = testpki_pem(certs, 2)) != NULL
        && atls_store_save_cert(st, id, kt, c.leaf_key, pem, err, sizeof(err))
           == ATLS_STORE_OK)
    {
        rc = 0;
    }
    free(pem);
    testpki_chain_free(&c);
    return rc;
}
