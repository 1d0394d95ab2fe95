/*
 * Two nodes' mirrors (atls_mirror.h) on one real redis-server: deploys
 * through Redis first, announcements, the sync at start, leases and
 * fencing across nodes, Redis stopped and restarted (with its data, and
 * empty), challenges answered by any node, no private key in clear.
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
#include "atls_mirror.h"
#include "atls_redis_sub.h"
#include "support/redisfx.h"
#include "support/testpki.h"
#include "support/tmptree.h"

#define WAIT_MS  10000   /* deadline for a condition across nodes */

typedef struct {
    redisfx_t          rfx;
    char               key_file[160];
    atls_redis_conf_t  conf;
    char               dir_a[160], dir_b[160];
    atls_mirror_t     *a, *b;
} fx_t;

static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static atls_mirror_t *
node(fx_t *fx, const char *dir)
{
    char           err[512];
    atls_mirror_t *m = atls_mirror_open(&fx->conf, dir, err, sizeof(err));

    if (m == NULL) {
        fail_msg("mirror %s: %s", dir, err);
    }
    return m;
}

static int
setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));

    if (fx == NULL || redisfx_start(&fx->rfx, 0, NULL) != 0) {
        free(fx);
        return -1;
    }
    redisfx_keyfile(&fx->rfx, "cluster.key", 0, fx->key_file, sizeof(fx->key_file));
    redisfx_conf(&fx->rfx, &fx->conf);
    fx->conf.key_file = strdup(fx->key_file);
    snprintf(fx->dir_a, sizeof(fx->dir_a), "%s/node-a", fx->rfx.dir);
    snprintf(fx->dir_b, sizeof(fx->dir_b), "%s/node-b", fx->rfx.dir);
    fx->a = node(fx, fx->dir_a);
    fx->b = node(fx, fx->dir_b);
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    fx_t *fx = *state;

    atls_mirror_free(fx->a);
    atls_mirror_free(fx->b);
    redisfx_stop(&fx->rfx);
    atls_redis_conf_free(&fx->conf);
    free(fx);
    return 0;
}

/* ---- a deploy, as the scheduler writes one --------------------------------- */

/* The key + chain file of a certificate: a real private key in PEM. */
static char *
pem_for(int serial)
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

static void
write_meta(atls_store_t *st, const char *id, int serial)
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
static void
deploy(atls_mirror_t *m, const char *id, int serial)
{
    atls_store_t      *st = atls_mirror_store(m);
    atls_store_lock_t *lk = NULL;
    char              *pem = pem_for(serial), path[300], err[512];

    if (atls_store_lock_cert(st, id, 0, &lk, err, sizeof(err)) != ATLS_STORE_OK) {
        fail_msg("lock %s: %s", id, err);
    }
    snprintf(path, sizeof(path), "certs/%s/ec256.pem", id);
    if (st->ops->put(st, path, pem, strlen(pem), 1, err, sizeof(err)) != ATLS_STORE_OK) {
        fail_msg("put %s: %s", path, err);
    }
    write_meta(st, id, serial);
    atls_store_unlock(st, lk);
    free(pem);
}

/* ---- comparing mirrors -------------------------------------------------------- */

static char *
read_file(const char *path, size_t *len)
{
    FILE  *f = fopen(path, "rb");
    char  *buf;
    long   n;

    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t) n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t) n;
    return buf;
}

