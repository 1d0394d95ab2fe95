/* Status rendering (JSON and Prometheus) over a real filesystem store. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>
#include <openssl/bn.h>
#include "atls_inventory.h"
#include "atls_status.h"
#include "support/testpki.h"

typedef struct {
    char             dir[64];
    atls_store_t    *st;
    testpki_chain_t  pki;
    char             serial[80];     /* of the valid leaf, lower-case hex */
    time_t           not_after;
    time_t           now;            /* 10.5 days before not_after */
    long             now_real_off;   /* time(NULL) - now */
    char             static_id[64];
} fx_t;

static int
rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) ftw;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static char **
strv(const char *a)
{
    char **v = calloc(2, sizeof(char *));

    v[0] = atls_strdup(a);
    return v;
}

static int
setup(void **state)
{
    static const char *const names[] = { "valid.example", "www.valid.example" };
    fx_t            *fx = calloc(1, sizeof(*fx));
    char             err[512], *pem, *hex;
    X509            *certs[2];
    atls_cert_meta_t m;
    BIGNUM          *bn;
    struct tm        tm;
    size_t           i;

    snprintf(fx->dir, sizeof(fx->dir), "/tmp/atls-status-XXXXXX");
    if (mkdtemp(fx->dir) == NULL) {
        return -1;
    }
    fx->st = atls_store_fs_open(fx->dir, err, sizeof(err));
    assert_non_null(fx->st);
    assert_int_equal(testpki_chain_make(&fx->pki, names, 2, ATLS_KEY_EC256), 0);

    /* facts about the leaf, computed with OpenSSL directly */
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(fx->pki.leaf), NULL);
    hex = BN_bn2hex(bn);
    for (i = 0; hex[i]; i++) {
        fx->serial[i] = (char) (hex[i] >= 'A' && hex[i] <= 'F' ? hex[i] + 32 : hex[i]);
    }
    /* BN_bn2hex may keep a leading zero nibble the status code need not */
    OPENSSL_free(hex);
    BN_free(bn);
    assert_int_equal(ASN1_TIME_to_tm(X509_get0_notAfter(fx->pki.leaf), &tm), 1);
    fx->not_after = timegm(&tm);
    fx->now = fx->not_after - 10 * 86400 - 43200;
    fx->now_real_off = (long) (time(NULL) - fx->now);

    certs[0] = fx->pki.leaf;
    certs[1] = fx->pki.inter;
    pem = testpki_pem(certs, 2);
    assert_int_equal(atls_store_save_cert(fx->st, "valid.example", ATLS_KEY_EC256,
                                          fx->pki.leaf_key, pem, err, sizeof(err)),
                     ATLS_STORE_OK);
    free(pem);

    memset(&m, 0, sizeof(m));
    m.id = atls_strdup("valid.example");
    m.names = strv("valid.example");
    m.n_names = 1;
    m.issuer.directory = atls_strdup("https://127.0.0.1:14000/dir");
    m.issuer.eab_hmac = atls_strdup("EABSECRET");
    m.state = ATLS_STATE_VALID;
    m.renew_at = 1800000000;
    m.next_attempt = 1700000000;   /* old, and no failures: not in backoff */
    m.generation = 3;
    assert_int_equal(atls_store_save_meta(fx->st, &m, err, sizeof(err)), 0);
    atls_cert_meta_free(&m);

    memset(&m, 0, sizeof(m));
    m.id = atls_strdup("failed.example");
    m.names = strv("failed.example");
    m.n_names = 1;
    m.issuer.directory = atls_strdup("https://127.0.0.1:14000/dir");
    m.state = ATLS_STATE_FAILED;
    m.failures = 3;
    m.renew_at = 1800000000;
    m.next_attempt = 1800003600;
    {
        atls_error_t e;

        atls_error_set(&e, ATLS_ERR_RETRY_LATER, "urn:ietf:params:acme:error:rateLimited",
                       "too many");
        snprintf(e.key_type, sizeof(e.key_type), "rsa2048");
        atls_cert_meta_set_error(&m, &e);
    }
    assert_int_equal(atls_store_save_meta(fx->st, &m, err, sizeof(err)), 0);
    atls_cert_meta_free(&m);

    /* an id that needs escaping in a Prometheus label */
    memset(&m, 0, sizeof(m));
    m.id = atls_strdup("we\"ird\\x.example");
    m.names = strv("we\"ird\\x.example");
    m.n_names = 1;
    m.state = ATLS_STATE_PENDING;
    assert_int_equal(atls_store_save_meta(fx->st, &m, err, sizeof(err)), 0);
    atls_cert_meta_free(&m);

    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    fx_t *fx = *state;

    atls_store_close(fx->st);
    testpki_chain_free(&fx->pki);
    nftw(fx->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* The element of arr whose member is value, or NULL. */
static json_t *
find_by(json_t *arr, const char *member, const char *value)
{
    size_t  i;
    json_t *c;

    json_array_foreach(arr, i, c) {
        if (strcmp(json_string_value(json_object_get(c, member)), value) == 0) {
            return c;
        }
    }
    return NULL;
}

static json_t *
find_cert(json_t *arr, const char *id)
{
    json_t *c = find_by(arr, "id", id);

    if (c != NULL) {
        return c;
    }
    fail_msg("certificate %s missing", id);
    return NULL;
}

static void
test_json(void **state)
{
    fx_t        *fx = *state;
    char        *out, buf[32];
    json_t      *root, *arr, *c, *k, *e;
    json_error_t jerr;
    const char  *serial;

    out = atls_status_json(fx->st, fx->now);
    assert_non_null(out);
    assert_null(strstr(out, "PRIVATE KEY"));
    assert_null(strstr(out, "BEGIN"));
    assert_null(strstr(out, "EABSECRET"));
    root = json_loads(out, 0, &jerr);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "version")), ATLS_VERSION);
    atls_rfc3339_format(fx->now, buf, sizeof(buf));
    assert_string_equal(json_string_value(json_object_get(root, "generated")), buf);
    arr = json_object_get(root, "certificates");
    assert_int_equal(json_array_size(arr), 3);

    c = find_cert(arr, "valid.example");
    assert_string_equal(json_string_value(json_object_get(c, "state")), "valid");
    assert_int_equal(json_integer_value(json_object_get(c, "failures")), 0);
    assert_true(json_is_null(json_object_get(c, "last_error")));
    assert_string_equal(json_string_value(json_object_get(c, "next_renewal")),
                        "2027-01-15T08:00:00Z");   /* renew_at 1800000000 */
    assert_string_equal(json_string_value(json_object_get(c, "directory")),
                        "https://127.0.0.1:14000/dir");
    assert_string_equal(json_string_value(json_array_get(json_object_get(c, "names"), 0)),
                        "valid.example");
    assert_int_equal(json_array_size(json_object_get(c, "keys")), 1);
    k = json_array_get(json_object_get(c, "keys"), 0);
    assert_string_equal(json_string_value(json_object_get(k, "type")), "ec256");
    serial = json_string_value(json_object_get(k, "serial"));
    assert_non_null(serial);
    /* same number, tolerate a leading zero nibble difference */
    assert_string_equal(serial + (strlen(serial) > strlen(fx->serial)),
                        fx->serial + (strlen(fx->serial) > strlen(serial)));
    assert_string_equal(json_string_value(json_object_get(k, "issuer")), TESTPKI_INTER_CN);
    atls_rfc3339_format(fx->not_after, buf, sizeof(buf));
    assert_string_equal(json_string_value(json_object_get(k, "not_after")), buf);
    assert_non_null(json_string_value(json_object_get(k, "not_before")));
    assert_int_equal(json_integer_value(json_object_get(k, "days_left")), 10);
    /* nothing known about its revocation (a meta without the facts) */
    e = json_object_get(k, "ocsp");
    assert_string_equal(json_string_value(json_object_get(e, "status")), "none");
    assert_true(json_is_null(json_object_get(e, "url")));
    assert_true(json_is_null(json_object_get(e, "error")));
    assert_true(json_is_null(json_object_get(json_object_get(k, "crl"), "url")));
    assert_true(json_is_null(json_object_get(k, "revoked")));

    c = find_cert(arr, "failed.example");
    assert_string_equal(json_string_value(json_object_get(c, "state")), "failed");
    assert_int_equal(json_integer_value(json_object_get(c, "failures")), 3);
    assert_string_equal(json_string_value(json_object_get(c, "last_error")),
                        "urn:ietf:params:acme:error:rateLimited: too many");
    /* ... and in parts */
    e = json_object_get(c, "error");
    assert_true(json_is_object(e));
    assert_string_equal(json_string_value(json_object_get(e, "class")), "retry-later");
    assert_string_equal(json_string_value(json_object_get(e, "type")),
                        "urn:ietf:params:acme:error:rateLimited");
    assert_string_equal(json_string_value(json_object_get(e, "detail")), "too many");
    assert_string_equal(json_string_value(json_object_get(e, "key_type")), "rsa2048");
    /* in backoff: the next renewal is the next attempt */
    assert_string_equal(json_string_value(json_object_get(c, "next_renewal")),
                        "2027-01-15T09:00:00Z");
    assert_string_equal(json_string_value(json_object_get(c, "next_attempt")),
                        "2027-01-15T09:00:00Z");
    assert_int_equal(json_array_size(json_object_get(c, "keys")), 0);

    c = find_cert(arr, "we\"ird\\x.example");
    assert_string_equal(json_string_value(json_object_get(c, "state")), "pending");
    assert_true(json_is_null(json_object_get(c, "error")));
    assert_true(json_is_null(json_object_get(c, "next_renewal")));

    json_decref(root);
    free(out);

    /* an expired certificate: negative days */
    out = atls_status_json(fx->st, fx->not_after + 1);
    root = json_loads(out, 0, &jerr);
    c = find_cert(json_object_get(root, "certificates"), "valid.example");
    k = json_array_get(json_object_get(c, "keys"), 0);
    assert_int_equal(json_integer_value(json_object_get(k, "days_left")), -1);
    json_decref(root);
    free(out);
}

