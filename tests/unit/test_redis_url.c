/* The Redis URL and options parser (redis_url.c): what is accepted, and
 * errors that name the field and never repeat the password. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "atls_redis.h"

static void
parse_ok(const char *line, atls_redis_conf_t *c)
{
    char err[512];

    if (atls_redis_conf_parse_line(line, c, err, sizeof(err)) != 0) {
        fail_msg("%s: %s", line, err);
    }
}

static void
test_url_forms(void **state)
{
    atls_redis_conf_t c;
    char             *d;

    (void) state;
    parse_ok("redis://cache.example:7000/3", &c);
    assert_string_equal(c.host, "cache.example");
    assert_int_equal(c.port, 7000);
    assert_int_equal(c.db, 3);
    assert_null(c.user);
    assert_null(c.password);
    assert_int_equal(c.tls, 0);
    assert_string_equal(c.prefix, ATLS_REDIS_DEFAULT_PREFIX);
    assert_int_equal(c.timeout_ms, 0);   /* the host's default */
    assert_null(c.health);
    atls_redis_conf_free(&c);

    /* the blocking calls' timeout, and the health gate copied as a pointer */
    parse_ok("redis://h timeout=250", &c);
    assert_int_equal(c.timeout_ms, 250);
    {
        atls_redis_health_t h = { 0, "" };
        atls_redis_conf_t   copy;

        c.health = &h;
        atls_redis_conf_copy(&copy, &c);
        assert_ptr_equal(copy.health, &h);
        assert_int_equal(copy.timeout_ms, 250);
        atls_redis_conf_free(&copy);
    }
    atls_redis_conf_free(&c);

    parse_ok("redis://10.0.0.5", &c);
    assert_int_equal(c.port, ATLS_REDIS_DEFAULT_PORT);
    assert_int_equal(c.db, 0);
    atls_redis_conf_free(&c);

    /* ACL user; percent-escapes; an '@' and ':' inside the password */
    parse_ok("rediss://atls:p%40ss:w@rd@[::1]:6380/0 ca_file=/etc/ca.pem "
             "key_file=/etc/autotls/redis.key prefix=prod:", &c);
    assert_string_equal(c.user, "atls");
    assert_string_equal(c.password, "p@ss:w@rd");
    assert_string_equal(c.host, "::1");
    assert_int_equal(c.port, 6380);
    assert_int_equal(c.tls, 1);
    assert_string_equal(c.ca_file, "/etc/ca.pem");
    assert_string_equal(c.key_file, "/etc/autotls/redis.key");
    assert_string_equal(c.prefix, "prod:");
    d = atls_redis_conf_describe(&c);
    assert_string_equal(d, "rediss://atls@[::1]:6380/0");
    assert_null(strstr(d, "p@ss"));
    free(d);
    atls_redis_conf_free(&c);

    /* a password alone (requirepass); tls as an option */
    parse_ok("redis://:only-pw@localhost tls", &c);
    assert_null(c.user);
    assert_string_equal(c.password, "only-pw");
    assert_int_equal(c.tls, 1);
    atls_redis_conf_free(&c);

    /* the hosts' options: the node's mirror and its id in the cluster */
    parse_ok("redis://h mirror=/var/lib/autotls/mirror node=web-1.example:a/b", &c);
    assert_string_equal(c.mirror_dir, "/var/lib/autotls/mirror");
    assert_string_equal(c.node_id, "web-1.example:a/b");
    {
        atls_redis_conf_t copy;

        atls_redis_conf_copy(&copy, &c);
        atls_redis_conf_free(&c);   /* the copy owns its own strings */
        assert_string_equal(copy.mirror_dir, "/var/lib/autotls/mirror");
        assert_string_equal(copy.node_id, "web-1.example:a/b");
        d = atls_redis_conf_describe(&copy);
        assert_string_equal(d, "redis://h:6379/0");   /* unchanged by them */
        free(d);
        atls_redis_conf_free(&copy);
    }
    parse_ok("redis://h", &c);
    assert_null(c.mirror_dir);
    assert_null(c.node_id);
    atls_redis_conf_free(&c);

    /* the directive form: URL and option words apart */
    {
        char *const opts[] = { "tls", "prefix=a" };
        char        err[256];

        assert_int_equal(atls_redis_conf_parse("redis://h:1", opts, 2, &c, err, sizeof(err)), 0);
        assert_int_equal(c.tls, 1);
        assert_string_equal(c.prefix, "a");
        atls_redis_conf_free(&c);
    }
}

