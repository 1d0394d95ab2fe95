/*
 * dns-01 through an operator's hook program:
 *   HOOK setup|teardown _acme-challenge.NAME TXTVALUE
 *
 * Run with fork/execve and no shell, so that a name or value can never be
 * interpreted as shell syntax.  The hook's stderr is read back so that the
 * operator sees its own message in our error; stdout goes to /dev/null.
 * Every descriptor of the host (listening sockets, the store lock) is closed
 * in the child.
 */
#define _GNU_SOURCE  /* pipe2, close_range */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "atls.h"
#include "atls_acme.h"

#define DNS_HOOK_TIMEOUT_S  120
#define DNS_HOOK_MAX_ERR    2048

extern char **environ;

static long
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Only async-signal-safe calls between fork and execve. */
static void
child_exec(int errfd, int nullfd, char *const argv[])
{
    sigset_t set;
    int      fd, maxfd;

    sigemptyset(&set);
    sigprocmask(SIG_SETMASK, &set, NULL);
    signal(SIGPIPE, SIG_DFL);

    if (dup2(nullfd, STDIN_FILENO) < 0
        || dup2(nullfd, STDOUT_FILENO) < 0
        || dup2(errfd, STDERR_FILENO) < 0)
    {
        _exit(127);
    }
    maxfd = (int) sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536) {
        maxfd = 65536;
    }
#ifdef __linux__
    if (close_range(3, ~0U, 0) != 0)
#endif
    {
        for (fd = 3; fd < maxfd; fd++) {
            close(fd);
        }
    }
    execve(argv[0], argv, environ);

    {
        const char *msg = "cannot execute hook: ";
        const char *why = strerror(errno);   /* not AS-safe in theory; glibc's is a table lookup */

        (void) !write(STDERR_FILENO, msg, strlen(msg));
        (void) !write(STDERR_FILENO, why, strlen(why));
        (void) !write(STDERR_FILENO, "\n", 1);
    }
    _exit(127);
}

static void
first_line(const char *buf, size_t len, char *out, size_t outlen)
{
    size_t i = 0, n;

    /* skip leading blank lines */
    while (i < len && (buf[i] == '\n' || buf[i] == '\r' || buf[i] == ' ' || buf[i] == '\t')) {
        i++;
    }
    n = i;
    while (n < len && buf[n] != '\n' && buf[n] != '\r') {
        n++;
    }
    snprintf(out, outlen, "%.*s", (int) (n - i), buf + i);
}

