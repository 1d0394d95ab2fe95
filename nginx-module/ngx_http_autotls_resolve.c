/*
 * autotls for nginx: names and issuers resolved after the whole http{}
 * block is read (ngx_http_autotls_resolve), so that the order of blocks
 * does not matter: each server with "autotls" gets its certificates, and
 * every error names the file and line of the directive at fault.
 */

#include "ngx_http_autotls_module.h"


static ngx_int_t ngx_http_autotls_server_names(ngx_conf_t *cf,
    ngx_http_autotls_srv_conf_t *ascf, ngx_http_core_srv_conf_t *cscf,
    ngx_array_t *out);


/* the names of server_name, checked for what ACME can certify */
static ngx_int_t
ngx_http_autotls_server_names(ngx_conf_t *cf,
    ngx_http_autotls_srv_conf_t *ascf, ngx_http_core_srv_conf_t *cscf,
    ngx_array_t *out)
{
    ngx_str_t               *n;
    ngx_uint_t               i;
    ngx_http_server_name_t  *sn;

    sn = cscf->server_names.elts;

    for (i = 0; i < cscf->server_names.nelts; i++) {

#if (NGX_PCRE)
        if (sn[i].regex) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "autotls cannot certify the regular expression "
                          "server name \"%V\"; list the names in "
                          "\"autotls %V NAME...;\" in %s:%ui",
                          &sn[i].name, &ascf->issuer, ascf->file, ascf->line);
            return NGX_ERROR;
        }
#endif

        if (sn[i].name.len == 0
            || (sn[i].name.len == 1 && sn[i].name.data[0] == '_'))
        {
            continue;
        }

        n = ngx_array_push(out);
        if (n == NULL) {
            return NGX_ERROR;
        }

        *n = sn[i].name;
    }

    return NGX_OK;
}


/* core server configurations that have at least one "listen ... ssl" */
ngx_array_t *
ngx_http_autotls_ssl_servers(ngx_conf_t *cf)
{
    ngx_uint_t                   p, a, s;
    ngx_array_t                 *ssl_servers;
    ngx_http_conf_port_t        *port;
    ngx_http_conf_addr_t        *addr;
    ngx_http_core_srv_conf_t   **cscfp, **slot;
    ngx_http_core_main_conf_t   *cmcf;

    ssl_servers = ngx_array_create(cf->temp_pool, 4,
                                   sizeof(ngx_http_core_srv_conf_t *));
    if (ssl_servers == NULL) {
        return NULL;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    if (cmcf->ports == NULL) {
        return ssl_servers;
    }

    port = cmcf->ports->elts;
    for (p = 0; p < cmcf->ports->nelts; p++) {
        addr = port[p].addrs.elts;
        for (a = 0; a < port[p].addrs.nelts; a++) {
            if (!addr[a].opt.ssl) {
                continue;
            }
            cscfp = addr[a].servers.elts;
            for (s = 0; s < addr[a].servers.nelts; s++) {
                slot = ngx_array_push(ssl_servers);
                if (slot == NULL) {
                    return NULL;
                }
                *slot = cscfp[s];
            }
        }
    }

    return ssl_servers;
}


/* orders names by length, then bytes: the SNI lookup uses the same order */
static int
ngx_http_autotls_name_cmp(const void *a, const void *b)
{
    const ngx_http_autotls_name_t  *x = a, *y = b;

    if (x->name.len != y->name.len) {
        return x->name.len < y->name.len ? -1 : 1;
    }

    return ngx_memcmp(x->name.data, y->name.data, x->name.len);
}


typedef struct {
    ngx_str_t   *name;
    ngx_uint_t   index;
} ngx_http_autotls_seen_t;


static int
ngx_http_autotls_seen_cmp(const void *a, const void *b)
{
    const ngx_http_autotls_seen_t  *x = a, *y = b;
    int                             rc;

    if (x->name->len != y->name->len) {
        return x->name->len < y->name->len ? -1 : 1;
    }

    rc = ngx_memcmp(x->name->data, y->name->data, x->name->len);
    if (rc != 0) {
        return rc;
    }

    return x->index < y->index ? -1 : (x->index > y->index);
}


static int
ngx_http_autotls_id_cmp(const void *a, const void *b)
{
    ngx_http_autotls_cert_t * const  *x = a, * const *y = b;

    return ngx_strcmp((*x)->id, (*y)->id);
}


/*
 * Checks every name of an "autotls" server and marks repeated ones in
 * dup[] (a sort, not a quadratic scan: a hosting server may list 10,000).
 */
static ngx_int_t
ngx_http_autotls_check_names(ngx_conf_t *cf,
    ngx_http_autotls_srv_conf_t *ascf, ngx_http_autotls_issuer_t *iss,
    ngx_array_t *names, u_char *dup)
{
    ngx_str_t                *nm;
    ngx_uint_t                i;
    ngx_http_autotls_seen_t  *seen;

    nm = names->elts;

    seen = ngx_palloc(cf->temp_pool,
                      names->nelts * sizeof(ngx_http_autotls_seen_t));
    if (seen == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < names->nelts; i++) {

        if (nm[i].len > NGX_HTTP_AUTOTLS_NAME_MAX) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "autotls name \"%V\" is too long in %s:%ui",
                          &nm[i], ascf->file, ascf->line);
            return NGX_ERROR;
        }

        if (nm[i].data[0] == '.'
            || (nm[i].data[0] == '*'
                && (nm[i].len < 3 || nm[i].data[1] != '.'))
            || ngx_strlchr(nm[i].data + 1, nm[i].data + nm[i].len, '*'))
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "autotls cannot certify the name \"%V\": only "
                          "exact names and \"*.domain\" are possible "
                          "in %s:%ui", &nm[i], ascf->file, ascf->line);
            return NGX_ERROR;
        }

        if (nm[i].data[0] == '*' && iss->is.challenge != ATLS_CHAL_DNS01) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "the wildcard name \"%V\" needs an issuer "
                          "with \"challenge dns-01\" in %s:%ui",
                          &nm[i], ascf->file, ascf->line);
            return NGX_ERROR;
        }

        seen[i].name = &nm[i];
        seen[i].index = i;
        dup[i] = 0;
    }

    ngx_qsort(seen, names->nelts, sizeof(ngx_http_autotls_seen_t),
              ngx_http_autotls_seen_cmp);

    for (i = 1; i < names->nelts; i++) {
        if (seen[i].name->len == seen[i - 1].name->len
            && ngx_memcmp(seen[i].name->data, seen[i - 1].name->data,
                          seen[i].name->len)
               == 0)
        {
            /* the first occurrence stays: it may be names[0], the id */
            dup[seen[i].index] = 1;
        }
    }

    return NGX_OK;
}


