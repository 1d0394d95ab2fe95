/*
 * Facts of a certificate chain as a server serves it (a file named in the
 * configuration, or what `autotls scan` saw on the wire): what the
 * findings are judged from.  Nothing here trusts the chain; it is only
 * described.  The system trust store is consulted for one question only:
 * is the top of the chain issued by a root clients know?
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509_vfy.h>
#include "atls.h"
#include "atls_inventory.h"
#include "crypto_int.h"

/* The system default trust store, loaded once per process on first use
 * (X509_STORE_set_default_paths reads a directory of certificates: too
 * slow to repeat for every chain). */
static X509_STORE     *facts_roots;
static pthread_once_t  facts_roots_once = PTHREAD_ONCE_INIT;

static void
facts_roots_load(void)
{
    facts_roots = X509_STORE_new();
    if (facts_roots != NULL && X509_STORE_set_default_paths(facts_roots) != 1) {
        atls_log(ATLS_LOG_DEBUG, "system trust store not loaded: chains are judged "
                 "complete only when they end self-signed");
    }
    ERR_clear_error();
}

/* 1 when the system trust store holds a certificate that issued x. */
static int
facts_issued_by_root(X509 *x)
{
    X509_STORE_CTX *ctx;
    X509           *issuer = NULL;
    int             found = 0;

    pthread_once(&facts_roots_once, facts_roots_load);
    if (facts_roots == NULL) {
        return 0;
    }
    ctx = X509_STORE_CTX_new();
    if (ctx != NULL && X509_STORE_CTX_init(ctx, facts_roots, x, NULL) == 1
        && X509_STORE_CTX_get1_issuer(&issuer, ctx, x) == 1 && issuer != NULL) {
        EVP_PKEY *pk = X509_get0_pubkey(issuer);

        found = pk != NULL && X509_verify(x, pk) == 1;
        X509_free(issuer);
    }
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return found;
}

static int
facts_self_signed(X509 *x)
{
    EVP_PKEY *pk = X509_get0_pubkey(x);
    int       yes;

    yes = X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0
          && pk != NULL && X509_verify(x, pk) == 1;
    ERR_clear_error();
    return yes;
}

/* Each link signed by the next; the top self-signed or issued by a root
 * of the system trust store.  A self-signed leaf alone is complete: there
 * is nothing to add to it. */
static int
facts_chain_complete(STACK_OF(X509) *chain)
{
    int       i, n = sk_X509_num(chain);
    EVP_PKEY *pk;
    X509     *top;

    for (i = 0; i + 1 < n; i++) {
        pk = X509_get0_pubkey(sk_X509_value(chain, i + 1));
        if (pk == NULL || X509_verify(sk_X509_value(chain, i), pk) != 1) {
            ERR_clear_error();
            return 0;
        }
    }
    top = sk_X509_value(chain, n - 1);
    return facts_self_signed(top) || facts_issued_by_root(top);
}

static char *
facts_dn(const X509_NAME *xn)
{
    BIO  *bio;
    char *data, *out = NULL;
    long  len;

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return NULL;
    }
    if (X509_NAME_print_ex(bio, xn, 0, XN_FLAG_RFC2253) >= 0) {
        len = BIO_get_mem_data(bio, &data);
        out = malloc((size_t) (len > 0 ? len : 0) + 1);
        if (out != NULL) {
            memcpy(out, data, (size_t) (len > 0 ? len : 0));
            out[len > 0 ? len : 0] = '\0';
        }
    }
    BIO_free(bio);
    return out;
}

static void
facts_key(X509 *x, atls_cert_facts_t *f)
{
    EVP_PKEY   *pk = X509_get0_pubkey(x);
    const char *alg = "?";

    if (pk != NULL) {
        switch (EVP_PKEY_get_base_id(pk)) {
        case EVP_PKEY_RSA:
        case EVP_PKEY_RSA_PSS: alg = "rsa"; break;
        case EVP_PKEY_EC:      alg = "ec"; break;
        case EVP_PKEY_ED25519: alg = "ed25519"; break;
        case EVP_PKEY_ED448:   alg = "ed448"; break;
        case EVP_PKEY_DSA:     alg = "dsa"; break;
        default: break;
        }
        f->key_bits = EVP_PKEY_get_bits(pk);
    }
    snprintf(f->key_alg, sizeof(f->key_alg), "%s", alg);
    ERR_clear_error();
}

