/*
 * Certificate policy (common/policy.c, common/store_policy.c): each rule
 * allows and refuses what it says with a reason naming rule and value,
 * an empty policy allows everything, the JSON form and the store entry
 * give the same policy back, and a bad value is refused when added or read.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include "atls_policy.h"
#include "atls_store.h"
#include "policy_int.h"
#include "support/tmptree.h"

/* An issuer at dir with the given key types (n 0: none given, ec256). */
static void
issuer_init(atls_issuer_t *is, const char *dir, atls_key_type_t kt0, atls_key_type_t kt1,
            size_t n)
{
    memset(is, 0, sizeof(*is));
    is->directory = (char *) dir;
    is->key_types[0] = kt0;
    is->key_types[1] = kt1;
    is->n_key_types = n;
}

/* check() of one name with is; *rule and why out. */
static int
check1(const atls_policy_t *p, const char *name, const atls_issuer_t *is,
       const char **rule, char *why, size_t whylen)
{
    const char *names[1];

    names[0] = name;
    return atls_policy_check(p, names, 1, is, rule, why, whylen);
}

static atls_policy_t *
policy_of(const char *const *patterns, size_t n)
{
    atls_policy_t *p = atls_policy_new();
    char           err[256];
    size_t         i;

    assert_non_null(p);
    for (i = 0; i < n; i++) {
        if (atls_policy_add_names(p, patterns[i], err, sizeof(err)) != 0) {
            fail_msg("%s: %s", patterns[i], err);
        }
    }
    return p;
}

/* NULL, a new policy and one read from "{}" allow anything, on any CA. */
static void
test_policy_empty_allows(void **state)
{
    atls_policy_t *p = atls_policy_new(), *q;
    atls_issuer_t  is;
    const char    *rule = "x";
    char           why[256], err[256];

    (void) state;
    issuer_init(&is, "https://any.ca/dir", ATLS_KEY_RSA2048, 0, 1);
    assert_true(atls_policy_is_empty(NULL));
    assert_true(atls_policy_is_empty(p));
    assert_int_equal(check1(NULL, "anything.org", &is, &rule, why, sizeof(why)), 0);
    assert_int_equal(check1(p, "anything.org", &is, &rule, why, sizeof(why)), 0);
    assert_null(rule);
    assert_int_equal(atls_policy_check_name(p, "x.y", why, sizeof(why)), 0);
    q = atls_policy_from_json("{}", 2, err, sizeof(err));
    assert_non_null(q);
    assert_true(atls_policy_is_empty(q));
    atls_policy_free(q);
    atls_policy_free(p);
}

/* Exact names, "*.suffix" for any deeper name but not the suffix, and
 * "~regex" against the lower-case name, anchored as written. */
static void
test_policy_names(void **state)
{
    static const char *const patterns[] = {
        "example.com", "*.example.org", "~^[a-z0-9-]+\\.example\\.net$"
    };
    static const struct {
        const char *name;
        int         ok;
    } cases[] = {
        { "example.com", 1 },
        { "EXAMPLE.com", 1 },
        { "www.example.com", 0 },          /* exact is exact */
        { "www.example.org", 1 },
        { "a.b.example.org", 1 },           /* any depth below */
        { "*.example.org", 1 },             /* a wildcard name below it */
        { "example.org", 0 },               /* not the suffix itself */
        { "badexample.org", 0 },            /* a label boundary */
        { "api.example.net", 1 },
        { "API.Example.NET", 1 },
        { "a.b.example.net", 0 },           /* the regex allows one label */
        { "api.example.net.evil.com", 0 },  /* anchored by its $ */
        { "other.org", 0 },
    };
    atls_policy_t *p = policy_of(patterns, 3);
    const char    *rule;
    char           why[256];
    size_t         i;
    int            rc;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        why[0] = '\0';
        rule = NULL;
        rc = check1(p, cases[i].name, NULL, &rule, why, sizeof(why));
        if (cases[i].ok ? rc != 0 : rc != -1) {
            fail_msg("%s: rc %d (%s)", cases[i].name, rc, why);
        }
        if (!cases[i].ok) {
            assert_string_equal(rule, ATLS_POLICY_RULE_NAMES);
            assert_non_null(strstr(why, cases[i].name));
            assert_non_null(strstr(why, "matches no names pattern"));
        }
        assert_int_equal(atls_policy_check_name(p, cases[i].name, why, sizeof(why)),
                         cases[i].ok ? 0 : -1);
    }
    atls_policy_free(p);
}

