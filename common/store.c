/*
 * Typed helpers over the store ops: the only code that knows the logical
 * layout (see atls_store.h).  Backend-agnostic.  A certificate's key and
 * chain are in store_cert.c.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include "atls_b64.h"
#include "atls_store.h"
#include "store_int.h"

void
atls_store_close(atls_store_t *st)
{
    if (st != NULL && st->ops != NULL && st->ops->close != NULL) {
        st->ops->close(st);
    }
}

const char *
atls_cert_state_name(atls_cert_state_t s)
{
    switch (s) {
    case ATLS_STATE_PENDING:  return "pending";
    case ATLS_STATE_VALID:    return "valid";
    case ATLS_STATE_RENEWING: return "renewing";
    case ATLS_STATE_FAILED:   return "failed";
    }
    return "unknown";
}

/* ---- ids ------------------------------------------------------------------- */

char *
atls_cert_id(const char *first_name)
{
    char  *id;
    size_t i;

    if (first_name == NULL || *first_name == '\0') {
        return NULL;
    }
    id = atls_strdup(first_name);
    for (i = 0; id[i] != '\0'; i++) {
        unsigned char c = (unsigned char) id[i];

        /* DNS names are case-insensitive; anything that could break out of
         * one path component becomes '_' too. */
        if (c == '*' || c == '/' || c < 0x20 || c == 0x7f) {
            id[i] = '_';
        } else {
            id[i] = (char) tolower(c);
        }
    }
    if (id[0] == '.') {
        id[0] = '_';
    }
    return id;
}

char *
atls_ca_id(const char *directory_url)
{
    char  *id;
    size_t i;

    if (directory_url == NULL || *directory_url == '\0') {
        return NULL;
    }
    id = atls_strdup(directory_url);
    for (i = 0; id[i] != '\0'; i++) {
        char c = id[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '.' || c == '-'))
        {
            id[i] = '_';
        }
    }
    if (id[0] == '.') {
        id[0] = '_';
    }
    return id;
}

int
atls_store_id_ok(const char *id)
{
    return id != NULL && *id != '\0' && *id != '.' && strchr(id, '/') == NULL;
}

int
atls_store_path_ok(const char *path, int allow_empty)
{
    const char *p, *c;

    if (path == NULL || strlen(path) > ATLS_STORE_PATH_MAX) {
        return 0;
    }
    if (*path == '\0') {
        return allow_empty;
    }
    c = path;
    for (p = path;; p++) {
        if (*p == '/' || *p == '\0') {
            if (p == c || *c == '.') {
                return 0;
            }
            if (*p == '\0') {
                return 1;
            }
            c = p + 1;
        }
    }
}

char *
atls_store_cat(const char *first, ...)
{
    va_list     ap;
    const char *s;
    char       *p;
    size_t      n = 1, off = 0;

    va_start(ap, first);
    for (s = first; s != NULL; s = va_arg(ap, const char *)) {
        n += strlen(s);
    }
    va_end(ap);
    p = malloc(n);
    if (p == NULL) {
        abort();
    }
    va_start(ap, first);
    for (s = first; s != NULL; s = va_arg(ap, const char *)) {
        memcpy(p + off, s, strlen(s));
        off += strlen(s);
    }
    va_end(ap);
    p[off] = '\0';
    return p;
}

void
atls_store_err_path(atls_store_t *st, const char *path, char *err, size_t errlen,
                    const char *why)
{
    snprintf(err, errlen, "%s/%s: %s", st->location ? st->location : "", path, why);
}

/* ---- issuer and meta ------------------------------------------------------- */

void
atls_issuer_free(atls_issuer_t *is)
{
    if (is == NULL) {
        return;
    }
    free(is->directory);
    free(is->ca_file);
    atls_strv_free(is->contact, is->n_contact);
    free(is->dns_hook);
    if (is->eab_hmac != NULL) {
        OPENSSL_cleanse(is->eab_hmac, strlen(is->eab_hmac));
    }
    free(is->eab_kid);
    free(is->eab_hmac);
    free(is->profile);
    free(is->preferred_chain);
    memset(is, 0, sizeof(*is));
}

