/*
 * The mirror object (atls_mirror.h): a Redis store, the node's filesystem
 * mirror, and the generations that tell which side is newer.  Pull and
 * push are in mirror_sync.c, the store ops in mirror_store.c, the
 * announcements in mirror_listen.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mirror_int.h"
#include "store_redis_int.h"
#include "store_int.h"

atls_store_t *
atls_mirror_rs(atls_mirror_t *m, char *err, size_t errlen)
{
    rs_impl_t *ri;

    if (m->rs == NULL) {
        m->rs = atls_store_redis_open(&m->conf, err, errlen);
        return m->rs;
    }
    /* An idle connection the server closed meanwhile (a restart) is found
     * closed now, by a read that does not wait, so that the next command
     * opens a new one: the lease and generation scripts are not sent twice,
     * so they must not meet a dead connection first. */
    ri = m->rs->impl;
    if (ri->c != NULL && atls_redis_state(ri->c) == ATLS_REDIS_READY
        && atls_redis_pending(ri->c) == 0)
    {
        (void) atls_redis_io(ri->c, ATLS_REDIS_WANT_READ);
    }
    return m->rs;
}

int
atls_mirror_redis_down(atls_mirror_t *m)
{
    rs_impl_t *ri;

    if (m->rs == NULL) {
        return 1;
    }
    ri = m->rs->impl;
    return ri->c == NULL || atls_redis_state(ri->c) != ATLS_REDIS_READY;
}

atls_redis_t *
atls_mirror_conn(atls_mirror_t *m, char *err, size_t errlen)
{
    atls_store_t *rs = atls_mirror_rs(m, err, errlen);

    return rs != NULL ? atls_rs_conn(rs->impl, err, errlen) : NULL;
}

char *
atls_mirror_gen_key(atls_mirror_t *m, const char *id)
{
    char *k;

    if (asprintf(&k, "%s{%s}:gen", m->conf.prefix, id) < 0) {
        abort();
    }
    return k;
}

atls_mirror_t *
atls_mirror_open(const atls_redis_conf_t *conf, const char *dir, char *err, size_t errlen)
{
    atls_mirror_t    *m;
    atls_redis_key_t  key;
    char              why[512], *where;

    if (conf->key_file == NULL) {
        snprintf(err, errlen, "redis option key_file: required (private keys are "
                 "encrypted at rest with it)");
        return NULL;
    }
    /* a bad key file is the operator's to fix now, not a Redis outage */
    if (atls_redis_key_load(conf->key_file, &key, err, errlen) != 0) {
        return NULL;
    }
    atls_redis_key_wipe(&key);
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        abort();
    }
    atls_redis_conf_copy(&m->conf, conf);
    if (m->conf.prefix == NULL) {
        m->conf.prefix = atls_strdup(ATLS_REDIS_DEFAULT_PREFIX);
    }
    if (asprintf(&m->channel, "%s%s", m->conf.prefix, ATLS_MIRROR_CHANNEL) < 0
        || asprintf(&m->cluster_key, "%s{/cluster}:gen", m->conf.prefix) < 0
        || asprintf(&m->chal_channel, "%s%s", m->conf.prefix, ATLS_MIRROR_CHAL_CHANNEL) < 0)
    {
        abort();
    }
    m->node_id = conf->node_id != NULL ? atls_strdup(conf->node_id)
                 : atls_mirror_default_node(dir);
    m->fs = atls_store_fs_open(dir, err, errlen);
    if (m->fs == NULL) {
        atls_mirror_free(m);
        return NULL;
    }
    m->store.ops = &atls_mirror_ops;
    m->store.impl = m;
    where = atls_redis_conf_describe(conf);
    if (asprintf(&m->store.location, "%s (mirror %s)", where, dir) < 0) {
        abort();
    }
    free(where);
    if (atls_mirror_rs(m, why, sizeof(why)) == NULL) {
        atls_log(ATLS_LOG_WARN, "mirror %s: %s (serving from the mirror; Redis is "
                 "tried again on each use)", dir, why);
    }
    return m;
}

void
atls_mirror_free(atls_mirror_t *m)
{
    if (m == NULL) {
        return;
    }
    mirror_sync_end(m);
    while (m->locks != NULL) {
        m->store.ops->unlock(&m->store, m->locks->lk);
    }
    atls_redis_free(m->sub);
    atls_store_close(m->rs);
    atls_store_close(m->fs);
    atls_redis_conf_free(&m->conf);
    free(m->channel);
    free(m->cluster_key);
    free(m->chal_channel);
    free(m->node_id);
    free(m->store.location);
    free(m);
}

atls_store_t *
atls_mirror_store(atls_mirror_t *m)
{
    return &m->store;
}

atls_store_t *
atls_mirror_fs(atls_mirror_t *m)
{
    return m->fs;
}

int
atls_mirror_renew(atls_mirror_t *m)
{
    return m->rs != NULL ? atls_store_redis_renew(m->rs) : 0;
}

/* ---- generations ---------------------------------------------------------- */

