/*
 * The scheduler and the registry of dynamic names (atls_names.h): the
 * active names whose home this host has are managed like configured
 * certificates; a name removed from the registry stops being managed (its
 * order cancelled, its challenges withdrawn); a removed name's certificate
 * is purged from the store once its grace period is over.  The registry is
 * listed again only when its generation moved, so a host may call
 * atls_sched_names_sync whenever the store generation moves.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "atls_names.h"
#include "names_int.h"
#include "sched_internal.h"

/* registry entries listed at once by the first sync (a few ms to read) */
#define SCHED_NAMES_PAGE  128

/* ---- stop managing one certificate --------------------------------------- */

/* c out of a singly linked queue (forced, revocation) through its link. */
static void
queue_unlink(atls_sched_cert_t **head, atls_sched_cert_t **tail, atls_sched_cert_t *c,
             size_t link_off)
{
    atls_sched_cert_t **pp = head, *prev = NULL;

#define NEXT_OF(x) (*(atls_sched_cert_t **) ((char *) (x) + link_off))
    while (*pp != NULL && *pp != c) {
        prev = *pp;
        pp = &NEXT_OF(*pp);
    }
    if (*pp == NULL) {
        return;
    }
    *pp = NEXT_OF(c);
    if (*tail == c) {
        *tail = prev;
    }
    NEXT_OF(c) = NULL;
#undef NEXT_OF
}

/* Teardown hooks left by c's failed order: they name c, which goes, so
 * they are ended (a dns-01 record they were removing may stay: said). */
static void
orphans_drop(atls_sched_t *s, atls_sched_cert_t *c)
{
    atls_sched_op_t **pp = &s->orphans, *op;

    while ((op = *pp) != NULL) {
        if (op->cert != c) {
            pp = &op->next;
            continue;
        }
        *pp = op->next;
        atls_log(ATLS_LOG_WARN, "autotls: %s removed while its dns hook removed %s: "
                 "the hook was stopped, the record may remain", c->id,
                 op->what != NULL ? op->what : "a record");
        if (s->host.hook_kill != NULL) {
            s->host.hook_kill(s->host.ctx, op);
        }
        atls_sched_op_free(op);
    }
}

void
atls_sched_remove(atls_sched_t *s, atls_sched_cert_t *c)
{
    size_t i;
    int    freed_slot = 0;

    if (s == NULL || c == NULL) {
        return;
    }
    for (i = 0; i < s->n_slots; i++) {
        if (s->slots[i].cert == c) {
            atls_sched_slot_cancel(&s->slots[i]);
            freed_slot = 1;
        }
    }
    orphans_drop(s, c);
    if (c->forced) {
        queue_unlink(&s->forced, &s->forced_tail, c,
                     offsetof(atls_sched_cert_t, force_next));
    }
    if (c->rev_queued) {
        queue_unlink(&s->rev_queue, &s->rev_queue_tail, c,
                     offsetof(atls_sched_cert_t, rev_next));
    }
    atls_sched_cert_unlink(s, c);
    atls_log(ATLS_LOG_INFO, "autotls: %s is no longer managed", c->id);
    atls_sched_cert_free(c);
    if (freed_slot && s->pass_active) {
        /* a pass waiting for a slot goes on from the timer */
        s->kick_due = 1;
        atls_sched_notify(s);
    }
}

/* ---- the registry ---------------------------------------------------------- */

/* Name and home of the active entries this host serves, sorted by name
 * (the registry lists them so), for the removal sweep. */
typedef struct {
    const char **names;
    size_t       n;
} names_kept_t;

static int
names_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static int
names_kept_has(const names_kept_t *k, const char *id)
{
    return k->n > 0 && bsearch(&id, k->names, k->n, sizeof(*k->names), names_cmp) != NULL;
}

typedef enum {
    SYNC_ADDED = 0,     /* managed from now on */
    SYNC_KEPT,          /* managed already (or configured) */
    SYNC_ELSEWHERE,     /* not a home of this host's, or refused: not managed */
} sync_one_t;

