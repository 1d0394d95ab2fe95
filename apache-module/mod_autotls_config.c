/*
 * Directives and per-server configuration (create/merge).  The start-up
 * checks that make `apache2 -t` fail with the directive named, and what a
 * host's configuration gives the core (its names, its issuer), are in
 * mod_autotls_config_check.c.
 */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "util_cfgtree.h"
#include "apr_strings.h"

#include "atls_b64.h"
#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

autotls_srv_conf_t *
autotls_config_get(server_rec *s)
{
    return ap_get_module_config(s->module_config, &autotls_module);
}

void *
autotls_config_create_srv(apr_pool_t *p, server_rec *s)
{
    autotls_srv_conf_t *sc = apr_pcalloc(p, sizeof(*sc));

    sc->s = s;
    sc->enabled = AUTOTLS_UNSET;
    sc->accept_terms = AUTOTLS_UNSET;
    sc->challenge = AUTOTLS_UNSET;
    sc->profile_required = AUTOTLS_UNSET;
    sc->check_interval = AUTOTLS_UNSET;
    sc->max_parallel = AUTOTLS_UNSET;
    sc->preload = AUTOTLS_UNSET;
    sc->stapling = AUTOTLS_UNSET;
    sc->must_staple = AUTOTLS_UNSET;
    sc->notify_timeout = AUTOTLS_UNSET;
    sc->notify_queue = AUTOTLS_UNSET;
    sc->dynamic_unknown = AUTOTLS_UNSET;
    sc->cache_size = AUTOTLS_UNSET;
    autotls_ondemand_init(&sc->od);
    return sc;
}

void *
autotls_config_create_dir(apr_pool_t *p, char *dir)
{
    return apr_pcalloc(p, sizeof(autotls_dir_conf_t));
}

void *
autotls_config_merge_dir(apr_pool_t *p, void *basev, void *addv)
{
    autotls_dir_conf_t *base = basev, *add = addv;
    autotls_dir_conf_t *mrg = apr_pcalloc(p, sizeof(*mrg));

    mrg->api_token = add->api_token ? add->api_token : base->api_token;
    return mrg;
}

#define MERGE_PTR(f)  mrg->f = add->f ? add->f : base->f
#define MERGE_INT(f)  mrg->f = add->f != AUTOTLS_UNSET ? add->f : base->f
/* a value with its own "was set" flag: both taken from the same side */
#define MERGE_SET(flag, f)                                                   \
    do {                                                                     \
        const autotls_srv_conf_t *from_ = add->flag ? add : base;            \
        mrg->flag = from_->flag;                                             \
        mrg->f = from_->f;                                                   \
    } while (0)

void *
autotls_config_merge_srv(apr_pool_t *p, void *basev, void *addv)
{
    autotls_srv_conf_t *base = basev, *add = addv;
    autotls_srv_conf_t *mrg = apr_pcalloc(p, sizeof(*mrg));

    mrg->s = add->s;
    /* AutoTLS itself is not inherited: the main server's switch does not
     * turn every virtual host into a managed one. */
    mrg->enabled = add->enabled;
    mrg->dynamic = add->dynamic;
    mrg->where_file = add->where_file;
    mrg->where_line = add->where_line;
    mrg->ssl_on = add->ssl_on;
    mrg->ssl_stapling = add->ssl_stapling;
    MERGE_PTR(ca);
    MERGE_PTR(ca_file);
    MERGE_PTR(contact);
    MERGE_INT(accept_terms);
    MERGE_INT(challenge);
    MERGE_PTR(dns_hook);
    MERGE_PTR(eab_kid);
    MERGE_PTR(eab_hmac);
    if (add->n_keys) {
        mrg->n_keys = add->n_keys;
        memcpy(mrg->keys, add->keys, sizeof(mrg->keys));
    } else {
        mrg->n_keys = base->n_keys;
        memcpy(mrg->keys, base->keys, sizeof(mrg->keys));
    }
    MERGE_PTR(profile);
    MERGE_INT(profile_required);
    MERGE_PTR(preferred_chain);
    MERGE_SET(renew_set, renew);
    MERGE_INT(stapling);
    MERGE_INT(must_staple);
    MERGE_PTR(store_dir);
    MERGE_PTR(redis);
    MERGE_INT(check_interval);
    MERGE_INT(max_parallel);
    MERGE_INT(preload);
    /* server-wide: a virtual host sees the main server's */
    MERGE_SET(warn_set, warn);
    MERGE_PTR(notify_cmd);
    MERGE_INT(notify_timeout);
    MERGE_PTR(webhook);
    MERGE_PTR(webhook_headers);
    MERGE_INT(notify_queue);
    MERGE_PTR(policy);
    MERGE_INT(dynamic_unknown);
    MERGE_INT(cache_size);
    autotls_ondemand_merge(&mrg->od, &base->od, &add->od);
    return mrg;
}

