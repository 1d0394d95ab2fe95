/*
 * The Redis store and what it keeps (store_redis.c over redis_seal.c):
 * private entries are sealed so that Redis holds no private key in clear,
 * corrupt or planted values are refused with the key's name, and the
 * typed store calls work over Redis as over the filesystem.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_redis.h"
#include "support/redisfx.h"
#include "support/testpki.h"

typedef redisfx_store_t fx_t;
#define RS_TEST(f) cmocka_unit_test_setup_teardown(f, redisfx_store_setup, redisfx_store_teardown)

static const char *const NAMES[] = { "www.example.net", "example.net" };

/* Saves a certificate (key + chain) for www.example.net; its key PEM. */
static char *
save_cert(fx_t *fx, testpki_chain_t *pki)
{
    X509 *certs[2];
    char *pem, err[512];

    assert_int_equal(testpki_chain_make(pki, NAMES, 2, ATLS_KEY_EC256), 0);
    certs[0] = pki->leaf;
    certs[1] = pki->inter;
    pem = testpki_pem(certs, 2);
    if (atls_store_save_cert(fx->st, "www.example.net", ATLS_KEY_EC256, pki->leaf_key, pem,
                             err, sizeof(err)) != ATLS_STORE_OK)
    {
        fail_msg("save_cert: %s", err);
    }
    free(pem);
    return testpki_key_pem(pki->leaf_key);
}

