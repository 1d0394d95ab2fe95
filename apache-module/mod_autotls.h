/*
 * mod_autotls: Apache httpd glue around the autotls core (common/).
 *
 * The parent (root) prepares the store and hands mod_ssl self-signed
 * fallbacks (one per key type) per host; one mod_watchdog singleton thread
 * hands every managed certificate to the core's scheduler (atls_sched.h,
 * kept across checks on the core's curl-multi/poll host loop,
 * host_loop.c), which decides what is due
 * and runs those orders several at once; every child serves the live
 * certificate from a per-child cache of parsed objects, reloaded only when
 * the generation number in shared memory changes.  The parent also notes
 * the certificate files of the SSL hosts autotls does not manage (as
 * mod_ssl hands them over) for the inventory, the status page and the
 * expiry alerts.
 */
#ifndef MOD_AUTOTLS_H
#define MOD_AUTOTLS_H

#include <stdint.h>
#include <pthread.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/evp.h>

#include "httpd.h"
#include "http_config.h"
#include "util_cfgtree.h"
#include "apr_optional.h"
#include "apr_optional_hooks.h"

#include "atls.h"
#include "atls_acme.h"
#include "atls_crypto.h"
#include "atls_event.h"
#include "atls_inventory.h"
#include "atls_job.h"
#include "atls_ondemand.h"
#include "atls_policy.h"
#include "atls_redis.h"
#include "atls_sched.h"
#include "atls_schedule.h"
#include "atls_store.h"

#define AUTOTLS_UNSET          -1
#define AUTOTLS_DEFAULT_STORE  "/var/lib/apache2/autotls"
#define AUTOTLS_DEFAULT_CHECK  apr_time_from_sec(60)
/* how often the driver looks whether anyone deployed into the store */
#define AUTOTLS_WATCH_INTERVAL apr_time_from_msec(500)
#define AUTOTLS_DEFAULT_PARALLEL 8
#define AUTOTLS_DEFAULT_PRELOAD  1
#define AUTOTLS_ACME_TLS_1     "acme-tls/1"
#define AUTOTLS_CHALLENGE_PATH "/.well-known/acme-challenge/"
#define AUTOTLS_API_HANDLER    "autotls-api"
/* the mod_watchdog instance of the renewal driver (one thread) */
#define AUTOTLS_WATCHDOG_NAME  "_autotls_"

/* AutoTLS On | Dynamic | OnDemand: what a host is the home of */
#define AUTOTLS_STATIC         0     /* its ServerName and ServerAliases */
#define AUTOTLS_DYNAMIC        1     /* also names registered at runtime */
#define AUTOTLS_ON_DEMAND      2     /* also names issued at first contact */

/* AutoTLSDynamicUnknown: a dynamic home's answer to a name it does not serve */
#define AUTOTLS_UNKNOWN_FALLBACK 0   /* the home's own certificate */
#define AUTOTLS_UNKNOWN_REJECT   1   /* the handshake is refused */

/* Parsed certificates of one managed name set, private to each child. */
typedef struct autotls_cache_s autotls_cache_t;

struct autotls_cache_s {
    pthread_rwlock_t  lock;
    int               loaded;      /* a load was attempted at `generation` */
    uint64_t          generation;
    size_t            n;           /* configured key types (slots) */
    size_t            n_real;      /* slots holding a CA certificate */
    int               real[ATLS_KEY_TYPE_MAX];  /* else the type's fallback */
    EVP_PKEY         *key[ATLS_KEY_TYPE_MAX];
    X509             *leaf[ATLS_KEY_TYPE_MAX];
    STACK_OF(X509)   *extra[ATLS_KEY_TYPE_MAX];
    /* AutoTLSCacheSize: the child's caches holding parsed objects, most
     * recently used first (under the list's own mutex) */
    autotls_cache_t  *lru_prev;
    autotls_cache_t  *lru_next;
    int               in_lru;
    /* the shm generation at which the store's change journal last named
     * this certificate (atomic): parsed at an older one, it is reloaded */
    uint64_t          changed;
};

