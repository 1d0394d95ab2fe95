/*
 * AutoTLSStore redis://...: this server as a node of a cluster sharing one
 * Redis store (issue 12; common/atls_mirror.h).
 *
 * Children change nothing: they serve from the node's mirror directory,
 * which is the filesystem store they already read (certificates,
 * challenges, the status page).  The watchdog's driver runs the scheduler
 * on the mirror's store (atls_mirror_store), whose writes go to Redis and
 * then to the mirror.  From the watchdog thread this file keeps the mirror
 * up to Redis: a sync at start and after each reconnection, the
 * announcements of other nodes' deploys (the subscriber, looked at every
 * watchdog slice, 100 ms), the heartbeat in the member registry, and the
 * challenges other nodes publish (written into the mirror's challenges/).
 * After a pull the store generation is published at once, so children
 * load the new certificate well within a second.  Challenges this node
 * publishes wait (the scheduler's publish_wait) until every live node
 * acked them, polled every 100 ms by the driver's loop, whose waits also
 * end when the subscriber has something (autotls_cluster_wake).
 *
 * While Redis cannot be reached, the node serves what its mirror holds and
 * starts no order; it tries again with a backoff (1 s doubling to 5 s)
 * and runs a check as soon as Redis answers.
 */
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <poll.h>
#include <pthread.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "unixd.h"
#include "apr_strings.h"

#include "mod_watchdog.h"
#include "atls_mirror.h"
#include "atls_sched.h"
#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

#define CLUSTER_BACKOFF_MIN   apr_time_from_sec(1)
/* back within a heartbeat of Redis: a node out of the member registry that
 * the CA still reaches fails the http-01 challenges other nodes publish */
#define CLUSTER_BACKOFF_MAX   apr_time_from_msec(ATLS_MIRROR_MEMBER_TTL_MS / 3)
#define CLUSTER_HEARTBEAT     apr_time_from_msec(ATLS_MIRROR_MEMBER_TTL_MS / 3)
#define CLUSTER_ACK_POLL_MS   100
/* a step of the registry of names' sync, as the scheduler's passes: the
 * watchdog thread also reads the subscriber and polls acks in between */
#define CLUSTER_NAMES_SLICE_MS  50

/* ---- the directive ------------------------------------------------------ */

static apr_status_t
cluster_conf_cleanup(void *data)
{
    atls_redis_conf_free(data);
    return APR_SUCCESS;
}

/* AutoTLSStore DIR, or AutoTLSStore redis://... [tls] [ca_file=F]
 * key_file=F [prefix=P] [mirror=DIR] [node=ID].  The URL may hold a
 * password: no message repeats it. */
const char *
autotls_set_store(cmd_parms *cmd, void *dc, int argc, char *const argv[])
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    atls_redis_conf_t *c;
    char why[512];

    if (err != NULL) {
        return err;
    }
    if (argc < 1) {
        return "AutoTLSStore: a directory or a redis:// URL is required";
    }
    if (strncmp(argv[0], "redis://", 8) != 0 && strncmp(argv[0], "rediss://", 9) != 0) {
        if (ap_strstr_c(argv[0], "://") != NULL) {
            return "AutoTLSStore: only redis:// and rediss:// URLs are stores";
        }
        if (argc > 1) {
            return apr_psprintf(cmd->pool, "AutoTLSStore: '%s': options are for a "
                                "redis:// URL only", argv[1]);
        }
        return autotls_set_store_dir(cmd, dc, argv[0]);
    }
    c = apr_pcalloc(cmd->pool, sizeof(*c));
    if (atls_redis_conf_parse(argv[0], argv + 1, (size_t) argc - 1, c,
                              why, sizeof(why)) != 0) {
        return apr_psprintf(cmd->pool, "AutoTLSStore: %s", why);
    }
    apr_pool_cleanup_register(cmd->pool, c, cluster_conf_cleanup, apr_pool_cleanup_null);
    if (c->key_file == NULL) {
        return "AutoTLSStore: key_file=FILE is required with Redis (private keys are "
               "encrypted at rest with it; make one with "
               "'(umask 077; openssl rand -hex 32 > FILE)')";
    }
    autotls_config_get(cmd->server)->redis = c;
    return NULL;
}

