/*
 * Pull and push between Redis and the mirror (atls_mirror.h): a
 * certificate's directory is read whole from one side before anything is
 * written to the other, so a failure midway (Redis stopped) leaves the
 * other side as it was; each file is written atomically by the backend
 * (the fs store's temp file + rename), so nothing is ever torn.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mirror_int.h"
#include "store_int.h"
#include "store_redis_int.h"

#define MIRROR_PULL_TRIES  3   /* a deploy landing while we read: read again */
#define MIRROR_SYNC_SLICE_MS 1000  /* atls_mirror_sync: a store bump this often */

typedef struct {
    char   *name;
    char   *data;
    size_t  len;
} mirror_file_t;

typedef struct {
    mirror_file_t *f;
    size_t         n;
} mirror_set_t;

static void
set_free(mirror_set_t *s)
{
    size_t i;

    for (i = 0; i < s->n; i++) {
        if (s->f[i].data != NULL) {
            explicit_bzero(s->f[i].data, s->f[i].len);   /* keys among them */
        }
        free(s->f[i].data);
        free(s->f[i].name);
    }
    free(s->f);
    s->f = NULL;
    s->n = 0;
}

static const mirror_file_t *
set_find(const mirror_set_t *s, const char *name)
{
    size_t i;

    for (i = 0; i < s->n; i++) {
        if (strcmp(s->f[i].name, name) == 0) {
            return &s->f[i];
        }
    }
    return NULL;
}

/* Every entry directly under dir in st (an entry gone meanwhile is
 * skipped); an empty set when dir is not there. */
static int
read_dir(atls_store_t *st, const char *dir, mirror_set_t *s, char *err, size_t errlen)
{
    char  **names = NULL, *path;
    size_t  n = 0, i;
    int     rc;

    s->f = NULL;
    s->n = 0;
    rc = st->ops->list(st, dir, &names, &n, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        return ATLS_STORE_OK;
    }
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    s->f = calloc(n ? n : 1, sizeof(*s->f));
    if (s->f == NULL) {
        abort();
    }
    for (i = 0; rc == ATLS_STORE_OK && i < n; i++) {
        mirror_file_t *f = &s->f[s->n];

        path = atls_store_cat(dir, "/", names[i], NULL);
        rc = st->ops->get(st, path, &f->data, &f->len, err, errlen);
        free(path);
        if (rc == ATLS_STORE_OK) {
            f->name = atls_strdup(names[i]);
            s->n++;
        } else if (rc == ATLS_STORE_NOTFOUND) {
            rc = ATLS_STORE_OK;
        }
    }
    atls_strv_free(names, n);
    if (rc != ATLS_STORE_OK) {
        set_free(s);
    }
    return rc;
}

/* How a side is written: the fs mirror, or Redis (fenced under lk when
 * lk is not NULL). */
typedef struct {
    atls_store_t      *st;
    atls_store_lock_t *lk;
} mirror_dst_t;

/* The mirror's files of one certificate pulled alone (an announcement, or
 * a pull that deletes files) are written with put_nosync (each file still
 * fsync'd before its rename) and their directory fsync'd once by
 * write_dir.  A step of a sync writes the others in a batch with one
 * syncfs (mirror_batch.c): at a few fsyncs a certificate a node filling
 * an empty mirror under I/O load was bound by them (5-7 certificates/s
 * with 10,000 to pull, bench/cluster.sh). */
static int
dst_put(const mirror_dst_t *d, const char *path, const mirror_file_t *f, int *unsynced,
        char *err, size_t errlen)
{
    int priv = atls_mirror_is_private(path);

    if (d->lk != NULL) {
        return atls_store_redis_put_fenced(d->st, d->lk, path, f->data, f->len, priv,
                                           err, errlen);
    }
    if (d->st->ops->put_nosync != NULL && d->st->ops->sync_dir != NULL) {
        *unsynced = 1;
        return d->st->ops->put_nosync(d->st, path, f->data, f->len, priv, err, errlen);
    }
    return d->st->ops->put(d->st, path, f->data, f->len, priv, err, errlen);
}

