/* Bases: the image a build starts from.
 *
 *  - from_registry: resolved to a manifest digest (the cache key uses it, so
 *    a moved tag is never a silent hit) and pulled through the registry
 *    client only when a step has to run.
 *  - image: a name or manifest digest this store already holds.
 *  - base: sbx: the platform base, made here with debootstrap from Debian's
 *    archive, captured as one layer and named "sbx-base:<suite>-<variant>".
 *    Made once per store: an exclusive flock on <root>/locks/sbx-base.lock
 *    serializes concurrent builders, and the loser finds the name set.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "build_base.h"
#include "build_cache.h"
#include "build_internal.h"
#include "sbx/rootfs.h"
#include "sbx/builder.h"
#include "sbx/registry.h"
#include "sbx_common.h"

extern char **environ;

int sbx_build_image_from_dir(char digest_out[SBX_DIGEST_BUFSZ], sbx_store *store,
                             const char *dir, const char *name, const char *created_by,
                             sbx_ctx *ctx, sbx_error *err)
{
    sbx_capture_options co = SBX_CAPTURE_OPTIONS_INIT;
    co.overlay_upper = false;
    sbx_capture_result cr;
    if (sbx_rootfs_capture(&cr, store, dir, &co, ctx, err) < 0)
        return sbx_error_wrap(err, "capture '%s'", dir);
    sbx_platform host;
    sbx_platform_host(&host);
    json_t *config = bld_config_new(host.os, host.architecture);
    if (!config)
        return sbx_error_set(err, SBX_ENOMEM, "create image config");
    if (host.variant[0])
        json_object_set_new(config, "variant", json_string(host.variant));
    int rc = bld_config_add_history(config, cr.changed ? cr.diff_id : NULL, created_by, err);
    if (rc == 0)
        rc = bld_config_commit(store, config, digest_out, err);
    json_decref(config);
    if (rc == 0 && name)
        rc = sbx_store_name_set(store, name, digest_out, err);
    return rc;
}

/* A named, stored manifest, checked by reading it (no lease, no write: a
 * no-op rebuild should not pay has_blob's synced lease transaction; the
 * build leases the base when a step actually uses it). */
static int named_manifest(sbx_store *store, const char *name, char digest_out[SBX_DIGEST_BUFSZ])
{
    sbx_error e = SBX_ERROR_INIT;
    return sbx_store_name_get(store, name, digest_out, &e) == 0 &&
           sbx_image_readable(store, digest_out);
}

/* ---- base: sbx ------------------------------------------------------------ */

/* The first http(s) URI in the host's apt sources that is not a security or
 * updates archive; NULL when none is found. */
static char *host_mirror(void)
{
    static const char *files[] = {"/etc/apt/sources.list.d/debian.sources",
                                  "/etc/apt/sources.list"};
    for (size_t f = 0; f < SBX_ARRAY_LEN(files); f++) {
        _cleanup_fclose_ FILE *fp = fopen(files[f], "re");
        if (!fp)
            continue;
        char line[1024];
        while (fgets(line, sizeof line, fp)) {
            char *p = line;
            while (*p == ' ' || *p == '\t')
                p++;
            if (!strncmp(p, "URIs:", 5))
                p += 5;
            else if (!strncmp(p, "deb ", 4))
                p += 4;
            else
                continue;
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p == '[') { /* deb [signed-by=...] URL */
                char *e = strchr(p, ']');
                if (!e)
                    continue;
                p = e + 1;
                while (*p == ' ')
                    p++;
            }
            size_t n = strcspn(p, " \t\r\n");
            if (n == 0 || strncmp(p, "http", 4) != 0)
                continue;
            p[n] = '\0';
            if (strstr(p, "security"))
                continue;
            return strdup(p);
        }
    }
    return NULL;
}

static const char *pick(const char *opt, const char *env, const char *def)
{
    if (opt && *opt)
        return opt;
    const char *e = getenv(env);
    return e && *e ? e : def;
}

