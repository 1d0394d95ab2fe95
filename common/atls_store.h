/*
 * The store: the durable truth about accounts, keys, certificates and job
 * state.  An interface (ops table) so that a Redis backend can follow; the
 * filesystem backend is atls_store_fs_open().
 *
 * Logical layout (paths are relative, '/'-separated; the fs backend maps
 * them under its root directory):
 *   accounts/<ca-id>/account.key     private (0600)   account key PEM
 *   accounts/<ca-id>/account.json    {"directory","url","contact"}
 *   certs/<cert-id>/meta.json        atls_cert_meta_t as JSON
 *   certs/<cert-id>/<keytype>.pem    private (0600)   key PEM + chain PEM,
 *                                    one file so key and chain change together
 *   requests/<cert-id>               an operator asked to renew now
 *   challenges/http-01/<token>       key authorisation while an order validates
 *   challenges/tls-alpn-01/<name>    private (0600)   challenge cert + key PEM
 *   fallback/<cert-id>/<keytype>.crt self-signed stand-in (Apache's mod_ssl)
 *   fallback/<cert-id>/<keytype>.key private (0600)   its key
 *   locks/<name>.lock                flock targets: cert-<cert-id>,
 *                                    account-<ca-id>, generation
 *   certs/<cert-id>/<keytype>.ocsp   the OCSP response (DER) stapled with
 *                                    that certificate, as verified when fetched
 *   crl/<url-id>.der                 a CRL as fetched from its URL (DER)
 *   crl/<url-id>.json                {"url","etag","last_modified","fetched",
 *                                    "this_update","next_update","next_fetch"}
 *   generation                       decimal counter, bumped on every deploy
 *                                    and every new OCSP response
 *   changes.log, changes.log.1       "<generation> <cert-id>" per bump: what
 *                                    changed, so watchers read only that
 *   audit.log, audit.log.1 ...       the audit trail, JSON lines, append-only,
 *                                    rotated by size (audit.log.1 the newest
 *                                    old one), ATLS_AUDIT_KEEP old files kept
 *   events/<key>.json                the notification queue, one entry per
 *                                    event (key sorts by time)
 *   counters.json                    {"events.renewed": N, "orders.ok": N, ...}
 *   notify.json       private (0600) the server's atls_notify_conf_t
 *   policy.json                      the server's atls_policy_t (atls_policy.h)
 *   inventory/<item-id>.json         a certificate the server serves that
 *                                    autotls does not manage (atls_inventory.h)
 * Every entry has its typed call below; nothing outside the store files
 * (store.c, store_revocation.c) builds a path (docs/store.md lists who
 * writes and reads each one).
 * <ca-id> = directory URL with every char outside [A-Za-z0-9.-] as '_'.
 * <cert-id> = the certificate's first name, '*' written as '_'.
 * <url-id> = lower-case hex SHA-256 of the CRL's URL.
 *
 * Writes are atomic (temp file in the same directory created with its final
 * mode, fsync, rename, fsync dir).  Directories 0700, private files 0600,
 * public files 0644, never a set-id bit.
 *
 * The store belongs to the server's worker user and is a privilege
 * boundary: the fs backend resolves every path beneath the store root
 * without following links, opens regular files only (a FIFO or device is
 * refused, named in the error), caps reads at 1 MiB (the CRLs of the CRL
 * cache at ATLS_CRL_MAX_BYTES), and a root process works on a store owned
 * by someone else with that user's filesystem identity, so new files
 * belong to the owner (see store_fs.c).
 */
#ifndef ATLS_STORE_H
#define ATLS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include "atls.h"
#include "atls_crypto.h"
#include "atls_acme.h"
#include "atls_schedule.h"
#include "atls_ocsp.h"
#include "atls_event.h"

#define ATLS_STORE_OK        0
#define ATLS_STORE_NOTFOUND  1
#define ATLS_STORE_ERROR    -1
#define ATLS_STORE_BUSY      2   /* lock held elsewhere */

typedef struct atls_store_s atls_store_t;
typedef struct atls_store_lock_s atls_store_lock_t;

/* One file of a batch written by put_many (atls_store_put_many): name is
 * one path component (atls_store_id_ok) of the batch's directory. */
typedef struct {
    const char *name;
    const char *data;
    size_t      len;
    int         is_private;
} atls_store_file_t;

/* The files of one directory in a batch over several (put_groups). */
typedef struct {
    const char              *dir;
    const atls_store_file_t *files;
    size_t                   n;
} atls_store_group_t;

