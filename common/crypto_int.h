/* Helpers shared by the crypto_*.c files only; not part of the public API. */
#ifndef ATLS_CRYPTO_INT_H
#define ATLS_CRYPTO_INT_H

#include <openssl/x509v3.h>
#include "atls_crypto.h"

/* subjectAltName entries for names: an IPv4/IPv6 literal becomes an
 * iPAddress, anything else a dNSName.  NULL on an empty name or OOM. */
GENERAL_NAMES *atls_crypto_san_build(const char *const *names, size_t n);

/* An ASN.1 UTCTime or GeneralizedTime as seconds since the epoch (UTC).
 * 0, or -1 when t is NULL or malformed. */
int atls_crypto_time(const ASN1_TIME *t, time_t *out);

/* Writes msg into err (when given) and clears OpenSSL's error queue so a
 * stale error never leaks into an unrelated later failure. */
void atls_crypto_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
