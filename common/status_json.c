/*
 * The status document (atls_status_json): managed certificates with their
 * findings, the static ones of the inventory, the counters.  Never key
 * material.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "atls_job.h"
#include "atls_status.h"
#include "status_int.h"


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
                        json_string(atls_ocsp_status_name(atls_status_ocsp_status(ki))));
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
        cc = atls_status_crl(st, s, ki->crl_url);
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
status_finding_json(const atls_finding_t *f, const char *key_type)
{
    json_t *o = json_pack("{s:s,s:s,s:s}", "finding", atls_finding_name(f->type),
                          "severity", atls_severity_name(f->severity), "detail", f->detail);

    if (o == NULL) {
        abort();
    }
    if (key_type != NULL) {
        json_object_set_new(o, "key_type", json_string(key_type));
    }
    return o;
}

/* Every key type's findings, each naming its key type. */
static json_t *
status_cert_findings_json(const status_t *s, const status_cert_t *c, time_t now)
{
    atls_finding_t fs[ATLS_STATUS_FINDINGS_MAX];
    json_t        *a = json_array();
    size_t         k, i, n;

    if (a == NULL) {
        abort();
    }
    for (k = 0; c->ok && k < c->n_keys; k++) {
        n = atls_status_key_findings(c, k, s->warn, now, fs, ATLS_STATUS_FINDINGS_MAX);
        for (i = 0; i < n; i++) {
            json_array_append_new(a, status_finding_json(&fs[i],
                                      atls_key_type_name(c->keys[k].type)));
        }
    }
    return a;
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
    json_object_set_new(o, "source", json_string("managed"));
    json_object_set_new(o, "findings", status_cert_findings_json(s, c, now));
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
    json_object_set_new(o, "state", json_string(atls_status_state_name(c)));
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
        ki = atls_status_kt(c, c->keys[i].type);
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

/* The inventory's items as their stored JSON with the findings at now. */
static json_t *
status_statics_json(const status_t *s, time_t now)
{
    json_t      *a = json_array(), *o;
    json_error_t jerr;
    char        *text;
    size_t       i;

    if (a == NULL) {
        abort();
    }
    for (i = 0; i < s->n_statics; i++) {
        text = atls_inventory_item_to_json(&s->statics[i], s->warn, now);
        o = text != NULL ? json_loads(text, 0, &jerr) : NULL;
        if (o == NULL) {
            abort();
        }
        json_array_append_new(a, o);
        free(text);
    }
    return a;
}

static json_t *
status_counters_json(const status_t *s)
{
    json_t *o = json_object();
    size_t  i;

    if (o == NULL) {
        abort();
    }
    for (i = 0; i < s->n_counters; i++) {
        json_object_set_new(o, s->counter_names[i],
                            json_integer((json_int_t) s->counter_values[i]));
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
    return atls_status_json_query(st, now, x, NULL);
}

char *
atls_status_json_query(atls_store_t *st, time_t now, const atls_status_extra_t *x,
                       const atls_status_query_t *q)
{
    status_t s;
    json_t  *root, *arr;
    char    *out;
    size_t   i;

    if (atls_status_load(st, &s, q) != 0) {
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
    json_object_set_new(root, "total", json_integer((json_int_t) s.total));
    json_object_set_new(root, "offset", json_integer(q != NULL ? (json_int_t) q->offset : 0));
    json_object_set_new(root, "limit", q != NULL && q->limit > 0
                                       ? json_integer((json_int_t) q->limit) : json_null());
    json_object_set_new(root, "certificates", arr);
    json_object_set_new(root, "static", status_statics_json(&s, now));
    json_object_set_new(root, "counters", status_counters_json(&s));
    for (; x != NULL; x = x->next) {
        json_object_set_new(root, x->section, status_extra_json(x));
    }
    out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    atls_status_free(&s);
    return out;
}
