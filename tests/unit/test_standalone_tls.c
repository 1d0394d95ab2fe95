/*
 * The CLI's tls-alpn-01 responder (tools/autotls/standalone_tls.c) shows the
 * validation certificate only to clients that offer "acme-tls/1" (RFC 8737
 * §3): not to a client without ALPN, nor to one offering other protocols.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>
#include <openssl/ssl.h>
#include "atls.h"
#include "cli.h"

#define KEY_AUTHZ "token.thumbprint"

static cli_tls_t *tls;
static int        tls_port;

static int
free_port(void)
{
    struct sockaddr_in sa;
    socklen_t          sl = sizeof(sa);
    int                fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &sl), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int
setup(void **state)
{
    char err[256];
    int  tries;

    (void) state;
    /* as the CLI's main() does: a client that hangs up early is no signal */
    signal(SIGPIPE, SIG_IGN);
    atls_log_set(NULL, NULL, ATLS_LOG_ERR);
    for (tries = 0; tls == NULL && tries < 10; tries++) {
        tls_port = free_port();
        tls = cli_tls_start("127.0.0.1", tls_port, err, sizeof(err));
    }
    assert_non_null(tls);
    assert_int_equal(cli_tls_add(tls, "alpn.example", KEY_AUTHZ, err, sizeof(err)), 0);
    return 0;
}

static int
teardown(void **state)
{
    (void) state;
    cli_tls_stop(tls);
    tls = NULL;
    return 0;
}

/* 1 when a handshake with SNI alpn.example and the given ALPN list (wire
 * format, NULL for none) completes and shows a certificate. */
static int
handshake(const unsigned char *alpn, unsigned alpn_len)
{
    struct sockaddr_in sa;
    SSL_CTX           *ctx;
    SSL               *ssl;
    int                fd, ok;

    ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    ssl = SSL_new(ctx);
    assert_non_null(ssl);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t) tls_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "alpn.example");
    if (alpn != NULL) {
        assert_int_equal(SSL_set_alpn_protos(ssl, alpn, alpn_len), 0);
    }
    ok = SSL_connect(ssl) == 1;
    if (ok) {
        X509 *peer = SSL_get1_peer_certificate(ssl);

        ok = peer != NULL;
        X509_free(peer);
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return ok;
}

static void
test_acme_alpn_answered(void **state)
{
    static const unsigned char acme[] = "\x02h2\x0a" "acme-tls/1";

    (void) state;
    assert_int_equal(handshake(acme, sizeof(acme) - 1), 1);
}

static void
test_no_alpn_refused(void **state)
{
    (void) state;
    assert_int_equal(handshake(NULL, 0), 0);
}

static void
test_other_alpn_refused(void **state)
{
    static const unsigned char h2[] = "\x02h2\x08http/1.1";

    (void) state;
    assert_int_equal(handshake(h2, sizeof(h2) - 1), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acme_alpn_answered),
        cmocka_unit_test(test_no_alpn_refused),
        cmocka_unit_test(test_other_alpn_refused),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
