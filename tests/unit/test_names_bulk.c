/*
 * A bulk add or remove (issue 11: `autotls add|remove --from-file` with
 * 1,000 names) costs O(1) fsyncs of the store's shared files, not
 * O(names): one audit append, one counters rewrite, one journal append,
 * one put_many of names/ (every entry's temp, one sync, the renames, one
 * fsync of names/), whatever the batch; and with notification sinks a
 * bounded number of queue entries (ATLS_NOTIFY_BATCH_MAX events each).
 * The entries are durable before names-generation and the journal name
 * them, so a crash never leaves a journal naming an entry that is not on
 * disk.
 *
 * The store is a real filesystem store whose ops are counted (as in
 * test_sched_scale.c) and whose calls are recorded in order.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "atls.h"
#include "atls_event.h"
#include "atls_names.h"
#include "atls_store.h"
#include "support/logcap.h"
#include "support/tmptree.h"

/* ---- a store whose calls are counted ------------------------------------------ */

typedef struct {
    size_t audit_appends;       /* calls that append to audit.log (each an fsync) */
    size_t journal_appends;     /* names-journal */
    size_t counters_puts;       /* counters.json rewrites */
    size_t names_dir_syncs;     /* put_many("names"): one sync for the batch */
    size_t entry_puts_durable;  /* names/<id>.json with its own put (and fsyncs) */
    size_t entry_puts_batched;  /* names/<id>.json in a put_many */
    size_t gen_puts;            /* names-generation */
    size_t queue_puts;          /* events/<key>.json: notification queue entries */
    /* the order that matters for a crash: the sequence number of each */
    size_t seq, last_entry_seq, sync_seq, gen_seq, journal_seq;
} counts_t;

static const atls_store_ops_t *real_ops;
static atls_store_ops_t        counting_ops;
static counts_t                cnt;

static int
is_entry(const char *path)
{
    return strncmp(path, "names/", 6) == 0;
}

static void
count_put(const char *path, int batched)
{
    cnt.seq++;
    if (is_entry(path)) {
        if (batched) {
            cnt.entry_puts_batched++;
        } else {
            cnt.entry_puts_durable++;
        }
        cnt.last_entry_seq = cnt.seq;
    } else if (strcmp(path, "counters.json") == 0) {
        cnt.counters_puts++;
    } else if (strcmp(path, "names-generation") == 0) {
        cnt.gen_puts++;
        cnt.gen_seq = cnt.seq;
    } else if (strncmp(path, "events/", 7) == 0) {
        cnt.queue_puts++;
    }
}

static void
count_append(const char *path)
{
    cnt.seq++;
    if (strcmp(path, "audit.log") == 0) {
        cnt.audit_appends++;
    } else if (strcmp(path, "names-journal") == 0) {
        cnt.journal_appends++;
        cnt.journal_seq = cnt.seq;
    }
}

static int
counting_put(atls_store_t *st, const char *path, const char *data, size_t len,
             int is_private, char *err, size_t errlen)
{
    count_put(path, 0);
    return real_ops->put(st, path, data, len, is_private, err, errlen);
}

static int
counting_put_nosync(atls_store_t *st, const char *path, const char *data, size_t len,
                    int is_private, char *err, size_t errlen)
{
    count_put(path, 1);
    return real_ops->put_nosync(st, path, data, len, is_private, err, errlen);
}

static int
counting_put_many(atls_store_t *st, const char *dir, const atls_store_file_t *files,
                  size_t n, size_t *done, char *err, size_t errlen)
{
    if (strcmp(dir, "names") == 0) {
        cnt.seq++;
        cnt.entry_puts_batched += n;
        cnt.last_entry_seq = cnt.seq;
        cnt.seq++;
        cnt.names_dir_syncs++;
        cnt.sync_seq = cnt.seq;
    }
    return real_ops->put_many(st, dir, files, n, done, err, errlen);
}

static int
counting_sync_dir(atls_store_t *st, const char *dir, char *err, size_t errlen)
{
    cnt.seq++;
    if (strcmp(dir, "names") == 0) {
        cnt.names_dir_syncs++;
        cnt.sync_seq = cnt.seq;
    }
    return real_ops->sync_dir(st, dir, err, errlen);
}

