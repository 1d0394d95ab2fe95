/*
 * The registry of dynamic names in a node's mirror (atls_mirror.h, "the
 * registry"): Redis holds the truth (names/<id>.json, names-generation,
 * names-journal, written through the store ops by whoever registers a
 * name); each node's mirror holds a copy in the filesystem store's format,
 * with its own names-generation and names-journal, so the node's workers
 * and children follow the registry exactly as they follow one on a
 * directory store (the journal, then the entries it names).
 *
 * A sync reads Redis's registry generation first, then the entries that
 * changed since the one the mirror last took (Redis's journal; the whole
 * registry when the journal does not reach back), checks each entry
 * before it is written (its name is its file's), then moves the mirror's
 * own registry generation once, journals the names it changed, and bumps
 * the mirror's store generation (what the workers watch).  A registry
 * change that lands while it reads is taken by the next sync: the
 * generation recorded is the one read before.
 *
 * Repopulation: a Redis whose registry generation is below the one the
 * mirror took lost it (restarted empty, an old backup): the mirror's
 * entries Redis lacks are written back (in steps too), and Redis's
 * registry generation is raised past the mirror's, so every node reads
 * them again.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mirror_int.h"
#include "names_int.h"
#include "store_int.h"
#include "store_redis_int.h"

#define NAMES_DIR       "names"
#define NAMES_EXT       ".json"
#define NAMES_GEN       "names-generation"      /* as store_names.c keeps it */
/* in the mirror: Redis's registry generation it last took */
#define NAMES_TAKEN     "mirror-names-generation"

/* A decimal generation at path in st (0 when there is none). */
static int
names_read_counter(atls_store_t *st, const char *path, uint64_t *gen, char *err,
                   size_t errlen)
{
    char   *data = NULL;
    size_t  len = 0;
    int     rc;

    *gen = 0;
    rc = st->ops->get(st, path, &data, &len, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        return ATLS_STORE_OK;
    }
    if (rc == ATLS_STORE_OK && atls_mirror_parse_gen(data, len, gen) != 0) {
        atls_store_err_path(st, path, err, errlen, "not a decimal number");
        rc = ATLS_STORE_ERROR;
    }
    free(data);
    return rc;
}

static int
names_write_counter(atls_store_t *st, const char *path, uint64_t gen, char *err,
                    size_t errlen)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%" PRIu64 "\n", gen);
    return st->ops->put(st, path, buf, strlen(buf), 0, err, errlen);
}

int
atls_mirror_redis_names_generation(atls_mirror_t *m, uint64_t *gen, char *err,
                                   size_t errlen)
{
    atls_store_t *rs = atls_mirror_rs(m, err, errlen);

    *gen = 0;
    return rs != NULL ? names_read_counter(rs, NAMES_GEN, gen, err, errlen) : ATLS_STORE_ERROR;
}

uint64_t
atls_mirror_names_generation(atls_mirror_t *m)
{
    char     err[256];
    uint64_t gen;

    if (names_read_counter(m->fs, NAMES_TAKEN, &gen, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "mirror: %s (the registry is read again whole)", err);
        return 0;
    }
    return gen;
}

/* ---- the names a sync changed ---------------------------------------------- */

typedef struct {
    char   **v;
    size_t   n, cap;
} names_vec_t;

static void
vec_add(names_vec_t *c, const char *name, size_t len)
{
    if (c->n == c->cap) {
        size_t  cap = c->cap ? c->cap * 2 : 32;
        char  **v = realloc(c->v, cap * sizeof(*v));

        if (v == NULL) {
            abort();
        }
        c->v = v;
        c->cap = cap;
    }
    c->v[c->n] = strndup(name, len);
    if (c->v[c->n] == NULL) {
        abort();
    }
    c->n++;
}

/* ---- one entry, Redis -> mirror -------------------------------------------- */

/* What came from Redis is served only when it is an entry of the name its
 * file says. */
