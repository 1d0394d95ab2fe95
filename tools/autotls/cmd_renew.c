/*
 * autotls renew: renew now with the issuer settings recorded in the store
 * (options given here override and are recorded), or --request: leave a
 * note for the server that manages the store to renew on its next tick.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "atls_job.h"
#include "cli.h"

/* --all: every certificate of the store that is due, concurrently, each
 * with its recorded settings (those the policy refuses are left out). */
static int renew_all(atls_store_t *st, cli_opts_t *o)
{
    atls_cert_meta_t  *metas, **due;
    char             **ids = NULL;
    char               err[1024];
    size_t             n = 0, i, n_loaded = 0, n_due = 0;
    time_t             now = time(NULL);
    int                rc = CLI_EXIT_OK;

    if (atls_store_list_certs(st, &ids, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        cli_error("store %s: %s", o->store_dir, err);
        return CLI_EXIT_FAIL;
    }
    metas = calloc(n + 1, sizeof(*metas));
    due = calloc(n + 1, sizeof(*due));
    if (metas == NULL || due == NULL) {
        abort();
    }
    for (i = 0; i < n; i++) {
        atls_cert_meta_t *m = &metas[n_loaded];

        memset(m, 0, sizeof(*m));
        if (atls_store_load_meta(st, ids[i], m, err, sizeof(err)) != ATLS_STORE_OK) {
            cli_error("renew %s: %s", ids[i], err);
            atls_cert_meta_free(m);
            rc = CLI_EXIT_FAIL;
            continue;
        }
        n_loaded++;
        if (!atls_job_due(st, m, now, 0)) {
            continue;
        }
        if (cli_issuer_vouch(o, CLI_O_VOUCHED, "renew", m->names[0], &m->issuer) != 0
            || cli_policy_check(o, "renew", (const char *const *) m->names, m->n_names,
                                &m->issuer) != 0) {
            rc = CLI_EXIT_FAIL;
            continue;
        }
        due[n_due++] = m;
    }
    if (n_due > 0) {
        if (cli_obtain_many(st, o, "renew", due, n_due) != CLI_EXIT_OK) {
            rc = CLI_EXIT_FAIL;
        }
    } else if (rc == CLI_EXIT_OK) {
        printf("no certificate in %s is due for renewal\n", o->store_dir);
    }
    for (i = 0; i < n_loaded; i++) {
        atls_cert_meta_free(&metas[i]);
    }
    free(metas);
    free(due);
    atls_strv_free(ids, n);
    return rc;
}

/* --request: a note for the server, recorded as renewal-requested. */
static int renew_request(atls_store_t *st, const cli_opts_t *o, const atls_cert_meta_t *m)
{
    atls_event_t e;
    char         err[1024];

    if (atls_store_request_renew(st, m->id, err, sizeof(err)) != ATLS_STORE_OK) {
        cli_error("renew %s: %s", o->names[0], err);
        return CLI_EXIT_FAIL;
    }
    cli_event_of_meta(&e, ATLS_EV_RENEWAL_REQUESTED, m);
    if (m->n_kt_info > 0) {
        /* the certificate the request is about */
        e.key_type = atls_key_type_name(m->kt_info[0].key_type);
        e.serial = m->kt_info[0].serial;
        e.not_after = m->kt_info[0].not_after;
    }
    cli_emit(o, &e);
    printf("renewal of %s requested; the server using %s will renew it "
           "on its next check\n", m->id, o->store_dir);
    return CLI_EXIT_OK;
}

/* NAME now, with the recorded settings and the overrides given. */
static int renew_one(atls_store_t *st, const cli_opts_t *o, atls_cert_meta_t *m)
{
    atls_cert_meta_t cur;
    char             err[1024];
    int              rc;

    /* Overrides become the recorded settings, so later renewals keep them. */
    cli_issuer_apply(o, &m->issuer);
    if (atls_issuer_normalise(&m->issuer, err, sizeof(err)) != 0) {
        return cli_usage_error("renew", "%s", err);
    }
    if (cli_issuer_vouch(o, CLI_O_VOUCHED, "renew", o->names[0], &m->issuer) != 0) {
        return CLI_EXIT_FAIL;
    }
    if (m->issuer.challenge == ATLS_CHAL_DNS01
        && (m->issuer.dns_hook == NULL || *m->issuer.dns_hook == '\0'))
    {
        return cli_usage_error("renew", "dns-01 needs --dns-hook CMD");
    }
    /* before the overrides are recorded */
    if (cli_policy_check(o, "renew", (const char *const *) m->names, m->n_names,
                         &m->issuer) != 0) {
        return CLI_EXIT_FAIL;
    }
    memset(&cur, 0, sizeof(cur));
    if (atls_job_ensure(st, (const char *const *) m->names, m->n_names, &m->issuer, &cur,
                        err, sizeof(err)) != 0)
    {
        cli_error("renew %s: %s", o->names[0], err);
        return CLI_EXIT_FAIL;
    }
    rc = cli_obtain(st, o, "renew", &cur);
    atls_cert_meta_free(&cur);
    return rc;
}

/* The usage rules; -1 when they hold, else the exit code (printed). */
static int renew_usage(const cli_opts_t *o)
{
    if (o->given & CLI_O_ALL) {
        if (o->n_names > 0) {
            return cli_usage_error("renew", "--all renews every due certificate; "
                                   "it takes no NAME");
        }
        if (o->given & (CLI_O_REQUEST | (CLI_O_ISSUER & ~(CLI_O_LISTEN | CLI_O_VOUCHED)))) {
            return cli_usage_error("renew", "--all uses each certificate's recorded "
                                   "settings; only --parallel, --listen-address and, "
                                   "to confirm recorded values, --directory, --ca-file "
                                   "and --dns-hook go with it");
        }
        return -1;
    }
    if (o->given & CLI_O_PARALLEL) {
        return cli_usage_error("renew", "--parallel goes with --all");
    }
    if (o->n_names == 0) {
        cli_error("renew: missing certificate name");
        fprintf(stderr, "Try 'autotls renew --help'.\n");
        return CLI_EXIT_USAGE;
    }
    if ((o->given & CLI_O_REQUEST) && (o->given & CLI_O_ISSUER)) {
        return cli_usage_error("renew", "--request only records a request; issuer "
                               "options cannot go with it");
    }
    if (!(o->given & CLI_O_EAB_KID) != !(o->given & CLI_O_EAB_HMAC)) {
        return cli_usage_error("renew", "--eab-kid and --eab-hmac-key go together");
    }
    return -1;
}

static int renew_run(cli_opts_t *o)
{
    atls_store_t     *st;
    atls_cert_meta_t  m;
    int               rc;

    rc = renew_usage(o);
    if (rc >= 0) {
        return rc;
    }
    st = cli_store_open(o);
    if (st == NULL) {
        return CLI_EXIT_FAIL;
    }
    memset(&m, 0, sizeof(m));
    if (cli_events_open(st, o, "renew") != 0) {
        rc = CLI_EXIT_FAIL;
    } else if (o->given & CLI_O_ALL) {
        rc = renew_all(st, o);
    } else if (cli_find_cert(st, o->names[0], &m) != 0) {
        rc = CLI_EXIT_FAIL;
    } else if (o->given & CLI_O_REQUEST) {
        rc = renew_request(st, o, &m);
    } else {
        rc = renew_one(st, o, &m);
    }
    atls_cert_meta_free(&m);
    cli_events_close(o);
    atls_store_close(st);
    return rc;
}

const cli_command_t cli_cmd_renew = {
    "renew",
    CLI_O_STORE | CLI_O_ISSUER | CLI_O_REQUEST | CLI_O_VERBOSE | CLI_O_ALL
        | CLI_O_PARALLEL,
    0, 1,
    renew_run,
    "Usage: autotls renew --store DIR [OPTIONS] NAME\n"
    "       autotls renew --store DIR --request NAME\n"
    "       autotls renew --store DIR --all [--parallel N]\n"
    "\n"
    "Renew the certificate that has NAME among its names now, with the settings\n"
    "recorded when it was issued; autotls answers the challenges itself.  Any\n"
    "issuer option of `autotls issue` (--directory, --ca-file, --challenge,\n"
    "--http-port, --key, ...) overrides and replaces the recorded value.\n"
    "The store's policy (policy.json) is honoured, as by `autotls issue`.\n"
    "\n"
    "  --store DIR    certificate store (required)\n"
    "  --request      only record a renewal request for the web server that\n"
    "                 manages this store; it renews on its next check\n"
    "  --all          renew every certificate of the store that is due (or has a\n"
    "                 pending --request), concurrently, with recorded settings\n"
    "  --parallel N   with --all: at most N orders at a time (default 8)\n"
    "  --directory URL, --ca-file FILE, --dns-hook CMD  with --all: confirm\n"
    "                 these recorded values (needed when root renews a store\n"
    "                 another user owns; see README, Security)\n"
    "  --listen-address IP  address the responders bind (default: all)\n"
    "  --csr-cn       put the first name in the CSR's subject CN from now on\n"
    "  -v, --verbose  show progress and each event recorded (twice: debug)\n"
    "  -h, --help     this text\n"
};
