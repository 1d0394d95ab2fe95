/*
 * autotls for nginx: configuration of names at runtime.
 *
 *   server { listen 443 ssl default_server; autotls ISSUER dynamic; }
 *   autotls_dynamic_unknown reject | fallback;       (server, default fallback)
 *   autotls_cache max=N;                             (http, default unbounded)
 *
 * A server with "autotls ISSUER dynamic" (or on_demand) is the home of the
 * names registered for ISSUER (the registry's "home" is the issuer block's
 * name; an entry with no home belongs to the first dynamic home).  It has
 * no certificate of its own: SNI picks the registered name's.
 *
 * The shared zone, unless autotls_shared_zone sizes it, is sized from the
 * configured certificates and the number of entries in the registry at
 * start (the count it keeps with its generation), with headroom for names
 * added later; rounded to a power of two so that a registry growing a little
 * does not change the size (a new size is a new zone at the next reload).
 */

#include "ngx_http_autotls_module.h"


/* what one certificate's counter and one dynamic name take in the zone
 * (slab slots: 128 bytes for most names, 256 for long ones) */
#define NGX_HTTP_AUTOTLS_ZONE_PER_CERT   128
#define NGX_HTTP_AUTOTLS_ZONE_PER_NAME   160
/* dynamic names the zone holds beyond those found at start */
#define NGX_HTTP_AUTOTLS_NAMES_HEADROOM  4096


static ngx_conf_enum_t  ngx_http_autotls_unknown_values[] = {
    { ngx_string("fallback"), NGX_HTTP_AUTOTLS_UNKNOWN_FALLBACK },
    { ngx_string("reject"), NGX_HTTP_AUTOTLS_UNKNOWN_REJECT },
    { ngx_null_string, 0 }
};


/* autotls_dynamic_unknown reject | fallback; */
char *
ngx_http_autotls_dynamic_unknown(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_autotls_srv_conf_t  *ascf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (ascf->unknown != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; ngx_http_autotls_unknown_values[i].name.len; i++) {
        if (value[1].len == ngx_http_autotls_unknown_values[i].name.len
            && ngx_strncmp(value[1].data,
                           ngx_http_autotls_unknown_values[i].name.data,
                           value[1].len) == 0)
        {
            ascf->unknown = ngx_http_autotls_unknown_values[i].value;
            ascf->unknown_file = cf->conf_file->file.name.data;
            ascf->unknown_line = cf->conf_file->line;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"autotls_dynamic_unknown\": "
                       "it must be \"reject\" or \"fallback\"", &value[1]);

    return NGX_CONF_ERROR;
}


/* autotls_cache max=N; */
char *
ngx_http_autotls_cache_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_autotls_main_conf_t  *amcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (amcf->cache_max != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len > 4 && ngx_strncmp(value[1].data, "max=", 4) == 0) {
        n = ngx_atoi(value[1].data + 4, value[1].len - 4);

        if (n != NGX_ERROR && n > 0) {
            amcf->cache_max = (ngx_uint_t) n;
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"autotls_cache\": it must "
                       "be \"max=N\" with N at least 1", &value[1]);

    return NGX_CONF_ERROR;
}


/*
 * A dynamic home: checked (one home per issuer, no names of its own) and
 * given a certificate record that carries its issuer and the name of its
 * fallback certificate.
 */
ngx_int_t
ngx_http_autotls_dyn_home(ngx_conf_t *cf, ngx_http_autotls_main_conf_t *amcf,
    ngx_http_autotls_srv_conf_t *ascf, ngx_http_autotls_issuer_t *iss)
{
    ngx_uint_t                     i;
    ngx_http_autotls_cert_t       *home;
    ngx_http_autotls_srv_conf_t  **homes, **slot;

    static char  *fallback_names[] = { "autotls.invalid", NULL };

    homes = amcf->homes.elts;

    for (i = 0; i < amcf->homes.nelts; i++) {
        if (homes[i]->issuer.len == ascf->issuer.len
            && ngx_strncmp(homes[i]->issuer.data, ascf->issuer.data,
                           ascf->issuer.len) == 0)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"autotls %V dynamic\" is already the home of "
                          "issuer \"%V\" in %s:%ui; one server per issuer "
                          "in %s:%ui", &ascf->issuer, &ascf->issuer,
                          homes[i]->file, homes[i]->line,
                          ascf->file, ascf->line);
            return NGX_ERROR;
        }
    }

    if (ascf->issuer.len > 255) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "the issuer name of \"autotls ... dynamic\" is too "
                      "long in %s:%ui", ascf->file, ascf->line);
        return NGX_ERROR;
    }

    home = ngx_pcalloc(cf->pool, sizeof(ngx_http_autotls_cert_t));
    if (home == NULL) {
        return NGX_ERROR;
    }

    home->index = NGX_HTTP_AUTOTLS_NO_INDEX;
    home->issuer = iss;
    home->names = fallback_names;
    home->n_names = 1;
    home->id = NULL;
    home->file = ascf->file;
    home->line = ascf->line;

    slot = ngx_array_push(&amcf->homes);
    if (slot == NULL) {
        return NGX_ERROR;
    }

    *slot = ascf;
    ascf->home = home;

    return NGX_OK;
}


