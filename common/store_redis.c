/*
 * The Redis store backend: the ops of atls_store.h over the client
 * (redis_conn.c, blocking wrapper redis_sync.c), sealing (redis_seal.c)
 * and leases (redis_lease.c).  The key layout is in docs/store.md
 * ("Redis"):
 *
 *   <P>{<tag>}:v:<path>    an entry: 'p' + the bytes (public), or sealed
 *                          (private; ATLS_REDIS_SEAL_VERSION first); a LIST
 *                          of records for an appended log
 *   <P>{<tag>}:n:<path>    bytes in an appended log (its cap)
 *   <P>{<tag>}:d:<dir>     SET: the names directly under dir ("" = root)
 *   <P>{<tag>}:lease/fence a lock (redis_lease.c)
 *
 * <tag> is the certificate id for certs/<cert-id>/..., so a certificate's
 * entries, its lease and its fence share one Cluster slot; "/<first
 * component>" for everything else.  A cert-id never holds '/', so the two
 * kinds of tag never meet.
 *
 * Directories exist only as index SETs, kept by put and del: listing never
 * scans the keyspace.  An entry is written before it is indexed, so a
 * reader never lists a name it cannot get.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "store_redis_int.h"

#define RS_PATH_MAX     ATLS_STORE_PATH_MAX
#define RS_MAX_DEPTH    8
#define RS_VALUE_MAX    (64u * 1024 * 1024)
#define RS_PLAIN        'p'

long long
atls_rs_now_ms(void)
{
    return atls_redis_now_ms();
}

/* ---- keys ----------------------------------------------------------------- */

/* The hash tag of a path (see the top of the file). */
static void
rs_tag(const char *path, char *tag, size_t len)
{
    const char *slash = strchr(path, '/');

    if (strncmp(path, "certs/", 6) == 0 && path[6] != '\0') {
        const char *end = strchr(path + 6, '/');

        snprintf(tag, len, "%.*s", (int) (end ? end - path - 6 : (long) strlen(path + 6)),
                 path + 6);
        return;
    }
    snprintf(tag, len, "/%.*s", (int) (slash ? slash - path : (long) strlen(path)), path);
}

char *
atls_rs_key(rs_impl_t *rs, char kind, const char *path)
{
    char  tag[RS_PATH_MAX + 2], *k;

    rs_tag(path, tag, sizeof(tag));
    if (asprintf(&k, "%s{%s}:%c:%s", rs->conf.prefix, tag, kind, path) < 0) {
        abort();
    }
    return k;
}

/* Paths whose entries hold private keys or secrets: they must come back
 * sealed, a clear value there is refused (planted, not written by us). */
int
atls_rs_must_seal(const char *path)
{
    size_t n = strlen(path);

    return (strncmp(path, "accounts/", 9) == 0 && n > 12 && strcmp(path + n - 12, "/account.key") == 0)
           || (strncmp(path, "certs/", 6) == 0 && n > 4 && strcmp(path + n - 4, ".pem") == 0)
           || (strncmp(path, "fallback/", 9) == 0 && n > 4 && strcmp(path + n - 4, ".key") == 0)
           || strncmp(path, "challenges/tls-alpn-01/", 23) == 0
           || strcmp(path, "notify.json") == 0;
}

/* ---- calls ---------------------------------------------------------------- */

void
atls_rs_err(atls_store_t *st, char *err, size_t errlen, const char *key, const char *why)
{
    snprintf(err, errlen, "%s key %s: %s", st->location, key, why);
}

/* The connection, opened again when it failed. */
atls_redis_t *
atls_rs_conn(rs_impl_t *rs, char *err, size_t errlen)
{
    if (rs->c != NULL && atls_redis_state(rs->c) == ATLS_REDIS_READY) {
        return rs->c;
    }
    atls_redis_free(rs->c);
    rs->c = atls_redis_open_sync(&rs->conf, err, errlen);
    return rs->c;
}

