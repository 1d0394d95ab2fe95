/*
 * The store entries of the event model: the audit log (audit.log and its
 * rotated predecessors), the notification queue (events/<key>.json), the
 * counters behind the metrics (counters.json) and the server's
 * notification settings (notify.json).  Backend-agnostic, over the ops.
 *
 * Queue keys come back from the store (a listing the worker can plant
 * names in) and from the notifier: each one is checked against its exact
 * syntax before it becomes part of a path.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <jansson.h>
#include "atls_store.h"
#include "store_int.h"

#define AUDIT_FILE        "audit.log"
#define QUEUE_DIR         "events"
#define QUEUE_SUFFIX      ".json"
#define COUNTERS_FILE     "counters.json"
#define COUNTERS_LOCK     "counters"
#define NOTIFY_FILE       "notify.json"
/* "<16 digits>-<8 hex>" */
#define QUEUE_KEY_LEN     25
/* One record is one event: far below this.  A bigger one is a caller's bug
 * and would make the log hard to read back. */
#define AUDIT_RECORD_MAX  (64 * 1024)
#define COUNTER_NAME_MAX  128

/* ---- audit ------------------------------------------------------------------ */

int
atls_store_audit_append(atls_store_t *st, const char *json, size_t len,
                        char *err, size_t errlen)
{
    if (st->ops->append == NULL) {
        snprintf(err, errlen, "store %s (%s): cannot append to its audit log",
                 st->location ? st->location : "", st->ops->name);
        return ATLS_STORE_ERROR;
    }
    if (json == NULL || len == 0 || len > AUDIT_RECORD_MAX
        || memchr(json, '\n', len) != NULL || memchr(json, '\0', len) != NULL)
    {
        atls_store_err_path(st, AUDIT_FILE, err, errlen,
                            "record refused (empty, too large, or not one line)");
        return ATLS_STORE_ERROR;
    }
    return st->ops->append(st, AUDIT_FILE, json, len, ATLS_AUDIT_ROTATE_BYTES,
                           ATLS_AUDIT_KEEP, err, errlen);
}

int
atls_store_audit_append_many(atls_store_t *st, const char *const *recs, const size_t *lens,
                             size_t n, char *err, size_t errlen)
{
    size_t i;
    int    rc = ATLS_STORE_OK;

    if (st->ops->append_many == NULL) {
        /* a backend without batches: one append a record, as before */
        for (i = 0; i < n && rc == ATLS_STORE_OK; i++) {
            rc = atls_store_audit_append(st, recs[i], lens[i], err, errlen);
        }
        return rc;
    }
    for (i = 0; i < n; i++) {
        if (recs[i] == NULL || lens[i] == 0 || lens[i] > AUDIT_RECORD_MAX
            || memchr(recs[i], '\n', lens[i]) != NULL || memchr(recs[i], '\0', lens[i]) != NULL)
        {
            atls_store_err_path(st, AUDIT_FILE, err, errlen,
                                "record refused (empty, too large, or not one line)");
            return ATLS_STORE_ERROR;
        }
    }
    return st->ops->append_many(st, AUDIT_FILE, recs, lens, n, ATLS_AUDIT_ROTATE_BYTES,
                                ATLS_AUDIT_KEEP, err, errlen);
}

int
atls_store_audit_read(atls_store_t *st, unsigned n, char **data, size_t *len,
                      char *err, size_t errlen)
{
    char path[64];

    if (n == 0) {
        snprintf(path, sizeof(path), "%s", AUDIT_FILE);
    } else {
        snprintf(path, sizeof(path), "%s.%u", AUDIT_FILE, n);
    }
    return st->ops->get(st, path, data, len, err, errlen);
}

/* ---- the queue ------------------------------------------------------------- */

static int
queue_key_ok(const char *key)
{
    size_t i;

    if (key == NULL || strlen(key) != QUEUE_KEY_LEN || key[16] != '-') {
        return 0;
    }
    for (i = 0; i < 16; i++) {
        if (!isdigit((unsigned char) key[i])) {
            return 0;
        }
    }
    for (i = 17; i < QUEUE_KEY_LEN; i++) {
        if (!isdigit((unsigned char) key[i]) && !(key[i] >= 'a' && key[i] <= 'f')) {
            return 0;
        }
    }
    return 1;
}

/* events/<key>.json, or NULL + err when key does not pass. */
static char *
queue_path(const char *key, char *err, size_t errlen)
{
    if (!queue_key_ok(key)) {
        snprintf(err, errlen, "invalid notification queue key \"%.64s\"",
                 key ? key : "(null)");
        return NULL;
    }
    return atls_store_cat(QUEUE_DIR "/", key, QUEUE_SUFFIX, NULL);
}

