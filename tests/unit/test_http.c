/*
 * HTTP transport: Retry-After parsing, and real transfers against a tiny
 * loopback HTTP/1.1 server running in a thread of this process.
 */
#define _GNU_SOURCE  /* strcasestr */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <curl/curl.h>
#include "atls.h"
#include "atls_http.h"

/* ---- the loopback server ------------------------------------------------ */

typedef struct {
    int         lfd;
    int         port;
    const char *response;       /* written verbatim, then the socket is closed */
    size_t      response_len;
    char        request[65536]; /* what the client sent */
    size_t      request_len;
    pthread_t   thread;
} server_t;

static void *
server_main(void *arg)
{
    server_t *s = arg;
    int       fd = accept(s->lfd, NULL, NULL);
    size_t    want = 0;

    if (fd < 0) {
        return NULL;
    }
    for (;;) {
        ssize_t n;
        char   *end;

        if (s->request_len + 1 >= sizeof(s->request)) {
            break;
        }
        n = recv(fd, s->request + s->request_len, sizeof(s->request) - 1 - s->request_len, 0);
        if (n <= 0) {
            break;
        }
        s->request_len += (size_t) n;
        s->request[s->request_len] = '\0';
        end = strstr(s->request, "\r\n\r\n");
        if (end != NULL) {
            const char *cl = strcasestr(s->request, "\r\nContent-Length:");

            if (want == 0) {
                want = (size_t) (end + 4 - s->request);
                if (cl != NULL && cl < end) {
                    want += strtoul(cl + 17, NULL, 10);
                }
            }
            if (s->request_len >= want) {
                break;
            }
        }
    }
    (void) !send(fd, s->response, s->response_len, MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    close(fd);
    return NULL;
}

static void
server_start(server_t *s, const char *response, size_t len)
{
    struct sockaddr_in sa;
    socklen_t          sl = sizeof(sa);
    int                one = 1;

    memset(s, 0, sizeof(*s));
    s->response = response;
    s->response_len = len;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *) &sa, sizeof(sa)), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *) &sa, &sl), 0);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void
server_stop(server_t *s)
{
    pthread_join(s->thread, NULL);
    close(s->lfd);
}

static char *
url_for(const server_t *s, const char *path)
{
    static char buf[128];

    snprintf(buf, sizeof(buf), "http://127.0.0.1:%d%s", s->port, path);
    return buf;
}

/* ---- Retry-After ---------------------------------------------------------- */

static void
test_retry_after_seconds(void **state)
{
    (void) state;
    assert_int_equal(atls_http_retry_after("120", 1000), 1120);
    assert_int_equal(atls_http_retry_after(" 5 ", 1000), 1005);
    assert_int_equal(atls_http_retry_after("0", 1000), 1000);
    /* absurd values are capped, not overflowed */
    assert_int_equal(atls_http_retry_after("99999999999999999999999", 1000),
                     1000 + 366L * 24 * 3600);
}

static void
test_retry_after_date(void **state)
{
    (void) state;
    /* 1445412480 = Wed, 21 Oct 2015 07:28:00 GMT */
    assert_int_equal(atls_http_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412000),
                     1445412480);
    /* a date in the past means "now" */
    assert_int_equal(atls_http_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445413000),
                     1445413000);
}

static void
test_retry_after_garbage(void **state)
{
    (void) state;
    assert_int_equal(atls_http_retry_after(NULL, 1000), 0);
    assert_int_equal(atls_http_retry_after("", 1000), 0);
    assert_int_equal(atls_http_retry_after("soon", 1000), 0);
    assert_int_equal(atls_http_retry_after("12abc", 1000), 0);
    assert_int_equal(atls_http_retry_after("-5", 1000), 0);
}

/* ---- transfers ------------------------------------------------------------ */

static const char headers_resp[] =
    "HTTP/1.1 201 Created\r\n"
    "replay-nonce: nonce-abc_123\r\n"
    "LOCATION: https://ca.test/order/1\r\n"
    "content-TYPE: application/json\r\n"
    "Link: <https://ca.test/dir>;rel=\"index\"\r\n"
    "Link: <https://ca.test/alt/1>;rel=\"alternate\", <https://ca.test/alt/2,x>; rel=\"alternate\"\r\n"
    "link: <https://ca.test/issuer>; rel=up\r\n"
    "LINK: <https://ca.test/alt/3>; title=\"a, b\"; rel=\"alternate\"\r\n"
    "Retry-After: 30\r\n"
    "Content-Length: 17\r\n"
    "\r\n"
    "{\"status\":\"ok\"}\r\n";

