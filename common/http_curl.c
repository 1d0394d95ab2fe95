/*
 * HTTP transport for the ACME engine on libcurl.
 *
 * One configuration routine serves both the blocking driver (curl easy) and
 * event-loop hosts (curl multi): atls_http_easy_prepare() builds a handle
 * bound to a transfer object, atls_http_easy_collect() turns the finished
 * transfer into an atls_http_response_t.  atls_http_perform() is just
 * prepare + curl_easy_perform + collect.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>
#include "atls.h"
#include "atls_http.h"

#define ATLS_HTTP_CONNECT_MS  10000L
#define ATLS_HTTP_TOTAL_MS    60000L
#define ATLS_HTTP_MAX_RESP    (4u * 1024u * 1024u)
/* A header line longer than this is not one the engine needs; it is ignored
 * rather than grown without bound. */
#define ATLS_HTTP_MAX_HEADER  8192
/* Cap on Retry-After so a bogus value cannot stall renewal for years. */
#define ATLS_HTTP_MAX_RETRY   (366L * 24 * 3600)

struct atls_http_xfer_s {
    size_t              max_response;
    int                 too_large;
    char               *body;
    size_t              body_len;
    size_t              body_cap;
    struct curl_slist  *req_headers;
    char                errbuf[CURL_ERROR_SIZE];
    /* response headers of the final response */
    char               *content_type;
    char               *location;
    char               *replay_nonce;
    char               *retry_after;
    char              **link_alternate;
    size_t              n_link_alternate;
    char               *link_up;
    char               *etag;
    char               *last_modified;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode       curl_init_rc = CURLE_FAILED_INIT;

static void
http_global_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

void
atls_http_request_free(atls_http_request_t *req)
{
    if (req == NULL) {
        return;
    }
    free(req->url);
    free(req->body);
    req->url = NULL;
    req->body = NULL;
    req->body_len = 0;
}

void
atls_http_response_free(atls_http_response_t *resp)
{
    if (resp == NULL) {
        return;
    }
    free(resp->body);
    free(resp->content_type);
    free(resp->location);
    free(resp->replay_nonce);
    free(resp->retry_after);
    atls_strv_free(resp->link_alternate, resp->n_link_alternate);
    free(resp->link_up);
    free(resp->etag);
    free(resp->last_modified);
    memset(resp, 0, sizeof(*resp));
}

static void
xfer_headers_reset(atls_http_xfer_t *x)
{
    free(x->content_type);
    free(x->location);
    free(x->replay_nonce);
    free(x->retry_after);
    atls_strv_free(x->link_alternate, x->n_link_alternate);
    free(x->link_up);
    free(x->etag);
    free(x->last_modified);
    x->content_type = NULL;
    x->location = NULL;
    x->replay_nonce = NULL;
    x->retry_after = NULL;
    x->link_alternate = NULL;
    x->n_link_alternate = 0;
    x->link_up = NULL;
    x->etag = NULL;
    x->last_modified = NULL;
}

static void
xfer_free(atls_http_xfer_t *x)
{
    if (x == NULL) {
        return;
    }
    xfer_headers_reset(x);
    free(x->body);
    curl_slist_free_all(x->req_headers);
    free(x);
}

static char *
dup_range(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d == NULL) {
        abort();
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* 1 when the rel parameter value (space-separated list) holds `want`. */
static int
rel_has(const char *v, size_t n, const char *want)
{
    size_t wl = strlen(want);
    size_t i = 0;

    while (i < n) {
        size_t start;

        while (i < n && (v[i] == ' ' || v[i] == '\t')) {
            i++;
        }
        start = i;
        while (i < n && v[i] != ' ' && v[i] != '\t') {
            i++;
        }
        if (i - start == wl && strncasecmp(v + start, want, wl) == 0) {
            return 1;
        }
    }
    return 0;
}

static void
link_add_alternate(atls_http_xfer_t *x, const char *url, size_t n)
{
    char **v = realloc(x->link_alternate,
                       (x->n_link_alternate + 2) * sizeof(char *));

    if (v == NULL) {
        abort();
    }
    v[x->n_link_alternate++] = dup_range(url, n);
    v[x->n_link_alternate] = NULL;
    x->link_alternate = v;
}

/*
 * RFC 8288 Link: a comma-separated list of `<uri>; param=value; ...`.
 * Commas may appear inside <> and inside quoted strings, so this walks the
 * value instead of splitting on ','.
 */
static void
parse_link(atls_http_xfer_t *x, const char *v, size_t n)
{
    size_t i = 0;

    while (i < n) {
        const char *url;
        size_t      url_len;
        int         alternate = 0, up = 0;

        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
            i++;
        }
        if (i >= n) {
            break;
        }
        if (v[i] != '<') {
            /* malformed element: skip to the next top-level comma */
            while (i < n && v[i] != ',') {
                i++;
            }
            continue;
        }
        url = v + i + 1;
        while (i < n && v[i] != '>') {
            i++;
        }
        if (i >= n) {
            return;
        }
        url_len = (size_t) (v + i - url);
        i++;

        /* parameters up to the next comma outside quotes */
        while (i < n && v[i] != ',') {
            size_t ns, ne, vs, ve;

            if (v[i] == ';' || v[i] == ' ' || v[i] == '\t') {
                i++;
                continue;
            }
            ns = i;
            while (i < n && v[i] != '=' && v[i] != ';' && v[i] != ',') {
                i++;
            }
            ne = i;
            while (ne > ns && (v[ne - 1] == ' ' || v[ne - 1] == '\t')) {
                ne--;
            }
            vs = ve = i;
            if (i < n && v[i] == '=') {
                i++;
                while (i < n && (v[i] == ' ' || v[i] == '\t')) {
                    i++;
                }
                if (i < n && v[i] == '"') {
                    i++;
                    vs = i;
                    while (i < n && v[i] != '"') {
                        if (v[i] == '\\' && i + 1 < n) {
                            i++;
                        }
                        i++;
                    }
                    ve = i;
                    if (i < n) {
                        i++;
                    }
                } else {
                    vs = i;
                    while (i < n && v[i] != ';' && v[i] != ',') {
                        i++;
                    }
                    ve = i;
                    while (ve > vs && (v[ve - 1] == ' ' || v[ve - 1] == '\t')) {
                        ve--;
                    }
                }
            }
            if (ne - ns == 3 && strncasecmp(v + ns, "rel", 3) == 0) {
                alternate = rel_has(v + vs, ve - vs, "alternate");
                up = rel_has(v + vs, ve - vs, "up");
            }
        }

        if (url_len == 0) {
            continue;
        }
        if (alternate) {
            link_add_alternate(x, url, url_len);
        }
        if (up && x->link_up == NULL) {
            x->link_up = dup_range(url, url_len);
        }
    }
}

static void
set_header(char **slot, const char *v, size_t n)
{
    free(*slot);
    *slot = dup_range(v, n);
}

/* Appends "name: value" to the request headers (value NULL: nothing;
 * "" sends "name:", which tells curl to leave out its own).  -1 when the
 * value could end the header line (CR, LF), or is too long. */
static int
xfer_add_header(atls_http_xfer_t *x, const char *name, const char *value)
{
    struct curl_slist *l;
    char               hdr[1024];
    int                n;

    if (value == NULL) {
        return 0;
    }
    if (strpbrk(value, "\r\n") != NULL) {
        return -1;
    }
    n = snprintf(hdr, sizeof(hdr), "%s:%s%s", name, *value ? " " : "", value);
    if (n < 0 || (size_t) n >= sizeof(hdr)) {
        return -1;
    }
    l = curl_slist_append(x->req_headers, hdr);
    if (l == NULL) {
        return -1;
    }
    x->req_headers = l;
    return 0;
}

static size_t
header_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    atls_http_xfer_t *x = ud;
    size_t            len = size * nitems;
    size_t            n = len, name_len, vs;
    const char       *colon;

