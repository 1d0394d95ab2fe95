/*
 * autotls for nginx: the process hooks of the module table.
 *
 * init_module: the master (root) prepares the store for the worker user
 * and adds the cluster driver's helper; init_process: every worker opens
 * what it serves from, and one of them may drive; exit_process: all of it
 * closed again.  The tables are in ngx_http_autotls_module.c.
 */

#include "ngx_http_autotls_module.h"

#include <curl/curl.h>


ngx_int_t
ngx_http_autotls_init_module(ngx_cycle_t *cycle)
{
    long                           uid, gid;
    char                           err[512], log_path[NGX_MAX_PATH];
    ngx_log_t                     *log;
    ngx_core_conf_t               *ccf;
    ngx_http_autotls_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_autotls_module);
    if (amcf == NULL || !ngx_http_autotls_in_use(amcf) || ngx_test_config) {
        return NGX_OK;
    }

    ngx_http_autotls_log_install(cycle->log);

    uid = -1;
    gid = -1;

    if (geteuid() == 0) {
        ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx,
                                               ngx_core_module);
        if (ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT) {
            uid = (long) ccf->user;
            gid = (long) ccf->group;
        }
    }

    /*
     * The master stays root for its whole life (reloads, log reopening), so
     * it cannot drop privileges for good; it touches the store only here.
     * atls_store_fs_prepare() works through descriptors beneath the store
     * root (no link followed, special and hard-linked files left alone), so
     * a worker rewriting the store meanwhile gains nothing.  Everything
     * else (certificates, the driver, hooks) happens in the workers, as the
     * worker user; were the master to open the store, the fs backend would
     * take the owner's filesystem identity (setfsuid) around each access.
     * A walk longer than its budget goes on in a detached process that
     * appends to the first error log that is a file (none: syslog).
     */
    log_path[0] = '\0';
    for (log = cycle->log; log != NULL; log = log->next) {
        if (log->writer == NULL && log->file != NULL && log->file->name.len > 0
            && log->file->name.len < sizeof(log_path))
        {
            ngx_cpystrn((u_char *) log_path, log->file->name.data,
                        log->file->name.len + 1);
            break;
        }
    }
    if (atls_store_fs_prepare_start((char *) amcf->store.data, uid, gid,
                                    log_path, err, sizeof(err))
        < 0)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "autotls: cannot prepare store \"%V\": %s",
                      &amcf->store, err);
        return NGX_ERROR;
    }

    return ngx_http_autotls_helper_add(cycle, amcf);
}


ngx_int_t
ngx_http_autotls_init_process(ngx_cycle_t *cycle)
{
    ngx_http_autotls_main_conf_t  *amcf;

    /*
     * The cache manager process (the driver of a cluster node) starts
     * from its manager callback (ngx_http_autotls_helper.c), not here: the
     * cache loader process comes here too, as NGX_PROCESS_HELPER.
     */
    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    amcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_autotls_module);
    if (amcf == NULL || !ngx_http_autotls_in_use(amcf)) {
        return NGX_OK;
    }

    if (ngx_http_autotls_process_open(cycle, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_autotls_ssl_init_worker(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_autotls_od_init_worker(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    /* a cluster node's serving workers keep no Redis connection */
    if (ngx_http_autotls_store != NULL
        && !ngx_http_autotls_helper_drives(cycle, amcf)
        && ngx_http_autotls_driver_init(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * What every process of ours needs, a serving worker as the driver: the
 * configuration, the log, curl and the store (on a cluster node, the
 * node's mirror).  A store that cannot be opened leaves ngx_http_autotls_store
 * NULL: the fallback certificates are served and the error says why.
 */
ngx_int_t
ngx_http_autotls_process_open(ngx_cycle_t *cycle,
    ngx_http_autotls_main_conf_t *amcf)
{
    char  err[512];

    ngx_http_autotls_mcf = amcf;
    ngx_http_autotls_log_install(cycle->log);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "autotls: curl_global_init() failed");
        return NGX_ERROR;
    }

    ngx_http_autotls_store = atls_store_fs_open((char *) amcf->store.data,
                                                err, sizeof(err));
    if (ngx_http_autotls_store == NULL) {
        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "autotls: cannot open store \"%V\": %s",
                      &amcf->store, err);
    }

    return NGX_OK;
}


void
ngx_http_autotls_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_http_autotls_mcf == NULL) {
        return;
    }

    ngx_http_autotls_driver_exit(cycle);
    ngx_http_autotls_od_exit_worker();
    ngx_http_autotls_ssl_exit_worker();

    if (ngx_http_autotls_store) {
        atls_store_close(ngx_http_autotls_store);
        ngx_http_autotls_store = NULL;
    }

    curl_global_cleanup();
    atls_log_set(NULL, NULL, ATLS_LOG_INFO);
    ngx_http_autotls_mcf = NULL;
}


/*
 * Loaded but unused (a distribution enables the module for every nginx),
 * the module creates no store, zone or driver; static certificates alone
 * are monitored once autotls_store says where to keep their state.
 */
ngx_uint_t
ngx_http_autotls_in_use(ngx_http_autotls_main_conf_t *amcf)
{
    return amcf->certs.nelts > 0 || amcf->homes.nelts > 0
           || (amcf->store_set && amcf->n_inventory > 0);
}
