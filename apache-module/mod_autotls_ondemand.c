/*
 * AutoTLSOnDemand* directives: the policy of an `AutoTLS OnDemand` host
 * (which SNI names may cost an order), its abuse limits and how long a
 * first handshake waits.  The settings become the core's atls_od_conf_t
 * (atls_ondemand.h) twice: once for each child's gate, which turns away
 * what it can cheaply, and once for the watchdog's scheduler, which asks
 * the ask URL, applies the budgets and orders.
 *
 * Settings are per host and merged over the main server's (a policy
 * written at the top level applies to the on-demand host below it).
 */
#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"

#include "atls_ondemand.h"
#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

void
autotls_ondemand_init(autotls_od_settings_t *o)
{
    memset(o, 0, sizeof(*o));
    o->ask_timeout_ms = AUTOTLS_UNSET;
    o->ask_cache_s = AUTOTLS_UNSET;
    o->ask_fail_cache_s = AUTOTLS_UNSET;
    o->cooldown_s = AUTOTLS_UNSET;
    o->orders_per_min = AUTOTLS_UNSET;
    o->per_domain_week = AUTOTLS_UNSET;
    o->per_account_3h = AUTOTLS_UNSET;
    o->max_pending = AUTOTLS_UNSET;
    o->allow_ip = AUTOTLS_UNSET;
    o->max_labels = AUTOTLS_UNSET;
    o->wait_ms = AUTOTLS_UNSET;
}

#define OD_MERGE_PTR(f)  mrg->f = add->f ? add->f : base->f
#define OD_MERGE_INT(f)  mrg->f = add->f != AUTOTLS_UNSET ? add->f : base->f

void
autotls_ondemand_merge(autotls_od_settings_t *mrg, const autotls_od_settings_t *base,
                       const autotls_od_settings_t *add)
{
    OD_MERGE_PTR(allow);
    OD_MERGE_PTR(deny);
    OD_MERGE_PTR(allow_file);
    OD_MERGE_PTR(ask_url);
    /* the ask options go with the URL they were written with */
    if (add->ask_url != NULL) {
        mrg->ask_timeout_ms = add->ask_timeout_ms;
        mrg->ask_cache_s = add->ask_cache_s;
        mrg->ask_fail_cache_s = add->ask_fail_cache_s;
    } else {
        mrg->ask_timeout_ms = base->ask_timeout_ms;
        mrg->ask_cache_s = base->ask_cache_s;
        mrg->ask_fail_cache_s = base->ask_fail_cache_s;
    }
    OD_MERGE_INT(cooldown_s);
    OD_MERGE_INT(orders_per_min);
    OD_MERGE_INT(per_domain_week);
    OD_MERGE_INT(per_account_3h);
    OD_MERGE_INT(max_pending);
    OD_MERGE_INT(allow_ip);
    OD_MERGE_INT(max_labels);
    OD_MERGE_INT(wait_ms);
}

static long
od_or_default(long v)
{
    /* atls_od_conf_t: 0 means the core's default */
    return v == AUTOTLS_UNSET ? 0 : v;
}

static char **
od_patterns(apr_pool_t *p, const apr_array_header_t *a, size_t *n)
{
    *n = a != NULL ? (size_t) a->nelts : 0;
    return a != NULL ? (char **) a->elts : NULL;
}

/* The core's settings (strings borrowed from the configuration pool:
 * atls_od_new copies what it keeps). */
void
autotls_ondemand_conf(apr_pool_t *p, const autotls_od_settings_t *o, atls_od_conf_t *c)
{
    memset(c, 0, sizeof(*c));
    c->allow = od_patterns(p, o->allow, &c->n_allow);
    c->deny = od_patterns(p, o->deny, &c->n_deny);
    c->allow_file = (char *) o->allow_file;
    c->ask_url = (char *) o->ask_url;
    c->ask_timeout_ms = od_or_default(o->ask_timeout_ms);
    c->ask_cache_s = od_or_default(o->ask_cache_s);
    c->ask_fail_cache_s = od_or_default(o->ask_fail_cache_s);
    c->cooldown_s = od_or_default(o->cooldown_s);
    c->orders_per_min = od_or_default(o->orders_per_min);
    c->per_domain_week = od_or_default(o->per_domain_week);
    c->per_account_3h = od_or_default(o->per_account_3h);
    c->max_pending = od_or_default(o->max_pending);
    c->allow_ip = o->allow_ip == 1;
    c->max_labels = (unsigned) od_or_default(o->max_labels);
    c->wait_ms = od_or_default(o->wait_ms);
}

