/*
 * A tls-alpn-01 responder (RFC 8737) run in a thread while an order is open:
 * a TLS server that only speaks ALPN "acme-tls/1" and presents, for the SNI
 * name, the self-signed validation certificate atls_tls_alpn_cert() made.
 * The validator completes the handshake and hangs up; no application data.
 * Handshakes run concurrently, non-blocking, in the loop of standalone.c.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "cli.h"

static const unsigned char acme_alpn[] = "acme-tls/1";

typedef struct tls_entry_s {
    char                *name;      /* SNI the validator sends */
    X509                *cert;
    EVP_PKEY            *key;
    struct tls_entry_s  *next;
} tls_entry_t;

struct cli_tls_s {
    int              fd;
    int              stop_pipe[2];
    pthread_t        thread;
    pthread_mutex_t  lock;
    SSL_CTX         *ctx;
    tls_entry_t     *entries;
};

/* The offset of "acme-tls/1" in a wire-format protocol list, or -1. */
static long acme_alpn_offset(const unsigned char *in, size_t inlen)
{
    size_t i;

    for (i = 0; i < inlen; i += 1u + in[i]) {
        if (in[i] == sizeof(acme_alpn) - 1 && i + 1u + in[i] <= inlen
            && memcmp(in + i + 1, acme_alpn, sizeof(acme_alpn) - 1) == 0)
        {
            return (long) i;
        }
    }
    return -1;
}

/* RFC 8737 §3: the validation certificate is for validators only, which
 * always offer "acme-tls/1".  A client that sends no ALPN at all would never
 * reach the ALPN callback, so the decision is taken on the ClientHello. */