static int
names_entry_ok(const char *file, const char *data, size_t len, char *why, size_t whylen)
{
    atls_name_entry_t  e;
    char              *id = NULL;
    int                ok;

    if (atls_name_entry_from_json(data, len, &e, why, whylen) != 0) {
        return 0;
    }
    id = atls_cert_id(e.name);
    ok = id != NULL && strlen(file) == strlen(id) + sizeof(NAMES_EXT) - 1
         && strncmp(file, id, strlen(id)) == 0;
    if (!ok) {
        snprintf(why, whylen, "its \"name\" is not its file name");
    }
    free(id);
    atls_name_entry_free(&e);
    return ok;
}

/* names/<file> in the mirror made Redis's: written when it differs,
 * deleted when Redis has none; the name goes into changed when the mirror
 * moved, or always with `named` (the journal named it: a sync that failed
 * after writing the entry still tells the workers when it is tried
 * again).  A bad entry in Redis is skipped (logged), not fatal: only a
 * failure to read Redis or to write the mirror is. */
static int
names_pull_file(atls_mirror_t *m, const char *file, int named, names_vec_t *changed,
                char *err, size_t errlen)
{
    char   *path = atls_store_cat(NAMES_DIR "/", file, NULL), *rd = NULL, *ld = NULL;
    char    why[256];
    size_t  rlen = 0, llen = 0, flen = strlen(file);
    int     rr, lr, rc = ATLS_STORE_OK;

    if (flen <= sizeof(NAMES_EXT) - 1 || strcmp(file + flen - 4, ".tmp") == 0
        || strcmp(file + flen - (sizeof(NAMES_EXT) - 1), NAMES_EXT) != 0)
    {
        goto out;       /* not an entry */
    }
    rr = m->rs->ops->get(m->rs, path, &rd, &rlen, err, errlen);
    if (rr == ATLS_STORE_ERROR) {
        rc = rr;
        goto out;
    }
    lr = m->fs->ops->get(m->fs, path, &ld, &llen, why, sizeof(why));
    if (rr == ATLS_STORE_OK && !names_entry_ok(file, rd, rlen, why, sizeof(why))) {
        atls_log(ATLS_LOG_WARN, "mirror: %s: %s %s: %s; not mirrored", m->store.location,
                 NAMES_DIR, file, why);
        goto out;
    }
    if (rr == ATLS_STORE_OK && !(lr == ATLS_STORE_OK && llen == rlen
                                 && memcmp(ld, rd, rlen) == 0))
    {
        rc = m->fs->ops->put_nosync != NULL
             ? m->fs->ops->put_nosync(m->fs, path, rd, rlen, 0, err, errlen)
             : m->fs->ops->put(m->fs, path, rd, rlen, 0, err, errlen);
    } else if (rr == ATLS_STORE_NOTFOUND && lr == ATLS_STORE_OK) {
        rc = m->fs->ops->del(m->fs, path, err, errlen);
        rc = rc == ATLS_STORE_NOTFOUND ? ATLS_STORE_OK : rc;
    } else if (!named) {
        goto out;       /* the same on both sides */
    }
    if (rc == ATLS_STORE_OK) {
        vec_add(changed, file, flen - (sizeof(NAMES_EXT) - 1));
    }

out:
    free(rd);
    free(ld);
    free(path);
    return rc;
}

/* The files of names/ in st (none when there is no registry). */
static int
names_files(atls_store_t *st, char ***files, size_t *n, char *err, size_t errlen)
{
    int rc = st->ops->list(st, NAMES_DIR, files, n, err, errlen);

    if (rc == ATLS_STORE_NOTFOUND) {
        *files = NULL;
        *n = 0;
        rc = ATLS_STORE_OK;
    }
    return rc;
}

static int
names_str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* A registry sync under way: the entry files it goes through (the ones
 * Redis's journal named, or every file of either side when the journal
 * does not reach back) and where the next step goes on.  A first sync of
 * 100,000 names is thus taken in slices, as the certificates are
 * (atls_mirror_sync_step). */
