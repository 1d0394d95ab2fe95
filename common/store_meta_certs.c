/*
 * The "certs" object of meta.json: what the store holds per key type (its
 * validity, serial and names, always written) and what is known about its
 * revocation (where to ask, the last OCSP answer, a revocation seen),
 * written only when set so that meta.json stays small: absent is the
 * default.  Parsed strictly: an unknown member or a bad value is an error
 * naming the field ("certs.ec256.ocsp_status").
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "atls_ocsp.h"
#include "atls_store.h"
#include "store_int.h"

/* The largest CRLReason code (aACompromise, RFC 5280 5.3.1). */
#define META_REASON_MAX 10

static const char *const meta_revoked_sources[] = { "ocsp", "crl", "operator" };

/* ---- to JSON --------------------------------------------------------------- */

/* The revocation facts of one entry, each only when set. */
static int
meta_revocation_to_json(json_t *c, const atls_cert_kt_info_t *ki)
{
    int rc = 0;

    rc |= atls_meta_set_str(c, "ocsp_url", ki->ocsp_url);
    rc |= atls_meta_set_str(c, "crl_url", ki->crl_url);
    if (ki->ocsp_status != ATLS_OCSP_NONE) {
        rc |= atls_meta_set_str(c, "ocsp_status", atls_ocsp_status_name(ki->ocsp_status));
    }
    rc |= atls_meta_set_time(c, "ocsp_this_update", ki->ocsp_this_update);
    rc |= atls_meta_set_time(c, "ocsp_next_update", ki->ocsp_next_update);
    rc |= atls_meta_set_time(c, "ocsp_next_refresh", ki->ocsp_next_refresh);
    if (ki->ocsp_failures > 0) {
        rc |= atls_meta_set(c, "ocsp_failures", json_integer(ki->ocsp_failures));
    }
    rc |= atls_meta_set_str(c, "ocsp_error", ki->ocsp_error);
    /* the rest describes a revocation seen: nothing without it */
    if (ki->revoked_seen <= 0) {
        return rc;
    }
    rc |= atls_meta_set_time(c, "revoked_seen", ki->revoked_seen);
    rc |= atls_meta_set_time(c, "revoked_at", ki->revoked_at);
    if (ki->revoked_reason >= 0) {
        rc |= atls_meta_set(c, "revoked_reason", json_integer(ki->revoked_reason));
    }
    rc |= atls_meta_set_str(c, "revoked_source", ki->revoked_source);
    return rc;
}

/* The expiry alerts sent for it (sched_event.c), only once one was. */
static int
meta_alerts_to_json(json_t *c, const atls_cert_kt_info_t *ki)
{
    int rc = 0;

    if (ki->warned_level > 0) {
        rc |= atls_meta_set(c, "warned_level", json_integer(ki->warned_level));
    }
    rc |= atls_meta_set_time(c, "expired_sent", ki->expired_sent);
    return rc;
}

