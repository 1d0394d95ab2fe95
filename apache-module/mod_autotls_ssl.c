/*
 * Serving: the fallbacks (one per key type) handed to mod_ssl at start-up,
 * the certificate callback on mod_ssl's contexts (per-child cache of parsed
 * objects, reloaded only when the shared generation changes), and tls-alpn-01
 * through ALPN "acme-tls/1" and mod_ssl's ssl_answer_challenge hook.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/crypto.h>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_ssl.h"
#include "mod_ssl.h"
#include "apr_strings.h"

#include "atls_job.h"
#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

/* Debian ships no mod_ssl_openssl.h; this optional hook exists in its
 * mod_ssl and hands each server's SSL_CTX to interested modules. */
APR_DECLARE_EXTERNAL_HOOK(ssl, SSL, int, init_server,
                          (server_rec *s, apr_pool_t *p, int is_proxy, SSL_CTX *ctx))

atls_store_t *
autotls_store_open(server_rec *s)
{
    char err[256];
    atls_store_t *st = atls_store_fs_open(autotls_global.store_dir, err, sizeof(err));

    if (st == NULL) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "autotls: store %s: %s",
                     autotls_global.store_dir, err);
    }
    return st;
}

/* ---- fallback certificates ------------------------------------------ */

/* One self-signed fallback per configured key type, so that a client that
 * accepts only one of them (RSA-only, say) completes its handshake both
 * before any certificate exists and while only the other type's has been
 * issued.  The store refuses a pair that does not match (half-written, or
 * tampered with); this also wants it to cover the host's names now. */
static int
autotls_fallback_load(atls_store_t *st, autotls_srv_conf_t *sc, atls_key_type_t kt,
                      EVP_PKEY **key, STACK_OF(X509) **chain)
{
    char err[256];

    if (atls_store_load_fallback(st, sc->cert_id, kt, key, chain, err, sizeof(err))
        != ATLS_STORE_OK) {
        return -1;
    }
    if (atls_chain_check(*chain, *key, sc->names, sc->n_names, err, sizeof(err)) != 0) {
        atls_chain_free(*chain);
        EVP_PKEY_free(*key);
        *chain = NULL;
        *key = NULL;
        return -1;
    }
    return 0;
}

static int
autotls_fallback_make(atls_store_t *st, autotls_srv_conf_t *sc, atls_key_type_t kt,
                      EVP_PKEY **key, STACK_OF(X509) **chain, char *err, size_t errlen)
{
    X509 *x = NULL;

    if (atls_selfsigned_cert(sc->names, sc->n_names, kt, &x, key) != 0) {
        snprintf(err, errlen, "cannot make a self-signed %s certificate",
                 atls_key_type_name(kt));
        return -1;
    }
    if (atls_store_save_fallback(st, sc->cert_id, kt, *key, x, err, errlen)
        != ATLS_STORE_OK) {
        goto failed;
    }
    *chain = sk_X509_new_null();
    if (*chain == NULL || !sk_X509_push(*chain, x)) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }
    return 0;
failed:
    X509_free(x);
    atls_chain_free(*chain);
    EVP_PKEY_free(*key);
    *chain = NULL;
    *key = NULL;
    return -1;
}

/*
 * mod_ssl opens certificate files by path, in the parent, as root, and
 * follows links: a path into the store would let the worker user, who owns
 * the store, swap a file for a link between our check and mod_ssl's open.
 * So mod_ssl gets copies, in a directory of the parent's own below
 * DefaultRuntimeDir, of the fallback just read (and checked) through the
 * store, which reads as the store's owner and never through a link.
 */
static const char *
autotls_fallback_export(apr_pool_t *p, const char *name, const char *pem,
                        char *err, size_t errlen)
{
    const char *dir = ap_runtime_dir_relative(p, "autotls-fallback");
    const char *out;
    size_t len = strlen(pem);
    struct stat sb;
    ssize_t w;
    int fd;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "mkdir %s: %s", dir, strerror(errno));
        return NULL;
    }
    if (lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || sb.st_uid != geteuid()
        || (sb.st_mode & 077) != 0) {
        snprintf(err, errlen, "%s is not a private directory of this process's user", dir);
        return NULL;
    }
    out = apr_pstrcat(p, dir, "/", name, NULL);
    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    w = fd >= 0 ? write(fd, pem, len) : -1;
    if (fd < 0 || w != (ssize_t) len || fchmod(fd, 0600) != 0 || close(fd) != 0) {
        snprintf(err, errlen, "write %s: %s", out, strerror(errno));
        out = NULL;
    }
    return out;
}

