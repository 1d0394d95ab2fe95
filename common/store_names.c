/*
 * The registry of dynamic names (atls_names.h): names/<cert-id>.json, one
 * entry per name, through the store ops only so that any backend holds
 * it.  Changes are made under the store lock "names" (a CLI and a server
 * may add at the same moment) and each moves two counters: the registry's
 * own (names-generation, so that a host re-lists only when the registry
 * changed) and the store's (so that servers sharing the store look).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "names_int.h"
#include "store_int.h"

/* The fs backend refuses path components starting with '.', so the
 * counter lives beside the directory rather than as names/.gen. */
#define NAMES_GEN   "names-generation"

/* names/<cert-id>.json for a checked name; NULL + err otherwise. */
static char *
names_path(const char *name, char *folded, size_t flen, char *err, size_t errlen)
{
    char  why[160], *id, *path;

    if (name == NULL
        || atls_name_check(name, strlen(name), 1, 127, folded, flen, why, sizeof(why)) != 0)
    {
        snprintf(err, errlen, "name \"%.80s\": %s", name != NULL ? name : "", 
                 name != NULL ? why : "missing");
        return NULL;
    }
    id = atls_cert_id(folded);
    if (id == NULL || !atls_store_id_ok(id)) {
        snprintf(err, errlen, "name \"%s\" gives no certificate id", folded);
        free(id);
        return NULL;
    }
    path = atls_store_cat(NAMES_DIR "/", id, NAMES_EXT, NULL);
    free(id);
    return path;
}

