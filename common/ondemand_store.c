/*
 * On-demand requests between processes (atls_ondemand.h): an Apache child
 * that meets a name it may not decide alone writes ondemand/<cert-id>.json
 * ("requested"); the scheduler answers in the same entry ("denied",
 * "limited" until a time, "ordering") and deletes it when the order ended
 * or the answer expired.  Everything goes through the store ops, so the
 * Redis store carries them unchanged.
 *
 * The entries are the worker's to write: each one read is checked (its
 * name a valid name equal to its file's, its state one of four) before
 * anyone acts on it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "atls.h"
#include "atls_names.h"
#include "ondemand_int.h"
#include "store_int.h"

#define OD_DIR       "ondemand"
#define OD_EXT       ".json"
#define OD_REQ_LOCK  "ondemand-requests"
/* Answers count too: never more entries than this many times max_pending. */
#define OD_ENTRIES_PER_PENDING  8

static const char *const od_states[] = { "requested", "ordering", "denied", "limited" };

static int
od_state_ok(const char *s)
{
    size_t i;

    for (i = 0; s != NULL && i < sizeof(od_states) / sizeof(od_states[0]); i++) {
        if (strcmp(s, od_states[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The canonical form of name (IP literals allowed: an Apache child decides
 * that), or -1 with err. */
static int
od_name_canon(const char *name, char *out, char *err, size_t errlen)
{
    char why[128], shown[96];

    if (name == NULL
        || atls_name_check(name, strlen(name), 1, OD_MAX_LABELS_MAX, out, OD_NAME_MAX + 1,
                           why, sizeof(why)) != 0)
    {
        snprintf(err, errlen, "on-demand request for \"%s\": %s",
                 atls_log_escape(name, shown, sizeof(shown)),
                 name == NULL ? "no name" : why);
        return -1;
    }
    return 0;
}

/* ondemand/<cert-id>.json for a canonical name. */
static char *
od_entry_path(const char *name)
{
    char *id = atls_cert_id(name), *path = NULL;

    if (id != NULL && atls_store_id_ok(id)) {
        path = atls_store_cat(OD_DIR "/", id, OD_EXT, NULL);
    }
    free(id);
    return path;
}

/* The entry's path for a name as given (checked and folded), or NULL
 * with err. */
static char *
od_name_path(const char *name, char *err, size_t errlen)
{
    char  canon[OD_NAME_MAX + 1], *path;

    if (od_name_canon(name, canon, err, errlen) != 0) {
        return NULL;
    }
    path = od_entry_path(canon);
    if (path == NULL) {
        snprintf(err, errlen, "on-demand request for %s: no store id", canon);
    }
    return path;
}

static void
od_entry_clear(atls_od_entry_t *e)
{
    free(e->name);
    free(e->home);
    free(e->state);
    free(e->why);
    memset(e, 0, sizeof(*e));
}

void
atls_od_entries_free(atls_od_entry_t *v, size_t n)
{
    size_t i;

    for (i = 0; v != NULL && i < n; i++) {
        od_entry_clear(&v[i]);
    }
    free(v);
}

static int
od_entry_write(atls_store_t *st, const atls_od_entry_t *e, char *err, size_t errlen)
{
    json_t *root = json_object();
    char   *path = od_entry_path(e->name), *data = NULL;
    int     rc = ATLS_STORE_ERROR;

    if (root == NULL || path == NULL
        || atls_meta_set_str(root, "name", e->name) != 0
        || atls_meta_set_str(root, "home", e->home) != 0
        || atls_meta_set_str(root, "state", e->state) != 0
        || atls_meta_set_time(root, "at", e->at) != 0
        || atls_meta_set_time(root, "until", e->until) != 0
        || atls_meta_set_str(root, "why", e->why) != 0
        || (data = json_dumps(root, JSON_COMPACT)) == NULL)
    {
        snprintf(err, errlen, "on-demand entry for %s: out of memory or a bad name",
                 e->name);
        goto out;
    }
    rc = st->ops->put(st, path, data, strlen(data), 0, err, errlen);

out:
    free(data);
    free(path);
    json_decref(root);
    return rc;
}

/* Reads and checks the entry at path (its file name base: want, NULL when
 * not known); ATLS_STORE_OK, NOTFOUND, or ERROR with err naming the file. */
static int
od_entry_read(atls_store_t *st, const char *path, atls_od_entry_t *e, char *err,
              size_t errlen)
{
    json_t       *root = NULL;
    json_error_t  je;
    char         *data = NULL, canon[OD_NAME_MAX + 1], *want = NULL, why[256];
    size_t        len = 0;
    int           rc;

    memset(e, 0, sizeof(*e));
    rc = st->ops->get(st, path, &data, &len, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    rc = ATLS_STORE_ERROR;
    root = json_loadb(data, len, 0, &je);
    if (root == NULL || !json_is_object(root)) {
        atls_store_err_path(st, path, err, errlen, "not a JSON object");
        goto out;
    }
    if (atls_meta_get_str(root, "name", "name", &e->name, why, sizeof(why)) != 0
        || atls_meta_get_str(root, "home", "home", &e->home, why, sizeof(why)) != 0
        || atls_meta_get_str(root, "state", "state", &e->state, why, sizeof(why)) != 0
        || atls_meta_get_str(root, "why", "why", &e->why, why, sizeof(why)) != 0
        || atls_meta_get_time_field(root, "at", "at", &e->at, why, sizeof(why)) != 0
        || atls_meta_get_time_field(root, "until", "until", &e->until, why,
                                    sizeof(why)) != 0)
    {
        atls_store_err_path(st, path, err, errlen, why);
        goto out;
    }
    if (!od_state_ok(e->state)) {
        atls_store_err_path(st, path, err, errlen, "field \"state\" is none of "
                            "requested, ordering, denied, limited");
        goto out;
    }
    /* the name must be one and be the file's: nobody acts on another */
    if (od_name_canon(e->name, canon, why, sizeof(why)) != 0
        || strcmp(canon, e->name) != 0
        || (want = od_entry_path(canon)) == NULL || strcmp(want, path) != 0)
    {
        atls_store_err_path(st, path, err, errlen, "field \"name\" is not a valid name "
                            "or not its file's");
        goto out;
    }
    rc = ATLS_STORE_OK;

out:
    if (rc != ATLS_STORE_OK) {
        od_entry_clear(e);
    }
    free(want);
    free(data);
    json_decref(root);
    return rc;
}

int
atls_od_request_list(atls_store_t *st, atls_od_entry_t **v, size_t *n, char *err,
                     size_t errlen)
{
    char            **names = NULL, *path, msg[512];
    size_t            n_names = 0, i, nl;
    atls_od_entry_t  *out = NULL;
    int               rc;

    *v = NULL;
    *n = 0;
    rc = st->ops->list(st, OD_DIR, &names, &n_names, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        return ATLS_STORE_OK;
    }
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    out = calloc(n_names > 0 ? n_names : 1, sizeof(*out));
    if (out == NULL) {
        atls_strv_free(names, n_names);
        snprintf(err, errlen, "out of memory");
        return ATLS_STORE_ERROR;
    }
    for (i = 0; i < n_names; i++) {
        nl = strlen(names[i]);
        if (nl <= strlen(OD_EXT) || strcmp(names[i] + nl - strlen(OD_EXT), OD_EXT) != 0
            || strcmp(names[i], "budget.json") == 0)
        {
            continue;   /* the budgets, temporary files, strangers */
        }
        path = atls_store_cat(OD_DIR "/", names[i], NULL);
        rc = od_entry_read(st, path, &out[*n], msg, sizeof(msg));
        if (rc == ATLS_STORE_OK) {
            (*n)++;
        } else if (rc == ATLS_STORE_ERROR) {
            atls_log(ATLS_LOG_WARN, "autotls: on-demand request skipped: %s", msg);
        }
        free(path);
    }
    atls_strv_free(names, n_names);
    *v = out;
    return ATLS_STORE_OK;
}

int
atls_od_request_get(atls_store_t *st, const char *name, atls_od_entry_t *e, char *err,
                    size_t errlen)
{
    char *path;
    int   rc;

    memset(e, 0, sizeof(*e));
    path = od_name_path(name, err, errlen);
    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = od_entry_read(st, path, e, err, errlen);
    free(path);
    return rc;
}

/* Entries and those of them waiting for the scheduler ("requested",
 * "ordering"). */
static int
od_count(atls_store_t *st, size_t *all, size_t *waiting, char *err, size_t errlen)
{
    atls_od_entry_t *v;
    size_t           n, i;

    if (atls_od_request_list(st, &v, &n, err, errlen) != ATLS_STORE_OK) {
        return ATLS_STORE_ERROR;
    }
    *all = n;
    *waiting = 0;
    for (i = 0; i < n; i++) {
        *waiting += strcmp(v[i].state, "requested") == 0
                    || strcmp(v[i].state, "ordering") == 0;
    }
    atls_od_entries_free(v, n);
    return ATLS_STORE_OK;
}

int
atls_od_request_put(atls_store_t *st, const char *name, const char *home,
                    long max_pending, time_t now, char *err, size_t errlen)
{
    atls_store_lock_t *lk = NULL;
    atls_od_entry_t    cur, e;
    char               canon[OD_NAME_MAX + 1];
    size_t             all = 0, waiting = 0;
    long               bound = max_pending > 0 ? max_pending : OD_MAX_PENDING;
    int                rc;

    memset(&cur, 0, sizeof(cur));
    if (od_name_canon(name, canon, err, errlen) != 0) {
        return ATLS_STORE_ERROR;
    }
    /* one child at a time, so that the bound holds */
    rc = st->ops->lock(st, OD_REQ_LOCK, 1, &lk, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    rc = atls_od_request_get(st, canon, &cur, err, errlen);
    if (rc == ATLS_STORE_OK
        && (strcmp(cur.state, "requested") == 0 || strcmp(cur.state, "ordering") == 0
            || cur.until > now))
    {
        goto out;   /* asked already, or an answer still valid */
    }
    if (rc == ATLS_STORE_ERROR) {
        atls_log(ATLS_LOG_WARN, "autotls: %s (replaced)", err);
    }
    rc = od_count(st, &all, &waiting, err, errlen);
    if (rc != ATLS_STORE_OK) {
        goto out;
    }
    if ((long) waiting >= bound || (long) all >= bound * OD_ENTRIES_PER_PENDING) {
        snprintf(err, errlen, "on_demand_max_pending %ld reached", bound);
        rc = ATLS_STORE_BUSY;
        goto out;
    }
    memset(&e, 0, sizeof(e));
    e.name = canon;
    e.home = (char *) (home != NULL && home[0] != '\0' ? home : NULL);
    e.state = "requested";
    e.at = now;
    rc = od_entry_write(st, &e, err, errlen);

out:
    od_entry_clear(&cur);
    st->ops->unlock(st, lk);
    return rc;
}

int
atls_od_answer_put(atls_store_t *st, const char *name, const char *state, time_t until,
                   const char *why, char *err, size_t errlen)
{
    atls_od_entry_t cur, e;
    char            canon[OD_NAME_MAX + 1];
    int             rc;

    if (!od_state_ok(state)) {
        snprintf(err, errlen, "on-demand answer: \"%s\" is not a state",
                 state != NULL ? state : "(null)");
        return ATLS_STORE_ERROR;
    }
    if (od_name_canon(name, canon, err, errlen) != 0) {
        return ATLS_STORE_ERROR;
    }
    /* the home the child asked for stays with the entry */
    rc = atls_od_request_get(st, canon, &cur, err, errlen);
    memset(&e, 0, sizeof(e));
    e.name = canon;
    e.home = rc == ATLS_STORE_OK ? cur.home : NULL;
    e.state = (char *) state;
    e.at = rc == ATLS_STORE_OK && cur.at > 0 ? cur.at : time(NULL);
    e.until = until;
    e.why = (char *) why;
    rc = od_entry_write(st, &e, err, errlen);
    od_entry_clear(&cur);
    return rc;
}

int
atls_od_request_del(atls_store_t *st, const char *name, char *err, size_t errlen)
{
    char *path;
    int   rc;

    path = od_name_path(name, err, errlen);
    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = st->ops->del(st, path, err, errlen);
    free(path);
    return rc;
}
