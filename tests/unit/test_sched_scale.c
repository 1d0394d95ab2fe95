/*
 * The scheduler at scale (issue 11, "100,000 names"): a pass over many
 * unchanged certificates writes nothing, "this CA has no renewalInfo" is
 * recorded once for the directory, and ARI queries and OCSP requests are
 * bounded per minute and CA directory instead of a burst at start.
 *
 * A pass costs O(due certificates): with 10,000 certificates a pass where
 * nothing is due reads no meta.json; a change another process journals
 * (atls_store_bump_generation_for) or an operator's renew request makes a
 * pass read that one; a journal that does not reach back, every one.
 *
 * The store is a real filesystem store whose put() and get() are counted; its
 * certificates all hold the same ocsppki leaf (what is measured does not
 * depend on which leaf), copied without fsync so that 2,000 take a moment.
 * One fake host certificate (one fake CA) answers for all of them.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <jansson.h>
#include "atls.h"
#include "atls_job.h"
#include "atls_sched.h"
#include "atls_store.h"
#include "store_ari.h"
#include "support/fakehost.h"
#include "support/logcap.h"
#include "support/ocsppki.h"
#include "support/revfix.h"
#include "support/tmptree.h"

#define DIRECTORY  FAKECA_BASE "/dir"
#define OCSP_URL   "http://ocsp.test/r"
#define RUN_MS     120000

static struct {
    char            root[256];
    atls_store_t   *st;
    EVP_PKEY       *akey;
    ocsppki_t       pki;
    X509           *leaf;
    fakehost_t      h;
    fakehost_cert_t hc;         /* the data of every certificate */
    fakehost_cert_t hs;         /* but the one named special, which orders */
    const char     *special;
    char          **ids;
    size_t          n;
} sx;

/* ---- a store whose writes are counted ------------------------------------------ */

static const atls_store_ops_t *real_ops;
static atls_store_ops_t        counting_ops;
static size_t                  meta_puts, ari_puts, other_puts;
static size_t                  meta_gets, meta_gets_other;
static const char             *meta_gets_except;  /* counted apart when not NULL */

static int
counting_put(atls_store_t *st, const char *path, const char *data, size_t len,
             int is_private, char *err, size_t errlen)
{
    size_t n = strlen(path);

    if (n >= 10 && strcmp(path + n - 10, "/meta.json") == 0) {
        meta_puts++;
    } else if (n >= 9 && strcmp(path + n - 9, "/ari.json") == 0) {
        ari_puts++;
    } else {
        other_puts++;
    }
    return real_ops->put(st, path, data, len, is_private, err, errlen);
}

static int
counting_get(atls_store_t *st, const char *path, char **data, size_t *len, char *err,
             size_t errlen)
{
    size_t n = strlen(path);

    if (n >= 10 && strcmp(path + n - 10, "/meta.json") == 0) {
        meta_gets++;
        if (meta_gets_except != NULL && strncmp(path + 6, meta_gets_except,
                                                strlen(meta_gets_except)) != 0)
        {
            meta_gets_other++;
        }
    }
    return real_ops->get(st, path, data, len, err, errlen);
}

static void
puts_reset(void)
{
    meta_puts = ari_puts = other_puts = 0;
    meta_gets = meta_gets_other = 0;
    meta_gets_except = NULL;
}

/* ---- fixture ---------------------------------------------------------------------- */

static void
issuer(atls_issuer_t *is)
{
    memset(is, 0, sizeof(*is));
    is->directory = (char *) DIRECTORY;
    is->challenge = ATLS_CHAL_HTTP01;
    is->agree_tos = 1;
}

static int
setup(void **state)
{
    char  err[256], *url = NULL;
    int   created = 0;

    (void) state;
    logcap_start(ATLS_LOG_INFO);
    memset(&sx, 0, sizeof(sx));
    snprintf(sx.root, sizeof(sx.root), "/tmp/atls-schedscale-XXXXXX");
    if (mkdtemp(sx.root) == NULL || ocsppki_make(&sx.pki) != 0) {
        return -1;
    }
    sx.st = atls_store_fs_open(sx.root, err, sizeof(err));
    if (sx.st == NULL
        || atls_store_load_account(sx.st, DIRECTORY, &sx.akey, &url, &created, err,
                                   sizeof(err)) != ATLS_STORE_OK
        || atls_store_save_account(sx.st, DIRECTORY, FAKECA_ACCT_URL, NULL, 0, err,
                                   sizeof(err)) != ATLS_STORE_OK)
    {
        return -1;
    }
    free(url);
    real_ops = sx.st->ops;
    counting_ops = *real_ops;
    counting_ops.put = counting_put;
    counting_ops.get = counting_get;
    sx.st->ops = &counting_ops;
    fakehost_init(&sx.h);
    return fakehost_cert_init(&sx.hc, "shared", sx.akey, 1);
}

