/*
 * The store's paged listing (atls_store_list_page): the fs backend reads
 * one open directory a page at a time, and store.c pages one `list` for a
 * backend without a paged list of its own (here: the fs backend with its
 * list_page taken away, as the Redis backends are).  Every entry comes
 * exactly once whatever the page size, a missing directory lists nothing,
 * a listing stopped early is ended without a leak (ASan builds), and an
 * entry present throughout a listing that others change meanwhile is
 * still given once.  And atls_store_has_cert: a certificate exists when
 * meta lists a key type's facts.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "atls_store.h"
#include "support/storefx.h"

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, storefx_setup, storefx_teardown)
#define NFILES 1000

static void
put(atls_store_t *st, const char *path, const char *text)
{
    char err[256];

    assert_int_equal(st->ops->put(st, path, text, strlen(text), 0, err, sizeof(err)),
                     ATLS_STORE_OK);
}

static void
seed(atls_store_t *st, unsigned n)
{
    char     path[64];
    unsigned i;

    for (i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "names/n%u.json", i);
        put(st, path, "{}");
    }
}

/* Lists dir in pages of max into seen[] (counts per "n<i>.json"), checking
 * every page holds 1..max entries except possibly the last; returns the
 * number of calls. */
static unsigned
list_all(atls_store_t *st, const char *dir, size_t max, unsigned *seen, unsigned n)
{
    atls_store_cursor_t *cur = NULL;
    char                 err[256], **names;
    size_t               k, i;
    unsigned             calls = 0, idx;

    do {
        assert_int_equal(atls_store_list_page(st, dir, &cur, max, &names, &k, err,
                                              sizeof(err)),
                         ATLS_STORE_OK);
        calls++;
        assert_true(k <= max);
        if (cur != NULL) {
            assert_true(k >= 1);
        }
        for (i = 0; i < k; i++) {
            assert_int_equal(sscanf(names[i], "n%u.json", &idx), 1);
            assert_true(idx < n);
            seen[idx]++;
            free(names[i]);
        }
        free(names);
        assert_true(calls <= n + 2);
    } while (cur != NULL);
    return calls;
}

static void
check_pages(atls_store_t *st)
{
    static const size_t sizes[] = { 1, 7, 128, NFILES, NFILES + 5 };
    unsigned            seen[NFILES], calls, i, s;

    seed(st, NFILES);
    for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        memset(seen, 0, sizeof(seen));
        calls = list_all(st, "names", sizes[s], seen, NFILES);
        for (i = 0; i < NFILES; i++) {
            assert_int_equal(seen[i], 1);
        }
        /* paged: at least n / max calls, never one call for a big listing */
        assert_true(calls >= (NFILES + sizes[s] - 1) / sizes[s]);
    }
}

static void
test_fs_pages(void **state)
{
    storefx_t *fx = *state;

    assert_non_null(fx->st->ops->list_page);
    check_pages(fx->st);
}

/* store.c's default: the same answers through one `list` */
static void
test_default_pages(void **state)
{
    storefx_t              *fx = *state;
    atls_store_ops_t        plain = *fx->st->ops;
    const atls_store_ops_t *real = fx->st->ops;

    plain.list_page = NULL;
    plain.list_end = NULL;
    fx->st->ops = &plain;
    check_pages(fx->st);
    fx->st->ops = real;
}

static void
missing_dir(atls_store_t *st)
{
    atls_store_cursor_t *cur = NULL;
    char                 err[256], **names = (char **) 1;
    size_t               k = 99;

    assert_int_equal(atls_store_list_page(st, "nothing-here", &cur, 16, &names, &k, err,
                                          sizeof(err)),
                     ATLS_STORE_OK);
    assert_null(cur);
    assert_null(names);
    assert_int_equal(k, 0);
}

static void
test_missing_dir(void **state)
{
    storefx_t              *fx = *state;
    atls_store_ops_t        plain = *fx->st->ops;
    const atls_store_ops_t *real = fx->st->ops;

    missing_dir(fx->st);
    plain.list_page = NULL;
    plain.list_end = NULL;
    fx->st->ops = &plain;
    missing_dir(fx->st);
    fx->st->ops = real;
}

