/*
 * Where Redis is: `redis://[user:password@]host[:port][/db]` (rediss:// for
 * TLS) and the option words after it (`tls ca_file=F key_file=F prefix=P`,
 * and for hosts `mirror=DIR node=ID`).
 * The same text comes from nginx, Apache and the CLI, so one parser; every
 * error names the part that is wrong and never repeats the password.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_redis.h"

#define URL_MAX 2048

static int
url_fail(char *err, size_t errlen, const char *field, const char *why)
{
    snprintf(err, errlen, "redis %s: %s", field, why);
    return -1;
}

static int
hexval(int ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    ch = tolower(ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* len bytes of s, %XX decoded, as a new string; NULL on a bad escape or
 * an encoded NUL. */
static char *
pct_decode(const char *s, size_t len)
{
    char  *out = malloc(len + 1);
    size_t i, o = 0;

    if (out == NULL) {
        abort();
    }
    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < len ? hexval((unsigned char) s[i + 1]) : -1;
            int lo = i + 2 < len ? hexval((unsigned char) s[i + 2]) : -1;

            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);   /* a bad escape, or an encoded NUL */
                return NULL;
            }
            out[o++] = (char) (hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* "[user]:password@" or "password@" (a password alone is how Redis before
 * ACLs is used). */
static int
url_userinfo(const char *s, size_t len, atls_redis_conf_t *c, char *err, size_t errlen)
{
    const char *colon = memchr(s, ':', len);

    if (colon == NULL) {
        /* redis://user@host has no password: nothing to AUTH with */
        return url_fail(err, errlen, "URL user", "a user needs a password (user:password@)");
    }
    if (colon > s) {
        c->user = pct_decode(s, (size_t) (colon - s));
        if (c->user == NULL) {
            return url_fail(err, errlen, "URL user", "bad %-escape");
        }
        for (const char *u = c->user; *u != '\0'; u++) {
            /* the user name is shown in messages: printable ASCII only */
            if (!isgraph((unsigned char) *u)) {
                return url_fail(err, errlen, "URL user", "printable ASCII only");
            }
        }
    }
    c->password = pct_decode(colon + 1, len - (size_t) (colon + 1 - s));
    if (c->password == NULL || c->password[0] == '\0') {
        return url_fail(err, errlen, "URL password", c->password == NULL
                        ? "bad %-escape" : "empty");
    }
    return 0;
}

static int
host_char_ok(int ch)
{
    return isalnum(ch) || ch == '.' || ch == '-' || ch == '_';
}

/* host, [v6]:port, host:port */
static int
url_hostport(const char *s, size_t len, atls_redis_conf_t *c, char *err, size_t errlen)
{
    const char *end = s + len, *h = s, *hend, *p = NULL;
    size_t      i;

    if (len > 0 && *s == '[') {
        hend = memchr(s, ']', len);
        if (hend == NULL) {
            return url_fail(err, errlen, "URL host", "'[' without ']'");
        }
        h = s + 1;
        if (hend + 1 < end) {
            if (hend[1] != ':') {
                return url_fail(err, errlen, "URL host", "garbage after ']'");
            }
            p = hend + 2;
        }
        for (i = 0; h + i < hend; i++) {
            if (!isxdigit((unsigned char) h[i]) && h[i] != ':' && h[i] != '.') {
                return url_fail(err, errlen, "URL host", "not an IPv6 literal");
            }
        }
    } else {
        hend = memchr(s, ':', len);
        if (hend == NULL) {
            hend = end;
        } else {
            p = hend + 1;
        }
        for (i = 0; h + i < hend; i++) {
            if (!host_char_ok((unsigned char) h[i])) {
                return url_fail(err, errlen, "URL host", "invalid character");
            }
        }
    }
    if (hend == h) {
        return url_fail(err, errlen, "URL host", "missing");
    }
    c->host = strndup(h, (size_t) (hend - h));
    if (c->host == NULL) {
        abort();
    }
    c->port = ATLS_REDIS_DEFAULT_PORT;
    if (p != NULL) {
        long v = 0;

        if (p == end || end - p > 5) {
            return url_fail(err, errlen, "URL port", "not a number 1..65535");
        }
        for (; p < end; p++) {
            if (!isdigit((unsigned char) *p)) {
                return url_fail(err, errlen, "URL port", "not a number 1..65535");
            }
            v = v * 10 + (*p - '0');
        }
        if (v < 1 || v > 65535) {
            return url_fail(err, errlen, "URL port", "not a number 1..65535");
        }
        c->port = (int) v;
    }
    return 0;
}

static int
url_db(const char *s, atls_redis_conf_t *c, char *err, size_t errlen)
{
    size_t i, n = strlen(s);

    if (n == 0) {
        return 0;   /* "redis://host/" */
    }
    if (n > 9) {
        return url_fail(err, errlen, "URL db", "not a number 0..999999999");
    }
    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char) s[i])) {
            return url_fail(err, errlen, "URL db", "not a number 0..999999999");
        }
    }
    c->db = strtol(s, NULL, 10);
    return 0;
}

