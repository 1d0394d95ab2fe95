/*
 * What a host's configuration gives the core (its names, its issuer
 * settings) and the start-up checks that make `apache2 -t` fail with the
 * directive named: every managed host complete, every problem logged in
 * one run.  The directives themselves are in mod_autotls_config.c.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"

#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

static void
push_name(apr_array_header_t *a, const char *name)
{
    int i;

    for (i = 0; i < a->nelts; i++) {
        if (strcasecmp(APR_ARRAY_IDX(a, i, const char *), name) == 0) {
            return;
        }
    }
    APR_ARRAY_PUSH(a, const char *) = name;
}

int
autotls_config_names(apr_pool_t *p, server_rec *s, const char ***names, size_t *n)
{
    apr_array_header_t *a = apr_array_make(p, 4, sizeof(const char *));
    apr_array_header_t *src[2] = { s->names, s->wild_names };
    int i, j;

    if (s->server_hostname != NULL) {
        push_name(a, apr_pstrdup(p, s->server_hostname));
    }
    for (j = 0; j < 2; j++) {
        for (i = 0; src[j] != NULL && i < src[j]->nelts; i++) {
            push_name(a, APR_ARRAY_IDX(src[j], i, const char *));
        }
    }
    for (i = 0; i < a->nelts; i++) {
        char *lc = apr_pstrdup(p, APR_ARRAY_IDX(a, i, const char *));

        ap_str_tolower(lc);
        APR_ARRAY_IDX(a, i, const char *) = lc;
    }
    *names = (const char **) a->elts;
    *n = (size_t) a->nelts;
    return a->nelts > 0 ? 0 : -1;
}

static char *
dup_or_null(const char *s)
{
    return s ? atls_strdup(s) : NULL;
}

static apr_status_t
issuer_cleanup(void *data)
{
    atls_issuer_free(data);
    free(data);
    return APR_SUCCESS;
}

/* The core's issuer settings for a host (malloc'd, freed with pool p). */
atls_issuer_t *
autotls_config_issuer(apr_pool_t *p, autotls_srv_conf_t *sc)
{
    atls_issuer_t *is = calloc(1, sizeof(*is));
    char err[256];
    int i;

    if (is == NULL) {
        abort();
    }
    is->directory = dup_or_null(sc->ca);
    is->ca_file = dup_or_null(sc->ca_file);
    if (sc->contact != NULL && sc->contact->nelts > 0) {
        is->contact = calloc((size_t) sc->contact->nelts + 1, sizeof(char *));
        if (is->contact == NULL) {
            abort();
        }
        for (i = 0; i < sc->contact->nelts; i++) {
            is->contact[i] = atls_strdup(APR_ARRAY_IDX(sc->contact, i, const char *));
        }
        is->n_contact = (size_t) sc->contact->nelts;
    }
    is->agree_tos = sc->accept_terms == 1;
    is->challenge = sc->challenge == AUTOTLS_UNSET
                    ? ATLS_CHAL_HTTP01 : (atls_challenge_type_t) sc->challenge;
    is->dns_hook = dup_or_null(sc->dns_hook);
    is->eab_kid = dup_or_null(sc->eab_kid);
    is->eab_hmac = dup_or_null(sc->eab_hmac);
    if (sc->n_keys > 0) {
        memcpy(is->key_types, sc->keys, sizeof(is->key_types));
        is->n_key_types = (size_t) sc->n_keys;
    } else {
        is->key_types[0] = ATLS_KEY_EC256;
        is->n_key_types = 1;
    }
    is->profile = dup_or_null(sc->profile);
    is->profile_required = sc->profile_required == 1;
    is->preferred_chain = dup_or_null(sc->preferred_chain);
    if (sc->renew_set) {
        is->renew = sc->renew;
    }
    is->stapling_off = sc->stapling == 0;
    is->must_staple = sc->must_staple == 1;
    apr_pool_cleanup_register(p, is, issuer_cleanup, apr_pool_cleanup_null);
    /* contacts as "mailto:" URLs; autotls_config_check reported any error */
    (void) atls_issuer_normalise(is, err, sizeof(err));
    return is;
}

