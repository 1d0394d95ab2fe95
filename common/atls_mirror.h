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
/* The same, in slices for an event loop (issue 12: a cold mirror over
 * 10,000 certificates must not stall the host for minutes): works for
 * about budget_ms (<= 0: no limit; at least one certificate a call), then
 * returns with *done 0 and goes on where it stopped at the next call;
 * *done 1 when the sync is complete.  A call after it is done (or after
 * -1) starts a new sync; atls_mirror_sync drops one under way.  Returns
 * the certificates pulled by this sync so far, or -1 + err as
 * atls_mirror_sync (the sync is then over); *pushed (may be NULL): those
 * pushed so far.  A certificate is never half-pulled across calls, and
 * the mirror's store generation moves once per call for all the
 * certificates it pulled (the node's workers read each of them). */
int atls_mirror_sync_step(atls_mirror_t *m, long budget_ms, int *done, int *pushed,
                          char *err, size_t errlen);
/* Drops a sliced sync under way (the host's connection failed: the next
 * sync must list the certificates again), and a sync of the registry of
 * names under way (atls_mirror_sync_names_step). */
void atls_mirror_sync_cancel(atls_mirror_t *m);
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

/* ---- the registry of dynamic names (mirror_names.c) ------------------------ */

/*
 * The registry (atls_names.h) is in Redis; every node's mirror holds a
 * copy (names/<id>.json, its own names-generation and names-journal), so
 * workers and children follow it as on a directory store.  Every write of
 * Redis's names-generation (each registry change, by the CLI, the admin
 * API of any node, on-demand) is announced on <P>gen as
 * "ATLS_MIRROR_NAMES_ID <gen>"; a listener then marks a registry sync as
 * wanted (atls_mirror_names_pending) and its host steps it, and a full
 * sync (start, reconnection) syncs it too.  In the mirror,
 * mirror-names-generation records Redis's registry generation it took.
 * (Added to the issue-12 contract by the redisnames helper.)
 */
#define ATLS_MIRROR_NAMES_ID  "/names"

/* Brings the mirror's registry up to Redis's (see mirror_names.c for the
 * rule when Redis lost it): 1 when entries changed (the mirror's store
 * generation was bumped: the host tells its workers), 0 when current,
 * -1 + err (Redis unreachable, the mirror not writable; left as it was).
 * A loop over atls_mirror_sync_names_step without a budget (the CLI,
 * tests): a host with clients to serve steps instead. */
int atls_mirror_sync_names(atls_mirror_t *m, char *err, size_t errlen);
/* The same in steps for an event loop (issue 12: a node that missed
 * 100,000 registry changes, or a Redis restarted, must not stall its host
 * for seconds): a call goes through at most 256 entries and, past
 * budget_ms (<= 0: no limit), stops after one, then returns with *done 0;
 * the next call goes on where it stopped.  A catch-up from Redis's
 * journal of at most 256 names is one call whatever the budget.  *done 1
 * when the registry is Redis's (one begun after that call starts with the
 * next).  Each call moves the mirror's registry and store generations
 * once for the entries it changed (the workers read them); an entry is
 * never half-written.  1 when this call changed entries, 0 when not,
 * -1 + err (the sync is over; the next call begins a new one).  The
 * full sync (atls_mirror_sync_step) ends with the same registry sync: one
 * under way is continued, never run twice. */
int atls_mirror_sync_names_step(atls_mirror_t *m, long budget_ms, int *done, char *err,
                                size_t errlen);
/* 1 while a registry sync is asked for (an announcement came, see
 * atls_mirror_on_io) or under way: the host calls
 * atls_mirror_sync_names_step until it is 0. */
int atls_mirror_names_pending(atls_mirror_t *m);
/* Called from atls_mirror_on_io (atls_mirror_poll) when an announcement
 * asks for a registry sync, so that an event loop schedules its steps at
 * once instead of at its next check; fn must not call into the mirror. */
typedef void (*atls_mirror_names_fn)(void *ctx);
void atls_mirror_set_names_hook(atls_mirror_t *m, atls_mirror_names_fn fn, void *ctx);
/* Redis's registry generation (0: none): ATLS_STORE_OK, or ERROR + err. */
int atls_mirror_redis_names_generation(atls_mirror_t *m, uint64_t *gen, char *err,
                                       size_t errlen);
/* The Redis registry generation the mirror took last (0: never). */
uint64_t atls_mirror_names_generation(atls_mirror_t *m);

/* ---- announcements (mirror_listen.c) --------------------------------------- */

/* Opens the subscriber connection (non-blocking: connecting, then
 * SUBSCRIBE <P>gen <P>chal queued: challenges, below).  0, or -1 + err; a previous one is closed.
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
 * certificate whose generation is newer than the mirror's (and hands
 * announced challenges to the responder, then acks them); an announced
 * registry change is only marked (atls_mirror_names_pending, the names
 * hook), never synced inside the read.  The number of
 * certificates pulled (>= 0), or -1 + err when the subscriber failed (or
 * a pull failed: the announcement is then left to the next sync). */
int atls_mirror_on_io(atls_mirror_t *m, int events, char *err, size_t errlen);
/* For hosts without an event loop (the CLI, tests, Apache's watchdog):
 * waits up to timeout_ms for the subscriber and handles what came, as
 * atls_mirror_on_io. */
