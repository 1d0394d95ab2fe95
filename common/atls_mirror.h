/*
 * A node's mirror of a Redis store (issue 12): Redis is the source of
 * truth, each node serves from a local directory in the filesystem store's
 * format (atls_store_fs_open), so the handshake path never touches the
 * network and a Redis outage never stops a node from serving what it has.
 *
 * Generations (docs/store.md, "Redis: generations and the mirror"):
 *   <P>{<cert-id>}:gen   the certificate's generation in Redis, bumped
 *                        (in one script with the check of the writer's
 *                        lease and fence) after every deploy of its files
 *   <P>{/cluster}:gen    bumped with every certificate generation; its
 *                        absence tells that Redis lost its state
 *   <P>gen               the channel a bump is announced on:
 *                        "<cert-id> <gen>"
 *   mirror-gen/<cert-id> in the mirror: the generation its files are at
 *   generation           in the mirror: its store-wide counter (atls_store.h),
 *                        bumped after every certificate the mirror takes
 *                        (pulled or deployed here): what the node's
 *                        workers watch to load again, as with a fs store;
 *                        the Redis store's own "generation" entry is the
 *                        cluster's, not the node's
 *
 * Deploy (through atls_mirror_store()): a certificate's files and meta go
 * to Redis first (a fenced put under the certificate's lease when the
 * writer holds it), then to the mirror (atomic files, as the fs store
 * writes them); when the lease is let go, the certificate's generation is
 * bumped (fenced), the mirror records it, and the bump is announced.
 * Writes to a certificate without its lease bump at once.
 *
 * Sync: every certificate whose Redis generation is newer than the
 * mirror's is pulled (all its entries read first, then written: a Redis
 * failure midway leaves that certificate's files as they were; files are
 * never torn), every one whose mirror generation is newer is pushed (the
 * rule for a Redis restarted empty or from an old backup; see below).
 *
 * Repopulation rule: for each certificate the generation decides, the
 * higher side wins; at equal generations nothing moves, except when
 * neither side has one (0): then a certificate only one side holds (with
 * its meta.json) is copied to the other.  A push takes the certificate's lease (not waiting: a
 * node that holds it is working on it) and writes under its fence, then
 * raises <P>{<id>}:gen to the mirror's generation (never lowers it) and
 * announces it.  Accounts (accounts/<ca-id>/...) are pushed when Redis
 * lacks them and pulled when the mirror lacks them or differs.
 *
 * Threads: one mirror is used by one thread at a time (its store
 * connection is blocking, with the conf's timeouts: the host runs sync
 * off its event loop, or accepts that wait).  The subscriber connection
 * (atls_mirror_listen) is non-blocking: a host drives it by fd.
 */
#ifndef ATLS_MIRROR_H
#define ATLS_MIRROR_H

#include <stdint.h>
#include "atls_redis.h"
#include "atls_store.h"

typedef struct atls_mirror_s atls_mirror_t;

#define ATLS_MIRROR_CHANNEL  "gen"          /* after the prefix */
#define ATLS_MIRROR_GEN_DIR  "mirror-gen"   /* in the mirror */

/* A mirror over Redis (conf: key_file required) and the directory dir
 * (created 0700 when missing).  Redis unreachable is not an error here:
 * the mirror serves what it has and every later call tries again
 * (atls_mirror_redis_error says why it failed).  NULL + err when dir
 * cannot be opened or the conf is unusable (no key_file, bad key file). */
atls_mirror_t *atls_mirror_open(const atls_redis_conf_t *conf, const char *dir,
                                char *err, size_t errlen);
void atls_mirror_free(atls_mirror_t *m);