/* The files a server would serve: the same bytes in both mirror dirs. */
static void
assert_same_cert(const char *dir1, const char *dir2, const char *id)
{
    static const char *const files[] = { "meta.json", "ec256.pem" };
    char   p1[300], p2[300], *d1, *d2;
    size_t l1 = 0, l2 = 0, i;
    struct stat sb;

    for (i = 0; i < 2; i++) {
        snprintf(p1, sizeof(p1), "%s/certs/%s/%s", dir1, id, files[i]);
        snprintf(p2, sizeof(p2), "%s/certs/%s/%s", dir2, id, files[i]);
        d1 = read_file(p1, &l1);
        d2 = read_file(p2, &l2);
        if (d1 == NULL || d2 == NULL) {
            fail_msg("missing: %s", d1 == NULL ? p1 : p2);
        }
        assert_int_equal(l1, l2);
        assert_memory_equal(d1, d2, l1);
        free(d1);
        free(d2);
    }
    snprintf(p2, sizeof(p2), "%s/certs/%s/ec256.pem", dir2, id);
    assert_int_equal(stat(p2, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);   /* a key: private in the mirror too */
}

static char *
file_or_empty(const char *dir, const char *id, const char *name)
{
    char   p[300], *d;
    size_t l;

    snprintf(p, sizeof(p), "%s/certs/%s/%s", dir, id, name);
    d = read_file(p, &l);
    return d ? d : strdup("");
}

static void
sync_ok(atls_mirror_t *m, int want_pulled, int want_pushed)
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

static uint64_t
redis_gen(atls_mirror_t *m, const char *id)
{
    uint64_t g;
    char     err[512];

    if (atls_mirror_redis_generation(m, id, &g, err, sizeof(err)) != ATLS_STORE_OK) {
        fail_msg("%s", err);
    }
    return g;
}

/* ---- tests ------------------------------------------------------------------------ */

/* A deploy on A reaches B through the announcement alone (no sync call). */
static void
test_announcement_reaches_other_node(void **state)
{
    fx_t     *fx = *state;
    char      err[512];
    long long deadline;
    int       serial;

    assert_int_equal(atls_mirror_listen(fx->b, err, sizeof(err)), 0);
    deadline = now_ms() + WAIT_MS;
    while (!atls_mirror_listening(fx->b) && now_ms() < deadline) {
        assert_true(atls_mirror_poll(fx->b, 100, err, sizeof(err)) >= 0);
    }
    assert_true(atls_mirror_listening(fx->b));
    for (serial = 1; serial <= 2; serial++) {
        uint64_t workers_saw = atls_store_generation(atls_mirror_fs(fx->b));

        deploy(fx->a, "example.com", serial);
        assert_int_equal(atls_mirror_generation(fx->a, "example.com"), serial);
        assert_int_equal(redis_gen(fx->a, "example.com"), serial);
        deadline = now_ms() + WAIT_MS;
        while (atls_mirror_generation(fx->b, "example.com") < (uint64_t) serial
               && now_ms() < deadline)
        {
            if (atls_mirror_poll(fx->b, 100, err, sizeof(err)) < 0) {
                fail_msg("poll: %s", err);
            }
        }
        assert_int_equal(atls_mirror_generation(fx->b, "example.com"), serial);
        assert_same_cert(fx->dir_a, fx->dir_b, "example.com");
        /* B's workers, watching their mirror, load it again */
        assert_true(atls_store_generation(atls_mirror_fs(fx->b)) > workers_saw);
    }
}

/* A node that was down catches up at start from the generations. */
static void
test_sync_at_start(void **state)
{
    fx_t          *fx = *state;
    atls_mirror_t *c;
    char           dir_c[200];

    deploy(fx->a, "a.example", 1);
    deploy(fx->a, "b.example", 1);
    deploy(fx->a, "b.example", 2);
    deploy(fx->a, "c.example", 1);
    snprintf(dir_c, sizeof(dir_c), "%s/node-c", fx->rfx.dir);
    c = node(fx, dir_c);
    sync_ok(c, 3, 0);
    assert_int_equal(atls_mirror_generation(c, "b.example"), 2);
    assert_same_cert(fx->dir_a, dir_c, "a.example");
    assert_same_cert(fx->dir_a, dir_c, "b.example");
    assert_same_cert(fx->dir_a, dir_c, "c.example");
    sync_ok(c, 0, 0);    /* current: nothing moves */
    sync_ok(fx->a, 0, 0);
    atls_mirror_free(c);
}

/* One order per certificate: A's lease blocks B; when A dies its lease
 * runs out, B takes over, and A's late write is refused everywhere. */
static void
test_lease_fencing_across_nodes(void **state)
{
    fx_t               *fx = *state;
    atls_store_t       *sa = atls_mirror_store(fx->a), *sb = atls_mirror_store(fx->b);
    atls_store_lock_t  *la = NULL, *lb = NULL;
    atls_redis_lease_t  keys;
    redisReply         *r;
    char                err[512], *late = pem_for(99), *before, *now_b;
    long long           deadline;
    int                 rc;

    deploy(fx->a, "example.com", 1);
    sync_ok(fx->b, 1, 0);
    assert_int_equal(atls_store_lock_cert(sa, "example.com", 0, &la, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_lock_cert(sb, "example.com", 0, &lb, err, sizeof(err)),
                     ATLS_STORE_BUSY);
    assert_int_equal(atls_mirror_renew(fx->a), 0);   /* alive: still A's */
    /* A dies: nobody renews; the lease's time runs out (shortened here) */
    atls_redis_lease_keys("t:", "cert-example.com", &keys);
    r = redisfx_cmd(&fx->rfx, "PEXPIRE", keys.lease_key, "50", NULL);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    deadline = now_ms() + WAIT_MS;
    do {
        rc = atls_store_lock_cert(sb, "example.com", 0, &lb, err, sizeof(err));
        if (rc == ATLS_STORE_BUSY) {
            usleep(20000);
        }
    } while (rc == ATLS_STORE_BUSY && now_ms() < deadline);
    assert_int_equal(rc, ATLS_STORE_OK);
    /* B finishes the order */
    before = pem_for(2);
    assert_int_equal(sb->ops->put(sb, "certs/example.com/ec256.pem", before, strlen(before),
                                  1, err, sizeof(err)), ATLS_STORE_OK);
    write_meta(sb, "example.com", 2);
    atls_store_unlock(sb, lb);
    assert_int_equal(redis_gen(fx->b, "example.com"), 2);
    /* A wakes up and deploys late: refused in Redis, its mirror untouched */
    assert_int_equal(atls_mirror_renew(fx->a), 1);   /* it finds its lease lost */
    rc = sa->ops->put(sa, "certs/example.com/ec256.pem", late, strlen(late), 1,
                      err, sizeof(err));
    assert_int_equal(rc, ATLS_STORE_BUSY);
    assert_non_null(strstr(err, "stale"));
    atls_store_unlock(sa, la);
    assert_int_equal(redis_gen(fx->a, "example.com"), 2);   /* nothing announced */
    now_b = file_or_empty(fx->dir_b, "example.com", "ec256.pem");
    assert_string_equal(now_b, before);
    free(now_b);
    sync_ok(fx->a, 1, 0);
    assert_same_cert(fx->dir_b, fx->dir_a, "example.com");
    free(before);
    free(late);
}

/* Redis gone: sync says so and leaves the mirror alone; the node still
 * reads its certificates; after Redis returns, sync catches up. */
static void
test_redis_down_then_back(void **state)
{
    fx_t         *fx = *state;
    atls_store_t *sb = atls_mirror_store(fx->b);
    char          err[512], *pem_before, *meta_before, *pem_after, *meta_after, *data = NULL;
    redisReply   *r;

    deploy(fx->a, "example.com", 1);
    sync_ok(fx->b, 1, 0);
    deploy(fx->a, "example.com", 2);
    r = redisfx_cmd(&fx->rfx, "SAVE", NULL);   /* Redis comes back with its data */
    freeReplyObject(r);
    pem_before = file_or_empty(fx->dir_b, "example.com", "ec256.pem");
    meta_before = file_or_empty(fx->dir_b, "example.com", "meta.json");
    redisfx_kill(&fx->rfx);
    /* B restarts while Redis is down: it opens, and serves its mirror */
    atls_mirror_free(fx->b);
    fx->b = node(fx, fx->dir_b);
    sb = atls_mirror_store(fx->b);
    assert_int_equal(atls_mirror_listen(fx->b, err, sizeof(err)) == 0
                     ? atls_mirror_poll(fx->b, 1000, err, sizeof(err)) : -1, -1);

    assert_int_equal(atls_mirror_sync(fx->b, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "connect"));
    assert_non_null(strstr(err, "redis://"));
    pem_after = file_or_empty(fx->dir_b, "example.com", "ec256.pem");
    meta_after = file_or_empty(fx->dir_b, "example.com", "meta.json");
    assert_string_equal(pem_after, pem_before);
    assert_string_equal(meta_after, meta_before);
    assert_int_equal(atls_mirror_generation(fx->b, "example.com"), 1);
    /* the scheduler still knows its certificates */
    assert_int_equal(sb->ops->get(sb, "certs/example.com/meta.json", &data, NULL,
                                  err, sizeof(err)), ATLS_STORE_OK);
    assert_string_equal(data, meta_before);
    free(data);
    free(pem_after);
    free(meta_after);

    assert_int_equal(redisfx_restart(&fx->rfx), 0);
    sync_ok(fx->b, 1, 0);
    assert_int_equal(atls_mirror_generation(fx->b, "example.com"), 2);
    assert_same_cert(fx->dir_a, fx->dir_b, "example.com");
    free(pem_before);
    free(meta_before);
}

/* Redis dies in the middle of a sync: right after the first certificate
 * was pulled (the log line that says so kills it). */
static redisfx_t *kill_on_pull;

static void
kill_after_first_pull(void *ctx, atls_log_level_t level, const char *msg)
{
    (void) ctx;
    (void) level;
    if (kill_on_pull != NULL && strstr(msg, "from Redis") != NULL) {
        redisfx_kill(kill_on_pull);
        kill_on_pull = NULL;
    }
}

static void
test_redis_dies_mid_sync(void **state)
{
    fx_t       *fx = *state;
    char        err[512], *before[3], *now;
    const char *ids[] = { "a.example", "b.example", "c.example" };
    redisReply *r;
    size_t      i;

    for (i = 0; i < 3; i++) {
        deploy(fx->a, ids[i], 1);
    }
    sync_ok(fx->b, 3, 0);
    for (i = 0; i < 3; i++) {
        deploy(fx->a, ids[i], 2);
        before[i] = file_or_empty(fx->dir_b, ids[i], "ec256.pem");
    }
    r = redisfx_cmd(&fx->rfx, "SAVE", NULL);
    freeReplyObject(r);

    kill_on_pull = &fx->rfx;
    atls_log_set(kill_after_first_pull, NULL, ATLS_LOG_INFO);
    assert_int_equal(atls_mirror_sync(fx->b, NULL, err, sizeof(err)), -1);
    atls_log_set(NULL, NULL, ATLS_LOG_INFO);
    assert_null(kill_on_pull);   /* it did die midway */
    assert_non_null(strstr(err, "redis://"));
    /* the first certificate is whole at 2, the others whole at 1 */
    assert_same_cert(fx->dir_a, fx->dir_b, "a.example");
    assert_int_equal(atls_mirror_generation(fx->b, "a.example"), 2);
    for (i = 1; i < 3; i++) {
        now = file_or_empty(fx->dir_b, ids[i], "ec256.pem");
        assert_string_equal(now, before[i]);
        free(now);
        assert_int_equal(atls_mirror_generation(fx->b, ids[i]), 1);
    }
    assert_int_equal(redisfx_restart(&fx->rfx), 0);
    sync_ok(fx->b, 2, 0);
    for (i = 0; i < 3; i++) {
        assert_same_cert(fx->dir_a, fx->dir_b, ids[i]);
        free(before[i]);
    }
}

/* A certificate whose entries fail midway (a tampered value after a good
 * one) is not mirrored at all: no file of it changes, the error names the
 * Redis key, and the other certificates go on. */
static void
test_failed_pull_leaves_mirror_whole(void **state)
{
    fx_t       *fx = *state;
    char        err[512], *pem_before, *meta_before, *pem_now, *meta_now;

    deploy(fx->a, "example.com", 1);
    deploy(fx->a, "other.example", 1);
    sync_ok(fx->b, 2, 0);
    pem_before = file_or_empty(fx->dir_b, "example.com", "ec256.pem");
    meta_before = file_or_empty(fx->dir_b, "example.com", "meta.json");
    deploy(fx->a, "example.com", 2);
    deploy(fx->a, "other.example", 2);
    /* ec256.pem is read first and is fine; meta.json is damaged */
    redisfx_set_raw(&fx->rfx, "t:{example.com}:v:certs/example.com/meta.json", "pXX{", 4);

    assert_int_equal(atls_mirror_sync_one(fx->b, "example.com", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "meta.json"));
    pem_now = file_or_empty(fx->dir_b, "example.com", "ec256.pem");
    meta_now = file_or_empty(fx->dir_b, "example.com", "meta.json");
    assert_string_equal(pem_now, pem_before);
    assert_string_equal(meta_now, meta_before);
    assert_int_equal(atls_mirror_generation(fx->b, "example.com"), 1);
    sync_ok(fx->b, 1, 0);   /* other.example still comes */
    assert_same_cert(fx->dir_a, fx->dir_b, "other.example");
    free(pem_now);
    free(meta_now);
    free(pem_before);
    free(meta_before);
}

/* Redis restarted empty: the mirrors fill it again, the newest wins (B
 * was behind on one certificate and pushes first), no entry is lost. */
static void
test_repopulate_after_flush(void **state)
{
    fx_t          *fx = *state;
    atls_store_t  *sa = atls_mirror_store(fx->a);
    atls_mirror_t *c;
    char           err[512], dir_c[200], *data = NULL;
    redisReply    *r;
    size_t         len;

    deploy(fx->a, "x.example", 1);
    deploy(fx->a, "y.example", 1);
    assert_int_equal(sa->ops->put(sa, "accounts/ca_one/account.json", "{\"url\":\"u\"}", 11,
                                  0, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(sa->ops->put(sa, "accounts/ca_one/account.key", "secret key", 10,
                                  1, err, sizeof(err)), ATLS_STORE_OK);
    sync_ok(fx->b, 2, 0);
    deploy(fx->a, "x.example", 2);   /* B does not see this one */
    r = redisfx_cmd(&fx->rfx, "FLUSHALL", NULL);
    freeReplyObject(r);

    sync_ok(fx->b, 0, 2);            /* B first: its x.example is older */
    assert_int_equal(redis_gen(fx->b, "x.example"), 1);
    sync_ok(fx->a, 0, 1);            /* A's x.example is newer: it wins */
    assert_int_equal(redis_gen(fx->a, "x.example"), 2);
    assert_int_equal(redis_gen(fx->a, "y.example"), 1);
    sync_ok(fx->b, 1, 0);            /* and B takes it */
    assert_same_cert(fx->dir_a, fx->dir_b, "x.example");

    /* a new node gets everything back from Redis */
    snprintf(dir_c, sizeof(dir_c), "%s/node-c", fx->rfx.dir);
    c = node(fx, dir_c);
    sync_ok(c, 2, 0);
    assert_same_cert(fx->dir_a, dir_c, "x.example");
    assert_same_cert(fx->dir_a, dir_c, "y.example");
    assert_int_equal(atls_mirror_fs(c)->ops->get(atls_mirror_fs(c), "accounts/ca_one/account.key",
                                                 &data, &len, err, sizeof(err)), ATLS_STORE_OK);
    assert_string_equal(data, "secret key");
    free(data);
    r = redisfx_cmd(&fx->rfx, "EXISTS", "t:{/cluster}:gen", NULL);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    atls_mirror_free(c);
}

/* The subscriber's connection fails with Redis: the error says so; the
 * host listens again and syncs, and announcements flow again.  A message
 * that is not an announcement is ignored. */
static void
test_subscriber_reconnects(void **state)
{
    fx_t       *fx = *state;
    char        err[512] = "";
    long long   deadline;
    redisReply *r;
    int         rc = 0;

    assert_int_equal(atls_mirror_listen(fx->b, err, sizeof(err)), 0);
    deadline = now_ms() + WAIT_MS;
    while (!atls_mirror_listening(fx->b) && now_ms() < deadline) {
        assert_true(atls_mirror_poll(fx->b, 100, err, sizeof(err)) >= 0);
    }
    r = redisfx_cmd(&fx->rfx, "PUBLISH", "t:gen", "junk", NULL);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    assert_true(atls_mirror_poll(fx->b, 500, err, sizeof(err)) >= 0);
    deploy(fx->a, "example.com", 1);
    r = redisfx_cmd(&fx->rfx, "SAVE", NULL);
    freeReplyObject(r);
    redisfx_kill(&fx->rfx);
    deadline = now_ms() + WAIT_MS;
    while (rc >= 0 && now_ms() < deadline) {
        rc = atls_mirror_poll(fx->b, 100, err, sizeof(err));
    }
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "closed"));
    assert_false(atls_mirror_listening(fx->b));

    assert_int_equal(redisfx_restart(&fx->rfx), 0);
    assert_int_equal(atls_mirror_listen(fx->b, err, sizeof(err)), 0);
    sync_ok(fx->b, 1, 0);   /* what was announced while it was away */
    deadline = now_ms() + WAIT_MS;
    while (!atls_mirror_listening(fx->b) && now_ms() < deadline) {
        assert_true(atls_mirror_poll(fx->b, 100, err, sizeof(err)) >= 0);
    }
    deploy(fx->a, "example.com", 2);
    deadline = now_ms() + WAIT_MS;
    while (atls_mirror_generation(fx->b, "example.com") < 2 && now_ms() < deadline) {
        assert_true(atls_mirror_poll(fx->b, 100, err, sizeof(err)) >= 0);
    }
    assert_same_cert(fx->dir_a, fx->dir_b, "example.com");
}

/* A certificate removed on one node is removed from the others' mirrors. */
static void
test_removal_reaches_other_node(void **state)
{
    fx_t         *fx = *state;
    atls_store_t *sa = atls_mirror_store(fx->a);
    char          err[512], path[300];
    struct stat   sb;

    deploy(fx->a, "gone.example", 1);
    deploy(fx->a, "kept.example", 1);
    sync_ok(fx->b, 2, 0);
    assert_int_equal(sa->ops->del(sa, "certs/gone.example", err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(redis_gen(fx->a, "gone.example"), 2);
    sync_ok(fx->b, 1, 0);
    snprintf(path, sizeof(path), "%s/certs/gone.example", fx->dir_b);
    assert_int_not_equal(stat(path, &sb), 0);
    assert_same_cert(fx->dir_a, fx->dir_b, "kept.example");
    sync_ok(fx->b, 0, 0);
}

/* The store's typed calls work unchanged over the mirror's store: a real
 * key and chain saved on A (validated by save_cert) load from B's mirror
 * directory as a fs store, which is what B's workers serve. */
static void
test_typed_store_calls(void **state)
{
    fx_t               *fx = *state;
    atls_store_t       *sa = atls_mirror_store(fx->a);
    atls_store_lock_t  *lk = NULL;
    const char *const   names[] = { "typed.example" };
    testpki_chain_t     pki;
    X509               *certs[2];
    char               *chain, err[512];
    EVP_PKEY           *key = NULL;
    STACK_OF(X509)     *loaded = NULL;

    assert_int_equal(testpki_chain_make(&pki, names, 1, ATLS_KEY_EC256), 0);
    certs[0] = pki.leaf;
    certs[1] = pki.inter;
    chain = testpki_pem(certs, 2);
    assert_int_equal(atls_store_lock_cert(sa, "typed.example", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    if (atls_store_save_cert(sa, "typed.example", ATLS_KEY_EC256, pki.leaf_key, chain,
                             err, sizeof(err)) != ATLS_STORE_OK)
    {
        fail_msg("save_cert: %s", err);
    }
    write_meta(sa, "typed.example", 1);
    atls_store_unlock(sa, lk);
    sync_ok(fx->b, 1, 0);
    if (atls_store_load_cert(atls_mirror_fs(fx->b), "typed.example", ATLS_KEY_EC256, &key,
                             &loaded, err, sizeof(err)) != ATLS_STORE_OK)
    {
        fail_msg("load_cert from B's mirror: %s", err);
    }
    assert_int_equal(X509_check_private_key(sk_X509_value(loaded, 0), key), 1);
    assert_int_equal(X509_cmp(sk_X509_value(loaded, 0), pki.leaf), 0);
    EVP_PKEY_free(key);
    sk_X509_pop_free(loaded, X509_free);
    free(chain);
    testpki_chain_free(&pki);
}

/* http-01 and tls-alpn-01 answers put by one node are read by the other. */
static void
test_challenges_any_node(void **state)
{
    fx_t         *fx = *state;
    atls_store_t *sa = atls_mirror_store(fx->a), *sb = atls_mirror_store(fx->b);
    char          err[512], *data = NULL, *pem = pem_for(7);
    size_t        len;

    assert_int_equal(atls_store_put_challenge(sa, ATLS_CHAL_HTTP01, "tok-123_A", "tok-123_A.thumb",
                                              15, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_get_challenge(sb, ATLS_CHAL_HTTP01, "tok-123_A", &data, &len,
                                              err, sizeof(err)), ATLS_STORE_OK);
    assert_string_equal(data, "tok-123_A.thumb");
    free(data);
    assert_int_equal(atls_store_put_challenge(sa, ATLS_CHAL_TLSALPN01, "example.com", pem,
                                              strlen(pem), err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_get_challenge(sb, ATLS_CHAL_TLSALPN01, "example.com", &data,
                                              &len, err, sizeof(err)), ATLS_STORE_OK);
    assert_string_equal(data, pem);
    free(data);
    free(pem);
    /* the audit trail is the cluster's, in Redis */
    assert_int_equal(atls_store_audit_append(sa, "{\"event\":\"x\"}", 13, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_audit_read(sb, 0, &data, &len, err, sizeof(err)), ATLS_STORE_OK);
    assert_string_equal(data, "{\"event\":\"x\"}\n");
    free(data);
}

static void
assert_clear_of_keys(const char *what, const char *v, size_t len)
{
    if (memmem(v, len, "PRIVATE KEY", 11) != NULL || memmem(v, len, "secret key", 10) != NULL) {
        fail_msg("a private key in clear in Redis: %s", what);
    }
}

/* Scan every value in Redis after deploys, accounts and challenges. */
static void
test_no_private_key_in_clear(void **state)
{
    fx_t         *fx = *state;
    atls_store_t *sa = atls_mirror_store(fx->a);
    char          err[512], *pem = pem_for(3);
    redisReply   *keys, *t, *v;
    size_t        i, j, scanned = 0;

    deploy(fx->a, "example.com", 1);
    deploy(fx->a, "_.example.org", 1);
    assert_int_equal(sa->ops->put(sa, "accounts/ca_one/account.key", "secret key", 10,
                                  1, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_put_challenge(sa, ATLS_CHAL_TLSALPN01, "example.com", pem,
                                              strlen(pem), err, sizeof(err)), ATLS_STORE_OK);
    sync_ok(fx->b, 2, 0);
    keys = redisfx_cmd(&fx->rfx, "KEYS", "*", NULL);
    assert_true(keys->elements > 10);
    for (i = 0; i < keys->elements; i++) {
        const char *k = keys->element[i]->str;

        t = redisfx_cmd(&fx->rfx, "TYPE", k, NULL);
        if (strcmp(t->str, "string") == 0) {
            v = redisfx_cmd(&fx->rfx, "GET", k, NULL);
            assert_clear_of_keys(k, v->str, v->len);
        } else {
            v = redisfx_cmd(&fx->rfx, strcmp(t->str, "list") == 0 ? "LRANGE" : "SMEMBERS", k,
                            strcmp(t->str, "list") == 0 ? "0" : NULL, "-1", NULL);
            for (j = 0; j < v->elements; j++) {
                assert_clear_of_keys(k, v->element[j]->str, v->element[j]->len);
            }
        }
        scanned++;
        freeReplyObject(v);
        freeReplyObject(t);
    }
    assert_int_equal(scanned, keys->elements);
    freeReplyObject(keys);
    free(pem);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_announcement_reaches_other_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_fencing_across_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_down_then_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_dies_mid_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_pull_leaves_mirror_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repopulate_after_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscriber_reconnects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_removal_reaches_other_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_typed_store_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_challenges_any_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_private_key_in_clear, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
