/*
 * Status for operators and monitoring: JSON and Prometheus text built from
 * the store.  Only the leaf certificate is read (atls_store_load_leaf
 * skips the key block without decoding it); the private key is never
 * parsed into, let alone printed from, this code.  Revocation facts come
 * from meta.json (OCSP, revocations seen) and from the CRL cache's facts
 * (never the CRLs themselves), read once per distinct URL per rendering.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "atls_job.h"
#include "atls_status.h"

typedef struct {
    int              present;
    atls_key_type_t  type;
    atls_cert_info_t info;
} status_key_t;

typedef struct {
    char              *id;
    int                ok;          /* meta loaded */
    char              *error;       /* why meta could not be loaded */
    atls_cert_meta_t   meta;
    time_t             next_renewal;
    status_key_t       keys[ATLS_KEY_TYPE_MAX];
    size_t             n_keys;
} status_cert_t;

/* One CRL cache entry, as its facts were on first use in this rendering. */
typedef struct {
    const char       *url;      /* a kt_info's crl_url: owned by the meta */
    int               found;
    atls_crl_cache_t  cache;
} status_crl_t;

typedef struct {
    status_cert_t *certs;
    size_t         n;
    status_crl_t  *crls;
    size_t         n_crls, cap_crls;
} status_t;

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

static void
status_load_one(atls_store_t *st, status_cert_t *c)
{
    char            err[512];
    X509           *leaf;
    size_t          i, nkt;
    atls_key_type_t kts[ATLS_KEY_TYPE_MAX];

    if (atls_store_load_meta(st, c->id, &c->meta, err, sizeof(err)) != ATLS_STORE_OK) {
        c->error = atls_strdup(err);
        return;
    }
    c->ok = 1;
    c->next_renewal = status_next_renewal(&c->meta);
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

static int
status_load(atls_store_t *st, status_t *s)
{
    char   err[512];
    char **ids = NULL;
    size_t n = 0, i;

    memset(s, 0, sizeof(*s));
    if (atls_store_list_certs(st, &ids, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_ERR, "status: %s", err);
        return -1;
    }
    if (n > 0) {
        s->certs = calloc(n, sizeof(*s->certs));
        if (s->certs == NULL) {
            abort();
        }
    }
    for (i = 0; i < n; i++) {
        s->certs[i].id = ids[i];
        ids[i] = NULL;
        status_load_one(st, &s->certs[i]);
    }
    s->n = n;
    free(ids);
    return 0;
}

static void
status_free(status_t *s)
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
}

/* The cached facts of url's CRL, loaded on first use: NULL when nothing
 * is cached (or the entry is unusable: the fetcher logs that). */
static const atls_crl_cache_t *
status_crl(atls_store_t *st, status_t *s, const char *url)
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
static const atls_cert_kt_info_t *
status_kt(const status_cert_t *c, atls_key_type_t kt)
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
static const char *
status_state_name(const status_cert_t *c)
{
    if (c->meta.state != ATLS_STATE_FAILED && status_revoked(c)) {
        return "replacing";
    }
    return atls_cert_state_name(c->meta.state);
}

static atls_ocsp_status_t
status_ocsp_status(const atls_cert_kt_info_t *ki)
{
    return ki != NULL ? ki->ocsp_status : ATLS_OCSP_NONE;
}

/* ---- JSON ------------------------------------------------------------------ */

static json_t *
status_time(time_t t)
{
    char buf[40];

    if (t <= 0) {
        return json_null();
    }
    atls_rfc3339_format(t, buf, sizeof(buf));
    return json_string(buf);
}

static json_t *
status_str(const char *s)
{
    return s ? json_string(s) : json_null();
}

static long long
status_days_left(time_t not_after, time_t now)
{
    long long d = (long long) (not_after - now);

    /* floor, not truncation: an expired certificate shows -1 on its first day */
    return d >= 0 ? d / 86400 : -((-d + 86399) / 86400);
}

/* The last error in parts, null when the last attempt succeeded.  A meta
 * written before the parts existed has only the display text: it is shown
 * as the detail, never split back apart. */
static json_t *
status_error_json(const atls_cert_meta_t *m)
{
    json_t *e;

    if (m->last_error_type == NULL && m->last_error == NULL) {
        return json_null();
    }
    e = json_object();
    if (e == NULL) {
        abort();
    }
    json_object_set_new(e, "class", m->last_error_type != NULL
                        ? json_string(atls_err_class_name(m->last_error_class))
                        : json_null());
    json_object_set_new(e, "type", status_str(m->last_error_type));
    json_object_set_new(e, "detail", status_str(m->last_error_type != NULL
                                                ? m->last_error_detail : m->last_error));
    json_object_set_new(e, "key_type", status_str(m->last_error_key_type));
    return e;
}

/* "ocsp": {"status", "url", "this_update", "next_update", "next_refresh",
 * "error"}; status "none" with url null: the certificate names no
 * responder, which is normal. */
