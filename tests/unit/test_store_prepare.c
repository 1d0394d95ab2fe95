/*
 * atls_store_fs_prepare at scale: after a complete walk, the next one does
 * not open entries whose owner and mode are right nor walk directories
 * unchanged since (the `prepared` stamp), yet still fixes what a root
 * process added meanwhile.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_store.h"
#include "support/storefx.h"

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, storefx_setup, storefx_teardown)

static void
put_ok(atls_store_t *st, const char *path, const char *data, int priv)
{
    char err[256];

    assert_int_equal(st->ops->put(st, path, data, strlen(data), priv, err, sizeof(err)),
                     ATLS_STORE_OK);
}

/* A file made the way a root-run tool that forgot the store's rules would. */
static void
plant(storefx_t *fx, const char *rel, mode_t mode)
{
    int fd = open(storefx_path(fx, rel), O_WRONLY | O_CREAT | O_TRUNC, mode);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x", 1), 1);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void
test_second_walk_fixes_what_changed(void **state)
{
    storefx_t  *fx = *state;
    struct stat sb;
    char        err[256];

    put_ok(fx->st, "certs/a.example/meta.json", "{}", 0);
    put_ok(fx->st, "certs/b.example/meta.json", "{}", 0);
    assert_int_equal(atls_store_fs_prepare(fx->root, -1, -1, err, sizeof(err)), 0);
    /* the stamp of a complete walk */
    assert_int_equal(stat(storefx_path(fx, "prepared"), &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sb.st_mode & 07777, 0644);

    /* one second on, so that ctimes are later than the walk's start */
    sleep(1);
    plant(fx, "certs/b.example/ec256.pem", 0644);   /* a key too open */
    plant(fx, "certs/new.example", 0666);            /* not even a directory */
    assert_int_equal(atls_store_fs_prepare(fx->root, -1, -1, err, sizeof(err)), 0);
    assert_int_equal(storefx_mode(storefx_path(fx, "certs/b.example/ec256.pem")), 0600);
    assert_int_equal(storefx_mode(storefx_path(fx, "certs/new.example")), 0644);
    assert_int_equal(storefx_mode(storefx_path(fx, "certs/a.example/meta.json")), 0644);
}

/* A stamp that is not a regular file, or says nothing, makes a full walk. */
static void
test_bad_stamp_full_walk(void **state)
{
    storefx_t *fx = *state;
    char       err[256];

    put_ok(fx->st, "certs/a.example/meta.json", "{}", 0);
    assert_int_equal(symlink("/etc/hostname", storefx_path(fx, "prepared")), 0);
    sleep(1);
    assert_int_equal(chmod(storefx_path(fx, "certs/a.example"), 0755), 0);
    assert_int_equal(atls_store_fs_prepare(fx->root, -1, -1, err, sizeof(err)), 0);
    assert_int_equal(storefx_mode(storefx_path(fx, "certs/a.example")), 0700);
    /* the link was replaced by a stamp of the store's own */
    {
        struct stat sb;

        assert_int_equal(lstat(storefx_path(fx, "prepared"), &sb), 0);
        assert_true(S_ISREG(sb.st_mode));
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_second_walk_fixes_what_changed),
        STORE_TEST(test_bad_stamp_full_walk),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
