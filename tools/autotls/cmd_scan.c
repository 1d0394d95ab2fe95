/*
 * autotls scan: connects to TLS endpoints the operator names, records the
 * chain each one serves and reports the same findings the servers report
 * for their own certificates, with an exit status a monitoring system can
 * use (0 ok, 1 warning, 2 critical or unreachable).
 *
 * It sends nothing but a TLS handshake: no HTTP, no close_notify payload.
 * The peer's chain is not verified on the way in (a broken chain is what
 * is being looked for); the security level is 0 so that a weak key or a
 * SHA-1 signature is reported rather than refused.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "atls_inventory.h"
#include "cli.h"

#define SCAN_TIMEOUT_MS   10000    /* connect + handshake, per target */
#define SCAN_FINDINGS_MAX 16
#define SCAN_LINE_MAX     1024

typedef struct {
    char              *spec;       /* as given: "host:port" */
    char              *host;       /* without brackets */
    char              *port;
    char              *sni;        /* NULL: none sent (an IP literal host) */
    char              *error;      /* unreachable, no TLS: why */
    atls_cert_facts_t  facts;
    atls_finding_t     findings[SCAN_FINDINGS_MAX];
    size_t             n_findings;
    atls_severity_t    worst;
} scan_target_t;

/* "host:port", "[v6]:port".  -1 when malformed. */
static int
scan_split(const char *spec, char **host, char **port)
{
    const char *colon, *close;

    if (spec[0] == '[') {
        close = strchr(spec, ']');
        if (close == NULL || close[1] != ':' || close == spec + 1) {
            return -1;
        }
        *host = strndup(spec + 1, (size_t) (close - spec - 1));
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL || colon == spec || memchr(spec, ':', (size_t) (colon - spec))) {
            return -1;   /* a bare IPv6 address needs its brackets */
        }
        *host = strndup(spec, (size_t) (colon - spec));
    }
    if (colon[1] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1)
        || atoi(colon + 1) < 1 || atoi(colon + 1) > 65535) {
        free(*host);
        *host = NULL;
        return -1;
    }
    *port = atls_strdup(colon + 1);
    return 0;
}

static long
scan_ms_left(const struct timespec *deadline)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
}

/* Waits for events on fd until the deadline: 1 ready, 0 timed out. */
static int
scan_wait(int fd, short events, const struct timespec *deadline)
{
    struct pollfd p = { fd, events, 0 };
    long          ms;
    int           rc;

    for (;;) {
        ms = scan_ms_left(deadline);
        if (ms <= 0) {
            return 0;
        }
        rc = poll(&p, 1, (int) ms);
        if (rc > 0) {
            return 1;
        }
        if (rc == 0 || errno != EINTR) {
            return 0;
        }
    }
}

/* A non-blocking socket connected to one of host's addresses; -1 with why. */
static int
scan_connect(scan_target_t *t, const struct timespec *deadline, char *why, size_t len)
{
    struct addrinfo hints, *res = NULL, *ai;
    socklen_t       sl;
    int             fd = -1, rc, soerr;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(t->host, t->port, &hints, &res);
    if (rc != 0) {
        snprintf(why, len, "cannot resolve %s: %s", t->host, gai_strerror(rc));
        return -1;
    }
    snprintf(why, len, "no address");
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            snprintf(why, len, "socket() failed: %s", strerror(errno));
            continue;
        }
        soerr = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            soerr = errno;
            if (soerr == EINPROGRESS) {
                sl = sizeof(soerr);
                soerr = scan_wait(fd, POLLOUT, deadline)
                        ? (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0
                               ? soerr : errno)
                        : ETIMEDOUT;
            }
        }
        if (soerr == 0) {
            break;
        }
        snprintf(why, len, "connect() failed: %s", strerror(soerr));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static SSL_CTX *
scan_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL) {
        return NULL;
    }
    /* see everything a server may send: old protocols, weak keys, SHA-1 */
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_min_proto_version(ctx, 0);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0");
    return ctx;
}

/* The TLS handshake over fd; the chain the server sent (leaf first, owned)
 * or NULL with why. */
