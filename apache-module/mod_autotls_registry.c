/*
 * Each child's copy of the registry of dynamic names (atls_names.h): a
 * table sorted by name, giving each name's certificate id, the dynamic
 * home (AutoTLS Dynamic / OnDemand host) it belongs to here, and whether
 * it was removed.
 *
 * The copy is looked at again only when the store generation in shared
 * memory moved (every add and remove bumps it; the watchdog publishes it
 * within half a second), and changes only when the registry's own
 * generation moved too: a deploy costs one small file read per child.
 * Then only the names the registry's journal says changed are read (with
 * 100,000 names, a change costs the changed entries, not 100,000 files);
 * the whole registry is listed at the first look and when the journal
 * does not reach back far enough.
 *
 * Handshakes read the table under a read lock and copy what they need; a
 * new table is built aside and swapped in under the write lock, so the
 * store is never read with the lock held.
 */
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"

#include "atls_names.h"
#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

typedef struct {
    char               *name;      /* sorted, malloc'd */
    char               *id;        /* its certificate id, malloc'd */
    autotls_srv_conf_t *home;      /* owner of its home here, NULL: not ours */
    int                 removed;
} reg_name_t;

typedef struct {
    reg_name_t         *names;
    size_t              n;
} reg_table_t;

static pthread_rwlock_t reg_lock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t  reg_refresh_lock = PTHREAD_MUTEX_INITIALIZER;
static reg_table_t     *reg_table;
static uint64_t         reg_seen_gen;      /* shm generation last looked at */
static uint64_t         reg_names_gen;     /* the registry's, of reg_table */
static size_t           reg_n_read;        /* entries the last refresh read */

autotls_srv_conf_t *
autotls_dyn_home(const char *home)
{
    apr_array_header_t *homes = autotls_global.homes;
    int i;

    if (homes == NULL || homes->nelts == 0) {
        return NULL;
    }
    if (home == NULL || home[0] == '\0') {
        return APR_ARRAY_IDX(homes, 0, autotls_srv_conf_t *);
    }
    for (i = 0; i < homes->nelts; i++) {
        autotls_srv_conf_t *h = APR_ARRAY_IDX(homes, i, autotls_srv_conf_t *);

        if (h->s->server_hostname != NULL
            && strcasecmp(h->s->server_hostname, home) == 0) {
            return h;
        }
    }
    return NULL;
}

/* ---- building tables ---------------------------------------------------- */

static void
reg_name_free(reg_name_t *r)
{
    free(r->name);
    free(r->id);
}

/* Frees t's array; its entries' strings too when `own` (not shared with
 * the table that replaced it). */
static void
reg_table_free(reg_table_t *t, int own)
{
    size_t i;

    if (t == NULL) {
        return;
    }
    for (i = 0; own && i < t->n; i++) {
        reg_name_free(&t->names[i]);
    }
    free(t->names);
    free(t);
}

static void *
reg_alloc(size_t n)
{
    void *p = calloc(1, n);

    if (p == NULL) {
        abort();
    }
    return p;
}

static reg_table_t *
reg_table_new(size_t cap)
{
    reg_table_t *t = reg_alloc(sizeof(*t));

    t->names = reg_alloc((cap + 1) * sizeof(*t->names));
    return t;
}