/* One command on the store's connection.  A connection that was open
 * already may have been closed by the server since (a restart, a client
 * timeout): when it fails so, one new connection and one more try.  A
 * command that timed out is not sent again, nor one the health gate
 * stopped (atls_redis_health_t). */
static int
rs_roundtrip(rs_impl_t *rs, int argc, const char **argv, const size_t *lens,
             redisReply **reply, char *err, size_t errlen)
{
    int           reused = rs->c != NULL && atls_redis_state(rs->c) == ATLS_REDIS_READY;
    atls_redis_t *c = atls_rs_conn(rs, err, errlen);

    if (c == NULL) {
        return -1;
    }
    if (atls_redis_call(c, argc, argv, lens, reply, 0, err, errlen) == 0) {
        return 0;
    }
    if (!reused || strstr(err, "timed out") != NULL
        || (atls_redis_health(c) != NULL && atls_redis_health(c)->unresponsive))
    {
        return -1;
    }
    c = atls_rs_conn(rs, err, errlen);
    return c != NULL && atls_redis_call(c, argc, argv, lens, reply, 0, err, errlen) == 0
           ? 0 : -1;
}

/* One command; an error reply becomes ERROR with Redis's words and key. */
static int
rs_call(atls_store_t *st, int argc, const char **argv, const size_t *lens,
        redisReply **reply, char *err, size_t errlen)
{
    *reply = NULL;
    if (rs_roundtrip(st->impl, argc, argv, lens, reply, err, errlen) != 0) {
        return ATLS_STORE_ERROR;
    }
    if ((*reply)->type == REDIS_REPLY_ERROR) {
        char why[300];

        snprintf(why, sizeof(why), "%s: %.200s", argv[0], (*reply)->str);
        atls_rs_err(st, err, errlen, argc > 1 ? argv[1] : "-", why);
        freeReplyObject(*reply);
        *reply = NULL;
        return ATLS_STORE_ERROR;
    }
    return ATLS_STORE_OK;
}

/* A command whose reply only matters as a count (or OK). */
static int
rs_cmd(atls_store_t *st, long long *count, char *err, size_t errlen, ...)
{
    const char *argv[8], *a;
    int         argc = 0, rc;
    redisReply *r;
    va_list     ap;

    va_start(ap, errlen);
    while ((a = va_arg(ap, const char *)) != NULL && argc < 8) {
        argv[argc++] = a;
    }
    va_end(ap);
    rc = rs_call(st, argc, argv, NULL, &r, err, errlen);
    if (rc == ATLS_STORE_OK) {
        if (count != NULL) {
            *count = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        }
        freeReplyObject(r);
    }
    return rc;
}

/* ---- get ---------------------------------------------------------------------- */

/* An appended log: its records, each with its newline, like the file. */
static int
rs_get_log(atls_store_t *st, const char *key, char **data, size_t *len,
           char *err, size_t errlen)
{
    const char *argv[] = { "LRANGE", key, "0", "-1" };
    redisReply *r;
    size_t      i, total = 0;
    char       *o;

    if (rs_call(st, 4, argv, NULL, &r, err, errlen) != ATLS_STORE_OK) {
        return ATLS_STORE_ERROR;
    }
    for (i = 0; i < r->elements; i++) {
        total += r->element[i]->len + 1;
    }
    o = malloc(total + 1);
    if (o == NULL) {
        abort();
    }
    total = 0;
    for (i = 0; i < r->elements; i++) {
        memcpy(o + total, r->element[i]->str, r->element[i]->len);
        total += r->element[i]->len;
        o[total++] = '\n';
    }
    o[total] = '\0';
    freeReplyObject(r);
    *data = o;
    if (len != NULL) {
        *len = total;
    }
    return ATLS_STORE_OK;
}