static json_t *
status_ocsp_json(const atls_cert_kt_info_t *ki)
{
    json_t *o = json_object();

    if (o == NULL) {
        abort();
    }
    json_object_set_new(o, "status",
                        json_string(atls_ocsp_status_name(status_ocsp_status(ki))));
    json_object_set_new(o, "url", status_str(ki ? ki->ocsp_url : NULL));
    json_object_set_new(o, "this_update", status_time(ki ? ki->ocsp_this_update : 0));
    json_object_set_new(o, "next_update", status_time(ki ? ki->ocsp_next_update : 0));
    json_object_set_new(o, "next_refresh", status_time(ki ? ki->ocsp_next_refresh : 0));
    json_object_set_new(o, "error", status_str(ki ? ki->ocsp_error : NULL));
    return o;
}

/* "crl": {"url", "fetched", "next_update"}, the last two from the cache. */
static json_t *
status_crl_json(atls_store_t *st, status_t *s, const atls_cert_kt_info_t *ki)
{
    const atls_crl_cache_t *cc = NULL;
    json_t                 *o = json_object();

    if (o == NULL) {
        abort();
    }
    if (ki != NULL && ki->crl_url != NULL) {
        cc = status_crl(st, s, ki->crl_url);
    }
    json_object_set_new(o, "url", status_str(ki ? ki->crl_url : NULL));
    json_object_set_new(o, "fetched", status_time(cc ? cc->fetched : 0));
    json_object_set_new(o, "next_update", status_time(cc ? cc->next_update : 0));
    return o;
}

/* "revoked": {"seen", "at", "reason", "source"}, null when not known revoked. */
static json_t *
status_revoked_json(const atls_cert_kt_info_t *ki)
{
    json_t *o;

    if (ki == NULL || ki->revoked_seen == 0) {
        return json_null();
    }
    o = json_object();
    if (o == NULL) {
        abort();
    }
    json_object_set_new(o, "seen", status_time(ki->revoked_seen));
    json_object_set_new(o, "at", status_time(ki->revoked_at));
    json_object_set_new(o, "reason", json_string(atls_crl_reason_name(ki->revoked_reason)));
    json_object_set_new(o, "source", status_str(ki->revoked_source));
    return o;
}

static json_t *
status_cert_json(atls_store_t *st, status_t *s, const status_cert_t *c, time_t now)
{
    json_t                    *o = json_object(), *names = json_array();
    json_t                    *keys = json_array(), *k;
    const atls_cert_kt_info_t *ki;
    size_t                     i;

    if (o == NULL || names == NULL || keys == NULL) {
        abort();
    }
    json_object_set_new(o, "id", json_string(c->id));
    if (!c->ok) {
        json_object_set_new(o, "names", names);
        json_object_set_new(o, "state", json_string("error"));
        json_object_set_new(o, "last_error", status_str(c->error));
        json_object_set_new(o, "keys", keys);
        return o;
    }
    for (i = 0; i < c->meta.n_names; i++) {
        json_array_append_new(names, json_string(c->meta.names[i]));
    }
    json_object_set_new(o, "names", names);
    json_object_set_new(o, "state", json_string(status_state_name(c)));
    json_object_set_new(o, "failures", json_integer(c->meta.failures));
    json_object_set_new(o, "last_error", status_str(c->meta.last_error));
    json_object_set_new(o, "error", status_error_json(&c->meta));
    json_object_set_new(o, "next_renewal", status_time(c->next_renewal));
    json_object_set_new(o, "next_attempt", status_time(c->meta.next_attempt));
    json_object_set_new(o, "last_success", status_time(c->meta.last_success));
    json_object_set_new(o, "directory", status_str(c->meta.issuer.directory));
    json_object_set_new(o, "generation", json_integer((json_int_t) c->meta.generation));
    for (i = 0; i < c->n_keys; i++) {
        const atls_cert_info_t *in = &c->keys[i].info;

        k = json_object();
        if (k == NULL) {
            abort();
        }
        json_object_set_new(k, "type", json_string(atls_key_type_name(c->keys[i].type)));
        json_object_set_new(k, "serial", json_string(in->serial));
        json_object_set_new(k, "issuer", json_string(in->issuer));
        json_object_set_new(k, "not_before", status_time(in->not_before));
        json_object_set_new(k, "not_after", status_time(in->not_after));
        json_object_set_new(k, "days_left",
                            json_integer(status_days_left(in->not_after, now)));
        ki = status_kt(c, c->keys[i].type);
        json_object_set_new(k, "ocsp", status_ocsp_json(ki));
        json_object_set_new(k, "crl", status_crl_json(st, s, ki));
        json_object_set_new(k, "revoked", status_revoked_json(ki));
        json_array_append_new(keys, k);
    }
    json_object_set_new(o, "keys", keys);
    return o;
}

static json_t *
status_extra_json(const atls_status_extra_t *x)
{
    json_t *o = json_object();
    size_t  i;

    if (o == NULL) {
        abort();
    }
    for (i = 0; i < x->n; i++) {
        json_object_set_new(o, x->gauges[i].name,
                            json_integer((json_int_t) x->gauges[i].value));
    }
    return o;
}

