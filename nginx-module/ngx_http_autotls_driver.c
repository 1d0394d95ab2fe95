/*
 * autotls for nginx: the renewal driver.
 *
 * Every worker tries, once a second, to hold the driver lock in shared
 * memory (holder pid + heartbeat); on a cluster node only the cache
 * manager process does (ngx_http_autotls_helper.c), so that no serving
 * worker ever waits on Redis.  The holder hosts the core's scheduler
 * (common/atls_sched.h), which makes every decision: what is due, which
 * key types, slots, account gating, ARI, the ACME steps and what is
 * logged.  This file only gives it nginx events: HTTP through curl multi
 * (ngx_http_autotls_curl.c), hook programs (ngx_http_autotls_hook.c),
 * challenge answers in shared memory (ngx_http_autotls_challenge.c), its
 * one timer, and a check every autotls_check_interval.  The holder also
 * watches the store for deploys by anyone else (ngx_http_autotls_watch.c).
 *
 * Events (obtained, renewed, failed, expiring...) are the scheduler's: the
 * driver gives it one emitter, as this server ("nginx/VERSION", its pid),
 * with the configured sinks; the scheduler's notifier delivers the store's
 * queue through the same curl multi and, for autotls_notify_exec, through
 * exec_start.  Workers that do not drive never emit.  At each driver start
 * the configuration that others read from the store is written there: the
 * notification settings (the CLI queues its events for the same sinks),
 * the policy (the CLI honours it) and the inventory of static certificates
 * found at configuration time.
 *
 * On a cluster node (autotls_store redis://...) the scheduler runs on the
 * mirror's store over Redis (ngx_http_autotls_cluster.c), and challenge
 * answers wait until every live node loaded them (publish_wait).
 *
 * Job state lives in the store: a worker that dies or exits mid-order
 * leaves meta "renewing" without a new certificate, and the next driver
 * simply starts that order again.
 */

#include "ngx_http_autotls_module.h"


typedef struct {
    atls_sched_t               *sched;      /* while this worker drives */
    atls_store_t               *store;      /* the scheduler's: the store,
                                               or the mirror's over Redis */
    atls_events_t              *events;     /* the scheduler's emitter */
    ngx_event_t                 elect_ev;   /* lock + heartbeat, every 1 s */
    ngx_event_t                 check_ev;   /* autotls_check_interval */
    ngx_event_t                 timer_ev;   /* the scheduler's timer */
    ngx_log_t                  *log;
    unsigned                    initialized:1;
    unsigned                    driver:1;   /* holds the lock */
} ngx_http_autotls_driver_t;


static void ngx_http_autotls_elect(ngx_event_t *ev);
static ngx_int_t ngx_http_autotls_drive(ngx_uint_t took);
static ngx_int_t ngx_http_autotls_run(void);
static ngx_int_t ngx_http_autotls_events(void);
static void ngx_http_autotls_publish_conf(void);
static void ngx_http_autotls_manage(atls_sched_t *sched);
static void ngx_http_autotls_stop(void);
static ngx_uint_t ngx_http_autotls_leaving(void);
static const char *ngx_http_autotls_process_name(void);
static void ngx_http_autotls_check(ngx_event_t *ev);
static void ngx_http_autotls_timer(ngx_event_t *ev);
static void ngx_http_autotls_sched_timer(void *ctx, long ms);
static void ngx_http_autotls_changed(void *ctx, void *cert_data,
    const char *id, atls_key_type_t kt);
static const atls_issuer_t *ngx_http_autotls_sched_home(void *ctx,
    const char *home, void **cert_data);


static ngx_http_autotls_driver_t  ngx_http_autotls_drv;


static const atls_sched_host_t  ngx_http_autotls_host = {
    .ctx = NULL,
    .http_send = ngx_http_autotls_curl_send,
    .http_cancel = ngx_http_autotls_curl_cancel,
    .timer = ngx_http_autotls_sched_timer,
    .hook_start = ngx_http_autotls_hook_start,
    .hook_kill = ngx_http_autotls_hook_kill,
    .publish = ngx_http_autotls_publish,
    .withdraw = ngx_http_autotls_withdraw,
    .publish_wait = ngx_http_autotls_publish_wait,
    .publish_cancel = ngx_http_autotls_publish_cancel,
    .deployed = ngx_http_autotls_changed,
    .stapled = ngx_http_autotls_changed,
    .exec_start = ngx_http_autotls_exec_start,
    .done = NULL,               /* the scheduler logs each attempt itself */
    .home = ngx_http_autotls_sched_home,
    .on_demand = ngx_http_autotls_od_verdict
};


