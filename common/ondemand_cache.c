/*
 * The on-demand gate's verdict cache: a hash map of names with a bound,
 * the least recently used entry evicted when it is full, each entry
 * valid until its own expiry.  A flood of random SNI names therefore
 * costs at most `bound` entries of memory, whatever the flood's size.
 *
 * The hash is keyed with a random seed per cache: the names come from
 * the network, and a fixed hash would let a client pile them into one
 * chain.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "ondemand_int.h"

typedef struct od_entry_s od_entry_t;

struct od_entry_s {
    od_entry_t *chain;          /* next in its hash bucket */
    od_entry_t *newer, *older;  /* the LRU list */
    time_t      expires;
    long        aux;
    int         value;
    uint64_t    hash;
    char        name[];
};

struct od_cache_s {
    od_entry_t **bucket;
    size_t       mask;          /* buckets - 1 (a power of two >= bound) */
    size_t       n, bound;
    od_entry_t  *newest, *oldest;
    uint64_t     seed;
};

static uint64_t
cache_hash(const od_cache_t *c, const char *s)
{
    uint64_t h = c->seed;

    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char) *s) * 0x100000001b3ULL;
        h ^= h >> 32;
    }
    h *= 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 31);
}

od_cache_t *
od_cache_new(size_t bound)
{
    od_cache_t *c = calloc(1, sizeof(*c));
    size_t      buckets = 16;

    if (c == NULL) {
        return NULL;
    }
    while (buckets < bound && buckets < ((size_t) 1 << 30)) {
        buckets <<= 1;
    }
    c->bucket = calloc(buckets, sizeof(*c->bucket));
    if (c->bucket == NULL) {
        free(c);
        return NULL;
    }
    c->mask = buckets - 1;
    c->bound = bound > 0 ? bound : 1;
    c->seed = atls_random_u64() | 1;
    return c;
}

static void
cache_unlink(od_cache_t *c, od_entry_t *e)
{
    if (e->newer != NULL) {
        e->newer->older = e->older;
    } else {
        c->newest = e->older;
    }
    if (e->older != NULL) {
        e->older->newer = e->newer;
    } else {
        c->oldest = e->newer;
    }
    e->newer = e->older = NULL;
}

static void
cache_push(od_cache_t *c, od_entry_t *e)
{
    e->newer = NULL;
    e->older = c->newest;
    if (c->newest != NULL) {
        c->newest->newer = e;
    }
    c->newest = e;
    if (c->oldest == NULL) {
        c->oldest = e;
    }
}

static od_entry_t **
cache_find(od_cache_t *c, const char *name, uint64_t h)
{
    od_entry_t **pp = &c->bucket[h & c->mask];

    while (*pp != NULL && ((*pp)->hash != h || strcmp((*pp)->name, name) != 0)) {
        pp = &(*pp)->chain;
    }
    return pp;
}

static void
cache_drop(od_cache_t *c, od_entry_t *e)
{
    od_entry_t **pp = cache_find(c, e->name, e->hash);

    if (*pp == e) {
        *pp = e->chain;
    }
    cache_unlink(c, e);
    free(e);
    c->n--;
}

void
od_cache_free(od_cache_t *c)
{
    od_entry_t *e, *next;

    if (c == NULL) {
        return;
    }
    for (e = c->newest; e != NULL; e = next) {
        next = e->older;
        free(e);
    }
    free(c->bucket);
    free(c);
}

int
od_cache_get(od_cache_t *c, const char *name, time_t now, int *value, long *aux)
{
    uint64_t     h = cache_hash(c, name);
    od_entry_t  *e = *cache_find(c, name, h);

    if (e == NULL) {
        return 0;
    }
    if (e->expires <= now) {
        cache_drop(c, e);
        return 0;
    }
    cache_unlink(c, e);
    cache_push(c, e);
    *value = e->value;
    *aux = e->aux;
    return 1;
}

int
od_cache_put(od_cache_t *c, const char *name, int value, long aux, time_t expires)
{
    uint64_t     h = cache_hash(c, name);
    od_entry_t **pp = cache_find(c, name, h), *e = *pp;
    size_t       len = strlen(name);

    if (e == NULL) {
        if (c->n >= c->bound) {
            cache_drop(c, c->oldest);
            pp = cache_find(c, name, h);    /* the chain may have changed */
        }
        e = malloc(sizeof(*e) + len + 1);
        if (e == NULL) {
            return -1;
        }
        memcpy(e->name, name, len + 1);
        e->hash = h;
        e->chain = NULL;
        *pp = e;
        c->n++;
    } else {
        cache_unlink(c, e);
    }
    e->value = value;
    e->aux = aux;
    e->expires = expires;
    cache_push(c, e);
    return 0;
}

size_t
od_cache_count(const od_cache_t *c)
{
    return c != NULL ? c->n : 0;
}
