/* JOSE for ACME: JWK, RFC 7638 thumbprint, JWS flattened JSON, EAB. */
#ifndef ATLS_JWS_H
#define ATLS_JWS_H

#include <stddef.h>
#include <openssl/evp.h>

/* "ES256" (P-256), "ES384" (P-384), "RS256" (RSA); NULL otherwise. */
const char *atls_jws_alg(const EVP_PKEY *key);

/* Public JWK as compact JSON with members in lexicographic order (so it is
 * also the RFC 7638 thumbprint input).  malloc'd. */
char *atls_jwk_json(EVP_PKEY *key);
/* base64url(SHA-256(jwk)), malloc'd. */
char *atls_jwk_thumbprint(EVP_PKEY *key);

/* token "." thumbprint (RFC 8555 §8.1), malloc'd. */
char *atls_key_authorization(const char *token, EVP_PKEY *account_key);
/* base64url(SHA-256(key_authz)): the dns-01 TXT value, malloc'd. */
char *atls_dns01_txt_value(const char *key_authz);

/* Flattened JWS JSON {"protected","payload","signature"}.
 * kid NULL => "jwk" is embedded (newAccount, revoke by cert key).
 * payload NULL => POST-as-GET (empty payload). ECDSA signatures are raw R||S. */
char *atls_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce,
                    const char *url, const char *payload);

/* External Account Binding (RFC 8555 §7.3.4): a JWS object (as JSON text)
 * with alg HS256, kid = eab_kid, url = newAccount URL, payload = the
 * account's public JWK.  hmac_b64url is the CA-provided key. NULL on a
 * bad key encoding. */
char *atls_jws_eab(const char *eab_kid, const char *hmac_b64url,
                   EVP_PKEY *account_key, const char *url);

#endif
