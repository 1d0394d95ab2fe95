/*
 * The scheduler, challenges and hooks: http-01 / tls-alpn-01 answers go to
 * the host's publish / withdraw; dns-01 with the issuer's dns_hook runs
 * the hook through the host in the background, its time limit kept on the
 * scheduler's timer.  A failed order's record removals run on their own
 * ("orphans"): the attempt ends at once, the certificate's next order
 * waits for them (sched_order.c).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "atls_acme.h"
#include "atls_sched.h"
#include "acme_published.h"
#include "sched_internal.h"

/* ---- operations ---------------------------------------------------------- */

atls_sched_op_t *
atls_sched_op_new(sched_slot_t *sl, int hook)
{
    atls_sched_op_t *op = calloc(1, sizeof(*op));

    if (op == NULL) {
        abort();
    }
    op->slot = sl;
    op->cert = sl->cert;
    op->hook = hook;
    return op;
}

void
atls_sched_op_free(atls_sched_op_t *op)
{
    if (op != NULL) {
        free(op->what);
        free(op);
    }
}

static int
slot_uses_dns_hook(const sched_slot_t *sl, const atls_challenge_t *c)
{
    return c->type == ATLS_CHAL_DNS01 && sl->meta.issuer.dns_hook != NULL
           && sl->meta.issuer.dns_hook[0] != '\0';
}

/* the dns hook already published the record: remember it */
static int
setup_recorded(void *ctx, const atls_challenge_t *c, char *why, size_t whylen)
{
    (void) ctx;
    (void) c;
    (void) why;
    (void) whylen;
    return 0;
}

/* ---- hooks ------------------------------------------------------------------ */

/* Starts the issuer's dns hook for c; 0 ok, -1 + why. */
static int
hook_run(atls_sched_t *s, atls_sched_op_t *op, const char *hook, const atls_challenge_t *c,
         char *why, size_t whylen)
{
    char *argv[5];

    argv[0] = (char *) hook;
    argv[1] = (char *) (op->setup ? "setup" : "teardown");
    argv[2] = c->dns_name;
    argv[3] = c->dns_value;
    argv[4] = NULL;
    op->what = atls_strdup(c->dns_name);
    op->deadline = atls_sched_now_ms() + s->hook_timeout_s * 1000;
    why[0] = '\0';
    if (s->host.hook_start == NULL) {
        snprintf(why, whylen, "this server cannot run hooks");
        return -1;
    }
    if (s->host.hook_start(s->host.ctx, op, argv, why, whylen) != 0) {
        if (why[0] == '\0') {
            snprintf(why, whylen, "cannot start the dns hook");
        }
        return -1;
    }
    return 0;
}

/* A teardown after a failed order: the TXT record must not stay behind,
 * but nobody waits for it beyond its time limit. */
static void
hook_orphan_teardown(sched_slot_t *sl, const atls_challenge_t *c)
{
    atls_sched_t    *s = sl->s;
    atls_sched_op_t *op;
    char             why[256];

    if (s->freeing) {
        atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\": the TXT record %s is left "
                 "behind (shutting down)", sl->cert->id, c->dns_name);
        return;
    }
    op = atls_sched_op_new(sl, 1);
    op->slot = NULL;
    op->setup = 0;
    if (hook_run(s, op, sl->meta.issuer.dns_hook, c, why, sizeof(why)) != 0) {
        atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\": cannot remove the TXT "
                 "record %s: %s", sl->cert->id, c->dns_name, why);
        atls_sched_op_free(op);
        return;
    }
    op->next = s->orphans;
    s->orphans = op;
}

/* The host's publish_wait for sl->hook_ch ended: the challenge is
 * recorded since its publish; a failure withdraws it at once. */
static void
publish_wait_end(sched_slot_t *sl, int ok, const char *msg)
{
    if (!ok) {
        atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\": %s", sl->cert->id, msg);
        atls_published_teardown(&sl->pub, &sl->ops, sl->hook_ch);
    }
    atls_acme_challenge_result(sl->e, ok, ok ? NULL : msg);
}

/*
 * A hook run ended: ok, or msg says why not ("dns hook setup failed: ...",
 * "dns hook timed out after N s").  A setup's outcome goes to the engine,
 * which fails the order with msg; a teardown's failure is only logged.
 */
