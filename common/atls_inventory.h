/*
 * Every certificate a server serves, managed or not: facts read from a
 * chain, findings (what an operator must fix), and the inventory of the
 * certificates autotls does not manage (nginx ssl_certificate, Apache
 * SSLCertificateFile), kept in the store so that the status page, the
 * metrics, the scheduler's expiry alerts and `autotls list --all` see them.
 *
 * The same findings serve `autotls scan` (a chain seen on the wire), the
 * modules (files named in the configuration, parsed once by the master /
 * parent at start and reload) and the status page (managed certificates,
 * from their meta).
 */
#ifndef ATLS_INVENTORY_H
#define ATLS_INVENTORY_H

#include <stddef.h>
#include <time.h>
#include <openssl/x509.h>
#include "atls_event.h"
#include "atls_store.h"

/* ---- facts ---------------------------------------------------------------- */

typedef struct {
    char   **names;          /* SAN dNSName and iPAddress entries (IPs as
                                text); the subject CN when there is no SAN */
    size_t   n_names;
    char    *subject;        /* RFC 2253 one line */
    char    *issuer;
    char    *serial;         /* lower-case hex, as atls_cert_info gives it */
    char     key_alg[16];    /* "rsa", "ec", "ed25519", "ed448", "dsa", "?" */
    int      key_bits;
    char     sig_alg[64];    /* OpenSSL long name, e.g. "sha256WithRSAEncryption" */
    int      sig_sha1;       /* the leaf is signed with SHA-1 (or MD5) */
    time_t   not_before, not_after;
    size_t   chain_len;      /* certificates in the chain served, leaf included */
    int      chain_complete; /* every link verifies (cert i signed by i+1) and
                                the last one is self-signed or issued by a
                                certificate of the system trust store */
    int      self_signed;    /* the leaf is its own issuer */
} atls_cert_facts_t;

/* Facts of chain (leaf first).  0, or -1 + err (empty chain). */
int atls_cert_facts(STACK_OF(X509) *chain, atls_cert_facts_t *f, char *err, size_t errlen);
void atls_cert_facts_free(atls_cert_facts_t *f);

/* ---- findings --------------------------------------------------------------- */

typedef enum {
    ATLS_FINDING_EXPIRED = 0,       /* critical */
    ATLS_FINDING_NOT_YET_VALID,     /* critical */
    ATLS_FINDING_NAME_MISMATCH,     /* critical: a name served with it is not covered */
    ATLS_FINDING_WEAK_KEY,          /* critical: RSA/DSA < 2048, EC < 256 */
    ATLS_FINDING_EXPIRING,          /* warning: within the largest warn level */
    ATLS_FINDING_SHA1_SIGNATURE,    /* warning */
    ATLS_FINDING_INCOMPLETE_CHAIN,  /* warning (self-signed leaves are not) */
    ATLS_FINDING_UNREADABLE,        /* critical: the file could not be parsed */
    ATLS_FINDING_MAX
} atls_finding_type_t;

typedef enum {
    ATLS_SEV_OK = 0,
    ATLS_SEV_WARNING = 1,
    ATLS_SEV_CRITICAL = 2
} atls_severity_t;

typedef struct {
    atls_finding_type_t type;
    atls_severity_t     severity;
    char                detail[256];  /* for people: "expires in 3d (2026-12-02T..)",
                                         "www.example.org not covered", "RSA 1024" */
} atls_finding_t;

/* "expired", "not-yet-valid", "name-mismatch", "weak-key", "expiring",
 * "sha1-signature", "incomplete-chain", "unreadable". */
const char *atls_finding_name(atls_finding_type_t t);
/* "ok", "warning", "critical". */
const char *atls_severity_name(atls_severity_t s);

/* The findings for f at now: used (n_used) the names the server answers
 * with it (a "*.x" server name needs a covering wildcard; IP literals an
 * IP SAN); w the alert levels (NULL: defaults; the largest is the
 * window).  Writes at most max, returns how many. */
size_t atls_findings(const atls_cert_facts_t *f, const char *const *used, size_t n_used,
                     const atls_warn_t *w, time_t now, atls_finding_t *out, size_t max);
