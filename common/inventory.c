/*
 * The inventory of certificates a server serves that autotls does not
 * manage: one item per file named in the configuration (nginx
 * ssl_certificate, Apache SSLCertificateFile), read once by the master /
 * parent at start and reload, its JSON form kept in the store, and its
 * findings logged once.
 *
 * Such a file may hold the private key too (Apache allows it): only the
 * CERTIFICATE blocks are handed to OpenSSL; every other block is skipped
 * as text, so the key is never decoded here.
 */
#define _GNU_SOURCE 1   /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include "atls.h"
#include "atls_inventory.h"
#include "atls_schedule.h"
#include "store_int.h"

#define INVENTORY_FILE_MAX   (1024 * 1024)   /* a chain file is a few KiB */
#define INVENTORY_FINDINGS   16
#define PEM_CERT_BEGIN       "-----BEGIN CERTIFICATE-----"
#define PEM_CERT_END         "-----END CERTIFICATE-----"

static char *
inventory_id(const char *path)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    char          id[7 + 16 + 1];
    size_t        i;

    SHA256((const unsigned char *) path, strlen(path), md);
    memcpy(id, "static-", 7);
    for (i = 0; i < 8; i++) {
        snprintf(id + 7 + 2 * i, 3, "%02x", md[i]);
    }
    return atls_strdup(id);
}

/* The whole file, at most INVENTORY_FILE_MAX bytes, a regular file only.
 * -1 with why set. */
static int
inventory_read(const char *path, char **data, size_t *len, char *why, size_t whylen)
{
    struct stat sb;
    ssize_t     got;
    size_t      have = 0;
    char       *buf = NULL;
    int         fd, rc = -1;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(why, whylen, "open() failed: %s", strerror(errno));
        return -1;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(why, whylen, "not a regular file");
        goto out;
    }
    if (sb.st_size > INVENTORY_FILE_MAX) {
        snprintf(why, whylen, "larger than %d bytes", INVENTORY_FILE_MAX);
        goto out;
    }
    buf = malloc((size_t) sb.st_size + 1);
    if (buf == NULL) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    while (have < (size_t) sb.st_size) {
        got = read(fd, buf + have, (size_t) sb.st_size - have);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            snprintf(why, whylen, "read() failed: %s", got < 0 ? strerror(errno) : "short");
            goto out;
        }
        have += (size_t) got;
    }
    buf[have] = '\0';
    *data = buf;
    *len = have;
    buf = NULL;
    rc = 0;

out:
    free(buf);
    close(fd);
    return rc;
}

/* Every CERTIFICATE block of text, in order; other blocks are passed
 * over as text, never decoded. */
static STACK_OF(X509) *
inventory_parse(const char *text, size_t len, char *why, size_t whylen)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    const char     *p = text, *end = text + len, *b, *e;
    BIO            *bio;
    X509           *x;

    while (chain != NULL && (b = memmem(p, (size_t) (end - p), PEM_CERT_BEGIN,
                                        sizeof(PEM_CERT_BEGIN) - 1)) != NULL) {
        e = memmem(b, (size_t) (end - b), PEM_CERT_END, sizeof(PEM_CERT_END) - 1);
        if (e == NULL) {
            snprintf(why, whylen, "certificate %d has no END line", sk_X509_num(chain) + 1);
            goto failed;
        }
        e += sizeof(PEM_CERT_END) - 1;
        bio = BIO_new_mem_buf(b, (int) (e - b));
        x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        if (x == NULL || !sk_X509_push(chain, x)) {
            X509_free(x);
            snprintf(why, whylen, "certificate %d does not parse", sk_X509_num(chain) + 1);
            goto failed;
        }
        p = e;
    }
    if (chain != NULL && sk_X509_num(chain) == 0) {
        snprintf(why, whylen, "no certificate in the file");
        goto failed;
    }
    ERR_clear_error();
    return chain;

failed:
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();
    return NULL;
}