int
atls_mirror_parse_gen(const char *s, size_t len, uint64_t *gen)
{
    char               buf[32], *end;
    unsigned long long v;

    if (len == 0 || len >= sizeof(buf)) {
        return -1;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v = strtoull(buf, &end, 10);
    if (errno != 0 || end == buf || (*end != '\0' && *end != '\n') || buf[0] == '-') {
        return -1;
    }
    *gen = v;
    return 0;
}

uint64_t
atls_mirror_generation(atls_mirror_t *m, const char *id)
{
    char     *path, *data = NULL, err[256];
    size_t    len = 0;
    uint64_t  gen = 0;

    if (asprintf(&path, "%s/%s", ATLS_MIRROR_GEN_DIR, id) < 0) {
        abort();
    }
    if (m->fs->ops->get(m->fs, path, &data, &len, err, sizeof(err)) == ATLS_STORE_OK
        && atls_mirror_parse_gen(data, len, &gen) != 0)
    {
        /* unreadable: as if none, so the next sync pulls it whole */
        atls_log(ATLS_LOG_WARN, "mirror %s: not a generation, pulled again", path);
        gen = 0;
    }
    free(data);
    free(path);
    return gen;
}

int
atls_mirror_write_generation(atls_mirror_t *m, const char *id, uint64_t gen,
                             char *err, size_t errlen)
{
    char *path, buf[32];
    int   rc;

    if (asprintf(&path, "%s/%s", ATLS_MIRROR_GEN_DIR, id) < 0) {
        abort();
    }
    snprintf(buf, sizeof(buf), "%" PRIu64 "\n", gen);
    rc = m->fs->ops->put(m->fs, path, buf, strlen(buf), 0, err, errlen);
    free(path);
    return rc;
}

int
atls_mirror_set_generation(atls_mirror_t *m, const char *id, uint64_t gen,
                           char *err, size_t errlen)
{
    int rc = atls_mirror_write_generation(m, id, gen, err, errlen);

    /* the mirror's own store-wide generation is what the node's workers
     * watch (as with a fs store): it moves with every change they serve,
     * journaled with the id so that they read that certificate alone */
    if (rc == ATLS_STORE_OK && atls_store_bump_generation_for(m->fs, id) != ATLS_STORE_OK) {
        snprintf(err, errlen, "mirror %s: generation not bumped (see the log)",
                 m->fs->location);
        rc = ATLS_STORE_ERROR;
    }
    return rc;
}

int
atls_mirror_redis_generation(atls_mirror_t *m, const char *id, uint64_t *gen,
                             char *err, size_t errlen)
{
    atls_redis_t *c = atls_mirror_conn(m, err, errlen);
    char         *key = atls_mirror_gen_key(m, id);
    redisReply   *r = NULL;
    int           rc = ATLS_STORE_ERROR;

    *gen = 0;
    if (c == NULL || atls_redis_callv(c, &r, err, errlen, "GET", key, NULL) != 0) {
        goto out;
    }
    if (r->type == REDIS_REPLY_NIL) {
        rc = ATLS_STORE_OK;
    } else if (r->type != REDIS_REPLY_STRING
               || atls_mirror_parse_gen(r->str, r->len, gen) != 0)
    {
        snprintf(err, errlen, "%s key %s: corrupt value: not a generation",
                 m->store.location, key);
    } else {
        rc = ATLS_STORE_OK;
    }

out:
    if (r != NULL) {
        freeReplyObject(r);
    }
    free(key);
    return rc;
}

/* KEYS: lease, fence, gen.  ARGV: token ("" when no lease is checked),
 * fence, floor, mode ("incr": max(gen, floor) + 1; "raise": up to floor,
 * 0 when it already was).  -1 when the lease is stale. */
static const char MIRROR_BUMP[] =
    "if ARGV[1] ~= '' and (redis.call('GET', KEYS[1]) ~= ARGV[1] "
    "    or redis.call('GET', KEYS[2]) ~= ARGV[2]) then return -1 end "
    "local g = tonumber(redis.call('GET', KEYS[3]) or '0') or 0 "
    "local f = tonumber(ARGV[3]) "
    "if ARGV[4] == 'incr' then "
    "  if f > g then g = f end "
    "  g = g + 1 "
    "elseif f > g then g = f "
    "else return 0 end "
    "redis.call('SET', KEYS[3], string.format('%d', g)) "
    "return g";

/* The cluster generation, then "<id> <gen>" on the channel. */
static int
gen_announce(atls_redis_t *c, const char *prefix, const char *where, const char *id,
             uint64_t gen, char *err, size_t errlen)
{
    redisReply *r = NULL;
    char        msg[300], *cluster, *channel;
    int         rc = -1;

    if (asprintf(&cluster, "%s{/cluster}:gen", prefix) < 0
        || asprintf(&channel, "%s%s", prefix, ATLS_MIRROR_CHANNEL) < 0)
    {
        abort();
    }
    snprintf(msg, sizeof(msg), "%s %" PRIu64, id, gen);
    if (atls_redis_callv(c, &r, err, errlen, "INCR", cluster, NULL) != 0) {
        goto out;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s key %s: %.200s", where, cluster, r->str);
        goto out;
    }
    freeReplyObject(r);
    r = NULL;
    if (atls_redis_callv(c, &r, err, errlen, "PUBLISH", channel, msg, NULL) != 0) {
        goto out;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s PUBLISH %s: %.200s", where, channel, r->str);
        goto out;
    }
    rc = 0;

out:
    if (r != NULL) {
        freeReplyObject(r);
    }
    free(cluster);
    free(channel);
    return rc;
}

/* atls_mirror_bump on a connection, a prefix and a name for messages. */
static int
gen_bump(atls_redis_t *c, const char *prefix, const char *where, const char *id,
         const atls_redis_lease_t *lease, int mode, uint64_t floor, uint64_t *gen,
         char *err, size_t errlen)
{
    atls_redis_lease_t  own;
    const char         *keys[3], *args[4];
    size_t              lens[4];
    char                fence[24], fl[24], *gkey, name[300];
    redisReply         *r = NULL;
    int                 rc = ATLS_STORE_ERROR, i;

    if (asprintf(&gkey, "%s{%s}:gen", prefix, id) < 0) {
        abort();
    }
    if (lease == NULL) {
        /* no lease checked, but the same slot's keys all the same */
        snprintf(name, sizeof(name), "cert-%s", id);
        atls_redis_lease_keys(prefix, name, &own);
        own.token[0] = '\0';
        own.fence = 0;
        lease = &own;
    }
    snprintf(fence, sizeof(fence), "%" PRIu64, lease->fence);
    snprintf(fl, sizeof(fl), "%" PRIu64, floor);
    keys[0] = lease->lease_key;
    keys[1] = lease->fence_key;
    keys[2] = gkey;
    args[0] = lease->token;
    args[1] = fence;
    args[2] = fl;
    args[3] = mode == MIRROR_BUMP_INCR ? "incr" : "raise";
    for (i = 0; i < 4; i++) {
        lens[i] = strlen(args[i]);
    }
    if (atls_redis_eval(c, MIRROR_BUMP, 3, keys, 4, args, lens, &r, err, errlen) != 0) {
        goto out;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        snprintf(err, errlen, "%s key %s: %.200s", where, gkey,
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    } else if (r->integer < 0) {
        snprintf(err, errlen, "%s key %s: not bumped: the lease is stale (lost, or a "
                 "newer holder's fence)", where, gkey);
        rc = ATLS_STORE_BUSY;
    } else {
        *gen = (uint64_t) r->integer;
        rc = *gen == 0 ? ATLS_STORE_OK
             : gen_announce(c, prefix, where, id, *gen, err, errlen) == 0 ? ATLS_STORE_OK
             : ATLS_STORE_ERROR;
    }

out:
    if (r != NULL) {
        freeReplyObject(r);
    }
    free(gkey);
    return rc;
}

int
atls_mirror_bump(atls_mirror_t *m, const char *id, const atls_redis_lease_t *lease,
                 int mode, uint64_t floor, uint64_t *gen, char *err, size_t errlen)
{
    atls_redis_t *c = atls_mirror_conn(m, err, errlen);

    *gen = 0;
    return c != NULL ? gen_bump(c, m->conf.prefix, m->store.location, id, lease, mode, floor,
                                gen, err, errlen)
                     : ATLS_STORE_ERROR;
}

int
atls_store_redis_announce(atls_store_t *st, const char *id, uint64_t *gen,
                          char *err, size_t errlen)
{
    rs_impl_t    *ri;
    atls_redis_t *c;
    uint64_t      g = 0;
    int           rc;

    if (st == NULL || st->ops != &atls_rs_ops || !atls_store_id_ok(id)) {
        snprintf(err, errlen, "announce %s: not a Redis store, or not a certificate id",
                 id ? id : "(null)");
        return ATLS_STORE_ERROR;
    }
    ri = st->impl;
    c = atls_rs_conn(ri, err, errlen);
    rc = c != NULL ? gen_bump(c, ri->conf.prefix, st->location, id, NULL, MIRROR_BUMP_INCR,
                              0, &g, err, errlen)
                   : ATLS_STORE_ERROR;
    if (gen != NULL) {
        *gen = g;
    }
    return rc;
}

/* ---- paths ---------------------------------------------------------------------- */

int
atls_mirror_cert_of(const char *path, char *id, size_t idlen)
{
    const char *s, *e;

    if (strncmp(path, "certs/", 6) != 0) {
        return -1;
    }
    s = path + 6;
    e = strchr(s, '/');
    if (e == NULL || e == s || (size_t) (e - s) >= idlen) {
        return -1;
    }
    memcpy(id, s, (size_t) (e - s));
    id[e - s] = '\0';
    return 0;
}

int
atls_mirror_is_private(const char *path)
{
    return atls_rs_must_seal(path);
}
