/*
 * Challenges a driver has published, kept as copies (the engine owns and
 * frees its own), so that an order that fails half-way never leaves a TXT
 * record or a token behind.  Shared by the blocking driver
 * (acme_blocking.c) and the scheduler (sched_hook.c) so that SETUP and
 * TEARDOWN mean the same in both.  Internal to common/: no host includes it.
 */
#ifndef ATLS_ACME_PUBLISHED_H
#define ATLS_ACME_PUBLISHED_H

#include <stddef.h>
#include "atls_acme.h"
#include "atls_acme_drive.h"

typedef struct {
    atls_challenge_t *v;
    size_t            n;
} atls_published_t;

/* Handles an ATLS_ACT_SETUP of e: publishes c through ops, remembers it
 * when that worked and reports the outcome to e. */
void atls_published_setup(atls_published_t *p, atls_acme_t *e,
                          const atls_challenge_ops_t *ops, const atls_challenge_t *c);

/* Remembers c as published without reporting to the engine (a host that
 * answers only later: the scheduler's publish_wait). */
void atls_published_record(atls_published_t *p, const atls_challenge_t *c);

/* Handles an ATLS_ACT_TEARDOWN: withdraws c and forgets it. */
void atls_published_teardown(atls_published_t *p, const atls_challenge_ops_t *ops,
                             const atls_challenge_t *c);

/* After DONE/FAILED: withdraws whatever the engine did not tear down
 * itself and frees the set. */
void atls_published_teardown_all(atls_published_t *p, const atls_challenge_ops_t *ops);

#endif