    /* A new status line (after 1xx) starts a new header block. */
    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        xfer_headers_reset(x);
        return len;
    }
    if (n > ATLS_HTTP_MAX_HEADER) {
        return len;
    }
    while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == '\n')) {
        n--;
    }
    colon = memchr(buf, ':', n);
    if (colon == NULL) {
        return len;
    }
    name_len = (size_t) (colon - buf);
    vs = name_len + 1;
    while (vs < n && (buf[vs] == ' ' || buf[vs] == '\t')) {
        vs++;
    }
    while (n > vs && (buf[n - 1] == ' ' || buf[n - 1] == '\t')) {
        n--;
    }

#define HDR_IS(s) (name_len == sizeof(s) - 1 && strncasecmp(buf, s, name_len) == 0)
    if (HDR_IS("Content-Type")) {
        set_header(&x->content_type, buf + vs, n - vs);
    } else if (HDR_IS("Location")) {
        set_header(&x->location, buf + vs, n - vs);
    } else if (HDR_IS("Replay-Nonce")) {
        set_header(&x->replay_nonce, buf + vs, n - vs);
    } else if (HDR_IS("Retry-After")) {
        set_header(&x->retry_after, buf + vs, n - vs);
    } else if (HDR_IS("Link")) {
        parse_link(x, buf + vs, n - vs);
    } else if (HDR_IS("ETag")) {
        set_header(&x->etag, buf + vs, n - vs);
    } else if (HDR_IS("Last-Modified")) {
        set_header(&x->last_modified, buf + vs, n - vs);
    }
