/*
 * autotls issue: obtain a certificate, answering the CA's challenges with
 * standalone responders (http-01, tls-alpn-01) or the operator's DNS hook.
 * cli_obtain() is shared with `renew`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_job.h"
#include "cli.h"

static int chal_setup(void *ctx, const atls_challenge_t *c, char *why, size_t whylen)
{
    cli_responders_t *r = ctx;

    switch (c->type) {
    case ATLS_CHAL_HTTP01:
        if (r->http == NULL) {
            snprintf(why, whylen, "no http-01 responder is running");
            return -1;
        }
        if (cli_http_add(r->http, c->token, c->key_authz) != 0) {
            snprintf(why, whylen, "cannot publish http-01 token for %s", c->identifier);
            return -1;
        }
        return 0;
    case ATLS_CHAL_TLSALPN01:
        if (r->tls == NULL) {
            snprintf(why, whylen, "no tls-alpn-01 responder is running");
            return -1;
        }
        return cli_tls_add(r->tls, c->identifier, c->key_authz, why, whylen);
    default:
        /* dns-01 goes through the issuer's hook, which the job layer runs. */
        snprintf(why, whylen, "%s needs --dns-hook", atls_challenge_type_name(c->type));
        return -1;
    }
}

static void chal_teardown(void *ctx, const atls_challenge_t *c)
{
    cli_responders_t *r = ctx;

    if (c->type == ATLS_CHAL_HTTP01 && r->http != NULL) {
        cli_http_remove(r->http, c->token);
    } else if (c->type == ATLS_CHAL_TLSALPN01 && r->tls != NULL) {
        cli_tls_remove(r->tls, c->identifier);
    }
}

void cli_responder_ops(cli_responders_t *r, atls_challenge_ops_t *ops)
{
    ops->setup = chal_setup;
    ops->teardown = chal_teardown;
    ops->ctx = r;
}

void cli_print_obtained(atls_store_t *st, const char *store_dir, const char *id)
{
    atls_cert_meta_t  m;
    atls_key_type_t   kts[ATLS_KEY_TYPE_MAX];
    atls_cert_info_t  info;
    STACK_OF(X509)   *chain;
    char              err[512], when[32], path[4096];
    size_t            nk, i, k;
    time_t            now = time(NULL);

    memset(&m, 0, sizeof(m));
    if (atls_store_load_meta(st, id, &m, err, sizeof(err)) != ATLS_STORE_OK) {
        cli_error("%s: %s", id, err);
        return;
    }
    printf("certificate %s:", m.id);
    for (k = 0; k < m.n_names; k++) {
        printf("%s%s", k == 0 ? " " : ", ", m.names[k]);
    }
    printf("\n");
    nk = atls_job_key_types(&m.issuer, kts);
    for (i = 0; i < nk; i++) {
        chain = NULL;
        if (atls_store_load_cert(st, id, kts[i], NULL, &chain, err, sizeof(err))
            != ATLS_STORE_OK || chain == NULL || sk_X509_num(chain) < 1)
        {
            printf("  %-8s no certificate\n", atls_key_type_name(kts[i]));
            atls_chain_free(chain);
            continue;
        }
        memset(&info, 0, sizeof(info));
        if (atls_cert_info(sk_X509_value(chain, 0), &info) == 0) {
            cli_cert_path(store_dir, id, kts[i], path, sizeof(path));
            printf("  %-8s serial %s\n", atls_key_type_name(kts[i]), info.serial);
            printf("  %-8s issuer %s\n", "", info.issuer);
            printf("  %-8s not after %s (%ld days)\n", "",
                   cli_time(info.not_after, when, sizeof(when)),
                   cli_days_left(info.not_after, now));
            printf("  %-8s file %s\n", "", path);
            atls_cert_info_free(&info);
        }
        atls_chain_free(chain);
    }
    printf("  next renewal %s\n", cli_time(m.renew_at, when, sizeof(when)));
    atls_cert_meta_free(&m);
}

int cli_obtain(atls_store_t *st, const cli_opts_t *o, const char *verb,
               atls_cert_meta_t *m)
{
    /* on the scheduler, as several at once: it records what it does */
    return cli_obtain_many(st, o, verb, &m, 1);
}

/* 1 when the store already holds a certificate for every key type that
 * covers every name, and nothing asks for a new one. */
