/*
 * autotls for nginx: the renewal driver.
 *
 * Every worker tries, once a second, to hold the driver lock in shared
 * memory (holder pid + heartbeat); the holder runs the core's jobs one
 * certificate at a time.  HTTP goes through curl multi whose sockets and
 * timer are nginx events (ngx_get_connection + level-triggered read/write
 * events, one ngx_event_t timer), so the worker never blocks.  dns-01
 * hooks run in a child process watched through a pipe.
 *
 * Job state lives in the store: a worker that dies or exits mid-order
 * leaves meta "renewing" without a new certificate, and the next driver
 * simply starts that order again.
 */

#include "ngx_http_autotls_module.h"

#include <curl/curl.h>
#include <sys/syscall.h>


typedef struct {
    CURLM                      *multi;
    ngx_event_t                 curl_ev;    /* curl's timer */
    ngx_event_t                 elect_ev;   /* lock + heartbeat, every 1 s */
    ngx_event_t                 tick_ev;    /* autotls_check_interval */
    ngx_event_t                 kick_ev;    /* continue the current pass */
    ngx_event_t                 wait_ev;    /* engine asked to wait */
    ngx_event_t                 hook_ev;    /* polls a dns-01 hook */
    ngx_log_t                  *log;

    unsigned                    driver:1;
    unsigned                    pass_active:1;
    unsigned                    have_meta:1;
    unsigned                    want_ari:1;
    unsigned                    ari:1;       /* engine is an ARI query */
    ngx_uint_t                  pass_next;

    ngx_http_autotls_cert_t    *cert;
    atls_cert_meta_t            meta;
    atls_key_type_t             kts[ATLS_KEY_TYPE_MAX];
    ngx_uint_t                  nkt;
    ngx_uint_t                  kti;
    atls_key_type_t             kt;

    atls_job_t                 *job;
    atls_acme_t                *engine;
    atls_http_opts_t            http;
    void                       *easy;
    atls_http_xfer_t           *xfer;
    atls_http_response_t        resp;

    ngx_fd_t                    hook_fd;
    ngx_pid_t                   hook_pid;
    ngx_uint_t                  hook_setup;
    ngx_uint_t                  hook_polls;
} ngx_http_autotls_driver_t;


static void ngx_http_autotls_elect(ngx_event_t *ev);
static void ngx_http_autotls_tick(ngx_event_t *ev);
static void ngx_http_autotls_kick(ngx_event_t *ev);
static void ngx_http_autotls_wait_done(ngx_event_t *ev);
static void ngx_http_autotls_curl_timeout(ngx_event_t *ev);
static void ngx_http_autotls_sock_read(ngx_event_t *ev);
static void ngx_http_autotls_sock_write(ngx_event_t *ev);
static void ngx_http_autotls_hook_poll(ngx_event_t *ev);
static void ngx_http_autotls_step(const atls_http_response_t *resp);
static void ngx_http_autotls_job_done(void);
static void ngx_http_autotls_stop(void);
static void ngx_http_autotls_post_kick(void);


static ngx_http_autotls_driver_t  ngx_http_autotls_drv;
ngx_connection_t                  ngx_http_autotls_timer_conn;


static void
ngx_http_autotls_event_init(ngx_event_t *ev, ngx_event_handler_pt handler,
    ngx_log_t *log)
{
    ngx_memzero(ev, sizeof(ngx_event_t));
    ev->handler = handler;
    ev->log = log;
    /* nginx's debug log reads ev->data as a connection (its fd) */
    ev->data = &ngx_http_autotls_timer_conn;
    /* none of our timers may keep an exiting worker alive */
    ev->cancelable = 1;
}


/* ---- curl multi on nginx events ------------------------------------- */