#undef HDR_IS
    return len;
}

static size_t
write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    atls_http_xfer_t *x = ud;
    size_t            n = size * nmemb;

    if (n > x->max_response - x->body_len) {
        x->too_large = 1;
        return 0;   /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (x->body_len + n + 1 > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap : 4096;
        char  *b;

        while (cap < x->body_len + n + 1) {
            cap *= 2;
        }
        b = realloc(x->body, cap);
        if (b == NULL) {
            return 0;
        }
        x->body = b;
        x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, data, n);
    x->body_len += n;
    x->body[x->body_len] = '\0';
    return n;
}

#define SETOPT(h, o, v) \
    do { if (curl_easy_setopt((h), (o), (v)) != CURLE_OK) goto failed; } while (0)

void *
atls_http_easy_prepare(const atls_http_opts_t *opts, const atls_http_request_t *req,
                       atls_http_xfer_t **xfer)
{
    atls_http_xfer_t *x;
    CURL             *h = NULL;
    long              connect_ms = ATLS_HTTP_CONNECT_MS;
    long              total_ms = ATLS_HTTP_TOTAL_MS;
    const char       *method;
    size_t            i;

    *xfer = NULL;
    pthread_once(&curl_once, http_global_init);
    if (curl_init_rc != CURLE_OK || req == NULL || req->url == NULL) {
        return NULL;
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return NULL;
    }
    x->max_response = ATLS_HTTP_MAX_RESP;
    if (opts != NULL) {
        if (opts->connect_timeout_ms > 0) {
            connect_ms = opts->connect_timeout_ms;
        }
        if (opts->total_timeout_ms > 0) {
            total_ms = opts->total_timeout_ms;
        }
        if (opts->max_response > 0) {
            x->max_response = opts->max_response;
        }
    }

    h = curl_easy_init();
    if (h == NULL) {
        goto failed;
    }
    SETOPT(h, CURLOPT_URL, req->url);
    SETOPT(h, CURLOPT_NOSIGNAL, 1L);
    SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SETOPT(h, CURLOPT_PROTOCOLS_STR, "https,http");
#else
    SETOPT(h, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTPS | CURLPROTO_HTTP));