int
atls_dns_hook_run(const char *hook, const char *action, const char *dns_name,
                  const char *value, char *why, size_t whylen)
{
    char        *argv[5];
    char         errbuf[DNS_HOOK_MAX_ERR];
    char         line[512];
    size_t       errlen = 0;
    int          pfd[2] = { -1, -1 };
    int          nullfd = -1;
    int          status = 0, reaped = 0, timed_out = 0, eof = 0;
    long         deadline;
    pid_t        pid;
    struct stat  sb;

    if (why != NULL && whylen > 0) {
        why[0] = '\0';
    }
    if (hook == NULL || hook[0] == '\0' || action == NULL || dns_name == NULL
        || value == NULL)
    {
        snprintf(why, whylen, "dns hook: no hook command configured");
        return -1;
    }
    /* execve does no PATH search; demand an explicit program path so the
     * failure message is about the configuration, not about exec. */
    if (stat(hook, &sb) != 0) {
        snprintf(why, whylen, "dns hook %s: %s", hook, strerror(errno));
        return -1;
    }
    if (!S_ISREG(sb.st_mode) || access(hook, X_OK) != 0) {
        snprintf(why, whylen, "dns hook %s: not an executable file", hook);
        return -1;
    }

    argv[0] = (char *) hook;
    argv[1] = (char *) action;
    argv[2] = (char *) dns_name;
    argv[3] = (char *) value;
    argv[4] = NULL;

    if (pipe2(pfd, O_CLOEXEC) != 0) {
        snprintf(why, whylen, "dns hook: pipe: %s", strerror(errno));
        return -1;
    }
    nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nullfd < 0) {
        snprintf(why, whylen, "dns hook: /dev/null: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }

    pid = fork();
    if (pid < 0) {
        snprintf(why, whylen, "dns hook: fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        close(nullfd);
        return -1;
    }
    if (pid == 0) {
        child_exec(pfd[1], nullfd, argv);
    }
    close(pfd[1]);
    close(nullfd);

    deadline = mono_ms() + DNS_HOOK_TIMEOUT_S * 1000L;

    /*
     * Read stderr until EOF and the child has exited.  The child is also
     * polled for exit, because a background grandchild could hold the pipe
     * open long after the hook itself is done.
     */
    while (!reaped) {
        long left = deadline - mono_ms();

        if (left <= 0) {
            timed_out = 1;
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            reaped = 1;
            break;
        }
        if (!eof) {
            struct pollfd p = { .fd = pfd[0], .events = POLLIN };
            int           r = poll(&p, 1, left < 100 ? (int) left : 100);

            if (r < 0 && errno != EINTR) {
                eof = 1;
            } else if (r > 0) {
                char    tmp[512];
                ssize_t got = read(pfd[0], tmp, sizeof(tmp));

                if (got > 0) {
                    size_t room = sizeof(errbuf) - 1 - errlen;
                    size_t take = (size_t) got < room ? (size_t) got : room;

                    memcpy(errbuf + errlen, tmp, take);
                    errlen += take;
                } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                    eof = 1;
                }
            }
        } else {
            struct timespec ts = { 0, 50 * 1000000L };

            nanosleep(&ts, NULL);
        }

        {
            pid_t w = waitpid(pid, &status, WNOHANG);

            if (w == pid) {
                reaped = 1;
            } else if (w < 0 && errno != EINTR) {
                /* ECHILD: the host ignores SIGCHLD and the kernel reaped it */
                close(pfd[0]);
                snprintf(why, whylen, "dns hook %s %s: cannot get exit status: %s",
                         hook, action, strerror(errno));
                return -1;
            }
        }
    }

    /* whatever the hook wrote before exiting is already in the pipe */
    if (!timed_out) {
        int fl = fcntl(pfd[0], F_GETFL);

        if (fl >= 0 && fcntl(pfd[0], F_SETFL, fl | O_NONBLOCK) == 0) {
            for (;;) {
                char    tmp[512];
                ssize_t got = read(pfd[0], tmp, sizeof(tmp));
                size_t  room = sizeof(errbuf) - 1 - errlen;

                if (got <= 0 || room == 0) {
                    break;
                }
                memcpy(errbuf + errlen, tmp, (size_t) got < room ? (size_t) got : room);
                errlen += (size_t) got < room ? (size_t) got : room;
            }
        }
    }
    close(pfd[0]);
    errbuf[errlen] = '\0';
    first_line(errbuf, errlen, line, sizeof(line));

    if (timed_out) {
        snprintf(why, whylen, "dns hook %s %s %s: timed out after %d s%s%s",
                 hook, action, dns_name, DNS_HOOK_TIMEOUT_S,
                 line[0] ? ": " : "", line);
        return -1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return 0;
    }
    if (WIFEXITED(status)) {
        snprintf(why, whylen, "dns hook %s %s %s: exit status %d%s%s",
                 hook, action, dns_name, WEXITSTATUS(status),
                 line[0] ? ": " : "", line);
    } else if (WIFSIGNALED(status)) {
        snprintf(why, whylen, "dns hook %s %s %s: killed by signal %d%s%s",
                 hook, action, dns_name, WTERMSIG(status),
                 line[0] ? ": " : "", line);
    } else {
        snprintf(why, whylen, "dns hook %s %s %s: failed%s%s",
                 hook, action, dns_name, line[0] ? ": " : "", line);
    }
    return -1;
}