static void
test_json_corrupt_meta(void **state)
{
    fx_t        *fx = *state;
    char        *out, err[256];
    json_t      *root, *c;
    json_error_t jerr;

    assert_int_equal(fx->st->ops->put(fx->st, "certs/broken.example/meta.json", "{", 1, 0,
                                      err, sizeof(err)), ATLS_STORE_OK);
    out = atls_status_json(fx->st, fx->now);
    root = json_loads(out, 0, &jerr);
    assert_non_null(root);
    assert_int_equal(json_array_size(json_object_get(root, "certificates")), 4);
    c = find_cert(json_object_get(root, "certificates"), "broken.example");
    assert_non_null(strstr(json_string_value(json_object_get(c, "last_error")),
                           "broken.example/meta.json: invalid JSON"));
    json_decref(root);
    free(out);
}

/* The status path never decodes the key: with the key block of the store
 * file replaced by garbage, a full load fails but the status still shows
 * the certificate's serial and notAfter. */
static void
test_json_garbage_key(void **state)
{
    static const char path[] = "certs/valid.example/ec256.pem";
    static const char garbage[] =
        "-----BEGIN PRIVATE KEY-----\n!!not base64, not a key!!\n"
        "-----END PRIVATE KEY-----\n";
    fx_t           *fx = *state;
    const char     *serial;
    char           *data, *certs, *file, *out, err[256], buf[32];
    size_t          len, n;
    json_t         *root, *k;
    json_error_t    jerr;
    EVP_PKEY       *key = NULL;
    STACK_OF(X509) *chain = NULL;

    assert_int_equal(fx->st->ops->get(fx->st, path, &data, &len, err, sizeof(err)),
                     ATLS_STORE_OK);
    certs = strstr(data, "-----BEGIN CERTIFICATE-----");
    assert_non_null(certs);
    n = strlen(garbage) + strlen(certs);
    file = malloc(n + 1);
    snprintf(file, n + 1, "%s%s", garbage, certs);
    assert_int_equal(fx->st->ops->put(fx->st, path, file, n, 1, err, sizeof(err)),
                     ATLS_STORE_OK);
    free(file);
    free(data);

    assert_int_not_equal(atls_store_load_cert(fx->st, "valid.example", ATLS_KEY_EC256,
                                              &key, &chain, err, sizeof(err)),
                         ATLS_STORE_OK);
    assert_null(key);

    out = atls_status_json(fx->st, fx->now);
    root = json_loads(out, 0, &jerr);
    assert_non_null(root);
    k = json_array_get(json_object_get(find_cert(json_object_get(root, "certificates"),
                                                 "valid.example"), "keys"), 0);
    assert_non_null(k);      /* a key-decoding load would have shown none */
    serial = json_string_value(json_object_get(k, "serial"));
    assert_string_equal(serial + (strlen(serial) > strlen(fx->serial)),
                        fx->serial + (strlen(fx->serial) > strlen(serial)));
    atls_rfc3339_format(fx->not_after, buf, sizeof(buf));
    assert_string_equal(json_string_value(json_object_get(k, "not_after")), buf);
    json_decref(root);
    free(out);
}