typedef struct {
    const char *name;   /* "fs" */
    int  (*get)(atls_store_t *st, const char *path, char **data, size_t *len,
                char *err, size_t errlen);
    int  (*put)(atls_store_t *st, const char *path, const char *data, size_t len,
                int is_private, char *err, size_t errlen);
    int  (*del)(atls_store_t *st, const char *path, char *err, size_t errlen);
    /* names of the entries directly under dir (files or sub-directories), sorted */
    int  (*list)(atls_store_t *st, const char *dir, char ***names, size_t *n,
                 char *err, size_t errlen);
    /* exclusive lock named `name`; wait=0 -> ATLS_STORE_BUSY if held */
    int  (*lock)(atls_store_t *st, const char *name, int wait, atls_store_lock_t **out,
                 char *err, size_t errlen);
    void (*unlock)(atls_store_t *st, atls_store_lock_t *lk);
    void (*close)(atls_store_t *st);
    /* one record appended to the file at path: one write of data plus
     * '\n' (O_APPEND), fsync; when the file has reached rotate_bytes
     * first (0: never), path.N -> path.N+1 (keeping `keep`), path -> path.1,
     * under the backend's own lock.  The backend refuses data holding a
     * newline. */
    int  (*append)(atls_store_t *st, const char *path, const char *data, size_t len,
                   size_t rotate_bytes, unsigned keep, char *err, size_t errlen);
    /* optional (NULL: store.c pages one `list`): the entries under dir in
     * pages of at most max, see atls_store_list_page; *cursor NULL starts,
     * the backend sets it NULL when the listing is complete */
    int  (*list_page)(atls_store_t *st, const char *dir, void **cursor, size_t max,
                      char ***names, size_t *n, char *err, size_t errlen);
    void (*list_end)(atls_store_t *st, void *cursor);
    /* Batches (issue 11: 1,000 names cost O(1) fsyncs of shared files).
     * Optional: NULL falls back to put / nothing / one append a record.
     * put_nosync: put without the directory's fsync (the file itself is
     * fsync'd before its rename, so a crash still leaves old or new); the
     * caller calls sync_dir(dir) before anything that names the file is
     * written.  append_many: the n records (each as append's) in order,
     * in writes of whole records and one fsync. */
    int  (*put_nosync)(atls_store_t *st, const char *path, const char *data, size_t len,
                       int is_private, char *err, size_t errlen);
    int  (*sync_dir)(atls_store_t *st, const char *dir, char *err, size_t errlen);
    int  (*append_many)(atls_store_t *st, const char *path, const char *const *recs,
                        const size_t *lens, size_t n, size_t rotate_bytes, unsigned keep,
                        char *err, size_t errlen);
    /* Optional (NULL: atls_store_put_many loops over put): the n files of
     * dir written as one batch with O(1) syncs, see atls_store_put_many. */
    int  (*put_many)(atls_store_t *st, const char *dir, const atls_store_file_t *files,
                     size_t n, size_t *done, char *err, size_t errlen);
    /* Optional (NULL: put_many a group): several directories' files as
     * one batch, see atls_store_put_groups. */
    int  (*put_groups)(atls_store_t *st, const atls_store_group_t *groups, size_t n,
                       size_t *done, char *err, size_t errlen);
    /* Optional (NULL: get, then the length checked): get refusing a file
     * larger than max bytes before reading more of it, err naming it. */
    int  (*get_max)(atls_store_t *st, const char *path, size_t max, char **data,
                    size_t *len, char *err, size_t errlen);
} atls_store_ops_t;

struct atls_store_s {
    const atls_store_ops_t *ops;
    void                   *impl;
    char                   *location;   /* for messages: directory or URL */
};

/* Opens (creating with 0700 if missing) a filesystem store. NULL + err. */
atls_store_t *atls_store_fs_open(const char *dir, char *err, size_t errlen);
/* Like open, but for the master/parent: creates the directory tree and
 * hands it to uid/gid (-1 = leave), tightening modes on the way.  Safe as
 * root against a worker rewriting the tree meanwhile: works through
 * descriptors, leaves links, special and hard-linked files alone. */
int atls_store_fs_prepare(const char *dir, long uid, long gid, char *err, size_t errlen);
/* The same for a server's start: the root and its fixed sub-directories
 * are handed over at once, the walk beneath gets the time budget of
 * AUTOTLS_PREPARE_BUDGET_MS (default ATLS_PREPARE_BUDGET_MS) and, when
 * that is not enough, goes on in a detached root process that appends its
 * warnings to log_path (the server's error log; NULL or "": syslog) and
 * writes the `prepared` stamp when done.  0: walked; 1: the walk goes on
 * in the background (started now, or already running: one per store);
 * -1 + err as atls_store_fs_prepare (a walk in the time budget fails as
 * that does). */
