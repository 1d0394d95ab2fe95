/*
 * autotls for nginx: the autotls_on_demand_* directives (http level),
 * parsed into amcf->od (the core's atls_od_conf_t, malloc'd members) and
 * amcf->od_wait.  Every error names the directive and the value.
 *
 * Defaults of the directives (the core's, atls_ondemand.h):
 *   autotls_on_demand_allow / _deny / _allow_file   none (default deny)
 *   autotls_on_demand_ask URL timeout=2s cache=1h fail_cache=30s
 *   autotls_on_demand_limits cooldown=1h orders_per_min=10
 *       per_domain_week=50 per_account_3h=300 max_pending=100
 *   autotls_on_demand_ip off;  autotls_on_demand_max_labels 10;
 *   autotls_on_demand_wait 10s;
 */

#include "ngx_http_autotls_ondemand.h"


static char *ngx_http_autotls_od_list(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_autotls_main_conf_t *amcf);
static char *ngx_http_autotls_od_ask(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_autotls_main_conf_t *amcf);
static char *ngx_http_autotls_od_limits(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_autotls_main_conf_t *amcf);
static char *ngx_http_autotls_od_scalar(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_autotls_main_conf_t *amcf);


/* every autotls_on_demand_* directive: the table's name says which */
char *
ngx_http_autotls_od_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_autotls_main_conf_t  *amcf = conf;

    u_char  *n = cmd->name.data + sizeof("autotls_on_demand_") - 1;

    if (ngx_strcmp(n, "allow") == 0 || ngx_strcmp(n, "deny") == 0) {
        return ngx_http_autotls_od_list(cf, cmd, amcf);
    }

    if (ngx_strcmp(n, "ask") == 0) {
        return ngx_http_autotls_od_ask(cf, cmd, amcf);
    }

    if (ngx_strcmp(n, "limits") == 0) {
        return ngx_http_autotls_od_limits(cf, cmd, amcf);
    }

    return ngx_http_autotls_od_scalar(cf, cmd, amcf);
}


static char *
ngx_http_autotls_od_list(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_autotls_main_conf_t *amcf)
{
    char        ***list, **grown;
    size_t        *n;
    ngx_str_t     *value;
    ngx_uint_t     i;

    if (cmd->name.data[sizeof("autotls_on_demand_") - 1] == 'a') {
        list = &amcf->od.allow;
        n = &amcf->od.n_allow;
    } else {
        list = &amcf->od.deny;
        n = &amcf->od.n_deny;
    }

    value = cf->args->elts;

    grown = realloc(*list, (*n + cf->args->nelts) * sizeof(char *));
    if (grown == NULL) {
        return NGX_CONF_ERROR;
    }
    *list = grown;

    for (i = 1; i < cf->args->nelts; i++) {
        if (value[i].len == 0 || value[i].len > 256) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid pattern \"%V\" in \"%V\": "
                               "1 to 256 characters", &value[i], &cmd->name);
            return NGX_CONF_ERROR;
        }
        (*list)[*n] = ngx_http_autotls_cstr(&value[i]);
        if ((*list)[*n] == NULL) {
            return NGX_CONF_ERROR;
        }
        (*n)++;
    }

    return NGX_CONF_OK;
}


/* "NAME=TIME" or "NAME=N" options: the value, or NGX_ERROR */
static ngx_int_t
ngx_http_autotls_od_option(ngx_str_t *arg, const char *name, ngx_uint_t sec,
    ngx_uint_t time, ngx_int_t *out)
{
    size_t     len = ngx_strlen(name);
    ngx_str_t  v;

    if (arg->len <= len + 1 || ngx_strncmp(arg->data, name, len) != 0
        || arg->data[len] != '=')
    {
        return NGX_DECLINED;
    }

    v.data = arg->data + len + 1;
    v.len = arg->len - len - 1;

    *out = time ? ngx_parse_time(&v, sec) : ngx_atoi(v.data, v.len);

    return (*out == NGX_ERROR || *out < 1) ? NGX_ERROR : NGX_OK;
}


