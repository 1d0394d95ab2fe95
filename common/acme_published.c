/*
 * The set of published challenges of one engine run (see acme_published.h).
 */
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "atls_acme.h"
#include "acme_published.h"

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
published_add(atls_published_t *p, const atls_challenge_t *c)
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

void
atls_published_setup(atls_published_t *p, atls_acme_t *e,
                     const atls_challenge_ops_t *ops, const atls_challenge_t *c)
{
    char why[512];

    why[0] = '\0';
    if (ops == NULL || ops->setup == NULL) {
        atls_acme_challenge_result(e, 0, "no responder for this challenge type");
    } else if (ops->setup(ops->ctx, c, why, sizeof(why)) == 0) {
        published_add(p, c);
        atls_acme_challenge_result(e, 1, NULL);
    } else {
        atls_acme_challenge_result(e, 0, why[0] ? why : "challenge setup failed");
    }
}

void
atls_published_record(atls_published_t *p, const atls_challenge_t *c)
{
    published_add(p, c);
}

void
atls_published_teardown(atls_published_t *p, const atls_challenge_ops_t *ops,
                        const atls_challenge_t *c)
{
    size_t i;

    if (ops != NULL && ops->teardown != NULL) {
        ops->teardown(ops->ctx, c);
    }
    for (i = 0; i < p->n; i++) {
        if (chal_same(&p->v[i], c)) {
            chal_free(&p->v[i]);
            memmove(&p->v[i], &p->v[i + 1], (p->n - i - 1) * sizeof(*p->v));
            p->n--;
            return;
        }
    }
}

void
atls_published_teardown_all(atls_published_t *p, const atls_challenge_ops_t *ops)
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
