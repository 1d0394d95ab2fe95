/* CRLs: parsed (DER and PEM) and verified against the issuer before any
 * serial in them is believed; lookups by the serial atls_cert_info gives;
 * reason names.  The CRLs are minted by support/ocsppki. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <openssl/pem.h>
#include "atls_crypto.h"
#include "atls_ocsp.h"
#include "support/ocsppki.h"
#include "../fuzz/ocsp_fixture.h"

#define CRL_URL  "http://127.0.0.1:8889/shard/3.crl"

static ocsppki_t pki;
static X509     *revoked_leaf, *good_leaf;
static time_t    now;

static int
setup(void **state)
{
    now = time(NULL);
    if (ocsppki_make(&pki) != 0) {
        return -1;
    }
    revoked_leaf = ocsppki_leaf(&pki, "r.test", NULL, CRL_URL, 0);
    good_leaf = ocsppki_leaf(&pki, "g.test", NULL, CRL_URL, 0);
    return revoked_leaf != NULL && good_leaf != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
    X509_free(revoked_leaf);
    X509_free(good_leaf);
    ocsppki_free(&pki);
    return 0;
}

/* A CRL listing revoked_leaf (keyCompromise, two hours ago). */
static void
crl_defaults(ocsppki_crl_t *o, ocsppki_revoked_t *r)
{
    memset(o, 0, sizeof(*o));
    r->cert = revoked_leaf;
    r->reason = 1;
    r->revoked_at = now - 7200;
    o->revoked = r;
    o->n_revoked = 1;
    o->this_update = now - 3600;
    o->next_update = now + 86400;
}

/* atls_crl_verify over the CRL o describes, fetched from url. */
static X509_CRL *
verify(const ocsppki_crl_t *o, const char *url, X509 *issuer, atls_crl_info_t *info,
       char *err, size_t errlen)
{
    unsigned char *data;
    size_t         len = 0;
    X509_CRL      *crl;

    data = ocsppki_crl(&pki, o, &len);
    assert_non_null(data);
    err[0] = '\0';
    crl = atls_crl_verify(data, len, url, issuer, now, info, err, errlen);
    free(data);
    return crl;
}

static void
serial_of(X509 *x, char *out, size_t len)
{
    atls_cert_info_t info;

    assert_int_equal(atls_cert_info(x, &info), 0);
    snprintf(out, len, "%s", info.serial);
    atls_cert_info_free(&info);
}

static void
test_crl_verify_and_lookup(void **state)
{
    ocsppki_crl_t     o;
    ocsppki_revoked_t r;
    atls_crl_info_t   info;
    X509_CRL         *crl;
    char              err[256], serial[132];
    time_t            at;
    int               reason, pem;

    crl_defaults(&o, &r);
    for (pem = 0; pem <= 1; pem++) {
        o.pem = pem;
        crl = verify(&o, CRL_URL, pki.ca, &info, err, sizeof(err));
        if (crl == NULL) {
            fail_msg("%s CRL refused: %s", pem ? "PEM" : "DER", err);
        }
        assert_int_equal(info.this_update, o.this_update);
        assert_int_equal(info.next_update, o.next_update);

        serial_of(revoked_leaf, serial, sizeof(serial));
        assert_int_equal(atls_crl_lookup(crl, serial, &at, &reason), 1);
        assert_int_equal(at, now - 7200);
        assert_int_equal(reason, 1);
        assert_string_equal(atls_crl_reason_name(reason), "keyCompromise");

        serial_of(good_leaf, serial, sizeof(serial));
        assert_int_equal(atls_crl_lookup(crl, serial, &at, &reason), 0);
        assert_int_equal(at, 0);
        assert_int_equal(reason, -1);
        X509_CRL_free(crl);
    }
}

