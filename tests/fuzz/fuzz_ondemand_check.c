/*
 * The on-demand gate takes names straight from the network (an SNI
 * extension, a Host header): any bytes.  Whatever comes in, the check
 * answers with a reason; a name it passes on is canonical (lower-case
 * letters, digits, '-' and '.', or an IP literal when those are allowed)
 * and checks again to the same verdict; the ask request built for it
 * escapes every byte outside RFC 3986's unreserved set.  The verdict cache
 * is kept small so that eviction runs too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "atls_ondemand.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ASK "https://ask.example/check?k=1"

static atls_od_t *
gate(int allow_ip)
{
    static char *deny[] = { "*.evil.example", "~^x[0-9]+\\.example\\.org$" };
    static char *allow[] = { "www.example.com", "*.shop.example.net",
                             "~^[a-z]+\\.example\\.org$", "192.0.2.1" };
    atls_od_conf_t c;
    char           err[256];
    atls_od_t     *od;

    memset(&c, 0, sizeof(c));
    c.deny = deny;
    c.n_deny = 2;
    c.allow = allow;
    c.n_allow = 4;
    c.ask_url = ASK;
    c.cache_entries = 64;
    c.allow_ip = allow_ip;
    od = atls_od_new(&c, NULL, err, sizeof(err));
    if (od == NULL) {
        abort();
    }
    return od;
}

static int
canonical(const char *name)
{
    size_t i, n = strlen(name);

    if (n == 0 || n > 253) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'
              || c == ':'))
        {
            return 0;
        }
    }
    return 1;
}

static void
check_ask_url(const atls_od_t *od, const char *name)
{
    atls_http_request_t req;
    atls_http_opts_t    o;
    const char         *p;

    if (atls_od_ask_request(od, name, &req, &o) != 0) {
        abort();
    }
    if (strncmp(req.url, ASK "&domain=", strlen(ASK "&domain=")) != 0) {
        abort();
    }
    for (p = req.url + strlen(ASK "&domain="); *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || strchr("-._~%", *p) != NULL))
        {
            abort();
        }
    }
    atls_http_request_free(&req);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static atls_od_t    *od[2];
    atls_od_verdict_t    v, again;
    atls_http_response_t resp;
    char                 name[254], name2[254], why[256];
    int                  k;

    if (od[0] == NULL) {
        od[0] = gate(0);
        od[1] = gate(1);
    }
    for (k = 0; k < 2; k++) {
        why[0] = '\0';
        v = atls_od_check(od[k], (const char *) data, size, 1700000000, name, why,
                          sizeof(why));
        if (why[0] == '\0' || v > ATLS_OD_LIMITED) {
            abort();
        }
        if (v == ATLS_OD_INVALID) {
            continue;
        }
        if (!canonical(name)) {
            abort();
        }
        again = atls_od_check(od[k], name, strlen(name), 1700000000, name2, why, sizeof(why));
        if (again != v || strcmp(name, name2) != 0) {
            abort();
        }
        check_ask_url(od[k], name);
        if (v == ATLS_OD_ASK) {
            /* an answer, from the input's first byte: cached, then found */
            memset(&resp, 0, sizeof(resp));
            resp.status = size > 0 ? 100 + data[0] * 2 : 0;
            resp.transport_error = resp.status == 0;
            v = atls_od_ask_done(od[k], name, &resp, 1700000000, why, sizeof(why));
            again = atls_od_check(od[k], name, strlen(name), 1700000000, name2, why,
                                  sizeof(why));
            if (again != v) {
                abort();
            }
        }
    }
    return 0;
}
