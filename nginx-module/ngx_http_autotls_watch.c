/*
 * autotls for nginx: deploys by anyone reach every worker.
 *
 * A certificate lands in the store from this server's driver, from the CLI
 * (`autotls renew`), or from another server sharing the store; each deploy
 * bumps the store's generation file.  The driver worker reads that file
 * every NGX_HTTP_AUTOTLS_WATCH_MS; when it moved, the driver reads each
 * certificate's meta generation and bumps the shared counter of those that
 * changed, the counter the TLS callback compares at every handshake.  So
 * one process reads the store, workers reparse only what changed, and the
 * handshake path stays a lookup and an integer compare.
 *
 * Which certificates changed comes from the store's change journal
 * (atls_store_changes_since): only their metas are read.  The first look
 * of a cycle, or one the journal does not reach back for, reads them all:
 * it knows nothing of what the workers loaded and bumps every certificate
 * once (workers that start with it have loaded nothing yet, and a
 * certificate deployed before the look is not missed).
 */

#include "ngx_http_autotls_module.h"


typedef struct {
    ngx_event_t                 ev;         /* next look, or next slice */
    ngx_log_t                  *log;
    unsigned                    active:1;   /* this worker drives */
    unsigned                    scanning:1;
    unsigned                    failing:1;  /* generation unreadable */
    ngx_uint_t                  next;       /* next certificate to read */
    uint64_t                    gen;        /* store generation + 1 at the
                                               start of the scan */
} ngx_http_autotls_watch_t;


static void ngx_http_autotls_watch_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_autotls_watch_scan(ngx_http_autotls_watch_t *w);
static ngx_int_t ngx_http_autotls_watch_journal(ngx_http_autotls_watch_t *w,
    uint64_t prev, uint64_t gen);
static void ngx_http_autotls_watch_one(ngx_http_autotls_watch_t *w,
    ngx_http_autotls_cert_t *cert, uint64_t prev);
static uint64_t ngx_http_autotls_watch_read(ngx_http_autotls_watch_t *w);
static uint64_t ngx_http_autotls_meta_gen(ngx_http_autotls_cert_t *cert,
    ngx_log_t *log);


static ngx_http_autotls_watch_t  ngx_http_autotls_watch;


void
ngx_http_autotls_watch_init(ngx_log_t *log)
{
    ngx_http_autotls_watch_t  *w = &ngx_http_autotls_watch;

    ngx_memzero(w, sizeof(ngx_http_autotls_watch_t));
    w->log = log;
    ngx_http_autotls_event_init(&w->ev, ngx_http_autotls_watch_handler, log);
}


/* this worker became the driver: look at once, then every WATCH_MS */
void
ngx_http_autotls_watch_start(void)
{
    ngx_http_autotls_watch_t  *w = &ngx_http_autotls_watch;

    if (w->active || ngx_http_autotls_store == NULL) {
        return;
    }

    w->active = 1;
    w->scanning = 0;

    ngx_add_timer(&w->ev, 1);
}


void
ngx_http_autotls_watch_stop(void)
{
    ngx_http_autotls_watch_t  *w = &ngx_http_autotls_watch;

    w->active = 0;
    w->scanning = 0;

    if (w->ev.timer_set) {
        ngx_del_timer(&w->ev);
    }

    if (w->ev.posted) {
        ngx_delete_posted_event(&w->ev);
    }
}


/*
 * Someone says the store generation moved (the node's mirror took a
 * certificate from Redis): look now rather than at the next
 * NGX_HTTP_AUTOTLS_WATCH_MS; a scan in progress reads it at its end.
 */
void
ngx_http_autotls_watch_now(void)
{
    ngx_http_autotls_watch_t  *w = &ngx_http_autotls_watch;

    if (!w->active || w->scanning || w->ev.posted) {
        return;
    }

    if (w->ev.timer_set) {
        ngx_del_timer(&w->ev);
    }

    ngx_post_event(&w->ev, &ngx_posted_events);
}


/*
 * The driver deployed cert itself: its workers serve it from the next
 * handshake on, and the store generation it bumped needs no scan when
 * nobody else deployed meanwhile.
 */
void
ngx_http_autotls_watch_deployed(ngx_http_autotls_cert_t *cert)
{
    uint64_t                   seen, now;
    ngx_http_autotls_watch_t  *w = &ngx_http_autotls_watch;

    seen = ngx_http_autotls_shm_store_gen();

    (void) ngx_http_autotls_shm_observe(cert->index,
                                        ngx_http_autotls_meta_gen(cert, w->log),
                                        1);

    if (seen == 0 || w->scanning) {
        return;
    }

    now = ngx_http_autotls_watch_read(w);

    if (now == seen + 1) {
        ngx_http_autotls_shm_set_store_gen(now);
    }
}


