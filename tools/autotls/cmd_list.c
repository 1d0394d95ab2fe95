/* autotls list: one table row per certificate and key type, or the status JSON. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_status.h"
#include "atls_job.h"
#include "cli.h"

#define N_COLS 10

static const char *const headers[N_COLS] = {
    "ID", "NAMES", "KEY", "ISSUER", "SERIAL", "NOT AFTER", "DAYS LEFT",
    "NEXT RENEWAL", "STATE", "LAST ERROR"
};

typedef struct {
    char   *cell[N_COLS];
} row_t;

typedef struct {
    row_t  *rows;
    size_t  n;
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

static char *join_names(const atls_cert_meta_t *m)
{
    size_t i, len = 1;
    char  *s;

    for (i = 0; i < m->n_names; i++) {
        len += strlen(m->names[i]) + 1;
    }
    s = calloc(1, len);
    if (s == NULL) {
        abort();
    }
    for (i = 0; i < m->n_names; i++) {
        if (i > 0) {
            strcat(s, ",");
        }
        strcat(s, m->names[i]);
    }
    return s;
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

    r = realloc(t->rows, (t->n + 1) * sizeof(row_t));
    if (r == NULL) {
        abort();
    }
    t->rows = r;
    r = &t->rows[t->n++];
    memset(r, 0, sizeof(*r));
    memset(&info, 0, sizeof(info));

    have = atls_store_load_cert(st, m->id, kt, NULL, &chain, err, sizeof(err))
               == ATLS_STORE_OK
           && chain != NULL && sk_X509_num(chain) > 0
           && atls_cert_info(sk_X509_value(chain, 0), &info) == 0;

    r->cell[0] = atls_strdup(m->id);
    r->cell[1] = join_names(m);
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

static void print_table(const table_t *t)
{
    size_t w[N_COLS], i, c, len;

    for (c = 0; c < N_COLS; c++) {
        w[c] = strlen(headers[c]);
        for (i = 0; i < t->n; i++) {
            len = strlen(t->rows[i].cell[c]);
            if (len > w[c]) {
                w[c] = len;
            }
        }
    }
    for (c = 0; c < N_COLS; c++) {
        print_cell(headers[c], w[c], c + 1 == N_COLS);
    }
    for (i = 0; i < t->n; i++) {
        for (c = 0; c < N_COLS; c++) {
            print_cell(t->rows[i].cell[c], w[c], c + 1 == N_COLS);
        }
    }
}

static int list_run(cli_opts_t *o)
{
    atls_store_t     *st;
    atls_cert_meta_t  m;
    atls_key_type_t   kts[ATLS_KEY_TYPE_MAX];
    table_t           t = { NULL, 0 };
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
    for (i = 0; i < t.n; i++) {
        for (k = 0; k < N_COLS; k++) {
            free(t.rows[i].cell[k]);
        }
    }
    free(t.rows);
    atls_store_close(st);
    return rc;
}

const cli_command_t cli_cmd_list = {
    "list",
    CLI_O_STORE | CLI_O_JSON | CLI_O_VERBOSE,
    0, 0,
    list_run,
    "Usage: autotls list --store DIR [--json]\n"
    "\n"
    "List every certificate in the store: ID, NAMES, KEY, ISSUER, SERIAL,\n"
    "NOT AFTER, DAYS LEFT, NEXT RENEWAL, STATE, LAST ERROR (one row per key type).\n"
    "\n"
    "  --store DIR   certificate store (required)\n"
    "  --json        print the status document servers expose, as JSON\n"
    "  -h, --help    this text\n"
};
