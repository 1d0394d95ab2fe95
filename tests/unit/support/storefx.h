/* A fresh filesystem store in a temp directory, for the store tests. */
#ifndef ATLS_TEST_STOREFX_H
#define ATLS_TEST_STOREFX_H

#include <sys/types.h>
#include "atls_store.h"

typedef struct {
    char          dir[64];   /* the temp parent */
    char          root[96];  /* the store root, inside it */
    atls_store_t *st;
} storefx_t;

/* cmocka setup/teardown: *state is a storefx_t. */
int storefx_setup(void **state);
int storefx_teardown(void **state);

/* "<root>/<rel>" (a static buffer, valid until the next call). */
char *storefx_path(storefx_t *fx, const char *rel);

/* The permission bits of p (asserts it exists). */
mode_t storefx_mode(const char *p);

#endif