int
atls_store_queue_list(atls_store_t *st, char ***keys, size_t *n, char *err, size_t errlen)
{
    char  **names = NULL;
    size_t  cnt = 0, i, k = 0, sl = strlen(QUEUE_SUFFIX), nl;
    int     rc;

    *keys = NULL;
    *n = 0;
    rc = st->ops->list(st, QUEUE_DIR, &names, &cnt, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    /* keep only "<key>.json", in place; the listing is sorted, and so are
     * the keys (fixed width, time first) */
    for (i = 0; i < cnt; i++) {
        nl = strlen(names[i]);
        if (nl == QUEUE_KEY_LEN + sl && strcmp(names[i] + QUEUE_KEY_LEN, QUEUE_SUFFIX) == 0) {
            names[i][QUEUE_KEY_LEN] = '\0';
            if (queue_key_ok(names[i])) {
                names[k++] = names[i];
                continue;
            }
        }
        free(names[i]);
    }
    if (k == 0) {
        free(names);
        return ATLS_STORE_OK;
    }
    *keys = names;
    *n = k;
    return ATLS_STORE_OK;
}

/*
 * A key sorts as its entry was made: the millisecond, made strictly
 * increasing within this process (entries put in one millisecond, as a
 * batch's runs are, take the next ones), so that delivery, oldest key
 * first, keeps their order; the random part keeps two processes' keys
 * apart.
 */
static void
queue_new_key(char *buf, size_t len)
{
    static uint64_t  last;
    struct timeval   tv;
    uint64_t         ms, prev;

    gettimeofday(&tv, NULL);
    ms = (uint64_t) tv.tv_sec * 1000 + (uint64_t) tv.tv_usec / 1000;
    prev = __atomic_load_n(&last, __ATOMIC_RELAXED);
    do {
        if (ms <= prev) {
            ms = prev + 1;
        }
    } while (!__atomic_compare_exchange_n(&last, &prev, ms, 0, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    snprintf(buf, len, "%016" PRIu64 "-%08" PRIx32, (uint64_t) (ms % 10000000000000000ULL),
             (uint32_t) atls_random_u64());
}

int
atls_store_queue_put(atls_store_t *st, const char *json, size_t len, size_t max,
                     char **key, char *err, size_t errlen)
{
    char   **keys = NULL, k[QUEUE_KEY_LEN + 8], *path;
    size_t   n = 0;
    int      rc;

    if (key != NULL) {
        *key = NULL;
    }
    if (max == 0) {
        max = ATLS_NOTIFY_QUEUE_MAX;
    }
    rc = atls_store_queue_list(st, &keys, &n, err, errlen);
    atls_strv_free(keys, n);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    if (n >= max) {
        snprintf(err, errlen, "%s/%s: the notification queue is full (%zu entries, "
                 "its bound is %zu)", st->location ? st->location : "", QUEUE_DIR, n, max);
        return ATLS_STORE_FULL;
    }
    queue_new_key(k, sizeof(k));
    path = atls_store_cat(QUEUE_DIR "/", k, QUEUE_SUFFIX, NULL);
    /* private: an entry names certificates and operators, like the log */
    rc = st->ops->put(st, path, json, len, 1, err, errlen);
    free(path);
    if (rc == ATLS_STORE_OK && key != NULL) {
        *key = atls_strdup(k);
    }
    return rc;
}

int
atls_store_queue_get(atls_store_t *st, const char *key, char **json, size_t *len,
                     char *err, size_t errlen)
{
    char *path = queue_path(key, err, errlen);
    int   rc;

    *json = NULL;
    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = st->ops->get(st, path, json, len, err, errlen);
    free(path);
    return rc;
}

int
atls_store_queue_update(atls_store_t *st, const char *key, const char *json, size_t len,
                        char *err, size_t errlen)
{
    char *path = queue_path(key, err, errlen);
    int   rc;

    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = st->ops->put(st, path, json, len, 1, err, errlen);
    free(path);
    return rc;
}

int
atls_store_queue_del(atls_store_t *st, const char *key, char *err, size_t errlen)
{
    char *path = queue_path(key, err, errlen);
    int   rc;

    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = st->ops->del(st, path, err, errlen);
    free(path);
    return rc;
}

/* ---- counters --------------------------------------------------------------- */

static int
counter_name_ok(const char *name)
{
    const char *p;

    if (name == NULL || *name == '\0' || strlen(name) > COUNTER_NAME_MAX) {
        return 0;
    }
    for (p = name; *p != '\0'; p++) {
        if (!isalnum((unsigned char) *p) && strchr("._-", *p) == NULL) {
            return 0;
        }
    }
    return 1;
}

/* counters.json as an object; a missing file is an empty one.  -1 + err
 * when it cannot be read or is not an object of non-negative integers. */
static int
counters_read(atls_store_t *st, json_t **out, char *err, size_t errlen)
{
    char         *data = NULL;
    size_t        len = 0;
    json_t       *root, *v;
    json_error_t  je;
    const char   *k;
    int           rc;

    *out = NULL;
    rc = st->ops->get(st, COUNTERS_FILE, &data, &len, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        *out = json_object();
        return *out != NULL ? 0 : -1;
    }
    if (rc != ATLS_STORE_OK) {
        return -1;
    }
    root = json_loadb(data, len, 0, &je);
    free(data);
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        atls_store_err_path(st, COUNTERS_FILE, err, errlen, "not a JSON object");
        return -1;
    }
    json_object_foreach(root, k, v) {
        if (!counter_name_ok(k) || !json_is_integer(v) || json_integer_value(v) < 0) {
            json_decref(root);
            atls_store_err_path(st, COUNTERS_FILE, err, errlen,
                                "a counter is not a non-negative integer");
            return -1;
        }
    }
    *out = root;
    return 0;
}

int
atls_store_counters_add(atls_store_t *st, const char *const *names, const uint64_t *by,
                        size_t n, char *err, size_t errlen)
{
    atls_store_lock_t *lk = NULL;
    json_t            *root = NULL;
    json_int_t         cur;
    char              *text = NULL, why[256];
    size_t             i;
    int                rc;

    for (i = 0; i < n; i++) {
        if (!counter_name_ok(names[i])) {
            snprintf(err, errlen, "invalid counter name \"%.64s\"",
                     names[i] ? names[i] : "(null)");
            return ATLS_STORE_ERROR;
        }
    }
    rc = st->ops->lock(st, COUNTERS_LOCK, 1, &lk, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return ATLS_STORE_ERROR;
    }
    if (counters_read(st, &root, why, sizeof(why)) != 0) {
        /* metrics only: a broken file starts over rather than stopping
         * every count for good; said once per broken file */
        atls_log(ATLS_LOG_WARN, "store: %s; the counters start over", why);
        root = json_object();
    }
    rc = ATLS_STORE_ERROR;
    if (root == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (i = 0; i < n; i++) {
        cur = json_integer_value(json_object_get(root, names[i]));
        /* saturating: a counter never wraps to a smaller value */
        cur = (uint64_t) (INT64_MAX - cur) < by[i] ? INT64_MAX : cur + (json_int_t) by[i];
        if (json_object_set_new(root, names[i], json_integer(cur)) != 0) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (text == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = st->ops->put(st, COUNTERS_FILE, text, strlen(text), 0, err, errlen);

out:
    free(text);
    json_decref(root);
    st->ops->unlock(st, lk);
    return rc;
}

int
atls_store_counter_add(atls_store_t *st, const char *name, uint64_t by,
                       char *err, size_t errlen)
{
    return atls_store_counters_add(st, &name, &by, 1, err, errlen);
}

static int
counters_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

int
atls_store_counters_load(atls_store_t *st, char ***names, uint64_t **values,
                         size_t *n, char *err, size_t errlen)
{
    json_t     *root = NULL, *v;
    const char *k;
    size_t      i = 0, cnt;

    *names = NULL;
    *values = NULL;
    *n = 0;
    if (counters_read(st, &root, err, errlen) != 0) {
        return ATLS_STORE_ERROR;
    }
    cnt = json_object_size(root);
    if (cnt > 0) {
        *names = calloc(cnt + 1, sizeof(**names));
        *values = calloc(cnt, sizeof(**values));
        if (*names == NULL || *values == NULL) {
            abort();
        }
        json_object_foreach(root, k, v) {
            (*names)[i++] = atls_strdup(k);
        }
        qsort(*names, cnt, sizeof(**names), counters_cmp);
        for (i = 0; i < cnt; i++) {
            (*values)[i] = (uint64_t) json_integer_value(json_object_get(root, (*names)[i]));
        }
    }
    *n = cnt;
    json_decref(root);
    return ATLS_STORE_OK;
}

/* ---- notify.json ---------------------------------------------------------- */

int
atls_store_save_notify_conf(atls_store_t *st, const atls_notify_conf_t *c,
                            char *err, size_t errlen)
{
    char *json;
    int   rc;

    json = atls_notify_conf_to_json(c);
    if (json == NULL) {
        snprintf(err, errlen, "out of memory");
        return ATLS_STORE_ERROR;
    }
    /* private: webhook headers may carry a token */
    rc = st->ops->put(st, NOTIFY_FILE, json, strlen(json), 1, err, errlen);
    free(json);
    return rc;
}

int
atls_store_load_notify_conf(atls_store_t *st, atls_notify_conf_t *c,
                            char *err, size_t errlen)
{
    char   *data = NULL, why[512];
    size_t  len = 0;
    int     rc;

    memset(c, 0, sizeof(*c));
    rc = st->ops->get(st, NOTIFY_FILE, &data, &len, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    if (atls_notify_conf_from_json(data, len, c, why, sizeof(why)) != 0) {
        atls_store_err_path(st, NOTIFY_FILE, err, errlen, why);
        rc = ATLS_STORE_ERROR;
    }
    free(data);
    return rc;
}
