/*
 * The scheduler's insides, shared by sched.c (passes, the one timer,
 * re-entrancy, the host's reports), sched_cert.c (certificates, CA
 * directories), sched_order.c (one slot's order or ARI query: the ACME
 * action switch, start and end of a job), sched_hook.c (challenges and
 * hooks), sched_ocsp.c (a slot's revocation checks, OCSP) and sched_crl.c
 * (CRLs, shared by every certificate naming one).  Internal to common/.
 */
#ifndef ATLS_SCHED_INTERNAL_H
#define ATLS_SCHED_INTERNAL_H

#include "atls_job.h"
#include "atls_sched.h"
#include "acme_published.h"
#include "atls_ocsp.h"

#define SCHED_DEFAULT_PARALLEL  8
/* A certificate whose revocation check could not run is looked at again
 * no sooner than this (a missing file must not make a busy loop). */
#define SCHED_REV_MIN_WAIT_S    10
/* A directory without renewalInfo is asked again after this long. */
#define SCHED_NO_ARI_S          86400
/* ARI queries and OCSP requests started per minute and CA directory when
 * the host sets no bound (atls_sched_opts_t.ca_requests_per_min). */
#define SCHED_DEFAULT_CA_PER_MIN  60
/* The first ARI checks after a start are spread over at most this long
 * (the CA's usual check interval). */
#define SCHED_ARI_SPREAD_MAX_S  (6 * 3600)
/* The longest pause between two slices of a pass (nginx serves clients
 * meanwhile). */
#define SCHED_PASS_PAUSE_MS     15
/* No certificate waits longer than this for a pass to look at it (a
 * change the journal does not name: a store edited by hand). */
#define SCHED_DUE_MAX_S         86400
/* A certificate whose lock another process (a node of a cluster) holds
 * is looked at again this soon: when the holder dies, its lease expires
 * (ATLS_REDIS_LEASE_MS) and this process takes the order over; when the
 * holder deploys, the next look finds nothing due. */
#define SCHED_BUSY_RETRY_S      10
/* The longest list of cluster nodes a slot keeps for an order whose
 * challenge they had not confirmed (sched_slot_t.lagged). */
#define SCHED_LAGGED_MAX        200

/* The CRL a key type of a certificate was last looked up in, in memory:
 * looked up again only when a newer CRL is held, or the certificate
 * changed. */
typedef struct {
    int                 used;
    atls_key_type_t     kt;
    unsigned            version;    /* sched_crl_t.version looked up against */
    char                serial[132];
} sched_crl_seen_t;

struct atls_sched_cert_s {
    char               *id;
    char              **names;
    size_t              n_names;
    atls_issuer_t       issuer;     /* EAB secrets included */
    void               *data;
    int                 busy;       /* in a slot */
    int                 forced;     /* in the forced queue */
    atls_sched_cert_t  *force_next;
    int                 urls_checked; /* revocation URLs read from stored
                                         leaves once this process */
    time_t              rev_due;      /* its next OCSP refresh or CRL fetch
                                         (0: none known) */
    int                 rev_queued;   /* in the revocation queue */
    atls_sched_cert_t  *rev_next;
    sched_crl_seen_t    crl_seen[ATLS_KEY_TYPE_MAX];
    time_t              warn_due;     /* its next expiry alert level crossing
                                         (sched_event.c; 0: none) */
    time_t              ari_after;    /* its first ARI check after the start,
                                         spread (sched_cert.c; 0: not yet
                                         placed) */
    time_t              rate_at;      /* a CA request reserved for then under
                                         the directory's rate (0: none) */
    time_t              due_at;       /* its next look by a pass (sched_due.c;
                                         0: the next pass) */
    time_t              retry_at;     /* its lock was busy: the look after its
                                         slot ends is then (0: none) */
    size_t              due_pos;      /* 1 + its place in the due heap; 0 not
                                         there (in a slot, or in a pass) */
    int                 dynamic;      /* added from the registry of dynamic
                                         names (sched_names.c), not configured */
};

/* One CRL URL, shared by every certificate naming it; in memory while the
 * scheduler lives, its bytes and facts cached in the store. */