static int
teardown(void **state)
{
    size_t i;

    (void) state;
    fakehost_teardown(&sx.h, &sx.hc, 1);
    if (sx.special != NULL) {
        fakehost_cert_clear(&sx.hs);
    }
    for (i = 0; i < sx.n; i++) {
        free(sx.ids[i]);
    }
    free(sx.ids);
    X509_free(sx.leaf);
    EVP_PKEY_free(sx.akey);
    sx.st->ops = real_ops;
    atls_store_close(sx.st);
    tmptree_rm(sx.root);
    ocsppki_free(&sx.pki);
    logcap_stop();
    return 0;
}

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf;
    long  n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    rewind(f);
    buf = calloc(1, (size_t) n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
    fclose(f);
    return buf;
}

static void
spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0600), 0);
}

/*
 * n certificates c0.scale.test ... all valid, renewal in 20 days, their
 * facts (kt_info) already in meta, as autotls leaves them after a deploy:
 * the first written through the store, the others copied from it.
 */
static void
seed_leaf(size_t n, const char *ocsp_url, int aki)
{
    atls_cert_meta_t m;
    atls_issuer_t    is;
    char            *a, *b, *pem, *key_chain, *meta_json, path[512], err[256];
    const char      *first = "c0.scale.test";
    json_t          *root;
    size_t           i;

    sx.leaf = ocsppki_leaf(&sx.pki, "*.scale.test", ocsp_url, NULL, 0);
    assert_non_null(sx.leaf);
    if (aki) {
        revfix_leaf_add_aki(&sx.pki, sx.leaf);
    }
    a = revfix_pem_of(sx.leaf);
    b = revfix_pem_of(sx.pki.ca);
    pem = malloc(strlen(a) + strlen(b) + 1);
    assert_non_null(pem);
    strcpy(pem, a);
    strcat(pem, b);
    assert_int_equal(atls_store_save_cert(sx.st, first, ATLS_KEY_EC256, sx.pki.leaf_key, pem,
                                          err, sizeof(err)), ATLS_STORE_OK);
    free(a);
    free(b);
    free(pem);
    issuer(&is);
    assert_int_equal(atls_job_ensure(sx.st, &first, 1, &is, &m, err, sizeof(err)), 0);
    assert_int_equal(m.n_kt_info, 1);
    m.state = ATLS_STATE_VALID;
    m.renew_at = time(NULL) + 20 * 86400;
    assert_int_equal(atls_store_save_meta(sx.st, &m, err, sizeof(err)), ATLS_STORE_OK);
    atls_cert_meta_free(&m);

    snprintf(path, sizeof(path), "%s/certs/%s/ec256.pem", sx.root, first);
    key_chain = slurp(path);
    snprintf(path, sizeof(path), "%s/certs/%s/meta.json", sx.root, first);
    meta_json = slurp(path);
    root = json_loads(meta_json, 0, NULL);
    assert_non_null(root);
    sx.ids = calloc(n, sizeof(*sx.ids));
    assert_non_null(sx.ids);
    for (i = 0; i < n; i++) {
        char  id[64], *text;

        snprintf(id, sizeof(id), "c%zu.scale.test", i);
        sx.ids[i] = strdup(id);
        if (i == 0) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/certs/%s", sx.root, id);
        assert_int_equal(mkdir(path, 0700), 0);
        json_object_set_new(root, "id", json_string(id));
        json_object_set_new(root, "names", json_pack("[s]", id));
        text = json_dumps(root, JSON_INDENT(2));
        snprintf(path, sizeof(path), "%s/certs/%s/meta.json", sx.root, id);
        spit(path, text);
        free(text);
        snprintf(path, sizeof(path), "%s/certs/%s/ec256.pem", sx.root, id);
        spit(path, key_chain);
    }
    sx.n = n;
    json_decref(root);
    free(key_chain);
    free(meta_json);
}

