/*
 * The on-demand gate's abuse limits: a cooldown per name after a failed
 * order, a global cap on new orders per minute, and budgets that mirror a
 * CA's rate limits (Let's Encrypt: new orders per account per 3 hours,
 * certificates per registered domain per week), the registered domain
 * found with libpsl over Debian's public suffix list.
 *
 * The windows are kept in the store (ondemand/budget.json) and re-read
 * under the store lock "ondemand-budget" before each order is counted, so
 * a restart resets nothing and two servers sharing a store share their
 * budgets:
 *   {"minute": [t, ...], "accounts": {"<directory>": [t, ...]},
 *    "domains": {"<registered domain>": [t, ...]}, "cooldown": {"<name>": until}}
 * with the times of the orders in each window, oldest first.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <libpsl.h>
#include "atls.h"
#include "ondemand_int.h"
#include "store_int.h"

#define OD_BUDGET_PATH  "ondemand/budget.json"
#define OD_BUDGET_LOCK  "ondemand-budget"

struct od_budget_s {
    atls_store_t *st;
    json_t       *state;
    long          per_min, per_account, per_domain, cooldown_s;
};

/* ---- the registered domain ------------------------------------------------------ */

/* The list is read once per process and never changes afterwards. */
static pthread_once_t  od_psl_once = PTHREAD_ONCE_INIT;
static psl_ctx_t      *od_psl;

static void
od_psl_load(void)
{
    /* the newest of Debian's /usr/share/publicsuffix and the library's
     * built-in list */
    od_psl = psl_latest(NULL);
    if (od_psl == NULL) {
        od_psl = (psl_ctx_t *) psl_builtin();
    }
    if (od_psl == NULL) {
        atls_log(ATLS_LOG_WARN, "autotls: on-demand: no public suffix list (install "
                 "Debian's publicsuffix): budgets count each name as its own domain");
    }
}

int
atls_od_registered_domain(const char *name, char *out, size_t outlen)
{
    const char *reg = NULL;

    if (name == NULL || strlen(name) >= outlen) {
        return -1;
    }
    pthread_once(&od_psl_once, od_psl_load);
    if (od_psl != NULL && !atls_ident_is_ip(name)) {
        reg = psl_registrable_domain(od_psl, name);
    }
    snprintf(out, outlen, "%s", reg != NULL ? reg : name);
    return 0;
}

/* ---- the windows ------------------------------------------------------------------- */

/* How far in the future a recorded order may be: the clocks of the
 * servers sharing a store differ a little.  Beyond it a time was not
 * written by an order (the file is the worker's, or Redis's): kept, it
 * would fill a window until that time and stop every order. */
#define OD_CLOCK_SKEW_S  300

/* Times (integers) of arr after `after` and not beyond the skew past its
 * window's end, at most keep of the newest. */
static json_t *
od_times_prune(json_t *arr, time_t after, time_t window, long keep)
{
    json_int_t latest = (json_int_t) after + window + OD_CLOCK_SKEW_S;
    json_t *out = json_array(), *v;
    size_t  i, n = json_array_size(arr), first = 0;

    if (out == NULL) {
        return NULL;
    }
    if (keep > 0 && n > (size_t) keep) {
        first = n - (size_t) keep;
    }
    for (i = first; i < n; i++) {
        v = json_array_get(arr, i);
        if (json_is_integer(v) && json_integer_value(v) > after
            && json_integer_value(v) <= latest)
        {
            json_array_append(out, v);
        }
    }
    return out;
}

/* Each window of obj (name -> times) pruned; empty ones dropped. */
static json_t *
od_map_prune(json_t *obj, time_t after, time_t window, long keep)
{
    json_t     *out = json_object(), *v, *t;
    const char *key;

    if (out == NULL) {
        return NULL;
    }
    json_object_foreach(obj, key, v) {
        t = od_times_prune(v, after, window, keep);
        if (t != NULL && json_array_size(t) > 0) {
            json_object_set_new(out, key, t);
        } else {
            json_decref(t);
        }
    }
    return out;
}

/* The state with only what is still in its window at now, whatever shape
 * the file had (it is the worker's: anything else is dropped). */
