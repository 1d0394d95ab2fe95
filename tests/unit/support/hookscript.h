/* Hook scripts in a temporary directory, for the hook runner tests. */
#ifndef ATLS_TEST_HOOKSCRIPT_H
#define ATLS_TEST_HOOKSCRIPT_H

#include <stddef.h>
#include <sys/types.h>

/* cmocka group setup/teardown: a fresh directory (hookscript_dir), removed
 * with all it holds. */
extern char hookscript_dir[256];
int hookscript_setup(void **state);
int hookscript_teardown(void **state);

/* Writes "#!/bin/sh\n" body as hookscript_dir/name with mode; its path in path. */
void hookscript_write(const char *name, const char *body, mode_t mode,
                      char *path, size_t len);

/* A hook that writes each of its arguments on a line of its own to the
 * file args; its path in hook. */
void hookscript_recorder(char *hook, size_t hooklen, char *args, size_t argslen);

/* A value that would create the file pwned if a shell ever saw it. */
void hookscript_shell_bait(char *value, size_t len, char *pwned, size_t pwnedlen);

/* The whole (small) file at path, in a static buffer; NULL when unreadable. */
char *hookscript_read(const char *path);

#endif
