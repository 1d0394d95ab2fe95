/*
 * autotls for nginx: a node of a cluster sharing a Redis store.
 *
 * Every worker serves from the node's mirror directory, a filesystem store
 * (ngx_http_autotls_store), so the handshake path never touches the
 * network.  The driver worker opens the mirror (common/atls_mirror.h) and
 * runs the scheduler on its store; here it keeps the mirror in line with
 * Redis: the subscriber connection on nginx's event loop pulls each
 * certificate another node announces, a sync catches up after every
 * (re)subscription, a check every second syncs again when the
 * cluster's generation moved since the last sync (an announcement lost or
 * a pull that failed is caught within seconds, not at the next outage),
 * and a heartbeat keeps the node in the member registry
 * (the cluster's challenges, ngx_http_autotls_cluster_chal.c, wait for
 * live members).  A certificate the mirror takes bumps the mirror's
 * generation; the watcher is told at once, so every worker serves it from
 * its next handshake, without waiting for the next look.
 *
 * Redis down (at start or later) stops nothing: workers serve the mirror
 * (or fallbacks), the scheduler's store calls fail and its orders back
 * off, the subscriber reconnects with backoff.  An outage is logged once,
 * naming the directive, and its end once.
 *
 * Redis hung (it accepts connections but does not answer: SIGSTOP, a host
 * that hangs, a black hole): the scheduler's store calls, the sync, the
 * heartbeat and the generation check are blocking calls on this event
 * loop (common/redis_sync.c).  They share a health gate
 * (atls_redis_health_t): the first one that times out (the URL's
 * timeout=, NGX_HTTP_AUTOTLS_CLUSTER_TIMEOUT_MS by default) closes it, and
 * so does a PING the subscriber sends every check that stays unanswered;
 * from then on no blocking call goes out, the node is down as above, and
 * the gate opens when Redis confirms a new subscription.  The worst case
 * is one such timeout per outage on this worker's event loop.
 */

#include "ngx_http_autotls_cluster.h"


static void ngx_http_autotls_cluster_down(ngx_http_autotls_cluster_t *cl,
    const char *why);
static void ngx_http_autotls_cluster_listen(ngx_http_autotls_cluster_t *cl);
static void ngx_http_autotls_cluster_io(ngx_event_t *ev);
static void ngx_http_autotls_cluster_retry(ngx_event_t *ev);
static void ngx_http_autotls_cluster_beat(ngx_event_t *ev);
static ngx_int_t ngx_http_autotls_cluster_watch_fd(
    ngx_http_autotls_cluster_t *cl);
static void ngx_http_autotls_cluster_release(ngx_http_autotls_cluster_t *cl);


ngx_http_autotls_cluster_t  ngx_http_autotls_cluster;


/*
 * This worker became the driver: its own mirror over Redis.  NGX_ERROR
 * when the mirror cannot be opened at all (its directory, the key file):
 * the node then serves what the mirror holds and does not renew.
 */
