/* Certificate chains: PEM in/out and the checks done before a chain is
 * stored or served. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "atls.h"
#include "atls_crypto.h"
#include "crypto_int.h"

/* A chain PEM larger than this is not a certificate chain. */
#define ATLS_CHAIN_PEM_MAX (4 * 1024 * 1024)

STACK_OF(X509) *
atls_chain_parse(const char *pem, size_t len, char *err, size_t errlen)
{
    STACK_OF(X509) *chain;
    BIO            *bio;
    X509           *x;
    unsigned long   e;

    if (pem == NULL || len == 0) {
        atls_crypto_err(err, errlen, "empty certificate chain");
        return NULL;
    }
    if (len > ATLS_CHAIN_PEM_MAX) {
        atls_crypto_err(err, errlen, "certificate chain larger than %d bytes",
                        ATLS_CHAIN_PEM_MAX);
        return NULL;
    }
    bio = BIO_new_mem_buf(pem, (int) len);
    chain = sk_X509_new_null();
    if (bio == NULL || chain == NULL) {
        BIO_free(bio);
        sk_X509_free(chain);
        atls_crypto_err(err, errlen, "out of memory");
        return NULL;
    }

    ERR_clear_error();
    for ( ;; ) {
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x == NULL) {
            break;
        }
        if (sk_X509_push(chain, x) <= 0) {
            X509_free(x);
            atls_crypto_err(err, errlen, "out of memory");
            goto failed;
        }
    }

    /* Running out of PEM blocks ends the loop with "no start line"; any
     * other error is a damaged block. */
    e = ERR_peek_last_error();
    if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM
                    && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        atls_crypto_err(err, errlen, "certificate %d in the chain is not valid PEM/DER",
                        sk_X509_num(chain) + 1);
        goto failed;
    }
    if (sk_X509_num(chain) == 0) {
        atls_crypto_err(err, errlen, "no certificate found in the PEM data");
        goto failed;
    }
    ERR_clear_error();
    BIO_free(bio);
    return chain;

failed:
    BIO_free(bio);
    sk_X509_pop_free(chain, X509_free);
    return NULL;
}

char *
atls_chain_to_pem(STACK_OF(X509) *chain)
{
    BIO  *bio;
    char *data, *s = NULL;
    long  len;
    int   i;

    if (chain == NULL || sk_X509_num(chain) == 0) {
        return NULL;
    }
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return NULL;
    }
    for (i = 0; i < sk_X509_num(chain); i++) {
        if (PEM_write_bio_X509(bio, sk_X509_value(chain, i)) != 1) {
            ERR_clear_error();
            goto done;
        }
    }
    len = BIO_get_mem_data(bio, &data);
    if (len <= 0) {
        goto done;
    }
    s = malloc((size_t) len + 1);
    if (s != NULL) {
        memcpy(s, data, (size_t) len);
        s[len] = '\0';
    }

done:
    BIO_free(bio);
    return s;
}

void
atls_chain_free(STACK_OF(X509) *chain)
{
    sk_X509_pop_free(chain, X509_free);
}

/* X509_check_host would treat a "*" in the name we ask about as a plain
 * character at best; an ordered "*.example.com" must be matched by the
 * identical SAN entry. */
static int
leaf_has_dns_san(X509 *leaf, const char *name)
{
    GENERAL_NAMES *gens;
    GENERAL_NAME  *gen;
    int            i, found = 0;
    size_t         nlen = strlen(name);

    gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    if (gens == NULL) {
        ERR_clear_error();
        return 0;
    }
    for (i = 0; i < sk_GENERAL_NAME_num(gens) && !found; i++) {
        gen = sk_GENERAL_NAME_value(gens, i);
        if (gen->type == GEN_DNS
            && (size_t) ASN1_STRING_length(gen->d.dNSName) == nlen
            && strncasecmp((const char *) ASN1_STRING_get0_data(gen->d.dNSName),
                           name, nlen) == 0) {
            found = 1;
        }
    }
    GENERAL_NAMES_free(gens);
    return found;
}