#define ATLS_PREPARE_BUDGET_MS  500
int atls_store_fs_prepare_start(const char *dir, long uid, long gid, const char *log_path,
                                char *err, size_t errlen);
void atls_store_close(atls_store_t *st);

/* ---- issuer settings and per-certificate metadata --------------------- */

typedef struct {
    char                 *directory;     /* ACME directory URL */
    char                 *ca_file;       /* trust for the ACME server's TLS, or NULL */
    char                **contact;       /* "mailto:..." */
    size_t                n_contact;
    int                   agree_tos;
    atls_challenge_type_t challenge;
    char                 *dns_hook;
    char                 *eab_kid;       /* EAB: account creation only; not persisted */
    char                 *eab_hmac;      /*   in meta.json (the HMAC is a secret) */
    atls_key_type_t       key_types[ATLS_KEY_TYPE_MAX];
    size_t                n_key_types;   /* 0 -> ec256 */
    char                 *profile;
    int                   profile_required;
    char                 *preferred_chain;
    atls_renew_policy_t   renew;
    int                   http_port;     /* CLI standalone responders */
    int                   tls_port;
    int                   csr_cn;        /* put names[0] in the CSR subject CN too */
    int                   insecure_ca_urls; /* tests: the CA's URLs may be http or
                                               on another origin (default: refused) */
    int                   stapling_off;  /* 0 (default): fetch, verify and staple
                                            OCSP responses where the certificate
                                            names a responder; 1: never ask a
                                            responder (CRLs are checked instead) */
    int                   must_staple;   /* TLS Feature status_request in the CSR
                                            (RFC 7633); refused by normalise with
                                            stapling_off */
} atls_issuer_t;

void atls_issuer_free(atls_issuer_t *is);   /* frees members */
void atls_issuer_copy(atls_issuer_t *dst, const atls_issuer_t *src);

/* Upper bound for max_parallel (concurrent orders) in every host's settings. */
#define ATLS_MAX_PARALLEL_LIMIT 256

/* The one set of rules for issuer settings, applied by every host after
 * parsing (issuer.c): a contact without a scheme gets "mailto:" (and must
 * then look like an address); key types: at most ATLS_KEY_TYPE_MAX, no
 * duplicates, at most one EC and one RSA; EAB key id and HMAC both or
 * neither.  0 ok (is may have been rewritten), -1 with err. */
int atls_issuer_normalise(atls_issuer_t *is, char *err, size_t errlen);

typedef enum {
    ATLS_STATE_PENDING = 0,   /* no certificate yet */
    ATLS_STATE_VALID,
    ATLS_STATE_RENEWING,
    ATLS_STATE_FAILED         /* last attempt failed; see last_error */
} atls_cert_state_t;
const char *atls_cert_state_name(atls_cert_state_t s);

/* What the store holds for one key type, recorded in meta.json at each
 * deploy, so that deciding what is due reads no certificate file. */
typedef struct {
    atls_key_type_t    key_type;
    time_t             not_before;
    time_t             not_after;
    char              *serial;        /* hex, as atls_cert_info gives it */
    char             **names;         /* the names it covers (its SANs) */
    size_t             n_names;

    /* Where revocation is published, read from the leaf at deploy (and
     * at backfill): NULL when it names none. */
    char              *ocsp_url;
    char              *crl_url;

    /* OCSP, for this certificate (reset at each deploy).  ocsp_status NONE
     * with ocsp_url set: not asked yet.  The response itself is in the
     * store (<keytype>.ocsp) only while it answers "good". */
    atls_ocsp_status_t ocsp_status;
    time_t             ocsp_this_update;
    time_t             ocsp_next_update;   /* atls_ocsp_valid_until of it */
    time_t             ocsp_next_refresh;  /* fetch again from then on */
    unsigned           ocsp_failures;      /* consecutive */
    char              *ocsp_error;         /* the last failure; NULL after a success */

    /* Known revoked (by an OCSP answer, a CRL, or `autotls revoke`): the
     * plan replaces this key type's certificate at once.  revoked_seen 0:
     * not known revoked. */
    time_t             revoked_seen;       /* when autotls learned it */
    time_t             revoked_at;         /* revocation time the CA gave (0: none) */
    int                revoked_reason;     /* CRLReason, -1 unspecified */
    char              *revoked_source;     /* "ocsp", "crl" or "operator" */

    /* Expiry alerts sent for this certificate (reset at each deploy):
     * the smallest atls_warn_t level an `expiring` event was emitted for
     * (0: none yet), and when `expired` was emitted (0: not yet). */
    long               warned_level;
    time_t             expired_sent;
} atls_cert_kt_info_t;

