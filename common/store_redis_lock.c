/*
 * The Redis store's locks: each lock is a lease (redis_lease.c) held by the
 * store, renewed by the store's own calls while its holder keeps working
 * (and by atls_store_redis_renew from a host's timer), released by
 * compare-and-delete.  A holder that dies loses it within
 * ATLS_REDIS_LEASE_MS.  The fenced put lets a deploy land only while the
 * lease and its fencing counter are still the ones it took.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "store_redis_int.h"

/* ---- leases held by this store ---------------------------------------------- */

/* Renews every held lease past a third of its time: what keeps a lock
 * while its holder keeps using the store.  Returns the number lost. */
int
atls_rs_renew_due(atls_store_t *st, int force)
{
    rs_impl_t *rs = st->impl;
    rs_lock_t *l;
    long long  now = atls_rs_now_ms();
    char       err[512];
    int        lost = 0;

    for (l = rs->locks; l != NULL; l = l->next) {
        if (l->lost || (!force && now - l->renewed_ms < l->lease.ttl_ms / 3)) {
            lost += l->lost;
            continue;
        }
        if (atls_rs_conn(rs, err, sizeof(err)) == NULL) {
            atls_log(ATLS_LOG_WARN, "%s", err);
            continue;
        }
        switch (atls_redis_lease_renew(rs->c, &l->lease, err, sizeof(err))) {
        case ATLS_STORE_OK:
            l->renewed_ms = now;
            break;
        case ATLS_STORE_BUSY:
            l->lost = 1;
            lost++;
            atls_log(ATLS_LOG_WARN, "%s", err);
            break;
        default:
            atls_log(ATLS_LOG_WARN, "%s", err);
        }
    }
    return lost;
}

int
atls_store_redis_renew(atls_store_t *st)
{
    return st->ops == &atls_rs_ops ? atls_rs_renew_due(st, 1) : 0;
}

/* ---- locks ------------------------------------------------------------------------ */

int
atls_rs_lock(atls_store_t *st, const char *name, int wait, atls_store_lock_t **out,
        char *err, size_t errlen)
{
    rs_impl_t *rs = st->impl;
    rs_lock_t *l;
    long       delay_ms = 20;
    int        rc;

    *out = NULL;
    if (name == NULL || !atls_store_path_ok(name, 0) || strchr(name, '/') != NULL
        || strlen(name) > 200)
    {
        snprintf(err, errlen, "invalid lock name \"%s\"", name ? name : "(null)");
        return ATLS_STORE_ERROR;
    }
    atls_rs_renew_due(st, 0);
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        abort();
    }
    atls_redis_lease_keys(rs->conf.prefix, name, &l->lease);
    for (;;) {
        if (atls_rs_conn(rs, err, errlen) == NULL) {
            rc = ATLS_STORE_ERROR;
            break;
        }
        rc = atls_redis_lease_acquire(rs->c, &l->lease, ATLS_REDIS_LEASE_MS, err, errlen);
        if (rc != ATLS_STORE_BUSY || !wait) {
            break;
        }
        /* the holder lets go, or its lease runs out: ask again */
        usleep((useconds_t) delay_ms * 1000);
        delay_ms = delay_ms * 2 > 500 ? 500 : delay_ms * 2;
        atls_rs_renew_due(st, 0);
    }
    if (rc != ATLS_STORE_OK) {
        free(l);
        return rc;
    }
    l->renewed_ms = atls_rs_now_ms();
    l->next = rs->locks;
    rs->locks = l;
    /* ours: the fs backend's lock type is not this one (see atls_rs_unlock) */
    *out = (atls_store_lock_t *) l;
    return ATLS_STORE_OK;
}

