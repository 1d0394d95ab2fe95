/* Hook scripts in a temporary directory, for the hook runner tests. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include "hookscript.h"
#include "tmptree.h"

char hookscript_dir[256];

int
hookscript_setup(void **state)
{
    (void) state;
    snprintf(hookscript_dir, sizeof(hookscript_dir), "/tmp/atls-hook-XXXXXX");
    return mkdtemp(hookscript_dir) == NULL ? -1 : 0;
}

int
hookscript_teardown(void **state)
{
    (void) state;
    tmptree_rm(hookscript_dir);
    return 0;
}

void
hookscript_write(const char *name, const char *body, mode_t mode, char *path, size_t len)
{
    FILE *f;

    snprintf(path, len, "%s/%s", hookscript_dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s", body);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

void
hookscript_recorder(char *hook, size_t hooklen, char *args, size_t argslen)
{
    char body[1024];

    snprintf(args, argslen, "%s/args", hookscript_dir);
    snprintf(body, sizeof(body),
             "for a in \"$@\"; do printf '%%s\\n' \"$a\"; done > '%s'\nexit 0\n", args);
    hookscript_write("record", body, 0700, hook, hooklen);
}

void
hookscript_shell_bait(char *value, size_t len, char *pwned, size_t pwnedlen)
{
    snprintf(pwned, pwnedlen, "%s/pwned", hookscript_dir);
    snprintf(value, len, "tok en;$(touch %s)`touch %s` > %s", pwned, pwned, pwned);
}

char *
hookscript_read(const char *path)
{
    static char buf[4096];
    FILE       *f = fopen(path, "r");
    size_t      n;

    if (f == NULL) {
        return NULL;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}
