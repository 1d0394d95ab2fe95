/*
 * autotls for nginx: names registered at runtime (the zone's table).
 *
 * The store's registry (common/atls_names.h) is the truth; the shared zone
 * holds a mirror of it that the handshake path reads: one node per name
 * with the home that serves it, its state and a generation counter.  Only
 * the driver writes the mirror (ngx_http_autotls_mirror.c): it adds and
 * removes names when the registry changes and bumps a name's counter at
 * each deploy of its certificate, so that every worker reloads the name's
 * entry of its certificate cache at its next handshake.  A handshake costs
 * a tree lookup under the zone's mutex and an integer compare.
 *
 * A checked dynamic name is its own certificate id (atls_cert_id() of a
 * name with letters, digits, '-' and '.' only is the name), so the table
 * is keyed by the name alone.
 *
 * The driver mirrors the registry in slices between network events
 * (_mirror.c: listed in pages, each entry read, the meta of a name not
 * seen before read to say SERVING or PENDING), so a server with 100,000
 * names answers its first handshake at once.  Until the mirror is
 * complete, a name not in the table yet is looked up once by the worker
 * that sees it: its registry entry only, never its meta; a registered
 * name goes into the table as CHECKING (any dynamic home serves it until
 * the driver resolves its home and state) and its handshake is served
 * through the cache, which loads what the store holds: the real
 * certificate from the first second, the self-signed one only for a name
 * with none yet.  Once the mirror is complete the handshake path reads
 * nothing from the store but through the bounded cache.
 */

#include "ngx_http_autotls_module.h"


typedef struct {
    ngx_str_node_t                  sn;        /* key: crc32 of the name */
    ngx_atomic_t                    gen;       /* bumped at each deploy */
    u_char                          state;     /* ngx_http_autotls_dyn_state_e */
    u_char                          mark;      /* the mirror's last sweep */
    u_char                          home_len;
    u_char                          data[1];   /* name NUL home NUL */
} ngx_http_autotls_dyn_node_t;

typedef struct {
    ngx_rbtree_t                    tree;      /* ngx_http_autotls_dyn_node_t */
    ngx_rbtree_node_t               sentinel;
    ngx_uint_t                      count;
    ngx_uint_t                      complete;  /* the first mirror is done */
    uint64_t                        names_gen; /* registry generation + 1
                                                  mirrored; 0: none yet */
    ngx_atomic_uint_t               serial;    /* every generation a node
                                                  gets is new: a worker's
                                                  entry of a name removed
                                                  and added again is never
                                                  taken for current */
    u_char                          mark;      /* this sweep's mark */
} ngx_http_autotls_dyn_sh_t;


static ngx_http_autotls_dyn_node_t *ngx_http_autotls_dyn_lookup(
    ngx_http_autotls_dyn_sh_t *dsh, const u_char *name, size_t len);
static ngx_http_autotls_dyn_state_e ngx_http_autotls_dyn_from_store(
    const u_char *name, size_t len, ngx_atomic_uint_t *gen);


/* the table's size when this process last said the zone is full */
static ngx_uint_t  ngx_http_autotls_dyn_full_at = (ngx_uint_t) -1;


static ngx_http_autotls_dyn_sh_t *
ngx_http_autotls_dyn_sh(void)
{
    ngx_http_autotls_shm_t  *ctx = ngx_http_autotls_shm();

    return ctx ? ctx->sh->dyn : NULL;
}


/*
 * The table, created with the zone and kept across reloads (the zone is
 * reused when its size did not change): a new driver then finds the names
 * mirrored and only reads the registry again to check it.
 */
