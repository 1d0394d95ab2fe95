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

#endif
