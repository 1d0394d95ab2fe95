/*
 * The renewal driver: one mod_watchdog singleton thread (in whichever
 * child holds the watchdog mutex) looks at every managed certificate at
 * start and then each AutoTLSCheckInterval, and runs every due order at
 * once (up to AutoTLSMaxParallel) with the core's concurrent driver.
 * Before deciding what is due it asks the CA for renewal information (ARI)
 * about every valid certificate whose next ARI check has come, so that an
 * early-renewal window is acted on in the same check.  All job state is in
 * the store, so a restart or a watchdog that moved to another child resumes
 * from there.  Challenges are published in the store, where every child can
 * read them.
 */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/crypto.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "apr_strings.h"

#include "mod_watchdog.h"
#include "atls_b64.h"
#include "atls_job.h"
#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

#define AUTOTLS_WATCHDOG_NAME "_autotls_"

/* After a failed ARI request the core records nothing (the next check
 * would ask again at once): the module waits this long per certificate. */
#define AUTOTLS_ARI_RETRY 3600

typedef struct {
    autotls_srv_conf_t *sc;
    atls_store_t       *st;
} autotls_chal_ctx_t;

/* child-local: only the watchdog thread touches these */
static atls_store_t *drive_store;
static char        **drive_last_error;   /* per host, to log a problem once */
static time_t       *drive_ari_failed;   /* per host: last failed ARI request */

uint64_t
autotls_generation_get(void)
{
    if (autotls_global.generation == NULL) {
        return 0;
    }
    return __atomic_load_n(autotls_global.generation, __ATOMIC_ACQUIRE);
}

static void
autotls_generation_publish(atls_store_t *st)
{
    static int failing;   /* the watchdog thread only */
    uint64_t g;
    char err[256];

    if (autotls_global.generation == NULL) {
        return;
    }
    /* read every 500 ms (autotls_watch_cb): a broken file is said once */
    if (atls_store_read_generation(st, &g, err, sizeof(err)) != ATLS_STORE_OK) {
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

static int
autotls_chal_setup(void *ctx, const atls_challenge_t *c, char *why, size_t whylen)
{
    autotls_chal_ctx_t *cc = ctx;
    char path[512];
    char *pem;
    int rc;

    switch (c->type) {
    case ATLS_CHAL_HTTP01:
        if (c->token == NULL || !atls_b64url_is_token(c->token, strlen(c->token))) {
            snprintf(why, whylen, "bad http-01 token");
            return -1;
        }
        snprintf(path, sizeof(path), "challenges/http-01/%s", c->token);
        return cc->st->ops->put(cc->st, path, c->key_authz, strlen(c->key_authz),
                                0, why, whylen) == ATLS_STORE_OK ? 0 : -1;
    case ATLS_CHAL_TLSALPN01:
        if (!autotls_name_ok(c->identifier)) {
            snprintf(why, whylen, "bad tls-alpn-01 identifier");
            return -1;
        }
        pem = autotls_tls_alpn_pem(c, why, whylen);
        if (pem == NULL) {
            return -1;
        }
        snprintf(path, sizeof(path), "challenges/tls-alpn-01/%s", c->identifier);
        rc = cc->st->ops->put(cc->st, path, pem, strlen(pem), 1, why, whylen);
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
        return rc == ATLS_STORE_OK ? 0 : -1;
    case ATLS_CHAL_DNS01:
        if (cc->sc->issuer->dns_hook == NULL) {
            snprintf(why, whylen, "dns-01 needs AutoTLSDnsHook");
            return -1;
        }
        return atls_dns_hook_run(cc->sc->issuer->dns_hook, "setup", c->dns_name,
                                 c->dns_value, why, whylen);
    }
    snprintf(why, whylen, "unsupported challenge type");
    return -1;
}

static void
autotls_chal_teardown(void *ctx, const atls_challenge_t *c)
{
    autotls_chal_ctx_t *cc = ctx;
    char path[512], why[256];

    switch (c->type) {
    case ATLS_CHAL_HTTP01:
        if (c->token != NULL && atls_b64url_is_token(c->token, strlen(c->token))) {
            snprintf(path, sizeof(path), "challenges/http-01/%s", c->token);
            (void) cc->st->ops->del(cc->st, path, why, sizeof(why));
        }
        break;
    case ATLS_CHAL_TLSALPN01:
        if (autotls_name_ok(c->identifier)) {
            snprintf(path, sizeof(path), "challenges/tls-alpn-01/%s", c->identifier);
            (void) cc->st->ops->del(cc->st, path, why, sizeof(why));
        }
        break;
    case ATLS_CHAL_DNS01:
        if (cc->sc->issuer->dns_hook != NULL
            && atls_dns_hook_run(cc->sc->issuer->dns_hook, "teardown", c->dns_name,
                                 c->dns_value, why, sizeof(why)) != 0) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, autotls_global.main_server,
                         "autotls: dns-01 teardown for %s: %s", c->dns_name, why);
        }
        break;
    }
}

