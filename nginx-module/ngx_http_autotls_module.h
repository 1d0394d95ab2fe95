/*
 * autotls for nginx: private declarations shared by the module's files.
 *
 * The core (common/) does the certificate work and its scheduler makes
 * every renewal decision; this module hosts it: configuration, a shared
 * memory zone (driver lock, generation counters, pending challenges), the
 * scheduler on the event loop of one elected process (a worker; on a
 * cluster node, the cache manager process) with its HTTP, hooks and timer
 * as nginx events, which also watches the store for deploys by others, and the TLS callbacks that serve certificates from a per-worker
 * cache.
 */

#ifndef _NGX_HTTP_AUTOTLS_MODULE_H_INCLUDED_
#define _NGX_HTTP_AUTOTLS_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif

#include "atls.h"
#include "atls_acme.h"
#include "atls_b64.h"
#include "atls_crypto.h"
#include "atls_event.h"
#include "atls_http.h"
#include "atls_inventory.h"
#include "atls_mirror.h"
#include "atls_names.h"
#include "atls_ondemand.h"
#include "atls_policy.h"
#include "atls_redis.h"
#include "atls_sched.h"
#include "atls_status.h"
#include "atls_store.h"


#define NGX_HTTP_AUTOTLS_DEFAULT_STORE  "/var/lib/nginx/autotls"
#define NGX_HTTP_AUTOTLS_DEFAULT_SHM    (1024 * 1024)
#define NGX_HTTP_AUTOTLS_ZONE_NAME      "autotls"
#define NGX_HTTP_AUTOTLS_NAME_MAX       255
#define NGX_HTTP_AUTOTLS_TOKEN_MAX      128

/* a driver that has not refreshed its heartbeat for this long is replaced */
#define NGX_HTTP_AUTOTLS_STALE          5
#define NGX_HTTP_AUTOTLS_ELECT_MS       1000
/* how often the driver looks whether anyone deployed into the store */
#define NGX_HTTP_AUTOTLS_WATCH_MS       500


typedef struct {
    ngx_str_t                       name;
    atls_issuer_t                   is;        /* malloc'd members */
    unsigned                        key_set:1;
    u_char                         *file;
    ngx_uint_t                      line;
} ngx_http_autotls_issuer_t;


typedef struct {
    ngx_uint_t                      index;     /* shm counters, worker cache */
    ngx_http_autotls_issuer_t      *issuer;
    char                          **names;     /* NULL-terminated */
    size_t                          n_names;
    char                           *id;        /* malloc'd cert-id */
    u_char                         *file;      /* the "autotls" directive */
    ngx_uint_t                      line;
} ngx_http_autotls_cert_t;


/* a certificate record that is no configured certificate (a dynamic
 * home's, a dynamic name's) */
#define NGX_HTTP_AUTOTLS_NO_INDEX    ((ngx_uint_t) -1)

/* per_name: one certificate per name, found by SNI */
typedef struct {
    ngx_str_t                       name;      /* lowercase */
    ngx_http_autotls_cert_t        *cert;
} ngx_http_autotls_name_t;


/* a server block that is the home of names registered at runtime */
#define NGX_HTTP_AUTOTLS_STATIC      0
#define NGX_HTTP_AUTOTLS_DYNAMIC     1     /* autotls ISSUER dynamic; */
#define NGX_HTTP_AUTOTLS_ON_DEMAND   2     /* autotls ISSUER on_demand; */

/* what a dynamic home answers for a name it does not serve */
#define NGX_HTTP_AUTOTLS_UNKNOWN_FALLBACK  0
#define NGX_HTTP_AUTOTLS_UNKNOWN_REJECT    1