void
atls_sched_hook_end(atls_sched_t *s, atls_sched_op_t *op, int ok, const char *msg)
{
    sched_slot_t     *sl = op->slot;
    atls_sched_op_t **pp;
    int               setup = op->setup, publish = op->publish;

    if (!ok && !setup) {
        atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\": %s (removing %s)",
                 op->cert->id, msg, op->what ? op->what : "?");
    }
    if (sl == NULL) {
        s->kick_due = 1;    /* the certificate's next order may start */
        for (pp = &s->orphans; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == op) {
                *pp = op->next;
                break;
            }
        }
        atls_sched_op_free(op);
        return;
    }
    sl->op = NULL;
    atls_sched_op_free(op);
    if (sl->e == NULL) {
        return;
    }
    if (publish) {
        publish_wait_end(sl, ok, msg);
    } else if (setup && ok) {
        /* remembered, so that a failed order removes the record */
        atls_challenge_ops_t recorded;

        memset(&recorded, 0, sizeof(recorded));
        recorded.setup = setup_recorded;
        atls_published_setup(&sl->pub, sl->e, &recorded, sl->hook_ch);
    } else if (setup) {
        atls_acme_challenge_result(sl->e, 0, msg);
    }
    sl->hook_ch = NULL;
    atls_sched_slot_step(sl, NULL);
}

/* 1 when the comma-separated list has the node of len bytes at node. */
static int
lagged_has(const char *list, const char *node, size_t len)
{
    const char *p = list;

    while (*p != '\0') {
        size_t n = strcspn(p, ",");

        if (n == len && strncmp(p, node, len) == 0) {
            return 1;
        }
        p += n;
        p += *p == ',';
    }
    return 0;
}

/* Adds each node of missing to sl->lagged once (a certificate of several
 * names waits for each challenge); a list beyond SCHED_LAGGED_MAX ends
 * in "...", since it is for a log line and an event. */
static void
slot_lagged_add(sched_slot_t *sl, const char *missing)
{
    const char *p = missing != NULL ? missing : "";
    char        buf[SCHED_LAGGED_MAX + 4];
    size_t      n, used;

    snprintf(buf, sizeof(buf), "%s", sl->lagged != NULL ? sl->lagged : "");
    while (*p != '\0') {
        n = strcspn(p, ",");
        while (n > 0 && *p == ' ') {
            p++;
            n--;
        }
        used = strlen(buf);
        if (n > 0 && !lagged_has(buf, p, n)
            && (used < 3 || strcmp(buf + used - 3, "...") != 0))
        {
            if (used + (used > 0) + n > SCHED_LAGGED_MAX) {
                snprintf(buf + used, sizeof(buf) - used, "...");
            } else {
                snprintf(buf + used, sizeof(buf) - used, "%s%.*s", used > 0 ? "," : "",
                         (int) n, p);
            }
        }
        p += n;
        p += *p == ',';
    }
    free(sl->lagged);
    sl->lagged = atls_strdup(buf);
}

void
atls_sched_hook_done_partial(atls_sched_t *s, atls_sched_op_t *op, const char *missing)
{
    char safe[SCHED_LAGGED_MAX + 4];

    /* node ids come from the store: printable before they reach a log */
    atls_log_escape(missing != NULL ? missing : "", safe, sizeof(safe));
    if (op->publish && op->slot != NULL) {
        slot_lagged_add(op->slot, safe);
    }
    atls_sched_hook_done(s, op, 1, "");
}

void
atls_sched_op_abandon(atls_sched_t *s, atls_sched_op_t *op)
{
    if (op->publish) {
        s->host.publish_cancel(s->host.ctx, op);
    } else if (op->hook) {
        if (s->host.hook_kill != NULL) {
            s->host.hook_kill(s->host.ctx, op);
        }
    } else if (s->host.http_cancel != NULL) {
        s->host.http_cancel(s->host.ctx, op);
    }
}

/* ---- challenges ------------------------------------------------------------- */

static int
slot_publish(void *ctx, const atls_challenge_t *c, char *why, size_t whylen)
{
    sched_slot_t *sl = ctx;
    atls_sched_t *s = sl->s;

    if (s->host.publish == NULL) {
        snprintf(why, whylen, "no responder for %s", atls_challenge_type_name(c->type));
        return -1;
    }
    return s->host.publish(s->host.ctx, sl->cert->data, c, why, whylen);
}

