/*
 * The Redis client: one non-blocking connection, plain or TLS, as an
 * explicit state machine (CONNECTING -> TLS_HANDSHAKE -> SETUP -> READY,
 * or FAILED from anywhere) that an event loop drives by readiness.
 *
 * hiredis does the protocol: commands are formatted with
 * redisFormatCommandArgv into our output buffer, bytes read are fed to a
 * redisReader which hands back complete replies.  AUTH and SELECT are the
 * first commands in that buffer; their replies are taken here (SETUP) and
 * never reach the caller, whose commands, queued behind them, may already
 * be on the wire (pipelined).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "atls_redis.h"

#define CONN_READ_CHUNK  16384
#define CONN_SETUP_MAX   2     /* AUTH, SELECT */


struct atls_redis_s {
    atls_redis_state_t  state;
    int                 fd;
    struct addrinfo    *addrs, *addr_next;   /* the host's addresses, tried in turn */
    char               *where;          /* atls_redis_conf_describe */
    char               *host;
    int                 tls;
    SSL_CTX            *ctx;
    SSL                *ssl;
    int                 ssl_want;       /* WANT_* the last SSL call asked for */
    redisReader        *reader;
    redisReplyObjectFunctions  fn;      /* hiredis's, counted (conn_limit_*) */
    redisReplyObjectFunctions  base;
    size_t              reply_items;    /* of the reply being read */
    size_t              reply_bytes;
    const char         *limit_hit;      /* why the reader was stopped */
    char               *out;            /* formatted commands not yet written */
    size_t              outlen, outoff, outcap;
    size_t              pending;        /* caller's replies not yet taken */
    long long           ping_ms;        /* when the unanswered PING was
                                           queued (atls_redis_ping); 0: none */
    atls_redis_health_t *health;        /* conf->health: not owned */
    int                 timeout_ms;     /* conf->timeout_ms */
    const char         *setup[CONN_SETUP_MAX];   /* names of our own commands */
    int                 n_setup, setup_done;
    char                err[512];
};

