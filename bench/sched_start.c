/*
 * The scheduler's first passes over a pre-seeded store (bench/sched_start.sh
 * builds and runs this against the current library and a baseline).
 *
 *   sched_start make DIR N KEY.pem CHAIN.pem DIRECTORY
 *       a store of N valid certificates (not due), all with the same key
 *       and chain, their facts (kt_info) recorded as after a deploy: the
 *       first through the store, the others copied without fsync (seconds,
 *       not the minutes atomic writes would take)
 *   sched_start run DIR N DIRECTORY
 *       one scheduler start with ARI on, as a server runs it (3 ms slices),
 *       against a host whose CA directory offers no renewalInfo: runs until
 *       the scheduler is idle with nothing due within a second, then
 *       prints one line: settle seconds, meta.json files written, CA
 *       requests in all and in the first minute, ari.json written
 *
 * Only the public API is used, so the same source builds against the
 * baseline library.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <jansson.h>
#include "atls.h"
#include "atls_job.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "benchio.h"


static void
bench_issuer(atls_issuer_t *is, const char *directory)
{
    memset(is, 0, sizeof(*is));
    is->directory = (char *) directory;
    is->challenge = ATLS_CHAL_HTTP01;
    is->agree_tos = 1;
}

static void
cert_name(long i, char *buf, size_t len)
{
    snprintf(buf, len, "c%06ld.bench.test", i);
}

static int
make_store(const char *dir, long n, const char *key_path, const char *chain_path,
           const char *directory)
{
    char             path[4096], id[64], err[512], *key = bench_slurp(key_path);
    char            *chain = bench_slurp(chain_path), *pem, *first_meta, *text;
    const char      *name = id;
    atls_store_t    *st;
    atls_cert_meta_t m;
    atls_issuer_t    is;
    json_t          *root;
    long             i;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "sched_start: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    st = atls_store_fs_open(dir, err, sizeof(err));
    if (st == NULL) {
        fprintf(stderr, "sched_start: %s\n", err);
        return 1;
    }
    pem = malloc(strlen(key) + strlen(chain) + 1);
    strcpy(pem, key);
    strcat(pem, chain);
    /* the first one as autotls leaves it after a deploy */
    cert_name(0, id, sizeof(id));
    snprintf(path, sizeof(path), "%s/certs", dir);
    (void) mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/certs/%s", dir, id);
    (void) mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/certs/%s/ec256.pem", dir, id);
    bench_write_file(path, pem, 0600);
    bench_issuer(&is, directory);
    if (atls_job_ensure(st, &name, 1, &is, &m, err, sizeof(err)) != 0 || m.n_kt_info != 1) {
        fprintf(stderr, "sched_start: cannot learn the seeded certificate: %s\n", err);
        return 1;
    }
    m.state = ATLS_STATE_VALID;
    m.renew_at = time(NULL) + 30 * 86400;
    if (atls_store_save_meta(st, &m, err, sizeof(err)) != ATLS_STORE_OK) {
        fprintf(stderr, "sched_start: %s\n", err);
        return 1;
    }
    atls_cert_meta_free(&m);
    snprintf(path, sizeof(path), "%s/certs/%s/meta.json", dir, id);
    first_meta = bench_slurp(path);
    root = json_loads(first_meta, 0, NULL);
    for (i = 1; i < n; i++) {
        cert_name(i, id, sizeof(id));
        snprintf(path, sizeof(path), "%s/certs/%s", dir, id);
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "sched_start: %s: %s\n", path, strerror(errno));
            return 1;
        }
        json_object_set_new(root, "id", json_string(id));
        json_object_set_new(root, "names", json_pack("[s]", id));
        text = json_dumps(root, JSON_INDENT(2));
        snprintf(path, sizeof(path), "%s/certs/%s/meta.json", dir, id);
        bench_write_file(path, text, 0644);
        free(text);
        snprintf(path, sizeof(path), "%s/certs/%s/ec256.pem", dir, id);
        bench_write_file(path, pem, 0600);
    }
    json_decref(root);
    free(first_meta);
    free(pem);
    free(key);
    free(chain);
    atls_store_close(st);
    return 0;
}

/* ---- a host: the CA directory without renewalInfo, nothing else ----------------- */

#define MAX_QUEUED 256

typedef struct {
    atls_sched_t    *s;
    atls_sched_op_t *ops[MAX_QUEUED];
    int              is_dir[MAX_QUEUED];
    size_t           n;
    long long        timer_at;      /* monotonic ms, -1 none */
    size_t           requests, first_minute;
    double           t0;
    const char      *directory;
} host_t;

static int
h_send(void *ctx, atls_sched_op_t *op, const atls_http_opts_t *o, const atls_http_request_t *r)
{
    host_t *h = ctx;

    (void) o;
    if (h->n == MAX_QUEUED) {
        return -1;
    }
    h->ops[h->n] = op;
    h->is_dir[h->n++] = strcmp(r->url, h->directory) == 0;
    h->requests++;
    if (bench_seconds() - h->t0 < 60.0) {
        h->first_minute++;
    }
    return 0;
}

static void
h_cancel(void *ctx, atls_sched_op_t *op)
{
    host_t *h = ctx;
    size_t  i;

    for (i = 0; i < h->n; i++) {
        if (h->ops[i] == op) {
            memmove(&h->ops[i], &h->ops[i + 1], (h->n - i - 1) * sizeof(h->ops[0]));
            memmove(&h->is_dir[i], &h->is_dir[i + 1], (h->n - i - 1) * sizeof(int));
            h->n--;
            return;
        }
    }
}