ngx_int_t
ngx_http_autotls_driver_init(ngx_cycle_t *cycle)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    ngx_memzero(drv, sizeof(ngx_http_autotls_driver_t));
    drv->log = cycle->log;

    ngx_http_autotls_event_init(&drv->elect_ev, ngx_http_autotls_elect,
                                cycle->log);
    ngx_http_autotls_event_init(&drv->check_ev, ngx_http_autotls_check,
                                cycle->log);
    ngx_http_autotls_event_init(&drv->timer_ev, ngx_http_autotls_timer,
                                cycle->log);
    ngx_http_autotls_watch_init(cycle->log);

    drv->initialized = 1;

    /* stagger the workers so that the first one usually wins */
    ngx_add_timer(&drv->elect_ev, 10 + 50 * ngx_worker);

    return NGX_OK;
}


void
ngx_http_autotls_driver_exit(ngx_cycle_t *cycle)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (!drv->initialized) {
        return;
    }

    ngx_http_autotls_stop();

    if (drv->elect_ev.timer_set) {
        ngx_del_timer(&drv->elect_ev);
    }

    drv->initialized = 0;
}


/* ---- election ---------------------------------------------------------- */

static void
ngx_http_autotls_elect(ngx_event_t *ev)
{
    ngx_int_t                   mine;
    ngx_uint_t                  took;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (ngx_http_autotls_leaving()) {
        return;
    }

    mine = ngx_http_autotls_shm_elect(ngx_time(), &took);

    if (mine && !drv->driver) {
        if (ngx_http_autotls_drive(took) != NGX_OK) {
            ngx_http_autotls_stop();
        }

    } else if (!mine && drv->driver) {
        ngx_log_error(NGX_LOG_WARN, drv->log, 0,
                      "autotls: %s %P lost the driver lock",
                      ngx_http_autotls_process_name(), ngx_pid);
        ngx_http_autotls_stop();
    }

    ngx_add_timer(&drv->elect_ev, NGX_HTTP_AUTOTLS_ELECT_MS);
}


/*
 * This worker holds the lock now: a scheduler over every certificate, at
 * once on a store directory; on a cluster node once its mirror is in line
 * with Redis (ngx_http_autotls_driver_resume): a scheduler that found a
 * Redis restarted empty before the mirror filled it again would order
 * every certificate anew.
 */
static ngx_int_t
ngx_http_autotls_drive(ngx_uint_t took)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    ngx_log_error(NGX_LOG_NOTICE, drv->log, 0,
                  "autotls: %s %P drives issuance and renewal",
                  ngx_http_autotls_process_name(), ngx_pid);

    drv->driver = 1;

    if (took) {
        /* whatever a dead driver published is stale now (a cluster
         * node's mirror loads the cluster's challenges again) */
        ngx_http_autotls_shm_chal_clear();
    }

    drv->store = ngx_http_autotls_store;

    if (ngx_http_autotls_mcf->redis == NULL) {
        return ngx_http_autotls_run();
    }

    /* deploys by other nodes reach the workers meanwhile */
    ngx_http_autotls_watch_start();

    if (ngx_http_autotls_cluster_start(drv->log) != NGX_OK) {
        return NGX_ERROR;
    }

    drv->store = ngx_http_autotls_cluster_store();

    return NGX_OK;
}


/* a cluster node's mirror is in line with Redis: the scheduler may run */
void
ngx_http_autotls_driver_resume(void)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (!drv->driver || drv->sched != NULL) {
        return;
    }

    if (ngx_http_autotls_run() != NGX_OK) {
        ngx_http_autotls_driver_pause();
    }
}


