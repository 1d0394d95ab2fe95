/*
 * meta.json <-> atls_cert_meta_t.  The file is operator-visible, so times are
 * RFC 3339 and every parse error names the field.  The EAB key id and HMAC
 * are deliberately never written: the HMAC is a secret and only account
 * creation needs them.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "atls_store.h"
#include "store_int.h"

#define META_TIME_MAX 253402300799LL   /* 9999-12-31T23:59:59Z */

static const char *const meta_state_names[] = { "pending", "valid", "renewing", "failed" };
/* indexed by atls_err_class_t, as atls_err_class_name() spells them */
static const char *const meta_class_names[] = { "none", "retry-now", "retry-later",
                                                "permanent" };

/* ---- to JSON --------------------------------------------------------------- */

int
atls_meta_set(json_t *obj, const char *key, json_t *v)
{
    return v == NULL ? -1 : json_object_set_new(obj, key, v);
}

int
atls_meta_set_str(json_t *obj, const char *key, const char *s)
{
    return s == NULL ? 0 : atls_meta_set(obj, key, json_string(s));
}

int
atls_meta_set_time(json_t *obj, const char *key, time_t t)
{
    char buf[32];

    if (t <= 0) {
        return 0;
    }
    atls_rfc3339_format(t, buf, sizeof(buf));
    return atls_meta_set(obj, key, json_string(buf));
}