ngx_int_t
ngx_http_autotls_cluster_start(ngx_log_t *log)
{
    char                           err[512];
    ngx_uint_t                     level;
    ngx_http_autotls_main_conf_t  *amcf = ngx_http_autotls_mcf;
    ngx_http_autotls_cluster_t    *cl = &ngx_http_autotls_cluster;

    cl->log = log;

    if (cl->where == NULL) {
        cl->where = atls_redis_conf_describe(amcf->redis);
    }

    err[0] = '\0';

    /* every connection the mirror opens shares the gate; a call on this
     * event loop waits for a hung Redis a short while, and only once */
    atls_redis_health_up(&cl->health);
    amcf->redis->health = &cl->health;

    if (amcf->redis->timeout_ms == 0) {
        amcf->redis->timeout_ms = NGX_HTTP_AUTOTLS_CLUSTER_TIMEOUT_MS;
    }

    cl->mirror = atls_mirror_open(amcf->redis, (char *) amcf->store.data,
                                  err, sizeof(err));
    if (cl->mirror == NULL) {
        /* the election tries every second: said once per worker */
        level = cl->open_failed ? NGX_LOG_DEBUG : NGX_LOG_ERR;
        ngx_log_error(level, log, 0,
                      "autotls_store \"%s\": %s; serving from the mirror "
                      "\"%V\" without renewing", cl->where, err, &amcf->store);
        cl->open_failed = 1;
        return NGX_ERROR;
    }

    cl->open_failed = 0;

    atls_mirror_set_responder(cl->mirror, ngx_http_autotls_cluster_respond,
                              NULL);

    ngx_http_autotls_event_init(&cl->retry_ev, ngx_http_autotls_cluster_retry,
                                log);
    ngx_http_autotls_event_init(&cl->beat_ev, ngx_http_autotls_cluster_beat,
                                log);
    ngx_http_autotls_event_init(&cl->check_ev,
                                ngx_http_autotls_cluster_check, log);
    ngx_http_autotls_event_init(&cl->sync_ev,
                                ngx_http_autotls_cluster_slice, log);
    cl->syncing = 0;
    cl->sync_again = 0;
    cl->sync_resume = 0;
    cl->backoff = 0;
    cl->down = 0;
    cl->synced_gen = 0;
    cl->ping_late = 0;

    /* orders elsewhere wait for this node from now on, and it loads the
     * challenges already published; a wrong password or a TLS failure is
     * said here, once, before anything else tries Redis */
    err[0] = '\0';

    if (atls_mirror_join(cl->mirror, err, sizeof(err)) != 0) {
        ngx_http_autotls_cluster_down(cl, err);
    }

    ngx_add_timer(&cl->beat_ev, ATLS_MIRROR_MEMBER_TTL_MS / 3);
    ngx_add_timer(&cl->check_ev, NGX_HTTP_AUTOTLS_CLUSTER_CHECK_MS);

    /* the sync runs once the subscription is confirmed, so that nothing
     * announced in between is missed */
    ngx_http_autotls_cluster_listen(cl);

    return NGX_OK;
}


void
ngx_http_autotls_cluster_stop(void)
{
    ngx_http_autotls_cluster_t  *cl = &ngx_http_autotls_cluster;

    ngx_http_autotls_cluster_chal_stop();

    if (cl->retry_ev.timer_set) {
        ngx_del_timer(&cl->retry_ev);
    }

    if (cl->beat_ev.timer_set) {
        ngx_del_timer(&cl->beat_ev);
    }

    if (cl->check_ev.timer_set) {
        ngx_del_timer(&cl->check_ev);
    }

    ngx_http_autotls_cluster_sync_stop(cl);

    if (cl->mirror == NULL) {
        return;
    }

    /* before the mirror closes the subscriber's fd */
    ngx_http_autotls_cluster_release(cl);

    /* others stop waiting for this node at once */
    atls_mirror_leave(cl->mirror);
    atls_mirror_free(cl->mirror);

    cl->mirror = NULL;
    cl->connecting = 0;
    cl->listening = 0;
}


/* the store the driver's scheduler runs on; NULL when not a cluster node */
atls_store_t *
ngx_http_autotls_cluster_store(void)
{
    atls_mirror_t  *m = ngx_http_autotls_cluster.mirror;

    return m ? atls_mirror_store(m) : NULL;
}


atls_mirror_t *
ngx_http_autotls_cluster_mirror(void)
{
    return ngx_http_autotls_cluster.mirror;
}


/* ---- the subscriber ------------------------------------------------------ */

