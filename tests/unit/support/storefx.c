/* A fresh filesystem store in a temp directory, for the store tests. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "support/storefx.h"
#include "support/tmptree.h"

int
storefx_setup(void **state)
{
    storefx_t *fx = calloc(1, sizeof(*fx));
    char       err[512];

    if (fx == NULL) {
        return -1;
    }
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/atls-store-XXXXXX");
    if (mkdtemp(fx->dir) == NULL) {
        free(fx);
        return -1;
    }
    snprintf(fx->root, sizeof(fx->root), "%s/store", fx->dir);
    fx->st = atls_store_fs_open(fx->root, err, sizeof(err));
    if (fx->st == NULL) {
        fprintf(stderr, "open: %s\n", err);
        tmptree_rm(fx->dir);
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

int
storefx_teardown(void **state)
{
    storefx_t *fx = *state;

    atls_store_close(fx->st);
    tmptree_rm(fx->dir);
    free(fx);
    return 0;
}

char *
storefx_path(storefx_t *fx, const char *rel)
{
    static char buf[512];

    snprintf(buf, sizeof(buf), "%s/%s", fx->root, rel);
    return buf;
}

mode_t
storefx_mode(const char *p)
{
    struct stat sb;

    assert_int_equal(stat(p, &sb), 0);
    return sb.st_mode & 07777;
}