typedef struct {
    ngx_str_t                       issuer;    /* empty: autotls not used */
    ngx_array_t                    *names;     /* ngx_str_t, explicit names */
    ngx_http_autotls_cert_t        *cert;      /* the one, or the first */
    ngx_http_autotls_name_t        *by_name;   /* per_name: sorted by name */
    ngx_uint_t                      n_by_name;
    ngx_flag_t                      per_name;
    ngx_uint_t                      dynamic;   /* NGX_HTTP_AUTOTLS_STATIC... */
    ngx_uint_t                      unknown;   /* autotls_dynamic_unknown */
    u_char                         *unknown_file;  /* where it was set */
    ngx_uint_t                      unknown_line;
    ngx_http_autotls_cert_t        *home;      /* dynamic: the home's issuer
                                                  and its fallback names */
    u_char                         *file;
    ngx_uint_t                      line;
} ngx_http_autotls_srv_conf_t;


typedef struct {
    ngx_flag_t                      status;
    ngx_flag_t                      api;       /* autotls_api */
    ngx_str_t                       api_token; /* autotls_api_token FILE */
} ngx_http_autotls_loc_conf_t;


typedef struct {
    ngx_array_t                     issuers;   /* ngx_http_autotls_issuer_t */
    ngx_array_t                     certs;     /* ngx_http_autotls_cert_t * */
    ngx_str_t                       store;     /* a directory: the store,
                                                  or a Redis store's mirror */
    atls_redis_conf_t              *redis;     /* autotls_store redis://,
                                                  or NULL */
    unsigned                        store_set:1;   /* autotls_store given */
    ngx_msec_t                      check_interval;
    ngx_uint_t                      max_parallel;
    ngx_flag_t                      preload;
    size_t                          shm_size;
    ngx_shm_zone_t                 *zone;
    ngx_str_t                       fallback_cert;  /* "data:PEM" */
    ngx_str_t                       fallback_key;
    SSL_CTX                        *challenge_ctx;

    /* autotls_warn, autotls_notify_*: malloc'd members */
    atls_notify_conf_t              notify;
    time_t                          notify_timeout;
    ngx_uint_t                      notify_queue;
    unsigned                        warn_set:1;

    atls_policy_t                  *policy;        /* autotls_policy, or NULL */

    /* names at runtime and on demand */
    ngx_uint_t                      cache_max;     /* autotls_cache max=N;
                                                      0: unbounded */
    ngx_uint_t                      names_max;     /* dynamic names the zone
                                                      is sized for */
    ngx_array_t                     homes;         /* dynamic homes:
                                                      ngx_http_autotls_srv_
                                                      conf_t * */
    atls_od_conf_t                  od;            /* autotls_on_demand_*:
                                                      malloc'd members */
    ngx_msec_t                      od_wait;       /* autotls_on_demand_wait */

    /* discovered ssl_certificate files (malloc'd, inherited by workers) */
    atls_inventory_item_t          *inventory;
    size_t                          n_inventory;

    unsigned                        api_used:1;    /* some autotls_api */
#if (NGX_THREADS)
    ngx_thread_pool_t              *api_pool;      /* a cluster node's API
                                                      talks to Redis there */
#endif
} ngx_http_autotls_main_conf_t;


/* ---- shared memory ------------------------------------------------------ */

typedef struct ngx_http_autotls_chal_s  ngx_http_autotls_chal_t;

struct ngx_http_autotls_chal_s {
    ngx_http_autotls_chal_t        *next;
    atls_challenge_type_t           type;
    size_t                          name_len;
    u_char                          name[NGX_HTTP_AUTOTLS_NAME_MAX + 1];
    size_t                          token_len;
    u_char                          token[NGX_HTTP_AUTOTLS_TOKEN_MAX];
    u_char                         *data;      /* key authz, or cert DER + key DER */
    size_t                          data_len;
    size_t                          cert_len;  /* tls-alpn-01: DER cert length */
};

/* a certificate's generation counter, found by cert-id */
typedef struct {
    ngx_str_node_t                  sn;        /* key: crc32 of the id */
    ngx_atomic_t                    gen;
    uint64_t                        seen;      /* meta generation + 1 the
                                                  driver last saw; 0: unknown */
    u_char                          id[1];
} ngx_http_autotls_gen_t;

