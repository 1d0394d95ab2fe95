/*
 * The Prometheus text exposition (version 0.0.4) of the status: one series
 * per certificate (managed or static) with the same label names wherever
 * the same thing is meant: id, name (the first name), source ("managed" or
 * "static"), key_type ("ec256", "rsa2048"; for a static certificate its
 * algorithm and size, "rsa1024").  README lists every family with alert
 * rules.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_job.h"
#include "atls_status.h"
#include "status_int.h"

typedef struct {
    char  *p;
    size_t len, cap;
} status_buf_t;

static void status_printf(status_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
status_printf(status_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    int     n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            abort();
        }
        if (b->p != NULL && b->len + (size_t) n < b->cap) {
            b->len += (size_t) n;
            return;
        }
        b->cap = (b->cap + (size_t) n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL) {
            abort();
        }
    }
}

/* Label values: backslash, double quote and newline escaped (exposition
 * format 0.0.4). */
static char *
status_label(const char *s)
{
    char  *o, *q;
    size_t n = 1;
    const char *p;

    for (p = s; *p; p++) {
        n += (*p == '\\' || *p == '"' || *p == '\n') ? 2 : 1;
    }
    o = malloc(n);
    if (o == NULL) {
        abort();
    }
    for (p = s, q = o; *p; p++) {
        if (*p == '\\' || *p == '"') {
            *q++ = '\\';
            *q++ = *p;
        } else if (*p == '\n') {
            *q++ = '\\';
            *q++ = 'n';
        } else {
            *q++ = *p;
        }
    }
    *q = '\0';
    return o;
}

