/*
 * autotls for nginx: the scheduler's hook programs (dns-01 setup and
 * teardown) and notification commands (autotls_notify_exec, the event on
 * their stdin) in the background.
 *
 * atls_hook_spawn() runs a hook behind a reporting child that writes one
 * short report into a pipe; the pipe's read end is watched as an nginx
 * connection, so the worker neither blocks nor polls.  No SIGCHLD is
 * involved: nginx's own handler reaps every child of a worker.  Time
 * limits are the scheduler's: it calls hook_kill when a hook ran too long.
 */

#include "ngx_http_autotls_module.h"
#include "atls_hook.h"


typedef struct {
    ngx_http_autotls_op_t       op;         /* first: found by op */
    atls_hook_proc_t            proc;
    ngx_connection_t           *c;          /* the report pipe */
} ngx_http_autotls_hook_run_t;


typedef struct {
    atls_sched_t               *sched;
    ngx_queue_t                 runs;       /* ngx_http_autotls_hook_run_t */
    ngx_log_t                  *log;
} ngx_http_autotls_hooks_t;


static int ngx_http_autotls_hook_spawn(atls_sched_op_t *op, char *const argv[],
    const char *input, size_t len, char *why, size_t whylen);
static void ngx_http_autotls_hook_report(ngx_event_t *ev);
static void ngx_http_autotls_hook_forget(ngx_http_autotls_hook_run_t *run,
    ngx_uint_t closed);


static ngx_http_autotls_hooks_t  ngx_http_autotls_hooks;


/* this worker became the driver: hook runs report to sched */
void
ngx_http_autotls_hook_init(atls_sched_t *sched, ngx_log_t *log)
{
    ngx_http_autotls_hooks_t  *h = &ngx_http_autotls_hooks;

    h->sched = sched;
    h->log = log;
    ngx_queue_init(&h->runs);
}


/* after atls_sched_free(): ends any hook still running */
void
ngx_http_autotls_hook_cleanup(void)
{
    ngx_http_autotls_op_t     *o;
    ngx_http_autotls_hooks_t  *h = &ngx_http_autotls_hooks;

    if (h->sched == NULL) {
        return;
    }

    while (!ngx_queue_empty(&h->runs)) {
        o = ngx_queue_data(ngx_queue_head(&h->runs), ngx_http_autotls_op_t,
                           queue);
        ngx_http_autotls_hook_kill(NULL, o->op);
    }

    h->sched = NULL;
}


/* atls_sched_host_t.hook_start */
int
ngx_http_autotls_hook_start(void *ctx, atls_sched_op_t *op,
    char *const argv[], char *why, size_t whylen)
{
    return ngx_http_autotls_hook_spawn(op, argv, NULL, 0, why, whylen);
}


/*
 * atls_sched_host_t.exec_start: the reporting child writes the event to
 * the command's stdin, so a command that never reads blocks nobody; the
 * run is watched, timed and killed as a hook's.
 */
int
ngx_http_autotls_exec_start(void *ctx, atls_sched_op_t *op,
    char *const argv[], const char *input, size_t len, char *why,
    size_t whylen)
{
    return ngx_http_autotls_hook_spawn(op, argv, input, len, why, whylen);
}


/* input NULL: stdin is /dev/null */
static int
ngx_http_autotls_hook_spawn(atls_sched_op_t *op, char *const argv[],
    const char *input, size_t len, char *why, size_t whylen)
{
    int                           rc;
    ngx_connection_t             *c;
    ngx_http_autotls_hook_run_t  *run;
    ngx_http_autotls_hooks_t     *h = &ngx_http_autotls_hooks;

    run = ngx_alloc(sizeof(ngx_http_autotls_hook_run_t), h->log);
    if (run == NULL) {
        ngx_snprintf((u_char *) why, whylen, "out of memory%Z");
        return -1;
    }

    run->op.op = op;

    rc = input ? atls_hook_spawn_input(argv, input, len, &run->proc, why,
                                       whylen)
               : atls_hook_spawn(argv, &run->proc, why, whylen);

    if (rc != 0) {
        ngx_free(run);
        return -1;
    }

    c = ngx_get_connection(run->proc.fd, h->log);
    if (c == NULL) {
        atls_hook_kill(&run->proc);
        ngx_free(run);
        ngx_snprintf((u_char *) why, whylen,
                     "no free connection to watch the hook%Z");
        return -1;
    }

    c->data = run;
    c->read->handler = ngx_http_autotls_hook_report;
    c->read->log = h->log;
    c->write->log = h->log;
    run->c = c;

    ngx_queue_insert_tail(&h->runs, &run->op.queue);

    /* level-triggered: a report read in parts is read again */
    if (ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
        ngx_http_autotls_hook_kill(NULL, op);
        ngx_snprintf((u_char *) why, whylen,
                     "cannot watch the hook's report pipe%Z");
        return -1;
    }

    return 0;
}


/* atls_sched_host_t.hook_kill */
void
ngx_http_autotls_hook_kill(void *ctx, atls_sched_op_t *op)
{
    atls_hook_proc_t              proc;
    ngx_http_autotls_hook_run_t  *run;
    ngx_http_autotls_hooks_t     *h = &ngx_http_autotls_hooks;

    if (h->sched == NULL) {
        return;
    }

    run = (ngx_http_autotls_hook_run_t *) ngx_http_autotls_op_find(&h->runs,
                                                                   op);
    if (run == NULL) {
        return;
    }

    proc = run->proc;

    /* off the event loop while the pipe is still open */
    ngx_http_autotls_hook_forget(run, 0);
    atls_hook_kill(&proc);
}


static void
ngx_http_autotls_hook_report(ngx_event_t *ev)
{
    int                           ok;
    char                          why[512];
    ngx_connection_t             *c = ev->data;
    atls_sched_op_t              *op;
    ngx_http_autotls_hook_run_t  *run = c->data;
    ngx_http_autotls_hooks_t     *h = &ngx_http_autotls_hooks;

    ok = 0;
    why[0] = '\0';

    if (atls_hook_read(&run->proc, &ok, why, sizeof(why)) == 0) {
        return;
    }

    op = run->op.op;

    /* atls_hook_read() closed the pipe */
    ngx_http_autotls_hook_forget(run, 1);

    atls_sched_hook_done(h->sched, op, ok, why);
}


/* frees run and its connection; closed: the pipe is closed already */
static void
ngx_http_autotls_hook_forget(ngx_http_autotls_hook_run_t *run,
    ngx_uint_t closed)
{
    ngx_connection_t  *c = run->c;

    if (c->read->active) {
        /* with the descriptor closed the kernel forgot it already */
        ngx_del_event(c->read, NGX_READ_EVENT, closed ? NGX_CLOSE_EVENT : 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    ngx_queue_remove(&run->op.queue);
    ngx_free(run);
}
