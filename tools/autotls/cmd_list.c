/* autotls list: one table row per certificate and key type, or the status
 * JSON; with --all, the certificates the servers serve that autotls does
 * not manage too (the store's inventory), each with its worst finding. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_inventory.h"
#include "atls_status.h"
#include "atls_job.h"
#include "cli.h"

#define N_COLS        10
#define N_STATIC_COLS 8
#define N_FINDINGS    16

static const char *const headers[N_COLS] = {
    "ID", "NAMES", "KEY", "ISSUER", "SERIAL", "NOT AFTER", "DAYS LEFT",
    "NEXT RENEWAL", "STATE", "LAST ERROR"
};

static const char *const static_headers[N_STATIC_COLS] = {
    "ID", "FILE", "SERVER", "NAMES", "KEY", "NOT AFTER", "DAYS LEFT", "WORST FINDING"
};

typedef struct {
    char   *cell[N_COLS];
} row_t;

typedef struct {
    row_t             *rows;
    size_t             n;
    const char *const *headers;
    size_t             ncols;
} table_t;

static char *dupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *dupf(const char *fmt, ...)
{
    va_list ap;
    char   *s = NULL;
    int     n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        abort();
    }
    return s;
}

static char *join_strv(char *const *v, size_t n)
{
    size_t i, len = 2;
    char  *s;

    for (i = 0; i < n; i++) {
        len += strlen(v[i]) + 1;
    }
    s = calloc(1, len);
    if (s == NULL) {
        abort();
    }
    for (i = 0; i < n; i++) {
        if (i > 0) {
            strcat(s, ",");
        }
        strcat(s, v[i]);
    }
    if (n == 0) {
        strcpy(s, "-");
    }
    return s;
}

static row_t *new_row(table_t *t)
{
    row_t *r = realloc(t->rows, (t->n + 1) * sizeof(row_t));

    if (r == NULL) {
        abort();
    }
    t->rows = r;
    r = &t->rows[t->n++];
    memset(r, 0, sizeof(*r));
    return r;
}

/* "type: detail [class, key type]" from the parts; the display text alone
 * for a meta written before they existed. */
static char *last_error_cell(const atls_cert_meta_t *m)
{
    if (m->last_error_type == NULL) {
        return atls_strdup(m->last_error != NULL ? m->last_error : "-");
    }
    return dupf("%s: %s [%s%s%s]", m->last_error_type,
                m->last_error_detail ? m->last_error_detail : "-",
                atls_err_class_name(m->last_error_class),
                m->last_error_key_type ? ", " : "",
                m->last_error_key_type ? m->last_error_key_type : "");
}

static void add_row(table_t *t, const atls_cert_meta_t *m, atls_key_type_t kt,
                    atls_store_t *st, time_t now)
{
    row_t            *r;
    atls_cert_info_t  info;
    STACK_OF(X509)   *chain = NULL;
    char              err[512], when[32];
    int               have;

    r = new_row(t);
    memset(&info, 0, sizeof(info));

    have = atls_store_load_cert(st, m->id, kt, NULL, &chain, err, sizeof(err))
               == ATLS_STORE_OK
           && chain != NULL && sk_X509_num(chain) > 0
           && atls_cert_info(sk_X509_value(chain, 0), &info) == 0;

    r->cell[0] = atls_strdup(m->id);
    r->cell[1] = join_strv(m->names, m->n_names);
    r->cell[2] = atls_strdup(atls_key_type_name(kt));
    r->cell[3] = atls_strdup(have ? info.issuer : "-");
    r->cell[4] = atls_strdup(have ? info.serial : "-");
    r->cell[5] = atls_strdup(have ? cli_time(info.not_after, when, sizeof(when)) : "-");
    r->cell[6] = have ? dupf("%ld", cli_days_left(info.not_after, now)) : atls_strdup("-");
    r->cell[7] = atls_strdup(cli_time(m->renew_at, when, sizeof(when)));
    r->cell[8] = atls_strdup(atls_cert_state_name(m->state));
    r->cell[9] = last_error_cell(m);
    if (have) {
        atls_cert_info_free(&info);
    }
    atls_chain_free(chain);
}

