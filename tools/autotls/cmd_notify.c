/*
 * autotls notify-test: a "test" event through the notification sinks, to
 * check a webhook receiver or a command before relying on them.
 *
 * The event takes the way every event takes: queued in the store, then
 * delivered by the scheduler's notifier (notify.c) on the CLI's host
 * (job_multi.c) with no certificate to manage, until it was delivered to
 * every sink or failed once there.  What could not be delivered stays
 * queued and is retried like any event (by this store's next deliverer,
 * typically the server).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "atls_event.h"
#include "atls_job.h"
#include "cli.h"

static const char *const sink_names[] = { "webhook", "exec" };

int cli_notify_add_header(cli_opts_t *o, const char *line)
{
    const char **v = realloc(o->notify_headers, (o->n_notify_headers + 1) * sizeof(*v));

    if (v == NULL) {
        abort();
    }
    o->notify_headers = v;
    v[o->n_notify_headers++] = line;
    return 0;
}

/* The sinks: from the options, else the store's notify.json.  0, or an
 * exit code after printing why. */
static int notify_conf_get(const cli_opts_t *o, atls_store_t *st, atls_notify_conf_t *c)
{
    char   err[512];
    size_t i;
    int    rc;

    memset(c, 0, sizeof(*c));
    if (o->given & (CLI_O_EXEC | CLI_O_WEBHOOK)) {
        c->exec = o->notify_exec != NULL ? atls_strdup(o->notify_exec) : NULL;
        c->webhook = o->notify_webhook != NULL ? atls_strdup(o->notify_webhook) : NULL;
        c->headers = calloc(o->n_notify_headers + 1, sizeof(char *));
        if (c->headers == NULL) {
            abort();
        }
        for (i = 0; i < o->n_notify_headers; i++) {
            c->headers[c->n_headers++] = atls_strdup(o->notify_headers[i]);
        }
        if (atls_notify_conf_check(c, err, sizeof(err)) != 0) {
            return cli_usage_error("notify-test", "%s", err);
        }
        return 0;
    }
    if (o->given & CLI_O_HEADER) {
        return cli_usage_error("notify-test", "--header goes with --webhook");
    }
    rc = atls_store_load_notify_conf(st, c, err, sizeof(err));
    if (rc == ATLS_STORE_NOTFOUND || (rc == ATLS_STORE_OK && !atls_notify_conf_has_sinks(c))) {
        cli_error("notify-test: store %s has no notification settings (a server writes "
                  "them from autotls_notify_* / AutoTLSNotify*): give --exec or --webhook",
                  o->store_dir);
        return CLI_EXIT_FAIL;
    }
    if (rc != ATLS_STORE_OK) {
        cli_error("notify-test: %s", err);
        return CLI_EXIT_FAIL;
    }
    return 0;
}

/* The key of the queue entry that is in after and not in before. */
static char *new_key(char **before, size_t nb, char **after, size_t na)
{
    size_t i, j;

    for (i = 0; i < na; i++) {
        for (j = 0; j < nb && strcmp(after[i], before[j]) != 0; j++) {
        }
        if (j == nb) {
            return atls_strdup(after[i]);
        }
    }
    return NULL;
}

static void keys_free(char **keys, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(keys[i]);
    }
    free(keys);
}

/* Entries waiting for a retry are tried at once too: an operator who
 * fixed the receiver wants the answer now, and the test event comes after
 * them for each sink. */