/* The store the scheduler and tools use, unchanged (borrowed: freed with
 * the mirror; its close op does nothing):
 *   reads of certs/ and accounts/   from Redis; from the mirror when Redis
 *                                   cannot be reached (so a node with Redis
 *                                   down still knows its certificates)
 *   writes of certs/ and accounts/  Redis, then the mirror, then the
 *                                   generation (above)
 *   fallback/                       the mirror only: each node's own
 *                                   self-signed stand-ins, made at start
 *                                   even without Redis
 *   everything else (challenges, requests, events, audit, counters,
 *   generation, CRLs, policy, notify): Redis only, so that any node sees
 *   it (challenges: any node answers any validation)
 *   locks                           Redis leases (atls_store_redis_open)
 */
atls_store_t *atls_mirror_store(atls_mirror_t *m);
/* The mirror directory as a store (fs backend; borrowed). */
atls_store_t *atls_mirror_fs(atls_mirror_t *m);
/* Renews the leases the mirror's store holds (a host timer, during an
 * order that makes no store call for a while): atls_store_redis_renew,
 * the number lost; 0 when Redis is not open. */
int atls_mirror_renew(atls_mirror_t *m);

/* Brings the mirror up to Redis (and Redis up to the mirror where the
 * mirror is newer: the repopulation rule).  Returns the number of
 * certificates pulled into the mirror (>= 0), or -1 + err when Redis
 * cannot be read: the mirror is then left as it was (certificates pulled
 * before the failure stay, each whole).  *pushed (may be NULL): how many
 * were pushed to Redis. */
int atls_mirror_sync(atls_mirror_t *m, int *pushed, char *err, size_t errlen);
/* The same for one certificate (an announcement): 1 pulled, 0 already
 * current (or pushed), -1 + err. */
int atls_mirror_sync_one(atls_mirror_t *m, const char *id, char *err, size_t errlen);

/* The generation the mirror holds for id (0: none). */
uint64_t atls_mirror_generation(atls_mirror_t *m, const char *id);
/* Redis's generation for id: ATLS_STORE_OK and *gen (0 when none),
 * ATLS_STORE_ERROR + err. */
int atls_mirror_redis_generation(atls_mirror_t *m, const char *id, uint64_t *gen,
                                 char *err, size_t errlen);

/* For writers of a Redis store without a mirror (the CLI's revoke,
 * renew, migrate, on a store from atls_store_redis_open): after changing
 * certs/<id>/..., bumps its generation (no lease checked) and announces it
 * as a deploy does, so every node's mirror takes the change.  *gen (may
 * be NULL): the new generation.  ATLS_STORE_OK or ATLS_STORE_ERROR + err. */
int atls_store_redis_announce(atls_store_t *st, const char *id, uint64_t *gen,
                              char *err, size_t errlen);

/* ---- announcements (mirror_listen.c) --------------------------------------- */

/* Opens the subscriber connection (non-blocking: connecting, then
 * SUBSCRIBE <P>gen queued).  0, or -1 + err; a previous one is closed.
 * After a failure of the connection the host calls it again, then
 * atls_mirror_sync (announcements missed meanwhile). */
int atls_mirror_listen(atls_mirror_t *m, char *err, size_t errlen);
/* The subscriber, for the host's event loop: atls_redis_fd/wants (NULL
 * when not listening). */
atls_redis_t *atls_mirror_subscriber(atls_mirror_t *m);
/* 1 once Redis confirmed the subscription: announcements published from
 * then on reach this mirror. */
int atls_mirror_listening(atls_mirror_t *m);
/* The subscriber's fd is ready: reads what came, and syncs each announced
 * certificate whose generation is newer than the mirror's.  The number of
 * certificates pulled (>= 0), or -1 + err when the subscriber failed (or
 * a pull failed: the announcement is then left to the next sync). */
int atls_mirror_on_io(atls_mirror_t *m, int events, char *err, size_t errlen);
/* For hosts without an event loop (the CLI, tests, Apache's watchdog):
 * waits up to timeout_ms for the subscriber and handles what came, as
 * atls_mirror_on_io. */
int atls_mirror_poll(atls_mirror_t *m, int timeout_ms, char *err, size_t errlen);

#endif