static int conn_fail(atls_redis_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Closes the connection and records why ("redis <where>: <why>"). */
static int
conn_fail(atls_redis_t *c, const char *fmt, ...)
{
    char    what[400];
    va_list ap;

    if (c->state == ATLS_REDIS_FAILED) {
        return -1;   /* the first reason stays */
    }
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(c->err, sizeof(c->err), "redis %s: %s", c->where, what);
    c->state = ATLS_REDIS_FAILED;
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    /* nothing of a failed connection stays on the thread's error queue:
     * the host's own TLS (nginx's handshakes) reads it next */
    ERR_clear_error();
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    return -1;
}

/* The last OpenSSL error, or the certificate verification result. */
static const char *
conn_ssl_reason(atls_redis_t *c, char *buf, size_t len)
{
    long          vr = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    unsigned long e = ERR_peek_last_error();

    if (vr != X509_V_OK) {
        snprintf(buf, len, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
    } else if (e != 0) {
        ERR_error_string_n(e, buf, len);
    } else {
        snprintf(buf, len, "%s", errno ? strerror(errno) : "connection closed");
    }
    ERR_clear_error();
    return buf;
}

/* ---- what a reply may hold ------------------------------------------------- */

/* hiredis 0.14 puts no bound on a reply: "*100000000" allocates its
 * element vector at once, and a bulk string or an array grows with what
 * the server sends.  Its object functions are wrapped to count what the
 * reply being read holds, and refuse (NULL: the reader fails) beyond the
 * limits of atls_redis.h. */
static int
conn_limit_take(atls_redis_t *c, size_t items, size_t bytes)
{
    if (items > ATLS_REDIS_REPLY_ITEMS_MAX - c->reply_items) {
        c->limit_hit = "a reply with too many values (ATLS_REDIS_REPLY_ITEMS_MAX), "
                       "refused";
        return -1;
    }
    if (bytes > ATLS_REDIS_REPLY_BYTES_MAX - c->reply_bytes) {
        c->limit_hit = "a reply too large (ATLS_REDIS_REPLY_BYTES_MAX), refused";
        return -1;
    }
    c->reply_items += items;
    c->reply_bytes += bytes;
    return 0;
}

/* The values an array holds are counted when it starts (its vector is
 * allocated then), the bytes of a string when it is whole. */
static void *
conn_limit_string(const redisReadTask *task, char *str, size_t len)
{
    atls_redis_t *c = task->privdata;

    return conn_limit_take(c, 0, len) == 0 ? c->base.createString(task, str, len) : NULL;
}

static void *
conn_limit_array(const redisReadTask *task, int elements)
{
    atls_redis_t *c = task->privdata;

    if (elements < 0 || conn_limit_take(c, (size_t) elements, 0) != 0) {
        if (elements < 0) {
            c->limit_hit = "an array with a negative length, refused";
        }
        return NULL;
    }
    return c->base.createArray(task, elements);
}

static void
conn_limit_install(atls_redis_t *c)
{
    c->base = *c->reader->fn;
    c->fn = c->base;
    c->fn.createString = conn_limit_string;
    c->fn.createArray = conn_limit_array;
    c->reader->fn = &c->fn;
    c->reader->privdata = c;
}

/* The next complete reply from the reader (NULL: none yet); -1 when the
 * stream is broken or a reply is beyond the limits. */
static int
conn_next_reply(atls_redis_t *c, void **r)
{
    *r = NULL;
    if (redisReaderGetReply(c->reader, r) != REDIS_OK) {
        return conn_fail(c, "protocol error: %s", c->limit_hit != NULL ? c->limit_hit
                         : c->reader->errstr);
    }
    if (*r != NULL) {
        c->reply_items = c->reply_bytes = 0;
    }
    return 0;
}

/* ---- the output buffer ----------------------------------------------------- */

static void
conn_out_append(atls_redis_t *c, const char *cmd, size_t len)
{
    if (c->outoff > 0 && c->outoff == c->outlen) {
        /* all written: start over (and wipe what held the password) */
        explicit_bzero(c->out, c->outlen);
        c->outoff = c->outlen = 0;
    }
    if (c->outlen + len > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 1024;
        char  *n;

        while (cap < c->outlen + len) {
            cap *= 2;
        }
        n = malloc(cap);
        if (n == NULL) {
            abort();
        }
        if (c->out != NULL) {
            memcpy(n, c->out, c->outlen);
            explicit_bzero(c->out, c->outcap);
            free(c->out);
        }
        c->out = n;
        c->outcap = cap;
    }
    memcpy(c->out + c->outlen, cmd, len);
    c->outlen += len;
}

static int
conn_format(atls_redis_t *c, int argc, const char **argv, const size_t *argvlen)
{
    char *cmd = NULL;
    int   len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);

    if (len < 0 || cmd == NULL) {
        return -1;
    }
    conn_out_append(c, cmd, (size_t) len);
    explicit_bzero(cmd, (size_t) len);
    free(cmd);
    return 0;
}

/* AUTH [user] password, SELECT db: the first commands on the wire. */
static void
conn_queue_setup(atls_redis_t *c, const atls_redis_conf_t *conf)
{
    const char *argv[3];
    char        db[24];

    if (conf->password != NULL) {
        argv[0] = "AUTH";
        if (conf->user != NULL) {
            argv[1] = conf->user;
            argv[2] = conf->password;
        } else {
            argv[1] = conf->password;
        }
        if (conn_format(c, conf->user ? 3 : 2, argv, NULL) == 0) {
            c->setup[c->n_setup++] = "AUTH";
        }
    }
    if (conf->db > 0) {
        snprintf(db, sizeof(db), "%ld", conf->db);
        argv[0] = "SELECT";
        argv[1] = db;
        if (conn_format(c, 2, argv, NULL) == 0) {
            c->setup[c->n_setup++] = "SELECT";
        }
    }
}

/* ---- connecting ------------------------------------------------------------ */

/* A non-blocking connect to the next address of the host; -1 + c->err
 * (or err) when none is left. */
static int
conn_try_next(atls_redis_t *c, char *err, size_t errlen)
{
    int one = 1, e = 0;

    while (c->addr_next != NULL) {
        struct addrinfo *ai = c->addr_next;
        int              fd;

        c->addr_next = ai->ai_next;
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            e = errno;
            continue;
        }
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
            e = errno;
            close(fd);
            continue;
        }
        c->fd = fd;
        return 0;
    }
    snprintf(err, errlen, "redis %s: connect: %s", c->where, strerror(e ? e : ECONNREFUSED));
    return -1;
}

