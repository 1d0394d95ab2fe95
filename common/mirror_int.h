/*
 * Shared by the mirror's files only: mirror.c (the object, generations),
 * mirror_sync.c (pull and push), mirror_store.c (the store ops),
 * mirror_listen.c (announcements) and mirror_cluster.c (members and
 * challenges).  The contract is atls_mirror.h.
 */
#ifndef ATLS_MIRROR_INT_H
#define ATLS_MIRROR_INT_H

#include "atls_mirror.h"

/* A lock taken through the mirror's store: the Redis store's lock, and
 * for a certificate's lock whether its files were written under it. */
typedef struct mirror_lock_s {
    atls_store_lock_t     *lk;
    char                   id[256];   /* "" when not a certificate's lock */
    int                    dirty;
    struct mirror_lock_s  *next;
} mirror_lock_t;

struct atls_mirror_s {
    atls_redis_conf_t  conf;
    atls_store_t      *rs;        /* NULL while Redis cannot be reached */
    atls_store_t      *fs;
    atls_store_t       store;     /* atls_mirror_store(): ops of mirror_store.c */
    atls_redis_t      *sub;       /* the subscriber, NULL when not listening */
    int                subscribed;
    int                confirmed; /* SUBSCRIBEs Redis confirmed (2: both) */
    mirror_lock_t     *locks;
    char              *channel;   /* <prefix>gen */
    char              *cluster_key;   /* <prefix>{/cluster}:gen */

    /* The cluster (mirror_cluster.c) */
    char              *chal_channel;  /* <prefix>chal */
    char              *node_id;       /* conf.node_id or <hostname>:<dir> */
    atls_mirror_chal_fn responder;
    void              *responder_ctx;
    int                loaded;        /* every challenge present was loaded
                                         since Redis was last reached */

    struct mirror_sync_s *sync;       /* a sliced sync under way (mirror_sync.c) */

    /* The registry of names (mirror_names.c): one sync under way, shared
     * by the full sync's end and atls_mirror_sync_names_step, and whether
     * an announcement asked for one since the last began. */
    struct mirror_names_sync_s *names;
    int                names_wanted;
    atls_mirror_names_fn names_hook;
    void              *names_hook_ctx;
};

extern const atls_store_ops_t atls_mirror_ops;

/* The Redis store, opened again when it could not be before; NULL + err. */
atls_store_t *atls_mirror_rs(atls_mirror_t *m, char *err, size_t errlen);
/* 1 when the Redis store's connection is down (after a failed call): what
 * tells "unreachable" from "refused" for the read fallback. */
int atls_mirror_redis_down(atls_mirror_t *m);
/* The blocking connection of the Redis store, for the mirror's own
 * commands; NULL + err. */
atls_redis_t *atls_mirror_conn(atls_mirror_t *m, char *err, size_t errlen);

/* "<prefix>{<id>}:gen", malloc'd. */
char *atls_mirror_gen_key(atls_mirror_t *m, const char *id);
/* Writes the mirror's generation for id. */
int atls_mirror_set_generation(atls_mirror_t *m, const char *id, uint64_t gen,
                               char *err, size_t errlen);

/* A decimal generation ("12", "12\n"): 0 and *gen, -1 when it is not one. */
int atls_mirror_parse_gen(const char *s, size_t len, uint64_t *gen);

/* Writes it without the store-wide bump: the caller bumps for a batch
 * (atls_store_bump_generation_many) before it returns. */
int atls_mirror_write_generation(atls_mirror_t *m, const char *id, uint64_t gen,
                                 char *err, size_t errlen);
/* A step of the registry's sync under way (m->names, mirror_names.c):
 * none starts one (the mirror current: *done at once); a step goes
 * through at most MIRROR_NAMES_STEP_MAX entries and, when until
 * (atls_rs_now_ms) is not 0 and the entries to go through are more than
 * one step's, stops past it after one; what it wrote is journaled and the
 * mirror's store generation bumped before it returns.  1 when the step
 * changed the mirror, 0, -1 + err; *done when the registry is Redis's
 * (the sync is dropped then, and after an error). */
