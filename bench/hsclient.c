/*
 * hsclient: a full-TLS-handshake load generator for the autotls benchmarks.
 *
 * N concurrent non-blocking connections driven by one epoll loop; each one
 * connects, completes a full TLS handshake (no session cache, no tickets,
 * so the server never resumes), sends close_notify and closes, then starts
 * over.  SNI is drawn per connection from K names made from a printf format
 * ("n%d.bench.test").  Certificates are not verified: verification would
 * only add client cost, and the client must stay cheaper than the server.
 *
 * Two modes:
 *   hsclient -p PORT -d SECONDS ...          one run, one result line
 *   hsclient -i ...                          reads "PORT SECONDS" lines on
 *                                            stdin, answers one result line
 *                                            each (the driver interleaves
 *                                            servers in short slices without
 *                                            paying process start-up per slice)
 * Result line:  ok=N err=E secs=S rate=R client_cpu_us=C stapled=T
 * (client_cpu_us is this process's user+system CPU during the slice, so the
 * driver can tell a client-bound measurement from a server-bound one;
 * stapled counts the completed handshakes that carried an OCSP response,
 * asked for with -s, so a stapling benchmark can prove every handshake it
 * counted really stapled.)
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

typedef enum { C_IDLE, C_CONNECTING, C_HANDSHAKE } cstate_t;

typedef struct {
    int       fd;
    SSL      *ssl;
    cstate_t  state;
} conn_t;

typedef struct {
    const char  *host;
    int          port;
    int          conc;
    int          nnames;
    int          sequential;   /* -r: names in turn, not at random */
    int          status;       /* -s: ask for OCSP stapling */
    uint64_t     next_name;
    char       **names;
    SSL_CTX     *ctx;
    int          ep;
    conn_t      *conns;
    uint64_t     ok;
    uint64_t     err;
    uint64_t     stapled;      /* handshakes that got an OCSP response */
    int          verbose_errors;
} client_t;

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rng_next(void)
{
    /* xorshift64*: SNI choice only needs to be cheap and spread out */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static uint64_t
cpu_us(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return 0;
    }
    return (uint64_t) ru.ru_utime.tv_sec * 1000000u + (uint64_t) ru.ru_utime.tv_usec
           + (uint64_t) ru.ru_stime.tv_sec * 1000000u + (uint64_t) ru.ru_stime.tv_usec;
}

static void
conn_close(client_t *cl, conn_t *c)
{
    if (c->fd >= 0) {
        epoll_ctl(cl->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->state = C_IDLE;
}

static void
conn_fail(client_t *cl, conn_t *c, const char *why)
{
    cl->err++;
    if (cl->verbose_errors && cl->err <= 5) {
        unsigned long e = ERR_peek_error();
        char buf[256];

        ERR_error_string_n(e, buf, sizeof(buf));
        fprintf(stderr, "hsclient: %s (errno %d, %s)\n", why, errno, e ? buf : "-");
    }
    ERR_clear_error();
    conn_close(cl, c);
}

static int
conn_watch(client_t *cl, conn_t *c, uint32_t events, int op)
{
    struct epoll_event ev;

    ev.events = events;
    ev.data.ptr = c;
    return epoll_ctl(cl->ep, op, c->fd, &ev);
}

static void
conn_start(client_t *cl, conn_t *c)
{
    struct sockaddr_in sa;
    int                one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_fail(cl, c, "socket");
        return;
    }
    /* the handshake is a few small flights: don't let Nagle hold them back */
    (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t) cl->port);
    if (inet_pton(AF_INET, cl->host, &sa.sin_addr) != 1) {
        conn_fail(cl, c, "bad host address");
        return;
    }

    if (connect(c->fd, (struct sockaddr *) &sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        conn_fail(cl, c, "connect");
        return;
    }
    c->state = C_CONNECTING;
    if (conn_watch(cl, c, EPOLLOUT, EPOLL_CTL_ADD) != 0) {
        conn_fail(cl, c, "epoll_ctl add");
    }
}

static void
conn_handshake(client_t *cl, conn_t *c)
{
    int rc, e;

    rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        const unsigned char *resp;

        cl->ok++;
        if (cl->status && SSL_get_tlsext_status_ocsp_resp(c->ssl, &resp) > 0) {
            cl->stapled++;
        }
        /* close_notify is one small record; nginx and Apache then close
         * cleanly instead of logging a reset */
        (void) SSL_shutdown(c->ssl);
        conn_close(cl, c);
        return;
    }
    e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
        if (conn_watch(cl, c, EPOLLIN, EPOLL_CTL_MOD) != 0) {
            conn_fail(cl, c, "epoll_ctl mod");
        }
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        if (conn_watch(cl, c, EPOLLOUT, EPOLL_CTL_MOD) != 0) {
            conn_fail(cl, c, "epoll_ctl mod");
        }
        return;
    }
    conn_fail(cl, c, "handshake");
}

