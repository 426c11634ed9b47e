/* OCI runtimes: finding them, probing them, calling them.
 *
 * Detection is by evidence, not by assumption: a runtime counts as working
 * when it takes a real container through create to the point of exec'ing its
 * process (a probe bundle whose executable does not exist; reaching the
 * "not found" error proves namespaces, mounts and cgroups were set up).  The
 * answer is cached per process.
 *
 * Hybrid cgroups (cgroup2 mounted beside v1 controllers, e.g. at
 * /sys/fs/cgroup/unified) make crun refuse to run.  When mountinfo shows that
 * layout, crun is started in a forked child that enters a private mount
 * namespace, unmounts the cgroup2 mount there and then execs crun with
 * --cgroup-manager=disabled; no shell is involved.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "sandbox_internal.h"
#include "sbx_common.h"

static const char *const rt_names[] = {"auto", "crun", "runc", "runsc"};

const char *bld_runtime_name(bld_runtime_kind kind)
{
    return (unsigned)kind < SBX_ARRAY_LEN(rt_names) ? rt_names[kind] : "unknown";
}

int bld_runtime_parse(bld_runtime_kind *out, const char *name, sbx_error *err)
{
    for (size_t i = 0; i < SBX_ARRAY_LEN(rt_names); i++)
        if (name && !strcmp(name, rt_names[i])) {
            *out = (bld_runtime_kind)i;
            return 0;
        }
    return sbx_error_set(err, SBX_EINVAL, "unknown runtime '%s' (want crun, runc, runsc or auto)",
                         name ? name : "");
}

/* ---- cgroup layout ------------------------------------------------------ */

/* Mount points of cgroup2 filesystems that sit beside v1 hierarchies. */
static int hybrid_mounts(char paths[][256], int max)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return 0;
    char line[4096];
    int n2 = 0, n1 = 0;
    while (fgets(line, sizeof(line), f)) {
        /* id parent maj:min root mountpoint opts... - fstype source superopts */
        char mnt[256];
        if (sscanf(line, "%*s %*s %*s %*s %255s", mnt) != 1)
            continue;
        const char *dash = strstr(line, " - ");
        if (!dash)
            continue;
        char fstype[64];
        if (sscanf(dash + 3, "%63s", fstype) != 1)
            continue;
        if (!strcmp(fstype, "cgroup"))
            n1++;
        else if (!strcmp(fstype, "cgroup2") && n2 < max)
            snprintf(paths[n2++], 256, "%s", mnt);
    }
    fclose(f);
    return n1 > 0 ? n2 : 0;
}

bool bld_cgroup_is_hybrid(void)
{
    char paths[4][256];
    return hybrid_mounts(paths, 4) > 0;
}

/* ---- spawning ----------------------------------------------------------- */

int bld_wait_pid(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

/* Mounts of other steps and sandboxes that a private mount namespace
 * would copy: the store's scratch dirs (other steps' overlays, secrets'
 * tmpfs, network namespace binds) other than our bundle's, and overlays
 * named sbx-* (runtime-host mounts).  The child detaches them in its copy,
 * so another build's secrets do not live on in this step's namespace.  Read
 * before fork (no allocation after it); what is mounted after the read is
 * missed, harmlessly. */
static char (*others_mounted(size_t *n, const char *bundle))[PATH_MAX]
{
    *n = 0;
    const char *slash = strrchr(bundle, '/');
    if (!slash)
        return NULL;
    size_t tl = (size_t)(slash - bundle) + 1, bl = strlen(bundle); /* "<store>/tmp/" */
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return NULL;
    char(*v)[PATH_MAX] = NULL;
    size_t cap = 0;
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        char mnt[PATH_MAX], src[256] = "";
        const char *dash = strstr(line, " - ");
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 || !dash ||
            sscanf(dash + 3, "%*s %255s", src) < 0)
            continue;
        bool ours = strncmp(mnt, bundle, bl) == 0 && (mnt[bl] == '/' || !mnt[bl]);
        if (ours || (strncmp(mnt, bundle, tl) != 0 && strncmp(src, "sbx-", 4) != 0))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char(*nv)[PATH_MAX] = realloc(v, cap * sizeof *v);
            if (!nv)
                break;
            v = nv;
        }
        snprintf(v[(*n)++], PATH_MAX, "%s", mnt);
    }
    fclose(f);
    return v;
}

/* In the child, before exec: a private mount namespace without cgroup2.
 * The mount list is read before fork (no stdio after fork in a threaded
 * process). */
static void child_private_mounts(void)
{
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        dprintf(2, "sbx-image: entering a private mount namespace for the runtime: %s\n",
                strerror(errno));
        _exit(125);
    }
}