/* A stored value back to the bytes put: plain, or opened. */
static int
rs_decode(atls_store_t *st, const char *path, const char *key, const redisReply *r,
          char **data, size_t *len, char *err, size_t errlen)
{
    rs_impl_t *rs = st->impl;
    char       why[256];
    size_t     n;

    if (r->len == 0) {
        atls_rs_err(st, err, errlen, key, "corrupt value: empty");
        return ATLS_STORE_ERROR;
    }
    if (r->str[0] == RS_PLAIN) {
        if (atls_rs_must_seal(path)) {
            atls_rs_err(st, err, errlen, key, "corrupt value: in clear where a sealed "
                   "(encrypted) value belongs, refused");
            return ATLS_STORE_ERROR;
        }
        *data = malloc(r->len);
        if (*data == NULL) {
            abort();
        }
        memcpy(*data, r->str + 1, r->len - 1);
        (*data)[r->len - 1] = '\0';
        n = r->len - 1;
    } else if ((unsigned char) r->str[0] == ATLS_REDIS_SEAL_VERSION) {
        if (atls_redis_open(&rs->key, key, strlen(key), (const unsigned char *) r->str,
                            r->len, data, &n, why, sizeof(why)) != 0)
        {
            atls_rs_err(st, err, errlen, key, why);
            return ATLS_STORE_ERROR;
        }
    } else {
        snprintf(why, sizeof(why), "corrupt value: unknown format (first byte 0x%02x)",
                 (unsigned char) r->str[0]);
        atls_rs_err(st, err, errlen, key, why);
        return ATLS_STORE_ERROR;
    }
    if (len != NULL) {
        *len = n;
    }
    return ATLS_STORE_OK;
}

static int
rs_get(atls_store_t *st, const char *path, char **data, size_t *len, char *err, size_t errlen)
{
    rs_impl_t    *rs = st->impl;
    const char   *argv[2];
    char         *key;
    redisReply   *r = NULL;
    int           rc = ATLS_STORE_ERROR;

    *data = NULL;
    if (len != NULL) {
        *len = 0;
    }
    if (!atls_store_path_ok(path, 0)) {
        snprintf(err, errlen, "invalid store path \"%s\"", path ? path : "(null)");
        return ATLS_STORE_ERROR;
    }
    atls_rs_renew_due(st, 0);
    key = atls_rs_key(rs, 'v', path);
    argv[0] = "GET";
    argv[1] = key;
    if (rs_roundtrip(rs, 2, argv, NULL, &r, err, errlen) != 0) {
        goto out;
    }
    if (r->type == REDIS_REPLY_NIL) {
        atls_rs_err(st, err, errlen, key, "not found");
        rc = ATLS_STORE_NOTFOUND;
    } else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "WRONGTYPE", 9) == 0) {
        rc = rs_get_log(st, key, data, len, err, errlen);
    } else if (r->type != REDIS_REPLY_STRING) {
        atls_rs_err(st, err, errlen, key, r->type == REDIS_REPLY_ERROR ? r->str
               : "corrupt value: not a string");
    } else if (r->len > RS_VALUE_MAX) {
        atls_rs_err(st, err, errlen, key, "value too large");
    } else {
        rc = rs_decode(st, path, key, r, data, len, err, errlen);
    }

out:
    if (r != NULL) {
        freeReplyObject(r);
    }
    free(key);
    return rc;
}

/* ---- the directory index ------------------------------------------------------ */

/* path's parent ("" for a top-level name) into dir, its last part into *base. */
static void
rs_split(const char *path, char *dir, size_t dirlen, const char **base)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL) {
        dir[0] = '\0';
        *base = path;
    } else {
        snprintf(dir, dirlen, "%.*s", (int) (slash - path), path);
        *base = slash + 1;
    }
}

/* Adds path and every directory above it to their parents' indexes. */
int
atls_rs_index_add(atls_store_t *st, const char *path, char *err, size_t errlen)
{
    char        cur[RS_PATH_MAX + 1], dir[RS_PATH_MAX + 1], *key;
    const char *base;
    int         rc = ATLS_STORE_OK;

    snprintf(cur, sizeof(cur), "%s", path);
    while (rc == ATLS_STORE_OK && cur[0] != '\0') {
        rs_split(cur, dir, sizeof(dir), &base);
        key = atls_rs_key(st->impl, 'd', dir);
        rc = rs_cmd(st, NULL, err, errlen, "SADD", key, base, NULL);
        free(key);
        memmove(cur, dir, strlen(dir) + 1);
    }
    return rc;
}

