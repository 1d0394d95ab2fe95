/*
 * The CLI's runs on the host loop (host_loop.c): a loop built for one run
 * of n certificates, every one forced (issue, renew) or each by its own
 * plan (a check pass), and freed when the run is over.
 *
 * What a run adds to the loop is its tally: each listed certificate's
 * first outcome is counted (results, the first failure) and told to the
 * caller once; a dynamic name's is told at every attempt.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "atls_job.h"
#include "atls_sched.h"

/* One run's tally. */
typedef struct {
    const atls_job_many_opts_t *o;
    unsigned char              *told;      /* per listed certificate */
    size_t                      n_done;
    size_t                      failed;
    int                        *results;
    char                       *err;
    size_t                      errlen;
} multi_t;

static void *
multi_alloc(size_t n)
{
    void *p = calloc(1, n);

    if (p == NULL) {
        abort();
    }
    return p;
}

/* Records the outcome of certificate i and tells the caller; msg is
 * "<id> (<keytype>): type: detail" on failure. */
static void
multi_done(void *ctx, size_t i, int rc, const char *msg)
{
    multi_t *m = ctx;

    if (i != ATLS_JOB_DYNAMIC) {
        /* one of the caller's list: its first outcome only */
        if (m->told[i]) {
            return;
        }
        m->told[i] = 1;
        m->n_done++;
        if (m->results != NULL) {
            m->results[i] = rc;
        }
        if (rc != 0) {
            m->failed++;
            if (m->err[0] == '\0') {
                snprintf(m->err, m->errlen, "%s", msg);
            }
        }
    }
    if (m->o->done != NULL) {
        m->o->done(m->o->ctx, i, rc, msg);
    }
}

/* The caller's own callbacks, with its own ctx. */
static int
multi_stopping(void *ctx)
{
    const multi_t *m = ctx;

    return m->o->stopping(m->o->ctx);
}

static void
multi_tick(void *ctx, atls_sched_t *sched)
{
    const multi_t *m = ctx;

    m->o->tick(m->o->ctx, sched);
}

static const atls_issuer_t *
multi_home(void *ctx, const char *home, const atls_challenge_ops_t **ops)
{
    const multi_t *m = ctx;

    return m->o->home(m->o->ctx, home, ops);
}

/* A loop for the caller's options, with the tally m as its ctx. */
static atls_loop_t *
multi_loop_new(multi_t *m, atls_store_t *st, const atls_job_conf_t *confs, size_t n)
{
    const atls_job_many_opts_t *o = m->o;
    atls_loop_conf_t            lc;
    atls_sched_opts_t           so;

    memset(&lc, 0, sizeof(lc));
    lc.ctx = m;
    lc.ops_v = o->ops_v;
    lc.default_ops = o->default_ops;
    lc.done = multi_done;
    lc.stopping = o->stopping != NULL ? multi_stopping : NULL;
    lc.tick = o->tick != NULL ? multi_tick : NULL;
    lc.home = o->home != NULL ? multi_home : NULL;
    memset(&so, 0, sizeof(so));
    so.max_parallel = o->max_parallel;
    so.ari = o->ari;
    so.events = o->events;
    so.policy = o->policy;
    so.names_grace_s = o->names_grace_s;
    so.on_demand = o->on_demand;
    return atls_loop_new(st, confs, n, &so, &lc, m->err, m->errlen);
}

/* force: every certificate gets an attempt now (CLI); else the scheduler
 * decides (a check pass). */
static int
multi_run(atls_store_t *st, const atls_job_conf_t *confs, size_t n,
          const atls_job_many_opts_t *opts, int force, int *results,
          char *err, size_t errlen)
{
    atls_job_many_opts_t defaults;
    atls_loop_t         *l;
    multi_t              m;
    char                 scratch[1];
    size_t               i;
    int                  rc = 0;

    if (err == NULL || errlen == 0) {
        err = scratch;
        errlen = sizeof(scratch);
    }
    err[0] = '\0';
    if (opts == NULL) {
        memset(&defaults, 0, sizeof(defaults));
        opts = &defaults;
    }
    for (i = 0; results != NULL && i < n; i++) {
        results[i] = -1;    /* until proven otherwise (also: never started) */
    }
    if (n == 0 && opts->events == NULL) {
        return 0;   /* with events: the notifier may have a queue to deliver */
    }
    memset(&m, 0, sizeof(m));
    m.o = opts;
    m.told = multi_alloc(n + 1);
    m.results = results;
    m.err = err;
    m.errlen = errlen;
    l = multi_loop_new(&m, st, confs, n);
    if (l == NULL) {
        free(m.told);
        return -1;
    }
    if (force) {
        atls_loop_force(l);
        atls_loop_run(l, 0);
    } else {
        /* the registry's names of the caller's dynamic homes joined */
        atls_loop_check(l);
        atls_loop_run(l, opts->recheck_ms);
    }
    atls_loop_free(l);
    free(m.told);

    if (m.failed > 0) {
        rc = -1;
    }
    if (force && m.n_done < n) {
        rc = -1;
        if (err[0] == '\0') {
            snprintf(err, errlen, "stopped before %zu of %zu certificates were tried",
                     n - m.n_done, n);
        }
    }
    return rc;
}

void
atls_job_conf_of_meta(atls_job_conf_t *c, const atls_cert_meta_t *m)
{
    c->names = (const char *const *) m->names;
    c->n_names = m->n_names;
    c->issuer = &m->issuer;
}

int
atls_job_run_many(atls_store_t *st, atls_cert_meta_t *const *metas, size_t n,
                  const atls_job_many_opts_t *opts, int *results,
                  char *err, size_t errlen)
{
    atls_job_conf_t *confs = multi_alloc((n + 1) * sizeof(*confs));
    size_t           i;
    int              rc;

    for (i = 0; i < n; i++) {
        atls_job_conf_of_meta(&confs[i], metas[i]);
    }
    rc = multi_run(st, confs, n, opts, 1, results, err, errlen);
    free(confs);
    return rc;
}

int
atls_job_run_many_blocking(atls_store_t *st, atls_cert_meta_t *const *metas, size_t n,
                           size_t max_parallel, const atls_challenge_ops_t *ops,
                           int *results, char *err, size_t errlen)
{
    atls_job_many_opts_t o;

    memset(&o, 0, sizeof(o));
    o.max_parallel = max_parallel;
    o.default_ops = ops;
    return atls_job_run_many(st, metas, n, &o, results, err, errlen);
}

int
atls_job_check_pass(atls_store_t *st, const atls_job_conf_t *confs, size_t n,
                    const atls_job_many_opts_t *opts, char *err, size_t errlen)
{
    return multi_run(st, confs, n, opts, 0, NULL, err, errlen);
}
