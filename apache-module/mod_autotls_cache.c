/*
 * The per-child certificate cache: parsing a name set's keys and chains from
 * the store (on demand at a handshake after a generation change, or ahead of
 * time by the preload thread started in child_init), and the table that lets
 * every chain of a child share one parsed copy of each intermediate.
 */
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include <openssl/x509.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"

#include "atls_job.h"
#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

/* name sets parsed per preload batch, and the pause between batches */
#define AUTOTLS_PRELOAD_BATCH     8
#define AUTOTLS_PRELOAD_PAUSE_NS  1000000L
/* distinct intermediates shared per child; beyond that chains keep their own */
#define AUTOTLS_INTERN_MAX        64

/* ---- shared intermediates --------------------------------------------- */

/* A CA signs thousands of leaves with one or two intermediates: without
 * sharing, every cached chain would hold its own parsed copy.  The table
 * holds one reference per entry until the child exits; it is small and
 * bounded, so rotated-out intermediates cost at most a few KB each. */
static pthread_mutex_t autotls_intern_lock = PTHREAD_MUTEX_INITIALIZER;
static X509           *autotls_intern[AUTOTLS_INTERN_MAX];
static size_t          autotls_intern_n;

static void
autotls_chain_intern(STACK_OF(X509) *chain)
{
    int i;
    size_t j;

    if (chain == NULL) {
        return;
    }
    pthread_mutex_lock(&autotls_intern_lock);
    for (i = 0; i < sk_X509_num(chain); i++) {
        X509 *x = sk_X509_value(chain, i);

        for (j = 0; j < autotls_intern_n; j++) {
            /* X509_cmp compares the DER encodings (hash first) */
            if (X509_cmp(autotls_intern[j], x) == 0) {
                break;
            }
        }
        if (j < autotls_intern_n) {
            if (autotls_intern[j] != x && X509_up_ref(autotls_intern[j])) {
                sk_X509_set(chain, i, autotls_intern[j]);
                X509_free(x);
            }
            continue;
        }
        if (autotls_intern_n < AUTOTLS_INTERN_MAX && X509_up_ref(x)) {
            autotls_intern[autotls_intern_n++] = x;
        }
    }
    pthread_mutex_unlock(&autotls_intern_lock);
}

static size_t
autotls_intern_count(void)
{
    size_t n;

    pthread_mutex_lock(&autotls_intern_lock);
    n = autotls_intern_n;
    pthread_mutex_unlock(&autotls_intern_lock);
    return n;
}

static void
autotls_intern_clear(void)
{
    size_t j;

    pthread_mutex_lock(&autotls_intern_lock);
    for (j = 0; j < autotls_intern_n; j++) {
        X509_free(autotls_intern[j]);
        autotls_intern[j] = NULL;
    }
    autotls_intern_n = 0;
    pthread_mutex_unlock(&autotls_intern_lock);
}

/* ---- reading and installing ------------------------------------------- */

static void
autotls_slots_free(autotls_cache_t *c)
{
    size_t i;

    for (i = 0; i < ATLS_KEY_TYPE_MAX; i++) {
        EVP_PKEY_free(c->key[i]);
        X509_free(c->leaf[i]);
        sk_X509_pop_free(c->extra[i], X509_free);
        c->key[i] = NULL;
        c->leaf[i] = NULL;
        c->extra[i] = NULL;
        c->real[i] = 0;
    }
    c->n = 0;
    c->n_real = 0;
}

/* Parses certificate id (o's name set, or a dynamic name of home o) into
 * `fresh` (no lock needed: fresh is private).  Slot i holds key type i's
 * certificate when the store has one, else its fallback when `fallback`;
 * read_err[i] says the certificate exists but could not be read, so that
 * the installer can keep a real certificate it already has. */
