/*
 * autotls for nginx: the scheduler's HTTP on curl multi and nginx events.
 *
 * curl's sockets become nginx connections (ngx_get_connection, with
 * level-triggered read/write events, as curl expects) and curl's timer one
 * ngx_event_t, so the driver worker never blocks on the network.  Each
 * transfer carries the scheduler's op; when curl says it is done, the
 * response goes back with atls_sched_http_done().
 */

#include "ngx_http_autotls_module.h"

#include <curl/curl.h>


typedef struct {
    ngx_http_autotls_op_t       op;         /* first: found by op */
    CURL                       *easy;
    atls_http_xfer_t           *xfer;
} ngx_http_autotls_xfer_t;


typedef struct {
    CURLM                      *multi;
    atls_sched_t               *sched;
    ngx_event_t                 timer;      /* curl's timer */
    ngx_queue_t                 xfers;      /* ngx_http_autotls_xfer_t */
    ngx_log_t                  *log;
} ngx_http_autotls_curl_t;


static int ngx_http_autotls_curl_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp);
static int ngx_http_autotls_curl_timer(CURLM *multi, long timeout_ms,
    void *userp);
static void ngx_http_autotls_curl_read(ngx_event_t *ev);
static void ngx_http_autotls_curl_write(ngx_event_t *ev);
static void ngx_http_autotls_curl_timeout(ngx_event_t *ev);
static void ngx_http_autotls_curl_action(curl_socket_t sock, int flags);
static void ngx_http_autotls_curl_finished(void);
static void ngx_http_autotls_curl_free(ngx_http_autotls_xfer_t *x,
    CURLcode code, atls_http_response_t *resp);


static ngx_http_autotls_curl_t  ngx_http_autotls_curl;


/* this worker became the driver: transfers report to sched */
ngx_int_t
ngx_http_autotls_curl_init(atls_sched_t *sched, ngx_uint_t max_host_conns,
    ngx_log_t *log)
{
    ngx_http_autotls_curl_t  *cu = &ngx_http_autotls_curl;

    ngx_memzero(cu, sizeof(ngx_http_autotls_curl_t));
    cu->sched = sched;
    cu->log = log;
    ngx_queue_init(&cu->xfers);
    ngx_http_autotls_event_init(&cu->timer, ngx_http_autotls_curl_timeout,
                                log);

    cu->multi = curl_multi_init();
    if (cu->multi == NULL) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "autotls: curl_multi_init() failed");
        return NGX_ERROR;
    }

    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION,
                      ngx_http_autotls_curl_socket);
    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION,
                      ngx_http_autotls_curl_timer);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
    /* orders to one CA share its connections */
    curl_multi_setopt(cu->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      (long) max_host_conns);

    return NGX_OK;
}


/* after atls_sched_free(): ends what is left and closes every socket */
void
ngx_http_autotls_curl_cleanup(void)
{
    ngx_http_autotls_op_t    *o;
    ngx_http_autotls_curl_t  *cu = &ngx_http_autotls_curl;

    if (cu->multi == NULL) {
        return;
    }

    while (!ngx_queue_empty(&cu->xfers)) {
        o = ngx_queue_data(ngx_queue_head(&cu->xfers), ngx_http_autotls_op_t,
                           queue);
        ngx_http_autotls_curl_cancel(NULL, o->op);
    }

    /* closes the connections curl keeps, through the socket callback */
    curl_multi_cleanup(cu->multi);
    cu->multi = NULL;
    cu->sched = NULL;

    if (cu->timer.timer_set) {
        ngx_del_timer(&cu->timer);
    }
}


/* atls_sched_host_t.http_send */
int
ngx_http_autotls_curl_send(void *ctx, atls_sched_op_t *op,
    const atls_http_opts_t *o, const atls_http_request_t *req)
{
    atls_http_response_t      resp;
    ngx_http_autotls_xfer_t  *x;
    ngx_http_autotls_curl_t  *cu = &ngx_http_autotls_curl;

    if (cu->multi == NULL) {
        return -1;
    }

    x = ngx_alloc(sizeof(ngx_http_autotls_xfer_t), cu->log);
    if (x == NULL) {
        return -1;
    }

    x->op.op = op;
    x->xfer = NULL;

    /* curl copies the URL, the body and the options */
    x->easy = atls_http_easy_prepare(o, req, &x->xfer);
    if (x->easy == NULL) {
        ngx_free(x);
        return -1;
    }

    (void) curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (char *) x);

    ngx_queue_insert_tail(&cu->xfers, &x->op.queue);

    if (curl_multi_add_handle(cu->multi, x->easy) != CURLM_OK) {
        ngx_http_autotls_curl_free(x, CURLE_FAILED_INIT, &resp);
        atls_http_response_free(&resp);
        return -1;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cu->log, 0, "autotls: %s %s",
                   req->method, req->url);

    return 0;
}


