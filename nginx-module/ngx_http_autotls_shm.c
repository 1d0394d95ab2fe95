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
 */

#include "ngx_http_autotls_module.h"


static ngx_int_t ngx_http_autotls_shm_init(ngx_shm_zone_t *zone, void *data);
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

    ctx->ncerts = amcf->certs.nelts;

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

    ngx_uint_t               i, n;
    ngx_slab_pool_t         *shpool;
    ngx_http_autotls_shm_t  *ctx;

    ctx = zone->data;
    shpool = (ngx_slab_pool_t *) zone->shm.addr;
    ctx->shpool = shpool;

    if (octx) {
        /* a reload: keep the driver lock and the challenges */
        ctx->sh = octx->sh;

    } else if (zone->shm.exists) {
        ctx->sh = shpool->data;

    } else {
        ctx->sh = ngx_slab_alloc(shpool, sizeof(ngx_http_autotls_shctx_t));
        if (ctx->sh == NULL) {
            goto full;
        }

        ngx_memzero(ctx->sh, sizeof(ngx_http_autotls_shctx_t));
        shpool->data = ctx->sh;
        shpool->log_nomem = 0;

        shpool->log_ctx = ngx_slab_alloc(shpool,
                                         sizeof(" in autotls zone \"\"")
                                         + zone->shm.name.len);
        if (shpool->log_ctx != NULL) {
            ngx_sprintf(shpool->log_ctx, " in autotls zone \"%V\"%Z",
                        &zone->shm.name);
        }
    }

    /*
     * Every cycle gets its own counters: certificate indexes may differ
     * between configurations, and a new worker starts with an empty cache
     * anyway.  Old counters are left to the old workers still exiting.
     * One block: the watch state, the counters, the meta generations seen.
     */
    n = ctx->ncerts ? ctx->ncerts : 1;

    ctx->watch = ngx_slab_alloc(shpool, sizeof(ngx_http_autotls_watch_sh_t)
                                        + n * sizeof(ngx_atomic_t)
                                        + n * sizeof(uint64_t));
    if (ctx->watch == NULL) {
        goto full;
    }

    ctx->gens = (ngx_atomic_t *) (ctx->watch + 1);
    ctx->watch->seen = (uint64_t *) (ctx->gens + n);
    ctx->watch->store_gen = 0;

    for (i = 0; i < ctx->ncerts; i++) {
        ctx->gens[i] = 1;
        ctx->watch->seen[i] = 0;
    }

    ngx_shmtx_lock(&shpool->mutex);
    ctx->sh->gens = ctx->gens;
    ctx->sh->ncerts = ctx->ncerts;
    ngx_shmtx_unlock(&shpool->mutex);

    ngx_http_autotls_shm_ctx = ctx;

    return NGX_OK;

full:

    ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                  "autotls: the shared zone is too small for %ui "
                  "certificates; increase \"autotls_shared_zone\"",
                  ctx->ncerts);
    return NGX_ERROR;
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

    return ctx->gens[index];
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

    if (ctx->watch->seen[index] == gen && !force) {
        return NGX_DECLINED;
    }

    ctx->watch->seen[index] = gen;
    (void) ngx_atomic_fetch_add(&ctx->gens[index], 1);

    return NGX_OK;
}


/* the store generation + 1 the counters reflect; 0: not looked yet */
uint64_t
ngx_http_autotls_shm_store_gen(void)
{
    ngx_http_autotls_shm_t  *ctx = ngx_http_autotls_shm_ctx;

    return ctx ? ctx->watch->store_gen : 0;
}


void
ngx_http_autotls_shm_set_store_gen(uint64_t gen)
{
    ngx_http_autotls_shm_t  *ctx = ngx_http_autotls_shm_ctx;

    if (ctx) {
        ctx->watch->store_gen = gen;
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