/* ---- one look at one certificate ------------------------------------- */

static const char *
autotls_join(apr_pool_t *p, const char **names, size_t n)
{
    const char *out = "";
    size_t i;

    for (i = 0; i < n; i++) {
        out = apr_pstrcat(p, out, i ? " " : "", names[i], NULL);
    }
    return out;
}

static void
autotls_log_once(int i, int level, server_rec *s, const char *msg)
{
    if (drive_last_error[i] != NULL && strcmp(drive_last_error[i], msg) == 0) {
        return;
    }
    free(drive_last_error[i]);
    drive_last_error[i] = atls_strdup(msg);
    ap_log_error(APLOG_MARK, level, 0, s, "%s", msg);
}

/* ---- renewal information (ARI) ------------------------------------- */

/* Refreshes meta's ARI state when the core says it is due (and no failed
 * request for this host is younger than AUTOTLS_ARI_RETRY), then copies
 * what the core recorded -- a renew_at pulled forward into the CA's
 * window, the next check time -- into meta.  A failure is logged once,
 * at warn, and never stops renewal by the normal schedule. */
static void
autotls_drive_ari(int i, autotls_srv_conf_t *sc, atls_cert_meta_t *meta, time_t now)
{
    atls_cert_meta_t fresh;
    char err[1024], a[32], b[32], c[32];

    if (!atls_job_ari_due(meta, now)
        || (drive_ari_failed[i] != 0 && now - drive_ari_failed[i] < AUTOTLS_ARI_RETRY)) {
        return;
    }
    if (atls_job_ari_refresh_blocking(drive_store, meta->id, err, sizeof(err)) != 0) {
        drive_ari_failed[i] = now;
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, sc->s,
                     "autotls: %s: cannot get renewal information (ARI) from the CA, "
                     "renewing by the normal schedule; next try in %d minutes: %s",
                     meta->id, AUTOTLS_ARI_RETRY / 60, err);
        return;
    }
    drive_ari_failed[i] = 0;
    memset(&fresh, 0, sizeof(fresh));
    if (atls_store_load_meta(drive_store, meta->id, &fresh, err, sizeof(err))
        != ATLS_STORE_OK) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, sc->s,
                     "autotls: %s: cannot re-read job state after the ARI request: %s",
                     meta->id, err);
        atls_cert_meta_free(&fresh);
        return;
    }
    /* only what ARI may change: meta carries the configured issuer */
    meta->renew_at = fresh.renew_at;
    meta->ari_next_check = fresh.ari_next_check;
    meta->ari_window_start = fresh.ari_window_start;
    meta->ari_window_end = fresh.ari_window_end;
    atls_cert_meta_free(&fresh);

    atls_rfc3339_format(meta->ari_next_check, c, sizeof(c));
    if (meta->ari_window_end == 0) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, sc->s,
                     "autotls: %s: renewal information (ARI): none at this CA; "
                     "asking again from %s", meta->id, c);
    } else {
        atls_rfc3339_format(meta->ari_window_start, a, sizeof(a));
        atls_rfc3339_format(meta->ari_window_end, b, sizeof(b));
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, sc->s,
                     "autotls: %s: renewal information (ARI): window %s to %s; "
                     "asking again from %s", meta->id, a, b, c);
    }
}

/* What the core's concurrent driver reports back to, per check. */
typedef struct {
    autotls_srv_conf_t **sc;        /* per due certificate: its host */
    int                 *host;      /* ... and that host's index */
    atls_cert_meta_t   **metas;
} autotls_batch_t;

