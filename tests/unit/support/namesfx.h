/* Helpers of the dynamic names tests (test_names.c, test_names_api.c). */
#ifndef NAMESFX_H
#define NAMESFX_H

#include <time.h>
#include "atls_store.h"
#include "support/storefx.h"

/* Registers name for home (source "cli"); fails the test otherwise. */
void namesfx_add(atls_store_t *st, const char *name, const char *home, time_t now);
/* Writes text to the file p (0644), as a hostile worker would. */
void namesfx_write(const char *p, const char *text);
/* Puts text at the store path rel through the store. */
void namesfx_put(storefx_t *fx, const char *rel, const char *text);
/* 1 when rel exists in the store (not following a link). */
int namesfx_exists(storefx_t *fx, const char *rel);

#endif
