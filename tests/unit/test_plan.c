/*
 * atls_job_plan: every rule, as a table.  Pure: no store, no clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "atls.h"
#include "atls_job.h"
#include "atls_store.h"

#define NOW   1000000L
#define EC    ATLS_KEY_EC256
#define RSA   ATLS_KEY_RSA2048

/* What a kt_info entry holds for one key type of the case. */
typedef enum {
    CERT_NONE = 0,     /* no entry */
    CERT_OK,           /* valid, covers both names */
    CERT_OLD_NAMES,    /* valid, covers only the first name */
    CERT_WILDCARD,     /* valid, "*.a.example" + "a.example" */
    CERT_EXPIRED,      /* covers both, not_after in the past */
    CERT_REVOKED       /* valid, learned revoked 30 s ago (OCSP, CRL, operator) */
} cert_t;

typedef struct {
    const char        *what;
    int                n_kts;          /* configured: 1 = ec256, 2 = ec256 + rsa2048 */
    cert_t             ec, rsa;
    long               renew_at;       /* relative to NOW; 0 = unset */
    long               next_attempt;   /* relative; 0 = unset */
    long               last_attempt;   /* relative; 0 = unset */
    long               request_at;     /* relative; 0 = no request */
    int                force;
    int                ari;
    atls_cert_state_t  state;
    long               ari_next_check; /* relative; 0 = never asked */
    /* expected */
    atls_plan_kind_t   kind;
    int                kts;            /* bit 0 ec256, bit 1 rsa2048 (ORDER) */
    const char        *reason;
    long               next;           /* NOTHING: relative; 0 = none */
} plan_case_t;

#define REL(x) ((x) == 0 ? 0 : NOW + (x))
#define KEC  1
#define KRSA 2