typedef struct {
    char              *id;            /* cert-id (derived from names[0]) */
    char             **names;
    size_t             n_names;
    atls_issuer_t      issuer;
    atls_cert_state_t  state;
    unsigned           failures;      /* consecutive */
    time_t             next_attempt;  /* 0 = as soon as due */
    time_t             last_attempt;
    time_t             last_success;
    time_t             renew_at;      /* from schedule or ARI */
    char              *last_error;    /* "type: detail", NULL when none (for
                                         display; the parts are below) */
    /* The last failure in parts (all NULL / NONE when the last attempt
     * succeeded): class, CA problem type or "autotls:...", detail, and the
     * key type whose order failed. */
    atls_err_class_t   last_error_class;
    char              *last_error_type;
    char              *last_error_detail;
    char              *last_error_key_type;
    char              *account_url;
    uint64_t           generation;    /* bumped on every new certificate and
                                         every new (or withdrawn) OCSP response:
                                         what workers must load again */
    /* ARI (RFC 9773) for the current certificate; all 0 until first asked.
     * next_check set with no window: the CA offers no renewal information. */
    time_t             ari_next_check;    /* ask the CA again from then on */
    time_t             ari_window_start;  /* the CA's last suggested window */
    time_t             ari_window_end;
    unsigned           ari_failures;      /* consecutive failed ARI queries */
    /* The certificates in the store, one entry per key type that has one
     * (n_kt_info of them); filled at deploy, and once from the files for a
     * store written before these entries existed (atls_job_ensure). */
    atls_cert_kt_info_t kt_info[ATLS_KEY_TYPE_MAX];
    size_t             n_kt_info;
} atls_cert_meta_t;

void atls_cert_meta_free(atls_cert_meta_t *m);
/* meta <-> JSON text (malloc'd).  from_json: 0 ok, -1 with err naming the field. */
char *atls_cert_meta_to_json(const atls_cert_meta_t *m);
/* Deep copy of s into d (which is overwritten, not freed). */
void atls_cert_meta_copy(atls_cert_meta_t *d, const atls_cert_meta_t *s);
/* Records (or replaces) the kt_info entry for info->key_type: the OCSP and
 * revocation fields start over (a new certificate), ocsp_url and crl_url
 * are read from leaf when it is not NULL. */
void atls_cert_meta_set_kt_info(atls_cert_meta_t *m, const atls_cert_info_t *info);
void atls_cert_meta_set_kt_leaf(atls_cert_meta_t *m, const atls_cert_info_t *info,
                                X509 *leaf);
/* Frees ki's members and zeroes it. */
void atls_cert_kt_info_clear(atls_cert_kt_info_t *ki);
/* The mutable kt_info entry for kt, or NULL. */
atls_cert_kt_info_t *atls_cert_meta_kt(atls_cert_meta_t *m, atls_key_type_t kt);
/* Records e as the last error in parts plus last_error "type: detail";
 * NULL clears them all. */
void atls_cert_meta_set_error(atls_cert_meta_t *m, const atls_error_t *e);
int atls_cert_meta_from_json(const char *json, size_t len, atls_cert_meta_t *m,
                             char *err, size_t errlen);

/* "example.com" -> cert-id; "*.example.com" -> "_.example.com". malloc'd. */
char *atls_cert_id(const char *first_name);
char *atls_ca_id(const char *directory_url);

/* ---- typed helpers over the ops (backend-agnostic) -------------------- */

int atls_store_load_meta(atls_store_t *st, const char *id, atls_cert_meta_t *m,
                         char *err, size_t errlen);
int atls_store_save_meta(atls_store_t *st, const atls_cert_meta_t *m,
                         char *err, size_t errlen);
/* 1 when the store holds a certificate for id: its meta lists at least
 * one key type's facts (n_kt_info > 0, recorded at every deploy); 0 when
 * it does not, or the meta is missing or cannot be read.  The one answer
 * to "is there a certificate to serve" for every host (a first order's
 * "renewing" meta has none).  (Added to the issue-11 contract by the
 * ngx100k helper.) */
int atls_store_has_cert(atls_store_t *st, const char *id);
/* sorted cert-ids */
int atls_store_list_certs(atls_store_t *st, char ***ids, size_t *n, char *err, size_t errlen);

