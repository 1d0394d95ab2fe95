/* Dynamic names: the admin API handler (statuses, bodies, refusals naming
 * the field, filters and paging, the audit trail) and its bearer token. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>
#include "atls_names.h"
#include "atls_store.h"
#include "support/storefx.h"
#include "support/logcap.h"
#include "support/namesfx.h"

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, storefx_setup, storefx_teardown)

/* ---- the admin API ------------------------------------------------------------ */

typedef struct {
    int     status;
    char   *body;
    json_t *json;
} reply_t;

static void
reply_free(reply_t *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static reply_t
api(atls_store_t *st, atls_events_t *ev, const char *method, const char *path,
    const char *query, const char *body)
{
    reply_t r;
    size_t  len = 0;

    memset(&r, 0, sizeof(r));
    (void) atls_names_api(st, ev, method, path, query, body, body != NULL ? strlen(body) : 0,
                          "api 127.0.0.1", 1000, &r.status, &r.body, &len);
    if (r.body != NULL) {
        assert_int_equal(len, strlen(r.body));
        r.json = json_loads(r.body, 0, NULL);
        assert_non_null(r.json);
    }
    return r;
}

static void
assert_error(reply_t *r, int status, const char *part)
{
    const char *why;

    if (r->status != status) {
        fail_msg("status %d, not %d: %s", r->status, status, r->body ? r->body : "");
    }
    why = json_string_value(json_object_get(r->json, "error"));
    assert_non_null(why);
    if (strstr(why, part) == NULL) {
        fail_msg("error \"%s\" lacks \"%s\"", why, part);
    }
    reply_free(r);
}

static void
test_api_put_get_delete(void **state)
{
    storefx_t     *fx = *state;
    atls_events_t *ev;
    atls_actor_t   actor = { "server", "nginx/test", 1, -1, NULL };
    reply_t        r;
    char          *audit = NULL, err[256];
    size_t         len;

    ev = atls_events_new(fx->st, &actor, NULL);
    r = api(fx->st, ev, "PUT", "/names/Shop.Example.COM", NULL, "{\"home\":\"shop\"}");
    assert_int_equal(r.status, 201);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "shop.example.com");
    assert_string_equal(json_string_value(json_object_get(r.json, "home")), "shop");
    assert_string_equal(json_string_value(json_object_get(r.json, "source")), "api");
    assert_string_equal(json_string_value(json_object_get(r.json, "by")), "api 127.0.0.1");
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "active");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r.json, "cert"),
                                                          "state")), "pending");
    reply_free(&r);
    /* again: 200, nothing changes */
    r = api(fx->st, ev, "PUT", "/names/shop.example.com", NULL, NULL);
    assert_int_equal(r.status, 200);
    reply_free(&r);

    r = api(fx->st, ev, "GET", "/names/shop.example.com", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "added")),
                        "1970-01-01T00:16:40Z");
    reply_free(&r);

    r = api(fx->st, ev, "DELETE", "/names/shop.example.com", NULL, NULL);
    assert_int_equal(r.status, 204);
    assert_null(r.body);
    r = api(fx->st, ev, "GET", "/names/shop.example.com", NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "removed");
    reply_free(&r);
    r = api(fx->st, ev, "DELETE", "/names/none.example.com", NULL, NULL);
    assert_error(&r, 404, "not registered");
    r = api(fx->st, ev, "GET", "/names/none.example.com", NULL, NULL);
    assert_error(&r, 404, "none.example.com");

    /* each change is audited once, with who asked */
    assert_int_equal(atls_store_audit_read(fx->st, 0, &audit, &len, err, sizeof(err)), 0);
    assert_non_null(strstr(audit, "\"event\":\"name-added\""));
    assert_non_null(strstr(audit, "\"event\":\"name-removed\""));
    assert_non_null(strstr(audit, "registered by api 127.0.0.1 for home shop"));
    assert_null(strstr(strstr(audit, "name-added") + 1, "name-added"));
    free(audit);
    atls_events_free(ev);
}

