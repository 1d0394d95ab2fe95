/*
 * The scheduler's CRL checks (sched_crl.c): certificates naming a CRL
 * Distribution Point and no responder, stored as ocsppki leaves
 * (support/revfix); the fake host serves the CRL, shared by every
 * certificate naming its URL.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "atls.h"
#include "atls_ocsp.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "support/logcap.h"
#include "support/revfix.h"

#define CRL_URL    "http://crl.test/1.crl"
#define EC         ATLS_KEY_EC256

/* ---- CRLs ------------------------------------------------------------------------- */

/* One CRL URL named by several certificates: one fetch, every one looked
 * up, none fetched again while it is fresh. */
static void
test_crl_shared(void **state)
{
    fakehost_url_t *u;
    unsigned char  *crl;
    size_t          len, i;

    (void) state;
    revfix_sched_start();
    for (i = 0; i < 4; i++) {
        char name[32];

        snprintf(name, sizeof(name), "c%zu.test", i);
        (void) revfix_seed(atls_strdup(name), NULL, CRL_URL, 1);
    }
    crl = revfix_crl(NULL, time(NULL) + 7 * 86400, &len);
    u = fakehost_url(&rf.h, CRL_URL, 200, crl, len);
    revfix_pass();
    assert_int_equal(u->hits, 1);
    revfix_pass();
    assert_int_equal(u->hits, 1);
    for (i = 0; i < 4; i++) {
        assert_int_equal(rf.certs[i].done, 0);
        free((char *) rf.certs[i].name);
    }
    free(crl);
}

/* A serial listed in the CRL: replaced, said once. */
static void
test_crl_listed(void **state)
{
    fakehost_url_t *u;
    unsigned char  *crl;
    size_t          len;

    (void) state;
    revfix_sched_start();
    (void) revfix_seed("ok.test", NULL, CRL_URL, 1);
    (void) revfix_seed("listed.test", NULL, CRL_URL, 1);
    crl = revfix_crl(rf.leaves[1], time(NULL) + 7 * 86400, &len);
    u = fakehost_url(&rf.h, CRL_URL, 200, crl, len);
    revfix_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(rf.certs[0].done, 0);
    assert_int_equal(rf.certs[1].done, 1);
    assert_int_equal(rf.certs[1].rc, 0);
    assert_int_equal(rf.certs[1].n_deployed, 1);
    assert_int_equal(logcap_count("certificate \"listed.test\" (ec256) serial"), 1);
    assert_int_equal(logcap_count("listed in its CRL): replacing it now"), 1);
    revfix_pass();
    assert_int_equal(rf.certs[1].done, 1);
    assert_int_equal(u->hits, 1);
    free(crl);
}

/* After a restart the cached CRL is used; once due, it is fetched with
 * its ETag and a 304 keeps it. */
