/*
 * libFuzzer: the CLI's standalone challenge responders face the internet
 * (anyone can connect while an order is open).  Both run on loopback
 * through their public interface (cli_http_start / cli_tls_start); the
 * input is what a client sends before it hangs up:
 *
 *   selector(1) bytes
 *
 * selector even: an HTTP request to the http-01 responder, which must answer
 * a well-formed HTTP/1.1 response, 200 only with a key authorization it was
 * given; odd: a TLS ClientHello (and more) to the tls-alpn-01 responder.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TOKEN     "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
#define KEY_AUTHZ TOKEN ".nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEt62jcerQ"

static cli_http_t *http;
static cli_tls_t  *tls;
static int         http_port, tls_port;

/* A port free right now on 127.0.0.1 (the responders take a number). */
static int
free_port(void)
{
    struct sockaddr_in sa;
    socklen_t          sl = sizeof(sa);
    int                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0
        || getsockname(fd, (struct sockaddr *) &sa, &sl) != 0)
    {
        abort();
    }
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static void
init(void)
{
    char err[256];
    int  tries;

    atls_log_set(NULL, NULL, ATLS_LOG_ERR);
    for (tries = 0; http == NULL && tries < 10; tries++) {
        http_port = free_port();
        http = cli_http_start("127.0.0.1", http_port, err, sizeof(err));
    }
    for (tries = 0; tls == NULL && tries < 10; tries++) {
        tls_port = free_port();
        tls = cli_tls_start("127.0.0.1", tls_port, err, sizeof(err));
    }
    if (http == NULL || tls == NULL
        || cli_http_add(http, TOKEN, KEY_AUTHZ) != 0
        || cli_tls_add(tls, "example.com", KEY_AUTHZ, err, sizeof(err)) != 0
        || cli_tls_add(tls, "127.0.0.1", KEY_AUTHZ, err, sizeof(err)) != 0)
    {
        fprintf(stderr, "fuzz_standalone: cannot start the responders: %s\n", err);
        abort();
    }
}

/* Sends the bytes, half-closes, reads the answer until EOF; its length. */
static size_t
exchange(int port, const uint8_t *data, size_t size, char *out, size_t outlen)
{
    struct sockaddr_in sa;
    struct linger      lg = { 1, 0 };
    size_t             off = 0, got = 0;
    ssize_t            n;
    int                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((unsigned short) port);
    if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
        abort();
    }
    while (off < size) {
        n = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (n <= 0) {
            break;   /* the responder may hang up on what it has read */
        }
        off += (size_t) n;
    }
    shutdown(fd, SHUT_WR);
    while (got < outlen - 1 && (n = recv(fd, out + got, outlen - 1 - got, 0)) > 0) {
        got += (size_t) n;
    }
    out[got] = '\0';
    /* A reset, not a TIME_WAIT per run on the responder's port. */
    (void) setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    return got;
}

static void
check_http(const char *resp, size_t len)
{
    const char *body;
    int         status;

    if (len == 0) {
        return;     /* it hung up (a reset after an unread request tail) */
    }
    if (sscanf(resp, "HTTP/1.1 %3d ", &status) != 1
        || (status != 200 && status != 400 && status != 404 && status != 405))
    {
        abort();
    }
    body = strstr(resp, "\r\n\r\n");
    if (body == NULL) {
        abort();
    }
    body += 4;
    if (status == 200 && *body != '\0' && strcmp(body, KEY_AUTHZ) != 0) {
        abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char resp[4096];
    size_t len;

    if (http == NULL) {
        init();
    }
    if (size < 1 || size > 16384) {
        return 0;
    }
    if (data[0] % 2 == 0) {
        len = exchange(http_port, data + 1, size - 1, resp, sizeof(resp));
        check_http(resp, len);
        if (getenv("FUZZ_STANDALONE_DEBUG")) {
            fprintf(stderr, "http-01 answered %zu bytes:\n%s\n", len, resp);
        }
    } else {
        len = exchange(tls_port, data + 1, size - 1, resp, sizeof(resp));
        if (getenv("FUZZ_STANDALONE_DEBUG")) {
            /* FUZZ_STANDALONE_DEBUG=1 shows how far a seed gets. */
            fprintf(stderr, "tls-alpn-01 answered %zu bytes, first record type %d\n",
                    len, len > 0 ? (unsigned char) resp[0] : -1);
        }
    }
    return 0;
}
