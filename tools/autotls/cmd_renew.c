/*
 * autotls renew: renew now with the issuer settings recorded in the store
 * (options given here override and are recorded), or --request: leave a
 * note for the server that manages the store to renew on its next tick.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_job.h"
#include "cli.h"

static int renew_run(cli_opts_t *o)
{
    atls_store_t     *st;
    atls_cert_meta_t  m, cur;
    char              err[1024];
    int               rc;

    if ((o->given & CLI_O_REQUEST) && (o->given & CLI_O_ISSUER)) {
        return cli_usage_error("renew", "--request only records a request; issuer "
                               "options cannot go with it");
    }
    if (!(o->given & CLI_O_EAB_KID) != !(o->given & CLI_O_EAB_HMAC)) {
        return cli_usage_error("renew", "--eab-kid and --eab-hmac-key go together");
    }

    st = cli_store_open(o);
    if (st == NULL) {
        return CLI_EXIT_FAIL;
    }
    if (cli_find_cert(st, o->names[0], &m) != 0) {
        atls_store_close(st);
        return CLI_EXIT_FAIL;
    }

    if (o->given & CLI_O_REQUEST) {
        if (atls_store_request_renew(st, m.id, err, sizeof(err)) != ATLS_STORE_OK) {
            cli_error("renew %s: %s", o->names[0], err);
            rc = CLI_EXIT_FAIL;
        } else {
            printf("renewal of %s requested; the server using %s will renew it "
                   "on its next check\n", m.id, o->store_dir);
            rc = CLI_EXIT_OK;
        }
        atls_cert_meta_free(&m);
        atls_store_close(st);
        return rc;
    }

    /* Overrides become the recorded settings, so later renewals keep them. */
    cli_issuer_apply(o, &m.issuer);
    if (m.issuer.challenge == ATLS_CHAL_DNS01
        && (m.issuer.dns_hook == NULL || *m.issuer.dns_hook == '\0'))
    {
        atls_cert_meta_free(&m);
        atls_store_close(st);
        return cli_usage_error("renew", "dns-01 needs --dns-hook CMD");
    }
    memset(&cur, 0, sizeof(cur));
    if (atls_job_ensure(st, (const char *const *) m.names, m.n_names, &m.issuer, &cur,
                        err, sizeof(err)) != 0)
    {
        cli_error("renew %s: %s", o->names[0], err);
        atls_cert_meta_free(&m);
        atls_store_close(st);
        return CLI_EXIT_FAIL;
    }
    rc = cli_obtain(st, o, "renew", &cur);
    atls_cert_meta_free(&cur);
    atls_cert_meta_free(&m);
    atls_store_close(st);
    return rc;
}

const cli_command_t cli_cmd_renew = {
    "renew",
    CLI_O_STORE | CLI_O_ISSUER | CLI_O_REQUEST | CLI_O_VERBOSE,
    1, 1,
    renew_run,
    "Usage: autotls renew --store DIR [OPTIONS] NAME\n"
    "       autotls renew --store DIR --request NAME\n"
    "\n"
    "Renew the certificate that has NAME among its names now, with the settings\n"
    "recorded when it was issued; autotls answers the challenges itself.  Any\n"
    "issuer option of `autotls issue` (--directory, --ca-file, --challenge,\n"
    "--http-port, --key, ...) overrides and replaces the recorded value.\n"
    "\n"
    "  --store DIR    certificate store (required)\n"
    "  --request      only record a renewal request for the web server that\n"
    "                 manages this store; it renews on its next check\n"
    "  --listen-address IP  address the responders bind (default: all)\n"
    "  --csr-cn       put the first name in the CSR's subject CN from now on\n"
    "  -v, --verbose  show progress (twice: debug)\n"
    "  -h, --help     this text\n"
};