typedef struct autotls_srv_conf_s autotls_srv_conf_t;

/* AutoTLSOnDemand* as written (AUTOTLS_UNSET / NULL: not written here) */
typedef struct {
    apr_array_header_t *allow;            /* AutoTLSOnDemandAllow, const char * */
    apr_array_header_t *deny;             /* AutoTLSOnDemandDeny */
    const char         *allow_file;       /* AutoTLSOnDemandAllowFile */
    const char         *ask_url;          /* AutoTLSOnDemandAsk */
    long                ask_timeout_ms;
    long                ask_cache_s;
    long                ask_fail_cache_s;
    long                cooldown_s;       /* AutoTLSOnDemandLimits */
    long                orders_per_min;
    long                per_domain_week;
    long                per_account_3h;
    long                max_pending;
    int                 allow_ip;         /* AutoTLSOnDemandIP */
    long                max_labels;       /* AutoTLSOnDemandMaxLabels */
    long                wait_ms;          /* AutoTLSOnDemandWait */
} autotls_od_settings_t;

struct autotls_srv_conf_s {
    server_rec         *s;
    int                 enabled;          /* AutoTLS (On, Dynamic, OnDemand: 1) */
    int                 dynamic;          /* AUTOTLS_STATIC, _DYNAMIC, _ON_DEMAND */
    int                 dynamic_unknown;  /* AutoTLSDynamicUnknown, AUTOTLS_UNKNOWN_* */
    long                cache_size;       /* AutoTLSCacheSize (global), 0: no bound */
    const char         *ca;               /* AutoTLSCA */
    const char         *ca_file;          /* AutoTLSCACertificateFile */
    apr_array_header_t *contact;          /* AutoTLSContact, const char * */
    int                 accept_terms;     /* AutoTLSAcceptTerms */
    int                 challenge;        /* AutoTLSChallenges, atls_challenge_type_t */
    const char         *dns_hook;         /* AutoTLSDnsHook */
    const char         *eab_kid;          /* AutoTLSEAB */
    const char         *eab_hmac;
    int                 n_keys;           /* AutoTLSKeys, 0 = unset */
    atls_key_type_t     keys[ATLS_KEY_TYPE_MAX];
    const char         *profile;          /* AutoTLSProfile */
    int                 profile_required;
    const char         *preferred_chain;  /* AutoTLSPreferredChain */
    int                 renew_set;        /* AutoTLSRenewBefore */
    atls_renew_policy_t renew;
    int                 stapling;         /* AutoTLSStapling (default On) */
    int                 must_staple;      /* AutoTLSMustStaple (default Off) */
    const char         *store_dir;        /* AutoTLSStoreDir (global) */
    atls_redis_conf_t  *redis;            /* AutoTLSStore redis://... (global),
                                             NULL: the filesystem store */
    apr_interval_time_t check_interval;   /* AutoTLSCheckInterval (global) */

    /* where "AutoTLS On" was written, and whether mod_ssl is on there */
    const char         *where_file;
    int                 where_line;
    int                 ssl_on;
    int                 ssl_stapling;     /* SSLUseStapling On there (or above) */

    /* filled in post_config for managed hosts */
    const char        **names;
    size_t              n_names;
    const char         *cert_id;
    autotls_srv_conf_t *owner;            /* host that drives this cert-id */
    atls_issuer_t      *issuer;           /* owner only; malloc'd members */
    autotls_cache_t    *cache;            /* owner's, shared by same-id hosts */

    int                 max_parallel;     /* AutoTLSMaxParallel (global) */
    int                 preload;          /* AutoTLSPreload (global) */

    /* events and policy (global: one notify.json, one policy.json per store) */
    int                 warn_set;         /* AutoTLSWarn */
    atls_warn_t         warn;
    const char         *notify_cmd;       /* AutoTLSNotifyCmd */
    long                notify_timeout;   /* AutoTLSNotifyTimeout, seconds */
    const char         *webhook;          /* AutoTLSNotifyWebhook URL */
    apr_array_header_t *webhook_headers;  /* its "Name: value", const char * */
    long                notify_queue;     /* AutoTLSNotifyQueue */
    atls_policy_t      *policy;           /* AutoTLSPolicy*, NULL: none */
    autotls_od_settings_t od;             /* AutoTLSOnDemand* */
};

