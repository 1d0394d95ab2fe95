/*
 * autotls for nginx: the server-level "autotls" directive, and the helpers
 * every directive parser of the module shares.
 *
 *   autotls ISSUER [NAME...] [per_name | dynamic | on_demand];
 *
 * Names and issuers are resolved after the whole http{} block is read
 * (ngx_http_autotls_resolve.c); the autotls_issuer block is
 * ngx_http_autotls_issuer_conf.c.
 */

#include "ngx_http_autotls_module.h"
#include <ngx_http_ssl_module.h>


static ngx_int_t ngx_http_autotls_may_be_default(ngx_conf_t *cf);


/* the last parameter of "autotls ISSUER ..." that is not a name */
#define NGX_HTTP_AUTOTLS_PER_NAME  ((ngx_uint_t) -1)

static ngx_conf_enum_t  ngx_http_autotls_kinds[] = {
    { ngx_string("per_name"), NGX_HTTP_AUTOTLS_PER_NAME },
    { ngx_string("dynamic"), NGX_HTTP_AUTOTLS_DYNAMIC },
    { ngx_string("on_demand"), NGX_HTTP_AUTOTLS_ON_DEMAND },
    { ngx_null_string, 0 }
};


/* a malloc'd C string (the core frees issuer members with free()) */
char *
ngx_http_autotls_cstr(ngx_str_t *s)
{
    char  *p;

    p = malloc(s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s->data, s->len);
    p[s->len] = '\0';

    return p;
}


/* finds the keyword's entry in cmds, as ngx_conf_handler() does */
char *
ngx_http_autotls_block_cmd(ngx_conf_t *cf, ngx_command_t *cmds,
    const char *block, void *conf)
{
    char           *rv;
    ngx_str_t      *value;
    ngx_uint_t      n;
    ngx_command_t  *cmd;

    value = cf->args->elts;
    n = cf->args->nelts;

    for (cmd = cmds; cmd->name.len; cmd++) {

        if (cmd->name.len != value[0].len
            || ngx_strcmp(cmd->name.data, value[0].data) != 0)
        {
            continue;
        }

        /* NGX_CONF_TAKEn is bit n, as in ngx_conf_handler() */
        if ((cmd->type & NGX_CONF_1MORE) ? n >= 2
            : n <= NGX_CONF_MAX_ARGS && (cmd->type & (1 << (n - 1))))
        {
            rv = cmd->set(cf, cmd, conf);

            if (rv == NGX_CONF_OK || rv == NGX_CONF_ERROR) {
                return rv;
            }

            /*
             * ngx_conf_parse() prints a block handler's message alone:
             * name the directive as ngx_conf_handler() does for others
             */
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" directive %s",
                               &value[0], rv);
            return NGX_CONF_ERROR;
        }

        break;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown directive or wrong number of arguments "
                       "\"%V\" in %s", &value[0], block);
    return NGX_CONF_ERROR;
}


char *
ngx_http_autotls_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_autotls_srv_conf_t  *ascf = conf;

    ngx_str_t                     *value, *name;
    ngx_uint_t                     i, n;
    ngx_http_ssl_srv_conf_t       *sscf;
    ngx_http_autotls_main_conf_t  *amcf;

    if (ascf->issuer.len) {
        return "is duplicate";
    }

    value = cf->args->elts;
    ascf->issuer = value[1];
    ascf->file = cf->conf_file->file.name.data;
    ascf->line = cf->conf_file->line;

    n = cf->args->nelts;

    /* per_name: one certificate per name, hosting many names in one
     * server; dynamic, on_demand: the names are registered at runtime */
    for (i = 0; n > 2 && ngx_http_autotls_kinds[i].name.len; i++) {
        if (value[n - 1].len == ngx_http_autotls_kinds[i].name.len
            && ngx_strncmp(value[n - 1].data, ngx_http_autotls_kinds[i].name.data,
                           value[n - 1].len)
               == 0)
        {
            if (ngx_http_autotls_kinds[i].value == NGX_HTTP_AUTOTLS_PER_NAME) {
                ascf->per_name = 1;
            } else {
                ascf->dynamic = ngx_http_autotls_kinds[i].value;
            }
            n--;
            break;
        }
    }

    if (ascf->dynamic != NGX_HTTP_AUTOTLS_STATIC && n > 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"autotls %V %V\" takes no names: they are "
                           "registered at runtime (autotls add, autotls_api)",
                           &value[1], &value[cf->args->nelts - 1]);
        return NGX_CONF_ERROR;
    }

    if (n > 2) {
        ascf->names = ngx_array_create(cf->pool, n - 2, sizeof(ngx_str_t));
        if (ascf->names == NULL) {
            return NGX_CONF_ERROR;
        }
        for (i = 2; i < n; i++) {
            name = ngx_array_push(ascf->names);
            if (name == NULL) {
                return NGX_CONF_ERROR;
            }
            *name = value[i];
            ngx_strlow(name->data, name->data, name->len);
        }
    }

    /*
     * ngx_http_ssl_module merges before us and refuses an ssl listener
     * whose default server has no certificate; give such a server a
     * fallback certificate now (the certificate callback replaces it at
     * every handshake).  Other autotls servers get no SSL_CTX of their
     * own: the SNI callback still selects their configuration and the
     * certificate callback on the listener's context serves them, so
     * 10,000 names cost 10,000 cache slots, not 10,000 SSL_CTXs.
     */
    sscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_ssl_module);

    if ((sscf->certificates == NGX_CONF_UNSET_PTR
         || sscf->certificates == NULL)
        && ngx_http_autotls_may_be_default(cf))
    {
        amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_autotls_module);

        if (ngx_http_autotls_fallback(cf, amcf) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        sscf->certificates = ngx_array_create(cf->pool, 1, sizeof(ngx_str_t));
        sscf->certificate_keys = ngx_array_create(cf->pool, 1,
                                                  sizeof(ngx_str_t));
        if (sscf->certificates == NULL || sscf->certificate_keys == NULL) {
            return NGX_CONF_ERROR;
        }

        name = ngx_array_push(sscf->certificates);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }
        *name = amcf->fallback_cert;

        name = ngx_array_push(sscf->certificate_keys);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }
        *name = amcf->fallback_key;
    }

    return NGX_CONF_OK;
}


/*
 * 0 only when this server already listens with ssl and is the default
 * server of none of its ssl addresses; with no ssl listener seen yet (the
 * listen may follow "autotls") it may still become a default server.
 */
static ngx_int_t
ngx_http_autotls_may_be_default(ngx_conf_t *cf)
{
    ngx_uint_t                   p, a, s, seen;
    ngx_http_conf_port_t        *port;
    ngx_http_conf_addr_t        *addr;
    ngx_http_core_srv_conf_t    *cscf, **cscfp;
    ngx_http_core_main_conf_t   *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    cscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module);

    if (cmcf->ports == NULL) {
        return 1;
    }

    seen = 0;
    port = cmcf->ports->elts;

    for (p = 0; p < cmcf->ports->nelts; p++) {
        addr = port[p].addrs.elts;
        for (a = 0; a < port[p].addrs.nelts; a++) {
            if (!addr[a].opt.ssl) {
                continue;
            }
            cscfp = addr[a].servers.elts;
            for (s = 0; s < addr[a].servers.nelts; s++) {
                if (cscfp[s] != cscf) {
                    continue;
                }
                if (addr[a].default_server == cscf) {
                    return 1;
                }
                seen = 1;
            }
        }
    }

    return !seen;
}
