/* Builder internals: run one command in a throwaway OCI container.
 *
 * A step runs under a real OCI runtime (crun, runc or runsc) from a bundle
 * generated in a scratch dir of the store, <store root>/tmp/run.<id>/:
 * config.json (jansson), rootfs/ (an overlayfs of the given lower dirs plus an
 * upper and a work dir, mounted here before the runtime starts, so the
 * runtime sees a plain directory) and the runtime that runs it.  The
 * container is "sbx-<id>".
 *
 * Invariants:
 *  - Nothing outlives bld_sandbox_run: the container is killed and deleted,
 *    the rootfs unmounted and the bundle removed on every path, including a
 *    timeout and a cancel arriving while the step runs.
 *  - A bundle whose maker died (SIGKILL, power cut) is found by the store's
 *    reaper (its flock is gone) and removed through
 *    bld_sandbox_cleanup_stale(): container, mount, directory.
 *  - The upper dir belongs to the caller and is left in place (unmounted) for
 *    capture; only mount points the runtime had to create in it are removed.
 */
#ifndef SBX_BUILDER_SANDBOX_H
#define SBX_BUILDER_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbx/context.h"
#include "sbx/error.h"
#include "sbx/store.h"

typedef enum {
    BLD_RUNTIME_AUTO = 0, /* crun, then runc (runsc only when asked for) */
    BLD_RUNTIME_CRUN,
    BLD_RUNTIME_RUNC,
    BLD_RUNTIME_RUNSC,
} bld_runtime_kind;

typedef enum {
    BLD_NETWORK_HOST = 0, /* share the host network (package managers work) */
    BLD_NETWORK_NONE,     /* own network namespace with loopback only */
    BLD_NETWORK_ISOLATED, /* own namespace, outbound through slirp4netns; no host
                             loopback, no link-local (sandbox_net.c) */
} bld_network_mode;

/* One line of the step's combined stdout+stderr, without its newline (lines
 * longer than 4 KiB arrive in pieces).  Called on the calling thread. */
typedef void (*bld_sandbox_output_fn)(void *ud, const char *line, size_t len);

/* A build secret for one step: /run/secrets/<id> in the container. */
typedef struct bld_secret {
    const char *id;
    const char *value;
    size_t len;
} bld_secret;

typedef struct bld_sandbox_options {
    /* The store the bundle's scratch dir is made in.  Required. */
    sbx_store *store;

    /* Root filesystem: unpacked layer dirs, top-most first, stacked with
     * overlayfs over upper/work.  nlowers may be 0 only when rootfs is set:
     * then rootfs is used directly, read-write, with no overlay (upper/work
     * ignored). */
    const char *const *lowers;
    size_t nlowers;
    const char *rootfs;

    /* Upper and work dir (same filesystem, created by the caller, work empty).
     * Both NULL: the sandbox makes scratch ones inside the bundle and removes
     * them with it (changes are discarded). */
    const char *upper;
    const char *work;

    /* The process. argv[0] is looked up in the container's PATH. */
    const char *const *argv;  /* NULL-terminated, required */
    const char *const *env;   /* NULL-terminated "K=V"; PATH and HOME added if absent */
    const char *cwd;          /* absolute; NULL: "/" (created if missing) */
    const char *user;         /* "name", "uid", "uid:gid", "name:group"; NULL: root */
    const char *hostname;     /* NULL: "sbx-build" */

    bld_network_mode network;
    unsigned timeout_sec;     /* 0: no timeout */
    bld_runtime_kind runtime;

    bld_sandbox_output_fn on_output; /* may be NULL */
    void *output_ud;
    size_t keep_lines;        /* lines kept in result.tail; 0: 20 */
    /* Processes (and threads) the step may have at once, through the
     * runtime's pids cgroup (crun, runc; runsc ignores cgroups); 0: none. */
    unsigned pids_limit;
    /* Memory (bytes) and CPU (thousandths of a core) the step may use,
     * through the runtime's memory and cpu cgroups (crun, runc); 0: none.
     * The step always gets half the CPU weight of a plain process
     * (shares 512), so the host's own services win under contention. */
    uint64_t memory_bytes;
    unsigned cpu_millis;
    /* Bytes the step may write to its upper dir (du's count, checked every
     * second or so while it runs and once when it ends; past it the
     * container is killed: SBX_ELIMIT).  0: none; only with an overlay. */
    uint64_t disk_bytes;
    /* Build secrets: files /run/secrets/<id> (mode 0400, the step's user's)
     * on a tmpfs of the host bind-mounted read-only, gone with the step;
     * never in the upper dir.  Their values (each line of 4 bytes or more)
     * are replaced by "****" in the output lines and the tail. */
    const bld_secret *secrets;
    size_t nsecrets;
} bld_sandbox_options;

