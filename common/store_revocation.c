/*
 * The store's revocation entries (see atls_store.h): the OCSP response
 * stapled with each certificate, and the CRL cache shared by every
 * certificate naming the same CRL.
 *
 * Everything read back is as untrusted as the rest of the store: sizes
 * are capped, the cache's facts are parsed strictly, and a cache entry
 * must name the URL it was asked for (a planted file, or two URLs with
 * one hash, never hands one URL's CRL out as another's).  The responses
 * and CRLs themselves are verified by their users (atls_ocsp_verify,
 * atls_crl_verify) before a fact from them is believed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/evp.h>
#include "atls_store.h"
#include "store_int.h"

/* The largest CRL URL kept (a leaf's CRL DP is far shorter). */
#define CRL_URL_MAX      2048
/* ETag and Last-Modified are sent back as request headers. */
#define CRL_VALIDATOR_MAX 512

/* ---- OCSP responses -------------------------------------------------------- */

/* certs/<id>/<keytype>.ocsp; NULL (err set) when id or kt does not pass. */
static char *
ocsp_path(const char *id, atls_key_type_t kt, char *err, size_t errlen)
{
    const char *ktn = atls_key_type_name(kt);

    if (!atls_store_id_ok(id) || ktn == NULL) {
        snprintf(err, errlen, "invalid certificate id or key type");
        return NULL;
    }
    return atls_store_cat("certs/", id, "/", ktn, ".ocsp", NULL);
}

int
atls_store_save_ocsp(atls_store_t *st, const char *id, atls_key_type_t kt,
                     const unsigned char *der, size_t len, char *err, size_t errlen)
{
    char *path;
    int   rc;

    if (der == NULL || len == 0 || len > ATLS_OCSP_MAX_BYTES) {
        snprintf(err, errlen, "save OCSP response: %zu bytes, refused", der ? len : 0);
        return ATLS_STORE_ERROR;
    }
    path = ocsp_path(id, kt, err, errlen);
    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    /* public: every worker staples it, and it is sent to every client */
    rc = st->ops->put(st, path, (const char *) der, len, 0, err, errlen);
    free(path);
    return rc;
}

int
atls_store_load_ocsp(atls_store_t *st, const char *id, atls_key_type_t kt,
                     unsigned char **der, size_t *len, char *err, size_t errlen)
{
    char  *path, *data = NULL, why[64];
    size_t n = 0;
    int    rc;

    *der = NULL;
    *len = 0;
    path = ocsp_path(id, kt, err, errlen);
    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = st->ops->get(st, path, &data, &n, err, errlen);
    if (rc == ATLS_STORE_OK && (n == 0 || n > ATLS_OCSP_MAX_BYTES)) {
        snprintf(why, sizeof(why), "%zu bytes, not an OCSP response, refused", n);
        atls_store_err_path(st, path, err, errlen, why);
        free(data);
        rc = ATLS_STORE_ERROR;
    } else if (rc == ATLS_STORE_OK) {
        *der = (unsigned char *) data;
        *len = n;
    }
    free(path);
    return rc;
}

int
atls_store_del_ocsp(atls_store_t *st, const char *id, atls_key_type_t kt,
                    char *err, size_t errlen)
{
    char *path = ocsp_path(id, kt, err, errlen);
    int   rc;

    if (path == NULL) {
        return ATLS_STORE_ERROR;
    }
    rc = st->ops->del(st, path, err, errlen);
    free(path);
    return rc;
}

/* ---- the CRL cache --------------------------------------------------------- */

void
atls_crl_cache_free(atls_crl_cache_t *c)
{
    if (c == NULL) {
        return;
    }
    free(c->url);
    free(c->etag);
    free(c->last_modified);
    memset(c, 0, sizeof(*c));
}

/* Printable ASCII without blanks (a URL), or with them (an HTTP
 * validator), at most max bytes: what may go into a request. */
static int
crl_text_ok(const char *s, size_t max, int blanks)
{
    const char *p;

    if (s == NULL || *s == '\0' || strlen(s) > max) {
        return 0;
    }
    for (p = s; *p != '\0'; p++) {
        if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f
            || (*p == ' ' && !blanks))
        {
            return 0;
        }
    }
    return 1;
}

