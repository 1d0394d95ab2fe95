/* autotls revoke: revoke the current certificate(s) of one store entry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_job.h"
#include "cli.h"

static const char *reason_name(int r)
{
    switch (r) {
    case ATLS_REVOKE_KEY_COMPROMISE:           return "keyCompromise";
    case ATLS_REVOKE_AFFILIATION_CHANGED:      return "affiliationChanged";
    case ATLS_REVOKE_SUPERSEDED:               return "superseded";
    case ATLS_REVOKE_CESSATION_OF_OPERATION:   return "cessationOfOperation";
    default:                                   return "unspecified";
    }
}

/* What is revoked, read before the store moves on. */
typedef struct {
    atls_key_type_t  kt;
    int              have;           /* a certificate of kt was in the store */
    atls_cert_info_t info;
    time_t           revoked_seen;   /* its kt_info's, before */
} revoke_item_t;

static void revoke_items_load(atls_store_t *st, const atls_cert_meta_t *m,
                              revoke_item_t *items, size_t *n)
{
    atls_key_type_t            kts[ATLS_KEY_TYPE_MAX];
    const atls_cert_kt_info_t *ki;
    X509                      *leaf;
    char                       err[512];
    size_t                     i;

    *n = atls_job_key_types(&m->issuer, kts);
    for (i = 0; i < *n; i++) {
        memset(&items[i], 0, sizeof(items[i]));
        items[i].kt = kts[i];
        leaf = NULL;
        if (atls_store_load_leaf(st, m->id, kts[i], &leaf, err, sizeof(err))
                == ATLS_STORE_OK && leaf != NULL) {
            items[i].have = atls_cert_info(leaf, &items[i].info) == 0;
        }
        X509_free(leaf);
        ki = atls_job_kt_info(m, kts[i]);
        items[i].revoked_seen = ki != NULL ? ki->revoked_seen : 0;
    }
}

/* 1 when the revocation of it was recorded by this run: all of them when
 * the job succeeded; after a failure, those whose record changed (the CA
 * accepted some key types before another failed). */
static int revoke_item_done(atls_store_t *st, const char *id, const revoke_item_t *it,
                            int all_ok)
{
    atls_cert_meta_t           m;
    const atls_cert_kt_info_t *ki;
    char                       err[512];
    int                        done = 0;

    if (!it->have || all_ok) {
        return it->have;
    }
    memset(&m, 0, sizeof(m));
    if (atls_store_load_meta(st, id, &m, err, sizeof(err)) == ATLS_STORE_OK) {
        ki = atls_job_kt_info(&m, it->kt);
        done = ki != NULL && ki->revoked_seen != 0 && ki->revoked_seen != it->revoked_seen
               && ki->serial != NULL && strcmp(ki->serial, it->info.serial) == 0;
    }
    atls_cert_meta_free(&m);
    return done;
}

static void revoke_emit(const cli_opts_t *o, const atls_cert_meta_t *m,
                        const revoke_item_t *it)
{
    atls_event_t e;

    cli_event_of_meta(&e, ATLS_EV_REVOKED, m);
    e.key_type = atls_key_type_name(it->kt);
    e.serial = it->info.serial;
    e.issuer = it->info.issuer;
    e.not_after = it->info.not_after;
    e.reason = o->reason;
    e.revoked_source = "operator";
    cli_emit(o, &e);
}

static int revoke_run(cli_opts_t *o)
{
    atls_store_t     *st;
    atls_cert_meta_t  m;
    revoke_item_t     items[ATLS_KEY_TYPE_MAX];
    char              err[1024];
    size_t            n = 0, i;
    int               rc = CLI_EXIT_FAIL, ok;

    st = cli_store_open(o);
    if (st == NULL) {
        return CLI_EXIT_FAIL;
    }
    memset(&m, 0, sizeof(m));
    if (cli_events_open(st, o, "revoke") != 0 || cli_find_cert(st, o->names[0], &m) != 0) {
        goto done;
    }
    /* revocation talks to the recorded CA, trusting the recorded CA file */
    if (cli_issuer_vouch(o, CLI_O_DIRECTORY | CLI_O_CA_FILE, "revoke", o->names[0],
                         &m.issuer) != 0)
    {
        goto done;
    }

    revoke_items_load(st, &m, items, &n);
    err[0] = '\0';
    ok = atls_job_revoke_blocking(st, m.id, o->reason, err, sizeof(err)) == 0;
    if (ok) {
        cli_store_changed(st, m.id);    /* replaced at once by the servers */
    }
    for (i = 0; i < n; i++) {
        if (!revoke_item_done(st, m.id, &items[i], ok)) {
            continue;
        }
        /* the job layer records it in the meta; the audit trail is ours */
        revoke_emit(o, &m, &items[i]);
        if (ok) {
            printf("revoked %s %s serial %s (reason %s)\n", m.id,
                   atls_key_type_name(items[i].kt), items[i].info.serial,
                   reason_name(o->reason));
        }
    }
    if (!ok) {
        cli_error("revoke %s: %s", o->names[0], err[0] ? err : "failed");
    }
    rc = ok ? CLI_EXIT_OK : CLI_EXIT_FAIL;

done:
    for (i = 0; i < n; i++) {
        atls_cert_info_free(&items[i].info);
    }
    atls_cert_meta_free(&m);
    cli_events_close(o);
    atls_store_close(st);
    return rc;
}

const cli_command_t cli_cmd_revoke = {
    "revoke",
    CLI_O_STORE | CLI_O_REASON | CLI_O_VERBOSE | CLI_O_DIRECTORY | CLI_O_CA_FILE,
    1, 1,
    revoke_run,
    "Usage: autotls revoke --store DIR [--reason REASON] NAME\n"
    "\n"
    "Revoke the current certificate(s) of the entry that has NAME among its names,\n"
    "signed with the account that obtained them.\n"
    "\n"
    "  --store DIR      certificate store (required)\n"
    "  --reason REASON  unspecified (default), keyCompromise, affiliationChanged,\n"
    "                   superseded, cessationOfOperation (or the RFC 5280 number)\n"
    "  --directory URL, --ca-file FILE  confirm the recorded values (needed when\n"
    "                   root revokes in a store another user owns)\n"
    "  -v, --verbose    show progress and each event recorded (twice: debug)\n"
    "  -h, --help       this text\n"
};
