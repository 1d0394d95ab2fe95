/*
 * The concurrent job driver (atls_job_run_many) over real HTTP: a loopback
 * server puts one canned CA (support/fakeca) behind each directory URL
 * http://127.0.0.1:PORT/ca/<i>/dir.  The fake CA speaks https://ca.test,
 * so the server translates: URLs in answers are rewritten to the loopback
 * form, and each JWS is re-signed with the account key for the URL the
 * fake CA expects (its strict checks still run on everything else).
 *
 * Each certificate has its own CA, so the server can tell which orders are
 * in flight at the same time: an order is "in flight" from its first
 * request to its certificate download.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "atls.h"
#include "atls_acme.h"
#include "atls_b64.h"
#include "atls_crypto.h"
#include "atls_job.h"
#include "atls_jws.h"
#include "atls_store.h"
#include "support/fakeca.h"
#include "support/hookscript.h"

#define MAX_CAS 8

typedef struct {
    int             lfd;
    int             port;
    int             stop_pipe[2];
    pthread_t       thread;
    size_t          n;
    fakeca_t       *ca[MAX_CAS];
    fakeca_t       *retired[MAX_CAS];      /* a CA that already issued */
    int             renew_ca;              /* a fresh CA after each issuance */
    EVP_PKEY       *key[MAX_CAS];
    char            dir[MAX_CAS][96];
    char            prefix[MAX_CAS][96];   /* http://127.0.0.1:P/ca/<i> */
    int             started[MAX_CAS];
    int             finished[MAX_CAS];
    int             in_flight, max_in_flight;
} farm_t;

static char          root[256];
static atls_store_t *st;
static farm_t        farm;

/* ---- challenge ops that remember what is published ----------------------- */

typedef struct {
    size_t setups, teardowns;
    char   live[64][128];      /* identifiers published now */
    size_t n_live;
    size_t max_live;
} chal_rec_t;

static int
rec_setup(void *ctx, const atls_challenge_t *c, char *why, size_t whylen)
{
    chal_rec_t *r = ctx;

    (void) why;
    (void) whylen;
    r->setups++;
    snprintf(r->live[r->n_live++], sizeof(r->live[0]), "%s", c->identifier);
    if (r->n_live > r->max_live) {
        r->max_live = r->n_live;
    }
    return 0;
}

static void
rec_teardown(void *ctx, const atls_challenge_t *c)
{
    chal_rec_t *r = ctx;
    size_t      i;

    r->teardowns++;
    for (i = 0; i < r->n_live; i++) {
        if (strcmp(r->live[i], c->identifier) == 0) {
            memmove(r->live[i], r->live[i + 1], (r->n_live - i - 1) * sizeof(r->live[0]));
            r->n_live--;
            return;
        }
    }
    fail_msg("teardown of %s, which is not published", c->identifier);
}

/* ops publishing into a fresh r */
static void
rec_ops(atls_challenge_ops_t *ops, chal_rec_t *r)
{
    memset(r, 0, sizeof(*r));
    ops->setup = rec_setup;
    ops->teardown = rec_teardown;
    ops->ctx = r;
}

/* ---- the loopback CA farm ------------------------------------------------ */

static char *
replace_all(const char *s, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), n = 0;
    const char *p;
    char *out, *o;

    if (s == NULL) {
        return NULL;
    }
    for (p = s; (p = strstr(p, from)) != NULL; p += fl) {
        n++;
    }
    out = malloc(strlen(s) + n * (tl > fl ? tl - fl : 0) + 1);
    assert_non_null(out);
    for (o = out, p = s;;) {
        const char *q = strstr(p, from);

        if (q == NULL) {
            strcpy(o, p);
            break;
        }
        memcpy(o, p, (size_t) (q - p));
        o += q - p;
        memcpy(o, to, tl);
        o += tl;
        p = q + fl;
    }
    return out;
}

static void
rewrite(char **field, const char *from, const char *to)
{
    char *n;

    if (*field == NULL) {
        return;
    }
    n = replace_all(*field, from, to);
    free(*field);
    *field = n;
}

