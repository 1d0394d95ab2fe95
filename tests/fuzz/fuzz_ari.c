/*
 * renewalInfo bodies come from the CA: parse must reject garbage and never
 * return a window with end <= start.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "atls_schedule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    time_t start = 0, end = 0, t;
    char   buf[64];

    if (atls_ari_parse((const char *) data, size, &start, &end) == 0) {
        if (end <= start || start < 0) {
            abort();
        }
        t = atls_ari_pick(start, end, start, size * 0x9e3779b97f4a7c15ULL);
        if (t < start || t >= end) {
            abort();
        }
    }
    /* the same bytes as a bare timestamp */
    if (size < sizeof(buf)) {
        memcpy(buf, data, size);
        buf[size] = '\0';
        t = atls_rfc3339_parse(buf);
        if (t >= 0 && t < 253402300800LL) {
            char out[32];

            atls_rfc3339_format(t, out, sizeof(out));
            if (atls_rfc3339_parse(out) != t) {
                abort();
            }
        }
    }
    return 0;
}
