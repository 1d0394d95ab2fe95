/*
 * What the CLI records of its actions, and the policy it honours.
 *
 * Every command that changes state emits events like a server does: one
 * audit record each, the store's counters, and the notification queue of
 * the sinks the server saved in notify.json (the server delivers them).
 * The actor is the user who ran the CLI, taken before root becomes the
 * store's owner.  issue and renew refuse, before any CA is contacted, a
 * certificate the store's policy (policy.json, saved by the server) does
 * not allow; there is no option to override it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

/* -v: each event as the one line the audit log records. */
static void
cli_event_print(void *ctx, const atls_event_t *e, const char *json)
{
    (void) ctx;
    fprintf(stderr, "autotls: event %s: %s\n", atls_event_name(e->type), json);
}

/* Why the store's policy could not be read ("" when it could, or there
 * is none): issue and renew are refused then, a request still recorded. */
static char cli_policy_error[512];

static void
cli_policy_load(atls_store_t *st, cli_opts_t *o)
{
    cli_policy_error[0] = '\0';
    if (atls_store_load_policy(st, &o->policy, cli_policy_error,
                               sizeof(cli_policy_error)) != ATLS_STORE_ERROR) {
        cli_policy_error[0] = '\0';
    }
}

int
cli_events_open(atls_store_t *st, cli_opts_t *o, const char *verb)
{
    atls_notify_conf_t conf;
    char               err[512];
    int                rc;

    memset(&conf, 0, sizeof(conf));
    rc = atls_store_load_notify_conf(st, &conf, err, sizeof(err));
    if (rc == ATLS_STORE_ERROR) {
        /* the audit record does not depend on it: recorded, not sent */
        cli_error("warning: %s: events are recorded but not queued for "
                  "notification: %s", verb, err);
    }
    o->events = atls_events_new(st, &o->actor, rc == ATLS_STORE_OK ? &conf : NULL);
    atls_notify_conf_free(&conf);
    if (o->events == NULL) {
        cli_error("%s: out of memory", verb);
        return -1;
    }
    if (o->verbose) {
        atls_events_set_listener(o->events, cli_event_print, NULL);
    }
    cli_policy_load(st, o);
    return 0;
}

void
cli_events_close(cli_opts_t *o)
{
    atls_events_free(o->events);
    o->events = NULL;
    atls_policy_free(o->policy);
    o->policy = NULL;
}

void
cli_emit(const cli_opts_t *o, const atls_event_t *e)
{
    if (o->events != NULL && atls_events_emit(o->events, e) != 0) {
        cli_error("warning: %s %s: the audit record could not be written to %s",
                  atls_event_name(e->type), e->cert_id ? e->cert_id : "-", o->store_dir);
    }
}

void
cli_event_of_meta(atls_event_t *e, atls_event_type_t type, const atls_cert_meta_t *m)
{
    memset(e, 0, sizeof(*e));
    e->type = type;
    e->cert_id = m->id;
    e->names = (const char *const *) m->names;
    e->n_names = m->n_names;
    e->directory = m->issuer.directory;
    e->reason = -1;
}

int
cli_policy_check(const cli_opts_t *o, const char *verb, const char *const *names,
                 size_t n, const atls_issuer_t *is)
{
    atls_event_t  e;
    const char   *rule = NULL;
    char          why[1024];
    char         *id;

    if (cli_policy_error[0] != '\0') {
        /* a policy that cannot be read allows nothing */
        snprintf(why, sizeof(why), "the store's policy cannot be read: %s",
                 cli_policy_error);
        cli_error("%s %s: refused: %s", verb, names[0], why);
    } else if (atls_policy_check(o->policy, names, n, is, &rule, why, sizeof(why)) == 0) {
        return 0;
    } else {
        cli_error("%s %s: refused by the store's policy, rule %s: %s", verb, names[0],
                  rule, why);
    }
    id = atls_cert_id(names[0]);
    memset(&e, 0, sizeof(e));
    e.type = ATLS_EV_POLICY_DENIED;
    e.cert_id = id;
    e.names = names;
    e.n_names = n;
    e.directory = is->directory;
    e.outcome = "denied";
    e.reason = -1;
    e.rule = rule;
    e.detail = why;
    cli_emit(o, &e);
    free(id);
    return -1;
}