static int
counting_append(atls_store_t *st, const char *path, const char *data, size_t len,
                size_t rotate_bytes, unsigned keep, char *err, size_t errlen)
{
    count_append(path);
    return real_ops->append(st, path, data, len, rotate_bytes, keep, err, errlen);
}

static int
counting_append_many(atls_store_t *st, const char *path, const char *const *recs,
                     const size_t *lens, size_t n, size_t rotate_bytes, unsigned keep,
                     char *err, size_t errlen)
{
    count_append(path);
    return real_ops->append_many(st, path, recs, lens, n, rotate_bytes, keep, err, errlen);
}

/* ---- fixture ---------------------------------------------------------------------- */

static struct {
    char           root[256];
    atls_store_t  *st;
    atls_events_t *ev;
} bx;

static int
setup(void **state)
{
    atls_actor_t actor = { "cli", "autotls/test", 1, 0, "root" };
    char         err[256];

    (void) state;
    logcap_start(ATLS_LOG_WARN);
    snprintf(bx.root, sizeof(bx.root), "/tmp/atls-namesbulk-XXXXXX");
    if (mkdtemp(bx.root) == NULL) {
        return -1;
    }
    bx.st = atls_store_fs_open(bx.root, err, sizeof(err));
    if (bx.st == NULL) {
        return -1;
    }
    real_ops = bx.st->ops;
    counting_ops = *real_ops;
    counting_ops.put = counting_put;
    counting_ops.put_nosync = counting_put_nosync;
    counting_ops.sync_dir = counting_sync_dir;
    counting_ops.put_many = counting_put_many;
    counting_ops.append = counting_append;
    counting_ops.append_many = counting_append_many;
    bx.st->ops = &counting_ops;
    bx.ev = atls_events_new(bx.st, &actor, NULL);
    return bx.ev != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
    (void) state;
    atls_events_free(bx.ev);
    bx.st->ops = real_ops;
    atls_store_close(bx.st);
    tmptree_rm(bx.root);
    logcap_stop();
    return 0;
}

/* prefix<from>.example.com ... prefix<from + n - 1>.example.com */
static char **
names_of(const char *prefix, size_t from, size_t n)
{
    char  **names = calloc(n + 1, sizeof(*names));
    size_t  i;

    assert_non_null(names);
    for (i = 0; i < n; i++) {
        names[i] = malloc(64);
        assert_non_null(names[i]);
        snprintf(names[i], 64, "%s%zu.example.com", prefix, from + i);
    }
    return names;
}

/* Adds n fresh names (prefix0.example.com...) and emits their events as
 * the CLI does; the counts of that batch in *c. */