static int
conn_resolve(atls_redis_t *c, const atls_redis_conf_t *conf, char *err, size_t errlen)
{
    struct addrinfo hints;
    char            port[8];
    int             rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", conf->port);
    rc = getaddrinfo(conf->host, port, &hints, &c->addrs);
    if (rc == EAI_NONAME) {
        hints.ai_flags = AI_NUMERICSERV;
        rc = getaddrinfo(conf->host, port, &hints, &c->addrs);
    }
    if (rc != 0) {
        c->addrs = NULL;
        snprintf(err, errlen, "redis %s: resolving the host: %s", c->where, gai_strerror(rc));
        return -1;
    }
    c->addr_next = c->addrs;
    return conn_try_next(c, err, errlen);
}

static int
conn_tls_ctx(atls_redis_t *c, const atls_redis_conf_t *conf, char *err, size_t errlen)
{
    char why[256];

    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL) {
        snprintf(err, errlen, "redis %s: SSL_CTX_new() failed", c->where);
        return -1;
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                             | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (conf->ca_file != NULL
        ? SSL_CTX_load_verify_locations(c->ctx, conf->ca_file, NULL) != 1
        : SSL_CTX_set_default_verify_paths(c->ctx) != 1)
    {
        ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        ERR_clear_error();
        snprintf(err, errlen, "redis option ca_file %s: %s",
                 conf->ca_file ? conf->ca_file : "(system default)", why);
        return -1;
    }
    return 0;
}

/* SNI for a name, and the check of the name or IP address in the
 * server's certificate. */
static int
conn_tls_start(atls_redis_t *c)
{
    struct in6_addr a6;
    int             is_ip = inet_pton(AF_INET, c->host, &a6) == 1
                            || inet_pton(AF_INET6, c->host, &a6) == 1;

    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        return conn_fail(c, "TLS: SSL_new() failed");
    }
    if (is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host) != 1) {
            return conn_fail(c, "TLS: cannot check the IP address %s", c->host);
        }
    } else if (SSL_set_tlsext_host_name(c->ssl, c->host) != 1
               || SSL_set1_host(c->ssl, c->host) != 1)
    {
        return conn_fail(c, "TLS: cannot check the host name %s", c->host);
    }
    c->state = ATLS_REDIS_TLS_HANDSHAKE;
    c->ssl_want = ATLS_REDIS_WANT_WRITE;
    return 0;
}

atls_redis_t *
atls_redis_connect(const atls_redis_conf_t *conf, char *err, size_t errlen)
{
    atls_redis_t *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        abort();
    }
    c->fd = -1;
    c->state = ATLS_REDIS_CONNECTING;
    c->where = atls_redis_conf_describe(conf);
    c->host = strdup(conf->host ? conf->host : "");
    c->tls = conf->tls;
    c->health = conf->health;
    c->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : ATLS_REDIS_TIMEOUT_MS;
    c->reader = redisReaderCreate();
    if (c->host == NULL || c->reader == NULL) {
        abort();
    }
    conn_limit_install(c);
    if ((c->tls && conn_tls_ctx(c, conf, err, errlen) != 0)
        || conn_resolve(c, conf, err, errlen) != 0)
    {
        atls_redis_free(c);
        return NULL;
    }
    conn_queue_setup(c, conf);
    return c;
}

void
atls_redis_free(atls_redis_t *c)
{
    if (c == NULL) {
        return;
    }
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
    }
    if (c->ctx != NULL) {
        SSL_CTX_free(c->ctx);
    }
    ERR_clear_error();
    if (c->fd >= 0) {
        close(c->fd);
    }
    if (c->addrs != NULL) {
        freeaddrinfo(c->addrs);
    }
    if (c->reader != NULL) {
        redisReaderFree(c->reader);
    }
    if (c->out != NULL) {
        explicit_bzero(c->out, c->outcap);
        free(c->out);
    }
    free(c->where);
    free(c->host);
    free(c);
}

/* ---- driving it ------------------------------------------------------------ */

/* CONNECTING: done when the socket is writable and SO_ERROR is 0. */
static int
conn_step_connect(atls_redis_t *c)
{
    struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
    int           soerr = 0;
    socklen_t     sl = sizeof(soerr);

    if (poll(&pfd, 1, 0) <= 0) {
        return 0;   /* not yet: the caller was woken for nothing */
    }
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) {
        soerr = errno;
    }
    if (soerr != 0) {
        char why[300];

        /* the next address of the host, if it has one */
        close(c->fd);
        c->fd = -1;
        if (c->addr_next != NULL && conn_try_next(c, why, sizeof(why)) == 0) {
            return 0;
        }
        return conn_fail(c, "connect: %s", strerror(soerr));
    }
    if (c->tls) {
        return conn_tls_start(c);
    }
    c->state = c->n_setup ? ATLS_REDIS_SETUP : ATLS_REDIS_READY;
    return 0;
}

