/*
 * libFuzzer: the CA's raw HTTP response, headers and all, through the real
 * transport (atls_http_easy_prepare + libcurl + atls_http_easy_collect):
 * the Link parser (rel="alternate" chains, rel="up"), Location,
 * Replay-Nonce, Retry-After and the body collector.  curl connects to an
 * abstract unix socket of this process, which answers with the input and
 * hangs up, so nothing touches the network.  The same bytes also go to
 * atls_http_retry_after() as a header value.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <curl/curl.h>
#include "atls_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW        ((time_t) 1700000000)
#define MAX_RETRY  (366L * 24 * 3600)

static int         listen_fd = -1, served_fd = -1;
static char        sock_name[64];
static const char *resp_data;
static size_t      resp_size;

/* An abstract unix socket: no port, no file, gone with the process. */
static void
listen_once(void)
{
    struct sockaddr_un sa;
    size_t             n;

    n = (size_t) snprintf(sock_name, sizeof(sock_name), "autotls-fuzz-http-%ld",
                          (long) getpid());
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path + 1, sock_name, n);   /* sun_path[0] = 0: abstract */
    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0
        || bind(listen_fd, (struct sockaddr *) &sa,
                (socklen_t) (offsetof(struct sockaddr_un, sun_path) + 1 + n)) != 0
        || listen(listen_fd, 4) != 0)
    {
        abort();
    }
}

/* curl has connected: play the CA, the whole response then EOF. */
static int
prereq_cb(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    size_t off = 0;

    (void) ud;
    (void) primary_ip;
    (void) local_ip;
    (void) primary_port;
    (void) local_port;
    served_fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (served_fd < 0) {
        abort();
    }
    while (off < resp_size) {
        ssize_t n = write(served_fd, resp_data + off, resp_size - off);

        if (n <= 0) {
            abort();
        }
        off += (size_t) n;
    }
    shutdown(served_fd, SHUT_WR);
    return CURL_PREREQFUNC_OK;
}

static void
check_retry_after(const char *v)
{
    time_t t = atls_http_retry_after(v, NOW);

    if (t != 0 && (t < NOW || t > NOW + MAX_RETRY)) {
        abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = { "GET", "HEAD", "POST" };
    atls_http_opts_t     opts;
    atls_http_request_t  req;
    atls_http_response_t resp;
    atls_http_xfer_t    *x = NULL;
    CURL                *h;
    CURLcode             rc;
    size_t               i;
    char                *s;

    if (size > 65536) {
        return 0;   /* more than the socket buffers hold without a reader */
    }
    s = malloc(size + 1);
    if (s == NULL) {
        abort();
    }
    memcpy(s, data, size);
    s[size] = '\0';
    check_retry_after(s);
    free(s);

    memset(&opts, 0, sizeof(opts));
    opts.total_timeout_ms = 5000;
    opts.max_response = 1024;   /* small, so the size cap is reached too */
    memset(&req, 0, sizeof(req));
    req.method = methods[size % 3];
    req.url = "http://127.0.0.1:9/acme/order/1";
    req.body = "{}";
    req.body_len = 2;
    req.content_type = "application/jose+json";
    req.accept = "application/pem-certificate-chain";

    if (listen_fd < 0) {
        listen_once();
    }
    resp_data = (const char *) data;
    resp_size = size;
    h = atls_http_easy_prepare(&opts, &req, &x);
    if (h == NULL) {
        abort();
    }
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_VERBOSE, getenv("FUZZ_HTTP_DEBUG") ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_ABSTRACT_UNIX_SOCKET, sock_name);
    curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, prereq_cb);
    rc = curl_easy_perform(h);
    atls_http_easy_collect(x, h, (int) rc, &resp);
    curl_easy_cleanup(h);
    if (served_fd >= 0) {
        close(served_fd);
        served_fd = -1;
    }

    if (resp.transport_error) {
        if (resp.status != 0 || resp.body != NULL || resp.link_alternate != NULL
            || memchr(resp.error, '\0', sizeof(resp.error)) == NULL)
        {
            abort();
        }
    } else {
        if (resp.body == NULL || resp.body_len > opts.max_response
            || resp.body[resp.body_len] != '\0')
        {
            abort();
        }
        for (i = 0; i < resp.n_link_alternate; i++) {
            if (resp.link_alternate[i] == NULL) {
                abort();
            }
        }
        if (resp.n_link_alternate > 0 && resp.link_alternate[resp.n_link_alternate] != NULL) {
            abort();
        }
        check_retry_after(resp.retry_after);
    }
    if (getenv("FUZZ_HTTP_DEBUG")) {
        /* FUZZ_HTTP_DEBUG=1 shows what a seed parses to (for writing seeds). */
        fprintf(stderr, "status %ld error \"%s\" body %zu location %s nonce %s "
                "retry-after %s up %s\n", resp.status, resp.error, resp.body_len,
                resp.location ? resp.location : "-", resp.replay_nonce ? resp.replay_nonce : "-",
                resp.retry_after ? resp.retry_after : "-", resp.link_up ? resp.link_up : "-");
        for (i = 0; i < resp.n_link_alternate; i++) {
            fprintf(stderr, "  alternate %s\n", resp.link_alternate[i]);
        }
    }
    atls_http_response_free(&resp);
    return 0;
}