/* Process-wide state, rebuilt on every (re)start in post_config. */
typedef struct {
    server_rec         *main_server;
    const char         *store_dir;        /* with Redis: the node's mirror */
    const atls_redis_conf_t *redis;       /* AutoTLSStore redis://..., or NULL */
    apr_interval_time_t check_interval;
    apr_array_header_t *hosts;            /* autotls_srv_conf_t * (owners only) */
    volatile uint64_t  *generation;       /* in apr_shm, shared by all children */
    int                 any_tls_alpn;
    int                 max_parallel;     /* orders in flight at once */
    int                 preload;          /* fill each child's cache at start */
    long                cache_size;       /* parsed name sets per child, 0: no bound */
    apr_array_header_t *homes;            /* autotls_srv_conf_t * of AutoTLS
                                             Dynamic/OnDemand hosts, first = the
                                             home of entries without one */
    atls_notify_conf_t  notify;           /* AutoTLSWarn, AutoTLSNotify* */
    const atls_policy_t *policy;          /* the main server's, may be NULL */
    /* SSLCertificateFile of the hosts autotls does not manage (discovery,
     * filled in the parent, written to the store by the watchdog child) */
    atls_inventory_item_t *inventory;
    size_t              n_inventory;
    int                 collecting;       /* mod_ssl is handing us cert files */
    /* on demand: the host new names are requested for (NULL: none), and a
     * counter in the shared memory that children move after writing a
     * request, so that the watchdog looks at once */
    autotls_srv_conf_t *od_home;
    volatile uint64_t  *od_requests;
} autotls_global_t;

extern module AP_MODULE_DECLARE_DATA autotls_module;
extern autotls_global_t autotls_global;

/* Per-directory: the admin API's token (AutoTLSApiToken). */
typedef struct {
    const char         *api_token;        /* file, NULL: none */
} autotls_dir_conf_t;

/* mod_autotls_config.c */
extern const command_rec autotls_cmds[];
void *autotls_config_create_dir(apr_pool_t *p, char *dir);
void *autotls_config_merge_dir(apr_pool_t *p, void *basev, void *addv);
void *autotls_config_create_srv(apr_pool_t *p, server_rec *s);
void *autotls_config_merge_srv(apr_pool_t *p, void *basev, void *addv);
autotls_srv_conf_t *autotls_config_get(server_rec *s);
/* mod_autotls_config_check.c */
int autotls_config_check(apr_pool_t *p, server_rec *base);
int autotls_config_names(apr_pool_t *p, server_rec *s, const char ***names, size_t *n);
atls_issuer_t *autotls_config_issuer(apr_pool_t *p, autotls_srv_conf_t *sc);

/* mod_autotls_config.c: a server-wide positive duration, error naming the directive */
const char *autotls_cmd_seconds(cmd_parms *cmd, const char *v, long *secs);
/* ... a whole number from lo to hi */
const char *autotls_cmd_number(cmd_parms *cmd, const char *v, long lo, long hi, long *n);

/* mod_autotls_notify.c: AutoTLSWarn, AutoTLSNotify*, AutoTLSPolicy* */
const char *autotls_set_warn(cmd_parms *cmd, void *dc, int argc, char *const argv[]);
const char *autotls_set_notify_cmd(cmd_parms *cmd, void *dc, const char *v);
const char *autotls_set_notify_timeout(cmd_parms *cmd, void *dc, const char *v);
const char *autotls_set_webhook(cmd_parms *cmd, void *dc, int argc, char *const argv[]);
const char *autotls_set_notify_queue(cmd_parms *cmd, void *dc, const char *v);
const char *autotls_set_policy_keys(cmd_parms *cmd, void *dc, const char *v);
const char *autotls_set_policy_min_rsa(cmd_parms *cmd, void *dc, const char *v);
const char *autotls_set_policy_ca(cmd_parms *cmd, void *dc, const char *v);
const char *autotls_set_policy_names(cmd_parms *cmd, void *dc, const char *v);
const char *autotls_set_policy_max_names(cmd_parms *cmd, void *dc, const char *v);
/* The core's notification settings of the main server conf mc (members
 * malloc'd, freed with pool p). */
