/*
 * autotls for nginx: the admin API of names registered at runtime.
 *
 *   location /autotls/ {
 *       allow 127.0.0.1; deny all;
 *       autotls_api;
 *       autotls_api_token /etc/nginx/autotls-api.token;    (optional)
 *   }
 *
 * PUT /autotls/names/NAME registers a name, DELETE removes it, GET
 * /autotls/names lists them: the core does the work (atls_names_api, the
 * same for Apache); this is a content handler that reads the body, checks
 * the bearer token when a token file is set (in addition to allow/deny,
 * which the access phase applied before), and sends the core's answer.
 * Every change is an audited event with the client's address as its
 * author; the driver notices the registry change within
 * NGX_HTTP_AUTOTLS_WATCH_MS and issues or stops serving the name.  On a
 * cluster node (autotls_store redis://) the registry is Redis's: the
 * request writes there, and every node's mirror takes the change.
 */

#include "ngx_http_autotls_module.h"


/* a registration body is {"home": "..."}: anything larger is not one */
#define NGX_HTTP_AUTOTLS_API_BODY_MAX  4096


/* one request's call of the core, from the event loop or a thread */
typedef struct {
    ngx_http_request_t         *request;
    char                       *method;
    char                       *path;
    char                       *query;
    const char                 *body;
    size_t                      len;
    char                       *by;
    time_t                      now;

    int                         status;    /* the core's answer */
    char                       *out;       /* malloc'd */
    size_t                      out_len;
    unsigned                    unreachable:1;
} ngx_http_autotls_api_job_t;


static ngx_int_t ngx_http_autotls_api_handler(ngx_http_request_t *r);
static void ngx_http_autotls_api_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_autotls_api_answer(ngx_http_request_t *r,
    const char *body, size_t len);
static void ngx_http_autotls_api_run(ngx_http_autotls_api_job_t *job,
    ngx_log_t *log);
static ngx_int_t ngx_http_autotls_api_reply(ngx_http_autotls_api_job_t *job);
#if (NGX_THREADS)
static void ngx_http_autotls_api_thread(void *data, ngx_log_t *log);
static void ngx_http_autotls_api_done(ngx_event_t *ev);
#endif
static atls_store_t *ngx_http_autotls_api_store(ngx_log_t *log);
static ngx_int_t ngx_http_autotls_api_send(ngx_http_request_t *r,
    ngx_uint_t status, u_char *body, size_t len);
static char *ngx_http_autotls_api_cstr(ngx_pool_t *pool, u_char *data,
    size_t len);


char *
ngx_http_autotls_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_autotls_loc_conf_t  *alcf = conf;

    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_autotls_main_conf_t  *amcf;

    if (alcf->api != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    alcf->api = 1;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_autotls_module);
    amcf->api_used = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_autotls_api_handler;

    return NGX_CONF_OK;
}


