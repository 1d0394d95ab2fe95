/*
 * The connection loop both standalone responders (http-01, tls-alpn-01)
 * run in their thread.
 *
 * Why poll() on non-blocking sockets rather than a thread per connection:
 * the only legitimate clients are a CA's validators, a handful of short
 * connections, but the ports are public while an order is open, so anyone
 * can connect and trickle one byte every few seconds.  One thread that
 * multiplexes every connection
 *   - keeps serving validators while slow clients are connected,
 *   - enforces one total deadline per connection (CLI_CONN_DEADLINE_MS for
 *     the whole request or handshake, not per read) from a single timer,
 *   - stops at once when the order is done: one byte on the stop pipe and
 *     every connection is closed; there is no thread blocked in recv() to
 *     interrupt or wait for.
 * CLI_CONN_MAX bounds the open connections (file descriptors and memory);
 * beyond it new connections wait in the listen backlog until a slot frees,
 * which the deadline guarantees within CLI_CONN_DEADLINE_MS.
 */
#define _GNU_SOURCE 1  /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"

#define CLI_CONN_MAX          64
#define CLI_CONN_DEADLINE_MS  10000

typedef struct {
    int      fd;
    short    events;     /* what conn waits for: POLLIN or POLLOUT */
    int64_t  deadline;   /* monotonic ms */
    void    *conn;
} loop_conn_t;

typedef struct {
    const cli_conn_ops_t *ops;
    void                 *arg;
    loop_conn_t           c[CLI_CONN_MAX];
    size_t                n;
} loop_t;

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void loop_drop(loop_t *l, size_t i)
{
    l->ops->close(l->arg, l->c[i].conn);
    close(l->c[i].fd);
    l->c[i] = l->c[--l->n];
}

static void loop_accept(loop_t *l, int listen_fd)
{
    loop_conn_t *c;
    int          fd;

    while (l->n < CLI_CONN_MAX) {
        fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return;     /* EAGAIN: none left; anything else: the next poll says */
        }
        c = &l->c[l->n];
        c->fd = fd;
        c->events = POLLIN;     /* both protocols start with the client talking */
        c->deadline = now_ms() + CLI_CONN_DEADLINE_MS;
        c->conn = l->ops->open(l->arg, fd);
        if (c->conn == NULL) {
            close(fd);
            continue;
        }
        l->n++;
    }
}

/* Milliseconds until the nearest deadline, -1 with no connection. */
static int loop_timeout(const loop_t *l)
{
    int64_t first = INT64_MAX, now = now_ms();
    size_t  i;

    for (i = 0; i < l->n; i++) {
        if (l->c[i].deadline < first) {
            first = l->c[i].deadline;
        }
    }
    if (l->n == 0) {
        return -1;
    }
    return first <= now ? 0 : (int) (first - now);
}

/* Steps the connections poll found ready, drops finished and overdue ones. */
static void loop_serve(loop_t *l, const struct pollfd *p)
{
    int64_t now = now_ms();
    size_t  i = l->n;
    int     ev;

    /* backwards: loop_drop moves the last connection into the freed slot */
    while (i-- > 0) {
        if (p[i].revents != 0) {
            ev = l->ops->step(l->arg, l->c[i].conn);
            if (ev == 0) {
                loop_drop(l, i);
                continue;
            }
            l->c[i].events = (short) ev;
        }
        if (now >= l->c[i].deadline) {
            atls_log(ATLS_LOG_DEBUG, "standalone responder: closed a connection "
                     "still open after %d s", CLI_CONN_DEADLINE_MS / 1000);
            loop_drop(l, i);
        }
    }
}

void cli_accept_loop(int listen_fd, int stop_fd, const cli_conn_ops_t *ops, void *arg)
{
    loop_t        *l;
    struct pollfd  p[CLI_CONN_MAX + 2];
    size_t         i, np;

    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return;
    }
    l->ops = ops;
    l->arg = arg;
    /* loop_accept drains the backlog: accept4() must not block once empty */
    (void) fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
    for (;;) {
        for (i = 0; i < l->n; i++) {
            p[i].fd = l->c[i].fd;
            p[i].events = l->c[i].events;
            p[i].revents = 0;
        }
        np = l->n;
        p[np].fd = stop_fd;
        p[np].events = POLLIN;
        p[np].revents = 0;
        /* at the bound, leave new connections in the backlog */
        p[np + 1].fd = l->n < CLI_CONN_MAX ? listen_fd : -1;
        p[np + 1].events = POLLIN;
        p[np + 1].revents = 0;
        if (poll(p, np + 2, loop_timeout(l)) < 0 && errno != EINTR) {
            break;
        }
        if (p[np].revents != 0) {
            break;
        }
        loop_serve(l, p);
        if (p[np + 1].revents & POLLIN) {
            loop_accept(l, listen_fd);
        }
    }
    while (l->n > 0) {
        loop_drop(l, l->n - 1);
    }
    free(l);
}
