/*
 * libFuzzer: the store files read back on every start besides meta.json
 * (fuzz_store_meta) through the public store API, over an in-memory
 * backend (the ops table) that holds the input as one file:
 *
 *   selector(1) content
 *
 * selector 4: crl/<url-id>.json, the CRL cache's facts for CRL_URL;
 * selector 5: certs/example.com/<keytype>.ocsp;
 * otherwise selector % 4: 0 generation (then bumped), 1
 * accounts/<ca>/account.json, 2 accounts/<ca>/account.key, 3
 * certs/example.com/<keytype>.pem (key PEM + chain PEM).  (4 and 5 were
 * free in the corpus: the older seeds keep their meaning.)  Anything there
 * must be rejected with an error or parse to what was written, never
 * crash or leak.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include "atls_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DIR_URL "https://ca.test/dir"
#define CRL_URL "http://crl.test/shard/7.crl"

typedef struct {
    const char *path;       /* the one fuzzed file */
    const char *data;
    size_t      len;
    const char *key_path;   /* account.key when it is not the fuzzed file */
    char        put[64];    /* last value written to "generation" */
    int         n_put;
} mem_t;

static char *account_key_pem;
static char  account_key_path[128], account_json_path[128], cert_path[128];
static char  crl_json_path[128], ocsp_path[128];

static int
mem_get(atls_store_t *st, const char *path, char **data, size_t *len,
        char *err, size_t errlen)
{
    mem_t      *m = st->impl;
    const char *src = NULL;
    size_t      n = 0;

    *data = NULL;
    if (m->path != NULL && strcmp(path, m->path) == 0) {
        src = m->data;
        n = m->len;
    } else if (m->key_path != NULL && strcmp(path, m->key_path) == 0) {
        src = account_key_pem;
        n = strlen(account_key_pem);
    } else {
        snprintf(err, errlen, "%s: not found", path);
        return ATLS_STORE_NOTFOUND;
    }
    /* like the fs backend: an exact-size copy plus a NUL */
    *data = malloc(n + 1);
    if (*data == NULL) {
        abort();
    }
    memcpy(*data, src, n);
    (*data)[n] = '\0';
    if (len != NULL) {
        *len = n;
    }
    return ATLS_STORE_OK;
}

static int
mem_put(atls_store_t *st, const char *path, const char *data, size_t len,
        int is_private, char *err, size_t errlen)
{
    mem_t *m = st->impl;

    if (strcmp(path, "generation") != 0 || len >= sizeof(m->put)) {
        abort();    /* nothing else is written here */
    }
    memcpy(m->put, data, len);
    m->put[len] = '\0';
    m->n_put++;
    return ATLS_STORE_OK;
}

static int
mem_del(atls_store_t *st, const char *path, char *err, size_t errlen)
{
    return ATLS_STORE_NOTFOUND;
}

static int
mem_list(atls_store_t *st, const char *dir, char ***names, size_t *n,
         char *err, size_t errlen)
{
    *names = NULL;
    *n = 0;
    return ATLS_STORE_NOTFOUND;
}

static int
mem_lock(atls_store_t *st, const char *name, int wait, atls_store_lock_t **out,
         char *err, size_t errlen)
{
    *out = (atls_store_lock_t *) st;   /* never dereferenced by the caller */
    return ATLS_STORE_OK;
}

static void
mem_unlock(atls_store_t *st, atls_store_lock_t *lk)
{
}

static void
mem_close(atls_store_t *st)
{
}

static const atls_store_ops_t mem_ops = {
    "mem", mem_get, mem_put, mem_del, mem_list, mem_lock, mem_unlock, mem_close, NULL
};

static void
quiet(void *ctx, atls_log_level_t level, const char *msg)
{
}

/* crl/<lower-case hex SHA-256 of CRL_URL>.json, computed here on its own */
static void
crl_json_path_init(void)
{
    unsigned char md[32];
    unsigned int  n = 0, i;
    int           off;

    if (EVP_Digest(CRL_URL, strlen(CRL_URL), md, &n, EVP_sha256(), NULL) != 1) {
        abort();
    }
    off = snprintf(crl_json_path, sizeof(crl_json_path), "crl/");
    for (i = 0; i < n; i++) {
        off += snprintf(crl_json_path + off, sizeof(crl_json_path) - (size_t) off, "%02x",
                        md[i]);
    }
    snprintf(crl_json_path + off, sizeof(crl_json_path) - (size_t) off, ".json");
}

static void
init(void)
{
    EVP_PKEY *k = atls_key_generate(ATLS_KEY_EC256);
    char     *caid = atls_ca_id(DIR_URL);

    account_key_pem = k != NULL ? atls_key_to_pem(k) : NULL;
    if (account_key_pem == NULL || caid == NULL) {
        abort();
    }
    EVP_PKEY_free(k);
    snprintf(account_key_path, sizeof(account_key_path), "accounts/%s/account.key", caid);
    snprintf(account_json_path, sizeof(account_json_path), "accounts/%s/account.json", caid);
    snprintf(cert_path, sizeof(cert_path), "certs/example.com/%s.pem",
             atls_key_type_name(ATLS_KEY_EC256));
    snprintf(ocsp_path, sizeof(ocsp_path), "certs/example.com/%s.ocsp",
             atls_key_type_name(ATLS_KEY_EC256));
    crl_json_path_init();
    free(caid);
    atls_log_set(quiet, NULL, ATLS_LOG_ERR);
}