/*
 * The home of a registry entry: its issuer's dynamic server, the first
 * one for an entry with no home; NULL when this configuration has none
 * (another server sharing the store may serve the name).
 */
ngx_http_autotls_srv_conf_t *
ngx_http_autotls_dyn_find_home(ngx_http_autotls_main_conf_t *amcf,
    const char *name)
{
    size_t                         len;
    ngx_uint_t                     i;
    ngx_http_autotls_srv_conf_t  **homes;

    homes = amcf->homes.elts;

    if (amcf->homes.nelts == 0) {
        return NULL;
    }

    if (name == NULL || name[0] == '\0') {
        return homes[0];
    }

    len = ngx_strlen(name);

    for (i = 0; i < amcf->homes.nelts; i++) {
        if (homes[i]->issuer.len == len
            && ngx_strncmp(homes[i]->issuer.data, name, len) == 0)
        {
            return homes[i];
        }
    }

    return NULL;
}


/* registry entries counted by listing names/ in pages (a registry whose
 * count is not known at its generation: written by an older version) */
static size_t
ngx_http_autotls_listed_names(atls_store_t *st, ngx_log_t *log)
{
    char                  err[512], **page;
    size_t                n, i, total;
    atls_store_cursor_t  *cursor;

    cursor = NULL;
    total = 0;

    do {
        page = NULL;
        n = 0;

        if (atls_store_list_page(st, "names", &cursor, 1024, &page, &n,
                                 err, sizeof(err))
            != ATLS_STORE_OK)
        {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "autotls: the shared zone is sized without the "
                          "registry of dynamic names: %s", err);
            return total;
        }

        for (i = 0; i < n; i++) {
            free(page[i]);
        }

        free(page);
        total += n;

    } while (cursor != NULL);

    return total;
}


/*
 * The registry's entries (each a name the zone may hold), from the count
 * the registry keeps with its generation: nothing is listed at start-up
 * (100,000 names listed were a second of the configuration); 0 when there
 * is no store yet.
 */
static ngx_uint_t
ngx_http_autotls_stored_names(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf)
{
    char           err[512];
    size_t         n;
    atls_store_t  *st;

    err[0] = '\0';

    /* a store that does not exist yet (first start) holds nothing */
    st = atls_store_fs_open((char *) amcf->store.data, err, sizeof(err));
    if (st == NULL) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                       "autotls: zone size without the store: %s", err);
        return 0;
    }

    if (atls_names_count(st, &n) != ATLS_STORE_OK) {
        n = ngx_http_autotls_listed_names(st, cf->log);
    }

    atls_store_close(st);

    return (ngx_uint_t) ngx_min(n, ATLS_NAMES_COUNT_MAX);
}


/* the zone's size when autotls_shared_zone does not give it */
ngx_int_t
ngx_http_autotls_zone_size(ngx_conf_t *cf, ngx_http_autotls_main_conf_t *amcf)
{
    size_t  need, size;

    amcf->names_max = 0;

    if (amcf->homes.nelts > 0) {
        amcf->names_max = ngx_http_autotls_stored_names(cf, amcf)
                          + NGX_HTTP_AUTOTLS_NAMES_HEADROOM;
        amcf->names_max += amcf->names_max / 2;
    }

    if (amcf->shm_size != NGX_CONF_UNSET_SIZE) {
        return NGX_OK;
    }

    need = NGX_HTTP_AUTOTLS_DEFAULT_SHM / 2
           + amcf->certs.nelts * NGX_HTTP_AUTOTLS_ZONE_PER_CERT
           + amcf->names_max * NGX_HTTP_AUTOTLS_ZONE_PER_NAME;

    for (size = NGX_HTTP_AUTOTLS_DEFAULT_SHM; size < need; size *= 2) {
        /* void */
    }

    amcf->shm_size = size;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, cf->log, 0,
                   "autotls: shared zone %uz bytes for %ui certificates and "
                   "%ui dynamic names", size, amcf->certs.nelts,
                   amcf->names_max);

    return NGX_OK;
}