/* ---- value parsers: every error names the directive and the value ------ */

static autotls_od_settings_t *
od_settings(cmd_parms *cmd)
{
    return &autotls_config_get(cmd->server)->od;
}

/* "2s", "1h", "500ms" -> milliseconds; -1 when not a positive duration */
static long
od_parse_ms(const char *v)
{
    size_t len = strlen(v);
    long s;

    if (len > 2 && strcmp(v + len - 2, "ms") == 0) {
        char *end;
        long ms = strtol(v, &end, 10);

        return end == v + len - 2 && v[0] >= '0' && v[0] <= '9' && ms > 0 ? ms : -1;
    }
    s = atls_duration_parse(v);
    return s > 0 && s <= LONG_MAX / 1000 ? s * 1000 : -1;
}

static const char *
od_bad_duration(cmd_parms *cmd, const char *what, const char *v)
{
    return apr_psprintf(cmd->pool, "%s: %s'%s' is not a positive duration "
                        "(e.g. 500ms, 30s, 1m, 1h)", cmd->cmd->name, what, v);
}

static const char *
od_count(cmd_parms *cmd, const char *what, const char *v, long max, long *out)
{
    char *end;
    long n = strtol(v, &end, 10);

    if (end == v || *end != '\0' || v[0] < '0' || v[0] > '9' || n < 1 || n > max) {
        return apr_psprintf(cmd->pool, "%s: %s'%s' is not a number from 1 to %ld",
                            cmd->cmd->name, what, v, max);
    }
    *out = n;
    return NULL;
}

/* A pattern is checked by compiling it alone, so that `apache2 -t` names
 * the directive and the pattern instead of failing at start-up. */
static const char *
od_pattern_check(cmd_parms *cmd, const char *pattern)
{
    atls_od_conf_t c;
    atls_od_t *od;
    char *one[1], err[256];

    memset(&c, 0, sizeof(c));
    one[0] = (char *) pattern;
    c.allow = one;
    c.n_allow = 1;
    od = atls_od_new(&c, NULL, err, sizeof(err));
    if (od == NULL) {
        return apr_psprintf(cmd->pool, "%s: '%s': %s", cmd->cmd->name, pattern, err);
    }
    atls_od_free(od);
    return NULL;
}

static const char *
od_add_pattern(cmd_parms *cmd, apr_array_header_t **a, const char *v)
{
    const char *err = od_pattern_check(cmd, v);

    if (err != NULL) {
        return err;
    }
    if (*a == NULL) {
        *a = apr_array_make(cmd->pool, 4, sizeof(const char *));
    }
    APR_ARRAY_PUSH(*a, const char *) = apr_pstrdup(cmd->pool, v);
    return NULL;
}

/* ---- directive handlers ------------------------------------------------ */

const char *
autotls_od_set_allow(cmd_parms *cmd, void *dc, const char *v)
{
    return od_add_pattern(cmd, &od_settings(cmd)->allow, v);
}

const char *
autotls_od_set_deny(cmd_parms *cmd, void *dc, const char *v)
{
    return od_add_pattern(cmd, &od_settings(cmd)->deny, v);
}

const char *
autotls_od_set_allow_file(cmd_parms *cmd, void *dc, const char *v)
{
    const char *path = ap_server_root_relative(cmd->pool, v);

    if (path == NULL) {
        return apr_psprintf(cmd->pool, "%s: bad path '%s'", cmd->cmd->name, v);
    }
    /* read (and re-read when it changes) by the gate; a missing file
     * allows nothing and is logged then, not refused here, so that a
     * file written later by provisioning needs no restart */
    od_settings(cmd)->allow_file = path;
    return NULL;
}

