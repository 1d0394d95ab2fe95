/*
 * The renewal driver: one mod_watchdog singleton thread (in whichever
 * child holds the watchdog mutex) keeps one scheduler (atls_sched.h, on
 * the core's host loop, host_loop.c) from its start to its stop, as nginx's
 * driver does, and asks it for a pass at start and then each
 * AutoTLSCheckInterval.  The scheduler decides what is due -- a missing
 * key type, the renewal time, an operator's request, the CA's renewal
 * information (ARI), a revocation -- and runs those orders at once, up to
 * AutoTLSMaxParallel, with dns-01 hooks in the background so that one slow
 * hook delays no other host.  Kept across checks, its due index makes a
 * pass cost the certificates whose time came, not all of them, and its
 * copy of the registry of dynamic names follows the names journal.  The
 * same passes refresh OCSP responses and CRLs (AutoTLSStapling).  This
 * file publishes challenge answers in the store, where every child reads
 * them, logs each outcome and publishes the store generation: a deploy
 * and a new (or withdrawn) OCSP response both bump it, so children load
 * the certificate again with its staple.  All job state is in the store,
 * so a restart or a watchdog that moved to another child resumes from
 * there.
 *
 * Events (atls_event.h) are emitted by the scheduler through one emitter
 * per watchdog child (actor: this child's pid), and its notifier delivers
 * the store's queue: a delivery waiting for a retry goes out when the
 * scheduler's timer falls due, looked at every AUTOTLS_WATCH_INTERVAL.
 */
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/crypto.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "apr_strings.h"

#include "ap_release.h"
#include "mod_watchdog.h"
#include "atls_names.h"
#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

/* what the audit trail and the events say emitted them */
#define AUTOTLS_SOFTWARE "Apache/" AP_SERVER_BASEREVISION
/* A pass checks certificates for at most this long, then the watchdog's
 * loop gets its turn (autotls_drive_poll) before the pass goes on.  The
 * first pass after a start reads every certificate; on a cluster node
 * that is Redis round trips (under load, 0.3 s a certificate was seen),
 * and an unsliced pass held another node's deploy back until it ended
 * (23-27 s with 100 certificates, bench/cluster.sh), since only the loop
 * reads the subscriber. */
#define AUTOTLS_PASS_SLICE_MS 50

/* child-local: only the watchdog thread touches these */
static atls_store_t *drive_store;
static atls_events_t *drive_events;
static atls_od_t     *drive_gate;         /* on demand: the scheduler's gate */
static char        **drive_last_error;   /* per host, to log a problem once */

uint64_t
autotls_generation_get(void)
{
    if (autotls_global.generation == NULL) {
        return 0;
    }
    return __atomic_load_n(autotls_global.generation, __ATOMIC_ACQUIRE);
}

void
autotls_generation_publish(atls_store_t *st)
{
    static int failing;   /* the watchdog thread only */
    uint64_t g;
    char err[256];

    if (autotls_global.generation == NULL) {
        return;
    }
    /* read every 500 ms (autotls_watch_cb): a broken file is said once */
    if (atls_store_read_generation(autotls_cluster_local(st), &g, err, sizeof(err))
        != ATLS_STORE_OK) {
        if (!failing) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, autotls_global.main_server,
                         "autotls: %s; certificates deployed by others are not "
                         "seen until it is readable", err);
            failing = 1;
        }
        return;
    }
    failing = 0;
    /* +1 so that a store at generation 0 still differs from "never loaded" */
    g++;
    if (g != autotls_generation_get()) {
        __atomic_store_n(autotls_global.generation, g, __ATOMIC_RELEASE);
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, autotls_global.main_server,
                     "autotls: published generation %" APR_UINT64_T_FMT, (apr_uint64_t) g);
    }
}

/* ---- challenge publication ------------------------------------------- */

