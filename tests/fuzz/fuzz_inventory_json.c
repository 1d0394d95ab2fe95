/*
 * inventory/<id>.json is read back from the store by the status page, the
 * scheduler's expiry alerts and `autotls list --all`: anything left there
 * must be rejected with an error naming why, never crash a reader.
 * Whatever parses must serialise and re-parse to the same text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "atls_inventory.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NOW ((time_t) 1800000000)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    atls_inventory_item_t it, again;
    char                  err[256];
    char                 *json, *json2;

    err[0] = '\0';
    if (atls_inventory_item_from_json((const char *) data, size, &it, err, sizeof(err)) != 0) {
        if (err[0] == '\0' || it.id != NULL || it.path != NULL) {
            abort();   /* an error must say why and leave nothing behind */
        }
        return 0;
    }
    json = atls_inventory_item_to_json(&it, NULL, FUZZ_NOW);
    if (json == NULL
        || atls_inventory_item_from_json(json, strlen(json), &again, err, sizeof(err)) != 0) {
        abort();
    }
    json2 = atls_inventory_item_to_json(&again, NULL, FUZZ_NOW);
    if (json2 == NULL || strcmp(json, json2) != 0) {
        abort();
    }
    free(json);
    free(json2);
    atls_inventory_item_free(&again);
    atls_inventory_item_free(&it);
    return 0;
}