/* The JWS as the fake CA expects it: url and kid in its own namespace. */
static char *
resign(size_t i, const char *body, size_t len)
{
    json_t        *jws = json_loadb(body, len, 0, NULL), *prot;
    const char    *p64, *pl64, *url, *kid, *nonce;
    unsigned char *pb, *plb;
    size_t         pl, pll;
    char          *payload, *u2, *k2 = NULL, *out;

    assert_non_null(jws);
    p64 = json_string_value(json_object_get(jws, "protected"));
    pl64 = json_string_value(json_object_get(jws, "payload"));
    assert_non_null(p64);
    assert_non_null(pl64);
    pb = atls_b64url_decode(p64, strlen(p64), &pl);
    plb = atls_b64url_decode(pl64, strlen(pl64), &pll);
    assert_non_null(pb);
    prot = json_loadb((char *) pb, pl, 0, NULL);
    assert_non_null(prot);
    url = json_string_value(json_object_get(prot, "url"));
    kid = json_string_value(json_object_get(prot, "kid"));
    nonce = json_string_value(json_object_get(prot, "nonce"));
    assert_non_null(url);
    u2 = replace_all(url, farm.prefix[i], FAKECA_BASE);
    if (kid != NULL) {
        k2 = replace_all(kid, farm.prefix[i], FAKECA_BASE);
    }
    payload = malloc(pll + 1);
    assert_non_null(payload);
    if (pll > 0) {
        memcpy(payload, plb, pll);
    }
    payload[pll] = '\0';
    out = atls_jws_sign(farm.key[i], k2, nonce, u2, pll > 0 ? payload : NULL);
    assert_non_null(out);
    free(payload);
    free(u2);
    free(k2);
    free(pb);
    free(plb);
    json_decref(prot);
    json_decref(jws);
    return out;
}

static void
send_all(int fd, const char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);

        if (w <= 0) {
            return;
        }
        b += w;
        n -= (size_t) w;
    }
}

static char *
header_value(const char *req, const char *end, const char *name)
{
    const char *h = strcasestr(req, name);
    size_t      n;
    char       *v;

    if (h == NULL || h > end) {
        return NULL;
    }
    h += strlen(name);
    while (*h == ' ') {
        h++;
    }
    n = strcspn(h, "\r\n");
    v = malloc(n + 1);
    assert_non_null(v);
    memcpy(v, h, n);
    v[n] = '\0';
    return v;
}

static void
serve_one(int fd)
{
    static char          req[1 << 16];
    size_t               len = 0, want = 0, i, idx;
    char                 method[8], path[512], url[600], hdr[4096];
    char                *end = NULL, *ctype, *accept, *body = NULL;
    const char          *rest;
    atls_http_request_t  r;
    atls_http_response_t resp;
    int                  n;

    for (;;) {
        ssize_t got = recv(fd, req + len, sizeof(req) - 1 - len, 0);

        if (got <= 0) {
            return;
        }
        len += (size_t) got;
        req[len] = '\0';
        end = strstr(req, "\r\n\r\n");
        if (end != NULL) {
            char *cl = header_value(req, end, "\r\nContent-Length:");

            want = (size_t) (end + 4 - req) + (cl ? strtoul(cl, NULL, 10) : 0);
            free(cl);
            if (len >= want) {
                break;
            }
        }
    }
    if (sscanf(req, "%7s %511s", method, path) != 2
        || sscanf(path, "/ca/%zu/", &idx) != 1 || idx >= farm.n)
    {
        send_all(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                 "Connection: close\r\n\r\n", 63);
        return;
    }
    rest = strchr(path + 4, '/');
    snprintf(url, sizeof(url), "%s%s", FAKECA_BASE, rest);
    ctype = header_value(req, end, "\r\nContent-Type:");
    accept = header_value(req, end, "\r\nAccept:");

    memset(&r, 0, sizeof(r));
    r.method = method;
    r.url = url;
    r.content_type = ctype;
    r.accept = accept;
    if (strcmp(method, "POST") == 0) {
        body = resign(idx, end + 4, want - (size_t) (end + 4 - req));
        r.body = body;
        r.body_len = strlen(body);
    }

    if (!farm.started[idx]) {
        farm.started[idx] = 1;
        farm.in_flight++;
        if (farm.in_flight > farm.max_in_flight) {
            farm.max_in_flight = farm.in_flight;
        }
    }
    fakeca_handle(farm.ca[idx], &r, &resp);
    /* Counted before the answer leaves: the driver can only start the
     * next order after it has this one. */
    if (strncmp(rest, "/cert/", 6) == 0 && !farm.finished[idx]) {
        farm.finished[idx] = 1;
        farm.in_flight--;
    }
    if (strncmp(rest, "/cert/", 6) == 0 && farm.renew_ca && farm.retired[idx] == NULL) {
        /* the canned CA runs one order; the next key type's order goes
         * to a fresh one that knows the account */
        farm.retired[idx] = farm.ca[idx];
        farm.ca[idx] = fakeca_new(farm.key[idx]);
        assert_non_null(farm.ca[idx]);
        farm.ca[idx]->account_exists = 1;
    }

    rewrite(&resp.body, FAKECA_BASE, farm.prefix[idx]);
    rewrite(&resp.location, FAKECA_BASE, farm.prefix[idx]);
    rewrite(&resp.link_up, FAKECA_BASE, farm.prefix[idx]);
    for (i = 0; i < resp.n_link_alternate; i++) {
        rewrite(&resp.link_alternate[i], FAKECA_BASE, farm.prefix[idx]);
    }
    n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 %ld X\r\nConnection: close\r\n"
                 "Content-Length: %zu\r\n", resp.status ? resp.status : 500,
                 resp.body ? strlen(resp.body) : 0);
