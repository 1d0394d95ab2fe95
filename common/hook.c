/*
 * Hook programs in the background (atls_hook.h).
 *
 * The host forks a reporting child, which becomes the leader of a session
 * (and process group) of its own, without a controlling terminal, and
 * runs the program as its child (fork + execve, no
 * shell, so a name or value is never shell syntax).  The reporting child
 * reads the program's stderr, waits for it, and writes one report to a
 * pipe the host watches: "0", or "1" and how it ended plus the first line
 * of its stderr.  Ending the group ends the program and anything it left
 * running; the host never needs SIGCHLD.
 *
 * A notification command (atls_hook_spawn_input) also gets its input on
 * stdin from the reporting child, which writes it while it waits (never
 * the host: a command that does not read must not block an event loop),
 * and runs with the identity atls_hook_set_identity() gave, if any.
 *
 * Between fork and execve (or _exit) only async-signal-safe calls: the
 * host may have threads (Apache's watchdog).
 */
#define _GNU_SOURCE  /* pipe2, close_range */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
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
#include "atls_hook.h"

/* stderr kept for the first line; a report stays below PIPE_BUF so that it
 * arrives in one piece */
#define HOOK_MAX_STDERR  2048
#define HOOK_MAX_LINE    400
#define HOOK_MAX_REPORT  512
/* how long atls_hook_kill waits for the killed group's leader to be reaped */
#define HOOK_REAP_TRIES  50

extern char **environ;

/* ---- in the program's process (after the second fork) ----------------- */

/* stdin infd (/dev/null, or the pipe the reporter writes the input to),
 * stdout /dev/null, stderr errfd, nothing else inherited; the signal
 * state is the reporter's (hook_signals_reset). */
static void
hook_exec(int infd, int nullfd, int errfd, char *const argv[], char *const envp[])
{
    int fd, maxfd;

    if (dup2(infd, STDIN_FILENO) < 0
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
    execve(argv[0], argv, envp);

    {
        const char *msg = "cannot execute hook: ";
        const char *why = strerror(errno);   /* glibc's is a table lookup */

        (void) !write(STDERR_FILENO, msg, strlen(msg));
        (void) !write(STDERR_FILENO, why, strlen(why));
        (void) !write(STDERR_FILENO, "\n", 1);
    }
    _exit(127);
}

/* ---- in the reporting child ------------------------------------------- */

typedef struct {
    char   buf[HOOK_MAX_REPORT];
    size_t len;
} report_t;

static void
report_add(report_t *r, const char *s, size_t n)
{
    size_t room = sizeof(r->buf) - 1 - r->len;

    if (n > room) {
        n = room;
    }
    memcpy(r->buf + r->len, s, n);
    r->len += n;
}

static void
report_str(report_t *r, const char *s)
{
    report_add(r, s, strlen(s));
}

/* snprintf is not async-signal-safe */
static void
report_int(report_t *r, int v)
{
    char   tmp[16];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char) ('0' + v % 10);
        v /= 10;
    } while (v > 0 && i > 0);
    report_add(r, tmp + i, sizeof(tmp) - i);
}

/* The first non-blank line of what the program wrote to stderr. */
static void
report_first_line(report_t *r, const char *buf, size_t len)
{
    size_t i = 0, n;

    while (i < len && (buf[i] == '\n' || buf[i] == '\r' || buf[i] == ' ' || buf[i] == '\t')) {
        i++;
    }
    n = i;
    while (n < len && buf[n] != '\n' && buf[n] != '\r' && n - i < HOOK_MAX_LINE) {
        n++;
    }
    if (n > i) {
        report_str(r, ": ");
        report_add(r, buf + i, n - i);
    }
}

static void
report_status(report_t *r, int status, const char *err, size_t errlen)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        report_str(r, "0");
        return;
    }
    report_str(r, "1");
    if (WIFEXITED(status)) {
        report_str(r, "exit status ");
        report_int(r, WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        report_str(r, "killed by signal ");
        report_int(r, WTERMSIG(status));
    } else {
        report_str(r, "failed");
    }
    report_first_line(r, err, errlen);
}

/* What the program gets on its stdin: /dev/null (fd -1), or input the
 * reporter writes to a pipe while it waits. */
typedef struct {
    int         fd;     /* write end, non-blocking; -1 once closed */
    const char *data;
    size_t      len, off;
} hook_input_t;

/* Writes what the pipe takes now; closes it once all is written or the
 * program closed its end (EPIPE: a command need not read its input). */