struct mirror_names_sync_s {
    uint64_t   rgen;        /* Redis's registry generation read at the start */
    int        named;       /* the journal named them */
    char     **files;
    size_t     n, next;
    size_t     changed;     /* entries the steps changed in the mirror */
    size_t     steps;
    uint64_t   lost;        /* not 0: Redis lost the registry the mirror
                               took at this generation; the steps write the
                               mirror's entries (files) back first */
    size_t     pushed;
};

static void
mirror_names_sync_free(mirror_names_sync_t *ns)
{
    if (ns != NULL) {
        atls_strv_free(ns->files, ns->n);
        free(ns);
    }
}

/* Every entry file of either side (the journal does not reach back):
 * Redis's, then the mirror's that Redis does not list (gone from the
 * registry). */
static int
names_list_all(atls_mirror_t *m, mirror_names_sync_t *ns, char *err, size_t errlen)
{
    char  **rf = NULL, **lf = NULL;
    size_t  nr = 0, nl = 0, i;
    int     rc;

    rc = names_files(m->rs, &rf, &nr, err, errlen);
    if (rc == ATLS_STORE_OK) {
        rc = names_files(m->fs, &lf, &nl, err, errlen);
    }
    if (rc == ATLS_STORE_OK) {
        if (rf != NULL) {
            qsort(rf, nr, sizeof(*rf), names_str_cmp);
        }
        ns->files = calloc(nr + nl + 1, sizeof(*ns->files));
        if (ns->files == NULL) {
            abort();
        }
        for (i = 0; i < nr; i++) {
            ns->files[ns->n++] = rf[i];     /* moved */
        }
        for (i = 0; i < nl; i++) {
            if (rf == NULL || bsearch(&lf[i], rf, nr, sizeof(*rf), names_str_cmp) == NULL) {
                ns->files[ns->n++] = atls_strdup(lf[i]);
            }
        }
        free(rf);
        rf = NULL;
        nr = 0;
    }
    atls_strv_free(rf, nr);
    atls_strv_free(lf, nl);
    return rc;
}

/* The entry files Redis's journal says changed in (since, upto]; NOTFOUND
 * when it does not say. */
static int
names_list_changed(atls_mirror_t *m, uint64_t since, uint64_t upto, mirror_names_sync_t *ns,
                   char *err, size_t errlen)
{
    char  **names = NULL;
    size_t  n = 0, i;
    int     rc;

    if (since == 0) {
        return ATLS_STORE_NOTFOUND;     /* never taken: everything */
    }
    rc = atls_names_changed_since(m->rs, since, upto, &names, &n, err, errlen);
    if (rc == ATLS_STORE_OK) {
        ns->files = calloc(n + 1, sizeof(*ns->files));
        if (ns->files == NULL) {
            abort();
        }
        for (i = 0; i < n; i++) {
            /* a checked name is its own certificate id */
            ns->files[i] = atls_store_cat(names[i], NAMES_EXT, NULL);
        }
        ns->n = n;
        ns->named = 1;
    }
    atls_strv_free(names, n);
    return rc;
}

/* The mirror's own registry generation moves once for the names changed,
 * journaled with them, then its store generation (the workers look). */
static int
names_mirror_changed(atls_mirror_t *m, names_vec_t *changed, char *err, size_t errlen)
{
    atls_store_lock_t *lk = NULL;
    uint64_t           g = 0;
    int                rc;

    if (m->fs->ops->sync_dir != NULL && m->fs->ops->put_nosync != NULL) {
        rc = m->fs->ops->sync_dir(m->fs, NAMES_DIR, err, errlen);
        if (rc != ATLS_STORE_OK && rc != ATLS_STORE_NOTFOUND) {
            return rc;
        }
    }
    rc = m->fs->ops->lock(m->fs, "names", 1, &lk, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    if (names_read_counter(m->fs, NAMES_GEN, &g, err, errlen) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "mirror: %s (started over)", err);
        g = (uint64_t) time(NULL);
    }
    rc = names_write_counter(m->fs, NAMES_GEN, g + 1, err, errlen);
    if (rc == ATLS_STORE_OK) {
        atls_names_journal_add(m->fs, g + 1, (const char *const *) changed->v, changed->n);
        if (atls_store_bump_generation(m->fs) != ATLS_STORE_OK) {
            snprintf(err, errlen, "mirror %s: generation not bumped (see the log)",
                     m->fs->location);
            rc = ATLS_STORE_ERROR;
        }
    }
    m->fs->ops->unlock(m->fs, lk);
    return rc;
}