static STACK_OF(X509) *
scan_handshake(SSL_CTX *ctx, int fd, const scan_target_t *t,
               const struct timespec *deadline, char *why, size_t len)
{
    STACK_OF(X509) *sent, *chain = NULL;
    SSL            *ssl = SSL_new(ctx);
    int             rc, e, i;

    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1
        || (t->sni != NULL && SSL_set_tlsext_host_name(ssl, t->sni) != 1)) {
        snprintf(why, len, "SSL_new() failed");
        goto out;
    }
    for (;;) {
        rc = SSL_connect(ssl);
        if (rc == 1) {
            break;
        }
        e = SSL_get_error(ssl, rc);
        if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            || !scan_wait(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline)) {
            unsigned long ec = ERR_peek_last_error();

            snprintf(why, len, "TLS handshake failed: %s",
                     e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? "timed out"
                     : ec != 0 ? ERR_reason_error_string(ec) : "connection closed");
            goto out;
        }
    }
    sent = SSL_get_peer_cert_chain(ssl);
    if (sent == NULL || sk_X509_num(sent) == 0) {
        snprintf(why, len, "the server sent no certificate");
        goto out;
    }
    chain = sk_X509_new_null();
    for (i = 0; chain != NULL && i < sk_X509_num(sent); i++) {
        X509_up_ref(sk_X509_value(sent, i));
        sk_X509_push(chain, sk_X509_value(sent, i));
    }

out:
    SSL_free(ssl);
    ERR_clear_error();
    return chain;
}

static void
scan_one(SSL_CTX *ctx, scan_target_t *t, time_t now)
{
    struct timespec  deadline;
    STACK_OF(X509)  *chain = NULL;
    const char      *used;
    char             why[512];
    int              fd;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += SCAN_TIMEOUT_MS / 1000;
    fd = scan_connect(t, &deadline, why, sizeof(why));
    if (fd >= 0) {
        chain = scan_handshake(ctx, fd, t, &deadline, why, sizeof(why));
        close(fd);
    }
    if (chain != NULL && atls_cert_facts(chain, &t->facts, why, sizeof(why)) == 0) {
        /* the name a client asks for: the SNI, else the host it connects to */
        used = t->sni != NULL ? t->sni : t->host;
        t->n_findings = atls_findings(&t->facts, &used, 1, NULL, now, t->findings,
                                      SCAN_FINDINGS_MAX);
        t->worst = atls_findings_worst(t->findings, t->n_findings);
    } else {
        t->error = atls_strdup(why);
        t->worst = ATLS_SEV_CRITICAL;
    }
    sk_X509_pop_free(chain, X509_free);
}

/* ---- targets ---------------------------------------------------------------- */

typedef struct {
    scan_target_t *v;
    size_t         n;
} scan_list_t;

/* -1 after printing why. */
static int
scan_add(scan_list_t *l, const char *spec, const char *sni, const char *where)
{
    scan_target_t *t;

    l->v = realloc(l->v, (l->n + 1) * sizeof(*l->v));
    if (l->v == NULL) {
        abort();
    }
    t = &l->v[l->n];
    memset(t, 0, sizeof(*t));
    if (scan_split(spec, &t->host, &t->port) != 0) {
        cli_error("scan: %s'%s' is not HOST:PORT ([ADDRESS]:PORT for IPv6)", where, spec);
        return -1;
    }
    t->spec = atls_strdup(spec);
    if (sni != NULL) {
        t->sni = atls_strdup(sni);
    } else if (!atls_ident_is_ip(t->host)) {
        t->sni = atls_strdup(t->host);
    }
    l->n++;
    return 0;
}