static void
test_crl_lookup_edges(void **state)
{
    ocsppki_crl_t     o;
    ocsppki_revoked_t r;
    atls_crl_info_t   info;
    X509_CRL         *crl;
    char              err[256], serial[132], upper[132];
    time_t            at;
    int               reason;
    size_t            i;

    crl_defaults(&o, &r);
    r.reason = -1;                      /* no reasonCode entry extension */
    crl = verify(&o, CRL_URL, pki.ca, &info, err, sizeof(err));
    assert_non_null(crl);
    serial_of(revoked_leaf, serial, sizeof(serial));
    assert_int_equal(atls_crl_lookup(crl, serial, &at, &reason), 1);
    assert_int_equal(reason, -1);
    assert_string_equal(atls_crl_reason_name(reason), "unspecified");
    /* hex is hex in either case; the outputs are optional */
    for (i = 0; serial[i] != '\0'; i++) {
        upper[i] = (char) (serial[i] >= 'a' && serial[i] <= 'f' ? serial[i] - 32 : serial[i]);
    }
    upper[i] = '\0';
    assert_int_equal(atls_crl_lookup(crl, upper, NULL, NULL), 1);

    assert_int_equal(atls_crl_lookup(crl, "", &at, &reason), -1);
    assert_int_equal(atls_crl_lookup(crl, NULL, &at, &reason), -1);
    assert_int_equal(atls_crl_lookup(crl, "12:34", &at, &reason), -1);
    assert_int_equal(atls_crl_lookup(crl, "xyz", &at, &reason), -1);
    assert_int_equal(atls_crl_lookup(NULL, serial, &at, &reason), -1);
    X509_CRL_free(crl);
}

static void
test_crl_idp(void **state)
{
    ocsppki_crl_t     o;
    ocsppki_revoked_t r;
    atls_crl_info_t   info;
    X509_CRL         *crl;
    char              err[256];

    crl_defaults(&o, &r);
    o.idp_uri = CRL_URL;
    crl = verify(&o, CRL_URL, pki.ca, &info, err, sizeof(err));
    assert_non_null(crl);
    X509_CRL_free(crl);

    /* shard 4 passed off as shard 3 */
    o.idp_uri = "http://127.0.0.1:8889/shard/4.crl";
    assert_null(verify(&o, CRL_URL, pki.ca, &info, err, sizeof(err)));
    assert_non_null(strstr(err, "Issuing Distribution Point"));
    assert_non_null(strstr(err, CRL_URL));
    assert_int_equal(info.this_update, 0);

    /* an indirect CRL: entries of other CAs could pass for ours */
    o.idp_uri = CRL_URL;
    o.indirect = 1;
    assert_null(verify(&o, CRL_URL, pki.ca, &info, err, sizeof(err)));
    assert_non_null(strstr(err, "indirect"));
}

static void
test_crl_critical_unknown(void **state)
{
    ocsppki_crl_t     o;
    ocsppki_revoked_t r;
    atls_crl_info_t   info;
    char              err[256];

    crl_defaults(&o, &r);
    o.critical_unknown = 1;
    assert_null(verify(&o, CRL_URL, pki.ca, &info, err, sizeof(err)));
    assert_non_null(strstr(err, "unsupported critical extension"));
}

static void
test_crl_refusals(void **state)
{
    ocsppki_crl_t     o;
    ocsppki_revoked_t r;
    atls_crl_info_t   info;
    X509_CRL         *crl;
    unsigned char    *big;
    char              err[256];

    crl_defaults(&o, &r);
    o.wrong_signer = 1;
    assert_null(verify(&o, CRL_URL, pki.ca, &info, err, sizeof(err)));
    assert_non_null(strstr(err, "signature does not verify"));

    crl_defaults(&o, &r);
    assert_null(verify(&o, CRL_URL, pki.other, &info, err, sizeof(err)));
    assert_non_null(strstr(err, "another CA"));
    assert_null(verify(&o, CRL_URL, NULL, &info, err, sizeof(err)));

    o.this_update = now + ATLS_OCSP_SKEW_S + 60;
    assert_null(verify(&o, CRL_URL, pki.ca, &info, err, sizeof(err)));
    assert_non_null(strstr(err, "thisUpdate is in the future"));

    /* a stale CRL is the caller's call: accepted, its nextUpdate reported */
    o.this_update = now - 3 * 86400;
    o.next_update = now - 86400;
    crl = verify(&o, CRL_URL, pki.ca, &info, err, sizeof(err));
    assert_non_null(crl);
    assert_int_equal(info.next_update, now - 86400);
    X509_CRL_free(crl);
    o.next_update = 0;
    crl = verify(&o, CRL_URL, pki.ca, &info, err, sizeof(err));
    assert_non_null(crl);
    assert_int_equal(info.next_update, 0);
    X509_CRL_free(crl);

    assert_null(atls_crl_verify((const unsigned char *) "not a crl", 9, CRL_URL, pki.ca,
                                now, &info, err, sizeof(err)));
    assert_non_null(strstr(err, "not a DER or PEM CRL"));
    assert_null(atls_crl_verify((const unsigned char *) "-----BEGIN X509 CRL-----\n", 25,
                                CRL_URL, pki.ca, now, &info, err, sizeof(err)));
    assert_non_null(strstr(err, "not a DER or PEM CRL"));
    big = calloc(1, ATLS_CRL_MAX_BYTES + 1);
    assert_non_null(big);
    assert_null(atls_crl_verify(big, ATLS_CRL_MAX_BYTES + 1, CRL_URL, pki.ca, now, &info,
                                err, sizeof(err)));
    assert_non_null(strstr(err, "larger than"));
    free(big);
}