/* autotls_api_token FILE; relative to the configuration's prefix */
char *
ngx_http_autotls_api_token(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_autotls_loc_conf_t  *alcf = conf;

    ngx_str_t  *value;

    if (alcf->api_token.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    alcf->api_token = value[1];

    if (alcf->api_token.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"autotls_api_token\" needs a file name");
        return NGX_CONF_ERROR;
    }

    /* NUL-terminated: the core opens it at each request */
    if (ngx_conf_full_name(cf->cycle, &alcf->api_token, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_autotls_api_handler(ngx_http_request_t *r)
{
    char                         *auth;
    ngx_int_t                     rc;
    ngx_http_autotls_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_autotls_module);

    if (alcf->api_token.len) {
        auth = "";

        if (r->headers_in.authorization != NULL) {
            /* header values are NUL-terminated by the parser */
            auth = (char *) r->headers_in.authorization->value.data;
        }

        if (!atls_api_token_ok((char *) alcf->api_token.data, auth)) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "autotls: API request without a valid bearer "
                          "token (autotls_api_token \"%V\")",
                          &alcf->api_token);

            r->headers_out.www_authenticate = ngx_list_push(
                                                    &r->headers_out.headers);
            if (r->headers_out.www_authenticate == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            r->headers_out.www_authenticate->hash = 1;
            ngx_str_set(&r->headers_out.www_authenticate->key,
                        "WWW-Authenticate");
            ngx_str_set(&r->headers_out.www_authenticate->value,
                        "Bearer realm=\"autotls\"");

            if (ngx_http_discard_request_body(r) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return ngx_http_autotls_api_send(r, NGX_HTTP_UNAUTHORIZED,
                                   (u_char *) "{\"error\":\"a valid bearer "
                                   "token is needed\"}",
                                   sizeof("{\"error\":\"a valid bearer "
                                          "token is needed\"}") - 1);
        }
    }

    if (r->headers_in.content_length_n > NGX_HTTP_AUTOTLS_API_BODY_MAX) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    /* a small body, kept in memory in one buffer */
    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_autotls_api_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* the body has been read: NUL-terminated copy, then the core's answer */
static void
ngx_http_autotls_api_body(ngx_http_request_t *r)
{
    u_char       *body, *p;
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    len = 0;

    /* a buffer in a file: larger than any registration */
    for (cl = r->request_body ? r->request_body->bufs : NULL; cl; cl = cl->next) {
        if (cl->buf->in_file) {
            ngx_http_finalize_request(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE);
            return;
        }
        len += cl->buf->last - cl->buf->pos;
    }

    if (len > NGX_HTTP_AUTOTLS_API_BODY_MAX) {
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE);
        return;
    }

    body = ngx_pnalloc(r->pool, len + 1);
    if (body == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = body;

    for (cl = r->request_body ? r->request_body->bufs : NULL; cl; cl = cl->next) {
        b = cl->buf;
        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    *p = '\0';

    rc = ngx_http_autotls_api_answer(r, (char *) body, len);

    if (rc == NGX_DONE) {
        return;     /* a thread answers; finalized when it is done */
    }

    ngx_http_finalize_request(r, rc);
}


/* the path below the location: "/names/NAME" in "/autotls/names/NAME" */
static char *
ngx_http_autotls_api_path(ngx_http_request_t *r)
{
    size_t                     skip;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    skip = 0;

    if (clcf->name.len <= r->uri.len
        && ngx_strncmp(r->uri.data, clcf->name.data, clcf->name.len) == 0)
    {
        skip = clcf->name.len;

        /* "/autotls/" keeps the slash that starts "/names" */
        if (skip > 0 && clcf->name.data[skip - 1] == '/') {
            skip--;
        }
    }

    return ngx_http_autotls_api_cstr(r->pool, r->uri.data + skip,
                                 r->uri.len - skip);
}


static ngx_int_t
ngx_http_autotls_api_answer(ngx_http_request_t *r, const char *body,
    size_t len)
{
    u_char                      *by;
    size_t                       by_len;
    ngx_http_autotls_api_job_t  *job;
#if (NGX_THREADS)
    ngx_thread_task_t           *task;
#endif

    static u_char  closed[] = "{\"error\":\"the store is not open\"}";

    if (ngx_http_autotls_store == NULL) {
        return ngx_http_autotls_api_send(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         closed, sizeof(closed) - 1);
    }

#if (NGX_THREADS)
    task = NULL;

    if (ngx_http_autotls_mcf->api_pool) {
        task = ngx_thread_task_alloc(r->pool,
                                     sizeof(ngx_http_autotls_api_job_t));
        if (task == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        job = task->ctx;

    } else
#endif
    {
        job = ngx_pcalloc(r->pool, sizeof(ngx_http_autotls_api_job_t));
        if (job == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    by_len = sizeof("api ") + r->connection->addr_text.len;
    by = ngx_pnalloc(r->pool, by_len);

    job->request = r;
    job->method = ngx_http_autotls_api_cstr(r->pool, r->method_name.data,
                                            r->method_name.len);
    job->path = ngx_http_autotls_api_path(r);
    job->query = r->args.len ? ngx_http_autotls_api_cstr(r->pool, r->args.data,
                                                         r->args.len)
                             : NULL;
    job->body = body;
    job->len = len;
    job->now = ngx_time();

    if (job->method == NULL || job->path == NULL || by == NULL
        || (r->args.len && job->query == NULL))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_snprintf(by, by_len, "api %V%Z", &r->connection->addr_text);
    job->by = (char *) by;

#if (NGX_THREADS)
    if (task) {
        /*
         * A cluster node's registry is Redis's: the request's Redis calls
         * run in a thread, so that a slow or hung Redis holds this request
         * only, never the worker's other connections.
         */
        task->handler = ngx_http_autotls_api_thread;
        task->event.data = job;
        task->event.handler = ngx_http_autotls_api_done;

        if (ngx_thread_task_post(ngx_http_autotls_mcf->api_pool, task)
            != NGX_OK)
        {
            return NGX_HTTP_SERVICE_UNAVAILABLE;
        }

        r->main->blocked++;
        r->aio = 1;

        return NGX_DONE;
    }
#endif

    ngx_http_autotls_api_run(job, r->connection->log);

    return ngx_http_autotls_api_reply(job);
}


/* the core's answer, from the store: blocking (a thread on a cluster node) */
static void
ngx_http_autotls_api_run(ngx_http_autotls_api_job_t *job, ngx_log_t *log)
{
    atls_actor_t    actor;
    atls_store_t   *st;
    atls_events_t  *ev;

    job->status = 500;
    job->out = NULL;
    job->out_len = 0;

    st = ngx_http_autotls_api_store(log);
    if (st == NULL) {
        job->unreachable = 1;
        return;
    }

    /* this worker's events: audited and queued, delivered by the driver */
    atls_actor_self(&actor, "server", "nginx/" NGINX_VERSION);
    ev = atls_events_new(st, &actor, &ngx_http_autotls_mcf->notify);

    (void) atls_names_api(st, ev, job->method, job->path, job->query,
                          job->body, job->len, job->by, job->now,
                          &job->status, &job->out, &job->out_len);

    if (ev != NULL) {
        atls_events_free(ev);
    }

    if (st != ngx_http_autotls_store) {
        atls_store_close(st);
    }
}


static ngx_int_t
ngx_http_autotls_api_reply(ngx_http_autotls_api_job_t *job)
{
    ngx_int_t  rc;

    static u_char  unreachable[] = "{\"error\":\"the Redis store cannot be "
                                   "reached (see the error log)\"}";

    if (job->unreachable) {
        return ngx_http_autotls_api_send(job->request,
                                         NGX_HTTP_SERVICE_UNAVAILABLE,
                                         unreachable, sizeof(unreachable) - 1);
    }

    rc = ngx_http_autotls_api_send(job->request, job->status,
                                   (u_char *) job->out, job->out_len);

    free(job->out);
    job->out = NULL;

    return rc;
}


#if (NGX_THREADS)

static void
ngx_http_autotls_api_thread(void *data, ngx_log_t *log)
{
    ngx_http_autotls_api_run(data, log);
}


/* back on the event loop: the thread's answer is sent */
static void
ngx_http_autotls_api_done(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_http_autotls_api_job_t  *job;

    job = ev->data;
    r = job->request;
    c = r->connection;

    r->main->blocked--;
    r->aio = 0;

    ngx_http_finalize_request(r, ngx_http_autotls_api_reply(job));
    ngx_http_run_posted_requests(c);
}

#endif


/*
 * The store the registry is written to: the node's own on a directory
 * store; on a cluster node, Redis, through a connection of its own with
 * the configured timeouts (a write to the mirror would reach no other
 * node), closed after the request.
 */
static atls_store_t *
ngx_http_autotls_api_store(ngx_log_t *log)
{
    char           err[512];
    atls_store_t  *st;

    if (ngx_http_autotls_mcf->redis == NULL) {
        return ngx_http_autotls_store;
    }

    err[0] = '\0';

    st = atls_store_redis_open(ngx_http_autotls_mcf->redis, err, sizeof(err));
    if (st == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "autotls_api: autotls_store: %s", err);
    }

    return st;
}


static ngx_int_t
ngx_http_autotls_api_send(ngx_http_request_t *r, ngx_uint_t status,
    u_char *body, size_t len)
{
    ngx_int_t    rc;
    ngx_buf_t   *b;
    ngx_chain_t  out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;

    if (len) {
        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_type_len = r->headers_out.content_type.len;
    }

    if (len == 0 || r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    /* the core's buffer is freed after this call: copy it */
    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->pos, body, len);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, &out);
}


static char *
ngx_http_autotls_api_cstr(ngx_pool_t *pool, u_char *data, size_t len)
{
    u_char  *p;

    p = ngx_pnalloc(pool, len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, data, len);
    p[len] = '\0';

    return (char *) p;
}


/*
 * A cluster node's admin API talks to Redis from nginx's thread pool
 * "default" (thread_pool default threads=N; sizes it, 32 otherwise), so
 * that no worker waits on Redis; on a directory store the registry is
 * local files, written on the event loop like the rest of the store.
 */
ngx_int_t
ngx_http_autotls_api_setup(ngx_conf_t *cf, ngx_http_autotls_main_conf_t *amcf)
{
    if (!amcf->api_used || amcf->redis == NULL) {
        return NGX_OK;
    }

#if (NGX_THREADS)
    amcf->api_pool = ngx_thread_pool_add(cf, NULL);
    if (amcf->api_pool == NULL) {
        return NGX_ERROR;
    }
#else
    ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                  "autotls_api: nginx was built without threads: on a "
                  "Redis store the API's requests wait on Redis in the "
                  "worker");
#endif

    return NGX_OK;
}