static void
ngx_http_autotls_cluster_listen(ngx_http_autotls_cluster_t *cl)
{
    char  err[512];

    ngx_http_autotls_cluster_release(cl);

    err[0] = '\0';

    if (atls_mirror_listen(cl->mirror, err, sizeof(err)) != 0) {
        ngx_http_autotls_cluster_failed(cl, err);
        return;
    }

    cl->connecting = 1;
    cl->listening = 0;

    if (ngx_http_autotls_cluster_watch_fd(cl) != NGX_OK) {
        ngx_http_autotls_cluster_failed(cl, "cannot watch the connection");
        return;
    }

    /* a server that never answers (a dropped route) ends the attempt */
    if (cl->retry_ev.timer_set) {
        ngx_del_timer(&cl->retry_ev);
    }

    ngx_add_timer(&cl->retry_ev, ATLS_REDIS_TIMEOUT_MS);
}


static void
ngx_http_autotls_cluster_io(ngx_event_t *ev)
{
    int                          rc;
    char                         err[512];
    ngx_http_autotls_cluster_t  *cl = &ngx_http_autotls_cluster;

    if (cl->mirror == NULL) {
        return;
    }

    err[0] = '\0';

    /* both directions: every step finds out for itself what is ready */
    rc = atls_mirror_on_io(cl->mirror,
                           ATLS_REDIS_WANT_READ|ATLS_REDIS_WANT_WRITE,
                           err, sizeof(err));

    /* the mirror logs a pull that failed and returns the others; -1 is
     * the subscriber's failure (a reply it could not read included): the
     * mirror no longer counts it as subscribed, so a new one, then a sync */
    if (rc < 0) {
        ngx_http_autotls_cluster_failed(cl, err);
        return;
    }

    if (!cl->listening && atls_mirror_listening(cl->mirror)) {
        cl->listening = 1;
        cl->connecting = 0;
        cl->backoff = 0;

        /* Redis answered: blocking calls may go out again */
        atls_redis_health_up(&cl->health);
        cl->ping_late = 0;

        if (cl->retry_ev.timer_set) {
            ngx_del_timer(&cl->retry_ev);
        }

        if (cl->down) {
            ngx_log_error(NGX_LOG_NOTICE, cl->log, 0,
                          "autotls_store \"%s\": Redis reachable again",
                          cl->where);
            cl->down = 0;

            /* counted again by orders elsewhere without waiting for the
             * next heartbeat */
            if (cl->beat_ev.timer_set) {
                ngx_del_timer(&cl->beat_ev);
            }

            ngx_add_timer(&cl->beat_ev, 1);
        }

        if (ngx_http_autotls_cluster_sync(cl) != NGX_OK) {
            return;
        }
    }

    if (rc > 0) {
        ngx_http_autotls_watch_now();
    }

    /* an announced certificate's pull may have timed out */
    if (ngx_http_autotls_cluster_answering(cl) != NGX_OK) {
        return;
    }

    if (ngx_http_autotls_cluster_watch_fd(cl) != NGX_OK) {
        ngx_http_autotls_cluster_failed(cl, "cannot watch the connection");
    }
}


/* the subscription is lost or never came: serve the mirror, try again */
void
ngx_http_autotls_cluster_failed(ngx_http_autotls_cluster_t *cl,
    const char *why)
{
    ngx_http_autotls_cluster_release(cl);

    cl->connecting = 0;
    cl->listening = 0;
    cl->synced_gen = 0;

    /* the sync after the next subscription lists everything again */
    ngx_http_autotls_cluster_sync_stop(cl);

    ngx_http_autotls_cluster_down(cl, why);

    /* no order runs against a Redis that may come back empty */
    ngx_http_autotls_driver_pause();

    /* an ACME connection cut in its handshake leaves "shutdown while in
     * init" on this thread's OpenSSL queue: nginx's next handshake would
     * find it */
    ERR_clear_error();

    cl->backoff = cl->backoff ? ngx_min(cl->backoff * 2,
                                        NGX_HTTP_AUTOTLS_CLUSTER_RETRY_MAX)
                              : NGX_HTTP_AUTOTLS_CLUSTER_RETRY_MIN;

    if (cl->retry_ev.timer_set) {
        ngx_del_timer(&cl->retry_ev);
    }

    ngx_add_timer(&cl->retry_ev, cl->backoff);
}


