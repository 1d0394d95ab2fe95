/*
 * The scheduler, what it knows: the managed certificates (in the order
 * added, and by id) and, in memory only, facts about each CA directory.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "sched_internal.h"
#include "store_ari.h"

/* ---- certificates -------------------------------------------------------------- */

void
atls_sched_cert_free(atls_sched_cert_t *c)
{
    free(c->id);
    atls_strv_free(c->names, c->n_names);
    atls_issuer_free(&c->issuer);
    free(c);
}

/*
 * Certificates by id: an open-addressing table of indexes into certs, so
 * that adding 10,000 certificates (nginx at every start and reload) does
 * not compare each with all before it.
 */
static size_t
cert_hash(const char *id)
{
    size_t h = 14695981039346656037ULL;

    while (*id != '\0') {
        h = (h ^ (unsigned char) *id++) * 1099511628211ULL;
    }
    return h;
}

atls_sched_cert_t *
atls_sched_cert_by_id(const atls_sched_t *s, const char *id)
{
    size_t i;

    if (s->cap_index == 0) {
        return NULL;
    }
    for (i = cert_hash(id) & (s->cap_index - 1); s->index[i] != 0;
         i = (i + 1) & (s->cap_index - 1))
    {
        atls_sched_cert_t *c = s->certs[s->index[i] - 1];

        if (strcmp(c->id, id) == 0) {
            return c;
        }
    }
    return NULL;
}

static void
index_put(atls_sched_t *s, size_t k)
{
    size_t i = cert_hash(s->certs[k]->id) & (s->cap_index - 1);

    while (s->index[i] != 0) {
        i = (i + 1) & (s->cap_index - 1);
    }
    s->index[i] = k + 1;
}

/* Room for want certificates in certs and the index; -1 out of memory. */
int
atls_sched_certs_reserve(atls_sched_t *s, size_t want)
{
    if (want > s->cap_certs) {
        size_t              cap = s->cap_certs ? s->cap_certs : 16;
        atls_sched_cert_t **v;

        while (cap < want) {
            cap *= 2;
        }
        v = realloc(s->certs, cap * sizeof(*v));
        if (v == NULL) {
            return -1;
        }
        s->certs = v;
        s->cap_certs = cap;
    }
    /* at most half full, so that probes stay short */
    if (2 * want > s->cap_index) {
        size_t  cap = s->cap_index ? s->cap_index : 32, k;
        size_t *v;

        while (cap < 2 * want) {
            cap *= 2;
        }
        v = calloc(cap, sizeof(*v));
        if (v == NULL) {
            return -1;
        }
        free(s->index);
        s->index = v;
        s->cap_index = cap;
        for (k = 0; k < s->n_certs; k++) {
            index_put(s, k);
        }
    }
    return 0;
}