static void
autotls_drive_done(void *ctx, size_t k, int rc, const char *err)
{
    autotls_batch_t *b = ctx;
    autotls_srv_conf_t *sc = b->sc[k];
    int i = b->host[k];

    free(drive_last_error[i]);
    drive_last_error[i] = NULL;
    if (rc == 0) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, sc->s,
                     "autotls: %s: new certificate deployed; served from the next "
                     "handshake on, no restart needed", b->metas[k]->id);
    } else {
        /* the core already logged the CA's problem type and detail at
         * error level, once for this attempt; this line only closes it */
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, sc->s,
                     "autotls: %s: certificate order failed: %s", b->metas[k]->id,
                     err != NULL && err[0] ? err : "(no detail)");
    }
    /* publish at once, even a partial success (one of two key types), so
     * that this name is served while the other orders still run */
    autotls_generation_publish(drive_store);
}

/*
 * A check runs whole orders (atls_job_run_many returns when the jobs it
 * started have ended), so the child may be told to stop while the driver
 * thread is inside one.  The child must not exit under it: exit() runs
 * OpenSSL's atexit cleanup while the thread still signs requests (SIGSEGV
 * seen on graceful restarts in the middle of an order), and the STOPPING
 * callback must not free the store the check uses.  So stopping raises
 * drive_quit (no further job starts) and waits for drive_busy to drop.
 */
static int drive_busy;
static int drive_quit;

#define AUTOTLS_QUIESCE_MAX  apr_time_from_sec(90)   /* one order, at worst */

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

