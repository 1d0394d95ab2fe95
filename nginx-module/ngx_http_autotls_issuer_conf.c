/*
 * autotls for nginx: the autotls_issuer block.
 *
 *   autotls_issuer NAME { directory URL; contact EMAIL...; accept_terms on; ... }
 *
 * Each keyword is an entry of a directive table handled as nginx handles
 * its own; the block is checked as a whole once it is read.  Servers find
 * their issuer later (ngx_http_autotls_resolve), so that the order of
 * blocks does not matter.
 */

#include "ngx_http_autotls_module.h"


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


/* ngx_conf_full_name(): relative to the conf directory, or to the prefix */
static ngx_uint_t  ngx_http_autotls_conf_prefix = 1;
static ngx_uint_t  ngx_http_autotls_prefix = 0;

/* ngx_http_autotls_issuer_flag(): "on" stores 1, or 0 for a flag that the
 * core keeps inverted ("stapling on" is stapling_off = 0) */
static ngx_uint_t  ngx_http_autotls_flag_inverted = 1;


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
                           "invalid ACME directory URL \"%V\" in "
                           "\"directory\", it must start with "
                           "\"https://\" or \"http://\"", &value[1]);
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
                               "invalid parameter \"%V\" in \"profile\", "
                               "it must be \"required\"", &value[2]);
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