/* The first name breaking the rule is named even among allowed ones. */
static void
test_policy_names_many(void **state)
{
    static const char *const patterns[] = { "*.example.com" };
    const char    *names[] = { "a.example.com", "b.other.org", "c.example.com" };
    atls_policy_t *p = policy_of(patterns, 1);
    const char    *rule = NULL;
    char           why[256];

    (void) state;
    assert_int_equal(atls_policy_check(p, names, 3, NULL, &rule, why, sizeof(why)), -1);
    assert_string_equal(rule, ATLS_POLICY_RULE_NAMES);
    assert_string_equal(why, "name b.other.org matches no names pattern");
    assert_int_equal(atls_policy_check(p, names, 1, NULL, &rule, why, sizeof(why)), 0);
    atls_policy_free(p);
}

static void
test_policy_bad_patterns(void **state)
{
    static const struct {
        const char *pattern;
        const char *want;
    } cases[] = {
        { "~^[a-z", "names ~^[a-z is not a POSIX extended regex" },
        { "~(", "not a POSIX extended regex" },
        { "*.", "must be followed by a domain name" },
        { "*.*.example.com", "must be followed by a domain name" },
        { "www.*.com", "is neither a name" },
        { "a b.com", "is neither a name" },
        { ".example.com", "is neither a name" },
        { "", "empty pattern" },
        /* glibc would compile these exponentially large, or loop on them */
        { "~^(((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+)+$", "nested repetitions" },
        { "~(a{100}){100}", "nested repetitions" },
        { "~^([a-z]{1,63}\\.){1,127}$", "nested repetitions" },
        { "~a\\+++", "adjacent repetitions" },
        { "~^(a?b)?+b", "adjacent repetitions" },
        { "~a*+", "adjacent repetitions" },
        { "~.??", "adjacent repetitions" },
        { "~^(a)\\1$", "back-references are not allowed" },
    };
    atls_policy_t *p = atls_policy_new();
    char           err[256];
    size_t         i;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        assert_int_equal(atls_policy_add_names(p, cases[i].pattern, err, sizeof(err)), -1);
        if (strstr(err, cases[i].want) == NULL) {
            fail_msg("%s: \"%s\"", cases[i].pattern, err);
        }
    }
    assert_true(atls_policy_is_empty(p));
    atls_policy_free(p);
}

/* Regexes written for host names compile; the estimate grows with what
 * glibc would build and stops at the limit. */
static void
test_policy_regex_cost(void **state)
{
    static const char *const fine[] = {
        "~^[a-z0-9-]+\\.example\\.net$",
        "~^[a-z0-9-]{1,63}\\.example\\.net$",
        "~^(www|api)[0-9]*\\.example\\.(com|net)$",
        "~^([a-z0-9-]+\\.)+example\\.com$",
        "~^[]a[:digit:]-]+\\{x}\\.test$",
    };
    atls_policy_t *p = atls_policy_new();
    char           err[256], longre[300];
    long           cost, more;
    size_t         i;

    (void) state;
    for (i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
        if (atls_policy_add_names(p, fine[i], err, sizeof(err)) != 0) {
            fail_msg("%s: %s", fine[i], err);
        }
    }
    assert_null(atls_policy_regex_check("abc", 100, &cost));
    assert_int_equal(cost, 3);
    assert_null(atls_policy_regex_check("(ab)+", 100, &cost));
    assert_null(atls_policy_regex_check("(ab)", 100, &more));
    assert_true(cost > more);
    assert_null(atls_policy_regex_check("a{10}", 100, &cost));
    assert_true(cost >= 10);
    assert_non_null(atls_policy_regex_check("(a{10}){10}", 50, &cost));
    assert_null(atls_policy_regex_check("\\++", 100, &cost));    /* an escaped '+' */
    assert_null(atls_policy_regex_check("[+*?]+", 100, &cost));   /* in a bracket */
    memset(longre, 'a', sizeof(longre) - 1);
    longre[0] = '~';
    longre[sizeof(longre) - 1] = '\0';
    assert_int_equal(atls_policy_add_names(p, longre, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "longer than 256 characters"));
    atls_policy_free(p);

    /* each fits, but a policy's regexes add up */
    p = atls_policy_new();
    for (i = 0; i < 100; i++) {
        if (atls_policy_add_names(p, "~^(a{500}){3}$", err, sizeof(err)) != 0) {
            break;
        }
    }
    assert_true(i >= 8 && i < 100);
    assert_non_null(strstr(err, "regexes add up"));
    atls_policy_free(p);
}