/* One check: every due certificate, ordered concurrently. */
static void
autotls_drive_check(apr_pool_t *ptemp)
{
    atls_store_t *st = drive_store;
    int n = autotls_global.hosts ? autotls_global.hosts->nelts : 0;
    atls_cert_meta_t *metas, **due;
    atls_challenge_ops_t *ops;
    const atls_challenge_ops_t **ops_v;
    autotls_chal_ctx_t *cc;
    autotls_batch_t b;
    atls_job_many_opts_t mo;
    char err[1024];
    time_t now = time(NULL);
    int i, k = 0, force;

    if (n == 0) {
        return;
    }
    metas = apr_pcalloc(ptemp, sizeof(*metas) * (size_t) n);
    due = apr_pcalloc(ptemp, sizeof(*due) * (size_t) n);
    ops = apr_pcalloc(ptemp, sizeof(*ops) * (size_t) n);
    ops_v = apr_pcalloc(ptemp, sizeof(*ops_v) * (size_t) n);
    cc = apr_pcalloc(ptemp, sizeof(*cc) * (size_t) n);
    b.sc = apr_pcalloc(ptemp, sizeof(*b.sc) * (size_t) n);
    b.host = apr_pcalloc(ptemp, sizeof(*b.host) * (size_t) n);
    b.metas = due;

    for (i = 0; i < n; i++) {
        autotls_srv_conf_t *sc = APR_ARRAY_IDX(autotls_global.hosts, i,
                                               autotls_srv_conf_t *);
        atls_cert_meta_t *meta = &metas[k];

        memset(meta, 0, sizeof(*meta));
        if (atls_job_ensure(st, sc->names, sc->n_names, sc->issuer, meta,
                            err, sizeof(err)) != 0) {
            autotls_log_once(i, APLOG_ERR, sc->s,
                             apr_psprintf(ptemp, "autotls: %s: cannot set up the job: %s",
                                          sc->cert_id, err));
            atls_cert_meta_free(meta);
            continue;
        }
        force = atls_store_take_request(st, meta->id) == 1;
        /* ARI can only pull renewal forward: pointless for a certificate
         * that is due anyway */
        if (!force && !atls_job_due(st, meta, now, 0) && !autotls_drive_stopping(NULL)) {
            autotls_drive_ari(i, sc, meta, now);
            /* a window in the past sets renew_at to the moment the answer
             * arrived, which must count as due in this very check */
            now = time(NULL);
        }
        if (!atls_job_due(st, meta, now, force)) {
            atls_cert_meta_free(meta);
            continue;
        }

        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, sc->s,
                     "autotls: %s: %s (names %s, CA %s, %s)", meta->id,
                     force ? "renewal requested by the operator"
                           : meta->last_success == 0 ? "obtaining a certificate"
                                                     : "renewing the certificate",
                     autotls_join(ptemp, sc->names, sc->n_names),
                     sc->issuer->directory,
                     atls_challenge_type_name(sc->issuer->challenge));

        if (sc->issuer->eab_kid != NULL && meta->issuer.eab_kid == NULL) {
            /* EAB credentials are never persisted in meta.json: hand them in */
            meta->issuer.eab_kid = atls_strdup(sc->issuer->eab_kid);
            meta->issuer.eab_hmac = atls_strdup(sc->issuer->eab_hmac);
        }
        cc[k].sc = sc;
        cc[k].st = st;
        ops[k].setup = autotls_chal_setup;
        ops[k].teardown = autotls_chal_teardown;
        ops[k].ctx = &cc[k];
        ops_v[k] = &ops[k];
        due[k] = meta;
        b.sc[k] = sc;
        b.host[k] = i;
        k++;
    }
    if (k == 0) {
        return;
    }

    /* busy before looking at quit: a quiesce either sees busy or is seen */
    __atomic_store_n(&drive_busy, 1, __ATOMIC_SEQ_CST);
    if (autotls_drive_stopping(NULL)) {
        __atomic_store_n(&drive_busy, 0, __ATOMIC_SEQ_CST);
        for (i = 0; i < k; i++) {
            atls_cert_meta_free(due[i]);
        }
        return;
    }

    memset(&mo, 0, sizeof(mo));
    mo.max_parallel = (size_t) autotls_global.max_parallel;
    mo.ops_v = ops_v;
    mo.done = autotls_drive_done;
    mo.stopping = autotls_drive_stopping;
    mo.ctx = &b;
    if (k > 1) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, autotls_global.main_server,
                     "autotls: %d certificate order(s) due, up to %d at once",
                     k, autotls_global.max_parallel);
    }
    (void) atls_job_run_many(st, due, (size_t) k, &mo, NULL, err, sizeof(err));
    __atomic_store_n(&drive_busy, 0, __ATOMIC_SEQ_CST);
    for (i = 0; i < k; i++) {
        atls_cert_meta_free(due[i]);
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
    drive_store = atls_store_fs_open(autotls_global.store_dir, err, sizeof(err));
    if (drive_store == NULL) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "autotls: cannot open store %s: %s",
                     autotls_global.store_dir, err);
        return -1;
    }
    drive_last_error = calloc((size_t) n + 1, sizeof(char *));
    drive_ari_failed = calloc((size_t) n + 1, sizeof(time_t));
    if (drive_last_error == NULL || drive_ari_failed == NULL) {
        abort();
    }
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
         * start: the first check is done here, so that a new server gets
         * its certificates at once */
        if (autotls_drive_open(s) == 0) {
            autotls_drive_check(ptemp);
            autotls_generation_publish(drive_store);
        }
        return APR_SUCCESS;

    case AP_WATCHDOG_STATE_RUNNING:
        if (autotls_drive_open(s) != 0) {
            return APR_SUCCESS;
        }
        autotls_drive_check(ptemp);
        /* also picks up certificates deployed by the CLI (autotls_watch_cb
         * does between checks) */
        autotls_generation_publish(drive_store);
        return APR_SUCCESS;

    case AP_WATCHDOG_STATE_STOPPING:
        /* mod_watchdog may call this from the exiting thread while a
         * check still runs in the watchdog's */
        autotls_drive_quiesce();
        if (drive_store != NULL) {
            atls_store_close(drive_store);
            drive_store = NULL;
        }
        if (drive_last_error != NULL) {
            for (i = 0; i < n; i++) {
                free(drive_last_error[i]);
            }
            free(drive_last_error);
            drive_last_error = NULL;
        }
        free(drive_ari_failed);
        drive_ari_failed = NULL;
        return APR_SUCCESS;
    }
    return APR_SUCCESS;
}

/* Between checks, every AUTOTLS_WATCH_INTERVAL: a certificate the CLI or
 * another server deployed into the store is served from the next handshake
 * on, whatever AutoTLSCheckInterval is.  Runs in the watchdog thread, after
 * autotls_drive_cb opened the store; one small file read when nothing
 * changed.  A long check holds it back: each deploy of a check publishes. */
static apr_status_t
autotls_watch_cb(int state, void *data, apr_pool_t *ptemp)
{
    if (state == AP_WATCHDOG_STATE_RUNNING && drive_store != NULL) {
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
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, "autotls: watchdog callback");
    }
    return rv;
}