static const plan_case_t cases[] = {
    /* first issuance, missing key types, names */
    { "fresh certificate", 1, CERT_NONE, CERT_NONE, 0, 0, 0, 0, 0, 0, ATLS_STATE_PENDING, 0,
      ATLS_PLAN_ORDER, KEC, "no certificate yet", 0 },
    { "fresh pair", 2, CERT_NONE, CERT_NONE, 0, 0, 0, 0, 0, 0, ATLS_STATE_PENDING, 0,
      ATLS_PLAN_ORDER, KEC | KRSA, "no certificate yet", 0 },
    { "valid, not due", 1, CERT_OK, CERT_NONE, 86400, 0, 0, 0, 0, 0, ATLS_STATE_VALID, 0,
      ATLS_PLAN_NOTHING, 0, "nothing due", 86400 },
    { "rsa added later: only rsa", 2, CERT_OK, CERT_NONE, 86400, 0, 0, 0, 0, 0,
      ATLS_STATE_VALID, 0, ATLS_PLAN_ORDER, KRSA, "no certificate yet", 0 },
    { "ec lost: only ec", 2, CERT_NONE, CERT_OK, 86400, 0, 0, 0, 0, 0,
      ATLS_STATE_VALID, 0, ATLS_PLAN_ORDER, KEC, "no certificate yet", 0 },
    { "name added: the outdated key type only", 2, CERT_OK, CERT_OLD_NAMES, 86400, 0, 0, 0,
      0, 0, ATLS_STATE_VALID, 0, ATLS_PLAN_ORDER, KRSA, "names changed", 0 },
    { "name added everywhere", 2, CERT_OLD_NAMES, CERT_OLD_NAMES, 86400, 0, 0, 0, 0, 0,
      ATLS_STATE_VALID, 0, ATLS_PLAN_ORDER, KEC | KRSA, "names changed", 0 },
    { "wildcard covers www", 1, CERT_WILDCARD, CERT_NONE, 86400, 0, 0, 0, 0, 0,
      ATLS_STATE_VALID, 0, ATLS_PLAN_NOTHING, 0, "nothing due", 86400 },
    { "expired without renew_at passing", 2, CERT_OK, CERT_EXPIRED, 86400, 0, 0, 0, 0, 0,
      ATLS_STATE_VALID, 0, ATLS_PLAN_ORDER, KRSA, "certificate expired", 0 },

    /* renewal of the whole set */
    { "renew_at passed: all", 2, CERT_OK, CERT_OK, -1, 0, 0, 0, 0, 0, ATLS_STATE_VALID, 0,
      ATLS_PLAN_ORDER, KEC | KRSA, "renewal due", 0 },
    { "renew_at now: all", 1, CERT_OK, CERT_NONE, 0, 0, 0, 0, 0, 0, ATLS_STATE_VALID, 0,
      ATLS_PLAN_ORDER, KEC, "renewal due", 0 },
    { "renew_at passed and rsa missing: all", 2, CERT_OK, CERT_NONE, -1, 0, 0, 0, 0, 0,
      ATLS_STATE_VALID, 0, ATLS_PLAN_ORDER, KEC | KRSA, "renewal due", 0 },
    { "forced", 2, CERT_OK, CERT_OK, 86400, 0, 0, 0, 1, 0, ATLS_STATE_VALID, 0,
      ATLS_PLAN_ORDER, KEC | KRSA, "forced", 0 },
    { "requested", 2, CERT_OK, CERT_OK, 86400, 0, 0, -5, 0, 0, ATLS_STATE_VALID, 0,
      ATLS_PLAN_ORDER, KEC | KRSA, "requested by an operator", 0 },

    /* backoff */
    { "backoff holds a missing key type", 1, CERT_NONE, CERT_NONE, 0, 600, -60, 0, 0, 0,
      ATLS_STATE_FAILED, 0, ATLS_PLAN_NOTHING, 0, "backing off", 600 },
    { "backoff holds a renewal", 1, CERT_OK, CERT_NONE, -1, 600, -60, 0, 0, 0,
      ATLS_STATE_FAILED, 0, ATLS_PLAN_NOTHING, 0, "backing off", 600 },
    { "backoff passed", 1, CERT_OK, CERT_NONE, -1, -1, -60, 0, 0, 0, ATLS_STATE_FAILED, 0,
      ATLS_PLAN_ORDER, KEC, "renewal due", 0 },
    { "failed, no backoff recorded", 1, CERT_OK, CERT_NONE, -1, 0, 0, 0, 0, 0,
      ATLS_STATE_FAILED, 0, ATLS_PLAN_ORDER, KEC, "renewal due", 0 },
    { "force beats backoff", 1, CERT_OK, CERT_NONE, 86400, 600, -60, 0, 1, 0,
      ATLS_STATE_FAILED, 0, ATLS_PLAN_ORDER, KEC, "forced", 0 },
    { "request after the last attempt beats backoff", 1, CERT_OK, CERT_NONE, 86400, 600,
      -60, -10, 0, 0, ATLS_STATE_FAILED, 0, ATLS_PLAN_ORDER, KEC,
      "requested by an operator", 0 },
    { "request in the second of the failed attempt beats backoff", 1, CERT_OK, CERT_NONE,
      86400, 600, -10, -10, 0, 0, ATLS_STATE_FAILED, 0, ATLS_PLAN_ORDER, KEC,
      "requested by an operator", 0 },
    { "request tried and failed: backoff again", 1, CERT_OK, CERT_NONE, 86400, 600, -5,
      -10, 0, 0, ATLS_STATE_FAILED, 0, ATLS_PLAN_NOTHING, 0, "backing off", 600 },
    { "request tried, backoff over", 1, CERT_OK, CERT_NONE, 86400, -1, -5, -10, 0, 0,
      ATLS_STATE_FAILED, 0, ATLS_PLAN_ORDER, KEC, "requested by an operator", 0 },

    /* ARI */
    { "ari never asked", 1, CERT_OK, CERT_NONE, 86400, 0, 0, 0, 0, 1, ATLS_STATE_VALID, 0,
      ATLS_PLAN_ARI, 0, "renewal information", 0 },
    { "ari not asked when the host does not want it", 1, CERT_OK, CERT_NONE, 86400, 0, 0,
      0, 0, 0, ATLS_STATE_VALID, 0, ATLS_PLAN_NOTHING, 0, "nothing due", 86400 },
    { "ari check passed", 2, CERT_OK, CERT_OK, 86400, 0, 0, 0, 0, 1, ATLS_STATE_VALID, -1,
      ATLS_PLAN_ARI, 0, "renewal information", 0 },
    { "ari check later: next is the earlier", 1, CERT_OK, CERT_NONE, 86400, 0, 0, 0, 0, 1,
      ATLS_STATE_VALID, 3600, ATLS_PLAN_NOTHING, 0, "nothing due", 3600 },
    { "ari check after renew_at: next is renew_at", 1, CERT_OK, CERT_NONE, 3600, 0, 0, 0, 0,
      1, ATLS_STATE_VALID, 86400, ATLS_PLAN_NOTHING, 0, "nothing due", 3600 },
    { "ari never for a failed state", 1, CERT_OK, CERT_NONE, 86400, 0, 0, 0, 0, 1,
      ATLS_STATE_FAILED, 0, ATLS_PLAN_NOTHING, 0, "nothing due", 86400 },
    { "an order wins over ari", 2, CERT_OK, CERT_NONE, 86400, 0, 0, 0, 0, 1,
      ATLS_STATE_VALID, 0, ATLS_PLAN_ORDER, KRSA, "no certificate yet", 0 },
    /* revocation learned (kt_info.revoked_seen) */
    { "revoked: only that key type", 2, CERT_OK, CERT_REVOKED, 86400, 0, 0, 0, 0, 0,
      ATLS_STATE_VALID, 0, ATLS_PLAN_ORDER, KRSA, "revoked", 0 },
    { "revoked beats the backoff once", 1, CERT_REVOKED, CERT_NONE, 86400, 600, -60, 0, 0,
      0, ATLS_STATE_FAILED, 0, ATLS_PLAN_ORDER, KEC, "revoked", 0 },
    { "revoked, its replacement failed: backoff again", 1, CERT_REVOKED, CERT_NONE, 86400,
      600, -5, 0, 0, 0, ATLS_STATE_FAILED, 0, ATLS_PLAN_NOTHING, 0, "backing off", 600 },
    { "revoked, backoff over", 1, CERT_REVOKED, CERT_NONE, 86400, -1, -5, 0, 0, 0,
      ATLS_STATE_FAILED, 0, ATLS_PLAN_ORDER, KEC, "revoked", 0 },
    { "revoked wins over ari", 1, CERT_REVOKED, CERT_NONE, 86400, 0, 0, 0, 0, 1,
      ATLS_STATE_VALID, 0, ATLS_PLAN_ORDER, KEC, "revoked", 0 },
    { "revoked and renewal due: all", 2, CERT_REVOKED, CERT_OK, -1, 0, 0, 0, 0, 0,
      ATLS_STATE_VALID, 0, ATLS_PLAN_ORDER, KEC | KRSA, "renewal due", 0 },
    { "ari waits for the order backoff", 1, CERT_OK, CERT_NONE, 86400, 600, -60, 0, 0, 1,
      ATLS_STATE_VALID, 0, ATLS_PLAN_NOTHING, 0, "backing off", 600 },
};