/* The key file must be good now (a typo is the operator's to fix before
 * a start, not a Redis outage), and readable by the children's user, who
 * runs the driver (the file admits no group or other permission, so that
 * user must own it when Apache starts as root). */
static int
cluster_check_key(server_rec *s, const atls_redis_conf_t *c)
{
    atls_redis_key_t key;
    struct stat sb;
    char err[512];

    if (atls_redis_key_load(c->key_file, &key, err, sizeof(err)) != 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, "AutoTLSStore key_file: %s", err);
        return 1;
    }
    atls_redis_key_wipe(&key);
    if (geteuid() == 0 && stat(c->key_file, &sb) == 0
        && sb.st_uid != ap_unixd_config.user_id) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s,
                     "AutoTLSStore key_file %s: owned by uid %ld, but the renewal "
                     "driver runs as User %s (uid %ld) and must read it: chown it "
                     "to that user (mode 0600 or 0400)", c->key_file,
                     (long) sb.st_uid, ap_unixd_config.user_name,
                     (long) ap_unixd_config.user_id);
        return 1;
    }
    return 0;
}

/* check_config (also `apache2 -t`): the key file.  Names registered at
 * runtime and names on demand work: the registry is in Redis, each node's
 * mirror holds the copy its children read (atls_mirror.h), the admin API
 * and the watchdog's on-demand gate write to Redis, and children's
 * on-demand requests stay in the node's mirror, where its watchdog reads
 * them (autotls_ondemand_gate_new). */
int
autotls_cluster_check(apr_pool_t *p, server_rec *base)
{
    const atls_redis_conf_t *c = autotls_config_get(base)->redis;

    if (c == NULL) {
        return OK;
    }
    return cluster_check_key(base, c) ? !OK : OK;
}

/* ---- the node: mirror, subscriber, heartbeat (watchdog thread) ---------- */

/* Child-local.  Only the watchdog thread runs the node; cl_lock keeps
 * autotls_cluster_close and the scheduler's stop (mod_watchdog may call
 * them from the exiting thread) from freeing the mirror or a wait under a
 * tick.  Recursive: a tick reports acks to the scheduler, which may
 * publish and wait again from there. */
static pthread_mutex_t cl_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static atls_mirror_t  *cl_mirror;
static char           *cl_where;          /* redis://host:port/db, no password */
static int             cl_up;             /* synced and joined; orders may run */
static int             cl_synced_early;   /* synced before the subscription held */
static int             cl_resumed;        /* came (back) up: a check now */
static apr_time_t      cl_retry_at;
static apr_interval_time_t cl_backoff;
static apr_time_t      cl_join_at;
static char           *cl_last_error;     /* to say a repeated failure once */
static apr_time_t      cl_tick_at;        /* ticks come from two callers */
static apr_time_t      cl_renew_at;
static apr_time_t      cl_names_at;       /* the registry's next check */

static void
cluster_down(const char *what, const char *err)
{
    server_rec *s = autotls_global.main_server;
    size_t n = strlen(cl_where);
    char msg[600];

    /* the client's errors start with "redis <where>: ", said once here */
    if (strncmp(err, "redis ", 6) == 0 && strncmp(err + 6, cl_where, n) == 0
        && strncmp(err + 6 + n, ": ", 2) == 0) {
        err += 6 + n + 2;
    }
    snprintf(msg, sizeof(msg), "%s: %s", what, err);

    cl_up = 0;
    cl_backoff = cl_backoff == 0 ? CLUSTER_BACKOFF_MIN
                 : cl_backoff * 2 > CLUSTER_BACKOFF_MAX ? CLUSTER_BACKOFF_MAX
                 : cl_backoff * 2;
    cl_retry_at = apr_time_now() + cl_backoff;
    if (cl_last_error != NULL && strcmp(cl_last_error, msg) == 0) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "AutoTLSStore %s: %s (again)",
                     cl_where, msg);
        return;
    }
    free(cl_last_error);
    cl_last_error = atls_strdup(msg);
    ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                 "AutoTLSStore %s: %s; serving from the mirror %s, no order starts "
                 "until Redis answers (tried again in %lds, then less often)",
                 cl_where, msg, autotls_global.store_dir,
                 (long) apr_time_sec(cl_backoff));
}