static void
facts_signature(X509 *x, atls_cert_facts_t *f)
{
    int nid = X509_get_signature_nid(x), md_nid = NID_undef, pk_nid;

    snprintf(f->sig_alg, sizeof(f->sig_alg), "%s",
             nid != NID_undef ? OBJ_nid2ln(nid) : "?");
    if (OBJ_find_sigid_algs(nid, &md_nid, &pk_nid) == 1) {
        f->sig_sha1 = md_nid == NID_sha1 || md_nid == NID_md5 || md_nid == NID_md5_sha1;
    }
}

/* The names from atls_cert_info (SANs), else the subject CN. */
static int
facts_names(X509 *x, atls_cert_info_t *info, atls_cert_facts_t *f)
{
    const X509_NAME *xn;
    unsigned char   *utf8;
    int              idx, len;

    if (info->n_names > 0) {
        f->names = info->names;
        f->n_names = info->n_names;
        info->names = NULL;
        info->n_names = 0;
        return 0;
    }
    xn = X509_get_subject_name(x);
    idx = X509_NAME_get_index_by_NID(xn, NID_commonName, -1);
    if (idx < 0) {
        return 0;
    }
    len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(xn, idx)));
    if (len < 0) {
        ERR_clear_error();
        return 0;
    }
    /* An embedded NUL would make the C string lie about the name. */
    if (len > 0 && memchr(utf8, '\0', (size_t) len) == NULL) {
        f->names = calloc(1, sizeof(char *));
        if (f->names == NULL || (f->names[0] = strndup((char *) utf8, (size_t) len)) == NULL) {
            OPENSSL_free(utf8);
            return -1;
        }
        f->n_names = 1;
    }
    OPENSSL_free(utf8);
    return 0;
}

int
atls_cert_facts(STACK_OF(X509) *chain, atls_cert_facts_t *f, char *err, size_t errlen)
{
    atls_cert_info_t info;
    X509            *leaf;
    int              rc = -1;

    memset(f, 0, sizeof(*f));
    if (chain == NULL || sk_X509_num(chain) < 1) {
        snprintf(err, errlen, "no certificate");
        return -1;
    }
    leaf = sk_X509_value(chain, 0);
    if (atls_cert_info(leaf, &info) != 0) {
        snprintf(err, errlen, "the certificate cannot be read (dates or serial)");
        return -1;
    }
    if (facts_names(leaf, &info, f) != 0) {
        goto out;
    }
    f->subject = facts_dn(X509_get_subject_name(leaf));
    f->issuer = facts_dn(X509_get_issuer_name(leaf));
    f->serial = atls_strdup(info.serial);
    if (f->subject == NULL || f->issuer == NULL || f->serial == NULL) {
        goto out;
    }
    facts_key(leaf, f);
    facts_signature(leaf, f);
    f->not_before = info.not_before;
    f->not_after = info.not_after;
    f->chain_len = (size_t) sk_X509_num(chain);
    f->self_signed = facts_self_signed(leaf);
    f->chain_complete = facts_chain_complete(chain);
    rc = 0;

out:
    atls_cert_info_free(&info);
    if (rc != 0) {
        snprintf(err, errlen, "out of memory reading the certificate");
        atls_cert_facts_free(f);
    }
    return rc;
}

void
atls_cert_facts_free(atls_cert_facts_t *f)
{
    if (f == NULL) {
        return;
    }
    atls_strv_free(f->names, f->n_names);
    free(f->subject);
    free(f->issuer);
    free(f->serial);
    memset(f, 0, sizeof(*f));
}
