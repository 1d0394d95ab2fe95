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

#define META_TIME_MAX 253402300799LL   /* 9999-12-31T23:59:59Z */

static const char *const meta_state_names[] = { "pending", "valid", "renewing", "failed" };

/* ---- to JSON --------------------------------------------------------------- */

static int
meta_set(json_t *obj, const char *key, json_t *v)
{
    return v == NULL ? -1 : json_object_set_new(obj, key, v);
}

static int
meta_set_str(json_t *obj, const char *key, const char *s)
{
    return s == NULL ? 0 : meta_set(obj, key, json_string(s));
}

static int
meta_set_time(json_t *obj, const char *key, time_t t)
{
    char buf[32];

    if (t <= 0) {
        return 0;
    }
    atls_rfc3339_format(t, buf, sizeof(buf));
    return meta_set(obj, key, json_string(buf));
}

static json_t *
meta_strv(char *const *v, size_t n)
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
    rc |= meta_set_str(o, "directory", is->directory);
    rc |= meta_set_str(o, "ca_file", is->ca_file);
    rc |= meta_set(o, "contact", meta_strv(is->contact, is->n_contact));
    rc |= meta_set(o, "agree_tos", json_boolean(is->agree_tos));
    rc |= meta_set_str(o, "challenge", atls_challenge_type_name(is->challenge));
    rc |= meta_set_str(o, "dns_hook", is->dns_hook);
    kts = json_array();
    for (i = 0; kts != NULL && i < is->n_key_types && i < ATLS_KEY_TYPE_MAX; i++) {
        const char *kn = atls_key_type_name(is->key_types[i]);

        if (kn == NULL || json_array_append_new(kts, json_string(kn)) != 0) {
            rc = -1;
        }
    }
    rc |= meta_set(o, "key_types", kts);
    rc |= meta_set_str(o, "profile", is->profile);
    rc |= meta_set(o, "profile_required", json_boolean(is->profile_required));
    rc |= meta_set_str(o, "preferred_chain", is->preferred_chain);
    renew = json_object();
    if (renew != NULL) {
        rc |= meta_set(renew, "fraction", json_real(is->renew.renew_fraction));
        rc |= meta_set(renew, "before", json_integer(is->renew.renew_before));
    }
    rc |= meta_set(o, "renew", renew);
    rc |= meta_set(o, "http_port", json_integer(is->http_port));
    rc |= meta_set(o, "tls_port", json_integer(is->tls_port));
    rc |= meta_set(o, "csr_cn", json_boolean(is->csr_cn));
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
    rc |= meta_set_str(o, "id", m->id);
    rc |= meta_set(o, "names", meta_strv(m->names, m->n_names));
    is = meta_issuer_to_json(&m->issuer);
    rc |= meta_set(o, "issuer", is);
    rc |= meta_set_str(o, "state", meta_state_names[m->state]);
    rc |= meta_set(o, "failures", json_integer(m->failures));
    rc |= meta_set_time(o, "next_attempt", m->next_attempt);
    rc |= meta_set_time(o, "last_attempt", m->last_attempt);
    rc |= meta_set_time(o, "last_success", m->last_success);
    rc |= meta_set_time(o, "renew_at", m->renew_at);
    rc |= meta_set_str(o, "last_error", m->last_error);
    rc |= meta_set_str(o, "account_url", m->account_url);
    if (m->generation > (uint64_t) LLONG_MAX) {
        rc = -1;
    } else {
        rc |= meta_set(o, "generation", json_integer((json_int_t) m->generation));
    }
    rc |= meta_set_time(o, "ari_next_check", m->ari_next_check);
    rc |= meta_set_time(o, "ari_window_start", m->ari_window_start);
    rc |= meta_set_time(o, "ari_window_end", m->ari_window_end);
    if (rc == 0) {
        s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    }
    json_decref(o);
    return s;
}

/* ---- from JSON ------------------------------------------------------------- */

static int
meta_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
meta_fail(char *err, size_t errlen, const char *fmt, ...)
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
static int
meta_get_str(json_t *o, const char *key, const char *field, char **out,
             char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);

    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (!json_is_string(v)) {
        return meta_fail(err, errlen, "field \"%s\" must be a string", field);
    }
    *out = atls_strdup(json_string_value(v));
    return 0;
}

