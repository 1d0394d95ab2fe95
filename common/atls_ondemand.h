/*
 * On-demand issuance: the gate a name from the network (SNI, a Host
 * header) passes before it may cost an order.
 *
 * Checked in this order, cheapest first, so that a flood of random names
 * costs at most one cached lookup each and never an order:
 *   1. syntax (atls_name_check: hostname, label limit, IP literals only
 *      when allowed) -> ATLS_OD_INVALID;
 *   2. the deny list -> ATLS_OD_DENY;
 *   3. the verdict cache (positive and negative answers of the ask URL,
 *      each for its own time; bounded, least recently used evicted);
 *   4. the allow list (exact names, "*.suffix" for any name below suffix,
 *      "~regex" POSIX extended, and a file of such lines re-read when its
 *      mtime changes) -> ATLS_OD_ALLOW;
 *   5. the ask URL: ATLS_OD_ASK, the caller sends atls_od_ask_request()
 *      and reports with atls_od_ask_done() (2xx: allow; any other status,
 *      a redirect or a transport failure: deny, the failure cached only for
 *      ask_fail_cache_s so the name is retried later);
 *   6. none of these configured for the name -> ATLS_OD_DENY (default deny).
 * Then, for an allowed name, atls_od_budget_take() applies the abuse
 * limits before an order is placed: the per-name cooldown after a failed
 * order, the global cap on new orders per minute, and budgets that mirror
 * the CA's rate limits: certificates per registered domain (found with
 * libpsl over Debian's public suffix list) per week, new orders per
 * account per 3 hours.  The budget windows are kept in the store
 * (ondemand/budget.json) so a restart does not reset them.
 *
 * Names with a certificate in the store are served whatever the gate says
 * now (the ask endpoint being down never stops a stored name): hosts look
 * at the registry (atls_names.h) before they ever ask the gate.
 *
 * The engine does no network I/O itself and keeps no global state; one
 * instance per scheduler (nginx driver, Apache watchdog) and one per
 * process that pre-checks (an Apache child) is the intended use.
 */
#ifndef ATLS_ONDEMAND_H
#define ATLS_ONDEMAND_H

#include <stddef.h>
#include <time.h>
#include "atls_http.h"
#include "atls_store.h"

typedef enum {
    ATLS_OD_INVALID = 0,   /* not a name we would ever order */
    ATLS_OD_DENY,
    ATLS_OD_ALLOW,
    ATLS_OD_ASK,           /* no cached answer: ask the URL */
    ATLS_OD_LIMITED        /* allowed, but a budget or cooldown says not now */
} atls_od_verdict_t;

const char *atls_od_verdict_name(atls_od_verdict_t v);

/* Defaults are used for 0 members.  Strings are the caller's (copied by
 * atls_od_new). */
typedef struct {
    char   **deny;              /* patterns as the allow list */
    size_t   n_deny;
    char   **allow;
    size_t   n_allow;
    char    *allow_file;        /* one pattern per line, '#' comments */
    char    *ask_url;           /* http(s); GET <url>?domain=<name> (or &domain=) */
    long     ask_timeout_ms;    /* 0: 2000 */
    long     ask_cache_s;       /* answers of the ask URL; 0: 3600 */
    long     ask_fail_cache_s;  /* ask URL unreachable / 5xx; 0: 30 */
    long     cooldown_s;        /* per name after a failed order; 0: 3600 */
    long     orders_per_min;    /* new on-demand orders, all names; 0: 10 */
    long     per_domain_week;   /* per registered domain per 7 days; 0: 50 */
    long     per_account_3h;    /* new orders per ACME account per 3 h; 0: 300 */
    long     max_pending;       /* names allowed but without a certificate yet; 0: 100 */
    long     cache_entries;     /* verdict cache bound; 0: 10000 */
    int      allow_ip;          /* IP literals may be asked for (IP certificates) */
    unsigned max_labels;        /* 0: 10 */
    long     wait_ms;           /* how long a first handshake waits; 0: 10000 */
} atls_od_conf_t;

void atls_od_conf_free(atls_od_conf_t *c);     /* frees members */

/* conf <-> JSON (a host hands its settings to a process that has none,
 * and docs show it): every error names the field. */
