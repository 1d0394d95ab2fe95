/*
 * autotls for nginx: the shared zone.
 *
 * Holds what every worker must see at once: the driver lock (holder pid and
 * heartbeat), one generation counter per certificate (bumped on deploy, so
 * that workers reload their cached X509/EVP_PKEY), what the driver last saw
 * of the store (its generation, each certificate's meta generation: see
 * _watch.c), and pending challenges (http-01 key authorizations,
 * tls-alpn-01 certificates in DER).  The store stays the durable truth;
 * everything here can be rebuilt.
 *
 * Nothing is allocated per configuration cycle: a reload finds each
 * certificate's counter by its id and reuses it, so any number of reloads
 * leave the zone's use where it was.
 */

#include "ngx_http_autotls_module.h"


static ngx_int_t ngx_http_autotls_shm_init(ngx_shm_zone_t *zone, void *data);
static ngx_int_t ngx_http_autotls_shm_create(ngx_shm_zone_t *zone,
    ngx_http_autotls_shm_t *ctx);
static ngx_http_autotls_gen_t *ngx_http_autotls_shm_gen_get(ngx_http_autotls_shm_t *ctx,
    const char *id);
static void ngx_http_autotls_chal_free(ngx_http_autotls_chal_t *ch);


static ngx_http_autotls_shm_t  *ngx_http_autotls_shm_ctx;


ngx_int_t
ngx_http_autotls_shm_add(ngx_conf_t *cf, ngx_http_autotls_main_conf_t *amcf)
{
    ngx_str_t                name;
    ngx_http_autotls_shm_t  *ctx;

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_autotls_shm_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->certs = &amcf->certs;
    ctx->ncerts = amcf->certs.nelts;

    ctx->gens = ngx_pcalloc(cf->pool,
                            (ctx->ncerts ? ctx->ncerts : 1)
                            * sizeof(ngx_http_autotls_gen_t *));
    if (ctx->gens == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&name, NGX_HTTP_AUTOTLS_ZONE_NAME);

    amcf->zone = ngx_shared_memory_add(cf, &name, amcf->shm_size,
                                       &ngx_http_autotls_module);
    if (amcf->zone == NULL) {
        return NGX_ERROR;
    }

    if (amcf->zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "autotls shared zone is already used");
        return NGX_ERROR;
    }

    amcf->zone->init = ngx_http_autotls_shm_init;
    amcf->zone->data = ctx;

    return NGX_OK;
}


static ngx_int_t
ngx_http_autotls_shm_init(ngx_shm_zone_t *zone, void *data)
{
    ngx_http_autotls_shm_t  *octx = data;

    ngx_uint_t                i;
    ngx_slab_pool_t          *shpool;
    ngx_http_autotls_cert_t **certs;
    ngx_http_autotls_shm_t   *ctx;

    ctx = zone->data;
    shpool = (ngx_slab_pool_t *) zone->shm.addr;
    ctx->shpool = shpool;

    if (octx) {
        /* a reload: keep the driver lock, the counters and the challenges */
        ctx->sh = octx->sh;

    } else if (zone->shm.exists) {
        ctx->sh = shpool->data;

    } else if (ngx_http_autotls_shm_create(zone, ctx) != NGX_OK) {
        goto full;
    }

    /*
     * Certificate indexes may differ between configurations, ids do not:
     * the old workers still exiting and the new ones share the counter of
     * a certificate both know, so a deploy by either reaches both.  The
     * counter of a certificate no configuration uses any more stays (an
     * old worker may still bump it) and is reused if it comes back.  What
     * the driver saw of the store lives there too, so a new driver after a
     * reload only scans when the store changed meanwhile.
     */
    if (ngx_http_autotls_dyn_shm_init(ctx) != NGX_OK) {
        goto full;
    }

    certs = ctx->certs->elts;

    for (i = 0; i < ctx->ncerts; i++) {
        ctx->gens[i] = ngx_http_autotls_shm_gen_get(ctx, certs[i]->id);
        if (ctx->gens[i] == NULL) {
            goto full;
        }
    }

    ngx_http_autotls_shm_ctx = ctx;

    return NGX_OK;

full:

    ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                  "autotls: the shared zone is too small for %ui "
                  "certificates; increase \"autotls_shared_zone\"",
                  ctx->ncerts);
    return NGX_ERROR;
}


