/* Builder internals: run one command in a throwaway OCI container.
 *
 * A step runs under a real OCI runtime (crun, runc or runsc) from a bundle
 * generated under <store root>/run/<id>/: config.json (jansson), rootfs/ (an
 * overlayfs of the given lower dirs plus an upper and a work dir, mounted here
 * before the runtime starts, so the runtime sees a plain directory) and an
 * owner file (pid + start time of the process that made it).
 *
 * Invariants:
 *  - Nothing outlives sbx_sandbox_run: the container is killed and deleted,
 *    the rootfs unmounted and the bundle removed on every path, including a
 *    timeout and SIGINT/SIGTERM arriving while the step runs.
 *  - A bundle whose owner died (SIGKILL, power cut) is found and removed by
 *    sbx_sandbox_cleanup_stale(): container, mount, directory.
 *  - The upper dir belongs to the caller and is left in place (unmounted) for
 *    capture; only mount points the runtime had to create in it are removed.
 */
#ifndef SBX_BUILDER_SANDBOX_H
#define SBX_BUILDER_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbx/error.h"

typedef enum {
    SBX_RUNTIME_AUTO = 0, /* crun, then runc (runsc only when asked for) */
    SBX_RUNTIME_CRUN,
    SBX_RUNTIME_RUNC,
    SBX_RUNTIME_RUNSC,
} sbx_runtime_kind;

typedef enum {
    SBX_NETWORK_HOST = 0, /* share the host network (package managers work) */
    SBX_NETWORK_NONE,     /* own network namespace with loopback only */
} sbx_network_mode;

/* One line of the step's combined stdout+stderr, without its newline (lines
 * longer than 4 KiB arrive in pieces).  Called on the calling thread. */
typedef void (*sbx_sandbox_output_fn)(void *ud, const char *line, size_t len);

typedef struct sbx_sandbox_options {
    /* Where bundles live: <store_root>/run/<id>/.  Required. */
    const char *store_root;

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

    sbx_network_mode network;
    unsigned timeout_sec;     /* 0: no timeout */
    sbx_runtime_kind runtime;

    sbx_sandbox_output_fn on_output; /* may be NULL */
    void *output_ud;
    size_t keep_lines;        /* lines kept in result.tail; 0: 20 */
} sbx_sandbox_options;

#define SBX_SANDBOX_OPTIONS_INIT                                                            \
    {NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, SBX_NETWORK_HOST, 0,      \
     SBX_RUNTIME_AUTO, NULL, NULL, 0}

typedef struct sbx_sandbox_result {
    bool exited;          /* the process exited; exit_code valid */
    int exit_code;
    int term_signal;      /* killed by this signal (0 if none) */
    bool timed_out;       /* killed by us after timeout_sec */
    int interrupted;      /* SIGINT/SIGTERM received while running (0 if none) */
    char *tail;           /* last keep_lines lines, '\n'-joined; owned, see _clear */
    sbx_runtime_kind runtime; /* the runtime that ran it */
    uint64_t duration_ms;
} sbx_sandbox_result;

#define SBX_SANDBOX_RESULT_INIT {false, 0, 0, false, 0, NULL, SBX_RUNTIME_AUTO, 0}

/* Run one command and tear everything down.  Returns 0 when the process
 * exited with status 0; SBX_ESTEP when it exited non-zero, was killed by a
 * signal or was interrupted (SIGINT/SIGTERM: result.interrupted says which;
 * the caller should stop and exit); SBX_ETIMEOUT after timeout_sec; other
 * codes when the sandbox could not be set up (SBX_EUNSUPPORTED: no working
 * runtime, with the reason for each; SBX_ENOTFOUND: unknown user; SBX_EIO).
 * *result is filled whenever the process ran; free with _clear. */
int sbx_sandbox_run(sbx_sandbox_result *result, const sbx_sandbox_options *opts,
                    sbx_error *err);
void sbx_sandbox_result_clear(sbx_sandbox_result *result);

/* Remove what killed runs left under <store_root>/run: for every bundle whose
 * owner process is dead, kill and delete its container, unmount its rootfs and
 * remove the directory; also stale unpack temp dirs.  Bundles of live
 * processes are left alone.  *removed (may be NULL) counts bundles removed. */
int sbx_sandbox_cleanup_stale(const char *store_root, unsigned *removed, sbx_error *err);

/* ---- runtimes ------------------------------------------------------------ */

typedef struct sbx_runtime_info {
    sbx_runtime_kind kind;
    char path[256];        /* absolute path of the binary */
    bool cgroup_workaround; /* hybrid cgroups: run crun in a private mount ns
                               without the cgroup2 mount (/sys/fs/cgroup/unified),
                               where it manages the v1 controllers */
    bool cgroups_disabled;  /* ... and if even that fails: --cgroup-manager=disabled
                               (no devices cgroup: CAP_MKNOD is dropped) */
} sbx_runtime_info;

/* "crun", "runc", "runsc", "auto" <-> kind.  Unknown name: SBX_EINVAL. */
int sbx_runtime_parse(sbx_runtime_kind *out, const char *name, sbx_error *err);
const char *sbx_runtime_name(sbx_runtime_kind kind);

/* Find a runtime that works on this host, probing it with a real container
 * (cached per process).  AUTO tries crun then runc; when none works,
 * SBX_EUNSUPPORTED with why each failed ("crun: ...; runc: not installed").
 * store_root is where the probe bundle goes. */
int sbx_runtime_detect(sbx_runtime_info *out, sbx_runtime_kind want, const char *store_root,
                       sbx_error *err);

/* true when cgroup2 is mounted beside v1 controllers (e.g. at
 * /sys/fs/cgroup/unified), read from /proc/self/mountinfo. */
bool sbx_cgroup_is_hybrid(void);

/* ---- users --------------------------------------------------------------- */

typedef struct sbx_user_ids {
    uint32_t uid, gid;
    uint32_t groups[32];   /* supplementary groups from /etc/group */
    size_t ngroups;
    char home[256];        /* from /etc/passwd; "/" when unknown */
} sbx_user_ids;

/* Resolve "name", "uid", "uid:gid", "name:group" against rootfs/etc/passwd and
 * rootfs/etc/group (read without following links out of rootfs).  Unknown
 * names: SBX_ENOTFOUND naming the user; bad syntax: SBX_EINVAL. */
int sbx_user_resolve(sbx_user_ids *out, const char *rootfs, const char *user, sbx_error *err);

#endif
