/*
 * http-01: every child answers /.well-known/acme-challenge/TOKEN from the
 * tokens the renewal driver published in the store.  It runs in
 * post_read_request, before translate_name, so that Redirect and
 * RewriteRule on the port-80 host cannot get in the way.
 */
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"
#include "apr_buckets.h"

#include "atls_b64.h"
#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

/* A DNS name (optionally "*."), or an IP literal: nothing that could
 * leave a directory or hide as a dot file when used in a store path. */
int
autotls_name_ok(const char *name)
{
    const char *p = name;
    size_t len;

    if (name == NULL || (len = strlen(name)) == 0 || len > 253) {
        return 0;
    }
    if (p[0] == '*' && p[1] == '.') {
        p += 2;
    }
    if (*p == '.' || *p == '\0' || strstr(p, "..") != NULL) {
        return 0;
    }
    for (; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == ':')) {
            return 0;
        }
    }
    return 1;
}

static int
autotls_http_challenge(request_rec *r)
{
    static const size_t plen = sizeof(AUTOTLS_CHALLENGE_PATH) - 1;
    const char *path = r->parsed_uri.path, *token;
    apr_bucket_brigade *bb;
    atls_store_t *st;
    char *data = NULL, err[256];
    size_t len;
    int rc;

    if (autotls_global.hosts == NULL || autotls_global.hosts->nelts == 0
        || path == NULL || strncmp(path, AUTOTLS_CHALLENGE_PATH, plen) != 0) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    token = path + plen;
    if (!atls_b64url_is_token(token, strlen(token))) {
        return HTTP_NOT_FOUND;
    }
    st = autotls_store_open(r->server);
    if (st == NULL) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    rc = atls_store_get_challenge(st, ATLS_CHAL_HTTP01, token, &data, &len, err,
                                  sizeof(err));
    atls_store_close(st);
    if (rc != ATLS_STORE_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      "autotls: unknown http-01 token %s", token);
        return HTTP_NOT_FOUND;
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  "autotls: answering http-01 challenge %s for %s", token,
                  r->hostname ? r->hostname : "-");
    r->status = HTTP_OK;
    ap_set_content_type(r, "text/plain");
    ap_set_content_length(r, (apr_off_t) len);
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    rc = apr_brigade_write(bb, NULL, NULL, data, len);
    free(data);
    if (rc != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(r->connection->bucket_alloc));
    if (ap_pass_brigade(r->output_filters, bb) != APR_SUCCESS) {
        return AP_FILTER_ERROR;
    }
    apr_brigade_cleanup(bb);
    return DONE;
}

void
autotls_challenge_register_hooks(void)
{
    ap_hook_post_read_request(autotls_http_challenge, NULL, NULL, APR_HOOK_REALLY_FIRST);
}
