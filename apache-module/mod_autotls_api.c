/*
 * The admin API of names registered at runtime (`SetHandler autotls-api`
 * in a <Location> the operator protects with Require, plus an optional
 * AutoTLSApiToken).  The requests are the core's (atls_names_api: PUT,
 * DELETE and GET of /names, JSON); this file only reads the request, checks
 * the token and writes the answer.  A change bumps the store generation:
 * the watchdog orders the name's certificate and every child serves it
 * from its next handshake, with no restart.  On a cluster node the
 * registry is Redis's: the request writes there (autotls_api_store).
 */
#include <string.h>
#include <strings.h>
#include <time.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_release.h"
#include "apr_strings.h"

#include "atls_names.h"
#include "atls_redis.h"
#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

/* A request body is a small JSON object ({"home": "..."}) */
#define AUTOTLS_API_BODY_MAX  8192

/* The path below the API's <Location> ("/names/NAME"): r->uri (decoded)
 * from its last "/names" segment on, which also serves a <LocationMatch>;
 * without one, the last segment (the core answers 404). */
static const char *
autotls_api_path(request_rec *r)
{
    const char *uri = r->uri, *p, *last = NULL;

    for (p = strstr(uri, "/names"); p != NULL; p = strstr(p + 1, "/names")) {
        if (p[6] == '\0' || p[6] == '/') {
            last = p;
        }
    }
    if (last == NULL) {
        last = strrchr(uri, '/');
    }
    return last != NULL ? last : "/";
}

/* The request body, at most AUTOTLS_API_BODY_MAX bytes: OK, or an HTTP
 * status (413 too large, 400 unreadable). */
static int
autotls_api_body(request_rec *r, char **body, size_t *len)
{
    char buf[1024];
    apr_off_t total = 0;
    long n;
    int rc;

    *body = apr_palloc(r->pool, AUTOTLS_API_BODY_MAX + 1);
    *len = 0;
    rc = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK);
    if (rc != OK) {
        return rc;
    }
    if (!ap_should_client_block(r)) {
        (*body)[0] = '\0';
        return OK;
    }
    while ((n = ap_get_client_block(r, buf, sizeof(buf))) > 0) {
        if (total + n > AUTOTLS_API_BODY_MAX) {
            return HTTP_REQUEST_ENTITY_TOO_LARGE;
        }
        memcpy(*body + total, buf, (size_t) n);
        total += n;
    }
    if (n < 0) {
        return HTTP_BAD_REQUEST;
    }
    (*body)[total] = '\0';
    *len = (size_t) total;
    return OK;
}

static int
autotls_api_write(request_rec *r, int status, const char *out, size_t len)
{
    r->status = status;
    if (out != NULL) {
        ap_set_content_type(r, "application/json");
        ap_set_content_length(r, (apr_off_t) len);
        if (!r->header_only) {
            ap_rwrite(out, (int) len, r);
        }
    }
    return OK;
}

/* The store the registry is written to: the node's own on a directory
 * store; on a cluster node (AutoTLSStore redis://), Redis, through a
 * blocking connection of this request's own with the configured timeouts
 * (a write to the mirror would reach no other node); every node's mirror
 * then takes the change. */
static atls_store_t *
autotls_api_store(request_rec *r)
{
    atls_store_t *st;
    char err[512];

    if (autotls_global.redis == NULL) {
        return autotls_store_open(r->server);
    }
    st = atls_store_redis_open(autotls_global.redis, err, sizeof(err));
    if (st == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "autotls-api: AutoTLSStore: %s", err);
    }
    return st;
}

/* The store's answer to the request (an event emitter for the audit trail
 * of this child). */
static int
autotls_api_call(request_rec *r, const char *body, size_t body_len)
{
    const char *by = apr_psprintf(r->pool, "api %s", r->useragent_ip);
    atls_actor_t actor;
    atls_events_t *ev;
    atls_store_t *st;
    char *out = NULL;
    size_t out_len = 0;
    int status = HTTP_INTERNAL_SERVER_ERROR;

    st = autotls_api_store(r);
    if (st == NULL) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    atls_actor_self(&actor, "server", "Apache/" AP_SERVER_BASEREVISION);
    ev = atls_events_new(st, &actor, &autotls_global.notify);
    (void) atls_names_api(st, ev, r->method, autotls_api_path(r), r->args, body,
                          body_len, by, time(NULL), &status, &out, &out_len);
    if (ev != NULL) {
        atls_events_free(ev);
    }
    atls_store_close(st);
    autotls_api_write(r, status, out != NULL ? apr_pstrmemdup(r->pool, out, out_len) : NULL,
                      out_len);
    free(out);
    return OK;
}

static int
autotls_api_handler(request_rec *r)
{
    autotls_dir_conf_t *dc;
    char *body;
    size_t len;
    int rc;

    if (r->handler == NULL || strcmp(r->handler, AUTOTLS_API_HANDLER) != 0) {
        return DECLINED;
    }
    if (autotls_global.store_dir == NULL || autotls_global.generation == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "autotls: SetHandler autotls-api needs an AutoTLS host or "
                      "AutoTLSStoreDir");
        return HTTP_SERVICE_UNAVAILABLE;
    }
    dc = ap_get_module_config(r->per_dir_config, &autotls_module);
    if (dc->api_token != NULL
        && !atls_api_token_ok(dc->api_token,
                              apr_table_get(r->headers_in, "Authorization"))) {
        static const char denied[] = "{\"error\":\"the bearer token of "
                                     "AutoTLSApiToken is required\"}";

        apr_table_setn(r->headers_out, "WWW-Authenticate", "Bearer");
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "autotls: API request without the token of AutoTLSApiToken %s",
                      dc->api_token);
        /* the client's body is left unread: the connection closes */
        r->connection->keepalive = AP_CONN_CLOSE;
        return autotls_api_write(r, HTTP_UNAUTHORIZED, denied, sizeof(denied) - 1);
    }
    rc = autotls_api_body(r, &body, &len);
    if (rc != OK) {
        return rc;
    }
    return autotls_api_call(r, body, len);
}

void
autotls_api_register_hooks(void)
{
    ap_hook_handler(autotls_api_handler, NULL, NULL, APR_HOOK_MIDDLE);
}
