/* Run one build step in a throwaway OCI container.
 *
 * Lifecycle of a bundle, a scratch dir of the store <store>/tmp/run.<id>/
 * (flock()ed by us while it exists; container "sbx-<id>"):
 *   runtime  "<runtime> <workaround>": how the reaper kills what it started
 *   l/<i>    short links to the lower dirs, u and w to upper and work, so the
 *            overlay option string stays far below the 4 KiB page limit
 *   rootfs/  the overlay mount point; config.json
 * Every exit path after the bundle exists goes through teardown(): delete the
 * container, unmount, remove the mount points the runtime had to create in
 * the upper dir, remove the bundle.  A cancelled context (sbx_ctx_cancel,
 * from any thread or a signal handler of the host) is watched through its
 * eventfd next to the output pipe: the container is killed and the step ends
 * through teardown the same way.  No signal is blocked or consumed here.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "sandbox_internal.h"
#include "sbx_common.h"

#define LINE_MAX_BYTES 4096
#define KILL_GRACE_NS (10ull * 1000000000ull)
#define DRAIN_GRACE_NS (2ull * 1000000000ull)
#define DU_EVERY_NS (1000000000ull)

typedef struct run_state {
    const bld_sandbox_options *o;
    const sbx_ctx *ctx;
    bld_runtime_info rt;
    char id[96];
    sbx_scratch *scratch;
    const char *bundle; /* the scratch dir's path */
    char *rootfs;        /* what the runtime sees as root */
    bool overlay;        /* rootfs is an overlay of the lowers (else a plain dir) */
    bool mounted;        /* ... mounted here, in the caller's mount namespace */
    char *ovl_full[2];   /* its options (relative to the bundle), tried in order */
    const char *target;  /* dir that takes the container's writes (upper or rootfs) */
    char *remove_after[12];
    size_t nremove;
    /* output */
    char line[LINE_MAX_BYTES];
    size_t linelen;
    char **ring;
    size_t ring_cap, ring_next, ring_count;
    /* secrets: the tmpfs holding them, and what output must not show */
    char *secrets_dir;
    bool secrets_mounted;
    char **redact;
    size_t nredact;
    bld_netns net; /* isolated network */
} run_state;

/* ---- small helpers ------------------------------------------------------ */

static char *join_cmd(const char *const *argv)
{
    char buf[256];
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; argv[i] && len < sizeof(buf) - 1; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? " " : "", argv[i]);
    if (len >= sizeof(buf) - 1)
        memcpy(buf + sizeof(buf) - 4, "...", 4);
    return strdup(buf);
}

/* ---- output: lines to the callback and into a ring ---------------------- */

/* Every occurrence of a secret's value (each of its lines of 4 bytes or
 * more) becomes "****", in place: the line never grows. */
static void redact_line(run_state *st)
{
    for (size_t i = 0; i < st->nredact; i++) {
        const char *v = st->redact[i];
        size_t vl = strlen(v), at = 0;
        while (at + vl <= st->linelen) {
            char *hit = memmem(st->line + at, st->linelen - at, v, vl);
            if (!hit)
                break;
            size_t off = (size_t)(hit - st->line);
            memcpy(hit, "****", 4);
            memmove(hit + 4, hit + vl, st->linelen - off - vl);
            st->linelen -= vl - 4;
            at = off + 4;
        }
    }
}

static void emit_line(run_state *st)
{
    const bld_sandbox_options *o = st->o;
    redact_line(st);
    if (o->on_output)
        o->on_output(o->output_ud, st->line, st->linelen);
    char *copy = strndup(st->line, st->linelen);
    if (copy && st->ring_cap) {
        free(st->ring[st->ring_next]);
        st->ring[st->ring_next] = copy;
        st->ring_next = (st->ring_next + 1) % st->ring_cap;
        if (st->ring_count < st->ring_cap)
            st->ring_count++;
    } else {
        free(copy);
    }
    st->linelen = 0;
}

static void feed_output(run_state *st, const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            emit_line(st);
            continue;
        }
        st->line[st->linelen++] = buf[i];
        if (st->linelen == sizeof(st->line))
            emit_line(st);
    }
}