static json_t *
od_state_prune(const od_budget_t *b, json_t *in, time_t now)
{
    json_t     *out = json_object(), *cool = json_object(), *v;
    const char *key;

    if (out == NULL || cool == NULL) {
        json_decref(out);
        json_decref(cool);
        return NULL;
    }
    json_object_set_new(out, "minute", od_times_prune(json_object_get(in, "minute"),
                                                      now - OD_WINDOW_MIN_S,
                                                      OD_WINDOW_MIN_S, b->per_min));
    json_object_set_new(out, "accounts", od_map_prune(json_object_get(in, "accounts"),
                                                      now - OD_WINDOW_ACCOUNT_S,
                                                      OD_WINDOW_ACCOUNT_S,
                                                      b->per_account));
    json_object_set_new(out, "domains", od_map_prune(json_object_get(in, "domains"),
                                                     now - OD_WINDOW_DOMAIN_S,
                                                     OD_WINDOW_DOMAIN_S, b->per_domain));
    json_object_foreach(json_object_get(in, "cooldown"), key, v) {
        if (json_is_integer(v) && json_integer_value(v) > now
            && json_integer_value(v) <= now + b->cooldown_s)
        {
            json_object_set(cool, key, v);
        }
    }
    json_object_set_new(out, "cooldown", cool);
    return out;
}

/* The store's windows replace the ones in memory; nothing there (or no
 * store) keeps them.  A file that is no JSON object is logged and ignored. */
static void
od_state_load(od_budget_t *b, time_t now)
{
    json_t       *root, *pruned;
    json_error_t  je;
    char         *data = NULL, err[512];
    size_t        len = 0;
    int           rc;

    if (b->st == NULL) {
        return;
    }
    rc = b->st->ops->get(b->st, OD_BUDGET_PATH, &data, &len, err, sizeof(err));
    if (rc != ATLS_STORE_OK) {
        if (rc != ATLS_STORE_NOTFOUND) {
            atls_log(ATLS_LOG_ERR, "autotls: on-demand budgets: %s", err);
        }
        return;
    }
    root = json_loadb(data, len, 0, &je);
    free(data);
    if (root == NULL || !json_is_object(root)) {
        atls_store_err_path(b->st, OD_BUDGET_PATH, err, sizeof(err),
                            "not a JSON object: ignored");
        atls_log(ATLS_LOG_ERR, "autotls: on-demand budgets: %s", err);
        json_decref(root);
        return;
    }
    pruned = od_state_prune(b, root, now);
    json_decref(root);
    if (pruned != NULL) {
        json_decref(b->state);
        b->state = pruned;
    }
}

/* What is in memory, pruned at now (and every window present). */
static void
od_state_fresh(od_budget_t *b, time_t now)
{
    json_t *pruned = od_state_prune(b, b->state, now);

    if (pruned != NULL) {
        json_decref(b->state);
        b->state = pruned;
    }
}

static void
od_state_save(od_budget_t *b)
{
    char *data;
    char  err[512];

    if (b->st == NULL) {
        return;
    }
    data = json_dumps(b->state, JSON_COMPACT);
    if (data == NULL
        || b->st->ops->put(b->st, OD_BUDGET_PATH, data, strlen(data), 0, err,
                           sizeof(err)) != ATLS_STORE_OK)
    {
        atls_log(ATLS_LOG_ERR, "autotls: on-demand budgets not saved: %s",
                 data == NULL ? "out of memory" : err);
    }
    free(data);
}

static atls_store_lock_t *
od_state_lock(od_budget_t *b)
{
    atls_store_lock_t *lk = NULL;
    char               err[256];

    if (b->st != NULL
        && b->st->ops->lock(b->st, OD_BUDGET_LOCK, 1, &lk, err, sizeof(err)) != ATLS_STORE_OK)
    {
        atls_log(ATLS_LOG_ERR, "autotls: on-demand budgets: %s", err);
        lk = NULL;
    }
    return lk;
}

/* The window's array under key of obj (created when missing). */
static json_t *
od_window(json_t *obj, const char *key)
{
    json_t *arr = json_object_get(obj, key);

    if (arr == NULL) {
        arr = json_array();
        json_object_set_new(obj, key, arr);
    }
    return arr;
}

