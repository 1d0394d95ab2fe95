/*
 * When each certificate needs the scheduler next, so that a pass costs
 * O(due certificates), not O(all): at 100,000 certificates a pass that
 * read every meta.json (and every requests/ entry) would keep the disk
 * busy for minutes at each check interval to learn that nothing is due.
 *
 * Every certificate not in a slot sits in a min-heap keyed by its next
 * decision time (due_at), learned from its meta when a pass planned it:
 * the plan's own "look again" (renew_at, the backoff's next_attempt, the
 * next ARI check), the ARI gate (the directory's "no renewalInfo" time,
 * the certificate's spread first check), the expiry of a key type, the
 * next expiry alert.  atls_job_plan stays the one decider: the heap only
 * says when to ask it again, and a pass asks it (reading that meta) for
 * the certificates whose time has come.
 *
 * The index is built by the first pass, which looks at every certificate
 * in the scheduler's background slices, as before.  After it:
 *   - the scheduler's own work: a certificate whose slot ends is looked
 *     at by the next pass (its meta was written);
 *   - configuration: atls_sched_add makes the certificate due;
 *   - others (the CLI, another server sharing the store): the store's
 *     change journal names what was deployed or revoked since the last
 *     pass (atls_store_changes_since), the requests/ listing names the
 *     operators' renew requests; a journal that does not reach back
 *     makes the pass look at every certificate again;
 *   - anything else (a store edited by hand): no certificate waits longer
 *     than SCHED_DUE_MAX_S for a look.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "atls.h"
#include "atls_job.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "sched_internal.h"

/* ---- the heap ----------------------------------------------------------------- */

/* Room for one more in *v (n used of *cap). */
static void
certv_room(atls_sched_cert_t ***v, size_t n, size_t *cap)
{
    atls_sched_cert_t **nv;
    size_t              ncap;

    if (n < *cap) {
        return;
    }
    ncap = *cap ? *cap * 2 : 64;
    nv = realloc(*v, ncap * sizeof(*nv));
    if (nv == NULL) {
        abort();
    }
    *v = nv;
    *cap = ncap;
}

static void
heap_place(atls_sched_t *s, size_t i, atls_sched_cert_t *c)
{
    s->due_heap[i] = c;
    c->due_pos = i + 1;
}