/* Subscribe, sync (announcements missed meanwhile), join the members. */
static void
cluster_connect(void)
{
    char err[512];
    int pulled, pushed = 0;

    if (atls_mirror_listen(cl_mirror, err, sizeof(err)) != 0) {
        cluster_down("subscribe", err);
        return;
    }
    pulled = atls_mirror_sync(cl_mirror, &pushed, err, sizeof(err));
    if (pulled < 0) {
        cluster_down("sync", err);
        return;
    }
    cl_synced_early = !atls_mirror_listening(cl_mirror);
    if (atls_mirror_join(cl_mirror, err, sizeof(err)) != 0) {
        cluster_down("join", err);
        return;
    }
    cl_join_at = apr_time_now() + CLUSTER_HEARTBEAT;
    cl_up = 1;
    cl_resumed = 1;
    cl_backoff = 0;
    free(cl_last_error);
    cl_last_error = NULL;
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, autotls_global.main_server,
                 "AutoTLSStore %s: node %s synced its mirror %s (%d certificate(s) "
                 "pulled, %d pushed)", cl_where, atls_mirror_node_id(cl_mirror),
                 autotls_global.store_dir, pulled, pushed);
    if (pulled > 0) {
        autotls_generation_publish(atls_mirror_store(cl_mirror));
    }
}

/* Another node's challenge (or ours): answered by every child from the
 * mirror's challenges/, as with a filesystem store. */
static int
cluster_respond(void *ctx, int add, atls_challenge_type_t t, const char *key,
                const char *data, size_t len, char *why, size_t whylen)
{
    atls_store_t *fs = atls_mirror_fs(ctx);
    int rc;

    if (add) {
        return atls_store_put_challenge(fs, t, key, data, len, why, whylen)
               == ATLS_STORE_OK ? 0 : -1;
    }
    rc = atls_store_del_challenge(fs, t, key, why, whylen);
    return rc == ATLS_STORE_OK || rc == ATLS_STORE_NOTFOUND ? 0 : -1;
}

atls_store_t *
autotls_cluster_open(server_rec *s)
{
    atls_store_t *st = NULL;
    char err[512];

    pthread_mutex_lock(&cl_lock);
    if (cl_mirror == NULL) {
        cl_mirror = atls_mirror_open(autotls_global.redis, autotls_global.store_dir,
                                     err, sizeof(err));
        if (cl_mirror == NULL) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "AutoTLSStore mirror %s: %s",
                         autotls_global.store_dir, err);
            goto out;
        }
        free(cl_where);
        cl_where = atls_redis_conf_describe(autotls_global.redis);
        atls_mirror_set_responder(cl_mirror, cluster_respond, cl_mirror);
        cl_up = 0;
        cl_backoff = 0;
        cluster_connect();
    }
    st = atls_mirror_store(cl_mirror);

out:
    pthread_mutex_unlock(&cl_lock);
    return st;
}

void
autotls_cluster_close(void)
{
    pthread_mutex_lock(&cl_lock);
    if (cl_mirror != NULL) {
        /* a clean stop: others stop waiting for this node's acks at once */
        if (cl_up) {
            atls_mirror_leave(cl_mirror);
        }
        atls_mirror_free(cl_mirror);
        cl_mirror = NULL;
    }
    cl_up = 0;
    free(cl_last_error);
    cl_last_error = NULL;
    pthread_mutex_unlock(&cl_lock);
}

atls_store_t *
autotls_cluster_local(atls_store_t *st)
{
    return cl_mirror != NULL && st == atls_mirror_store(cl_mirror)
           ? atls_mirror_fs(cl_mirror) : st;
}

static void cluster_listen_tick(void);

/* Asked before each run of the scheduler: the subscriber is looked at
 * first, so that a Redis that restarted (empty, perhaps) since the last
 * tick is noticed before the scheduler reads from it, and the run waits
 * for the sync that refills Redis from the mirror. */
