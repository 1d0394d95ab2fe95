/*
 * The scheduler's events (atls_event.h): what it tells atls_events_emit()
 * about orders, deploys, revocations and OCSP (called from sched_order.c
 * and sched_ocsp.c), the policy's refusals (atls_sched_add), and the
 * expiry alerts of managed certificates (kt_info) and of the static ones
 * the store's inventory lists.
 *
 * Expiry alerts: one "expiring" event per alert level per certificate (the
 * smallest level reached: levels crossed at once say only that one) and
 * one "expired", the state recorded in the store before the event is
 * emitted, so that neither a second pass nor a restart says it again.  A
 * store that cannot record it now (the certificate's lock is held) is
 * asked again later; nothing is written when nothing changed.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/x509.h>
#include "atls.h"
#include "atls_crypto.h"
#include "atls_event.h"
#include "atls_inventory.h"
#include "atls_job.h"
#include "atls_policy.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "job_int.h"
#include "sched_internal.h"

/* ---- certificate facts --------------------------------------------------------- */

/* What an event says about a stored certificate. */
typedef struct {
    char   serial[132];
    char   issuer[512];     /* the issuer DN, RFC 2253 one line */
    time_t not_after;
} sched_leaf_facts_t;

/* The facts of id's certificate of kt stored now; -1 when there is none. */
static int
leaf_facts(atls_store_t *st, const char *id, atls_key_type_t kt, sched_leaf_facts_t *f)
{
    atls_cert_info_t info;
    X509            *leaf = NULL;
    char             err[256];
    int              rc = -1;

    memset(f, 0, sizeof(*f));
    memset(&info, 0, sizeof(info));
    if (atls_store_load_leaf(st, id, kt, &leaf, err, sizeof(err)) == ATLS_STORE_OK
        && leaf != NULL && atls_cert_info(leaf, &info) == 0)
    {
        snprintf(f->serial, sizeof(f->serial), "%s", info.serial);
        atls_job_issuer_dn(leaf, f->issuer, sizeof(f->issuer));
        f->not_after = info.not_after;
        rc = 0;
    }
    atls_cert_info_free(&info);
    X509_free(leaf);
    return rc;
}

/* ---- emitting ------------------------------------------------------------------ */

void
atls_sched_event_init(atls_event_t *e, atls_event_type_t type)
{
    memset(e, 0, sizeof(*e));
    e->type = type;
    e->reason = -1;
}

/* Events about a certificate that stands for itself, with its facts. */
static int
event_has_facts(atls_event_type_t type)
{
    return type != ATLS_EV_KEY_GENERATED && type != ATLS_EV_ACCOUNT_CREATED
           && type != ATLS_EV_POLICY_DENIED;
}

void
atls_sched_emit_cert(sched_slot_t *sl, atls_event_type_t type, atls_key_type_t kt,
                     atls_event_t *e)
{
    atls_sched_t       *s = sl->s;
    atls_event_t        none;
    sched_leaf_facts_t  f;

    if (s->events == NULL) {
        return;
    }
    if (e == NULL) {
        atls_sched_event_init(&none, type);
        e = &none;
    }
    e->type = type;
    e->cert_id = sl->cert->id;
    e->names = (const char *const *) sl->cert->names;
    e->n_names = sl->cert->n_names;
    e->key_type = e->key_type != NULL ? e->key_type : atls_key_type_name(kt);
    e->directory = sl->cert->issuer.directory;
    if (event_has_facts(type) && leaf_facts(s->st, sl->cert->id, kt, &f) == 0) {
        if (type == ATLS_EV_OBTAINING) {
            e->old_serial = f.serial;   /* the one the order replaces */
        } else {
            e->serial = f.serial;
            e->issuer = f.issuer;
            e->not_after = f.not_after;
        }
    }
    (void) atls_events_emit(s->events, e);
}

void
atls_sched_emit_order_end(sched_slot_t *sl, const atls_cert_meta_t *after,
                          const atls_error_t *err, const char *old_serial)
{
    atls_sched_t *s = sl->s;
    atls_event_t  e;
    char          serr[256];

    if (atls_store_counter_add(s->st, err == NULL ? "orders.ok" : "orders.failed", 1,
                               serr, sizeof(serr)) != ATLS_STORE_OK)
    {
        atls_log(ATLS_LOG_DEBUG, "autotls: certificate \"%s\": orders counter: %s",
                 sl->cert->id, serr);
    }
    if (err == NULL) {
        atls_sched_event_init(&e, old_serial != NULL ? ATLS_EV_RENEWED : ATLS_EV_OBTAINED);
        e.old_serial = old_serial;
        atls_sched_emit_cert(sl, e.type, sl->kt, &e);
        return;
    }
    atls_sched_event_init(&e, ATLS_EV_FAILED);
    e.outcome = "error";
    e.err_class = atls_err_class_name(err->cls);
    e.err_type = err->type;
    e.err_detail = err->detail;
    if (after != NULL) {
        e.attempt = after->failures;
        e.next_attempt = after->next_attempt;
    }
    atls_sched_emit_cert(sl, ATLS_EV_FAILED, sl->kt, &e);
}

