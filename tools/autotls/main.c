/*
 * autotls: command dispatch and the option parsing every command shares.
 *
 * One option table for all commands keeps spellings consistent; each
 * command says which options it accepts, so `list --agree-tos` is a usage
 * error naming the option rather than something silently ignored.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/opensslv.h>
#include "atls_schedule.h"
#include "cli.h"

#define OPT_BASE 256

enum {
    OPT_DIRECTORY = OPT_BASE, OPT_CA_FILE, OPT_STORE, OPT_CONTACT, OPT_AGREE_TOS,
    OPT_EAB_KID, OPT_EAB_HMAC, OPT_CHALLENGE, OPT_HTTP_PORT, OPT_TLS_PORT,
    OPT_DNS_HOOK, OPT_KEY, OPT_PROFILE, OPT_PROFILE_REQ, OPT_PREFERRED_CHAIN,
    OPT_RENEW_BEFORE, OPT_LISTEN, OPT_JSON, OPT_REQUEST, OPT_REASON, OPT_FORCE,
    OPT_CSR_CN, OPT_ALL, OPT_PARALLEL, OPT_EACH, OPT_NAME, OPT_SINCE
};
enum { OPT_EXEC = OPT_BASE + 80, OPT_WEBHOOK, OPT_HEADER };   /* notify-test */
enum { OPT_SNI = OPT_BASE + 64, OPT_TARGETS };   /* scan */
enum { OPT_HOME = OPT_BASE + 96, OPT_FROM_FILE };   /* add --issuer, --from-file */
enum { OPT_FROM = OPT_BASE + 112, OPT_TO, OPT_NEW_KEY };   /* migrate, rekey */

static const struct option long_opts[] = {
    { "directory",        required_argument, NULL, OPT_DIRECTORY },
    { "ca-file",          required_argument, NULL, OPT_CA_FILE },
    { "store",            required_argument, NULL, OPT_STORE },
    { "contact",          required_argument, NULL, OPT_CONTACT },
    { "agree-tos",        no_argument,       NULL, OPT_AGREE_TOS },
    { "eab-kid",          required_argument, NULL, OPT_EAB_KID },
    { "eab-hmac-key",     required_argument, NULL, OPT_EAB_HMAC },
    { "challenge",        required_argument, NULL, OPT_CHALLENGE },
    { "http-port",        required_argument, NULL, OPT_HTTP_PORT },
    { "tls-port",         required_argument, NULL, OPT_TLS_PORT },
    { "dns-hook",         required_argument, NULL, OPT_DNS_HOOK },
    { "key",              required_argument, NULL, OPT_KEY },
    { "profile",          required_argument, NULL, OPT_PROFILE },
    { "profile-required", no_argument,       NULL, OPT_PROFILE_REQ },
    { "preferred-chain",  required_argument, NULL, OPT_PREFERRED_CHAIN },
    { "renew-before",     required_argument, NULL, OPT_RENEW_BEFORE },
    { "listen-address",   required_argument, NULL, OPT_LISTEN },
    { "json",             no_argument,       NULL, OPT_JSON },
    { "request",          no_argument,       NULL, OPT_REQUEST },
    { "reason",           required_argument, NULL, OPT_REASON },
    { "force",            no_argument,       NULL, OPT_FORCE },
    { "csr-cn",           no_argument,       NULL, OPT_CSR_CN },
    { "all",              no_argument,       NULL, OPT_ALL },
    { "parallel",         required_argument, NULL, OPT_PARALLEL },
    { "each",             no_argument,       NULL, OPT_EACH },
    { "name",             required_argument, NULL, OPT_NAME },
    { "since",            required_argument, NULL, OPT_SINCE },
    { "exec",             required_argument, NULL, OPT_EXEC },
    { "webhook",          required_argument, NULL, OPT_WEBHOOK },
    { "header",           required_argument, NULL, OPT_HEADER },
    { "sni",              required_argument, NULL, OPT_SNI },
    { "targets",          required_argument, NULL, OPT_TARGETS },
    { "issuer",           required_argument, NULL, OPT_HOME },
    { "from-file",        required_argument, NULL, OPT_FROM_FILE },
    { "from",             required_argument, NULL, OPT_FROM },
    { "to",               required_argument, NULL, OPT_TO },
    { "new-key",          required_argument, NULL, OPT_NEW_KEY },
    { "verbose",          no_argument,       NULL, 'v' },
    { "help",             no_argument,       NULL, 'h' },
    { NULL, 0, NULL, 0 }
};