static int
url_parse(const char *url, atls_redis_conf_t *c, char *err, size_t errlen)
{
    const char *rest, *at, *slash, *auth_end;
    size_t      n;

    if (url == NULL || strlen(url) > URL_MAX) {
        return url_fail(err, errlen, "URL", url == NULL ? "missing" : "too long");
    }
    if (strncmp(url, "redis://", 8) == 0) {
        rest = url + 8;
    } else if (strncmp(url, "rediss://", 9) == 0) {
        rest = url + 9;
        c->tls = 1;
    } else {
        return url_fail(err, errlen, "URL scheme", "must be redis:// or rediss://");
    }
    for (n = 0; rest[n] != '\0'; n++) {
        if ((unsigned char) rest[n] <= ' ' || rest[n] == 0x7f) {
            return url_fail(err, errlen, "URL", "blank or control character");
        }
    }
    slash = strchr(rest, '/');
    auth_end = slash ? slash : rest + strlen(rest);
    /* the last '@' before the path: a password may hold an unescaped '@' */
    at = NULL;
    for (const char *p = rest; p < auth_end; p++) {
        if (*p == '@') {
            at = p;
        }
    }
    if (at != NULL) {
        if (url_userinfo(rest, (size_t) (at - rest), c, err, errlen) != 0) {
            return -1;
        }
        rest = at + 1;
    }
    if (url_hostport(rest, (size_t) (auth_end - rest), c, err, errlen) != 0) {
        return -1;
    }
    return slash ? url_db(slash + 1, c, err, errlen) : 0;
}

static int
opt_path(const char *v, const char *name, char **out, char *err, size_t errlen)
{
    char field[32];

    snprintf(field, sizeof(field), "option %s", name);
    if (*out != NULL) {
        return url_fail(err, errlen, field, "given twice");
    }
    if (*v == '\0') {
        return url_fail(err, errlen, field, "empty file name");
    }
    *out = strdup(v);
    if (*out == NULL) {
        abort();
    }
    return 0;
}

/* A word that goes into keys or log lines: 1..max printable ASCII
 * characters; a prefix also refuses '{' and '}' (they would break the
 * hash tags).  The node's id goes into the member registry and ack sets,
 * and into the log lines of every other node. */
static int
opt_word(const char *v, const char *name, size_t max, const char *banned, char **out,
         char *err, size_t errlen)
{
    char   field[32], why[64];
    size_t i, n = strlen(v);

    snprintf(field, sizeof(field), "option %s", name);
    if (*out != NULL) {
        return url_fail(err, errlen, field, "given twice");
    }
    if (n == 0 || n > max) {
        snprintf(why, sizeof(why), "1 to %zu characters", max);
        return url_fail(err, errlen, field, why);
    }
    for (i = 0; i < n; i++) {
        if (!isgraph((unsigned char) v[i]) || strchr(banned, v[i]) != NULL) {
            return url_fail(err, errlen, field, banned[0] != '\0'
                            ? "printable characters only, no '{' or '}'"
                            : "printable ASCII only, no blank");
        }
    }
    *out = strdup(v);
    if (*out == NULL) {
        abort();
    }
    return 0;
}

