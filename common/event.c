/*
 * The event model: names, the JSON every consumer sees (audit log, queue,
 * sinks, the CLI's -v) and who emitted it.  The JSON is built from the
 * event's own members only, so nothing secret can reach it unless a caller
 * puts it in a member meant for something else.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include "atls_event.h"
#include "atls_ocsp.h"
#include "atls_priv.h"
#include "atls_schedule.h"
#include "store_int.h"

/* indexed by atls_event_type_t */
static const char *const event_names[ATLS_EV_MAX] = {
    "obtaining", "obtained", "renewed", "deployed", "failed", "expiring",
    "expired", "revoked", "ocsp-refreshed", "ocsp-failed", "policy-denied",
    "imported", "removed", "renewal-requested", "key-generated",
    "account-created", "test", "name-added", "name-removed",
};

const char *
atls_event_name(atls_event_type_t t)
{
    if ((int) t < 0 || t >= ATLS_EV_MAX) {
        return "unknown";
    }
    return event_names[t];
}

int
atls_event_type_from_name(const char *name)
{
    int i;

    for (i = 0; name != NULL && i < ATLS_EV_MAX; i++) {
        if (strcmp(event_names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

/* ---- to JSON -------------------------------------------------------------- */

static const char *
event_outcome(const atls_event_t *e)
{
    if (e->outcome != NULL) {
        return e->outcome;
    }
    switch (e->type) {
    case ATLS_EV_FAILED:
    case ATLS_EV_OCSP_FAILED:
        return "error";
    case ATLS_EV_POLICY_DENIED:
        return "denied";
    default:
        return "ok";
    }
}

static int
event_set_long(json_t *o, const char *key, long long v)
{
    return atls_meta_set(o, key, json_integer(v));
}

static json_t *
event_actor_json(const atls_actor_t *a)
{
    json_t *o = json_object();
    int     rc = 0;

    if (o == NULL || a == NULL) {
        return o;
    }
    rc |= atls_meta_set_str(o, "kind", a->kind);
    rc |= atls_meta_set_str(o, "software", a->software);
    if (a->pid > 0) {
        rc |= event_set_long(o, "pid", a->pid);
    }
    if (a->uid >= 0 && a->kind != NULL && strcmp(a->kind, "cli") == 0) {
        rc |= event_set_long(o, "uid", a->uid);
        rc |= atls_meta_set_str(o, "user", a->user);
    }
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The failure in parts: present for `failed`, or whenever a caller gave one. */
static int
event_error_json(json_t *root, const atls_event_t *e)
{
    json_t *o;
    int     rc = 0;

    if (e->type != ATLS_EV_FAILED && e->err_class == NULL && e->err_type == NULL
        && e->err_detail == NULL)
    {
        return 0;
    }
    o = json_object();
    if (o == NULL) {
        return -1;
    }
    rc |= atls_meta_set_str(o, "class", e->err_class);
    rc |= atls_meta_set_str(o, "type", e->err_type);
    rc |= atls_meta_set_str(o, "detail", e->err_detail);
    if (e->attempt > 0) {
        rc |= event_set_long(o, "attempt", e->attempt);
    }
    rc |= atls_meta_set_time(o, "next_attempt", e->next_attempt);
    rc |= atls_meta_set(root, "error", o);
    return rc;
}

static int
event_level_json(json_t *root, const atls_event_t *e)
{
    char buf[32];
    int  rc = 0;

    if (e->level_s <= 0) {
        return 0;
    }
    rc |= atls_meta_set_str(root, "level", atls_duration_format(e->level_s, buf,
                                                                 sizeof(buf)));
    rc |= event_set_long(root, "level_seconds", e->level_s);
    return rc;
}

/* The CRLReason only means something for `revoked` (0 is a real reason,
 * "unspecified", so a zeroed event must not claim it elsewhere). */
static int
event_revoked_json(json_t *root, const atls_event_t *e)
{
    int rc = 0;

    if (e->type == ATLS_EV_REVOKED && e->reason >= 0) {
        rc |= atls_meta_set_str(root, "reason", atls_crl_reason_name(e->reason));
    }
    rc |= atls_meta_set_str(root, "revoked_source", e->revoked_source);
    return rc;
}

static int
event_names_json(json_t *root, const atls_event_t *e)
{
    if (e->names == NULL || e->n_names == 0) {
        return 0;
    }
    return atls_meta_set(root, "names", atls_meta_strv((char *const *) e->names,
                                                       e->n_names));
}

static int
event_server_json(json_t *root)
{
    char host[256];

    if (gethostname(host, sizeof(host)) != 0) {
        return 0;
    }
    host[sizeof(host) - 1] = '\0';
    return atls_meta_set_str(root, "server", host);
}

char *
atls_event_to_json(const atls_event_t *e, const atls_actor_t *actor)
{
    json_t *root;
    char   *out = NULL;
    int     rc = 0;

    root = json_object();
    if (root == NULL) {
        return NULL;
    }
    rc |= atls_meta_set_str(root, "event", atls_event_name(e->type));
    rc |= atls_meta_set_time(root, "time", e->time > 0 ? e->time : time(NULL));
    rc |= atls_meta_set_str(root, "id", e->cert_id);
    rc |= event_names_json(root, e);
    rc |= atls_meta_set_str(root, "key_type", e->key_type);
    rc |= atls_meta_set_str(root, "serial", e->serial);
    rc |= atls_meta_set_str(root, "old_serial", e->old_serial);
    rc |= atls_meta_set_str(root, "issuer", e->issuer);
    rc |= atls_meta_set_time(root, "not_after", e->not_after);
    rc |= atls_meta_set_str(root, "source", e->source != NULL ? e->source : "managed");
    rc |= atls_meta_set_str(root, "path", e->path);
    rc |= atls_meta_set_str(root, "directory", e->directory);
    rc |= atls_meta_set_str(root, "outcome", event_outcome(e));
    rc |= event_error_json(root, e);
    rc |= event_level_json(root, e);
    rc |= event_revoked_json(root, e);
    rc |= atls_meta_set_str(root, "rule", e->rule);
    rc |= atls_meta_set_str(root, "detail", e->detail);
    rc |= event_server_json(root);
    rc |= atls_meta_set(root, "actor", event_actor_json(actor));
    if (rc == 0) {
        /* compact: one audit record per line, members in the order above */
        out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    }
    json_decref(root);
    return out;
}

/* ---- the actor ------------------------------------------------------------ */

void
atls_actor_self(atls_actor_t *a, const char *kind, const char *software)
{
    static __thread char user[256];

    memset(a, 0, sizeof(*a));
    a->kind = kind;
    a->software = software;
    a->pid = (long) getpid();
    a->uid = -1;
    if (kind == NULL || strcmp(kind, "cli") != 0) {
        return;
    }
    /* the real uid: who ran the command, even through a set-uid wrapper */
    a->uid = (long) getuid();
    atls_user_name(getuid(), user, sizeof(user));
    a->user = user;
}
