/*
 * The cluster's counters on a node's status page (atls_mirror.h).
 *
 * counters.json (the events and orders totals the status page shows,
 * atls_store.h) is one value in Redis that every node adds to.  A node's
 * status page is rendered by a worker or child from the node's mirror,
 * where it must never wait on Redis; so the mirror keeps a copy of it:
 * written through by this node's own additions (mirror_store.c routes
 * counters.json to Redis and the mirror), and refreshed from Redis by
 * the node's driver at each heartbeat (atls_mirror_join), which brings in
 * the other nodes' additions within ATLS_MIRROR_MEMBER_TTL_MS / 3.
 *
 * What Redis holds is untrusted: a copy is taken only when it is a JSON
 * object of a sane size (what atls_store_counters_load then reads).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "mirror_int.h"

#define COUNTERS_PATH  "counters.json"
/* a few dozen counters of ~40 bytes each: far below */
#define COUNTERS_MAX   (64 * 1024)

/* 1 when data is what the status page may read as counters.json. */
static int
counters_acceptable(const char *data, size_t len, char *why, size_t whylen)
{
    json_error_t jerr;
    json_t      *root;
    int          ok;

    if (len > COUNTERS_MAX) {
        snprintf(why, whylen, "%zu bytes (at most %d)", len, COUNTERS_MAX);
        return 0;
    }
    root = json_loadb(data, len, 0, &jerr);
    ok = root != NULL && json_is_object(root);
    if (!ok) {
        snprintf(why, whylen, "not a JSON object%s%s", root == NULL ? ": " : "",
                 root == NULL ? jerr.text : "");
    }
    json_decref(root);
    return ok;
}

int
atls_mirror_counters_pull(atls_mirror_t *m, char *err, size_t errlen)
{
    atls_store_t *rs = atls_mirror_rs(m, err, errlen);
    char         *remote = NULL, *local = NULL, why[256];
    size_t        rlen = 0, llen = 0;
    int           rc = -1, lrc;

    if (rs == NULL) {
        goto out;
    }
    lrc = rs->ops->get(rs, COUNTERS_PATH, &remote, &rlen, err, errlen);
    if (lrc == ATLS_STORE_NOTFOUND) {
        /* none yet, or a Redis that restarted empty: the copy stays until
         * the next addition writes both */
        rc = 0;
        goto out;
    }
    if (lrc != ATLS_STORE_OK) {
        goto out;
    }
    if (!counters_acceptable(remote, rlen, why, sizeof(why))) {
        snprintf(err, errlen, "%s{/" COUNTERS_PATH "}:v:" COUNTERS_PATH " in Redis: %s; "
                 "the mirror's copy is kept", m->conf.prefix, why);
        goto out;
    }
    lrc = m->fs->ops->get(m->fs, COUNTERS_PATH, &local, &llen, err, errlen);
    if (lrc == ATLS_STORE_OK && llen == rlen && memcmp(local, remote, rlen) == 0) {
        rc = 0;
        goto out;
    }
    if (m->fs->ops->put(m->fs, COUNTERS_PATH, remote, rlen, 0, err, errlen)
        != ATLS_STORE_OK)
    {
        goto out;
    }
    rc = 1;

out:
    free(remote);
    free(local);
    return rc;
}
