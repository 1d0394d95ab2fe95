/*
 * autotls for nginx: module tables, the configuration's create/merge and
 * postconfiguration, and the helpers for timers and library-owned sockets.
 * The process hooks (init_module, init_process, exit_process) are in
 * ngx_http_autotls_process.c.
 *
 * The master parses the configuration, creates the store for the worker
 * user and the shared zone; every worker serves certificates and answers
 * challenges; one elected worker drives issuance and renewal (on a
 * cluster node the cache manager process: ngx_http_autotls_helper.c).
 */

#include "ngx_http_autotls_module.h"

#include <sys/stat.h>


static void *ngx_http_autotls_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_autotls_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_autotls_create_srv_conf(ngx_conf_t *cf);
static char *ngx_http_autotls_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child);
static void *ngx_http_autotls_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_autotls_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_autotls_postconfiguration(ngx_conf_t *cf);
static void ngx_http_autotls_cleanup_main(void *data);


ngx_http_autotls_main_conf_t  *ngx_http_autotls_mcf;
atls_store_t                  *ngx_http_autotls_store;
ngx_connection_t               ngx_http_autotls_timer_conn;


static ngx_command_t  ngx_http_autotls_commands[] = {

    { ngx_string("autotls_issuer"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_http_autotls_issuer_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_store"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_autotls_store_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_check_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_autotls_main_conf_t, check_interval),
      NULL },

    { ngx_string("autotls_max_parallel"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_autotls_main_conf_t, max_parallel),
      NULL },

    { ngx_string("autotls_preload"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_autotls_main_conf_t, preload),
      NULL },

    { ngx_string("autotls_shared_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_autotls_main_conf_t, shm_size),
      NULL },

    { ngx_string("autotls_warn"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_autotls_warn,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_notify_exec"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_autotls_notify_exec,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_notify_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_autotls_main_conf_t, notify_timeout),
      NULL },

    { ngx_string("autotls_notify_webhook"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_autotls_notify_webhook,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_notify_queue"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_autotls_main_conf_t, notify_queue),
      NULL },

    { ngx_string("autotls_policy"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_NOARGS,
      ngx_http_autotls_policy_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_on_demand_allow"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_autotls_od_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_on_demand_deny"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_autotls_od_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_on_demand_allow_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_autotls_od_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_on_demand_ask"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_autotls_od_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_on_demand_limits"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_autotls_od_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_on_demand_ip"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_autotls_od_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_on_demand_max_labels"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_autotls_od_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_on_demand_wait"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_autotls_od_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls"),
      NGX_HTTP_SRV_CONF|NGX_CONF_1MORE,
      ngx_http_autotls_directive,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_dynamic_unknown"),
      NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_http_autotls_dynamic_unknown,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_autotls_cache_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_autotls_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_api_token"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_autotls_api_token,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("autotls_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_autotls_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_autotls_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_autotls_postconfiguration,    /* postconfiguration */

    ngx_http_autotls_create_main_conf,     /* create main configuration */
    ngx_http_autotls_init_main_conf,       /* init main configuration */

    ngx_http_autotls_create_srv_conf,      /* create server configuration */
    ngx_http_autotls_merge_srv_conf,       /* merge server configuration */

    ngx_http_autotls_create_loc_conf,      /* create location configuration */
    ngx_http_autotls_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_http_autotls_module = {
    NGX_MODULE_V1,
    &ngx_http_autotls_module_ctx,          /* module context */
    ngx_http_autotls_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_autotls_init_module,          /* init module */
    ngx_http_autotls_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_autotls_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_autotls_create_main_conf(ngx_conf_t *cf)
{
    ngx_pool_cleanup_t            *cln;
    ngx_http_autotls_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_autotls_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&amcf->issuers, cf->pool, 2,
                       sizeof(ngx_http_autotls_issuer_t))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&amcf->certs, cf->pool, 4,
                       sizeof(ngx_http_autotls_cert_t *))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&amcf->homes, cf->pool, 1,
                       sizeof(ngx_http_autotls_srv_conf_t *))
        != NGX_OK)
    {
        return NULL;
    }

    amcf->check_interval = NGX_CONF_UNSET_MSEC;
    amcf->cache_max = NGX_CONF_UNSET_UINT;
    amcf->shm_size = NGX_CONF_UNSET_SIZE;
    amcf->max_parallel = NGX_CONF_UNSET_UINT;
    amcf->preload = NGX_CONF_UNSET;
    amcf->notify_timeout = NGX_CONF_UNSET;
    amcf->notify_queue = NGX_CONF_UNSET_UINT;
    amcf->od_wait = NGX_CONF_UNSET_MSEC;

    /* issuer and certificate members are malloc'd by the core's helpers */
    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_autotls_cleanup_main;
    cln->data = amcf;

    return amcf;
}


static char *
ngx_http_autotls_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_autotls_main_conf_t  *amcf = conf;

    amcf->store_set = (amcf->store.len != 0);

    if (amcf->store.len == 0) {
        ngx_str_set(&amcf->store, NGX_HTTP_AUTOTLS_DEFAULT_STORE);
    }

    if (amcf->store.data[amcf->store.len] != '\0') {
        /* the core wants C strings; conf strings are NUL-terminated in
         * practice but make it certain */
        u_char  *p = ngx_pnalloc(cf->pool, amcf->store.len + 1);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }
        ngx_memcpy(p, amcf->store.data, amcf->store.len);
        p[amcf->store.len] = '\0';
        amcf->store.data = p;
    }

    ngx_conf_init_msec_value(amcf->check_interval, 60000);

    if (amcf->check_interval < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"autotls_check_interval\" must be at least 1s");
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_uint_value(amcf->max_parallel, 8);

    if (amcf->max_parallel < 1 || amcf->max_parallel > ATLS_MAX_PARALLEL_LIMIT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"autotls_max_parallel\" must be between "
                           "1 and %d", ATLS_MAX_PARALLEL_LIMIT);
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_value(amcf->preload, 1);

    /* autotls_cache: unbounded unless given */
    ngx_conf_init_uint_value(amcf->cache_max, 0);

    /* unset: sized from the certificates and names at postconfiguration */
    if (amcf->shm_size != NGX_CONF_UNSET_SIZE
        && amcf->shm_size < 8 * ngx_pagesize)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"autotls_shared_zone\" is too small, "
                           "at least %uz bytes are needed", 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    return ngx_http_autotls_notify_init(cf, amcf);
}


static void
ngx_http_autotls_cleanup_main(void *data)
{
    ngx_http_autotls_main_conf_t  *amcf = data;

    ngx_uint_t                  i;
    ngx_http_autotls_cert_t   **certs;
    ngx_http_autotls_issuer_t  *iss;

    iss = amcf->issuers.elts;
    for (i = 0; i < amcf->issuers.nelts; i++) {
        atls_issuer_free(&iss[i].is);
    }

    certs = amcf->certs.elts;
    for (i = 0; i < amcf->certs.nelts; i++) {
        free(certs[i]->id);
        certs[i]->id = NULL;
    }

    if (amcf->challenge_ctx) {
        SSL_CTX_free(amcf->challenge_ctx);
        amcf->challenge_ctx = NULL;
    }

    atls_notify_conf_free(&amcf->notify);
    atls_od_conf_free(&amcf->od);

    atls_policy_free(amcf->policy);
    amcf->policy = NULL;

    atls_inventory_items_free(amcf->inventory, amcf->n_inventory);
    amcf->inventory = NULL;
    amcf->n_inventory = 0;
}


static void *
ngx_http_autotls_create_srv_conf(ngx_conf_t *cf)
{
    ngx_http_autotls_srv_conf_t  *ascf;

    /* set by ngx_pcalloc(): issuer, names, cert, home, file, line,
     * dynamic (NGX_HTTP_AUTOTLS_STATIC) */
    ascf = ngx_pcalloc(cf->pool, sizeof(ngx_http_autotls_srv_conf_t));
    if (ascf == NULL) {
        return NULL;
    }

    ascf->unknown = NGX_CONF_UNSET_UINT;

    return ascf;
}


static char *
ngx_http_autotls_merge_srv_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_autotls_srv_conf_t  *conf = child;

    /* autotls is per server: nothing is inherited from http{} */
    if (conf->unknown == NGX_CONF_UNSET_UINT) {
        conf->unknown = NGX_HTTP_AUTOTLS_UNKNOWN_FALLBACK;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_autotls_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_autotls_loc_conf_t  *alcf;

    alcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_autotls_loc_conf_t));
    if (alcf == NULL) {
        return NULL;
    }

    /* set by ngx_pcalloc(): api_token */
    alcf->status = NGX_CONF_UNSET;
    alcf->api = NGX_CONF_UNSET;

    return alcf;
}