static void
autotls_cache_read(autotls_srv_conf_t *o, const char *id, int fallback, atls_store_t *st,
                   autotls_cache_t *fresh, int *read_err)
{
    atls_key_type_t kts[ATLS_KEY_TYPE_MAX];
    char err[256];
    size_t i, n;
    int rc;

    memset(read_err, 0, sizeof(int) * ATLS_KEY_TYPE_MAX);
    n = atls_job_key_types(o->issuer, kts);
    fresh->n = n;
    for (i = 0; i < n; i++) {
        EVP_PKEY *key = NULL;
        STACK_OF(X509) *chain = NULL;

        rc = atls_store_load_cert(st, id, kts[i], &key, &chain, err, sizeof(err));
        if (rc == ATLS_STORE_OK && chain != NULL && sk_X509_num(chain) >= 1) {
            fresh->key[i] = key;
            fresh->leaf[i] = sk_X509_shift(chain);
            /* before the leaf is published: handshakes only read it */
            autotls_staple_attach(o, id, st, kts[i], fresh->leaf[i], chain);
            autotls_chain_intern(chain);
            fresh->extra[i] = chain;
            fresh->real[i] = 1;
            fresh->n_real++;
            continue;
        }
        EVP_PKEY_free(key);
        atls_chain_free(chain);
        if (rc != ATLS_STORE_NOTFOUND) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, o->s,
                         "autotls: %s: cannot load the %s certificate: %s", id,
                         atls_key_type_name(kts[i]),
                         rc == ATLS_STORE_OK ? "empty chain" : err);
            read_err[i] = 1;
        }
        if (!fallback) {
            continue;
        }
        if (atls_store_load_fallback(st, id, kts[i], &key, &chain, err, sizeof(err))
            != ATLS_STORE_OK) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, o->s,
                         "autotls: %s: cannot load the %s fallback certificate: %s",
                         id, atls_key_type_name(kts[i]), err);
            continue;
        }
        fresh->key[i] = key;
        fresh->leaf[i] = sk_X509_shift(chain);
        fresh->extra[i] = chain;
    }
}

/* Called with c's write lock held: swaps fresh's objects in (fresh is left
 * empty) and frees the old ones. */
static void
autotls_cache_install(autotls_srv_conf_t *o, const char *id, autotls_cache_t *c,
                      autotls_cache_t *fresh, const int *read_err, uint64_t gen,
                      const char *how)
{
    size_t i;

    for (i = 0; i < fresh->n; i++) {
        if (read_err[i] && c->real[i] && !fresh->real[i]) {
            /* never fall back from a real certificate because of a read
             * error: keep the one this child has */
            EVP_PKEY_free(fresh->key[i]);
            X509_free(fresh->leaf[i]);
            sk_X509_pop_free(fresh->extra[i], X509_free);
            fresh->key[i] = c->key[i];
            fresh->leaf[i] = c->leaf[i];
            fresh->extra[i] = c->extra[i];
            fresh->real[i] = 1;
            fresh->n_real++;
            c->key[i] = NULL;
            c->leaf[i] = NULL;
            c->extra[i] = NULL;
        }
    }
    autotls_slots_free(c);
    memcpy(c->key, fresh->key, sizeof(c->key));
    memcpy(c->leaf, fresh->leaf, sizeof(c->leaf));
    memcpy(c->extra, fresh->extra, sizeof(c->extra));
    memcpy(c->real, fresh->real, sizeof(c->real));
    c->n = fresh->n;
    c->n_real = fresh->n_real;
    c->loaded = 1;
    c->generation = gen;
    memset(fresh->key, 0, sizeof(fresh->key));
    memset(fresh->leaf, 0, sizeof(fresh->leaf));
    memset(fresh->extra, 0, sizeof(fresh->extra));
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, o->s,
                 "autotls: %s: child %ld loaded %d certificate(s) at generation %"
                 APR_UINT64_T_FMT " (%d key type(s) on their fallback)%s", id,
                 (long) getpid(), (int) c->n_real, (apr_uint64_t) gen,
                 (int) (c->n - c->n_real), how);
}

static void
autotls_cache_load_from(autotls_srv_conf_t *o, const char *id, int fallback,
                        autotls_cache_t *c, uint64_t gen)
{
    autotls_cache_t fresh;
    int read_err[ATLS_KEY_TYPE_MAX];
    atls_store_t *st;

    st = autotls_store_open(o->s);
    if (st == NULL) {
        /* keep what this child has; retried after the next generation */
        c->loaded = 1;
        c->generation = gen;
        return;
    }
    memset(&fresh, 0, sizeof(fresh));
    autotls_cache_read(o, id, fallback, st, &fresh, read_err);
    atls_store_close(st);
    autotls_cache_install(o, id, c, &fresh, read_err, gen, "");
}

void
autotls_cache_load(autotls_srv_conf_t *sc, autotls_cache_t *c, uint64_t gen)
{
    autotls_cache_load_from(sc->owner, sc->owner->cert_id, 1, c, gen);
}

void
autotls_cache_load_id(autotls_srv_conf_t *o, const char *id, autotls_cache_t *c,
                      uint64_t gen)
{
    autotls_cache_load_from(o, id, 0, c, gen);
}

