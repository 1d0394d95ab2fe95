/*
 * A store of many names for bench/names_scale.py, fast: 100,000 names in
 * seconds, not the hour atomic writes with fsync would take.
 *
 *   names_seed STORE N FMT KEY.pem CHAIN.pem DIRECTORY CA_FILE
 *
 * Names FMT % 0 .. FMT % (N-1) (FMT has one %ld), each one certificate
 * with that name only, valid and not due, all with the same key and the
 * same CA-signed chain (a wildcard leaf covering every name): the first
 * learned through the store as after a deploy (its facts, kt_info, in
 * meta.json, so that no server rewrites it), the others copies with their
 * id and name; each registered as a dynamic name (names/<id>.json,
 * source "cli", the only dynamic home) with names-generation at 1 and
 * names-count N at that generation, as `autotls add` would leave them.
 * Issuer: DIRECTORY, CA_FILE, terms agreed, http-01: what the bench's
 * nginx configures, so that its first pass finds nothing to rewrite.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <jansson.h>
#include "atls.h"
#include "atls_job.h"
#include "atls_store.h"
#include "benchio.h"

static void
die(const char *what, const char *why)
{
    fprintf(stderr, "names_seed: %s: %s\n", what, why);
    exit(1);
}

static void
mkdir_or_die(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        die(path, strerror(errno));
    }
}

/* The meta.json of the first name, as a deploy leaves it. */
static json_t *
first_meta(atls_store_t *st, const char *dir, const char *name, const char *pem,
           const char *directory, const char *ca_file)
{
    char             path[4096], err[512], *text;
    atls_issuer_t    is;
    atls_cert_meta_t m;
    json_t          *root;

    snprintf(path, sizeof(path), "%s/certs/%s", dir, name);
    mkdir_or_die(path);
    snprintf(path, sizeof(path), "%s/certs/%s/ec256.pem", dir, name);
    bench_write_file(path, pem, 0600);
    memset(&is, 0, sizeof(is));
    is.directory = (char *) directory;
    is.ca_file = (char *) ca_file;
    is.challenge = ATLS_CHAL_HTTP01;
    is.agree_tos = 1;
    if (atls_job_ensure(st, &name, 1, &is, &m, err, sizeof(err)) != 0 || m.n_kt_info != 1) {
        die("the first certificate", err);
    }
    m.state = ATLS_STATE_VALID;
    m.renew_at = time(NULL) + 20 * 86400;
    m.last_success = time(NULL);
    if (atls_store_save_meta(st, &m, err, sizeof(err)) != ATLS_STORE_OK) {
        die("the first meta.json", err);
    }
    atls_cert_meta_free(&m);
    snprintf(path, sizeof(path), "%s/certs/%s/meta.json", dir, name);
    text = bench_slurp(path);
    root = json_loads(text, 0, NULL);
    free(text);
    if (root == NULL) {
        die(path, "not JSON");
    }
    return root;
}

static void
register_name(const char *dir, const char *name, const char *added)
{
    char  path[4096], *text;
    json_t *e = json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", name, "source", "cli",
                          "state", "active", "added", added, "by", "names_seed");

    text = json_dumps(e, JSON_INDENT(2));
    snprintf(path, sizeof(path), "%s/names/%s.json", dir, name);
    bench_write_file(path, text, 0644);
    free(text);
    json_decref(e);
}

int
main(int argc, char **argv)
{
    char          path[4096], name[256], err[512], added[40], *key, *chain, *pem, *text;
    atls_store_t *st;
    json_t       *root;
    long          i, n;

    if (argc != 8 || (n = atol(argv[2])) < 1) {
        fprintf(stderr, "usage: names_seed STORE N FMT KEY.pem CHAIN.pem DIRECTORY CA_FILE\n");
        return 2;
    }
    mkdir_or_die(argv[1]);
    st = atls_store_fs_open(argv[1], err, sizeof(err));
    if (st == NULL) {
        die(argv[1], err);
    }
    key = bench_slurp(argv[4]);
    chain = bench_slurp(argv[5]);
    pem = malloc(strlen(key) + strlen(chain) + 1);
    strcpy(pem, key);
    strcat(pem, chain);
    snprintf(path, sizeof(path), "%s/certs", argv[1]);
    mkdir_or_die(path);
    snprintf(path, sizeof(path), "%s/names", argv[1]);
    mkdir_or_die(path);
    atls_rfc3339_format(time(NULL), added, sizeof(added));

    snprintf(name, sizeof(name), argv[3], 0L);
    root = first_meta(st, argv[1], name, pem, argv[6], argv[7]);
    register_name(argv[1], name, added);
    for (i = 1; i < n; i++) {
        snprintf(name, sizeof(name), argv[3], i);
        snprintf(path, sizeof(path), "%s/certs/%s", argv[1], name);
        mkdir_or_die(path);
        json_object_set_new(root, "id", json_string(name));
        json_object_set_new(root, "names", json_pack("[s]", name));
        text = json_dumps(root, JSON_INDENT(2));
        snprintf(path, sizeof(path), "%s/certs/%s/meta.json", argv[1], name);
        bench_write_file(path, text, 0644);
        free(text);
        snprintf(path, sizeof(path), "%s/certs/%s/ec256.pem", argv[1], name);
        bench_write_file(path, pem, 0600);
        register_name(argv[1], name, added);
    }
    snprintf(path, sizeof(path), "%s/names-generation", argv[1]);
    bench_write_file(path, "1\n", 0644);
    /* the count `autotls add` keeps with the generation (names_count.c) */
    snprintf(path, sizeof(path), "%s/names-count", argv[1]);
    snprintf(name, sizeof(name), "%ld 1\n", n);
    bench_write_file(path, name, 0644);
    json_decref(root);
    free(pem);
    free(key);
    free(chain);
    atls_store_close(st);
    return 0;
}
