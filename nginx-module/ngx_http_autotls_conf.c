/*
 * autotls for nginx: configuration.
 *
 *   autotls_issuer NAME { directory URL; contact EMAIL...; accept_terms on; ... }
 *   autotls ISSUER [NAME...];
 *
 * Names and issuers are resolved after the whole http{} block is read
 * (ngx_http_autotls_resolve) so that the order of blocks does not matter;
 * every error names the file and line of the directive at fault.
 */

#include "ngx_http_autotls_module.h"
#include <ngx_http_ssl_module.h>


static char *ngx_http_autotls_issuer_cmd(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf);
static char *ngx_http_autotls_issuer_str(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_autotls_issuer_directory(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_autotls_issuer_contact(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_autotls_issuer_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_autotls_issuer_challenge(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_autotls_issuer_eab(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_autotls_issuer_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_autotls_issuer_profile(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_autotls_issuer_renew_before(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_autotls_issuer_flag(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_autotls_server_names(ngx_conf_t *cf,
    ngx_http_autotls_srv_conf_t *ascf, ngx_http_core_srv_conf_t *cscf,
    ngx_array_t *out);
static ngx_int_t ngx_http_autotls_may_be_default(ngx_conf_t *cf);


/* ngx_conf_full_name(): relative to the conf directory, or to the prefix */
static ngx_uint_t  ngx_http_autotls_conf_prefix = 1;
static ngx_uint_t  ngx_http_autotls_prefix = 0;

/* the last parameter of "autotls ISSUER ..." that is not a name */
#define NGX_HTTP_AUTOTLS_PER_NAME  ((ngx_uint_t) -1)

static ngx_conf_enum_t  ngx_http_autotls_kinds[] = {
    { ngx_string("per_name"), NGX_HTTP_AUTOTLS_PER_NAME },
    { ngx_string("dynamic"), NGX_HTTP_AUTOTLS_DYNAMIC },
    { ngx_string("on_demand"), NGX_HTTP_AUTOTLS_ON_DEMAND },
    { ngx_null_string, 0 }
};

/* ngx_http_autotls_issuer_flag(): "on" stores 1, or 0 for a flag that the
 * core keeps inverted ("stapling on" is stapling_off = 0) */
static ngx_uint_t  ngx_http_autotls_flag_inverted = 1;


static void
ngx_http_autotls_log_cb(void *ctx, atls_log_level_t level, const char *msg)
{
    ngx_uint_t  nlevel;

    switch (level) {
    case ATLS_LOG_ERR:
        nlevel = NGX_LOG_ERR;
        break;
    case ATLS_LOG_WARN:
        nlevel = NGX_LOG_WARN;
        break;
    case ATLS_LOG_INFO:
        nlevel = NGX_LOG_NOTICE;
        break;
    default:
        nlevel = NGX_LOG_DEBUG;
        break;
    }

    if (ngx_strncmp(msg, "autotls: ", 9) == 0) {
        msg += 9;
    }

    if (ngx_cycle && ngx_cycle->log) {
        ngx_log_error(nlevel, ngx_cycle->log, 0, "autotls: %s", msg);
    }
}


void
ngx_http_autotls_log_install(ngx_log_t *log)
{
    atls_log_level_t  max;

    max = (log && log->log_level >= NGX_LOG_DEBUG) ? ATLS_LOG_DEBUG
                                                    : ATLS_LOG_INFO;
    atls_log_set(ngx_http_autotls_log_cb, NULL, max);
}


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


char *
ngx_http_autotls_issuer_block(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_autotls_main_conf_t  *amcf = conf;

    char                       *rv;
    char                        err[256];
    ngx_str_t                  *value;
    ngx_uint_t                  i;
    ngx_conf_t                  save;
    ngx_http_autotls_issuer_t  *iss;

    value = cf->args->elts;

    iss = amcf->issuers.elts;
    for (i = 0; i < amcf->issuers.nelts; i++) {
        if (iss[i].name.len == value[1].len
            && ngx_strncmp(iss[i].name.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate autotls_issuer \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    iss = ngx_array_push(&amcf->issuers);
    if (iss == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(iss, sizeof(ngx_http_autotls_issuer_t));
    iss->name = value[1];
    iss->file = cf->conf_file->file.name.data;
    iss->line = cf->conf_file->line;
    iss->is.challenge = ATLS_CHAL_HTTP01;

    save = *cf;
    cf->handler = ngx_http_autotls_issuer_cmd;
    cf->handler_conf = (char *) iss;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (iss->is.directory == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "autotls_issuer \"%V\" has no \"directory\" in %s:%ui",
                      &iss->name, iss->file, iss->line);
        return NGX_CONF_ERROR;
    }

    if (!iss->is.agree_tos) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "autotls_issuer \"%V\" needs \"accept_terms on\" "
                      "(the CA's terms of service must be accepted) in %s:%ui",
                      &iss->name, iss->file, iss->line);
        return NGX_CONF_ERROR;
    }

    if (iss->is.challenge == ATLS_CHAL_DNS01 && iss->is.dns_hook == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "autotls_issuer \"%V\" uses dns-01 without "
                      "\"dns_hook\" in %s:%ui",
                      &iss->name, iss->file, iss->line);
        return NGX_CONF_ERROR;
    }

    /* the rules every host applies: contacts, key-type pair, EAB */
    if (atls_issuer_normalise(&iss->is, err, sizeof(err)) != 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "autotls_issuer \"%V\": %s in %s:%ui",
                      &iss->name, err, iss->file, iss->line);
        return NGX_CONF_ERROR;
    }

    if (iss->is.n_key_types == 0) {
        iss->is.key_types[0] = ATLS_KEY_EC256;
        iss->is.n_key_types = 1;
    }

    return NGX_CONF_OK;
}


/*
 * The keywords of an autotls_issuer block, as nginx's directive tables: the
 * argument count (NGX_CONF_TAKE1...) is checked before the handler runs;
 * offset names the atls_issuer_t member of handlers that set one string.
 */
static ngx_command_t  ngx_http_autotls_issuer_commands[] = {

    { ngx_string("directory"),
      NGX_CONF_TAKE1,
      ngx_http_autotls_issuer_directory,
      0,
      offsetof(ngx_http_autotls_issuer_t, is.directory),
      NULL },

    { ngx_string("contact"),
      NGX_CONF_1MORE,
      ngx_http_autotls_issuer_contact,
      0,
      0,
      NULL },

    { ngx_string("accept_terms"),
      NGX_CONF_TAKE1,
      ngx_http_autotls_issuer_flag,
      0,
      offsetof(ngx_http_autotls_issuer_t, is.agree_tos),
      NULL },

    { ngx_string("ca_certificate"),
      NGX_CONF_TAKE1,
      ngx_http_autotls_issuer_file,
      0,
      offsetof(ngx_http_autotls_issuer_t, is.ca_file),
      &ngx_http_autotls_conf_prefix },

    { ngx_string("challenge"),
      NGX_CONF_TAKE1,
      ngx_http_autotls_issuer_challenge,
      0,
      0,
      NULL },

    { ngx_string("dns_hook"),
      NGX_CONF_TAKE1,
      ngx_http_autotls_issuer_file,
      0,
      offsetof(ngx_http_autotls_issuer_t, is.dns_hook),
      &ngx_http_autotls_prefix },

    { ngx_string("eab"),
      NGX_CONF_TAKE2,
      ngx_http_autotls_issuer_eab,
      0,
      0,
      NULL },

    { ngx_string("key"),
      NGX_CONF_TAKE12,
      ngx_http_autotls_issuer_key,
      0,
      0,
      NULL },

    { ngx_string("profile"),
      NGX_CONF_TAKE12,
      ngx_http_autotls_issuer_profile,
      0,
      offsetof(ngx_http_autotls_issuer_t, is.profile),
      NULL },

    { ngx_string("preferred_chain"),
      NGX_CONF_TAKE1,
      ngx_http_autotls_issuer_str,
      0,
      offsetof(ngx_http_autotls_issuer_t, is.preferred_chain),
      NULL },

    { ngx_string("renew_before"),
      NGX_CONF_TAKE1,
      ngx_http_autotls_issuer_renew_before,
      0,
      0,
      NULL },

    { ngx_string("stapling"),
      NGX_CONF_TAKE1,
      ngx_http_autotls_issuer_flag,
      0,
      offsetof(ngx_http_autotls_issuer_t, is.stapling_off),
      &ngx_http_autotls_flag_inverted },

    { ngx_string("must_staple"),
      NGX_CONF_TAKE1,
      ngx_http_autotls_issuer_flag,
      0,
      offsetof(ngx_http_autotls_issuer_t, is.must_staple),
      NULL },

      ngx_null_command
};


/* cf->handler inside an autotls_issuer block */
static char *
ngx_http_autotls_issuer_cmd(ngx_conf_t *cf, ngx_command_t *dummy, void *conf)
{
    return ngx_http_autotls_block_cmd(cf, ngx_http_autotls_issuer_commands,
                                      "autotls_issuer", conf);
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


/* a malloc'd copy of the argument replaces the string at cmd->offset */
static char *
ngx_http_autotls_issuer_str(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char       **field;
    ngx_str_t   *value;

    value = cf->args->elts;
    field = (char **) ((u_char *) conf + cmd->offset);

    free(*field);
    *field = ngx_http_autotls_cstr(&value[1]);

    return *field ? NGX_CONF_OK : NGX_CONF_ERROR;
}


static char *
ngx_http_autotls_issuer_directory(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_autotls_issuer_t  *iss = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (iss->is.directory) {
        return "is duplicate";
    }

    if (ngx_strncmp(value[1].data, "https://", 8) != 0
        && ngx_strncmp(value[1].data, "http://", 7) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid ACME directory URL \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    return ngx_http_autotls_issuer_str(cf, cmd, conf);
}


static char *
ngx_http_autotls_issuer_contact(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_autotls_issuer_t  *iss = conf;

    char        *s, **v;
    ngx_str_t   *value;
    ngx_uint_t   i, n;

    value = cf->args->elts;
    n = cf->args->nelts;

    v = realloc(iss->is.contact, (iss->is.n_contact + n - 1) * sizeof(char *));
    if (v == NULL) {
        return NGX_CONF_ERROR;
    }

    iss->is.contact = v;

    for (i = 1; i < n; i++) {
        s = ngx_http_autotls_cstr(&value[i]);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }
        iss->is.contact[iss->is.n_contact++] = s;
    }

    return NGX_CONF_OK;
}


/* a file name made absolute; cmd->post: relative to the conf directory
 * (ngx_http_autotls_conf_prefix) or to the prefix */
static char *
ngx_http_autotls_issuer_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t   *value;
    ngx_uint_t  *conf_prefix = cmd->post;

    value = cf->args->elts;

    if (ngx_conf_full_name(cf->cycle, &value[1], *conf_prefix) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_http_autotls_issuer_str(cf, cmd, conf);
}


static char *
ngx_http_autotls_issuer_challenge(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_autotls_issuer_t  *iss = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (atls_challenge_type_parse((char *) value[1].data, &iss->is.challenge)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown challenge type \"%V\", it must be "
                           "http-01, tls-alpn-01 or dns-01", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_autotls_issuer_eab(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_autotls_issuer_t  *iss = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    free(iss->is.eab_kid);
    free(iss->is.eab_hmac);
    iss->is.eab_kid = ngx_http_autotls_cstr(&value[1]);
    iss->is.eab_hmac = ngx_http_autotls_cstr(&value[2]);

    return (iss->is.eab_kid && iss->is.eab_hmac) ? NGX_CONF_OK
                                                 : NGX_CONF_ERROR;
}


static char *
ngx_http_autotls_issuer_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_autotls_issuer_t  *iss = conf;

    ngx_str_t        *value;
    ngx_uint_t        i, n;
    atls_key_type_t   kt;

    value = cf->args->elts;
    n = cf->args->nelts;

    if (iss->key_set) {
        return "is duplicate";
    }

    iss->key_set = 1;

    for (i = 1; i < n; i++) {
        if (atls_key_type_parse((char *) value[i].data, &kt) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown key type \"%V\", it must be "
                               "ec256, ec384, rsa2048, rsa3072 or rsa4096",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        iss->is.key_types[i - 1] = kt;
    }

    iss->is.n_key_types = n - 1;

    return NGX_CONF_OK;
}


/* profile NAME [required] */
static char *
ngx_http_autotls_issuer_profile(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_autotls_issuer_t  *iss = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (cf->args->nelts == 3) {
        if (ngx_strcmp(value[2].data, "required") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }
        iss->is.profile_required = 1;
    }

    return ngx_http_autotls_issuer_str(cf, cmd, conf);
}


static char *
ngx_http_autotls_issuer_renew_before(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_autotls_issuer_t  *iss = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (atls_renew_policy_parse((char *) value[1].data, &iss->is.renew) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"renew_before\" value \"%V\", "
                           "use a percentage (33%%) or a duration (30d)",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* "on" or "off" into the int at cmd->offset; cmd->post: inverted */
static char *
ngx_http_autotls_issuer_flag(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    int         *field, on;
    ngx_str_t   *value;

    value = cf->args->elts;
    field = (int *) ((u_char *) conf + cmd->offset);

    if (ngx_strcmp(value[1].data, "on") == 0) {
        on = 1;

    } else if (ngx_strcmp(value[1].data, "off") == 0) {
        on = 0;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\", "
                           "it must be \"on\" or \"off\"",
                           &value[1], &value[0]);
        return NGX_CONF_ERROR;
    }

    *field = cmd->post ? !on : on;

    return NGX_CONF_OK;
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