/* Records OCSP and CRL facts for valid.example's ec256 certificate, and
 * the CRL cache's facts for its URL. */
static void
set_revocation_facts(fx_t *fx, int revoked)
{
    atls_cert_meta_t     m;
    atls_cert_kt_info_t *ki;
    atls_crl_cache_t     cc;
    unsigned char        der[] = { 0x30, 0x00 };
    char                 err[512];
    char                *names[] = { (char *) "valid.example", NULL };

    assert_int_equal(atls_store_load_meta(fx->st, "valid.example", &m, err, sizeof(err)),
                     ATLS_STORE_OK);
    m.kt_info[0].key_type = ATLS_KEY_EC256;
    m.kt_info[0].names = atls_strv_dup(names, 1);
    m.kt_info[0].n_names = 1;
    m.kt_info[0].serial = atls_strdup(fx->serial);
    m.kt_info[0].not_before = fx->not_after - 90 * 86400;
    m.kt_info[0].not_after = fx->not_after;
    m.n_kt_info = 1;
    ki = atls_cert_meta_kt(&m, ATLS_KEY_EC256);
    ki->ocsp_url = atls_strdup("http://ocsp.example/");
    ki->crl_url = atls_strdup("http://crl.example/7.crl");
    ki->ocsp_status = revoked ? ATLS_OCSP_REVOKED : ATLS_OCSP_GOOD;
    ki->ocsp_this_update = 1795000000;
    ki->ocsp_next_update = 1795600000;
    ki->ocsp_next_refresh = 1795300000;
    ki->revoked_reason = -1;
    if (revoked) {
        ki->ocsp_error = atls_strdup("certificate is revoked");
        ki->revoked_seen = 1795000100;
        ki->revoked_at = 1794000000;
        ki->revoked_reason = 1;
        ki->revoked_source = atls_strdup("ocsp");
    }
    assert_int_equal(atls_store_save_meta(fx->st, &m, err, sizeof(err)), ATLS_STORE_OK);
    atls_cert_meta_free(&m);

    memset(&cc, 0, sizeof(cc));
    cc.url = (char *) "http://crl.example/7.crl";
    cc.fetched = 1795001000;
    cc.next_update = 1795500000;
    assert_int_equal(atls_store_save_crl(fx->st, &cc, der, sizeof(der), err, sizeof(err)),
                     ATLS_STORE_OK);
}

