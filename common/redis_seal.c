/*
 * Encryption at rest for the private entries kept in Redis: AES-256-GCM
 * (OpenSSL EVP) under a 256-bit key every node holds in a key file.  Redis
 * and its backups alone never reveal a private key.
 *
 * The Redis key name is authenticated with each value (AAD), so a value
 * copied under another name does not open; the key id in the header tells
 * "sealed with another key file" (a node not yet rekeyed) apart from
 * "tampered".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include "atls_redis.h"

#define KEYID_LABEL "autotls redis key id"
#define KEY_FILE_MAX 66    /* 64 hex digits and a newline, plus one to see more */

void
atls_redis_key_wipe(atls_redis_key_t *k)
{
    explicit_bzero(k, sizeof(*k));
}

static int
key_hex(const char *s, unsigned char *out)
{
    size_t i;

    for (i = 0; i < 2 * ATLS_REDIS_KEY_BYTES; i++) {
        int ch = (unsigned char) s[i], v;

        if (ch >= '0' && ch <= '9') {
            v = ch - '0';
        } else if (ch >= 'a' && ch <= 'f') {
            v = ch - 'a' + 10;
        } else if (ch >= 'A' && ch <= 'F') {
            v = ch - 'A' + 10;
        } else {
            return -1;
        }
        out[i / 2] = (unsigned char) ((i % 2) ? (out[i / 2] | v) : (v << 4));
    }
    return 0;
}

/* Raw 32 bytes, or 64 hex digits with at most one trailing newline. */
static int
key_decode(const char *buf, size_t n, atls_redis_key_t *k)
{
    if (n == ATLS_REDIS_KEY_BYTES) {
        memcpy(k->key, buf, n);
        return 0;
    }
    if (n == 2 * ATLS_REDIS_KEY_BYTES
        || (n == 2 * ATLS_REDIS_KEY_BYTES + 1 && buf[n - 1] == '\n'))
    {
        return key_hex(buf, k->key);
    }
    return -1;
}

static void
key_id(atls_redis_key_t *k)
{
    unsigned char buf[sizeof(KEYID_LABEL) + ATLS_REDIS_KEY_BYTES];
    unsigned char md[SHA256_DIGEST_LENGTH];

    memcpy(buf, KEYID_LABEL, sizeof(KEYID_LABEL));
    memcpy(buf + sizeof(KEYID_LABEL), k->key, ATLS_REDIS_KEY_BYTES);
    SHA256(buf, sizeof(buf), md);
    memcpy(k->id, md, sizeof(k->id));
    explicit_bzero(buf, sizeof(buf));
    explicit_bzero(md, sizeof(md));
}

int
atls_redis_key_load(const char *file, atls_redis_key_t *k, char *err, size_t errlen)
{
    char        buf[KEY_FILE_MAX + 1];
    struct stat sb;
    ssize_t     n = 0, r;
    int         fd, rc = -1;
    const char *why = NULL;

    atls_redis_key_wipe(k);
    fd = open(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "redis key_file %s: %s", file,
                 errno == ELOOP ? "a symbolic link, refused" : strerror(errno));
        return -1;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        why = "not a regular file";
        goto out;
    }
    if ((sb.st_mode & 077) != 0) {
        why = "readable by others: must be 0600 (or 0400)";
        goto out;
    }
    while (n < (ssize_t) sizeof(buf) && (r = read(fd, buf + n, sizeof(buf) - (size_t) n)) > 0) {
        n += r;
    }
    if (key_decode(buf, (size_t) n, k) != 0) {
        why = "must hold exactly 32 raw bytes or 64 hex digits (openssl rand -hex 32)";
        goto out;
    }
    key_id(k);
    rc = 0;

out:
    explicit_bzero(buf, sizeof(buf));
    close(fd);
    if (rc != 0) {
        atls_redis_key_wipe(k);
        snprintf(err, errlen, "redis key_file %s: %s", file, why);
    }
    return rc;
}

/* ---- seal / open ------------------------------------------------------------ */

/* The AAD: the header (version, key id) and the Redis key name. */
static int
seal_aad(EVP_CIPHER_CTX *x, const unsigned char *hdr, const char *aad, size_t aadlen)
{
    int n;

    return EVP_CipherUpdate(x, NULL, &n, hdr, 1 + ATLS_REDIS_KEYID_BYTES) == 1
           && EVP_CipherUpdate(x, NULL, &n, (const unsigned char *) aad, (int) aadlen) == 1
           ? 0 : -1;
}

