/*
 * Status for operators and monitoring, the reading part: one pass over the
 * store per rendering (status_json.c and status_prom.c render it).  Only
 * the leaf certificate is read (atls_store_load_leaf skips the key block
 * without decoding it); the private key is never parsed into, let alone
 * printed from, this code.  Revocation facts come from meta.json (OCSP,
 * revocations seen) and from the CRL cache's facts (never the CRLs
 * themselves), read once per distinct URL per rendering.  The static
 * certificates come from the store's inventory, the alert levels from
 * notify.json, the counters from counters.json.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_job.h"
#include "atls_status.h"
#include "status_int.h"

/* renew_at, unless a failure pushed the next attempt later. */
static time_t
status_next_renewal(const atls_cert_meta_t *m)
{
    time_t t = m->renew_at;

    if (m->failures > 0 && m->next_attempt > t) {
        t = m->next_attempt;
    }
    return t;
}

void
atls_status_load_meta(atls_store_t *st, status_cert_t *c)
{
    char err[512];

    if (atls_store_load_meta(st, c->id, &c->meta, err, sizeof(err)) != ATLS_STORE_OK) {
        c->error = atls_strdup(err);
        return;
    }
    c->ok = 1;
    c->next_renewal = status_next_renewal(&c->meta);
}

/* The leaves of c's key types (its meta loaded). */
static void
status_load_keys(atls_store_t *st, status_cert_t *c)
{
    char            err[512];
    X509           *leaf;
    size_t          i, nkt;
    atls_key_type_t kts[ATLS_KEY_TYPE_MAX];

    if (!c->ok) {
        return;
    }
    nkt = c->meta.issuer.n_key_types;
    if (nkt == 0) {
        kts[0] = ATLS_KEY_EC256;
        nkt = 1;
    } else {
        for (i = 0; i < nkt && i < ATLS_KEY_TYPE_MAX; i++) {
            kts[i] = c->meta.issuer.key_types[i];
        }
    }
    for (i = 0; i < nkt && i < ATLS_KEY_TYPE_MAX; i++) {
        status_key_t *k = &c->keys[c->n_keys];

        if (atls_store_load_leaf(st, c->id, kts[i], &leaf, err, sizeof(err))
            != ATLS_STORE_OK)
        {
            continue;   /* not issued yet, or unreadable: the state says why */
        }
        if (atls_cert_info(leaf, &k->info) == 0) {
            k->present = 1;
            k->type = kts[i];
            c->n_keys++;
        }
        X509_free(leaf);
    }
}

/* What is shown beside the managed certificates; each part missing or
 * unreadable leaves it out with a warning (the status page still renders). */
static void
status_load_extras(atls_store_t *st, status_t *s)
{
    atls_notify_conf_t nc;
    char               err[512];
    int                rc;

    if (atls_store_inventory_list(st, &s->statics, &s->n_statics, err, sizeof(err))
        != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "status: inventory: %s", err);
    }
    memset(&nc, 0, sizeof(nc));
    rc = atls_store_load_notify_conf(st, &nc, err, sizeof(err));
    if (rc == ATLS_STORE_OK && nc.warn.n > 0) {
        s->warn_conf = nc.warn;
        s->warn = &s->warn_conf;
    } else if (rc == ATLS_STORE_ERROR) {
        atls_log(ATLS_LOG_WARN, "status: alert levels: %s (the defaults are used)", err);
    }
    atls_notify_conf_free(&nc);
    if (atls_store_counters_load(st, &s->counter_names, &s->counter_values, &s->n_counters,
                                 err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "status: counters: %s", err);
        s->n_counters = 0;
    }
}

int
atls_status_load(atls_store_t *st, status_t *s, const atls_status_query_t *q)
{
    char   err[512];
    char **ids = NULL;
    size_t n = 0, i, cap;

    memset(s, 0, sizeof(*s));
    if (atls_store_list_certs(st, &ids, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_ERR, "status: %s", err);
        return -1;
    }
    cap = q != NULL && q->limit > 0 && q->limit < n ? q->limit : n;
    if (cap > 0) {
        s->certs = calloc(cap, sizeof(*s->certs));
        if (s->certs == NULL) {
            abort();
        }
    }
    atls_status_select(st, s, ids, n, q);
    for (i = 0; i < s->n; i++) {
        status_load_keys(st, &s->certs[i]);
    }
    atls_strv_free(ids, n);     /* the selected ones were taken */
    status_load_extras(st, s);
    return 0;
}

