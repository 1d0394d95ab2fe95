/*
 * The blocking wrapper over the non-blocking client, for the CLI and
 * Apache's watchdog thread: poll(2) on the client's fd with a deadline.
 * It is the same state machine an event loop drives; only the waiting is
 * here.  nginx's driver worker uses it on its event loop too, behind the
 * health gate (atls_redis_health_t): once a call timed out, no blocking
 * call goes out until the host saw Redis answer again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <openssl/sha.h>
#include "atls_redis.h"

#define SYNC_MAX_ARGS 64

/* Waits for what the client wants and drives it once.  0 went on, -1
 * failed, -2 the deadline passed (err says which). */
static int
sync_step(atls_redis_t *c, long long deadline, const char *what, char *err, size_t errlen)
{
    struct pollfd pfd;
    long long     left = deadline - atls_redis_now_ms();
    int           w = atls_redis_wants(c), rc;

    if (left <= 0) {
        snprintf(err, errlen, "%s: timed out", what);
        return -2;
    }
    pfd.fd = atls_redis_fd(c);
    pfd.events = (short) (((w & ATLS_REDIS_WANT_READ) ? POLLIN : 0)
                          | ((w & ATLS_REDIS_WANT_WRITE) ? POLLOUT : 0));
    pfd.revents = 0;
    rc = poll(&pfd, 1, left > 60000 ? 60000 : (int) left);
    if (rc < 0 && errno != EINTR) {
        snprintf(err, errlen, "%s: poll: %s", what, strerror(errno));
        return -1;
    }
    if (rc > 0 && atls_redis_io(c, ATLS_REDIS_WANT_READ | ATLS_REDIS_WANT_WRITE) != 0) {
        snprintf(err, errlen, "%s", atls_redis_error(c));
        return -1;
    }
    return 0;
}

/* ---- the health gate (atls_redis_health_t) -------------------------------- */

int
atls_redis_health_down(atls_redis_health_t *h, const char *why)
{
    if (h->unresponsive) {
        return 0;
    }
    h->unresponsive = 1;
    snprintf(h->why, sizeof(h->why), "%s", why);
    return 1;
}

void
atls_redis_health_up(atls_redis_health_t *h)
{
    h->unresponsive = 0;
    h->why[0] = '\0';
}

/* 1 (err set, nothing sent) while the gate is closed. */
static int
sync_gated(const atls_redis_health_t *h, const char *where, char *err, size_t errlen)
{
    if (h == NULL || !h->unresponsive) {
        return 0;
    }
    snprintf(err, errlen, "redis %s: not answering (%s), not tried until it answers",
             where, h->why);
    return 1;
}

/* A step that timed out closes the gate: the calls after it fail at once. */
static void
sync_timed_out(atls_redis_health_t *h, const char *err)
{
    if (h != NULL) {
        atls_redis_health_down(h, err);
    }
}

/* ---- calls ------------------------------------------------------------------ */

atls_redis_t *
atls_redis_open_sync(const atls_redis_conf_t *conf, char *err, size_t errlen)
{
    atls_redis_t *c = NULL;
    long long     deadline;
    char          what[300], *where;
    int           rc;

    where = atls_redis_conf_describe(conf);
    if (sync_gated(conf->health, where, err, errlen)) {
        goto done;
    }
    c = atls_redis_connect(conf, err, errlen);
    if (c == NULL) {
        goto done;
    }
    snprintf(what, sizeof(what), "redis %s: connecting", where);
    deadline = atls_redis_now_ms() + (conf->timeout_ms > 0 ? conf->timeout_ms : ATLS_REDIS_TIMEOUT_MS);
    while (atls_redis_state(c) != ATLS_REDIS_READY) {
        rc = sync_step(c, deadline, what, err, errlen);
        if (rc != 0) {
            if (rc == -2) {
                sync_timed_out(conf->health, err);
            }
            atls_redis_free(c);
            c = NULL;
            goto done;
        }
    }

done:
    free(where);
    return c;
}

