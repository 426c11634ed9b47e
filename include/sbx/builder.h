/* sbx-image: the builder.  Turns a recipe (include/sbx/recipe.h) into an OCI
 * image in the store (include/sbx/store.h).
 *
 * Every step that runs commands runs in a throwaway OCI container whose root
 * is an overlay of the parent's unpacked layers plus a fresh upper
 * directory; the upper becomes one deterministic layer (none when nothing
 * changed).  After every step the state (an OCI config and manifest) is
 * stored and named "cache:<step key>" (sbx_recipe_cache_key), so a rebuild
 * of an unchanged recipe runs nothing and a change at step k reruns k and
 * what follows.  The result is named "recipe:<recipe digest>" and by tags.
 *
 * A failed step leaves nothing of itself in the store: no layer, no name, no
 * mount; the steps before it stay cached.
 */
#ifndef SBX_BUILDER_H
#define SBX_BUILDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbx/context.h"
#include "sbx/error.h"
#include "sbx/recipe.h"
#include "sbx/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What happens to a step, reported through sbx_build_options.on_event. */
typedef enum {
    SBX_BUILD_EV_BASE = 1, /* the base: summary its kind, detail what, digest when resolved */
    SBX_BUILD_EV_START,    /* a step starts running */
    SBX_BUILD_EV_CACHED,   /* a step's result came from the cache */
    SBX_BUILD_EV_DONE,     /* a step finished; diff_id set when it added a layer */
    SBX_BUILD_EV_FAILED,   /* a step failed; see sbx_build_result */
} sbx_build_event_kind;

typedef struct sbx_build_event {
    sbx_build_event_kind kind;
    size_t index;        /* 1-based step number; 0 for the base */
    size_t total;        /* number of steps (base excluded) */
    const char *summary; /* "apt_install curl git"; BASE: "sbx", "image" or "from_registry" */
    const char *detail;  /* BASE: the ref as written, or for sbx "debian bookworm minbase";
                          * DONE: "no changes" or NULL */
    const char *diff_id; /* DONE: the new layer, or NULL */
    double seconds;      /* DONE/FAILED: wall time of the step */
    const char *digest;  /* BASE: the resolved base manifest (NULL for sbx: the event
                          * comes before the base is built, so its output follows it) */
} sbx_build_event;

typedef void (*sbx_build_event_fn)(void *ud, const sbx_build_event *ev);
/* "base", "start", "cached", "done", "failed" (what --json's events say). */
SBX_API const char *sbx_build_event_name(sbx_build_event_kind kind);
/* One line of a running step's output (without the newline). */
typedef void (*sbx_build_output_fn)(void *ud, size_t index, const char *line);

enum { SBX_BUILD_NETWORK_ISOLATED = 0, SBX_BUILD_NETWORK_NONE = 1, SBX_BUILD_NETWORK_HOST = 2 };

