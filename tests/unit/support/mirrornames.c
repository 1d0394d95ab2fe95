/*
 * The registry of names across a Redis store and nodes' mirrors, for the
 * mirror's registry tests (test_mirror_names*.c).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>
#include "atls_names.h"
#include "support/mirrornames.h"

atls_store_t *
mirrornames_cli_store(mirrorfx_t *fx)
{
    char          err[512];
    atls_store_t *st = atls_store_redis_open(&fx->conf, err, sizeof(err));

    if (st == NULL) {
        fail_msg("redis store: %s", err);
    }
    return st;
}

void
mirrornames_add(atls_store_t *st, const char *const *names, size_t n)
{
    char err[512];

    if (atls_names_add_many(st, names, n, NULL, "cli", "test", time(NULL), NULL, err,
                            sizeof(err)) != ATLS_STORE_OK)
    {
        fail_msg("add: %s", err);
    }
}

int
mirrornames_state(atls_mirror_t *m, const char *name)
{
    atls_name_entry_t e;
    char              err[512];
    int               state;

    if (atls_names_get(atls_mirror_fs(m), name, &e, err, sizeof(err)) != ATLS_STORE_OK) {
        return -1;
    }
    state = (int) e.state;
    atls_name_entry_free(&e);
    return state;
}