static void
status_family_typed(status_buf_t *b, const char *name, const char *type, const char *help)
{
    status_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
status_family(status_buf_t *b, const char *name, const char *help)
{
    status_family_typed(b, name, "gauge", help);
}

static void
status_extra_prometheus(status_buf_t *b, const atls_status_extra_t *x)
{
    size_t i;

    for (i = 0; i < x->n; i++) {
        status_printf(b, "# HELP autotls_%s_%s %s\n# TYPE autotls_%s_%s gauge\n"
                      "autotls_%s_%s %lld\n", x->section, x->gauges[i].name, x->help,
                      x->section, x->gauges[i].name,
                      x->section, x->gauges[i].name, x->gauges[i].value);
    }
}

/* One series per certificate and key type served; the times only when
 * known (a 0 would read as long past). */
static void
status_revocation_prometheus(status_buf_t *b, const status_t *s, char **ids)
{
    const atls_cert_kt_info_t *ki;
    const char                *kn;
    size_t                     i, k;
    int                        pass;

    for (pass = 0; pass < 4; pass++) {
        static const char *const family[][2] = {
            { "autotls_ocsp_status",
              "OCSP status of the served certificate: 1, labelled with the current "
              "status (none, good, revoked, unknown, error)." },
            { "autotls_ocsp_next_update_seconds",
              "End of validity of the stapled OCSP response, Unix time." },
            { "autotls_ocsp_next_refresh_seconds",
              "When the OCSP response is fetched again, Unix time." },
            { "autotls_certificate_revoked",
              "1 when the served certificate is known revoked (it is being replaced)." },
        };

        status_family(b, family[pass][0], family[pass][1]);
        for (i = 0; i < s->n; i++) {
            for (k = 0; s->certs[i].ok && k < s->certs[i].n_keys; k++) {
                kn = atls_key_type_name(s->certs[i].keys[k].type);
                ki = atls_status_kt(&s->certs[i], s->certs[i].keys[k].type);
                if (pass == 0) {
                    status_printf(b, "%s{id=\"%s\",key_type=\"%s\",status=\"%s\"} 1\n",
                                  family[pass][0], ids[i], kn,
                                  atls_ocsp_status_name(atls_status_ocsp_status(ki)));
                } else if (pass == 3) {
                    status_printf(b, "%s{id=\"%s\",key_type=\"%s\"} %d\n",
                                  family[pass][0], ids[i], kn,
                                  ki != NULL && ki->revoked_seen != 0);
                } else if (ki != NULL && (pass == 1 ? ki->ocsp_next_update
                                                    : ki->ocsp_next_refresh) > 0) {
                    status_printf(b, "%s{id=\"%s\",key_type=\"%s\"} %lld\n",
                                  family[pass][0], ids[i], kn,
                                  (long long) (pass == 1 ? ki->ocsp_next_update
                                                         : ki->ocsp_next_refresh));
                }
            }
        }
    }
}

/* Labels of every certificate, escaped once per rendering. */
typedef struct {
    char **ids, **names;            /* managed */
    char **sids, **snames, **skts;  /* static */
} status_labels_t;

static char **
status_labels_alloc(size_t n)
{
    char **v = calloc(n + 1, sizeof(char *));

    if (v == NULL) {
        abort();
    }
    return v;
}

static void
status_labels_make(const status_t *s, status_labels_t *l)
{
    char   kt[32];
    size_t i;

    l->ids = status_labels_alloc(s->n);
    l->names = status_labels_alloc(s->n);
    l->sids = status_labels_alloc(s->n_statics);
    l->snames = status_labels_alloc(s->n_statics);
    l->skts = status_labels_alloc(s->n_statics);
    for (i = 0; i < s->n; i++) {
        l->ids[i] = status_label(s->certs[i].id);
        l->names[i] = status_label(s->certs[i].ok && s->certs[i].meta.n_names > 0
                                   ? s->certs[i].meta.names[0] : "");
    }
    for (i = 0; i < s->n_statics; i++) {
        l->sids[i] = status_label(s->statics[i].id);
        l->snames[i] = status_label(atls_status_static_name(&s->statics[i]));
        atls_status_static_key_type(&s->statics[i], kt, sizeof(kt));
        l->skts[i] = status_label(kt);
    }
}

static void
status_labels_free(const status_t *s, status_labels_t *l)
{
    atls_strv_free(l->ids, s->n);
    atls_strv_free(l->names, s->n);
    atls_strv_free(l->sids, s->n_statics);
    atls_strv_free(l->snames, s->n_statics);
    atls_strv_free(l->skts, s->n_statics);
}

/* not_after (pass 0) and not_before (pass 1) of every certificate served. */
static void
status_validity_prometheus(status_buf_t *b, const status_t *s, const status_labels_t *l)
{
    const char *what;
    size_t      i, k;
    int         pass;

    for (pass = 0; pass < 2; pass++) {
        what = pass == 0 ? "not_after" : "not_before";
        if (pass == 0) {
            status_family(b, "autotls_certificate_not_after_seconds",
                          "Expiry of the served certificate, Unix time.");
        } else {
            status_family(b, "autotls_certificate_not_before_seconds",
                          "Start of validity of the served certificate, Unix time.");
        }
        for (i = 0; i < s->n; i++) {
            for (k = 0; k < s->certs[i].n_keys; k++) {
                const status_key_t *key = &s->certs[i].keys[k];

                status_printf(b, "autotls_certificate_%s_seconds{id=\"%s\",name=\"%s\","
                              "source=\"managed\",key_type=\"%s\"} %lld\n", what,
                              l->ids[i], l->names[i], atls_key_type_name(key->type),
                              (long long) (pass == 0 ? key->info.not_after
                                                     : key->info.not_before));
            }
        }
        for (i = 0; i < s->n_statics; i++) {
            if (s->statics[i].error == NULL) {
                status_printf(b, "autotls_certificate_%s_seconds{id=\"%s\",name=\"%s\","
                              "source=\"static\",key_type=\"%s\"} %lld\n", what,
                              l->sids[i], l->snames[i], l->skts[i],
                              (long long) (pass == 0 ? s->statics[i].facts.not_after
                                                     : s->statics[i].facts.not_before));
            }
        }
    }
}

static void
status_renewal_prometheus(status_buf_t *b, const status_t *s, const status_labels_t *l)
{
    static const atls_cert_state_t states[] = {
        ATLS_STATE_PENDING, ATLS_STATE_VALID, ATLS_STATE_RENEWING, ATLS_STATE_FAILED
    };
    size_t i, j;

    status_family(b, "autotls_certificate_next_renewal_seconds",
                  "When the next renewal attempt is due, Unix time (0 = as soon as possible).");
    for (i = 0; i < s->n; i++) {
        if (s->certs[i].ok) {
            status_printf(b, "autotls_certificate_next_renewal_seconds{id=\"%s\"} %lld\n",
                          l->ids[i], (long long) s->certs[i].next_renewal);
        }
    }

    status_family(b, "autotls_certificate_failures",
                  "Consecutive failed renewal attempts (the same as "
                  "autotls_certificate_renewal_failures, labelled by id only).");
    status_family(b, "autotls_certificate_renewal_failures",
                  "Consecutive failed renewal attempts of a managed certificate.");
    for (i = 0; i < s->n; i++) {
        if (s->certs[i].ok) {
            status_printf(b, "autotls_certificate_failures{id=\"%s\"} %u\n",
                          l->ids[i], s->certs[i].meta.failures);
            status_printf(b, "autotls_certificate_renewal_failures{id=\"%s\",name=\"%s\","
                          "source=\"managed\"} %u\n", l->ids[i], l->names[i],
                          s->certs[i].meta.failures);
        }
    }

    status_family(b, "autotls_certificate_state",
                  "Certificate state: 1 for the current state, 0 for the others.");
    for (i = 0; i < s->n; i++) {
        if (!s->certs[i].ok) {
            continue;
        }
        for (j = 0; j < sizeof(states) / sizeof(states[0]); j++) {
            status_printf(b, "autotls_certificate_state{id=\"%s\",state=\"%s\"} %d\n",
                          l->ids[i], atls_cert_state_name(states[j]),
                          s->certs[i].meta.state == states[j]);
        }
    }
}

/* One series per finding type; seen: the types already shown for this
 * certificate (a managed certificate's key types may share one). */
static void
status_finding_series(status_buf_t *b, const char *id, const char *source,
                      const atls_finding_t *fs, size_t n, unsigned *seen)
{
    size_t f;

    for (f = 0; f < n; f++) {
        if (!(*seen & (1u << fs[f].type))) {
            *seen |= 1u << fs[f].type;
            status_printf(b, "autotls_certificate_findings{id=\"%s\",source=\"%s\","
                          "finding=\"%s\",severity=\"%s\"} 1\n", id, source,
                          atls_finding_name(fs[f].type), atls_severity_name(fs[f].severity));
        }
    }
}

static void
status_findings_prometheus(status_buf_t *b, const status_t *s, const status_labels_t *l,
                           time_t now)
{
    atls_finding_t fs[ATLS_STATUS_FINDINGS_MAX];
    unsigned       seen;
    size_t         i, k, n;

    status_family(b, "autotls_certificate_findings",
                  "1 per finding on a served certificate (expired, not-yet-valid, "
                  "name-mismatch, weak-key, expiring, sha1-signature, incomplete-chain, "
                  "unreadable), labelled with its severity (warning, critical).");
    for (i = 0; i < s->n; i++) {
        seen = 0;
        for (k = 0; s->certs[i].ok && k < s->certs[i].n_keys; k++) {
            n = atls_status_key_findings(&s->certs[i], k, s->warn, now, fs,
                                         ATLS_STATUS_FINDINGS_MAX);
            status_finding_series(b, l->ids[i], "managed", fs, n, &seen);
        }
    }
    for (i = 0; i < s->n_statics; i++) {
        seen = 0;
        n = atls_inventory_item_findings(&s->statics[i], s->warn, now, fs,
                                         ATLS_STATUS_FINDINGS_MAX);
        status_finding_series(b, l->sids[i], "static", fs, n, &seen);
    }
}

/* autotls_events_total{event} and autotls_orders_total{result} from the
 * store's counters; both order results always shown (0 until one). */
static void
status_counters_prometheus(status_buf_t *b, const status_t *s)
{
    static const char *const results[] = { "orders.ok", "orders.failed" };
    unsigned long long       v;
    char                    *label;
    size_t                   i, r;

    status_family_typed(b, "autotls_events_total", "counter",
                        "Events emitted (obtained, renewed, failed, expiring, ...), by event.");
    for (i = 0; i < s->n_counters; i++) {
        if (strncmp(s->counter_names[i], "events.", 7) == 0) {
            label = status_label(s->counter_names[i] + 7);
            status_printf(b, "autotls_events_total{event=\"%s\"} %llu\n", label,
                          (unsigned long long) s->counter_values[i]);
            free(label);
        }
    }
    status_family_typed(b, "autotls_orders_total", "counter",
                        "ACME orders finished, by result (ok, failed).");
    for (r = 0; r < 2; r++) {
        v = 0;
        for (i = 0; i < s->n_counters; i++) {
            if (strcmp(s->counter_names[i], results[r]) == 0) {
                v = (unsigned long long) s->counter_values[i];
            }
        }
        status_printf(b, "autotls_orders_total{result=\"%s\"} %llu\n", results[r] + 7, v);
    }
}

char *
atls_status_prometheus(atls_store_t *st, time_t now)
{
    return atls_status_prometheus_ext(st, now, NULL);
}

char *
atls_status_prometheus_ext(atls_store_t *st, time_t now, const atls_status_extra_t *x)
{
    return atls_status_prometheus_query(st, now, x, NULL);
}

char *
atls_status_prometheus_query(atls_store_t *st, time_t now, const atls_status_extra_t *x,
                             const atls_status_query_t *q)
{
    status_t        s;
    status_buf_t    b = { NULL, 0, 0 };
    status_labels_t l;

    if (atls_status_load(st, &s, q) != 0) {
        return NULL;
    }
    status_labels_make(&s, &l);

    status_family(&b, "autotls_certificates_total", "Number of managed certificates.");
    status_printf(&b, "autotls_certificates_total %zu\n", s.n_all);
    status_family(&b, "autotls_certificates_selected",
                  "Managed certificates matching the request's name= and state= filters.");
    status_printf(&b, "autotls_certificates_selected %zu\n", s.total);
    status_family(&b, "autotls_static_certificates_total",
                  "Number of served certificates autotls does not manage (the inventory).");
    status_printf(&b, "autotls_static_certificates_total %zu\n", s.n_statics);

    status_validity_prometheus(&b, &s, &l);
    status_renewal_prometheus(&b, &s, &l);
    status_revocation_prometheus(&b, &s, l.ids);
    status_findings_prometheus(&b, &s, &l, now);
    status_counters_prometheus(&b, &s);
    for (; x != NULL; x = x->next) {
        status_extra_prometheus(&b, x);
    }
    status_labels_free(&s, &l);
    atls_status_free(&s);
    return b.p;
}
