/*
 * autotls for nginx: the worker's cache of parsed certificates.
 *
 * One entry per certificate a handshake asked for: the configured ones
 * (found by their index) and the names registered at runtime (found by
 * name in a tree).  An entry holds the parsed leaf, key and chain of each
 * key type, and the generation it was loaded at: a handshake compares that
 * with the certificate's counter in shared memory and reloads the entry
 * from the store only when a deploy moved it.
 *
 * "autotls_cache max=N" bounds the number of entries of both kinds
 * together: the least recently used one is dropped when a new one is
 * needed, and loaded again at its next handshake.  Without it the cache
 * holds whatever was asked for (every configured certificate is warmed in
 * the background unless autotls_preload is off).
 */

#include "ngx_http_autotls_module.h"


typedef struct {
    X509               *leaf;
    EVP_PKEY           *key;
    STACK_OF(X509)     *chain;      /* intermediates only */
} ngx_http_autotls_pair_t;

struct ngx_http_autotls_entry_s {
    ngx_str_node_t            sn;            /* by name: dynamic entries */
    ngx_queue_t               lru;           /* most recently used first */
    ngx_http_autotls_cert_t  *cert;          /* configured, or &dyn */
    ngx_atomic_uint_t         gen;           /* 0: never loaded */
    ngx_uint_t                n;             /* real certificates loaded */
    ngx_http_autotls_pair_t   pair[ATLS_KEY_TYPE_MAX];
    ngx_http_autotls_pair_t   fallback;      /* generated when first needed */
    /* by the issuer's key type: a refused OCSP response was logged */
    u_char                    staple_refused[ATLS_KEY_TYPE_MAX];

    /* a dynamic name: its certificate is the name's, with its home's
     * issuer; key holds the name (or " home ISSUER" for a home's own
     * fallback, which no name can be) */
    ngx_http_autotls_cert_t   dyn;
    char                     *dyn_names[2];
    u_char                    key[1];
};

typedef struct {
    ngx_http_autotls_entry_t **slots;        /* configured, by index */
    ngx_uint_t                 nslots;
    ngx_rbtree_t               tree;         /* dynamic, by name */
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                lru;
    ngx_uint_t                 count;
    ngx_uint_t                 max;          /* 0: unbounded */
    ngx_uint_t                 evicted;

    /* intermediates shared by the entries: 10,000 leaves from one CA hold
     * one parsed intermediate, not 10,000 copies; a handful of distinct
     * ones is the norm, so a short array searched linearly will do */
    X509                     **inter;
    ngx_uint_t                 ninter;
    ngx_uint_t                 inter_cap;

    ngx_event_t                warm_ev;
    ngx_uint_t                 warm_next;
} ngx_http_autotls_cache_t;


static void ngx_http_autotls_warm(ngx_event_t *ev);
static ngx_http_autotls_entry_t *ngx_http_autotls_entry_new(size_t keylen);
static void ngx_http_autotls_entry_free(ngx_http_autotls_entry_t *e);
static void ngx_http_autotls_entry_load(ngx_http_autotls_entry_t *e,
    ngx_log_t *log);
static void ngx_http_autotls_pair_free(ngx_http_autotls_pair_t *p);


static ngx_http_autotls_cache_t  ngx_http_autotls_cache;


ngx_int_t
ngx_http_autotls_cache_init_worker(ngx_cycle_t *cycle)
{
    ngx_http_autotls_cache_t  *cache = &ngx_http_autotls_cache;

    ngx_memzero(cache, sizeof(ngx_http_autotls_cache_t));

    cache->nslots = ngx_http_autotls_mcf->certs.nelts;
    cache->slots = ngx_pcalloc(cycle->pool, (cache->nslots ? cache->nslots : 1)
                                            * sizeof(ngx_http_autotls_entry_t *));
    if (cache->slots == NULL) {
        return NGX_ERROR;
    }

    ngx_rbtree_init(&cache->tree, &cache->sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&cache->lru);
    cache->max = ngx_http_autotls_mcf->cache_max;

    ngx_http_autotls_event_init(&cache->warm_ev, ngx_http_autotls_warm,
                                cycle->log);

    if (ngx_http_autotls_store && ngx_http_autotls_mcf->preload
        && cache->nslots > 0)
    {
        ngx_add_timer(&cache->warm_ev, 20);
    }

    return NGX_OK;
}


