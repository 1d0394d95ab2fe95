/*
 * meta.json is read back from disk on every start: anything an operator (or
 * a crash, or a disk) leaves there must be rejected with an error, never
 * crash the server.  Whatever parses must serialise and re-parse to the
 * same text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "atls_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    atls_cert_meta_t m, again;
    char             err[256];
    char            *json, *json2;

    err[0] = '\0';
    if (atls_cert_meta_from_json((const char *) data, size, &m, err, sizeof(err)) != 0) {
        if (err[0] == '\0' || m.names != NULL || m.id != NULL) {
            abort();   /* an error must say why and leave nothing behind */
        }
        return 0;
    }
    json = atls_cert_meta_to_json(&m);
    if (json == NULL) {
        abort();
    }
    if (atls_cert_meta_from_json(json, strlen(json), &again, err, sizeof(err)) != 0) {
        abort();
    }
    json2 = atls_cert_meta_to_json(&again);
    if (json2 == NULL || strcmp(json, json2) != 0) {
        abort();
    }
    free(json);
    free(json2);
    atls_cert_meta_free(&again);
    atls_cert_meta_free(&m);
    return 0;
}
