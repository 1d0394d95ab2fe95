/*
 * The registry of names across a Redis store and nodes' mirrors, for the
 * mirror's registry tests (test_mirror_names*.c).
 */
#ifndef ATLS_TEST_MIRRORNAMES_H
#define ATLS_TEST_MIRRORNAMES_H

#include <stddef.h>
#include "support/mirrorfx.h"

/* A plain Redis store over the fixture's Redis, as the CLI opens with
 * --store redis:// (cmocka failure when it does not open). */
atls_store_t *mirrornames_cli_store(mirrorfx_t *fx);
/* The names registered through st (cmocka failure when not). */
void mirrornames_add(atls_store_t *st, const char *const *names, size_t n);
/* The name's state in m's mirror directory (the workers' view); -1: none. */
int mirrornames_state(atls_mirror_t *m, const char *name);

#endif
