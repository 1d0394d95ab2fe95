/*
 * autotls for nginx: the core's log lines (atls_log) into nginx's log,
 * at the level nginx's own messages of that kind use.
 */

#include "ngx_http_autotls_module.h"


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
