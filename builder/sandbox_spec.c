/* The OCI runtime-spec config.json for one build step.
 *
 * Isolation: own mount, pid, uts and ipc namespaces, plus a network namespace:
 * the isolated one made before (sandbox_net.c, joined by path; default), or a
 * new one with loopback only for network none, or the host's shared; /proc,
 * /dev (tmpfs), /dev/pts, /dev/shm, /dev/mqueue and a read-only /sys; a
 * resolv.conf (slirp's DNS when isolated, the host's when shared) and the
 * host's hosts bound read-only.  Root gets the capability set a
 * package manager needs (Docker's default set; without CAP_MKNOD when the
 * runtime runs without a devices cgroup); other users get none effective.
 * no_new_privs is set, so setuid binaries cannot raise privileges, and a
 * seccomp deny list (below) keeps steps away from kernel surface no build
 * needs.
 */
#include <string.h>
#include <sys/resource.h>

#include "sandbox_internal.h"
#include "sbx_common.h"

static const char *const default_caps[] = {
    "CAP_CHOWN",  "CAP_DAC_OVERRIDE", "CAP_FSETID",  "CAP_FOWNER",       "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID",      "CAP_SETUID",  "CAP_SETFCAP",      "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
};

static const char *const masked_paths[] = {
    "/proc/acpi",        "/proc/asound",       "/proc/kcore",     "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi",        "/sys/firmware",
};