/* ---- SSLEngine detection ----------------------------------------------- */

/* mod_ssl keeps its configuration private, so "is SSLEngine on here" is
 * answered from the configuration tree, which `apache2 -t` also builds. */
static int
autotls_tree_ssl(const ap_directive_t *d, int *found)
{
    int on = 0;

    for (; d != NULL; d = d->next) {
        if (strcasecmp(d->directive, "SSLEngine") == 0) {
            *found = 1;
            on = d->args && (strncasecmp(d->args, "on", 2) == 0
                             || strncasecmp(d->args, "optional", 8) == 0);
        } else if (d->first_child != NULL
                   && strncasecmp(d->directive, "<If", 3) == 0
                   && strcasecmp(d->directive, "<If") != 0
                   && strcasecmp(d->directive, "<ElseIf") != 0) {
            /* <IfModule>, <IfDefine>, <IfFile>, <IfVersion>: contents apply
             * to the enclosing host when the condition held. */
            int f = 0, o = autotls_tree_ssl(d->first_child, &f);

            if (f) {
                *found = 1;
                on = o;
            }
        }
    }
    return on;
}

/* The <VirtualHost> the directive being read is in; NULL at top level. */
static const ap_directive_t *
autotls_vhost_of(cmd_parms *cmd)
{
    const ap_directive_t *d = cmd->directive;

    while (d != NULL && strcasecmp(d->directive, "<VirtualHost") != 0) {
        d = d->parent;
    }
    return d;
}

static int
autotls_ssl_engine_on(cmd_parms *cmd)
{
    const ap_directive_t *d = autotls_vhost_of(cmd);
    int found = 0, on;

    if (d != NULL) {
        on = autotls_tree_ssl(d->first_child, &found);
        if (found) {
            return on;
        }
    }
    /* SSLEngine at the top level is inherited by hosts without their own */
    found = 0;
    return autotls_tree_ssl(ap_conftree, &found);
}

/* ---- directive handlers ---------------------------------------------- */

static autotls_srv_conf_t *
cmd_conf(cmd_parms *cmd)
{
    return autotls_config_get(cmd->server);
}

/* AutoTLS's values: whether the host is managed, and what it is home of */
static const struct {
    const char *name;
    int         enabled;
    int         dynamic;
} autotls_modes[] = {
    { "on",       1, AUTOTLS_STATIC },
    { "off",      0, AUTOTLS_STATIC },
    { "dynamic",  1, AUTOTLS_DYNAMIC },
    { "ondemand", 1, AUTOTLS_ON_DEMAND },
};

static const char *
set_enabled(cmd_parms *cmd, void *dc, const char *v)
{
    autotls_srv_conf_t *sc = cmd_conf(cmd);
    size_t i;

    for (i = 0; i < sizeof(autotls_modes) / sizeof(autotls_modes[0]); i++) {
        if (strcasecmp(v, autotls_modes[i].name) == 0) {
            break;
        }
    }
    if (i == sizeof(autotls_modes) / sizeof(autotls_modes[0])) {
        return apr_psprintf(cmd->pool, "AutoTLS: '%s' is not On, Off, Dynamic "
                            "or OnDemand", v);
    }
    sc->enabled = autotls_modes[i].enabled;
    sc->dynamic = autotls_modes[i].dynamic;
    sc->where_file = cmd->directive->filename;
    sc->where_line = cmd->directive->line_num;
    sc->ssl_on = autotls_ssl_engine_on(cmd);
    sc->ssl_stapling = autotls_stapling_conflict(autotls_vhost_of(cmd));
    return NULL;
}