static int
conn_step_handshake(atls_redis_t *c)
{
    char why[300];
    int  rc, e;

    ERR_clear_error();
    errno = 0;
    rc = SSL_connect(c->ssl);
    if (rc == 1) {
        c->ssl_want = 0;
        c->state = c->n_setup ? ATLS_REDIS_SETUP : ATLS_REDIS_READY;
        return 0;
    }
    e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->ssl_want = e == SSL_ERROR_WANT_READ ? ATLS_REDIS_WANT_READ : ATLS_REDIS_WANT_WRITE;
        return 0;
    }
    return conn_fail(c, "TLS: %s", conn_ssl_reason(c, why, sizeof(why)));
}

/* Writes what it can: 0 (EAGAIN is fine), -1 failed. */
static int
conn_flush(atls_redis_t *c)
{
    char why[300];

    while (c->outoff < c->outlen) {
        size_t  left = c->outlen - c->outoff;
        ssize_t n;

        if (c->ssl != NULL) {
            int rc, e;

            ERR_clear_error();
            errno = 0;
            rc = SSL_write(c->ssl, c->out + c->outoff, left > INT32_MAX ? INT32_MAX : (int) left);
            if (rc <= 0) {
                e = SSL_get_error(c->ssl, rc);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    return 0;
                }
                return conn_fail(c, "TLS write: %s", conn_ssl_reason(c, why, sizeof(why)));
            }
            n = rc;
        } else {
            n = send(c->fd, c->out + c->outoff, left, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    return 0;
                }
                return conn_fail(c, "write: %s", strerror(errno));
            }
        }
        c->outoff += (size_t) n;
    }
    return 0;
}

/* Reads what there is into the reader: 0, 1 at end of stream, -1 failed. */
static int
conn_fill(atls_redis_t *c)
{
    char    buf[CONN_READ_CHUNK], why[300];
    ssize_t n;

    for (;;) {
        if (c->ssl != NULL) {
            int rc, e;

            ERR_clear_error();
            errno = 0;
            rc = SSL_read(c->ssl, buf, sizeof(buf));
            if (rc <= 0) {
                e = SSL_get_error(c->ssl, rc);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    return 0;
                }
                if (e == SSL_ERROR_ZERO_RETURN) {
                    return 1;
                }
                return conn_fail(c, "TLS read: %s", conn_ssl_reason(c, why, sizeof(why)));
            }
            n = rc;
        } else {
            n = recv(c->fd, buf, sizeof(buf), 0);
            if (n == 0) {
                return 1;
            }
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                    return 0;
                }
                return conn_fail(c, "read: %s", strerror(errno));
            }
        }
        /* the server said something: it is alive (atls_redis_ping) */
        c->ping_ms = 0;
        if (redisReaderFeed(c->reader, buf, (size_t) n) != REDIS_OK) {
            return conn_fail(c, "protocol error: %s", c->reader->errstr);
        }
        explicit_bzero(buf, (size_t) n);
        /* replies are taken one by one after this; what is not taken yet
         * is one reply being sent (a bulk string is only counted once
         * whole): beyond the limit, stop reading it */
        if (c->reader->len - c->reader->pos > (size_t) ATLS_REDIS_REPLY_BYTES_MAX + 65536) {
            return conn_fail(c, "protocol error: a reply too large "
                             "(ATLS_REDIS_REPLY_BYTES_MAX), refused");
        }
    }
}

/* Takes the replies to AUTH and SELECT: an error reply fails the
 * connection with the command's name and Redis's words. */
static int
conn_take_setup(atls_redis_t *c)
{
    while (c->setup_done < c->n_setup) {
        void       *r = NULL;
        redisReply *reply;
        char        msg[300];

        if (conn_next_reply(c, &r) != 0) {
            return -1;
        }
        if (r == NULL) {
            return 0;
        }
        reply = r;
        if (reply->type == REDIS_REPLY_ERROR) {
            snprintf(msg, sizeof(msg), "%s: %.*s", c->setup[c->setup_done],
                     (int) (reply->len > 200 ? 200 : reply->len), reply->str);
            freeReplyObject(reply);
            return conn_fail(c, "%s", msg);
        }
        freeReplyObject(reply);
        c->setup_done++;
    }
    c->state = ATLS_REDIS_READY;
    return 0;
}