static char *
autotls_tls_alpn_pem(const atls_challenge_t *c, char *why, size_t whylen)
{
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    BIO *bio = NULL;
    char *key_pem = NULL, *out = NULL, *data;
    long n;

    if (atls_tls_alpn_cert(c->identifier, c->key_authz, &x, &k) != 0) {
        snprintf(why, whylen, "cannot make the tls-alpn-01 certificate for %s",
                 c->identifier);
        goto done;
    }
    bio = BIO_new(BIO_s_mem());
    key_pem = atls_key_to_pem(k);
    if (bio == NULL || key_pem == NULL || !PEM_write_bio_X509(bio, x)) {
        snprintf(why, whylen, "cannot encode the tls-alpn-01 certificate");
        goto done;
    }
    n = BIO_get_mem_data(bio, &data);
    out = malloc((size_t) n + strlen(key_pem) + 1);
    if (out == NULL) {
        abort();
    }
    memcpy(out, data, (size_t) n);
    strcpy(out + n, key_pem);

done:
    if (key_pem != NULL) {
        OPENSSL_cleanse(key_pem, strlen(key_pem));
        free(key_pem);
    }
    BIO_free(bio);
    X509_free(x);
    EVP_PKEY_free(k);
    return out;
}

/* http-01 and tls-alpn-01 answers, in the store (ctx); the store checks
 * the token or identifier before it names a file after it. */
static int
autotls_chal_setup(void *ctx, const atls_challenge_t *c, char *why, size_t whylen)
{
    atls_store_t *st = ctx;
    char *pem;
    int rc;

    switch (c->type) {
    case ATLS_CHAL_HTTP01:
        if (c->token == NULL || c->key_authz == NULL) {
            snprintf(why, whylen, "incomplete http-01 challenge");
            return -1;
        }
        return autotls_cluster_put_challenge(st, c->type, c->token, c->key_authz,
                                             strlen(c->key_authz), why, whylen)
               == ATLS_STORE_OK ? 0 : -1;
    case ATLS_CHAL_TLSALPN01:
        if (c->identifier == NULL) {
            snprintf(why, whylen, "incomplete tls-alpn-01 challenge");
            return -1;
        }
        pem = autotls_tls_alpn_pem(c, why, whylen);
        if (pem == NULL) {
            return -1;
        }
        rc = autotls_cluster_put_challenge(st, c->type, c->identifier, pem, strlen(pem),
                                           why, whylen);
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
        return rc == ATLS_STORE_OK ? 0 : -1;
    default:
        /* dns-01 runs AutoTLSDnsHook through the scheduler */
        snprintf(why, whylen, "%s needs AutoTLSDnsHook", atls_challenge_type_name(c->type));
        return -1;
    }
}

static void
autotls_chal_teardown(void *ctx, const atls_challenge_t *c)
{
    atls_store_t *st = ctx;
    const char *key = c->type == ATLS_CHAL_HTTP01 ? c->token : c->identifier;
    char why[256];

    if ((c->type == ATLS_CHAL_HTTP01 || c->type == ATLS_CHAL_TLSALPN01) && key != NULL
        && autotls_cluster_del_challenge(st, c->type, key, why, sizeof(why))
           != ATLS_STORE_OK) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, autotls_global.main_server,
                     "autotls: cannot withdraw the %s answer for %s: %s",
                     atls_challenge_type_name(c->type), c->identifier, why);
    }
}

/* ---- outcomes ---------------------------------------------------------- */

static autotls_srv_conf_t *
autotls_host(size_t i)
{
    return APR_ARRAY_IDX(autotls_global.hosts, (int) i, autotls_srv_conf_t *);
}

/* Called by the scheduler when the attempt on host i is over.  A problem
 * that repeats itself check after check is said once at notice level (the
 * core logs each attempt's CA problem itself). */
static void
autotls_drive_done(void *ctx, size_t i, int rc, const char *err)
{
    autotls_srv_conf_t *sc;
    const char *msg = err != NULL && err[0] ? err : "(no detail)";

    if (i == ATLS_JOB_DYNAMIC) {
        /* a registered name's: the children serve it from their next
         * handshake (msg names its certificate id on failure) */
        if (rc != 0) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, autotls_global.main_server,
                         "autotls: dynamic name: certificate order failed: %s", msg);
        }
        autotls_generation_publish(drive_store);
        return;
    }
    sc = autotls_host(i);
    if (rc == 0) {
        free(drive_last_error[i]);
        drive_last_error[i] = NULL;
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, sc->s,
                     "autotls: %s: new certificate deployed; served from the next "
                     "handshake on, no restart needed", sc->cert_id);
    } else if (drive_last_error[i] != NULL && strcmp(drive_last_error[i], msg) == 0) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, sc->s,
                     "autotls: %s: certificate order failed again: %s", sc->cert_id, msg);
    } else {
        free(drive_last_error[i]);
        drive_last_error[i] = atls_strdup(msg);
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, sc->s,
                     "autotls: %s: certificate order failed: %s", sc->cert_id, msg);
    }
    /* publish at once, even a partial success (one of two key types), so
     * that this name is served while the other orders still run */
    autotls_generation_publish(drive_store);
}