static const char *
set_ca(cmd_parms *cmd, void *dc, const char *v)
{
    if (strncasecmp(v, "https://", 8) != 0 && strncasecmp(v, "http://", 7) != 0) {
        return apr_psprintf(cmd->pool, "AutoTLSCA: '%s' is not an http(s) URL", v);
    }
    cmd_conf(cmd)->ca = v;
    return NULL;
}

static const char *
set_ca_file(cmd_parms *cmd, void *dc, const char *v)
{
    const char *path = ap_server_root_relative(cmd->pool, v);

    if (path == NULL) {
        return apr_psprintf(cmd->pool, "AutoTLSCACertificateFile: bad path '%s'", v);
    }
    cmd_conf(cmd)->ca_file = path;
    return NULL;
}

static const char *
add_contact(cmd_parms *cmd, void *dc, const char *v)
{
    autotls_srv_conf_t *sc = cmd_conf(cmd);

    if (sc->contact == NULL) {
        sc->contact = apr_array_make(cmd->pool, 2, sizeof(const char *));
    }
    /* made a "mailto:" URL and checked by the core's issuer rules */
    APR_ARRAY_PUSH(sc->contact, const char *) = v;
    return NULL;
}

static const char *
set_accept_terms(cmd_parms *cmd, void *dc, int flag)
{
    cmd_conf(cmd)->accept_terms = flag;
    return NULL;
}

const char *
autotls_set_store_dir(cmd_parms *cmd, void *dc, const char *v)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *path;

    if (err != NULL) {
        return err;
    }
    path = ap_server_root_relative(cmd->pool, v);
    if (path == NULL) {
        return apr_psprintf(cmd->pool, "%s: bad path '%s'", cmd->cmd->name, v);
    }
    cmd_conf(cmd)->store_dir = path;
    return NULL;
}

/* A server-wide directive's positive duration ("30s", "5m", "1h"), in
 * seconds; the error names the directive. */
const char *
autotls_cmd_seconds(cmd_parms *cmd, const char *v, long *secs)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err != NULL) {
        return err;
    }
    *secs = atls_duration_parse(v);
    if (*secs <= 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a positive duration "
                            "(e.g. 30s, 1m, 1h)", cmd->cmd->name, v);
    }
    return NULL;
}

static const char *
set_check_interval(cmd_parms *cmd, void *dc, const char *v)
{
    long secs;
    const char *err = autotls_cmd_seconds(cmd, v, &secs);

    if (err != NULL) {
        return err;
    }
    cmd_conf(cmd)->check_interval = apr_time_from_sec(secs);
    return NULL;
}

/* A server-wide directive's whole number from lo to hi; the error names
 * the directive. */
const char *
autotls_cmd_number(cmd_parms *cmd, const char *v, long lo, long hi, long *n)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    char *end;

    if (err != NULL) {
        return err;
    }
    errno = 0;
    *n = strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno != 0 || *n < lo || *n > hi) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number from %ld to %ld",
                            cmd->cmd->name, v, lo, hi);
    }
    return NULL;
}

static const char *
set_max_parallel(cmd_parms *cmd, void *dc, const char *v)
{
    long n;
    const char *err = autotls_cmd_number(cmd, v, 1, ATLS_MAX_PARALLEL_LIMIT, &n);

    if (err != NULL) {
        return err;
    }
    cmd_conf(cmd)->max_parallel = (int) n;
    return NULL;
}

static const char *
set_preload(cmd_parms *cmd, void *dc, int flag)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err != NULL) {
        return err;
    }
    cmd_conf(cmd)->preload = flag;
    return NULL;
}

static const char *
set_challenge(cmd_parms *cmd, void *dc, const char *v)
{
    atls_challenge_type_t t;

    if (atls_challenge_type_parse(v, &t) != 0) {
        return apr_psprintf(cmd->pool, "AutoTLSChallenges: unknown challenge "
                            "type '%s' (http-01, tls-alpn-01 or dns-01)", v);
    }
    cmd_conf(cmd)->challenge = (int) t;
    return NULL;
}

static const char *
set_dns_hook(cmd_parms *cmd, void *dc, const char *v)
{
    cmd_conf(cmd)->dns_hook = ap_server_root_relative(cmd->pool, v);
    return NULL;
}

