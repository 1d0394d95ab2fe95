/* The store entries of the event model: audit log, queue, counters,
 * notify.json. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include "atls_store.h"
#include "support/storefx.h"
#include "support/logcap.h"

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, storefx_setup, storefx_teardown)

static char *
read_file(const char *p)
{
    FILE  *f = fopen(p, "r");
    char  *buf;
    long   n;

    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = calloc(1, (size_t) n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
    fclose(f);
    return buf;
}

static size_t
count_lines(const char *s)
{
    size_t n = 0;

    for (; s != NULL && *s != '\0'; s++) {
        n += *s == '\n';
    }
    return n;
}

static void
append_ok(atls_store_t *st, const char *rec, size_t rotate, unsigned keep)
{
    char err[512];

    if (st->ops->append(st, "audit.log", rec, strlen(rec), rotate, keep, err,
                        sizeof(err)) != ATLS_STORE_OK)
    {
        fail_msg("append: %s", err);
    }
}

/* ---- audit log -------------------------------------------------------------- */

static void
test_audit_append_read(void **state)
{
    storefx_t *fx = *state;
    char       err[512], *data = NULL;
    size_t     len = 0;

    assert_int_equal(atls_store_audit_read(fx->st, 0, &data, &len, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_int_equal(atls_store_audit_append(fx->st, "{\"a\":1}", 7, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_audit_append(fx->st, "{\"a\":2}", 7, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_audit_read(fx->st, 0, &data, &len, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_string_equal(data, "{\"a\":1}\n{\"a\":2}\n");
    free(data);
    /* it names certificates and operators: the owner's alone */
    assert_int_equal(storefx_mode(storefx_path(fx, "audit.log")), 0600);
    assert_int_equal(atls_store_audit_read(fx->st, 1, &data, &len, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
}

static void
test_audit_refuses_newline(void **state)
{
    storefx_t *fx = *state;
    char       err[512];

    assert_int_equal(atls_store_audit_append(fx->st, "{\"a\":\n1}", 8, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(fx->st->ops->append(fx->st, "audit.log", "a\nb", 3, 0, 0, err,
                                         sizeof(err)), ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "newline"));
    assert_int_equal(access(storefx_path(fx, "audit.log"), F_OK), -1);
}

static void
test_audit_refuses_link(void **state)
{
    storefx_t *fx = *state;
    char       err[512], target[600];

    snprintf(target, sizeof(target), "%s/elsewhere", fx->dir);
    assert_int_equal(symlink(target, storefx_path(fx, "audit.log")), 0);
    assert_int_equal(atls_store_audit_append(fx->st, "{}", 2, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(access(target, F_OK), -1);
    assert_non_null(strstr(err, "audit.log"));
}

/* Rotation keeps `keep` old files, renames (the same inode moves on: no
 * record is ever copied or rewritten) and loses only what falls off. */
static void
test_audit_rotation(void **state)
{
    storefx_t  *fx = *state;
    struct stat before, after;
    char        rec[64], name[32], *data;
    int         i, seen_first = 0;
    unsigned    f;

    /* records of 31 bytes + '\n': a file is rotated past 100 bytes, so
     * each holds 4 records */
    for (i = 0; i < 4; i++) {
        snprintf(rec, sizeof(rec), "{\"n\":%04d,\"pad\":\"xxxxxxxxxxxx\"}", i);
        append_ok(fx->st, rec, 100, 3);
    }
    assert_int_equal(stat(storefx_path(fx, "audit.log"), &before), 0);
    snprintf(rec, sizeof(rec), "{\"n\":%04d,\"pad\":\"xxxxxxxxxxxx\"}", 4);
    append_ok(fx->st, rec, 100, 3);
    assert_int_equal(stat(storefx_path(fx, "audit.log.1"), &after), 0);
    assert_int_equal(before.st_ino, after.st_ino);
    assert_int_equal(after.st_mode & 0777, 0600);

    for (i = 5; i < 40; i++) {
        snprintf(rec, sizeof(rec), "{\"n\":%04d,\"pad\":\"xxxxxxxxxxxx\"}", i);
        append_ok(fx->st, rec, 100, 3);
    }
    for (f = 1; f <= 3; f++) {
        snprintf(name, sizeof(name), "audit.log.%u", f);
        data = read_file(storefx_path(fx, name));
        assert_non_null(data);
        assert_int_equal(count_lines(data), 4);
        seen_first |= strstr(data, "\"n\":0000") != NULL;
        free(data);
    }
    assert_int_equal(access(storefx_path(fx, "audit.log.4"), F_OK), -1);
    assert_false(seen_first);
    /* the newest old file holds the records just before the current ones */
    data = read_file(storefx_path(fx, "audit.log"));
    assert_non_null(strstr(data, "\"n\":0039"));
    free(data);
    data = read_file(storefx_path(fx, "audit.log.1"));
    assert_non_null(strstr(data, "\"n\":0035"));
    free(data);
}

#define APPENDERS  4
#define PER_CHILD  150

/* Forked appenders, each with its own store handle, rotating as they go:
 * every line read back is one whole record and none is lost. */
static void
test_audit_concurrent(void **state)
{
    storefx_t *fx = *state;
    char       rec[256], err[512], name[32], *data, *line, *save = NULL;
    int        c, i, status, counts[APPENDERS] = { 0 };
    size_t     reclen;
    unsigned   f;
    pid_t      pids[APPENDERS];

    for (c = 0; c < APPENDERS; c++) {
        pids[c] = fork();
        assert_true(pids[c] >= 0);
        if (pids[c] == 0) {
            atls_store_t *st = atls_store_fs_open(fx->root, err, sizeof(err));

            if (st == NULL) {
                _exit(2);
            }
            for (i = 0; i < PER_CHILD; i++) {
                snprintf(rec, sizeof(rec), "{\"child\":%d,\"i\":%04d,\"pad\":\"%0120d\"}",
                         c, i, 0);
                if (st->ops->append(st, "audit.log", rec, strlen(rec), 4096, 1000, err,
                                    sizeof(err)) != ATLS_STORE_OK)
                {
                    _exit(3);
                }
            }
            atls_store_close(st);
            _exit(0);
        }
    }
    for (c = 0; c < APPENDERS; c++) {
        assert_int_equal(waitpid(pids[c], &status, 0), pids[c]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    snprintf(rec, sizeof(rec), "{\"child\":%d,\"i\":%04d,\"pad\":\"%0120d\"}", 0, 0, 0);
    reclen = strlen(rec);
    for (f = 0; f < 1000; f++) {
        if (f == 0) {
            snprintf(name, sizeof(name), "audit.log");
        } else {
            snprintf(name, sizeof(name), "audit.log.%u", f);
        }
        data = read_file(storefx_path(fx, name));
        if (data == NULL) {
            break;
        }
        for (line = strtok_r(data, "\n", &save); line != NULL;
             line = strtok_r(NULL, "\n", &save))
        {
            int ch, n, used = 0;

            if (sscanf(line, "{\"child\":%d,\"i\":%d,%n", &ch, &n, &used) != 2
                || used == 0 || strlen(line) != reclen || ch < 0 || ch >= APPENDERS)
            {
                fail_msg("torn record in %s: %s", name, line);
            }
            counts[ch]++;
        }
        free(data);
    }
    assert_true(f > 1);     /* it did rotate */
    for (c = 0; c < APPENDERS; c++) {
        assert_int_equal(counts[c], PER_CHILD);
    }
}

/* A root process on a store the worker user owns appends and rotates
 * with the owner's identity: every file stays the owner's. */
static void
test_audit_root_on_worker_store(void **state)
{
    storefx_t    *fx = *state;
    atls_store_t *st;
    struct stat   sb;
    char          err[512];
    int           i;

    if (geteuid() != 0) {
        skip();
    }
    assert_int_equal(atls_store_fs_prepare(fx->root, 65534, 65534, err, sizeof(err)), 0);
    st = atls_store_fs_open(fx->root, err, sizeof(err));
    assert_non_null(st);
    for (i = 0; i < 4; i++) {
        append_ok(st, "{\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}", 64, 2);
    }
    assert_int_equal(stat(storefx_path(fx, "audit.log"), &sb), 0);
    assert_int_equal(sb.st_uid, 65534);
    assert_int_equal(sb.st_mode & 07777, 0600);
    assert_int_equal(stat(storefx_path(fx, "audit.log.1"), &sb), 0);
    assert_int_equal(sb.st_uid, 65534);
    assert_int_equal(stat(storefx_path(fx, "locks/rotate-audit.log.lock"), &sb), 0);
    assert_int_equal(sb.st_uid, 65534);
    /* prepare keeps it private, even after someone opened it up */
    assert_int_equal(chmod(storefx_path(fx, "audit.log"), 0644), 0);
    assert_int_equal(atls_store_fs_prepare(fx->root, 65534, 65534, err, sizeof(err)), 0);
    assert_int_equal(storefx_mode(storefx_path(fx, "audit.log")), 0600);
    atls_store_close(st);
}

/* ---- queue ------------------------------------------------------------------ */

static void
test_queue(void **state)
{
    storefx_t *fx = *state;
    char       err[512], *k1 = NULL, *k2 = NULL, *k3 = NULL, *k4 = NULL, **keys = NULL;
    char      *json = NULL;
    size_t     n = 0, len = 0;
    FILE      *f;

    assert_int_equal(atls_store_queue_list(fx->st, &keys, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(atls_store_queue_put(fx->st, "{\"e\":1}", 7, 3, &k1, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_queue_put(fx->st, "{\"e\":2}", 7, 3, &k2, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_queue_put(fx->st, "{\"e\":3}", 7, 3, &k3, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(strlen(k1), 25);
    assert_int_equal(k1[16], '-');
    /* the bound: refused, the message names the store and the bound */
    assert_int_equal(atls_store_queue_put(fx->st, "{\"e\":4}", 7, 3, &k4, err, sizeof(err)),
                     ATLS_STORE_FULL);
    assert_null(k4);
    assert_non_null(strstr(err, fx->root));
    assert_non_null(strstr(err, "3"));
    assert_int_equal(storefx_mode(storefx_path(fx, "events")), 0700);

    /* a name that is not a key is not listed */
    f = fopen(storefx_path(fx, "events/junk.json"), "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(atls_store_queue_list(fx->st, &keys, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 3);
    for (size_t i = 1; i < n; i++) {
        assert_true(strcmp(keys[i - 1], keys[i]) < 0);
    }
    atls_strv_free(keys, n);

    assert_int_equal(atls_store_queue_get(fx->st, k2, &json, &len, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_string_equal(json, "{\"e\":2}");
    free(json);
    assert_int_equal(atls_store_queue_update(fx->st, k2, "{\"e\":22}", 8, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_queue_get(fx->st, k2, &json, &len, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_string_equal(json, "{\"e\":22}");
    free(json);
    assert_int_equal(atls_store_queue_del(fx->st, k1, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_queue_get(fx->st, k1, &json, &len, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    /* room again */
    assert_int_equal(atls_store_queue_put(fx->st, "{\"e\":4}", 7, 3, &k4, err, sizeof(err)),
                     ATLS_STORE_OK);
    free(k1);
    free(k2);
    free(k3);
    free(k4);
}

static void
test_queue_key_validated(void **state)
{
    storefx_t  *fx = *state;
    char        err[512], *json = NULL;
    size_t      len;
    const char *bad[] = { "../x", "../../etc/passwd", "0000000000000001-0000000g",
                          "000000000000001-00000000", "", "0000000000000001-00000000/x",
                          "0000000000000001-0000000A" };
    size_t      i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(atls_store_queue_get(fx->st, bad[i], &json, &len, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_non_null(strstr(err, "invalid notification queue key"));
        assert_int_equal(atls_store_queue_update(fx->st, bad[i], "{}", 2, err, sizeof(err)),
                         ATLS_STORE_ERROR);
        assert_int_equal(atls_store_queue_del(fx->st, bad[i], err, sizeof(err)),
                         ATLS_STORE_ERROR);
    }
    assert_int_equal(atls_store_queue_get(fx->st, NULL, &json, &len, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(access(storefx_path(fx, "x.json"), F_OK), -1);
}

/* ---- counters ---------------------------------------------------------------- */

static void
test_counters(void **state)
{
    storefx_t *fx = *state;
    char       err[512], **names = NULL;
    uint64_t  *values = NULL;
    size_t     n = 9;

    assert_int_equal(atls_store_counters_load(fx->st, &names, &values, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(atls_store_counter_add(fx->st, "orders.ok", 1, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_counter_add(fx->st, "events.renewed", 2, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_counter_add(fx->st, "orders.ok", 5, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_store_counter_add(fx->st, "bad name", 1, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(atls_store_counter_add(fx->st, "../x", 1, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_int_equal(atls_store_counters_load(fx->st, &names, &values, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "events.renewed");
    assert_int_equal(values[0], 2);
    assert_string_equal(names[1], "orders.ok");
    assert_int_equal(values[1], 6);
    atls_strv_free(names, n);
    free(values);
    assert_int_equal(storefx_mode(storefx_path(fx, "counters.json")), 0644);
}

static void
test_counters_broken_file(void **state)
{
    storefx_t *fx = *state;
    char       err[512], **names = NULL;
    uint64_t  *values = NULL;
    size_t     n = 0;
    FILE      *f = fopen(storefx_path(fx, "counters.json"), "w");

    assert_non_null(f);
    fputs("{\"orders.ok\": -3}", f);
    fclose(f);
    assert_int_equal(atls_store_counters_load(fx->st, &names, &values, &n, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "counters.json"));
    /* a new count starts over, said once */
    logcap_start(ATLS_LOG_WARN);
    assert_int_equal(atls_store_counter_add(fx->st, "orders.ok", 1, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(logcap_count("start over"), 1);
    logcap_stop();
    assert_int_equal(atls_store_counters_load(fx->st, &names, &values, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(values[0], 1);
    atls_strv_free(names, n);
    free(values);
}

/* ---- notify.json ------------------------------------------------------------- */

static void
test_notify_conf_store(void **state)
{
    storefx_t          *fx = *state;
    atls_notify_conf_t  c, back;
    char               *headers[] = { "Authorization: Bearer s3cret", "X-Env: test" };
    const char         *levels[] = { "7d", "1d", "12h" };
    char                err[512];

    memset(&c, 0, sizeof(c));
    assert_int_equal(atls_store_load_notify_conf(fx->st, &back, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_int_equal(atls_warn_parse(levels, 3, &c.warn, err, sizeof(err)), 0);
    c.exec = "/usr/local/bin/notify";
    c.exec_timeout_s = 12;
    c.webhook = "https://hooks.example/x?y=1";
    c.headers = headers;
    c.n_headers = 2;
    c.queue_max = 50;
    assert_int_equal(atls_store_save_notify_conf(fx->st, &c, err, sizeof(err)),
                     ATLS_STORE_OK);
    /* a header may carry a token */
    assert_int_equal(storefx_mode(storefx_path(fx, "notify.json")), 0600);
    assert_int_equal(atls_store_load_notify_conf(fx->st, &back, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(back.warn.n, 3);
    assert_int_equal(back.warn.level[2], 12 * 3600);
    assert_string_equal(back.exec, c.exec);
    assert_int_equal(back.exec_timeout_s, 12);
    assert_string_equal(back.webhook, c.webhook);
    assert_int_equal(back.n_headers, 2);
    assert_string_equal(back.headers[0], headers[0]);
    assert_int_equal(back.queue_max, 50);
    atls_notify_conf_free(&back);
}

static void
test_notify_conf_store_hostile(void **state)
{
    storefx_t          *fx = *state;
    atls_notify_conf_t  back;
    char                err[512];
    FILE               *f = fopen(storefx_path(fx, "notify.json"), "w");

    assert_non_null(f);
    fputs("{\"exec\":\"relative/cmd\"}", f);
    fclose(f);
    assert_int_equal(atls_store_load_notify_conf(fx->st, &back, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "notify.json"));
    assert_non_null(strstr(err, "absolute"));
    assert_null(back.exec);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_audit_append_read),
        STORE_TEST(test_audit_refuses_newline),
        STORE_TEST(test_audit_refuses_link),
        STORE_TEST(test_audit_rotation),
        STORE_TEST(test_audit_concurrent),
        STORE_TEST(test_audit_root_on_worker_store),
        STORE_TEST(test_queue),
        STORE_TEST(test_queue_key_validated),
        STORE_TEST(test_counters),
        STORE_TEST(test_counters_broken_file),
        STORE_TEST(test_notify_conf_store),
        STORE_TEST(test_notify_conf_store_hostile),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
