/* A canned, strict ACME CA for engine unit tests; see fakeca.h. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include "fakeca.h"
#include "testpki.h"

/* ---- small helpers (independent of the code under test) ----------------- */

static char *
fc_strdup(const char *s)
{
    char *d = s ? strdup(s) : NULL;

    if (s != NULL && d == NULL) {
        abort();
    }
    return d;
}

static void fc_violation(fakeca_t *ca, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
fc_violation(fakeca_t *ca, const char *fmt, ...)
{
    va_list ap;

    ca->violations++;
    if (ca->violations == 1) {
        va_start(ap, fmt);
        vsnprintf(ca->violation, sizeof(ca->violation), fmt, ap);
        va_end(ap);
        fprintf(stderr, "fakeca: violation: %s\n", ca->violation);
    }
}

static const char b64url_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *
fc_b64url(const unsigned char *d, size_t n)
{
    char   *s = malloc(n * 4 / 3 + 4);
    size_t  i, o = 0;

    if (s == NULL) {
        abort();
    }
    for (i = 0; i < n; i += 3) {
        unsigned v = (unsigned) d[i] << 16;

        if (i + 1 < n) v |= (unsigned) d[i + 1] << 8;
        if (i + 2 < n) v |= d[i + 2];
        s[o++] = b64url_alpha[(v >> 18) & 63];
        s[o++] = b64url_alpha[(v >> 12) & 63];
        if (i + 1 < n) s[o++] = b64url_alpha[(v >> 6) & 63];
        if (i + 2 < n) s[o++] = b64url_alpha[v & 63];
    }
    s[o] = '\0';
    return s;
}

/* NULL on a character outside the alphabet or padding. */
static unsigned char *
fc_unb64url(const char *s, size_t *out_len)
{
    size_t         n = strlen(s), i, o = 0;
    unsigned char *d = malloc(n + 1);
    unsigned       acc = 0;
    int            bits = 0;

    if (d == NULL) {
        abort();
    }
    for (i = 0; i < n; i++) {
        const char *p = strchr(b64url_alpha, s[i]);

        if (s[i] == '\0' || p == NULL) {
            free(d);
            return NULL;
        }
        acc = (acc << 6) | (unsigned) (p - b64url_alpha);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            d[o++] = (unsigned char) (acc >> bits);
        }
    }
    d[o] = '\0';
    *out_len = o;
    return d;
}

/* "a.b", the JWS signing input. */
static char *
fc_join(const char *a, const char *b)
{
    size_t  n = strlen(a) + strlen(b) + 2;
    char   *s = malloc(n);

    if (s == NULL) {
        abort();
    }
    snprintf(s, n, "%s.%s", a, b);
    return s;
}

static const char *
fc_jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);

    return json_is_string(v) ? json_string_value(v) : NULL;
}

static const char *
fc_path(const char *url)
{
    size_t n = strlen(FAKECA_BASE);

    return strncmp(url, FAKECA_BASE, n) == 0 ? url + n : url;
}

/* The URL the CA hands out for field: the test's override or the real one. */
static const char *
fc_url(const fakeca_t *ca, const char *field, const char *url)
{
    return ca->url_field != NULL && strcmp(ca->url_field, field) == 0 ? ca->url_value
                                                                        : url;
}

