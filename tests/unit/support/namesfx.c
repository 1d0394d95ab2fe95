/* Helpers of the dynamic names tests. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_names.h"
#include "support/namesfx.h"

void
namesfx_add(atls_store_t *st, const char *name, const char *home, time_t now)
{
    char err[512] = "";

    if (atls_names_add(st, name, home, "cli", "uid 0 (root)", now, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        fail_msg("add %s: %s", name, err);
    }
}


void
namesfx_write(const char *p, const char *text)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
    close(fd);
}


void
namesfx_put(storefx_t *fx, const char *rel, const char *text)
{
    char err[256];

    assert_int_equal(fx->st->ops->put(fx->st, rel, text, strlen(text), 0, err,
                                      sizeof(err)), ATLS_STORE_OK);
}


int
namesfx_exists(storefx_t *fx, const char *rel)
{
    struct stat sb;

    return lstat(storefx_path(fx, rel), &sb) == 0;
}