#define BLD_SANDBOX_OPTIONS_INIT                                                            \
    {NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, BLD_NETWORK_HOST, 0,      \
     BLD_RUNTIME_AUTO, NULL, NULL, 0, 0, 0, 0, 0, NULL, 0}

typedef struct bld_sandbox_result {
    bool exited;          /* the process exited; exit_code valid */
    int exit_code;
    int term_signal;      /* killed by this signal (0 if none) */
    bool timed_out;       /* killed by us after timeout_sec */
    bool hit_pids_limit;  /* failed after a fork failed under pids_limit */
    bool hit_memory_limit; /* SIGKILLed (137) under memory_bytes: most likely the OOM killer */
    bool hit_disk_limit;  /* killed by us: the upper dir passed disk_bytes */
    uint64_t upper_bytes; /* the upper dir's size at the last check (with disk_bytes) */
    bool cancelled;       /* the context was cancelled: the container was killed */
    char *tail;           /* last keep_lines lines, '\n'-joined; owned, see _clear */
    bld_runtime_kind runtime; /* the runtime that ran it */
    uint64_t duration_ms;
} bld_sandbox_result;

#define BLD_SANDBOX_RESULT_INIT \
    {false, 0, 0, false, false, false, false, 0, false, NULL, BLD_RUNTIME_AUTO, 0}

/* Run one command and tear everything down.  Returns 0 when the process
 * exited with status 0; SBX_ESTEP when it exited non-zero or was killed by a
 * signal; SBX_ECANCELED when ctx was cancelled (the container is killed, or
 * never started when the cancel came during setup); SBX_ETIMEOUT after
 * timeout_sec; other
 * codes when the sandbox could not be set up (SBX_EUNSUPPORTED: no working
 * runtime, with the reason for each; SBX_ENOTFOUND: unknown user; SBX_EIO).
 * *result is filled whenever the process ran; free with _clear. */
int bld_sandbox_run(bld_sandbox_result *result, const bld_sandbox_options *opts,
                    const sbx_ctx *ctx, sbx_error *err);
/* A limit as a person gives it: "64 MiB", "2 GiB", else "N bytes". */
int bld_limit_format(uint64_t n, char *buf, size_t len);
void bld_sandbox_result_clear(bld_sandbox_result *result);

/* Remove what killed runs left: for every bundle whose maker is gone, kill
 * and delete its container, unmount its rootfs and remove the directory.
 * Bundles of live processes are left alone.  *removed (may be NULL) counts
 * bundles removed. */
int bld_sandbox_cleanup_stale(sbx_store *store, unsigned *removed, const sbx_ctx *ctx,
                              sbx_error *err);

/* ---- runtimes ------------------------------------------------------------ */

typedef struct bld_runtime_info {
    bld_runtime_kind kind;
    char path[256];        /* absolute path of the binary */
    bool cgroup_workaround; /* hybrid cgroups: run crun in a private mount ns
                               without the cgroup2 mount (/sys/fs/cgroup/unified),
                               where it manages the v1 controllers */
    bool cgroups_disabled;  /* ... and if even that fails: --cgroup-manager=disabled
                               (no devices cgroup: CAP_MKNOD is dropped) */
} bld_runtime_info;

/* "crun", "runc", "runsc", "auto" <-> kind.  Unknown name: SBX_EINVAL. */
int bld_runtime_parse(bld_runtime_kind *out, const char *name, sbx_error *err);
const char *bld_runtime_name(bld_runtime_kind kind);

/* Find a runtime that works on this host, probing it with a real container
 * (cached per process).  AUTO tries crun then runc; when none works,
 * SBX_EUNSUPPORTED with why each failed ("crun: ...; runc: not installed").
 * The probe bundle is a scratch dir of store. */
int bld_runtime_detect(bld_runtime_info *out, bld_runtime_kind want, sbx_store *store,
                       const sbx_ctx *ctx, sbx_error *err);

/* true when cgroup2 is mounted beside v1 controllers (e.g. at
 * /sys/fs/cgroup/unified), read from /proc/self/mountinfo. */
bool bld_cgroup_is_hybrid(void);

/* ---- users --------------------------------------------------------------- */

typedef struct bld_user_ids {
    uint32_t uid, gid;
    uint32_t groups[32];   /* supplementary groups from /etc/group */
    size_t ngroups;
    char home[256];        /* from /etc/passwd; "/" when unknown */
} bld_user_ids;

/* Resolve "name", "uid", "uid:gid", "name:group" against rootfs/etc/passwd and
 * rootfs/etc/group (read without following links out of rootfs).  Unknown
 * names: SBX_ENOTFOUND naming the user; bad syntax: SBX_EINVAL. */
int bld_user_resolve(bld_user_ids *out, const char *rootfs, const char *user, sbx_error *err);

#endif
