/*
 * autotls for nginx: the renewal driver.
 *
 * Every worker tries, once a second, to hold the driver lock in shared
 * memory (holder pid + heartbeat); the holder runs up to
 * autotls_max_parallel engines at once (the rules of common/job_multi.c:
 * the key types of a certificate one after the other, one order creates a
 * CA's account before the others start).  HTTP goes through curl multi
 * whose sockets and timer are nginx events (ngx_get_connection +
 * level-triggered read/write events, one ngx_event_t timer), so the worker
 * never blocks on the network.  dns-01 hooks run in a child process
 * watched through a pipe.  The holder also watches the store for deploys
 * by anyone else (ngx_http_autotls_watch.c).
 *
 * Job state lives in the store: a worker that dies or exits mid-order
 * leaves meta "renewing" without a new certificate, and the next driver
 * simply starts that order again.
 */

#include "ngx_http_autotls_module.h"
#include "acme_published.h"

#include <curl/curl.h>
#include <sys/syscall.h>


typedef struct ngx_http_autotls_slot_s  ngx_http_autotls_slot_t;

/*
 * One order (or ARI query) in flight.  A slot is free (busy == 0), queued
 * (busy, no engine: its next key type waits to start), or running: a
 * transfer, a wait timer or a dns-01 hook is pending.  The key types of one
 * certificate share its store lock, so they run one after the other in the
 * same slot.
 */
struct ngx_http_autotls_slot_s {
    ngx_event_t                 wait_ev;    /* engine asked to wait */
    ngx_event_t                 hook_ev;    /* polls a dns-01 hook */

    unsigned                    busy:1;
    unsigned                    want_ari:1;
    unsigned                    ari:1;      /* engine is an ARI query */
    unsigned                    hold:1;     /* creating the CA account */
    unsigned                    hook_setup:1;
    unsigned                    failed:1;   /* the engine ended FAILED */

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

    atls_published_t            pub;        /* torn down if the order fails */
    atls_challenge_ops_t        ops;
    const atls_challenge_t     *hook_ch;    /* engine's, valid until a step */

    ngx_fd_t                    hook_fd;
    ngx_pid_t                   hook_pid;
    ngx_uint_t                  hook_polls;
};


typedef struct {
    CURLM                      *multi;
    ngx_event_t                 curl_ev;    /* curl's timer */
    ngx_event_t                 elect_ev;   /* lock + heartbeat, every 1 s */
    ngx_event_t                 tick_ev;    /* autotls_check_interval */
    ngx_event_t                 kick_ev;    /* continue the current pass */
    ngx_log_t                  *log;

    unsigned                    driver:1;
    unsigned                    pass_active:1;
    ngx_uint_t                  pass_next;

    ngx_http_autotls_slot_t    *slots;
    ngx_uint_t                  nslots;
} ngx_http_autotls_driver_t;


#define NGX_HTTP_AUTOTLS_STARTED  0
#define NGX_HTTP_AUTOTLS_BLOCKED  1
#define NGX_HTTP_AUTOTLS_IDLE     2


static void ngx_http_autotls_elect(ngx_event_t *ev);
static void ngx_http_autotls_tick(ngx_event_t *ev);
static void ngx_http_autotls_kick(ngx_event_t *ev);
static void ngx_http_autotls_wait_done(ngx_event_t *ev);
static void ngx_http_autotls_curl_timeout(ngx_event_t *ev);
static void ngx_http_autotls_sock_read(ngx_event_t *ev);
static void ngx_http_autotls_sock_write(ngx_event_t *ev);
static void ngx_http_autotls_hook_poll(ngx_event_t *ev);
static void ngx_http_autotls_step(ngx_http_autotls_slot_t *s,
    const atls_http_response_t *resp);
static void ngx_http_autotls_job_done(ngx_http_autotls_slot_t *s);
static void ngx_http_autotls_slot_abandon(ngx_http_autotls_slot_t *s);
static void ngx_http_autotls_stop(void);
static void ngx_http_autotls_post_kick(void);


static ngx_http_autotls_driver_t  ngx_http_autotls_drv;
ngx_connection_t                  ngx_http_autotls_timer_conn;


