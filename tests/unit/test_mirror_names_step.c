/*
 * The registry of names synced in steps at every sync, not only the
 * first (atls_mirror_sync_names_step, issue 12), on one real
 * redis-server: a node whose mirror took the registry once, then missed
 * thousands of changes whose journal Redis no longer holds, catches up in
 * several calls bounded in work, each moving the mirror's generations
 * once; the result is a one-pass sync's; changes landing mid-way are
 * right at the end; a cancelled sync leaves every entry whole; a Redis
 * that lost the registry mid-way gets the mirror's entries back instead
 * of emptying the mirror.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include "atls_mirror.h"
#include "atls_names.h"
#include "mirror_int.h"
#include "names_int.h"
#include "store_int.h"
#include "support/mirrorfx.h"
#include "support/mirrornames.h"

typedef mirrorfx_t fx_t;
#define MX_TEST(f) cmocka_unit_test_setup_teardown(f, mirrorfx_setup, mirrorfx_teardown)

#define N_MISSED  1500

static void
remove_name(atls_store_t *st, const char *name)
{
    char err[512];
    int  removed = 0;

    if (atls_names_remove_entry(st, name, time(NULL), NULL, &removed, err, sizeof(err))
        != ATLS_STORE_OK || removed != 1)
    {
        fail_msg("remove %s: %s", name, err);
    }
}

/* Every file of names/ in m's mirror is a whole entry of the name its file
 * says (no temporary left); their number. */
static size_t
assert_entries_whole(atls_mirror_t *m)
{
    atls_store_t      *fs = atls_mirror_fs(m);
    atls_name_entry_t  e;
    char               err[512], **files = NULL, *path, *data, *id;
    size_t             n = 0, i, len;
    int                rc = fs->ops->list(fs, "names", &files, &n, err, sizeof(err));

    if (rc == ATLS_STORE_NOTFOUND) {
        return 0;
    }
    assert_int_equal(rc, ATLS_STORE_OK);
    for (i = 0; i < n; i++) {
        len = strlen(files[i]);
        assert_true(len > 5 && strcmp(files[i] + len - 5, ".json") == 0);
        path = atls_store_cat("names/", files[i], NULL);
        data = NULL;
        assert_int_equal(fs->ops->get(fs, path, &data, &len, err, sizeof(err)),
                         ATLS_STORE_OK);
        if (atls_name_entry_from_json(data, len, &e, err, sizeof(err)) != 0) {
            fail_msg("%s: %s", path, err);
        }
        id = atls_cert_id(e.name);
        assert_non_null(id);
        assert_int_equal(strlen(files[i]), strlen(id) + 5);
        assert_memory_equal(files[i], id, strlen(id));
        free(id);
        atls_name_entry_free(&e);
        free(data);
        free(path);
    }
    atls_strv_free(files, n);
    return n;
}

/* names/ byte for byte the same in both nodes' mirrors. */
static void
assert_same_registry(atls_mirror_t *a, atls_mirror_t *b)
{
    atls_store_t *fa = atls_mirror_fs(a), *fb = atls_mirror_fs(b);
    char          err[512], **files = NULL, *path, *da, *db;
    size_t        n = 0, i, la, lb;

    assert_int_equal(assert_entries_whole(a), assert_entries_whole(b));
    assert_int_equal(fa->ops->list(fa, "names", &files, &n, err, sizeof(err)), ATLS_STORE_OK);
    for (i = 0; i < n; i++) {
        path = atls_store_cat("names/", files[i], NULL);
        da = db = NULL;
        assert_int_equal(fa->ops->get(fa, path, &da, &la, err, sizeof(err)), ATLS_STORE_OK);
        if (fb->ops->get(fb, path, &db, &lb, err, sizeof(err)) != ATLS_STORE_OK) {
            fail_msg("%s: only in one mirror", path);
        }
        assert_int_equal(la, lb);
        assert_memory_equal(da, db, la);
        free(da);
        free(db);
        free(path);
    }
    atls_strv_free(files, n);
}

/* N_MISSED names n0000.example ... (malloc'd, freed with free_names). */
static char **
make_names(void)
{
    char   **v = calloc(N_MISSED, sizeof(*v));
    size_t   i;

    assert_non_null(v);
    for (i = 0; i < N_MISSED; i++) {
        if (asprintf(&v[i], "n%04zu.example", i) < 0) {
            abort();
        }
    }
    return v;
}

static void
free_names(char **v)
{
    atls_strv_free(v, N_MISSED);
}