typedef struct {
    char               *url;
    X509_CRL           *crl;        /* verified; NULL: none held */
    time_t              this_update, next_update;
    time_t              fetched;
    time_t              next_fetch; /* from the cache, or the backoff */
    char               *etag, *last_modified;
    unsigned            version;    /* bumped whenever a newer CRL is held */
    unsigned            failures;   /* consecutive fetch failures */
    int                 loaded;     /* the store's cache was looked at */
    int                 fetching;   /* a slot fetches it now */
} sched_crl_t;

typedef struct sched_slot_s sched_slot_t;

struct atls_sched_op_s {
    sched_slot_t       *slot;       /* NULL: a teardown hook nobody waits for */
    atls_sched_cert_t  *cert;       /* the certificate it works for */
    int                 hook;       /* 0: an HTTP transfer, 1: a hook run or
                                       a publish wait */
    int                 publish;    /* hook: the host's publish_wait (the
                                       cluster's nodes load a challenge) */
    int                 setup;      /* hook: setup (1) or teardown (0) */
    long long           deadline;   /* hook: given up then (monotonic ms) */
    char               *what;       /* hook: the record's name, for logs */
    atls_sched_op_t    *next;       /* the orphan list */
};

/*
 * One certificate being worked on.  Free (cert NULL), pending (no engine:
 * its next key type waits to start, maybe for another order to create the
 * account), or running: exactly one of a transfer or hook in flight (op),
 * a wait (wake) or ready to step.
 */
struct sched_slot_s {
    atls_sched_t           *s;
    atls_sched_cert_t      *cert;
    atls_cert_meta_t        meta;       /* as ensured, EAB secrets added */
    atls_plan_t             plan;
    size_t                  next_kt;    /* index into plan.kts */
    atls_key_type_t         kt;         /* of the running order */
    int                     ari;        /* the engine is an ARI query */
    time_t                  request_at; /* the operator request planned with */
    atls_job_t             *job;
    atls_acme_t            *e;          /* the job's engine, or the ARI query's */
    atls_http_opts_t        http;
    atls_published_t        pub;        /* withdrawn when the order fails */
    atls_challenge_ops_t    ops;        /* host publish / withdraw, dns hook teardown */
    const atls_challenge_t *hook_ch;    /* engine's, valid while the setup hook runs */
    atls_sched_op_t        *op;
    long long               wake;       /* WAIT deadline (monotonic ms), 0 none */
    int                     hold;       /* creating the CA account */
    int                     rc;         /* -1 once a key type failed */
    char                   *lagged;     /* the running order's challenge went to
                                           validation unconfirmed by these
                                           cluster nodes ("n1,n2"; "" not
                                           known which); NULL: every node
                                           confirmed (sched_hook.c) */
    atls_error_t            err;        /* the first failure */

    /* Revocation checks (sched_ocsp.c): no engine, one OCSP request or
     * CRL fetch in flight at a time for the slot's certificate. */
    int                     rev;        /* the slot runs revocation checks */
    int                     ordered;    /* an order ran in this slot already */
    int                     revoked;    /* a key type was learned revoked */
    unsigned                tried;      /* key types (bits) asked about */
    atls_key_type_t         rev_kt;
    X509                   *rev_leaf, *rev_issuer;
    sched_crl_t            *rev_crl;    /* the CRL fetched; NULL: OCSP */
};

/* What the scheduler learned about one CA directory, in memory. */
typedef struct {
    char      *directory;
    time_t     no_ari_until;   /* no renewalInfo there: not asked again before
                                  (also in the store: store_ari.h) */
    int        has_account;    /* the store knows our account URL there */
    int        ari_probed;     /* one query asked whether it offers ARI */
    time_t    *rate_ring;      /* when its last ca_per_min requests started
                                  or are reserved to start, oldest at
                                  rate_next (NULL until the first) */
    size_t     rate_next;
} sched_dir_t;

struct atls_sched_s {
    atls_store_t       *st;
    atls_sched_host_t   host;
    size_t              n_slots;
    long                slice_ms;
    long                hook_timeout_s;
    int                 ari;
    long                ca_per_min;     /* ARI + OCSP requests per minute and
                                           CA directory */
    time_t              started;        /* wall time of atls_sched_new */

