/*
 * autotls for nginx: the status page.
 *
 *   location = /autotls-status { autotls_status; allow 127.0.0.1; deny all; }
 *
 * JSON by default, Prometheus text with ?format=prometheus; both rendered
 * by the core from the store, so the page and `autotls list` agree.  The
 * core never includes key material.
 */

#include "ngx_http_autotls_module.h"


static ngx_int_t ngx_http_autotls_status_handler(ngx_http_request_t *r);


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
    char         *text;
    size_t        len;
    ngx_int_t     rc, prom;
    ngx_str_t     fmt;
    ngx_buf_t    *b;
    ngx_chain_t   out;

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

    text = prom ? atls_status_prometheus(ngx_http_autotls_store, ngx_time())
                : atls_status_json(ngx_http_autotls_store, ngx_time());
    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(text);

    b = ngx_create_temp_buf(r->pool, len ? len : 1);
    if (b == NULL) {
        free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->pos, text, len);
    free(text);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len;

    if (prom) {
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4");
    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
    }
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
