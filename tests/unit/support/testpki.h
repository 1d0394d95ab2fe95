/*
 * A throw-away PKI for unit tests, built with plain OpenSSL calls (not the
 * code under test) so chain, store and TLS tests can check the core against
 * certificates it did not make.
 */
#ifndef TESTPKI_H
#define TESTPKI_H

#include <stddef.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include "atls_crypto.h"

#define TESTPKI_ROOT_CN  "autotls Test Root CA"
#define TESTPKI_INTER_CN "autotls Test Intermediate CA"

/* root -> intermediate -> leaf; every member owned by the struct. */
typedef struct {
    EVP_PKEY *root_key;
    EVP_PKEY *inter_key;
    EVP_PKEY *leaf_key;
    X509     *root;
    X509     *inter;
    X509     *leaf;
} testpki_chain_t;

/* A new private key: "EC" P-256 when bits == 0, else RSA of that size. */
EVP_PKEY *testpki_key(int rsa_bits);

/* Certificate for key's public half: subject CN = cn (NULL: no CN), SANs =
 * names (IPv4/IPv6 literals as iPAddress, the rest dNSName; n may be 0),
 * valid from now+nb_off to now+na_off seconds, random serial, SHA-256.
 * issuer/issuer_key NULL => self-signed with key.  is_ca adds critical
 * basicConstraints CA:TRUE and keyCertSign.  NULL on failure. */
X509 *testpki_cert(EVP_PKEY *key, const char *cn, const char *const *names,
                   size_t n, X509 *issuer, EVP_PKEY *issuer_key, int is_ca,
                   long nb_off, long na_off);

/* Adds the extension nid with value in openssl.cnf syntax (e.g.
 * "critical,CA:TRUE", "OCSP;URI:http://x/") to x, issued by issuer (NULL:
 * self-signed).  x must be signed again afterwards.  0 or -1. */
int testpki_ext(X509 *x, X509 *issuer, int nid, const char *value);

/* Fills c with a root (CN TESTPKI_ROOT_CN), an intermediate (CN
 * TESTPKI_INTER_CN) and a leaf for names[0..n) (CN names[0]) with a fresh
 * key of leaf_type, valid for one day from an hour ago.  0 or -1. */
int testpki_chain_make(testpki_chain_t *c, const char *const *names, size_t n,
                       atls_key_type_t leaf_type);
void testpki_chain_free(testpki_chain_t *c);

/* Concatenated PEM of certs[0..n) in that order (malloc'd). */
char *testpki_pem(X509 *const *certs, size_t n);

/* Unencrypted PKCS#8 PEM of key (malloc'd). */
char *testpki_key_pem(EVP_PKEY *key);

#endif