int
autotls_cluster_paused(void)
{
    int paused;

    if (autotls_global.redis == NULL) {
        return 0;
    }
    pthread_mutex_lock(&cl_lock);
    if (cl_mirror != NULL && cl_up) {
        cluster_listen_tick();
    }
    paused = !cl_up;
    pthread_mutex_unlock(&cl_lock);
    return paused;
}

int
autotls_cluster_resumed(void)
{
    int r = cl_resumed;

    cl_resumed = 0;
    return r;
}

/* The subscriber: what came since the last look, without waiting. */
static void
cluster_listen_tick(void)
{
    char err[512];
    int pulled;

    if (atls_mirror_subscriber(cl_mirror) == NULL) {
        cluster_down("subscriber", "not connected");
        return;
    }
    if (atls_redis_state(atls_mirror_subscriber(cl_mirror)) == ATLS_REDIS_FAILED) {
        /* a failed connection has no fd left to poll */
        cluster_down("subscriber", atls_redis_error(atls_mirror_subscriber(cl_mirror)));
        return;
    }
    pulled = atls_mirror_poll(cl_mirror, 0, err, sizeof(err));
    if (pulled < 0) {
        /* announcements may have been missed: a sync after reconnecting */
        cluster_down("subscriber", err);
        return;
    }
    if (pulled > 0) {
        autotls_generation_publish(atls_mirror_store(cl_mirror));
    }
    if (cl_synced_early && atls_mirror_listening(cl_mirror)) {
        /* a deploy announced between the sync and the subscription */
        cl_synced_early = 0;
        pulled = atls_mirror_sync(cl_mirror, NULL, err, sizeof(err));
        if (pulled < 0) {
            cluster_down("sync", err);
        } else if (pulled > 0) {
            autotls_generation_publish(atls_mirror_store(cl_mirror));
        }
    }
}

static void cluster_acks_tick(void);

/* The registry of dynamic names, one step (at most 256 entries, about
 * CLUSTER_NAMES_SLICE_MS) a tick while its sync is wanted (announced) or
 * under way, and a check at each heartbeat: an announcement lost (the
 * subscriber's buffer, a step that failed) is caught there; one GET when
 * nothing moved.  Children read the mirror's copy once told, at each
 * step that changed it. */
static void
cluster_names_tick(apr_time_t now)
{
    char err[512];
    int done = 0, rc;

    if (now < cl_names_at && !atls_mirror_names_pending(cl_mirror)) {
        return;
    }
    rc = atls_mirror_sync_names_step(cl_mirror, CLUSTER_NAMES_SLICE_MS, &done, err,
                                     sizeof(err));
    if (rc < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, autotls_global.main_server,
                     "AutoTLSStore %s: registry of names: %s; tried again at the next "
                     "heartbeat", cl_where, err);
        cl_names_at = now + CLUSTER_HEARTBEAT;
        return;
    }
    if (rc > 0) {
        autotls_generation_publish(atls_mirror_store(cl_mirror));
    }
    if (done) {
        cl_names_at = now + CLUSTER_HEARTBEAT;
    }
}

void
autotls_cluster_tick(int in_run)
{
    apr_time_t now = apr_time_now();
    char err[512];

    pthread_mutex_lock(&cl_lock);
    if (cl_mirror == NULL) {
        goto out;
    }
    /* at every call: the loop's wait ends when the subscriber's fd is
     * ready (autotls_cluster_wake), so what came is read now, or the wait
     * would end again at once; with nothing come, one poll() */
    if (cl_up) {
        cluster_listen_tick();
    }
    if (now < cl_tick_at) {
        goto out;
    }
    cl_tick_at = now + AUTOTLS_CLUSTER_TICK / 2;
    if (!cl_up) {
        if (now >= cl_retry_at) {
            cluster_connect();
        }
        goto out;
    }
    if (cl_up && now >= cl_join_at) {
        if (atls_mirror_join(cl_mirror, err, sizeof(err)) != 0) {
            cluster_down("heartbeat", err);
        } else {
            cl_join_at = now + CLUSTER_HEARTBEAT;
        }
    }
    if (cl_up) {
        cluster_names_tick(now);
    }
    if (cl_up && now >= cl_renew_at) {
        /* an order's leases, while it waits on the CA without store calls */
        cl_renew_at = now + CLUSTER_HEARTBEAT;
        if (atls_mirror_renew(cl_mirror) > 0) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, autotls_global.main_server,
                         "AutoTLSStore %s: a certificate's lease was lost (taken over "
                         "by another node after a stall); its order will not deploy",
                         cl_where);
        }
    }

