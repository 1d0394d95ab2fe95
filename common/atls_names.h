/*
 * Names at runtime: the store's registry of dynamic names.
 *
 * A hosting provider does not list its customers' names in the server's
 * configuration: it registers them (CLI `autotls add`, the admin API, or
 * on-demand issuance) for a "home", the server block / virtual host marked
 * dynamic (nginx: the issuer block's name; Apache: the ServerName of the
 * AutoTLS Dynamic host).  Each registered name is one certificate whose id
 * is atls_cert_id(name) and whose only name is that name.
 *
 * Layout (through the store ops only, so the Redis store works unchanged):
 *   names/<cert-id>.json   {"name","home","source","state","added",
 *                           "removed","by"}
 * state "active": issued and served; "removed": no longer served, its
 * certificate kept until removed + grace, then atls_names_purge deletes
 * the registry entry and the certificate (an audited `removed` event).
 * The registry's own counter: names-generation; names-journal says which
 * names each generation changed (hosts then read only those entries).
 * Every add and remove bumps the store generation, so that servers sharing
 * the store notice; hosts re-read the registry when the generation moved.
 *
 * Names are validated before anything is stored (atls_name_check): a
 * registry entry never holds a name an SNI or Host value could not be.
 */
#ifndef ATLS_NAMES_H
#define ATLS_NAMES_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "atls_store.h"

/* how long a removed name's certificate is kept (default) */
#define ATLS_NAMES_GRACE_S  (7 * 86400)

typedef enum {
    ATLS_NAME_ACTIVE = 0,
    ATLS_NAME_REMOVED
} atls_name_state_t;

typedef struct {
    char              *name;     /* lower-case, no trailing dot */
    char              *home;     /* NULL or "": the only dynamic home */
    char              *source;   /* "cli", "api", "on-demand" */
    char              *by;       /* who: "uid 0 (root)", "api 127.0.0.1" */
    atls_name_state_t  state;
    time_t             added;
    time_t             removed;  /* 0 while active */
} atls_name_entry_t;

void atls_name_entry_free(atls_name_entry_t *e);    /* frees members */
void atls_name_entries_free(atls_name_entry_t *v, size_t n);

/* Syntax of a name given by anyone (CLI, API, SNI, Host): letters, digits,
 * '-' and '.', labels of 1..63 not starting or ending with '-', at most
 * max_labels labels (0: 10), 253 bytes, at least two labels, no IP literal
 * unless allow_ip (then an IPv4 or IPv6 literal is accepted as is), no
 * wildcard.  Upper case is folded and one trailing dot dropped into out
 * (outlen >= 254).  0 ok, -1 with why ("label longer than 63 bytes"). */
int atls_name_check(const char *name, size_t len, int allow_ip, unsigned max_labels,
                    char *out, size_t outlen, char *why, size_t whylen);

/* Registers name for home (re-activates a removed one; an active one is
 * left as it is and gives ATLS_STORE_OK).  source and by as in the entry.
 * Bumps the store generation.  ATLS_STORE_OK, ATLS_STORE_ERROR + err
 * (naming the name or the store file). */
int atls_names_add(atls_store_t *st, const char *name, const char *home,
                   const char *source, const char *by, time_t now,
                   char *err, size_t errlen);

/* The same for n names at once (`autotls add NAME...`, a bulk import): one
 * lock, one move of the generations, so each name costs one write.
 * added (may be NULL) gets 1 for each name newly active, 0 for one active
 * already.  On an error the names before it are registered (and counted
 * in added); err names the failing name.  (Added to the issue-11 contract
 * by the names helper.) */
int atls_names_add_many(atls_store_t *st, const char *const *names, size_t n,
                        const char *home, const char *source, const char *by, time_t now,
                        unsigned char *added, char *err, size_t errlen);

/* Marks name removed at now (it stops being served; the certificate stays
 * until now + grace).  ATLS_STORE_NOTFOUND when it is not registered. */
int atls_names_remove(atls_store_t *st, const char *name, time_t now,
                      char *err, size_t errlen);

/* The same, telling what it did, so that whoever audits the removal emits
 * one `name-removed` however many clients remove the name at once:
 * *removed (may be NULL) gets 1 when this call took the name from active
 * to removed (decided under the registry's lock), 0 when it was removed
 * already; was (may be NULL) gets the entry as this call found it (its
 * home and source, for the event; freed by the caller, empty on error).
 * (Added to the issue-11 contract by the slices helper; atls_names_remove
 * is unchanged.) */
int atls_names_remove_entry(atls_store_t *st, const char *name, time_t now,
                            atls_name_entry_t *was, int *removed, char *err, size_t errlen);

/* What atls_names_remove_many did with each name. */
#define ATLS_NAMES_REMOVED_BEFORE  0    /* removed already: left as it is */
#define ATLS_NAMES_REMOVED_NOW     1    /* taken from active to removed by this call */
#define ATLS_NAMES_NOT_REGISTERED  2    /* no entry (the batch goes on) */
#define ATLS_NAMES_NOT_REACHED     3    /* an error stopped the batch before it */

/* The removal of n names at once (`autotls remove NAME...`, --from-file):
 * one lock, one sync of the registry's directory, one move of the
 * generations and one journal append for the batch, so each name costs
 * one write.  removed (may be NULL) gets ATLS_NAMES_* for each name,
 * decided under the registry's lock; was (may be NULL, n entries) each
 * entry as this call found it (for the event: its home and source; empty
 * when not registered; freed by the caller, also on error).  A name that
 * is not registered is no error: ATLS_STORE_OK.  On an error the names
 * before it are removed (and told); err names the failing name or file.
 * (Added to the issue-11 contract by the bulknames helper;
 * atls_names_remove_entry is now this with n 1.) */
