/*
 * autotls migrate: copy everything a store holds to another one (a
 * directory to Redis and back) through the store ops, while servers keep
 * running on the source.
 *
 * The rule for an entry the target already has (docs/store.md, "Moving a
 * store"): a certificate (certs/<id>/) moves as a whole, under the
 * source's "cert-<id>" lock, unless the target's meta.json has a higher
 * generation (the target deployed since: kept); `generation` and
 * `names-generation` take the larger number; the audit log is copied only
 * into a target that has none; the change journals are not copied
 * (journal_of_counter); any other entry is copied when the target lacks it
 * and kept when the target has it (the target is the store in use once
 * servers switched).
 * Every written entry is read back and compared.  Nothing is ever deleted,
 * so a re-run copies only what changed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

typedef struct {
    atls_store_t *from, *to;
    int           verbose;
    size_t        copied, same, kept, failed, busy;
} migrate_t;

/* a + sep + b, malloc'd */
static char *concat(const char *a, const char *sep, const char *b)
{
    size_t n = strlen(a) + strlen(sep) + strlen(b) + 1;
    char  *p = malloc(n);

    if (p == NULL) {
        abort();
    }
    snprintf(p, n, "%s%s%s", a, sep, b);
    return p;
}

/* dir/name, or name at the root ("") */
static char *join(const char *dir, const char *name)
{
    return concat(dir, dir[0] != '\0' ? "/" : "", name);
}

static void note(const migrate_t *mg, const char *what, const char *path)
{
    if (mg->verbose) {
        printf("%-8s %s\n", what, path);
    }
}

/* Writes data at path in the target and reads it back. */
static int put_verified(migrate_t *mg, const char *path, const char *data, size_t len)
{
    char   err[512];
    char  *back = NULL;
    size_t blen = 0;
    int    rc;

    rc = mg->to->ops->put(mg->to, path, data, len, atls_store_path_private(path),
                          err, sizeof(err));
    if (rc == ATLS_STORE_OK) {
        rc = mg->to->ops->get(mg->to, path, &back, &blen, err, sizeof(err));
        if (rc == ATLS_STORE_OK && (blen != len || memcmp(back, data, len) != 0)) {
            snprintf(err, sizeof(err), "read back different from what was written");
            rc = ATLS_STORE_ERROR;
        }
    }
    free(back);
    if (rc != ATLS_STORE_OK) {
        cli_error("migrate: %s %s: %s", mg->to->location, path, err);
        mg->failed++;
        return -1;
    }
    mg->copied++;
    note(mg, "copied", path);
    return 0;
}

/* One entry read from the source: copied unless the target keeps its own. */
static void copy_entry(migrate_t *mg, const char *path, const char *data, size_t len,
                       int source_wins)
{
    char   err[512];
    char  *cur = NULL;
    size_t clen = 0;
    int    rc;

    rc = mg->to->ops->get(mg->to, path, &cur, &clen, err, sizeof(err));
    if (rc == ATLS_STORE_OK && clen == len && memcmp(cur, data, len) == 0) {
        mg->same++;
        note(mg, "same", path);
    } else if (rc == ATLS_STORE_OK && !source_wins) {
        mg->kept++;
        note(mg, "kept", path);
    } else if (rc == ATLS_STORE_OK || rc == ATLS_STORE_NOTFOUND) {
        (void) put_verified(mg, path, data, len);
    } else {
        cli_error("migrate: %s %s: %s", mg->to->location, path, err);
        mg->failed++;
    }
    free(cur);
}

static unsigned long long decimal(const char *s, size_t len)
{
    unsigned long long v = 0;
    size_t             i;

    for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        v = v * 10 + (unsigned long long) (s[i] - '0');
    }
    return v;
}

static void walk(migrate_t *mg, const char *dir, int source_wins);

