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

static int revoke_run(cli_opts_t *o)
{
    atls_store_t     *st;
    atls_cert_meta_t  m;
    atls_key_type_t   kts[ATLS_KEY_TYPE_MAX];
    atls_cert_info_t  info;
    STACK_OF(X509)   *chain;
    char              err[1024], serials[ATLS_KEY_TYPE_MAX][132];
    size_t            nk, i;
    int               rc;

    st = cli_store_open(o);
    if (st == NULL) {
        return CLI_EXIT_FAIL;
    }
    if (cli_find_cert(st, o->names[0], &m) != 0) {
        atls_store_close(st);
        return CLI_EXIT_FAIL;
    }
    /* revocation talks to the recorded CA, trusting the recorded CA file */
    if (cli_issuer_vouch(o, CLI_O_DIRECTORY | CLI_O_CA_FILE, "revoke", o->names[0],
                         &m.issuer) != 0)
    {
        atls_cert_meta_free(&m);
        atls_store_close(st);
        return CLI_EXIT_FAIL;
    }

    /* Remember what is being revoked: the store may move on afterwards. */
    nk = atls_job_key_types(&m.issuer, kts);
    for (i = 0; i < nk; i++) {
        serials[i][0] = '\0';
        chain = NULL;
        if (atls_store_load_cert(st, m.id, kts[i], NULL, &chain, err, sizeof(err))
                == ATLS_STORE_OK
            && chain != NULL && sk_X509_num(chain) > 0)
        {
            memset(&info, 0, sizeof(info));
            if (atls_cert_info(sk_X509_value(chain, 0), &info) == 0) {
                snprintf(serials[i], sizeof(serials[i]), "%s", info.serial);
                atls_cert_info_free(&info);
            }
        }
        atls_chain_free(chain);
    }

    err[0] = '\0';
    if (atls_job_revoke_blocking(st, m.id, o->reason, err, sizeof(err)) != 0) {
        cli_error("revoke %s: %s", o->names[0], err[0] ? err : "failed");
        rc = CLI_EXIT_FAIL;
    } else {
        for (i = 0; i < nk; i++) {
            if (serials[i][0] != '\0') {
                printf("revoked %s %s serial %s (reason %s)\n", m.id,
                       atls_key_type_name(kts[i]), serials[i], reason_name(o->reason));
            }
        }
        rc = CLI_EXIT_OK;
    }
    atls_cert_meta_free(&m);
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
    "  -v, --verbose    show progress (twice: debug)\n"
    "  -h, --help       this text\n"
};