/* key: every key type of the issuer (none given: ec256) is in the list. */
static void
test_policy_key(void **state)
{
    atls_policy_t *p = atls_policy_new();
    atls_issuer_t  is;
    const char    *rule;
    char           why[256], err[256];

    (void) state;
    assert_int_equal(atls_policy_add_key(p, "rsa1024", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "rsa1024 is not a key type"));
    assert_int_equal(atls_policy_add_key(p, "ec384", err, sizeof(err)), 0);
    assert_int_equal(atls_policy_add_key(p, "rsa3072", err, sizeof(err)), 0);
    assert_int_equal(atls_policy_add_key(p, "ec384", err, sizeof(err)), 0);

    issuer_init(&is, "https://ca/dir", ATLS_KEY_EC384, ATLS_KEY_RSA3072, 2);
    assert_int_equal(check1(p, "a.org", &is, &rule, why, sizeof(why)), 0);

    issuer_init(&is, "https://ca/dir", ATLS_KEY_EC384, ATLS_KEY_RSA2048, 2);
    assert_int_equal(check1(p, "a.org", &is, &rule, why, sizeof(why)), -1);
    assert_string_equal(rule, ATLS_POLICY_RULE_KEY);
    assert_string_equal(why, "key type rsa2048 is not allowed (key ec384 rsa3072)");

    issuer_init(&is, "https://ca/dir", 0, 0, 0);
    assert_int_equal(check1(p, "a.org", &is, &rule, why, sizeof(why)), -1);
    assert_string_equal(rule, ATLS_POLICY_RULE_KEY);
    assert_non_null(strstr(why, "key type ec256 is not allowed"));
    atls_policy_free(p);
}

/* min_rsa_bits: RSA key types below it are refused, EC ones are not
 * concerned. */
static void
test_policy_min_rsa_bits(void **state)
{
    atls_policy_t *p = atls_policy_new();
    atls_issuer_t  is;
    const char    *rule;
    char           why[256], err[256];

    (void) state;
    assert_int_equal(atls_policy_set_min_rsa_bits(p, 512, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "min_rsa_bits 512"));
    assert_int_equal(atls_policy_set_min_rsa_bits(p, 3072, err, sizeof(err)), 0);

    issuer_init(&is, "https://ca/dir", ATLS_KEY_EC256, ATLS_KEY_RSA2048, 2);
    assert_int_equal(check1(p, "a.org", &is, &rule, why, sizeof(why)), -1);
    assert_string_equal(rule, ATLS_POLICY_RULE_MIN_RSA);
    assert_string_equal(why, "key type rsa2048 has 2048 bits, below min_rsa_bits 3072");

    issuer_init(&is, "https://ca/dir", ATLS_KEY_EC256, ATLS_KEY_RSA3072, 2);
    assert_int_equal(check1(p, "a.org", &is, &rule, why, sizeof(why)), 0);
    issuer_init(&is, "https://ca/dir", ATLS_KEY_RSA4096, 0, 1);
    assert_int_equal(check1(p, "a.org", &is, &rule, why, sizeof(why)), 0);
    issuer_init(&is, "https://ca/dir", ATLS_KEY_EC256, 0, 1);
    assert_int_equal(check1(p, "a.org", &is, &rule, why, sizeof(why)), 0);
    atls_policy_free(p);
}