/* Hands one fallback to mod_ssl as a certificate and a key file. */
static int
autotls_fallback_hand(apr_pool_t *p, autotls_srv_conf_t *sc, atls_key_type_t kt,
                      EVP_PKEY *key, STACK_OF(X509) *chain, const char **crt_file,
                      const char **key_file, char *err, size_t errlen)
{
    const char *base = apr_pstrcat(p, "fallback_", sc->cert_id, "_",
                                   atls_key_type_name(kt), NULL);
    char *crt = atls_chain_to_pem(chain), *kpem = atls_key_to_pem(key);

    *crt_file = *key_file = NULL;
    if (crt == NULL || kpem == NULL) {
        snprintf(err, errlen, "cannot encode the fallback certificate");
    } else {
        *crt_file = autotls_fallback_export(p, apr_pstrcat(p, base, ".crt", NULL), crt,
                                            err, errlen);
        if (*crt_file != NULL) {
            *key_file = autotls_fallback_export(p, apr_pstrcat(p, base, ".key", NULL),
                                                kpem, err, errlen);
        }
    }
    if (kpem != NULL) {
        OPENSSL_cleanse(kpem, strlen(kpem));
    }
    free(kpem);
    free(crt);
    return *key_file != NULL ? 0 : -1;
}

/* mod_ssl refuses an SSLEngine host without certificate files: give it a
 * self-signed one per key type for the host's names.  This is the normal
 * certificate hook, not the "fallback" one, because mod_ssl answers every
 * request with 503 for fallback certificates, and the cert callback
 * replaces ours anyway as soon as the real certificate exists. */
static int
autotls_add_cert_files(server_rec *s, apr_pool_t *p, apr_array_header_t *cert_files,
                       apr_array_header_t *key_files)
{
    autotls_srv_conf_t *sc = autotls_config_get(s);
    const char *crt_copy, *key_copy;
    atls_key_type_t kts[ATLS_KEY_TYPE_MAX];
    atls_store_t *st;
    char err[256];
    size_t i, n;
    int rc = DECLINED;

    autotls_discover_host(s, cert_files);
    if (sc->enabled != 1 || sc->owner == NULL || cert_files->nelts > 0) {
        return DECLINED;
    }
    sc = sc->owner;
    st = autotls_store_open(s);
    if (st == NULL) {
        return DECLINED;
    }
    n = atls_job_key_types(sc->issuer, kts);
    /* what is not one of these types' (the single fallback of earlier
     * versions, a type no longer configured) goes */
    if (atls_store_prune_fallbacks(st, sc->cert_id, kts, n, err, sizeof(err))
        != ATLS_STORE_OK) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "autotls: %s: cannot remove old fallback certificates: %s",
                     sc->cert_id, err);
    }
    for (i = 0; i < n; i++) {
        EVP_PKEY *key = NULL;
        STACK_OF(X509) *chain = NULL;

        if (autotls_fallback_load(st, sc, kts[i], &key, &chain) != 0) {
            if (autotls_fallback_make(st, sc, kts[i], &key, &chain,
                                      err, sizeof(err)) != 0) {
                ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                             "autotls: %s: cannot write the %s fallback certificate: %s",
                             sc->cert_id, atls_key_type_name(kts[i]), err);
                continue;
            }
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                         "autotls: %s: wrote a self-signed %s fallback certificate",
                         sc->cert_id, atls_key_type_name(kts[i]));
        }
        if (autotls_fallback_hand(p, sc, kts[i], key, chain, &crt_copy, &key_copy,
                                  err, sizeof(err)) != 0) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                         "autotls: %s: cannot hand the %s fallback certificate to "
                         "mod_ssl: %s", sc->cert_id, atls_key_type_name(kts[i]), err);
        } else {
            APR_ARRAY_PUSH(cert_files, const char *) = crt_copy;
            APR_ARRAY_PUSH(key_files, const char *) = key_copy;
            rc = OK;
        }
        atls_chain_free(chain);
        EVP_PKEY_free(key);
    }
    atls_store_close(st);
    return rc;
}

