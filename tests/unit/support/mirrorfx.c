/*
 * Two nodes' mirrors on one real redis-server, for the mirror tests
 * (test_mirror*.c): the fixture, a deploy as the scheduler writes one, and
 * comparisons of mirror directories.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "support/mirrorfx.h"
#include "support/testpki.h"

long long
mirrorfx_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

atls_mirror_t *
mirrorfx_node(mirrorfx_t *fx, const char *dir)
{
    char           err[512];
    atls_mirror_t *m = atls_mirror_open(&fx->conf, dir, err, sizeof(err));

    if (m == NULL) {
        fail_msg("mirror %s: %s", dir, err);
    }
    return m;
}

int
mirrorfx_setup(void **state)
{
    mirrorfx_t *fx = calloc(1, sizeof(*fx));

    if (fx == NULL || redisfx_start(&fx->rfx, 0, NULL) != 0) {
        free(fx);
        return -1;
    }
    redisfx_keyfile(&fx->rfx, "cluster.key", 0, fx->key_file, sizeof(fx->key_file));
    redisfx_conf(&fx->rfx, &fx->conf);
    fx->conf.key_file = strdup(fx->key_file);
    snprintf(fx->dir_a, sizeof(fx->dir_a), "%s/node-a", fx->rfx.dir);
    snprintf(fx->dir_b, sizeof(fx->dir_b), "%s/node-b", fx->rfx.dir);
    fx->a = mirrorfx_node(fx, fx->dir_a);
    fx->b = mirrorfx_node(fx, fx->dir_b);
    *state = fx;
    return 0;
}

int
mirrorfx_teardown(void **state)
{
    mirrorfx_t *fx = *state;

    atls_mirror_free(fx->a);
    atls_mirror_free(fx->b);
    redisfx_stop(&fx->rfx);
    atls_redis_conf_free(&fx->conf);
    free(fx);
    return 0;
}

/* ---- a deploy, as the scheduler writes one --------------------------------- */

/* The key + chain file of a certificate: a real private key in PEM. */
char *
mirrorfx_pem(int serial)
{
    EVP_PKEY *k = testpki_key(0);
    char     *key = testpki_key_pem(k), *out;

    if (asprintf(&out, "%s-----BEGIN CERTIFICATE-----\nserial %d\n"
                 "-----END CERTIFICATE-----\n", key, serial) < 0)
    {
        abort();
    }
    free(key);
    EVP_PKEY_free(k);
    return out;
}

void
mirrorfx_write_meta(atls_store_t *st, const char *id, int serial)
{
    atls_cert_meta_t m;
    char            *names[1], err[512];

    memset(&m, 0, sizeof(m));
    m.id = (char *) id;
    names[0] = (char *) id;
    m.names = names;
    m.n_names = 1;
    m.renew_at = 1700000000 + serial;
    if (atls_store_save_meta(st, &m, err, sizeof(err)) != ATLS_STORE_OK) {
        fail_msg("save meta %s: %s", id, err);
    }
}

/* Lease, key + chain, meta, unlock (the generation and announcement). */
void
mirrorfx_deploy(atls_mirror_t *m, const char *id, int serial)
{
    atls_store_t      *st = atls_mirror_store(m);
    atls_store_lock_t *lk = NULL;
    char              *pem = mirrorfx_pem(serial), path[300], err[512];

    if (atls_store_lock_cert(st, id, 0, &lk, err, sizeof(err)) != ATLS_STORE_OK) {
        fail_msg("lock %s: %s", id, err);
    }
    snprintf(path, sizeof(path), "certs/%s/ec256.pem", id);
    if (st->ops->put(st, path, pem, strlen(pem), 1, err, sizeof(err)) != ATLS_STORE_OK) {
        fail_msg("put %s: %s", path, err);
    }
    mirrorfx_write_meta(st, id, serial);
    atls_store_unlock(st, lk);
    free(pem);
}

/* ---- comparing mirrors -------------------------------------------------------- */

/* Through a fs store over dir: the files as a node's workers load them. */
char *
mirrorfx_file(const char *dir, const char *id, const char *name)
{
    atls_store_t *st;
    char          err[512], path[300], *d = NULL;

    st = atls_store_fs_open(dir, err, sizeof(err));
    if (st == NULL) {
        fail_msg("%s", err);
    }
    snprintf(path, sizeof(path), "certs/%s/%s", id, name);
    if (st->ops->get(st, path, &d, NULL, err, sizeof(err)) != ATLS_STORE_OK) {
        d = NULL;
    }
    atls_store_close(st);
    return d != NULL ? d : strdup("");
}

/* The files a server would serve: the same bytes in both mirror dirs. */
void
mirrorfx_assert_same_cert(const char *dir1, const char *dir2, const char *id)
{
    static const char *const files[] = { "meta.json", "ec256.pem" };
    char        p2[300], *d1, *d2;
    size_t      i;
    struct stat sb;

    for (i = 0; i < 2; i++) {
        d1 = mirrorfx_file(dir1, id, files[i]);
        d2 = mirrorfx_file(dir2, id, files[i]);
        if (d1[0] == '\0' || d2[0] == '\0') {
            fail_msg("certs/%s/%s missing in %s", id, files[i], d1[0] == '\0' ? dir1 : dir2);
        }
        assert_string_equal(d1, d2);
        free(d1);
        free(d2);
    }
    snprintf(p2, sizeof(p2), "%s/certs/%s/ec256.pem", dir2, id);
    assert_int_equal(stat(p2, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);   /* a key: private in the mirror too */
}

void
mirrorfx_sync_ok(atls_mirror_t *m, int want_pulled, int want_pushed)
{
    char err[512];
    int  pushed = -1, pulled = atls_mirror_sync(m, &pushed, err, sizeof(err));

    if (pulled < 0) {
        fail_msg("sync: %s", err);
    }
    if (want_pulled >= 0) {
        assert_int_equal(pulled, want_pulled);
    }
    if (want_pushed >= 0) {
        assert_int_equal(pushed, want_pushed);
    }
}

uint64_t
mirrorfx_redis_gen(atls_mirror_t *m, const char *id)
{
    uint64_t g;
    char     err[512];

    if (atls_mirror_redis_generation(m, id, &g, err, sizeof(err)) != ATLS_STORE_OK) {
        fail_msg("%s", err);
    }
    return g;
}
