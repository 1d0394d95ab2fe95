/*
 * Privileges around the store.  The store belongs to the server's worker
 * user; a root process (the CLI run by an operator, the nginx master, the
 * Apache parent) must not use root's powers inside it, because the worker
 * can rewrite the store at any moment.
 *
 *  - atls_priv_drop(): for good, for a process that has nothing left to do
 *    as root (the CLI once it knows whose store it works on).
 *  - atls_fsid_enter()/leave(): the filesystem identity of one thread only,
 *    for long-lived root processes that cannot drop (the fs backend uses it
 *    around every operation on a store root does not own).
 */
#ifndef ATLS_PRIV_H
#define ATLS_PRIV_H

#include <stddef.h>
#include <sys/types.h>

/* setgroups({gid}), setresgid, setresuid to uid/gid, then verifies that
 * root cannot be regained.  keep_bind: keep CAP_NET_BIND_SERVICE (and
 * nothing else) so that ports below 1024 can still be bound; it is not
 * passed on to programs the process runs.  0 ok; -1 + err. */
int atls_priv_drop(uid_t uid, gid_t gid, int keep_bind, char *err, size_t errlen);

typedef struct {
    int    active;
    uid_t  fsuid;
    gid_t  fsgid;
} atls_fsid_t;

/* This thread's filesystem uid/gid become uid/gid (the kernel then also
 * clears the filesystem capabilities: DAC override, chown, fowner ...).
 * 0 ok (saved holds what to restore); -1 + err. */
int atls_fsid_enter(atls_fsid_t *saved, uid_t uid, gid_t gid, char *err, size_t errlen);
/* Restores what enter saved; no-op when enter was not active. */
void atls_fsid_leave(atls_fsid_t *saved);

/* "www-data", or the number when the user has no name. */
void atls_user_name(uid_t uid, char *buf, size_t len);

#endif