static void
slot_withdraw(void *ctx, const atls_challenge_t *c)
{
    sched_slot_t *sl = ctx;
    atls_sched_t *s = sl->s;

    if (slot_uses_dns_hook(sl, c)) {
        hook_orphan_teardown(sl, c);
    } else if (s->host.withdraw != NULL) {
        s->host.withdraw(s->host.ctx, sl->cert->data, c);
    }
}

/*
 * SETUP through a host with publish_wait (a cluster): published here,
 * then the host may hold the validation until every node answers c.
 * Recorded as soon as it is published, so that whatever ends the order
 * withdraws it.  1 when the engine can step on, 0 while the host waits.
 */
static int
slot_setup_wait(sched_slot_t *sl, const atls_challenge_t *c)
{
    atls_sched_t *s = sl->s;
    char          why[256];
    int           rc;

    why[0] = '\0';
    if (slot_publish(sl, c, why, sizeof(why)) != 0) {
        atls_acme_challenge_result(sl->e, 0, why[0] ? why : "challenge setup failed");
        return 1;
    }
    atls_published_record(&sl->pub, c);
    sl->op = atls_sched_op_new(sl, 1);
    sl->op->publish = 1;
    sl->op->setup = 1;
    sl->op->deadline = atls_sched_now_ms() + s->hook_timeout_s * 1000;
    sl->hook_ch = c;
    rc = s->host.publish_wait(s->host.ctx, sl->op, sl->cert->data, c, why, sizeof(why));
    if (rc == 1) {
        return 0;
    }
    atls_sched_op_free(sl->op);
    sl->op = NULL;
    sl->hook_ch = NULL;
    if (rc != 0) {
        atls_published_teardown(&sl->pub, &sl->ops, c);
        atls_acme_challenge_result(sl->e, 0, why[0] ? why : "challenge setup failed");
        return 1;
    }
    atls_acme_challenge_result(sl->e, 1, NULL);
    return 1;
}

/* SETUP: 1 when the engine can step on, 0 when a hook runs. */
int
atls_sched_slot_setup(sched_slot_t *sl, const atls_challenge_t *c)
{
    char why[256];

    if (!slot_uses_dns_hook(sl, c)) {
        if (sl->s->host.publish_wait != NULL && sl->s->host.publish_cancel != NULL) {
            return slot_setup_wait(sl, c);
        }
        atls_published_setup(&sl->pub, sl->e, &sl->ops, c);
        return 1;
    }
    sl->op = atls_sched_op_new(sl, 1);
    sl->op->setup = 1;
    sl->hook_ch = c;
    if (hook_run(sl->s, sl->op, sl->meta.issuer.dns_hook, c, why, sizeof(why)) != 0) {
        atls_sched_op_free(sl->op);
        sl->op = NULL;
        sl->hook_ch = NULL;
        atls_acme_challenge_result(sl->e, 0, why);
        return 1;
    }
    return 0;
}

/* TEARDOWN: 1 when the engine can step on, 0 when a hook runs. */
int
atls_sched_slot_teardown(sched_slot_t *sl, const atls_challenge_t *c)
{
    char why[256];

    if (!slot_uses_dns_hook(sl, c)) {
        atls_published_teardown(&sl->pub, &sl->ops, c);
        return 1;
    }
    /* forgotten first: the hook below removes it */
    atls_published_teardown(&sl->pub, NULL, c);
    if (strcmp(atls_acme_state_name(sl->e), "cleanup") == 0) {
        /* the order has failed: its end is not held up by the removal */
        hook_orphan_teardown(sl, c);
        return 1;
    }
    /* a validated name: removed before the order goes on */
    sl->op = atls_sched_op_new(sl, 1);
    sl->op->setup = 0;
    if (hook_run(sl->s, sl->op, sl->meta.issuer.dns_hook, c, why, sizeof(why)) != 0) {
        atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\": cannot remove the TXT "
                 "record %s: %s", sl->cert->id, c->dns_name, why);
        atls_sched_op_free(sl->op);
        sl->op = NULL;
        return 1;
    }
    return 0;
}

/* The challenge operations of sl for atls_published_*: the host's publish
 * and withdraw, a dns hook's removal after a failed order. */
void
atls_sched_slot_ops(sched_slot_t *sl)
{
    sl->ops.setup = slot_publish;
    sl->ops.teardown = slot_withdraw;
    sl->ops.ctx = sl;
}