static void
h_timer(void *ctx, long ms)
{
    host_t *h = ctx;

    h->timer_at = ms < 0 ? -1 : (long long) (bench_seconds() * 1000) + ms;
}

static void
answer_one(host_t *h)
{
    atls_http_response_t resp;
    atls_sched_op_t     *op = h->ops[0];
    int                  dir = h->is_dir[0];
    char                 body[512];

    memmove(&h->ops[0], &h->ops[1], (h->n - 1) * sizeof(h->ops[0]));
    memmove(&h->is_dir[0], &h->is_dir[1], (h->n - 1) * sizeof(int));
    h->n--;
    memset(&resp, 0, sizeof(resp));
    if (dir) {
        snprintf(body, sizeof(body), "{\"newNonce\":\"%s/nonce\",\"newAccount\":\"%s/acct\","
                 "\"newOrder\":\"%s/order\"}", h->directory, h->directory, h->directory);
        resp.status = 200;
        resp.content_type = "application/json";
    } else {
        snprintf(body, sizeof(body), "{}");
        resp.status = 404;
        resp.content_type = "application/problem+json";
    }
    resp.body = body;
    resp.body_len = strlen(body);
    atls_sched_http_done(h->s, op, &resp);
}

/* meta.json files modified at or after since */
static long
metas_written(const char *dir, time_t since)
{
    char           path[4096];
    struct dirent *e;
    struct stat    sb;
    DIR           *d;
    long           n = 0;

    snprintf(path, sizeof(path), "%s/certs", dir);
    d = opendir(path);
    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "%s/certs/%s/meta.json", dir, e->d_name);
        if (stat(path, &sb) == 0 && sb.st_mtime >= since) {
            n++;
        }
    }
    closedir(d);
    return n;
}

static int
run(const char *dir, long n, const char *directory)
{
    atls_sched_host_t host;
    atls_sched_opts_t o;
    atls_store_t     *st;
    atls_issuer_t     is;
    host_t            h;
    char              err[512], id[64], *caid, path[4096];
    const char       *name = id;
    struct stat       sb;
    time_t            start;
    double            settle;
    long              i;

    st = atls_store_fs_open(dir, err, sizeof(err));
    if (st == NULL) {
        fprintf(stderr, "sched_start: %s\n", err);
        return 1;
    }
    /* mtimes are whole seconds: start on a fresh one */
    start = time(NULL) + 1;
    while (time(NULL) < start) {
        struct timespec ts = { 0, 20000000 };

        nanosleep(&ts, NULL);
    }
    memset(&h, 0, sizeof(h));
    h.timer_at = -1;
    h.directory = directory;
    memset(&host, 0, sizeof(host));
    host.ctx = &h;
    host.http_send = h_send;
    host.http_cancel = h_cancel;
    host.timer = h_timer;
    memset(&o, 0, sizeof(o));
    o.ari = 1;
    o.slice_ms = 3;         /* as the nginx driver */
    h.t0 = bench_seconds();
    h.s = atls_sched_new(st, &host, &o, err, sizeof(err));
    if (h.s == NULL) {
        fprintf(stderr, "sched_start: %s\n", err);
        return 1;
    }
    bench_issuer(&is, directory);
    for (i = 0; i < n; i++) {
        cert_name(i, id, sizeof(id));
        if (atls_sched_add(h.s, &name, 1, &is, NULL, err, sizeof(err)) == NULL) {
            fprintf(stderr, "sched_start: %s\n", err);
            return 1;
        }
    }
    atls_sched_check(h.s);
    for (;;) {
        long long now = (long long) (bench_seconds() * 1000);

        if (h.n > 0) {
            answer_one(&h);
            continue;
        }
        if (atls_sched_idle(h.s) && (h.timer_at < 0 || h.timer_at - now > 1000)) {
            break;
        }
        if (h.timer_at < 0) {
            fprintf(stderr, "sched_start: stuck: busy without a timer\n");
            return 1;
        }
        if (h.timer_at > now) {
            struct timespec ts = { (h.timer_at - now) / 1000,
                                   ((h.timer_at - now) % 1000) * 1000000L };

            nanosleep(&ts, NULL);
        }
        h.timer_at = -1;
        atls_sched_timer(h.s);
    }
    settle = bench_seconds() - h.t0;
    atls_sched_free(h.s);
    caid = atls_ca_id(directory);
    snprintf(path, sizeof(path), "%s/accounts/%s/ari.json", dir, caid);
    free(caid);
    printf("settle_s=%.2f meta_written=%ld requests=%zu first_minute=%zu ari_json=%d\n",
           settle, metas_written(dir, start), h.requests, h.first_minute,
           stat(path, &sb) == 0 && sb.st_mtime >= start);
    atls_store_close(st);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 7 && strcmp(argv[1], "make") == 0) {
        return make_store(argv[2], atol(argv[3]), argv[4], argv[5], argv[6]);
    }
    if (argc == 5 && strcmp(argv[1], "run") == 0) {
        return run(argv[2], atol(argv[3]), argv[4]);
    }
    fprintf(stderr, "usage: sched_start make DIR N KEY.pem CHAIN.pem DIRECTORY\n"
                    "       sched_start run DIR N DIRECTORY\n");
    return 2;
}