static int
meta_get_strv(json_t *o, const char *key, const char *field, int required,
              char ***out, size_t *n, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key), *e;
    size_t  i, cnt;
    char  **sv;

    *out = NULL;
    *n = 0;
    if (v == NULL || json_is_null(v)) {
        if (required) {
            return meta_fail(err, errlen, "field \"%s\" is missing", field);
        }
        return 0;
    }
    if (!json_is_array(v)) {
        return meta_fail(err, errlen, "field \"%s\" must be an array of strings", field);
    }
    cnt = json_array_size(v);
    for (i = 0; i < cnt; i++) {
        e = json_array_get(v, i);
        if (!json_is_string(e) || json_string_length(e) == 0) {
            return meta_fail(err, errlen, "field \"%s\" must be an array of strings",
                             field);
        }
    }
    if (required && cnt == 0) {
        return meta_fail(err, errlen, "field \"%s\" must not be empty", field);
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

static int
meta_get_int(json_t *o, const char *key, const char *field, long long lo,
             long long hi, long long *out, char *err, size_t errlen)
{
    json_t   *v = json_object_get(o, key);
    long long x;

    *out = 0;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (!json_is_integer(v)) {
        return meta_fail(err, errlen, "field \"%s\" must be an integer", field);
    }
    x = (long long) json_integer_value(v);
    if (x < lo || x > hi) {
        return meta_fail(err, errlen, "field \"%s\" must be between %lld and %lld",
                         field, lo, hi);
    }
    *out = x;
    return 0;
}

static int
meta_get_bool(json_t *o, const char *key, const char *field, int *out,
              char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);

    *out = 0;
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (!json_is_boolean(v)) {
        return meta_fail(err, errlen, "field \"%s\" must be true or false", field);
    }
    *out = json_is_true(v);
    return 0;
}

/* Absent/null -> 0; an RFC 3339 string; an integer (seconds) is accepted too
 * so hand-edited files are forgiving. */
static int
meta_get_time(json_t *o, const char *key, time_t *out, char *err, size_t errlen)
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
            return meta_fail(err, errlen,
                             "field \"%s\" must be an RFC 3339 time, got \"%.64s\"",
                             key, json_string_value(v));
        }
    } else if (json_is_integer(v)) {
        x = (long long) json_integer_value(v);
        if (x < 0) {
            return meta_fail(err, errlen, "field \"%s\" must not be negative", key);
        }
    } else {
        return meta_fail(err, errlen, "field \"%s\" must be an RFC 3339 time", key);
    }
    if (x > META_TIME_MAX) {
        return meta_fail(err, errlen, "field \"%s\" is out of range", key);
    }
    *out = (time_t) x;
    return 0;
}

