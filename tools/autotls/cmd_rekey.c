/*
 * autotls rekey: re-seal every private value of a Redis store with a new
 * key file (docs/store.md, "Rotating the key file").
 *
 * What is sealed is read from Redis itself (the first byte of each value),
 * not guessed from the path, so a value any caller wrote as private is
 * re-sealed too.  A value the old key cannot open but the new one can was
 * re-sealed by an earlier run: a re-run finishes an interrupted rekey.  The
 * key-check entry goes last, so until everything is re-sealed the old key
 * file still opens the store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_redis.h"
#include "cli.h"

typedef struct {
    atls_store_t *old_st, *new_st;
    atls_redis_t *raw;           /* to see which values are sealed */
    int           verbose;
    size_t        resealed, already, failed;
} rekey_t;

typedef enum { RAW_NONE, RAW_SEALED, RAW_OTHER, RAW_ERROR } raw_kind_t;

/* What Redis holds for a store path: nothing (a directory), a sealed
 * value, or anything else (a public value, a log list). */
static raw_kind_t raw_kind(rekey_t *rk, const char *path)
{
    redisReply *r = NULL;
    raw_kind_t  kind = RAW_ERROR;
    char        err[512];
    char       *key;

    key = atls_store_redis_key(rk->old_st, path);
    if (key == NULL) {
        cli_error("rekey: %s: not a valid store path", path);
        return RAW_ERROR;
    }
    if (atls_redis_callv(rk->raw, &r, err, sizeof(err), "TYPE", key, NULL) != 0) {
        cli_error("rekey: %s: %s", key, err);
    } else if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "none") == 0) {
        kind = RAW_NONE;
    } else if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "string") == 0) {
        freeReplyObject(r);
        r = NULL;
        if (atls_redis_callv(rk->raw, &r, err, sizeof(err), "GETRANGE", key, "0", "0",
                             NULL) != 0)
        {
            cli_error("rekey: %s: %s", key, err);
        } else {
            kind = r->type == REDIS_REPLY_STRING && r->len == 1
                   && (unsigned char) r->str[0] == ATLS_REDIS_SEAL_VERSION
                   ? RAW_SEALED : RAW_OTHER;
        }
    } else {
        kind = RAW_OTHER;
    }
    if (r != NULL) {
        freeReplyObject(r);
    }
    free(key);
    return kind;
}

/* One sealed value: opened with the old key, sealed with the new one,
 * read back. */
static void reseal(rekey_t *rk, const char *path)
{
    char   err[512], err2[512];
    char  *clear = NULL, *back = NULL;
    size_t len = 0, blen = 0;
    int    rc;

    rc = rk->old_st->ops->get(rk->old_st, path, &clear, &len, err, sizeof(err));
    if (rc != ATLS_STORE_OK) {
        if (rk->new_st->ops->get(rk->new_st, path, &back, &blen, err2, sizeof(err2))
            == ATLS_STORE_OK)
        {
            rk->already++;      /* an earlier run re-sealed it */
            goto done;
        }
        cli_error("rekey: %s", err);
        rk->failed++;
        goto done;
    }
    rc = rk->new_st->ops->put(rk->new_st, path, clear, len, 1, err, sizeof(err));
    if (rc == ATLS_STORE_OK) {
        rc = rk->new_st->ops->get(rk->new_st, path, &back, &blen, err, sizeof(err));
        if (rc == ATLS_STORE_OK && (blen != len || memcmp(back, clear, len) != 0)) {
            snprintf(err, sizeof(err), "%s: read back different from what was written",
                     path);
            rc = ATLS_STORE_ERROR;
        }
    }
    if (rc != ATLS_STORE_OK) {
        cli_error("rekey: %s", err);
        rk->failed++;
        goto done;
    }
    rk->resealed++;
    if (rk->verbose) {
        printf("re-sealed %s\n", path);
    }

done:
    if (clear != NULL) {
        explicit_bzero(clear, len);
    }
    if (back != NULL) {
        explicit_bzero(back, blen);
    }
    free(clear);
    free(back);
}