void
atls_rs_unlock(atls_store_t *st, atls_store_lock_t *lk)
{
    rs_impl_t  *rs = st->impl;
    rs_lock_t **pp, *l = (rs_lock_t *) lk;
    char        err[512];

    for (pp = &rs->locks; *pp != NULL && *pp != l; pp = &(*pp)->next) {
        /* find it */
    }
    if (*pp == NULL) {
        return;   /* not one of ours */
    }
    *pp = l->next;
    if (atls_rs_conn(rs, err, sizeof(err)) == NULL
        || atls_redis_lease_release(rs->c, &l->lease, err, sizeof(err)) == ATLS_STORE_ERROR)
    {
        atls_log(ATLS_LOG_WARN, "%s (the lease runs out by itself)", err);
    }
    free(l);
}

const atls_redis_lease_t *
atls_store_redis_lease(atls_store_t *st, atls_store_lock_t *lk)
{
    rs_impl_t *rs;
    rs_lock_t *l;

    if (st == NULL || st->ops != &atls_rs_ops) {
        return NULL;
    }
    rs = st->impl;
    for (l = rs->locks; l != NULL; l = l->next) {
        if (l == (rs_lock_t *) lk) {
            return &l->lease;
        }
    }
    return NULL;
}

/* KEYS: lease, fence, entry.  ARGV: token, fence, value.  1 written, 0 the
 * lease is stale (and nothing was written). */
static const char RS_PUT_FENCED[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] "
    "   and redis.call('GET', KEYS[2]) == ARGV[2] then "
    "  redis.call('SET', KEYS[3], ARGV[3]) "
    "  return 1 "
    "end "
    "return 0";

/* The "{tag}" part of a key (up to the first '}'), for comparing slots. */
static size_t
rs_tag_span(const char *key, const char **start)
{
    const char *o = strchr(key, '{'), *c = o ? strchr(o, '}') : NULL;

    *start = o;
    return c ? (size_t) (c - o + 1) : 0;
}

