/* Status strings, error buffers, assertion failure, version. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "invar/core.h"
#include "invar_build_config.h"

static const char *const status_names[] = {
    [INVAR_OK] = "ok",
    [INVAR_ERR_NOMEM] = "out of memory",
    [INVAR_ERR_IO] = "I/O error",
    [INVAR_ERR_FORMAT] = "malformed file",
    [INVAR_ERR_CONFIG] = "invalid configuration",
    [INVAR_ERR_PLUGIN] = "plugin refused",
    [INVAR_ERR_NOT_FOUND] = "not found",
    [INVAR_ERR_DB] = "database error",
    [INVAR_ERR_INVALID] = "invalid argument",
    [INVAR_ERR_DIVERGED] = "diverged",
    [INVAR_ERR_INTERRUPTED] = "interrupted",
    [INVAR_ERR_INTERNAL] = "internal error",
};
_Static_assert(sizeof status_names / sizeof status_names[0] == INVAR_STATUS_COUNT,
               "status_names must name every enum invar_status");

const char *invar_status_str(enum invar_status st)
{
    if ((unsigned)st >= INVAR_STATUS_COUNT)
        return "unknown status";
    return status_names[st];
}

enum invar_status invar_error_set(struct invar_error *err, enum invar_status st,
                                  const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

void invar_error_prefix(struct invar_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[INVAR_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t plen = strlen(prefix);
    memcpy(prefix + plen, ": ", 3);
    plen += 2;
    /* Shift the old message right and put the prefix in front; the tail may be cut. */
    size_t cap = sizeof err->msg - 1;
    size_t olen = strnlen(err->msg, cap);
    if (plen >= cap)
        plen = cap;
    if (olen > cap - plen)
        olen = cap - plen;
    memmove(err->msg + plen, err->msg, olen);
    memcpy(err->msg, prefix, plen);
    err->msg[plen + olen] = '\0';
}

_Noreturn void invar_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "invar: internal error: assertion `%s' failed at %s:%d\n", expr, file, line);
    abort();
}

const char *invar_version(void) { return INVAR_VERSION_STRING; }