/* A listing in pages, for a directory too large to read in one call
 * (100,000 registered names): *cursor NULL starts one; each call gives up
 * to max (>= 1) entries of dir (files or sub-directories, malloc'd, in no
 * particular order, each entry present throughout given once; one added
 * or removed meanwhile may or may not be) and sets *cursor NULL once the
 * listing is complete (its last entries, maybe none, are in names).  A
 * missing dir lists nothing.  A caller that stops early ends the listing
 * with atls_store_list_end (NULL is fine).  ATLS_STORE_OK, or
 * ATLS_STORE_ERROR + err (the listing is ended, *cursor NULL).  Backends
 * without a paged list of their own (ops->list_page NULL) are listed once
 * at the first call and handed out in pages.  (Added to the issue-11
 * contract by the ngx100k helper.) */
typedef struct atls_store_cursor_s atls_store_cursor_t;
int atls_store_list_page(atls_store_t *st, const char *dir, atls_store_cursor_t **cursor,
                         size_t max, char ***names, size_t *n, char *err, size_t errlen);
void atls_store_list_end(atls_store_t *st, atls_store_cursor_t *cursor);

/* n files of dir (files[i].name in dir; a name given twice: the later
 * wins) written as one
 * batch (issue 11: 10,000 registered names in O(1) syncs).  The
 * filesystem store writes every temp file (mode 0600 when is_private, else
 * 0644, O_EXCL, no link followed), makes them all durable with one
 * syncfs(2), renames them in order, then fsyncs dir once.  A crash leaves
 * each file old or new, never torn.  *done: how many files, from
 * files[0], are new; the others are as they were.  A failure before the
 * renames (a temp that cannot be written, the sync) leaves every file old
 * (*done 0) and no temp behind; a rename failing (rare: something planted
 * under a final name) leaves files[0..*done-1] new, the rest old, no temp
 * behind.  Backends without the op are written with put, one after the
 * other, stopping at the first failure (the same *done).  ATLS_STORE_OK
 * (*done n) or ATLS_STORE_ERROR + err naming the file.  (Added to the
 * issue-11 contract by the bulksync helper.) */
int atls_store_put_many(atls_store_t *st, const char *dir, const atls_store_file_t *files,
                        size_t n, size_t *done, char *err, size_t errlen);
/* The same over n groups of files, each of its own directory (issue 12: a
 * node's mirror pulling many certificates in one step with one syncfs).
 * The filesystem store writes every temp of every group, one syncfs(2),
 * renames them in array order, group after group, then makes the renames
 * durable (the directory's fsync when all were in groups[0], else a
 * second syncfs).  A crash leaves each file old or new, never torn, but
 * renames not yet durable may reach the disk in any order: a caller whose
 * files are named by another (a generation record) writes that one in a
 * later call, after this one returned.  *done: the groups, from
 * groups[0], wholly new; a failure
 * before the renames leaves every file old; a rename failing leaves the
 * groups before it new, that group's files before it new, the rest old;
 * no temp is left behind.  Backends without the op: atls_store_put_many a
 * group, stopping at the first failure.  ATLS_STORE_OK (*done n) or
 * ATLS_STORE_ERROR + err naming the file.  (Added to the issue-12
 * contract by the mirrorbatch helper.) */
int atls_store_put_groups(atls_store_t *st, const atls_store_group_t *groups, size_t n,
                          size_t *done, char *err, size_t errlen);
/* get of a file that may not exceed max bytes (a small file a privileged
 * process reads: names-count): a larger one is ATLS_STORE_ERROR, err
 * naming it, without reading it all.  (Added by the bulksync helper.) */
int atls_store_get_max(atls_store_t *st, const char *path, size_t max, char **data,
                       size_t *len, char *err, size_t errlen);

/* Key + chain for one key type.  Each out may be NULL. */
int atls_store_load_cert(atls_store_t *st, const char *id, atls_key_type_t kt,
                         EVP_PKEY **key, STACK_OF(X509) **chain, char *err, size_t errlen);
/* The leaf certificate alone, for display: the key block in the file is
 * skipped without being decoded, the rest of the chain too. */
int atls_store_load_leaf(atls_store_t *st, const char *id, atls_key_type_t kt,
                         X509 **leaf, char *err, size_t errlen);
/* The same, with the certificate after the leaf in the chain (its issuer;
 * NULL when the chain holds the leaf alone), for revocation checks. */
int atls_store_load_leaf_issuer(atls_store_t *st, const char *id, atls_key_type_t kt,
                                X509 **leaf, X509 **issuer, char *err, size_t errlen);