/* ca: directories compared exactly, a trailing '/' on either side aside. */
static void
test_policy_ca(void **state)
{
    atls_policy_t *p = atls_policy_new();
    atls_issuer_t  is;
    const char    *rule;
    char           why[256], err[256];

    (void) state;
    assert_int_equal(atls_policy_add_ca(p, "ftp://ca/dir", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "ca ftp://ca/dir"));
    assert_int_equal(atls_policy_add_ca(p, "https:///dir", err, sizeof(err)), -1);
    assert_int_equal(atls_policy_add_ca(p, "https://", err, sizeof(err)), -1);
    assert_int_equal(atls_policy_add_ca(p, "https://ca\x01/dir", err, sizeof(err)), -1);
    assert_int_equal(atls_policy_add_ca(p, "https://ca.example/dir/", err, sizeof(err)), 0);

    issuer_init(&is, "https://ca.example/dir", ATLS_KEY_EC256, 0, 1);
    assert_int_equal(check1(p, "a.org", &is, &rule, why, sizeof(why)), 0);
    is.directory = "https://ca.example/dir/";
    assert_int_equal(check1(p, "a.org", &is, &rule, why, sizeof(why)), 0);
    is.directory = "https://ca.example/dir2";
    assert_int_equal(check1(p, "a.org", &is, &rule, why, sizeof(why)), -1);
    assert_string_equal(rule, ATLS_POLICY_RULE_CA);
    assert_string_equal(why, "CA directory https://ca.example/dir2 is not one of the "
                             "allowed ca");
    is.directory = "https://CA.example/dir";
    assert_int_equal(check1(p, "a.org", &is, &rule, why, sizeof(why)), -1);
    is.directory = "https://ca.example/di";
    assert_int_equal(check1(p, "a.org", &is, &rule, why, sizeof(why)), -1);
    atls_policy_free(p);
}

static void
test_policy_max_names(void **state)
{
    atls_policy_t *p = atls_policy_new();
    const char    *names[] = { "a.org", "b.org", "c.org" };
    const char    *rule;
    char           why[256], err[256];

    (void) state;
    assert_int_equal(atls_policy_set_max_names(p, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "max_names 0"));
    assert_int_equal(atls_policy_set_max_names(p, 2, err, sizeof(err)), 0);
    assert_int_equal(atls_policy_check(p, names, 2, NULL, &rule, why, sizeof(why)), 0);
    assert_int_equal(atls_policy_check(p, names, 3, NULL, &rule, why, sizeof(why)), -1);
    assert_string_equal(rule, ATLS_POLICY_RULE_MAX_NAMES);
    assert_string_equal(why, "3 names exceed max_names 2");
    atls_policy_free(p);
}

static atls_policy_t *
policy_full(void)
{
    static const char *const patterns[] = {
        "example.com", "*.example.com", "~^[a-z0-9-]+\\.example\\.net$"
    };
    atls_policy_t *p = policy_of(patterns, 3);
    char           err[256];

    assert_int_equal(atls_policy_add_key(p, "ec256", err, sizeof(err)), 0);
    assert_int_equal(atls_policy_add_key(p, "rsa3072", err, sizeof(err)), 0);
    assert_int_equal(atls_policy_set_min_rsa_bits(p, 3072, err, sizeof(err)), 0);
    assert_int_equal(atls_policy_add_ca(p, "https://ca.example/dir", err, sizeof(err)), 0);
    assert_int_equal(atls_policy_set_max_names(p, 100, err, sizeof(err)), 0);
    return p;
}

/* JSON and back: the same text, and the same decisions (regex compiled
 * again). */
static void
test_policy_json_round_trip(void **state)
{
    atls_policy_t *p = policy_full(), *q;
    atls_issuer_t  is;
    const char    *rule;
    char          *a, *b, why[256], err[256];

    (void) state;
    a = atls_policy_to_json(p);
    assert_non_null(a);
    assert_string_equal(a, "{\"ca\":[\"https://ca.example/dir\"],\"key\":[\"ec256\","
                           "\"rsa3072\"],\"max_names\":100,\"min_rsa_bits\":3072,"
                           "\"names\":[\"example.com\",\"*.example.com\","
                           "\"~^[a-z0-9-]+\\\\.example\\\\.net$\"]}");
    q = atls_policy_from_json(a, strlen(a), err, sizeof(err));
    assert_non_null(q);
    b = atls_policy_to_json(q);
    assert_string_equal(a, b);
    issuer_init(&is, "https://ca.example/dir", ATLS_KEY_EC256, 0, 1);
    assert_int_equal(check1(q, "api.example.net", &is, &rule, why, sizeof(why)), 0);
    assert_int_equal(check1(q, "a.b.example.net", &is, &rule, why, sizeof(why)), -1);
    free(a);
    free(b);
    atls_policy_free(q);
    atls_policy_free(p);
}

/* A CA is kept as written (and a second spelling of it is the same CA):
 * the JSON gives back the same text every time. */
