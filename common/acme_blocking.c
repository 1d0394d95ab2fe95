/*
 * The blocking driver: runs an ACME engine to completion on libcurl easy,
 * sleeping through WAITs.  Used by the CLI, the Apache watchdog and tests.
 *
 * Every challenge that was published is remembered (acme_published.c), so
 * that an order that fails half-way never leaves a TXT record or a token
 * behind.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "atls.h"
#include "atls_acme.h"
#include "atls_acme_drive.h"
#include "acme_published.h"

/* Sleeps delay_ms (robust to signals); engines give sub-second poll delays. */
static void
sleep_ms(long delay_ms)
{
    struct timespec ts;

    if (delay_ms <= 0) {
        return;
    }
    ts.tv_sec = delay_ms / 1000;
    ts.tv_nsec = (delay_ms % 1000) * 1000000L;
    /* a signal cuts the sleep short; nanosleep leaves the rest in ts */
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        /* sleep what is left */
    }
}

/* The wait of a WAIT action made at step time `stepped`. */
static long
wait_ms(const atls_action_t *act, time_t stepped)
{
    if (act->delay_ms > 0) {
        return act->delay_ms;
    }
    return act->until > stepped ? (long) (act->until - stepped) * 1000 : 0;
}

int
atls_acme_run_blocking(atls_acme_t *e, const atls_http_opts_t *http,
                       const atls_challenge_ops_t *ops)
{
    atls_http_response_t  resp;
    atls_http_response_t *last = NULL;
    atls_action_t         act;
    atls_published_t      pub = { NULL, 0 };
    int                   rc;

    memset(&resp, 0, sizeof(resp));

    for (;;) {
        time_t stepped = time(NULL);

        memset(&act, 0, sizeof(act));
        atls_acme_step(e, last, stepped, &act);
        /* the response is borrowed only for the duration of the step */
        if (last != NULL) {
            atls_http_response_free(&resp);
            last = NULL;
        }

        switch (act.kind) {
        case ATLS_ACT_SEND:
            atls_http_perform(http, act.request, &resp);
            last = &resp;
            break;

        case ATLS_ACT_WAIT:
            sleep_ms(wait_ms(&act, stepped));
            break;

        case ATLS_ACT_SETUP:
            atls_published_setup(&pub, e, ops, act.challenge);
            break;

        case ATLS_ACT_TEARDOWN:
            atls_published_teardown(&pub, ops, act.challenge);
            break;

        case ATLS_ACT_DONE:
        case ATLS_ACT_FAILED:
        default:
            rc = act.kind == ATLS_ACT_DONE ? 0 : -1;
            atls_published_teardown_all(&pub, ops);
            return rc;
        }
    }
}