/* Reads the entry at path; its name must be the one asked for. */
int
atls_names_read(atls_store_t *st, const char *path, const char *folded,
                atls_name_entry_t *e, char *err, size_t errlen)
{
    char   *data = NULL, why[256];
    size_t  len = 0;
    int     rc;

    memset(e, 0, sizeof(*e));
    rc = st->ops->get(st, path, &data, &len, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    if (atls_name_entry_from_json(data, len, e, why, sizeof(why)) != 0) {
        atls_store_err_path(st, path, err, errlen, why);
        rc = ATLS_STORE_ERROR;
    } else if (folded != NULL && strcmp(e->name, folded) != 0) {
        atls_store_err_path(st, path, err, errlen, "its \"name\" is not its file name");
        atls_name_entry_free(e);
        rc = ATLS_STORE_ERROR;
    }
    free(data);
    return rc;
}

/* The entry at path as the batch sees it: what the batch decided for it
 * already (a name given twice), else what the store holds. */
static int
names_read_batch(atls_store_t *st, const atls_names_pending_t *pend, const char *path,
                 const char *folded, atls_name_entry_t *e, char *err, size_t errlen)
{
    const atls_names_pending_item_t *it;
    char                             why[256];

    it = atls_names_pending_find(pend, path + sizeof(NAMES_DIR));
    if (it == NULL) {
        return atls_names_read(st, path, folded, e, err, errlen);
    }
    if (atls_name_entry_from_json(it->json, strlen(it->json), e, why, sizeof(why)) != 0) {
        atls_store_err_path(st, path, err, errlen, why);
        return ATLS_STORE_ERROR;
    }
    return ATLS_STORE_OK;
}

/* The entry joins the batch, written with the others when it ends
 * (names_batch_done): one sync for all of them. */
static int
names_write(atls_names_pending_t *pend, const char *path, const atls_name_entry_t *e,
            size_t index, int made, char *err, size_t errlen)
{
    char *json = atls_name_entry_to_json(e);

    if (json == NULL) {
        snprintf(err, errlen, "out of memory");
        return ATLS_STORE_ERROR;
    }
    atls_names_pending_add(pend, path + sizeof(NAMES_DIR), json, index, made);
    return ATLS_STORE_OK;
}

static int
names_read_gen(atls_store_t *st, uint64_t *gen, char *err, size_t errlen)
{
    char              *data = NULL, *end;
    size_t             len = 0;
    unsigned long long v;
    int                rc;

    *gen = 0;
    rc = st->ops->get(st, NAMES_GEN, &data, &len, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        return ATLS_STORE_OK;
    }
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    errno = 0;
    v = strtoull(data, &end, 10);
    if (errno != 0 || end == data || data[0] < '0' || data[0] > '9'
        || (*end != '\0' && *end != '\n'))
    {
        atls_store_err_path(st, NAMES_GEN, err, errlen, "not a decimal number");
        rc = ATLS_STORE_ERROR;
    } else {
        *gen = v;
    }
    free(data);
    return rc;
}

/* Both counters move and the journal says which names; called with the
 * "names" lock held.  grown: entries made (> 0) or deleted (< 0), for
 * names-count. */
static int
names_changed(atls_store_t *st, const char *const *names, size_t n, long grown,
              char *err, size_t errlen)
{
    char     buf[32];
    uint64_t g;
    int      rc;

    rc = names_read_gen(st, &g, err, errlen);
    if (rc == ATLS_STORE_ERROR) {
        /* a broken counter must not stop every change: start it over */
        atls_log(ATLS_LOG_WARN, "store: %s (started over)", err);
        g = (uint64_t) time(NULL);
    }
    snprintf(buf, sizeof(buf), "%" PRIu64 "\n", g + 1);
    rc = st->ops->put(st, NAMES_GEN, buf, strlen(buf), 0, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    atls_names_journal_add(st, g + 1, names, n);
    atls_names_count_moved(st, g, g + 1, grown);
    return atls_store_bump_generation(st) == ATLS_STORE_OK ? ATLS_STORE_OK
                                                           : ATLS_STORE_ERROR;
}

/* What a caller is told of each name (added[i], removed[i]) and what it
 * is told of a name whose entry could not be written after all. */
typedef struct {
    unsigned char *out;
    unsigned char  not_written;
} names_outcome_t;

/* What a batch decided is written, even when a later name failed: every
 * entry with one put_many into names/ (durable before the generation and
 * the journal name them: a crash never leaves a journal naming an entry
 * that is not on disk), then one move of the generations, one journal
 * append for the entries written.  done[j] is the name of pend->v[j].  rc
 * is the batch's result so far. */
static int
names_batch_done(atls_store_t *st, atls_names_pending_t *pend, const char *const *done,
                 const names_outcome_t *oc, int rc, char *err, size_t errlen)
{
    char   why[512];
    size_t j, k;
    long   made = 0;

    if (atls_names_pending_flush(st, NAMES_DIR, pend, &k, why, sizeof(why))
        != ATLS_STORE_OK && rc == ATLS_STORE_OK)
    {
        snprintf(err, errlen, "%s", why);
        rc = ATLS_STORE_ERROR;
    }
    for (j = 0; j < pend->n; j++) {
        if (j >= k && oc->out != NULL) {
            oc->out[pend->v[j].index] = oc->not_written;
        }
        made += j < k && pend->v[j].made == 2;
    }
    if (k > 0 && names_changed(st, done, k, made, why, sizeof(why)) != ATLS_STORE_OK
        && rc == ATLS_STORE_OK)
    {
        snprintf(err, errlen, "%s", why);
        rc = ATLS_STORE_ERROR;
    }
    return rc;
}

uint64_t
atls_names_generation(atls_store_t *st)
{
    char     err[256];
    uint64_t g;

    if (names_read_gen(st, &g, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "store: %s", err);
        return 0;
    }
    return g;
}

static int
names_lock(atls_store_t *st, atls_store_lock_t **lk, char *err, size_t errlen)
{
    return st->ops->lock(st, "names", 1, lk, err, errlen);
}

/* What the entry would be refused for when read back (atls_name_entry_from_json). */
static int
names_text_ok(const char *field, const char *s, char *err, size_t errlen)
{
    size_t i;

    for (i = 0; s != NULL && s[i] != '\0'; i++) {
        if (i >= ATLS_NAME_META_MAX || (unsigned char) s[i] < 0x20 || s[i] == 0x7f) {
            snprintf(err, errlen, "%s: at most %d bytes, no control characters", field,
                     ATLS_NAME_META_MAX);
            return 0;
        }
    }
    return 1;
}

/* One name of a batch, with the "names" lock held: its entry, when it is
 * to be written, joins pend; *changed then 1 (the name goes into the
 * journal). */
typedef int (*names_one_fn)(atls_store_t *st, atls_names_pending_t *pend, void *ctx,
                            size_t i, char *folded, size_t flen, int *changed, char *err,
                            size_t errlen);

/* A batch under one lock: each name through one(), stopping at the first
 * error; then what was decided written at once and told once. */
static int
names_batch(atls_store_t *st, size_t n, names_one_fn one, void *ctx,
            const names_outcome_t *oc, char *err, size_t errlen)
{
    atls_store_lock_t   *lk = NULL;
    atls_names_pending_t pend;
    const char         **done;
    char               (*folded)[256];
    size_t               i, k = 0;
    int                  rc, changed;

    done = calloc(n + 1, sizeof(*done));
    folded = calloc(n + 1, sizeof(*folded));
    if (done == NULL || folded == NULL) {
        abort();
    }
    atls_names_pending_init(&pend);
    rc = names_lock(st, &lk, err, errlen);
    for (i = 0; rc == ATLS_STORE_OK && i < n; i++) {
        changed = 0;
        rc = one(st, &pend, ctx, i, folded[i], sizeof(folded[i]), &changed, err, errlen);
        if (changed) {
            done[k++] = folded[i];
        }
    }
    /* what was decided counts, even when a later name failed */
    if (lk != NULL) {
        rc = names_batch_done(st, &pend, done, oc, rc, err, errlen);
        st->ops->unlock(st, lk);
    }
    atls_names_pending_free(&pend);
    free(done);
    free(folded);
    return rc;
}

/* One name, with the "names" lock held: *changed 1 when its entry joins
 * the batch (made: "made" 2, or active again: 1), 0 when it was active
 * already (on disk or earlier in the batch). */
static int
names_add_locked(atls_store_t *st, atls_names_pending_t *pend, size_t index,
                 const char *name, const char *home, const char *source, const char *by,
                 time_t now, char *folded, size_t flen, int *changed, char *err,
                 size_t errlen)
{
    atls_name_entry_t  e, old;
    char              *path;
    int                rc;

    *changed = 0;
    path = names_path(name, folded, flen, err, errlen);
    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = names_read_batch(st, pend, path, folded, &old, err, errlen);
    if (rc == ATLS_STORE_OK && old.state == ATLS_NAME_ACTIVE) {
        atls_name_entry_free(&old);
        free(path);
        return ATLS_STORE_OK;       /* registered already: left as it is */
    }
    atls_name_entry_free(&old);
    if (rc == ATLS_STORE_ERROR) {
        /* a broken entry is replaced by the good one, said in the log */
        atls_log(ATLS_LOG_WARN, "%s (replaced)", err);
    }
    memset(&e, 0, sizeof(e));
    e.name = folded;
    e.home = (char *) (home != NULL && home[0] != '\0' ? home : NULL);
    e.source = (char *) source;
    e.by = (char *) by;
    e.state = ATLS_NAME_ACTIVE;
    e.added = now;
    rc = names_write(pend, path, &e, index, rc == ATLS_STORE_NOTFOUND ? 2 : 1, err,
                     errlen);
    *changed = rc == ATLS_STORE_OK;
    free(path);
    return rc;
}

typedef struct {
    const char *const *names;
    const char        *home, *source, *by;
    time_t             now;
    unsigned char     *added;
} names_add_ctx_t;

static int
names_add_one(atls_store_t *st, atls_names_pending_t *pend, void *ctx, size_t i,
              char *folded, size_t flen, int *changed, char *err, size_t errlen)
{
    names_add_ctx_t *c = ctx;
    int              rc;

    rc = names_add_locked(st, pend, i, c->names[i], c->home, c->source, c->by, c->now,
                          folded, flen, changed, err, errlen);
    if (c->added != NULL) {
        c->added[i] = (unsigned char) (*changed != 0);
    }
    return rc;
}

int
atls_names_add_many(atls_store_t *st, const char *const *names, size_t n, const char *home,
                    const char *source, const char *by, time_t now, unsigned char *added,
                    char *err, size_t errlen)
{
    names_add_ctx_t c = { names, home, source, by, now, added };
    names_outcome_t oc = { added, 0 };

    if (!names_text_ok("home", home, err, errlen)
        || !names_text_ok("source", source, err, errlen)
        || !names_text_ok("by", by, err, errlen))
    {
        return ATLS_STORE_ERROR;
    }
    return names_batch(st, n, names_add_one, &c, &oc, err, errlen);
}

int
atls_names_add(atls_store_t *st, const char *name, const char *home, const char *source,
               const char *by, time_t now, char *err, size_t errlen)
{
    return atls_names_add_many(st, &name, 1, home, source, by, now, NULL, err, errlen);
}

/* The entry as found, for whoever audits the removal (its home and source). */
static void
names_entry_copy(atls_name_entry_t *d, const atls_name_entry_t *s)
{
    d->name = atls_strdup(s->name);
    d->home = s->home != NULL ? atls_strdup(s->home) : NULL;
    d->source = s->source != NULL ? atls_strdup(s->source) : NULL;
    d->by = s->by != NULL ? atls_strdup(s->by) : NULL;
    d->state = s->state;
    d->added = s->added;
    d->removed = s->removed;
}

/* One name, with the "names" lock held: *what as atls_names_remove_many's
 * removed[i]; was (may be NULL) as found. */
static int
names_remove_locked(atls_store_t *st, atls_names_pending_t *pend, size_t index,
                    const char *name, time_t now, char *folded, size_t flen,
                    atls_name_entry_t *was, unsigned char *what, char *err, size_t errlen)
{
    atls_name_entry_t  e;
    char              *path;
    int                rc;

    path = names_path(name, folded, flen, err, errlen);
    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = names_read_batch(st, pend, path, folded, &e, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        *what = ATLS_NAMES_NOT_REGISTERED;
        free(path);
        return ATLS_STORE_OK;       /* said per name: the batch goes on */
    }
    if (rc == ATLS_STORE_OK && was != NULL) {
        names_entry_copy(was, &e);
    }
    if (rc == ATLS_STORE_OK && e.state == ATLS_NAME_ACTIVE) {
        e.state = ATLS_NAME_REMOVED;
        e.removed = now;
        rc = names_write(pend, path, &e, index, 1, err, errlen);
        *what = rc == ATLS_STORE_OK ? ATLS_NAMES_REMOVED_NOW : ATLS_NAMES_NOT_REACHED;
    } else if (rc == ATLS_STORE_OK) {
        /* removed already: its grace period runs from the first removal */
        *what = ATLS_NAMES_REMOVED_BEFORE;
    }
    atls_name_entry_free(&e);
    free(path);
    return rc;
}

typedef struct {
    const char *const *names;
    time_t             now;
    atls_name_entry_t *was;
    unsigned char     *removed;
} names_remove_ctx_t;

static int
names_remove_one(atls_store_t *st, atls_names_pending_t *pend, void *ctx, size_t i,
                 char *folded, size_t flen, int *changed, char *err, size_t errlen)
{
    names_remove_ctx_t *c = ctx;
    unsigned char       what = ATLS_NAMES_NOT_REACHED;
    int                 rc;

    rc = names_remove_locked(st, pend, i, c->names[i], c->now, folded, flen,
                             c->was != NULL ? &c->was[i] : NULL, &what, err, errlen);
    if (c->removed != NULL) {
        c->removed[i] = what;
    }
    *changed = what == ATLS_NAMES_REMOVED_NOW;
    return rc;
}

int
atls_names_remove_many(atls_store_t *st, const char *const *names, size_t n, time_t now,
                       atls_name_entry_t *was, unsigned char *removed, char *err,
                       size_t errlen)
{
    names_remove_ctx_t c = { names, now, was, removed };
    names_outcome_t    oc = { removed, ATLS_NAMES_NOT_REACHED };

    if (was != NULL) {
        memset(was, 0, n * sizeof(*was));
    }
    if (removed != NULL) {
        memset(removed, ATLS_NAMES_NOT_REACHED, n);
    }
    return names_batch(st, n, names_remove_one, &c, &oc, err, errlen);
}

int
atls_names_remove_entry(atls_store_t *st, const char *name, time_t now,
                        atls_name_entry_t *was, int *removed, char *err, size_t errlen)
{
    atls_name_entry_t e;
    unsigned char     what = ATLS_NAMES_NOT_REACHED;
    char              folded[256], why[160];
    int               rc;

    if (removed != NULL) {
        *removed = 0;
    }
    rc = atls_names_remove_many(st, &name, 1, now, &e, &what, err, errlen);
    if (rc == ATLS_STORE_OK && what == ATLS_NAMES_NOT_REGISTERED) {
        if (atls_name_check(name, strlen(name), 1, 127, folded, sizeof(folded), why,
                            sizeof(why)) != 0) {
            snprintf(folded, sizeof(folded), "%.200s", name);
        }
        snprintf(err, errlen, "name \"%s\" is not registered", folded);
        rc = ATLS_STORE_NOTFOUND;
    }
    if (rc == ATLS_STORE_OK && removed != NULL) {
        *removed = what == ATLS_NAMES_REMOVED_NOW;
    }
    if (rc == ATLS_STORE_OK && was != NULL) {
        *was = e;
    } else {
        atls_name_entry_free(&e);
        if (was != NULL) {
            memset(was, 0, sizeof(*was));
        }
    }
    return rc;
}

int
atls_names_remove(atls_store_t *st, const char *name, time_t now, char *err, size_t errlen)
{
    return atls_names_remove_entry(st, name, now, NULL, NULL, err, errlen);
}

int
atls_names_get(atls_store_t *st, const char *name, atls_name_entry_t *e,
               char *err, size_t errlen)
{
    char  folded[256], *path;
    int   rc;

    memset(e, 0, sizeof(*e));
    path = names_path(name, folded, sizeof(folded), err, errlen);
    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = atls_names_read(st, path, folded, e, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        snprintf(err, errlen, "name \"%s\" is not registered", folded);
    }
    free(path);
    return rc;
}


/* ---- purge ------------------------------------------------------------------ */

/* Every entry under dir, then dir itself (a backend that has no
 * directories has nothing left to remove there). */
static int
names_del_tree(atls_store_t *st, const char *dir, char *err, size_t errlen)
{
    char  **files = NULL, *path;
    size_t  nf = 0, i;
    int     rc;

    rc = st->ops->list(st, dir, &files, &nf, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        return ATLS_STORE_OK;
    }
    for (i = 0; rc == ATLS_STORE_OK && i < nf; i++) {
        path = atls_store_cat(dir, "/", files[i], NULL);
        if (st->ops->del(st, path, err, errlen) == ATLS_STORE_ERROR) {
            rc = ATLS_STORE_ERROR;
        }
        free(path);
    }
    atls_strv_free(files, nf);
    if (rc == ATLS_STORE_OK && st->ops->del(st, dir, err, errlen) == ATLS_STORE_ERROR) {
        rc = ATLS_STORE_ERROR;
    }
    return rc;
}

/* The certificate of a purged name: its files (keys, chains, OCSP
 * responses, meta), fallbacks and a pending renew request, under the
 * certificate's lock so that no job writes them meanwhile.  BUSY when a
 * job holds it: tried again at the next pass. */
static int
names_del_cert(atls_store_t *st, const char *id, char *err, size_t errlen)
{
    atls_store_lock_t *lk = NULL;
    char              *dir;
    int                rc;

    rc = atls_store_lock_cert(st, id, 0, &lk, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    dir = atls_store_cat("certs/", id, NULL);
    rc = names_del_tree(st, dir, err, errlen);
    free(dir);
    if (rc == ATLS_STORE_OK) {
        dir = atls_store_cat("fallback/", id, NULL);
        rc = names_del_tree(st, dir, err, errlen);
        free(dir);
    }
    (void) atls_store_take_request(st, id);
    atls_store_unlock(st, lk);
    return rc;
}

/* `removed` for each purged entry v[idx[0..n-1]], as one batch: a bulk
 * removal's names reach the end of their grace together, and 10,000 of
 * them cost one audit append and a few queue entries, not 10,000. */
static void
names_emit_purged(atls_events_t *ev, const atls_name_entry_t *v, const size_t *idx,
                  size_t n, time_t now)
{
    atls_event_t *x;
    size_t        i;

    if (ev == NULL || n == 0) {
        return;
    }
    x = calloc(n, sizeof(*x));
    if (x == NULL) {
        abort();
    }
    for (i = 0; i < n; i++) {
        x[i].type = ATLS_EV_REMOVED;
        x[i].time = now;
        x[i].cert_id = atls_cert_id(v[idx[i]].name);
        x[i].names = (const char *const *) &v[idx[i]].name;
        x[i].n_names = 1;
        x[i].source = v[idx[i]].source;
        x[i].detail = "dynamic name removed: certificate deleted after its grace period";
    }
    (void) atls_events_emit_many(ev, x, n);
    for (i = 0; i < n; i++) {
        free((char *) x[i].cert_id);
    }
    free(x);
}

/* One entry removed before the cut: certificate first (a crash leaves the
 * entry, and the next pass finishes), then the entry. */
static int
names_purge_one(atls_store_t *st, const atls_name_entry_t *e, time_t cut,
                char *err, size_t errlen)
{
    atls_name_entry_t cur;
    char              folded[256], *path, *id;
    int               rc;

    path = names_path(e->name, folded, sizeof(folded), err, errlen);
    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    /* re-read under the lock: added again since the list was made? */
    rc = atls_names_read(st, path, folded, &cur, err, errlen);
    if (rc != ATLS_STORE_OK || cur.state != ATLS_NAME_REMOVED || cur.removed > cut) {
        atls_name_entry_free(&cur);
        free(path);
        return rc == ATLS_STORE_ERROR ? rc : ATLS_STORE_NOTFOUND;
    }
    atls_name_entry_free(&cur);
    id = atls_cert_id(folded);
    rc = names_del_cert(st, id, err, errlen);
    if (rc == ATLS_STORE_OK) {
        rc = st->ops->del(st, path, err, errlen);
        rc = rc == ATLS_STORE_NOTFOUND ? ATLS_STORE_OK : rc;
    }
    free(id);
    free(path);
    return rc;
}

int
atls_names_purge(atls_store_t *st, time_t now, long grace, atls_events_t *ev,
                 size_t *purged, char *err, size_t errlen)
{
    atls_name_entry_t *v = NULL;
    atls_store_lock_t *lk = NULL;
    size_t             n = 0, i, done = 0;
    time_t             cut = now - (grace > 0 ? grace : 0);
    char               why[512];
    const char       **gone = NULL;
    size_t            *idx = NULL;
    int                rc, one;

    if (purged != NULL) {
        *purged = 0;
    }
    rc = atls_names_list(st, &v, &n, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    for (i = 0; i < n && (v[i].state != ATLS_NAME_REMOVED || v[i].removed > cut); i++) {
    }
    if (i == n) {
        goto out;                   /* the usual pass: nothing to purge, no lock */
    }
    rc = names_lock(st, &lk, err, errlen);
    gone = calloc(n, sizeof(*gone));
    idx = calloc(n, sizeof(*idx));
    if (gone == NULL || idx == NULL) {
        abort();
    }
    for (; rc == ATLS_STORE_OK && i < n; i++) {
        if (v[i].state != ATLS_NAME_REMOVED || v[i].removed > cut) {
            continue;
        }
        one = names_purge_one(st, &v[i], cut, why, sizeof(why));
        if (one == ATLS_STORE_OK) {
            idx[done] = i;
            gone[done++] = v[i].name;
        } else if (one == ATLS_STORE_BUSY) {
            atls_log(ATLS_LOG_INFO, "names: %s is being worked on; purged at a later pass",
                     v[i].name);
        } else if (one == ATLS_STORE_ERROR) {
            atls_log(ATLS_LOG_ERR, "names: purging %s: %s", v[i].name, why);
        }
    }
    if (rc == ATLS_STORE_OK && done > 0) {
        rc = names_changed(st, gone, done, -(long) done, err, errlen);
    }
    if (lk != NULL) {
        st->ops->unlock(st, lk);
    }
    names_emit_purged(ev, v, idx, done, now);
out:
    if (purged != NULL) {
        *purged = done;
    }
    free(idx);
    free(gone);
    atls_name_entries_free(v, n);
    return rc;
}
