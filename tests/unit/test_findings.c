/* Facts of served chains and the findings judged from them, on
 * certificates made here with plain OpenSSL (support/testpki). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include "atls_inventory.h"
#include "support/testpki.h"

#define DAY 86400L

static const char *const one_name[] = { "site.example" };

/* The findings of chain[0..n) for used names at now, and whether finding
 * type t is among them (its severity in *sev). */
typedef struct {
    atls_cert_facts_t f;
    atls_finding_t    fs[16];
    size_t            n;
} judged_t;

static void
judge(judged_t *j, X509 *const *certs, size_t n, const char *const *used, size_t n_used,
      const atls_warn_t *w)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    char            err[256];
    size_t          i;

    for (i = 0; i < n; i++) {
        sk_X509_push(chain, certs[i]);
    }
    assert_int_equal(atls_cert_facts(chain, &j->f, err, sizeof(err)), 0);
    j->n = atls_findings(&j->f, used, n_used, w, time(NULL), j->fs, 16);
    sk_X509_free(chain);
}

static const atls_finding_t *
has(const judged_t *j, atls_finding_type_t t)
{
    size_t i;

    for (i = 0; i < j->n; i++) {
        if (j->fs[i].type == t) {
            return &j->fs[i];
        }
    }
    return NULL;
}

static void
judged_free(judged_t *j)
{
    atls_cert_facts_free(&j->f);
}

/* A leaf for names issued by the test intermediate, valid nb..na seconds
 * from now, with key (NULL: a new P-256 key). */
static X509 *
leaf(testpki_chain_t *pki, EVP_PKEY *key, const char *const *names, size_t n, long nb,
     long na)
{
    EVP_PKEY *k = key != NULL ? key : testpki_key(0);
    X509     *x = testpki_cert(k, names[0], names, n, pki->inter, pki->inter_key, 0, nb, na);

    if (key == NULL) {
        EVP_PKEY_free(k);
    }
    assert_non_null(x);
    return x;
}

static int
setup(void **state)
{
    testpki_chain_t *pki = calloc(1, sizeof(*pki));

    if (testpki_chain_make(pki, one_name, 1, ATLS_KEY_EC256) != 0) {
        return -1;
    }
    *state = pki;
    return 0;
}

static int
teardown(void **state)
{
    testpki_chain_free(*state);
    free(*state);
    return 0;
}

static void
test_facts_of_a_complete_chain(void **state)
{
    testpki_chain_t *pki = *state;
    X509            *x = leaf(pki, NULL, one_name, 1, -DAY, 90 * DAY);
    X509            *chain[3] = { x, pki->inter, pki->root };
    judged_t         j;

    judge(&j, chain, 3, one_name, 1, NULL);
    assert_int_equal(j.n, 0);
    assert_int_equal(j.f.n_names, 1);
    assert_string_equal(j.f.names[0], "site.example");
    assert_string_equal(j.f.subject, "CN=site.example");
    assert_string_equal(j.f.issuer, "CN=" TESTPKI_INTER_CN);
    assert_string_equal(j.f.key_alg, "ec");
    assert_int_equal(j.f.key_bits, 256);
    assert_string_equal(j.f.sig_alg, "ecdsa-with-SHA256");
    assert_false(j.f.sig_sha1);
    assert_int_equal(j.f.chain_len, 3);
    assert_true(j.f.chain_complete);
    assert_false(j.f.self_signed);
    assert_non_null(j.f.serial);
    assert_true(j.f.not_after > time(NULL));
    assert_int_equal(atls_findings_worst(j.fs, j.n), ATLS_SEV_OK);
    judged_free(&j);
    X509_free(x);
}