static void
conn_ready(client_t *cl, conn_t *c)
{
    int       soerr = 0;
    socklen_t len = sizeof(soerr);

    if (c->state == C_CONNECTING) {
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
            errno = soerr;
            conn_fail(cl, c, "connect");
            return;
        }
        /* SSL_clear keeps the SSL object (cheaper than SSL_new) but drops
         * every session: each connection is a new full handshake */
        if (SSL_clear(c->ssl) != 1
            || SSL_set_session(c->ssl, NULL) != 1
            || SSL_set_fd(c->ssl, c->fd) != 1
            || SSL_set_tlsext_host_name(c->ssl,
                                        cl->names[(cl->sequential ? cl->next_name++ : rng_next())
                                                 % (uint64_t) cl->nnames]) != 1)
        {
            conn_fail(cl, c, "SSL setup");
            return;
        }
        /* per connection: SSL_clear must not be trusted to keep it */
        if (cl->status && SSL_set_tlsext_status_type(c->ssl, TLSEXT_STATUSTYPE_ocsp) != 1) {
            conn_fail(cl, c, "OCSP status request setup");
            return;
        }
        SSL_set_connect_state(c->ssl);
        c->state = C_HANDSHAKE;
    }
    conn_handshake(cl, c);
}

/* One slice against cl->port; returns its wall time. */
static double
run_slice(client_t *cl, double seconds)
{
    struct epoll_event evs[256];
    double             start, end, t;
    int                i, n;

    cl->ok = 0;
    cl->err = 0;
    cl->stapled = 0;
    start = now_s();
    end = start + seconds;

    for (i = 0; i < cl->conc; i++) {
        conn_start(cl, &cl->conns[i]);
    }
    for (;;) {
        t = now_s();
        if (t >= end) {
            break;
        }
        n = epoll_wait(cl->ep, evs, 256, 50);
        if (n < 0 && errno != EINTR) {
            perror("hsclient: epoll_wait");
            exit(1);
        }
        for (i = 0; i < n; i++) {
            conn_ready(cl, evs[i].data.ptr);
        }
        for (i = 0; i < cl->conc; i++) {
            if (cl->conns[i].state == C_IDLE) {
                conn_start(cl, &cl->conns[i]);
            }
        }
    }
    /* abandon handshakes in flight: they are not counted either way */
    for (i = 0; i < cl->conc; i++) {
        if (cl->conns[i].state != C_IDLE) {
            conn_close(cl, &cl->conns[i]);
        }
    }
    return now_s() - start;
}

static void
report(client_t *cl, double secs, uint64_t cpu)
{
    printf("ok=%llu err=%llu secs=%.4f rate=%.1f client_cpu_us=%llu stapled=%llu\n",
           (unsigned long long) cl->ok, (unsigned long long) cl->err, secs,
           secs > 0 ? (double) cl->ok / secs : 0.0, (unsigned long long) cpu,
           (unsigned long long) cl->stapled);
    fflush(stdout);
}

static void
usage(void)
{
    fprintf(stderr,
        "usage: hsclient [-H HOST] -p PORT [-d SECONDS] [-c CONCURRENCY]\n"
        "                [-k NAMES] [-f FORMAT] [-S SIGALGS] [-C TLS13_SUITES]\n"
        "                [-G GROUPS] [-i] [-r] [-s] [-v]\n"
        "  -k K   SNI drawn at random from K names made by FORMAT (default\n"
        "         \"n%%d.bench.test\", numbered 0..K-1; K=1 gives n0.bench.test)\n"
        "  -r     SNI names in turn (0, 1, ..., K-1, 0, ...): a pass over K\n"
        "         handshakes visits every name (warm-up)\n"
        "  -s     ask for OCSP stapling (status_request); stapled= counts the\n"
        "         handshakes that carried a response\n"
        "  -i     interactive: read \"PORT SECONDS\" lines, print one result each\n");
}

