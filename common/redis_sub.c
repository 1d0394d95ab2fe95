/*
 * Pub/sub on the client of redis_conn.c: SUBSCRIBE, then messages taken
 * as they come (atls_redis_sub.h).  Replies are parsed by hiredis's reader
 * in redis_conn.c; here they are only told apart: ["subscribe", channel,
 * count] confirms, ["message", channel, payload] is a message.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_redis_sub.h"

int
atls_redis_subscribe(atls_redis_t *c, const char *channel)
{
    const char *argv[] = { "SUBSCRIBE", channel };

    return atls_redis_send(c, 2, argv, NULL);
}

static char *
sub_dup(const redisReply *r, size_t *len)
{
    char *s = malloc(r->len + 1);

    if (s == NULL) {
        abort();
    }
    memcpy(s, r->str, r->len);
    s[r->len] = '\0';
    if (len != NULL) {
        *len = r->len;
    }
    return s;
}

/* A reply with n string elements whose first is kind. */
static int
sub_is(const redisReply *r, const char *kind, size_t n)
{
    size_t i;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING
            && !(i == n - 1 && r->element[i]->type == REDIS_REPLY_INTEGER))
        {
            return 0;
        }
    }
    return strcmp(r->element[0]->str, kind) == 0;
}

int
atls_redis_message(atls_redis_t *c, char **channel, char **payload, size_t *len,
                   char *err, size_t errlen)
{
    redisReply *r;
    int         rc;

    *channel = *payload = NULL;
    for (;;) {
        rc = atls_redis_reply_any(c, &r);
        if (rc <= 0) {
            if (rc < 0) {
                snprintf(err, errlen, "%s", atls_redis_error(c));
            }
            return rc;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "redis SUBSCRIBE: %.200s", r->str);
            freeReplyObject(r);
            return -1;
        }
        if (sub_is(r, "message", 3) && r->element[2]->type == REDIS_REPLY_STRING) {
            *channel = sub_dup(r->element[1], NULL);
            *payload = sub_dup(r->element[2], len);
            freeReplyObject(r);
            return 1;
        }
        if (sub_is(r, "subscribe", 3)) {
            *channel = sub_dup(r->element[1], NULL);
            freeReplyObject(r);
            return 2;
        }
        /* anything else (an unsubscribe, a pong): skipped */
        freeReplyObject(r);
    }
}
