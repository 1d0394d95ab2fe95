/*
 * The issuer rules every host applies (common/issuer.c): contacts as
 * "mailto:" URLs, the key-type pair rule, EAB both or neither, Must-Staple
 * only with stapling.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "atls_store.h"

/* The one set of issuer rules every host applies. */
static void
test_issuer_normalise(void **state)
{
    static const struct {
        const char *contact;
        int         kt0, kt1, n_kts;
        const char *kid, *hmac;
        const char *want;      /* NULL: accepted */
    } cases[] = {
        { "ops@example.com", ATLS_KEY_EC256, ATLS_KEY_RSA2048, 2, NULL, NULL, NULL },
        { "mailto:ops@example.com", ATLS_KEY_RSA4096, ATLS_KEY_EC384, 2, "k", "h", NULL },
        { "https://example.com/contact", ATLS_KEY_EC256, 0, 1, NULL, NULL, NULL },
        { "ops", ATLS_KEY_EC256, 0, 1, NULL, NULL, "neither a URI nor an e-mail" },
        { "ops@", ATLS_KEY_EC256, 0, 1, NULL, NULL, "neither a URI" },
        { "a b@example.com", ATLS_KEY_EC256, 0, 1, NULL, NULL, "neither a URI" },
        { "mailto:nobody", ATLS_KEY_EC256, 0, 1, NULL, NULL, "not an e-mail address" },
        { "", ATLS_KEY_EC256, 0, 1, NULL, NULL, "empty" },
        { "ops@example.com", ATLS_KEY_EC256, ATLS_KEY_EC384, 2, NULL, NULL,
          "at most one EC and one RSA" },
        { "ops@example.com", ATLS_KEY_RSA2048, ATLS_KEY_RSA3072, 2, NULL, NULL,
          "at most one EC and one RSA" },
        { "ops@example.com", ATLS_KEY_EC256, ATLS_KEY_EC256, 2, NULL, NULL, "given twice" },
        { "ops@example.com", ATLS_KEY_EC256, 0, 3, NULL, NULL, "at most 2 key types" },
        { "ops@example.com", ATLS_KEY_EC256, 0, 1, "kid", NULL, "external account binding" },
        { "ops@example.com", ATLS_KEY_EC256, 0, 1, NULL, "hmac", "external account binding" },
    };
    atls_issuer_t is;
    char          err[256];
    size_t        i;
    int           rc;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&is, 0, sizeof(is));
        is.contact = calloc(2, sizeof(char *));
        assert_non_null(is.contact);
        is.contact[0] = atls_strdup(cases[i].contact);
        is.n_contact = 1;
        is.key_types[0] = (atls_key_type_t) cases[i].kt0;
        is.key_types[1] = (atls_key_type_t) cases[i].kt1;
        is.n_key_types = (size_t) cases[i].n_kts;
        is.eab_kid = atls_strdup(cases[i].kid);
        is.eab_hmac = atls_strdup(cases[i].hmac);
        err[0] = '\0';
        rc = atls_issuer_normalise(&is, err, sizeof(err));
        if (cases[i].want == NULL ? rc != 0 : rc != -1 || strstr(err, cases[i].want) == NULL) {
            fail_msg("\"%s\": rc %d err \"%s\"", cases[i].contact, rc, err);
        }
        if (rc == 0 && strchr(cases[i].contact, ':') == NULL) {
            assert_string_equal(is.contact[0] + 7, cases[i].contact);
            assert_memory_equal(is.contact[0], "mailto:", 7);
        }
        if (rc == 0 && strchr(cases[i].contact, ':') != NULL) {
            assert_string_equal(is.contact[0], cases[i].contact);
        }
        atls_issuer_free(&is);
    }
    assert_true(ATLS_MAX_PARALLEL_LIMIT >= 8);
}

/* Must-Staple with stapling off would serve certificates that browsers
 * refuse: refused, with every other combination accepted. */
static void
test_issuer_must_staple(void **state)
{
    static const struct {
        int must_staple, stapling_off, ok;
    } cases[] = { { 0, 0, 1 }, { 1, 0, 1 }, { 0, 1, 1 }, { 1, 1, 0 } };
    atls_issuer_t is, copy;
    char          err[256];
    size_t        i;
    int           rc;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&is, 0, sizeof(is));
        is.must_staple = cases[i].must_staple;
        is.stapling_off = cases[i].stapling_off;
        err[0] = '\0';
        rc = atls_issuer_normalise(&is, err, sizeof(err));
        assert_int_equal(rc, cases[i].ok ? 0 : -1);
        if (!cases[i].ok) {
            assert_non_null(strstr(err, "must_staple needs stapling"));
        }
        atls_issuer_copy(&copy, &is);
        assert_int_equal(copy.must_staple, cases[i].must_staple);
        assert_int_equal(copy.stapling_off, cases[i].stapling_off);
        atls_issuer_free(&copy);
        atls_issuer_free(&is);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issuer_normalise),
        cmocka_unit_test(test_issuer_must_staple),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
