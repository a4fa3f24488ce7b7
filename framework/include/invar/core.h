/* invar/core.h — status codes, error buffers, assertions, export macro.
 *
 *     struct invar_error err = {0};
 *     enum invar_status st = invar_config_load(&cfg, "exp.yaml", &err);
 *     if (st != INVAR_OK)
 *         fprintf(stderr, "invar: %s: %s\n", invar_status_str(st), err.msg);
 *
 * Functions that can fail return enum invar_status and write details (file:line:column, key
 * path, plugin file, versions) into a caller-owned struct invar_error. No memory crosses a
 * library boundary through an error. Library code never prints and never exits.
 */
#ifndef INVAR_CORE_H
#define INVAR_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define INVAR_VERSION_MAJOR 0
#define INVAR_VERSION_MINOR 1
#define INVAR_VERSION_PATCH 0

#if defined(__GNUC__)
#define INVAR_API __attribute__((visibility("default")))
#define INVAR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define INVAR_API
#define INVAR_PRINTF(a, b)
#endif

/* Append-only: a value never changes meaning once released. */
enum invar_status {
    INVAR_OK = 0,
    INVAR_ERR_NOMEM,      /* an allocation failed */
    INVAR_ERR_IO,         /* a file could not be opened, read or written */
    INVAR_ERR_FORMAT,     /* a file's contents are malformed, truncated or corrupt */
    INVAR_ERR_CONFIG,     /* an experiment or override is invalid */
    INVAR_ERR_PLUGIN,     /* a plugin was refused (ABI, symbol, duplicate, init) */
    INVAR_ERR_NOT_FOUND,  /* a named thing (plugin, run, key) does not exist */
    INVAR_ERR_DB,         /* the results database failed */
    INVAR_ERR_INVALID,    /* an argument is out of its documented domain */
    INVAR_ERR_DIVERGED,   /* a loss became NaN or infinite */
    INVAR_ERR_INTERRUPTED,/* SIGINT or SIGTERM arrived */
    INVAR_ERR_INTERNAL,   /* a bug: please report it */
    INVAR_STATUS_COUNT
};

INVAR_API const char *invar_status_str(enum invar_status st);

#define INVAR_ERROR_MAX 1024

/* Caller-owned error detail; msg is always NUL-terminated. */
struct invar_error {
    char msg[INVAR_ERROR_MAX];
};

/* Formats into err (when err is not NULL) and returns st, so a failure path is one line:
 *     return invar_error_set(err, INVAR_ERR_IO, "%s: %s", path, strerror(errno)); */
INVAR_API enum invar_status invar_error_set(struct invar_error *err, enum invar_status st,
                                            const char *fmt, ...) INVAR_PRINTF(3, 4);
/* Prepends "prefix: " to an existing message (adds context on the way up). */
INVAR_API void invar_error_prefix(struct invar_error *err, const char *fmt, ...)
    INVAR_PRINTF(2, 3);

/* Asserts are for bugs only (a broken invariant inside the library); they abort with
 * file:line and stay on in release builds. Anything the world can cause is a status. */
INVAR_API _Noreturn void invar_assert_fail(const char *expr, const char *file, int line);
#define INVAR_ASSERT(e) ((e) ? (void)0 : invar_assert_fail(#e, __FILE__, __LINE__))

INVAR_API const char *invar_version(void);

#ifdef __cplusplus
}
#endif
#endif
