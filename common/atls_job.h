/*
 * Jobs: one certificate's life, tying the engine to the store.
 * Both hosts and the CLI use this; only the way they drive the engine
 * (blocking or evented) differs.
 */
#ifndef ATLS_JOB_H
#define ATLS_JOB_H

#include "atls.h"
#include "atls_acme.h"
#include "atls_acme_drive.h"
#include "atls_store.h"
#include "atls_sched.h"

/* Makes sure the store has meta for this certificate: creates it (state
 * pending) or updates names/issuer when the configuration changed, keeping
 * job state.  *out (may be NULL) receives the current meta. */
int atls_job_ensure(atls_store_t *st, const char *const *names, size_t n,
                    const atls_issuer_t *is, atls_cert_meta_t *out,
                    char *err, size_t errlen);

/* 1 when m needs an attempt now: a key type has no certificate, or renew_at
 * has passed, or an operator request is pending (force=1) -- and the backoff
 * (next_attempt) allows it (force ignores backoff).  atls_job_plan with the
 * pending request read from st (a key type m has no kt_info for is looked
 * up in st, in memory only, for a meta that predates ensure's backfill). */
int atls_job_due(atls_store_t *st, const atls_cert_meta_t *m, time_t now, int force);

/* m's kt_info entry for kt, NULL when it records no certificate of kt. */
const atls_cert_kt_info_t *atls_job_kt_info(const atls_cert_meta_t *m, atls_key_type_t kt);

/* Fills m->kt_info from the stored certificate files for each configured
 * key type m has no entry for (a store written before meta recorded them;
 * atls_job_ensure does this once and saves).  Returns how many were added. */
int atls_job_kt_info_load(atls_store_t *st, atls_cert_meta_t *m);

/* ---- the plan: what a certificate needs now ---------------------------- */

typedef enum {
    ATLS_PLAN_NOTHING = 0,    /* nothing due; see next */
    ATLS_PLAN_ARI,            /* ask the CA for renewal information */
    ATLS_PLAN_ORDER           /* order kts[0..n_kts-1], in that order */
} atls_plan_kind_t;

typedef struct {
    atls_plan_kind_t kind;
    atls_key_type_t  kts[ATLS_KEY_TYPE_MAX];
    size_t           n_kts;
    const char      *reason;  /* static text for logs: "no certificate yet",
                                 "names changed", "renewal due", "requested
                                 by an operator", ... */
    time_t           next;    /* NOTHING: when to look again (0: no idea) */
} atls_plan_t;

/* Pure: decides from m alone (its kt_info, renew_at, backoff, ARI state)
 * and the clock.  request_at: when an operator asked for a renewal (0:
 * no request pending); force: attempt now whatever the backoff (CLI).
 * ari: 1 when the host asks for renewal information.
 * Key types: only the missing or outdated ones unless a renewal of the
 * whole set is due (renew_at passed, forced, requested). */
void atls_job_plan(const atls_cert_meta_t *m, time_t now, time_t request_at, int force,
                   int ari, atls_plan_t *out);

typedef struct atls_job_s atls_job_t;

/* Starts an order for one key type of m: loads or creates the account key,
 * generates a fresh certificate key, builds the engine.  Marks meta
 * "renewing" in the store.  NULL + err when it cannot start. */
atls_job_t *atls_job_start(atls_store_t *st, const atls_cert_meta_t *m,
                           atls_key_type_t kt, char *err, size_t errlen);
/* Why atls_job_start_planned did not start an order. */
typedef enum {
    ATLS_JOB_NOT_STARTED = 0,   /* an error (err): the store, the key, ... */
    ATLS_JOB_BUSY,              /* another process (another node of a
                                   cluster) holds the certificate's lock */
    ATLS_JOB_SUPERSEDED         /* under the lock, the store holds another
                                   certificate of kt than m (the meta the
                                   plan was made from) had: renewed
                                   meanwhile by another process */
} atls_job_refusal_t;
/* atls_job_start for a scheduler that planned from m: when the lock is
 * taken, m's certificate of kt is compared with the store's, so that two
 * processes planning the same renewal order it once.  NULL + *why. */
atls_job_t *atls_job_start_planned(atls_store_t *st, const atls_cert_meta_t *m,
                                   atls_key_type_t kt, atls_job_refusal_t *why,
                                   char *err, size_t errlen);
atls_acme_t *atls_job_engine(atls_job_t *j);
const atls_cert_meta_t *atls_job_meta(atls_job_t *j);