static void
seed(size_t n, const char *ocsp_url)
{
    seed_leaf(n, ocsp_url, 1);
}

static void
start_opts(int ari, long per_min, long slice_ms)
{
    atls_sched_opts_t o;
    atls_issuer_t     is;
    char              err[256];
    size_t            i;

    memset(&o, 0, sizeof(o));
    o.ari = ari;
    o.ca_requests_per_min = per_min;
    o.slice_ms = slice_ms;
    sx.h.s = atls_sched_new(sx.st, &sx.h.host, &o, err, sizeof(err));
    assert_non_null(sx.h.s);
    issuer(&is);
    for (i = 0; i < sx.n; i++) {
        const char *name = sx.ids[i];
        void       *data = sx.special != NULL && strcmp(name, sx.special) == 0 ? &sx.hs
                                                                             : &sx.hc;

        assert_non_null(atls_sched_add(sx.h.s, &name, 1, &is, data, err, sizeof(err)));
    }
}

/* A server's scheduler: it lives on between passes. */
static void
sched_start(int ari, long per_min)
{
    start_opts(ari, per_min, 50);
}

static void
sched_restart(int ari, long per_min)
{
    atls_sched_free(sx.h.s);
    sx.h.s = NULL;
    fakehost_clear(&sx.h);
    sched_start(ari, per_min);
}

static void
pass(void)
{
    atls_sched_check(sx.h.s);
    assert_int_equal(fakehost_run(&sx.h, fakehost_until_settled, NULL, RUN_MS, NULL), 0);
}

/* Requests the fake host saw whose path starts with prefix. */
static size_t
requests_to(const char *prefix)
{
    size_t i, n = 0;

    for (i = 0; i < sx.h.n_log; i++) {
        n += strncmp(sx.h.log[i].path, prefix, strlen(prefix)) == 0;
    }
    return n;
}

/* ---- tests ------------------------------------------------------------------------- */

/* 500 unchanged certificates, a CA without renewalInfo: no meta.json is
 * written, "no ARI" is written once for the directory, and a restart asks
 * the CA nothing (the record is read from the store). */