static int
rs_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static int
rs_members(atls_store_t *st, const char *dir, char ***names, size_t *n,
           char *err, size_t errlen)
{
    char       *key = atls_rs_key(st->impl, 'd', dir);
    const char *argv[] = { "SMEMBERS", key };
    redisReply *r;
    char      **v = NULL;
    size_t      i, cnt = 0;
    int         rc;

    *names = NULL;
    *n = 0;
    rc = rs_call(st, 2, argv, NULL, &r, err, errlen);
    free(key);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        v = calloc(r->elements, sizeof(*v));
        if (v == NULL) {
            abort();
        }
        for (i = 0; i < r->elements; i++) {
            const redisReply *e = r->element[i];

            /* a name that is not one path component was not written by us */
            if (e->type == REDIS_REPLY_STRING && strlen(e->str) == e->len
                && strchr(e->str, '/') == NULL && atls_store_path_ok(e->str, 0))
            {
                v[cnt++] = atls_strdup(e->str);
            }
        }
        qsort(v, cnt, sizeof(*v), rs_cmp);
    }
    freeReplyObject(r);
    if (cnt == 0) {
        free(v);
        v = NULL;
    }
    *names = v;
    *n = cnt;
    return ATLS_STORE_OK;
}

static int
rs_list(atls_store_t *st, const char *dir, char ***names, size_t *n, char *err, size_t errlen)
{
    *names = NULL;
    *n = 0;
    if (!atls_store_path_ok(dir, 1)) {
        snprintf(err, errlen, "invalid store path \"%s\"", dir ? dir : "(null)");
        return ATLS_STORE_ERROR;
    }
    atls_rs_renew_due(st, 0);
    return rs_members(st, dir, names, n, err, errlen);
}

/* ---- put / del ------------------------------------------------------------------ */

/* The value stored for data: 'p' + data, or sealed under key's name. */
int
atls_rs_encode(atls_store_t *st, const char *key, const char *data, size_t len, int is_private,
          unsigned char **val, size_t *vlen, char *err, size_t errlen)
{
    rs_impl_t *rs = st->impl;
    char       why[256];

    if (is_private) {
        if (atls_redis_seal(&rs->key, key, strlen(key), data, len, val, vlen,
                            why, sizeof(why)) != 0)
        {
            atls_rs_err(st, err, errlen, key, why);
            return ATLS_STORE_ERROR;
        }
        return ATLS_STORE_OK;
    }
    *val = malloc(len + 1);
    if (*val == NULL) {
        abort();
    }
    (*val)[0] = RS_PLAIN;
    memcpy(*val + 1, data, len);
    *vlen = len + 1;
    return ATLS_STORE_OK;
}

static int
rs_put(atls_store_t *st, const char *path, const char *data, size_t len, int is_private,
       char *err, size_t errlen)
{
    char          *key;
    unsigned char *val = NULL;
    size_t         vlen = 0;
    redisReply    *r;
    int            rc;

    if (!atls_store_path_ok(path, 0) || (data == NULL && len > 0)) {
        snprintf(err, errlen, "invalid store path \"%s\"", path ? path : "(null)");
        return ATLS_STORE_ERROR;
    }
    atls_rs_renew_due(st, 0);
    key = atls_rs_key(st->impl, 'v', path);
    /* a private key's path is sealed whatever the caller says */
    rc = atls_rs_encode(st, key, data ? data : "", len, is_private || atls_rs_must_seal(path),
                        &val, &vlen, err, errlen);
    if (rc == ATLS_STORE_OK) {
        const char  *argv[] = { "SET", key, (const char *) val };
        const size_t lens[] = { 3, strlen(key), vlen };

        rc = rs_call(st, 3, argv, lens, &r, err, errlen);
        if (rc == ATLS_STORE_OK) {
            freeReplyObject(r);
            rc = atls_rs_index_add(st, path, err, errlen);
        }
        if (rc == ATLS_STORE_OK && strcmp(path, "generation") == 0) {
            /* every registry change bumps it last (after its entries and
             * journal): every node's mirror looks at the registry */
            atls_rs_names_announce(st, data, len);
        }
    }
    if (val != NULL) {
        explicit_bzero(val, vlen);
        free(val);
    }
    free(key);
    return rc;
}

