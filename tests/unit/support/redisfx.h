/*
 * A real redis-server for the Redis unit tests: started by the test in a
 * temp directory on a free loopback port (no persistence), ready once it
 * answers PING (with a deadline), stopped by its PID.
 */
#ifndef ATLS_TEST_REDISFX_H
#define ATLS_TEST_REDISFX_H

#include <sys/types.h>
#include "atls_redis.h"

#define REDISFX_SERVER "/usr/bin/redis-server"

typedef struct {
    char   dir[64];         /* temp dir: the server's --dir, logs, files */
    int    port;
    pid_t  pid;
    int    tls;             /* the port speaks TLS only */
    char   ca_file[128];    /* TLS: the test CA that signed the server's cert */
    char   ready_host[64];  /* the name the readiness check connects to */
} redisfx_t;

/* Starts a server: plain, or (tls) TLS-only with a fresh test CA and a
 * leaf for the SANs in tls_names (NULL: "localhost", "127.0.0.1").  0, or
 * -1 with the reason on stderr (nothing left running). */
int redisfx_start(redisfx_t *fx, int tls, const char *const *tls_names);
void redisfx_stop(redisfx_t *fx);

/* Kills the server (SIGKILL: a crash) and keeps its directory and port;
 * restart starts it again there (it loads dump.rdb when a SAVE wrote one,
 * else it starts empty).  restart: 0, or -1. */
void redisfx_kill(redisfx_t *fx);
int redisfx_restart(redisfx_t *fx);

/* A connection setting for this server: host 127.0.0.1, its port, TLS and
 * ca_file when it serves TLS, prefix "t:", a 5 s timeout.  Free with
 * atls_redis_conf_free. */
void redisfx_conf(const redisfx_t *fx, atls_redis_conf_t *c);
/* A 0600 key file in fx->dir holding 64 hex digits of `fill` repeated
 * (fill 0: random); its path into path. */
void redisfx_keyfile(const redisfx_t *fx, const char *name, int fill, char *path, size_t len);

/* One command on a fresh blocking connection to the server (cmocka
 * assertion on failure); the reply (freeReplyObject). */
redisReply *redisfx_cmd(const redisfx_t *fx, ...) __attribute__((sentinel));

/* cmocka setup/teardown: *state is a started plain redisfx_t. */
int redisfx_setup(void **state);
int redisfx_teardown(void **state);

/* A Redis store over a fresh server, for the store tests. */
typedef struct {
    redisfx_t          rfx;
    char               key_file[160];
    atls_redis_conf_t  conf;        /* how st was opened (key_file set) */
    atls_store_t      *st;
} redisfx_store_t;

/* cmocka setup/teardown: *state is a redisfx_store_t. */
int redisfx_store_setup(void **state);
int redisfx_store_teardown(void **state);

/* The raw value of a Redis key (a string), or NULL when it is missing. */
redisReply *redisfx_get_raw(const redisfx_t *fx, const char *key);
/* SET key to len raw bytes. */
void redisfx_set_raw(const redisfx_t *fx, const char *key, const void *val, size_t len);

#endif
