/*
 * Names registered at runtime (atls_names.h), as each child serves them:
 * the certificate callback's part for a dynamic home, and the start-up
 * check of where the homes are.  Which names are registered, and for which
 * home, is the child's copy of the registry (mod_autotls_registry.c).
 *
 * A name's parsed certificate lives in a cache entry keyed by its
 * certificate id, created at the name's first handshake; its parsed
 * objects are reloaded when the store's change journal names the
 * certificate (autotls_cache_stale), and evicted with everything else
 * under AutoTLSCacheSize.  When the name is removed from the registry the
 * entry goes: out of the table at once, freed when the last handshake
 * using it lets go (a count of users, taken under the table's mutex).  A
 * registered name without a certificate yet is served its home's
 * certificate.
 */
#include <string.h>
#include <strings.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "util_cfgtree.h"
#include "apr_strings.h"

#include "atls_names.h"
#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

/* ---- parsed certificates by id ---------------------------------------- */

typedef struct dyn_cert_s dyn_cert_t;

struct dyn_cert_s {
    autotls_cache_t     cache;     /* its own lock guards what follows too */
    char               *id;
    uint64_t            meta_gen;  /* meta generation of what is parsed */
    dyn_cert_t         *next;      /* hash chain */
    /* under dyn_certs_lock: handshakes using it now, and whether it left
     * the table (the last user frees it) */
    unsigned            users;
    int                 gone;
};

#define DYN_BUCKETS_MIN  1024

static pthread_mutex_t  dyn_certs_lock = PTHREAD_MUTEX_INITIALIZER;
static dyn_cert_t     **dyn_buckets;
static size_t           dyn_n_buckets, dyn_n_certs;

static size_t
dyn_hash(const char *s)
{
    size_t h = 5381;

    while (*s) {
        h = h * 33 + (unsigned char) *s++;
    }
    return h;
}

/* The table with n buckets (doubled when it holds more entries than
 * buckets, halved when a quarter); dyn_certs_lock held. */
static void
dyn_certs_resize(size_t n)
{
    dyn_cert_t **b = calloc(n, sizeof(*b));
    size_t i;

    if (b == NULL) {
        return;     /* longer chains, still correct */
    }
    for (i = 0; i < dyn_n_buckets; i++) {
        while (dyn_buckets[i] != NULL) {
            dyn_cert_t *e = dyn_buckets[i];

            dyn_buckets[i] = e->next;
            e->next = b[dyn_hash(e->id) % n];
            b[dyn_hash(e->id) % n] = e;
        }
    }
    free(dyn_buckets);
    dyn_buckets = b;
    dyn_n_buckets = n;
}

/* id's link in its chain (*link NULL: not there); dyn_certs_lock held. */
static dyn_cert_t **
dyn_cert_link(const char *id)
{
    dyn_cert_t **pp = &dyn_buckets[dyn_hash(id) % dyn_n_buckets];

    while (*pp != NULL && strcmp((*pp)->id, id) != 0) {
        pp = &(*pp)->next;
    }
    return pp;
}

/* The entry of id, made when missing, with one more user (give it back
 * with dyn_cert_put); NULL when out of memory. */
static dyn_cert_t *
dyn_cert_get(const char *id)
{
    dyn_cert_t *e = NULL, **pp;

    pthread_mutex_lock(&dyn_certs_lock);
    if (dyn_n_certs >= dyn_n_buckets) {
        dyn_certs_resize(dyn_n_buckets ? dyn_n_buckets * 2 : DYN_BUCKETS_MIN);
    }
    if (dyn_n_buckets == 0) {
        goto out;
    }
    pp = dyn_cert_link(id);
    if ((e = *pp) != NULL) {
        e->users++;
        goto out;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL || (e->id = strdup(id)) == NULL) {
        free(e);
        e = NULL;
        goto out;
    }
    pthread_rwlock_init(&e->cache.lock, NULL);
    e->users = 1;
    *pp = e;
    dyn_n_certs++;
out:
    pthread_mutex_unlock(&dyn_certs_lock);
    return e;
}

/* No user and out of the table: nobody can reach e any more (the
 * AutoTLSCacheSize list lets go of it under its own lock first). */
static void
dyn_cert_free(dyn_cert_t *e)
{
    pthread_rwlock_wrlock(&e->cache.lock);
    autotls_cache_forget(&e->cache);
    pthread_rwlock_unlock(&e->cache.lock);
    pthread_rwlock_destroy(&e->cache.lock);
    free(e->id);
    free(e);
}

