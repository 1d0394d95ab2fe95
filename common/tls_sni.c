/*
 * The host_name of a TLS ClientHello (RFC 8446 4.1.2, RFC 6066 3), from
 * peeked bytes.  Two steps: gather the handshake message from its records
 * into scratch, then walk the message.  Every read goes through a cursor
 * that knows how many bytes are left.
 */
#include <string.h>
#include "atls_tls_sni.h"

#define TLS_RECORD_HANDSHAKE  22
#define TLS_HANDSHAKE_HELLO   1
#define TLS_EXT_SERVER_NAME   0
#define TLS_SNI_HOST_NAME     0
#define TLS_RECORD_MAX        (16384 + 2048)   /* TLSCiphertext bound */

typedef struct {
    const unsigned char *p;
    size_t               left;
} cursor_t;

static int
take(cursor_t *c, size_t n, const unsigned char **out)
{
    if (c->left < n) {
        return -1;
    }
    if (out != NULL) {
        *out = c->p;
    }
    c->p += n;
    c->left -= n;
    return 0;
}

static int
take_u8(cursor_t *c, size_t *v)
{
    const unsigned char *p;

    if (take(c, 1, &p) != 0) {
        return -1;
    }
    *v = p[0];
    return 0;
}

static int
take_u16(cursor_t *c, size_t *v)
{
    const unsigned char *p;

    if (take(c, 2, &p) != 0) {
        return -1;
    }
    *v = ((size_t) p[0] << 8) | p[1];
    return 0;
}

/* a vector with a length prefix of 1 or 2 bytes, as a cursor of its own */
static int
take_vector(cursor_t *c, int prefix, cursor_t *inner)
{
    size_t n;

    if ((prefix == 1 ? take_u8(c, &n) : take_u16(c, &n)) != 0) {
        return -1;
    }
    inner->p = c->p;
    inner->left = n;
    return take(c, n, NULL);
}

/*
 * Copies the handshake bytes of the records in buf into scratch until the
 * ClientHello is whole.  *hello_len gets its length (header included).
 */
static atls_sni_result_t
gather(const unsigned char *buf, size_t len, unsigned char *scratch, size_t *hello_len)
{
    cursor_t             in = { buf, len };
    const unsigned char *hdr;
    size_t               have = 0, want = 0, rlen, n;

    for (;;) {
        if (take(&in, 5, &hdr) != 0) {
            /* the bytes so far must already look like TLS */
            if (in.left >= 1 && in.p[0] != TLS_RECORD_HANDSHAKE) {
                return ATLS_SNI_NOT_TLS;
            }
            if (in.left >= 2 && in.p[1] != 3) {
                return ATLS_SNI_NOT_TLS;
            }
            return ATLS_SNI_MORE;
        }
        if (hdr[0] != TLS_RECORD_HANDSHAKE || hdr[1] != 3) {
            return ATLS_SNI_NOT_TLS;
        }
        rlen = ((size_t) hdr[3] << 8) | hdr[4];
        if (rlen == 0 || rlen > TLS_RECORD_MAX) {
            return ATLS_SNI_NOT_TLS;
        }

        /* what of this record has arrived; only what the hello needs */
        n = rlen < in.left ? rlen : in.left;
        if (want != 0 && n > want - have) {
            n = want - have;
        }
        if (n > ATLS_SNI_MAX_HELLO - have) {
            n = ATLS_SNI_MAX_HELLO - have;
        }
        memcpy(scratch + have, in.p, n);
        (void) take(&in, n, NULL);
        have += n;

        if (want == 0 && have >= 4) {
            if (scratch[0] != TLS_HANDSHAKE_HELLO) {
                return ATLS_SNI_NOT_TLS;
            }
            want = 4 + (((size_t) scratch[1] << 16) | ((size_t) scratch[2] << 8)
                        | scratch[3]);
            if (want > ATLS_SNI_MAX_HELLO) {
                return ATLS_SNI_NOT_TLS;
            }
        }
        if (want != 0 && have >= want) {
            *hello_len = want;
            return ATLS_SNI_FOUND;
        }
        if (n < rlen) {
            /* the rest of this record has not arrived yet */
            return ATLS_SNI_MORE;
        }
    }
}

/* The server_name extension's data: the first host_name in it. */
static atls_sni_result_t
server_name(cursor_t ext, const unsigned char **name, size_t *name_len)
{
    cursor_t list, host;
    size_t   type;

    if (take_vector(&ext, 2, &list) != 0 || ext.left != 0 || list.left == 0) {
        return ATLS_SNI_NOT_TLS;
    }
    while (list.left > 0) {
        if (take_u8(&list, &type) != 0 || take_vector(&list, 2, &host) != 0) {
            return ATLS_SNI_NOT_TLS;
        }
        if (type == TLS_SNI_HOST_NAME) {
            if (host.left == 0) {
                return ATLS_SNI_NOT_TLS;
            }
            *name = host.p;
            *name_len = host.left;
            return ATLS_SNI_FOUND;
        }
    }
    return ATLS_SNI_NONE;
}

/* Walks a whole ClientHello message to its extensions. */
static atls_sni_result_t
hello(const unsigned char *msg, size_t len, const unsigned char **name, size_t *name_len)
{
    cursor_t c = { msg + 4, len - 4 };
    cursor_t v, exts, ext;
    size_t   type;

    if (take(&c, 2 + 32, NULL) != 0                    /* version, random */
        || take_vector(&c, 1, &v) != 0 || v.left > 32  /* session id */
        || take_vector(&c, 2, &v) != 0 || v.left == 0 || v.left % 2 != 0
        || take_vector(&c, 1, &v) != 0 || v.left == 0) /* compression */
    {
        return ATLS_SNI_NOT_TLS;
    }
    if (c.left == 0) {
        return ATLS_SNI_NONE;                          /* no extensions */
    }
    if (take_vector(&c, 2, &exts) != 0 || c.left != 0) {
        return ATLS_SNI_NOT_TLS;
    }
    while (exts.left > 0) {
        if (take_u16(&exts, &type) != 0 || take_vector(&exts, 2, &ext) != 0) {
            return ATLS_SNI_NOT_TLS;
        }
        if (type == TLS_EXT_SERVER_NAME) {
            return server_name(ext, name, name_len);
        }
    }
    return ATLS_SNI_NONE;
}

atls_sni_result_t
atls_tls_sni(const unsigned char *buf, size_t len, unsigned char *scratch,
             const unsigned char **name, size_t *name_len)
{
    atls_sni_result_t rc;
    size_t            hello_len = 0;

    *name = NULL;
    *name_len = 0;

    rc = gather(buf, len, scratch, &hello_len);
    if (rc != ATLS_SNI_FOUND) {
        return rc;
    }
    return hello(scratch, hello_len, name, name_len);
}