out:
    /* only inside a run: the watchdog's stop frees the scheduler once the
     * run is over, maybe from another thread, never under one */
    if (in_run) {
        cluster_acks_tick();
    }
    pthread_mutex_unlock(&cl_lock);
}

/* mod_watchdog's slice (AUTOTLS_CLUSTER_TICK): the subscriber and the
 * heartbeat between checks (during a check, autotls_drive_poll ticks). */
apr_status_t
autotls_cluster_watch_cb(int state, void *data, apr_pool_t *ptemp)
{
    if (state == AP_WATCHDOG_STATE_RUNNING) {
        autotls_cluster_tick(0);
    }
    return APR_SUCCESS;
}

/* ---- challenges: any node answers any validation ------------------------ */

/* The answer goes to Redis and to every node's mirror (this one's through
 * cluster_respond); the scheduler then waits for the acks through
 * publish_wait before it asks the CA to validate. */
int
autotls_cluster_put_challenge(atls_store_t *st, atls_challenge_type_t t, const char *key,
                              const char *data, size_t len, char *why, size_t whylen)
{
    if (cl_mirror == NULL || st != atls_mirror_store(cl_mirror)) {
        return atls_store_put_challenge(st, t, key, data, len, why, whylen);
    }
    return atls_mirror_challenge_publish(cl_mirror, t, key, data, len, why, whylen) == 0
           ? ATLS_STORE_OK : ATLS_STORE_ERROR;
}

int
autotls_cluster_del_challenge(atls_store_t *st, atls_challenge_type_t t, const char *key,
                              char *why, size_t whylen)
{
    if (cl_mirror == NULL || st != atls_mirror_store(cl_mirror)) {
        return atls_store_del_challenge(st, t, key, why, whylen);
    }
    atls_mirror_challenge_withdraw(cl_mirror, t, key);
    return ATLS_STORE_OK;
}

/* ---- the scheduler's publish_wait: acks polled from the driver's loop ----- */

typedef struct cluster_wait_s {
    atls_sched_t          *sched;
    atls_sched_op_t       *op;
    atls_challenge_type_t  t;
    char                  *key;
    apr_time_t             since;
    apr_time_t             until;
    apr_time_t             next;
    int                    polls;
    struct cluster_wait_s *next_wait;
} cluster_wait_t;

static cluster_wait_t *cl_waits;

int
autotls_cluster_publish_wait(atls_sched_t *sched, atls_sched_op_t *op,
                             const atls_challenge_t *c, char *why, size_t whylen)
{
    cluster_wait_t *w;
    const char *key = c->type == ATLS_CHAL_HTTP01 ? c->token : c->identifier;

    if (cl_mirror == NULL || key == NULL
        || (c->type != ATLS_CHAL_HTTP01 && c->type != ATLS_CHAL_TLSALPN01)) {
        return 0;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        abort();
    }
    w->sched = sched;
    w->op = op;
    w->t = c->type;
    w->key = atls_strdup(key);
    w->since = apr_time_now();
    w->until = w->since + apr_time_from_msec(ATLS_MIRROR_ACK_WAIT_MS);
    pthread_mutex_lock(&cl_lock);
    w->next_wait = cl_waits;
    cl_waits = w;
    pthread_mutex_unlock(&cl_lock);
    return 1;
}

static void
cluster_wait_free(cluster_wait_t **pw)
{
    cluster_wait_t *w = *pw;

    *pw = w->next_wait;
    free(w->key);
    free(w);
}

void
autotls_cluster_publish_cancel(void *ctx, atls_sched_op_t *op)
{
    cluster_wait_t **pw;

    pthread_mutex_lock(&cl_lock);
    for (pw = &cl_waits; *pw != NULL; pw = &(*pw)->next_wait) {
        if ((*pw)->op == op) {
            cluster_wait_free(pw);
            break;
        }
    }
    pthread_mutex_unlock(&cl_lock);
}

