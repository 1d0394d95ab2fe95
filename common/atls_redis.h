/*
 * Redis for a cluster of autotls nodes (issue 12): the client, the URL and
 * options, encryption at rest, leases, and the store backend built on them.
 *
 * The wire protocol is hiredis's (0.14.1, Debian 12): replies are parsed
 * by its redisReader and commands formatted by redisFormatCommandArgv; no
 * RESP is written or parsed here.  hiredis 0.14 has no TLS, so the
 * connection is our own: a non-blocking socket, plain or OpenSSL.
 *
 * Contract for the hosts (later rounds):
 *  - The client never blocks.  The host asks atls_redis_fd() and
 *    atls_redis_wants() what to wait for, waits with its own event loop
 *    (nginx: an ngx_connection_t on that fd; Apache's watchdog and the CLI:
 *    the blocking wrapper below), and calls atls_redis_io() when the fd is
 *    ready.  Commands may be queued at any time, even while connecting:
 *    they are sent once AUTH and SELECT have gone out, and their replies
 *    come back in order through atls_redis_reply().
 *  - Errors are text with the field, file or command they concern; no
 *    error, log line or description ever holds the password or the key.
 *  - One client is one connection, used by one thread at a time.
 *
 * What is supported: one endpoint (a Redis or Valkey server, or a proxy in
 * front of a cluster).  The key layout (docs/store.md, "Redis") uses hash
 * tags so that every multi-key script touches one slot, ready for Redis
 * Cluster; the client does not follow MOVED/ASK redirections, nor does it
 * ask a Sentinel.
 */
#ifndef ATLS_REDIS_H
#define ATLS_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>
#include "atls_store.h"

/* ---- where Redis is: the URL and its options (redis_url.c) -------------- */

#define ATLS_REDIS_DEFAULT_PORT     6379
#define ATLS_REDIS_DEFAULT_PREFIX   "atls:"
#define ATLS_REDIS_PREFIX_MAX       64
#define ATLS_REDIS_TIMEOUT_MS       5000    /* connect, and each command */
#define ATLS_REDIS_TIMEOUT_MIN_MS   10      /* the timeout= option's range */
#define ATLS_REDIS_TIMEOUT_MAX_MS   600000

/*
 * A Redis that accepts connections but does not answer (host hung,
 * SIGSTOP, a network black hole) costs every blocking call its whole
 * timeout.  A host whose blocking calls run on a serving event loop
 * (nginx) shares one of these through the conf (a pointer, copied with
 * it): the first blocking call that times out marks Redis unresponsive,
 * and from then on every blocking connect or call fails at once, without
 * touching the network, until the host saw Redis answer on a connection
 * it drives without blocking (its subscriber) and calls
 * atls_redis_health_up().  NULL in the conf: no gate (the CLI, Apache's
 * watchdog thread).  One thread at a time, as the connections using it.
 */
typedef struct {
    int   unresponsive;
    char  why[256];     /* what timed out first */
} atls_redis_health_t;

typedef struct {
    char     *host;       /* name or IP literal (IPv6 without brackets) */
    int       port;       /* 1..65535, ATLS_REDIS_DEFAULT_PORT when absent */
    char     *user;       /* ACL user, NULL: AUTH with the password alone */
    char     *password;   /* NULL: no AUTH.  Secret: never logged */
    long      db;         /* SELECT db when > 0 */
    int       tls;        /* rediss:// or the "tls" option */
    char     *ca_file;    /* trust for the server's certificate; NULL: the
                             system's default CA paths */
    char     *key_file;   /* the encryption key at rest (atls_redis_key_load) */
    char     *prefix;     /* every key starts with it; ATLS_REDIS_DEFAULT_PREFIX */
    int       timeout_ms; /* timeout=MS: the blocking wrapper's connect and
                             per command; 0 (absent): the host's default,
                             ATLS_REDIS_TIMEOUT_MS unless the host says */
    atls_redis_health_t *health;  /* hosts only: the gate above (not owned,
                                     copied as a pointer); NULL: none */
    /* Hosts only (nginx, Apache; the CLI ignores them): */
    char     *mirror_dir; /* mirror=DIR: the node's local mirror; NULL: the
                             host's default store directory */
    char     *node_id;    /* node=ID: this node in the cluster's member
                             registry (printable ASCII, no blank, at most
                             ATLS_REDIS_NODE_MAX); NULL: "<hostname>:<mirror
                             directory>", unique per node on one machine */
} atls_redis_conf_t;

#define ATLS_REDIS_NODE_MAX  128

