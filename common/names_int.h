/*
 * Shared by the names files (names.c, store_names.c, names_api.c,
 * sched_names.c): a registry entry as JSON, and the names of its states.
 */
#ifndef ATLS_NAMES_INT_H
#define ATLS_NAMES_INT_H

#include <jansson.h>
#include "atls_names.h"

/* Where the registry is: names/<cert-id>.json. */
#define NAMES_DIR   "names"
#define NAMES_EXT   ".json"

/* The entry at path (names/<id>.json, store_names.c); its name must be
 * folded unless folded is NULL.  ERROR + err naming the file. */
int atls_names_read(atls_store_t *st, const char *path, const char *folded,
                    atls_name_entry_t *e, char *err, size_t errlen);

/* "active", "removed"; NULL for anything else. */
const char *atls_name_state_name(atls_name_state_t s);

/* The entry as the registry file holds it (also the API's view of it,
 * without the certificate).  NULL on out-of-memory. */
json_t *atls_name_entry_json(const atls_name_entry_t *e);
char *atls_name_entry_to_json(const atls_name_entry_t *e);

/* Strictly: an object, "name" passing atls_name_check (IP literals
 * allowed), "state" one of the states, strings where strings belong,
 * RFC 3339 times.  0 ok, -1 with err naming the field.  e is zeroed
 * first and left empty on error. */
int atls_name_entry_from_json(const char *json, size_t len, atls_name_entry_t *e,
                              char *err, size_t errlen);

/* The journal (names_journal.c): the names one change (generation gen)
 * touched, appended after names-generation moved; a failure is logged,
 * not fatal (readers then list the registry). */
void atls_names_journal_add(atls_store_t *st, uint64_t gen, const char *const *names,
                            size_t n);
/* The names the registry holds entries for, from the entries' file names
 * alone (no entry is read: a page of GET /names reads only its own),
 * sorted by name (malloc'd). */
int atls_names_list_names(atls_store_t *st, char ***names, size_t *n, char *err,
                          size_t errlen);

/* names-count (names_count.c): a change from generation from to to that
 * added (delta > 0) or deleted entries, with the "names" lock held; and
 * what a complete listing begun at generation gen found (taken only when
 * the registry did not change meanwhile). */
void atls_names_count_moved(atls_store_t *st, uint64_t from, uint64_t to, long delta);
void atls_names_count_settle(atls_store_t *st, uint64_t gen, size_t count);
/* 1 when file is a registry entry's file name, "<name>.json" with name as
 * atls_name_check folds it; the extension is cut off (file rewritten). */
int atls_names_file_name(char *file);

/* The entries a batch of the registry writes (names_pending.c): held by
 * file name ("<id>.json") until the batch ends, then written at once. */
typedef struct {
    char   *file;
    char   *json;
    size_t  index;      /* the name's place in the caller's list */
    int     made;       /* 2: a new entry, 1: an entry rewritten */
} atls_names_pending_item_t;

typedef struct {
    atls_names_pending_item_t *v;       /* in the order they were added */
    size_t                     n, cap;
    size_t                    *slots;   /* 1 + an index into v, 0: empty */
    size_t                     nslots;
} atls_names_pending_t;

void atls_names_pending_init(atls_names_pending_t *p);
/* What the batch holds for file so far, or NULL. */
const atls_names_pending_item_t *atls_names_pending_find(const atls_names_pending_t *p,
                                                         const char *file);
/* json (malloc'd) is the batch's from now on; file must not be held yet. */
void atls_names_pending_add(atls_names_pending_t *p, const char *file, char *json,
                            size_t index, int made);
/* Every entry held written into dir with one atls_store_put_many; *done
 * as its (v[0..*done-1] are on disk, the others are not). */
int atls_names_pending_flush(atls_store_t *st, const char *dir, atls_names_pending_t *p,
                             size_t *done, char *err, size_t errlen);
void atls_names_pending_free(atls_names_pending_t *p);

/* The longest "source" and "by" the registry keeps. */
#define ATLS_NAME_META_MAX  128

#endif