static int
check_fail(server_rec *s, autotls_srv_conf_t *sc, const char *what)
{
    static const char *const mode[] = { "On", "Dynamic", "OnDemand" };

    ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s,
                 "AutoTLS %s for %s (%s:%d): %s", mode[sc->dynamic],
                 s->server_hostname ? s->server_hostname : "(no ServerName)",
                 sc->where_file ? sc->where_file : "?", sc->where_line, what);
    return 1;
}

/* Every managed host must be complete; returns OK or !OK after logging
 * every problem (so one `apache2 -t` run shows them all). */
int
autotls_config_check(apr_pool_t *p, server_rec *base)
{
    server_rec *s;
    int bad = 0;

    for (s = base; s != NULL; s = s->next) {
        autotls_srv_conf_t *sc = autotls_config_get(s);
        const char **names;
        size_t n, i;
        char why[256];
        const char *msg;
        int chal;

        if (sc->enabled != 1) {
            continue;
        }
        if (sc->ca == NULL) {
            bad |= check_fail(s, sc, "AutoTLSCA is not set (the ACME directory URL)");
        }
        if (sc->accept_terms != 1) {
            bad |= check_fail(s, sc, "AutoTLSAcceptTerms On is required "
                              "(the CA's terms of service must be accepted)");
        }
        if (!sc->ssl_on) {
            bad |= check_fail(s, sc, "this host has no 'SSLEngine on': "
                              "AutoTLS needs mod_ssl enabled in the same host");
        }
        /* the rules every host applies (contacts, key-type pair, EAB,
         * must-staple), this one said with the directives' names */
        if (sc->must_staple == 1 && sc->stapling == 0) {
            bad |= check_fail(s, sc, "AutoTLSMustStaple On needs AutoTLSStapling On: "
                              "browsers refuse a must-staple certificate served "
                              "without a staple");
        } else if (atls_issuer_normalise(autotls_config_issuer(p, sc), why, sizeof(why))
                   != 0) {
            bad |= check_fail(s, sc, apr_pstrdup(p, why));
        }
        if (sc->ssl_stapling) {
            /* not an error: the host is served and stapled all the same */
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "AutoTLS On for %s (%s:%d): SSLUseStapling On has no effect "
                         "in an AutoTLS host: autotls staples there itself, as "
                         "AutoTLSStapling says; mod_ssl's start-up errors about "
                         "stapling the self-signed fallback certificate can be ignored",
                         s->server_hostname ? s->server_hostname : "(no ServerName)",
                         sc->where_file ? sc->where_file : "?", sc->where_line);
        }
        if (autotls_policy_check_host(p, sc, autotls_config_get(base)->policy, &msg)
            != 0) {
            bad |= check_fail(s, sc, msg);
        }
        chal = sc->challenge == AUTOTLS_UNSET ? ATLS_CHAL_HTTP01 : sc->challenge;
        if (chal == ATLS_CHAL_DNS01 && sc->dns_hook == NULL) {
            bad |= check_fail(s, sc, "AutoTLSChallenges dns-01 needs AutoTLSDnsHook");
        }
        if (autotls_config_names(p, s, &names, &n) != 0) {
            bad |= check_fail(s, sc, "the host has no ServerName");
            continue;
        }
        for (i = 0; i < n; i++) {
            if (names[i][0] == '*' && chal != ATLS_CHAL_DNS01) {
                bad |= check_fail(s, sc, apr_psprintf(p, "wildcard name '%s' "
                                  "needs AutoTLSChallenges dns-01", names[i]));
            } else if (!autotls_name_ok(names[i])) {
                bad |= check_fail(s, sc, apr_psprintf(p, "'%s' is not a name a "
                                  "certificate can be issued for", names[i]));
            }
        }
    }
    return bad ? !OK : OK;
}