/* One active entry: managed when its home is this host's. */
static sync_one_t
names_sync_one(atls_sched_t *s, const atls_name_entry_t *e)
{
    const atls_issuer_t *is;
    atls_sched_cert_t   *c;
    const char          *names[1];
    void                *data = NULL;
    char                 err[512];

    is = s->host.home(s->host.ctx, e->home, &data);
    if (is == NULL) {
        return SYNC_ELSEWHERE;  /* another server's home: left alone */
    }
    if (atls_sched_find(s, e->name) != NULL) {
        return SYNC_KEPT;
    }
    names[0] = e->name;
    c = atls_sched_add(s, names, 1, is, data, err, sizeof(err));
    if (c == NULL) {
        atls_log(ATLS_LOG_ERR, "autotls: dynamic name %s not managed: %s", e->name, err);
        return SYNC_ELSEWHERE;
    }
    c->dynamic = 1;
    return SYNC_ADDED;
}

/* Stops managing the dynamic certificate of name, if there is one. */
static int
names_drop(atls_sched_t *s, const char *name)
{
    atls_sched_cert_t *c = atls_sched_find(s, name);

    if (c == NULL || !c->dynamic) {
        return 0;
    }
    atls_sched_remove(s, c);
    return 1;
}

static void
names_purge_at(atls_sched_t *s, const atls_name_entry_t *e)
{
    time_t t = e->removed + s->names_grace_s;

    if (s->names_purge_at == 0 || t < s->names_purge_at) {
        s->names_purge_at = t;
    }
}

/* Only the names the journal says changed since the last look. */
static void
names_sync_changed(atls_sched_t *s, char *const *names, size_t n, size_t *added,
                   size_t *removed)
{
    atls_name_entry_t e;
    char              err[512];
    size_t            i;
    int               rc;

    for (i = 0; i < n; i++) {
        rc = atls_names_get(s->st, names[i], &e, err, sizeof(err));
        if (rc == ATLS_STORE_ERROR) {
            atls_log(ATLS_LOG_WARN, "autotls: dynamic name %s: %s", names[i], err);
            continue;       /* as it was, until the entry reads again */
        }
        if (rc == ATLS_STORE_OK && e.state == ATLS_NAME_ACTIVE) {
            switch (names_sync_one(s, &e)) {
            case SYNC_ADDED:
                (*added)++;
                break;
            case SYNC_ELSEWHERE:
                *removed += (size_t) names_drop(s, e.name);
                break;
            default:
                break;
            }
        } else {
            if (rc == ATLS_STORE_OK) {
                names_purge_at(s, &e);
            }
            *removed += (size_t) names_drop(s, names[i]);
        }
        atls_name_entry_free(&e);
    }
}

/* The earliest end of a removed entry's grace period, 0 when none. */
static time_t
names_purge_due(const atls_sched_t *s, const atls_name_entry_t *v, size_t n)
{
    time_t due = 0, t;
    size_t i;

    for (i = 0; i < n; i++) {
        if (v[i].state != ATLS_NAME_REMOVED) {
            continue;
        }
        t = v[i].removed + s->names_grace_s;
        if (due == 0 || t < due) {
            due = t;
        }
    }
    return due;
}

/* The whole registry: at the first look, and when the journal does not
 * cover what changed. */
static void
names_sync_all(atls_sched_t *s, atls_name_entry_t *v, size_t n, size_t *added,
               size_t *removed)
{
    names_kept_t kept = { NULL, 0 };
    size_t       i;

    kept.names = calloc(n + 1, sizeof(*kept.names));
    if (kept.names == NULL) {
        abort();
    }
    for (i = 0; i < n; i++) {
        if (v[i].state != ATLS_NAME_ACTIVE) {
            continue;
        }
        switch (names_sync_one(s, &v[i])) {
        case SYNC_ADDED:
            (*added)++;
            /* fall through */
        case SYNC_KEPT:
            kept.names[kept.n++] = v[i].name;   /* sorted: the registry lists so */
            break;
        default:
            break;
        }
    }
    for (i = s->n_certs; i > 0; i--) {
        atls_sched_cert_t *c = s->certs[i - 1];

        if (c->dynamic && !names_kept_has(&kept, c->id)) {
            atls_sched_remove(s, c);
            (*removed)++;
        }
    }
    s->names_purge_at = names_purge_due(s, v, n);
    free(kept.names);
}

