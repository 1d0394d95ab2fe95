/*
 * atls_store_fs_prepare at scale: after a complete walk, the next one does
 * not open entries whose owner and mode are right nor walk directories
 * unchanged since (the `prepared` stamp), yet still fixes what a root
 * process added meanwhile.  The registry of names (`names/`) is entered
 * only while a store made by root is handed over: root's writers write it
 * as the owner, so an `autotls add` costs the next start no walk of it.
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
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_names.h"
#include "atls_store.h"
#include "support/storefx.h"

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, storefx_setup, storefx_teardown)
/* nobody: the worker the hand-over tests give the store to (as root) */
#define WORKER_UID 65534
#define WORKER_GID 65534

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

/* Runs prepare as root handing the store to the worker (skips without root). */
static void
hand_over(storefx_t *fx)
{
    char err[256];

    if (geteuid() != 0) {
        skip();
    }
    assert_int_equal(atls_store_fs_prepare(fx->root, WORKER_UID, WORKER_GID, err,
                                           sizeof(err)), 0);
}

/* rel is still an entry of type fmt owned by root: left alone. */
static void
assert_left_alone(storefx_t *fx, const char *rel, mode_t fmt)
{
    struct stat sb;

    assert_int_equal(lstat(storefx_path(fx, rel), &sb), 0);
    assert_int_equal(sb.st_mode & S_IFMT, fmt);
    assert_int_equal(sb.st_uid, 0);
}

static uid_t
owner_of(const char *p)
{
    struct stat sb;

    assert_int_equal(lstat(p, &sb), 0);
    return sb.st_uid;
}

/* Root (the CLI, a master) registering a name in a store the worker owns
 * writes the entry as the owner: nothing in names/ is left for the walk. */
static void
test_root_writes_names_as_owner(void **state)
{
    storefx_t    *fx = *state;
    atls_store_t *st;
    struct stat   sb;
    char          err[256];

    hand_over(fx);
    st = atls_store_fs_open(fx->root, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(atls_names_add(st, "new.example", "home", "cli", "uid 0 (root)",
                                    time(NULL), err, sizeof(err)), ATLS_STORE_OK);
    atls_store_close(st);
    assert_int_equal(stat(storefx_path(fx, "names/new.example.json"), &sb), 0);
    assert_int_equal(sb.st_uid, WORKER_UID);
    assert_int_equal(sb.st_gid, WORKER_GID);
    assert_int_equal(sb.st_mode & 07777, 0644);
    assert_int_equal(owner_of(storefx_path(fx, "names")), WORKER_UID);
}

/* A store made by root: the first hand-over walks names/ like the rest
 * (entries handed over, set-id bits off, links and FIFOs left alone). */
static void
test_first_handover_walks_names(void **state)
{
    storefx_t *fx = *state;

    put_ok(fx->st, "names/a.example.json", "{}", 0);
    plant(fx, "names/b.example.json", 0600);
    plant(fx, "names/setid.json", 06755);
    assert_int_equal(symlink("/etc/hostname", storefx_path(fx, "names/link.json")), 0);
    assert_int_equal(mkfifo(storefx_path(fx, "names/fifo.json"), 0644), 0);
    assert_int_equal(owner_of(storefx_path(fx, "names")), 0);

    hand_over(fx);
    assert_int_equal(owner_of(storefx_path(fx, "names")), WORKER_UID);
    assert_int_equal(owner_of(storefx_path(fx, "names/a.example.json")), WORKER_UID);
    assert_int_equal(owner_of(storefx_path(fx, "names/b.example.json")), WORKER_UID);
    assert_int_equal(owner_of(storefx_path(fx, "names/setid.json")), WORKER_UID);
    assert_int_equal(storefx_mode(storefx_path(fx, "names/setid.json")), 0755);
    assert_left_alone(fx, "names/link.json", S_IFLNK);
    assert_left_alone(fx, "names/fifo.json", S_IFIFO);
}

/* Handed over, names/ is not entered again, however its entries changed
 * (one fstatat for the directory, none per name), while the rest of the
 * store is walked as before and names/ itself is still checked. */
static void
test_names_not_walked_after_handover(void **state)
{
    storefx_t *fx = *state;

    put_ok(fx->st, "names/a.example.json", "{}", 0);
    hand_over(fx);
    assert_int_equal(owner_of(storefx_path(fx, "names/a.example.json")), WORKER_UID);

    sleep(1);   /* ctimes later than the walk's start */
    plant(fx, "names/late.json", 0666);                 /* root's, too open */
    plant(fx, "certs/late.pem", 0644);                  /* a key, too open */
    assert_int_equal(chmod(storefx_path(fx, "names"), 0755), 0);
    hand_over(fx);
    /* names/ not entered: root did not touch the entry */
    assert_left_alone(fx, "names/late.json", S_IFREG);
    assert_int_equal(storefx_mode(storefx_path(fx, "names/late.json")), 0666);
    /* but the directory itself and the rest of the store were fixed */
    assert_int_equal(storefx_mode(storefx_path(fx, "names")), 0700);
    assert_int_equal(owner_of(storefx_path(fx, "names")), WORKER_UID);
    assert_int_equal(storefx_mode(storefx_path(fx, "certs/late.pem")), 0600);
    assert_int_equal(owner_of(storefx_path(fx, "certs/late.pem")), WORKER_UID);
}

/* names/ swapped for a link to the outside: left alone, never followed. */
static void
test_names_link_left_alone(void **state)
{
    storefx_t *fx = *state;
    char       outside[128], target[160];

    snprintf(outside, sizeof(outside), "%s/outside", fx->dir);
    assert_int_equal(mkdir(outside, 0755), 0);
    snprintf(target, sizeof(target), "%s/f", outside);
    {
        int fd = open(target, O_WRONLY | O_CREAT, 0600);

        assert_true(fd >= 0);
        close(fd);
    }
    assert_int_equal(symlink(outside, storefx_path(fx, "names")), 0);
    hand_over(fx);
    assert_left_alone(fx, "names", S_IFLNK);
    assert_int_equal(owner_of(outside), 0);
    assert_int_equal(owner_of(target), 0);
    assert_int_equal(storefx_mode(target), 0600);
    assert_int_equal(storefx_mode(outside), 0755);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_second_walk_fixes_what_changed),
        STORE_TEST(test_bad_stamp_full_walk),
        STORE_TEST(test_root_writes_names_as_owner),
        STORE_TEST(test_first_handover_walks_names),
        STORE_TEST(test_names_not_walked_after_handover),
        STORE_TEST(test_names_link_left_alone),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
