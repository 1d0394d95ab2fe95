/*
 * libFuzzer: the bytes a client sends first reach atls_tls_sni() before
 * any TLS library sees them (nginx peeks them to park an on-demand first
 * handshake).  Any bytes must give an answer; a name found lies inside the
 * scratch buffer; a prefix of the input that is FOUND gives the same name
 * (more bytes never change a name already found).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "atls_tls_sni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned char scratch[ATLS_SNI_MAX_HELLO];
static unsigned char first[ATLS_SNI_MAX_HELLO];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const unsigned char *name, *name2;
    size_t               len, len2, half;
    atls_sni_result_t    rc, rc2;

    rc = atls_tls_sni(data, size, scratch, &name, &len);
    if (rc != ATLS_SNI_FOUND && rc != ATLS_SNI_NONE && rc != ATLS_SNI_MORE
        && rc != ATLS_SNI_NOT_TLS)
    {
        abort();
    }
    if (rc == ATLS_SNI_FOUND) {
        if (name < scratch || len == 0 || name + len > scratch + sizeof(scratch)) {
            abort();
        }
        memcpy(first, name, len);

        /* the input and more after it: the same name */
        half = size / 2;
        rc2 = atls_tls_sni(data, half, scratch, &name2, &len2);
        if (rc2 == ATLS_SNI_FOUND && (len2 != len || memcmp(name2, first, len) != 0)) {
            abort();
        }
    }
    return 0;
}
