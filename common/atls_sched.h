/*
 * The scheduler: every decision about managed certificates and the life of
 * every order, for any host.
 *
 * It is event-driven and knows no event loop.  The host (the nginx driver,
 * the curl-multi/poll loop in host_loop.c used by the CLI and Apache's
 * watchdog thread, or a unit test with the fake CA) supplies callbacks to
 * send HTTP requests, arm one timer, run hook programs and publish
 * challenge answers, and feeds back responses, timer expiries and hook
 * exits.  The scheduler never blocks: a slow dns hook of one certificate
 * keeps only that order waiting.
 *
 * What lives here, and nowhere in a host:
 *   - which certificates are due and which key types to order
 *     (atls_job_plan, a pure function of the stored meta);
 *   - slots: at most max_parallel orders and ARI queries in flight;
 *   - account gating: while the store knows no account URL for a CA
 *     directory, one order creates it and the others for that CA wait;
 *   - key-type sequencing: the key types of one certificate go one after
 *     the other (they share its store lock);
 *   - the ACME action switch (send, wait, publish, hook, withdraw, end);
 *   - hook time limits, ARI queries and their backoff;
 *   - OCSP: fetching, verifying and storing the responses stapled with
 *     certificates whose issuer has stapling on and whose leaf names a
 *     responder; CRLs for those that name a CRL and no responder (or have
 *     stapling off); a revoked certificate is replaced at once (through
 *     atls_job_plan: kt_info.revoked_seen);
 *   - what is logged, once per attempt (through atls_log).
 *
 * Callbacks are never made re-entrantly from inside another callback into
 * the same scheduler call chain in a way the host must guard against:
 * the host may call any atls_sched_* function from its event handlers, but
 * must not call atls_sched_http_done / atls_sched_hook_done from inside
 * http_send / hook_start (return -1 there instead).
 */
#ifndef ATLS_SCHED_H
#define ATLS_SCHED_H

#include <stddef.h>
#include "atls.h"
#include "atls_acme.h"
#include "atls_crypto.h"
#include "atls_http.h"
#include "atls_store.h"
#include "atls_event.h"

typedef struct atls_sched_s      atls_sched_t;
typedef struct atls_sched_cert_s atls_sched_cert_t;

/* One transfer or hook run of the scheduler.  Opaque to the host, which
 * hands it back when it reports the outcome. */
typedef struct atls_sched_op_s   atls_sched_op_t;

/* The default limit on one hook run (setup or teardown); DNS propagation
 * can be slow, so hooks that wait for it get minutes. */
#define ATLS_SCHED_HOOK_TIMEOUT_S  600