static void
add_batch(const char *prefix, size_t n, counts_t *c)
{
    char          **names, err[512];
    unsigned char  *added;
    size_t          i;

    names = names_of(prefix, 0, n);
    added = calloc(n, 1);
    assert_non_null(added);
    memset(&cnt, 0, sizeof(cnt));
    assert_int_equal(atls_names_add_many(bx.st, (const char *const *) names, n, NULL,
                                         "cli", "test", 1700000000, added, err,
                                         sizeof(err)), ATLS_STORE_OK);
    for (i = 0; i < n; i++) {
        assert_int_equal(added[i], 1);
    }
    atls_names_emit_many(bx.ev, 1, (const char *const *) names, n, NULL, "cli", "test",
                         1700000000);
    *c = cnt;
    for (i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
    free(added);
}

static size_t
lines_of(const char *path, const char *needle)
{
    char   *data = NULL, err[256], *p;
    size_t  len = 0, k = 0;

    assert_int_equal(real_ops->get(bx.st, path, &data, &len, err, sizeof(err)),
                     ATLS_STORE_OK);
    for (p = data; p != NULL && *p != '\0'; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (needle == NULL || strncmp(p, needle, strlen(needle)) == 0) {
            k++;
        }
    }
    free(data);
    return k;
}

/* Removes prefix<from>... (n names) as the CLI does (atls_names_remove_many,
 * then atls_names_emit_removed through ev); each name's result must be
 * expect; the counts of that batch in *c. */
static void
remove_batch(atls_events_t *ev, const char *prefix, size_t from, size_t n,
             unsigned char expect, counts_t *c)
{
    atls_name_entry_t *was = calloc(n + 1, sizeof(*was));
    unsigned char     *removed = calloc(n + 1, 1);
    char             **names = names_of(prefix, from, n), err[512];
    size_t             i;

    assert_non_null(was);
    assert_non_null(removed);
    memset(&cnt, 0, sizeof(cnt));
    assert_int_equal(atls_names_remove_many(bx.st, (const char *const *) names, n,
                                            1700000100, was, removed, err, sizeof(err)),
                     ATLS_STORE_OK);
    for (i = 0; i < n; i++) {
        assert_int_equal(removed[i], expect);
        if (expect != ATLS_NAMES_NOT_REGISTERED) {
            assert_string_equal(was[i].name, names[i]);
            assert_string_equal(was[i].source, "cli");
        } else {
            assert_null(was[i].name);
        }
    }
    atls_names_emit_removed(ev, was, removed, n, "test", 1700000100);
    *c = cnt;
    atls_name_entries_free(was, n);
    free(removed);
    atls_strv_free(names, n);
}

/* The notification queue's entries, parsed, oldest first (*n of them). */
static json_t **
queue_entries(size_t *n)
{
    char   **keys = NULL, *data = NULL, err[256];
    size_t   i, len = 0;
    json_t **v;

    assert_int_equal(atls_store_queue_list(bx.st, &keys, n, err, sizeof(err)),
                     ATLS_STORE_OK);
    v = calloc(*n + 1, sizeof(*v));
    assert_non_null(v);
    for (i = 0; i < *n; i++) {
        assert_int_equal(atls_store_queue_get(bx.st, keys[i], &data, &len, err,
                                              sizeof(err)), ATLS_STORE_OK);
        v[i] = json_loadb(data, len, 0, NULL);
        assert_non_null(v[i]);
        free(data);
        data = NULL;
    }
    atls_strv_free(keys, *n);
    return v;
}

static void
queue_entries_free(json_t **v, size_t n)
{
    char   dir[300];
    size_t i;

    for (i = 0; i < n; i++) {
        json_decref(v[i]);
    }
    free(v);
    /* the next batch's entries alone */
    snprintf(dir, sizeof(dir), "%s/events", bx.root);
    tmptree_rm(dir);
}

/* entry is a batch of `count` events of type, the first about
 * first_id (NULL: any); the events' count. */
static size_t
assert_batch(json_t *entry, const char *type, size_t count, const char *first_id)
{
    json_t *ev = json_object_get(entry, "event"), *events = json_object_get(ev, "events");

    assert_string_equal(json_string_value(json_object_get(ev, "event")), type);
    assert_true(json_is_true(json_object_get(ev, "batch")));
    assert_int_equal(json_integer_value(json_object_get(ev, "count")), count);
    assert_int_equal(json_array_size(events), count);
    assert_null(json_object_get(ev, "id"));     /* about no one certificate */
    assert_string_equal(json_string_value(json_object_get(json_array_get(events, 0), "event")),
                        type);
    if (first_id != NULL) {
        assert_string_equal(json_string_value(json_object_get(json_array_get(events, 0),
                                                              "id")), first_id);
    }
    assert_int_equal(json_array_size(json_object_get(entry, "pending")), 2);
    return json_array_size(events);
}

/* ---- tests ------------------------------------------------------------------------ */

/* 10 names and 100 names cost the same number of writes of the shared
 * files; only the entries themselves grow with the batch. */
static void
test_shared_writes_do_not_grow(void **state)
{
    counts_t small, big;
    char   **cn = NULL, err[256];
    uint64_t *cv = NULL;
    size_t    n = 0, i;
    int       seen = 0;

    (void) state;
    add_batch("a", 10, &small);
    add_batch("b", 100, &big);

    assert_int_equal(small.audit_appends, 1);
    assert_int_equal(big.audit_appends, small.audit_appends);
    assert_int_equal(small.counters_puts, 1);
    assert_int_equal(big.counters_puts, small.counters_puts);
    assert_int_equal(small.journal_appends, 1);
    assert_int_equal(big.journal_appends, small.journal_appends);
    assert_int_equal(small.names_dir_syncs, 1);
    assert_int_equal(big.names_dir_syncs, small.names_dir_syncs);
    assert_int_equal(big.gen_puts, small.gen_puts);
    /* each entry its own atomic write, none with its own directory fsync */
    assert_int_equal(small.entry_puts_batched, 10);
    assert_int_equal(big.entry_puts_batched, 100);
    assert_int_equal(big.entry_puts_durable, 0);

    /* every name audited, counted and journalled all the same */
    assert_int_equal(lines_of("audit.log", "{\"event\":\"name-added\""), 110);
    assert_int_equal(lines_of("names-journal", NULL), 110);
    assert_int_equal(atls_store_counters_load(bx.st, &cn, &cv, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    for (i = 0; i < n; i++) {
        if (strcmp(cn[i], "events.name-added") == 0) {
            assert_int_equal(cv[i], 110);
            seen = 1;
        }
    }
    assert_true(seen);
    atls_strv_free(cn, n);
    free(cv);
}

/* The entries are durable (names/ fsync'd) before the generation moves
 * and before the journal names them. */
static void
test_entries_durable_before_generation_and_journal(void **state)
{
    counts_t c;

    (void) state;
    add_batch("c", 20, &c);
    assert_true(c.last_entry_seq < c.sync_seq);
    assert_true(c.sync_seq < c.gen_seq);
    assert_true(c.gen_seq < c.journal_seq);
}

/* The journal of a batch answers atls_names_changed_since with every name. */
static void
test_journal_names_the_batch(void **state)
{
    counts_t  c;
    char    **names = NULL, err[256];
    size_t    n = 0;
    uint64_t  g0, g1;

    (void) state;
    g0 = atls_names_generation(bx.st);
    add_batch("d", 30, &c);
    g1 = atls_names_generation(bx.st);
    assert_int_equal(g1, g0 + 1);
    assert_int_equal(atls_names_changed_since(bx.st, g0, g1, &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 30);
    assert_string_equal(names[0], "d0.example.com");
    atls_strv_free(names, n);
}

/* Several event types in one batch: each counter moves by its own count,
 * in one rewrite; the records keep their order. */
static void
test_emit_many_mixed_types(void **state)
{
    atls_event_t e[3];
    const char  *nm[1] = { "x.example.com" };
    char        *data = NULL, err[256], *second;
    size_t       len = 0;

    (void) state;
    memset(e, 0, sizeof(e));
    e[0].type = ATLS_EV_NAME_ADDED;
    e[1].type = ATLS_EV_NAME_REMOVED;
    e[2].type = ATLS_EV_NAME_ADDED;
    e[0].names = e[1].names = e[2].names = nm;
    e[0].n_names = e[1].n_names = e[2].n_names = 1;
    memset(&cnt, 0, sizeof(cnt));
    assert_int_equal(atls_events_emit_many(bx.ev, e, 3), 0);
    assert_int_equal(cnt.audit_appends, 1);
    assert_int_equal(cnt.counters_puts, 1);
    assert_int_equal(real_ops->get(bx.st, "audit.log", &data, &len, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_non_null(strstr(data, "\"event\":\"name-added\""));
    second = strchr(data, '\n');
    assert_non_null(second);
    assert_int_equal(strncmp(second + 1, "{\"event\":\"name-removed\"", 23), 0);
    free(data);
    data = NULL;
    assert_int_equal(real_ops->get(bx.st, "counters.json", &data, &len, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_non_null(strstr(data, "\"events.name-added\": 2"));
    assert_non_null(strstr(data, "\"events.name-removed\": 1"));
    free(data);
}

/* A record that is not one line refuses the whole batch: nothing written. */
static void
test_audit_many_refuses_bad_record(void **state)
{
    const char *recs[2] = { "{\"a\":1}", "{\"b\":\n2}" };
    size_t      lens[2] = { 7, 9 };
    char        err[256], *data = NULL;
    size_t      len = 0;

    (void) state;
    assert_int_equal(atls_store_audit_append_many(bx.st, recs, lens, 2, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "audit.log"));
    assert_int_equal(real_ops->get(bx.st, "audit.log", &data, &len, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    free(data);
}

/* A backend without the batch ops (redis, the mirror) still records every
 * event and every name: one append a record, a durable put an entry. */
static void
test_backend_without_batch_ops(void **state)
{
    counts_t c;

    (void) state;
    counting_ops.put_nosync = NULL;
    counting_ops.sync_dir = NULL;
    counting_ops.put_many = NULL;
    counting_ops.append_many = NULL;
    add_batch("e", 5, &c);
    assert_int_equal(c.entry_puts_durable, 5);
    assert_int_equal(c.audit_appends, 5);
    assert_int_equal(c.journal_appends, 5);
    assert_int_equal(c.counters_puts, 1);
    assert_int_equal(lines_of("audit.log", "{\"event\":\"name-added\""), 5);
    assert_int_equal(lines_of("names-journal", NULL), 5);
}

/* Each shared file written once by the batch c. */
static void
assert_shared_once(const counts_t *c)
{
    assert_int_equal(c->journal_appends, 1);
    assert_int_equal(c->gen_puts, 1);
    assert_int_equal(c->names_dir_syncs, 1);
    assert_int_equal(c->audit_appends, 1);
    assert_int_equal(c->counters_puts, 1);
}

/* A bulk remove costs what a bulk add does: 10 names and 90 names the same
 * writes of the shared files (one journal append, one generation, one
 * sync of names/, one audit append, one counters rewrite); names removed
 * already or never registered move nothing and make no event. */
static void
test_remove_batch_shared_writes_do_not_grow(void **state)
{
    counts_t  add, small, big, again, unknown;
    char    **names = NULL, err[256];
    size_t    n = 0;
    uint64_t  g0, g1;

    (void) state;
    add_batch("r", 100, &add);
    remove_batch(bx.ev, "r", 0, 10, ATLS_NAMES_REMOVED_NOW, &small);
    g0 = atls_names_generation(bx.st);
    remove_batch(bx.ev, "r", 10, 90, ATLS_NAMES_REMOVED_NOW, &big);
    g1 = atls_names_generation(bx.st);

    assert_shared_once(&small);
    assert_shared_once(&big);
    assert_int_equal(small.entry_puts_batched, 10);
    assert_int_equal(big.entry_puts_batched, 90);
    assert_int_equal(big.entry_puts_durable, 0);
    /* durable before the generation and the journal name them */
    assert_true(big.last_entry_seq < big.sync_seq);
    assert_true(big.sync_seq < big.gen_seq);
    assert_true(big.gen_seq < big.journal_seq);

    assert_int_equal(g1, g0 + 1);
    assert_int_equal(atls_names_changed_since(bx.st, g0, g1, &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 90);
    atls_strv_free(names, n);
    assert_int_equal(lines_of("audit.log", "{\"event\":\"name-removed\""), 100);

    /* again, and names never registered: nothing moves, nothing audited */
    remove_batch(bx.ev, "r", 0, 50, ATLS_NAMES_REMOVED_BEFORE, &again);
    remove_batch(bx.ev, "nope", 0, 5, ATLS_NAMES_NOT_REGISTERED, &unknown);
    assert_int_equal(again.gen_puts + unknown.gen_puts, 0);
    assert_int_equal(again.journal_appends + unknown.journal_appends, 0);
    assert_int_equal(again.audit_appends + unknown.audit_appends, 0);
    assert_int_equal(again.entry_puts_batched + unknown.entry_puts_batched, 0);
    assert_int_equal(atls_names_generation(bx.st), g1);
    assert_int_equal(lines_of("audit.log", "{\"event\":\"name-removed\""), 100);
}

/* The single-name calls are the batch of one: atls_names_remove_entry
 * says NOTFOUND for a name never registered, and removed 1 then 0. */
static void
test_remove_entry_is_a_batch_of_one(void **state)
{
    atls_name_entry_t was;
    char              err[256];
    int               removed = -1;

    (void) state;
    assert_int_equal(atls_names_add(bx.st, "One.example.com", "shop", "api", "me", 1, err,
                                    sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_names_remove_entry(bx.st, "nope.example.com", 2, &was, &removed,
                                             err, sizeof(err)), ATLS_STORE_NOTFOUND);
    assert_non_null(strstr(err, "\"nope.example.com\" is not registered"));
    assert_int_equal(removed, 0);
    assert_null(was.name);
    memset(&cnt, 0, sizeof(cnt));
    assert_int_equal(atls_names_remove_entry(bx.st, "one.example.com", 2, &was, &removed,
                                             err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(removed, 1);
    assert_string_equal(was.home, "shop");
    assert_int_equal(was.state, ATLS_NAME_ACTIVE);      /* as found */
    assert_int_equal(cnt.gen_puts, 1);
    assert_int_equal(cnt.journal_appends, 1);
    atls_name_entry_free(&was);
    assert_int_equal(atls_names_remove_entry(bx.st, "one.example.com", 3, &was, &removed,
                                             err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(was.state, ATLS_NAME_REMOVED);
    assert_int_equal(was.removed, 2);       /* the grace runs from the first removal */
    atls_name_entry_free(&was);
}

/* An emitter whose settings name a webhook and a command. */
static atls_events_t *
events_with_sinks(void)
{
    atls_notify_conf_t conf;
    atls_actor_t       actor = { "cli", "autotls/test", 1, 0, "root" };
    atls_events_t     *ev;

    memset(&conf, 0, sizeof(conf));
    conf.exec = "/bin/true";
    conf.webhook = "http://127.0.0.1:9/hook";
    conf.queue_max = 100;       /* far below the names: a batch is one entry */
    ev = atls_events_new(bx.st, &actor, &conf);
    assert_non_null(ev);
    return ev;
}

/* With a webhook and a command configured, a batch of 1,200 added names
 * is 3 queue entries (500, 500, 200 events), 600 removed names 2; a
 * single name keeps its one-event entry (the payload single-name
 * receivers know); the audit log still has one record a name. */
static void
test_batch_queue_entries_bounded(void **state)
{
    atls_events_t     *ev = events_with_sinks();
    counts_t           c;
    json_t           **v;
    size_t             n = 0, total;
    char             **names;

    (void) state;

    names = names_of("q", 0, 1200);
    memset(&cnt, 0, sizeof(cnt));
    atls_names_emit_many(ev, 1, (const char *const *) names, 1200, NULL, "cli", "test",
                         1700000000);
    c = cnt;
    assert_int_equal(c.queue_puts, 3);
    assert_int_equal(c.audit_appends, 1);
    v = queue_entries(&n);
    assert_int_equal(n, 3);
    total = assert_batch(v[0], "name-added", 500, "q0.example.com")
            + assert_batch(v[1], "name-added", 500, "q500.example.com")
            + assert_batch(v[2], "name-added", 200, "q1000.example.com");
    assert_int_equal(total, 1200);
    queue_entries_free(v, n);
    assert_int_equal(lines_of("audit.log", "{\"event\":\"name-added\""), 1200);

    /* one name: the entry a single event always had */
    atls_names_emit(ev, 1, "single.example.com", NULL, "api", "api 127.0.0.1", 1700000000);
    v = queue_entries(&n);
    assert_int_equal(n, 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(v[0], "event"),
                                                          "id")), "single.example.com");
    assert_null(json_object_get(json_object_get(v[0], "event"), "batch"));
    queue_entries_free(v, n);

    /* a bulk remove, the same way */
    add_batch("s", 600, &c);
    remove_batch(ev, "s", 0, 600, ATLS_NAMES_REMOVED_NOW, &c);
    assert_int_equal(c.queue_puts, 2);
    v = queue_entries(&n);
    assert_int_equal(n, 2);
    total = assert_batch(v[0], "name-removed", 500, "s0.example.com")
            + assert_batch(v[1], "name-removed", 100, "s500.example.com");
    assert_int_equal(total, 600);
    queue_entries_free(v, n);

    atls_strv_free(names, 1200);
    atls_events_free(ev);
}

/* 600 names removed together reach the end of their grace together: the
 * purge deletes them with one audit append for their `removed` events,
 * 2 queue entries and one move of the generations. */
static void
test_purge_batch(void **state)
{
    atls_events_t *ev = events_with_sinks();
    counts_t       c;
    json_t       **v;
    size_t         n = 0, purged = 0;
    char           err[512];

    (void) state;
    add_batch("p", 600, &c);
    remove_batch(bx.ev, "p", 0, 600, ATLS_NAMES_REMOVED_NOW, &c);
    memset(&cnt, 0, sizeof(cnt));
    assert_int_equal(atls_names_purge(bx.st, 1700000200, 50, ev, &purged, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(purged, 600);
    assert_int_equal(cnt.audit_appends, 1);
    assert_int_equal(cnt.queue_puts, 2);
    assert_int_equal(cnt.gen_puts, 1);
    assert_int_equal(cnt.journal_appends, 1);
    v = queue_entries(&n);
    assert_int_equal(n, 2);
    assert_int_equal(assert_batch(v[0], "removed", 500, "p0.example.com")
                     + assert_batch(v[1], "removed", 100, NULL), 600);   /* by name */
    queue_entries_free(v, n);
    assert_int_equal(lines_of("audit.log", "{\"event\":\"removed\""), 600);
    atls_events_free(ev);
}

/* A batch's queue entries split where the type changes (a run of one is
 * the single-event entry) and before ATLS_NOTIFY_BATCH_BYTES; the order
 * of the events is kept. */
static void
test_queue_runs_split_by_type_and_size(void **state)
{
    atls_events_t *ev = events_with_sinks();
    atls_event_t   e[100];
    const char    *nm[1] = { "x.example.com" };
    char          *big;
    json_t       **v;
    size_t         n = 0, i;
    const char    *types[3];

    (void) state;
    memset(e, 0, sizeof(e));
    for (i = 0; i < 5; i++) {
        e[i].type = i == 3 ? ATLS_EV_NAME_REMOVED : ATLS_EV_NAME_ADDED;
        e[i].cert_id = "x.example.com";
        e[i].names = nm;
        e[i].n_names = 1;
    }
    assert_int_equal(atls_events_emit_many(ev, e, 5), 0);
    v = queue_entries(&n);
    assert_int_equal(n, 3);
    assert_batch(v[0], "name-added", 3, "x.example.com");
    for (i = 1; i < 3; i++) {
        types[i] = json_string_value(json_object_get(json_object_get(v[i], "event"), "event"));
        assert_null(json_object_get(json_object_get(v[i], "event"), "batch"));
    }
    assert_string_equal(types[1], "name-removed");
    assert_string_equal(types[2], "name-added");
    queue_entries_free(v, n);

    /* 100 events of about 4 KiB: 400 KiB, over the byte bound */
    big = malloc(4001);
    assert_non_null(big);
    memset(big, 'a', 4000);
    big[4000] = '\0';
    for (i = 0; i < 100; i++) {
        e[i].type = ATLS_EV_NAME_ADDED;
        e[i].cert_id = "x.example.com";
        e[i].names = nm;
        e[i].n_names = 1;
        e[i].detail = big;
    }
    assert_int_equal(atls_events_emit_many(ev, e, 100), 0);
    v = queue_entries(&n);
    assert_int_equal(n, 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v[0], "event"),
                                                        "count"))
                     + json_integer_value(json_object_get(json_object_get(v[1], "event"),
                                                          "count")), 100);
    for (i = 0; i < n; i++) {
        char *text = json_dumps(json_object_get(v[i], "event"), JSON_COMPACT);

        assert_true(strlen(text) <= ATLS_NOTIFY_BATCH_BYTES + 128);
        free(text);
    }
    queue_entries_free(v, n);
    free(big);
    atls_events_free(ev);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shared_writes_do_not_grow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entries_durable_before_generation_and_journal,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_names_the_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_many_mixed_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_many_refuses_bad_record, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_backend_without_batch_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_batch_shared_writes_do_not_grow, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_remove_entry_is_a_batch_of_one, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_batch_queue_entries_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_runs_split_by_type_and_size, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