/* A name under dir: an entry (copied) or a directory (walked). */
static void walk_one(migrate_t *mg, const char *path, int source_wins)
{
    char   err[512], lerr[512];
    char **names = NULL;
    char  *data = NULL;
    size_t len = 0, n = 0;
    int    rc;

    rc = mg->from->ops->get(mg->from, path, &data, &len, err, sizeof(err));
    if (rc == ATLS_STORE_OK) {
        copy_entry(mg, path, data, len, source_wins);
        free(data);
        return;
    }
    /* not an entry: a directory (the fs store refuses to read one, Redis
     * has no value for it, so a Redis value that cannot be read is an
     * error, never an empty directory) */
    if ((rc == ATLS_STORE_NOTFOUND || strcmp(mg->from->ops->name, "fs") == 0)
        && mg->from->ops->list(mg->from, path, &names, &n, lerr, sizeof(lerr)) == ATLS_STORE_OK)
    {
        atls_strv_free(names, n);
        walk(mg, path, source_wins);
        return;
    }
    /* the store's errors name it (and the Redis key) */
    cli_error("migrate: %s: %s", path, rc == ATLS_STORE_NOTFOUND ? lerr : err);
    mg->failed++;
}

/* The generation in a store's certs/<id>/meta.json; 0 when none. */
static uint64_t meta_generation(atls_store_t *st, const char *id)
{
    atls_cert_meta_t m;
    char             err[512];
    uint64_t         g = 0;

    memset(&m, 0, sizeof(m));
    if (atls_store_load_meta(st, id, &m, err, sizeof(err)) == ATLS_STORE_OK) {
        g = m.generation;
    }
    atls_cert_meta_free(&m);
    return g;
}

/* One certificate as a whole, under the source's lock so that a deploy
 * does not land half-way: its files in a first pass, meta.json (which
 * names them) in the second. */
static void migrate_cert(migrate_t *mg, const char *id)
{
    atls_store_lock_t *lk = NULL;
    char               err[512];
    char              *dir, *path, *lock_name;
    char             **names = NULL;
    size_t             n = 0, i, copied_before;
    uint64_t           gf, gt;
    int                rc, pass;

    dir = join("certs", id);
    lock_name = concat("cert-", "", id);
    rc = mg->from->ops->lock(mg->from, lock_name, 0, &lk, err, sizeof(err));
    if (rc == ATLS_STORE_BUSY) {
        cli_error("migrate: %s: an order is running on it: not copied, run migrate again",
                  dir);
        mg->busy++;
        goto done;
    }
    if (rc != ATLS_STORE_OK) {
        cli_error("migrate: %s lock %s: %s", mg->from->location, lock_name, err);
        mg->failed++;
        goto done;
    }
    copied_before = mg->copied;
    gf = meta_generation(mg->from, id);
    gt = meta_generation(mg->to, id);
    if (gt > gf) {
        mg->kept++;
        if (mg->verbose) {
            printf("kept     %s/ (generation %llu in the target, %llu in the source)\n",
                   dir, (unsigned long long) gt, (unsigned long long) gf);
        }
        goto done;
    }
    if (mg->from->ops->list(mg->from, dir, &names, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        cli_error("migrate: %s %s: %s", mg->from->location, dir, err);
        mg->failed++;
        goto done;
    }
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < n; i++) {
            if ((strcmp(names[i], "meta.json") == 0) == (pass == 1)) {
                path = join(dir, names[i]);
                walk_one(mg, path, 1);
                free(path);
            }
        }
    }
    if (mg->copied > copied_before) {
        cli_store_changed(mg->to, id);      /* Redis: the nodes pull it */
    }

done:
    if (lk != NULL) {
        mg->from->ops->unlock(mg->from, lk);
    }
    atls_strv_free(names, n);
    free(lock_name);
    free(dir);
}

/* A counter (`generation`, `names-generation`): the larger one wins, so
 * that no node misses a generation. */
static void migrate_counter(migrate_t *mg, const char *path)
{
    char   err[512];
    char  *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;

    if (mg->from->ops->get(mg->from, path, &a, &alen, err, sizeof(err))
        == ATLS_STORE_OK)
    {
        if (mg->to->ops->get(mg->to, path, &b, &blen, err, sizeof(err))
                == ATLS_STORE_OK
            && decimal(b, blen) >= decimal(a, alen))
        {
            mg->kept += decimal(b, blen) > decimal(a, alen);
            mg->same += decimal(b, blen) == decimal(a, alen);
        } else {
            (void) put_verified(mg, path, a, alen);
        }
    }
    free(a);
    free(b);
}

/* All the audit records a store holds, oldest first (the fs store's
 * rotated files, then audit.log); NULL when it has none. */
