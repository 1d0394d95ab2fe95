/*
 * The admin API over the registry (atls_names.h), host-agnostic: nginx's
 * autotls_api location and Apache's autotls-api handler hand it the
 * method, the path below the location, the query and the body, and send
 * back the status and JSON it gives.  Everything a client sends is
 * untrusted: names pass atls_name_check, the body is a bounded strict JSON
 * object, the query only takes the parameters it knows; each refusal says
 * which field was wrong.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include "atls.h"
#include "names_int.h"
#include "store_int.h"

#define API_BODY_MAX     4096
#define API_LIMIT_MAX    10000
#define API_LIMIT_DEF    1000
#define API_TOKEN_MAX    4096
#define API_PREFIX       "/names"

typedef struct {
    int          status;
    json_t      *body;       /* NULL: no body (204) */
} api_reply_t;

/* ---- replies -------------------------------------------------------------- */

static void
api_error(api_reply_t *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
api_error(api_reply_t *r, int status, const char *fmt, ...)
{
    char    why[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    /* the message may quote what the client sent: JSON strings are UTF-8,
     * and an operator's terminal is no place for control bytes */
    atls_log_scrub(why);
    r->status = status;
    json_decref(r->body);
    r->body = json_pack("{s:s}", "error", why);
}

/* The registry entry with its certificate's state: "pending" until the
 * store has one. */
static json_t *
api_entry_json(atls_store_t *st, const atls_name_entry_t *e)
{
    json_t          *o = atls_name_entry_json(e), *cert;
    atls_cert_meta_t m;
    char             err[256], *id;
    time_t           not_after = 0;
    size_t           i;

    if (o == NULL) {
        return NULL;
    }
    cert = json_object();
    id = atls_cert_id(e->name);
    memset(&m, 0, sizeof(m));
    if (id != NULL && atls_store_load_meta(st, id, &m, err, sizeof(err)) == ATLS_STORE_OK) {
        for (i = 0; i < m.n_kt_info; i++) {
            if (not_after == 0 || m.kt_info[i].not_after < not_after) {
                not_after = m.kt_info[i].not_after;   /* the first to expire */
            }
        }
        (void) atls_meta_set_str(cert, "state", atls_cert_state_name(m.state));
        (void) atls_meta_set_time(cert, "not_after", not_after);
        (void) atls_meta_set_str(cert, "last_error", m.last_error);
        atls_cert_meta_free(&m);
    } else {
        (void) atls_meta_set_str(cert, "state", "pending");
    }
    free(id);
    if (atls_meta_set(o, "cert", cert) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- the query ------------------------------------------------------------- */

typedef struct {
    const char *state;       /* NULL: every entry */
    int         cert_state;  /* the filter is a certificate state */
    long        limit, offset;
} api_query_t;

static const char *const api_states[] = { "active", "removed", "pending", "valid",
                                          "renewing", "failed" };

static int
api_number(const char *v, size_t n, long lo, long hi, long *out)
{
    long x = 0;
    size_t i;

    if (n == 0 || n > 9) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return -1;
        }
        x = x * 10 + (v[i] - '0');
    }
    if (x < lo || x > hi) {
        return -1;
    }
    *out = x;
    return 0;
}

static int
api_query_param(api_query_t *q, const char *k, size_t kn, const char *v, size_t vn,
                api_reply_t *r)
{
    size_t i;

    if (kn == 5 && strncmp(k, "state", 5) == 0) {
        for (i = 0; i < sizeof(api_states) / sizeof(api_states[0]); i++) {
            if (strlen(api_states[i]) == vn && strncmp(api_states[i], v, vn) == 0) {
                q->state = api_states[i];
                q->cert_state = i >= 2;
                return 0;
            }
        }
        api_error(r, 400, "parameter \"state\" must be one of active, removed, pending, "
                  "valid, renewing, failed");
        return -1;
    }
    if (kn == 5 && strncmp(k, "limit", 5) == 0) {
        if (api_number(v, vn, 1, API_LIMIT_MAX, &q->limit) != 0) {
            api_error(r, 400, "parameter \"limit\" must be a number from 1 to %d",
                      API_LIMIT_MAX);
            return -1;
        }
        return 0;
    }
    if (kn == 6 && strncmp(k, "offset", 6) == 0) {
        if (api_number(v, vn, 0, 999999999, &q->offset) != 0) {
            api_error(r, 400, "parameter \"offset\" must be a number from 0");
            return -1;
        }
        return 0;
    }
    api_error(r, 400, "unknown parameter \"%.*s\" (state, limit, offset)",
              (int) (kn > 32 ? 32 : kn), k);
    return -1;
}

static int
api_query_parse(const char *query, api_query_t *q, api_reply_t *r)
{
    const char *p = query, *amp, *eq;
    size_t      n;

    memset(q, 0, sizeof(*q));
    q->limit = API_LIMIT_DEF;
    while (p != NULL && *p != '\0') {
        amp = strchr(p, '&');
        n = amp != NULL ? (size_t) (amp - p) : strlen(p);
        if (n > 0) {
            eq = memchr(p, '=', n);
            if (eq == NULL) {
                api_error(r, 400, "parameter \"%.*s\" has no value",
                          (int) (n > 32 ? 32 : n), p);
                return -1;
            }
            if (api_query_param(q, p, (size_t) (eq - p), eq + 1, n - (size_t) (eq - p) - 1,
                                r) != 0)
            {
                return -1;
            }
        }
        p = amp != NULL ? amp + 1 : NULL;
    }
    return 0;
}

/* ---- the handlers ------------------------------------------------------------ */

static int
api_matches(const api_query_t *q, const atls_name_entry_t *e, json_t *j)
{
    json_t *cs;

    if (q->state == NULL) {
        return 1;
    }
    if (!q->cert_state) {
        return strcmp(q->state, atls_name_state_name(e->state)) == 0;
    }
    cs = json_object_get(json_object_get(j, "cert"), "state");
    return json_is_string(cs) && strcmp(json_string_value(cs), q->state) == 0;
}

/* Without a filter, a page reads only its own entries. */
static void
api_list_page(atls_store_t *st, const api_query_t *q, api_reply_t *r)
{
    atls_name_entry_t e;
    char            **names = NULL, err[512];
    size_t            n = 0, i;
    json_t           *arr, *j;

    if (atls_names_list_names(st, &names, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_ERR, "autotls api: %s", err);
        api_error(r, 500, "the registry could not be read (see the server's log)");
        return;
    }
    arr = json_array();
    for (i = (size_t) q->offset; arr != NULL && i < n
         && (long) json_array_size(arr) < q->limit; i++)
    {
        if (atls_names_get(st, names[i], &e, err, sizeof(err)) != ATLS_STORE_OK) {
            atls_log(ATLS_LOG_WARN, "autotls api: entry skipped: %s", err);
            continue;
        }
        j = api_entry_json(st, &e);
        atls_name_entry_free(&e);
        if (j != NULL) {
            json_array_append_new(arr, j);
        }
    }
    atls_strv_free(names, n);
    r->status = arr != NULL ? 200 : 500;
    r->body = arr;
}

static void
api_list(atls_store_t *st, const char *query, api_reply_t *r)
{
    atls_name_entry_t *v = NULL;
    api_query_t        q;
    size_t             n = 0, i;
    long               seen = 0;
    json_t            *arr, *j;
    char               err[512];

    if (api_query_parse(query, &q, r) != 0) {
        return;
    }
    if (q.state == NULL) {
        api_list_page(st, &q, r);
        return;
    }
    if (atls_names_list(st, &v, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_ERR, "autotls api: %s", err);
        api_error(r, 500, "the registry could not be read (see the server's log)");
        return;
    }
    arr = json_array();
    for (i = 0; arr != NULL && i < n && (long) json_array_size(arr) < q.limit; i++) {
        if (q.state != NULL && !q.cert_state
            && strcmp(q.state, atls_name_state_name(v[i].state)) != 0)
        {
            continue;
        }
        /* without a certificate-state filter, the offset skips entries
         * before their certificate is looked at */
        if (!q.cert_state && seen++ < q.offset) {
            continue;
        }
        j = api_entry_json(st, &v[i]);
        if (j == NULL || (q.cert_state && (!api_matches(&q, &v[i], j) || seen++ < q.offset))) {
            json_decref(j);
            continue;
        }
        json_array_append_new(arr, j);
    }
    atls_name_entries_free(v, n);
    r->status = arr != NULL ? 200 : 500;
    r->body = arr;
}

/* The name in "/names/NAME", checked and folded into out. */
static int
api_name(const char *raw, char *out, size_t outlen, api_reply_t *r)
{
    char why[160];

    if (atls_name_check(raw, strlen(raw), 1, 127, out, outlen, why, sizeof(why)) != 0) {
        api_error(r, 400, "name \"%.80s\": %s", raw, why);
        return -1;
    }
    return 0;
}

static int
api_printable(const char *s, size_t max)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++) {
        if (i >= max || (unsigned char) s[i] < 0x20 || s[i] == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* PUT's body: empty, or {"home": "..."} and nothing else. */
static int
api_put_body(const char *body, size_t len, char **home, api_reply_t *r)
{
    json_error_t jerr;
    json_t      *root, *v;
    const char  *key;
    char         err[256];
    int          rc = -1;

    *home = NULL;
    if (body == NULL || len == 0) {
        return 0;
    }
    if (len > API_BODY_MAX) {
        api_error(r, 400, "body longer than %d bytes", API_BODY_MAX);
        return -1;
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL || !json_is_object(root)) {
        api_error(r, 400, "body: not a JSON object%s%s", root == NULL ? ": " : "",
                  root == NULL ? jerr.text : "");
        goto done;
    }
    json_object_foreach(root, key, v) {
        if (strcmp(key, "home") != 0) {
            api_error(r, 400, "body: unknown field \"%.32s\" (only \"home\")", key);
            goto done;
        }
    }
    if (atls_meta_get_str(root, "home", "home", home, err, sizeof(err)) != 0
        || (*home != NULL && !api_printable(*home, ATLS_NAME_META_MAX)))
    {
        api_error(r, 400, "body: field \"home\" must be a string of at most %d "
                  "printable bytes", ATLS_NAME_META_MAX);
        free(*home);
        *home = NULL;
        goto done;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

static void
api_put(atls_store_t *st, atls_events_t *ev, const char *name, const char *body,
        size_t len, const char *by, time_t now, api_reply_t *r)
{
    atls_name_entry_t e;
    const char       *one[1];
    char              err[512], *home = NULL;
    unsigned char     added = 0;
    int               was_active;

    if (api_put_body(body, len, &home, r) != 0) {
        return;
    }
    /* whether this call registered it, decided under the registry's lock:
     * two clients putting one name at once make one event */
    one[0] = name;
    if (atls_names_add_many(st, one, 1, home, "api", by, now, &added, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        atls_log(ATLS_LOG_ERR, "autotls api: %s", err);
        api_error(r, 500, "name \"%s\" could not be registered (see the server's log)",
                  name);
        free(home);
        return;
    }
    was_active = !added;
    if (added) {
        atls_names_emit(ev, 1, name, home, "api", by, now);
    }
    free(home);
    if (atls_names_get(st, name, &e, err, sizeof(err)) != ATLS_STORE_OK) {
        api_error(r, 500, "name \"%s\" could not be read back", name);
        return;
    }
    r->status = was_active ? 200 : 201;
    r->body = api_entry_json(st, &e);
    atls_name_entry_free(&e);
}

static void
api_delete(atls_store_t *st, atls_events_t *ev, const char *name, const char *by,
           time_t now, api_reply_t *r)
{
    atls_name_entry_t e;
    char              err[512];
    int               rc;

    rc = atls_names_get(st, name, &e, err, sizeof(err));
    if (rc == ATLS_STORE_NOTFOUND) {
        api_error(r, 404, "name \"%s\" is not registered", name);
        return;
    }
    if (rc == ATLS_STORE_OK && e.state == ATLS_NAME_ACTIVE) {
        rc = atls_names_remove(st, name, now, err, sizeof(err));
        if (rc == ATLS_STORE_OK) {
            atls_names_emit(ev, 0, name, e.home, e.source, by, now);
        }
    }
    atls_name_entry_free(&e);
    if (rc != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_ERR, "autotls api: %s", err);
        api_error(r, 500, "name \"%s\" could not be removed (see the server's log)", name);
        return;
    }
    r->status = 204;
}

static void
api_get_one(atls_store_t *st, const char *name, api_reply_t *r)
{
    atls_name_entry_t e;
    char              err[512];
    int               rc;

    rc = atls_names_get(st, name, &e, err, sizeof(err));
    if (rc == ATLS_STORE_NOTFOUND) {
        api_error(r, 404, "name \"%s\" is not registered", name);
        return;
    }
    if (rc != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_ERR, "autotls api: %s", err);
        api_error(r, 500, "name \"%s\" could not be read (see the server's log)", name);
        return;
    }
    r->status = 200;
    r->body = api_entry_json(st, &e);
    atls_name_entry_free(&e);
}

static void
api_route(atls_store_t *st, atls_events_t *ev, const char *method, const char *path,
          const char *query, const char *body, size_t body_len, const char *by,
          time_t now, api_reply_t *r)
{
    const char *rest;
    char        name[256];

    if (path == NULL || strncmp(path, API_PREFIX, sizeof(API_PREFIX) - 1) != 0
        || (path[sizeof(API_PREFIX) - 1] != '\0' && path[sizeof(API_PREFIX) - 1] != '/'))
    {
        api_error(r, 404, "no such resource (the API serves /names and /names/NAME)");
        return;
    }
    rest = path + sizeof(API_PREFIX) - 1;
    if (*rest == '/') {
        rest++;
    }
    if (*rest == '\0') {
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
            api_error(r, 405, "method %.16s not allowed on /names (GET)", method);
            return;
        }
        api_list(st, query, r);
        return;
    }
    if (api_name(rest, name, sizeof(name), r) != 0) {
        return;
    }
    if (strcmp(method, "PUT") == 0) {
        api_put(st, ev, name, body, body_len, by, now, r);
    } else if (strcmp(method, "DELETE") == 0) {
        api_delete(st, ev, name, by, now, r);
    } else if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
        api_get_one(st, name, r);
    } else {
        api_error(r, 405, "method %.16s not allowed on /names/NAME (GET, PUT, DELETE)",
                  method);
    }
}

int
atls_names_api(atls_store_t *st, atls_events_t *ev, const char *method, const char *path,
               const char *query, const char *body, size_t body_len, const char *by,
               time_t now, int *status, char **out, size_t *out_len)
{
    api_reply_t r = { 500, NULL };

    *out = NULL;
    *out_len = 0;
    api_route(st, ev, method != NULL ? method : "", path, query, body, body_len,
              by != NULL ? by : "api", now, &r);
    *status = r.status;
    if (r.body != NULL) {
        *out = json_dumps(r.body, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(r.body);
    } else if (r.status == 204) {
        return 0;
    }
    if (*out == NULL) {
        /* out of memory on the way: still a JSON error */
        *status = 500;
        *out = atls_strdup("{\"error\":\"out of memory\"}");
    }
    *out_len = strlen(*out);
    return *status == 500 ? -1 : 0;
}

/* ---- the bearer token ---------------------------------------------------------- */

/* The token file's one line, with the store's care: a regular file, not a
 * link, bounded, readable by no one but its owner and group. */
static int
api_token_read(const char *file, char *buf, size_t buflen)
{
    struct stat sb;
    ssize_t     n;
    size_t      got = 0;
    int         fd;

    fd = open(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        atls_log(ATLS_LOG_ERR, "autotls api: token file %s: %s", file, strerror(errno));
        return -1;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        atls_log(ATLS_LOG_ERR, "autotls api: token file %s: not a regular file", file);
        goto fail;
    }
    if ((sb.st_mode & S_IROTH) != 0 || (sb.st_mode & (S_IWOTH | S_IWGRP)) != 0) {
        atls_log(ATLS_LOG_ERR, "autotls api: token file %s: refused, readable or writable "
                 "by others (chmod 0600 or 0640)", file);
        goto fail;
    }
    if (sb.st_size <= 0 || (size_t) sb.st_size >= buflen) {
        atls_log(ATLS_LOG_ERR, "autotls api: token file %s: empty or longer than %zu bytes",
                 file, buflen - 1);
        goto fail;
    }
    while (got < (size_t) sb.st_size) {
        n = read(fd, buf + got, (size_t) sb.st_size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            atls_log(ATLS_LOG_ERR, "autotls api: token file %s: short read", file);
            goto fail;
        }
        got += (size_t) n;
    }
    close(fd);
    buf[got] = '\0';
    got = strcspn(buf, "\r\n");       /* the first line, without trailing blanks */
    while (got > 0 && (buf[got - 1] == ' ' || buf[got - 1] == '\t')) {
        got--;
    }
    buf[got] = '\0';
    if (buf[0] == '\0') {
        atls_log(ATLS_LOG_ERR, "autotls api: token file %s: no token on its first line",
                 file);
        return -1;
    }
    return 0;
fail:
    close(fd);
    return -1;
}

int
atls_api_token_ok(const char *token_file, const char *authorization)
{
    char          token[API_TOKEN_MAX + 1];
    unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
    const char   *given;
    int           ok;

    if (token_file == NULL || api_token_read(token_file, token, sizeof(token)) != 0) {
        return 0;
    }
    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0) {
        OPENSSL_cleanse(token, sizeof(token));
        return 0;
    }
    given = authorization + 7;
    while (*given == ' ') {
        given++;
    }
    /* digests of both, compared in constant time: neither the token's
     * bytes nor its length show in the time taken */
    SHA256((const unsigned char *) token, strlen(token), want);
    SHA256((const unsigned char *) given, strlen(given), got);
    ok = CRYPTO_memcmp(want, got, sizeof(want)) == 0;
    OPENSSL_cleanse(token, sizeof(token));
    return ok;
}