static void
test_url_errors(void **state)
{
    static const struct {
        const char *line;
        const char *says;
    } bad[] = {
        { "http://h:1", "URL scheme" },
        { "redis://", "URL host" },
        { "redis://:6379", "URL host" },
        { "redis://h:0", "URL port" },
        { "redis://h:65536", "URL port" },
        { "redis://h:12a", "URL port" },
        { "redis://h:", "URL port" },
        { "redis://h/x", "URL db" },
        { "redis://h/-1", "URL db" },
        { "redis://h/1234567890", "URL db" },
        { "redis://user@h", "URL user" },
        { "redis://us%0aer:pw@h", "URL user" },
        { "redis://u:@h", "URL password" },
        { "redis://u:pw%zz@h", "URL password" },
        { "redis://u:pw%00@h", "URL password" },
        { "redis://[::1", "URL host" },
        { "redis://[::1]x", "URL host" },
        { "redis://[zz]:1", "URL host" },
        { "redis://h*st", "URL host" },
        { "redis://h ca_file=/x", "ca_file" },
        { "redis://h tls tls", "option tls" },
        { "redis://h key_file=/a key_file=/b", "option key_file" },
        { "redis://h key_file=", "option key_file" },
        { "redis://h prefix=", "option prefix" },
        { "redis://h prefix=a{b}", "option prefix" },
        { "redis://h prefix=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
          "option prefix" },
        { "redis://h sentinel=x", "\"sentinel\": unknown" },
        { "redis://h mirror=", "option mirror" },
        { "redis://h mirror=var/mirror", "option mirror" },
        { "redis://h mirror=/a/../etc", "option mirror" },
        { "redis://h mirror=/a/./b", "option mirror" },
        { "redis://h mirror=/a/..", "option mirror" },
        { "redis://h mirror=/a mirror=/b", "option mirror" },
        { "redis://h timeout=", "option timeout" },
        { "redis://h timeout=9", "option timeout" },
        { "redis://h timeout=600001", "option timeout" },
        { "redis://h timeout=1s", "option timeout" },
        { "redis://h timeout=-5", "option timeout" },
        { "redis://h timeout=99999999999999999999", "option timeout" },
        { "redis://h timeout=100 timeout=200", "option timeout" },
        { "redis://h node=", "option node" },
        { "redis://h node=a node=b", "option node" },
        { "redis://h node=caf\xc3\xa9", "option node" },
        { NULL, NULL }
    };
    atls_redis_conf_t c;
    char              err[512];
    size_t            i;

    (void) state;
    for (i = 0; bad[i].line != NULL; i++) {
        memset(&c, 0x5a, sizeof(c));
        if (atls_redis_conf_parse_line(bad[i].line, &c, err, sizeof(err)) == 0) {
            fail_msg("accepted: %s", bad[i].line);
        }
        if (strstr(err, bad[i].says) == NULL) {
            fail_msg("%s: \"%s\" does not name %s", bad[i].line, err, bad[i].says);
        }
        assert_null(c.host);   /* nothing left behind */
        assert_null(c.password);
    }
    /* the password is never echoed, even when what follows is wrong */
    assert_int_equal(atls_redis_conf_parse_line("redis://u:Hunter2@h:99999", &c, err,
                                                sizeof(err)), -1);
    assert_null(strstr(err, "Hunter2"));
    assert_int_equal(atls_redis_conf_parse_line("redis://h Hunter2=x", &c, err,
                                                sizeof(err)), -1);
    assert_null(strstr(err, "=x"));
    assert_int_equal(atls_redis_conf_parse_line(NULL, &c, err, sizeof(err)), -1);

    /* the directive form passes what a blank would split: control bytes,
     * blanks, and a node id one byte over the bound */
    {
        char  long_node[ATLS_REDIS_NODE_MAX + 7];
        char *const ctl[] = { "mirror=/a\tb" };
        char *const blank[] = { "node=web 1" };
        char *const over[] = { long_node };

        assert_int_equal(atls_redis_conf_parse("redis://h", ctl, 1, &c, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "option mirror"));
        assert_int_equal(atls_redis_conf_parse("redis://h", blank, 1, &c, err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "option node"));
        memcpy(long_node, "node=", 5);
        memset(long_node + 5, 'n', ATLS_REDIS_NODE_MAX + 1);
        long_node[sizeof(long_node) - 1] = '\0';
        assert_int_equal(atls_redis_conf_parse("redis://h", over, 1, &c, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "option node"));
        long_node[sizeof(long_node) - 2] = '\0';   /* exactly the bound */
        assert_int_equal(atls_redis_conf_parse("redis://h", over, 1, &c, err, sizeof(err)), 0);
        assert_int_equal(strlen(c.node_id), ATLS_REDIS_NODE_MAX);
        atls_redis_conf_free(&c);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_forms),
        cmocka_unit_test(test_url_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
