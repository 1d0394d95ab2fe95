/*
 * The Redis store's URL and options come from nginx.conf, httpd.conf and
 * the CLI's --store: anything must be refused with an error naming the
 * field, never crash, and never echo the password; whatever parses
 * describes itself without the password, and within bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "atls_redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(int rc, atls_redis_conf_t *c, const char *err)
{
    char *d, *p;

    if (rc != 0) {
        if (err[0] == '\0' || c->host != NULL || c->password != NULL || c->prefix != NULL
            || c->mirror_dir != NULL || c->node_id != NULL) {
            abort();   /* an error must say why and leave nothing behind */
        }
        return;
    }
    if (c->host == NULL || c->host[0] == '\0' || c->port < 1 || c->port > 65535
        || c->db < 0 || c->prefix == NULL || strchr(c->prefix, '{') || strchr(c->prefix, '}')
        || (c->ca_file != NULL && !c->tls) || (c->user != NULL && c->password == NULL)
        || (c->mirror_dir != NULL && c->mirror_dir[0] != '/')
        || (c->node_id != NULL && (c->node_id[0] == '\0'
                                   || strlen(c->node_id) > ATLS_REDIS_NODE_MAX)))
    {
        abort();
    }
    d = atls_redis_conf_describe(c);
    if (c->password != NULL) {
        char *pat = malloc(strlen(c->password) + 3);

        pat[0] = ':';
        strcpy(pat + 1, c->password);
        strcat(pat, "@");
        if (strstr(d, pat) != NULL) {
            abort();   /* the userinfo form of the password */
        }
        free(pat);
    }
    if (c->node_id != NULL) {
        for (p = c->node_id; *p != '\0'; p++) {
            if ((unsigned char) *p < 0x21 || (unsigned char) *p > 0x7e) {
                abort();   /* the id goes into every node's log lines */
            }
        }
    }
    {
        atls_redis_conf_t copy;

        atls_redis_conf_copy(&copy, c);   /* a deep copy frees on its own */
        atls_redis_conf_free(&copy);
    }
    for (p = d; *p != '\0'; p++) {
        if ((unsigned char) *p < 0x21 || (unsigned char) *p > 0x7e) {
            abort();   /* describe is for log lines */
        }
    }
    free(d);
    atls_redis_conf_free(c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    atls_redis_conf_t c;
    char              err[256], *line, *words[8], *p;
    size_t            n = 0;

    if (size > 4096) {
        return 0;
    }
    line = malloc(size + 1);
    memcpy(line, data, size);
    line[size] = '\0';

    err[0] = '\0';
    check(atls_redis_conf_parse_line(line, &c, err, sizeof(err)), &c, err);

    /* the directive form: the URL, then one option per line */
    p = strchr(line, '\n');
    while (p != NULL && n < 8) {
        *p = '\0';
        words[n++] = p + 1;
        p = strchr(p + 1, '\n');
    }
    err[0] = '\0';
    check(atls_redis_conf_parse(line, words, n, &c, err, sizeof(err)), &c, err);
    free(line);
    return 0;
}