int
main(int argc, char **argv)
{
    client_t    cl;
    const char *fmt = "n%d.bench.test", *sigalgs = NULL, *suites = NULL;
    const char *groups = NULL;
    double      seconds = 5, secs;
    int         opt, i, interactive = 0;
    uint64_t    c0;
    char        line[256];

    memset(&cl, 0, sizeof(cl));
    cl.host = "127.0.0.1";
    cl.conc = 16;
    cl.nnames = 1;

    while ((opt = getopt(argc, argv, "H:p:d:c:k:f:S:C:G:irsv")) != -1) {
        switch (opt) {
        case 'H': cl.host = optarg; break;
        case 'p': cl.port = atoi(optarg); break;
        case 'd': seconds = atof(optarg); break;
        case 'c': cl.conc = atoi(optarg); break;
        case 'k': cl.nnames = atoi(optarg); break;
        case 'f': fmt = optarg; break;
        case 'S': sigalgs = optarg; break;
        case 'C': suites = optarg; break;
        case 'G': groups = optarg; break;
        case 'i': interactive = 1; break;
        case 'r': cl.sequential = 1; break;
        case 's': cl.status = 1; break;
        case 'v': cl.verbose_errors = 1; break;
        default: usage(); return 2;
        }
    }
    if ((!interactive && cl.port <= 0) || cl.conc <= 0 || cl.nnames <= 0 || seconds <= 0) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    rng_state ^= (uint64_t) getpid() << 17 ^ (uint64_t) time(NULL);

    cl.names = calloc((size_t) cl.nnames, sizeof(char *));
    if (cl.names == NULL) {
        return 1;
    }
    for (i = 0; i < cl.nnames; i++) {
        /* FORMAT comes from the command line on purpose */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        if (asprintf(&cl.names[i], fmt, i) < 0) {
            return 1;
        }
#pragma GCC diagnostic pop
    }

    cl.ctx = SSL_CTX_new(TLS_client_method());
    if (cl.ctx == NULL
        || SSL_CTX_set_min_proto_version(cl.ctx, TLS1_3_VERSION) != 1
        || SSL_CTX_set_max_proto_version(cl.ctx, TLS1_3_VERSION) != 1)
    {
        fprintf(stderr, "hsclient: cannot set up the TLS context\n");
        return 1;
    }
    SSL_CTX_set_verify(cl.ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(cl.ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(cl.ctx, SSL_OP_NO_TICKET);
    if ((sigalgs && SSL_CTX_set1_sigalgs_list(cl.ctx, sigalgs) != 1)
        || (suites && SSL_CTX_set_ciphersuites(cl.ctx, suites) != 1)
        || (groups && SSL_CTX_set1_groups_list(cl.ctx, groups) != 1))
    {
        fprintf(stderr, "hsclient: bad -S/-C/-G value\n");
        return 2;
    }

    cl.ep = epoll_create1(EPOLL_CLOEXEC);
    cl.conns = calloc((size_t) cl.conc, sizeof(conn_t));
    if (cl.ep < 0 || cl.conns == NULL) {
        return 1;
    }
    for (i = 0; i < cl.conc; i++) {
        cl.conns[i].fd = -1;
        cl.conns[i].ssl = SSL_new(cl.ctx);
        if (cl.conns[i].ssl == NULL) {
            return 1;
        }
    }

    if (!interactive) {
        c0 = cpu_us();
        secs = run_slice(&cl, seconds);
        report(&cl, secs, cpu_us() - c0);
    } else {
        while (fgets(line, sizeof(line), stdin) != NULL) {
            if (sscanf(line, "%d %lf", &cl.port, &seconds) != 2 || cl.port <= 0
                || seconds <= 0)
            {
                printf("error: expected \"PORT SECONDS\"\n");
                fflush(stdout);
                continue;
            }
            c0 = cpu_us();
            secs = run_slice(&cl, seconds);
            report(&cl, secs, cpu_us() - c0);
        }
    }

    for (i = 0; i < cl.conc; i++) {
        SSL_free(cl.conns[i].ssl);
    }
    for (i = 0; i < cl.nnames; i++) {
        free(cl.names[i]);
    }
    free(cl.names);
    free(cl.conns);
    SSL_CTX_free(cl.ctx);
    close(cl.ep);
    return 0;
}
