/*
 * The store's change journal: which certificate each generation bump was
 * for, so that a process watching the generation (nginx's watch, the
 * scheduler) reads the few certificates that changed instead of every
 * meta.json.  At 100,000 certificates one deploy must not cost 100,000
 * reads in every server sharing the store.
 *
 * changes.log holds one line per bump, "<generation> <cert-id>" ("-" for
 * a bump that concerns no certificate's files, such as the names
 * registry), appended through the store's append op under the generation
 * lock, and rotated by size to changes.log.1.  The line is appended before
 * the generation is written: a reader that sees generation G finds the
 * line of G, or (a crash in between) two lines for one generation, both
 * taken.  A reader that finds a generation of its range missing (an older
 * binary bumped without a line, the journal rotated past it) is told so
 * and reads everything: the journal only ever saves work.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "atls_store.h"
#include "store_int.h"

#define CHANGES_FILE        "changes.log"
#define CHANGES_OLD_FILE    "changes.log.1"
#define CHANGES_NO_CERT     "-"

/* ---- writing ------------------------------------------------------------------ */

/* "<gen> <id>" appended; a store without the append op journals nothing
 * (its readers then always read everything). */
static int
changes_append(atls_store_t *st, uint64_t gen, const char *id, char *err, size_t errlen)
{
    char line[320];
    int  n;

    if (st->ops->append == NULL) {
        return ATLS_STORE_OK;
    }
    n = snprintf(line, sizeof(line), "%" PRIu64 " %s", gen, id);
    if (n < 0 || (size_t) n >= sizeof(line)) {
        snprintf(err, errlen, "certificate id too long for the change journal");
        return ATLS_STORE_ERROR;
    }
    return st->ops->append(st, CHANGES_FILE, line, (size_t) n, ATLS_CHANGES_ROTATE_BYTES, 1,
                           err, errlen);
}

/* One generation for the n ids (CHANGES_NO_CERT among them), their lines
 * appended together (append_many: one fsync) before it is written: a
 * reader takes every line of a generation. */
static int
bump_for(atls_store_t *st, const char *const *ids, size_t n)
{
    char                err[256], buf[32], **lines = NULL;
    size_t             *lens = NULL, i;
    atls_store_lock_t  *lk = NULL;
    uint64_t            g;
    int                 rc, jr = ATLS_STORE_OK;

    rc = st->ops->lock(st, "generation", 1, &lk, err, sizeof(err));
    if (rc != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_ERR, "store: generation lock: %s", err);
        return ATLS_STORE_ERROR;
    }
    rc = atls_store_read_generation(st, &g, err, sizeof(err));
    if (rc == ATLS_STORE_OK && n > 1 && st->ops->append_many != NULL) {
        lines = calloc(n, sizeof(*lines));
        lens = calloc(n, sizeof(*lens));
        if (lines == NULL || lens == NULL) {
            abort();
        }
        for (i = 0; i < n; i++) {
            if (asprintf(&lines[i], "%" PRIu64 " %s", g + 1, ids[i]) < 0) {
                abort();
            }
            lens[i] = strlen(lines[i]);
        }
        jr = st->ops->append_many(st, CHANGES_FILE, (const char *const *) lines, lens, n,
                                  ATLS_CHANGES_ROTATE_BYTES, 1, err, sizeof(err));
        atls_strv_free(lines, n);
        free(lens);
    } else {
        for (i = 0; rc == ATLS_STORE_OK && jr == ATLS_STORE_OK && i < n; i++) {
            jr = changes_append(st, g + 1, ids[i], err, sizeof(err));
        }
    }
    if (rc == ATLS_STORE_OK && jr != ATLS_STORE_OK) {
        /* the bump matters more than the journal: readers see the gap and
         * read everything */
        atls_log(ATLS_LOG_WARN, "store: change journal: %s", err);
    }
    if (rc == ATLS_STORE_OK) {
        snprintf(buf, sizeof(buf), "%" PRIu64 "\n", g + 1);
        rc = st->ops->put(st, "generation", buf, strlen(buf), 0, err, sizeof(err));
    }
    st->ops->unlock(st, lk);
    if (rc != ATLS_STORE_OK) {
        atls_log(ATLS_LOG_ERR, "store: generation: %s", err);
        return ATLS_STORE_ERROR;
    }
    return ATLS_STORE_OK;
}

int
atls_store_bump_generation_for(atls_store_t *st, const char *id)
{
    const char *one = id != NULL ? id : CHANGES_NO_CERT;

    if (id != NULL && !atls_store_id_ok(id)) {
        atls_log(ATLS_LOG_ERR, "store: generation: invalid certificate id \"%s\"", id);
        return ATLS_STORE_ERROR;
    }
    return bump_for(st, &one, 1);
}

int
atls_store_bump_generation_many(atls_store_t *st, const char *const *ids, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (!atls_store_id_ok(ids[i])) {
            atls_log(ATLS_LOG_ERR, "store: generation: invalid certificate id \"%s\"", ids[i]);
            return ATLS_STORE_ERROR;
        }
    }
    return n == 0 ? ATLS_STORE_OK : bump_for(st, ids, n);
}

int
atls_store_bump_generation(atls_store_t *st)
{
    return atls_store_bump_generation_for(st, NULL);
}

/* ---- reading ------------------------------------------------------------------ */

