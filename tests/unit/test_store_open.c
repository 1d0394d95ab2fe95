/*
 * Opening a store from its spec (store_open.c): what a spec means, the
 * errors (never the password), the key-file owner rule, and the key-check
 * entry that tells a wrong key file at open (against a real redis-server).
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
#include <unistd.h>
#include <ftw.h>
#include <cmocka.h>
#include "atls_redis.h"
#include "atls_store.h"
#include "support/redisfx.h"

static void
check_kind(const char *spec, int want)
{
    char err[512] = "";

    if (atls_store_spec_check(spec, err, sizeof(err)) != want) {
        fail_msg("%s: expected %d (%s)", spec, want, err);
    }
}

/* refused, err containing `has` and not the secret */
static void
check_refused(const char *spec, const char *has, const char *secret)
{
    char err[512] = "";

    assert_int_equal(atls_store_spec_check(spec, err, sizeof(err)), -1);
    if (strstr(err, has) == NULL) {
        fail_msg("%s: error \"%s\" does not say \"%s\"", spec, err, has);
    }
    if (secret != NULL && strstr(err, secret) != NULL) {
        fail_msg("%s: error \"%s\" repeats the password", spec, err);
    }
}

static void
test_spec_kinds(void **state)
{
    (void) state;
    check_kind("/var/lib/autotls", ATLS_STORE_SPEC_FS);
    check_kind("store", ATLS_STORE_SPEC_FS);
    check_kind("/srv/odd://dir", ATLS_STORE_SPEC_FS);
    check_kind("redis://127.0.0.1:6379/0 key_file=/k", ATLS_STORE_SPEC_REDIS);
    check_kind("redis://127.0.0.1 key_file=/k prefix=a: tls ca_file=/ca", ATLS_STORE_SPEC_REDIS);
    check_kind("rediss://u:p@[::1]:7000/3 key_file=/k", ATLS_STORE_SPEC_REDIS);
    assert_true(atls_store_spec_is_redis("rediss://h"));
    assert_false(atls_store_spec_is_redis("/redis://h"));
    assert_false(atls_store_spec_is_redis(NULL));
}

static void
test_spec_errors(void **state)
{
    (void) state;
    check_refused("", "empty", NULL);
    check_refused(NULL, "empty", NULL);
    check_refused("redis://127.0.0.1:6379", "key_file: required", NULL);
    check_refused("redis://:hunter22@127.0.0.1:99999 key_file=/k", "port", "hunter22");
    check_refused("redis://u:hunter22@h key_file=/k bogus=1", "option", "hunter22");
    check_refused("redis://u:hunter22@h key_file=/k key_file=/j", "key_file", "hunter22");
    check_refused("redis://h key_file=/k prefix=a{b", "prefix", NULL);
    check_refused("http://u:hunter22@h/x", "unknown scheme \"http://\"", "hunter22");
    check_refused("s3://bucket", "unknown scheme", NULL);
    check_refused("REDIS://h key_file=/k", "unknown scheme", NULL);
}

static void
test_path_private(void **state)
{
    (void) state;
    assert_true(atls_store_path_private("certs/example.com/ec256.pem"));
    assert_true(atls_store_path_private("accounts/x/account.key"));
    assert_true(atls_store_path_private("challenges/tls-alpn-01/example.com"));
    assert_true(atls_store_path_private("fallback/example.com/ec256.key"));
    assert_true(atls_store_path_private("notify.json"));
    assert_true(atls_store_path_private("events/0000000000000001-0a0b0c0d.json"));
    assert_false(atls_store_path_private("certs/example.com/meta.json"));
    assert_false(atls_store_path_private("accounts/x/account.json"));
    assert_false(atls_store_path_private("policy.json"));
    assert_false(atls_store_path_private("generation"));
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) flag;
    (void) ftw;
    return remove(path);
}

static void
test_open_fs(void **state)
{
    char          dir[] = "/tmp/atls-open-XXXXXX", sub[64], err[512];
    atls_store_t *st;
    struct stat   sb;

    (void) state;
    assert_non_null(mkdtemp(dir));
    snprintf(sub, sizeof(sub), "%s/store", dir);
    st = atls_store_open_spec(sub, 0, err, sizeof(err));
    if (st == NULL) {
        fail_msg("%s", err);
    }
    assert_string_equal(st->ops->name, "fs");
    atls_store_close(st);
    assert_int_equal(stat(sub, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS), 0);
}

static char *
redis_spec(const redisfx_t *fx, const char *key_file)
{
    char *s = NULL;

    assert_true(asprintf(&s, "redis://127.0.0.1:%d/0 key_file=%s prefix=o:", fx->port,
                         key_file) > 0);
    return s;
}

static void
test_open_redis_key_check(void **state)
{
    redisfx_t    *fx = *state;
    char          key_a[160], key_b[160], err[512];
    char         *spec;
    atls_store_t *st;
    redisReply   *r;

    redisfx_keyfile(fx, "a.key", 0xa, key_a, sizeof(key_a));
    redisfx_keyfile(fx, "b.key", 0xb, key_b, sizeof(key_b));

    /* the first open writes the key check, sealed */
    spec = redis_spec(fx, key_a);
    st = atls_store_open_spec(spec, ATLS_STORE_SPEC_KEY_OWNER, err, sizeof(err));
    if (st == NULL) {
        fail_msg("%s", err);
    }
    atls_store_close(st);
    free(spec);
    r = redisfx_get_raw(fx, "o:{/redis-key-check}:v:redis-key-check");
    assert_non_null(r);
    assert_int_equal((unsigned char) r->str[0], ATLS_REDIS_SEAL_VERSION);
    assert_null(memmem(r->str, r->len, ATLS_STORE_KEYCHECK_TEXT,
                       strlen(ATLS_STORE_KEYCHECK_TEXT)));
    freeReplyObject(r);

    /* another key file is refused at open, named */
    spec = redis_spec(fx, key_b);
    assert_null(atls_store_open_spec(spec, 0, err, sizeof(err)));
    assert_non_null(strstr(err, key_b));
    assert_non_null(strstr(err, "not the key"));
    free(spec);

    /* the right one again */
    spec = redis_spec(fx, key_a);
    st = atls_store_open_spec(spec, 0, err, sizeof(err));
    if (st == NULL) {
        fail_msg("%s", err);
    }
    atls_store_close(st);

    /* owned by someone else (neither the caller nor root): refused */
    if (geteuid() == 0) {
        assert_int_equal(chown(key_a, 4242, (gid_t) -1), 0);
        assert_null(atls_store_open_spec(spec, ATLS_STORE_SPEC_KEY_OWNER, err, sizeof(err)));
        assert_non_null(strstr(err, key_a));
        assert_non_null(strstr(err, "owned by uid 4242"));
        assert_int_equal(atls_store_key_file_owned(key_a, err, sizeof(err)), -1);
        /* without the flag (a host's master reading a file it was given) */
        st = atls_store_open_spec(spec, 0, err, sizeof(err));
        assert_non_null(st);
        atls_store_close(st);
    }
    free(spec);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_kinds),
        cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_path_private),
        cmocka_unit_test(test_open_fs),
        cmocka_unit_test_setup_teardown(test_open_redis_key_check, redisfx_setup,
                                        redisfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
