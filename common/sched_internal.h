/*
 * The scheduler's insides, shared by sched.c (passes, the one timer,
 * re-entrancy, the host's reports), sched_cert.c (certificates, CA
 * directories), sched_order.c (one slot's order or ARI query: the ACME
 * action switch, start and end of a job) and sched_hook.c (challenges and
 * hooks).  Internal to common/.
 */
#ifndef ATLS_SCHED_INTERNAL_H
#define ATLS_SCHED_INTERNAL_H

#include "atls_job.h"
#include "atls_sched.h"
#include "acme_published.h"

#define SCHED_DEFAULT_PARALLEL  8
/* A directory without renewalInfo is asked again after this long. */
#define SCHED_NO_ARI_S          86400
/* The longest pause between two slices of a pass (nginx serves clients
 * meanwhile). */
#define SCHED_PASS_PAUSE_MS     15

struct atls_sched_cert_s {
    char               *id;
    char              **names;
    size_t              n_names;
    atls_issuer_t       issuer;     /* EAB secrets included */
    void               *data;
    int                 busy;       /* in a slot */
    int                 forced;     /* in the forced queue */
    atls_sched_cert_t  *force_next;
};

typedef struct sched_slot_s sched_slot_t;

struct atls_sched_op_s {
    sched_slot_t       *slot;       /* NULL: a teardown hook nobody waits for */
    atls_sched_cert_t  *cert;       /* the certificate it works for */
    int                 hook;       /* 0: an HTTP transfer, 1: a hook run */
    int                 setup;      /* hook: setup (1) or teardown (0) */
    long long           deadline;   /* hook: killed then (monotonic ms) */
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
    atls_error_t            err;        /* the first failure */
};

/* What the scheduler learned about one CA directory, in memory. */
typedef struct {
    char   *directory;
    time_t  no_ari_until;   /* no renewalInfo there: not asked again before */
    int     has_account;    /* the store knows our account URL there */
} sched_dir_t;

struct atls_sched_s {
    atls_store_t       *st;
    atls_sched_host_t   host;
    size_t              n_slots;
    long                slice_ms;
    long                hook_timeout_s;
    int                 ari;

    atls_sched_cert_t **certs;          /* in the order added */
    size_t              n_certs, cap_certs;
    size_t             *index;          /* by id: 1 + index into certs, 0 empty */
    size_t              cap_index;      /* a power of two */
    sched_slot_t       *slots;
    atls_sched_op_t    *orphans;        /* teardown hooks after a failed order */
    sched_dir_t        *dirs;
    size_t              n_dirs;
    atls_sched_cert_t  *forced, *forced_tail;

    int                 pass_active;
    size_t              pass_next;
    long long           pass_resume;    /* a yielded pass goes on then; 0 none */
    int                 kick_due;       /* starts are pending */
    int                 stopping;
    int                 freeing;        /* free: withdraw, but run no hook */
    int                 depth;          /* atls_sched_* calls on the stack */
    int                 dying;          /* freed from inside a callback */
    long long           armed;          /* the host timer's deadline; -1 none */
};

long long atls_sched_now_ms(void);

/* sched_cert.c */
void atls_sched_cert_free(atls_sched_cert_t *c);
sched_dir_t *atls_sched_dir(atls_sched_t *s, const char *directory);

/* sched_hook.c */
atls_sched_op_t *atls_sched_op_new(sched_slot_t *sl, int hook);
void atls_sched_op_free(atls_sched_op_t *op);
void atls_sched_slot_ops(sched_slot_t *sl);
/* SETUP / TEARDOWN: 1 when the engine can step on, 0 when a hook runs */
int atls_sched_slot_setup(sched_slot_t *sl, const atls_challenge_t *c);
int atls_sched_slot_teardown(sched_slot_t *sl, const atls_challenge_t *c);
void atls_sched_hook_end(atls_sched_t *s, atls_sched_op_t *op, int ok, const char *msg);

/* sched_order.c */
typedef enum {
    SCHED_STARTED = 0,  /* an engine runs (or already ended) */
    SCHED_BLOCKED,      /* waits for another order to create the account */
    SCHED_OVER          /* nothing left: the slot is free again */
} sched_start_t;

sched_start_t atls_sched_slot_start(sched_slot_t *sl);
void atls_sched_slot_step(sched_slot_t *sl, const atls_http_response_t *resp);
void atls_sched_slot_cancel(sched_slot_t *sl);
void atls_sched_slot_clear(sched_slot_t *sl);

#endif