static int already_good(atls_store_t *st, const atls_cert_meta_t *m)
{
    atls_key_type_t  kts[ATLS_KEY_TYPE_MAX];
    STACK_OF(X509)  *chain;
    EVP_PKEY        *key;
    char             err[512];
    size_t           nk, i;
    int              ok = 1;

    if (m->state != ATLS_STATE_VALID || atls_job_due(st, m, time(NULL), 0)) {
        return 0;
    }
    nk = atls_job_key_types(&m->issuer, kts);
    for (i = 0; i < nk && ok; i++) {
        chain = NULL;
        key = NULL;
        ok = atls_store_load_cert(st, m->id, kts[i], &key, &chain, err, sizeof(err))
                 == ATLS_STORE_OK
             && atls_chain_check(chain, key, (const char *const *) m->names,
                                 m->n_names, err, sizeof(err)) == 0;
        atls_chain_free(chain);
        EVP_PKEY_free(key);
    }
    return ok;
}

/* --each: one certificate per name, obtained concurrently. */
static int issue_each(atls_store_t *st, const cli_opts_t *o, const atls_issuer_t *is)
{
    atls_cert_meta_t  *all, **due;
    char               err[1024];
    size_t             i, k, n_due = 0, n_ensured = 0;
    int                rc = CLI_EXIT_OK;

    all = calloc(o->n_names, sizeof(*all));
    due = calloc(o->n_names, sizeof(*due));
    if (all == NULL || due == NULL) {
        abort();
    }
    for (i = 0; i < o->n_names; i++) {
        const char *name = o->names[i];

        for (k = 0; k < i; k++) {
            if (strcmp(o->names[k], name) == 0) {
                break;
            }
        }
        if (k < i) {
            continue;   /* named twice: one certificate */
        }
        if (cli_policy_check(o, "issue", &name, 1, is) != 0) {
            rc = CLI_EXIT_FAIL;
            continue;
        }
        if (atls_job_ensure(st, &name, 1, is, &all[n_ensured], err, sizeof(err)) != 0) {
            cli_error("issue %s: %s", name, err);
            rc = CLI_EXIT_FAIL;
            continue;
        }
        if (!(o->given & CLI_O_FORCE) && already_good(st, &all[n_ensured])) {
            printf("%s: certificate is valid and not yet due for renewal "
                   "(use --force or `autotls renew`)\n", name);
        } else {
            due[n_due++] = &all[n_ensured];
        }
        n_ensured++;
    }
    if (n_due > 0 && cli_obtain_many(st, o, "issue", due, n_due) != CLI_EXIT_OK) {
        rc = CLI_EXIT_FAIL;
    }
    for (i = 0; i < n_ensured; i++) {
        atls_cert_meta_free(&all[i]);
    }
    free(all);
    free(due);
    return rc;
}

static int issue_run(cli_opts_t *o)
{
    atls_issuer_t     is;
    atls_cert_meta_t  m;
    atls_store_t     *st;
    char              err[1024];
    int               rc;

    if (!(o->given & CLI_O_DIRECTORY)) {
        return cli_usage_error("issue", "--directory URL is required");
    }
    if (!(o->given & CLI_O_AGREE_TOS)) {
        return cli_usage_error("issue", "--agree-tos is required (you must agree to "
                               "the CA's terms of service)");
    }
    if (!(o->given & CLI_O_EAB_KID) != !(o->given & CLI_O_EAB_HMAC)) {
        return cli_usage_error("issue", "--eab-kid and --eab-hmac-key go together");
    }
    if (o->issuer.challenge == ATLS_CHAL_DNS01 && !(o->given & CLI_O_DNS_HOOK)) {
        return cli_usage_error("issue", "--challenge dns-01 needs --dns-hook CMD");
    }

    if ((o->given & CLI_O_PARALLEL) && !(o->given & CLI_O_EACH)) {
        return cli_usage_error("issue", "--parallel goes with --each");
    }

    /* the core's issuer rules, before anything is created */
    memset(&is, 0, sizeof(is));
    cli_issuer_apply(o, &is);
    if (atls_issuer_normalise(&is, err, sizeof(err)) != 0) {
        atls_issuer_free(&is);
        return cli_usage_error("issue", "%s", err);
    }
    st = cli_store_open(o);
    if (st == NULL) {
        atls_issuer_free(&is);
        return CLI_EXIT_FAIL;
    }
    memset(&m, 0, sizeof(m));
    if (cli_events_open(st, o, "issue") != 0) {
        rc = CLI_EXIT_FAIL;
        goto done;
    }
    if (o->given & CLI_O_EACH) {
        rc = issue_each(st, o, &is);
        goto done;
    }
    /* before the store records anything for these names */
    if (cli_policy_check(o, "issue", (const char *const *) o->names, o->n_names,
                         &is) != 0) {
        rc = CLI_EXIT_FAIL;
        goto done;
    }
    if (atls_job_ensure(st, (const char *const *) o->names, o->n_names, &is, &m,
                        err, sizeof(err)) != 0)
    {
        cli_error("issue %s: %s", o->names[0], err);
        rc = CLI_EXIT_FAIL;
        goto done;
    }

    if (!(o->given & CLI_O_FORCE) && already_good(st, &m)) {
        printf("%s: certificate is valid and not yet due for renewal "
               "(use --force or `autotls renew`)\n", o->names[0]);
        cli_print_obtained(st, o->store_dir, m.id);
        rc = CLI_EXIT_OK;
    } else {
        rc = cli_obtain(st, o, "issue", &m);
    }

done:
    cli_events_close(o);
    atls_cert_meta_free(&m);
    atls_issuer_free(&is);
    atls_store_close(st);
    return rc;
}