ngx_int_t
ngx_http_autotls_dyn_shm_init(ngx_http_autotls_shm_t *ctx)
{
    ngx_http_autotls_dyn_sh_t  *dsh;

    if (ctx->sh->dyn != NULL) {
        return NGX_OK;
    }

    dsh = ngx_slab_alloc(ctx->shpool, sizeof(ngx_http_autotls_dyn_sh_t));
    if (dsh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(dsh, sizeof(ngx_http_autotls_dyn_sh_t));
    ngx_rbtree_init(&dsh->tree, &dsh->sentinel, ngx_str_rbtree_insert_value);
    ctx->sh->dyn = dsh;

    return NGX_OK;
}


/* under the zone's mutex */
static ngx_http_autotls_dyn_node_t *
ngx_http_autotls_dyn_lookup(ngx_http_autotls_dyn_sh_t *dsh, const u_char *name,
    size_t len)
{
    ngx_str_t  key;

    key.data = (u_char *) name;
    key.len = len;

    return (ngx_http_autotls_dyn_node_t *)
               ngx_str_rbtree_lookup(&dsh->tree, &key,
                                     ngx_crc32_short((u_char *) name, len));
}


/*
 * The state of a name in the table, its generation and (with home) the
 * home that serves it, copied out under the zone's mutex.  home:
 * NGX_HTTP_AUTOTLS_NAME_MAX + 1 bytes, or NULL.  *complete (may be NULL):
 * the driver's first mirror is done.
 */
static ngx_http_autotls_dyn_state_e
ngx_http_autotls_dyn_find(const u_char *name, size_t len,
    ngx_atomic_uint_t *gen, u_char *home, size_t *home_len,
    ngx_uint_t *complete)
{
    ngx_http_autotls_shm_t       *ctx = ngx_http_autotls_shm();
    ngx_http_autotls_dyn_sh_t    *dsh = ngx_http_autotls_dyn_sh();
    ngx_http_autotls_dyn_node_t  *node;
    ngx_http_autotls_dyn_state_e  state;

    *gen = 0;
    if (home_len) {
        *home_len = 0;
    }
    if (complete) {
        *complete = 1;
    }

    if (dsh == NULL || len == 0 || len > NGX_HTTP_AUTOTLS_NAME_MAX) {
        return NGX_HTTP_AUTOTLS_DYN_UNKNOWN;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    node = ngx_http_autotls_dyn_lookup(dsh, name, len);
    state = NGX_HTTP_AUTOTLS_DYN_UNKNOWN;

    if (node != NULL) {
        state = node->state;
        *gen = node->gen;

        if (home) {
            ngx_memcpy(home, node->data + len + 1, node->home_len);
            *home_len = node->home_len;
        }

    } else if (complete) {
        *complete = dsh->complete;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return state;
}


/* the table only: what the driver's mirror compares with */
ngx_http_autotls_dyn_state_e
ngx_http_autotls_dyn_peek(const u_char *name, size_t len,
    ngx_atomic_uint_t *gen, u_char *home, size_t *home_len)
{
    return ngx_http_autotls_dyn_find(name, len, gen, home, home_len, NULL);
}


/* the table, or the store for a name the first mirror has not reached */
ngx_http_autotls_dyn_state_e
ngx_http_autotls_dyn_get(const u_char *name, size_t len,
    ngx_atomic_uint_t *gen, u_char *home, size_t *home_len)
{
    ngx_uint_t                    complete;
    ngx_http_autotls_dyn_state_e  state;

    state = ngx_http_autotls_dyn_find(name, len, gen, home, home_len,
                                      &complete);

    if (state == NGX_HTTP_AUTOTLS_DYN_UNKNOWN && !complete) {
        /* the registry's home is resolved by the mirror; until then the
         * name is served by whichever dynamic home sees it (home_len 0) */
        state = ngx_http_autotls_dyn_from_store(name, len, gen);
    }

    /* registered, not verified by the driver yet: served with what the
     * store holds (the cache loads it; nothing is read here) */
    return state == NGX_HTTP_AUTOTLS_DYN_CHECKING
           ? NGX_HTTP_AUTOTLS_DYN_SERVING : state;
}


ngx_http_autotls_dyn_state_e
ngx_http_autotls_dyn_state(const u_char *name, size_t len)
{
    ngx_atomic_uint_t  gen;

    return ngx_http_autotls_dyn_get(name, len, &gen, NULL, NULL);
}


/*
 * Adds or updates a name (the driver, or a worker during the first
 * mirror).  A name whose home changed keeps its counter.  NGX_OK,
 * NGX_ERROR when the zone is full (logged, naming the directive).
 */
ngx_int_t
ngx_http_autotls_dyn_put(const u_char *name, size_t len, const u_char *home,
    size_t home_len, ngx_http_autotls_dyn_state_e state, ngx_uint_t bump)
{
    ngx_http_autotls_shm_t       *ctx = ngx_http_autotls_shm();
    ngx_http_autotls_dyn_sh_t    *dsh = ngx_http_autotls_dyn_sh();
    ngx_uint_t                    count;
    ngx_http_autotls_dyn_node_t  *node, *old;

    if (dsh == NULL || len == 0 || len > NGX_HTTP_AUTOTLS_NAME_MAX
        || home_len > 255)
    {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    old = ngx_http_autotls_dyn_lookup(dsh, name, len);

    if (old != NULL && home_len == 0 && old->home_len != 0) {
        /* a worker's lookup never replaces what the mirror put */
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_OK;
    }

    if (old != NULL && old->home_len == home_len
        && ngx_memcmp(old->data + len + 1, home, home_len) == 0)
    {
        old->state = (u_char) state;
        old->mark = dsh->mark;
        if (bump) {
            old->gen = ++dsh->serial;
        }
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_OK;
    }

    node = ngx_slab_alloc_locked(ctx->shpool,
                                 sizeof(ngx_http_autotls_dyn_node_t)
                                 + len + home_len + 1);
    if (node == NULL) {
        count = dsh->count;
        ngx_shmtx_unlock(&ctx->shpool->mutex);

        /* once per size of the table, not once per name that misses it */
        if (count != ngx_http_autotls_dyn_full_at) {
            ngx_http_autotls_dyn_full_at = count;
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "autotls: the shared zone is full with %ui "
                          "dynamic names; \"%*s\" and the names after it "
                          "are not served; increase \"autotls_shared_zone\"",
                          count, len, name);
        }
        return NGX_ERROR;
    }

    ngx_memcpy(node->data, name, len);
    node->data[len] = '\0';
    ngx_memcpy(node->data + len + 1, home, home_len);
    node->data[len + 1 + home_len] = '\0';
    node->home_len = (u_char) home_len;
    node->state = (u_char) state;
    node->mark = dsh->mark;
    node->gen = ++dsh->serial;
    node->sn.str.data = node->data;
    node->sn.str.len = len;
    node->sn.node.key = ngx_crc32_short((u_char *) name, len);

    if (old != NULL) {
        /* a new home (its new generation reloads the workers' entries) */
        ngx_rbtree_delete(&dsh->tree, &old->sn.node);
        ngx_slab_free_locked(ctx->shpool, old);
        dsh->count--;
    }

    ngx_rbtree_insert(&dsh->tree, &node->sn.node);
    dsh->count++;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
}


/*
 * atls_sched_host_t.deployed / .stapled for a dynamic certificate: the
 * name is served (again) with what the store holds now.
 */
void
ngx_http_autotls_dyn_deployed(const char *id)
{
    ngx_http_autotls_shm_t       *ctx = ngx_http_autotls_shm();
    ngx_http_autotls_dyn_sh_t    *dsh = ngx_http_autotls_dyn_sh();
    ngx_http_autotls_dyn_node_t  *node;

    if (dsh == NULL || id == NULL) {
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    node = ngx_http_autotls_dyn_lookup(dsh, (const u_char *) id,
                                       ngx_strlen(id));
    if (node != NULL && node->state != NGX_HTTP_AUTOTLS_DYN_REMOVED) {
        node->state = NGX_HTTP_AUTOTLS_DYN_SERVING;
        node->gen = ++dsh->serial;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* Sets a CHECKING name's state (whoever read the store first wins). */
void
ngx_http_autotls_dyn_resolve(const u_char *name, size_t len,
    ngx_http_autotls_dyn_state_e state)
{
    ngx_http_autotls_shm_t       *ctx = ngx_http_autotls_shm();
    ngx_http_autotls_dyn_sh_t    *dsh = ngx_http_autotls_dyn_sh();
    ngx_http_autotls_dyn_node_t  *node;

    if (dsh == NULL) {
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    node = ngx_http_autotls_dyn_lookup(dsh, name, len);
    if (node != NULL && node->state == NGX_HTTP_AUTOTLS_DYN_CHECKING) {
        node->state = (u_char) state;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* ---- the mirror's bookkeeping (only the driver calls these) ------------- */

/* a new sweep: names not put again before dyn_sweep_end() are dropped */
void
ngx_http_autotls_dyn_sweep_start(void)
{
    ngx_http_autotls_shm_t     *ctx = ngx_http_autotls_shm();
    ngx_http_autotls_dyn_sh_t  *dsh = ngx_http_autotls_dyn_sh();

    if (dsh == NULL) {
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);
    dsh->mark++;
    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* Drops the names the sweep did not see; records gen as mirrored. */
void
ngx_http_autotls_dyn_sweep_end(uint64_t gen)
{
    ngx_uint_t                    n;
    ngx_rbtree_node_t            *rn, *next, *root, *sentinel;
    ngx_http_autotls_shm_t       *ctx = ngx_http_autotls_shm();
    ngx_http_autotls_dyn_sh_t    *dsh = ngx_http_autotls_dyn_sh();
    ngx_http_autotls_dyn_node_t  *node;

    if (dsh == NULL) {
        return;
    }

    n = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    sentinel = dsh->tree.sentinel;
    root = dsh->tree.root;

    if (root != sentinel) {
        for (rn = ngx_rbtree_min(root, sentinel); rn != NULL; rn = next) {
            next = ngx_rbtree_next(&dsh->tree, rn);
            node = (ngx_http_autotls_dyn_node_t *) rn;

            if (node->mark != dsh->mark) {
                ngx_rbtree_delete(&dsh->tree, rn);
                ngx_slab_free_locked(ctx->shpool, node);
                dsh->count--;
                n++;
            }
        }
    }

    dsh->names_gen = gen;
    dsh->complete = 1;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (n) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "autotls: %ui dynamic names left the mirror", n);
    }
}


/* A name the registry no longer holds (purged). */
void
ngx_http_autotls_dyn_del(const u_char *name, size_t len)
{
    ngx_http_autotls_shm_t       *ctx = ngx_http_autotls_shm();
    ngx_http_autotls_dyn_sh_t    *dsh = ngx_http_autotls_dyn_sh();
    ngx_http_autotls_dyn_node_t  *node;

    if (dsh == NULL) {
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    node = ngx_http_autotls_dyn_lookup(dsh, name, len);
    if (node != NULL) {
        ngx_rbtree_delete(&dsh->tree, &node->sn.node);
        ngx_slab_free_locked(ctx->shpool, node);
        dsh->count--;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* the changes up to gen (the registry generation + 1) are mirrored */
void
ngx_http_autotls_dyn_set_mirrored(uint64_t gen)
{
    ngx_http_autotls_shm_t     *ctx = ngx_http_autotls_shm();
    ngx_http_autotls_dyn_sh_t  *dsh = ngx_http_autotls_dyn_sh();

    if (dsh == NULL) {
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);
    dsh->names_gen = gen;
    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* the registry generation + 1 last mirrored; 0: never */
uint64_t
ngx_http_autotls_dyn_mirrored(void)
{
    ngx_http_autotls_dyn_sh_t  *dsh = ngx_http_autotls_dyn_sh();

    return dsh ? dsh->names_gen : 0;
}


ngx_uint_t
ngx_http_autotls_dyn_count(void)
{
    ngx_http_autotls_dyn_sh_t  *dsh = ngx_http_autotls_dyn_sh();

    return dsh ? dsh->count : 0;
}


/*
 * Before the first mirror is complete: the name's registry entry (never
 * its meta), read once by the worker that sees the name; a registered
 * name goes into the table as CHECKING, so its next handshake reads
 * nothing, and the driver's mirror resolves its home and state.
 */
static ngx_http_autotls_dyn_state_e
ngx_http_autotls_dyn_from_store(const u_char *name, size_t len,
    ngx_atomic_uint_t *gen)
{
    int                           rc;
    char                          cname[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    char                          err[256];
    atls_name_entry_t             e;
    ngx_http_autotls_shm_t       *ctx = ngx_http_autotls_shm();
    ngx_http_autotls_dyn_sh_t    *dsh = ngx_http_autotls_dyn_sh();
    ngx_http_autotls_dyn_node_t  *node;
    ngx_http_autotls_dyn_state_e  state;

    if (ngx_http_autotls_store == NULL) {
        return NGX_HTTP_AUTOTLS_DYN_UNKNOWN;
    }

    ngx_memcpy(cname, name, len);
    cname[len] = '\0';

    ngx_memzero(&e, sizeof(atls_name_entry_t));
    err[0] = '\0';

    rc = atls_names_get(ngx_http_autotls_store, cname, &e, err, sizeof(err));
    if (rc != ATLS_STORE_OK) {
        if (rc != ATLS_STORE_NOTFOUND) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "autotls: dynamic name \"%s\": %s", cname, err);
        }
        return NGX_HTTP_AUTOTLS_DYN_UNKNOWN;
    }

    state = e.state == ATLS_NAME_ACTIVE ? NGX_HTTP_AUTOTLS_DYN_CHECKING
                                        : NGX_HTTP_AUTOTLS_DYN_REMOVED;

    atls_name_entry_free(&e);

    /* an empty home until the mirror resolves the registry's */
    if (ngx_http_autotls_dyn_put(name, len, (u_char *) "", 0, state, 0)
        == NGX_OK)
    {
        ngx_shmtx_lock(&ctx->shpool->mutex);

        node = ngx_http_autotls_dyn_lookup(dsh, name, len);
        if (node != NULL) {
            *gen = node->gen;

            if (node->home_len == 0) {
                /* not the sweep's own: it goes unless the mirror puts it
                 * (the registry's home may be another server's) */
                node->mark = (u_char) (dsh->mark - 1);
            }
        }

        ngx_shmtx_unlock(&ctx->shpool->mutex);
    }

    return state;
}


/* ---- the handshake path ------------------------------------------------- */

/*
 * The state of the SNI name for this home (UNKNOWN when another home
 * serves it), the checked name in name/len and its generation.
 */
static ngx_http_autotls_dyn_state_e
ngx_http_autotls_dyn_sni(ngx_http_autotls_srv_conf_t *ascf, const char *sni,
    u_char *name, size_t *len, ngx_atomic_uint_t *gen)
{
    char                          why[128];
    size_t                        home_len;
    u_char                        home[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    ngx_http_autotls_dyn_state_e  state;

    if (sni == NULL) {
        return NGX_HTTP_AUTOTLS_DYN_UNKNOWN;
    }

    /* the client's bytes: a name or nothing, before any lookup */
    if (atls_name_check(sni, ngx_strlen(sni), 0, 0, (char *) name,
                        NGX_HTTP_AUTOTLS_NAME_MAX + 1, why, sizeof(why))
        != 0)
    {
        return NGX_HTTP_AUTOTLS_DYN_UNKNOWN;
    }

    *len = ngx_strlen(name);

    state = ngx_http_autotls_dyn_get(name, *len, gen, home, &home_len);

    if (state != NGX_HTTP_AUTOTLS_DYN_PENDING
        && state != NGX_HTTP_AUTOTLS_DYN_SERVING)
    {
        return NGX_HTTP_AUTOTLS_DYN_UNKNOWN;
    }

    /* an empty home: read from the store before the mirror resolved it */
    if (home_len != 0
        && (home_len != ascf->issuer.len
            || ngx_memcmp(home, ascf->issuer.data, home_len) != 0))
    {
        return NGX_HTTP_AUTOTLS_DYN_UNKNOWN;
    }

    return state;
}


/* 1 when this home serves the SNI name (a pending one included) */
ngx_uint_t
ngx_http_autotls_dyn_served(ngx_http_autotls_srv_conf_t *ascf,
    const char *sni)
{
    size_t             len;
    u_char             name[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    ngx_atomic_uint_t  gen;

    return ngx_http_autotls_dyn_sni(ascf, sni, name, &len, &gen)
           != NGX_HTTP_AUTOTLS_DYN_UNKNOWN;
}


/*
 * The name's certificate from the worker's cache, loaded again when its
 * counter moved; a registered name with no certificate yet gets a
 * self-signed one for its name until the real one is deployed.
 */
ngx_int_t
ngx_http_autotls_dyn_install(SSL *ssl, ngx_connection_t *c,
    ngx_http_autotls_srv_conf_t *ascf, const char *sni)
{
    size_t                     len;
    u_char                     name[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    ngx_atomic_uint_t          gen;
    ngx_http_autotls_entry_t  *e;

    len = 0;

    if (ngx_http_autotls_dyn_sni(ascf, sni, name, &len, &gen)
        == NGX_HTTP_AUTOTLS_DYN_UNKNOWN)
    {
        if (len) {
            /* a removed name's parsed objects go at its next handshake */
            ngx_http_autotls_cache_forget(name, len);
        }
        return NGX_DECLINED;
    }

    e = ngx_http_autotls_cache_dyn(name, len, ascf->home, gen, c->log);
    if (e == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_autotls_cache_use(ssl, c, e) ? NGX_OK : NGX_ERROR;
}


/*
 * autotls_dynamic_unknown for a name the home does not serve: the home's
 * self-signed fallback, or no handshake (the servername callback already
 * sent unrecognized_name; this is the last line).  1 or 0, as a cert_cb.
 */
int
ngx_http_autotls_dyn_unknown(SSL *ssl, ngx_connection_t *c,
    ngx_http_autotls_srv_conf_t *ascf)
{
    u_char                     key[NGX_HTTP_AUTOTLS_NAME_MAX + 8];
    u_char                    *p;
    ngx_http_autotls_entry_t  *e;

    if (ascf->unknown == NGX_HTTP_AUTOTLS_UNKNOWN_REJECT) {
        return 0;
    }

    /* a key no name can be: the home's fallback, one per worker */
    p = ngx_snprintf(key, sizeof(key), " home %V", &ascf->issuer);

    e = ngx_http_autotls_cache_dyn(key, p - key, ascf->home, 1, c->log);
    if (e == NULL) {
        return 1;
    }

    return ngx_http_autotls_cache_use(ssl, c, e);
}


ngx_int_t
ngx_http_autotls_dyn_init_worker(ngx_cycle_t *cycle)
{
    /* the cache of parsed certificates is ngx_http_autotls_cache.c's */
    return NGX_OK;
}


void
ngx_http_autotls_dyn_exit_worker(void)
{
}
