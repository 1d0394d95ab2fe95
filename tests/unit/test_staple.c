/* Stapling on the handshake path: a verified response attached to the
 * leaf is what a real SSL object of a server context gets, only while it
 * is valid, and only for leaves autotls marked. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <openssl/ssl.h>
#include "atls_ocsp.h"
#include "atls_staple.h"
#include "support/ocsppki.h"
#include "support/tmptree.h"

static ocsppki_t pki;
static SSL_CTX  *ctx;
static time_t    now;

static int
setup(void **state)
{
    now = time(NULL);
    ctx = SSL_CTX_new(TLS_server_method());
    return ctx != NULL && ocsppki_make(&pki) == 0 ? 0 : -1;
}

static int
teardown(void **state)
{
    SSL_CTX_free(ctx);
    ocsppki_free(&pki);
    return 0;
}

/* A fresh leaf, and an SSL object of the server context that would serve
 * it (what SSL_get_certificate gives in a status callback). */
static SSL *
ssl_for(X509 *leaf)
{
    SSL *ssl = SSL_new(ctx);

    assert_non_null(ssl);
    if (leaf != NULL) {
        assert_int_equal(SSL_use_certificate(ssl, leaf), 1);
    }
    return ssl;
}

static unsigned char *
response(X509 *leaf, const ocsppki_resp_t *o, size_t *len)
{
    unsigned char *der = ocsppki_response(&pki, leaf, o, len);

    assert_non_null(der);
    return der;
}

/* What the handshake would carry: the response set on ssl, or 0 bytes. */
static long
stapled(SSL *ssl, const unsigned char **out)
{
    unsigned char *p = NULL;
    long           len;

    len = SSL_get_tlsext_status_ocsp_resp(ssl, &p);
    *out = p;
    return p != NULL ? len : 0;
}

static void
test_staple_good(void **state)
{
    ocsppki_resp_t       o;
    X509                *leaf;
    SSL                 *ssl;
    unsigned char       *der;
    const unsigned char *got;
    size_t               len;
    char                 err[256];

    leaf = ocsppki_leaf(&pki, "s.test", "http://127.0.0.1:9/", NULL, 0);
    assert_non_null(leaf);
    ocsppki_resp_defaults(&o, now);
    der = response(leaf, &o, &len);
    assert_int_equal(atls_staple_attach(leaf, pki.ca, der, len, now, err, sizeof(err)), 1);
    assert_string_equal(err, "");
    assert_int_equal(atls_staple_valid_until(leaf), o.next_update);

    ssl = ssl_for(leaf);
    assert_int_equal(atls_staple_serve(ssl, now), 1);
    assert_int_equal(stapled(ssl, &got), (long) len);
    assert_memory_equal(got, der, len);
    /* served again (a second handshake): a fresh copy, same bytes */
    assert_int_equal(atls_staple_serve(ssl, now + 60), 1);
    assert_int_equal(stapled(ssl, &got), (long) len);
    assert_memory_equal(got, der, len);
    SSL_free(ssl);

    /* the leaf's last second of validity, and past it */
    ssl = ssl_for(leaf);
    assert_int_equal(atls_staple_serve(ssl, o.next_update - 1), 1);
    SSL_free(ssl);
    ssl = ssl_for(leaf);
    assert_int_equal(atls_staple_serve(ssl, o.next_update), 0);
    assert_int_equal(stapled(ssl, &got), 0);
    SSL_free(ssl);

    free(der);
    X509_free(leaf);        /* frees the attached response (ASan watches) */
}

static void
test_staple_refused_keeps_mark(void **state)
{
    static const struct {
        ocsppki_signer_t signer;
        int              status;
        const char      *why;
    } cases[] = {
        { OCSPPKI_BY_CA, V_OCSP_CERTSTATUS_REVOKED, "revoked" },
        { OCSPPKI_BY_CA, V_OCSP_CERTSTATUS_UNKNOWN, "unknown" },
        { OCSPPKI_BY_OTHER, V_OCSP_CERTSTATUS_GOOD, "signature" },
        { OCSPPKI_BY_RESPONDER_NOEKU, V_OCSP_CERTSTATUS_GOOD, "OCSPSigning" },
    };
    ocsppki_resp_t       o;
    X509                *leaf;
    SSL                 *ssl;
    unsigned char       *der;
    const unsigned char *got;
    size_t               len, i;
    char                 err[256];

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        leaf = ocsppki_leaf(&pki, "r.test", "http://127.0.0.1:9/", NULL, 0);
        assert_non_null(leaf);
        ocsppki_resp_defaults(&o, now);
        o.signer = cases[i].signer;
        o.status = cases[i].status;
        o.revoked_at = now - 60;
        der = response(leaf, &o, &len);
        assert_int_equal(atls_staple_attach(leaf, pki.ca, der, len, now, err,
                                            sizeof(err)), 0);
        if (strstr(err, cases[i].why) == NULL) {
            fail_msg("case %zu: err \"%s\" lacks \"%s\"", i, err, cases[i].why);
        }
        assert_int_equal(atls_staple_valid_until(leaf), 0);
        ssl = ssl_for(leaf);
        assert_int_equal(atls_staple_serve(ssl, now), 0);      /* ours, nothing */
        assert_int_equal(stapled(ssl, &got), 0);
        SSL_free(ssl);
        free(der);
        X509_free(leaf);
    }
}