static void
test_incomplete_chain(void **state)
{
    testpki_chain_t *pki = *state;
    X509            *x = leaf(pki, NULL, one_name, 1, -DAY, 90 * DAY);
    X509            *alone[1] = { x };
    X509            *no_root[2] = { x, pki->inter };
    X509            *wrong[2] = { x, pki->root };
    judged_t         j;

    /* the intermediate missing */
    judge(&j, alone, 1, one_name, 1, NULL);
    assert_false(j.f.chain_complete);
    assert_non_null(has(&j, ATLS_FINDING_INCOMPLETE_CHAIN));
    assert_int_equal(has(&j, ATLS_FINDING_INCOMPLETE_CHAIN)->severity, ATLS_SEV_WARNING);
    assert_int_equal(atls_findings_worst(j.fs, j.n), ATLS_SEV_WARNING);
    judged_free(&j);
    /* ends at an intermediate whose root is in no system trust store */
    judge(&j, no_root, 2, one_name, 1, NULL);
    assert_false(j.f.chain_complete);
    assert_non_null(has(&j, ATLS_FINDING_INCOMPLETE_CHAIN));
    judged_free(&j);
    /* a link that does not verify: the root did not sign the leaf */
    judge(&j, wrong, 2, one_name, 1, NULL);
    assert_false(j.f.chain_complete);
    assert_non_null(has(&j, ATLS_FINDING_INCOMPLETE_CHAIN));
    assert_int_equal(j.n, 1);
    judged_free(&j);
    X509_free(x);
}