/* Validates (chain_check) then writes key+chain atomically. */
int atls_store_save_cert(atls_store_t *st, const char *id, atls_key_type_t kt,
                         EVP_PKEY *key, const char *chain_pem, char *err, size_t errlen);

/* Account for a CA: key (generated ES256 and saved when missing, *created=1),
 * and its URL when known (*url NULL otherwise). */
int atls_store_load_account(atls_store_t *st, const char *directory_url,
                            EVP_PKEY **key, char **url, int *created,
                            char *err, size_t errlen);
int atls_store_save_account(atls_store_t *st, const char *directory_url,
                            const char *url, char *const *contact, size_t n_contact,
                            char *err, size_t errlen);

/* Challenge answers while an order validates: http-01 key authorisations
 * under their token, tls-alpn-01 certificates (key + certificate PEM,
 * private) under the identifier.  key is checked (token syntax, or a
 * lower-case hostname / IP literal) and never used as a path as given:
 * ATLS_STORE_ERROR + err when it does not pass. */
int atls_store_put_challenge(atls_store_t *st, atls_challenge_type_t t, const char *key,
                             const char *data, size_t len, char *err, size_t errlen);
int atls_store_get_challenge(atls_store_t *st, atls_challenge_type_t t, const char *key,
                             char **data, size_t *len, char *err, size_t errlen);
int atls_store_del_challenge(atls_store_t *st, atls_challenge_type_t t, const char *key,
                             char *err, size_t errlen);

/* Operator renew requests (CLI `renew --request`). */
int atls_store_request_renew(atls_store_t *st, const char *id, char *err, size_t errlen);
/* The moment a request for id was made (0 when unreadable) when one is
 * pending: 1; else 0.  Only looks. */
int atls_store_peek_request(atls_store_t *st, const char *id, time_t *when);
/* 1 and removes the request if one is pending for id, else 0. */
int atls_store_take_request(atls_store_t *st, const char *id);
/* The ids with a request pending (sorted; one listing, no file read):
 * the scheduler's passes look at those whatever their schedule. */
int atls_store_list_requests(atls_store_t *st, char ***ids, size_t *n, char *err,
                             size_t errlen);

/* The lock every writer of one certificate's job state takes (renewal
 * jobs, ARI updates, revocation): locks/cert-<id>.lock.  wait=0 ->
 * ATLS_STORE_BUSY when another process holds it.  Unlock with
 * atls_store_unlock (NULL is fine). */
int atls_store_lock_cert(atls_store_t *st, const char *id, int wait,
                         atls_store_lock_t **lk, char *err, size_t errlen);
void atls_store_unlock(atls_store_t *st, atls_store_lock_t *lk);

/* 1 when the store records an account at this CA (its account.json, written
 * once the CA created it), else 0.  Only looks: never creates a key. */
int atls_store_has_account(atls_store_t *st, const char *directory_url);

/* Self-signed fallbacks, one per key type, for servers that must name
 * certificate files before any real certificate exists (Apache's mod_ssl).
 * save checks that key matches cert and writes the key (private) first;
 * load returns ATLS_STORE_ERROR when the pair does not match or the key is
 * not of type kt (half-written by a crash, or tampered with), so the caller
 * makes a new one.  del removes both files (NOTFOUND when neither was
 * there); prune removes every file of id's fallbacks that is not one of
 * keep's types (a type no longer configured, the single fallback.crt/.key
 * of earlier versions). */
int atls_store_save_fallback(atls_store_t *st, const char *id, atls_key_type_t kt,
                             EVP_PKEY *key, X509 *cert, char *err, size_t errlen);
int atls_store_load_fallback(atls_store_t *st, const char *id, atls_key_type_t kt,
                             EVP_PKEY **key, STACK_OF(X509) **chain,
                             char *err, size_t errlen);
int atls_store_del_fallback(atls_store_t *st, const char *id, atls_key_type_t kt,
                            char *err, size_t errlen);
int atls_store_prune_fallbacks(atls_store_t *st, const char *id,
                               const atls_key_type_t *keep, size_t n_keep,
                               char *err, size_t errlen);

/* Filesystem backend only: the absolute file name of a certificate in the
 * store at dir (key + chain PEM), to show an operator what a server's
 * certificate directive can name.  -1 and "-" in buf when id or kt does
 * not pass. */
int atls_store_fs_cert_file(const char *dir, const char *id, atls_key_type_t kt,
                            char *buf, size_t len);

/* OCSP responses stapled with a certificate (DER, public, 0644).  load:
 * ATLS_STORE_NOTFOUND when there is none; at most ATLS_OCSP_MAX_BYTES. */
