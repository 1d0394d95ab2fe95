/*
 * Certificates on the core's scheduler (issue and renew; several at once
 * with issue --each, renew --all), with standalone responders shared by
 * every order.  One
 * responder per port the certificates record, so certificates issued with
 * different --http-port values can be renewed together.  issue and
 * renew NAME force an order of every key type; renew --all does what each
 * certificate's plan says (a missing key type alone, say), as a server
 * would.  The scheduler emits the events of what it does through the
 * command's emitter (o->events).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_job.h"
#include "cli.h"

typedef struct {
    atls_challenge_type_t type;
    int                   port;
    cli_responders_t      r;
    atls_challenge_ops_t  ops;
} many_responder_t;

/* many_ctx_t.results until the core reports */
#define MANY_NOT_TRIED 1

typedef struct {
    atls_store_t            *st;
    const cli_opts_t        *o;
    const char              *verb;
    atls_cert_meta_t *const *metas;
    int                     *results;
} many_ctx_t;

static int
responder_port(const atls_issuer_t *is)
{
    if (is->challenge == ATLS_CHAL_HTTP01) {
        return is->http_port > 0 ? is->http_port : 80;
    }
    return is->tls_port > 0 ? is->tls_port : 443;
}

/* The responder for m's challenge type and port, started on first use;
 * NULL after printing an error. */
static many_responder_t *
responder_get(many_responder_t *v, size_t *nv, const cli_opts_t *o, const char *verb,
              const atls_cert_meta_t *m)
{
    many_responder_t *r;
    char              err[512];
    int               port = responder_port(&m->issuer);
    size_t            i;

    for (i = 0; i < *nv; i++) {
        if (v[i].type == m->issuer.challenge && v[i].port == port) {
            return &v[i];
        }
    }
    r = &v[(*nv)];
    memset(r, 0, sizeof(*r));
    r->type = m->issuer.challenge;
    r->port = port;
    if (r->type == ATLS_CHAL_HTTP01) {
        r->r.http = cli_http_start(o->listen_address, port, err, sizeof(err));
        if (r->r.http == NULL) {
            cli_error("%s %s: http-01 responder: %s", verb, m->names[0], err);
            return NULL;
        }
    } else {
        r->r.tls = cli_tls_start(o->listen_address, port, err, sizeof(err));
        if (r->r.tls == NULL) {
            cli_error("%s %s: tls-alpn-01 responder: %s", verb, m->names[0], err);
            return NULL;
        }
    }
    cli_responder_ops(&r->r, &r->ops);
    (*nv)++;
    return r;
}

/* Called by the core as soon as one certificate is finished. */
static void
many_done(void *ctx, size_t i, int rc, const char *err)
{
    many_ctx_t             *c = ctx;
    const atls_cert_meta_t *m = c->metas[i];
    size_t                  n = strlen(m->id);

    c->results[i] = rc;
    if (rc == 0) {
        cli_store_changed(c->st, m->id);
        cli_print_obtained(c->st, c->o->store_dir, m->id);
        fflush(stdout);
        return;
    }
    /* the core says "<id> (<keytype>): type: detail"; name it like issue does */
    if (err != NULL && strncmp(err, m->id, n) == 0 && err[n] == ' ') {
        cli_error("%s %s%s", c->verb, m->names[0], err + n);
    } else {
        cli_error("%s %s: %s", c->verb, m->names[0], err && err[0] ? err : "failed");
    }
}

int
cli_obtain_many(atls_store_t *st, const cli_opts_t *o, const char *verb,
                atls_cert_meta_t *const *metas, size_t n)
{
    many_responder_t             *resp;
    const atls_challenge_ops_t  **ops_v;
    atls_job_many_opts_t          mo;
    many_ctx_t                    ctx;
    atls_job_conf_t              *confs;
    size_t                        i, nr = 0, failed = 0, tried = 0;
    int                          *results;
    char                          err[1024];
    int                           rc = CLI_EXIT_FAIL;
    /* renew --all: each certificate's own plan; else an attempt now */
    int                           renew_all = (o->given & CLI_O_ALL) != 0;

    resp = calloc(n + 1, sizeof(*resp));
    ops_v = calloc(n + 1, sizeof(*ops_v));
    results = calloc(n + 1, sizeof(*results));
    confs = calloc(n + 1, sizeof(*confs));
    if (resp == NULL || ops_v == NULL || results == NULL || confs == NULL) {
        abort();
    }

    for (i = 0; i < n; i++) {
        const atls_issuer_t *is = &metas[i]->issuer;
        many_responder_t    *r;

        if (is->challenge == ATLS_CHAL_DNS01) {
            if (is->dns_hook == NULL || is->dns_hook[0] == '\0') {
                cli_error("%s %s: dns-01 needs --dns-hook CMD", verb, metas[i]->names[0]);
                goto done;
            }
            ops_v[i] = NULL;    /* the scheduler runs the issuer's hook */
            continue;
        }
        r = responder_get(resp, &nr, o, verb, metas[i]);
        if (r == NULL) {
            goto done;
        }
        ops_v[i] = &r->ops;
    }

    ctx.st = st;
    ctx.o = o;
    ctx.verb = verb;
    ctx.metas = metas;
    ctx.results = results;
    memset(&mo, 0, sizeof(mo));
    mo.max_parallel = o->parallel;
    mo.ops_v = ops_v;
    mo.done = many_done;
    mo.ctx = &ctx;
    /* the scheduler records what it does as this CLI run */
    mo.events = o->events;
    mo.policy = o->policy;
    err[0] = '\0';
    for (i = 0; i < n; i++) {
        results[i] = MANY_NOT_TRIED;
        atls_job_conf_of_meta(&confs[i], metas[i]);
    }
    if (renew_all) {
        (void) atls_job_check_pass(st, confs, n, &mo, err, sizeof(err));
    } else {
        (void) atls_job_run_many(st, metas, n, &mo, NULL, err, sizeof(err));
    }

    for (i = 0; i < n; i++) {
        /* a renewal the plan found not due after all is no failure */
        if (results[i] == MANY_NOT_TRIED && renew_all) {
            continue;
        }
        tried++;
        failed += results[i] != 0;
    }
    if (tried > 1) {
        printf("%zu of %zu certificates obtained\n", tried - failed, tried);
    }
    rc = failed == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;

done:
    for (i = 0; i < nr; i++) {
        cli_http_stop(resp[i].r.http);
        cli_tls_stop(resp[i].r.tls);
    }
    free(resp);
    free(ops_v);
    free(results);
    free(confs);
    return rc;
}