typedef struct {
    ngx_pid_t                       driver_pid;
    time_t                          heartbeat;
    ngx_rbtree_t                    gens;      /* ngx_http_autotls_gen_t */
    ngx_rbtree_node_t               sentinel;
    ngx_http_autotls_chal_t        *chals;
    uint64_t                        store_gen; /* + 1 the driver last saw;
                                                  0: not looked yet */
    void                           *dyn;       /* the dynamic names'
                                                  table (_dynamic.c) */
} ngx_http_autotls_shctx_t;

typedef struct {
    ngx_http_autotls_shctx_t       *sh;
    ngx_slab_pool_t                *shpool;
    ngx_array_t                    *certs;     /* this cycle's, by index */
    ngx_uint_t                      ncerts;
    ngx_http_autotls_gen_t        **gens;      /* by index, into sh->gens */
} ngx_http_autotls_shm_t;

/* how much of the zone is in use, for the status page */
typedef struct {
    size_t                          size;      /* the zone */
    size_t                          pages;     /* slab pages in the zone */
    size_t                          pages_free;
    size_t                          slots;     /* live small allocations */
    size_t                          slot_bytes;
} ngx_http_autotls_shm_usage_t;


extern ngx_module_t  ngx_http_autotls_module;

/* a stand-in for ev->data of timer-only events (fd -1) */
extern ngx_connection_t              ngx_http_autotls_timer_conn;

/* the worker's view, set in init_process */
extern ngx_http_autotls_main_conf_t  *ngx_http_autotls_mcf;
extern atls_store_t                  *ngx_http_autotls_store;


/* conf (autotls), issuer_conf (autotls_issuer), resolve (after http{}), log */
char *ngx_http_autotls_issuer_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_autotls_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
/* a malloc'd copy (the core frees its members with free()) */
char *ngx_http_autotls_cstr(ngx_str_t *s);
/* cf->handler of a block: the keyword's entry in cmds, its argument count
 * checked; block names the block in messages */
char *ngx_http_autotls_block_cmd(ngx_conf_t *cf, ngx_command_t *cmds,
    const char *block, void *conf);
ngx_int_t ngx_http_autotls_resolve(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf);
void ngx_http_autotls_log_install(ngx_log_t *log);
/* core server configurations with a "listen ... ssl" (an address may hold
 * a server more than once) */
ngx_array_t *ngx_http_autotls_ssl_servers(ngx_conf_t *cf);
ngx_uint_t ngx_http_autotls_listens_ssl(ngx_array_t *ssl_servers,
    ngx_http_core_srv_conf_t *cscf);