static char *
ngx_http_autotls_pstr(ngx_conf_t *cf, ngx_str_t *s)
{
    u_char  *p;

    p = ngx_pnalloc(cf->pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    (void) ngx_cpystrn(p, s->data, s->len + 1);

    return (char *) p;
}


static ngx_int_t
ngx_http_autotls_add_cert(ngx_conf_t *cf, ngx_http_autotls_main_conf_t *amcf,
    ngx_http_autotls_cert_t *cert)
{
    ngx_http_autotls_cert_t  **slot;

    cert->id = atls_cert_id(cert->names[0]);
    if (cert->id == NULL) {
        return NGX_ERROR;
    }

    slot = ngx_array_push(&amcf->certs);
    if (slot == NULL) {
        free(cert->id);
        cert->id = NULL;
        return NGX_ERROR;
    }

    cert->index = amcf->certs.nelts - 1;
    *slot = cert;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                   "autotls: certificate \"%s\" first name \"%s\"",
                   cert->id, cert->names[0]);

    return NGX_OK;
}


/* the autotls_issuer block a server's "autotls" names; NULL if none */
static ngx_http_autotls_issuer_t *
ngx_http_autotls_find_issuer(ngx_http_autotls_main_conf_t *amcf,
    ngx_http_autotls_srv_conf_t *ascf)
{
    ngx_uint_t                  i;
    ngx_http_autotls_issuer_t  *iss;

    iss = amcf->issuers.elts;

    for (i = 0; i < amcf->issuers.nelts; i++) {
        if (iss[i].name.len == ascf->issuer.len
            && ngx_strncmp(iss[i].name.data, ascf->issuer.data,
                           ascf->issuer.len) == 0)
        {
            return &iss[i];
        }
    }

    return NULL;
}


ngx_uint_t
ngx_http_autotls_listens_ssl(ngx_array_t *ssl_servers,
    ngx_http_core_srv_conf_t *cscf)
{
    ngx_uint_t                  i;
    ngx_http_core_srv_conf_t  **sslp;

    sslp = ssl_servers->elts;

    for (i = 0; i < ssl_servers->nelts; i++) {
        if (sslp[i] == cscf) {
            return 1;
        }
    }

    return 0;
}


