/*
 * The registry of dynamic names mirrored into every node (atls_mirror.h,
 * "the registry"), on one real redis-server: a writer without a mirror
 * (the CLI) and a node's store write to Redis; each node's mirror then
 * holds the entries, its own registry generation and a journal that names
 * what changed (what the workers read), by announcement or by sync; a
 * broken entry in Redis is not mirrored; a Redis that lost the registry
 * gets the mirror's entries back; a first sync of many names goes in
 * steps bounded in work (atls_mirror_sync_step, as the certificates).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_job.h"
#include "atls_mirror.h"
#include "atls_names.h"
#include "mirror_int.h"
#include "support/mirrorfx.h"
#include "support/mirrornames.h"

typedef mirrorfx_t fx_t;
#define MX_TEST(f) cmocka_unit_test_setup_teardown(f, mirrorfx_setup, mirrorfx_teardown)

static void
sync_names_ok(atls_mirror_t *m, int want)
{
    char err[512];
    int  rc = atls_mirror_sync_names(m, err, sizeof(err));

    if (rc < 0) {
        fail_msg("sync names: %s", err);
    }
    assert_int_equal(rc, want);
}

/* Names added through Redis reach a node's mirror with its own registry
 * generation and a journal naming them; a removal by another node's
 * store follows; a sync with nothing new changes nothing. */