/* long option value -> CLI_O_* bit */
static uint64_t opt_bit(int val)
{
    switch (val) {
    case OPT_DIRECTORY:       return CLI_O_DIRECTORY;
    case OPT_CA_FILE:         return CLI_O_CA_FILE;
    case OPT_STORE:           return CLI_O_STORE;
    case OPT_CONTACT:         return CLI_O_CONTACT;
    case OPT_AGREE_TOS:       return CLI_O_AGREE_TOS;
    case OPT_EAB_KID:         return CLI_O_EAB_KID;
    case OPT_EAB_HMAC:        return CLI_O_EAB_HMAC;
    case OPT_CHALLENGE:       return CLI_O_CHALLENGE;
    case OPT_HTTP_PORT:       return CLI_O_HTTP_PORT;
    case OPT_TLS_PORT:        return CLI_O_TLS_PORT;
    case OPT_DNS_HOOK:        return CLI_O_DNS_HOOK;
    case OPT_KEY:             return CLI_O_KEY;
    case OPT_PROFILE:         return CLI_O_PROFILE;
    case OPT_PROFILE_REQ:     return CLI_O_PROFILE_REQ;
    case OPT_PREFERRED_CHAIN: return CLI_O_PREFERRED_CHAIN;
    case OPT_RENEW_BEFORE:    return CLI_O_RENEW_BEFORE;
    case OPT_LISTEN:          return CLI_O_LISTEN;
    case OPT_JSON:            return CLI_O_JSON;
    case OPT_REQUEST:         return CLI_O_REQUEST;
    case OPT_REASON:          return CLI_O_REASON;
    case OPT_FORCE:           return CLI_O_FORCE;
    case OPT_CSR_CN:          return CLI_O_CSR_CN;
    case OPT_ALL:             return CLI_O_ALL;
    case OPT_PARALLEL:        return CLI_O_PARALLEL;
    case OPT_EACH:            return CLI_O_EACH;
    case OPT_NAME:            return CLI_O_NAME;
    case OPT_SINCE:           return CLI_O_SINCE;
    case OPT_EXEC:            return CLI_O_EXEC;
    case OPT_WEBHOOK:         return CLI_O_WEBHOOK;
    case OPT_HEADER:          return CLI_O_HEADER;
    case OPT_SNI:             return CLI_O_SNI;
    case OPT_TARGETS:         return CLI_O_TARGETS;
    case OPT_HOME:            return CLI_O_HOME;
    case OPT_FROM_FILE:       return CLI_O_FROM_FILE;
    case OPT_FROM:            return CLI_O_FROM;
    case OPT_TO:              return CLI_O_TO;
    case OPT_NEW_KEY:         return CLI_O_NEW_KEY;
    case 'v':                 return CLI_O_VERBOSE;
    default:                  return 0;
    }
}

static const cli_command_t *const commands[] = {
    &cli_cmd_issue, &cli_cmd_list, &cli_cmd_show, &cli_cmd_renew, &cli_cmd_revoke,
    &cli_cmd_audit, &cli_cmd_notify_test, &cli_cmd_scan, &cli_cmd_add, &cli_cmd_remove,
    &cli_cmd_migrate, &cli_cmd_rekey
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: autotls COMMAND [OPTIONS] [NAME...]\n"
        "\n"
        "Obtain, inspect, renew and revoke TLS certificates over ACME (RFC 8555).\n"
        "\n"
        "Commands:\n"
        "  issue    obtain a certificate for one or more names\n"
        "  list     list every certificate in a store\n"
        "  show     show everything about one certificate (never key material)\n"
        "  renew    renew a certificate now, or ask a running server to\n"
        "  revoke   revoke a certificate\n"
        "  audit    print the audit trail of a store\n"
        "  notify-test  send a test event through the notification sinks\n"
        "  scan     connect to TLS endpoints and report their certificates' findings\n"
        "  add      register dynamic names a server issues and serves with no reload\n"
        "  remove   remove dynamic names (their certificates kept for a grace period)\n"
        "  migrate  copy a store to another backend (a directory <-> redis://)\n"
        "  rekey    re-seal a Redis store's private values with a new key file\n"
        "  help     show this text, or `autotls help COMMAND`\n"
        "\n"
        "Run `autotls COMMAND --help` for a command's options.\n"
        "`autotls --version` prints the version.\n");
}

static void usage_hint(const char *cmd)
{
    if (cmd != NULL) {
        fprintf(stderr, "Try 'autotls %s --help'.\n", cmd);
    } else {
        fprintf(stderr, "Try 'autotls help'.\n");
    }
}

static const cli_command_t *find_command(const char *name)
{
    size_t i;

    for (i = 0; i < N_COMMANDS; i++) {
        if (strcmp(commands[i]->name, name) == 0) {
            return commands[i];
        }
    }
    return NULL;
}

static int parse_port(const char *opt, const char *s, int *out)
{
    char *end;
    long  v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 65535) {
        cli_error("%s: invalid port '%s' (1-65535)", opt, s);
        return -1;
    }
    *out = (int) v;
    return 0;
}