int bld_base_sbx_params(bld_base_params *out, const sbx_build_options *opts)
{
    memset(out, 0, sizeof *out);
    snprintf(out->suite, sizeof out->suite, "%s",
             pick(opts ? opts->base_suite : NULL, "SBX_BASE_SUITE", "bookworm"));
    snprintf(out->variant, sizeof out->variant, "%s",
             pick(opts ? opts->base_variant : NULL, "SBX_BASE_VARIANT", "minbase"));
    const char *m = pick(opts ? opts->base_mirror : NULL, "SBX_BASE_MIRROR", NULL);
    _cleanup_free_ char *hm = m ? NULL : host_mirror();
    snprintf(out->mirror, sizeof out->mirror, "%s",
             m ? m : hm ? hm : "http://deb.debian.org/debian");
    snprintf(out->name, sizeof out->name, "sbx-base:%s-%s", out->suite, out->variant);
    return 0;
}

static int valid_word(const char *s)
{
    if (!*s)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return 0;
    return 1;
}

/* Append a line to a '\n'-joined buffer, dropping the oldest lines. */
static void tail_push(char *tail, size_t cap, const char *line, size_t ll)
{
    if (ll + 2 > cap)
        ll = cap - 2;
    size_t tl = strlen(tail);
    while (tl && tl + ll + 2 > cap) {
        char *nl = strchr(tail, '\n');
        size_t drop = nl ? (size_t)(nl - tail) + 1 : tl;
        memmove(tail, tail + drop, tl - drop + 1);
        tl -= drop;
    }
    if (tl)
        tail[tl++] = '\n';
    memcpy(tail + tl, line, ll);
    tail[tl + ll] = '\0';
}

/* Run argv in its own process group, forwarding each output line to
 * on_output (step index 0) and keeping the last ones for an error.  A
 * cancelled ctx kills the group.  Returns the wait status, or <0 (with
 * SBX_ECANCELED after a cancel). */
static int run_logged(char *const argv[], const sbx_build_options *opts, const sbx_ctx *ctx,
                      char *tail, size_t tail_len, sbx_error *err)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "create pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(pfd[1]);
    if (rc != 0) {
        close(pfd[0]);
        return sbx_error_sys(err, SBX_EUNSUPPORTED, rc, "run '%s'", argv[0]);
    }
    char buf[4096], line[4096];
    size_t ll = 0;
    tail[0] = '\0';
    /* On cancel: SIGTERM to the group (debootstrap's traps unmount what it
     * mounted in the target), SIGKILL after a grace period; the output is
     * drained until the pipe closes, but never past the kill's grace. */
    bool cancelled = false;
    uint64_t kill_at = 0, give_up_at = 0;
    for (;;) {
        struct pollfd p[2] = {{pfd[0], POLLIN, 0},
                              {cancelled ? -1 : sbx__ctx_cancel_fd(ctx), POLLIN, 0}};
        int tmo = -1;
        uint64_t now = sbx__now_monotonic_ns();
        if (cancelled) {
            uint64_t next = kill_at ? kill_at : give_up_at;
            tmo = next > now ? (int)((next - now) / 1000000 + 1) : 0;
        }
        if (poll(p, 2, tmo) < 0 && errno != EINTR)
            break;
        now = sbx__now_monotonic_ns();
        if (!cancelled && sbx_ctx_cancelled(ctx)) {
            cancelled = true;
            kill(-pid, SIGTERM);
            kill_at = now + 10ull * 1000000000ull;
        }
        if (kill_at && now >= kill_at) {
            kill(-pid, SIGKILL);
            kill_at = 0;
            give_up_at = now + 2ull * 1000000000ull;
        }
        if (give_up_at && now >= give_up_at)
            break; /* something of the group kept the pipe open */
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        ssize_t n = read(pfd[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n' && ll < sizeof line - 1) {
                line[ll++] = buf[i];
                continue;
            }
            line[ll] = '\0';
            if (opts && opts->on_output)
                opts->on_output(opts->ud, 0, line);
            /* keep the last few lines */
            tail_push(tail, tail_len, line, ll);
            ll = 0;
        }
    }
    if (ll) { /* a last line without a newline: often the reason */
        line[ll] = '\0';
        if (opts && opts->on_output)
            opts->on_output(opts->ud, 0, line);
        tail_push(tail, tail_len, line, ll);
    }
    close(pfd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return sbx_error_sys(err, SBX_EIO, errno, "wait for '%s'", argv[0]);
    }
    if (cancelled)
        return sbx_error_set(err, SBX_ECANCELED, "'%s': cancelled", argv[0]);
    return status;
}

