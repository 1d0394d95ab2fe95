/*
 * Certificate policy (atls_policy.h): the rules a server, and the CLI on
 * its store, checks before asking a CA for a certificate.
 *
 * Every rule is a list or a bound; an empty list or a bound of 0 allows
 * everything for that rule, so an empty policy allows everything.  Name
 * patterns are parsed once when added (regexes compiled then), so a check
 * never fails for a reason other than the request breaking a rule.  The
 * JSON form lives with the store entry (store_policy.c).
 */
#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "atls.h"
#include "atls_crypto.h"
#include "atls_policy.h"
#include "policy_int.h"

#define POLICY_RSA_BITS_MIN   1024
#define POLICY_RSA_BITS_MAX   16384
#define POLICY_MAX_NAMES_MAX  100000
/* A names regex: far more than a hostname pattern needs (policy_regex.c). */
#define POLICY_REGEX_LEN_MAX  256
#define POLICY_REGEX_COST_MAX 2048
#define POLICY_REGEX_TOTAL_MAX (8 * POLICY_REGEX_COST_MAX)
#define POLICY_STR_(x)        #x
#define POLICY_STR(x)         POLICY_STR_(x)
/* A DNS name is at most 253 characters; anything longer matches nothing. */
#define POLICY_NAME_MAX       253

typedef enum {
    PAT_EXACT = 0,      /* "example.com" */
    PAT_SUFFIX,         /* "*.example.com": one or more labels below */
    PAT_REGEX           /* "~REGEX" */
} pattern_kind_t;

typedef struct {
    pattern_kind_t kind;
    char          *text;       /* as written (lower-cased unless a regex) */
    regex_t        re;         /* PAT_REGEX only */
} pattern_t;

struct atls_policy_s {
    atls_key_type_t keys[ATLS_KEY_UNKNOWN];
    size_t          n_keys;
    long            min_rsa_bits;   /* 0: none */
    char          **cas;            /* as written */
    size_t          n_cas;
    pattern_t      *names;
    size_t          n_names;
    long            regex_cost;     /* estimated size of its regexes */
    long            max_names;      /* 0: none */
};

atls_policy_t *
atls_policy_new(void)
{
    return calloc(1, sizeof(atls_policy_t));
}

void
atls_policy_free(atls_policy_t *p)
{
    size_t i;

    if (p == NULL) {
        return;
    }
    for (i = 0; i < p->n_names; i++) {
        if (p->names[i].kind == PAT_REGEX) {
            regfree(&p->names[i].re);
        }
        free(p->names[i].text);
    }
    free(p->names);
    atls_strv_free(p->cas, p->n_cas);
    free(p);
}

int
atls_policy_is_empty(const atls_policy_t *p)
{
    return p == NULL
           || (p->n_keys == 0 && p->min_rsa_bits == 0 && p->n_cas == 0
               && p->n_names == 0 && p->max_names == 0);
}

/* ---- building ------------------------------------------------------------ */

int
atls_policy_add_key(atls_policy_t *p, const char *key_type, char *err, size_t errlen)
{
    atls_key_type_t kt;
    size_t          i;

    if (key_type == NULL || atls_key_type_parse(key_type, &kt) != 0) {
        snprintf(err, errlen, "%s is not a key type (ec256, ec384, rsa2048, "
                 "rsa3072, rsa4096)", key_type ? key_type : "(null)");
        return -1;
    }
    for (i = 0; i < p->n_keys; i++) {
        if (p->keys[i] == kt) {
            return 0;   /* named twice: the same rule */
        }
    }
    p->keys[p->n_keys++] = kt;
    return 0;
}

int
atls_policy_set_min_rsa_bits(atls_policy_t *p, long bits, char *err, size_t errlen)
{
    if (bits < POLICY_RSA_BITS_MIN || bits > POLICY_RSA_BITS_MAX) {
        snprintf(err, errlen, "min_rsa_bits %ld is not between %d and %d",
                 bits, POLICY_RSA_BITS_MIN, POLICY_RSA_BITS_MAX);
        return -1;
    }
    p->min_rsa_bits = bits;
    return 0;
}