static void
test_registry_reaches_mirror(void **state)
{
    fx_t              *fx = *state;
    atls_store_t      *cli = mirrornames_cli_store(fx), *fs = atls_mirror_fs(fx->b);
    const char *const  names[] = { "one.example", "two.example" };
    char               err[512], **changed = NULL;
    size_t             n = 0;
    uint64_t           g0, s0, g1, g2, rgen;
    int                removed = 0;

    g0 = atls_names_generation(fs);
    s0 = atls_store_generation(fs);
    mirrornames_add(cli, names, 2);
    sync_names_ok(fx->b, 1);
    assert_int_equal(mirrornames_state(fx->b, "one.example"), ATLS_NAME_ACTIVE);
    assert_int_equal(mirrornames_state(fx->b, "two.example"), ATLS_NAME_ACTIVE);
    g1 = atls_names_generation(fs);
    assert_int_equal(g1, g0 + 1);
    assert_true(atls_store_generation(fs) > s0);        /* the workers look */
    assert_int_equal(atls_names_changed_since(fs, g0, g1, &changed, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(changed[0], "one.example");
    assert_string_equal(changed[1], "two.example");
    atls_strv_free(changed, n);
    assert_int_equal(atls_mirror_redis_names_generation(fx->b, &rgen, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_mirror_names_generation(fx->b), rgen);
    sync_names_ok(fx->b, 0);
    assert_int_equal(atls_names_generation(fs), g1);

    /* removed through node A's store: in Redis, then in B's mirror */
    assert_int_equal(atls_names_remove_entry(atls_mirror_store(fx->a), "two.example",
                                             time(NULL), NULL, &removed, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(mirrornames_state(fx->a, "two.example"), -1);   /* not synced yet */
    sync_names_ok(fx->b, 1);
    assert_int_equal(mirrornames_state(fx->b, "two.example"), ATLS_NAME_REMOVED);
    assert_int_equal(mirrornames_state(fx->b, "one.example"), ATLS_NAME_ACTIVE);
    g2 = atls_names_generation(fs);
    assert_int_equal(atls_names_changed_since(fs, g1, g2, &changed, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(changed[0], "two.example");
    atls_strv_free(changed, n);
    atls_store_close(cli);
}

/* A listening node takes a registry change from its announcement alone:
 * the subscriber's read only marks the sync wanted (and calls the host's
 * hook), the host steps it. */
static void
count_hook(void *ctx)
{
    (*(int *) ctx)++;
}

static void
test_registry_announced(void **state)
{
    fx_t              *fx = *state;
    atls_store_t      *cli = mirrornames_cli_store(fx);
    const char *const  names[] = { "heard.example" };
    char               err[512];
    long long          deadline = mirrorfx_now_ms() + MIRRORFX_WAIT_MS;
    int                hooked = 0, done = 0;

    assert_int_equal(atls_mirror_listen(fx->b, err, sizeof(err)), 0);
    while (!atls_mirror_listening(fx->b) && mirrorfx_now_ms() < deadline) {
        assert_true(atls_mirror_poll(fx->b, 100, err, sizeof(err)) >= 0);
    }
    assert_true(atls_mirror_listening(fx->b));
    atls_mirror_set_names_hook(fx->b, count_hook, &hooked);
    assert_false(atls_mirror_names_pending(fx->b));
    mirrornames_add(cli, names, 1);
    while (!atls_mirror_names_pending(fx->b) && mirrorfx_now_ms() < deadline) {
        if (atls_mirror_poll(fx->b, 100, err, sizeof(err)) < 0) {
            fail_msg("poll: %s", err);
        }
    }
    assert_true(atls_mirror_names_pending(fx->b));
    assert_true(hooked >= 1);
    assert_int_equal(mirrornames_state(fx->b, "heard.example"), -1);   /* not in the read */
    /* a journal catch-up: one step, whatever the budget */
    assert_int_equal(atls_mirror_sync_names_step(fx->b, 1, &done, err, sizeof(err)), 1);
    assert_true(done);
    assert_false(atls_mirror_names_pending(fx->b));
    assert_int_equal(mirrornames_state(fx->b, "heard.example"), ATLS_NAME_ACTIVE);
    atls_store_close(cli);
}

/* A node that missed changes (its journal gone from Redis meanwhile)
 * catches up whole at its sync: a purged entry leaves its mirror, a
 * planted entry whose name is not its file's is not mirrored. */
static void
test_registry_full_catch_up(void **state)
{
    fx_t              *fx = *state;
    atls_store_t      *cli = mirrornames_cli_store(fx);
    const char *const  first[] = { "stay.example", "purged.example" };
    const char *const  later[] = { "late.example" };
    const char         planted[] = "{\"name\":\"victim.example\",\"state\":\"active\","
                                   "\"added\":\"2026-01-01T00:00:00Z\"}";
    char               err[512];
    redisReply        *r;

    mirrornames_add(cli, first, 2);
    sync_names_ok(fx->b, 1);
    /* purged by another node (its entry deleted), then a name added */
    assert_int_equal(cli->ops->del(cli, "names/purged.example.json", err, sizeof(err)),
                     ATLS_STORE_OK);
    mirrornames_add(cli, later, 1);
    assert_int_equal(cli->ops->put(cli, "names/evil.example.json", planted,
                                   sizeof(planted) - 1, 0, err, sizeof(err)), ATLS_STORE_OK);
    r = redisfx_cmd(&fx->rfx, "DEL", "t:{/names-journal}:v:names-journal", NULL);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);

    mirrorfx_sync_ok(fx->b, -1, 0);                     /* a full sync */
    assert_int_equal(mirrornames_state(fx->b, "stay.example"), ATLS_NAME_ACTIVE);
    assert_int_equal(mirrornames_state(fx->b, "late.example"), ATLS_NAME_ACTIVE);
    assert_int_equal(mirrornames_state(fx->b, "purged.example"), -1);
    assert_int_equal(mirrornames_state(fx->b, "victim.example"), -1);
    assert_int_equal(mirrornames_state(fx->b, "evil.example"), -1);
    sync_names_ok(fx->b, 0);
    atls_store_close(cli);
}

/* Redis restarted empty: the mirror's entries go back, with a registry
 * generation past the one the mirror took, and another node reads them. */
static void
test_registry_redis_lost(void **state)
{
    fx_t              *fx = *state;
    atls_store_t      *cli = mirrornames_cli_store(fx);
    const char *const  names[] = { "kept.example" };
    char               err[512];
    uint64_t           taken, rgen;
    redisReply        *r;

    mirrornames_add(cli, names, 1);
    sync_names_ok(fx->b, 1);
    taken = atls_mirror_names_generation(fx->b);
    r = redisfx_cmd(&fx->rfx, "FLUSHALL", NULL);
    freeReplyObject(r);

    sync_names_ok(fx->b, 0);        /* the mirror had them all already */
    assert_int_equal(atls_mirror_redis_names_generation(fx->b, &rgen, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_true(rgen > taken);
    assert_int_equal(atls_mirror_names_generation(fx->b), rgen);
    sync_names_ok(fx->a, 1);
    assert_int_equal(mirrornames_state(fx->a, "kept.example"), ATLS_NAME_ACTIVE);
    atls_store_close(cli);
}

/* A name registered while another node orders it: the other nodes'
 * schedulers ensure its meta, and must not write one while the order's
 * lease is held (a meta read before the deploy would overwrite the
 * deployed one, and the name would be ordered again). */
static void
test_ensure_waits_for_the_lease(void **state)
{
    fx_t              *fx = *state;
    atls_store_t      *sa = atls_mirror_store(fx->a), *sb = atls_mirror_store(fx->b);
    atls_store_lock_t *lk = NULL;
    const char *const  names[] = { "race.example" };
    atls_issuer_t      is;
    atls_cert_meta_t   m;
    char               err[512], *data = NULL;

    memset(&is, 0, sizeof(is));
    is.directory = "https://127.0.0.1:14000/dir";
    is.challenge = ATLS_CHAL_HTTP01;
    is.n_key_types = 1;
    is.key_types[0] = ATLS_KEY_EC256;
    assert_int_equal(atls_store_lock_cert(sa, "race.example", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_job_ensure(sb, names, 1, &is, &m, err, sizeof(err)), 0);
    assert_string_equal(m.id, "race.example");
    atls_cert_meta_free(&m);
    assert_int_equal(sa->ops->get(sa, "certs/race.example/meta.json", &data, NULL, err,
                                  sizeof(err)), ATLS_STORE_NOTFOUND);
    atls_store_unlock(sa, lk);
    assert_int_equal(atls_job_ensure(sb, names, 1, &is, NULL, err, sizeof(err)), 0);
    assert_int_equal(sa->ops->get(sa, "certs/race.example/meta.json", &data, NULL, err,
                                  sizeof(err)), ATLS_STORE_OK);
    free(data);
}

/* The entries of names/ in m's mirror directory. */
static size_t
mirrored_count(atls_mirror_t *m)
{
    atls_store_t *fs = atls_mirror_fs(m);
    char          err[512], **files = NULL;
    size_t        n = 0, i, k = 0, len;
    int           rc = fs->ops->list(fs, "names", &files, &n, err, sizeof(err));

    if (rc == ATLS_STORE_NOTFOUND) {
        return 0;
    }
    assert_int_equal(rc, ATLS_STORE_OK);
    for (i = 0; i < n; i++) {
        len = strlen(files[i]);
        k += len > 5 && strcmp(files[i] + len - 5, ".json") == 0;
    }
    atls_strv_free(files, n);
    return k;
}

#define N_MANY  (2 * MIRROR_NAMES_STEP_MAX + 88)

/* A node's first sync of a registry of hundreds of names (no journal to
 * follow): taken in steps of the sliced sync, none going through more
 * than MIRROR_NAMES_STEP_MAX entries, the workers told at each (the
 * mirror's registry journal names them all), and the registry complete
 * at the end, with Redis's generation taken. */
static void
test_first_sync_in_steps(void **state)
{
    fx_t         *fx = *state;
    atls_store_t *cli = mirrornames_cli_store(fx), *fs = atls_mirror_fs(fx->b);
    char         *names[N_MANY], err[512], **changed = NULL;
    size_t        i, before, after, n = 0, steps = 0;
    uint64_t      g0, rgen;
    int           done = 0, pulled, last = 0;

    for (i = 0; i < N_MANY; i++) {
        if (asprintf(&names[i], "n%04zu.example", i) < 0) {
            abort();
        }
    }
    mirrornames_add(cli, (const char *const *) names, N_MANY);
    g0 = atls_names_generation(fs);
    assert_int_equal(mirrored_count(fx->b), 0);
    while (!done) {
        before = mirrored_count(fx->b);
        pulled = atls_mirror_sync_step(fx->b, 1, &done, NULL, err, sizeof(err));
        if (pulled < 0) {
            fail_msg("sync step: %s", err);
        }
        after = mirrored_count(fx->b);
        assert_true(after - before <= MIRROR_NAMES_STEP_MAX);
        assert_true(pulled >= last);            /* each step's names told */
        last = pulled;
        steps += after > before;
        assert_true(steps <= N_MANY);
    }
    assert_true(steps >= 3);
    assert_int_equal(mirrored_count(fx->b), N_MANY);
    for (i = 0; i < N_MANY; i++) {
        assert_int_equal(mirrornames_state(fx->b, names[i]), ATLS_NAME_ACTIVE);
    }
    assert_int_equal(atls_names_changed_since(fs, g0, atls_names_generation(fs), &changed,
                                              &n, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(n, N_MANY);
    atls_strv_free(changed, n);
    assert_int_equal(atls_mirror_redis_names_generation(fx->b, &rgen, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_mirror_names_generation(fx->b), rgen);
    sync_names_ok(fx->b, 0);
    for (i = 0; i < N_MANY; i++) {
        free(names[i]);
    }
    atls_store_close(cli);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        MX_TEST(test_registry_reaches_mirror),
        MX_TEST(test_registry_announced),
        MX_TEST(test_registry_full_catch_up),
        MX_TEST(test_registry_redis_lost),
        MX_TEST(test_ensure_waits_for_the_lease),
        MX_TEST(test_first_sync_in_steps),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
