/*
 * Leases: one holder of a certificate's order across the cluster.
 *
 * A lease is a key holding a random token with a time to live (SET NX PX):
 * a holder that dies loses it within the TTL and another node takes over.
 * Renewal and release are compare-then-act Lua scripts, so a holder whose
 * lease expired (and was taken by someone else) can neither extend nor
 * delete the new holder's lease.  Each acquisition also increments a
 * fencing counter; a deploy checks that the counter is still the one it
 * got, so a holder that was paused past its TTL and woke up cannot
 * overwrite the newer holder's work.  Lease and counter share a hash tag:
 * every script touches one Redis Cluster slot.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>
#include "atls_redis.h"

/* KEYS: lease, fence.  ARGV: token, ttl ms.  The fence value, or 0 when
 * the lease is held by someone. */
static const char LEASE_ACQUIRE[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then "
    "  return redis.call('INCR', KEYS[2]) "
    "end "
    "return 0";

/* KEYS: lease.  ARGV: token, ttl ms.  1 renewed, 0 not ours. */
static const char LEASE_RENEW[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
    "end "
    "return 0";

/* KEYS: lease.  ARGV: token.  1 deleted, 0 not ours. */
static const char LEASE_RELEASE[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "  return redis.call('DEL', KEYS[1]) "
    "end "
    "return 0";

/* KEYS: lease, fence.  ARGV: token, fence.  1 still ours, 0 stale. */
static const char LEASE_CHECK[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] "
    "   and redis.call('GET', KEYS[2]) == ARGV[2] then "
    "  return 1 "
    "end "
    "return 0";

void
atls_redis_lease_keys(const char *prefix, const char *name, atls_redis_lease_t *l)
{
    memset(l, 0, sizeof(*l));
    if (strncmp(name, "cert-", 5) == 0 && name[5] != '\0') {
        snprintf(l->lease_key, sizeof(l->lease_key), "%s{%s}:lease", prefix, name + 5);
        snprintf(l->fence_key, sizeof(l->fence_key), "%s{%s}:fence", prefix, name + 5);
    } else {
        snprintf(l->lease_key, sizeof(l->lease_key), "%s{/locks/%s}:lease", prefix, name);
        snprintf(l->fence_key, sizeof(l->fence_key), "%s{/locks/%s}:fence", prefix, name);
    }
}

/* An integer reply as the script's answer; -1 + err for anything else. */
static long long
lease_int(redisReply *r, const char *what, const char *key, char *err, size_t errlen)
{
    long long v = -1;

    if (r->type == REDIS_REPLY_INTEGER) {
        v = r->integer;
    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "redis lease %s %s: %.200s", what, key, r->str);
    } else {
        snprintf(err, errlen, "redis lease %s %s: unexpected reply type %d", what, key,
                 r->type);
    }
    freeReplyObject(r);
    return v;
}

static long long
lease_run(atls_redis_t *c, const char *script, const char *what, const atls_redis_lease_t *l,
          int nkeys, int nargs, const char *arg2, char *err, size_t errlen)
{
    const char *keys[2] = { l->lease_key, l->fence_key };
    const char *args[2] = { l->token, arg2 };
    redisReply *r = NULL;

    if (atls_redis_eval(c, script, nkeys, keys, nargs, args, NULL, &r, err, errlen) != 0) {
        return -1;
    }
    return lease_int(r, what, l->lease_key, err, errlen);
}

int
atls_redis_lease_acquire(atls_redis_t *c, atls_redis_lease_t *l, long ttl_ms,
                         char *err, size_t errlen)
{
    unsigned char rnd[ATLS_REDIS_TOKEN_HEX / 2];
    char          ttl[24];
    long long     v;
    size_t        i;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        snprintf(err, errlen, "redis lease %s: RAND_bytes() failed", l->lease_key);
        return ATLS_STORE_ERROR;
    }
    for (i = 0; i < sizeof(rnd); i++) {
        snprintf(l->token + 2 * i, 3, "%02x", rnd[i]);
    }
    l->ttl_ms = ttl_ms > 0 ? ttl_ms : ATLS_REDIS_LEASE_MS;
    snprintf(ttl, sizeof(ttl), "%ld", l->ttl_ms);
    v = lease_run(c, LEASE_ACQUIRE, "acquire", l, 2, 2, ttl, err, errlen);
    if (v < 0) {
        return ATLS_STORE_ERROR;
    }
    if (v == 0) {
        snprintf(err, errlen, "redis lease %s: held by another holder", l->lease_key);
        return ATLS_STORE_BUSY;
    }
    l->fence = (uint64_t) v;
    return ATLS_STORE_OK;
}

int
atls_redis_lease_renew(atls_redis_t *c, atls_redis_lease_t *l, char *err, size_t errlen)
{
    char      ttl[24];
    long long v;

    snprintf(ttl, sizeof(ttl), "%ld", l->ttl_ms > 0 ? l->ttl_ms : ATLS_REDIS_LEASE_MS);
    v = lease_run(c, LEASE_RENEW, "renew", l, 1, 2, ttl, err, errlen);
    if (v < 0) {
        return ATLS_STORE_ERROR;
    }
    if (v == 0) {
        snprintf(err, errlen, "redis lease %s: lost (expired, or taken by another holder)",
                 l->lease_key);
        return ATLS_STORE_BUSY;
    }
    return ATLS_STORE_OK;
}

int
atls_redis_lease_release(atls_redis_t *c, atls_redis_lease_t *l, char *err, size_t errlen)
{
    long long v = lease_run(c, LEASE_RELEASE, "release", l, 1, 1, NULL, err, errlen);

    if (v < 0) {
        return ATLS_STORE_ERROR;
    }
    if (v == 0) {
        snprintf(err, errlen, "redis lease %s: not ours any more, left alone", l->lease_key);
        return ATLS_STORE_BUSY;
    }
    return ATLS_STORE_OK;
}

int
atls_redis_lease_check(atls_redis_t *c, const atls_redis_lease_t *l, char *err, size_t errlen)
{
    char      fence[24];
    long long v;

    snprintf(fence, sizeof(fence), "%" PRIu64, l->fence);
    v = lease_run(c, LEASE_CHECK, "check", l, 2, 2, fence, err, errlen);
    if (v < 0) {
        return ATLS_STORE_ERROR;
    }
    if (v == 0) {
        snprintf(err, errlen, "redis lease %s: stale (fence %s is not the latest, or the "
                 "lease was lost)", l->lease_key, fence);
        return ATLS_STORE_BUSY;
    }
    return ATLS_STORE_OK;
}
