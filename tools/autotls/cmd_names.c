/*
 * autotls add / remove: the registry of dynamic names (atls_names.h) that
 * servers with a dynamic home issue and serve with no reload; and the
 * dynamic names part of `autotls list`.  Every name is checked before
 * anything is stored, and each change is an audited event naming the user
 * who ran the CLI.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "atls_names.h"
#include "cli.h"

#define NAMES_LABELS_MAX  127   /* what the registry holds; servers may ask less */
#define HOME_MAX          128

/* Every operand passes atls_name_check (folded into o->names' copies);
 * else the first bad one is a usage error naming the argument. */
static int
names_check_args(const char *verb, const cli_opts_t *o, char ***folded)
{
    char   out[256], why[160];
    size_t i;

    *folded = calloc(o->n_names + 1, sizeof(**folded));
    if (*folded == NULL) {
        abort();
    }
    for (i = 0; i < o->n_names; i++) {
        if (atls_name_check(o->names[i], strlen(o->names[i]), 1, NAMES_LABELS_MAX, out,
                            sizeof(out), why, sizeof(why)) != 0)
        {
            char shown[128];

            atls_log_escape(o->names[i], shown, sizeof(shown));
            atls_strv_free(*folded, i);
            *folded = NULL;
            return cli_usage_error(verb, "argument %zu \"%s\": %s", i + 1, shown, why);
        }
        (*folded)[i] = atls_strdup(out);
    }
    return 0;
}

static int
names_home_ok(const char *home)
{
    size_t i;

    for (i = 0; home[i] != '\0'; i++) {
        if (i >= HOME_MAX || (unsigned char) home[i] < 0x20 || home[i] == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* "uid 0 (root)": who ran the CLI, for the registry entry. */
static void
names_by(const cli_opts_t *o, char *buf, size_t len)
{
    snprintf(buf, len, "uid %ld (%s)", o->actor.uid,
             o->actor.user != NULL ? o->actor.user : "?");
}

/* Opens the store and the emitter; NULL after printing an error. */
static atls_store_t *
names_open(cli_opts_t *o, const char *verb)
{
    atls_store_t *st = cli_store_open(o);

    if (st != NULL && cli_events_open(st, o, verb) != 0) {
        atls_store_close(st);
        return NULL;
    }
    return st;
}

/* What became of names[i] (added[i]: 1 registered now, 0 active already,
 * 2 not reached), said and audited. */
static void
add_report(atls_store_t *st, const cli_opts_t *o, char *const *names, size_t n,
           const unsigned char *added, const char *home, const char *by, time_t now)
{
    atls_name_entry_t e;
    const char      **fresh;
    char              err[512];
    size_t            i, k = 0;

    /* one audit append and one counters rewrite for the whole batch */
    fresh = calloc(n + 1, sizeof(*fresh));
    if (fresh == NULL) {
        abort();
    }
    for (i = 0; i < n; i++) {
        if (added[i] == 1) {
            fresh[k++] = names[i];
        }
    }
    atls_names_emit_many(o->events, 1, fresh, k, home, "cli", by, now);
    free(fresh);
    for (i = 0; i < n; i++) {
        if (added[i] == 1) {
            printf("%s: registered (home %s)\n", names[i], home != NULL ? home : "default");
        } else if (added[i] == 0) {
            memset(&e, 0, sizeof(e));
            (void) atls_names_get(st, names[i], &e, err, sizeof(err));
            printf("%s: registered already (home %s)\n", names[i],
                   e.home != NULL ? e.home : "default");
            atls_name_entry_free(&e);
        }
    }
}

/* ---- --from-file (add, remove) ------------------------------------------------------- */

/* At most this many bad lines are listed; the rest are counted. */
#define FILE_ERRORS_SHOWN  20

typedef struct {
    char   **v;             /* folded names, malloc'd */
    size_t   n, cap;
} names_vec_t;

static void
names_push(names_vec_t *nv, char *name)
{
    if (nv->n == nv->cap) {
        nv->cap = nv->cap ? nv->cap * 2 : 64;
        nv->v = realloc(nv->v, nv->cap * sizeof(*nv->v));
        if (nv->v == NULL) {
            abort();
        }
    }
    nv->v[nv->n++] = name;
}

/* One name per line of f; blank lines and lines starting with '#' are
 * skipped, blanks around a name dropped.  Each bad line is said
 * ("FILE:LINE: ..."); the count of bad lines is returned. */
static size_t
names_read_lines(FILE *f, const char *verb, const char *shown_path, names_vec_t *nv)
{
    char   *line = NULL, out[256], why[160], shown[128];
    size_t  cap = 0, lineno = 0, bad = 0, len;
    ssize_t got;
    char   *p;

    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        p = line;
        len = (size_t) got;
        while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r' || p[len - 1] == ' '
                           || p[len - 1] == '\t')) {
            len--;
        }
        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        if (len == 0 || *p == '#') {
            continue;
        }
        if (atls_name_check(p, len, 1, NAMES_LABELS_MAX, out, sizeof(out), why,
                            sizeof(why)) == 0) {
            names_push(nv, atls_strdup(out));
            continue;
        }
        if (++bad <= FILE_ERRORS_SHOWN) {
            p[len] = '\0';
            atls_log_escape(p, shown, sizeof(shown));
            cli_error("%s: %s:%zu: \"%s\": %s", verb, shown_path, lineno, shown, why);
        }
    }
    free(line);
    return bad;
}