static void
fuzz_generation(atls_store_t *st, mem_t *m)
{
    uint64_t g = atls_store_generation(st);
    int      ok = atls_store_bump_generation(st) == ATLS_STORE_OK;
    char     want[64];
    size_t   i;

    if (getenv("FUZZ_STORE_DEBUG")) {
        /* FUZZ_STORE_DEBUG=1 shows what a seed parses to (for writing seeds). */
        fprintf(stderr, "generation: %llu, bump %s, wrote \"%s\"\n", (unsigned long long) g,
                ok ? "ok" : "failed", m->put);
    }
    if (!ok) {
        return;
    }
    /* Accepted: a decimal first line, the format written ("<n>\n"). */
    for (i = 0; i < m->len && isdigit((unsigned char) m->data[i]); i++) {
    }
    if (i == 0 || !(i == m->len || m->data[i] == '\n' || m->data[i] == '\0')) {
        abort();
    }
    snprintf(want, sizeof(want), "%llu\n", (unsigned long long) (g + 1));
    if (m->n_put != 1 || strcmp(m->put, want) != 0) {
        abort();
    }
}

static void
fuzz_account(atls_store_t *st)
{
    EVP_PKEY *key = NULL;
    char     *url = NULL, err[256];
    int       created = 0;

    err[0] = '\0';
    if (atls_store_load_account(st, DIR_URL, &key, &url, &created, err, sizeof(err))
        == ATLS_STORE_OK)
    {
        if (key == NULL || created) {
            abort();
        }
    } else if (key != NULL || url != NULL || err[0] == '\0') {
        abort();
    }
    if (getenv("FUZZ_STORE_DEBUG")) {
        fprintf(stderr, "account: key %s url %s err \"%s\"\n", key ? "yes" : "no",
                url ? url : "-", err);
    }
    EVP_PKEY_free(key);
    free(url);
}

static void
fuzz_cert(atls_store_t *st)
{
    EVP_PKEY       *key = NULL;
    STACK_OF(X509) *chain = NULL;
    char            err[256];

    err[0] = '\0';
    if (atls_store_load_cert(st, "example.com", ATLS_KEY_EC256, &key, &chain,
                             err, sizeof(err)) == ATLS_STORE_OK)
    {
        if (key == NULL || chain == NULL || sk_X509_num(chain) < 1) {
            abort();
        }
    } else if (key != NULL || chain != NULL || err[0] == '\0') {
        abort();
    }
    if (getenv("FUZZ_STORE_DEBUG")) {
        fprintf(stderr, "cert: key %s chain %d err \"%s\"\n", key ? "yes" : "no",
                chain ? sk_X509_num(chain) : 0, err);
    }
    EVP_PKEY_free(key);
    atls_chain_free(chain);
}

/* The facts are believed only for the URL asked, and only what may go
 * back into a request header; the CRL itself (never there) makes the entry
 * NOTFOUND. */
static void
fuzz_crl_facts(atls_store_t *st)
{
    atls_crl_cache_t c;
    unsigned char   *der = NULL;
    size_t           len = 0;
    char             err[256];
    const char      *p;
    int              rc;

    err[0] = '\0';
    rc = atls_store_load_crl(st, CRL_URL, &c, NULL, NULL, err, sizeof(err));
    if (rc == ATLS_STORE_OK) {
        if (c.url == NULL || strcmp(c.url, CRL_URL) != 0) {
            abort();
        }
        for (p = c.etag; p != NULL && *p; p++) {
            if (*p == '\r' || *p == '\n') {
                abort();
            }
        }
        for (p = c.last_modified; p != NULL && *p; p++) {
            if (*p == '\r' || *p == '\n') {
                abort();
            }
        }
    } else if (c.url != NULL || c.etag != NULL || err[0] == '\0') {
        abort();
    }
    atls_crl_cache_free(&c);
    rc = atls_store_load_crl(st, CRL_URL, &c, &der, &len, err, sizeof(err));
    if (rc == ATLS_STORE_OK || der != NULL || c.url != NULL) {
        abort();
    }
}

static void
fuzz_ocsp(atls_store_t *st, const mem_t *m)
{
    unsigned char *der = NULL;
    size_t         len = 0;
    char           err[256];

    err[0] = '\0';
    if (atls_store_load_ocsp(st, "example.com", ATLS_KEY_EC256, &der, &len, err,
                             sizeof(err)) == ATLS_STORE_OK)
    {
        if (len != m->len || len == 0 || len > ATLS_OCSP_MAX_BYTES
            || memcmp(der, m->data, len) != 0)
        {
            abort();
        }
    } else if (der != NULL || err[0] == '\0') {
        abort();
    }
    free(der);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    atls_store_t st;
    mem_t        m;

    if (account_key_pem == NULL) {
        init();
    }
    if (size < 1) {
        return 0;
    }
    memset(&m, 0, sizeof(m));
    m.data = (const char *) data + 1;
    m.len = size - 1;
    memset(&st, 0, sizeof(st));
    st.ops = &mem_ops;
    st.impl = &m;
    st.location = "mem:";
    if (data[0] == 4) {
        m.path = crl_json_path;
        fuzz_crl_facts(&st);
        return 0;
    }
    if (data[0] == 5) {
        m.path = ocsp_path;
        fuzz_ocsp(&st, &m);
        return 0;
    }
    switch (data[0] % 4) {
    case 0:
        m.path = "generation";
        fuzz_generation(&st, &m);
        break;
    case 1:
        m.path = account_json_path;
        m.key_path = account_key_path;
        fuzz_account(&st);
        break;
    case 2:
        m.path = account_key_path;
        fuzz_account(&st);
        break;
    default:
        m.path = cert_path;
        fuzz_cert(&st);
        break;
    }
    return 0;
}