static void
test_headers_parsed(void **state)
{
    server_t             s;
    atls_http_request_t  req = { "GET", NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0 };
    atls_http_response_t resp;

    (void) state;
    server_start(&s, headers_resp, sizeof(headers_resp) - 1);
    req.url = url_for(&s, "/order");
    atls_http_perform(NULL, &req, &resp);
    server_stop(&s);

    assert_int_equal(resp.transport_error, 0);
    assert_int_equal(resp.status, 201);
    assert_string_equal(resp.replay_nonce, "nonce-abc_123");
    assert_string_equal(resp.location, "https://ca.test/order/1");
    assert_string_equal(resp.content_type, "application/json");
    assert_string_equal(resp.retry_after, "30");
    assert_int_equal(resp.n_link_alternate, 3);
    assert_string_equal(resp.link_alternate[0], "https://ca.test/alt/1");
    assert_string_equal(resp.link_alternate[1], "https://ca.test/alt/2,x");
    assert_string_equal(resp.link_alternate[2], "https://ca.test/alt/3");
    assert_string_equal(resp.link_up, "https://ca.test/issuer");
    assert_int_equal(resp.body_len, 17);
    assert_memory_equal(resp.body, "{\"status\":\"ok\"}\r\n", 17);
    assert_true(strncmp(s.request, "GET /order HTTP/1.1\r\n", 21) == 0);
    assert_null(strcasestr(s.request, "pem-certificate-chain"));
    atls_http_response_free(&resp);
    assert_null(resp.body);
}

