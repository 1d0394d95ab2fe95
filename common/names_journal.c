/*
 * The registry's journal (names-journal, rotated to names-journal.1): one
 * line "<generation> <name>" per name each change touched, appended under
 * the "names" lock right after names-generation moved.  A host that saw
 * generation G reads the names changed since instead of listing the whole
 * registry again, so a change costs O(changes), not O(names), with 100,000
 * names.  The journal is only a shortcut: any generation missing from it
 * (rotated away, a crash between the counter and the line, a line that does
 * not parse) makes the reader fall back to listing everything.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "names_int.h"

#define JOURNAL          "names-journal"
#define JOURNAL_OLD      "names-journal.1"
#define JOURNAL_ROTATE   (256 * 1024)
/* More generations than this to catch up on: list everything instead. */
#define JOURNAL_SPAN_MAX 20000

void
atls_names_journal_add(atls_store_t *st, uint64_t gen, const char *const *names, size_t n)
{
    char       **lines, err[512];
    size_t      *lens, i;
    int          rc = ATLS_STORE_OK;

    if (st->ops->append == NULL || n == 0) {
        return;         /* readers list the registry instead */
    }
    lines = calloc(n, sizeof(*lines));
    lens = calloc(n, sizeof(*lens));
    if (lines == NULL || lens == NULL) {
        abort();
    }
    for (i = 0; i < n; i++) {
        lines[i] = malloc(300);
        if (lines[i] == NULL) {
            abort();
        }
        snprintf(lines[i], 300, "%" PRIu64 " %s", gen, names[i]);
        lens[i] = strlen(lines[i]);
    }
    /* a bulk add's lines in one append (one fsync), where the backend can */
    if (st->ops->append_many != NULL) {
        rc = st->ops->append_many(st, JOURNAL, (const char *const *) lines, lens, n,
                                  JOURNAL_ROTATE, 1, err, sizeof(err));
    }
    for (i = 0; st->ops->append_many == NULL && i < n && rc == ATLS_STORE_OK; i++) {
        rc = st->ops->append(st, JOURNAL, lines[i], lens[i], JOURNAL_ROTATE, 1, err,
                             sizeof(err));
    }
    if (rc != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_WARN, "names: journal not written (hosts list the registry "
                 "instead): %s", err);
    }
    for (i = 0; i < n; i++) {
        free(lines[i]);
    }
    free(lines);
    free(lens);
}

typedef struct {
    uint64_t *gens;     /* generations seen in the span */
    size_t    n_gens;
    char    **names;
    size_t    n_names, cap;
} journal_read_t;

static int
journal_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

    return x < y ? -1 : x > y;
}

static int
journal_str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* One line; -1 when it does not parse. */
static int
journal_line(journal_read_t *r, const char *line, size_t len, uint64_t since, uint64_t upto)
{
    char     name[256], folded[256], why[160];
    uint64_t g = 0;
    size_t   i = 0;

    if (len == 0 || line[0] < '0' || line[0] > '9') {
        return -1;
    }
    for (; i < len && line[i] >= '0' && line[i] <= '9'; i++) {
        if (g > (UINT64_MAX - 9) / 10) {
            return -1;
        }
        g = g * 10 + (uint64_t) (line[i] - '0');
    }
    if (i >= len || line[i] != ' ' || len - i - 1 >= sizeof(name)) {
        return -1;
    }
    if (g <= since || g > upto) {
        return 0;
    }
    memcpy(name, line + i + 1, len - i - 1);
    name[len - i - 1] = '\0';
    if (atls_name_check(name, strlen(name), 1, 127, folded, sizeof(folded), why,
                        sizeof(why)) != 0)
    {
        return -1;
    }
    if (r->n_names == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->names = realloc(r->names, r->cap * sizeof(*r->names));
        r->gens = realloc(r->gens, r->cap * sizeof(*r->gens));
        if (r->names == NULL || r->gens == NULL) {
            abort();
        }
    }
    r->names[r->n_names++] = atls_strdup(folded);
    r->gens[r->n_gens++] = g;
    return 0;
}

/* The lines of one journal file; NOTFOUND when there is none. */
static int
journal_file(atls_store_t *st, const char *path, journal_read_t *r, uint64_t since,
             uint64_t upto, char *err, size_t errlen)
{
    char   *data = NULL, *p, *nl;
    size_t  len = 0;
    int     rc;

    rc = st->ops->get(st, path, &data, &len, err, errlen);
    if (rc != ATLS_STORE_OK) {
        return rc;
    }
    for (p = data; rc == ATLS_STORE_OK && p < data + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t) (data + len - p));
        if (nl == NULL) {
            break;      /* a last line being written: its generation counts as missing */
        }
        if (journal_line(r, p, (size_t) (nl - p), since, upto) != 0) {
            snprintf(err, errlen, "%s: a line does not parse", path);
            rc = ATLS_STORE_ERROR;
        }
    }
    free(data);
    return rc;
}

/* Every generation in (since, upto] has its lines. */
static int
journal_complete(journal_read_t *r, uint64_t since, uint64_t upto)
{
    size_t   i, distinct = 0;

    qsort(r->gens, r->n_gens, sizeof(*r->gens), journal_u64_cmp);
    for (i = 0; i < r->n_gens; i++) {
        distinct += i == 0 || r->gens[i] != r->gens[i - 1];
    }
    return distinct == upto - since;
}

int
atls_names_changed_since(atls_store_t *st, uint64_t since, uint64_t upto, char ***names,
                         size_t *n, char *err, size_t errlen)
{
    journal_read_t r;
    size_t         i, k;
    int            rc, rc_old;

    *names = NULL;
    *n = 0;
    memset(&r, 0, sizeof(r));
    if (upto <= since || upto - since > JOURNAL_SPAN_MAX) {
        snprintf(err, errlen, "generations %" PRIu64 " to %" PRIu64 ": not journalled",
                 since, upto);
        return ATLS_STORE_NOTFOUND;
    }
    rc_old = journal_file(st, JOURNAL_OLD, &r, since, upto, err, errlen);
    rc = rc_old == ATLS_STORE_ERROR ? rc_old
                                    : journal_file(st, JOURNAL, &r, since, upto, err, errlen);
    if (rc == ATLS_STORE_OK && !journal_complete(&r, since, upto)) {
        snprintf(err, errlen, "the journal misses changes since generation %" PRIu64, since);
        rc = ATLS_STORE_NOTFOUND;
    }
    if (rc != ATLS_STORE_OK) {
        atls_strv_free(r.names, r.n_names);
        free(r.gens);
        return rc;
    }
    /* each name once, sorted */
    qsort(r.names, r.n_names, sizeof(*r.names), journal_str_cmp);
    for (i = 0, k = 0; i < r.n_names; i++) {
        if (k > 0 && strcmp(r.names[k - 1], r.names[i]) == 0) {
            free(r.names[i]);
            continue;
        }
        r.names[k++] = r.names[i];
    }
    free(r.gens);
    *names = r.names;
    *n = k;
    return ATLS_STORE_OK;
}
