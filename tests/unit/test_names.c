/* Dynamic names: the syntax check, the registry in the store and its
 * journal, and the scheduler's sync with a fake host (the admin API and
 * its token: test_names_api.c). */
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
#include "names_int.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "support/fakeca.h"
#include "support/fakehost.h"
#include "support/storefx.h"
#include "support/logcap.h"
#include "support/namesfx.h"

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
    /* one spelling per address (RFC 5952), so the registry cannot hold
     * "::1" and "0::1" as two names */
    assert_int_equal(check("0:0:0:0:0:0:0:1", 1, 0, out, why), 0);
    assert_string_equal(out, "::1");
    assert_int_equal(check("0::1", 1, 0, out, why), 0);
    assert_string_equal(out, "::1");
    assert_int_equal(check("2001:DB8:0:0:0:0:0:0001", 1, 0, out, why), 0);
    assert_string_equal(out, "2001:db8::1");
    assert_int_equal(check("2001:db8:0:0:1:0:0:1", 1, 0, out, why), 0);
    assert_string_equal(out, "2001:db8::1:0:0:1");     /* the first longest run */
    assert_int_equal(check("::FFFF:192.0.2.1.", 1, 0, out, why), 0);
    assert_string_equal(out, "::ffff:192.0.2.1");
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
    check_bad("1.2.3.999", 1, "dotted decimal");
    /* leading zeros: octal to some resolvers, decimal to others */
    check_bad("010.1.1.1", 1, "ambiguous");
    check_bad("10.1.1.01", 0, "ambiguous");
    check_bad("1.2.3", 1, "all digits");
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
    namesfx_add(fx->st, "B.example.com", "shop", 1000);
    namesfx_add(fx->st, "a.example.com", NULL, 1001);
    g1 = atls_names_generation(fx->st);
    assert_int_equal(g1, 2);
    assert_true(atls_store_generation(fx->st) >= sg0 + 2);
    assert_int_equal(storefx_mode(storefx_path(fx, "names/b.example.com.json")), 0644);

    /* an active name added again: left as it is, nothing moves */
    namesfx_add(fx->st, "b.example.com", "other", 2000);
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
    namesfx_add(fx->st, "b.example.com", "shop", 5000);
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
    /* what could not be read back is not written */
    assert_int_equal(atls_names_add(fx->st, "c.example.com", "a\nb", "cli", "t", 1, err,
                                    sizeof(err)), ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "home"));
    {
        char by[200];

        memset(by, 'x', sizeof(by) - 1);
        by[sizeof(by) - 1] = '\0';
        assert_int_equal(atls_names_add(fx->st, "c.example.com", NULL, "cli", by, 1, err,
                                        sizeof(err)), ATLS_STORE_ERROR);
        assert_non_null(strstr(err, "by:"));
    }
    assert_false(namesfx_exists(fx, "names/c.example.com.json"));
}