static int hello_check(SSL *ssl, int *alert, void *arg)
{
    const unsigned char *ext;
    size_t               len;

    (void) arg;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation,
                                  &ext, &len) != 1
        || len < 2 || (size_t) ((ext[0] << 8) | ext[1]) != len - 2
        || acme_alpn_offset(ext + 2, len - 2) < 0)
    {
        *alert = SSL_AD_NO_APPLICATION_PROTOCOL;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    long at = acme_alpn_offset(in, inlen);

    (void) ssl;
    (void) arg;
    if (at < 0) {
        /* RFC 8737 §3: this port only ever answers validators. */
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = in + at + 1;
    *outlen = in[at];
    return SSL_TLSEXT_ERR_OK;
}

/* An IP identifier is validated with its reverse-DNS name as SNI (RFC 8738 §6). */
static char *sni_for(const char *identifier)
{
    unsigned char a[16];
    char          buf[128], *p;
    int           i;

    if (inet_pton(AF_INET, identifier, a) == 1) {
        snprintf(buf, sizeof(buf), "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
        return atls_strdup(buf);
    }
    if (inet_pton(AF_INET6, identifier, a) == 1) {
        p = buf;
        for (i = 15; i >= 0; i--) {
            p += sprintf(p, "%x.%x.", a[i] & 0xf, a[i] >> 4);
        }
        strcpy(p, "ip6.arpa");
        return atls_strdup(buf);
    }
    return atls_strdup(identifier);
}

static int cert_select(SSL *ssl, void *arg)
{
    cli_tls_t   *t = arg;
    const char  *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    tls_entry_t *e;
    int          ok = 0;

    if (sni == NULL) {
        return 0;
    }
    pthread_mutex_lock(&t->lock);
    for (e = t->entries; e != NULL; e = e->next) {
        if (strcasecmp(e->name, sni) == 0) {
            ok = SSL_use_certificate(ssl, e->cert) == 1
                 && SSL_use_PrivateKey(ssl, e->key) == 1;
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (ok) {
        atls_log(ATLS_LOG_INFO, "tls-alpn-01: answered %s", sni);
    }
    return ok;
}

/* One connection is one non-blocking handshake; the validator hangs up
 * after it, so there is nothing to read or write afterwards. */
static void *tls_open(void *arg, int fd)
{
    cli_tls_t *t = arg;
    SSL       *ssl;

    ssl = SSL_new(t->ctx);
    if (ssl != NULL && SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ssl = NULL;
    }
    if (ssl != NULL) {
        SSL_set_accept_state(ssl);
    }
    ERR_clear_error();
    return ssl;
}

static int tls_step(void *arg, void *conn)
{
    SSL *ssl = conn;
    int  rc;

    rc = SSL_accept(ssl);
    if (rc == 1) {
        (void) SSL_shutdown(ssl);   /* best effort: one try, never waited for */
        return 0;
    }
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return POLLIN;
    case SSL_ERROR_WANT_WRITE:
        return POLLOUT;
    default:
        ERR_clear_error();
        return 0;
    }
}

static void tls_close(void *arg, void *conn)
{
    SSL_free(conn);
    ERR_clear_error();
}

static const cli_conn_ops_t tls_conn_ops = { tls_open, tls_step, tls_close };

static void *tls_thread(void *arg)
{
    cli_tls_t *t = arg;

    cli_accept_loop(t->fd, t->stop_pipe[0], &tls_conn_ops, t);
    OPENSSL_thread_stop();
    return NULL;
}

cli_tls_t *cli_tls_start(const char *addr, int port, char *err, size_t errlen)
{
    cli_tls_t *t;
    int        rc;

    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->stop_pipe[0] = t->stop_pipe[1] = -1;
    t->ctx = SSL_CTX_new(TLS_server_method());
    if (t->ctx == NULL
        || SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION) != 1)
    {
        snprintf(err, errlen, "cannot create a TLS context");
        goto failed;
    }
    SSL_CTX_set_client_hello_cb(t->ctx, hello_check, t);
    SSL_CTX_set_alpn_select_cb(t->ctx, alpn_select, t);
    SSL_CTX_set_cert_cb(t->ctx, cert_select, t);
    t->fd = cli_listen(addr, port, err, errlen);
    if (t->fd < 0) {
        goto failed;
    }
    if (pipe2(t->stop_pipe, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        close(t->fd);
        goto failed;
    }
    pthread_mutex_init(&t->lock, NULL);
    rc = pthread_create(&t->thread, NULL, tls_thread, t);
    if (rc != 0) {
        snprintf(err, errlen, "pthread_create: %s", strerror(rc));
        pthread_mutex_destroy(&t->lock);
        close(t->stop_pipe[0]);
        close(t->stop_pipe[1]);
        close(t->fd);
        goto failed;
    }
    return t;

failed:
    SSL_CTX_free(t->ctx);
    free(t);
    return NULL;
}

int cli_tls_add(cli_tls_t *t, const char *identifier, const char *key_authz,
                char *err, size_t errlen)
{
    tls_entry_t *e;

    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (atls_tls_alpn_cert(identifier, key_authz, &e->cert, &e->key) != 0) {
        snprintf(err, errlen, "cannot make the tls-alpn-01 certificate for %s",
                 identifier);
        free(e);
        return -1;
    }
    e->name = sni_for(identifier);
    pthread_mutex_lock(&t->lock);
    e->next = t->entries;
    t->entries = e;
    pthread_mutex_unlock(&t->lock);
    return 0;
}

static void entry_free(tls_entry_t *e)
{
    free(e->name);
    X509_free(e->cert);
    EVP_PKEY_free(e->key);
    free(e);
}

void cli_tls_remove(cli_tls_t *t, const char *identifier)
{
    tls_entry_t **pp, *e;
    char         *name = sni_for(identifier);

    pthread_mutex_lock(&t->lock);
    for (pp = &t->entries; *pp != NULL; pp = &(*pp)->next) {
        if (strcasecmp((*pp)->name, name) == 0) {
            e = *pp;
            *pp = e->next;
            entry_free(e);
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    free(name);
}

void cli_tls_stop(cli_tls_t *t)
{
    tls_entry_t *e, *next;
    ssize_t      n;

    if (t == NULL) {
        return;
    }
    do {
        n = write(t->stop_pipe[1], "x", 1);
    } while (n < 0 && errno == EINTR);
    pthread_join(t->thread, NULL);
    close(t->stop_pipe[0]);
    close(t->stop_pipe[1]);
    close(t->fd);
    for (e = t->entries; e != NULL; e = next) {
        next = e->next;
        entry_free(e);
    }
    pthread_mutex_destroy(&t->lock);
    SSL_CTX_free(t->ctx);
    free(t);
}
