/*
 * A subscriber connection (issue 12): the client of atls_redis.h in
 * pub/sub mode, for the announcements of deploys (atls_mirror.h).
 *
 * The client counts one reply per command it sent; a subscribed
 * connection also receives messages nobody asked for.  Those are taken
 * with atls_redis_reply_any(), and atls_redis_message() turns them into
 * (channel, payload).  Non-blocking like the rest: the host waits on
 * atls_redis_fd()/atls_redis_wants() and calls atls_redis_io(), then takes
 * the messages until none is left.  A subscribed connection accepts no
 * other command (Redis refuses them), so it is a dedicated connection.
 */
#ifndef ATLS_REDIS_SUB_H
#define ATLS_REDIS_SUB_H

#include "atls_redis.h"

/* The next reply, whether a command asked for it or not (redis_conn.c):
 * 1 and *reply, 0 none complete yet, -1 FAILED. */
int atls_redis_reply_any(atls_redis_t *c, redisReply **reply);

/* Queues SUBSCRIBE channel (may be called while connecting).  0, or -1
 * when the connection has failed. */
int atls_redis_subscribe(atls_redis_t *c, const char *channel);

/* The next message on a subscribed connection: 1 with *channel and
 * *payload (malloc'd, payload NUL-terminated, *len its length), 2 for the
 * confirmation of a SUBSCRIBE (*channel set, *payload NULL: messages
 * published from now on will come), 0 when none is complete yet, -1 when
 * the connection failed (atls_redis_error) or Redis refused the
 * subscription (err says which). */
int atls_redis_message(atls_redis_t *c, char **channel, char **payload, size_t *len,
                       char *err, size_t errlen);

#endif