static void
test_no_ari_writes_nothing_per_cert(void **state)
{
    time_t until = 0;
    char   err[256];
    size_t asked;

    (void) state;
    seed(500, NULL);
    sched_start(1, 0);
    puts_reset();
    pass();
    asked = requests_to("/dir");
    assert_true(asked >= 1);
    assert_true(asked <= 8);                /* at most one per slot, once */
    assert_int_equal(meta_puts, 0);
    assert_int_equal(ari_puts, 1);
    assert_int_equal(atls_store_load_ari_dir(sx.st, DIRECTORY, &until, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_true(until > time(NULL) + 3600);

    /* the next pass and a restart: nothing asked, nothing written */
    pass();
    sched_restart(1, 0);
    pass();
    assert_int_equal(requests_to("/dir"), asked);
    assert_int_equal(meta_puts, 0);
    assert_int_equal(ari_puts, 1);
    assert_int_equal(other_puts, 0);
}

/* Leaves without an authority key identifier (the bench CA's): ARI cannot
 * name them; that is learned in memory, never written, and nothing asked. */
static void
test_no_aki_writes_nothing(void **state)
{
    (void) state;
    seed_leaf(300, NULL, 0);
    sx.hc.ca->renewal_info = 1;
    /* a bound so high that every leaf is looked at in this pass */
    sched_start(1, 10000);
    puts_reset();
    pass();
    pass();
    assert_int_equal(requests_to("/ari/"), 0);
    assert_int_equal(meta_puts, 0);
    assert_int_equal(ari_puts, 0);
    assert_int_equal(other_puts, 0);
}

/* The record goes when it runs out: the directory is asked again. */
static void
test_no_ari_record_expires(void **state)
{
    char err[256];

    (void) state;
    seed(3, NULL);
    assert_int_equal(atls_store_save_ari_dir(sx.st, DIRECTORY, time(NULL) - 1, err,
                                             sizeof(err)), ATLS_STORE_OK);
    sched_start(1, 0);
    puts_reset();
    pass();
    assert_true(requests_to("/dir") >= 1);
    assert_int_equal(meta_puts, 0);
    assert_int_equal(ari_puts, 1);
}

/* A broken record names its file and field, and the CA is asked instead. */
static void
test_ari_record_strict(void **state)
{
    char   path[512], err[512];
    char  *caid = atls_ca_id(DIRECTORY);
    time_t until = 0;

    (void) state;
    snprintf(path, sizeof(path), "%s/accounts/%s/ari.json", sx.root, caid);
    free(caid);
    spit(path, "{\"no_ari_until\": \"soon\"}");
    assert_int_equal(atls_store_load_ari_dir(sx.st, DIRECTORY, &until, err, sizeof(err)),
                     ATLS_STORE_ERROR);
    assert_non_null(strstr(err, "ari.json"));
    assert_non_null(strstr(err, "no_ari_until"));
    assert_int_equal(until, 0);
}

/* n certificates naming a responder that answers "good" (*der, freed by
 * the caller), none with a response stored yet. */
static fakehost_url_t *
seed_ocsp(size_t n, unsigned char **der)
{
    ocsppki_resp_t o;
    size_t         len = 0;

    seed(n, OCSP_URL);
    ocsppki_resp_defaults(&o, time(NULL));
    *der = ocsppki_response(&sx.pki, sx.leaf, &o, &len);
    assert_non_null(*der);
    return fakehost_url(&sx.h, "http://ocsp.test/", 200, *der, len);
}

/* 2,000 certificates without a stapled response: at most the rate (60 a
 * minute by default) of OCSP requests start at once; the others are given
 * a time of their own, so the timer stays armed. */
static void
test_ocsp_first_minute_bounded(void **state)
{
    fakehost_url_t *u;
    unsigned char  *der;

    (void) state;
    u = seed_ocsp(2000, &der);
    sched_start(0, 0);
    puts_reset();
    pass();
    assert_true(u->hits >= 1);
    assert_true(u->hits <= 60);
    assert_true(sx.h.timer_at >= 0);        /* the rest are scheduled */
    /* what was fetched was recorded: a fact that changed */
    assert_int_equal(meta_puts, u->hits);
    free(der);
}

/* Fewer new certificates than the rate: each gets its first response in
 * the first pass (they need a staple); a tighter bound holds them to it. */
static void
test_ocsp_new_certs_prompt(void **state)
{
    fakehost_url_t *u;
    unsigned char  *der;

    (void) state;
    u = seed_ocsp(40, &der);
    sched_start(0, 10);
    pass();
    assert_int_equal(u->hits, 10);
    sched_restart(0, 0);
    pass();
    /* the 30 left, at once; the 10 answered are not asked again */
    assert_int_equal(u->hits, 40);
    free(der);
}

/* 2,000 certificates at a CA that offers renewalInfo: their first checks
 * after the start are spread, and never more than half the rate at once
 * (the other half stays for OCSP). */
static void
test_ari_first_checks_spread(void **state)
{
    char   body[256], a[32], b[32];
    time_t now = time(NULL);

    (void) state;
    seed(2000, NULL);
    atls_rfc3339_format(now + 10 * 86400, a, sizeof(a));
    atls_rfc3339_format(now + 11 * 86400, b, sizeof(b));
    snprintf(body, sizeof(body), "{\"suggestedWindow\":{\"start\":\"%s\",\"end\":\"%s\"}}",
             a, b);
    sx.hc.ca->renewal_info = 1;
    sx.hc.ca->ari_body = body;
    sched_start(1, 0);
    pass();
    /* spread over 2000 / 30 minutes: a start of a few seconds asks a few */
    assert_true(requests_to("/ari/") >= 1);
    assert_true(requests_to("/ari/") < 10);

    /* a scheduler made for one pass (Apache's, the CLI's) does not
     * spread, but the bound holds: at most half the rate */
    sx.h.n_log = 0;
    atls_sched_free(sx.h.s);
    sx.h.s = NULL;
    fakehost_clear(&sx.h);
    start_opts(1, 0, 0);
    pass();
    assert_int_equal(requests_to("/ari/"), 30);
    sx.hc.ca->ari_body = NULL;
}

/* 10,000 certificates, nothing due: the first pass reads every meta (it
 * builds the due index), the next reads none and writes none. */
static void
test_idle_pass_reads_no_meta(void **state)
{
    (void) state;
    seed(10000, NULL);
    start_opts(0, 0, 0);    /* no slices: the pass alone is measured */
    puts_reset();
    pass();
    assert_true(meta_gets >= 10000);
    assert_int_equal(meta_puts, 0);

    puts_reset();
    pass();
    pass();
    assert_int_equal(meta_gets, 0);
    assert_int_equal(meta_puts + ari_puts + other_puts, 0);
    assert_int_equal(sx.h.n_log, 0);        /* nothing asked of the CA */
}

/* A deploy by another process is journaled: the next pass reads that
 * certificate's meta only, decides with atls_job_plan as always, and
 * the index learns its new renewal time (nothing read after). */
/* One certificate gets host data of its own, so that it can be ordered
 * (the shared data answers for no order). */
static void
special(const char *name)
{
    sx.special = name;
    assert_int_equal(fakehost_cert_init(&sx.hs, name, sx.akey, 1), 0);
}

static void
test_journaled_change_read_alone(void **state)
{
    atls_cert_meta_t m;
    char             err[256];

    (void) state;
    seed(500, NULL);
    special("c7.scale.test");
    sched_start(0, 0);
    pass();

    /* another process made c7 due and journaled it */
    assert_int_equal(atls_store_load_meta(sx.st, "c7.scale.test", &m, err, sizeof(err)),
                     ATLS_STORE_OK);
    m.renew_at = time(NULL) - 60;
    assert_int_equal(atls_store_save_meta(sx.st, &m, err, sizeof(err)), ATLS_STORE_OK);
    atls_cert_meta_free(&m);
    assert_int_equal(atls_store_bump_generation_for(sx.st, "c7.scale.test"), ATLS_STORE_OK);

    puts_reset();
    meta_gets_except = "c7.scale.test/";
    pass();
    assert_true(meta_gets >= 1);
    assert_int_equal(meta_gets_other, 0);
    assert_int_equal(sx.hs.n_deployed, 1);    /* renewed */

    /* its own deploy: looked at once more, then left until it is due */
    puts_reset();
    meta_gets_except = "c7.scale.test/";
    pass();
    assert_int_equal(meta_gets_other, 0);
    puts_reset();
    pass();
    assert_int_equal(meta_gets, 0);
}

/* An operator's renew request (one listing of requests/) is acted on by
 * the next pass, which reads no other meta. */
static void
test_request_seen_without_reading_all(void **state)
{
    char err[256];

    (void) state;
    seed(500, NULL);
    special("c42.scale.test");
    sched_start(0, 0);
    pass();
    assert_int_equal(atls_store_request_renew(sx.st, "c42.scale.test", err, sizeof(err)),
                     ATLS_STORE_OK);
    puts_reset();
    meta_gets_except = "c42.scale.test/";
    pass();
    assert_int_equal(meta_gets_other, 0);
    assert_int_equal(sx.hs.n_deployed, 1);
    assert_int_equal(atls_store_peek_request(sx.st, "c42.scale.test", &(time_t){ 0 }), 0);
}

/* A bump the journal does not account for (a version without it, a store
 * edited by hand): the next pass looks at every certificate again. */
static void
test_journal_gap_reads_all(void **state)
{
    char err[256];

    (void) state;
    seed(500, NULL);
    sched_start(0, 0);
    pass();
    assert_int_equal(real_ops->put(sx.st, "generation", "1000\n", 5, 0, err, sizeof(err)),
                     ATLS_STORE_OK);
    puts_reset();
    pass();
    assert_true(meta_gets >= 500);
    /* and the journal is followed again from there */
    assert_int_equal(atls_store_bump_generation_for(sx.st, "c1.scale.test"), ATLS_STORE_OK);
    puts_reset();
    meta_gets_except = "c1.scale.test/";
    pass();
    assert_true(meta_gets >= 1);
    assert_int_equal(meta_gets_other, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_ari_writes_nothing_per_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_ari_record_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_aki_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ari_record_strict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_first_minute_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ocsp_new_certs_prompt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ari_first_checks_spread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_pass_reads_no_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journaled_change_read_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_seen_without_reading_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_gap_reads_all, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
