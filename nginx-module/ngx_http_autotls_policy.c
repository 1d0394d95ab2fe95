/*
 * autotls for nginx: certificate policy.
 *
 *   autotls_policy {
 *       key ec256 ec384 rsa3072;
 *       min_rsa_bits 3072;
 *       ca https://acme-v02.api.letsencrypt.org/directory;
 *       names *.example.com example.com ~^[a-z0-9-]+\.example\.net$;
 *       max_names 100;
 *   }
 *
 * The rules and their check are the core's (atls_policy.h): this file only
 * reads the block and, once every server is resolved, checks each managed
 * certificate so that a configuration breaking the policy fails nginx -t
 * at the "autotls" directive at fault.  The driver saves the policy in the
 * store, where the CLI honours it too.
 */

#include "ngx_http_autotls_module.h"


/* what a keyword's handler calls for each argument (cmd->post) */
typedef struct {
    int  (*add)(atls_policy_t *p, const char *v, char *err, size_t errlen);
} ngx_http_autotls_policy_list_t;

typedef struct {
    int  (*set)(atls_policy_t *p, long v, char *err, size_t errlen);
} ngx_http_autotls_policy_num_t;


static char *ngx_http_autotls_policy_cmd(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf);
static char *ngx_http_autotls_policy_list(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_autotls_policy_num(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_http_autotls_policy_list_t  ngx_http_autotls_policy_key =
    { atls_policy_add_key };
static ngx_http_autotls_policy_list_t  ngx_http_autotls_policy_ca =
    { atls_policy_add_ca };
static ngx_http_autotls_policy_list_t  ngx_http_autotls_policy_names =
    { atls_policy_add_names };
static ngx_http_autotls_policy_num_t   ngx_http_autotls_policy_min_rsa =
    { atls_policy_set_min_rsa_bits };
static ngx_http_autotls_policy_num_t   ngx_http_autotls_policy_max_names =
    { atls_policy_set_max_names };


static ngx_command_t  ngx_http_autotls_policy_commands[] = {

    { ngx_string(ATLS_POLICY_RULE_KEY),
      NGX_CONF_1MORE,
      ngx_http_autotls_policy_list,
      0,
      0,
      &ngx_http_autotls_policy_key },

    { ngx_string(ATLS_POLICY_RULE_MIN_RSA),
      NGX_CONF_TAKE1,
      ngx_http_autotls_policy_num,
      0,
      0,
      &ngx_http_autotls_policy_min_rsa },

    { ngx_string(ATLS_POLICY_RULE_CA),
      NGX_CONF_1MORE,
      ngx_http_autotls_policy_list,
      0,
      0,
      &ngx_http_autotls_policy_ca },

    { ngx_string(ATLS_POLICY_RULE_NAMES),
      NGX_CONF_1MORE,
      ngx_http_autotls_policy_list,
      0,
      0,
      &ngx_http_autotls_policy_names },

    { ngx_string(ATLS_POLICY_RULE_MAX_NAMES),
      NGX_CONF_TAKE1,
      ngx_http_autotls_policy_num,
      0,
      0,
      &ngx_http_autotls_policy_max_names },

      ngx_null_command
};


char *
ngx_http_autotls_policy_block(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_autotls_main_conf_t  *amcf = conf;

    char        *rv;
    ngx_conf_t   save;

    if (amcf->policy) {
        return "is duplicate";
    }

    /* freed with the main conf (ngx_http_autotls_cleanup_main) */
    amcf->policy = atls_policy_new();
    if (amcf->policy == NULL) {
        return NGX_CONF_ERROR;
    }

    save = *cf;
    cf->handler = ngx_http_autotls_policy_cmd;
    cf->handler_conf = (char *) amcf->policy;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    return rv;
}


static char *
ngx_http_autotls_policy_cmd(ngx_conf_t *cf, ngx_command_t *dummy, void *conf)
{
    return ngx_http_autotls_block_cmd(cf, ngx_http_autotls_policy_commands,
                                      "autotls_policy", conf);
}


/* key, ca, names: every argument is one more allowed value */
static char *
ngx_http_autotls_policy_list(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    atls_policy_t                   *p = conf;
    ngx_http_autotls_policy_list_t  *l = cmd->post;

    char         err[256];
    ngx_str_t   *value;
    ngx_uint_t   i;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        err[0] = '\0';

        if (l->add(p, (const char *) value[i].data, err, sizeof(err)) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid autotls_policy \"%V\" value \"%V\": "
                               "%s", &value[0], &value[i], err);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* min_rsa_bits, max_names */
static char *
ngx_http_autotls_policy_num(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    atls_policy_t                  *p = conf;
    ngx_http_autotls_policy_num_t  *nm = cmd->post;

    char        err[256];
    ngx_int_t   n;
    ngx_str_t  *value;

    value = cf->args->elts;
    err[0] = '\0';

    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid autotls_policy \"%V\" value \"%V\": "
                           "not a number", &value[0], &value[1]);
        return NGX_CONF_ERROR;
    }

    if (nm->set(p, (long) n, err, sizeof(err)) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid autotls_policy \"%V\" value \"%V\": %s",
                           &value[0], &value[1], err);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* every managed certificate, against the policy, at its "autotls" line */
ngx_int_t
ngx_http_autotls_policy_check(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf)
{
    char                      why[512];
    const char               *rule;
    ngx_uint_t                i;
    ngx_http_autotls_cert_t **certs, *cert;

    if (atls_policy_is_empty(amcf->policy)) {
        return NGX_OK;
    }

    certs = amcf->certs.elts;

    for (i = 0; i < amcf->certs.nelts; i++) {
        cert = certs[i];
        rule = "?";
        why[0] = '\0';

        if (atls_policy_check(amcf->policy,
                              (const char *const *) cert->names,
                              cert->n_names, &cert->issuer->is, &rule,
                              why, sizeof(why))
            != 0)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "autotls certificate \"%s\" breaks autotls_policy "
                          "rule \"%s\": %s in %s:%ui",
                          cert->id, rule, why, cert->file, cert->line);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