/* Every ~100 ms: waits whose members all acked, or whose time is up, are
 * reported to the scheduler (ok either way: the nodes that answered do). */
static void
cluster_acks_tick(void)
{
    cluster_wait_t **pw = &cl_waits, *w;
    apr_time_t now = apr_time_now();
    char err[512], *missing;
    int r;

    while ((w = *pw) != NULL) {
        if (now < w->next) {
            pw = &w->next_wait;
            continue;
        }
        w->next = now + apr_time_from_msec(CLUSTER_ACK_POLL_MS);
        w->polls++;
        missing = NULL;
        r = cl_mirror != NULL
            ? atls_mirror_challenge_ready(cl_mirror, w->t, w->key, &missing, err,
                                          sizeof(err))
            : -1;
        if (r == 0 && now < w->until) {
            free(missing);
            pw = &w->next_wait;
            continue;
        }
        if (r <= 0) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, autotls_global.main_server,
                         "AutoTLSStore: %s %s: %s %s; validating with the nodes that "
                         "loaded it", atls_challenge_type_name(w->t), w->key,
                         r < 0 ? "acks unknown:" : "not loaded by",
                         r < 0 ? (cl_mirror ? err : "no mirror") : missing ? missing : "?");
        }
        if (r > 0) {
            ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, autotls_global.main_server,
                         "AutoTLSStore: %s %s: loaded by every live node (acks polled "
                         "%d time(s) in %ld ms, every %d ms)",
                         atls_challenge_type_name(w->t), w->key, w->polls,
                         (long) apr_time_as_msec(now - w->since), CLUSTER_ACK_POLL_MS);
        }
        /* unlinked first, and the list walked again from its head: the
         * scheduler may call publish_cancel from hook_done */
        *pw = w->next_wait;
        if (r > 0) {
            atls_sched_hook_done(w->sched, w->op, 1, NULL);
        } else {
            /* a validation failed by the nodes missing is retried soon */
            atls_sched_hook_done_partial(w->sched, w->op, r == 0 ? missing : NULL);
        }
        free(missing);
        free(w->key);
        free(w);
        pw = &cl_waits;
    }
}

/* The driver loop's wake: while a wait is pending its acks are polled
 * every CLUSTER_ACK_POLL_MS, not at the loop's 500 ms; the subscriber's fd
 * ends a wait when an announcement (another node's deploy, a challenge to
 * load and ack) comes.  With neither, the loop keeps its own pace. */
long
autotls_cluster_wake(void *ctx, int *fd, int *events)
{
    apr_time_t now = apr_time_now(), at = 0;
    cluster_wait_t *w;
    atls_redis_t *sub;
    int wants;

    (void) ctx;
    *fd = -1;
    *events = 0;
    pthread_mutex_lock(&cl_lock);
    if (cl_mirror == NULL) {
        goto out;
    }
    if (!cl_up) {
        /* the next try, which the tick's own pace may put off */
        at = cl_retry_at > cl_tick_at ? cl_retry_at : cl_tick_at;
        goto out;
    }
    sub = atls_mirror_subscriber(cl_mirror);
    if (sub != NULL && atls_redis_state(sub) != ATLS_REDIS_FAILED
        && atls_redis_fd(sub) >= 0) {
        wants = atls_redis_wants(sub);
        *fd = atls_redis_fd(sub);
        *events = ((wants & ATLS_REDIS_WANT_READ) ? POLLIN : 0)
                  | ((wants & ATLS_REDIS_WANT_WRITE) ? POLLOUT : 0);
    }
    for (w = cl_waits; w != NULL; w = w->next_wait) {
        if (at == 0 || w->next < at) {
            at = w->next;
        }
    }

out:
    pthread_mutex_unlock(&cl_lock);
    if (at == 0) {
        return -1;
    }
    /* rounded up: a wait that ends before the poll is due would be spent
     * again at once */
    return at <= now ? 0 : (long) ((at - now + 999) / 1000);
}