static void
test_api_refuses(void **state)
{
    storefx_t *fx = *state;
    reply_t    r;
    char       big[5000];

    r = api(fx->st, NULL, "PUT", "/names/*.example.com", NULL, NULL);
    assert_error(&r, 400, "wildcard");
    r = api(fx->st, NULL, "PUT", "/names/a..example.com", NULL, NULL);
    assert_error(&r, 400, "empty label");
    r = api(fx->st, NULL, "PUT", "/names/x%2f.example.com", NULL, NULL);
    assert_error(&r, 400, "0x25");
    r = api(fx->st, NULL, "PUT", "/names/../../etc", NULL, NULL);
    assert_error(&r, 400, "name");
    r = api(fx->st, NULL, "PUT", "/names/ok.example", NULL, "[1]");
    assert_error(&r, 400, "not a JSON object");
    r = api(fx->st, NULL, "PUT", "/names/ok.example", NULL, "{\"home\":1}");
    assert_error(&r, 400, "\"home\"");
    r = api(fx->st, NULL, "PUT", "/names/ok.example", NULL, "{\"home\":\"a\\nb\"}");
    assert_error(&r, 400, "\"home\"");
    r = api(fx->st, NULL, "PUT", "/names/ok.example", NULL, "{\"owner\":\"x\"}");
    assert_error(&r, 400, "unknown field \"owner\"");
    r = api(fx->st, NULL, "PUT", "/names/ok.example", NULL, "{\"home\":\"a\",\"home\":\"b\"}");
    assert_error(&r, 400, "body");
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    r = api(fx->st, NULL, "PUT", "/names/ok.example", NULL, big);
    assert_error(&r, 400, "longer than 4096");
    r = api(fx->st, NULL, "POST", "/names/ok.example", NULL, NULL);
    assert_error(&r, 405, "POST");
    r = api(fx->st, NULL, "DELETE", "/names", NULL, NULL);
    assert_error(&r, 405, "DELETE");
    r = api(fx->st, NULL, "GET", "/other", NULL, NULL);
    assert_error(&r, 404, "no such resource");
    r = api(fx->st, NULL, "GET", "/namesX", NULL, NULL);
    assert_error(&r, 404, "no such resource");
    r = api(fx->st, NULL, "GET", "/names", "state=bogus", NULL);
    assert_error(&r, 400, "\"state\"");
    r = api(fx->st, NULL, "GET", "/names", "limit=0", NULL);
    assert_error(&r, 400, "\"limit\"");
    r = api(fx->st, NULL, "GET", "/names", "limit=99999999999", NULL);
    assert_error(&r, 400, "\"limit\"");
    r = api(fx->st, NULL, "GET", "/names", "offset=-1", NULL);
    assert_error(&r, 400, "\"offset\"");
    r = api(fx->st, NULL, "GET", "/names", "sort=name", NULL);
    assert_error(&r, 400, "unknown parameter \"sort\"");
    r = api(fx->st, NULL, "GET", "/names", "limit", NULL);
    assert_error(&r, 400, "no value");
    /* nothing was registered by any of them */
    r = api(fx->st, NULL, "GET", "/names", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(r.json), 0);
    reply_free(&r);
}

/* meta.json for id in state st_ (and a not_after) */
static void
meta_put(atls_store_t *st, const char *name, atls_cert_state_t cs, time_t not_after)
{
    atls_cert_meta_t m;
    char             err[256];

    memset(&m, 0, sizeof(m));
    m.id = atls_cert_id(name);
    m.names = (char **) &name;
    m.n_names = 1;
    m.issuer.directory = (char *) "https://ca.test/dir";
    m.state = cs;
    if (not_after != 0) {
        m.n_kt_info = 1;
        m.kt_info[0].key_type = ATLS_KEY_EC256;
        m.kt_info[0].not_after = not_after;
        m.kt_info[0].not_before = not_after - 86400;
    }
    if (cs == ATLS_STATE_FAILED) {
        m.last_error = (char *) "urn:ietf:params:acme:error:rejectedIdentifier: no";
    }
    assert_int_equal(atls_store_save_meta(st, &m, err, sizeof(err)), ATLS_STORE_OK);
    free(m.id);
}

static size_t
names_in(reply_t *r, char *buf, size_t len)
{
    size_t i, n = json_array_size(r->json);

    buf[0] = '\0';
    for (i = 0; i < n; i++) {
        const char *s = json_string_value(json_object_get(json_array_get(r->json, i), "name"));

        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? " " : "", s);
    }
    return n;
}

/* GET path?query lists exactly want (names, space-separated), and its
 * body holds has (NULL: nothing to look for). */
static void
listed(atls_store_t *st, const char *path, const char *query, const char *want,
       const char *has)
{
    reply_t r = api(st, NULL, "GET", path, query, NULL);
    char    buf[512];

    assert_int_equal(r.status, 200);
    names_in(&r, buf, sizeof(buf));
    if (strcmp(buf, want) != 0) {
        fail_msg("%s?%s: \"%s\", not \"%s\"", path, query ? query : "", buf, want);
    }
    if (has != NULL && strstr(r.body, has) == NULL) {
        fail_msg("%s?%s: no %s in %s", path, query ? query : "", has, r.body);
    }
    reply_free(&r);
}

