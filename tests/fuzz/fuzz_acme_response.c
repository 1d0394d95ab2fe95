/*
 * libFuzzer: everything the CA sends drives the ACME engine.  The input is a
 * sequence of canned responses, one per request the engine makes:
 *
 *   status-selector(1) flags(1) retry-after(1) length(2, big endian) body
 *
 * flags: 1 Location, 2 Replay-Nonce, 4 Retry-After, 8 two Link alternates,
 * 16 transport error, 32 the host fails the next challenge setup.
 * When the input runs out the CA "goes away" (transport error), so every
 * run ends.  The engine must end in DONE or FAILED without crashing,
 * leaking or looping, whatever the CA says.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include "atls_acme.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_PKEY *account_key, *cert_key;

static const long statuses[] = { 200, 201, 204, 400, 403, 404, 429, 500, 503, 302 };
static const char *const locations[] = {
    "https://ca.test/acct/1", "https://ca.test/order/1", "", "https://ca.test/x"
};

typedef struct {
    const uint8_t *p;
    size_t         left;
} input_t;

/* Fills resp from the next record; 0 when the input is exhausted. */
static int
next_response(input_t *in, atls_http_response_t *resp, int *fail_setup)
{
    uint8_t sel, flags, ra;
    size_t  len;

    memset(resp, 0, sizeof(*resp));
    if (in->left < 5) {
        resp->transport_error = 1;
        snprintf(resp->error, sizeof(resp->error), "fuzz input exhausted");
        return 0;
    }
    sel = in->p[0];
    flags = in->p[1];
    ra = in->p[2];
    len = ((size_t) in->p[3] << 8) | in->p[4];
    in->p += 5;
    in->left -= 5;
    if (len > in->left) {
        len = in->left;
    }
    resp->status = statuses[sel % (sizeof(statuses) / sizeof(statuses[0]))];
    if (len > 0) {
        /* An exact-size copy so ASan catches any read past body_len. */
        resp->body = malloc(len);
        if (resp->body == NULL) {
            abort();
        }
        memcpy(resp->body, in->p, len);
        resp->body_len = len;
    }
    in->p += len;
    in->left -= len;
    if (flags & 1) {
        resp->location = strdup(locations[(sel >> 4) % 4]);
    }
    if (flags & 2) {
        resp->replay_nonce = strdup("bm9uY2U");
    }
    if (flags & 4) {
        char v[8];

        snprintf(v, sizeof(v), "%u", ra);
        resp->retry_after = strdup(v);
    }
    if (flags & 8) {
        resp->link_alternate = calloc(2, sizeof(char *));
        if (resp->link_alternate != NULL) {
            resp->link_alternate[0] = strdup("https://ca.test/cert/1/1");
            resp->link_alternate[1] = strdup("https://ca.test/cert/1/2");
            resp->n_link_alternate = 2;
        }
    }
    if (flags & 16) {
        resp->status = 0;
        resp->transport_error = 1;
        snprintf(resp->error, sizeof(resp->error), "Connection reset by peer");
    }
    *fail_setup = (flags & 32) != 0;
    return 1;
}

static void
response_clear(atls_http_response_t *r)
{
    size_t i;

    free(r->body);
    free(r->location);
    free(r->replay_nonce);
    free(r->retry_after);
    for (i = 0; i < r->n_link_alternate; i++) {
        free(r->link_alternate[i]);
    }
    free(r->link_alternate);
    memset(r, 0, sizeof(*r));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = { "example.com", "*.example.com", "127.0.0.1" };
    static const char *const contact[] = { "admin@example.com" };
    atls_order_params_t  p;
    atls_error_t         err;
    atls_acme_t         *e;
    atls_action_t        act;
    atls_http_response_t resp;
    input_t              in = { data, size };
    int                  have = 0, fail_setup = 0, steps;
    time_t               now = 1700000000;

    if (account_key == NULL) {
        account_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        cert_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        /* FUZZ_ACME_DEBUG=1 shows the flow a seed drives (for writing seeds). */
        atls_log_set(NULL, NULL, getenv("FUZZ_ACME_DEBUG") ? ATLS_LOG_DEBUG : ATLS_LOG_ERR);
    }
    memset(&p, 0, sizeof(p));
    p.directory_url = "https://ca.test/dir";
    p.account_key = account_key;
    p.account_known_key = size > 0 && (data[0] & 0x80);
    p.contact = contact;
    p.n_contact = 1;
    p.agree_tos = 1;
    p.names = names;
    p.n_names = 3;
    p.challenge = (atls_challenge_type_t) (size > 1 ? data[1] % 3 : 0);
    p.cert_key = cert_key;
    p.profile = "classic";
    p.preferred_chain = "Alt Root";
    p.replaces = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE";

    e = atls_acme_order_new(&p, &err);
    if (e == NULL) {
        abort();
    }
    memset(&resp, 0, sizeof(resp));
    for (steps = 0; steps < 2000; steps++) {
        atls_acme_step(e, have ? &resp : NULL, now, &act);
        if (have) {
            response_clear(&resp);
            have = 0;
        }
        if (act.kind == ATLS_ACT_DONE || act.kind == ATLS_ACT_FAILED) {
            break;
        }
        switch (act.kind) {
        case ATLS_ACT_SEND:
            if (act.request == NULL || act.request->url == NULL) {
                abort();
            }
            next_response(&in, &resp, &fail_setup);
            have = 1;
            break;
        case ATLS_ACT_WAIT:
            if (act.until < now) {
                abort();
            }
            now = act.until;
            break;
        case ATLS_ACT_SETUP:
            if (act.challenge == NULL || act.challenge->key_authz == NULL) {
                abort();
            }
            atls_acme_challenge_result(e, !fail_setup, "fuzz");
            break;
        default:
            break;
        }
    }
    /* Each response is consumed or the input ends, so 2000 steps means a loop. */
    if (steps >= 2000) {
        abort();
    }
    if (getenv("FUZZ_ACME_DEBUG")) {
        fprintf(stderr, "end: %s %s %s\n", act.kind == ATLS_ACT_DONE ? "DONE" : "FAILED",
                atls_acme_error(e)->type, atls_acme_error(e)->detail);
    }
    (void) atls_acme_result_chain_pem(e);
    (void) atls_acme_state_name(e);
    atls_acme_free(e);
    return 0;
}