/* --from-file F ("-": standard input) into nv, before the store is opened
 * (the CLI may then run as the store's owner).  0; else an exit code after
 * saying every bad line: nothing is registered (removed) then. */
static int
names_read_file(const char *verb, const char *path, names_vec_t *nv)
{
    int    stdin_ = strcmp(path, "-") == 0;
    FILE  *f = stdin_ ? stdin : fopen(path, "r");
    char   shown[128];
    size_t bad;
    int    failed;

    atls_log_escape(stdin_ ? "(stdin)" : path, shown, sizeof(shown));
    if (f == NULL) {
        cli_error("%s: --from-file %s: %s", verb, shown, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    bad = names_read_lines(f, verb, shown, nv);
    failed = ferror(f);
    if (!stdin_) {
        fclose(f);
    }
    if (failed) {
        cli_error("%s: --from-file %s: read error", verb, shown);
        return CLI_EXIT_FAIL;
    }
    if (bad > 0) {
        if (bad > FILE_ERRORS_SHOWN) {
            cli_error("%s: %s: %zu more bad lines", verb, shown, bad - FILE_ERRORS_SHOWN);
        }
        cli_error("%s: %s: %zu bad line%s; nothing %s", verb, shown, bad,
                  bad == 1 ? "" : "s", strcmp(verb, "add") == 0 ? "registered" : "removed");
        return CLI_EXIT_USAGE;
    }
    return 0;
}

/* The operands, then the lines of --from-file; an exit code on errors. */
static int
names_collect(const char *verb, cli_opts_t *o, names_vec_t *nv)
{
    char  **args = NULL;
    size_t  i;
    int     rc;

    if (o->n_names == 0 && !(o->given & CLI_O_FROM_FILE)) {
        return cli_usage_error(verb, "missing NAME (or --from-file F)");
    }
    if (names_check_args(verb, o, &args) != 0) {
        return CLI_EXIT_USAGE;
    }
    for (i = 0; i < o->n_names; i++) {
        names_push(nv, args[i]);
    }
    free(args);
    if (o->given & CLI_O_FROM_FILE) {
        rc = names_read_file(verb, o->from_file, nv);
        if (rc != 0) {
            return rc;
        }
    }
    if (nv->n == 0) {
        cli_error("%s: %s: no name in it", verb, o->from_file);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

static int
add_run(cli_opts_t *o)
{
    atls_store_t *st;
    const char    *home = (o->given & CLI_O_HOME) ? o->home : NULL;
    names_vec_t    nv = { NULL, 0, 0 };
    char           by[128], err[1024];
    unsigned char *added = NULL;
    time_t         now = time(NULL);
    int            rc;

    if (home != NULL && (home[0] == '\0' || !names_home_ok(home))) {
        return cli_usage_error("add", "--issuer: a home name of 1 to %d printable bytes",
                               HOME_MAX);
    }
    rc = names_collect("add", o, &nv);
    if (rc != 0) {
        goto out;
    }
    st = names_open(o, "add");
    if (st == NULL) {
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    names_by(o, by, sizeof(by));
    /* one lock and one generation for all: a bulk import costs a write a name */
    added = malloc(nv.n);
    if (added == NULL) {
        abort();
    }
    memset(added, 2, nv.n);
    if (atls_names_add_many(st, (const char *const *) nv.v, nv.n, home, "cli", by, now,
                            added, err, sizeof(err)) != ATLS_STORE_OK)
    {
        cli_error("add: %s", err);
        rc = CLI_EXIT_FAIL;
    }
    add_report(st, o, nv.v, nv.n, added, home, by, now);
    cli_events_close(o);
    atls_store_close(st);
out:
    free(added);
    atls_strv_free(nv.v, nv.n);
    return rc;
}

/* What became of each name (removed[i], atls_names_remove_many's), said
 * and audited: one batch of `name-removed` events.  CLI_EXIT_FAIL when a
 * name was not registered or not reached. */
static int
remove_report(const cli_opts_t *o, char *const *names, size_t n,
              const atls_name_entry_t *was, const unsigned char *removed, const char *by,
              time_t now)
{
    size_t i;
    int    rc = CLI_EXIT_OK;

    atls_names_emit_removed(o->events, was, removed, n, by, now);
    for (i = 0; i < n; i++) {
        switch (removed[i]) {
        case ATLS_NAMES_REMOVED_NOW:
            printf("%s: removed (no longer served; its certificate is kept for the grace "
                   "period)\n", names[i]);
            break;
        case ATLS_NAMES_REMOVED_BEFORE:
            printf("%s: removed already\n", names[i]);
            break;
        case ATLS_NAMES_NOT_REGISTERED:
            cli_error("remove %s: not registered in %s", names[i], o->store_dir);
            rc = CLI_EXIT_FAIL;
            break;
        default:
            rc = CLI_EXIT_FAIL;     /* the batch's error was said */
            break;
        }
    }
    return rc;
}

static int
remove_run(cli_opts_t *o)
{
    atls_store_t      *st;
    atls_name_entry_t *was = NULL;
    names_vec_t        nv = { NULL, 0, 0 };
    unsigned char     *removed = NULL;
    char               by[128], err[1024];
    time_t             now = time(NULL);
    int                rc;

    rc = names_collect("remove", o, &nv);
    if (rc != 0) {
        goto out;
    }
    st = names_open(o, "remove");
    if (st == NULL) {
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    names_by(o, by, sizeof(by));
    /* one lock and one generation for all, decided under the registry's
     * lock: an API DELETE of a name at the same time makes no second event */
    was = calloc(nv.n + 1, sizeof(*was));
    removed = malloc(nv.n + 1);
    if (was == NULL || removed == NULL) {
        abort();
    }
    if (atls_names_remove_many(st, (const char *const *) nv.v, nv.n, now, was, removed,
                               err, sizeof(err)) != ATLS_STORE_OK)
    {
        cli_error("remove: %s", err);
        rc = CLI_EXIT_FAIL;
    }
    if (remove_report(o, nv.v, nv.n, was, removed, by, now) != CLI_EXIT_OK) {
        rc = CLI_EXIT_FAIL;
    }
    cli_events_close(o);
    atls_store_close(st);
out:
    atls_name_entries_free(was, nv.n);
    free(removed);
    atls_strv_free(nv.v, nv.n);
    return rc;
}

/* ---- list ------------------------------------------------------------------- */

#define NAMES_COLS 7

static const char *const names_headers[NAMES_COLS] = {
    "DYNAMIC NAME", "HOME", "SOURCE", "STATE", "CERTIFICATE", "ADDED", "REMOVED"
};

/* The certificate's state as the store records it: "pending" until one. */
static const char *
names_cert_state(atls_store_t *st, const char *name)
{
    atls_cert_meta_t m;
    const char      *s = "pending";
    char             err[256], *id = atls_cert_id(name);

    memset(&m, 0, sizeof(m));
    if (id != NULL && atls_store_load_meta(st, id, &m, err, sizeof(err)) == ATLS_STORE_OK) {
        s = atls_cert_state_name(m.state);
        atls_cert_meta_free(&m);
    }
    free(id);
    return s;
}

/* Cells escaped for the terminal: the registry is the worker's. */
static char *
names_cell(const char *s)
{
    size_t len = strlen(s) * 4 + 1;
    char  *e = malloc(len);

    if (e == NULL) {
        abort();
    }
    return atls_log_escape(s, e, len);
}

int
cli_list_names(atls_store_t *st, const char *store_dir)
{
    atls_name_entry_t *v = NULL;
    char             **cells, err[512], when[32];
    size_t             n = 0, i, c, w[NAMES_COLS];

    if (atls_names_list(st, &v, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        cli_error("list: %s: %s", store_dir, err);
        return CLI_EXIT_FAIL;
    }
    if (n == 0) {
        free(v);
        return CLI_EXIT_OK;     /* no registry: nothing to show */
    }
    cells = calloc(n * NAMES_COLS, sizeof(*cells));
    if (cells == NULL) {
        abort();
    }
    for (c = 0; c < NAMES_COLS; c++) {
        w[c] = strlen(names_headers[c]);
    }
    for (i = 0; i < n; i++) {
        char **r = &cells[i * NAMES_COLS];

        r[0] = names_cell(v[i].name);
        r[1] = names_cell(v[i].home != NULL ? v[i].home : "default");
        r[2] = names_cell(v[i].source != NULL ? v[i].source : "-");
        r[3] = names_cell(v[i].state == ATLS_NAME_ACTIVE ? "active" : "removed");
        r[4] = names_cell(names_cert_state(st, v[i].name));
        r[5] = names_cell(cli_time(v[i].added, when, sizeof(when)));
        r[6] = names_cell(cli_time(v[i].removed, when, sizeof(when)));
        for (c = 0; c < NAMES_COLS; c++) {
            w[c] = strlen(r[c]) > w[c] ? strlen(r[c]) : w[c];
        }
    }
    printf("\n");
    for (c = 0; c < NAMES_COLS; c++) {
        printf(c + 1 < NAMES_COLS ? "%-*s  " : "%*s\n", c + 1 < NAMES_COLS ? (int) w[c] : 0,
               names_headers[c]);
    }
    for (i = 0; i < n; i++) {
        for (c = 0; c < NAMES_COLS; c++) {
            printf(c + 1 < NAMES_COLS ? "%-*s  " : "%*s\n",
                   c + 1 < NAMES_COLS ? (int) w[c] : 0, cells[i * NAMES_COLS + c]);
        }
    }
    atls_strv_free(cells, n * NAMES_COLS);
    atls_name_entries_free(v, n);
    return CLI_EXIT_OK;
}

const cli_command_t cli_cmd_add = {
    "add",
    CLI_O_STORE | CLI_O_HOME | CLI_O_FROM_FILE | CLI_O_VERBOSE,
    0, -1,
    add_run,
    "Usage: autotls add --store DIR [--issuer HOME] [--from-file F] NAME...\n"
    "\n"
    "Register dynamic names: a server whose dynamic home is HOME (nginx:\n"
    "`autotls ISSUER dynamic;`, Apache: `AutoTLS Dynamic`) obtains and serves a\n"
    "certificate for each, with no reload.  Each name is one certificate.\n"
    "A name registered already is left as it is; a removed one is active again.\n"
    "All the names are registered at once: one write each, one generation.\n"
    "\n"
    "  --store DIR     certificate store (required)\n"
    "  --issuer HOME   the dynamic home (nginx: the issuer block's name; Apache:\n"
    "                  the ServerName of the AutoTLS Dynamic host); default: the\n"
    "                  server's only (first) dynamic home\n"
    "  --from-file F   also the names in file F, one a line ('-': standard\n"
    "                  input; blank lines and lines starting with '#' skipped);\n"
    "                  a bad line is named (F:LINE) and nothing is registered\n"
    "  -v, --verbose   print each event as recorded\n"
    "  -h, --help      this text\n"
    "\n"
    "Names: letters, digits, '-' and '.', IDN names as xn-- punycode, no\n"
    "wildcard; IP literals are accepted.\n"
};

const cli_command_t cli_cmd_remove = {
    "remove",
    CLI_O_STORE | CLI_O_FROM_FILE | CLI_O_VERBOSE,
    0, -1,
    remove_run,
    "Usage: autotls remove --store DIR [--from-file F] NAME...\n"
    "\n"
    "Remove dynamic names: servers stop serving them at once; the certificate\n"
    "stays in the store for the grace period (7 days by default), then is\n"
    "deleted (a `removed` event in the audit trail).\n"
    "All the names are removed at once: one write each, one generation.\n"
    "\n"
    "  --store DIR     certificate store (required)\n"
    "  --from-file F   also the names in file F, one a line ('-': standard\n"
    "                  input; blank lines and lines starting with '#' skipped);\n"
    "                  a bad line is named (F:LINE) and nothing is removed\n"
    "  -v, --verbose   print each event as recorded\n"
    "  -h, --help      this text\n"
};