static json_t *
valid_key(fx_t *fx, json_t **root, const char **state)
{
    char        *out = atls_status_json(fx->st, fx->now);
    json_error_t jerr;
    json_t      *c;

    assert_non_null(out);
    *root = json_loads(out, 0, &jerr);
    free(out);
    assert_non_null(*root);
    c = find_cert(json_object_get(*root, "certificates"), "valid.example");
    *state = json_string_value(json_object_get(c, "state"));
    return json_array_get(json_object_get(c, "keys"), 0);
}

static void
test_revocation(void **state)
{
    fx_t       *fx = *state;
    json_t     *root, *k, *o;
    const char *st;
    char       *out;

    set_revocation_facts(fx, 0);
    k = valid_key(fx, &root, &st);
    assert_string_equal(st, "valid");
    o = json_object_get(k, "ocsp");
    assert_string_equal(json_string_value(json_object_get(o, "status")), "good");
    assert_string_equal(json_string_value(json_object_get(o, "url")), "http://ocsp.example/");
    assert_string_equal(json_string_value(json_object_get(o, "next_refresh")),
                        "2026-11-21T22:26:40Z");
    assert_true(json_is_null(json_object_get(o, "error")));
    o = json_object_get(k, "crl");
    assert_string_equal(json_string_value(json_object_get(o, "url")),
                        "http://crl.example/7.crl");
    assert_string_equal(json_string_value(json_object_get(o, "fetched")),
                        "2026-11-18T11:23:20Z");
    assert_string_equal(json_string_value(json_object_get(o, "next_update")),
                        "2026-11-24T06:00:00Z");
    assert_true(json_is_null(json_object_get(k, "revoked")));
    json_decref(root);

    out = atls_status_prometheus(fx->st, fx->now);
    assert_non_null(strstr(out, "# TYPE autotls_ocsp_status gauge\n"));
    assert_non_null(strstr(out, "\nautotls_ocsp_status{id=\"valid.example\",key_type=\"ec256\","
                                "status=\"good\"} 1\n"));
    assert_null(strstr(out, "status=\"revoked\"} 1"));
    assert_non_null(strstr(out, "\nautotls_ocsp_next_update_seconds{id=\"valid.example\","
                                "key_type=\"ec256\"} 1795600000\n"));
    assert_non_null(strstr(out, "\nautotls_ocsp_next_refresh_seconds{id=\"valid.example\","
                                "key_type=\"ec256\"} 1795300000\n"));
    assert_non_null(strstr(out, "\nautotls_certificate_revoked{id=\"valid.example\","
                                "key_type=\"ec256\"} 0\n"));
    free(out);

    /* known revoked: shown as such, and as being replaced */
    set_revocation_facts(fx, 1);
    k = valid_key(fx, &root, &st);
    assert_string_equal(st, "replacing");
    o = json_object_get(k, "ocsp");
    assert_string_equal(json_string_value(json_object_get(o, "status")), "revoked");
    assert_string_equal(json_string_value(json_object_get(o, "error")),
                        "certificate is revoked");
    o = json_object_get(k, "revoked");
    assert_true(json_is_object(o));
    assert_string_equal(json_string_value(json_object_get(o, "reason")), "keyCompromise");
    assert_string_equal(json_string_value(json_object_get(o, "source")), "ocsp");
    assert_string_equal(json_string_value(json_object_get(o, "seen")),
                        "2026-11-18T11:08:20Z");
    assert_string_equal(json_string_value(json_object_get(o, "at")), "2026-11-06T21:20:00Z");
    json_decref(root);

    out = atls_status_prometheus(fx->st, fx->now);
    assert_non_null(strstr(out, "\nautotls_ocsp_status{id=\"valid.example\",key_type=\"ec256\","
                                "status=\"revoked\"} 1\n"));
    assert_null(strstr(out, "status=\"good\"} 1"));
    assert_non_null(strstr(out, "\nautotls_certificate_revoked{id=\"valid.example\","
                                "key_type=\"ec256\"} 1\n"));
    free(out);
}

