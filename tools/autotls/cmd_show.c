/* autotls show: everything the store knows about one certificate, never keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls_schedule.h"
#include "atls_job.h"
#include "cli.h"

static void print_policy(const atls_renew_policy_t *p)
{
    if (p->renew_before > 0 && p->renew_before % 86400 == 0) {
        printf("  renew before:    %ldd before expiry\n", p->renew_before / 86400);
    } else if (p->renew_before > 0 && p->renew_before % 3600 == 0) {
        printf("  renew before:    %ldh before expiry\n", p->renew_before / 3600);
    } else if (p->renew_before > 0) {
        printf("  renew before:    %lds before expiry\n", p->renew_before);
    } else if (p->renew_fraction > 0) {
        printf("  renew before:    %.0f%% of the lifetime left\n", p->renew_fraction * 100);
    } else {
        printf("  renew before:    default (1/3 of the lifetime left)\n");
    }
}

static void print_issuer(const atls_issuer_t *is)
{
    atls_key_type_t kts[ATLS_KEY_TYPE_MAX];
    size_t          i, nk;

    printf("issuer settings:\n");
    printf("  directory:       %s\n", is->directory ? is->directory : "-");
    printf("  ca file:         %s\n", is->ca_file ? is->ca_file : "(system trust store)");
    printf("  contact:        ");
    for (i = 0; i < is->n_contact; i++) {
        printf(" %s", is->contact[i]);
    }
    printf("%s\n", is->n_contact == 0 ? " -" : "");
    printf("  challenge:       %s\n", atls_challenge_type_name(is->challenge));
    if (is->challenge == ATLS_CHAL_HTTP01) {
        printf("  http port:       %d\n", is->http_port > 0 ? is->http_port : 80);
    } else if (is->challenge == ATLS_CHAL_TLSALPN01) {
        printf("  tls port:        %d\n", is->tls_port > 0 ? is->tls_port : 443);
    } else {
        printf("  dns hook:        %s\n", is->dns_hook ? is->dns_hook : "-");
    }
    nk = atls_job_key_types(is, kts);
    printf("  key types:      ");
    for (i = 0; i < nk; i++) {
        printf(" %s", atls_key_type_name(kts[i]));
    }
    printf("\n");
    printf("  profile:         %s%s\n", is->profile ? is->profile : "-",
           is->profile && is->profile_required ? " (required)" : "");
    printf("  preferred chain: %s\n", is->preferred_chain ? is->preferred_chain : "-");
    printf("  csr common name: %s\n", is->csr_cn ? "yes (first name)" : "no");
    printf("  ocsp stapling:   %s\n", is->stapling_off ? "off (CRLs are checked instead)"
                                                         : "on");
    printf("  must-staple:     %s\n", is->must_staple ? "yes (TLS Feature in the CSR)"
                                                        : "no");
    print_policy(&is->renew);
}

static void print_key(atls_store_t *st, const char *store_dir, const char *id,
                      atls_key_type_t kt, time_t now)
{
    STACK_OF(X509)   *chain = NULL;
    atls_cert_info_t  info;
    char              err[512], path[4096], t1[32], t2[32];
    size_t            k;
    int               i;

    cli_cert_path(store_dir, id, kt, path, sizeof(path));
    printf("%s:\n", atls_key_type_name(kt));
    printf("  file:            %s\n", path);
    if (atls_store_load_cert(st, id, kt, NULL, &chain, err, sizeof(err)) != ATLS_STORE_OK
        || chain == NULL || sk_X509_num(chain) < 1)
    {
        printf("  certificate:     none yet\n");
        atls_chain_free(chain);
        return;
    }
    memset(&info, 0, sizeof(info));
    if (atls_cert_info(sk_X509_value(chain, 0), &info) != 0) {
        printf("  certificate:     unreadable\n");
        atls_chain_free(chain);
        return;
    }
    printf("  serial:          %s\n", info.serial);
    printf("  subject:         %s\n", info.subject);
    printf("  issuer:          %s\n", info.issuer);
    printf("  names:          ");
    for (k = 0; k < info.n_names; k++) {
        printf(" %s", info.names[k]);
    }
    printf("\n");
    printf("  key type:        %s\n", atls_key_type_name(info.key_type));
    printf("  not before:      %s\n", cli_time(info.not_before, t1, sizeof(t1)));
    printf("  not after:       %s (%ld days left)\n",
           cli_time(info.not_after, t2, sizeof(t2)), cli_days_left(info.not_after, now));
    atls_cert_info_free(&info);

    printf("  chain:\n");
    for (i = 0; i < sk_X509_num(chain); i++) {
        char subj[256], iss[256];

        X509_NAME_oneline(X509_get_subject_name(sk_X509_value(chain, i)), subj, sizeof(subj));
        X509_NAME_oneline(X509_get_issuer_name(sk_X509_value(chain, i)), iss, sizeof(iss));
        printf("    %d subject: %s\n", i, subj);
        printf("      issuer:  %s\n", iss);
    }
    atls_chain_free(chain);
}

/* What is known about kt's certificate being revoked: its OCSP state, its
 * CRL (with the cache's facts), and a revocation seen. */
