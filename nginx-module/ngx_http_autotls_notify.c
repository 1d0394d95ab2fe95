/*
 * autotls for nginx: expiry alert levels and notification sinks.
 *
 *   autotls_warn 21d 7d 3d 1d;
 *   autotls_notify_exec /usr/local/bin/on-cert-event;
 *   autotls_notify_timeout 30s;
 *   autotls_notify_webhook https://hooks.example/autotls "Authorization: Bearer T";
 *   autotls_notify_queue 10000;
 *
 * The values land in the main conf's atls_notify_conf_t; the rules every
 * host applies (URL, header syntax, levels) are the core's
 * (atls_warn_parse, atls_notify_conf_check).  What only a host can check,
 * the command file itself, is checked here, in the master, at
 * configuration time: a command the worker user could not trust fails
 * nginx -t rather than the first event.
 */

#include "ngx_http_autotls_module.h"

#include <sys/stat.h>


char *
ngx_http_autotls_warn(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_autotls_main_conf_t  *amcf = conf;

    char         err[256];
    const char  *args[ATLS_WARN_MAX];
    ngx_str_t   *value;
    ngx_uint_t   i, n;

    if (amcf->warn_set) {
        return "is duplicate";
    }

    value = cf->args->elts;
    n = cf->args->nelts - 1;

    if (n > ATLS_WARN_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"autotls_warn\" takes at most %d levels",
                           ATLS_WARN_MAX);
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < n; i++) {
        /* configuration words are NUL-terminated */
        args[i] = (const char *) value[i + 1].data;
    }

    err[0] = '\0';

    if (atls_warn_parse(args, n, &amcf->notify.warn, err, sizeof(err)) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"autotls_warn\": %s", err);
        return NGX_CONF_ERROR;
    }

    amcf->warn_set = 1;

    return NGX_CONF_OK;
}


/*
 * The command runs as the worker user with the event on its stdin: it
 * must be a regular executable file that only its owner may change.
 */
char *
ngx_http_autotls_notify_exec(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_autotls_main_conf_t  *amcf = conf;

    ngx_str_t    *value;
    struct stat   st;

    if (amcf->notify.exec) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"autotls_notify_exec\" needs an absolute path, "
                           "not \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (stat((char *) value[1].data, &st) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"autotls_notify_exec\": stat(\"%V\") failed",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (!S_ISREG(st.st_mode)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"autotls_notify_exec\": \"%V\" is not a "
                           "regular file", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (!(st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH))) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"autotls_notify_exec\": \"%V\" is not "
                           "executable", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"autotls_notify_exec\": \"%V\" is writable by "
                           "its group or by anyone (mode %04uo)",
                           &value[1], (ngx_uint_t) (st.st_mode & 07777));
        return NGX_CONF_ERROR;
    }

    amcf->notify.exec = ngx_http_autotls_cstr(&value[1]);

    return amcf->notify.exec ? NGX_CONF_OK : NGX_CONF_ERROR;
}


/* autotls_notify_webhook URL ["Name: value"...] */
char *
ngx_http_autotls_notify_webhook(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_autotls_main_conf_t  *amcf = conf;

    char                 err[256];
    ngx_str_t           *value;
    ngx_uint_t           i, n;
    atls_notify_conf_t   one;

    if (amcf->notify.webhook) {
        return "is duplicate";
    }

    value = cf->args->elts;
    n = cf->args->nelts - 1;

    amcf->notify.webhook = ngx_http_autotls_cstr(&value[1]);
    if (amcf->notify.webhook == NULL) {
        return NGX_CONF_ERROR;
    }

    if (n > 1) {
        amcf->notify.headers = calloc(n - 1, sizeof(char *));
        if (amcf->notify.headers == NULL) {
            return NGX_CONF_ERROR;
        }

        for (i = 2; i <= n; i++) {
            amcf->notify.headers[i - 2] = ngx_http_autotls_cstr(&value[i]);
            if (amcf->notify.headers[i - 2] == NULL) {
                return NGX_CONF_ERROR;
            }
            amcf->notify.n_headers++;
        }
    }

    /* the URL and header rules, checked here to point at this line */
    ngx_memzero(&one, sizeof(atls_notify_conf_t));
    one.webhook = amcf->notify.webhook;
    one.headers = amcf->notify.headers;
    one.n_headers = amcf->notify.n_headers;

    err[0] = '\0';

    if (atls_notify_conf_check(&one, err, sizeof(err)) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"autotls_notify_webhook\": %s", err);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* defaults, from init_main_conf */
char *
ngx_http_autotls_notify_init(ngx_conf_t *cf, ngx_http_autotls_main_conf_t *amcf)
{
    char  err[256];

    if (!amcf->warn_set) {
        atls_warn_default(&amcf->notify.warn);
    }

    ngx_conf_init_value(amcf->notify_timeout, ATLS_NOTIFY_EXEC_TIMEOUT);

    if (amcf->notify_timeout < 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"autotls_notify_timeout\" must be at least 1s");
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_uint_value(amcf->notify_queue, ATLS_NOTIFY_QUEUE_MAX);

    if (amcf->notify_queue < 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"autotls_notify_queue\" must be at least 1");
        return NGX_CONF_ERROR;
    }

    amcf->notify.exec_timeout_s = (long) amcf->notify_timeout;
    amcf->notify.queue_max = amcf->notify_queue;

    err[0] = '\0';

    if (atls_notify_conf_check(&amcf->notify, err, sizeof(err)) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid autotls notification settings: %s", err);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