/* A host's own gauges: one JSON member, one Prometheus family each; a
 * second section chained after the first. */
static void
test_extra_gauges(void **state)
{
    static const atls_status_gauge_t g[] = { { "used", 12 }, { "free", 34 } };
    static const atls_status_gauge_t g2[] = { { "parked", 3 } };
    static const atls_status_extra_t x2 = { "on_demand", "Parked.", g2, 1, NULL };
    static const atls_status_extra_t x = { "zone", "Zone use.", g, 2, &x2 };
    fx_t        *fx = *state;
    char        *out;
    json_t      *root, *o;
    json_error_t jerr;

    out = atls_status_json_ext(fx->st, fx->now, &x);
    root = json_loads(out, 0, &jerr);
    assert_non_null(root);
    o = json_object_get(root, "zone");
    assert_int_equal(json_integer_value(json_object_get(o, "used")), 12);
    assert_int_equal(json_integer_value(json_object_get(o, "free")), 34);
    o = json_object_get(root, "on_demand");
    assert_int_equal(json_integer_value(json_object_get(o, "parked")), 3);
    json_decref(root);
    free(out);

    out = atls_status_prometheus_ext(fx->st, fx->now, &x);
    assert_non_null(strstr(out, "# TYPE autotls_zone_used gauge\nautotls_zone_used 12\n"));
    assert_non_null(strstr(out, "# HELP autotls_zone_free Zone use.\n"));
    assert_non_null(strstr(out, "\nautotls_zone_free 34\n"));
    assert_non_null(strstr(out, "\nautotls_on_demand_parked 3\n"));
    free(out);
}

static void
test_prometheus(void **state)
{
    fx_t *fx = *state;
    char *out, line[256];

    out = atls_status_prometheus(fx->st, fx->now);
    assert_non_null(out);
    assert_null(strstr(out, "PRIVATE KEY"));
    assert_null(strstr(out, "BEGIN"));

    assert_non_null(strstr(out, "# TYPE autotls_certificates_total gauge\n"));
    assert_non_null(strstr(out, "# HELP autotls_certificates_total "));
    assert_non_null(strstr(out, "\nautotls_certificates_total 3\n"));
    assert_non_null(strstr(out, "# TYPE autotls_certificate_not_after_seconds gauge\n"));
    assert_non_null(strstr(out, "# TYPE autotls_certificate_not_before_seconds gauge\n"));
    assert_non_null(strstr(out, "# TYPE autotls_certificate_next_renewal_seconds gauge\n"));
    assert_non_null(strstr(out, "# TYPE autotls_certificate_failures gauge\n"));
    assert_non_null(strstr(out, "# TYPE autotls_certificate_state gauge\n"));
    /* nothing known yet about OCSP: status none, no times, not revoked */
    assert_non_null(strstr(out, "\nautotls_ocsp_status{id=\"valid.example\",key_type=\"ec256\","
                                "status=\"none\"} 1\n"));
    assert_null(strstr(out, "autotls_ocsp_next_update_seconds{"));
    assert_non_null(strstr(out, "\nautotls_certificate_revoked{id=\"valid.example\","
                                "key_type=\"ec256\"} 0\n"));

    snprintf(line, sizeof(line),
             "\nautotls_certificate_not_after_seconds{id=\"valid.example\",name=\"valid.example\","
             "source=\"managed\",key_type=\"ec256\"} %lld\n",
             (long long) fx->not_after);
    assert_non_null(strstr(out, line));
    assert_non_null(strstr(out, "\nautotls_certificate_not_before_seconds{id=\"valid.example\","
                                "name=\"valid.example\",source=\"managed\",key_type=\"ec256\"} "));
    assert_non_null(strstr(out, "\nautotls_certificate_next_renewal_seconds{id=\"valid.example\"} 1800000000\n"));
    assert_non_null(strstr(out, "\nautotls_certificate_next_renewal_seconds{id=\"failed.example\"} 1800003600\n"));
    assert_non_null(strstr(out, "\nautotls_certificate_failures{id=\"failed.example\"} 3\n"));
    assert_non_null(strstr(out, "\nautotls_certificate_failures{id=\"valid.example\"} 0\n"));
    assert_non_null(strstr(out, "\nautotls_certificate_state{id=\"failed.example\",state=\"failed\"} 1\n"));
    assert_non_null(strstr(out, "\nautotls_certificate_state{id=\"failed.example\",state=\"valid\"} 0\n"));
    assert_non_null(strstr(out, "\nautotls_certificate_state{id=\"valid.example\",state=\"valid\"} 1\n"));
    assert_non_null(strstr(out, "\nautotls_certificate_state{id=\"valid.example\",state=\"pending\"} 0\n"));
    /* escaped label value: " -> \"  and  \ -> \\ */
    assert_non_null(strstr(out, "\nautotls_certificate_state{id=\"we\\\"ird\\\\x.example\",state=\"pending\"} 1\n"));
    assert_null(strstr(out, "id=\"we\"ird"));
    /* no certificate yet: no not_after sample for it */
    assert_null(strstr(out, "autotls_certificate_not_after_seconds{id=\"failed.example\""));
    /* each family announced once */
    assert_null(strstr(strstr(out, "# TYPE autotls_certificate_state gauge") + 1,
                       "# TYPE autotls_certificate_state gauge"));
    assert_int_equal(out[strlen(out) - 1], '\n');
    free(out);
}

