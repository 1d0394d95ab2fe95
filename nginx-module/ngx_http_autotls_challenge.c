/*
 * autotls for nginx: http-01 answers.
 *
 * Runs in NGX_HTTP_POST_READ_PHASE of every server, so it comes before the
 * server's own rewrites and "return 301"; the key authorization is read
 * from shared memory, which any worker can do.
 */

#include "ngx_http_autotls_module.h"


#define NGX_HTTP_AUTOTLS_PREFIX  "/.well-known/acme-challenge/"


ngx_int_t
ngx_http_autotls_challenge_handler(ngx_http_request_t *r)
{
    u_char       *data;
    size_t        len, cert_len, plen;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    plen = sizeof(NGX_HTTP_AUTOTLS_PREFIX) - 1;

    if (r->uri.len <= plen
        || ngx_strncmp(r->uri.data, NGX_HTTP_AUTOTLS_PREFIX, plen) != 0)
    {
        return NGX_DECLINED;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_DECLINED;
    }

    /* a token is checked before it is used as a lookup key */
    if (!atls_b64url_is_token((char *) r->uri.data + plen, r->uri.len - plen)
        || r->uri.len - plen > NGX_HTTP_AUTOTLS_TOKEN_MAX)
    {
        return NGX_HTTP_NOT_FOUND;
    }

    data = ngx_http_autotls_shm_chal_get(ATLS_CHAL_HTTP01,
                                         r->uri.data + plen,
                                         r->uri.len - plen, &len, &cert_len);
    if (data == NULL) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "autotls: unknown http-01 token \"%V\"", &r->uri);
        return NGX_HTTP_NOT_FOUND;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        free(data);
        return rc;
    }

    b = ngx_create_temp_buf(r->pool, len ? len : 1);
    if (b == NULL) {
        free(data);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->pos, data, len);
    free(data);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "text/plain");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "autotls: answered http-01 challenge");

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    out.buf = b;
    out.next = NULL;

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));
    return NGX_DONE;
}
