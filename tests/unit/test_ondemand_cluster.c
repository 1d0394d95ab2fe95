/*
 * On-demand budgets on a cluster (docs/store.md, "Redis: names on
 * demand"), on one real redis-server: each node's gate keeps its budget
 * windows in its scheduler's store, the mirror's, so in Redis; an order
 * counted by one node counts against the limits of every node (the CA
 * counts the account's and the domain's orders whoever sends them), and a
 * cooldown after one node's failed order holds on the others.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_mirror.h"
#include "atls_ondemand.h"
#include "support/mirrorfx.h"

#define DIRECTORY  "https://ca.test/dir"

/* Node m's gate over its scheduler's store. */
static atls_od_t *
gate(atls_mirror_t *m, long per_min, long per_domain)
{
    atls_od_conf_t c;
    atls_od_t     *od;
    char           err[512];

    memset(&c, 0, sizeof(c));
    c.allow = (char *[]) { "*.example.com", "*.example.org" };
    c.n_allow = 2;
    c.orders_per_min = per_min;
    c.per_domain_week = per_domain;
    od = atls_od_new(&c, atls_mirror_store(m), err, sizeof(err));
    if (od == NULL) {
        fail_msg("atls_od_new: %s", err);
    }
    return od;
}

static int
take(atls_od_t *od, const char *name, char *why, size_t whylen)
{
    time_t retry_at = 0;

    why[0] = '\0';
    return atls_od_budget_take(od, name, DIRECTORY, time(NULL), why, whylen, &retry_at);
}

static void
test_windows_shared_by_nodes(void **state)
{
    mirrorfx_t *fx = *state;
    atls_od_t  *a = gate(fx->a, 2, 1), *b = gate(fx->b, 2, 1);
    char        why[256], path[300];

    /* node A orders a name of example.com: node B may not order another
     * one of that domain this week */
    assert_int_equal(take(a, "a.example.com", why, sizeof(why)), 0);
    assert_int_equal(take(b, "b.example.com", why, sizeof(why)), -1);
    assert_string_equal(why, "on_demand_per_domain_week 1 reached for example.com");
    /* and the minute's two orders are one from each node */
    assert_int_equal(take(b, "b.example.org", why, sizeof(why)), 0);
    assert_int_equal(take(a, "c.example.net.example.org", why, sizeof(why)), -1);
    assert_string_equal(why, "on_demand_orders_per_min 2 reached");
    /* Redis's, not a file of either node */
    snprintf(path, sizeof(path), "%s/ondemand/budget.json", fx->dir_a);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof(path), "%s/ondemand/budget.json", fx->dir_b);
    assert_int_not_equal(access(path, F_OK), 0);
    atls_od_free(a);
    atls_od_free(b);
}

static void
test_cooldown_shared_by_nodes(void **state)
{
    mirrorfx_t *fx = *state;
    atls_od_t  *a = gate(fx->a, 10, 10), *b = gate(fx->b, 10, 10);
    char        why[256];

    assert_int_equal(take(a, "fail.example.com", why, sizeof(why)), 0);
    atls_od_failed(a, "fail.example.com", time(NULL));
    /* asked for on the other node: not ordered again before the cooldown */
    assert_int_equal(take(b, "fail.example.com", why, sizeof(why)), -1);
    assert_non_null(strstr(why, "on_demand_cooldown"));
    atls_od_free(a);
    atls_od_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_windows_shared_by_nodes, mirrorfx_setup,
                                        mirrorfx_teardown),
        cmocka_unit_test_setup_teardown(test_cooldown_shared_by_nodes, mirrorfx_setup,
                                        mirrorfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
