/* Dynamic names: the syntax check, the registry in the store, the admin
 * API and the token, and the scheduler's sync with a fake host. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <fcntl.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>
#include "atls_names.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "support/fakeca.h"
#include "support/fakehost.h"
#include "support/storefx.h"
#include "support/logcap.h"

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, storefx_setup, storefx_teardown)

/* ---- atls_name_check ------------------------------------------------------ */

static int
check(const char *name, int allow_ip, unsigned max_labels, char *out, char *why)
{
    return atls_name_check(name, strlen(name), allow_ip, max_labels, out, 254, why, 160);
}

static void
check_ok(const char *name, const char *want)
{
    char out[254], why[160] = "";

    if (check(name, 0, 0, out, why) != 0) {
        fail_msg("\"%s\" refused: %s", name, why);
    }
    assert_string_equal(out, want);
}

static void
check_bad(const char *name, int allow_ip, const char *why_part)
{
    char out[254], why[160] = "";

    if (check(name, allow_ip, 0, out, why) == 0) {
        fail_msg("\"%s\" accepted as \"%s\"", name, out);
    }
    if (strstr(why, why_part) == NULL) {
        fail_msg("\"%s\": why \"%s\" lacks \"%s\"", name, why, why_part);
    }
}

static void
test_check_accepts(void **state)
{
    char out[254], why[160];

    (void) state;
    check_ok("example.com", "example.com");
    check_ok("WWW.Example.COM", "www.example.com");
    check_ok("example.com.", "example.com");
    check_ok("xn--bcher-kva.example", "xn--bcher-kva.example");   /* bücher */
    check_ok("a-b.c1.example", "a-b.c1.example");
    check_ok("1.2.3.example", "1.2.3.example");
    assert_int_equal(check("127.0.0.1", 1, 0, out, why), 0);
    assert_string_equal(out, "127.0.0.1");
    assert_int_equal(check("::1", 1, 0, out, why), 0);
    assert_string_equal(out, "::1");
    assert_int_equal(check("2001:db8::1", 1, 0, out, why), 0);
    /* not NUL-terminated: only len bytes count */
    assert_int_equal(atls_name_check("example.comXYZ", 11, 0, 0, out, 254, why, 160), 0);
    assert_string_equal(out, "example.com");
}

static void
test_check_refuses(void **state)
{
    (void) state;
    check_bad("", 0, "empty");
    check_bad("localhost", 0, "single label");
    check_bad("*.example.com", 0, "wildcard");
    check_bad("b\xc3\xbc" "cher.example", 0, "0xc3");
    check_bad("exa mple.com", 0, "0x20");
    check_bad("example.com/../x", 0, "0x2f");
    check_bad("a..example.com", 0, "empty label");
    check_bad(".example.com", 0, "empty label");
    check_bad("example.com..", 0, "empty label");
    check_bad("-a.example.com", 0, "'-'");
    check_bad("a-.example.com", 0, "'-'");
    check_bad("127.0.0.1", 0, "IP literal");
    check_bad("::1", 0, "IP literal");
    check_bad("1.2.3.999", 1, "all digits");
    check_bad("a:b.example", 1, "':'");
    check_bad("a.b.c.d.e.f.g.h.i.j.k", 0, "more than 10 labels");
}