/* ---- names registered at runtime ---------------------------------------- */

/* The registry's generation the scheduler last synced from, and the shm
 * generation its tick last looked at (the watchdog thread only). */
static uint64_t drive_names_gen;
static uint64_t drive_synced_gen;

/* A child's request seen while a run goes on: taken by a pass now, and
 * the next watch runs one more pass either way (the watchdog thread only). */
static int drive_woken;

static int
autotls_drive_woken(void)
{
    if (!autotls_odwait_requested()) {
        return 0;
    }
    drive_woken = 1;
    return 1;
}

/* The registry again when its generation moved: only the names its
 * journal says changed are read (atls_sched_names_sync); a name added
 * gets a pass at once. */
static void
autotls_drive_names_sync(atls_sched_t *sched)
{
    drive_names_gen = atls_names_generation(drive_store);
    atls_sched_names_sync(sched);
}

/* While a run goes on: the registry again when the store generation moved
 * (every add and remove bumps it); a child's on-demand request while
 * orders run is taken now, not at their end. */
static void
autotls_drive_tick(void *ctx, atls_sched_t *sched)
{
    uint64_t gen = autotls_generation_get();

    if (drive_gate != NULL && autotls_drive_woken()) {
        atls_sched_check(sched);
    }
    if (drive_synced_gen == gen) {
        return;
    }
    drive_synced_gen = gen;
    autotls_drive_names_sync(sched);
}

/* Between runs (autotls_watch_cb): a name registered or removed since the
 * last sync. */
static int
autotls_drive_names_moved(void)
{
    return autotls_global.homes != NULL && autotls_global.homes->nelts > 0
           && atls_names_generation(drive_store) != drive_names_gen;
}

/*
 * A check runs whole orders (atls_job_check_pass returns when the orders
 * it started have ended), so the child may be told to stop while the driver
 * thread is inside one.  The child must not exit under it: exit() runs
 * OpenSSL's atexit cleanup while the thread still signs requests (SIGSEGV
 * seen on graceful restarts in the middle of an order), and the STOPPING
 * callback must not free the store the check uses.  So stopping raises
 * drive_quit (no further order starts) and waits for drive_busy to drop.
 */
static int drive_busy;
static int drive_quit;

/* the core cancels what is in flight 60 s after being told to stop */
#define AUTOTLS_QUIESCE_MAX  apr_time_from_sec(90)

static void
autotls_drive_quiesce(void)
{
    apr_time_t until = apr_time_now() + AUTOTLS_QUIESCE_MAX;

    __atomic_store_n(&drive_quit, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&drive_busy, __ATOMIC_SEQ_CST)
           && apr_time_now() < until)
    {
        apr_sleep(apr_time_from_msec(50));
    }
}

static apr_status_t
autotls_drive_child_cleanup(void *data)
{
    autotls_drive_quiesce();
    return APR_SUCCESS;
}

void
autotls_drive_child_init(apr_pool_t *pchild)
{
    apr_pool_cleanup_register(pchild, NULL, autotls_drive_child_cleanup,
                              apr_pool_cleanup_null);
}

static int
autotls_drive_stopping(void *ctx)
{
    int state = AP_MPMQ_RUNNING;

    (void) ctx;
    return __atomic_load_n(&drive_quit, __ATOMIC_SEQ_CST)
           || ap_mpm_query(AP_MPMQ_MPM_STATE, &state) != APR_SUCCESS
           || state == AP_MPMQ_STOPPING;
}

/*
 * Asked by the core whenever its loop waits (at least twice a second).
 * mod_watchdog runs autotls_watch_cb in this same thread, so while a
 * check runs (a slow dns hook can hold it for minutes) this is where
 * certificates that others deployed get published.
 */
