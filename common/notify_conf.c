/*
 * Notification settings: the one set of rules every host applies after
 * parsing its directives, and the JSON saved in the store (notify.json)
 * so that the CLI queues for the same sinks.  Header values may carry a
 * token: no message here ever quotes one, only the header's name.
 */
#define _GNU_SOURCE     /* memrchr */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>
#include "atls_event.h"
#include "store_int.h"

void
atls_notify_conf_free(atls_notify_conf_t *c)
{
    if (c == NULL) {
        return;
    }
    free(c->exec);
    free(c->webhook);
    atls_strv_free(c->headers, c->n_headers);
    memset(c, 0, sizeof(*c));
}

void
atls_notify_conf_copy(atls_notify_conf_t *d, const atls_notify_conf_t *s)
{
    *d = *s;
    d->exec = atls_strdup(s->exec);
    d->webhook = atls_strdup(s->webhook);
    d->headers = NULL;
    d->n_headers = 0;
    if (s->headers != NULL && s->n_headers > 0) {
        d->headers = atls_strv_dup(s->headers, s->n_headers);
        d->n_headers = s->n_headers;
    }
}

int
atls_notify_conf_has_sinks(const atls_notify_conf_t *c)
{
    return c != NULL && (c->exec != NULL || c->webhook != NULL);
}

/* ---- check ------------------------------------------------------------------ */

static int
notify_has_ctl(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char) *s < 0x20 || *s == 0x7f) {
            return 1;
        }
    }
    return 0;
}

/* http:// or https:// with a host, no control character or space. */
static int
notify_check_webhook(const char *url, char *err, size_t errlen)
{
    const char *auth, *end, *at, *host;
    char        shown[ATLS_LOG_ESCAPE_MAX];
    size_t      n;

    if (strncasecmp(url, "https://", 8) == 0) {
        auth = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        auth = url + 7;
    } else {
        return atls_meta_fail(err, errlen, "webhook \"%.200s\": not an http:// or "
                              "https:// URL", atls_notify_url_shown(url, shown,
                                                                    sizeof(shown)));
    }
    if (notify_has_ctl(url) || strchr(url, ' ') != NULL) {
        return atls_meta_fail(err, errlen, "webhook URL holds a space or a control "
                              "character");
    }
    n = strcspn(auth, "/?#");
    end = auth + n;
    /* userinfo (user:password@) is allowed; the host after it is required */
    at = memchr(auth, '@', n);
    host = at != NULL ? at + 1 : auth;
    if (host == end || *host == ':') {
        return atls_meta_fail(err, errlen, "webhook \"%.200s\": no host",
                              atls_notify_url_shown(url, shown, sizeof(shown)));
    }
    return 0;
}

