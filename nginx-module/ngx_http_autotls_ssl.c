/*
 * autotls for nginx: the TLS side.
 *
 * One SSL_CTX_set_cert_cb on each autotls server's context picks the
 * certificate(s) of the server the SNI callback selected, from a per-worker
 * cache of parsed objects (ngx_http_autotls_cache.c).  The cache entry is
 * checked against the certificate's generation counter in shared memory: a
 * handshake costs a lookup and an integer compare; the store is read only
 * once per new generation.  A dynamic home (autotls ISSUER dynamic) serves
 * the names registered for it (ngx_http_autotls_dynamic.c); with
 * "autotls_dynamic_unknown reject" the servername callback refuses any
 * other name with an unrecognized_name alert.
 *
 * OCSP staples are attached to the leaves of that cache when they are
 * loaded and served by a status callback (ngx_http_autotls_stapling.c).
 *
 * tls-alpn-01: a client_hello callback on every ssl context sees the ALPN
 * list before anything else (OpenSSL 3.0 runs it before the servername and
 * ALPN callbacks).  When the client offers only "acme-tls/1" the connection
 * is moved to a private SSL_CTX whose servername callback does nothing,
 * whose ALPN callback accepts acme-tls/1, and the challenge certificate
 * from shared memory is installed on the connection.
 */

#include "ngx_http_autotls_module.h"
#include <ngx_http_ssl_module.h>


static int ngx_http_autotls_cert_cb(SSL *ssl, void *arg);
static int ngx_http_autotls_client_hello(SSL *ssl, int *al, void *arg);
static int ngx_http_autotls_chal_servername(SSL *ssl, int *ad, void *arg);
static int ngx_http_autotls_chal_alpn(SSL *ssl, const unsigned char **out,
    unsigned char *outlen, const unsigned char *in, unsigned int inlen,
    void *arg);
static int ngx_http_autotls_servername(SSL *ssl, int *ad, void *arg);

static const unsigned char  ngx_http_autotls_acme_alpn[] = "\x0a" "acme-tls/1";


/* a shared self-signed pair so that the ssl module accepts our servers */
ngx_int_t
ngx_http_autotls_fallback(ngx_conf_t *cf, ngx_http_autotls_main_conf_t *amcf)
{
    BIO         *bio;
    char        *kpem, *bdata;
    long         blen;
    X509        *x;
    EVP_PKEY    *k;
    const char  *names[] = { "autotls.invalid" };

    if (amcf->fallback_cert.len) {
        return NGX_OK;
    }

    if (atls_selfsigned_cert(names, 1, ATLS_KEY_EC256, &x, &k) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "autotls: cannot create a fallback certificate");
        return NGX_ERROR;
    }

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || !PEM_write_bio_X509(bio, x)) {
        BIO_free(bio);
        X509_free(x);
        EVP_PKEY_free(k);
        return NGX_ERROR;
    }

    blen = BIO_get_mem_data(bio, &bdata);

    amcf->fallback_cert.len = sizeof("data:") - 1 + blen;
    amcf->fallback_cert.data = ngx_pnalloc(cf->pool,
                                           amcf->fallback_cert.len + 1);
    if (amcf->fallback_cert.data == NULL) {
        BIO_free(bio);
        X509_free(x);
        EVP_PKEY_free(k);
        return NGX_ERROR;
    }

    ngx_sprintf(amcf->fallback_cert.data, "data:%*s%Z", (size_t) blen, bdata);
    BIO_free(bio);
    X509_free(x);

    kpem = atls_key_to_pem(k);
    EVP_PKEY_free(k);
    if (kpem == NULL) {
        return NGX_ERROR;
    }

    amcf->fallback_key.len = sizeof("data:") - 1 + ngx_strlen(kpem);
    amcf->fallback_key.data = ngx_pnalloc(cf->pool,
                                          amcf->fallback_key.len + 1);
    if (amcf->fallback_key.data == NULL) {
        OPENSSL_cleanse(kpem, ngx_strlen(kpem));
        free(kpem);
        return NGX_ERROR;
    }

    ngx_sprintf(amcf->fallback_key.data, "data:%s%Z", kpem);
    OPENSSL_cleanse(kpem, ngx_strlen(kpem));
    free(kpem);

    return NGX_OK;
}