static void
test_check_lengths(void **state)
{
    char name[400], out[254], why[160];

    (void) state;
    /* a 63-byte label passes, 64 does not */
    memset(name, 'a', 63);
    strcpy(name + 63, ".example");
    assert_int_equal(check(name, 0, 0, out, why), 0);
    memset(name, 'a', 64);
    strcpy(name + 64, ".example");
    assert_int_equal(check(name, 0, 0, out, why), -1);
    assert_non_null(strstr(why, "label longer than 63"));

    /* 253 bytes: 3 labels of 63, one of 61 (with dots: 63*3+61+3) */
    memset(name, 'a', sizeof(name));
    name[63] = name[127] = name[191] = '.';
    name[253] = '\0';
    assert_int_equal(check(name, 0, 0, out, why), 0);
    assert_int_equal(strlen(out), 253);
    /* with the root's dot still 253 */
    name[253] = '.';
    name[254] = '\0';
    assert_int_equal(check(name, 0, 0, out, why), 0);
    name[253] = 'a';
    assert_int_equal(check(name, 0, 0, out, why), -1);
    assert_non_null(strstr(why, "longer than 253"));

    /* the label limit is the caller's */
    assert_int_equal(check("a.b.c.example", 0, 3, out, why), -1);
    assert_int_equal(check("a.b.c.example", 0, 4, out, why), 0);
    assert_int_equal(check("a.b.c.d.e.f.g.h.i.j.k", 0, 20, out, why), 0);
    /* room for the output is required */
    assert_int_equal(atls_name_check("example.com", 11, 0, 0, out, 12, why, 160), -1);
}

/* ---- the registry ---------------------------------------------------------- */

