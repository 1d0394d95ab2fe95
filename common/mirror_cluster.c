/*
 * The cluster (atls_mirror.h, "the cluster"): the member registry and the
 * challenges every live node loads before the ordering node lets the CA
 * validate.  Keys (docs/store.md, "Redis: challenges and members"):
 *
 *   <P>{/cluster}:members        ZSET node-id -> expiry (ms, Redis TIME)
 *   <P>{/chal}:<type>:<key>      the answer: 'p' + clear bytes (http-01),
 *                                or sealed (tls-alpn-01: a private key)
 *   <P>{/chal}:ack:<type>:<key>  SET of the nodes that loaded it
 *   <P>{/chal}:index             SET of "<type> <key>": what a joining
 *                                node loads (never KEYS or SCAN)
 *
 * Everything read from Redis is untrusted (another node, or anyone with
 * access to Redis): types, keys and sizes are checked (mirror_chal.c)
 * before the responder sees them, and a value that does not open is
 * reported with its key name.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "atls_acme.h"
#include "mirror_int.h"
#include "store_redis_int.h"

#define CHAL_LOAD_MAX      4096                /* challenges loaded at a join */
#define CHAL_PLAIN         'p'

/* ---- scripts -------------------------------------------------------------- */

/* KEYS: members.  ARGV: node ("" to only read), ttl ms.  Drops the members
 * whose expiry passed (Redis's clock: one clock for every node), enters
 * the node, returns the live ones. */
static const char MEMBERS_SCRIPT[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now)) "
    "if ARGV[1] ~= '' then "
    "  redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1]) "
    "end "
    "return redis.call('ZRANGE', KEYS[1], 0, -1)";

/* KEYS: value, ack, index.  ARGV: value, ttl s, index entry.  A new
 * publication starts with no ack. */
static const char PUT_SCRIPT[] =
    "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) "
    "redis.call('DEL', KEYS[2]) "
    "redis.call('SADD', KEYS[3], ARGV[3]) "
    "return 1";

/* KEYS: value, ack.  ARGV: node.  Acks only what is still published, with
 * the value's time left. */
static const char ACK_SCRIPT[] =
    "local ttl = redis.call('TTL', KEYS[1]) "
    "if ttl <= 0 then return 0 end "
    "redis.call('SADD', KEYS[2], ARGV[1]) "
    "redis.call('EXPIRE', KEYS[2], ttl) "
    "return 1";

/* KEYS: value, ack.  ARGV: node.  {value or nil, 1 when node acked}. */
static const char FETCH_SCRIPT[] =
    "return {redis.call('GET', KEYS[1]), redis.call('SISMEMBER', KEYS[2], ARGV[1])}";

/* KEYS: value, ack, index.  ARGV: index entry. */
static const char DEL_SCRIPT[] =
    "redis.call('DEL', KEYS[1], KEYS[2]) "
    "redis.call('SREM', KEYS[3], ARGV[1]) "
    "return 1";

/* ---- names and checks ------------------------------------------------------- */

typedef struct {
    atls_challenge_type_t t;
    char                  key[MIRROR_CHAL_KEY_MAX + 1];
    char                  entry[MIRROR_CHAL_KEY_MAX + 32];   /* "<type> <key>" */
    char                 *value_key, *ack_key, *index_key;
} chal_ref_t;

static void
chal_ref_free(chal_ref_t *ref)
{
    free(ref->value_key);
    free(ref->ack_key);
    free(ref->index_key);
    memset(ref, 0, sizeof(*ref));
}

/* The keys of (t, key); -1 when t or key does not pass. */
static int
chal_ref(atls_mirror_t *m, atls_challenge_type_t t, const char *key, chal_ref_t *ref)
{
    const char *tn;

    memset(ref, 0, sizeof(*ref));
    if (key == NULL || !atls_mirror_chal_key_ok(t, key)) {
        return -1;
    }
    tn = atls_challenge_type_name(t);
    ref->t = t;
    snprintf(ref->key, sizeof(ref->key), "%s", key);
    snprintf(ref->entry, sizeof(ref->entry), "%s %s", tn, key);
    if (asprintf(&ref->value_key, "%s{/chal}:%s:%s", m->conf.prefix, tn, key) < 0
        || asprintf(&ref->ack_key, "%s{/chal}:ack:%s:%s", m->conf.prefix, tn, key) < 0
        || asprintf(&ref->index_key, "%s{/chal}:index", m->conf.prefix) < 0)
    {
        abort();
    }
    return 0;
}