int
atls_inventory_load_file(const char *path, atls_inventory_item_t *it)
{
    STACK_OF(X509) *chain = NULL;
    char           *data = NULL, why[256], msg[512];
    size_t          len = 0;

    it->path = atls_strdup(path);
    it->id = inventory_id(path);
    it->loaded = time(NULL);
    if (it->path == NULL || it->id == NULL) {
        return -1;
    }
    why[0] = '\0';
    if (inventory_read(path, &data, &len, why, sizeof(why)) == 0) {
        chain = inventory_parse(data, len, why, sizeof(why));
    }
    if (chain != NULL && atls_cert_facts(chain, &it->facts, why, sizeof(why)) == 0) {
        why[0] = '\0';
    }
    if (why[0] != '\0') {
        snprintf(msg, sizeof(msg), "%s: %s", path, why);
        it->error = atls_strdup(msg);
    }
    sk_X509_pop_free(chain, X509_free);
    free(data);
    return why[0] != '\0' && it->error == NULL ? -1 : 0;
}

void
atls_inventory_item_free(atls_inventory_item_t *it)
{
    if (it == NULL) {
        return;
    }
    free(it->id);
    free(it->path);
    free(it->server);
    atls_strv_free(it->used_names, it->n_used_names);
    atls_strv_free(it->used_by, it->n_used_by);
    atls_cert_facts_free(&it->facts);
    free(it->error);
    memset(it, 0, sizeof(*it));
}

void
atls_inventory_items_free(atls_inventory_item_t *items, size_t n)
{
    size_t i;

    for (i = 0; items != NULL && i < n; i++) {
        atls_inventory_item_free(&items[i]);
    }
    free(items);
}

/* Appends a copy of s to v unless it is there already. */
static void
inventory_strv_add(char ***v, size_t *n, const char *s)
{
    size_t i;

    if (s == NULL) {
        return;
    }
    for (i = 0; i < *n; i++) {
        if (strcmp((*v)[i], s) == 0) {
            return;
        }
    }
    *v = realloc(*v, (*n + 2) * sizeof(char *));
    if (*v == NULL) {
        abort();
    }
    (*v)[(*n)++] = atls_strdup(s);
    (*v)[*n] = NULL;
}

void
atls_inventory_item_use(atls_inventory_item_t *it, const char *name, const char *where)
{
    inventory_strv_add(&it->used_names, &it->n_used_names, name);
    inventory_strv_add(&it->used_by, &it->n_used_by, where);
}

size_t
atls_inventory_item_findings(const atls_inventory_item_t *it, const atls_warn_t *w,
                             time_t now, atls_finding_t *out, size_t max)
{
    if (it->error != NULL) {
        if (max == 0) {
            return 0;
        }
        out[0].type = ATLS_FINDING_UNREADABLE;
        out[0].severity = ATLS_SEV_CRITICAL;
        snprintf(out[0].detail, sizeof(out[0].detail), "%s", it->error);
        return 1;
    }
    return atls_findings(&it->facts, (const char *const *) it->used_names,
                         it->n_used_names, w, now, out, max);
}

/* ---- JSON ----------------------------------------------------------------- */

static json_t *
inventory_findings_json(const atls_inventory_item_t *it, const atls_warn_t *w, time_t now)
{
    atls_finding_t fs[INVENTORY_FINDINGS];
    size_t         i, n = atls_inventory_item_findings(it, w, now, fs, INVENTORY_FINDINGS);
    json_t        *a = json_array();

    for (i = 0; a != NULL && i < n; i++) {
        json_array_append_new(a, json_pack("{s:s,s:s,s:s}",
                                           "finding", atls_finding_name(fs[i].type),
                                           "severity", atls_severity_name(fs[i].severity),
                                           "detail", fs[i].detail));
    }
    return a;
}