static void
test_staple_none_and_replace(void **state)
{
    ocsppki_resp_t o;
    X509          *leaf;
    SSL           *ssl;
    unsigned char *der;
    size_t         len;
    char           err[256];

    leaf = ocsppki_leaf(&pki, "n.test", "http://127.0.0.1:9/", NULL, 0);
    assert_non_null(leaf);
    /* marked with nothing to staple, err empty */
    strcpy(err, "stale");
    assert_int_equal(atls_staple_attach(leaf, pki.ca, NULL, 0, now, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    ssl = ssl_for(leaf);
    assert_int_equal(atls_staple_serve(ssl, now), 0);
    SSL_free(ssl);

    /* a later attach (the next generation's load) replaces the holder */
    ocsppki_resp_defaults(&o, now);
    o.next_update = 0;                  /* valid for ATLS_OCSP_NO_NEXT_S */
    der = response(leaf, &o, &len);
    assert_int_equal(atls_staple_attach(leaf, pki.ca, der, len, now, err, sizeof(err)), 1);
    assert_int_equal(atls_staple_valid_until(leaf), o.this_update + ATLS_OCSP_NO_NEXT_S);
    ssl = ssl_for(leaf);
    assert_int_equal(atls_staple_serve(ssl, now), 1);
    SSL_free(ssl);
    /* and back to nothing */
    assert_int_equal(atls_staple_attach(leaf, pki.ca, NULL, 0, now, err, sizeof(err)), 0);
    ssl = ssl_for(leaf);
    assert_int_equal(atls_staple_serve(ssl, now), 0);
    SSL_free(ssl);
    free(der);
    X509_free(leaf);
}

static void
test_staple_not_ours(void **state)
{
    X509 *leaf;
    SSL  *ssl;
    char  err[64];

    /* a certificate autotls never marked: another callback may answer */
    leaf = ocsppki_leaf(&pki, "static.test", "http://127.0.0.1:9/", NULL, 0);
    assert_non_null(leaf);
    ssl = ssl_for(leaf);
    assert_int_equal(atls_staple_serve(ssl, now), -1);
    assert_int_equal(atls_staple_valid_until(leaf), 0);
    SSL_free(ssl);
    /* no certificate chosen at all */
    ssl = ssl_for(NULL);
    assert_int_equal(atls_staple_serve(ssl, now), -1);
    SSL_free(ssl);
    assert_int_equal(atls_staple_serve(NULL, now), -1);
    assert_int_equal(atls_staple_attach(NULL, pki.ca, NULL, 0, now, err, sizeof(err)), -1);
    assert_int_equal(atls_staple_valid_until(NULL), 0);
    X509_free(leaf);
}

/* Through the store, as a host's cache does at each generation. */
static void
test_staple_load_from_store(void **state)
{
    ocsppki_resp_t       o;
    atls_store_t        *st;
    X509                *leaf;
    SSL                 *ssl;
    unsigned char       *der;
    const unsigned char *got;
    size_t               len;
    char                 dir[64], root[96], err[256];

    snprintf(dir, sizeof(dir), "/tmp/atls-staple-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(root, sizeof(root), "%s/store", dir);
    st = atls_store_fs_open(root, err, sizeof(err));
    assert_non_null(st);
    leaf = ocsppki_leaf(&pki, "l.test", "http://127.0.0.1:9/", NULL, 0);
    assert_non_null(leaf);

    /* nothing stored yet: marked, nothing to staple, no complaint */
    strcpy(err, "stale");
    assert_int_equal(atls_staple_load(st, "l.test", ATLS_KEY_EC256, leaf, pki.ca, now,
                                      err, sizeof(err)), 0);
    assert_string_equal(err, "");
    ssl = ssl_for(leaf);
    assert_int_equal(atls_staple_serve(ssl, now), 0);
    SSL_free(ssl);

    /* a good response stored by the scheduler: stapled as stored */
    ocsppki_resp_defaults(&o, now);
    der = response(leaf, &o, &len);
    assert_int_equal(atls_store_save_ocsp(st, "l.test", ATLS_KEY_EC256, der, len, err,
                                          sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_staple_load(st, "l.test", ATLS_KEY_EC256, leaf, pki.ca, now,
                                      err, sizeof(err)), 1);
    ssl = ssl_for(leaf);
    assert_int_equal(atls_staple_serve(ssl, now), 1);
    assert_int_equal(stapled(ssl, &got), (long) len);
    assert_memory_equal(got, der, len);
    SSL_free(ssl);
    free(der);

    /* a planted response signed by someone else is refused, reason said */
    o.signer = OCSPPKI_BY_OTHER;
    der = response(leaf, &o, &len);
    assert_int_equal(atls_store_save_ocsp(st, "l.test", ATLS_KEY_EC256, der, len, err,
                                          sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_staple_load(st, "l.test", ATLS_KEY_EC256, leaf, pki.ca, now,
                                      err, sizeof(err)), 0);
    assert_non_null(strstr(err, "signature"));
    assert_int_equal(atls_staple_valid_until(leaf), 0);
    free(der);

    /* a store error: -1, and the leaf stays ours with nothing to staple */
    assert_int_equal(atls_staple_load(st, "../x", ATLS_KEY_EC256, leaf, pki.ca, now,
                                      err, sizeof(err)), -1);
    assert_true(err[0] != '\0');
    ssl = ssl_for(leaf);
    assert_int_equal(atls_staple_serve(ssl, now), 0);
    SSL_free(ssl);

    X509_free(leaf);
    atls_store_close(st);
    tmptree_rm(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_staple_good),
        cmocka_unit_test(test_staple_refused_keeps_mark),
        cmocka_unit_test(test_staple_none_and_replace),
        cmocka_unit_test(test_staple_not_ours),
        cmocka_unit_test(test_staple_load_from_store),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