static int
fc_in_list(const char *const *list, const char *name)
{
    size_t i;

    for (i = 0; i < FAKECA_MAX_NAMES && list[i] != NULL; i++) {
        if (strcmp(list[i], name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- responses ----------------------------------------------------------- */

void
fakeca_response_clear(atls_http_response_t *r)
{
    size_t i;

    free(r->body);
    free(r->content_type);
    free(r->location);
    free(r->replay_nonce);
    free(r->retry_after);
    for (i = 0; i < r->n_link_alternate; i++) {
        free(r->link_alternate[i]);
    }
    free(r->link_alternate);
    free(r->link_up);
    memset(r, 0, sizeof(*r));
}

static void
fc_new_nonce(fakeca_t *ca, atls_http_response_t *r)
{
    unsigned char raw[12];
    char         *n;

    if (ca->n_nonces >= sizeof(ca->nonces) / sizeof(ca->nonces[0])) {
        fc_violation(ca, "too many requests (nonce table full)");
        return;
    }
    RAND_bytes(raw, sizeof(raw));
    n = fc_b64url(raw, sizeof(raw));
    ca->nonces[ca->n_nonces++] = n;
    r->replay_nonce = fc_strdup(n);
}

static void
fc_reply(atls_http_response_t *r, long status, const char *ctype, const char *body)
{
    r->status = status;
    r->content_type = fc_strdup(ctype);
    r->body = fc_strdup(body);
    r->body_len = body ? strlen(body) : 0;
}

static void
fc_reply_json(atls_http_response_t *r, long status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);

    fc_reply(r, status, "application/json", s);
    free(s);
    json_decref(j);
}

static void
fc_problem(atls_http_response_t *r, long status, const char *type, const char *detail)
{
    json_t *j = json_object();
    char    t[160];

    snprintf(t, sizeof(t), "urn:ietf:params:acme:error:%s", type);
    json_object_set_new(j, "type", json_string(t));
    json_object_set_new(j, "detail", json_string(detail ? detail : ""));
    json_object_set_new(j, "status", json_integer(status));
    fc_reply_json(r, status, j);
    free(r->content_type);
    r->content_type = fc_strdup("application/problem+json");
}

/* ---- PKI ----------------------------------------------------------------- */

fakeca_t *
fakeca_new(EVP_PKEY *account_key)
{
    fakeca_t *ca = calloc(1, sizeof(*ca));
    char      cn[64];
    int       k;

    if (ca == NULL) {
        return NULL;
    }
    ca->account_key = account_key;
    ca->challenges = "http-01,dns-01,tls-alpn-01";
    ca->root_key = testpki_key(0);
    ca->inter_key = testpki_key(0);
    ca->root = testpki_cert(ca->root_key, TESTPKI_ROOT_CN, NULL, 0, NULL, NULL, 1,
                            -3600, 86400 * 30);
    ca->inter = testpki_cert(ca->inter_key, TESTPKI_INTER_CN, NULL, 0, ca->root,
                             ca->root_key, 1, -3600, 86400 * 30);
    for (k = 0; k < 4; k++) {
        snprintf(cn, sizeof(cn), FAKECA_ALT_ROOT_CN, k);
        ca->alt_root_key[k] = testpki_key(0);
        ca->alt_root[k] = testpki_cert(ca->alt_root_key[k], cn, NULL, 0, NULL, NULL, 1,
                                       -3600, 86400 * 30);
        ca->alt_inter[k] = testpki_cert(ca->inter_key, TESTPKI_INTER_CN, NULL, 0,
                                        ca->alt_root[k], ca->alt_root_key[k], 1,
                                        -3600, 86400 * 30);
        if (ca->alt_inter[k] == NULL) {
            fakeca_free(ca);
            return NULL;
        }
    }
    if (ca->inter == NULL) {
        fakeca_free(ca);
        return NULL;
    }
    return ca;
}

void
fakeca_free(fakeca_t *ca)
{
    size_t i;
    int    k;

    if (ca == NULL) {
        return;
    }
    EVP_PKEY_free(ca->root_key);
    EVP_PKEY_free(ca->inter_key);
    X509_free(ca->root);
    X509_free(ca->inter);
    for (k = 0; k < 4; k++) {
        EVP_PKEY_free(ca->alt_root_key[k]);
        X509_free(ca->alt_root[k]);
        X509_free(ca->alt_inter[k]);
    }
    for (i = 0; i < ca->n_nonces; i++) {
        free(ca->nonces[i]);
    }
    for (i = 0; i < ca->n_names; i++) {
        free(ca->names[i]);
        free(ca->name_types[i]);
        free(ca->tokens[i]);
    }
    for (i = 0; i < ca->n_csr_names; i++) {
        free(ca->csr_names[i]);
    }
    X509_free(ca->leaf);
    json_decref(ca->account_payload);
    json_decref(ca->order_payload);
    json_decref(ca->revoke_payload);
    free(ca->ari_path);
    free(ca->csr_cn);
    for (i = 0; i < ca->n_log; i++) {
        free(ca->log[i].method);
        free(ca->log[i].path);
        free(ca->log[i].payload);
    }
    free(ca);
}

/* ---- JWS verification ---------------------------------------------------- */

static int
fc_verify_sig(fakeca_t *ca, const char *alg, const char *signing_input,
              const unsigned char *sig, size_t sig_len)
{
    const EVP_MD  *md = EVP_sha256();
    unsigned char *der = NULL;
    int            der_len = 0, ok = 0;
    EVP_MD_CTX    *ctx;
    size_t         half = 0;

    if (strcmp(alg, "ES256") == 0) {
        half = 32;
    } else if (strcmp(alg, "ES384") == 0) {
        half = 48;
        md = EVP_sha384();
    } else if (strcmp(alg, "RS256") != 0) {
        return 0;
    }
    if (half != 0) {
        ECDSA_SIG *es;

        if (sig_len != 2 * half) {
            return 0;
        }
        es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(sig, (int) half, NULL),
                       BN_bin2bn(sig + half, (int) half, NULL));
        der_len = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        if (der_len <= 0) {
            return 0;
        }
        sig = der;
        sig_len = (size_t) der_len;
    }
    ctx = EVP_MD_CTX_new();
    if (EVP_DigestVerifyInit(ctx, NULL, md, NULL, ca->account_key) == 1
        && EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *) signing_input,
                            strlen(signing_input)) == 1)
    {
        ok = 1;
    }
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    return ok;
}

/* The embedded jwk must be the account key's public key. */
static int
fc_jwk_matches(fakeca_t *ca, json_t *jwk)
{
    unsigned char  pub[200], *x, *y;
    size_t         plen = 0, xl = 0, yl = 0;
    int            ok;

    if (EVP_PKEY_get_octet_string_param(ca->account_key, OSSL_PKEY_PARAM_PUB_KEY,
                                        pub, sizeof(pub), &plen) != 1)
    {
        return json_is_string(json_object_get(jwk, "n"));   /* RSA: key type only */
    }
    if (fc_jstr(jwk, "x") == NULL || fc_jstr(jwk, "y") == NULL) {
        return 0;
    }
    x = fc_unb64url(fc_jstr(jwk, "x"), &xl);
    y = fc_unb64url(fc_jstr(jwk, "y"), &yl);
    ok = x && y && plen == 1 + xl + yl && pub[0] == 0x04
         && memcmp(pub + 1, x, xl) == 0 && memcmp(pub + 1 + xl, y, yl) == 0
         && strcmp(fc_jstr(jwk, "kty") ? fc_jstr(jwk, "kty") : "", "EC") == 0;
    free(x);
    free(y);
    return ok;
}