/* AutoTLSOnDemandAsk URL [timeout=2s] [cache=1h] [fail_cache=30s] */
const char *
autotls_od_set_ask(cmd_parms *cmd, void *dc, int argc, char *const argv[])
{
    autotls_od_settings_t *o = od_settings(cmd);
    long ms;
    int i;

    if (argc < 1) {
        return apr_psprintf(cmd->pool, "%s: needs the URL", cmd->cmd->name);
    }
    if (strncasecmp(argv[0], "https://", 8) != 0 && strncasecmp(argv[0], "http://", 7) != 0) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an http(s) URL",
                            cmd->cmd->name, argv[0]);
    }
    o->ask_url = argv[0];
    o->ask_timeout_ms = o->ask_cache_s = o->ask_fail_cache_s = AUTOTLS_UNSET;
    for (i = 1; i < argc; i++) {
        const char *v = strchr(argv[i], '=');

        if (v == NULL) {
            return apr_psprintf(cmd->pool, "%s: '%s' is not timeout=, cache= or "
                                "fail_cache=", cmd->cmd->name, argv[i]);
        }
        ms = od_parse_ms(++v);
        if (ms <= 0) {
            return od_bad_duration(cmd, apr_pstrmemdup(cmd->pool, argv[i],
                                   (apr_size_t) (v - argv[i])), v);
        }
        if (strncmp(argv[i], "timeout=", 8) == 0) {
            if (ms > 60000) {
                return apr_psprintf(cmd->pool, "%s: timeout='%s' is longer than 60s",
                                    cmd->cmd->name, v);
            }
            o->ask_timeout_ms = ms;
        } else if (strncmp(argv[i], "cache=", 6) == 0) {
            o->ask_cache_s = ms < 1000 ? 1 : ms / 1000;
        } else if (strncmp(argv[i], "fail_cache=", 11) == 0) {
            o->ask_fail_cache_s = ms < 1000 ? 1 : ms / 1000;
        } else {
            return apr_psprintf(cmd->pool, "%s: unknown option '%s' (timeout=, cache= "
                                "or fail_cache=)", cmd->cmd->name, argv[i]);
        }
    }
    return NULL;
}

/* AutoTLSOnDemandLimits [cooldown=1h] [orders_per_min=10] [per_domain_week=50]
 *                       [per_account_3h=300] [max_pending=100] */
const char *
autotls_od_set_limits(cmd_parms *cmd, void *dc, int argc, char *const argv[])
{
    autotls_od_settings_t *o = od_settings(cmd);
    static const struct {
        const char *key;
        size_t      off;
        long        max;
    } counts[] = {
        /* the core's bounds (ondemand.c), said here with the directive */
        { "orders_per_min=", offsetof(autotls_od_settings_t, orders_per_min), 1000000 },
        { "per_domain_week=", offsetof(autotls_od_settings_t, per_domain_week), 1000000 },
        { "per_account_3h=", offsetof(autotls_od_settings_t, per_account_3h), 1000000 },
        { "max_pending=", offsetof(autotls_od_settings_t, max_pending), 10000 },
    };
    const char *err;
    size_t k;
    int i;

    if (argc < 1) {
        return apr_psprintf(cmd->pool, "%s: needs at least one of cooldown=, "
                            "orders_per_min=, per_domain_week=, per_account_3h=, "
                            "max_pending=", cmd->cmd->name);
    }
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];

        if (strncmp(a, "cooldown=", 9) == 0) {
            long ms = od_parse_ms(a + 9);

            if (ms <= 0) {
                return od_bad_duration(cmd, "cooldown=", a + 9);
            }
            o->cooldown_s = ms < 1000 ? 1 : ms / 1000;
            continue;
        }
        for (k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
            size_t len = strlen(counts[k].key);

            if (strncmp(a, counts[k].key, len) == 0) {
                err = od_count(cmd, counts[k].key, a + len, counts[k].max,
                               (long *) ((char *) o + counts[k].off));
                if (err != NULL) {
                    return err;
                }
                break;
            }
        }
        if (k == sizeof(counts) / sizeof(counts[0])) {
            return apr_psprintf(cmd->pool, "%s: unknown limit '%s' (cooldown=, "
                                "orders_per_min=, per_domain_week=, per_account_3h=, "
                                "max_pending=)", cmd->cmd->name, a);
        }
    }
    return NULL;
}

const char *
autotls_od_set_ip(cmd_parms *cmd, void *dc, int flag)
{
    od_settings(cmd)->allow_ip = flag;
    return NULL;
}