static void print_cell(const char *s, size_t width, int last)
{
    if (last) {
        printf("%s\n", s);
    } else {
        printf("%-*s  ", (int) width, s);
    }
}

/* One row of a static certificate: its worst finding and how many more. */
static void add_static_row(table_t *t, const atls_inventory_item_t *it,
                           const atls_warn_t *w, time_t now)
{
    atls_finding_t fs[N_FINDINGS];
    row_t         *r = new_row(t);
    char           when[32], more[32] = "";
    size_t         n, i, worst = 0;
    int            ok = it->error == NULL;

    n = atls_inventory_item_findings(it, w, now, fs, N_FINDINGS);
    if (n > 1) {
        snprintf(more, sizeof(more), " (+%zu more)", n - 1);
    }
    for (i = 1; i < n; i++) {
        if (fs[i].severity > fs[worst].severity) {
            worst = i;
        }
    }
    r->cell[0] = atls_strdup(it->id);
    r->cell[1] = atls_strdup(it->path != NULL ? it->path : "-");
    r->cell[2] = atls_strdup(it->server != NULL ? it->server : "-");
    r->cell[3] = ok ? join_strv(it->facts.names, it->facts.n_names) : atls_strdup("-");
    r->cell[4] = ok ? dupf("%s%d", it->facts.key_alg, it->facts.key_bits) : atls_strdup("-");
    r->cell[5] = atls_strdup(ok ? cli_time(it->facts.not_after, when, sizeof(when)) : "-");
    r->cell[6] = ok ? dupf("%ld", cli_days_left(it->facts.not_after, now)) : atls_strdup("-");
    r->cell[7] = n == 0 ? atls_strdup("ok")
                 : dupf("%s: %s: %s%s", atls_severity_name(fs[worst].severity),
                        atls_finding_name(fs[worst].type), fs[worst].detail,
                        more);
}

/* Every cell comes from the store (the worker's: names, paths, errors,
 * findings): escaped in place before it reaches the terminal. */
static void escape_cells(table_t *t)
{
    size_t i, c, len;
    char  *e;

    for (i = 0; i < t->n; i++) {
        for (c = 0; c < t->ncols; c++) {
            len = strlen(t->rows[i].cell[c]) * 4 + 1;
            e = malloc(len);
            if (e == NULL) {
                abort();
            }
            atls_log_escape(t->rows[i].cell[c], e, len);
            free(t->rows[i].cell[c]);
            t->rows[i].cell[c] = e;
        }
    }
}

static void print_table(table_t *t)
{
    size_t w[N_COLS], i, c, len;

    escape_cells(t);
    for (c = 0; c < t->ncols; c++) {
        w[c] = strlen(t->headers[c]);
        for (i = 0; i < t->n; i++) {
            len = strlen(t->rows[i].cell[c]);
            if (len > w[c]) {
                w[c] = len;
            }
        }
    }
    for (c = 0; c < t->ncols; c++) {
        print_cell(t->headers[c], w[c], c + 1 == t->ncols);
    }
    for (i = 0; i < t->n; i++) {
        for (c = 0; c < t->ncols; c++) {
            print_cell(t->rows[i].cell[c], w[c], c + 1 == t->ncols);
        }
    }
}

static void free_table(table_t *t)
{
    size_t i, k;

    for (i = 0; i < t->n; i++) {
        for (k = 0; k < t->ncols; k++) {
            free(t->rows[i].cell[k]);
        }
    }
    free(t->rows);
}