static void
test_registry_broken_entries(void **state)
{
    storefx_t         *fx = *state;
    atls_name_entry_t  e, *v = NULL;
    size_t             n = 0;
    char               err[512];

    namesfx_add(fx->st, "good.example", NULL, 1);
    namesfx_write(storefx_path(fx, "names/bad.example.json"), "{\"name\":\"bad.example\"}");
    namesfx_write(storefx_path(fx, "names/other.example.json"),
               "{\"name\":\"else.example\",\"state\":\"active\"}");
    namesfx_write(storefx_path(fx, "names/ip.example.json"),
               "{\"name\":\"ip.example\",\"state\":\"active\",\"added\":\"yesterday\"}");
    namesfx_write(storefx_path(fx, "names/junk.txt"), "x");

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
    namesfx_add(fx->st, "bad.example", NULL, 7);
    assert_int_equal(atls_names_get(fx->st, "bad.example", &e, err, sizeof(err)),
                     ATLS_STORE_OK);
    atls_name_entry_free(&e);
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

    namesfx_add(fx->st, "old.example", NULL, 100);
    namesfx_add(fx->st, "new.example", NULL, 100);
    namesfx_add(fx->st, "kept.example", NULL, 100);
    namesfx_put(fx, "certs/old.example/meta.json", "{}");
    namesfx_put(fx, "certs/old.example/ec256.pem", "x");
    namesfx_put(fx, "certs/old.example/ec256.ocsp", "x");
    namesfx_put(fx, "fallback/old.example/ec256.crt", "x");
    namesfx_put(fx, "certs/new.example/meta.json", "{}");
    namesfx_put(fx, "certs/kept.example/meta.json", "{}");
    assert_int_equal(atls_names_remove(fx->st, "old.example", 1000, err, sizeof(err)), 0);
    assert_int_equal(atls_names_remove(fx->st, "new.example", 5000, err, sizeof(err)), 0);
    g = atls_names_generation(fx->st);

    ev = atls_events_new(fx->st, &actor, NULL);
    assert_non_null(ev);
    /* grace 3000 at 5500: old (removed 1000) goes, new (5000) stays */
    assert_int_equal(atls_names_purge(fx->st, 5500, 3000, ev, &purged, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(purged, 1);
    assert_false(namesfx_exists(fx, "names/old.example.json"));
    assert_false(namesfx_exists(fx, "certs/old.example"));
    assert_false(namesfx_exists(fx, "fallback/old.example"));
    assert_true(namesfx_exists(fx, "names/new.example.json"));
    assert_true(namesfx_exists(fx, "certs/new.example/meta.json"));
    assert_true(namesfx_exists(fx, "certs/kept.example/meta.json"));
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
        assert_true(namesfx_exists(fx, "names/new.example.json"));
        atls_store_unlock(fx->st, lk);
    }
    assert_int_equal(atls_names_purge(fx->st, 9000, 3000, NULL, &purged, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(purged, 1);
    assert_false(namesfx_exists(fx, "certs/new.example"));
    atls_events_free(ev);
}


/* ---- the scheduler's sync, with a fake host ------------------------------------ */

#define SYNC_DIR  FAKECA_BASE "/dir"

static fakehost_t      sh;
static fakehost_cert_t sync_certs[2]; /* home "shop", one configured */
#define home_cert  sync_certs[0]
#define cfg_cert   sync_certs[1]
static atls_issuer_t   home_issuer;
static size_t          home_calls;
static long            sync_slice_ms;   /* the scheduler's opts.slice_ms */
static int             home_slow;       /* each home() takes 2 ms */

/* the host has one dynamic home, "shop" (also the one a NULL home means) */
static const atls_issuer_t *
fake_home(void *ctx, const char *home, void **cert_data)
{
    (void) ctx;
    home_calls++;
    if (home_slow) {
        /* time passes while an entry is looked at: a slice of 1 ms holds
         * one entry, whatever the machine's speed */
        struct timespec ts = { 0, 2 * 1000 * 1000 };

        while (nanosleep(&ts, &ts) != 0) {
        }
    }
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
    o.slice_ms = sync_slice_ms;
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
    namesfx_add(fx->st, "dyn1.example", "shop", time(NULL));
    namesfx_add(fx->st, "elsewhere.example", "blog", time(NULL));
    namesfx_add(fx->st, "configured.example", NULL, time(NULL));
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
    namesfx_add(fx->st, "dyn2.example", NULL, time(NULL));
    home_cert.name = "dyn2.example";
    calls = home_calls;
    atls_sched_names_sync(sh.s);
    /* from the journal: only the changed active name was looked at */
    assert_int_equal(home_calls, calls + 1);
    assert_null(atls_sched_find(sh.s, "dyn1.example"));
    assert_ptr_equal(atls_sched_find(sh.s, "configured.example"), c);
    assert_non_null(atls_sched_find(sh.s, "dyn2.example"));
    assert_int_equal(fakehost_run(&sh, fakehost_until_idle, NULL, 20000, NULL), 0);
    assert_issued(fx, "dyn2.example");
    /* the removed name's certificate stays (grace) */
    assert_true(namesfx_exists(fx, "certs/dyn1.example/meta.json"));

    /* removed while its order runs: cancelled, nothing left in flight */
    /* without the journal (rotated away, lost): the whole registry is listed */
    assert_int_equal(unlink(storefx_path(fx, "names-journal")), 0);
    namesfx_add(fx->st, "dyn3.example", "shop", time(NULL));
    assert_int_equal(unlink(storefx_path(fx, "names-journal")), 0);
    home_cert.started = 0;
    home_cert.name = "dyn3.example";
    atls_sched_names_sync(sh.s);
    assert_int_equal(fakehost_run(&sh, until_started, &home_cert, 20000, NULL), 0);
    assert_false(atls_sched_idle(sh.s));
    assert_int_equal(atls_names_remove(fx->st, "dyn3.example", time(NULL), err,
                                       sizeof(err)), 0);
    calls = home_calls;
    atls_sched_names_sync(sh.s);
    assert_int_equal(home_calls, calls);    /* a removal asks no home */
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
    namesfx_add(fx->st, "dyn4.example", NULL, time(NULL));
    atls_sched_names_sync(sh.s);
    assert_null(atls_sched_find(sh.s, "dyn4.example"));
    fakehost_teardown(&sh, sync_certs, 2);
    EVP_PKEY_free(akey);
    logcap_stop();
}

static size_t
dyn_managed(const char *const *names, size_t n)
{
    size_t i, found = 0;

    for (i = 0; i < n; i++) {
        found += atls_sched_find(sh.s, names[i]) != NULL;
    }
    return found;
}

static int
until_first_synced(fakehost_t *fh, void *arg)
{
    (void) fh;
    return atls_sched_find(sh.s, (const char *) arg) != NULL;
}

/* The first sync reads the registry in slices of slice_ms, the rest from
 * the timer; what changed meanwhile (after the listing) is not lost. */
static void
test_sync_first_in_slices(void **state)
{
    storefx_t  *fx = *state;
    EVP_PKEY   *akey;
    const char *names[] = { "s1.example", "s2.example", "s3.example", "s4.example",
                            "s5.example", "s6.example" };
    char        err[256];
    size_t      i, calls, first;

    sync_slice_ms = 1;
    akey = sync_start(fx, 0);
    for (i = 0; i < 5; i++) {
        namesfx_add(fx->st, names[i], "shop", time(NULL));
    }
    home_slow = 1;
    atls_sched_names_sync(sh.s);
    /* one slice: one entry (the listing's order), the rest from the timer */
    assert_int_equal(dyn_managed(names, 5), 1);
    for (first = 0; atls_sched_find(sh.s, names[first]) == NULL; first++) {
    }
    /* the host calls again (the store moved): no re-listing, no double */
    calls = home_calls;
    atls_sched_names_sync(sh.s);
    assert_true(home_calls <= calls + 1);
    /* changed after the listing: one read already removed, one added */
    assert_int_equal(atls_names_remove(fx->st, names[first], time(NULL), err,
                                       sizeof(err)), 0);
    namesfx_add(fx->st, "s6.example", "shop", time(NULL));
    /* the CA answers no one (cfg_cert orders nothing): this is about the
     * sync, not the orders its passes start */
    assert_int_equal(fakehost_run(&sh, until_first_synced, (void *) "s6.example", 20000,
                                  &cfg_cert), 0);
    home_slow = 0;
    assert_null(atls_sched_find(sh.s, names[first]));
    assert_int_equal(dyn_managed(names, 6), 5);
    /* synced: the next call reads nothing */
    calls = home_calls;
    atls_sched_names_sync(sh.s);
    assert_int_equal(home_calls, calls);
    sync_slice_ms = 0;
    fakehost_teardown(&sh, sync_certs, 1);
    EVP_PKEY_free(akey);
}

/* A scheduler freed while its first sync is mid-page (a worker that stops
 * or reloads during the first pass over a large registry) frees the
 * entries it had not reached yet, each once: this crashed (double free)
 * when the page's tail was freed as if it were an array of its own. */
static void
test_sync_first_freed_midway(void **state)
{
    storefx_t  *fx = *state;
    EVP_PKEY   *akey;
    const char *names[] = { "m1.example", "m2.example", "m3.example", "m4.example",
                            "m5.example" };
    size_t      i;

    sync_slice_ms = 1;
    akey = sync_start(fx, 0);
    for (i = 0; i < 5; i++) {
        namesfx_add(fx->st, names[i], "shop", time(NULL));
    }
    home_slow = 1;
    atls_sched_names_sync(sh.s);
    home_slow = 0;
    /* one entry managed, four of the page still held */
    assert_int_equal(dyn_managed(names, 5), 1);
    sync_slice_ms = 0;
    fakehost_teardown(&sh, sync_certs, 1);
    EVP_PKEY_free(akey);
}

/* The first sync lists the registry in pages (more entries than a page
 * here), manages every name, and records the count it found for the next
 * start when the count was not known (a writer that did not keep it). */
static void
test_sync_first_paged_counts(void **state)
{
    storefx_t  *fx = *state;
    EVP_PKEY   *akey;
    char        buf[300][32], gen[32], err[512];
    const char *v[300];
    size_t      i, n = 0;

    sync_slice_ms = 0;          /* one call: every page */
    akey = sync_start(fx, 0);
    for (i = 0; i < 300; i++) {
        snprintf(buf[i], sizeof(buf[i]), "p%zu.example", i);
        v[i] = buf[i];
    }
    assert_int_equal(atls_names_add_many(fx->st, v, 300, "shop", "cli", "test",
                                         time(NULL), NULL, err, sizeof(err)),
                     ATLS_STORE_OK);
    namesfx_put(fx, "names/stranger.txt", "x");     /* not an entry */
    snprintf(gen, sizeof(gen), "%llu\n",
             (unsigned long long) atls_names_generation(fx->st) + 1);
    namesfx_put(fx, "names-generation", gen);
    assert_int_equal(atls_names_count(fx->st, &n), ATLS_STORE_NOTFOUND);
    atls_sched_names_sync(sh.s);
    assert_int_equal(dyn_managed(v, 300), 300);
    assert_int_equal(atls_names_count(fx->st, &n), ATLS_STORE_OK);
    assert_int_equal(n, 300);
    fakehost_teardown(&sh, sync_certs, 1);
    EVP_PKEY_free(akey);
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
    namesfx_add(fx->st, "gone.example", NULL, now - 1000);
    namesfx_add(fx->st, "recent.example", NULL, now - 1000);
    namesfx_put(fx, "certs/gone.example/meta.json", "{}");
    namesfx_put(fx, "certs/recent.example/meta.json", "{}");
    assert_int_equal(atls_names_remove(fx->st, "gone.example", now - 100, err, sizeof(err)),
                     0);
    assert_int_equal(atls_names_remove(fx->st, "recent.example", now, err, sizeof(err)), 0);
    atls_sched_names_sync(sh.s);
    atls_sched_check(sh.s);
    assert_int_equal(fakehost_run(&sh, fakehost_until_idle, NULL, 20000, NULL), 0);
    assert_false(namesfx_exists(fx, "certs/gone.example"));
    assert_false(namesfx_exists(fx, "names/gone.example.json"));
    assert_true(namesfx_exists(fx, "certs/recent.example/meta.json"));
    assert_true(namesfx_exists(fx, "names/recent.example.json"));
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


static void
test_add_many(void **state)
{
    storefx_t         *fx = *state;
    const char        *names[] = { "one.example", "Two.Example", "three.example" };
    const char        *bad[] = { "four.example", "*.five.example", "six.example" };
    unsigned char      added[3];
    char             **changed = NULL, err[512];
    size_t             n = 0;
    atls_name_entry_t  e;

    namesfx_add(fx->st, "two.example", "shop", 1);
    assert_int_equal(atls_names_generation(fx->st), 1);
    assert_int_equal(atls_names_add_many(fx->st, names, 3, NULL, "cli", "uid 0 (root)", 5,
                                         added, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(added[0], 1);
    assert_int_equal(added[1], 0);      /* active already: left as it is */
    assert_int_equal(added[2], 1);
    /* one move for the batch, the journal names both */
    assert_int_equal(atls_names_generation(fx->st), 2);
    assert_int_equal(atls_names_changed_since(fx->st, 1, 2, &changed, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(changed[0], "one.example");
    assert_string_equal(changed[1], "three.example");
    atls_strv_free(changed, n);
    assert_int_equal(atls_names_get(fx->st, "two.example", &e, err, sizeof(err)), 0);
    assert_string_equal(e.home, "shop");
    atls_name_entry_free(&e);

    /* a bad name stops the batch; those before it are registered */
    memset(added, 2, sizeof(added));
    assert_int_equal(atls_names_add_many(fx->st, bad, 3, NULL, "cli", "t", 6, added, err,
                                         sizeof(err)), ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "*.five.example"));
    assert_int_equal(added[0], 1);
    assert_int_equal(added[2], 2);
    assert_true(namesfx_exists(fx, "names/four.example.json"));
    assert_false(namesfx_exists(fx, "names/six.example.json"));
    assert_int_equal(atls_names_generation(fx->st), 3);
}

static void
test_journal(void **state)
{
    storefx_t *fx = *state;
    char     **names = NULL, err[512];
    size_t     n = 0;
    uint64_t   g;

    namesfx_add(fx->st, "b.example", NULL, 1);
    namesfx_add(fx->st, "a.example", NULL, 1);
    namesfx_add(fx->st, "b.example", NULL, 1);       /* no change: no generation */
    assert_int_equal(atls_names_remove(fx->st, "b.example", 2, err, sizeof(err)), 0);
    g = atls_names_generation(fx->st);
    assert_int_equal(g, 3);
    assert_int_equal(atls_names_changed_since(fx->st, 0, g, &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "a.example");
    assert_string_equal(names[1], "b.example");
    atls_strv_free(names, n);
    assert_int_equal(atls_names_changed_since(fx->st, 1, 2, &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "a.example");
    atls_strv_free(names, n);
    /* a generation it does not hold: the caller lists the registry */
    assert_int_equal(atls_names_changed_since(fx->st, 1, 4, &names, &n, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    assert_int_equal(atls_names_changed_since(fx->st, 3, 3, &names, &n, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    /* the worker's file: a line that does not parse is an error */
    namesfx_write(storefx_path(fx, "names-journal"), "1 b.example\n2 ../etc\n");
    assert_int_equal(atls_names_changed_since(fx->st, 0, 2, &names, &n, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "names-journal"));
    namesfx_write(storefx_path(fx, "names-journal"), "1 b.example\n2 a.ex");
    assert_int_equal(atls_names_changed_since(fx->st, 0, 2, &names, &n, err, sizeof(err)),
                     ATLS_STORE_NOTFOUND);
    /* rotated: both files are read */
    namesfx_write(storefx_path(fx, "names-journal.1"), "1 b.example\n");
    namesfx_write(storefx_path(fx, "names-journal"), "2 a.example\n3 c.example\n");
    assert_int_equal(atls_names_changed_since(fx->st, 0, 3, &names, &n, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(n, 3);
    atls_strv_free(names, n);
}


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
        STORE_TEST(test_sync_adds_and_removes),
        STORE_TEST(test_sync_first_in_slices),
        STORE_TEST(test_sync_first_paged_counts),
        STORE_TEST(test_sync_first_freed_midway),
        STORE_TEST(test_sync_purges_after_grace),
        STORE_TEST(test_add_many),
        STORE_TEST(test_journal),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
