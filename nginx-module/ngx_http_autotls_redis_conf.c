/*
 * autotls for nginx: the autotls_store directive.
 *
 *   autotls_store DIR;
 *   autotls_store redis://[user:password@]host:port[/db] [tls] [ca_file=F]
 *                 key_file=F [prefix=P] [mirror=DIR] [node=ID];
 *
 * With Redis, the node keeps a mirror directory in the filesystem store's
 * format (mirror=, the default store directory otherwise): the master
 * prepares it as it prepares a store directory, every worker serves from
 * it, and the driver worker keeps it in line with Redis
 * (ngx_http_autotls_cluster.c).  The URL and its options are parsed by the
 * core (atls_redis_conf_parse); errors name the directive.  The password
 * is never copied into a message.
 */

#include "ngx_http_autotls_module.h"


static ngx_int_t ngx_http_autotls_redis_path(ngx_conf_t *cf, char **path);
static char *ngx_http_autotls_redis_store(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf);
static void ngx_http_autotls_redis_cleanup(void *data);


char *
ngx_http_autotls_store_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_autotls_main_conf_t  *amcf = conf;

    ngx_str_t  *value;

    if (amcf->store.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strncmp(value[1].data, "redis://", 8) == 0
        || ngx_strncmp(value[1].data, "rediss://", 9) == 0)
    {
        return ngx_http_autotls_redis_store(cf, amcf);
    }

    if (cf->args->nelts > 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "autotls_store: a directory takes no options "
                           "(only a redis:// store does)");
        return NGX_CONF_ERROR;
    }

    amcf->store = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_autotls_redis_store(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf)
{
    char                **opts, err[512];
    ngx_str_t            *value;
    ngx_uint_t            i, n;
    atls_redis_key_t      key;
    atls_redis_conf_t    *rc;
    ngx_pool_cleanup_t   *cln;

    value = cf->args->elts;
    n = cf->args->nelts - 2;

    /* conf tokens are NUL-terminated */
    opts = ngx_pcalloc(cf->pool, (n + 1) * sizeof(char *));
    if (opts == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < n; i++) {
        opts[i] = (char *) value[i + 2].data;
    }

    rc = ngx_pcalloc(cf->pool, sizeof(atls_redis_conf_t));
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_autotls_redis_cleanup;
    cln->data = rc;

    err[0] = '\0';

    if (atls_redis_conf_parse((char *) value[1].data, opts, n, rc,
                              err, sizeof(err))
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "autotls_store: %s", err);
        return NGX_CONF_ERROR;
    }

    if (rc->key_file == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "autotls_store: redis option key_file: required "
                           "(private keys are encrypted at rest in Redis "
                           "with it)");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_autotls_redis_path(cf, &rc->key_file) != NGX_OK
        || (rc->ca_file && ngx_http_autotls_redis_path(cf, &rc->ca_file)
                           != NGX_OK))
    {
        return NGX_CONF_ERROR;
    }

    /* a key file that cannot serve is the operator's to fix before start;
     * the workers read it again (they may run as another user) */
    err[0] = '\0';

    if (atls_redis_key_load(rc->key_file, &key, err, sizeof(err)) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "autotls_store: redis option key_file: %s", err);
        return NGX_CONF_ERROR;
    }

    atls_redis_key_wipe(&key);

    if (rc->mirror_dir != NULL) {
        amcf->store.len = ngx_strlen(rc->mirror_dir);
        amcf->store.data = (u_char *) rc->mirror_dir;

    } else {
        ngx_str_set(&amcf->store, NGX_HTTP_AUTOTLS_DEFAULT_STORE);
    }

    amcf->redis = rc;

    return NGX_CONF_OK;
}


static void
ngx_http_autotls_redis_cleanup(void *data)
{
    atls_redis_conf_free(data);
}


/* a relative file is relative to the configuration's directory, as
 * nginx's own file parameters */
static ngx_int_t
ngx_http_autotls_redis_path(ngx_conf_t *cf, char **path)
{
    char       *p;
    ngx_str_t   name;

    name.len = ngx_strlen(*path);
    name.data = (u_char *) *path;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    if (name.data == (u_char *) *path) {
        return NGX_OK;
    }

    p = ngx_http_autotls_cstr(&name);
    if (p == NULL) {
        return NGX_ERROR;
    }

    free(*path);
    *path = p;

    return NGX_OK;
}