/* Parses `redis://[user:password@]host[:port][/db]` or `rediss://...`
 * (user and password percent-decoded; `redis://:password@host` is a
 * password alone; an IPv6 host in brackets) and the option words that
 * follow it in a directive: `tls`, `ca_file=F`, `key_file=F`, `prefix=P`,
 * `timeout=MS` (ATLS_REDIS_TIMEOUT_MIN_MS..ATLS_REDIS_TIMEOUT_MAX_MS),
 * and for hosts `mirror=DIR` (an absolute path) and `node=ID`.
 * Each option at most once; ca_file needs TLS; a prefix is printable
 * ASCII without space, '{' or '}' (they would break the hash tags).
 * 0, or -1 with err naming the field ("redis URL port: ...",
 * "redis option prefix: ...") and c left empty.  The password is never
 * copied into err. */
int atls_redis_conf_parse(const char *url, char *const *opts, size_t n_opts,
                          atls_redis_conf_t *c, char *err, size_t errlen);
/* The same for one line: the URL then options, separated by blanks (the
 * CLI's --store value). */
int atls_redis_conf_parse_line(const char *line, atls_redis_conf_t *c,
                               char *err, size_t errlen);
void atls_redis_conf_free(atls_redis_conf_t *c);
/* Deep copy of s into d (overwritten, not freed). */
void atls_redis_conf_copy(atls_redis_conf_t *d, const atls_redis_conf_t *s);
/* "redis[s]://[user@]host:port/db" for messages: never the password.
 * malloc'd. */
char *atls_redis_conf_describe(const atls_redis_conf_t *c);

/* ---- the client: a state machine over a non-blocking fd (redis_conn.c) -- */

typedef struct atls_redis_s atls_redis_t;

typedef enum {
    ATLS_REDIS_CONNECTING = 0,   /* TCP connect in progress */
    ATLS_REDIS_TLS_HANDSHAKE,    /* TLS handshake in progress */
    ATLS_REDIS_SETUP,            /* AUTH / SELECT sent, their replies awaited */
    ATLS_REDIS_READY,            /* commands flow */
    ATLS_REDIS_FAILED            /* closed; atls_redis_error() says why */
} atls_redis_state_t;

/* What the host waits for on atls_redis_fd(): a bit mask. */
#define ATLS_REDIS_WANT_READ   1
#define ATLS_REDIS_WANT_WRITE  2

/* Starts connecting (resolution of the host name, which may block, is
 * numeric-first: pass an IP literal on an event loop).  NULL + err when
 * not even started (resolution, socket, TLS context: ca_file unreadable).
 * conf is copied. */
atls_redis_t *atls_redis_connect(const atls_redis_conf_t *conf, char *err, size_t errlen);
void atls_redis_free(atls_redis_t *c);

/* The socket, -1 once FAILED.  While CONNECTING it may change (a refused
 * address is followed by the host's next one): ask again after each
 * atls_redis_io().  Hosts ignore SIGPIPE (nginx and Apache do): a TLS
 * write to a closed peer would otherwise raise it. */
int atls_redis_fd(const atls_redis_t *c);
atls_redis_state_t atls_redis_state(const atls_redis_t *c);
/* ATLS_REDIS_WANT_* bits (0 when FAILED). */
int atls_redis_wants(const atls_redis_t *c);
/* The fd is ready (events: ATLS_REDIS_WANT_* bits that fired; passing both
 * is always safe).  Moves the state machine as far as it can without
 * blocking: connect, handshake, write queued commands, read replies.
 * 0, or -1 when the connection failed (state FAILED, atls_redis_error). */
int atls_redis_io(atls_redis_t *c, int events);
/* Why it failed ("" when it has not). */
const char *atls_redis_error(const atls_redis_t *c);

/* What one reply may hold, whoever wrote it (Redis content is untrusted:
 * another node, or anyone with access to Redis): the bytes of its strings
 * and the values of its arrays.  A reply beyond them fails the connection
 * (its error names the limit) instead of growing memory with whatever the
 * server sends.  The largest store value (64 MiB, store_redis.c) fits. */
#define ATLS_REDIS_REPLY_BYTES_MAX  (80u * 1024 * 1024)
#define ATLS_REDIS_REPLY_ITEMS_MAX  (1u << 20)

/* Queues one command (argv with lengths: binary-safe); 0, or -1 when
 * FAILED or the command cannot be formatted. */
int atls_redis_send(atls_redis_t *c, int argc, const char **argv, const size_t *argvlen);
/* The next reply, in the order of the commands: 1 and *reply (free with
 * freeReplyObject), 0 when none is complete yet, -1 when FAILED. */
int atls_redis_reply(atls_redis_t *c, redisReply **reply);
/* Commands sent (or queued) whose replies have not been taken yet. */
size_t atls_redis_pending(const atls_redis_t *c);
/* Liveness of a connection the host drives without blocking (a
 * subscriber: Redis answers PING there too, with a reply
 * atls_redis_message skips): queues a PING unless one is unanswered
 * still, and returns how long (ms) that one has waited with nothing at
 * all read from the server since it was queued; 0 when it was just sent
 * (or the server said something since), -1 when not READY. */