/* 0 ok, -1 a violation (recorded), -2 bad nonce (answer badNonce). */
static int
fc_verify_jws(fakeca_t *ca, const atls_http_request_t *req, int want_jwk,
              char **payload_out, int *used_jwk)
{
    json_t        *jws, *prot = NULL;
    const char    *p64, *pl64, *s64, *nonce, *url, *alg, *kid;
    unsigned char *pbytes = NULL, *sig = NULL, *plbytes = NULL;
    size_t         plen, slen, pllen, i;
    char          *input = NULL;
    int            rc = -1, found = 0;

    *payload_out = NULL;
    jws = json_loadb(req->body ? req->body : "", req->body_len, 0, NULL);
    p64 = fc_jstr(jws, "protected");
    pl64 = fc_jstr(jws, "payload");
    s64 = fc_jstr(jws, "signature");
    if (req->content_type == NULL || strcmp(req->content_type, "application/jose+json") != 0) {
        fc_violation(ca, "POST %s without Content-Type application/jose+json", req->url);
        goto done;
    }
    if (p64 == NULL || pl64 == NULL || s64 == NULL) {
        fc_violation(ca, "POST %s is not a flattened JWS", req->url);
        goto done;
    }
    pbytes = fc_unb64url(p64, &plen);
    sig = fc_unb64url(s64, &slen);
    plbytes = fc_unb64url(pl64, &pllen);
    prot = pbytes ? json_loadb((char *) pbytes, plen, 0, NULL) : NULL;
    if (prot == NULL || sig == NULL || plbytes == NULL) {
        fc_violation(ca, "POST %s: undecodable JWS parts", req->url);
        goto done;
    }
    alg = fc_jstr(prot, "alg");
    url = fc_jstr(prot, "url");
    nonce = fc_jstr(prot, "nonce");
    kid = fc_jstr(prot, "kid");
    if (alg == NULL || url == NULL || strcmp(url, req->url) != 0) {
        fc_violation(ca, "POST %s: protected url %s", req->url, url ? url : "(none)");
        goto done;
    }
    input = fc_join(p64, pl64);
    if (!fc_verify_sig(ca, alg, input, sig, slen)) {
        fc_violation(ca, "POST %s: bad %s signature", req->url, alg);
        goto done;
    }
    if (want_jwk) {
        if (kid != NULL || !json_is_object(json_object_get(prot, "jwk"))
            || !fc_jwk_matches(ca, json_object_get(prot, "jwk")))
        {
            fc_violation(ca, "POST %s must carry the account jwk and no kid", req->url);
            goto done;
        }
    } else if (json_object_get(prot, "jwk") != NULL || kid == NULL
               || strcmp(kid, FAKECA_ACCT_URL) != 0)
    {
        fc_violation(ca, "POST %s must carry kid %s and no jwk (kid=%s)", req->url,
                     FAKECA_ACCT_URL, kid ? kid : "(none)");
        goto done;
    }
    *used_jwk = want_jwk;
    *payload_out = fc_strdup((char *) plbytes);
    rc = -2;
    for (i = 0; nonce != NULL && i < ca->n_nonces; i++) {
        if (strcmp(ca->nonces[i], nonce) == 0) {
            found = 1;
            if (!ca->nonce_used[i]) {
                ca->nonce_used[i] = 1;
                rc = 0;
            }
        }
    }
    if (rc == -2) {
        fc_violation(ca, "POST %s: nonce %s %s", req->url, nonce ? nonce : "(none)",
                     found ? "reused" : "never issued");
    }

done:
    json_decref(jws);
    json_decref(prot);
    free(pbytes);
    free(sig);
    free(plbytes);
    free(input);
    return rc;
}

/* ---- resources ----------------------------------------------------------- */

static json_t *
fc_directory(fakeca_t *ca)
{
    json_t *d = json_object(), *meta = json_object();

    json_object_set_new(d, "newNonce", json_string(fc_url(ca, "newNonce", FAKECA_BASE "/nonce")));
    json_object_set_new(d, "newAccount", json_string(fc_url(ca, "newAccount", FAKECA_BASE "/new-acct")));
    json_object_set_new(d, "newOrder", json_string(fc_url(ca, "newOrder", FAKECA_BASE "/new-order")));
    json_object_set_new(d, "revokeCert", json_string(fc_url(ca, "revokeCert", FAKECA_BASE "/revoke")));
    json_object_set_new(d, "keyChange", json_string(FAKECA_BASE "/key-change"));
    if (ca->renewal_info) {
        json_object_set_new(d, "renewalInfo",
                            json_string(fc_url(ca, "renewalInfo", FAKECA_BASE "/ari")));
    }
    if (ca->tos_url != NULL) {
        json_object_set_new(meta, "termsOfService", json_string(ca->tos_url));
    }
    if (ca->eab_required) {
        json_object_set_new(meta, "externalAccountRequired", json_true());
    }
    if (ca->profiles_json != NULL) {
        json_object_set_new(meta, "profiles", json_loads(ca->profiles_json, 0, NULL));
    }
    json_object_set_new(d, "meta", meta);
    return d;
}

