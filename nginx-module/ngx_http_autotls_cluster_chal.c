/*
 * autotls for nginx: challenges on a cluster node.
 *
 * Any node answers any validation (docs/store.md, "Redis: challenges"):
 * the ordering node publishes each http-01 or tls-alpn-01 answer to Redis,
 * every node's driver loads it into its own shared zone (the responder
 * below, called by the mirror for announcements and at join), so every
 * worker of every node answers from its memory; the order tells the CA to
 * validate once every live member confirmed, or after
 * ATLS_MIRROR_ACK_WAIT_MS (the scheduler's publish_wait, polled on a
 * timer).  What comes from Redis is another node's, or anyone's with
 * access to Redis: it is checked before a worker serves it.
 */

#include "ngx_http_autotls_module.h"


#define NGX_HTTP_AUTOTLS_ACK_POLL_MS  100


typedef struct {
    ngx_queue_t                 queue;
    ngx_event_t                 ev;         /* the next look */
    atls_sched_op_t            *op;
    atls_challenge_type_t       type;
    char                       *key;        /* token, or name */
    char                       *name;       /* for the log */
    ngx_msec_t                  deadline;
} ngx_http_autotls_ack_wait_t;


static ngx_int_t ngx_http_autotls_respond_http(atls_challenge_t *ch,
    const char *data, size_t len, char *why, size_t whylen);
static ngx_int_t ngx_http_autotls_respond_alpn(atls_challenge_t *ch,
    const char *data, size_t len, char *why, size_t whylen);
static int ngx_http_autotls_publish_alpn_pem(atls_mirror_t *m,
    const atls_challenge_t *ch, char *why, size_t len);
static void ngx_http_autotls_ack_poll(ngx_event_t *ev);
static void ngx_http_autotls_ack_free(ngx_http_autotls_ack_wait_t *w);


static atls_sched_t  *ngx_http_autotls_ack_sched;
static ngx_queue_t    ngx_http_autotls_ack_waits;
static ngx_uint_t     ngx_http_autotls_ack_ready;


/* the scheduler the waits report to (NULL: stopped) */
void
ngx_http_autotls_cluster_attach(atls_sched_t *sched)
{
    if (!ngx_http_autotls_ack_ready) {
        ngx_queue_init(&ngx_http_autotls_ack_waits);
        ngx_http_autotls_ack_ready = 1;
    }

    ngx_http_autotls_ack_sched = sched;

    if (sched == NULL) {
        /* the scheduler just stopped: curl shut down its TLS connections,
         * one in its handshake leaves "shutdown while in init" on this
         * thread's queue, which nginx would find at the next handshake */
        ERR_clear_error();
    }
}


/* the scheduler is gone: its waits end without a report */
void
ngx_http_autotls_cluster_chal_stop(void)
{
    ngx_queue_t  *q;

    ngx_http_autotls_ack_sched = NULL;

    if (!ngx_http_autotls_ack_ready) {
        return;
    }

    while (!ngx_queue_empty(&ngx_http_autotls_ack_waits)) {
        q = ngx_queue_head(&ngx_http_autotls_ack_waits);
        ngx_http_autotls_ack_free(
            ngx_queue_data(q, ngx_http_autotls_ack_wait_t, queue));
    }
}


/* ---- the responder: answers of any node into this node's zone ---------- */

/* atls_mirror_chal_fn */
int
ngx_http_autotls_cluster_respond(void *ctx, int add, atls_challenge_type_t t,
    const char *key, const char *data, size_t len, char *why, size_t whylen)
{
    size_t            klen;
    ngx_int_t         rc;
    atls_challenge_t  ch;

    ngx_memzero(&ch, sizeof(atls_challenge_t));
    ch.type = t;
    klen = ngx_strlen(key);

    switch (t) {

    case ATLS_CHAL_HTTP01:
        if (klen > NGX_HTTP_AUTOTLS_TOKEN_MAX
            || !atls_b64url_is_token(key, klen))
        {
            ngx_snprintf((u_char *) why, whylen, "not a token%Z");
            return -1;
        }

        ch.token = (char *) key;
        ch.identifier = "";

        if (!add) {
            ngx_http_autotls_shm_chal_del(&ch);
            return 0;
        }

        rc = ngx_http_autotls_respond_http(&ch, data, len, why, whylen);
        break;

    case ATLS_CHAL_TLSALPN01:
        if (klen == 0 || klen > NGX_HTTP_AUTOTLS_NAME_MAX) {
            ngx_snprintf((u_char *) why, whylen, "not a name%Z");
            return -1;
        }

        ch.identifier = (char *) key;

        if (!add) {
            ngx_http_autotls_shm_chal_del(&ch);
            return 0;
        }

        rc = ngx_http_autotls_respond_alpn(&ch, data, len, why, whylen);
        break;

    default:
        ngx_snprintf((u_char *) why, whylen, "no responder for %s%Z",
                     atls_challenge_type_name(t));
        return -1;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "autotls: %s challenge \"%s\" loaded from the cluster",
                   atls_challenge_type_name(t), key);

    return rc == NGX_OK ? 0 : -1;
}