static const char *
set_eab(cmd_parms *cmd, void *dc, const char *kid, const char *hmac)
{
    autotls_srv_conf_t *sc = cmd_conf(cmd);

    if (!atls_b64url_is_token(hmac, strlen(hmac))) {
        return "AutoTLSEAB: the HMAC key must be base64url";
    }
    sc->eab_kid = kid;
    sc->eab_hmac = hmac;
    return NULL;
}

static const char *
set_keys(cmd_parms *cmd, void *dc, const char *a, const char *b)
{
    autotls_srv_conf_t *sc = cmd_conf(cmd);
    const char *v[2] = { a, b };
    int i, n = b ? 2 : 1;

    for (i = 0; i < n; i++) {
        if (atls_key_type_parse(v[i], &sc->keys[i]) != 0) {
            return apr_psprintf(cmd->pool, "AutoTLSKeys: unknown key type '%s' "
                                "(ec256, ec384, rsa2048, rsa3072, rsa4096)", v[i]);
        }
    }
    if (n == 2 && atls_key_type_is_rsa(sc->keys[0]) == atls_key_type_is_rsa(sc->keys[1])) {
        return "AutoTLSKeys: two key types must be one ECDSA and one RSA";
    }
    sc->n_keys = n;
    return NULL;
}

static const char *
set_profile(cmd_parms *cmd, void *dc, const char *name, const char *req)
{
    autotls_srv_conf_t *sc = cmd_conf(cmd);

    if (req != NULL && strcasecmp(req, "required") != 0) {
        return apr_psprintf(cmd->pool, "AutoTLSProfile: second argument must be "
                            "'required', not '%s'", req);
    }
    sc->profile = name;
    sc->profile_required = req != NULL;
    return NULL;
}

static const char *
set_preferred_chain(cmd_parms *cmd, void *dc, const char *v)
{
    cmd_conf(cmd)->preferred_chain = v;
    return NULL;
}

static const char *
set_renew_before(cmd_parms *cmd, void *dc, const char *v)
{
    autotls_srv_conf_t *sc = cmd_conf(cmd);

    if (atls_renew_policy_parse(v, &sc->renew) != 0) {
        return apr_psprintf(cmd->pool, "AutoTLSRenewBefore: '%s' is neither a "
                            "percentage (1%%..99%%) nor a duration", v);
    }
    sc->renew_set = 1;
    return NULL;
}

static const char *
set_stapling(cmd_parms *cmd, void *dc, int flag)
{
    cmd_conf(cmd)->stapling = flag;
    return NULL;
}

static const char *
set_must_staple(cmd_parms *cmd, void *dc, int flag)
{
    cmd_conf(cmd)->must_staple = flag;
    return NULL;
}

/* ---- names at runtime ------------------------------------------------ */

static const char *
set_dynamic_unknown(cmd_parms *cmd, void *dc, const char *v)
{
    autotls_srv_conf_t *sc = cmd_conf(cmd);

    if (strcasecmp(v, "fallback") == 0) {
        sc->dynamic_unknown = AUTOTLS_UNKNOWN_FALLBACK;
    } else if (strcasecmp(v, "reject") == 0) {
        sc->dynamic_unknown = AUTOTLS_UNKNOWN_REJECT;
    } else {
        return apr_psprintf(cmd->pool, "AutoTLSDynamicUnknown: '%s' is neither "
                            "'reject' nor 'fallback'", v);
    }
    return NULL;
}

static const char *
set_cache_size(cmd_parms *cmd, void *dc, const char *v)
{
    long n = 0;
    const char *err = NULL;

    if (strcasecmp(v, "unlimited") != 0) {
        err = autotls_cmd_number(cmd, v, 1, 100000000L, &n);
    }
    if (err != NULL) {
        return err;
    }
    cmd_conf(cmd)->cache_size = n;
    return NULL;
}

static const char *
set_api_token(cmd_parms *cmd, void *dc, const char *v)
{
    autotls_dir_conf_t *d = dc;
    const char *path = ap_server_root_relative(cmd->pool, v);

    if (path == NULL) {
        return apr_psprintf(cmd->pool, "AutoTLSApiToken: bad path '%s'", v);
    }
    d->api_token = path;
    return NULL;
}

