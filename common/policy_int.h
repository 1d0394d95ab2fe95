/*
 * What a policy holds, read back rule by rule: for its JSON form in the
 * store (store_policy.c) only.  Indexes are below the matching count.
 * And the size estimate of a names regex (policy.c).
 */
#ifndef ATLS_POLICY_INT_H
#define ATLS_POLICY_INT_H

#include <stddef.h>
#include "atls_crypto.h"
#include "atls_policy.h"

size_t          atls_policy_n_keys(const atls_policy_t *p);
atls_key_type_t atls_policy_key(const atls_policy_t *p, size_t i);
long            atls_policy_min_rsa_bits(const atls_policy_t *p);     /* 0: none */
size_t          atls_policy_n_cas(const atls_policy_t *p);
const char     *atls_policy_ca(const atls_policy_t *p, size_t i);
size_t          atls_policy_n_names(const atls_policy_t *p);
const char     *atls_policy_names_pattern(const atls_policy_t *p, size_t i);  /* as added */
long            atls_policy_max_names(const atls_policy_t *p);        /* 0: none */

/* policy_regex.c: NULL when REGEX may be compiled, with *cost an estimate
 * of its compiled size (at most limit); else why it is refused. */
const char *atls_policy_regex_check(const char *re, long limit, long *cost);

#endif
