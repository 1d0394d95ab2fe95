/*
 * The store's change journal (store_changes.c): which certificate each
 * generation bump was for, read back by range; a range the journal does
 * not account for (rotated away, a bump without a line, a broken line) is
 * reported so that the reader reads everything.  And the listing of
 * pending renew requests.
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

static void
bump(atls_store_t *st, const char *id)
{
    assert_int_equal(atls_store_bump_generation_for(st, id), ATLS_STORE_OK);
}

/* The ids changed in (since, upto], joined by ',' ("" none); NULL when the
 * journal does not account for the range. */
static char *
changed(atls_store_t *st, uint64_t since, uint64_t upto)
{
    static char out[4096];
    char        err[256], **ids = NULL;
    size_t      n = 0, i;
    int         rc = atls_store_changes_since(st, since, upto, &ids, &n, err, sizeof(err));

    if (rc == ATLS_STORE_NOTFOUND) {
        return NULL;
    }
    if (rc != ATLS_STORE_OK) {
        fail_msg("changes_since: %s", err);
    }
    out[0] = '\0';
    for (i = 0; i < n; i++) {
        snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", i ? "," : "", ids[i]);
    }
    atls_strv_free(ids, n);
    return out;
}

static void
put(atls_store_t *st, const char *path, const char *text)
{
    char err[256];

    assert_int_equal(st->ops->put(st, path, text, strlen(text), 0, err, sizeof(err)),
                     ATLS_STORE_OK);
}

/* Each bump names its certificate; a range gives each id once, sorted. */
static void
test_ranges(void **state)
{
    storefx_t *fx = *state;

    bump(fx->st, "b.example");
    bump(fx->st, "a.example");
    bump(fx->st, "b.example");
    assert_int_equal(atls_store_generation(fx->st), 3);
    assert_string_equal(changed(fx->st, 0, 3), "a.example,b.example");
    assert_string_equal(changed(fx->st, 2, 3), "b.example");
    assert_string_equal(changed(fx->st, 1, 2), "a.example");
    assert_string_equal(changed(fx->st, 3, 3), "");
    /* the names registry's bumps name no certificate */
    assert_int_equal(atls_store_bump_generation(fx->st), ATLS_STORE_OK);
    assert_string_equal(changed(fx->st, 3, 4), "");
    assert_string_equal(changed(fx->st, 2, 4), "b.example");
    /* an id that is no store id is refused, nothing bumped */
    assert_int_equal(atls_store_bump_generation_for(fx->st, "../x"), ATLS_STORE_ERROR);
    assert_int_equal(atls_store_generation(fx->st), 4);
}

/* A generation the journal has no line for: everything must be read. */
static void
test_gaps(void **state)
{
    storefx_t *fx = *state;
    char       err[256];

    bump(fx->st, "a.example");
    put(fx->st, "generation", "5\n");          /* an older binary bumped 4 times */
    bump(fx->st, "c.example");
    assert_null(changed(fx->st, 0, 6));
    assert_null(changed(fx->st, 1, 6));
    assert_string_equal(changed(fx->st, 5, 6), "c.example");
    /* further back than the journal is ever asked about */
    assert_null(changed(fx->st, 0, ATLS_CHANGES_MAX_SPAN + 1));
    /* lines that do not parse stand for nothing */
    assert_int_equal(fx->st->ops->append(fx->st, "changes.log", "7 ../etc", 8, 0, 0, err,
                                         sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(fx->st->ops->append(fx->st, "changes.log", "x8 a.example", 12, 0, 0,
                                         err, sizeof(err)), ATLS_STORE_OK);
    put(fx->st, "generation", "8\n");
    assert_null(changed(fx->st, 6, 8));
    assert_null(changed(fx->st, 6, 7));
}

/* Past its size the journal rotates to changes.log.1: recent ranges are
 * still read (from both files), older ones are reported gone. */
static void
test_rotation(void **state)
{
    storefx_t *fx = *state;
    char       id[240], want[500], *got;
    size_t     i, n = 2 * ATLS_CHANGES_ROTATE_BYTES / 200 + 50;

    for (i = 1; i <= n; i++) {
        snprintf(id, sizeof(id), "%0180zu.example", i);
        bump(fx->st, id);
    }
    got = changed(fx->st, n - 2, n);
    assert_non_null(got);
    snprintf(want, sizeof(want), "%0180zu.example,%0180zu.example", n - 1, n);
    assert_string_equal(got, want);
    /* a range across the rotation: both files */
    got = changed(fx->st, n - ATLS_CHANGES_ROTATE_BYTES / 200 - 20, n);
    assert_non_null(got);
    /* the first lines went with the oldest file */
    assert_null(changed(fx->st, 0, n));
}

static void
test_requests_listed(void **state)
{
    storefx_t *fx = *state;
    char       err[256], **ids = NULL;
    size_t     n = 0;

    assert_int_equal(atls_store_list_requests(fx->st, &ids, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(atls_store_request_renew(fx->st, "b.example", err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_request_renew(fx->st, "a.example", err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_list_requests(fx->st, &ids, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "a.example");
    assert_string_equal(ids[1], "b.example");
    atls_strv_free(ids, n);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_ranges),
        STORE_TEST(test_gaps),
        STORE_TEST(test_rotation),
        STORE_TEST(test_requests_listed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