static ngx_int_t
ngx_http_autotls_shm_create(ngx_shm_zone_t *zone, ngx_http_autotls_shm_t *ctx)
{
    ngx_slab_pool_t  *shpool = ctx->shpool;

    ctx->sh = ngx_slab_alloc(shpool, sizeof(ngx_http_autotls_shctx_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(ctx->sh, sizeof(ngx_http_autotls_shctx_t));
    ngx_rbtree_init(&ctx->sh->gens, &ctx->sh->sentinel,
                    ngx_str_rbtree_insert_value);
    shpool->data = ctx->sh;
    shpool->log_nomem = 0;

    shpool->log_ctx = ngx_slab_alloc(shpool,
                                     sizeof(" in autotls zone \"\"")
                                     + zone->shm.name.len);
    if (shpool->log_ctx != NULL) {
        ngx_sprintf(shpool->log_ctx, " in autotls zone \"%V\"%Z",
                    &zone->shm.name);
    }

    return NGX_OK;
}


/* The counter of certificate id, created (at 1, nothing seen) on first use. */
static ngx_http_autotls_gen_t *
ngx_http_autotls_shm_gen_get(ngx_http_autotls_shm_t *ctx, const char *id)
{
    size_t                   len;
    uint32_t                 hash;
    ngx_str_t                key;
    ngx_http_autotls_gen_t  *g;

    len = ngx_strlen(id);
    key.data = (u_char *) id;
    key.len = len;
    hash = ngx_crc32_short(key.data, len);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    g = (ngx_http_autotls_gen_t *) ngx_str_rbtree_lookup(&ctx->sh->gens,
                                                         &key, hash);
    if (g == NULL) {
        g = ngx_slab_alloc_locked(ctx->shpool,
                                  sizeof(ngx_http_autotls_gen_t) + len);
        if (g != NULL) {
            ngx_memcpy(g->id, id, len + 1);
            g->sn.str.data = g->id;
            g->sn.str.len = len;
            g->sn.node.key = hash;
            g->gen = 1;
            g->seen = 0;
            ngx_rbtree_insert(&ctx->sh->gens, &g->sn.node);
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return g;
}


/* Page and small-allocation counts, read under the zone's lock. */
ngx_int_t
ngx_http_autotls_shm_usage(ngx_http_autotls_shm_usage_t *u)
{
    ngx_uint_t               i, n;
    ngx_slab_pool_t         *shpool;
    ngx_http_autotls_shm_t  *ctx = ngx_http_autotls_shm_ctx;

    if (ctx == NULL) {
        return NGX_DECLINED;
    }

    shpool = ctx->shpool;
    ngx_memzero(u, sizeof(*u));
    u->size = (size_t) ((u_char *) shpool->end - (u_char *) shpool);

    /* one stats entry per slot size, 1 << (i + min_shift) bytes */
    n = ngx_pagesize_shift - shpool->min_shift;

    ngx_shmtx_lock(&shpool->mutex);

    u->pages = (size_t) (shpool->last - shpool->pages);
    u->pages_free = shpool->pfree;

    for (i = 0; i < n; i++) {
        u->slots += shpool->stats[i].used;
        u->slot_bytes += shpool->stats[i].used << (i + shpool->min_shift);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


ngx_http_autotls_shm_t *
ngx_http_autotls_shm(void)
{
    return ngx_http_autotls_shm_ctx;
}


ngx_atomic_uint_t
ngx_http_autotls_shm_gen(ngx_uint_t index)
{
    ngx_http_autotls_shm_t  *ctx = ngx_http_autotls_shm_ctx;

    if (ctx == NULL || index >= ctx->ncerts) {
        return 0;
    }

    return ctx->gens[index]->gen;
}


/*
 * Records gen (a certificate's meta generation + 1) as seen and bumps the
 * certificate's counter when it differs from what was seen before, or
 * always with force (a deploy of our own).  Only the driver calls it.
 * NGX_OK: bumped; NGX_DECLINED: nothing changed.
 */
ngx_int_t
ngx_http_autotls_shm_observe(ngx_uint_t index, uint64_t gen, ngx_uint_t force)
{
    ngx_http_autotls_shm_t  *ctx = ngx_http_autotls_shm_ctx;

    if (ctx == NULL || index >= ctx->ncerts) {
        return NGX_DECLINED;
    }

    if (ctx->gens[index]->seen == gen && !force) {
        return NGX_DECLINED;
    }

    ctx->gens[index]->seen = gen;
    (void) ngx_atomic_fetch_add(&ctx->gens[index]->gen, 1);

    return NGX_OK;
}


/* the store generation + 1 the counters reflect; 0: not looked yet */
uint64_t
ngx_http_autotls_shm_store_gen(void)
{
    ngx_http_autotls_shm_t  *ctx = ngx_http_autotls_shm_ctx;

    return ctx ? ctx->sh->store_gen : 0;
}


void
ngx_http_autotls_shm_set_store_gen(uint64_t gen)
{
    ngx_http_autotls_shm_t  *ctx = ngx_http_autotls_shm_ctx;

    if (ctx) {
        ctx->sh->store_gen = gen;
    }
}


ngx_int_t
ngx_http_autotls_shm_elect(time_t now, ngx_uint_t *took)
{
    ngx_int_t                  mine;
    ngx_http_autotls_shm_t    *ctx = ngx_http_autotls_shm_ctx;
    ngx_http_autotls_shctx_t  *sh;

    *took = 0;

    if (ctx == NULL) {
        return 0;
    }

    sh = ctx->sh;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (sh->driver_pid == ngx_pid) {
        sh->heartbeat = now;
        mine = 1;

    } else if (sh->driver_pid == 0
               || now - sh->heartbeat > NGX_HTTP_AUTOTLS_STALE
               || (kill(sh->driver_pid, 0) == -1 && ngx_errno == NGX_ESRCH))
    {
        sh->driver_pid = ngx_pid;
        sh->heartbeat = now;
        mine = 1;
        *took = 1;

    } else {
        mine = 0;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return mine;
}


void
ngx_http_autotls_shm_resign(void)
{
    ngx_http_autotls_shm_t  *ctx = ngx_http_autotls_shm_ctx;

    if (ctx == NULL) {
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ctx->sh->driver_pid == ngx_pid) {
        ctx->sh->driver_pid = 0;
        ctx->sh->heartbeat = 0;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


static ngx_http_autotls_chal_t **
ngx_http_autotls_chal_find(atls_challenge_type_t type, const u_char *key,
    size_t len)
{
    ngx_http_autotls_chal_t  **pp, *ch;

    for (pp = &ngx_http_autotls_shm_ctx->sh->chals; *pp; pp = &(*pp)->next) {
        ch = *pp;

        if (ch->type != type) {
            continue;
        }

        if (type == ATLS_CHAL_HTTP01) {
            if (ch->token_len == len && ngx_memcmp(ch->token, key, len) == 0) {
                return pp;
            }

        } else if (ch->name_len == len
                   && ngx_strncasecmp(ch->name, (u_char *) key, len) == 0)
        {
            return pp;
        }
    }

    return NULL;
}


ngx_int_t
ngx_http_autotls_shm_chal_add(const atls_challenge_t *c, const u_char *data,
    size_t data_len, size_t cert_len, char *why, size_t whylen)
{
    size_t                     nlen, tlen;
    ngx_slab_pool_t           *shpool;
    ngx_http_autotls_chal_t   *ch, **pp;
    ngx_http_autotls_shm_t    *ctx = ngx_http_autotls_shm_ctx;

    if (ctx == NULL) {
        ngx_snprintf((u_char *) why, whylen, "no shared zone%Z");
        return NGX_ERROR;
    }

    nlen = ngx_strlen(c->identifier);
    tlen = c->token ? ngx_strlen(c->token) : 0;

    if (nlen > NGX_HTTP_AUTOTLS_NAME_MAX || tlen > NGX_HTTP_AUTOTLS_TOKEN_MAX) {
        ngx_snprintf((u_char *) why, whylen, "identifier or token too long%Z");
        return NGX_ERROR;
    }

    shpool = ctx->shpool;

    ngx_shmtx_lock(&shpool->mutex);

    /* a retried order replaces what an earlier attempt published */
    pp = ngx_http_autotls_chal_find(c->type,
                                    c->type == ATLS_CHAL_HTTP01
                                    ? (u_char *) c->token
                                    : (u_char *) c->identifier,
                                    c->type == ATLS_CHAL_HTTP01 ? tlen : nlen);
    if (pp) {
        ch = *pp;
        *pp = ch->next;
        ngx_http_autotls_chal_free(ch);
    }

    ch = ngx_slab_alloc_locked(shpool, sizeof(ngx_http_autotls_chal_t));
    if (ch == NULL) {
        goto full;
    }

    ch->data = ngx_slab_alloc_locked(shpool, data_len);
    if (ch->data == NULL) {
        ngx_slab_free_locked(shpool, ch);
        goto full;
    }

    ch->type = c->type;
    ch->name_len = nlen;
    ngx_memcpy(ch->name, c->identifier, nlen);
    ch->name[nlen] = '\0';
    ch->token_len = tlen;
    ngx_memcpy(ch->token, c->token, tlen);
    ngx_memcpy(ch->data, data, data_len);
    ch->data_len = data_len;
    ch->cert_len = cert_len;

    ch->next = ctx->sh->chals;
    ctx->sh->chals = ch;

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;

full:

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_snprintf((u_char *) why, whylen,
                 "the autotls shared zone is full; increase "
                 "\"autotls_shared_zone\"%Z");
    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "autotls: %s", why);

    return NGX_ERROR;
}


static void
ngx_http_autotls_chal_free(ngx_http_autotls_chal_t *ch)
{
    ngx_slab_pool_t  *shpool = ngx_http_autotls_shm_ctx->shpool;

    ngx_slab_free_locked(shpool, ch->data);
    ngx_slab_free_locked(shpool, ch);
}


void
ngx_http_autotls_shm_chal_del(const atls_challenge_t *c)
{
    ngx_http_autotls_chal_t  **pp, *ch;
    ngx_http_autotls_shm_t    *ctx = ngx_http_autotls_shm_ctx;

    if (ctx == NULL) {
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (c->type == ATLS_CHAL_HTTP01) {
        pp = c->token ? ngx_http_autotls_chal_find(c->type,
                                                   (u_char *) c->token,
                                                   ngx_strlen(c->token))
                      : NULL;
    } else {
        pp = ngx_http_autotls_chal_find(c->type, (u_char *) c->identifier,
                                        ngx_strlen(c->identifier));
    }

    if (pp) {
        ch = *pp;
        *pp = ch->next;
        ngx_http_autotls_chal_free(ch);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


void
ngx_http_autotls_shm_chal_clear(void)
{
    ngx_http_autotls_chal_t  *ch, *next;
    ngx_http_autotls_shm_t   *ctx = ngx_http_autotls_shm_ctx;

    if (ctx == NULL) {
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    for (ch = ctx->sh->chals; ch; ch = next) {
        next = ch->next;
        ngx_http_autotls_chal_free(ch);
    }

    ctx->sh->chals = NULL;

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


u_char *
ngx_http_autotls_shm_chal_get(atls_challenge_type_t type, const u_char *key,
    size_t key_len, size_t *len, size_t *cert_len)
{
    u_char                    *copy;
    ngx_http_autotls_chal_t  **pp;
    ngx_http_autotls_shm_t    *ctx = ngx_http_autotls_shm_ctx;

    if (ctx == NULL) {
        return NULL;
    }

    copy = NULL;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    pp = ngx_http_autotls_chal_find(type, key, key_len);

    if (pp) {
        copy = malloc((*pp)->data_len);
        if (copy) {
            ngx_memcpy(copy, (*pp)->data, (*pp)->data_len);
            *len = (*pp)->data_len;
            *cert_len = (*pp)->cert_len;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return copy;
}
