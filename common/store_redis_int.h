/*
 * Shared by the Redis store backend's files only: store_redis.c (entries,
 * index, log, open/close) and store_redis_lock.c (leases as locks, the
 * fenced put).  Key layout: the top of store_redis.c and docs/store.md.
 */
#ifndef ATLS_STORE_REDIS_INT_H
#define ATLS_STORE_REDIS_INT_H

#include "atls_redis.h"
#include "store_int.h"

typedef struct rs_lock_s {
    atls_redis_lease_t  lease;
    long long           renewed_ms;
    int                 lost;        /* renewal found it taken or expired */
    struct rs_lock_s   *next;
} rs_lock_t;

typedef struct {
    atls_redis_conf_t   conf;
    atls_redis_key_t    key;
    atls_redis_t       *c;          /* NULL or FAILED: opened again on use */
    rs_lock_t          *locks;      /* held by this store, renewed by its calls */
} rs_impl_t;

extern const atls_store_ops_t atls_rs_ops;

long long atls_rs_now_ms(void);
/* 1 for the paths of private keys and secrets: always sealed, and a clear
 * value found there is refused. */
int atls_rs_must_seal(const char *path);
/* "<prefix>{<tag>}:<kind>:<path>", malloc'd. */
char *atls_rs_key(rs_impl_t *rs, char kind, const char *path);
/* "<location> key <key>: <why>" into err. */
void atls_rs_err(atls_store_t *st, char *err, size_t errlen, const char *key, const char *why);
/* The connection, opened again when it has failed; NULL + err. */
atls_redis_t *atls_rs_conn(rs_impl_t *rs, char *err, size_t errlen);
/* The value stored for data under key: 'p' + data, or sealed. */
int atls_rs_encode(atls_store_t *st, const char *key, const char *data, size_t len,
                   int is_private, unsigned char **val, size_t *vlen,
                   char *err, size_t errlen);
/* path and its directories into their parents' index SETs. */
int atls_rs_index_add(atls_store_t *st, const char *path, char *err, size_t errlen);
/* Renews the held leases past a third of their time (all with force);
 * the number lost. */
int atls_rs_renew_due(atls_store_t *st, int force);
int atls_rs_lock(atls_store_t *st, const char *name, int wait, atls_store_lock_t **out,
                 char *err, size_t errlen);
void atls_rs_unlock(atls_store_t *st, atls_store_lock_t *lk);
/* After a put of the store generation (data: its value), which every
 * change of the registry of names bumps last: announced to every node's
 * mirror, which then syncs the registry if it moved (mirror_names.c). */
void atls_rs_names_announce(atls_store_t *st, const char *data, size_t len);

#endif
