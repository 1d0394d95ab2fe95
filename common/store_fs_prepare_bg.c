/*
 * atls_store_fs_prepare_start: the privileged parent's hand-over at a
 * server's start, in a time budget, the rest of the walk in a detached
 * root process.
 *
 * A store the parent never walked (restored from a backup, seeded, made
 * before the `prepared` stamp) has no proof that any directory is
 * unchanged: each certificate directory is opened once, ~33 us a
 * directory on an idle machine (100,000 in 3.26 s, 23 s on a loaded one),
 * all before nginx or Apache can start.  So the walk gets a budget
 * (AUTOTLS_PREPARE_BUDGET_MS, default ATLS_PREPARE_BUDGET_MS: ~15,000
 * never-walked directories on an idle machine, and a second start's 0.15-
 * 0.5 s besides still under the 2 s start-up target); the store's root and
 * its own entries are handed over before it, whatever the budget.  A walk
 * that fits behaves as atls_store_fs_prepare: errors fail the start.
 *
 * When the budget runs out, the same walk starts again from the root in a
 * process of its own (entries already right cost it one fstatat each):
 *   - double fork: the intermediate child is waited for at once, so the
 *     walker is a child neither of nginx's master nor of Apache's parent
 *     (neither reaps nor logs an unknown process), and setsid keeps the
 *     server's terminal and process group signals away from it;
 *   - it keeps two descriptors: the store root's, and the server's error
 *     log opened again by path with O_APPEND (a description of its own, not
 *     the server's: never a pipe to a log program, never the listening
 *     sockets, nothing else); 0-2 become /dev/null; signal handlers and
 *     mask are reset (they were the server's);
 *   - its warnings go to that log in lines of their own (syslog when the
 *     server logs elsewhere than to a file); an entry's error is logged and
 *     the walk goes on, since no start waits for it any more;
 *   - the `prepared` stamp is written only when the walk completes without
 *     an error, so a walk cut short (killed, a reboot) is done again by the
 *     next start;
 *   - one walker a store: it holds an flock on the store root's open file
 *     description, inherited from the parent, which took it before its own
 *     walk; a start that finds it held hands over the top level and leaves
 *     the rest to the walker that runs.
 * Until the walker reaches them, files a root process left in a
 * certificate directory stay unreadable to the workers: those names get
 * what an unreadable certificate gets (the fallback).  The workers do not
 * retry such a load on their own, so the walker announces what it handed
 * over as a deploy is announced: a generation bump naming the certificates
 * in the change journal (in batches), made through the fs backend, which
 * takes the store owner's filesystem identity for root.  Its only access
 * besides the descriptor walk.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include "store_fs_int.h"
#include "store_int.h"

#define FS_BG_ENV            "AUTOTLS_PREPARE_BUDGET_MS"
#define FS_BG_MAX_BUDGET_MS  3600000L
/* what ps and /proc/<pid>/comm show */
#define FS_BG_NAME           "autotls-walk"

void (*atls_fs_prepare_bg_test_hook)(void);

/* certificates handed over announced in one generation bump at most
 * this many, or at least once a second */
#define FS_BG_BATCH          256

typedef struct {
    int  fd;        /* the server's error log, or -1: syslog */
} fs_bg_log_t;

/* The certificates whose files the walker handed over, announced through
 * the store generation and its change journal as deploys are: the workers
 * load a certificate they could not read again only when told so. */
typedef struct {
    const char    *dir;
    atls_store_t  *st;                  /* opened at the first bump */
    int            unusable;            /* the store did not open: said once */
    char          *ids[FS_BG_BATCH];
    size_t         n;
    time_t         last;                /* of the last bump */
    int            pending;             /* handed over in this certs/<id> */
    unsigned long  announced;
} fs_bg_notify_t;


static long
fs_bg_budget_ms(void)
{
    const char *v = getenv(FS_BG_ENV);
    char       *end;
    long        ms;

    if (v == NULL || *v == '\0') {
        return ATLS_PREPARE_BUDGET_MS;
    }
    errno = 0;
    ms = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || ms < 0 || ms > FS_BG_MAX_BUDGET_MS) {
        atls_log(ATLS_LOG_WARN, "store: %s=\"%s\" is not a number of milliseconds "
                 "from 0 to %ld; using %d", FS_BG_ENV, v, FS_BG_MAX_BUDGET_MS,
                 ATLS_PREPARE_BUDGET_MS);
        return ATLS_PREPARE_BUDGET_MS;
    }
    return ms;
}

/* The walker's log sink: one write a line (O_APPEND: whole lines among
 * the server's). */