typedef struct {
    void *ctx;

    /* Start req (borrowed for the call only: copy what is kept) with the
     * HTTP options o.  Later the host calls atls_sched_http_done(s, op,
     * resp) exactly once, unless the scheduler cancels op first.  -1 when
     * the transfer cannot start (the scheduler treats it as a transport
     * failure). */
    int  (*http_send)(void *ctx, atls_sched_op_t *op, const atls_http_opts_t *o,
                      const atls_http_request_t *req);
    /* Abort op; the host never reports it afterwards. */
    void (*http_cancel)(void *ctx, atls_sched_op_t *op);

    /* (Re)arm the scheduler's only timer: call atls_sched_timer(s) once
     * ms milliseconds from now (0: soon, from the event loop, never from
     * inside this callback).  ms < 0 disarms it. */
    void (*timer)(void *ctx, long ms);

    /* Run argv[0] with argv (no shell) in the background, typically with
     * atls_hook_spawn(); report its end with atls_sched_hook_done().  -1
     * (why filled) when it cannot start.  hook_kill: the scheduler gave up
     * on op (time limit, stop); the host ends the process group and never
     * reports op. */
    int  (*hook_start)(void *ctx, atls_sched_op_t *op, char *const argv[],
                       char *why, size_t whylen);
    void (*hook_kill)(void *ctx, atls_sched_op_t *op);

    /* http-01 / tls-alpn-01 answers (synchronous); cert_data is the
     * pointer given to atls_sched_add().  0 published, -1 (why) not. */
    int  (*publish)(void *ctx, void *cert_data, const atls_challenge_t *c,
                    char *why, size_t whylen);
    void (*withdraw)(void *ctx, void *cert_data, const atls_challenge_t *c);
    /* Cluster (issue 12): after publish() of c returned 0, may the order
     * tell the CA to validate now?  0: yes (also when NULL); 1: not yet:
     * the host reports later with atls_sched_hook_done(s, op, ok, why) once
     * every live node answers c (ok 1) or it gave up (ok 0: the challenge
     * fails with why; or atls_sched_hook_done_partial: validation goes on
     * without some nodes), unless the scheduler gives up first and calls
     * publish_cancel(op) (the host then never reports op).  -1 (why): the
     * challenge fails at once.  Optional, both or neither. */
    int  (*publish_wait)(void *ctx, atls_sched_op_t *op, void *cert_data,
                         const atls_challenge_t *c, char *why, size_t whylen);
    void (*publish_cancel)(void *ctx, atls_sched_op_t *op);

    /* A new certificate of key type kt is in the store (the store
     * generation was bumped).  Optional. */
    void (*deployed)(void *ctx, void *cert_data, const char *id, atls_key_type_t kt);

    /* A new OCSP response for kt is in the store, or the one stapled was
     * withdrawn (revoked, unknown, expired): the certificate's meta
     * generation and the store generation were bumped, workers must load
     * it again, as after a deploy.  Optional. */
    void (*stapled)(void *ctx, void *cert_data, const char *id, atls_key_type_t kt);

    /* Run argv (no shell) with input (len bytes) on its stdin, otherwise
     * as hook_start (atls_hook_spawn_input(); report with
     * atls_sched_hook_done, end with hook_kill).  The notifier's command
     * sink.  Optional: NULL means this host runs no notification command
     * (logged once at atls_sched_new). */
    int  (*exec_start)(void *ctx, atls_sched_op_t *op, char *const argv[],
                       const char *input, size_t len, char *why, size_t whylen);

    /* The attempt on a certificate is over: every planned key type was
     * tried (rc 0: all deployed; -1: err is the first failure, with the
     * certificate id and key type filled in).  Optional. */
    void (*done)(void *ctx, void *cert_data, const char *id, int rc,
                 const atls_error_t *err);

    /* Dynamic names (atls_names.h): the issuer settings and the host data
     * (cert_data in the other callbacks) of a dynamic home; home NULL or
     * "" is the host's only (first) dynamic home.  NULL when this host has
     * no such home: the name is left alone (another server sharing the
     * store may serve it).  Optional: NULL means no dynamic names. */
    const atls_issuer_t *(*home)(void *ctx, const char *home, void **cert_data);

    /* On-demand (atls_ondemand.h): the gate's verdict on a name handed to
     * atls_sched_on_demand: ALLOW (registered, its order started),
     * DENY / INVALID / LIMITED (why says which rule; nothing ordered).
     * Optional. */
    void (*on_demand)(void *ctx, const char *name, int verdict, const char *why);
} atls_sched_host_t;

typedef struct {
    size_t max_parallel;    /* orders and ARI queries in flight; 0: 8 */
    long   slice_ms;        /* a pass checks certificates for at most this
                               long per call, then yields through the timer;
                               0: no limit (threads of their own, tests) */
    long   hook_timeout_s;  /* 0: ATLS_SCHED_HOOK_TIMEOUT_S */
    int    ari;             /* 1: ask the CA for renewal information (RFC 9773) */

    /* Events (atls_event.h), borrowed, may be NULL (no events, no
     * notifications).  The scheduler emits obtaining, obtained, renewed,
     * deployed, failed, expiring, expired (managed certificates and the
     * store's inventory of static ones), revoked, ocsp-refreshed,
     * ocsp-failed, policy-denied, account-created, key-generated; and its
     * notifier (notify.c) delivers the store's queue to the sinks of
     * atls_events_conf(events) through http_send and exec_start. */
    atls_events_t         *events;
    /* Certificates added that break it are refused by atls_sched_add
     * (policy-denied).  Borrowed, may be NULL. */
    const struct atls_policy_s *policy;
    /* ARI queries and OCSP requests started per minute and CA directory
     * (0: 60): a start with 10,000 certificates spreads them instead of
     * sending a burst.  A certificate without a stapled response still
     * gets its first one as soon as the bound allows. */
    long   ca_requests_per_min;

    /* Dynamic names: registered names whose home host->home() knows are
     * managed like configured ones; removed names past grace_s (0:
     * ATLS_NAMES_GRACE_S) are purged at each pass. */
    long   names_grace_s;
    /* The on-demand gate, borrowed, may be NULL (atls_sched_on_demand then
     * denies everything). */
    struct atls_od_s *on_demand;
} atls_sched_opts_t;

/* A scheduler over st (borrowed, must outlive it).  host is copied.  NULL
 * + err when it cannot be set up. */
atls_sched_t *atls_sched_new(atls_store_t *st, const atls_sched_host_t *host,
                             const atls_sched_opts_t *opts, char *err, size_t errlen);

