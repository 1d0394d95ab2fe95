/*
 * autotls for nginx: challenge answers.
 *
 * The driver's scheduler publishes http-01 and tls-alpn-01 answers into
 * shared memory and withdraws them there, so that any worker can answer
 * the CA.  The http-01 handler runs in NGX_HTTP_POST_READ_PHASE of every
 * server, so it comes before the server's own rewrites and "return 301";
 * tls-alpn-01 is answered by the ALPN callback (ngx_http_autotls_ssl.c).
 * On a cluster node, answers go through Redis to every node
 * (ngx_http_autotls_cluster_chal.c) and come back into the zone.
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


static ngx_int_t ngx_http_autotls_publish_alpn(const atls_challenge_t *ch,
    char *why, size_t len);


/* atls_sched_host_t.publish */
int
ngx_http_autotls_publish(void *ctx, void *cert_data, const atls_challenge_t *ch,
    char *why, size_t len)
{
    ngx_int_t  rc;

    why[0] = '\0';

    if (ngx_http_autotls_cluster_mirror() != NULL) {
        /* every node of the cluster answers it, this one included */
        return ngx_http_autotls_cluster_publish(ch, why, len);
    }

    switch (ch->type) {

    case ATLS_CHAL_HTTP01:
        rc = ngx_http_autotls_shm_chal_add(ch, (u_char *) ch->key_authz,
                                           ngx_strlen(ch->key_authz), 0,
                                           why, len);
        break;

    case ATLS_CHAL_TLSALPN01:
        rc = ngx_http_autotls_publish_alpn(ch, why, len);
        break;

    default:
        ngx_snprintf((u_char *) why, len, "no responder for %s%Z",
                     atls_challenge_type_name(ch->type));
        return -1;
    }

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "autotls: %s challenge for \"%s\" %s",
                  atls_challenge_type_name(ch->type), ch->identifier,
                  rc == NGX_OK ? "published" : "not published");

    return rc == NGX_OK ? 0 : -1;
}


/* workers parse DER only for validation handshakes */
static ngx_int_t
ngx_http_autotls_publish_alpn(const atls_challenge_t *ch, char *why,
    size_t len)
{
    X509      *x;
    EVP_PKEY  *k;
    ngx_int_t  rc;

    if (atls_tls_alpn_cert(ch->identifier, ch->key_authz, &x, &k) != 0) {
        ngx_snprintf((u_char *) why, len,
                     "cannot create the tls-alpn-01 certificate%Z");
        return NGX_ERROR;
    }

    rc = ngx_http_autotls_chal_put_alpn(ch, x, k, why, len);

    X509_free(x);
    EVP_PKEY_free(k);

    return rc;
}


/* a tls-alpn-01 certificate and its key into the zone, as DER */
ngx_int_t
ngx_http_autotls_chal_put_alpn(const atls_challenge_t *ch, X509 *x,
    EVP_PKEY *k, char *why, size_t len)
{
    int        dlen, klen;
    u_char    *buf, *p;
    ngx_int_t  rc;

    dlen = i2d_X509(x, NULL);
    klen = i2d_PrivateKey(k, NULL);
    buf = (dlen > 0 && klen > 0) ? malloc(dlen + klen) : NULL;

    if (buf == NULL) {
        ngx_snprintf((u_char *) why, len, "cannot encode the certificate%Z");
        return NGX_ERROR;
    }

    p = buf;
    i2d_X509(x, &p);
    i2d_PrivateKey(k, &p);

    rc = ngx_http_autotls_shm_chal_add(ch, buf, dlen + klen, dlen, why, len);

    OPENSSL_cleanse(buf, dlen + klen);
    free(buf);

    return rc;
}


/* atls_sched_host_t.withdraw */
void
ngx_http_autotls_withdraw(void *ctx, void *cert_data,
    const atls_challenge_t *ch)
{
    if (ngx_http_autotls_cluster_mirror() != NULL) {
        ngx_http_autotls_cluster_withdraw(ch);
    }

    if (ch->type == ATLS_CHAL_HTTP01 || ch->type == ATLS_CHAL_TLSALPN01) {
        ngx_http_autotls_shm_chal_del(ch);
    }
}