static ngx_int_t
ngx_http_autotls_run(void)
{
    char                        err[512];
    atls_sched_opts_t           opts;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    ngx_memzero(&opts, sizeof(atls_sched_opts_t));
    opts.max_parallel = ngx_http_autotls_mcf->max_parallel;
    /* a pass yields to clients every few milliseconds */
    opts.slice_ms = 3;
    opts.ari = 1;

    if (ngx_http_autotls_events() != NGX_OK) {
        return NGX_ERROR;
    }

    opts.events = drv->events;
    opts.policy = ngx_http_autotls_mcf->policy;
    opts.on_demand = ngx_http_autotls_od_gate();

    ngx_http_autotls_publish_conf();

    err[0] = '\0';

    drv->sched = atls_sched_new(drv->store, &ngx_http_autotls_host,
                                &opts, err, sizeof(err));
    if (drv->sched == NULL) {
        ngx_log_error(NGX_LOG_ALERT, drv->log, 0,
                      "autotls: atls_sched_new() failed: %s", err);
        return NGX_ERROR;
    }

    ngx_http_autotls_cluster_attach(drv->sched);

    if (ngx_http_autotls_curl_init(drv->sched, opts.max_parallel, drv->log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_autotls_hook_init(drv->sched, drv->log);

    ngx_http_autotls_manage(drv->sched);
    ngx_http_autotls_od_driver(drv->sched);

    /* names registered at runtime: the scheduler manages those of our
     * homes, the zone mirrors them for the workers (on a cluster node,
     * from the node's mirror of the registry) */
    atls_sched_names_sync(drv->sched);
    ngx_http_autotls_dyn_sync();

    ngx_add_timer(&drv->check_ev, 1);

    /* deploys by the CLI or another server, too */
    ngx_http_autotls_watch_start();

    return NGX_OK;
}


/* the emitter of this server's events, with the configured sinks */
static ngx_int_t
ngx_http_autotls_events(void)
{
    atls_actor_t                actor;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    atls_actor_self(&actor, "server", "nginx/" NGINX_VERSION);

    drv->events = atls_events_new(drv->store, &actor,
                                  &ngx_http_autotls_mcf->notify);
    if (drv->events == NULL) {
        ngx_log_error(NGX_LOG_ALERT, drv->log, 0,
                      "autotls: atls_events_new() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * What the CLI and the status page read from the store: the notification
 * settings, the policy, and the static certificates found at configuration
 * time.  A failure is logged and the driver goes on: serving and renewing
 * do not depend on them.
 */
static void
ngx_http_autotls_publish_conf(void)
{
    char                           err[512];
    ngx_http_autotls_main_conf_t  *amcf = ngx_http_autotls_mcf;
    ngx_http_autotls_driver_t     *drv = &ngx_http_autotls_drv;

    err[0] = '\0';

    if (atls_store_save_notify_conf(drv->store, &amcf->notify,
                                    err, sizeof(err))
        != ATLS_STORE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, drv->log, 0,
                      "autotls: cannot save the notification settings: %s",
                      err);
    }

    err[0] = '\0';

    /* no policy (or an empty one) removes an older policy.json */
    if (atls_store_save_policy(drv->store, amcf->policy,
                               err, sizeof(err))
        != ATLS_STORE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, drv->log, 0,
                      "autotls: cannot save autotls_policy: %s", err);
    }

    err[0] = '\0';

    if (atls_store_inventory_sync(drv->store, "nginx",
                                  amcf->inventory, amcf->n_inventory,
                                  err, sizeof(err))
        != ATLS_STORE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, drv->log, 0,
                      "autotls: cannot save the inventory of static "
                      "certificates: %s", err);
    }
}


/*
 * The watcher saw the store generation move: a CLI may have queued events,
 * a name may have been registered or removed (both cheap when not).
 */
void
ngx_http_autotls_driver_store_changed(void)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (drv->sched != NULL) {
        atls_sched_notify(drv->sched);
        atls_sched_names_sync(drv->sched);
        ngx_http_autotls_dyn_sync();
    }
}


/* hands every configured certificate to the scheduler */
static void
ngx_http_autotls_manage(atls_sched_t *sched)
{
    char                        err[512];
    ngx_uint_t                  i;
    ngx_http_autotls_cert_t   **certs, *cert;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    certs = ngx_http_autotls_mcf->certs.elts;

    for (i = 0; i < ngx_http_autotls_mcf->certs.nelts; i++) {
        cert = certs[i];
        err[0] = '\0';

        /* the issuer with its EAB secrets, which the store never keeps */
        if (atls_sched_add(sched, (const char *const *) cert->names,
                           cert->n_names, &cert->issuer->is, cert,
                           err, sizeof(err))
            == NULL)
        {
            ngx_log_error(NGX_LOG_ERR, drv->log, 0,
                          "autotls: certificate \"%s\" is not managed: %s",
                          cert->id, err);
        }
    }
}


/*
 * The scheduler stops (its orders in flight are cancelled), the driver
 * keeps the lock: a cluster node whose Redis is gone; the next
 * ngx_http_autotls_driver_resume() starts a scheduler again from the store.
 */
void
ngx_http_autotls_driver_pause(void)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    ngx_http_autotls_od_driver(NULL);

    if (drv->sched != NULL) {
        /* cancels transfers, kills hooks, withdraws answers */
        atls_sched_free(drv->sched);
        drv->sched = NULL;
    }

    ngx_http_autotls_cluster_attach(NULL);

    if (drv->events != NULL) {
        atls_events_free(drv->events);
        drv->events = NULL;
    }

    ngx_http_autotls_curl_cleanup();
    ngx_http_autotls_hook_cleanup();

    /*
     * transfers cut mid-handshake (curl's SSL_shutdown) leave errors on
     * this thread's OpenSSL queue; nginx would report them as stale at
     * the next client handshake
     */
    ERR_clear_error();

    if (drv->check_ev.timer_set) {
        ngx_del_timer(&drv->check_ev);
    }

    if (drv->timer_ev.timer_set) {
        ngx_del_timer(&drv->timer_ev);
    }

    if (drv->timer_ev.posted) {
        ngx_delete_posted_event(&drv->timer_ev);
    }
}


