/*
 * Stored certificates that can be asked about with ARI (RFC 9773): their
 * leaf carries an authority key identifier, which the ARI identifier is
 * made of.
 */
#ifndef ARILEAF_H
#define ARILEAF_H

#include <stddef.h>
#include "atls_crypto.h"
#include "atls_store.h"

/* Stores a testpki chain for names as key type kt of id, its leaf with an
 * authority key identifier.  0 or -1. */
int arileaf_store(atls_store_t *st, const char *id, const char *const *names, size_t n,
                  atls_key_type_t kt);

#endif
