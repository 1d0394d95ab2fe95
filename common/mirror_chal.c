/*
 * What a cluster node accepts from Redis before its responder sees it
 * (mirror_cluster.c; the fuzz harness fuzz_mirror_chal.c): the challenge
 * types shared, their keys (an http-01 token, a tls-alpn-01 name), the
 * answers' bytes; and the node's default id.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "atls.h"
#include "atls_acme.h"
#include "mirror_int.h"

#define MIRROR_CHAL_HTTP_MAX  1024    /* a key authorisation */

static int
chal_type_ok(atls_challenge_type_t t)
{
    return t == ATLS_CHAL_HTTP01 || t == ATLS_CHAL_TLSALPN01;
}

static int
token_char(int ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
           || ch == '-' || ch == '_';
}

/* An http-01 token is base64url; a tls-alpn-01 key is the name (or IP)
 * validated.  Both end up in file names and shared-memory keys. */
int
atls_mirror_chal_key_ok(atls_challenge_type_t t, const char *key)
{
    size_t i, n = strlen(key);

    if (!chal_type_ok(t) || n == 0 || n > MIRROR_CHAL_KEY_MAX) {
        return 0;
    }
    if (t == ATLS_CHAL_TLSALPN01) {
        return atls_ident_is_dns(key, 0) || atls_ident_is_ip(key);
    }
    for (i = 0; i < n; i++) {
        if (!token_char((unsigned char) key[i])) {
            return 0;
        }
    }
    return t == ATLS_CHAL_HTTP01;
}

/* What the responder may be handed: bounded, an http-01 answer is
 * "<token>.<thumbprint>", a tls-alpn-01 one PEM text. */
static int
chal_data_check(atls_challenge_type_t t, const char *data, size_t len, char *why, size_t whylen)
{
    size_t i;

    if (len == 0 || memchr(data, '\0', len) != NULL) {
        snprintf(why, whylen, "empty, or a NUL byte inside");
        return 0;
    }
    if (t == ATLS_CHAL_HTTP01) {
        if (len > MIRROR_CHAL_HTTP_MAX) {
            snprintf(why, whylen, "a key authorisation of %zu bytes (at most %d)", len,
                     MIRROR_CHAL_HTTP_MAX);
            return 0;
        }
        for (i = 0; i < len; i++) {
            if (!token_char((unsigned char) data[i]) && data[i] != '.') {
                snprintf(why, whylen, "not a key authorisation");
                return 0;
            }
        }
        return 1;
    }
    if (len > MIRROR_CHAL_ALPN_MAX || memmem(data, len, "-----BEGIN ", 11) == NULL) {
        snprintf(why, whylen, "not a certificate and key (PEM) of at most %d bytes",
                 MIRROR_CHAL_ALPN_MAX);
        return 0;
    }
    return 1;
}

int
atls_mirror_chal_parse(const char *s, size_t len, atls_challenge_type_t *t, char *key,
                       size_t keylen)
{
    char *buf, *sp;
    int   rc = -1;

    if (len == 0 || len > MIRROR_CHAL_KEY_MAX + 32 || memchr(s, '\0', len) != NULL) {
        return -1;
    }
    buf = strndup(s, len);
    if (buf == NULL) {
        abort();
    }
    sp = strchr(buf, ' ');
    if (sp != NULL) {
        *sp = '\0';
        if (atls_challenge_type_parse(buf, t) == 0 && atls_mirror_chal_key_ok(*t, sp + 1)
            && strlen(sp + 1) < keylen)
        {
            memcpy(key, sp + 1, strlen(sp + 1) + 1);
            rc = 0;
        }
    }
    free(buf);
    return rc;
}

int
atls_mirror_chal_data_ok(atls_challenge_type_t t, const char *data, size_t len, char *why,
                         size_t whylen)
{
    return chal_type_ok(t) && chal_data_check(t, data, len, why, whylen);
}

char *
atls_mirror_default_node(const char *dir)
{
    char   host[256], *id, *p;
    size_t n;

    if (gethostname(host, sizeof(host)) != 0) {
        snprintf(host, sizeof(host), "localhost");
    }
    host[sizeof(host) - 1] = '\0';
    if (asprintf(&id, "%s:%s", host, dir) < 0) {
        abort();
    }
    for (p = id; *p != '\0'; p++) {
        if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f) {
            *p = '_';
        }
    }
    n = strlen(id);
    if (n > ATLS_REDIS_NODE_MAX) {
        /* the end of the directory tells two nodes of one machine apart */
        memmove(id, id + n - ATLS_REDIS_NODE_MAX, ATLS_REDIS_NODE_MAX + 1);
    }
    return id;
}