int
atls_redis_seal(const atls_redis_key_t *k, const char *aad, size_t aadlen,
                const void *in, size_t len, unsigned char **out, size_t *outlen,
                char *err, size_t errlen)
{
    EVP_CIPHER_CTX *x = NULL;
    unsigned char  *o, *nonce, *ct;
    int             n, rc = -1;

    *out = NULL;
    *outlen = 0;
    if (len > 64u * 1024 * 1024 || aadlen > 4096) {
        snprintf(err, errlen, "seal: value too large");
        return -1;
    }
    o = malloc(len + ATLS_REDIS_SEAL_OVERHEAD);
    if (o == NULL) {
        abort();
    }
    o[0] = ATLS_REDIS_SEAL_VERSION;
    memcpy(o + 1, k->id, ATLS_REDIS_KEYID_BYTES);
    nonce = o + 1 + ATLS_REDIS_KEYID_BYTES;
    ct = nonce + ATLS_REDIS_NONCE_BYTES;
    x = EVP_CIPHER_CTX_new();
    if (x == NULL || RAND_bytes(nonce, ATLS_REDIS_NONCE_BYTES) != 1
        || EVP_EncryptInit_ex(x, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1
        || EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_IVLEN, ATLS_REDIS_NONCE_BYTES, NULL) != 1
        || EVP_EncryptInit_ex(x, NULL, NULL, k->key, nonce) != 1
        || seal_aad(x, o, aad, aadlen) != 0
        || EVP_EncryptUpdate(x, ct, &n, in, (int) len) != 1
        || EVP_EncryptFinal_ex(x, ct + n, &n) != 1
        || EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, ATLS_REDIS_TAG_BYTES, ct + len) != 1)
    {
        snprintf(err, errlen, "seal: AES-256-GCM encryption failed");
        free(o);
        goto out;
    }
    *out = o;
    *outlen = len + ATLS_REDIS_SEAL_OVERHEAD;
    rc = 0;

out:
    EVP_CIPHER_CTX_free(x);
    return rc;
}

static void
hex8(const unsigned char *id, char out[2 * ATLS_REDIS_KEYID_BYTES + 1])
{
    size_t i;

    for (i = 0; i < ATLS_REDIS_KEYID_BYTES; i++) {
        snprintf(out + 2 * i, 3, "%02x", id[i]);
    }
}

int
atls_redis_open(const atls_redis_key_t *k, const char *aad, size_t aadlen,
                const unsigned char *in, size_t len, char **out, size_t *outlen,
                char *err, size_t errlen)
{
    EVP_CIPHER_CTX      *x = NULL;
    const unsigned char *nonce, *ct;
    unsigned char        tag[ATLS_REDIS_TAG_BYTES];
    char                 idhex[2 * ATLS_REDIS_KEYID_BYTES + 1];
    size_t               clen;
    char                *o;
    int                  n, rc = -1;

    *out = NULL;
    *outlen = 0;
    if (len < ATLS_REDIS_SEAL_OVERHEAD) {
        snprintf(err, errlen, "sealed value too short (%zu bytes)", len);
        return -1;
    }
    if (in[0] != ATLS_REDIS_SEAL_VERSION) {
        snprintf(err, errlen, "sealed value of unknown version %u", in[0]);
        return -1;
    }
    if (memcmp(in + 1, k->id, ATLS_REDIS_KEYID_BYTES) != 0) {
        hex8(in + 1, idhex);
        snprintf(err, errlen, "sealed with another key file (key id %s)", idhex);
        return -1;
    }
    if (aadlen > 4096) {
        snprintf(err, errlen, "key name too long");
        return -1;
    }
    nonce = in + 1 + ATLS_REDIS_KEYID_BYTES;
    ct = nonce + ATLS_REDIS_NONCE_BYTES;
    clen = len - ATLS_REDIS_SEAL_OVERHEAD;
    memcpy(tag, ct + clen, sizeof(tag));
    o = malloc(clen + 1);
    if (o == NULL) {
        abort();
    }
    x = EVP_CIPHER_CTX_new();
    if (x == NULL || EVP_DecryptInit_ex(x, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1
        || EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_IVLEN, ATLS_REDIS_NONCE_BYTES, NULL) != 1
        || EVP_DecryptInit_ex(x, NULL, NULL, k->key, nonce) != 1
        || seal_aad(x, in, aad, aadlen) != 0
        || EVP_DecryptUpdate(x, (unsigned char *) o, &n, ct, (int) clen) != 1
        || EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, ATLS_REDIS_TAG_BYTES, tag) != 1
        || EVP_DecryptFinal_ex(x, (unsigned char *) o + n, &n) != 1)
    {
        snprintf(err, errlen, "sealed value failed authentication (tampered, or moved "
                 "from another key)");
        explicit_bzero(o, clen + 1);
        free(o);
        goto out;
    }
    o[clen] = '\0';
    *out = o;
    *outlen = clen;
    rc = 0;

out:
    EVP_CIPHER_CTX_free(x);
    return rc;
}
