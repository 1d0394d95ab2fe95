/*
 * Events and policy directives: AutoTLSWarn, AutoTLSNotifyCmd,
 * AutoTLSNotifyTimeout, AutoTLSNotifyWebhook, AutoTLSNotifyQueue and
 * AutoTLSPolicy*.  All are server-wide (one notify.json and one
 * policy.json per store).  The rules are the core's (atls_warn_parse,
 * atls_notify_conf_check, atls_policy_*): this file only says them with
 * the directive's name, so that `apache2 -t` points at the line.
 */
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"

#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

static autotls_srv_conf_t *
cmd_conf(cmd_parms *cmd)
{
    return ap_get_module_config(cmd->server->module_config, &autotls_module);
}

/* ---- AutoTLSWarn ---------------------------------------------------------- */

const char *
autotls_set_warn(cmd_parms *cmd, void *dc, int argc, char *const argv[])
{
    autotls_srv_conf_t *sc = cmd_conf(cmd);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    char why[256];

    if (err != NULL) {
        return err;
    }
    if (argc < 1 || argc > ATLS_WARN_MAX) {
        return apr_psprintf(cmd->pool, "AutoTLSWarn: from 1 to %d durations "
                            "(e.g. 21d 7d 3d 1d)", ATLS_WARN_MAX);
    }
    if (atls_warn_parse((const char *const *) argv, (size_t) argc, &sc->warn,
                        why, sizeof(why)) != 0) {
        return apr_psprintf(cmd->pool, "AutoTLSWarn: %s", why);
    }
    sc->warn_set = 1;
    return NULL;
}

/* ---- the command sink --------------------------------------------------- */

/* The command runs as the children's user with an event on its stdin: a
 * file that user (or anyone but root) may rewrite would let the worker
 * account choose what runs next, so the file must be root's to change. */
static const char *
autotls_check_cmd_file(apr_pool_t *p, const char *path)
{
    struct stat sb;

    if (path[0] != '/') {
        return apr_psprintf(p, "AutoTLSNotifyCmd: '%s' is not an absolute path", path);
    }
    if (stat(path, &sb) != 0) {
        return apr_psprintf(p, "AutoTLSNotifyCmd: %s: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode)) {
        return apr_psprintf(p, "AutoTLSNotifyCmd: %s is not a regular file", path);
    }
    if ((sb.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) == 0 || access(path, X_OK) != 0) {
        return apr_psprintf(p, "AutoTLSNotifyCmd: %s is not executable", path);
    }
    if (sb.st_mode & (S_IWGRP | S_IWOTH)) {
        return apr_psprintf(p, "AutoTLSNotifyCmd: %s is writable by its group or by "
                            "everyone (chmod go-w)", path);
    }
    return NULL;
}

const char *
autotls_set_notify_cmd(cmd_parms *cmd, void *dc, const char *v)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err == NULL) {
        err = autotls_check_cmd_file(cmd->pool, v);
    }
    if (err != NULL) {
        return err;
    }
    cmd_conf(cmd)->notify_cmd = v;
    return NULL;
}

const char *
autotls_set_notify_timeout(cmd_parms *cmd, void *dc, const char *v)
{
    long secs;
    const char *err = autotls_cmd_seconds(cmd, v, &secs);

    if (err != NULL) {
        return err;
    }
    cmd_conf(cmd)->notify_timeout = secs;
    return NULL;
}

/* ---- the webhook sink --------------------------------------------------- */

const char *
autotls_set_webhook(cmd_parms *cmd, void *dc, int argc, char *const argv[])
{
    autotls_srv_conf_t *sc = cmd_conf(cmd);
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    atls_notify_conf_t c;
    char why[256];
    int i;

    if (err != NULL) {
        return err;
    }
    if (argc < 1) {
        return "AutoTLSNotifyWebhook: needs a URL, then optional \"Name: value\" headers";
    }
    /* the core's rules on this directive's values alone, so that the
     * error is reported at this line */
    memset(&c, 0, sizeof(c));
    c.webhook = argv[0];
    c.headers = (char **) argv + 1;
    c.n_headers = (size_t) argc - 1;
    if (atls_notify_conf_check(&c, why, sizeof(why)) != 0) {
        return apr_psprintf(cmd->pool, "AutoTLSNotifyWebhook: %s", why);
    }
    sc->webhook = argv[0];
    sc->webhook_headers = apr_array_make(cmd->pool, argc, sizeof(const char *));
    for (i = 1; i < argc; i++) {
        APR_ARRAY_PUSH(sc->webhook_headers, const char *) = argv[i];
    }
    return NULL;
}

const char *
autotls_set_notify_queue(cmd_parms *cmd, void *dc, const char *v)
{
    long n;
    const char *err = autotls_cmd_number(cmd, v, 1, 1000000, &n);

    if (err != NULL) {
        return err;
    }
    cmd_conf(cmd)->notify_queue = n;
    return NULL;
}

static char *
pool_to_malloc(const char *s)
{
    return s != NULL ? atls_strdup(s) : NULL;
}

static apr_status_t
notify_conf_cleanup(void *data)
{
    atls_notify_conf_free(data);
    return APR_SUCCESS;
}

