/* sbx-image: the per-call context.
 *
 * Every long call (resolve, pull, inspect, build, unpack, merge, export,
 * capture, gc, fsck, recipe parsing that hashes copy sources) takes a
 * `sbx_ctx *` as its last parameter before the error.  The context carries
 * what a host program wants for that one operation: where its log lines and
 * progress events go, an operation id to tell them apart, and a cancel flag.
 * There are no process-wide sinks: two threads running two pulls with two
 * contexts never see each other's events.  NULL is a valid context: silent
 * and not cancellable.
 *
 * Threads and signals: callbacks of one context are never called
 * concurrently (the library serializes them), but they may be called from a
 * worker thread of the call (parallel layer downloads).  They must not block
 * for long and must not call back into the library with the same context.
 * sbx_ctx_cancel may be called from any thread and from a signal handler:
 * the call it cancels stops at its next check (between entries, between
 * chunks, or at once for a running build step, whose container is killed),
 * removes what it made and returns SBX_ECANCELED.  The library installs no
 * signal handler and blocks no signal.
 *
 * Never pass credentials in a log or progress message: the library does not.
 */
#ifndef SBX_CONTEXT_H
#define SBX_CONTEXT_H

#include <stdbool.h>
#include <stdint.h>

#include "sbx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { SBX_LOG_DEBUG, SBX_LOG_INFO, SBX_LOG_WARN, SBX_LOG_ERROR } sbx_log_level;

/* A log line (no trailing newline).  op_id: the context's id, or NULL. */
typedef void (*sbx_log_fn)(void *ud, sbx_log_level level, const char *op_id, const char *msg);

/* A progress event for long work: a pull of one layer, an unpack, fsck.
 * `id` names the item ("sha256:ab12..", "layer 2/5 sha256:..", "fsck");
 * `total` is 0 if unknown. */
typedef struct sbx_progress {
    const char *op_id;    /* the context's id, or NULL */
    const char *id;
    const char *phase;    /* "download", "present", "commit", "unpack", "merge", "done", ... */
    uint64_t done;
    uint64_t total;
} sbx_progress;

typedef void (*sbx_progress_fn)(void *ud, const sbx_progress *p);

typedef struct sbx_ctx sbx_ctx;

/* A new context: no sinks (messages dropped), level SBX_LOG_INFO, not
 * cancelled.  Owned by the caller: sbx_ctx_free (after the calls using it
 * have returned). */
SBX_API int sbx_ctx_new(sbx_ctx **out, sbx_error *err);
SBX_API void sbx_ctx_free(sbx_ctx *ctx);

/* Set the sinks before the calls that use them (not while one runs). */
SBX_API void sbx_ctx_set_log(sbx_ctx *ctx, sbx_log_fn fn, void *ud, sbx_log_level min_level);
SBX_API void sbx_ctx_set_progress(sbx_ctx *ctx, sbx_progress_fn fn, void *ud);
/* An id given to every callback ("build 42", a request id); copied. */
SBX_API int sbx_ctx_set_op_id(sbx_ctx *ctx, const char *op_id, sbx_error *err);
SBX_API const char *sbx_ctx_op_id(const sbx_ctx *ctx);

/* Ask every call using ctx to stop.  Any thread; async-signal-safe.  A
 * cancelled context stays cancelled: use a new one for the next operation. */
SBX_API void sbx_ctx_cancel(sbx_ctx *ctx);
SBX_API bool sbx_ctx_cancelled(const sbx_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