void
atls_issuer_copy(atls_issuer_t *dst, const atls_issuer_t *src)
{
    *dst = *src;
    dst->directory = atls_strdup(src->directory);
    dst->ca_file = atls_strdup(src->ca_file);
    if (src->contact != NULL && src->n_contact > 0) {
        dst->contact = atls_strv_dup(src->contact, src->n_contact);
    } else {
        dst->contact = NULL;
        dst->n_contact = 0;
    }
    dst->dns_hook = atls_strdup(src->dns_hook);
    dst->eab_kid = atls_strdup(src->eab_kid);
    dst->eab_hmac = atls_strdup(src->eab_hmac);
    dst->profile = atls_strdup(src->profile);
    dst->preferred_chain = atls_strdup(src->preferred_chain);
}

void
atls_cert_meta_free(atls_cert_meta_t *m)
{
    if (m == NULL) {
        return;
    }
    free(m->id);
    atls_strv_free(m->names, m->n_names);
    atls_issuer_free(&m->issuer);
    free(m->last_error);
    free(m->last_error_type);
    free(m->last_error_detail);
    free(m->last_error_key_type);
    free(m->account_url);
    for (size_t i = 0; i < m->n_kt_info && i < ATLS_KEY_TYPE_MAX; i++) {
        atls_cert_kt_info_clear(&m->kt_info[i]);
    }
    memset(m, 0, sizeof(*m));
}

int
atls_store_load_meta(atls_store_t *st, const char *id, atls_cert_meta_t *m,
                     char *err, size_t errlen)
{
    char   *path, *data = NULL, why[512];
    size_t  len = 0;
    int     rc;

    memset(m, 0, sizeof(*m));
    if (!atls_store_id_ok(id)) {
        snprintf(err, errlen, "invalid certificate id \"%s\"", id ? id : "(null)");
        return ATLS_STORE_ERROR;
    }
    path = atls_store_cat("certs/", id, "/meta.json", NULL);
    rc = st->ops->get(st, path, &data, &len, err, errlen);
    if (rc != ATLS_STORE_OK) {
        free(path);
        return rc;
    }
    if (atls_cert_meta_from_json(data, len, m, why, sizeof(why)) != 0) {
        /* Reported, never deleted: the operator decides what to do with it. */
        atls_store_err_path(st, path, err, errlen, why);
        rc = ATLS_STORE_ERROR;
    } else if (strcmp(m->id, id) != 0) {
        atls_store_err_path(st, path, err, errlen, "field \"id\" does not match the directory");
        atls_cert_meta_free(m);
        rc = ATLS_STORE_ERROR;
    }
    free(data);
    free(path);
    return rc;
}

int
atls_store_save_meta(atls_store_t *st, const atls_cert_meta_t *m,
                     char *err, size_t errlen)
{
    char *path, *json;
    int   rc;

    if (m == NULL || !atls_store_id_ok(m->id)) {
        snprintf(err, errlen, "invalid certificate id");
        return ATLS_STORE_ERROR;
    }
    json = atls_cert_meta_to_json(m);
    if (json == NULL) {
        snprintf(err, errlen, "certificate %s: cannot serialise meta", m->id);
        return ATLS_STORE_ERROR;
    }
    path = atls_store_cat("certs/", m->id, "/meta.json", NULL);
    rc = st->ops->put(st, path, json, strlen(json), 0, err, errlen);
    free(path);
    free(json);
    return rc;
}

int
atls_store_has_cert(atls_store_t *st, const char *id)
{
    char             err[256];
    atls_cert_meta_t m;
    int              has;

    memset(&m, 0, sizeof(m));
    if (atls_store_load_meta(st, id, &m, err, sizeof(err)) != ATLS_STORE_OK) {
        return 0;
    }
    has = m.n_kt_info > 0;
    atls_cert_meta_free(&m);
    return has;
}

/* ---- paged listing ------------------------------------------------------ */

struct atls_store_cursor_s {
    void   *backend;   /* the backend's own cursor (ops->list_page) */
    char  **v;         /* or the one listing handed out in pages */
    size_t  n, next;
};

static void
store_cursor_free(atls_store_t *st, atls_store_cursor_t *c)
{
    size_t i;

    if (c->backend != NULL && st->ops->list_end != NULL) {
        st->ops->list_end(st, c->backend);
    }
    for (i = c->next; i < c->n; i++) {
        free(c->v[i]);
    }
    free(c->v);
    free(c);
}