const char *
autotls_od_set_max_labels(cmd_parms *cmd, void *dc, const char *v)
{
    return od_count(cmd, "", v, 127, &od_settings(cmd)->max_labels);
}

const char *
autotls_od_set_wait(cmd_parms *cmd, void *dc, const char *v)
{
    long ms = od_parse_ms(v);

    /* a handshake held longer than a minute meets the clients' own limits */
    if (ms <= 0 || ms > 60000) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a duration from 1ms to 60s "
                            "(e.g. 10s)", cmd->cmd->name, v);
    }
    od_settings(cmd)->wait_ms = ms;
    return NULL;
}

/* ---- start-up checks ------------------------------------------------------ */

/* Each on-demand host's settings make a gate (an unreadable regex in an
 * allow file, say, is said here, naming the host); OK or !OK. */
int
autotls_ondemand_check(apr_pool_t *p, server_rec *base)
{
    server_rec *s;
    int bad = 0;

    for (s = base; s != NULL; s = s->next) {
        autotls_srv_conf_t *sc = autotls_config_get(s);
        atls_od_conf_t c;
        atls_od_t *od;
        char err[256];

        if (!AUTOTLS_IS_ON_DEMAND(sc)) {
            continue;
        }
        autotls_ondemand_conf(p, &sc->od, &c);
        od = atls_od_new(&c, NULL, err, sizeof(err));
        if (od == NULL) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s,
                         "AutoTLS OnDemand for %s (%s:%d): AutoTLSOnDemand* settings: %s",
                         s->server_hostname ? s->server_hostname : "(no ServerName)",
                         sc->where_file ? sc->where_file : "?", sc->where_line, err);
            bad = 1;
            continue;
        }
        atls_od_free(od);
        if (c.n_allow == 0 && c.allow_file == NULL && c.ask_url == NULL) {
            /* not an error: default deny is the safe reading */
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "AutoTLS OnDemand for %s (%s:%d): no AutoTLSOnDemandAllow, "
                         "AutoTLSOnDemandAllowFile or AutoTLSOnDemandAsk: every new "
                         "name is denied (registered names are still served)",
                         s->server_hostname ? s->server_hostname : "(no ServerName)",
                         sc->where_file ? sc->where_file : "?", sc->where_line);
        }
    }
    return bad ? !OK : OK;
}

/* post_config: the first on-demand host is where names are requested for
 * (the scheduler has one gate); later ones are said to share its policy. */
void
autotls_ondemand_post_config(server_rec *base)
{
    server_rec *s;

    autotls_global.od_home = NULL;
    for (s = base; s != NULL; s = s->next) {
        autotls_srv_conf_t *sc = autotls_config_get(s);

        if (!AUTOTLS_IS_ON_DEMAND(sc) || sc->owner != sc) {
            continue;
        }
        if (autotls_global.od_home == NULL) {
            autotls_global.od_home = sc;
        } else {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                         "AutoTLS OnDemand for %s (%s:%d): one on-demand policy per "
                         "server: the AutoTLSOnDemand* settings of %s apply here too",
                         s->server_hostname ? s->server_hostname : "(no ServerName)",
                         sc->where_file ? sc->where_file : "?", sc->where_line,
                         autotls_global.od_home->s->server_hostname);
        }
    }
}

/* The watchdog's gate, over its store st (budget windows are kept there:
 * on a cluster node, Redis, shared by every node): NULL when no host is on
 * demand or on error (logged).  The children's requests are read where
 * they write them, the node's own directory (its mirror on a cluster). */
atls_od_t *
autotls_ondemand_gate_new(apr_pool_t *p, atls_store_t *st)
{
    autotls_srv_conf_t *home = autotls_global.od_home;
    atls_od_conf_t c;
    atls_od_t *od;
    char err[256];

    if (home == NULL) {
        return NULL;
    }
    autotls_ondemand_conf(p, &home->od, &c);
    od = atls_od_new(&c, st, err, sizeof(err));
    if (od == NULL) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, home->s,
                     "autotls: on-demand policy of %s: %s", home->s->server_hostname, err);
        return NULL;
    }
    atls_od_set_requests(od, autotls_cluster_local(st));
    return od;
}