static void
ngx_http_autotls_sock_close(ngx_connection_t *c)
{
    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    /* curl owns and closes the socket */
    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


static int
ngx_http_autotls_sock_cb(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp)
{
    ngx_connection_t           *c = socketp;
    ngx_http_autotls_driver_t  *drv = userp;

    if (what == CURL_POLL_REMOVE) {
        if (c) {
            ngx_http_autotls_sock_close(c);
            curl_multi_assign(drv->multi, s, NULL);
        }
        return 0;
    }

    if (c == NULL) {
        c = ngx_get_connection(s, drv->log);
        if (c == NULL) {
            return -1;
        }

        c->read->handler = ngx_http_autotls_sock_read;
        c->write->handler = ngx_http_autotls_sock_write;
        c->read->log = drv->log;
        c->write->log = drv->log;

        curl_multi_assign(drv->multi, s, c);
    }

    /* level-triggered (flags 0), as curl expects */

    if (what & CURL_POLL_IN) {
        if (!c->read->active
            && ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK)
        {
            return -1;
        }

    } else if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (what & CURL_POLL_OUT) {
        if (!c->write->active
            && ngx_add_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK)
        {
            return -1;
        }

    } else if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    return 0;
}


static int
ngx_http_autotls_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_http_autotls_driver_t  *drv = userp;

    if (timeout_ms < 0) {
        if (drv->curl_ev.timer_set) {
            ngx_del_timer(&drv->curl_ev);
        }
        return 0;
    }

    ngx_add_timer(&drv->curl_ev, (ngx_msec_t) (timeout_ms ? timeout_ms : 1));

    return 0;
}


static void
ngx_http_autotls_check_multi(void)
{
    int                         left;
    void                       *easy;
    CURLMsg                    *msg;
    CURLcode                    code;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    while ((msg = curl_multi_info_read(drv->multi, &left)) != NULL) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        /* msg is invalid once the handle is removed */
        easy = msg->easy_handle;
        code = msg->data.result;

        curl_multi_remove_handle(drv->multi, easy);

        if (easy != drv->easy) {
            curl_easy_cleanup(easy);
            continue;
        }

        ngx_memzero(&drv->resp, sizeof(atls_http_response_t));
        atls_http_easy_collect(drv->xfer, easy, (int) code, &drv->resp);
        curl_easy_cleanup(easy);
        drv->easy = NULL;
        drv->xfer = NULL;

        ngx_http_autotls_step(&drv->resp);
        atls_http_response_free(&drv->resp);
    }
}


static void
ngx_http_autotls_socket_action(curl_socket_t s, int flags)
{
    int  running;

    if (ngx_http_autotls_drv.multi == NULL) {
        return;
    }

    (void) curl_multi_socket_action(ngx_http_autotls_drv.multi, s, flags,
                                    &running);
    ngx_http_autotls_check_multi();
}


static void
ngx_http_autotls_sock_read(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    ngx_http_autotls_socket_action(c->fd, CURL_CSELECT_IN);
}


static void
ngx_http_autotls_sock_write(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    ngx_http_autotls_socket_action(c->fd, CURL_CSELECT_OUT);
}


static void
ngx_http_autotls_curl_timeout(ngx_event_t *ev)
{
    ngx_http_autotls_socket_action(CURL_SOCKET_TIMEOUT, 0);
}


static ngx_int_t
ngx_http_autotls_send(const atls_http_request_t *req)
{
    void                       *easy;
    atls_http_xfer_t           *xfer;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    xfer = NULL;
    easy = atls_http_easy_prepare(&drv->http, req, &xfer);
    if (easy == NULL) {
        return NGX_ERROR;
    }

    drv->easy = easy;
    drv->xfer = xfer;

    if (curl_multi_add_handle(drv->multi, easy) != CURLM_OK) {
        atls_http_response_t  resp;

        ngx_memzero(&resp, sizeof(resp));
        atls_http_easy_collect(xfer, easy, CURLE_FAILED_INIT, &resp);
        atls_http_response_free(&resp);
        curl_easy_cleanup(easy);
        drv->easy = NULL;
        drv->xfer = NULL;
        return NGX_ERROR;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, drv->log, 0, "autotls: %s %s",
                   req->method, req->url);

    return NGX_OK;
}


/* ---- dns-01 hooks ------------------------------------------------------ */

/*
 * The hook runs in a child; the child reports through a pipe rather than
 * its exit status because nginx's SIGCHLD handler reaps every child of a
 * worker before we could.
 */