/* a listing stopped after its first page is ended (both implementations) */
static void
stop_early(atls_store_t *st)
{
    atls_store_cursor_t *cur = NULL;
    char                 err[256], **names;
    size_t               k, i;

    assert_int_equal(atls_store_list_page(st, "names", &cur, 10, &names, &k, err,
                                          sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(k, 10);
    assert_non_null(cur);
    for (i = 0; i < k; i++) {
        free(names[i]);
    }
    free(names);
    atls_store_list_end(st, cur);
    atls_store_list_end(st, NULL);
}

static void
test_stop_early(void **state)
{
    storefx_t              *fx = *state;
    atls_store_ops_t        plain = *fx->st->ops;
    const atls_store_ops_t *real = fx->st->ops;

    seed(fx->st, 100);
    stop_early(fx->st);
    plain.list_page = NULL;
    plain.list_end = NULL;
    fx->st->ops = &plain;
    stop_early(fx->st);
    fx->st->ops = real;
}

/* entries rewritten (atomic replace) and added while the listing runs:
 * every entry present throughout still comes once */
static void
test_changes_meanwhile(void **state)
{
    storefx_t           *fx = *state;
    atls_store_cursor_t *cur = NULL;
    char                 err[256], **names, path[64];
    size_t               k, i;
    unsigned             seen[NFILES + 200], idx, calls = 0, j;

    memset(seen, 0, sizeof(seen));
    seed(fx->st, NFILES);
    do {
        assert_int_equal(atls_store_list_page(fx->st, "names", &cur, 50, &names, &k, err,
                                              sizeof(err)),
                         ATLS_STORE_OK);
        for (i = 0; i < k; i++) {
            assert_int_equal(sscanf(names[i], "n%u.json", &idx), 1);
            seen[idx]++;
            free(names[i]);
        }
        free(names);
        /* others write meanwhile: ten new entries per page */
        for (j = 0; j < 10 && calls < 20; j++) {
            snprintf(path, sizeof(path), "names/n%u.json", NFILES + calls * 10 + j);
            put(fx->st, path, "{}");
        }
        calls++;
    } while (cur != NULL);
    for (idx = 0; idx < NFILES; idx++) {
        assert_int_equal(seen[idx], 1);
    }
    for (idx = NFILES; idx < NFILES + 200; idx++) {
        assert_true(seen[idx] <= 1);
    }
}

static void
test_has_cert(void **state)
{
    storefx_t           *fx = *state;
    atls_cert_meta_t     m;
    atls_cert_kt_info_t *ki;
    char                 err[256], *names[] = { "b.example" };

    /* no meta at all */
    assert_int_equal(atls_store_has_cert(fx->st, "a.example"), 0);

    /* a first order: "renewing", no certificate facts yet */
    memset(&m, 0, sizeof(m));
    m.id = "a.example";
    m.state = ATLS_STATE_RENEWING;
    m.last_success = 1;
    assert_int_equal(atls_store_save_meta(fx->st, &m, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_has_cert(fx->st, "a.example"), 0);

    /* a deploy recorded its facts */
    memset(&m, 0, sizeof(m));
    ki = &m.kt_info[0];
    ki->key_type = ATLS_KEY_EC256;
    ki->not_before = 1767225600;
    ki->not_after = 1798761600;
    ki->serial = "01";
    ki->names = names;
    ki->n_names = 1;
    m.id = "b.example";
    m.names = names;
    m.n_names = 1;
    m.state = ATLS_STATE_VALID;
    m.n_kt_info = 1;
    assert_int_equal(atls_store_save_meta(fx->st, &m, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_has_cert(fx->st, "b.example"), 1);

    /* a broken meta is no certificate */
    put(fx->st, "certs/c.example/meta.json", "{not json");
    assert_int_equal(atls_store_has_cert(fx->st, "c.example"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_fs_pages),
        STORE_TEST(test_default_pages),
        STORE_TEST(test_missing_dir),
        STORE_TEST(test_stop_early),
        STORE_TEST(test_changes_meanwhile),
        STORE_TEST(test_has_cert),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
