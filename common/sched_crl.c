/*
 * The scheduler, CRLs: for key types whose leaf names a CRL Distribution
 * Point and no OCSP responder (or whose issuer has stapling off).
 *
 * A CRL is shared by every certificate naming its URL (Let's Encrypt
 * shards its CRLs: each certificate names its shard, so only the shards
 * that matter are fetched).  One entry per URL lives in memory while the
 * scheduler does: the parsed, verified X509_CRL, its facts, and a version
 * bumped whenever a newer CRL is held.  Each key type is looked up only
 * when the CRL held is newer than the one it was last looked up in, so
 * 10,000 certificates on one URL cost one fetch per period and one lookup
 * per new CRL each.  The bytes and facts are cached in the store
 * (atls_store_save_crl): after a restart the cache is verified again and
 * used without a fetch while it is fresh.
 *
 * How often (docs/revocation.md):
 *   next fetch = fetched + clamp((nextUpdate - fetched) / 2, 1 h, 24 h)
 *   (24 h when the CRL gives no nextUpdate); a failed fetch is retried
 *   after 5 min, doubling up to 6 h.  Fetches are conditional (ETag,
 *   Last-Modified): a 304 keeps the CRL held.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/x509.h>
#include "atls.h"
#include "atls_ocsp.h"
#include "atls_sched.h"
#include "atls_schedule.h"
#include "atls_store.h"
#include "sched_internal.h"

#define SCHED_CRL_MIN_S        3600            /* refetch no sooner than this */
#define SCHED_CRL_MAX_S        86400           /* ... and no later */
#define SCHED_CRL_RETRY_S      300             /* after a failed fetch, doubling */
#define SCHED_CRL_RETRY_MAX_S  (6 * 3600)
/* A CRL server may send 8 MiB: give it time. */
#define SCHED_CRL_TIMEOUT_MS   60000
#define SCHED_CRL_CONNECT_MS   10000

/* ---- the in-memory entries ----------------------------------------------------- */

sched_crl_t *
atls_sched_crl(atls_sched_t *s, const char *url)
{
    sched_crl_t **v, *c;
    size_t        i;

    for (i = 0; i < s->n_crls; i++) {
        if (strcmp(s->crls[i]->url, url) == 0) {
            return s->crls[i];
        }
    }
    v = realloc(s->crls, (s->n_crls + 1) * sizeof(*v));
    c = calloc(1, sizeof(*c));
    if (v == NULL || c == NULL) {
        abort();
    }
    s->crls = v;
    c->url = atls_strdup(url);
    s->crls[s->n_crls++] = c;
    return c;
}

static void
crl_set_validators(sched_crl_t *c, const char *etag, const char *last_modified)
{
    free(c->etag);
    free(c->last_modified);
    c->etag = etag != NULL ? atls_strdup(etag) : NULL;
    c->last_modified = last_modified != NULL ? atls_strdup(last_modified) : NULL;
}

void
atls_sched_crls_free(atls_sched_t *s)
{
    size_t i;

    for (i = 0; i < s->n_crls; i++) {
        X509_CRL_free(s->crls[i]->crl);
        crl_set_validators(s->crls[i], NULL, NULL);
        free(s->crls[i]->url);
        free(s->crls[i]);
    }
    free(s->crls);
    s->crls = NULL;
    s->n_crls = 0;
}

/* The frequency rule (see the top of this file). */
static time_t
crl_next_fetch(time_t fetched, time_t next_update)
{
    time_t d = next_update != 0 ? (next_update - fetched) / 2 : SCHED_CRL_MAX_S;

    if (d < SCHED_CRL_MIN_S) {
        d = SCHED_CRL_MIN_S;
    }
    if (d > SCHED_CRL_MAX_S) {
        d = SCHED_CRL_MAX_S;
    }
    return fetched + d;
}

static time_t
crl_retry_at(unsigned failures, time_t now)
{
    return now + atls_schedule_doubling(SCHED_CRL_RETRY_S, SCHED_CRL_RETRY_MAX_S, failures);
}

/* Holds crl (verified) as the newest for c, when it is; 1 when it is
 * newer than the one held (every key type naming c is looked up again). */
static int
crl_hold(sched_crl_t *c, X509_CRL *crl, const atls_crl_info_t *info)
{
    int newer = c->crl == NULL || info->this_update != c->this_update;

    if (c->crl != NULL && info->this_update < c->this_update) {
        X509_CRL_free(crl);     /* an older one than held: a lagging mirror */
        return 0;
    }
    if (newer) {
        c->version++;
    }
    X509_CRL_free(c->crl);
    c->crl = crl;
    c->this_update = info->this_update;
    c->next_update = info->next_update;
    return newer;
}

