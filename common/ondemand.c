/*
 * The on-demand gate (atls_ondemand.h): its settings and their JSON, the
 * order of checks a name from the network goes through, and the ask URL.
 *
 * Fail-safe by construction: anything not explicitly allowed (by a list,
 * or by a 2xx answer of the ask URL) is denied, and an ask URL that cannot
 * be reached denies new names only for ask_fail_cache_s.  Names with a
 * certificate never reach the gate (the hosts look at the registry
 * first), so the ask URL being down never stops a stored name.
 *
 * An instance is shared by the threads of an Apache child: every entry
 * point takes its mutex (uncontended: a few tens of nanoseconds).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <jansson.h>
#include "atls.h"
#include "atls_names.h"
#include "ondemand_int.h"
#include "store_int.h"

const char *
atls_od_verdict_name(atls_od_verdict_t v)
{
    switch (v) {
    case ATLS_OD_INVALID:
        return "invalid";
    case ATLS_OD_DENY:
        return "deny";
    case ATLS_OD_ALLOW:
        return "allow";
    case ATLS_OD_ASK:
        return "ask";
    case ATLS_OD_LIMITED:
        return "limited";
    }
    return "unknown";
}

/* ---- settings ------------------------------------------------------------------ */

void
atls_od_conf_free(atls_od_conf_t *c)
{
    if (c == NULL) {
        return;
    }
    atls_strv_free(c->deny, c->n_deny);
    atls_strv_free(c->allow, c->n_allow);
    free(c->allow_file);
    free(c->ask_url);
    memset(c, 0, sizeof(*c));
}

static void
od_conf_copy(atls_od_conf_t *d, const atls_od_conf_t *s)
{
    *d = *s;
    d->deny = s->n_deny > 0 ? atls_strv_dup(s->deny, s->n_deny) : NULL;
    d->allow = s->n_allow > 0 ? atls_strv_dup(s->allow, s->n_allow) : NULL;
    d->allow_file = atls_strdup(s->allow_file);
    d->ask_url = atls_strdup(s->ask_url);
}

/* The numeric settings: JSON key (= member and field name), where it is,
 * its upper bound. */
typedef struct {
    const char *key;
    size_t      off;
    long        max;
} od_num_t;

#define OD_NUM(m, max) { #m, offsetof(atls_od_conf_t, m), (max) }

static const od_num_t od_nums[] = {
    OD_NUM(ask_timeout_ms, 60000),
    OD_NUM(ask_cache_s, OD_SECONDS_MAX),
    OD_NUM(ask_fail_cache_s, OD_SECONDS_MAX),
    OD_NUM(cooldown_s, OD_SECONDS_MAX),
    OD_NUM(orders_per_min, OD_COUNT_MAX),
    OD_NUM(per_domain_week, OD_COUNT_MAX),
    OD_NUM(per_account_3h, OD_COUNT_MAX),
    OD_NUM(max_pending, 10000),
    OD_NUM(cache_entries, OD_COUNT_MAX),
    OD_NUM(wait_ms, 600000),
};

#define OD_NUM_AT(c, n) ((long *) ((char *) (c) + (n)->off))

/* http:// or https://, a host, no space, control byte or fragment. */
static int
od_check_url(const char *url, char *err, size_t errlen)
{
    const char *auth, *p;

    if (strncasecmp(url, "https://", 8) == 0) {
        auth = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        auth = url + 7;
    } else {
        return atls_meta_fail(err, errlen, "field \"ask_url\": not an http:// or "
                              "https:// URL");
    }
    for (p = url; *p != '\0'; p++) {
        if ((unsigned char) *p <= 0x20 || *p == 0x7f || *p == '#') {
            return atls_meta_fail(err, errlen, "field \"ask_url\": holds a space, a "
                                  "control character or a '#'");
        }
    }
    if (strlen(url) > OD_URL_MAX || *auth == '\0' || *auth == '/' || *auth == '?'
        || *auth == ':')
    {
        return atls_meta_fail(err, errlen, "field \"ask_url\": no host, or longer "
                              "than %d bytes", OD_URL_MAX);
    }
    return 0;
}