/* ---- repopulation ----------------------------------------------------------- */

/* Redis lost the registry the mirror took (its generation went back): the
 * mirror's entries it lacks go back, in steps, each under Redis's "names"
 * lock (a writer's entry is never overwritten by an older one); then its
 * generation goes past the mirror's. */
static int
names_push_entries(atls_mirror_t *m, mirror_names_sync_t *ns, long long until, char *err,
                   size_t errlen)
{
    atls_store_lock_t *lk = NULL;
    char              *path, *data;
    size_t             len, stepped = 0;
    int                rc, one;

    rc = m->rs->ops->lock(m->rs, "names", 1, &lk, err, errlen);
    for (; rc == ATLS_STORE_OK && ns->next < ns->n; ns->next++, stepped++) {
        if (stepped >= MIRROR_NAMES_STEP_MAX
            || (until > 0 && stepped > 0 && atls_rs_now_ms() >= until))
        {
            break;
        }
        path = atls_store_cat(NAMES_DIR "/", ns->files[ns->next], NULL);
        data = NULL;
        one = m->rs->ops->get(m->rs, path, &data, &len, err, errlen);
        free(data);
        data = NULL;
        if (one == ATLS_STORE_NOTFOUND
            && m->fs->ops->get(m->fs, path, &data, &len, err, errlen) == ATLS_STORE_OK
            && names_entry_ok(ns->files[ns->next], data, len, err, errlen))
        {
            one = m->rs->ops->put(m->rs, path, data, len, 0, err, errlen);
            ns->pushed += one == ATLS_STORE_OK;
        }
        rc = one == ATLS_STORE_ERROR ? one : ATLS_STORE_OK;
        free(data);
        free(path);
    }
    if (lk != NULL) {
        m->rs->ops->unlock(m->rs, lk);
    }
    return rc;
}

/* Every entry written back: Redis's registry generation past the one the
 * mirror took (announced to every node, which then list the registry). */
static int
names_push_done(atls_mirror_t *m, mirror_names_sync_t *ns, char *err, size_t errlen)
{
    atls_store_lock_t *lk = NULL;
    uint64_t           rgen = 0;
    int                rc;

    rc = m->rs->ops->lock(m->rs, "names", 1, &lk, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    rc = names_read_counter(m->rs, NAMES_GEN, &rgen, err, errlen);
    if (rc == ATLS_STORE_OK && rgen <= ns->lost) {
        rc = names_write_counter(m->rs, NAMES_GEN, ns->lost + 1, err, errlen);
        if (rc == ATLS_STORE_OK && atls_store_bump_generation(m->rs) != ATLS_STORE_OK) {
            rc = ATLS_STORE_ERROR;
            snprintf(err, errlen, "%s: generation not bumped (see the log)",
                     m->store.location);
        }
    }
    m->rs->ops->unlock(m->rs, lk);
    if (rc == ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "mirror: %s lost the registry of names (its generation "
                 "%" PRIu64 " is below the mirror's %" PRIu64 "): %zu entries written back",
                 m->store.location, rgen, ns->lost, ns->pushed);
    }
    return rc;
}

/* ---- the sync --------------------------------------------------------------- */