/* a key authorisation is "<token>.<thumbprint>" */
static ngx_int_t
ngx_http_autotls_respond_http(atls_challenge_t *ch, const char *data,
    size_t len, char *why, size_t whylen)
{
    size_t  tlen;

    tlen = ngx_strlen(ch->token);

    if (len <= tlen + 1
        || ngx_memcmp(data, ch->token, tlen) != 0
        || data[tlen] != '.'
        || !atls_b64url_is_token(data + tlen + 1, len - tlen - 1))
    {
        ngx_snprintf((u_char *) why, whylen,
                     "not a key authorisation for its token%Z");
        return NGX_ERROR;
    }

    return ngx_http_autotls_shm_chal_add(ch, (u_char *) data, len, 0,
                                         why, whylen);
}


/* the certificate must be the name's and match its key */
static ngx_int_t
ngx_http_autotls_respond_alpn(atls_challenge_t *ch, const char *data,
    size_t len, char *why, size_t whylen)
{
    BIO        *bio;
    X509       *x;
    EVP_PKEY   *k;
    ngx_int_t   rc;

    x = NULL;
    k = NULL;
    rc = NGX_ERROR;

    bio = BIO_new_mem_buf(data, (int) len);
    if (bio == NULL) {
        ngx_snprintf((u_char *) why, whylen, "BIO_new_mem_buf() failed%Z");
        return NGX_ERROR;
    }

    x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    k = x ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;

    if (x == NULL || k == NULL) {
        ngx_snprintf((u_char *) why, whylen,
                     "not a certificate and key in PEM%Z");
        goto failed;
    }

    if (X509_check_private_key(x, k) != 1
        || (X509_check_host(x, ch->identifier, 0, 0, NULL) != 1
            && X509_check_ip_asc(x, ch->identifier, 0) != 1))
    {
        ngx_snprintf((u_char *) why, whylen,
                     "the certificate is not the name's or not its key's%Z");
        goto failed;
    }

    rc = ngx_http_autotls_chal_put_alpn(ch, x, k, why, whylen);

failed:

    ERR_clear_error();
    EVP_PKEY_free(k);
    X509_free(x);
    BIO_free(bio);

    return rc;
}


/* ---- the ordering node ---------------------------------------------------- */

/* atls_sched_host_t.publish on a cluster node */
int
ngx_http_autotls_cluster_publish(const atls_challenge_t *ch, char *why,
    size_t len)
{
    int             rc;
    ngx_uint_t      level;
    atls_mirror_t  *m;

    m = ngx_http_autotls_cluster_mirror();

    switch (ch->type) {

    case ATLS_CHAL_HTTP01:
        rc = atls_mirror_challenge_publish(m, ATLS_CHAL_HTTP01, ch->token,
                                           ch->key_authz,
                                           ngx_strlen(ch->key_authz),
                                           why, len);
        break;

    case ATLS_CHAL_TLSALPN01:
        rc = ngx_http_autotls_publish_alpn_pem(m, ch, why, len);
        break;

    default:
        ngx_snprintf((u_char *) why, len, "no responder for %s%Z",
                     atls_challenge_type_name(ch->type));
        return -1;
    }

    level = (rc == 0) ? NGX_LOG_INFO : NGX_LOG_ERR;

    ngx_log_error(level, ngx_cycle->log, 0,
                  "autotls: %s challenge for \"%s\" %s%s",
                  atls_challenge_type_name(ch->type), ch->identifier,
                  rc == 0 ? "published to the cluster"
                          : "not published to the cluster: ",
                  rc == 0 ? "" : why);

    return rc;
}


/* the certificate and key as PEM: every node parses and checks them */
static int
ngx_http_autotls_publish_alpn_pem(atls_mirror_t *m, const atls_challenge_t *ch,
    char *why, size_t len)
{
    int        rc;
    BIO       *bio;
    long       n;
    char      *pem;
    X509      *x;
    EVP_PKEY  *k;

    if (atls_tls_alpn_cert(ch->identifier, ch->key_authz, &x, &k) != 0) {
        ngx_snprintf((u_char *) why, len,
                     "cannot create the tls-alpn-01 certificate%Z");
        return -1;
    }

    rc = -1;
    bio = BIO_new(BIO_s_mem());

    if (bio == NULL
        || PEM_write_bio_X509(bio, x) != 1
        || PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL) != 1)
    {
        ngx_snprintf((u_char *) why, len, "cannot encode the certificate%Z");
        goto failed;
    }

    n = BIO_get_mem_data(bio, &pem);

    rc = atls_mirror_challenge_publish(m, ATLS_CHAL_TLSALPN01, ch->identifier,
                                       pem, (size_t) n, why, len);

    OPENSSL_cleanse(pem, n);

failed:

    BIO_free(bio);
    X509_free(x);
    EVP_PKEY_free(k);

    return rc;
}