const cli_command_t cli_cmd_issue = {
    "issue",
    CLI_O_STORE | CLI_O_ISSUER | CLI_O_FORCE | CLI_O_VERBOSE | CLI_O_EACH
        | CLI_O_PARALLEL,
    1, -1,
    issue_run,
    "Usage: autotls issue --directory URL --store DIR --agree-tos [OPTIONS] NAME...\n"
    "       autotls issue ... --each [--parallel N] NAME...\n"
    "\n"
    "Obtain a certificate for NAME... (the first name is its id) and store it.\n"
    "With --each, one certificate per NAME instead, obtained concurrently.\n"
    "Challenges are answered by autotls itself while it runs.  A policy the\n"
    "server saved in the store (policy.json) is honoured: a certificate it does\n"
    "not allow is refused, with a policy-denied record in the audit trail.\n"
    "\n"
    "  --directory URL          ACME directory URL (required)\n"
    "  --ca-file FILE           CA bundle that verifies the ACME server's TLS\n"
    "                           (default: the system trust store)\n"
    "  --store DIR              certificate store (created 0700 if missing; required)\n"
    "  --contact EMAIL          account contact, repeatable (mailto: added)\n"
    "  --agree-tos              agree to the CA's terms of service (required)\n"
    "  --eab-kid KID            external account binding key id\n"
    "  --eab-hmac-key B64URL    external account binding MAC key (with --eab-kid)\n"
    "  --challenge TYPE         http-01 (default), tls-alpn-01 or dns-01\n"
    "  --http-port N            port the http-01 responder listens on (default 80)\n"
    "  --tls-port N             port the tls-alpn-01 responder listens on (default 443)\n"
    "  --dns-hook CMD           dns-01: runs `CMD setup|teardown _acme-challenge.NAME VALUE`\n"
    "  --key TYPE               ec256 (default), ec384, rsa2048, rsa3072, rsa4096;\n"
    "                           give twice for two certificates (e.g. ec256 + rsa2048)\n"
    "  --profile NAME           ACME profile, used when the CA offers it\n"
    "  --profile-required       fail when the CA does not offer --profile\n"
    "  --preferred-chain NAME   pick the alternate chain whose root has this CN\n"
    "  --csr-cn                 also put the first name in the CSR's subject\n"
    "                           common name (for clients that still read the CN;\n"
    "                           recorded, so renewals keep it)\n"
    "  --renew-before WHEN      33% of the lifetime left (default 1/3) or a\n"
    "                           duration before expiry (30d, 12h)\n"
    "  --listen-address IP      address the responders bind (default: all)\n"
    "  --force                  obtain a new certificate even if the stored one is good\n"
    "  --each                   one certificate per NAME (each its own id), all\n"
    "                           ordered at once with the same options\n"
    "  --parallel N             with --each: at most N orders at a time (default 8)\n"
    "  -v, --verbose            show progress and each event recorded (twice: debug)\n"
    "  -h, --help               this text\n"
};