void
autotls_notify_conf_build(apr_pool_t *p, const autotls_srv_conf_t *mc,
                          atls_notify_conf_t *c)
{
    int i, n = mc->webhook_headers ? mc->webhook_headers->nelts : 0;

    memset(c, 0, sizeof(*c));
    if (mc->warn_set) {
        c->warn = mc->warn;
    } else {
        atls_warn_default(&c->warn);
    }
    c->exec = pool_to_malloc(mc->notify_cmd);
    c->exec_timeout_s = mc->notify_timeout != AUTOTLS_UNSET
                        ? mc->notify_timeout : ATLS_NOTIFY_EXEC_TIMEOUT;
    c->webhook = pool_to_malloc(mc->webhook);
    if (n > 0) {
        c->headers = calloc((size_t) n, sizeof(char *));
        if (c->headers == NULL) {
            abort();
        }
        for (i = 0; i < n; i++) {
            c->headers[i] = atls_strdup(APR_ARRAY_IDX(mc->webhook_headers, i,
                                                      const char *));
        }
        c->n_headers = (size_t) n;
    }
    c->queue_max = mc->notify_queue != AUTOTLS_UNSET
                   ? (size_t) mc->notify_queue : ATLS_NOTIFY_QUEUE_MAX;
    apr_pool_cleanup_register(p, c, notify_conf_cleanup, apr_pool_cleanup_null);
}

/* ---- policy ------------------------------------------------------------- */

static apr_status_t
policy_cleanup(void *data)
{
    atls_policy_free(data);
    return APR_SUCCESS;
}

/* The main server's policy, made by the first AutoTLSPolicy* directive
 * and freed with the configuration. */
static atls_policy_t *
policy_of(cmd_parms *cmd)
{
    autotls_srv_conf_t *sc = cmd_conf(cmd);

    if (sc->policy == NULL) {
        sc->policy = atls_policy_new();
        if (sc->policy == NULL) {
            abort();
        }
        apr_pool_cleanup_register(cmd->pool, sc->policy, policy_cleanup,
                                  apr_pool_cleanup_null);
    }
    return sc->policy;
}

static int
parse_long(const char *v, long *out)
{
    char *end;

    errno = 0;
    *out = strtol(v, &end, 10);
    return end != v && *end == '\0' && errno == 0 ? 0 : -1;
}

/* What every policy directive does: context, one rule, the error said
 * with the directive's name. */
typedef int (*policy_add_fn)(atls_policy_t *p, const char *v, char *err, size_t errlen);

static const char *
policy_apply(cmd_parms *cmd, const char *v, policy_add_fn fn)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    char why[256];

    if (err != NULL) {
        return err;
    }
    if (fn(policy_of(cmd), v, why, sizeof(why)) != 0) {
        return apr_psprintf(cmd->pool, "%s: %s", cmd->cmd->name, why);
    }
    return NULL;
}

static int
add_min_rsa(atls_policy_t *p, const char *v, char *err, size_t errlen)
{
    long n;

    if (parse_long(v, &n) != 0) {
        snprintf(err, errlen, "'%s' is not a number", v);
        return -1;
    }
    return atls_policy_set_min_rsa_bits(p, n, err, errlen);
}

static int
add_max_names(atls_policy_t *p, const char *v, char *err, size_t errlen)
{
    long n;

    if (parse_long(v, &n) != 0) {
        snprintf(err, errlen, "'%s' is not a number", v);
        return -1;
    }
    return atls_policy_set_max_names(p, n, err, errlen);
}

const char *
autotls_set_policy_keys(cmd_parms *cmd, void *dc, const char *v)
{
    return policy_apply(cmd, v, atls_policy_add_key);
}

const char *
autotls_set_policy_min_rsa(cmd_parms *cmd, void *dc, const char *v)
{
    return policy_apply(cmd, v, add_min_rsa);
}

const char *
autotls_set_policy_ca(cmd_parms *cmd, void *dc, const char *v)
{
    return policy_apply(cmd, v, atls_policy_add_ca);
}

const char *
autotls_set_policy_names(cmd_parms *cmd, void *dc, const char *v)
{
    return policy_apply(cmd, v, atls_policy_add_names);
}

const char *
autotls_set_policy_max_names(cmd_parms *cmd, void *dc, const char *v)
{
    return policy_apply(cmd, v, add_max_names);
}

/* The core's rule names and the directives that set them. */
static const struct {
    const char *rule;
    const char *directive;
} policy_directives[] = {
    { ATLS_POLICY_RULE_KEY,       "AutoTLSPolicyKeys" },
    { ATLS_POLICY_RULE_MIN_RSA,   "AutoTLSPolicyMinRSABits" },
    { ATLS_POLICY_RULE_CA,        "AutoTLSPolicyCA" },
    { ATLS_POLICY_RULE_NAMES,     "AutoTLSPolicyNames" },
    { ATLS_POLICY_RULE_MAX_NAMES, "AutoTLSPolicyMaxNames" },
};

int
autotls_policy_check_host(apr_pool_t *p, const autotls_srv_conf_t *sc,
                          const atls_policy_t *pol, const char **msg)
{
    const char *rule = NULL, *directive = "AutoTLSPolicy";
    const char **names;
    size_t n, i;
    char why[256];

    if (atls_policy_is_empty(pol)) {
        return 0;
    }
    if (autotls_config_names(p, sc->s, &names, &n) != 0) {
        return 0;   /* "no ServerName" is reported by the caller */
    }
    if (atls_policy_check(pol, names, n, autotls_config_issuer(p, (autotls_srv_conf_t *) sc),
                          &rule, why, sizeof(why)) == 0) {
        return 0;
    }
    for (i = 0; rule != NULL && i < sizeof(policy_directives) / sizeof(policy_directives[0]);
         i++) {
        if (strcmp(policy_directives[i].rule, rule) == 0) {
            directive = policy_directives[i].directive;
        }
    }
    *msg = apr_psprintf(p, "denied by the policy, rule %s (%s): %s",
                        rule ? rule : "?", directive, why);
    return -1;
}
