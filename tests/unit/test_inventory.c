/* The inventory of static certificates: reading configured files, the
 * JSON form, the store's entries (sync, list, save) and the findings log. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_inventory.h"
#include "support/logcap.h"
#include "support/storefx.h"
#include "support/testpki.h"

#define DAY 86400L

typedef struct {
    storefx_t       *sfx;    /* the store (sfx->root) in a temp dir (sfx->dir) */
    atls_store_t    *st;
    const char      *dir;
    const char      *store_dir;
    testpki_chain_t  pki;
} fx_t;

static int
setup(void **state)
{
    static const char *const names[] = { "a.example" };
    fx_t *fx = calloc(1, sizeof(*fx));
    void *sfx;

    if (fx == NULL || storefx_setup(&sfx) != 0) {
        return -1;
    }
    fx->sfx = sfx;
    fx->st = fx->sfx->st;
    fx->dir = fx->sfx->dir;
    fx->store_dir = fx->sfx->root;
    if (testpki_chain_make(&fx->pki, names, 1, ATLS_KEY_EC256) != 0) {
        return -1;
    }
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    fx_t *fx = *state;
    void *sfx = fx->sfx;

    testpki_chain_free(&fx->pki);
    free(fx);
    return storefx_teardown(&sfx);
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* dir/name holding before, a leaf for name (valid na seconds from now,
 * issued by the test intermediate) and the intermediate and root. */
static void
write_leaf(fx_t *fx, const char *file, const char *name, long na, const char *before,
           char *path, size_t len)
{
    EVP_PKEY *k = testpki_key(0);
    X509     *x = testpki_cert(k, name, &name, 1, fx->pki.inter, fx->pki.inter_key, 0,
                               -DAY, na);
    X509     *certs[3] = { x, fx->pki.inter, fx->pki.root };
    char     *pem = testpki_pem(certs, 3), *text;

    assert_int_not_equal(asprintf(&text, "%s%s", before, pem), -1);
    snprintf(path, len, "%s/%s", fx->dir, file);
    write_file(path, text);
    free(text);
    free(pem);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void
load(fx_t *fx, const char *path, const char *server, const char *name,
     atls_inventory_item_t *it)
{
    memset(it, 0, sizeof(*it));
    assert_int_equal(atls_inventory_load_file(path, it), 0);
    it->server = atls_strdup(server);
    atls_inventory_item_use(it, name, "/etc/server.conf:10");
    (void) fx;
}

static void
test_load_skips_the_key_block_undecoded(void **state)
{
    fx_t                 *fx = *state;
    atls_inventory_item_t it;
    char                  path[256];

    /* a key block that is not even base64: decoding it would fail */
    write_leaf(fx, "site.pem", "a.example", 90 * DAY,
               "-----BEGIN PRIVATE KEY-----\n!!! not base64 !!!\n-----END PRIVATE KEY-----\n",
               path, sizeof(path));
    load(fx, path, "nginx", "a.example", &it);
    assert_null(it.error);
    assert_string_equal(it.path, path);
    assert_int_equal(strlen(it.id), 7 + 16);
    assert_memory_equal(it.id, "static-", 7);
    assert_int_equal(it.facts.chain_len, 3);
    assert_true(it.facts.chain_complete);
    assert_string_equal(it.facts.names[0], "a.example");
    /* the same path gives the same id */
    {
        atls_inventory_item_t again;

        load(fx, path, "nginx", "a.example", &again);
        assert_string_equal(again.id, it.id);
        atls_inventory_item_free(&again);
    }
    /* a use is recorded once */
    atls_inventory_item_use(&it, "a.example", "/etc/server.conf:10");
    atls_inventory_item_use(&it, "b.example", "/etc/server.conf:20");
    assert_int_equal(it.n_used_names, 2);
    assert_int_equal(it.n_used_by, 2);
    atls_inventory_item_free(&it);
}

static void
test_unreadable_files_are_findings(void **state)
{
    fx_t                 *fx = *state;
    atls_inventory_item_t it;
    atls_finding_t        fs[4];
    char                  path[256], *big;
    FILE                 *f;

    snprintf(path, sizeof(path), "%s/missing.pem", fx->dir);
    load(fx, path, "nginx", "a.example", &it);
    assert_non_null(it.error);
    assert_non_null(strstr(it.error, path));
    assert_non_null(strstr(it.error, "No such file"));
    assert_int_equal(atls_inventory_item_findings(&it, NULL, time(NULL), fs, 4), 1);
    assert_int_equal(fs[0].type, ATLS_FINDING_UNREADABLE);
    assert_int_equal(fs[0].severity, ATLS_SEV_CRITICAL);
    atls_inventory_item_free(&it);

    snprintf(path, sizeof(path), "%s/garbage.pem", fx->dir);
    write_file(path, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    load(fx, path, "nginx", "a.example", &it);
    assert_non_null(strstr(it.error, "certificate 1 does not parse"));
    atls_inventory_item_free(&it);

    write_file(path, "no PEM at all\n");
    load(fx, path, "nginx", "a.example", &it);
    assert_non_null(strstr(it.error, "no certificate in the file"));
    atls_inventory_item_free(&it);

    /* larger than the cap: refused before reading */
    f = fopen(path, "w");
    big = calloc(1, 4096);
    memset(big, 'x', 4095);
    for (int i = 0; i < 300; i++) {
        fputs(big, f);
    }
    fclose(f);
    free(big);
    load(fx, path, "nginx", "a.example", &it);
    assert_non_null(strstr(it.error, "larger than"));
    atls_inventory_item_free(&it);

    /* not a regular file */
    load(fx, fx->dir, "nginx", "a.example", &it);
    assert_non_null(it.error);
    atls_inventory_item_free(&it);
}

static void
test_json_round_trip(void **state)
{
    fx_t                 *fx = *state;
    atls_inventory_item_t it, back;
    char                  path[256], err[256], *json, *json2;
    const char           *bad;
    time_t                now = time(NULL);

    write_leaf(fx, "rt.pem", "a.example", 10 * DAY, "", path, sizeof(path));
    load(fx, path, "apache", "b.example", &it);
    it.warned_level = 21 * DAY;
    json = atls_inventory_item_to_json(&it, NULL, now);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"source\":\"static\""));
    assert_non_null(strstr(json, "\"finding\":\"expiring\""));
    assert_non_null(strstr(json, "\"finding\":\"name-mismatch\""));
    assert_non_null(strstr(json, "\"detail\":\"b.example not covered\""));
    assert_int_equal(atls_inventory_item_from_json(json, strlen(json), &back, err,
                                                   sizeof(err)), 0);
    assert_string_equal(back.id, it.id);
    assert_string_equal(back.server, "apache");
    assert_string_equal(back.facts.serial, it.facts.serial);
    assert_int_equal(back.facts.not_after, it.facts.not_after);
    assert_int_equal(back.facts.key_bits, 256);
    assert_int_equal(back.warned_level, 21 * DAY);
    json2 = atls_inventory_item_to_json(&back, NULL, now);
    assert_string_equal(json, json2);
    free(json2);
    atls_inventory_item_free(&back);

    /* strict: a wrong type names the field; an id that is a path is refused */
    bad = "{\"id\":\"x\",\"path\":\"/p\",\"used_by\":3}";
    assert_int_equal(atls_inventory_item_from_json(bad, strlen(bad), &back, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "used_by"));
    bad = "{\"id\":\"../x\",\"path\":\"/p\",\"error\":\"e\"}";
    assert_int_equal(atls_inventory_item_from_json(bad, strlen(bad), &back, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "id"));
    free(json);
    atls_inventory_item_free(&it);
}

static ino_t
entry_inode(fx_t *fx, const char *id)
{
    char        path[256];
    struct stat sb;

    snprintf(path, sizeof(path), "%s/inventory/%s.json", fx->store_dir, id);
    if (stat(path, &sb) != 0) {
        return 0;
    }
    assert_int_equal(sb.st_mode & 0777, 0644);
    return sb.st_ino;
}

static void
test_sync_keeps_alert_state_and_removes_own_stale(void **state)
{
    fx_t                  *fx = *state;
    atls_inventory_item_t  ng[2], ap, *list;
    char                   p1[256], p2[256], p3[256], err[256];
    size_t                 n;
    ino_t                  ino;

    write_leaf(fx, "n1.pem", "a.example", 90 * DAY, "", p1, sizeof(p1));
    write_leaf(fx, "n2.pem", "a.example", 90 * DAY, "", p2, sizeof(p2));
    write_leaf(fx, "a1.pem", "a.example", 90 * DAY, "", p3, sizeof(p3));
    load(fx, p1, "nginx", "a.example", &ng[0]);
    load(fx, p2, "nginx", "a.example", &ng[1]);
    load(fx, p3, "apache", "a.example", &ap);
    assert_int_equal(atls_store_inventory_sync(fx->st, "nginx", ng, 2, err, sizeof(err)), 0);
    assert_int_equal(atls_store_inventory_sync(fx->st, "apache", &ap, 1, err, sizeof(err)), 0);

    /* the scheduler records an alert on n1 */
    ng[0].warned_level = 7 * DAY;
    ng[0].expired_sent = 0;
    assert_int_equal(atls_store_inventory_save(fx->st, &ng[0], err, sizeof(err)), 0);
    ng[0].warned_level = 0;

    /* a reload finds n1 again (same serial) and no longer n2 */
    assert_int_equal(atls_store_inventory_sync(fx->st, "nginx", ng, 1, err, sizeof(err)), 0);
    assert_int_equal(atls_store_inventory_list(fx->st, &list, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);   /* n1 and apache's a1; n2 removed */
    assert_true(strcmp(list[0].id, list[1].id) < 0);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i].id, ng[0].id) == 0) {
            assert_int_equal(list[i].warned_level, 7 * DAY);
        } else {
            assert_string_equal(list[i].id, ap.id);
            assert_string_equal(list[i].server, "apache");
        }
    }
    atls_inventory_items_free(list, n);
    assert_int_equal(entry_inode(fx, ng[1].id), 0);

    /* unchanged: nothing written (the file is the same file) */
    ino = entry_inode(fx, ng[0].id);
    assert_int_equal(atls_store_inventory_sync(fx->st, "nginx", ng, 1, err, sizeof(err)), 0);
    assert_int_equal(entry_inode(fx, ng[0].id), ino);

    /* the file now holds another certificate: the alert state starts over */
    atls_inventory_item_free(&ng[0]);
    write_leaf(fx, "n1.pem", "a.example", 90 * DAY, "", p1, sizeof(p1));
    load(fx, p1, "nginx", "a.example", &ng[0]);
    assert_int_equal(atls_store_inventory_sync(fx->st, "nginx", ng, 1, err, sizeof(err)), 0);
    assert_int_equal(atls_store_inventory_list(fx->st, &list, &n, err, sizeof(err)), 0);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i].id, ng[0].id) == 0) {
            assert_int_equal(list[i].warned_level, 0);
            assert_string_equal(list[i].facts.serial, ng[0].facts.serial);
        }
    }
    atls_inventory_items_free(list, n);

    /* apache syncing nothing removes only its own */
    assert_int_equal(atls_store_inventory_sync(fx->st, "apache", NULL, 0, err, sizeof(err)), 0);
    assert_int_equal(atls_store_inventory_list(fx->st, &list, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, ng[0].id);
    atls_inventory_items_free(list, n);

    atls_inventory_item_free(&ng[0]);
    atls_inventory_item_free(&ng[1]);
    atls_inventory_item_free(&ap);
}

