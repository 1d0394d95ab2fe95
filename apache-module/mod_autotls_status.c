/*
 * The autotls-status handler (JSON, or Prometheus with ?format=prometheus)
 * and an AutoTLS section in mod_status's server-status page.  Both render
 * from the store through the core; never key material.  ?name=, ?state=,
 * ?limit= and ?offset= select the certificates (atls_status.h); a bad value
 * is a 400 naming the parameter.
 */
#include <string.h>
#include <time.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"

#include "mod_status.h"
#include "atls_status.h"
#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

static int
autotls_wants_prometheus(const char *args)
{
    const char *p = args;

    while (p != NULL && *p) {
        if (strncmp(p, "format=prometheus", 17) == 0
            && (p[17] == '\0' || p[17] == '&')) {
            return 1;
        }
        p = strchr(p, '&');
        if (p != NULL) {
            p++;
        }
    }
    return 0;
}

static int
autotls_status_handler(request_rec *r)
{
    atls_status_query_t q;
    atls_store_t *st;
    char *body, err[256];
    int prom;

    if (r->handler == NULL || strcmp(r->handler, "autotls-status") != 0) {
        return DECLINED;
    }
    r->allowed |= (AP_METHOD_BIT << M_GET);
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (autotls_global.store_dir == NULL) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    prom = autotls_wants_prometheus(r->args);
    /* Prometheus scrapes every series unless asked for fewer */
    if (atls_status_query_parse(r->args, r->args != NULL ? strlen(r->args) : 0,
                                prom ? 0 : ATLS_STATUS_LIMIT_DEFAULT, &q, err,
                                sizeof(err)) != 0) {
        r->status = HTTP_BAD_REQUEST;
        ap_set_content_type(r, "text/plain; charset=utf-8");
        apr_table_setn(r->headers_out, "Cache-Control", "no-store");
        ap_rprintf(r, "%s\n", err);
        return OK;
    }
    st = autotls_store_open(r->server);
    if (st == NULL) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    body = prom ? atls_status_prometheus_query(st, time(NULL), NULL, &q)
                : atls_status_json_query(st, time(NULL), NULL, &q);
    atls_store_close(st);
    if (body == NULL) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ap_set_content_type(r, prom ? "text/plain; version=0.0.4; charset=utf-8"
                                : "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, (apr_off_t) strlen(body));
    if (!r->header_only) {
        ap_rwrite(body, (int) strlen(body), r);
    }
    free(body);
    return OK;
}

/* mod_status: one row per managed certificate */
/* The last error in its parts, one cell each; a meta written before they
 * existed has only the display text, shown as the detail. */
static void
autotls_status_error_cells(request_rec *r, const atls_cert_meta_t *m)
{
    const char *detail = m->last_error_type ? m->last_error_detail : m->last_error;

    ap_rprintf(r, "<td>%s</td><td>%s</td><td>%s</td><td>%s</td>",
               m->last_error_type ? atls_err_class_name(m->last_error_class) : "",
               m->last_error_type ? ap_escape_html(r->pool, m->last_error_type) : "",
               detail ? ap_escape_html(r->pool, detail) : "",
               m->last_error_key_type ? ap_escape_html(r->pool, m->last_error_key_type)
                                      : "");
}

static int
autotls_status_hook(request_rec *r, int flags)
{
    atls_store_t *st;
    char **ids = NULL, err[256], when[32];
    size_t n = 0, i;
    int brief = flags & AP_STATUS_SHORT;

    if (autotls_global.hosts == NULL || autotls_global.hosts->nelts == 0) {
        return OK;
    }
    st = autotls_store_open(r->server);
    if (st == NULL) {
        return OK;
    }
    if (atls_store_list_certs(st, &ids, &n, err, sizeof(err)) != 0) {
        n = 0;
    }
    if (!brief) {
        ap_rputs("<hr>\n<h2>AutoTLS certificates</h2>\n<table border=\"1\">"
                 "<tr><th>id</th><th>names</th><th>state</th><th>failures</th>"
                 "<th>next renewal</th><th>error class</th><th>error type</th>"
                 "<th>error detail</th><th>error key type</th></tr>\n", r);
    }
    for (i = 0; i < n; i++) {
        atls_cert_meta_t m;
        size_t j;

        memset(&m, 0, sizeof(m));
        if (atls_store_load_meta(st, ids[i], &m, err, sizeof(err)) != 0) {
            atls_cert_meta_free(&m);
            continue;
        }
        when[0] = '\0';
        if (m.renew_at > 0) {
            atls_rfc3339_format(m.renew_at, when, sizeof(when));
        }
        if (brief) {
            ap_rprintf(r, "AutoTLS %s: state=%s failures=%u renew_at=%s\n",
                       m.id, atls_cert_state_name(m.state), m.failures,
                       when[0] ? when : "-");
        } else {
            ap_rprintf(r, "<tr><td>%s</td><td>", ap_escape_html(r->pool, m.id));
            for (j = 0; j < m.n_names; j++) {
                ap_rprintf(r, "%s%s", j ? " " : "", ap_escape_html(r->pool, m.names[j]));
            }
            ap_rprintf(r, "</td><td>%s</td><td>%u</td><td>%s</td>",
                       atls_cert_state_name(m.state), m.failures, when[0] ? when : "-");
            autotls_status_error_cells(r, &m);
            ap_rputs("</tr>\n", r);
        }
        atls_cert_meta_free(&m);
    }
    if (!brief) {
        ap_rputs("</table>\n", r);
    }
    atls_strv_free(ids, n);
    atls_store_close(st);
    return OK;
}

void
autotls_status_register_hooks(void)
{
    ap_hook_handler(autotls_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, autotls_status_hook, NULL, NULL, APR_HOOK_MIDDLE);
}