/* -1 when arr holds limit orders: why names the limit, *retry_at when the
 * oldest leaves the window. */
static int
od_window_full(json_t *arr, long limit, long window, const char *what, const char *of,
               char *why, size_t whylen, time_t *retry_at)
{
    if ((long) json_array_size(arr) < limit) {
        return 0;
    }
    *retry_at = (time_t) json_integer_value(json_array_get(arr, 0)) + window;
    snprintf(why, whylen, "%s %ld reached%s%s", what, limit, of[0] ? " for " : "", of);
    return -1;
}

/* ---- the interface --------------------------------------------------------------- */

od_budget_t *
od_budget_new(const atls_od_conf_t *c, atls_store_t *st)
{
    od_budget_t *b = calloc(1, sizeof(*b));

    if (b == NULL) {
        return NULL;
    }
    b->st = st;
    b->per_min = c->orders_per_min;
    b->per_account = c->per_account_3h;
    b->per_domain = c->per_domain_week;
    b->cooldown_s = c->cooldown_s;
    b->state = json_object();
    if (b->state == NULL) {
        free(b);
        return NULL;
    }
    od_state_fresh(b, time(NULL));
    od_state_load(b, time(NULL));
    return b;
}

void
od_budget_free(od_budget_t *b)
{
    if (b == NULL) {
        return;
    }
    json_decref(b->state);
    free(b);
}

time_t
od_budget_cooldown(od_budget_t *b, const char *name, time_t now)
{
    json_t *v = json_object_get(json_object_get(b->state, "cooldown"), name);
    time_t  until = v != NULL ? (time_t) json_integer_value(v) : 0;

    return until > now ? until : 0;
}

int
od_budget_take(od_budget_t *b, const char *name, const char *directory, time_t now,
               char *why, size_t whylen, time_t *retry_at)
{
    atls_store_lock_t *lk = od_state_lock(b);
    json_t            *minute, *account, *domain;
    char               reg[OD_NAME_MAX + 1];
    time_t             until;
    int                rc = -1;

    *retry_at = 0;
    od_state_load(b, now);
    od_state_fresh(b, now);
    if (atls_od_registered_domain(name, reg, sizeof(reg)) != 0) {
        snprintf(why, whylen, "not a name");
        goto out;
    }
    until = od_budget_cooldown(b, name, now);
    if (until != 0) {
        *retry_at = until;
        snprintf(why, whylen, "on_demand_cooldown %ld s after a failed order",
                 b->cooldown_s);
        goto out;
    }
    minute = od_window(b->state, "minute");
    account = od_window(json_object_get(b->state, "accounts"),
                        directory != NULL ? directory : "");
    domain = od_window(json_object_get(b->state, "domains"), reg);
    if (minute == NULL || account == NULL || domain == NULL) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    if (od_window_full(minute, b->per_min, OD_WINDOW_MIN_S, "on_demand_orders_per_min",
                       "", why, whylen, retry_at) != 0
        || od_window_full(account, b->per_account, OD_WINDOW_ACCOUNT_S,
                          "on_demand_per_account_3h", directory != NULL ? directory : "",
                          why, whylen, retry_at) != 0
        || od_window_full(domain, b->per_domain, OD_WINDOW_DOMAIN_S,
                          "on_demand_per_domain_week", reg, why, whylen, retry_at) != 0)
    {
        goto out;
    }
    json_array_append_new(minute, json_integer(now));
    json_array_append_new(account, json_integer(now));
    json_array_append_new(domain, json_integer(now));
    od_state_save(b);
    rc = 0;

out:
    if (lk != NULL) {
        b->st->ops->unlock(b->st, lk);
    }
    return rc;
}

void
od_budget_failed(od_budget_t *b, const char *name, time_t now)
{
    atls_store_lock_t *lk = od_state_lock(b);

    od_state_load(b, now);
    od_state_fresh(b, now);
    json_object_set_new(json_object_get(b->state, "cooldown"), name,
                        json_integer(now + b->cooldown_s));
    od_state_save(b);
    if (lk != NULL) {
        b->st->ops->unlock(b->st, lk);
    }
}