static void
dyn_cert_put(dyn_cert_t *e)
{
    int last;

    pthread_mutex_lock(&dyn_certs_lock);
    last = --e->users == 0 && e->gone;
    pthread_mutex_unlock(&dyn_certs_lock);
    if (last) {
        dyn_cert_free(e);
    }
}

int
autotls_dyn_changed(const char *id, uint64_t gen)
{
    dyn_cert_t *e = NULL;

    pthread_mutex_lock(&dyn_certs_lock);
    if (dyn_n_buckets > 0 && (e = *dyn_cert_link(id)) != NULL) {
        __atomic_store_n(&e->cache.changed, gen, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&dyn_certs_lock);
    return e != NULL;
}

void
autotls_dyn_forget(const char *id)
{
    dyn_cert_t *e = NULL, **pp;
    size_t left = 0;
    int now = 0;

    pthread_mutex_lock(&dyn_certs_lock);
    if (dyn_n_buckets > 0 && (e = *(pp = dyn_cert_link(id))) != NULL) {
        *pp = e->next;
        e->gone = 1;
        now = e->users == 0;
        left = --dyn_n_certs;
        if (dyn_n_buckets > DYN_BUCKETS_MIN && left * 4 < dyn_n_buckets) {
            dyn_certs_resize(dyn_n_buckets / 2);
        }
    }
    pthread_mutex_unlock(&dyn_certs_lock);
    if (e == NULL) {
        return;
    }
    /* the cache's lock is taken outside the table's mutex: a handshake
     * holds a cache's lock while it reads the journal, which takes it */
    if (now) {
        dyn_cert_free(e);
    }
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, autotls_global.main_server,
                 "autotls: child %ld let go of removed name %s (%lu dynamic "
                 "certificate(s) left)", (long) getpid(), id, (unsigned long) left);
}

/* With e's write lock: reparse when the certificate's meta generation
 * moved (or nothing is parsed); the shm generation gen is recorded so
 * that the meta is looked at once per generation. */
static void
dyn_cert_refresh(autotls_srv_conf_t *home, dyn_cert_t *e, uint64_t gen)
{
    atls_cert_meta_t m;
    atls_store_t *st;
    char err[256];
    int rc;

    st = autotls_store_open(home->s);
    if (st == NULL) {
        return;
    }
    memset(&m, 0, sizeof(m));
    rc = atls_store_load_meta(st, e->id, &m, err, sizeof(err));
    atls_store_close(st);
    if (rc == ATLS_STORE_NOTFOUND) {
        /* registered, not ordered yet: nothing to parse */
        autotls_cache_clear(&e->cache);
        e->cache.loaded = 1;
        e->cache.generation = gen;
        e->meta_gen = 0;
        return;
    }
    if (rc != ATLS_STORE_OK) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, home->s,
                     "autotls: %s: cannot read its meta data: %s", e->id, err);
        atls_cert_meta_free(&m);
        return;     /* keep what is parsed; looked at again next handshake */
    }
    if (!e->cache.loaded || e->cache.n_real == 0 || m.generation != e->meta_gen) {
        autotls_cache_load_id(home, e->id, &e->cache, gen);
        e->meta_gen = m.generation;
    }
    e->cache.loaded = 1;
    e->cache.generation = gen;
    atls_cert_meta_free(&m);
}

/* Installs e's certificates (its lock held): 1, 0 none yet, -1 refused. */
static int
dyn_cert_use(SSL *ssl, autotls_cache_t *c)
{
    size_t i;

    if (c->n_real == 0) {
        return 0;
    }
    if (c->n_real == c->n) {
        /* every key type has its own: nothing of the home's may win */
        SSL_certs_clear(ssl);
    }
    for (i = 0; i < c->n; i++) {
        if (c->real[i] && SSL_use_cert_and_key(ssl, c->leaf[i], c->key[i],
                                               c->extra[i], 1) != 1) {
            return -1;
        }
    }
    return 1;
}

/* The parsed entry of id, current at the shm generation, used under its
 * lock: what dyn_cert_use says, with ssl NULL only whether it has one. */
