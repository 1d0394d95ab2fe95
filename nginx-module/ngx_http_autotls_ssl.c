/*
 * autotls for nginx: the TLS side.
 *
 * One SSL_CTX_set_cert_cb on each autotls server's context picks the
 * certificate(s) of the server the SNI callback selected, from a per-worker
 * cache of parsed objects.  The cache entry is checked against the
 * certificate's generation counter in shared memory: a handshake costs a
 * pointer lookup and an integer compare; the store is read only once per
 * new generation.
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


typedef struct {
    X509               *leaf;
    EVP_PKEY           *key;
    STACK_OF(X509)     *chain;      /* intermediates only */
} ngx_http_autotls_pair_t;

typedef struct {
    ngx_atomic_uint_t        gen;           /* 0: never loaded */
    ngx_uint_t               n;             /* real certificates loaded */
    ngx_http_autotls_pair_t  pair[ATLS_KEY_TYPE_MAX];
    ngx_http_autotls_pair_t  fallback;      /* generated when first needed */
    /* by the issuer's key type: a refused OCSP response was logged */
    u_char                   staple_refused[ATLS_KEY_TYPE_MAX];
} ngx_http_autotls_cache_t;


static int ngx_http_autotls_cert_cb(SSL *ssl, void *arg);
static int ngx_http_autotls_client_hello(SSL *ssl, int *al, void *arg);
static int ngx_http_autotls_chal_servername(SSL *ssl, int *ad, void *arg);
static int ngx_http_autotls_chal_alpn(SSL *ssl, const unsigned char **out,
    unsigned char *outlen, const unsigned char *in, unsigned int inlen,
    void *arg);
static void ngx_http_autotls_pair_free(ngx_http_autotls_pair_t *p);
static void ngx_http_autotls_cache_load(ngx_http_autotls_cache_t *ce,
    ngx_http_autotls_cert_t *cert, ngx_log_t *log);


static ngx_http_autotls_cache_t  *ngx_http_autotls_cache;
static ngx_uint_t                 ngx_http_autotls_ncache;

/*
 * Intermediates shared by the cache entries: 10,000 leaves from one CA
 * hold one parsed intermediate, not 10,000 copies.  A handful of distinct
 * intermediates is the norm, so a short array searched linearly will do.
 */