    atls_sched_cert_t **certs;          /* in the order added */
    size_t              n_certs, cap_certs;
    size_t             *index;          /* by id: 1 + index into certs, 0 empty */
    size_t              cap_index;      /* a power of two */
    sched_slot_t       *slots;
    atls_sched_op_t    *orphans;        /* teardown hooks after a failed order */
    sched_dir_t        *dirs;
    size_t              n_dirs;
    sched_crl_t       **crls;           /* by URL, in memory */
    size_t              n_crls;
    int                 crl_recheck;    /* a newer CRL arrived during a pass */
    long long           rev_wake;       /* the earliest rev_due (monotonic ms);
                                           0 none */
    atls_sched_cert_t  *rev_queue, *rev_queue_tail;  /* rev_due reached */
    atls_sched_cert_t  *forced, *forced_tail;

    /* Events (sched_event.c), both borrowed from the options. */
    atls_events_t              *events;
    const struct atls_policy_s *policy;
    long long           warn_wake;      /* the next alert level crossing of a
                                           static certificate (monotonic ms);
                                           0 none */

    int                 pass_active;
    size_t              pass_next;
    /* The due index (sched_due.c): certificates by due_at, and the ones
     * the pass in progress looks at (pass_all: every one, in certs). */
    atls_sched_cert_t **due_heap;
    size_t              n_due, cap_due;
    atls_sched_cert_t **pass_list;
    size_t              n_pass, cap_pass;
    int                 pass_all;
    int                 due_built;      /* a pass looked at every certificate */
    uint64_t            due_gen;        /* store generation + 1 whose journal
                                           was read; 0 none */
    long long           pass_resume;    /* a yielded pass goes on then; 0 none */
    int                 kick_due;       /* starts are pending */
    int                 stopping;
    int                 freeing;        /* free: withdraw, but run no hook */
    int                 depth;          /* atls_sched_* calls on the stack */
    int                 dying;          /* freed from inside a callback */
    long long           armed;          /* the host timer's deadline; -1 none */
    long long           retry_wake;     /* a pass for certificates whose lock
                                           was busy (monotonic ms); 0 none */
    struct atls_notify_s *notify;       /* delivers the queue (notify.c); NULL
                                           when the events name no sink */

    /* Dynamic names (sched_names.c) */
    long                names_grace_s;
    uint64_t            names_gen;      /* the registry generation last listed */
    int                 names_synced;   /* listed at least once */
    time_t              names_purge_at; /* the first removed name's grace ends
                                           then (0: none known) */
    /* The first sync reads the registry in slices of slice_ms: listed in
     * pages (names_cursor, NULL once the listing is complete) from
     * names_first_gen on, the page's entry names, the next one to read,
     * when the timer goes on (monotonic ms; 0 none), the names added so
     * far and the registry's entries seen. */
    struct atls_store_cursor_s *names_cursor;
    int                 names_listing;
    char              **names_first;
    size_t              names_first_n, names_first_next, names_first_added;
    size_t              names_first_seen;
    uint64_t            names_first_gen;
    int                 names_first_on;
    long long           names_resume;

    /* On-demand issuance (sched_ondemand.c) */
    struct atls_od_s   *od_gate;        /* opts.on_demand, borrowed; NULL: none */
    struct sched_od_s  *od;             /* names in flight; NULL until the first */
};

long long atls_sched_now_ms(void);

/* sched_cert.c */
void atls_sched_cert_free(atls_sched_cert_t *c);
/* The directory's facts, created on first use (its renewal information
 * record read from the store then, once per process). */
sched_dir_t *atls_sched_dir(atls_sched_t *s, const char *directory);
/* 1 when c's ARI query, which its plan says is due, may start now: the
 * directory offers renewalInfo as far as known, c's first check after the
 * start (spread by a hash of its id) has come, and the directory's rate
 * has room (half of it: the other half stays for OCSP). */
int atls_sched_ari_may(atls_sched_t *s, atls_sched_cert_t *c, time_t now);
/* 1 when c may send an OCSP request to its directory's responder now;
 * else 0 and c->rate_at is the time reserved for it (a certificate
 * reserves one time, and takes it when it comes). */
int atls_sched_rate_take(atls_sched_t *s, atls_sched_cert_t *c, time_t now);

/* Room for want certificates in the list and index at once (the first
 * registry sync of 100,000 names would otherwise rehash the index in the
 * middle of its slices, tens of ms each time); -1 out of memory. */
int atls_sched_certs_reserve(atls_sched_t *s, size_t want);

/* The certificate managed under id, or NULL. */
atls_sched_cert_t *atls_sched_cert_by_id(const atls_sched_t *s, const char *id);

