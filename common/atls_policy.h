/*
 * Certificate policy: which key types, CAs and names a server (and the CLI
 * on its store) may obtain certificates for.
 *
 *   nginx:  autotls_policy { key ec256 ec384 rsa3072; min_rsa_bits 3072;
 *                            ca https://ca.example/dir ...;
 *                            names *.example.com example.com ~^[a-z0-9-]+\.example\.net$;
 *                            max_names 100; }
 *   Apache: AutoTLSPolicyKeys, AutoTLSPolicyMinRSABits, AutoTLSPolicyCA,
 *           AutoTLSPolicyNames, AutoTLSPolicyMaxNames
 *
 * An empty rule allows everything for that rule.  A configuration that
 * breaks the policy is a configuration error (nginx -t / apache2 -t) naming
 * file, line and rule; at runtime (the CLI, names added later) the request
 * is refused with a policy-denied event and audit record.  The server
 * saves its policy in the store (policy.json) and the CLI honours it.
 * The policy only ever restricts: a worker that rewrites policy.json can
 * loosen the CLI's checks, never gain anything the CLI would not do
 * without a policy.
 */
#ifndef ATLS_POLICY_H
#define ATLS_POLICY_H

#include <stddef.h>
#include "atls_store.h"

typedef struct atls_policy_s atls_policy_t;

atls_policy_t *atls_policy_new(void);           /* empty; NULL on OOM */
void atls_policy_free(atls_policy_t *p);
int  atls_policy_is_empty(const atls_policy_t *p);   /* NULL: 1 */

/* Rules, each -1 + err naming the bad value ("rsa1024 is not a key type"). */
int atls_policy_add_key(atls_policy_t *p, const char *key_type, char *err, size_t errlen);
int atls_policy_set_min_rsa_bits(atls_policy_t *p, long bits, char *err, size_t errlen);
int atls_policy_add_ca(atls_policy_t *p, const char *directory, char *err, size_t errlen);
/* "example.com" exact, "*.example.com" any name below (one or more
 * labels), "~REGEX" a POSIX extended regex matched against the whole
 * lower-case name (anchored by the caller's ^$ as written). */
int atls_policy_add_names(atls_policy_t *p, const char *pattern, char *err, size_t errlen);
int atls_policy_set_max_names(atls_policy_t *p, long n, char *err, size_t errlen);

/* The rule names, as in events and messages. */
#define ATLS_POLICY_RULE_KEY       "key"
#define ATLS_POLICY_RULE_MIN_RSA   "min_rsa_bits"
#define ATLS_POLICY_RULE_CA        "ca"
#define ATLS_POLICY_RULE_NAMES     "names"
#define ATLS_POLICY_RULE_MAX_NAMES "max_names"

/* 0 when a certificate for names with issuer settings is allowed (p NULL
 * or empty: always); -1 with *rule (one of the above) and why ("name
 * www.other.org matches no names pattern"). */
int atls_policy_check(const atls_policy_t *p, const char *const *names, size_t n,
                      const atls_issuer_t *is, const char **rule,
                      char *why, size_t whylen);
/* One name alone (runtime names): the names rule only. */
int atls_policy_check_name(const atls_policy_t *p, const char *name,
                           char *why, size_t whylen);

/* JSON (malloc'd) and back (regexes compiled again; -1 + err naming the
 * field). */
char *atls_policy_to_json(const atls_policy_t *p);
atls_policy_t *atls_policy_from_json(const char *json, size_t len, char *err, size_t errlen);

/* policy.json in the store; save with p NULL or empty removes it.
 * load: ATLS_STORE_NOTFOUND when none (*p NULL). */
int atls_store_save_policy(atls_store_t *st, const atls_policy_t *p, char *err, size_t errlen);
int atls_store_load_policy(atls_store_t *st, atls_policy_t **p, char *err, size_t errlen);

#endif