static void
fc_check_eab(fakeca_t *ca, json_t *payload, json_t *outer_jwk_holder)
{
    json_t        *eab = json_object_get(payload, "externalAccountBinding"), *prot;
    const char    *p64 = fc_jstr(eab, "protected"), *pl64 = fc_jstr(eab, "payload");
    const char    *s64 = fc_jstr(eab, "signature");
    unsigned char  mac[EVP_MAX_MD_SIZE], *pb, *sig, *jwkb;
    unsigned int   maclen = 0;
    size_t         pl, sl, jl;
    char          *input;
    json_t        *jwk;

    if (p64 == NULL || pl64 == NULL || s64 == NULL) {
        return;
    }
    pb = fc_unb64url(p64, &pl);
    sig = fc_unb64url(s64, &sl);
    jwkb = fc_unb64url(pl64, &jl);
    prot = pb ? json_loadb((char *) pb, pl, 0, NULL) : NULL;
    jwk = jwkb ? json_loadb((char *) jwkb, jl, 0, NULL) : NULL;
    input = fc_join(p64, pl64);
    HMAC(EVP_sha256(), ca->eab_key, (int) ca->eab_key_len, (unsigned char *) input,
         strlen(input), mac, &maclen);
    if (prot != NULL && jwk != NULL && sig != NULL && sl == maclen
        && CRYPTO_memcmp(sig, mac, maclen) == 0
        && strcmp(fc_jstr(prot, "alg") ? fc_jstr(prot, "alg") : "", "HS256") == 0
        && strcmp(fc_jstr(prot, "kid") ? fc_jstr(prot, "kid") : "", ca->eab_kid) == 0
        && strcmp(fc_jstr(prot, "url") ? fc_jstr(prot, "url") : "",
                  FAKECA_BASE "/new-acct") == 0
        && json_object_get(prot, "nonce") == NULL
        && fc_jwk_matches(ca, jwk))
    {
        ca->eab_verified = 1;
    }
    (void) outer_jwk_holder;
    json_decref(prot);
    json_decref(jwk);
    free(pb);
    free(sig);
    free(jwkb);
    free(input);
}

static void
fc_new_account(fakeca_t *ca, json_t *payload, atls_http_response_t *r)
{
    json_t *acct;

    if (json_is_true(json_object_get(payload, "onlyReturnExisting"))) {
        if (!ca->account_exists) {
            fc_problem(r, 400, "accountDoesNotExist", "No account exists with the provided key");
            return;
        }
        acct = json_pack("{s:s}", "status", "valid");
        fc_reply_json(r, 200, acct);
        r->location = fc_strdup(fc_url(ca, "account", FAKECA_ACCT_URL));
        return;
    }
    json_decref(ca->account_payload);
    ca->account_payload = json_incref(payload);
    if (ca->eab_required && json_object_get(payload, "externalAccountBinding") == NULL) {
        fc_problem(r, 400, "externalAccountRequired", "External Account Binding is required");
        return;
    }
    if (ca->eab_key != NULL) {
        fc_check_eab(ca, payload, NULL);
    }
    if (ca->tos_url && !json_is_true(json_object_get(payload, "termsOfServiceAgreed"))) {
        fc_problem(r, 403, "userActionRequired", "Terms of service not agreed");
        return;
    }
    ca->account_exists = 1;
    acct = json_pack("{s:s}", "status", "valid");
    fc_reply_json(r, 201, acct);
    r->location = fc_strdup(fc_url(ca, "account", FAKECA_ACCT_URL));
}

static json_t *
fc_order_json(fakeca_t *ca, const char *status)
{
    json_t *o = json_object(), *ids = json_array(), *az = json_array();
    char    u[128];
    size_t  i;

    for (i = 0; i < ca->n_names; i++) {
        json_array_append_new(ids, json_pack("{s:s,s:s}", "type", ca->name_types[i],
                                             "value", i == 0 && ca->order_ident
                                                      ? ca->order_ident : ca->names[i]));
        snprintf(u, sizeof(u), FAKECA_BASE "/authz/%zu", i);
        json_array_append_new(az, json_string(i == 0 ? fc_url(ca, "authorization", u) : u));
    }
    json_object_set_new(o, "status", json_string(status));
    json_object_set_new(o, "expires", json_string("2030-01-01T00:00:00Z"));
    json_object_set_new(o, "identifiers", ids);
    json_object_set_new(o, "authorizations", az);
    json_object_set_new(o, "finalize",
                        json_string(fc_url(ca, "finalize", FAKECA_BASE "/finalize/1")));
    if (strcmp(status, "valid") == 0) {
        json_object_set_new(o, "certificate",
                            json_string(fc_url(ca, "certificate", FAKECA_BASE "/cert/1")));
    }
    return o;
}

static const char *
fc_order_status(fakeca_t *ca)
{
    size_t i;
    int    all_valid = 1;

    if (ca->finalized) {
        return ca->processing_left > 0 ? "processing" : "valid";
    }
    for (i = 0; i < ca->n_names; i++) {
        if (strcmp(ca->authz_status[i], "invalid") == 0) {
            return "invalid";
        }
        if (strcmp(ca->authz_status[i], "valid") != 0) {
            all_valid = 0;
        }
    }
    return all_valid ? "ready" : "pending";
}

