/*
 * The store's revocation entries (store_revocation.c): OCSP responses per
 * certificate and key type, the CRL cache per URL; and the revocation
 * facts of meta.json's "certs" entries (store_meta_certs.c).
 */
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
#include <openssl/evp.h>
#include "atls_store.h"
#include "support/ocsppki.h"
#include "support/storefx.h"

/* the store in a temp directory every test starts from */
typedef storefx_t fx_t;
#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, storefx_setup, storefx_teardown)

/* A file of n bytes of c, written behind the store's back (its owner). */
static void
plant(const char *path, size_t n, int c)
{
    char  *buf = malloc(n + 1);
    int    fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);

    assert_non_null(buf);
    assert_true(fd >= 0);
    memset(buf, c, n);
    assert_int_equal(write(fd, buf, n), (ssize_t) n);
    close(fd);
    free(buf);
}

/* "crl/<hex sha-256 of url>.<ext>" */
static const char *
crl_rel(const char *url, const char *ext)
{
    static char   buf[128];
    unsigned char md[32];
    unsigned int  n = 0, i;
    int           off;

    assert_int_equal(EVP_Digest(url, strlen(url), md, &n, EVP_sha256(), NULL), 1);
    off = snprintf(buf, sizeof(buf), "crl/");
    for (i = 0; i < n; i++) {
        off += snprintf(buf + off, sizeof(buf) - (size_t) off, "%02x", md[i]);
    }
    snprintf(buf + off, sizeof(buf) - (size_t) off, ".%s", ext);
    return buf;
}

/* ---- OCSP ------------------------------------------------------------------- */