/* A static certificate in the inventory (an expired self-signed one the
 * nginx of this store serves for static.example and other.example), the
 * store's alert levels and counters. */
static void
add_static_and_counters(fx_t *fx)
{
    static const char *const names[] = { "static.example" };
    atls_inventory_item_t it;
    atls_notify_conf_t    nc;
    EVP_PKEY             *key = testpki_key(1024);
    X509                 *x;
    char                  path[128], err[512], *pem;
    FILE                 *f;

    x = testpki_cert(key, "static.example", names, 1, NULL, NULL, 0,
                     -(long) (fx->now_real_off + 100 * 86400),
                     -(long) (fx->now_real_off + 86400));
    assert_non_null(x);
    pem = testpki_pem(&x, 1);
    snprintf(path, sizeof(path), "%s/static.pem", fx->dir);
    f = fopen(path, "w");
    fputs(pem, f);
    fclose(f);
    memset(&it, 0, sizeof(it));
    assert_int_equal(atls_inventory_load_file(path, &it), 0);
    assert_null(it.error);
    it.server = atls_strdup("nginx");
    atls_inventory_item_use(&it, "static.example", "/etc/nginx/nginx.conf:12");
    atls_inventory_item_use(&it, "other.example", "/etc/nginx/nginx.conf:12");
    assert_int_equal(atls_store_inventory_sync(fx->st, "nginx", &it, 1, err, sizeof(err)),
                     ATLS_STORE_OK);
    snprintf(fx->static_id, sizeof(fx->static_id), "%s", it.id);
    atls_inventory_item_free(&it);

    /* one level of 30 days: the managed certificate (10.5 days left) is expiring */
    memset(&nc, 0, sizeof(nc));
    nc.warn.level[0] = 30L * 86400;
    nc.warn.n = 1;
    assert_int_equal(atls_store_save_notify_conf(fx->st, &nc, err, sizeof(err)), ATLS_STORE_OK);

    assert_int_equal(atls_store_counter_add(fx->st, "events.renewed", 2, err, sizeof(err)), 0);
    assert_int_equal(atls_store_counter_add(fx->st, "events.expiring", 1, err, sizeof(err)), 0);
    assert_int_equal(atls_store_counter_add(fx->st, "orders.failed", 4, err, sizeof(err)), 0);
    free(pem);
    X509_free(x);
    EVP_PKEY_free(key);
}

static json_t *
find_finding(json_t *findings, const char *name)
{
    return find_by(findings, "finding", name);
}

static void
test_json_static_findings_counters(void **state)
{
    fx_t        *fx = *state;
    json_error_t jerr;
    json_t      *root, *arr, *c, *st, *fs, *f;
    char        *out;
    size_t       i;

    add_static_and_counters(fx);
    out = atls_status_json(fx->st, fx->now);
    assert_non_null(out);
    root = json_loads(out, 0, &jerr);
    assert_non_null(root);

    /* managed: source and findings from meta (10.5 days left < 30d level;
     * fx->now is before the leaf's notBefore) */
    arr = json_object_get(root, "certificates");
    json_array_foreach(arr, i, c) {
        assert_string_equal(json_string_value(json_object_get(c, "source")), "managed");
    }
    c = find_cert(arr, "valid.example");
    fs = json_object_get(c, "findings");
    f = find_finding(fs, "expiring");
    assert_non_null(f);
    assert_string_equal(json_string_value(json_object_get(f, "severity")), "warning");
    assert_string_equal(json_string_value(json_object_get(f, "key_type")), "ec256");
    assert_non_null(find_finding(fs, "not-yet-valid"));
    assert_null(find_finding(fs, "name-mismatch"));

    /* static: its own array, every finding of its file */
    arr = json_object_get(root, "static");
    assert_int_equal(json_array_size(arr), 1);
    st = json_array_get(arr, 0);
    assert_string_equal(json_string_value(json_object_get(st, "source")), "static");
    assert_string_equal(json_string_value(json_object_get(st, "id")), fx->static_id);
    assert_string_equal(json_string_value(json_object_get(st, "server")), "nginx");
    fs = json_object_get(st, "findings");
    assert_non_null(find_finding(fs, "expired"));
    assert_non_null(find_finding(fs, "weak-key"));
    f = find_finding(fs, "name-mismatch");
    assert_non_null(f);
    assert_string_equal(json_string_value(json_object_get(f, "detail")),
                        "other.example not covered");
    assert_null(find_finding(fs, "incomplete-chain"));   /* self-signed */
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "key"), "bits")),
                     1024);

    assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "counters"),
                                                        "events.renewed")), 2);
    json_decref(root);
    free(out);
}

