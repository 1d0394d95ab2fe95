/*
 * The job layer on a real filesystem store: ensure, due, the start lock,
 * and the failure path (the live certificate is never touched).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>
#include "atls.h"
#include "atls_acme.h"
#include "atls_job.h"
#include "atls_schedule.h"
#include "atls_store.h"
#include "store_ari.h"
#include <openssl/x509v3.h>
#include "support/fakeca.h"
#include "support/testpki.h"

static char          root[256];
static atls_store_t *st;

static int
setup_store(void **state)
{
    char err[256];

    (void) state;
    snprintf(root, sizeof(root), "/tmp/atls-job-XXXXXX");
    if (mkdtemp(root) == NULL) {
        return -1;
    }
    st = atls_store_fs_open(root, err, sizeof(err));
    return st == NULL ? -1 : 0;
}

static int
teardown_store(void **state)
{
    char cmd[512];

    (void) state;
    atls_store_close(st);
    st = NULL;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

/* The directory URL of a port with no listener: any real transfer fails. */
static char *
dead_directory(void)
{
    static char        url[64];
    struct sockaddr_in sa;
    socklen_t          sl = sizeof(sa);
    int                fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &sl), 0);
    close(fd);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/dir", ntohs(sa.sin_port));
    return url;
}

static void
make_issuer(atls_issuer_t *is, const char *directory)
{
    memset(is, 0, sizeof(*is));
    is->directory = (char *) directory;
    is->insecure_ca_urls = 1;   /* the canned CA listens on http://127.0.0.1 */
    is->challenge = ATLS_CHAL_HTTP01;
    is->agree_tos = 1;
}

/* Stores a testpki certificate for names as key type kt of id. */
static void
store_test_cert(const char *id, const char *const *names, size_t n, atls_key_type_t kt)
{
    testpki_chain_t c;
    X509           *certs[2];
    char           *pem, err[256];

    assert_int_equal(testpki_chain_make(&c, names, n, kt), 0);
    certs[0] = c.leaf;
    certs[1] = c.inter;
    pem = testpki_pem(certs, 2);
    assert_non_null(pem);
    assert_int_equal(atls_store_save_cert(st, id, kt, c.leaf_key, pem, err, sizeof(err)),
                     ATLS_STORE_OK);
    free(pem);
    testpki_chain_free(&c);
}

