/*
 * mod_autotls: module record, start-up (check_config, post_config) and
 * child initialisation.  The work is in the other mod_autotls_*.c files.
 */
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"
#include "ap_mpm.h"
#include "unixd.h"
#include "apr_strings.h"
#include "apr_shm.h"

#include "mod_watchdog.h"
#include "mod_autotls.h"

static void autotls_register_hooks(apr_pool_t *p);

AP_DECLARE_MODULE(autotls) = {
    STANDARD20_MODULE_STUFF,
    autotls_config_create_dir,   /* create per-dir config */
    autotls_config_merge_dir,    /* merge per-dir config */
    autotls_config_create_srv,   /* create per-server config */
    autotls_config_merge_srv,    /* merge per-server config */
    autotls_cmds,
    autotls_register_hooks,
#if defined(AP_MODULE_FLAG_NONE)
    AP_MODULE_FLAG_ALWAYS_MERGE
#endif
};

autotls_global_t autotls_global;

/* ---- logging: the core's messages go to the main server's error log ---- */

static void
autotls_log(void *ctx, atls_log_level_t level, const char *msg)
{
    server_rec *s = ctx;
    int lvl;

    switch (level) {
    case ATLS_LOG_ERR:
        lvl = APLOG_ERR;
        break;
    case ATLS_LOG_WARN:
        lvl = APLOG_WARNING;
        break;
    case ATLS_LOG_INFO:
        lvl = APLOG_INFO;
        break;
    default:
        lvl = APLOG_DEBUG;
        break;
    }
    if (strncmp(msg, "autotls: ", 9) == 0) {
        msg += 9;
    }
    ap_log_error(APLOG_MARK, lvl, 0, s, "autotls: %s", msg);
}

static int
autotls_any_enabled(server_rec *base)
{
    server_rec *s;

    for (s = base; s != NULL; s = s->next) {
        if (autotls_config_get(s)->enabled == 1) {
            return 1;
        }
    }
    return 0;
}

/* autotls runs (store, watchdog, discovery) when a host is managed, or
 * for monitoring alone when AutoTLSStoreDir (or AutoTLSStore) names a store. */
static int
autotls_active(server_rec *base)
{
    return autotls_any_enabled(base) || autotls_config_get(base)->store_dir != NULL
           || autotls_config_get(base)->redis != NULL;
}

static int
autotls_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                     server_rec *s)
{
    if (!autotls_active(s)) {
        return OK;
    }
    if (APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance) == NULL) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s,
                     "AutoTLS needs mod_watchdog: add "
                     "'LoadModule watchdog_module .../mod_watchdog.so'");
        return !OK;
    }
    if (autotls_config_check(ptemp, s) != OK || autotls_cluster_check(ptemp, s) != OK) {
        return !OK;
    }
    return autotls_ondemand_check(ptemp, s);
}

/* tls-alpn-01 is only negotiated when "acme-tls/1" is in the host's
 * Protocols list; add it so that users need not know. */
static void
autotls_add_protocol(server_rec *base)
{
    server_rec *s;

    for (s = base; s != NULL; s = s->next) {
        core_server_config *cc = ap_get_core_module_config(s->module_config);
        int i, have = 0;

        if (cc->protocols == NULL) {
            continue;
        }
        for (i = 0; i < cc->protocols->nelts; i++) {
            if (strcmp(APR_ARRAY_IDX(cc->protocols, i, const char *),
                       AUTOTLS_ACME_TLS_1) == 0) {
                have = 1;
            }
        }
        if (have) {
            continue;
        }
        if (cc->protocols->nelts == 0) {
            /* an empty list means "http/1.1 only"; keep that */
            APR_ARRAY_PUSH(cc->protocols, const char *) = AP_PROTOCOL_HTTP1;
        }
        APR_ARRAY_PUSH(cc->protocols, const char *) = AUTOTLS_ACME_TLS_1;
    }
}

/* A dynamic host is the home of names registered with its ServerName as
 * their home (the first one also of those registered without one).  Two
 * hosts sharing a ServerName (another port) share one home: its owner's
 * issuer and cache. */
