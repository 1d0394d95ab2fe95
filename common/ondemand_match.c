/*
 * Name patterns of the on-demand gate's deny and allow lists: exact names
 * and "*.suffix" patterns in hash sets, so that a list of 100,000 customer
 * names costs one lookup per label of the name asked about, and "~regex"
 * patterns, whose compiled size is estimated by the policy's own check
 * (policy_regex.c) before regcomp() ever sees them.
 */
#include <errno.h>
#include <regex.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "atls_names.h"
#include "ondemand_int.h"
#include "policy_int.h"

/* The same bounds as a policy's names regexes: far more than a hostname
 * pattern needs. */
#define OD_REGEX_LEN_MAX    256
#define OD_REGEX_COST_MAX   2048
#define OD_REGEX_TOTAL_MAX  (8 * OD_REGEX_COST_MAX)
/* A line of the allow file longer than this is an error, not cut. */
#define OD_LINE_MAX         1024

/* An open-addressing set of strings (a power-of-two table, half full at most). */
typedef struct {
    char   **slot;
    size_t   cap;
    size_t   n;
} od_set_t;

typedef struct {
    regex_t  re;
} od_regex_t;

struct od_patterns_s {
    od_set_t     exact;
    od_set_t     suffix;     /* "example.com" for "*.example.com" */
    od_regex_t  *regex;
    size_t       n_regex;
    long         regex_cost;
};

static uint64_t
od_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char) *s) * 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

static int
od_set_grow(od_set_t *set)
{
    size_t   cap = set->cap == 0 ? 16 : set->cap * 2, i;
    char   **slot = calloc(cap, sizeof(*slot));

    if (slot == NULL) {
        return -1;
    }
    for (i = 0; i < set->cap; i++) {
        if (set->slot[i] != NULL) {
            size_t k = (size_t) od_hash(set->slot[i]) & (cap - 1);

            while (slot[k] != NULL) {
                k = (k + 1) & (cap - 1);
            }
            slot[k] = set->slot[i];
        }
    }
    free(set->slot);
    set->slot = slot;
    set->cap = cap;
    return 0;
}

static int
od_set_has(const od_set_t *set, const char *s)
{
    size_t k;

    if (set->n == 0) {
        return 0;
    }
    for (k = (size_t) od_hash(s) & (set->cap - 1); set->slot[k] != NULL;
         k = (k + 1) & (set->cap - 1))
    {
        if (strcmp(set->slot[k], s) == 0) {
            return 1;
        }
    }
    return 0;
}

static int
od_set_add(od_set_t *set, const char *s)
{
    size_t k;

    if (od_set_has(set, s)) {
        return 0;
    }
    if ((set->n + 1) * 2 > set->cap && od_set_grow(set) != 0) {
        return -1;
    }
    k = (size_t) od_hash(s) & (set->cap - 1);
    while (set->slot[k] != NULL) {
        k = (k + 1) & (set->cap - 1);
    }
    set->slot[k] = strdup(s);
    if (set->slot[k] == NULL) {
        return -1;
    }
    set->n++;
    return 0;
}

static void
od_set_free(od_set_t *set)
{
    size_t i;

    for (i = 0; i < set->cap; i++) {
        free(set->slot[i]);
    }
    free(set->slot);
    memset(set, 0, sizeof(*set));
}

od_patterns_t *
od_patterns_new(void)
{
    return calloc(1, sizeof(od_patterns_t));
}

void
od_patterns_free(od_patterns_t *p)
{
    size_t i;

    if (p == NULL) {
        return;
    }
    od_set_free(&p->exact);
    od_set_free(&p->suffix);
    for (i = 0; i < p->n_regex; i++) {
        regfree(&p->regex[i].re);
    }
    free(p->regex);
    free(p);
}

size_t
od_patterns_count(const od_patterns_t *p)
{
    return p == NULL ? 0 : p->exact.n + p->suffix.n + p->n_regex;
}

