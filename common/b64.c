/*
 * base64url without padding (RFC 4648 §5) on top of OpenSSL's standard
 * base64 block codec: only the alphabet mapping and the padding are ours.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include "atls_b64.h"

static int
b64url_char_ok(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

char *
atls_b64url_encode(const unsigned char *data, size_t len)
{
    size_t  cap, i, out;
    char   *s;
    int     n;

    /* EVP_EncodeBlock takes an int length. */
    if (len > (size_t) INT_MAX / 4 * 3 - 3) {
        return NULL;
    }
    cap = (len + 2) / 3 * 4 + 1;
    s = malloc(cap);
    if (s == NULL) {
        return NULL;
    }
    if (len == 0) {
        s[0] = '\0';
        return s;
    }
    n = EVP_EncodeBlock((unsigned char *) s, data, (int) len);
    if (n < 0) {
        free(s);
        return NULL;
    }

    for (i = 0, out = 0; i < (size_t) n; i++) {
        switch (s[i]) {
        case '+':
            s[out++] = '-';
            break;
        case '/':
            s[out++] = '_';
            break;
        case '=':
            break;
        default:
            s[out++] = s[i];
        }
    }
    s[out] = '\0';
    return s;
}

unsigned char *
atls_b64url_decode(const char *s, size_t slen, size_t *out_len)
{
    unsigned char *std, *out;
    size_t         i, pad, padded;
    int            n;

    if (out_len != NULL) {
        *out_len = 0;
    }
    if (s == NULL || slen % 4 == 1 || slen > (size_t) INT_MAX - 4) {
        return NULL;
    }
    /* Validate first: EVP_DecodeBlock silently trims whitespace and would
     * accept the standard alphabet and '=' padding, none of which belong
     * in base64url. */
    for (i = 0; i < slen; i++) {
        if (!b64url_char_ok((unsigned char) s[i])) {
            return NULL;
        }
    }

    pad = (4 - slen % 4) % 4;
    padded = slen + pad;
    std = malloc(padded + 1);
    out = malloc(padded / 4 * 3 + 1);
    if (std == NULL || out == NULL) {
        free(std);
        free(out);
        return NULL;
    }
    for (i = 0; i < slen; i++) {
        std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : (unsigned char) s[i];
    }
    for (i = slen; i < padded; i++) {
        std[i] = '=';
    }
    std[padded] = '\0';

    if (padded == 0) {
        n = 0;
    } else {
        n = EVP_DecodeBlock(out, std, (int) padded);
    }
    free(std);
    if (n < 0 || (size_t) n < pad) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the bytes the '=' stood for; drop them. */
    n -= (int) pad;
    out[n] = '\0';
    if (out_len != NULL) {
        *out_len = (size_t) n;
    }
    return out;
}

int
atls_b64url_is_token(const char *s, size_t len)
{
    size_t i;

    if (s == NULL || len == 0) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (!b64url_char_ok((unsigned char) s[i])) {
            return 0;
        }
    }
    return 1;
}