static void child_leave_hybrid(char paths[][256], int n)
{
    for (int i = 0; i < n; i++)
        if (umount2(paths[i], MNT_DETACH) < 0) {
            dprintf(2, "sbx-image: unmounting '%s' for crun: %s\n", paths[i], strerror(errno));
            _exit(125);
        }
}

#define NSENTER "/usr/bin/nsenter" /* util-linux */

int bld_rt_spawn(pid_t *pid_out, const rt_call *call, const char *const *args, sbx_error *err)
{
    const bld_runtime_info *rt = call->rt;
    const char *argv[64];
    size_t n = 0;
    char netarg[PATH_MAX + 8];
    if (call->netns) {
        snprintf(netarg, sizeof netarg, "--net=%s", call->netns);
        argv[n++] = "nsenter";
        argv[n++] = netarg;
        argv[n++] = "--";
    }
    argv[n++] = rt->path;
    if (rt->kind == BLD_RUNTIME_CRUN && rt->cgroups_disabled)
        argv[n++] = "--cgroup-manager=disabled";
    if (rt->kind == BLD_RUNTIME_RUNSC) {
        argv[n++] = "--ignore-cgroups";
        argv[n++] = "--platform=ptrace";
        argv[n++] = "--oci-seccomp"; /* the step's filter, inside the sandbox too */
        /* isolated: runsc runs in the step's namespace (call->netns) and uses
         * it as its host network; its own netstack mode would copy the
         * interfaces, but this runsc takes every namespace of a recent
         * kernel for the root one and refuses */
        argv[n++] = call->network == BLD_NETWORK_NONE ? "--network=none" : "--network=host";
    }
    for (size_t i = 0; args[i]; i++) {
        if (n + 1 >= SBX_ARRAY_LEN(argv))
            return sbx_error_set(err, SBX_EINTERNAL, "running %s: too many arguments", rt->path);
        argv[n++] = args[i];
    }
    argv[n] = NULL;

    char hybrid[4][256];
    int nhybrid = 0;
    if (rt->kind == BLD_RUNTIME_CRUN && rt->cgroup_workaround)
        nhybrid = hybrid_mounts(hybrid, 4);
    size_t nothers = 0;
    _cleanup_free_ char(*others)[PATH_MAX] =
        call->overlay_opts ? others_mounted(&nothers, call->bundle) : NULL;
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "opening /dev/null");
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(devnull);
        return sbx_error_sys(err, SBX_EIO, e, "starting %s", rt->path);
    }
    if (pid == 0) {
        setpgid(0, 0); /* a terminal's ^C reaches us, not the runtime: we clean up */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        int out = call->out_fd >= 0 ? call->out_fd : devnull;
        if (dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
            _exit(126);
        bool hybrid_ns = rt->kind == BLD_RUNTIME_CRUN && rt->cgroup_workaround;
        if (hybrid_ns || call->overlay_opts)
            child_private_mounts();
        for (size_t i = 0; i < nothers; i++)
            umount2(others[i], MNT_DETACH); /* gone already, or a parent's went: fine */
        if (call->overlay_opts) {
            int mr = -1;
            if (chdir(call->bundle) == 0)
                for (size_t i = 0; i < call->n_overlay_opts && mr < 0; i++)
                    mr = mount("overlay", "rootfs", "overlay", MS_NODEV, call->overlay_opts[i]);
            if (mr < 0) {
                dprintf(2, "sbx-image: mounting the step's rootfs: %s\n", strerror(errno));
                _exit(125);
            }
            if (call->ready_fd >= 0 && write(call->ready_fd, "1", 1) < 0)
                _exit(125);
        }
        if (hybrid_ns)
            child_leave_hybrid(hybrid, nhybrid);
        execv(call->netns ? NSENTER : rt->path, (char *const *)argv);
        dprintf(2, "sbx-image: executing '%s': %s\n", rt->path, strerror(errno));
        _exit(127);
    }
    close(devnull);
    *pid_out = pid;
    return 0;
}

