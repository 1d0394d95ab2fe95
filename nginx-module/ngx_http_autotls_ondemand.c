/*
 * autotls for nginx: on-demand issuance (autotls ISSUER on_demand;).
 *
 * A name that no configuration and no registry entry covers arrives in
 * SNI or in the Host of a plain request.  The worker that sees it does not
 * decide: it puts the name in a bounded ring in the zone
 * "autotls_on_demand"; the driver drains the ring every few tens of
 * milliseconds into atls_sched_on_demand, where the core's gate
 * (atls_ondemand.h: deny list, allow list, ask URL, budgets) decides and
 * an allowed name is registered and ordered.  The verdicts come back
 * through atls_sched_host_t.on_demand into a bounded table in the same
 * zone, so that a refused name is not queued again until its verdict
 * expires (autotls_on_demand_ask's fail_cache), and the parked first
 * handshake of a refused name goes on at once with the fallback.
 *
 * Memory is bounded whatever the clients send: the ring holds
 * NGX_HTTP_AUTOTLS_OD_RING names (a name that finds it full is not queued
 * and its handshake goes on), the table NGX_HTTP_AUTOTLS_OD_TABLE verdicts
 * (the one expiring first in a probe window is replaced).
 *
 * The directives: ngx_http_autotls_ondemand_conf.c.
 */

#include "ngx_http_autotls_ondemand.h"


#define NGX_HTTP_AUTOTLS_OD_RING    256
#define NGX_HTTP_AUTOTLS_OD_TABLE   2048
#define NGX_HTTP_AUTOTLS_OD_PROBE   16
/* a queued name the driver has not taken, or is deciding, for this long
 * is queued again */
#define NGX_HTTP_AUTOTLS_OD_QUEUED_S  60

typedef enum {
    NGX_HTTP_AUTOTLS_OD_FREE = 0,
    NGX_HTTP_AUTOTLS_OD_QUEUED,     /* in the ring */
    NGX_HTTP_AUTOTLS_OD_ASKED,      /* taken by the driver */
    NGX_HTTP_AUTOTLS_OD_ALLOWED,    /* registered, ordering */
    NGX_HTTP_AUTOTLS_OD_DENIED,     /* denied or not a valid name */
    NGX_HTTP_AUTOTLS_OD_LIMITED     /* allowed, over a budget for now */
} ngx_http_autotls_od_state_e;

typedef struct {
    uint32_t                        hash;
    u_char                          state;
    u_char                          len;
    u_char                          home_len;
    time_t                          until;
    u_char                          name[NGX_HTTP_AUTOTLS_NAME_MAX];
    u_char                          home[NGX_HTTP_AUTOTLS_OD_HOME_MAX];
} ngx_http_autotls_od_entry_t;

/* a worker's parked connections, in its process slot: the total is the
 * sum over live workers, so a worker that dies holding some leaves no
 * drift behind */
typedef struct {
    ngx_pid_t                       pid;
    ngx_atomic_t                    n;
} ngx_http_autotls_od_parked_t;

typedef struct {
    ngx_uint_t                      head;      /* next to take */
    ngx_uint_t                      count;
    uint32_t                        ring[NGX_HTTP_AUTOTLS_OD_RING];
    ngx_http_autotls_od_parked_t    parked[NGX_MAX_PROCESSES];
    ngx_http_autotls_od_entry_t     table[NGX_HTTP_AUTOTLS_OD_TABLE];
} ngx_http_autotls_od_sh_t;

typedef struct {
    ngx_http_autotls_od_conf_t      conf;
    ngx_slab_pool_t                *shpool;
    ngx_http_autotls_od_sh_t       *sh;
} ngx_http_autotls_od_ctx_t;


static ngx_int_t ngx_http_autotls_od_zone_init(ngx_shm_zone_t *zone,
    void *data);
static ngx_int_t ngx_http_autotls_od_ports(ngx_conf_t *cf,
    ngx_http_autotls_od_ctx_t *ctx);
static ngx_http_autotls_od_entry_t *ngx_http_autotls_od_find(
    ngx_http_autotls_od_sh_t *sh, const u_char *name, size_t len,
    uint32_t hash, time_t now, ngx_uint_t make);


static ngx_http_autotls_od_ctx_t  *ngx_http_autotls_od_ctx;
static atls_od_t                  *ngx_http_autotls_od_engine;
atls_sched_t                      *ngx_http_autotls_od_sched;