void
autotls_cache_clear(autotls_cache_t *c)
{
    autotls_slots_free(c);
    c->loaded = 0;
}

/* ---- what changed: the store's change journal ----------------------------- */

/*
 * Every deploy (a new certificate, a new or withdrawn OCSP response, a
 * revocation) bumps the store generation and journals which certificate
 * it was for (changes.log, atls_store_changes_since).  When a child sees
 * the shm generation move, it reads the journal once and marks only those
 * caches stale: a deploy of one certificate among 10,000 costs one parse
 * per child, not 10,000.  When the journal does not reach back (rotated
 * past this child's generation), every cache is loaded again, as without
 * one.
 */
typedef struct {
    const char      *id;
    autotls_cache_t *cache;
} autotls_owner_t;

static pthread_mutex_t  autotls_changes_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t         autotls_changes_seen;   /* shm generation read up to */
static uint64_t         autotls_changes_all;    /* caches parsed before: stale */
static autotls_owner_t *autotls_owners;         /* sorted by id */
static size_t           autotls_n_owners;

static int
autotls_owner_cmp(const void *a, const void *b)
{
    return strcmp(((const autotls_owner_t *) a)->id, ((const autotls_owner_t *) b)->id);
}

static void
autotls_changes_mark(const char *id, uint64_t gen, size_t *n_static, size_t *n_dyn)
{
    autotls_owner_t key, *o;

    key.id = id;
    o = autotls_n_owners > 0 ? bsearch(&key, autotls_owners, autotls_n_owners,
                                       sizeof(*o), autotls_owner_cmp)
                             : NULL;
    if (o != NULL) {
        __atomic_store_n(&o->cache->changed, gen, __ATOMIC_RELEASE);
        (*n_static)++;
    } else if (autotls_dyn_changed(id, gen)) {
        (*n_dyn)++;
    }
}

/* The journal from the generation seen up to gen, once per child. */
static void
autotls_changes_read(uint64_t gen)
{
    uint64_t seen;
    atls_store_t *st;
    char **ids = NULL, err[256];
    size_t n = 0, i, n_static = 0, n_dyn = 0;
    int rc = ATLS_STORE_ERROR;

    pthread_mutex_lock(&autotls_changes_lock);
    seen = autotls_changes_seen;
    if (seen == gen) {
        goto out;
    }
    err[0] = '\0';
    st = seen != 0 && gen > seen ? autotls_store_open(autotls_global.main_server) : NULL;
    if (st != NULL) {
        /* shm generations are the store's + 1 */
        rc = atls_store_changes_since(st, seen - 1, gen - 1, &ids, &n, err, sizeof(err));
        atls_store_close(st);
    }
    if (rc == ATLS_STORE_OK) {
        for (i = 0; i < n; i++) {
            autotls_changes_mark(ids[i], gen, &n_static, &n_dyn);
        }
        atls_strv_free(ids, n);
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, autotls_global.main_server,
                     "autotls: child %ld: generation %" APR_UINT64_T_FMT ": %lu "
                     "certificate(s) changed (change journal; %lu served here, %lu "
                     "dynamic)", (long) getpid(), (apr_uint64_t) gen, (unsigned long) n,
                     (unsigned long) n_static, (unsigned long) n_dyn);
    } else {
        __atomic_store_n(&autotls_changes_all, gen, __ATOMIC_RELEASE);
        ap_log_error(APLOG_MARK, seen != 0 && err[0] ? APLOG_WARNING : APLOG_DEBUG, 0,
                     autotls_global.main_server,
                     "autotls: child %ld: generation %" APR_UINT64_T_FMT ": the change "
                     "journal does not reach back to %" APR_UINT64_T_FMT "%s%s; every "
                     "certificate is loaded again", (long) getpid(), (apr_uint64_t) gen,
                     (apr_uint64_t) seen, err[0] ? ": " : "", err);
    }
    __atomic_store_n(&autotls_changes_seen, gen, __ATOMIC_RELEASE);
out:
    pthread_mutex_unlock(&autotls_changes_lock);
}

int
autotls_cache_stale(autotls_cache_t *c, uint64_t gen)
{
    if (__atomic_load_n(&autotls_changes_seen, __ATOMIC_ACQUIRE) != gen) {
        autotls_changes_read(gen);
    }
    /* a cache parsed at a later generation than the store's now: the store
     * went back (replaced); parse again */
    return !c->loaded || c->generation > gen
           || c->generation < __atomic_load_n(&autotls_changes_all, __ATOMIC_ACQUIRE)
           || __atomic_load_n(&c->changed, __ATOMIC_ACQUIRE) > c->generation;
}

