/*
 * autotls for nginx: first handshakes that wait for their certificate.
 *
 * Stock nginx cannot suspend a handshake inside OpenSSL's callbacks, so
 * the connection is held before OpenSSL sees it: the handler of every
 * listener that leads to an on-demand home is wrapped.  The wrapper peeks
 * the ClientHello (MSG_PEEK: nothing is consumed), reads its server name
 * (atls_tls_sni.h), and for a name an on-demand home would get but has no
 * certificate for, queues it for the driver and parks the connection.  A
 * per-worker timer looks at parked connections every
 * NGX_HTTP_AUTOTLS_OD_PARK_MS and hands each to nginx's own handler,
 * unchanged, once its certificate is served, the gate refused it, or
 * autotls_on_demand_wait passed (the fallback is served then; the order
 * goes on).  Everything else is handed over at once: no server name, a
 * name configured or with a certificate, a name that reaches another
 * server, a name that is not a valid hostname, more held connections than
 * the bound, a ClientHello not complete within
 * NGX_HTTP_AUTOTLS_OD_PEEK_MS.  A client that closes while parked is
 * handed over too, and nginx closes it as it closes any.
 *
 * Plain requests on an on-demand home queue the name of their Host the
 * same way (they are not held: the redirect to https that follows lands
 * on a parked handshake, which waits for the certificate).
 */

#include "ngx_http_autotls_ondemand.h"
#include "atls_tls_sni.h"


#define NGX_HTTP_AUTOTLS_OD_PEEK_MS  5000

typedef struct {
    ngx_listening_t                *ls;
    ngx_connection_handler_pt       handler;
} ngx_http_autotls_od_wrap_t;