char *
atls_status_json(atls_store_t *st, time_t now)
{
    return atls_status_json_ext(st, now, NULL);
}

char *
atls_status_json_ext(atls_store_t *st, time_t now, const atls_status_extra_t *x)
{
    status_t s;
    json_t  *root, *arr;
    char    *out;
    size_t   i;

    if (status_load(st, &s) != 0) {
        return NULL;
    }
    root = json_object();
    arr = json_array();
    if (root == NULL || arr == NULL) {
        abort();
    }
    json_object_set_new(root, "version", json_string(ATLS_VERSION));
    json_object_set_new(root, "generated", status_time(now));
    for (i = 0; i < s.n; i++) {
        json_array_append_new(arr, status_cert_json(st, &s, &s.certs[i], now));
    }
    json_object_set_new(root, "certificates", arr);
    if (x != NULL) {
        json_object_set_new(root, x->section, status_extra_json(x));
    }
    out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    status_free(&s);
    return out;
}

/* ---- Prometheus ------------------------------------------------------------ */

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
status_family(status_buf_t *b, const char *name, const char *help)
{
    status_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
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
                ki = status_kt(&s->certs[i], s->certs[i].keys[k].type);
                if (pass == 0) {
                    status_printf(b, "%s{id=\"%s\",key_type=\"%s\",status=\"%s\"} 1\n",
                                  family[pass][0], ids[i], kn,
                                  atls_ocsp_status_name(status_ocsp_status(ki)));
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

char *
atls_status_prometheus(atls_store_t *st, time_t now)
{
    return atls_status_prometheus_ext(st, now, NULL);
}

char *
atls_status_prometheus_ext(atls_store_t *st, time_t now, const atls_status_extra_t *x)
{
    static const atls_cert_state_t states[] = {
        ATLS_STATE_PENDING, ATLS_STATE_VALID, ATLS_STATE_RENEWING, ATLS_STATE_FAILED
    };
    status_t     s;
    status_buf_t b = { NULL, 0, 0 };
    char       **ids;
    size_t       i, k, j;
    int          pass;

    (void) now;
    if (status_load(st, &s) != 0) {
        return NULL;
    }
    ids = calloc(s.n + 1, sizeof(*ids));
    if (ids == NULL) {
        abort();
    }
    for (i = 0; i < s.n; i++) {
        ids[i] = status_label(s.certs[i].id);
    }

    status_family(&b, "autotls_certificates_total", "Number of managed certificates.");
    status_printf(&b, "autotls_certificates_total %zu\n", s.n);

    for (pass = 0; pass < 2; pass++) {
        if (pass == 0) {
            status_family(&b, "autotls_certificate_not_after_seconds",
                          "Expiry of the served certificate, Unix time.");
        } else {
            status_family(&b, "autotls_certificate_not_before_seconds",
                          "Start of validity of the served certificate, Unix time.");
        }
        for (i = 0; i < s.n; i++) {
            for (k = 0; k < s.certs[i].n_keys; k++) {
                const status_key_t *key = &s.certs[i].keys[k];

                status_printf(&b, "autotls_certificate_%s_seconds{id=\"%s\",key_type=\"%s\"} %lld\n",
                              pass == 0 ? "not_after" : "not_before", ids[i],
                              atls_key_type_name(key->type),
                              (long long) (pass == 0 ? key->info.not_after
                                                     : key->info.not_before));
            }
        }
    }

    status_family(&b, "autotls_certificate_next_renewal_seconds",
                  "When the next renewal attempt is due, Unix time (0 = as soon as possible).");
    for (i = 0; i < s.n; i++) {
        if (s.certs[i].ok) {
            status_printf(&b, "autotls_certificate_next_renewal_seconds{id=\"%s\"} %lld\n",
                          ids[i], (long long) s.certs[i].next_renewal);
        }
    }

    status_family(&b, "autotls_certificate_failures",
                  "Consecutive failed renewal attempts.");
    for (i = 0; i < s.n; i++) {
        if (s.certs[i].ok) {
            status_printf(&b, "autotls_certificate_failures{id=\"%s\"} %u\n",
                          ids[i], s.certs[i].meta.failures);
        }
    }

    status_family(&b, "autotls_certificate_state",
                  "Certificate state: 1 for the current state, 0 for the others.");
    for (i = 0; i < s.n; i++) {
        if (!s.certs[i].ok) {
            continue;
        }
        for (j = 0; j < sizeof(states) / sizeof(states[0]); j++) {
            status_printf(&b, "autotls_certificate_state{id=\"%s\",state=\"%s\"} %d\n",
                          ids[i], atls_cert_state_name(states[j]),
                          s.certs[i].meta.state == states[j]);
        }
    }

    status_revocation_prometheus(&b, &s, ids);
    if (x != NULL) {
        status_extra_prometheus(&b, x);
    }
    atls_strv_free(ids, s.n);
    status_free(&s);
    return b.p;
}