void autotls_notify_conf_build(apr_pool_t *p, const autotls_srv_conf_t *mc,
                               atls_notify_conf_t *c);
/* A managed host against the policy: 0, or -1 with the message (naming the
 * rule and the directive that set it) in p. */
int autotls_policy_check_host(apr_pool_t *p, const autotls_srv_conf_t *sc,
                              const atls_policy_t *pol, const char **msg);

/* mod_autotls_discover.c: certificates of the hosts autotls does not manage */
/* mod_ssl's add_cert_files time: note s's certificate files. */
void autotls_discover_host(server_rec *s, const apr_array_header_t *cert_files);
/* post_config before mod_ssl's: forget the last start's; after it: read
 * and log (the real start only). */
void autotls_discover_reset(apr_pool_t *pconf);
void autotls_discover_register_hooks(void);

/* mod_autotls_drive.c: the watchdog callbacks around the scheduler */
apr_status_t autotls_drive_start(apr_pool_t *p, server_rec *s);
/* child_init: a stopping child waits for a check in progress to end */
void autotls_drive_child_init(apr_pool_t *pchild);
uint64_t autotls_generation_get(void);
/* Publishes the store generation of the driver's store st (its mirror's
 * with Redis) to the children; the watchdog thread only. */
void autotls_generation_publish(atls_store_t *st);

/* mod_autotls_config.c: AutoTLSStoreDir (and AutoTLSStore DIR) */
const char *autotls_set_store_dir(cmd_parms *cmd, void *dc, const char *v);

/* mod_autotls_cluster.c: AutoTLSStore redis://... (issue 12) */
const char *autotls_set_store(cmd_parms *cmd, void *dc, int argc, char *const argv[]);
/* check_config: the key file (readable by the children's user), and the
 * combinations Redis does not support, refused by name */
int autotls_cluster_check(apr_pool_t *p, server_rec *base);
/* The driver's watchdog, every AUTOTLS_CLUSTER_TICK: the subscriber and
 * the heartbeat between checks (a mod_watchdog callback). */
#define AUTOTLS_CLUSTER_TICK   apr_time_from_msec(100)
apr_status_t autotls_cluster_watch_cb(int state, void *data, apr_pool_t *ptemp);
/* The driver (watchdog thread): the mirror's store, synced with Redis
 * when it answers; NULL when the mirror cannot be opened (logged). */
atls_store_t *autotls_cluster_open(server_rec *s);
/* Leaves the member registry and frees the mirror. */
void autotls_cluster_close(void);
/* The local store behind st: the mirror directory of the driver's store,
 * else st itself (what the children's generation is read from). */
atls_store_t *autotls_cluster_local(atls_store_t *st);
/* 1 while Redis cannot be reached: no check starts orders. */
int autotls_cluster_paused(void);
/* 1 once after Redis came (back): the driver runs a check now. */
int autotls_cluster_resumed(void);
/* The subscriber and the heartbeat; in_run (from the scheduler's loop, in
 * a run of the driver): also the challenge acks awaited. */
void autotls_cluster_tick(int in_run);
/* Challenge answers: in Redis and every node's mirror when st is the
 * mirror's store, else atls_store_put/del_challenge on st. */
int autotls_cluster_put_challenge(atls_store_t *st, atls_challenge_type_t t, const char *key,
                                  const char *data, size_t len, char *why, size_t whylen);
int autotls_cluster_del_challenge(atls_store_t *st, atls_challenge_type_t t, const char *key,
                                  char *why, size_t whylen);
/* The scheduler's publish_wait/publish_cancel (atls_sched.h): the CA is
 * asked to validate once every live node acked c (reported to sched from
 * autotls_cluster_tick), or after ATLS_MIRROR_ACK_WAIT_MS. */
