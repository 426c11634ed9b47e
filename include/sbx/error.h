/* sbx-image: the one error model.
 *
 * Every call that can fail takes `sbx_error *err` as its last parameter and
 * returns 0 on success or a negative SBX_E* code.  The error lives on the
 * caller's stack, needs no free and works when memory runs out.  Outer layers
 * add context with sbx_error_wrap(): "pulling 'x': layer 3: digest mismatch".
 * Only the CLI prints; the library never exits or aborts on bad input.
 */
#ifndef SBX_ERROR_H
#define SBX_ERROR_H

#include "sbx/api.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A digest as text, "sha256:" + 64 hex digits + NUL: the size of every
 * digest buffer in this API (here because every public header includes
 * this one). */
#define SBX_DIGEST_BUFSZ 72

enum {
    SBX_OK = 0,
    SBX_EINVAL = -1,     /* bad input: a ref, a recipe, an argument */
    SBX_ENOTFOUND = -2,  /* no such blob, layer, name, manifest, platform */
    SBX_EDIGEST = -3,    /* content does not match its digest */
    SBX_EIO = -4,        /* an OS call failed; sys_errno says which */
    SBX_ENOSPC = -5,     /* disk full */
    SBX_EAUTH = -6,      /* registry refused credentials */
    SBX_ENET = -7,       /* network or protocol failure */
    SBX_ESTEP = -8,      /* a build step failed */
    SBX_ETIMEOUT = -9,   /* a step or transfer ran out of time */
    SBX_EBUSY = -10,     /* locked or in use (leased) */
    SBX_ECORRUPT = -11,  /* store damage found (fsck) */
    SBX_ENOMEM = -12,
    SBX_ELIMIT = -13,    /* an untrusted size exceeds its limit */
    SBX_EUNSUPPORTED = -14,
    SBX_EINTERNAL = -15,
    SBX_ENOPLATFORM = -16, /* the image exists, but not for the platform asked for */
    SBX_ECANCELED = -17,   /* the call's context was cancelled (sbx_ctx_cancel) */
};

typedef struct sbx_error {
    int code;        /* SBX_E*; 0 when no error */
    int sys_errno;   /* set when an OS call failed; printers add strerror */
    char where[256]; /* "recipe.yaml:12:5", a ref, a path; empty when none */
    char msg[1024];  /* lowercase, starts with a verb, names things in quotes */
} sbx_error;

#define SBX_ERROR_INIT {0, 0, "", ""}

/* Set an error and return `code` (so `return sbx_error_set(...)` works). */
SBX_API int sbx_error_set(sbx_error *err, int code, const char *fmt, ...)
            __attribute__((format(printf, 3, 4)));
/* As sbx_error_set, recording errno (the printer appends strerror). */
SBX_API int sbx_error_sys(sbx_error *err, int code, int sys_errno, const char *fmt, ...)
            __attribute__((format(printf, 4, 5)));
/* Record where the problem is (file:line:col, a ref, a path). */
SBX_API void sbx_error_where(sbx_error *err, const char *fmt, ...)
            __attribute__((format(printf, 2, 3)));
/* Prefix context: msg becomes "<context>: <msg>".  Returns err->code. */
SBX_API int sbx_error_wrap(sbx_error *err, const char *fmt, ...)
            __attribute__((format(printf, 2, 3)));
SBX_API void sbx_error_clear(sbx_error *err);
/* One line: "[where: ]msg[: strerror]". */
SBX_API const char *sbx_error_format(const sbx_error *err, char *buf, size_t len);
/* Stable short name of a code ("not found", "digest mismatch", ...). */
SBX_API const char *sbx_error_code_name(int code);

/* ---- sizes, as options and settings take them ---- */
/* "512", "64K", "1.5G", "2GiB" (powers of 1024, as docker's --memory),
 * "100MB", "2GB" (powers of 1000); a trailing B alone is bytes.  0, or -1
 * when s is not a size (with a message naming it in err). */
SBX_API int sbx_bytes_parse(const char *s, uint64_t *out, sbx_error *err);

#ifdef __cplusplus
}
#endif
#endif
