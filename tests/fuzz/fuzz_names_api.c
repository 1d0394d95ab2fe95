/*
 * libFuzzer: the admin API of dynamic names (atls_names_api) takes its
 * path, query and body from any client the operator lets through, and the
 * registry entries it reads back are the worker's files.  Over an
 * in-memory store (the ops table) holding one registry entry:
 *
 *   flags(1) path-length(1) path query-length(1) query body
 *
 * flags % 5 picks the method (GET, PUT, DELETE, HEAD, POST); flag 0x80:
 * the path is used as given, else it is "/names/" + path; flag 0x40: the
 * body is written as a registry entry and the registry listed instead;
 * query-length 255: no query.  Every answer must be a known status with
 * JSON ({"error": why} for a 4xx), a registered name must pass the name
 * check again unchanged, never a crash or a leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "atls_names.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MEM_FILES 16

typedef struct {
    char   *path[MEM_FILES];
    char   *data[MEM_FILES];
    size_t  len[MEM_FILES];
} mem_t;

static int
mem_find(mem_t *m, const char *path)
{
    int i;

    for (i = 0; i < MEM_FILES; i++) {
        if (m->path[i] != NULL && strcmp(m->path[i], path) == 0) {
            return i;
        }
    }
    return -1;
}

static int
mem_get(atls_store_t *st, const char *path, char **data, size_t *len, char *err,
        size_t errlen)
{
    mem_t *m = st->impl;
    int    i = mem_find(m, path);

    *data = NULL;
    if (i < 0) {
        snprintf(err, errlen, "%s: not found", path);
        return ATLS_STORE_NOTFOUND;
    }
    *data = malloc(m->len[i] + 1);      /* exact size plus a NUL, as fs gives */
    if (*data == NULL) {
        abort();
    }
    memcpy(*data, m->data[i], m->len[i]);
    (*data)[m->len[i]] = '\0';
    if (len != NULL) {
        *len = m->len[i];
    }
    return ATLS_STORE_OK;
}

static int
mem_put(atls_store_t *st, const char *path, const char *data, size_t len, int is_private,
        char *err, size_t errlen)
{
    mem_t *m = st->impl;
    int    i = mem_find(m, path);

    (void) is_private;
    if (i < 0) {
        for (i = 0; i < MEM_FILES && m->path[i] != NULL; i++) {
        }
        if (i == MEM_FILES) {
            snprintf(err, errlen, "%s: store full", path);
            return ATLS_STORE_ERROR;
        }
        m->path[i] = strdup(path);
    }
    free(m->data[i]);
    m->data[i] = malloc(len + 1);
    if (m->path[i] == NULL || m->data[i] == NULL) {
        abort();
    }
    memcpy(m->data[i], data, len);
    m->len[i] = len;
    return ATLS_STORE_OK;
}

static void
mem_drop(mem_t *m, int i)
{
    free(m->path[i]);
    free(m->data[i]);
    m->path[i] = m->data[i] = NULL;
}

static int
mem_del(atls_store_t *st, const char *path, char *err, size_t errlen)
{
    mem_t *m = st->impl;
    int    i = mem_find(m, path);

    if (i < 0) {
        snprintf(err, errlen, "%s: not found", path);
        return ATLS_STORE_NOTFOUND;
    }
    mem_drop(m, i);
    return ATLS_STORE_OK;
}

static int
mem_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static int
mem_list(atls_store_t *st, const char *dir, char ***names, size_t *n, char *err,
         size_t errlen)
{
    mem_t  *m = st->impl;
    size_t  dl = strlen(dir), k = 0;
    char  **v = calloc(MEM_FILES + 1, sizeof(*v));
    int     i;

    (void) err;
    (void) errlen;
    if (v == NULL) {
        abort();
    }
    for (i = 0; i < MEM_FILES; i++) {
        if (m->path[i] != NULL && strncmp(m->path[i], dir, dl) == 0 && m->path[i][dl] == '/'
            && strchr(m->path[i] + dl + 1, '/') == NULL)
        {
            v[k++] = strdup(m->path[i] + dl + 1);
        }
    }
    qsort(v, k, sizeof(*v), mem_cmp);
    *names = v;
    *n = k;
    if (k == 0) {
        free(v);
        *names = NULL;
        return ATLS_STORE_NOTFOUND;
    }
    return ATLS_STORE_OK;
}

