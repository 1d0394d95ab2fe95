/*
 * dns-01 hook runner: real hook scripts in a temporary directory.
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

static char tmpdir[256];

static int
setup_dir(void **state)
{
    (void) state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/atls-hook-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
remove_dir(void **state)
{
    char cmd[512];

    (void) state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
write_hook(const char *name, const char *body, mode_t mode, char *path, size_t len)
{
    FILE *f;

    snprintf(path, len, "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s", body);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static char *
read_file(const char *path)
{
    static char buf[4096];
    FILE       *f = fopen(path, "r");
    size_t      n;

    if (f == NULL) {
        return NULL;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void
test_hook_gets_argv_without_shell(void **state)
{
    char  hook[512], body[1024], args[400], pwned[400], expect[2048], why[256];
    const char *value;
    char *got;

    (void) state;
    snprintf(args, sizeof(args), "%s/args", tmpdir);
    snprintf(pwned, sizeof(pwned), "%s/pwned", tmpdir);
    snprintf(body, sizeof(body),
             "for a in \"$@\"; do printf '%%s\\n' \"$a\"; done > '%s'\nexit 0\n", args);
    write_hook("record", body, 0700, hook, sizeof(hook));

    /* if a shell ever saw this value, it would create `pwned` */
    {
        static char v[1200];

        snprintf(v, sizeof(v), "tok en;$(touch %s)`touch %s`", pwned, pwned);
        value = v;
    }
    why[0] = 'x';
    assert_int_equal(atls_dns_hook_run(hook, "setup", "_acme-challenge.example.com",
                                       value, why, sizeof(why)), 0);
    got = read_file(args);
    assert_non_null(got);
    snprintf(expect, sizeof(expect), "setup\n_acme-challenge.example.com\n%s\n", value);
    assert_string_equal(got, expect);
    assert_int_equal(access(pwned, F_OK), -1);

    assert_int_equal(atls_dns_hook_run(hook, "teardown", "_acme-challenge.b.example",
                                       "v2", why, sizeof(why)), 0);
    assert_string_equal(read_file(args), "teardown\n_acme-challenge.b.example\nv2\n");
}

static void
test_hook_failure_first_stderr_line(void **state)
{
    char hook[512], why[256];

    (void) state;
    write_hook("fail",
               "echo 'on stdout'\n"
               "echo 'zone example.com not managed here' >&2\n"
               "echo 'second line' >&2\n"
               "exit 3\n", 0700, hook, sizeof(hook));
    assert_int_equal(atls_dns_hook_run(hook, "setup", "_acme-challenge.example.com",
                                       "val", why, sizeof(why)), -1);
    assert_non_null(strstr(why, "zone example.com not managed here"));
    assert_non_null(strstr(why, "exit status 3"));
    assert_null(strstr(why, "second line"));
    assert_null(strstr(why, "on stdout"));
}

static void
test_hook_failure_without_message(void **state)
{
    char hook[512], why[256];

    (void) state;
    write_hook("silent", "exit 7\n", 0700, hook, sizeof(hook));
    assert_int_equal(atls_dns_hook_run(hook, "setup", "_acme-challenge.a.test", "v",
                                       why, sizeof(why)), -1);
    assert_non_null(strstr(why, "exit status 7"));
}

static void
test_hook_killed_by_signal(void **state)
{
    char hook[512], why[256];

    (void) state;
    write_hook("killed", "kill -9 $$\n", 0700, hook, sizeof(hook));
    assert_int_equal(atls_dns_hook_run(hook, "setup", "_acme-challenge.a.test", "v",
                                       why, sizeof(why)), -1);
    assert_non_null(strstr(why, "signal 9"));
}

static void
test_missing_hook(void **state)
{
    char hook[512], why[256];

    (void) state;
    snprintf(hook, sizeof(hook), "%s/does-not-exist", tmpdir);
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
    write_hook("noexec", "exit 0\n", 0600, hook, sizeof(hook));
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
    snprintf(path, sizeof(path), "%s/open-file", tmpdir);
    fd = open(path, O_WRONLY | O_CREAT, 0600);   /* deliberately without O_CLOEXEC */
    assert_true(fd > 2);
    snprintf(body, sizeof(body),
             "if [ -e /proc/$$/fd/%d ]; then echo 'fd %d leaked' >&2; exit 4; fi\n"
             "exit 0\n", fd, fd);
    write_hook("fds", body, 0700, hook, sizeof(hook));
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
    write_hook("bg", "sleep 3 &\nexit 0\n", 0700, hook, sizeof(hook));
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
        cmocka_unit_test(test_hook_killed_by_signal),
        cmocka_unit_test(test_missing_hook),
        cmocka_unit_test(test_hook_not_executable),
        cmocka_unit_test(test_hook_inherits_no_descriptors),
        cmocka_unit_test(test_hook_background_child),
    };

    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
