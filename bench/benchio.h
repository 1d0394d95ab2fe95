/*
 * File helpers of the C benchmark programs (status_scale.c,
 * sched_start.c): a whole file read, a file written with its mode (any
 * failure ends the program with the path named), the monotonic clock.
 */
#ifndef ATLS_BENCHIO_H
#define ATLS_BENCHIO_H

#include <sys/types.h>

/* path's bytes, NUL-terminated (the caller frees them). */
char *bench_slurp(const char *path);
/* Writes text to path (no fsync: a benchmark's store) and sets mode. */
void bench_write_file(const char *path, const char *text, mode_t mode);

/* The monotonic clock in seconds. */
double bench_seconds(void);

#endif
