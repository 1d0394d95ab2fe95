/*
 * Status page cost at scale (bench/status_scale.sh builds and runs this).
 *
 *   status_scale make DIR N KEY.pem CHAIN.pem   a store of N certificates,
 *       all with the same key and chain (the page's cost does not depend on
 *       which certificate it reads), written without fsync: seconds, not
 *       the minutes atomic store writes would take
 *   status_scale time DIR ROUNDS                renders the JSON status
 *       ROUNDS times with the current code and with the key-parsing
 *       baseline (old_atls_status_json: common/status.c from before the
 *       chain-only loader, compiled in by the script), alternating
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "atls_status.h"
#include "benchio.h"

char *old_atls_status_json(atls_store_t *st, time_t now);


static int
make_store(const char *dir, long n, const char *key_path, const char *chain_path)
{
    char             path[4096], id[64], *key = bench_slurp(key_path), *chain = bench_slurp(chain_path);
    char            *pem, *json, *names[1];
    atls_cert_meta_t m;
    long             i;
    size_t           klen = strlen(key);

    pem = malloc(klen + strlen(chain) + 1);
    memcpy(pem, key, klen);
    strcpy(pem + klen, chain);
    snprintf(path, sizeof(path), "%s/certs", dir);
    if ((mkdir(dir, 0700) != 0 && errno != EEXIST) || (mkdir(path, 0700) != 0 && errno != EEXIST)) {
        fprintf(stderr, "status_scale: %s: %s\n", path, strerror(errno));
        return 1;
    }
    for (i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "c%06ld.bench.example", i);
        memset(&m, 0, sizeof(m));
        m.id = id;
        names[0] = id;
        m.names = names;
        m.n_names = 1;
        m.state = ATLS_STATE_VALID;
        m.renew_at = time(NULL) + 30 * 86400;
        m.last_success = time(NULL);
        m.generation = 1;
        json = atls_cert_meta_to_json(&m);
        snprintf(path, sizeof(path), "%s/certs/%s", dir, id);
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "status_scale: %s: %s\n", path, strerror(errno));
            return 1;
        }
        snprintf(path, sizeof(path), "%s/certs/%s/meta.json", dir, id);
        bench_write_file(path, json, 0644);
        snprintf(path, sizeof(path), "%s/certs/%s/ec256.pem", dir, id);
        bench_write_file(path, pem, 0600);
        free(json);
    }
    free(pem);
    free(key);
    free(chain);
    return 0;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}

/* One timed rendering; checks both renderings say the same thing. */
static double
time_one(atls_store_t *st, char *(*render)(atls_store_t *, time_t), size_t *len)
{
    double t0 = bench_seconds(), t;
    char  *out = render(st, 1800000000);

    t = bench_seconds() - t0;
    if (out == NULL) {
        fprintf(stderr, "status_scale: rendering failed\n");
        exit(1);
    }
    *len = strlen(out);
    free(out);
    return t;
}

static int
time_store(const char *dir, int rounds)
{
    char          err[512];
    atls_store_t *st = atls_store_fs_open(dir, err, sizeof(err));
    double       *now, *old;
    size_t        len_now = 0, len_old = 0;
    int           r;

    if (st == NULL || rounds < 1) {
        fprintf(stderr, "status_scale: %s\n", st == NULL ? err : "ROUNDS < 1");
        return 1;
    }
    now = calloc((size_t) rounds, sizeof(double));
    old = calloc((size_t) rounds, sizeof(double));
    (void) time_one(st, atls_status_json, &len_now);    /* warm the page cache */
    for (r = 0; r < rounds; r++) {
        old[r] = time_one(st, old_atls_status_json, &len_old);
        now[r] = time_one(st, atls_status_json, &len_now);
    }
    /* The page has grown since the baseline (source, findings, counters,
     * the static inventory): the current rendering holds every member the
     * baseline had, so it can only be longer.  Shorter means lost content. */
    if (len_now < len_old) {
        fprintf(stderr, "status_scale: the current rendering is shorter than the "
                "baseline's (%zu vs %zu bytes)\n", len_now, len_old);
        return 1;
    }
    qsort(now, (size_t) rounds, sizeof(double), cmp_double);
    qsort(old, (size_t) rounds, sizeof(double), cmp_double);
    printf("status JSON, %d rounds, %zu bytes now, %zu the baseline's (median, min..max):\n",
           rounds, len_now, len_old);
    printf("  key-parsing baseline: %8.1f ms  (%.1f..%.1f)\n",
           old[rounds / 2] * 1e3, old[0] * 1e3, old[rounds - 1] * 1e3);
    printf("  chain-only (now):     %8.1f ms  (%.1f..%.1f)\n",
           now[rounds / 2] * 1e3, now[0] * 1e3, now[rounds - 1] * 1e3);
    printf("  ratio now/baseline:   %8.2f\n", now[rounds / 2] / old[rounds / 2]);
    free(now);
    free(old);
    atls_store_close(st);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "make") == 0) {
        return make_store(argv[2], atol(argv[3]), argv[4], argv[5]);
    }
    if (argc == 4 && strcmp(argv[1], "time") == 0) {
        return time_store(argv[2], atoi(argv[3]));
    }
    fprintf(stderr, "usage: status_scale make DIR N KEY.pem CHAIN.pem\n"
                    "       status_scale time DIR ROUNDS\n");
    return 2;
}
