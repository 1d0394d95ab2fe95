/* libFuzzer: CRLs arrive from CRL servers (and back from the store's
 * cache); parsing, verification and lookups must not crash or leak on any
 * bytes.  The issuer is the fixed one the seed corpus was signed by
 * (ocsp_fixture.h, tests/fuzz/mkseeds_ocsp.sh), so replaying the seeds
 * reaches past the signature to the IDP check and the lookups. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <openssl/pem.h>
#include "atls_ocsp.h"
#include "ocsp_fixture.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static X509 *issuer;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    BIO *bio = BIO_new_mem_buf(fixture_ca_pem, -1);

    issuer = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (issuer == NULL) {
        abort();
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const serials[] = { FIXTURE_SERIAL, "1", "00ff", "abcdef0123456789" };
    atls_crl_info_t info;
    X509_CRL       *crl;
    time_t          at;
    char            err[256];
    size_t          i;
    int             reason;

    crl = atls_crl_verify(data, size, FIXTURE_CRL_URL, issuer, FIXTURE_NOW, &info,
                          err, sizeof(err));
    if (crl == NULL) {
        return 0;
    }
    for (i = 0; i < sizeof(serials) / sizeof(serials[0]); i++) {
        if (atls_crl_lookup(crl, serials[i], &at, &reason) == 1) {
            (void) atls_crl_reason_name(reason);
        }
    }
    X509_CRL_free(crl);
    return 0;
}
