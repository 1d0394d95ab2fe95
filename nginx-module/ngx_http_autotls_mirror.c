/*
 * autotls for nginx: the driver mirrors the registry into the zone.
 *
 * The registry of dynamic names is in the store (atls_names.h); workers
 * read its mirror in the shared zone (ngx_http_autotls_dynamic.c).  The
 * driver reads the registry when its generation moved (at its start, and
 * when the watcher sees the store generation move: every add and remove
 * bumps it) and brings the zone in line a few milliseconds at a time
 * between rounds of network events, in two passes over the registry
 * listed in pages (atls_store_list_page: never one long call, never the
 * whole listing in memory).  The first reads each entry: the home that
 * serves the name here, removed names marked so, names not seen before
 * marked CHECKING; then the zone is complete (workers stop looking at the
 * registry for unknown names).  Until then a worker that meets a name the
 * mirror has not reached reads that name's registry entry itself
 * (_dynamic.c), so a stored certificate is served from the first second.
 * The second pass reads the meta of the CHECKING names: a certificate
 * stored (SERVING) or not yet (PENDING); a CHECKING name is served with
 * what the store holds meanwhile.
 * Names of homes this configuration does not have are left out: another
 * server sharing the store serves them.
 */

#include "ngx_http_autotls_module.h"


/* registry entries listed at a time */
#define NGX_HTTP_AUTOTLS_MIRROR_PAGE   128
/* the longest slice, then network events */
#define NGX_HTTP_AUTOTLS_MIRROR_SLICE  3
/* between the slices of the second pass (the metas of new names) */
#define NGX_HTTP_AUTOTLS_MIRROR_PAUSE  12


typedef struct {
    ngx_event_t                 ev;         /* the next slice */
    ngx_log_t                  *log;
    atls_store_cursor_t        *cursor;     /* the registry's listing */
    char                      **page;       /* its current page: file names */
    size_t                      n;
    size_t                      next;
    uint64_t                    gen;        /* its generation + 1 */
    ngx_uint_t                  slices;
    ngx_uint_t                  pages;
    ngx_msec_t                  started;
    ngx_msec_t                  busy;       /* time spent in slices */
    unsigned                    running:1;
    unsigned                    listing:1;  /* pages still to come */
    unsigned                    checking:1; /* the second pass */
    unsigned                    again:1;    /* it changed meanwhile */
    unsigned                    checked:1;  /* read once by this driver */
} ngx_http_autotls_mirror_t;


static void ngx_http_autotls_mirror_slice(ngx_event_t *ev);
static ngx_int_t ngx_http_autotls_mirror_page(ngx_http_autotls_mirror_t *m);
static void ngx_http_autotls_mirror_file(const char *file,
    ngx_uint_t checking);
static ngx_http_autotls_srv_conf_t *ngx_http_autotls_mirror_home(
    atls_name_entry_t *e);
static void ngx_http_autotls_mirror_one(atls_name_entry_t *e);
static void ngx_http_autotls_mirror_check(atls_name_entry_t *e);
static ngx_int_t ngx_http_autotls_mirror_changes(ngx_http_autotls_mirror_t *m,
    uint64_t gen);
static void ngx_http_autotls_mirror_done(ngx_http_autotls_mirror_t *m);
static void ngx_http_autotls_mirror_drop(ngx_http_autotls_mirror_t *m);


static ngx_http_autotls_mirror_t  ngx_http_autotls_mirror;


/*
 * Reads the registry again when it changed since the zone's mirror of it
 * (always once per driver: the configuration's homes may have changed).
 * Nothing is read here: the listing starts in the first slice.
 */