/* The worst severity of n findings (ATLS_SEV_OK for none). */
atls_severity_t atls_findings_worst(const atls_finding_t *fs, size_t n);
/* 1 when name is covered by the certificate names (RFC 6125: one
 * left-most wildcard label, case-insensitive). */
int atls_name_covered(const char *const *cert_names, size_t n, const char *name);

/* ---- the inventory of certificates autotls does not manage ---------------- */

typedef struct {
    char               *id;          /* "static-" + 16 hex of SHA-256(path) */
    char               *path;        /* the file as configured */
    char               *server;      /* "nginx" or "apache": who found it */
    char              **used_names;  /* server names answered with it */
    size_t              n_used_names;
    char              **used_by;     /* where: "FILE:LINE" of each server block /
                                        virtual host using it */
    size_t              n_used_by;
    atls_cert_facts_t   facts;       /* zero when error is set */
    char               *error;       /* could not be read or parsed: why */
    time_t              loaded;      /* when the file was parsed */
    /* expiry alerts sent (kept by atls_store_inventory_sync across starts
     * while the serial stays the same) */
    long                warned_level;
    time_t              expired_sent;
} atls_inventory_item_t;

/* Reads a PEM file named by the configuration (certificates only: any key
 * block is skipped undecoded) into it: path, id and facts, or error set
 * (the return is still 0: an unreadable file is a finding, not a failure
 * of the caller).  server, used_* are the caller's.  -1 only on
 * out-of-memory. */
int atls_inventory_load_file(const char *path, atls_inventory_item_t *it);
void atls_inventory_item_free(atls_inventory_item_t *it);
void atls_inventory_items_free(atls_inventory_item_t *items, size_t n);
/* Adds a use (copied): the server name answered and where. */
void atls_inventory_item_use(atls_inventory_item_t *it, const char *name, const char *where);

/* The findings of it at now (w: NULL defaults): "unreadable" alone when
 * its file could not be read, else atls_findings for its used names.
 * (Added to the contract by the inventory helper: the status page, the
 * logs and the JSON judge a static certificate the same way.) */
size_t atls_inventory_item_findings(const atls_inventory_item_t *it, const atls_warn_t *w,
                                    time_t now, atls_finding_t *out, size_t max);

/* JSON of one item (malloc'd) with its findings at now (w: NULL defaults):
 * {"id","source":"static","path","server","names","used_names","used_by",
 *  "subject","issuer","serial","key":{"alg","bits"},"signature","not_before",
 *  "not_after","days_left","chain":{"length","complete"},"error",
 *  "findings":[{"finding","severity","detail"}],"warned_level","expired_sent"}
 * and back (findings are recomputed, not read). */
char *atls_inventory_item_to_json(const atls_inventory_item_t *it,
                                  const atls_warn_t *w, time_t now);
int atls_inventory_item_from_json(const char *json, size_t len, atls_inventory_item_t *it,
                                  char *err, size_t errlen);

/* The store's inventory (store_inventory.c).  sync: writes every item of
 * server (keeping warned_level/expired_sent of an entry whose serial did
 * not change, writing nothing for an entry that did not change at all)
 * and removes the entries of that server that are not in items; entries of
 * other servers stay. */
int atls_store_inventory_sync(atls_store_t *st, const char *server,
                              const atls_inventory_item_t *items, size_t n,
                              char *err, size_t errlen);
/* Every entry, sorted by id (an entry that does not parse is skipped with
 * a WARN naming it). */
int atls_store_inventory_list(atls_store_t *st, atls_inventory_item_t **items, size_t *n,
                              char *err, size_t errlen);
/* Rewrites one entry (its alert state changed). */
int atls_store_inventory_save(atls_store_t *st, const atls_inventory_item_t *it,
                              char *err, size_t errlen);

/* Logs each finding of items once (WARN for warnings, ERR for critical),
 * naming the file and the server blocks using it: a host calls it at
 * start/reload, in the master / parent only. */
void atls_inventory_log_findings(const atls_inventory_item_t *items, size_t n,
                                 const atls_warn_t *w, time_t now);

#endif