static void notify_retry_now(atls_store_t *st)
{
    char  **keys = NULL, err[512];
    size_t  n = 0, i;

    if (atls_store_queue_list(st, &keys, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        return;     /* said again when the test event is queued */
    }
    for (i = 0; i < n; i++) {
        char   *data = NULL, *text;
        size_t  len = 0;
        json_t *e;

        if (atls_store_queue_get(st, keys[i], &data, &len, err, sizeof(err)) != ATLS_STORE_OK) {
            continue;
        }
        e = json_loadb(data, len, 0, NULL);
        if (json_object_get(e, "retry_at") != NULL && json_object_del(e, "retry_at") == 0
            && (text = json_dumps(e, JSON_COMPACT)) != NULL)
        {
            (void) atls_store_queue_update(st, keys[i], text, strlen(text), err, sizeof(err));
            free(text);
        }
        json_decref(e);
        free(data);
    }
    keys_free(keys, n);
}

/* Queues the test event; its queue key, or NULL after printing why. */
static char *notify_queue_test(atls_store_t *st, atls_events_t *ev)
{
    atls_event_t e;
    char       **before = NULL, **after = NULL, *key = NULL, err[512];
    size_t       nb = 0, na = 0;

    memset(&e, 0, sizeof(e));
    e.type = ATLS_EV_TEST;
    e.reason = -1;
    e.detail = "autotls notify-test";
    if (atls_store_queue_list(st, &before, &nb, err, sizeof(err)) != ATLS_STORE_OK) {
        cli_error("notify-test: %s", err);
        return NULL;
    }
    (void) atls_events_emit(ev, &e);
    if (atls_store_queue_list(st, &after, &na, err, sizeof(err)) != ATLS_STORE_OK) {
        cli_error("notify-test: %s", err);
    } else if ((key = new_key(before, nb, after, na)) == NULL) {
        cli_error("notify-test: the test event could not be queued in %s (its queue is "
                  "full, or see the log with -v)", st->location);
    }
    keys_free(before, nb);
    keys_free(after, na);
    return key;
}

/* Why sink did not get to the test event: the error of an older entry
 * it failed on (malloc'd), or NULL. */
static char *older_error(atls_store_t *st, const char *key, const char *sink)
{
    char  **keys = NULL, *why = NULL, err[512];
    size_t  n = 0, i;

    if (atls_store_queue_list(st, &keys, &n, err, sizeof(err)) != ATLS_STORE_OK) {
        return NULL;
    }
    for (i = 0; i < n && why == NULL && strcmp(keys[i], key) < 0; i++) {
        char       *data = NULL;
        size_t      len = 0;
        json_t     *e;
        const char *last;

        if (atls_store_queue_get(st, keys[i], &data, &len, err, sizeof(err)) != ATLS_STORE_OK) {
            continue;
        }
        e = json_loadb(data, len, 0, NULL);
        last = json_string_value(json_object_get(json_object_get(e, "last_error"), sink));
        if (last != NULL && asprintf(&why, "an older queued event was not delivered: %s",
                                     last) < 0)
        {
            why = NULL;
        }
        json_decref(e);
        free(data);
    }
    keys_free(keys, n);
    return why;
}

/* One line per sink; 1 when every one got it. */
static int notify_report(atls_store_t *st, const atls_notify_conf_t *c, const char *key)
{
    json_t *e = NULL;
    char   *data = NULL, err[512];
    size_t  len = 0, k;
    int     all = 1, rc;

    rc = atls_store_queue_get(st, key, &data, &len, err, sizeof(err));
    if (rc == ATLS_STORE_OK) {
        e = json_loadb(data, len, 0, NULL);
    } else if (rc != ATLS_STORE_NOTFOUND) {
        cli_error("notify-test: %s", err);
    }
    free(data);
    for (k = 0; k < 2; k++) {
        const char *target = k == 0 ? c->webhook : c->exec;
        json_t     *pending = json_object_get(e, "pending"), *v;
        const char *why;
        char       *older, shown[ATLS_LOG_ESCAPE_MAX], whyshown[ATLS_LOG_ESCAPE_MAX];
        size_t      i;
        int         waits = 0;

        if (target == NULL) {
            continue;
        }
        json_array_foreach(pending, i, v) {
            waits |= json_is_string(v) && strcmp(json_string_value(v), sink_names[k]) == 0;
        }
        if (rc == ATLS_STORE_OK && e == NULL) {
            waits = 1;
        }
        /* from notify.json and the queue, both the worker's: escaped, and
         * the URL without userinfo and query (credentials) */
        if (k == 0) {
            (void) atls_notify_url_shown(target, shown, sizeof(shown));
        } else {
            (void) atls_log_escape(target, shown, sizeof(shown));
        }
        if (!waits && rc != ATLS_STORE_ERROR) {
            printf("%s %s: delivered\n", sink_names[k], shown);
            continue;
        }
        all = 0;
        why = json_string_value(json_object_get(json_object_get(e, "last_error"),
                                                sink_names[k]));
        older = why == NULL ? older_error(st, key, sink_names[k]) : NULL;
        printf("%s %s: NOT delivered: %s\n", sink_names[k], shown,
               atls_log_escape(why != NULL ? why : older != NULL ? older
                               : "not tried (another process delivers this store's "
                                 "queue)", whyshown, sizeof(whyshown)));
        free(older);
    }
    if (!all) {
        printf("The event stays queued in %s and is retried by whoever delivers its "
               "notifications.\n", st->location);
    }
    json_decref(e);
    return all;
}

static int notify_test_run(cli_opts_t *o)
{
    atls_store_t        *st;
    atls_notify_conf_t   conf;
    atls_events_t       *ev = NULL;
    atls_actor_t         actor;
    atls_job_many_opts_t jo;
    char                *key = NULL, err[512];
    int                  rc = CLI_EXIT_FAIL;

    memset(&conf, 0, sizeof(conf));
    /* the invoking user, before the CLI may become the store's owner */
    atls_actor_self(&actor, "cli", ATLS_USER_AGENT);
    st = cli_store_open(o);
    if (st == NULL) {
        goto out;
    }
    /* Root on a store another user owns is that user by now (for good),
     * and the hook runner was told (cli_store_open): the command a store
     * names runs as its owner, with a minimal environment. */
    rc = notify_conf_get(o, st, &conf);
    if (rc != 0) {
        goto out;
    }
    rc = CLI_EXIT_FAIL;
    ev = atls_events_new(st, &actor, &conf);
    if (ev == NULL) {
        cli_error("notify-test: out of memory");
        goto out;
    }
    if (o->given & (CLI_O_EXEC | CLI_O_WEBHOOK)) {
        /* sinks of the command line: the server's queued events for its
         * own sinks stay queued for it */
        atls_events_keep_other_sinks(ev);
    }
    notify_retry_now(st);
    key = notify_queue_test(st, ev);
    if (key == NULL) {
        goto out;
    }
    memset(&jo, 0, sizeof(jo));
    jo.events = ev;
    err[0] = '\0';
    if (atls_job_check_pass(st, NULL, 0, &jo, err, sizeof(err)) != 0 && err[0] != '\0') {
        cli_error("notify-test: %s", err);
    }
    rc = notify_report(st, &conf, key) ? CLI_EXIT_OK : CLI_EXIT_FAIL;

out:
    free(key);
    atls_events_free(ev);
    atls_notify_conf_free(&conf);
    free(o->notify_headers);
    o->notify_headers = NULL;
    if (st != NULL) {
        atls_store_close(st);
    }
    return rc;
}

const cli_command_t cli_cmd_notify_test = {
    "notify-test",
    CLI_O_STORE | CLI_O_EXEC | CLI_O_WEBHOOK | CLI_O_HEADER | CLI_O_VERBOSE,
    0, 0,
    notify_test_run,
    "Usage: autotls notify-test --store DIR [--exec PATH] [--webhook URL]\n"
    "                           [--header 'Name: value']...\n"
    "\n"
    "Send a \"test\" event through the notification sinks and say, per sink,\n"
    "whether it was delivered.  The sinks are the options given, else the\n"
    "ones the server saved in the store (notify.json).  The event is queued\n"
    "in the store like any other, after the events already queued (those\n"
    "waiting for a retry are tried now too); what could not be delivered is\n"
    "retried later by whoever delivers the store's notifications.\n"
    "\n"
    "  --store DIR         certificate store (required)\n"
    "  --exec PATH         command run as `PATH test -` with the event JSON on stdin\n"
    "  --webhook URL       http(s) URL the event JSON is POSTed to\n"
    "  --header 'N: v'     header sent with the webhook request (repeatable)\n"
    "  -v, --verbose       log what the notifier does\n"
    "  -h, --help          this text\n"
    "\n"
    "Exit status: 0 delivered to every sink, 1 not, 2 bad usage.\n"
};