/* "certs": {"ec256": {"not_before", "not_after", "serial", "names", ...}, ...} */
json_t *
atls_meta_certs_to_json(const atls_cert_meta_t *m)
{
    json_t *o = json_object(), *c;
    char    nb[32], na[32];
    size_t  i;
    int     rc = 0;

    for (i = 0; o != NULL && i < m->n_kt_info && i < ATLS_KEY_TYPE_MAX; i++) {
        const atls_cert_kt_info_t *ki = &m->kt_info[i];
        const char                *kn = atls_key_type_name(ki->key_type);

        c = json_object();
        if (c == NULL || kn == NULL) {
            json_decref(c);
            rc = -1;
            break;
        }
        /* the first four always: the parser requires them */
        atls_rfc3339_format(ki->not_before, nb, sizeof(nb));
        atls_rfc3339_format(ki->not_after, na, sizeof(na));
        rc |= atls_meta_set(c, "not_before", json_string(nb));
        rc |= atls_meta_set(c, "not_after", json_string(na));
        rc |= atls_meta_set(c, "serial", json_string(ki->serial ? ki->serial : ""));
        rc |= atls_meta_set(c, "names", atls_meta_strv(ki->names, ki->n_names));
        rc |= meta_revocation_to_json(c, ki);
        rc |= meta_alerts_to_json(c, ki);
        rc |= atls_meta_set(o, kn, c);
    }
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- from JSON ------------------------------------------------------------- */

static const char *const meta_cert_members[] = {
    "not_before", "not_after", "serial", "names",
    "ocsp_url", "crl_url", "ocsp_status", "ocsp_this_update", "ocsp_next_update",
    "ocsp_next_refresh", "ocsp_failures", "ocsp_error",
    "revoked_seen", "revoked_at", "revoked_reason", "revoked_source",
    "warned_level", "expired_sent"
};

static int
meta_cert_members_known(json_t *c, const char *kn, char *err, size_t errlen)
{
    const char *key;
    json_t     *v;
    size_t      i, n = sizeof(meta_cert_members) / sizeof(meta_cert_members[0]);

    json_object_foreach(c, key, v) {
        for (i = 0; i < n && strcmp(key, meta_cert_members[i]) != 0; i++) {
            /* look further */
        }
        if (i == n) {
            return atls_meta_fail(err, errlen, "field \"certs.%s\": unknown member "
                                  "\"%.32s\"", kn, key);
        }
    }
    return 0;
}

/* An optional URL where revocation is published: http:// or https://, no
 * blank or control character (it is fetched, and shown to operators). */
static int
meta_get_url(json_t *c, const char *kn, const char *key, char **out,
             char *err, size_t errlen)
{
    char        field[64];
    const char *p;

    snprintf(field, sizeof(field), "certs.%s.%s", kn, key);
    if (atls_meta_get_str(c, key, field, out, err, errlen) != 0) {
        return -1;
    }
    if (*out == NULL) {
        return 0;
    }
    for (p = *out; *p != '\0' && (unsigned char) *p > 0x20 && *p != 0x7f; p++) {
        /* look further */
    }
    if ((strncmp(*out, "http://", 7) != 0 && strncmp(*out, "https://", 8) != 0)
        || *p != '\0' || strlen(*out) > 2048)
    {
        free(*out);
        *out = NULL;
        return atls_meta_fail(err, errlen, "field \"%s\" must be an http:// or https:// "
                              "URL", field);
    }
    return 0;
}

static int
meta_get_kt_time(json_t *c, const char *kn, const char *key, time_t *out,
                 char *err, size_t errlen)
{
    char field[64];

    snprintf(field, sizeof(field), "certs.%s.%s", kn, key);
    return atls_meta_get_time_field(c, key, field, out, err, errlen);
}

static int
meta_ocsp_from_json(json_t *c, const char *kn, atls_cert_kt_info_t *ki,
                    char *err, size_t errlen)
{
    json_t   *v = json_object_get(c, "ocsp_status");
    char      field[64];
    long long x;
    int       st;

    ki->ocsp_status = ATLS_OCSP_NONE;
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v)
            || atls_ocsp_status_parse(json_string_value(v), &ki->ocsp_status) != 0)
        {
            return atls_meta_fail(err, errlen, "field \"certs.%s.ocsp_status\" must be "
                                  "one of \"none\", \"good\", \"revoked\", \"unknown\", "
                                  "\"error\"", kn);
        }
    }
    snprintf(field, sizeof(field), "certs.%s.ocsp_failures", kn);
    st = atls_meta_get_int(c, "ocsp_failures", field, 0, UINT_MAX, &x, err, errlen);
    ki->ocsp_failures = (unsigned) x;
    snprintf(field, sizeof(field), "certs.%s.ocsp_error", kn);
    if (st != 0
        || meta_get_url(c, kn, "ocsp_url", &ki->ocsp_url, err, errlen)
        || meta_get_url(c, kn, "crl_url", &ki->crl_url, err, errlen)
        || meta_get_kt_time(c, kn, "ocsp_this_update", &ki->ocsp_this_update, err, errlen)
        || meta_get_kt_time(c, kn, "ocsp_next_update", &ki->ocsp_next_update, err, errlen)
        || meta_get_kt_time(c, kn, "ocsp_next_refresh", &ki->ocsp_next_refresh, err,
                            errlen)
        || atls_meta_get_str(c, "ocsp_error", field, &ki->ocsp_error, err, errlen))
    {
        return -1;
    }
    return 0;
}