static const char *const readonly_paths[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

/* Syscalls a build step never needs and that widen the kernel surface a
 * hostile step can reach (Docker's default profile refuses the same ones):
 * new namespaces and their entry points, keyrings (not namespaced), bpf,
 * perf, userfaultfd, modules, kexec, handles that bypass paths, clocks, swap,
 * reboot.  Refused with EPERM; everything else is allowed.  Most already
 * need capabilities the step does not have; this holds if one is granted. */
static const char *const denied_syscalls[] = {
    "unshare", "setns", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
    "userfaultfd", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "open_by_handle_at", "name_to_handle_at", "iopl", "ioperm", "swapon",
    "swapoff", "reboot", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "acct",
    "lookup_dcookie", "quotactl", "pivot_root", "mount", "umount2", "fsopen", "fsmount",
    "move_mount", "open_tree", "fspick", "mount_setattr",
};

static json_t *str_array(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && (n == (size_t)-1 ? v[i] != NULL : i < n); i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *mount_entry(const char *dest, const char *type, const char *source,
                           const char *const *opts)
{
    return json_pack("{s:s, s:s, s:s, s:o}", "destination", dest, "type", type, "source", source,
                     "options", str_array(opts, (size_t)-1));
}

static json_t *build_mounts(bld_network_mode net, const char *secrets_dir,
                            const char *resolv_path)
{
    static const char *const proc_o[] = {"nosuid", "noexec", "nodev", NULL};
    static const char *const dev_o[] = {"nosuid", "strictatime", "mode=755", "size=65536k", NULL};
    static const char *const pts_o[] = {"nosuid", "noexec", "newinstance", "ptmxmode=0666",
                                        "mode=0620", NULL};
    static const char *const shm_o[] = {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k",
                                        NULL};
    static const char *const mq_o[] = {"nosuid", "noexec", "nodev", NULL};
    static const char *const sys_o[] = {"nosuid", "noexec", "nodev", "ro", NULL};
    static const char *const bind_ro[] = {"rbind", "ro", "nosuid", "nodev", "noexec", NULL};
    json_t *m = json_array();
    json_array_append_new(m, mount_entry("/proc", "proc", "proc", proc_o));
    json_array_append_new(m, mount_entry("/dev", "tmpfs", "tmpfs", dev_o));
    json_array_append_new(m, mount_entry("/dev/pts", "devpts", "devpts", pts_o));
    json_array_append_new(m, mount_entry("/dev/shm", "tmpfs", "shm", shm_o));
    json_array_append_new(m, mount_entry("/dev/mqueue", "mqueue", "mqueue", mq_o));
    json_array_append_new(m, mount_entry("/sys", "sysfs", "sysfs", sys_o));
    if (net == BLD_NETWORK_HOST || net == BLD_NETWORK_ISOLATED) {
        json_array_append_new(m, mount_entry("/etc/resolv.conf", "bind",
                                             net == BLD_NETWORK_ISOLATED ? resolv_path
                                                                         : "/etc/resolv.conf",
                                             bind_ro));
        json_array_append_new(m, mount_entry("/etc/hosts", "bind", "/etc/hosts", bind_ro));
    }
    if (secrets_dir)
        json_array_append_new(m, mount_entry("/run/secrets", "bind", secrets_dir, bind_ro));
    return m;
}

static json_t *build_process(const spec_input *in)
{
    const bld_user_ids *u = in->user;
    json_t *gids = json_array();
    for (size_t i = 0; i < u->ngroups; i++)
        json_array_append_new(gids, json_integer(u->groups[i]));
    json_t *user = json_pack("{s:I, s:I, s:o}", "uid", (json_int_t)u->uid, "gid",
                             (json_int_t)u->gid, "additionalGids", gids);
    const char *capv[SBX_ARRAY_LEN(default_caps)];
    size_t ncaps = 0;
    for (size_t i = 0; i < SBX_ARRAY_LEN(default_caps); i++)
        if ((!in->no_mknod || strcmp(default_caps[i], "CAP_MKNOD") != 0) &&
            /* isolated: no raw frames past the namespace's routes */
            (in->network != BLD_NETWORK_ISOLATED || strcmp(default_caps[i], "CAP_NET_RAW") != 0))
            capv[ncaps++] = default_caps[i];
    json_t *caps = json_pack("{s:o, s:o, s:o}", "bounding", str_array(capv, ncaps),
                             "effective", str_array(capv, u->uid == 0 ? ncaps : 0),
                             "permitted", str_array(capv, u->uid == 0 ? ncaps : 0));
    /* as many open files as this process may have: never above the host's cap */
    struct rlimit nofile = {1024, 1024};
    getrlimit(RLIMIT_NOFILE, &nofile);
    json_t *rlimits = json_pack("[{s:s, s:I, s:I}]", "type", "RLIMIT_NOFILE", "hard",
                                (json_int_t)nofile.rlim_max, "soft", (json_int_t)nofile.rlim_max);
    return json_pack("{s:b, s:o, s:o, s:o, s:s, s:o, s:o, s:b}", "terminal", 0, "user", user,
                     "args", str_array(in->argv, (size_t)-1), "env",
                     str_array(in->env, (size_t)-1), "cwd", in->cwd, "capabilities", caps,
                     "rlimits", rlimits, "noNewPrivileges", 1);
}

/* clone(2) may make namespaces too (CLONE_NEWUSER gives a step a user
 * namespace with every capability, CLONE_NEWNET one to use them in): refused
 * with EPERM when any namespace flag is set, one rule per flag (rules are
 * OR'ed, a rule's argument checks AND'ed).  clone3 passes its flags in
 * memory a filter cannot read: ENOSYS, so libc falls back to clone, as under
 * Docker's default profile.  Flag values from <linux/sched.h>. */
static const unsigned long clone_ns_flags[] = {
    0x00020000, /* CLONE_NEWNS */     0x02000000, /* CLONE_NEWCGROUP */
    0x04000000, /* CLONE_NEWUTS */    0x08000000, /* CLONE_NEWIPC */
    0x10000000, /* CLONE_NEWUSER */   0x20000000, /* CLONE_NEWPID */
    0x40000000, /* CLONE_NEWNET */
};

static json_t *build_seccomp(bool gvisor)
{
    static const char *const arches[] = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                                         "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"};
    json_t *rules = json_pack("[{s:o, s:s, s:i}]", "names",
                              str_array(denied_syscalls, SBX_ARRAY_LEN(denied_syscalls)),
                              "action", "SCMP_ACT_ERRNO", "errnoRet", 1);
    /* gVisor has no clone3 (ENOSYS already); a rule there would answer EPERM
     * and break libc's fallback for threads */
    if (rules && !gvisor)
        json_array_append_new(rules, json_pack("{s:[s], s:s, s:i}", "names", "clone3", "action",
                                               "SCMP_ACT_ERRNO", "errnoRet", 38 /* ENOSYS */));
    for (size_t i = 0; rules && i < SBX_ARRAY_LEN(clone_ns_flags); i++)
        json_array_append_new(
            rules, json_pack("{s:[s], s:s, s:i, s:[{s:i, s:I, s:I, s:s}]}", "names", "clone",
                             "action", "SCMP_ACT_ERRNO", "errnoRet", 1, "args", "index", 0,
                             "value", (json_int_t)clone_ns_flags[i], "valueTwo",
                             (json_int_t)clone_ns_flags[i], "op", "SCMP_CMP_MASKED_EQ"));
    return json_pack("{s:s, s:o, s:o}", "defaultAction", "SCMP_ACT_ALLOW", "architectures",
                     str_array(arches, SBX_ARRAY_LEN(arches)), "syscalls", rules);
}

static json_t *build_linux(const spec_input *in)
{
    json_t *ns = json_pack("[{s:s}, {s:s}, {s:s}, {s:s}]", "type", "pid", "type", "ipc", "type",
                           "uts", "type", "mount");
    if (in->network == BLD_NETWORK_NONE)
        json_array_append_new(ns, json_pack("{s:s}", "type", "network"));
    else if (in->network == BLD_NETWORK_ISOLATED && !in->gvisor)
        json_array_append_new(ns, json_pack("{s:s, s:s}", "type", "network", "path",
                                            in->netns_path));
    /* (runsc: the runtime runs in that namespace, its "host" network) */
    json_t *devices = json_pack("[{s:b, s:s}]", "allow", 0, "access", "rwm");
    json_t *resources = json_pack("{s:o}", "devices", devices);
    if (resources && in->pids_limit)
        json_object_set_new(resources, "pids",
                            json_pack("{s:I}", "limit", (json_int_t)in->pids_limit));
    if (resources && in->memory_bytes)
        json_object_set_new(resources, "memory",
                            json_pack("{s:I}", "limit", (json_int_t)in->memory_bytes));
    /* half a plain process's weight: the host's own services first */
    json_t *cpu = json_pack("{s:I}", "shares", (json_int_t)512);
    if (cpu && in->cpu_millis) {
        json_object_set_new(cpu, "period", json_integer(100000));
        json_object_set_new(cpu, "quota", json_integer((json_int_t)in->cpu_millis * 100));
    }
    if (resources && cpu)
        json_object_set_new(resources, "cpu", cpu);
    json_t *lx = json_pack("{s:o, s:o, s:o, s:o}", "namespaces", ns, "resources",
                           resources, "maskedPaths",
                           str_array(masked_paths, SBX_ARRAY_LEN(masked_paths)),
                           "readonlyPaths",
                           str_array(readonly_paths, SBX_ARRAY_LEN(readonly_paths)));
    if (lx)
        json_object_set_new(lx, "seccomp", build_seccomp(in->gvisor));
    return lx;
}

int bld_spec_build(json_t **out, const spec_input *in, sbx_error *err)
{
    json_t *process = build_process(in);
    json_t *linux_ = build_linux(in);
    json_t *mounts = build_mounts(in->network, in->secrets_dir, in->resolv_path);
    json_t *root = json_pack("{s:s, s:b}", "path", in->root_path, "readonly", 0);
    if (!process || !linux_ || !mounts || !root) {
        json_decref(process);
        json_decref(linux_);
        json_decref(mounts);
        json_decref(root);
        return sbx_error_set(err, SBX_ENOMEM, "building the container config: out of memory");
    }
    json_t *spec = json_pack("{s:s, s:o, s:o, s:s, s:o, s:o}", "ociVersion", "1.0.2", "process",
                             process, "root", root, "hostname",
                             in->hostname ? in->hostname : "sbx-build", "mounts", mounts,
                             "linux", linux_);
    if (!spec)
        return sbx_error_set(err, SBX_ENOMEM, "building the container config: out of memory");
    *out = spec;
    return 0;
}
