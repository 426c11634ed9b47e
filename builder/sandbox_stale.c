/* What a killed build step leaves: its bundle, a scratch dir of the store
 * (tmp/run.<id>, made with SBX_SCRATCH_OWNER_REAPS), possibly with its
 * container "sbx-<id>" still running and its rootfs still mounted.  The
 * store's reaper hands us each bundle whose maker is gone (the maker's flock
 * on it was released by the kernel; no pid is involved): the container is
 * deleted with the runtime recorded in "runtime", the rootfs unmounted, and
 * the store then removes the directory.  A rootfs that will not unmount keeps
 * its bundle (removing through a mount would delete image content). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "sandbox_internal.h"
#include "sbx_common.h"

int bld_bundle_container_id(char *buf, size_t len, const char *scratch_id)
{
    int n = snprintf(buf, len, "sbx-%s", scratch_id);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int reap_bundle(void *ud, const char *bundle, const char *scratch_id, sbx_error *err)
{
    const sbx_ctx *ctx = ud;
    _cleanup_free_ char *rtfile = sbx__strdup_printf("%s/runtime", bundle);
    _cleanup_free_ char *rootfs = sbx__strdup_printf("%s/rootfs", bundle);
    char id[96];
    if (!rtfile || !rootfs || bld_bundle_container_id(id, sizeof id, scratch_id) < 0)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    sbx_error e = SBX_ERROR_INIT;
    _cleanup_free_ char *rtt = NULL;
    size_t len;
    char rtname[16] = "";
    int workaround = 0, disabled = 0;
    if (sbx__read_file(&rtt, &len, rtfile, 256, &e) == 0)
        sscanf(rtt, "%15s %d %d", rtname, &workaround, &disabled);
    bld_runtime_kind kinds[3] = {BLD_RUNTIME_CRUN, BLD_RUNTIME_RUNC, BLD_RUNTIME_RUNSC};
    bld_runtime_kind one;
    bool known = bld_runtime_parse(&one, rtname, &e) == 0 && one != BLD_RUNTIME_AUTO;
    for (size_t i = 0; i < 3; i++) {
        bld_runtime_info rt;
        if (known && kinds[i] != one)
            continue;
        if (bld_rt_find(&rt, kinds[i], &e) < 0)
            continue;
        rt.cgroups_disabled = known && rt.cgroup_workaround && disabled;
        bld_rt_destroy(&rt, id);
    }
    if (sbx__umount_below(bundle))
        return sbx_error_set(err, SBX_EBUSY, "cannot unmount the stale '%s'", rootfs);
    sbx__log(ctx, SBX_LOG_DEBUG, "removed the container and mount of a killed step (%s)", id);
    return 0;
}

/* A killed builder's step dirs (upper and work of an overlay) and base tree
 * (debootstrap's own mounts, if it died mid-way): reaped after the bundles,
 * so no container of theirs still runs. */
static int reap_build(void *ud, const char *path, const char *scratch_id, sbx_error *err)
{
    (void)ud;
    (void)scratch_id;
    if (sbx__umount_below(path))
        return sbx_error_set(err, SBX_EBUSY, "cannot unmount what is mounted in '%s'", path);
    return 0;
}

int bld_sandbox_cleanup_stale(sbx_store *store, unsigned *removed, const sbx_ctx *ctx,
                              sbx_error *err)
{
    int r = sbx_store_scratch_reap(store, "run", reap_bundle, (void *)ctx, removed, err);
    return r < 0 ? r : sbx_store_scratch_reap(store, "build", reap_build, NULL, NULL, err);
}

int bld_bundle_new(sbx_scratch **out, sbx_store *store, const bld_runtime_info *rt,
                   char id_out[96], sbx_error *err)
{
    int r = sbx_store_scratch_new(out, store, "run", SBX_SCRATCH_OWNER_REAPS, err);
    if (r < 0)
        return sbx_error_wrap(err, "preparing the sandbox");
    bld_bundle_container_id(id_out, 96, sbx_scratch_id(*out));
    /* No fsync: after a power cut there is no container left to delete. */
    char text[128];
    int n = snprintf(text, sizeof text, "%s %d %d\n", bld_runtime_name(rt->kind),
                     rt->cgroup_workaround, rt->cgroups_disabled);
    _cleanup_free_ char *p = sbx__strdup_printf("%s/runtime", sbx_scratch_path(*out));
    _cleanup_close_ int fd = p ? open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
    if (fd < 0 || sbx__write_all(fd, text, (size_t)n, err) < 0) {
        if (fd < 0)
            sbx_error_sys(err, SBX_EIO, errno, "preparing the sandbox: writing 'runtime'");
        sbx_error e = SBX_ERROR_INIT;
        sbx_scratch_free(*out, &e);
        *out = NULL;
        return err->code;
    }
    return 0;
}