static void
set_cert(atls_cert_meta_t *m, atls_key_type_t kt, cert_t c)
{
    static const char *both[] = { "a.example", "www.a.example" };
    static const char *wild[] = { "a.example", "*.a.example" };
    atls_cert_kt_info_t *ki;

    if (c == CERT_NONE) {
        return;
    }
    ki = &m->kt_info[m->n_kt_info++];
    ki->key_type = kt;
    ki->not_before = NOW - 10 * 86400;
    ki->not_after = c == CERT_EXPIRED ? NOW - 1 : NOW + 80 * 86400;
    ki->serial = atls_strdup("0a");
    ki->n_names = c == CERT_OLD_NAMES ? 1 : 2;
    ki->names = atls_strv_dup((char *const *) (c == CERT_WILDCARD ? wild : both),
                              ki->n_names);
    if (c == CERT_REVOKED) {
        ki->revoked_seen = NOW - 30;
        ki->revoked_at = NOW - 3600;
        ki->revoked_reason = 1;
        ki->revoked_source = atls_strdup("ocsp");
    }
}

static void
make_meta(atls_cert_meta_t *m, const plan_case_t *c)
{
    static const char *names[] = { "a.example", "www.a.example" };

    memset(m, 0, sizeof(*m));
    m->id = atls_strdup("a.example");
    m->names = atls_strv_dup((char *const *) names, 2);
    m->n_names = 2;
    m->issuer.directory = atls_strdup("https://ca.test/dir");
    m->issuer.key_types[0] = EC;
    m->issuer.key_types[1] = RSA;
    m->issuer.n_key_types = (size_t) c->n_kts;
    m->state = c->state;
    m->renew_at = REL(c->renew_at);
    m->next_attempt = REL(c->next_attempt);
    m->last_attempt = REL(c->last_attempt);
    m->ari_next_check = REL(c->ari_next_check);
    set_cert(m, EC, c->ec);
    set_cert(m, RSA, c->rsa);
}