int bld_rt_run(const rt_call *call0, const char *const *args, unsigned timeout_sec, char *out,
               size_t outlen, sbx_error *err)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "running %s: pipe", call0->rt->path);
    rt_call call = *call0;
    call.out_fd = pfd[1];
    pid_t pid;
    int r = bld_rt_spawn(&pid, &call, args, err);
    close(pfd[1]);
    if (r < 0) {
        close(pfd[0]);
        return r;
    }
    size_t len = 0;
    uint64_t deadline = sbx__now_monotonic_ns() + (uint64_t)timeout_sec * 1000000000ull;
    bool killed = false;
    for (;;) {
        int64_t left = (int64_t)(deadline - sbx__now_monotonic_ns()) / 1000000;
        if (left <= 0 && !killed) {
            kill(-pid, SIGKILL);
            killed = true;
        }
        struct pollfd p = {pfd[0], POLLIN, 0};
        int pr = poll(&p, 1, killed ? 1000 : (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            if (killed)
                break;
            continue;
        }
        char buf[4096];
        ssize_t got = read(pfd[0], buf, sizeof(buf));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        if (out && len + 1 < outlen) {
            size_t take = (size_t)got < outlen - 1 - len ? (size_t)got : outlen - 1 - len;
            memcpy(out + len, buf, take);
            len += take;
        }
    }
    close(pfd[0]);
    if (out && outlen)
        out[len] = '\0';
    int status = bld_wait_pid(pid);
    if (killed)
        return sbx_error_set(err, SBX_ETIMEOUT, "running %s %s: no answer after %us",
                             call0->rt->path, args[0], timeout_sec);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

void bld_rt_destroy(const bld_runtime_info *rt, const char *id)
{
    rt_call call = {rt, BLD_NETWORK_HOST, -1, NULL, NULL, NULL, 0, -1};
    sbx_error err = SBX_ERROR_INIT;
    const char *del_args[] = {"delete", "-f", id, NULL};
    /* -f kills a running container first; a missing one is no error here */
    bld_rt_run(&call, del_args, 20, NULL, 0, &err);
}

/* ---- finding and probing ------------------------------------------------ */

int bld_rt_find(bld_runtime_info *out, bld_runtime_kind kind, sbx_error *err)
{
    memset(out, 0, sizeof(*out));
    out->kind = kind;
    const char *name = bld_runtime_name(kind);
    const char *path = getenv("PATH");
    _cleanup_free_ char *dirs = strdup(
        path && *path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    if (!dirs)
        return sbx_error_set(err, SBX_ENOMEM, "finding %s: out of memory", name);
    /* root's PATH may lack sbin (runc lives in /usr/sbin) */
    const char *extra[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin",
                           "/sbin", "/bin"};
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out->path, sizeof(out->path), "%s/%s", d, name);
        if (*d == '/' && access(out->path, X_OK) == 0)
            goto found;
    }
    for (size_t i = 0; i < SBX_ARRAY_LEN(extra); i++) {
        snprintf(out->path, sizeof(out->path), "%s/%s", extra[i], name);
        if (access(out->path, X_OK) == 0)
            goto found;
    }
    out->path[0] = '\0';
    return sbx_error_set(err, SBX_ENOTFOUND, "%s: not installed (no '%s' on PATH%s)", name, name,
                         kind == BLD_RUNTIME_RUNSC ? "; Debian package 'runsc'"
                         : kind == BLD_RUNTIME_RUNC ? "; Debian package 'runc'"
                                                    : "; Debian package 'crun'");
found:
    out->cgroup_workaround = kind == BLD_RUNTIME_CRUN && bld_cgroup_is_hybrid();
    return 0;
}