/* One target per line: "HOST:PORT [SNI]"; '#' starts a comment. */
static int
scan_read_targets(scan_list_t *l, const char *file, const char *sni)
{
    FILE *f = fopen(file, "r");
    char  line[SCAN_LINE_MAX], where[SCAN_LINE_MAX + 32], *p, *spec, *name, *extra;
    int   lineno = 0, rc = 0;

    if (f == NULL) {
        cli_error("scan: --targets %s: %s", file, strerror(errno));
        return -1;
    }
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        p = strchr(line, '#');
        if (p != NULL) {
            *p = '\0';
        }
        spec = strtok_r(line, " \t\r\n", &p);
        if (spec == NULL) {
            continue;
        }
        name = strtok_r(NULL, " \t\r\n", &p);
        extra = strtok_r(NULL, " \t\r\n", &p);
        snprintf(where, sizeof(where), "%s:%d: ", file, lineno);
        if (extra != NULL) {
            cli_error("scan: %sunexpected '%s' (a line is HOST:PORT [SNI])", where, extra);
            rc = -1;
        } else {
            rc = scan_add(l, spec, name != NULL ? name : sni, where);
        }
    }
    fclose(f);
    return rc;
}

static void
scan_list_free(scan_list_t *l)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        free(l->v[i].spec);
        free(l->v[i].host);
        free(l->v[i].port);
        free(l->v[i].sni);
        free(l->v[i].error);
        atls_cert_facts_free(&l->v[i].facts);
    }
    free(l->v);
}

/* ---- output ------------------------------------------------------------------ */

static json_t *
scan_json_one(const scan_target_t *t, time_t now)
{
    const atls_cert_facts_t *f = &t->facts;
    json_t                  *o, *a = json_array(), *names = json_array(), *facts;
    char                     nb[32], na[32];
    size_t                   i;

    o = json_pack("{s:s,s:s,s:s,s:s?,s:s,s:s?}", "target", t->spec, "host", t->host,
                  "port", t->port, "sni", t->sni,
                  "severity", atls_severity_name(t->worst), "error", t->error);
    for (i = 0; i < t->n_findings; i++) {
        json_array_append_new(a, json_pack("{s:s,s:s,s:s}",
            "finding", atls_finding_name(t->findings[i].type),
            "severity", atls_severity_name(t->findings[i].severity),
            "detail", t->findings[i].detail));
    }
    if (t->error == NULL) {
        for (i = 0; i < f->n_names; i++) {
            json_array_append_new(names, json_string(f->names[i]));
        }
        json_object_set_new(o, "names", names);
        names = NULL;
        facts = json_pack("{s:s,s:s,s:s,s:{s:s,s:i},s:s,s:s,s:s,s:I,s:{s:i,s:b,s:b}}",
            "subject", f->subject, "issuer", f->issuer, "serial", f->serial,
            "key", "alg", f->key_alg, "bits", f->key_bits, "signature", f->sig_alg,
            "not_before", cli_time(f->not_before, nb, sizeof(nb)),
            "not_after", cli_time(f->not_after, na, sizeof(na)),
            "days_left", (json_int_t) cli_days_left(f->not_after, now),
            "chain", "length", (int) f->chain_len, "complete", f->chain_complete,
            "self_signed", f->self_signed);
        json_object_update(o, facts);
        json_decref(facts);
    }
    json_decref(names);
    json_object_set_new(o, "findings", a);
    return o;
}

static void
scan_print_json(const scan_list_t *l, atls_severity_t worst, time_t now)
{
    json_t *root, *a = json_array();
    char   *s, when[32];
    size_t  i;

    for (i = 0; i < l->n; i++) {
        json_array_append_new(a, scan_json_one(&l->v[i], now));
    }
    root = json_pack("{s:s,s:s,s:o}", "scanned", cli_time(now, when, sizeof(when)),
                     "severity", atls_severity_name(worst), "targets", a);
    s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s != NULL) {
        printf("%s\n", s);
    }
    free(s);
    json_decref(root);
}