static void walk(rekey_t *rk, const char *dir)
{
    char   err[512];
    char **names = NULL;
    char  *path;
    size_t n = 0, i, plen;

    if (rk->old_st->ops->list(rk->old_st, dir, &names, &n, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        cli_error("rekey: %s", err);
        rk->failed++;
        return;
    }
    for (i = 0; i < n; i++) {
        if (dir[0] == '\0' && strcmp(names[i], ATLS_STORE_KEYCHECK_PATH) == 0) {
            continue;   /* last, by rekey_run */
        }
        plen = strlen(dir) + strlen(names[i]) + 2;
        path = malloc(plen);
        if (path == NULL) {
            abort();
        }
        snprintf(path, plen, "%s%s%s", dir, dir[0] != '\0' ? "/" : "", names[i]);
        switch (raw_kind(rk, path)) {
        case RAW_NONE:   walk(rk, path); break;
        case RAW_SEALED: reseal(rk, path); break;
        case RAW_OTHER:  break;
        default:         rk->failed++; break;
        }
        free(path);
    }
    atls_strv_free(names, n);
}

/* The store with the new key: the same URL and options, key_file the
 * new one; no key check (the entry is still sealed with the old key). */
static atls_store_t *open_new(const cli_opts_t *o, const char *spec, atls_redis_t **raw)
{
    atls_redis_conf_t c;
    atls_store_t     *st = NULL;
    char              err[512];

    if (atls_redis_conf_parse_line(spec, &c, err, sizeof(err)) != 0) {
        cli_error("--store: %s", err);
        return NULL;
    }
    if (strcmp(c.key_file, o->new_key) == 0) {
        cli_error("rekey: --new-key %s is the store's key_file already", o->new_key);
        goto done;
    }
    free(c.key_file);
    c.key_file = atls_strdup(o->new_key);
    if (atls_store_key_file_owned(c.key_file, err, sizeof(err)) != 0) {
        cli_error("rekey: --new-key: %s", err);
        goto done;
    }
    st = atls_store_redis_open(&c, err, sizeof(err));
    if (st == NULL) {
        cli_error("rekey: --new-key: %s", err);
        goto done;
    }
    *raw = atls_redis_open_sync(&c, err, sizeof(err));
    if (*raw == NULL) {
        cli_error("rekey: %s", err);
        atls_store_close(st);
        st = NULL;
    }

done:
    atls_redis_conf_free(&c);
    return st;
}

/* Last: from now on the old key no longer opens the store. */
static void finish_key_check(rekey_t *rk)
{
    char err[512];

    if (raw_kind(rk, ATLS_STORE_KEYCHECK_PATH) != RAW_NONE) {
        reseal(rk, ATLS_STORE_KEYCHECK_PATH);
    } else if (rk->new_st->ops->put(rk->new_st, ATLS_STORE_KEYCHECK_PATH,
                                    ATLS_STORE_KEYCHECK_TEXT,
                                    strlen(ATLS_STORE_KEYCHECK_TEXT), 1, err,
                                    sizeof(err)) != ATLS_STORE_OK)
    {
        cli_error("rekey: %s", err);
        rk->failed++;
    }
}

/* The old key must open the store's key check, or the new one must (an
 * earlier run re-sealed it: this one finishes what a node wrote with the
 * old key meanwhile); a key file that is neither is told here. */
static int keys_check(rekey_t *rk, const char *new_key)
{
    char   err[512], err2[512];
    char  *data = NULL;
    size_t len = 0;
    int    rc;

    rc = rk->old_st->ops->get(rk->old_st, ATLS_STORE_KEYCHECK_PATH, &data, &len,
                              err, sizeof(err));
    free(data);
    data = NULL;
    if (rc == ATLS_STORE_OK || rc == ATLS_STORE_NOTFOUND) {
        return 0;
    }
    if (rk->new_st->ops->get(rk->new_st, ATLS_STORE_KEYCHECK_PATH, &data, &len,
                             err2, sizeof(err2)) == ATLS_STORE_OK)
    {
        free(data);
        printf("the store was re-sealed with %s already: re-sealing what the old "
               "key still opens\n", new_key);
        return 0;
    }
    cli_error("rekey: neither the store's key_file nor --new-key %s opens the store's "
              "values (%s)", new_key, err);
    return -1;
}

static int rekey_run(cli_opts_t *o)
{
    rekey_t     rk;
    const char *spec = o->store_dir;
    char        err[512];

    memset(&rk, 0, sizeof(rk));
    rk.verbose = o->verbose;
    if (!(o->given & CLI_O_NEW_KEY)) {
        return cli_usage_error("rekey", "--new-key FILE is required");
    }
    if (!atls_store_spec_is_redis(spec)) {
        return cli_usage_error("rekey", "--store must be a redis:// or rediss:// store "
                               "(the filesystem store is not encrypted)");
    }
    rk.old_st = atls_store_open_spec(spec, ATLS_STORE_SPEC_KEY_OWNER
                                     | ATLS_STORE_SPEC_NO_KEY_CHECK, err, sizeof(err));
    if (rk.old_st == NULL) {
        cli_error("--store: %s", err);
        goto done;
    }
    rk.new_st = open_new(o, spec, &rk.raw);
    if (rk.new_st == NULL || keys_check(&rk, o->new_key) != 0) {
        rk.failed++;
        goto done;
    }
    walk(&rk, "");
    if (rk.failed == 0) {
        finish_key_check(&rk);
    }
    printf("rekey %s: %zu re-sealed with %s, %zu already, %zu failed\n",
           rk.old_st->location, rk.resealed, o->new_key, rk.already, rk.failed);
    if (rk.failed > 0) {
        printf("not finished: run rekey again\n");
    }

done:
    if (rk.raw != NULL) {
        atls_redis_free(rk.raw);
    }
    if (rk.new_st != NULL) {
        atls_store_close(rk.new_st);
    }
    if (rk.old_st != NULL) {
        atls_store_close(rk.old_st);
    }
    return rk.old_st != NULL && rk.failed == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

const cli_command_t cli_cmd_rekey = {
    "rekey",
    CLI_O_STORE | CLI_O_NEW_KEY | CLI_O_VERBOSE,
    0, 0,
    rekey_run,
    "Usage: autotls rekey --store 'redis://... key_file=OLD' --new-key NEW [-v]\n"
    "\n"
    "Re-seal every private value of a Redis store (keys, secrets) with the key\n"
    "file NEW (32 random bytes, or 64 hex digits: openssl rand -hex 32; mode\n"
    "0600, owned by you or root).  Afterwards OLD no longer opens the store.\n"
    "Rotation: copy NEW to every node, run rekey (again until it reports 0\n"
    "failed), then point every node's key_file at NEW and reload.\n"
    "\n"
    "  --store SPEC     the Redis store with its current key_file (required)\n"
    "  --new-key FILE   the new key file\n"
    "  -v, --verbose    one line per value re-sealed\n"
    "  -h, --help       this text\n"
};