static void
input_feed(hook_input_t *in)
{
    while (in->fd >= 0 && in->off < in->len) {
        ssize_t n = write(in->fd, in->data + in->off, in->len - in->off);

        if (n > 0) {
            in->off += (size_t) n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return;
        } else {
            break;
        }
    }
    if (in->fd >= 0) {
        close(in->fd);
        in->fd = -1;
    }
}

/* Reads stderr of pid (and feeds its stdin) until it has exited; the
 * status.  A background process of the program may hold stderr open long
 * after the program is done, so exit is what counts, not EOF.  When the
 * host goes away (the report pipe on stdout reports an error) the whole
 * group ends. */
static int
reporter_wait(pid_t pid, int errfd, hook_input_t *in, char *err, size_t *errlen)
{
    int status = 0, eof = 0;

    for (;;) {
        /* a negative fd is skipped by poll: stderr once at EOF, stdin
         * once written */
        struct pollfd p[3] = { { eof ? -1 : errfd, POLLIN, 0 }, { STDOUT_FILENO, 0, 0 },
                               { in->fd, POLLOUT, 0 } };
        pid_t         w;

        if (poll(p, 3, 100) > 0) {
            if (p[1].revents & (POLLERR | POLLHUP)) {
                kill(0, SIGKILL);
            }
            if (p[2].revents != 0) {
                input_feed(in);
            }
            if (p[0].revents & (POLLIN | POLLHUP)) {
                char    tmp[512];
                ssize_t got = read(errfd, tmp, sizeof(tmp));

                if (got > 0) {
                    size_t room = HOOK_MAX_STDERR - *errlen;
                    size_t take = (size_t) got < room ? (size_t) got : room;

                    memcpy(err + *errlen, tmp, take);
                    *errlen += take;
                } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                    eof = 1;
                }
            }
        }
        w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            return status;
        }
        if (w < 0 && errno != EINTR) {
            return -1;
        }
    }
}

static void
fd_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl >= 0) {
        (void) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
}

/* The program's stdin: /dev/null (the reporter's own stdin), or a pipe
 * whose write end in->fd the reporter keeps.  -1 when no pipe. */
static int
input_open(hook_input_t *in, int *infd)
{
    int ipipe[2];

    *infd = STDIN_FILENO;
    if (in->data == NULL) {
        return 0;
    }
    if (pipe2(ipipe, O_CLOEXEC) != 0) {
        return -1;
    }
    *infd = ipipe[0];
    in->fd = ipipe[1];
    return 0;
}

/* stdin /dev/null, stdout the report pipe, stderr /dev/null; never returns. */
static void
reporter_main(char *const argv[], char *const envp[], hook_input_t *in)
{
    report_t r;
    char     err[HOOK_MAX_STDERR];
    size_t   errlen = 0;
    int      epipe[2], status, infd;
    pid_t    pid;

    r.len = 0;

    if (pipe2(epipe, O_CLOEXEC) != 0 || input_open(in, &infd) != 0) {
        report_str(&r, "1cannot make a pipe");
        goto out;
    }
    pid = fork();
    if (pid < 0) {
        report_str(&r, "1cannot fork");
        goto out;
    }
    if (pid == 0) {
        hook_exec(infd, STDIN_FILENO, epipe[1], argv, envp);
    }
    close(epipe[1]);
    if (in->fd >= 0) {
        /* only now: the program must not inherit SIG_IGN */
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_IGN;
        (void) sigaction(SIGPIPE, &sa, NULL);
        close(infd);
        fd_nonblock(in->fd);
        input_feed(in);
    }
    fd_nonblock(epipe[0]);
    status = reporter_wait(pid, epipe[0], in, err, &errlen);
    if (status == -1) {
        report_str(&r, "1cannot get the hook's exit status");
        goto out;
    }
    /* what the program wrote before it exited is in the pipe already */
    for (;;) {
        ssize_t got;

        if (errlen >= HOOK_MAX_STDERR) {
            break;
        }
        got = read(epipe[0], err + errlen, HOOK_MAX_STDERR - errlen);
        if (got <= 0) {
            break;
        }
        errlen += (size_t) got;
    }
    report_status(&r, status, err, errlen);

out:
    (void) !write(STDOUT_FILENO, r.buf, r.len);
    _exit(0);
}

/* Nothing blocked; SIGPIPE and SIGCHLD at their defaults (the host may
 * ignore SIGCHLD, and then waitpid could not see the program's exit). */
static void
hook_signals_reset(void)
{
    struct sigaction sa;
    sigset_t         set;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    (void) sigaction(SIGCHLD, &sa, NULL);
    (void) sigaction(SIGPIPE, &sa, NULL);
    sigemptyset(&set);
    sigprocmask(SIG_SETMASK, &set, NULL);
}

