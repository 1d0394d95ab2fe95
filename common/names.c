/*
 * Names given by anyone (the CLI, the admin API, SNI, the Host header) and
 * the registry entry that holds one.  The check runs before a name is
 * stored, logged as a path or asked about, so that the registry never
 * holds a name an SNI value could not be, and nothing built from one
 * escapes its path component.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "atls.h"
#include "names_int.h"
#include "store_int.h"

#define NAME_MAX_BYTES    253
#define LABEL_MAX_BYTES   63
#define DEFAULT_LABELS    10

static const char *const name_state_names[] = { "active", "removed" };

const char *
atls_name_state_name(atls_name_state_t s)
{
    if ((int) s < 0 || (size_t) s >= sizeof(name_state_names) / sizeof(name_state_names[0])) {
        return NULL;
    }
    return name_state_names[s];
}

void
atls_name_entry_free(atls_name_entry_t *e)
{
    if (e == NULL) {
        return;
    }
    free(e->name);
    free(e->home);
    free(e->source);
    free(e->by);
    memset(e, 0, sizeof(*e));
}

void
atls_name_entries_free(atls_name_entry_t *v, size_t n)
{
    size_t i;

    for (i = 0; v != NULL && i < n; i++) {
        atls_name_entry_free(&v[i]);
    }
    free(v);
}

/* ---- the syntax of a name ------------------------------------------------ */

/* 1 when s (NUL-terminated) is an IPv4 or IPv6 literal: canon (at least
 * INET6_ADDRSTRLEN bytes) gets its one spelling, so that "::1" and
 * "0:0::1" are one name: RFC 5952 for IPv6 (lower case, the longest run of
 * zeros as "::", no leading zeros), dotted decimal for IPv4 (inet_pton
 * takes four decimal parts only, without leading zeros). */
static int
name_ip_canon(const char *s, char *canon, size_t len)
{
    unsigned char addr[16];
    int           af = strchr(s, ':') != NULL ? AF_INET6 : AF_INET;

    return inet_pton(af, s, addr) == 1 && inet_ntop(af, addr, canon, (socklen_t) len) != NULL;
}

/* Digits and dots only, four parts: what some resolvers would take for an
 * IPv4 address although inet_pton does not ("010.1.1.1": octal 8.1.1.1
 * to inet_aton, decimal 10.1.1.1 to others).  Refused as ambiguous. */
static int
name_ipv4_ambiguous(const char *s)
{
    size_t dots = 0;

    for (; *s != '\0'; s++) {
        if (*s == '.') {
            dots++;
        } else if (!(*s >= '0' && *s <= '9')) {
            return 0;
        }
    }
    return dots == 3;
}

static int
name_ldh(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* Labels of the folded name s: count, lengths, hyphens, an all-digit
 * top label (it could be taken for an address). */
static int
name_check_labels(const char *s, size_t len, unsigned max_labels, char *why, size_t whylen)
{
    size_t   i, start = 0;
    unsigned labels = 0;
    int      digits_only = 1;

    for (i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') {
            if (!(s[i] >= '0' && s[i] <= '9')) {
                digits_only = 0;
            }
            continue;
        }
        if (i == start) {
            return atls_meta_fail(why, whylen, "empty label");
        }
        if (i - start > LABEL_MAX_BYTES) {
            return atls_meta_fail(why, whylen, "label longer than %d bytes", LABEL_MAX_BYTES);
        }
        if (s[start] == '-' || s[i - 1] == '-') {
            return atls_meta_fail(why, whylen, "label \"%.*s\" starts or ends with '-'",
                             (int) (i - start), s + start);
        }
        if (++labels > max_labels) {
            return atls_meta_fail(why, whylen, "more than %u labels", max_labels);
        }
        if (i < len) {
            digits_only = 1;
        }
        start = i + 1;
    }
    if (labels < 2) {
        return atls_meta_fail(why, whylen, "a single label (a name needs at least two)");
    }
    if (digits_only) {
        return atls_meta_fail(why, whylen, "the last label is all digits");
    }
    return 0;
}

