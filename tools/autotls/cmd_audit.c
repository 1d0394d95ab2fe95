/* autotls audit: the store's audit trail, oldest first, one line per record. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>
#include "atls_event.h"
#include "atls_schedule.h"
#include "cli.h"

/* audit.log.N probed up to this; the server keeps ATLS_AUDIT_KEEP */
#define AUDIT_MAX_FILES 1000

int cli_audit_since(const char *arg, time_t now, time_t *out)
{
    time_t t = atls_rfc3339_parse(arg);
    long   d;

    if (t < 0) {
        d = atls_duration_parse(arg);
        if (d < 0 || d > now) {
            cli_error("--since: '%s' is neither an RFC 3339 time "
                      "(2026-11-29T19:00:00Z) nor a duration (30m, 2h, 7d)", arg);
            return -1;
        }
        t = now - d;
    }
    *out = t;
    return 0;
}

/* ---- filtering ---------------------------------------------------------------- */

static const char *field(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s != NULL ? s : "";
}

/* NAME is the record's id or one of its names (DNS names: any case). */
static int matches_name(json_t *rec, const char *name)
{
    json_t *names = json_object_get(rec, "names"), *v;
    size_t  i;

    if (strcasecmp(field(rec, "id"), name) == 0) {
        return 1;
    }
    json_array_foreach(names, i, v) {
        if (json_is_string(v) && strcasecmp(json_string_value(v), name) == 0) {
            return 1;
        }
    }
    return 0;
}

static int wanted(json_t *rec, const cli_opts_t *o)
{
    time_t t;

    if (o->name_filter != NULL && !matches_name(rec, o->name_filter)) {
        return 0;
    }
    if (o->since > 0) {
        t = atls_rfc3339_parse(field(rec, "time"));
        if (t < o->since) {
            return 0;
        }
    }
    return 1;
}

/* ---- the readable line -------------------------------------------------------- */

/* A field from the store, made safe for a terminal. */
static const char *shown(const char *s, char *buf, size_t len)
{
    if (s == NULL || *s == '\0') {
        return "-";
    }
    return atls_log_escape(s, buf, len);
}

static void actor_text(json_t *a, char *out, size_t len)
{
    char        k[64], sw[128], u[128];
    json_t     *uid = json_object_get(a, "uid");
    long long   pid = json_integer_value(json_object_get(a, "pid"));

    if (!json_is_object(a)) {
        snprintf(out, len, "-");
    } else if (json_is_integer(uid)) {
        snprintf(out, len, "%s %s (uid %lld) pid %lld", shown(field(a, "kind"), k, sizeof(k)),
                 shown(field(a, "user"), u, sizeof(u)), json_integer_value(uid), pid);
    } else {
        snprintf(out, len, "%s %s pid %lld", shown(field(a, "kind"), k, sizeof(k)),
                 shown(field(a, "software"), sw, sizeof(sw)), pid);
    }
}

/* outcome, then what the event type adds */
static void outcome_text(json_t *rec, char *out, size_t len)
{
    json_t     *err = json_object_get(rec, "error");
    char        a[ATLS_LOG_ESCAPE_MAX], b[ATLS_LOG_ESCAPE_MAX], c[64];
    size_t      n;

    n = (size_t) snprintf(out, len, "%s", shown(field(rec, "outcome"), c, sizeof(c)));
    if (n >= len) {
        return;
    }
    if (json_is_object(err)) {
        snprintf(out + n, len - n, " %s: %s", shown(field(err, "type"), a, sizeof(a)),
                 shown(field(err, "detail"), b, sizeof(b)));
    } else if (*field(rec, "level") != '\0') {
        snprintf(out + n, len - n, " level %s", shown(field(rec, "level"), a, sizeof(a)));
    } else if (*field(rec, "reason") != '\0') {
        snprintf(out + n, len - n, " reason %s (%s)", shown(field(rec, "reason"), a, sizeof(a)),
                 shown(field(rec, "revoked_source"), b, sizeof(b)));
    } else if (*field(rec, "rule") != '\0') {
        snprintf(out + n, len - n, " rule %s: %s", shown(field(rec, "rule"), a, sizeof(a)),
                 shown(field(rec, "detail"), b, sizeof(b)));
    } else if (*field(rec, "detail") != '\0') {
        snprintf(out + n, len - n, " %s", shown(field(rec, "detail"), a, sizeof(a)));
    }
    if (*field(rec, "old_serial") != '\0') {
        n = strlen(out);
        snprintf(out + n, len - n, " (replaces %s)", shown(field(rec, "old_serial"), a,
                                                              sizeof(a)));
    }
}

static void print_record(json_t *rec)
{
    char t[64], e[64], id[256], kt[32], ser[128], actor[512], outcome[2048];

    actor_text(json_object_get(rec, "actor"), actor, sizeof(actor));
    outcome_text(rec, outcome, sizeof(outcome));
    printf("%-20s  %-17s  %-24s  %-7s  %-16s  %-30s  %s\n",
           shown(field(rec, "time"), t, sizeof(t)), shown(field(rec, "event"), e, sizeof(e)),
           shown(field(rec, "id"), id, sizeof(id)), shown(field(rec, "key_type"), kt, sizeof(kt)),
           shown(field(rec, "serial"), ser, sizeof(ser)), actor, outcome);
}

