/*
 * Stapling on the handshake path, for every host.
 *
 * A host's per-worker (nginx) or per-child (Apache) cache parses a
 * certificate once per generation.  At that moment it also loads the
 * stored OCSP response, verifies it once, and attaches it to the parsed
 * leaf (X509 ex_data, freed with the leaf).  The host's status callback
 * then calls atls_staple_serve(): a pointer lookup, a time compare and one
 * copy of the DER, which OpenSSL takes ownership of.  No disk, no lock, no
 * parse per handshake.  A new response bumps the certificate's generation,
 * so the next handshake after the reload staples it.
 */
#ifndef ATLS_STAPLE_H
#define ATLS_STAPLE_H

#include <stddef.h>
#include <time.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "atls_crypto.h"
#include "atls_store.h"

/*
 * Marks leaf (issued by issuer) as stapled by autotls and attaches the
 * stored response for certificate id, key type kt, when there is one that
 * verifies for this leaf at now (atls_ocsp_verify) and answers "good".
 * Call before the leaf is published to the handshake path; a leaf that is
 * marked keeps the mark (and nothing to staple) when the response is
 * missing or refused.
 * 1 attached; 0 nothing to staple (err says why when a stored response was
 * refused, else is empty); -1 on a store error or no memory (err).
 */
int atls_staple_load(atls_store_t *st, const char *id, atls_key_type_t kt, X509 *leaf,
                     X509 *issuer, time_t now, char *err, size_t errlen);

/* The same with the DER in hand (tests, other hosts). */
int atls_staple_attach(X509 *leaf, X509 *issuer, const unsigned char *der, size_t len,
                       time_t now, char *err, size_t errlen);

/* When the response attached to leaf stops being stapled (its
 * atls_ocsp_valid_until); 0 when there is none. */
time_t atls_staple_valid_until(X509 *leaf);

/*
 * The body of a host's SSL_CTX_set_tlsext_status_cb callback.  Looks at
 * the certificate OpenSSL chose for this handshake (SSL_get_certificate):
 *    1  it is ours and has a response valid at now: set on ssl with
 *       SSL_set_tlsext_status_ocsp_resp (return SSL_TLSEXT_ERR_OK);
 *    0  it is ours with nothing to staple (none, or past its validity):
 *       return SSL_TLSEXT_ERR_NOACK;
 *   -1  it is not a leaf autotls marked: another callback (nginx's own
 *       ssl_stapling for a static certificate on the same context) may
 *       answer.
 */
int atls_staple_serve(SSL *ssl, time_t now);

#endif