/* on exit or when the lock is lost: the next driver resumes from the store */
static void
ngx_http_autotls_stop(void)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    ngx_http_autotls_driver_pause();

    /* after the scheduler and its emitter, which use the mirror */
    ngx_http_autotls_cluster_stop();
    drv->store = NULL;
    ngx_http_autotls_watch_stop();
    ngx_http_autotls_dyn_stop();

    if (drv->driver) {
        ngx_http_autotls_shm_chal_clear();
        ngx_http_autotls_shm_resign();
        drv->driver = 0;
    }
}


/* an exiting worker stops driving at once; the next driver resumes */
static ngx_uint_t
ngx_http_autotls_leaving(void)
{
    if (ngx_exiting || ngx_quit || ngx_terminate) {
        ngx_http_autotls_stop();
        return 1;
    }

    return 0;
}


/* which process drives, for the log */
static const char *
ngx_http_autotls_process_name(void)
{
    return (ngx_process == NGX_PROCESS_HELPER) ? "cache manager process"
                                               : "worker";
}


/* ---- the scheduler's events -------------------------------------------- */

static void
ngx_http_autotls_check(ngx_event_t *ev)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (drv->sched == NULL) {
        return;
    }

    if (ngx_http_autotls_leaving()) {
        return;
    }

    /* a pass still in progress just goes on */
    atls_sched_check(drv->sched);

    ngx_add_timer(&drv->check_ev, ngx_http_autotls_mcf->check_interval);
}


static void
ngx_http_autotls_timer(ngx_event_t *ev)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (drv->sched == NULL) {
        return;
    }

    if (ngx_http_autotls_leaving()) {
        return;
    }

    atls_sched_timer(drv->sched);
}


/* atls_sched_host_t.timer */
static void
ngx_http_autotls_sched_timer(void *ctx, long ms)
{
    ngx_event_t  *ev = &ngx_http_autotls_drv.timer_ev;

    /* re-armed exactly: ngx_add_timer() keeps a timer moved by < 300 ms */
    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    if (ms < 0) {
        return;
    }

    if (ms == 0) {
        /* after the next round of network events: clients go first */
        ngx_post_event(ev, &ngx_posted_next_events);
        return;
    }

    ngx_add_timer(ev, (ngx_msec_t) ms);
}


/*
 * atls_sched_host_t.deployed and .stapled: a new certificate, or a new OCSP
 * response for one (or none any more), is in the store with its meta
 * generation bumped; every worker loads the certificate again, with its
 * response, from its next handshake on.
 */
static void
ngx_http_autotls_changed(void *ctx, void *cert_data, const char *id,
    atls_key_type_t kt)
{
    ngx_http_autotls_cert_t  *cert = cert_data;

    /* a dynamic name's: cert_data is its home's record */
    if (cert == NULL || cert->index == NGX_HTTP_AUTOTLS_NO_INDEX) {
        ngx_http_autotls_dyn_deployed(id);
        return;
    }

    ngx_http_autotls_watch_deployed(cert);
}


/*
 * atls_sched_host_t.home: the issuer of a registry entry's home (the
 * first dynamic home for an entry with none), with the home's record as
 * the certificate data of its names; NULL when no server here is that
 * home.
 */
static const atls_issuer_t *
ngx_http_autotls_sched_home(void *ctx, const char *home, void **cert_data)
{
    ngx_http_autotls_srv_conf_t  *ascf;

    ascf = ngx_http_autotls_dyn_find_home(ngx_http_autotls_mcf, home);
    if (ascf == NULL) {
        return NULL;
    }

    *cert_data = ascf->home;

    return &ascf->home->issuer->is;
}