/* Cluster (issue 12): the order's challenges went to validation before
 * the nodes of missing had confirmed them ("web-2,web-3"; "" when not
 * known which; NULL: every node did, the default): the host's
 * publish_wait gave up waiting (atls_sched_hook_done_partial).  Call it
 * before atls_job_finish: should the order fail the way a node without
 * the answer makes the CA fail it (atls_schedule_lagged), finish records
 * the failure as transient, the short backoff, with the detail
 * "validation failed while nodes web-2,web-3 had not confirmed the
 * challenge: retrying in S s; the CA said: ..." in its one log line, the
 * stored error and atls_job_finish_error. */
void atls_job_set_lagged(atls_job_t *j, const char *missing);

/* After the engine reached DONE or FAILED: persists the outcome.
 * Success: account URL, key+chain (atomically, validated), meta valid,
 *   failures 0, renew_at from the schedule, generation bumped.
 * Failure: failures+1, next_attempt by the backoff of the error's class
 *   (atls_problem_backoff_class; Retry-After wins; a lagged failure, see
 *   atls_job_set_lagged, the short one), the error in parts
 *   (last_error_class/type/detail/key_type) and last_error "type: detail",
 *   live certificate untouched.  One meta write, one log line.
 * Returns 0 when a certificate was deployed, -1 otherwise (err set). */
int atls_job_finish(atls_job_t *j, time_t now, char *err, size_t errlen);

/* After atls_job_finish returned -1: why, as one error (class, type,
 * detail, cert_id, key_type, retry_after), valid until atls_job_free.
 * NULL when the job has not finished or it deployed a certificate. */
const atls_error_t *atls_job_finish_error(const atls_job_t *j);
void atls_job_free(atls_job_t *j);

/* Blocking: every key type of the certificate `id` in turn; 0 when all succeeded. */
int atls_job_run_blocking(atls_store_t *st, const char *id,
                          const atls_challenge_ops_t *ops, char *err, size_t errlen);

/* Same, for a certificate whose settings the caller holds (the stored meta
 * never carries the EAB secret, so a first run with EAB must come here). */
int atls_job_run_blocking_meta(atls_store_t *st, const atls_cert_meta_t *m,
                               const atls_challenge_ops_t *ops, char *err, size_t errlen);

/* Revoke the current certificate(s) of id; 0 ok. */
int atls_job_revoke_blocking(atls_store_t *st, const char *id, int reason,
                             char *err, size_t errlen);

/* HTTP options for an issuer (CA file, default timeouts). */
void atls_job_http_opts(const atls_issuer_t *is, atls_http_opts_t *opts);

/* ---- ARI (RFC 9773): the CA's say in when to renew -------------------- */

/* 1 when m's certificate is valid and its renewal information should be
 * (re)fetched: never fetched, or m->ari_next_check (the CA's Retry-After,
 * else 6 h; 24 h when the CA offers no ARI) has passed. */
int atls_job_ari_due(const atls_cert_meta_t *m, time_t now);

/* An engine asking about the stored leaf of m's first key type; drive it
 * like any engine (no challenges), then call atls_job_ari_finish().
 * NULL + err when there is no certificate or it has no ARI identifier
 * (nothing is written: the scheduler remembers that for a day in memory). */
atls_acme_t *atls_job_ari_start(atls_store_t *st, const atls_cert_meta_t *m,
                                char *err, size_t errlen);

/* After e reached DONE or FAILED (the caller still frees e).  A window:
 * renew_at = a random point in it when that is earlier than renew_at (the
 * CA can pull renewal forward, never postpone it; a past window -> now);
 * the window and the next check time are recorded.  No renewalInfo at the
 * CA: recorded once for the directory for 24 h (store_ari.h), the meta
 * written only when it held a window or failures to clear.  0 ok;
 * -1 + err: the query failed (engine failed, malformed answer): counted in
 * ari_failures, next check after a backoff (60 s doubling, at most 24 h;
 * Retry-After within that); certificate replaced meanwhile, store busy or
 * broken: the meta unchanged. */
int atls_job_ari_finish(atls_store_t *st, const char *id, atls_acme_t *e, time_t now,
                        char *err, size_t errlen);

/* start + blocking driver + finish, whether due or not (CLI, Apache). */
int atls_job_ari_refresh_blocking(atls_store_t *st, const char *id,
                                  char *err, size_t errlen);

/* ---- several certificates at once (job_multi.c, job_ops.c) ------------ */

