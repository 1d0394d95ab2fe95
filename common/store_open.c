/*
 * Opening a store from the one string every caller is given: a directory
 * (the filesystem store) or a Redis URL with its options (issue 12).  One
 * place decides what a spec means, so the CLI and the hosts agree.
 */
#include <ctype.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "atls_redis.h"
#include "atls_store.h"
#include "store_redis_int.h"

int
atls_store_spec_is_redis(const char *spec)
{
    /* lower case only, as atls_redis_conf_parse reads it */
    return spec != NULL
           && (strncmp(spec, "redis://", 8) == 0 || strncmp(spec, "rediss://", 9) == 0);
}

/* "scheme://..." that is not Redis: the length of the scheme, else 0.  A
 * directory may contain "://" further on, never as a scheme. */
static size_t
spec_other_scheme(const char *spec)
{
    size_t i;

    if (!isalpha((unsigned char) spec[0])) {
        return 0;
    }
    for (i = 1; isalnum((unsigned char) spec[i]) || spec[i] == '+' || spec[i] == '-'
                || spec[i] == '.'; i++) {
    }
    return strncmp(spec + i, "://", 3) == 0 ? i : 0;
}

/* Parses a Redis spec into c; key_file is required. */
static int
spec_redis_conf(const char *spec, atls_redis_conf_t *c, char *err, size_t errlen)
{
    if (atls_redis_conf_parse_line(spec, c, err, errlen) != 0) {
        return -1;
    }
    if (c->key_file == NULL) {
        snprintf(err, errlen, "redis option key_file: required (private keys are "
                 "encrypted at rest with it)");
        atls_redis_conf_free(c);
        return -1;
    }
    return 0;
}

int
atls_store_spec_check(const char *spec, char *err, size_t errlen)
{
    atls_redis_conf_t c;
    size_t            n;

    if (spec == NULL || spec[0] == '\0') {
        snprintf(err, errlen, "store: empty (a directory, or a redis:// URL)");
        return -1;
    }
    if (atls_store_spec_is_redis(spec)) {
        if (spec_redis_conf(spec, &c, err, errlen) != 0) {
            return -1;
        }
        atls_redis_conf_free(&c);
        return ATLS_STORE_SPEC_REDIS;
    }
    n = spec_other_scheme(spec);
    if (n > 0) {
        /* the rest may hold a password: only the scheme is repeated */
        snprintf(err, errlen, "store: unknown scheme \"%.*s://\" (a directory, "
                 "redis:// or rediss://)", (int) (n > 32 ? 32 : n), spec);
        return -1;
    }
    return ATLS_STORE_SPEC_FS;
}

/* The key file chooses what new values are sealed with: nobody but the
 * user running autotls (or root) may own it.  Its mode and content are
 * checked by atls_redis_key_load. */
int
atls_store_key_file_owned(const char *file, char *err, size_t errlen)
{
    struct stat    sb;
    struct passwd *pw;
    uid_t          me = geteuid();

    if (lstat(file, &sb) != 0) {
        return 0;   /* atls_redis_key_load says why */
    }
    if (sb.st_uid == me || sb.st_uid == 0) {
        return 0;
    }
    pw = getpwuid(me);
    snprintf(err, errlen, "redis key_file %s: owned by uid %ld, not by %s (uid %ld) "
             "who runs autotls, nor by root: refused", file, (long) sb.st_uid,
             pw != NULL ? pw->pw_name : "the user", (long) me);
    return -1;
}

/* A wrong key file is told at open rather than at the first private read:
 * the key-check entry is sealed with the key the store's values use. */
static int
key_check(atls_store_t *st, const char *key_file, char *err, size_t errlen)
{
    char   why[512];
    char  *data = NULL;
    size_t len = 0;
    int    rc;

    rc = st->ops->get(st, ATLS_STORE_KEYCHECK_PATH, &data, &len, why, sizeof(why));
    if (rc == ATLS_STORE_NOTFOUND) {
        rc = st->ops->put(st, ATLS_STORE_KEYCHECK_PATH, ATLS_STORE_KEYCHECK_TEXT,
                          strlen(ATLS_STORE_KEYCHECK_TEXT), 1, err, errlen);
        return rc == ATLS_STORE_OK ? 0 : -1;
    }
    if (rc == ATLS_STORE_OK && len == strlen(ATLS_STORE_KEYCHECK_TEXT)
        && memcmp(data, ATLS_STORE_KEYCHECK_TEXT, len) == 0)
    {
        free(data);
        return 0;
    }
    free(data);
    if (rc == ATLS_STORE_OK) {
        snprintf(why, sizeof(why), "%s: unexpected content", ATLS_STORE_KEYCHECK_PATH);
    }
    snprintf(err, errlen, "redis key_file %s: not the key this store's values are "
             "sealed with (%s)", key_file, why);
    return -1;
}

static atls_store_t *
open_redis(const char *spec, unsigned flags, char *err, size_t errlen)
{
    atls_redis_conf_t c;
    atls_store_t     *st = NULL;

    if (spec_redis_conf(spec, &c, err, errlen) != 0) {
        return NULL;
    }
    if ((flags & ATLS_STORE_SPEC_KEY_OWNER) && atls_store_key_file_owned(c.key_file, err, errlen) != 0) {
        goto done;
    }
    st = atls_store_redis_open(&c, err, errlen);
    if (st != NULL && !(flags & ATLS_STORE_SPEC_NO_KEY_CHECK)
        && key_check(st, c.key_file, err, errlen) != 0)
    {
        atls_store_close(st);
        st = NULL;
    }

done:
    atls_redis_conf_free(&c);
    return st;
}

atls_store_t *
atls_store_open_spec(const char *spec, unsigned flags, char *err, size_t errlen)
{
    switch (atls_store_spec_check(spec, err, errlen)) {
    case ATLS_STORE_SPEC_FS:
        return atls_store_fs_open(spec, err, errlen);
    case ATLS_STORE_SPEC_REDIS:
        return open_redis(spec, flags, err, errlen);
    default:
        return NULL;
    }
}

int
atls_store_path_private(const char *path)
{
    /* the notification queue holds delivery state with the sinks' secrets */
    return atls_rs_must_seal(path) || strncmp(path, "events/", 7) == 0;
}