static void
test_self_signed_is_not_incomplete(void **state)
{
    EVP_PKEY *k = testpki_key(0);
    X509     *x = testpki_cert(k, "self.example", (const char *const[]) { "self.example" }, 1,
                               NULL, NULL, 0, -DAY, 30 * DAY);
    judged_t  j;

    (void) state;
    judge(&j, &x, 1, (const char *const[]) { "self.example" }, 1, NULL);
    assert_true(j.f.self_signed);
    assert_true(j.f.chain_complete);
    assert_int_equal(j.n, 0);
    judged_free(&j);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void
test_expired_and_not_yet_valid(void **state)
{
    testpki_chain_t *pki = *state;
    X509            *old = leaf(pki, NULL, one_name, 1, -100 * DAY, -2 * DAY);
    X509            *future = leaf(pki, NULL, one_name, 1, 5 * DAY, 90 * DAY);
    X509            *c[3] = { old, pki->inter, pki->root };
    judged_t         j;

    judge(&j, c, 3, one_name, 1, NULL);
    assert_int_equal(j.n, 1);
    assert_int_equal(j.fs[0].type, ATLS_FINDING_EXPIRED);
    assert_int_equal(j.fs[0].severity, ATLS_SEV_CRITICAL);
    assert_non_null(strstr(j.fs[0].detail, "expired 2d"));
    assert_null(has(&j, ATLS_FINDING_EXPIRING));
    judged_free(&j);

    c[0] = future;
    judge(&j, c, 3, one_name, 1, NULL);
    assert_int_equal(j.n, 1);
    assert_int_equal(j.fs[0].type, ATLS_FINDING_NOT_YET_VALID);
    assert_int_equal(atls_findings_worst(j.fs, j.n), ATLS_SEV_CRITICAL);
    judged_free(&j);
    X509_free(old);
    X509_free(future);
}

static void
test_expiring_uses_the_largest_level(void **state)
{
    testpki_chain_t *pki = *state;
    X509            *soon = leaf(pki, NULL, one_name, 1, -DAY, 10 * DAY);
    X509            *c[3] = { soon, pki->inter, pki->root };
    atls_warn_t      w;
    judged_t         j;

    /* defaults: 21d is the window */
    judge(&j, c, 3, one_name, 1, NULL);
    assert_non_null(has(&j, ATLS_FINDING_EXPIRING));
    assert_int_equal(has(&j, ATLS_FINDING_EXPIRING)->severity, ATLS_SEV_WARNING);
    assert_memory_equal(has(&j, ATLS_FINDING_EXPIRING)->detail, "expires in ", 11);
    judged_free(&j);
    /* levels 7d 1d: 10 days left is outside */
    memset(&w, 0, sizeof(w));
    w.level[0] = 7 * DAY;
    w.level[1] = DAY;
    w.n = 2;
    judge(&j, c, 3, one_name, 1, &w);
    assert_int_equal(j.n, 0);
    judged_free(&j);
    /* 14d 3d: inside */
    w.level[0] = 14 * DAY;
    judge(&j, c, 3, one_name, 1, &w);
    assert_non_null(has(&j, ATLS_FINDING_EXPIRING));
    judged_free(&j);
    X509_free(soon);
}

static void
test_name_mismatch(void **state)
{
    static const char *const names[] = { "*.wild.example", "exact.example", "10.0.0.1" };
    static const char *const used[] = { "a.wild.example", "EXACT.example", "a.b.wild.example",
                                        "wild.example", "10.0.0.1", "10.0.0.2",
                                        "*.wild.example", "~^re$" };
    testpki_chain_t *pki = *state;
    X509            *x = leaf(pki, NULL, names, 3, -DAY, 90 * DAY);
    X509            *c[3] = { x, pki->inter, pki->root };
    judged_t         j;
    size_t           i, mismatches = 0;

    judge(&j, c, 3, used, 8, NULL);
    for (i = 0; i < j.n; i++) {
        if (j.fs[i].type == ATLS_FINDING_NAME_MISMATCH) {
            mismatches++;
            assert_int_equal(j.fs[i].severity, ATLS_SEV_CRITICAL);
        }
    }
    /* one label only, never the bare domain, IPs only by IP SAN; a server
     * name "*.x" is covered by the same wildcard; a regex is not judged */
    assert_int_equal(mismatches, 3);
    assert_non_null(strstr(j.fs[0].detail, "a.b.wild.example not covered"));
    judged_free(&j);
    X509_free(x);

    assert_true(atls_name_covered(names, 3, "x.WILD.example"));
    assert_false(atls_name_covered(names, 3, ".wild.example"));
    assert_false(atls_name_covered(names, 3, "*.exact.example"));
    assert_false(atls_name_covered((const char *const[]) { "*.10.0.0" }, 1, "1.10.0.0"));
    assert_true(atls_name_covered((const char *const[]) { "::1" }, 1, "0:0::1"));
    assert_false(atls_name_covered((const char *const[]) { "a*.example" }, 1, "ab.example"));
}

static void
test_cn_when_no_san(void **state)
{
    EVP_PKEY *k = testpki_key(0);
    X509     *x = testpki_cert(k, "cn-only.example", NULL, 0, NULL, NULL, 0, -DAY, 30 * DAY);
    judged_t  j;

    (void) state;
    judge(&j, &x, 1, (const char *const[]) { "cn-only.example" }, 1, NULL);
    assert_int_equal(j.f.n_names, 1);
    assert_string_equal(j.f.names[0], "cn-only.example");
    assert_null(has(&j, ATLS_FINDING_NAME_MISMATCH));
    judged_free(&j);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void
test_weak_rsa(void **state)
{
    testpki_chain_t *pki = *state;
    EVP_PKEY        *k = testpki_key(1024);
    X509            *x = leaf(pki, k, one_name, 1, -DAY, 90 * DAY);
    X509            *c[3] = { x, pki->inter, pki->root };
    judged_t         j;

    judge(&j, c, 3, one_name, 1, NULL);
    assert_string_equal(j.f.key_alg, "rsa");
    assert_int_equal(j.f.key_bits, 1024);
    assert_int_equal(j.n, 1);
    assert_int_equal(j.fs[0].type, ATLS_FINDING_WEAK_KEY);
    assert_int_equal(j.fs[0].severity, ATLS_SEV_CRITICAL);
    assert_string_equal(j.fs[0].detail, "rsa 1024 bits");
    judged_free(&j);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void
test_weak_ec_p224(void **state)
{
    testpki_chain_t *pki = *state;
    EVP_PKEY        *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-224");
    X509            *x, *c[3];
    judged_t         j;

    if (k == NULL) {
        ERR_clear_error();
        skip();   /* this OpenSSL has no P-224 */
    }
    x = leaf(pki, k, one_name, 1, -DAY, 90 * DAY);
    c[0] = x;
    c[1] = pki->inter;
    c[2] = pki->root;
    judge(&j, c, 3, one_name, 1, NULL);
    assert_int_equal(j.f.key_bits, 224);
    assert_non_null(has(&j, ATLS_FINDING_WEAK_KEY));
    judged_free(&j);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void
test_sha1_signature(void **state)
{
    testpki_chain_t *pki = *state;
    X509            *x = leaf(pki, NULL, one_name, 1, -DAY, 90 * DAY);
    X509            *c[3] = { x, pki->inter, pki->root };
    judged_t         j;

    if (X509_sign(x, pki->inter_key, EVP_sha1()) <= 0) {
        ERR_clear_error();
        X509_free(x);
        skip();   /* SHA-1 signing refused by this OpenSSL's policy */
    }
    judge(&j, c, 3, one_name, 1, NULL);
    assert_true(j.f.sig_sha1);
    assert_string_equal(j.f.sig_alg, "ecdsa-with-SHA1");
    assert_int_equal(j.n, 1);
    assert_int_equal(j.fs[0].type, ATLS_FINDING_SHA1_SIGNATURE);
    assert_int_equal(j.fs[0].severity, ATLS_SEV_WARNING);
    judged_free(&j);
    X509_free(x);
}

static void
test_names_and_empty_chain(void **state)
{
    static const char *const expect[ATLS_FINDING_MAX] = {
        "expired", "not-yet-valid", "name-mismatch", "weak-key", "expiring",
        "sha1-signature", "incomplete-chain", "unreadable"
    };
    STACK_OF(X509)   *empty = sk_X509_new_null();
    atls_cert_facts_t f;
    char              err[128];
    int               t;

    (void) state;
    for (t = 0; t < ATLS_FINDING_MAX; t++) {
        assert_string_equal(atls_finding_name((atls_finding_type_t) t), expect[t]);
    }
    assert_string_equal(atls_severity_name(ATLS_SEV_OK), "ok");
    assert_string_equal(atls_severity_name(ATLS_SEV_WARNING), "warning");
    assert_string_equal(atls_severity_name(ATLS_SEV_CRITICAL), "critical");
    assert_int_equal(atls_findings_worst(NULL, 0), ATLS_SEV_OK);
    assert_int_equal(atls_cert_facts(empty, &f, err, sizeof(err)), -1);
    assert_string_equal(err, "no certificate");
    assert_int_equal(atls_cert_facts(NULL, &f, err, sizeof(err)), -1);
    sk_X509_free(empty);
}

static void
test_max_bounds_the_output(void **state)
{
    testpki_chain_t *pki = *state;
    EVP_PKEY        *k = testpki_key(1024);
    X509            *x = leaf(pki, k, one_name, 1, -100 * DAY, -DAY);
    atls_finding_t   fs[2];
    judged_t         j;

    judge(&j, &x, 1, (const char *const[]) { "other.example" }, 1, NULL);
    assert_int_equal(j.n, 4);   /* expired, mismatch, weak key, incomplete */
    assert_int_equal(atls_findings(&j.f, NULL, 0, NULL, time(NULL), fs, 2), 2);
    judged_free(&j);
    X509_free(x);
    EVP_PKEY_free(k);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_facts_of_a_complete_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incomplete_chain, setup, teardown),
        cmocka_unit_test(test_self_signed_is_not_incomplete),
        cmocka_unit_test_setup_teardown(test_expired_and_not_yet_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiring_uses_the_largest_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_mismatch, setup, teardown),
        cmocka_unit_test(test_cn_when_no_san),
        cmocka_unit_test_setup_teardown(test_weak_rsa, setup, teardown),
        cmocka_unit_test_setup_teardown(test_weak_ec_p224, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sha1_signature, setup, teardown),
        cmocka_unit_test(test_names_and_empty_chain),
        cmocka_unit_test_setup_teardown(test_max_bounds_the_output, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
