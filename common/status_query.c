/*
 * The status page's query: which certificates a rendering shows
 * (?name=, ?state=) and which page of them (?limit=, ?offset=).  At
 * 100,000 certificates a page reads the metas and leaves of its own
 * certificates only, unless a filter must look at every meta (never a
 * leaf) to know which match.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_inventory.h"
#include "atls_status.h"
#include "status_int.h"

/* ---- parsing ------------------------------------------------------------------ */

static int
hex_val(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The value of p..p+len %-decoded ('+' is a space) into out; -1 when it
 * does not fit or holds a bad escape or a NUL. */
static int
query_decode(const char *p, size_t len, char *out, size_t outlen)
{
    size_t i, k = 0;

    for (i = 0; i < len; i++) {
        int c = (unsigned char) p[i];

        if (c == '%') {
            if (i + 2 >= len) {
                return -1;
            }
            if (hex_val(p[i + 1]) < 0 || hex_val(p[i + 2]) < 0) {
                return -1;
            }
            c = hex_val(p[i + 1]) * 16 + hex_val(p[i + 2]);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == '\0' || k + 1 >= outlen) {
            return -1;
        }
        out[k++] = (char) c;
    }
    out[k] = '\0';
    return 0;
}

static int
query_number(const char *v, unsigned long long lo, unsigned long long hi, size_t *out)
{
    unsigned long long n;
    char              *end;

    if (!isdigit((unsigned char) v[0]) || strlen(v) > 12) {
        return -1;
    }
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < lo || n > hi) {
        return -1;
    }
    *out = (size_t) n;
    return 0;
}

/* A host name, a wildcard name or an IP literal, lower-cased. */
static int
query_name(char *v)
{
    char *p;

    if (v[0] == '\0' || strlen(v) > 253) {
        return -1;
    }
    for (p = v; *p != '\0'; p++) {
        *p = (char) tolower((unsigned char) *p);
        if (!isalnum((unsigned char) *p) && *p != '.' && *p != '-' && *p != '*'
            && *p != ':' && *p != '_')
        {
            return -1;
        }
    }
    return 0;
}

static const char *const query_states[] = {
    "pending", "valid", "renewing", "failed", "replacing"
};

static int
query_state(const char *v)
{
    size_t i;

    for (i = 0; i < sizeof(query_states) / sizeof(query_states[0]); i++) {
        if (strcmp(v, query_states[i]) == 0) {
            return 0;
        }
    }
    return -1;
}

/* One parameter; 0 when it is not the status page's (format=, ...). */
static int
query_param(atls_status_query_t *q, const char *key, size_t klen, const char *v,
            char *err, size_t errlen)
{
#define QUERY_KEY(k) (klen == sizeof(k) - 1 && memcmp(key, k, klen) == 0)
    if (QUERY_KEY("name")) {
        if (strlen(v) >= sizeof(q->name) || query_name(strcpy(q->name, v)) != 0) {
            snprintf(err, errlen, "name: not a host name");
            return -1;
        }
    } else if (QUERY_KEY("state")) {
        if (query_state(v) != 0) {
            snprintf(err, errlen, "state: not one of pending, valid, renewing, failed, "
                     "replacing");
            return -1;
        }
        memcpy(q->state, v, strlen(v) + 1);     /* one of the names above */
    } else if (QUERY_KEY("limit")) {
        if (query_number(v, 1, ATLS_STATUS_LIMIT_MAX, &q->limit) != 0) {
            snprintf(err, errlen, "limit: not a number from 1 to %d", ATLS_STATUS_LIMIT_MAX);
            return -1;
        }
    } else if (QUERY_KEY("offset")) {
        if (query_number(v, 0, 1000000000ULL, &q->offset) != 0) {
            snprintf(err, errlen, "offset: not a number from 0 to 1000000000");
            return -1;
        }
    }
    return 0;
#undef QUERY_KEY
}

int
atls_status_query_parse(const char *args, size_t len, size_t limit_default,
                        atls_status_query_t *q, char *err, size_t errlen)
{
    const char *p, *end, *amp, *eq;
    char        v[300];

    memset(q, 0, sizeof(*q));
    q->limit = limit_default;
    if (args == NULL) {
        return 0;
    }
    for (p = args, end = args + len; p < end; p = amp + 1) {
        amp = memchr(p, '&', (size_t) (end - p));
        if (amp == NULL) {
            amp = end;
        }
        eq = memchr(p, '=', (size_t) (amp - p));
        if (eq == NULL) {
            eq = amp;
        }
        if (query_decode(eq < amp ? eq + 1 : eq, eq < amp ? (size_t) (amp - eq - 1) : 0, v,
                         sizeof(v)) != 0)
        {
            snprintf(err, errlen, "%.*s: not a valid value", (int) (eq - p > 32 ? 32 : eq - p),
                     p);
            return -1;
        }
        if (query_param(q, p, (size_t) (eq - p), v, err, errlen) != 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- selecting ---------------------------------------------------------------- */

static int
query_filters(const atls_status_query_t *q)
{
    return q != NULL && (q->name[0] != '\0' || q->state[0] != '\0');
}

/* 1 when c (its meta loaded, or not loadable) is one the query asks for. */
static int
query_match(const atls_status_query_t *q, const status_cert_t *c)
{
    if (!c->ok) {
        return q->state[0] == '\0' && q->name[0] == '\0';
    }
    if (q->state[0] != '\0' && strcmp(atls_status_state_name(c), q->state) != 0) {
        return 0;
    }
    if (q->name[0] != '\0'
        && !atls_name_covered((const char *const *) c->meta.names, c->meta.n_names, q->name))
    {
        return 0;
    }
    return 1;
}

/* The page of ids[0..n) q selects, their metas loaded (and their leaves,
 * by the caller); s->total the number of matches. */
void
atls_status_select(atls_store_t *st, status_t *s, char **ids, size_t n,
                   const atls_status_query_t *q)
{
    size_t offset = q != NULL ? q->offset : 0;
    size_t limit = q != NULL && q->limit > 0 ? q->limit : (size_t) -1;
    size_t i, matched = 0;

    s->n_all = n;
    for (i = 0; i < n; i++) {
        status_cert_t c;

        if (!query_filters(q)) {
            /* no filter: only the page's metas are read */
            matched = n;
            if (i < offset || i - offset >= limit) {
                continue;
            }
        }
        memset(&c, 0, sizeof(c));
        c.id = ids[i];
        atls_status_load_meta(st, &c);
        if (query_filters(q)) {
            if (!query_match(q, &c)) {
                atls_cert_meta_free(&c.meta);
                free(c.error);
                continue;
            }
            matched++;
            if (matched - 1 < offset || matched - 1 - offset >= limit) {
                atls_cert_meta_free(&c.meta);
                free(c.error);
                continue;
            }
        }
        ids[i] = NULL;
        s->certs[s->n++] = c;
    }
    s->total = matched;
}