/* The mirror is a directory the host creates and hands to its workers:
 * an absolute name without control characters or "." / ".." components,
 * so the same text means the same directory whatever the host's cwd. */
static int
opt_mirror(const char *v, atls_redis_conf_t *c, char *err, size_t errlen)
{
    const char *p, *seg;
    size_t      n = strlen(v);

    if (c->mirror_dir != NULL) {
        return url_fail(err, errlen, "option mirror", "given twice");
    }
    if (v[0] != '/') {
        return url_fail(err, errlen, "option mirror", "must be an absolute directory name");
    }
    if (n >= PATH_MAX) {
        return url_fail(err, errlen, "option mirror", "directory name too long");
    }
    for (p = v; *p != '\0'; p++) {
        if ((unsigned char) *p < 0x20 || *p == 0x7f) {
            return url_fail(err, errlen, "option mirror", "control character in the name");
        }
    }
    for (seg = v + 1; *seg != '\0'; seg = p + (*p == '/')) {
        size_t len;

        p = strchr(seg, '/');
        if (p == NULL) {
            p = seg + strlen(seg);
        }
        len = (size_t) (p - seg);
        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.')) {
            return url_fail(err, errlen, "option mirror", "\".\" or \"..\" in the name");
        }
    }
    c->mirror_dir = strdup(v);
    if (c->mirror_dir == NULL) {
        abort();
    }
    return 0;
}

/* Milliseconds, digits only: what a blocking call may wait on a server
 * that does not answer (nginx: on a serving worker's event loop). */
static int
opt_timeout(const char *v, atls_redis_conf_t *c, char *err, size_t errlen)
{
    char *end;
    long  ms;

    if (c->timeout_ms != 0) {
        return url_fail(err, errlen, "option timeout", "given twice");
    }
    errno = 0;
    ms = strtol(v, &end, 10);
    if (!isdigit((unsigned char) v[0]) || *end != '\0' || errno != 0
        || ms < ATLS_REDIS_TIMEOUT_MIN_MS || ms > ATLS_REDIS_TIMEOUT_MAX_MS)
    {
        char why[96];

        snprintf(why, sizeof(why), "milliseconds from %d to %d expected",
                 ATLS_REDIS_TIMEOUT_MIN_MS, ATLS_REDIS_TIMEOUT_MAX_MS);
        return url_fail(err, errlen, "option timeout", why);
    }
    c->timeout_ms = (int) ms;
    return 0;
}

static int
opt_parse(const char *o, atls_redis_conf_t *c, int *tls_opt, char *err, size_t errlen)
{
    if (strcmp(o, "tls") == 0) {
        if (*tls_opt) {
            return url_fail(err, errlen, "option tls", "given twice");
        }
        *tls_opt = 1;
        c->tls = 1;
        return 0;
    }
    if (strncmp(o, "ca_file=", 8) == 0) {
        return opt_path(o + 8, "ca_file", &c->ca_file, err, errlen);
    }
    if (strncmp(o, "key_file=", 9) == 0) {
        return opt_path(o + 9, "key_file", &c->key_file, err, errlen);
    }
    if (strncmp(o, "prefix=", 7) == 0) {
        return opt_word(o + 7, "prefix", ATLS_REDIS_PREFIX_MAX, "{}", &c->prefix, err, errlen);
    }
    if (strncmp(o, "mirror=", 7) == 0) {
        return opt_mirror(o + 7, c, err, errlen);
    }
    if (strncmp(o, "node=", 5) == 0) {
        return opt_word(o + 5, "node", ATLS_REDIS_NODE_MAX, "", &c->node_id, err, errlen);
    }
    if (strncmp(o, "timeout=", 8) == 0) {
        return opt_timeout(o + 8, c, err, errlen);
    }
    {
        char   shown[64];
        size_t i;

        /* the name only: an unknown word could be a misplaced secret */
        for (i = 0; i + 1 < sizeof(shown) && o[i] != '\0' && o[i] != '='; i++) {
            shown[i] = isgraph((unsigned char) o[i]) ? o[i] : '?';
        }
        shown[i] = '\0';
        snprintf(err, errlen, "redis option \"%s\": unknown (tls, ca_file=, key_file=, "
                 "prefix=, timeout=, mirror=, node=)",
                 shown);
    }
    return -1;
}