void
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
    char                       *priv;
    void                       *easy;
    CURLMsg                    *msg;
    CURLcode                    code;
    atls_http_response_t        resp;
    ngx_http_autotls_slot_t    *s;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    while ((msg = curl_multi_info_read(drv->multi, &left)) != NULL) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        /* msg is invalid once the handle is removed */
        easy = msg->easy_handle;
        code = msg->data.result;

        curl_multi_remove_handle(drv->multi, easy);

        priv = NULL;
        (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        s = (ngx_http_autotls_slot_t *) priv;

        if (s == NULL || s->easy != easy) {
            curl_easy_cleanup(easy);
            continue;
        }

        ngx_memzero(&resp, sizeof(atls_http_response_t));
        atls_http_easy_collect(s->xfer, easy, (int) code, &resp);
        curl_easy_cleanup(easy);
        s->easy = NULL;
        s->xfer = NULL;

        ngx_http_autotls_step(s, &resp);
        atls_http_response_free(&resp);
    }
}


static void
ngx_http_autotls_socket_action(curl_socket_t sock, int flags)
{
    int  running;

    if (ngx_http_autotls_drv.multi == NULL) {
        return;
    }

    (void) curl_multi_socket_action(ngx_http_autotls_drv.multi, sock, flags,
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
ngx_http_autotls_send(ngx_http_autotls_slot_t *s,
    const atls_http_request_t *req)
{
    void                       *easy;
    atls_http_xfer_t           *xfer;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    xfer = NULL;
    easy = atls_http_easy_prepare(&s->http, req, &xfer);
    if (easy == NULL) {
        return NGX_ERROR;
    }

    s->easy = easy;
    s->xfer = xfer;

    (void) curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *) s);

    if (curl_multi_add_handle(drv->multi, easy) != CURLM_OK) {
        atls_http_response_t  resp;

        ngx_memzero(&resp, sizeof(resp));
        atls_http_easy_collect(xfer, easy, CURLE_FAILED_INIT, &resp);
        atls_http_response_free(&resp);
        curl_easy_cleanup(easy);
        s->easy = NULL;
        s->xfer = NULL;
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
 * worker before we could.  Without a slot (a teardown after a failed
 * order) nobody waits for the result.
 */
static ngx_int_t
ngx_http_autotls_hook_start(ngx_http_autotls_slot_t *s, const char *hook,
    const atls_challenge_t *ch, ngx_uint_t setup)
{
    int                         fds[2], rc;
    char                        why[256], msg[260];
    size_t                      len;
    ngx_pid_t                   pid;
    sigset_t                    set;

    fds[0] = -1;
    fds[1] = -1;

    if (s != NULL && pipe(fds) == -1) {
        return NGX_ERROR;
    }

    pid = fork();

    if (pid == -1) {
        if (s != NULL) {
            close(fds[0]);
            close(fds[1]);
        }
        return NGX_ERROR;
    }

    if (pid == 0) {
        if (s != NULL) {
            close(fds[0]);

            /* the hook must not inherit listening sockets or client fds */
            if (fds[1] != 3) {
                if (dup2(fds[1], 3) == -1) {
                    _exit(1);
                }
                fds[1] = 3;
            }
            (void) syscall(SYS_close_range, 4U, ~0U, 0U);

        } else {
            (void) syscall(SYS_close_range, 3U, ~0U, 0U);
        }

        signal(SIGCHLD, SIG_DFL);
        sigemptyset(&set);
        sigprocmask(SIG_SETMASK, &set, NULL);

        why[0] = '\0';
        rc = atls_dns_hook_run(hook, setup ? "setup" : "teardown",
                               ch->dns_name, ch->dns_value, why, sizeof(why));
        if (s == NULL) {
            _exit(rc == 0 ? 0 : 1);
        }

        msg[0] = rc == 0 ? '0' : '1';
        len = ngx_strlen(why);
        ngx_memcpy(msg + 1, why, len);
        if (write(fds[1], msg, len + 1) != (ssize_t) (len + 1)) {
            _exit(1);
        }
        _exit(0);
    }

    if (s == NULL) {
        return NGX_OK;
    }

    close(fds[1]);

    if (ngx_nonblocking(fds[0]) == -1) {
        close(fds[0]);
        return NGX_ERROR;
    }

    s->hook_fd = fds[0];
    s->hook_pid = pid;
    s->hook_setup = setup ? 1 : 0;
    s->hook_polls = 0;
    s->hook_ch = ch;

    ngx_add_timer(&s->hook_ev, 100);

    return NGX_OK;
}


/* the engine's challenge is already published: record it, report success */
static int
ngx_http_autotls_setup_done(void *ctx, const atls_challenge_t *c, char *why,
    size_t len)
{
    return 0;
}


static void
ngx_http_autotls_hook_poll(ngx_event_t *ev)
{
    int                       ok;
    char                      buf[260];
    ssize_t                   n;
    atls_challenge_ops_t      done;
    ngx_http_autotls_slot_t  *s;

    s = (ngx_http_autotls_slot_t *)
            ((u_char *) ev - offsetof(ngx_http_autotls_slot_t, hook_ev));

    n = read(s->hook_fd, buf, sizeof(buf) - 1);

    if (n == -1 && ngx_errno == NGX_EAGAIN) {
        /* hooks get 10 minutes: DNS propagation can be slow */
        if (++s->hook_polls < 6000) {
            ngx_add_timer(&s->hook_ev, 100);
            return;
        }
        kill(s->hook_pid, SIGKILL);
        ngx_cpystrn((u_char *) buf, (u_char *) "1dns hook timed out", 20);
        n = 19;
    }

    close(s->hook_fd);
    s->hook_fd = NGX_INVALID_FILE;

    if (n <= 0) {
        ngx_cpystrn((u_char *) buf, (u_char *) "1dns hook died", 15);
        n = 14;
    }

    buf[n] = '\0';
    ok = buf[0] == '0';

    if (s->engine == NULL) {
        return;
    }

    if (s->hook_setup) {
        if (ok) {
            /* remembered so that a failed order withdraws the record */
            ngx_memzero(&done, sizeof(done));
            done.setup = ngx_http_autotls_setup_done;
            atls_published_setup(&s->pub, s->engine, &done, s->hook_ch);

        } else {
            ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                          "autotls: dns hook setup failed: %s", buf + 1);
            atls_acme_challenge_result(s->engine, 0, buf + 1);
        }
    }

    s->hook_ch = NULL;

    ngx_http_autotls_step(s, NULL);
}


/* ---- challenges -------------------------------------------------------- */

static int
ngx_http_autotls_publish(void *ctx, const atls_challenge_t *ch, char *why,
    size_t len)
{
    int                       dlen, klen;
    u_char                   *buf, *p;
    X509                     *x;
    EVP_PKEY                 *k;
    ngx_int_t                 rc;

    why[0] = '\0';

    if (ch->type == ATLS_CHAL_HTTP01) {
        rc = ngx_http_autotls_shm_chal_add(ch, (u_char *) ch->key_authz,
                                           ngx_strlen(ch->key_authz), 0,
                                           why, len);
        goto done;
    }

    if (ch->type != ATLS_CHAL_TLSALPN01) {
        ngx_snprintf((u_char *) why, len, "no responder for %s%Z",
                     atls_challenge_type_name(ch->type));
        return -1;
    }

    /* tls-alpn-01: workers parse DER only for validation handshakes */
    if (atls_tls_alpn_cert(ch->identifier, ch->key_authz, &x, &k) != 0) {
        ngx_snprintf((u_char *) why, len,
                     "cannot create the tls-alpn-01 certificate%Z");
        return -1;
    }

    dlen = i2d_X509(x, NULL);
    klen = i2d_PrivateKey(k, NULL);
    buf = (dlen > 0 && klen > 0) ? malloc(dlen + klen) : NULL;

    if (buf == NULL) {
        X509_free(x);
        EVP_PKEY_free(k);
        ngx_snprintf((u_char *) why, len, "cannot encode the certificate%Z");
        return -1;
    }

    p = buf;
    i2d_X509(x, &p);
    i2d_PrivateKey(k, &p);

    rc = ngx_http_autotls_shm_chal_add(ch, buf, dlen + klen, dlen, why, len);

    OPENSSL_cleanse(buf, dlen + klen);
    free(buf);
    X509_free(x);
    EVP_PKEY_free(k);

done:

    ngx_log_error(NGX_LOG_INFO, ngx_http_autotls_drv.log, 0,
                  "autotls: %s challenge for \"%s\" %s",
                  atls_challenge_type_name(ch->type), ch->identifier,
                  rc == NGX_OK ? "published" : "not published");

    return rc == NGX_OK ? 0 : -1;
}


static void
ngx_http_autotls_withdraw(void *ctx, const atls_challenge_t *ch)
{
    ngx_http_autotls_slot_t  *s = ctx;

    if (ch->type != ATLS_CHAL_DNS01) {
        ngx_http_autotls_shm_chal_del(ch);
        return;
    }

    /* after a failed order: the TXT record must not stay behind */
    if (s->cert == NULL
        || ngx_http_autotls_hook_start(NULL, s->cert->issuer->is.dns_hook,
                                       ch, 0)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_http_autotls_drv.log, 0,
                      "autotls: cannot run the dns hook to remove the "
                      "record of \"%s\"", ch->identifier);
    }
}


