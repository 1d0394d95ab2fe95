/*
 * A minimal HTTP/1.1 responder for http-01 (RFC 8555 §8.3), run in a thread
 * while an order is open: GET /.well-known/acme-challenge/TOKEN answers the
 * key authorization from an in-memory table, everything else is a 404.
 * Connections are served one at a time with short socket timeouts: the
 * only clients are the CA's validators.
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
#include <sys/time.h>
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

static void send_all(int fd, const char *buf, size_t len)
{
    ssize_t n;

    while (len > 0) {
        n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        buf += n;
        len -= (size_t) n;
    }
}

static void respond(int fd, int status, const char *reason, const char *body,
                    int head_only)
{
    char   hdr[256];
    size_t blen = strlen(body);
    int    n;

    n = snprintf(hdr, sizeof(hdr),
                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                 status, reason, blen);
    if (n < 0 || (size_t) n >= sizeof(hdr)) {
        return;
    }
    send_all(fd, hdr, (size_t) n);
    if (!head_only) {
        send_all(fd, body, blen);
    }
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

static void serve(cli_http_t *h, int fd)
{
    char            req[HTTP_MAX_REQ + 1];
    size_t          len = 0;
    ssize_t         n;
    struct timeval  tv = { 5, 0 };
    char           *sp1, *sp2, *path, *ka, *q;
    int             head;

    (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

    /* Only the request line and headers matter; a GET has no body. */
    while (len < HTTP_MAX_REQ) {
        n = recv(fd, req + len, HTTP_MAX_REQ - len, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        len += (size_t) n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n") != NULL || strstr(req, "\n\n") != NULL) {
            break;
        }
    }
    req[len] = '\0';
    if (len == 0) {
        return;
    }

    sp1 = strchr(req, ' ');
    sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL || memchr(req, '\n', (size_t) (sp2 - req)) != NULL) {
        respond(fd, 400, "Bad Request", "bad request\n", 0);
        return;
    }
    *sp1 = '\0';
    *sp2 = '\0';
    path = sp1 + 1;
    head = strcmp(req, "HEAD") == 0;
    if (strcmp(req, "GET") != 0 && !head) {
        respond(fd, 405, "Method Not Allowed", "method not allowed\n", 0);
        return;
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
        respond(fd, 404, "Not Found", "not found\n", head);
        return;
    }
    atls_log(ATLS_LOG_INFO, "http-01: answered token %s", path);
    respond(fd, 200, "OK", ka, head);
    free(ka);
}

static void serve_one(void *arg, int fd)
{
    serve(arg, fd);
}

static void *http_thread(void *arg)
{
    cli_http_t *h = arg;

    cli_accept_loop(h->fd, h->stop_pipe[0], serve_one, h);
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