static int
leaf_covers(X509 *leaf, const char *name)
{
    ASN1_OCTET_STRING *ip;

    ip = a2i_IPADDRESS(name);
    if (ip != NULL) {
        ASN1_OCTET_STRING_free(ip);
        return X509_check_ip_asc(leaf, name, 0) == 1;
    }
    ERR_clear_error();
    if (strncmp(name, "*.", 2) == 0) {
        return leaf_has_dns_san(leaf, name);
    }
    /* SANs only: a CN-only certificate no longer counts anywhere. */
    return X509_check_host(leaf, name, strlen(name),
                           X509_CHECK_FLAG_NEVER_CHECK_SUBJECT
                           | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
}

static int
chain_check_key(X509 *leaf, EVP_PKEY *key, char *err, size_t errlen)
{
    EVP_PKEY *pub = X509_get0_pubkey(leaf);

    if (pub == NULL || EVP_PKEY_eq(pub, key) != 1) {
        atls_crypto_err(err, errlen, "private key does not match the leaf certificate");
        return -1;
    }
    return 0;
}

/* Each certificate is issued and signed by the next one; no trust anchor is
 * needed for that (the TLS client checks the path to its roots). */
static int
chain_check_links(STACK_OF(X509) *chain, char *err, size_t errlen)
{
    X509     *cur, *next;
    EVP_PKEY *pub;
    int       i, num = sk_X509_num(chain);

    for (i = 0; i + 1 < num; i++) {
        cur = sk_X509_value(chain, i);
        next = sk_X509_value(chain, i + 1);
        if (X509_check_issued(next, cur) != X509_V_OK) {
            atls_crypto_err(err, errlen,
                            "certificate %d of %d is not the issuer of certificate %d",
                            i + 2, num, i + 1);
            return -1;
        }
        pub = X509_get0_pubkey(next);
        if (pub == NULL || X509_verify(cur, pub) != 1) {
            atls_crypto_err(err, errlen,
                            "signature of certificate %d of %d does not verify "
                            "with the key of certificate %d", i + 1, num, i + 2);
            return -1;
        }
    }
    return 0;
}

static int
chain_check_covers(X509 *leaf, const char *const *names, size_t n, char *err,
                   size_t errlen)
{
    size_t k;

    for (k = 0; k < n; k++) {
        if (names[k] == NULL || !leaf_covers(leaf, names[k])) {
            atls_crypto_err(err, errlen, "leaf does not cover %s",
                            names[k] != NULL ? names[k] : "(null)");
            return -1;
        }
    }
    return 0;
}

int
atls_chain_check(STACK_OF(X509) *chain, EVP_PKEY *key,
                 const char *const *names, size_t n, char *err, size_t errlen)
{
    X509 *leaf;
    int   rc;

    if (chain == NULL || sk_X509_num(chain) <= 0) {
        atls_crypto_err(err, errlen, "certificate chain is empty");
        return -1;
    }
    leaf = sk_X509_value(chain, 0);
    rc = (key != NULL && chain_check_key(leaf, key, err, errlen) != 0)
         || chain_check_links(chain, err, errlen) != 0
         || chain_check_covers(leaf, names, n, err, errlen) != 0 ? -1 : 0;
    ERR_clear_error();
    return rc;
}

/* 1 when the SAN entry gen is one of names (dNSName case-insensitive,
 * iPAddress by value). */
static int
san_ordered(const GENERAL_NAME *gen, const char *const *names, size_t n)
{
    const unsigned char *d;
    char                 text[INET6_ADDRSTRLEN];
    int                  len;
    size_t               k;

    if (gen->type == GEN_DNS) {
        d = ASN1_STRING_get0_data(gen->d.dNSName);
        len = ASN1_STRING_length(gen->d.dNSName);
        for (k = 0; k < n; k++) {
            if (strlen(names[k]) == (size_t) len
                && strncasecmp((const char *) d, names[k], (size_t) len) == 0
                && !atls_ident_is_ip(names[k]))
            {
                return 1;
            }
        }
        return 0;
    }
    if (gen->type == GEN_IPADD) {
        d = ASN1_STRING_get0_data(gen->d.iPAddress);
        len = ASN1_STRING_length(gen->d.iPAddress);
        if ((len != 4 && len != 16)
            || inet_ntop(len == 4 ? AF_INET : AF_INET6, d, text, sizeof(text)) == NULL)
        {
            return 0;
        }
        for (k = 0; k < n; k++) {
            if (atls_ident_ip_equal(names[k], text)) {
                return 1;
            }
        }
    }
    return 0;
}

/* No SAN beyond the ordered names: a certificate for more names than we
 * validated is not one we asked for. */
static int
chain_check_no_extra(X509 *leaf, const char *const *names, size_t n, char *err,
                     size_t errlen)
{
    GENERAL_NAMES *gens;
    GENERAL_NAME  *gen;
    char           esc[128];
    int            i, rc = 0;

    gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    if (gens == NULL) {
        ERR_clear_error();
        atls_crypto_err(err, errlen, "leaf has no subjectAltName");
        return -1;
    }
    for (i = 0; i < sk_GENERAL_NAME_num(gens) && rc == 0; i++) {
        gen = sk_GENERAL_NAME_value(gens, i);
        if (san_ordered(gen, names, n)) {
            continue;
        }
        if (gen->type == GEN_DNS) {
            atls_log_escape_mem(ASN1_STRING_get0_data(gen->d.dNSName),
                                (size_t) ASN1_STRING_length(gen->d.dNSName),
                                esc, sizeof(esc));
            atls_crypto_err(err, errlen, "leaf also names %s, which was not ordered", esc);
        } else {
            atls_crypto_err(err, errlen, "leaf has a subjectAltName (type %d) that "
                            "was not ordered", gen->type);
        }
        rc = -1;
    }
    GENERAL_NAMES_free(gens);
    return rc;
}

static int
chain_check_dates(X509 *leaf, time_t now, char *err, size_t errlen)
{
    time_t skewed = now + ATLS_CERT_CLOCK_SKEW;

    if (X509_cmp_time(X509_get0_notAfter(leaf), &now) <= 0) {
        atls_crypto_err(err, errlen, "leaf has expired (notAfter is in the past)");
        return -1;
    }
    if (X509_cmp_time(X509_get0_notBefore(leaf), &skewed) > 0) {
        atls_crypto_err(err, errlen, "leaf is not valid yet (notBefore more than "
                        "%d s in the future)", ATLS_CERT_CLOCK_SKEW);
        return -1;
    }
    return 0;
}

atls_cert_fault_t
atls_cert_check_issued(STACK_OF(X509) *chain, EVP_PKEY *key,
                       const char *const *names, size_t n, time_t now,
                       char *err, size_t errlen)
{
    atls_cert_fault_t fault = ATLS_CERT_OK;
    X509             *leaf;

    if (chain == NULL || sk_X509_num(chain) <= 0 || key == NULL || n == 0) {
        atls_crypto_err(err, errlen, "nothing to check (empty chain, no key or no names)");
        return ATLS_CERT_BAD_CHAIN;
    }
    leaf = sk_X509_value(chain, 0);
    if (chain_check_key(leaf, key, err, errlen) != 0) {
        fault = ATLS_CERT_BAD_KEY;
    } else if (chain_check_covers(leaf, names, n, err, errlen) != 0
               || chain_check_no_extra(leaf, names, n, err, errlen) != 0)
    {
        fault = ATLS_CERT_BAD_NAMES;
    } else if (chain_check_dates(leaf, now, err, errlen) != 0) {
        fault = ATLS_CERT_BAD_DATES;
    } else if (chain_check_links(chain, err, errlen) != 0) {
        fault = ATLS_CERT_BAD_CHAIN;
    }
    ERR_clear_error();
    return fault;
}

/* 1 when the name's CN (any of them) equals want. */
static int
name_cn_equals(const X509_NAME *xn, const char *want)
{
    const X509_NAME_ENTRY *ent;
    unsigned char         *utf8;
    int                    idx = -1, len, eq;

    for ( ;; ) {
        idx = X509_NAME_get_index_by_NID(xn, NID_commonName, idx);
        if (idx < 0) {
            return 0;
        }
        ent = X509_NAME_get_entry(xn, idx);
        len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(ent));
        if (len < 0) {
            ERR_clear_error();
            continue;
        }
        eq = (size_t) len == strlen(want) && memcmp(utf8, want, (size_t) len) == 0;
        OPENSSL_free(utf8);
        if (eq) {
            return 1;
        }
    }
}

int
atls_chain_issued_by(STACK_OF(X509) *chain, const char *name)
{
    X509 *top;
    int   num;

    num = chain != NULL ? sk_X509_num(chain) : 0;
    if (num <= 0 || name == NULL) {
        return 0;
    }
    top = sk_X509_value(chain, num - 1);
    return name_cn_equals(X509_get_issuer_name(top), name)
           || name_cn_equals(X509_get_subject_name(top), name);
}
