/*
 * Status rendering shared by the nginx and Apache status handlers and the
 * CLI: every managed certificate with names, issuer, key types, serial,
 * notBefore/notAfter, next renewal, state, failure count, last error.
 * Never key material.
 */
#ifndef ATLS_STATUS_H
#define ATLS_STATUS_H

#include <time.h>
#include "atls_store.h"

/* Figures only the host knows (nginx: its shared zone), rendered as one
 * JSON member `section` {name: value, ...} and as Prometheus gauges
 * autotls_<section>_<name>; sections are chained by next. */
typedef struct {
    const char *name;
    long long   value;
} atls_status_gauge_t;

typedef struct atls_status_extra_s {
    const char                *section;
    const char                *help;     /* Prometheus HELP, per section */
    const atls_status_gauge_t *gauges;
    size_t                     n;
    /* another section after this one, or NULL */
    const struct atls_status_extra_s *next;
} atls_status_extra_t;

/* Which certificates a rendering shows, from a status page's query string:
 * ?name=NAME (those whose configured names cover NAME: equal, or a
 * wildcard one label deep), ?state=pending|valid|renewing|failed|replacing,
 * ?limit=N (1..ATLS_STATUS_LIMIT_MAX) and ?offset=N (of the matches, in
 * id order).  Pages without a filter read only their own certificates; a
 * filter reads every meta (no leaf) to count the matches. */
#define ATLS_STATUS_LIMIT_DEFAULT  100     /* the JSON page's default limit */
#define ATLS_STATUS_LIMIT_MAX      10000

typedef struct {
    char   name[254];   /* "": any */
    char   state[16];   /* "": any */
    size_t limit;       /* 0: no limit */
    size_t offset;
} atls_status_query_t;

/* Parses args (len bytes, as in a URL after '?', %-escapes decoded);
 * parameters other than the four above (format=) are left to the host.
 * limit_default: the limit when none is given (0: none).  0 ok; -1 with
 * err naming the parameter ("limit: not a number from 1 to 10000"): the
 * host answers 400 with it. */
int atls_status_query_parse(const char *args, size_t len, size_t limit_default,
                            atls_status_query_t *q, char *err, size_t errlen);

/* malloc'd JSON document:
 * {"version":"0.1.0","generated":"RFC3339","certificates":[{"id","names":[],
 *   "state","failures","last_error" ("type: detail", for display),
 *   "error":{"class","type","detail","key_type"} (null after a success),
 *   "next_renewal","next_attempt","directory",
 *   "keys":[{"type","serial","issuer","not_before","not_after","days_left",
 *            "ocsp":{"status","url","this_update","next_update","next_refresh",
 *                    "error"},
 *            "crl":{"url","fetched","next_update"},
 *            "revoked":{"seen","at","reason","source"} (null: not known revoked)}]}]}
 * "state" is the meta's, or "replacing" while a certificate of it is known
 * revoked (unless the last attempt failed). */
char *atls_status_json(atls_store_t *st, time_t now);

/* malloc'd Prometheus text exposition (version 0.0.4): autotls_certificate_*
 * and autotls_ocsp_* gauges labelled by id and key type. */
char *atls_status_prometheus(atls_store_t *st, time_t now);

/* The same with the host's figures (x may be NULL). */
char *atls_status_json_ext(atls_store_t *st, time_t now, const atls_status_extra_t *x);
char *atls_status_prometheus_ext(atls_store_t *st, time_t now,
                                 const atls_status_extra_t *x);

/* The same for the certificates q selects (NULL: all).  JSON: "total"
 * (how many match, whatever the page), "offset" and "limit" (null: none)
 * beside "certificates" (the page).  Prometheus: the per-certificate
 * series of the page, autotls_certificates_total (every managed one) and
 * autotls_certificates_selected (the matches). */
char *atls_status_json_query(atls_store_t *st, time_t now, const atls_status_extra_t *x,
                             const atls_status_query_t *q);
char *atls_status_prometheus_query(atls_store_t *st, time_t now,
                                   const atls_status_extra_t *x,
                                   const atls_status_query_t *q);

#endif
