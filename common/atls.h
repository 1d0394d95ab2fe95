/*
 * autotls core: common definitions shared by every area.
 *
 * The core knows no host: it logs through a callback the host installs and
 * never blocks on I/O inside the ACME engine.  Everything here is plain C99
 * plus OpenSSL 3, libcurl, jansson.
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
} atls_error_t;

/* Fills err (type/detail formatted); returns -1 so callers can `return atls_error_set(...)`. */
int atls_error_set(atls_error_t *err, atls_err_class_t cls, const char *type,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- small helpers ----------------------------------------------------- */

/* Cryptographically random 64 bits (RAND_bytes); used for jitter. */
uint64_t atls_random_u64(void);

/* Duplicate; abort()s on out-of-memory like xstrdup. NULL in -> NULL out. */
char *atls_strdup(const char *s);

/* Free a NULL-terminated or counted string vector (n may be 0 when NULL-terminated). */
void atls_strv_free(char **v, size_t n);

#endif