static void
test_prometheus_static_findings_counters(void **state)
{
    fx_t *fx = *state;
    char *out, line[512];

    add_static_and_counters(fx);
    out = atls_status_prometheus(fx->st, fx->now);
    assert_non_null(out);
    snprintf(line, sizeof(line), "\nautotls_certificate_not_after_seconds{id=\"%s\","
             "name=\"static.example\",source=\"static\",key_type=\"rsa1024\"} ", fx->static_id);
    assert_non_null(strstr(out, line));
    snprintf(line, sizeof(line), "\nautotls_certificate_findings{id=\"%s\",source=\"static\","
             "finding=\"expired\",severity=\"critical\"} 1\n", fx->static_id);
    assert_non_null(strstr(out, line));
    snprintf(line, sizeof(line), "\nautotls_certificate_findings{id=\"%s\",source=\"static\","
             "finding=\"weak-key\",severity=\"critical\"} 1\n", fx->static_id);
    assert_non_null(strstr(out, line));
    assert_non_null(strstr(out, "\nautotls_certificate_findings{id=\"valid.example\","
                                "source=\"managed\",finding=\"expiring\",severity=\"warning\"} 1\n"));
    assert_non_null(strstr(out, "# TYPE autotls_certificate_findings gauge\n"));
    assert_non_null(strstr(out, "\nautotls_certificate_renewal_failures{id=\"failed.example\","
                                "name=\"failed.example\",source=\"managed\"} 3\n"));
    assert_non_null(strstr(out, "# TYPE autotls_events_total counter\n"));
    assert_non_null(strstr(out, "\nautotls_events_total{event=\"renewed\"} 2\n"));
    assert_non_null(strstr(out, "\nautotls_events_total{event=\"expiring\"} 1\n"));
    assert_non_null(strstr(out, "# TYPE autotls_orders_total counter\n"));
    assert_non_null(strstr(out, "\nautotls_orders_total{result=\"ok\"} 0\n"));
    assert_non_null(strstr(out, "\nautotls_orders_total{result=\"failed\"} 4\n"));
    assert_non_null(strstr(out, "\nautotls_static_certificates_total 1\n"));
    /* every family has its HELP */
    assert_non_null(strstr(out, "# HELP autotls_certificate_renewal_failures "));
    assert_non_null(strstr(out, "# HELP autotls_events_total "));
    assert_non_null(strstr(out, "# HELP autotls_orders_total "));
    free(out);
}

/* The query of a status page: each parameter parsed and checked, a bad
 * value refused with its parameter's name (the host's 400), others left. */
static void
test_query_parse(void **state)
{
    static const struct {
        const char *args, *param;
    } bad[] = {
        { "limit=0", "limit:" },
        { "limit=10001", "limit:" },
        { "limit=abc", "limit:" },
        { "limit=", "limit:" },
        { "offset=-1", "offset:" },
        { "offset=1x", "offset:" },
        { "state=broken", "state:" },
        { "name=a/b", "name:" },
        { "name=", "name:" },
        { "name=a%2", "name:" },
        { "name=a%00b", "name:" },
    };
    atls_status_query_t q;
    char                err[256];
    const char         *a = "format=prometheus&name=WWW.Valid.example&state=failed"
                            "&limit=2&offset=1&other";
    size_t              i;

    (void) state;
    assert_int_equal(atls_status_query_parse(a, strlen(a), 100, &q, err, sizeof(err)), 0);
    assert_string_equal(q.name, "www.valid.example");
    assert_string_equal(q.state, "failed");
    assert_int_equal(q.limit, 2);
    assert_int_equal(q.offset, 1);
    assert_int_equal(atls_status_query_parse(NULL, 0, 100, &q, err, sizeof(err)), 0);
    assert_int_equal(q.limit, 100);
    assert_string_equal(q.name, "");
    assert_int_equal(atls_status_query_parse("name=%2A.x.example", 18, 0, &q, err,
                                             sizeof(err)), 0);
    assert_string_equal(q.name, "*.x.example");
    assert_int_equal(q.limit, 0);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(atls_status_query_parse(bad[i].args, strlen(bad[i].args), 100, &q,
                                                 err, sizeof(err)), -1);
        if (strncmp(err, bad[i].param, strlen(bad[i].param)) != 0) {
            fail_msg("%s: \"%s\" does not name %s", bad[i].args, err, bad[i].param);
        }
    }
}