/* The key types of an issuer in order; none configured means ec256.
 * out has room for ATLS_KEY_TYPE_MAX; returns how many. */
size_t atls_job_key_types(const atls_issuer_t *is, atls_key_type_t *out);

/* The challenge operations a blocking job of issuer is uses: ops when
 * given; else, for dns-01 with a dns_hook, operations running that hook
 * (filled into buf, which must outlive the job); else NULL.  (The
 * scheduler runs dns hooks itself, through its host's hook_start.) */
const atls_challenge_ops_t *atls_job_challenge_ops(const atls_issuer_t *is,
                                                   const atls_challenge_ops_t *ops,
                                                   atls_challenge_ops_t *buf);

/* Runs the jobs of n certificates concurrently in the calling thread, on
 * the scheduler (atls_sched.h) with a curl multi handle and poll as its
 * host: every metas[i] (the caller's settings, as for
 * atls_job_run_blocking_meta: EAB secrets included) gets an attempt now
 * whatever its schedule, with at most max_parallel orders in flight (0
 * means 8).  Connections to the CA are reused across orders; WAITs are
 * timers, not sleeps; dns-01 hooks run in the background.  Job state is
 * persisted exactly as in the one-at-a-time driver; a certificate that
 * fails does not stop the others.
 * ops: how http-01 / tls-alpn-01 answers are published (dns-01 runs the
 * issuer's hook).
 * results (may be NULL; n entries): 0 when every key type of metas[i] was
 * deployed, -1 otherwise.  Returns 0 when all succeeded, else -1 with err
 * describing the first failure ("<id> (<keytype>): type: detail"). */
int atls_job_run_many_blocking(atls_store_t *st, atls_cert_meta_t *const *metas, size_t n,
                               size_t max_parallel, const atls_challenge_ops_t *ops,
                               int *results, char *err, size_t errlen);

struct atls_sched_s;

/* The general form.  Every member may be 0/NULL. */
typedef struct {
    size_t max_parallel;                       /* 0: 8 */
    /* one per certificate (NULL entries, or ops_v NULL: default_ops) */
    const atls_challenge_ops_t *const *ops_v;
    const atls_challenge_ops_t *default_ops;
    /* called once per certificate as soon as its attempt is over
     * (rc 0 all deployed, -1 not; err as above), so that a host can serve
     * it before the others finish */
    void  (*done)(void *ctx, size_t i, int rc, const char *err);
    /* polled whenever nothing is ready, at least twice a second: when it
     * returns 1 no further order is started (the host is stopping); what
     * is in flight runs to its end, or is cancelled after a minute */
    int   (*stopping)(void *ctx);
    void   *ctx;
    int     ari;                               /* ask the CA for renewal
                                                  information (check passes) */
    long    recheck_ms;                        /* check pass: while orders hold
                                                  it, another pass this often
                                                  (0: one pass) */
    atls_events_t              *events;        /* atls_sched_opts_t.events */
    const struct atls_policy_s *policy;        /* atls_sched_opts_t.policy */
    /* Dynamic names (atls_names.h, atls_sched_host_t.home): the issuer of
     * the dynamic home named home (NULL or "": the first) and the
     * challenge operations of its names (*ops NULL: default_ops); NULL
     * when the host has no such home.  NULL: no dynamic names.  Their
     * outcomes reach done with i == ATLS_JOB_DYNAMIC. */
    const atls_issuer_t *(*home)(void *ctx, const char *home,
                                 const atls_challenge_ops_t **ops);
    long                        names_grace_s; /* atls_sched_opts_t.names_grace_s */
    struct atls_od_s           *on_demand;     /* atls_sched_opts_t.on_demand */
    /* called with the pass's scheduler whenever the loop goes round (at
     * least twice a second) while the pass runs: where the host calls
     * atls_sched_names_sync when the store generation moved, so that a
     * name registered during a long pass joins it */
    void  (*tick)(void *ctx, struct atls_sched_s *sched);
} atls_job_many_opts_t;

/* done's i for a certificate of a dynamic name (no index in confs) */
#define ATLS_JOB_DYNAMIC  ((size_t) -1)

int atls_job_run_many(atls_store_t *st, atls_cert_meta_t *const *metas, size_t n,
                      const atls_job_many_opts_t *opts, int *results,
                      char *err, size_t errlen);

/* One managed certificate as a host configures it (all borrowed). */
typedef struct {
    const char *const   *names;
    size_t               n_names;
    const atls_issuer_t *issuer;               /* EAB secrets included */
} atls_job_conf_t;

