/*
 * autotls CLI: shared option parsing, store helpers and the standalone
 * challenge responders the issue/renew commands run while an order is open.
 */
#ifndef AUTOTLS_CLI_H
#define AUTOTLS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "atls.h"
#include "atls_acme.h"
#include "atls_acme_drive.h"
#include "atls_crypto.h"
#include "atls_event.h"
#include "atls_policy.h"
#include "atls_store.h"

/* Exit codes: 0 success, 1 the operation failed, 2 bad usage. */
#define CLI_EXIT_OK     0
#define CLI_EXIT_FAIL   1
#define CLI_EXIT_USAGE  2

/* Which options a command accepts (and, after parsing, which were given):
 * one bit each in a 64-bit set. */
#define CLI_O_DIRECTORY        (UINT64_C(1) << 0)
#define CLI_O_CA_FILE          (UINT64_C(1) << 1)
#define CLI_O_STORE            (UINT64_C(1) << 2)
#define CLI_O_CONTACT          (UINT64_C(1) << 3)
#define CLI_O_AGREE_TOS        (UINT64_C(1) << 4)
#define CLI_O_EAB_KID          (UINT64_C(1) << 5)
#define CLI_O_EAB_HMAC         (UINT64_C(1) << 6)
#define CLI_O_CHALLENGE        (UINT64_C(1) << 7)
#define CLI_O_HTTP_PORT        (UINT64_C(1) << 8)
#define CLI_O_TLS_PORT         (UINT64_C(1) << 9)
#define CLI_O_DNS_HOOK         (UINT64_C(1) << 10)
#define CLI_O_KEY              (UINT64_C(1) << 11)
#define CLI_O_PROFILE          (UINT64_C(1) << 12)
#define CLI_O_PROFILE_REQ      (UINT64_C(1) << 13)
#define CLI_O_PREFERRED_CHAIN  (UINT64_C(1) << 14)
#define CLI_O_RENEW_BEFORE     (UINT64_C(1) << 15)
#define CLI_O_LISTEN           (UINT64_C(1) << 16)
#define CLI_O_JSON             (UINT64_C(1) << 17)
#define CLI_O_REQUEST          (UINT64_C(1) << 18)
#define CLI_O_REASON           (UINT64_C(1) << 19)
#define CLI_O_FORCE            (UINT64_C(1) << 20)
#define CLI_O_VERBOSE          (UINT64_C(1) << 21)
#define CLI_O_CSR_CN           (UINT64_C(1) << 22)
#define CLI_O_ALL              (UINT64_C(1) << 23)
#define CLI_O_PARALLEL         (UINT64_C(1) << 24)
#define CLI_O_EACH             (UINT64_C(1) << 25)
#define CLI_O_NAME             (UINT64_C(1) << 26)
#define CLI_O_SINCE            (UINT64_C(1) << 27)
#define CLI_O_EXEC             (UINT64_C(1) << 28)
#define CLI_O_WEBHOOK          (UINT64_C(1) << 29)
#define CLI_O_HEADER           (UINT64_C(1) << 30)
#define CLI_O_SNI              (UINT64_C(1) << 31)
#define CLI_O_TARGETS          (UINT64_C(1) << 32)
#define CLI_O_HOME             (UINT64_C(1) << 40)   /* add --issuer HOME */
#define CLI_O_FROM_FILE        (UINT64_C(1) << 41)   /* add --from-file F */
#define CLI_O_FROM             (UINT64_C(1) << 48)   /* migrate --from SPEC */
#define CLI_O_TO               (UINT64_C(1) << 49)   /* migrate --to SPEC */
#define CLI_O_NEW_KEY          (UINT64_C(1) << 50)   /* rekey --new-key FILE */

/* The options that describe how to get a certificate (issue; renew overrides). */
#define CLI_O_ISSUER (CLI_O_DIRECTORY | CLI_O_CA_FILE | CLI_O_CONTACT \
    | CLI_O_AGREE_TOS | CLI_O_EAB_KID | CLI_O_EAB_HMAC | CLI_O_CHALLENGE \
    | CLI_O_HTTP_PORT | CLI_O_TLS_PORT | CLI_O_DNS_HOOK | CLI_O_KEY \
    | CLI_O_PROFILE | CLI_O_PROFILE_REQ | CLI_O_PREFERRED_CHAIN \
    | CLI_O_RENEW_BEFORE | CLI_O_LISTEN | CLI_O_CSR_CN)

/* What a store records that makes autotls talk to a server, trust a CA or
 * run a program: used on a store another user owns only when given again. */