/* The identity notification commands run with (atls_hook_set_identity);
 * -1: the process's own. */
static long hook_uid = -1, hook_gid = -1;

/* With an identity set, notification commands get this environment
 * instead of the process's: the command a store names must not see what
 * the root who ran the CLI exported (tokens, agent sockets...).  Built by
 * atls_hook_set_identity, outside any fork. */
#define HOOK_ENV_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
static char  hook_env_home[300], hook_env_user[128], hook_env_logname[128],
             hook_env_tz[128];
static char *hook_clean_env[6];

/* Takes hook_uid/hook_gid for good (root), or checks that the process
 * has them already.  -1 when it cannot: the program must not run with
 * another identity than the one asked for. */
static int
reporter_identity(void)
{
    gid_t gid = (gid_t) hook_gid;

    if (hook_uid < 0) {
        return 0;
    }
    if (geteuid() == 0 && (uid_t) hook_uid != 0) {
        if (setgroups(1, &gid) != 0 || setresgid(gid, gid, gid) != 0
            || setresuid((uid_t) hook_uid, (uid_t) hook_uid, (uid_t) hook_uid) != 0
            || setuid(0) == 0)
        {
            return -1;
        }
        return 0;
    }
    return geteuid() == (uid_t) hook_uid && getegid() == gid ? 0 : -1;
}

/* Only the descriptors the reporter needs, at 0..2. */
static void
reporter_start(int report_fd, int nullfd, char *const argv[], hook_input_t *in,
               int as_identity)
{
    /* A session of its own, not only a group: the program must have no
     * controlling terminal.  Run from an operator's shell (the CLI as
     * root, the command a store's notify.json names running as the
     * store's owner), it could otherwise open /dev/tty and write escape
     * codes to root's terminal or push input into it (TIOCSTI).  The
     * session's group is the group the host kills. */
    if (setsid() < 0) {
        (void) setpgid(0, 0);
    }
    hook_signals_reset();
    if (dup2(nullfd, STDIN_FILENO) < 0
        || dup2(report_fd, STDOUT_FILENO) < 0
        || dup2(nullfd, STDERR_FILENO) < 0)
    {
        _exit(127);
    }
#ifdef __linux__
    if (close_range(3, ~0U, 0) != 0)
#endif
    {
        int fd;

        for (fd = 3; fd < 65536; fd++) {
            close(fd);
        }
    }
    if (as_identity && reporter_identity() != 0) {
        static const char msg[] = "1cannot run as the configured user and group";

        (void) !write(STDOUT_FILENO, msg, sizeof(msg) - 1);
        _exit(0);
    }
    reporter_main(argv, as_identity && hook_uid >= 0 ? hook_clean_env : environ, in);
}

/* ---- in the host ------------------------------------------------------ */

void
atls_hook_set_identity(long uid, long gid)
{
    struct passwd pw, *res = NULL;
    char          buf[1024];
    const char   *tz = getenv("TZ");
    size_t        n = 0;

    hook_uid = uid;
    hook_gid = uid < 0 ? -1 : gid;
    if (uid < 0) {
        return;
    }
    hook_clean_env[n++] = HOOK_ENV_PATH;
    if (getpwuid_r((uid_t) uid, &pw, buf, sizeof(buf), &res) == 0 && res != NULL) {
        snprintf(hook_env_home, sizeof(hook_env_home), "HOME=%s", pw.pw_dir);
        snprintf(hook_env_user, sizeof(hook_env_user), "USER=%s", pw.pw_name);
        snprintf(hook_env_logname, sizeof(hook_env_logname), "LOGNAME=%s", pw.pw_name);
        hook_clean_env[n++] = hook_env_home;
        hook_clean_env[n++] = hook_env_user;
        hook_clean_env[n++] = hook_env_logname;
    }
    if (tz != NULL && strlen(tz) < sizeof(hook_env_tz) - 3) {
        snprintf(hook_env_tz, sizeof(hook_env_tz), "TZ=%s", tz);
        hook_clean_env[n++] = hook_env_tz;
    }
    hook_clean_env[n] = NULL;
}

static int
hook_check_program(const char *path, char *why, size_t whylen)
{
    struct stat sb;

    if (path == NULL || path[0] != '/') {
        snprintf(why, whylen, "%s: not an absolute path", path ? path : "(none)");
        return -1;
    }
    /* execve does no PATH search; a failure here is about the
     * configuration, said before anything runs */
    if (stat(path, &sb) != 0) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(sb.st_mode) || access(path, X_OK) != 0) {
        snprintf(why, whylen, "%s: not an executable file", path);
        return -1;
    }
    return 0;
}