static void
fs_bg_log(void *ctx, atls_log_level_t level, const char *msg)
{
    static const char *const names[] = { "error", "warn", "info", "debug" };
    fs_bg_log_t *lg = ctx;
    char         line[2048], ts[32];
    struct tm    tm;
    time_t       now = time(NULL);
    ssize_t      w;
    int          n;

    if (lg->fd < 0) {
        syslog(level == ATLS_LOG_ERR ? LOG_ERR
               : level == ATLS_LOG_WARN ? LOG_WARNING : LOG_INFO, "%s", msg);
        return;
    }
    if (localtime_r(&now, &tm) == NULL
        || strftime(ts, sizeof(ts), "%Y/%m/%d %H:%M:%S", &tm) == 0)
    {
        ts[0] = '\0';
    }
    n = snprintf(line, sizeof(line), "%s [%s] %ld: autotls (background store walk): %s\n",
                 ts, names[level <= ATLS_LOG_DEBUG ? level : ATLS_LOG_DEBUG],
                 (long) getpid(), msg);
    if (n < 0) {
        return;
    }
    if ((size_t) n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    w = write(lg->fd, line, (size_t) n);
    (void) w;       /* nowhere else to say it */
}

static void
fs_bg_close_range(unsigned lo, unsigned hi)
{
    struct rlimit rl;
    unsigned      fd;

    if (lo > hi) {
        return;
    }
#ifdef SYS_close_range
    if (syscall(SYS_close_range, lo, hi, 0) == 0) {
        return;
    }
#endif
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
        && hi >= rl.rlim_cur)
    {
        hi = (unsigned) rl.rlim_cur - 1;
    }
    for (fd = lo; fd <= hi && fd < 1024U * 1024U; fd++) {
        (void) close((int) fd);
    }
}

/* Keeps *rootfd and *logfd (moved above 2; -1: none) and nothing else
 * of what the server had open; 0-2 on /dev/null. */
static int
fs_bg_keep_only(int *rootfd, int *logfd)
{
    int r, l, lo, hi, devnull, i;

    r = fcntl(*rootfd, F_DUPFD_CLOEXEC, 3);
    l = *logfd >= 0 ? fcntl(*logfd, F_DUPFD_CLOEXEC, 3) : -1;
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (r < 0 || (*logfd >= 0 && l < 0) || devnull < 0) {
        return -1;
    }
    for (i = 0; i <= 2; i++) {
        if (devnull != i && dup2(devnull, i) != i) {
            return -1;
        }
    }
    lo = l >= 0 && l < r ? l : r;
    hi = l > r ? l : r;
    fs_bg_close_range(3, (unsigned) lo - 1);
    if (hi != lo) {
        fs_bg_close_range((unsigned) lo + 1, (unsigned) hi - 1);
    }
    fs_bg_close_range((unsigned) hi + 1, ~0U);
    *rootfd = r;
    *logfd = l;
    return 0;
}

/* The server's handlers and blocked signals are not the walker's. */
static void
fs_bg_signals_default(void)
{
    struct sigaction sa;
    sigset_t         none;
    int              s;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (s = 1; s < NSIG; s++) {
        (void) sigaction(s, &sa, NULL);     /* fails for KILL, STOP: fine */
    }
    sigemptyset(&none);
    (void) sigprocmask(SIG_SETMASK, &none, NULL);
}

static void
fs_bg_announce(fs_bg_notify_t *nt)
{
    char   err[256];
    size_t i;

    if (nt->n == 0) {
        return;
    }
    if (nt->st == NULL && !nt->unusable) {
        /* as root on the worker's store: the backend acts as its owner */
        nt->st = atls_store_fs_open(nt->dir, err, sizeof(err));
        if (nt->st == NULL) {
            atls_log(ATLS_LOG_WARN, "store: %s; certificates handed over are loaded "
                     "at the next deploy or start", err);
            nt->unusable = 1;
        }
    }
    if (nt->st != NULL
        && atls_store_bump_generation_many(nt->st, (const char *const *) nt->ids, nt->n)
           == ATLS_STORE_OK)
    {
        nt->announced += nt->n;
    }
    for (i = 0; i < nt->n; i++) {
        free(nt->ids[i]);
    }
    nt->n = 0;
    nt->last = time(NULL);
}

/* atls_fs_prep_handed_fn: a certificate is announced once the walk has
 * left its directory (certs/<id>) having handed anything in it over: the
 * workers would otherwise load it again halfway and fail again. */
static void
fs_bg_handed(void *ctx, const char *rel, int done)
{
    fs_bg_notify_t *nt = ctx;
    const char     *id = rel + sizeof("certs/") - 1;
    size_t          len;

    if (strncmp(rel, "certs/", sizeof("certs/") - 1) != 0) {
        return;
    }
    len = strcspn(id, "/");
    if (!done) {
        nt->pending = 1;
        return;
    }
    if (!nt->pending || id[len] != '\0') {
        return;     /* nothing handed over, or a directory deeper down */
    }
    nt->pending = 0;
    if (!atls_store_id_ok(id)) {
        return;
    }
    nt->ids[nt->n] = strdup(id);
    if (nt->ids[nt->n] != NULL) {
        nt->n++;
    }
    if (nt->n == FS_BG_BATCH || time(NULL) > nt->last) {
        fs_bg_announce(nt);
    }
}