/* "ec256", "rsa2048", or the algorithm alone ("ed25519"). */
static void
key_type_text(const char *alg, int bits, char *buf, size_t len)
{
    if ((strcmp(alg, "rsa") == 0 || strcmp(alg, "ec") == 0) && bits > 0) {
        snprintf(buf, len, "%s%d", alg, bits);
    } else {
        snprintf(buf, len, "%s", alg);
    }
}

int
atls_sched_policy_refuses(atls_sched_t *s, const char *const *names, size_t n,
                          const atls_issuer_t *is, char *err, size_t errlen)
{
    const char  *rule = NULL;
    atls_event_t e;
    char         why[512];
    char        *id;

    why[0] = '\0';
    if (s->policy == NULL
        || atls_policy_check(s->policy, names, n, is, &rule, why, sizeof(why)) == 0)
    {
        return 0;
    }
    rule = rule != NULL ? rule : "?";
    snprintf(err, errlen, "refused by the policy (rule \"%s\"): %s", rule, why);
    if (s->events != NULL) {
        id = atls_cert_id(names[0]);
        atls_sched_event_init(&e, ATLS_EV_POLICY_DENIED);
        e.cert_id = id;
        e.names = names;
        e.n_names = n;
        e.key_type = is->n_key_types > 0 ? atls_key_type_name(is->key_types[0]) : NULL;
        e.directory = is->directory;
        e.outcome = "denied";
        e.rule = rule;
        e.detail = why;
        (void) atls_events_emit(s->events, &e);
        free(id);
    }
    return 1;
}

/* ---- expiry alerts ------------------------------------------------------------- */

static void
warn_levels(const atls_sched_t *s, atls_warn_t *w)
{
    const atls_notify_conf_t *c = atls_events_conf(s->events);

    if (c != NULL && c->warn.n > 0) {
        *w = c->warn;
    } else {
        atls_warn_default(w);
    }
}

/*
 * The alert a certificate expiring at not_after calls for at now, given
 * what was sent (updated): ATLS_EV_EXPIRED once, else ATLS_EV_EXPIRING for
 * the smallest level reached when none that small was sent; ATLS_EV_MAX
 * when nothing is to be said.
 */
static atls_event_type_t
warn_step(const atls_warn_t *w, time_t not_after, time_t now, long *warned,
          time_t *expired_sent)
{
    long level;

    if (not_after <= now) {
        if (*expired_sent != 0) {
            return ATLS_EV_MAX;
        }
        *expired_sent = now;
        return ATLS_EV_EXPIRED;
    }
    level = atls_warn_level(w, not_after, now);
    if (level == 0 || (*warned != 0 && *warned <= level)) {
        return ATLS_EV_MAX;
    }
    *warned = level;
    return ATLS_EV_EXPIRING;
}

/* When the next alert is due: the next level's crossing or the expiry
 * itself; 0 when all was said. */
static time_t
warn_next(const atls_warn_t *w, time_t not_after, time_t now, time_t expired_sent)
{
    time_t t;

    if (expired_sent != 0) {
        return 0;
    }
    if (not_after <= now) {
        return now;
    }
    t = atls_warn_next(w, not_after, now);
    return t != 0 && t < not_after ? t : not_after;
}

static time_t
earliest(time_t a, time_t b)
{
    return a == 0 || (b != 0 && b < a) ? b : a;
}

/*
 * Decides ki's alert again on the state stored under the certificate's
 * lock (not waited for), so that two processes sharing the store never
 * both say it, and records it there.  The alert to emit, ATLS_EV_MAX for
 * none (*retry 1: it could not be recorded now).  ki, the slot's copy,
 * follows the store.
 */
static atls_event_type_t
warn_record(atls_store_t *st, const char *id, const atls_warn_t *w, time_t now,
            atls_cert_kt_info_t *ki, int *retry)
{
    atls_store_lock_t   *lk;
    atls_cert_meta_t     m;
    atls_cert_kt_info_t *cur;
    atls_event_type_t    type = ATLS_EV_MAX;
    char                 err[256];

    *retry = 0;
    if (atls_job_lock_load(st, id, &lk, &m, err, sizeof(err)) != 0) {
        atls_log(ATLS_LOG_DEBUG, "autotls: certificate \"%s\": expiry alert not "
                 "recorded now: %s", id, err);
        *retry = 1;
        return ATLS_EV_MAX;
    }
    cur = atls_cert_meta_kt(&m, ki->key_type);
    /* replaced meanwhile: the next pass looks at the new one */
    if (cur != NULL && cur->serial != NULL && strcmp(cur->serial, ki->serial) == 0) {
        type = warn_step(w, cur->not_after, now, &cur->warned_level, &cur->expired_sent);
        if (type != ATLS_EV_MAX
            && atls_store_save_meta(st, &m, err, sizeof(err)) != ATLS_STORE_OK)
        {
            atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\": cannot record the "
                     "expiry alert: %s", id, err);
            type = ATLS_EV_MAX;
            *retry = 1;
        } else {
            ki->warned_level = cur->warned_level;
            ki->expired_sent = cur->expired_sent;
        }
    }
    atls_cert_meta_free(&m);
    atls_store_unlock(st, lk);
    return type;
}