static X509                     **ngx_http_autotls_inter;
static ngx_uint_t                 ngx_http_autotls_ninter;
static ngx_uint_t                 ngx_http_autotls_inter_cap;
static ngx_event_t                ngx_http_autotls_warm_ev;
static ngx_uint_t                 ngx_http_autotls_warm_next;

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
        if (ascf->cert || sscf->certificate_values == NULL) {
            SSL_CTX_set_cert_cb(sscf->ssl.ctx, ngx_http_autotls_cert_cb, NULL);

            /* the status callback goes with the certificates it staples */
            if (ngx_http_autotls_stapling_setup(cf, sscf->ssl.ctx) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    return NGX_OK;
}


/*
 * Loads the certificates into this worker's cache in the background, ~2 ms
 * at a time between rounds of network events, so that the first handshake
 * for each name does not pay for reading and parsing PEM; the handshake
 * path still loads lazily whatever is not warm yet.
 */
static void
ngx_http_autotls_warm(ngx_event_t *ev)
{
    ngx_msec_t                 start;
    ngx_atomic_uint_t          gen;
    ngx_http_autotls_cert_t  **certs;
    ngx_http_autotls_cache_t  *ce;

    if (ngx_exiting || ngx_http_autotls_cache == NULL) {
        return;
    }

    certs = ngx_http_autotls_mcf->certs.elts;
    start = ngx_http_autotls_msec();

    while (ngx_http_autotls_warm_next < ngx_http_autotls_ncache) {
        ce = &ngx_http_autotls_cache[ngx_http_autotls_warm_next];
        gen = ngx_http_autotls_shm_gen(ngx_http_autotls_warm_next);

        if (ce->gen != gen) {
            ngx_http_autotls_cache_load(ce, certs[ngx_http_autotls_warm_next],
                                        ev->log);
            ce->gen = gen;
        }

        ngx_http_autotls_warm_next++;

        if (ngx_http_autotls_msec() - start >= 2) {
            /*
             * Parsing costs ~1 ms a certificate (mostly the key decoder):
             * go on after the next round of network events rather than
             * after a timer, so an idle worker fills its cache at full
             * speed and a busy one is never held for more than ~2 ms.
             */
            ngx_post_event(ev, &ngx_posted_next_events);
            return;
        }
    }
}


ngx_int_t
ngx_http_autotls_ssl_init_worker(ngx_cycle_t *cycle)
{
    ngx_http_autotls_ncache = ngx_http_autotls_mcf->certs.nelts;

    ngx_http_autotls_cache = ngx_pcalloc(cycle->pool,
                                         ngx_http_autotls_ncache
                                         * sizeof(ngx_http_autotls_cache_t));
    if (ngx_http_autotls_cache == NULL) {
        return NGX_ERROR;
    }

    ngx_http_autotls_event_init(&ngx_http_autotls_warm_ev,
                                ngx_http_autotls_warm, cycle->log);
    ngx_http_autotls_warm_next = 0;

    if (ngx_http_autotls_store && ngx_http_autotls_mcf->preload) {
        ngx_add_timer(&ngx_http_autotls_warm_ev, 20);
    }

    return NGX_OK;
}


void
ngx_http_autotls_ssl_exit_worker(void)
{
    ngx_uint_t  i, k;

    if (ngx_http_autotls_warm_ev.timer_set) {
        ngx_del_timer(&ngx_http_autotls_warm_ev);
    }

    if (ngx_http_autotls_warm_ev.posted) {
        ngx_delete_posted_event(&ngx_http_autotls_warm_ev);
    }

    for (i = 0; i < ngx_http_autotls_ncache; i++) {
        for (k = 0; k < ATLS_KEY_TYPE_MAX; k++) {
            ngx_http_autotls_pair_free(&ngx_http_autotls_cache[i].pair[k]);
        }
        ngx_http_autotls_pair_free(&ngx_http_autotls_cache[i].fallback);
    }

    ngx_http_autotls_ncache = 0;
    ngx_http_autotls_cache = NULL;

    for (i = 0; i < ngx_http_autotls_ninter; i++) {
        X509_free(ngx_http_autotls_inter[i]);
    }

    free(ngx_http_autotls_inter);
    ngx_http_autotls_inter = NULL;
    ngx_http_autotls_ninter = 0;
    ngx_http_autotls_inter_cap = 0;
}


/* replaces each intermediate of chain by the worker's shared copy */
static void
ngx_http_autotls_share_chain(STACK_OF(X509) *chain)
{
    int          i;
    X509        *x, *y, **v;
    ngx_uint_t   k;

    for (i = 0; i < sk_X509_num(chain); i++) {
        x = sk_X509_value(chain, i);

        for (k = 0; k < ngx_http_autotls_ninter; k++) {
            y = ngx_http_autotls_inter[k];
            /* X509_cmp: cached SHA-1 of the DER, then the DER itself */
            if (X509_cmp(x, y) == 0) {
                break;
            }
        }

        if (k < ngx_http_autotls_ninter) {
            if (X509_up_ref(y) == 1) {
                (void) sk_X509_set(chain, i, y);
                X509_free(x);
            }
            continue;
        }

        if (ngx_http_autotls_ninter == 64) {
            /* not a handful of CAs: keep this copy private */
            continue;
        }

        if (ngx_http_autotls_ninter == ngx_http_autotls_inter_cap) {
            k = ngx_http_autotls_inter_cap ? 2 * ngx_http_autotls_inter_cap : 4;
            v = realloc(ngx_http_autotls_inter, k * sizeof(X509 *));
            if (v == NULL) {
                continue;
            }
            ngx_http_autotls_inter = v;
            ngx_http_autotls_inter_cap = k;
        }

        if (X509_up_ref(x) == 1) {
            ngx_http_autotls_inter[ngx_http_autotls_ninter++] = x;
        }
    }
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


static void
ngx_http_autotls_pair_free(ngx_http_autotls_pair_t *p)
{
    X509_free(p->leaf);
    EVP_PKEY_free(p->key);
    if (p->chain) {
        sk_X509_pop_free(p->chain, X509_free);
    }
    ngx_memzero(p, sizeof(ngx_http_autotls_pair_t));
}


/* reads the certificate's key types from the store: once per generation */
static void
ngx_http_autotls_cache_load(ngx_http_autotls_cache_t *ce,
    ngx_http_autotls_cert_t *cert, ngx_log_t *log)
{
    int                       rc;
    char                      err[256];
    size_t                    k;
    EVP_PKEY                 *key;
    STACK_OF(X509)           *chain;
    ngx_uint_t                j, n_old;
    atls_key_type_t           kt;
    ngx_http_autotls_pair_t  *p, old[ATLS_KEY_TYPE_MAX];

    /*
     * The pairs served so far are kept aside: a key type whose file cannot
     * be read now (a transient error, a file being replaced) keeps the
     * certificate this worker had instead of falling back to self-signed.
     */
    ngx_memcpy(old, ce->pair, sizeof(old));
    n_old = ce->n;
    ngx_memzero(ce->pair, sizeof(ce->pair));
    ce->n = 0;

    if (ngx_http_autotls_store == NULL) {
        goto done;
    }

    for (k = 0; k < cert->issuer->is.n_key_types; k++) {
        key = NULL;
        chain = NULL;
        err[0] = '\0';

        rc = atls_store_load_cert(ngx_http_autotls_store, cert->id,
                                  cert->issuer->is.key_types[k], &key, &chain,
                                  err, sizeof(err));
        if (rc != ATLS_STORE_OK || key == NULL || chain == NULL
            || sk_X509_num(chain) < 1)
        {
            EVP_PKEY_free(key);
            if (chain) {
                sk_X509_pop_free(chain, X509_free);
            }

            if (rc == ATLS_STORE_NOTFOUND) {
                continue;
            }

            kt = cert->issuer->is.key_types[k];

            for (j = 0; j < n_old; j++) {
                if (old[j].key != NULL && atls_key_type_of(old[j].key) == kt) {
                    ce->pair[ce->n++] = old[j];
                    ngx_memzero(&old[j], sizeof(ngx_http_autotls_pair_t));
                    break;
                }
            }

            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "autotls: cannot load certificate \"%s\" (%s): %s%s",
                          cert->id, atls_key_type_name(kt), err,
                          j < n_old ? "; the one loaded before is kept" : "");
            continue;
        }

        p = &ce->pair[ce->n++];
        p->key = key;
        p->leaf = sk_X509_shift(chain);
        p->chain = chain;

        ngx_http_autotls_share_chain(chain);

        /* before the leaf is published to the handshake path */
        ngx_http_autotls_stapling_load(cert, cert->issuer->is.key_types[k],
                                       p->leaf, chain,
                                       &ce->staple_refused[k], log);
    }

done:

    for (j = 0; j < n_old; j++) {
        ngx_http_autotls_pair_free(&old[j]);
    }
}


static ngx_int_t
ngx_http_autotls_cache_fallback(ngx_http_autotls_cache_t *ce,
    ngx_http_autotls_cert_t *cert, ngx_log_t *log)
{
    if (ce->fallback.leaf) {
        return NGX_OK;
    }

    /* EC P-256 whatever the configured types: cheap enough to make lazily */
    if (atls_selfsigned_cert((const char *const *) cert->names, cert->n_names,
                             ATLS_KEY_EC256, &ce->fallback.leaf,
                             &ce->fallback.key)
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "autotls: cannot create a fallback certificate for "
                      "\"%s\"", cert->id);
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, log, 0,
                  "autotls: serving a self-signed fallback certificate for "
                  "\"%s\" until the real one is issued", cert->id);

    return NGX_OK;
}