/* ---- setup -------------------------------------------------------------- */

static ngx_uint_t
ngx_http_autotls_od_is_home(ngx_http_core_srv_conf_t *cscf)
{
    ngx_http_autotls_srv_conf_t  *ascf;

    ascf = ngx_http_conf_get_module_srv_conf(cscf, ngx_http_autotls_module);

    return ascf->dynamic == NGX_HTTP_AUTOTLS_ON_DEMAND;
}


ngx_int_t
ngx_http_autotls_od_setup(ngx_conf_t *cf, ngx_http_autotls_main_conf_t *amcf)
{
    char                        err[512];
    size_t                      size;
    atls_od_t                  *od;
    ngx_str_t                   name;
    ngx_uint_t                  s;
    ngx_shm_zone_t             *zone;
    ngx_http_handler_pt        *h;
    ngx_http_core_srv_conf_t  **cscfp;
    ngx_http_core_main_conf_t  *cmcf;
    ngx_http_autotls_od_ctx_t  *ctx;

    ngx_conf_init_msec_value(amcf->od_wait, 10000);
    amcf->od.wait_ms = (long) amcf->od_wait;

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_autotls_od_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    cscfp = cmcf->servers.elts;

    for (s = 0; s < cmcf->servers.nelts; s++) {
        if (ngx_http_autotls_od_is_home(cscfp[s])) {
            ctx->conf.homes++;
        }
    }

    if (ctx->conf.homes == 0) {
        return NGX_OK;
    }

    /* the patterns compile here, so that an error stops the configuration */
    err[0] = '\0';
    od = atls_od_new(&amcf->od, NULL, err, sizeof(err));
    if (od == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "autotls_on_demand_*: %s", err);
        return NGX_ERROR;
    }
    atls_od_free(od);

    if (ngx_http_autotls_od_ports(cf, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&name, "autotls_on_demand");
    size = ngx_align(sizeof(ngx_http_autotls_od_sh_t), ngx_pagesize)
           + 8 * ngx_pagesize;

    zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_autotls_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_http_autotls_od_zone_init;
    zone->data = ctx;

    /* the Host of plain requests, before the server's rewrites */
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_POST_READ_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    *h = ngx_http_autotls_od_host_handler;

    return NGX_OK;
}


/* the ports of ssl addresses an on-demand home listens on */
static ngx_int_t
ngx_http_autotls_od_ports(ngx_conf_t *cf, ngx_http_autotls_od_ctx_t *ctx)
{
    ngx_uint_t                   p, a, s, k, n;
    ngx_http_conf_port_t        *port;
    ngx_http_conf_addr_t        *addr;
    ngx_http_core_srv_conf_t   **cscfp;
    ngx_http_core_main_conf_t   *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    if (cmcf->ports == NULL) {
        return NGX_OK;
    }

    ctx->conf.ports = ngx_pcalloc(cf->pool,
                                  cmcf->ports->nelts * sizeof(in_port_t));
    if (ctx->conf.ports == NULL) {
        return NGX_ERROR;
    }

    port = cmcf->ports->elts;
    n = 0;

    for (p = 0; p < cmcf->ports->nelts; p++) {
        addr = port[p].addrs.elts;

        for (a = 0; a < port[p].addrs.nelts; a++) {
            if (!addr[a].opt.ssl) {
                continue;
            }

            cscfp = addr[a].servers.elts;

            for (s = 0; s < addr[a].servers.nelts; s++) {
                if (!ngx_http_autotls_od_is_home(cscfp[s])) {
                    continue;
                }

                for (k = 0; k < n; k++) {
                    if (ctx->conf.ports[k] == port[p].port) {
                        break;
                    }
                }

                if (k == n) {
                    ctx->conf.ports[n++] = port[p].port;
                }
            }
        }
    }

    ctx->conf.nports = n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_autotls_od_zone_init(ngx_shm_zone_t *zone, void *data)
{
    ngx_http_autotls_od_ctx_t  *octx = data;
    ngx_http_autotls_od_ctx_t  *ctx = zone->data;

    ctx->shpool = (ngx_slab_pool_t *) zone->shm.addr;

    if (octx != NULL) {
        /* a reload: queued names and verdicts stay */
        ctx->sh = octx->sh;

    } else if (zone->shm.exists) {
        ctx->sh = ctx->shpool->data;

    } else {
        ctx->sh = ngx_slab_alloc(ctx->shpool, sizeof(ngx_http_autotls_od_sh_t));
        if (ctx->sh == NULL) {
            return NGX_ERROR;
        }
        ngx_memzero(ctx->sh, sizeof(ngx_http_autotls_od_sh_t));
        ctx->shpool->data = ctx->sh;
    }

    return NGX_OK;
}


/*
 * The cycle's own zone, found in the worker: a static set by the master
 * would outlive a reload that drops every on-demand home.
 */
static ngx_http_autotls_od_ctx_t *
ngx_http_autotls_od_find_zone(ngx_cycle_t *cycle)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_shm_zone_t   *zone;

    part = &cycle->shared_memory.part;
    zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }
            part = part->next;
            zone = part->elts;
            i = 0;
        }

        if (zone[i].tag == &ngx_http_autotls_module
            && zone[i].init == ngx_http_autotls_od_zone_init)
        {
            return zone[i].data;
        }
    }
}


