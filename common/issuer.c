/*
 * Issuer settings: the one set of rules every host applies after parsing
 * its own syntax (nginx directives, Apache directives, CLI options), so a
 * setting means the same thing, and is refused for the same reason,
 * whichever way it was written.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "atls.h"
#include "atls_crypto.h"
#include "atls_store.h"

#define MAILTO "mailto:"

/* 1 when s starts with an RFC 3986 scheme and ':'. */
static int
issuer_has_scheme(const char *s)
{
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789+-.");

    return n > 0 && s[n] == ':'
           && ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'));
}

/* local@domain: one '@', a local part of printable characters that cannot
 * split a mailto URI or a header (no blank, ',', '<', '>', '?', '"'), and
 * a hostname after it. */
static int
issuer_address_ok(const char *a)
{
    const char *at = strchr(a, '@');
    const char *p;

    if (at == NULL || at == a || strchr(at + 1, '@') != NULL) {
        return 0;
    }
    for (p = a; p < at; p++) {
        if (*p <= ' ' || *p >= 0x7f || strchr(",<>?\"", *p) != NULL) {
            return 0;
        }
    }
    return atls_ident_is_dns(at + 1, 0);
}

static int
issuer_contacts(atls_issuer_t *is, char *err, size_t errlen)
{
    size_t i, len;
    char  *u;

    for (i = 0; i < is->n_contact; i++) {
        const char *c = is->contact[i];

        if (c == NULL || c[0] == '\0') {
            snprintf(err, errlen, "contact %zu is empty", i + 1);
            return -1;
        }
        if (issuer_has_scheme(c)) {
            if (strncasecmp(c, MAILTO, sizeof(MAILTO) - 1) == 0
                && !issuer_address_ok(c + sizeof(MAILTO) - 1))
            {
                snprintf(err, errlen, "contact \"%.200s\" is not an e-mail address", c);
                return -1;
            }
            continue;
        }
        if (!issuer_address_ok(c)) {
            snprintf(err, errlen, "contact \"%.200s\" is neither a URI nor an e-mail "
                     "address", c);
            return -1;
        }
        len = strlen(c) + sizeof(MAILTO);
        u = malloc(len);
        if (u == NULL) {
            abort();
        }
        snprintf(u, len, MAILTO "%s", c);
        free(is->contact[i]);
        is->contact[i] = u;
    }
    return 0;
}

/* At most one EC and one RSA key type: a TLS client picks by algorithm, so
 * two of a kind would only ever serve the first. */
static int
issuer_key_types(const atls_issuer_t *is, char *err, size_t errlen)
{
    size_t i, k;

    if (is->n_key_types > ATLS_KEY_TYPE_MAX) {
        snprintf(err, errlen, "at most %d key types per certificate", ATLS_KEY_TYPE_MAX);
        return -1;
    }
    for (i = 0; i < is->n_key_types; i++) {
        if (atls_key_type_name(is->key_types[i]) == NULL
            || is->key_types[i] >= ATLS_KEY_UNKNOWN)
        {
            snprintf(err, errlen, "unknown key type %d", (int) is->key_types[i]);
            return -1;
        }
        for (k = 0; k < i; k++) {
            if (is->key_types[k] == is->key_types[i]) {
                snprintf(err, errlen, "key type %s given twice",
                         atls_key_type_name(is->key_types[i]));
                return -1;
            }
            if (atls_key_type_is_rsa(is->key_types[k])
                == atls_key_type_is_rsa(is->key_types[i]))
            {
                snprintf(err, errlen, "key types %s and %s: at most one EC and one RSA",
                         atls_key_type_name(is->key_types[k]),
                         atls_key_type_name(is->key_types[i]));
                return -1;
            }
        }
    }
    return 0;
}

int
atls_issuer_normalise(atls_issuer_t *is, char *err, size_t errlen)
{
    int has_kid, has_hmac;

    if (is == NULL) {
        snprintf(err, errlen, "no issuer settings");
        return -1;
    }
    if (issuer_contacts(is, err, errlen) != 0 || issuer_key_types(is, err, errlen) != 0) {
        return -1;
    }
    has_kid = is->eab_kid != NULL && is->eab_kid[0] != '\0';
    has_hmac = is->eab_hmac != NULL && is->eab_hmac[0] != '\0';
    if (has_kid != has_hmac) {
        snprintf(err, errlen, "external account binding needs both the key id and "
                 "the HMAC key");
        return -1;
    }
    /* a Must-Staple certificate served without its staple fails in every
     * browser that honours the extension */
    if (is->must_staple && is->stapling_off) {
        snprintf(err, errlen, "must_staple needs stapling (stapling is off)");
        return -1;
    }
    return 0;
}