/* notify: autotls_warn, autotls_notify_* */
char *ngx_http_autotls_warn(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_autotls_notify_exec(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_autotls_notify_webhook(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_autotls_notify_init(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf);

/* policy: the autotls_policy block and the check of every certificate */
char *ngx_http_autotls_policy_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_autotls_policy_check(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf);

/* inventory: ssl_certificate files autotls does not manage */
ngx_int_t ngx_http_autotls_discover(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf);
/* process: the hooks of the module table (ngx_http_autotls_process.c) */
ngx_int_t ngx_http_autotls_init_module(ngx_cycle_t *cycle);
ngx_int_t ngx_http_autotls_init_process(ngx_cycle_t *cycle);
void ngx_http_autotls_exit_process(ngx_cycle_t *cycle);
/* the module has work: managed certificates, or static ones to monitor in
 * a store named by autotls_store */
ngx_uint_t ngx_http_autotls_in_use(ngx_http_autotls_main_conf_t *amcf);
/* what a worker and the driver's process open first: conf, log, curl, store */
ngx_int_t ngx_http_autotls_process_open(ngx_cycle_t *cycle,
    ngx_http_autotls_main_conf_t *amcf);

/* shm */
ngx_int_t ngx_http_autotls_shm_add(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf);
ngx_http_autotls_shm_t *ngx_http_autotls_shm(void);
ngx_atomic_uint_t ngx_http_autotls_shm_gen(ngx_uint_t index);
ngx_int_t ngx_http_autotls_shm_usage(ngx_http_autotls_shm_usage_t *u);
ngx_int_t ngx_http_autotls_shm_observe(ngx_uint_t index, uint64_t gen,
    ngx_uint_t force);
uint64_t ngx_http_autotls_shm_store_gen(void);
void ngx_http_autotls_shm_set_store_gen(uint64_t gen);
/* 1 when this process holds (or just took) the driver lock */
ngx_int_t ngx_http_autotls_shm_elect(time_t now, ngx_uint_t *took);
void ngx_http_autotls_shm_resign(void);
ngx_int_t ngx_http_autotls_shm_chal_add(const atls_challenge_t *c,
    const u_char *data, size_t data_len, size_t cert_len, char *why,
    size_t whylen);
void ngx_http_autotls_shm_chal_del(const atls_challenge_t *c);
void ngx_http_autotls_shm_chal_clear(void);
/* copies the data of a challenge into a malloc'd buffer; NULL if none */
u_char *ngx_http_autotls_shm_chal_get(atls_challenge_type_t type,
    const u_char *key, size_t key_len, size_t *len, size_t *cert_len);

/* module: helpers for the worker's timer events */
/* a timer-only event that never keeps an exiting worker alive */
void ngx_http_autotls_event_init(ngx_event_t *ev,
    ngx_event_handler_pt handler, ngx_log_t *log);
/* ngx_current_msec does not move inside one event handler */
ngx_msec_t ngx_http_autotls_msec(void);

/* module: nginx connections on sockets a library owns (curl, Redis) */
uintptr_t ngx_http_autotls_socket_ino(ngx_socket_t fd);
ngx_int_t ngx_http_autotls_socket_want(ngx_event_t *ev, ngx_int_t event,
    ngx_uint_t want);
void ngx_http_autotls_socket_free(ngx_connection_t *c, uintptr_t ino);

/* a curl transfer or a hook run of the scheduler, on a queue */
typedef struct {
    ngx_queue_t                     queue;
    atls_sched_op_t                *op;
} ngx_http_autotls_op_t;

ngx_http_autotls_op_t *ngx_http_autotls_op_find(ngx_queue_t *ops,
    atls_sched_op_t *op);

/* driver: election and the scheduler's host */
ngx_int_t ngx_http_autotls_driver_init(ngx_cycle_t *cycle);
void ngx_http_autotls_driver_exit(ngx_cycle_t *cycle);
/* the store generation moved: events others queued may wait for delivery */
void ngx_http_autotls_driver_store_changed(void);
/* a cluster node: its mirror is in line with Redis, the scheduler runs /
 * Redis is gone, the scheduler stops (the driver keeps the lock) */
void ngx_http_autotls_driver_resume(void);
void ngx_http_autotls_driver_pause(void);

/* helper: a cluster node's driver runs in nginx's cache manager process */
ngx_uint_t ngx_http_autotls_helper_drives(ngx_cycle_t *cycle,
    ngx_http_autotls_main_conf_t *amcf);
ngx_int_t ngx_http_autotls_helper_add(ngx_cycle_t *cycle,
    ngx_http_autotls_main_conf_t *amcf);

/* curl: the scheduler's HTTP on curl multi (atls_sched_host_t callbacks) */
ngx_int_t ngx_http_autotls_curl_init(atls_sched_t *sched,
    ngx_uint_t max_host_conns, ngx_log_t *log);
void ngx_http_autotls_curl_cleanup(void);
int ngx_http_autotls_curl_send(void *ctx, atls_sched_op_t *op,
    const atls_http_opts_t *o, const atls_http_request_t *req);
void ngx_http_autotls_curl_cancel(void *ctx, atls_sched_op_t *op);

/* hook: the scheduler's hook programs (atls_sched_host_t callbacks) */
void ngx_http_autotls_hook_init(atls_sched_t *sched, ngx_log_t *log);
void ngx_http_autotls_hook_cleanup(void);
int ngx_http_autotls_hook_start(void *ctx, atls_sched_op_t *op,
    char *const argv[], char *why, size_t whylen);
void ngx_http_autotls_hook_kill(void *ctx, atls_sched_op_t *op);
int ngx_http_autotls_exec_start(void *ctx, atls_sched_op_t *op,
    char *const argv[], const char *input, size_t len, char *why,
    size_t whylen);

/* watch: deploys by anyone (driver, CLI, another node) reach the workers */
void ngx_http_autotls_watch_init(ngx_log_t *log);
void ngx_http_autotls_watch_start(void);
/* the store generation moved (the mirror took a certificate): look now */
void ngx_http_autotls_watch_now(void);
void ngx_http_autotls_watch_stop(void);
void ngx_http_autotls_watch_deployed(ngx_http_autotls_cert_t *cert);

/* redis_conf: autotls_store DIR | redis://... */
char *ngx_http_autotls_store_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* cluster: the driver's mirror of a Redis store (ngx_http_autotls_cluster.c)
 * and the cluster's challenges (ngx_http_autotls_cluster_chal.c) */
ngx_int_t ngx_http_autotls_cluster_start(ngx_log_t *log);
void ngx_http_autotls_cluster_stop(void);
/* the mirror's store for the driver's scheduler; NULL when not a node */
atls_store_t *ngx_http_autotls_cluster_store(void);
atls_mirror_t *ngx_http_autotls_cluster_mirror(void);
void ngx_http_autotls_cluster_attach(atls_sched_t *sched);
void ngx_http_autotls_cluster_chal_stop(void);
int ngx_http_autotls_cluster_respond(void *ctx, int add,
    atls_challenge_type_t t, const char *key, const char *data, size_t len,
    char *why, size_t whylen);
int ngx_http_autotls_cluster_publish(const atls_challenge_t *ch, char *why,
    size_t len);
void ngx_http_autotls_cluster_withdraw(const atls_challenge_t *ch);
int ngx_http_autotls_publish_wait(void *ctx, atls_sched_op_t *op,
    void *cert_data, const atls_challenge_t *c, char *why, size_t whylen);
void ngx_http_autotls_publish_cancel(void *ctx, atls_sched_op_t *op);

/* ssl */
ngx_http_autotls_cert_t *ngx_http_autotls_find(
    ngx_http_autotls_srv_conf_t *ascf, const u_char *name, size_t len);
ngx_int_t ngx_http_autotls_ssl_setup(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf);
ngx_int_t ngx_http_autotls_ssl_init_worker(ngx_cycle_t *cycle);
void ngx_http_autotls_ssl_exit_worker(void);
ngx_int_t ngx_http_autotls_fallback(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf);

/* cache: the worker's parsed certificates, bounded by autotls_cache */
typedef struct ngx_http_autotls_entry_s  ngx_http_autotls_entry_t;

ngx_int_t ngx_http_autotls_cache_init_worker(ngx_cycle_t *cycle);
void ngx_http_autotls_cache_exit_worker(void);
/* a configured certificate's entry, loaded again when its counter moved */
ngx_http_autotls_entry_t *ngx_http_autotls_cache_cert(
    ngx_http_autotls_cert_t *cert, ngx_log_t *log);
/* a dynamic name's entry (home: its home's record), loaded again when gen
 * (its counter in the zone) moved */
ngx_http_autotls_entry_t *ngx_http_autotls_cache_dyn(const u_char *key,
    size_t len, ngx_http_autotls_cert_t *home, ngx_atomic_uint_t gen,
    ngx_log_t *log);
void ngx_http_autotls_cache_forget(const u_char *name, size_t len);
/* the entry's certificates, or its self-signed fallback: 1/0 as cert_cb */
int ngx_http_autotls_cache_use(SSL *ssl, ngx_connection_t *c,
    ngx_http_autotls_entry_t *e);
void ngx_http_autotls_cache_stats(ngx_uint_t *count, ngx_uint_t *max,
    ngx_uint_t *evicted);

/* stapling: OCSP responses on the handshake */
ngx_int_t ngx_http_autotls_stapling_check(ngx_conf_t *cf,
    ngx_http_autotls_srv_conf_t *ascf, ngx_http_ssl_srv_conf_t *sscf);
ngx_int_t ngx_http_autotls_stapling_setup(ngx_conf_t *cf, SSL_CTX *ctx);
void ngx_http_autotls_stapling_load(ngx_http_autotls_cert_t *cert,
    atls_key_type_t kt, X509 *leaf, STACK_OF(X509) *chain,
    u_char *refused, ngx_log_t *log);

/* challenge: answers in shared memory (atls_sched_host_t callbacks) */
int ngx_http_autotls_publish(void *ctx, void *cert_data,
    const atls_challenge_t *ch, char *why, size_t len);
void ngx_http_autotls_withdraw(void *ctx, void *cert_data,
    const atls_challenge_t *ch);
ngx_int_t ngx_http_autotls_chal_put_alpn(const atls_challenge_t *ch, X509 *x,
    EVP_PKEY *k, char *why, size_t len);
ngx_int_t ngx_http_autotls_challenge_handler(ngx_http_request_t *r);

/* status */
char *ngx_http_autotls_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* dynamic: names registered at runtime (ngx_http_autotls_dynamic.c).  The
 * driver mirrors the store's registry into the zone; workers find a name's
 * certificate id and generation there, and keep parsed certificates in
 * their cache (bounded by autotls_cache) */
typedef enum {
    NGX_HTTP_AUTOTLS_DYN_UNKNOWN = 0,  /* not registered (or not yet seen) */
    NGX_HTTP_AUTOTLS_DYN_PENDING,      /* registered, no certificate yet */
    NGX_HTTP_AUTOTLS_DYN_SERVING,      /* a certificate is in the store */
    NGX_HTTP_AUTOTLS_DYN_REMOVED,
    NGX_HTTP_AUTOTLS_DYN_CHECKING      /* in the zone only: registered, its
                                          meta not read yet by the driver
                                          (dyn_state() and dyn_get() give
                                          SERVING: the cache serves what the
                                          store holds) */
} ngx_http_autotls_dyn_state_e;

ngx_int_t ngx_http_autotls_dyn_init_worker(ngx_cycle_t *cycle);
void ngx_http_autotls_dyn_exit_worker(void);
/* the state of a lower-case name in the zone (a lookup under the zone's
 * mutex, no store access once the driver's first mirror of the registry
 * is complete; before that, a name not mirrored yet has its registry
 * entry read once and is added to the zone) */
ngx_http_autotls_dyn_state_e ngx_http_autotls_dyn_state(const u_char *name,
    size_t len);
/* driver: the registry changed / a dynamic certificate was deployed */
void ngx_http_autotls_dyn_sync(void);
void ngx_http_autotls_dyn_deployed(const char *id);
/* the table in the zone: created with it, kept across reloads */
ngx_int_t ngx_http_autotls_dyn_shm_init(ngx_http_autotls_shm_t *ctx);
/* dyn_state() with the name's generation and home (NAME_MAX + 1 bytes,
 * may be NULL; an empty home: any dynamic home serves it) */
ngx_http_autotls_dyn_state_e ngx_http_autotls_dyn_get(const u_char *name,
    size_t len, ngx_atomic_uint_t *gen, u_char *home, size_t *home_len);
/* the mirror (driver only): put names, a sweep drops the names not put
 * since its start, gen = the registry generation + 1 mirrored */
ngx_int_t ngx_http_autotls_dyn_put(const u_char *name, size_t len,
    const u_char *home, size_t home_len, ngx_http_autotls_dyn_state_e state,
    ngx_uint_t bump);
/* a CHECKING name's state, once the driver read its meta */
void ngx_http_autotls_dyn_resolve(const u_char *name, size_t len,
    ngx_http_autotls_dyn_state_e state);
/* the table only, never the store (CHECKING included) */
ngx_http_autotls_dyn_state_e ngx_http_autotls_dyn_peek(const u_char *name,
    size_t len, ngx_atomic_uint_t *gen, u_char *home, size_t *home_len);
/* the driver stops: its mirror in progress is dropped */
void ngx_http_autotls_dyn_stop(void);
void ngx_http_autotls_dyn_sweep_start(void);
void ngx_http_autotls_dyn_sweep_end(uint64_t gen);
uint64_t ngx_http_autotls_dyn_mirrored(void);
void ngx_http_autotls_dyn_set_mirrored(uint64_t gen);
void ngx_http_autotls_dyn_del(const u_char *name, size_t len);
ngx_uint_t ngx_http_autotls_dyn_count(void);
/* cert_cb for a dynamic home: installs the name's certificate; NGX_DECLINED
 * when the name is not served (the caller applies autotls_dynamic_unknown) */
ngx_int_t ngx_http_autotls_dyn_install(SSL *ssl, ngx_connection_t *c,
    ngx_http_autotls_srv_conf_t *ascf, const char *sni);
/* the admin API location (autotls_api) */
char *ngx_http_autotls_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_autotls_api_setup(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf);
char *ngx_http_autotls_api_token(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
/* 1 when this home serves the SNI name (a pending one included) */
ngx_uint_t ngx_http_autotls_dyn_served(ngx_http_autotls_srv_conf_t *ascf,
    const char *sni);
/* autotls_dynamic_unknown for a name not served: 1/0 as cert_cb */
int ngx_http_autotls_dyn_unknown(SSL *ssl, ngx_connection_t *c,
    ngx_http_autotls_srv_conf_t *ascf);

/* dynconf: "autotls ISSUER dynamic", autotls_dynamic_unknown,
 * autotls_cache, the zone's size */
char *ngx_http_autotls_dynamic_unknown(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_autotls_cache_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_autotls_dyn_home(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf, ngx_http_autotls_srv_conf_t *ascf,
    ngx_http_autotls_issuer_t *iss);
/* the home of a registry entry (NULL/"": the first); NULL if none here */
ngx_http_autotls_srv_conf_t *ngx_http_autotls_dyn_find_home(
    ngx_http_autotls_main_conf_t *amcf, const char *home);
ngx_int_t ngx_http_autotls_zone_size(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf);

/* on demand: parked connections and the driver's gate
 * (ngx_http_autotls_ondemand.c) */
ngx_int_t ngx_http_autotls_od_setup(ngx_conf_t *cf,
    ngx_http_autotls_main_conf_t *amcf);
ngx_int_t ngx_http_autotls_od_init_worker(ngx_cycle_t *cycle);
void ngx_http_autotls_od_exit_worker(void);
/* driver: take the names workers queued in the zone to atls_sched_on_demand */
void ngx_http_autotls_od_drain(atls_sched_t *sched);
/* driver: the scheduler's verdict (atls_sched_host_t.on_demand) */
void ngx_http_autotls_od_verdict(void *ctx, const char *name, int verdict,
    const char *why);
/* every autotls_on_demand_* directive (the command's name says which) */
char *ngx_http_autotls_od_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
/* driver: the gate for atls_sched_opts_t.on_demand (NULL: no on-demand
 * home), and the scheduler the worker's timer drains into (NULL: stopped) */
atls_od_t *ngx_http_autotls_od_gate(void);
void ngx_http_autotls_od_driver(atls_sched_t *sched);
/* status: the on_demand section (pending, denied, limited, parked);
 * NGX_DECLINED without an on-demand home */
ngx_int_t ngx_http_autotls_od_status(atls_status_extra_t *x);


#endif /* _NGX_HTTP_AUTOTLS_MODULE_H_INCLUDED_ */
