/*
 * The server name of a TLS ClientHello, read from the bytes a server has
 * peeked (MSG_PEEK) before its TLS library sees them, as nginx's
 * ssl_preread does: hosts park a first handshake for an on-demand name
 * until its certificate exists (atls_ondemand.h).
 *
 * The bytes are the client's: every length is checked against the bytes
 * that hold it, nothing is read outside buf, nothing is allocated.  The
 * handshake message may span several TLS records (only the first
 * ATLS_SNI_MAX_HELLO bytes of it are looked at).
 */
#ifndef ATLS_TLS_SNI_H
#define ATLS_TLS_SNI_H

#include <stddef.h>

/* a ClientHello longer than this is not waited for (the server name comes
 * early in practice: the limit bounds the buffer a host peeks into) */
#define ATLS_SNI_MAX_HELLO  16384
/* record headers (5 bytes each) around that much handshake data, with room
 * for records as small as 64 bytes */
#define ATLS_SNI_MAX_PEEK   (ATLS_SNI_MAX_HELLO + 5 * (ATLS_SNI_MAX_HELLO / 64 + 1))

typedef enum {
    ATLS_SNI_FOUND = 0,    /* *name / *len: the host_name, as sent */
    ATLS_SNI_NONE,         /* a complete ClientHello without a host_name */
    ATLS_SNI_MORE,         /* incomplete: peek again when more has arrived */
    ATLS_SNI_NOT_TLS       /* not a TLS ClientHello, or malformed, or too long */
} atls_sni_result_t;

/*
 * buf/len: the first bytes received on the connection.  scratch (at least
 * ATLS_SNI_MAX_HELLO bytes) receives the handshake message gathered from
 * its records; on FOUND, *name points into scratch (not NUL-terminated,
 * any bytes: the caller checks the syntax) and *name_len is its length.
 */
atls_sni_result_t atls_tls_sni(const unsigned char *buf, size_t len,
                               unsigned char *scratch, const unsigned char **name,
                               size_t *name_len);

#endif
