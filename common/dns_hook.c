/*
 * dns-01 through an operator's hook program, for blocking drivers:
 *   HOOK setup|teardown _acme-challenge.NAME TXTVALUE
 *
 * One background hook run (hook.c: no shell, nothing inherited, stderr
 * read back so that the operator sees its own message in our error),
 * waited for here with a time limit.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>
#include "atls.h"
#include "atls_acme.h"
#include "atls_acme_drive.h"
#include "atls_hook.h"

#define DNS_HOOK_TIMEOUT_S  120

static long
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 and *ok when the run ended within the limit; 0 when it was killed. */
static int
dns_hook_wait(atls_hook_proc_t *hp, int *ok, char *why, size_t whylen)
{
    long deadline = mono_ms() + DNS_HOOK_TIMEOUT_S * 1000L;

    for (;;) {
        struct pollfd p = { .fd = hp->fd, .events = POLLIN };
        long          left = deadline - mono_ms();

        if (left <= 0) {
            atls_hook_kill(hp);
            return 0;
        }
        if (poll(&p, 1, (int) left) < 0 && errno != EINTR) {
            atls_hook_kill(hp);
            return 0;
        }
        if (atls_hook_read(hp, ok, why, whylen) == 1) {
            return 1;
        }
    }
}

int
atls_dns_hook_run(const char *hook, const char *action, const char *dns_name,
                  const char *value, char *why, size_t whylen)
{
    atls_hook_proc_t hp;
    char            *argv[5];
    char             how[512];
    int              ok = 0;

    if (why != NULL && whylen > 0) {
        why[0] = '\0';
    }
    if (hook == NULL || hook[0] == '\0' || action == NULL || dns_name == NULL
        || value == NULL)
    {
        snprintf(why, whylen, "dns hook: no hook command configured");
        return -1;
    }
    argv[0] = (char *) hook;
    argv[1] = (char *) action;
    argv[2] = (char *) dns_name;
    argv[3] = (char *) value;
    argv[4] = NULL;

    if (atls_hook_spawn(argv, &hp, how, sizeof(how)) != 0) {
        snprintf(why, whylen, "dns hook %s", how);
        return -1;
    }
    if (!dns_hook_wait(&hp, &ok, how, sizeof(how))) {
        snprintf(why, whylen, "dns hook %s %s %s: timed out after %d s",
                 hook, action, dns_name, DNS_HOOK_TIMEOUT_S);
        return -1;
    }
    if (!ok) {
        snprintf(why, whylen, "dns hook %s %s %s: %s", hook, action, dns_name, how);
        return -1;
    }
    return 0;
}