/* Cancels what is in flight (http_cancel / hook_kill, withdraw what is
 * published) and frees everything; no done() callbacks.  A dns-01 record
 * published through the hook stays (no hook runs any more; logged).  May
 * be called from a callback: the scheduler is then freed when the
 * outermost atls_sched_* call returns, and the host must not use it after. */
void atls_sched_free(atls_sched_t *s);

/* Manage a certificate: names[0] gives its id; the issuer settings are
 * copied (EAB secrets included: they are never persisted).  data is handed
 * back in callbacks.  Adding the same first name twice replaces the
 * settings.  NULL + err on bad settings. */
atls_sched_cert_t *atls_sched_add(atls_sched_t *s, const char *const *names, size_t n,
                                  const atls_issuer_t *is, void *data,
                                  char *err, size_t errlen);
const char *atls_sched_cert_id(const atls_sched_cert_t *c);

/* Start a pass over every certificate (a pass in progress just goes on):
 * each is ensured in the store (meta written only when the configuration
 * changed), planned, and queued; orders start as slots free up. */
void atls_sched_check(atls_sched_t *s);

/* An attempt on c now, whatever its schedule and backoff (CLI issue/renew,
 * an operator's request).  Forced certificates get free slots before the
 * pass; one in flight is attempted again once its attempt is over. */
void atls_sched_force(atls_sched_t *s, atls_sched_cert_t *c);

/* Host feedback.  resp is borrowed for the call only. */
void atls_sched_http_done(atls_sched_t *s, atls_sched_op_t *op,
                          const atls_http_response_t *resp);
void atls_sched_timer(atls_sched_t *s);
/* ok 1: the hook exited 0; else why is its first line of stderr or how it
 * ended ("killed by signal 9", "timed out"). */
void atls_sched_hook_done(atls_sched_t *s, atls_sched_op_t *op, int ok, const char *why);

/* Cluster (issue 12): a publish_wait ended with the challenge not
 * confirmed by every live node, and validation goes on (as ok 1 above).
 * missing: the nodes that had not confirmed it, comma-separated ("web-2,
 * web-3"); NULL or "" when not known (the member registry could not be
 * read).  Should the CA then fail that order's validation the way a node
 * without the answer makes it fail (unauthorized, incorrectResponse,
 * connection, tls), the failure is counted as transient, not permanent:
 * the retry comes after the short backoff (atls_schedule_lagged), and
 * the log line and the failed event name the missing nodes. */
void atls_sched_hook_done_partial(atls_sched_t *s, atls_sched_op_t *op, const char *missing);

/* No new work from now on; what is in flight runs to its end.  A
 * certificate whose next key type had not started yet ends with done(-1,
 * "autotls:stopped"). */
void atls_sched_stop(atls_sched_t *s);

/* 1 when no pass is running and nothing is queued or in flight (a dns hook
 * removing a record after a failed order counts as in flight). */
int atls_sched_idle(const atls_sched_t *s);

/* Look at the store's notification queue now (events another process,
 * such as the CLI, queued): the host calls it when it sees the store
 * generation change; the notifier also looks at every pass and after each
 * event this scheduler emits.  Waiting retries (a receiver that is down)
 * do not count against atls_sched_idle(); deliveries in flight do. */
void atls_sched_notify(atls_sched_t *s);

/* Orders (not ARI queries) in flight, for logs and the status page. */
size_t atls_sched_running(const atls_sched_t *s);

/* Stop managing c (a removed dynamic name): its order in flight is
 * cancelled, its challenges withdrawn, its timers dropped; the store is
 * left as it is.  c is freed. */
void atls_sched_remove(atls_sched_t *s, atls_sched_cert_t *c);

/* The certificate managed under id, or NULL. */
atls_sched_cert_t *atls_sched_find(atls_sched_t *s, const char *id);

/* Read the registry of dynamic names again when it changed since the last
 * look (atls_names_generation): adds the active names of homes this host
 * has (host->home), removes the rest.  Called by the host at start and
 * when the store generation moved; cheap when nothing changed. */
void atls_sched_names_sync(atls_sched_t *s);

/* A name arrived that no configuration and no registry entry covers
 * (SNI, the Host of a plain-HTTP request, an Apache child's request):
 * the gate opts.on_demand decides (asking its URL through http_send when
 * needed); an allowed name within budget is registered for home (source
 * "on-demand") and its order starts at once.  The verdict reaches
 * host->on_demand.  A name already being decided or ordered is not asked
 * again.  name is as received; it is checked first. */
void atls_sched_on_demand(atls_sched_t *s, const char *name, size_t len, const char *home);

/* The data given to atls_sched_add() for the certificate op works for
 * (a host's debug log, a test CA per certificate). */
void *atls_sched_op_data(const atls_sched_op_t *op);

#endif