/* A new registry sync into m->names; left NULL when the mirror is current. */
static int
names_begin(atls_mirror_t *m, char *err, size_t errlen)
{
    mirror_names_sync_t *ns;
    uint64_t             rgen, taken = atls_mirror_names_generation(m);
    int                  one;

    /* what an announcement asked for: Redis's generation is read now */
    m->names_wanted = 0;
    if (atls_mirror_redis_names_generation(m, &rgen, err, errlen) != ATLS_STORE_OK) {
        return -1;
    }
    if (rgen == taken) {
        return 0;
    }
    ns = calloc(1, sizeof(*ns));
    if (ns == NULL) {
        abort();
    }
    if (rgen < taken) {
        /* the mirror's entries first (names_push_entries), then the
         * registry listed whole: every entry checked */
        ns->lost = taken;
        one = names_files(m->fs, &ns->files, &ns->n, err, errlen);
        if (one != ATLS_STORE_OK) {
            mirror_names_sync_free(ns);
            return -1;
        }
        m->names = ns;
        return 0;
    }
    ns->rgen = rgen;
    one = names_list_changed(m, taken, rgen, ns, err, errlen);
    if (one == ATLS_STORE_NOTFOUND) {
        one = names_list_all(m, ns, err, errlen);
    }
    if (one != ATLS_STORE_OK) {
        mirror_names_sync_free(ns);
        return -1;
    }
    m->names = ns;
    return 0;
}

/* Before a step goes on with entries listed earlier: a Redis whose
 * registry generation went back meanwhile lost the registry (restarted
 * empty), and the entries it now lacks must not be deleted from the
 * mirror: the sync begins again, which writes them back. */
static int
names_resume(atls_mirror_t *m, char *err, size_t errlen)
{
    uint64_t rgen;

    if (atls_mirror_redis_names_generation(m, &rgen, err, errlen) != ATLS_STORE_OK) {
        return -1;
    }
    if (rgen < m->names->rgen) {
        atls_log(ATLS_LOG_WARN, "mirror: %s: the registry generation went back from "
                 "%" PRIu64 " to %" PRIu64 " during a sync of the registry of names; "
                 "begun again", m->store.location, m->names->rgen, rgen);
        mirror_names_end(m);
        return names_begin(m, err, errlen);
    }
    return 0;
}

void
mirror_names_end(atls_mirror_t *m)
{
    mirror_names_sync_free(m->names);
    m->names = NULL;
}

/* The entries of one step, from ns->next: at most MIRROR_NAMES_STEP_MAX,
 * and past until (when not 0) none after the first; a list that fits in
 * one step (a journal's catch-up) is not cut by time. */
static int
names_step_entries(atls_mirror_t *m, mirror_names_sync_t *ns, long long until,
                   names_vec_t *changed, char *err, size_t errlen)
{
    size_t stepped = 0;

    if (ns->n - ns->next <= MIRROR_NAMES_STEP_MAX) {
        until = 0;
    }
    for (; ns->next < ns->n; ns->next++, stepped++) {
        if (stepped >= MIRROR_NAMES_STEP_MAX
            || (until > 0 && stepped > 0 && atls_rs_now_ms() >= until))
        {
            break;
        }
        if (names_pull_file(m, ns->files[ns->next], ns->named, changed, err, errlen)
            != ATLS_STORE_OK)
        {
            return -1;
        }
    }
    return 0;
}

/* A step of the write-back; after the last entry, Redis's generation is
 * raised and the registry listed whole for the steps that follow. */
static int
names_push_step(atls_mirror_t *m, mirror_names_sync_t *ns, long long until, char *err,
                size_t errlen)
{
    if (names_push_entries(m, ns, until, err, errlen) != ATLS_STORE_OK) {
        return -1;
    }
    if (ns->next < ns->n) {
        return 0;
    }
    if (names_push_done(m, ns, err, errlen) != ATLS_STORE_OK
        || atls_mirror_redis_names_generation(m, &ns->rgen, err, errlen) != ATLS_STORE_OK)
    {
        return -1;
    }
    atls_strv_free(ns->files, ns->n);
    ns->files = NULL;
    ns->n = ns->next = 0;
    ns->lost = 0;
    return names_list_all(m, ns, err, errlen) == ATLS_STORE_OK ? 0 : -1;
}