static int
od_regex_add(od_patterns_t *p, const char *pattern, const char *where, char *err,
             size_t errlen)
{
    long        budget = OD_REGEX_TOTAL_MAX - p->regex_cost, cost = 0;
    long        limit = budget < OD_REGEX_COST_MAX ? budget : OD_REGEX_COST_MAX;
    const char *why;
    od_regex_t *v;
    char        ebuf[128];
    int         rc;

    why = strlen(pattern) > OD_REGEX_LEN_MAX
          ? "longer than 256 characters"
          : atls_policy_regex_check(pattern + 1, limit, &cost);
    if (why != NULL) {
        snprintf(err, errlen, "%s: \"%.80s%s\": regex refused: %s%s", where, pattern,
                 strlen(pattern) > 80 ? "..." : "", why,
                 limit < OD_REGEX_COST_MAX ? " (the list's regexes add up)" : "");
        return -1;
    }
    v = realloc(p->regex, (p->n_regex + 1) * sizeof(*v));
    if (v == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->regex = v;
    rc = regcomp(&v[p->n_regex].re, pattern + 1, REG_EXTENDED | REG_ICASE | REG_NOSUB);
    if (rc != 0) {
        regerror(rc, &v[p->n_regex].re, ebuf, sizeof(ebuf));
        snprintf(err, errlen, "%s: \"%.80s\" is not a POSIX extended regex: %s", where,
                 pattern, ebuf);
        return -1;
    }
    p->n_regex++;
    p->regex_cost += cost;
    return 0;
}

void
od_name_fold_ip(char *name)
{
    unsigned char addr[16];
    char          text[INET6_ADDRSTRLEN];

    if (strchr(name, ':') != NULL && inet_pton(AF_INET6, name, addr) == 1
        && inet_ntop(AF_INET6, addr, text, sizeof(text)) != NULL
        && strlen(text) <= strlen(name))
    {
        memcpy(name, text, strlen(text) + 1);
    }
}

int
od_patterns_add(od_patterns_t *p, const char *pattern, const char *where, char *err,
                size_t errlen)
{
    char        below[OD_NAME_MAX + 3], canon[OD_NAME_MAX + 3], why[128], shown[128];
    const char *name = pattern;
    int         suffix = 0;

    if (pattern == NULL || pattern[0] == '\0') {
        snprintf(err, errlen, "%s: empty pattern", where);
        return -1;
    }
    if (pattern[0] == '~') {
        return od_regex_add(p, pattern, where, err, errlen);
    }
    if (strncmp(pattern, "*.", 2) == 0) {
        /* checked as a name one label below it, so that "*.com" passes */
        suffix = 1;
        snprintf(below, sizeof(below), "x.%s", pattern + 2);
        name = below;
    }
    if (atls_name_check(name, strlen(name), !suffix, OD_MAX_LABELS_MAX, canon,
                        sizeof(canon), why, sizeof(why)) != 0)
    {
        snprintf(err, errlen, "%s: \"%s\" is neither a name, \"*.suffix\" nor "
                 "\"~regex\": %s", where,
                 atls_log_escape(pattern, shown, sizeof(shown)), why);
        return -1;
    }
    od_name_fold_ip(canon);
    if ((suffix ? od_set_add(&p->suffix, canon + 2) : od_set_add(&p->exact, canon)) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int
od_patterns_match(const od_patterns_t *p, const char *name)
{
    const char *dot;
    size_t      i;

    if (p == NULL) {
        return 0;
    }
    if (od_set_has(&p->exact, name)) {
        return 1;
    }
    /* "*.suffix": every suffix strictly below the name's first label */
    for (dot = strchr(name, '.'); p->suffix.n > 0 && dot != NULL;
         dot = strchr(dot + 1, '.'))
    {
        if (od_set_has(&p->suffix, dot + 1)) {
            return 1;
        }
    }
    for (i = 0; i < p->n_regex; i++) {
        if (regexec(&p->regex[i].re, name, 0, NULL, 0) == 0) {
            return 1;
        }
    }
    return 0;
}

/* One line of the allow file, trimmed: 0 ok (an empty line or a comment
 * adds nothing), -1 with err naming the file and line. */
static int
od_file_line(od_patterns_t *p, char *line, const char *path, unsigned lineno,
             char *err, size_t errlen)
{
    char   where[300];
    char  *end;

    while (*line == ' ' || *line == '\t') {
        line++;
    }
    end = line + strlen(line);
    while (end > line && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'
                          || end[-1] == '\n'))
    {
        *--end = '\0';
    }
    if (*line == '\0' || *line == '#') {
        return 0;
    }
    snprintf(where, sizeof(where), "%.256s:%u", path, lineno);
    return od_patterns_add(p, line, where, err, errlen);
}

od_patterns_t *
od_patterns_read_file(const char *path, char *err, size_t errlen)
{
    od_patterns_t *p = NULL;
    FILE          *f;
    char           line[OD_LINE_MAX + 2];
    unsigned       lineno = 0;

    f = fopen(path, "re");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    p = od_patterns_new();
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        if (strlen(line) > OD_LINE_MAX && line[strlen(line) - 1] != '\n') {
            snprintf(err, errlen, "%s:%u: line longer than %d bytes", path, lineno,
                     OD_LINE_MAX);
            goto failed;
        }
        if (od_file_line(p, line, path, lineno, err, errlen) != 0) {
            goto failed;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        goto failed;
    }
    fclose(f);
    return p;

failed:
    fclose(f);
    od_patterns_free(p);
    return NULL;
}
