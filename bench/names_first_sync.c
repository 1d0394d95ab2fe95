/*
 * The scheduler's first sync of a large registry of dynamic names
 * (bench/names_first_sync.sh builds and runs this against the current
 * library and a baseline).
 *
 *   names_first_sync make DIR N
 *       a store whose registry holds N active names (home "shop"): the
 *       first through atls_names_add (the registry's counter and journal),
 *       the others written as entry files directly, without fsync
 *   names_first_sync run DIR N SLICE_MS
 *       a scheduler with one dynamic home and opts.slice_ms SLICE_MS, as a
 *       server drives it: atls_sched_names_sync, atls_sched_check, then the
 *       timer until all N names are managed.  The CA never answers (orders
 *       stay in flight: the bench is about the sync).  Prints the longest
 *       single call (sync or timer), the first call, the longest timer
 *       call (and how many took over 10 ms), the number of calls and the total, in ms.
 *
 * Only the public API (and the registry's entry format) is used, so the
 * same source builds against the baseline library.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "atls.h"
#include "atls_names.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "benchio.h"

static void
entry_name(long i, char *buf, size_t len)
{
    snprintf(buf, len, "n%06ld.bench.test", i);
}

static double
now_ms(void)
{
    return bench_seconds() * 1000.0;
}

static int
make_registry(const char *dir, long n)
{
    char          name[64], path[4096], buf[512], err[512];
    atls_store_t *st;
    long          i;

    st = atls_store_fs_open(dir, err, sizeof(err));
    if (st == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    entry_name(0, name, sizeof(name));
    if (atls_names_add(st, name, "shop", "cli", "bench", time(NULL), err, sizeof(err))
        != ATLS_STORE_OK)
    {
        fprintf(stderr, "%s\n", err);
        atls_store_close(st);
        return 1;
    }
    atls_store_close(st);
    for (i = 1; i < n; i++) {
        entry_name(i, name, sizeof(name));
        snprintf(path, sizeof(path), "%s/names/%s.json", dir, name);
        snprintf(buf, sizeof(buf),
                       "{\"name\": \"%s\", \"home\": \"shop\", \"source\": \"cli\", "
                       "\"state\": \"active\", \"added\": \"2026-11-29T00:00:00Z\", "
                       "\"by\": \"bench\"}\n", name);
        bench_write_file(path, buf, 0600);
    }
    return 0;
}

/* ---- the host: a timer, a CA that never answers ---------------------------- */

static double        timer_at = -1;
static atls_issuer_t home_issuer;
static int           home_data;

static int
b_http_send(void *ctx, atls_sched_op_t *op, const atls_http_opts_t *o,
            const atls_http_request_t *req)
{
    (void) ctx; (void) op; (void) o; (void) req;
    return 0;       /* in flight for ever */
}

static void
b_http_cancel(void *ctx, atls_sched_op_t *op)
{
    (void) ctx; (void) op;
}

static void
b_timer(void *ctx, long ms)
{
    (void) ctx;
    timer_at = ms < 0 ? -1 : now_ms() + ms;
}

static const atls_issuer_t *
b_home(void *ctx, const char *home, void **cert_data)
{
    (void) ctx;
    if (home != NULL && home[0] != '\0' && strcmp(home, "shop") != 0) {
        return NULL;
    }
    *cert_data = &home_data;
    return &home_issuer;
}

static int
run_sync(const char *dir, long n, long slice_ms)
{
    atls_sched_host_t host;
    atls_sched_opts_t o;
    atls_sched_t     *s;
    atls_store_t     *st;
    char              err[512], last[64];
    double            t0, t, longest, first, total, later = 0;
    long              calls = 1, over = 0;

    st = atls_store_fs_open(dir, err, sizeof(err));
    if (st == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    memset(&home_issuer, 0, sizeof(home_issuer));
    home_issuer.directory = (char *) "https://ca.bench.test/dir";
    home_issuer.challenge = ATLS_CHAL_HTTP01;
    home_issuer.agree_tos = 1;
    memset(&host, 0, sizeof(host));
    host.http_send = b_http_send;
    host.http_cancel = b_http_cancel;
    host.timer = b_timer;
    host.home = b_home;
    memset(&o, 0, sizeof(o));
    o.slice_ms = slice_ms;
    s = atls_sched_new(st, &host, &o, err, sizeof(err));
    if (s == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    entry_name(n - 1, last, sizeof(last));

    /* as the nginx driver starts: the sync, then the first pass */
    t0 = now_ms();
    atls_sched_names_sync(s);
    first = now_ms() - t0;
    longest = first;
    total = first;
    t = now_ms();
    atls_sched_check(s);
    t = now_ms() - t;
    longest = t > longest ? t : longest;
    total += t;
    while (atls_sched_find(s, last) == NULL) {
        if (timer_at < 0) {
            fprintf(stderr, "not every name is managed, and nothing is due\n");
            return 1;
        }
        while (now_ms() < timer_at) {
            struct timespec ts = { 0, 200 * 1000 };

            nanosleep(&ts, NULL);
        }
        timer_at = -1;
        t = now_ms();
        atls_sched_timer(s);
        t = now_ms() - t;
        longest = t > longest ? t : longest;
        later = t > later ? t : later;
        over += t > 10.0;
        total += t;
        calls++;
    }
    printf("names %ld slice_ms %ld: longest call %.1f ms, first sync call %.1f ms, "
           "longest timer call %.1f ms (%ld over 10 ms), %ld calls, %.0f ms in calls\n",
           n, slice_ms, longest, first, later, over, calls, total);
    atls_sched_free(s);
    atls_store_close(st);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "make") == 0) {
        return make_registry(argv[2], atol(argv[3]));
    }
    if (argc == 5 && strcmp(argv[1], "run") == 0) {
        return run_sync(argv[2], atol(argv[3]), atol(argv[4]));
    }
    fprintf(stderr, "usage: names_first_sync make DIR N | run DIR N SLICE_MS\n");
    return 2;
}
