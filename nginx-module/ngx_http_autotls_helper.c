/*
 * autotls for nginx: a cluster node's driver runs in the cache manager
 * process.
 *
 * On a cluster node (autotls_store redis://...) the driver's store calls
 * go to Redis.  They are bounded (timeout=MS, the health gate), yet each
 * one that meets an outage stalls its process for up to that timeout; in a
 * serving worker every handshake queued on it would stall too.  So the
 * driver runs in a process that serves no connection: nginx's cache
 * manager process.  The master starts one whenever an entry of
 * cycle->paths has a manager callback, respawns it when it dies, and on a
 * reload starts a new one and stops the old one; the process drops to the
 * worker user, runs every module's init_process as NGX_PROCESS_HELPER and
 * an ordinary event loop, and calls each manager callback on a timer, the
 * first time at once.  The driver (election, mirror, subscriber,
 * scheduler, watch, curl multi, hooks) starts from that first call and
 * lives on that event loop; the serving workers then keep no Redis
 * connection at all (the admin API's per-request connection aside).
 *
 * Without a master (master_process off) there is no helper process: the
 * single process drives, as on a filesystem-store node a worker does.
 */

#include "ngx_http_autotls_module.h"


/* how long the cache manager waits before calling us again: the driver
 * runs on its own events, the callback has nothing more to do */
#define NGX_HTTP_AUTOTLS_HELPER_IDLE_MS  (60 * 60 * 1000)


static ngx_msec_t ngx_http_autotls_helper_manage(void *data);
static ngx_int_t ngx_http_autotls_helper_start(ngx_cycle_t *cycle,
    ngx_http_autotls_main_conf_t *amcf);
static void ngx_http_autotls_helper_exit(void);


static ngx_uint_t  ngx_http_autotls_helper_started;


/* whether the driver of this configuration runs in the cache manager */
ngx_uint_t
ngx_http_autotls_helper_drives(ngx_cycle_t *cycle,
    ngx_http_autotls_main_conf_t *amcf)
{
    ngx_core_conf_t  *ccf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    return amcf->redis != NULL && ccf->master;
}


/*
 * Called from init_module, in the master, for every cycle: our entry in
 * cycle->paths makes the master start a cache manager process for this
 * cycle.  Not ngx_add_path() at configuration time: ngx_init_cycle() runs
 * ngx_create_paths() as root before init_module, and it creates every
 * path and chowns it to the worker user following symlinks, root acting
 * on a path a compromised worker could have swapped.  Added after it (the
 * order of ngx_init_cycle() in 1.22 as in current nginx: ngx_create_paths,
 * then shared memory and listening sockets, then ngx_init_modules), the
 * entry's name is never touched; it has no loader, so no cache loader
 * process starts for it.  An init_module error stops the master (exit(1)):
 * only an allocation can fail here.
 */
ngx_int_t
ngx_http_autotls_helper_add(ngx_cycle_t *cycle,
    ngx_http_autotls_main_conf_t *amcf)
{
    ngx_path_t  *path, **slot;

    if (!ngx_http_autotls_helper_drives(cycle, amcf)) {
        return NGX_OK;
    }

    path = ngx_pcalloc(cycle->pool, sizeof(ngx_path_t));
    if (path == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&path->name, "autotls driver (never created)");
    path->manager = ngx_http_autotls_helper_manage;
    path->data = amcf;

    slot = ngx_array_push(&cycle->paths);
    if (slot == NULL) {
        return NGX_ERROR;
    }

    *slot = path;

    return NGX_OK;
}


/* ngx_path_t.manager: only the cache manager process calls it */
static ngx_msec_t
ngx_http_autotls_helper_manage(void *data)
{
    ngx_http_autotls_main_conf_t  *amcf = data;

    if (!ngx_http_autotls_helper_started) {
        ngx_http_autotls_helper_started = 1;

        if (ngx_http_autotls_helper_start((ngx_cycle_t *) ngx_cycle, amcf)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "autotls: cache manager process %P cannot drive "
                          "issuance and renewal", ngx_pid);
        }
    }

    return NGX_HTTP_AUTOTLS_HELPER_IDLE_MS;
}


/* what init_process does for a worker, less the serving parts */
static ngx_int_t
ngx_http_autotls_helper_start(ngx_cycle_t *cycle,
    ngx_http_autotls_main_conf_t *amcf)
{
    if (ngx_http_autotls_process_open(cycle, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_autotls_store == NULL) {
        /* the workers serve the fallback; the error said why */
        return NGX_OK;
    }

    /* the on-demand ring the workers fill (this process listens on
     * nothing: the wrapper finds no listening socket to wrap) */
    if (ngx_http_autotls_od_init_worker(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * The cache manager leaves with exit(0) on quit or terminate, without
     * exit_process hooks: the lock is released there, so that the next
     * cache manager (a reload's) takes over at its next election, not
     * after NGX_HTTP_AUTOTLS_STALE seconds.  Registered here, in this
     * process only; the hook programs it forks leave with _exit().
     */
    if (atexit(ngx_http_autotls_helper_exit) != 0) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                      "autotls: atexit() failed: a reload waits for the "
                      "driver lock to go stale");
    }

    return ngx_http_autotls_driver_init(cycle);
}


/* atexit(): in this process only the lock's release, nothing that could
 * block or touch what exit() is tearing down (the next driver clears the
 * challenges this one published, as it does after a crash) */
static void
ngx_http_autotls_helper_exit(void)
{
    if (getpid() != ngx_pid) {
        return;
    }

    ngx_http_autotls_shm_resign();
}