/* The store's static certificates, with the store's alert levels. */
static int list_static(atls_store_t *st, const char *store_dir, time_t now)
{
    atls_inventory_item_t *items = NULL;
    atls_notify_conf_t     nc;
    table_t                t = { NULL, 0, static_headers, N_STATIC_COLS };
    char                   err[512];
    size_t                 n = 0, i;
    int                    have_conf;

    if (atls_store_inventory_list(st, &items, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        cli_error("list: %s: %s", store_dir, err);
        return CLI_EXIT_FAIL;
    }
    memset(&nc, 0, sizeof(nc));
    have_conf = atls_store_load_notify_conf(st, &nc, err, sizeof(err)) == ATLS_STORE_OK;
    for (i = 0; i < n; i++) {
        add_static_row(&t, &items[i], have_conf ? &nc.warn : NULL, now);
    }
    printf("\n");
    if (t.n == 0) {
        printf("no static certificates in %s\n", store_dir);
    } else {
        print_table(&t);
    }
    free_table(&t);
    atls_notify_conf_free(&nc);
    atls_inventory_items_free(items, n);
    return CLI_EXIT_OK;
}

static int list_run(cli_opts_t *o)
{
    atls_store_t     *st;
    atls_cert_meta_t  m;
    atls_key_type_t   kts[ATLS_KEY_TYPE_MAX];
    table_t           t = { NULL, 0, headers, N_COLS };
    char            **ids = NULL, err[512], *json;
    size_t            n = 0, i, k, nk;
    time_t            now = time(NULL);
    int               rc = CLI_EXIT_OK;

    st = cli_store_open(o);
    if (st == NULL) {
        return CLI_EXIT_FAIL;
    }

    if (o->given & CLI_O_JSON) {
        json = atls_status_json(st, now);
        if (json == NULL) {
            cli_error("list: cannot render the status of %s", o->store_dir);
            atls_store_close(st);
            return CLI_EXIT_FAIL;
        }
        printf("%s\n", json);
        free(json);
        atls_store_close(st);
        return CLI_EXIT_OK;
    }

    if (atls_store_list_certs(st, &ids, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        cli_error("list: %s: %s", o->store_dir, err);
        atls_store_close(st);
        return CLI_EXIT_FAIL;
    }
    for (i = 0; i < n; i++) {
        memset(&m, 0, sizeof(m));
        if (atls_store_load_meta(st, ids[i], &m, err, sizeof(err)) != ATLS_STORE_OK) {
            cli_error("list: %s: %s", ids[i], err);
            rc = CLI_EXIT_FAIL;
            continue;
        }
        nk = atls_job_key_types(&m.issuer, kts);
        for (k = 0; k < nk; k++) {
            add_row(&t, &m, kts[k], st, now);
        }
        atls_cert_meta_free(&m);
    }
    atls_strv_free(ids, n);

    if (t.n == 0) {
        printf("no certificates in %s\n", o->store_dir);
    } else {
        print_table(&t);
    }
    free_table(&t);
    if (cli_list_names(st, o->store_dir) != CLI_EXIT_OK) {
        rc = CLI_EXIT_FAIL;
    }
    if ((o->given & CLI_O_ALL) && list_static(st, o->store_dir, now) != CLI_EXIT_OK) {
        rc = CLI_EXIT_FAIL;
    }
    atls_store_close(st);
    return rc;
}

const cli_command_t cli_cmd_list = {
    "list",
    CLI_O_STORE | CLI_O_JSON | CLI_O_VERBOSE | CLI_O_ALL,
    0, 0,
    list_run,
    "Usage: autotls list --store DIR [--all] [--json]\n"
    "\n"
    "List every certificate in the store: ID, NAMES, KEY, ISSUER, SERIAL,\n"
    "NOT AFTER, DAYS LEFT, NEXT RENEWAL, STATE, LAST ERROR (one row per key type);\n"
    "then the dynamic names registered (autotls add): DYNAMIC NAME, HOME, SOURCE,\n"
    "STATE, CERTIFICATE (its state), ADDED, REMOVED.\n"
    "\n"
    "  --store DIR   certificate store (required)\n"
    "  --all         also the certificates the servers using the store serve\n"
    "                without autotls (ssl_certificate, SSLCertificateFile):\n"
    "                ID, FILE, SERVER, NAMES, KEY, NOT AFTER, DAYS LEFT and the\n"
    "                worst finding\n"
    "  --json        print the status document servers expose, as JSON (its\n"
    "                \"static\" array lists those certificates)\n"
    "  -h, --help    this text\n"
};