/* "<type> <key>" (len bytes, untrusted) into ref; -1 when it is not one. */
static int
chal_ref_parse(atls_mirror_t *m, const char *s, size_t len, chal_ref_t *ref)
{
    char                  key[MIRROR_CHAL_KEY_MAX + 1];
    atls_challenge_type_t t;

    memset(ref, 0, sizeof(*ref));
    if (atls_mirror_chal_parse(s, len, &t, key, sizeof(key)) != 0) {
        return -1;
    }
    return chal_ref(m, t, key, ref);
}

/* ---- Redis calls -------------------------------------------------------------- */

/* A script whose reply must be of type want; NULL + err otherwise. */
static redisReply *
cl_eval(atls_mirror_t *m, const char *script, int nkeys, const char **keys, int nargs,
        const char **args, int want, char *err, size_t errlen)
{
    atls_redis_t *c = atls_mirror_conn(m, err, errlen);
    redisReply   *r = NULL;
    size_t        lens[8];
    int           i;

    if (c == NULL) {
        return NULL;
    }
    for (i = 0; i < nargs && i < 8; i++) {
        lens[i] = strlen(args[i]);
    }
    if (atls_redis_eval(c, script, nkeys, keys, nargs, args, lens, &r, err, errlen) != 0) {
        return NULL;
    }
    if (r->type != want) {
        snprintf(err, errlen, "%s key %s: %.200s", m->store.location, keys[0],
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static int
cl_eval_ok(atls_mirror_t *m, const char *script, const chal_ref_t *ref, int nkeys,
           const char *arg, char *err, size_t errlen)
{
    const char *keys[3] = { ref->value_key, ref->ack_key, ref->index_key };
    const char *args[1] = { arg };
    redisReply *r = cl_eval(m, script, nkeys, keys, 1, args, REDIS_REPLY_INTEGER,
                            err, errlen);

    if (r == NULL) {
        return -1;
    }
    freeReplyObject(r);
    return 0;
}

/* The live members (the node entered first when join). */
static redisReply *
cl_members(atls_mirror_t *m, int join, char *err, size_t errlen)
{
    char        key[ATLS_REDIS_PREFIX_MAX + 32], ttl[24];
    const char *keys[1] = { key };
    const char *args[2] = { join ? m->node_id : "", ttl };

    snprintf(key, sizeof(key), "%s{/cluster}:members", m->conf.prefix);
    snprintf(ttl, sizeof(ttl), "%d", ATLS_MIRROR_MEMBER_TTL_MS);
    return cl_eval(m, MEMBERS_SCRIPT, 1, keys, 2, args, REDIS_REPLY_ARRAY, err, errlen);
}

/* A node id from Redis, or NULL when it is not one. */
static const char *
member_of(const redisReply *e)
{
    size_t i;

    if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len > ATLS_REDIS_NODE_MAX) {
        return NULL;
    }
    for (i = 0; i < e->len; i++) {
        if ((unsigned char) e->str[i] <= ' ' || (unsigned char) e->str[i] >= 0x7f) {
            return NULL;
        }
    }
    return e->str;
}

/* ---- a challenge's value -------------------------------------------------------- */

/* The stored value back to the bytes published: clear, or opened. */
static int
chal_decode(atls_mirror_t *m, const chal_ref_t *ref, const redisReply *v, char **data,
            size_t *len, char *err, size_t errlen)
{
    rs_impl_t *ri = m->rs->impl;
    char       why[256];

    *data = NULL;
    if (v->len == 0 || v->len > MIRROR_CHAL_ALPN_MAX + ATLS_REDIS_SEAL_OVERHEAD + 1) {
        snprintf(why, sizeof(why), "corrupt value: %zu bytes", v->len);
    } else if (v->str[0] == CHAL_PLAIN && ref->t == ATLS_CHAL_TLSALPN01) {
        snprintf(why, sizeof(why), "corrupt value: in clear where a sealed (encrypted) "
                 "value belongs, refused");
    } else if (v->str[0] == CHAL_PLAIN) {
        *data = malloc(v->len);
        if (*data == NULL) {
            abort();
        }
        memcpy(*data, v->str + 1, v->len - 1);
        (*data)[v->len - 1] = '\0';
        *len = v->len - 1;
    } else if ((unsigned char) v->str[0] != ATLS_REDIS_SEAL_VERSION) {
        snprintf(why, sizeof(why), "corrupt value: unknown format (first byte 0x%02x)",
                 (unsigned char) v->str[0]);
    } else if (atls_redis_open(&ri->key, ref->value_key, strlen(ref->value_key),
                               (const unsigned char *) v->str, v->len, data, len,
                               why, sizeof(why)) != 0)
    {
        *data = NULL;
    }
    if (*data != NULL && !atls_mirror_chal_data_ok(ref->t, *data, *len, why, sizeof(why))) {
        explicit_bzero(*data, *len);
        free(*data);
        *data = NULL;
    }
    if (*data == NULL) {
        snprintf(err, errlen, "%s key %s: %s", m->store.location, ref->value_key, why);
        return -1;
    }
    return 0;
}

static void
data_free(char *data, size_t len)
{
    if (data != NULL) {
        explicit_bzero(data, len);
        free(data);
    }
}

/* Hands a published challenge to the responder and acks it.  all: also
 * when this node acked it already (a node that starts again has an empty
 * responder).  1 loaded, 0 gone meanwhile (or already here), -1 + err. */
static int
chal_load(atls_mirror_t *m, const chal_ref_t *ref, int all, char *err, size_t errlen)
{
    const char *keys[2] = { ref->value_key, ref->ack_key };
    const char *args[1] = { m->node_id };
    redisReply *r, *v;
    char       *data = NULL, why[256];
    size_t      len = 0;
    int         rc = -1;

    r = cl_eval(m, FETCH_SCRIPT, 2, keys, 1, args, REDIS_REPLY_ARRAY, err, errlen);
    if (r == NULL) {
        return -1;
    }
    if (r->elements != 2 || r->element[1]->type != REDIS_REPLY_INTEGER) {
        snprintf(err, errlen, "%s key %s: unexpected reply", m->store.location,
                 ref->value_key);
        goto out;
    }
    v = r->element[0];
    if (v->type == REDIS_REPLY_NIL || (!all && r->element[1]->integer == 1)) {
        rc = 0;
        goto out;
    }
    if (v->type != REDIS_REPLY_STRING) {
        snprintf(err, errlen, "%s key %s: corrupt value: not a string", m->store.location,
                 ref->value_key);
        goto out;
    }
    if (chal_decode(m, ref, v, &data, &len, err, errlen) != 0) {
        goto out;
    }
    why[0] = '\0';
    if (m->responder == NULL
        || m->responder(m->responder_ctx, 1, ref->t, ref->key, data, len, why,
                        sizeof(why)) != 0)
    {
        snprintf(err, errlen, "challenge %s: not loaded here: %s", ref->entry,
                 m->responder == NULL ? "no responder" : why[0] ? why : "responder failed");
        goto out;
    }
    if (cl_eval_ok(m, ACK_SCRIPT, ref, 2, m->node_id, err, errlen) != 0) {
        goto out;
    }
    rc = 1;

out:
    data_free(data, len);
    freeReplyObject(r);
    return rc;
}

/* Every challenge in the index (a node that joins mid-order); the ones
 * whose value expired leave the index. */
static int
chal_load_all(atls_mirror_t *m, char *err, size_t errlen)
{
    atls_redis_t *c = atls_mirror_conn(m, err, errlen);
    redisReply   *r = NULL;
    chal_ref_t    ref;
    char          why[512], index_key[ATLS_REDIS_PREFIX_MAX + 16];
    size_t        i;
    int           rc = -1, one;

    snprintf(index_key, sizeof(index_key), "%s{/chal}:index", m->conf.prefix);
    if (c == NULL
        || atls_redis_callv(c, &r, err, errlen, "SMEMBERS", index_key, NULL) != 0)
    {
        goto out;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "%s key %s: not a set", m->store.location, index_key);
        goto out;
    }
    for (i = 0; i < r->elements && i < CHAL_LOAD_MAX; i++) {
        const redisReply *e = r->element[i];

        if (e->type != REDIS_REPLY_STRING || chal_ref_parse(m, e->str, e->len, &ref) != 0) {
            atls_log(ATLS_LOG_WARN, "mirror: key %s: an entry that names no challenge, "
                     "ignored", index_key);
            continue;
        }
        one = chal_load(m, &ref, 1, why, sizeof(why));
        if (one < 0 && atls_mirror_redis_down(m)) {
            snprintf(err, errlen, "%s", why);
            chal_ref_free(&ref);
            goto out;
        }
        if (one < 0) {
            atls_log(ATLS_LOG_WARN, "mirror: %s", why);
        } else if (one == 0) {
            /* expired: the index forgets it */
            (void) cl_eval_ok(m, DEL_SCRIPT, &ref, 3, ref.entry, why, sizeof(why));
        }
        chal_ref_free(&ref);
    }
    rc = 0;

out:
    if (r != NULL) {
        freeReplyObject(r);
    }
    return rc;
}

static void
chal_announce(atls_mirror_t *m, char sign, const chal_ref_t *ref, char *err, size_t errlen,
              int *rc)
{
    atls_redis_t *c = atls_mirror_conn(m, err, errlen);
    redisReply   *r = NULL;
    char          msg[sizeof(ref->entry) + 2];

    snprintf(msg, sizeof(msg), "%c%s", sign, ref->entry);
    if (c == NULL || atls_redis_callv(c, &r, err, errlen, "PUBLISH", m->chal_channel, msg,
                                      NULL) != 0)
    {
        *rc = -1;
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s PUBLISH %s: %.200s", m->store.location, m->chal_channel,
                 r->str);
        *rc = -1;
    }
    freeReplyObject(r);
}