int atls_mirror_poll(atls_mirror_t *m, int timeout_ms, char *err, size_t errlen);

/* ---- the cluster: members and challenges (mirror_cluster.c) ------------- */

/*
 * Any node answers any validation (docs/store.md, "Redis: challenges"):
 * the choice is "the ordering node waits until every live node has loaded
 * the challenge", so that the request path (http-01 handler, tls-alpn-01
 * in the handshake) stays local on nginx and Apache alike, and every node
 * gives the same answer to the CA's several vantage points.
 *
 *   <P>{/cluster}:members         ZSET node-id -> heartbeat expiry (ms since
 *                                 the epoch, Redis TIME); a node is live while
 *                                 its expiry is in the future
 *   <P>{/chal}:<type>:<key>       the answer (key authorisation, or the
 *                                 tls-alpn-01 certificate and key PEM, sealed
 *                                 with the key file), with a TTL
 *   <P>{/chal}:ack:<type>:<key>   SET of node-ids that loaded it (same TTL)
 *   <P>chal                       channel: "+<type> <key>" published,
 *                                 "-<type> <key>" withdrawn
 *
 * A node joins (atls_mirror_join) before it answers, loads every challenge
 * present (a node that starts mid-order), and heartbeats every third of
 * its TTL.  The subscriber (atls_mirror_listen: both channels) hands each
 * announced challenge to the host's responder (nginx: the shared zone;
 * Apache: the mirror directory's challenges/), then adds the node to the
 * ack set.  The ordering node's publish_wait (atls_sched.h) polls
 * atls_mirror_challenge_ready until every live member acked, at most
 * ATLS_MIRROR_ACK_WAIT_MS: then it goes on with the nodes that answered
 * (logged with the ones that did not).
 */

#define ATLS_MIRROR_CHAL_CHANNEL   "chal"        /* after the prefix */
#define ATLS_MIRROR_MEMBER_TTL_MS  15000
#define ATLS_MIRROR_CHAL_TTL_S     3600
#define ATLS_MIRROR_ACK_WAIT_MS    10000

/* The host's responder for challenges of other nodes (and of its own):
 * add 1: answer key (an http-01 token, a tls-alpn-01 name) with data (len
 * bytes; a tls-alpn-01 certificate and key PEM: private); add 0: stop
 * answering it.  0, or -1 (why) when it cannot: the node does not ack. */
typedef int (*atls_mirror_chal_fn)(void *ctx, int add, atls_challenge_type_t t,
                                   const char *key, const char *data, size_t len,
                                   char *why, size_t whylen);

/* Registers the responder (before atls_mirror_join / listen). */
void atls_mirror_set_responder(atls_mirror_t *m, atls_mirror_chal_fn fn, void *ctx);
/* The node's id (conf->node_id, or the default documented in atls_redis.h). */
const char *atls_mirror_node_id(atls_mirror_t *m);

/* Enters (or refreshes) the member registry for ATLS_MIRROR_MEMBER_TTL_MS;
 * the first call (and the first after Redis came back) also loads every
 * challenge present into the responder and acks it, and each call copies
 * the cluster's counters into the mirror (atls_mirror_counters_pull; a
 * failure there is logged, not returned).  The host calls it every third
 * of the TTL.  0, or -1 + err (Redis unreachable: the node is
 * not counted, and orders elsewhere do not wait for it). */
int atls_mirror_join(atls_mirror_t *m, char *err, size_t errlen);
/* The cluster's counters (counters.json, the status page's events and
 * orders totals) copied from Redis into the mirror when they changed, so
 * that a status page rendered from the mirror shows every node's events
 * (mirror_counters.c).  atls_mirror_join calls it at each heartbeat; this
 * node's own additions reach the mirror as they are written.  1 copied,
 * 0 nothing new (or none in Redis), -1 + err (the copy is kept). */
int atls_mirror_counters_pull(atls_mirror_t *m, char *err, size_t errlen);
/* Leaves the registry (a clean stop): others stop waiting for it at once. */
void atls_mirror_leave(atls_mirror_t *m);
/* The live members' ids, malloc'd array of malloc'd strings. */
int atls_mirror_members(atls_mirror_t *m, char ***ids, size_t *n, char *err, size_t errlen);

/* The ordering node: stores the challenge in Redis (sealed when private),
 * answers it here through the responder, acks it, and announces it.
 * 0, or -1 + err (the challenge is not published anywhere). */
int atls_mirror_challenge_publish(atls_mirror_t *m, atls_challenge_type_t t, const char *key,
                                  const char *data, size_t len, char *err, size_t errlen);
/* Withdraws it everywhere (Redis, here, announced).  Errors are logged. */
void atls_mirror_challenge_withdraw(atls_mirror_t *m, atls_challenge_type_t t,
                                    const char *key);
/* 1 when every live member has acked (missing, may be NULL: set to a
 * malloc'd comma-separated list of those that have not when 0), 0 not
 * yet, -1 + err (Redis unreachable). */
int atls_mirror_challenge_ready(atls_mirror_t *m, atls_challenge_type_t t, const char *key,
                                char **missing, char *err, size_t errlen);

#endif