int
atls_redis_conf_parse(const char *url, char *const *opts, size_t n_opts,
                      atls_redis_conf_t *c, char *err, size_t errlen)
{
    size_t i;
    int    tls_opt = 0;

    memset(c, 0, sizeof(*c));
    if (url_parse(url, c, err, errlen) != 0) {
        goto failed;
    }
    for (i = 0; i < n_opts; i++) {
        if (opt_parse(opts[i], c, &tls_opt, err, errlen) != 0) {
            goto failed;
        }
    }
    if (c->ca_file != NULL && !c->tls) {
        url_fail(err, errlen, "option ca_file", "needs TLS (rediss:// or the tls option)");
        goto failed;
    }
    if (c->prefix == NULL) {
        c->prefix = strdup(ATLS_REDIS_DEFAULT_PREFIX);
        if (c->prefix == NULL) {
            abort();
        }
    }
    /* timeout_ms stays 0 when absent: the host's default */
    return 0;

failed:
    atls_redis_conf_free(c);
    return -1;
}

int
atls_redis_conf_parse_line(const char *line, atls_redis_conf_t *c, char *err, size_t errlen)
{
    char  *copy, *save = NULL, *w, *url, *words[8];
    size_t n = 0;
    int    rc = -1;

    memset(c, 0, sizeof(*c));
    if (line == NULL || strlen(line) > URL_MAX + 1024) {
        return url_fail(err, errlen, "store", line == NULL ? "missing" : "too long");
    }
    copy = strdup(line);
    if (copy == NULL) {
        abort();
    }
    url = strtok_r(copy, " \t", &save);
    while ((w = strtok_r(NULL, " \t", &save)) != NULL) {
        if (n == sizeof(words) / sizeof(words[0])) {
            url_fail(err, errlen, "options", "too many");
            goto done;
        }
        words[n++] = w;
    }
    rc = atls_redis_conf_parse(url, words, n, c, err, errlen);

done:
    /* the copy held the password */
    explicit_bzero(copy, strlen(line));
    free(copy);
    return rc;
}

static void
free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void
atls_redis_conf_free(atls_redis_conf_t *c)
{
    free(c->host);
    free(c->user);
    free_secret(c->password);
    free(c->ca_file);
    free(c->key_file);
    free(c->prefix);
    free(c->mirror_dir);
    free(c->node_id);
    memset(c, 0, sizeof(*c));
}

static char *
dup_or_null(const char *s)
{
    char *d;

    if (s == NULL) {
        return NULL;
    }
    d = strdup(s);
    if (d == NULL) {
        abort();
    }
    return d;
}

void
atls_redis_conf_copy(atls_redis_conf_t *d, const atls_redis_conf_t *s)
{
    *d = *s;
    d->host = dup_or_null(s->host);
    d->user = dup_or_null(s->user);
    d->password = dup_or_null(s->password);
    d->ca_file = dup_or_null(s->ca_file);
    d->key_file = dup_or_null(s->key_file);
    d->prefix = dup_or_null(s->prefix ? s->prefix : ATLS_REDIS_DEFAULT_PREFIX);
    d->mirror_dir = dup_or_null(s->mirror_dir);
    d->node_id = dup_or_null(s->node_id);
}

char *
atls_redis_conf_describe(const atls_redis_conf_t *c)
{
    char   buf[URL_MAX + 64];
    int    v6 = c->host != NULL && strchr(c->host, ':') != NULL;
    char  *s;

    snprintf(buf, sizeof(buf), "%s://%s%s%s%s%s:%d/%ld", c->tls ? "rediss" : "redis",
             c->user ? c->user : "", c->user ? "@" : "", v6 ? "[" : "",
             c->host ? c->host : "", v6 ? "]" : "", c->port, c->db);
    s = strdup(buf);
    if (s == NULL) {
        abort();
    }
    return s;
}
