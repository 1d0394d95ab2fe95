/*
 * libFuzzer: problem documents come from the CA (error responses and the
 * "error" members of challenges and orders); any bytes must yield a filled,
 * NUL-terminated error, never a crash or an overflow of its fixed buffers.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "atls_problem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const atls_error_t *err)
{
    if (memchr(err->type, '\0', sizeof(err->type)) == NULL
        || memchr(err->detail, '\0', sizeof(err->detail)) == NULL
        || err->cls == ATLS_ERR_NONE)
    {
        abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long     statuses[] = { 0, 400, 403, 429, 500, 503 };
    atls_http_response_t  resp;
    atls_error_t          err;
    size_t                i;

    for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        atls_problem_from_json((const char *) data, size, (int) statuses[i], &err);
        check(&err);
    }
    /* The body is not NUL-terminated on purpose: the parser gets a length. */
    memset(&resp, 0, sizeof(resp));
    resp.status = 400;
    resp.body = (char *) data;
    resp.body_len = size;
    atls_problem_from_response(&resp, 1700000000, &err);
    check(&err);
    return 0;
}
