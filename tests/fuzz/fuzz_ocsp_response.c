/* libFuzzer: OCSP responses arrive from responders (and back from the
 * store); verification must refuse anything malformed without crashing or
 * leaking, whatever the bytes.  The leaf and issuer are the fixed ones the
 * seed corpus was made for (ocsp_fixture.h, tests/fuzz/mkseeds_ocsp.sh), at
 * the fixed moment the seeds verify, so replaying them reaches past the
 * signature to the status and time checks. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <openssl/pem.h>
#include "atls_ocsp.h"
#include "ocsp_fixture.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static X509 *leaf, *issuer;

static X509 *
load(const char *pem)
{
    BIO  *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;

    BIO_free(bio);
    if (x == NULL) {
        abort();
    }
    return x;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    issuer = load(fixture_ca_pem);
    leaf = load(fixture_leaf_pem);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    atls_ocsp_answer_t a;
    char               err[256];

    if (atls_ocsp_verify(data, size, leaf, issuer, FIXTURE_NOW, &a, err,
                         sizeof(err)) != 0) {
        return 0;
    }
    (void) atls_ocsp_status_name(a.status);
    (void) atls_crl_reason_name(a.reason);
    (void) atls_ocsp_next_refresh(&a, FIXTURE_NOW, 0, (unsigned) size);
    (void) atls_ocsp_next_refresh(&a, FIXTURE_NOW, 3, 0);
    return 0;
}
