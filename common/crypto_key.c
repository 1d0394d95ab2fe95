/* Private keys: the supported types, generation and PEM in/out. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include "atls_crypto.h"
#include "crypto_int.h"

static const char *const key_type_names[] = {
    [ATLS_KEY_EC256]   = "ec256",
    [ATLS_KEY_EC384]   = "ec384",
    [ATLS_KEY_RSA2048] = "rsa2048",
    [ATLS_KEY_RSA3072] = "rsa3072",
    [ATLS_KEY_RSA4096] = "rsa4096",
};

const char *
atls_key_type_name(atls_key_type_t t)
{
    if ((unsigned) t >= ATLS_KEY_UNKNOWN) {
        return "unknown";
    }
    return key_type_names[t];
}

int
atls_key_type_parse(const char *s, atls_key_type_t *out)
{
    int i;

    if (s == NULL) {
        return -1;
    }
    for (i = 0; i < ATLS_KEY_UNKNOWN; i++) {
        if (strcasecmp(s, key_type_names[i]) == 0) {
            if (out != NULL) {
                *out = (atls_key_type_t) i;
            }
            return 0;
        }
    }
    return -1;
}

int
atls_key_type_is_rsa(atls_key_type_t t)
{
    return t == ATLS_KEY_RSA2048 || t == ATLS_KEY_RSA3072 || t == ATLS_KEY_RSA4096;
}

EVP_PKEY *
atls_key_generate(atls_key_type_t t)
{
    EVP_PKEY *k = NULL;

    switch (t) {
    case ATLS_KEY_EC256:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        break;
    case ATLS_KEY_EC384:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
        break;
    case ATLS_KEY_RSA2048:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
        break;
    case ATLS_KEY_RSA3072:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 3072);
        break;
    case ATLS_KEY_RSA4096:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 4096);
        break;
    default:
        return NULL;
    }
    if (k == NULL) {
        ERR_clear_error();
    }
    return k;
}

atls_key_type_t
atls_key_type_of(const EVP_PKEY *k)
{
    char group[64];

    if (k == NULL) {
        return ATLS_KEY_UNKNOWN;
    }
    if (EVP_PKEY_is_a(k, "RSA")) {
        switch (EVP_PKEY_get_bits(k)) {
        case 2048:
            return ATLS_KEY_RSA2048;
        case 3072:
            return ATLS_KEY_RSA3072;
        case 4096:
            return ATLS_KEY_RSA4096;
        default:
            return ATLS_KEY_UNKNOWN;
        }
    }
    if (EVP_PKEY_is_a(k, "EC")) {
        if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME,
                                           group, sizeof(group), NULL) != 1) {
            ERR_clear_error();
            return ATLS_KEY_UNKNOWN;
        }
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0) {
            return ATLS_KEY_EC256;
        }
        if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0) {
            return ATLS_KEY_EC384;
        }
    }
    return ATLS_KEY_UNKNOWN;
}

/* Copies a memory BIO's contents into a malloc'd C string. */
static char *
bio_to_string(BIO *bio)
{
    char *data, *s;
    long  len;

    len = BIO_get_mem_data(bio, &data);
    if (len < 0) {
        return NULL;
    }
    s = malloc((size_t) len + 1);
    if (s == NULL) {
        return NULL;
    }
    memcpy(s, data, (size_t) len);
    s[len] = '\0';
    return s;
}

/* The buffer held key material: wipe it before it goes back to malloc. */
static void
bio_wipe_free(BIO *bio)
{
    char *data;
    long  len;

    len = BIO_get_mem_data(bio, &data);
    if (len > 0) {
        OPENSSL_cleanse(data, (size_t) len);
    }
    BIO_free(bio);
}

char *
atls_key_to_pem(EVP_PKEY *k)
{
    BIO  *bio;
    char *s = NULL;

    if (k == NULL) {
        return NULL;
    }
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return NULL;
    }
    /* PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY") in 3.x. */
    if (PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL) == 1) {
        s = bio_to_string(bio);
    } else {
        ERR_clear_error();
    }
    bio_wipe_free(bio);
    return s;
}

EVP_PKEY *
atls_key_from_pem(const char *pem, size_t len)
{
    BIO      *bio;
    EVP_PKEY *k;

    if (pem == NULL || len == 0 || len > 1024 * 1024) {
        return NULL;
    }
    bio = BIO_new_mem_buf(pem, (int) len);
    if (bio == NULL) {
        return NULL;
    }
    /* An empty passphrase callback result makes encrypted keys fail instead
     * of prompting on a terminal. */
    k = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *) "");
    if (k == NULL) {
        ERR_clear_error();
    }
    BIO_free(bio);
    return k;
}

void
atls_crypto_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    ERR_clear_error();
    if (err == NULL || errlen == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
