/*
 * Dropping root, for good or for one thread's file accesses (atls_priv.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>
#include "atls_priv.h"

/* Only CAP_NET_BIND_SERVICE, effective and permitted; nothing inheritable,
 * so a hook the process runs starts without it. */
static int
priv_keep_bind(void)
{
    struct __user_cap_header_struct h;
    struct __user_cap_data_struct   d[_LINUX_CAPABILITY_U32S_3];

    memset(&h, 0, sizeof(h));
    memset(d, 0, sizeof(d));
    h.version = _LINUX_CAPABILITY_VERSION_3;
    d[CAP_TO_INDEX(CAP_NET_BIND_SERVICE)].effective = CAP_TO_MASK(CAP_NET_BIND_SERVICE);
    d[CAP_TO_INDEX(CAP_NET_BIND_SERVICE)].permitted = CAP_TO_MASK(CAP_NET_BIND_SERVICE);
    return (int) syscall(SYS_capset, &h, d);
}

int
atls_priv_drop(uid_t uid, gid_t gid, int keep_bind, char *err, size_t errlen)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg;

    if (uid == 0) {
        snprintf(err, errlen, "refusing to drop privileges to uid 0");
        return -1;
    }
    /* Capabilities survive setresuid only when asked to beforehand. */
    if (keep_bind && prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) != 0) {
        snprintf(err, errlen, "prctl(PR_SET_KEEPCAPS): %s", strerror(errno));
        return -1;
    }
    if (setgroups(1, &gid) != 0) {
        snprintf(err, errlen, "setgroups(%ld): %s", (long) gid, strerror(errno));
        return -1;
    }
    if (setresgid(gid, gid, gid) != 0) {
        snprintf(err, errlen, "setresgid(%ld): %s", (long) gid, strerror(errno));
        return -1;
    }
    if (setresuid(uid, uid, uid) != 0) {
        snprintf(err, errlen, "setresuid(%ld): %s", (long) uid, strerror(errno));
        return -1;
    }
    if (keep_bind) {
        if (priv_keep_bind() != 0) {
            snprintf(err, errlen, "capset(CAP_NET_BIND_SERVICE): %s", strerror(errno));
            return -1;
        }
        (void) prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L);
    }

    /* Trust, but verify: none of the ids is root's any more and the way
     * back is closed. */
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0
        || ru != uid || eu != uid || su != uid || rg != gid || eg != gid || sg != gid
        || setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 || setegid(0) == 0)
    {
        snprintf(err, errlen, "dropping privileges to %ld:%ld did not stick",
                 (long) uid, (long) gid);
        return -1;
    }
    return 0;
}

int
atls_fsid_enter(atls_fsid_t *saved, uid_t uid, gid_t gid, char *err, size_t errlen)
{
    saved->active = 0;
    /* setfsuid() reports no error; asking with an invalid id (-1) returns
     * the current value, which shows whether the switch took. */
    saved->fsgid = (gid_t) setfsgid(gid);
    saved->fsuid = (uid_t) setfsuid(uid);
    saved->active = 1;
    if ((uid_t) setfsuid((uid_t) -1) != uid || (gid_t) setfsgid((gid_t) -1) != gid) {
        atls_fsid_leave(saved);
        snprintf(err, errlen, "cannot switch the filesystem identity to %ld:%ld",
                 (long) uid, (long) gid);
        return -1;
    }
    return 0;
}

void
atls_fsid_leave(atls_fsid_t *saved)
{
    if (saved == NULL || !saved->active) {
        return;
    }
    (void) setfsuid(saved->fsuid);
    (void) setfsgid(saved->fsgid);
    saved->active = 0;
}

void
atls_user_name(uid_t uid, char *buf, size_t len)
{
    struct passwd  pw, *res = NULL;
    char           tmp[1024];

    if (getpwuid_r(uid, &pw, tmp, sizeof(tmp), &res) == 0 && res != NULL) {
        snprintf(buf, len, "%s", res->pw_name);
    } else {
        snprintf(buf, len, "uid %ld", (long) uid);
    }
}