/* Node B took the registry once; then N_MISSED names were added and
 * Redis's journal lost (trimmed past B's generation): B's next sync goes
 * through the whole registry. */
static void
missed_while_down(fx_t *fx, atls_store_t *cli, char **names)
{
    const char *const first[] = { "early.example" };
    char              err[512];
    redisReply       *r;

    mirrornames_add(cli, first, 1);
    assert_int_equal(atls_mirror_sync_names(fx->b, err, sizeof(err)), 1);
    mirrornames_add(cli, (const char *const *) names, N_MISSED);
    r = redisfx_cmd(&fx->rfx, "DEL", "t:{/names-journal}:v:names-journal", NULL);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
}

/* One step: bounded by MIRROR_NAMES_STEP_MAX entries (a budget the test
 * machine's pace cannot reach first); *changed, and the generations it
 * moved checked. */
#define STEP_BUDGET_MS  60000
static int
step(atls_mirror_t *m, int *changed)
{
    atls_store_t *fs = atls_mirror_fs(m);
    uint64_t      ng = atls_names_generation(fs), sg = atls_store_generation(fs);
    char          err[512];
    int           done = 0, rc = atls_mirror_sync_names_step(m, STEP_BUDGET_MS, &done, err,
                                                          sizeof(err));

    if (rc < 0) {
        fail_msg("names step: %s", err);
    }
    *changed = rc;
    if (rc > 0) {
        /* once per call for all it applied */
        assert_int_equal(atls_names_generation(fs), ng + 1);
        assert_true(atls_store_generation(fs) > sg);
    } else {
        assert_int_equal(atls_names_generation(fs), ng);
    }
    return done;
}

/* The catch-up takes several calls, each done 0 until the last, each
 * going through at most MIRROR_NAMES_STEP_MAX entries; a name removed
 * ahead of the steps is right in the same sync, one removed behind them
 * and one added come with the next (a journal catch-up: one call); the
 * result is what a one-pass sync of another node gives. */
static void
test_catch_up_in_steps(void **state)
{
    fx_t              *fx = *state;
    atls_store_t      *cli = mirrornames_cli_store(fx);
    char             **names = make_names(), err[512];
    const char *const  late[] = { "late.example" };
    size_t             calls = 0, before, after;
    uint64_t           rgen;
    int                done = 0, changed;

    missed_while_down(fx, cli, names);
    while (!done) {
        before = assert_entries_whole(fx->b);
        done = step(fx->b, &changed);
        after = assert_entries_whole(fx->b);
        assert_true(after - before <= MIRROR_NAMES_STEP_MAX);
        assert_true(done || atls_mirror_names_pending(fx->b));
        if (++calls == 2) {
            remove_name(cli, names[0]);                 /* already pulled */
            remove_name(cli, names[N_MISSED - 1]);      /* not yet */
            mirrornames_add(cli, late, 1);
        }
        assert_true(calls <= N_MISSED);
    }
    assert_true(calls >= N_MISSED / MIRROR_NAMES_STEP_MAX);
    assert_false(atls_mirror_names_pending(fx->b));
    assert_int_equal(mirrornames_state(fx->b, names[1]), ATLS_NAME_ACTIVE);
    assert_int_equal(mirrornames_state(fx->b, names[N_MISSED - 1]), ATLS_NAME_REMOVED);
    /* the generation read at the start was taken: what came later follows */
    assert_int_equal(mirrornames_state(fx->b, names[0]), ATLS_NAME_ACTIVE);
    assert_int_equal(mirrornames_state(fx->b, "late.example"), -1);
    assert_true(atls_mirror_redis_names_generation(fx->b, &rgen, err, sizeof(err))
                == ATLS_STORE_OK && rgen > atls_mirror_names_generation(fx->b));
    assert_true(step(fx->b, &changed));
    assert_int_equal(changed, 1);
    assert_int_equal(mirrornames_state(fx->b, names[0]), ATLS_NAME_REMOVED);
    assert_int_equal(mirrornames_state(fx->b, "late.example"), ATLS_NAME_ACTIVE);
    assert_int_equal(atls_mirror_names_generation(fx->b), rgen);

    /* node A in one pass: the same registry */
    assert_int_equal(atls_mirror_sync_names(fx->a, err, sizeof(err)), 1);
    assert_same_registry(fx->a, fx->b);
    assert_int_equal(assert_entries_whole(fx->b), N_MISSED + 2);
    free_names(names);
    atls_store_close(cli);
}