/* The seeds of fuzz_crl were made by `openssl ca -gencrl`
 * (tests/fuzz/mkseeds_ocsp.sh): they verify for the fixture's CA and list
 * its leaf; the one with an IDP only for the URL the IDP names. */
static void
test_crl_openssl_ca(void **state)
{
    static const char *const seeds[] = { "crl-idp.der", "crl-idp.pem", "crl-plain.der" };
    static unsigned char     data[8192];
    atls_crl_info_t          info;
    X509_CRL                *crl;
    X509                    *ca;
    BIO                     *bio;
    char                     path[256], err[256];
    size_t                   i, len;
    time_t                   at;
    int                      reason;
    FILE                    *f;

    bio = BIO_new_mem_buf(fixture_ca_pem, -1);
    ca = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(ca);
    for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
        snprintf(path, sizeof(path), "tests/fuzz/corpus/fuzz_crl/%s", seeds[i]);
        f = fopen(path, "rb");
        assert_non_null(f);
        len = fread(data, 1, sizeof(data), f);
        fclose(f);
        crl = atls_crl_verify(data, len, FIXTURE_CRL_URL, ca, FIXTURE_NOW, &info, err,
                              sizeof(err));
        if (crl == NULL) {
            fail_msg("%s: %s", seeds[i], err);
        }
        assert_int_equal(atls_crl_lookup(crl, FIXTURE_SERIAL, &at, &reason), 1);
        assert_int_equal(reason, 1);
        X509_CRL_free(crl);
        crl = atls_crl_verify(data, len, "http://127.0.0.1:8889/other.crl", ca,
                              FIXTURE_NOW, &info, err, sizeof(err));
        assert_true(strstr(seeds[i], "idp") != NULL ? crl == NULL : crl != NULL);
        X509_CRL_free(crl);
    }
    X509_free(ca);
}

static void
test_crl_reason_names(void **state)
{
    static const struct { int code; const char *name; } names[] = {
        { -1, "unspecified" }, { 0, "unspecified" }, { 1, "keyCompromise" },
        { 2, "cACompromise" }, { 3, "affiliationChanged" }, { 4, "superseded" },
        { 5, "cessationOfOperation" }, { 6, "certificateHold" }, { 7, "unspecified" },
        { 8, "removeFromCRL" }, { 9, "privilegeWithdrawn" }, { 10, "aACompromise" },
        { 11, "unspecified" }, { -42, "unspecified" },
    };
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_string_equal(atls_crl_reason_name(names[i].code), names[i].name);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crl_verify_and_lookup),
        cmocka_unit_test(test_crl_lookup_edges),
        cmocka_unit_test(test_crl_idp),
        cmocka_unit_test(test_crl_refusals),
        cmocka_unit_test(test_crl_critical_unknown),
        cmocka_unit_test(test_crl_openssl_ca),
        cmocka_unit_test(test_crl_reason_names),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
