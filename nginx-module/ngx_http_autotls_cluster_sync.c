/*
 * autotls for nginx: a cluster node's mirror kept in line with Redis.
 *
 * A sync (after every subscription, and when the cluster's generation
 * moved) runs in slices between network events; an announced certificate
 * is pulled at once; the check every second catches an announcement lost
 * or a pull that failed; the registry of names follows Redis's, in steps
 * too (a node that missed 100,000 registry changes must not stall its
 * clients for seconds).  The subscriber, the heartbeat and the health
 * gate are in ngx_http_autotls_cluster.c.
 */

#include "ngx_http_autotls_cluster.h"


static void ngx_http_autotls_cluster_names(ngx_http_autotls_cluster_t *cl);
static void ngx_http_autotls_cluster_names_wanted(void *data);
static void ngx_http_autotls_cluster_names_step(ngx_event_t *ev);


/* the next step of the registry's sync (its state is the mirror's) */
static ngx_event_t  ngx_http_autotls_cluster_names_ev;


/*
 * Missed announcements, and the repopulation of an emptied Redis: a sync
 * in slices (ngx_http_autotls_cluster_slice), after which the scheduler
 * runs again; the subscriber's failure is handled there.
 */
ngx_int_t
ngx_http_autotls_cluster_sync(ngx_http_autotls_cluster_t *cl)
{
    char  err[512];

    err[0] = '\0';

    cl->sync_resume = 1;

    /* an announced registry change is stepped from a timer of this loop,
     * never inside the subscriber's read */
    if (!ngx_http_autotls_cluster_names_ev.timer_set) {
        ngx_http_autotls_event_init(&ngx_http_autotls_cluster_names_ev,
                                    ngx_http_autotls_cluster_names_step,
                                    cl->log);
    }

    atls_mirror_set_names_hook(cl->mirror,
                               ngx_http_autotls_cluster_names_wanted, cl);

    if (ngx_http_autotls_cluster_pull(cl, err, sizeof(err)) < 0) {
        /* the mirror is left as it was; tried again with the subscriber */
        ngx_http_autotls_cluster_failed(cl, err);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Starts a sync, after reading the cluster's generation: a certificate
 * bumped during the sync (its pull may have failed: "kept changing") moves
 * the generation past the one recorded, so the next check syncs again.
 * One under way is not nested: it runs again once done.  0, or -1 + err.
 */
int
ngx_http_autotls_cluster_pull(ngx_http_autotls_cluster_t *cl, char *err,
    size_t errlen)
{
    uint64_t  gen;

    if (cl->syncing) {
        cl->sync_again = 1;
        return 0;
    }

    if (atls_mirror_redis_generation(cl->mirror, "/cluster", &gen, err,
                                     errlen)
        != ATLS_STORE_OK)
    {
        return -1;
    }

    cl->sync_gen = gen + 1;
    cl->sync_pulled = 0;
    cl->syncing = 1;
    cl->sync_again = 0;

    ngx_add_timer(&cl->sync_ev, 0);

    return 0;
}


/*
 * One slice of the sync; the next one from a 1 ms timer, so that the
 * event loop serves the clients in between (a 0 ms timer would expire in
 * the same pass over the timers).
 */
void
ngx_http_autotls_cluster_slice(ngx_event_t *ev)
{
    int                          pulled, pushed, done;
    char                         err[512];
    ngx_http_autotls_cluster_t  *cl = &ngx_http_autotls_cluster;

    if (cl->mirror == NULL || !cl->syncing) {
        return;
    }

    err[0] = '\0';
    pushed = 0;
    done = 0;

    pulled = atls_mirror_sync_step(cl->mirror,
                                   NGX_HTTP_AUTOTLS_CLUSTER_SLICE_MS, &done,
                                   &pushed, err, sizeof(err));

    if (pulled < 0) {
        cl->syncing = 0;
        cl->sync_again = 0;

        if (ngx_http_autotls_cluster_answering(cl) != NGX_OK) {
            return;
        }

        if (cl->sync_resume) {
            /* the sync after a subscription: tried again with a new one */
            cl->sync_resume = 0;
            ngx_http_autotls_cluster_failed(cl, err);
            return;
        }

        ngx_http_autotls_cluster_retried(cl, err);
        return;
    }

    if (pulled > cl->sync_pulled) {
        /* this worker serves what this slice pulled; the others watch */
        cl->sync_pulled = pulled;
        ngx_http_autotls_watch_now();
    }

    if (!done) {
        ngx_add_timer(ev, 1);
        return;
    }

    cl->syncing = 0;

    /* a push bumped the generation itself: read again at the next check */
    cl->synced_gen = pushed > 0 ? 0 : cl->sync_gen;

    if (pulled > 0 || pushed > 0) {
        ngx_log_error(NGX_LOG_NOTICE, cl->log, 0,
                      "autotls_store \"%s\": mirror synced: %d "
                      "certificate(s) pulled, %d pushed",
                      cl->where, pulled, pushed);
    }

    if (cl->sync_resume) {
        /* the scheduler sees what the cluster has, a Redis restarted
         * empty filled again first */
        cl->sync_resume = 0;
        ngx_http_autotls_driver_resume();
    }

    if (cl->sync_again) {
        err[0] = '\0';

        if (ngx_http_autotls_cluster_pull(cl, err, sizeof(err)) < 0) {
            ngx_http_autotls_cluster_retried(cl, err);
        }
    }
}


/* a sync that failed while Redis is up: the next check tries again */
void
ngx_http_autotls_cluster_retried(ngx_http_autotls_cluster_t *cl,
    const char *err)
{
    ngx_log_error(NGX_LOG_WARN, cl->log, 0,
                  "autotls_store \"%s\": %s; tried again in %M ms",
                  cl->where, err,
                  (ngx_msec_t) NGX_HTTP_AUTOTLS_CLUSTER_CHECK_MS);
}


/* a sync under way ends here (the connection failed, the worker stops) */
void
ngx_http_autotls_cluster_sync_stop(ngx_http_autotls_cluster_t *cl)
{
    if (cl->sync_ev.timer_set) {
        ngx_del_timer(&cl->sync_ev);
    }

    if (ngx_http_autotls_cluster_names_ev.timer_set) {
        ngx_del_timer(&ngx_http_autotls_cluster_names_ev);
    }

    /* the registry's sync under way too */
    if (cl->mirror != NULL) {
        atls_mirror_sync_cancel(cl->mirror);
    }

    cl->syncing = 0;
    cl->sync_again = 0;
    cl->sync_resume = 0;
}


/*
 * Announcements are not acknowledged: one lost (published while the
 * subscriber's buffer was full, or its pull failed) would leave the
 * mirror behind until the next outage.  One GET a second, and a sync when
 * the cluster's generation moved since the last one and then stayed.
 */
void
ngx_http_autotls_cluster_check(ngx_event_t *ev)
{
    char                         err[512];
    uint64_t                     gen;
    ngx_http_autotls_cluster_t  *cl = &ngx_http_autotls_cluster;

    if (cl->mirror == NULL || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_AUTOTLS_CLUSTER_CHECK_MS);

    /* while down or subscribing, the sync after the subscription comes */
    if (cl->down || !cl->listening) {
        return;
    }

    /* a blocking call (the scheduler's) timed out since, or the
     * subscriber's PING is unanswered: no blocking call until Redis
     * answers again */
    if (ngx_http_autotls_cluster_answering(cl) != NGX_OK
        || ngx_http_autotls_cluster_ping(cl) != NGX_OK)
    {
        return;
    }

    ngx_http_autotls_cluster_names(cl);

    err[0] = '\0';

    if (atls_mirror_redis_generation(cl->mirror, "/cluster", &gen, err,
                                     sizeof(err))
        != ATLS_STORE_OK)
    {
        if (ngx_http_autotls_cluster_answering(cl) != NGX_OK) {
            return;
        }

        /* the subscriber says when Redis is down, once */
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cl->log, 0,
                       "autotls_store \"%s\": %s", cl->where, err);
        return;
    }

    /* a deploy's announcement normally pulled it already: the sync waits
     * until the generation stayed for one check, so a burst of deploys
     * costs one sync after it, not one per check */
    if (gen + 1 == cl->synced_gen || gen + 1 != cl->seen_gen) {
        cl->seen_gen = gen + 1;
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, cl->log, 0,
                   "autotls_store \"%s\": cluster generation moved, "
                   "syncing", cl->where);

    err[0] = '\0';

    if (ngx_http_autotls_cluster_pull(cl, err, sizeof(err)) < 0) {
        ngx_http_autotls_cluster_retried(cl, err);
    }
}


/*
 * The registry of dynamic names, when its generation in Redis moved and
 * its announcement was lost (one GET a second otherwise): a step of its
 * sync now, unless one is under way; the timer takes the next ones.
 */
static void
ngx_http_autotls_cluster_names(ngx_http_autotls_cluster_t *cl)
{
    if (ngx_http_autotls_mcf->homes.nelts == 0
        || ngx_http_autotls_cluster_names_ev.handler == NULL
        || ngx_http_autotls_cluster_names_ev.timer_set)
    {
        return;
    }

    ngx_http_autotls_cluster_names_step(&ngx_http_autotls_cluster_names_ev);
}


/* the mirror's hook, inside the subscriber's read: a registry change was
 * announced; its steps start from the next pass over the timers */
static void
ngx_http_autotls_cluster_names_wanted(void *data)
{
    if (ngx_http_autotls_mcf->homes.nelts == 0
        || ngx_http_autotls_cluster_names_ev.handler == NULL
        || ngx_http_autotls_cluster_names_ev.timer_set)
    {
        return;
    }

    ngx_add_timer(&ngx_http_autotls_cluster_names_ev, 1);
}


/*
 * One step of the registry's sync (at most 256 entries, about a slice's
 * time); the workers are told of what each step changed, and the next
 * one comes from a 1 ms timer, as the certificates' slices.
 */
static void
ngx_http_autotls_cluster_names_step(ngx_event_t *ev)
{
    int                          rc, done;
    char                         err[512];
    ngx_http_autotls_cluster_t  *cl = &ngx_http_autotls_cluster;

    if (cl->mirror == NULL || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    /* while down or subscribing: the sync after the subscription takes
     * the registry too */
    if (cl->down || !cl->listening
        || ngx_http_autotls_cluster_answering(cl) != NGX_OK)
    {
        return;
    }

    err[0] = '\0';
    done = 0;

    rc = atls_mirror_sync_names_step(cl->mirror,
                                     NGX_HTTP_AUTOTLS_CLUSTER_SLICE_MS, &done,
                                     err, sizeof(err));

    if (rc < 0) {
        if (ngx_http_autotls_cluster_answering(cl) != NGX_OK) {
            return;
        }

        ngx_log_error(NGX_LOG_WARN, cl->log, 0,
                      "autotls_store \"%s\": registry of names: %s; tried "
                      "again in %M ms", cl->where, err,
                      (ngx_msec_t) NGX_HTTP_AUTOTLS_CLUSTER_CHECK_MS);
        return;
    }

    if (rc > 0) {
        ngx_http_autotls_watch_now();
    }

    /* not done, or announced again since this sync began */
    if (!done || atls_mirror_names_pending(cl->mirror)) {
        ngx_add_timer(ev, 1);
    }
}