static json_t *
json_query(fx_t *fx, const char *args)
{
    atls_status_query_t q;
    json_error_t        jerr;
    json_t             *root;
    char                err[256], *out;

    assert_int_equal(atls_status_query_parse(args, strlen(args), ATLS_STATUS_LIMIT_DEFAULT,
                                             &q, err, sizeof(err)), 0);
    out = atls_status_json_query(fx->st, fx->now, NULL, &q);
    assert_non_null(out);
    root = json_loads(out, 0, &jerr);
    assert_non_null(root);
    free(out);
    return root;
}

/* Filters and pages: the total counts the matches, the page is a slice of
 * them in id order. */
static void
test_json_query(void **state)
{
    fx_t   *fx = *state;
    json_t *root, *certs;

    root = json_query(fx, "");
    assert_int_equal(json_integer_value(json_object_get(root, "total")), 3);
    assert_int_equal(json_integer_value(json_object_get(root, "limit")),
                     ATLS_STATUS_LIMIT_DEFAULT);
    assert_int_equal(json_array_size(json_object_get(root, "certificates")), 3);
    json_decref(root);

    root = json_query(fx, "state=failed");
    certs = json_object_get(root, "certificates");
    assert_int_equal(json_integer_value(json_object_get(root, "total")), 1);
    assert_int_equal(json_array_size(certs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(certs, 0), "id")),
                        "failed.example");
    json_decref(root);

    root = json_query(fx, "name=VALID.example");
    certs = json_object_get(root, "certificates");
    assert_int_equal(json_integer_value(json_object_get(root, "total")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(certs, 0), "id")),
                        "valid.example");
    /* the leaf was read for the page: its serial is there */
    assert_non_null(json_object_get(json_array_get(json_object_get(json_array_get(certs, 0),
                                                                   "keys"), 0), "serial"));
    json_decref(root);

    root = json_query(fx, "name=other.example");
    assert_int_equal(json_integer_value(json_object_get(root, "total")), 0);
    assert_int_equal(json_array_size(json_object_get(root, "certificates")), 0);
    json_decref(root);

    root = json_query(fx, "limit=1&offset=1");
    certs = json_object_get(root, "certificates");
    assert_int_equal(json_integer_value(json_object_get(root, "total")), 3);
    assert_int_equal(json_integer_value(json_object_get(root, "offset")), 1);
    assert_int_equal(json_array_size(certs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(certs, 0), "id")),
                        "valid.example");
    json_decref(root);

    /* a filter and a page of its matches; past the end, an empty page */
    root = json_query(fx, "state=pending&limit=1&offset=0");
    certs = json_object_get(root, "certificates");
    assert_int_equal(json_integer_value(json_object_get(root, "total")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(certs, 0), "id")),
                        "we\"ird\\x.example");
    json_decref(root);
    root = json_query(fx, "offset=3");
    assert_int_equal(json_integer_value(json_object_get(root, "total")), 3);
    assert_int_equal(json_array_size(json_object_get(root, "certificates")), 0);
    json_decref(root);
}

/* Prometheus takes the same filters: the page's series only, the store's
 * total and the matches counted apart. */
static void
test_prometheus_query(void **state)
{
    fx_t               *fx = *state;
    atls_status_query_t q;
    char                err[256], *out;

    assert_int_equal(atls_status_query_parse("state=failed", 12, 0, &q, err, sizeof(err)), 0);
    out = atls_status_prometheus_query(fx->st, fx->now, NULL, &q);
    assert_non_null(out);
    assert_non_null(strstr(out, "\nautotls_certificates_total 3\n"));
    assert_non_null(strstr(out, "\nautotls_certificates_selected 1\n"));
    assert_non_null(strstr(out, "\nautotls_certificate_failures{id=\"failed.example\"} 3\n"));
    assert_null(strstr(out, "{id=\"valid.example\""));
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json, setup, teardown),
        cmocka_unit_test(test_query_parse),
        cmocka_unit_test_setup_teardown(test_json_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prometheus_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_corrupt_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prometheus, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_garbage_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extra_gauges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_static_findings_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prometheus_static_findings_counters, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