typedef struct sbx_build_options {
    const char *const *tags;   /* extra names for the result */
    size_t n_tags;
    int no_cache;              /* run every step; results are still cached */
    const char *platform;      /* "os/arch[/variant]" for from_registry bases; NULL: host */
    const char *runtime;       /* "auto" (NULL), "crun", "runc", "runsc" */
    /* Steps' network: SBX_BUILD_NETWORK_ISOLATED (0, the default) a
     * namespace of their own with outbound access through slirp4netns, no
     * way to the host's loopback or to 169.254.0.0/16; _NONE loopback
     * only; _HOST the host's own (every service on its 127.0.0.1). */
    int network;
    unsigned timeout_seconds;  /* per step; 0: $SBX_BUILD_TIMEOUT or 3600 */
    /* base: sbx.  NULL: $SBX_BASE_SUITE / $SBX_BASE_VARIANT / $SBX_BASE_MIRROR, else
     * bookworm / minbase / the Debian mirror apt uses on this host. */
    const char *base_suite;
    const char *base_variant;
    const char *base_mirror;
    sbx_build_event_fn on_event;
    sbx_build_output_fn on_output;
    void *ud;
    /* Processes (and threads) a step may have at once (crun and runc; runsc
     * runs its own kernel).  0: $SBX_BUILD_PIDS_LIMIT ("max" or a number),
     * else SBX_BUILD_PIDS_DEFAULT; SBX_PIDS_UNLIMITED: no limit. */
    unsigned pids_limit;
    /* Concurrent builds of one recipe (same recipe digest, any process or
     * thread, one store) run once: the others wait for it, then find its
     * steps cached.  Seconds a build waits for another one of the same
     * recipe before it gives up with SBX_ETIMEOUT; 0: no limit. */
    unsigned wait_timeout_seconds;
    /* The whole build's time limit, beside the per-step one: counted from
     * the call, it bounds the wait above and every step (a step gets what
     * is left if that is less than its own limit); SBX_ETIMEOUT, the steps
     * finished before staying cached.  0: none. */
    unsigned build_timeout_seconds;
    /* Registry settings and the caller's credentials for the base (and any
     * image the build pulls); store and platform are the build's.  NULL:
     * the Docker config.  A private base in the store (pulled with
     * credentials, see sbx_registry_gate) is used only when these
     * credentials may pull it now. */
    const struct sbx_registry_options *registry;
    /* Build secrets by id, for the steps whose recipe names them
     * (sbx_step_secret).  A step that names an id not here fails before it
     * starts, cached or not: the states from the first step that uses a
     * secret on are cached under a keyed hash of the values and given only
     * to a build with the same values.  Values reach no layer, config, log
     * line, event or message (lines of a value of 4 bytes or more are shown
     * as "****").  Each at most SBX_BUILD_SECRET_MAX bytes. */
    const struct sbx_build_secret *secrets;
    size_t n_secrets;
    /* The step cache through registries: repositories (host/path, no tag)
     * whose entries (each step's state, tagged sbx-cache-<key hex>) are
     * looked up before a step runs, in order, pulling only what the deepest
     * hit holds; and one repository every entry of this build is pushed to
     * once it succeeded.  Credentials: `registry`.  A cache repository is
     * trusted as much as a base image (its entries are what the steps
     * "made"). */
    const char *const *cache_from;
    size_t n_cache_from;
    const char *cache_to;
    /* A step's memory (bytes; past it the kernel kills it), CPU (thousandths
     * of a core, as a quota per 100 ms) and the bytes it may write to its
     * layer (past them it is stopped with SBX_ELIMIT).  Memory and CPU go
     * through the runtime's cgroups (crun, runc; runsc runs its own
     * kernel and ignores them).  0: $SBX_BUILD_MEMORY, $SBX_BUILD_CPUS,
     * $SBX_BUILD_DISK_LIMIT (sizes as sbx_bytes_parse reads them, or
     * "max"), else the defaults below; SBX_LIMIT_NONE: none. */
    uint64_t memory_bytes;
    unsigned cpu_millis;
    uint64_t disk_bytes;
    /* Labels set on the image's config ("KEY=VALUE"; a later one for the
     * same key wins; keys under sh.sbx. are the tool's own).  The recipe
     * digest and the step cache do not change; the image does. */
    const char *const *labels;
    size_t n_labels;
    /* Where python: VERSION and add_python get a standalone CPython when
     * the base's package manager lacks the version (or the base has none):
     * a pins file (JSON: {"url": BASE, "pythons": [{"version": "3.12.7",
     * "arch": "x86_64", "libc": "gnu", "path": P, "sha256": HEX}, ...]};
     * docs/builder.md) replacing the pins built in, and a mirror replacing
     * the base URL the archives are under.  NULL: $SBX_PYTHON_PINS,
     * $SBX_PYTHON_MIRROR, else the built-in pins of python-build-standalone
     * releases and its release download URL. */
    const char *python_pins;
    const char *python_mirror;
} sbx_build_options;

typedef struct sbx_build_secret {
    const char *id;
    const void *value;
    size_t len;
} sbx_build_secret;
#define SBX_BUILD_SECRET_MAX (512u << 10)

#define SBX_BUILD_PIDS_DEFAULT 4096u
#define SBX_PIDS_UNLIMITED (~0u)
#define SBX_LIMIT_NONE (~0ull)
/* Memory: half the host's, at most 8 GiB.  CPU: no quota (a step always
 * has half a plain process's CPU weight).  Disk: 20 GiB. */
#define SBX_BUILD_MEMORY_MAX_DEFAULT (8ull << 30)
#define SBX_BUILD_DISK_DEFAULT (20ull << 30)

#define SBX_BUILD_OPTIONS_INIT \
    {NULL, 0, 0, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0, NULL, NULL, 0, \
     NULL, 0, NULL, 0, 0, 0, NULL, 0, NULL, NULL}

#define SBX_BUILD_TAIL_LINES 20

#define SBX_BUILD_ID_BUFSZ 16

typedef struct sbx_build_result {
    char digest[SBX_DIGEST_BUFSZ];        /* the image manifest */
    char recipe_digest[SBX_DIGEST_BUFSZ];
    char base_digest[SBX_DIGEST_BUFSZ];   /* the resolved base manifest */
    size_t steps_run, steps_cached;
    /* On SBX_ESTEP / SBX_ETIMEOUT: which step failed and how. */
    size_t failed_step;                   /* 1-based; 0 when no step failed */
    char *failed_summary;                 /* owned */
    char *failed_command;                 /* owned: the shell command */
    int exit_code;                        /* -1 when killed by a signal or timed out */
    int term_signal;
    int timed_out;
    char *tail;                           /* owned: last lines of output, '\n'-separated */
    char build_id[SBX_BUILD_ID_BUFSZ];    /* its record (sbx_build_record_get) */
} sbx_build_result;