/* Empty <rootfs>/dev: device nodes do not belong in an image layer (the
 * sandbox mounts its own /dev). */
static int clear_dev(const char *rootfs, sbx_error *err)
{
    _cleanup_free_ char *dev = sbx__strdup_printf("%s/dev", rootfs);
    DIR *d = dev ? opendir(dev) : NULL;
    if (!d)
        return 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) && rc == 0) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        _cleanup_free_ char *p = sbx__strdup_printf("%s/%s", dev, e->d_name);
        rc = p ? sbx__rm_rf(p, err) : sbx_error_set(err, SBX_ENOMEM, "clear /dev");
    }
    closedir(d);
    return rc;
}

static int debootstrap_into(const char *rootfs, const bld_base_params *bp,
                            const sbx_build_options *opts, const sbx_ctx *ctx, sbx_error *err)
{
    _cleanup_free_ char *variant = sbx__strdup_printf("--variant=%s", bp->variant);
    if (!variant)
        return sbx_error_set(err, SBX_ENOMEM, "run debootstrap");
    char *argv[] = {"debootstrap", variant, (char *)bp->suite, (char *)rootfs,
                    (char *)bp->mirror, NULL};
    char tail[2048];
    int st = run_logged(argv, opts, ctx, tail, sizeof tail, err);
    if (st < 0)
        return sbx_error_wrap(err, err->code == SBX_ECANCELED
                                       ? "build the sbx base"
                                       : "build the sbx base (is debootstrap installed?)");
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return clear_dev(rootfs, err);
    /* The reason first (debootstrap's last "E:" line, else its last line),
     * then as much of the output's end as the message holds: the whole
     * tail would not fit, and its end is what explains the failure. */
    char reason[512] = "";
    for (const char *p = tail; p && *p;) {
        size_t n = strcspn(p, "\n");
        if (n && (!strncmp(p, "E: ", 3) || !reason[0] || strncmp(reason, "E: ", 3)))
            snprintf(reason, sizeof reason, "%.*s", (int)n, p);
        p += n;
        p += *p == '\n';
    }
    char head[sizeof err->msg];
    int hl = snprintf(head, sizeof head, "build the sbx base: 'debootstrap %s %s %s' failed (%s "
                      "%d)%s%s; last output:\n", variant, bp->suite, bp->mirror,
                      WIFEXITED(st) ? "exit code" : "signal",
                      WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), reason[0] ? ": " : "",
                      reason);
    const char *t = tail;
    size_t room = hl > 0 && (size_t)hl < sizeof head ? sizeof head - 1 - (size_t)hl : 0;
    while (strlen(t) > room && strchr(t, '\n'))
        t = strchr(t, '\n') + 1;
    return sbx_error_set(err, SBX_ESTEP, "%s%s", head, t);
}

int sbx_build_sbx_base(char digest_out[SBX_DIGEST_BUFSZ], sbx_store *store,
                       const sbx_build_options *opts, sbx_ctx *ctx, sbx_error *err)
{
    bld_base_params bp;
    bld_base_sbx_params(&bp, opts);
    if (!valid_word(bp.suite) || !valid_word(bp.variant))
        return sbx_error_set(err, SBX_EINVAL, "build the sbx base: bad suite '%s' or variant '%s'",
                             bp.suite, bp.variant);
    if (named_manifest(store, bp.name, digest_out))
        return 0;

    sbx__log(ctx, SBX_LOG_DEBUG, "waiting for the sbx base lock");
    _cleanup_close_ int lfd = -1;
    if (sbx_store_lock_named(&lfd, store, "sbx-base", ctx, err) < 0)
        return sbx_error_wrap(err, "build the sbx base");
    /* Someone else may have made it while we waited. */
    if (named_manifest(store, bp.name, digest_out))
        return 0;

    sbx__log(ctx, SBX_LOG_INFO, "building the sbx base '%s' with debootstrap --variant=%s %s %s",
            bp.name, bp.variant, bp.suite, bp.mirror);
    sbx_scratch *sc = NULL;
    if (sbx_store_scratch_new(&sc, store, "build", SBX_SCRATCH_OWNER_REAPS, err) < 0)
        return sbx_error_wrap(err, "build the sbx base");
    _cleanup_free_ char *rootfs = sbx__strdup_printf("%s/rootfs", sbx_scratch_path(sc));
    int rc = rootfs ? sbx__mkdir_p(rootfs, 0755, err)
                    : sbx_error_set(err, SBX_ENOMEM, "build the sbx base");
    if (rc == 0)
        rc = debootstrap_into(rootfs, &bp, opts, ctx, err);
    if (rc == 0) {
        _cleanup_free_ char *by = sbx__strdup_printf("debootstrap --variant=%s %s %s", bp.variant,
                                                    bp.suite, bp.mirror);
        rc = sbx_build_image_from_dir(digest_out, store, rootfs, bp.name,
                                      by ? by : "debootstrap", ctx, err);
        if (rc < 0)
            sbx_error_wrap(err, "store the sbx base");
    }
    /* debootstrap killed mid-way can leave its /proc and /sys mounts in
     * the tree: never remove through them */
    sbx_error e3 = SBX_ERROR_INIT;
    if (sbx__umount_below(sbx_scratch_path(sc)))
        sbx_scratch_release(sc); /* the builder's reaper tries again */
    else
        sbx_scratch_free(sc, &e3);
    return rc;
}