json_t *
atls_meta_strv(char *const *v, size_t n)
{
    json_t *a = json_array();
    size_t  i;

    for (i = 0; a != NULL && i < n; i++) {
        if (v[i] == NULL || json_array_append_new(a, json_string(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *
meta_issuer_to_json(const atls_issuer_t *is)
{
    json_t *o = json_object(), *kts, *renew;
    size_t  i;
    int     rc = 0;

    if (o == NULL) {
        return NULL;
    }
    rc |= atls_meta_set_str(o, "directory", is->directory);
    rc |= atls_meta_set_str(o, "ca_file", is->ca_file);
    rc |= atls_meta_set(o, "contact", atls_meta_strv(is->contact, is->n_contact));
    rc |= atls_meta_set(o, "agree_tos", json_boolean(is->agree_tos));
    rc |= atls_meta_set_str(o, "challenge", atls_challenge_type_name(is->challenge));
    rc |= atls_meta_set_str(o, "dns_hook", is->dns_hook);
    kts = json_array();
    for (i = 0; kts != NULL && i < is->n_key_types && i < ATLS_KEY_TYPE_MAX; i++) {
        const char *kn = atls_key_type_name(is->key_types[i]);

        if (kn == NULL || json_array_append_new(kts, json_string(kn)) != 0) {
            rc = -1;
        }
    }
    rc |= atls_meta_set(o, "key_types", kts);
    rc |= atls_meta_set_str(o, "profile", is->profile);
    rc |= atls_meta_set(o, "profile_required", json_boolean(is->profile_required));
    rc |= atls_meta_set_str(o, "preferred_chain", is->preferred_chain);
    renew = json_object();
    if (renew != NULL) {
        rc |= atls_meta_set(renew, "fraction", json_real(is->renew.renew_fraction));
        rc |= atls_meta_set(renew, "before", json_integer(is->renew.renew_before));
    }
    rc |= atls_meta_set(o, "renew", renew);
    rc |= atls_meta_set(o, "http_port", json_integer(is->http_port));
    rc |= atls_meta_set(o, "tls_port", json_integer(is->tls_port));
    rc |= atls_meta_set(o, "csr_cn", json_boolean(is->csr_cn));
    /* written when on: absent is the default (staple, no Must-Staple) */
    if (is->stapling_off) {
        rc |= atls_meta_set(o, "stapling_off", json_true());
    }
    if (is->must_staple) {
        rc |= atls_meta_set(o, "must_staple", json_true());
    }
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *
atls_cert_meta_to_json(const atls_cert_meta_t *m)
{
    json_t *o, *is;
    char   *s = NULL;
    int     rc = 0;

    if (m == NULL || (unsigned) m->state > ATLS_STATE_FAILED) {
        return NULL;
    }
    o = json_object();
    if (o == NULL) {
        return NULL;
    }
    rc |= atls_meta_set_str(o, "id", m->id);
    rc |= atls_meta_set(o, "names", atls_meta_strv(m->names, m->n_names));
    is = meta_issuer_to_json(&m->issuer);
    rc |= atls_meta_set(o, "issuer", is);
    rc |= atls_meta_set_str(o, "state", meta_state_names[m->state]);
    rc |= atls_meta_set(o, "failures", json_integer(m->failures));
    rc |= atls_meta_set_time(o, "next_attempt", m->next_attempt);
    rc |= atls_meta_set_time(o, "last_attempt", m->last_attempt);
    rc |= atls_meta_set_time(o, "last_success", m->last_success);
    rc |= atls_meta_set_time(o, "renew_at", m->renew_at);
    rc |= atls_meta_set_str(o, "last_error", m->last_error);
    if (m->last_error_class != ATLS_ERR_NONE) {
        if ((unsigned) m->last_error_class > ATLS_ERR_PERMANENT) {
            rc = -1;
        } else {
            rc |= atls_meta_set_str(o, "last_error_class",
                                    meta_class_names[m->last_error_class]);
        }
    }
    rc |= atls_meta_set_str(o, "last_error_type", m->last_error_type);
    rc |= atls_meta_set_str(o, "last_error_detail", m->last_error_detail);
    rc |= atls_meta_set_str(o, "last_error_key_type", m->last_error_key_type);
    rc |= atls_meta_set_str(o, "account_url", m->account_url);
    if (m->generation > (uint64_t) LLONG_MAX) {
        rc = -1;
    } else {
        rc |= atls_meta_set(o, "generation", json_integer((json_int_t) m->generation));
    }
    rc |= atls_meta_set_time(o, "ari_next_check", m->ari_next_check);
    rc |= atls_meta_set_time(o, "ari_window_start", m->ari_window_start);
    rc |= atls_meta_set_time(o, "ari_window_end", m->ari_window_end);
    if (m->ari_failures > 0) {
        rc |= atls_meta_set(o, "ari_failures", json_integer(m->ari_failures));
    }
    if (m->n_kt_info > 0) {
        rc |= atls_meta_set(o, "certs", atls_meta_certs_to_json(m));
    }
    if (rc == 0) {
        s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    }
    json_decref(o);
    return s;
}

/* ---- from JSON ------------------------------------------------------------- */

int
atls_meta_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

int
atls_meta_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Optional string: absent or null -> NULL. */
int
atls_meta_get_str(json_t *o, const char *key, const char *field, char **out,
                  char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);

    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (!json_is_string(v)) {
        return atls_meta_fail(err, errlen, "field \"%s\" must be a string", field);
    }
    *out = atls_strdup(json_string_value(v));
    return 0;
}

int
atls_meta_get_strv(json_t *o, const char *key, const char *field, int required,
                   char ***out, size_t *n, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key), *e;
    size_t  i, cnt;
    char  **sv;

    *out = NULL;
    *n = 0;
    if (v == NULL || json_is_null(v)) {
        if (required) {
            return atls_meta_fail(err, errlen, "field \"%s\" is missing", field);
        }
        return 0;
    }
    if (!json_is_array(v)) {
        return atls_meta_fail(err, errlen, "field \"%s\" must be an array of strings", field);
    }
    cnt = json_array_size(v);
    for (i = 0; i < cnt; i++) {
        e = json_array_get(v, i);
        if (!json_is_string(e) || json_string_length(e) == 0) {
            return atls_meta_fail(err, errlen, "field \"%s\" must be an array of strings",
                                  field);
        }
    }
    if (required && cnt == 0) {
        return atls_meta_fail(err, errlen, "field \"%s\" must not be empty", field);
    }
    if (cnt == 0) {
        return 0;
    }
    sv = calloc(cnt + 1, sizeof(*sv));
    if (sv == NULL) {
        abort();
    }
    for (i = 0; i < cnt; i++) {
        sv[i] = atls_strdup(json_string_value(json_array_get(v, i)));
    }
    *out = sv;
    *n = cnt;
    return 0;
}

int
atls_meta_get_int(json_t *o, const char *key, const char *field, long long lo,
                  long long hi, long long *out, char *err, size_t errlen)
{
    json_t   *v = json_object_get(o, key);
    long long x;

    *out = 0;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (!json_is_integer(v)) {
        return atls_meta_fail(err, errlen, "field \"%s\" must be an integer", field);
    }
    x = (long long) json_integer_value(v);
    if (x < lo || x > hi) {
        return atls_meta_fail(err, errlen, "field \"%s\" must be between %lld and %lld",
                              field, lo, hi);
    }
    *out = x;
    return 0;
}

int
atls_meta_get_bool(json_t *o, const char *key, const char *field, int *out,
                   char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);

    *out = 0;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (!json_is_boolean(v)) {
        return atls_meta_fail(err, errlen, "field \"%s\" must be true or false", field);
    }
    *out = json_is_true(v);
    return 0;
}

/* Absent/null -> 0; an RFC 3339 string; an integer (seconds) is accepted too
 * so hand-edited files are forgiving.  field names key in messages. */
int
atls_meta_get_time_field(json_t *o, const char *key, const char *field, time_t *out,
                         char *err, size_t errlen)
{
    json_t   *v = json_object_get(o, key);
    long long x;

    *out = 0;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (json_is_string(v)) {
        x = atls_rfc3339_parse(json_string_value(v));
        if (x < 0) {
            return atls_meta_fail(err, errlen,
                                  "field \"%s\" must be an RFC 3339 time, got \"%.64s\"",
                                  field, json_string_value(v));
        }
    } else if (json_is_integer(v)) {
        x = (long long) json_integer_value(v);
        if (x < 0) {
            return atls_meta_fail(err, errlen, "field \"%s\" must not be negative", field);
        }
    } else {
        return atls_meta_fail(err, errlen, "field \"%s\" must be an RFC 3339 time", field);
    }
    if (x > META_TIME_MAX) {
        return atls_meta_fail(err, errlen, "field \"%s\" is out of range", field);
    }
    *out = (time_t) x;
    return 0;
}

int
atls_meta_get_time(json_t *o, const char *key, time_t *out, char *err, size_t errlen)
{
    return atls_meta_get_time_field(o, key, key, out, err, errlen);
}

static int
meta_issuer_from_json(json_t *o, atls_issuer_t *is, char *err, size_t errlen)
{
    json_t     *v, *renew;
    const char *s;
    long long   x;
    size_t      i;

    if (atls_meta_get_str(o, "directory", "issuer.directory", &is->directory, err, errlen)
        || atls_meta_get_str(o, "ca_file", "issuer.ca_file", &is->ca_file, err, errlen)
        || atls_meta_get_strv(o, "contact", "issuer.contact", 0, &is->contact,
                              &is->n_contact, err, errlen)
        || atls_meta_get_bool(o, "agree_tos", "issuer.agree_tos", &is->agree_tos, err, errlen)
        || atls_meta_get_str(o, "dns_hook", "issuer.dns_hook", &is->dns_hook, err, errlen)
        || atls_meta_get_str(o, "profile", "issuer.profile", &is->profile, err, errlen)
        || atls_meta_get_bool(o, "profile_required", "issuer.profile_required",
                              &is->profile_required, err, errlen)
        || atls_meta_get_str(o, "preferred_chain", "issuer.preferred_chain",
                             &is->preferred_chain, err, errlen)
        || atls_meta_get_bool(o, "csr_cn", "issuer.csr_cn", &is->csr_cn, err, errlen)
        || atls_meta_get_bool(o, "stapling_off", "issuer.stapling_off", &is->stapling_off,
                              err, errlen)
        || atls_meta_get_bool(o, "must_staple", "issuer.must_staple", &is->must_staple,
                              err, errlen))
    {
        return -1;
    }

    v = json_object_get(o, "challenge");
    is->challenge = ATLS_CHAL_HTTP01;
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v)
            || atls_challenge_type_parse(json_string_value(v), &is->challenge) != 0)
        {
            return atls_meta_fail(err, errlen, "field \"issuer.challenge\" must be "
                                  "\"http-01\", \"tls-alpn-01\" or \"dns-01\"");
        }
    }

    v = json_object_get(o, "key_types");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_array(v) || json_array_size(v) > ATLS_KEY_TYPE_MAX) {
            return atls_meta_fail(err, errlen, "field \"issuer.key_types\" must be an "
                                  "array of at most %d key type names", ATLS_KEY_TYPE_MAX);
        }
        for (i = 0; i < json_array_size(v); i++) {
            s = json_string_value(json_array_get(v, i));
            if (s == NULL || atls_key_type_parse(s, &is->key_types[i]) != 0) {
                return atls_meta_fail(err, errlen, "field \"issuer.key_types\": unknown "
                                      "key type \"%.32s\"", s ? s : "(not a string)");
            }
            if (i > 0 && is->key_types[i] == is->key_types[0]) {
                return atls_meta_fail(err, errlen, "field \"issuer.key_types\": "
                                      "duplicate key type \"%s\"", s);
            }
        }
        is->n_key_types = json_array_size(v);
    }

    renew = json_object_get(o, "renew");
    if (renew != NULL && !json_is_null(renew)) {
        if (!json_is_object(renew)) {
            return atls_meta_fail(err, errlen, "field \"issuer.renew\" must be an object");
        }
        v = json_object_get(renew, "fraction");
        if (v != NULL && !json_is_null(v)) {
            if (!json_is_number(v) || json_number_value(v) < 0
                || json_number_value(v) >= 1)
            {
                return atls_meta_fail(err, errlen, "field \"issuer.renew.fraction\" "
                                      "must be a number in [0, 1)");
            }
            is->renew.renew_fraction = json_number_value(v);
        }
        if (atls_meta_get_int(renew, "before", "issuer.renew.before", 0, LONG_MAX,
                         &x, err, errlen)) {
            return -1;
        }
        is->renew.renew_before = (long) x;
    }
    if (atls_meta_get_int(o, "http_port", "issuer.http_port", 0, 65535, &x, err, errlen)) {
        return -1;
    }
    is->http_port = (int) x;
    if (atls_meta_get_int(o, "tls_port", "issuer.tls_port", 0, 65535, &x, err, errlen)) {
        return -1;
    }
    is->tls_port = (int) x;
    return 0;
}

