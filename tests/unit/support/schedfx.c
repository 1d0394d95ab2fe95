/* The scheduler fixture of support/schedfx.h. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "support/schedfx.h"
#include "support/logcap.h"
#include "support/tmptree.h"

int
schedfx_open(schedfx_t *fx)
{
    char  err[256];
    char *url = NULL;
    int   created = 0;

    memset(fx, 0, sizeof(*fx));
    snprintf(fx->root, sizeof(fx->root), "/tmp/atls-schedfx-XXXXXX");
    if (mkdtemp(fx->root) == NULL) {
        return -1;
    }
    fx->st = atls_store_fs_open(fx->root, err, sizeof(err));
    if (fx->st == NULL
        || atls_store_load_account(fx->st, SCHEDFX_DIRECTORY, &fx->akey, &url, &created, err,
                                   sizeof(err)) != ATLS_STORE_OK
        || atls_store_save_account(fx->st, SCHEDFX_DIRECTORY, FAKECA_ACCT_URL, NULL, 0, err,
                                   sizeof(err)) != ATLS_STORE_OK)
    {
        free(url);
        return -1;
    }
    free(url);
    return 0;
}

void
schedfx_close(schedfx_t *fx)
{
    EVP_PKEY_free(fx->akey);
    atls_store_close(fx->st);
    tmptree_rm(fx->root);
    memset(fx, 0, sizeof(*fx));
}

void
schedfx_start(fakehost_t *h, atls_store_t *st)
{
    atls_sched_opts_t o;
    char              err[256];

    memset(&o, 0, sizeof(o));
    h->s = atls_sched_new(st, &h->host, &o, err, sizeof(err));
    if (h->s == NULL) {
        fail_msg("scheduler: %s", err);
    }
}

void
schedfx_add(fakehost_t *h, const schedfx_t *fx, fakehost_cert_t *c, const char *name)
{
    atls_issuer_t is;
    char          err[256];

    memset(&is, 0, sizeof(is));
    is.directory = (char *) SCHEDFX_DIRECTORY;
    is.challenge = ATLS_CHAL_HTTP01;
    is.agree_tos = 1;
    assert_int_equal(fakehost_cert_init(c, name, fx->akey, 1), 0);
    c->sched = atls_sched_add(h->s, &name, 1, &is, c, err, sizeof(err));
    if (c->sched == NULL) {
        fail_msg("add %s: %s", name, err);
    }
}

int
schedfx_begin(schedfx_t *fx, fakehost_t *h)
{
    logcap_start(ATLS_LOG_DEBUG);
    if (schedfx_open(fx) != 0) {
        return -1;
    }
    fakehost_init(h);
    return 0;
}

void
schedfx_end(schedfx_t *fx, fakehost_t *h, fakehost_cert_t *certs, size_t n)
{
    fakehost_teardown(h, certs, n);
    schedfx_close(fx);
    logcap_stop();
}