#define CLI_O_VOUCHED (CLI_O_DIRECTORY | CLI_O_CA_FILE | CLI_O_DNS_HOOK)

typedef struct {
    uint64_t        given;          /* CLI_O_* bits seen on the command line */
    const char     *store_dir;
    atls_issuer_t   issuer;         /* only the members whose bit is in `given` */
    const char     *listen_address; /* NULL: every address */
    int             reason;         /* revoke */
    int             verbose;
    char          **names;          /* operands (borrowed from argv) */
    size_t          n_names;
    size_t          parallel;       /* --parallel N; 0: the core's default */
    const char     *name_filter;    /* audit --name */
    time_t          since;          /* audit --since, as a time; 0: not given */
    const char     *notify_exec;    /* notify-test --exec PATH */
    const char     *notify_webhook; /* notify-test --webhook URL */
    const char    **notify_headers; /* notify-test --header (malloc'd array) */
    size_t          n_notify_headers;
    const char     *sni;            /* scan --sni NAME */
    const char     *targets;        /* scan --targets FILE */
    const char     *home;           /* add --issuer HOME (a dynamic home) */
    const char     *from_file;      /* add --from-file F ("-": stdin) */
    const char     *from_spec;      /* migrate --from SPEC */
    const char     *to_spec;        /* migrate --to SPEC */
    const char     *new_key;        /* rekey --new-key FILE */
    /* set by cli_store_open when root works on a store another user owns
     * (and has become that user) */
    int             store_foreign;
    char            store_owner[64];
    /* who runs the CLI, taken by cli_store_open before it may become the
     * store's owner: the audit trail names the invoking user */
    atls_actor_t    actor;
    /* commands that change state, once the store is open (cli_events.c) */
    atls_events_t  *events;
    atls_policy_t  *policy;         /* the store's; NULL: none */
} cli_opts_t;

typedef struct {
    const char *name;
    uint64_t    accepts;            /* CLI_O_* */
    int         min_names;
    int         max_names;          /* -1: unlimited */
    int       (*run)(cli_opts_t *o);
    const char *usage;              /* the "--help" text */
} cli_command_t;

extern const cli_command_t cli_cmd_issue, cli_cmd_list, cli_cmd_show,
                           cli_cmd_renew, cli_cmd_revoke;
extern const cli_command_t cli_cmd_audit;

/* audit --since: an RFC 3339 time, or a duration ("2h": the last two hours
 * before now).  0 and *out; -1 after printing an error. */
int cli_audit_since(const char *arg, time_t now, time_t *out);
extern const cli_command_t cli_cmd_notify_test;

/* notify-test --header 'Name: value' (repeatable; cmd_notify.c).  0. */
int cli_notify_add_header(cli_opts_t *o, const char *line);
extern const cli_command_t cli_cmd_scan;

/* The registry of dynamic names (cmd_names.c); list prints it after the
 * certificates (nothing when the store has none).  Exit code. */
extern const cli_command_t cli_cmd_add, cli_cmd_remove;
int cli_list_names(atls_store_t *st, const char *store_dir);

/* Moving a store between backends, and rotating the Redis key file
 * (cmd_migrate.c, cmd_rekey.c). */
extern const cli_command_t cli_cmd_migrate, cli_cmd_rekey;

/* Prints "autotls: <formatted>" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A usage error: "autotls: CMD: <formatted>" plus the --help hint; returns
 * CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Opens --store (required by every command); NULL after printing an error.
 * Run as root on a store another user owns, first becomes that user for
 * good (see cli_util.c). */
atls_store_t *cli_store_open(cli_opts_t *o);

/* After a command changed certs/<id>/ of a Redis store: bumps the
 * certificate's generation and announces it, so that every server's mirror
 * takes it (atls_store_redis_announce); nothing on a directory.  A failure
 * is a warning: servers also catch up at their next sync. */
void cli_store_changed(atls_store_t *st, const char *id);

/* On a store another user owns (o->store_foreign), the settings it records
 * that make autotls talk to a server, trust a CA or run a program count
 * only when given again on the command line, with the same value.  which:
 * CLI_O_DIRECTORY | CLI_O_CA_FILE | CLI_O_DNS_HOOK.  0, or -1 after
 * printing which option to pass ("VERB NAME: ..."). */
int cli_issuer_vouch(const cli_opts_t *o, uint64_t which, const char *verb,
                     const char *name, const atls_issuer_t *is);

/* Finds the certificate that has `name` among its names (or as its id).
 * 0 and *m filled; -1 after printing an error. */
int cli_find_cert(atls_store_t *st, const char *name, atls_cert_meta_t *m);