int
atls_name_check(const char *name, size_t len, int allow_ip, unsigned max_labels,
                char *out, size_t outlen, char *why, size_t whylen)
{
    char   buf[NAME_MAX_BYTES + 2], ip[INET6_ADDRSTRLEN];
    size_t i;

    if (outlen > 0) {
        out[0] = '\0';
    }
    if (name == NULL || len == 0) {
        return atls_meta_fail(why, whylen, "empty name");
    }
    if (len > 1 && name[len - 1] == '.') {
        len--;                      /* the root's dot: "example.com." */
    }
    if (len > NAME_MAX_BYTES) {
        return atls_meta_fail(why, whylen, "longer than %d bytes", NAME_MAX_BYTES);
    }
    if (outlen < len + 1 || outlen < NAME_MAX_BYTES + 1) {
        return atls_meta_fail(why, whylen, "no room for the name");
    }
    for (i = 0; i < len; i++) {
        char c = name[i];

        if (c >= 'A' && c <= 'Z') {
            c = (char) (c - 'A' + 'a');
        }
        if (c == '*') {
            return atls_meta_fail(why, whylen, "wildcard names are not accepted");
        }
        /* ':' only for an IPv6 literal, decided below */
        if (!name_ldh(c) && c != '.' && c != ':') {
            return atls_meta_fail(why, whylen, "character 0x%02x at offset %zu is not allowed "
                             "(letters, digits, '-' and '.'; IDN names as xn-- punycode)",
                             (unsigned) (unsigned char) c, i);
        }
        buf[i] = c;
    }
    buf[len] = '\0';
    if (name_ip_canon(buf, ip, sizeof(ip))) {
        if (!allow_ip) {
            return atls_meta_fail(why, whylen, "IP literals are not accepted");
        }
        memcpy(out, ip, strlen(ip) + 1);
        return 0;
    }
    if (name_ipv4_ambiguous(buf)) {
        return atls_meta_fail(why, whylen, "not an IPv4 address in dotted decimal (four "
                              "parts of 0-255 without leading zeros): ambiguous");
    }
    if (strchr(buf, ':') != NULL) {
        return atls_meta_fail(why, whylen, "character ':' is not allowed");
    }
    if (name_check_labels(buf, len, max_labels != 0 ? max_labels : DEFAULT_LABELS,
                          why, whylen) != 0)
    {
        return -1;
    }
    memcpy(out, buf, len + 1);
    return 0;
}

/* ---- a registry entry as JSON -------------------------------------------- */

