/*
 * Driving an ACME engine outside the scheduler: the challenge operations a
 * caller supplies, the blocking driver (libcurl easy, sleeps for WAITs:
 * the CLI's one-shot commands and tests), and the blocking dns-01 hook run.
 * atls_acme.h itself is the sans-I/O engine only.
 */
#ifndef ATLS_ACME_DRIVE_H
#define ATLS_ACME_DRIVE_H

#include <stddef.h>
#include "atls_acme.h"
#include "atls_http.h"

/* ---- blocking driver (libcurl easy) ----------------------------------- */

typedef struct {
    /* return 0 when the challenge is published, -1 (fill why) otherwise */
    int  (*setup)(void *ctx, const atls_challenge_t *c, char *why, size_t whylen);
    void (*teardown)(void *ctx, const atls_challenge_t *c);
    void *ctx;
} atls_challenge_ops_t;

/* Runs e to DONE/FAILED, sleeping for WAITs.  Returns 0 on DONE, -1 on FAILED. */
int atls_acme_run_blocking(atls_acme_t *e, const atls_http_opts_t *http,
                           const atls_challenge_ops_t *ops);

/* dns-01 through an operator's hook command:
 *   HOOK setup|teardown _acme-challenge.NAME TXTVALUE
 * run without a shell (argv), exit status 0 = success. */
int atls_dns_hook_run(const char *hook, const char *action, const char *dns_name,
                      const char *value, char *why, size_t whylen);

#endif
