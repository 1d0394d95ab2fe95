/*
 * The mirror's store ops (atls_mirror_store): the scheduler and the tools
 * use it as any store; where each path goes is in atls_mirror.h.  A
 * certificate's deploy is Redis first (fenced under its lease), then the
 * mirror, then, when its lease is let go, the generation and the
 * announcement.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include "mirror_int.h"

typedef enum {
    ROUTE_REDIS = 0,   /* Redis only */
    ROUTE_BOTH,        /* Redis, then the mirror (certs/, accounts/,
                          counters.json) */
    ROUTE_LOCAL        /* the mirror only (fallback/) */
} route_t;

/* counters.json too: the status page, rendered from the mirror, shows this
 * node's additions at once (the others' come with mirror_counters.c) */
static route_t
route(const char *path)
{
    static const char *const both[] = { "certs", "accounts", "counters.json" };
    size_t                   i, n;

    if (strcmp(path, "fallback") == 0 || strncmp(path, "fallback/", 9) == 0) {
        return ROUTE_LOCAL;
    }
    for (i = 0; i < sizeof(both) / sizeof(both[0]); i++) {
        n = strlen(both[i]);
        if (strncmp(path, both[i], n) == 0 && (path[n] == '\0' || path[n] == '/')) {
            return ROUTE_BOTH;
        }
    }
    return ROUTE_REDIS;
}

static mirror_lock_t *
cert_lock(atls_mirror_t *m, const char *id)
{
    mirror_lock_t *l;

    for (l = m->locks; l != NULL; l = l->next) {
        if (l->id[0] != '\0' && strcmp(l->id, id) == 0) {
            return l;
        }
    }
    return NULL;
}

/* ---- reads ------------------------------------------------------------------ */

static int
ms_get(atls_store_t *st, const char *path, char **data, size_t *len, char *err, size_t errlen)
{
    atls_mirror_t *m = st->impl;
    atls_store_t  *rs;
    route_t        r = path ? route(path) : ROUTE_REDIS;
    int            rc;

    if (r == ROUTE_LOCAL) {
        return m->fs->ops->get(m->fs, path, data, len, err, errlen);
    }
    rs = atls_mirror_rs(m, err, errlen);
    rc = rs != NULL ? rs->ops->get(rs, path, data, len, err, errlen) : ATLS_STORE_ERROR;
    if (rc == ATLS_STORE_ERROR && r == ROUTE_BOTH && atls_mirror_redis_down(m)) {
        /* Redis unreachable: what this node last had */
        atls_log(ATLS_LOG_DEBUG, "mirror: %s: %s; read from the mirror", path, err);
        rc = m->fs->ops->get(m->fs, path, data, len, err, errlen);
    }
    return rc;
}

static int
ms_list(atls_store_t *st, const char *dir, char ***names, size_t *n, char *err, size_t errlen)
{
    atls_mirror_t *m = st->impl;
    atls_store_t  *rs;
    route_t        r = dir ? route(dir) : ROUTE_REDIS;
    int            rc;

    if (r == ROUTE_LOCAL) {
        return m->fs->ops->list(m->fs, dir, names, n, err, errlen);
    }
    rs = atls_mirror_rs(m, err, errlen);
    rc = rs != NULL ? rs->ops->list(rs, dir, names, n, err, errlen) : ATLS_STORE_ERROR;
    if (rc == ATLS_STORE_ERROR && r == ROUTE_BOTH && atls_mirror_redis_down(m)) {
        rc = m->fs->ops->list(m->fs, dir, names, n, err, errlen);
    }
    return rc;
}

/* ---- writes ------------------------------------------------------------------ */

/* A certificate's entries changed in Redis and the mirror: without its
 * lease held here, the generation moves now; with it, at unlock. */
