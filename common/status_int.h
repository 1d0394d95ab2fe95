/*
 * Shared by the status files only (status.c loads, status_json.c and
 * status_prom.c render): one reading of the store per rendering.
 */
#ifndef ATLS_STATUS_INT_H
#define ATLS_STATUS_INT_H

#include <stdint.h>
#include "atls_inventory.h"
#include "atls_status.h"
#include "atls_store.h"

typedef struct {
    int              present;
    atls_key_type_t  type;
    atls_cert_info_t info;
} status_key_t;

typedef struct {
    char              *id;
    int                ok;          /* meta loaded */
    char              *error;       /* why meta could not be loaded */
    atls_cert_meta_t   meta;
    time_t             next_renewal;
    status_key_t       keys[ATLS_KEY_TYPE_MAX];
    size_t             n_keys;
} status_cert_t;

/* One CRL cache entry, as its facts were on first use in this rendering. */
typedef struct {
    const char       *url;      /* a kt_info's crl_url: owned by the meta */
    int               found;
    atls_crl_cache_t  cache;
} status_crl_t;

typedef struct {
    status_cert_t         *certs;       /* the page the query selected */
    size_t                 n;
    size_t                 total;       /* certificates matching the query */
    size_t                 n_all;       /* managed certificates in the store */
    status_crl_t          *crls;
    size_t                 n_crls, cap_crls;
    /* the certificates the servers serve that autotls does not manage */
    atls_inventory_item_t *statics;
    size_t                 n_statics;
    /* the alert levels of the store's notify.json; NULL: the defaults */
    atls_warn_t            warn_conf;
    const atls_warn_t     *warn;
    char                 **counter_names;
    uint64_t              *counter_values;
    size_t                 n_counters;
} status_t;

#define ATLS_STATUS_FINDINGS_MAX 16

/* Reads everything a rendering of q (NULL: every certificate) shows.  -1
 * (logged) when the store cannot be listed; a part that cannot be read is
 * shown as such or left out. */
int atls_status_load(atls_store_t *st, status_t *s, const atls_status_query_t *q);
/* c's meta (c->ok), or why not (c->error). */
void atls_status_load_meta(atls_store_t *st, status_cert_t *c);
/* status_query.c: the page of ids[0..n) that q selects into s->certs
 * (room for it allocated by the caller), metas loaded, s->total and
 * s->n_all set; the ids taken are set to NULL in ids. */
void atls_status_select(atls_store_t *st, status_t *s, char **ids, size_t n,
                        const atls_status_query_t *q);
void atls_status_free(status_t *s);

/* The cached facts of url's CRL, loaded on first use: NULL when nothing
 * is cached. */
const atls_crl_cache_t *atls_status_crl(atls_store_t *st, status_t *s, const char *url);
/* The facts of one key type, or NULL (a store from before they existed). */
const atls_cert_kt_info_t *atls_status_kt(const status_cert_t *c, atls_key_type_t kt);
/* The state shown: "replacing" while a certificate is known revoked. */
const char *atls_status_state_name(const status_cert_t *c);
atls_ocsp_status_t atls_status_ocsp_status(const atls_cert_kt_info_t *ki);

/* The findings of a managed certificate's key k at now, judged from its
 * meta (validity, and the certificate's names against the names it is
 * configured for): the chain, key and signature are autotls's own. */
size_t atls_status_key_findings(const status_cert_t *c, size_t k, const atls_warn_t *w,
                                time_t now, atls_finding_t *out, size_t max);

/* The first name, for the metrics' name label ("" when none). */
const char *atls_status_static_name(const atls_inventory_item_t *it);
/* "ec256", "rsa1024": the key type label of a static certificate. */
void atls_status_static_key_type(const atls_inventory_item_t *it, char *buf, size_t len);

#endif