/* The store's copy of c, verified against issuer, once per process. */
static void
crl_load_cached(sched_slot_t *sl, sched_crl_t *c, X509 *issuer, time_t now)
{
    atls_crl_cache_t cache;
    atls_crl_info_t  info;
    unsigned char   *der = NULL;
    size_t           len = 0;
    X509_CRL        *crl;
    char             err[256];

    memset(&cache, 0, sizeof(cache));
    if (atls_store_load_crl(sl->s->st, c->url, &cache, &der, &len, err, sizeof(err))
        != ATLS_STORE_OK || der == NULL)
    {
        goto done;
    }
    crl = atls_crl_verify(der, len, c->url, issuer, now, &info, err, sizeof(err));
    if (crl == NULL) {
        atls_log(ATLS_LOG_DEBUG, "autotls: the cached CRL of %s is not used: %s", c->url,
                 err);
        goto done;
    }
    (void) crl_hold(c, crl, &info);
    /* The facts file is the store's, not the CRL server's: times that the
     * verified CRL cannot support (a fetch in the future, a next fetch
     * beyond the period) are clamped, so a planted file cannot stop the
     * checks of every certificate naming this URL. */
    c->fetched = cache.fetched < now ? cache.fetched : now;
    c->next_fetch = crl_next_fetch(c->fetched, info.next_update);
    if (cache.next_fetch < c->next_fetch) {
        c->next_fetch = cache.next_fetch;
    }
    crl_set_validators(c, cache.etag, cache.last_modified);

done:
    free(der);
    atls_crl_cache_free(&cache);
}

/* The seen-record of kt for sl's certificate. */
static sched_crl_seen_t *
crl_seen(atls_sched_cert_t *cert, atls_key_type_t kt)
{
    size_t i, free_i = ATLS_KEY_TYPE_MAX;

    for (i = 0; i < ATLS_KEY_TYPE_MAX; i++) {
        if (cert->crl_seen[i].used && cert->crl_seen[i].kt == kt) {
            return &cert->crl_seen[i];
        }
        if (!cert->crl_seen[i].used && free_i == ATLS_KEY_TYPE_MAX) {
            free_i = i;
        }
    }
    if (free_i == ATLS_KEY_TYPE_MAX) {
        free_i = 0;     /* key types were reconfigured: reuse one */
    }
    memset(&cert->crl_seen[free_i], 0, sizeof(cert->crl_seen[free_i]));
    cert->crl_seen[free_i].used = 1;
    cert->crl_seen[free_i].kt = kt;
    return &cert->crl_seen[free_i];
}

/* ---- lookups ----------------------------------------------------------------------- */

int
atls_sched_crl_check(sched_slot_t *sl, const atls_cert_kt_info_t *ki, time_t now)
{
    sched_crl_t      *c = atls_sched_crl(sl->s, ki->crl_url);
    sched_crl_seen_t *seen;
    time_t            revoked_at = 0;
    int               reason = -1;

    if (!c->loaded) {
        X509 *leaf = NULL, *issuer = NULL;
        char  err[256];

        err[0] = '\0';
        c->loaded = 1;
        if (atls_sched_rev_chain(sl, ki->key_type, &leaf, &issuer, err, sizeof(err)) == 0
            && issuer != NULL)
        {
            crl_load_cached(sl, c, issuer, now);
        }
        X509_free(leaf);
        X509_free(issuer);
    }
    if (c->crl == NULL) {
        return 0;
    }
    seen = crl_seen(sl->cert, ki->key_type);
    if (seen->version == c->version && strcmp(seen->serial, ki->serial) == 0) {
        return 0;       /* looked up in this very CRL already */
    }
    seen->version = c->version;
    snprintf(seen->serial, sizeof(seen->serial), "%s", ki->serial);
    if (atls_crl_lookup(c->crl, ki->serial, &revoked_at, &reason) != 1) {
        return 0;
    }
    return atls_sched_rev_record(sl, ki->key_type, ki->serial, revoked_at, reason, "crl");
}

/* ---- fetching ------------------------------------------------------------------------ */

int
atls_sched_crl_fetch(sched_slot_t *sl, const atls_cert_kt_info_t *ki, time_t now)
{
    sched_crl_t         *c = atls_sched_crl(sl->s, ki->crl_url);
    atls_http_request_t  req;
    X509                *leaf = NULL, *issuer = NULL;
    char                 err[256];
    int                  rc = 0;

    if (c->fetching || (c->crl != NULL || c->failures > 0 ? now < c->next_fetch : 0)) {
        return 0;
    }
    err[0] = '\0';
    if (atls_sched_rev_chain(sl, ki->key_type, &leaf, &issuer, err, sizeof(err)) != 0
        || issuer == NULL)
    {
        /* nothing to verify a CRL with: said once per URL, tried again later */
        c->failures++;
        c->next_fetch = crl_retry_at(c->failures, now);
        if (c->failures == 1) {
            atls_log(ATLS_LOG_WARN, "autotls: certificate \"%s\" (%s): its CRL %s cannot "
                     "be checked: %s", sl->cert->id, atls_key_type_name(ki->key_type),
                     c->url, issuer == NULL && err[0] == '\0'
                     ? "the stored chain has no issuer certificate" : err);
        }
        goto done;
    }
    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.url = c->url;
    if (c->crl != NULL) {
        /* conditional only when a 304 leaves us something to use */
        req.if_none_match = c->etag;
        req.if_modified_since = c->last_modified;
    }
    memset(&sl->http, 0, sizeof(sl->http));
    sl->http.connect_timeout_ms = SCHED_CRL_CONNECT_MS;
    sl->http.total_timeout_ms = SCHED_CRL_TIMEOUT_MS;
    sl->http.max_response = ATLS_CRL_MAX_BYTES;
    sl->rev_kt = ki->key_type;
    sl->rev_crl = c;
    sl->rev_issuer = issuer;
    issuer = NULL;
    c->fetching = 1;
    atls_log(ATLS_LOG_DEBUG, "autotls: fetching the CRL %s%s", c->url,
             req.if_none_match != NULL || req.if_modified_since != NULL
             ? " (conditional)" : "");
    if (atls_sched_slot_send(sl, &req) == 0) {
        rc = 1;
    } else {
        atls_http_response_t failed;

        memset(&failed, 0, sizeof(failed));
        failed.transport_error = 1;
        snprintf(failed.error, sizeof(failed.error), "cannot start the HTTP transfer");
        atls_sched_crl_end(sl, &failed);
        atls_sched_rev_clear(sl);
    }

done:
    X509_free(leaf);
    X509_free(issuer);
    return rc;
}