static int
meta_revoked_from_json(json_t *c, const char *kn, atls_cert_kt_info_t *ki,
                       char *err, size_t errlen)
{
    char      field[64];
    long long x;
    size_t    i, n = sizeof(meta_revoked_sources) / sizeof(meta_revoked_sources[0]);

    ki->revoked_reason = -1;
    if (meta_get_kt_time(c, kn, "revoked_seen", &ki->revoked_seen, err, errlen)
        || meta_get_kt_time(c, kn, "revoked_at", &ki->revoked_at, err, errlen))
    {
        return -1;
    }
    snprintf(field, sizeof(field), "certs.%s.revoked_reason", kn);
    if (json_object_get(c, "revoked_reason") != NULL
        && !json_is_null(json_object_get(c, "revoked_reason")))
    {
        if (atls_meta_get_int(c, "revoked_reason", field, 0, META_REASON_MAX, &x,
                              err, errlen) != 0)
        {
            return -1;
        }
        ki->revoked_reason = (int) x;
    }
    snprintf(field, sizeof(field), "certs.%s.revoked_source", kn);
    if (atls_meta_get_str(c, "revoked_source", field, &ki->revoked_source, err, errlen)) {
        return -1;
    }
    for (i = 0; ki->revoked_source != NULL && i < n; i++) {
        if (strcmp(ki->revoked_source, meta_revoked_sources[i]) == 0) {
            break;
        }
    }
    if (i == n) {
        return atls_meta_fail(err, errlen, "field \"%s\" must be one of \"ocsp\", "
                              "\"crl\", \"operator\"", field);
    }
    /* the facts of a revocation come with the moment it was seen */
    if (ki->revoked_seen == 0
        && (ki->revoked_at != 0 || ki->revoked_reason >= 0 || ki->revoked_source != NULL))
    {
        return atls_meta_fail(err, errlen, "fields \"certs.%s.revoked_*\" need "
                              "\"certs.%s.revoked_seen\"", kn, kn);
    }
    return 0;
}

static int
meta_alerts_from_json(json_t *c, const char *kn, atls_cert_kt_info_t *ki,
                      char *err, size_t errlen)
{
    char      field[64];
    long long x = 0;

    snprintf(field, sizeof(field), "certs.%s.warned_level", kn);
    if (atls_meta_get_int(c, "warned_level", field, 0, LONG_MAX, &x, err, errlen) != 0) {
        return -1;
    }
    ki->warned_level = (long) x;
    return meta_get_kt_time(c, kn, "expired_sent", &ki->expired_sent, err, errlen);
}

/* One "certs" entry: the first four members required, nothing unknown
 * tolerated. */
static int
meta_cert_from_json(json_t *c, const char *kn, atls_cert_kt_info_t *ki,
                    char *err, size_t errlen)
{
    const char *serial;
    char        field[64];
    size_t      i;

    ki->revoked_reason = -1;
    if (!json_is_object(c)) {
        return atls_meta_fail(err, errlen, "field \"certs.%s\" must be an object", kn);
    }
    if (meta_cert_members_known(c, kn, err, errlen) != 0) {
        return -1;
    }
    for (i = 0; i < 2; i++) {
        snprintf(field, sizeof(field), "certs.%s.%s", kn, meta_cert_members[i]);
        if (json_object_get(c, meta_cert_members[i]) == NULL) {
            return atls_meta_fail(err, errlen, "field \"%s\" is missing", field);
        }
        if (atls_meta_get_time_field(c, meta_cert_members[i], field,
                                     i == 0 ? &ki->not_before : &ki->not_after,
                                     err, errlen))
        {
            return -1;
        }
    }
    serial = json_string_value(json_object_get(c, "serial"));
    if (serial == NULL || strlen(serial) > 128
        || strspn(serial, "0123456789abcdefABCDEF") != strlen(serial))
    {
        return atls_meta_fail(err, errlen, "field \"certs.%s.serial\" must be a hex "
                              "string", kn);
    }
    ki->serial = atls_strdup(serial);
    snprintf(field, sizeof(field), "certs.%s.names", kn);
    if (!json_is_array(json_object_get(c, "names"))) {
        return atls_meta_fail(err, errlen, "field \"%s\" must be an array of strings",
                              field);
    }
    if (atls_meta_get_strv(c, "names", field, 0, &ki->names, &ki->n_names, err, errlen)
        || meta_ocsp_from_json(c, kn, ki, err, errlen)
        || meta_revoked_from_json(c, kn, ki, err, errlen)
        || meta_alerts_from_json(c, kn, ki, err, errlen))
    {
        return -1;
    }
    return 0;
}