void
autotls_changes_child_init(apr_pool_t *pchild)
{
    int i, n = autotls_global.hosts != NULL ? autotls_global.hosts->nelts : 0;

    autotls_owners = apr_pcalloc(pchild, sizeof(*autotls_owners) * (size_t) (n + 1));
    for (i = 0; i < n; i++) {
        autotls_srv_conf_t *o = APR_ARRAY_IDX(autotls_global.hosts, i, autotls_srv_conf_t *);

        autotls_owners[i].id = o->cert_id;
        autotls_owners[i].cache = o->cache;
    }
    autotls_n_owners = (size_t) n;
    qsort(autotls_owners, autotls_n_owners, sizeof(*autotls_owners), autotls_owner_cmp);
    /* nothing is parsed yet: what changes from here on is in the journal */
    autotls_changes_seen = autotls_generation_get();
}

/* ---- AutoTLSCacheSize: one bound over every cache of the child ---------- */

/*
 * Static name sets and dynamic names alike: each autotls_cache_t holding
 * parsed objects is on one list, most recently used first.  A handshake
 * moves its cache to the front and evicts from the back beyond the bound.
 * The list's mutex is never held while waiting for a cache's lock (only
 * trywrlock), and a cache's lock may be held while taking the mutex, so the
 * two cannot deadlock; a victim in use right now is skipped.  An evicted
 * cache is reloaded from the store at its next handshake; connections that
 * hold its objects keep their own references.
 */
static pthread_mutex_t  autotls_lru_lock = PTHREAD_MUTEX_INITIALIZER;
static autotls_cache_t *autotls_lru_head, *autotls_lru_tail;
static size_t           autotls_lru_n;

static void
autotls_lru_unlink(autotls_cache_t *c)
{
    if (c->lru_prev != NULL) {
        c->lru_prev->lru_next = c->lru_next;
    } else {
        autotls_lru_head = c->lru_next;
    }
    if (c->lru_next != NULL) {
        c->lru_next->lru_prev = c->lru_prev;
    } else {
        autotls_lru_tail = c->lru_prev;
    }
    c->lru_prev = c->lru_next = NULL;
    c->in_lru = 0;
    autotls_lru_n--;
}

static void
autotls_lru_push(autotls_cache_t *c)
{
    c->lru_prev = NULL;
    c->lru_next = autotls_lru_head;
    if (autotls_lru_head != NULL) {
        autotls_lru_head->lru_prev = c;
    } else {
        autotls_lru_tail = c;
    }
    autotls_lru_head = c;
    c->in_lru = 1;
    autotls_lru_n++;
}

/* From the back, skipping `keep` and caches locked by a handshake now. */
static void
autotls_lru_evict(const autotls_cache_t *keep, size_t bound)
{
    autotls_cache_t *v = autotls_lru_tail, *prev;

    while (autotls_lru_n > bound && v != NULL) {
        prev = v->lru_prev;
        if (v != keep && pthread_rwlock_trywrlock(&v->lock) == 0) {
            autotls_lru_unlink(v);
            autotls_cache_clear(v);
            pthread_rwlock_unlock(&v->lock);
        }
        v = prev;
    }
}

void
autotls_cache_touch(autotls_cache_t *c)
{
    size_t bound = (size_t) autotls_global.cache_size;

    if (bound == 0) {
        return;
    }
    pthread_mutex_lock(&autotls_lru_lock);
    if (c->in_lru) {
        autotls_lru_unlink(c);
    }
    autotls_lru_push(c);
    autotls_lru_evict(c, bound);
    pthread_mutex_unlock(&autotls_lru_lock);
}

void
autotls_cache_forget(autotls_cache_t *c)
{
    pthread_mutex_lock(&autotls_lru_lock);
    if (c->in_lru) {
        autotls_lru_unlink(c);
    }
    pthread_mutex_unlock(&autotls_lru_lock);
    autotls_cache_clear(c);
}

/* ---- preload ------------------------------------------------------------ */

typedef struct {
    pthread_t   tid;
    volatile int stop;
    int         started;
} autotls_preload_t;