/* The rules for values, whoever set them (a host's directives, JSON). */
static int
od_conf_check(const atls_od_conf_t *c, char *err, size_t errlen)
{
    size_t i;

    for (i = 0; i < sizeof(od_nums) / sizeof(od_nums[0]); i++) {
        long v = *OD_NUM_AT(c, &od_nums[i]);

        if (v < 0 || v > od_nums[i].max) {
            return atls_meta_fail(err, errlen, "field \"%s\" must be between 0 and %ld",
                                  od_nums[i].key, od_nums[i].max);
        }
    }
    if (c->max_labels > OD_MAX_LABELS_MAX) {
        return atls_meta_fail(err, errlen, "field \"max_labels\" must be between 0 "
                              "and %d", OD_MAX_LABELS_MAX);
    }
    if (c->allow_file != NULL && c->allow_file[0] != '/') {
        return atls_meta_fail(err, errlen, "field \"allow_file\" must be an absolute "
                              "file name");
    }
    return c->ask_url != NULL ? od_check_url(c->ask_url, err, errlen) : 0;
}

static void
od_conf_defaults(atls_od_conf_t *c)
{
#define OD_DEFAULT(m, v) if (c->m == 0) { c->m = (v); }
    OD_DEFAULT(ask_timeout_ms, OD_ASK_TIMEOUT_MS);
    OD_DEFAULT(ask_cache_s, OD_ASK_CACHE_S);
    OD_DEFAULT(ask_fail_cache_s, OD_ASK_FAIL_CACHE_S);
    OD_DEFAULT(cooldown_s, OD_COOLDOWN_S);
    OD_DEFAULT(orders_per_min, OD_ORDERS_PER_MIN);
    OD_DEFAULT(per_domain_week, OD_PER_DOMAIN_WEEK);
    OD_DEFAULT(per_account_3h, OD_PER_ACCOUNT_3H);
    OD_DEFAULT(max_pending, OD_MAX_PENDING);
    OD_DEFAULT(cache_entries, OD_CACHE_ENTRIES);
    OD_DEFAULT(max_labels, OD_MAX_LABELS);
    OD_DEFAULT(wait_ms, OD_WAIT_MS);
#undef OD_DEFAULT
}

/* Every member; 0 (the default) and empty ones are left out. */
char *
atls_od_conf_to_json(const atls_od_conf_t *c)
{
    json_t *root = json_object();
    char   *out = NULL;
    size_t  i;
    int     rc = root == NULL ? -1 : 0;

    if (rc == 0 && c->n_deny > 0) {
        rc |= atls_meta_set(root, "deny", atls_meta_strv(c->deny, c->n_deny));
    }
    if (rc == 0 && c->n_allow > 0) {
        rc |= atls_meta_set(root, "allow", atls_meta_strv(c->allow, c->n_allow));
    }
    if (rc == 0) {
        rc |= atls_meta_set_str(root, "allow_file", c->allow_file);
        rc |= atls_meta_set_str(root, "ask_url", c->ask_url);
    }
    for (i = 0; rc == 0 && i < sizeof(od_nums) / sizeof(od_nums[0]); i++) {
        long v = *OD_NUM_AT(c, &od_nums[i]);

        if (v != 0) {
            rc |= atls_meta_set(root, od_nums[i].key, json_integer(v));
        }
    }
    if (rc == 0 && c->allow_ip) {
        rc |= atls_meta_set(root, "allow_ip", json_true());
    }
    if (rc == 0 && c->max_labels != 0) {
        rc |= atls_meta_set(root, "max_labels", json_integer(c->max_labels));
    }
    if (rc == 0) {
        out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    }
    json_decref(root);
    return out;
}

static int
od_conf_known(json_t *root, char *err, size_t errlen)
{
    static const char *const other[] = {
        "deny", "allow", "allow_file", "ask_url", "allow_ip", "max_labels"
    };
    const char *key;
    json_t     *v;
    size_t      i;

    json_object_foreach(root, key, v) {
        int known = 0;

        for (i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
            known |= strcmp(key, other[i]) == 0;
        }
        for (i = 0; i < sizeof(od_nums) / sizeof(od_nums[0]); i++) {
            known |= strcmp(key, od_nums[i].key) == 0;
        }
        if (!known) {
            char shown[96];

            return atls_meta_fail(err, errlen, "unknown field \"%s\"",
                                  atls_log_escape(key, shown, sizeof(shown)));
        }
    }
    return 0;
}