/* Both kinds of run: a dns hook (input NULL) and a notification command
 * (input given, with the identity of atls_hook_set_identity).  The input
 * reaches the reporting child through fork's copy of this process. */
static int
hook_spawn(char *const argv[], const char *input, size_t len, atls_hook_proc_t *hp,
           char *why, size_t whylen)
{
    hook_input_t in = { -1, input, len, 0 };
    int          pfd[2], nullfd;
    pid_t        pid;

    hp->pid = -1;
    hp->fd = -1;
    if (hook_check_program(argv[0], why, whylen) != 0) {
        return -1;
    }
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        snprintf(why, whylen, "%s: pipe: %s", argv[0], strerror(errno));
        return -1;
    }
    nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nullfd < 0) {
        snprintf(why, whylen, "/dev/null: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        reporter_start(pfd[1], nullfd, argv, &in, input != NULL);
    }
    close(pfd[1]);
    close(nullfd);
    if (pid < 0) {
        snprintf(why, whylen, "%s: fork: %s", argv[0], strerror(errno));
        close(pfd[0]);
        return -1;
    }
    /* no setpgid(pid, pid) here: it would make the reporter a group
     * leader, which setsid() refuses; atls_hook_kill covers a kill that
     * comes before the reporter made its session */
    if (fcntl(pfd[0], F_SETFL, O_NONBLOCK) != 0) {
        snprintf(why, whylen, "%s: fcntl: %s", argv[0], strerror(errno));
        hp->pid = pid;
        hp->fd = pfd[0];
        atls_hook_kill(hp);
        return -1;
    }
    hp->pid = pid;
    hp->fd = pfd[0];
    return 0;
}

int
atls_hook_spawn(char *const argv[], atls_hook_proc_t *hp, char *why, size_t whylen)
{
    return hook_spawn(argv, NULL, 0, hp, why, whylen);
}

int
atls_hook_spawn_input(char *const argv[], const char *input, size_t len,
                      atls_hook_proc_t *hp, char *why, size_t whylen)
{
    return hook_spawn(argv, input != NULL ? input : "", len, hp, why, whylen);
}

/* 1 when pid is reaped or cannot be (not our child any more). */
static int
hook_reap(pid_t pid)
{
    int   status;
    pid_t w;

    do {
        w = waitpid(pid, &status, WNOHANG);
    } while (w < 0 && errno == EINTR);
    return w != 0;
}

static void
hook_close(atls_hook_proc_t *hp)
{
    if (hp->fd >= 0) {
        close(hp->fd);
        hp->fd = -1;
    }
}

int
atls_hook_read(atls_hook_proc_t *hp, int *ok, char *why, size_t whylen)
{
    char    buf[HOOK_MAX_REPORT];
    ssize_t got;

    do {
        got = read(hp->fd, buf, sizeof(buf) - 1);
    } while (got < 0 && errno == EINTR);
    if (got < 0 && errno == EAGAIN) {
        return 0;
    }
    *ok = 0;
    if (got > 0) {
        /* one write below PIPE_BUF: the report is whole */
        buf[got] = '\0';
        *ok = buf[0] == '0';
        snprintf(why, whylen, "%s", *ok ? "" : buf + 1);
    } else {
        snprintf(why, whylen, "the hook runner died");
    }
    hook_close(hp);
    /* the reporter exits right after writing; give it a moment */
    if (hp->pid > 0) {
        int i;

        for (i = 0; i < HOOK_REAP_TRIES && !hook_reap(hp->pid); i++) {
            struct timespec ts = { 0, 1000000L };

            nanosleep(&ts, NULL);
        }
        hp->pid = -1;
    }
    return 1;
}

void
atls_hook_kill(atls_hook_proc_t *hp)
{
    int i;

    hook_close(hp);
    if (hp->pid <= 0) {
        return;
    }
    /* the reporter first: killed before its setsid(), it never starts
     * the program (fork fails with a fatal signal pending); after it,
     * the group below has everything the program started */
    (void) kill(hp->pid, SIGKILL);
    (void) kill(-hp->pid, SIGKILL);
    for (i = 0; i < HOOK_REAP_TRIES && !hook_reap(hp->pid); i++) {
        struct timespec ts = { 0, 2000000L };

        nanosleep(&ts, NULL);
    }
    hp->pid = -1;
}