void
atls_sched_names_free(atls_sched_t *s)
{
    atls_store_list_end(s->st, s->names_cursor);
    s->names_cursor = NULL;
    s->names_listing = 0;
    /* the page's entries not reached yet; those before were freed as
     * they were synced, and the array is freed once, below */
    while (s->names_first_next < s->names_first_n) {
        free(s->names_first[s->names_first_next++]);
    }
    free(s->names_first);
    s->names_first = NULL;
    s->names_first_n = s->names_first_next = s->names_first_added = 0;
    s->names_first_seen = 0;
    s->names_first_on = 0;
    s->names_resume = 0;
}

/* The listing's next page (entry names only); 0 when the listing is
 * complete, -1 when it cannot be read (the first sync is given up). */
static int
names_first_page(atls_sched_t *s)
{
    char   err[512];
    size_t i, k = 0;

    free(s->names_first);
    s->names_first = NULL;
    s->names_first_n = s->names_first_next = 0;
    while (s->names_first_n == 0 && s->names_listing) {
        if (atls_store_list_page(s->st, "names", &s->names_cursor, SCHED_NAMES_PAGE,
                                 &s->names_first, &s->names_first_n, err, sizeof(err))
            != ATLS_STORE_OK)
        {
            atls_log(ATLS_LOG_ERR, "autotls: the registry of dynamic names was not "
                     "read: %s", err);
            return -1;
        }
        s->names_listing = s->names_cursor != NULL;
        /* "<id>.json", and an id is its name: only the ones a name can be */
        for (i = 0, k = 0; i < s->names_first_n; i++) {
            if (atls_names_file_name(s->names_first[i])) {
                s->names_first[k++] = s->names_first[i];
            } else {
                free(s->names_first[i]);
            }
        }
        s->names_first_n = k;
    }
    s->names_first_seen += s->names_first_n;
    return s->names_first_n > 0 ? 1 : 0;
}

/*
 * The first sync reads every entry: at 100,000 names seconds of a worker
 * that also serves handshakes.  So the registry is listed in pages and
 * its entries read in slices of slice_ms, the rest from the timer: nothing
 * before the host's first step walks the whole registry.  It ends as
 * synced at the generation the listing began at: what changed meanwhile
 * is in the journal after it, read at once; and the count of entries the
 * listing found is kept for the next start (names-count).  No dynamic
 * certificate is managed before the first sync, so there is nothing to
 * sweep.
 */
static void
names_first_slice(atls_sched_t *s, int initial)
{
    long long  start = atls_sched_now_ms(), now;
    size_t     removed = 0, before = s->names_first_added, checked = 0;
    char      *one[1];
    int        more;

    for (;;) {
        now = atls_sched_now_ms();
        if (s->slice_ms > 0 && checked++ > 0 && now - start >= s->slice_ms) {
            s->names_resume = now + (s->slice_ms < SCHED_PASS_PAUSE_MS ? s->slice_ms
                                                                       : SCHED_PASS_PAUSE_MS);
            atls_sched_touch(s);
            goto planned;
        }
        if (s->names_first_next == s->names_first_n) {
            more = names_first_page(s);
            if (more < 0) {
                atls_sched_names_free(s);   /* tried again at the next call */
                goto planned;
            }
            if (more == 0) {
                break;
            }
        }
        one[0] = s->names_first[s->names_first_next];
        names_sync_changed(s, one, 1, &s->names_first_added, &removed);
        free(s->names_first[s->names_first_next++]);
    }
    s->names_synced = 1;
    s->names_gen = s->names_first_gen;
    atls_names_count_settle(s->st, s->names_first_gen, s->names_first_seen);
    if (s->names_first_added > 0) {
        atls_log(ATLS_LOG_INFO, "autotls: dynamic names: %zu added",
                 s->names_first_added);
    }
    atls_sched_names_free(s);
planned:
    /* at start the host's first pass plans them; a later slice's, a pass */
    if (!initial && s->names_first_added > before) {
        atls_sched_check(s);
    }
    if (s->names_synced && atls_names_generation(s->st) != s->names_gen) {
        atls_sched_names_sync(s);   /* changed while listed: the journal */
    }
}

