/*
 * dns-01 hook runner (the blocking wrapper over hook.c): real hook scripts
 * in a temporary directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "atls.h"
#include "atls_acme.h"
#include "atls_acme_drive.h"
#include "support/hookscript.h"

static void
test_hook_gets_argv_without_shell(void **state)
{
    char  hook[512], args[400], pwned[400], value[1600], expect[2048], why[256];
    char *got;

    (void) state;
    hookscript_recorder(hook, sizeof(hook), args, sizeof(args));
    hookscript_shell_bait(value, sizeof(value), pwned, sizeof(pwned));
    why[0] = 'x';
    assert_int_equal(atls_dns_hook_run(hook, "setup", "_acme-challenge.example.com",
                                       value, why, sizeof(why)), 0);
    got = hookscript_read(args);
    assert_non_null(got);
    snprintf(expect, sizeof(expect), "setup\n_acme-challenge.example.com\n%s\n", value);
    assert_string_equal(got, expect);
    assert_int_equal(access(pwned, F_OK), -1);

    assert_int_equal(atls_dns_hook_run(hook, "teardown", "_acme-challenge.b.example",
                                       "v2", why, sizeof(why)), 0);
    assert_string_equal(hookscript_read(args), "teardown\n_acme-challenge.b.example\nv2\n");
}

static void
test_hook_failure_first_stderr_line(void **state)
{
    char hook[512], why[256], expect[1024];

    (void) state;
    hookscript_write("fail", "echo 'zone example.com not managed here' >&2\nexit 3\n",
                     0700, hook, sizeof(hook));
    assert_int_equal(atls_dns_hook_run(hook, "setup", "_acme-challenge.example.com",
                                       "val", why, sizeof(why)), -1);
    /* the run's report (its first lines tested in test_hook.c), named */
    snprintf(expect, sizeof(expect), "dns hook %s setup _acme-challenge.example.com: "
             "exit status 3: zone example.com not managed here", hook);
    assert_string_equal(why, expect);
}

static void
test_hook_failure_without_message(void **state)
{
    char hook[512], why[256];

    (void) state;
    hookscript_write("silent", "exit 7\n", 0700, hook, sizeof(hook));
    assert_int_equal(atls_dns_hook_run(hook, "setup", "_acme-challenge.a.test", "v",
                                       why, sizeof(why)), -1);
    assert_non_null(strstr(why, "exit status 7"));
}

static void
test_missing_hook(void **state)
{
    char hook[512], why[256];

    (void) state;
    snprintf(hook, sizeof(hook), "%s/does-not-exist", hookscript_dir);
    assert_int_equal(atls_dns_hook_run(hook, "setup", "_acme-challenge.a.test", "v",
                                       why, sizeof(why)), -1);
    assert_non_null(strstr(why, hook));
    assert_non_null(strstr(why, "No such file"));

    assert_int_equal(atls_dns_hook_run(NULL, "setup", "_acme-challenge.a.test", "v",
                                       why, sizeof(why)), -1);
    assert_true(strlen(why) > 0);
}

static void
test_hook_not_executable(void **state)
{
    char hook[512], why[256];

    (void) state;
    hookscript_write("noexec", "exit 0\n", 0600, hook, sizeof(hook));
    assert_int_equal(atls_dns_hook_run(hook, "setup", "_acme-challenge.a.test", "v",
                                       why, sizeof(why)), -1);
    assert_non_null(strstr(why, "not an executable"));
}

/* The host's descriptors (sockets, lock files) must not leak into the hook. */
static void
test_hook_inherits_no_descriptors(void **state)
{
    char hook[512], body[256], path[512], why[256];
    int  fd;

    (void) state;
    snprintf(path, sizeof(path), "%s/open-file", hookscript_dir);
    fd = open(path, O_WRONLY | O_CREAT, 0600);   /* deliberately without O_CLOEXEC */
    assert_true(fd > 2);
    snprintf(body, sizeof(body),
             "if [ -e /proc/$$/fd/%d ]; then echo 'fd %d leaked' >&2; exit 4; fi\n"
             "exit 0\n", fd, fd);
    hookscript_write("fds", body, 0700, hook, sizeof(hook));
    assert_int_equal(atls_dns_hook_run(hook, "setup", "_acme-challenge.a.test", "v",
                                       why, sizeof(why)), 0);
    close(fd);
}

/* A hook that leaves a background process holding stderr still finishes
 * when the hook itself exits. */
static void
test_hook_background_child(void **state)
{
    char hook[512], why[256];

    (void) state;
    hookscript_write("bg", "sleep 3 &\nexit 0\n", 0700, hook, sizeof(hook));
    assert_int_equal(atls_dns_hook_run(hook, "setup", "_acme-challenge.a.test", "v",
                                       why, sizeof(why)), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hook_gets_argv_without_shell),
        cmocka_unit_test(test_hook_failure_first_stderr_line),
        cmocka_unit_test(test_hook_failure_without_message),
        cmocka_unit_test(test_missing_hook),
        cmocka_unit_test(test_hook_not_executable),
        cmocka_unit_test(test_hook_inherits_no_descriptors),
        cmocka_unit_test(test_hook_background_child),
    };

    return cmocka_run_group_tests(tests, hookscript_setup, hookscript_teardown);
}
