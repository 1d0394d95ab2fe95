/*
 * Sealed values are read back from Redis, which anyone with access to it
 * can rewrite: whatever is there must be refused with a reason (never
 * crash, never return bytes that did not authenticate), and a value sealed
 * here opens to the same bytes only under the same key name.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "atls_redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    atls_redis_key_t k;
    unsigned char   *sealed;
    size_t           aadlen, slen, olen;
    char            *out, err[256];
    const char      *aad;

    if (size < 1 || size > 65536) {
        return 0;
    }
    memset(&k, 0x5a, sizeof(k));   /* a fixed key and id */
    aadlen = data[0] % 64;
    if (aadlen > size - 1) {
        aadlen = size - 1;
    }
    aad = (const char *) data + 1;
    data += 1 + aadlen;
    size -= 1 + aadlen;

    /* as read from Redis: almost always refused, with a reason */
    err[0] = '\0';
    out = (char *) 1;
    if (atls_redis_open(&k, aad, aadlen, data, size, &out, &olen, err, sizeof(err)) != 0) {
        if (err[0] == '\0' || out != NULL) {
            abort();
        }
    } else {
        if (out == NULL || olen + ATLS_REDIS_SEAL_OVERHEAD != size || out[olen] != '\0') {
            abort();
        }
        free(out);
    }

    /* sealed here: opens to the same bytes, and not under another name */
    if (atls_redis_seal(&k, aad, aadlen, data, size, &sealed, &slen, err, sizeof(err)) != 0) {
        abort();
    }
    if (atls_redis_open(&k, aad, aadlen, sealed, slen, &out, &olen, err, sizeof(err)) != 0
        || olen != size || memcmp(out, data, size) != 0)
    {
        abort();
    }
    free(out);
    if (atls_redis_open(&k, "x", 1, sealed, slen, &out, &olen, err, sizeof(err)) == 0) {
        if (!(aadlen == 1 && aad[0] == 'x')) {
            abort();
        }
        free(out);
    }
    free(sealed);
    return 0;
}
