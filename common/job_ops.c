/*
 * Small pieces the job drivers need: the key types of an issuer, and for
 * the one-at-a-time blocking driver the default challenge operations
 * (dns-01 through the operator's hook; the scheduler runs hooks itself,
 * in the background).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "atls_acme.h"
#include "atls_job.h"

size_t
atls_job_key_types(const atls_issuer_t *is, atls_key_type_t *out)
{
    size_t i, n = is->n_key_types;

    if (n == 0) {
        out[0] = ATLS_KEY_EC256;
        return 1;
    }
    if (n > ATLS_KEY_TYPE_MAX) {
        n = ATLS_KEY_TYPE_MAX;
    }
    for (i = 0; i < n; i++) {
        out[i] = is->key_types[i];
    }
    return n;
}

static int
hook_setup(void *ctx, const atls_challenge_t *c, char *why, size_t whylen)
{
    if (c->type != ATLS_CHAL_DNS01 || c->dns_name == NULL || c->dns_value == NULL) {
        snprintf(why, whylen, "the dns hook only answers dns-01");
        return -1;
    }
    return atls_dns_hook_run(ctx, "setup", c->dns_name, c->dns_value, why, whylen);
}

static void
hook_teardown(void *ctx, const atls_challenge_t *c)
{
    char why[512];

    if (c->type != ATLS_CHAL_DNS01 || c->dns_name == NULL || c->dns_value == NULL) {
        return;
    }
    if (atls_dns_hook_run(ctx, "teardown", c->dns_name, c->dns_value, why, sizeof(why)) != 0) {
        atls_log(ATLS_LOG_WARN, "autotls: %s", why);
    }
}

const atls_challenge_ops_t *
atls_job_challenge_ops(const atls_issuer_t *is, const atls_challenge_ops_t *ops,
                       atls_challenge_ops_t *buf)
{
    if (ops != NULL || is->challenge != ATLS_CHAL_DNS01
        || is->dns_hook == NULL || is->dns_hook[0] == '\0')
    {
        return ops;
    }
    buf->setup = hook_setup;
    buf->teardown = hook_teardown;
    buf->ctx = is->dns_hook;
    return buf;
}