static void
fc_new_order(fakeca_t *ca, json_t *payload, atls_http_response_t *r)
{
    json_t       *ids = json_object_get(payload, "identifiers"), *id;
    const char   *profile = fc_jstr(payload, "profile");
    unsigned char raw[24];
    size_t        i;

    json_decref(ca->order_payload);
    ca->order_payload = json_incref(payload);
    if (profile != NULL) {
        json_t *pr = ca->profiles_json ? json_loads(ca->profiles_json, 0, NULL) : NULL;

        if (json_object_get(pr, profile) == NULL) {
            fc_violation(ca, "newOrder asks for unadvertised profile %s", profile);
        }
        json_decref(pr);
    }
    if (!json_is_array(ids) || json_array_size(ids) == 0
        || json_array_size(ids) > FAKECA_MAX_NAMES || ca->order_created)
    {
        fc_problem(r, 400, "malformed", "bad identifiers");
        return;
    }
    json_array_foreach(ids, i, id) {
        const char *v = fc_jstr(id, "value"), *t = fc_jstr(id, "type");

        ca->names[i] = fc_strdup(v ? v : "");
        ca->name_types[i] = fc_strdup(t ? t : "");
        snprintf(ca->authz_status[i], sizeof(ca->authz_status[i]), "%s",
                 fc_in_list(ca->prevalid, ca->names[i]) ? "valid" : "pending");
        ca->authz_polls_left[i] = ca->authz_pending_polls;
        RAND_bytes(raw, sizeof(raw));
        ca->tokens[i] = fc_b64url(raw, sizeof(raw));
    }
    ca->n_names = json_array_size(ids);
    ca->order_created = 1;
    fc_reply_json(r, 201, fc_order_json(ca, fc_order_status(ca)));
    r->location = fc_strdup(fc_url(ca, "order", FAKECA_ORDER_URL));
}