static void
ngx_http_autotls_watch_handler(ngx_event_t *ev)
{
    uint64_t                   gen;
    ngx_http_autotls_watch_t  *w = &ngx_http_autotls_watch;

    if (!w->active || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (!w->scanning) {
        /* one small file: the only store read while nothing changes */
        gen = ngx_http_autotls_watch_read(w);

        if (gen == 0 || gen == ngx_http_autotls_shm_store_gen()) {
            ngx_add_timer(ev, NGX_HTTP_AUTOTLS_WATCH_MS);
            return;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                       "autotls: store generation %uL, reading certificates",
                       gen - 1);

        /* events queued by others (the CLI) wait for the notifier */
        ngx_http_autotls_driver_store_changed();

        if (ngx_http_autotls_watch_journal(w, ngx_http_autotls_shm_store_gen(),
                                           gen)
            == NGX_OK)
        {
            ngx_http_autotls_shm_set_store_gen(gen);
            ngx_add_timer(ev, NGX_HTTP_AUTOTLS_WATCH_MS);
            return;
        }

        w->scanning = 1;
        w->next = 0;
        w->gen = gen;
    }

    if (ngx_http_autotls_watch_scan(w) == NGX_AGAIN) {
        /* after the next round of network events, as the cache warming */
        ngx_post_event(ev, &ngx_posted_next_events);
        return;
    }

    /* as read before the scan: a deploy during it is read at the next look */
    ngx_http_autotls_shm_set_store_gen(w->gen);
    w->scanning = 0;

    ngx_add_timer(ev, NGX_HTTP_AUTOTLS_WATCH_MS);
}


/* the store generation + 1; 0 when unreadable, said once until it is not */
static uint64_t
ngx_http_autotls_watch_read(ngx_http_autotls_watch_t *w)
{
    char      err[256];
    uint64_t  gen;

    err[0] = '\0';

    if (atls_store_read_generation(ngx_http_autotls_store, &gen, err,
                                   sizeof(err))
        != ATLS_STORE_OK)
    {
        if (!w->failing) {
            ngx_log_error(NGX_LOG_WARN, w->log, 0,
                          "autotls: %s; certificates deployed by others are "
                          "not seen until it is readable", err);
            w->failing = 1;
        }
        return 0;
    }

    w->failing = 0;

    return gen + 1;
}


/* NGX_OK when every certificate was read, NGX_AGAIN after a slice */
static ngx_int_t
ngx_http_autotls_watch_scan(ngx_http_autotls_watch_t *w)
{
    uint64_t                   prev;
    ngx_msec_t                 start;
    ngx_http_autotls_cert_t  **certs, *cert;

    certs = ngx_http_autotls_mcf->certs.elts;
    start = ngx_http_autotls_msec();
    prev = ngx_http_autotls_shm_store_gen();

    while (w->next < ngx_http_autotls_mcf->certs.nelts) {

        /* thousands of certificates: a few milliseconds at a time */
        if (ngx_http_autotls_msec() - start >= 3) {
            return NGX_AGAIN;
        }

        cert = certs[w->next++];
        ngx_http_autotls_watch_one(w, cert, prev);
    }

    return NGX_OK;
}


/*
 * The certificates the journal names between the generations seen (both
 * + 1) and read; NGX_DECLINED when it does not reach back (or this is the
 * cycle's first look): every certificate is read instead.
 */
static ngx_int_t
ngx_http_autotls_watch_journal(ngx_http_autotls_watch_t *w, uint64_t prev,
    uint64_t gen)
{
    int                        rc;
    char                     **ids, err[256];
    size_t                     n, i;
    ngx_uint_t                 k;
    ngx_http_autotls_cert_t  **certs;

    if (prev == 0) {
        return NGX_DECLINED;
    }

    err[0] = '\0';

    rc = atls_store_changes_since(ngx_http_autotls_store, prev - 1, gen - 1,
                                  &ids, &n, err, sizeof(err));
    if (rc != ATLS_STORE_OK) {
        if (rc == ATLS_STORE_ERROR) {
            ngx_log_error(NGX_LOG_WARN, w->log, 0,
                          "autotls: change journal: %s; reading every "
                          "certificate", err);
        }
        return NGX_DECLINED;
    }

    certs = ngx_http_autotls_mcf->certs.elts;

    for (i = 0; i < n; i++) {
        for (k = 0; k < ngx_http_autotls_mcf->certs.nelts; k++) {
            if (ngx_strcmp(certs[k]->id, ids[i]) == 0) {
                ngx_http_autotls_watch_one(w, certs[k], prev);
                break;
            }
        }

        if (k == ngx_http_autotls_mcf->certs.nelts) {
            /* a dynamic name's certificate, deployed by anyone */
            ngx_http_autotls_dyn_deployed(ids[i]);
        }
    }

    atls_strv_free(ids, n);

    return NGX_OK;
}


/* reads cert's meta generation: workers load it again when it moved */
static void
ngx_http_autotls_watch_one(ngx_http_autotls_watch_t *w,
    ngx_http_autotls_cert_t *cert, uint64_t prev)
{
    uint64_t  gen;

    gen = ngx_http_autotls_meta_gen(cert, w->log);

    if (gen == 0) {
        return;
    }

    if (ngx_http_autotls_shm_observe(cert->index, gen, 0) == NGX_OK
        && prev != 0 && gen > 1)
    {
        ngx_log_error(NGX_LOG_NOTICE, w->log, 0,
                      "autotls: certificate \"%s\" changed in the store "
                      "(generation %uL); served from the next handshake "
                      "on", cert->id, gen - 2);
    }
}


/*
 * 1 without meta, the certificate's meta generation + 2 with one, 0 on
 * errors.  Absent and present must never compare equal: a certificate
 * stored with generation 0 (seeded, migrated, pulled into an empty
 * mirror) that the first look saw absent is otherwise never loaded.
 */
static uint64_t
ngx_http_autotls_meta_gen(ngx_http_autotls_cert_t *cert, ngx_log_t *log)
{
    int               rc;
    char              err[256];
    uint64_t          gen;
    atls_cert_meta_t  m;

    ngx_memzero(&m, sizeof(atls_cert_meta_t));
    err[0] = '\0';

    rc = atls_store_load_meta(ngx_http_autotls_store, cert->id, &m, err,
                              sizeof(err));

    if (rc == ATLS_STORE_NOTFOUND) {
        return 1;
    }

    if (rc != ATLS_STORE_OK) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "autotls: certificate \"%s\": %s", cert->id, err);
        return 0;
    }

    gen = m.generation + 2;
    atls_cert_meta_free(&m);

    return gen;
}
