/*
 * What a cluster node takes from Redis before its responder sees it
 * (mirror_cluster.c): "<type> <key>" from the challenge index and the
 * announcements, and the answer's bytes.  Anyone with access to Redis
 * writes them: anything must be refused or accepted without a crash, and
 * what is accepted must be a key the hosts can use as a file name or a
 * shared-memory key (no '/', no blank, no control byte, bounded) and an
 * answer without a NUL inside.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mirror_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    atls_challenge_type_t t;
    char                  key[256], why[256];
    const char           *p;

    if (atls_mirror_chal_parse((const char *) data, size, &t, key, sizeof(key)) == 0) {
        if ((t != ATLS_CHAL_HTTP01 && t != ATLS_CHAL_TLSALPN01) || key[0] == '\0'
            || strchr(key, '/') != NULL || strlen(key) >= sizeof(key))
        {
            abort();
        }
        for (p = key; *p != '\0'; p++) {
            if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f) {
                abort();
            }
        }
    }
    for (t = ATLS_CHAL_HTTP01; t <= ATLS_CHAL_DNS01; t++) {
        why[0] = '\0';
        if (atls_mirror_chal_data_ok(t, (const char *) data, size, why, sizeof(why))) {
            if (t == ATLS_CHAL_DNS01 || size == 0 || memchr(data, '\0', size) != NULL) {
                abort();
            }
        } else if (t != ATLS_CHAL_DNS01 && why[0] == '\0') {
            abort();   /* a refusal says why */
        }
    }
    return 0;
}
