/*
 * autotls for nginx: OCSP stapling of the certificates autotls manages.
 *
 * The core's scheduler fetches, verifies and stores the responses
 * (common/atls_sched.h); a new one bumps the certificate's generation, so
 * each worker reparses the certificate at its next handshake and, at that
 * moment only, attaches the stored response to the parsed leaf
 * (atls_staple_load).  The status callback then costs a pointer lookup, a
 * time compare and a copy (atls_staple_serve).
 *
 * nginx's own ssl_stapling only knows the certificates of its
 * configuration, and sets its status callback on a server's context when
 * the ssl module merges, before any postconfiguration.  autotls installs
 * its callback over it and keeps the one it replaces: a handshake that
 * serves a certificate autotls did not load (a static server sharing the
 * listener's context) is answered by nginx's callback, as before.  On an
 * autotls server itself "ssl_stapling on" is refused while its issuer
 * staples: two sources of staples for one certificate could only disagree.
 */

#include "ngx_http_autotls_module.h"
#include <ngx_http_ssl_module.h>

#include "atls_staple.h"


/* the status callback the module replaced on one context */
typedef struct {
    int                           (*cb)(SSL *ssl, void *arg);
    void                           *arg;
} ngx_http_autotls_status_prev_t;


static int ngx_http_autotls_status_cb(SSL *ssl, void *arg);


ngx_int_t
ngx_http_autotls_stapling_check(ngx_conf_t *cf,
    ngx_http_autotls_srv_conf_t *ascf, ngx_http_ssl_srv_conf_t *sscf)
{
    if (ascf->cert == NULL || sscf == NULL || sscf->stapling != 1
        || ascf->cert->issuer->is.stapling_off)
    {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                  "\"ssl_stapling\" is on in a server with \"autotls %V\": "
                  "autotls staples its certificates itself; remove "
                  "ssl_stapling from this server or set stapling off in "
                  "autotls_issuer %V in %s:%ui",
                  &ascf->issuer, &ascf->issuer, ascf->file, ascf->line);

    return NGX_ERROR;
}


ngx_int_t
ngx_http_autotls_stapling_setup(ngx_conf_t *cf, SSL_CTX *ctx)
{
    int                             (*cb)(SSL *, void *);
    void                             *arg;
    ngx_http_autotls_status_prev_t   *prev;

    cb = NULL;
    arg = NULL;

    (void) SSL_CTX_get_tlsext_status_cb(ctx, &cb);
    (void) SSL_CTX_get_tlsext_status_arg(ctx, &arg);

    if (cb == ngx_http_autotls_status_cb) {
        /* a context shared by two servers: chaining to ourselves loops */
        return NGX_OK;
    }

    /* lives as long as the context: both belong to this cycle */
    prev = ngx_palloc(cf->pool, sizeof(ngx_http_autotls_status_prev_t));
    if (prev == NULL) {
        return NGX_ERROR;
    }

    prev->cb = cb;
    prev->arg = arg;

    SSL_CTX_set_tlsext_status_cb(ctx, ngx_http_autotls_status_cb);
    SSL_CTX_set_tlsext_status_arg(ctx, prev);

    return NGX_OK;
}


static int
ngx_http_autotls_status_cb(SSL *ssl, void *arg)
{
    ngx_http_autotls_status_prev_t  *prev = arg;

    switch (atls_staple_serve(ssl, ngx_time())) {

    case 1:
        return SSL_TLSEXT_ERR_OK;

    case 0:
        return SSL_TLSEXT_ERR_NOACK;

    default:
        /* not a certificate autotls loaded: nginx's ssl_stapling may know */
        if (prev != NULL && prev->cb != NULL) {
            return prev->cb(ssl, prev->arg);
        }

        return SSL_TLSEXT_ERR_NOACK;
    }
}


/*
 * At each (re)load of a certificate into the worker's cache: the response
 * stored for it, attached to its leaf.  *refused says a refusal was
 * already logged for this certificate and key type, so that a worker logs
 * it once, not at every generation, until a response is attached again.
 */
void
ngx_http_autotls_stapling_load(ngx_http_autotls_cert_t *cert,
    atls_key_type_t kt, X509 *leaf, STACK_OF(X509) *chain,
    u_char *refused, ngx_log_t *log)
{
    int    rc;
    char   err[256];
    X509  *issuer;

    if (cert->issuer->is.stapling_off || ngx_http_autotls_store == NULL) {
        return;
    }

    issuer = sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
    err[0] = '\0';

    rc = atls_staple_load(ngx_http_autotls_store, cert->id, kt, leaf, issuer,
                          ngx_time(), err, sizeof(err));

    if (rc == 1) {
        *refused = 0;
        return;
    }

    if (rc == -1) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "autotls: cannot load the OCSP response of \"%s\" "
                      "(%s): %s", cert->id, atls_key_type_name(kt), err);
        return;
    }

    /* no response stored is normal: not asked yet, or no responder */
    if (err[0] == '\0' || *refused) {
        return;
    }

    *refused = 1;

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "autotls: not stapling the stored OCSP response of \"%s\" "
                  "(%s): %s", cert->id, atls_key_type_name(kt), err);
}