/* 1 when name is one of the host's own (ServerName, ServerAlias, a
 * wildcard alias covering it). */
static int
autotls_own_name(const autotls_srv_conf_t *o, const char *name)
{
    const char *dot = strchr(name, '.');
    size_t i;

    for (i = 0; i < o->n_names; i++) {
        const char *n = o->names[i];

        if (strcmp(n, name) == 0
            || (n[0] == '*' && n[1] == '.' && dot != NULL && strcmp(n + 1, dot) == 0)) {
            return 1;
        }
    }
    return 0;
}

/* A dynamic home's handshake for a name not its own: 1 handled (the
 * name's certificate installed, or the home's to be served: *home_cert),
 * 0 refused (AutoTLSDynamicUnknown reject). */
static int
autotls_cert_dynamic(SSL *ssl, autotls_srv_conf_t *sc, const char *sni, int *home_cert)
{
    char name[256], esc[300];
    size_t len = strlen(sni);
    int rc;

    *home_cert = 1;
    if (len >= sizeof(name) || !autotls_name_ok(sni)) {
        rc = 0;
    } else {
        memcpy(name, sni, len + 1);
        ap_str_tolower(name);
        if (name[len - 1] == '.') {
            name[len - 1] = '\0';
        }
        if (autotls_own_name(sc->owner, name)) {
            return 1;
        }
        rc = autotls_dyn_serve(ssl, sc->owner, name);
        /* on demand: a new name (or one registered, still without its
         * certificate) may wait here for it (mod_autotls_odwait.c) */
        if ((rc == 0 || rc == 2) && sc->owner->dynamic == AUTOTLS_ON_DEMAND
            && autotls_odwait_handshake(sc->owner, name, rc == 0)) {
            rc = autotls_dyn_serve(ssl, sc->owner, name);
        }
    }
    if (rc == 1) {
        *home_cert = 0;
        return 1;
    }
    if (rc == 2 || sc->dynamic_unknown != AUTOTLS_UNKNOWN_REJECT) {
        return rc >= 0;
    }
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, sc->s,
                 "autotls: handshake for %s refused: not a name this host serves "
                 "(AutoTLSDynamicUnknown reject)", atls_log_escape(sni, esc, sizeof(esc)));
    return 0;
}

static int
autotls_cert_cb(SSL *ssl, void *arg)
{
    autotls_srv_conf_t *sc = arg;
    autotls_cache_t *c = sc->cache;
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    const char *sni;
    uint64_t gen;
    size_t i, have;
    int ok = 1, home_cert = 1;

    /* a tls-alpn-01 handshake carries the challenge certificate that
     * mod_ssl set from ssl_answer_challenge: leave it alone */
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    if (alpn_len == sizeof(AUTOTLS_ACME_TLS_1) - 1
        && memcmp(alpn, AUTOTLS_ACME_TLS_1, alpn_len) == 0) {
        return 1;
    }
    sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (sc->dynamic != AUTOTLS_STATIC && sni != NULL && sni[0] != '\0') {
        if (!autotls_cert_dynamic(ssl, sc, sni, &home_cert)) {
            return 0;
        }
        if (!home_cert) {
            return 1;
        }
    }

    gen = autotls_generation_get();
    pthread_rwlock_rdlock(&c->lock);
    if (autotls_cache_stale(c, gen)) {
        pthread_rwlock_unlock(&c->lock);
        pthread_rwlock_wrlock(&c->lock);
        if (autotls_cache_stale(c, gen)) {
            autotls_cache_load(sc, c, gen);
        }
    }
    for (i = 0, have = 0; i < c->n; i++) {
        have += c->leaf[i] != NULL;
    }
    if (have == c->n && have > 0) {
        /* every key type has a certificate or its own fallback: drop what
         * mod_ssl holds so that nothing else can win the key-type choice */
        SSL_certs_clear(ssl);
    }
    /* per key type, the real certificate when there is one, else that
     * type's fallback; override=1 replaces mod_ssl's of the same type */
    for (i = 0; i < c->n && ok; i++) {
        if (c->leaf[i] != NULL) {
            ok = SSL_use_cert_and_key(ssl, c->leaf[i], c->key[i], c->extra[i], 1) == 1;
        }
    }
    autotls_cache_touch(c);
    pthread_rwlock_unlock(&c->lock);
    return ok;
}