/* The certificates passed over while a CRL was fetched (another slot had
 * it in flight) are looked up in it by one more pass. */
static void
crl_recheck(atls_sched_t *s)
{
    if (s->stopping) {
        return;
    }
    if (s->pass_active) {
        s->crl_recheck = 1;     /* the running pass goes round once more */
        return;
    }
    s->pass_active = 1;
    atls_sched_due_all(s);      /* every certificate naming it is looked up */
    s->kick_due = 1;
}

/* Saves c's facts (and der when given) in the store's cache. */
static void
crl_save(atls_sched_t *s, const sched_crl_t *c, const atls_http_response_t *resp)
{
    atls_crl_cache_t cache;
    char             err[256];

    memset(&cache, 0, sizeof(cache));
    cache.url = c->url;
    cache.etag = c->etag;
    cache.last_modified = c->last_modified;
    cache.fetched = c->fetched;
    cache.this_update = c->this_update;
    cache.next_update = c->next_update;
    cache.next_fetch = c->next_fetch;
    if (atls_store_save_crl(s->st, &cache,
                            resp != NULL ? (const unsigned char *) resp->body : NULL,
                            resp != NULL ? resp->body_len : 0, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        atls_log(ATLS_LOG_WARN, "autotls: cannot cache the CRL of %s: %s", c->url, err);
    }
}

static void
crl_failed(sched_crl_t *c, time_t now, const char *why)
{
    char when[32];

    c->failures++;
    c->next_fetch = crl_retry_at(c->failures, now);
    if (c->failures == 1) {
        atls_rfc3339_format(c->next_fetch, when, sizeof(when));
        atls_log(ATLS_LOG_WARN, "autotls: CRL %s: %s; %s, fetching it again from %s",
                 c->url, why, c->crl != NULL ? "the CRL held is still used"
                                              : "no CRL held", when);
    }
}

void
atls_sched_crl_end(sched_slot_t *sl, const atls_http_response_t *resp)
{
    atls_sched_t    *s = sl->s;
    sched_crl_t     *c = sl->rev_crl;
    atls_crl_info_t  info;
    X509_CRL        *crl;
    char             err[300];
    time_t           now = time(NULL);
    unsigned         failures = c->failures;

    c->fetching = 0;
    err[0] = '\0';
    if (resp == NULL || resp->transport_error) {
        snprintf(err, sizeof(err), "no answer: %s",
                 resp != NULL && resp->error[0] ? resp->error : "transfer failed");
        crl_failed(c, now, err);
        return;
    }
    if (resp->status == 304 && c->crl != NULL) {
        c->fetched = now;
        c->next_fetch = crl_next_fetch(now, c->next_update);
        c->failures = 0;
        crl_save(s, c, NULL);
    } else if (resp->status != 200 || resp->body == NULL || resp->body_len == 0) {
        snprintf(err, sizeof(err), resp->status == 200 ? "empty response"
                 : "HTTP status %ld", resp->status);
        crl_failed(c, now, err);
        return;
    } else {
        crl = atls_crl_verify((const unsigned char *) resp->body, resp->body_len, c->url,
                              sl->rev_issuer, now, &info, err, sizeof(err));
        if (crl == NULL) {
            crl_failed(c, now, err[0] ? err : "the CRL does not verify");
            return;
        }
        if (crl_hold(c, crl, &info)) {
            crl_recheck(s);
        }
        c->fetched = now;
        c->next_fetch = crl_next_fetch(now, c->next_update);
        c->failures = 0;
        crl_set_validators(c, resp->etag, resp->last_modified);
        crl_save(s, c, resp);
    }
    if (failures > 0) {
        atls_log(ATLS_LOG_INFO, "autotls: CRL %s fetched again after %u failure(s)",
                 c->url, failures);
    }
}