json_t *
atls_name_entry_json(const atls_name_entry_t *e)
{
    json_t *o = json_object();
    int     rc = 0;

    if (o == NULL) {
        return NULL;
    }
    rc |= atls_meta_set_str(o, "name", e->name);
    rc |= atls_meta_set_str(o, "home", e->home != NULL && e->home[0] != '\0' ? e->home
                                                                              : NULL);
    rc |= atls_meta_set_str(o, "source", e->source);
    rc |= atls_meta_set_str(o, "state", atls_name_state_name(e->state));
    rc |= atls_meta_set_time(o, "added", e->added);
    rc |= atls_meta_set_time(o, "removed", e->removed);
    rc |= atls_meta_set_str(o, "by", e->by);
    if (rc != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *
atls_name_entry_to_json(const atls_name_entry_t *e)
{
    json_t *o = atls_name_entry_json(e);
    char   *s;

    if (o == NULL) {
        return NULL;
    }
    s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

/* An optional bounded string member with no control character. */
static int
name_entry_get_text(json_t *o, const char *key, char **out, char *err, size_t errlen)
{
    const char *p;

    if (atls_meta_get_str(o, key, key, out, err, errlen) != 0) {
        return -1;
    }
    if (*out == NULL) {
        return 0;
    }
    if (strlen(*out) > ATLS_NAME_META_MAX) {
        return atls_meta_fail(err, errlen, "field \"%s\" is longer than %d bytes", key,
                              ATLS_NAME_META_MAX);
    }
    for (p = *out; *p != '\0'; p++) {
        if ((unsigned char) *p < 0x20 || *p == 0x7f) {
            return atls_meta_fail(err, errlen, "field \"%s\" holds a control character",
                                  key);
        }
    }
    return 0;
}

static int
name_entry_get_name(json_t *o, atls_name_entry_t *e, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, "name");
    char    folded[NAME_MAX_BYTES + 1], why[160];

    if (v == NULL || json_is_null(v)) {
        return atls_meta_fail(err, errlen, "field \"name\" is missing");
    }
    if (!json_is_string(v)) {
        return atls_meta_fail(err, errlen, "field \"name\" must be a string");
    }
    if (atls_name_check(json_string_value(v), json_string_length(v), 1, 127, folded,
                        sizeof(folded), why, sizeof(why)) != 0)
    {
        return atls_meta_fail(err, errlen, "field \"name\": %s", why);
    }
    e->name = atls_strdup(folded);
    return 0;
}

static int
name_entry_get_state(json_t *o, atls_name_entry_t *e, char *err, size_t errlen)
{
    json_t     *v = json_object_get(o, "state");
    const char *s;
    size_t      i;

    if (v == NULL || !json_is_string(v)) {
        return atls_meta_fail(err, errlen, "field \"state\" must be \"active\" or \"removed\"");
    }
    s = json_string_value(v);
    for (i = 0; i < sizeof(name_state_names) / sizeof(name_state_names[0]); i++) {
        if (strcmp(s, name_state_names[i]) == 0) {
            e->state = (atls_name_state_t) i;
            return 0;
        }
    }
    return atls_meta_fail(err, errlen, "field \"state\" must be \"active\" or \"removed\"");
}

int
atls_name_entry_from_json(const char *json, size_t len, atls_name_entry_t *e,
                          char *err, size_t errlen)
{
    json_error_t jerr;
    json_t      *root;
    int          rc = -1;

    memset(e, 0, sizeof(*e));
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return atls_meta_fail(err, errlen, "not JSON (line %d: %s)", jerr.line, jerr.text);
    }
    if (!json_is_object(root)) {
        atls_meta_fail(err, errlen, "not a JSON object");
        goto done;
    }
    if (name_entry_get_name(root, e, err, errlen) != 0
        || name_entry_get_state(root, e, err, errlen) != 0
        || name_entry_get_text(root, "home", &e->home, err, errlen) != 0
        || name_entry_get_text(root, "source", &e->source, err, errlen) != 0
        || name_entry_get_text(root, "by", &e->by, err, errlen) != 0
        || atls_meta_get_time(root, "added", &e->added, err, errlen) != 0
        || atls_meta_get_time(root, "removed", &e->removed, err, errlen) != 0)
    {
        goto done;
    }
    if (e->state == ATLS_NAME_REMOVED && e->removed == 0) {
        atls_meta_fail(err, errlen, "field \"removed\" is missing for a removed name");
        goto done;
    }
    rc = 0;
done:
    json_decref(root);
    if (rc != 0) {
        atls_name_entry_free(e);
    }
    return rc;
}

/* ---- the audit trail ------------------------------------------------------- */

#define EMIT_DETAIL_MAX 512

/* A registry change's events, built one name at a time, emitted together:
 * one audit append and one counters rewrite for the batch, queue entries
 * of at most ATLS_NOTIFY_BATCH_MAX events (atls_events_emit_many). */
typedef struct {
    atls_event_t  *e;
    char         (*detail)[EMIT_DETAIL_MAX];
    size_t         n;
} emit_batch_t;

static void
emit_batch_init(emit_batch_t *b, size_t cap)
{
    b->e = calloc(cap + 1, sizeof(*b->e));
    b->detail = calloc(cap + 1, sizeof(*b->detail));
    b->n = 0;
    if (b->e == NULL || b->detail == NULL) {
        abort();
    }
}

/* name is borrowed until emit_batch_send. */
static void
emit_batch_push(emit_batch_t *b, int added, const char *const *name, const char *home,
                const char *source, const char *by, time_t now)
{
    atls_event_t *e = &b->e[b->n];
    int           has_home = home != NULL && home[0] != '\0';

    snprintf(b->detail[b->n], EMIT_DETAIL_MAX, "%s by %s%s%s",
             added ? "registered" : "removed", by != NULL ? by : "unknown",
             has_home ? " for home " : "", has_home ? home : "");
    e->type = added ? ATLS_EV_NAME_ADDED : ATLS_EV_NAME_REMOVED;
    e->time = now;
    e->cert_id = atls_cert_id(*name);
    e->names = name;
    e->n_names = 1;
    e->source = source;
    e->detail = b->detail[b->n];
    e->reason = -1;
    b->n++;
}

static void
emit_batch_send(atls_events_t *ev, emit_batch_t *b)
{
    size_t i;

    (void) atls_events_emit_many(ev, b->e, b->n);
    for (i = 0; i < b->n; i++) {
        free((char *) b->e[i].cert_id);
    }
    free(b->e);
    free(b->detail);
}

void
atls_names_emit_many(atls_events_t *ev, int added, const char *const *names, size_t n,
                     const char *home, const char *source, const char *by, time_t now)
{
    emit_batch_t b;
    size_t       i;

    if (ev == NULL || names == NULL || n == 0) {
        return;
    }
    emit_batch_init(&b, n);
    for (i = 0; i < n; i++) {
        if (names[i] != NULL) {
            emit_batch_push(&b, added, &names[i], home, source, by, now);
        }
    }
    emit_batch_send(ev, &b);
}

void
atls_names_emit(atls_events_t *ev, int added, const char *name, const char *home,
                const char *source, const char *by, time_t now)
{
    atls_names_emit_many(ev, added, &name, 1, home, source, by, now);
}

void
atls_names_emit_removed(atls_events_t *ev, const atls_name_entry_t *was,
                        const unsigned char *removed, size_t n, const char *by, time_t now)
{
    emit_batch_t b;
    size_t       i;

    if (ev == NULL || was == NULL || removed == NULL || n == 0) {
        return;
    }
    emit_batch_init(&b, n);
    for (i = 0; i < n; i++) {
        if (removed[i] == ATLS_NAMES_REMOVED_NOW && was[i].name != NULL) {
            emit_batch_push(&b, 0, (const char *const *) &was[i].name, was[i].home,
                            was[i].source, by, now);
        }
    }
    emit_batch_send(ev, &b);
}