/* ---- the contract ------------------------------------------------------------------ */

void
atls_mirror_set_responder(atls_mirror_t *m, atls_mirror_chal_fn fn, void *ctx)
{
    m->responder = fn;
    m->responder_ctx = ctx;
}

const char *
atls_mirror_node_id(atls_mirror_t *m)
{
    return m->node_id;
}

int
atls_mirror_join(atls_mirror_t *m, char *err, size_t errlen)
{
    redisReply *r = cl_members(m, 1, err, errlen);
    char        why[512];

    if (r == NULL) {
        m->loaded = 0;      /* Redis may come back empty: load again then */
        return -1;
    }
    freeReplyObject(r);
    if (!m->loaded) {
        if (chal_load_all(m, err, errlen) != 0) {
            return -1;
        }
        m->loaded = 1;
    }
    if (atls_mirror_counters_pull(m, why, sizeof(why)) < 0) {
        atls_log(ATLS_LOG_WARN, "mirror: the status page's counters: %s", why);
    }
    return 0;
}

void
atls_mirror_leave(atls_mirror_t *m)
{
    atls_redis_t *c;
    redisReply   *r = NULL;
    char          err[512], key[ATLS_REDIS_PREFIX_MAX + 32];

    snprintf(key, sizeof(key), "%s{/cluster}:members", m->conf.prefix);
    c = atls_mirror_conn(m, err, sizeof(err));
    if (c == NULL || atls_redis_callv(c, &r, err, sizeof(err), "ZREM", key, m->node_id,
                                      NULL) != 0)
    {
        atls_log(ATLS_LOG_WARN, "mirror: node %s does not leave the members at once "
                 "(it expires within %d ms): %s", m->node_id, ATLS_MIRROR_MEMBER_TTL_MS, err);
        return;
    }
    freeReplyObject(r);
    m->loaded = 0;
}