/* Bounded copy that always terminates (snprintf("%s") trips -Wformat-truncation). */
static void copy_str(char *dst, size_t len, const char *src)
{
    size_t n = strnlen(src, len - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* The runtime's complaint, reduced to one line for an error message. */
static void first_line(char *dst, size_t len, const char *out)
{
    const char *p = out;
    while (*p == '\n' || *p == ' ')
        p++;
    size_t n = strcspn(p, "\n");
    if (n >= len)
        n = len - 1;
    memcpy(dst, p, n);
    dst[n] = '\0';
    if (!*dst)
        snprintf(dst, len, "no output");
}

static int write_probe_bundle(const char *bundle, bool no_mknod, bool gvisor, sbx_error *err)
{
    _cleanup_free_ char *rootfs = sbx__strdup_printf("%s/rootfs", bundle);
    _cleanup_free_ char *cfg = sbx__strdup_printf("%s/config.json", bundle);
    if (!rootfs || !cfg)
        return sbx_error_set(err, SBX_ENOMEM, "probing: out of memory");
    int r = sbx__mkdir_p(bundle, 0700, err); /* and <store>/run, private */
    if (r == 0)
        r = sbx__mkdir_p(rootfs, 0755, err);
    if (r < 0)
        return r;
    bld_user_ids root = {0};
    snprintf(root.home, sizeof(root.home), "/");
    const char *argv[] = {"/sbx-exec-check", NULL};
    const char *env[] = {"PATH=/", NULL};
    spec_input in = {"rootfs", argv, env, "/", &root, "sbx-probe", BLD_NETWORK_NONE, no_mknod,
                     gvisor, 0, 0, 0, NULL, NULL, NULL};
    json_t *spec = NULL;
    r = bld_spec_build(&spec, &in, err);
    if (r < 0)
        return r;
    /* the probe's rootfs is empty: nothing to mount resolv.conf onto, and
     * /dev, /proc, /sys are created by the runtime */
    int w = json_dump_file(spec, cfg, JSON_COMPACT);
    json_decref(spec);
    if (w < 0)
        return sbx_error_set(err, SBX_EIO, "probing: writing '%s'", cfg);
    return 0;
}

static int probe(const bld_runtime_info *rt, sbx_store *store, char *why, size_t whylen)
{
    sbx_error err = SBX_ERROR_INIT;
    char id[96];
    sbx_scratch *sc = NULL;
    int r = bld_bundle_new(&sc, store, rt, id, &err);
    const char *bundle = sc ? sbx_scratch_path(sc) : NULL;
    if (r == 0)
        r = write_probe_bundle(bundle, rt->cgroups_disabled, rt->kind == BLD_RUNTIME_RUNSC, &err);
    char out[2048] = "";
    int status = -1;
    if (r == 0) {
        rt_call call = {rt, BLD_NETWORK_NONE, -1, NULL, NULL, NULL, 0, -1};
        const char *args[] = {"run", "--bundle", bundle, id, NULL};
        status = bld_rt_run(&call, args, 30, out, sizeof(out), &err);
        bld_rt_destroy(rt, id);
    }
    sbx_error e2 = SBX_ERROR_INIT;
    sbx_scratch_free(sc, &e2);
    if (r < 0 || status < 0) {
        copy_str(why, whylen, err.msg);
        return -1;
    }
    if (strstr(out, "sbx-exec-check"))
        return 0; /* it got as far as exec'ing the process */
    char line[512];
    first_line(line, sizeof(line), out);
    snprintf(why, whylen, "probe container failed (exit %d): %s", status, line);
    return -1;
}

typedef struct probe_cache {
    bool done;
    int ok;
    bld_runtime_info info;
    char why[600];
} probe_cache;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static probe_cache cache[4];

static int check_one(bld_runtime_info *out, bld_runtime_kind kind, sbx_store *store,
                     char *why, size_t whylen, const sbx_ctx *ctx)
{
    pthread_mutex_lock(&cache_lock);
    probe_cache *c = &cache[kind];
    if (!c->done) {
        sbx_error err = SBX_ERROR_INIT;
        c->ok = -1;
        if (bld_rt_find(&c->info, kind, &err) < 0)
            copy_str(c->why, sizeof(c->why), err.msg);
        else if (probe(&c->info, store, c->why, sizeof(c->why)) == 0)
            c->ok = 0;
        else if (c->info.cgroup_workaround && !c->info.cgroups_disabled &&
                 (c->info.cgroups_disabled = true) &&
                 probe(&c->info, store, c->why, sizeof(c->why)) == 0) {
            /* v1 controllers unusable too: run without cgroups, and so
             * without a devices cgroup (the spec then drops CAP_MKNOD) */
            sbx__log(ctx, SBX_LOG_INFO, "crun runs with --cgroup-manager=disabled here");
            c->ok = 0;
        } else {
            char tmp[600];
            snprintf(tmp, sizeof(tmp), "%s: %s%s", bld_runtime_name(kind), c->why,
                     c->info.cgroup_workaround ? " (with the hybrid-cgroup workaround)" : "");
            copy_str(c->why, sizeof(c->why), tmp);
        }
        c->done = true;
    }
    int ok = c->ok;
    *out = c->info;
    copy_str(why, whylen, c->why);
    pthread_mutex_unlock(&cache_lock);
    return ok;
}

int bld_runtime_detect(bld_runtime_info *out, bld_runtime_kind want, sbx_store *store,
                       const sbx_ctx *ctx, sbx_error *err)
{
    char why1[600], why2[600];
    if (want != BLD_RUNTIME_AUTO) {
        if ((unsigned)want >= SBX_ARRAY_LEN(cache))
            return sbx_error_set(err, SBX_EINVAL, "unknown runtime %d", (int)want);
        if (check_one(out, want, store, why1, sizeof(why1), ctx) == 0)
            return 0;
        return sbx_error_set(err, SBX_EUNSUPPORTED, "runtime '%s' does not work here: %s",
                             bld_runtime_name(want), why1);
    }
    if (check_one(out, BLD_RUNTIME_CRUN, store, why1, sizeof(why1), ctx) == 0)
        return 0;
    if (check_one(out, BLD_RUNTIME_RUNC, store, why2, sizeof(why2), ctx) == 0) {
        sbx__log(ctx, SBX_LOG_INFO, "using runc: %s", why1);
        return 0;
    }
    return sbx_error_set(err, SBX_EUNSUPPORTED, "no working OCI runtime: %s; %s", why1, why2);
}