int atls_names_remove_many(atls_store_t *st, const char *const *names, size_t n, time_t now,
                           atls_name_entry_t *was, unsigned char *removed, char *err,
                           size_t errlen);

/* One entry: ATLS_STORE_OK (e filled), ATLS_STORE_NOTFOUND, or ERROR with
 * err naming the file and the field. */
int atls_names_get(atls_store_t *st, const char *name, atls_name_entry_t *e,
                   char *err, size_t errlen);

/* Every entry, sorted by name.  A broken entry is skipped and reported
 * through atls_log (naming its file), not fatal. */
int atls_names_list(atls_store_t *st, atls_name_entry_t **v, size_t *n,
                    char *err, size_t errlen);

/* Deletes the entries removed before now - grace, with their certificate
 * directory, fallbacks and OCSP files (under the certificate's lock), and
 * emits `removed` for each through ev (may be NULL).  *purged (may be
 * NULL) gets the count. */
int atls_names_purge(atls_store_t *st, time_t now, long grace,
                     atls_events_t *ev, size_t *purged,
                     char *err, size_t errlen);

/* Moves on every add, remove and purge (kept in the store: names-generation,
 * as the fs backend refuses a component starting with '.'), so a host re-reads the registry only when it changed.  0 when never. */
uint64_t atls_names_generation(atls_store_t *st);

/* How many entries the registry holds, without listing it (names-count,
 * kept with the generation by every change): ATLS_STORE_OK and *n, or
 * ATLS_STORE_NOTFOUND when it is not known at the current generation (a
 * registry written by an older version, or never completely listed since;
 * the caller lists the registry).  Never more than ATLS_NAMES_COUNT_MAX.
 * (Added to the issue-11 contract by the start100k helper: servers size
 * their shared memory from it at start-up.) */
#define ATLS_NAMES_COUNT_MAX  50000000
int atls_names_count(atls_store_t *st, size_t *n);

/* The audited event of a registry change, for whoever made it (CLI, API,
 * on-demand): "name-added" (added 1) or "name-removed" about name, with
 * source and, in its detail, who asked (by) and the home.  ev may be NULL.
 * (Added to the issue-11 contract by the names helper: every registry
 * change is audited the same way.) */
void atls_names_emit(atls_events_t *ev, int added, const char *name, const char *home,
                     const char *source, const char *by, time_t now);
/* The same for n names changed together (a bulk add): one audit append
 * and one counters rewrite for all (atls_events_emit_many), so 1,000
 * names do not cost 1,000 fsyncs of the shared files.  (Added to the
 * issue-11 contract by the bulkadd helper.) */
void atls_names_emit_many(atls_events_t *ev, int added, const char *const *names, size_t n,
                          const char *home, const char *source, const char *by, time_t now);

/* The audit of a bulk removal: `name-removed` for each was[i] whose
 * removed[i] is ATLS_NAMES_REMOVED_NOW (atls_names_remove_many's
 * results), each with its own home and source, in one batch (one audit
 * append, one counters rewrite, queue entries of at most
 * ATLS_NOTIFY_BATCH_MAX events).  (Added by the bulknames helper.) */
void atls_names_emit_removed(atls_events_t *ev, const atls_name_entry_t *was,
                             const unsigned char *removed, size_t n, const char *by,
                             time_t now);

/* The names changed in generations (since, upto] (the registry's journal,
 * names-journal), each once, sorted (malloc'd): a host that mirrors the
 * registry reads only those entries.  ATLS_STORE_NOTFOUND when the journal
 * does not cover every one of them (the caller lists the registry
 * instead), ERROR + err when it cannot be read. */
int atls_names_changed_since(atls_store_t *st, uint64_t since, uint64_t upto,
                             char ***names, size_t *n, char *err, size_t errlen);

/* ---- the admin API, host-agnostic (nginx autotls_api, Apache autotls-api) */

/*
 * method, the path below the API's location ("/names", "/names/NAME"),
 * the raw query string (may be NULL) and who asks (for the audit trail:
 * "api 127.0.0.1").  PUT /names/NAME registers (body may be empty or
 * {"home": "..."}; a name active for another home than the one the body
 * names: 409 with {"error", "home": the current one}, nothing changed:
 * DELETE then PUT moves it),
 * DELETE /names/NAME removes, GET /names lists
 * ([{"name","home","source","state","added","removed","cert":{"state",
 * "not_after","last_error"}}]; ?state=active|removed|pending|valid|failed,
 * ?limit=&offset=), GET /names/NAME gives one.  *status is the HTTP status
 * (200, 201, 204, 400 with {"error": why}, 404, 405, 409, 500); *body is
 * malloc'd JSON (may be NULL for 204).  Every change is an audited event
 * through ev (may be NULL).
 */
int atls_names_api(atls_store_t *st, atls_events_t *ev, const char *method,
                   const char *path, const char *query, const char *body,
                   size_t body_len, const char *by, time_t now,
                   int *status, char **out, size_t *out_len);

/* The Authorization header value against the token in token_file (one
 * line; re-read on each call so a rotation needs no reload): 1 when it is
 * "Bearer <token>" (constant-time compare), 0 otherwise or when the file
 * cannot be read (logged, naming the file). */
int atls_api_token_ok(const char *token_file, const char *authorization);

#endif