static int
meta_error_class_from_json(json_t *root, atls_cert_meta_t *m, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, "last_error_class");
    size_t  i;

    m->last_error_class = ATLS_ERR_NONE;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    for (i = 0; json_is_string(v) && i < sizeof(meta_class_names) / sizeof(meta_class_names[0]);
         i++)
    {
        if (strcmp(json_string_value(v), meta_class_names[i]) == 0) {
            m->last_error_class = (atls_err_class_t) i;
            return 0;
        }
    }
    return atls_meta_fail(err, errlen, "field \"last_error_class\" must be one of \"none\", "
                          "\"retry-now\", \"retry-later\", \"permanent\"");
}

int
atls_cert_meta_from_json(const char *json, size_t len, atls_cert_meta_t *m,
                         char *err, size_t errlen)
{
    json_t      *root, *v;
    json_error_t jerr;
    long long    x;
    size_t       i;
    char        *derived;

    memset(m, 0, sizeof(*m));
    if (json == NULL) {
        return atls_meta_fail(err, errlen, "no data");
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return atls_meta_fail(err, errlen, "invalid JSON at line %d: %s", jerr.line, jerr.text);
    }
    if (!json_is_object(root)) {
        atls_meta_fail(err, errlen, "top level must be an object");
        goto failed;
    }
    if (atls_meta_get_str(root, "id", "id", &m->id, err, errlen)
        || atls_meta_get_strv(root, "names", "names", 1, &m->names, &m->n_names, err, errlen))
    {
        goto failed;
    }
    derived = atls_cert_id(m->names[0]);
    if (m->id == NULL) {
        m->id = derived;
    } else {
        int same = derived != NULL && strcmp(derived, m->id) == 0;

        free(derived);
        if (!same) {
            atls_meta_fail(err, errlen, "field \"id\" does not match the first name");
            goto failed;
        }
    }
    if (m->id == NULL) {
        atls_meta_fail(err, errlen, "field \"names\": first name is not usable as an id");
        goto failed;
    }

    v = json_object_get(root, "issuer");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_object(v)) {
            atls_meta_fail(err, errlen, "field \"issuer\" must be an object");
            goto failed;
        }
        if (meta_issuer_from_json(v, &m->issuer, err, errlen) != 0) {
            goto failed;
        }
    }

    v = json_object_get(root, "state");
    m->state = ATLS_STATE_PENDING;
    if (v != NULL && !json_is_null(v)) {
        const char *s = json_string_value(v);

        for (i = 0; i < 4; i++) {
            if (s != NULL && strcmp(s, meta_state_names[i]) == 0) {
                break;
            }
        }
        if (i == 4) {
            atls_meta_fail(err, errlen, "field \"state\" must be one of \"pending\", "
                           "\"valid\", \"renewing\", \"failed\"");
            goto failed;
        }
        m->state = (atls_cert_state_t) i;
    }
    if (atls_meta_get_int(root, "failures", "failures", 0, UINT_MAX, &x, err, errlen)) {
        goto failed;
    }
    m->failures = (unsigned) x;
    if (atls_meta_get_time(root, "next_attempt", &m->next_attempt, err, errlen)
        || atls_meta_get_time(root, "last_attempt", &m->last_attempt, err, errlen)
        || atls_meta_get_time(root, "last_success", &m->last_success, err, errlen)
        || atls_meta_get_time(root, "renew_at", &m->renew_at, err, errlen)
        || atls_meta_get_str(root, "last_error", "last_error", &m->last_error, err, errlen)
        || meta_error_class_from_json(root, m, err, errlen)
        || atls_meta_get_str(root, "last_error_type", "last_error_type", &m->last_error_type,
                             err, errlen)
        || atls_meta_get_str(root, "last_error_detail", "last_error_detail",
                             &m->last_error_detail, err, errlen)
        || atls_meta_get_str(root, "last_error_key_type", "last_error_key_type",
                             &m->last_error_key_type, err, errlen)
        || atls_meta_get_str(root, "account_url", "account_url", &m->account_url, err, errlen)
        || atls_meta_get_int(root, "generation", "generation", 0, LLONG_MAX, &x, err, errlen)
        || atls_meta_get_time(root, "ari_next_check", &m->ari_next_check, err, errlen)
        || atls_meta_get_time(root, "ari_window_start", &m->ari_window_start, err, errlen)
        || atls_meta_get_time(root, "ari_window_end", &m->ari_window_end, err, errlen))
    {
        goto failed;
    }
    if ((m->ari_window_start == 0) != (m->ari_window_end == 0)
        || m->ari_window_end < m->ari_window_start)
    {
        atls_meta_fail(err, errlen, "fields \"ari_window_start\" and \"ari_window_end\" "
                       "must both be set, start before end");
        goto failed;
    }
    m->generation = (uint64_t) x;
    if (atls_meta_get_int(root, "ari_failures", "ari_failures", 0, UINT_MAX, &x, err, errlen)
        || atls_meta_certs_from_json(root, m, err, errlen))
    {
        goto failed;
    }
    m->ari_failures = (unsigned) x;
    json_decref(root);
    return 0;