int
atls_od_conf_from_json(const char *json, size_t len, atls_od_conf_t *c, char *err,
                       size_t errlen)
{
    json_t       *root;
    json_error_t  je;
    long long     x;
    size_t        i;
    int           rc = -1;

    memset(c, 0, sizeof(*c));
    root = json_loadb(json, len, 0, &je);
    if (root == NULL || !json_is_object(root)) {
        atls_meta_fail(err, errlen, "not a JSON object (%s)", root ? "" : je.text);
        goto out;
    }
    if (od_conf_known(root, err, errlen) != 0
        || atls_meta_get_strv(root, "deny", "deny", 0, &c->deny, &c->n_deny, err,
                              errlen) != 0
        || atls_meta_get_strv(root, "allow", "allow", 0, &c->allow, &c->n_allow, err,
                              errlen) != 0
        || atls_meta_get_str(root, "allow_file", "allow_file", &c->allow_file, err,
                             errlen) != 0
        || atls_meta_get_str(root, "ask_url", "ask_url", &c->ask_url, err, errlen) != 0
        || atls_meta_get_bool(root, "allow_ip", "allow_ip", &c->allow_ip, err,
                              errlen) != 0
        || atls_meta_get_int(root, "max_labels", "max_labels", 0, OD_MAX_LABELS_MAX, &x,
                             err, errlen) != 0)
    {
        goto out;
    }
    c->max_labels = (unsigned) x;
    for (i = 0; i < sizeof(od_nums) / sizeof(od_nums[0]); i++) {
        if (atls_meta_get_int(root, od_nums[i].key, od_nums[i].key, 0, od_nums[i].max,
                              &x, err, errlen) != 0)
        {
            goto out;
        }
        *OD_NUM_AT(c, &od_nums[i]) = (long) x;
    }
    rc = od_conf_check(c, err, errlen);

out:
    if (rc != 0) {
        atls_od_conf_free(c);
    }
    json_decref(root);
    return rc;
}

/* ---- the gate's life ------------------------------------------------------------- */

