/*
 * Identifier syntax: every hostname or IP address a CA hands back is checked
 * here before it is published, passed to a hook, logged or compared.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "atls.h"

#define ATLS_DNS_NAME_MAX  253     /* RFC 1035 §2.3.4, without the root dot */
#define ATLS_DNS_LABEL_MAX 63

static int
ident_ldh(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || c == '-';
}

int
atls_ident_is_ip(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return s != NULL && (inet_pton(AF_INET, s, buf) == 1
                         || inet_pton(AF_INET6, s, buf) == 1);
}

int
atls_ident_ip_equal(const char *a, const char *b)
{
    unsigned char ba[sizeof(struct in6_addr)], bb[sizeof(struct in6_addr)];

    if (a == NULL || b == NULL) {
        return 0;
    }
    if (inet_pton(AF_INET, a, ba) == 1) {
        return inet_pton(AF_INET, b, bb) == 1 && memcmp(ba, bb, 4) == 0;
    }
    return inet_pton(AF_INET6, a, ba) == 1 && inet_pton(AF_INET6, b, bb) == 1
           && memcmp(ba, bb, sizeof(ba)) == 0;
}

int
atls_ident_is_dns(const char *s, int allow_wildcard)
{
    const unsigned char *p;
    size_t               label = 0, total;

    if (s == NULL) {
        return 0;
    }
    if (allow_wildcard && s[0] == '*' && s[1] == '.') {
        s += 2;
    }
    total = strlen(s);
    if (total == 0 || total > ATLS_DNS_NAME_MAX) {
        return 0;
    }
    for (p = (const unsigned char *) s; ; p++) {
        if (*p == '.' || *p == '\0') {
            /* no empty label (leading, trailing or double dot), no hyphen
             * at either end of a label (RFC 1123 §2.1) */
            if (label == 0 || label > ATLS_DNS_LABEL_MAX || p[-1] == '-'
                || p[-(long) label] == '-')
            {
                return 0;
            }
            if (*p == '\0') {
                return 1;
            }
            label = 0;
            continue;
        }
        if (!ident_ldh(*p)) {
            return 0;
        }
        label++;
    }
}

/* "scheme://host:port" of url into out (host lower-cased, the scheme's
 * default port made explicit); -1 when url has no scheme and authority, or
 * carries userinfo (a "user@" can hide the real host from a reader). */
static int
url_origin(const char *url, char *out, size_t outlen)
{
    const char *sep, *auth, *end, *host_end, *port;
    size_t      slen, hlen, i, n;
    char        host[256];

    if (url == NULL || (sep = strstr(url, "://")) == NULL || sep == url) {
        return -1;
    }
    slen = (size_t) (sep - url);
    auth = sep + 3;
    end = auth + strcspn(auth, "/?#");
    if (end == auth || memchr(auth, '@', (size_t) (end - auth)) != NULL) {
        return -1;
    }
    if (*auth == '[') {
        host_end = memchr(auth, ']', (size_t) (end - auth));
        if (host_end == NULL) {
            return -1;
        }
        host_end++;
    } else {
        host_end = memchr(auth, ':', (size_t) (end - auth));
        if (host_end == NULL) {
            host_end = end;
        }
    }
    hlen = (size_t) (host_end - auth);
    if (hlen == 0 || hlen >= sizeof(host)) {
        return -1;
    }
    for (i = 0; i < hlen; i++) {
        host[i] = (char) tolower((unsigned char) auth[i]);
    }
    host[hlen] = '\0';
    if (host_end < end && *host_end != ':') {
        return -1;
    }
    port = host_end < end ? host_end + 1 : NULL;
    if (port != NULL && (port == end || strspn(port, "0123456789") != (size_t) (end - port))) {
        return -1;
    }
    n = (size_t) snprintf(out, outlen, "%.*s://%s:%.*s", (int) slen, url, host,
                          port ? (int) (end - port) : 3,
                          port ? port : (slen == 5 && strncasecmp(url, "https", 5) == 0
                                         ? "443" : "80"));
    for (i = 0; i < slen && i < outlen; i++) {
        out[i] = (char) tolower((unsigned char) out[i]);
    }
    return n < outlen ? 0 : -1;
}

int
atls_url_same_origin(const char *base, const char *url)
{
    char a[300], b[300];

    if (url_origin(base, a, sizeof(a)) != 0 || url_origin(url, b, sizeof(b)) != 0) {
        return 0;
    }
    if (strncmp(b, "https://", 8) != 0) {
        return 0;
    }
    return strcmp(a, b) == 0;
}
