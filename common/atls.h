/*
 * autotls core: common definitions shared by every area.
 *
 * The core knows no host: it logs through a callback the host installs and
 * never blocks on I/O inside the ACME engine.  Everything here is C11 with
 * GNU extensions (-std=gnu11) plus OpenSSL 3, libcurl, jansson.
 */
#ifndef ATLS_H
#define ATLS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ATLS_VERSION    "0.1.0"
#define ATLS_USER_AGENT "autotls/" ATLS_VERSION

/* ---- logging ----------------------------------------------------------- */

typedef enum {
    ATLS_LOG_ERR = 0,
    ATLS_LOG_WARN,
    ATLS_LOG_INFO,
    ATLS_LOG_DEBUG
} atls_log_level_t;

typedef void (*atls_log_fn)(void *ctx, atls_log_level_t level, const char *msg);

/* Installs the process-wide log sink (NULL restores the stderr default). */
void atls_log_set(atls_log_fn fn, void *ctx, atls_log_level_t max_level);
void atls_log(atls_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Text from outside (a CA's problem detail, identifiers, URLs, an SNI name)
 * made safe for one log line: printable ASCII is kept, every other byte and
 * the backslash become "\xNN"; the result is cut to outlen - 1 bytes (with
 * "..." at the end when cut) and always terminated.  NULL in -> "(null)".
 * Returns out.  atls_log() also replaces any control or non-ASCII byte left
 * in a whole message, so no log line can be split or carry escape codes. */
#define ATLS_LOG_ESCAPE_MAX 512
char *atls_log_escape(const char *in, char *out, size_t outlen);
/* The same for len bytes that need not be terminated (an SNI extension). */
char *atls_log_escape_mem(const void *in, size_t len, char *out, size_t outlen);
/* In place: every control or non-ASCII byte of s becomes '?'. */
void atls_log_scrub(char *s);

/* ---- errors ------------------------------------------------------------ */

/* How the caller should react to a failure (RFC 8555 problem mapping). */
typedef enum {
    ATLS_ERR_NONE = 0,
    ATLS_ERR_RETRY_NOW,     /* badNonce: resend at once with the fresh nonce */
    ATLS_ERR_RETRY_LATER,   /* rateLimited, serverInternal, transport errors */
    ATLS_ERR_PERMANENT      /* unauthorized, rejectedIdentifier, malformed... */
} atls_err_class_t;

typedef struct {
    atls_err_class_t cls;
    int              http_status;    /* 0 when no HTTP response */
    time_t           retry_after;    /* absolute time, 0 when none given */
    char             type[128];      /* e.g. "urn:ietf:params:acme:error:rateLimited"
                                        or "autotls:transport", "autotls:internal" */
    char             detail[512];    /* the CA's detail text, or ours */
    char             cert_id[128];   /* the certificate concerned, "" when none */
    char             key_type[16];   /* its key type ("ec256"...), "" when none */
} atls_error_t;

/* "unknown", "retry-now", "retry-later", "permanent" (for "none": "none"). */
const char *atls_err_class_name(atls_err_class_t cls);

/* Fills err (type/detail formatted); returns -1 so callers can `return atls_error_set(...)`. */
int atls_error_set(atls_error_t *err, atls_err_class_t cls, const char *type,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- identifier syntax (ident.c) ---------------------------------------- */

/* 1 when s is an IPv4 or IPv6 literal (inet_pton), else 0. */
int atls_ident_is_ip(const char *s);
/* 1 when a and b are the same address (so "::1" equals "0:0::1"). */
int atls_ident_ip_equal(const char *a, const char *b);
/* 1 when s is a hostname: at most 253 bytes, dot-separated labels of 1..63
 * letters, digits and hyphens, no hyphen at a label's start or end, no
 * trailing dot.  allow_wildcard admits one leading "*." (an ordered name;
 * an ACME authorization names the base domain with "wildcard": true). */
int atls_ident_is_dns(const char *s, int allow_wildcard);

/* 1 when url is https and has base's origin:
 * scheme, host (case-insensitive) and port (the default one made explicit)
 * all equal; a URL with userinfo or no authority never matches. */
int atls_url_same_origin(const char *base, const char *url);

/* ---- small helpers ----------------------------------------------------- */

/* Cryptographically random 64 bits (RAND_bytes); used for jitter. */
uint64_t atls_random_u64(void);

/* Duplicate; abort()s on out-of-memory like xstrdup. NULL in -> NULL out. */
char *atls_strdup(const char *s);

/* Copy of n strings as a NULL-terminated vector of n + 1 entries; abort()s
 * on out-of-memory.  Free with atls_strv_free(v, n). */
char **atls_strv_dup(char *const *v, size_t n);

/* Free a NULL-terminated or counted string vector (n may be 0 when NULL-terminated). */
void atls_strv_free(char **v, size_t n);

#endif
