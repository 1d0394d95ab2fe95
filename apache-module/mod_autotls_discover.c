/*
 * Discovery: the certificates this server serves that autotls does not
 * manage (SSLCertificateFile, or another module's files), so that the
 * status page, the metrics and the expiry alerts see them too.
 *
 * Where the file names come from.  Two ways were possible: walk the parsed
 * configuration tree (ap_conftree) for SSLCertificateFile under each
 * <VirtualHost>, or take the list mod_ssl itself loads.  The tree is only
 * the text: it does not say which <IfModule>/<IfDefine>/<IfFile> sections
 * held, nor what a virtual host inherits from the main server, nor the
 * files another module (mod_md) adds; redoing mod_ssl's merge would be a
 * copy that drifts.  mod_ssl's SSLSrvConfigRec is private (no header
 * ships it).  But mod_ssl hands each SSL host's final certificate file
 * list to the ssl_add_cert_files hook at start-up (mod_autotls_ssl.c uses
 * it for the fallbacks of managed hosts): that list is exactly what the
 * host serves, paths already made absolute.  So discovery listens there.
 *
 * That hook runs in mod_ssl's post_config, which `apache2 -t` does not run
 * (mod_ssl does not read certificate files there either): the findings are
 * logged at every start and restart, once, by the parent.  Each distinct
 * file is read once; the children inherit the list, and the watchdog child
 * writes it to the store (as the store's owner).
 */
#include <string.h>
#include <time.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_core.h"
#include "apr_strings.h"

#include "mod_autotls.h"

APLOG_USE_MODULE(autotls);

static atls_inventory_item_t *
discover_item(const char *path)
{
    atls_inventory_item_t *items;
    size_t i;

    for (i = 0; i < autotls_global.n_inventory; i++) {
        if (strcmp(autotls_global.inventory[i].path, path) == 0) {
            return &autotls_global.inventory[i];
        }
    }
    items = realloc(autotls_global.inventory,
                    (autotls_global.n_inventory + 1) * sizeof(*items));
    if (items == NULL) {
        abort();
    }
    autotls_global.inventory = items;
    items += autotls_global.n_inventory;
    memset(items, 0, sizeof(*items));
    if (atls_inventory_load_file(path, items) != 0) {
        abort();
    }
    if (items->path == NULL) {
        items->path = atls_strdup(path);
    }
    items->server = atls_strdup("apache");
    autotls_global.n_inventory++;
    return items;
}

void
autotls_discover_host(server_rec *s, const apr_array_header_t *cert_files)
{
    autotls_srv_conf_t *sc = autotls_config_get(s);
    const char **names = NULL, *where;
    size_t n = 0, j;
    int i;

    if (!autotls_global.collecting || sc->enabled == 1 || cert_files == NULL) {
        return;
    }
    /* the <VirtualHost> line, or the main server's */
    where = s->defn_name != NULL
            ? apr_psprintf(s->process->pconf, "%s:%u", s->defn_name, s->defn_line_number)
            : "main server";
    if (autotls_config_names(s->process->pconf, s, &names, &n) != 0) {
        n = 0;
    }
    for (i = 0; i < cert_files->nelts; i++) {
        atls_inventory_item_t *it = discover_item(APR_ARRAY_IDX(cert_files, i,
                                                                const char *));

        for (j = 0; j < n; j++) {
            atls_inventory_item_use(it, names[j], where);
        }
    }
}

static apr_status_t
discover_cleanup(void *data)
{
    atls_inventory_items_free(autotls_global.inventory, autotls_global.n_inventory);
    autotls_global.inventory = NULL;
    autotls_global.n_inventory = 0;
    autotls_global.collecting = 0;
    return APR_SUCCESS;
}

/* Called by autotls_post_config, before mod_ssl's: the previous start's
 * list went with the old configuration pool. */
void
autotls_discover_reset(apr_pool_t *pconf)
{
    autotls_global.inventory = NULL;
    autotls_global.n_inventory = 0;
    /* the trial start reads no files: the real one follows at once */
    autotls_global.collecting =
        ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_CREATE_PRE_CONFIG;
    apr_pool_cleanup_register(pconf, NULL, discover_cleanup, apr_pool_cleanup_null);
}

/* After mod_ssl has handed every host's files: each finding once. */
static int
autotls_discover_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                             server_rec *s)
{
    if (autotls_global.collecting) {
        autotls_global.collecting = 0;
        if (autotls_global.n_inventory > 0) {
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                         "autotls: monitoring %lu certificate file(s) it does not "
                         "manage", (unsigned long) autotls_global.n_inventory);
        }
        atls_inventory_log_findings(autotls_global.inventory, autotls_global.n_inventory,
                                    &autotls_global.notify.warn, time(NULL));
    }
    return OK;
}

void
autotls_discover_register_hooks(void)
{
    static const char *const after_ssl[] = { "mod_ssl.c", NULL };

    ap_hook_post_config(autotls_discover_post_config, after_ssl, NULL, APR_HOOK_LAST);
}