/* Fails when any value in Redis (strings and list items) holds needle. */
static void
scan_all_values(fx_t *fx, const char *needle)
{
    char        cursor[32] = "0";
    size_t      i, seen = 0;
    redisReply *r, *v;

    do {
        r = redisfx_cmd(&fx->rfx, "SCAN", cursor, "COUNT", "1000", NULL);   /* test only */
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (i = 0; i < r->element[1]->elements; i++) {
            const char *key = r->element[1]->element[i]->str;
            redisReply *t = redisfx_cmd(&fx->rfx, "TYPE", key, NULL);
            size_t      j;

            if (strcmp(t->str, "string") == 0) {
                v = redisfx_cmd(&fx->rfx, "GET", key, NULL);
                if (memmem(v->str, v->len, needle, strlen(needle)) != NULL) {
                    fail_msg("%s holds \"%s\" in clear", key, needle);
                }
                freeReplyObject(v);
            } else if (strcmp(t->str, "list") == 0) {
                v = redisfx_cmd(&fx->rfx, "LRANGE", key, "0", "-1", NULL);
                for (j = 0; j < v->elements; j++) {
                    assert_null(memmem(v->element[j]->str, v->element[j]->len, needle,
                                       strlen(needle)));
                }
                freeReplyObject(v);
            }
            freeReplyObject(t);
            seen++;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    assert_true(seen > 0);
}

static void
test_no_private_key_in_clear(void **state)
{
    fx_t           *fx = *state;
    testpki_chain_t pki;
    char           *kpem, *line, err[512], *data;
    EVP_PKEY       *key = NULL, *acct = NULL;
    STACK_OF(X509) *chain = NULL;
    int             created = 0;
    size_t          len;

    kpem = save_cert(fx, &pki);
    assert_int_equal(atls_store_load_cert(fx->st, "www.example.net", ATLS_KEY_EC256, &key,
                                          &chain, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(EVP_PKEY_eq(key, pki.leaf_key), 1);
    assert_int_equal(sk_X509_num(chain), 2);
    EVP_PKEY_free(key);
    atls_chain_free(chain);
    /* an account key made by the store, and a tls-alpn-01 challenge */
    assert_int_equal(atls_store_load_account(fx->st, "https://ca.test/dir", &acct, NULL,
                                             &created, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(created, 1);
    assert_int_equal(atls_store_put_challenge(fx->st, ATLS_CHAL_TLSALPN01, "www.example.net",
                                              kpem, strlen(kpem), err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_get_challenge(fx->st, ATLS_CHAL_TLSALPN01, "www.example.net",
                                              &data, &len, err, sizeof(err)), ATLS_STORE_OK);
    assert_string_equal(data, kpem);
    free(data);

    /* every value in Redis: no PEM private key, no line of this key's
     * base64, while the certificates (public) are there in clear */
    scan_all_values(fx, "PRIVATE KEY");
    line = strchr(kpem, '\n') + 1;
    line[40] = '\0';
    scan_all_values(fx, line);
    {
        redisReply *r = redisfx_get_raw(&fx->rfx, "t:{www.example.net}:v:certs/www.example.net/ec256.pem");

        assert_non_null(r);
        assert_int_equal((unsigned char) r->str[0], ATLS_REDIS_SEAL_VERSION);
        assert_null(memmem(r->str, r->len, "CERTIFICATE", 11));   /* sealed as a whole */
        freeReplyObject(r);
        r = redisfx_get_raw(&fx->rfx, "t:{www.example.net}:v:certs/www.example.net/meta.json");
        assert_null(r);   /* save_cert writes no meta; nothing else appeared */
    }
    EVP_PKEY_free(acct);
    free(kpem);
    testpki_chain_free(&pki);
}

/* The Redis key of path (the test's store) with the check that it exists. */
static char *
key_of(fx_t *fx, const char *path)
{
    char *k = atls_store_redis_key(fx->st, path);

    assert_non_null(k);
    return k;
}

static void
expect_get_error(fx_t *fx, const char *path, const char *key, const char *why)
{
    char  *data = NULL, err[512];
    size_t len;

    assert_int_equal(fx->st->ops->get(fx->st, path, &data, &len, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_null(data);
    if (strstr(err, key) == NULL || strstr(err, why) == NULL) {
        fail_msg("get %s: \"%s\" should name %s and say %s", path, err, key, why);
    }
}

static void
test_corrupt_values_named(void **state)
{
    fx_t           *fx = *state;
    testpki_chain_t pki;
    char           *kpem, *pem_key, *meta_key, *other_key, err[512];
    redisReply     *r;
    unsigned char  *v;

    kpem = save_cert(fx, &pki);
    pem_key = key_of(fx, "certs/www.example.net/ec256.pem");

    /* a flipped byte in a sealed value */
    r = redisfx_get_raw(&fx->rfx, pem_key);
    v = malloc(r->len);
    memcpy(v, r->str, r->len);
    v[r->len - 1] ^= 0x80;
    redisfx_set_raw(&fx->rfx, pem_key, v, r->len);
    expect_get_error(fx, "certs/www.example.net/ec256.pem", pem_key, "authentication");
    /* the typed call says it too, with the key */
    assert_int_equal(atls_store_load_cert(fx->st, "www.example.net", ATLS_KEY_EC256, NULL,
                                          NULL, err, sizeof(err)), ATLS_STORE_ERROR);
    assert_non_null(strstr(err, pem_key));

    /* a sealed value moved under another certificate's name */
    v[r->len - 1] ^= 0x80;
    other_key = key_of(fx, "certs/evil.example/ec256.pem");
    redisfx_set_raw(&fx->rfx, other_key, v, r->len);
    expect_get_error(fx, "certs/evil.example/ec256.pem", other_key, "authentication");
    freeReplyObject(r);
    free(v);

    /* a private key's path is sealed even when put as public */
    assert_int_equal(fx->st->ops->put(fx->st, "certs/evil.example/rsa2048.pem", "KEY", 3, 0,
                                      err, sizeof(err)), ATLS_STORE_OK);
    r = redisfx_get_raw(&fx->rfx, "t:{evil.example}:v:certs/evil.example/rsa2048.pem");
    assert_int_equal((unsigned char) r->str[0], ATLS_REDIS_SEAL_VERSION);
    freeReplyObject(r);
    /* planted in clear where a sealed value belongs */
    redisfx_set_raw(&fx->rfx, other_key, "p-----BEGIN PRIVATE KEY-----", 28);
    expect_get_error(fx, "certs/evil.example/ec256.pem", other_key, "in clear");
    free(other_key);

    /* not a value we write: no known first byte, empty, the wrong type */
    meta_key = key_of(fx, "certs/www.example.net/meta.json");
    redisfx_set_raw(&fx->rfx, meta_key, "{\"id\":1}", 8);
    expect_get_error(fx, "certs/www.example.net/meta.json", meta_key, "unknown format");
    redisfx_set_raw(&fx->rfx, meta_key, "", 0);
    expect_get_error(fx, "certs/www.example.net/meta.json", meta_key, "empty");
    r = redisfx_cmd(&fx->rfx, "DEL", meta_key, NULL);
    freeReplyObject(r);
    r = redisfx_cmd(&fx->rfx, "HSET", meta_key, "f", "v", NULL);
    freeReplyObject(r);
    expect_get_error(fx, "certs/www.example.net/meta.json", meta_key, "WRONGTYPE");
    free(meta_key);
    free(pem_key);
    free(kpem);
    testpki_chain_free(&pki);
}

/* A node with another key file (not yet rekeyed) is told so, by key name. */
static void
test_other_key_file(void **state)
{
    fx_t             *fx = *state;
    atls_redis_conf_t conf;
    atls_store_t     *st;
    char              path[160], err[512], *data, *key;
    size_t            len;

    assert_int_equal(fx->st->ops->put(fx->st, "notify.json", "{}", 2, 1, err, sizeof(err)),
                     ATLS_STORE_OK);
    redisfx_keyfile(&fx->rfx, "other.key", 0x42, path, sizeof(path));
    atls_redis_conf_copy(&conf, &fx->conf);
    free(conf.key_file);
    conf.key_file = strdup(path);
    st = atls_store_redis_open(&conf, err, sizeof(err));
    assert_non_null(st);
    key = atls_store_redis_key(st, "notify.json");
    assert_int_equal(st->ops->get(st, "notify.json", &data, &len, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, key));
    assert_non_null(strstr(err, "another key file"));
    free(key);
    atls_store_close(st);
    atls_redis_conf_free(&conf);
}

/* The typed calls over Redis: metadata, requests, generation, queue. */
static void
test_typed_calls(void **state)
{
    fx_t            *fx = *state;
    atls_cert_meta_t m, back;
    char             err[512], **ids, *qkey = NULL, *json;
    size_t           n, len;
    time_t           when;

    memset(&m, 0, sizeof(m));
    m.id = strdup("www.example.net");
    m.names = calloc(1, sizeof(char *));
    m.names[0] = strdup("www.example.net");
    m.n_names = 1;
    m.issuer.directory = strdup("https://ca.test/dir");
    m.state = ATLS_STATE_VALID;
    m.generation = 7;
    assert_int_equal(atls_store_save_meta(fx->st, &m, err, sizeof(err)), ATLS_STORE_OK);
    memset(&back, 0, sizeof(back));
    assert_int_equal(atls_store_load_meta(fx->st, "www.example.net", &back, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_string_equal(back.names[0], "www.example.net");
    assert_int_equal(back.generation, 7);
    assert_int_equal(back.state, ATLS_STATE_VALID);
    atls_cert_meta_free(&back);
    atls_cert_meta_free(&m);
    assert_int_equal(atls_store_list_certs(fx->st, &ids, &n, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], "www.example.net");
    atls_strv_free(ids, n);

    assert_int_equal(atls_store_request_renew(fx->st, "www.example.net", err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_peek_request(fx->st, "www.example.net", &when), 1);
    assert_true(when > 0);
    assert_int_equal(atls_store_take_request(fx->st, "www.example.net"), 1);
    assert_int_equal(atls_store_take_request(fx->st, "www.example.net"), 0);

    assert_int_equal(atls_store_generation(fx->st), 0);
    assert_int_equal(atls_store_bump_generation(fx->st), 0);
    assert_int_equal(atls_store_bump_generation(fx->st), 0);
    assert_int_equal(atls_store_generation(fx->st), 2);

    assert_int_equal(atls_store_queue_put(fx->st, "{\"e\":1}", 7, 0, &qkey, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_queue_list(fx->st, &ids, &n, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], qkey);
    atls_strv_free(ids, n);
    assert_int_equal(atls_store_queue_get(fx->st, qkey, &json, &len, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_string_equal(json, "{\"e\":1}");
    free(json);
    assert_int_equal(atls_store_queue_del(fx->st, qkey, err, sizeof(err)), ATLS_STORE_OK);
    free(qkey);
    assert_int_equal(atls_store_counter_add(fx->st, "orders.ok", 2, err, sizeof(err)),
                     ATLS_STORE_OK);
}

/* Fallbacks (key sealed, certificate public) and OCSP responses (binary). */
static void
test_typed_fallback_and_ocsp(void **state)
{
    static const char *const name[] = { "f.example" };
    fx_t           *fx = *state;
    EVP_PKEY       *k = testpki_key(0), *got = NULL;
    X509           *x = testpki_cert(k, "f.example", name, 1, NULL, NULL, 0, -60, 86400);
    STACK_OF(X509) *chain = NULL;
    unsigned char   der[200], *back = NULL;
    char            err[512];
    size_t          len, i;
    redisReply     *r;

    assert_non_null(x);
    assert_int_equal(atls_store_save_fallback(fx->st, "f.example", ATLS_KEY_EC256, k, x,
                                              err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_load_fallback(fx->st, "f.example", ATLS_KEY_EC256, &got,
                                              &chain, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(EVP_PKEY_eq(got, k), 1);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 0), x), 0);
    r = redisfx_get_raw(&fx->rfx, "t:{/fallback}:v:fallback/f.example/ec256.key");
    assert_int_equal((unsigned char) r->str[0], ATLS_REDIS_SEAL_VERSION);
    freeReplyObject(r);
    r = redisfx_get_raw(&fx->rfx, "t:{/fallback}:v:fallback/f.example/ec256.crt");
    assert_int_equal(r->str[0], 'p');
    assert_non_null(strstr(r->str, "BEGIN CERTIFICATE"));
    freeReplyObject(r);

    for (i = 0; i < sizeof(der); i++) {
        der[i] = (unsigned char) (i * 31);   /* NUL bytes included */
    }
    assert_int_equal(atls_store_save_ocsp(fx->st, "f.example", ATLS_KEY_EC256, der,
                                          sizeof(der), err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_load_ocsp(fx->st, "f.example", ATLS_KEY_EC256, &back, &len,
                                          err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(len, sizeof(der));
    assert_memory_equal(back, der, sizeof(der));
    free(back);
    EVP_PKEY_free(got);
    atls_chain_free(chain);
    X509_free(x);
    EVP_PKEY_free(k);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        RS_TEST(test_no_private_key_in_clear),
        RS_TEST(test_corrupt_values_named),
        RS_TEST(test_other_key_file),
        RS_TEST(test_typed_calls),
        RS_TEST(test_typed_fallback_and_ocsp),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
