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

static atls_sched_cert_t *
cert_find(const atls_sched_t *s, const char *id)
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

/* Room for one more certificate in certs and the index; -1 out of memory. */
static int
certs_grow(atls_sched_t *s)
{
    if (s->n_certs == s->cap_certs) {
        size_t              cap = s->cap_certs ? s->cap_certs * 2 : 16;
        atls_sched_cert_t **v = realloc(s->certs, cap * sizeof(*v));

        if (v == NULL) {
            return -1;
        }
        s->certs = v;
        s->cap_certs = cap;
    }
    /* at most half full, so that probes stay short */
    if (2 * (s->n_certs + 1) > s->cap_index) {
        size_t  cap = s->cap_index ? s->cap_index * 2 : 32, k;
        size_t *v = calloc(cap, sizeof(*v));

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

    c = cert_find(s, id);
    if (c != NULL) {
        /* a slot at work on c keeps its own copy of the settings */
        free(id);
        atls_strv_free(c->names, c->n_names);
        atls_issuer_free(&c->issuer);
    } else {
        c = certs_grow(s) == 0 ? calloc(1, sizeof(*c)) : NULL;
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
    return c;
}

const char *
atls_sched_cert_id(const atls_sched_cert_t *c)
{
    return c->id;
}

void *
atls_sched_op_data(const atls_sched_op_t *op)
{
    return op->cert->data;
}

/* ---- CA directories ----------------------------------------------------------- */

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
    return &v[s->n_dirs++];
}

