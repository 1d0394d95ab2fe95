/*
 * The blocking driver: runs an ACME engine to completion on libcurl easy,
 * sleeping through WAITs.  Used by the CLI, the Apache watchdog and tests.
 *
 * Every challenge that was published is remembered here (as a copy: the
 * engine owns and frees its own), so that an order that fails half-way
 * never leaves a TXT record or a token behind.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "atls.h"
#include "atls_acme.h"

typedef struct {
    atls_challenge_t *v;
    size_t            n;
} published_t;

static void
chal_free(atls_challenge_t *c)
{
    free(c->identifier);
    free(c->identifier_type);
    free(c->token);
    free(c->key_authz);
    free(c->dns_name);
    free(c->dns_value);
    memset(c, 0, sizeof(*c));
}

static int
str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return strcmp(a, b) == 0;
}

static int
chal_same(const atls_challenge_t *a, const atls_challenge_t *b)
{
    return a->type == b->type && str_eq(a->identifier, b->identifier)
           && str_eq(a->token, b->token) && str_eq(a->dns_value, b->dns_value);
}

static void
published_add(published_t *p, const atls_challenge_t *c)
{
    atls_challenge_t *v = realloc(p->v, (p->n + 1) * sizeof(*v));

    if (v == NULL) {
        abort();
    }
    p->v = v;
    v[p->n].type = c->type;
    v[p->n].identifier = atls_strdup(c->identifier);
    v[p->n].identifier_type = atls_strdup(c->identifier_type);
    v[p->n].token = atls_strdup(c->token);
    v[p->n].key_authz = atls_strdup(c->key_authz);
    v[p->n].dns_name = atls_strdup(c->dns_name);
    v[p->n].dns_value = atls_strdup(c->dns_value);
    p->n++;
}

static void
published_remove(published_t *p, const atls_challenge_t *c)
{
    size_t i;

    for (i = 0; i < p->n; i++) {
        if (chal_same(&p->v[i], c)) {
            chal_free(&p->v[i]);
            memmove(&p->v[i], &p->v[i + 1], (p->n - i - 1) * sizeof(*p->v));
            p->n--;
            return;
        }
    }
}

/* Withdraws whatever the engine did not tear down itself. */
static void
published_teardown_all(published_t *p, const atls_challenge_ops_t *ops)
{
    size_t i;

    for (i = 0; i < p->n; i++) {
        if (ops != NULL && ops->teardown != NULL) {
            ops->teardown(ops->ctx, &p->v[i]);
        }
        chal_free(&p->v[i]);
    }
    free(p->v);
    p->v = NULL;
    p->n = 0;
}

/* Sleeps delay_ms (robust to signals); engines give sub-second poll delays. */
static void
sleep_ms(long delay_ms)
{
    struct timespec ts;

    if (delay_ms <= 0) {
        return;
    }
    ts.tv_sec = delay_ms / 1000;
    ts.tv_nsec = (delay_ms % 1000) * 1000000L;
    /* a signal cuts the sleep short; nanosleep leaves the rest in ts */
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        /* sleep what is left */
    }
}

/* The wait of a WAIT action made at step time `stepped`. */
static long
wait_ms(const atls_action_t *act, time_t stepped)
{
    if (act->delay_ms > 0) {
        return act->delay_ms;
    }
    return act->until > stepped ? (long) (act->until - stepped) * 1000 : 0;
}

int
atls_acme_run_blocking(atls_acme_t *e, const atls_http_opts_t *http,
                       const atls_challenge_ops_t *ops)
{
    atls_http_response_t  resp;
    atls_http_response_t *last = NULL;
    atls_action_t         act;
    published_t           pub = { NULL, 0 };
    char                  why[512];
    int                   rc;

    memset(&resp, 0, sizeof(resp));

    for (;;) {
        time_t stepped = time(NULL);

        memset(&act, 0, sizeof(act));
        atls_acme_step(e, last, stepped, &act);
        /* the response is borrowed only for the duration of the step */
        if (last != NULL) {
            atls_http_response_free(&resp);
            last = NULL;
        }

        switch (act.kind) {
        case ATLS_ACT_SEND:
            atls_http_perform(http, act.request, &resp);
            last = &resp;
            break;

        case ATLS_ACT_WAIT:
            sleep_ms(wait_ms(&act, stepped));
            break;

        case ATLS_ACT_SETUP:
            why[0] = '\0';
            if (ops == NULL || ops->setup == NULL) {
                atls_acme_challenge_result(e, 0, "no responder for this challenge type");
            } else if (ops->setup(ops->ctx, act.challenge, why, sizeof(why)) == 0) {
                published_add(&pub, act.challenge);
                atls_acme_challenge_result(e, 1, NULL);
            } else {
                atls_acme_challenge_result(e, 0, why[0] ? why : "challenge setup failed");
            }
            break;

        case ATLS_ACT_TEARDOWN:
            if (ops != NULL && ops->teardown != NULL) {
                ops->teardown(ops->ctx, act.challenge);
            }
            published_remove(&pub, act.challenge);
            break;

        case ATLS_ACT_DONE:
        case ATLS_ACT_FAILED:
        default:
            rc = act.kind == ATLS_ACT_DONE ? 0 : -1;
            published_teardown_all(&pub, ops);
            return rc;
        }
    }
}
