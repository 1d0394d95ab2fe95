/*
 * Failures a lagging node of a cluster causes (issue 12): the order's
 * challenges went to validation before every node had confirmed them
 * (atls_sched_hook_done_partial), and the CA then reached a node without
 * the answer.  The job counts such a failure as transient when it records
 * it (job.c), so that one meta write and one log line say what happened.
 */
#include <stdio.h>
#include <string.h>
#include "atls.h"
#include "atls_schedule.h"
#include "job_int.h"

/* e says why the order failed while the nodes of missing had not
 * confirmed the challenge, and when it is retried (next); the CA's own
 * words are kept at the end. */
static void
lagged_explain(atls_error_t *e, const char *missing, time_t next, time_t now)
{
    char   said[sizeof(e->detail)];
    size_t cap = sizeof(e->detail);
    int    n;

    snprintf(said, sizeof(said), "%s", e->detail);
    n = snprintf(e->detail, cap, "validation failed while %s%s had not confirmed the "
                 "challenge: retrying in %ld s; the CA said: %s",
                 missing[0] != '\0' ? "nodes " : "some nodes",
                 missing, (long) (next > now ? next - now : 0), said);
    if (n < 0 || (size_t) n >= cap) {
        /* a cut detail is never mistaken for the CA's whole message */
        memcpy(e->detail + cap - 4, "...", 4);
    }
}

int
atls_job_lagged_failure(atls_error_t *e, const char *missing, unsigned failures,
                        time_t now, time_t *next)
{
    time_t soon = atls_schedule_lagged(e, failures, now, atls_random_u64());

    if (soon == 0) {
        return 0;   /* not what a node without the answer causes */
    }
    /* never later than its own class would have it: that bound keeps a
     * served certificate from running out */
    if (soon < *next) {
        *next = soon;
    }
    lagged_explain(e, missing, *next, now);
    e->cls = ATLS_ERR_RETRY_LATER;
    return 1;
}