/* The length of dir without one trailing '/': "https://ca/dir/" and
 * "https://ca/dir" are the same directory. */
static size_t
policy_ca_len(const char *dir)
{
    size_t n = strlen(dir);

    return n > 0 && dir[n - 1] == '/' ? n - 1 : n;
}

static int
policy_ca_equal(const char *allowed, const char *dir)
{
    size_t n = policy_ca_len(dir);

    return policy_ca_len(allowed) == n && strncmp(allowed, dir, n) == 0;
}

/* http(s)://HOST... with nothing blank or a control character in it. */
static int
policy_ca_ok(const char *dir)
{
    const char *rest;
    size_t      i;

    if (strncmp(dir, "https://", 8) == 0) {
        rest = dir + 8;
    } else if (strncmp(dir, "http://", 7) == 0) {
        rest = dir + 7;
    } else {
        return 0;
    }
    for (i = 0; dir[i] != '\0'; i++) {
        if ((unsigned char) dir[i] <= 0x20 || dir[i] == 0x7f) {
            return 0;
        }
    }
    return rest[0] != '\0' && rest[0] != '/';
}

int
atls_policy_add_ca(atls_policy_t *p, const char *directory, char *err, size_t errlen)
{
    char  **cas;
    size_t  i;

    if (directory == NULL || !policy_ca_ok(directory)) {
        snprintf(err, errlen, "ca %s is not an http(s) URL of an ACME directory",
                 directory ? directory : "(null)");
        return -1;
    }
    for (i = 0; i < p->n_cas; i++) {
        if (policy_ca_equal(p->cas[i], directory)) {
            return 0;
        }
    }
    cas = realloc(p->cas, (p->n_cas + 2) * sizeof(*cas));
    if (cas == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->cas = cas;
    /* kept as written: the JSON gives back what the configuration said */
    cas[p->n_cas++] = atls_strdup(directory);
    cas[p->n_cas] = NULL;
    return 0;
}

/* A name or the suffix of a "*." pattern: a hostname or IP literal written
 * with the characters names are written with. */
static int
policy_name_chars_ok(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n <= POLICY_NAME_MAX
           && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789-.:_*") == n
           && s[0] != '.' && s[n - 1] != '.';
}

static void
policy_lower(char *s)
{
    for (; *s != '\0'; s++) {
        *s = (char) tolower((unsigned char) *s);
    }
}

/* "~REGEX", compiled once; its estimated size (*cost) must fit in budget:
 * policy.json is the worker's, and no regex in it may take the CLI's
 * memory (policy_regex.c). */
static int
policy_regex_parse(pattern_t *pt, const char *pattern, long budget, long *cost,
                   char *err, size_t errlen)
{
    long        limit = budget < POLICY_REGEX_COST_MAX ? budget : POLICY_REGEX_COST_MAX;
    const char *why;
    char        ebuf[128];
    int         rc;

    why = strlen(pattern) > POLICY_REGEX_LEN_MAX
          ? "longer than " POLICY_STR(POLICY_REGEX_LEN_MAX) " characters"
          : atls_policy_regex_check(pattern + 1, limit, cost);
    if (why != NULL) {
        snprintf(err, errlen, "names %.80s%s: regex refused: %s%s", pattern,
                 strlen(pattern) > 80 ? "..." : "", why,
                 limit < POLICY_REGEX_COST_MAX ? " (a policy's regexes add up)" : "");
        return -1;
    }
    rc = regcomp(&pt->re, pattern + 1, REG_EXTENDED | REG_ICASE | REG_NOSUB);
    if (rc != 0) {
        regerror(rc, &pt->re, ebuf, sizeof(ebuf));
        snprintf(err, errlen, "names %s is not a POSIX extended regex: %s", pattern, ebuf);
        return -1;
    }
    pt->kind = PAT_REGEX;
    pt->text = atls_strdup(pattern);
    return 0;
}

/* A name or "*.domain" (lower-cased). */
static int
policy_name_parse(pattern_t *pt, const char *pattern, char *err, size_t errlen)
{
    if (strncmp(pattern, "*.", 2) == 0) {
        if (!policy_name_chars_ok(pattern + 2) || strchr(pattern + 2, '*') != NULL) {
            snprintf(err, errlen, "names %s: \"*.\" must be followed by a "
                     "domain name", pattern);
            return -1;
        }
        pt->kind = PAT_SUFFIX;
    } else if (!policy_name_chars_ok(pattern) || strchr(pattern, '*') != NULL) {
        snprintf(err, errlen, "names %s is neither a name, \"*.domain\" nor "
                 "\"~regex\"", pattern);
        return -1;
    }
    pt->text = atls_strdup(pattern);
    policy_lower(pt->text);
    return 0;
}

int
atls_policy_add_names(atls_policy_t *p, const char *pattern, char *err, size_t errlen)
{
    pattern_t  pt, *names;
    long       cost = 0;
    int        rc;

    if (pattern == NULL || pattern[0] == '\0') {
        snprintf(err, errlen, "names: empty pattern");
        return -1;
    }
    memset(&pt, 0, sizeof(pt));
    rc = pattern[0] == '~'
         ? policy_regex_parse(&pt, pattern, POLICY_REGEX_TOTAL_MAX - p->regex_cost, &cost,
                              err, errlen)
         : policy_name_parse(&pt, pattern, err, errlen);
    if (rc != 0) {
        return -1;
    }
    names = realloc(p->names, (p->n_names + 1) * sizeof(*names));
    if (names == NULL) {
        if (pt.kind == PAT_REGEX) {
            regfree(&pt.re);
        }
        free(pt.text);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->names = names;
    p->names[p->n_names++] = pt;
    p->regex_cost += cost;
    return 0;
}

int
atls_policy_set_max_names(atls_policy_t *p, long n, char *err, size_t errlen)
{
    if (n < 1 || n > POLICY_MAX_NAMES_MAX) {
        snprintf(err, errlen, "max_names %ld is not between 1 and %d",
                 n, POLICY_MAX_NAMES_MAX);
        return -1;
    }
    p->max_names = n;
    return 0;
}

/* ---- reading back (store_policy.c writes the JSON from these) ------------- */

size_t
atls_policy_n_keys(const atls_policy_t *p)
{
    return p->n_keys;
}

atls_key_type_t
atls_policy_key(const atls_policy_t *p, size_t i)
{
    return p->keys[i];
}

long
atls_policy_min_rsa_bits(const atls_policy_t *p)
{
    return p->min_rsa_bits;
}

size_t
atls_policy_n_cas(const atls_policy_t *p)
{
    return p->n_cas;
}

const char *
atls_policy_ca(const atls_policy_t *p, size_t i)
{
    return p->cas[i];
}

size_t
atls_policy_n_names(const atls_policy_t *p)
{
    return p->n_names;
}

const char *
atls_policy_names_pattern(const atls_policy_t *p, size_t i)
{
    return p->names[i].text;
}

long
atls_policy_max_names(const atls_policy_t *p)
{
    return p->max_names;
}

/* ---- checking -------------------------------------------------------------- */

/* name (lower-case) below suffix by one or more labels. */
static int
policy_below(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);

    return n > s + 1 && name[n - s - 1] == '.' && strcmp(name + n - s, suffix) == 0;
}

static int
policy_pattern_match(const pattern_t *pt, const char *lname)
{
    switch (pt->kind) {
    case PAT_EXACT:
        return strcmp(lname, pt->text) == 0;
    case PAT_SUFFIX:
        return policy_below(lname, pt->text + 2);
    case PAT_REGEX:
        return regexec(&pt->re, lname, 0, NULL, 0) == 0;
    }
    return 0;
}

int
atls_policy_check_name(const atls_policy_t *p, const char *name, char *why, size_t whylen)
{
    char   lname[POLICY_NAME_MAX + 1];
    size_t i, n;

    if (p == NULL || p->n_names == 0) {
        return 0;
    }
    n = name != NULL ? strlen(name) : 0;
    if (n == 0 || n > POLICY_NAME_MAX) {
        snprintf(why, whylen, "name %.64s%s matches no names pattern",
                 name ? name : "", n > 64 ? "..." : "");
        return -1;
    }
    memcpy(lname, name, n + 1);
    policy_lower(lname);
    for (i = 0; i < p->n_names; i++) {
        if (policy_pattern_match(&p->names[i], lname)) {
            return 0;
        }
    }
    snprintf(why, whylen, "name %s matches no names pattern", name);
    return -1;
}

static long
policy_rsa_bits(atls_key_type_t kt)
{
    switch (kt) {
    case ATLS_KEY_RSA2048: return 2048;
    case ATLS_KEY_RSA3072: return 3072;
    case ATLS_KEY_RSA4096: return 4096;
    default:               return 0;
    }
}

static int
policy_key_allowed(const atls_policy_t *p, atls_key_type_t kt)
{
    size_t i;

    for (i = 0; i < p->n_keys; i++) {
        if (p->keys[i] == kt) {
            return 1;
        }
    }
    return p->n_keys == 0;
}

/* The key and min_rsa_bits rules for one of the issuer's key types. */
static int
policy_check_key(const atls_policy_t *p, atls_key_type_t kt, const char **rule,
                 char *why, size_t whylen)
{
    const char *kn = atls_key_type_name(kt);
    char        allowed[128] = "";
    size_t      i, off = 0;

    if (!policy_key_allowed(p, kt)) {
        for (i = 0; i < p->n_keys && off < sizeof(allowed); i++) {
            off += (size_t) snprintf(allowed + off, sizeof(allowed) - off, "%s%s",
                                     i ? " " : "", atls_key_type_name(p->keys[i]));
        }
        *rule = ATLS_POLICY_RULE_KEY;
        snprintf(why, whylen, "key type %s is not allowed (key %s)",
                 kn ? kn : "unknown", allowed);
        return -1;
    }
    if (p->min_rsa_bits > 0 && atls_key_type_is_rsa(kt)
        && policy_rsa_bits(kt) < p->min_rsa_bits) {
        *rule = ATLS_POLICY_RULE_MIN_RSA;
        snprintf(why, whylen, "key type %s has %ld bits, below min_rsa_bits %ld",
                 kn, policy_rsa_bits(kt), p->min_rsa_bits);
        return -1;
    }
    return 0;
}

static int
policy_check_ca(const atls_policy_t *p, const char *dir, const char **rule,
                char *why, size_t whylen)
{
    size_t i;

    if (p->n_cas == 0) {
        return 0;
    }
    for (i = 0; dir != NULL && i < p->n_cas; i++) {
        if (policy_ca_equal(p->cas[i], dir)) {
            return 0;
        }
    }
    *rule = ATLS_POLICY_RULE_CA;
    snprintf(why, whylen, "CA directory %s is not one of the allowed ca",
             dir ? dir : "(none)");
    return -1;
}

int
atls_policy_check(const atls_policy_t *p, const char *const *names, size_t n,
                  const atls_issuer_t *is, const char **rule, char *why, size_t whylen)
{
    const char     *r = NULL;
    atls_key_type_t def = ATLS_KEY_EC256;
    size_t          i;
    int             rc = 0;

    if (atls_policy_is_empty(p)) {
        goto out;
    }
    if (p->max_names > 0 && n > (size_t) p->max_names) {
        r = ATLS_POLICY_RULE_MAX_NAMES;
        snprintf(why, whylen, "%zu names exceed max_names %ld", n, p->max_names);
        rc = -1;
        goto out;
    }
    for (i = 0; i < n; i++) {
        if (atls_policy_check_name(p, names[i], why, whylen) != 0) {
            r = ATLS_POLICY_RULE_NAMES;
            rc = -1;
            goto out;
        }
    }
    if (is == NULL) {
        goto out;
    }
    /* no key type configured means ec256 (atls_issuer_t) */
    for (i = 0; rc == 0 && i < (is->n_key_types ? is->n_key_types : 1); i++) {
        rc = policy_check_key(p, is->n_key_types ? is->key_types[i] : def, &r, why, whylen);
    }
    if (rc == 0) {
        rc = policy_check_ca(p, is->directory, &r, why, whylen);
    }

out:
    if (rule != NULL) {
        *rule = r;
    }
    return rc;
}