ngx_int_t
ngx_http_autotls_ssl_setup(ngx_conf_t *cf, ngx_http_autotls_main_conf_t *amcf)
{
    SSL_CTX                       *ctx;
    ngx_uint_t                     s;
    ngx_http_core_srv_conf_t     **cscfp;
    ngx_http_ssl_srv_conf_t       *sscf;
    ngx_http_core_main_conf_t     *cmcf;
    ngx_http_autotls_srv_conf_t   *ascf;

    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0, "SSL_CTX_new() failed");
        return NGX_ERROR;
    }

    amcf->challenge_ctx = ctx;

    /* RFC 8737: TLS 1.2 or later; the validation connection is one-shot */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_tlsext_servername_callback(ctx,
                                           ngx_http_autotls_chal_servername);
    SSL_CTX_set_alpn_select_cb(ctx, ngx_http_autotls_chal_alpn, NULL);

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    cscfp = cmcf->servers.elts;

    for (s = 0; s < cmcf->servers.nelts; s++) {
        sscf = cscfp[s]->ctx->srv_conf[ngx_http_ssl_module.ctx_index];
        ascf = cscfp[s]->ctx->srv_conf[ngx_http_autotls_module.ctx_index];

        if (ngx_http_autotls_stapling_check(cf, ascf, sscf) != NGX_OK) {
            return NGX_ERROR;
        }

        if (sscf == NULL || sscf->ssl.ctx == NULL) {
            continue;
        }

        /* any ssl listener may be asked for tls-alpn-01 */
        SSL_CTX_set_client_hello_cb(sscf->ssl.ctx,
                                    ngx_http_autotls_client_hello, NULL);

        /*
         * On every ssl context: an autotls server without a context of its
         * own is served through the context of its listener's default
         * server, whatever that server is.  nginx sets its own cert_cb only
         * for certificates with variables; do not replace that one.
         */
        if (ascf->cert || ascf->home || sscf->certificate_values == NULL) {
            SSL_CTX_set_cert_cb(sscf->ssl.ctx, ngx_http_autotls_cert_cb, NULL);

            if (amcf->homes.nelts > 0) {
                SSL_CTX_set_tlsext_servername_callback(sscf->ssl.ctx,
                                                 ngx_http_autotls_servername);
            }

            /* the status callback goes with the certificates it staples */
            if (ngx_http_autotls_stapling_setup(cf, sscf->ssl.ctx) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_autotls_ssl_init_worker(ngx_cycle_t *cycle)
{
    return ngx_http_autotls_cache_init_worker(cycle);
}


void
ngx_http_autotls_ssl_exit_worker(void)
{
    ngx_http_autotls_cache_exit_worker();
}


/*
 * per_name: the certificate for the SNI name (names sorted by length, then
 * bytes); "*.rest" when a wildcard covers it; NULL when none does.
 */
ngx_http_autotls_cert_t *
ngx_http_autotls_find(ngx_http_autotls_srv_conf_t *ascf, const u_char *name,
    size_t len)
{
    u_char                    buf[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    u_char                   *dot;
    ngx_int_t                 rc;
    ngx_uint_t                lo, hi, mid, wild;
    ngx_http_autotls_name_t  *bn;

    if (len == 0 || len > NGX_HTTP_AUTOTLS_NAME_MAX) {
        return NULL;
    }

    ngx_strlow(buf, (u_char *) name, len);

    /* a trailing dot names the same host */
    if (buf[len - 1] == '.') {
        len--;
    }

    bn = ascf->by_name;

    for (wild = 0; wild < 2; wild++) {
        lo = 0;
        hi = ascf->n_by_name;

        while (lo < hi) {
            mid = lo + (hi - lo) / 2;

            if (bn[mid].name.len != len) {
                rc = bn[mid].name.len < len ? -1 : 1;
            } else {
                rc = ngx_memcmp(bn[mid].name.data, buf, len);
            }

            if (rc == 0) {
                return bn[mid].cert;
            }

            if (rc < 0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }

        dot = ngx_strlchr(buf, buf + len, '.');
        if (wild || dot == NULL || dot == buf) {
            break;
        }

        /* "a.example.com" -> "*.example.com" */
        buf[0] = '*';
        ngx_memmove(buf + 1, dot, buf + len - dot);
        len = 1 + (buf + len - dot);
    }

    return NULL;
}


static int
ngx_http_autotls_cert_cb(SSL *ssl, void *arg)
{
    const char                   *sni;
    ngx_connection_t             *c;
    ngx_http_connection_t        *hc;
    ngx_http_autotls_cert_t      *cert, *found;
    ngx_http_autotls_entry_t     *e;
    ngx_http_autotls_srv_conf_t  *ascf;

    c = ngx_ssl_get_connection(ssl);
    if (c == NULL) {
        return 1;
    }

    hc = c->data;

    /* the servername callback has already switched to the named server */
    ascf = ngx_http_get_module_srv_conf(hc->conf_ctx, ngx_http_autotls_module);
    if (ascf == NULL) {
        return 1;
    }

    sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

    if (ascf->home != NULL) {
        switch (ngx_http_autotls_dyn_install(ssl, c, ascf, sni)) {
        case NGX_OK:
            return 1;
        case NGX_DECLINED:
            return ngx_http_autotls_dyn_unknown(ssl, c, ascf);
        default:
            return 0;
        }
    }

    if (ascf->cert == NULL) {
        return 1;
    }

    cert = ascf->cert;

    if (ascf->by_name && sni != NULL) {
        found = ngx_http_autotls_find(ascf, (const u_char *) sni,
                                      ngx_strlen(sni));
        if (found != NULL) {
            cert = found;
        }
    }

    e = ngx_http_autotls_cache_cert(cert, c->log);
    if (e == NULL) {
        return 1;
    }

    return ngx_http_autotls_cache_use(ssl, c, e);
}


/*
 * nginx's servername callback selects the server; a dynamic home with
 * "autotls_dynamic_unknown reject" then refuses a name it does not serve
 * (or no name) before any certificate is chosen.
 */
static int
ngx_http_autotls_servername(SSL *ssl, int *ad, void *arg)
{
    int                           rc;
    ngx_connection_t             *c;
    ngx_http_connection_t        *hc;
    ngx_http_autotls_srv_conf_t  *ascf;

    rc = ngx_http_ssl_servername(ssl, ad, arg);

    if (rc == SSL_TLSEXT_ERR_ALERT_FATAL) {
        return rc;
    }

    c = ngx_ssl_get_connection(ssl);
    if (c == NULL || c->data == NULL) {
        return rc;
    }

    hc = c->data;
    ascf = ngx_http_get_module_srv_conf(hc->conf_ctx, ngx_http_autotls_module);

    if (ascf == NULL || ascf->home == NULL
        || ascf->unknown != NGX_HTTP_AUTOTLS_UNKNOWN_REJECT
        || ngx_http_autotls_dyn_served(ascf,
                                       SSL_get_servername(ssl,
                                                 TLSEXT_NAMETYPE_host_name)))
    {
        return rc;
    }

    *ad = SSL_AD_UNRECOGNIZED_NAME;

    return SSL_TLSEXT_ERR_ALERT_FATAL;
}


/* 1 when the ALPN extension lists exactly one protocol: acme-tls/1 */
static int
ngx_http_autotls_only_acme(const unsigned char *p, size_t len)
{
    size_t  list;

    if (len < 2) {
        return 0;
    }

    list = ((size_t) p[0] << 8) | p[1];

    return list == len - 2
           && list == sizeof(ngx_http_autotls_acme_alpn) - 1
           && ngx_memcmp(p + 2, ngx_http_autotls_acme_alpn, list) == 0;
}


/* the host_name of the server_name extension, or 0 */
static size_t
ngx_http_autotls_sni(const unsigned char *p, size_t len, const u_char **name)
{
    size_t  list, n;

    if (len < 5) {
        return 0;
    }

    list = ((size_t) p[0] << 8) | p[1];
    if (list + 2 != len || p[2] != TLSEXT_NAMETYPE_host_name) {
        return 0;
    }

    n = ((size_t) p[3] << 8) | p[4];
    if (n == 0 || n + 5 > len || n > NGX_HTTP_AUTOTLS_NAME_MAX) {
        return 0;
    }

    *name = p + 5;
    return n;
}


static int
ngx_http_autotls_client_hello(SSL *ssl, int *al, void *arg)
{
    int                   ok;
    u_char               *data;
    size_t                len, name_len, data_len, cert_len;
    X509                 *x;
    EVP_PKEY             *k;
    const u_char         *name, *p;
    ngx_connection_t     *c;
    const unsigned char  *ext;
    char                  esc[300];

    if (!SSL_client_hello_get0_ext(ssl,
                                   TLSEXT_TYPE_application_layer_protocol_negotiation,
                                   &ext, &len)
        || !ngx_http_autotls_only_acme(ext, len))
    {
        return SSL_CLIENT_HELLO_SUCCESS;
    }

    c = ngx_ssl_get_connection(ssl);

    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len)
        || (name_len = ngx_http_autotls_sni(ext, len, &name)) == 0)
    {
        ngx_log_error(NGX_LOG_INFO, c ? c->log : ngx_cycle->log, 0,
                      "autotls: acme-tls/1 hello without a server name");
        *al = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_CLIENT_HELLO_ERROR;
    }

    data = ngx_http_autotls_shm_chal_get(ATLS_CHAL_TLSALPN01, name, name_len,
                                         &data_len, &cert_len);
    if (data == NULL) {
        /* the name is the client's: escaped before it reaches the log */
        ngx_log_error(NGX_LOG_INFO, c ? c->log : ngx_cycle->log, 0,
                      "autotls: no tls-alpn-01 challenge pending for \"%s\"",
                      atls_log_escape_mem(name, name_len, esc, sizeof(esc)));
        *al = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_CLIENT_HELLO_ERROR;
    }

    p = data;
    x = d2i_X509(NULL, &p, (long) cert_len);
    p = data + cert_len;
    k = d2i_AutoPrivateKey(NULL, &p, (long) (data_len - cert_len));
    OPENSSL_cleanse(data, data_len);
    free(data);

    ok = x != NULL && k != NULL
         && SSL_set_SSL_CTX(ssl, ngx_http_autotls_mcf->challenge_ctx) != NULL
         && SSL_use_certificate(ssl, x) == 1
         && SSL_use_PrivateKey(ssl, k) == 1;

    X509_free(x);
    EVP_PKEY_free(k);

    if (!ok) {
        ngx_ssl_error(NGX_LOG_ERR, c ? c->log : ngx_cycle->log, 0,
                      "autotls: cannot install the tls-alpn-01 certificate");
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c ? c->log : ngx_cycle->log, 0,
                   "autotls: answering tls-alpn-01 for \"%s\"",
                   atls_log_escape_mem(name, name_len, esc, sizeof(esc)));

    return SSL_CLIENT_HELLO_SUCCESS;
}


static int
ngx_http_autotls_chal_servername(SSL *ssl, int *ad, void *arg)
{
    /* keep the challenge context: nginx's callback would switch it back */
    return SSL_TLSEXT_ERR_OK;
}


static int
ngx_http_autotls_chal_alpn(SSL *ssl, const unsigned char **out,
    unsigned char *outlen, const unsigned char *in, unsigned int inlen,
    void *arg)
{
    if (SSL_select_next_proto((unsigned char **) out, outlen,
                              ngx_http_autotls_acme_alpn,
                              sizeof(ngx_http_autotls_acme_alpn) - 1,
                              in, inlen)
        != OPENSSL_NPN_NEGOTIATED)
    {
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }

    return SSL_TLSEXT_ERR_OK;
}
