/*
 * A minimal HTTP/1.1 responder for http-01 (RFC 8555 §8.3), run in a thread
 * while an order is open: GET /.well-known/acme-challenge/TOKEN answers the
 * key authorization from an in-memory table, everything else is a 404.
 * Connections are served concurrently by the loop in standalone.c, each
 * within one total deadline, so a slow client cannot hold up a validator.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "atls_b64.h"
#include "cli.h"

#define HTTP_PREFIX   "/.well-known/acme-challenge/"
#define HTTP_MAX_REQ  8192

typedef struct http_entry_s {
    char                 *token;
    char                 *key_authz;
    struct http_entry_s  *next;
} http_entry_t;

struct cli_http_s {
    int              fd;
    int              stop_pipe[2];
    pthread_t        thread;
    pthread_mutex_t  lock;
    http_entry_t    *entries;
};

/* One connection: the request as it arrives, then the response as it leaves. */
typedef struct {
    int     fd;
    size_t  len;
    char    req[HTTP_MAX_REQ + 1];
    char   *out;
    size_t  out_len, out_off;
} http_conn_t;

/* A malloc'd response; body is omitted for HEAD (head_only). */
static char *respond(int status, const char *reason, const char *body,
                     int head_only, size_t *len)
{
    size_t blen = strlen(body);
    char  *out;
    int    n;

    n = asprintf(&out, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                 status, reason, blen, head_only ? "" : body);
    if (n < 0) {
        return NULL;
    }
    *len = (size_t) n;
    return out;
}

/* Looks the token up; returns a malloc'd key authorization or NULL. */
static char *lookup(cli_http_t *h, const char *token, size_t len)
{
    http_entry_t *e;
    char         *ka = NULL;

    if (!atls_b64url_is_token(token, len)) {
        return NULL;
    }
    pthread_mutex_lock(&h->lock);
    for (e = h->entries; e != NULL; e = e->next) {
        if (strlen(e->token) == len && memcmp(e->token, token, len) == 0) {
            ka = atls_strdup(e->key_authz);
            break;
        }
    }
    pthread_mutex_unlock(&h->lock);
    return ka;
}

/* The response to a complete request head in req (modified in place). */
static char *answer(cli_http_t *h, char *req, size_t *len)
{
    char *sp1, *sp2, *path, *ka, *q, *out;
    int   head;

    sp1 = strchr(req, ' ');
    sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL || memchr(req, '\n', (size_t) (sp2 - req)) != NULL) {
        return respond(400, "Bad Request", "bad request\n", 0, len);
    }
    *sp1 = '\0';
    *sp2 = '\0';
    path = sp1 + 1;
    head = strcmp(req, "HEAD") == 0;
    if (strcmp(req, "GET") != 0 && !head) {
        return respond(405, "Method Not Allowed", "method not allowed\n", 0, len);
    }
    q = strchr(path, '?');
    if (q != NULL) {
        *q = '\0';
    }
    ka = NULL;
    if (strncmp(path, HTTP_PREFIX, sizeof(HTTP_PREFIX) - 1) == 0) {
        path += sizeof(HTTP_PREFIX) - 1;
        ka = lookup(h, path, strlen(path));
    }
    if (ka == NULL) {
        return respond(404, "Not Found", "not found\n", head, len);
    }
    atls_log(ATLS_LOG_INFO, "http-01: answered token %s", path);
    out = respond(200, "OK", ka, head, len);
    free(ka);
    return out;
}

/* Reads what has arrived; 1 once the head is complete (or the peer is done
 * sending), 0 to wait for more, -1 on error. */
static int read_head(http_conn_t *c)
{
    ssize_t n;

    /* Only the request line and headers matter; a GET has no body. */
    while (c->len < HTTP_MAX_REQ) {
        n = recv(c->fd, c->req + c->len, HTTP_MAX_REQ - c->len, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        }
        if (n == 0) {
            return c->len > 0 ? 1 : -1;
        }
        c->len += (size_t) n;
        c->req[c->len] = '\0';
        if (strstr(c->req, "\r\n\r\n") != NULL || strstr(c->req, "\n\n") != NULL) {
            return 1;
        }
    }
    return 1;
}

static void *http_open(void *arg, int fd)
{
    http_conn_t *c = calloc(1, sizeof(*c));

    if (c != NULL) {
        c->fd = fd;
    }
    return c;
}

static int http_step(void *arg, void *conn)
{
    http_conn_t *c = conn;
    ssize_t      n;
    int          rc;

    if (c->out == NULL) {
        rc = read_head(c);
        if (rc <= 0) {
            return rc == 0 ? POLLIN : 0;
        }
        c->out = answer(arg, c->req, &c->out_len);
        if (c->out == NULL) {
            return 0;
        }
    }
    while (c->out_off < c->out_len) {
        n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return POLLOUT;
        }
        if (n <= 0) {
            return 0;
        }
        c->out_off += (size_t) n;
    }
    return 0;
}

static void http_close(void *arg, void *conn)
{
    http_conn_t *c = conn;

    free(c->out);
    free(c);
}

static const cli_conn_ops_t http_conn_ops = { http_open, http_step, http_close };

static void *http_thread(void *arg)
{
    cli_http_t *h = arg;

    cli_accept_loop(h->fd, h->stop_pipe[0], &http_conn_ops, h);
    return NULL;
}

cli_http_t *cli_http_start(const char *addr, int port, char *err, size_t errlen)
{
    cli_http_t *h;
    int         rc;

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->fd = cli_listen(addr, port, err, errlen);
    if (h->fd < 0) {
        free(h);
        return NULL;
    }
    if (pipe2(h->stop_pipe, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        close(h->fd);
        free(h);
        return NULL;
    }
    pthread_mutex_init(&h->lock, NULL);
    rc = pthread_create(&h->thread, NULL, http_thread, h);
    if (rc != 0) {
        snprintf(err, errlen, "pthread_create: %s", strerror(rc));
        close(h->stop_pipe[0]);
        close(h->stop_pipe[1]);
        close(h->fd);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
    }
    return h;
}

int cli_http_add(cli_http_t *h, const char *token, const char *key_authz)
{
    http_entry_t *e;

    if (!atls_b64url_is_token(token, strlen(token))) {
        return -1;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return -1;
    }
    e->token = atls_strdup(token);
    e->key_authz = atls_strdup(key_authz);
    pthread_mutex_lock(&h->lock);
    e->next = h->entries;
    h->entries = e;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

void cli_http_remove(cli_http_t *h, const char *token)
{
    http_entry_t **pp, *e;

    pthread_mutex_lock(&h->lock);
    for (pp = &h->entries; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->token, token) == 0) {
            e = *pp;
            *pp = e->next;
            free(e->token);
            free(e->key_authz);
            free(e);
            break;
        }
    }
    pthread_mutex_unlock(&h->lock);
}

void cli_http_stop(cli_http_t *h)
{
    http_entry_t *e, *next;
    ssize_t       n;

    if (h == NULL) {
        return;
    }
    do {
        n = write(h->stop_pipe[1], "x", 1);
    } while (n < 0 && errno == EINTR);
    pthread_join(h->thread, NULL);
    close(h->stop_pipe[0]);
    close(h->stop_pipe[1]);
    close(h->fd);
    for (e = h->entries; e != NULL; e = next) {
        next = e->next;
        free(e->token);
        free(e->key_authz);
        free(e);
    }
    pthread_mutex_destroy(&h->lock);
    free(h);
}