/* name's row in t (for reg_table: with the read lock held). */
static const reg_name_t *
reg_find_in(const reg_table_t *t, const char *name)
{
    size_t lo = 0, hi;

    if (t == NULL) {
        return NULL;
    }
    hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(name, t->names[mid].name);

        if (cmp == 0) {
            return &t->names[mid];
        }
        if (cmp < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

/* Takes e's name into a new row of t (e->name is left NULL). */
static void
reg_push(reg_table_t *t, atls_name_entry_t *e)
{
    reg_name_t *r = &t->names[t->n++];

    r->id = atls_cert_id(e->name);
    if (r->id == NULL) {
        abort();
    }
    r->name = e->name;
    e->name = NULL;
    r->home = autotls_dyn_home(e->home);
    r->removed = e->state != ATLS_NAME_ACTIVE;
}

/* The whole registry as a table, or NULL (logged). */
static reg_table_t *
reg_read_all(atls_store_t *st)
{
    atls_name_entry_t *v = NULL;
    reg_table_t *t;
    char err[256];
    size_t n = 0, i;

    if (atls_names_list(st, &v, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, autotls_global.main_server,
                     "autotls: cannot read the registry of dynamic names: %s; "
                     "keeping the names this child knows", err);
        return NULL;
    }
    t = reg_table_new(n);
    for (i = 0; i < n; i++) {
        reg_push(t, &v[i]);
    }
    reg_n_read = n;
    atls_name_entries_free(v, n);
    return t;
}

/* The entries of the sorted names `changed` (found[j] 0: gone); -1 when
 * one cannot be read (logged: the caller lists everything instead). */
static int
reg_read_changed(atls_store_t *st, char **changed, size_t n, atls_name_entry_t *fresh,
                 char *found)
{
    char err[256];
    size_t j;
    int rc;

    for (j = 0; j < n; j++) {
        rc = atls_names_get(st, changed[j], &fresh[j], err, sizeof(err));
        if (rc != ATLS_STORE_OK && rc != ATLS_STORE_NOTFOUND) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, autotls_global.main_server,
                         "autotls: registry entry of %s: %s; reading the whole "
                         "registry", changed[j], err);
            return -1;
        }
        found[j] = rc == ATLS_STORE_OK;
    }
    return 0;
}

/* old with the sorted names `changed` read again, or NULL.  The unchanged
 * rows are shared with old; replaced[i] marks old's rows that are not. */
static reg_table_t *
reg_merge(const reg_table_t *old, atls_store_t *st, char **changed, size_t n_changed,
          char *replaced)
{
    atls_name_entry_t *fresh = reg_alloc((n_changed + 1) * sizeof(*fresh));
    char *found = reg_alloc(n_changed + 1);
    reg_table_t *t = NULL;
    size_t i = 0, j = 0;
    int cmp;

    if (reg_read_changed(st, changed, n_changed, fresh, found) != 0) {
        goto out;
    }
    t = reg_table_new(old->n + n_changed);
    reg_n_read = n_changed;
    while (i < old->n || j < n_changed) {
        cmp = i == old->n ? 1 : j == n_changed ? -1 : strcmp(old->names[i].name,
                                                              changed[j]);
        if (cmp < 0) {
            t->names[t->n++] = old->names[i++];     /* shared */
            continue;
        }
        if (cmp == 0) {
            replaced[i++] = 1;
        }
        if (found[j]) {
            reg_push(t, &fresh[j]);
        }
        j++;
    }
out:
    atls_name_entries_free(fresh, n_changed);
    free(found);
    return t;
}

/* A new table from the store, or NULL (keep the old one): the changed
 * names only when the journal covers them, else everything; replaced as
 * for reg_merge (all set when read whole: nothing is shared). */
static reg_table_t *
reg_read(atls_store_t *st, uint64_t ngen, char **replaced)
{
    reg_table_t *old = reg_table;
    char **changed = NULL, err[256];
    size_t n = 0;
    reg_table_t *t = NULL;

    *replaced = NULL;
    if (old != NULL && ngen > reg_names_gen
        && atls_names_changed_since(st, reg_names_gen, ngen, &changed, &n, err,
                                    sizeof(err)) == ATLS_STORE_OK) {
        *replaced = reg_alloc(old->n + 1);
        t = reg_merge(old, st, changed, n, *replaced);
        atls_strv_free(changed, n);
        if (t != NULL) {
            return t;
        }
        free(*replaced);
    }
    t = reg_read_all(st);
    *replaced = old != NULL && t != NULL ? memset(reg_alloc(old->n + 1), 1, old->n) : NULL;
    return t;
}

