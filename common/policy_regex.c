/*
 * Whether a "names ~REGEX" pattern is safe to compile, and how large it
 * compiles, decided before regcomp() sees it.
 *
 * glibc compiles "x+" as "xx*" and "x{m,n}" as n copies of x, so nested
 * repetitions multiply: "(((a+)+)+)+..." or "a{100}{100}" take memory
 * exponential in their length.  The store's policy.json is the worker
 * user's to write, and the CLI compiles its regexes, so a pattern whose
 * estimate is beyond a hostname's needs is refused instead; so are
 * adjacent repetitions ("a?+", undefined in POSIX) and back-references
 * (matching time), which no host name pattern needs.  The estimate
 * counts atoms, a group as the sum of what it holds, and multiplies what a
 * repetition applies to by the copies it makes; it never needs to be exact,
 * only to grow with the compiled size.
 */
#include <ctype.h>
#include <string.h>
#include "policy_int.h"

#define REGEX_DEPTH_MAX  32
#define REGEX_BOUND_MAX  1000   /* a {m,n} bound beyond this is cost enough */

/* Past a bracket expression ("[^]a-z[:digit:]]"); p is at its '['. */
static const char *
regex_skip_bracket(const char *p)
{
    p++;
    if (*p == '^') {
        p++;
    }
    if (*p == ']') {
        p++;    /* a ']' first is a member */
    }
    while (*p != '\0' && *p != ']') {
        if (p[0] == '[' && (p[1] == ':' || p[1] == '=' || p[1] == '.')) {
            const char *end = strchr(p + 2, p[1]);

            p = end != NULL && end[1] == ']' ? end + 2 : p + 1;
            continue;
        }
        p++;
    }
    return *p == ']' ? p + 1 : p;
}

/* A decimal number of an interval, saturated at REGEX_BOUND_MAX. */
static long
regex_number(const char **pp)
{
    long n = 0;

    while (isdigit((unsigned char) **pp)) {
        if (n <= REGEX_BOUND_MAX) {
            n = n * 10 + (**pp - '0');
        }
        (*pp)++;
    }
    return n > REGEX_BOUND_MAX ? REGEX_BOUND_MAX + 1 : n;
}

/* The copies "{m}", "{m,}" or "{m,n}" makes (p at '{'); 0 when it is no
 * interval (glibc then reads the '{' as itself). */
static long
regex_interval(const char **pp)
{
    const char *p = *pp + 1;
    long        m, n;

    if (!isdigit((unsigned char) *p)) {
        return 0;
    }
    m = regex_number(&p);
    n = m;
    if (*p == ',') {
        p++;
        n = isdigit((unsigned char) *p) ? regex_number(&p) : m + 1;
    }
    if (*p != '}') {
        return 0;
    }
    *pp = p + 1;
    return n > m ? n : (m > 0 ? m : 1);
}

const char *
atls_policy_regex_check(const char *re, long limit, long *cost)
{
    long        seq[REGEX_DEPTH_MAX];    /* cost so far of each open group */
    long        last[REGEX_DEPTH_MAX];   /* cost of its last atom */
    long        atom, copies;
    const char *p = re;
    int         d = 0, repeated = 0;

    seq[0] = 0;
    last[0] = 0;
    *cost = 0;
    while (*p != '\0') {
        atom = 1;       /* a new atom of this cost, or */
        copies = 0;     /* the last atom made this many times (1: without a copy) */
        switch (*p) {
        case '\\':
            if (p[1] >= '1' && p[1] <= '9') {
                return "back-references are not allowed";
            }
            p += p[1] != '\0' ? 2 : 1;
            break;
        case '[':
            p = regex_skip_bracket(p);
            break;
        case '(':
            if (d + 1 >= REGEX_DEPTH_MAX) {
                return "groups nested too deep";
            }
            d++;
            seq[d] = 0;
            last[d] = 0;
            p++;
            repeated = 0;
            continue;
        case ')':
            if (d > 0) {
                atom = seq[d] + 1;
                d--;
            }
            p++;
            break;
        case '+':
            copies = 2;
            p++;
            break;
        case '{':
            copies = regex_interval(&p);
            if (copies == 0) {
                p++;        /* a literal '{' */
            }
            break;
        case '*':
        case '?':
            copies = 1;
            p++;
            break;
        case '|':
            atom = 0;       /* nothing to repeat after it */
            p++;
            break;
        default:
            p++;
            break;
        }
        if (copies > 0) {
            /* "a?+", "a*{2}": undefined in POSIX, and glibc's closures of
             * them grow without bound */
            if (repeated) {
                return "adjacent repetitions (such as \"a?+\") are undefined";
            }
            seq[d] += last[d] * (copies - 1) + 1;
            last[d] *= copies;
        } else {
            seq[d] += atom;
            last[d] = atom;
        }
        repeated = copies > 0;
        if (seq[d] > limit || last[d] > limit) {
            return "too large: nested repetitions multiply its size";
        }
    }
    while (d > 0) {     /* unclosed: regcomp refuses it anyway */
        seq[d - 1] += seq[d];
        d--;
    }
    *cost = seq[0];
    return seq[0] > limit ? "too large: nested repetitions multiply its size" : NULL;
}