void
ngx_http_autotls_cache_exit_worker(void)
{
    ngx_uint_t                 i;
    ngx_queue_t               *q;
    ngx_http_autotls_entry_t  *e;
    ngx_http_autotls_cache_t  *cache = &ngx_http_autotls_cache;

    if (cache->warm_ev.timer_set) {
        ngx_del_timer(&cache->warm_ev);
    }

    if (cache->warm_ev.posted) {
        ngx_delete_posted_event(&cache->warm_ev);
    }

    if (cache->slots == NULL) {
        return;
    }

    while (!ngx_queue_empty(&cache->lru)) {
        q = ngx_queue_head(&cache->lru);
        e = ngx_queue_data(q, ngx_http_autotls_entry_t, lru);
        ngx_queue_remove(q);
        ngx_http_autotls_entry_free(e);
    }

    for (i = 0; i < cache->ninter; i++) {
        X509_free(cache->inter[i]);
    }

    free(cache->inter);
    ngx_memzero(cache, sizeof(ngx_http_autotls_cache_t));
}


/* entries held, the bound, and how many were dropped for it (status) */
void
ngx_http_autotls_cache_stats(ngx_uint_t *count, ngx_uint_t *max,
    ngx_uint_t *evicted)
{
    *count = ngx_http_autotls_cache.count;
    *max = ngx_http_autotls_cache.max;
    *evicted = ngx_http_autotls_cache.evicted;
}


/* drops the least recently used entry when the bound is reached */
static void
ngx_http_autotls_cache_make_room(void)
{
    ngx_queue_t               *q;
    ngx_http_autotls_entry_t  *e;
    ngx_http_autotls_cache_t  *cache = &ngx_http_autotls_cache;

    if (cache->max == 0 || cache->count < cache->max
        || ngx_queue_empty(&cache->lru))
    {
        return;
    }

    q = ngx_queue_last(&cache->lru);
    e = ngx_queue_data(q, ngx_http_autotls_entry_t, lru);
    ngx_queue_remove(q);

    if (e->cert != &e->dyn) {
        cache->slots[e->cert->index] = NULL;
    } else {
        ngx_rbtree_delete(&cache->tree, &e->sn.node);
    }

    ngx_http_autotls_entry_free(e);

    if (cache->evicted++ == 0) {
        /* once per worker: the operator's bound is in effect */
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "autotls: the certificate cache is full "
                      "(autotls_cache max=%ui): the least recently used "
                      "certificates are dropped and loaded again at their "
                      "next handshake", cache->max);
    }
}


static void
ngx_http_autotls_cache_touch(ngx_http_autotls_entry_t *e)
{
    ngx_queue_remove(&e->lru);
    ngx_queue_insert_head(&ngx_http_autotls_cache.lru, &e->lru);
}


/*
 * The entry of a configured certificate, (re)loaded when its generation
 * moved; NULL when there is no memory (the handshake keeps the context's
 * certificate).
 */
ngx_http_autotls_entry_t *
ngx_http_autotls_cache_cert(ngx_http_autotls_cert_t *cert, ngx_log_t *log)
{
    ngx_atomic_uint_t          gen;
    ngx_http_autotls_entry_t  *e;
    ngx_http_autotls_cache_t  *cache = &ngx_http_autotls_cache;

    if (cache->slots == NULL || cert->index >= cache->nslots) {
        return NULL;
    }

    e = cache->slots[cert->index];

    if (e == NULL) {
        ngx_http_autotls_cache_make_room();

        e = ngx_http_autotls_entry_new(0);
        if (e == NULL) {
            return NULL;
        }

        e->cert = cert;
        cache->slots[cert->index] = e;
        ngx_queue_insert_head(&cache->lru, &e->lru);
        cache->count++;

    } else {
        ngx_http_autotls_cache_touch(e);
    }

    gen = ngx_http_autotls_shm_gen(cert->index);

    if (e->gen != gen) {
        ngx_http_autotls_entry_load(e, log);
        e->gen = gen;
    }

    return e;
}


