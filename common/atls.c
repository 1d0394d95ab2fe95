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
    return -1;
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