atls_sched_cert_t *
atls_sched_add(atls_sched_t *s, const char *const *names, size_t n,
               const atls_issuer_t *is, void *data, char *err, size_t errlen)
{
    atls_sched_cert_t *c;
    char              *id;

    if (names == NULL || n == 0 || names[0] == NULL || names[0][0] == '\0') {
        snprintf(err, errlen, "a certificate needs at least one name");
        return NULL;
    }
    if (is == NULL || is->directory == NULL || is->directory[0] == '\0') {
        snprintf(err, errlen, "no ACME directory URL configured for %s", names[0]);
        return NULL;
    }
    if (atls_sched_policy_refuses(s, names, n, is, err, errlen)) {
        return NULL;    /* policy-denied was emitted */
    }
    id = atls_cert_id(names[0]);
    if (id == NULL) {
        snprintf(err, errlen, "cannot derive a certificate id from \"%s\"", names[0]);
        return NULL;
    }

    c = atls_sched_cert_by_id(s, id);
    if (c != NULL) {
        /* a slot at work on c keeps its own copy of the settings */
        free(id);
        atls_strv_free(c->names, c->n_names);
        atls_issuer_free(&c->issuer);
    } else {
        c = atls_sched_certs_reserve(s, s->n_certs + 1) == 0 ? calloc(1, sizeof(*c))
                                                              : NULL;
        if (c == NULL) {
            free(id);
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        c->id = id;
        s->certs[s->n_certs] = c;
        index_put(s, s->n_certs++);
    }
    c->names = atls_strv_dup((char *const *) names, n);
    c->n_names = n;
    atls_issuer_copy(&c->issuer, is);
    c->data = data;
    c->dynamic = 0;     /* configured: the registry's sync leaves it alone */
    if (!c->busy) {
        atls_sched_due_now(s, c);       /* new, or its settings changed */
    }
    return c;
}

atls_sched_cert_t *
atls_sched_find(atls_sched_t *s, const char *id)
{
    return id != NULL ? atls_sched_cert_by_id(s, id) : NULL;
}

void
atls_sched_cert_unlink(atls_sched_t *s, atls_sched_cert_t *c)
{
    size_t k;

    for (k = 0; k < s->n_certs && s->certs[k] != c; k++) {
    }
    if (k == s->n_certs) {
        return;
    }
    atls_sched_due_forget(s, c);
    /* the order added is kept; a pass in progress goes on where it was */
    memmove(&s->certs[k], &s->certs[k + 1], (s->n_certs - k - 1) * sizeof(*s->certs));
    s->n_certs--;
    if (s->pass_all && s->pass_next > k) {
        s->pass_next--;
    }
    memset(s->index, 0, s->cap_index * sizeof(*s->index));
    for (k = 0; k < s->n_certs; k++) {
        index_put(s, k);
    }
}

const char *
atls_sched_cert_id(const atls_sched_cert_t *c)
{
    return c->id;
}

void *
atls_sched_op_data(const atls_sched_op_t *op)
{
    /* NULL for an op of no certificate (an on-demand ask, a notification) */
    return op->cert != NULL ? op->cert->data : NULL;
}

/* ---- CA directories ----------------------------------------------------------- */

/* What the store records about directory's renewal information: read once
 * per process, so that a restart does not ask again (store_ari.h). */
static void
dir_load_ari(atls_sched_t *s, sched_dir_t *d)
{
    time_t until = 0;
    char   err[512];

    if (!s->ari) {
        return;
    }
    if (atls_store_load_ari_dir(s->st, d->directory, &until, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        atls_log(ATLS_LOG_WARN, "autotls: %s: renewal information record not read "
                 "(asking the CA): %s", d->directory, err);
        return;
    }
    d->no_ari_until = until;
}

/* The in-memory facts about directory, created on first use. */
sched_dir_t *
atls_sched_dir(atls_sched_t *s, const char *directory)
{
    sched_dir_t *v;
    size_t       i;

    for (i = 0; i < s->n_dirs; i++) {
        if (strcmp(s->dirs[i].directory, directory) == 0) {
            return &s->dirs[i];
        }
    }
    v = realloc(s->dirs, (s->n_dirs + 1) * sizeof(*v));
    if (v == NULL) {
        abort();
    }
    s->dirs = v;
    memset(&v[s->n_dirs], 0, sizeof(*v));
    v[s->n_dirs].directory = atls_strdup(directory);
    dir_load_ari(s, &v[s->n_dirs]);
    return &v[s->n_dirs++];
}

/* ---- spreading what the CA sees ------------------------------------------------ */

/*
 * The first ARI checks after a start are spread over the time the
 * directory's rate needs for them (half the rate: the other half stays
 * for OCSP), at most a usual check interval: a few certificates are asked
 * about at once, 10,000 over hours.  Placed by the id's hash, so that a
 * restart places each at the same point.
 */
static time_t
ari_spread(const atls_sched_t *s, const char *id)
{
    long long window = (long long) s->n_certs * 60 * 2 / s->ca_per_min;

    if (window < 60) {
        return 0;
    }
    if (window > SCHED_ARI_SPREAD_MAX_S) {
        window = SCHED_ARI_SPREAD_MAX_S;
    }
    return (time_t) (cert_hash(id) % (size_t) window);
}

/*
 * The directory's request rate: the start times of its last ca_per_min
 * requests (or the times reserved for them) in a ring, so that no 60 s
 * hold more than ca_per_min of them.  *slot: the oldest entry, the one a
 * new request replaces.
 */
static time_t *
rate_oldest(atls_sched_t *s, sched_dir_t *d)
{
    if (d->rate_ring == NULL) {
        d->rate_ring = calloc((size_t) s->ca_per_min, sizeof(*d->rate_ring));
        if (d->rate_ring == NULL) {
            abort();
        }
    }
    return &d->rate_ring[d->rate_next];
}

static void
rate_push(atls_sched_t *s, sched_dir_t *d, time_t at)
{
    d->rate_ring[d->rate_next] = at;
    d->rate_next = (d->rate_next + 1) % (size_t) s->ca_per_min;
}

int
atls_sched_ari_may(atls_sched_t *s, atls_sched_cert_t *c, time_t now)
{
    sched_dir_t *d = atls_sched_dir(s, c->issuer.directory);

    if (now < d->no_ari_until) {
        return 0;
    }
    if (c->ari_after == 0) {
        /* Only a scheduler that lives on between passes (a server's, which
         * yields in slices) spreads: one made for a single pass (Apache's,
         * the CLI's) would never reach the later points, and the rate
         * bound holds there alone. */
        c->ari_after = s->started + (s->slice_ms > 0 ? ari_spread(s, c->id) : 0);
    }
    if (now < c->ari_after && d->ari_probed) {
        return 0;   /* a later pass asks */
    }
    /* at most half the rate: the other half stays for OCSP */
    (void) rate_oldest(s, d);
    if (d->rate_ring[(d->rate_next + (size_t) s->ca_per_min / 2) % (size_t) s->ca_per_min]
        + 60 > now)
    {
        return 0;
    }
    /* the first query asks for the whole directory: whether it offers ARI */
    d->ari_probed = 1;
    rate_push(s, d, now);
    return 1;
}

int
atls_sched_rate_take(atls_sched_t *s, atls_sched_cert_t *c, time_t now)
{
    sched_dir_t *d;
    time_t       at;

    if (c->rate_at != 0) {
        if (now < c->rate_at) {
            return 0;
        }
        c->rate_at = 0;     /* its reserved time came */
        return 1;
    }
    d = atls_sched_dir(s, c->issuer.directory);
    at = *rate_oldest(s, d) + 60;
    if (at <= now) {
        rate_push(s, d, now);
        return 1;
    }
    /* a time of its own, in turn, when the scheduler looks at it anyway */
    if (at < now + SCHED_REV_MIN_WAIT_S) {
        at = now + SCHED_REV_MIN_WAIT_S;
    }
    rate_push(s, d, at);
    c->rate_at = at;
    return 0;
}

