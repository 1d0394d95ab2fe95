/*
 * The core's log captured in memory (see logcap.h).
 */
#include <stdio.h>
#include <string.h>
#include "atls.h"
#include "support/logcap.h"

static char             logbuf[1 << 16];
static size_t           loglen;
static atls_log_level_t floor_level;

static void
logcap_line(void *ctx, atls_log_level_t level, const char *msg)
{
    size_t n = strlen(msg);

    (void) ctx;
    if (level > floor_level) {
        return;
    }
    if (loglen + n + 2 < sizeof(logbuf)) {
        memcpy(logbuf + loglen, msg, n);
        loglen += n;
        logbuf[loglen++] = '\n';
        logbuf[loglen] = '\0';
    }
}

void
logcap_start(atls_log_level_t min)
{
    loglen = 0;
    logbuf[0] = '\0';
    floor_level = min;
    atls_log_set(logcap_line, NULL, ATLS_LOG_DEBUG);
}

void
logcap_stop(void)
{
    atls_log_set(NULL, NULL, ATLS_LOG_INFO);
}

size_t
logcap_count(const char *needle)
{
    size_t      n = 0;
    const char *p = logbuf;

    while ((p = strstr(p, needle)) != NULL) {
        n++;
        p += strlen(needle);
    }
    return n;
}

size_t
logcap_len(void)
{
    return loglen;
}

const char *
logcap_text(void)
{
    return logbuf;
}