/* 1 loaded, 0 already current (a handshake was first), -1 stopped */
static int
autotls_preload_one(autotls_srv_conf_t *o, atls_store_t *st, size_t *n_real)
{
    autotls_cache_t *c = o->cache, fresh;
    int read_err[ATLS_KEY_TYPE_MAX], done;
    uint64_t gen;

    /* the generation is read before the store, as at a handshake: a
     * deployment after this point bumps it and the next handshake reloads */
    gen = autotls_generation_get();
    pthread_rwlock_rdlock(&c->lock);
    done = !autotls_cache_stale(c, gen);
    pthread_rwlock_unlock(&c->lock);
    if (done) {
        return 0;
    }
    memset(&fresh, 0, sizeof(fresh));
    autotls_cache_read(o, o->cert_id, 1, st, &fresh, read_err);
    /* the lock only for the swap: handshakes of this name wait microseconds,
     * handshakes of other names not at all */
    pthread_rwlock_wrlock(&c->lock);
    done = !autotls_cache_stale(c, gen);
    if (!done) {
        autotls_cache_install(o, o->cert_id, c, &fresh, read_err, gen, " (preload)");
        *n_real += c->n_real;
        autotls_cache_touch(c);
    }
    pthread_rwlock_unlock(&c->lock);
    autotls_slots_free(&fresh);
    return done ? 0 : 1;
}

static void *
autotls_preload_run(void *arg)
{
    autotls_preload_t *pl = arg;
    server_rec *s = autotls_global.main_server;
    struct timespec t0, t1, pause = { 0, AUTOTLS_PRELOAD_PAUSE_NS };
    size_t n_sets = 0, n_real = 0, n_skipped = 0;
    atls_store_t *st;
    int i, rc;

    /* a lower priority for this thread only (Linux: per-thread nice), so
     * that handshakes on a busy core go first; failing that, it still works */
    (void) setpriority(PRIO_PROCESS, (id_t) syscall(SYS_gettid), 10);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st = autotls_store_open(s);
    if (st == NULL) {
        return NULL;
    }
    /* with AutoTLSCacheSize, no more than the cache holds: the rest would
     * only evict what was just parsed */
    for (i = 0; i < autotls_global.hosts->nelts && !pl->stop
                && (autotls_global.cache_size == 0
                    || n_sets < (size_t) autotls_global.cache_size); i++) {
        autotls_srv_conf_t *o = APR_ARRAY_IDX(autotls_global.hosts, i,
                                              autotls_srv_conf_t *);

        rc = autotls_preload_one(o, st, &n_real);
        n_sets += rc == 1;
        n_skipped += rc == 0;
        if ((i + 1) % AUTOTLS_PRELOAD_BATCH == 0) {
            nanosleep(&pause, NULL);
        }
    }
    atls_store_close(st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                 "autotls: child %ld preloaded %lu certificate(s) for %lu of %d "
                 "name set(s) in %ld ms (%lu already loaded by handshakes; %lu "
                 "distinct intermediate(s) shared)%s",
                 (long) getpid(), (unsigned long) n_real, (unsigned long) n_sets,
                 autotls_global.hosts->nelts,
                 (long) ((t1.tv_sec - t0.tv_sec) * 1000
                         + (t1.tv_nsec - t0.tv_nsec) / 1000000),
                 (unsigned long) n_skipped, (unsigned long) autotls_intern_count(),
                 pl->stop ? " (stopped early)" : "");
    return NULL;
}

/* Runs before the child pool's sub-pools and cleanups go: the thread reads
 * the configuration that lives in them. */
static apr_status_t
autotls_preload_stop(void *data)
{
    autotls_preload_t *pl = data;

    if (pl->started) {
        pl->stop = 1;
        pthread_join(pl->tid, NULL);
        pl->started = 0;
    }
    return APR_SUCCESS;
}

static apr_status_t
autotls_intern_cleanup(void *data)
{
    autotls_intern_clear();
    return APR_SUCCESS;
}

void
autotls_preload_start(apr_pool_t *pchild, server_rec *s)
{
    autotls_preload_t *pl;
    int rc;

    apr_pool_cleanup_register(pchild, NULL, autotls_intern_cleanup,
                              apr_pool_cleanup_null);
    if (!autotls_global.preload || autotls_global.hosts == NULL
        || autotls_global.hosts->nelts == 0) {
        return;
    }
    pl = apr_pcalloc(pchild, sizeof(*pl));
    rc = pthread_create(&pl->tid, NULL, autotls_preload_run, pl);
    if (rc != 0) {
        /* not fatal: every name still loads at its first handshake */
        ap_log_error(APLOG_MARK, APLOG_WARNING, rc, s,
                     "autotls: cannot start the certificate preload thread");
        return;
    }
    pl->started = 1;
    apr_pool_pre_cleanup_register(pchild, pl, autotls_preload_stop);
}