static ngx_int_t
ngx_http_autotls_hook_start(const atls_challenge_t *ch, ngx_uint_t setup)
{
    int                         fds[2], rc;
    char                        why[256], msg[260];
    size_t                      len;
    ngx_pid_t                   pid;
    sigset_t                    set;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (pipe(fds) == -1) {
        return NGX_ERROR;
    }

    pid = fork();

    if (pid == -1) {
        close(fds[0]);
        close(fds[1]);
        return NGX_ERROR;
    }

    if (pid == 0) {
        close(fds[0]);

        /* the hook must not inherit listening sockets or client fds */
        if (fds[1] != 3) {
            if (dup2(fds[1], 3) == -1) {
                _exit(1);
            }
            fds[1] = 3;
        }
        (void) syscall(SYS_close_range, 4U, ~0U, 0U);

        signal(SIGCHLD, SIG_DFL);
        sigemptyset(&set);
        sigprocmask(SIG_SETMASK, &set, NULL);

        why[0] = '\0';
        rc = atls_dns_hook_run(drv->cert->issuer->is.dns_hook,
                               setup ? "setup" : "teardown", ch->dns_name,
                               ch->dns_value, why, sizeof(why));
        msg[0] = rc == 0 ? '0' : '1';
        len = ngx_strlen(why);
        ngx_memcpy(msg + 1, why, len);
        if (write(fds[1], msg, len + 1) != (ssize_t) (len + 1)) {
            _exit(1);
        }
        _exit(0);
    }

    close(fds[1]);

    if (ngx_nonblocking(fds[0]) == -1) {
        close(fds[0]);
        return NGX_ERROR;
    }

    drv->hook_fd = fds[0];
    drv->hook_pid = pid;
    drv->hook_setup = setup;
    drv->hook_polls = 0;

    ngx_add_timer(&drv->hook_ev, 100);

    return NGX_OK;
}


static void
ngx_http_autotls_hook_poll(ngx_event_t *ev)
{
    int                         ok;
    char                        buf[260];
    ssize_t                     n;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    n = read(drv->hook_fd, buf, sizeof(buf) - 1);

    if (n == -1 && ngx_errno == NGX_EAGAIN) {
        /* hooks get 10 minutes: DNS propagation can be slow */
        if (++drv->hook_polls < 6000) {
            ngx_add_timer(&drv->hook_ev, 100);
            return;
        }
        kill(drv->hook_pid, SIGKILL);
        ngx_cpystrn((u_char *) buf, (u_char *) "1dns hook timed out", 20);
        n = 19;
    }

    close(drv->hook_fd);
    drv->hook_fd = NGX_INVALID_FILE;

    if (n <= 0) {
        ngx_cpystrn((u_char *) buf, (u_char *) "1dns hook died", 15);
        n = 14;
    }

    buf[n] = '\0';
    ok = buf[0] == '0';

    if (drv->engine == NULL) {
        return;
    }

    if (drv->hook_setup) {
        if (!ok) {
            ngx_log_error(NGX_LOG_ERR, drv->log, 0,
                          "autotls: dns hook setup failed: %s", buf + 1);
        }
        atls_acme_challenge_result(drv->engine, ok, ok ? NULL : buf + 1);
    }

    ngx_http_autotls_step(NULL);
}


/* ---- the engine -------------------------------------------------------- */

static ngx_int_t
ngx_http_autotls_publish(const atls_challenge_t *ch, char *why, size_t len)
{
    int             dlen, klen;
    u_char         *buf, *p;
    X509           *x;
    EVP_PKEY       *k;
    ngx_int_t       rc;

    if (ch->type == ATLS_CHAL_HTTP01) {
        return ngx_http_autotls_shm_chal_add(ch, (u_char *) ch->key_authz,
                                             ngx_strlen(ch->key_authz), 0,
                                             why, len);
    }

    /* tls-alpn-01: workers parse DER only for validation handshakes */
    if (atls_tls_alpn_cert(ch->identifier, ch->key_authz, &x, &k) != 0) {
        ngx_snprintf((u_char *) why, len,
                     "cannot create the tls-alpn-01 certificate%Z");
        return NGX_ERROR;
    }

    dlen = i2d_X509(x, NULL);
    klen = i2d_PrivateKey(k, NULL);
    buf = (dlen > 0 && klen > 0) ? malloc(dlen + klen) : NULL;

    if (buf == NULL) {
        X509_free(x);
        EVP_PKEY_free(k);
        ngx_snprintf((u_char *) why, len, "cannot encode the certificate%Z");
        return NGX_ERROR;
    }

    p = buf;
    i2d_X509(x, &p);
    i2d_PrivateKey(k, &p);

    rc = ngx_http_autotls_shm_chal_add(ch, buf, dlen + klen, dlen, why, len);

    OPENSSL_cleanse(buf, dlen + klen);
    free(buf);
    X509_free(x);
    EVP_PKEY_free(k);

    return rc;
}