int atls_store_save_ocsp(atls_store_t *st, const char *id, atls_key_type_t kt,
                         const unsigned char *der, size_t len, char *err, size_t errlen);
int atls_store_load_ocsp(atls_store_t *st, const char *id, atls_key_type_t kt,
                         unsigned char **der, size_t *len, char *err, size_t errlen);
int atls_store_del_ocsp(atls_store_t *st, const char *id, atls_key_type_t kt,
                        char *err, size_t errlen);

/* The CRL cache, one entry per URL, shared by every certificate naming it. */
typedef struct {
    char   *url;
    char   *etag;            /* for If-None-Match, NULL when the server gave none */
    char   *last_modified;   /* for If-Modified-Since, NULL likewise */
    time_t  fetched;         /* last successful fetch (200 or 304) */
    time_t  this_update;     /* of the CRL held */
    time_t  next_update;
    time_t  next_fetch;      /* not fetched again before */
} atls_crl_cache_t;
void atls_crl_cache_free(atls_crl_cache_t *c);   /* frees members */

/* der NULL: only the facts change (a 304 answer); else both are replaced,
 * the CRL first.  load: ATLS_STORE_NOTFOUND when nothing is cached for url;
 * der may be NULL when only the facts are wanted.  At most
 * ATLS_CRL_MAX_BYTES. */
int atls_store_save_crl(atls_store_t *st, const atls_crl_cache_t *c,
                        const unsigned char *der, size_t len, char *err, size_t errlen);
int atls_store_load_crl(atls_store_t *st, const char *url, atls_crl_cache_t *c,
                        unsigned char **der, size_t *len, char *err, size_t errlen);

/* Store-wide generation counter, bumped on every deploy by anyone: hosts
 * watch it to serve what others deployed.  0 when missing; 0 and a
 * warning when unreadable. */
uint64_t atls_store_generation(atls_store_t *st);
/* The same for a host that looks often: ATLS_STORE_ERROR with err, no log. */
int atls_store_read_generation(atls_store_t *st, uint64_t *gen, char *err, size_t errlen);
/* A bump that concerns no certificate's files (the names registry):
 * journaled as "-" (below). */
int atls_store_bump_generation(atls_store_t *st);

/* ---- the change journal (store_changes.c) ------------------------------- */

/* changes.log: one line "<generation> <cert-id>" per bump ("-": no
 * certificate), appended (append op) under the generation lock before the
 * generation is written; rotated to changes.log.1 past this size. */
#define ATLS_CHANGES_ROTATE_BYTES (64 * 1024)
/* A reader further behind than this many generations reads everything. */
#define ATLS_CHANGES_MAX_SPAN     4096

/* Bumps the store generation for a change of certificate id (a deploy, a
 * new or withdrawn OCSP response, a revocation, an operator's renew
 * request) and journals it; id NULL is atls_store_bump_generation. */
int atls_store_bump_generation_for(atls_store_t *st, const char *id);
/* The certificates changed by the bumps after generation `since` up to
 * `upto` (ids sorted, each once, malloc'd: atls_strv_free; n may be 0):
 * ATLS_STORE_OK.  ATLS_STORE_NOTFOUND when the journal does not account
 * for every generation of that range (rotated away, written by a version
 * without it, further back than ATLS_CHANGES_MAX_SPAN): the caller reads
 * every certificate, as without a journal.  ATLS_STORE_ERROR + err. */
int atls_store_changes_since(atls_store_t *st, uint64_t since, uint64_t upto, char ***ids,
                             size_t *n, char *err, size_t errlen);

/* ---- audit trail, notification queue, counters (store_events.c) -------- */

#define ATLS_STORE_FULL      3   /* the notification queue is at its bound */

#define ATLS_AUDIT_ROTATE_BYTES (1024 * 1024)  /* audit.log rotated beyond */
#define ATLS_AUDIT_KEEP          10            /* audit.log.1 .. .10 kept */

/* One audit record (a JSON object on one line, no newline in it). */
int atls_store_audit_append(atls_store_t *st, const char *json, size_t len,
                            char *err, size_t errlen);
/* n records in one go (atls_events_emit_many): on a backend with
 * append_many one write and one fsync of the log, whatever n. */
int atls_store_audit_append_many(atls_store_t *st, const char *const *recs,
                                 const size_t *lens, size_t n, char *err, size_t errlen);
/* The text of audit.log (n 0) or audit.log.n (oldest last);
 * ATLS_STORE_NOTFOUND when there is no such file. */