const command_rec autotls_cmds[] = {
    AP_INIT_TAKE1("AutoTLS", set_enabled, NULL, RSRC_CONF,
                  "On: obtain and renew a certificate for this host's ServerName "
                  "and ServerAliases; Dynamic: also for the names registered at "
                  "runtime; OnDemand: also for names first seen in traffic"),
    /* names at runtime */
    AP_INIT_TAKE1("AutoTLSDynamicUnknown", set_dynamic_unknown, NULL, RSRC_CONF,
                  "what a dynamic home serves a name not registered for it: "
                  "fallback (default, its own certificate) or reject"),
    AP_INIT_TAKE1("AutoTLSCacheSize", set_cache_size, NULL, RSRC_CONF,
                  "parsed certificates each child keeps (least recently used "
                  "evicted); default unlimited"),
    AP_INIT_TAKE1("AutoTLSApiToken", set_api_token, NULL, ACCESS_CONF,
                  "file holding the bearer token the admin API "
                  "(SetHandler autotls-api) requires"),
    AP_INIT_TAKE1("AutoTLSCA", set_ca, NULL, RSRC_CONF,
                  "ACME directory URL of the certificate authority"),
    AP_INIT_TAKE1("AutoTLSCACertificateFile", set_ca_file, NULL, RSRC_CONF,
                  "PEM file trusted for the ACME server's own HTTPS"),
    AP_INIT_ITERATE("AutoTLSContact", add_contact, NULL, RSRC_CONF,
                    "account contact e-mail address(es)"),
    AP_INIT_FLAG("AutoTLSAcceptTerms", set_accept_terms, NULL, RSRC_CONF,
                 "On: agree to the CA's terms of service"),
    AP_INIT_TAKE1("AutoTLSStoreDir", autotls_set_store_dir, NULL, RSRC_CONF,
                  "directory holding accounts, keys and certificates"),
    AP_INIT_TAKE_ARGV("AutoTLSStore", autotls_set_store, NULL, RSRC_CONF,
                      "DIR, or redis://[user:password@]host:port[/db] [tls] [ca_file=F] "
                      "key_file=F [prefix=P] [mirror=DIR] [node=ID]: a store shared "
                      "by a cluster"),
    AP_INIT_TAKE1("AutoTLSCheckInterval", set_check_interval, NULL, RSRC_CONF,
                  "how often the renewal driver looks at every certificate"),
    AP_INIT_TAKE1("AutoTLSMaxParallel", set_max_parallel, NULL, RSRC_CONF,
                  "how many certificate orders the renewal driver runs at once"),
    AP_INIT_FLAG("AutoTLSPreload", set_preload, NULL, RSRC_CONF,
                 "On: each child parses every certificate in the background when "
                 "it starts, before the first handshake asks for it"),
    AP_INIT_TAKE1("AutoTLSChallenges", set_challenge, NULL, RSRC_CONF,
                  "http-01, tls-alpn-01 or dns-01"),
    AP_INIT_TAKE1("AutoTLSDnsHook", set_dns_hook, NULL, RSRC_CONF,
                  "command run as: CMD setup|teardown NAME VALUE (dns-01)"),
    AP_INIT_TAKE2("AutoTLSEAB", set_eab, NULL, RSRC_CONF,
                  "external account binding: KID HMAC-KEY(base64url)"),
    AP_INIT_TAKE12("AutoTLSKeys", set_keys, NULL, RSRC_CONF,
                   "certificate key type(s): ec256 [rsa2048]"),
    AP_INIT_TAKE12("AutoTLSProfile", set_profile, NULL, RSRC_CONF,
                   "ACME profile NAME [required]"),
    AP_INIT_TAKE1("AutoTLSPreferredChain", set_preferred_chain, NULL, RSRC_CONF,
                  "issuer name of the preferred alternate chain"),
    AP_INIT_TAKE1("AutoTLSRenewBefore", set_renew_before, NULL, RSRC_CONF,
                  "renew when this share of lifetime (33%) or duration (30d) is left"),
    AP_INIT_FLAG("AutoTLSStapling", set_stapling, NULL, RSRC_CONF,
                 "On (default): fetch OCSP responses and staple them; Off: check "
                 "CRLs only"),
    AP_INIT_FLAG("AutoTLSMustStaple", set_must_staple, NULL, RSRC_CONF,
                 "On: ask for the OCSP Must-Staple extension (needs AutoTLSStapling On)"),
    AP_INIT_TAKE_ARGV("AutoTLSWarn", autotls_set_warn, NULL, RSRC_CONF,
                      "expiry alert levels before notAfter (default 21d 7d 3d 1d)"),
    AP_INIT_TAKE1("AutoTLSNotifyCmd", autotls_set_notify_cmd, NULL, RSRC_CONF,
                  "absolute path of a command run as: CMD EVENT ID, the event as "
                  "JSON on stdin"),
    AP_INIT_TAKE1("AutoTLSNotifyTimeout", autotls_set_notify_timeout, NULL, RSRC_CONF,
                  "how long one AutoTLSNotifyCmd run may take (default 30s)"),
    AP_INIT_TAKE_ARGV("AutoTLSNotifyWebhook", autotls_set_webhook, NULL, RSRC_CONF,
                      "URL [\"Name: value\"...]: events POSTed as JSON"),
    AP_INIT_TAKE1("AutoTLSNotifyQueue", autotls_set_notify_queue, NULL, RSRC_CONF,
                  "how many undelivered notifications the store keeps (default 10000)"),
    AP_INIT_ITERATE("AutoTLSPolicyKeys", autotls_set_policy_keys, NULL, RSRC_CONF,
                    "policy: key types allowed (ec256 ec384 rsa2048 rsa3072 rsa4096)"),
    AP_INIT_TAKE1("AutoTLSPolicyMinRSABits", autotls_set_policy_min_rsa, NULL, RSRC_CONF,
                  "policy: smallest RSA key allowed, in bits"),
    AP_INIT_ITERATE("AutoTLSPolicyCA", autotls_set_policy_ca, NULL, RSRC_CONF,
                    "policy: ACME directory URLs allowed"),
    AP_INIT_ITERATE("AutoTLSPolicyNames", autotls_set_policy_names, NULL, RSRC_CONF,
                    "policy: names allowed: example.com, *.example.com, ~REGEX"),
    AP_INIT_TAKE1("AutoTLSPolicyMaxNames", autotls_set_policy_max_names, NULL, RSRC_CONF,
                  "policy: most names one certificate may carry"),
    /* on-demand issuance (mod_autotls_ondemand.c) */
    AP_INIT_ITERATE("AutoTLSOnDemandAllow", autotls_od_set_allow, NULL, RSRC_CONF,
                    "on demand: names that may be ordered: example.com, "
                    "*.example.com, ~REGEX"),
    AP_INIT_ITERATE("AutoTLSOnDemandDeny", autotls_od_set_deny, NULL, RSRC_CONF,
                    "on demand: names never ordered (checked first)"),
    AP_INIT_TAKE1("AutoTLSOnDemandAllowFile", autotls_od_set_allow_file, NULL, RSRC_CONF,
                  "on demand: a file of allow patterns, one a line, re-read when "
                  "it changes"),
    AP_INIT_TAKE_ARGV("AutoTLSOnDemandAsk", autotls_od_set_ask, NULL, RSRC_CONF,
                      "on demand: URL [timeout=2s] [cache=1h] [fail_cache=30s]: "
                      "GET URL?domain=NAME, 2xx allows"),
    AP_INIT_TAKE_ARGV("AutoTLSOnDemandLimits", autotls_od_set_limits, NULL, RSRC_CONF,
                      "on demand: [cooldown=1h] [orders_per_min=10] [per_domain_week=50] "
                      "[per_account_3h=300] [max_pending=100]"),
    AP_INIT_FLAG("AutoTLSOnDemandIP", autotls_od_set_ip, NULL, RSRC_CONF,
                 "on demand: On: IP literals in SNI may be ordered (default Off)"),
    AP_INIT_TAKE1("AutoTLSOnDemandMaxLabels", autotls_od_set_max_labels, NULL, RSRC_CONF,
                  "on demand: names with more labels are refused (default 10)"),
    AP_INIT_TAKE1("AutoTLSOnDemandWait", autotls_od_set_wait, NULL, RSRC_CONF,
                  "on demand: how long a first handshake waits for its certificate "
                  "(default 10s)"),
    { .name = NULL }
};