static char *audit_all(atls_store_t *st, size_t *total)
{
    char    *all = NULL, *part, err[512];
    size_t   len, n = 0;
    unsigned k;

    for (k = ATLS_AUDIT_KEEP + 1; k-- > 0;) {
        if (atls_store_audit_read(st, k, &part, &len, err, sizeof(err)) != ATLS_STORE_OK) {
            continue;
        }
        all = realloc(all, n + len + 2);
        if (all == NULL) {
            abort();
        }
        memcpy(all + n, part, len);
        n += len;
        if (len > 0 && part[len - 1] != '\n') {
            all[n++] = '\n';
        }
        all[n] = '\0';
        free(part);
    }
    *total = n;
    return all;
}

/* The audit log goes record by record through the target's append (Redis
 * keeps one capped list, the fs store rotates files), and only into a
 * target without one: appending again would duplicate it. */
static void migrate_audit(migrate_t *mg)
{
    char   err[512];
    char  *src, *dst = NULL, *line, *nl;
    size_t slen, dlen = 0;

    src = audit_all(mg->from, &slen);
    if (src == NULL) {
        return;
    }
    dst = audit_all(mg->to, &dlen);
    if (dst != NULL && dlen > 0) {
        mg->kept++;
        note(mg, "kept", "audit.log (the target has its own)");
        goto done;
    }
    for (line = src; *line != '\0'; line = nl + 1) {
        nl = strchr(line, '\n');
        if (nl > line && atls_store_audit_append(mg->to, line, (size_t) (nl - line),
                                                 err, sizeof(err)) != ATLS_STORE_OK)
        {
            cli_error("migrate: %s audit.log: %s", mg->to->location, err);
            mg->failed++;
            goto done;
        }
    }
    free(dst);
    dst = audit_all(mg->to, &dlen);
    /* the target may cap the log sooner: what it has must end the source's */
    if (dst == NULL || dlen > slen || memcmp(src + slen - dlen, dst, dlen) != 0) {
        cli_error("migrate: %s audit.log: read back different from what was written",
                  mg->to->location);
        mg->failed++;
        goto done;
    }
    mg->copied++;
    note(mg, "copied", "audit.log");

done:
    free(src);
    free(dst);
}

/*
 * The change journals (changes.log, names-journal and their rotated .1):
 * lines "<generation> ..." numbered by the store's own `generation` and
 * `names-generation` counters, which migrate merges (the larger number),
 * so the source's lines would speak of another numbering; and a backend
 * keeps them as append-only logs (Redis: a LIST), which a plain put would
 * turn into a value of the wrong type.  The target journals its own bumps;
 * a reader whose range its journal does not account for reads everything.
 */
static int journal_of_counter(const char *name)
{
    static const char *const journals[] = { "changes.log", "names-journal" };
    size_t                   i, n;

    for (i = 0; i < sizeof(journals) / sizeof(journals[0]); i++) {
        n = strlen(journals[i]);
        if (strncmp(name, journals[i], n) == 0
            && (name[n] == '\0' || strcmp(name + n, ".1") == 0))
        {
            return 1;
        }
    }
    return 0;
}

static int skipped_at_root(const char *name)
{
    return strcmp(name, "locks") == 0                       /* the fs store's lock files */
           || strcmp(name, ATLS_STORE_KEYCHECK_PATH) == 0   /* per Redis store */
           || strcmp(name, "generation") == 0               /* migrate_counter */
           || strcmp(name, "names-generation") == 0
           || strcmp(name, "mirror-gen") == 0               /* a node's own */
           || journal_of_counter(name)
           || strncmp(name, "audit.log", 9) == 0;           /* migrate_audit */
}