/* atls_sched_host_t.http_cancel */
void
ngx_http_autotls_curl_cancel(void *ctx, atls_sched_op_t *op)
{
    atls_http_response_t      resp;
    ngx_http_autotls_xfer_t  *x;
    ngx_http_autotls_curl_t  *cu = &ngx_http_autotls_curl;

    if (cu->multi == NULL) {
        return;
    }

    x = (ngx_http_autotls_xfer_t *) ngx_http_autotls_op_find(&cu->xfers, op);
    if (x == NULL) {
        return;
    }

    ngx_http_autotls_curl_free(x, CURLE_ABORTED_BY_CALLBACK, &resp);
    atls_http_response_free(&resp);
}


/* takes x off the multi handle; resp gets what it received */
static void
ngx_http_autotls_curl_free(ngx_http_autotls_xfer_t *x, CURLcode code,
    atls_http_response_t *resp)
{
    ngx_http_autotls_curl_t  *cu = &ngx_http_autotls_curl;

    ngx_queue_remove(&x->op.queue);

    /* also drops a completion message curl may still hold for it */
    curl_multi_remove_handle(cu->multi, x->easy);

    ngx_memzero(resp, sizeof(atls_http_response_t));
    atls_http_easy_collect(x->xfer, x->easy, (int) code, resp);
    curl_easy_cleanup(x->easy);

    ngx_free(x);
}


static int
ngx_http_autotls_curl_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp)
{
    ngx_connection_t         *c = socketp;
    ngx_http_autotls_curl_t  *cu = userp;

    if (what == CURL_POLL_REMOVE) {
        if (c) {
            /* curl owns and closes the socket */
            ngx_http_autotls_socket_free(c, (uintptr_t) c->data);
            curl_multi_assign(cu->multi, s, NULL);
        }
        return 0;
    }

    if (c == NULL) {
        c = ngx_get_connection(s, cu->log);
        if (c == NULL) {
            return -1;
        }

        c->data = (void *) ngx_http_autotls_socket_ino(s);

        c->read->handler = ngx_http_autotls_curl_read;
        c->write->handler = ngx_http_autotls_curl_write;
        c->read->log = cu->log;
        c->write->log = cu->log;

        curl_multi_assign(cu->multi, s, c);
    }

    /* level-triggered, as curl expects */
    if (ngx_http_autotls_socket_want(c->read, NGX_READ_EVENT,
                                     what & CURL_POLL_IN)
        != NGX_OK
        || ngx_http_autotls_socket_want(c->write, NGX_WRITE_EVENT,
                                        what & CURL_POLL_OUT)
           != NGX_OK)
    {
        return -1;
    }

    return 0;
}


static int
ngx_http_autotls_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_http_autotls_curl_t  *cu = userp;

    if (timeout_ms < 0) {
        if (cu->timer.timer_set) {
            ngx_del_timer(&cu->timer);
        }
        return 0;
    }

    ngx_add_timer(&cu->timer, (ngx_msec_t) (timeout_ms ? timeout_ms : 1));

    return 0;
}


static void
ngx_http_autotls_curl_read(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    ngx_http_autotls_curl_action(c->fd, CURL_CSELECT_IN);
}


static void
ngx_http_autotls_curl_write(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    ngx_http_autotls_curl_action(c->fd, CURL_CSELECT_OUT);
}


static void
ngx_http_autotls_curl_timeout(ngx_event_t *ev)
{
    ngx_http_autotls_curl_action(CURL_SOCKET_TIMEOUT, 0);
}


static void
ngx_http_autotls_curl_action(curl_socket_t sock, int flags)
{
    int  running;

    if (ngx_http_autotls_curl.multi == NULL) {
        return;
    }

    (void) curl_multi_socket_action(ngx_http_autotls_curl.multi, sock, flags,
                                    &running);
    ngx_http_autotls_curl_finished();
}


/* hands every finished transfer back to the scheduler */
static void
ngx_http_autotls_curl_finished(void)
{
    int                       left;
    char                     *priv;
    CURLMsg                  *msg;
    CURLcode                  code;
    atls_sched_op_t          *op;
    atls_http_response_t      resp;
    ngx_http_autotls_xfer_t  *x;
    ngx_http_autotls_curl_t  *cu = &ngx_http_autotls_curl;

    /* the scheduler may send, cancel or stop from http_done */
    while (cu->multi != NULL
           && (msg = curl_multi_info_read(cu->multi, &left)) != NULL)
    {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        priv = NULL;
        (void) curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        x = (ngx_http_autotls_xfer_t *) priv;
        code = msg->data.result;

        if (x == NULL) {
            continue;
        }

        op = x->op.op;

        /* msg is invalid from here on */
        ngx_http_autotls_curl_free(x, code, &resp);

        atls_sched_http_done(cu->sched, op, &resp);
        atls_http_response_free(&resp);
    }
}
