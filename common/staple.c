/* The handshake side of stapling: a verified response hangs off the parsed
 * leaf (X509 ex_data) and is copied into the handshake as it is.  See
 * atls_staple.h for why this is all the handshake does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include "atls_ocsp.h"
#include "atls_staple.h"

/* What a marked leaf carries: der NULL when there is nothing to staple. */
typedef struct {
    unsigned char *der;
    size_t         len;
    time_t         valid_until;
} atls_staple_t;

static CRYPTO_ONCE staple_once = CRYPTO_ONCE_STATIC_INIT;
static int         staple_idx = -1;

static void
staple_free(atls_staple_t *s)
{
    if (s != NULL) {
        OPENSSL_free(s->der);
        OPENSSL_free(s);
    }
}

/* Called by X509_free for every leaf, marked or not (ptr NULL then). */
static void
staple_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
               void *argp)
{
    staple_free(ptr);
}

static void
staple_index_init(void)
{
    staple_idx = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_X509, 0, NULL, NULL, NULL,
                                         staple_ex_free);
}

/* The ex_data index, created once per process whichever thread asks
 * first; -1 when OpenSSL could not make one. */
static int
staple_index(void)
{
    if (!CRYPTO_THREAD_run_once(&staple_once, staple_index_init)) {
        return -1;
    }
    return staple_idx;
}

/* The response in der verified for leaf and answering "good", in s. */
static int
staple_fill(atls_staple_t *s, X509 *leaf, X509 *issuer, const unsigned char *der,
            size_t len, time_t now, char *err, size_t errlen)
{
    atls_ocsp_answer_t a;

    if (atls_ocsp_verify(der, len, leaf, issuer, now, &a, err, errlen) != 0) {
        return 0;
    }
    if (a.status != ATLS_OCSP_GOOD) {
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "OCSP response: the certificate is %s",
                     atls_ocsp_status_name(a.status));
        }
        return 0;
    }
    s->der = OPENSSL_memdup(der, len);
    if (s->der == NULL) {
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "OCSP staple: out of memory");
        }
        return -1;
    }
    s->len = len;
    s->valid_until = atls_ocsp_valid_until(&a);
    return 1;
}

int
atls_staple_attach(X509 *leaf, X509 *issuer, const unsigned char *der, size_t len,
                   time_t now, char *err, size_t errlen)
{
    atls_staple_t *s, *old;
    int            idx, rc = 0;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    idx = staple_index();
    s = OPENSSL_zalloc(sizeof(*s));
    if (leaf == NULL || idx < 0 || s == NULL) {
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "OCSP staple: %s", leaf == NULL ? "no certificate"
                                                                  : "out of memory");
        }
        OPENSSL_free(s);
        return -1;
    }
    if (der != NULL && len > 0) {
        rc = staple_fill(s, leaf, issuer, der, len, now, err, errlen);
        if (rc < 0) {
            staple_free(s);
            return -1;
        }
    }
    old = X509_get_ex_data(leaf, idx);
    if (X509_set_ex_data(leaf, idx, s) != 1) {
        staple_free(s);
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "OCSP staple: X509_set_ex_data() failed");
        }
        return -1;
    }
    staple_free(old);
    return rc;
}

time_t
atls_staple_valid_until(X509 *leaf)
{
    atls_staple_t *s;
    int            idx = staple_index();

    if (leaf == NULL || idx < 0) {
        return 0;
    }
    s = X509_get_ex_data(leaf, idx);
    return s != NULL && s->der != NULL ? s->valid_until : 0;
}

int
atls_staple_serve(SSL *ssl, time_t now)
{
    atls_staple_t *s;
    unsigned char *copy;
    X509          *leaf;
    int            idx = staple_index();

    leaf = ssl != NULL ? SSL_get_certificate(ssl) : NULL;
    if (leaf == NULL || idx < 0) {
        return -1;
    }
    s = X509_get_ex_data(leaf, idx);
    if (s == NULL) {
        return -1;
    }
    /* past nextUpdate a staple would make clients that check fail */
    if (s->der == NULL || now >= s->valid_until) {
        return 0;
    }
    /* OpenSSL frees what it is given once the handshake has sent it. */
    copy = OPENSSL_memdup(s->der, s->len);
    if (copy == NULL) {
        return 0;
    }
    if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long) s->len) != 1) {
        OPENSSL_free(copy);
        return 0;
    }
    return 1;
}

int
atls_staple_load(atls_store_t *st, const char *id, atls_key_type_t kt, X509 *leaf,
                 X509 *issuer, time_t now, char *err, size_t errlen)
{
    unsigned char *der = NULL;
    size_t         len = 0;
    char           scratch[64];
    int            rc;

    rc = atls_store_load_ocsp(st, id, kt, &der, &len, err, errlen);
    if (rc == ATLS_STORE_NOTFOUND) {
        return atls_staple_attach(leaf, issuer, NULL, 0, now, err, errlen);
    }
    if (rc != ATLS_STORE_OK) {
        /* still ours: the handshake says "nothing" rather than letting
         * another callback answer for this certificate */
        (void) atls_staple_attach(leaf, issuer, NULL, 0, now, scratch, sizeof(scratch));
        return -1;
    }
    rc = atls_staple_attach(leaf, issuer, der, len, now, err, errlen);
    free(der);
    return rc;
}
