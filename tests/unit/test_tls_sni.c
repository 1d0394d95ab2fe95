/* The server name of a peeked ClientHello (atls_tls_sni.h), on real
 * ClientHellos written by OpenSSL, cut, re-fragmented and corrupted. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/ssl.h>
#include <openssl/rand.h>
#include "atls_tls_sni.h"

static unsigned char scratch[ATLS_SNI_MAX_HELLO];

/* The first flight of an OpenSSL client (sni NULL: none), into out. */
static size_t
client_hello(const char *sni, unsigned char *out, size_t outlen)
{
    SSL_CTX *ctx;
    SSL     *ssl;
    BIO     *rb, *wb;
    int      n;

    ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    ssl = SSL_new(ctx);
    assert_non_null(ssl);
    rb = BIO_new(BIO_s_mem());
    wb = BIO_new(BIO_s_mem());
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    if (sni != NULL) {
        assert_int_equal(SSL_set_tlsext_host_name(ssl, sni), 1);
    }
    assert_true(SSL_do_handshake(ssl) <= 0);
    n = BIO_read(wb, out, (int) outlen);
    assert_true(n > 0);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return (size_t) n;
}

static atls_sni_result_t
parse(const unsigned char *b, size_t len, char *name, size_t namelen)
{
    const unsigned char *p;
    size_t               n;
    atls_sni_result_t    rc;

    rc = atls_tls_sni(b, len, scratch, &p, &n);
    name[0] = '\0';
    if (rc == ATLS_SNI_FOUND) {
        assert_non_null(p);
        assert_true(p >= scratch && p + n <= scratch + sizeof(scratch));
        assert_true(n < namelen);
        memcpy(name, p, n);
        name[n] = '\0';
    }
    return rc;
}

static void
test_real_hello(void **state)
{
    unsigned char b[4096];
    char          name[300];
    size_t        len;

    len = client_hello("shop.example.com", b, sizeof(b));
    assert_int_equal(parse(b, len, name, sizeof(name)), ATLS_SNI_FOUND);
    assert_string_equal(name, "shop.example.com");

    len = client_hello(NULL, b, sizeof(b));
    assert_int_equal(parse(b, len, name, sizeof(name)), ATLS_SNI_NONE);
}

/* every prefix of a hello asks for more, never for a verdict */
static void
test_every_prefix_wants_more(void **state)
{
    unsigned char b[4096];
    char          name[300];
    size_t        len, i;

    len = client_hello("a.example.org", b, sizeof(b));
    for (i = 0; i < len; i++) {
        assert_int_equal(parse(b, i, name, sizeof(name)), ATLS_SNI_MORE);
    }
    assert_int_equal(parse(b, len, name, sizeof(name)), ATLS_SNI_FOUND);
}

/* the same handshake message cut into records of size bytes each */
static size_t
refragment(const unsigned char *in, size_t len, size_t size, unsigned char *out)
{
    size_t msg = len - 5, off = 0, o = 0, n;

    while (off < msg) {
        n = msg - off < size ? msg - off : size;
        out[o++] = 22;
        out[o++] = 3;
        out[o++] = 1;
        out[o++] = (unsigned char) (n >> 8);
        out[o++] = (unsigned char) n;
        memcpy(out + o, in + 5 + off, n);
        o += n;
        off += n;
    }
    return o;
}

static void
test_fragmented_records(void **state)
{
    unsigned char b[4096], f[4096 * 6];
    char          name[300];
    size_t        len, flen, size, i;

    len = client_hello("frag.example.net", b, sizeof(b));
    for (size = 1; size < 300; size += 37) {
        flen = refragment(b, len, size, f);
        assert_int_equal(parse(f, flen, name, sizeof(name)), ATLS_SNI_FOUND);
        assert_string_equal(name, "frag.example.net");
        for (i = 0; i < flen; i += 7) {
            assert_int_equal(parse(f, i, name, sizeof(name)), ATLS_SNI_MORE);
        }
    }
}

static void
test_not_tls(void **state)
{
    static const char *http = "GET / HTTP/1.1\r\nHost: x.example\r\n\r\n";
    unsigned char      b[4096];
    char               name[300];
    size_t             len;

    assert_int_equal(parse((const unsigned char *) http, strlen(http), name, sizeof(name)),
                     ATLS_SNI_NOT_TLS);
    /* one byte tells: not a handshake record */
    assert_int_equal(parse((const unsigned char *) "G", 1, name, sizeof(name)),
                     ATLS_SNI_NOT_TLS);
    assert_int_equal(parse(NULL, 0, name, sizeof(name)), ATLS_SNI_MORE);

    len = client_hello("x.example.com", b, sizeof(b));
    b[5] = 2;                                 /* ServerHello, not ClientHello */
    assert_int_equal(parse(b, len, name, sizeof(name)), ATLS_SNI_NOT_TLS);

    len = client_hello("x.example.com", b, sizeof(b));
    b[6] = 0x7f;                              /* a hello longer than the bound */
    assert_int_equal(parse(b, len, name, sizeof(name)), ATLS_SNI_NOT_TLS);

    len = client_hello("x.example.com", b, sizeof(b));
    b[3] = 0;
    b[4] = 0;                                 /* an empty record */
    assert_int_equal(parse(b, len, name, sizeof(name)), ATLS_SNI_NOT_TLS);
}

/* any corrupted byte of a hello: an answer, never a read outside it */
static void
test_corrupted_bytes(void **state)
{
    unsigned char  b[4096], *c;
    char           name[300];
    size_t         len, i;
    unsigned char  v;

    len = client_hello("corrupt.example.com", b, sizeof(b));
    for (i = 0; i < len; i++) {
        for (v = 0; v < 8; v++) {
            /* a copy of exactly len bytes, so ASan sees any overread */
            c = malloc(len);
            assert_non_null(c);
            memcpy(c, b, len);
            c[i] = (unsigned char) (c[i] ^ (1u << v));
            (void) parse(c, len, name, sizeof(name));
            free(c);
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_hello),
        cmocka_unit_test(test_every_prefix_wants_more),
        cmocka_unit_test(test_fragmented_records),
        cmocka_unit_test(test_not_tls),
        cmocka_unit_test(test_corrupted_bytes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