failed:
    json_decref(root);
    atls_cert_meta_free(m);
    return -1;
}

/* ---- the meta's records ---------------------------------------------------- */

void
atls_cert_meta_copy(atls_cert_meta_t *d, const atls_cert_meta_t *s)
{
    size_t i;

    *d = *s;
    d->id = atls_strdup(s->id);
    d->names = atls_strv_dup(s->names, s->n_names);
    atls_issuer_copy(&d->issuer, &s->issuer);
    d->last_error = atls_strdup(s->last_error);
    d->last_error_type = atls_strdup(s->last_error_type);
    d->last_error_detail = atls_strdup(s->last_error_detail);
    d->last_error_key_type = atls_strdup(s->last_error_key_type);
    d->account_url = atls_strdup(s->account_url);
    for (i = 0; i < s->n_kt_info && i < ATLS_KEY_TYPE_MAX; i++) {
        atls_cert_kt_info_copy(&d->kt_info[i], &s->kt_info[i]);
    }
}

void
atls_cert_meta_set_error(atls_cert_meta_t *m, const atls_error_t *e)
{
    size_t n;

    free(m->last_error);
    free(m->last_error_type);
    free(m->last_error_detail);
    free(m->last_error_key_type);
    m->last_error = m->last_error_type = NULL;
    m->last_error_detail = m->last_error_key_type = NULL;
    m->last_error_class = ATLS_ERR_NONE;
    if (e == NULL) {
        return;
    }
    m->last_error_class = e->cls;
    m->last_error_type = atls_strdup(e->type[0] ? e->type : "autotls:internal");
    m->last_error_detail = atls_strdup(e->detail[0] ? e->detail : "(no detail)");
    m->last_error_key_type = e->key_type[0] ? atls_strdup(e->key_type) : NULL;
    n = strlen(m->last_error_type) + strlen(m->last_error_detail) + 3;
    m->last_error = malloc(n);
    if (m->last_error == NULL) {
        abort();
    }
    snprintf(m->last_error, n, "%s: %s", m->last_error_type, m->last_error_detail);
}