static char *
ngx_http_autotls_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_autotls_loc_conf_t  *prev = parent;
    ngx_http_autotls_loc_conf_t  *conf = child;

    ngx_conf_merge_value(conf->status, prev->status, 0);
    ngx_conf_merge_value(conf->api, prev->api, 0);
    ngx_conf_merge_str_value(conf->api_token, prev->api_token, "");

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_autotls_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt           *h;
    ngx_http_core_main_conf_t     *cmcf;
    ngx_http_autotls_main_conf_t  *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_autotls_module);

    ngx_http_autotls_log_install(cf->log);

    if (ngx_http_autotls_resolve(cf, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_autotls_policy_check(cf, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the certificates nginx serves that autotls does not manage */
    if (ngx_http_autotls_discover(cf, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!ngx_http_autotls_in_use(amcf)) {
        return NGX_OK;
    }

    if (ngx_http_autotls_zone_size(cf, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the driver lock: even with static certificates alone, one worker
     * writes their inventory and sends their expiry events */
    if (ngx_http_autotls_shm_add(cf, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_autotls_od_setup(cf, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_autotls_api_setup(cf, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (amcf->certs.nelts == 0 && amcf->homes.nelts == 0) {
        return NGX_OK;
    }

    if (ngx_http_autotls_ssl_setup(cf, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * POST_READ runs before the server's rewrite phase, so a server whose
     * only job is "return 301 https://..." still answers http-01.
     */
    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_POST_READ_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_autotls_challenge_handler;

    return NGX_OK;
}


/* ---- helpers for the worker's timer events ------------------------------ */

void
ngx_http_autotls_event_init(ngx_event_t *ev, ngx_event_handler_pt handler,
    ngx_log_t *log)
{
    ngx_memzero(ev, sizeof(ngx_event_t));
    ev->handler = handler;
    ev->log = log;
    /* nginx's debug log reads ev->data as a connection (its fd) */
    ngx_http_autotls_timer_conn.fd = (ngx_socket_t) -1;
    ev->data = &ngx_http_autotls_timer_conn;
    /* none of our timers may keep an exiting worker alive */
    ev->cancelable = 1;
}


ngx_msec_t
ngx_http_autotls_msec(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (ngx_msec_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/* at most autotls_max_parallel transfers or hook runs: a list will do */
ngx_http_autotls_op_t *
ngx_http_autotls_op_find(ngx_queue_t *ops, atls_sched_op_t *op)
{
    ngx_queue_t            *q;
    ngx_http_autotls_op_t  *o;

    for (q = ngx_queue_head(ops);
         q != ngx_queue_sentinel(ops);
         q = ngx_queue_next(q))
    {
        o = ngx_queue_data(q, ngx_http_autotls_op_t, queue);

        if (o->op == op) {
            return o;
        }
    }

    return NULL;
}


/* ---- sockets a library owns (curl's, the Redis client's) ---------------- */

/* what tells the socket from a later one that gets the same number */
uintptr_t
ngx_http_autotls_socket_ino(ngx_socket_t fd)
{
    struct stat  st;

    return fstat(fd, &st) == 0 ? (uintptr_t) st.st_ino : 0;
}


/* level-triggered (flags 0): the library asks again what it waits for */
ngx_int_t
ngx_http_autotls_socket_want(ngx_event_t *ev, ngx_int_t event, ngx_uint_t want)
{
    if (want) {
        if (!ev->active && ngx_add_event(ev, event, 0) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (ev->active) {
        ngx_del_event(ev, event, 0);
    }

    return NGX_OK;
}


/*
 * The library may close a socket before it says so (curl 7.88 with one
 * that failed to connect in time; the Redis client when a connection
 * fails), and epoll cannot remove a closed descriptor, nor must it remove
 * a new socket that got the same number: the events are deleted only when
 * the descriptor still is the socket they were added for (ino).  A closed
 * one left epoll by itself.  The library closes the socket.
 */
void
ngx_http_autotls_socket_free(ngx_connection_t *c, uintptr_t ino)
{
    ngx_uint_t  flags;

    flags = (ngx_http_autotls_socket_ino(c->fd) != ino) ? NGX_CLOSE_EVENT : 0;

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, flags);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, flags);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}