int autotls_cluster_publish_wait(atls_sched_t *sched, atls_sched_op_t *op,
                                 const atls_challenge_t *c, char *why, size_t whylen);
void autotls_cluster_publish_cancel(void *ctx, atls_sched_op_t *op);
/* The loop's wake (atls_loop_conf_t): ms until an awaited challenge's
 * acks are polled again (or the next reconnection), and the subscriber's
 * fd, so that a run's wait ends when an announcement comes. */
long autotls_cluster_wake(void *ctx, int *fd, int *events);

/* mod_autotls_ssl.c */
void autotls_ssl_register_hooks(void);
atls_store_t *autotls_store_open(server_rec *s);

/* mod_autotls_cache.c */
/* (Re)parses sc's name set from the store; call with the write lock held. */
void autotls_cache_load(autotls_srv_conf_t *sc, autotls_cache_t *c, uint64_t gen);
/* (Re)parses certificate id with the key types of home o's issuer (a
 * dynamic name); call with c's write lock held.  The fallback of a key
 * type without a certificate is left empty (the home's serves). */
void autotls_cache_load_id(autotls_srv_conf_t *o, const char *id, autotls_cache_t *c,
                           uint64_t gen);
/* Frees c's parsed objects (c->loaded = 0); c's write lock held. */
void autotls_cache_clear(autotls_cache_t *c);
/* AutoTLSCacheSize: c (read or write locked by the caller) was just used;
 * evicts the least recently used others beyond the bound. */
void autotls_cache_touch(autotls_cache_t *c);
/* Child start: fills every cache from a background thread (AutoTLSPreload). */
void autotls_preload_start(apr_pool_t *pchild, server_rec *s);
/* 1 when c (locked by the caller) must be parsed again at shm generation
 * gen: never loaded, or the store's change journal named its certificate
 * since it was (or the journal did not reach back).  Reads the journal
 * once per generation per child. */
int autotls_cache_stale(autotls_cache_t *c, uint64_t gen);
/* c goes (a removed dynamic name): out of the AutoTLSCacheSize list, its
 * objects freed; c's write lock held. */
void autotls_cache_forget(autotls_cache_t *c);
/* child_init: which static certificate ids this child serves, and the
 * generation its journal reading starts from. */
void autotls_changes_child_init(apr_pool_t *pchild);

/* mod_autotls_dynamic.c: names registered at runtime, per child */
typedef enum {
    AUTOTLS_DYN_UNKNOWN = 0,     /* not registered for this home */
    AUTOTLS_DYN_PENDING,         /* registered, no certificate yet */
    AUTOTLS_DYN_SERVING,         /* its certificate is in the store */
    AUTOTLS_DYN_REMOVED          /* removed: no longer served */
} autotls_dyn_state_e;

/* mod_autotls_registry.c: the child's copy of the registry */
/* The dynamic home a registry entry's home names (NULL or "": the first
 * one), or NULL when this server has none such. */
autotls_srv_conf_t *autotls_dyn_home(const char *home);
/* The registry's word on a lower-case name for home (an owner): UNKNOWN,
 * PENDING (registered; id, idlen >= 256, gets its certificate id) or
 * REMOVED.  Looks at the registry again first when the store generation
 * moved. */
autotls_dyn_state_e autotls_registry_lookup(autotls_srv_conf_t *home, const char *name,
                                            char *id, size_t idlen);
void autotls_registry_child_init(apr_pool_t *pchild);
/* The state of a lower-case name for home in this child's copy of the
 * registry (refreshed when the store generation moved). */
autotls_dyn_state_e autotls_dyn_state(autotls_srv_conf_t *home, const char *name);
/* Cert callback of a dynamic home: installs name's certificate.  1 done,
 * 0 the name is not served here (the caller applies
 * AutoTLSDynamicUnknown), -1 OpenSSL refused it. */
int autotls_dyn_serve(SSL *ssl, autotls_srv_conf_t *home, const char *name);
void autotls_dyn_child_init(apr_pool_t *pchild);
/* The change journal named dynamic certificate id at shm generation gen:
 * its parsed entry, if this child has one, is stale.  0 when it has none. */
