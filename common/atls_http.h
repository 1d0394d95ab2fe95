/*
 * HTTP for the ACME engine.  The engine only produces atls_http_request_t
 * and consumes atls_http_response_t; drivers move the bytes:
 *   - atls_http_perform(): blocking libcurl easy (CLI, Apache watchdog).
 *   - atls_http_easy_prepare()/atls_http_easy_collect(): build and harvest
 *     a CURL easy handle so an event-loop host (nginx) can run it on
 *     curl_multi with its own sockets and timers.
 */
#ifndef ATLS_HTTP_H
#define ATLS_HTTP_H

#include <stddef.h>
#include <time.h>

typedef struct {
    const char *method;         /* "GET", "HEAD", "POST" */
    char       *url;
    char       *body;           /* NULL for GET/HEAD */
    size_t      body_len;
    const char *content_type;   /* "application/jose+json" for POST */
    const char *accept;         /* Accept header, or NULL (e.g. the certificate
                                   download: "application/pem-certificate-chain") */
    const char *if_none_match;  /* conditional GET (CRLs): sent when not NULL */
    const char *if_modified_since;
    /* more request headers, "Name: value" lines (a webhook's configured
     * ones), borrowed; lines with CR or LF make the request fail */
    const char *const *headers;
    size_t      n_headers;
} atls_http_request_t;

typedef struct {
    long    status;             /* 0 on a transport error */
    char   *body;
    size_t  body_len;
    char   *content_type;
    char   *location;
    char   *replay_nonce;
    char   *retry_after;        /* raw header value */
    char  **link_alternate;     /* Link: <...>;rel="alternate" URLs */
    size_t  n_link_alternate;
    char   *link_up;            /* Link: <...>;rel="up" */
    char   *etag;               /* ETag, raw */
    char   *last_modified;      /* Last-Modified, raw */
    int     transport_error;    /* 1 when no HTTP response was received */
    char    error[256];         /* libcurl's message on a transport error */
} atls_http_response_t;

typedef struct {
    const char *ca_file;            /* NULL = system trust store */
    long        connect_timeout_ms; /* 0 = 10 s */
    long        total_timeout_ms;   /* 0 = 60 s */
    size_t      max_response;       /* 0 = 4 MiB; larger bodies are an error */
} atls_http_opts_t;

void atls_http_request_free(atls_http_request_t *req);   /* frees members */
void atls_http_response_free(atls_http_response_t *resp);/* frees members */

/* Blocking.  Always returns with resp filled (transport_error on failure). */
void atls_http_perform(const atls_http_opts_t *opts, const atls_http_request_t *req,
                       atls_http_response_t *resp);

/* Evented: a state object holding buffers for one transfer. */
typedef struct atls_http_xfer_s atls_http_xfer_t;
/* Creates a configured CURL easy handle (returned as void* to keep curl.h
 * out of the header) bound to xfer; NULL on failure. TLS verification is
 * always on, User-Agent autotls/VERSION. */
void *atls_http_easy_prepare(const atls_http_opts_t *opts, const atls_http_request_t *req,
                             atls_http_xfer_t **xfer);
/* After curl_multi reports the handle done with result code curl_code:
 * fills resp and frees xfer (the caller cleans up the easy handle). */
void atls_http_easy_collect(atls_http_xfer_t *xfer, void *easy, int curl_code,
                            atls_http_response_t *resp);

/* Parses Retry-After (delta-seconds or HTTP-date) relative to now; 0 if absent/bad. */
time_t atls_http_retry_after(const char *value, time_t now);

#endif