static int
dyn_cert_serve(SSL *ssl, autotls_srv_conf_t *home, const char *id)
{
    dyn_cert_t *e = dyn_cert_get(id);
    autotls_cache_t *c;
    uint64_t gen = autotls_generation_get();
    int rc;

    if (e == NULL) {
        return 0;
    }
    c = &e->cache;
    pthread_rwlock_rdlock(&c->lock);
    if (autotls_cache_stale(c, gen)) {
        pthread_rwlock_unlock(&c->lock);
        pthread_rwlock_wrlock(&c->lock);
        if (autotls_cache_stale(c, gen)) {
            dyn_cert_refresh(home, e, gen);
        }
    }
    rc = ssl != NULL ? dyn_cert_use(ssl, c) : c->n_real > 0;
    if (c->n_real > 0) {
        autotls_cache_touch(c);
    }
    pthread_rwlock_unlock(&c->lock);
    dyn_cert_put(e);
    return rc;
}

autotls_dyn_state_e
autotls_dyn_state(autotls_srv_conf_t *home, const char *name)
{
    char id[256];
    autotls_dyn_state_e st = autotls_registry_lookup(home, name, id, sizeof(id));

    if (st == AUTOTLS_DYN_PENDING && dyn_cert_serve(NULL, home->owner, id) > 0) {
        st = AUTOTLS_DYN_SERVING;
    }
    return st;
}

int
autotls_dyn_serve(SSL *ssl, autotls_srv_conf_t *home, const char *name)
{
    char id[256];
    autotls_dyn_state_e st = autotls_registry_lookup(home, name, id, sizeof(id));
    int rc;

    if (st != AUTOTLS_DYN_PENDING) {
        return 0;
    }
    rc = dyn_cert_serve(ssl, home->owner, id);
    /* registered without a certificate yet: the home's, whatever
     * AutoTLSDynamicUnknown says (the name is known) */
    return rc == 0 ? 2 : rc;
}

/* ---- start-up: is each home where mod_ssl sends unknown names? ---------- */

/* The position of s's <VirtualHost> in the configuration as read (Includes
 * expanded), counting from *n; -1 when not found. */
static int
dyn_vhost_rank(const ap_directive_t *d, const server_rec *s, int *n)
{
    int r;

    for (; d != NULL; d = d->next) {
        if (strcasecmp(d->directive, "<VirtualHost") == 0) {
            if (d->line_num == (int) s->defn_line_number && d->filename != NULL
                && s->defn_name != NULL && strcmp(d->filename, s->defn_name) == 0) {
                return *n;
            }
            (*n)++;
        } else if (d->first_child != NULL
                   && (r = dyn_vhost_rank(d->first_child, s, n)) >= 0) {
            return r;
        }
    }
    return -1;
}

static int
dyn_rank(const server_rec *s)
{
    int n = 0;

    return dyn_vhost_rank(ap_conftree, s, &n);
}

static int
dyn_same_address(const server_rec *a, const server_rec *b)
{
    const server_addr_rec *x, *y;

    for (x = a->addrs; x != NULL; x = x->next) {
        for (y = b->addrs; y != NULL; y = y->next) {
            if (x->host_port == y->host_port
                && apr_sockaddr_equal(x->host_addr, y->host_addr)) {
                return 1;
            }
        }
    }
    return 0;
}

void
autotls_dyn_check_homes(server_rec *base)
{
    server_rec *h, *o;
    int rh, ro;

    for (h = base; h != NULL; h = h->next) {
        if (!h->is_virtual || autotls_config_get(h)->dynamic == AUTOTLS_STATIC
            || (rh = dyn_rank(h)) < 0) {
            continue;
        }
        for (o = base; o != NULL; o = o->next) {
            if (o == h || !o->is_virtual || !dyn_same_address(h, o)
                || (ro = dyn_rank(o)) < 0 || ro > rh) {
                continue;
            }
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, h,
                         "autotls: the dynamic home %s (%s:%u) is not the first virtual "
                         "host of its address: %s (%s:%u) is, and mod_ssl hands that "
                         "host every name no ServerName/ServerAlias matches: the names "
                         "registered for %s will not reach their home",
                         h->server_hostname ? h->server_hostname : "?",
                         h->defn_name ? h->defn_name : "?", h->defn_line_number,
                         o->server_hostname ? o->server_hostname : "?",
                         o->defn_name ? o->defn_name : "?", o->defn_line_number,
                         h->server_hostname ? h->server_hostname : "?");
            break;
        }
    }
}

/* ---- child life --------------------------------------------------------- */

void
autotls_dyn_child_init(apr_pool_t *pchild)
{
    if (autotls_global.homes == NULL || autotls_global.homes->nelts == 0) {
        return;
    }
    /* the registry is read at the first handshake that needs it */
    autotls_registry_child_init(pchild);
}
