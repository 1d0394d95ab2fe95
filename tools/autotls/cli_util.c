/* Helpers every CLI command uses: errors, the store, name lookup, issuer merge. */
#define _GNU_SOURCE 1  /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "atls_hook.h"
#include "atls_mirror.h"
#include "atls_priv.h"
#include "atls_schedule.h"
#include "cli.h"

void cli_error(const char *fmt, ...)
{
    va_list ap;

    fputs("autotls: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "autotls: %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'autotls %s --help'.\n", cmd);
    return CLI_EXIT_USAGE;
}

/*
 * Root on a store another user owns (the web server's worker user, who can
 * rewrite it at any moment) becomes that user for good before reading
 * anything in it, so that nothing planted in the store acts with root's
 * powers: not a link, not a hook, not a CA.  CAP_NET_BIND_SERVICE stays so
 * that standalone responders can still listen on ports 80 and 443; hooks
 * do not inherit it.  A missing store is created by root for root.
 */
static int cli_become_owner(cli_opts_t *o)
{
    struct stat sb;
    char        err[256];

    if (geteuid() != 0 || stat(o->store_dir, &sb) != 0 || sb.st_uid == 0) {
        return 0;
    }
    atls_user_name(sb.st_uid, o->store_owner, sizeof(o->store_owner));
    o->store_foreign = 1;
    if (atls_priv_drop(sb.st_uid, sb.st_gid, 1, err, sizeof(err)) != 0) {
        cli_error("store %s is owned by %s: cannot become that user: %s",
                  o->store_dir, o->store_owner, err);
        return -1;
    }
    /* the notification command notify.json names (any command that
     * emits events may deliver them) runs as the owner, with a minimal
     * environment rather than the one root exported */
    atls_hook_set_identity((long) sb.st_uid, (long) sb.st_gid);
    /* The CA file is opened later, by now as the owner: say so now. */
    if ((o->given & CLI_O_CA_FILE) && access(o->issuer.ca_file, R_OK) != 0) {
        cli_error("--ca-file %s: not readable by %s, who owns the store %s and "
                  "whom autotls runs as on it: %s", o->issuer.ca_file, o->store_owner,
                  o->store_dir, strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * A Redis store changes nobody's identity (there is no owner to become):
 * its key file must belong to the caller or to root instead.  From then
 * on messages name the store as atls_redis_conf_describe() does, never
 * with the password the --store value may hold.
 */
static atls_store_t *cli_store_open_redis(cli_opts_t *o)
{
    static char   shown[512];
    atls_store_t *st;
    char          err[512];

    st = atls_store_open_spec(o->store_dir, ATLS_STORE_SPEC_KEY_OWNER, err, sizeof(err));
    if (st == NULL) {
        cli_error("--store: %s", err);
        return NULL;
    }
    snprintf(shown, sizeof(shown), "%s", st->location);
    o->store_dir = shown;
    return st;
}

atls_store_t *cli_store_open(cli_opts_t *o)
{
    atls_store_t *st;
    char          err[512];

    /* the invoking user, before root may become the store's owner */
    atls_actor_self(&o->actor, "cli", ATLS_USER_AGENT);
    if (atls_store_spec_is_redis(o->store_dir)) {
        return cli_store_open_redis(o);
    }
    if (atls_store_spec_check(o->store_dir, err, sizeof(err)) < 0) {
        cli_error("--store: %s", err);
        return NULL;
    }
    if (cli_become_owner(o) != 0) {
        return NULL;
    }
    st = atls_store_open_spec(o->store_dir, 0, err, sizeof(err));
    if (st == NULL) {
        cli_error("store %s: %s", o->store_dir, err);
    }
    return st;
}

void cli_store_changed(atls_store_t *st, const char *id)
{
    char err[512];

    if (strcmp(st->ops->name, "redis") != 0) {
        return;     /* servers on a directory watch its generation file */
    }
    if (atls_store_redis_announce(st, id, NULL, err, sizeof(err)) != ATLS_STORE_OK) {
        cli_error("warning: %s: the servers were not told of the change (they take it "
                  "at their next sync): %s", id, err);
    }
}

static const struct {
    unsigned    bit;
    const char *option;
    const char *use;
} vouched[] = {
    { CLI_O_DIRECTORY, "--directory", "talk to the CA it records" },
    { CLI_O_CA_FILE,   "--ca-file",   "trust the CA file it records" },
    { CLI_O_DNS_HOOK,  "--dns-hook",  "run it" },
};

static const char *vouched_value(const atls_issuer_t *is, unsigned bit)
{
    switch (bit) {
    case CLI_O_DIRECTORY: return is->directory;
    case CLI_O_CA_FILE:   return is->ca_file;
    default:              return is->dns_hook;
    }
}

int cli_issuer_vouch(const cli_opts_t *o, uint64_t which, const char *verb,
                     const char *name, const atls_issuer_t *is)
{
    const char *rec, *given;
    char        shown[256];
    size_t      i, k;
    int         rc = 0;

    if (!o->store_foreign) {
        return 0;
    }
    for (i = 0; i < sizeof(vouched) / sizeof(vouched[0]); i++) {
        if (!(which & vouched[i].bit)) {
            continue;
        }
        rec = vouched_value(is, vouched[i].bit);
        if (vouched[i].bit == CLI_O_DNS_HOOK && is->challenge != ATLS_CHAL_DNS01) {
            rec = NULL;     /* recorded but not used */
        }
        given = vouched_value(&o->issuer, vouched[i].bit);
        if (rec == NULL || rec[0] == '\0'
            || ((o->given & vouched[i].bit) && given != NULL && strcmp(given, rec) == 0))
        {
            continue;
        }
        /* the worker wrote it: no control characters on the terminal */
        snprintf(shown, sizeof(shown), "%s", rec);
        for (k = 0; shown[k] != '\0'; k++) {
            if ((unsigned char) shown[k] < 0x20 || shown[k] == 0x7f) {
                shown[k] = '?';
            }
        }
        cli_error("%s %s: the store is owned by %s; pass %s again to %s (%s)",
                  verb, name, o->store_owner, vouched[i].option, vouched[i].use, shown);
        rc = -1;
    }
    return rc;
}

int cli_find_cert(atls_store_t *st, const char *name, atls_cert_meta_t *m)
{
    char   **ids = NULL;
    size_t   n = 0, i, k;
    char     err[512];
    char    *id;
    int      rc;

    /* The common case: the first name, which is what the id derives from. */
    id = atls_cert_id(name);
    if (id != NULL) {
        memset(m, 0, sizeof(*m));
        rc = atls_store_load_meta(st, id, m, err, sizeof(err));
        free(id);
        if (rc == ATLS_STORE_OK) {
            return 0;
        }
        if (rc != ATLS_STORE_NOTFOUND) {
            cli_error("%s: %s", name, err);
            return -1;
        }
    }

    if (atls_store_list_certs(st, &ids, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        cli_error("store %s: %s", st->location, err);
        return -1;
    }
    for (i = 0; i < n; i++) {
        memset(m, 0, sizeof(*m));
        if (atls_store_load_meta(st, ids[i], m, err, sizeof(err)) != ATLS_STORE_OK) {
            continue;
        }
        for (k = 0; k < m->n_names; k++) {
            if (strcasecmp(m->names[k], name) == 0) {
                atls_strv_free(ids, n);
                return 0;
            }
        }
        atls_cert_meta_free(m);
    }
    atls_strv_free(ids, n);
    memset(m, 0, sizeof(*m));
    cli_error("%s: no certificate for this name in %s", name, st->location);
    return -1;
}

static void replace_str(char **dst, const char *src)
{
    free(*dst);
    *dst = atls_strdup(src);
}

void cli_issuer_apply(const cli_opts_t *o, atls_issuer_t *dst)
{
    const atls_issuer_t *src = &o->issuer;
    size_t               i;

    if (o->given & CLI_O_DIRECTORY) {
        replace_str(&dst->directory, src->directory);
    }
    if (o->given & CLI_O_CA_FILE) {
        replace_str(&dst->ca_file, src->ca_file);
    }
    if (o->given & CLI_O_CONTACT) {
        atls_strv_free(dst->contact, dst->n_contact);
        dst->contact = calloc(src->n_contact + 1, sizeof(char *));
        if (dst->contact == NULL) {
            abort();
        }
        for (i = 0; i < src->n_contact; i++) {
            dst->contact[i] = atls_strdup(src->contact[i]);
        }
        dst->n_contact = src->n_contact;
    }
    if (o->given & CLI_O_AGREE_TOS) {
        dst->agree_tos = 1;
    }
    if (o->given & CLI_O_EAB_KID) {
        replace_str(&dst->eab_kid, src->eab_kid);
    }
    if (o->given & CLI_O_EAB_HMAC) {
        replace_str(&dst->eab_hmac, src->eab_hmac);
    }
    if (o->given & CLI_O_CHALLENGE) {
        dst->challenge = src->challenge;
    }
    if (o->given & CLI_O_HTTP_PORT) {
        dst->http_port = src->http_port;
    }
    if (o->given & CLI_O_TLS_PORT) {
        dst->tls_port = src->tls_port;
    }
    if (o->given & CLI_O_DNS_HOOK) {
        replace_str(&dst->dns_hook, src->dns_hook);
    }
    if (o->given & CLI_O_KEY) {
        memcpy(dst->key_types, src->key_types, sizeof(dst->key_types));
        dst->n_key_types = src->n_key_types;
    }
    if (o->given & CLI_O_PROFILE) {
        replace_str(&dst->profile, src->profile);
    }
    if (o->given & CLI_O_PROFILE_REQ) {
        dst->profile_required = 1;
    }
    if (o->given & CLI_O_CSR_CN) {
        dst->csr_cn = 1;
    }
    if (o->given & CLI_O_PREFERRED_CHAIN) {
        replace_str(&dst->preferred_chain, src->preferred_chain);
    }
    if (o->given & CLI_O_RENEW_BEFORE) {
        dst->renew = src->renew;
    }
}

void cli_cert_path(const char *store_dir, const char *id, atls_key_type_t kt,
                   char *buf, size_t len)
{
    (void) atls_store_fs_cert_file(store_dir, id, kt, buf, len);
}

const char *cli_time(time_t t, char *buf, size_t len)
{
    if (t == 0) {
        snprintf(buf, len, "-");
    } else {
        atls_rfc3339_format(t, buf, len);
    }
    return buf;
}

long cli_days_left(time_t t, time_t now)
{
    long d = (long) (t - now);

    /* floor, so a certificate that expired an hour ago shows -1, not 0 */
    return d >= 0 ? d / 86400 : -((-d + 86399) / 86400);
}

int cli_listen(const char *addr, int port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t               sslen;
    int                     fd, one = 1, zero = 0;

    memset(&ss, 0, sizeof(ss));
    if (addr == NULL || *addr == '\0') {
        /* every address: IPv6 socket that also accepts IPv4, or IPv4 only */
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &ss;

        fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
            s6->sin6_family = AF_INET6;
            s6->sin6_addr = in6addr_any;
            s6->sin6_port = htons((unsigned short) port);
            sslen = sizeof(*s6);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *) &ss;

            fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            s4->sin_family = AF_INET;
            s4->sin_addr.s_addr = htonl(INADDR_ANY);
            s4->sin_port = htons((unsigned short) port);
            sslen = sizeof(*s4);
        }
    } else {
        struct sockaddr_in  *s4 = (struct sockaddr_in *) &ss;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &ss;

        if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
            s4->sin_port = htons((unsigned short) port);
            sslen = sizeof(*s4);
        } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons((unsigned short) port);
            sslen = sizeof(*s6);
        } else {
            snprintf(err, errlen, "invalid listen address '%s' (an IP literal)", addr);
            return -1;
        }
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    }
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *) &ss, sslen) != 0) {
        snprintf(err, errlen, "cannot listen on %s port %d: %s",
                 addr != NULL ? addr : "*", port, strerror(errno));
        close(fd);
        return -1;
    }
    if (listen(fd, 64) != 0) {
        snprintf(err, errlen, "listen on port %d: %s", port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}
