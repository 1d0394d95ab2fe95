/*
 * policy.json is read back from the store, which the worker user can
 * rewrite: anything there must be refused with an error naming the field,
 * never crash the CLI.  Whatever parses serialises and re-parses to the
 * same text (the regexes compile again), and a check with it answers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "atls_policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = { "www.example.com", "a.b.example.net", "10.0.0.1" };
    atls_policy_t *p, *again;
    atls_issuer_t  is;
    const char    *rule = NULL;
    char           err[256], why[512];
    char          *json, *json2;

    err[0] = '\0';
    p = atls_policy_from_json((const char *) data, size, err, sizeof(err));
    if (p == NULL) {
        if (err[0] == '\0') {
            abort();   /* an error must say why */
        }
        return 0;
    }
    json = atls_policy_to_json(p);
    again = json != NULL ? atls_policy_from_json(json, strlen(json), err, sizeof(err)) : NULL;
    json2 = again != NULL ? atls_policy_to_json(again) : NULL;
    if (json2 == NULL || strcmp(json, json2) != 0) {
        abort();
    }
    memset(&is, 0, sizeof(is));
    is.directory = "https://ca.example/dir";
    is.key_types[0] = ATLS_KEY_RSA2048;
    is.n_key_types = 1;
    why[0] = '\0';
    if (atls_policy_check(p, names, 3, &is, &rule, why, sizeof(why)) != 0
        && (rule == NULL || why[0] == '\0')) {
        abort();   /* a refusal names its rule and says why */
    }
    free(json);
    free(json2);
    atls_policy_free(again);
    atls_policy_free(p);
    return 0;
}