static void
test_api_list_filters(void **state)
{
    storefx_t *fx = *state;
    char       err[256];

    namesfx_add(fx->st, "a.example", NULL, 1);
    namesfx_add(fx->st, "b.example", NULL, 1);
    namesfx_add(fx->st, "c.example", NULL, 1);
    namesfx_add(fx->st, "d.example", NULL, 1);
    namesfx_add(fx->st, "a-b.example", NULL, 1);
    assert_int_equal(atls_names_remove(fx->st, "d.example", 5, err, sizeof(err)), 0);
    meta_put(fx->st, "a.example", ATLS_STATE_VALID, 2000000000);
    meta_put(fx->st, "b.example", ATLS_STATE_FAILED, 0);

    listed(fx->st, "/names", NULL, "a-b.example a.example b.example c.example d.example",
           NULL);
    listed(fx->st, "/names/", "state=active", "a-b.example a.example b.example c.example",
           NULL);
    listed(fx->st, "/names", "state=removed", "d.example", NULL);
    listed(fx->st, "/names", "state=failed", "b.example", "rejectedIdentifier");
    listed(fx->st, "/names", "state=valid", "a.example",
           "\"not_after\":\"2033-05-18T03:33:20Z\"");
    listed(fx->st, "/names", "state=pending", "a-b.example c.example d.example", NULL);
    listed(fx->st, "/names", "limit=2&offset=1", "a.example b.example", NULL);
    listed(fx->st, "/names", "state=pending&limit=1&offset=1", "c.example", NULL);
    listed(fx->st, "/names", "offset=10", "", NULL);
}

/* ---- the bearer token --------------------------------------------------------- */

static void
test_token(void **state)
{
    storefx_t *fx = *state;
    char       file[256], link[256];

    snprintf(file, sizeof(file), "%s/token", fx->dir);
    snprintf(link, sizeof(link), "%s/token.link", fx->dir);
    namesfx_write(file, "s3cret-T0ken\n");
    assert_int_equal(chmod(file, 0600), 0);
    assert_int_equal(atls_api_token_ok(file, "Bearer s3cret-T0ken"), 1);
    assert_int_equal(atls_api_token_ok(file, "bearer s3cret-T0ken"), 1);
    assert_int_equal(atls_api_token_ok(file, "Bearer s3cret-T0ke"), 0);
    assert_int_equal(atls_api_token_ok(file, "Bearer s3cret-T0ken2"), 0);
    assert_int_equal(atls_api_token_ok(file, "Basic s3cret-T0ken"), 0);
    assert_int_equal(atls_api_token_ok(file, "s3cret-T0ken"), 0);
    assert_int_equal(atls_api_token_ok(file, "Bearer "), 0);
    assert_int_equal(atls_api_token_ok(file, NULL), 0);
    /* rotated: the next call reads the new one */
    namesfx_write(file, "other\n");
    assert_int_equal(atls_api_token_ok(file, "Bearer s3cret-T0ken"), 0);
    assert_int_equal(atls_api_token_ok(file, "Bearer other"), 1);

    logcap_start(ATLS_LOG_ERR);
    assert_int_equal(chmod(file, 0644), 0);
    assert_int_equal(atls_api_token_ok(file, "Bearer other"), 0);
    assert_int_equal(logcap_count("readable or writable by others"), 1);
    assert_int_equal(chmod(file, 0640), 0);
    assert_int_equal(atls_api_token_ok(file, "Bearer other"), 1);
    assert_int_equal(symlink(file, link), 0);
    assert_int_equal(atls_api_token_ok(link, "Bearer other"), 0);
    assert_int_equal(atls_api_token_ok(fx->dir, "Bearer other"), 0);
    assert_int_equal(logcap_count("not a regular file"), 1);
    unlink(file);
    assert_int_equal(atls_api_token_ok(file, "Bearer other"), 0);
    assert_int_equal(atls_api_token_ok(NULL, "Bearer other"), 0);
    namesfx_write(file, "\n");
    assert_int_equal(chmod(file, 0600), 0);
    assert_int_equal(atls_api_token_ok(file, "Bearer "), 0);
    assert_int_equal(logcap_count("no token"), 1);
    assert_true(logcap_count(file) >= 4);
    logcap_stop();
}



int
main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_api_put_get_delete),
        STORE_TEST(test_api_refuses),
        STORE_TEST(test_api_list_filters),
        STORE_TEST(test_token),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