static void
ngx_http_autotls_step(const atls_http_response_t *resp)
{
    char                        why[256];
    time_t                      now, delta;
    ngx_int_t                   ok;
    atls_action_t               act;
    atls_http_response_t        fake;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    while (drv->engine) {

        now = time(NULL);
        ngx_memzero(&act, sizeof(act));

        atls_acme_step(drv->engine, resp, now, &act);
        resp = NULL;

        switch (act.kind) {

        case ATLS_ACT_SEND:
            if (ngx_http_autotls_send(act.request) == NGX_OK) {
                return;
            }

            /* the engine treats this like any transport failure */
            ngx_memzero(&fake, sizeof(fake));
            fake.transport_error = 1;
            ngx_cpystrn((u_char *) fake.error,
                        (u_char *) "cannot start the HTTP transfer",
                        sizeof(fake.error));
            resp = &fake;
            continue;

        case ATLS_ACT_WAIT:
            delta = act.until - now;
            ngx_add_timer(&drv->wait_ev,
                          delta > 0 ? (ngx_msec_t) delta * 1000 : 1);
            return;

        case ATLS_ACT_SETUP:
            if (act.challenge->type == ATLS_CHAL_DNS01) {
                if (ngx_http_autotls_hook_start(act.challenge, 1) == NGX_OK) {
                    return;
                }
                atls_acme_challenge_result(drv->engine, 0,
                                           "cannot start the dns hook");
                continue;
            }

            why[0] = '\0';
            ok = ngx_http_autotls_publish(act.challenge, why, sizeof(why));

            ngx_log_error(NGX_LOG_INFO, drv->log, 0,
                          "autotls: %s challenge for \"%s\" %s",
                          atls_challenge_type_name(act.challenge->type),
                          act.challenge->identifier,
                          ok == NGX_OK ? "published" : "not published");

            atls_acme_challenge_result(drv->engine, ok == NGX_OK,
                                       ok == NGX_OK ? NULL : why);
            continue;

        case ATLS_ACT_TEARDOWN:
            if (act.challenge->type == ATLS_CHAL_DNS01) {
                if (ngx_http_autotls_hook_start(act.challenge, 0) == NGX_OK) {
                    return;
                }
                continue;
            }

            ngx_http_autotls_shm_chal_del(act.challenge);
            continue;

        case ATLS_ACT_DONE:
        case ATLS_ACT_FAILED:
            ngx_http_autotls_job_done();
            return;
        }
    }
}


static void
ngx_http_autotls_wait_done(ngx_event_t *ev)
{
    ngx_http_autotls_step(NULL);
}


static void
ngx_http_autotls_job_done(void)
{
    char                        err[512];
    const char                 *kt;
    const atls_error_t         *e;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (drv->ari) {
        /* the CA's renewal window (RFC 9773): may move renew_at earlier */
        err[0] = '\0';
        if (atls_job_ari_finish(ngx_http_autotls_store, drv->meta.id,
                                drv->engine, time(NULL), err, sizeof(err))
            != 0)
        {
            ngx_log_error(NGX_LOG_WARN, drv->log, 0,
                          "autotls: certificate \"%s\": renewal information: "
                          "%s", drv->meta.id, err);
        }

        atls_acme_free(drv->engine);
        drv->engine = NULL;
        drv->ari = 0;

        ngx_http_autotls_post_kick();
        return;
    }

    kt = atls_key_type_name(drv->kt);

    e = atls_acme_error(drv->engine);
    if (e && e->cls != ATLS_ERR_NONE) {
        /* once per attempt: the CA's own words */
        ngx_log_error(NGX_LOG_ERR, drv->log, 0,
                      "autotls: certificate \"%s\" (%s): order failed "
                      "in state %s: %s: %s", drv->meta.id, kt,
                      atls_acme_state_name(drv->engine), e->type, e->detail);
    }

    err[0] = '\0';

    if (atls_job_finish(drv->job, time(NULL), err, sizeof(err)) == 0) {
        ngx_http_autotls_shm_bump(drv->cert->index);
        ngx_log_error(NGX_LOG_NOTICE, drv->log, 0,
                      "autotls: certificate \"%s\" (%s) issued and deployed",
                      drv->meta.id, kt);

    } else if (e == NULL || e->cls == ATLS_ERR_NONE) {
        ngx_log_error(NGX_LOG_ERR, drv->log, 0,
                      "autotls: certificate \"%s\" (%s) not deployed: %s",
                      drv->meta.id, kt, err);
    }

    atls_job_free(drv->job);
    drv->job = NULL;
    drv->engine = NULL;

    ngx_http_autotls_post_kick();
}