/* sched_due.c: when each certificate needs a pass next */
/* c looked at by the first pass once now >= at (0: the next pass). */
void atls_sched_due_set(atls_sched_t *s, atls_sched_cert_t *c, time_t at);
/* c is new or its settings changed: the pass in progress (else the next)
 * looks at it. */
void atls_sched_due_now(atls_sched_t *s, atls_sched_cert_t *c);
/* c is going away (atls_sched_remove must call it before freeing c). */
void atls_sched_due_forget(atls_sched_t *s, atls_sched_cert_t *c);
void atls_sched_due_free(atls_sched_t *s);
/* sl's certificate was planned (sl->meta, sl->plan) and nothing starts:
 * its next look from what the plan and the gates say. */
void atls_sched_due_planned(atls_sched_t *s, sched_slot_t *sl, time_t now);
/* A pass starts: reads the store's change journal and renew requests, and
 * picks the certificates it looks at (every one when the index is not
 * built yet or the journal does not reach back). */
void atls_sched_due_begin(atls_sched_t *s);
/* The pass starts over, looking at every certificate (a newer CRL). */
void atls_sched_due_all(atls_sched_t *s);
/* The pass's next certificate, NULL when it is over. */
atls_sched_cert_t *atls_sched_due_next(atls_sched_t *s);
void atls_sched_due_end(atls_sched_t *s);

/* Takes c out of the certificate list and index (nothing else). */
void atls_sched_cert_unlink(atls_sched_t *s, atls_sched_cert_t *c);

/* sched_names.c: removed names past their grace purged, at each pass,
 * when the first one is due. */
void atls_sched_names_pass(atls_sched_t *s);
/* sched_names.c: the first sync's names not read yet, freed. */
void atls_sched_names_free(atls_sched_t *s);

/* sched.c: arms the host's timer for a deadline set outside the
 * scheduler's own calls (a sliced first sync of the registry). */
void atls_sched_touch(atls_sched_t *s);
/* sched.c: a pass starts by then (wall time at), for c->retry_at. */
void atls_sched_retry_pass(atls_sched_t *s, time_t at);

/* sched_ondemand.c: the host's answer to an ask request (1 when op was
 * one); the end of an attempt on c (before host->done); the children's
 * requests at each pass; 1 while an ask is in flight; free all. */
typedef struct sched_od_s sched_od_t;
int atls_sched_od_http_done(atls_sched_t *s, atls_sched_op_t *op,
                            const atls_http_response_t *resp);
void atls_sched_od_ended(atls_sched_t *s, atls_sched_cert_t *c, int rc,
                         const atls_error_t *err);
void atls_sched_od_pass(atls_sched_t *s);
int atls_sched_od_busy(const atls_sched_t *s);
void atls_sched_od_free(atls_sched_t *s);

/* sched_hook.c */
atls_sched_op_t *atls_sched_op_new(sched_slot_t *sl, int hook);
void atls_sched_op_free(atls_sched_op_t *op);
void atls_sched_slot_ops(sched_slot_t *sl);
/* SETUP / TEARDOWN: 1 when the engine can step on, 0 when a hook runs */
int atls_sched_slot_setup(sched_slot_t *sl, const atls_challenge_t *c);
int atls_sched_slot_teardown(sched_slot_t *sl, const atls_challenge_t *c);
void atls_sched_hook_end(atls_sched_t *s, atls_sched_op_t *op, int ok, const char *msg);
/* The scheduler drops op: the host's http_cancel, hook_kill or
 * publish_cancel, so that it never reports op (op is not freed). */
void atls_sched_op_abandon(atls_sched_t *s, atls_sched_op_t *op);

/* sched_ocsp.c, sched_crl.c */
typedef enum {
    SCHED_REV_NONE = 0, /* nothing to ask now */
    SCHED_REV_OP,       /* a request is in flight in the slot */
    SCHED_REV_ORDER     /* learned revoked: sl->plan orders, start it */
} sched_rev_t;

/* The next revocation check of sl's certificate (sl->cert and sl->meta
 * set): CRL lookups in place, then an OCSP request or a CRL fetch in the
 * slot.  may_order: when a key type is learned revoked, re-plan into an
 * order (not after an order already ran in the slot). */
sched_rev_t atls_sched_rev_next(sched_slot_t *sl, int may_order);
/* The host's answer to the slot's revocation request: recorded, then the
 * next check, an order, or the end of the slot's work. */
