/* ARI (RFC 9773): certificate identifier, renewalInfo parsing, window pick. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/x509v3.h>
#include "atls_schedule.h"
#include "support/testpki.h"

/* A signed certificate with exactly this AKI keyIdentifier (NULL: no AKI)
 * and serial (hex), re-parsed from DER so no cached extension state leaks. */
static X509 *
make_cert(const unsigned char *aki, size_t aki_len, const char *serial_hex)
{
    EVP_PKEY        *key = testpki_key(0);
    X509            *x = X509_new(), *out;
    BIGNUM          *bn = NULL;
    ASN1_INTEGER    *sn;
    AUTHORITY_KEYID *akid;
    X509_NAME       *name;
    unsigned char   *der = NULL;
    const unsigned char *p;
    int              len;

    assert_non_null(key);
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_true(BN_hex2bn(&bn, serial_hex) > 0);
    sn = BN_to_ASN1_INTEGER(bn, NULL);
    assert_non_null(sn);
    assert_int_equal(X509_set_serialNumber(x, sn), 1);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *) "ari.example", -1, -1, 0);
    assert_int_equal(X509_set_issuer_name(x, name), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    if (aki != NULL) {
        akid = AUTHORITY_KEYID_new();
        assert_non_null(akid);
        akid->keyid = ASN1_OCTET_STRING_new();
        assert_int_equal(ASN1_OCTET_STRING_set(akid->keyid, aki, (int) aki_len), 1);
        assert_int_equal(X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, 0), 1);
        AUTHORITY_KEYID_free(akid);
    }
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    len = i2d_X509(x, &der);
    assert_true(len > 0);
    p = der;
    out = d2i_X509(NULL, &p, len);
    assert_non_null(out);
    OPENSSL_free(der);
    X509_free(x);
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    EVP_PKEY_free(key);
    return out;
}

static void
test_cert_id_rfc_example(void **state)
{
    /* RFC 9773 section 4.1 example: keyIdentifier 69:88:5B:6B:87:46:40:41:
     * E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4 -> "aYhba4dGQEHhs3uEe6CuLN4ByNQ";
     * serial 0x87654321 has its high bit set, so its DER content is
     * 00 87 65 43 21 -> "AIdlQyE". */
    static const unsigned char aki[] = {
        0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
        0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4
    };
    X509 *x;
    char *id;

    (void) state;
    x = make_cert(aki, sizeof(aki), "87654321");
    id = atls_ari_cert_id(x);
    assert_non_null(id);
    assert_string_equal(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    free(id);
    X509_free(x);
}

static void
test_cert_id_small_serial(void **state)
{
    /* keyid 01 02 03 -> base64url "AQID"; serial 0x7f01 (high bit clear, no
     * padding byte) -> 7f 01 -> "fwE" */
    static const unsigned char aki[] = { 0x01, 0x02, 0x03 };
    X509 *x;
    char *id;

    (void) state;
    x = make_cert(aki, sizeof(aki), "7F01");
    id = atls_ari_cert_id(x);
    assert_non_null(id);
    assert_string_equal(id, "AQID.fwE");
    free(id);
    X509_free(x);
}

static void
test_cert_id_no_aki(void **state)
{
    X509 *x;

    (void) state;
    x = make_cert(NULL, 0, "1234");
    assert_null(atls_ari_cert_id(x));
    assert_null(atls_ari_cert_id(NULL));
    X509_free(x);
}

#define JS(s) s, strlen(s)

static void
test_ari_parse(void **state)
{
    time_t s = 0, e = 0;

    (void) state;
    assert_int_equal(atls_ari_parse(JS("{\"suggestedWindow\":{\"start\":"
                     "\"2025-01-02T00:00:00Z\",\"end\":\"2025-01-03T00:00:00.5Z\"},"
                     "\"explanationURL\":\"https://ca.example/why\"}"), &s, &e), 0);
    assert_int_equal(s, atls_rfc3339_parse("2025-01-02T00:00:00Z"));
    assert_int_equal(e, s + 86400);

    /* offsets are honoured */
    assert_int_equal(atls_ari_parse(JS("{\"suggestedWindow\":{\"start\":"
                     "\"2025-01-02T02:00:00+02:00\",\"end\":\"2025-01-02T01:00:00Z\"}}"),
                     &s, &e), 0);
    assert_int_equal(e - s, 3600);

    /* end <= start */
    assert_int_equal(atls_ari_parse(JS("{\"suggestedWindow\":{\"start\":"
                     "\"2025-01-02T00:00:00Z\",\"end\":\"2025-01-02T00:00:00Z\"}}"),
                     &s, &e), -1);
    assert_int_equal(atls_ari_parse(JS("{\"suggestedWindow\":{\"start\":"
                     "\"2025-01-03T00:00:00Z\",\"end\":\"2025-01-02T00:00:00Z\"}}"),
                     &s, &e), -1);
    /* garbage */
    assert_int_equal(atls_ari_parse(JS("not json"), &s, &e), -1);
    assert_int_equal(atls_ari_parse(JS("[]"), &s, &e), -1);
    assert_int_equal(atls_ari_parse(JS("{}"), &s, &e), -1);
    assert_int_equal(atls_ari_parse(JS("{\"suggestedWindow\":\"soon\"}"), &s, &e), -1);
    assert_int_equal(atls_ari_parse(JS("{\"suggestedWindow\":{\"start\":1,\"end\":2}}"),
                     &s, &e), -1);
    assert_int_equal(atls_ari_parse(JS("{\"suggestedWindow\":{\"start\":"
                     "\"2025-01-02\",\"end\":\"2025-01-03T00:00:00Z\"}}"), &s, &e), -1);
    assert_int_equal(atls_ari_parse(NULL, 0, &s, &e), -1);
}

static void
test_ari_pick(void **state)
{
    const time_t start = 1000000, end = 1000000 + 86400;
    uint64_t     r;
    time_t       t;
    int          low = 0, high = 0;

    (void) state;
    assert_int_equal(atls_ari_pick(start, end, 0, 0), start);
    assert_int_equal(atls_ari_pick(start, end, 0, UINT64_MAX), end - 1);
    assert_int_equal(atls_ari_pick(start, end, 0, 1ULL << 63), start + 43200);
    /* spread over the whole window */
    for (r = 0; r < 2000; r++) {
        t = atls_ari_pick(start, end, 0, r * 0x9e3779b97f4a7c15ULL);
        assert_true(t >= start && t < end);
        low += t < start + 43200;
        high += t >= start + 43200;
    }
    assert_true(low > 800 && high > 800);

    /* window already over: now */
    assert_int_equal(atls_ari_pick(start, end, end, 0), end);
    assert_int_equal(atls_ari_pick(start, end, end + 5000, UINT64_MAX), end + 5000);
    /* inside the window, a pick in the past means now */
    assert_int_equal(atls_ari_pick(start, end, start + 100, 0), start + 100);
    assert_int_equal(atls_ari_pick(start, end, start + 100, UINT64_MAX), end - 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cert_id_rfc_example),
        cmocka_unit_test(test_cert_id_small_serial),
        cmocka_unit_test(test_cert_id_no_aki),
        cmocka_unit_test(test_ari_parse),
        cmocka_unit_test(test_ari_pick),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