static void
inventory_facts_to_json(json_t *o, const atls_cert_facts_t *f, time_t now)
{
    atls_meta_set(o, "names", atls_meta_strv(f->names, f->n_names));
    atls_meta_set_str(o, "subject", f->subject);
    atls_meta_set_str(o, "issuer", f->issuer);
    atls_meta_set_str(o, "serial", f->serial);
    atls_meta_set(o, "key", json_pack("{s:s,s:i}", "alg", f->key_alg, "bits", f->key_bits));
    atls_meta_set_str(o, "signature", f->sig_alg);
    atls_meta_set(o, "signature_weak", json_boolean(f->sig_sha1));
    atls_meta_set_time(o, "not_before", f->not_before);
    atls_meta_set_time(o, "not_after", f->not_after);
    /* whole days, rounded down: -1 once expired by less than a day */
    atls_meta_set(o, "days_left", json_integer((json_int_t) (f->not_after >= now
        ? (f->not_after - now) / 86400 : -((now - f->not_after) / 86400) - 1)));
    atls_meta_set(o, "chain", json_pack("{s:i,s:b,s:b}", "length", (int) f->chain_len,
                                        "complete", f->chain_complete,
                                        "self_signed", f->self_signed));
}

char *
atls_inventory_item_to_json(const atls_inventory_item_t *it, const atls_warn_t *w,
                            time_t now)
{
    json_t *o = json_object();
    char   *out;

    if (o == NULL) {
        return NULL;
    }
    atls_meta_set_str(o, "id", it->id);
    atls_meta_set_str(o, "source", "static");
    atls_meta_set_str(o, "path", it->path);
    atls_meta_set_str(o, "server", it->server);
    atls_meta_set(o, "used_names", atls_meta_strv(it->used_names, it->n_used_names));
    atls_meta_set(o, "used_by", atls_meta_strv(it->used_by, it->n_used_by));
    if (it->error == NULL) {
        inventory_facts_to_json(o, &it->facts, now);
    }
    atls_meta_set(o, "error", it->error != NULL ? json_string(it->error) : json_null());
    atls_meta_set(o, "findings", inventory_findings_json(it, w, now));
    atls_meta_set_time(o, "loaded", it->loaded);
    atls_meta_set(o, "warned_level", json_integer(it->warned_level));
    atls_meta_set_time(o, "expired_sent", it->expired_sent);
    out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return out;
}

static int
inventory_facts_from_json(json_t *o, atls_cert_facts_t *f, char *err, size_t errlen)
{
    json_t   *key = json_object_get(o, "key"), *chain = json_object_get(o, "chain");
    char     *s = NULL;
    long long bits = 0, len = 0;
    int       b;

    if (atls_meta_get_strv(o, "names", "names", 0, &f->names, &f->n_names, err, errlen)
        || atls_meta_get_str(o, "subject", "subject", &f->subject, err, errlen)
        || atls_meta_get_str(o, "issuer", "issuer", &f->issuer, err, errlen)
        || atls_meta_get_str(o, "serial", "serial", &f->serial, err, errlen)
        || atls_meta_get_time(o, "not_before", &f->not_before, err, errlen)
        || atls_meta_get_time(o, "not_after", &f->not_after, err, errlen)
        || atls_meta_get_bool(o, "signature_weak", "signature_weak", &f->sig_sha1,
                              err, errlen)) {
        return -1;
    }
    if (f->serial == NULL || f->not_after == 0) {
        return atls_meta_fail(err, errlen, "field \"serial\" or \"not_after\" is missing");
    }
    if (!json_is_object(key) || !json_is_object(chain)) {
        return atls_meta_fail(err, errlen, "field \"key\" and \"chain\" must be objects");
    }
    if (atls_meta_get_str(key, "alg", "key.alg", &s, err, errlen)) {
        return -1;
    }
    snprintf(f->key_alg, sizeof(f->key_alg), "%s", s != NULL ? s : "?");
    free(s);
    if (atls_meta_get_int(key, "bits", "key.bits", 0, 65536, &bits, err, errlen)) {
        return -1;
    }
    f->key_bits = (int) bits;
    if (atls_meta_get_str(o, "signature", "signature", &s, err, errlen)) {
        return -1;
    }
    snprintf(f->sig_alg, sizeof(f->sig_alg), "%s", s != NULL ? s : "?");
    free(s);
    if (atls_meta_get_int(chain, "length", "chain.length", 1, 100, &len, err, errlen)
        || atls_meta_get_bool(chain, "complete", "chain.complete", &f->chain_complete,
                              err, errlen)
        || atls_meta_get_bool(chain, "self_signed", "chain.self_signed", &b, err, errlen)) {
        return -1;
    }
    if (len == 0) {
        return atls_meta_fail(err, errlen, "field \"chain.length\" is missing");
    }
    f->chain_len = (size_t) len;
    f->self_signed = b;
    return 0;
}