static int add_contact(cli_opts_t *o, const char *s)
{
    char **v;

    v = realloc(o->issuer.contact, (o->issuer.n_contact + 1) * sizeof(char *));
    if (v == NULL) {
        abort();
    }
    o->issuer.contact = v;
    /* made a "mailto:" URL by atls_issuer_normalise */
    v[o->issuer.n_contact++] = atls_strdup(s);
    return 0;
}

/* The value of one option; -1 after printing an error. */
static int apply_option(cli_opts_t *o, int val, const char *arg)
{
    atls_issuer_t   *is = &o->issuer;
    atls_key_type_t  kt;
    size_t           i;

    switch (val) {
    case OPT_DIRECTORY:
        is->directory = (char *) arg;
        break;
    case OPT_CA_FILE:
        is->ca_file = (char *) arg;
        break;
    case OPT_STORE:
        o->store_dir = arg;
        break;
    case OPT_CONTACT:
        if (*arg == '\0') {
            cli_error("--contact: empty address");
            return -1;
        }
        return add_contact(o, arg);
    case OPT_AGREE_TOS:
        is->agree_tos = 1;
        break;
    case OPT_EAB_KID:
        is->eab_kid = (char *) arg;
        break;
    case OPT_EAB_HMAC:
        is->eab_hmac = (char *) arg;
        break;
    case OPT_CHALLENGE:
        if (atls_challenge_type_parse(arg, &is->challenge) != 0) {
            cli_error("--challenge: unknown challenge type '%s' "
                      "(http-01, tls-alpn-01, dns-01)", arg);
            return -1;
        }
        break;
    case OPT_HTTP_PORT:
        return parse_port("--http-port", arg, &is->http_port);
    case OPT_TLS_PORT:
        return parse_port("--tls-port", arg, &is->tls_port);
    case OPT_DNS_HOOK:
        is->dns_hook = (char *) arg;
        break;
    case OPT_KEY:
        if (atls_key_type_parse(arg, &kt) != 0) {
            cli_error("--key: unknown key type '%s' "
                      "(ec256, ec384, rsa2048, rsa3072, rsa4096)", arg);
            return -1;
        }
        for (i = 0; i < is->n_key_types; i++) {
            if (is->key_types[i] == kt) {
                cli_error("--key: '%s' given twice", arg);
                return -1;
            }
        }
        if (is->n_key_types >= ATLS_KEY_TYPE_MAX) {
            cli_error("--key: at most %d key types per certificate", ATLS_KEY_TYPE_MAX);
            return -1;
        }
        is->key_types[is->n_key_types++] = kt;
        break;
    case OPT_PROFILE:
        is->profile = (char *) arg;
        break;
    case OPT_PROFILE_REQ:
        is->profile_required = 1;
        break;
    case OPT_CSR_CN:
        is->csr_cn = 1;
        break;
    case OPT_PREFERRED_CHAIN:
        is->preferred_chain = (char *) arg;
        break;
    case OPT_RENEW_BEFORE:
        if (atls_renew_policy_parse(arg, &is->renew) != 0) {
            cli_error("--renew-before: invalid value '%s' (e.g. 33%% or 30d)", arg);
            return -1;
        }
        break;
    case OPT_LISTEN:
        o->listen_address = arg;
        break;
    case OPT_REASON:
        if (atls_revoke_reason_parse(arg, &o->reason) != 0) {
            cli_error("--reason: unknown reason '%s' (unspecified, keyCompromise, "
                      "affiliationChanged, superseded, cessationOfOperation)", arg);
            return -1;
        }
        break;
    case OPT_PARALLEL: {
        char *end;
        long  v;

        errno = 0;
        v = strtol(arg, &end, 10);
        if (errno != 0 || end == arg || *end != '\0' || v < 1 || v > ATLS_MAX_PARALLEL_LIMIT) {
            cli_error("--parallel: invalid number '%s' (1-%d)", arg, ATLS_MAX_PARALLEL_LIMIT);
            return -1;
        }
        o->parallel = (size_t) v;
        break;
    }
    case OPT_NAME:
        o->name_filter = arg;
        break;
    case OPT_SINCE:
        return cli_audit_since(arg, time(NULL), &o->since);
    case OPT_EXEC:
        o->notify_exec = arg;
        break;
    case OPT_WEBHOOK:
        o->notify_webhook = arg;
        break;
    case OPT_HEADER:
        return cli_notify_add_header(o, arg);
    case OPT_SNI:
        o->sni = arg;
        break;
    case OPT_TARGETS:
        o->targets = arg;
        break;
    case OPT_HOME:
        o->home = arg;
        break;
    case OPT_FROM_FILE:
        o->from_file = arg;
        break;
    case OPT_FROM:
        o->from_spec = arg;
        break;
    case OPT_TO:
        o->to_spec = arg;
        break;
    case OPT_NEW_KEY:
        o->new_key = arg;
        break;
    case 'v':
        o->verbose++;
        break;
    default:
        break;
    }
    return 0;
}

