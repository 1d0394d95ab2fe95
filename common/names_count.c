/*
 * How many entries the registry of dynamic names holds, without listing
 * it: names-count, "<count> <names-generation>\n", beside the registry's
 * generation.  A server sizes its shared memory from it at start-up (at
 * 100,000 names the listing of names/ was a second of nginx's
 * configuration).
 *
 * The count is true only at the generation it names: every change moves
 * it with the generation, under the "names" lock (atls_names_count_moved);
 * a writer that does not keep it (an older CLI, a crash between the two
 * writes) leaves it naming an older generation, and readers then list the
 * registry.  A host that has listed the whole registry at a generation
 * records what it found (atls_names_count_settle), so the count is back
 * at the next start.  The file is the store owner's like everything else:
 * a forged count only sizes a zone (bounded by ATLS_NAMES_COUNT_MAX).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "names_int.h"
#include "store_int.h"

#define NAMES_COUNT  "names-count"
/* "<count> <generation>\n": two 20-digit numbers and two bytes.  The
 * master reads the file as root (before its workers start): a bigger one
 * is refused by the store before it is read into memory. */
#define NAMES_COUNT_MAX_BYTES  63

/* the count and the generation it was true at; ERROR when unreadable */
static int
count_read(atls_store_t *st, uint64_t *count, uint64_t *gen)
{
    char              *data = NULL, err[256];
    size_t             len = 0;
    unsigned long long c, g;
    char               tail;
    int                rc;

    rc = atls_store_get_max(st, NAMES_COUNT, NAMES_COUNT_MAX_BYTES, &data, &len, err,
                            sizeof(err));
    if (rc != ATLS_STORE_OK) {
        if (rc == ATLS_STORE_ERROR) {
            /* readers list the registry instead: slower, not wrong */
            atls_log(ATLS_LOG_WARN, "store: %s", err);
        }
        return rc;
    }
    rc = ATLS_STORE_ERROR;
    /* one line, two decimal numbers */
    if (len > 0 && len <= NAMES_COUNT_MAX_BYTES && memchr(data, '\0', len) == NULL
        && memchr(data, '\n', len) == data + len - 1
        && sscanf(data, "%llu %llu%c", &c, &g, &tail) == 3 && tail == '\n'
        && data[0] >= '0' && data[0] <= '9' && c <= ATLS_NAMES_COUNT_MAX)
    {
        *count = c;
        *gen = g;
        rc = ATLS_STORE_OK;
    }
    free(data);
    return rc;
}

static void
count_write(atls_store_t *st, uint64_t count, uint64_t gen)
{
    char buf[64], err[256];

    snprintf(buf, sizeof(buf), "%" PRIu64 " %" PRIu64 "\n", count, gen);
    if (st->ops->put(st, NAMES_COUNT, buf, strlen(buf), 0, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        /* readers list the registry instead: slower, not wrong */
        atls_log(ATLS_LOG_WARN, "store: %s", err);
    }
}

int
atls_names_count(atls_store_t *st, size_t *n)
{
    uint64_t count, gen, now;

    *n = 0;
    if (count_read(st, &count, &gen) != ATLS_STORE_OK) {
        return ATLS_STORE_NOTFOUND;
    }
    now = atls_names_generation(st);
    if (now == 0 || gen != now) {
        return ATLS_STORE_NOTFOUND;     /* changed since by a writer not keeping it */
    }
    *n = (size_t) count;
    return ATLS_STORE_OK;
}

void
atls_names_count_moved(atls_store_t *st, uint64_t from, uint64_t to, long delta)
{
    uint64_t count = 0, gen = 0;
    int      rc = count_read(st, &count, &gen);

    /* generation 0: no registry was ever written, so none is there */
    if (!(rc == ATLS_STORE_NOTFOUND && from == 0) && (rc != ATLS_STORE_OK || gen != from)) {
        return;     /* not known at the generation before: left for a listing */
    }
    if (delta < 0 && (uint64_t) -delta > count) {
        count = 0;
    } else {
        count += (uint64_t) delta;
    }
    count_write(st, count, to);
}

void
atls_names_count_settle(atls_store_t *st, uint64_t gen, size_t count)
{
    atls_store_lock_t *lk = NULL;
    uint64_t           have, at;
    char               err[256];

    if (gen == 0 || count > ATLS_NAMES_COUNT_MAX
        || (count_read(st, &have, &at) == ATLS_STORE_OK && at == gen))
    {
        return;     /* nothing registered yet, or known already */
    }
    /* under the lock, the generation still the listed one: no change was
     * made since the listing began, none is half made */
    if (st->ops->lock(st, "names", 0, &lk, err, sizeof(err)) != ATLS_STORE_OK) {
        return;     /* a change is being made: the next listing records it */
    }
    if (atls_names_generation(st) == gen) {
        count_write(st, count, gen);
    }
    st->ops->unlock(st, lk);
}