/* Removes path's name from its parent's index; *removed: was it there. */
static int
rs_unindex(atls_store_t *st, const char *path, long long *removed, char *err, size_t errlen)
{
    char        dir[RS_PATH_MAX + 1], *key;
    const char *base;
    int         rc;

    rs_split(path, dir, sizeof(dir), &base);
    key = atls_rs_key(st->impl, 'd', dir);
    rc = rs_cmd(st, removed, err, errlen, "SREM", key, base, NULL);
    free(key);
    return rc;
}

/* An entry (its value, and its size for a log), or a directory with
 * everything under it.  Like the fs backend, a directory stays listed when
 * its last entry is deleted (an empty directory), until it is deleted
 * itself; so a put racing with a delete never loses its directory. */
static int
rs_del_at(atls_store_t *st, const char *path, int depth, char *err, size_t errlen)
{
    char     *vkey = atls_rs_key(st->impl, 'v', path), *nkey = atls_rs_key(st->impl, 'n', path);
    char     *dkey = atls_rs_key(st->impl, 'd', path), **names = NULL, child[RS_PATH_MAX + 2];
    long long gone = 0, kids = 0, listed = 0;
    size_t    n = 0, i;
    int       rc;

    rc = rs_cmd(st, &gone, err, errlen, "DEL", vkey, nkey, NULL);
    if (rc == ATLS_STORE_OK && gone == 0) {
        /* not an entry: a directory, removed with everything in it */
        rc = rs_members(st, path, &names, &n, err, errlen);
        for (i = 0; rc == ATLS_STORE_OK && i < n; i++) {
            if (depth >= RS_MAX_DEPTH
                || snprintf(child, sizeof(child), "%s/%s", path, names[i]) >= (int) sizeof(child))
            {
                atls_rs_err(st, err, errlen, dkey, "directory too deep");
                rc = ATLS_STORE_ERROR;
                break;
            }
            rc = rs_del_at(st, child, depth + 1, err, errlen);
            rc = rc == ATLS_STORE_NOTFOUND ? ATLS_STORE_OK : rc;
        }
        atls_strv_free(names, n);
        if (rc == ATLS_STORE_OK) {
            rc = rs_cmd(st, &kids, err, errlen, "DEL", dkey, NULL);
        }
    }
    /* below the top, the parent's index is being deleted anyway */
    if (rc == ATLS_STORE_OK && depth == 0) {
        rc = rs_unindex(st, path, &listed, err, errlen);
    }
    if (rc == ATLS_STORE_OK && gone == 0 && n == 0 && kids == 0 && listed == 0) {
        atls_rs_err(st, err, errlen, vkey, "not found");
        rc = ATLS_STORE_NOTFOUND;
    }
    free(vkey);
    free(nkey);
    free(dkey);
    return rc;
}

static int
rs_del(atls_store_t *st, const char *path, char *err, size_t errlen)
{
    if (!atls_store_path_ok(path, 0)) {
        snprintf(err, errlen, "invalid store path \"%s\"", path ? path : "(null)");
        return ATLS_STORE_ERROR;
    }
    atls_rs_renew_due(st, 0);
    return rs_del_at(st, path, 0, err, errlen);
}

/* ---- append: a capped list ------------------------------------------------------ */

/* KEYS: list, byte count.  ARGV: record, budget (0: none).  Drops the
 * oldest records while over the budget, always keeping the newest. */
static const char RS_APPEND[] =
    "redis.call('RPUSH', KEYS[1], ARGV[1]) "
    "local total = redis.call('INCRBY', KEYS[2], string.len(ARGV[1]) + 1) "
    "local budget = tonumber(ARGV[2]) "
    "while budget > 0 and total > budget and redis.call('LLEN', KEYS[1]) > 1 do "
    "  local old = redis.call('LPOP', KEYS[1]) "
    "  total = redis.call('DECRBY', KEYS[2], string.len(old) + 1) "
    "end "
    "return total";

