/*
 * The entries a registry batch has decided to write (store_names.c), held
 * until the batch ends and then written with one atls_store_put_many into
 * names/: 10,000 names cost one sync, not one each.  A name given twice in
 * one batch must see what the batch made of it the first time (it is not
 * on disk yet): hence the lookup by file name, a hash of open addressing
 * (a batch is as large as an operator's file).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "names_int.h"

static uint64_t
pending_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;     /* FNV-1a */

    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char) *s) * 1099511628211ULL;
    }
    return h;
}

/* the slot holding file, or the empty slot where it goes */
static size_t
pending_slot(const atls_names_pending_t *p, const char *file)
{
    size_t i = (size_t) (pending_hash(file) & (p->nslots - 1));

    while (p->slots[i] != 0 && strcmp(p->v[p->slots[i] - 1].file, file) != 0) {
        i = (i + 1) & (p->nslots - 1);
    }
    return i;
}

/* twice the slots, every item placed again */
static void
pending_grow(atls_names_pending_t *p)
{
    size_t i;

    free(p->slots);
    p->nslots = p->nslots ? p->nslots * 2 : 64;
    p->slots = calloc(p->nslots, sizeof(*p->slots));
    if (p->slots == NULL) {
        abort();
    }
    for (i = 0; i < p->n; i++) {
        p->slots[pending_slot(p, p->v[i].file)] = i + 1;
    }
}

void
atls_names_pending_init(atls_names_pending_t *p)
{
    memset(p, 0, sizeof(*p));
}

const atls_names_pending_item_t *
atls_names_pending_find(const atls_names_pending_t *p, const char *file)
{
    size_t i;

    if (p->n == 0) {
        return NULL;
    }
    i = pending_slot(p, file);
    return p->slots[i] != 0 ? &p->v[p->slots[i] - 1] : NULL;
}

void
atls_names_pending_add(atls_names_pending_t *p, const char *file, char *json, size_t index,
                       int made)
{
    atls_names_pending_item_t *nv, *it;

    /* at most half full: the probes stay short */
    if (2 * (p->n + 1) > p->nslots) {
        pending_grow(p);
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        nv = realloc(p->v, p->cap * sizeof(*nv));
        if (nv == NULL) {
            abort();
        }
        p->v = nv;
    }
    it = &p->v[p->n];
    it->file = atls_strdup(file);
    it->json = json;
    it->index = index;
    it->made = made;
    p->slots[pending_slot(p, file)] = ++p->n;
}

int
atls_names_pending_flush(atls_store_t *st, const char *dir, atls_names_pending_t *p,
                         size_t *done, char *err, size_t errlen)
{
    atls_store_file_t *files;
    size_t             i;
    int                rc;

    *done = 0;
    if (p->n == 0) {
        return ATLS_STORE_OK;
    }
    files = calloc(p->n, sizeof(*files));
    if (files == NULL) {
        abort();
    }
    for (i = 0; i < p->n; i++) {
        files[i].name = p->v[i].file;
        files[i].data = p->v[i].json;
        files[i].len = strlen(p->v[i].json);
    }
    rc = atls_store_put_many(st, dir, files, p->n, done, err, errlen);
    free(files);
    return rc;
}

void
atls_names_pending_free(atls_names_pending_t *p)
{
    size_t i;

    for (i = 0; i < p->n; i++) {
        free(p->v[i].file);
        free(p->v[i].json);
    }
    free(p->v);
    free(p->slots);
    memset(p, 0, sizeof(*p));
}
