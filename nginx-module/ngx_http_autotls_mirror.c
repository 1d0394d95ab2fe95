/*
 * autotls for nginx: the driver mirrors the registry into the zone.
 *
 * The registry of dynamic names is in the store (atls_names.h); workers
 * read its mirror in the shared zone (ngx_http_autotls_dynamic.c).  The
 * driver reads the registry when its generation moved (at its start, and
 * when the watcher sees the store generation move: every add and remove
 * bumps it) and brings the zone in line, a few milliseconds at a time
 * between rounds of network events: each name with the home that serves
 * it here, whether a certificate is in the store (its meta says so; read
 * only for names not known to be served yet), and removed names marked
 * so.  Names of homes this configuration does not have are left out:
 * another server sharing the store serves them.
 */

#include "ngx_http_autotls_module.h"


typedef struct {
    ngx_event_t                 ev;         /* the next slice */
    ngx_log_t                  *log;
    atls_name_entry_t          *v;          /* the registry being mirrored */
    size_t                      n;
    size_t                      next;
    uint64_t                    gen;        /* its generation + 1 */
    unsigned                    running:1;
    unsigned                    again:1;    /* it changed meanwhile */
    unsigned                    checked:1;  /* read once by this driver */
} ngx_http_autotls_mirror_t;


static void ngx_http_autotls_mirror_slice(ngx_event_t *ev);
static void ngx_http_autotls_mirror_one(atls_name_entry_t *e);
static void ngx_http_autotls_mirror_done(ngx_http_autotls_mirror_t *m);


static ngx_http_autotls_mirror_t  ngx_http_autotls_mirror;


/*
 * Reads the registry again when it changed since the zone's mirror of it
 * (always once per driver: the configuration's homes may have changed).
 */