static void
scan_print_text(const scan_list_t *l, time_t now)
{
    const scan_target_t *t;
    char                 when[32], shown[ATLS_LOG_ESCAPE_MAX];
    size_t               i, k;

    for (i = 0; i < l->n; i++) {
        t = &l->v[i];
        printf("%s%s%s%s: %s\n", t->spec, t->sni ? " (SNI " : "", t->sni ? t->sni : "",
               t->sni ? ")" : "", t->error != NULL ? "UNREACHABLE" : atls_severity_name(t->worst));
        if (t->error != NULL) {
            printf("  error: %s\n", t->error);
            continue;
        }
        printf("  subject:   %s\n  issuer:    %s\n  serial:    %s\n", t->facts.subject,
               t->facts.issuer, t->facts.serial);
        /* the names and the findings' details come from the server's
         * certificate (a dNSName may hold any IA5 byte): escaped, so that
         * the endpoint scanned cannot drive the terminal */
        printf("  names:    ");
        for (k = 0; k < t->facts.n_names; k++) {
            printf(" %s", atls_log_escape(t->facts.names[k], shown, sizeof(shown)));
        }
        printf("\n  key:       %s %d\n  signature: %s\n", t->facts.key_alg, t->facts.key_bits,
               t->facts.sig_alg);
        printf("  not after: %s (%ld days left)\n", cli_time(t->facts.not_after, when,
               sizeof(when)), cli_days_left(t->facts.not_after, now));
        printf("  chain:     %zu certificate%s, %s\n", t->facts.chain_len,
               t->facts.chain_len == 1 ? "" : "s",
               t->facts.chain_complete ? "complete" : t->facts.self_signed ? "self-signed"
                                                                           : "incomplete");
        for (k = 0; k < t->n_findings; k++) {
            printf("  %-8s   %s: %s\n", atls_severity_name(t->findings[k].severity),
                   atls_finding_name(t->findings[k].type),
                   atls_log_escape(t->findings[k].detail, shown, sizeof(shown)));
        }
    }
}

static int
scan_run(cli_opts_t *o)
{
    scan_list_t     l = { NULL, 0 };
    SSL_CTX        *ctx = NULL;
    atls_severity_t worst = ATLS_SEV_OK;
    time_t          now = time(NULL);
    size_t          i;
    int             rc = CLI_EXIT_USAGE;

    for (i = 0; i < o->n_names; i++) {
        if (scan_add(&l, o->names[i], o->sni, "") != 0) {
            goto out;
        }
    }
    if (o->targets != NULL && scan_read_targets(&l, o->targets, o->sni) != 0) {
        goto out;
    }
    if (l.n == 0) {
        rc = cli_usage_error("scan", "no target: give HOST:PORT or --targets FILE");
        goto out;
    }
    ctx = scan_ctx();
    if (ctx == NULL) {
        cli_error("scan: SSL_CTX_new() failed");
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    for (i = 0; i < l.n; i++) {
        scan_one(ctx, &l.v[i], now);
        if (l.v[i].error != NULL) {
            cli_error("scan: %s: unreachable: %s", l.v[i].spec, l.v[i].error);
        }
        if (l.v[i].worst > worst) {
            worst = l.v[i].worst;
        }
    }
    if (o->given & CLI_O_JSON) {
        scan_print_json(&l, worst, now);
    } else {
        scan_print_text(&l, now);
    }
    rc = worst == ATLS_SEV_CRITICAL ? 2 : worst == ATLS_SEV_WARNING ? 1 : 0;

out:
    SSL_CTX_free(ctx);
    scan_list_free(&l);
    return rc;
}

const cli_command_t cli_cmd_scan = {
    "scan",
    CLI_O_JSON | CLI_O_SNI | CLI_O_TARGETS | CLI_O_VERBOSE,
    0, -1,
    scan_run,
    "Usage: autotls scan [--json] [--sni NAME] HOST:PORT... | --targets FILE\n"
    "\n"
    "Connect to each TLS endpoint, record the certificate chain it serves and\n"
    "report its findings: expired, not-yet-valid, name-mismatch (the SNI, or the\n"
    "host when none is given), weak-key, expiring (within 21 days), sha1-signature,\n"
    "incomplete-chain.  Only a TLS handshake is sent.  IPv6: [::1]:443.\n"
    "\n"
    "  --sni NAME      server name to send and to check (default: the host,\n"
    "                  none for an IP address)\n"
    "  --targets FILE  one \"HOST:PORT [SNI]\" per line, '#' comments\n"
    "  --json          print the findings as JSON\n"
    "  -h, --help      this text\n"
    "\n"
    "Exit status: 0 no finding, 1 warnings only, 2 a critical finding or an\n"
    "endpoint that could not be reached (the reason is printed).\n"
};