static char *ring_join(run_state *st)
{
    size_t total = 1;
    for (size_t i = 0; i < st->ring_count; i++) {
        size_t idx = (st->ring_next + st->ring_cap - st->ring_count + i) % st->ring_cap;
        total += strlen(st->ring[idx]) + 1;
    }
    char *out = malloc(total);
    if (!out)
        return NULL;
    size_t len = 0;
    for (size_t i = 0; i < st->ring_count; i++) {
        size_t idx = (st->ring_next + st->ring_cap - st->ring_count + i) % st->ring_cap;
        len += (size_t)sprintf(out + len, "%s%s", i ? "\n" : "", st->ring[idx]);
    }
    out[len] = '\0';
    return out;
}

/* ---- bundle and rootfs -------------------------------------------------- */

/* Bundle files live as long as one step: no fsync (after a power cut there
 * is no container to find). */
static int write_small(const char *dir, const char *name, const char *text, sbx_error *err)
{
    _cleanup_free_ char *p = sbx__strdup_printf("%s/%s", dir, name);
    if (!p)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "preparing the sandbox: creating '%s'", p);
    return sbx__write_all(fd, text, strlen(text), err);
}

static int make_bundle(run_state *st, sbx_error *err)
{
    int r = bld_bundle_new(&st->scratch, st->o->store, &st->rt, st->id, err);
    if (r == 0)
        st->bundle = sbx_scratch_path(st->scratch);
    return r;
}

/* The step's secrets as files on a tmpfs of the bundle's: never on disk,
 * owned by the step's user, mode 0400 in a 0500 dir; bound read-only at
 * /run/secrets. */
