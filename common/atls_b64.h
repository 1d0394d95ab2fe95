/* base64url without padding (RFC 4648 §5), as ACME and JOSE use it. */
#ifndef ATLS_B64_H
#define ATLS_B64_H

#include <stddef.h>

/* Returns a malloc'd NUL-terminated string. */
char *atls_b64url_encode(const unsigned char *data, size_t len);

/* Returns malloc'd bytes (NUL-terminated for convenience), or NULL on any
 * character outside the base64url alphabet or an impossible length. */
unsigned char *atls_b64url_decode(const char *s, size_t slen, size_t *out_len);

/* 1 when s[0..len) is non-empty and only [A-Za-z0-9_-]; used to check ACME
 * challenge tokens before they touch a path or a lookup. */
int atls_b64url_is_token(const char *s, size_t len);

#endif