static void
test_crl_cached_and_304(void **state)
{
    atls_crl_cache_t cache;
    fakehost_url_t  *u;
    unsigned char   *crl, *der = NULL;
    size_t           len, dlen = 0;
    time_t           now = time(NULL);
    char             err[256];

    (void) state;
    revfix_sched_start();
    (void) revfix_seed("cached.test", NULL, CRL_URL, 1);
    /* nextUpdate in 10 min: fetched again after the 1 rf.h floor */
    crl = revfix_crl(NULL, now + 600, &len);
    u = fakehost_url(&rf.h, CRL_URL, 200, crl, len);
    u->etag = "\"v1\"";
    revfix_pass();
    assert_int_equal(u->hits, 1);
    memset(&cache, 0, sizeof(cache));
    assert_int_equal(atls_store_load_crl(rf.st, CRL_URL, &cache, &der, &dlen, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_string_equal(cache.etag, "\"v1\"");
    assert_true(cache.next_fetch >= cache.fetched + 3600);
    assert_true(cache.next_fetch <= cache.fetched + 3600 + 1);

    /* a new process: the cache is fresh, nothing fetched */
    atls_sched_free(rf.h.s);
    rf.h.s = NULL;
    revfix_sched_start();
    assert_non_null(atls_sched_add(rf.h.s, &rf.certs[0].name, 1, &(atls_issuer_t) {
        .directory = (char *) REVFIX_DIRECTORY, .challenge = ATLS_CHAL_HTTP01, .agree_tos = 1 },
        &rf.certs[0], err, sizeof(err)));
    revfix_pass();
    assert_int_equal(u->hits, 1);

    /* due: a conditional fetch, answered 304 */
    atls_sched_free(rf.h.s);
    rf.h.s = NULL;
    cache.next_fetch = now - 1;
    assert_int_equal(atls_store_save_crl(rf.st, &cache, NULL, 0, err, sizeof(err)),
                     ATLS_STORE_OK);
    revfix_sched_start();
    assert_non_null(atls_sched_add(rf.h.s, &rf.certs[0].name, 1, &(atls_issuer_t) {
        .directory = (char *) REVFIX_DIRECTORY, .challenge = ATLS_CHAL_HTTP01, .agree_tos = 1 },
        &rf.certs[0], err, sizeof(err)));
    revfix_pass();
    assert_int_equal(u->hits, 2);
    assert_int_equal(u->conditional, 1);
    atls_crl_cache_free(&cache);
    free(der);
    der = NULL;
    memset(&cache, 0, sizeof(cache));
    assert_int_equal(atls_store_load_crl(rf.st, CRL_URL, &cache, &der, &dlen, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_true(cache.next_fetch > now);
    assert_int_equal(dlen, len);            /* the CRL held is kept */
    assert_int_equal(rf.certs[0].done, 0);
    atls_crl_cache_free(&cache);
    free(der);
    free(crl);
}

/* After a restart the cached CRL is looked up without a fetch while it is
 * fresh: a serial it lists is replaced. */
static void
test_crl_cache_lists(void **state)
{
    atls_crl_cache_t cache;
    fakehost_url_t  *u;
    unsigned char   *crl;
    size_t           len;
    time_t           now = time(NULL);
    char             err[256];

    (void) state;
    revfix_sched_start();
    (void) revfix_seed("fromcache.test", NULL, CRL_URL, 1);
    crl = revfix_crl(rf.leaves[0], now + 86400, &len);
    memset(&cache, 0, sizeof(cache));
    cache.url = (char *) CRL_URL;
    cache.fetched = now - 60;
    cache.this_update = now - 60;
    cache.next_update = now + 86400;
    cache.next_fetch = now + 3600;
    assert_int_equal(atls_store_save_crl(rf.st, &cache, crl, len, err, sizeof(err)),
                     ATLS_STORE_OK);
    u = fakehost_url(&rf.h, CRL_URL, 503, NULL, 0);
    revfix_pass();
    assert_int_equal(u->hits, 0);
    assert_int_equal(rf.certs[0].done, 1);
    assert_int_equal(rf.certs[0].n_deployed, 1);
    assert_int_equal(logcap_count("listed in its CRL): replacing it now"), 1);
    free(crl);
}

/* A CRL server down: one line, backed off (not fetched at the next pass). */
static void
test_crl_fetch_failure(void **state)
{
    fakehost_url_t *u;

    (void) state;
    revfix_sched_start();
    (void) revfix_seed("crlfail.test", NULL, CRL_URL, 1);
    u = fakehost_url(&rf.h, CRL_URL, 503, NULL, 0);
    revfix_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(logcap_count("CRL " CRL_URL ": HTTP status 503"), 1);
    revfix_pass();
    assert_int_equal(u->hits, 1);
    assert_int_equal(rf.certs[0].done, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_crl_shared, revfix_setup, revfix_teardown),
        cmocka_unit_test_setup_teardown(test_crl_listed, revfix_setup, revfix_teardown),
        cmocka_unit_test_setup_teardown(test_crl_cached_and_304, revfix_setup, revfix_teardown),
        cmocka_unit_test_setup_teardown(test_crl_cache_lists, revfix_setup, revfix_teardown),
        cmocka_unit_test_setup_teardown(test_crl_fetch_failure, revfix_setup, revfix_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