/* atls_sched_host_t.withdraw on a cluster node: everywhere */
void
ngx_http_autotls_cluster_withdraw(const atls_challenge_t *ch)
{
    atls_mirror_t  *m;

    m = ngx_http_autotls_cluster_mirror();

    if (ch->type == ATLS_CHAL_HTTP01 && ch->token) {
        atls_mirror_challenge_withdraw(m, ch->type, ch->token);

    } else if (ch->type == ATLS_CHAL_TLSALPN01) {
        atls_mirror_challenge_withdraw(m, ch->type, ch->identifier);
    }
}


/* ---- waiting for every live node ----------------------------------------- */

/* atls_sched_host_t.publish_wait: 0 when not a cluster node */
int
ngx_http_autotls_publish_wait(void *ctx, atls_sched_op_t *op, void *cert_data,
    const atls_challenge_t *c, char *why, size_t whylen)
{
    const char                   *key;
    ngx_http_autotls_ack_wait_t  *w;

    if (ngx_http_autotls_cluster_mirror() == NULL
        || ngx_http_autotls_ack_sched == NULL
        || (c->type != ATLS_CHAL_HTTP01 && c->type != ATLS_CHAL_TLSALPN01))
    {
        return 0;
    }

    key = (c->type == ATLS_CHAL_HTTP01) ? c->token : c->identifier;

    w = ngx_calloc(sizeof(ngx_http_autotls_ack_wait_t), ngx_cycle->log);
    if (w == NULL) {
        ngx_snprintf((u_char *) why, whylen, "out of memory%Z");
        return -1;
    }

    w->key = strdup(key);
    w->name = strdup(c->identifier);

    if (w->key == NULL || w->name == NULL) {
        free(w->key);
        free(w->name);
        ngx_free(w);
        ngx_snprintf((u_char *) why, whylen, "out of memory%Z");
        return -1;
    }

    w->op = op;
    w->type = c->type;
    w->deadline = ngx_http_autotls_msec() + ATLS_MIRROR_ACK_WAIT_MS;

    ngx_http_autotls_event_init(&w->ev, ngx_http_autotls_ack_poll,
                                ngx_cycle->log);
    ngx_queue_insert_tail(&ngx_http_autotls_ack_waits, &w->queue);

    /* never reported from inside this callback */
    ngx_add_timer(&w->ev, 1);

    return 1;
}


/* atls_sched_host_t.publish_cancel */
void
ngx_http_autotls_publish_cancel(void *ctx, atls_sched_op_t *op)
{
    ngx_queue_t                  *q;
    ngx_http_autotls_ack_wait_t  *w;

    if (!ngx_http_autotls_ack_ready) {
        return;
    }

    for (q = ngx_queue_head(&ngx_http_autotls_ack_waits);
         q != ngx_queue_sentinel(&ngx_http_autotls_ack_waits);
         q = ngx_queue_next(q))
    {
        w = ngx_queue_data(q, ngx_http_autotls_ack_wait_t, queue);

        if (w->op == op) {
            ngx_http_autotls_ack_free(w);
            return;
        }
    }
}


static void
ngx_http_autotls_ack_poll(ngx_event_t *ev)
{
    int                           rc;
    char                         *missing, err[512];
    atls_sched_op_t              *op;
    atls_mirror_t                *m;
    ngx_http_autotls_ack_wait_t  *w;

    w = (ngx_http_autotls_ack_wait_t *)
            ((u_char *) ev - offsetof(ngx_http_autotls_ack_wait_t, ev));

    m = ngx_http_autotls_cluster_mirror();

    if (m == NULL || ngx_http_autotls_ack_sched == NULL) {
        return;
    }

    missing = NULL;
    err[0] = '\0';

    rc = atls_mirror_challenge_ready(m, w->type, w->key, &missing,
                                     err, sizeof(err));

    if (rc != 1 && ngx_http_autotls_msec() < w->deadline) {
        free(missing);
        ngx_add_timer(ev, NGX_HTTP_AUTOTLS_ACK_POLL_MS);
        return;
    }

    if (rc != 1) {
        /* the nodes that answered are enough to go on: a CA that reaches
         * one that did not fails this attempt, which is retried */
        ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                      "autotls: %s challenge for \"%s\": not confirmed by "
                      "%s within %d ms; validation goes on",
                      atls_challenge_type_name(w->type), w->name,
                      rc == 0 ? (missing ? missing : "some nodes")
                              : err,
                      ATLS_MIRROR_ACK_WAIT_MS);
    }

    op = w->op;
    ngx_http_autotls_ack_free(w);

    if (rc == 1) {
        atls_sched_hook_done(ngx_http_autotls_ack_sched, op, 1, "");

    } else {
        /* a validation failed by the nodes missing is retried soon */
        atls_sched_hook_done_partial(ngx_http_autotls_ack_sched, op,
                                     rc == 0 ? missing : NULL);
    }

    free(missing);
}


static void
ngx_http_autotls_ack_free(ngx_http_autotls_ack_wait_t *w)
{
    if (w->ev.timer_set) {
        ngx_del_timer(&w->ev);
    }

    ngx_queue_remove(&w->queue);
    free(w->key);
    free(w->name);
    ngx_free(w);
}