static void print_revocation(atls_store_t *st, const atls_cert_meta_t *m,
                             atls_key_type_t kt)
{
    const atls_cert_kt_info_t *ki = atls_job_kt_info(m, kt);
    atls_crl_cache_t           cc;
    char                       t[32], err[512];
    int                        rc;

    if (ki == NULL) {
        printf("  revocation:      not recorded yet\n");
        return;
    }
    printf("  ocsp:            %s\n", atls_ocsp_status_name(ki->ocsp_status));
    printf("    responder:     %s\n", ki->ocsp_url ? ki->ocsp_url
                                                    : "none (no responder URL)");
    printf("    this update:   %s\n", cli_time(ki->ocsp_this_update, t, sizeof(t)));
    printf("    next update:   %s\n", cli_time(ki->ocsp_next_update, t, sizeof(t)));
    printf("    next refresh:  %s\n", cli_time(ki->ocsp_next_refresh, t, sizeof(t)));
    if (ki->ocsp_failures > 0) {
        printf("    failures:      %u\n", ki->ocsp_failures);
    }
    printf("    last error:    %s\n", ki->ocsp_error ? ki->ocsp_error : "-");
    printf("  crl:             %s\n", ki->crl_url ? ki->crl_url : "none (no CRL URL)");
    if (ki->crl_url != NULL) {
        rc = atls_store_load_crl(st, ki->crl_url, &cc, NULL, NULL, err, sizeof(err));
        if (rc == ATLS_STORE_OK) {
            printf("    fetched:       %s\n", cli_time(cc.fetched, t, sizeof(t)));
            printf("    next update:   %s\n", cli_time(cc.next_update, t, sizeof(t)));
            atls_crl_cache_free(&cc);
        } else {
            printf("    fetched:       %s\n", rc == ATLS_STORE_NOTFOUND ? "not yet" : err);
        }
    }
    if (ki->revoked_seen == 0) {
        printf("  revoked:         no\n");
        return;
    }
    printf("  revoked:         yes, being replaced\n");
    printf("    seen:          %s\n", cli_time(ki->revoked_seen, t, sizeof(t)));
    printf("    at:            %s\n", cli_time(ki->revoked_at, t, sizeof(t)));
    printf("    reason:        %s\n", atls_crl_reason_name(ki->revoked_reason));
    printf("    source:        %s\n", ki->revoked_source ? ki->revoked_source : "-");
}

/* 1 when a certificate of m is known revoked. */
static int show_revoked(const atls_cert_meta_t *m)
{
    size_t i;

    for (i = 0; i < m->n_kt_info && i < ATLS_KEY_TYPE_MAX; i++) {
        if (m->kt_info[i].revoked_seen != 0) {
            return 1;
        }
    }
    return 0;
}

/* The last error in its parts; a meta written before they existed has only
 * the display text, shown as it is. */
static void print_last_error(const atls_cert_meta_t *m)
{
    if (m->last_error_type == NULL) {
        printf("last error:        %s\n", m->last_error ? m->last_error : "-");
        return;
    }
    printf("last error:        %s\n", m->last_error_type);
    printf("  class:           %s\n", atls_err_class_name(m->last_error_class));
    printf("  detail:          %s\n", m->last_error_detail ? m->last_error_detail : "-");
    printf("  key type:        %s\n", m->last_error_key_type ? m->last_error_key_type : "-");
}

static int show_run(cli_opts_t *o)
{
    atls_store_t     *st;
    atls_cert_meta_t  m;
    atls_key_type_t   kts[ATLS_KEY_TYPE_MAX];
    char              t[32];
    size_t            i, nk;
    time_t            now = time(NULL);

    st = cli_store_open(o);
    if (st == NULL) {
        return CLI_EXIT_FAIL;
    }
    if (cli_find_cert(st, o->names[0], &m) != 0) {
        atls_store_close(st);
        return CLI_EXIT_FAIL;
    }

    printf("id:                %s\n", m.id);
    printf("names:            ");
    for (i = 0; i < m.n_names; i++) {
        printf(" %s", m.names[i]);
    }
    printf("\n");
    printf("state:             %s%s\n", atls_cert_state_name(m.state),
           show_revoked(&m) ? " (a certificate is revoked: being replaced)" : "");
    printf("failures:          %u\n", m.failures);
    print_last_error(&m);
    printf("last attempt:      %s\n", cli_time(m.last_attempt, t, sizeof(t)));
    printf("last success:      %s\n", cli_time(m.last_success, t, sizeof(t)));
    printf("next renewal:      %s\n", cli_time(m.renew_at, t, sizeof(t)));
    printf("next attempt:      %s\n", cli_time(m.next_attempt, t, sizeof(t)));
    if (m.ari_window_start != 0) {
        char t2[32];

        printf("ari window:        %s .. %s\n", cli_time(m.ari_window_start, t, sizeof(t)),
               cli_time(m.ari_window_end, t2, sizeof(t2)));
    } else {
        printf("ari window:        %s\n", m.ari_next_check != 0 ? "none (the CA offers no "
               "renewal information)" : "-");
    }
    printf("ari next check:    %s\n", cli_time(m.ari_next_check, t, sizeof(t)));
    printf("account:           %s\n", m.account_url ? m.account_url : "-");
    printf("generation:        %llu\n", (unsigned long long) m.generation);
    print_issuer(&m.issuer);

    nk = atls_job_key_types(&m.issuer, kts);
    for (i = 0; i < nk; i++) {
        print_key(st, o->store_dir, m.id, kts[i], now);
        print_revocation(st, &m, kts[i]);
    }
    atls_cert_meta_free(&m);
    atls_store_close(st);
    return CLI_EXIT_OK;
}

const cli_command_t cli_cmd_show = {
    "show",
    CLI_O_STORE | CLI_O_VERBOSE,
    1, 1,
    show_run,
    "Usage: autotls show --store DIR NAME\n"
    "\n"
    "Show everything about the certificate that has NAME among its names: state,\n"
    "schedule, issuer settings, and per key type the serial, validity, chain,\n"
    "file path, OCSP state, CRL and any revocation seen.  Private keys are never\n"
    "shown.\n"
    "\n"
    "  --store DIR   certificate store (required)\n"
    "  -h, --help    this text\n"
};