static void
ngx_http_autotls_post_kick(void)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (!drv->kick_ev.posted) {
        ngx_post_event(&drv->kick_ev, &ngx_posted_events);
    }
}


/* ---- passes over the certificates -------------------------------------- */

/* ngx_current_msec does not move inside one event handler */
static ngx_msec_t
ngx_http_autotls_msec(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (ngx_msec_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static void
ngx_http_autotls_prepare(ngx_http_autotls_cert_t *cert)
{
    int                         force, all, rc;
    char                        err[512];
    size_t                      k;
    time_t                      now;
    atls_key_type_t             t;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    ngx_memzero(&drv->meta, sizeof(atls_cert_meta_t));
    err[0] = '\0';

    if (atls_job_ensure(ngx_http_autotls_store,
                        (const char *const *) cert->names, cert->n_names,
                        &cert->issuer->is, &drv->meta, err, sizeof(err))
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, drv->log, 0,
                      "autotls: certificate \"%s\": %s", cert->id, err);
        atls_cert_meta_free(&drv->meta);
        return;
    }

    /* EAB secrets are not persisted: take them from the configuration */
    if (drv->meta.issuer.eab_kid == NULL && cert->issuer->is.eab_kid) {
        drv->meta.issuer.eab_kid = atls_strdup(cert->issuer->is.eab_kid);
        drv->meta.issuer.eab_hmac = atls_strdup(cert->issuer->is.eab_hmac);
    }

    now = time(NULL);
    force = atls_store_take_request(ngx_http_autotls_store, drv->meta.id);

    if (force) {
        ngx_log_error(NGX_LOG_NOTICE, drv->log, 0,
                      "autotls: certificate \"%s\": renewal requested by "
                      "an operator", drv->meta.id);
    }

    if (!atls_job_due(ngx_http_autotls_store, &drv->meta, now, force)) {

        if (atls_job_ari_due(&drv->meta, now)) {
            drv->want_ari = 1;
            drv->nkt = 0;
            drv->kti = 0;
            drv->cert = cert;
            drv->have_meta = 1;
            return;
        }

        atls_cert_meta_free(&drv->meta);
        return;
    }

    all = force || (drv->meta.renew_at && now >= drv->meta.renew_at);

    drv->nkt = 0;
    drv->kti = 0;

    for (k = 0; k < cert->issuer->is.n_key_types; k++) {
        t = cert->issuer->is.key_types[k];

        if (!all) {
            rc = atls_store_load_cert(ngx_http_autotls_store, drv->meta.id, t,
                                      NULL, NULL, err, sizeof(err));
            if (rc == ATLS_STORE_OK) {
                continue;
            }
        }

        drv->kts[drv->nkt++] = t;
    }

    if (drv->nkt == 0) {
        /* due for a reason we cannot split by key type: do them all */
        for (k = 0; k < cert->issuer->is.n_key_types; k++) {
            drv->kts[drv->nkt++] = cert->issuer->is.key_types[k];
        }
    }

    drv->cert = cert;
    drv->have_meta = 1;
}


static void
ngx_http_autotls_kick(ngx_event_t *ev)
{
    char                        err[512];
    ngx_msec_t                  start;
    ngx_uint_t                  checked;
    ngx_http_autotls_cert_t   **certs;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (!drv->driver || drv->engine) {
        return;
    }

    certs = ngx_http_autotls_mcf->certs.elts;
    checked = 0;
    start = ngx_http_autotls_msec();

    for ( ;; ) {

        if (drv->have_meta) {

            if (drv->want_ari) {
                drv->want_ari = 0;
                err[0] = '\0';

                drv->engine = atls_job_ari_start(ngx_http_autotls_store,
                                                 &drv->meta, err, sizeof(err));
                if (drv->engine) {
                    drv->ari = 1;
                    atls_job_http_opts(&drv->cert->issuer->is, &drv->http);
                    ngx_http_autotls_step(NULL);
                    return;
                }

                ngx_log_debug2(NGX_LOG_DEBUG_HTTP, drv->log, 0,
                               "autotls: no renewal information for \"%s\": "
                               "%s", drv->meta.id, err);
            }

            while (drv->kti < drv->nkt) {
                drv->kt = drv->kts[drv->kti++];
                err[0] = '\0';

                drv->job = atls_job_start(ngx_http_autotls_store, &drv->meta,
                                          drv->kt, err, sizeof(err));
                if (drv->job == NULL) {
                    ngx_log_error(NGX_LOG_ERR, drv->log, 0,
                                  "autotls: certificate \"%s\" (%s): cannot "
                                  "start an order: %s", drv->meta.id,
                                  atls_key_type_name(drv->kt), err);
                    continue;
                }

                drv->engine = atls_job_engine(drv->job);
                atls_job_http_opts(&drv->cert->issuer->is, &drv->http);

                ngx_log_error(NGX_LOG_NOTICE, drv->log, 0,
                              "autotls: ordering certificate \"%s\" (%s) "
                              "from %s", drv->meta.id,
                              atls_key_type_name(drv->kt),
                              drv->cert->issuer->is.directory);

                ngx_http_autotls_step(NULL);
                return;
            }

            atls_cert_meta_free(&drv->meta);
            drv->have_meta = 0;
        }

        if (drv->pass_next >= ngx_http_autotls_mcf->certs.nelts) {
            drv->pass_active = 0;
            ngx_add_timer(&drv->tick_ev, ngx_http_autotls_mcf->check_interval);
            return;
        }

        /*
         * Each check reads (and after a configuration change writes) the
         * store: with thousands of certificates the pass runs in slices of
         * a few milliseconds so that clients are served in between.
         */
        if (checked++ > 0 && ngx_http_autotls_msec() - start >= 3) {
            ngx_add_timer(&drv->kick_ev, 15);
            return;
        }

        ngx_http_autotls_prepare(certs[drv->pass_next++]);
    }
}


static void
ngx_http_autotls_tick(ngx_event_t *ev)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (!drv->driver) {
        return;
    }

    if (drv->pass_active) {
        /* a long order is still running; look again later */
        ngx_add_timer(&drv->tick_ev, ngx_http_autotls_mcf->check_interval);
        return;
    }

    drv->pass_active = 1;
    drv->pass_next = 0;

    ngx_http_autotls_kick(ev);
}