int
atls_meta_certs_from_json(json_t *root, atls_cert_meta_t *m, char *err, size_t errlen)
{
    json_t     *o = json_object_get(root, "certs"), *c;
    const char *kn;

    if (o == NULL || json_is_null(o)) {
        return 0;
    }
    if (!json_is_object(o)) {
        return atls_meta_fail(err, errlen, "field \"certs\" must be an object");
    }
    json_object_foreach(o, kn, c) {
        atls_cert_kt_info_t *ki;
        atls_key_type_t      kt;

        if (atls_key_type_parse(kn, &kt) != 0) {
            return atls_meta_fail(err, errlen, "field \"certs\": unknown key type "
                                  "\"%.32s\"", kn);
        }
        if (m->n_kt_info >= ATLS_KEY_TYPE_MAX) {
            return atls_meta_fail(err, errlen, "field \"certs\" must hold at most %d "
                                  "key types", ATLS_KEY_TYPE_MAX);
        }
        if (m->n_kt_info > 0 && m->kt_info[0].key_type == kt) {
            return atls_meta_fail(err, errlen, "field \"certs\": duplicate key type "
                                  "\"%s\"", kn);
        }
        ki = &m->kt_info[m->n_kt_info++];
        ki->key_type = kt;
        if (meta_cert_from_json(c, kn, ki, err, errlen) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- the entries ----------------------------------------------------------- */

void
atls_cert_kt_info_clear(atls_cert_kt_info_t *ki)
{
    free(ki->serial);
    atls_strv_free(ki->names, ki->n_names);
    free(ki->ocsp_url);
    free(ki->crl_url);
    free(ki->ocsp_error);
    free(ki->revoked_source);
    memset(ki, 0, sizeof(*ki));
}

void
atls_cert_kt_info_copy(atls_cert_kt_info_t *d, const atls_cert_kt_info_t *s)
{
    *d = *s;
    d->serial = atls_strdup(s->serial);
    d->names = atls_strv_dup(s->names, s->n_names);
    d->ocsp_url = atls_strdup(s->ocsp_url);
    d->crl_url = atls_strdup(s->crl_url);
    d->ocsp_error = atls_strdup(s->ocsp_error);
    d->revoked_source = atls_strdup(s->revoked_source);
}

atls_cert_kt_info_t *
atls_cert_meta_kt(atls_cert_meta_t *m, atls_key_type_t kt)
{
    size_t i;

    for (i = 0; m != NULL && i < m->n_kt_info && i < ATLS_KEY_TYPE_MAX; i++) {
        if (m->kt_info[i].key_type == kt) {
            return &m->kt_info[i];
        }
    }
    return NULL;
}

void
atls_cert_meta_set_kt_info(atls_cert_meta_t *m, const atls_cert_info_t *info)
{
    atls_cert_kt_info_t *ki = atls_cert_meta_kt(m, info->key_type);

    if (ki == NULL) {
        if (m->n_kt_info >= ATLS_KEY_TYPE_MAX) {
            return;
        }
        ki = &m->kt_info[m->n_kt_info++];
    }
    /* a new certificate: what was known about the old one's revocation
     * does not apply to it */
    atls_cert_kt_info_clear(ki);
    ki->key_type = info->key_type;
    ki->not_before = info->not_before;
    ki->not_after = info->not_after;
    ki->serial = atls_strdup(info->serial);
    ki->names = atls_strv_dup(info->names, info->n_names);
    ki->n_names = info->n_names;
    ki->revoked_reason = -1;
}

void
atls_cert_meta_set_kt_leaf(atls_cert_meta_t *m, const atls_cert_info_t *info, X509 *leaf)
{
    atls_cert_kt_info_t *ki;

    atls_cert_meta_set_kt_info(m, info);
    ki = atls_cert_meta_kt(m, info->key_type);
    if (ki == NULL || leaf == NULL) {
        return;
    }
    ki->ocsp_url = atls_ocsp_url(leaf);
    ki->crl_url = atls_crl_url(leaf);
}
