/*
 * What a CA directory told us about renewal information (RFC 9773), kept
 * once per directory in the store (accounts/<ca-id>/ari.json, public):
 *
 *   {"no_ari_until":"2026-11-30T19:00:00Z"}
 *
 * A directory that offers no renewalInfo answers the same for every
 * certificate; recording it here, not in each certificate's meta, keeps a
 * start with 10,000 certificates from rewriting 10,000 meta.json files.
 */
#ifndef ATLS_STORE_ARI_H
#define ATLS_STORE_ARI_H

#include <time.h>
#include "atls_store.h"

/* *no_ari_until: until when directory is known to offer no renewalInfo (0:
 * nothing recorded).  ATLS_STORE_OK (also when nothing is recorded), or
 * ATLS_STORE_ERROR with err naming the file and field. */
int atls_store_load_ari_dir(atls_store_t *st, const char *directory, time_t *no_ari_until,
                            char *err, size_t errlen);
/* Records that directory offers no renewalInfo until no_ari_until (0:
 * forget it, the directory offers it again). */
int atls_store_save_ari_dir(atls_store_t *st, const char *directory, time_t no_ari_until,
                            char *err, size_t errlen);

#endif
