/* sbx-image: log sink and progress callback.
 *
 * The library reports through a sink that the embedding program installs
 * (the CLI draws on stderr; the control plane forwards to its own logs).
 * Without a sink, messages are dropped.  Never pass credentials here.
 */
#ifndef SBX_LOG_H
#define SBX_LOG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { SBX_LOG_DEBUG, SBX_LOG_INFO, SBX_LOG_WARN, SBX_LOG_ERROR } sbx_log_level;

typedef void (*sbx_log_fn)(void *ud, sbx_log_level level, const char *msg);

/* A progress event for long work: a pull of one layer, a build step.
 * `id` names the item ("sha256:ab12..", "step 3/7"); `total` is 0 if unknown. */
typedef struct sbx_progress {
    const char *id;
    const char *phase;    /* "download", "present", "commit", "run", "cached", "done" */
    uint64_t done;
    uint64_t total;
} sbx_progress;

typedef void (*sbx_progress_fn)(void *ud, const sbx_progress *p);

void sbx_log_set_sink(sbx_log_fn fn, void *ud);
void sbx_log_set_level(sbx_log_level min);
void sbx_progress_set_sink(sbx_progress_fn fn, void *ud);

void sbx_log(sbx_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbx_progress_emit(const char *id, const char *phase, uint64_t done, uint64_t total);

#ifdef __cplusplus
}
#endif
#endif