ngx_http_autotls_od_conf_t *
ngx_http_autotls_od_conf(void)
{
    return ngx_http_autotls_od_ctx ? &ngx_http_autotls_od_ctx->conf : NULL;
}


/* ---- the zone: queued names and verdicts -------------------------------- */

/*
 * The entry of name, under the zone's lock.  make: a free or expired slot
 * of its probe window (or the one expiring first) when it has none.
 */
static ngx_http_autotls_od_entry_t *
ngx_http_autotls_od_find(ngx_http_autotls_od_sh_t *sh, const u_char *name,
    size_t len, uint32_t hash, time_t now, ngx_uint_t make)
{
    ngx_uint_t                    i, slot;
    ngx_http_autotls_od_entry_t  *e, *spare;

    spare = NULL;

    for (i = 0; i < NGX_HTTP_AUTOTLS_OD_PROBE; i++) {
        slot = (hash + i) % NGX_HTTP_AUTOTLS_OD_TABLE;
        e = &sh->table[slot];

        if (e->state != NGX_HTTP_AUTOTLS_OD_FREE && e->until <= now) {
            e->state = NGX_HTTP_AUTOTLS_OD_FREE;
        }

        if (e->state != NGX_HTTP_AUTOTLS_OD_FREE && e->hash == hash
            && e->len == len && ngx_memcmp(e->name, name, len) == 0)
        {
            return e;
        }

        /* a free slot first, else the one expiring first */
        if (e->state == NGX_HTTP_AUTOTLS_OD_FREE) {
            if (spare == NULL || spare->state != NGX_HTTP_AUTOTLS_OD_FREE) {
                spare = e;
            }

        } else if (spare == NULL
                   || (spare->state != NGX_HTTP_AUTOTLS_OD_FREE
                       && e->until < spare->until))
        {
            spare = e;
        }
    }

    if (!make) {
        return NULL;
    }

    spare->state = NGX_HTTP_AUTOTLS_OD_FREE;
    spare->hash = hash;
    spare->len = (u_char) len;
    ngx_memcpy(spare->name, name, len);

    return spare;
}


ngx_http_autotls_od_want_e
ngx_http_autotls_od_want(const u_char *name, size_t len, ngx_str_t *home)
{
    time_t                        now;
    uint32_t                      hash;
    ngx_http_autotls_od_sh_t     *sh;
    ngx_http_autotls_od_entry_t  *e;
    ngx_http_autotls_od_want_e    want;

    if (ngx_http_autotls_od_ctx == NULL || len == 0
        || len > NGX_HTTP_AUTOTLS_NAME_MAX
        || home->len > NGX_HTTP_AUTOTLS_OD_HOME_MAX)
    {
        return NGX_HTTP_AUTOTLS_OD_GO;
    }

    sh = ngx_http_autotls_od_ctx->sh;
    now = ngx_time();
    hash = ngx_crc32_short((u_char *) name, len);
    want = NGX_HTTP_AUTOTLS_OD_WAIT;

    ngx_shmtx_lock(&ngx_http_autotls_od_ctx->shpool->mutex);

    e = ngx_http_autotls_od_find(sh, name, len, hash, now, 0);

    if (e != NULL) {
        if (e->state == NGX_HTTP_AUTOTLS_OD_DENIED
            || e->state == NGX_HTTP_AUTOTLS_OD_LIMITED)
        {
            want = NGX_HTTP_AUTOTLS_OD_GO;
        }

    } else if (sh->count == NGX_HTTP_AUTOTLS_OD_RING) {
        /* a flood fills the ring: the rest go on without waiting */
        want = NGX_HTTP_AUTOTLS_OD_GO;

    } else {
        e = ngx_http_autotls_od_find(sh, name, len, hash, now, 1);
        e->state = NGX_HTTP_AUTOTLS_OD_QUEUED;
        e->until = now + NGX_HTTP_AUTOTLS_OD_QUEUED_S;
        e->home_len = (u_char) home->len;
        ngx_memcpy(e->home, home->data, home->len);

        sh->ring[(sh->head + sh->count) % NGX_HTTP_AUTOTLS_OD_RING] =
            (uint32_t) (e - sh->table);
        sh->count++;
    }

    ngx_shmtx_unlock(&ngx_http_autotls_od_ctx->shpool->mutex);

    return want;
}