/* ---- the engines ------------------------------------------------------- */

static void
ngx_http_autotls_step(ngx_http_autotls_slot_t *s,
    const atls_http_response_t *resp)
{
    long                  ms;
    time_t                now;
    const char           *url;
    atls_action_t         act;
    atls_http_response_t  fake;

    while (s->engine) {

        now = time(NULL);
        ngx_memzero(&act, sizeof(act));

        atls_acme_step(s->engine, resp, now, &act);
        resp = NULL;

        if (s->hold) {
            url = atls_acme_result_account_url(s->engine);
            if (url != NULL && url[0] != '\0') {
                /* the account exists: orders held back may start now */
                s->hold = 0;
                ngx_http_autotls_post_kick();
            }
        }

        switch (act.kind) {

        case ATLS_ACT_SEND:
            if (ngx_http_autotls_send(s, act.request) == NGX_OK) {
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
            /* nginx timers are in ms: first polls come after 100-800 ms */
            ms = act.delay_ms > 0 ? act.delay_ms
                 : act.until > now ? (long) (act.until - now) * 1000 : 1;
            ngx_add_timer(&s->wait_ev, (ngx_msec_t) ms);
            return;

        case ATLS_ACT_SETUP:
            if (act.challenge->type == ATLS_CHAL_DNS01) {
                if (ngx_http_autotls_hook_start(s,
                                                s->cert->issuer->is.dns_hook,
                                                act.challenge, 1)
                    == NGX_OK)
                {
                    return;
                }
                atls_acme_challenge_result(s->engine, 0,
                                           "cannot start the dns hook");
                continue;
            }

            atls_published_setup(&s->pub, s->engine, &s->ops, act.challenge);
            continue;

        case ATLS_ACT_TEARDOWN:
            if (act.challenge->type == ATLS_CHAL_DNS01) {
                /* forget it first: the hook below removes it */
                atls_published_teardown(&s->pub, NULL, act.challenge);
                if (ngx_http_autotls_hook_start(s,
                                                s->cert->issuer->is.dns_hook,
                                                act.challenge, 0)
                    == NGX_OK)
                {
                    return;
                }
                continue;
            }

            atls_published_teardown(&s->pub, &s->ops, act.challenge);
            continue;

        case ATLS_ACT_DONE:
        case ATLS_ACT_FAILED:
        default:
            s->failed = act.kind != ATLS_ACT_DONE;
            ngx_http_autotls_job_done(s);
            return;
        }
    }
}


static void
ngx_http_autotls_wait_done(ngx_event_t *ev)
{
    ngx_http_autotls_slot_t  *s;

    s = (ngx_http_autotls_slot_t *)
            ((u_char *) ev - offsetof(ngx_http_autotls_slot_t, wait_ev));

    ngx_http_autotls_step(s, NULL);
}


static void
ngx_http_autotls_job_done(ngx_http_autotls_slot_t *s)
{
    char                        err[512];
    const char                 *kt;
    const atls_error_t         *e;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (s->ari) {
        time_t  ws, we;

        /*
         * A directory without renewalInfo answers the same for every
         * certificate: ask once a day per issuer, not once per certificate
         * (10,000 names would cost 10,000 requests and store writes).
         */
        if (!s->failed && atls_acme_result_ari(s->engine, &ws, &we) != 0) {
            s->cert->issuer->no_ari_until = time(NULL) + 86400;
        }

        /* the CA's renewal window (RFC 9773): may move renew_at earlier */
        err[0] = '\0';
        if (atls_job_ari_finish(ngx_http_autotls_store, s->meta.id,
                                s->engine, time(NULL), err, sizeof(err))
            != 0)
        {
            ngx_log_error(NGX_LOG_WARN, drv->log, 0,
                          "autotls: certificate \"%s\": renewal information: "
                          "%s", s->meta.id, err);
        }

        atls_acme_free(s->engine);
        s->engine = NULL;
        s->ari = 0;

        ngx_http_autotls_post_kick();
        return;
    }

    /* whatever the engine did not withdraw itself (a failed order) */
    atls_published_teardown_all(&s->pub, &s->ops);
    s->hold = 0;

    kt = atls_key_type_name(s->kt);

    /* a DONE engine may keep the error of a retried request (badNonce) */
    e = s->failed ? atls_acme_error(s->engine) : NULL;
    if (e && e->cls != ATLS_ERR_NONE) {
        /* once per attempt: the CA's own words */
        ngx_log_error(NGX_LOG_ERR, drv->log, 0,
                      "autotls: certificate \"%s\" (%s): order failed "
                      "in state %s: %s: %s", s->meta.id, kt,
                      atls_acme_state_name(s->engine), e->type, e->detail);
    }

    err[0] = '\0';

    if (atls_job_finish(s->job, time(NULL), err, sizeof(err)) == 0) {
        /* served by every worker from its next handshake on */
        ngx_http_autotls_watch_deployed(s->cert);
        ngx_log_error(NGX_LOG_NOTICE, drv->log, 0,
                      "autotls: certificate \"%s\" (%s) issued and deployed",
                      s->meta.id, kt);

    } else if (e == NULL || e->cls == ATLS_ERR_NONE) {
        ngx_log_error(NGX_LOG_ERR, drv->log, 0,
                      "autotls: certificate \"%s\" (%s) not deployed: %s",
                      s->meta.id, kt, err);
    }

    atls_job_free(s->job);
    s->job = NULL;
    s->engine = NULL;

    /* the next key type, or the slot for the next certificate */
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


/* ---- slots --------------------------------------------------------------- */

/* ngx_current_msec does not move inside one event handler */
ngx_msec_t
ngx_http_autotls_msec(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (ngx_msec_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/* 1 when the store knows no account URL for the directory yet */
static ngx_uint_t
ngx_http_autotls_first_contact(const char *directory)
{
    int        created;
    char      *url, err[256];
    EVP_PKEY  *key;
    ngx_int_t  first;

    key = NULL;
    url = NULL;
    created = 0;

    if (atls_store_load_account(ngx_http_autotls_store, directory, &key, &url,
                                &created, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        return 0;   /* the job reports store trouble itself */
    }

    first = url == NULL || url[0] == '\0';
    EVP_PKEY_free(key);
    free(url);

    return first;
}


/*
 * A CA must not see several orders create the same account at once (Pebble
 * answers all but one with serverInternal): while one order is creating the
 * account of a directory, orders for that directory wait.
 */
static ngx_uint_t
ngx_http_autotls_blocked(ngx_http_autotls_slot_t *s)
{
    ngx_uint_t                  i;
    ngx_http_autotls_slot_t    *o;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    for (i = 0; i < drv->nslots; i++) {
        o = &drv->slots[i];

        if (o != s && o->busy && o->hold
            && ngx_strcmp(o->meta.issuer.directory, s->meta.issuer.directory)
               == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_uint_t
ngx_http_autotls_running(void)
{
    ngx_uint_t                  i, n;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    n = 0;
    for (i = 0; i < drv->nslots; i++) {
        if (drv->slots[i].engine && !drv->slots[i].ari) {
            n++;
        }
    }

    return n;
}


static void
ngx_http_autotls_slot_free(ngx_http_autotls_slot_t *s)
{
    atls_cert_meta_free(&s->meta);
    ngx_memzero(&s->meta, sizeof(atls_cert_meta_t));
    s->busy = 0;
    s->want_ari = 0;
    s->cert = NULL;
    s->nkt = 0;
    s->kti = 0;
}


/* starts the slot's next engine: STARTED, BLOCKED (account first) or IDLE */
static ngx_int_t
ngx_http_autotls_slot_start(ngx_http_autotls_slot_t *s)
{
    char                        err[512];
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (s->want_ari) {
        s->want_ari = 0;
        err[0] = '\0';

        s->engine = atls_job_ari_start(ngx_http_autotls_store, &s->meta,
                                       err, sizeof(err));
        if (s->engine) {
            s->ari = 1;
            atls_job_http_opts(&s->cert->issuer->is, &s->http);
            ngx_http_autotls_step(s, NULL);
            return NGX_HTTP_AUTOTLS_STARTED;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, drv->log, 0,
                       "autotls: no renewal information for \"%s\": %s",
                       s->meta.id, err);
    }

    while (s->kti < s->nkt) {

        if (ngx_http_autotls_blocked(s)) {
            return NGX_HTTP_AUTOTLS_BLOCKED;
        }

        s->kt = s->kts[s->kti++];
        err[0] = '\0';

        s->job = atls_job_start(ngx_http_autotls_store, &s->meta, s->kt,
                                err, sizeof(err));
        if (s->job == NULL) {
            ngx_log_error(NGX_LOG_ERR, drv->log, 0,
                          "autotls: certificate \"%s\" (%s): cannot "
                          "start an order: %s", s->meta.id,
                          atls_key_type_name(s->kt), err);
            continue;
        }

        s->engine = atls_job_engine(s->job);
        atls_job_http_opts(&s->cert->issuer->is, &s->http);
        s->hold = ngx_http_autotls_first_contact(s->meta.issuer.directory);

        ngx_log_error(NGX_LOG_NOTICE, drv->log, 0,
                      "autotls: ordering certificate \"%s\" (%s) from %s, "
                      "%ui of %ui orders in flight%s", s->meta.id,
                      atls_key_type_name(s->kt),
                      s->cert->issuer->is.directory,
                      ngx_http_autotls_running(), drv->nslots,
                      s->hold ? ", creating the account first" : "");

        ngx_http_autotls_step(s, NULL);
        return NGX_HTTP_AUTOTLS_STARTED;
    }

    ngx_http_autotls_slot_free(s);

    return NGX_HTTP_AUTOTLS_IDLE;
}


/* loads cert's meta into the free slot s; s stays free when nothing is due */
static void
ngx_http_autotls_prepare(ngx_http_autotls_slot_t *s,
    ngx_http_autotls_cert_t *cert)
{
    int                         force, all, rc;
    char                        err[512];
    size_t                      k;
    time_t                      now;
    atls_key_type_t             t;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    ngx_memzero(&s->meta, sizeof(atls_cert_meta_t));
    err[0] = '\0';

    /* writes the store only when the configuration changed */
    if (atls_job_ensure(ngx_http_autotls_store,
                        (const char *const *) cert->names, cert->n_names,
                        &cert->issuer->is, &s->meta, err, sizeof(err))
        != 0)
    {
        ngx_log_error(NGX_LOG_ERR, drv->log, 0,
                      "autotls: certificate \"%s\": %s", cert->id, err);
        atls_cert_meta_free(&s->meta);
        return;
    }

    /* EAB secrets are not persisted: take them from the configuration */
    if (s->meta.issuer.eab_kid == NULL && cert->issuer->is.eab_kid) {
        s->meta.issuer.eab_kid = atls_strdup(cert->issuer->is.eab_kid);
        s->meta.issuer.eab_hmac = atls_strdup(cert->issuer->is.eab_hmac);
    }

    now = time(NULL);
    force = atls_store_take_request(ngx_http_autotls_store, s->meta.id);

    if (force) {
        ngx_log_error(NGX_LOG_NOTICE, drv->log, 0,
                      "autotls: certificate \"%s\": renewal requested by "
                      "an operator", s->meta.id);
    }

    s->nkt = 0;
    s->kti = 0;
    s->cert = cert;

    if (!atls_job_due(ngx_http_autotls_store, &s->meta, now, force)) {

        if (atls_job_ari_due(&s->meta, now)
            && now >= cert->issuer->no_ari_until)
        {
            s->want_ari = 1;
            s->busy = 1;
            return;
        }

        ngx_http_autotls_slot_free(s);
        return;
    }

    all = force || (s->meta.renew_at && now >= s->meta.renew_at);

    for (k = 0; k < cert->issuer->is.n_key_types; k++) {
        t = cert->issuer->is.key_types[k];

        if (!all) {
            rc = atls_store_load_cert(ngx_http_autotls_store, s->meta.id, t,
                                      NULL, NULL, err, sizeof(err));
            if (rc == ATLS_STORE_OK) {
                continue;
            }
        }

        s->kts[s->nkt++] = t;
    }

    if (s->nkt == 0) {
        /* due for a reason we cannot split by key type: do them all */
        for (k = 0; k < cert->issuer->is.n_key_types; k++) {
            s->kts[s->nkt++] = cert->issuer->is.key_types[k];
        }
    }

    s->busy = 1;
}


/* 1 when a slot already works on cert (its order outlived a pass) */
static ngx_uint_t
ngx_http_autotls_in_flight(ngx_http_autotls_cert_t *cert)
{
    ngx_uint_t                  i;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    for (i = 0; i < drv->nslots; i++) {
        if (drv->slots[i].busy && drv->slots[i].cert == cert) {
            return 1;
        }
    }

    return 0;
}


static ngx_http_autotls_slot_t *
ngx_http_autotls_free_slot(void)
{
    ngx_uint_t                  i;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    for (i = 0; i < drv->nslots; i++) {
        if (!drv->slots[i].busy) {
            return &drv->slots[i];
        }
    }

    return NULL;
}


/*
 * Starts what can start: queued slots first (next key type, or held back
 * while an account was created), then the pass over the certificates
 * fills free slots.  Posted whenever a slot changes state.
 */
static void
ngx_http_autotls_kick(ngx_event_t *ev)
{
    ngx_msec_t                  start;
    ngx_uint_t                  i, checked, blocked;
    ngx_http_autotls_slot_t    *s;
    ngx_http_autotls_cert_t   **certs;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (!drv->driver) {
        return;
    }

    blocked = 0;

    for (i = 0; i < drv->nslots; i++) {
        s = &drv->slots[i];

        if (s->busy && s->engine == NULL
            && ngx_http_autotls_slot_start(s) == NGX_HTTP_AUTOTLS_BLOCKED)
        {
            blocked = 1;
        }
    }

    if (!drv->pass_active) {
        return;
    }

    certs = ngx_http_autotls_mcf->certs.elts;
    checked = 0;
    start = ngx_http_autotls_msec();

    while (drv->pass_next < ngx_http_autotls_mcf->certs.nelts) {

        if (blocked) {
            /* in order: resumed when the account exists */
            return;
        }

        s = ngx_http_autotls_free_slot();
        if (s == NULL) {
            /* resumed when an order ends */
            return;
        }

        /*
         * Each check reads (and after a configuration change writes) the
         * store: with thousands of certificates the pass runs in slices of
         * a few milliseconds so that clients are served in between.
         */
        if (checked++ > 0 && ngx_http_autotls_msec() - start >= 3) {
            if (!drv->kick_ev.timer_set) {
                ngx_add_timer(&drv->kick_ev, 15);
            }
            return;
        }

        if (ngx_http_autotls_in_flight(certs[drv->pass_next])) {
            drv->pass_next++;
            continue;
        }

        ngx_http_autotls_prepare(s, certs[drv->pass_next++]);

        if (s->busy
            && ngx_http_autotls_slot_start(s) == NGX_HTTP_AUTOTLS_BLOCKED)
        {
            blocked = 1;
        }
    }

    drv->pass_active = 0;
    ngx_add_timer(&drv->tick_ev, ngx_http_autotls_mcf->check_interval);
}


static void
ngx_http_autotls_tick(ngx_event_t *ev)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (!drv->driver) {
        return;
    }

    if (drv->pass_active) {
        /* a pass is still waiting for free slots; look again later */
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
            /* orders to one CA share its connections */
            curl_multi_setopt(drv->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                              (long) drv->nslots);
        }

        drv->driver = 1;
        drv->pass_active = 0;
        ngx_add_timer(&drv->tick_ev, 1);

        /* deploys by the CLI or another server, too */
        ngx_http_autotls_watch_start();

    } else if (!mine && drv->driver) {
        ngx_log_error(NGX_LOG_WARN, drv->log, 0,
                      "autotls: worker %P lost the driver lock", ngx_pid);
        ngx_http_autotls_stop();
    }

next:

    ngx_add_timer(&drv->elect_ev, NGX_HTTP_AUTOTLS_ELECT_MS);
}


/* abandons the slot's order (the next driver restarts it) */
static void
ngx_http_autotls_slot_abandon(ngx_http_autotls_slot_t *s)
{
    atls_http_response_t        resp;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (s->easy) {
        curl_multi_remove_handle(drv->multi, s->easy);
        ngx_memzero(&resp, sizeof(resp));
        atls_http_easy_collect(s->xfer, s->easy, CURLE_ABORTED_BY_CALLBACK,
                               &resp);
        atls_http_response_free(&resp);
        curl_easy_cleanup(s->easy);
        s->easy = NULL;
        s->xfer = NULL;
    }

    if (s->hook_fd != NGX_INVALID_FILE) {
        close(s->hook_fd);
        s->hook_fd = NGX_INVALID_FILE;
    }

    /* the shared zone's challenges are cleared as a whole by the caller */
    atls_published_teardown_all(&s->pub, NULL);

    if (s->job) {
        atls_job_free(s->job);
        s->job = NULL;
        s->engine = NULL;

    } else if (s->engine) {
        atls_acme_free(s->engine);
        s->engine = NULL;
    }

    s->ari = 0;
    s->hold = 0;
    s->hook_ch = NULL;

    if (s->wait_ev.timer_set) {
        ngx_del_timer(&s->wait_ev);
    }

    if (s->hook_ev.timer_set) {
        ngx_del_timer(&s->hook_ev);
    }

    if (s->busy) {
        ngx_http_autotls_slot_free(s);
    }
}


static void
ngx_http_autotls_stop(void)
{
    ngx_uint_t                  i;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    for (i = 0; i < drv->nslots; i++) {
        ngx_http_autotls_slot_abandon(&drv->slots[i]);
    }

    ngx_http_autotls_watch_stop();

    if (drv->driver) {
        ngx_http_autotls_shm_chal_clear();
        ngx_http_autotls_shm_resign();
        drv->driver = 0;
    }

    drv->pass_active = 0;

    if (drv->tick_ev.timer_set) {
        ngx_del_timer(&drv->tick_ev);
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
    ngx_uint_t                  i;
    ngx_http_autotls_slot_t    *s;
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    ngx_memzero(drv, sizeof(ngx_http_autotls_driver_t));
    drv->log = cycle->log;
    ngx_http_autotls_timer_conn.fd = (ngx_socket_t) -1;

    drv->nslots = ngx_http_autotls_mcf->max_parallel;
    drv->slots = ngx_pcalloc(cycle->pool,
                             drv->nslots * sizeof(ngx_http_autotls_slot_t));
    if (drv->slots == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < drv->nslots; i++) {
        s = &drv->slots[i];
        s->hook_fd = NGX_INVALID_FILE;
        s->ops.setup = ngx_http_autotls_publish;
        s->ops.teardown = ngx_http_autotls_withdraw;
        s->ops.ctx = s;
        ngx_http_autotls_event_init(&s->wait_ev, ngx_http_autotls_wait_done,
                                    cycle->log);
        ngx_http_autotls_event_init(&s->hook_ev, ngx_http_autotls_hook_poll,
                                    cycle->log);
    }

    ngx_http_autotls_event_init(&drv->curl_ev, ngx_http_autotls_curl_timeout,
                                cycle->log);
    ngx_http_autotls_event_init(&drv->elect_ev, ngx_http_autotls_elect,
                                cycle->log);
    ngx_http_autotls_event_init(&drv->tick_ev, ngx_http_autotls_tick,
                                cycle->log);
    ngx_http_autotls_event_init(&drv->kick_ev, ngx_http_autotls_kick,
                                cycle->log);
    ngx_http_autotls_watch_init(cycle->log);

    /* stagger the workers so that the first one usually wins */
    ngx_add_timer(&drv->elect_ev, 10 + 50 * ngx_worker);

    return NGX_OK;
}


void
ngx_http_autotls_driver_exit(ngx_cycle_t *cycle)
{
    ngx_http_autotls_driver_t  *drv = &ngx_http_autotls_drv;

    if (drv->slots == NULL) {
        return;
    }

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