/* the names listed in "autotls", else those of server_name */
static ngx_int_t
ngx_http_autotls_names(ngx_conf_t *cf, ngx_http_autotls_srv_conf_t *ascf,
    ngx_http_core_srv_conf_t *cscf, ngx_array_t *names)
{
    if (ascf->names) {
        *names = *ascf->names;

    } else {
        if (ngx_array_init(names, cf->temp_pool, 4, sizeof(ngx_str_t))
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ngx_http_autotls_server_names(cf, ascf, cscf, names) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (names->nelts == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"autotls\" has no names: set \"server_name\" or "
                      "list them in \"autotls %V NAME...;\" in %s:%ui",
                      &ascf->issuer, ascf->file, ascf->line);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* one certificate for the n distinct names of the server */
static ngx_int_t
ngx_http_autotls_one_cert(ngx_conf_t *cf, ngx_http_autotls_main_conf_t *amcf,
    ngx_http_autotls_srv_conf_t *ascf, ngx_http_autotls_issuer_t *iss,
    ngx_array_t *names, u_char *dup, ngx_uint_t n)
{
    ngx_str_t                *nm;
    ngx_uint_t                i;
    ngx_http_autotls_cert_t  *cert;

    nm = names->elts;

    cert = ngx_pcalloc(cf->pool, sizeof(ngx_http_autotls_cert_t));
    if (cert == NULL) {
        return NGX_ERROR;
    }

    cert->names = ngx_pcalloc(cf->pool, (n + 1) * sizeof(char *));
    if (cert->names == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < names->nelts; i++) {
        if (dup[i]) {
            continue;
        }

        cert->names[cert->n_names] = ngx_http_autotls_pstr(cf, &nm[i]);
        if (cert->names[cert->n_names] == NULL) {
            return NGX_ERROR;
        }

        cert->n_names++;
    }

    cert->issuer = iss;
    cert->file = ascf->file;
    cert->line = ascf->line;

    if (ngx_http_autotls_add_cert(cf, amcf, cert) != NGX_OK) {
        return NGX_ERROR;
    }

    ascf->cert = cert;

    return NGX_OK;
}


/* per_name: one certificate per name, found by a binary search */
static ngx_int_t
ngx_http_autotls_per_name(ngx_conf_t *cf, ngx_http_autotls_main_conf_t *amcf,
    ngx_http_autotls_srv_conf_t *ascf, ngx_http_autotls_issuer_t *iss,
    ngx_array_t *names, u_char *dup, ngx_uint_t n)
{
    char                    **vecs;
    ngx_str_t                *nm;
    ngx_uint_t                i, k;
    ngx_http_autotls_name_t  *bn;
    ngx_http_autotls_cert_t  *cert;

    nm = names->elts;

    cert = ngx_pcalloc(cf->pool, n * sizeof(ngx_http_autotls_cert_t));
    bn = ngx_pcalloc(cf->pool, n * sizeof(ngx_http_autotls_name_t));
    /* each certificate's names: its one name and the NULL after it */
    vecs = ngx_pcalloc(cf->pool, 2 * n * sizeof(char *));
    if (cert == NULL || bn == NULL || vecs == NULL) {
        return NGX_ERROR;
    }

    k = 0;

    for (i = 0; i < names->nelts; i++) {
        if (dup[i]) {
            continue;
        }

        cert[k].names = &vecs[2 * k];
        cert[k].names[0] = ngx_http_autotls_pstr(cf, &nm[i]);
        if (cert[k].names[0] == NULL) {
            return NGX_ERROR;
        }

        cert[k].n_names = 1;
        cert[k].issuer = iss;
        cert[k].file = ascf->file;
        cert[k].line = ascf->line;

        if (ngx_http_autotls_add_cert(cf, amcf, &cert[k]) != NGX_OK) {
            return NGX_ERROR;
        }

        bn[k].name.data = (u_char *) cert[k].names[0];
        bn[k].name.len = nm[i].len;
        bn[k].cert = &cert[k];
        k++;
    }

    ngx_qsort(bn, n, sizeof(ngx_http_autotls_name_t),
              ngx_http_autotls_name_cmp);

    ascf->cert = &cert[0];
    ascf->by_name = bn;
    ascf->n_by_name = n;

    return NGX_OK;
}


/* the certificates of one server with "autotls" */
static ngx_int_t
ngx_http_autotls_resolve_server(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf, ngx_http_autotls_srv_conf_t *ascf,
    ngx_http_core_srv_conf_t *cscf, ngx_array_t *ssl_servers)
{
    u_char                     *dup;
    ngx_uint_t                  i, n;
    ngx_array_t                 names;
    ngx_http_autotls_issuer_t  *iss;

    iss = ngx_http_autotls_find_issuer(amcf, ascf);
    if (iss == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "unknown autotls_issuer \"%V\" in %s:%ui",
                      &ascf->issuer, ascf->file, ascf->line);
        return NGX_ERROR;
    }

    if (!ngx_http_autotls_listens_ssl(ssl_servers, cscf)) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"autotls\" needs a \"listen ... ssl\" in its "
                      "server in %s:%ui", ascf->file, ascf->line);
        return NGX_ERROR;
    }

    if (ascf->dynamic != NGX_HTTP_AUTOTLS_STATIC) {
        return ngx_http_autotls_dyn_home(cf, amcf, ascf, iss);
    }

    if (ngx_http_autotls_names(cf, ascf, cscf, &names) != NGX_OK) {
        return NGX_ERROR;
    }

    dup = ngx_palloc(cf->temp_pool, names.nelts);
    if (dup == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_autotls_check_names(cf, ascf, iss, &names, dup) != NGX_OK) {
        return NGX_ERROR;
    }

    n = 0;
    for (i = 0; i < names.nelts; i++) {
        n += !dup[i];
    }

    if (ascf->per_name) {
        return ngx_http_autotls_per_name(cf, amcf, ascf, iss, &names, dup, n);
    }

    return ngx_http_autotls_one_cert(cf, amcf, ascf, iss, &names, dup, n);
}


