/*
 * The cluster's counters in each node's mirror (atls_mirror_counters_pull,
 * mirror_counters.c), two nodes on one real redis-server: what node A adds
 * is in A's mirror at once and in B's after B's heartbeat
 * (atls_mirror_join); a value in Redis that is not a JSON object is not
 * copied (the mirror's copy is kept, the key is named); nothing in Redis
 * leaves the mirror's copy alone.
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
#include "atls_mirror.h"
#include "atls_store.h"
#include "support/mirrorfx.h"

typedef mirrorfx_t fx_t;

/* The value of counter name as the status page reads it from the mirror
 * dir (a fs store), -1 when absent. */
static long long
mirror_counter(const char *dir, const char *name)
{
    char          err[256], **names = NULL;
    uint64_t     *values = NULL;
    size_t        n = 0, i;
    long long     v = -1;
    atls_store_t *fs = atls_store_fs_open(dir, err, sizeof(err));

    assert_non_null(fs);
    assert_int_equal(atls_store_counters_load(fs, &names, &values, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    for (i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0) {
            v = (long long) values[i];
        }
    }
    atls_strv_free(names, n);
    free(values);
    atls_store_close(fs);
    return v;
}

static void
test_counters_reach_every_mirror(void **state)
{
    fx_t *fx = *state;
    char  err[512];

    assert_int_equal(atls_mirror_counters_pull(fx->b, err, sizeof(err)), 0);
    /* A's own addition: in Redis and in A's mirror at once */
    assert_int_equal(atls_store_counter_add(atls_mirror_store(fx->a), "orders.ok", 2,
                                            err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(mirror_counter(fx->dir_a, "orders.ok"), 2);
    assert_int_equal(mirror_counter(fx->dir_b, "orders.ok"), -1);

    /* B's heartbeat copies it; a second one finds nothing new */
    assert_int_equal(atls_mirror_join(fx->b, err, sizeof(err)), 0);
    assert_int_equal(mirror_counter(fx->dir_b, "orders.ok"), 2);
    assert_int_equal(atls_mirror_counters_pull(fx->b, err, sizeof(err)), 0);

    /* B adds on top of A's: the sum, in B's mirror at once, in A's after a pull */
    assert_int_equal(atls_store_counter_add(atls_mirror_store(fx->b), "orders.ok", 1,
                                            err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(mirror_counter(fx->dir_b, "orders.ok"), 3);
    assert_int_equal(atls_mirror_counters_pull(fx->a, err, sizeof(err)), 1);
    assert_int_equal(mirror_counter(fx->dir_a, "orders.ok"), 3);
}

static void
test_untrusted_value_not_copied(void **state)
{
    fx_t *fx = *state;
    char  err[512];

    assert_int_equal(atls_store_counter_add(atls_mirror_store(fx->a), "orders.ok", 5,
                                            err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_mirror_counters_pull(fx->b, err, sizeof(err)), 1);
    assert_int_equal(mirror_counter(fx->dir_b, "orders.ok"), 5);

    /* whoever can write Redis writes a JSON array: B keeps its copy */
    freeReplyObject(redisfx_cmd(&fx->rfx, "SET", "t:{/counters.json}:v:counters.json",
                                "p[1,2]", NULL));
    assert_int_equal(atls_mirror_counters_pull(fx->b, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "t:{/counters.json}:v:counters.json"));
    assert_non_null(strstr(err, "not a JSON object"));
    assert_int_equal(mirror_counter(fx->dir_b, "orders.ok"), 5);

    /* a Redis that lost it: the copy stays */
    freeReplyObject(redisfx_cmd(&fx->rfx, "DEL", "t:{/counters.json}:v:counters.json", NULL));
    assert_int_equal(atls_mirror_counters_pull(fx->b, err, sizeof(err)), 0);
    assert_int_equal(mirror_counter(fx->dir_b, "orders.ok"), 5);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counters_reach_every_mirror, mirrorfx_setup,
                                        mirrorfx_teardown),
        cmocka_unit_test_setup_teardown(test_untrusted_value_not_copied, mirrorfx_setup,
                                        mirrorfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
