/* Builder internals shared by sandbox*.c and runtime*.c; not for other modules. */
#ifndef SBX_BUILDER_SANDBOX_INTERNAL_H
#define SBX_BUILDER_SANDBOX_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "sandbox.h"

/* Extra per-invocation flags for runtimes that take them globally (runsc). */
typedef struct rt_call {
    const bld_runtime_info *rt;
    bld_network_mode network;
    int out_fd;  /* stdout+stderr of the runtime (and the container); -1: /dev/null */
    /* isolated network under runsc: the runtime itself runs in this network
     * namespace (through nsenter) with --network=host, so what is "host" to
     * it is the step's namespace; NULL otherwise */
    const char *netns;
    /* `run`: the container's root filesystem is mounted in a mount
     * namespace of the runtime's own, so it goes with the container however
     * the builder ends: an overlay at <bundle>/rootfs with the first of
     * these options that mounts (relative to the bundle); then a byte to
     * ready_fd.  NULL: nothing to mount. */
    const char *bundle;
    char *const *overlay_opts;
    size_t n_overlay_opts;
    int ready_fd;
} rt_call;

/* Start `<runtime> [global flags] args...` in its own process group with
 * stdin on /dev/null; in the hybrid-cgroup case, or with overlay_opts, the
 * child first enters a private mount namespace (without the cgroup2 mount;
 * with the overlay).  Signals blocked by the caller are unblocked in the
 * child.  Returns the pid. */
int bld_rt_spawn(pid_t *pid_out, const rt_call *call, const char *const *args, sbx_error *err);

/* Run a runtime command to completion within timeout_sec, collecting up to
 * outlen-1 bytes of its output into out (NUL-terminated; may be NULL).
 * Returns its exit status (>= 0) or a negative SBX_E*. */
int bld_rt_run(const rt_call *call, const char *const *args, unsigned timeout_sec, char *out,
               size_t outlen, sbx_error *err);

/* `delete -f ID` (kills it if running), ignoring "does not exist". */
void bld_rt_destroy(const bld_runtime_info *rt, const char *id);

/* Find the binary of a runtime on PATH (no probe). */
int bld_rt_find(bld_runtime_info *out, bld_runtime_kind kind, sbx_error *err);

/* The container id of the bundle in scratch dir <id>: "sbx-<id>". */
int bld_bundle_container_id(char *buf, size_t len, const char *scratch_id);
/* A bundle: a scratch dir of kind "run" (SBX_SCRATCH_OWNER_REAPS) with a
 * "runtime" file ("<name> <workaround> <cgroups disabled>") telling the
 * reaper how to delete its container. */
int bld_bundle_new(sbx_scratch **out, sbx_store *store, const bld_runtime_info *rt,
                   char id_out[96], sbx_error *err);

/* Wait for pid, handling EINTR; returns the wait status. */
int bld_wait_pid(pid_t pid);

/* The runtime-spec config for one step. */
typedef struct spec_input {
    const char *root_path;            /* "rootfs" or an absolute dir */
    const char *const *argv;
    const char *const *env;           /* complete: PATH/HOME already added */
    const char *cwd;
    const bld_user_ids *user;
    const char *hostname;
    bld_network_mode network;
    bool no_mknod;                    /* no devices cgroup guards device nodes */
    bool gvisor;                      /* runsc: its kernel has no clone3, its filter
                                         answers EPERM whatever errnoRet says */
    unsigned pids_limit;              /* 0: none */
    uint64_t memory_bytes;            /* 0: none */
    unsigned cpu_millis;              /* 0: no quota (the weight is always half) */
    const char *secrets_dir;          /* bound read-only at /run/secrets, or NULL */
    const char *netns_path;           /* isolated: the namespace to join */
    const char *resolv_path;          /* isolated: the resolv.conf to bind */
} spec_input;

/* The isolated network (sandbox_net.c): a namespace bound at
 * <bundle>/netns with slirp4netns serving it. */
typedef struct bld_netns {
    char *path, *resolv;
    pid_t slirp;
    int exit_fd;
    bool mounted;
} bld_netns;
int bld_netns_up(bld_netns *n, const char *bundle, const sbx_ctx *ctx, sbx_error *err);
/* Stop slirp4netns, unbind and remove the namespace; a no-op on a zeroed
 * n (never brought up). */
void bld_netns_down(bld_netns *n, const sbx_ctx *ctx);

/* Build config.json; *out owned by the caller (json_decref). */
int bld_spec_build(json_t **out, const spec_input *in, sbx_error *err);

/* Open a path inside root without leaving it (openat2 RESOLVE_IN_ROOT). */
int bld_open_in_root(int rootfd, const char *path, int flags);
/* mkdir -p of an absolute in-container path, staying inside root. */
int bld_mkdir_in_root(int rootfd, const char *path, sbx_error *err);

#endif