static int
dst_del(const mirror_dst_t *d, const char *path, char *err, size_t errlen)
{
    int rc = d->lk != NULL ? atls_store_redis_del_fenced(d->st, d->lk, path, err, errlen)
                           : d->st->ops->del(d->st, path, err, errlen);

    return rc == ATLS_STORE_NOTFOUND ? ATLS_STORE_OK : rc;
}

/* Makes dir in d hold s: writes what differs; with prune, deletes what s
 * does not hold (and dir itself when s is empty). */
static int
write_dir(const mirror_dst_t *d, const char *dir, const mirror_set_t *s, int prune,
          char *err, size_t errlen)
{
    mirror_set_t  have;
    char         *path;
    size_t        i;
    int           rc, unsynced = 0;

    rc = read_dir(d->st, dir, &have, err, errlen);
    for (i = 0; rc == ATLS_STORE_OK && i < s->n; i++) {
        const mirror_file_t *h = set_find(&have, s->f[i].name);

        if (h != NULL && h->len == s->f[i].len && memcmp(h->data, s->f[i].data, h->len) == 0) {
            continue;
        }
        path = atls_store_cat(dir, "/", s->f[i].name, NULL);
        rc = dst_put(d, path, &s->f[i], &unsynced, err, errlen);
        free(path);
    }
    if (unsynced) {
        /* the renames durable before anything that names them (the
         * certificate's generation) is written; after a failed put too */
        char why[256];

        if (rc == ATLS_STORE_OK) {
            rc = d->st->ops->sync_dir(d->st, dir, err, errlen);
        } else {
            (void) d->st->ops->sync_dir(d->st, dir, why, sizeof(why));
        }
    }
    for (i = 0; prune && rc == ATLS_STORE_OK && i < have.n; i++) {
        if (set_find(s, have.f[i].name) == NULL) {
            path = atls_store_cat(dir, "/", have.f[i].name, NULL);
            rc = dst_del(d, path, err, errlen);
            free(path);
        }
    }
    if (prune && rc == ATLS_STORE_OK && s->n == 0) {
        rc = dst_del(d, dir, err, errlen);
    }
    set_free(&have);
    return rc;
}

/* What came from Redis is checked before it is served: meta.json must be
 * this certificate's. */