/*
 * The entry of a dynamic name served by home (its issuer), (re)loaded when
 * gen (the name's counter in the zone) moved.  A home's own fallback is
 * asked for with the key " home ISSUER" and gen 1: it is never loaded.
 */
ngx_http_autotls_entry_t *
ngx_http_autotls_cache_dyn(const u_char *key, size_t len,
    ngx_http_autotls_cert_t *home, ngx_atomic_uint_t gen, ngx_log_t *log)
{
    uint32_t                   hash;
    ngx_str_t                  k;
    ngx_http_autotls_entry_t  *e;
    ngx_http_autotls_cache_t  *cache = &ngx_http_autotls_cache;

    if (cache->slots == NULL) {
        return NULL;
    }

    k.data = (u_char *) key;
    k.len = len;
    hash = ngx_crc32_short(k.data, len);

    e = (ngx_http_autotls_entry_t *) ngx_str_rbtree_lookup(&cache->tree, &k,
                                                           hash);

    if (e != NULL && e->dyn.issuer != home->issuer) {
        /* the name moved to another home since it was loaded */
        ngx_queue_remove(&e->lru);
        ngx_rbtree_delete(&cache->tree, &e->sn.node);
        ngx_http_autotls_entry_free(e);
        e = NULL;
    }

    if (e == NULL) {
        ngx_http_autotls_cache_make_room();

        e = ngx_http_autotls_entry_new(len);
        if (e == NULL) {
            return NULL;
        }

        ngx_memcpy(e->key, key, len);
        e->key[len] = '\0';
        e->sn.str.data = e->key;
        e->sn.str.len = len;
        e->sn.node.key = hash;

        e->cert = &e->dyn;
        e->dyn.issuer = home->issuer;
        e->dyn.index = NGX_HTTP_AUTOTLS_NO_INDEX;
        e->dyn.file = home->file;
        e->dyn.line = home->line;

        if (key[0] == ' ') {
            /* a home's fallback: for the names of its server */
            e->dyn.names = home->names;
            e->dyn.n_names = home->n_names;
            e->dyn.id = NULL;

        } else {
            e->dyn_names[0] = (char *) e->key;
            e->dyn.names = e->dyn_names;
            e->dyn.n_names = 1;
            e->dyn.id = (char *) e->key;
        }

        ngx_rbtree_insert(&cache->tree, &e->sn.node);
        ngx_queue_insert_head(&cache->lru, &e->lru);
        cache->count++;

    } else {
        ngx_http_autotls_cache_touch(e);
    }

    if (e->gen != gen) {
        ngx_http_autotls_entry_load(e, log);
        e->gen = gen;
    }

    return e;
}


/* a dynamic name left the registry: its parsed objects go at once */
void
ngx_http_autotls_cache_forget(const u_char *name, size_t len)
{
    ngx_str_t                  k;
    ngx_http_autotls_entry_t  *e;
    ngx_http_autotls_cache_t  *cache = &ngx_http_autotls_cache;

    if (cache->slots == NULL) {
        return;
    }

    k.data = (u_char *) name;
    k.len = len;

    e = (ngx_http_autotls_entry_t *)
            ngx_str_rbtree_lookup(&cache->tree, &k,
                                  ngx_crc32_short(k.data, len));
    if (e != NULL) {
        ngx_queue_remove(&e->lru);
        ngx_rbtree_delete(&cache->tree, &e->sn.node);
        ngx_http_autotls_entry_free(e);
    }
}


static ngx_http_autotls_entry_t *
ngx_http_autotls_entry_new(size_t keylen)
{
    ngx_http_autotls_entry_t  *e;

    e = ngx_calloc(sizeof(ngx_http_autotls_entry_t) + keylen, ngx_cycle->log);

    return e;
}


static void
ngx_http_autotls_entry_free(ngx_http_autotls_entry_t *e)
{
    ngx_uint_t  k;

    for (k = 0; k < ATLS_KEY_TYPE_MAX; k++) {
        ngx_http_autotls_pair_free(&e->pair[k]);
    }

    ngx_http_autotls_pair_free(&e->fallback);
    ngx_http_autotls_cache.count--;
    ngx_free(e);
}