/* crl/<url-id>.<ext>, url-id the lower-case hex SHA-256 of url; NULL
 * (err set) when url is not one we would fetch. */
static char *
crl_path(const char *url, const char *ext, char *err, size_t errlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int  mdlen = 0, i;
    char          hex[2 * EVP_MAX_MD_SIZE + 1];

    if (!crl_text_ok(url, CRL_URL_MAX, 0)) {
        snprintf(err, errlen, "invalid CRL URL");
        return NULL;
    }
    if (EVP_Digest(url, strlen(url), md, &mdlen, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "CRL %.200s: SHA-256 failed", url);
        return NULL;
    }
    for (i = 0; i < mdlen; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    return atls_store_cat("crl/", hex, ".", ext, NULL);
}

static char *
crl_facts_to_json(const atls_crl_cache_t *c)
{
    json_t *o = json_object();
    char   *s = NULL;
    int     rc = 0;

    if (o == NULL) {
        return NULL;
    }
    rc |= atls_meta_set_str(o, "url", c->url);
    rc |= atls_meta_set_str(o, "etag", c->etag);
    rc |= atls_meta_set_str(o, "last_modified", c->last_modified);
    rc |= atls_meta_set_time(o, "fetched", c->fetched);
    rc |= atls_meta_set_time(o, "this_update", c->this_update);
    rc |= atls_meta_set_time(o, "next_update", c->next_update);
    rc |= atls_meta_set_time(o, "next_fetch", c->next_fetch);
    if (rc == 0) {
        s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    }
    json_decref(o);
    return s;
}

static int
crl_members_known(json_t *o, char *err, size_t errlen)
{
    static const char *const known[] = { "url", "etag", "last_modified", "fetched",
                                         "this_update", "next_update", "next_fetch" };
    const char *key;
    json_t     *v;
    size_t      i, n = sizeof(known) / sizeof(known[0]);

    json_object_foreach(o, key, v) {
        for (i = 0; i < n && strcmp(key, known[i]) != 0; i++) {
            /* look further */
        }
        if (i == n) {
            return atls_meta_fail(err, errlen, "unknown field \"%.32s\"", key);
        }
    }
    return 0;
}

/* The facts of url's cache entry; -1 with why naming the field. */
static int
crl_facts_from_json(const char *json, size_t len, const char *url, atls_crl_cache_t *c,
                    char *why, size_t whylen)
{
    json_t      *o;
    json_error_t jerr;
    int          rc = -1;

    o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (o == NULL) {
        atls_meta_fail(why, whylen, "invalid JSON at line %d: %s", jerr.line, jerr.text);
        goto done;
    }
    if (!json_is_object(o)) {
        atls_meta_fail(why, whylen, "top level must be an object");
        goto done;
    }
    if (crl_members_known(o, why, whylen)
        || atls_meta_get_str(o, "url", "url", &c->url, why, whylen)
        || atls_meta_get_str(o, "etag", "etag", &c->etag, why, whylen)
        || atls_meta_get_str(o, "last_modified", "last_modified", &c->last_modified,
                             why, whylen)
        || atls_meta_get_time(o, "fetched", &c->fetched, why, whylen)
        || atls_meta_get_time(o, "this_update", &c->this_update, why, whylen)
        || atls_meta_get_time(o, "next_update", &c->next_update, why, whylen)
        || atls_meta_get_time(o, "next_fetch", &c->next_fetch, why, whylen))
    {
        goto done;
    }
    if (c->url == NULL || strcmp(c->url, url) != 0) {
        /* planted, or another URL with the same hash: never use it */
        atls_meta_fail(why, whylen, "field \"url\" names another URL than %.200s, refused",
                       url);
    } else if (c->etag != NULL && !crl_text_ok(c->etag, CRL_VALIDATOR_MAX, 1)) {
        atls_meta_fail(why, whylen, "field \"etag\" must be printable text");
    } else if (c->last_modified != NULL
               && !crl_text_ok(c->last_modified, CRL_VALIDATOR_MAX, 1))
    {
        atls_meta_fail(why, whylen, "field \"last_modified\" must be printable text");
    } else {
        rc = 0;
    }

done:
    json_decref(o);
    if (rc != 0) {
        atls_crl_cache_free(c);
    }
    return rc;
}

int
atls_store_save_crl(atls_store_t *st, const atls_crl_cache_t *c,
                    const unsigned char *der, size_t len, char *err, size_t errlen)
{
    char *dpath = NULL, *jpath = NULL, *json = NULL;
    int   rc = ATLS_STORE_ERROR;

    if (c == NULL || (der != NULL && (len == 0 || len > ATLS_CRL_MAX_BYTES))) {
        snprintf(err, errlen, "save CRL: invalid arguments");
        return ATLS_STORE_ERROR;
    }
    if ((c->etag != NULL && !crl_text_ok(c->etag, CRL_VALIDATOR_MAX, 1))
        || (c->last_modified != NULL
            && !crl_text_ok(c->last_modified, CRL_VALIDATOR_MAX, 1)))
    {
        snprintf(err, errlen, "CRL %.200s: ETag or Last-Modified is not printable "
                 "text, refused", c->url ? c->url : "");
        return ATLS_STORE_ERROR;
    }
    dpath = crl_path(c->url, "der", err, errlen);
    jpath = crl_path(c->url, "json", err, errlen);
    if (dpath == NULL || jpath == NULL) {
        goto done;
    }
    json = crl_facts_to_json(c);
    if (json == NULL) {
        snprintf(err, errlen, "CRL %.200s: cannot serialise", c->url);
        goto done;
    }
    /* The CRL first: facts never describe a CRL that is not there yet (a
     * crash between the two leaves the new CRL with the old facts, and
     * its users verify the CRL itself anyway). */
    rc = ATLS_STORE_OK;
    if (der != NULL) {
        rc = st->ops->put(st, dpath, (const char *) der, len, 0, err, errlen);
    }
    if (rc == ATLS_STORE_OK) {
        rc = st->ops->put(st, jpath, json, strlen(json), 0, err, errlen);
    }

done:
    free(json);
    free(dpath);
    free(jpath);
    return rc;
}

/* The cached CRL itself, capped. */
static int
crl_load_der(atls_store_t *st, const char *path, unsigned char **der, size_t *len,
             char *err, size_t errlen)
{
    char  *data = NULL, why[64];
    size_t n = 0;
    int    rc;

    rc = st->ops->get(st, path, &data, &n, err, errlen);
    if (rc == ATLS_STORE_OK && (n == 0 || n > ATLS_CRL_MAX_BYTES)) {
        snprintf(why, sizeof(why), "%zu bytes, not a CRL, refused", n);
        atls_store_err_path(st, path, err, errlen, why);
        free(data);
        return ATLS_STORE_ERROR;
    }
    if (rc == ATLS_STORE_OK) {
        *der = (unsigned char *) data;
        *len = n;
    }
    return rc;
}

int
atls_store_load_crl(atls_store_t *st, const char *url, atls_crl_cache_t *c,
                    unsigned char **der, size_t *len, char *err, size_t errlen)
{
    char  *dpath = NULL, *jpath = NULL, *json = NULL, why[300];
    size_t jlen = 0;
    int    rc = ATLS_STORE_ERROR;

    memset(c, 0, sizeof(*c));
    if (der != NULL) {
        *der = NULL;
        *len = 0;
    }
    dpath = crl_path(url, "der", err, errlen);
    jpath = crl_path(url, "json", err, errlen);
    if (dpath == NULL || jpath == NULL) {
        goto done;
    }
    rc = st->ops->get(st, jpath, &json, &jlen, err, errlen);
    if (rc != ATLS_STORE_OK) {
        goto done;
    }
    if (crl_facts_from_json(json, jlen, url, c, why, sizeof(why)) != 0) {
        /* reported, never deleted: the next fetch writes it again */
        atls_store_err_path(st, jpath, err, errlen, why);
        rc = ATLS_STORE_ERROR;
        goto done;
    }
    if (der != NULL) {
        /* facts without their CRL: nothing usable is cached */
        rc = crl_load_der(st, dpath, der, len, err, errlen);
        if (rc != ATLS_STORE_OK) {
            atls_crl_cache_free(c);
        }
    }

done:
    free(json);
    free(dpath);
    free(jpath);
    return rc;
}