void
atls_status_free(status_t *s)
{
    size_t i, k;

    for (i = 0; i < s->n; i++) {
        for (k = 0; k < s->certs[i].n_keys; k++) {
            atls_cert_info_free(&s->certs[i].keys[k].info);
        }
        atls_cert_meta_free(&s->certs[i].meta);
        free(s->certs[i].id);
        free(s->certs[i].error);
    }
    free(s->certs);
    for (i = 0; i < s->n_crls; i++) {
        atls_crl_cache_free(&s->crls[i].cache);
    }
    free(s->crls);
    atls_inventory_items_free(s->statics, s->n_statics);
    atls_strv_free(s->counter_names, s->n_counters);
    free(s->counter_values);
}

/* The cached facts of url's CRL, loaded on first use: NULL when nothing
 * is cached (or the entry is unusable: the fetcher logs that). */
const atls_crl_cache_t *
atls_status_crl(atls_store_t *st, status_t *s, const char *url)
{
    status_crl_t *c;
    char          err[512];
    size_t        i;

    for (i = 0; i < s->n_crls; i++) {
        if (strcmp(s->crls[i].url, url) == 0) {
            return s->crls[i].found ? &s->crls[i].cache : NULL;
        }
    }
    if (s->n_crls == s->cap_crls) {
        s->cap_crls = s->cap_crls ? 2 * s->cap_crls : 8;
        s->crls = realloc(s->crls, s->cap_crls * sizeof(*s->crls));
        if (s->crls == NULL) {
            abort();
        }
    }
    c = &s->crls[s->n_crls++];
    memset(c, 0, sizeof(*c));
    c->url = url;
    c->found = atls_store_load_crl(st, url, &c->cache, NULL, NULL, err, sizeof(err))
               == ATLS_STORE_OK;
    return c->found ? &c->cache : NULL;
}

/* The facts of one key type, or NULL (a store from before they existed). */
const atls_cert_kt_info_t *
atls_status_kt(const status_cert_t *c, atls_key_type_t kt)
{
    return atls_job_kt_info(&c->meta, kt);
}

/* 1 when one of c's certificates is known revoked (it is being replaced). */
static int
status_revoked(const status_cert_t *c)
{
    size_t i;

    for (i = 0; i < c->meta.n_kt_info && i < ATLS_KEY_TYPE_MAX; i++) {
        if (c->meta.kt_info[i].revoked_seen != 0) {
            return 1;
        }
    }
    return 0;
}

/* The state shown: a revoked certificate is being replaced, unless the
 * replacement failed (which the operator must see). */
const char *
atls_status_state_name(const status_cert_t *c)
{
    if (c->meta.state != ATLS_STATE_FAILED && status_revoked(c)) {
        return "replacing";
    }
    return atls_cert_state_name(c->meta.state);
}

atls_ocsp_status_t
atls_status_ocsp_status(const atls_cert_kt_info_t *ki)
{
    return ki != NULL ? ki->ocsp_status : ATLS_OCSP_NONE;
}

/* ---- JSON ------------------------------------------------------------------ */

size_t
atls_status_key_findings(const status_cert_t *c, size_t k, const atls_warn_t *w,
                         time_t now, atls_finding_t *out, size_t max)
{
    const atls_cert_info_t    *in = &c->keys[k].info;
    const atls_cert_kt_info_t *ki = atls_status_kt(c, c->keys[k].type);
    atls_cert_facts_t          f;

    /* only what meta tells: key, signature and chain are autotls's choice */
    memset(&f, 0, sizeof(f));
    f.names = ki != NULL && ki->n_names > 0 ? ki->names : in->names;
    f.n_names = ki != NULL && ki->n_names > 0 ? ki->n_names : in->n_names;
    f.not_before = in->not_before;
    f.not_after = in->not_after;
    f.chain_complete = 1;
    f.chain_len = 1;
    return atls_findings(&f, (const char *const *) c->meta.names, c->meta.n_names, w, now,
                         out, max);
}

const char *
atls_status_static_name(const atls_inventory_item_t *it)
{
    if (it->facts.n_names > 0) {
        return it->facts.names[0];
    }
    return it->n_used_names > 0 ? it->used_names[0] : "";
}

void
atls_status_static_key_type(const atls_inventory_item_t *it, char *buf, size_t len)
{
    if (it->error != NULL || it->facts.key_bits <= 0) {
        snprintf(buf, len, "%s", it->error != NULL ? "unknown" : it->facts.key_alg);
    } else {
        snprintf(buf, len, "%s%d", it->facts.key_alg, it->facts.key_bits);
    }
}