static json_t *
fc_authz_json(fakeca_t *ca, size_t i, int *responded_out)
{
    json_t     *a = json_object(), *chals = json_array(), *c;
    const char *name = ca->names[i];
    int         wildcard = strncmp(name, "*.", 2) == 0;
    char        types[128], *t, *save = NULL, u[160];

    snprintf(types, sizeof(types), "%s", ca->challenges);
    for (t = strtok_r(types, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        const char *st = strcmp(ca->authz_status[i], "valid") == 0 ? "valid"
                         : strcmp(ca->authz_status[i], "invalid") == 0 ? "invalid"
                         : "pending";

        snprintf(u, sizeof(u), FAKECA_BASE "/chal/%zu/%s", i, t);
        c = json_pack("{s:s,s:s,s:s,s:s}", "type", t, "url", fc_url(ca, "challenge", u),
                      "token",
                      ca->token_override ? ca->token_override : ca->tokens[i],
                      "status", st);
        if (strcmp(st, "invalid") == 0) {
            char type[96];

            snprintf(type, sizeof(type), "urn:ietf:params:acme:error:%s",
                     ca->invalid_type != NULL ? ca->invalid_type : "connection");
            json_object_set_new(c, "error", json_pack(
                "{s:s,s:s,s:i}", "type", type,
                "detail", "127.0.0.1: Fetching http://example/.well-known/acme-challenge/x: "
                          "Connection refused", "status", 400));
        }
        json_array_append_new(chals, c);
    }
    json_object_set_new(a, "status", json_string(ca->authz_status[i]));
    json_object_set_new(a, "identifier", json_pack("{s:s,s:s}", "type", ca->name_types[i],
                                                   "value", i == 0 && ca->authz_ident
                                                            ? ca->authz_ident
                                                            : wildcard ? name + 2 : name));
    json_object_set_new(a, "challenges", chals);
    if (i == 0 && ca->authz_wildcard_flip) {
        wildcard = !wildcard;
    }
    if (wildcard) {
        json_object_set_new(a, "wildcard", json_true());
    }
    (void) responded_out;
    return a;
}

static void
fc_authz(fakeca_t *ca, size_t i, atls_http_response_t *r)
{
    if (strcmp(ca->authz_status[i], "processing") == 0) {
        if (ca->authz_polls_left[i] > 0) {
            ca->authz_polls_left[i]--;
            /* "processing" is the challenge's; the authorization stays pending. */
            snprintf(ca->authz_status[i], sizeof(ca->authz_status[i]), "pending");
            fc_reply_json(r, 200, fc_authz_json(ca, i, NULL));
            snprintf(ca->authz_status[i], sizeof(ca->authz_status[i]), "processing");
            if (ca->authz_retry_after) {
                r->retry_after = fc_strdup(ca->authz_retry_after);
            }
            return;
        }
        snprintf(ca->authz_status[i], sizeof(ca->authz_status[i]), "%s",
                 fc_in_list(ca->invalid, ca->names[i]) ? "invalid" : "valid");
    }
    fc_reply_json(r, 200, fc_authz_json(ca, i, NULL));
}

static void
fc_challenge(fakeca_t *ca, size_t i, const char *type, const char *payload,
             atls_http_response_t *r)
{
    char u[160];

    if (strcmp(payload, "{}") != 0) {
        fc_violation(ca, "challenge response payload is %s, not {}", payload);
    }
    if (strcmp(ca->authz_status[i], "pending") != 0) {
        fc_violation(ca, "challenge for %s answered while %s", ca->names[i],
                     ca->authz_status[i]);
        fc_problem(r, 400, "malformed", "authorization is not pending");
        return;
    }
    snprintf(ca->authz_status[i], sizeof(ca->authz_status[i]), "processing");
    snprintf(u, sizeof(u), FAKECA_BASE "/chal/%zu/%s", i, type);
    fc_reply_json(r, 200, json_pack("{s:s,s:s,s:s,s:s}", "type", type, "url", u,
                                    "token", ca->tokens[i], "status", "processing"));
}

/* The leaf for the CSR's key and names, spoiled as ca->cert_fault says;
 * dated around the driver's clock, not the wall clock. */
static X509 *
fc_issue(fakeca_t *ca, EVP_PKEY *csr_key)
{
    const char *names[FAKECA_MAX_NAMES + 1];
    size_t      n = ca->n_csr_names;
    long        off = ca->clock != 0 ? (long) (ca->clock - time(NULL)) : 0;
    long        nb = off - 3600, na = off + 86400 * 7;
    EVP_PKEY   *key = csr_key, *signer = ca->inter_key, *other = NULL;
    X509       *leaf;

    memcpy(names, ca->csr_names, n * sizeof(names[0]));
    switch (ca->cert_fault) {
    case FAKECA_CERT_EXTRA_NAME:
        names[n++] = "evil.example.net";
        break;
    case FAKECA_CERT_MISSING_NAME:
        n--;
        if (n == 0) {
            names[n++] = "other.example.net";
        }
        break;
    case FAKECA_CERT_EXPIRED:
        nb = off - 86400 * 30;
        na = off - 3600;
        break;
    case FAKECA_CERT_NOT_YET_VALID:
        nb = off + 86400;
        break;
    case FAKECA_CERT_FOREIGN_KEY:
        key = other = testpki_key(0);
        break;
    case FAKECA_CERT_BROKEN_CHAIN:
        signer = other = testpki_key(0);
        break;
    }
    leaf = testpki_cert(key, NULL, names, n, ca->inter, signer, 0, nb, na);
    if (leaf != NULL && ca->ocsp_url != NULL) {
        char aia[300];

        snprintf(aia, sizeof(aia), "OCSP;URI:%s", ca->ocsp_url);
        if (testpki_ext(leaf, ca->inter, NID_info_access, aia) != 0
            || X509_sign(leaf, signer, EVP_sha256()) <= 0)
        {
            X509_free(leaf);
            leaf = NULL;
        }
    }
    EVP_PKEY_free(other);
    return leaf;
}

static void
fc_finalize(fakeca_t *ca, const char *payload, atls_http_response_t *r)
{
    json_t              *p = json_loads(payload, 0, NULL);
    const char          *csr64 = fc_jstr(p, "csr");
    unsigned char       *der = NULL;
    const unsigned char *q;
    size_t               len = 0, i, j;
    X509_REQ            *csr = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    GENERAL_NAMES       *gens = NULL;
    char                 buf[64];

    if (strcmp(fc_order_status(ca), "ready") != 0) {
        fc_problem(r, 403, "orderNotReady", "Order is not ready");
        goto done;
    }
    der = csr64 ? fc_unb64url(csr64, &len) : NULL;
    q = der;
    csr = der ? d2i_X509_REQ(NULL, &q, (long) len) : NULL;
    if (csr == NULL || X509_REQ_verify(csr, X509_REQ_get0_pubkey(csr)) != 1) {
        fc_violation(ca, "finalize: CSR missing or not self-signed");
        fc_problem(r, 400, "badCSR", "bad CSR");
        goto done;
    }
    free(ca->csr_cn);
    ca->csr_cn = NULL;
    if (X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(csr), NID_commonName,
                                  buf, sizeof(buf)) > 0)
    {
        ca->csr_cn = fc_strdup(buf);
    }
    exts = X509_REQ_get_extensions(csr);
    ca->csr_must_staple = exts != NULL
                          && X509v3_get_ext_by_NID(exts, NID_tlsfeature, -1) >= 0;
    gens = exts ? X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL) : NULL;
    for (i = 0; gens != NULL && i < (size_t) sk_GENERAL_NAME_num(gens)
                && ca->n_csr_names < FAKECA_MAX_NAMES; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, (int) i);

        if (g->type == GEN_DNS) {
            snprintf(buf, sizeof(buf), "%.*s", ASN1_STRING_length(g->d.dNSName),
                     (const char *) ASN1_STRING_get0_data(g->d.dNSName));
        } else if (g->type == GEN_IPADD) {
            int fam = ASN1_STRING_length(g->d.iPAddress) == 4 ? AF_INET : AF_INET6;

            inet_ntop(fam, ASN1_STRING_get0_data(g->d.iPAddress), buf, sizeof(buf));
        } else {
            continue;
        }
        ca->csr_names[ca->n_csr_names++] = fc_strdup(buf);
    }
    for (i = 0; i < ca->n_names; i++) {
        int found = 0;

        for (j = 0; j < ca->n_csr_names; j++) {
            found |= strcmp(ca->csr_names[j], ca->names[i]) == 0;
        }
        if (!found || ca->n_csr_names != ca->n_names) {
            fc_violation(ca, "finalize: CSR SANs do not match the order");
            fc_problem(r, 400, "badCSR", "CSR does not match the order");
            goto done;
        }
    }
    X509_free(ca->leaf);
    ca->leaf = fc_issue(ca, X509_REQ_get0_pubkey(csr));
    ca->finalized = 1;
    ca->processing_left = ca->order_processing_polls;
    fc_reply_json(r, 200, fc_order_json(ca, fc_order_status(ca)));
    if (ca->processing_left > 0 && ca->order_retry_after) {
        r->retry_after = fc_strdup(ca->order_retry_after);
    }

done:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    X509_REQ_free(csr);
    free(der);
    json_decref(p);
}

static void
fc_order(fakeca_t *ca, atls_http_response_t *r)
{
    const char *st = fc_order_status(ca);

    fc_reply_json(r, 200, fc_order_json(ca, st));
    if (strcmp(st, "processing") == 0) {
        ca->processing_left--;
        if (ca->order_retry_after) {
            r->retry_after = fc_strdup(ca->order_retry_after);
        }
    }
}