static char *
slurp(const char *path, size_t *len)
{
    FILE  *f = fopen(path, "rb");
    char  *buf;
    long   n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    buf = malloc((size_t) n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
    fclose(f);
    *len = (size_t) n;
    return buf;
}

/* Stores a certificate that carries an authority key identifier (so it has
 * an ARI identifier, RFC 9773 §4.1), as ec256 of id. */
static void
store_ari_cert(const char *id, const char *const *names, size_t n)
{
    testpki_chain_t  c;
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    unsigned char    keyid[20];
    X509            *certs[2];
    char            *pem, err[256];
    size_t           i;

    for (i = 0; i < sizeof(keyid); i++) {
        keyid[i] = (unsigned char) (0x40 + i);
    }
    assert_int_equal(testpki_chain_make(&c, names, n, ATLS_KEY_EC256), 0);
    akid->keyid = ASN1_OCTET_STRING_new();
    assert_int_equal(ASN1_OCTET_STRING_set(akid->keyid, keyid, sizeof(keyid)), 1);
    assert_int_equal(X509_add1_ext_i2d(c.leaf, NID_authority_key_identifier, akid, 0,
                                       X509V3_ADD_DEFAULT), 1);
    AUTHORITY_KEYID_free(akid);
    assert_true(X509_sign(c.leaf, c.inter_key, EVP_sha256()) > 0);
    certs[0] = c.leaf;
    certs[1] = c.inter;
    pem = testpki_pem(certs, 2);
    assert_non_null(pem);
    assert_int_equal(atls_store_save_cert(st, id, ATLS_KEY_EC256, c.leaf_key, pem, err,
                                          sizeof(err)), ATLS_STORE_OK);
    free(pem);
    testpki_chain_free(&c);
}

/* A valid certificate for ari.example at the canned CA, renewal due at renew_at. */
static void
ari_setup(atls_cert_meta_t *m, time_t renew_at)
{
    const char    *names[] = { "ari.example" };
    atls_issuer_t  is;
    char           err[256];

    make_issuer(&is, FAKECA_BASE "/dir");
    assert_int_equal(atls_job_ensure(st, names, 1, &is, m, err, sizeof(err)), 0);
    store_ari_cert(m->id, names, 1);
    m->state = ATLS_STATE_VALID;
    m->renew_at = renew_at;
    assert_int_equal(atls_store_save_meta(st, m, err, sizeof(err)), ATLS_STORE_OK);
}

/* One ARI round against ca at `now`; returns finish's result, *after = meta. */
static int
ari_round(fakeca_t *ca, const atls_cert_meta_t *m, time_t now, atls_cert_meta_t *after,
          char *err, size_t errlen)
{
    fakeca_run_t  run;
    atls_acme_t  *e;
    char          lerr[256];
    int           rc;

    e = atls_job_ari_start(st, m, err, errlen);
    assert_non_null(e);
    memset(&run, 0, sizeof(run));
    run.now = now;
    fakeca_run(ca, e, &run);
    assert_int_equal(ca->violations, 0);
    err[0] = '\0';
    rc = atls_job_ari_finish(st, m->id, e, now, err, errlen);
    atls_acme_free(e);
    fakeca_run_clear(&run);
    assert_int_equal(atls_store_load_meta(st, m->id, after, lerr, sizeof(lerr)),
                     ATLS_STORE_OK);
    return rc;
}

static void
ari_window_body(char *buf, size_t len, time_t start, time_t end)
{
    char a[32], b[32];

    atls_rfc3339_format(start, a, sizeof(a));
    atls_rfc3339_format(end, b, sizeof(b));
    snprintf(buf, len, "{\"suggestedWindow\":{\"start\":\"%s\",\"end\":\"%s\"}}", a, b);
}

static void
test_ari_due_cases(void **state)
{
    atls_cert_meta_t m;

    (void) state;
    memset(&m, 0, sizeof(m));
    m.state = ATLS_STATE_VALID;
    assert_int_equal(atls_job_ari_due(&m, 1000), 1);      /* never fetched */
    m.ari_next_check = 2000;
    assert_int_equal(atls_job_ari_due(&m, 1999), 0);
    assert_int_equal(atls_job_ari_due(&m, 2000), 1);
    m.ari_next_check = 0;
    m.state = ATLS_STATE_PENDING;                          /* nothing to ask about */
    assert_int_equal(atls_job_ari_due(&m, 1000), 0);
    m.state = ATLS_STATE_RENEWING;
    assert_int_equal(atls_job_ari_due(&m, 1000), 0);
    assert_int_equal(atls_job_ari_due(NULL, 1000), 0);
}

/* The CA asks for an earlier renewal (say after an incident): it wins. */
static void
test_ari_earlier_window_moves_renew_at(void **state)
{
    atls_cert_meta_t m, after, again;
    fakeca_t        *ca;
    time_t           now = time(NULL);
    time_t           ws = now + 86400, we = now + 2 * 86400;
    char             body[256], err[512];

    (void) state;
    ari_setup(&m, now + 30 * 86400);
    ca = fakeca_new(NULL);
    assert_non_null(ca);
    ca->renewal_info = 1;
    ari_window_body(body, sizeof(body), ws, we);
    ca->ari_body = body;
    ca->ari_retry_after = "3600";

    assert_int_equal(atls_job_ari_due(&m, now), 1);
    assert_int_equal(ari_round(ca, &m, now, &after, err, sizeof(err)), 0);
    assert_non_null(ca->ari_path);
    assert_true(after.renew_at >= ws);
    assert_true(after.renew_at < we);
    assert_int_equal(after.ari_window_start, ws);
    assert_int_equal(after.ari_window_end, we);
    /* the CA's Retry-After sets the next check */
    assert_int_equal(after.ari_next_check, now + 3600);
    assert_int_equal(atls_job_ari_due(&after, now + 3599), 0);
    assert_int_equal(atls_job_ari_due(&after, now + 3600), 1);
    /* and the renewal itself is due inside the window, not at day 30 */
    assert_int_equal(atls_job_due(st, &after, ws - 1, 0), 0);
    assert_int_equal(atls_job_due(st, &after, we, 0), 1);

    /* The same window again: the moment picked stays (no creeping towards
     * the start); a Retry-After under a minute is clamped. */
    ca->ari_retry_after = "5";
    assert_int_equal(ari_round(ca, &after, now + 3600, &again, err, sizeof(err)), 0);
    assert_int_equal(again.renew_at, after.renew_at);
    assert_int_equal(again.ari_next_check, now + 3600 + 60);
    atls_cert_meta_free(&again);

    /* no Retry-After at all (an empty header): 6 hours */
    ca->ari_retry_after = "";
    assert_int_equal(ari_round(ca, &after, now + 7200, &again, err, sizeof(err)), 0);
    assert_int_equal(again.ari_next_check, now + 7200 + 6 * 3600);
    atls_cert_meta_free(&again);

    atls_cert_meta_free(&after);
    fakeca_free(ca);
    atls_cert_meta_free(&m);
}

/* A window after our own schedule never postpones renewal. */
static void
test_ari_later_window_keeps_renew_at(void **state)
{
    atls_cert_meta_t m, after;
    fakeca_t        *ca;
    time_t           now = time(NULL), ra = now + 10 * 86400;
    time_t           ws = now + 20 * 86400, we = now + 21 * 86400;
    char             body[256], err[512];

    (void) state;
    ari_setup(&m, ra);
    ca = fakeca_new(NULL);
    assert_non_null(ca);
    ca->renewal_info = 1;
    ari_window_body(body, sizeof(body), ws, we);
    ca->ari_body = body;
    assert_int_equal(ari_round(ca, &m, now, &after, err, sizeof(err)), 0);
    assert_int_equal(after.renew_at, ra);
    assert_int_equal(after.ari_window_start, ws);
    assert_int_equal(after.ari_window_end, we);
    assert_int_equal(after.ari_next_check, now + 21600);   /* fakeca's default */
    atls_cert_meta_free(&after);
    fakeca_free(ca);
    atls_cert_meta_free(&m);
}

/* A window already past: renew now. */
static void
test_ari_past_window_is_now(void **state)
{
    atls_cert_meta_t m, after;
    fakeca_t        *ca;
    time_t           now = time(NULL);
    char             body[256], err[512];

    (void) state;
    ari_setup(&m, now + 30 * 86400);
    ca = fakeca_new(NULL);
    assert_non_null(ca);
    ca->renewal_info = 1;
    ari_window_body(body, sizeof(body), now - 2 * 86400, now - 86400);
    ca->ari_body = body;
    assert_int_equal(ari_round(ca, &m, now, &after, err, sizeof(err)), 0);
    assert_int_equal(after.renew_at, now);
    assert_int_equal(atls_job_due(st, &after, now, 0), 1);
    atls_cert_meta_free(&after);
    fakeca_free(ca);
    atls_cert_meta_free(&m);
}

/* No renewalInfo in the directory: recorded once for the directory (not
 * in the certificate's meta: nothing about it changed), for a day. */
static void
test_ari_not_offered(void **state)
{
    atls_cert_meta_t m, after;
    fakeca_t        *ca;
    time_t           now = time(NULL), ra = now + 30 * 86400, until = 0;
    char             err[512];

    (void) state;
    ari_setup(&m, ra);
    ca = fakeca_new(NULL);
    assert_non_null(ca);
    assert_int_equal(ari_round(ca, &m, now, &after, err, sizeof(err)), 0);
    assert_null(ca->ari_path);
    assert_int_equal(after.renew_at, ra);
    assert_int_equal(after.ari_next_check, m.ari_next_check);
    assert_int_equal(after.ari_window_start, 0);
    assert_int_equal(after.ari_window_end, 0);
    assert_int_equal(atls_store_load_ari_dir(st, m.issuer.directory, &until, err,
                                             sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(until, now + 86400);
    atls_cert_meta_free(&after);
    fakeca_free(ca);
    atls_cert_meta_free(&m);
}

/* A malformed answer or an HTTP error: an error; the schedule is untouched,
 * only the failure is counted (the ARI backoff). */
static void
test_ari_malformed_leaves_meta(void **state)
{
    atls_cert_meta_t m, after;
    fakeca_t        *ca;
    time_t           now = time(NULL), ra = now + 30 * 86400;
    char             err[512];

    (void) state;
    ari_setup(&m, ra);

    ca = fakeca_new(NULL);
    assert_non_null(ca);
    ca->renewal_info = 1;
    ca->ari_body = "{\"suggestedWindow\":{\"start\":\"yesterday\"}}";
    assert_int_equal(ari_round(ca, &m, now, &after, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "autotls:protocol"));
    assert_int_equal(after.renew_at, ra);
    assert_int_equal(after.ari_window_start, 0);
    assert_int_equal(after.ari_failures, 1);
    assert_true(after.ari_next_check >= now + 48 && after.ari_next_check <= now + 72);
    atls_cert_meta_free(&after);

    ca->ari_body = "{\"type\":\"urn:ietf:params:acme:error:serverInternal\","
                   "\"detail\":\"db down\"}";
    ca->ari_status = 500;
    ca->ari_retry_after = "";
    assert_int_equal(ari_round(ca, &m, now, &after, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "renewal information"));
    assert_int_equal(after.renew_at, ra);
    assert_int_equal(after.ari_window_start, 0);
    assert_int_equal(after.ari_failures, 2);
    assert_true(after.ari_next_check >= now + 96 && after.ari_next_check <= now + 144);
    atls_cert_meta_free(&after);

    /* the CA's Retry-After wins within the cap */
    ca->ari_retry_after = "7200";
    assert_int_equal(ari_round(ca, &m, now, &after, err, sizeof(err)), -1);
    assert_int_equal(after.ari_failures, 3);
    assert_int_equal(after.ari_next_check, now + 7200);
    atls_cert_meta_free(&after);

    /* an answer resets the count */
    ca->ari_status = 0;
    ca->ari_body = "{\"suggestedWindow\":{\"start\":\"2099-01-01T00:00:00Z\","
                   "\"end\":\"2099-01-02T00:00:00Z\"}}";
    assert_int_equal(ari_round(ca, &m, now, &after, err, sizeof(err)), 0);
    assert_int_equal(after.ari_failures, 0);
    assert_int_equal(after.renew_at, ra);
    atls_cert_meta_free(&after);

    fakeca_free(ca);
    atls_cert_meta_free(&m);
}

/* The certificate was replaced while ARI was asked about the old one. */
static void
test_ari_stale_answer_ignored(void **state)
{
    const char      *names[] = { "ari.example" };
    atls_cert_meta_t m, after;
    fakeca_t        *ca;
    fakeca_run_t     run;
    atls_acme_t     *e;
    time_t           now = time(NULL), ra = now + 30 * 86400;
    char             body[256], err[512];

    (void) state;
    ari_setup(&m, ra);
    ca = fakeca_new(NULL);
    assert_non_null(ca);
    ca->renewal_info = 1;
    ari_window_body(body, sizeof(body), now - 2 * 86400, now - 86400);
    ca->ari_body = body;
    e = atls_job_ari_start(st, &m, err, sizeof(err));
    assert_non_null(e);
    memset(&run, 0, sizeof(run));
    run.now = now;
    assert_int_equal(fakeca_run(ca, e, &run), ATLS_ACT_DONE);
    store_ari_cert(m.id, names, 1);
    assert_int_equal(atls_job_ari_finish(st, m.id, e, now, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "changed"));
    assert_int_equal(atls_store_load_meta(st, m.id, &after, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(after.renew_at, ra);
    assert_int_equal(after.ari_next_check, 0);
    atls_cert_meta_free(&after);
    atls_acme_free(e);
    fakeca_run_clear(&run);
    fakeca_free(ca);
    atls_cert_meta_free(&m);
}

/* No certificate, or one without an authority key identifier. */
static void
test_ari_start_refuses(void **state)
{
    const char      *names[] = { "noaki.example" };
    atls_issuer_t    is;
    atls_cert_meta_t m, after;
    char             err[512];

    (void) state;
    make_issuer(&is, FAKECA_BASE "/dir");
    assert_int_equal(atls_job_ensure(st, names, 1, &is, &m, err, sizeof(err)), 0);
    err[0] = '\0';
    assert_null(atls_job_ari_start(st, &m, err, sizeof(err)));
    assert_non_null(strstr(err, "no ec256 certificate"));

    store_test_cert(m.id, names, 1, ATLS_KEY_EC256);     /* testpki: no AKI */
    assert_null(atls_job_ari_start(st, &m, err, sizeof(err)));
    assert_non_null(strstr(err, "authority key identifier"));
    /* nothing written (the scheduler keeps "not again for a day" in
     * memory: a start with 10,000 such leaves writes nothing) */
    assert_int_equal(atls_store_load_meta(st, m.id, &after, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(after.ari_next_check, m.ari_next_check);
    atls_cert_meta_free(&after);
    atls_cert_meta_free(&m);

    assert_int_equal(atls_job_ari_refresh_blocking(st, "missing.example", err,
                                                   sizeof(err)), -1);
    assert_non_null(strstr(err, "missing.example"));
}

/* The whole blocking refresh over real HTTP to a dead port: an error, and
 * the next query waits for the ARI backoff. */
static void
test_ari_refresh_blocking_unreachable(void **state)
{
    const char      *names[] = { "ari-down.example" };
    atls_issuer_t    is;
    atls_cert_meta_t m;
    char             err[512];
    time_t           before = time(NULL);

    (void) state;
    make_issuer(&is, dead_directory());
    assert_int_equal(atls_job_ensure(st, names, 1, &is, &m, err, sizeof(err)), 0);
    store_ari_cert(m.id, names, 1);
    m.state = ATLS_STATE_VALID;
    assert_int_equal(atls_store_save_meta(st, &m, err, sizeof(err)), ATLS_STORE_OK);
    atls_cert_meta_free(&m);
    err[0] = '\0';
    assert_int_equal(atls_job_ari_refresh_blocking(st, "ari-down.example", err,
                                                   sizeof(err)), -1);
    assert_non_null(strstr(err, "autotls:transport"));
    assert_int_equal(atls_store_load_meta(st, "ari-down.example", &m, err, sizeof(err)),
                     ATLS_STORE_OK);
    /* the failure is counted and asked again after its own backoff */
    assert_int_equal(m.ari_failures, 1);
    assert_true(m.ari_next_check >= before + 48);
    assert_true(m.ari_next_check <= time(NULL) + 72);
    assert_int_equal(atls_job_ari_due(&m, before), 0);
    assert_int_equal(atls_job_ari_due(&m, m.ari_next_check), 1);
    atls_cert_meta_free(&m);
}

/* ---- ensure ---------------------------------------------------------------- */

static void
test_ensure_creates_and_updates(void **state)
{
    const char       *names1[] = { "a.example", "b.example" };
    const char       *names2[] = { "a.example", "b.example", "c.example" };
    atls_issuer_t     is;
    atls_cert_meta_t  m, again;
    char              err[256];

    (void) state;
    make_issuer(&is, "https://ca.test/dir");
    assert_int_equal(atls_job_ensure(st, names1, 2, &is, &m, err, sizeof(err)), 0);
    assert_string_equal(m.id, "a.example");
    assert_int_equal(m.state, ATLS_STATE_PENDING);
    assert_int_equal(m.n_names, 2);
    assert_string_equal(m.issuer.directory, "https://ca.test/dir");

    /* job state written by an earlier attempt */
    m.failures = 3;
    m.next_attempt = 4000000000;
    m.renew_at = 3900000000;
    m.generation = 7;
    m.state = ATLS_STATE_FAILED;
    m.last_error = atls_strdup("urn:ietf:params:acme:error:rateLimited: slow down");
    assert_int_equal(atls_store_save_meta(st, &m, err, sizeof(err)), ATLS_STORE_OK);
    atls_cert_meta_free(&m);

    /* unchanged configuration: nothing moves */
    assert_int_equal(atls_job_ensure(st, names1, 2, &is, &again, err, sizeof(err)), 0);
    assert_int_equal(again.failures, 3);
    assert_int_equal(again.next_attempt, 4000000000);
    assert_int_equal(again.renew_at, 3900000000);
    atls_cert_meta_free(&again);

    /* a name added and the renewal policy changed: config updated, state kept */
    is.renew.renew_before = 86400;
    assert_int_equal(atls_job_ensure(st, names2, 3, &is, NULL, err, sizeof(err)), 0);
    assert_int_equal(atls_store_load_meta(st, "a.example", &again, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(again.n_names, 3);
    assert_string_equal(again.names[2], "c.example");
    assert_int_equal(again.issuer.renew.renew_before, 86400);
    assert_int_equal(again.failures, 3);
    assert_int_equal(again.generation, 7);
    assert_int_equal(again.state, ATLS_STATE_FAILED);
    assert_string_equal(again.last_error, "urn:ietf:params:acme:error:rateLimited: slow down");
    /* the stored certificate no longer fits: due now, without the old backoff */
    assert_int_equal(again.renew_at, 0);
    assert_int_equal(again.next_attempt, 0);
    atls_cert_meta_free(&again);

    /* the stapling settings are recorded when they change (show reads them) */
    is.stapling_off = 1;
    assert_int_equal(atls_job_ensure(st, names2, 3, &is, NULL, err, sizeof(err)), 0);
    assert_int_equal(atls_store_load_meta(st, "a.example", &again, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(again.issuer.stapling_off, 1);
    atls_cert_meta_free(&again);
    is.stapling_off = 0;
    is.must_staple = 1;
    assert_int_equal(atls_job_ensure(st, names2, 3, &is, NULL, err, sizeof(err)), 0);
    assert_int_equal(atls_store_load_meta(st, "a.example", &again, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(again.issuer.stapling_off, 0);
    assert_int_equal(again.issuer.must_staple, 1);
    assert_int_equal(again.failures, 3);
    atls_cert_meta_free(&again);

    assert_int_equal(atls_job_ensure(st, NULL, 0, &is, NULL, err, sizeof(err)), -1);
    assert_true(strlen(err) > 0);
}

static ino_t
meta_inode(const char *id)
{
    char        path[512];
    struct stat sb;

    snprintf(path, sizeof(path), "%s/certs/%s/meta.json", root, id);
    assert_int_equal(stat(path, &sb), 0);
    return sb.st_ino;
}

/* A meta written with no key types (the default, ec256) and a
 * configuration naming ec256 are the same certificate: ensure must not
 * rewrite it (every atomic write is a new inode).  It did at every pass,
 * for every such certificate: 100,000 fsync'd writes at a hosting
 * provider's start. */
static void
test_ensure_default_key_type_is_ec256(void **state)
{
    const char       *names[] = { "kt.example" };
    atls_issuer_t     is;
    atls_cert_meta_t  m;
    char              err[256];
    ino_t             before;

    (void) state;
    make_issuer(&is, "https://ca.test/dir");
    assert_int_equal(atls_job_ensure(st, names, 1, &is, &m, err, sizeof(err)), 0);
    atls_cert_meta_free(&m);
    before = meta_inode("kt.example");

    is.key_types[0] = ATLS_KEY_EC256;
    is.n_key_types = 1;
    assert_int_equal(atls_job_ensure(st, names, 1, &is, &m, err, sizeof(err)), 0);
    atls_cert_meta_free(&m);
    assert_true(meta_inode("kt.example") == before);

    /* another key type is a change, and is written */
    is.key_types[1] = ATLS_KEY_RSA2048;
    is.n_key_types = 2;
    assert_int_equal(atls_job_ensure(st, names, 1, &is, &m, err, sizeof(err)), 0);
    atls_cert_meta_free(&m);
    assert_true(meta_inode("kt.example") != before);
    assert_int_equal(atls_store_load_meta(st, "kt.example", &m, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(m.issuer.n_key_types, 2);
    atls_cert_meta_free(&m);
}

/* A store from before meta recorded its certificates: ensure learns them
 * once from the files and saves them. */
static void
test_ensure_backfills_kt_info(void **state)
{
    const char       *names[] = { "old.example", "www.old.example" };
    atls_issuer_t     is;
    atls_cert_meta_t  m, again;
    char              err[256];

    (void) state;
    make_issuer(&is, "https://ca.test/dir");
    is.key_types[0] = ATLS_KEY_EC256;
    is.key_types[1] = ATLS_KEY_RSA2048;
    is.n_key_types = 2;
    assert_int_equal(atls_job_ensure(st, names, 2, &is, &m, err, sizeof(err)), 0);
    assert_int_equal(m.n_kt_info, 0);
    store_test_cert(m.id, names, 2, ATLS_KEY_RSA2048);
    atls_cert_meta_free(&m);

    assert_int_equal(atls_job_ensure(st, names, 2, &is, &m, err, sizeof(err)), 0);
    assert_int_equal(m.n_kt_info, 1);
    assert_non_null(atls_job_kt_info(&m, ATLS_KEY_RSA2048));
    assert_null(atls_job_kt_info(&m, ATLS_KEY_EC256));
    assert_int_equal(atls_job_kt_info(&m, ATLS_KEY_RSA2048)->n_names, 2);
    assert_true(atls_job_kt_info(&m, ATLS_KEY_RSA2048)->not_after > time(NULL));
    assert_int_equal(atls_store_load_meta(st, m.id, &again, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(again.n_kt_info, 1);
    assert_string_equal(again.kt_info[0].serial, m.kt_info[0].serial);
    atls_cert_meta_free(&again);
    atls_cert_meta_free(&m);
}

/* ---- due ------------------------------------------------------------------- */

static void
test_due_cases(void **state)
{
    const char       *names[] = { "due.example", "www.due.example" };
    atls_issuer_t     is;
    atls_cert_meta_t  m;
    char              err[256];
    time_t            now = time(NULL);

    (void) state;
    make_issuer(&is, "https://ca.test/dir");
    assert_int_equal(atls_job_ensure(st, names, 2, &is, &m, err, sizeof(err)), 0);

    /* no certificate at all */
    m.renew_at = now + 86400;
    assert_int_equal(atls_job_due(st, &m, now, 0), 1);

    store_test_cert(m.id, names, 2, ATLS_KEY_EC256);
    assert_int_equal(atls_job_due(st, &m, now, 0), 0);
    assert_int_equal(atls_job_due(st, &m, now, 1), 1);

    /* renewal time reached */
    m.renew_at = now - 1;
    assert_int_equal(atls_job_due(st, &m, now, 0), 1);

    /* ... but the backoff has not passed */
    m.next_attempt = now + 600;
    assert_int_equal(atls_job_due(st, &m, now, 0), 0);
    assert_int_equal(atls_job_due(st, &m, now + 600, 0), 1);
    assert_int_equal(atls_job_due(st, &m, now, 1), 1);

    /* an operator request is due at once and is not consumed by looking */
    m.renew_at = now + 86400;
    m.next_attempt = 0;
    assert_int_equal(atls_job_due(st, &m, now, 0), 0);
    assert_int_equal(atls_store_request_renew(st, m.id, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_job_due(st, &m, now, 0), 1);
    assert_int_equal(atls_job_due(st, &m, now, 0), 1);
    /* a request made since the last attempt beats the backoff ... */
    m.last_attempt = now - 100;
    m.next_attempt = now + 600;
    assert_int_equal(atls_job_due(st, &m, now, 0), 1);
    /* ... but once an attempt for it failed, the backoff holds again (the
     * attempt well after the request: the request's time is the clock's
     * when it was made, which may be a second or two after `now`) */
    m.last_attempt = now + 60;
    assert_int_equal(atls_job_due(st, &m, now, 0), 0);
    assert_int_equal(atls_job_due(st, &m, now + 600, 0), 1);
    m.next_attempt = 0;
    m.last_attempt = 0;
    assert_int_equal(atls_store_take_request(st, m.id), 1);
    assert_int_equal(atls_job_due(st, &m, now, 0), 0);

    /* a second key type configured without a certificate */
    m.next_attempt = 0;
    m.issuer.key_types[0] = ATLS_KEY_EC256;
    m.issuer.key_types[1] = ATLS_KEY_RSA2048;
    m.issuer.n_key_types = 2;
    assert_int_equal(atls_job_due(st, &m, now, 0), 1);
    store_test_cert(m.id, names, 2, ATLS_KEY_RSA2048);
    assert_int_equal(atls_job_due(st, &m, now, 0), 0);

    /* a name the stored certificate does not cover */
    atls_strv_free(m.names, m.n_names);
    m.names = calloc(4, sizeof(char *));
    assert_non_null(m.names);
    m.names[0] = atls_strdup("due.example");
    m.names[1] = atls_strdup("www.due.example");
    m.names[2] = atls_strdup("new.due.example");
    m.n_names = 3;
    assert_int_equal(atls_job_due(st, &m, now, 0), 1);
    atls_cert_meta_free(&m);
}

/* ---- start ----------------------------------------------------------------- */

static void
test_start_busy(void **state)
{
    const char        *names[] = { "busy.example" };
    atls_issuer_t      is;
    atls_cert_meta_t   m;
    atls_store_t      *other;
    atls_store_lock_t *lk = NULL;
    atls_job_t        *j;
    char               err[256];

    (void) state;
    make_issuer(&is, "https://ca.test/dir");
    assert_int_equal(atls_job_ensure(st, names, 1, &is, &m, err, sizeof(err)), 0);

    /* a second handle stands for another process */
    other = atls_store_fs_open(root, err, sizeof(err));
    assert_non_null(other);
    assert_int_equal(other->ops->lock(other, "cert-busy.example", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    err[0] = '\0';
    j = atls_job_start(st, &m, ATLS_KEY_EC256, err, sizeof(err));
    assert_null(j);
    assert_string_equal(err, "another process is renewing busy.example");
    other->ops->unlock(other, lk);
    atls_store_close(other);

    j = atls_job_start(st, &m, ATLS_KEY_EC256, err, sizeof(err));
    assert_non_null(j);
    assert_non_null(atls_job_engine(j));
    assert_int_equal(atls_job_meta(j)->state, ATLS_STATE_RENEWING);
    atls_job_free(j);
    atls_cert_meta_free(&m);
}

/* ---- the failure path ------------------------------------------------------ */

/* Steps e to FAILED, answering every request with a transport error. */
static void
drive_to_failure(atls_acme_t *e)
{
    atls_http_response_t  resp;
    atls_action_t         act;
    const atls_http_response_t *last = NULL;
    int                   i;

    memset(&resp, 0, sizeof(resp));
    resp.transport_error = 1;
    snprintf(resp.error, sizeof(resp.error), "Failed to connect: canned refusal");
    for (i = 0; i < 100; i++) {
        atls_acme_step(e, last, time(NULL), &act);
        last = NULL;
        if (act.kind == ATLS_ACT_FAILED) {
            return;
        }
        assert_int_not_equal(act.kind, ATLS_ACT_DONE);
        if (act.kind == ATLS_ACT_SEND) {
            last = &resp;
        }
    }
    fail_msg("the engine never failed");
}

static void
test_finish_failure_keeps_certificate(void **state)
{
    const char        *names[] = { "keep.example" };
    atls_issuer_t      is;
    atls_cert_meta_t   m, after;
    atls_job_t        *j;
    atls_store_lock_t *lk = NULL;
    char               err[512], path[512];
    char              *before_pem, *after_pem;
    size_t             before_len, after_len;
    time_t             now = time(NULL);

    (void) state;
    make_issuer(&is, "https://ca.test/dir");
    assert_int_equal(atls_job_ensure(st, names, 1, &is, &m, err, sizeof(err)), 0);
    store_test_cert(m.id, names, 1, ATLS_KEY_EC256);
    snprintf(path, sizeof(path), "%s/certs/keep.example/ec256.pem", root);
    before_pem = slurp(path, &before_len);

    j = atls_job_start(st, &m, ATLS_KEY_EC256, err, sizeof(err));
    assert_non_null(j);
    drive_to_failure(atls_job_engine(j));
    err[0] = '\0';
    assert_int_equal(atls_job_finish(j, now, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "autotls:transport"));
    assert_non_null(strstr(err, "canned refusal"));
    /* the host gets the error whole */
    assert_non_null(atls_job_finish_error(j));
    assert_int_equal(atls_job_finish_error(j)->cls, ATLS_ERR_RETRY_LATER);
    assert_string_equal(atls_job_finish_error(j)->type, "autotls:transport");
    assert_string_equal(atls_job_finish_error(j)->cert_id, "keep.example");
    assert_string_equal(atls_job_finish_error(j)->key_type, "ec256");
    assert_non_null(strstr(atls_job_finish_error(j)->detail, "canned refusal"));
    atls_job_free(j);

    after_pem = slurp(path, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after_pem, before_pem, before_len);
    free(after_pem);

    assert_int_equal(atls_store_load_meta(st, m.id, &after, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(after.failures, 1);
    assert_true(after.next_attempt > now);
    assert_int_equal(after.state, ATLS_STATE_FAILED);
    assert_non_null(after.last_error);
    assert_non_null(strstr(after.last_error, "autotls:transport: "));
    assert_non_null(strstr(after.last_error, "canned refusal"));
    /* ... and in parts */
    assert_int_equal(after.last_error_class, ATLS_ERR_RETRY_LATER);
    assert_string_equal(after.last_error_type, "autotls:transport");
    assert_non_null(strstr(after.last_error_detail, "canned refusal"));
    assert_string_equal(after.last_error_key_type, "ec256");
    /* a retry-later error: the minute-scale backoff */
    assert_true(after.next_attempt <= now + 72);
    assert_int_equal(after.generation, m.generation);
    /* in backoff now */
    after.renew_at = now - 1;
    assert_int_equal(atls_job_due(st, &after, now, 0), 0);
    atls_cert_meta_free(&after);

    /* the lock was released */
    assert_int_equal(st->ops->lock(st, "cert-keep.example", 0, &lk, err, sizeof(err)),
                     ATLS_STORE_OK);
    st->ops->unlock(st, lk);

    /* a second failure counts up and backs off further */
    j = atls_job_start(st, &m, ATLS_KEY_EC256, err, sizeof(err));
    assert_non_null(j);
    drive_to_failure(atls_job_engine(j));
    assert_int_equal(atls_job_finish(j, now, err, sizeof(err)), -1);
    atls_job_free(j);
    assert_int_equal(atls_store_load_meta(st, m.id, &after, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(after.failures, 2);
    atls_cert_meta_free(&after);

    after_pem = slurp(path, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after_pem, before_pem, before_len);
    free(after_pem);
    free(before_pem);
    atls_cert_meta_free(&m);
}

/* ---- the success path (against the canned CA of tests/unit/support) ------- */

static void
test_finish_success_deploys(void **state)
{
    const char       *names[] = { "ok.example", "www.ok.example" };
    const char       *dir = FAKECA_BASE "/dir";
    atls_issuer_t     is;
    atls_cert_meta_t  m, after;
    atls_job_t       *j;
    fakeca_t         *ca;
    fakeca_run_t      run;
    EVP_PKEY         *akey = NULL, *key = NULL;
    STACK_OF(X509)   *chain = NULL;
    atls_cert_info_t  info;
    char             *aurl = NULL;
    char              err[512];
    int               created = 0;
    uint64_t          gen0;
    time_t            now = time(NULL);

    (void) state;
    make_issuer(&is, dir);
    is.csr_cn = 1;
    assert_int_equal(atls_job_ensure(st, names, 2, &is, &m, err, sizeof(err)), 0);
    /* an earlier failure and a pending operator request */
    m.failures = 2;
    /* ARI state about an earlier certificate */
    m.ari_next_check = now + 3600;
    m.ari_window_start = now + 86400;
    m.ari_window_end = now + 2 * 86400;
    m.last_error = atls_strdup("autotls:transport: down");
    m.state = ATLS_STATE_FAILED;
    assert_int_equal(atls_store_save_meta(st, &m, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_store_request_renew(st, m.id, err, sizeof(err)), ATLS_STORE_OK);
    gen0 = atls_store_generation(st);

    /* the CA must know the account key the job will load from the store */
    assert_int_equal(atls_store_load_account(st, dir, &akey, &aurl, &created, err,
                                             sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(created, 1);
    assert_null(aurl);
    ca = fakeca_new(akey);
    assert_non_null(ca);

    j = atls_job_start(st, &m, ATLS_KEY_EC256, err, sizeof(err));
    assert_non_null(j);
    memset(&run, 0, sizeof(run));
    run.now = now;
    assert_int_equal(fakeca_run(ca, atls_job_engine(j), &run), ATLS_ACT_DONE);
    assert_int_equal(ca->violations, 0);
    /* the issuer's csr_cn reached the CSR: the first name is its subject CN */
    assert_non_null(ca->csr_cn);
    assert_string_equal(ca->csr_cn, "ok.example");
    assert_int_equal(ca->n_cert_accept, 1);
    assert_int_equal(atls_job_finish(j, now, err, sizeof(err)), 0);
    assert_int_equal(atls_job_meta(j)->state, ATLS_STATE_VALID);
    assert_null(atls_job_finish_error(j));
    atls_job_free(j);

    /* the stored key and chain belong together and carry the names */
    assert_int_equal(atls_store_load_cert(st, m.id, ATLS_KEY_EC256, &key, &chain, err,
                                          sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(atls_chain_check(chain, key, names, 2, err, sizeof(err)), 0);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 0), ca->leaf), 0);
    memset(&info, 0, sizeof(info));
    assert_int_equal(atls_cert_info(sk_X509_value(chain, 0), &info), 0);

    assert_int_equal(atls_store_load_meta(st, m.id, &after, err, sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(after.state, ATLS_STATE_VALID);
    assert_int_equal(after.failures, 0);
    assert_int_equal(after.next_attempt, 0);
    assert_null(after.last_error);
    assert_int_equal(after.last_success, now);
    assert_int_equal(after.generation, m.generation + 1);
    assert_true(after.renew_at > info.not_before);
    assert_true(after.renew_at < info.not_after);
    assert_string_equal(after.account_url, FAKECA_ACCT_URL);
    assert_int_equal(after.issuer.csr_cn, 1);
    /* what was deployed is recorded, so deciding reads no file */
    assert_int_equal(after.n_kt_info, 1);
    assert_int_equal(after.kt_info[0].key_type, ATLS_KEY_EC256);
    assert_int_equal(after.kt_info[0].not_before, info.not_before);
    assert_int_equal(after.kt_info[0].not_after, info.not_after);
    assert_string_equal(after.kt_info[0].serial, info.serial);
    assert_int_equal(after.kt_info[0].n_names, 2);
    assert_null(after.last_error_type);
    assert_int_equal(after.last_error_class, ATLS_ERR_NONE);
    /* a new certificate: ARI must be asked about it afresh */
    assert_int_equal(after.ari_next_check, 0);
    assert_int_equal(after.ari_window_start, 0);
    assert_int_equal(after.ari_window_end, 0);
    assert_int_equal(atls_job_ari_due(&after, now), 1);
    assert_true(atls_store_generation(st) > gen0);
    /* the operator request was answered */
    assert_int_equal(atls_store_take_request(st, m.id), 0);
    assert_int_equal(atls_job_due(st, &after, now, 0), 0);
    atls_cert_meta_free(&after);

    /* the account URL the CA gave is remembered for the next order */
    EVP_PKEY_free(akey);
    akey = NULL;
    assert_int_equal(atls_store_load_account(st, dir, &akey, &aurl, &created, err,
                                             sizeof(err)), ATLS_STORE_OK);
    assert_int_equal(created, 0);
    assert_string_equal(aurl, FAKECA_ACCT_URL);

    free(aurl);
    EVP_PKEY_free(akey);
    EVP_PKEY_free(key);
    atls_chain_free(chain);
    atls_cert_info_free(&info);
    fakeca_run_clear(&run);
    fakeca_free(ca);
    atls_cert_meta_free(&m);
}

/* The whole blocking path over real HTTP to a port nobody listens on. */
static void
test_run_blocking_unreachable_ca(void **state)
{
    const char       *names[] = { "down.example" };
    atls_issuer_t     is;
    atls_cert_meta_t  m;
    char              err[512];

    (void) state;
    make_issuer(&is, dead_directory());
    assert_int_equal(atls_job_ensure(st, names, 1, &is, NULL, err, sizeof(err)), 0);
    err[0] = '\0';
    assert_int_equal(atls_job_run_blocking(st, "down.example", NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "down.example"));
    assert_non_null(strstr(err, "autotls:transport"));
    assert_int_equal(atls_store_load_meta(st, "down.example", &m, err, sizeof(err)),
                     ATLS_STORE_OK);
    assert_int_equal(m.failures, 1);
    assert_int_equal(m.state, ATLS_STATE_FAILED);
    atls_cert_meta_free(&m);

    assert_int_equal(atls_job_run_blocking(st, "missing.example", NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "missing.example"));
}

static void
test_revoke_without_account(void **state)
{
    const char   *names[] = { "rev.example" };
    atls_issuer_t is;
    char          err[512], path[512];

    (void) state;
    make_issuer(&is, "https://other-ca.test/dir");
    assert_int_equal(atls_job_ensure(st, names, 1, &is, NULL, err, sizeof(err)), 0);
    store_test_cert("rev.example", names, 1, ATLS_KEY_EC256);
    err[0] = '\0';
    assert_int_equal(atls_job_revoke_blocking(st, "rev.example", 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no ACME account"));
    /* looking must not have created an account key */
    snprintf(path, sizeof(path), "%s/accounts/https___other-ca.test_dir/account.key", root);
    assert_int_equal(access(path, F_OK), -1);
}

static void
test_http_opts(void **state)
{
    atls_issuer_t    is;
    atls_http_opts_t o;

    (void) state;
    make_issuer(&is, "https://ca.test/dir");
    is.ca_file = (char *) "/etc/ca.pem";
    atls_job_http_opts(&is, &o);
    assert_string_equal(o.ca_file, "/etc/ca.pem");
    assert_int_equal(o.max_response, 0);
    is.ca_file = NULL;
    atls_job_http_opts(&is, &o);
    assert_null(o.ca_file);
}

/* ---- an untrusted CA through the job: nothing bad is stored ------------- */

/* One order of names (a certificate already stored) against a fake CA that
 * spoil() sets up, its challenges unconfirmed by the cluster nodes of
 * lagged (NULL: all confirmed); returns atls_job_finish's result, meta in
 * *after, finish's error in *ferr (may be NULL). */
static int
job_round(const char *const *names, size_t n, void (*spoil)(fakeca_t *), const char *lagged,
          time_t now, atls_cert_meta_t *after, char **stored_pem, size_t *stored_len,
          atls_error_t *ferr, char *err, size_t errlen)
{
    const char       *dir = FAKECA_BASE "/dir";
    atls_issuer_t     is;
    atls_cert_meta_t  m;
    atls_job_t       *j;
    fakeca_t         *ca;
    fakeca_run_t      run;
    EVP_PKEY         *akey = NULL;
    char             *aurl = NULL;
    int               created = 0, rc;

    make_issuer(&is, dir);
    assert_int_equal(atls_job_ensure(st, names, n, &is, &m, err, errlen), 0);
    store_test_cert(m.id, names, n, ATLS_KEY_EC256);
    if (stored_pem != NULL) {
        char path[512];

        snprintf(path, sizeof(path), "%s/certs/%s/ec256.pem", root, m.id);
        *stored_pem = slurp(path, stored_len);
    }
    assert_int_equal(atls_store_load_account(st, dir, &akey, &aurl, &created, err, errlen),
                     ATLS_STORE_OK);
    ca = fakeca_new(akey);
    assert_non_null(ca);
    spoil(ca);
    j = atls_job_start(st, &m, ATLS_KEY_EC256, err, errlen);
    assert_non_null(j);
    memset(&run, 0, sizeof(run));
    run.now = now;
    assert_int_equal(fakeca_run(ca, atls_job_engine(j), &run), ATLS_ACT_FAILED);
    atls_job_set_lagged(j, lagged);
    rc = atls_job_finish(j, now, err, errlen);
    if (ferr != NULL) {
        assert_non_null(atls_job_finish_error(j));
        *ferr = *atls_job_finish_error(j);
    }
    atls_job_free(j);
    assert_int_equal(atls_store_load_meta(st, m.id, after, err, errlen), ATLS_STORE_OK);
    assert_int_equal(after->generation, m.generation);
    fakeca_run_clear(&run);
    fakeca_free(ca);
    EVP_PKEY_free(akey);
    free(aurl);
    atls_cert_meta_free(&m);
    return rc;
}

static void
spoil_extra_name(fakeca_t *ca)
{
    ca->cert_fault = FAKECA_CERT_EXTRA_NAME;
}

static void
test_finish_refused_certificate_keeps_old(void **state)
{
    const char       *names[] = { "refuse.example" };
    atls_cert_meta_t  after;
    char              err[512], path[512];
    char             *before_pem, *after_pem;
    size_t            before_len, after_len;
    time_t            now = time(NULL);

    (void) state;
    snprintf(path, sizeof(path), "%s/certs/refuse.example/ec256.pem", root);
    assert_int_equal(job_round(names, 1, spoil_extra_name, NULL, now, &after, &before_pem,
                               &before_len, NULL, err, sizeof(err)), -1);
    /* the reason reaches the job state (and so status and logs) */
    assert_non_null(strstr(err, "autotls:ca-certificate"));
    assert_non_null(strstr(after.last_error, "also names evil.example.net"));
    assert_int_equal(after.state, ATLS_STATE_FAILED);
    assert_int_equal(after.failures, 1);
    /* permanent: hours, not a minute (the stored testpki certificate runs
     * out in about 23 h, so half of that at most) */
    assert_int_equal(after.last_error_class, ATLS_ERR_PERMANENT);
    assert_true(after.next_attempt >= now + 4 * 3600);
    assert_true(after.next_attempt <= now + 12 * 3600);
    /* what is stored is still the certificate store_test_cert put there */
    after_pem = slurp(path, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after_pem, before_pem, before_len);
    free(after_pem);
    free(before_pem);
    atls_cert_meta_free(&after);
}

static void
spoil_rate_limit_a_year(fakeca_t *ca)
{
    fakeca_fault_t f = { "POST", "/finalize", 0, -1, 429, "rateLimited",
                         "see you next year", "31536000" };

    ca->faults[0] = f;
}

static void
test_finish_retry_after_before_expiry(void **state)
{
    const char       *names[] = { "year.example" };
    atls_cert_meta_t  after;
    char              err[512];
    time_t            now = time(NULL);

    (void) state;
    /* the stored certificate (testpki) runs out in about 23 h */
    assert_int_equal(job_round(names, 1, spoil_rate_limit_a_year, NULL, now, &after, NULL,
                               NULL, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(after.last_error, "rateLimited"));
    /* not a year, not even the day-long cap: half the time left */
    assert_true(after.next_attempt > now);
    assert_true(after.next_attempt <= now + 12 * 3600);
    atls_cert_meta_free(&after);
}

/* ---- a cluster node that had not confirmed the challenge (issue 12) ------- */

#define LAGGED_NAME  "lagjob.example"
#define LAGGED_TEXT  "validation failed while nodes web-2 had not confirmed the " \
                     "challenge: retrying in "

static void
spoil_unauthorized(fakeca_t *ca)
{
    ca->invalid[0] = LAGGED_NAME;
    ca->invalid_type = "unauthorized";
}

/* One order of LAGGED_NAME whose validation the CA fails with
 * unauthorized, marked lagged by the nodes of lagged (NULL: not marked). */
static void
unauthorized_round(const char *lagged, time_t now, atls_cert_meta_t *after,
                   atls_error_t *fe, char *err, size_t errlen)
{
    const char *names[] = { LAGGED_NAME };

    assert_int_equal(job_round(names, 1, spoil_unauthorized, lagged, now, after, NULL, NULL,
                               fe, err, errlen), -1);
    assert_int_equal(after->failures, 1);
    assert_string_equal(fe->type, "urn:ietf:params:acme:error:unauthorized");
}

/* Marked lagged, an unauthorized validation is transient: the minute-scale
 * backoff, the nodes named wherever the error goes. */
static void
test_finish_lagged_unauthorized_is_transient(void **state)
{
    atls_cert_meta_t after;
    atls_error_t     fe;
    char             err[512];
    time_t           now = time(NULL);

    (void) state;
    unauthorized_round("web-2", now, &after, &fe, err, sizeof(err));
    assert_int_equal(fe.cls, ATLS_ERR_RETRY_LATER);
    assert_non_null(strstr(fe.detail, LAGGED_TEXT));
    assert_non_null(strstr(fe.detail, "; the CA said: "));
    assert_non_null(strstr(err, LAGGED_TEXT));
    assert_int_equal(after.last_error_class, ATLS_ERR_RETRY_LATER);
    assert_non_null(strstr(after.last_error_detail, LAGGED_TEXT));
    assert_true(after.next_attempt >= atls_schedule_backoff(1, now, 0, 0));
    assert_true(after.next_attempt <= atls_schedule_backoff(1, now, 0, UINT64_MAX));
    atls_cert_meta_free(&after);
}

/* Unmarked, the same failure is the operator's: permanent, hours away. */
static void
test_finish_unmarked_unauthorized_is_permanent(void **state)
{
    atls_cert_meta_t after;
    atls_error_t     fe;
    char             err[512];
    time_t           now = time(NULL);

    (void) state;
    unauthorized_round(NULL, now, &after, &fe, err, sizeof(err));
    assert_int_equal(fe.cls, ATLS_ERR_PERMANENT);
    assert_null(strstr(fe.detail, "had not confirmed"));
    assert_int_equal(after.last_error_class, ATLS_ERR_PERMANENT);
    assert_null(strstr(after.last_error_detail, "had not confirmed"));
    /* the stored testpki certificate runs out in about 23 h: half of it */
    assert_true(after.next_attempt >= now + 4 * 3600);
    atls_cert_meta_free(&after);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ensure_creates_and_updates, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_ensure_backfills_kt_info, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_ensure_default_key_type_is_ec256, setup_store,
                                        teardown_store),
        cmocka_unit_test_setup_teardown(test_due_cases, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_start_busy, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_finish_failure_keeps_certificate, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_finish_success_deploys, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_run_blocking_unreachable_ca, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_revoke_without_account, setup_store, teardown_store),
        cmocka_unit_test(test_http_opts),
        cmocka_unit_test(test_ari_due_cases),
        cmocka_unit_test_setup_teardown(test_ari_earlier_window_moves_renew_at, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_ari_later_window_keeps_renew_at, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_ari_past_window_is_now, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_ari_not_offered, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_ari_malformed_leaves_meta, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_ari_stale_answer_ignored, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_ari_start_refuses, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_ari_refresh_blocking_unreachable, setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_finish_refused_certificate_keeps_old, setup_store,
                                        teardown_store),
        cmocka_unit_test_setup_teardown(test_finish_retry_after_before_expiry, setup_store,
                                        teardown_store),
        cmocka_unit_test_setup_teardown(test_finish_lagged_unauthorized_is_transient,
                                        setup_store, teardown_store),
        cmocka_unit_test_setup_teardown(test_finish_unmarked_unauthorized_is_permanent,
                                        setup_store, teardown_store),
    };

    /* only the expected failure lines, not info chatter */
    atls_log_set(NULL, NULL, ATLS_LOG_ERR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