/* Applies the issuer options the user gave on top of dst (renew overrides,
 * or a fresh issuer for issue). */
void cli_issuer_apply(const cli_opts_t *o, atls_issuer_t *dst);

/* Key types of an issuer (default ec256 when none). */

/* "<store>/certs/<id>/<keytype>.pem" into buf. */
void cli_cert_path(const char *store_dir, const char *id, atls_key_type_t kt,
                   char *buf, size_t len);

/* Formats t as RFC 3339 or "-" when 0. */
const char *cli_time(time_t t, char *buf, size_t len);

/* Whole days from now to t (negative when past), rounded toward -inf. */
long cli_days_left(time_t t, time_t now);

/* Obtains certificates for m (every key type), answering challenges with
 * standalone responders; prints the result.  Shared by issue and renew. */
int cli_obtain(atls_store_t *st, const cli_opts_t *o, const char *verb,
               atls_cert_meta_t *m);

/* Obtains certificates for n certificates at once (issue --each, renew
 * --all), answering every challenge with shared standalone responders
 * (one per port the certificates record); prints each result.  Exit code. */
int cli_obtain_many(atls_store_t *st, const cli_opts_t *o, const char *verb,
                    atls_cert_meta_t *const *metas, size_t n);

/* Prints the certificate(s) a store holds for id (issue/renew summary). */
void cli_print_obtained(atls_store_t *st, const char *store_dir, const char *id);

/* ---- events and policy (cli_events.c) ---------------------------------- */

/* The emitter of a command that changes state (o->events): actor "cli",
 * the sinks of the store's notify.json, -v prints each event; and the
 * store's policy (o->policy; one that cannot be read makes
 * cli_policy_check refuse everything).  0, or -1 after printing an error. */
int cli_events_open(atls_store_t *st, cli_opts_t *o, const char *verb);
void cli_events_close(cli_opts_t *o);

/* Records e (a warning when the audit record could not be written). */
void cli_emit(const cli_opts_t *o, const atls_event_t *e);
/* An event of type about m (id, names, CA directory; m borrowed). */
void cli_event_of_meta(atls_event_t *e, atls_event_type_t type, const atls_cert_meta_t *m);

/* 0 when the store's policy allows names with is; else prints which rule
 * and value refuse it, emits policy-denied and returns -1. */
int cli_policy_check(const cli_opts_t *o, const char *verb, const char *const *names,
                     size_t n, const atls_issuer_t *is);

/* ---- standalone responders -------------------------------------------- */

typedef struct cli_http_s cli_http_t;
typedef struct cli_tls_s cli_tls_t;

/* The responders one order (or several at once) publishes challenges on;
 * a NULL member means that challenge type has no responder. */
typedef struct {
    cli_http_t *http;
    cli_tls_t  *tls;
} cli_responders_t;

/* Challenge operations publishing on r (dns-01 is the job layer's hook). */
void cli_responder_ops(cli_responders_t *r, atls_challenge_ops_t *ops);

/* Listens on addr:port (addr NULL = every address) and answers
 * /.well-known/acme-challenge/TOKEN from a table. */
cli_http_t *cli_http_start(const char *addr, int port, char *err, size_t errlen);
int  cli_http_add(cli_http_t *h, const char *token, const char *key_authz);
void cli_http_remove(cli_http_t *h, const char *token);
void cli_http_stop(cli_http_t *h);

/* Listens on addr:port and answers tls-alpn-01 (RFC 8737) handshakes. */
cli_tls_t *cli_tls_start(const char *addr, int port, char *err, size_t errlen);
int  cli_tls_add(cli_tls_t *t, const char *identifier, const char *key_authz,
                 char *err, size_t errlen);
void cli_tls_remove(cli_tls_t *t, const char *identifier);
void cli_tls_stop(cli_tls_t *t);

/* Opens a listening TCP socket on addr:port (shared by both responders). */
int cli_listen(const char *addr, int port, char *err, size_t errlen);

/* How a responder serves one connection on the shared loop (standalone.c). */
typedef struct {
    /* state for a new non-blocking connection; NULL closes it */
    void *(*open)(void *arg, int fd);
    /* makes progress without blocking: POLLIN or POLLOUT to wait for, 0 done */
    int   (*step)(void *arg, void *conn);
    void  (*close)(void *arg, void *conn);
} cli_conn_ops_t;

/* Serves connections on listen_fd concurrently, each within a total
 * deadline, until a byte arrives on stop_fd; then closes them all. */
void cli_accept_loop(int listen_fd, int stop_fd, const cli_conn_ops_t *ops, void *arg);

#endif
