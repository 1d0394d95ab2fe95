/*
 * Announcements (atls_mirror.h): a dedicated subscriber connection on
 * <prefix>gen and <prefix>chal, driven by the host's event loop (or
 * atls_mirror_poll): for each "<cert-id> <gen>" newer than the mirror's,
 * a pull of that certificate; a registry change marks a registry sync as
 * wanted, for the host to step; each challenge published or withdrawn
 * goes to the responder (mirror_cluster.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mirror_int.h"
#include "atls_redis_sub.h"

int
atls_mirror_listen(atls_mirror_t *m, char *err, size_t errlen)
{
    if (m->sub != NULL) {
        /* challenges announced while it was down: loaded at the next join */
        m->loaded = 0;
    }
    atls_redis_free(m->sub);
    m->subscribed = 0;
    m->confirmed = 0;
    m->sub = atls_redis_connect(&m->conf, err, errlen);
    if (m->sub == NULL) {
        return -1;
    }
    if (atls_redis_subscribe(m->sub, m->channel) != 0
        || atls_redis_subscribe(m->sub, m->chal_channel) != 0)
    {
        snprintf(err, errlen, "%s", atls_redis_error(m->sub));
        atls_redis_free(m->sub);
        m->sub = NULL;
        return -1;
    }
    return 0;
}

atls_redis_t *
atls_mirror_subscriber(atls_mirror_t *m)
{
    return m->sub;
}

int
atls_mirror_listening(atls_mirror_t *m)
{
    return m->sub != NULL && m->subscribed;
}

/* "<cert-id> <gen>": 0 and its parts, -1 when it is not one. */
static int
parse_announcement(const char *msg, size_t len, char *id, size_t idlen, uint64_t *gen)
{
    const char         *sp = memchr(msg, ' ', len);
    char               *end;
    unsigned long long  g;

    if (sp == NULL || sp == msg || (size_t) (sp - msg) >= idlen || strlen(msg) != len) {
        return -1;
    }
    memcpy(id, msg, (size_t) (sp - msg));
    id[sp - msg] = '\0';
    errno = 0;
    g = strtoull(sp + 1, &end, 10);
    if (errno != 0 || end == sp + 1 || *end != '\0' || sp[1] == '-') {
        return -1;
    }
    *gen = g;
    return 0;
}

/* The registry of names moved in Redis: a sync of it is wanted, which the
 * host steps (atls_mirror_sync_names_step) from its own loop; a whole
 * pass here would hold the subscriber's read (and the host) for as long
 * as the registry takes. */
static void
listen_names(atls_mirror_t *m)
{
    m->names_wanted = 1;
    if (m->names_hook != NULL) {
        m->names_hook(m->names_hook_ctx);
    }
}

int
atls_mirror_on_io(atls_mirror_t *m, int events, char *err, size_t errlen)
{
    char     *channel, *payload, id[256], why[512];
    size_t    len;
    uint64_t  gen;
    int       rc, pulled = 0, failed = 0;

    if (m->sub == NULL) {
        snprintf(err, errlen, "mirror: not listening");
        return -1;
    }
    if (atls_redis_io(m->sub, events) != 0) {
        /* messages read before the failure are still taken below */
        failed = 1;
    }
    while ((rc = atls_redis_message(m->sub, &channel, &payload, &len, err, errlen)) > 0) {
        if (rc == 2) {
            /* both channels, or announcements could be missed */
            m->subscribed = ++m->confirmed >= 2;
        } else if (strcmp(channel, m->chal_channel) == 0) {
            atls_mirror_chal_message(m, payload, len);
        } else if (parse_announcement(payload, len, id, sizeof(id), &gen) != 0) {
            atls_log(ATLS_LOG_WARN, "mirror: %s: not an announcement, ignored", channel);
        } else if (strcmp(id, ATLS_MIRROR_NAMES_ID) == 0) {
            listen_names(m);
        } else if (gen > atls_mirror_generation(m, id)) {
            int one = atls_mirror_sync_one(m, id, why, sizeof(why));

            if (one < 0) {
                atls_log(ATLS_LOG_WARN, "mirror: %s (left to the next sync)", why);
            }
            pulled += one > 0;
        }
        free(channel);
        free(payload);
    }
    if (rc < 0 || failed) {
        if (rc >= 0) {
            snprintf(err, errlen, "%s", atls_redis_error(m->sub));
        }
        m->subscribed = 0;
        return -1;
    }
    return pulled;
}

static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
atls_mirror_poll(atls_mirror_t *m, int timeout_ms, char *err, size_t errlen)
{
    long long     deadline = now_ms() + timeout_ms;
    struct pollfd pfd;
    int           w, left;

    if (m->sub == NULL) {
        snprintf(err, errlen, "mirror: not listening");
        return -1;
    }
    for (;;) {
        w = atls_redis_wants(m->sub);
        pfd.fd = atls_redis_fd(m->sub);
        pfd.events = (short) (((w & ATLS_REDIS_WANT_READ) ? POLLIN : 0)
                              | ((w & ATLS_REDIS_WANT_WRITE) ? POLLOUT : 0));
        pfd.revents = 0;
        left = (int) (deadline - now_ms());
        if (poll(&pfd, 1, left > 0 ? left : 0) > 0) {
            return atls_mirror_on_io(m, w, err, errlen);
        }
        if (left <= 0) {
            return 0;
        }
    }
}
