/*
 * The insides of the on-demand gate (atls_ondemand.h), shared by
 * ondemand.c (settings, the order of checks, the ask URL),
 * ondemand_match.c (name patterns and the allow file), ondemand_cache.c
 * (the bounded LRU map of verdicts) and ondemand_budget.c (abuse limits
 * and their windows in the store).  Internal to common/.
 */
#ifndef ATLS_ONDEMAND_INT_H
#define ATLS_ONDEMAND_INT_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>
#include "atls_ondemand.h"

/* Defaults of atls_od_conf_t (0 members) and the bounds a setting may take. */
#define OD_ASK_TIMEOUT_MS     2000
#define OD_ASK_CACHE_S        3600
#define OD_ASK_FAIL_CACHE_S   30
#define OD_COOLDOWN_S         3600
#define OD_ORDERS_PER_MIN     10
#define OD_PER_DOMAIN_WEEK    50
#define OD_PER_ACCOUNT_3H     300
#define OD_MAX_PENDING        100
#define OD_CACHE_ENTRIES      10000
#define OD_MAX_LABELS         10
#define OD_WAIT_MS            10000

#define OD_MAX_LABELS_MAX     127
#define OD_COUNT_MAX          1000000L      /* budgets, entries, pending */
#define OD_SECONDS_MAX        (366L * 86400)
#define OD_URL_MAX            2048

/* The budget windows (atls_od_budget_take). */
#define OD_WINDOW_MIN_S       60
#define OD_WINDOW_ACCOUNT_S   (3 * 3600)
#define OD_WINDOW_DOMAIN_S    (7 * 86400)

#define OD_NAME_MAX           253

/* ---- patterns (ondemand_match.c) ------------------------------------------ */

typedef struct od_patterns_s od_patterns_t;

od_patterns_t *od_patterns_new(void);
void od_patterns_free(od_patterns_t *p);
/* "name", "*.suffix" or "~regex" (POSIX extended, case-insensitive, its
 * size estimated by atls_policy_regex_check first).  where names the
 * setting or "file:line" in err. */
int od_patterns_add(od_patterns_t *p, const char *pattern, const char *where,
                    char *err, size_t errlen);
size_t od_patterns_count(const od_patterns_t *p);
/* An IPv6 literal in name (already checked) rewritten in its one
 * canonical text (RFC 5952: "0:0::1" is "::1"), in place: the lists, the
 * cache and the budgets see one name for one address. */
void od_name_fold_ip(char *name);
/* 1 when the canonical name matches one of them. */
int od_patterns_match(const od_patterns_t *p, const char *name);
/* A file of patterns, one per line, '#' comments and blank lines skipped.
 * NULL + err naming the file (and line). */
od_patterns_t *od_patterns_read_file(const char *path, char *err, size_t errlen);

/* ---- the verdict cache (ondemand_cache.c) ----------------------------------- */

typedef struct od_cache_s od_cache_t;

od_cache_t *od_cache_new(size_t bound);
void od_cache_free(od_cache_t *c);
/* 1 and *value, *aux when name is held and not expired at now (it becomes
 * the most recently used); an expired entry is dropped: 0. */
int od_cache_get(od_cache_t *c, const char *name, time_t now, int *value, long *aux);
/* Holds name until expires, replacing what was held; the least recently
 * used entry goes when the bound is reached.  -1 out of memory. */
int od_cache_put(od_cache_t *c, const char *name, int value, long aux, time_t expires);
size_t od_cache_count(const od_cache_t *c);

/* ---- the budget windows (ondemand_budget.c) --------------------------------- */

typedef struct od_budget_s od_budget_t;

/* Windows read from st's ondemand/budget.json (st may be NULL: memory). */
od_budget_t *od_budget_new(const atls_od_conf_t *c, atls_store_t *st);
void od_budget_free(od_budget_t *b);
/* When name's cooldown ends (0: none) as last known. */
time_t od_budget_cooldown(od_budget_t *b, const char *name, time_t now);
int od_budget_take(od_budget_t *b, const char *name, const char *directory, time_t now,
                   char *why, size_t whylen, time_t *retry_at);
void od_budget_failed(od_budget_t *b, const char *name, time_t now);

/* How long an answer of the ask URL with this HTTP status (0: none) is
 * kept: a definite one (2xx, or 4xx but 408 and 429) ask_cache_s, a
 * failure (no answer, a redirect, 5xx) ask_fail_cache_s. */
long od_answer_ttl(const atls_od_conf_t *c, long status);

/* ---- the gate ---------------------------------------------------------------- */

struct atls_od_s {
    pthread_mutex_t  lock;          /* an Apache child's threads share it */
    atls_od_conf_t   conf;          /* a copy, defaults filled in */
    od_patterns_t   *deny;
    od_patterns_t   *allow;
    od_patterns_t   *file;          /* allow_file as last read (NULL: none) */
    struct timespec  file_mtime;
    off_t            file_size;
    ino_t            file_ino;
    time_t           file_checked;  /* stat()ed at most once a second */
    od_cache_t      *verdicts;      /* answers of the ask URL */
    od_budget_t     *budget;
    atls_store_t    *requests;      /* children's requests (NULL: the scheduler's store) */
};

#endif