static void
test_list_skips_bad_entries_and_save_checks_the_id(void **state)
{
    fx_t                 *fx = *state;
    atls_inventory_item_t it, *list;
    char                  path[256], err[256];
    size_t                n;

    write_leaf(fx, "ok.pem", "a.example", 90 * DAY, "", path, sizeof(path));
    load(fx, path, "nginx", "a.example", &it);
    assert_int_equal(atls_store_inventory_sync(fx->st, "nginx", &it, 1, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/inventory/static-bad.json", fx->store_dir);
    write_file(path, "{not json");
    /* an entry whose id is not its file name */
    snprintf(path, sizeof(path), "%s/inventory/static-other.json", fx->store_dir);
    write_file(path, "{\"id\":\"static-x\",\"path\":\"/p\",\"error\":\"e\"}");

    logcap_start(ATLS_LOG_WARN);
    assert_int_equal(atls_store_inventory_list(fx->st, &list, &n, err, sizeof(err)), 0);
    logcap_stop();
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, it.id);
    assert_int_equal(logcap_count("static-bad.json"), 1);
    assert_int_equal(logcap_count("is not its file name"), 1);
    atls_inventory_items_free(list, n);

    free(it.id);
    it.id = atls_strdup("../escape");
    assert_int_equal(atls_store_inventory_save(fx->st, &it, err, sizeof(err)), ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "not a valid store id"));
    atls_inventory_item_free(&it);
}