static int
conn_step_stream(atls_redis_t *c)
{
    int eof;

    if (conn_flush(c) != 0) {
        return -1;
    }
    eof = conn_fill(c);
    if (eof < 0) {
        return -1;
    }
    if (c->state == ATLS_REDIS_SETUP && conn_take_setup(c) != 0) {
        return -1;
    }
    if (eof) {
        return conn_fail(c, "connection closed by the server");
    }
    return 0;
}

int
atls_redis_io(atls_redis_t *c, int events)
{
    (void) events;   /* every step finds out for itself what is ready */
    if (c->state == ATLS_REDIS_CONNECTING && conn_step_connect(c) != 0) {
        return -1;
    }
    if (c->state == ATLS_REDIS_TLS_HANDSHAKE && conn_step_handshake(c) != 0) {
        return -1;
    }
    if (c->state == ATLS_REDIS_SETUP || c->state == ATLS_REDIS_READY) {
        return conn_step_stream(c);
    }
    return c->state == ATLS_REDIS_FAILED ? -1 : 0;
}

int
atls_redis_wants(const atls_redis_t *c)
{
    switch (c->state) {
    case ATLS_REDIS_CONNECTING:
        return ATLS_REDIS_WANT_WRITE;
    case ATLS_REDIS_TLS_HANDSHAKE:
        return c->ssl_want;
    case ATLS_REDIS_SETUP:
    case ATLS_REDIS_READY:
        /* always read: replies, and the server closing */
        return ATLS_REDIS_WANT_READ | (c->outoff < c->outlen ? ATLS_REDIS_WANT_WRITE : 0);
    default:
        return 0;
    }
}

int
atls_redis_fd(const atls_redis_t *c)
{
    return c->fd;
}

atls_redis_state_t
atls_redis_state(const atls_redis_t *c)
{
    return c->state;
}

const char *
atls_redis_error(const atls_redis_t *c)
{
    return c->err;
}

size_t
atls_redis_pending(const atls_redis_t *c)
{
    return c->pending;
}

long long
atls_redis_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long
atls_redis_ping(atls_redis_t *c)
{
    static const char *ping[] = { "PING" };
    long long          now = atls_redis_now_ms();

    if (c->state != ATLS_REDIS_READY) {
        return -1;
    }
    if (c->ping_ms != 0) {
        return (long) (now - c->ping_ms);
    }
    if (atls_redis_send(c, 1, ping, NULL) != 0) {
        return -1;
    }
    /* a clock at 0 would read as "none pending" */
    c->ping_ms = now > 0 ? now : 1;
    return 0;
}

atls_redis_health_t *
atls_redis_health(const atls_redis_t *c)
{
    return c->health;
}

int
atls_redis_timeout_ms(const atls_redis_t *c)
{
    return c->timeout_ms;
}

int
atls_redis_send(atls_redis_t *c, int argc, const char **argv, const size_t *argvlen)
{
    if (c->state == ATLS_REDIS_FAILED || argc < 1) {
        return -1;
    }
    if (conn_format(c, argc, argv, argvlen) != 0) {
        return -1;
    }
    c->pending++;
    return 0;
}

/* any: also a reply no command asked for (a subscriber's messages,
 * redis_sub.c). */
static int
conn_reply(atls_redis_t *c, redisReply **reply, int any)
{
    void *r = NULL;

    *reply = NULL;
    if (c->state == ATLS_REDIS_FAILED) {
        return -1;
    }
    if (c->state != ATLS_REDIS_READY || (c->pending == 0 && !any)) {
        return 0;
    }
    if (conn_next_reply(c, &r) != 0) {
        return -1;
    }
    if (r == NULL) {
        return 0;
    }
    if (c->pending > 0) {
        c->pending--;
    }
    *reply = r;
    return 1;
}

int
atls_redis_reply(atls_redis_t *c, redisReply **reply)
{
    return conn_reply(c, reply, 0);
}

int
atls_redis_reply_any(atls_redis_t *c, redisReply **reply)
{
    return conn_reply(c, reply, 1);
}
