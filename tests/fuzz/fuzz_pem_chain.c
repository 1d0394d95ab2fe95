/* libFuzzer: certificate chains arrive from the CA (ACME download) and from
 * the store; neither parser nor the per-certificate facts may crash or
 * leak on any input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "atls_crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    STACK_OF(X509)   *chain;
    atls_cert_info_t  info;
    const char *const names[] = { "example.com", "*.example.com", "127.0.0.1" };
    char              err[256], *pem;
    int               i;

    chain = atls_chain_parse((const char *) data, size, err, sizeof(err));
    if (chain == NULL) {
        return 0;
    }
    for (i = 0; i < sk_X509_num(chain); i++) {
        if (atls_cert_info(sk_X509_value(chain, i), &info) == 0) {
            atls_cert_info_free(&info);
        }
    }
    (void) atls_chain_check(chain, NULL, names, 3, err, sizeof(err));
    (void) atls_chain_issued_by(chain, "Pebble Root CA");
    pem = atls_chain_to_pem(chain);
    free(pem);
    atls_chain_free(chain);
    return 0;
}