int
atls_store_redis_put_fenced(atls_store_t *st, atls_store_lock_t *lk, const char *path,
                            const char *data, size_t len, int is_private,
                            char *err, size_t errlen)
{
    const atls_redis_lease_t *l = atls_store_redis_lease(st, lk);
    const char               *keys[3], *args[3], *t1, *t2;
    size_t                    lens[3], n1, n2;
    char                     *key = NULL, fence[24];
    unsigned char            *val = NULL;
    size_t                    vlen = 0;
    redisReply               *r = NULL;
    int                       rc = ATLS_STORE_ERROR;

    if (l == NULL || !atls_store_path_ok(path, 0) || (data == NULL && len > 0)) {
        snprintf(err, errlen, "fenced put \"%s\": not a lock of this store, or a bad path",
                 path ? path : "(null)");
        return ATLS_STORE_ERROR;
    }
    key = atls_rs_key(st->impl, 'v', path);
    n1 = rs_tag_span(l->lease_key, &t1);
    n2 = rs_tag_span(key, &t2);
    if (n1 == 0 || n1 != n2 || memcmp(t1, t2, n1) != 0) {
        atls_rs_err(st, err, errlen, key, "not in the slot of the lease it is fenced by");
        goto out;
    }
    if (atls_rs_encode(st, key, data ? data : "", len, is_private || atls_rs_must_seal(path),
                       &val, &vlen, err, errlen) != 0
        || atls_rs_conn(st->impl, err, errlen) == NULL)
    {
        goto out;
    }
    snprintf(fence, sizeof(fence), "%llu", (unsigned long long) l->fence);
    keys[0] = l->lease_key;
    keys[1] = l->fence_key;
    keys[2] = key;
    args[0] = l->token;
    lens[0] = strlen(l->token);
    args[1] = fence;
    lens[1] = strlen(fence);
    args[2] = (const char *) val;
    lens[2] = vlen;
    if (atls_redis_eval(((rs_impl_t *) st->impl)->c, RS_PUT_FENCED, 3, keys, 3, args, lens,
                        &r, err, errlen) != 0)
    {
        goto out;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        atls_rs_err(st, err, errlen, key, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    } else if (r->integer == 0) {
        atls_rs_err(st, err, errlen, key, "not written: the lease is stale (lost, or a newer "
               "holder's fence)");
        rc = ATLS_STORE_BUSY;
    } else {
        rc = atls_rs_index_add(st, path, err, errlen);
    }

out:
    if (r != NULL) {
        freeReplyObject(r);
    }
    if (val != NULL) {
        explicit_bzero(val, vlen);
        free(val);
    }
    free(key);
    return rc;
}


/* KEYS: lease, fence, value, log size, parent's index.  ARGV: token,
 * fence, the entry's name.  -1 stale (nothing deleted), else how many of
 * the value and its index entry went. */
static const char RS_DEL_FENCED[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] "
    "   or redis.call('GET', KEYS[2]) ~= ARGV[2] then "
    "  return -1 "
    "end "
    "return redis.call('DEL', KEYS[3], KEYS[4]) + redis.call('SREM', KEYS[5], ARGV[3])";

/* Not an entry of the lease's slot: checked, then deleted as any path. */
static int
rs_del_checked(atls_store_t *st, const atls_redis_lease_t *l, const char *path,
               char *err, size_t errlen)
{
    rs_impl_t *rs = st->impl;
    int        rc;

    if (atls_rs_conn(rs, err, errlen) == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = atls_redis_lease_check(rs->c, l, err, errlen);
    return rc == ATLS_STORE_OK ? st->ops->del(st, path, err, errlen) : rc;
}

int
atls_store_redis_del_fenced(atls_store_t *st, atls_store_lock_t *lk, const char *path,
                            char *err, size_t errlen)
{
    const atls_redis_lease_t *l = atls_store_redis_lease(st, lk);
    const char               *keys[5], *args[3], *t1, *t2, *slash;
    size_t                    n1, n2;
    char                     *vkey, *nkey, *dkey, *dir, fence[24];
    redisReply               *r = NULL;
    int                       rc = ATLS_STORE_ERROR;

    if (l == NULL || !atls_store_path_ok(path, 0) || (slash = strrchr(path, '/')) == NULL) {
        snprintf(err, errlen, "fenced delete \"%s\": not a lock of this store, or a bad "
                 "path", path ? path : "(null)");
        return ATLS_STORE_ERROR;
    }
    dir = strndup(path, (size_t) (slash - path));
    if (dir == NULL) {
        abort();
    }
    vkey = atls_rs_key(st->impl, 'v', path);
    nkey = atls_rs_key(st->impl, 'n', path);
    dkey = atls_rs_key(st->impl, 'd', dir);
    n1 = rs_tag_span(l->lease_key, &t1);
    n2 = rs_tag_span(dkey, &t2);
    if (n1 == 0 || n1 != n2 || memcmp(t1, t2, n1) != 0) {
        rc = rs_del_checked(st, l, path, err, errlen);
        goto out;
    }
    atls_rs_renew_due(st, 0);
    if (atls_rs_conn(st->impl, err, errlen) == NULL) {
        goto out;
    }
    snprintf(fence, sizeof(fence), "%llu", (unsigned long long) l->fence);
    keys[0] = l->lease_key;
    keys[1] = l->fence_key;
    keys[2] = vkey;
    keys[3] = nkey;
    keys[4] = dkey;
    args[0] = l->token;
    args[1] = fence;
    args[2] = slash + 1;
    if (atls_redis_eval(((rs_impl_t *) st->impl)->c, RS_DEL_FENCED, 5, keys, 3, args, NULL,
                        &r, err, errlen) != 0)
    {
        goto out;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        atls_rs_err(st, err, errlen, vkey, r->type == REDIS_REPLY_ERROR ? r->str
                    : "unexpected reply");
    } else if (r->integer < 0) {
        atls_rs_err(st, err, errlen, vkey, "not deleted: the lease is stale (lost, or a "
                    "newer holder's fence)");
        rc = ATLS_STORE_BUSY;
    } else if (r->integer == 0) {
        /* no entry: a directory below the certificate's, or nothing */
        rc = rs_del_checked(st, l, path, err, errlen);
    } else {
        rc = ATLS_STORE_OK;
    }

out:
    if (r != NULL) {
        freeReplyObject(r);
    }
    free(vkey);
    free(nkey);
    free(dkey);
    free(dir);
    return rc;
}
