/*
 * Shared by the store files only (store.c, store_cert.c, store_accounts.c,
 * store_fallback.c, store_batch.c, store_revocation.c, store_meta.c,
 * store_meta_certs.c, store_events.c): building paths of the
 * logical layout and reading the store's JSON entries strictly.  The
 * backends (store_fs*.c, store_redis*.c) check paths with its rule.  Not for
 * hosts: nothing outside these files builds a store path.  The JSON
 * helpers also serve the JSON the store holds for the event model
 * (event.c: audit records and queue entries; notify_conf.c: notify.json).
 */
#ifndef ATLS_STORE_INT_H
#define ATLS_STORE_INT_H

#include <jansson.h>
#include "atls_store.h"

/* ---- paths (store.c) ---------------------------------------------------- */

/* An id must be exactly one path component, not starting with '.'. */
int atls_store_id_ok(const char *id);
/* The one rule for a logical path, the same in every backend so that a
 * store migrates between them whole: relative (no leading '/'), no empty
 * component ("a//b", "a/"), no component starting with '.' (no "..", no
 * dot files), at most ATLS_STORE_PATH_MAX bytes (a bound for the Redis
 * backend's keys; far above the layout's longest path).  "" (the root)
 * only where allow_empty says so (listing). */
#define ATLS_STORE_PATH_MAX 400
int atls_store_path_ok(const char *path, int allow_empty);
/* Concatenates NULL-terminated string arguments (malloc'd, aborts on OOM). */
char *atls_store_cat(const char *first, ...) __attribute__((sentinel));
/* "<location>/<path>: <why>" into err, so an operator can find the file. */
void atls_store_err_path(atls_store_t *st, const char *path, char *err, size_t errlen,
                         const char *why);

/* ---- key + chain (store_cert.c) ----------------------------------------- */

/* A key PEM and a chain PEM parsed and checked to belong together: what
 * load_cert (store_cert.c) and load_fallback (store_fallback.c) hand out.
 * kpath and cpath name the files in err.  On error both outs are NULL. */
int atls_store_parse_pair(atls_store_t *st, const char *kpem, size_t klen, const char *kpath,
                          const char *cpem, size_t clen, const char *cpath, EVP_PKEY **key,
                          STACK_OF(X509) **chain, char *err, size_t errlen);

/* ---- JSON (store_meta.c): every error names the field ------------------- */

int atls_meta_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Setters: v NULL (allocation failed) is -1; NULL strings and times <= 0
 * are left out (absent = default). */
int atls_meta_set(json_t *obj, const char *key, json_t *v);
int atls_meta_set_str(json_t *obj, const char *key, const char *s);
int atls_meta_set_time(json_t *obj, const char *key, time_t t);
json_t *atls_meta_strv(char *const *v, size_t n);
/* Getters: absent or null gives NULL / 0. */
int atls_meta_get_str(json_t *o, const char *key, const char *field, char **out,
                      char *err, size_t errlen);
int atls_meta_get_strv(json_t *o, const char *key, const char *field, int required,
                       char ***out, size_t *n, char *err, size_t errlen);
int atls_meta_get_int(json_t *o, const char *key, const char *field, long long lo,
                      long long hi, long long *out, char *err, size_t errlen);
int atls_meta_get_bool(json_t *o, const char *key, const char *field, int *out,
                       char *err, size_t errlen);
int atls_meta_get_time_field(json_t *o, const char *key, const char *field, time_t *out,
                             char *err, size_t errlen);
int atls_meta_get_time(json_t *o, const char *key, time_t *out, char *err, size_t errlen);

/* ---- the "certs" entries of meta.json (store_meta_certs.c) -------------- */

json_t *atls_meta_certs_to_json(const atls_cert_meta_t *m);
int atls_meta_certs_from_json(json_t *root, atls_cert_meta_t *m, char *err, size_t errlen);
/* Deep copy of s into d (overwritten, not freed). */
void atls_cert_kt_info_copy(atls_cert_kt_info_t *d, const atls_cert_kt_info_t *s);

/* ---- the change journal (store_changes.c) ------------------------------- */

/* atls_store_bump_generation_for for n certificates at once (the
 * mirror's sync, issue 12): one generation, its journal lines for every
 * id appended together (append_many: one fsync), the generation written
 * once.  ATLS_STORE_OK (n 0: nothing) or ATLS_STORE_ERROR (logged). */
int atls_store_bump_generation_many(atls_store_t *st, const char *const *ids, size_t n);

#endif