static void
names_first_start(atls_sched_t *s, uint64_t gen)
{
    size_t n;

    /* the index grown once when the registry's size is known, not rehashed
     * in the middle of the slices (a failure here is only the growth in
     * steps, as when it is not known) */
    if (atls_names_count(s->st, &n) == ATLS_STORE_OK) {
        (void) atls_sched_certs_reserve(s, s->n_certs + n);
    }
    s->names_cursor = NULL;
    s->names_listing = 1;
    s->names_first_next = s->names_first_n = 0;
    s->names_first_added = 0;
    s->names_first_seen = 0;
    s->names_first_gen = gen;
    s->names_first_on = 1;
    names_first_slice(s, 1);
}

void
atls_sched_names_sync(atls_sched_t *s)
{
    atls_name_entry_t *v = NULL;
    char             **changed = NULL, err[512];
    size_t             n = 0, added = 0, removed = 0;
    uint64_t           gen;

    if (s == NULL || s->host.home == NULL) {
        return;
    }
    if (s->names_first_on && s->stopping) {
        atls_sched_names_free(s);       /* stopping: no name joins any more */
        return;
    }
    if (s->names_first_on) {
        if (s->names_resume == 0) {
            names_first_slice(s, 0);    /* else the timer goes on with it */
        }
        return;
    }
    gen = atls_names_generation(s->st);
    if (!s->names_synced) {
        names_first_start(s, gen);
        return;
    }
    if (gen == s->names_gen) {
        return;
    }
    if (gen > s->names_gen
        && atls_names_changed_since(s->st, s->names_gen, gen, &changed, &n, err,
                                    sizeof(err)) == ATLS_STORE_OK)
    {
        names_sync_changed(s, changed, n, &added, &removed);
        atls_strv_free(changed, n);
    } else {
        if (atls_names_list(s->st, &v, &n, err, sizeof(err)) != ATLS_STORE_OK) {
            atls_log(ATLS_LOG_ERR, "autotls: the registry of dynamic names was not read: "
                     "%s", err);
            return;         /* tried again at the next call: names_gen unchanged */
        }
        names_sync_all(s, v, n, &added, &removed);
        atls_name_entries_free(v, n);
    }
    s->names_gen = gen;
    if (added > 0 || removed > 0) {
        atls_log(ATLS_LOG_INFO, "autotls: dynamic names: %zu added, %zu removed", added,
                 removed);
    }
    if (added > 0) {
        atls_sched_check(s);        /* a pass now */
    }
}

void
atls_sched_names_pass(atls_sched_t *s)
{
    char   err[512];
    size_t purged = 0;
    time_t now = time(NULL);

    if (s->host.home == NULL || s->names_purge_at == 0 || now < s->names_purge_at) {
        return;
    }
    if (atls_names_purge(s->st, now, s->names_grace_s, s->events, &purged, err,
                         sizeof(err)) != ATLS_STORE_OK)
    {
        atls_log(ATLS_LOG_ERR, "autotls: purging removed dynamic names: %s", err);
        return;
    }
    if (purged > 0) {
        atls_log(ATLS_LOG_INFO, "autotls: %zu removed dynamic name%s purged", purged,
                 purged == 1 ? "" : "s");
    }
    /* Purged: the registry's generation moved, the next sync lists it and
     * finds the next grace period to wait for.  None (a job held one's
     * lock): tried again at the next pass. */
    if (purged > 0) {
        s->names_purge_at = 0;
    }
}