static void
test_log_findings_once_each(void **state)
{
    fx_t                 *fx = *state;
    atls_inventory_item_t it[2];
    char                  path[256];

    write_leaf(fx, "exp.pem", "a.example", 5 * DAY, "", path, sizeof(path));
    load(fx, path, "nginx", "other.example", &it[0]);
    snprintf(path, sizeof(path), "%s/none.pem", fx->dir);
    load(fx, path, "nginx", "a.example", &it[1]);

    logcap_start(ATLS_LOG_DEBUG);
    atls_inventory_log_findings(it, 2, NULL, time(NULL));
    logcap_stop();
    /* expiring (warning), name-mismatch (critical), unreadable (critical) */
    assert_int_equal(logcap_count("expiring: expires in"), 1);
    assert_int_equal(logcap_count("name-mismatch: other.example not covered"), 1);
    assert_int_equal(logcap_count("unreadable: "), 1);
    assert_int_equal(logcap_count("(used in /etc/server.conf:10)"), 3);
    assert_int_equal(logcap_count(it[0].path), 2);
    atls_inventory_item_free(&it[0]);
    atls_inventory_item_free(&it[1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_skips_the_key_block_undecoded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_files_are_findings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_keeps_alert_state_and_removes_own_stale,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_skips_bad_entries_and_save_checks_the_id,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_findings_once_each, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