/* A sync cancelled mid-way (the host's connection failed) leaves every
 * entry whole and nothing under way; the next sync lists again and ends
 * where a one-pass sync does. */
static void
test_cancelled_consistent(void **state)
{
    fx_t         *fx = *state;
    atls_store_t *cli = mirrornames_cli_store(fx);
    char        **names = make_names(), err[512];
    size_t        had;
    int           changed, i;

    missed_while_down(fx, cli, names);
    for (i = 0; i < 3; i++) {
        assert_false(step(fx->b, &changed));
    }
    had = assert_entries_whole(fx->b);
    assert_true(had > 1 && had < N_MISSED);
    atls_mirror_sync_cancel(fx->b);
    assert_false(atls_mirror_names_pending(fx->b));
    assert_int_equal(assert_entries_whole(fx->b), had);
    assert_true(atls_mirror_names_generation(fx->b) > 0);     /* the one before */
    assert_int_equal(atls_mirror_sync_names(fx->b, err, sizeof(err)), 1);
    assert_int_equal(atls_mirror_sync_names(fx->a, err, sizeof(err)), 1);
    assert_same_registry(fx->a, fx->b);
    assert_int_equal(assert_entries_whole(fx->b), N_MISSED + 1);
    free_names(names);
    atls_store_close(cli);
}

/* The files of names/ in Redis. */
static size_t
redis_entries(atls_store_t *cli)
{
    char   err[512], **files = NULL;
    size_t n = 0;
    int    rc = cli->ops->list(cli, "names", &files, &n, err, sizeof(err));

    assert_true(rc == ATLS_STORE_OK || rc == ATLS_STORE_NOTFOUND);
    atls_strv_free(files, n);
    return n;
}

/* Redis restarted empty between two steps: the steps that follow do not
 * delete the entries it lacks from the mirror; the sync begins again and
 * writes them back in steps, then raises Redis's registry generation past
 * the mirror's. */
static void
test_redis_lost_midway(void **state)
{
    fx_t         *fx = *state;
    atls_store_t *cli = mirrornames_cli_store(fx);
    char        **names = make_names(), err[512];
    size_t        had;
    uint64_t      rgen;
    int           changed, done = 0, calls = 0;
    redisReply   *r;

    missed_while_down(fx, cli, names);
    assert_false(step(fx->b, &changed));
    assert_false(step(fx->b, &changed));
    had = assert_entries_whole(fx->b);
    r = redisfx_cmd(&fx->rfx, "FLUSHALL", NULL);
    freeReplyObject(r);
    /* the write-back is in steps too */
    assert_false(step(fx->b, &changed));
    assert_int_equal(redis_entries(cli), MIRROR_NAMES_STEP_MAX);
    while (!done) {
        done = step(fx->b, &changed);
        assert_true(++calls < 100);
    }
    assert_int_equal(assert_entries_whole(fx->b), had);
    assert_int_equal(mirrornames_state(fx->b, "early.example"), ATLS_NAME_ACTIVE);
    assert_int_equal(atls_mirror_redis_names_generation(fx->b, &rgen, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_mirror_names_generation(fx->b), rgen);
    /* another node reads them from Redis */
    assert_int_equal(atls_mirror_sync_names(fx->a, err, sizeof(err)), 1);
    assert_same_registry(fx->a, fx->b);
    free_names(names);
    atls_store_close(cli);
}

/* A full sync that reaches the registry continues the registry sync under
 * way, not a second one beside it. */
static void
test_full_sync_continues_it(void **state)
{
    fx_t         *fx = *state;
    atls_store_t *cli = mirrornames_cli_store(fx);
    char        **names = make_names(), err[512];
    int           changed, done = 0, pulled;

    missed_while_down(fx, cli, names);
    assert_false(step(fx->b, &changed));
    assert_true(atls_mirror_names_pending(fx->b));
    while (!done) {
        pulled = atls_mirror_sync_step(fx->b, STEP_BUDGET_MS, &done, NULL, err, sizeof(err));
        if (pulled < 0) {
            fail_msg("sync step: %s", err);
        }
    }
    assert_false(atls_mirror_names_pending(fx->b));
    assert_int_equal(assert_entries_whole(fx->b), N_MISSED + 1);
    assert_int_equal(atls_mirror_sync_names(fx->b, err, sizeof(err)), 0);
    free_names(names);
    atls_store_close(cli);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        MX_TEST(test_catch_up_in_steps),
        MX_TEST(test_cancelled_consistent),
        MX_TEST(test_redis_lost_midway),
        MX_TEST(test_full_sync_continues_it),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