static int
check_set(atls_mirror_t *m, const char *id, const mirror_set_t *s, char *err, size_t errlen)
{
    const mirror_file_t *f = set_find(s, "meta.json");
    atls_cert_meta_t     meta;
    char                 why[256];
    int                  rc = 0;

    if (f == NULL) {
        if (s->n == 0) {
            return 0;   /* the certificate was removed */
        }
        snprintf(err, errlen, "%s: certs/%s: entries without a meta.json, not mirrored",
                 m->store.location, id);
        return -1;
    }
    memset(&meta, 0, sizeof(meta));
    if (atls_cert_meta_from_json(f->data, f->len, &meta, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: certs/%s/meta.json: %s", m->store.location, id, why);
        rc = -1;
    } else if (meta.id == NULL || strcmp(meta.id, id) != 0) {
        snprintf(err, errlen, "%s: certs/%s/meta.json: id \"%s\" is not the certificate's",
                 m->store.location, id, meta.id ? meta.id : "");
        rc = -1;
    }
    atls_cert_meta_free(&meta);
    return rc;
}

/* With a batch (a step of a sync): the files of s the mirror does not
 * hold yet go to b, the set's files moved there (1); 0 when the mirror
 * holds a file s does not (or s is empty: the certificate was removed):
 * those deletions are written at once by write_dir; -1 + err. */
static int
batch_take(atls_mirror_t *m, mirror_batch_t *b, const char *id, uint64_t gen,
           const char *dir, mirror_set_t *s, char *err, size_t errlen)
{
    mirror_set_t        have;
    atls_store_file_t  *f;
    const mirror_file_t *h;
    char               *path;
    size_t              i, k = 0;
    int                 prune = s->n == 0;

    if (read_dir(m->fs, dir, &have, err, errlen) != ATLS_STORE_OK) {
        return -1;
    }
    for (i = 0; !prune && i < have.n; i++) {
        prune = set_find(s, have.f[i].name) == NULL;
    }
    f = calloc(s->n + 1, sizeof(*f));
    if (f == NULL) {
        abort();
    }
    for (i = 0; !prune && i < s->n; i++) {
        h = set_find(&have, s->f[i].name);
        if (h != NULL && h->len == s->f[i].len
            && memcmp(h->data, s->f[i].data, h->len) == 0)
        {
            continue;
        }
        path = atls_store_cat(dir, "/", s->f[i].name, NULL);
        f[k].is_private = atls_mirror_is_private(path);
        free(path);
        f[k].name = s->f[i].name;
        f[k].data = s->f[i].data;
        f[k++].len = s->f[i].len;
        s->f[i].name = NULL;
        s->f[i].data = NULL;
    }
    set_free(&have);
    if (prune) {
        free(f);
        return 0;
    }
    return mirror_batch_add(m, b, id, gen, dir, f, k, err, errlen) == ATLS_STORE_OK ? 1 : -1;
}

/* Redis -> mirror for one certificate, at the generation read around it;
 * its files, generation file and the store generation written now (b
 * NULL) or with the batch b (files that replace others only: a pull that
 * deletes writes its files now, its record with the batch). */
static int
pull(atls_mirror_t *m, const char *id, mirror_batch_t *b, char *err, size_t errlen)
{
    atls_store_t *rs = atls_mirror_rs(m, err, errlen);
    mirror_set_t  s = { NULL, 0 };
    mirror_dst_t  d = { m->fs, NULL };
    uint64_t      g1 = 0, g2 = 1;
    char         *dir = atls_store_cat("certs/", id, NULL);
    int           tries, taken = 0, rc = -1;

    for (tries = 0; rs != NULL && tries < MIRROR_PULL_TRIES && g1 != g2; tries++) {
        set_free(&s);
        if (atls_mirror_redis_generation(m, id, &g1, err, errlen) != ATLS_STORE_OK
            || read_dir(rs, dir, &s, err, errlen) != ATLS_STORE_OK
            || atls_mirror_redis_generation(m, id, &g2, err, errlen) != ATLS_STORE_OK)
        {
            goto out;
        }
    }
    if (g1 != g2) {
        snprintf(err, errlen, "%s: certs/%s: its generation kept changing while read; "
                 "left to the next announcement", m->store.location, id);
        goto out;
    }
    if (check_set(m, id, &s, err, errlen) != 0
        || (b != NULL && (taken = batch_take(m, b, id, g1, dir, &s, err, errlen)) < 0))
    {
        goto out;
    }
    if (!taken
        && (write_dir(&d, dir, &s, 1, err, errlen) != ATLS_STORE_OK
            || (b == NULL && atls_mirror_set_generation(m, id, g1, err, errlen)
                             != ATLS_STORE_OK)
            || (b != NULL && mirror_batch_add(m, b, id, g1, dir, NULL, 0, err, errlen)
                             != ATLS_STORE_OK)))
    {
        goto out;
    }
    atls_log(ATLS_LOG_INFO, "mirror: %s at generation %" PRIu64 " from Redis", id, g1);
    rc = 0;

out:
    set_free(&s);
    free(dir);
    return rc;
}

/* Mirror -> Redis for one certificate (the repopulation rule), under its
 * lease: 1 pushed, 0 somebody holds the lease (it is being worked on),
 * -1 + err. */
static int
push(atls_mirror_t *m, const char *id, uint64_t lgen, char *err, size_t errlen)
{
    atls_store_t      *rs = atls_mirror_rs(m, err, errlen);
    atls_store_lock_t *lk = NULL;
    mirror_set_t       s = { NULL, 0 };
    mirror_dst_t       d;
    uint64_t           gen;
    char              *dir = atls_store_cat("certs/", id, NULL), *name;
    int                rc = -1, lr;

    if (rs == NULL) {
        goto out;
    }
    name = atls_store_cat("cert-", id, NULL);
    lr = rs->ops->lock(rs, name, 0, &lk, err, errlen);
    free(name);
    if (lr != ATLS_STORE_OK) {
        rc = lr == ATLS_STORE_BUSY ? 0 : -1;
        goto out;
    }
    d.st = rs;
    d.lk = lk;
    if (read_dir(m->fs, dir, &s, err, errlen) != ATLS_STORE_OK
        || write_dir(&d, dir, &s, 1, err, errlen) != ATLS_STORE_OK
        || atls_mirror_bump(m, id, atls_store_redis_lease(rs, lk), MIRROR_BUMP_RAISE, lgen,
                            &gen, err, errlen) != ATLS_STORE_OK)
    {
        goto out;
    }
    atls_log(ATLS_LOG_WARN, "mirror: %s pushed to Redis at generation %" PRIu64
             " (the mirror was newer)", id, lgen);
    rc = 1;

out:
    if (lk != NULL) {
        rs->ops->unlock(rs, lk);
    }
    set_free(&s);
    free(dir);
    return rc;
}

/* 1 when dir has a meta.json in st, 0 not, -1 + err. */
static int
has_meta(atls_store_t *st, const char *id, char *err, size_t errlen)
{
    char  *path = atls_store_cat("certs/", id, "/meta.json", NULL), *data = NULL;
    int    rc = st->ops->get(st, path, &data, NULL, err, errlen);

    free(path);
    free(data);
    return rc == ATLS_STORE_OK ? 1 : rc == ATLS_STORE_NOTFOUND ? 0 : -1;
}

/* The rule of atls_mirror.h for one certificate: 1 pulled, 0 nothing or
 * pushed (*pushed counts), -1 + err. */
static int
sync_cert(atls_mirror_t *m, const char *id, mirror_batch_t *b, int *pushed, char *err,
          size_t errlen)
{
    uint64_t rgen, lgen = atls_mirror_generation(m, id);
    int      in_redis, in_mirror, rc;

    if (atls_mirror_redis_generation(m, id, &rgen, err, errlen) != ATLS_STORE_OK) {
        return -1;
    }
    if (rgen > lgen) {
        return pull(m, id, b, err, errlen) == 0 ? 1 : -1;
    }
    if (lgen == rgen && rgen != 0) {
        return 0;
    }
    if (lgen == rgen) {
        /* neither side has a generation (a writer that announced nothing,
         * or a first deploy still under its lease): only a certificate
         * one side lacks moves */
        in_redis = has_meta(m->rs, id, err, errlen);
        in_mirror = has_meta(m->fs, id, err, errlen);
        if (in_redis < 0 || in_mirror < 0) {
            return -1;
        }
        if (in_redis && !in_mirror) {
            return pull(m, id, b, err, errlen) == 0 ? 1 : -1;
        }
        if (in_redis || !in_mirror) {
            return 0;
        }
    }
    rc = push(m, id, lgen, err, errlen);
    if (rc > 0 && pushed != NULL) {
        (*pushed)++;
    }
    return rc < 0 ? -1 : 0;
}

int
atls_mirror_sync_one(atls_mirror_t *m, const char *id, char *err, size_t errlen)
{
    if (!atls_store_id_ok(id)) {
        snprintf(err, errlen, "mirror: invalid certificate id \"%s\"", id ? id : "(null)");
        return -1;
    }
    if (atls_mirror_rs(m, err, errlen) == NULL) {
        return -1;
    }
    return sync_cert(m, id, NULL, NULL, err, errlen);
}

/* The sorted union of two sorted lists (names borrowed). */
static const char **
union_sorted(char **a, size_t na, char **b, size_t nb, size_t *n)
{
    const char **u = calloc(na + nb + 1, sizeof(*u));
    size_t       i = 0, j = 0, k = 0;

    if (u == NULL) {
        abort();
    }
    while (i < na || j < nb) {
        int c = i == na ? 1 : j == nb ? -1 : strcmp(a[i], b[j]);

        u[k++] = c <= 0 ? a[i] : b[j];
        i += c <= 0;
        j += c >= 0;
    }
    *n = k;
    return u;
}

/* Accounts: Redis's into the mirror (what differs), the mirror's into a
 * Redis that has none of them for that CA. */
static int
sync_accounts(atls_mirror_t *m, char *err, size_t errlen)
{
    char         **cr = NULL, **cf = NULL, *dir;
    size_t         nr = 0, nf = 0, i, n = 0;
    const char   **all = NULL;
    mirror_dst_t   to_fs = { m->fs, NULL }, to_rs = { m->rs, NULL };
    int            rc;

    rc = m->rs->ops->list(m->rs, "accounts", &cr, &nr, err, errlen);
    if (rc == ATLS_STORE_OK || rc == ATLS_STORE_NOTFOUND) {
        rc = m->fs->ops->list(m->fs, "accounts", &cf, &nf, err, errlen);
        rc = rc == ATLS_STORE_NOTFOUND ? ATLS_STORE_OK : rc;
    }
    if (rc == ATLS_STORE_OK) {
        all = union_sorted(cr, nr, cf, nf, &n);
    }
    for (i = 0; rc == ATLS_STORE_OK && i < n; i++) {
        mirror_set_t s;
        int          from_redis = 0;
        size_t       j;

        for (j = 0; j < nr; j++) {
            from_redis |= strcmp(cr[j], all[i]) == 0;
        }
        dir = atls_store_cat("accounts/", all[i], NULL);
        rc = read_dir(from_redis ? m->rs : m->fs, dir, &s, err, errlen);
        if (rc == ATLS_STORE_OK) {
            rc = write_dir(from_redis ? &to_fs : &to_rs, dir, &s, 0, err, errlen);
            set_free(&s);
        }
        free(dir);
    }
    free(all);
    atls_strv_free(cr, nr);
    atls_strv_free(cf, nf);
    return rc == ATLS_STORE_OK ? 0 : -1;
}

/* A sync under way: the certificates listed at its start, and where the
 * next step goes on. */
struct mirror_sync_s {
    char        **ir, **imf;
    size_t        nr, nf, n, next;
    const char  **ids;
    int           pulled, pushed;
    int           accounts;     /* the accounts are synced */
};

void
mirror_sync_end(atls_mirror_t *m)
{
    struct mirror_sync_s *y = m->sync;

    mirror_names_end(m);
    if (y == NULL) {
        return;
    }
    free(y->ids);
    atls_strv_free(y->ir, y->nr);
    atls_strv_free(y->imf, y->nf);
    free(y);
    m->sync = NULL;
}

void
atls_mirror_sync_cancel(atls_mirror_t *m)
{
    mirror_sync_end(m);
}

/* A new sync: the certificates of both sides, listed once. */
static int
sync_begin(atls_mirror_t *m, char *err, size_t errlen)
{
    atls_redis_t         *c = atls_mirror_conn(m, err, errlen);
    struct mirror_sync_s *y;
    redisReply           *r = NULL;
    int                   one, rc = -1;

    y = calloc(1, sizeof(*y));
    if (y == NULL) {
        abort();
    }
    m->sync = y;
    if (c == NULL || atls_redis_callv(c, &r, err, errlen, "EXISTS", m->cluster_key, NULL) != 0) {
        goto out;
    }
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        atls_log(ATLS_LOG_WARN, "mirror: %s has no cluster generation (%s): a new or "
                 "emptied Redis, filled from the mirror where it is newer",
                 m->store.location, m->cluster_key);
    }
    one = m->rs->ops->list(m->rs, "certs", &y->ir, &y->nr, err, errlen);
    if (one != ATLS_STORE_OK && one != ATLS_STORE_NOTFOUND) {
        goto out;
    }
    one = m->fs->ops->list(m->fs, "certs", &y->imf, &y->nf, err, errlen);
    if (one != ATLS_STORE_OK && one != ATLS_STORE_NOTFOUND) {
        goto out;
    }
    y->ids = union_sorted(y->ir, y->nr, y->imf, y->nf, &y->n);
    rc = 0;

out:
    if (r != NULL) {
        freeReplyObject(r);
    }
    return rc;
}