#define SBX_BUILD_RESULT_INIT {{0}, {0}, {0}, 0, 0, 0, NULL, NULL, 0, 0, 0, NULL, {0}}

/* Build recipe into store.  On success result->digest names the image
 * manifest, which the store names "recipe:<recipe digest>" and every tag.
 * Errors: SBX_ENOTFOUND (base image missing), SBX_EINVAL (bad options,
 * unknown owner, copy outside the context), SBX_ESTEP (a command failed:
 * result says which), SBX_ETIMEOUT, SBX_EUNSUPPORTED (no usable runtime,
 * python version not available), SBX_ECANCELED (ctx cancelled: a running
 * step's container is killed, the steps finished before stay cached),
 * registry and store errors.  ctx: logs, registry progress and cancel; step
 * events and output still go to opts->on_event / on_output.  Free what
 * result owns with sbx_build_result_free. */
SBX_API int sbx_build(sbx_build_result *result, sbx_store *store, const sbx_recipe *recipe,
                      const sbx_build_options *opts, sbx_ctx *ctx, sbx_error *err);
SBX_API void sbx_build_result_free(sbx_build_result *r);

/* ---- build records: status, logs and cancel, from any process -------------
 *
 * Every sbx_build leaves a record in its store (see builder/record.c):
 * state "queued" (waiting for another build of the recipe), "running",
 * "succeeded", "failed" or "cancelled"; timings per step; the image digest
 * or the error; and the full log (every event and every output line).  A
 * record whose builder died says "failed".  Records older than
 * $SBX_BUILD_RECORDS_DAYS (default 7) go when a build starts (at most once
 * an hour). */
typedef struct sbx_build_record {
    char id[SBX_BUILD_ID_BUFSZ];          /* 12 characters [a-z0-9] */
    char recipe_digest[SBX_DIGEST_BUFSZ];
    char state[16];
    int64_t created, started, ended;      /* unix seconds; 0: not yet */
    char digest[SBX_DIGEST_BUFSZ];        /* the image, when succeeded */
    char *error;                          /* when failed or cancelled, else NULL */
    char *json;                           /* the whole record (steps and their seconds) */
} sbx_build_record;
/* Every record, newest first.  Free with sbx_build_records_free. */
SBX_API int sbx_build_records(sbx_build_record **out, size_t *n, sbx_store *s, sbx_error *err);
/* One, by build id or by recipe digest (its newest build).  SBX_ENOTFOUND. */
SBX_API int sbx_build_record_get(sbx_build_record *out, sbx_store *s, const char *id_or_recipe,
                                 sbx_error *err);
SBX_API void sbx_build_record_clear(sbx_build_record *rec);
SBX_API void sbx_build_records_free(sbx_build_record *v, size_t n);
/* The build's log, in chunks, to fn; with follow, until the build ends
 * (live while it runs; SBX_ECANCELED when ctx is cancelled). */
typedef void (*sbx_build_log_fn)(void *ud, const char *buf, size_t len);
SBX_API int sbx_build_log(sbx_store *s, const char *id_or_recipe, bool follow, sbx_build_log_fn fn,
                          void *ud, sbx_ctx *ctx, sbx_error *err);
/* Ask a queued or running build (any process) to stop: its running step's
 * container is killed, nothing half-built is kept, the record says
 * cancelled.  Returns once asked (the builder notices within 100 ms).
 * SBX_EINVAL when it already ended. */
SBX_API int sbx_build_cancel(sbx_store *s, const char *id_or_recipe, sbx_error *err);

/* The platform base image (base: sbx): its store name for the options
 * ("sbx-base:bookworm-minbase"), building it with debootstrap when the
 * store does not have it.  digest_out gets its manifest digest. */
SBX_API int sbx_build_sbx_base(char digest_out[SBX_DIGEST_BUFSZ], sbx_store *store,
                               const sbx_build_options *opts, sbx_ctx *ctx, sbx_error *err);

/* Store a plain directory tree as a one-layer image named `name` (owners,
 * modes and symlinks as found).  The base images of tests and of base: sbx
 * are made this way. */
SBX_API int sbx_build_image_from_dir(char digest_out[SBX_DIGEST_BUFSZ], sbx_store *store,
                                     const char *dir, const char *name, const char *created_by,
                                     sbx_ctx *ctx, sbx_error *err);

#ifdef __cplusplus
}
#endif
#endif
