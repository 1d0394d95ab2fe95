/*
 * The core's log (atls_log) captured in memory, so that tests can check
 * what is said, and how often.
 */
#ifndef LOGCAP_H
#define LOGCAP_H

#include <stddef.h>
#include "atls.h"

/* Empties the capture and routes atls_log to it; lines below min are
 * dropped (ATLS_LOG_DEBUG keeps everything). */
void logcap_start(atls_log_level_t min);
/* Back to the default logger. */
void logcap_stop(void);
/* How many times needle occurs in what was captured. */
size_t logcap_count(const char *needle);
/* The bytes captured (0: nothing was said). */
size_t logcap_len(void);
/* What was captured, one line per message (for failure messages). */
const char *logcap_text(void);

#endif
