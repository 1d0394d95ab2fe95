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

/* malloc'd JSON document:
 * {"version":"0.1.0","generated":"RFC3339","certificates":[{"id","names":[],
 *   "state","failures","last_error","next_renewal","next_attempt","directory",
 *   "keys":[{"type","serial","issuer","not_before","not_after","days_left"}]}]} */
char *atls_status_json(atls_store_t *st, time_t now);

/* malloc'd Prometheus text exposition (version 0.0.4): autotls_certificate_*
 * gauges labelled by id and key type. */
char *atls_status_prometheus(atls_store_t *st, time_t now);

#endif