static int
rs_append(atls_store_t *st, const char *path, const char *data, size_t len,
          size_t rotate_bytes, unsigned keep, char *err, size_t errlen)
{
    rs_impl_t   *rs = st->impl;
    char        *vkey, *nkey, budget[32];
    const char  *keys[2], *args[2];
    size_t       lens[2];
    redisReply  *r = NULL;
    int          rc = ATLS_STORE_ERROR;

    if (!atls_store_path_ok(path, 0) || data == NULL || memchr(data, '\n', len) != NULL) {
        snprintf(err, errlen, "append to \"%s\": invalid path or record",
                 path ? path : "(null)");
        return ATLS_STORE_ERROR;
    }
    atls_rs_renew_due(st, 0);
    vkey = atls_rs_key(rs, 'v', path);
    nkey = atls_rs_key(rs, 'n', path);
    /* the files the fs backend would keep: the live one and `keep` old ones */
    snprintf(budget, sizeof(budget), "%zu", rotate_bytes * ((size_t) keep + 1));
    keys[0] = vkey;
    keys[1] = nkey;
    args[0] = data;
    lens[0] = len;
    args[1] = budget;
    lens[1] = strlen(budget);
    if (atls_rs_conn(rs, err, errlen) == NULL
        || atls_redis_eval(rs->c, RS_APPEND, 2, keys, 2, args, lens, &r, err, errlen) != 0)
    {
        goto out;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        atls_rs_err(st, err, errlen, vkey, strstr(r->str, "WRONGTYPE")
               ? "corrupt value: not a log (wrong type)" : r->str);
        goto out;
    }
    rc = atls_rs_index_add(st, path, err, errlen);

out:
    if (r != NULL) {
        freeReplyObject(r);
    }
    free(vkey);
    free(nkey);
    return rc;
}

/* ---- open / close ------------------------------------------------------------------ */

static void
rs_close(atls_store_t *st)
{
    rs_impl_t *rs = st->impl;

    while (rs->locks != NULL) {
        atls_rs_unlock(st, (atls_store_lock_t *) rs->locks);
    }
    atls_redis_free(rs->c);
    atls_redis_key_wipe(&rs->key);
    atls_redis_conf_free(&rs->conf);
    free(rs);
    free(st->location);
    free(st);
}

const atls_store_ops_t atls_rs_ops = {
    .name = "redis",
    .get = rs_get,
    .put = rs_put,
    .del = rs_del,
    .list = rs_list,
    .lock = atls_rs_lock,
    .unlock = atls_rs_unlock,
    .close = rs_close,
    .append = rs_append,
};

atls_store_t *
atls_store_redis_open(const atls_redis_conf_t *conf, char *err, size_t errlen)
{
    atls_store_t *st;
    rs_impl_t    *rs;

    if (conf->key_file == NULL) {
        snprintf(err, errlen, "redis option key_file: required (private keys are "
                 "encrypted at rest with it)");
        return NULL;
    }
    rs = calloc(1, sizeof(*rs));
    st = calloc(1, sizeof(*st));
    if (rs == NULL || st == NULL) {
        abort();
    }
    atls_redis_conf_copy(&rs->conf, conf);
    st->ops = &atls_rs_ops;
    st->impl = rs;
    st->location = atls_redis_conf_describe(conf);
    if (atls_redis_key_load(conf->key_file, &rs->key, err, errlen) != 0
        || atls_rs_conn(rs, err, errlen) == NULL)
    {
        rs_close(st);
        return NULL;
    }
    return st;
}

char *
atls_store_redis_key(atls_store_t *st, const char *path)
{
    if (st == NULL || st->ops != &atls_rs_ops || !atls_store_path_ok(path, 0)) {
        return NULL;
    }
    return atls_rs_key(st->impl, 'v', path);
}
