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
#include "support/hookscript.h"

/* every wait is bounded: this many rounds of 10 ms */
#define WAIT_ROUNDS 1000

/* Spawns argv and waits for its report like a host's event loop. */
static int
run_hook(char *const argv[], char *why, size_t whylen)
{
    atls_hook_proc_t hp;
    int              ok = -1, round;

    assert_int_equal(atls_hook_spawn(argv, &hp, why, whylen), 0);
    assert_true(hp.fd >= 0);
    assert_true((fcntl(hp.fd, F_GETFL) & O_NONBLOCK) != 0);
    assert_true((fcntl(hp.fd, F_GETFD) & FD_CLOEXEC) != 0);
    for (round = 0;; round++) {
        struct pollfd p = { hp.fd, POLLIN, 0 };

        assert_true(round < WAIT_ROUNDS);
        (void) poll(&p, 1, 10);
        if (atls_hook_read(&hp, &ok, why, whylen) == 1) {
            break;
        }
    }
    assert_int_equal(hp.fd, -1);
    return ok;
}

/* A script of body, run without arguments. */
static int
run_script(const char *name, const char *body, char *why, size_t whylen)
{
    char  hook[512];
    char *argv[2];

    hookscript_write(name, body, 0700, hook, sizeof(hook));
    argv[0] = hook;
    argv[1] = NULL;
    return run_hook(argv, why, whylen);
}

static void
wait_round(void)
{
    struct timespec ts = { 0, 10 * 1000000L };

    nanosleep(&ts, NULL);
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
    char why[256];

    (void) state;
    assert_int_equal(run_script("ok", "echo 'to stdout'\nexit 0\n", why, sizeof(why)), 1);
}

static void
test_exit_one_first_stderr_line(void **state)
{
    char why[256];

    (void) state;
    assert_int_equal(run_script("fail", "echo 'on stdout'\n"
                                "echo 'zone not managed here' >&2\n"
                                "echo 'second line' >&2\nexit 1\n", why, sizeof(why)), 0);
    assert_non_null(strstr(why, "exit status 1"));
    assert_non_null(strstr(why, "zone not managed here"));
    assert_null(strstr(why, "second line"));
    assert_null(strstr(why, "on stdout"));
}

static void
test_killed_by_signal(void **state)
{
    char why[256];

    (void) state;
    assert_int_equal(run_script("killed", "kill -9 $$\n", why, sizeof(why)), 0);
    assert_non_null(strstr(why, "killed by signal 9"));
}

static void
test_no_shell_interpretation(void **state)
{
    char  hook[512], args[400], pwned[400], value[1600], expect[2048];
    char  why[256];
    char *argv[4];

    (void) state;
    hookscript_recorder(hook, sizeof(hook), args, sizeof(args));
    hookscript_shell_bait(value, sizeof(value), pwned, sizeof(pwned));
    argv[0] = hook;
    argv[1] = "setup";
    argv[2] = value;
    argv[3] = NULL;
    assert_int_equal(run_hook(argv, why, sizeof(why)), 1);

    snprintf(expect, sizeof(expect), "setup\n%s\n", value);
    assert_string_equal(hookscript_read(args), expect);
    assert_int_equal(access(pwned, F_OK), -1);
}

static void
test_missing_program(void **state)
{
    atls_hook_proc_t hp;
    char             hook[512], why[256];
    char            *argv[2];

    (void) state;
    snprintf(hook, sizeof(hook), "%s/does-not-exist", hookscript_dir);
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
    long             sh_pid = 0, sleep_pid = 0;
    int              status, round;
    FILE            *f;

    (void) state;
    snprintf(pids, sizeof(pids), "%s/pids", hookscript_dir);
    snprintf(body, sizeof(body),
             "sleep 60 &\necho $$ $! > '%s.tmp'\nmv '%s.tmp' '%s'\nwait\n",
             pids, pids, pids);
    hookscript_write("sleeper", body, 0700, hook, sizeof(hook));
    argv[0] = hook;
    argv[1] = NULL;
    assert_int_equal(atls_hook_spawn(argv, &hp, why, sizeof(why)), 0);

    for (round = 0; (f = fopen(pids, "r")) == NULL; round++) {
        assert_true(round < WAIT_ROUNDS);
        wait_round();
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
    for (round = 0; !pid_gone((pid_t) sh_pid) || !pid_gone((pid_t) sleep_pid); round++) {
        assert_true(round < WAIT_ROUNDS);
        wait_round();
    }
}

/* The program has a session of its own, hence no controlling terminal: a
 * command a store names, run from an operator's shell by the CLI, must
 * not reach the operator's terminal (escape codes, TIOCSTI). */
static void
test_own_session(void **state)
{
    char  hook[512], sid[32], why[256];
    char *argv[3];

    (void) state;
    /* field 6 of /proc/PID/stat is the session id */
    hookscript_write("sid", "s=$(cut -d' ' -f6 /proc/$$/stat)\n"
                     "if [ \"$s\" = \"$1\" ]; then echo \"same session $s\" >&2; exit 1; fi\n"
                     "exit 0\n", 0700, hook, sizeof(hook));
    snprintf(sid, sizeof(sid), "%ld", (long) getsid(0));
    argv[0] = hook;
    argv[1] = sid;
    argv[2] = NULL;
    assert_int_equal(run_hook(argv, why, sizeof(why)), 1);
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
        cmocka_unit_test(test_own_session),
    };

    return cmocka_run_group_tests(tests, hookscript_setup, hookscript_teardown);
}