/* c describes m (borrowing its names and issuer). */
void atls_job_conf_of_meta(atls_job_conf_t *c, const atls_cert_meta_t *m);

/* One check by the scheduler's own decisions (a server's periodic check):
 * every certificate is managed, the scheduler plans each (due, missing key
 * types, operator requests, ARI when opts->ari) and runs what is due as
 * atls_job_run_many does; returns when nothing is left in flight or, once
 * opts->stopping said so, when what was in flight has ended.  opts->done
 * is called for each certificate that had an attempt, i indexing confs.
 * 0 when no attempt failed; else -1 + err (the first failure). */
int atls_job_check_pass(atls_store_t *st, const atls_job_conf_t *confs, size_t n,
                        const atls_job_many_opts_t *opts, char *err, size_t errlen);

/* ---- the host loop (host_loop.c) ---------------------------------------- */

/* The scheduler on one curl multi handle and poll in the calling thread,
 * kept as long as its host wants: the functions above build one for a run;
 * Apache's watchdog keeps one from its start to its stop, so that a pass
 * costs only what fell due (the scheduler's due index) and its copy of the
 * registry follows the names journal. */
typedef struct atls_loop_s atls_loop_t;

/* The host's side.  Every member may be 0/NULL. */
typedef struct {
    void *ctx;
    /* http-01 / tls-alpn-01 answers: one per listed certificate (NULL
     * entries, or ops_v NULL: default_ops) */
    const atls_challenge_ops_t *const *ops_v;
    const atls_challenge_ops_t *default_ops;
    /* every attempt's outcome (a certificate the scheduler refused: at
     * atls_loop_new): i indexes confs, or ATLS_JOB_DYNAMIC; err as for
     * atls_job_run_many_blocking */
    void  (*done)(void *ctx, size_t i, int rc, const char *err);
    /* asked whenever a run has nothing ready, at least twice a second:
     * once it returns 1 no order starts any more, for good; what is in
     * flight runs to its end, or is cancelled after a minute */
    int   (*stopping)(void *ctx);
    /* while a run goes on (not stopped), at least twice a second */
    void  (*tick)(void *ctx, atls_sched_t *sched);
    /* the issuer of dynamic home `home` (NULL or "": the first) and its
     * names' challenge operations (*ops NULL: default_ops); NULL when
     * there is no such home.  NULL: no dynamic names. */
    const atls_issuer_t *(*home)(void *ctx, const char *home,
                                 const atls_challenge_ops_t **ops);
    /* atls_sched_host_t.publish_wait/publish_cancel (a cluster), both or
     * neither; the host reports to atls_loop_sched()'s atls_sched_hook_done */
    int   (*publish_wait)(void *ctx, atls_sched_op_t *op, const atls_challenge_t *c,
                          char *why, size_t whylen);
    void  (*publish_cancel)(void *ctx, atls_sched_op_t *op);
    /* while a run waits (not stopped): how soon `stopping` and `tick` want
     * to be asked again, in ms (< 0: no sooner than the loop's own 500 ms),
     * and *fd (-1: none) whose *events (POLLIN/POLLOUT) also end the wait */
    long  (*wake)(void *ctx, int *fd, int *events);
} atls_loop_conf_t;

/* A loop whose scheduler manages confs (copied by the scheduler) and, with
 * conf->home, the registry's names; conf is copied.  NULL + err. */
atls_loop_t *atls_loop_new(atls_store_t *st, const atls_job_conf_t *confs, size_t n,
                           const atls_sched_opts_t *so, const atls_loop_conf_t *conf,
                           char *err, size_t errlen);
/* Cancels what is in flight and frees everything (no done callbacks). */
void atls_loop_free(atls_loop_t *l);
atls_sched_t *atls_loop_sched(atls_loop_t *l);
/* An attempt now on every listed certificate the scheduler took. */
void atls_loop_force(atls_loop_t *l);
/* A pass (costs what is due), counted; nothing once stopped. */
void atls_loop_check(atls_loop_t *l);
unsigned long atls_loop_passes(const atls_loop_t *l);
/* Until the scheduler is idle, with a pass every recheck_ms while orders
 * hold it (0: none), or until `stopping` said so and what was in flight
 * ended (at most a minute). */
void atls_loop_run(atls_loop_t *l, long recheck_ms);
/* 1 when a run has work now (in flight, or the scheduler's timer fell due). */
int atls_loop_pending(const atls_loop_t *l);
int atls_loop_stopped(const atls_loop_t *l);


#endif
