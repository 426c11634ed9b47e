/* Cleaning what killed runs left under <store>/run (and unpack temp dirs).
 *
 * A bundle is stale when its owner (pid + start time from the "owner" file,
 * or the pid in its name when the file was never written) is dead or its pid
 * now belongs to another process.  Its container is deleted with the runtime
 * recorded in "runtime", its rootfs unmounted, then the directory removed;
 * a rootfs that will not unmount is left alone (removing through a mount
 * would delete image content).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "sandbox_internal.h"
#include "sbx_common.h"

uint64_t bld_proc_starttime(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* comm may hold spaces */
    if (!p)
        return 0;
    unsigned long long v = 0;
    /* fields after comm: state(3) ... starttime(22) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
                      "%*d %*d %llu", &v) != 1)
        return 0;
    return v;
}

bool bld_owner_alive(pid_t pid, uint64_t start)
{
    if (pid <= 0)
        return false;
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return false;
    return start == 0 || bld_proc_starttime(pid) == start;
}

/* ---- what killed runs left ---------------------------------------------- */

static bool is_mountpoint(const char *path)
{
    struct stat a, b;
    _cleanup_free_ char *parent = sbx__strdup_printf("%s/..", path);
    return parent && stat(path, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

static void clean_bundle(const char *run, const char *name, unsigned *removed,
                         const sbx_ctx *ctx)
{
    _cleanup_free_ char *bundle = sbx__strdup_printf("%s/%s", run, name);
    _cleanup_free_ char *owner = sbx__strdup_printf("%s/owner", bundle);
    _cleanup_free_ char *rtfile = sbx__strdup_printf("%s/runtime", bundle);
    _cleanup_free_ char *rootfs = sbx__strdup_printf("%s/rootfs", bundle);
    if (!bundle || !owner || !rtfile || !rootfs)
        return;
    long pid = 0;
    unsigned long long start = 0;
    sbx_error e = SBX_ERROR_INIT;
    _cleanup_free_ char *text = NULL;
    size_t len;
    if (sbx__read_file(&text, &len, owner, 256, &e) == 0)
        sscanf(text, "%ld %llu", &pid, &start);
    else if (sscanf(name, "sbx-%ld-", &pid) != 1 && sscanf(name, "sbx-probe-%ld-", &pid) != 1)
        pid = 0;
    if (bld_owner_alive((pid_t)pid, start))
        return;

    _cleanup_free_ char *rtt = NULL;
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
        bld_rt_destroy(&rt, name);
    }
    for (int i = 0; i < 8 && is_mountpoint(rootfs); i++)
        if (umount2(rootfs, 0) < 0)
            umount2(rootfs, MNT_DETACH);
    if (is_mountpoint(rootfs)) {
        sbx__log(ctx, SBX_LOG_WARN, "cannot unmount stale '%s'; leaving it", rootfs);
        return;
    }
    if (sbx__rm_rf(bundle, &e) == 0 && removed)
        (*removed)++;
}

/* Unpack temp dirs "<hex>.tmp-<pid>-<n>" of dead processes. */
static void clean_unpack_tmp(const char *root)
{
    _cleanup_free_ char *dir = sbx__strdup_printf("%s/unpacked", root);
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *t = strstr(de->d_name, ".tmp-");
        long pid;
        if (!t || sscanf(t, ".tmp-%ld-", &pid) != 1 || bld_owner_alive((pid_t)pid, 0))
            continue;
        _cleanup_free_ char *p = sbx__strdup_printf("%s/%s", dir, de->d_name);
        sbx_error e = SBX_ERROR_INIT;
        if (p)
            sbx__rm_rf(p, &e);
    }
    closedir(d);
}

int bld_sandbox_cleanup_stale(const char *store_root, unsigned *removed, const sbx_ctx *ctx,
                              sbx_error *err)
{
    if (removed)
        *removed = 0;
    _cleanup_free_ char *run = sbx__strdup_printf("%s/run", store_root);
    if (!run)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    DIR *d = opendir(run);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (!strncmp(de->d_name, "sbx-", 4))
                clean_bundle(run, de->d_name, removed, ctx);
        closedir(d);
    } else if (errno != ENOENT) {
        return sbx_error_sys(err, SBX_EIO, errno, "cleaning '%s'", run);
    }
    clean_unpack_tmp(store_root);
    return 0;
}