static int
ngx_http_autotls_cert_cb(SSL *ssl, void *arg)
{
    ngx_uint_t                    k;
    ngx_connection_t             *c;
    ngx_atomic_uint_t             gen;
    ngx_http_connection_t        *hc;
    ngx_http_autotls_cert_t      *cert, *found;
    ngx_http_autotls_cache_t     *ce;
    ngx_http_autotls_srv_conf_t  *ascf;

    c = ngx_ssl_get_connection(ssl);
    if (c == NULL || ngx_http_autotls_cache == NULL) {
        return 1;
    }

    hc = c->data;

    /* the servername callback has already switched to the named server */
    ascf = ngx_http_get_module_srv_conf(hc->conf_ctx, ngx_http_autotls_module);
    if (ascf == NULL || ascf->cert == NULL) {
        return 1;
    }

    cert = ascf->cert;

    if (ascf->by_name) {
        const char  *sni;

        sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        if (sni != NULL) {
            found = ngx_http_autotls_find(ascf, (const u_char *) sni,
                                          ngx_strlen(sni));
            if (found != NULL) {
                cert = found;
            }
        }
    }

    if (cert->index >= ngx_http_autotls_ncache) {
        return 1;
    }

    ce = &ngx_http_autotls_cache[cert->index];

    gen = ngx_http_autotls_shm_gen(cert->index);

    if (ce->gen != gen) {
        ngx_http_autotls_cache_load(ce, cert, c->log);
        ce->gen = gen;
    }

    SSL_certs_clear(ssl);

    if (ce->n == 0) {
        if (ngx_http_autotls_cache_fallback(ce, cert, c->log) != NGX_OK) {
            return 0;
        }

        if (!SSL_use_cert_and_key(ssl, ce->fallback.leaf, ce->fallback.key,
                                  NULL, 1))
        {
            ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                          "autotls: SSL_use_cert_and_key() failed");
            return 0;
        }

        return 1;
    }

    /*
     * With an ECDSA and an RSA certificate both are installed: OpenSSL
     * then picks by the client's signature algorithms and cipher suites.
     */
    for (k = 0; k < ce->n; k++) {
        if (!SSL_use_cert_and_key(ssl, ce->pair[k].leaf, ce->pair[k].key,
                                  ce->pair[k].chain, 1))
        {
            ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                          "autotls: SSL_use_cert_and_key() failed for \"%s\"",
                          cert->id);
            return 0;
        }
    }

    return 1;
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