static int
autotls_ssl_init_server(server_rec *s, apr_pool_t *p, int is_proxy, SSL_CTX *ctx)
{
    autotls_srv_conf_t *sc = autotls_config_get(s);

    if (is_proxy || sc->enabled != 1 || sc->cache == NULL) {
        return DECLINED;
    }
    SSL_CTX_set_cert_cb(ctx, autotls_cert_cb, sc);
    autotls_stapling_init_ctx(sc, ctx);
    return OK;
}

/* ---- tls-alpn-01 ------------------------------------------------------ */

static const char *
autotls_protocol_get(const conn_rec *c)
{
    return ap_get_module_config(c->conn_config, &autotls_module);
}

static int
autotls_alpn_pending(apr_pool_t *p, server_rec *s, const char *name, char **data,
                     size_t *len)
{
    char *lc, err[256];
    atls_store_t *st;
    int rc;

    if (name == NULL || *name == '\0') {
        return 0;
    }
    /* the store checks the name (and refuses any that is not a plain
     * host name or IP literal) */
    lc = apr_pstrdup(p, name);
    ap_str_tolower(lc);
    st = autotls_store_open(s);
    if (st == NULL) {
        return 0;
    }
    rc = atls_store_get_challenge(st, ATLS_CHAL_TLSALPN01, lc, data, len, err, sizeof(err));
    atls_store_close(st);
    return rc == ATLS_STORE_OK;
}

static int
autotls_protocol_propose(conn_rec *c, request_rec *r, server_rec *s,
                         const apr_array_header_t *offers,
                         apr_array_header_t *proposals)
{
    const char *sni;
    char *data = NULL;
    size_t len;

    if (r != NULL || offers == NULL || !autotls_global.any_tls_alpn
        || !ap_array_str_contains(offers, AUTOTLS_ACME_TLS_1) || !ap_ssl_conn_is_ssl(c)) {
        return DECLINED;
    }
    sni = ap_ssl_var_lookup(c->pool, s, c, NULL, "SSL_TLS_SNI");
    if (!autotls_alpn_pending(c->pool, s, sni, &data, &len)) {
        return DECLINED;
    }
    OPENSSL_cleanse(data, len);
    free(data);
    APR_ARRAY_PUSH(proposals, const char *) = AUTOTLS_ACME_TLS_1;
    return OK;
}

static int
autotls_protocol_switch(conn_rec *c, request_rec *r, server_rec *s, const char *protocol)
{
    if (r == NULL && protocol != NULL && strcmp(protocol, AUTOTLS_ACME_TLS_1) == 0) {
        ap_set_module_config(c->conn_config, &autotls_module, (void *) AUTOTLS_ACME_TLS_1);
        c->keepalive = AP_CONN_CLOSE;
        return OK;
    }
    return DECLINED;
}

static int
autotls_answer_challenge(conn_rec *c, const char *server_name, const char **pcert_pem,
                         const char **pkey_pem)
{
    char *data = NULL;
    char esc[300];
    size_t len;

    if (autotls_protocol_get(c) == NULL
        || !autotls_alpn_pending(c->pool, c->base_server, server_name, &data, &len)) {
        return DECLINED;
    }
    /* cert PEM followed by its (throw-away) key PEM in one string */
    *pcert_pem = apr_pstrmemdup(c->pool, data, len);
    *pkey_pem = NULL;
    OPENSSL_cleanse(data, len);
    free(data);
    ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, c,
                  "autotls: answering tls-alpn-01 challenge for %s",
                  atls_log_escape(server_name, esc, sizeof(esc)));
    return OK;
}

void
autotls_ssl_register_hooks(void)
{
    ap_hook_ssl_add_cert_files(autotls_add_cert_files, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ssl, init_server, autotls_ssl_init_server, NULL, NULL,
                      APR_HOOK_MIDDLE);
    ap_hook_protocol_propose(autotls_protocol_propose, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_protocol_switch(autotls_protocol_switch, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_protocol_get(autotls_protocol_get, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_ssl_answer_challenge(autotls_answer_challenge, NULL, NULL, APR_HOOK_MIDDLE);
}