static void
test_policy_json_ca_as_written(void **state)
{
    static const char json[] = "{\"ca\":[\"https://ca/dir//\",\"https://ca/dir/\"]}";
    atls_policy_t *p, *q;
    char          *a, *b, err[256];

    (void) state;
    p = atls_policy_from_json(json, strlen(json), err, sizeof(err));
    assert_non_null(p);
    a = atls_policy_to_json(p);
    assert_string_equal(a, "{\"ca\":[\"https://ca/dir//\",\"https://ca/dir/\"]}");
    q = atls_policy_from_json(a, strlen(a), err, sizeof(err));
    assert_non_null(q);
    b = atls_policy_to_json(q);
    assert_string_equal(a, b);
    free(a);
    free(b);
    atls_policy_free(q);
    atls_policy_free(p);
}

/* Bad JSON is refused naming the field and the value. */
static void
test_policy_json_bad(void **state)
{
    static const struct {
        const char *json;
        const char *want;
    } cases[] = {
        { "{\"names\":[\"~^[a-z\"]}", "field \"names\": names ~^[a-z is not a POSIX" },
        { "{\"key\":[\"rsa1024\"]}", "field \"key\": rsa1024 is not a key type" },
        { "{\"key\":\"ec256\"}", "field \"key\" must be an array" },
        { "{\"min_rsa_bits\":\"3072\"}", "field \"min_rsa_bits\" must be an integer" },
        { "{\"min_rsa_bits\":100}", "field \"min_rsa_bits\": min_rsa_bits 100" },
        { "{\"max_names\":0}", "field \"max_names\" must be between" },
        { "{\"ca\":[\"gopher://x\"]}", "field \"ca\": ca gopher://x" },
        { "{\"allow_all\":true}", "field \"allow_all\" is not a policy rule" },
        { "[1]", "not a JSON object" },
        { "{", "not a JSON object" },
    };
    atls_policy_t *p;
    char           err[256];
    size_t         i;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        p = atls_policy_from_json(cases[i].json, strlen(cases[i].json), err, sizeof(err));
        if (p != NULL || strstr(err, cases[i].want) == NULL) {
            fail_msg("%s: \"%s\"", cases[i].json, err);
        }
    }
}

/* policy.json: saved public, read back the same, removed by an empty save;
 * a broken file is an error naming the file. */
static void
test_policy_store(void **state)
{
    char           dir[] = "/tmp/atls-policy-XXXXXX", path[512], err[256];
    atls_store_t  *st;
    atls_policy_t *p = policy_full(), *q = NULL, *empty = atls_policy_new();
    struct stat    sb;
    char          *a, *b;
    FILE          *f;

    (void) state;
    assert_non_null(mkdtemp(dir));
    st = atls_store_fs_open(dir, err, sizeof(err));
    assert_non_null(st);
    snprintf(path, sizeof(path), "%s/policy.json", dir);

    assert_int_equal(atls_store_load_policy(st, &q, err, sizeof(err)), ATLS_STORE_NOTFOUND);
    assert_null(q);
    assert_int_equal(atls_store_save_policy(st, empty, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_save_policy(st, p, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0644);
    assert_int_equal(atls_store_load_policy(st, &q, err, sizeof(err)), ATLS_STORE_OK);
    a = atls_policy_to_json(p);
    b = atls_policy_to_json(q);
    assert_string_equal(a, b);
    free(a);
    free(b);
    atls_policy_free(q);

    assert_int_equal(atls_store_save_policy(st, empty, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(stat(path, &sb), -1);
    assert_int_equal(atls_store_save_policy(st, p, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_save_policy(st, NULL, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(stat(path, &sb), -1);

    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"names\":[\"~(\"]}", f);
    fclose(f);
    q = p;
    assert_int_equal(atls_store_load_policy(st, &q, err, sizeof(err)), ATLS_STORE_ERROR);
    assert_null(q);
    assert_non_null(strstr(err, "policy.json"));
    assert_non_null(strstr(err, "field \"names\""));

    atls_store_close(st);
    atls_policy_free(empty);
    atls_policy_free(p);
    tmptree_rm(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_empty_allows),
        cmocka_unit_test(test_policy_names),
        cmocka_unit_test(test_policy_names_many),
        cmocka_unit_test(test_policy_bad_patterns),
        cmocka_unit_test(test_policy_regex_cost),
        cmocka_unit_test(test_policy_key),
        cmocka_unit_test(test_policy_min_rsa_bits),
        cmocka_unit_test(test_policy_ca),
        cmocka_unit_test(test_policy_max_names),
        cmocka_unit_test(test_policy_json_round_trip),
        cmocka_unit_test(test_policy_json_ca_as_written),
        cmocka_unit_test(test_policy_json_bad),
        cmocka_unit_test(test_policy_store),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