/* 0 ok, 1 --help was printed, -1 usage error (printed). */
static int parse(const cli_command_t *cmd, int argc, char **argv, cli_opts_t *o)
{
    int c, idx;

    opterr = 0;
    optind = 1;
    for (;;) {
        idx = -1;
        c = getopt_long(argc, argv, ":hv", long_opts, &idx);
        if (c == -1) {
            break;
        }
        if (c == 'h') {
            fputs(cmd->usage, stdout);
            return 1;
        }
        if (c == '?') {
            if (optopt != 0 && optopt < OPT_BASE && argv[optind - 1][1] != '-') {
                cli_error("%s: unknown option '-%c'", cmd->name, optopt);
            } else {
                cli_error("%s: unknown option '%s'", cmd->name, argv[optind - 1]);
            }
            usage_hint(cmd->name);
            return -1;
        }
        if (c == ':') {
            cli_error("%s: option '%s' needs a value", cmd->name, argv[optind - 1]);
            usage_hint(cmd->name);
            return -1;
        }
        if ((opt_bit(c) & cmd->accepts) == 0) {
            cli_error("%s: option '--%s' is not valid for this command", cmd->name,
                      idx >= 0 ? long_opts[idx].name : "?");
            usage_hint(cmd->name);
            return -1;
        }
        o->given |= opt_bit(c);
        if (apply_option(o, c, optarg) != 0) {
            usage_hint(cmd->name);
            return -1;
        }
    }

    o->names = argv + optind;
    o->n_names = (size_t) (argc - optind);

    if (cmd->accepts & CLI_O_STORE && o->store_dir == NULL) {
        cli_error("%s: --store DIR (or --store 'redis://... key_file=F') is required",
                  cmd->name);
        usage_hint(cmd->name);
        return -1;
    }
    if ((int) o->n_names < cmd->min_names) {
        cli_error("%s: missing certificate name", cmd->name);
        usage_hint(cmd->name);
        return -1;
    }
    if (cmd->max_names >= 0 && (int) o->n_names > cmd->max_names) {
        cli_error("%s: unexpected argument '%s'", cmd->name,
                  o->names[cmd->max_names]);
        usage_hint(cmd->name);
        return -1;
    }
    return 0;
}

/* The core logs its progress; the CLI shows it only with -v so that a
 * failure ends in exactly one line naming the certificate and the cause. */
static void log_sink(void *ctx, atls_log_level_t level, const char *msg)
{
    static const char *const names[] = { "error", "warning", "info", "debug" };

    if (*(const int *) ctx == 0) {
        return;
    }
    fprintf(stderr, "autotls: %s: %s\n", names[level], msg);
}

int main(int argc, char **argv)
{
    const cli_command_t *cmd;
    cli_opts_t           o;
    int                  rc;

    /* Responders write to sockets a validator may already have closed. */
    signal(SIGPIPE, SIG_IGN);

    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0
        || strcmp(argv[1], "version") == 0)
    {
        printf("autotls %s (%s)\n", ATLS_VERSION, OPENSSL_VERSION_TEXT);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0
        || strcmp(argv[1], "-h") == 0)
    {
        if (argc > 2) {
            cmd = find_command(argv[2]);
            if (cmd == NULL) {
                cli_error("unknown command '%s'", argv[2]);
                usage_hint(NULL);
                return CLI_EXIT_USAGE;
            }
            fputs(cmd->usage, stdout);
        } else {
            usage(stdout);
        }
        return CLI_EXIT_OK;
    }

    cmd = find_command(argv[1]);
    if (cmd == NULL) {
        if (argv[1][0] == '-') {
            cli_error("unknown option '%s' (options follow the command)", argv[1]);
        } else {
            cli_error("unknown command '%s'", argv[1]);
        }
        usage_hint(NULL);
        return CLI_EXIT_USAGE;
    }

    memset(&o, 0, sizeof(o));
    o.reason = ATLS_REVOKE_UNSPECIFIED;
    rc = parse(cmd, argc - 1, argv + 1, &o);
    if (rc != 0) {
        atls_strv_free(o.issuer.contact, o.issuer.n_contact);
        return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    }

    atls_log_set(log_sink, &o.verbose, o.verbose == 0 ? ATLS_LOG_ERR
                 : (o.verbose == 1 ? ATLS_LOG_INFO : ATLS_LOG_DEBUG));

    rc = cmd->run(&o);
    atls_strv_free(o.issuer.contact, o.issuer.n_contact);
    return rc;
}