/* an outage is said once, naming the directive, until Redis is back */
static void
ngx_http_autotls_cluster_down(ngx_http_autotls_cluster_t *cl, const char *why)
{
    size_t  n;

    if (why[0] == '\0') {
        why = "connection failed";
    }

    /* the client's errors start with "redis <where>: ", said already */
    n = ngx_strlen(cl->where);

    if (ngx_strncmp(why, "redis ", 6) == 0
        && ngx_strncmp(why + 6, cl->where, n) == 0
        && ngx_strncmp(why + 6 + n, ": ", 2) == 0)
    {
        why += 6 + n + 2;
    }

    if (cl->down) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cl->log, 0,
                       "autotls_store \"%s\": %s", cl->where, why);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                  "autotls_store \"%s\": %s; serving from the mirror \"%V\", "
                  "orders wait until Redis is back",
                  cl->where, why, &ngx_http_autotls_mcf->store);

    cl->down = 1;
}


static void
ngx_http_autotls_cluster_retry(ngx_event_t *ev)
{
    ngx_http_autotls_cluster_t  *cl = &ngx_http_autotls_cluster;

    if (cl->mirror == NULL || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (cl->connecting) {
        ngx_http_autotls_cluster_failed(cl, "subscriber: timed out");
        return;
    }

    ngx_http_autotls_cluster_listen(cl);
}


/* ---- the heartbeat ------------------------------------------------------- */

static void
ngx_http_autotls_cluster_beat(ngx_event_t *ev)
{
    int                          lost;
    char                         err[512];
    ngx_http_autotls_cluster_t  *cl = &ngx_http_autotls_cluster;

    if (cl->mirror == NULL || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    /* while Redis is down each call would wait for its timeout on this
     * event loop: the subscriber's reconnection beats again */
    if (cl->down || ngx_http_autotls_cluster_answering(cl) != NGX_OK) {
        ngx_add_timer(ev, ATLS_MIRROR_MEMBER_TTL_MS / 3);
        return;
    }

    err[0] = '\0';

    if (atls_mirror_join(cl->mirror, err, sizeof(err)) != 0) {
        /* the subscriber says when Redis is down, once */
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cl->log, 0,
                       "autotls_store \"%s\": join: %s", cl->where, err);
    }

    /* an order that makes no store call for a while keeps its lease */
    lost = atls_mirror_renew(cl->mirror);

    if (ngx_http_autotls_cluster_answering(cl) != NGX_OK) {
        ngx_add_timer(ev, ATLS_MIRROR_MEMBER_TTL_MS / 3);
        return;
    }

    if (lost > 0) {
        ngx_log_error(NGX_LOG_WARN, cl->log, 0,
                      "autotls_store \"%s\": %d lease(s) lost; another node "
                      "may finish those orders", cl->where, lost);
    }

    ngx_add_timer(ev, ATLS_MIRROR_MEMBER_TTL_MS / 3);
}


/* ---- a hung Redis: the health gate ---------------------------------------- */

/*
 * NGX_OK while Redis answers.  Once a blocking call timed out (the gate
 * closed): a subscribed node goes down as when the subscription fails
 * (the scheduler pauses, a new subscription is tried with backoff, and
 * its confirmation opens the gate); otherwise the outage is said, once.
 */
ngx_int_t
ngx_http_autotls_cluster_answering(ngx_http_autotls_cluster_t *cl)
{
    char  why[sizeof(cl->health.why) + 32];

    if (!cl->health.unresponsive) {
        return NGX_OK;
    }

    ngx_snprintf((u_char *) why, sizeof(why) - 1, "Redis not answering (%s)%Z",
                 cl->health.why);
    why[sizeof(why) - 1] = '\0';

    if (cl->listening) {
        ngx_http_autotls_cluster_failed(cl, why);

    } else {
        ngx_http_autotls_cluster_down(cl, why);
    }

    return NGX_DECLINED;
}


/*
 * The subscriber's heartbeat, without blocking: a PING each check; one
 * unanswered (nothing at all read from Redis since it was sent) for twice
 * the blocking calls' timeout closes the gate before any blocking call
 * meets the hang.  Two checks must find it so: with accept_mutex, read
 * events are handled after the timers of the same pass, so after a pass
 * that took long the PONG may be waiting in the socket at the first.
 */
ngx_int_t
ngx_http_autotls_cluster_ping(ngx_http_autotls_cluster_t *cl)
{
    long           silent, limit;
    char           why[96];
    atls_redis_t  *sub;

    sub = atls_mirror_subscriber(cl->mirror);

    if (sub == NULL) {
        return NGX_OK;
    }

    silent = atls_redis_ping(sub);
    limit = 2L * ngx_http_autotls_mcf->redis->timeout_ms;

    cl->ping_late = silent >= limit ? cl->ping_late + 1 : 0;

    if (cl->ping_late >= 2) {
        ngx_snprintf((u_char *) why, sizeof(why) - 1,
                     "no reply to PING within %l ms%Z", silent);
        why[sizeof(why) - 1] = '\0';
        atls_redis_health_down(&cl->health, why);
        return ngx_http_autotls_cluster_answering(cl);
    }

    /* the PING waits to be written */
    if (ngx_http_autotls_cluster_watch_fd(cl) != NGX_OK) {
        ngx_http_autotls_cluster_failed(cl, "cannot watch the connection");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* ---- the subscriber's fd as an nginx connection ------------------------- */

/*
 * The client's fd may change while it connects (the host's next address)
 * and is closed by the client when the connection fails, after which the
 * number may belong to another socket: the connection is kept only while
 * the fd is the socket it was made for (its inode).
 */
static ngx_int_t
ngx_http_autotls_cluster_watch_fd(ngx_http_autotls_cluster_t *cl)
{
    int                wants;
    ngx_socket_t       fd;
    atls_redis_t      *sub;
    ngx_connection_t  *c;

    sub = atls_mirror_subscriber(cl->mirror);
    fd = sub ? atls_redis_fd(sub) : -1;

    if (cl->conn
        && (cl->conn->fd != fd || ngx_http_autotls_socket_ino(fd) != cl->ino))
    {
        ngx_http_autotls_cluster_release(cl);
    }

    if (fd == (ngx_socket_t) -1) {
        return NGX_OK;
    }

    if (cl->conn == NULL) {
        c = ngx_get_connection(fd, cl->log);
        if (c == NULL) {
            return NGX_ERROR;
        }

        cl->ino = ngx_http_autotls_socket_ino(fd);

        c->data = cl;
        c->read->handler = ngx_http_autotls_cluster_io;
        c->write->handler = ngx_http_autotls_cluster_io;
        c->read->log = cl->log;
        c->write->log = cl->log;

        cl->conn = c;
    }

    /* level-triggered: the client reads until EAGAIN, and is asked again
     * after each step what it waits for */
    wants = atls_redis_wants(sub);

    if (ngx_http_autotls_socket_want(cl->conn->read, NGX_READ_EVENT,
                                     wants & ATLS_REDIS_WANT_READ)
        != NGX_OK
        || ngx_http_autotls_socket_want(cl->conn->write, NGX_WRITE_EVENT,
                                        wants & ATLS_REDIS_WANT_WRITE)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the client owns and closes the socket */
static void
ngx_http_autotls_cluster_release(ngx_http_autotls_cluster_t *cl)
{
    if (cl->conn != NULL) {
        ngx_http_autotls_socket_free(cl->conn, cl->ino);
        cl->conn = NULL;
    }
}