static char *
ngx_http_autotls_od_bad(ngx_conf_t *cf, ngx_command_t *cmd, ngx_str_t *v,
    const char *why)
{
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid value \"%V\" in \"%V\"%s",
                       v, &cmd->name, why);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_autotls_od_ask(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_autotls_main_conf_t *amcf)
{
    ngx_int_t    n, rc;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (amcf->od.ask_url != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strncasecmp(value[1].data, (u_char *) "http://", 7) != 0
        && ngx_strncasecmp(value[1].data, (u_char *) "https://", 8) != 0)
    {
        return ngx_http_autotls_od_bad(cf, cmd, &value[1],
                                       ": an http:// or https:// URL");
    }

    for (i = 2; i < cf->args->nelts; i++) {
        if ((rc = ngx_http_autotls_od_option(&value[i], "timeout", 0, 1, &n))
            == NGX_OK)
        {
            amcf->od.ask_timeout_ms = (long) n;

        } else if (rc == NGX_DECLINED
                   && (rc = ngx_http_autotls_od_option(&value[i], "cache", 1, 1,
                                                       &n))
                      == NGX_OK)
        {
            amcf->od.ask_cache_s = (long) n;

        } else if (rc == NGX_DECLINED
                   && (rc = ngx_http_autotls_od_option(&value[i], "fail_cache",
                                                       1, 1, &n))
                      == NGX_OK)
        {
            amcf->od.ask_fail_cache_s = (long) n;

        } else {
            return ngx_http_autotls_od_bad(cf, cmd, &value[i],
                       ": timeout=TIME, cache=TIME or fail_cache=TIME, "
                       "each at least 1");
        }
    }

    amcf->od.ask_url = ngx_http_autotls_cstr(&value[1]);

    return amcf->od.ask_url ? NGX_CONF_OK : NGX_CONF_ERROR;
}


static char *
ngx_http_autotls_od_limits(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_autotls_main_conf_t *amcf)
{
    static const struct {
        const char  *name;
        ngx_uint_t   time;
        size_t       off;
    } opts[] = {
        { "cooldown", 1, offsetof(atls_od_conf_t, cooldown_s) },
        { "orders_per_min", 0, offsetof(atls_od_conf_t, orders_per_min) },
        { "per_domain_week", 0, offsetof(atls_od_conf_t, per_domain_week) },
        { "per_account_3h", 0, offsetof(atls_od_conf_t, per_account_3h) },
        { "max_pending", 0, offsetof(atls_od_conf_t, max_pending) },
    };

    ngx_int_t    n, rc;
    ngx_str_t   *value;
    ngx_uint_t   i, k;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        rc = NGX_DECLINED;

        for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++) {
            rc = ngx_http_autotls_od_option(&value[i], opts[k].name, 1,
                                            opts[k].time, &n);
            if (rc != NGX_DECLINED) {
                break;
            }
        }

        if (rc != NGX_OK) {
            return ngx_http_autotls_od_bad(cf, cmd, &value[i],
                       ": cooldown=TIME, orders_per_min=N, per_domain_week=N, "
                       "per_account_3h=N or max_pending=N, each at least 1");
        }

        *(long *) ((u_char *) &amcf->od + opts[k].off) = (long) n;
    }

    return NGX_CONF_OK;
}


/* allow_file, ip, max_labels, wait */
static char *
ngx_http_autotls_od_scalar(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_http_autotls_main_conf_t *amcf)
{
    u_char     *n;
    ngx_int_t   v;
    ngx_str_t  *value;

    n = cmd->name.data + sizeof("autotls_on_demand_") - 1;
    value = cf->args->elts;

    if (ngx_strcmp(n, "allow_file") == 0) {
        if (amcf->od.allow_file != NULL) {
            return "is duplicate";
        }
        if (ngx_conf_full_name(cf->cycle, &value[1], 1) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
        amcf->od.allow_file = ngx_http_autotls_cstr(&value[1]);
        return amcf->od.allow_file ? NGX_CONF_OK : NGX_CONF_ERROR;
    }

    if (ngx_strcmp(n, "ip") == 0) {
        if (value[1].len == 2 && ngx_strncmp(value[1].data, "on", 2) == 0) {
            amcf->od.allow_ip = 1;
        } else if (value[1].len != 3
                   || ngx_strncmp(value[1].data, "off", 3) != 0)
        {
            return ngx_http_autotls_od_bad(cf, cmd, &value[1], ": on or off");
        }
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(n, "max_labels") == 0) {
        v = ngx_atoi(value[1].data, value[1].len);
        if (v < 2 || v > 127) {
            return ngx_http_autotls_od_bad(cf, cmd, &value[1],
                                           ": a number from 2 to 127");
        }
        amcf->od.max_labels = (unsigned) v;
        return NGX_CONF_OK;
    }

    /* wait: 0 lets first handshakes go on with the fallback at once */
    v = ngx_parse_time(&value[1], 0);
    if (v == NGX_ERROR || v > 600000) {
        return ngx_http_autotls_od_bad(cf, cmd, &value[1],
                                       ": a time up to 10m");
    }
    amcf->od_wait = (ngx_msec_t) v;

    return NGX_CONF_OK;
}