void
atls_sched_warn_cert(sched_slot_t *sl)
{
    atls_sched_t    *s = sl->s;
    atls_key_type_t  kts[ATLS_KEY_TYPE_MAX];
    atls_warn_t      w;
    atls_event_t     e;
    time_t           now = time(NULL), due = 0;
    size_t           i, n;
    int              retry;

    sl->cert->warn_due = 0;
    if (s->events == NULL) {
        return;
    }
    warn_levels(s, &w);
    /* the configured key types only: one no longer served is not watched */
    n = atls_job_key_types(&sl->meta.issuer, kts);
    for (i = 0; i < n; i++) {
        atls_cert_kt_info_t *ki = atls_cert_meta_kt(&sl->meta, kts[i]);
        atls_event_type_t    type;
        long                 warned;
        time_t               sent;

        if (ki == NULL || ki->serial == NULL) {
            continue;
        }
        /* the store is locked only when something is to be said */
        warned = ki->warned_level;
        sent = ki->expired_sent;
        if (warn_step(&w, ki->not_after, now, &warned, &sent) != ATLS_EV_MAX) {
            type = warn_record(s->st, sl->cert->id, &w, now, ki, &retry);
            if (retry) {
                /* not before a while: the lock may be held for minutes */
                due = earliest(due, now + SCHED_REV_MIN_WAIT_S);
                continue;
            }
            if (type != ATLS_EV_MAX) {
                atls_sched_event_init(&e, type);
                e.level_s = type == ATLS_EV_EXPIRING ? ki->warned_level : 0;
                atls_sched_emit_cert(sl, type, kts[i], &e);
            }
        }
        due = earliest(due, warn_next(&w, ki->not_after, now, ki->expired_sent));
    }
    sl->cert->warn_due = due;
}

static void
warn_emit_static(atls_sched_t *s, const atls_inventory_item_t *it, atls_event_type_t type)
{
    atls_event_t e;
    char         kt[32];

    key_type_text(it->facts.key_alg, it->facts.key_bits, kt, sizeof(kt));
    atls_sched_event_init(&e, type);
    e.cert_id = it->id;
    e.names = (const char *const *) it->facts.names;
    e.n_names = it->facts.n_names;
    e.key_type = kt;
    e.serial = it->facts.serial;
    e.issuer = it->facts.issuer;
    e.not_after = it->facts.not_after;
    e.source = "static";
    e.path = it->path;
    e.level_s = type == ATLS_EV_EXPIRING ? it->warned_level : 0;
    (void) atls_events_emit(s->events, &e);
}

void
atls_sched_warn_static(atls_sched_t *s)
{
    atls_inventory_item_t *items = NULL;
    atls_warn_t            w;
    time_t                 now = time(NULL), due = 0;
    size_t                 i, n = 0;
    char                   err[256];

    s->warn_wake = 0;
    if (s->events == NULL) {
        return;
    }
    if (atls_store_inventory_list(s->st, &items, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_DEBUG, "autotls: no inventory of static certificates: %s", err);
        return;
    }
    warn_levels(s, &w);
    for (i = 0; i < n; i++) {
        atls_inventory_item_t *it = &items[i];
        atls_event_type_t      type;

        if (it->error != NULL || it->facts.not_after == 0) {
            continue;   /* unreadable: a finding of its own, no alert */
        }
        type = warn_step(&w, it->facts.not_after, now, &it->warned_level,
                         &it->expired_sent);
        if (type != ATLS_EV_MAX) {
            if (atls_store_inventory_save(s->st, it, err, sizeof(err)) != ATLS_STORE_OK) {
                atls_log(ATLS_LOG_WARN, "autotls: static certificate %s: cannot record "
                         "the expiry alert: %s", it->path, err);
                due = earliest(due, now + SCHED_REV_MIN_WAIT_S);
                continue;
            }
            warn_emit_static(s, it, type);
        }
        due = earliest(due, warn_next(&w, it->facts.not_after, now, it->expired_sent));
    }
    atls_inventory_items_free(items, n);
    if (due != 0) {
        s->warn_wake = atls_sched_now_ms() + (long long) (due > now ? due - now : 0) * 1000;
    }
}