static void
autotls_home_add(autotls_srv_conf_t *sc)
{
    int i;

    if (sc->dynamic == AUTOTLS_STATIC) {
        return;
    }
    for (i = 0; i < autotls_global.homes->nelts; i++) {
        if (APR_ARRAY_IDX(autotls_global.homes, i, autotls_srv_conf_t *) == sc->owner) {
            return;
        }
    }
    APR_ARRAY_PUSH(autotls_global.homes, autotls_srv_conf_t *) = sc->owner;
}

/* Fills names/cert-id for every managed host; hosts sharing a cert-id
 * share one owner (one job, one cache). */
static int
autotls_collect_hosts(apr_pool_t *p, server_rec *base)
{
    server_rec *s;
    int i;

    autotls_global.hosts = apr_array_make(p, 8, sizeof(autotls_srv_conf_t *));
    autotls_global.homes = apr_array_make(p, 2, sizeof(autotls_srv_conf_t *));
    for (s = base; s != NULL; s = s->next) {
        autotls_srv_conf_t *sc = autotls_config_get(s);
        char *id;

        if (sc->enabled != 1) {
            continue;
        }
        if (autotls_config_names(p, s, &sc->names, &sc->n_names) != 0) {
            return !OK;
        }
        id = atls_cert_id(sc->names[0]);
        if (id == NULL) {
            return !OK;
        }
        sc->cert_id = apr_pstrdup(p, id);
        free(id);
        sc->owner = NULL;
        for (i = 0; i < autotls_global.hosts->nelts; i++) {
            autotls_srv_conf_t *o = APR_ARRAY_IDX(autotls_global.hosts, i,
                                                  autotls_srv_conf_t *);
            if (strcmp(o->cert_id, sc->cert_id) == 0) {
                sc->owner = o;
            }
        }
        if (sc->owner != NULL) {
            sc->cache = sc->owner->cache;
            autotls_home_add(sc);
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                         "autotls: %s shares the certificate of %s:%d",
                         sc->cert_id, sc->owner->s->server_hostname,
                         sc->owner->s->port);
            continue;
        }
        sc->owner = sc;
        sc->issuer = autotls_config_issuer(p, sc);
        sc->cache = apr_pcalloc(p, sizeof(*sc->cache));
        pthread_rwlock_init(&sc->cache->lock, NULL);
        if (sc->issuer->challenge == ATLS_CHAL_TLSALPN01) {
            autotls_global.any_tls_alpn = 1;
        }
        APR_ARRAY_PUSH(autotls_global.hosts, autotls_srv_conf_t *) = sc;
        autotls_home_add(sc);
    }
    return OK;
}

/* Children forked from here start at the store's generation, the value the
 * driver publishes too, so that what a child preloads right after its start
 * is not thrown away when the driver's first check publishes.
 *
 * This runs in the parent, as root, on a store www-data owns.  The parent
 * cannot drop root for good (restarts), and forking a child per read would
 * cost more than it protects: the fs backend instead takes the store
 * owner's filesystem uid/gid (setfsuid/setfsgid, this thread only) around
 * each operation, refuses links and non-regular files (a FIFO planted as
 * "generation" cannot hang the parent) and caps reads.  The same holds for
 * the fallback certificates written at start-up (mod_autotls_ssl.c). */
static void
autotls_generation_init(server_rec *s)
{
    atls_store_t *st = autotls_store_open(s);

    if (st == NULL) {
        return;
    }
    /* +1 as in the driver: generation 0 means "never published" */
    __atomic_store_n(autotls_global.generation, atls_store_generation(st) + 1,
                     __ATOMIC_RELEASE);
    atls_store_close(st);
}