/* the gate refused name and the refusal holds */
ngx_uint_t
ngx_http_autotls_od_refused(const u_char *name, size_t len)
{
    ngx_uint_t                    refused;
    ngx_http_autotls_od_entry_t  *e;

    if (ngx_http_autotls_od_ctx == NULL) {
        return 0;
    }

    ngx_shmtx_lock(&ngx_http_autotls_od_ctx->shpool->mutex);

    e = ngx_http_autotls_od_find(ngx_http_autotls_od_ctx->sh, name, len,
                                 ngx_crc32_short((u_char *) name, len),
                                 ngx_time(), 0);
    refused = e != NULL && (e->state == NGX_HTTP_AUTOTLS_OD_DENIED
                            || e->state == NGX_HTTP_AUTOTLS_OD_LIMITED);

    ngx_shmtx_unlock(&ngx_http_autotls_od_ctx->shpool->mutex);

    return refused;
}


/*
 * The zone's mirror of the registry says SERVING: for a name this gate
 * let in a moment ago (queued, asked or allowed, within its hold), the
 * store must also hold its certificate (atls_store_has_cert), since
 * SERVING is also what a name the driver has not verified yet reads as.
 * Any other name: the mirror is trusted, with no store access.
 */
ngx_uint_t
ngx_http_autotls_od_served(const u_char *name, size_t len)
{
    char                          id[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    ngx_uint_t                    recent;
    ngx_http_autotls_od_entry_t  *e;

    if (ngx_http_autotls_dyn_state(name, len) != NGX_HTTP_AUTOTLS_DYN_SERVING) {
        return 0;
    }

    if (ngx_http_autotls_od_ctx == NULL || ngx_http_autotls_store == NULL) {
        return 1;
    }

    ngx_shmtx_lock(&ngx_http_autotls_od_ctx->shpool->mutex);

    e = ngx_http_autotls_od_find(ngx_http_autotls_od_ctx->sh, name, len,
                                 ngx_crc32_short((u_char *) name, len),
                                 ngx_time(), 0);
    recent = e != NULL && e->state != NGX_HTTP_AUTOTLS_OD_DENIED
             && e->state != NGX_HTTP_AUTOTLS_OD_LIMITED;

    ngx_shmtx_unlock(&ngx_http_autotls_od_ctx->shpool->mutex);

    if (!recent) {
        return 1;
    }

    /* a checked dynamic name is its own certificate id */
    ngx_memcpy(id, name, len);
    id[len] = '\0';

    return atls_store_has_cert(ngx_http_autotls_store, id) ? 1 : 0;
}


void
ngx_http_autotls_od_parked(ngx_int_t delta)
{
    if (ngx_http_autotls_od_ctx != NULL) {
        (void) ngx_atomic_fetch_add(
                   &ngx_http_autotls_od_ctx->sh->parked[ngx_process_slot].n,
                   delta);
    }
}


/* one name taken from the ring into name/home (NUL-terminated); 0: empty */
static ngx_uint_t
ngx_http_autotls_od_take(u_char *name, size_t *len, u_char *home)
{
    ngx_uint_t                    got;
    ngx_http_autotls_od_sh_t     *sh = ngx_http_autotls_od_ctx->sh;
    ngx_http_autotls_od_entry_t  *e;

    got = 0;

    ngx_shmtx_lock(&ngx_http_autotls_od_ctx->shpool->mutex);

    while (sh->count > 0 && !got) {
        e = &sh->table[sh->ring[sh->head]];
        sh->head = (sh->head + 1) % NGX_HTTP_AUTOTLS_OD_RING;
        sh->count--;

        /* an entry replaced meanwhile is skipped */
        if (e->state != NGX_HTTP_AUTOTLS_OD_QUEUED) {
            continue;
        }

        e->state = NGX_HTTP_AUTOTLS_OD_ASKED;
        e->until = ngx_time() + NGX_HTTP_AUTOTLS_OD_QUEUED_S;
        ngx_memcpy(name, e->name, e->len);
        name[e->len] = '\0';
        *len = e->len;
        ngx_memcpy(home, e->home, e->home_len);
        home[e->home_len] = '\0';
        got = 1;
    }

    ngx_shmtx_unlock(&ngx_http_autotls_od_ctx->shpool->mutex);

    return got;
}


void
ngx_http_autotls_od_drain(atls_sched_t *sched)
{
    size_t  len;
    u_char  name[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    u_char  home[NGX_HTTP_AUTOTLS_OD_HOME_MAX + 1];

    if (ngx_http_autotls_od_ctx == NULL || sched == NULL) {
        return;
    }

    /* the gate answers most names from its cache at once; an ask or an
     * order goes on in the background */
    while (ngx_http_autotls_od_take(name, &len, home)) {
        atls_sched_on_demand(sched, (char *) name, len, (char *) home);
    }
}


/* atls_sched_host_t.on_demand */
void
ngx_http_autotls_od_verdict(void *ctx, const char *name, int verdict,
    const char *why)
{
    size_t                        len;
    time_t                        now, hold;
    ngx_uint_t                    level;
    ngx_http_autotls_od_entry_t  *e;
    ngx_http_autotls_od_state_e   state;

    /* the scheduler logs what it ordered and the limits it hit */
    switch (verdict) {
    case ATLS_OD_ALLOW:
        state = NGX_HTTP_AUTOTLS_OD_ALLOWED;
        level = NGX_LOG_DEBUG;
        break;
    case ATLS_OD_LIMITED:
        state = NGX_HTTP_AUTOTLS_OD_LIMITED;
        level = NGX_LOG_DEBUG;
        break;
    default:
        state = NGX_HTTP_AUTOTLS_OD_DENIED;
        level = NGX_LOG_INFO;
        break;
    }

    ngx_log_error(level, ngx_cycle->log, 0,
                  "autotls: on-demand name \"%s\" %s: %s", name,
                  atls_od_verdict_name((atls_od_verdict_t) verdict),
                  why ? why : "");

    len = ngx_strlen(name);

    if (ngx_http_autotls_od_ctx == NULL || len == 0
        || len > NGX_HTTP_AUTOTLS_NAME_MAX)
    {
        return;
    }

    now = ngx_time();

    /* a refusal holds until the gate would look again; an allowed name
     * until the registry shows it */
    hold = ngx_http_autotls_mcf->od.ask_fail_cache_s > 0
           ? ngx_http_autotls_mcf->od.ask_fail_cache_s : 30;
    if (state == NGX_HTTP_AUTOTLS_OD_ALLOWED) {
        hold = NGX_HTTP_AUTOTLS_OD_QUEUED_S;
    }

    ngx_shmtx_lock(&ngx_http_autotls_od_ctx->shpool->mutex);

    e = ngx_http_autotls_od_find(ngx_http_autotls_od_ctx->sh, (u_char *) name,
                                 len, ngx_crc32_short((u_char *) name, len),
                                 now, 1);
    if (e->state == NGX_HTTP_AUTOTLS_OD_FREE) {
        e->home_len = 0;
    }
    e->state = (u_char) state;
    e->until = now + hold;

    ngx_shmtx_unlock(&ngx_http_autotls_od_ctx->shpool->mutex);
}


/* ---- the driver's gate -------------------------------------------------- */

/*
 * The driver's gate, over the store its scheduler runs on: the budget
 * windows are kept there, so on a cluster node they are Redis's and every
 * node counts against the same ones (the CA's limits are per account and
 * per domain, whoever orders).  A driver that lost its mirror and opened
 * another gets a new gate: the old one's store went with the mirror.
 */
atls_od_t *
ngx_http_autotls_od_gate(void)
{
    char           err[512];
    atls_store_t  *st;

    static atls_store_t  *gate_store;

    if (ngx_http_autotls_od_ctx == NULL || ngx_http_autotls_od_ctx->conf.homes == 0)
    {
        return NULL;
    }

    st = ngx_http_autotls_cluster_store();
    if (st == NULL) {
        st = ngx_http_autotls_store;
    }

    if (ngx_http_autotls_od_engine != NULL && gate_store != st) {
        atls_od_free(ngx_http_autotls_od_engine);
        ngx_http_autotls_od_engine = NULL;
    }

    if (ngx_http_autotls_od_engine == NULL) {
        err[0] = '\0';
        gate_store = st;
        ngx_http_autotls_od_engine = atls_od_new(&ngx_http_autotls_mcf->od, st,
                                                 err, sizeof(err));
        if (ngx_http_autotls_od_engine == NULL) {
            /* compiled at configuration time: a file vanished since */
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "autotls: on-demand gate: %s; every name is "
                          "denied", err);
        }
    }

    return ngx_http_autotls_od_engine;
}


void
ngx_http_autotls_od_driver(atls_sched_t *sched)
{
    ngx_http_autotls_od_sched = sched;
}


/* ---- status ------------------------------------------------------------- */

ngx_int_t
ngx_http_autotls_od_status(atls_status_extra_t *x)
{
    static atls_status_gauge_t    g[4];
    time_t                        now;
    ngx_uint_t                    i, pending, denied, limited;
    ngx_http_autotls_od_sh_t     *sh;
    ngx_http_autotls_od_entry_t  *e;

    if (ngx_http_autotls_od_ctx == NULL) {
        return NGX_DECLINED;
    }

    sh = ngx_http_autotls_od_ctx->sh;
    now = ngx_time();
    pending = denied = limited = 0;

    ngx_shmtx_lock(&ngx_http_autotls_od_ctx->shpool->mutex);

    for (i = 0; i < NGX_HTTP_AUTOTLS_OD_TABLE; i++) {
        e = &sh->table[i];

        if (e->state == NGX_HTTP_AUTOTLS_OD_FREE || e->until <= now) {
            continue;
        }

        switch (e->state) {
        case NGX_HTTP_AUTOTLS_OD_DENIED:
            denied++;
            break;
        case NGX_HTTP_AUTOTLS_OD_LIMITED:
            limited++;
            break;
        default:
            pending++;
        }
    }

    ngx_shmtx_unlock(&ngx_http_autotls_od_ctx->shpool->mutex);

    g[0].name = "pending";
    g[0].value = (long long) pending;
    g[1].name = "denied";
    g[1].value = (long long) denied;
    g[2].name = "limited";
    g[2].value = (long long) limited;
    g[3].name = "parked";
    g[3].value = 0;

    for (i = 0; i < NGX_MAX_PROCESSES; i++) {
        if (sh->parked[i].pid != 0
            && (kill(sh->parked[i].pid, 0) == 0 || ngx_errno == NGX_EPERM))
        {
            g[3].value += (long long) sh->parked[i].n;
        }
    }

    x->section = "on_demand";
    x->help = "On-demand names: queued or ordering, refused (denied, "
              "limited) within their hold, first handshakes parked.";
    x->gauges = g;
    x->n = 4;

    return NGX_OK;
}


/* ---- the worker --------------------------------------------------------- */

ngx_int_t
ngx_http_autotls_od_init_worker(ngx_cycle_t *cycle)
{
    ngx_http_autotls_od_ctx = ngx_http_autotls_od_find_zone(cycle);

    if (ngx_http_autotls_od_ctx != NULL) {
        /* this slot's count was a dead worker's, if anyone's */
        ngx_http_autotls_od_ctx->sh->parked[ngx_process_slot].n = 0;
        ngx_http_autotls_od_ctx->sh->parked[ngx_process_slot].pid = ngx_pid;
    }

    return ngx_http_autotls_od_wrap(cycle);
}


void
ngx_http_autotls_od_exit_worker(void)
{
    ngx_http_autotls_od_unwrap();

    ngx_http_autotls_od_sched = NULL;

    atls_od_free(ngx_http_autotls_od_engine);
    ngx_http_autotls_od_engine = NULL;
    ngx_http_autotls_od_ctx = NULL;
}