static void
fc_cert(fakeca_t *ca, int alt, atls_http_response_t *r)
{
    X509 *certs[2];
    char *pem, u[128];
    int   k;

    if (ca->leaf == NULL || ca->processing_left > 0) {
        fc_violation(ca, "certificate fetched before issuance");
        fc_problem(r, 404, "malformed", "no certificate");
        return;
    }
    certs[0] = ca->leaf;
    certs[1] = alt < 0 ? ca->inter : ca->alt_inter[alt];
    pem = testpki_pem(certs, 2);
    fc_reply(r, 200, "application/pem-certificate-chain", pem);
    free(pem);
    if (alt < 0 && ca->n_alternates > 0) {
        r->link_alternate = calloc((size_t) ca->n_alternates, sizeof(char *));
        if (r->link_alternate == NULL) {
            abort();
        }
        for (k = 0; k < ca->n_alternates && k < 4; k++) {
            snprintf(u, sizeof(u), FAKECA_BASE "/cert/1/alt/%d", k);
            r->link_alternate[r->n_link_alternate++] = fc_strdup(fc_url(ca, "alternate", u));
        }
    }
}

/* RFC 8555 §7.4.2: the client asks for the PEM chain by media type. */
static void
fc_check_accept(fakeca_t *ca, const atls_http_request_t *req)
{
    if (req->accept == NULL
        || strcmp(req->accept, "application/pem-certificate-chain") != 0)
    {
        fc_violation(ca, "certificate fetch %s with Accept %s", req->url,
                     req->accept ? req->accept : "(none)");
        return;
    }
    ca->n_cert_accept++;
}

/* ---- dispatch ------------------------------------------------------------ */

static int
fc_fault(fakeca_t *ca, const char *method, const char *path, atls_http_response_t *r)
{
    size_t i;

    for (i = 0; i < sizeof(ca->faults) / sizeof(ca->faults[0]); i++) {
        fakeca_fault_t *f = &ca->faults[i];

        if (f->path == NULL || f->count == 0
            || (f->method && strcmp(f->method, method) != 0)
            || strncmp(path, f->path, strlen(f->path)) != 0)
        {
            continue;
        }
        if (f->skip > 0) {
            f->skip--;
            continue;
        }
        if (f->count > 0) {
            f->count--;
        }
        if (f->status == 0) {
            r->transport_error = 1;
            snprintf(r->error, sizeof(r->error), "Failed to connect to ca.test: Connection refused");
            return 1;
        }
        if (f->type) {
            fc_problem(r, f->status, f->type, f->detail);
        } else {
            fc_reply(r, f->status, "text/html", f->detail ? f->detail : "<html>oops</html>");
        }
        r->retry_after = fc_strdup(f->retry_after);
        return 1;
    }
    return 0;
}

static void
fc_log(fakeca_t *ca, const char *method, const char *path, const char *payload, int jwk)
{
    fakeca_req_t *l;

    if (ca->n_log >= FAKECA_MAX_LOG) {
        return;
    }
    l = &ca->log[ca->n_log++];
    l->method = fc_strdup(method);
    l->path = fc_strdup(path);
    l->payload = fc_strdup(payload);
    l->jwk = jwk;
}

void
fakeca_handle(fakeca_t *ca, const atls_http_request_t *req, atls_http_response_t *r)
{
    const char *path = fc_path(req->url);
    char       *payload = NULL;
    json_t     *pj = NULL;
    int         jwk = 0, rc, alt;
    size_t      idx;
    char        type[32];

    memset(r, 0, sizeof(*r));
    if (strcmp(req->method, "POST") != 0) {
        fc_log(ca, req->method, path, NULL, 0);
        if (fc_fault(ca, req->method, path, r)) {
            return;
        }
        if (strcmp(path, "/dir") == 0 && strcmp(req->method, "GET") == 0) {
            fc_reply_json(r, 200, fc_directory(ca));
        } else if (strcmp(path, "/nonce") == 0) {
            r->status = strcmp(req->method, "HEAD") == 0 ? 200 : 204;
            fc_new_nonce(ca, r);
        } else if (strncmp(path, "/ari/", 5) == 0 && ca->renewal_info) {
            free(ca->ari_path);
            ca->ari_path = fc_strdup(path);
            fc_reply(r, ca->ari_status ? ca->ari_status : 200, "application/json",
                     ca->ari_body);
            r->retry_after = fc_strdup(ca->ari_retry_after ? ca->ari_retry_after
                                                           : "21600");
        } else {
            fc_violation(ca, "unexpected %s %s", req->method, req->url);
            fc_problem(r, 404, "malformed", "not found");
        }
        return;
    }

    rc = fc_verify_jws(ca, req, strcmp(path, "/new-acct") == 0, &payload, &jwk);
    fc_log(ca, "POST", path, payload, jwk);
    if (rc != 0 || fc_fault(ca, "POST", path, r)) {
        if (rc == -2) {
            fc_problem(r, 400, "badNonce", "JWS has an invalid anti-replay nonce");
        } else if (rc == -1) {
            fc_problem(r, 400, "malformed", "request rejected by fakeca");
        }
        fc_new_nonce(ca, r);
        free(payload);
        return;
    }
    pj = payload[0] ? json_loads(payload, 0, NULL) : NULL;
    if (payload[0] && pj == NULL) {
        fc_violation(ca, "POST %s: payload is not JSON", req->url);
    }

    if (strcmp(path, "/new-acct") == 0) {
        fc_new_account(ca, pj, r);
    } else if (strcmp(path, "/new-order") == 0) {
        fc_new_order(ca, pj, r);
    } else if (sscanf(path, "/authz/%zu", &idx) == 1 && idx < ca->n_names) {
        if (payload[0]) fc_violation(ca, "authz fetch is not POST-as-GET");
        fc_authz(ca, idx, r);
    } else if (sscanf(path, "/chal/%zu/%31s", &idx, type) == 2 && idx < ca->n_names) {
        fc_challenge(ca, idx, type, payload, r);
    } else if (strcmp(path, "/order/1") == 0) {
        if (payload[0]) fc_violation(ca, "order fetch is not POST-as-GET");
        fc_order(ca, r);
    } else if (strcmp(path, "/finalize/1") == 0) {
        fc_finalize(ca, payload, r);
    } else if (strcmp(path, "/cert/1") == 0) {
        if (payload[0]) fc_violation(ca, "certificate fetch is not POST-as-GET");
        fc_check_accept(ca, req);
        fc_cert(ca, -1, r);
    } else if (sscanf(path, "/cert/1/alt/%d", &alt) == 1 && alt >= 0 && alt < 4) {
        fc_check_accept(ca, req);
        fc_cert(ca, alt, r);
    } else if (strcmp(path, "/revoke") == 0) {
        json_decref(ca->revoke_payload);
        ca->revoke_payload = json_incref(pj);
        r->status = 200;
    } else {
        fc_violation(ca, "unexpected POST %s", req->url);
        fc_problem(r, 404, "malformed", "not found");
    }
    fc_new_nonce(ca, r);
    json_decref(pj);
    free(payload);
}

