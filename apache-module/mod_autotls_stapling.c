/*
 * OCSP stapling for AutoTLS hosts.  The watchdog's check passes fetch and
 * verify responses and keep them in the store (the core's scheduler);
 * this file is the serving side: when a child's cache parses a
 * certificate, the stored response is verified once and attached to the
 * parsed leaf (atls_staple_load), and a status callback on the host's
 * SSL_CTX hands it to OpenSSL per handshake (atls_staple_serve: a pointer
 * and a time compare; no disk, no lock, no parse).
 *
 * mod_ssl's own stapling (SSLUseStapling) asks the responder from the
 * handshake path, for the certificates it loaded from files at start-up;
 * on an AutoTLS host those are only the self-signed fallbacks, which it
 * cannot staple.  So the callback installed here replaces mod_ssl's on
 * AutoTLS hosts' contexts, always: mod_ssl runs the init_server hook only
 * once it has configured every context, its stapling included.  Other
 * hosts keep mod_ssl's.
 */
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/ssl.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "util_cfgtree.h"

#include "atls_staple.h"
#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

void
autotls_staple_attach(autotls_srv_conf_t *o, const char *id, atls_store_t *st,
                      atls_key_type_t kt, X509 *leaf, STACK_OF(X509) *rest)
{
    X509 *issuer = sk_X509_num(rest) > 0 ? sk_X509_value(rest, 0) : NULL;
    char err[256];

    if (o->issuer->stapling_off || issuer == NULL) {
        return;
    }
    err[0] = '\0';
    /* 0 with no reason: no response stored (none yet, or the leaf names
     * no responder): normal, and said nowhere */
    if (atls_staple_load(st, id, kt, leaf, issuer, time(NULL), err, sizeof(err)) <= 0
        && err[0] != '\0') {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, o->s,
                     "autotls: %s: the stored OCSP response for the %s certificate "
                     "is not stapled: %s", id, atls_key_type_name(kt), err);
    }
}

static int
autotls_status_cb(SSL *ssl, void *arg)
{
    /* -1: not a leaf autotls loaded (a fallback, a tls-alpn-01 challenge
     * certificate): nothing to staple either */
    return atls_staple_serve(ssl, time(NULL)) == 1 ? SSL_TLSEXT_ERR_OK
                                                   : SSL_TLSEXT_ERR_NOACK;
}

void
autotls_stapling_init_ctx(autotls_srv_conf_t *sc, SSL_CTX *ctx)
{
    if (sc->owner == NULL || sc->owner->issuer->stapling_off) {
        /* nobody staples on an AutoTLS host with stapling off: not mod_ssl
         * either, whose fetches would only ever be for the fallbacks */
        SSL_CTX_set_tlsext_status_cb(ctx, NULL);
        return;
    }
    SSL_CTX_set_tlsext_status_cb(ctx, autotls_status_cb);
    SSL_CTX_set_tlsext_status_arg(ctx, NULL);
}

/* ---- SSLUseStapling on an AutoTLS host -------------------------------- */

/* The last SSLUseStapling in d's list (and in <IfModule> and the like
 * within it): 1 on, 0 off, -1 not there. */
static int
autotls_tree_stapling(const ap_directive_t *d)
{
    int on = -1, sub;

    for (; d != NULL; d = d->next) {
        if (strcasecmp(d->directive, "SSLUseStapling") == 0) {
            on = d->args != NULL && strncasecmp(d->args, "on", 2) == 0;
        } else if (d->first_child != NULL && strncasecmp(d->directive, "<If", 3) == 0
                   && strcasecmp(d->directive, "<If") != 0
                   && strcasecmp(d->directive, "<ElseIf") != 0) {
            sub = autotls_tree_stapling(d->first_child);
            on = sub != -1 ? sub : on;
        }
    }
    return on;
}

int
autotls_stapling_conflict(const ap_directive_t *vhost)
{
    int on = vhost != NULL ? autotls_tree_stapling(vhost->first_child) : -1;

    /* the top level's is inherited by hosts without their own */
    return on != -1 ? on : autotls_tree_stapling(ap_conftree) == 1;
}