long atls_redis_ping(atls_redis_t *c);
/* The clock of the client's timeouts: monotonic milliseconds. */
long long atls_redis_now_ms(void);
/* The gate the connection was opened with (conf->health), or NULL. */
atls_redis_health_t *atls_redis_health(const atls_redis_t *c);
/* Its conf's timeout_ms (ATLS_REDIS_TIMEOUT_MS when 0 there). */
int atls_redis_timeout_ms(const atls_redis_t *c);

/* ---- the blocking wrapper, with timeouts (redis_sync.c) ------------------ */

/* Connects and waits until READY (AUTH and SELECT answered), at most
 * conf->timeout_ms (ATLS_REDIS_TIMEOUT_MS when 0).  NULL + err: "redis
 * <where>: AUTH: WRONGPASS ...", "...: TLS: certificate verify failed",
 * "...: connect: Connection refused", "...: timed out", "...: not
 * answering (...), not tried until it answers" (conf->health, above). */
atls_redis_t *atls_redis_open_sync(const atls_redis_conf_t *conf, char *err, size_t errlen);
/* One command and its reply, waiting at most timeout_ms (0: the conf's).
 * A Redis error reply is returned as a reply (type REDIS_REPLY_ERROR);
 * -1 + err only when the connection fails or times out (the connection
 * is then FAILED: it is not known where the stream stands), or at once
 * while the connection's health gate is closed (nothing sent). */
int atls_redis_call(atls_redis_t *c, int argc, const char **argv, const size_t *argvlen,
                    redisReply **reply, int timeout_ms, char *err, size_t errlen);
/* The same with NUL-terminated words, NULL-terminated list. */
int atls_redis_callv(atls_redis_t *c, redisReply **reply, char *err, size_t errlen, ...)
    __attribute__((sentinel));
/* The gate (atls_redis_health_t): marks Redis unresponsive for why; 1
 * when it was not already (the host says so once), 0 when it was. */
int atls_redis_health_down(atls_redis_health_t *h, const char *why);
/* Redis answered a connection the host drives without blocking: blocking
 * calls may go out again. */
void atls_redis_health_up(atls_redis_health_t *h);

/* A Lua script through EVALSHA (its SHA-1 computed here), falling back to
 * EVAL on NOSCRIPT.  keys then args. */
int atls_redis_eval(atls_redis_t *c, const char *script, int nkeys, const char **keys,
                    int nargs, const char **args, const size_t *arglens,
                    redisReply **reply, char *err, size_t errlen);

/* ---- encryption at rest (redis_seal.c) ----------------------------------- */

#define ATLS_REDIS_KEY_BYTES    32
#define ATLS_REDIS_SEAL_VERSION 0x01
#define ATLS_REDIS_KEYID_BYTES  8
#define ATLS_REDIS_NONCE_BYTES  12
#define ATLS_REDIS_TAG_BYTES    16
#define ATLS_REDIS_SEAL_OVERHEAD \
    (1 + ATLS_REDIS_KEYID_BYTES + ATLS_REDIS_NONCE_BYTES + ATLS_REDIS_TAG_BYTES)

typedef struct {
    unsigned char key[ATLS_REDIS_KEY_BYTES];
    unsigned char id[ATLS_REDIS_KEYID_BYTES];   /* SHA-256("autotls redis key id" || key)[0..8] */
} atls_redis_key_t;

/* Reads the key file: a regular file (not a link), no permission for
 * group or others (0600 or 0400), holding exactly 32 raw bytes, or 64 hex
 * digits with at most one trailing newline (`openssl rand -hex 32`).
 * 0, or -1 with err naming the file.  k is wiped on failure. */
int atls_redis_key_load(const char *file, atls_redis_key_t *k, char *err, size_t errlen);
void atls_redis_key_wipe(atls_redis_key_t *k);

/* The sealed format (all of it is the value stored in Redis):
 *   version (1 byte, ATLS_REDIS_SEAL_VERSION) | key id (8) | nonce (12,
 *   random) | AES-256-GCM ciphertext (as long as the clear text) | tag (16)
 * with AAD = version | key id | the Redis key name, so that a value
 * copied under another key, or sealed with another key file, does not
 * open.  seal: malloc'd *out of len + ATLS_REDIS_SEAL_OVERHEAD bytes. */
int atls_redis_seal(const atls_redis_key_t *k, const char *aad, size_t aadlen,
                    const void *in, size_t len, unsigned char **out, size_t *outlen,
                    char *err, size_t errlen);