#endif
    SETOPT(h, CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (opts != NULL && opts->ca_file != NULL && opts->ca_file[0] != '\0') {
        SETOPT(h, CURLOPT_CAINFO, opts->ca_file);
    }
    SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    SETOPT(h, CURLOPT_TIMEOUT_MS, total_ms);
    SETOPT(h, CURLOPT_USERAGENT, ATLS_USER_AGENT);
    SETOPT(h, CURLOPT_ERRORBUFFER, x->errbuf);
    SETOPT(h, CURLOPT_WRITEFUNCTION, write_cb);
    SETOPT(h, CURLOPT_WRITEDATA, x);
    SETOPT(h, CURLOPT_HEADERFUNCTION, header_cb);
    SETOPT(h, CURLOPT_HEADERDATA, x);
    /* Lets curl refuse early when Content-Length already exceeds the cap. */
    SETOPT(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) x->max_response);

    method = req->method ? req->method : "GET";
    if (strcmp(method, "GET") == 0) {
        SETOPT(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        SETOPT(h, CURLOPT_NOBODY, 1L);
    } else {
        /* COPYPOSTFIELDS: the engine's request may be gone before a
         * multi-driven transfer finishes sending. */
        SETOPT(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
        SETOPT(h, CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "");
        if (strcmp(method, "POST") != 0) {
            SETOPT(h, CURLOPT_CUSTOMREQUEST, method);
        }
    }

    /* No "Expect: 100-continue" round trip for small JWS bodies.  The
     * validators of a conditional GET (a CRL) come from the store. */
    if (xfer_add_header(x, "Content-Type", req->content_type) != 0
        || xfer_add_header(x, "Accept", req->accept) != 0
        || xfer_add_header(x, "If-None-Match", req->if_none_match) != 0
        || xfer_add_header(x, "If-Modified-Since", req->if_modified_since) != 0
        || xfer_add_header(x, "Expect", "") != 0)
    {
        goto failed;
    }
    for (i = 0; i < req->n_headers; i++) {
        struct curl_slist *l;

        if (strpbrk(req->headers[i], "\r\n") != NULL
            || (l = curl_slist_append(x->req_headers, req->headers[i])) == NULL)
        {
            goto failed;
        }
        x->req_headers = l;
    }
    SETOPT(h, CURLOPT_HTTPHEADER, x->req_headers);

    *xfer = x;
    return h;

failed:
    if (h != NULL) {
        curl_easy_cleanup(h);
    }
    xfer_free(x);
    return NULL;
}

void
atls_http_easy_collect(atls_http_xfer_t *x, void *easy, int curl_code,
                       atls_http_response_t *resp)
{
    memset(resp, 0, sizeof(*resp));
    if (x == NULL) {
        resp->transport_error = 1;
        snprintf(resp->error, sizeof(resp->error), "HTTP transfer could not be set up");
        return;
    }

    if (curl_code != CURLE_OK) {
        resp->transport_error = 1;
        if (x->too_large || curl_code == CURLE_FILESIZE_EXCEEDED) {
            snprintf(resp->error, sizeof(resp->error),
                     "response larger than %zu bytes", x->max_response);
        } else if (x->errbuf[0] != '\0') {
            size_t n = strlen(x->errbuf);

            while (n > 0 && (x->errbuf[n - 1] == '\n' || x->errbuf[n - 1] == '\r')) {
                x->errbuf[--n] = '\0';
            }
            snprintf(resp->error, sizeof(resp->error), "%s", x->errbuf);
        } else {
            snprintf(resp->error, sizeof(resp->error), "%s",
                     curl_easy_strerror((CURLcode) curl_code));
        }
        xfer_free(x);
        return;
    }

    if (easy == NULL
        || curl_easy_getinfo((CURL *) easy, CURLINFO_RESPONSE_CODE, &resp->status) != CURLE_OK
        || resp->status == 0)
    {
        resp->status = 0;
        resp->transport_error = 1;
        snprintf(resp->error, sizeof(resp->error), "no HTTP response status");
        xfer_free(x);
        return;
    }

    /* hand the buffers over instead of copying */
    if (x->body == NULL) {
        x->body = calloc(1, 1);
        if (x->body == NULL) {
            abort();
        }
    }
    resp->body = x->body;
    resp->body_len = x->body_len;
    resp->content_type = x->content_type;
    resp->location = x->location;
    resp->replay_nonce = x->replay_nonce;
    resp->retry_after = x->retry_after;
    resp->link_alternate = x->link_alternate;
    resp->n_link_alternate = x->n_link_alternate;
    resp->link_up = x->link_up;
    resp->etag = x->etag;
    resp->last_modified = x->last_modified;
    x->body = NULL;
    x->content_type = x->location = x->replay_nonce = x->retry_after = NULL;
    x->link_alternate = NULL;
    x->n_link_alternate = 0;
    x->link_up = NULL;
    x->etag = x->last_modified = NULL;
    xfer_free(x);
}

void
atls_http_perform(const atls_http_opts_t *opts, const atls_http_request_t *req,
                  atls_http_response_t *resp)
{
    atls_http_xfer_t *x = NULL;
    CURL             *h;
    CURLcode          rc;

    h = atls_http_easy_prepare(opts, req, &x);
    if (h == NULL) {
        memset(resp, 0, sizeof(*resp));
        resp->transport_error = 1;
        snprintf(resp->error, sizeof(resp->error), "cannot set up HTTP request to %s",
                 req && req->url ? req->url : "(no URL)");
        return;
    }
    rc = curl_easy_perform(h);
    atls_http_easy_collect(x, h, (int) rc, resp);
    curl_easy_cleanup(h);
}

time_t
atls_http_retry_after(const char *value, time_t now)
{
    const char *p;
    time_t      t;

    if (value == NULL) {
        return 0;
    }
    while (*value == ' ' || *value == '\t') {
        value++;
    }
    if (*value == '\0') {
        return 0;
    }
    for (p = value; isdigit((unsigned char) *p); p++) {
        /* delta-seconds */
    }
    if (p != value) {
        unsigned long long secs;
        char              *end;

        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p != '\0') {
            return 0;
        }
        errno = 0;
        secs = strtoull(value, &end, 10);
        if (errno == ERANGE || secs > (unsigned long long) ATLS_HTTP_MAX_RETRY) {
            secs = ATLS_HTTP_MAX_RETRY;
        }
        return now + (time_t) secs;
    }

    /* HTTP-date; curl_getdate also takes the obsolete RFC 850 and asctime
     * forms that RFC 9110 says recipients must accept. */
    t = curl_getdate(value, NULL);
    if (t == (time_t) -1) {
        return 0;
    }
    if (t < now) {
        return now;
    }
    if (t - now > ATLS_HTTP_MAX_RETRY) {
        return now + ATLS_HTTP_MAX_RETRY;
    }
    return t;
}