static void
add_ok(atls_store_t *st, const char *name, const char *home, time_t now)
{
    char err[512] = "";

    if (atls_names_add(st, name, home, "cli", "uid 0 (root)", now, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        fail_msg("add %s: %s", name, err);
    }
}

static void
test_registry_add_remove(void **state)
{
    storefx_t         *fx = *state;
    atls_name_entry_t  e, *v = NULL;
    size_t             n = 0;
    uint64_t           g0, g1, sg0;
    char               err[512];

    g0 = atls_names_generation(fx->st);
    assert_int_equal(g0, 0);
    sg0 = atls_store_generation(fx->st);
    add_ok(fx->st, "B.example.com", "shop", 1000);
    add_ok(fx->st, "a.example.com", NULL, 1001);
    g1 = atls_names_generation(fx->st);
    assert_int_equal(g1, 2);
    assert_true(atls_store_generation(fx->st) >= sg0 + 2);
    assert_int_equal(storefx_mode(storefx_path(fx, "names/b.example.com.json")), 0644);

    /* an active name added again: left as it is, nothing moves */
    add_ok(fx->st, "b.example.com", "other", 2000);
    assert_int_equal(atls_names_generation(fx->st), g1);
    assert_int_equal(atls_names_get(fx->st, "b.example.com", &e, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_string_equal(e.name, "b.example.com");
    assert_string_equal(e.home, "shop");
    assert_string_equal(e.source, "cli");
    assert_string_equal(e.by, "uid 0 (root)");
    assert_int_equal(e.state, ATLS_NAME_ACTIVE);
    assert_int_equal(e.added, 1000);
    assert_int_equal(e.removed, 0);
    atls_name_entry_free(&e);

    assert_int_equal(atls_names_list(fx->st, &v, &n, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].name, "a.example.com");
    assert_null(v[0].home);
    assert_string_equal(v[1].name, "b.example.com");
    atls_name_entries_free(v, n);

    assert_int_equal(atls_names_remove(fx->st, "b.example.com", 3000, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_names_generation(fx->st), g1 + 1);
    assert_int_equal(atls_names_get(fx->st, "b.example.com", &e, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(e.state, ATLS_NAME_REMOVED);
    assert_int_equal(e.removed, 3000);
    atls_name_entry_free(&e);
    /* removed again: the grace period still runs from the first removal */
    assert_int_equal(atls_names_remove(fx->st, "b.example.com", 4000, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(atls_names_get(fx->st, "b.example.com", &e, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(e.removed, 3000);
    atls_name_entry_free(&e);

    /* re-added: active again, a new added time */
    add_ok(fx->st, "b.example.com", "shop", 5000);
    assert_int_equal(atls_names_get(fx->st, "b.example.com", &e, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(e.state, ATLS_NAME_ACTIVE);
    assert_int_equal(e.added, 5000);
    assert_int_equal(e.removed, 0);
    atls_name_entry_free(&e);

    assert_int_equal(atls_names_remove(fx->st, "c.example.com", 1, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_non_null(strstr(err, "c.example.com"));
    assert_int_equal(atls_names_get(fx->st, "c.example.com", &e, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_int_equal(atls_names_add(fx->st, "../x", NULL, "cli", "t", 1, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "../x"));
}

static void
write_file(const char *p, const char *text)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
    close(fd);
}

static void
test_registry_broken_entries(void **state)
{
    storefx_t         *fx = *state;
    atls_name_entry_t  e, *v = NULL;
    size_t             n = 0;
    char               err[512];

    add_ok(fx->st, "good.example", NULL, 1);
    write_file(storefx_path(fx, "names/bad.example.json"), "{\"name\":\"bad.example\"}");
    write_file(storefx_path(fx, "names/other.example.json"),
               "{\"name\":\"else.example\",\"state\":\"active\"}");
    write_file(storefx_path(fx, "names/ip.example.json"),
               "{\"name\":\"ip.example\",\"state\":\"active\",\"added\":\"yesterday\"}");
    write_file(storefx_path(fx, "names/junk.txt"), "x");

    assert_int_equal(atls_names_get(fx->st, "bad.example", &e, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "names/bad.example.json"));
    assert_non_null(strstr(err, "\"state\""));

    logcap_start(ATLS_LOG_WARN);
    assert_int_equal(atls_names_list(fx->st, &v, &n, err, sizeof(err)), ATLS_STORE_OK);
    logcap_stop();
    assert_int_equal(n, 1);
    assert_string_equal(v[0].name, "good.example");
    atls_name_entries_free(v, n);
    assert_int_equal(logcap_count("entry skipped"), 3);
    assert_int_equal(logcap_count("\"added\""), 1);
    assert_int_equal(logcap_count("not its file name"), 1);

    /* a broken entry is replaced by a good add */
    add_ok(fx->st, "bad.example", NULL, 7);
    assert_int_equal(atls_names_get(fx->st, "bad.example", &e, err, sizeof(err)),
                     ATLS_STORE_OK);
    atls_name_entry_free(&e);
}

static void
put_file(storefx_t *fx, const char *rel, const char *text)
{
    char err[256];

    assert_int_equal(fx->st->ops->put(fx->st, rel, text, strlen(text), 0, err,
                                      sizeof(err)), ATLS_STORE_OK);
}

static int
exists(storefx_t *fx, const char *rel)
{
    struct stat sb;

    return lstat(storefx_path(fx, rel), &sb) == 0;
}

static void
test_registry_purge(void **state)
{
    storefx_t     *fx = *state;
    atls_events_t *ev;
    atls_actor_t   actor = { "cli", "autotls/test", 1, 0, "root" };
    char           err[512], *audit = NULL;
    size_t         purged = 99, len = 0;
    uint64_t       g;

    add_ok(fx->st, "old.example", NULL, 100);
    add_ok(fx->st, "new.example", NULL, 100);
    add_ok(fx->st, "kept.example", NULL, 100);
    put_file(fx, "certs/old.example/meta.json", "{}");
    put_file(fx, "certs/old.example/ec256.pem", "x");
    put_file(fx, "certs/old.example/ec256.ocsp", "x");
    put_file(fx, "fallback/old.example/ec256.crt", "x");
    put_file(fx, "certs/new.example/meta.json", "{}");
    put_file(fx, "certs/kept.example/meta.json", "{}");
    assert_int_equal(atls_names_remove(fx->st, "old.example", 1000, err, sizeof(err)), 0);
    assert_int_equal(atls_names_remove(fx->st, "new.example", 5000, err, sizeof(err)), 0);
    g = atls_names_generation(fx->st);

    ev = atls_events_new(fx->st, &actor, NULL);
    assert_non_null(ev);
    /* grace 3000 at 5500: old (removed 1000) goes, new (5000) stays */
    assert_int_equal(atls_names_purge(fx->st, 5500, 3000, ev, &purged, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(purged, 1);
    assert_false(exists(fx, "names/old.example.json"));
    assert_false(exists(fx, "certs/old.example"));
    assert_false(exists(fx, "fallback/old.example"));
    assert_true(exists(fx, "names/new.example.json"));
    assert_true(exists(fx, "certs/new.example/meta.json"));
    assert_true(exists(fx, "certs/kept.example/meta.json"));
    assert_int_equal(atls_names_generation(fx->st), g + 1);
    assert_int_equal(atls_store_audit_read(fx->st, 0, &audit, &len, err, sizeof(err)), 0);
    assert_non_null(strstr(audit, "\"event\":\"removed\""));
    assert_non_null(strstr(audit, "\"id\":\"old.example\""));
    free(audit);

    /* nothing due: nothing moves */
    assert_int_equal(atls_names_purge(fx->st, 5600, 3000, ev, &purged, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(purged, 0);
    assert_int_equal(atls_names_generation(fx->st), g + 1);

    /* a job holding the certificate's lock: purged at a later pass */
    {
        atls_store_lock_t *lk = NULL;

        assert_int_equal(atls_store_lock_cert(fx->st, "new.example", 1, &lk, err,
                                              sizeof(err)), ATLS_STORE_OK);
        assert_int_equal(atls_names_purge(fx->st, 9000, 3000, ev, &purged, err,
                                          sizeof(err)), ATLS_STORE_OK);
        assert_int_equal(purged, 0);
        assert_true(exists(fx, "names/new.example.json"));
        atls_store_unlock(fx->st, lk);
    }
    assert_int_equal(atls_names_purge(fx->st, 9000, 3000, NULL, &purged, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(purged, 1);
    assert_false(exists(fx, "certs/new.example"));
    atls_events_free(ev);
}


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

static void
test_api_list_filters(void **state)
{
    storefx_t *fx = *state;
    reply_t    r;
    char       buf[512], err[256];

    add_ok(fx->st, "a.example", NULL, 1);
    add_ok(fx->st, "b.example", NULL, 1);
    add_ok(fx->st, "c.example", NULL, 1);
    add_ok(fx->st, "d.example", NULL, 1);
    add_ok(fx->st, "a-b.example", NULL, 1);
    assert_int_equal(atls_names_remove(fx->st, "d.example", 5, err, sizeof(err)), 0);
    meta_put(fx->st, "a.example", ATLS_STATE_VALID, 2000000000);
    meta_put(fx->st, "b.example", ATLS_STATE_FAILED, 0);

    r = api(fx->st, NULL, "GET", "/names", NULL, NULL);
    assert_int_equal(names_in(&r, buf, sizeof(buf)), 5);
    assert_string_equal(buf, "a-b.example a.example b.example c.example d.example");
    reply_free(&r);
    r = api(fx->st, NULL, "GET", "/names/", "state=active", NULL);
    names_in(&r, buf, sizeof(buf));
    assert_string_equal(buf, "a-b.example a.example b.example c.example");
    reply_free(&r);
    r = api(fx->st, NULL, "GET", "/names", "state=removed", NULL);
    names_in(&r, buf, sizeof(buf));
    assert_string_equal(buf, "d.example");
    reply_free(&r);
    r = api(fx->st, NULL, "GET", "/names", "state=failed", NULL);
    names_in(&r, buf, sizeof(buf));
    assert_string_equal(buf, "b.example");
    assert_non_null(strstr(r.body, "rejectedIdentifier"));
    reply_free(&r);
    r = api(fx->st, NULL, "GET", "/names", "state=valid", NULL);
    names_in(&r, buf, sizeof(buf));
    assert_string_equal(buf, "a.example");
    assert_non_null(strstr(r.body, "\"not_after\":\"2033-05-18T03:33:20Z\""));
    reply_free(&r);
    r = api(fx->st, NULL, "GET", "/names", "state=pending", NULL);
    names_in(&r, buf, sizeof(buf));
    assert_string_equal(buf, "a-b.example c.example d.example");
    reply_free(&r);
    r = api(fx->st, NULL, "GET", "/names", "limit=2&offset=1", NULL);
    names_in(&r, buf, sizeof(buf));
    assert_string_equal(buf, "a.example b.example");
    reply_free(&r);
    r = api(fx->st, NULL, "GET", "/names", "state=pending&limit=1&offset=1", NULL);
    names_in(&r, buf, sizeof(buf));
    assert_string_equal(buf, "c.example");
    reply_free(&r);
    r = api(fx->st, NULL, "GET", "/names", "offset=10", NULL);
    assert_int_equal(names_in(&r, buf, sizeof(buf)), 0);
    reply_free(&r);
}

/* ---- the bearer token --------------------------------------------------------- */

static void
test_token(void **state)
{
    storefx_t *fx = *state;
    char       file[256], link[256];

    snprintf(file, sizeof(file), "%s/token", fx->dir);
    snprintf(link, sizeof(link), "%s/token.link", fx->dir);
    write_file(file, "s3cret-T0ken\n");
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
    write_file(file, "other\n");
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
    write_file(file, "\n");
    assert_int_equal(chmod(file, 0600), 0);
    assert_int_equal(atls_api_token_ok(file, "Bearer "), 0);
    assert_int_equal(logcap_count("no token"), 1);
    assert_true(logcap_count(file) >= 4);
    logcap_stop();
}


/* ---- the scheduler's sync, with a fake host ------------------------------------ */

#define SYNC_DIR  FAKECA_BASE "/dir"

static fakehost_t      sh;
static fakehost_cert_t sync_certs[2]; /* home "shop", one configured */
#define home_cert  sync_certs[0]
#define cfg_cert   sync_certs[1]
static atls_issuer_t   home_issuer;
static size_t          home_calls;

/* the host has one dynamic home, "shop" (also the one a NULL home means) */
static const atls_issuer_t *
fake_home(void *ctx, const char *home, void **cert_data)
{
    (void) ctx;
    home_calls++;
    if (home != NULL && home[0] != '\0' && strcmp(home, "shop") != 0) {
        return NULL;
    }
    *cert_data = &home_cert;
    return &home_issuer;
}

static EVP_PKEY *
sync_start(storefx_t *fx, long grace)
{
    atls_sched_opts_t o;
    EVP_PKEY         *akey = NULL;
    char              err[256], *url = NULL;
    int               created = 0;

    assert_int_equal(atls_store_load_account(fx->st, SYNC_DIR, &akey, &url, &created, err,
                                             sizeof(err)), ATLS_STORE_OK);
    free(url);
    assert_int_equal(atls_store_save_account(fx->st, SYNC_DIR, FAKECA_ACCT_URL, NULL, 0,
                                             err, sizeof(err)), ATLS_STORE_OK);
    fakehost_init(&sh);
    sh.host.home = fake_home;
    /* the fake host checks done()'s id against its name: each phase of a
     * test sets the name it orders */
    assert_int_equal(fakehost_cert_init(&home_cert, "dyn1.example", akey, 1), 0);
    memset(&home_issuer, 0, sizeof(home_issuer));
    home_issuer.directory = (char *) SYNC_DIR;
    home_issuer.challenge = ATLS_CHAL_HTTP01;
    home_issuer.agree_tos = 1;
    home_calls = 0;
    memset(&o, 0, sizeof(o));
    o.names_grace_s = grace;
    sh.s = atls_sched_new(fx->st, &sh.host, &o, err, sizeof(err));
    assert_non_null(sh.s);
    return akey;
}

static int
until_started(fakehost_t *fh, void *arg)
{
    (void) fh;
    return ((fakehost_cert_t *) arg)->started;
}

static void
assert_issued(storefx_t *fx, const char *name)
{
    atls_cert_meta_t m;
    char             err[256];

    assert_int_equal(atls_store_load_meta(fx->st, name, &m, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(m.state, ATLS_STATE_VALID);
    atls_cert_meta_free(&m);
}

static void
test_sync_adds_and_removes(void **state)
{
    storefx_t         *fx = *state;
    EVP_PKEY          *akey;
    const char        *cfg = "configured.example";
    atls_sched_cert_t *c;
    char               err[256];
    size_t             calls;

    logcap_start(ATLS_LOG_DEBUG);
    akey = sync_start(fx, 0);
    add_ok(fx->st, "dyn1.example", "shop", time(NULL));
    add_ok(fx->st, "elsewhere.example", "blog", time(NULL));
    add_ok(fx->st, "configured.example", NULL, time(NULL));
    /* a configured certificate of the same name stays as configured */
    assert_int_equal(fakehost_cert_init(&cfg_cert, cfg, akey, 1), 0);
    c = atls_sched_add(sh.s, &cfg, 1, &home_issuer, &cfg_cert, err, sizeof(err));
    assert_non_null(c);

    atls_sched_names_sync(sh.s);
    assert_non_null(atls_sched_find(sh.s, "dyn1.example"));
    assert_null(atls_sched_find(sh.s, "elsewhere.example"));     /* not this host's */
    assert_ptr_equal(atls_sched_find(sh.s, "configured.example"), c);
    assert_string_equal(atls_sched_cert_id(atls_sched_find(sh.s, "dyn1.example")),
                        "dyn1.example");

    /* the registry did not change: not listed again */
    calls = home_calls;
    atls_sched_names_sync(sh.s);
    assert_int_equal(home_calls, calls);

    /* the host's pass issues it */
    atls_sched_check(sh.s);
    assert_int_equal(fakehost_run(&sh, fakehost_until_idle, NULL, 20000, NULL), 0);
    assert_int_equal(home_cert.rc, 0);
    assert_issued(fx, "dyn1.example");

    /* removed from the registry, another added: the sync alone starts it */
    assert_int_equal(atls_names_remove(fx->st, "dyn1.example", time(NULL), err,
                                       sizeof(err)), 0);
    assert_int_equal(atls_names_remove(fx->st, "configured.example", time(NULL), err,
                                       sizeof(err)), 0);
    add_ok(fx->st, "dyn2.example", NULL, time(NULL));
    home_cert.name = "dyn2.example";
    atls_sched_names_sync(sh.s);
    assert_null(atls_sched_find(sh.s, "dyn1.example"));
    assert_ptr_equal(atls_sched_find(sh.s, "configured.example"), c);
    assert_non_null(atls_sched_find(sh.s, "dyn2.example"));
    assert_int_equal(fakehost_run(&sh, fakehost_until_idle, NULL, 20000, NULL), 0);
    assert_issued(fx, "dyn2.example");
    /* the removed name's certificate stays (grace) */
    assert_true(exists(fx, "certs/dyn1.example/meta.json"));

    /* removed while its order runs: cancelled, nothing left in flight */
    add_ok(fx->st, "dyn3.example", "shop", time(NULL));
    home_cert.started = 0;
    home_cert.name = "dyn3.example";
    atls_sched_names_sync(sh.s);
    assert_int_equal(fakehost_run(&sh, until_started, &home_cert, 20000, NULL), 0);
    assert_false(atls_sched_idle(sh.s));
    assert_int_equal(atls_names_remove(fx->st, "dyn3.example", time(NULL), err,
                                       sizeof(err)), 0);
    atls_sched_names_sync(sh.s);
    assert_null(atls_sched_find(sh.s, "dyn3.example"));
    assert_true(sh.cancels + sh.kills >= 1);
    assert_int_equal(fakehost_run(&sh, fakehost_until_idle, NULL, 20000, NULL), 0);
    assert_int_equal(sh.live_published, 0);
    assert_int_equal(logcap_count("dyn3.example is no longer managed"), 1);

    /* a host without dynamic homes ignores the registry */
    atls_sched_free(sh.s);
    sh.s = NULL;
    fakehost_clear(&sh);
    fakehost_init(&sh);
    sh.s = atls_sched_new(fx->st, &sh.host, NULL, err, sizeof(err));
    add_ok(fx->st, "dyn4.example", NULL, time(NULL));
    atls_sched_names_sync(sh.s);
    assert_null(atls_sched_find(sh.s, "dyn4.example"));
    fakehost_teardown(&sh, sync_certs, 2);
    EVP_PKEY_free(akey);
    logcap_stop();
}

static void
test_sync_purges_after_grace(void **state)
{
    storefx_t     *fx = *state;
    EVP_PKEY      *akey;
    atls_events_t *ev;
    atls_actor_t   actor = { "server", "test", 1, -1, NULL };
    char           err[256], *audit = NULL;
    size_t         len;
    time_t         now = time(NULL);

    logcap_start(ATLS_LOG_DEBUG);
    akey = sync_start(fx, 60);
    ev = atls_events_new(fx->st, &actor, NULL);
    atls_sched_free(sh.s);
    {
        atls_sched_opts_t o;

        memset(&o, 0, sizeof(o));
        o.names_grace_s = 60;
        o.events = ev;
        sh.s = atls_sched_new(fx->st, &sh.host, &o, err, sizeof(err));
    }
    add_ok(fx->st, "gone.example", NULL, now - 1000);
    add_ok(fx->st, "recent.example", NULL, now - 1000);
    put_file(fx, "certs/gone.example/meta.json", "{}");
    put_file(fx, "certs/recent.example/meta.json", "{}");
    assert_int_equal(atls_names_remove(fx->st, "gone.example", now - 100, err, sizeof(err)),
                     0);
    assert_int_equal(atls_names_remove(fx->st, "recent.example", now, err, sizeof(err)), 0);
    atls_sched_names_sync(sh.s);
    atls_sched_check(sh.s);
    assert_int_equal(fakehost_run(&sh, fakehost_until_idle, NULL, 20000, NULL), 0);
    assert_false(exists(fx, "certs/gone.example"));
    assert_false(exists(fx, "names/gone.example.json"));
    assert_true(exists(fx, "certs/recent.example/meta.json"));
    assert_true(exists(fx, "names/recent.example.json"));
    assert_int_equal(logcap_count("1 removed dynamic name purged"), 1);
    assert_int_equal(atls_store_audit_read(fx->st, 0, &audit, &len, err, sizeof(err)), 0);
    assert_non_null(strstr(audit, "\"event\":\"removed\""));
    assert_non_null(strstr(audit, "gone.example"));
    free(audit);
    /* the next pass: nothing due yet, nothing listed */
    atls_sched_names_sync(sh.s);
    atls_sched_check(sh.s);
    assert_int_equal(fakehost_run(&sh, fakehost_until_idle, NULL, 20000, NULL), 0);
    assert_int_equal(logcap_count("removed dynamic name"), 1);
    fakehost_teardown(&sh, &home_cert, 1);
    atls_events_free(ev);
    EVP_PKEY_free(akey);
    logcap_stop();
}

/* NAMES_MORE_TESTS */

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_accepts),
        cmocka_unit_test(test_check_refuses),
        cmocka_unit_test(test_check_lengths),
        STORE_TEST(test_registry_add_remove),
        STORE_TEST(test_registry_broken_entries),
        STORE_TEST(test_registry_purge),
        STORE_TEST(test_api_put_get_delete),
        STORE_TEST(test_api_refuses),
        STORE_TEST(test_api_list_filters),
        STORE_TEST(test_token),
        STORE_TEST(test_sync_adds_and_removes),
        STORE_TEST(test_sync_purges_after_grace),
        /* NAMES_MORE_LIST */
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