int
atls_store_list_page(atls_store_t *st, const char *dir, atls_store_cursor_t **cursor,
                     size_t max, char ***names, size_t *n, char *err, size_t errlen)
{
    atls_store_cursor_t *c = *cursor;
    size_t               k;
    int                  rc = ATLS_STORE_OK;

    *names = NULL;
    *n = 0;
    if (max == 0) {
        max = 1;
    }
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            abort();
        }
        if (st->ops->list_page == NULL) {
            rc = st->ops->list(st, dir, &c->v, &c->n, err, errlen);
            if (rc == ATLS_STORE_NOTFOUND) {
                rc = ATLS_STORE_OK;
            }
        }
    }
    if (rc == ATLS_STORE_OK && st->ops->list_page != NULL) {
        rc = st->ops->list_page(st, dir, &c->backend, max, names, n, err, errlen);
        if (rc == ATLS_STORE_OK && c->backend != NULL) {
            *cursor = c;
            return ATLS_STORE_OK;
        }
        c->backend = NULL;   /* complete or failed: the backend ended it */
    } else if (rc == ATLS_STORE_OK) {
        k = c->n - c->next < max ? c->n - c->next : max;
        if (k > 0) {
            *names = malloc(k * sizeof(char *));
            if (*names == NULL) {
                abort();
            }
            memcpy(*names, c->v + c->next, k * sizeof(char *));
            c->next += k;
            *n = k;
        }
        if (c->next < c->n) {
            *cursor = c;
            return ATLS_STORE_OK;
        }
    }
    store_cursor_free(st, c);
    *cursor = NULL;
    return rc;
}

void
atls_store_list_end(atls_store_t *st, atls_store_cursor_t *cursor)
{
    if (cursor != NULL) {
        store_cursor_free(st, cursor);
    }
}

int
atls_store_list_certs(atls_store_t *st, char ***ids, size_t *n, char *err, size_t errlen)
{
    int rc = st->ops->list(st, "certs", ids, n, err, errlen);

    if (rc == ATLS_STORE_NOTFOUND) {
        *ids = NULL;
        *n = 0;
        return ATLS_STORE_OK;
    }
    return rc;
}

/* ---- renew requests and generation ---------------------------------------- */

int
atls_store_request_renew(atls_store_t *st, const char *id, char *err, size_t errlen)
{
    char  *path, when[40];
    int    rc;

    if (!atls_store_id_ok(id)) {
        snprintf(err, errlen, "invalid certificate id \"%s\"", id ? id : "(null)");
        return ATLS_STORE_ERROR;
    }
    atls_rfc3339_format(time(NULL), when, sizeof(when) - 1);
    strcat(when, "\n");
    path = atls_store_cat("requests/", id, NULL);
    rc = st->ops->put(st, path, when, strlen(when), 0, err, errlen);
    free(path);
    return rc;
}

int
atls_store_peek_request(atls_store_t *st, const char *id, time_t *when)
{
    char   err[256], buf[64];
    char  *path, *data = NULL;
    size_t len = 0, n;
    time_t t;
    int    rc;

    *when = 0;
    if (!atls_store_id_ok(id)) {
        return 0;
    }
    path = atls_store_cat("requests/", id, NULL);
    rc = st->ops->get(st, path, &data, &len, err, sizeof(err));
    free(path);
    if (rc == ATLS_STORE_OK && data != NULL) {
        n = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;
        memcpy(buf, data, n);
        buf[n] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        t = atls_rfc3339_parse(buf);
        *when = t > 0 ? t : 0;
    }
    free(data);
    return rc == ATLS_STORE_OK;
}

/* The store path of a challenge answer; NULL when key does not pass. */
static char *
challenge_path(atls_challenge_type_t t, const char *key, char *err, size_t errlen)
{
    const char *p;

    if (key == NULL || key[0] == '\0' || strlen(key) > 255) {
        snprintf(err, errlen, "invalid challenge key");
        return NULL;
    }
    if (t == ATLS_CHAL_HTTP01) {
        if (!atls_b64url_is_token(key, strlen(key))) {
            snprintf(err, errlen, "invalid http-01 token");
            return NULL;
        }
        return atls_store_cat("challenges/http-01/", key, NULL);
    }
    if (t != ATLS_CHAL_TLSALPN01) {
        snprintf(err, errlen, "no stored answer for %s challenges",
                 atls_challenge_type_name(t));
        return NULL;
    }
    for (p = key; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
              || *p == '-' || *p == '.' || *p == ':'))
        {
            snprintf(err, errlen, "invalid tls-alpn-01 identifier");
            return NULL;
        }
    }
    if (key[0] == '.' || strstr(key, "..") != NULL) {
        snprintf(err, errlen, "invalid tls-alpn-01 identifier");
        return NULL;
    }
    return atls_store_cat("challenges/tls-alpn-01/", key, NULL);
}