size_t
fakeca_count(const fakeca_t *ca, const char *method, const char *path)
{
    size_t i, n = 0;

    for (i = 0; i < ca->n_log; i++) {
        if (strcmp(ca->log[i].method, method) == 0
            && strncmp(ca->log[i].path, path, strlen(path)) == 0)
        {
            n++;
        }
    }
    return n;
}

const fakeca_req_t *
fakeca_find(const fakeca_t *ca, const char *method, const char *path, size_t nth)
{
    size_t i;

    for (i = 0; i < ca->n_log; i++) {
        if (strcmp(ca->log[i].method, method) == 0
            && strncmp(ca->log[i].path, path, strlen(path)) == 0 && nth-- == 0)
        {
            return &ca->log[i];
        }
    }
    return NULL;
}

/* ---- driver -------------------------------------------------------------- */

atls_action_kind_t
fakeca_run(fakeca_t *ca, atls_acme_t *e, fakeca_run_t *run)
{
    atls_http_response_t resp;
    atls_action_t        act;
    int                  have = 0;
    size_t               i;

    memset(&resp, 0, sizeof(resp));
    if (run->now == 0) {
        run->now = 1700000000;
    }
    for (run->steps = 1; run->steps < 2000; run->steps++) {
        atls_acme_step(e, have ? &resp : NULL, run->now, &act);
        if (have) {
            fakeca_response_clear(&resp);
            have = 0;
        }
        switch (act.kind) {
        case ATLS_ACT_SEND:
            if (strncmp(fc_path(act.request->url), "/chal/", 6) == 0
                && run->first_respond_step == 0)
            {
                run->first_respond_step = run->steps;
            }
            ca->clock = run->now;
            fakeca_handle(ca, act.request, &resp);
            have = 1;
            break;
        case ATLS_ACT_WAIT:
            if (run->n_wait < sizeof(run->wait_delta) / sizeof(run->wait_delta[0])) {
                run->wait_ms[run->n_wait] = act.delay_ms;
                run->wait_delta[run->n_wait++] = act.until - run->now;
            }
            if (act.until > run->now) {
                run->now = act.until;
            }
            break;
        case ATLS_ACT_SETUP:
            i = run->n_setup;
            if (i < FAKECA_MAX_NAMES) {
                run->setup_ident[i] = fc_strdup(act.challenge->identifier);
                run->setup_token[i] = fc_strdup(act.challenge->token);
                run->setup_key_authz[i] = fc_strdup(act.challenge->key_authz);
                run->setup_dns_name[i] = fc_strdup(act.challenge->dns_name);
                run->setup_dns_value[i] = fc_strdup(act.challenge->dns_value);
                run->setup_type[i] = act.challenge->type;
                run->n_setup++;
            }
            run->last_setup_step = run->steps;
            if (run->fail_setup_for != NULL
                && strcmp(run->fail_setup_for, act.challenge->identifier) == 0)
            {
                atls_acme_challenge_result(e, 0, "the hook said no");
            } else {
                atls_acme_challenge_result(e, 1, NULL);
            }
            break;
        case ATLS_ACT_TEARDOWN:
            if (run->n_teardown < FAKECA_MAX_NAMES) {
                run->teardown_ident[run->n_teardown++] = fc_strdup(act.challenge->identifier);
            }
            break;
        case ATLS_ACT_DONE:
        case ATLS_ACT_FAILED:
            run->final = act.kind;
            return act.kind;
        }
    }
    fakeca_response_clear(&resp);
    run->final = ATLS_ACT_FAILED;
    fc_violation(ca, "engine did not finish in 2000 steps");
    return ATLS_ACT_FAILED;
}

void
fakeca_run_clear(fakeca_run_t *run)
{
    size_t i;

    for (i = 0; i < run->n_setup; i++) {
        free(run->setup_ident[i]);
        free(run->setup_token[i]);
        free(run->setup_key_authz[i]);
        free(run->setup_dns_name[i]);
        free(run->setup_dns_value[i]);
    }
    for (i = 0; i < run->n_teardown; i++) {
        free(run->teardown_ident[i]);
    }
    memset(run, 0, sizeof(*run));
}