void
ngx_http_autotls_dyn_sync(void)
{
    char                        err[512];
    uint64_t                    gen;
    ngx_http_autotls_mirror_t  *m = &ngx_http_autotls_mirror;

    if (ngx_http_autotls_mcf == NULL || ngx_http_autotls_mcf->homes.nelts == 0
        || ngx_http_autotls_store == NULL)
    {
        return;
    }

    if (m->log == NULL) {
        m->log = ngx_cycle->log;
        ngx_http_autotls_event_init(&m->ev, ngx_http_autotls_mirror_slice,
                                    m->log);
    }

    if (m->running) {
        m->again = 1;
        return;
    }

    gen = atls_names_generation(ngx_http_autotls_store) + 1;

    if (m->checked && gen == ngx_http_autotls_dyn_mirrored()) {
        return;
    }

    err[0] = '\0';

    if (atls_names_list(ngx_http_autotls_store, &m->v, &m->n, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        ngx_log_error(NGX_LOG_ERR, m->log, 0,
                      "autotls: cannot read the registry of dynamic names: "
                      "%s; read again at the next change", err);
        m->v = NULL;
        m->n = 0;
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, m->log, 0,
                   "autotls: mirroring %uz dynamic names (generation %uL)",
                   m->n, gen - 1);

    m->gen = gen;
    m->next = 0;
    m->running = 1;
    m->checked = 1;

    ngx_http_autotls_dyn_sweep_start();
    ngx_post_event(&m->ev, &ngx_posted_next_events);
}


/* the driver stops: a mirror half done is read again by the next one */
void
ngx_http_autotls_dyn_stop(void)
{
    ngx_http_autotls_mirror_t  *m = &ngx_http_autotls_mirror;

    if (m->log == NULL) {
        return;
    }

    if (m->ev.posted) {
        ngx_delete_posted_event(&m->ev);
    }

    if (m->ev.timer_set) {
        ngx_del_timer(&m->ev);
    }

    atls_name_entries_free(m->v, m->n);
    m->v = NULL;
    m->n = 0;
    m->running = 0;
    m->again = 0;
    m->checked = 0;
}


static void
ngx_http_autotls_mirror_slice(ngx_event_t *ev)
{
    ngx_msec_t                  start;
    ngx_http_autotls_mirror_t  *m = &ngx_http_autotls_mirror;

    if (!m->running || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    start = ngx_http_autotls_msec();

    while (m->next < m->n) {
        ngx_http_autotls_mirror_one(&m->v[m->next++]);

        /* 100,000 names: a few milliseconds at a time */
        if (ngx_http_autotls_msec() - start >= 3) {
            ngx_post_event(ev, &ngx_posted_next_events);
            return;
        }
    }

    ngx_http_autotls_mirror_done(m);
}


static void
ngx_http_autotls_mirror_done(ngx_http_autotls_mirror_t *m)
{
    ngx_http_autotls_dyn_sweep_end(m->gen);

    ngx_log_error(NGX_LOG_INFO, m->log, 0,
                  "autotls: %ui dynamic names mirrored (registry generation "
                  "%uL)", ngx_http_autotls_dyn_count(), m->gen - 1);

    atls_name_entries_free(m->v, m->n);
    m->v = NULL;
    m->n = 0;
    m->running = 0;

    if (m->again) {
        m->again = 0;
        ngx_http_autotls_dyn_sync();
    }
}


/* 1 when the store holds a certificate for id (its meta lists one) */
static ngx_uint_t
ngx_http_autotls_mirror_stored(const char *id)
{
    char              err[256];
    ngx_uint_t        stored;
    atls_cert_meta_t  meta;

    ngx_memzero(&meta, sizeof(atls_cert_meta_t));
    err[0] = '\0';

    if (atls_store_load_meta(ngx_http_autotls_store, id, &meta, err,
                             sizeof(err))
        != ATLS_STORE_OK)
    {
        return 0;
    }

    stored = meta.n_kt_info > 0;
    atls_cert_meta_free(&meta);

    return stored;
}


static void
ngx_http_autotls_mirror_one(atls_name_entry_t *e)
{
    char                          *id;
    size_t                         len, home_len;
    u_char                         home[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    ngx_uint_t                     same;
    ngx_atomic_uint_t              gen;
    ngx_http_autotls_srv_conf_t   *ascf;
    ngx_http_autotls_dyn_state_e   was, state;
    ngx_http_autotls_mirror_t     *m = &ngx_http_autotls_mirror;

    ascf = ngx_http_autotls_dyn_find_home(ngx_http_autotls_mcf, e->home);
    if (ascf == NULL || e->name == NULL) {
        /* not put: the sweep drops it if it was here */
        return;
    }

    len = ngx_strlen(e->name);

    /* a checked name is its own certificate id; anything else is a
     * registry entry written by something that did not check it */
    id = atls_cert_id(e->name);
    if (id == NULL || ngx_strcmp(id, e->name) != 0
        || len > NGX_HTTP_AUTOTLS_NAME_MAX)
    {
        ngx_log_error(NGX_LOG_WARN, m->log, 0,
                      "autotls: registry entry \"%s\" is not a host name; "
                      "not served", e->name);
        free(id);
        return;
    }

    free(id);

    was = ngx_http_autotls_dyn_peek((u_char *) e->name, len, &gen, home,
                                    &home_len);
    same = (home_len == ascf->issuer.len
            && ngx_memcmp(home, ascf->issuer.data, home_len) == 0);

    if (e->state == ATLS_NAME_REMOVED) {
        state = NGX_HTTP_AUTOTLS_DYN_REMOVED;

    } else if (was == NGX_HTTP_AUTOTLS_DYN_SERVING && same) {
        /* deployed since it was mirrored: nothing to read */
        state = NGX_HTTP_AUTOTLS_DYN_SERVING;

    } else {
        state = ngx_http_autotls_mirror_stored(e->name)
                ? NGX_HTTP_AUTOTLS_DYN_SERVING : NGX_HTTP_AUTOTLS_DYN_PENDING;
    }

    /* a certificate that appeared meanwhile (another server sharing the
     * store, a restart) is loaded by the workers at their next handshake */
    (void) ngx_http_autotls_dyn_put((u_char *) e->name, len,
                                    ascf->issuer.data, ascf->issuer.len, state,
                                    was != state);
}