int
mirror_names_step(atls_mirror_t *m, long long until, int *done, char *err, size_t errlen)
{
    mirror_names_sync_t *ns;
    names_vec_t          changed = { NULL, 0, 0 };
    int                  rc = -1;

    *done = 0;
    if ((m->names == NULL ? names_begin(m, err, errlen) : names_resume(m, err, errlen)) != 0) {
        goto out;
    }
    ns = m->names;
    if (ns == NULL) {
        *done = 1;
        rc = 0;
        goto out;
    }
    if (ns->lost) {
        rc = names_push_step(m, ns, until, err, errlen);
        goto out;
    }
    if (names_step_entries(m, ns, until, &changed, err, errlen) != 0) {
        goto out;
    }
    /* what this step wrote is served now: the workers read it */
    if (changed.n > 0 && names_mirror_changed(m, &changed, err, errlen) != ATLS_STORE_OK) {
        goto out;
    }
    ns->changed += changed.n;
    ns->steps++;
    if (ns->next == ns->n) {
        if (names_write_counter(m->fs, NAMES_TAKEN, ns->rgen, err, errlen) != ATLS_STORE_OK) {
            goto out;
        }
        if (ns->changed) {
            atls_log(ATLS_LOG_INFO, "mirror: %zu dynamic name(s) changed, registry "
                     "generation %" PRIu64 " from Redis (%zu entries gone through in "
                     "%zu step(s))", ns->changed, ns->rgen, ns->n, ns->steps);
        }
        *done = 1;
    }
    rc = (int) (changed.n > 0);

out:
    atls_strv_free(changed.v, changed.n);
    if (rc < 0 || *done) {
        mirror_names_end(m);
    }
    return rc;
}

int
atls_mirror_sync_names_step(atls_mirror_t *m, long budget_ms, int *done, char *err,
                            size_t errlen)
{
    return mirror_names_step(m, budget_ms > 0 ? atls_rs_now_ms() + budget_ms : 0, done,
                             err, errlen);
}

int
atls_mirror_sync_names(atls_mirror_t *m, char *err, size_t errlen)
{
    int done = 0, one, changed = 0, passes;

    /* one under way read Redis's generation before this call: it is
     * finished, then a sync of this call's own */
    for (passes = m->names != NULL ? 2 : 1; passes > 0; passes--) {
        do {
            one = atls_mirror_sync_names_step(m, 0, &done, err, errlen);
            changed |= one > 0;
        } while (one >= 0 && !done);
        if (one < 0) {
            return -1;
        }
    }
    return changed;
}

int
atls_mirror_names_pending(atls_mirror_t *m)
{
    return m->names_wanted || m->names != NULL;
}

void
atls_mirror_set_names_hook(atls_mirror_t *m, atls_mirror_names_fn fn, void *ctx)
{
    m->names_hook = fn;
    m->names_hook_ctx = ctx;
}

/* ---- announcements ------------------------------------------------------------ */

void
atls_rs_names_announce(atls_store_t *st, const char *data, size_t len)
{
    rs_impl_t  *rs = st->impl;
    redisReply *r = NULL;
    uint64_t    gen;
    char        msg[64], *channel, err[256];

    if (atls_mirror_parse_gen(data, len, &gen) != 0) {
        return;
    }
    if (asprintf(&channel, "%s%s", rs->conf.prefix != NULL ? rs->conf.prefix
                                   : ATLS_REDIS_DEFAULT_PREFIX, ATLS_MIRROR_CHANNEL) < 0)
    {
        abort();
    }
    snprintf(msg, sizeof(msg), "%s %" PRIu64, ATLS_MIRROR_NAMES_ID, gen);
    err[0] = '\0';
    if (atls_rs_conn(rs, err, sizeof(err)) == NULL
        || atls_redis_callv(rs->c, &r, err, sizeof(err), "PUBLISH", channel, msg, NULL) != 0)
    {
        /* the entries are written: nodes take them at their next check */
        atls_log(ATLS_LOG_WARN, "%s: registry change not announced: %s", st->location, err);
    }
    if (r != NULL) {
        freeReplyObject(r);
    }
    free(channel);
}
