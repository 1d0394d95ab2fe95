/*
 * names-count (common/names_count.c): the registry's number of entries,
 * kept with its generation by every change, so that a server sizes its
 * shared memory at start-up without listing 100,000 names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include "atls.h"
#include "atls_names.h"
#include "names_int.h"
#include "store_int.h"
#include "support/namesfx.h"
#include "support/storefx.h"

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, storefx_setup, storefx_teardown)

static size_t
count_of(storefx_t *fx)
{
    size_t n = 12345;

    assert_int_equal(atls_names_count(fx->st, &n), ATLS_STORE_OK);
    return n;
}

static void
count_unknown(storefx_t *fx)
{
    size_t n = 12345;

    assert_int_equal(atls_names_count(fx->st, &n), ATLS_STORE_NOTFOUND);
    assert_int_equal(n, 0);
}

/* Every change keeps it: made entries count, re-activated and removed
 * ones (still in the registry) do not, purged ones are taken off. */
static void
test_count_kept_by_changes(void **state)
{
    storefx_t  *fx = *state;
    const char *three[] = { "a.example", "b.example", "c.example" };
    char        err[512];
    size_t      purged = 0;
    time_t      now = time(NULL);

    count_unknown(fx);          /* no registry yet: listed (nothing) */
    assert_int_equal(atls_names_add_many(fx->st, three, 3, NULL, "cli", "test", now, NULL,
                                         err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(count_of(fx), 3);
    namesfx_add(fx->st, "a.example", NULL, now);     /* active already */
    namesfx_add(fx->st, "d.example", NULL, now);
    assert_int_equal(count_of(fx), 4);
    assert_int_equal(atls_names_remove(fx->st, "b.example", now - 100, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(count_of(fx), 4);
    namesfx_add(fx->st, "b.example", NULL, now);     /* active again */
    assert_int_equal(count_of(fx), 4);
    assert_int_equal(atls_names_remove(fx->st, "c.example", now - 100, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_names_purge(fx->st, now, 10, NULL, &purged, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(purged, 1);
    assert_int_equal(count_of(fx), 3);
}

/* A change by a writer that does not keep it (an older CLI) makes it
 * unknown, and stays so: a later change cannot move what it does not know. */
static void
test_count_unknown_after_foreign_change(void **state)
{
    storefx_t *fx = *state;
    char       gen[32];

    namesfx_add(fx->st, "a.example", NULL, time(NULL));
    assert_int_equal(count_of(fx), 1);
    snprintf(gen, sizeof(gen), "%" PRIu64 "\n", atls_names_generation(fx->st) + 1);
    namesfx_put(fx, "names-generation", gen);
    count_unknown(fx);
    namesfx_add(fx->st, "b.example", NULL, time(NULL));
    count_unknown(fx);
}

/* A complete listing records what it found, at the generation it began
 * at, and only while the registry is still there. */
static void
test_count_settled_by_listing(void **state)
{
    storefx_t *fx = *state;
    uint64_t   g;
    char       gen[32];

    namesfx_add(fx->st, "a.example", NULL, time(NULL));
    namesfx_add(fx->st, "b.example", NULL, time(NULL));
    g = atls_names_generation(fx->st) + 1;
    snprintf(gen, sizeof(gen), "%" PRIu64 "\n", g);
    namesfx_put(fx, "names-generation", gen);
    count_unknown(fx);
    atls_names_count_settle(fx->st, g - 1, 9);      /* began before the change */
    count_unknown(fx);
    atls_names_count_settle(fx->st, g, 2);
    assert_int_equal(count_of(fx), 2);
    atls_names_count_settle(fx->st, g, 7);          /* known already: kept */
    assert_int_equal(count_of(fx), 2);
    namesfx_add(fx->st, "c.example", NULL, time(NULL));
    assert_int_equal(count_of(fx), 3);
}

/* The store owner's file, read by root at start-up: anything but two
 * decimal numbers, or a count past the bound, is not a count. */
static void
test_count_strict(void **state)
{
    storefx_t  *fx = *state;
    const char *bad[] = { "", "3", "3 1", "-3 1\n", "3 1\nx", "x3 1\n", "3 1 1\n",
                          "99999999999 1\n" };
    size_t      i;

    namesfx_add(fx->st, "a.example", NULL, time(NULL));    /* generation 1 */
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        namesfx_put(fx, "names-count", bad[i]);
        count_unknown(fx);
    }
    namesfx_put(fx, "names-count", "40 1\n");
    assert_int_equal(count_of(fx), 40);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_count_kept_by_changes),
        STORE_TEST(test_count_unknown_after_foreign_change),
        STORE_TEST(test_count_settled_by_listing),
        STORE_TEST(test_count_strict),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