/*
 * Loads the configured certificates into this worker's cache in the
 * background, ~2 ms at a time between rounds of network events, so that
 * the first handshake for each name does not pay for reading and parsing
 * PEM; the handshake path still loads lazily whatever is not warm yet.
 * With a bound it stops when the cache is full: warming must not evict.
 */
static void
ngx_http_autotls_warm(ngx_event_t *ev)
{
    ngx_msec_t                 start;
    ngx_http_autotls_cert_t  **certs;
    ngx_http_autotls_cache_t  *cache = &ngx_http_autotls_cache;

    if (ngx_exiting || cache->slots == NULL) {
        return;
    }

    certs = ngx_http_autotls_mcf->certs.elts;
    start = ngx_http_autotls_msec();

    while (cache->warm_next < cache->nslots) {

        if (cache->max && cache->count >= cache->max
            && cache->slots[cache->warm_next] == NULL)
        {
            return;
        }

        (void) ngx_http_autotls_cache_cert(certs[cache->warm_next], ev->log);
        cache->warm_next++;

        if (ngx_http_autotls_msec() - start >= 2) {
            /*
             * Parsing costs ~1 ms a certificate (mostly the key decoder):
             * go on after the next round of network events rather than
             * after a timer, so an idle worker fills its cache at full
             * speed and a busy one is never held for more than ~2 ms.
             */
            ngx_post_event(ev, &ngx_posted_next_events);
            return;
        }
    }
}


/* replaces each intermediate of chain by the worker's shared copy */
static void
ngx_http_autotls_share_chain(STACK_OF(X509) *chain)
{
    int                        i;
    X509                      *x, *y, **v;
    ngx_uint_t                 k;
    ngx_http_autotls_cache_t  *cache = &ngx_http_autotls_cache;

    for (i = 0; i < sk_X509_num(chain); i++) {
        x = sk_X509_value(chain, i);

        for (k = 0; k < cache->ninter; k++) {
            y = cache->inter[k];
            /* X509_cmp: cached SHA-1 of the DER, then the DER itself */
            if (X509_cmp(x, y) == 0) {
                break;
            }
        }

        if (k < cache->ninter) {
            if (X509_up_ref(y) == 1) {
                (void) sk_X509_set(chain, i, y);
                X509_free(x);
            }
            continue;
        }

        if (cache->ninter == 64) {
            /* not a handful of CAs: keep this copy private */
            continue;
        }

        if (cache->ninter == cache->inter_cap) {
            k = cache->inter_cap ? 2 * cache->inter_cap : 4;
            v = realloc(cache->inter, k * sizeof(X509 *));
            if (v == NULL) {
                continue;
            }
            cache->inter = v;
            cache->inter_cap = k;
        }

        if (X509_up_ref(x) == 1) {
            cache->inter[cache->ninter++] = x;
        }
    }
}


static void
ngx_http_autotls_pair_free(ngx_http_autotls_pair_t *p)
{
    X509_free(p->leaf);
    EVP_PKEY_free(p->key);
    if (p->chain) {
        sk_X509_pop_free(p->chain, X509_free);
    }
    ngx_memzero(p, sizeof(ngx_http_autotls_pair_t));
}


/* one key type from the store: NGX_OK, NGX_DECLINED (none), NGX_ERROR */
static ngx_int_t
ngx_http_autotls_pair_load(ngx_http_autotls_pair_t *p,
    ngx_http_autotls_cert_t *cert, atls_key_type_t kt, char *err,
    size_t errlen)
{
    int              rc;
    EVP_PKEY        *key;
    STACK_OF(X509)  *chain;

    key = NULL;
    chain = NULL;
    err[0] = '\0';

    rc = atls_store_load_cert(ngx_http_autotls_store, cert->id, kt, &key,
                              &chain, err, errlen);
    if (rc == ATLS_STORE_OK && key != NULL && chain != NULL
        && sk_X509_num(chain) >= 1)
    {
        p->key = key;
        p->leaf = sk_X509_shift(chain);
        p->chain = chain;
        ngx_http_autotls_share_chain(chain);
        return NGX_OK;
    }

    EVP_PKEY_free(key);
    if (chain) {
        sk_X509_pop_free(chain, X509_free);
    }

    return rc == ATLS_STORE_NOTFOUND ? NGX_DECLINED : NGX_ERROR;
}