static int
autotls_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                    server_rec *s)
{
    autotls_srv_conf_t *mc = autotls_config_get(s);
    apr_shm_t *shm;
    apr_status_t rv;
    char err[256];
    const char *error_log = NULL;
    long uid = -1, gid = -1;

    memset(&autotls_global, 0, sizeof(autotls_global));
    autotls_global.main_server = s;
    autotls_global.store_dir = mc->store_dir ? mc->store_dir : AUTOTLS_DEFAULT_STORE;
    /* with Redis, the children serve from the node's mirror: mirror=DIR,
     * else the store directory */
    autotls_global.redis = mc->redis;
    if (mc->redis != NULL && mc->redis->mirror_dir != NULL) {
        autotls_global.store_dir = mc->redis->mirror_dir;
    }
    autotls_global.check_interval = mc->check_interval != AUTOTLS_UNSET
                                    ? mc->check_interval : AUTOTLS_DEFAULT_CHECK;
    autotls_global.max_parallel = mc->max_parallel != AUTOTLS_UNSET
                                  ? mc->max_parallel : AUTOTLS_DEFAULT_PARALLEL;
    autotls_global.preload = mc->preload != AUTOTLS_UNSET
                             ? mc->preload : AUTOTLS_DEFAULT_PRELOAD;
    autotls_global.cache_size = mc->cache_size != AUTOTLS_UNSET ? mc->cache_size : 0;
    atls_log_set(autotls_log, s, ATLS_LOG_DEBUG);

    if (!autotls_active(s)) {
        return OK;
    }
    autotls_notify_conf_build(pconf, mc, &autotls_global.notify);
    autotls_global.policy = mc->policy;
    autotls_discover_reset(pconf);
    if (geteuid() == 0) {
        uid = (long) ap_unixd_config.user_id;
        gid = (long) ap_unixd_config.group_id;
    }
    /* as root: through descriptors, links and special files left alone; a
     * walk longer than its budget goes on in a detached process appending
     * to the main error log when that is a file (else syslog) */
    if (s->error_fname != NULL && s->error_fname[0] != '|'
        && strncmp(s->error_fname, "syslog", 6) != 0)
    {
        error_log = ap_server_root_relative(ptemp, s->error_fname);
    }
    if (atls_store_fs_prepare_start(autotls_global.store_dir, uid, gid, error_log,
                                    err, sizeof(err)) < 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "%s %s: %s",
                     mc->redis != NULL ? "AutoTLSStore mirror" : "AutoTLSStoreDir",
                     autotls_global.store_dir, err);
        return !OK;
    }
    if (autotls_collect_hosts(pconf, s) != OK) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "autotls: bad host names");
        return !OK;
    }
    if (autotls_global.any_tls_alpn) {
        autotls_add_protocol(s);
    }
    if (ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_CREATE_PRE_CONFIG) {
        autotls_dyn_check_homes(s);
    }
    autotls_ondemand_post_config(s);

    /* The first, trial run of post_config is followed by the real one:
     * shared memory and the watchdog only for the real one. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    rv = apr_shm_create(&shm, 64, NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "autotls: shared memory");
        return !OK;
    }
    autotls_global.generation = apr_shm_baseaddr_get(shm);
    memset((void *) autotls_global.generation, 0, 64);
    autotls_global.od_requests = autotls_global.generation + 1;
    autotls_generation_init(s);

    rv = autotls_drive_start(pconf, s);
    if (rv != APR_SUCCESS) {
        return !OK;
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 "autotls: %d certificate(s) managed, store %s, check every %lds, "
                 "up to %d orders at once",
                 autotls_global.hosts->nelts, autotls_global.store_dir,
                 (long) apr_time_sec(autotls_global.check_interval),
                 autotls_global.max_parallel);
    return OK;
}

static void
autotls_child_init(apr_pool_t *p, server_rec *s)
{
    atls_log_set(autotls_log, s, ATLS_LOG_DEBUG);
    if (autotls_global.hosts != NULL) {
        autotls_drive_child_init(p);
        autotls_dyn_child_init(p);
        autotls_changes_child_init(p);
        autotls_preload_start(p, s);
        autotls_odwait_child_init(p, s);
    }
}

static void
autotls_register_hooks(apr_pool_t *p)
{
    static const char *const before_ssl[] = { "mod_ssl.c", "mod_watchdog.c", NULL };

    ap_hook_check_config(autotls_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(autotls_post_config, NULL, before_ssl, APR_HOOK_MIDDLE);
    ap_hook_child_init(autotls_child_init, NULL, NULL, APR_HOOK_MIDDLE);

    autotls_ssl_register_hooks();
    autotls_challenge_register_hooks();
    autotls_status_register_hooks();
    autotls_discover_register_hooks();
    autotls_api_register_hooks();
}
