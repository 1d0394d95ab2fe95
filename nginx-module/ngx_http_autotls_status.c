/*
 * autotls for nginx: the status page.
 *
 *   location = /autotls-status { autotls_status; allow 127.0.0.1; deny all; }
 *
 * JSON by default, Prometheus text with ?format=prometheus; both rendered
 * by the core from the store, so the page and `autotls list` agree, plus
 * the shared zone's use ("shm").  The core never includes key material and
 * reads only certificate chains, never keys.  ?name=, ?state=, ?limit= and
 * ?offset= select the certificates (atls_status.h; the JSON page shows
 * ATLS_STATUS_LIMIT_DEFAULT of them unless limit= says otherwise); a bad
 * value is a 400 naming the parameter.
 *
 * Rendering reads every certificate's meta and leaf from the store inside
 * the worker's event loop, so it holds up that worker's other connections
 * while it runs (about 0.2 ms per certificate, bench/status_scale.sh).  To
 * keep that bounded whatever the request rate, a worker renders a format
 * again only after NGX_HTTP_AUTOTLS_STATUS_SHARE times as long as the last
 * rendering took, and at least NGX_HTTP_AUTOTLS_STATUS_TTL later, answering
 * the requests in between with the same text: the page takes at most 1/SHARE
 * of a worker's time, and is that much stale at most.
 */

#include "ngx_http_autotls_module.h"


#define NGX_HTTP_AUTOTLS_STATUS_TTL    1000   /* ms, at least */
#define NGX_HTTP_AUTOTLS_STATUS_SHARE  20


typedef struct {
    char                 *text;      /* malloc'd by the core */
    u_char               *args;      /* the query it answers (malloc'd) */
    size_t                args_len;
    ngx_msec_t            rendered;
    ngx_msec_t            ttl;
} ngx_http_autotls_status_cache_t;


static ngx_int_t ngx_http_autotls_status_handler(ngx_http_request_t *r);
static char *ngx_http_autotls_status_render(ngx_http_request_t *r,
    ngx_uint_t prom, atls_status_query_t *q);
static ngx_int_t ngx_http_autotls_status_send(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, const char *text);


/* per worker: [0] JSON, [1] Prometheus */
static ngx_http_autotls_status_cache_t  ngx_http_autotls_status_cache[2];


char *
ngx_http_autotls_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_autotls_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_autotls_status_handler(ngx_http_request_t *r)
{
    char                 *text, err[256];
    ngx_int_t             rc;
    ngx_uint_t            prom;
    ngx_str_t             fmt;
    atls_status_query_t   q;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_autotls_store == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "autotls: status requested but no store is open "
                      "(no \"autotls\" server configured?)");
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    prom = 0;
    if (ngx_http_arg(r, (u_char *) "format", 6, &fmt) == NGX_OK
        && fmt.len == 10 && ngx_strncmp(fmt.data, "prometheus", 10) == 0)
    {
        prom = 1;
    }

    /* Prometheus scrapes every series unless asked for fewer */
    if (atls_status_query_parse((const char *) r->args.data, r->args.len,
                                prom ? 0 : ATLS_STATUS_LIMIT_DEFAULT, &q,
                                err, sizeof(err) - 1)
        != 0)
    {
        err[ngx_strlen(err) + 1] = '\0';
        err[ngx_strlen(err)] = '\n';
        return ngx_http_autotls_status_send(r, NGX_HTTP_BAD_REQUEST,
                                            "text/plain", err);
    }

    text = ngx_http_autotls_status_render(r, prom, &q);
    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_autotls_status_send(r, NGX_HTTP_OK,
                                        prom ? "text/plain; version=0.0.4"
                                             : "application/json",
                                        text);
}


static ngx_int_t
ngx_http_autotls_status_send(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *text)
{
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    len = ngx_strlen(text);

    b = ngx_create_temp_buf(r->pool, len ? len : 1);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->pos, text, len);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;

    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* The cached text of one format and query, rendered again once older than
 * the TTL or asked with another query. */
static char *
ngx_http_autotls_status_render(ngx_http_request_t *r, ngx_uint_t prom,
    atls_status_query_t *q)
{
    char                             *text;
    ngx_msec_t                        start;
    ngx_http_autotls_shm_usage_t      u;
    ngx_http_autotls_status_cache_t  *c;
    atls_status_gauge_t               g[5];
    atls_status_extra_t               x, od, *xp;

    c = &ngx_http_autotls_status_cache[prom];

    if (c->text != NULL && ngx_current_msec - c->rendered < c->ttl
        && c->args_len == r->args.len
        && (r->args.len == 0
            || ngx_memcmp(c->args, r->args.data, r->args.len) == 0))
    {
        return c->text;
    }

    start = ngx_current_msec;

    xp = NULL;

    if (ngx_http_autotls_shm_usage(&u) == NGX_OK) {
        g[0].name = "size_bytes";
        g[0].value = (long long) u.size;
        g[1].name = "pages";
        g[1].value = (long long) u.pages;
        g[2].name = "pages_free";
        g[2].value = (long long) u.pages_free;
        g[3].name = "slots_used";
        g[3].value = (long long) u.slots;
        g[4].name = "slot_bytes_used";
        g[4].value = (long long) u.slot_bytes;

        x.section = "shm";
        x.help = "Use of the autotls shared memory zone.";
        x.gauges = g;
        x.n = 5;
        x.next = NULL;
        xp = &x;
    }

    if (ngx_http_autotls_od_status(&od) == NGX_OK) {
        od.next = xp;
        xp = &od;
    }

    text = prom ? atls_status_prometheus_query(ngx_http_autotls_store,
                                               ngx_time(), xp, q)
                : atls_status_json_query(ngx_http_autotls_store, ngx_time(),
                                         xp, q);
    if (text == NULL) {
        return NULL;
    }

    free(c->args);
    c->args_len = 0;
    c->args = malloc(r->args.len + 1);
    if (c->args != NULL) {
        ngx_memcpy(c->args, r->args.data, r->args.len);
        c->args_len = r->args.len;
    }

    ngx_time_update();

    free(c->text);
    c->text = text;
    c->rendered = ngx_current_msec;
    c->ttl = ngx_max(NGX_HTTP_AUTOTLS_STATUS_TTL,
                     (ngx_current_msec - start) * NGX_HTTP_AUTOTLS_STATUS_SHARE);

    if (c->args == NULL) {
        c->ttl = 0;     /* which query it answers is not known: never reused */
    }

    return text;
}
