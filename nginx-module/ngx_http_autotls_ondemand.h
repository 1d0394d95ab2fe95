/*
 * autotls for nginx: on-demand issuance, shared between its two files.
 *
 * ngx_http_autotls_ondemand.c: the directives, the setup and the zone
 * "autotls_on_demand" (a bounded ring of names workers want ordered, that
 * the driver drains into atls_sched_on_demand, and a bounded table of the
 * gate's verdicts so that workers do not queue a refused name again until
 * the verdict expires).
 * ngx_http_autotls_ondemand_park.c: the listener wrapper that peeks the
 * ClientHello and parks first handshakes, and the Host of plain requests.
 */

#ifndef _NGX_HTTP_AUTOTLS_ONDEMAND_H_INCLUDED_
#define _NGX_HTTP_AUTOTLS_ONDEMAND_H_INCLUDED_


#include "ngx_http_autotls_module.h"


#define NGX_HTTP_AUTOTLS_OD_HOME_MAX   63     /* issuer name of a home */
#define NGX_HTTP_AUTOTLS_OD_PARK_MS    50     /* parked connections re-checked */
#define NGX_HTTP_AUTOTLS_OD_MAX_PARKED 256    /* per worker */

/* what a worker does with a connection for an on-demand name */
typedef enum {
    NGX_HTTP_AUTOTLS_OD_WAIT = 0,    /* queued or being decided: park it */
    NGX_HTTP_AUTOTLS_OD_GO           /* refused, or no room: hand it over */
} ngx_http_autotls_od_want_e;

/* the listeners' ports that lead to an on-demand home, this cycle's */
typedef struct {
    in_port_t                      *ports;
    ngx_uint_t                      nports;
    ngx_uint_t                      homes;     /* on-demand homes */
} ngx_http_autotls_od_conf_t;

ngx_http_autotls_od_conf_t *ngx_http_autotls_od_conf(void);

/* a checked name from SNI or Host for home (its issuer name): park or go;
 * queues it for the driver when nothing is known of it yet */
ngx_http_autotls_od_want_e ngx_http_autotls_od_want(const u_char *name,
    size_t len, ngx_str_t *home);
ngx_uint_t ngx_http_autotls_od_refused(const u_char *name, size_t len);
/* name's certificate is served (the mirror, checked against the store for
 * a name let in a moment ago) */
ngx_uint_t ngx_http_autotls_od_served(const u_char *name, size_t len);
void ngx_http_autotls_od_parked(ngx_int_t delta);

/* park: per-worker parts */
ngx_int_t ngx_http_autotls_od_wrap(ngx_cycle_t *cycle);
void ngx_http_autotls_od_unwrap(void);
ngx_int_t ngx_http_autotls_od_host_handler(ngx_http_request_t *r);
/* the driver's scheduler, or NULL, for the park timer to drain */
extern atls_sched_t  *ngx_http_autotls_od_sched;
/* the on-demand home a lower-case name reaches on c's address, or NULL
 * when it reaches another server or is configured there */
ngx_http_autotls_srv_conf_t *ngx_http_autotls_od_home(
    ngx_http_addr_conf_t *addr_conf, u_char *name, size_t len);


#endif /* _NGX_HTTP_AUTOTLS_ONDEMAND_H_INCLUDED_ */