static const char ok_empty[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

static void
test_request_carries_ua_and_type(void **state)
{
    server_t             s;
    char                 body[] = "{\"protected\":\"x\",\"payload\":\"\",\"signature\":\"y\"}";
    atls_http_request_t  req;
    atls_http_response_t resp;

    (void) state;
    memset(&req, 0, sizeof(req));
    server_start(&s, ok_empty, sizeof(ok_empty) - 1);
    req.method = "POST";
    req.url = url_for(&s, "/new-acct");
    req.body = body;
    req.body_len = strlen(body);
    req.content_type = "application/jose+json";
    req.accept = "application/pem-certificate-chain";
    atls_http_perform(NULL, &req, &resp);
    server_stop(&s);

    assert_int_equal(resp.transport_error, 0);
    assert_int_equal(resp.status, 200);
    assert_non_null(resp.body);
    assert_int_equal(resp.body_len, 0);
    assert_null(resp.replay_nonce);
    assert_int_equal(resp.n_link_alternate, 0);
    assert_true(strncmp(s.request, "POST /new-acct HTTP/1.1\r\n", 25) == 0);
    assert_non_null(strcasestr(s.request, "\r\nUser-Agent: " ATLS_USER_AGENT "\r\n"));
    assert_non_null(strcasestr(s.request, "\r\nContent-Type: application/jose+json\r\n"));
    /* the caller's Accept replaces curl's default, and only once */
    assert_non_null(strcasestr(s.request, "\r\nAccept: application/pem-certificate-chain\r\n"));
    assert_null(strcasestr(s.request, "*/*"));
    assert_ptr_equal(strcasestr(s.request, "\r\nAccept:"),
                     strcasestr(s.request, "\r\nAccept: application/pem"));
    assert_null(strcasestr(strcasestr(s.request, "\r\nAccept:") + 2, "\r\nAccept:"));
    assert_null(strcasestr(s.request, "Expect:"));
    assert_non_null(strstr(s.request, "\r\n\r\n"));
    assert_string_equal(strstr(s.request, "\r\n\r\n") + 4, body);
    atls_http_response_free(&resp);
}

static char *
big_response(int with_length, size_t body_len, size_t *out_len)
{
    char  *r = malloc(body_len + 256);
    int    h;

    assert_non_null(r);
    if (with_length) {
        h = snprintf(r, 256, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", body_len);
    } else {
        h = snprintf(r, 256, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    }
    memset(r + h, 'a', body_len);
    *out_len = (size_t) h + body_len;
    return r;
}

static void
check_size_cap(int with_length)
{
    server_t             s;
    atls_http_opts_t     opts;
    atls_http_request_t  req = { "GET", NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0 };
    atls_http_response_t resp;
    size_t               len;
    char                *r = big_response(with_length, 1000, &len);

    memset(&opts, 0, sizeof(opts));
    opts.max_response = 100;
    server_start(&s, r, len);
    req.url = url_for(&s, "/big");
    atls_http_perform(&opts, &req, &resp);
    server_stop(&s);
    free(r);

    assert_int_equal(resp.transport_error, 1);
    assert_int_equal(resp.status, 0);
    assert_null(resp.body);
    assert_string_equal(resp.error, "response larger than 100 bytes");
    atls_http_response_free(&resp);
}

static void
test_size_cap_content_length(void **state)
{
    (void) state;
    check_size_cap(1);
}

static void
test_size_cap_streamed(void **state)
{
    (void) state;
    check_size_cap(0);
}

static void
test_size_at_cap_ok(void **state)
{
    server_t             s;
    atls_http_opts_t     opts;
    atls_http_request_t  req = { "GET", NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0 };
    atls_http_response_t resp;
    size_t               len;
    char                *r = big_response(0, 100, &len);

    (void) state;
    memset(&opts, 0, sizeof(opts));
    opts.max_response = 100;
    server_start(&s, r, len);
    req.url = url_for(&s, "/exact");
    atls_http_perform(&opts, &req, &resp);
    server_stop(&s);
    free(r);

    assert_int_equal(resp.transport_error, 0);
    assert_int_equal(resp.body_len, 100);
    atls_http_response_free(&resp);
}

static void
test_redirect_not_followed(void **state)
{
    static const char    r[] = "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\n"
                               "Content-Length: 0\r\n\r\n";
    server_t             s;
    atls_http_request_t  req = { "GET", NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0 };
    atls_http_response_t resp;

    (void) state;
    server_start(&s, r, sizeof(r) - 1);
    req.url = url_for(&s, "/moved");
    atls_http_perform(NULL, &req, &resp);
    server_stop(&s);

    assert_int_equal(resp.transport_error, 0);
    assert_int_equal(resp.status, 302);
    assert_string_equal(resp.location, "http://127.0.0.1:1/elsewhere");
    atls_http_response_free(&resp);
}

static void
test_connection_refused(void **state)
{
    struct sockaddr_in   sa;
    socklen_t            sl = sizeof(sa);
    int                  fd;
    char                 url[64];
    atls_http_request_t  req = { "GET", url, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0 };
    atls_http_response_t resp;

    (void) state;
    /* a port that was free a moment ago and has no listener */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &sl), 0);
    close(fd);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/dir", ntohs(sa.sin_port));

    atls_http_perform(NULL, &req, &resp);
    assert_int_equal(resp.transport_error, 1);
    assert_int_equal(resp.status, 0);
    assert_true(strlen(resp.error) > 0);
    assert_non_null(strstr(resp.error, "127.0.0.1"));
    atls_http_response_free(&resp);
}

static void
test_other_protocols_refused(void **state)
{
    atls_http_request_t  req = { "GET", (char *) "ftp://127.0.0.1:1/x", NULL, 0, NULL, NULL, NULL, NULL, NULL, 0 };
    atls_http_response_t resp;

    (void) state;
    atls_http_perform(NULL, &req, &resp);
    assert_int_equal(resp.transport_error, 1);
    assert_true(strlen(resp.error) > 0);
    atls_http_response_free(&resp);
}

/* A conditional GET (the CRL cache): the validators go out as headers, the
 * server's come back in the response, a 304 is the caller's to handle. */
static void
test_conditional_get(void **state)
{
    static const char    r[] = "HTTP/1.1 304 Not Modified\r\n"
                               "ETag: W/\"crl-7\"\r\n"
                               "Last-Modified: Sun, 29 Nov 2026 10:00:00 GMT\r\n"
                               "Content-Length: 0\r\n\r\n";
    server_t             s;
    atls_http_request_t  req;
    atls_http_response_t resp;

    (void) state;
    memset(&req, 0, sizeof(req));
    server_start(&s, r, sizeof(r) - 1);
    req.method = "GET";
    req.url = url_for(&s, "/shard/7.crl");
    req.if_none_match = "W/\"crl-6\"";
    req.if_modified_since = "Sat, 28 Nov 2026 10:00:00 GMT";
    atls_http_perform(NULL, &req, &resp);
    server_stop(&s);

    assert_int_equal(resp.transport_error, 0);
    assert_int_equal(resp.status, 304);
    assert_string_equal(resp.etag, "W/\"crl-7\"");
    assert_string_equal(resp.last_modified, "Sun, 29 Nov 2026 10:00:00 GMT");
    assert_non_null(strstr(s.request, "\r\nIf-None-Match: W/\"crl-6\"\r\n"));
    assert_non_null(strstr(s.request,
                           "\r\nIf-Modified-Since: Sat, 28 Nov 2026 10:00:00 GMT\r\n"));
    atls_http_response_free(&resp);
    assert_null(resp.etag);
    assert_null(resp.last_modified);

    /* without validators: neither header, and no validators back */
    server_start(&s, ok_empty, sizeof(ok_empty) - 1);
    req.url = url_for(&s, "/shard/7.crl");
    req.if_none_match = NULL;
    req.if_modified_since = NULL;
    atls_http_perform(NULL, &req, &resp);
    server_stop(&s);
    assert_int_equal(resp.status, 200);
    assert_null(resp.etag);
    assert_null(resp.last_modified);
    assert_null(strcasestr(s.request, "If-None-Match"));
    assert_null(strcasestr(s.request, "If-Modified-Since"));
    atls_http_response_free(&resp);

    /* a validator that would end the header line is never sent */
    req.url = (char *) "http://127.0.0.1:1/x";
    req.if_none_match = "\"a\"\r\nX-Injected: 1";
    atls_http_perform(NULL, &req, &resp);
    assert_int_equal(resp.transport_error, 1);
    atls_http_response_free(&resp);
}

/* The evented path: prepare + curl_multi + collect, as an nginx host does. */
static void
test_multi_prepare_collect(void **state)
{
    server_t             s;
    atls_http_request_t  req = { "GET", NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0 };
    atls_http_response_t resp;
    atls_http_xfer_t    *x = NULL;
    CURLM               *m;
    CURLMsg             *msg;
    void                *h;
    int                  running = 1, left, code = -1;

    (void) state;
    server_start(&s, headers_resp, sizeof(headers_resp) - 1);
    req.url = url_for(&s, "/evented");
    req.accept = "application/pem-certificate-chain";
    h = atls_http_easy_prepare(NULL, &req, &x);
    assert_non_null(h);
    assert_non_null(x);
    m = curl_multi_init();
    assert_int_equal(curl_multi_add_handle(m, h), CURLM_OK);
    while (running) {
        assert_int_equal(curl_multi_perform(m, &running), CURLM_OK);
        if (running) {
            assert_int_equal(curl_multi_poll(m, NULL, 0, 1000, NULL), CURLM_OK);
        }
    }
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == h) {
            code = (int) msg->data.result;
        }
    }
    assert_int_equal(code, 0);
    atls_http_easy_collect(x, h, code, &resp);
    curl_multi_remove_handle(m, h);
    curl_easy_cleanup(h);
    curl_multi_cleanup(m);
    server_stop(&s);

    assert_int_equal(resp.status, 201);
    assert_string_equal(resp.replay_nonce, "nonce-abc_123");
    assert_int_equal(resp.n_link_alternate, 3);
    assert_non_null(strcasestr(s.request, "\r\nAccept: application/pem-certificate-chain\r\n"));
    atls_http_response_free(&resp);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_date),
        cmocka_unit_test(test_retry_after_garbage),
        cmocka_unit_test(test_headers_parsed),
        cmocka_unit_test(test_request_carries_ua_and_type),
        cmocka_unit_test(test_size_cap_content_length),
        cmocka_unit_test(test_size_cap_streamed),
        cmocka_unit_test(test_size_at_cap_ok),
        cmocka_unit_test(test_redirect_not_followed),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_other_protocols_refused),
        cmocka_unit_test(test_conditional_get),
        cmocka_unit_test(test_multi_prepare_collect),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