/* ---- resolving the base of a recipe -------------------------------------- */

void bld_registry_opts(sbx_registry_options *ro, sbx_store *store,
                       const sbx_build_options *opts)
{
    static const sbx_registry_options defaults = SBX_REGISTRY_OPTIONS_INIT;
    *ro = opts && opts->registry ? *opts->registry : defaults;
    ro->store = store;
    ro->platform = opts ? opts->platform : NULL;
}

static int base_access(sbx_store *store, const char *digest, const char *ref,
                       const sbx_build_options *opts, sbx_error *err);

/* A stored base: the caller may see it, and an index (a name pull set for
 * a multi-platform image) gives its entry for the build's platform, which
 * must be stored too.  digest is replaced by that manifest's. */
static int stored_base(char digest[SBX_DIGEST_BUFSZ], sbx_store *store, const char *ref,
                       const sbx_build_options *opts, sbx_error *err)
{
    if (base_access(store, digest, ref, opts, err) < 0)
        return err->code;
    char m[SBX_DIGEST_BUFSZ];
    const char *plat = opts ? opts->platform : NULL;
    if (sbx_image_platform_manifest(m, store, digest, plat, err) < 0)
        return sbx_error_wrap(err, "find base image '%s'", ref);
    if (strcmp(m, digest) != 0 && !sbx_image_readable(store, m)) {
        char hp[64];
        sbx_platform host;
        sbx_platform_host(&host);
        const char *p = plat && *plat ? plat : sbx_platform_format(&host, hp, sizeof hp);
        sbx_error_set(err, SBX_ENOPLATFORM, "base image '%s': the store holds it, but not for %s "
                      "(pull it with --platform %s)", ref, p, p);
        sbx_error_where(err, "%s", ref);
        return err->code;
    }
    snprintf(digest, SBX_DIGEST_BUFSZ, "%s", m);
    return 0;
}

/* A base named in the store is used only by a caller who may see it. */
static int base_access(sbx_store *store, const char *digest, const char *ref,
                       const sbx_build_options *opts, sbx_error *err)
{
    sbx_registry_options ro;
    bld_registry_opts(&ro, store, opts);
    if (sbx_registry_access_check(store, digest, &ro, err) < 0) {
        sbx_error_wrap(err, "base image '%s'", ref);
        sbx_error_where(err, "%s", ref);
        return err->code;
    }
    return 0;
}