static void __attribute__((noreturn))
fs_bg_walker(int rootfd, const char *dir, long uid, long gid, const char *log_path,
             long parent)
{
    fs_bg_log_t     lg;
    fs_bg_notify_t  nt;
    struct timespec t0, t1;
    char            err[512];
    int             rc;

    /* by path, before the rest is closed: the server opened it as root */
    lg.fd = log_path != NULL && *log_path
            ? open(log_path, O_WRONLY | O_APPEND | O_NOCTTY | O_CLOEXEC) : -1;
    if (fs_bg_keep_only(&rootfd, &lg.fd) != 0) {
        _exit(1);
    }
    fs_bg_signals_default();
    (void) prctl(PR_SET_NAME, FS_BG_NAME, 0, 0, 0);
    if (lg.fd < 0) {
        openlog("autotls", LOG_PID, LOG_DAEMON);
    }
    atls_log_set(fs_bg_log, &lg, ATLS_LOG_INFO);
    if (atls_fs_prepare_bg_test_hook != NULL) {
        atls_fs_prepare_bg_test_hook();
    }
    atls_log(ATLS_LOG_INFO, "store: %s: walking it in the background (started by "
             "pid %ld)", dir, parent);
    memset(&nt, 0, sizeof(nt));
    nt.dir = dir;
    nt.last = time(NULL);
    (void) clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = atls_fs_prepare_walk(rootfd, dir, uid, gid, NULL, 1, fs_bg_handed, &nt, err,
                              sizeof(err));
    fs_bg_announce(&nt);
    if (nt.st != NULL) {
        atls_store_close(nt.st);
    }
    (void) clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc == 0) {
        atls_log(ATLS_LOG_INFO, "store: %s: background walk complete in %ld ms, "
                 "%lu certificate(s) handed over", dir,
                 (long) (t1.tv_sec - t0.tv_sec) * 1000
                 + (t1.tv_nsec - t0.tv_nsec) / 1000000, nt.announced);
    } else {
        atls_log(ATLS_LOG_ERR, "store: background walk: %s; the next start walks the "
                 "store again", err);
    }
    _exit(rc == 0 ? 0 : 1);
}

/* 0 when the walker runs (detached), -1 + err. */
static int
fs_bg_spawn(int rootfd, const char *dir, long uid, long gid, const char *log_path,
            char *err, size_t errlen)
{
    pid_t pid, w;
    long  parent = (long) getpid();
    int   status;

    pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* the intermediate: gone at once, the walker is no one's child */
        if (setsid() < 0) {
            _exit(1);
        }
        pid = fork();
        if (pid == 0) {
            fs_bg_walker(rootfd, dir, uid, gid, log_path, parent);
        }
        _exit(pid < 0 ? 1 : 0);
    }
    do {
        w = waitpid(pid, &status, 0);
    } while (w < 0 && errno == EINTR);
    if (w != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(err, errlen, "the background walk did not start");
        return -1;
    }
    return 0;
}

int
atls_store_fs_prepare_start(const char *dir, long uid, long gid, const char *log_path,
                            char *err, size_t errlen)
{
    struct timespec deadline;
    long            ms;
    int             rootfd, rc;

    ms = fs_bg_budget_ms();
    if (clock_gettime(CLOCK_MONOTONIC, &deadline) != 0) {
        return atls_store_fs_prepare(dir, uid, gid, err, errlen);
    }
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    rootfd = atls_fs_prepare_top(dir, uid, gid, err, errlen);
    if (rootfd < 0) {
        return -1;
    }
    /* Taken before our own walk: a walker holds it (the description it
     * inherits) until it ends. */
    if (flock(rootfd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            atls_log(ATLS_LOG_INFO, "store: %s: a background walk of the store is still "
                     "running; not starting another", dir);
            rc = 1;
        } else {
            snprintf(err, errlen, "flock %s: %s", dir, strerror(errno));
            rc = -1;
        }
        goto out;
    }
    rc = atls_fs_prepare_walk(rootfd, dir, uid, gid, &deadline, 0, NULL, NULL, err,
                              errlen);
    if (rc != ATLS_FS_PREP_LATE) {
        goto out;
    }
    if (fs_bg_spawn(rootfd, dir, uid, gid, log_path, err, errlen) == 0) {
        atls_log(ATLS_LOG_WARN, "store: %s: not walked within %ld ms (%s); the walk "
                 "goes on in the background, its messages in %s", dir, ms, FS_BG_ENV,
                 log_path != NULL && *log_path ? log_path : "syslog");
        rc = 1;
    } else {
        atls_log(ATLS_LOG_WARN, "store: %s: %s; walking it now", dir, err);
        rc = atls_fs_prepare_walk(rootfd, dir, uid, gid, NULL, 0, NULL, NULL, err,
                                  errlen);
    }
out:
    close(rootfd);
    return rc;
}
