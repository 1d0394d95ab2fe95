/*
 * Two nodes' mirrors (atls_mirror.h) on one real redis-server started by
 * the test (redisfx), for test_mirror*.c.
 */
#ifndef ATLS_TEST_MIRRORFX_H
#define ATLS_TEST_MIRRORFX_H

#include <stdint.h>
#include "atls_mirror.h"
#include "support/redisfx.h"

#define MIRRORFX_WAIT_MS  10000   /* deadline for a condition across nodes */

typedef struct {
    redisfx_t          rfx;
    char               key_file[160];
    atls_redis_conf_t  conf;          /* prefix "t:", key_file set */
    char               dir_a[160], dir_b[160];
    atls_mirror_t     *a, *b;         /* node A's and node B's mirrors */
} mirrorfx_t;

/* cmocka setup/teardown: *state is a mirrorfx_t with both nodes open. */
int mirrorfx_setup(void **state);
int mirrorfx_teardown(void **state);
/* Another node's mirror over dir (cmocka failure when it does not open). */
atls_mirror_t *mirrorfx_node(mirrorfx_t *fx, const char *dir);
long long mirrorfx_now_ms(void);

/* A key + chain file's text holding a real private key (malloc'd). */
char *mirrorfx_pem(int serial);
/* A minimal meta.json for id through st (renew_at tells serials apart). */
void mirrorfx_write_meta(atls_store_t *st, const char *id, int serial);
/* Lease, key + chain, meta, unlock: a deploy through m's store. */
void mirrorfx_deploy(atls_mirror_t *m, const char *id, int serial);

/* certs/<id>/meta.json and ec256.pem equal in both mirror dirs, the key
 * file 0600 in dir2. */
void mirrorfx_assert_same_cert(const char *dir1, const char *dir2, const char *id);
/* certs/<id>/<name> in dir, "" when missing (malloc'd). */
char *mirrorfx_file(const char *dir, const char *id, const char *name);
/* atls_mirror_sync succeeds with these counts (-1: any). */
void mirrorfx_sync_ok(atls_mirror_t *m, int want_pulled, int want_pushed);
/* Redis's generation of id. */
uint64_t mirrorfx_redis_gen(atls_mirror_t *m, const char *id);

#endif