int bld_base_resolve(char digest_out[SBX_DIGEST_BUFSZ], sbx_store *store,
                     const sbx_recipe_base *base, const sbx_build_options *opts,
                     sbx_ctx *ctx, sbx_error *err)
{
    switch (base->kind) {
    case SBX_BASE_SBX:
        if (opts && opts->n_cache_from && !opts->no_cache) {
            /* the base the cache's keys chain from (cache_registry.c) */
            bld_base_params bp;
            bld_base_sbx_params(&bp, opts);
            sbx_registry_options ro;
            bld_registry_opts(&ro, store, opts);
            if (bld_cache_base_fetch(digest_out, store, opts->cache_from, opts->n_cache_from,
                                     bp.name, &ro, ctx) == 1)
                return 0;
        }
        return sbx_build_sbx_base(digest_out, store, opts, ctx, err);
    case SBX_BASE_IMAGE: {
        const char *ref = base->ref;
        if (sbx__digest_valid(ref)) {
            if (sbx_image_readable(store, ref)) {
                snprintf(digest_out, SBX_DIGEST_BUFSZ, "%s", ref);
                return stored_base(digest_out, store, ref, opts, err);
            }
            sbx_error_set(err, SBX_ENOTFOUND, "find base image '%s': not in the store", ref);
            sbx_error_where(err, "%s", ref);
            return err->code;
        }
        /* the one naming model (sbx_image_lookup): a built tag and a pulled
         * ref of the same words are one name */
        sbx_error e2 = SBX_ERROR_INIT;
        if (sbx_image_lookup(digest_out, NULL, 0, store, ref, &e2) == 0 &&
            sbx_image_readable(store, digest_out))
            return stored_base(digest_out, store, ref, opts, err);
        if (e2.code && e2.code != SBX_ENOTFOUND) {
            *err = e2;
            return sbx_error_wrap(err, "find base image '%s'", ref);
        }
        sbx_error_set(err, SBX_ENOTFOUND,
                      "find base image '%s': the store has no image by that name or digest", ref);
        sbx_error_where(err, "%s", ref);
        return err->code;
    }
    case SBX_BASE_REGISTRY: {
        sbx_registry_options ro;
        bld_registry_opts(&ro, store, opts);
        if (sbx_registry_resolve(digest_out, base->ref, &ro, ctx, err) < 0)
            return sbx_error_wrap(err, "resolve base '%s'", base->ref);
        return 0;
    }
    }
    return sbx_error_set(err, SBX_EINVAL, "resolve base: unknown kind %d", (int)base->kind);
}

int bld_base_fetch(sbx_store *store, const sbx_recipe_base *base, const char *digest,
                   const sbx_build_options *opts, sbx_ctx *ctx, sbx_error *err)
{
    /* A manifest is stored only with its children, so present = complete.
     * has_blob leases it (and what it reaches) for the steps that run. */
    int present = sbx_store_has_blob(store, digest, err);
    if (present < 0)
        return present;
    if (base->kind != SBX_BASE_REGISTRY)
        return present ? 0
                       : sbx_error_set(err, SBX_ENOTFOUND, "base '%s' is no longer in the store",
                                       digest);
    if (present) {
        json_t *cfg = NULL;
        sbx_error e2 = SBX_ERROR_INIT;
        if (bld_config_load(&cfg, store, digest, &e2) == 0) {
            size_t n = bld_config_nlayers(cfg), have = 0;
            for (size_t i = 0; i < n; i++) {
                int h = sbx_store_has_layer(store, bld_config_layer(cfg, i), err);
                if (h < 0) {
                    json_decref(cfg);
                    return h;
                }
                have += (size_t)h;
            }
            json_decref(cfg);
            if (have == n)
                return 0;
        }
    }
    sbx_ref r;
    if (sbx_ref_parse(&r, base->ref, err) < 0)
        return err->code;
    /* Pull exactly what was resolved, even if the tag moved meanwhile. */
    _cleanup_free_ char *pinned = NULL;
    if (r.digest[0])
        pinned = strdup(r.str);
    else
        pinned = sbx__strdup_printf("%s@%s", r.str, digest);
    if (!pinned)
        return sbx_error_set(err, SBX_ENOMEM, "pull base");
    sbx_registry_options ro;
    bld_registry_opts(&ro, store, opts);
    sbx_pull_result pr;
    memset(&pr, 0, sizeof pr);
    int rc = sbx_registry_pull(&pr, pinned, &ro, ctx, err);
    if (rc == 0 && strcmp(pr.digest, digest) != 0)
        rc = sbx_error_set(err, SBX_EDIGEST, "pull base '%s': got manifest '%s', resolved '%s'",
                           base->ref, pr.digest, digest);
    sbx_pull_result_free(&pr);
    return rc < 0 ? sbx_error_wrap(err, "pull base '%s'", base->ref) : 0;
}