/* reads the certificate's key types from the store: once per generation */
static void
ngx_http_autotls_entry_load(ngx_http_autotls_entry_t *e, ngx_log_t *log)
{
    char                      err[256];
    size_t                    k;
    ngx_int_t                 rc;
    ngx_uint_t                j, n_old;
    atls_key_type_t           kt;
    ngx_http_autotls_cert_t  *cert = e->cert;
    ngx_http_autotls_pair_t  *p, old[ATLS_KEY_TYPE_MAX];

    /*
     * The pairs served so far are kept aside: a key type whose file cannot
     * be read now (a transient error, a file being replaced) keeps the
     * certificate this worker had instead of falling back to self-signed.
     */
    ngx_memcpy(old, e->pair, sizeof(old));
    n_old = e->n;
    ngx_memzero(e->pair, sizeof(e->pair));
    e->n = 0;

    if (ngx_http_autotls_store == NULL || cert->id == NULL) {
        goto done;
    }

    for (k = 0; k < cert->issuer->is.n_key_types; k++) {
        kt = cert->issuer->is.key_types[k];
        p = &e->pair[e->n];

        rc = ngx_http_autotls_pair_load(p, cert, kt, err, sizeof(err));

        if (rc == NGX_DECLINED) {
            continue;
        }

        if (rc == NGX_OK) {
            e->n++;
            /* before the leaf is published to the handshake path */
            ngx_http_autotls_stapling_load(cert, kt, p->leaf, p->chain,
                                           &e->staple_refused[k], log);
            continue;
        }

        for (j = 0; j < n_old; j++) {
            if (old[j].key != NULL && atls_key_type_of(old[j].key) == kt) {
                e->pair[e->n++] = old[j];
                ngx_memzero(&old[j], sizeof(ngx_http_autotls_pair_t));
                break;
            }
        }

        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "autotls: cannot load certificate \"%s\" (%s): %s%s",
                      cert->id, atls_key_type_name(kt), err,
                      j < n_old ? "; the one loaded before is kept" : "");
    }

done:

    for (j = 0; j < n_old; j++) {
        ngx_http_autotls_pair_free(&old[j]);
    }
}


static ngx_int_t
ngx_http_autotls_entry_fallback(ngx_http_autotls_entry_t *e, ngx_log_t *log)
{
    ngx_http_autotls_cert_t  *cert = e->cert;

    if (e->fallback.leaf) {
        return NGX_OK;
    }

    /* EC P-256 whatever the configured types: cheap enough to make lazily */
    if (atls_selfsigned_cert((const char *const *) cert->names, cert->n_names,
                             ATLS_KEY_EC256, &e->fallback.leaf,
                             &e->fallback.key)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "autotls: cannot create a fallback certificate for "
                      "\"%s\"", cert->names[0]);
        return NGX_ERROR;
    }

    if (cert->id != NULL) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "autotls: serving a self-signed fallback certificate "
                      "for \"%s\" until the real one is issued", cert->id);
    }

    return NGX_OK;
}


/*
 * Installs the entry's certificates on the connection, or its self-signed
 * fallback while it has none.  1 or 0, as a cert_cb returns.
 */
int
ngx_http_autotls_cache_use(SSL *ssl, ngx_connection_t *c,
    ngx_http_autotls_entry_t *e)
{
    ngx_uint_t  k;

    SSL_certs_clear(ssl);

    if (e->n == 0) {
        if (ngx_http_autotls_entry_fallback(e, c->log) != NGX_OK) {
            return 0;
        }

        if (!SSL_use_cert_and_key(ssl, e->fallback.leaf, e->fallback.key,
                                  NULL, 1))
        {
            ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                          "autotls: SSL_use_cert_and_key() failed");
            return 0;
        }

        return 1;
    }

    /*
     * With an ECDSA and an RSA certificate both are installed: OpenSSL
     * then picks by the client's signature algorithms and cipher suites.
     */
    for (k = 0; k < e->n; k++) {
        if (!SSL_use_cert_and_key(ssl, e->pair[k].leaf, e->pair[k].key,
                                  e->pair[k].chain, 1))
        {
            ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                          "autotls: SSL_use_cert_and_key() failed for \"%s\"",
                          e->cert->id);
            return 0;
        }
    }

    return 1;
}
