/*
 * autotls for nginx: discovery of the certificates autotls does not manage.
 *
 * At configuration time (in the master, at every start and reload, and
 * under nginx -t) every http server that listens with ssl and has no
 * "autotls" names its ssl_certificate files; each file without variables
 * is parsed once by the core (atls_inventory_load_file) and remembers the
 * server names answered with it and the server blocks ("FILE:LINE") using
 * it.  The findings (expired, name not covered, weak key, SHA-1...) are
 * logged once, here in the master; the items stay in the main conf, so
 * workers inherit them without reading a file, and the driver writes them
 * to the store, where the status page, the metrics, `autotls list --all`
 * and the scheduler's expiry alerts read them.
 *
 * ngx_http_ssl_module keeps the configured names in its server
 * configuration's "certificates" array of strings (nginx 1.22 to 1.30);
 * names with variables are loaded per handshake and cannot be known here.
 * stream{} servers belong to ngx_stream_ssl_module, which an http module
 * cannot see.
 */

#include "ngx_http_autotls_module.h"
#include <ngx_http_ssl_module.h>


static ngx_int_t ngx_http_autotls_discover_server(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf, ngx_http_core_srv_conf_t *cscf);
static atls_inventory_item_t *ngx_http_autotls_inventory_item(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf, ngx_str_t *file);
static void ngx_http_autotls_inventory_use(ngx_conf_t *cf,
    atls_inventory_item_t *it, ngx_http_core_srv_conf_t *cscf,
    const char *where);


ngx_int_t
ngx_http_autotls_discover(ngx_conf_t *cf, ngx_http_autotls_main_conf_t *amcf)
{
    ngx_uint_t                   s;
    ngx_array_t                 *ssl_servers;
    ngx_http_core_srv_conf_t   **cscfp;
    ngx_http_core_main_conf_t   *cmcf;
    ngx_http_autotls_srv_conf_t *ascf;

    ssl_servers = ngx_http_autotls_ssl_servers(cf);
    if (ssl_servers == NULL) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    cscfp = cmcf->servers.elts;

    for (s = 0; s < cmcf->servers.nelts; s++) {

        ascf = cscfp[s]->ctx->srv_conf[ngx_http_autotls_module.ctx_index];

        /* managed, or a certificate nobody is served with */
        if (ascf->issuer.len
            || !ngx_http_autotls_listens_ssl(ssl_servers, cscfp[s]))
        {
            continue;
        }

        if (ngx_http_autotls_discover_server(cf, amcf, cscfp[s]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (amcf->n_inventory) {
        /* once per start or reload: workers inherit, and never log them */
        atls_inventory_log_findings(amcf->inventory, amcf->n_inventory,
                                    &amcf->notify.warn, ngx_time());
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_autotls_discover_server(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf, ngx_http_core_srv_conf_t *cscf)
{
    u_char                   *p;
    ngx_str_t                *file;
    ngx_uint_t                i;
    atls_inventory_item_t    *it;
    ngx_http_ssl_srv_conf_t  *sscf;
    u_char                    where[NGX_MAX_PATH + NGX_INT_T_LEN + 2];

    sscf = cscf->ctx->srv_conf[ngx_http_ssl_module.ctx_index];

    if (sscf->certificates == NULL
        || sscf->certificates == NGX_CONF_UNSET_PTR)
    {
        return NGX_OK;
    }

    p = ngx_snprintf(where, sizeof(where) - 1, "%s:%ui",
                     cscf->file_name ? cscf->file_name : (u_char *) "?",
                     cscf->line);
    *p = '\0';

    file = sscf->certificates->elts;

    for (i = 0; i < sscf->certificates->nelts; i++) {

        /* loaded per handshake: nothing to read at configuration time */
        if (ngx_strlchr(file[i].data, file[i].data + file[i].len, '$')
            || (file[i].len >= 5 && ngx_strncmp(file[i].data, "data:", 5) == 0))
        {
            continue;
        }

        it = ngx_http_autotls_inventory_item(cf, amcf, &file[i]);
        if (it == NULL) {
            return NGX_ERROR;
        }

        ngx_http_autotls_inventory_use(cf, it, cscf, (char *) where);
    }

    return NGX_OK;
}


/* the item of a file, parsed at its first use */
static atls_inventory_item_t *
ngx_http_autotls_inventory_item(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf, ngx_str_t *file)
{
    size_t                  i;
    ngx_str_t               full;
    atls_inventory_item_t  *items, *it;

    full.len = file->len;
    full.data = ngx_pnalloc(cf->temp_pool, file->len + 1);
    if (full.data == NULL) {
        return NULL;
    }

    ngx_memcpy(full.data, file->data, file->len);
    full.data[full.len] = '\0';

    /* as ngx_ssl_certificate() reads it: relative to the conf prefix */
    if (ngx_conf_full_name(cf->cycle, &full, 1) != NGX_OK) {
        return NULL;
    }

    for (i = 0; i < amcf->n_inventory; i++) {
        if (ngx_strcmp(amcf->inventory[i].path, full.data) == 0) {
            return &amcf->inventory[i];
        }
    }

    /* malloc'd, freed with the main conf (atls_inventory_items_free) */
    items = realloc(amcf->inventory,
                    (amcf->n_inventory + 1) * sizeof(atls_inventory_item_t));
    if (items == NULL) {
        return NULL;
    }

    amcf->inventory = items;
    it = &items[amcf->n_inventory];
    ngx_memzero(it, sizeof(atls_inventory_item_t));

    if (atls_inventory_load_file((char *) full.data, it) != 0) {
        atls_inventory_item_free(it);
        return NULL;
    }

    amcf->n_inventory++;

    it->server = strdup("nginx");
    if (it->server == NULL) {
        return NULL;
    }

    return it;
}


/* the exact server names answered with the item, from where */
static void
ngx_http_autotls_inventory_use(ngx_conf_t *cf, atls_inventory_item_t *it,
    ngx_http_core_srv_conf_t *cscf, const char *where)
{
    u_char                  *name;
    ngx_uint_t               i, used;
    ngx_http_server_name_t  *sn;

    sn = cscf->server_names.elts;
    used = 0;

    for (i = 0; i < cscf->server_names.nelts; i++) {

#if (NGX_PCRE)
        if (sn[i].regex) {
            continue;
        }
#endif

        /* "", "_" and nginx's ".example.com" / "example.*" forms */
        if (sn[i].name.len == 0
            || (sn[i].name.len == 1 && sn[i].name.data[0] == '_')
            || sn[i].name.data[0] == '.'
            || sn[i].name.data[sn[i].name.len - 1] == '*')
        {
            continue;
        }

        name = ngx_pnalloc(cf->temp_pool, sn[i].name.len + 1);
        if (name == NULL) {
            continue;
        }

        (void) ngx_cpystrn(name, sn[i].name.data, sn[i].name.len + 1);

        atls_inventory_item_use(it, (char *) name, where);
        used++;
    }

    if (used == 0) {
        /* a default server: used, with no name to check */
        atls_inventory_item_use(it, NULL, where);
    }
}