static void
test_plan_table(void **state)
{
    size_t i, k;

    (void) state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const plan_case_t *c = &cases[i];
        atls_cert_meta_t   m;
        atls_plan_t        p;
        int                got = 0;

        make_meta(&m, c);
        atls_job_plan(&m, NOW, REL(c->request_at), c->force, c->ari, &p);
        for (k = 0; k < p.n_kts; k++) {
            got |= p.kts[k] == EC ? KEC : KRSA;
        }
        if (p.kind != c->kind || got != c->kts || p.reason == NULL
            || strstr(p.reason, c->reason) == NULL
            || (c->kind == ATLS_PLAN_NOTHING && p.next != REL(c->next)))
        {
            fail_msg("%s: kind %d kts %d reason \"%s\" next %+ld; want kind %d kts %d "
                     "reason \"%s\" next %+ld", c->what, (int) p.kind, got,
                     p.reason ? p.reason : "(null)", (long) (p.next ? p.next - NOW : 0),
                     (int) c->kind, c->kts, c->reason, c->next);
        }
        if (p.kind == ATLS_PLAN_ORDER && p.n_kts == 2) {
            /* always in the configured order */
            assert_int_equal(p.kts[0], EC);
            assert_int_equal(p.kts[1], RSA);
        }
        atls_cert_meta_free(&m);
    }
}

/* The default key type when the issuer names none. */
static void
test_plan_default_key_type(void **state)
{
    atls_cert_meta_t m;
    atls_plan_t      p;

    (void) state;
    make_meta(&m, &cases[0]);
    m.issuer.n_key_types = 0;
    atls_job_plan(&m, NOW, 0, 0, 0, &p);
    assert_int_equal(p.kind, ATLS_PLAN_ORDER);
    assert_int_equal(p.n_kts, 1);
    assert_int_equal(p.kts[0], ATLS_KEY_EC256);
    atls_cert_meta_free(&m);

    atls_job_plan(NULL, NOW, 0, 1, 1, &p);
    assert_int_equal(p.kind, ATLS_PLAN_NOTHING);
}

/* Stored names compare like the TLS client does: case and address form. */
static void
test_plan_name_forms(void **state)
{
    static const char *sans[] = { "A.EXAMPLE", "0:0::1" };
    static const char *names[] = { "a.example", "::1" };
    atls_cert_meta_t   m;
    atls_plan_t        p;

    (void) state;
    make_meta(&m, &cases[2]);
    atls_strv_free(m.names, m.n_names);
    m.names = atls_strv_dup((char *const *) names, 2);
    atls_strv_free(m.kt_info[0].names, m.kt_info[0].n_names);
    m.kt_info[0].names = atls_strv_dup((char *const *) sans, 2);
    atls_job_plan(&m, NOW, 0, 0, 0, &p);
    assert_int_equal(p.kind, ATLS_PLAN_NOTHING);

    /* a wildcard is one label deep only */
    free(m.names[1]);
    m.names[1] = atls_strdup("x.y.a.example");
    free(m.kt_info[0].names[1]);
    m.kt_info[0].names[1] = atls_strdup("*.a.example");
    atls_job_plan(&m, NOW, 0, 0, 0, &p);
    assert_int_equal(p.kind, ATLS_PLAN_ORDER);
    assert_string_equal(p.reason, "names changed");
    atls_cert_meta_free(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_table),
        cmocka_unit_test(test_plan_default_key_type),
        cmocka_unit_test(test_plan_name_forms),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