typedef struct {
    ngx_queue_t                     queue;
    ngx_connection_t               *c;
    ngx_connection_handler_pt       handler;
    ngx_http_addr_conf_t           *addr_conf;
    ngx_msec_t                      deadline;
    size_t                          len;
    u_char                          name[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    unsigned                        parked:1;
} ngx_http_autotls_od_conn_t;

typedef struct {
    ngx_http_autotls_od_wrap_t     *wraps;
    ngx_uint_t                      nwraps;
    ngx_queue_t                     parked;
    ngx_uint_t                      held;      /* peeking or parked */
    ngx_event_t                     tick;
    u_char                         *peek;      /* ATLS_SNI_MAX_PEEK */
    u_char                         *scratch;   /* ATLS_SNI_MAX_HELLO */
    unsigned                        active:1;
} ngx_http_autotls_od_worker_t;


static void ngx_http_autotls_od_accept(ngx_connection_t *c);
static ngx_http_addr_conf_t *ngx_http_autotls_od_addr_conf(
    ngx_connection_t *c);
static void ngx_http_autotls_od_peek(ngx_event_t *rev);
static void ngx_http_autotls_od_decide(ngx_http_autotls_od_conn_t *oc,
    const u_char *raw, size_t len);
static void ngx_http_autotls_od_park(ngx_http_autotls_od_conn_t *oc);
static void ngx_http_autotls_od_watch(ngx_event_t *rev);
static void ngx_http_autotls_od_tick(ngx_event_t *ev);
static void ngx_http_autotls_od_go(ngx_http_autotls_od_conn_t *oc);


static ngx_http_autotls_od_worker_t  ngx_http_autotls_od_w;


/* ---- the wrapper -------------------------------------------------------- */

ngx_int_t
ngx_http_autotls_od_wrap(ngx_cycle_t *cycle)
{
    in_port_t                      port;
    ngx_uint_t                     i, k;
    ngx_listening_t               *ls;
    ngx_http_autotls_od_conf_t    *conf;
    ngx_http_autotls_od_worker_t  *w = &ngx_http_autotls_od_w;

    conf = ngx_http_autotls_od_conf();
    if (conf == NULL || conf->homes == 0) {
        return NGX_OK;
    }

    w->wraps = ngx_pcalloc(cycle->pool, (cycle->listening.nelts + 1)
                                        * sizeof(ngx_http_autotls_od_wrap_t));
    w->peek = ngx_palloc(cycle->pool, ATLS_SNI_MAX_PEEK);
    w->scratch = ngx_palloc(cycle->pool, ATLS_SNI_MAX_HELLO);
    if (w->wraps == NULL || w->peek == NULL || w->scratch == NULL) {
        return NGX_ERROR;
    }

    ls = cycle->listening.elts;

    for (i = 0; i < cycle->listening.nelts; i++) {
        if (ls[i].handler != ngx_http_init_connection) {
            continue;
        }

        port = ngx_inet_get_port(ls[i].sockaddr);

        for (k = 0; k < conf->nports; k++) {
            if (conf->ports[k] == port) {
                break;
            }
        }

        if (k == conf->nports) {
            continue;
        }

        w->wraps[w->nwraps].ls = &ls[i];
        w->wraps[w->nwraps].handler = ls[i].handler;
        w->nwraps++;
        ls[i].handler = ngx_http_autotls_od_accept;
    }

    ngx_queue_init(&w->parked);

    /* also how often the driver drains the names workers queued */
    ngx_http_autotls_event_init(&w->tick, ngx_http_autotls_od_tick,
                                cycle->log);
    ngx_add_timer(&w->tick, NGX_HTTP_AUTOTLS_OD_PARK_MS);
    w->active = 1;

    return NGX_OK;
}


void
ngx_http_autotls_od_unwrap(void)
{
    ngx_http_autotls_od_worker_t  *w = &ngx_http_autotls_od_w;

    if (!w->active) {
        return;
    }

    if (w->tick.timer_set) {
        ngx_del_timer(&w->tick);
    }

    w->active = 0;
}


static void
ngx_http_autotls_od_accept(ngx_connection_t *c)
{
    ngx_uint_t                     i;
    ngx_connection_handler_pt      handler;
    ngx_http_autotls_od_conn_t    *oc;
    ngx_http_autotls_od_worker_t  *w = &ngx_http_autotls_od_w;

    handler = ngx_http_init_connection;

    for (i = 0; i < w->nwraps; i++) {
        if (w->wraps[i].ls == c->listening) {
            handler = w->wraps[i].handler;
            break;
        }
    }

    if (w->held >= NGX_HTTP_AUTOTLS_OD_MAX_PARKED || ngx_exiting) {
        handler(c);
        return;
    }

    oc = ngx_pcalloc(c->pool, sizeof(ngx_http_autotls_od_conn_t));
    if (oc == NULL) {
        handler(c);
        return;
    }

    oc->c = c;
    oc->handler = handler;
    oc->addr_conf = ngx_http_autotls_od_addr_conf(c);

    if (oc->addr_conf == NULL || !oc->addr_conf->ssl
        || oc->addr_conf->proxy_protocol)
    {
        handler(c);
        return;
    }

    w->held++;
    c->data = oc;
    c->read->handler = ngx_http_autotls_od_peek;
    c->write->handler = ngx_http_empty_handler;
    c->log->action = "reading the server name of an on-demand handshake";

    ngx_add_timer(c->read, NGX_HTTP_AUTOTLS_OD_PEEK_MS);

    if (c->read->ready) {
        ngx_http_autotls_od_peek(c->read);
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_autotls_od_go(oc);
    }
}


/* the address's configuration, found as ngx_http_init_connection does */
static ngx_http_addr_conf_t *
ngx_http_autotls_od_addr_conf(ngx_connection_t *c)
{
    ngx_uint_t            i;
    ngx_http_port_t      *port;
    struct sockaddr_in   *sin;
    ngx_http_in_addr_t   *addr;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6  *sin6;
    ngx_http_in6_addr_t  *addr6;
#endif

    port = c->listening->servers;

    if (port == NULL || port->naddrs == 0) {
        return NULL;
    }

    if (port->naddrs > 1
        && ngx_connection_local_sockaddr(c, NULL, 0) != NGX_OK)
    {
        return NULL;
    }

    switch (c->local_sockaddr->sa_family) {

#if (NGX_HAVE_INET6)
    case AF_INET6:
        addr6 = port->addrs;
        sin6 = (struct sockaddr_in6 *) c->local_sockaddr;

        for (i = 0; i < port->naddrs - 1; i++) {
            if (ngx_memcmp(&addr6[i].addr6, &sin6->sin6_addr, 16) == 0) {
                break;
            }
        }

        return &addr6[port->naddrs > 1 ? i : 0].conf;
#endif

#if (NGX_HAVE_UNIX_DOMAIN)
    case AF_UNIX:
        return NULL;
#endif

    default:
        addr = port->addrs;
        sin = (struct sockaddr_in *) c->local_sockaddr;

        for (i = 0; i < port->naddrs - 1; i++) {
            if (addr[i].addr == sin->sin_addr.s_addr) {
                break;
            }
        }

        return &addr[port->naddrs > 1 ? i : 0].conf;
    }
}


/* ---- the ClientHello ---------------------------------------------------- */

static void
ngx_http_autotls_od_peek(ngx_event_t *rev)
{
    ssize_t                        n;
    size_t                         len;
    ngx_err_t                      err;
    const u_char                  *name;
    atls_sni_result_t              rc;
    ngx_connection_t              *c = rev->data;
    ngx_http_autotls_od_conn_t    *oc = c->data;
    ngx_http_autotls_od_worker_t  *w = &ngx_http_autotls_od_w;

    if (rev->timedout) {
        /* nginx's own timeouts take it from here */
        rev->timedout = 0;
        ngx_http_autotls_od_go(oc);
        return;
    }

    n = recv(c->fd, (char *) w->peek, ATLS_SNI_MAX_PEEK, MSG_PEEK);
    err = ngx_socket_errno;

    if (n == -1 && err == NGX_EAGAIN) {
        rev->ready = 0;
        if (ngx_handle_read_event(rev, 0) != NGX_OK) {
            ngx_http_autotls_od_go(oc);
        }
        return;
    }

    if (n <= 0) {
        /* closed or failed: nginx sees it and closes the connection */
        ngx_http_autotls_od_go(oc);
        return;
    }

    rc = atls_tls_sni(w->peek, (size_t) n, w->scratch, &name, &len);

    if (rc == ATLS_SNI_MORE && (size_t) n < ATLS_SNI_MAX_PEEK) {
        /* the rest of the ClientHello raises a new read event */
        rev->ready = 0;
        if (ngx_handle_read_event(rev, 0) != NGX_OK) {
            ngx_http_autotls_od_go(oc);
        }
        return;
    }

    if (rc != ATLS_SNI_FOUND) {
        ngx_http_autotls_od_go(oc);
        return;
    }

    ngx_http_autotls_od_decide(oc, name, len);
}


static void
ngx_http_autotls_od_decide(ngx_http_autotls_od_conn_t *oc, const u_char *raw,
    size_t len)
{
    char                           why[128];
    char                           name[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    ngx_http_autotls_srv_conf_t   *ascf;
    ngx_http_autotls_dyn_state_e   state;
    ngx_http_autotls_main_conf_t  *amcf = ngx_http_autotls_mcf;

    if (amcf == NULL
        || atls_name_check((const char *) raw, len, amcf->od.allow_ip,
                           amcf->od.max_labels, name, sizeof(name),
                           why, sizeof(why))
           != 0)
    {
        ngx_http_autotls_od_go(oc);
        return;
    }

    oc->len = ngx_strlen(name);
    ngx_memcpy(oc->name, name, oc->len + 1);

    ascf = ngx_http_autotls_od_home(oc->addr_conf, oc->name, oc->len);
    if (ascf == NULL || amcf->od_wait == 0) {
        if (ascf != NULL) {
            (void) ngx_http_autotls_od_want(oc->name, oc->len, &ascf->issuer);
        }
        ngx_http_autotls_od_go(oc);
        return;
    }

    state = ngx_http_autotls_dyn_state(oc->name, oc->len);

    if (state == NGX_HTTP_AUTOTLS_DYN_SERVING
        && !ngx_http_autotls_od_served(oc->name, oc->len))
    {
        /* registered a moment ago, its first order still running */
        state = NGX_HTTP_AUTOTLS_DYN_PENDING;
    }

    switch (state) {

    case NGX_HTTP_AUTOTLS_DYN_PENDING:
        /* registered, its order on the way */
        ngx_http_autotls_od_park(oc);
        return;

    case NGX_HTTP_AUTOTLS_DYN_UNKNOWN:
        if (ngx_http_autotls_od_want(oc->name, oc->len, &ascf->issuer)
            == NGX_HTTP_AUTOTLS_OD_WAIT)
        {
            ngx_http_autotls_od_park(oc);
            return;
        }
        break;

    default:
        /* served, or removed by the operator: never ordered from here */
        break;
    }

    ngx_http_autotls_od_go(oc);
}


/*
 * The on-demand home a checked name reaches on an address (exact, wildcard
 * and regex server names as nginx's SNI callback looks them up, else the
 * default server), or NULL: another server, or a name the home's
 * configuration already has a certificate for.
 */
ngx_http_autotls_srv_conf_t *
ngx_http_autotls_od_home(ngx_http_addr_conf_t *addr_conf, u_char *name,
    size_t len)
{
    ngx_str_t                     *n;
    ngx_uint_t                     i;
    ngx_http_core_srv_conf_t      *cscf;
    ngx_http_virtual_names_t      *vn;
    ngx_http_autotls_srv_conf_t   *ascf;
#if (NGX_PCRE)
    ngx_str_t                      str;
#endif

    cscf = NULL;
    vn = addr_conf->virtual_names;

    if (vn != NULL) {
        cscf = ngx_hash_find_combined(&vn->names, ngx_hash_key(name, len),
                                      name, len);
#if (NGX_PCRE)
        str.data = name;
        str.len = len;

        for (i = 0; cscf == NULL && i < vn->nregex; i++) {
            if (ngx_regex_exec(vn->regex[i].regex->regex, &str, NULL, 0) >= 0) {
                cscf = vn->regex[i].server;
            }
        }
#endif
    }

    if (cscf == NULL) {
        cscf = addr_conf->default_server;
    }

    ascf = ngx_http_get_module_srv_conf(cscf->ctx, ngx_http_autotls_module);

    if (ascf->dynamic != NGX_HTTP_AUTOTLS_ON_DEMAND) {
        return NULL;
    }

    if (ascf->per_name) {
        return ngx_http_autotls_find(ascf, name, len) ? NULL : ascf;
    }

    if (ascf->names != NULL) {
        n = ascf->names->elts;
        for (i = 0; i < ascf->names->nelts; i++) {
            if (n[i].len == len && ngx_strncmp(n[i].data, name, len) == 0) {
                return NULL;
            }
        }
    }

    return ascf;
}


/* ---- parked connections ------------------------------------------------- */

static void
ngx_http_autotls_od_park(ngx_http_autotls_od_conn_t *oc)
{
    ngx_connection_t              *c = oc->c;
    ngx_http_autotls_od_worker_t  *w = &ngx_http_autotls_od_w;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    oc->parked = 1;
    oc->deadline = ngx_current_msec + ngx_http_autotls_mcf->od_wait;
    ngx_queue_insert_tail(&w->parked, &oc->queue);
    ngx_http_autotls_od_parked(1);

    c->read->handler = ngx_http_autotls_od_watch;
    c->log->action = "waiting for an on-demand certificate";

    /* a parked connection keeps an exiting worker until it is handed over */
    w->tick.cancelable = 0;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "autotls: parked a first handshake for \"%s\"", oc->name);
}


/* a parked client may close: nginx's handler then closes the connection */
static void
ngx_http_autotls_od_watch(ngx_event_t *rev)
{
    u_char                       b;
    ssize_t                      n;
    ngx_connection_t            *c = rev->data;
    ngx_http_autotls_od_conn_t  *oc = c->data;

    n = recv(c->fd, (char *) &b, 1, MSG_PEEK);

    if (rev->pending_eof || n == 0
        || (n == -1 && ngx_socket_errno != NGX_EAGAIN))
    {
        ngx_http_autotls_od_go(oc);
        return;
    }

    rev->ready = 0;
}


static void
ngx_http_autotls_od_tick(ngx_event_t *ev)
{
    ngx_msec_t                     now;
    ngx_queue_t                   *q, *next;
    ngx_http_autotls_od_conn_t    *oc;
    ngx_http_autotls_od_worker_t  *w = &ngx_http_autotls_od_w;

    ngx_http_autotls_od_drain(ngx_http_autotls_od_sched);

    now = ngx_current_msec;

    for (q = ngx_queue_head(&w->parked);
         q != ngx_queue_sentinel(&w->parked);
         q = next)
    {
        next = ngx_queue_next(q);
        oc = ngx_queue_data(q, ngx_http_autotls_od_conn_t, queue);

        if (ngx_http_autotls_od_served(oc->name, oc->len)) {
            ngx_log_error(NGX_LOG_INFO, oc->c->log, 0,
                          "autotls: on-demand \"%s\" is served, the first "
                          "handshake goes on", oc->name);
            ngx_http_autotls_od_go(oc);

        } else if (ngx_http_autotls_od_refused(oc->name, oc->len)) {
            ngx_http_autotls_od_go(oc);

        } else if ((ngx_msec_int_t) (now - oc->deadline) >= 0 || ngx_exiting) {
            ngx_log_error(NGX_LOG_INFO, oc->c->log, 0,
                          "autotls: on-demand \"%s\" has no certificate after "
                          "autotls_on_demand_wait, the fallback is served",
                          oc->name);
            ngx_http_autotls_od_go(oc);
        }
    }

    w->tick.cancelable = ngx_queue_empty(&w->parked);

    if (w->active && !(ngx_exiting && ngx_queue_empty(&w->parked))) {
        ngx_add_timer(&w->tick, NGX_HTTP_AUTOTLS_OD_PARK_MS);
    }
}


/* to nginx's own handler, as the listener would have */
static void
ngx_http_autotls_od_go(ngx_http_autotls_od_conn_t *oc)
{
    ngx_connection_t              *c = oc->c;
    ngx_http_autotls_od_worker_t  *w = &ngx_http_autotls_od_w;

    if (oc->parked) {
        ngx_queue_remove(&oc->queue);
        ngx_http_autotls_od_parked(-1);
        oc->parked = 0;
    }

    w->held--;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    c->data = NULL;
    c->log->action = NULL;

    /* the peeked bytes are still there: with edge-triggered events no new
     * event would say so */
    c->read->ready = 1;

    oc->handler(c);
}


/* ---- plain requests ----------------------------------------------------- */

ngx_int_t
ngx_http_autotls_od_host_handler(ngx_http_request_t *r)
{
    char                           why[128];
    char                           name[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    size_t                         len;
    ngx_http_autotls_srv_conf_t   *ascf;
    ngx_http_autotls_main_conf_t  *amcf = ngx_http_autotls_mcf;

    ascf = ngx_http_get_module_srv_conf(r, ngx_http_autotls_module);

    if (amcf == NULL || r != r->main
        || ascf->dynamic != NGX_HTTP_AUTOTLS_ON_DEMAND
        || r->headers_in.server.len == 0)
    {
        return NGX_DECLINED;
    }

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        return NGX_DECLINED;
    }
#endif

    if (atls_name_check((const char *) r->headers_in.server.data,
                        r->headers_in.server.len, amcf->od.allow_ip,
                        amcf->od.max_labels, name, sizeof(name),
                        why, sizeof(why))
        != 0)
    {
        return NGX_DECLINED;
    }

    len = ngx_strlen(name);

    ascf = ngx_http_autotls_od_home(r->http_connection->addr_conf,
                                    (u_char *) name, len);

    if (ascf != NULL
        && ngx_http_autotls_dyn_state((u_char *) name, len)
           == NGX_HTTP_AUTOTLS_DYN_UNKNOWN)
    {
        (void) ngx_http_autotls_od_want((u_char *) name, len, &ascf->issuer);
    }

    return NGX_DECLINED;
}