/* ---- election -------------------------------------------------------- */

static void
ngx_http_autotls_elect(ngx_event_t *ev)
{
    ngx_int_t                   mine;
    ngx_uint_t                  took;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        ngx_http_autotls_stop();
        return;
    }

    mine = ngx_http_autotls_shm_elect(ngx_time(), &took);

    if (mine && !drv->driver) {
        ngx_log_error(NGX_LOG_NOTICE, drv->log, 0,
                      "autotls: worker %P drives issuance and renewal",
                      ngx_pid);

        if (took) {
            /* whatever a dead driver published is stale now */
            ngx_http_autotls_shm_chal_clear();
        }

        if (drv->multi == NULL) {
            drv->multi = curl_multi_init();
            if (drv->multi == NULL) {
                ngx_log_error(NGX_LOG_ALERT, drv->log, 0,
                              "autotls: curl_multi_init() failed");
                ngx_http_autotls_shm_resign();
                goto next;
            }

            curl_multi_setopt(drv->multi, CURLMOPT_SOCKETFUNCTION,
                              ngx_http_autotls_sock_cb);
            curl_multi_setopt(drv->multi, CURLMOPT_SOCKETDATA, drv);
            curl_multi_setopt(drv->multi, CURLMOPT_TIMERFUNCTION,
                              ngx_http_autotls_timer_cb);
            curl_multi_setopt(drv->multi, CURLMOPT_TIMERDATA, drv);
        }

        drv->driver = 1;
        drv->pass_active = 0;
        ngx_add_timer(&drv->tick_ev, 1);

    } else if (!mine && drv->driver) {
        ngx_log_error(NGX_LOG_WARN, drv->log, 0,
                      "autotls: worker %P lost the driver lock", ngx_pid);
        ngx_http_autotls_stop();
    }