static int
meta_issuer_from_json(json_t *o, atls_issuer_t *is, char *err, size_t errlen)
{
    json_t     *v, *renew;
    const char *s;
    long long   x;
    size_t      i;

    if (meta_get_str(o, "directory", "issuer.directory", &is->directory, err, errlen)
        || meta_get_str(o, "ca_file", "issuer.ca_file", &is->ca_file, err, errlen)
        || meta_get_strv(o, "contact", "issuer.contact", 0, &is->contact,
                         &is->n_contact, err, errlen)
        || meta_get_bool(o, "agree_tos", "issuer.agree_tos", &is->agree_tos, err, errlen)
        || meta_get_str(o, "dns_hook", "issuer.dns_hook", &is->dns_hook, err, errlen)
        || meta_get_str(o, "profile", "issuer.profile", &is->profile, err, errlen)
        || meta_get_bool(o, "profile_required", "issuer.profile_required",
                         &is->profile_required, err, errlen)
        || meta_get_str(o, "preferred_chain", "issuer.preferred_chain",
                        &is->preferred_chain, err, errlen)
        || meta_get_bool(o, "csr_cn", "issuer.csr_cn", &is->csr_cn, err, errlen))
    {
        return -1;
    }

    v = json_object_get(o, "challenge");
    is->challenge = ATLS_CHAL_HTTP01;
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v)
            || atls_challenge_type_parse(json_string_value(v), &is->challenge) != 0)
        {
            return meta_fail(err, errlen, "field \"issuer.challenge\" must be "
                             "\"http-01\", \"tls-alpn-01\" or \"dns-01\"");
        }
    }

    v = json_object_get(o, "key_types");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_array(v) || json_array_size(v) > ATLS_KEY_TYPE_MAX) {
            return meta_fail(err, errlen, "field \"issuer.key_types\" must be an "
                             "array of at most %d key type names", ATLS_KEY_TYPE_MAX);
        }
        for (i = 0; i < json_array_size(v); i++) {
            s = json_string_value(json_array_get(v, i));
            if (s == NULL || atls_key_type_parse(s, &is->key_types[i]) != 0) {
                return meta_fail(err, errlen, "field \"issuer.key_types\": unknown "
                                 "key type \"%.32s\"", s ? s : "(not a string)");
            }
            if (i > 0 && is->key_types[i] == is->key_types[0]) {
                return meta_fail(err, errlen, "field \"issuer.key_types\": "
                                 "duplicate key type \"%s\"", s);
            }
        }
        is->n_key_types = json_array_size(v);
    }

    renew = json_object_get(o, "renew");
    if (renew != NULL && !json_is_null(renew)) {
        if (!json_is_object(renew)) {
            return meta_fail(err, errlen, "field \"issuer.renew\" must be an object");
        }
        v = json_object_get(renew, "fraction");
        if (v != NULL && !json_is_null(v)) {
            if (!json_is_number(v) || json_number_value(v) < 0
                || json_number_value(v) >= 1)
            {
                return meta_fail(err, errlen, "field \"issuer.renew.fraction\" "
                                 "must be a number in [0, 1)");
            }
            is->renew.renew_fraction = json_number_value(v);
        }
        if (meta_get_int(renew, "before", "issuer.renew.before", 0, LONG_MAX,
                         &x, err, errlen)) {
            return -1;
        }
        is->renew.renew_before = (long) x;
    }
    if (meta_get_int(o, "http_port", "issuer.http_port", 0, 65535, &x, err, errlen)) {
        return -1;
    }
    is->http_port = (int) x;
    if (meta_get_int(o, "tls_port", "issuer.tls_port", 0, 65535, &x, err, errlen)) {
        return -1;
    }
    is->tls_port = (int) x;
    return 0;
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
        return meta_fail(err, errlen, "no data");
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return meta_fail(err, errlen, "invalid JSON at line %d: %s", jerr.line, jerr.text);
    }
    if (!json_is_object(root)) {
        meta_fail(err, errlen, "top level must be an object");
        goto failed;
    }
    if (meta_get_str(root, "id", "id", &m->id, err, errlen)
        || meta_get_strv(root, "names", "names", 1, &m->names, &m->n_names, err, errlen))
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
            meta_fail(err, errlen, "field \"id\" does not match the first name");
            goto failed;
        }
    }
    if (m->id == NULL) {
        meta_fail(err, errlen, "field \"names\": first name is not usable as an id");
        goto failed;
    }

    v = json_object_get(root, "issuer");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_object(v)) {
            meta_fail(err, errlen, "field \"issuer\" must be an object");
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
            meta_fail(err, errlen, "field \"state\" must be one of \"pending\", "
                      "\"valid\", \"renewing\", \"failed\"");
            goto failed;
        }
        m->state = (atls_cert_state_t) i;
    }
    if (meta_get_int(root, "failures", "failures", 0, UINT_MAX, &x, err, errlen)) {
        goto failed;
    }
    m->failures = (unsigned) x;
    if (meta_get_time(root, "next_attempt", &m->next_attempt, err, errlen)
        || meta_get_time(root, "last_attempt", &m->last_attempt, err, errlen)
        || meta_get_time(root, "last_success", &m->last_success, err, errlen)
        || meta_get_time(root, "renew_at", &m->renew_at, err, errlen)
        || meta_get_str(root, "last_error", "last_error", &m->last_error, err, errlen)
        || meta_get_str(root, "account_url", "account_url", &m->account_url, err, errlen)
        || meta_get_int(root, "generation", "generation", 0, LLONG_MAX, &x, err, errlen)
        || meta_get_time(root, "ari_next_check", &m->ari_next_check, err, errlen)
        || meta_get_time(root, "ari_window_start", &m->ari_window_start, err, errlen)
        || meta_get_time(root, "ari_window_end", &m->ari_window_end, err, errlen))
    {
        goto failed;
    }
    if ((m->ari_window_start == 0) != (m->ari_window_end == 0)
        || m->ari_window_end < m->ari_window_start)
    {
        meta_fail(err, errlen, "fields \"ari_window_start\" and \"ari_window_end\" "
                  "must both be set, start before end");
        goto failed;
    }
    m->generation = (uint64_t) x;
    json_decref(root);
    return 0;

failed:
    json_decref(root);
    atls_cert_meta_free(m);
    return -1;
}