/* r (a row of the table t replaces) was served and is not in t, or
 * removed there: the child frees what it parsed for it (a name removed
 * and re-added meanwhile starts from the store again, as new). */
static void
reg_forget_gone(const reg_name_t *r, const reg_table_t *t)
{
    const reg_name_t *now;

    if (r->removed || r->home == NULL) {
        return;
    }
    now = reg_find_in(t, r->name);
    if (now == NULL || now->removed) {
        autotls_dyn_forget(r->id);
    }
}

/* The table again when the registry changed since it was read; cheap
 * (one atomic load) when the shm generation did not move. */
static void
reg_refresh(void)
{
    uint64_t gen = autotls_generation_get(), ngen;
    reg_table_t *t, *old;
    char *replaced;
    atls_store_t *st;
    size_t i;

    if (__atomic_load_n(&reg_seen_gen, __ATOMIC_ACQUIRE) == gen) {
        return;
    }
    pthread_mutex_lock(&reg_refresh_lock);
    if (reg_seen_gen == gen || (st = autotls_store_open(autotls_global.main_server)) == NULL) {
        goto out;
    }
    ngen = atls_names_generation(st);
    t = reg_table != NULL && ngen == reg_names_gen ? NULL : reg_read(st, ngen, &replaced);
    atls_store_close(st);
    if (t == NULL && (reg_table == NULL || ngen != reg_names_gen)) {
        goto out;   /* unreadable: tried again at the next handshake */
    }
    if (t != NULL) {
        pthread_rwlock_wrlock(&reg_lock);
        old = reg_table;
        reg_table = t;
        pthread_rwlock_unlock(&reg_lock);
        /* no handshake holds old's rows now: free what t does not share;
         * a name no longer served lets go of its parsed certificate */
        for (i = 0; old != NULL && i < old->n; i++) {
            if (replaced[i]) {
                reg_forget_gone(&old->names[i], t);
                reg_name_free(&old->names[i]);
            }
        }
        free(replaced);
        reg_table_free(old, 0);
        reg_names_gen = ngen;
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, autotls_global.main_server,
                     "autotls: child %ld knows %lu dynamic name(s) at registry "
                     "generation %" APR_UINT64_T_FMT " (%lu entries read)",
                     (long) getpid(), (unsigned long) t->n, (apr_uint64_t) ngen,
                     (unsigned long) reg_n_read);
    }
    __atomic_store_n(&reg_seen_gen, gen, __ATOMIC_RELEASE);
out:
    pthread_mutex_unlock(&reg_refresh_lock);
}

autotls_dyn_state_e
autotls_registry_lookup(autotls_srv_conf_t *home, const char *name, char *id, size_t idlen)
{
    autotls_dyn_state_e st = AUTOTLS_DYN_UNKNOWN;
    const reg_name_t *r;

    reg_refresh();
    pthread_rwlock_rdlock(&reg_lock);
    r = reg_find_in(reg_table, name);
    if (r != NULL && r->home != NULL && r->home == home->owner && strlen(r->id) < idlen) {
        st = r->removed ? AUTOTLS_DYN_REMOVED : AUTOTLS_DYN_PENDING;
        strcpy(id, r->id);
    }
    pthread_rwlock_unlock(&reg_lock);
    return st;
}

/* The table goes with the child; handshakes have ended by then. */
static apr_status_t
reg_child_cleanup(void *data)
{
    pthread_rwlock_wrlock(&reg_lock);
    reg_table_free(reg_table, 1);
    reg_table = NULL;
    pthread_rwlock_unlock(&reg_lock);
    return APR_SUCCESS;
}

void
autotls_registry_child_init(apr_pool_t *pchild)
{
    apr_pool_cleanup_register(pchild, NULL, reg_child_cleanup, apr_pool_cleanup_null);
}