#define MIRROR_NAMES_STEP_MAX  256
typedef struct mirror_names_sync_s mirror_names_sync_t;
int mirror_names_step(atls_mirror_t *m, long long until, int *done, char *err,
                      size_t errlen);
/* Drops the registry's sync under way, if any. */
void mirror_names_end(atls_mirror_t *m);

/* The certificates pulled in one step of a sync (mirror_batch.c): ids[i]
 * pulled at gens[i], their records written up to ids[written]; pending:
 * the groups of files (certs/<id>) not written yet, with a slot past them
 * for the records' group. */
typedef struct {
    char               **ids;
    uint64_t            *gens;
    size_t               n, cap, written;
    atls_store_group_t  *pending;
    size_t               np, pcap, bytes;
} mirror_batch_t;
/* id pulled at gen: files (malloc'd, names and data too: the batch's from
 * now on; n 0 when the mirror holds them already) to write into dir with
 * the batch; written at once when the batch is full.  OK, or ERROR + err
 * (that write failed: its certificates are pulled again by the next sync). */
int mirror_batch_add(atls_mirror_t *m, mirror_batch_t *b, const char *id, uint64_t gen,
                     const char *dir, atls_store_file_t *files, size_t n, char *err,
                     size_t errlen);
/* What waits written: the groups, then the records (one put_groups). */
int mirror_batch_write(atls_mirror_t *m, mirror_batch_t *b, char *err, size_t errlen);
/* Written, then one bump of the store generation for every certificate
 * of the batch (even after a failed write); emptied.  OK or ERROR + err. */
int mirror_batch_flush(atls_mirror_t *m, mirror_batch_t *b, char *err, size_t errlen);

/* Drops a sliced sync under way (atls_mirror_sync_step) and the
 * registry's, if any. */
void mirror_sync_end(atls_mirror_t *m);

#define MIRROR_BUMP_INCR   0   /* a deploy: max(Redis, floor) + 1 */
#define MIRROR_BUMP_RAISE  1   /* a push: up to floor, never lower */
/* The certificate's generation in Redis, in one script with the check of
 * lease (NULL: none) and its fence; then the cluster generation and the
 * announcement.  OK + *gen (0 for a raise that changed nothing), BUSY when
 * the lease is stale, ERROR + err. */
int atls_mirror_bump(atls_mirror_t *m, const char *id, const atls_redis_lease_t *lease,
                     int mode, uint64_t floor, uint64_t *gen, char *err, size_t errlen);

/* The node id used when conf has none: "<hostname>:<dir>" (blanks and
 * control bytes as '_', the end kept when too long), malloc'd. */
char *atls_mirror_default_node(const char *dir);
/* What the cluster accepts from Redis (mirror_chal.c; the fuzz
 * harness's entry points): a key of type t (1: an http-01 token, a
 * tls-alpn-01 name or IP; 0 for other types); "<type> <key>" (an index
 * entry, an announcement after its sign) into *t and key (0), -1 when it
 * is not one; an answer the responder may be handed (1), 0 + why. */
#define MIRROR_CHAL_KEY_MAX   255            /* a token, a name */
#define MIRROR_CHAL_ALPN_MAX  (64 * 1024)    /* certificate and key PEM */
int atls_mirror_chal_key_ok(atls_challenge_type_t t, const char *key);
int atls_mirror_chal_parse(const char *s, size_t len, atls_challenge_type_t *t, char *key,
                           size_t keylen);
int atls_mirror_chal_data_ok(atls_challenge_type_t t, const char *data, size_t len,
                             char *why, size_t whylen);
/* A message on <prefix>chal ("+<type> <key>" / "-<type> <key>"): handed
 * to the responder, then acked; what goes wrong is logged. */
void atls_mirror_chal_message(atls_mirror_t *m, const char *payload, size_t len);

/* The cert-id of a certs/<id>/... path into id (0), or -1 when path is not
 * under a certificate's directory. */
int atls_mirror_cert_of(const char *path, char *id, size_t idlen);
/* Whether the fs backend writes this mirrored path 0600. */
int atls_mirror_is_private(const char *path);

#endif