/* *out malloc'd, NUL-terminated (len bytes of clear text, plus the NUL).
 * -1 + err: "too short", "unknown version N", "sealed with another key
 * (id ...)", "authentication failed (tampered, or moved from another
 * key)"; the caller adds the key name. */
int atls_redis_open(const atls_redis_key_t *k, const char *aad, size_t aadlen,
                    const unsigned char *in, size_t len, char **out, size_t *outlen,
                    char *err, size_t errlen);

/* ---- leases: one holder per certificate cluster-wide (redis_lease.c) ----- */

#define ATLS_REDIS_LEASE_MS   60000   /* the store's locks: lost within this
                                         after a holder dies */
#define ATLS_REDIS_TOKEN_HEX  32      /* 128 random bits, as hex */

typedef struct {
    char     lease_key[512];   /* <prefix>{tag}:lease */
    char     fence_key[512];   /* <prefix>{tag}:fence (same slot) */
    char     token[ATLS_REDIS_TOKEN_HEX + 1];
    uint64_t fence;            /* INCR of fence_key when acquired */
    long     ttl_ms;
} atls_redis_lease_t;

/* Lease keys for a store lock name: "cert-<cert-id>" takes the
 * certificate's hash tag {<cert-id>} (so a fenced write of its entries is
 * one script on one slot); any other name {/locks/<name>}. */
void atls_redis_lease_keys(const char *prefix, const char *name, atls_redis_lease_t *l);

/* SET lease token NX PX ttl and, when it was free, INCR fence: one script.
 * ATLS_STORE_OK (l->token, l->fence set), ATLS_STORE_BUSY (held by
 * another token), ATLS_STORE_ERROR + err. */
int atls_redis_lease_acquire(atls_redis_t *c, atls_redis_lease_t *l, long ttl_ms,
                             char *err, size_t errlen);
/* PEXPIRE only while the lease still holds our token: OK, BUSY when it is
 * lost (expired, taken over), ERROR. */
int atls_redis_lease_renew(atls_redis_t *c, atls_redis_lease_t *l, char *err, size_t errlen);
/* Compare-and-delete: OK when it was ours and is gone, BUSY when it was
 * not ours any more (nothing deleted), ERROR. */
int atls_redis_lease_release(atls_redis_t *c, atls_redis_lease_t *l, char *err, size_t errlen);
/* Before a deploy: OK when the lease still holds our token and the fence
 * counter is still l->fence (nobody acquired it since), BUSY when stale. */
int atls_redis_lease_check(atls_redis_t *c, const atls_redis_lease_t *l,
                           char *err, size_t errlen);

/* ---- the store backend (store_redis.c) ----------------------------------- */

/* A store over Redis: conf->key_file is required (private entries are
 * sealed).  Connects at once (blocking, conf->timeout_ms) so that a wrong
 * password or a TLS failure is reported at start.  conf is copied.  The
 * ops: get/put/del/list as the fs backend (list through a per-directory
 * index SET, never KEYS or SCAN), lock/unlock as leases of
 * ATLS_REDIS_LEASE_MS (renewed by every later call on the store past a
 * third of it, and by atls_store_redis_renew), append as a list capped
 * at rotate_bytes * (keep + 1) bytes (one key: no path.N rotations). */
atls_store_t *atls_store_redis_open(const atls_redis_conf_t *conf, char *err, size_t errlen);
/* Renews the store's held leases now; the number lost since (0 normally). */
int atls_store_redis_renew(atls_store_t *st);
/* The lease behind a lock from this backend's lock op (NULL otherwise). */
const atls_redis_lease_t *atls_store_redis_lease(atls_store_t *st, atls_store_lock_t *lk);
/* A put that lands only while lk's lease and fence still hold (a deploy
 * after a long order): one script, so nobody can take the lease between
 * the check and the write.  path must be in the lease's slot (a "cert-<id>"
 * lock and a certs/<id>/ path).  ATLS_STORE_BUSY when the lease is stale. */
int atls_store_redis_put_fenced(atls_store_t *st, atls_store_lock_t *lk, const char *path,
                                const char *data, size_t len, int is_private,
                                char *err, size_t errlen);
/* The delete of a holder under lk, fenced like the put: an entry of the
 * lease's slot is deleted (value and index) in one script only while the
 * lease and fence hold; anything else (a certificate's directory, whose
 * parent's index is in another slot) after a check of the lease.
 * ATLS_STORE_OK, NOTFOUND, BUSY when the lease is stale (nothing deleted),
 * ERROR. */
int atls_store_redis_del_fenced(atls_store_t *st, atls_store_lock_t *lk, const char *path,
                                char *err, size_t errlen);
/* The Redis key of a store path's value (for tests and `autotls` tools);
 * malloc'd, NULL when path does not pass. */
char *atls_store_redis_key(atls_store_t *st, const char *path);

#endif
