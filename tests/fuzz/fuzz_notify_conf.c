/*
 * notify.json is read back from the store, which the worker user can
 * rewrite: anything there must be refused with an error naming the field,
 * never crash the CLI or the server.  Whatever parses passes the same
 * checks as a configuration, and serialises and re-parses to the same text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "atls_event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    atls_notify_conf_t c, again;
    char               err[256];
    char              *json, *json2;

    err[0] = '\0';
    if (atls_notify_conf_from_json((const char *) data, size, &c, err, sizeof(err)) != 0) {
        if (err[0] == '\0' || c.exec != NULL || c.webhook != NULL || c.headers != NULL) {
            abort();   /* an error must say why and leave nothing behind */
        }
        return 0;
    }
    if (atls_notify_conf_check(&c, err, sizeof(err)) != 0) {
        abort();
    }
    json = atls_notify_conf_to_json(&c);
    if (json == NULL
        || atls_notify_conf_from_json(json, strlen(json), &again, err, sizeof(err)) != 0)
    {
        abort();
    }
    json2 = atls_notify_conf_to_json(&again);
    if (json2 == NULL || strcmp(json, json2) != 0) {
        abort();
    }
    free(json);
    free(json2);
    atls_notify_conf_free(&again);
    atls_notify_conf_free(&c);
    return 0;
}