/* ---- reading ------------------------------------------------------------------ */

typedef struct {
    const cli_opts_t *o;
    int               json;
    size_t            printed;
    size_t            skipped;    /* lines that are not a JSON object */
} audit_out_t;

/* --json: the record as stored when it is printable ASCII; otherwise
 * (the worker can write the file) the same record with every non-ASCII
 * character as a \\u escape, so that neither a bare CR nor a UTF-8 C1
 * control reaches the terminal. */
static void print_json_line(json_t *rec, const char *line)
{
    const unsigned char *p;
    char                *text;

    for (p = (const unsigned char *) line; *p >= 0x20 && *p < 0x7f; p++) {
    }
    if (*p == '\0') {
        printf("%s\n", line);
        return;
    }
    text = json_dumps(rec, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
    if (text != NULL) {
        printf("%s\n", text);
        free(text);
    }
}

static void print_file(audit_out_t *out, char *data)
{
    char         *line, *save = NULL;
    json_t       *rec;
    json_error_t  je;

    for (line = strtok_r(data, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        rec = json_loads(line, 0, &je);
        if (!json_is_object(rec)) {
            /* a record cut by a full disk: the next one starts on its line */
            out->skipped++;
            json_decref(rec);
            continue;
        }
        if (wanted(rec, out->o)) {
            if (out->printed++ == 0 && !out->json) {
                printf("%-20s  %-17s  %-24s  %-7s  %-16s  %-30s  %s\n", "TIME", "EVENT", "ID",
                       "KEY", "SERIAL", "ACTOR", "OUTCOME");
            }
            if (out->json) {
                print_json_line(rec, line);
            } else {
                print_record(rec);
            }
        }
        json_decref(rec);
    }
}

/* audit.log.N .. audit.log.1, audit.log: oldest first. */
static int audit_print_all(atls_store_t *st, audit_out_t *out)
{
    char     err[512], *data;
    size_t   len;
    unsigned n, oldest = 0;
    int      rc;

    while (oldest < AUDIT_MAX_FILES) {
        data = NULL;
        rc = atls_store_audit_read(st, oldest + 1, &data, &len, err, sizeof(err));
        free(data);
        if (rc != ATLS_STORE_OK) {
            break;
        }
        oldest++;
    }
    for (n = oldest + 1; n-- > 0;) {
        data = NULL;
        rc = atls_store_audit_read(st, n, &data, &len, err, sizeof(err));
        if (rc == ATLS_STORE_NOTFOUND) {
            continue;
        }
        if (rc != ATLS_STORE_OK) {
            cli_error("audit: %s", err);
            return CLI_EXIT_FAIL;
        }
        print_file(out, data);
        free(data);
    }
    return CLI_EXIT_OK;
}

static int audit_run(cli_opts_t *o)
{
    atls_store_t *st;
    audit_out_t   out;
    int           rc;

    st = cli_store_open(o);
    if (st == NULL) {
        return CLI_EXIT_FAIL;
    }
    memset(&out, 0, sizeof(out));
    out.o = o;
    out.json = (o->given & CLI_O_JSON) != 0;
    rc = audit_print_all(st, &out);
    if (rc == CLI_EXIT_OK && out.skipped > 0) {
        cli_error("audit: %zu line(s) that are not a JSON record skipped", out.skipped);
    }
    if (rc == CLI_EXIT_OK && out.printed == 0 && !out.json) {
        printf("no audit record%s\n", o->name_filter != NULL || o->since > 0
                                      ? " matches" : "s");
    }
    atls_store_close(st);
    return rc;
}

const cli_command_t cli_cmd_audit = {
    "audit",
    CLI_O_STORE | CLI_O_NAME | CLI_O_SINCE | CLI_O_JSON | CLI_O_VERBOSE,
    0, 0,
    audit_run,
    "Usage: autotls audit --store DIR [--name NAME] [--since TIME] [--json]\n"
    "\n"
    "Print the store's audit trail (audit.log and its rotated files), oldest\n"
    "first: TIME, EVENT, ID, KEY, SERIAL, ACTOR (server software and pid, or\n"
    "the CLI with uid and user) and OUTCOME with the details of the event.\n"
    "\n"
    "  --store DIR    certificate store (required)\n"
    "  --name NAME    only records of the certificate with NAME (its id or one\n"
    "                 of its names)\n"
    "  --since TIME   only records from TIME on: RFC 3339 (2026-11-29T19:00:00Z)\n"
    "                 or a duration back from now (30m, 2h, 7d)\n"
    "  --json         print the records as they are stored, one JSON object a line\n"
    "  -h, --help     this text\n"
};