/* The end of a sync, in steps as the certificates: the accounts, the
 * registry of names (a first one of 100,000 names is not one blocking
 * pass; one that atls_mirror_sync_names_step began is continued), then
 * the cluster key (from now on this Redis is known to hold
 * the cluster's state), with *fin.  1 when this step changed the
 * registry in the mirror (counted as a pull, so that the host tells its
 * workers), 0, or -1 + err. */
static int
sync_finish(atls_mirror_t *m, struct mirror_sync_s *y, long long until, int *fin,
            char *err, size_t errlen)
{
    atls_redis_t *c;
    redisReply   *r = NULL;
    int           names, names_done = 0;

    *fin = 0;
    if (!y->accounts) {
        if (sync_accounts(m, err, errlen) != 0) {
            return -1;
        }
        y->accounts = 1;
    }
    names = mirror_names_step(m, until, &names_done, err, errlen);
    if (names < 0 || !names_done) {
        return names;
    }
    c = atls_mirror_conn(m, err, errlen);
    if (c == NULL || atls_redis_callv(c, &r, err, errlen, "SET", m->cluster_key, "0", "NX",
                                      NULL) != 0)
    {
        return -1;
    }
    freeReplyObject(r);
    *fin = 1;
    return names;
}

int
atls_mirror_sync_step(atls_mirror_t *m, long budget_ms, int *done, int *pushed,
                      char *err, size_t errlen)
{
    struct mirror_sync_s *y;
    mirror_batch_t        b;
    long long             until = atls_rs_now_ms() + budget_ms;
    int                   rc = -1, one, stepped = 0;

    *done = 0;
    memset(&b, 0, sizeof(b));
    if (m->sync == NULL && sync_begin(m, err, errlen) != 0) {
        goto out;
    }
    y = m->sync;
    for (; y->next < y->n; y->next++) {
        const char *id = y->ids[y->next];

        if (budget_ms > 0 && stepped > 0 && atls_rs_now_ms() >= until) {
            break;
        }
        stepped++;
        if (!atls_store_id_ok(id)) {
            atls_log(ATLS_LOG_WARN, "mirror: certs/%s: not a certificate id, skipped", id);
            continue;
        }
        one = sync_cert(m, id, &b, &y->pushed, err, errlen);
        if (one < 0 && atls_mirror_redis_down(m)) {
            goto out;
        }
        if (one < 0) {
            /* this certificate's entries are wrong, not Redis: the others go on */
            atls_log(ATLS_LOG_WARN, "mirror: %s", err);
            continue;
        }
        y->pulled += one;
    }
    if (mirror_batch_flush(m, &b, err, errlen) != ATLS_STORE_OK) {
        goto out;
    }
    if (y->next == y->n) {
        one = sync_finish(m, y, budget_ms > 0 ? until : 0, done, err, errlen);
        if (one < 0) {
            goto out;
        }
        y->pulled += one;
    }
    rc = y->pulled;
    if (pushed != NULL) {
        *pushed = y->pushed;
    }

out:
    if (b.n > 0) {
        /* what was pulled before a failure is served: the workers see it */
        char why[256];

        (void) mirror_batch_flush(m, &b, why, sizeof(why));
    }
    if (rc < 0 || *done) {
        if (rc < 0 && pushed != NULL) {
            *pushed = m->sync != NULL ? m->sync->pushed : 0;
        }
        mirror_sync_end(m);
    }
    return rc;
}

int
atls_mirror_sync(atls_mirror_t *m, int *pushed, char *err, size_t errlen)
{
    int done = 0, rc;

    mirror_sync_end(m);     /* a whole sync covers one under way */
    do {
        /* the node's workers see what was pulled every slice */
        rc = atls_mirror_sync_step(m, MIRROR_SYNC_SLICE_MS, &done, pushed, err, errlen);
    } while (rc >= 0 && !done);
    return rc;
}
