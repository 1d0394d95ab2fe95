/*
 * The mirror's store (atls_mirror_store) on two nodes and one real
 * redis-server: removals, the typed store calls, writers without a mirror,
 * challenges and the audit trail shared, and no private key in clear in
 * Redis.
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
#include "support/mirrorfx.h"
#include "support/testpki.h"

typedef mirrorfx_t fx_t;
#define WAIT_MS MIRRORFX_WAIT_MS
#define MX_TEST(f) cmocka_unit_test_setup_teardown(f, mirrorfx_setup, mirrorfx_teardown)

/* A certificate removed on one node is removed from the others' mirrors. */
static void
test_removal_reaches_other_node(void **state)
{
    fx_t         *fx = *state;
    atls_store_t *sa = atls_mirror_store(fx->a);
    char          err[512], path[300];
    struct stat   sb;

    mirrorfx_deploy(fx->a, "gone.example", 1);
    mirrorfx_deploy(fx->a, "kept.example", 1);
    mirrorfx_sync_ok(fx->b, 2, 0);
    assert_int_equal(sa->ops->del(sa, "certs/gone.example", err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(mirrorfx_redis_gen(fx->a, "gone.example"), 2);
    mirrorfx_sync_ok(fx->b, 1, 0);
    snprintf(path, sizeof(path), "%s/certs/gone.example", fx->dir_b);
    assert_int_not_equal(stat(path, &sb), 0);
    mirrorfx_assert_same_cert(fx->dir_a, fx->dir_b, "kept.example");
    mirrorfx_sync_ok(fx->b, 0, 0);
}

/* 1 when Redis holds the raw key. */
static int
redis_has(fx_t *fx, const char *key)
{
    redisReply *r = redisfx_cmd(&fx->rfx, "EXISTS", key, NULL);
    int         has = r->integer != 0;

    freeReplyObject(r);
    return has;
}

/* A holder whose lease was taken over deletes nothing in Redis (a stale
 * deploy, or a repopulating push, must not remove the newer holder's
 * entries); the holder of the lease does, value and index. */
static void
test_delete_fenced_by_lease(void **state)
{
    fx_t              *fx = *state;
    atls_store_t      *sa = atls_mirror_store(fx->a);
    atls_store_lock_t *lk = NULL;
    const char        *vkey = "t:{fenced.example}:v:certs/fenced.example/ec256.pem";
    char               err[512], **names = NULL;
    size_t             n = 0;
    redisReply        *r;

    mirrorfx_deploy(fx->a, "fenced.example", 1);
    assert_true(redis_has(fx, vkey));
    assert_int_equal(atls_store_lock_cert(sa, "fenced.example", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    r = redisfx_cmd(&fx->rfx, "INCR", "t:{fenced.example}:fence", NULL);   /* taken over */
    freeReplyObject(r);
    assert_int_equal(sa->ops->del(sa, "certs/fenced.example/ec256.pem", err, sizeof(err)),
                     ATLS_STORE_BUSY);
    assert_non_null(strstr(err, "stale"));
    assert_true(redis_has(fx, vkey));
    atls_store_unlock(sa, lk);

    lk = NULL;
    assert_int_equal(atls_store_lock_cert(sa, "fenced.example", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(sa->ops->del(sa, "certs/fenced.example/ec256.pem", err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_false(redis_has(fx, vkey));
    assert_int_equal(sa->ops->list(sa, "certs/fenced.example", &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "meta.json");
    atls_strv_free(names, n);
    assert_int_equal(sa->ops->del(sa, "certs/fenced.example/ec256.pem", err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    atls_store_unlock(sa, lk);
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
    mirrorfx_write_meta(sa, "typed.example", 1);
    atls_store_unlock(sa, lk);
    mirrorfx_sync_ok(fx->b, 1, 0);
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

/* A writer without a mirror (the CLI on the Redis store) announces its
 * change; the nodes take it. */
static void
test_plain_store_writer_announces(void **state)
{
    fx_t         *fx = *state;
    atls_store_t *cli;
    char          err[512], *meta_a, *meta_r = NULL;
    uint64_t      gen = 0;

    mirrorfx_deploy(fx->a, "example.com", 1);
    mirrorfx_sync_ok(fx->b, 1, 0);
    cli = atls_store_redis_open(&fx->conf, err, sizeof(err));
    assert_non_null(cli);
    mirrorfx_write_meta(cli, "example.com", 5);
    assert_int_equal(atls_store_redis_announce(cli, "example.com", &gen, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(gen, 2);
    mirrorfx_sync_ok(fx->b, 1, 0);
    mirrorfx_sync_ok(fx->a, 1, 0);
    meta_a = mirrorfx_file(fx->dir_a, "example.com", "meta.json");
    assert_int_equal(cli->ops->get(cli, "certs/example.com/meta.json", &meta_r, NULL,
                                   err, sizeof(err)), ATLS_STORE_OK);
    assert_string_equal(meta_a, meta_r);   /* the CLI's meta, on the nodes */
    free(meta_a);
    free(meta_r);
    mirrorfx_assert_same_cert(fx->dir_a, fx->dir_b, "example.com");
    assert_int_equal(atls_store_redis_announce(atls_mirror_fs(fx->b),
                                               "example.com", NULL, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    atls_store_close(cli);
}

/* http-01 and tls-alpn-01 answers put by one node are read by the other. */
static void
test_challenges_any_node(void **state)
{
    fx_t         *fx = *state;
    atls_store_t *sa = atls_mirror_store(fx->a), *sb = atls_mirror_store(fx->b);
    char          err[512], *data = NULL, *pem = mirrorfx_pem(7);
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
    char          err[512], *pem = mirrorfx_pem(3);
    redisReply   *keys, *t, *v;
    size_t        i, j, scanned = 0;

    mirrorfx_deploy(fx->a, "example.com", 1);
    mirrorfx_deploy(fx->a, "_.example.org", 1);
    assert_int_equal(sa->ops->put(sa, "accounts/ca_one/account.key", "secret key", 10,
                                  1, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_put_challenge(sa, ATLS_CHAL_TLSALPN01, "example.com", pem,
                                              strlen(pem), err, sizeof(err)), ATLS_STORE_OK);
    mirrorfx_sync_ok(fx->b, 2, 0);
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
        MX_TEST(test_removal_reaches_other_node),
        MX_TEST(test_delete_fenced_by_lease),
        MX_TEST(test_typed_store_calls),
        MX_TEST(test_plain_store_writer_announces),
        MX_TEST(test_challenges_any_node),
        MX_TEST(test_no_private_key_in_clear),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
