/* Logging, errors and small helpers shared by every area of the core. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>
#include "atls.h"

static atls_log_fn      log_fn;
static void            *log_ctx;
static atls_log_level_t log_max = ATLS_LOG_INFO;

void atls_log_set(atls_log_fn fn, void *ctx, atls_log_level_t max_level)
{
    log_fn = fn;
    log_ctx = ctx;
    log_max = max_level;
}

static int
log_byte_safe(unsigned char c)
{
    return c >= 0x20 && c < 0x7f;
}

/* Writes c as "\xNN" when it fits; returns the bytes written (0 or 4). */
static size_t
log_byte_hex(unsigned char c, char *out, size_t room)
{
    static const char hex[] = "0123456789abcdef";

    if (room < 4) {
        return 0;
    }
    out[0] = '\\';
    out[1] = 'x';
    out[2] = hex[c >> 4];
    out[3] = hex[c & 0xf];
    return 4;
}

char *
atls_log_escape_mem(const void *in, size_t len, char *out, size_t outlen)
{
    const unsigned char *p = in;
    size_t               i, n = 0, w;

    if (out == NULL || outlen == 0) {
        return out;
    }
    if (p == NULL) {
        p = (const unsigned char *) "(null)";
        len = 6;
    }
    for (i = 0; i < len; i++) {
        if (log_byte_safe(p[i]) && p[i] != '\\') {
            if (n + 1 >= outlen) {
                break;
            }
            out[n++] = (char) p[i];
            continue;
        }
        w = log_byte_hex(p[i], out + n, outlen - 1 - n);
        if (w == 0) {
            break;
        }
        n += w;
    }
    out[n] = '\0';
    if (i < len && outlen > 4) {
        /* cut: say so rather than end in the middle of the text silently */
        n = n > outlen - 4 ? outlen - 4 : n;
        memcpy(out + n, "...", 4);
    }
    return out;
}

char *
atls_log_escape(const char *in, char *out, size_t outlen)
{
    return atls_log_escape_mem(in, in != NULL ? strlen(in) : 0, out, outlen);
}

/* The last line of defence for messages whose parts were not escaped: a
 * control or non-ASCII byte becomes '?', so a line can neither be split
 * nor carry terminal escape codes. */
void
atls_log_scrub(char *msg)
{
    unsigned char *p;

    for (p = (unsigned char *) msg; *p != '\0'; p++) {
        if (!log_byte_safe(*p)) {
            *p = '?';
        }
    }
}

void atls_log(atls_log_level_t level, const char *fmt, ...)
{
    static const char *const names[] = { "error", "warn", "info", "debug" };
    char    msg[1024];
    va_list ap;

    if (level > log_max) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    atls_log_scrub(msg);

    if (log_fn != NULL) {
        log_fn(log_ctx, level, msg);
    } else {
        fprintf(stderr, "autotls: %s: %s\n", names[level], msg);
    }
}

int atls_error_set(atls_error_t *err, atls_err_class_t cls, const char *type,
                   const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) {
        return -1;
    }
    memset(err, 0, sizeof(*err));
    err->cls = cls;
    snprintf(err->type, sizeof(err->type), "%s", type ? type : "autotls:internal");
    va_start(ap, fmt);
    vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
    va_end(ap);
    /* details quote the CA's URLs and names; they reach logs and status */
    atls_log_scrub(err->detail);
    return -1;
}

const char *
atls_err_class_name(atls_err_class_t cls)
{
    switch (cls) {
    case ATLS_ERR_NONE:        return "none";
    case ATLS_ERR_RETRY_NOW:   return "retry-now";
    case ATLS_ERR_RETRY_LATER: return "retry-later";
    case ATLS_ERR_PERMANENT:   return "permanent";
    }
    return "unknown";
}

uint64_t atls_random_u64(void)
{
    uint64_t v = 0;

    if (RAND_bytes((unsigned char *) &v, sizeof(v)) != 1) {
        /* RAND_bytes only fails when the DRBG cannot seed; jitter is not
         * security-relevant, so fall back rather than fail the caller. */
        v = (uint64_t) time(NULL) * 6364136223846793005ULL;
    }
    return v;
}

char *atls_strdup(const char *s)
{
    char *d;

    if (s == NULL) {
        return NULL;
    }
    d = strdup(s);
    if (d == NULL) {
        abort();
    }
    return d;
}

char **atls_strv_dup(char *const *v, size_t n)
{
    char  **d;
    size_t  i;

    d = calloc(n + 1, sizeof(*d));
    if (d == NULL) {
        abort();
    }
    for (i = 0; i < n; i++) {
        d[i] = atls_strdup(v[i]);
    }
    return d;
}

void atls_strv_free(char **v, size_t n)
{
    size_t i;

    if (v == NULL) {
        return;
    }
    if (n == 0) {
        for (i = 0; v[i] != NULL; i++) {
            free(v[i]);
        }
    } else {
        for (i = 0; i < n; i++) {
            free(v[i]);
        }
    }
    free(v);
}