next:

    ngx_add_timer(&drv->elect_ev, NGX_HTTP_AUTOTLS_ELECT_MS);
}


/* abandons the running order (the next driver restarts it) */
static void
ngx_http_autotls_stop(void)
{
    atls_http_response_t        resp;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (drv->easy) {
        curl_multi_remove_handle(drv->multi, drv->easy);
        ngx_memzero(&resp, sizeof(resp));
        atls_http_easy_collect(drv->xfer, drv->easy,
                               CURLE_ABORTED_BY_CALLBACK, &resp);
        atls_http_response_free(&resp);
        curl_easy_cleanup(drv->easy);
        drv->easy = NULL;
        drv->xfer = NULL;
    }

    if (drv->hook_fd != NGX_INVALID_FILE) {
        close(drv->hook_fd);
        drv->hook_fd = NGX_INVALID_FILE;
    }

    if (drv->job) {
        atls_job_free(drv->job);
        drv->job = NULL;
        drv->engine = NULL;

    } else if (drv->engine) {
        atls_acme_free(drv->engine);
        drv->engine = NULL;
    }

    drv->ari = 0;
    drv->want_ari = 0;

    if (drv->have_meta) {
        atls_cert_meta_free(&drv->meta);
        drv->have_meta = 0;
    }

    if (drv->driver) {
        ngx_http_autotls_shm_chal_clear();
        ngx_http_autotls_shm_resign();
        drv->driver = 0;
    }

    drv->pass_active = 0;

    if (drv->tick_ev.timer_set) {
        ngx_del_timer(&drv->tick_ev);
    }

    if (drv->wait_ev.timer_set) {
        ngx_del_timer(&drv->wait_ev);
    }

    if (drv->hook_ev.timer_set) {
        ngx_del_timer(&drv->hook_ev);
    }

    if (drv->kick_ev.posted) {
        ngx_delete_posted_event(&drv->kick_ev);
    }

    if (drv->kick_ev.timer_set) {
        ngx_del_timer(&drv->kick_ev);
    }
}


ngx_int_t
ngx_http_autotls_driver_init(ngx_cycle_t *cycle)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    ngx_memzero(drv, sizeof(ngx_http_autotls_driver_t));
    drv->log = cycle->log;
    ngx_http_autotls_timer_conn.fd = (ngx_socket_t) -1;
    drv->hook_fd = NGX_INVALID_FILE;

    ngx_http_autotls_event_init(&drv->curl_ev, ngx_http_autotls_curl_timeout,
                                cycle->log);
    ngx_http_autotls_event_init(&drv->elect_ev, ngx_http_autotls_elect,
                                cycle->log);
    ngx_http_autotls_event_init(&drv->tick_ev, ngx_http_autotls_tick,
                                cycle->log);
    ngx_http_autotls_event_init(&drv->kick_ev, ngx_http_autotls_kick,
                                cycle->log);
    ngx_http_autotls_event_init(&drv->wait_ev, ngx_http_autotls_wait_done,
                                cycle->log);
    ngx_http_autotls_event_init(&drv->hook_ev, ngx_http_autotls_hook_poll,
                                cycle->log);

    /* stagger the workers so that the first one usually wins */
    ngx_add_timer(&drv->elect_ev, 10 + 50 * ngx_worker);

    return NGX_OK;
}


void
ngx_http_autotls_driver_exit(ngx_cycle_t *cycle)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    ngx_http_autotls_stop();

    if (drv->elect_ev.timer_set) {
        ngx_del_timer(&drv->elect_ev);
    }

    if (drv->multi) {
        curl_multi_cleanup(drv->multi);
        drv->multi = NULL;
    }

    if (drv->curl_ev.timer_set) {
        ngx_del_timer(&drv->curl_ev);
    }
}