static int
od_compile(od_patterns_t **out, char *const *v, size_t n, const char *field, char *err,
           size_t errlen)
{
    size_t i;

    *out = od_patterns_new();
    if (*out == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (od_patterns_add(*out, v[i], field, err, errlen) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Reads allow_file when it changed since the last look (at most once a
 * second): a list a provider's panel rewrites takes effect with no reload.
 * A file that cannot be read or parsed now keeps the list read before
 * (logged); a file that is gone is an empty list. */
static void
od_file_refresh(atls_od_t *od, time_t now)
{
    struct stat    sb;
    od_patterns_t *p;
    char           err[512];

    if (od->conf.allow_file == NULL || now == od->file_checked) {
        return;
    }
    od->file_checked = now;
    if (stat(od->conf.allow_file, &sb) != 0) {
        if (errno == ENOENT && od->file_ino != 0) {
            atls_log(ATLS_LOG_WARN, "autotls: on-demand allow file %s is gone: its names "
                     "are no longer allowed", od->conf.allow_file);
            od_patterns_free(od->file);
            od->file = NULL;
            memset(&od->file_mtime, 0, sizeof(od->file_mtime));
            od->file_size = 0;
            od->file_ino = 0;
        }
        return;
    }
    if (sb.st_ino == od->file_ino && sb.st_size == od->file_size
        && sb.st_mtim.tv_sec == od->file_mtime.tv_sec
        && sb.st_mtim.tv_nsec == od->file_mtime.tv_nsec)
    {
        return;
    }
    od->file_mtime = sb.st_mtim;
    od->file_size = sb.st_size;
    od->file_ino = sb.st_ino;
    p = od_patterns_read_file(od->conf.allow_file, err, sizeof(err));
    if (p == NULL) {
        atls_log(ATLS_LOG_ERR, "autotls: on-demand allow file: %s (the list read before "
                 "stays in use)", err);
        return;
    }
    od_patterns_free(od->file);
    od->file = p;
    atls_log(ATLS_LOG_INFO, "autotls: on-demand allow file %s read: %zu patterns",
             od->conf.allow_file, od_patterns_count(p));
}

atls_od_t *
atls_od_new(const atls_od_conf_t *c, atls_store_t *st, char *err, size_t errlen)
{
    atls_od_t *od = calloc(1, sizeof(*od));

    if (od == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&od->lock, NULL);
    od_conf_copy(&od->conf, c);
    if (od_conf_check(&od->conf, err, errlen) != 0
        || od_compile(&od->deny, od->conf.deny, od->conf.n_deny, "deny", err, errlen) != 0
        || od_compile(&od->allow, od->conf.allow, od->conf.n_allow, "allow", err,
                      errlen) != 0)
    {
        goto failed;
    }
    od_conf_defaults(&od->conf);
    if (od->conf.allow_file != NULL) {
        /* read now, so that a broken file is a configuration error; its
         * stamps first, so that a change while it is read is seen later */
        struct stat sb;

        if (stat(od->conf.allow_file, &sb) == 0) {
            od->file_mtime = sb.st_mtim;
            od->file_size = sb.st_size;
            od->file_ino = sb.st_ino;
        }
        od->file = od_patterns_read_file(od->conf.allow_file, err, errlen);
        if (od->file == NULL) {
            goto failed;
        }
    }
    od->verdicts = od_cache_new((size_t) od->conf.cache_entries);
    od->budget = od_budget_new(&od->conf, st);
    if (od->verdicts == NULL || od->budget == NULL) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }
    return od;

failed:
    atls_od_free(od);
    return NULL;
}

void
atls_od_free(atls_od_t *od)
{
    if (od == NULL) {
        return;
    }
    od_patterns_free(od->deny);
    od_patterns_free(od->allow);
    od_patterns_free(od->file);
    od_cache_free(od->verdicts);
    od_budget_free(od->budget);
    atls_od_conf_free(&od->conf);
    pthread_mutex_destroy(&od->lock);
    free(od);
}

const atls_od_conf_t *
atls_od_conf(const atls_od_t *od)
{
    return &od->conf;
}

void
atls_od_set_requests(atls_od_t *od, atls_store_t *st)
{
    od->requests = st;
}

atls_store_t *
atls_od_requests(const atls_od_t *od)
{
    return od->requests;
}

/* ---- the checks ------------------------------------------------------------------ */

/* The why of a cached answer of the ask URL (aux: its HTTP status). */
static void
od_why_answer(long status, int cached, char *why, size_t whylen)
{
    const char *c = cached ? " (cached)" : "";

    if (status == 0) {
        snprintf(why, whylen, "the ask URL could not be reached%s", c);
    } else {
        snprintf(why, whylen, "the ask URL answered HTTP %ld%s", status, c);
    }
}

static atls_od_verdict_t
od_check_locked(atls_od_t *od, const char *raw, size_t len, time_t now, char *name,
                char *why, size_t whylen)
{
    char   w[160];
    time_t until;
    int    v;
    long   status;

    if (atls_name_check(raw, len, od->conf.allow_ip, od->conf.max_labels, name,
                        OD_NAME_MAX + 1, w, sizeof(w)) != 0)
    {
        name[0] = '\0';
        snprintf(why, whylen, "not a name to order: %s", w);
        return ATLS_OD_INVALID;
    }
    od_name_fold_ip(name);
    if (od_patterns_match(od->deny, name)) {
        snprintf(why, whylen, "on the deny list");
        return ATLS_OD_DENY;
    }
    until = od_budget_cooldown(od->budget, name, now);
    if (until > now) {
        snprintf(why, whylen, "its last order failed: cooldown for %ld s more",
                 (long) (until - now));
        return ATLS_OD_LIMITED;
    }
    if (od_cache_get(od->verdicts, name, now, &v, &status)) {
        od_why_answer(status, 1, why, whylen);
        return (atls_od_verdict_t) v;
    }
    if (od_patterns_match(od->allow, name)) {
        snprintf(why, whylen, "on the allow list");
        return ATLS_OD_ALLOW;
    }
    od_file_refresh(od, now);
    if (od_patterns_match(od->file, name)) {
        snprintf(why, whylen, "in the allow file");
        return ATLS_OD_ALLOW;
    }
    if (od->conf.ask_url != NULL) {
        snprintf(why, whylen, "no cached answer: the ask URL decides");
        return ATLS_OD_ASK;
    }
    snprintf(why, whylen, "no allow rule covers it (default deny)");
    return ATLS_OD_DENY;
}

atls_od_verdict_t
atls_od_check(atls_od_t *od, const char *raw, size_t len, time_t now, char *name_out,
              char *why, size_t whylen)
{
    atls_od_verdict_t v;

    pthread_mutex_lock(&od->lock);
    v = od_check_locked(od, raw, len, now, name_out, why, whylen);
    pthread_mutex_unlock(&od->lock);
    return v;
}

/* ---- the ask URL ------------------------------------------------------------------- */

int
atls_od_ask_request(const atls_od_t *od, const char *name, atls_http_request_t *req,
                    atls_http_opts_t *opts)
{
    static const char hex[] = "0123456789ABCDEF";
    const char       *url = od->conf.ask_url;
    size_t            ulen, nlen, i, k;
    char             *out;

    memset(req, 0, sizeof(*req));
    memset(opts, 0, sizeof(*opts));
    if (url == NULL || name == NULL) {
        return -1;
    }
    ulen = strlen(url);
    nlen = strlen(name);
    out = malloc(ulen + sizeof("?domain=") + 3 * nlen);
    if (out == NULL) {
        return -1;
    }
    memcpy(out, url, ulen);
    k = ulen;
    if (strchr(url, '?') == NULL) {
        out[k++] = '?';
    } else if (url[ulen - 1] != '?' && url[ulen - 1] != '&') {
        out[k++] = '&';
    }
    memcpy(out + k, "domain=", 7);
    k += 7;
    /* every byte but RFC 3986's unreserved ones escaped (IPv6 colons too) */
    for (i = 0; i < nlen; i++) {
        unsigned char ch = (unsigned char) name[i];

        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
            || ch == '-' || ch == '.' || ch == '_' || ch == '~')
        {
            out[k++] = (char) ch;
        } else {
            out[k++] = '%';
            out[k++] = hex[ch >> 4];
            out[k++] = hex[ch & 15];
        }
    }
    out[k] = '\0';
    req->method = "GET";
    req->url = out;
    opts->connect_timeout_ms = od->conf.ask_timeout_ms;
    opts->total_timeout_ms = od->conf.ask_timeout_ms;
    opts->max_response = 16 * 1024;
    return 0;
}

long
od_answer_ttl(const atls_od_conf_t *c, long status)
{
    /* a definite answer is kept; a failure only briefly, so that the name
     * is tried again soon */
    if ((status >= 200 && status <= 299)
        || (status >= 400 && status <= 499 && status != 408 && status != 429))
    {
        return c->ask_cache_s;
    }
    return c->ask_fail_cache_s;
}

atls_od_verdict_t
atls_od_ask_done(atls_od_t *od, const char *name, const atls_http_response_t *resp,
                 time_t now, char *why, size_t whylen)
{
    long              status = resp == NULL || resp->transport_error ? 0 : resp->status;
    atls_od_verdict_t v = status >= 200 && status <= 299 ? ATLS_OD_ALLOW : ATLS_OD_DENY;
    long              ttl;

    ttl = od_answer_ttl(&od->conf, status);
    od_why_answer(status, 0, why, whylen);
    if (status == 0 && resp != NULL && resp->error[0] != '\0') {
        size_t n = strlen(why);

        snprintf(why + n, whylen - n, ": %s", resp->error);
    }
    if (name == NULL || strlen(name) > OD_NAME_MAX) {
        return ATLS_OD_DENY;
    }
    pthread_mutex_lock(&od->lock);
    if (od_cache_put(od->verdicts, name, (int) v, status, now + ttl) != 0) {
        atls_log(ATLS_LOG_ERR, "autotls: on-demand: out of memory caching an answer");
    }
    pthread_mutex_unlock(&od->lock);
    return v;
}

/* ---- abuse limits -------------------------------------------------------------------- */

int
atls_od_budget_take(atls_od_t *od, const char *name, const char *directory, time_t now,
                    char *why, size_t whylen, time_t *retry_at)
{
    int rc;

    pthread_mutex_lock(&od->lock);
    rc = od_budget_take(od->budget, name, directory, now, why, whylen, retry_at);
    pthread_mutex_unlock(&od->lock);
    return rc;
}

void
atls_od_failed(atls_od_t *od, const char *name, time_t now)
{
    pthread_mutex_lock(&od->lock);
    od_budget_failed(od->budget, name, now);
    pthread_mutex_unlock(&od->lock);
}