int autotls_dyn_changed(const char *id, uint64_t gen);
/* A name's registry entry was removed (or purged): its parsed entry goes
 * (freed once no handshake uses it). */
void autotls_dyn_forget(const char *id);
/* post_config: warns about a dynamic home that is not the first virtual
 * host of its address (mod_ssl gives unknown names to that one). */
void autotls_dyn_check_homes(server_rec *base);

/* mod_autotls_api.c: SetHandler autotls-api */
void autotls_api_register_hooks(void);

/* mod_autotls_stapling.c */
/* Attaches the stored OCSP response to a real leaf of certificate id just
 * parsed (rest: the chain after it, issuer first) when o staples; a
 * refused one is logged. */
void autotls_staple_attach(autotls_srv_conf_t *o, const char *id, atls_store_t *st,
                           atls_key_type_t kt, X509 *leaf, STACK_OF(X509) *rest);
/* mod_ssl's init_server time: the status callback on an AutoTLS host's context. */
void autotls_stapling_init_ctx(autotls_srv_conf_t *sc, SSL_CTX *ctx);
/* 1 when SSLUseStapling On applies to this <VirtualHost> (NULL: main server). */
int autotls_stapling_conflict(const ap_directive_t *vhost);

/* mod_autotls_ondemand.c: AutoTLSOnDemand* */
#define AUTOTLS_IS_ON_DEMAND(sc)  ((sc)->enabled == 1 && (sc)->dynamic == AUTOTLS_ON_DEMAND)
void autotls_ondemand_init(autotls_od_settings_t *o);
void autotls_ondemand_merge(autotls_od_settings_t *mrg, const autotls_od_settings_t *base,
                            const autotls_od_settings_t *add);
void autotls_ondemand_conf(apr_pool_t *p, const autotls_od_settings_t *o,
                           atls_od_conf_t *c);
int autotls_ondemand_check(apr_pool_t *p, server_rec *base);
void autotls_ondemand_post_config(server_rec *base);
atls_od_t *autotls_ondemand_gate_new(apr_pool_t *p, atls_store_t *st);
const char *autotls_od_set_allow(cmd_parms *cmd, void *dc, const char *v);
const char *autotls_od_set_deny(cmd_parms *cmd, void *dc, const char *v);
const char *autotls_od_set_allow_file(cmd_parms *cmd, void *dc, const char *v);
const char *autotls_od_set_ask(cmd_parms *cmd, void *dc, int argc, char *const argv[]);
const char *autotls_od_set_limits(cmd_parms *cmd, void *dc, int argc, char *const argv[]);
const char *autotls_od_set_ip(cmd_parms *cmd, void *dc, int flag);
const char *autotls_od_set_max_labels(cmd_parms *cmd, void *dc, const char *v);
const char *autotls_od_set_wait(cmd_parms *cmd, void *dc, const char *v);

/* mod_autotls_odwait.c: the first handshake of a name nobody registered */
/* child_init: the child's gate (when a host is on demand). */
void autotls_odwait_child_init(apr_pool_t *pchild, server_rec *s);
/* In the certificate callback of on-demand home sc, for a name (lower
 * case, from SNI) no configuration covers.  request 1: not registered;
 * the child's gate decides cheaply, a name that may be allowed is
 * requested from the watchdog.  request 0: registered without its
 * certificate yet; only waits while its order runs.  Then this thread
 * waits (AutoTLSOnDemandWait) until the child serves the name's
 * certificate: 1 (serve it now), or 0 (serve the fallback). */
int autotls_odwait_handshake(autotls_srv_conf_t *sc, const char *sni, int request);
/* The watchdog: 1 when a child wrote a request since the last call. */
int autotls_odwait_requested(void);

/* mod_autotls_challenge.c */
void autotls_challenge_register_hooks(void);
int autotls_name_ok(const char *name);

/* mod_autotls_status.c */
void autotls_status_register_hooks(void);

#endif