static void
heap_up(atls_sched_t *s, size_t i)
{
    atls_sched_cert_t *c = s->due_heap[i];

    while (i > 0 && s->due_heap[(i - 1) / 2]->due_at > c->due_at) {
        heap_place(s, i, s->due_heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_place(s, i, c);
}

static void
heap_down(atls_sched_t *s, size_t i)
{
    atls_sched_cert_t *c = s->due_heap[i];
    size_t             k;

    for (;;) {
        k = 2 * i + 1;
        if (k >= s->n_due) {
            break;
        }
        if (k + 1 < s->n_due && s->due_heap[k + 1]->due_at < s->due_heap[k]->due_at) {
            k++;
        }
        if (s->due_heap[k]->due_at >= c->due_at) {
            break;
        }
        heap_place(s, i, s->due_heap[k]);
        i = k;
    }
    heap_place(s, i, c);
}

static void
heap_remove(atls_sched_t *s, atls_sched_cert_t *c)
{
    size_t             i = c->due_pos - 1;
    atls_sched_cert_t *last;

    c->due_pos = 0;
    last = s->due_heap[--s->n_due];
    if (last == c) {
        return;
    }
    heap_place(s, i, last);
    heap_down(s, i);
    heap_up(s, last->due_pos - 1);
}

void
atls_sched_due_set(atls_sched_t *s, atls_sched_cert_t *c, time_t at)
{
    if (c->due_pos != 0) {
        c->due_at = at;
        heap_up(s, c->due_pos - 1);
        heap_down(s, c->due_pos - 1);
        return;
    }
    certv_room(&s->due_heap, s->n_due, &s->cap_due);
    c->due_at = at;
    s->due_heap[s->n_due++] = c;
    heap_up(s, s->n_due - 1);
}

void
atls_sched_due_forget(atls_sched_t *s, atls_sched_cert_t *c)
{
    size_t i;

    if (c->due_pos != 0) {
        heap_remove(s, c);
    }
    for (i = 0; i < s->n_pass; i++) {
        if (s->pass_list[i] == c) {
            s->pass_list[i] = NULL;     /* skipped by the pass */
        }
    }
}

void
atls_sched_due_free(atls_sched_t *s)
{
    free(s->due_heap);
    free(s->pass_list);
    s->due_heap = NULL;
    s->pass_list = NULL;
    s->n_due = s->cap_due = s->n_pass = 0;
}

void
atls_sched_due_now(atls_sched_t *s, atls_sched_cert_t *c)
{
    if (!s->pass_active || s->pass_all) {
        atls_sched_due_set(s, c, 0);    /* the pass over certs reaches it */
        return;
    }
    /* the pass in progress looks at it too, as one over every certificate
     * would (a name registered while it runs) */
    if (c->due_pos != 0) {
        heap_remove(s, c);
    }
    certv_room(&s->pass_list, s->n_pass, &s->cap_pass);
    s->pass_list[s->n_pass++] = c;
}

/* ---- when a certificate needs a look again ------------------------------------ */

static time_t
earliest(time_t a, time_t b)
{
    if (a <= 0) {
        return b;
    }
    return b <= 0 || a < b ? a : b;
}

/* The first moment atls_sched_ari_may can say yes to c. */
static time_t
ari_gate(atls_sched_t *s, atls_sched_cert_t *c, time_t now)
{
    sched_dir_t *d = atls_sched_dir(s, c->issuer.directory);

    if (now < d->no_ari_until) {
        return d->no_ari_until;
    }
    if (c->ari_after > now && d->ari_probed) {
        return c->ari_after;
    }
    return now + 60;    /* the directory's rate is full */
}

void
atls_sched_due_planned(atls_sched_t *s, sched_slot_t *sl, time_t now)
{
    const atls_cert_meta_t *m = &sl->meta;
    atls_sched_cert_t      *c = sl->cert;
    time_t                  at;
    size_t                  i;

    switch (sl->plan.kind) {
    case ATLS_PLAN_NOTHING:
        at = sl->plan.next;
        break;
    case ATLS_PLAN_ARI:         /* due, but the gate held it */
        at = earliest(m->renew_at, ari_gate(s, c, now));
        break;
    case ATLS_PLAN_ORDER:       /* no key type to order: as before, each pass */
    default:
        at = now;
        break;
    }
    /* a key type whose certificate expires is ordered on its own */
    for (i = 0; i < m->n_kt_info && i < ATLS_KEY_TYPE_MAX; i++) {
        if (m->kt_info[i].not_after > now) {
            at = earliest(at, m->kt_info[i].not_after);
        }
    }
    /* an alert that could not be recorded (the lock was held) is tried
     * again by the next pass, as when every pass looked at everything */
    if (c->warn_due != 0 && c->warn_due <= now + SCHED_REV_MIN_WAIT_S) {
        at = now;
    }
    at = earliest(at, c->warn_due);
    if (at <= 0 || at > now + SCHED_DUE_MAX_S) {
        at = now + SCHED_DUE_MAX_S;
    }
    atls_sched_due_set(s, c, at);
}

/* ---- a pass ------------------------------------------------------------------- */

/* The certificate managed under id: due at the next look. */
static void
due_id_now(atls_sched_t *s, const char *id)
{
    atls_sched_cert_t *c = atls_sched_cert_by_id(s, id);

    if (c != NULL && !c->busy) {
        atls_sched_due_set(s, c, 0);
    }
}

/* What others changed since the last pass, from the journal; 0 when it
 * accounts for everything, -1 when every certificate must be looked at. */
static int
due_changes(atls_sched_t *s)
{
    char   **ids = NULL, err[256];
    size_t   n = 0, i;
    uint64_t gen;
    int      rc;

    if (atls_store_read_generation(s->st, &gen, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "autotls: %s; looking at every certificate", err);
        s->due_gen = 0;
        return -1;
    }
    if (s->due_gen == gen + 1) {
        return 0;
    }
    rc = s->due_gen == 0 ? ATLS_STORE_NOTFOUND
         : atls_store_changes_since(s->st, s->due_gen - 1, gen, &ids, &n, err, sizeof(err));
    s->due_gen = gen + 1;
    if (rc != ATLS_STORE_OK) {
        if (rc == ATLS_STORE_ERROR) {
            atls_log(ATLS_LOG_WARN, "autotls: change journal: %s; looking at every "
                     "certificate", err);
        }
        return -1;
    }
    for (i = 0; i < n; i++) {
        due_id_now(s, ids[i]);
    }
    atls_strv_free(ids, n);
    return 0;
}

/* Operators' renew requests: one listing. */
static void
due_requests(atls_sched_t *s)
{
    char   **ids = NULL, err[256];
    size_t   n = 0, i;

    if (atls_store_list_requests(s->st, &ids, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "autotls: renew requests: %s", err);
        return;
    }
    for (i = 0; i < n; i++) {
        due_id_now(s, ids[i]);
    }
    atls_strv_free(ids, n);
}

void
atls_sched_due_begin(atls_sched_t *s)
{
    time_t now = time(NULL);
    int    all;

    s->pass_next = 0;
    s->n_pass = 0;
    all = due_changes(s) != 0 || !s->due_built;
    s->pass_all = all;
    if (all) {
        return;         /* every certificate, in the order added */
    }
    due_requests(s);
    while (s->n_due > 0 && s->due_heap[0]->due_at <= now) {
        atls_sched_cert_t *c = s->due_heap[0];

        heap_remove(s, c);
        certv_room(&s->pass_list, s->n_pass, &s->cap_pass);
        s->pass_list[s->n_pass++] = c;
    }
}

void
atls_sched_due_all(atls_sched_t *s)
{
    size_t i;

    /* what the list held goes back to the heap, due: the pass reaches it */
    for (i = s->pass_next; !s->pass_all && i < s->n_pass; i++) {
        if (s->pass_list[i] != NULL && !s->pass_list[i]->busy) {
            atls_sched_due_set(s, s->pass_list[i], 0);
        }
    }
    s->n_pass = 0;
    s->pass_all = 1;
    s->pass_next = 0;
}

atls_sched_cert_t *
atls_sched_due_next(atls_sched_t *s)
{
    if (s->pass_all) {
        return s->pass_next < s->n_certs ? s->certs[s->pass_next++] : NULL;
    }
    while (s->pass_next < s->n_pass) {
        atls_sched_cert_t *c = s->pass_list[s->pass_next++];

        if (c != NULL) {
            return c;
        }
    }
    return NULL;
}

void
atls_sched_due_end(atls_sched_t *s)
{
    if (s->pass_all) {
        s->due_built = 1;
    }
    s->n_pass = 0;
}