typedef struct {
    uint64_t       since, span;
    unsigned char *seen;        /* a bit per generation since+1 .. since+span */
    uint64_t       n_seen;
    char         **ids;
    size_t         n_ids, cap_ids;
} changes_read_t;

static void
read_add_id(changes_read_t *r, const char *id, size_t len)
{
    if (r->n_ids == r->cap_ids) {
        size_t cap = r->cap_ids ? r->cap_ids * 2 : 16;
        char **v = realloc(r->ids, cap * sizeof(*v));

        if (v == NULL) {
            abort();
        }
        r->ids = v;
        r->cap_ids = cap;
    }
    r->ids[r->n_ids] = strndup(id, len);
    if (r->ids[r->n_ids] == NULL) {
        abort();
    }
    r->n_ids++;
}

/* One line; lines that do not parse (a torn or foreign line in a store
 * that is not trusted) are skipped: a generation they stood for is then
 * missing, and the reader reads everything. */
static void
read_line(changes_read_t *r, const char *p, size_t len)
{
    char     num[24], id[256];
    size_t   i = 0, k;
    uint64_t gen, bit;

    while (i < len && i < sizeof(num) - 1 && isdigit((unsigned char) p[i])) {
        num[i] = p[i];
        i++;
    }
    if (i == 0 || i >= len || p[i] != ' ' || len - i - 1 >= sizeof(id)) {
        return;
    }
    num[i] = '\0';
    errno = 0;
    gen = strtoull(num, NULL, 10);
    if (errno != 0 || gen <= r->since || gen > r->since + r->span) {
        return;
    }
    k = len - i - 1;
    memcpy(id, p + i + 1, k);
    id[k] = '\0';
    if (strcmp(id, CHANGES_NO_CERT) != 0 && !atls_store_id_ok(id)) {
        return;
    }
    bit = gen - r->since - 1;
    if (!(r->seen[bit / 8] & (1u << (bit % 8)))) {
        r->seen[bit / 8] |= (unsigned char) (1u << (bit % 8));
        r->n_seen++;
    }
    if (strcmp(id, CHANGES_NO_CERT) != 0) {
        read_add_id(r, id, k);
    }
}

/* The lines of one journal file; NOTFOUND is no error (nothing there). */
static int
read_file(atls_store_t *st, const char *path, changes_read_t *r, char *err, size_t errlen)
{
    char  *data = NULL, *p, *end, *nl;
    size_t len = 0;
    int    rc;

    rc = st->ops->get(st, path, &data, &len, err, errlen);
    if (rc != ATLS_STORE_OK) {
        free(data);
        return rc;
    }
    for (p = data, end = data + len; p < end; p = nl + 1) {
        nl = memchr(p, '\n', (size_t) (end - p));
        if (nl == NULL) {
            break;      /* a line being appended */
        }
        read_line(r, p, (size_t) (nl - p));
    }
    free(data);
    return ATLS_STORE_OK;
}

static int
id_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Sorted, each id once. */
static void
read_unique(changes_read_t *r)
{
    size_t i, k = 0;

    if (r->n_ids == 0) {
        return;
    }
    qsort(r->ids, r->n_ids, sizeof(*r->ids), id_cmp);
    for (i = 1; i < r->n_ids; i++) {
        if (strcmp(r->ids[i], r->ids[k]) == 0) {
            free(r->ids[i]);
        } else {
            r->ids[++k] = r->ids[i];
        }
    }
    r->n_ids = k + 1;
}

int
atls_store_changes_since(atls_store_t *st, uint64_t since, uint64_t upto, char ***ids,
                         size_t *n, char *err, size_t errlen)
{
    changes_read_t r;
    int            rc = ATLS_STORE_NOTFOUND;

    *ids = NULL;
    *n = 0;
    if (upto <= since) {
        return ATLS_STORE_OK;
    }
    if (upto - since > ATLS_CHANGES_MAX_SPAN || st->ops->append == NULL) {
        return ATLS_STORE_NOTFOUND;
    }
    memset(&r, 0, sizeof(r));
    r.since = since;
    r.span = upto - since;
    r.seen = calloc((size_t) (r.span + 7) / 8, 1);
    if (r.seen == NULL) {
        abort();
    }
    rc = read_file(st, CHANGES_FILE, &r, err, errlen);
    if (rc == ATLS_STORE_ERROR) {
        goto out;
    }
    if (r.n_seen < r.span) {
        /* older lines went to the rotated file */
        rc = read_file(st, CHANGES_OLD_FILE, &r, err, errlen);
        if (rc == ATLS_STORE_ERROR) {
            goto out;
        }
    }
    if (r.n_seen < r.span) {
        rc = ATLS_STORE_NOTFOUND;
        goto out;
    }
    read_unique(&r);
    *ids = r.ids;
    *n = r.n_ids;
    r.ids = NULL;
    r.n_ids = 0;
    rc = ATLS_STORE_OK;

out:
    atls_strv_free(r.ids, r.n_ids);
    free(r.seen);
    return rc;
}

/* ---- pending renew requests --------------------------------------------------- */

int
atls_store_list_requests(atls_store_t *st, char ***ids, size_t *n, char *err, size_t errlen)
{
    int rc = st->ops->list(st, "requests", ids, n, err, errlen);

    if (rc == ATLS_STORE_NOTFOUND) {
        *ids = NULL;
        *n = 0;
        return ATLS_STORE_OK;
    }
    return rc;
}