static int mount_secrets(run_state *st, const bld_user_ids *u, sbx_error *err)
{
    const bld_sandbox_options *o = st->o;
    if (!o->nsecrets)
        return 0;
    st->secrets_dir = sbx__strdup_printf("%s/secrets", st->bundle);
    if (!st->secrets_dir)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    if (mkdir(st->secrets_dir, 0700) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "making the secrets dir");
    if (mount("sbx-secrets", st->secrets_dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=0700,size=8m") < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "mounting a tmpfs for the step's secrets");
    st->secrets_mounted = true;
    _cleanup_close_ int dfd = open(st->secrets_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "opening the secrets dir");
    for (size_t i = 0; i < o->nsecrets; i++) {
        const bld_secret *s = &o->secrets[i];
        if (!s->id || !*s->id || strchr(s->id, '/') || !strcmp(s->id, ".") || !strcmp(s->id, ".."))
            return sbx_error_set(err, SBX_EINVAL, "a secret id must be a file name");
        _cleanup_close_ int fd = openat(dfd, s->id, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                                        O_CLOEXEC, 0400);
        if (fd < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "writing the secret '%s'", s->id);
        if (sbx__write_all(fd, s->value, s->len, err) < 0)
            return sbx_error_wrap(err, "writing the secret '%s'", s->id);
        if (fchown(fd, u->uid, u->gid) < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "owning the secret '%s'", s->id);
    }
    if (fchown(dfd, u->uid, u->gid) < 0 || fchmod(dfd, 0500) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "owning the secrets dir");
    return 0;
}

static void unmount_secrets(run_state *st)
{
    if (st->secrets_mounted &&
        umount2(st->secrets_dir, 0) < 0 && umount2(st->secrets_dir, MNT_DETACH) < 0)
        sbx__log(st->ctx, SBX_LOG_WARN, "unmounting the secrets of '%s': %s", st->id,
                 strerror(errno));
    else
        st->secrets_mounted = false;
}

/* What the output must not show: each line (4 bytes or more) of each value. */
static int secret_redactions(run_state *st, sbx_error *err)
{
    for (size_t i = 0; i < st->o->nsecrets; i++) {
        const char *v = st->o->secrets[i].value;
        size_t len = st->o->secrets[i].len;
        for (size_t a = 0; a < len;) {
            size_t e = a;
            while (e < len && v[e] != '\n')
                e++;
            size_t pl = e - a;
            if (pl && v[e - 1] == '\r')
                pl--;
            if (pl >= 4 && !memchr(v + a, '\0', pl)) {
                char **nr = realloc(st->redact, (st->nredact + 1) * sizeof *nr);
                if (!nr || !(nr[st->nredact] = strndup(v + a, pl))) {
                    if (nr)
                        st->redact = nr;
                    return sbx_error_set(err, SBX_ENOMEM, "out of memory");
                }
                st->redact = nr;
                st->nredact++;
            }
            a = e + 1;
        }
    }
    return 0;
}

static void drop_volatile_marker(const run_state *st)
{
    _cleanup_free_ char *p = sbx__strdup_printf("%s/w/work/incompat", st->bundle);
    sbx_error e = SBX_ERROR_INIT;
    if (p)
        sbx__rm_rf(p, &e);
}

static int mount_overlay(run_state *st, sbx_error *err)
{
    const bld_sandbox_options *o = st->o;
    char path[4096];
    snprintf(path, sizeof(path), "%s/l", st->bundle);
    if (mkdir(path, 0700) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "preparing the sandbox: creating '%s'", path);
    _cleanup_free_ char *opts = malloc(8192);
    if (!opts)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    size_t len = (size_t)snprintf(opts, 8192, "lowerdir=");
    for (size_t i = 0; i < o->nlowers; i++) {
        snprintf(path, sizeof(path), "%s/l/%zu", st->bundle, i);
        if (symlink(o->lowers[i], path) < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "preparing the sandbox: linking '%s'",
                                 o->lowers[i]);
        len += (size_t)snprintf(opts + len, 8192 - len, "%sl/%zu", i ? ":" : "", i);
        if (len >= 4000)
            return sbx_error_set(err, SBX_ELIMIT, "preparing the sandbox: %zu layers is more "
                                 "than overlayfs can stack", o->nlowers);
    }
    const char *names[] = {"u", "w"};
    const char *dirs[] = {o->upper, o->work};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", st->bundle, names[i]);
        if (dirs[i] ? symlink(dirs[i], path) : mkdir(path, 0755))
            return sbx_error_sys(err, SBX_EIO, errno, "preparing the sandbox: '%s'", path);
    }
    snprintf(opts + len, 8192 - len, ",upperdir=u,workdir=w");
    /* a volatile mount leaves <work>/work/incompat/volatile, refusing a remount */
    drop_volatile_marker(st);
    snprintf(path, sizeof(path), "%s/rootfs", st->bundle);
    if (mkdir(path, 0755) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "preparing the sandbox: creating '%s'", path);

    /* no copy-up shortcuts: every change must be a real file in upper */
    /* nodev: a device node shipped in an image (say, the host's disk) must
     * not open; the container's /dev is the runtime's own tmpfs.  Older
     * kernels lack volatile (5.10): it may go; the others may not (a
     * redirect or metacopy upper would lose data in the captured layer). */
    static const char *const extras[] = {",index=off,metacopy=off,redirect_dir=off,volatile",
                                         ",index=off,metacopy=off,redirect_dir=off"};
    for (size_t i = 0; i < SBX_ARRAY_LEN(extras); i++)
        if (!(st->ovl_full[i] = sbx__strdup_printf("%s%s", opts, extras[i])))
            return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    /* Relative option paths resolve against the mounter's cwd: mount from a
     * child so this process's cwd is never touched. */
    pid_t pid = fork();
    if (pid < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "mounting the rootfs: fork");
    if (pid == 0) {
        if (chdir(st->bundle) < 0)
            _exit(errno);
        for (size_t i = 0; i < SBX_ARRAY_LEN(st->ovl_full); i++)
            if (mount("overlay", "rootfs", "overlay", MS_NODEV, st->ovl_full[i]) == 0)
                _exit(0);
        _exit(errno);
    }
    int status = bld_wait_pid(pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return sbx_error_sys(err, SBX_EIO, WIFEXITED(status) ? WEXITSTATUS(status) : EIO,
                             "mounting the overlay rootfs at '%s' (%zu lowers)", path,
                             o->nlowers);
    st->mounted = st->overlay = true;
    st->rootfs = strdup(path);
    st->target = o->upper;
    return st->rootfs ? 0 : sbx_error_set(err, SBX_ENOMEM, "out of memory");
}

/* Paths the runtime creates when they are missing; they must not end up in
 * the captured layer. */
static void note_missing_mountpoints(run_state *st, int rootfd)
{
    static const char *const targets[] = {"etc/resolv.conf", "etc/hosts", "proc", "dev", "sys",
                                          "run/secrets"};
    if (!st->target)
        return;
    _cleanup_close_ int tfd = open(st->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat rs;
    /* /run held only to hold the secrets' mount point goes too */
    bool run_in_upper = tfd >= 0 && fstatat(tfd, "run", &rs, AT_SYMLINK_NOFOLLOW) == 0;
    for (size_t i = 0; i < SBX_ARRAY_LEN(targets); i++) {
        if (i < 2 && st->o->network == BLD_NETWORK_NONE)
            continue; /* (isolated binds them as host does) */
        if (i == 5 && !st->o->nsecrets)
            continue;
        int fd = bld_open_in_root(rootfd, targets[i], O_PATH);
        if (fd >= 0) {
            close(fd);
            continue;
        }
        if (st->nremove < SBX_ARRAY_LEN(st->remove_after))
            st->remove_after[st->nremove++] = strdup(targets[i]);
        /* a parent copied up only to hold the mount point goes too */
        struct stat sb;
        if (i < 2 && tfd >= 0 && fstatat(tfd, "etc", &sb, AT_SYMLINK_NOFOLLOW) < 0 &&
            st->nremove < SBX_ARRAY_LEN(st->remove_after))
            st->remove_after[st->nremove++] = strdup("etc");
        if (i == 5 && !run_in_upper && st->nremove < SBX_ARRAY_LEN(st->remove_after))
            st->remove_after[st->nremove++] = strdup("run");
    }
}

static void remove_created(run_state *st)
{
    _cleanup_close_ int tfd =
        st->target ? open(st->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    for (size_t i = 0; i < st->nremove; i++) {
        char *p = st->remove_after[i];
        if (!p || tfd < 0)
            continue;
        char *slash = strrchr(p, '/');
        const char *base = slash ? slash + 1 : p;
        int pfd = tfd;
        if (slash) {
            *slash = '\0';
            struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                                   .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS};
            pfd = (int)syscall(SYS_openat2, tfd, p, &how, sizeof(how));
        }
        struct stat sb;
        if (pfd >= 0 && fstatat(pfd, base, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISREG(sb.st_mode) && sb.st_size == 0)
                unlinkat(pfd, base, 0);
            else if (S_ISDIR(sb.st_mode))
                unlinkat(pfd, base, AT_REMOVEDIR); /* only when empty */
        }
        if (slash && pfd >= 0)
            close(pfd);
    }
}

/* `run` removes its container when it exits by itself; only a container that
 * may still exist (we killed it, the runtime died, its state is still there)
 * costs a `delete -f`.  runsc keeps its state elsewhere: always deleted. */
static bool container_may_exist(const run_state *st, const bld_sandbox_result *res)
{
    if (res->timed_out || res->cancelled || res->term_signal || !res->exited)
        return true;
    const char *dir = st->rt.kind == BLD_RUNTIME_CRUN   ? "/run/crun"
                      : st->rt.kind == BLD_RUNTIME_RUNC ? "/run/runc"
                                                        : NULL;
    if (!dir)
        return true;
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, st->id);
    return access(path, F_OK) == 0 || errno != ENOENT;
}

static void teardown(run_state *st, bool started, const bld_sandbox_result *res)
{
    if (started && container_may_exist(st, res))
        bld_rt_destroy(&st->rt, st->id);
    unmount_secrets(st);
    bld_netns_down(&st->net, st->ctx);
    if (st->mounted && st->rootfs) {
        if (umount2(st->rootfs, 0) < 0 && umount2(st->rootfs, MNT_DETACH) < 0)
            sbx__log(st->ctx, SBX_LOG_WARN, "unmounting '%s': %s", st->rootfs, strerror(errno));
        else
            st->mounted = false;
        if (!st->mounted)
            drop_volatile_marker(st);
    }
    if (!st->mounted && st->overlay)
        drop_volatile_marker(st); /* the runtime's mount is gone with its namespace */
    if (!st->mounted)
        remove_created(st);
    /* Still mounted: leave the bundle whole (its runtime file says how to
     * reap it) to the builder's reaper, which unmounts it. */
    sbx_error e = SBX_ERROR_INIT;
    if (st->mounted || st->secrets_mounted || st->net.mounted)
        sbx_scratch_release(st->scratch);
    else if (sbx_scratch_free(st->scratch, &e) < 0)
        sbx__log(st->ctx, SBX_LOG_WARN, "%s", e.msg);
    st->scratch = NULL;
    st->bundle = NULL;
}

/* ---- the process -------------------------------------------------------- */

static int build_env(char ***out, const bld_sandbox_options *o, const bld_user_ids *u)
{
    size_t n = 0;
    bool has_path = false, has_home = false;
    for (; o->env && o->env[n]; n++) {
        has_path |= !strncmp(o->env[n], "PATH=", 5);
        has_home |= !strncmp(o->env[n], "HOME=", 5);
    }
    char **env = calloc(n + 3, sizeof(char *));
    if (!env)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        env[k++] = strdup(o->env[i]);
    if (!has_path)
        env[k++] = strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    if (!has_home)
        env[k++] = sbx__strdup_printf("HOME=%s", u->home);
    *out = env;
    for (size_t i = 0; i < k; i++)
        if (!env[i])
            return -1;
    return 0;
}

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static int prepare_root(run_state *st, bld_user_ids *user, sbx_error *err)
{
    const bld_sandbox_options *o = st->o;
    _cleanup_close_ int rootfd = open(st->rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "opening the rootfs '%s'", st->rootfs);
    int r = bld_user_resolve(user, st->rootfs, o->user, err);
    if (r < 0)
        return r;
    note_missing_mountpoints(st, rootfd);
    if (o->cwd && o->cwd[0] != '/')
        return sbx_error_set(err, SBX_EINVAL, "working directory '%s' is not absolute", o->cwd);
    if (o->cwd) {
        r = bld_mkdir_in_root(rootfd, o->cwd, err);
        if (r < 0)
            return r;
    }
    return 0;
}

static int write_config(run_state *st, const bld_user_ids *user, sbx_error *err)
{
    const bld_sandbox_options *o = st->o;
    char **env = NULL;
    if (build_env(&env, o, user) < 0) {
        free_strv(env);
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    }
    spec_input in = {st->overlay ? "rootfs" : st->rootfs, o->argv, (const char *const *)env,
                     o->cwd ? o->cwd : "/", user, o->hostname, o->network,
                     st->rt.cgroups_disabled, st->rt.kind == BLD_RUNTIME_RUNSC,
                     o->pids_limit, o->memory_bytes, o->cpu_millis, st->secrets_dir,
                     st->net.path, st->net.resolv};
    json_t *spec = NULL;
    int r = bld_spec_build(&spec, &in, err);
    free_strv(env);
    if (r < 0)
        return r;
    char *text = json_dumps(spec, JSON_INDENT(1));
    json_decref(spec);
    if (!text)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    r = write_small(st->bundle, "config.json", text, err);
    free(text);
    return r;
}

typedef struct wait_state {
    pid_t pid;
    int status;
    bool exited;
    bool killing;
    uint64_t kill_deadline;
} wait_state;

static void start_kill(run_state *st, wait_state *w)
{
    if (w->killing)
        return;
    w->killing = true;
    w->kill_deadline = sbx__now_monotonic_ns() + KILL_GRACE_NS;
    rt_call call = {&st->rt, st->o->network, -1, NULL, NULL, NULL, 0, -1};
    const char *args[] = {"kill", st->id, "KILL", NULL};
    sbx_error e = SBX_ERROR_INIT;
    bld_rt_run(&call, args, 10, NULL, 0, &e);
}

static bool reap(wait_state *w)
{
    if (w->exited)
        return true;
    int status;
    pid_t r = waitpid(w->pid, &status, WNOHANG);
    if (r == w->pid) {
        w->status = status;
        w->exited = true;
    }
    return w->exited;
}

/* true when the upper dir holds more than the disk limit (its size in
 * res either way). */
static bool upper_over(run_state *st, bld_sandbox_result *res)
{
    sbx__du *du = sbx__du_new();
    if (!du)
        return false;
    sbx__du_add_at(du, AT_FDCWD, st->target);
    res->upper_bytes = sbx__du_total(du);
    sbx__du_free(du);
    return res->upper_bytes > st->o->disk_bytes;
}

/* Pump output until the runtime exits (and its output is drained), killing
 * the container on timeout, when the context is cancelled, or when the
 * upper dir grows past the disk limit. */
static void supervise(run_state *st, bld_sandbox_result *res, wait_state *w, int outfd)
{
    int cancelfd = sbx__ctx_cancel_fd(st->ctx);
    const bld_sandbox_options *o = st->o;
    uint64_t start = sbx__now_monotonic_ns();
    uint64_t deadline = o->timeout_sec ? start + (uint64_t)o->timeout_sec * 1000000000ull : 0;
    uint64_t drain_deadline = 0;
    /* the upper dir's size every second, or less often when walking it
     * takes long: at most a twentieth of the step's time goes to it */
    bool watch_disk = o->disk_bytes && st->overlay && st->target;
    uint64_t next_du = watch_disk ? start + DU_EVERY_NS : 0;
    int pidfd = pidfd_open(w->pid, 0);
    while (!(w->exited && outfd < 0)) {
        uint64_t now = sbx__now_monotonic_ns();
        if (deadline && now >= deadline && !w->killing) {
            res->timed_out = true;
            start_kill(st, w);
        }
        if (next_du && now >= next_du && !w->killing) {
            bool over = upper_over(st, res);
            uint64_t took = sbx__now_monotonic_ns() - now;
            next_du = now + (20 * took > DU_EVERY_NS ? 20 * took : DU_EVERY_NS);
            if (over) {
                res->hit_disk_limit = true;
                start_kill(st, w);
            }
        }
        if (w->killing && !w->exited && now >= w->kill_deadline) {
            kill(-w->pid, SIGKILL); /* the runtime itself hangs */
            w->kill_deadline = now + KILL_GRACE_NS;
        }
        if (w->exited && now >= drain_deadline)
            break; /* something in the container kept the pipe open */
        uint64_t next = UINT64_MAX;
        if (deadline && !w->killing)
            next = deadline;
        if (next_du && !w->killing && next_du < next)
            next = next_du;
        if (w->killing && !w->exited)
            next = w->kill_deadline;
        if (w->exited)
            next = drain_deadline;
        int tmo = next == UINT64_MAX ? -1 : (int)((next - now) / 1000000 + 1);
        if (pidfd < 0 && (tmo < 0 || tmo > 100))
            tmo = 100;
        /* a fired cancel fd stays readable: watch it only until acted on */
        struct pollfd p[3] = {{outfd, POLLIN, 0},
                              {res->cancelled ? -1 : cancelfd, POLLIN, 0},
                              {pidfd, POLLIN, 0}};
        int pr = poll(p, 3, tmo);
        if (pr < 0 && errno != EINTR)
            break;
        if (pr > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            char buf[16384];
            ssize_t n = read(outfd, buf, sizeof(buf));
            if (n > 0)
                feed_output(st, buf, (size_t)n);
            else if (n == 0 || errno != EINTR) {
                close(outfd);
                outfd = -1;
            }
        }
        if (!res->cancelled && sbx_ctx_cancelled(st->ctx)) {
            res->cancelled = true;
            if (!w->killing)
                start_kill(st, w);
        }
        if (!w->exited && reap(w))
            drain_deadline = sbx__now_monotonic_ns() + DRAIN_GRACE_NS;
    }
    if (outfd >= 0)
        close(outfd);
    if (pidfd >= 0)
        close(pidfd);
    if (!w->exited) {
        w->status = bld_wait_pid(w->pid);
        w->exited = true;
    }
    if (st->linelen)
        emit_line(st);
    /* what it wrote last, after the last look */
    if (watch_disk && !res->hit_disk_limit && !res->timed_out && !res->cancelled &&
        upper_over(st, res))
        res->hit_disk_limit = true;
    res->duration_ms = (sbx__now_monotonic_ns() - start) / 1000000;
}

/* Once the runtime's own mount namespace holds the step's mounts, the
 * caller's namespace lets go of them: the secrets' tmpfs and the network
 * namespace's bind live on in the copy, and go with the container. */
static void leave_mounts_to_the_runtime(run_state *st, int ready)
{
    struct pollfd p = {ready, POLLIN, 0};
    char c;
    if (poll(&p, 1, 30000) != 1 || read(ready, &c, 1) != 1)
        return; /* it failed to mount: its words are in the output */
    unmount_secrets(st);
    if (st->net.mounted && umount2(st->net.path, MNT_DETACH) == 0)
        st->net.mounted = false;
}

static int start_and_supervise(run_state *st, bld_sandbox_result *res, bool *started,
                               sbx_error *err)
{
    /* The overlay was mounted here to prepare the root (users, working dir,
     * mount points); the step runs on a mount of its own in the runtime's
     * mount namespace, which dies with the container whatever ends this
     * process: a killed builder leaves nothing mounted here. */
    if (st->mounted) {
        if (umount2(st->rootfs, 0) < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "unmounting the prepared rootfs '%s'",
                                 st->rootfs);
        st->mounted = false;
        drop_volatile_marker(st);
    }
    int pfd[2], rfd[2] = {-1, -1};
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "running the step: pipe");
    if (st->overlay && pipe2(rfd, O_CLOEXEC) < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return sbx_error_sys(err, SBX_EIO, errno, "running the step: pipe");
    }
    rt_call call = {&st->rt, st->o->network, pfd[1],
                    st->rt.kind == BLD_RUNTIME_RUNSC ? st->net.path : NULL,
                    st->bundle, st->overlay ? st->ovl_full : NULL,
                    SBX_ARRAY_LEN(st->ovl_full), rfd[1]};
    const char *args[] = {"run", "--bundle", st->bundle, st->id, NULL};
    wait_state w = {0};
    int r = bld_rt_spawn(&w.pid, &call, args, err);
    close(pfd[1]);
    if (rfd[1] >= 0)
        close(rfd[1]);
    if (r < 0) {
        close(pfd[0]);
        if (rfd[0] >= 0)
            close(rfd[0]);
        return r;
    }
    *started = true;
    if (rfd[0] >= 0) {
        leave_mounts_to_the_runtime(st, rfd[0]);
        close(rfd[0]);
    }
    supervise(st, res, &w, pfd[0]);
    res->runtime = st->rt.kind;
    if (WIFEXITED(w.status)) {
        res->exited = !res->timed_out && !res->cancelled;
        res->exit_code = WEXITSTATUS(w.status);
    } else if (WIFSIGNALED(w.status)) {
        res->term_signal = WTERMSIG(w.status);
    }
    return 0;
}

int bld_limit_format(uint64_t n, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    int u = -1;
    uint64_t v = n;
    while (u < 3 && v && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    return u < 0 ? snprintf(buf, len, "%llu bytes", (unsigned long long)n)
                 : snprintf(buf, len, "%llu %s", (unsigned long long)v, units[u]);
}

static int verdict(const bld_sandbox_options *o, const bld_sandbox_result *res, sbx_error *err)
{
    char lim[48];
    _cleanup_free_ char *cmd = join_cmd(o->argv);
    const char *c = cmd ? cmd : o->argv[0];
    if (res->cancelled)
        return sbx_error_set(err, SBX_ECANCELED, "running '%s': cancelled", c);
    if (res->timed_out)
        return sbx_error_set(err, SBX_ETIMEOUT, "running '%s': timed out after %us", c,
                             o->timeout_sec);
    if (res->hit_disk_limit) {
        bld_limit_format(o->disk_bytes, lim, sizeof lim);
        return sbx_error_set(err, SBX_ELIMIT, "running '%s': the step wrote more than its disk "
                             "limit (%s; raise it with --disk-limit)", c, lim);
    }
    if (res->hit_memory_limit) {
        bld_limit_format(o->memory_bytes, lim, sizeof lim);
        return sbx_error_set(err, SBX_ESTEP, "running '%s': killed (SIGKILL), most likely by its "
                             "memory limit (%s; raise it with --memory)", c, lim);
    }
    if (res->term_signal)
        return sbx_error_set(err, SBX_ESTEP, "running '%s': runtime killed by %s", c,
                             strsignal(res->term_signal));
    if (res->hit_pids_limit)
        return sbx_error_set(err, SBX_ESTEP, "running '%s': exited with status %d after a fork "
                             "failed: the step hit its process limit (%u; raise it with "
                             "--pids-limit)", c, res->exit_code, o->pids_limit);
    if (res->exit_code != 0)
        return sbx_error_set(err, SBX_ESTEP, "running '%s': exited with status %d", c,
                             res->exit_code);
    return 0;
}

static int check_options(const bld_sandbox_options *o, sbx_error *err)
{
    if (!o->store || !o->argv || !o->argv[0])
        return sbx_error_set(err, SBX_EINVAL, "running a step: store root and argv are required");
    if (o->nlowers == 0 && !o->rootfs)
        return sbx_error_set(err, SBX_EINVAL, "running a step: no lower dirs and no rootfs");
    if (!o->upper != !o->work)
        return sbx_error_set(err, SBX_EINVAL, "running a step: give both upper and work, or "
                             "neither");
    for (size_t i = 0; i < o->nlowers; i++)
        if (!o->lowers[i] || o->lowers[i][0] != '/')
            return sbx_error_set(err, SBX_EINVAL, "running a step: lower dir '%s' is not "
                                 "absolute", o->lowers[i] ? o->lowers[i] : "");
    if ((o->upper && o->upper[0] != '/') || (o->work && o->work[0] != '/') ||
        (o->rootfs && o->rootfs[0] != '/'))
        return sbx_error_set(err, SBX_EINVAL, "running a step: upper, work and rootfs must be "
                             "absolute paths");
    return 0;
}

int bld_sandbox_run(bld_sandbox_result *res, const bld_sandbox_options *opts,
                    const sbx_ctx *ctx, sbx_error *err)
{
    *res = (bld_sandbox_result)BLD_SANDBOX_RESULT_INIT;
    bld_sandbox_options copy = *opts;
    if (copy.cwd && !*copy.cwd)
        copy.cwd = NULL; /* an image config without WorkingDir */
    if (copy.user && !*copy.user)
        copy.user = NULL;
    const bld_sandbox_options *o = &copy;
    int r = check_options(o, err);
    if (r < 0)
        return r;
    run_state st = {.o = o, .ctx = ctx};
    r = bld_runtime_detect(&st.rt, o->runtime, o->store, ctx, err);
    if (r < 0)
        return r;
    st.ring_cap = o->keep_lines ? o->keep_lines : 20;
    st.ring = calloc(st.ring_cap, sizeof(char *));
    if (!st.ring)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");

    bool started = false;
    bld_user_ids user;
    uint64_t t0 = sbx__now_monotonic_ns();
    r = make_bundle(&st, err);
    if (r == 0 && o->nlowers > 0)
        r = mount_overlay(&st, err);
    else if (r == 0) {
        st.rootfs = strdup(o->rootfs);
        st.target = o->rootfs;
    }
    if (r == 0)
        r = secret_redactions(&st, err);
    if (r == 0)
        r = prepare_root(&st, &user, err);
    if (r == 0)
        r = mount_secrets(&st, &user, err);
    if (r == 0 && o->network == BLD_NETWORK_ISOLATED)
        r = bld_netns_up(&st.net, st.bundle, ctx, err);
    if (r == 0)
        r = write_config(&st, &user, err);
    if (r == 0) {
        if (sbx_ctx_cancelled(ctx))
            res->cancelled = true; /* cancelled during setup: do not start */
        else
            r = start_and_supervise(&st, res, &started, err);
    }
    uint64_t t1 = sbx__now_monotonic_ns();
    teardown(&st, started, res);
    uint64_t t2 = sbx__now_monotonic_ns();
    sbx__log(ctx, SBX_LOG_DEBUG, "sandbox %s (%s): setup+run %llu ms, teardown %llu ms", st.id,
            bld_runtime_name(st.rt.kind), (unsigned long long)((t1 - t0) / 1000000),
            (unsigned long long)((t2 - t1) / 1000000));

    res->tail = ring_join(&st);
    /* A SIGKILL nobody here sent, under a memory cgroup: the OOM killer's
     * (the cgroup's counters go with the container).  137 is a shell's
     * word for a child killed so. */
    res->hit_memory_limit = o->memory_bytes && !res->timed_out && !res->cancelled &&
                            !res->hit_disk_limit &&
                            ((res->exited && res->exit_code == 128 + SIGKILL) ||
                             res->term_signal == SIGKILL);
    /* The step's own words are the only sign a fork hit the pids cgroup
     * (its counters go with the container): shells and libc say these. */
    res->hit_pids_limit = res->exited && res->exit_code != 0 && o->pids_limit && res->tail &&
                          (strstr(res->tail, "Resource temporarily unavailable") ||
                           strstr(res->tail, "can't fork") || strstr(res->tail, "fork: retry"));
    for (size_t i = 0; i < st.ring_cap; i++)
        free(st.ring[i]);
    free(st.ring);
    for (size_t i = 0; i < st.nremove; i++)
        free(st.remove_after[i]);
    for (size_t i = 0; i < st.nredact; i++) {
        explicit_bzero(st.redact[i], strlen(st.redact[i]));
        free(st.redact[i]);
    }
    free(st.redact);
    free(st.secrets_dir);
    free(st.rootfs);
    free(st.ovl_full[0]);
    free(st.ovl_full[1]);
    if (r < 0)
        return sbx_error_wrap(err, "running '%s'", o->argv[0]);
    return verdict(o, res, err);
}

void bld_sandbox_result_clear(bld_sandbox_result *res)
{
    if (!res)
        return;
    free(res->tail);
    res->tail = NULL;
}