static void walk(migrate_t *mg, const char *dir, int source_wins)
{
    char   err[512];
    char **names = NULL;
    char  *path;
    size_t n = 0, i;

    if (mg->from->ops->list(mg->from, dir, &names, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        cli_error("migrate: %s %s: %s", mg->from->location, dir[0] ? dir : "/", err);
        mg->failed++;
        return;
    }
    for (i = 0; i < n; i++) {
        if (dir[0] == '\0' && skipped_at_root(names[i])) {
            continue;
        }
        if (strcmp(dir, "certs") == 0) {
            migrate_cert(mg, names[i]);
            continue;
        }
        path = join(dir, names[i]);
        walk_one(mg, path, source_wins);
        free(path);
    }
    atls_strv_free(names, n);
}

/* Opens one side; a directory as cli_store_open does (root becomes the
 * owner of a store another user owns). */
static atls_store_t *open_side(cli_opts_t *o, const char *spec)
{
    o->store_dir = spec;
    return cli_store_open(o);
}

static int migrate_run(cli_opts_t *o)
{
    migrate_t mg;
    char      err[512];
    int       kf, kt;

    memset(&mg, 0, sizeof(mg));
    if (!(o->given & CLI_O_FROM) || !(o->given & CLI_O_TO)) {
        return cli_usage_error("migrate", "--from SPEC and --to SPEC are required");
    }
    kf = atls_store_spec_check(o->from_spec, err, sizeof(err));
    if (kf < 0) {
        return cli_usage_error("migrate", "--from: %s", err);
    }
    kt = atls_store_spec_check(o->to_spec, err, sizeof(err));
    if (kt < 0) {
        return cli_usage_error("migrate", "--to: %s", err);
    }
    if (kf == ATLS_STORE_SPEC_FS && kt == ATLS_STORE_SPEC_FS) {
        return cli_usage_error("migrate", "--from and --to are both directories: "
                               "one of them must be a redis:// URL");
    }
    mg.verbose = o->verbose;
    /* the directory first: root may become its owner, who then opens Redis */
    if (kf == ATLS_STORE_SPEC_FS) {
        mg.from = open_side(o, o->from_spec);
        mg.to = mg.from != NULL ? open_side(o, o->to_spec) : NULL;
    } else {
        mg.to = open_side(o, o->to_spec);
        mg.from = mg.to != NULL ? open_side(o, o->from_spec) : NULL;
    }
    if (mg.from == NULL || mg.to == NULL) {
        goto done;
    }
    walk(&mg, "", 0);
    migrate_counter(&mg, "generation");
    migrate_counter(&mg, "names-generation");
    migrate_audit(&mg);
    printf("migrate %s -> %s: %zu copied, %zu already the same, %zu kept in the target, "
           "%zu busy, %zu failed\n", mg.from->location, mg.to->location, mg.copied,
           mg.same, mg.kept, mg.busy, mg.failed);

done:
    if (mg.from != NULL) {
        atls_store_close(mg.from);
    }
    if (mg.to != NULL) {
        atls_store_close(mg.to);
    }
    if (mg.from == NULL || mg.to == NULL || mg.failed > 0 || mg.busy > 0) {
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

const cli_command_t cli_cmd_migrate = {
    "migrate",
    CLI_O_FROM | CLI_O_TO | CLI_O_VERBOSE,
    0, 0,
    migrate_run,
    "Usage: autotls migrate --from SPEC --to SPEC [-v]\n"
    "\n"
    "Copy everything a store holds into another store: a directory into Redis,\n"
    "or Redis into a directory, while servers keep running on the source.\n"
    "Every entry written is read back and compared; nothing is deleted, and a\n"
    "second run copies only what changed.  An entry the target already has is\n"
    "kept when it is newer: a certificate whose meta.json has a higher\n"
    "generation in the target, the larger of two counters (generation,\n"
    "names-generation), an audit log the target already has, and any other\n"
    "entry the target holds.  The change journals (changes.log, names-journal)\n"
    "are not copied: their lines count the source's generations, and the\n"
    "target journals its own.\n"
    "\n"
    "  --from SPEC    the source: a directory, or a Redis store\n"
    "  --to SPEC      the target: a directory (created 0700), or a Redis store\n"
    "                 A Redis store is one argument, the URL then its options:\n"
    "                 'redis://[user:password@]host[:port][/db] key_file=FILE\n"
    "                 [tls] [ca_file=FILE] [prefix=P]' (rediss:// for TLS)\n"
    "  -v, --verbose  one line per entry: copied, same or kept\n"
    "  -h, --help     this text\n"
    "\n"
    "Exit status 1 when an entry could not be copied, or a certificate was\n"
    "skipped because an order was running on it (run migrate again).\n"
};