#define ADD(fmt, v) if (v) n += snprintf(hdr + n, sizeof(hdr) - (size_t) n, fmt, v)
    ADD("Content-Type: %s\r\n", resp.content_type);
    ADD("Location: %s\r\n", resp.location);
    ADD("Replay-Nonce: %s\r\n", resp.replay_nonce);
    ADD("Retry-After: %s\r\n", resp.retry_after);
    ADD("Link: <%s>;rel=\"up\"\r\n", resp.link_up);
    for (i = 0; i < resp.n_link_alternate; i++) {
        ADD("Link: <%s>;rel=\"alternate\"\r\n", resp.link_alternate[i]);
    }
#undef ADD
    n += snprintf(hdr + n, sizeof(hdr) - (size_t) n, "\r\n");
    send_all(fd, hdr, (size_t) n);
    if (resp.body != NULL && strcmp(method, "HEAD") != 0) {
        send_all(fd, resp.body, strlen(resp.body));
    }
    fakeca_response_clear(&resp);
    free(ctype);
    free(accept);
    free(body);
}

/* One connection at a time, in arrival order: requests of different
 * orders interleave exactly as the driver sends them. */
static void *
farm_main(void *arg)
{
    (void) arg;
    for (;;) {
        struct pollfd pfd[2] = { { farm.lfd, POLLIN, 0 }, { farm.stop_pipe[0], POLLIN, 0 } };
        int           fd;

        if (poll(pfd, 2, -1) < 0) {
            continue;
        }
        if (pfd[1].revents) {
            return NULL;
        }
        fd = accept(farm.lfd, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        serve_one(fd);
        shutdown(fd, SHUT_WR);
        close(fd);
    }
}

/* n CAs, one per certificate; every account key is made in the store
 * first, so that the fake CA knows which key to check signatures with. */
static void
farm_start(size_t n)
{
    struct sockaddr_in sa;
    socklen_t          sl = sizeof(sa);
    size_t             i;
    char               err[256];

    memset(&farm, 0, sizeof(farm));
    farm.n = n;
    farm.lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(farm.lfd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(farm.lfd, (struct sockaddr *) &sa, sizeof(sa)), 0);
    assert_int_equal(listen(farm.lfd, 64), 0);
    assert_int_equal(getsockname(farm.lfd, (struct sockaddr *) &sa, &sl), 0);
    farm.port = ntohs(sa.sin_port);
    assert_int_equal(pipe(farm.stop_pipe), 0);

    for (i = 0; i < n; i++) {
        char *url = NULL;
        int   created = 0;

        snprintf(farm.prefix[i], sizeof(farm.prefix[i]), "http://127.0.0.1:%d/ca/%zu",
                 farm.port, i);
        snprintf(farm.dir[i], sizeof(farm.dir[i]), "%s/dir", farm.prefix[i]);
        assert_int_equal(atls_store_load_account(st, farm.dir[i], &farm.key[i], &url,
                                                 &created, err, sizeof(err)),
                         ATLS_STORE_OK);
        free(url);
        farm.ca[i] = fakeca_new(farm.key[i]);
        assert_non_null(farm.ca[i]);
    }
    assert_int_equal(pthread_create(&farm.thread, NULL, farm_main, NULL), 0);
}

static void
farm_stop(void)
{
    size_t i;

    assert_int_equal(write(farm.stop_pipe[1], "x", 1), 1);
    pthread_join(farm.thread, NULL);
    close(farm.lfd);
    close(farm.stop_pipe[0]);
    close(farm.stop_pipe[1]);
    for (i = 0; i < farm.n; i++) {
        assert_int_equal(farm.ca[i]->violations, 0);
        fakeca_free(farm.ca[i]);
        if (farm.retired[i] != NULL) {
            assert_int_equal(farm.retired[i]->violations, 0);
            fakeca_free(farm.retired[i]);
        }
        EVP_PKEY_free(farm.key[i]);
    }
}

/* ---- fixtures ------------------------------------------------------------ */

static int
setup_store(void **state)
{
    char err[256];

    (void) state;
    snprintf(root, sizeof(root), "/tmp/atls-multi-XXXXXX");
    if (mkdtemp(root) == NULL) {
        return -1;
    }
    st = atls_store_fs_open(root, err, sizeof(err));
    return st == NULL ? -1 : 0;
}

static int
teardown_store(void **state)
{
    char cmd[512];

    (void) state;
    atls_store_close(st);
    st = NULL;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

/* Meta for "c<i>.multi.test" against CA i, created in the store. */
static void
make_metas(atls_cert_meta_t *metas, atls_cert_meta_t **ptrs, size_t n)
{
    size_t i;
    char   name[64], err[256];

    for (i = 0; i < n; i++) {
        atls_issuer_t is;
        const char   *names[1] = { name };

        memset(&is, 0, sizeof(is));
        is.directory = farm.dir[i];
        is.insecure_ca_urls = 1;   /* the farm's CAs are http on loopback */
        is.challenge = ATLS_CHAL_HTTP01;
        is.agree_tos = 1;
        snprintf(name, sizeof(name), "c%zu.multi.test", i);
        memset(&metas[i], 0, sizeof(metas[i]));
        assert_int_equal(atls_job_ensure(st, names, 1, &is, &metas[i], err, sizeof(err)), 0);
        ptrs[i] = &metas[i];
    }
}

static void
free_metas(atls_cert_meta_t *metas, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        atls_cert_meta_free(&metas[i]);
    }
}

/* The stored certificate of id is valid for name and chains. */
static void
assert_deployed(const char *id, const char *name, atls_key_type_t kt)
{
    STACK_OF(X509)   *chain = NULL;
    EVP_PKEY         *key = NULL;
    atls_cert_meta_t  m;
    const char       *names[1] = { name };
    char              err[256];

    assert_int_equal(atls_store_load_cert(st, id, kt, &key, &chain, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_chain_check(chain, key, names, 1, err, sizeof(err)), 0);
    atls_chain_free(chain);
    EVP_PKEY_free(key);
    memset(&m, 0, sizeof(m));
    assert_int_equal(atls_store_load_meta(st, id, &m, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(m.state, ATLS_STATE_VALID);
    assert_int_equal(m.failures, 0);
    assert_null(m.last_error);
    assert_true(m.renew_at > time(NULL));
    assert_true(m.generation >= 1);
    atls_cert_meta_free(&m);
}

/* ---- tests --------------------------------------------------------------- */

typedef struct {
    size_t calls;
    int    rc[MAX_CAS];
    int    seen[MAX_CAS];
} done_rec_t;

static void
on_done(void *ctx, size_t i, int rc, const char *err)
{
    done_rec_t *d = ctx;

    d->calls++;
    d->rc[i] = rc;
    d->seen[i]++;
    if (rc != 0) {
        assert_non_null(strstr(err, ".multi.test (ec256): "));
    }
}

static void
on_done_any(void *ctx, size_t i, int rc, const char *err)
{
    done_rec_t *d = ctx;

    (void) err;
    d->calls++;
    d->rc[i] = rc;
    d->seen[i]++;
}

static void
test_all_deployed_within_bound(void **state)
{
    atls_cert_meta_t     metas[6], *ptrs[6];
    atls_challenge_ops_t ops;
    atls_job_many_opts_t mo;
    chal_rec_t           rec;
    done_rec_t           done;
    int                  results[6];
    char                 err[512], name[64];
    size_t               i;

    (void) state;
    farm_start(6);
    make_metas(metas, ptrs, 6);
    memset(&done, 0, sizeof(done));
    rec_ops(&ops, &rec);
    memset(&mo, 0, sizeof(mo));
    mo.max_parallel = 3;
    mo.default_ops = &ops;
    mo.done = on_done;
    mo.ctx = &done;

    assert_int_equal(atls_job_run_many(st, ptrs, 6, &mo, results, err, sizeof(err)), 0);
    farm_stop();

    for (i = 0; i < 6; i++) {
        assert_int_equal(results[i], 0);
        assert_int_equal(done.seen[i], 1);
        assert_int_equal(done.rc[i], 0);
        snprintf(name, sizeof(name), "c%zu.multi.test", i);
        assert_deployed(metas[i].id, name, ATLS_KEY_EC256);
    }
    assert_int_equal(done.calls, 6);
    /* orders overlapped, and never more than three at once */
    assert_int_equal(farm.max_in_flight, 3);
    assert_true(rec.max_live >= 2 && rec.max_live <= 3);
    assert_int_equal(rec.setups, 6);
    assert_int_equal(rec.teardowns, 6);
    assert_int_equal(rec.n_live, 0);
    free_metas(metas, 6);
}

static void
test_parallel_one_is_sequential(void **state)
{
    atls_cert_meta_t     metas[3], *ptrs[3];
    atls_challenge_ops_t ops;
    chal_rec_t           rec;
    int                  results[3];
    char                 err[512];

    (void) state;
    farm_start(3);
    make_metas(metas, ptrs, 3);
    rec_ops(&ops, &rec);
    assert_int_equal(atls_job_run_many_blocking(st, ptrs, 3, 1, &ops, results,
                                                err, sizeof(err)), 0);
    farm_stop();
    assert_int_equal(results[0] | results[1] | results[2], 0);
    assert_int_equal(farm.max_in_flight, 1);
    assert_int_equal(rec.max_live, 1);
    free_metas(metas, 3);
}

static void
test_failure_isolated_and_recorded(void **state)
{
    atls_cert_meta_t     metas[4], *ptrs[4], m;
    atls_challenge_ops_t ops;
    chal_rec_t           rec;
    int                  results[4];
    char                 err[512], name[64];
    STACK_OF(X509)      *chain = NULL;
    size_t               i;
    time_t               before = time(NULL);

    (void) state;
    farm_start(4);
    /* order 1: the CA fails answering the challenge, after it was published
     * (the engine gets no chance to tear it down itself) */
    farm.ca[1]->faults[0] = (fakeca_fault_t) { "POST", "/chal/", 0, -1, 500,
                                               "serverInternal", "validator on fire",
                                               NULL };
    /* order 2: validation fails */
    farm.ca[2]->invalid[0] = "c2.multi.test";
    make_metas(metas, ptrs, 4);
    rec_ops(&ops, &rec);

    assert_int_equal(atls_job_run_many_blocking(st, ptrs, 4, 4, &ops, results,
                                                err, sizeof(err)), -1);
    farm_stop();
    assert_int_equal(results[0], 0);
    assert_int_equal(results[1], -1);
    assert_int_equal(results[2], -1);
    assert_int_equal(results[3], 0);
    assert_non_null(strstr(err, "(ec256): urn:ietf:params:acme:error:"));
    assert_deployed(metas[0].id, "c0.multi.test", ATLS_KEY_EC256);
    assert_deployed(metas[3].id, "c3.multi.test", ATLS_KEY_EC256);

    for (i = 1; i <= 2; i++) {
        memset(&m, 0, sizeof(m));
        assert_int_equal(atls_store_load_meta(st, metas[i].id, &m, err, sizeof(err)),
                         ATLS_STORE_OK);
        assert_int_equal(m.state, ATLS_STATE_FAILED);
        assert_int_equal(m.failures, 1);
        assert_true(m.next_attempt > before);
        assert_non_null(m.last_error);
        assert_non_null(strstr(m.last_error, i == 1 ? "serverInternal: validator on fire"
                                                    : "urn:ietf:params:acme:error:"));
        atls_cert_meta_free(&m);
        snprintf(name, sizeof(name), "c%zu.multi.test", i);
        assert_int_not_equal(atls_store_load_cert(st, metas[i].id, ATLS_KEY_EC256, NULL,
                                                  &chain, err, sizeof(err)),
                             ATLS_STORE_OK);
        atls_chain_free(chain);
        chain = NULL;
    }
    /* every published challenge was withdrawn, the failed orders' too */
    assert_int_equal(rec.setups, 4);
    assert_int_equal(rec.teardowns, 4);
    assert_int_equal(rec.n_live, 0);
    free_metas(metas, 4);
}

static void
test_key_types_one_after_the_other(void **state)
{
    atls_cert_meta_t     metas[2], *ptrs[2];
    atls_challenge_ops_t ops;
    chal_rec_t           rec;
    int                  results[2];
    char                 err[512];

    (void) state;
    farm_start(2);
    farm.renew_ca = 1;
    make_metas(metas, ptrs, 2);
    metas[0].issuer.key_types[0] = ATLS_KEY_EC256;
    metas[0].issuer.key_types[1] = ATLS_KEY_EC384;
    metas[0].issuer.n_key_types = 2;
    rec_ops(&ops, &rec);
    assert_int_equal(atls_job_run_many_blocking(st, ptrs, 2, 0, &ops, results,
                                                err, sizeof(err)), 0);
    /* one order per key type, each to its own canned CA */
    assert_non_null(farm.retired[0]);
    assert_int_equal(fakeca_count(farm.retired[0], "POST", "/new-order"), 1);
    assert_int_equal(fakeca_count(farm.ca[0], "POST", "/new-order"), 1);
    farm_stop();
    assert_int_equal(results[0], 0);
    assert_int_equal(results[1], 0);
    assert_deployed(metas[0].id, "c0.multi.test", ATLS_KEY_EC256);
    assert_deployed(metas[0].id, "c0.multi.test", ATLS_KEY_EC384);
    assert_deployed(metas[1].id, "c1.multi.test", ATLS_KEY_EC256);
    assert_int_equal(rec.setups, 3);
    assert_int_equal(rec.n_live, 0);
    free_metas(metas, 2);
}

static int stop_after;

static int
stop_cb(void *ctx)
{
    (void) ctx;
    return stop_after-- <= 0;
}

static void
test_stopping_starts_nothing_new(void **state)
{
    atls_cert_meta_t     metas[3], *ptrs[3];
    atls_challenge_ops_t ops;
    atls_job_many_opts_t mo;
    chal_rec_t           rec;
    int                  results[3];
    char                 err[512];

    (void) state;
    farm_start(3);
    make_metas(metas, ptrs, 3);
    rec_ops(&ops, &rec);
    memset(&mo, 0, sizeof(mo));
    mo.max_parallel = 1;
    mo.default_ops = &ops;
    mo.stopping = stop_cb;
    stop_after = 1;     /* the first certificate starts, then the host stops */
    assert_int_equal(atls_job_run_many(st, ptrs, 3, &mo, results, err, sizeof(err)), -1);
    farm_stop();
    assert_int_equal(results[0], 0);
    assert_int_equal(results[1], -1);
    assert_int_equal(results[2], -1);
    assert_int_equal(farm.started[1] + farm.started[2], 0);
    assert_non_null(strstr(err, "stopped"));
    free_metas(metas, 3);
}

/* ---- the scheduler's own decisions, dns-01 hooks in the background -------- */

typedef struct {
    char   gate[400];       /* created when c1 is deployed */
    size_t order[MAX_CAS];  /* which certificate finished n-th */
    size_t n;
    int    rc[MAX_CAS];
} gate_rec_t;

static void
gate_done(void *ctx, size_t i, int rc, const char *err)
{
    gate_rec_t *g = ctx;
    FILE       *f;

    (void) err;
    g->order[g->n++] = i;
    g->rc[i] = rc;
    if (i == 1 && rc == 0) {
        f = fopen(g->gate, "w");
        assert_non_null(f);
        fclose(f);
    }
}

/* A dns hook whose setup for c0 first runs first_cmd, then waits (up to
 * 20 s) until c1 is deployed: only a host that runs hooks in the
 * background, and keeps looking at c1 meanwhile, gets both. */
static void
gated_hook(gate_rec_t *g, const char *first_cmd, char *hook, size_t len)
{
    char body[2400];

    assert_int_equal(hookscript_setup(NULL), 0);
    snprintf(g->gate, sizeof(g->gate), "%s/gate", hookscript_dir);
    snprintf(body, sizeof(body),
             "case \"$1 $2\" in\n"
             "\"setup _acme-challenge.c0.multi.test\")\n"
             "  %s\n"
             "  i=0\n"
             "  while [ ! -e '%s' ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done\n"
             "  [ -e '%s' ] || { echo 'c1 never came' >&2; exit 1; } ;;\n"
             "esac\nexit 0\n", first_cmd, g->gate, g->gate);
    hookscript_write("gated", body, 0700, hook, len);
}

/* A check pass over confs (c0 behind the gated hook): c1 first, then c0,
 * both deployed. */
static void
run_gated(const atls_job_conf_t *confs, const atls_job_many_opts_t *mo)
{
    const gate_rec_t *g = mo->ctx;
    char              err[512];

    assert_int_equal(atls_job_check_pass(st, confs, 2, mo, err, sizeof(err)), 0);
    farm_stop();
    assert_int_equal(g->n, 2);
    assert_int_equal(g->order[0], 1);
    assert_int_equal(g->order[1], 0);
    assert_int_equal(g->rc[0], 0);
    assert_int_equal(g->rc[1], 0);
    assert_deployed("c0.multi.test", "c0.multi.test", ATLS_KEY_EC256);
}

/* c0's setup hook waits (up to 20 s) until c1 is deployed: only a host
 * that runs hooks in the background gets both certificates. */
static void
test_check_pass_slow_hook_holds_only_its_order(void **state)
{
    atls_job_conf_t      confs[2];
    atls_issuer_t        is[2];
    atls_job_many_opts_t mo;
    gate_rec_t           g;
    const char          *names[2][1] = { { "c0.multi.test" }, { "c1.multi.test" } };
    char                 hook[512];
    size_t               i;

    (void) state;
    memset(&g, 0, sizeof(g));
    gated_hook(&g, "", hook, sizeof(hook));

    farm_start(2);
    for (i = 0; i < 2; i++) {
        memset(&is[i], 0, sizeof(is[i]));
        is[i].directory = farm.dir[i];
        is[i].insecure_ca_urls = 1;
        is[i].challenge = ATLS_CHAL_DNS01;
        is[i].dns_hook = hook;
        is[i].agree_tos = 1;
        confs[i].names = names[i];
        confs[i].n_names = 1;
        confs[i].issuer = &is[i];
    }
    memset(&mo, 0, sizeof(mo));
    mo.done = gate_done;
    mo.ctx = &g;
    /* nothing stored yet: the scheduler finds both due */
    run_gated(confs, &mo);
    assert_deployed("c1.multi.test", "c1.multi.test", ATLS_KEY_EC256);
    assert_int_equal(hookscript_teardown(NULL), 0);
}

/* While c0's hook holds the pass, an operator asks to renew the valid c1:
 * a later pass of the same check orders it. */
static void
test_check_pass_looks_again_while_a_hook_holds(void **state)
{
    atls_cert_meta_t            metas[2], *ptrs[2];
    atls_job_conf_t             confs[2];
    atls_issuer_t               is0;
    atls_job_many_opts_t        mo;
    atls_challenge_ops_t        ops;
    const atls_challenge_ops_t *ops_v[2];
    chal_rec_t                  rec;
    gate_rec_t                  g;
    const char                 *names0[1] = { "c0.multi.test" };
    char                        hook[512], cmd[600], err[512];
    int                         results[2];

    (void) state;
    farm_start(2);
    farm.renew_ca = 1;
    make_metas(metas, ptrs, 2);
    rec_ops(&ops, &rec);
    assert_int_equal(atls_job_run_many_blocking(st, &ptrs[1], 1, 0, &ops, results,
                                                err, sizeof(err)), 0);

    memset(&g, 0, sizeof(g));
    snprintf(cmd, sizeof(cmd), "date -u +%%Y-%%m-%%dT%%H:%%M:%%SZ > '%s/requests/%s'",
             root, metas[1].id);
    gated_hook(&g, cmd, hook, sizeof(hook));
    memset(&is0, 0, sizeof(is0));
    is0.directory = farm.dir[0];
    is0.insecure_ca_urls = 1;
    is0.challenge = ATLS_CHAL_DNS01;
    is0.dns_hook = hook;
    is0.agree_tos = 1;
    confs[0] = (atls_job_conf_t) { names0, 1, &is0 };
    atls_job_conf_of_meta(&confs[1], &metas[1]);
    ops_v[0] = NULL;
    ops_v[1] = &ops;
    memset(&mo, 0, sizeof(mo));
    mo.ops_v = ops_v;
    mo.done = gate_done;
    mo.ctx = &g;
    mo.recheck_ms = 100;
    run_gated(confs, &mo);
    assert_int_equal(hookscript_teardown(NULL), 0);
    free_metas(metas, 2);
}

/* A certificate the scheduler refuses is reported, the others go on. */
static void
test_check_pass_reports_refused_settings(void **state)
{
    atls_job_conf_t      confs[2];
    atls_issuer_t        is[2];
    atls_job_many_opts_t mo;
    atls_challenge_ops_t ops;
    chal_rec_t           rec;
    done_rec_t           done;
    const char          *names[2][1] = { { "c0.multi.test" }, { "c1.multi.test" } };
    char                 err[512];

    (void) state;
    farm_start(2);
    memset(is, 0, sizeof(is));
    is[0].directory = farm.dir[0];
    is[0].insecure_ca_urls = 1;
    is[0].challenge = ATLS_CHAL_HTTP01;
    is[0].agree_tos = 1;
    /* is[1]: no directory */
    confs[0] = (atls_job_conf_t) { names[0], 1, &is[0] };
    confs[1] = (atls_job_conf_t) { names[1], 1, &is[1] };
    memset(&done, 0, sizeof(done));
    rec_ops(&ops, &rec);
    memset(&mo, 0, sizeof(mo));
    mo.default_ops = &ops;
    mo.done = on_done_any;
    mo.ctx = &done;
    assert_int_equal(atls_job_check_pass(st, confs, 2, &mo, err, sizeof(err)), -1);
    farm_stop();
    assert_non_null(strstr(err, "c1.multi.test"));
    assert_int_equal(done.calls, 2);
    assert_int_equal(done.rc[0], 0);
    assert_int_equal(done.rc[1], -1);
    assert_deployed("c0.multi.test", "c0.multi.test", ATLS_KEY_EC256);
    assert_int_equal(rec.n_live, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_all_deployed_within_bound,
                                        setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_parallel_one_is_sequential,
                                        setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_failure_isolated_and_recorded,
                                        setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_key_types_one_after_the_other,
                                        setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_stopping_starts_nothing_new,
                                        setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_check_pass_slow_hook_holds_only_its_order,
                                        setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_check_pass_looks_again_while_a_hook_holds,
                                        setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_check_pass_reports_refused_settings,
                                        setup_store, teardown_store),
    };

    atls_log_set(NULL, NULL, ATLS_LOG_ERR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