void
ngx_http_autotls_dyn_sync(void)
{
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

    /* the store generation moves at every deploy too: cheap when the
     * registry's own did not */
    gen = atls_names_generation(ngx_http_autotls_store) + 1;

    if (m->running && !m->checking) {
        /* what changed is read from the journal when the pass is done */
        m->again = m->again || gen != m->gen;
        return;
    }

    if (m->checked && gen == ngx_http_autotls_dyn_mirrored()) {
        return;
    }

    /* once this driver mirrored it all, the journal says what changed; a
     * new name never waits for a pass over 100,000 others */
    if (m->checked && ngx_http_autotls_mirror_changes(m, gen) == NGX_OK) {
        return;
    }

    if (m->running) {
        /* the names still CHECKING stay so: the next pass checks them */
        ngx_http_autotls_mirror_drop(m);
    }

    m->started = ngx_http_autotls_msec();
    m->gen = gen;
    m->slices = 0;
    m->pages = 0;
    m->busy = 0;
    m->running = 1;
    m->listing = 1;
    m->checking = 0;
    m->checked = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, m->log, 0,
                   "autotls: mirroring the dynamic names (generation %uL)",
                   gen - 1);

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

    ngx_http_autotls_mirror_drop(m);
    m->again = 0;
    m->checked = 0;
}


/* the listing in progress is dropped, with the next slice */
static void
ngx_http_autotls_mirror_drop(ngx_http_autotls_mirror_t *m)
{
    if (m->ev.posted) {
        ngx_delete_posted_event(&m->ev);
    }

    if (m->ev.timer_set) {
        ngx_del_timer(&m->ev);
    }

    while (m->next < m->n) {
        free(m->page[m->next++]);
    }

    free(m->page);
    m->page = NULL;
    m->n = 0;
    m->next = 0;

    atls_store_list_end(ngx_http_autotls_store, m->cursor);
    m->cursor = NULL;
    m->running = 0;
    m->listing = 0;
    m->checking = 0;
}


