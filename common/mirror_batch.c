/*
 * The certificates one step of a sync pulls (mirror_sync.c), written to
 * the mirror together (issue 12: a node filling an empty mirror of 10,000
 * certificates was bound by fsyncs, nine a certificate).  Each pulled
 * certificate's new files wait here with the generation Redis gave them;
 * the batch is written with one atls_store_put_groups of every
 * certificate's files (one group a certificate, in the order they were
 * read), and only once those are durable, the generation records
 * (mirror-gen/) with one atls_store_put_many: a record never lands ahead
 * of the files it describes, on any filesystem, and the next sync pulls
 * again whatever a crash cut; then one bump of the store generation whose
 * journal names each certificate (what the workers read).  Three syncfs a
 * batch whatever its size, a batch a step (or MIRROR_BATCH_MAX
 * certificates, MIRROR_BATCH_BYTES of files: memory stays bounded when a
 * step has no time limit; the bump is still once a step).
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mirror_int.h"
#include "store_int.h"

#define MIRROR_BATCH_MAX    512
#define MIRROR_BATCH_BYTES  (16 * 1024 * 1024)

static void
files_free(atls_store_file_t *f, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (f[i].data != NULL) {
            explicit_bzero((char *) f[i].data, f[i].len);   /* keys among them */
        }
        free((char *) f[i].data);
        free((char *) f[i].name);
    }
    free(f);
}

/* The groups waiting to be written, and their records' slots. */
static void
batch_drop_pending(mirror_batch_t *b)
{
    size_t i;

    for (i = 0; i < b->np; i++) {
        files_free((atls_store_file_t *) b->pending[i].files, b->pending[i].n);
        free((char *) b->pending[i].dir);
    }
    b->np = 0;
    b->bytes = 0;
    b->written = b->n;
}

static void *
grow(void *v, size_t size, size_t cap)
{
    v = realloc(v, size * cap);
    if (v == NULL) {
        abort();
    }
    return v;
}

/* The generation records of ids[from..n) as files of mirror-gen/. */
static atls_store_file_t *
batch_records(const mirror_batch_t *b, size_t from)
{
    atls_store_file_t *f = calloc(b->n - from + 1, sizeof(*f));
    size_t             i;
    char              *buf;

    if (f == NULL) {
        abort();
    }
    for (i = from; i < b->n; i++) {
        if (asprintf(&buf, "%" PRIu64 "\n", b->gens[i]) < 0) {
            abort();
        }
        f[i - from].name = atls_strdup(b->ids[i]);
        f[i - from].data = buf;
        f[i - from].len = strlen(buf);
    }
    return f;
}

int
mirror_batch_write(atls_mirror_t *m, mirror_batch_t *b, char *err, size_t errlen)
{
    atls_store_group_t *g;
    atls_store_file_t  *rec;
    size_t              nrec = b->n - b->written, done = 0;
    int                 rc;

    if (nrec == 0) {
        return ATLS_STORE_OK;
    }
    if (b->pending == NULL) {
        b->pcap = 32;
        b->pending = grow(NULL, sizeof(*b->pending), b->pcap + 1);
    }
    g = b->pending;
    rc = b->np > 0 ? atls_store_put_groups(m->fs, g, b->np, &done, err, errlen)
                   : ATLS_STORE_OK;
    if (rc == ATLS_STORE_OK) {
        rec = batch_records(b, b->written);
        rc = atls_store_put_many(m->fs, ATLS_MIRROR_GEN_DIR, rec, nrec, &done, err,
                                 errlen);
        files_free(rec, nrec);
    }
    batch_drop_pending(b);
    return rc;
}

int
mirror_batch_add(atls_mirror_t *m, mirror_batch_t *b, const char *id, uint64_t gen,
                 const char *dir, atls_store_file_t *files, size_t n, char *err,
                 size_t errlen)
{
    size_t i;

    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 32;
        b->ids = grow(b->ids, sizeof(*b->ids), b->cap);
        b->gens = grow(b->gens, sizeof(*b->gens), b->cap);
    }
    b->gens[b->n] = gen;
    b->ids[b->n++] = atls_strdup(id);
    if (n == 0) {
        free(files);    /* current already: its record alone */
    } else {
        if (b->np == b->pcap) {
            b->pcap = b->pcap ? b->pcap * 2 : 32;
            b->pending = grow(b->pending, sizeof(*b->pending), b->pcap + 1);
        }
        b->pending[b->np].dir = atls_strdup(dir);
        b->pending[b->np].files = files;
        b->pending[b->np++].n = n;
        for (i = 0; i < n; i++) {
            b->bytes += files[i].len;
        }
    }
    if (b->n - b->written < MIRROR_BATCH_MAX && b->bytes < MIRROR_BATCH_BYTES) {
        return ATLS_STORE_OK;
    }
    return mirror_batch_write(m, b, err, errlen);
}

/* The batch written, then one bump of the store generation for every
 * certificate of the step: made even when the write failed (the
 * certificates of its groups are in place or old, and the next sync pulls
 * again those whose records are not written).  Emptied whatever the
 * result. */
int
mirror_batch_flush(atls_mirror_t *m, mirror_batch_t *b, char *err, size_t errlen)
{
    int rc;

    rc = mirror_batch_write(m, b, err, errlen);
    if (b->n > 0
        && atls_store_bump_generation_many(m->fs, (const char *const *) b->ids, b->n)
           != ATLS_STORE_OK
        && rc == ATLS_STORE_OK)
    {
        snprintf(err, errlen, "mirror %s: generation not bumped (see the log)",
                 m->fs->location);
        rc = ATLS_STORE_ERROR;
    }
    batch_drop_pending(b);
    free(b->pending);
    atls_strv_free(b->ids, b->n);
    free(b->gens);
    memset(b, 0, sizeof(*b));
    return rc;
}