static int
autotls_drive_poll(void *ctx)
{
    static apr_time_t last;     /* the watchdog thread only */
    apr_time_t now = apr_time_now();

    if (now - last >= AUTOTLS_WATCH_INTERVAL) {
        last = now;
        autotls_generation_publish(drive_store);
    }
    /* cluster (AutoTLSStore redis://): other nodes' deploys and challenges */
    autotls_cluster_tick(1);
    return autotls_drive_stopping(ctx);
}

/* The scheduler's dynamic home (names registered at runtime, on-demand
 * names): its owner's issuer; challenges answered through the store as
 * for every host. */
static const atls_issuer_t *
autotls_drive_home(void *ctx, const char *home, const atls_challenge_ops_t **ops)
{
    autotls_srv_conf_t *h = autotls_dyn_home(home);

    return h != NULL && h->owner != NULL ? h->owner->issuer : NULL;
}

static atls_loop_t *drive_loop;

static int
autotls_drive_publish_wait(void *ctx, atls_sched_op_t *op, const atls_challenge_t *c,
                           char *why, size_t whylen)
{
    return autotls_cluster_publish_wait(atls_loop_sched(drive_loop), op, c, why, whylen);
}

/* The scheduler of this watchdog, made at its first run: every host (with
 * no managed host it still sends the expiry alerts of the certificates
 * discovered and delivers queued notifications) and the registry's names
 * of our dynamic homes. */
static int
autotls_drive_loop_open(apr_pool_t *ptemp)
{
    static atls_challenge_ops_t ops;
    int i, n = autotls_global.hosts ? autotls_global.hosts->nelts : 0;
    atls_job_conf_t *confs;
    atls_loop_conf_t lc;
    atls_sched_opts_t so;
    char err[512];

    if (drive_loop != NULL) {
        return 0;
    }
    confs = apr_pcalloc(ptemp, sizeof(*confs) * (size_t) (n + 1));
    for (i = 0; i < n; i++) {
        autotls_srv_conf_t *sc = autotls_host((size_t) i);

        confs[i].names = sc->names;
        confs[i].n_names = sc->n_names;
        confs[i].issuer = sc->issuer;      /* EAB included: never in meta.json */
    }
    ops.setup = autotls_chal_setup;
    ops.teardown = autotls_chal_teardown;
    ops.ctx = drive_store;
    memset(&lc, 0, sizeof(lc));
    lc.default_ops = &ops;
    lc.done = autotls_drive_done;
    lc.stopping = autotls_drive_poll;
    if (autotls_global.redis != NULL) {
        /* cluster: the CA validates once every live node loaded the answer */
        lc.publish_wait = autotls_drive_publish_wait;
        lc.publish_cancel = autotls_cluster_publish_cancel;
        lc.wake = autotls_cluster_wake;
    }
    memset(&so, 0, sizeof(so));
    so.max_parallel = (size_t) autotls_global.max_parallel;
    so.ari = 1;
    so.slice_ms = AUTOTLS_PASS_SLICE_MS;
    so.events = drive_events;
    so.policy = autotls_global.policy;
    so.on_demand = drive_gate;
    if (autotls_global.homes != NULL && autotls_global.homes->nelts > 0) {
        lc.home = autotls_drive_home;
        lc.tick = autotls_drive_tick;
        drive_names_gen = atls_names_generation(drive_store);
        drive_synced_gen = autotls_generation_get();
    }
    drive_loop = atls_loop_new(drive_store, confs, (size_t) n, &so, &lc,
                               err, sizeof(err));
    if (drive_loop == NULL) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, autotls_global.main_server,
                     "autotls: cannot set up the scheduler: %s", err);
        return -1;
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, autotls_global.main_server,
                 "autotls: scheduler of pid %ld set up for %d host(s); kept until "
                 "the watchdog stops", (long) getpid(), n);
    return 0;
}

/* One run of the scheduler: the registry's changes first, a pass when
 * `pass` (each AutoTLSCheckInterval, a child's on-demand request), then
 * what is in flight until it is idle (or the child stops); nothing when
 * nothing is due.  Everything that touches the scheduler is inside
 * drive_busy, so that the watchdog's stop never frees it under a run. */
