/*
 * Keys, CSRs, chains and certificate facts: OpenSSL 3 only.
 * Every function that can fail with an explanation takes (err, errlen)
 * and writes a one-line reason there.
 */
#ifndef ATLS_CRYPTO_H
#define ATLS_CRYPTO_H

#include <stddef.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

typedef enum {
    ATLS_KEY_EC256 = 0,     /* default */
    ATLS_KEY_EC384,
    ATLS_KEY_RSA2048,
    ATLS_KEY_RSA3072,
    ATLS_KEY_RSA4096,
    ATLS_KEY_UNKNOWN
} atls_key_type_t;

#define ATLS_KEY_TYPE_MAX 2     /* a certificate set holds at most 2 key types */

/* "ec256", "ec384", "rsa2048", "rsa3072", "rsa4096". */
const char *atls_key_type_name(atls_key_type_t t);
/* 0 and *out set, or -1 for an unknown name. */
int atls_key_type_parse(const char *s, atls_key_type_t *out);
int atls_key_type_is_rsa(atls_key_type_t t);

EVP_PKEY *atls_key_generate(atls_key_type_t t);
atls_key_type_t atls_key_type_of(const EVP_PKEY *k);
/* Unencrypted PKCS#8 PEM, malloc'd. */
char *atls_key_to_pem(EVP_PKEY *k);
EVP_PKEY *atls_key_from_pem(const char *pem, size_t len);

/* DER CSR (malloc'd, *der_len set) for names; an IP literal becomes an
 * iPAddress SAN (RFC 8738), everything else a dNSName.  subject CN = names[0]
 * only when with_cn. */
unsigned char *atls_csr_make(EVP_PKEY *key, const char *const *names, size_t n,
                             int with_cn, size_t *der_len);
/* The same with flags: ATLS_CSR_CN (subject CN = names[0]) and
 * ATLS_CSR_MUST_STAPLE (the TLS Feature extension with status_request,
 * RFC 7633, requested through the CSR's extensionRequest). */
#define ATLS_CSR_CN            0x1
#define ATLS_CSR_MUST_STAPLE   0x2
unsigned char *atls_csr_make_flags(EVP_PKEY *key, const char *const *names, size_t n,
                                   unsigned flags, size_t *der_len);

/* Parse a PEM chain (leaf first).  NULL with err set on garbage/empty. */
STACK_OF(X509) *atls_chain_parse(const char *pem, size_t len, char *err, size_t errlen);
/* PEM of the whole chain, malloc'd. */
char *atls_chain_to_pem(STACK_OF(X509) *chain);
void atls_chain_free(STACK_OF(X509) *chain);

/* Checks: non-empty; key (if given) matches the leaf; each cert issued by
 * the next (order); every name (if given) is covered by the leaf's SANs
 * (wildcards matched one label deep).  0 ok, -1 with err set. */
int atls_chain_check(STACK_OF(X509) *chain, EVP_PKEY *key,
                     const char *const *names, size_t n, char *err, size_t errlen);

/* A certificate the CA just issued, before it is stored or served. */
typedef enum {
    ATLS_CERT_OK = 0,
    ATLS_CERT_BAD_KEY,      /* the leaf certifies another key than the CSR's */
    ATLS_CERT_BAD_NAMES,    /* a SAN missing or one more than ordered */
    ATLS_CERT_BAD_DATES,    /* expired, or notBefore beyond the clock skew */
    ATLS_CERT_BAD_CHAIN     /* a certificate not issued/signed by the next one */
} atls_cert_fault_t;

/* notBefore may be this far ahead of our clock (a CA's clock running
 * slightly fast, or backdating of zero); more means a wrong certificate or
 * a wrong clock, and the certificate would fail handshakes either way. */
#define ATLS_CERT_CLOCK_SKEW 300

/* Checks the chain the CA issued for an order: the leaf's key is key (the
 * CSR's), its dNSName/iPAddress SANs are exactly names (case-insensitive,
 * addresses by value; no other SAN types), now lies within its validity
 * (notBefore up to ATLS_CERT_CLOCK_SKEW seconds ahead is tolerated), and
 * each certificate is issued (X509_check_issued) and signed (X509_verify)
 * by the next.  No trust anchor is needed.  ATLS_CERT_OK, or the first
 * fault found with err set. */
atls_cert_fault_t atls_cert_check_issued(STACK_OF(X509) *chain, EVP_PKEY *key,
                                         const char *const *names, size_t n,
                                         time_t now, char *err, size_t errlen);

/* 1 when the chain's topmost certificate's issuer CN or subject CN equals
 * name (how ACME clients pick a "preferred chain"). */
int atls_chain_issued_by(STACK_OF(X509) *chain, const char *name);

typedef struct {
    char          **names;          /* SAN dNSName and iPAddress (text) */
    size_t          n_names;
    char            serial[132];    /* lower-case hex, no separators */
    char            subject[256];   /* one-line RFC 2253 */
    char            issuer[256];    /* issuer CN (or one-line DN when no CN) */
    time_t          not_before;
    time_t          not_after;
    atls_key_type_t key_type;
} atls_cert_info_t;

int  atls_cert_info(X509 *x, atls_cert_info_t *out);
void atls_cert_info_free(atls_cert_info_t *info);

/* RFC 8737 certificate: self-signed, SAN = identifier, critical
 * id-pe-acmeIdentifier (1.3.6.1.5.5.7.1.31) holding OCTET STRING of
 * SHA-256(key_authz).  New P-256 key in *key. */
int atls_tls_alpn_cert(const char *identifier, const char *key_authz,
                       X509 **cert, EVP_PKEY **key);

/* Self-signed fallback certificate (served until the real one arrives). */
int atls_selfsigned_cert(const char *const *names, size_t n, atls_key_type_t t,
                         X509 **cert, EVP_PKEY **key);

#endif
