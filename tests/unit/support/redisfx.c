/* A real redis-server per test group (see redisfx.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include "support/redisfx.h"
#include "support/testpki.h"
#include "support/tmptree.h"

#define READY_DEADLINE_MS 10000

static long long
fx_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A port the kernel just gave out on 127.0.0.1 (free at that instant). */
static int
fx_free_port(void)
{
    struct sockaddr_in sa;
    socklen_t          sl = sizeof(sa);
    int                fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0
        && getsockname(fd, (struct sockaddr *) &sa, &sl) == 0)
    {
        port = ntohs(sa.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

static int
fx_write(const char *path, const char *data, mode_t mode)
{
    int     fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    ssize_t n;

    if (fd < 0) {
        return -1;
    }
    n = write(fd, data, strlen(data));
    close(fd);
    return n == (ssize_t) strlen(data) ? 0 : -1;
}

/* A CA and a server certificate for names, as PEM files in fx->dir. */
static int
fx_tls_files(redisfx_t *fx, const char *const *names)
{
    static const char *const dflt[] = { "localhost", "127.0.0.1", NULL };
    EVP_PKEY *ca_key = testpki_key(0), *key = testpki_key(0);
    X509     *ca = NULL, *leaf = NULL;
    char      path[160], *pem;
    size_t    n = 0;
    int       rc = -1;

    names = names ? names : dflt;
    while (names[n] != NULL) {
        n++;
    }
    ca = testpki_cert(ca_key, "redisfx CA", NULL, 0, NULL, NULL, 1, -3600, 86400);
    leaf = ca ? testpki_cert(key, names[0], names, n, ca, ca_key, 0, -3600, 86400) : NULL;
    if (leaf == NULL) {
        goto out;
    }
    snprintf(fx->ca_file, sizeof(fx->ca_file), "%s/ca.pem", fx->dir);
    pem = testpki_pem(&ca, 1);
    rc = fx_write(fx->ca_file, pem, 0644);
    free(pem);
    snprintf(path, sizeof(path), "%s/server.pem", fx->dir);
    pem = testpki_pem(&leaf, 1);
    rc |= fx_write(path, pem, 0644);
    free(pem);
    snprintf(path, sizeof(path), "%s/server.key", fx->dir);
    pem = testpki_key_pem(key);
    rc |= fx_write(path, pem, 0600);
    free(pem);

out:
    X509_free(ca);
    X509_free(leaf);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    return rc;
}

static void
fx_exec(redisfx_t *fx)
{
    char        port[16], logf[128], cert[128], key[128];
    const char *argv[32];
    int         n = 0, null = open("/dev/null", O_RDWR);

    snprintf(port, sizeof(port), "%d", fx->port);
    snprintf(logf, sizeof(logf), "%s/redis.log", fx->dir);
    snprintf(cert, sizeof(cert), "%s/server.pem", fx->dir);
    snprintf(key, sizeof(key), "%s/server.key", fx->dir);
    argv[n++] = REDISFX_SERVER;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = fx->dir;
    argv[n++] = "--logfile";
    argv[n++] = logf;
    if (fx->tls) {
        argv[n++] = "--port";
        argv[n++] = "0";
        argv[n++] = "--tls-port";
        argv[n++] = port;
        argv[n++] = "--tls-cert-file";
        argv[n++] = cert;
        argv[n++] = "--tls-key-file";
        argv[n++] = key;
        argv[n++] = "--tls-ca-cert-file";
        argv[n++] = fx->ca_file;
        argv[n++] = "--tls-auth-clients";
        argv[n++] = "no";
    } else {
        argv[n++] = "--port";
        argv[n++] = port;
    }
    argv[n] = NULL;
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    execv(REDISFX_SERVER, (char *const *) argv);
    _exit(127);
}

/* Until the server answers PING through the client under test. */
static int
fx_wait_ready(redisfx_t *fx)
{
    long long         deadline = fx_now_ms() + READY_DEADLINE_MS;
    atls_redis_conf_t conf;
    char              err[512] = "";
    int               status, ok = 0;

    redisfx_conf(fx, &conf);
    free(conf.host);
    conf.host = strdup(fx->ready_host);
    conf.timeout_ms = 1000;
    while (!ok && fx_now_ms() < deadline) {
        atls_redis_t *c = atls_redis_open_sync(&conf, err, sizeof(err));
        redisReply   *r = NULL;

        if (c != NULL && atls_redis_callv(c, &r, err, sizeof(err), "PING", NULL) == 0) {
            ok = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
            freeReplyObject(r);
        }
        atls_redis_free(c);
        if (waitpid(fx->pid, &status, WNOHANG) == fx->pid) {
            fx->pid = 0;
            break;
        }
        if (!ok) {
            usleep(20000);   /* poll interval while it starts */
        }
    }
    atls_redis_conf_free(&conf);
    if (!ok) {
        fprintf(stderr, "redisfx: redis-server on port %d not ready: %s\n", fx->port, err);
    }
    return ok ? 0 : -1;
}

int
redisfx_start(redisfx_t *fx, int tls, const char *const *tls_names)
{
    memset(fx, 0, sizeof(*fx));
    signal(SIGPIPE, SIG_IGN);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/atls-redis-XXXXXX");
    if (mkdtemp(fx->dir) == NULL) {
        return -1;
    }
    fx->tls = tls;
    snprintf(fx->ready_host, sizeof(fx->ready_host), "%s",
             tls && tls_names != NULL ? tls_names[0] : "127.0.0.1");
    fx->port = fx_free_port();
    if (fx->port < 0 || (tls && fx_tls_files(fx, tls_names) != 0)) {
        tmptree_rm(fx->dir);
        return -1;
    }
    fx->pid = fork();
    if (fx->pid < 0) {
        tmptree_rm(fx->dir);
        return -1;
    }
    if (fx->pid == 0) {
        fx_exec(fx);
    }
    if (fx_wait_ready(fx) != 0) {
        redisfx_stop(fx);
        return -1;
    }
    return 0;
}

void
redisfx_stop(redisfx_t *fx)
{
    long long deadline = fx_now_ms() + 5000;
    int       status;

    if (fx->pid > 0) {
        kill(fx->pid, SIGTERM);
        while (waitpid(fx->pid, &status, WNOHANG) == 0) {
            if (fx_now_ms() > deadline) {
                kill(fx->pid, SIGKILL);
                waitpid(fx->pid, &status, 0);
                break;
            }
            usleep(10000);
        }
        fx->pid = 0;
    }
    if (fx->dir[0] != '\0') {
        tmptree_rm(fx->dir);
        fx->dir[0] = '\0';
    }
}

void
redisfx_conf(const redisfx_t *fx, atls_redis_conf_t *c)
{
    memset(c, 0, sizeof(*c));
    c->host = strdup("127.0.0.1");
    c->port = fx->port;
    c->tls = fx->tls;
    c->ca_file = fx->tls ? strdup(fx->ca_file) : NULL;
    c->prefix = strdup("t:");
    c->timeout_ms = 5000;
}

void
redisfx_keyfile(const redisfx_t *fx, const char *name, int fill, char *path, size_t len)
{
    unsigned char raw[32];
    char          hex[66];
    size_t        i;

    if (fill == 0) {
        assert_int_equal(RAND_bytes(raw, sizeof(raw)), 1);
    } else {
        memset(raw, fill, sizeof(raw));
    }
    for (i = 0; i < sizeof(raw); i++) {
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    }
    hex[64] = '\n';
    hex[65] = '\0';
    snprintf(path, len, "%s/%s", fx->dir, name);
    unlink(path);
    assert_int_equal(fx_write(path, hex, 0600), 0);
}

redisReply *
redisfx_cmd(const redisfx_t *fx, ...)
{
    atls_redis_conf_t conf;
    atls_redis_t     *c;
    const char       *argv[16], *a;
    int               argc = 0;
    va_list           ap;
    redisReply       *r = NULL;
    char              err[512];

    va_start(ap, fx);
    while ((a = va_arg(ap, const char *)) != NULL && argc < 16) {
        argv[argc++] = a;
    }
    va_end(ap);
    redisfx_conf(fx, &conf);
    c = atls_redis_open_sync(&conf, err, sizeof(err));
    if (c == NULL) {
        fail_msg("redisfx: %s", err);
    }
    if (atls_redis_call(c, argc, argv, NULL, &r, 0, err, sizeof(err)) != 0) {
        fail_msg("redisfx %s: %s", argv[0], err);
    }
    atls_redis_free(c);
    atls_redis_conf_free(&conf);
    return r;
}

int
redisfx_setup(void **state)
{
    redisfx_t *fx = calloc(1, sizeof(*fx));

    if (fx == NULL || redisfx_start(fx, 0, NULL) != 0) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

int
redisfx_teardown(void **state)
{
    redisfx_t *fx = *state;

    redisfx_stop(fx);
    free(fx);
    return 0;
}

int
redisfx_store_setup(void **state)
{
    redisfx_store_t *fx = calloc(1, sizeof(*fx));
    char             err[512];

    if (fx == NULL || redisfx_start(&fx->rfx, 0, NULL) != 0) {
        free(fx);
        return -1;
    }
    redisfx_keyfile(&fx->rfx, "store.key", 0, fx->key_file, sizeof(fx->key_file));
    redisfx_conf(&fx->rfx, &fx->conf);
    fx->conf.key_file = strdup(fx->key_file);
    fx->st = atls_store_redis_open(&fx->conf, err, sizeof(err));
    if (fx->st == NULL) {
        fprintf(stderr, "redisfx: store: %s\n", err);
        redisfx_stop(&fx->rfx);
        atls_redis_conf_free(&fx->conf);
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

int
redisfx_store_teardown(void **state)
{
    redisfx_store_t *fx = *state;

    atls_store_close(fx->st);
    redisfx_stop(&fx->rfx);
    atls_redis_conf_free(&fx->conf);
    free(fx);
    return 0;
}

redisReply *
redisfx_get_raw(const redisfx_t *fx, const char *key)
{
    redisReply *r = redisfx_cmd(fx, "GET", key, NULL);

    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return NULL;
    }
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    return r;
}

void
redisfx_set_raw(const redisfx_t *fx, const char *key, const void *val, size_t len)
{
    atls_redis_conf_t conf;
    atls_redis_t     *c;
    const char       *argv[] = { "SET", key, val };
    size_t            lens[] = { 3, strlen(key), len };
    redisReply       *r = NULL;
    char              err[512];

    redisfx_conf(fx, &conf);
    c = atls_redis_open_sync(&conf, err, sizeof(err));
    if (c == NULL || atls_redis_call(c, 3, argv, lens, &r, 0, err, sizeof(err)) != 0) {
        fail_msg("redisfx SET %s: %s", key, err);
    }
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    atls_redis_free(c);
    atls_redis_conf_free(&conf);
}

void
redisfx_kill(redisfx_t *fx)
{
    int status;

    if (fx->pid > 0) {
        kill(fx->pid, SIGKILL);
        waitpid(fx->pid, &status, 0);
        fx->pid = 0;
    }
}

int
redisfx_restart(redisfx_t *fx)
{
    redisfx_kill(fx);
    fx->pid = fork();
    if (fx->pid < 0) {
        fx->pid = 0;
        return -1;
    }
    if (fx->pid == 0) {
        fx_exec(fx);
    }
    return fx_wait_ready(fx);
}