static int
autotls_drive_run(apr_pool_t *ptemp, int pass)
{
    int ran = 0;

    /* busy before looking at quit: a quiesce either sees busy or is seen */
    __atomic_store_n(&drive_busy, 1, __ATOMIC_SEQ_CST);
    if (autotls_drive_stopping(NULL) || autotls_drive_loop_open(ptemp) != 0
        || atls_loop_stopped(drive_loop)) {
        goto out;
    }
    /* cluster: while Redis cannot be reached, orders wait (the mirror serves) */
    if (autotls_cluster_paused()) {
        goto out;
    }
    if (autotls_drive_names_moved()) {
        drive_synced_gen = autotls_generation_get();
        autotls_drive_names_sync(atls_loop_sched(drive_loop));
    }
    if (pass) {
        atls_loop_check(drive_loop);
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, autotls_global.main_server,
                     "autotls: pass %lu of the scheduler of pid %ld",
                     atls_loop_passes(drive_loop), (long) getpid());
    }
    if (atls_loop_pending(drive_loop)) {
        atls_loop_run(drive_loop, (long) apr_time_as_msec(autotls_global.check_interval));
        ran = 1;
    }
out:
    __atomic_store_n(&drive_busy, 0, __ATOMIC_SEQ_CST);
    return ran;
}

/* The notification settings, the policy and the inventory, in the store. */
static void
autotls_drive_settings_save(server_rec *s)
{
    char err[256];

    if (atls_store_save_notify_conf(drive_store, &autotls_global.notify,
                                    err, sizeof(err)) != ATLS_STORE_OK) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "autotls: cannot save the notification settings: %s", err);
    }
    if (atls_store_save_policy(drive_store, autotls_global.policy,
                               err, sizeof(err)) != ATLS_STORE_OK) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "autotls: cannot save the policy: %s", err);
    }
    if (atls_store_inventory_sync(drive_store, "apache", autotls_global.inventory,
                                  autotls_global.n_inventory, err, sizeof(err)) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "autotls: cannot record the certificates found in the "
                     "configuration: %s", err);
    }
}

/*
 * The events of this server: emitted by the scheduler in this child, as
 * the children's user, with this child's pid in the audit trail.  The
 * settings and the policy go to the store, so that the CLI on the same
 * store queues its events for the same sinks and honours the same policy;
 * the certificates found at start join the store's inventory.  A failure
 * here is logged and the driver goes on: certificates matter more.
 */
static void
autotls_drive_events_open(server_rec *s)
{
    atls_actor_t actor;

    atls_actor_self(&actor, "server", AUTOTLS_SOFTWARE);
    drive_events = atls_events_new(drive_store, &actor, &autotls_global.notify);
    if (drive_events == NULL) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "autotls: out of memory for events");
    }
    /* a cluster node saves them once Redis answers (autotls_watch_cb) */
    if (autotls_global.redis == NULL) {
        autotls_drive_settings_save(s);
    }
}

static int
autotls_drive_open(server_rec *s)
{
    char err[256];
    int n = autotls_global.hosts ? autotls_global.hosts->nelts : 0;

    if (drive_store != NULL) {
        return 0;
    }
    drive_store = autotls_global.redis != NULL
                  ? autotls_cluster_open(s)          /* logs its errors */
                  : atls_store_fs_open(autotls_global.store_dir, err, sizeof(err));
    if (drive_store == NULL && autotls_global.redis != NULL) {
        return -1;
    }
    if (drive_store == NULL) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "autotls: cannot open store %s: %s",
                     autotls_global.store_dir, err);
        return -1;
    }
    drive_last_error = calloc((size_t) n + 1, sizeof(char *));
    if (drive_last_error == NULL) {
        abort();
    }
    autotls_drive_events_open(s);
    /* budget windows in the store: a restart does not reset them */
    drive_gate = autotls_ondemand_gate_new(autotls_global.main_server->process->pconf,
                                           drive_store);
    return 0;
}

