/*
 * autotls for nginx: a cluster node's driver state, shared by its two
 * files.
 *
 * ngx_http_autotls_cluster.c: start and stop, the subscriber connection on
 * nginx's event loop, the heartbeat and the health gate of the blocking
 * calls.
 * ngx_http_autotls_cluster_sync.c: the mirror's syncs in slices, the pull
 * of one announced certificate, the check of the cluster's generation
 * every second and the registry of names.
 */

#ifndef _NGX_HTTP_AUTOTLS_CLUSTER_H_INCLUDED_
#define _NGX_HTTP_AUTOTLS_CLUSTER_H_INCLUDED_


#include "ngx_http_autotls_module.h"


#define NGX_HTTP_AUTOTLS_CLUSTER_RETRY_MIN  1000
/* a node back within a heartbeat of Redis: one that stays out of the
 * member registry while clients (and the CA) still reach it fails the
 * http-01 challenges other nodes publish, and their orders back off for
 * hours */
#define NGX_HTTP_AUTOTLS_CLUSTER_RETRY_MAX  (ATLS_MIRROR_MEMBER_TTL_MS / 3)
#define NGX_HTTP_AUTOTLS_CLUSTER_CHECK_MS   1000
/* a blocking call on this event loop waits at most this long for Redis
 * unless the URL's timeout= says otherwise; a PING on the subscriber
 * unanswered for twice that marks Redis unresponsive too */
#define NGX_HTTP_AUTOTLS_CLUSTER_TIMEOUT_MS 1000
/* a sync runs in slices of this much (issue 12: a cold mirror over 10,000
 * certificates must not stall this worker's clients for minutes) */
#define NGX_HTTP_AUTOTLS_CLUSTER_SLICE_MS   20


typedef struct {
    atls_mirror_t              *mirror;     /* while this worker drives */
    ngx_connection_t           *conn;       /* on the subscriber's fd */
    uintptr_t                   ino;        /* that fd's socket */
    ngx_event_t                 retry_ev;   /* reconnect, or connect limit */
    ngx_event_t                 beat_ev;    /* heartbeat */
    ngx_event_t                 check_ev;   /* the cluster generation */
    ngx_event_t                 sync_ev;    /* the next slice of a sync */
    uint64_t                    sync_gen;   /* <P>{/cluster}:gen + 1 read
                                               before the sync under way */
    int                         sync_pulled;    /* by it so far */
    uint64_t                    synced_gen; /* <P>{/cluster}:gen + 1 read
                                               before the last sync; 0:
                                               none since subscribing */
    uint64_t                    seen_gen;   /* the same, at the last check */
    ngx_msec_t                  backoff;
    atls_redis_health_t         health;     /* the blocking calls' gate */
    ngx_uint_t                  ping_late;  /* checks that found the PING
                                               unanswered past the limit */
    ngx_log_t                  *log;
    char                       *where;      /* the URL without password */
    unsigned                    connecting:1;
    unsigned                    listening:1;
    unsigned                    down:1;     /* the outage was logged */
    unsigned                    open_failed:1;  /* logged once */
    unsigned                    syncing:1;  /* a sync under way */
    unsigned                    sync_again:1;   /* asked for meanwhile */
    unsigned                    sync_resume:1;  /* the scheduler waits for it */
} ngx_http_autotls_cluster_t;


/* the one driver state of this worker */
extern ngx_http_autotls_cluster_t  ngx_http_autotls_cluster;


/* ngx_http_autotls_cluster.c */
void ngx_http_autotls_cluster_failed(ngx_http_autotls_cluster_t *cl,
    const char *why);
ngx_int_t ngx_http_autotls_cluster_answering(ngx_http_autotls_cluster_t *cl);
ngx_int_t ngx_http_autotls_cluster_ping(ngx_http_autotls_cluster_t *cl);

/* ngx_http_autotls_cluster_sync.c */
ngx_int_t ngx_http_autotls_cluster_sync(ngx_http_autotls_cluster_t *cl);
int ngx_http_autotls_cluster_pull(ngx_http_autotls_cluster_t *cl, char *err,
    size_t errlen);
void ngx_http_autotls_cluster_slice(ngx_event_t *ev);
void ngx_http_autotls_cluster_sync_stop(ngx_http_autotls_cluster_t *cl);
void ngx_http_autotls_cluster_retried(ngx_http_autotls_cluster_t *cl,
    const char *err);
void ngx_http_autotls_cluster_check(ngx_event_t *ev);


#endif /* _NGX_HTTP_AUTOTLS_CLUSTER_H_INCLUDED_ */
