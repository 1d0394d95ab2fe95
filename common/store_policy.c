/*
 * The server's policy in the store (policy.json, public) and its JSON form:
 *
 *   {"key":["ec256","rsa3072"],"min_rsa_bits":3072,
 *    "ca":["https://ca.example/dir"],
 *    "names":["*.example.com","example.com","~^[a-z0-9-]+\\.example\\.net$"],
 *    "max_names":100}
 *
 * A rule left out allows everything.  The file is as untrusted as the rest
 * of the store: it is read strictly (every value goes through the same
 * atls_policy_add_* calls as a configuration), and a member this version
 * does not know is an error rather than a rule silently skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "atls.h"
#include "atls_policy.h"
#include "policy_int.h"
#include "store_int.h"

#define POLICY_PATH "policy.json"

static const char *const policy_members[] = {
    "key", "min_rsa_bits", "ca", "names", "max_names", NULL
};

static json_t *
policy_keys_json(const atls_policy_t *p)
{
    json_t *a = json_array();
    size_t  i;

    for (i = 0; a != NULL && i < atls_policy_n_keys(p); i++) {
        if (json_array_append_new(a, json_string(atls_key_type_name(atls_policy_key(p, i))))
            != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* A list of strings read back from p with get(p, i). */
static json_t *
policy_list_json(const atls_policy_t *p, size_t n,
                 const char *(*get)(const atls_policy_t *, size_t))
{
    json_t *a = json_array();
    size_t  i;

    for (i = 0; a != NULL && i < n; i++) {
        if (json_array_append_new(a, json_string(get(p, i))) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

char *
atls_policy_to_json(const atls_policy_t *p)
{
    json_t *o = json_object();
    char   *s = NULL;
    int     rc = 0;

    if (o == NULL) {
        return NULL;
    }
    if (p != NULL && atls_policy_n_keys(p) > 0) {
        rc |= atls_meta_set(o, "key", policy_keys_json(p));
    }
    if (p != NULL && atls_policy_min_rsa_bits(p) > 0) {
        rc |= atls_meta_set(o, "min_rsa_bits", json_integer(atls_policy_min_rsa_bits(p)));
    }
    if (p != NULL && atls_policy_n_cas(p) > 0) {
        rc |= atls_meta_set(o, "ca", policy_list_json(p, atls_policy_n_cas(p),
                                                      atls_policy_ca));
    }
    if (p != NULL && atls_policy_n_names(p) > 0) {
        rc |= atls_meta_set(o, "names", policy_list_json(p, atls_policy_n_names(p),
                                                         atls_policy_names_pattern));
    }
    if (p != NULL && atls_policy_max_names(p) > 0) {
        rc |= atls_meta_set(o, "max_names", json_integer(atls_policy_max_names(p)));
    }
    if (rc == 0) {
        s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    }
    json_decref(o);
    return s;
}

/* Every member of root is one this version knows. */
static int
policy_members_known(json_t *root, char *err, size_t errlen)
{
    const char *key;
    json_t     *v;
    size_t      i;

    json_object_foreach(root, key, v) {
        for (i = 0; policy_members[i] != NULL; i++) {
            if (strcmp(key, policy_members[i]) == 0) {
                break;
            }
        }
        if (policy_members[i] == NULL) {
            return atls_meta_fail(err, errlen, "field \"%s\" is not a policy rule", key);
        }
    }
    return 0;
}

/* Each string of the array member key through add (the rule's own check). */
static int
policy_add_list(atls_policy_t *p, json_t *root, const char *key,
                int (*add)(atls_policy_t *, const char *, char *, size_t),
                char *err, size_t errlen)
{
    char  **v = NULL, why[256];
    size_t  n = 0, i;
    int     rc;

    rc = atls_meta_get_strv(root, key, key, 0, &v, &n, err, errlen);
    for (i = 0; rc == 0 && i < n; i++) {
        if (add(p, v[i], why, sizeof(why)) != 0) {
            rc = atls_meta_fail(err, errlen, "field \"%s\": %s", key, why);
        }
    }
    atls_strv_free(v, n);
    return rc;
}

/* The integer member key through set when present. */
static int
policy_set_bound(atls_policy_t *p, json_t *root, const char *key,
                 int (*set)(atls_policy_t *, long, char *, size_t),
                 char *err, size_t errlen)
{
    long long x;
    char      why[256];

    if (atls_meta_get_int(root, key, key, 1, 1000000, &x, err, errlen) != 0) {
        return -1;
    }
    if (x != 0 && set(p, (long) x, why, sizeof(why)) != 0) {
        return atls_meta_fail(err, errlen, "field \"%s\": %s", key, why);
    }
    return 0;
}

atls_policy_t *
atls_policy_from_json(const char *json, size_t len, char *err, size_t errlen)
{
    json_error_t   jerr;
    json_t        *root;
    atls_policy_t *p = NULL;
    int            rc = -1;

    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        atls_meta_fail(err, errlen, "not a JSON object%s%s", root ? "" : ": ",
                       root ? "" : jerr.text);
        goto out;
    }
    p = atls_policy_new();
    if (p == NULL) {
        atls_meta_fail(err, errlen, "out of memory");
        goto out;
    }
    if (policy_members_known(root, err, errlen) != 0
        || policy_add_list(p, root, "key", atls_policy_add_key, err, errlen) != 0
        || policy_set_bound(p, root, "min_rsa_bits", atls_policy_set_min_rsa_bits,
                            err, errlen) != 0
        || policy_add_list(p, root, "ca", atls_policy_add_ca, err, errlen) != 0
        || policy_add_list(p, root, "names", atls_policy_add_names, err, errlen) != 0
        || policy_set_bound(p, root, "max_names", atls_policy_set_max_names,
                            err, errlen) != 0) {
        goto out;
    }
    rc = 0;

out:
    json_decref(root);
    if (rc != 0) {
        atls_policy_free(p);
        p = NULL;
    }
    return p;
}

int
atls_store_save_policy(atls_store_t *st, const atls_policy_t *p, char *err, size_t errlen)
{
    char *json;
    int   rc;

    if (atls_policy_is_empty(p)) {
        /* no policy: nothing for the CLI to honour */
        rc = st->ops->del(st, POLICY_PATH, err, errlen);
        return rc == ATLS_STORE_NOTFOUND ? ATLS_STORE_OK : rc;
    }
    json = atls_policy_to_json(p);
    if (json == NULL) {
        snprintf(err, errlen, "save policy: out of memory");
        return ATLS_STORE_ERROR;
    }
    /* public: it restricts, it does not hold a secret */
    rc = st->ops->put(st, POLICY_PATH, json, strlen(json), 0, err, errlen);
    free(json);
    return rc;
}

int
atls_store_load_policy(atls_store_t *st, atls_policy_t **p, char *err, size_t errlen)
{
    char   *data = NULL, why[256];
    size_t  len = 0;
    int     rc;

    *p = NULL;
    rc = st->ops->get(st, POLICY_PATH, &data, &len, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    *p = atls_policy_from_json(data, len, why, sizeof(why));
    if (*p == NULL) {
        atls_store_err_path(st, POLICY_PATH, err, errlen, why);
        rc = ATLS_STORE_ERROR;
    }
    free(data);
    return rc;
}