/* a certificate (its store entry) belongs to one server */
static ngx_int_t
ngx_http_autotls_unique_ids(ngx_conf_t *cf, ngx_http_autotls_main_conf_t *amcf)
{
    ngx_uint_t                 i, n;
    ngx_http_autotls_cert_t  **sorted, *cert;

    n = amcf->certs.nelts;
    if (n < 2) {
        return NGX_OK;
    }

    sorted = ngx_palloc(cf->temp_pool, n * sizeof(ngx_http_autotls_cert_t *));
    if (sorted == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(sorted, amcf->certs.elts, n * sizeof(ngx_http_autotls_cert_t *));
    ngx_qsort(sorted, n, sizeof(ngx_http_autotls_cert_t *),
              ngx_http_autotls_id_cmp);

    for (i = 1; i < n; i++) {
        if (ngx_strcmp(sorted[i]->id, sorted[i - 1]->id) == 0) {
            /* the later one is at fault */
            cert = sorted[i]->index > sorted[i - 1]->index ? sorted[i]
                                                           : sorted[i - 1];
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "autotls certificate \"%s\" is already "
                          "managed by another server in %s:%ui",
                          cert->id, cert->file, cert->line);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_autotls_resolve(ngx_conf_t *cf, ngx_http_autotls_main_conf_t *amcf)
{
    ngx_uint_t                     s;
    ngx_array_t                   *ssl_servers;
    ngx_http_core_srv_conf_t     **cscfp;
    ngx_http_core_main_conf_t     *cmcf;
    ngx_http_autotls_srv_conf_t   *ascf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    cscfp = cmcf->servers.elts;

    ssl_servers = ngx_http_autotls_ssl_servers(cf);
    if (ssl_servers == NULL) {
        return NGX_ERROR;
    }

    for (s = 0; s < cmcf->servers.nelts; s++) {

        ascf = cscfp[s]->ctx->srv_conf[ngx_http_autotls_module.ctx_index];

        if (ascf->unknown_line && ascf->dynamic == NGX_HTTP_AUTOTLS_STATIC) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"autotls_dynamic_unknown\" needs \"autotls "
                          "ISSUER dynamic;\" in its server in %s:%ui",
                          ascf->unknown_file, ascf->unknown_line);
            return NGX_ERROR;
        }

        if (ascf->issuer.len == 0) {
            continue;
        }

        if (ngx_http_autotls_resolve_server(cf, amcf, ascf, cscfp[s],
                                            ssl_servers)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_autotls_unique_ids(cf, amcf);
}
