/*
 * A fake scheduler host for unit tests: http_send queues the request, the
 * test loop answers it through the certificate's canned CA (fakeca) and
 * calls atls_sched_http_done, fires the one timer when it is due, and
 * leaves hooks running until the test reports them.  Every callback is
 * recorded, so tests can assert what the scheduler asked for and when.
 *
 * Each certificate has its own fakeca (a fakeca serves one order), all
 * with the account key of the certificates' directory; a new engine of the
 * certificate (its first request fetches the directory) gets a fresh one.  The data pointer
 * given to atls_sched_add must be the certificate's fakehost_cert_t.
 */
#ifndef FAKEHOST_H
#define FAKEHOST_H

#include <stddef.h>
#include "atls.h"
#include "atls_sched.h"
#include "support/fakeca.h"

#define FAKEHOST_MAX_HTTP   64
#define FAKEHOST_MAX_HOOKS  32
#define FAKEHOST_MAX_LOG    4096
#define FAKEHOST_MAX_CAS    4

typedef struct {
    const char      *name;
    atls_sched_cert_t *sched;           /* the test may keep it here */
    EVP_PKEY        *account_key;       /* borrowed: the directory's account key */
    fakeca_t        *ca;                /* answers the current order */
    fakeca_t        *retired[FAKEHOST_MAX_CAS];     /* earlier orders' */
    size_t           n_retired;
    int              started;           /* sent a request in this attempt */
    int              done;              /* done() calls */
    int              rc;
    atls_error_t     err;
    atls_key_type_t  deployed[ATLS_KEY_TYPE_MAX];
    size_t           n_deployed;
    size_t           n_stapled;         /* stapled() calls */
} fakehost_cert_t;

/* A URL outside the CA answered with canned bytes (an OCSP responder, a
 * CRL server): every request whose URL starts with prefix. */
#define FAKEHOST_MAX_URLS   8
typedef struct {
    const char          *prefix;
    long                 status;        /* 0: a transport error */
    const unsigned char *body;          /* borrowed */
    size_t               body_len;
    const char          *etag;          /* sent; If-None-Match equal to it: 304 */
    /* answers instead of status/body when set (a responder that signs
     * for what was issued meanwhile) */
    void               (*answer)(void *arg, const atls_http_request_t *req,
                                 atls_http_response_t *resp);
    void                *arg;
    size_t               hits;          /* requests answered */
    size_t               conditional;   /* of which carried If-None-Match */
} fakehost_url_t;

typedef struct {
    atls_sched_op_t     *op;
    fakehost_cert_t     *cert;
    atls_http_request_t  req;           /* a copy */
} fakehost_http_t;

typedef struct {
    atls_sched_op_t     *op;
    fakehost_cert_t     *cert;
    char                *argv[4];
    int                  live;
    int                  killed;
} fakehost_hook_t;

typedef struct {
    fakehost_cert_t     *cert;
    char                 path[64];      /* URL path of the request */
    size_t               deployed;      /* the certificate's deploys so far */
} fakehost_log_t;

typedef struct {
    atls_sched_t        *s;
    atls_sched_host_t    host;          /* filled by fakehost_init */
    fakehost_http_t      http[FAKEHOST_MAX_HTTP];
    size_t               n_http;
    fakehost_hook_t      hooks[FAKEHOST_MAX_HOOKS];
    size_t               n_hooks;
    long long            timer_at;      /* monotonic ms; -1 disarmed */
    size_t               timer_calls;
    size_t               cancels, kills;
    size_t               publishes, withdraws, live_published;
    int                  hook_start_fails;
    fakehost_log_t       log[FAKEHOST_MAX_LOG];
    size_t               n_log;
    size_t               active, max_active;     /* certificates between first
                                                    request and done() */
    size_t               max_running;            /* atls_sched_running() seen */
    int                  stop_in_done;           /* done() calls atls_sched_stop */
    int                  free_in_done;           /* done() calls atls_sched_free
                                                    (s becomes NULL) */
    int                  http_send_fails;        /* http_send returns -1 */
    size_t               n_done;
    fakehost_url_t       urls[FAKEHOST_MAX_URLS];  /* answered before the CA */
    size_t               n_urls;
} fakehost_t;

void fakehost_init(fakehost_t *h);
/* Sets up c with a fresh fakeca (account_exists as given). 0 ok. */
int fakehost_cert_init(fakehost_cert_t *c, const char *name, EVP_PKEY *account_key,
                       int account_exists);
void fakehost_cert_clear(fakehost_cert_t *c);
/* Frees what is still queued or recorded. */
void fakehost_clear(fakehost_t *h);
/* A test's end: frees the scheduler (when still there), what is queued,
 * and the n certificates. */
void fakehost_teardown(fakehost_t *h, fakehost_cert_t *certs, size_t n);

/* Answers requests to URLs starting with prefix with status and body
 * (borrowed) from now on; the entry, for its counters. */
fakehost_url_t *fakehost_url(fakehost_t *h, const char *prefix, long status,
                             const unsigned char *body, size_t len);

/* Runs the event loop until until(h, arg) holds (0) or timeout_ms passed or
 * nothing can happen any more (-1).  only: answer only that certificate's
 * requests (the others stay in flight). */
int fakehost_run(fakehost_t *h, int (*until)(fakehost_t *h, void *arg), void *arg,
                 long timeout_ms, const fakehost_cert_t *only);

/* The live hook run with argv[1] action whose argv[2] ends in name. */
fakehost_hook_t *fakehost_hook_find(fakehost_t *h, const char *action, const char *name);
/* Reports hk's end to the scheduler. */
void fakehost_hook_report(fakehost_t *h, fakehost_hook_t *hk, int ok, const char *why);

/* Conditions for fakehost_run. */
int fakehost_until_idle(fakehost_t *h, void *arg);      /* idle, timer disarmed */
/* idle, the timer disarmed or armed more than a second ahead (the
 * scheduler's wake for the next revocation check) */
int fakehost_until_settled(fakehost_t *h, void *arg);
int fakehost_until_done(fakehost_t *h, void *arg);      /* arg: fakehost_cert_t */
int fakehost_until_hook(fakehost_t *h, void *arg);      /* arg: "action name" */

#endif