char *atls_od_conf_to_json(const atls_od_conf_t *c);
int atls_od_conf_from_json(const char *json, size_t len, atls_od_conf_t *c,
                           char *err, size_t errlen);

typedef struct atls_od_s atls_od_t;

/* Compiles the patterns (an error names the pattern); st (may be NULL) is
 * where budget windows are kept.  NULL + err. */
atls_od_t *atls_od_new(const atls_od_conf_t *c, atls_store_t *st, char *err, size_t errlen);
void atls_od_free(atls_od_t *od);
const atls_od_conf_t *atls_od_conf(const atls_od_t *od);

/* Where the scheduler reads the requests of the server's own processes
 * and writes its answers (below; borrowed, NULL: the scheduler's store).
 * Those requests are between one server's children and its watchdog, so
 * they belong on that server: a cluster node (atls_mirror.h) keeps them in
 * its mirror directory, which its children can reach without the network,
 * while the budget windows (st of atls_od_new) are Redis's, shared by
 * every node.  (Added by the odredis helper, issues 11/12.) */
void atls_od_set_requests(atls_od_t *od, atls_store_t *st);
atls_store_t *atls_od_requests(const atls_od_t *od);

/* Steps 1-5 for a raw name of len bytes (from the wire: not
 * NUL-terminated, any bytes).  name_out (>= 254 bytes) receives the
 * canonical name unless INVALID; why says what decided. */
atls_od_verdict_t atls_od_check(atls_od_t *od, const char *raw, size_t len, time_t now,
                                char *name_out, char *why, size_t whylen);

/* The ask request for name: GET, no body, the configured timeout, no
 * redirects followed.  0, or -1 when no ask URL is configured. */
int atls_od_ask_request(const atls_od_t *od, const char *name,
                        atls_http_request_t *req, atls_http_opts_t *opts);

/* The answer (resp->status 0: transport failure): cached and returned
 * (ALLOW or DENY), why filled. */
atls_od_verdict_t atls_od_ask_done(atls_od_t *od, const char *name,
                                   const atls_http_response_t *resp, time_t now,
                                   char *why, size_t whylen);

/* Abuse limits for an allowed name about to be ordered with the account
 * of directory (its CA): 0 and the order is counted in every window, or
 * -1 with why naming the limit ("on_demand_orders_per_min 10 reached") and
 * *retry_at when it may be tried again. */
int atls_od_budget_take(atls_od_t *od, const char *name, const char *directory,
                        time_t now, char *why, size_t whylen, time_t *retry_at);

/* An on-demand order for name failed: cooldown_s before it may be tried
 * again (atls_od_check answers LIMITED until then). */
void atls_od_failed(atls_od_t *od, const char *name, time_t now);

/* The registered domain of name ("a.b.example.co.uk" -> "example.co.uk")
 * into out; the name itself when the list has no rule for it. */
int atls_od_registered_domain(const char *name, char *out, size_t outlen);

/* ---- requests between processes (Apache children -> watchdog) ------------ */
/*
 * ondemand/<cert-id>.json  {"name","home","state","at","until","why"}
 * state "requested" (by a child, for the scheduler), "denied" or "limited"
 * (the scheduler's answer, valid until "until"), "ordering".  Bounded:
 * atls_od_request_put gives ATLS_STORE_BUSY when max_pending entries are
 * "requested" or "ordering".  The scheduler deletes an entry when the name
 * is registered and its order ends, and expired answers at each pass.
 */
int atls_od_request_put(atls_store_t *st, const char *name, const char *home,
                        long max_pending, time_t now, char *err, size_t errlen);
typedef struct {
    char               *name;
    char               *home;
    char               *state;
    char               *why;
    time_t              at;
    time_t              until;
} atls_od_entry_t;
void atls_od_entries_free(atls_od_entry_t *v, size_t n);
int atls_od_request_list(atls_store_t *st, atls_od_entry_t **v, size_t *n,
                         char *err, size_t errlen);
int atls_od_request_get(atls_store_t *st, const char *name, atls_od_entry_t *e,
                        char *err, size_t errlen);
int atls_od_answer_put(atls_store_t *st, const char *name, const char *state,
                       time_t until, const char *why, char *err, size_t errlen);
int atls_od_request_del(atls_store_t *st, const char *name, char *err, size_t errlen);

#endif
