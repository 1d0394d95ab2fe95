/*
 * Background hook runs (hook.c): real scripts in a temporary directory,
 * watched through the report pipe the way an event loop would.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "atls_hook.h"

#define WAIT_MS 10000

static char tmpdir[256];

static int
setup_dir(void **state)
{
    (void) state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/atls-bghook-XXXXXX");
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
write_hook(const char *name, const char *body, char *path, size_t len)
{
    FILE *f;

    snprintf(path, len, "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s", body);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0700), 0);
}

static long
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Spawns argv and waits for its report like a host's event loop. */
static int
run_hook(char *const argv[], char *why, size_t whylen)
{
    atls_hook_proc_t hp;
    long             deadline = mono_ms() + WAIT_MS;
    int              ok = -1;

    assert_int_equal(atls_hook_spawn(argv, &hp, why, whylen), 0);
    assert_true(hp.fd >= 0);
    assert_true((fcntl(hp.fd, F_GETFL) & O_NONBLOCK) != 0);
    assert_true((fcntl(hp.fd, F_GETFD) & FD_CLOEXEC) != 0);
    for (;;) {
        struct pollfd p = { hp.fd, POLLIN, 0 };

        assert_true(mono_ms() < deadline);
        (void) poll(&p, 1, 100);
        if (atls_hook_read(&hp, &ok, why, whylen) == 1) {
            break;
        }
    }
    assert_int_equal(hp.fd, -1);
    return ok;
}

/* 1 when pid no longer runs (gone, or a zombie nobody reaped yet). */
static int
pid_gone(pid_t pid)
{
    char  path[64], buf[256], *p;
    FILE *f;
    int   zombie = 0;

    if (kill(pid, 0) != 0 && errno == ESRCH) {
        return 1;
    }
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long) pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return 1;
    }
    if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL) {
        zombie = p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
    }
    fclose(f);
    return zombie;
}

static void
test_exit_zero(void **state)
{
    char  hook[512], why[256];
    char *argv[2];

    (void) state;
    write_hook("ok", "echo 'to stdout'\nexit 0\n", hook, sizeof(hook));
    argv[0] = hook;
    argv[1] = NULL;
    assert_int_equal(run_hook(argv, why, sizeof(why)), 1);
}

static void
test_exit_one_first_stderr_line(void **state)
{
    char  hook[512], why[256];
    char *argv[2];

    (void) state;
    write_hook("fail", "echo 'on stdout'\n"
               "echo 'zone not managed here' >&2\necho 'second line' >&2\nexit 1\n",
               hook, sizeof(hook));
    argv[0] = hook;
    argv[1] = NULL;
    assert_int_equal(run_hook(argv, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "exit status 1"));
    assert_non_null(strstr(why, "zone not managed here"));
    assert_null(strstr(why, "second line"));
    assert_null(strstr(why, "on stdout"));
}

static void
test_killed_by_signal(void **state)
{
    char  hook[512], why[256];
    char *argv[2];

    (void) state;
    write_hook("killed", "kill -9 $$\n", hook, sizeof(hook));
    argv[0] = hook;
    argv[1] = NULL;
    assert_int_equal(run_hook(argv, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "killed by signal 9"));
}

static void
test_no_shell_interpretation(void **state)
{
    char  hook[512], body[1024], args[400], pwned[400], value[1600], expect[2048];
    char  why[256], got[2048];
    char *argv[4];
    FILE *f;
    size_t n;

    (void) state;
    snprintf(args, sizeof(args), "%s/args", tmpdir);
    snprintf(pwned, sizeof(pwned), "%s/pwned", tmpdir);
    snprintf(body, sizeof(body),
             "for a in \"$@\"; do printf '%%s\\n' \"$a\"; done > '%s'\n", args);
    write_hook("record", body, hook, sizeof(hook));
    snprintf(value, sizeof(value), "a b;$(touch %s)`touch %s` > %s", pwned, pwned, pwned);
    argv[0] = hook;
    argv[1] = "setup";
    argv[2] = value;
    argv[3] = NULL;
    assert_int_equal(run_hook(argv, why, sizeof(why)), 1);

    f = fopen(args, "r");
    assert_non_null(f);
    n = fread(got, 1, sizeof(got) - 1, f);
    got[n] = '\0';
    fclose(f);
    snprintf(expect, sizeof(expect), "setup\n%s\n", value);
    assert_string_equal(got, expect);
    assert_int_equal(access(pwned, F_OK), -1);
}

static void
test_missing_program(void **state)
{
    atls_hook_proc_t hp;
    char             hook[512], why[256];
    char            *argv[2];

    (void) state;
    snprintf(hook, sizeof(hook), "%s/does-not-exist", tmpdir);
    argv[0] = hook;
    argv[1] = NULL;
    assert_int_equal(atls_hook_spawn(argv, &hp, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "No such file"));
    argv[0] = "sh";     /* execve does no PATH search */
    assert_int_equal(atls_hook_spawn(argv, &hp, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "absolute"));
}

/* Killing a hook ends the program and what it started, and reaps. */
static void
test_kill_leaves_nothing(void **state)
{
    atls_hook_proc_t hp;
    char             hook[512], body[1400], pids[400], why[256];
    char            *argv[2];
    long             deadline, sh_pid = 0, sleep_pid = 0;
    int              status;
    FILE            *f;

    (void) state;
    snprintf(pids, sizeof(pids), "%s/pids", tmpdir);
    snprintf(body, sizeof(body),
             "sleep 60 &\necho $$ $! > '%s.tmp'\nmv '%s.tmp' '%s'\nwait\n",
             pids, pids, pids);
    write_hook("sleeper", body, hook, sizeof(hook));
    argv[0] = hook;
    argv[1] = NULL;
    assert_int_equal(atls_hook_spawn(argv, &hp, why, sizeof(why)), 0);

    deadline = mono_ms() + WAIT_MS;
    while ((f = fopen(pids, "r")) == NULL) {
        struct timespec ts = { 0, 10 * 1000000L };

        assert_true(mono_ms() < deadline);
        nanosleep(&ts, NULL);
    }
    assert_int_equal(fscanf(f, "%ld %ld", &sh_pid, &sleep_pid), 2);
    fclose(f);
    assert_false(pid_gone((pid_t) sh_pid));
    assert_false(pid_gone((pid_t) sleep_pid));

    {
        pid_t reporter = hp.pid;

        atls_hook_kill(&hp);
        assert_int_equal(hp.fd, -1);
        /* the reporting child was reaped by the kill */
        assert_int_equal(waitpid(reporter, &status, WNOHANG), -1);
        assert_int_equal(errno, ECHILD);
    }
    deadline = mono_ms() + WAIT_MS;
    while (!pid_gone((pid_t) sh_pid) || !pid_gone((pid_t) sleep_pid)) {
        struct timespec ts = { 0, 10 * 1000000L };

        assert_true(mono_ms() < deadline);
        nanosleep(&ts, NULL);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_zero),
        cmocka_unit_test(test_exit_one_first_stderr_line),
        cmocka_unit_test(test_killed_by_signal),
        cmocka_unit_test(test_no_shell_interpretation),
        cmocka_unit_test(test_missing_program),
        cmocka_unit_test(test_kill_leaves_nothing),
    };

    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