static int
inventory_from_json_obj(json_t *o, atls_inventory_item_t *it, char *err, size_t errlen)
{
    long long level = 0;

    if (!json_is_object(o)) {
        return atls_meta_fail(err, errlen, "not a JSON object");
    }
    if (atls_meta_get_str(o, "id", "id", &it->id, err, errlen)
        || atls_meta_get_str(o, "path", "path", &it->path, err, errlen)
        || atls_meta_get_str(o, "server", "server", &it->server, err, errlen)
        || atls_meta_get_strv(o, "used_names", "used_names", 0, &it->used_names,
                              &it->n_used_names, err, errlen)
        || atls_meta_get_strv(o, "used_by", "used_by", 0, &it->used_by, &it->n_used_by,
                              err, errlen)
        || atls_meta_get_str(o, "error", "error", &it->error, err, errlen)
        || atls_meta_get_time(o, "loaded", &it->loaded, err, errlen)
        || atls_meta_get_int(o, "warned_level", "warned_level", 0, 100L * 365 * 86400,
                             &level, err, errlen)
        || atls_meta_get_time(o, "expired_sent", &it->expired_sent, err, errlen)) {
        return -1;
    }
    it->warned_level = (long) level;
    if (it->id == NULL || !atls_store_id_ok(it->id) || it->path == NULL) {
        return atls_meta_fail(err, errlen, "field \"id\" or \"path\" is missing or invalid");
    }
    if (it->error == NULL) {
        return inventory_facts_from_json(o, &it->facts, err, errlen);
    }
    return 0;
}

int
atls_inventory_item_from_json(const char *json, size_t len, atls_inventory_item_t *it,
                              char *err, size_t errlen)
{
    json_error_t jerr;
    json_t      *o;
    int          rc;

    memset(it, 0, sizeof(*it));
    o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (o == NULL) {
        snprintf(err, errlen, "invalid JSON at line %d: %s", jerr.line, jerr.text);
        return -1;
    }
    rc = inventory_from_json_obj(o, it, err, errlen);
    json_decref(o);
    if (rc != 0) {
        atls_inventory_item_free(it);
    }
    return rc;
}

/* ---- the error log ---------------------------------------------------------- */

static void
inventory_join(char *const *v, size_t n, char *buf, size_t len)
{
    size_t i, used = 0;

    buf[0] = '\0';
    for (i = 0; i < n && used < len; i++) {
        used += (size_t) snprintf(buf + used, len - used, "%s%s", i ? ", " : "", v[i]);
    }
    if (n == 0) {
        snprintf(buf, len, "(no server block)");
    }
}

void
atls_inventory_log_findings(const atls_inventory_item_t *items, size_t n,
                            const atls_warn_t *w, time_t now)
{
    atls_finding_t fs[INVENTORY_FINDINGS];
    char           where[512];
    size_t         i, k, nf;

    for (i = 0; i < n; i++) {
        nf = atls_inventory_item_findings(&items[i], w, now, fs, INVENTORY_FINDINGS);
        inventory_join(items[i].used_by, items[i].n_used_by, where, sizeof(where));
        for (k = 0; k < nf; k++) {
            atls_log(fs[k].severity == ATLS_SEV_CRITICAL ? ATLS_LOG_ERR : ATLS_LOG_WARN,
                     "certificate \"%s\" (used in %s): %s: %s", items[i].path, where,
                     atls_finding_name(fs[k].type), fs[k].detail);
        }
    }
}