void atls_sched_rev_done(sched_slot_t *sl, const atls_http_response_t *resp);
void atls_sched_rev_clear(sched_slot_t *sl);
/* sl's stored chain for kt: leaf and issuer (chain[1], NULL when the chain
 * has none), references the caller frees.  -1 with err. */
int atls_sched_rev_chain(sched_slot_t *sl, atls_key_type_t kt, X509 **leaf, X509 **issuer,
                         char *err, size_t errlen);
/* Records kt as revoked (serial as in kt_info), withdrawing a stapled
 * response; source "ocsp" or "crl".  1 when newly learned, else 0. */
int atls_sched_rev_record(sched_slot_t *sl, atls_key_type_t kt, const char *serial,
                          time_t revoked_at, int reason, const char *source);

/* Records when sl's certificate needs its next check (from sl->meta),
 * so that the scheduler's timer looks at it then, between passes. */
void atls_sched_rev_schedule(sched_slot_t *sl, time_t now);

sched_crl_t *atls_sched_crl(atls_sched_t *s, const char *url);
void atls_sched_crls_free(atls_sched_t *s);
/* Looks ki up in its CRL when a newer one is held than last time; 1 when
 * it is listed (recorded), 0 not or not known. */
int atls_sched_crl_check(sched_slot_t *sl, const atls_cert_kt_info_t *ki, time_t now);
/* 1 when the slot started fetching ki's CRL, 0 when none is due (or
 * another slot fetches it). */
int atls_sched_crl_fetch(sched_slot_t *sl, const atls_cert_kt_info_t *ki, time_t now);
void atls_sched_crl_end(sched_slot_t *sl, const atls_http_response_t *resp);

/* sched_event.c: what the scheduler tells atls_events_emit().  Each
 * function does nothing without opts.events. */

/* e empty for type: no member set, no CRLReason (-1). */
void atls_sched_event_init(atls_event_t *e, atls_event_type_t type);
/* Emits type about sl's certificate and key type kt: e (NULL: none) holds
 * the members of that event (error, reason, ...); id, names, key type
 * (unless e names one) and directory are filled in, and the serial, issuer and not_after of the
 * certificate of kt stored now (for obtaining: the one to be replaced, as
 * old_serial). */
void atls_sched_emit_cert(sched_slot_t *sl, atls_event_type_t type, atls_key_type_t kt,
                          atls_event_t *e);
/* sl's order ended (after: the meta it left): obtained, or renewed when
 * it replaced old_serial; or failed with err (attempt and next attempt
 * from after).  Counted in "orders.ok" / "orders.failed" in any case. */
void atls_sched_emit_order_end(sched_slot_t *sl, const atls_cert_meta_t *after,
                               const atls_error_t *err, const char *old_serial);
/* The policy refused names: policy-denied, and err names the rule.
 * 0 when allowed (no policy, or it allows them). */
int atls_sched_policy_refuses(atls_sched_t *s, const char *const *names, size_t n,
                              const atls_issuer_t *is, char *err, size_t errlen);
/* Expiry alerts of sl's certificate (sl->meta as ensured): expiring per
 * level and expired, recorded in kt_info; sets cert->warn_due. */
void atls_sched_warn_cert(sched_slot_t *sl);
/* The same for the store's inventory of static certificates; sets
 * s->warn_wake. */
void atls_sched_warn_static(atls_sched_t *s);

/* sched_order.c */
typedef enum {
    SCHED_STARTED = 0,  /* an engine runs (or already ended) */
    SCHED_BLOCKED,      /* waits for another order to create the account */
    SCHED_OVER          /* nothing left: the slot is free again */
} sched_start_t;

sched_start_t atls_sched_slot_start(sched_slot_t *sl);
void atls_sched_slot_step(sched_slot_t *sl, const atls_http_response_t *resp);
void atls_sched_slot_cancel(sched_slot_t *sl);
/* Hands req to the host as the slot's one transfer (options sl->http);
 * -1 when the host could not start it (nothing is in flight then). */
int atls_sched_slot_send(sched_slot_t *sl, const atls_http_request_t *req);
/* The slot's work on its certificate is over (done() for an order). */
void atls_sched_slot_end(sched_slot_t *sl);
void atls_sched_slot_clear(sched_slot_t *sl);

#endif