int
atls_mirror_members(atls_mirror_t *m, char ***ids, size_t *n, char *err, size_t errlen)
{
    redisReply *r = cl_members(m, 0, err, errlen);
    size_t      i;

    *ids = NULL;
    *n = 0;
    if (r == NULL) {
        return -1;
    }
    *ids = calloc(r->elements + 1, sizeof(**ids));
    if (*ids == NULL) {
        abort();
    }
    for (i = 0; i < r->elements; i++) {
        const char *id = member_of(r->element[i]);

        if (id != NULL) {
            (*ids)[(*n)++] = atls_strdup(id);
        }
    }
    freeReplyObject(r);
    return 0;
}

int
atls_mirror_challenge_publish(atls_mirror_t *m, atls_challenge_type_t t, const char *key,
                              const char *data, size_t len, char *err, size_t errlen)
{
    chal_ref_t     ref;
    unsigned char *val = NULL;
    size_t         vlen = 0;
    const char    *keys[3], *args[3];
    size_t         lens[3];
    char           ttl[16], why[256];
    redisReply    *r = NULL;
    atls_redis_t  *c;
    int            rc = -1, stored = 0, answered = 0;

    if (chal_ref(m, t, key, &ref) != 0) {
        snprintf(err, errlen, "challenge %s %s: not a challenge the cluster shares",
                 t == ATLS_CHAL_HTTP01 || t == ATLS_CHAL_TLSALPN01
                 ? atls_challenge_type_name(t) : "?", key ? key : "");
        return -1;
    }
    if (!atls_mirror_chal_data_ok(t, data, len, why, sizeof(why))) {
        snprintf(err, errlen, "challenge %s: %s", ref.entry, why);
        goto out;
    }
    c = atls_mirror_conn(m, err, errlen);
    if (c == NULL || atls_rs_encode(m->rs, ref.value_key, data, len,
                                    t == ATLS_CHAL_TLSALPN01, &val, &vlen, err, errlen)
                     != ATLS_STORE_OK)
    {
        goto out;
    }
    snprintf(ttl, sizeof(ttl), "%d", ATLS_MIRROR_CHAL_TTL_S);
    keys[0] = ref.value_key;
    keys[1] = ref.ack_key;
    keys[2] = ref.index_key;
    args[0] = (const char *) val;
    args[1] = ttl;
    args[2] = ref.entry;
    lens[0] = vlen;
    lens[1] = strlen(ttl);
    lens[2] = strlen(ref.entry);
    if (atls_redis_eval(c, PUT_SCRIPT, 3, keys, 3, args, lens, &r, err, errlen) != 0) {
        goto out;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        snprintf(err, errlen, "%s key %s: %.200s", m->store.location, ref.value_key,
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        goto out;
    }
    stored = 1;
    why[0] = '\0';
    if (m->responder == NULL
        || m->responder(m->responder_ctx, 1, t, ref.key, data, len, why, sizeof(why)) != 0)
    {
        snprintf(err, errlen, "challenge %s: not answered here: %s", ref.entry,
                 m->responder == NULL ? "no responder" : why[0] ? why : "responder failed");
        goto out;
    }
    answered = 1;
    rc = cl_eval_ok(m, ACK_SCRIPT, &ref, 2, m->node_id, err, errlen);
    if (rc == 0) {
        chal_announce(m, '+', &ref, err, errlen, &rc);
    }

out:
    if (rc != 0 && answered) {
        (void) m->responder(m->responder_ctx, 0, t, ref.key, NULL, 0, why, sizeof(why));
    }
    if (rc != 0 && stored) {
        (void) cl_eval_ok(m, DEL_SCRIPT, &ref, 3, ref.entry, why, sizeof(why));
    }
    if (r != NULL) {
        freeReplyObject(r);
    }
    if (val != NULL) {
        explicit_bzero(val, vlen);
        free(val);
    }
    chal_ref_free(&ref);
    return rc;
}

void
atls_mirror_challenge_withdraw(atls_mirror_t *m, atls_challenge_type_t t, const char *key)
{
    chal_ref_t ref;
    char       err[512], why[256];
    int        rc = 0;

    if (chal_ref(m, t, key, &ref) != 0) {
        return;
    }
    if (m->responder != NULL) {
        (void) m->responder(m->responder_ctx, 0, t, ref.key, NULL, 0, why, sizeof(why));
    }
    if (cl_eval_ok(m, DEL_SCRIPT, &ref, 3, ref.entry, err, sizeof(err)) != 0) {
        rc = -1;
    } else {
        chal_announce(m, '-', &ref, err, sizeof(err), &rc);
    }
    if (rc != 0) {
        atls_log(ATLS_LOG_WARN, "mirror: challenge %s not withdrawn from the cluster (it "
                 "expires within %d s): %s", ref.entry, ATLS_MIRROR_CHAL_TTL_S, err);
    }
    chal_ref_free(&ref);
}

/* ids (the live members) not in acks, as "a,b,c" appended to *out. */
static void
missing_add(char **out, const char *id)
{
    char *s;

    if (asprintf(&s, "%s%s%s", *out ? *out : "", *out ? "," : "", id) < 0) {
        abort();
    }
    free(*out);
    *out = s;
}

int
atls_mirror_challenge_ready(atls_mirror_t *m, atls_challenge_type_t t, const char *key,
                            char **missing, char *err, size_t errlen)
{
    chal_ref_t    ref;
    redisReply   *members = NULL, *acks = NULL;
    atls_redis_t *c;
    char         *miss = NULL;
    size_t        i, j;
    int           rc = -1;

    if (missing != NULL) {
        *missing = NULL;
    }
    if (chal_ref(m, t, key, &ref) != 0) {
        snprintf(err, errlen, "challenge %s: not a challenge the cluster shares",
                 key ? key : "");
        return -1;
    }
    members = cl_members(m, 0, err, errlen);
    c = members != NULL ? atls_mirror_conn(m, err, errlen) : NULL;
    if (c == NULL || atls_redis_callv(c, &acks, err, errlen, "SMEMBERS", ref.ack_key,
                                      NULL) != 0)
    {
        goto out;
    }
    if (acks->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "%s key %s: not a set", m->store.location, ref.ack_key);
        goto out;
    }
    for (i = 0; i < members->elements; i++) {
        const char *id = member_of(members->element[i]);
        int         acked = 0;

        for (j = 0; id != NULL && j < acks->elements && !acked; j++) {
            const redisReply *a = acks->element[j];

            acked = a->type == REDIS_REPLY_STRING && a->len == strlen(id)
                    && memcmp(a->str, id, a->len) == 0;
        }
        if (id != NULL && !acked) {
            missing_add(&miss, id);
        }
    }
    rc = miss == NULL ? 1 : 0;

out:
    if (missing != NULL) {
        *missing = miss;
    } else {
        free(miss);
    }
    if (members != NULL) {
        freeReplyObject(members);
    }
    if (acks != NULL) {
        freeReplyObject(acks);
    }
    chal_ref_free(&ref);
    return rc;
}

/* ---- announcements (from mirror_listen.c) ----------------------------------------- */

void
atls_mirror_chal_message(atls_mirror_t *m, const char *payload, size_t len)
{
    chal_ref_t ref;
    char       err[512], why[256];

    if (len < 2 || (payload[0] != '+' && payload[0] != '-')
        || chal_ref_parse(m, payload + 1, len - 1, &ref) != 0)
    {
        atls_log(ATLS_LOG_WARN, "mirror: %s: not a challenge announcement, ignored",
                 m->chal_channel);
        return;
    }
    if (payload[0] == '-') {
        if (m->responder != NULL) {
            (void) m->responder(m->responder_ctx, 0, ref.t, ref.key, NULL, 0, why,
                                sizeof(why));
        }
    } else if (chal_load(m, &ref, 0, err, sizeof(err)) < 0) {
        atls_log(ATLS_LOG_WARN, "mirror: %s", err);
    }
    chal_ref_free(&ref);
}