int
atls_redis_call(atls_redis_t *c, int argc, const char **argv, const size_t *argvlen,
                redisReply **reply, int timeout_ms, char *err, size_t errlen)
{
    long long deadline = atls_redis_now_ms()
                         + (timeout_ms > 0 ? timeout_ms : atls_redis_timeout_ms(c));
    char      what[64];
    int       rc;

    *reply = NULL;
    if (atls_redis_health(c) != NULL && atls_redis_health(c)->unresponsive) {
        snprintf(err, errlen, "redis: not answering (%s), not tried until it answers",
                 atls_redis_health(c)->why);
        return -1;
    }
    if (atls_redis_pending(c) != 0) {
        snprintf(err, errlen, "redis: a blocking call while replies are pending");
        return -1;
    }
    if (atls_redis_send(c, argc, argv, argvlen) != 0) {
        snprintf(err, errlen, "%s", atls_redis_state(c) == ATLS_REDIS_FAILED
                 ? atls_redis_error(c) : "redis: command could not be formatted");
        return -1;
    }
    snprintf(what, sizeof(what), "redis %.40s", argv[0]);
    for (;;) {
        rc = atls_redis_reply(c, reply);
        if (rc == 1) {
            return 0;
        }
        if (rc < 0) {
            snprintf(err, errlen, "%s", atls_redis_error(c));
            return -1;
        }
        rc = sync_step(c, deadline, what, err, errlen);
        if (rc != 0) {
            if (rc == -2) {
                sync_timed_out(atls_redis_health(c), err);
            }
            /* where the stream stands is unknown now: nobody may use it */
            if (atls_redis_state(c) != ATLS_REDIS_FAILED) {
                int fd = atls_redis_fd(c);

                if (fd >= 0) {
                    shutdown(fd, SHUT_RDWR);
                }
                atls_redis_io(c, ATLS_REDIS_WANT_READ);
            }
            return -1;
        }
    }
}

int
atls_redis_callv(atls_redis_t *c, redisReply **reply, char *err, size_t errlen, ...)
{
    const char *argv[SYNC_MAX_ARGS];
    va_list     ap;
    int         argc = 0;
    const char *a;

    va_start(ap, errlen);
    while ((a = va_arg(ap, const char *)) != NULL && argc < SYNC_MAX_ARGS) {
        argv[argc++] = a;
    }
    va_end(ap);
    return atls_redis_call(c, argc, argv, NULL, reply, 0, err, errlen);
}

static void
sync_sha1_hex(const char *script, char hex[41])
{
    unsigned char md[SHA_DIGEST_LENGTH];
    size_t        i;

    SHA1((const unsigned char *) script, strlen(script), md);
    for (i = 0; i < sizeof(md); i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
}

static int
sync_eval_as(atls_redis_t *c, const char *verb, const char *body, int nkeys,
             const char **keys, int nargs, const char **args, const size_t *arglens,
             redisReply **reply, char *err, size_t errlen)
{
    const char *argv[SYNC_MAX_ARGS];
    size_t      lens[SYNC_MAX_ARGS];
    char        nk[16];
    int         argc = 0, i;

    if (3 + nkeys + nargs > SYNC_MAX_ARGS) {
        snprintf(err, errlen, "redis %s: too many arguments", verb);
        return -1;
    }
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[argc] = verb;
    lens[argc++] = strlen(verb);
    argv[argc] = body;
    lens[argc++] = strlen(body);
    argv[argc] = nk;
    lens[argc++] = strlen(nk);
    for (i = 0; i < nkeys; i++) {
        argv[argc] = keys[i];
        lens[argc++] = strlen(keys[i]);
    }
    for (i = 0; i < nargs; i++) {
        argv[argc] = args[i];
        lens[argc++] = arglens ? arglens[i] : strlen(args[i]);
    }
    return atls_redis_call(c, argc, argv, lens, reply, 0, err, errlen);
}

int
atls_redis_eval(atls_redis_t *c, const char *script, int nkeys, const char **keys,
                int nargs, const char **args, const size_t *arglens,
                redisReply **reply, char *err, size_t errlen)
{
    char sha[41];

    sync_sha1_hex(script, sha);
    if (sync_eval_as(c, "EVALSHA", sha, nkeys, keys, nargs, args, arglens, reply,
                     err, errlen) != 0)
    {
        return -1;
    }
    if ((*reply)->type == REDIS_REPLY_ERROR && strncmp((*reply)->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(*reply);
        *reply = NULL;
        return sync_eval_as(c, "EVAL", script, nkeys, keys, nargs, args, arglens, reply,
                            err, errlen);
    }
    return 0;
}