static int
mem_lock(atls_store_t *st, const char *name, int wait, atls_store_lock_t **out, char *err,
         size_t errlen)
{
    (void) st;
    (void) name;
    (void) wait;
    (void) err;
    (void) errlen;
    *out = (atls_store_lock_t *) st;    /* any non-NULL token */
    return ATLS_STORE_OK;
}

static void
mem_unlock(atls_store_t *st, atls_store_lock_t *lk)
{
    (void) st;
    (void) lk;
}

static const atls_store_ops_t mem_ops = {
    "mem", mem_get, mem_put, mem_del, mem_list, mem_lock, mem_unlock, NULL, NULL
};

static const char *const entry =
    "{\"name\":\"a.example\",\"state\":\"active\",\"source\":\"cli\","
    "\"added\":\"2026-11-29T19:00:00Z\",\"home\":\"shop\",\"by\":\"uid 0 (root)\"}";

/* What the API answered must hold together. */
static void
check_reply(int status, const char *out, size_t out_len)
{
    json_t *j, *why;

    if (status == 204) {
        if (out != NULL) {
            abort();
        }
        return;
    }
    if (status != 200 && status != 201 && status != 400 && status != 404 && status != 405
        && status != 500)
    {
        abort();
    }
    if (out == NULL || strlen(out) != out_len) {
        abort();
    }
    j = json_loads(out, 0, NULL);
    if (j == NULL) {
        abort();
    }
    if (status >= 400) {
        why = json_object_get(j, "error");
        if (!json_is_string(why) || json_string_length(why) == 0) {
            abort();
        }
    }
    json_decref(j);
}

/* A name the check accepts is accepted again as it is. */
static void
check_name(const uint8_t *p, size_t n)
{
    char out[256], again[256], why[160];

    if (atls_name_check((const char *) p, n, p[0] & 1, 0, out, sizeof(out), why,
                        sizeof(why)) != 0)
    {
        if (why[0] == '\0') {
            abort();
        }
        return;
    }
    if (atls_name_check(out, strlen(out), 1, 127, again, sizeof(again), why, sizeof(why)) != 0
        || strcmp(out, again) != 0)
    {
        abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = { "GET", "PUT", "DELETE", "HEAD", "POST" };
    atls_store_t st;
    mem_t        m;
    char         path[300], query[300], *out = NULL, err[256];
    size_t       plen, qlen, off, out_len = 0;
    int          status = 0, i, raw_path;
    uint8_t      flags;

    if (size < 3) {
        return 0;
    }
    flags = data[0];
    plen = data[1];
    if (2 + plen + 1 > size) {
        return 0;
    }
    if (plen > 0) {
        check_name(data + 2, plen);
    }
    raw_path = (flags & 0x80) != 0;
    snprintf(path, sizeof(path), "%s%.*s", raw_path ? "" : "/names/", (int) plen,
             (const char *) data + 2);
    if (memchr(data + 2, '\0', plen) != NULL) {
        return 0;       /* a host never hands over a path with a NUL */
    }
    qlen = data[2 + plen];
    off = 3 + plen;
    if (qlen != 255) {
        if (off + qlen > size) {
            return 0;
        }
        snprintf(query, sizeof(query), "%.*s", (int) qlen, (const char *) data + off);
        off += qlen;
    }

    memset(&m, 0, sizeof(m));
    st.ops = &mem_ops;
    st.impl = &m;
    st.location = (char *) "mem:";
    if (mem_put(&st, "names/a.example.json", entry, strlen(entry), 0, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        abort();
    }
    if (flags & 0x40) {
        /* the worker's file: whatever it holds, listing goes on */
        if (mem_put(&st, "names/b.example.json", (const char *) data + off, size - off, 0,
                    err, sizeof(err)) != ATLS_STORE_OK)
        {
            abort();
        }
        (void) atls_names_api(&st, NULL, "GET", "/names", qlen != 255 ? query : NULL, NULL, 0,
                              "api fuzz", 1000, &status, &out, &out_len);
    } else {
        (void) atls_names_api(&st, NULL, methods[flags % 5], path,
                              qlen != 255 ? query : NULL, (const char *) data + off,
                              size - off, "api fuzz", 1000, &status, &out, &out_len);
    }
    check_reply(status, out, out_len);
    free(out);
    for (i = 0; i < MEM_FILES; i++) {
        mem_drop(&m, i);
    }
    return 0;
}