int
atls_store_put_challenge(atls_store_t *st, atls_challenge_type_t t, const char *key,
                         const char *data, size_t len, char *err, size_t errlen)
{
    char *path = challenge_path(t, key, err, errlen);
    int   rc;

    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    /* a tls-alpn-01 answer carries its key */
    rc = st->ops->put(st, path, data, len, t == ATLS_CHAL_TLSALPN01, err, errlen);
    free(path);
    return rc;
}

int
atls_store_get_challenge(atls_store_t *st, atls_challenge_type_t t, const char *key,
                         char **data, size_t *len, char *err, size_t errlen)
{
    char *path = challenge_path(t, key, err, errlen);
    int   rc;

    *data = NULL;
    *len = 0;
    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = st->ops->get(st, path, data, len, err, errlen);
    free(path);
    return rc;
}

int
atls_store_del_challenge(atls_store_t *st, atls_challenge_type_t t, const char *key,
                         char *err, size_t errlen)
{
    char *path = challenge_path(t, key, err, errlen);
    int   rc;

    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = st->ops->del(st, path, err, errlen);
    free(path);
    return rc;
}

int
atls_store_take_request(atls_store_t *st, const char *id)
{
    char  err[256];
    char *path;
    int   rc;

    if (!atls_store_id_ok(id)) {
        return 0;
    }
    path = atls_store_cat("requests/", id, NULL);
    rc = st->ops->del(st, path, err, sizeof(err));
    if (rc == ATLS_STORE_ERROR) {
        atls_log(ATLS_LOG_WARN, "store: renew request for %s: %s", id, err);
    }
    free(path);
    return rc == ATLS_STORE_OK;
}

int
atls_store_read_generation(atls_store_t *st, uint64_t *gen, char *err, size_t errlen)
{
    char              *data = NULL, *end;
    size_t             len;
    unsigned long long v;
    int                rc;

    *gen = 0;
    rc = st->ops->get(st, "generation", &data, &len, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        return ATLS_STORE_OK;
    }
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    /* strtoull() skips blanks and takes a sign: " -1" would read as 2^64-1. */
    errno = 0;
    v = strtoull(data, &end, 10);
    if (errno != 0 || end == data || (*end != '\0' && *end != '\n')
        || !isdigit((unsigned char) data[0]))
    {
        atls_store_err_path(st, "generation", err, errlen, "not a decimal number");
        free(data);
        return ATLS_STORE_ERROR;
    }
    free(data);
    *gen = v;
    return ATLS_STORE_OK;
}

uint64_t
atls_store_generation(atls_store_t *st)
{
    char     err[256];
    uint64_t g;

    if (atls_store_read_generation(st, &g, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "store: %s", err);
        return 0;
    }
    return g;
}

/* ---- certificate lock ------------------------------------------------------ */

int
atls_store_lock_cert(atls_store_t *st, const char *id, int wait, atls_store_lock_t **lk,
                     char *err, size_t errlen)
{
    char *name;
    int   rc;

    *lk = NULL;
    if (!atls_store_id_ok(id)) {
        snprintf(err, errlen, "invalid certificate id \"%s\"", id ? id : "(null)");
        return ATLS_STORE_ERROR;
    }
    name = atls_store_cat("cert-", id, NULL);
    rc = st->ops->lock(st, name, wait, lk, err, errlen);
    free(name);
    if (rc != ATLS_STORE_OK) {
        *lk = NULL;
    }
    return rc;
}

void
atls_store_unlock(atls_store_t *st, atls_store_lock_t *lk)
{
    if (lk != NULL) {
        st->ops->unlock(st, lk);
    }
}

/* ---- where the fs backend keeps things, for operators ---------------------- */

int
atls_store_fs_cert_file(const char *dir, const char *id, atls_key_type_t kt,
                        char *buf, size_t len)
{
    const char *ktn = atls_key_type_name(kt);
    char       *abs;

    if (dir == NULL || !atls_store_id_ok(id) || ktn == NULL) {
        snprintf(buf, len, "-");
        return -1;
    }
    abs = realpath(dir, NULL);
    snprintf(buf, len, "%s/certs/%s/%s.pem", abs != NULL ? abs : dir, id, ktn);
    free(abs);
    return 0;
}