static apr_status_t
autotls_drive_cb(int state, void *data, apr_pool_t *ptemp)
{
    server_rec *s = autotls_global.main_server;
    int i, n = autotls_global.hosts ? autotls_global.hosts->nelts : 0;

    switch (state) {
    case AP_WATCHDOG_STATE_STARTING:
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     "autotls: renewal driver starting in pid %ld", (long) getpid());
        /* mod_watchdog runs the first RUNNING only one interval after
         * start: the first pass is done here, so that a new server gets
         * its certificates at once */
        if (autotls_drive_open(s) == 0) {
            (void) autotls_drive_run(ptemp, 1);
            autotls_generation_publish(drive_store);
        }
        return APR_SUCCESS;

    case AP_WATCHDOG_STATE_RUNNING:
        if (autotls_drive_open(s) != 0) {
            return APR_SUCCESS;
        }
        (void) autotls_drive_run(ptemp, 1);
        /* also picks up certificates deployed by the CLI (autotls_watch_cb
         * does between checks) */
        autotls_generation_publish(drive_store);
        return APR_SUCCESS;

    case AP_WATCHDOG_STATE_STOPPING:
        /* mod_watchdog may call this from the exiting thread while a
         * run still goes on in the watchdog's */
        autotls_drive_quiesce();
        if (drive_loop != NULL) {
            atls_loop_free(drive_loop);   /* before the store it uses */
            drive_loop = NULL;
            ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                         "autotls: scheduler of pid %ld freed", (long) getpid());
        }
        if (drive_events != NULL) {
            atls_events_free(drive_events);
            drive_events = NULL;
        }
        atls_od_free(drive_gate);
        drive_gate = NULL;
        if (drive_store != NULL) {
            atls_store_close(drive_store);
            drive_store = NULL;
        }
        autotls_cluster_close();
        if (drive_last_error != NULL) {
            for (i = 0; i < n; i++) {
                free(drive_last_error[i]);
            }
            free(drive_last_error);
            drive_last_error = NULL;
        }
        return APR_SUCCESS;
    }
    return APR_SUCCESS;
}

/* Between checks, every AUTOTLS_WATCH_INTERVAL: a certificate the CLI or
 * another server deployed into the store is served from the next handshake
 * on, whatever AutoTLSCheckInterval is; children's on-demand requests and
 * names registered or removed are taken; the scheduler's timer (a retry,
 * a notification's next delivery) is run when it fell due.  Runs in the
 * watchdog thread, after autotls_drive_cb opened the store; one small
 * file read when nothing changed.  A long run holds it back: each deploy
 * of a run publishes. */
static apr_status_t
autotls_watch_cb(int state, void *data, apr_pool_t *ptemp)
{
    int pass, resumed;

    if (state != AP_WATCHDOG_STATE_RUNNING || drive_store == NULL) {
        return APR_SUCCESS;
    }
    /* a child wrote an on-demand request and holds a handshake for it: a
     * pass now, which takes the requests, not at the next
     * AutoTLSCheckInterval; so does a cluster whose Redis came back */
    resumed = autotls_cluster_resumed();
    if (resumed) {
        autotls_drive_settings_save(autotls_global.main_server);
    }
    pass = autotls_odwait_requested() || drive_woken || resumed;
    drive_woken = 0;
    autotls_generation_publish(drive_store);
    if (autotls_drive_run(ptemp, pass)) {
        autotls_generation_publish(drive_store);
    }
    return APR_SUCCESS;
}

apr_status_t
autotls_drive_start(apr_pool_t *p, server_rec *s)
{
    APR_OPTIONAL_FN_TYPE(ap_watchdog_get_instance) *get_instance;
    APR_OPTIONAL_FN_TYPE(ap_watchdog_register_callback) *register_cb;
    ap_watchdog_t *wd;
    apr_status_t rv;

    get_instance = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_get_instance);
    register_cb = APR_RETRIEVE_OPTIONAL_FN(ap_watchdog_register_callback);
    if (get_instance == NULL || register_cb == NULL) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s,
                     "AutoTLS needs mod_watchdog to be loaded");
        return APR_EGENERAL;
    }
    /* parent=0: runs in a child, with the child's user; singleton=1: in
     * exactly one child at a time */
    rv = get_instance(&wd, AUTOTLS_WATCHDOG_NAME, 0, 1, p);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "autotls: watchdog instance");
        return rv;
    }
    rv = register_cb(wd, autotls_global.check_interval, &autotls_global,
                     autotls_drive_cb);
    if (rv == APR_SUCCESS) {
        rv = register_cb(wd, AUTOTLS_WATCH_INTERVAL, &autotls_global,
                         autotls_watch_cb);
    }
    if (rv == APR_SUCCESS && autotls_global.redis != NULL) {
        /* cluster: other nodes' deploys and challenges, the heartbeat */
        rv = register_cb(wd, AUTOTLS_CLUSTER_TICK, &autotls_global,
                         autotls_cluster_watch_cb);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "autotls: watchdog callback");
    }
    return rv;
}