static void
ngx_http_autotls_mirror_slice(ngx_event_t *ev)
{
    ngx_msec_t                  start, now;
    ngx_http_autotls_mirror_t  *m = &ngx_http_autotls_mirror;

    if (!m->running || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    start = ngx_http_autotls_msec();
    now = start;
    m->slices++;

    /* 100,000 names: a few milliseconds at a time */
    while (now - start < NGX_HTTP_AUTOTLS_MIRROR_SLICE) {

        if (m->next == m->n && ngx_http_autotls_mirror_page(m) != NGX_OK) {
            break;
        }

        ngx_http_autotls_mirror_file(m->page[m->next], m->checking);
        free(m->page[m->next++]);

        now = ngx_http_autotls_msec();
    }

    m->busy += ngx_http_autotls_msec() - start;

    if (m->next < m->n || m->listing) {
        if (m->checking) {
            /* serving needs none of it: handshakes come first */
            ngx_add_timer(ev, NGX_HTTP_AUTOTLS_MIRROR_PAUSE);
        } else {
            ngx_post_event(ev, &ngx_posted_next_events);
        }
        return;
    }

    ngx_http_autotls_mirror_done(m);
}


/* the next page of the listing; NGX_DONE when there is none */
static ngx_int_t
ngx_http_autotls_mirror_page(ngx_http_autotls_mirror_t *m)
{
    char  err[512];

    free(m->page);
    m->page = NULL;
    m->n = 0;
    m->next = 0;

    while (m->n == 0 && m->listing) {
        err[0] = '\0';

        if (atls_store_list_page(ngx_http_autotls_store, "names", &m->cursor,
                                 NGX_HTTP_AUTOTLS_MIRROR_PAGE, &m->page, &m->n,
                                 err, sizeof(err))
            != ATLS_STORE_OK)
        {
            /* what was mirrored stays; the sweep of this pass is not done */
            ngx_log_error(NGX_LOG_ERR, m->log, 0,
                          "autotls: cannot read the registry of dynamic "
                          "names: %s; read again at the next change", err);
            ngx_http_autotls_mirror_drop(m);
            m->checked = 0;
            return NGX_ERROR;
        }

        m->pages++;
        m->listing = (m->cursor != NULL);
    }

    return m->n ? NGX_OK : NGX_DONE;
}


static void
ngx_http_autotls_mirror_done(ngx_http_autotls_mirror_t *m)
{
    if (!m->running) {
        return;
    }

    if (m->checking) {
        ngx_log_error(NGX_LOG_INFO, m->log, 0,
                      "autotls: %ui dynamic names checked against the store "
                      "(registry generation %uL) in %M ms, %ui slices, "
                      "%M ms in slices", ngx_http_autotls_dyn_count(),
                      m->gen - 1, ngx_http_autotls_msec() - m->started,
                      m->slices, m->busy);
        ngx_http_autotls_mirror_drop(m);
        return;
    }

    /* every name is in the zone: complete for the workers */
    ngx_http_autotls_dyn_sweep_end(m->gen);

    ngx_log_error(NGX_LOG_INFO, m->log, 0,
                  "autotls: %ui dynamic names in the zone (registry "
                  "generation %uL) in %M ms, %ui slices, %ui pages, %M ms in "
                  "slices",
                  ngx_http_autotls_dyn_count(), m->gen - 1,
                  ngx_http_autotls_msec() - m->started, m->slices, m->pages,
                  m->busy);

    /* the second pass, listed again */
    free(m->page);
    m->page = NULL;
    m->n = 0;
    m->next = 0;
    m->listing = 1;
    m->checking = 1;
    m->slices = 0;
    m->busy = 0;
    m->started = ngx_http_autotls_msec();
    ngx_post_event(&m->ev, &ngx_posted_next_events);

    if (m->again) {
        /* changed during the first pass: the journal says what */
        m->again = 0;
        ngx_http_autotls_dyn_sync();
    }
}


/* one file of the registry's listing: "<id>.json" (anything else is left) */
static void
ngx_http_autotls_mirror_file(const char *file, ngx_uint_t checking)
{
    int                 rc;
    char                err[512], name[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    size_t              len;
    atls_name_entry_t   e;

    len = ngx_strlen(file);

    if (len <= 5 || len - 5 > NGX_HTTP_AUTOTLS_NAME_MAX
        || ngx_strcmp(file + len - 5, ".json") != 0)
    {
        return;
    }

    ngx_memcpy(name, file, len - 5);
    name[len - 5] = '\0';

    ngx_memzero(&e, sizeof(atls_name_entry_t));
    err[0] = '\0';

    if (checking) {
        /* CHECKING names are active ones: the zone says, not the entry */
        e.name = name;
        ngx_http_autotls_mirror_check(&e);
        return;
    }

    rc = atls_names_get(ngx_http_autotls_store, name, &e, err, sizeof(err));

    if (rc == ATLS_STORE_OK) {
        ngx_http_autotls_mirror_one(&e);

    } else if (rc != ATLS_STORE_NOTFOUND) {
        /* not put: the sweep drops it if it was here */
        ngx_log_error(NGX_LOG_WARN, ngx_http_autotls_mirror.log, 0,
                      "autotls: registry entry \"%s\" skipped: %s", file,
                      err);
    }

    atls_name_entry_free(&e);
}


/* the home here of a registry entry with a checked name; NULL: none */
static ngx_http_autotls_srv_conf_t *
ngx_http_autotls_mirror_home(atls_name_entry_t *e)
{
    char                         *id;
    ngx_uint_t                    ok;
    ngx_http_autotls_srv_conf_t  *ascf;
    ngx_http_autotls_mirror_t    *m = &ngx_http_autotls_mirror;

    ascf = ngx_http_autotls_dyn_find_home(ngx_http_autotls_mcf, e->home);
    if (ascf == NULL || e->name == NULL) {
        return NULL;
    }

    /* a checked name is its own certificate id; anything else is a
     * registry entry written by something that did not check it */
    id = atls_cert_id(e->name);
    ok = id != NULL && ngx_strcmp(id, e->name) == 0
         && ngx_strlen(e->name) <= NGX_HTTP_AUTOTLS_NAME_MAX;
    free(id);

    if (!ok) {
        ngx_log_error(NGX_LOG_WARN, m->log, 0,
                      "autotls: registry entry \"%s\" is not a host "
                      "name; not served", e->name);
        return NULL;
    }

    return ascf;
}


/* the first pass: no store access */
static void
ngx_http_autotls_mirror_one(atls_name_entry_t *e)
{
    size_t                         len, home_len;
    u_char                         home[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    ngx_atomic_uint_t              gen;
    ngx_http_autotls_srv_conf_t   *ascf;
    ngx_http_autotls_dyn_state_e   was, state;

    ascf = ngx_http_autotls_mirror_home(e);
    if (ascf == NULL) {
        /* not put: the sweep drops it if it was here */
        return;
    }

    len = ngx_strlen(e->name);

    was = ngx_http_autotls_dyn_peek((u_char *) e->name, len, &gen, home,
                                    &home_len);

    if (e->state == ATLS_NAME_REMOVED) {
        state = NGX_HTTP_AUTOTLS_DYN_REMOVED;

    } else if (home_len == ascf->issuer.len
               && ngx_memcmp(home, ascf->issuer.data, home_len) == 0
               && was != NGX_HTTP_AUTOTLS_DYN_REMOVED
               && was != NGX_HTTP_AUTOTLS_DYN_UNKNOWN)
    {
        /* known here already (deploys keep its state current) */
        state = was;

    } else {
        state = NGX_HTTP_AUTOTLS_DYN_CHECKING;
    }

    /* a new state is a new generation: workers load the name again */
    (void) ngx_http_autotls_dyn_put((u_char *) e->name, len,
                                    ascf->issuer.data, ascf->issuer.len, state,
                                    was != state);
}


/* a name not verified yet: is a certificate stored for it (the driver
 * reads its meta, so that the handshake path never does) */
static void
ngx_http_autotls_mirror_check(atls_name_entry_t *e)
{
    size_t             len, home_len;
    u_char             home[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    ngx_atomic_uint_t  gen;

    if (e->state != ATLS_NAME_ACTIVE || e->name == NULL) {
        return;
    }

    len = ngx_strlen(e->name);

    if (ngx_http_autotls_dyn_peek((u_char *) e->name, len, &gen, home,
                                  &home_len)
        != NGX_HTTP_AUTOTLS_DYN_CHECKING)
    {
        /* known already, deployed meanwhile, or not one of our homes' */
        return;
    }

    ngx_http_autotls_dyn_resolve((u_char *) e->name, len,
                                 atls_store_has_cert(ngx_http_autotls_store,
                                                     e->name)
                                 ? NGX_HTTP_AUTOTLS_DYN_SERVING
                                 : NGX_HTTP_AUTOTLS_DYN_PENDING);
}


/*
 * The names changed since the zone's mirror, from the registry's journal,
 * each read and checked at once.  NGX_DECLINED when the journal does not
 * cover them (then the registry is listed).
 */
static ngx_int_t
ngx_http_autotls_mirror_changes(ngx_http_autotls_mirror_t *m, uint64_t gen)
{
    int                 rc;
    char                err[512], **names;
    size_t              i, n;
    uint64_t            since;
    atls_name_entry_t   e;

    since = ngx_http_autotls_dyn_mirrored();
    if (since == 0 || since > gen) {
        return NGX_DECLINED;
    }

    names = NULL;
    n = 0;
    err[0] = '\0';

    if (atls_names_changed_since(ngx_http_autotls_store, since - 1, gen - 1,
                                 &names, &n, err, sizeof(err))
        != ATLS_STORE_OK)
    {
        return NGX_DECLINED;
    }

    for (i = 0; i < n; i++) {
        ngx_memzero(&e, sizeof(atls_name_entry_t));
        err[0] = '\0';

        rc = atls_names_get(ngx_http_autotls_store, names[i], &e, err,
                            sizeof(err));

        if (rc == ATLS_STORE_OK) {
            ngx_http_autotls_mirror_one(&e);
            ngx_http_autotls_mirror_check(&e);

        } else if (rc == ATLS_STORE_NOTFOUND) {
            /* purged after its grace period */
            ngx_http_autotls_dyn_del((u_char *) names[i], ngx_strlen(names[i]));

        } else {
            ngx_log_error(NGX_LOG_WARN, m->log, 0,
                          "autotls: dynamic name \"%s\": %s", names[i], err);
        }

        atls_name_entry_free(&e);
        free(names[i]);
    }

    free(names);

    ngx_http_autotls_dyn_set_mirrored(gen);

    ngx_log_error(NGX_LOG_INFO, m->log, 0,
                  "autotls: %uz dynamic names changed (registry generation "
                  "%uL)", n, gen - 1);

    return NGX_OK;
}