static void
test_ocsp_round_trip(void **state)
{
    fx_t          *fx = *state;
    unsigned char  der[300], *back = NULL;
    size_t         len = 0, i;
    char           err[512];

    for (i = 0; i < sizeof(der); i++) {
        der[i] = (unsigned char) i;    /* binary, with NULs */
    }
    assert_int_equal(atls_store_load_ocsp(fx->st, "a.example", ATLS_KEY_EC256, &back, &len,
                                          err, sizeof(err)), ATLS_STORE_NOTFOUND);
    assert_int_equal(atls_store_save_ocsp(fx->st, "a.example", ATLS_KEY_EC256, der,
                                          sizeof(der), err, sizeof(err)), ATLS_STORE_OK);
    /* public: every worker staples it */
    assert_int_equal(storefx_mode(storefx_path(fx, "certs/a.example/ec256.ocsp")), 0644);
    assert_int_equal(atls_store_load_ocsp(fx->st, "a.example", ATLS_KEY_EC256, &back, &len,
                                          err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(len, sizeof(der));
    assert_memory_equal(back, der, sizeof(der));
    free(back);
    /* per key type */
    assert_int_equal(atls_store_load_ocsp(fx->st, "a.example", ATLS_KEY_RSA2048, &back,
                                          &len, err, sizeof(err)), ATLS_STORE_NOTFOUND);
    assert_int_equal(atls_store_del_ocsp(fx->st, "a.example", ATLS_KEY_EC256, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_load_ocsp(fx->st, "a.example", ATLS_KEY_EC256, &back, &len,
                                          err, sizeof(err)), ATLS_STORE_NOTFOUND);
    assert_int_equal(atls_store_del_ocsp(fx->st, "a.example", ATLS_KEY_EC256, err,
                                         sizeof(err)), ATLS_STORE_NOTFOUND);
    /* ids are checked, never used as given */
    assert_int_equal(atls_store_save_ocsp(fx->st, "../x", ATLS_KEY_EC256, der, sizeof(der),
                                          err, sizeof(err)), ATLS_STORE_ERROR);
    assert_int_equal(atls_store_load_ocsp(fx->st, ".hidden", ATLS_KEY_EC256, &back, &len,
                                          err, sizeof(err)), ATLS_STORE_ERROR);
    assert_null(back);
}

static void
test_ocsp_caps(void **state)
{
    fx_t          *fx = *state;
    unsigned char *big, *back = NULL;
    size_t         len = 0;
    char           err[512];

    big = calloc(1, ATLS_OCSP_MAX_BYTES + 1);
    assert_non_null(big);
    /* nothing above the cap is written, nothing empty either */
    assert_int_equal(atls_store_save_ocsp(fx->st, "a.example", ATLS_KEY_EC256, big,
                                          ATLS_OCSP_MAX_BYTES + 1, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(atls_store_save_ocsp(fx->st, "a.example", ATLS_KEY_EC256, big, 0,
                                          err, sizeof(err)), ATLS_STORE_ERROR);
    assert_int_equal(atls_store_save_ocsp(fx->st, "a.example", ATLS_KEY_EC256, big,
                                          ATLS_OCSP_MAX_BYTES, err, sizeof(err)),
                     ATLS_STORE_OK);
    /* nor read back when the owner planted it */
    plant(storefx_path(fx, "certs/a.example/ec256.ocsp"), ATLS_OCSP_MAX_BYTES + 1, 'x');
    assert_int_equal(atls_store_load_ocsp(fx->st, "a.example", ATLS_KEY_EC256, &back, &len,
                                          err, sizeof(err)), ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "certs/a.example/ec256.ocsp"));
    assert_null(back);
    plant(storefx_path(fx, "certs/a.example/ec256.ocsp"), 0, 'x');
    assert_int_equal(atls_store_load_ocsp(fx->st, "a.example", ATLS_KEY_EC256, &back, &len,
                                          err, sizeof(err)), ATLS_STORE_ERROR);
    /* a link planted in its place is refused (the store's rule for every entry) */
    assert_int_equal(unlink(storefx_path(fx, "certs/a.example/ec256.ocsp")), 0);
    assert_int_equal(symlink("/etc/passwd", storefx_path(fx, "certs/a.example/ec256.ocsp")),
                     0);
    assert_int_equal(atls_store_load_ocsp(fx->st, "a.example", ATLS_KEY_EC256, &back, &len,
                                          err, sizeof(err)), ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "symbolic link"));
    free(big);
}

/* A FIFO planted where the CRL should be is refused at once, never waited
 * on (SIGALRM ends the program if it hangs). */
static void
test_crl_fifo(void **state)
{
    static const char url[] = "http://crl.example/fifo.crl";
    fx_t             *fx = *state;
    atls_crl_cache_t  c, back;
    unsigned char    *der = NULL;
    size_t            len = 0;
    char              err[512];

    memset(&c, 0, sizeof(c));
    c.url = (char *) url;
    c.fetched = 1795000000;
    assert_int_equal(atls_store_save_crl(fx->st, &c, NULL, 0, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(mkfifo(storefx_path(fx, crl_rel(url, "der")), 0644), 0);
    alarm(10);
    assert_int_equal(atls_store_load_crl(fx->st, url, &back, &der, &len, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    alarm(0);
    assert_non_null(strstr(err, "not a regular file"));
    assert_null(der);
    assert_null(back.url);
}

/* ---- CRL cache -------------------------------------------------------------- */

static const char crl_url[] = "http://crl.example/shard/7.crl";

static void
test_crl_round_trip(void **state)
{
    fx_t             *fx = *state;
    atls_crl_cache_t  c, back;
    unsigned char     der[] = { 0x30, 0x82, 0x00, 0x01, 0x00, 0xff }, *bder = NULL;
    size_t            blen = 0;
    char              err[512];

    assert_int_equal(storefx_mode(storefx_path(fx, "crl")), 0700);   /* made at open */
    assert_int_equal(atls_store_load_crl(fx->st, crl_url, &back, NULL, NULL, err,
                                         sizeof(err)), ATLS_STORE_NOTFOUND);
    memset(&c, 0, sizeof(c));
    c.url = (char *) crl_url;
    c.etag = (char *) "\"abc 1\"";
    c.last_modified = (char *) "Sun, 29 Nov 2026 10:00:00 GMT";
    c.fetched = 1795000000;
    c.this_update = 1794990000;
    c.next_update = 1795590000;
    c.next_fetch = 1795003600;
    assert_int_equal(atls_store_save_crl(fx->st, &c, der, sizeof(der), err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(storefx_mode(storefx_path(fx, crl_rel(crl_url, "der"))), 0644);
    assert_int_equal(storefx_mode(storefx_path(fx, crl_rel(crl_url, "json"))), 0644);

    assert_int_equal(atls_store_load_crl(fx->st, crl_url, &back, &bder, &blen, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_string_equal(back.url, crl_url);
    assert_string_equal(back.etag, c.etag);
    assert_string_equal(back.last_modified, c.last_modified);
    assert_int_equal(back.fetched, c.fetched);
    assert_int_equal(back.this_update, c.this_update);
    assert_int_equal(back.next_update, c.next_update);
    assert_int_equal(back.next_fetch, c.next_fetch);
    assert_int_equal(blen, sizeof(der));
    assert_memory_equal(bder, der, sizeof(der));
    free(bder);
    atls_crl_cache_free(&back);

    /* a 304: only the facts change, the CRL stays */
    c.etag = NULL;
    c.fetched += 3600;
    c.next_fetch += 3600;
    assert_int_equal(atls_store_save_crl(fx->st, &c, NULL, 0, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_load_crl(fx->st, crl_url, &back, &bder, &blen, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_null(back.etag);
    assert_int_equal(back.fetched, c.fetched);
    assert_int_equal(back.next_fetch, c.next_fetch);
    assert_memory_equal(bder, der, sizeof(der));
    free(bder);
    atls_crl_cache_free(&back);

    /* facts only: the CRL is not read */
    assert_int_equal(unlink(storefx_path(fx, crl_rel(crl_url, "der"))), 0);
    assert_int_equal(atls_store_load_crl(fx->st, crl_url, &back, NULL, NULL, err,
                                         sizeof(err)), ATLS_STORE_OK);
    atls_crl_cache_free(&back);
    /* facts without their CRL: nothing usable */
    assert_int_equal(atls_store_load_crl(fx->st, crl_url, &back, &bder, &blen, err,
                                         sizeof(err)), ATLS_STORE_NOTFOUND);
    assert_null(back.url);
    assert_null(bder);
}

static void
test_crl_hostile(void **state)
{
    fx_t             *fx = *state;
    atls_crl_cache_t  c, back;
    unsigned char     der[] = { 0x30, 0x00 }, *bder = NULL, *big;
    size_t            blen = 0;
    char              err[512];
    FILE             *f;
    static const char other[] = "http://crl.example/shard/8.crl";
    static const struct { const char *json, *needle; } bad[] = {
        { "{\"url\":\"http://crl.example/shard/8.crl\"}", "names another URL" },
        { "{}", "names another URL" },
        { "[]", "top level must be an object" },
        { "{\"url\":\"http://crl.example/shard/7.crl\",\"fetched\":\"soon\"}",
          "field \"fetched\"" },
        { "{\"url\":\"http://crl.example/shard/7.crl\",\"etag\":\"a\\r\\nX: y\"}",
          "field \"etag\"" },
        { "{\"url\":\"http://crl.example/shard/7.crl\",\"key\":1}", "unknown field" },
        { "{\"url\":\"http://crl.example/shard/7.crl\",\"etag\":1}", "field \"etag\"" },
    };
    size_t i;

    memset(&c, 0, sizeof(c));
    c.url = (char *) crl_url;
    assert_int_equal(atls_store_save_crl(fx->st, &c, der, sizeof(der), err, sizeof(err)),
                     ATLS_STORE_OK);
    /* another URL's entry copied (or planted) under this URL's name */
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        f = fopen(storefx_path(fx, crl_rel(crl_url, "json")), "w");
        assert_non_null(f);
        fputs(bad[i].json, f);
        fclose(f);
        err[0] = '\0';
        assert_int_equal(atls_store_load_crl(fx->st, crl_url, &back, &bder, &blen, err,
                                             sizeof(err)), ATLS_STORE_ERROR);
        if (strstr(err, bad[i].needle) == NULL || strstr(err, "crl/") == NULL) {
            fail_msg("%s: error \"%s\" lacks \"%s\"", bad[i].json, err, bad[i].needle);
        }
        assert_null(back.url);
        assert_null(bder);
    }
    /* the other URL has nothing cached */
    assert_int_equal(atls_store_load_crl(fx->st, other, &back, NULL, NULL, err,
                                         sizeof(err)), ATLS_STORE_NOTFOUND);

    /* validators that would break a request header are never written */
    c.etag = (char *) "\"a\"\r\nX-Evil: 1";
    assert_int_equal(atls_store_save_crl(fx->st, &c, NULL, 0, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    c.etag = NULL;
    /* URLs that are not one line of text are refused */
    c.url = (char *) "http://crl.example/a b";
    assert_int_equal(atls_store_save_crl(fx->st, &c, der, sizeof(der), err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(atls_store_load_crl(fx->st, "", &back, NULL, NULL, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    c.url = (char *) crl_url;

    /* the CRL cap: larger than the store's usual 1 MiB is fine, larger than
     * ATLS_CRL_MAX_BYTES is refused both ways */
    big = calloc(1, ATLS_CRL_MAX_BYTES + 1);
    assert_non_null(big);
    assert_int_equal(atls_store_save_crl(fx->st, &c, big, 2 * 1024 * 1024, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_load_crl(fx->st, crl_url, &back, &bder, &blen, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(blen, 2 * 1024 * 1024);
    free(bder);
    atls_crl_cache_free(&back);
    assert_int_equal(atls_store_save_crl(fx->st, &c, big, ATLS_CRL_MAX_BYTES + 1, err,
                                         sizeof(err)), ATLS_STORE_ERROR);
    plant(storefx_path(fx, crl_rel(crl_url, "der")), ATLS_CRL_MAX_BYTES + 1, 'x');
    assert_int_equal(atls_store_load_crl(fx->st, crl_url, &back, &bder, &blen, err,
                                         sizeof(err)), ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "refused"));
    assert_null(bder);
    /* the larger cap is the CRLs' alone: the cache's facts (as every other
     * entry) still stop at the backend's 1 MiB */
    plant(storefx_path(fx, crl_rel(crl_url, "json")), 2 * 1024 * 1024, ' ');
    assert_int_equal(atls_store_load_crl(fx->st, crl_url, &back, NULL, NULL, err,
                                         sizeof(err)), ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "larger than 1 MiB"));
    free(big);
}

/* ---- meta.json ------------------------------------------------------------- */

static void
fill_kt(atls_cert_meta_t *m)
{
    atls_cert_info_t     info;
    atls_cert_kt_info_t *ki;
    char                *names[] = { (char *) "a.example", NULL };

    memset(m, 0, sizeof(*m));
    m->id = atls_strdup("a.example");
    m->names = atls_strv_dup(names, 1);
    m->n_names = 1;
    m->issuer.must_staple = 1;
    memset(&info, 0, sizeof(info));
    info.key_type = ATLS_KEY_EC256;
    info.not_before = 1790000000;
    info.not_after = 1797776000;
    snprintf(info.serial, sizeof(info.serial), "0a1b");
    info.names = names;
    info.n_names = 1;
    atls_cert_meta_set_kt_info(m, &info);
    ki = atls_cert_meta_kt(m, ATLS_KEY_EC256);
    assert_non_null(ki);
    assert_int_equal(ki->revoked_reason, -1);
    ki->ocsp_url = atls_strdup("http://ocsp.example/");
    ki->crl_url = atls_strdup("https://crl.example/1.crl");
    ki->ocsp_status = ATLS_OCSP_REVOKED;
    ki->ocsp_this_update = 1795000000;
    ki->ocsp_next_update = 1795600000;
    ki->ocsp_next_refresh = 1795300000;
    ki->ocsp_failures = 3;
    ki->ocsp_error = atls_strdup("responder said tryLater");
    ki->revoked_seen = 1795000100;
    ki->revoked_at = 1794000000;
    ki->revoked_reason = 1;
    ki->revoked_source = atls_strdup("ocsp");
}

static void
assert_kt_equal(const atls_cert_kt_info_t *a, const atls_cert_kt_info_t *b)
{
    assert_string_equal(a->ocsp_url, b->ocsp_url);
    assert_string_equal(a->crl_url, b->crl_url);
    assert_int_equal(a->ocsp_status, b->ocsp_status);
    assert_int_equal(a->ocsp_this_update, b->ocsp_this_update);
    assert_int_equal(a->ocsp_next_update, b->ocsp_next_update);
    assert_int_equal(a->ocsp_next_refresh, b->ocsp_next_refresh);
    assert_int_equal(a->ocsp_failures, b->ocsp_failures);
    assert_string_equal(a->ocsp_error, b->ocsp_error);
    assert_int_equal(a->revoked_seen, b->revoked_seen);
    assert_int_equal(a->revoked_at, b->revoked_at);
    assert_int_equal(a->revoked_reason, b->revoked_reason);
    assert_string_equal(a->revoked_source, b->revoked_source);
}

static void
test_meta_revocation_round_trip(void **state)
{
    atls_cert_meta_t  m, back, copy;
    atls_cert_info_t  info;
    char             *json, *json2, err[256];
    char             *names[] = { (char *) "a.example", NULL };

    (void) state;
    fill_kt(&m);
    json = atls_cert_meta_to_json(&m);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"ocsp_status\": \"revoked\""));
    assert_non_null(strstr(json, "\"ocsp_next_refresh\": \"2026-11-21T22:26:40Z\""));
    assert_non_null(strstr(json, "\"revoked_reason\": 1"));
    assert_non_null(strstr(json, "\"revoked_source\": \"ocsp\""));
    assert_non_null(strstr(json, "\"must_staple\": true"));
    assert_null(strstr(json, "stapling_off"));
    assert_int_equal(atls_cert_meta_from_json(json, strlen(json), &back, err, sizeof(err)),
                     0);
    assert_int_equal(back.issuer.must_staple, 1);
    assert_int_equal(back.issuer.stapling_off, 0);
    assert_kt_equal(&m.kt_info[0], &back.kt_info[0]);
    json2 = atls_cert_meta_to_json(&back);
    assert_string_equal(json, json2);
    free(json2);

    /* the deep copy */
    atls_cert_meta_copy(&copy, &back);
    assert_ptr_not_equal(copy.kt_info[0].ocsp_url, back.kt_info[0].ocsp_url);
    assert_ptr_not_equal(copy.kt_info[0].revoked_source, back.kt_info[0].revoked_source);
    assert_kt_equal(&copy.kt_info[0], &back.kt_info[0]);
    atls_cert_meta_free(&copy);

    /* a new certificate starts over: nothing known about its revocation */
    memset(&info, 0, sizeof(info));
    info.key_type = ATLS_KEY_EC256;
    info.not_before = 1796000000;
    info.not_after = 1803776000;
    snprintf(info.serial, sizeof(info.serial), "0c");
    info.names = names;
    info.n_names = 1;
    atls_cert_meta_set_kt_leaf(&back, &info, NULL);
    assert_int_equal(back.n_kt_info, 1);
    assert_null(back.kt_info[0].ocsp_url);
    assert_null(back.kt_info[0].crl_url);
    assert_int_equal(back.kt_info[0].ocsp_status, ATLS_OCSP_NONE);
    assert_int_equal(back.kt_info[0].ocsp_failures, 0);
    assert_null(back.kt_info[0].ocsp_error);
    assert_int_equal(back.kt_info[0].revoked_seen, 0);
    assert_int_equal(back.kt_info[0].revoked_reason, -1);
    assert_null(back.kt_info[0].revoked_source);
    assert_string_equal(back.kt_info[0].serial, "0c");
    json2 = atls_cert_meta_to_json(&back);
    /* and writes none of it: absent is the default */
    assert_null(strstr(json2, "ocsp"));
    assert_null(strstr(json2, "revoked"));
    assert_null(strstr(json2, "crl"));
    free(json2);
    assert_null(atls_cert_meta_kt(&back, ATLS_KEY_RSA2048));

    free(json);
    atls_cert_meta_free(&back);
    atls_cert_meta_free(&m);
}

/* set_kt_leaf reads where revocation is published from the leaf itself. */
static void
test_meta_kt_leaf(void **state)
{
    atls_cert_meta_t     m;
    atls_cert_info_t     info;
    atls_cert_kt_info_t *ki;
    ocsppki_t            p;
    X509                *leaf, *bare;

    (void) state;
    assert_int_equal(ocsppki_make(&p), 0);
    leaf = ocsppki_leaf(&p, "a.test", "http://127.0.0.1:9/ocsp", "http://127.0.0.1:9/a.crl",
                        0);
    bare = ocsppki_leaf(&p, "a.test", NULL, NULL, 0);
    assert_non_null(leaf);
    assert_non_null(bare);
    fill_kt(&m);
    assert_int_equal(atls_cert_info(leaf, &info), 0);
    info.key_type = ATLS_KEY_EC256;
    atls_cert_meta_set_kt_leaf(&m, &info, leaf);
    ki = atls_cert_meta_kt(&m, ATLS_KEY_EC256);
    assert_string_equal(ki->ocsp_url, "http://127.0.0.1:9/ocsp");
    assert_string_equal(ki->crl_url, "http://127.0.0.1:9/a.crl");
    assert_string_equal(ki->serial, info.serial);
    /* the old certificate's facts are gone */
    assert_int_equal(ki->ocsp_status, ATLS_OCSP_NONE);
    assert_int_equal(ki->revoked_seen, 0);
    assert_null(ki->revoked_source);
    atls_cert_info_free(&info);

    /* a leaf naming neither: both NULL (no responder is normal) */
    assert_int_equal(atls_cert_info(bare, &info), 0);
    info.key_type = ATLS_KEY_EC256;
    atls_cert_meta_set_kt_leaf(&m, &info, bare);
    assert_int_equal(m.n_kt_info, 1);
    assert_null(m.kt_info[0].ocsp_url);
    assert_null(m.kt_info[0].crl_url);
    atls_cert_info_free(&info);

    atls_cert_meta_free(&m);
    X509_free(leaf);
    X509_free(bare);
    ocsppki_free(&p);
}

static void
test_meta_revocation_errors(void **state)
{
#define KT_HEAD "{\"names\":[\"a.example\"],\"certs\":{\"ec256\":{\"serial\":\"01\"," \
                "\"names\":[\"a.example\"],\"not_before\":\"2025-01-01T00:00:00Z\"," \
                "\"not_after\":\"2025-02-01T00:00:00Z\","
    static const struct { const char *json, *needle; } cases[] = {
        { KT_HEAD "\"ocsp_status\":\"fine\"}}}", "field \"certs.ec256.ocsp_status\"" },
        { KT_HEAD "\"ocsp_status\":1}}}", "field \"certs.ec256.ocsp_status\"" },
        { KT_HEAD "\"ocsp_url\":\"ftp://x/\"}}}", "field \"certs.ec256.ocsp_url\"" },
        { KT_HEAD "\"ocsp_url\":\"http://a b/\"}}}", "field \"certs.ec256.ocsp_url\"" },
        { KT_HEAD "\"crl_url\":7}}}", "field \"certs.ec256.crl_url\"" },
        { KT_HEAD "\"ocsp_this_update\":\"yesterday\"}}}",
          "field \"certs.ec256.ocsp_this_update\"" },
        { KT_HEAD "\"ocsp_next_update\":-5}}}", "field \"certs.ec256.ocsp_next_update\"" },
        { KT_HEAD "\"ocsp_next_refresh\":[]}}}", "field \"certs.ec256.ocsp_next_refresh\"" },
        { KT_HEAD "\"ocsp_failures\":-1}}}", "field \"certs.ec256.ocsp_failures\"" },
        { KT_HEAD "\"ocsp_error\":{}}}}", "field \"certs.ec256.ocsp_error\"" },
        { KT_HEAD "\"revoked_seen\":\"x\"}}}", "field \"certs.ec256.revoked_seen\"" },
        { KT_HEAD "\"revoked_seen\":5,\"revoked_at\":true}}}",
          "field \"certs.ec256.revoked_at\"" },
        { KT_HEAD "\"revoked_seen\":5,\"revoked_reason\":11}}}",
          "field \"certs.ec256.revoked_reason\"" },
        { KT_HEAD "\"revoked_seen\":5,\"revoked_reason\":\"keyCompromise\"}}}",
          "field \"certs.ec256.revoked_reason\"" },
        { KT_HEAD "\"revoked_seen\":5,\"revoked_source\":\"gossip\"}}}",
          "field \"certs.ec256.revoked_source\"" },
        { KT_HEAD "\"revoked_source\":\"crl\"}}}", "need \"certs.ec256.revoked_seen\"" },
        { KT_HEAD "\"ocsp_staple\":\"x\"}}}", "unknown member \"ocsp_staple\"" },
        { "{\"names\":[\"a.example\"],\"issuer\":{\"must_staple\":\"yes\"}}",
          "field \"issuer.must_staple\"" },
        { "{\"names\":[\"a.example\"],\"issuer\":{\"stapling_off\":1}}",
          "field \"issuer.stapling_off\"" },
    };
    static const char minimal[] = KT_HEAD "\"crl_url\":\"http://c.example/x.crl\"}}}";
#undef KT_HEAD
    atls_cert_meta_t m;
    char             err[256];
    size_t           i;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        assert_int_equal(atls_cert_meta_from_json(cases[i].json, strlen(cases[i].json),
                                                  &m, err, sizeof(err)), -1);
        if (strstr(err, cases[i].needle) == NULL) {
            fail_msg("%s: error \"%s\" lacks \"%s\"", cases[i].json, err, cases[i].needle);
        }
        assert_null(m.names);
    }
    /* absent means the defaults: not asked, not revoked, reason unspecified */
    assert_int_equal(atls_cert_meta_from_json(minimal, strlen(minimal), &m, err,
                                              sizeof(err)), 0);
    assert_string_equal(m.kt_info[0].crl_url, "http://c.example/x.crl");
    assert_null(m.kt_info[0].ocsp_url);
    assert_int_equal(m.kt_info[0].ocsp_status, ATLS_OCSP_NONE);
    assert_int_equal(m.kt_info[0].revoked_seen, 0);
    assert_int_equal(m.kt_info[0].revoked_reason, -1);
    assert_int_equal(m.issuer.must_staple, 0);
    assert_int_equal(m.issuer.stapling_off, 0);
    atls_cert_meta_free(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_ocsp_round_trip),
        STORE_TEST(test_ocsp_caps),
        STORE_TEST(test_crl_round_trip),
        STORE_TEST(test_crl_hostile),
        STORE_TEST(test_crl_fifo),
        cmocka_unit_test(test_meta_revocation_round_trip),
        cmocka_unit_test(test_meta_revocation_errors),
        cmocka_unit_test(test_meta_kt_leaf),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
