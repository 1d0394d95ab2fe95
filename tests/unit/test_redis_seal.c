/* Encryption at rest (redis_seal.c): the key file's rules, and sealed
 * values that open only with the same key under the same Redis key name. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_redis.h"
#include "support/tmptree.h"

typedef struct {
    char dir[64];
    char path[128];
} keyfx_t;

static int
keyfx_setup(void **state)
{
    keyfx_t *fx = calloc(1, sizeof(*fx));

    snprintf(fx->dir, sizeof(fx->dir), "/tmp/atls-seal-XXXXXX");
    if (mkdtemp(fx->dir) == NULL) {
        free(fx);
        return -1;
    }
    snprintf(fx->path, sizeof(fx->path), "%s/key", fx->dir);
    *state = fx;
    return 0;
}

static int
keyfx_teardown(void **state)
{
    keyfx_t *fx = *state;

    tmptree_rm(fx->dir);
    free(fx);
    return 0;
}

static void
write_key(keyfx_t *fx, const void *data, size_t len, mode_t mode)
{
    int fd;

    unlink(fx->path);
    fd = open(fx->path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t) len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

#define HEX64 "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"

static void
test_key_file_rules(void **state)
{
    keyfx_t         *fx = *state;
    atls_redis_key_t k, k2;
    unsigned char    raw[32];
    char             err[512], link[160];

    /* hex, with or without one newline; raw 32 bytes */
    write_key(fx, HEX64, 64, 0600);
    assert_int_equal(atls_redis_key_load(fx->path, &k, err, sizeof(err)), 0);
    assert_int_equal(k.key[0], 0x00);
    assert_int_equal(k.key[31], 0xff);
    write_key(fx, HEX64 "\n", 65, 0400);
    assert_int_equal(atls_redis_key_load(fx->path, &k2, err, sizeof(err)), 0);
    assert_memory_equal(k.key, k2.key, 32);
    assert_memory_equal(k.id, k2.id, sizeof(k.id));
    memcpy(raw, k.key, 32);
    write_key(fx, raw, 32, 0600);
    assert_int_equal(atls_redis_key_load(fx->path, &k2, err, sizeof(err)), 0);
    assert_memory_equal(k.key, k2.key, 32);

    /* refused, each naming the file */
    write_key(fx, HEX64, 64, 0640);
    assert_int_equal(atls_redis_key_load(fx->path, &k2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, fx->path));
    assert_non_null(strstr(err, "0600"));
    write_key(fx, HEX64, 63, 0600);
    assert_int_equal(atls_redis_key_load(fx->path, &k2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, fx->path));
    write_key(fx, HEX64 "\n\n", 66, 0600);
    assert_int_equal(atls_redis_key_load(fx->path, &k2, err, sizeof(err)), -1);
    write_key(fx, "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 64, 0600);
    assert_int_equal(atls_redis_key_load(fx->path, &k2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "64 hex digits"));
    write_key(fx, raw, 31, 0600);
    assert_int_equal(atls_redis_key_load(fx->path, &k2, err, sizeof(err)), -1);
    write_key(fx, HEX64, 64, 0600);
    snprintf(link, sizeof(link), "%s/link", fx->dir);
    assert_int_equal(symlink(fx->path, link), 0);
    assert_int_equal(atls_redis_key_load(link, &k2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "symbolic link"));
    assert_int_equal(atls_redis_key_load(fx->dir, &k2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a regular file"));
    assert_int_equal(atls_redis_key_load("/nonexistent/key", &k2, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/key"));
}

static void
load_key(keyfx_t *fx, int fill, atls_redis_key_t *k)
{
    unsigned char raw[32];
    char          err[256];

    memset(raw, fill, sizeof(raw));
    write_key(fx, raw, sizeof(raw), 0600);
    assert_int_equal(atls_redis_key_load(fx->path, k, err, sizeof(err)), 0);
}

static void
test_seal_round_trip_and_refusals(void **state)
{
    keyfx_t         *fx = *state;
    atls_redis_key_t k, other;
    static const char clear[] = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n";
    const char      *aad = "atls:{example.com}:v:certs/example.com/ec256.pem";
    unsigned char   *sealed, *sealed2;
    char            *out, err[256];
    size_t           slen, slen2, olen, i;

    load_key(fx, 0x11, &k);
    load_key(fx, 0x22, &other);
    assert_int_equal(atls_redis_seal(&k, aad, strlen(aad), clear, strlen(clear), &sealed, &slen,
                                     err, sizeof(err)), 0);
    assert_int_equal(slen, strlen(clear) + ATLS_REDIS_SEAL_OVERHEAD);
    assert_int_equal(sealed[0], ATLS_REDIS_SEAL_VERSION);
    assert_memory_equal(sealed + 1, k.id, ATLS_REDIS_KEYID_BYTES);
    assert_null(memmem(sealed, slen, "PRIVATE KEY", 11));
    assert_null(memmem(sealed, slen, "MIGHAgEA", 8));
    assert_int_equal(atls_redis_open(&k, aad, strlen(aad), sealed, slen, &out, &olen,
                                     err, sizeof(err)), 0);
    assert_int_equal(olen, strlen(clear));
    assert_string_equal(out, clear);
    free(out);

    /* a fresh nonce every time: the same clear text seals differently */
    assert_int_equal(atls_redis_seal(&k, aad, strlen(aad), clear, strlen(clear), &sealed2,
                                     &slen2, err, sizeof(err)), 0);
    assert_memory_not_equal(sealed + 9, sealed2 + 9, ATLS_REDIS_NONCE_BYTES);
    free(sealed2);

    /* every byte flipped, one at a time, is refused */
    for (i = 0; i < slen; i++) {
        sealed[i] ^= 0x01;
        out = (char *) 1;
        assert_int_equal(atls_redis_open(&k, aad, strlen(aad), sealed, slen, &out, &olen,
                                         err, sizeof(err)), -1);
        assert_null(out);
        sealed[i] ^= 0x01;
    }
    /* truncated */
    assert_int_equal(atls_redis_open(&k, aad, strlen(aad), sealed, slen - 1, &out, &olen,
                                     err, sizeof(err)), -1);
    assert_int_equal(atls_redis_open(&k, aad, strlen(aad), sealed, 10, &out, &olen,
                                     err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too short"));
    /* the wrong key: told apart by its id */
    assert_int_equal(atls_redis_open(&other, aad, strlen(aad), sealed, slen, &out, &olen,
                                     err, sizeof(err)), -1);
    assert_non_null(strstr(err, "another key file"));
    /* the same key id but another key (forged id): authentication fails */
    memcpy(other.id, k.id, sizeof(k.id));
    assert_int_equal(atls_redis_open(&other, aad, strlen(aad), sealed, slen, &out, &olen,
                                     err, sizeof(err)), -1);
    assert_non_null(strstr(err, "authentication"));
    /* moved under another Redis key name */
    assert_int_equal(atls_redis_open(&k, "atls:{evil.com}:v:certs/evil.com/ec256.pem",
                                     strlen("atls:{evil.com}:v:certs/evil.com/ec256.pem"),
                                     sealed, slen, &out, &olen, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "authentication"));
    /* an unknown version */
    sealed[0] = 0x7f;
    assert_int_equal(atls_redis_open(&k, aad, strlen(aad), sealed, slen, &out, &olen,
                                     err, sizeof(err)), -1);
    assert_non_null(strstr(err, "version"));
    free(sealed);

    /* empty clear text round-trips too */
    assert_int_equal(atls_redis_seal(&k, "k", 1, "", 0, &sealed, &slen, err, sizeof(err)), 0);
    assert_int_equal(atls_redis_open(&k, "k", 1, sealed, slen, &out, &olen, err, sizeof(err)), 0);
    assert_int_equal(olen, 0);
    assert_string_equal(out, "");
    free(out);
    free(sealed);
    atls_redis_key_wipe(&k);
    atls_redis_key_wipe(&other);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_key_file_rules, keyfx_setup, keyfx_teardown),
        cmocka_unit_test_setup_teardown(test_seal_round_trip_and_refusals, keyfx_setup,
                                        keyfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