/* RFC 9110 tchar */
static int
notify_tchar(int c)
{
    return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int
notify_check_header(const char *h, size_t i, char *err, size_t errlen)
{
    const char *colon = strchr(h, ':');
    const char *p;

    if (colon == NULL || colon == h) {
        return atls_meta_fail(err, errlen, "webhook header %zu: not \"Name: value\"",
                              i + 1);
    }
    for (p = h; p < colon; p++) {
        if (!notify_tchar((unsigned char) *p)) {
            return atls_meta_fail(err, errlen, "webhook header %zu: \"%.*s\" is not a "
                                  "valid header name", i + 1,
                                  (int) (colon - h > 64 ? 64 : colon - h), h);
        }
    }
    /* the value is never quoted: it may be a token */
    for (p = colon + 1; *p != '\0'; p++) {
        if (*p == '\r' || *p == '\n' || ((unsigned char) *p < 0x20 && *p != '\t')
            || *p == 0x7f)
        {
            return atls_meta_fail(err, errlen, "webhook header %zu (%.*s): the value "
                                  "holds a line break or a control character", i + 1,
                                  (int) (colon - h > 64 ? 64 : colon - h), h);
        }
    }
    return 0;
}

static int
notify_check_warn(const atls_warn_t *w, char *err, size_t errlen)
{
    size_t i;

    if (w->n > ATLS_WARN_MAX) {
        return atls_meta_fail(err, errlen, "%zu alert levels, at most %d", w->n,
                              ATLS_WARN_MAX);
    }
    for (i = 0; i < w->n; i++) {
        if (w->level[i] <= 0 || (i > 0 && w->level[i] >= w->level[i - 1])) {
            return atls_meta_fail(err, errlen, "alert level %zu (%ld s): levels must be "
                                  "positive and strictly descending", i + 1,
                                  w->level[i]);
        }
    }
    return 0;
}

int
atls_notify_conf_check(const atls_notify_conf_t *c, char *err, size_t errlen)
{
    size_t i;

    if (notify_check_warn(&c->warn, err, errlen) != 0) {
        return -1;
    }
    if (c->exec != NULL && (c->exec[0] != '/' || notify_has_ctl(c->exec))) {
        return atls_meta_fail(err, errlen, "notify command \"%.200s\": must be an absolute "
                              "path without control characters", c->exec);
    }
    if (c->exec_timeout_s < 0) {
        return atls_meta_fail(err, errlen, "notify command timeout %ld: must not be "
                              "negative", c->exec_timeout_s);
    }
    if (c->webhook != NULL && notify_check_webhook(c->webhook, err, errlen) != 0) {
        return -1;
    }
    if (c->n_headers > 0 && c->webhook == NULL) {
        return atls_meta_fail(err, errlen, "webhook headers given without a webhook URL");
    }
    if (c->n_headers > ATLS_NOTIFY_MAX_HEADERS) {
        return atls_meta_fail(err, errlen, "%zu webhook headers, at most %d", c->n_headers,
                              ATLS_NOTIFY_MAX_HEADERS);
    }
    for (i = 0; i < c->n_headers; i++) {
        if (c->headers[i] == NULL
            || notify_check_header(c->headers[i], i, err, errlen) != 0)
        {
            return c->headers[i] == NULL
                   ? atls_meta_fail(err, errlen, "webhook header %zu missing", i + 1) : -1;
        }
    }
    return 0;
}

char *
atls_notify_url_shown(const char *url, char *buf, size_t len)
{
    const char *scheme = strstr(url, "://");
    const char *auth = scheme != NULL ? scheme + 3 : url;
    const char *at = memrchr(auth, '@', strcspn(auth, "/?#"));
    const char *rest = at != NULL ? at + 1 : auth;
    size_t      head = (size_t) (auth - url), tail = strcspn(rest, "?#");
    char       *s = malloc(head + tail + 1);

    if (s == NULL) {
        snprintf(buf, len, "(webhook)");
        return buf;
    }
    memcpy(s, url, head);
    memcpy(s + head, rest, tail);
    s[head + tail] = '\0';
    atls_log_escape(s, buf, len);
    free(s);
    return buf;
}

/* ---- JSON ------------------------------------------------------------------- */

/* {"warn":["21d",...],"exec":"/path","exec_timeout":30,
 *  "webhook":"https://...","headers":["Name: value"],"queue_max":10000};
 * members at their default are left out. */
char *
atls_notify_conf_to_json(const atls_notify_conf_t *c)
{
    json_t *root = json_object(), *warn;
    char    buf[32], *out = NULL;
    size_t  i;
    int     rc = root == NULL ? -1 : 0;

    if (rc == 0 && c->warn.n > 0) {
        warn = json_array();
        rc |= atls_meta_set(root, "warn", warn);
        for (i = 0; rc == 0 && i < c->warn.n && i < ATLS_WARN_MAX; i++) {
            atls_duration_format(c->warn.level[i], buf, sizeof(buf));
            rc |= json_array_append_new(warn, json_string(buf));
        }
    }
    if (rc == 0) {
        rc |= atls_meta_set_str(root, "exec", c->exec);
        if (c->exec_timeout_s > 0) {
            rc |= atls_meta_set(root, "exec_timeout", json_integer(c->exec_timeout_s));
        }
        rc |= atls_meta_set_str(root, "webhook", c->webhook);
        if (c->n_headers > 0) {
            rc |= atls_meta_set(root, "headers", atls_meta_strv(c->headers, c->n_headers));
        }
        if (c->queue_max > 0) {
            rc |= atls_meta_set(root, "queue_max", json_integer((json_int_t) c->queue_max));
        }
    }
    if (rc == 0) {
        out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    }
    json_decref(root);
    return out;
}

static int
notify_warn_from_json(json_t *root, atls_warn_t *w, char *err, size_t errlen)
{
    char  **v = NULL;
    size_t  n = 0;
    int     rc;
    char    why[256];

    if (atls_meta_get_strv(root, "warn", "warn", 0, &v, &n, err, errlen) != 0) {
        return -1;
    }
    rc = 0;
    if (n > 0) {
        rc = atls_warn_parse((const char *const *) v, n, w, why, sizeof(why));
        if (rc != 0) {
            atls_meta_fail(err, errlen, "field \"warn\": %s", why);
        }
    }
    atls_strv_free(v, n);
    return rc;
}

int
atls_notify_conf_from_json(const char *json, size_t len, atls_notify_conf_t *c,
                           char *err, size_t errlen)
{
    json_t       *root;
    json_error_t  je;
    long long     x;
    int           rc = -1;
    char          why[256];

    memset(c, 0, sizeof(*c));
    root = json_loadb(json, len, 0, &je);
    if (root == NULL || !json_is_object(root)) {
        atls_meta_fail(err, errlen, "not a JSON object (%s)", root ? "" : je.text);
        goto out;
    }
    if (notify_warn_from_json(root, &c->warn, err, errlen) != 0
        || atls_meta_get_str(root, "exec", "exec", &c->exec, err, errlen) != 0
        || atls_meta_get_int(root, "exec_timeout", "exec_timeout", 0, 86400, &x,
                             err, errlen) != 0)
    {
        goto out;
    }
    c->exec_timeout_s = (long) x;
    if (atls_meta_get_str(root, "webhook", "webhook", &c->webhook, err, errlen) != 0
        || atls_meta_get_strv(root, "headers", "headers", 0, &c->headers, &c->n_headers,
                              err, errlen) != 0
        || atls_meta_get_int(root, "queue_max", "queue_max", 0, 100000000, &x,
                             err, errlen) != 0)
    {
        goto out;
    }
    c->queue_max = (size_t) x;
    /* the file is the worker's: the same rules as a configuration */
    if (atls_notify_conf_check(c, why, sizeof(why)) != 0) {
        atls_meta_fail(err, errlen, "%s", why);
        goto out;
    }
    rc = 0;

out:
    if (rc != 0) {
        atls_notify_conf_free(c);
    }
    json_decref(root);
    return rc;
}
