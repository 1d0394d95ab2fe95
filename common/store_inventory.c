/*
 * The store's inventory entries (inventory/<item-id>.json, public): the
 * certificates a server serves that autotls does not manage.  A host
 * syncs its whole list at start and reload; the scheduler rewrites one
 * entry when its expiry alert state changes; status and the CLI list them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "atls_inventory.h"
#include "store_int.h"

#define INVENTORY_DIR  "inventory"
#define INVENTORY_EXT  ".json"

/* inventory/<id>.json, or NULL for an id that is not one path component. */
static char *
store_inventory_path(const char *id)
{
    if (!atls_store_id_ok(id)) {
        return NULL;
    }
    return atls_store_cat(INVENTORY_DIR "/", id, INVENTORY_EXT, NULL);
}

int
atls_store_inventory_save(atls_store_t *st, const atls_inventory_item_t *it,
                          char *err, size_t errlen)
{
    char *path, *json;
    int   rc;

    path = store_inventory_path(it->id);
    if (path == NULL) {
        snprintf(err, errlen, "inventory item id \"%.64s\" is not a valid store id",
                 it->id != NULL ? it->id : "");
        return ATLS_STORE_ERROR;
    }
    json = atls_inventory_item_to_json(it, NULL, time(NULL));
    if (json == NULL) {
        free(path);
        snprintf(err, errlen, "out of memory");
        return ATLS_STORE_ERROR;
    }
    rc = st->ops->put(st, path, json, strlen(json), 0, err, errlen);
    free(path);
    free(json);
    return rc;
}

/* One entry named name ("<id>.json"): ATLS_STORE_OK, or an error (err set)
 * the caller reports and skips. */
static int
store_inventory_load(atls_store_t *st, const char *name, atls_inventory_item_t *it,
                     char *err, size_t errlen)
{
    char   *path, *data = NULL, why[256];
    size_t  len = 0, nlen = strlen(name);
    int     rc;

    if (nlen <= sizeof(INVENTORY_EXT) - 1
        || strcmp(name + nlen - (sizeof(INVENTORY_EXT) - 1), INVENTORY_EXT) != 0) {
        return ATLS_STORE_NOTFOUND;   /* a temporary file or a stranger */
    }
    path = atls_store_cat(INVENTORY_DIR "/", name, NULL);
    rc = st->ops->get(st, path, &data, &len, err, errlen);
    if (rc == ATLS_STORE_OK) {
        if (atls_inventory_item_from_json(data, len, it, why, sizeof(why)) != 0) {
            atls_store_err_path(st, path, err, errlen, why);
            rc = ATLS_STORE_ERROR;
        } else if (strncmp(name, it->id, nlen - (sizeof(INVENTORY_EXT) - 1)) != 0
                   || it->id[nlen - (sizeof(INVENTORY_EXT) - 1)] != '\0') {
            atls_store_err_path(st, path, err, errlen, "its \"id\" is not its file name");
            atls_inventory_item_free(it);
            rc = ATLS_STORE_ERROR;
        }
    }
    free(data);
    free(path);
    return rc;
}

int
atls_store_inventory_list(atls_store_t *st, atls_inventory_item_t **items, size_t *n,
                          char *err, size_t errlen)
{
    char                 **names = NULL, why[512];
    size_t                 nn = 0, i;
    atls_inventory_item_t *v;
    int                    rc;

    *items = NULL;
    *n = 0;
    rc = st->ops->list(st, INVENTORY_DIR, &names, &nn, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        return ATLS_STORE_OK;
    }
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    v = calloc(nn + 1, sizeof(*v));
    if (v == NULL) {
        abort();
    }
    /* names are sorted, and each is its id + ".json": so are the items */
    for (i = 0; i < nn; i++) {
        rc = store_inventory_load(st, names[i], &v[*n], why, sizeof(why));
        if (rc == ATLS_STORE_OK) {
            (*n)++;
        } else if (rc == ATLS_STORE_ERROR) {
            atls_log(ATLS_LOG_WARN, "inventory entry skipped: %s", why);
        }
    }
    atls_strv_free(names, nn);
    *items = v;
    return ATLS_STORE_OK;
}

static int
store_strv_equal(char *const *a, size_t na, char *const *b, size_t nb)
{
    size_t i;

    if (na != nb) {
        return 0;
    }
    for (i = 0; i < na; i++) {
        if (strcmp(a[i], b[i]) != 0) {
            return 0;
        }
    }
    return 1;
}

static int
store_str_equal(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The same certificate (serial and dates) in the same place, used the
 * same way: nothing to write. */
static int
store_inventory_same(const atls_inventory_item_t *a, const atls_inventory_item_t *b)
{
    return store_str_equal(a->path, b->path) && store_str_equal(a->server, b->server)
           && store_str_equal(a->error, b->error)
           && store_str_equal(a->facts.serial, b->facts.serial)
           && a->facts.not_after == b->facts.not_after
           && a->facts.chain_len == b->facts.chain_len
           && a->facts.chain_complete == b->facts.chain_complete
           && a->warned_level == b->warned_level && a->expired_sent == b->expired_sent
           && store_strv_equal(a->used_names, a->n_used_names, b->used_names, b->n_used_names)
           && store_strv_equal(a->used_by, a->n_used_by, b->used_by, b->n_used_by);
}

static const atls_inventory_item_t *
store_inventory_find(const atls_inventory_item_t *v, size_t n, const char *id)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (v[i].id != NULL && id != NULL && strcmp(v[i].id, id) == 0) {
            return &v[i];
        }
    }
    return NULL;
}

int
atls_store_inventory_sync(atls_store_t *st, const char *server,
                          const atls_inventory_item_t *items, size_t n,
                          char *err, size_t errlen)
{
    atls_inventory_item_t       *old = NULL, it;
    const atls_inventory_item_t *prev;
    size_t                       n_old = 0, i;
    char                        *path;
    int                          rc;

    rc = atls_store_inventory_list(st, &old, &n_old, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    for (i = 0; i < n && rc == ATLS_STORE_OK; i++) {
        /* a shallow copy: only the alert state may differ from the caller's */
        it = items[i];
        prev = store_inventory_find(old, n_old, it.id);
        if (prev != NULL && store_str_equal(prev->facts.serial, it.facts.serial)
            && store_str_equal(prev->error, it.error)) {
            it.warned_level = prev->warned_level;
            it.expired_sent = prev->expired_sent;
        }
        if (prev == NULL || !store_inventory_same(prev, &it)) {
            rc = atls_store_inventory_save(st, &it, err, errlen);
        }
    }
    for (i = 0; i < n_old && rc == ATLS_STORE_OK; i++) {
        if (!store_str_equal(old[i].server, server)
            || store_inventory_find(items, n, old[i].id) != NULL) {
            continue;
        }
        path = store_inventory_path(old[i].id);
        rc = path != NULL ? st->ops->del(st, path, err, errlen) : ATLS_STORE_OK;
        if (rc == ATLS_STORE_NOTFOUND) {
            rc = ATLS_STORE_OK;
        }
        free(path);
    }
    atls_inventory_items_free(old, n_old);
    return rc;
}
