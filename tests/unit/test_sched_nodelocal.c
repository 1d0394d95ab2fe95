/*
 * Nodes sharing one store (issue 12) whose issuer settings differ only in
 * node-local details: the CA trust file's path, the dns hook's program, the
 * CLI responders' ports.  A pass of one node's scheduler after another's
 * must not rewrite meta.json (with Redis each rewrite bumps the
 * certificate's generation and every other node pulls it again, each pass,
 * for ever).  A real change, another CA directory or other key types, is
 * still recorded.
 *
 * A real filesystem store (revfix.h) whose meta.json writes are counted;
 * the certificate is valid, renewal in 20 days, so a pass orders nothing.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "atls_job.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "support/fakehost.h"
#include "support/revfix.h"

#define DIRECTORY  REVFIX_DIRECTORY
#define NAME       "shared.node.test"

/* ---- a store whose meta.json writes are counted --------------------------------- */

static const atls_store_ops_t *real_ops;
static atls_store_ops_t        counting_ops;
static size_t                  meta_puts;

static int
counting_put(atls_store_t *st, const char *path, const char *data, size_t len,
             int is_private, char *err, size_t errlen)
{
    size_t n = strlen(path);

    if (n >= 10 && strcmp(path + n - 10, "/meta.json") == 0) {
        meta_puts++;
    }
    return real_ops->put(st, path, data, len, is_private, err, errlen);
}

/* ---- one node's issuer ------------------------------------------------------------ */

/* Node `node` ("a", "b"): the same CA and policy, its own paths and ports. */
static void
node_issuer(atls_issuer_t *is, const char *node, char *ca, char *hook, size_t len)
{
    memset(is, 0, sizeof(*is));
    snprintf(ca, len, "/etc/%s/pebble-ca.pem", node);
    snprintf(hook, len, "/opt/%s/bin/dns-hook", node);
    is->directory = (char *) DIRECTORY;
    is->challenge = ATLS_CHAL_HTTP01;
    is->agree_tos = 1;
    is->ca_file = ca;
    is->dns_hook = hook;
    is->http_port = node[0] == 'a' ? 5002 : 6002;
    is->tls_port = node[0] == 'a' ? 5001 : 6001;
}

/* ---- fixture ---------------------------------------------------------------------- */

/* The certificate as a deploy left it (valid, renewal in 20 days, its
 * facts in meta), in a store whose meta.json writes are counted. */
static int
setup(void **state)
{
    atls_sched_t *s;

    if (revfix_setup(state) != 0) {
        return -1;
    }
    revfix_sched_start();
    (void) revfix_seed(NAME, NULL, NULL, 1);
    s = rf.h.s;
    rf.h.s = NULL;
    atls_sched_free(s);
    fakehost_clear(&rf.h);
    real_ops = rf.st->ops;
    counting_ops = *real_ops;
    counting_ops.put = counting_put;
    rf.st->ops = &counting_ops;
    return 0;
}

static int
teardown(void **state)
{
    rf.st->ops = real_ops;
    return revfix_teardown(state);
}

/* A node starts its scheduler on the shared store with `is` and makes its
 * first pass, which looks at every certificate; the meta.json writes. */
static size_t
node_pass(const atls_issuer_t *is, int settle)
{
    atls_sched_opts_t o;
    const char       *name = NAME;
    char              err[256];

    memset(&o, 0, sizeof(o));
    rf.h.s = atls_sched_new(rf.st, &rf.h.host, &o, err, sizeof(err));
    assert_non_null(rf.h.s);
    assert_non_null(atls_sched_add(rf.h.s, &name, 1, is, &rf.certs[0], err, sizeof(err)));
    meta_puts = 0;
    atls_sched_check(rf.h.s);
    if (settle) {
        assert_int_equal(fakehost_run(&rf.h, fakehost_until_settled, NULL, REVFIX_RUN_MS,
                                      NULL), 0);
    }
    atls_sched_free(rf.h.s);        /* what an order left in flight is cancelled */
    rf.h.s = NULL;
    fakehost_clear(&rf.h);
    return meta_puts;
}

static char *
stored_directory(void)
{
    atls_cert_meta_t m = revfix_meta(NAME);
    char            *dir;

    dir = strdup(m.issuer.directory);
    atls_cert_meta_free(&m);
    return dir;
}

/* ---- tests ------------------------------------------------------------------------- */

/* Nodes a and b take turns: nobody rewrites meta.json, whose record stays
 * the first writer's. */
static void
test_node_local_paths_rewrite_nothing(void **state)
{
    atls_issuer_t a, b;
    char          ca_a[128], hook_a[128], ca_b[128], hook_b[128];
    atls_cert_meta_t m;

    (void) state;
    node_issuer(&a, "a", ca_a, hook_a, sizeof(ca_a));
    node_issuer(&b, "b", ca_b, hook_b, sizeof(ca_b));
    assert_int_equal(node_pass(&a, 1), 0);
    assert_int_equal(node_pass(&b, 1), 0);
    assert_int_equal(node_pass(&a, 1), 0);
    assert_int_equal(node_pass(&b, 1), 0);
    m = revfix_meta(NAME);
    assert_null(m.issuer.ca_file);      /* the first writer's record: none */
    assert_int_equal(m.state, ATLS_STATE_VALID);
    atls_cert_meta_free(&m);
}

/* Another CA directory, or other key types, is a real change: recorded
 * (and the certificate due at once). */
static void
test_real_change_still_recorded(void **state)
{
    atls_issuer_t b;
    char          ca_b[128], hook_b[128], *dir;

    (void) state;
    node_issuer(&b, "b", ca_b, hook_b, sizeof(ca_b));
    b.n_key_types = 2;
    b.key_types[0] = ATLS_KEY_EC256;
    b.key_types[1] = ATLS_KEY_RSA2048;
    assert_true(node_pass(&b, 0) >= 1);

    node_issuer(&b, "b", ca_b, hook_b, sizeof(ca_b));
    b.directory = (char *) FAKECA_BASE "/other-dir";
    assert_true(node_pass(&b, 0) >= 1);
    dir = stored_directory();
    assert_string_equal(dir, FAKECA_BASE "/other-dir");
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_node_local_paths_rewrite_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_real_change_still_recorded, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
