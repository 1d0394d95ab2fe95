/*
 * The Redis store backend's ops (store_redis.c, store_redis_lock.c)
 * against a real redis-server: the same contract the fs backend's tests
 * check (test_store.c) where it applies, plus what is Redis's own: the
 * directory index, leases as locks, the fenced put, the capped log.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_redis.h"
#include "store_int.h"
#include "support/redisfx.h"

typedef redisfx_store_t fx_t;
#define RS_TEST(f) cmocka_unit_test_setup_teardown(f, redisfx_store_setup, redisfx_store_teardown)

static void
put_ok(atls_store_t *st, const char *path, const char *data, size_t len, int priv)
{
    char err[512];

    if (st->ops->put(st, path, data, len, priv, err, sizeof(err)) != ATLS_STORE_OK) {
        fail_msg("put %s: %s", path, err);
    }
}

static char *
get_ok(atls_store_t *st, const char *path, size_t *len)
{
    char *data = NULL, err[512];

    if (st->ops->get(st, path, &data, len, err, sizeof(err)) != ATLS_STORE_OK) {
        fail_msg("get %s: %s", path, err);
    }
    return data;
}

static void
test_put_get_round_trip(void **state)
{
    fx_t  *fx = *state;
    char   bin[300], *data, err[256];
    size_t len, i;

    assert_string_equal(fx->st->ops->name, "redis");
    for (i = 0; i < sizeof(bin); i++) {
        bin[i] = (char) (i * 7);   /* includes NUL bytes */
    }
    put_ok(fx->st, "a/b/c.bin", bin, sizeof(bin), 0);
    data = get_ok(fx->st, "a/b/c.bin", &len);
    assert_int_equal(len, sizeof(bin));
    assert_memory_equal(data, bin, sizeof(bin));
    assert_int_equal(data[len], '\0');   /* NUL-terminated for text users */
    free(data);

    put_ok(fx->st, "a/b/c.bin", "new", 3, 0);
    data = get_ok(fx->st, "a/b/c.bin", &len);
    assert_int_equal(len, 3);
    assert_string_equal(data, "new");
    free(data);
    /* private too: sealed in Redis, the same bytes back */
    put_ok(fx->st, "a/b/secret", bin, sizeof(bin), 1);
    data = get_ok(fx->st, "a/b/secret", &len);
    assert_int_equal(len, sizeof(bin));
    assert_memory_equal(data, bin, sizeof(bin));
    free(data);

    put_ok(fx->st, "empty", "", 0, 0);
    data = get_ok(fx->st, "empty", &len);
    assert_int_equal(len, 0);
    free(data);

    data = (char *) 1;
    assert_int_equal(fx->st->ops->get(fx->st, "a/nothing", &data, &len, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_null(data);
    assert_int_equal(fx->st->ops->del(fx->st, "a/b/c.bin", err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(fx->st->ops->get(fx->st, "a/b/c.bin", &data, &len, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_int_equal(fx->st->ops->del(fx->st, "a/b/c.bin", err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
}

static void
test_bad_paths(void **state)
{
    static const char *const bad[] = {
        "../escape", "a/../../escape", "/etc/passwd", "a//b", "a/", "", ".hidden",
        "a/./b", "certs/..", NULL
    };
    fx_t              *fx = *state;
    char               err[256], *data, **names;
    size_t             len, i, n;
    atls_store_lock_t *lk;
    char               longp[ATLS_STORE_PATH_MAX + 2];

    for (i = 0; bad[i] != NULL; i++) {
        assert_int_equal(fx->st->ops->put(fx->st, bad[i], "x", 1, 0, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_int_equal(fx->st->ops->get(fx->st, bad[i], &data, &len, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_int_equal(fx->st->ops->del(fx->st, bad[i], err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_int_equal(fx->st->ops->append(fx->st, bad[i], "x", 1, 0, 0, err, sizeof(err)),
                         ATLS_STORE_ERROR);
    }
    assert_int_equal(fx->st->ops->put(fx->st, NULL, "x", 1, 0, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(fx->st->ops->list(fx->st, "../", &names, &n, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(fx->st->ops->lock(fx->st, "../x", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(fx->st->ops->lock(fx->st, "a/b", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    /* the bound of the shared rule (atls_store_path_ok) */
    memset(longp, 'a', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    longp[100] = '/';
    assert_int_equal(fx->st->ops->put(fx->st, longp, "x", 1, 0, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    /* nothing was written at all */
    assert_int_equal(fx->st->ops->list(fx->st, "", &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 0);
}

static void
test_list(void **state)
{
    fx_t       *fx = *state;
    char      **names, err[256];
    size_t      n;
    redisReply *r;

    put_ok(fx->st, "certs/c.example/meta.json", "{}", 2, 0);
    put_ok(fx->st, "certs/a.example/meta.json", "{}", 2, 0);
    put_ok(fx->st, "certs/b.example/meta.json", "{}", 2, 0);
    put_ok(fx->st, "certs/b.example/ec256.pem", "k", 1, 1);
    put_ok(fx->st, "certs/_.wild.example/meta.json", "{}", 2, 0);
    put_ok(fx->st, "generation", "1", 1, 0);

    assert_int_equal(fx->st->ops->list(fx->st, "certs", &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 4);
    assert_string_equal(names[0], "_.wild.example");
    assert_string_equal(names[1], "a.example");
    assert_string_equal(names[2], "b.example");
    assert_string_equal(names[3], "c.example");
    atls_strv_free(names, n);
    assert_int_equal(fx->st->ops->list(fx->st, "certs/b.example", &names, &n, err,
                                       sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "ec256.pem");
    assert_string_equal(names[1], "meta.json");
    atls_strv_free(names, n);
    assert_int_equal(fx->st->ops->list(fx->st, "", &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "certs");
    assert_string_equal(names[1], "generation");
    atls_strv_free(names, n);
    assert_int_equal(atls_store_list_certs(fx->st, &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 4);
    atls_strv_free(names, n);

    /* the index is a SET per directory: no keyspace scan */
    r = redisfx_cmd(&fx->rfx, "SMEMBERS", "t:{/certs}:d:certs", NULL);
    assert_int_equal(r->elements, 4);
    freeReplyObject(r);

    /* missing directory: empty */
    assert_int_equal(fx->st->ops->list(fx->st, "nothing/here", &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 0);
    assert_null(names);

    /* deleting a directory removes the whole certificate */
    assert_int_equal(fx->st->ops->del(fx->st, "certs/b.example", err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_list_certs(fx->st, &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 3);
    assert_string_equal(names[2], "c.example");
    atls_strv_free(names, n);
    r = redisfx_cmd(&fx->rfx, "EXISTS", "t:{b.example}:v:certs/b.example/ec256.pem",
                    "t:{b.example}:v:certs/b.example/meta.json",
                    "t:{b.example}:d:certs/b.example", NULL);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    assert_int_equal(fx->st->ops->del(fx->st, "certs/b.example", err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);

    /* the last entry gone: the directory stays, empty, like the fs backend's */
    assert_int_equal(fx->st->ops->del(fx->st, "certs/a.example/meta.json", err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(fx->st->ops->list(fx->st, "certs/a.example", &names, &n, err,
                                       sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(atls_store_list_certs(fx->st, &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 3);
    atls_strv_free(names, n);
    /* until it is deleted itself (once) */
    assert_int_equal(fx->st->ops->del(fx->st, "certs/a.example", err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(fx->st->ops->del(fx->st, "certs/a.example", err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_int_equal(fx->st->ops->del(fx->st, "certs", err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(fx->st->ops->list(fx->st, "", &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "generation");
    atls_strv_free(names, n);
    r = redisfx_cmd(&fx->rfx, "EXISTS", "t:{c.example}:v:certs/c.example/meta.json",
                    "t:{_.wild.example}:d:certs/_.wild.example", "t:{/certs}:d:certs", NULL);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
}

/* ---- locks --------------------------------------------------------------- */

/* Child with its own connection: try the lock without waiting (let go at
 * once when taken); exit 0 on OK, 2 on BUSY, 1 otherwise. */
static int
child_try_lock(fx_t *fx, const char *name)
{
    pid_t pid = fork();
    int   status;

    assert_true(pid >= 0);
    if (pid == 0) {
        atls_store_lock_t *lk;
        char               err[256];
        atls_store_t      *st = atls_store_redis_open(&fx->conf, err, sizeof(err));
        int                rc;

        if (st == NULL) {
            _exit(1);
        }
        rc = st->ops->lock(st, name, 0, &lk, err, sizeof(err));
        if (rc == ATLS_STORE_OK) {
            st->ops->unlock(st, lk);
        }
        _exit(rc == ATLS_STORE_OK ? 0 : rc == ATLS_STORE_BUSY ? 2 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void
test_lock(void **state)
{
    fx_t                     *fx = *state;
    atls_store_lock_t        *lk = NULL, *lk2 = NULL;
    const atls_redis_lease_t *l;
    char                      err[256], c;
    int                       to_child[2], to_parent[2], status;
    pid_t                     pid;
    redisReply               *r;

    assert_int_equal(fx->st->ops->lock(fx->st, "job-a", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_non_null(lk);
    l = atls_store_redis_lease(fx->st, lk);
    assert_non_null(l);
    r = redisfx_cmd(&fx->rfx, "PTTL", l->lease_key, NULL);
    assert_true(r->integer > 0 && r->integer <= ATLS_REDIS_LEASE_MS);
    freeReplyObject(r);
    /* another process: busy; another name: free */
    assert_int_equal(child_try_lock(fx, "job-a"), 2);
    assert_int_equal(child_try_lock(fx, "job-b"), 0);
    /* a second lock in the same process is excluded as well */
    assert_int_equal(fx->st->ops->lock(fx->st, "job-a", 0, &lk2, err, sizeof(err)),
                     ATLS_STORE_BUSY);
    assert_null(lk2);
    assert_non_null(strstr(err, "job-a"));
    fx->st->ops->unlock(fx->st, lk);
    assert_int_equal(child_try_lock(fx, "job-a"), 0);

    /* the other way round: a child holds it, we are refused, then wait */
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(to_parent), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        atls_store_lock_t *held;
        atls_store_t      *st = atls_store_redis_open(&fx->conf, err, sizeof(err));

        if (st == NULL || st->ops->lock(st, "job-a", 1, &held, err, sizeof(err)) != ATLS_STORE_OK) {
            _exit(1);
        }
        if (write(to_parent[1], "L", 1) != 1 || read(to_child[0], &c, 1) != 1) {
            _exit(1);
        }
        st->ops->unlock(st, held);
        _exit(0);
    }
    assert_int_equal(read(to_parent[0], &c, 1), 1);
    assert_int_equal(fx->st->ops->lock(fx->st, "job-a", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_BUSY);
    assert_int_equal(write(to_child[1], "U", 1), 1);
    /* waiting lock: returns once the child has let go */
    assert_int_equal(fx->st->ops->lock(fx->st, "job-a", 1, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fx->st->ops->unlock(fx->st, lk);
    close(to_child[0]);
    close(to_child[1]);
    close(to_parent[0]);
    close(to_parent[1]);
}

/* The typed certificate lock and the fenced put a deploy uses. */
static void
test_cert_lock_fenced_put(void **state)
{
    fx_t                     *fx = *state;
    atls_store_lock_t        *lk = NULL;
    const atls_redis_lease_t *l;
    char                      err[512], *data;
    size_t                    len;
    redisReply               *r;

    assert_int_equal(atls_store_lock_cert(fx->st, "example.org", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    l = atls_store_redis_lease(fx->st, lk);
    assert_string_equal(l->lease_key, "t:{example.org}:lease");
    assert_int_equal(l->fence, 1);
    assert_int_equal(atls_store_redis_put_fenced(fx->st, lk, "certs/example.org/ec256.pem",
                                                 "KEY+CHAIN", 9, 1, err, sizeof(err)),
                     ATLS_STORE_OK);
    data = get_ok(fx->st, "certs/example.org/ec256.pem", &len);
    assert_string_equal(data, "KEY+CHAIN");
    free(data);
    /* written as a put would: indexed */
    assert_int_equal(atls_store_list_certs(fx->st, (char ***) &data, &len, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(len, 1);
    atls_strv_free((char **) data, len);
    /* another certificate's entry is not in this lease's slot */
    assert_int_equal(atls_store_redis_put_fenced(fx->st, lk, "certs/other.org/ec256.pem",
                                                 "X", 1, 1, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "slot"));
    /* someone took the lease since (our fence is behind): nothing lands */
    r = redisfx_cmd(&fx->rfx, "INCR", "t:{example.org}:fence", NULL);
    freeReplyObject(r);
    assert_int_equal(atls_store_redis_put_fenced(fx->st, lk, "certs/example.org/ec256.pem",
                                                 "STALE", 5, 1, err, sizeof(err)),
                     ATLS_STORE_BUSY);
    assert_non_null(strstr(err, "stale"));
    data = get_ok(fx->st, "certs/example.org/ec256.pem", &len);
    assert_string_equal(data, "KEY+CHAIN");
    free(data);
    /* renewal finds the lease still ours (only the fence moved) */
    assert_int_equal(atls_store_redis_renew(fx->st), 0);
    atls_store_unlock(fx->st, lk);
    r = redisfx_cmd(&fx->rfx, "EXISTS", "t:{example.org}:lease", NULL);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
}

/* A held lease that expired and was taken: renew reports it lost, and
 * unlock leaves the new holder's lease alone. */
static void
test_lock_lost(void **state)
{
    fx_t                     *fx = *state;
    atls_store_lock_t        *lk = NULL;
    const atls_redis_lease_t *l;
    char                      err[256];
    redisReply               *r;

    assert_int_equal(fx->st->ops->lock(fx->st, "cert-lost.example", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    l = atls_store_redis_lease(fx->st, lk);
    /* as if it had expired and another node had taken it */
    r = redisfx_cmd(&fx->rfx, "SET", l->lease_key, "someone-else", NULL);
    freeReplyObject(r);
    assert_int_equal(atls_store_redis_renew(fx->st), 1);
    fx->st->ops->unlock(fx->st, lk);
    r = redisfx_cmd(&fx->rfx, "GET", "t:{lost.example}:lease", NULL);
    assert_string_equal(r->str, "someone-else");
    freeReplyObject(r);
}

/* ---- append: the capped log ---------------------------------------------- */

static void
test_append(void **state)
{
    fx_t       *fx = *state;
    char        err[256], *data, rec[32];
    size_t      len;
    int         i;
    redisReply *r;

    assert_int_equal(atls_store_audit_append(fx->st, "{\"a\":1}", 7, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_audit_append(fx->st, "{\"a\":2}", 7, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_audit_read(fx->st, 0, &data, &len, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_string_equal(data, "{\"a\":1}\n{\"a\":2}\n");
    assert_int_equal(len, 16);
    free(data);
    /* one key, no rotated files */
    assert_int_equal(atls_store_audit_read(fx->st, 1, &data, &len, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_int_equal(fx->st->ops->append(fx->st, "audit.log", "a\nb", 3, 0, 0, err,
                                         sizeof(err)), ATLS_STORE_ERROR);

    /* capped at rotate_bytes * (keep + 1): the oldest go, the newest stay */
    for (i = 0; i < 50; i++) {
        snprintf(rec, sizeof(rec), "record-%02d", i);   /* 9 bytes + newline */
        assert_int_equal(fx->st->ops->append(fx->st, "logs/small", rec, strlen(rec), 50, 1,
                                             err, sizeof(err)), ATLS_STORE_OK);
    }
    data = get_ok(fx->st, "logs/small", &len);
    assert_int_equal(len, 100);
    assert_non_null(strstr(data, "record-49\n"));
    assert_null(strstr(data, "record-39"));
    assert_true(strncmp(data, "record-40\n", 10) == 0);
    free(data);
    r = redisfx_cmd(&fx->rfx, "LLEN", "t:{/logs}:v:logs/small", NULL);
    assert_int_equal(r->integer, 10);
    freeReplyObject(r);

    /* appending where a plain entry is: refused, naming the key */
    put_ok(fx->st, "plain", "x", 1, 0);
    assert_int_equal(fx->st->ops->append(fx->st, "plain", "r", 1, 0, 0, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "t:{/plain}:v:plain"));
    assert_non_null(strstr(err, "wrong type"));
    /* del removes the log and its size */
    assert_int_equal(fx->st->ops->del(fx->st, "logs/small", err, sizeof(err)), ATLS_STORE_OK);
    r = redisfx_cmd(&fx->rfx, "EXISTS", "t:{/logs}:v:logs/small", "t:{/logs}:n:logs/small",
                    NULL);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
}

/* ---- open ---------------------------------------------------------------- */

static void
test_open_errors(void **state)
{
    fx_t             *fx = *state;
    atls_redis_conf_t conf;
    atls_store_t     *st;
    char              err[512];

    atls_redis_conf_copy(&conf, &fx->conf);
    free(conf.key_file);
    conf.key_file = NULL;
    assert_null(atls_store_redis_open(&conf, err, sizeof(err)));
    assert_non_null(strstr(err, "key_file"));
    conf.key_file = strdup("/nonexistent/redis.key");
    assert_null(atls_store_redis_open(&conf, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/redis.key"));
    free(conf.key_file);
    conf.key_file = strdup(fx->key_file);
    conf.password = strdup("Not-The-Password");
    assert_null(atls_store_redis_open(&conf, err, sizeof(err)));
    assert_non_null(strstr(err, "AUTH"));
    assert_null(strstr(err, "Not-The-Password"));
    free(conf.password);
    conf.password = NULL;
    st = atls_store_redis_open(&conf, err, sizeof(err));
    assert_non_null(st);
    /* the location, for messages: the server, never a secret */
    assert_true(strncmp(st->location, "redis://127.0.0.1:", 18) == 0);
    atls_store_close(st);
    atls_redis_conf_free(&conf);
}

/* The server closed the store's connection (a restart, a client timeout):
 * the next call opens a new one and goes through. */
static void
test_reconnect(void **state)
{
    fx_t       *fx = *state;
    char       *data;
    size_t      len;
    redisReply *r;

    put_ok(fx->st, "generation", "5", 1, 0);
    r = redisfx_cmd(&fx->rfx, "CLIENT", "KILL", "TYPE", "normal", NULL);
    assert_true(r->integer >= 1);
    freeReplyObject(r);
    data = get_ok(fx->st, "generation", &len);
    assert_string_equal(data, "5");
    free(data);
    r = redisfx_cmd(&fx->rfx, "CLIENT", "KILL", "TYPE", "normal", NULL);
    freeReplyObject(r);
    put_ok(fx->st, "generation", "6", 1, 0);
    data = get_ok(fx->st, "generation", &len);
    assert_string_equal(data, "6");
    free(data);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        RS_TEST(test_put_get_round_trip),
        RS_TEST(test_bad_paths),
        RS_TEST(test_list),
        RS_TEST(test_lock),
        RS_TEST(test_cert_lock_fenced_put),
        RS_TEST(test_lock_lost),
        RS_TEST(test_append),
        RS_TEST(test_open_errors),
        RS_TEST(test_reconnect),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