int atls_store_audit_read(atls_store_t *st, unsigned n, char **data, size_t *len,
                          char *err, size_t errlen);

/* The queue: entries named by a key that sorts by time of queueing
 * ("<unix-ms, 16 digits>-<8 hex random>").  put: ATLS_STORE_FULL when
 * max (0: ATLS_NOTIFY_QUEUE_MAX) entries are queued; *key (malloc'd, may
 * be NULL) names the new entry. */
int atls_store_queue_put(atls_store_t *st, const char *json, size_t len, size_t max,
                         char **key, char *err, size_t errlen);
/* sorted keys, oldest first */
int atls_store_queue_list(atls_store_t *st, char ***keys, size_t *n, char *err, size_t errlen);
int atls_store_queue_get(atls_store_t *st, const char *key, char **json, size_t *len,
                         char *err, size_t errlen);
/* Rewrites an entry (its delivery state changed). */
int atls_store_queue_update(atls_store_t *st, const char *key, const char *json, size_t len,
                            char *err, size_t errlen);
int atls_store_queue_del(atls_store_t *st, const char *key, char *err, size_t errlen);

/* Monotonic counters for metrics, under the store lock "counters":
 * "events.<event-name>", "orders.ok", "orders.failed". */
int atls_store_counter_add(atls_store_t *st, const char *name, uint64_t by,
                           char *err, size_t errlen);
/* Several counters (names[i] += by[i]) in one rewrite of counters.json. */
int atls_store_counters_add(atls_store_t *st, const char *const *names, const uint64_t *by,
                            size_t n, char *err, size_t errlen);
/* Every counter (names malloc'd, sorted); n 0 when none yet. */
int atls_store_counters_load(atls_store_t *st, char ***names, uint64_t **values,
                             size_t *n, char *err, size_t errlen);

/* The server's notification settings (notify.json, private).  load:
 * ATLS_STORE_NOTFOUND when none saved. */
int atls_store_save_notify_conf(atls_store_t *st, const atls_notify_conf_t *c,
                                char *err, size_t errlen);
int atls_store_load_notify_conf(atls_store_t *st, atls_notify_conf_t *c,
                                char *err, size_t errlen);

/* ---- opening a store from its spec (store_open.c) ---------------------- */

/* What every caller is given (the CLI's --store, a host's directive): a
 * directory path for the filesystem store, or `redis://...` /
 * `rediss://...` followed by its options in one string, separated by
 * blanks (`redis://127.0.0.1:6379/0 key_file=/etc/autotls/redis.key
 * prefix=a:`; atls_redis.h).  Another `scheme://` is refused. */
#define ATLS_STORE_SPEC_FS     0
#define ATLS_STORE_SPEC_REDIS  1
int atls_store_spec_is_redis(const char *spec);
/* Checks a spec without opening anything: ATLS_STORE_SPEC_FS or _REDIS, or
 * -1 with err naming the field (a Redis spec needs key_file).  The
 * password is never copied into err. */
int atls_store_spec_check(const char *spec, char *err, size_t errlen);

/* atls_store_open_spec flags */
#define ATLS_STORE_SPEC_KEY_OWNER 1u   /* Redis: the key_file must belong to
                                          the effective user or to root (the
                                          CLI: nobody else may choose the key
                                          that new values are sealed with) */
#define ATLS_STORE_SPEC_NO_KEY_CHECK 2u  /* Redis: skip the key check (autotls
                                          rekey, which checks old and new) */
/* The entry a Redis store holds to tell a wrong key_file at open: a known
 * text, sealed (written at the first open).  Redis only: migrate skips it. */
#define ATLS_STORE_KEYCHECK_PATH  "redis-key-check"
#define ATLS_STORE_KEYCHECK_TEXT  "autotls redis key check 1"

/* Opens the store a spec names: atls_store_fs_open() for a directory,
 * atls_store_redis_open() for Redis, then checks the key_file against the
 * store's key-check entry ("redis key_file F: ..." when it is not the key
 * the store's values are sealed with).  NULL + err (never the password). */
atls_store_t *atls_store_open_spec(const char *spec, unsigned flags, char *err, size_t errlen);
/* The key-file rule of ATLS_STORE_SPEC_KEY_OWNER (for `autotls rekey`'s
 * new key): 0, or -1 with err naming the file and its owner. */
int atls_store_key_file_owned(const char *file, char *err, size_t errlen);
/* Whether the entry at path holds a private key or a secret (written with
 * is_private: 0600 on the fs store, sealed in Redis). */
int atls_store_path_private(const char *path);

#endif