static void
changed(atls_mirror_t *m, const char *path)
{
    char            id[256], err[512];
    mirror_lock_t  *l;
    uint64_t        before, gen;

    if (atls_mirror_cert_of(path, id, sizeof(id)) != 0) {
        return;
    }
    l = cert_lock(m, id);
    if (l != NULL) {
        l->dirty = 1;
        return;
    }
    before = atls_mirror_generation(m, id);
    if (atls_mirror_bump(m, id, NULL, MIRROR_BUMP_INCR, before, &gen, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        atls_log(ATLS_LOG_WARN, "mirror: %s (the other nodes see it at the next sync)", err);
        return;
    }
    if (gen == before + 1) {
        (void) atls_mirror_set_generation(m, id, gen, err, sizeof(err));
    } else if (atls_mirror_sync_one(m, id, err, sizeof(err)) < 0) {
        /* the mirror was behind Redis: it takes the whole of it */
        atls_log(ATLS_LOG_WARN, "mirror: %s", err);
    }
}

/*
 * 1 when Redis already holds exactly data at path: the write would change
 * nothing, so it must not move the certificate's generation either.  Each
 * bump is announced and pulled by every node, whose scheduler then looks
 * at the certificate again; a write that changes nothing but still bumped
 * (bookkeeping every node makes for itself, a meta saved as it was) would
 * make the nodes bump each other's generations without end.
 */
static int
redis_holds(atls_store_t *rs, const char *path, const char *data, size_t len)
{
    char   *cur = NULL, err[256];
    size_t  n = 0;
    int     same;

    same = rs->ops->get(rs, path, &cur, &n, err, sizeof(err)) == ATLS_STORE_OK
           && n == len && (len == 0 || memcmp(cur, data, len) == 0);
    if (cur != NULL) {
        OPENSSL_cleanse(cur, n);    /* may be a private key */
        free(cur);
    }
    return same;
}

static int
ms_put(atls_store_t *st, const char *path, const char *data, size_t len, int is_private,
       char *err, size_t errlen)
{
    atls_mirror_t  *m = st->impl;
    atls_store_t   *rs;
    mirror_lock_t  *l = NULL;
    char            id[256];
    route_t         r = path ? route(path) : ROUTE_REDIS;
    int             rc;

    if (r == ROUTE_LOCAL) {
        return m->fs->ops->put(m->fs, path, data, len, is_private, err, errlen);
    }
    rs = atls_mirror_rs(m, err, errlen);
    if (rs == NULL) {
        return ATLS_STORE_ERROR;
    }
    if (atls_mirror_cert_of(path, id, sizeof(id)) == 0) {
        if (redis_holds(rs, path, data, len)) {
            /* no change: the mirror takes it (it may be behind), no bump */
            return r == ROUTE_BOTH
                   ? m->fs->ops->put(m->fs, path, data, len, is_private, err, errlen)
                   : ATLS_STORE_OK;
        }
        l = cert_lock(m, id);
    }
    /* Redis first: the truth; under the lease, only while it is still ours */
    rc = l != NULL
         ? atls_store_redis_put_fenced(rs, l->lk, path, data, len, is_private, err, errlen)
         : rs->ops->put(rs, path, data, len, is_private, err, errlen);
    if (rc != ATLS_STORE_OK || r != ROUTE_BOTH) {
        return rc;
    }
    rc = m->fs->ops->put(m->fs, path, data, len, is_private, err, errlen);
    if (rc == ATLS_STORE_OK) {
        changed(m, path);
    }
    return rc;
}

static int
ms_del(atls_store_t *st, const char *path, char *err, size_t errlen)
{
    atls_mirror_t *m = st->impl;
    atls_store_t  *rs;
    route_t        r = path ? route(path) : ROUTE_REDIS;
    char           id[256], sub[300];
    mirror_lock_t *l;
    int            rc, lrc;

    if (r == ROUTE_LOCAL) {
        return m->fs->ops->del(m->fs, path, err, errlen);
    }
    rs = atls_mirror_rs(m, err, errlen);
    if (rs == NULL) {
        return ATLS_STORE_ERROR;
    }
    /* under the certificate's lease, only while it is still ours: a holder
     * that was taken over deletes nothing of the newer holder's deploy */
    l = atls_mirror_cert_of(path, id, sizeof(id)) == 0 ? cert_lock(m, id) : NULL;
    rc = l != NULL ? atls_store_redis_del_fenced(rs, l->lk, path, err, errlen)
                   : rs->ops->del(rs, path, err, errlen);
    if ((rc != ATLS_STORE_OK && rc != ATLS_STORE_NOTFOUND) || r != ROUTE_BOTH) {
        return rc;
    }
    lrc = m->fs->ops->del(m->fs, path, err, errlen);
    if (lrc == ATLS_STORE_ERROR) {
        return lrc;
    }
    /* a whole certificate removed is a change of it too */
    snprintf(sub, sizeof(sub), "%s/", path);
    if (rc == ATLS_STORE_OK || lrc == ATLS_STORE_OK) {
        changed(m, atls_mirror_cert_of(path, id, sizeof(id)) == 0 ? path : sub);
    }
    return rc == ATLS_STORE_OK || lrc == ATLS_STORE_OK ? ATLS_STORE_OK : ATLS_STORE_NOTFOUND;
}

static int
ms_append(atls_store_t *st, const char *path, const char *data, size_t len,
          size_t rotate_bytes, unsigned keep, char *err, size_t errlen)
{
    atls_mirror_t *m = st->impl;
    atls_store_t  *rs = atls_mirror_rs(m, err, errlen);

    return rs != NULL ? rs->ops->append(rs, path, data, len, rotate_bytes, keep, err, errlen)
                      : ATLS_STORE_ERROR;
}

/* ---- locks: Redis leases ---------------------------------------------------------- */

static int
ms_lock(atls_store_t *st, const char *name, int wait, atls_store_lock_t **out,
        char *err, size_t errlen)
{
    atls_mirror_t *m = st->impl;
    atls_store_t  *rs = atls_mirror_rs(m, err, errlen);
    mirror_lock_t *l;
    int            rc;

    *out = NULL;
    if (rs == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = rs->ops->lock(rs, name, wait, out, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        abort();
    }
    l->lk = *out;
    if (strncmp(name, "cert-", 5) == 0 && strlen(name + 5) < sizeof(l->id)) {
        snprintf(l->id, sizeof(l->id), "%s", name + 5);
    }
    l->next = m->locks;
    m->locks = l;
    return ATLS_STORE_OK;
}

/* The deploy is done: the generation (fenced: a holder whose lease was
 * taken over announces nothing), the mirror's record of it, then the
 * lease goes. */
static void
ms_unlock(atls_store_t *st, atls_store_lock_t *lk)
{
    atls_mirror_t  *m = st->impl;
    mirror_lock_t **pp, *l;
    uint64_t        before, gen;
    char            err[512];
    int             rc;

    if (lk == NULL) {
        return;
    }
    for (pp = &m->locks; *pp != NULL && (*pp)->lk != lk; pp = &(*pp)->next) {
        /* find it */
    }
    if (*pp == NULL) {
        return;
    }
    l = *pp;
    *pp = l->next;
    if (l->dirty && m->rs != NULL) {
        before = atls_mirror_generation(m, l->id);
        rc = atls_mirror_bump(m, l->id, atls_store_redis_lease(m->rs, lk), MIRROR_BUMP_INCR,
                              before, &gen, err, sizeof(err));
        if (rc != ATLS_STORE_OK) {
            atls_log(ATLS_LOG_WARN, "mirror: deploy of %s not announced: %s", l->id, err);
        } else if (gen == before + 1) {
            if (atls_mirror_set_generation(m, l->id, gen, err, sizeof(err)) != ATLS_STORE_OK) {
                atls_log(ATLS_LOG_WARN, "mirror: %s", err);
            }
        } else if (atls_mirror_sync_one(m, l->id, err, sizeof(err)) < 0) {
            atls_log(ATLS_LOG_WARN, "mirror: %s", err);
        }
    }
    if (m->rs != NULL) {
        m->rs->ops->unlock(m->rs, lk);
    }
    free(l);
}

static void
ms_close(atls_store_t *st)
{
    (void) st;   /* borrowed: atls_mirror_free frees it */
}

const atls_store_ops_t atls_mirror_ops = {
    .name = "redis",
    .get = ms_get,
    .put = ms_put,
    .del = ms_del,
    .list = ms_list,
    .lock = ms_lock,
    .unlock = ms_unlock,
    .close = ms_close,
    .append = ms_append,
};
