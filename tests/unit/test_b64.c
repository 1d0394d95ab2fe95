/* base64url (RFC 4648 §5, no padding). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/rand.h>
#include "atls_b64.h"

/* RFC 4648 §10 vectors: the alphabet-independent part. */
static const struct {
    const char *plain;
    const char *enc;
} rfc_vectors[] = {
    { "", "" },
    { "f", "Zg" },
    { "fo", "Zm8" },
    { "foo", "Zm9v" },
    { "foob", "Zm9vYg" },
    { "fooba", "Zm9vYmE" },
    { "foobar", "Zm9vYmFy" },
};

static void
test_rfc4648_vectors(void **state)
{
    size_t         i, len;
    char          *enc;
    unsigned char *dec;

    for (i = 0; i < sizeof(rfc_vectors) / sizeof(rfc_vectors[0]); i++) {
        enc = atls_b64url_encode((const unsigned char *) rfc_vectors[i].plain,
                                 strlen(rfc_vectors[i].plain));
        assert_non_null(enc);
        assert_string_equal(enc, rfc_vectors[i].enc);
        free(enc);

        dec = atls_b64url_decode(rfc_vectors[i].enc, strlen(rfc_vectors[i].enc), &len);
        assert_non_null(dec);
        assert_int_equal(len, strlen(rfc_vectors[i].plain));
        assert_memory_equal(dec, rfc_vectors[i].plain, len);
        assert_int_equal(dec[len], '\0');
        free(dec);
    }
}

/* The bytes whose standard encoding uses '+' and '/' must come out as
 * '-' and '_' (RFC 4648 §5 table). */
static void
test_url_alphabet(void **state)
{
    const unsigned char bytes[] = { 0xfb, 0xff, 0xbf, 0xfe };
    char               *enc;
    unsigned char      *dec;
    size_t              len;

    enc = atls_b64url_encode(bytes, 3);
    assert_string_equal(enc, "-_-_");
    free(enc);

    enc = atls_b64url_encode(bytes, 4);
    /* standard: "+/+//g==" */
    assert_string_equal(enc, "-_-__g");
    dec = atls_b64url_decode(enc, strlen(enc), &len);
    assert_non_null(dec);
    assert_int_equal(len, 4);
    assert_memory_equal(dec, bytes, 4);
    free(dec);
    free(enc);
}

static void
test_round_trip_random(void **state)
{
    unsigned char  buf[300], *dec;
    size_t         n, len;
    char          *enc;

    for (n = 0; n < sizeof(buf); n++) {
        assert_int_equal(RAND_bytes(buf, (int) sizeof(buf)), 1);
        enc = atls_b64url_encode(buf, n);
        assert_non_null(enc);
        assert_int_equal(strlen(enc), (n * 4 + 2) / 3);
        assert_null(strchr(enc, '='));
        assert_null(strchr(enc, '+'));
        assert_null(strchr(enc, '/'));
        dec = atls_b64url_decode(enc, strlen(enc), &len);
        assert_non_null(dec);
        assert_int_equal(len, n);
        assert_memory_equal(dec, buf, n);
        free(dec);
        free(enc);
    }
}

static void
test_decode_rejects(void **state)
{
    static const char *const bad[] = {
        "Zm9v+g",       /* standard alphabet */
        "Zm9v/g",
        "Zg==",         /* padding is not base64url */
        "Zm 9v",        /* whitespace, which EVP_DecodeBlock would skip */
        "Zm9v\n",
        " Zm9v",
        "Zm9vY",        /* 5 chars: length % 4 == 1 is impossible */
        "Z",
        "Zm9v!",
        "Zm9v.Zg",
    };
    size_t i, len = 99;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(atls_b64url_decode(bad[i], strlen(bad[i]), &len));
        assert_int_equal(len, 0);
    }
    /* an embedded NUL inside the given length is a bad character too */
    assert_null(atls_b64url_decode("Zm\0v", 4, &len));
    assert_null(atls_b64url_decode(NULL, 0, &len));
}

static void
test_decode_uses_length_not_nul(void **state)
{
    unsigned char *dec;
    size_t         len;

    /* only the first 4 characters count */
    dec = atls_b64url_decode("Zm9vYmFy", 4, &len);
    assert_non_null(dec);
    assert_int_equal(len, 3);
    assert_memory_equal(dec, "foo", 3);
    free(dec);
}

static void
test_is_token(void **state)
{
    const char *tok = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";

    assert_true(atls_b64url_is_token(tok, strlen(tok)));
    assert_true(atls_b64url_is_token("a", 1));
    assert_false(atls_b64url_is_token("", 0));
    assert_false(atls_b64url_is_token(NULL, 0));
    assert_false(atls_b64url_is_token("../etc/passwd", 13));
    assert_false(atls_b64url_is_token("abc/def", 7));
    assert_false(atls_b64url_is_token("abc=", 4));
    assert_false(atls_b64url_is_token("abc def", 7));
    assert_false(atls_b64url_is_token("ab\0c", 4));
    /* the length bounds the check: a bad char past it does not count */
    assert_true(atls_b64url_is_token("abc/", 3));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_url_alphabet),
        cmocka_unit_test(test_round_trip_random),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_decode_uses_length_not_nul),
        cmocka_unit_test(test_is_token),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
