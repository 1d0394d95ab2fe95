/*
 * Hook programs (dns-01 hooks, later notification commands) run in the
 * background, for any event loop.
 *
 * atls_hook_spawn() forks a reporting child in a process group of its own;
 * the reporting child runs the program (fork + execve, no shell, every
 * inherited descriptor closed, stdin/stdout /dev/null), waits for it, and
 * writes one short report to a pipe: "0" when it exited 0, else "1" and
 * the first line of its stderr or how it ended.  The host only watches
 * the pipe's read end: no SIGCHLD handling is needed, which matters in
 * nginx (whose master and workers reap every child themselves).
 */
#ifndef ATLS_HOOK_H
#define ATLS_HOOK_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;     /* the reporting child, also its process group */
    int   fd;      /* report pipe, read end: non-blocking, close-on-exec */
} atls_hook_proc_t;

/* Starts argv (argv[0] an absolute path).  0 ok; -1 + why. */
int atls_hook_spawn(char *const argv[], atls_hook_proc_t *hp, char *why, size_t whylen);

/* The same with input (len bytes, copied before the fork returns) written
 * to the program's stdin by the reporting child (so the host never blocks
 * on a program that does not read; EPIPE is ignored), then stdin closed.
 * The notifier's command sink. */
int atls_hook_spawn_input(char *const argv[], const char *input, size_t len,
                          atls_hook_proc_t *hp, char *why, size_t whylen);

/* Notification commands (atls_hook_spawn_input, never dns hooks, which
 * an operator names on the command line or in the server's configuration)
 * run as uid/gid from now on, for the whole process: the reporting child
 * takes that identity for good (setgroups, setresgid, setresuid) before
 * it starts the program, and a run that cannot fails ("cannot run as the
 * configured user and group").  For a root process working on a store
 * another user owns: the command the store's notify.json names must not
 * run as root.  A process that is not root must already be uid/gid.
 * With an identity set, those commands also get a minimal environment
 * (PATH, HOME, USER, LOGNAME of uid, and TZ) instead of the process's.
 * uid -1 (the default): the process's own identity and environment. */
void atls_hook_set_identity(long uid, long gid);

/* Reads the report once hp->fd is readable: 1 when the run is over (*ok
 * and why filled, fd closed, child reaped when possible); 0 when nothing
 * complete yet (EAGAIN).  A reporting child that died without a report
 * counts as a failure ("the hook runner died"). */
int atls_hook_read(atls_hook_proc_t *hp, int *ok, char *why, size_t whylen);

/* Ends the whole process group (SIGKILL), closes fd, reaps when possible. */
void atls_hook_kill(atls_hook_proc_t *hp);

#endif
