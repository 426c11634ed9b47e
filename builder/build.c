/* sbx_build: a recipe -> an OCI image in the store.
 *
 * Flow: resolve the base to a manifest digest; compute the chained step keys
 * (sbx_recipe_cache_key); start from the deepest step whose key is cached
 * (the whole recipe when nothing changed: no sandbox, no pull); run the
 * remaining steps one by one, storing the state after each as an image
 * manifest named "cache:<key>"; finally write the image with start/ready
 * commands and name it "recipe:<digest>" and by tags.
 *
 * Failure: a failed step stores nothing (its upper dir is removed; its layer
 * was never captured; no name is set).  Scratch dirs are the store's
 * (tmp/build.<id>, tmp/run.<id>) and are removed after each step; ones left
 * by a killed builder are removed by the store's reaper, and
 * bld_sandbox_cleanup_stale removes their containers and mounts.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "build_base.h"
#include "build_cache.h"
#include "build_copy.h"
#include "build_python.h"
#include "build_internal.h"
#include "sbx/registry.h"
#include "build_steps.h"
#include "sbx/rootfs.h"
#include "sandbox.h"
#include "sbx/builder.h"
#include "sbx_common.h"

typedef struct build_ctx {
    sbx_store *s;
    const sbx_recipe *r;
    const sbx_build_options *o;
    sbx_ctx *ctx;
    sbx_build_result *res;
    bld_runtime_kind runtime;
    unsigned timeout;
    uint64_t deadline_ns; /* the whole build's (monotonic); 0: none */
    unsigned pids_limit; /* 0: none */
    uint64_t memory_bytes, disk_bytes; /* 0: none */
    unsigned cpu_millis;                /* 0: no quota */
    size_t total;
    size_t cur_index; /* step whose output is streaming */
    bld_record *rec;  /* this build's record and log */
    int64_t waited_since; /* unix time it began to wait for another build; 0: did not */
    bld_python_src py;    /* where a standalone CPython comes from (bld_python_used) */
    int unavailable;      /* the last python step's BLD_STEP_EXIT_UNAVAILABLE* status */
} build_ctx;

/* What besides the step key decides whether a step succeeds here: a
 * failure is shared only with builds that agree on it. */
static void step_outcome(const build_ctx *c, char *buf, size_t len)
{
    snprintf(buf, len, "rt%d.net%d.pids%u.t%u.m%llu.c%u.d%llu", (int)c->runtime,
             c->o ? (int)c->o->network : 0, c->pids_limit, c->timeout,
             (unsigned long long)c->memory_bytes, c->cpu_millis,
             (unsigned long long)c->disk_bytes);
}

/* A step's time: its own limit, or what is left of the build's if less
 * (at least a second). */
static unsigned step_timeout(const build_ctx *c)
{
    if (!c->deadline_ns)
        return c->timeout;
    uint64_t now = sbx__now_monotonic_ns();
    uint64_t left = c->deadline_ns > now ? (c->deadline_ns - now + 999999999ull) / 1000000000ull
                                         : 1;
    return left < c->timeout ? (unsigned)left : c->timeout;
}

/* SBX_ETIMEOUT once the build's deadline passed. */
static int check_deadline(const build_ctx *c, sbx_error *err)
{
    if (c->deadline_ns && sbx__now_monotonic_ns() >= c->deadline_ns)
        return sbx_error_set(err, SBX_ETIMEOUT, "the build ran out of its %u seconds",
                             c->o->build_timeout_seconds);
    return 0;
}

static void emit(build_ctx *c, sbx_build_event_kind kind, size_t index, const char *summary,
                 const char *detail, const char *diff_id, double secs)
{
    sbx_build_event ev = {kind, index, c->total, summary, detail, diff_id, secs, NULL};
    bld_record_event(c->rec, &ev);
    if (!c->o || !c->o->on_event)
        return;
    c->o->on_event(c->o->ud, &ev);
}

/* The base line: "sbx" with its suite and variant before it is (maybe)
 * built, so debootstrap's output follows it; "image" and "from_registry"
 * with their ref and the manifest digest it resolved to. */
static void emit_base(build_ctx *c, const sbx_recipe_base *b, const char *digest)
{
    sbx_build_event ev = {SBX_BUILD_EV_BASE, 0, c->total, NULL, b->ref, NULL, 0, digest};
    char what[200];
    switch (b->kind) {
    case SBX_BASE_SBX: {
        bld_base_params bp;
        bld_base_sbx_params(&bp, c->o);
        snprintf(what, sizeof what, "debian %s %s", bp.suite, bp.variant);
        ev.summary = "sbx";
        ev.detail = what;
        break;
    }
    case SBX_BASE_IMAGE: ev.summary = "image"; break;
    case SBX_BASE_REGISTRY: ev.summary = "from_registry"; break;
    default: ev.summary = "base"; break;
    }
    bld_record_event(c->rec, &ev);
    if (c->o && c->o->on_event)
        c->o->on_event(c->o->ud, &ev);
}

static void on_output(void *ud, const char *line, size_t len)
{
    build_ctx *c = ud;
    char buf[4100];
    if (len >= sizeof buf)
        len = sizeof buf - 1;
    memcpy(buf, line, len);
    buf[len] = '\0';
    bld_record_output(c->rec, c->cur_index, buf);
    if (c->o && c->o->on_output)
        c->o->on_output(c->o->ud, c->cur_index, buf);
}

/* ---- scratch directories ------------------------------------------------ */

/* A step's scratch dir: a scratch dir of the store (tmp/build.<id>), removed
 * after the step.  It holds the overlay's upper and work dirs, which a
 * container orphaned by a killed builder may still be using: only the
 * builder's reaper takes it, after the container is gone. */
static sbx_scratch *scratch_new(build_ctx *c, sbx_error *err)
{
    sbx_scratch *sc = NULL;
    if (sbx_store_scratch_new(&sc, c->s, "build", SBX_SCRATCH_OWNER_REAPS, err) < 0)
        sbx_error_wrap(err, "create scratch dir");
    return sc;
}

static void scratch_free(build_ctx *c, sbx_scratch *sc)
{
    sbx_error e = SBX_ERROR_INIT;
    if (sbx_scratch_free(sc, &e) < 0)
        sbx__log(c->ctx, SBX_LOG_WARN, "%s", e.msg);
}

/* ---- lowers ------------------------------------------------------------- */

typedef struct lowers {
    char **dirs; /* top-most first */
    size_t n;
} lowers;

static void lowers_free(lowers *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->dirs[i]);
    free(l->dirs);
    l->dirs = NULL;
    l->n = 0;
}

static int lowers_get(lowers *out, build_ctx *c, json_t *config, sbx_error *err)
{
    size_t n = bld_config_nlayers(config);
    out->dirs = calloc(n ? n : 1, sizeof *out->dirs);
    out->n = 0;
    if (!out->dirs)
        return sbx_error_set(err, SBX_ENOMEM, "unpack layers");
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        const char *diff_id = bld_config_layer(config, n - 1 - i);
        if (sbx_rootfs_layer_unpack(path, sizeof path, c->s, diff_id, c->ctx, err) < 0) {
            lowers_free(out);
            return sbx_error_wrap(err, "unpack layer %zu '%s'", n - i, diff_id);
        }
        out->dirs[out->n] = strdup(path);
        if (!out->dirs[out->n]) {
            lowers_free(out);
            return sbx_error_set(err, SBX_ENOMEM, "unpack layers");
        }
        out->n++;
    }
    return 0;
}

/* ---- running a command step ------------------------------------------- */

static void fail_info(build_ctx *c, size_t index, const char *summary, const char *display,
                      const bld_sandbox_result *sr)
{
    sbx_build_result *res = c->res;
    res->failed_step = index;
    free(res->failed_summary);
    free(res->failed_command);
    free(res->tail);
    res->failed_summary = summary ? strdup(summary) : NULL;
    res->failed_command = display ? strdup(display) : NULL;
    res->tail = sr && sr->tail ? strdup(sr->tail) : NULL;
    res->exit_code = sr && sr->exited ? sr->exit_code : -1;
    res->term_signal = sr ? sr->term_signal : 0;
    res->timed_out = sr ? sr->timed_out : 0;
}

static void fail_clear(build_ctx *c)
{
    fail_info(c, 0, NULL, NULL, NULL);
    c->res->exit_code = 0;
}

static const char *last_line(const char *tail)
{
    if (!tail || !*tail)
        return "";
    const char *nl = strrchr(tail, '\n');
    return nl ? nl + 1 : tail;
}

/* The step's secrets from the build's, by id; and the script that first
 * exports those with an env name from their files (the values never pass
 * through the container's config). */
static int step_secrets(bld_secret **out, char **script, const build_ctx *c,
                        const bld_step_cmd *cmd, size_t index, sbx_error *err)
{
    *out = NULL;
    *script = NULL;
    if (!cmd->n_secrets)
        return 0;
    bld_secret *v = calloc(cmd->n_secrets, sizeof *v);
    if (!v)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    for (size_t i = 0; i < cmd->n_secrets; i++) {
        const sbx_step_secret *want = &cmd->secrets[i];
        const sbx_build_secret *have = NULL;
        for (size_t j = 0; c->o && j < c->o->n_secrets && !have; j++)
            if (c->o->secrets[j].id && !strcmp(c->o->secrets[j].id, want->id))
                have = &c->o->secrets[j];
        if (!have) {
            free(v);
            return sbx_error_set(err, SBX_EINVAL, "step %zu uses the secret '%s', which the "
                                 "build was not given (build --secret id=%s,src=FILE or "
                                 "id=%s,env=VAR)", index, want->id, want->id, want->id);
        }
        if (have->len > SBX_BUILD_SECRET_MAX) {
            free(v);
            return sbx_error_set(err, SBX_ELIMIT, "the secret '%s' is %zu bytes (at most %u)",
                                 want->id, have->len, SBX_BUILD_SECRET_MAX);
        }
        v[i] = (bld_secret){want->id, have->value, have->len};
    }
    if (!(*script = bld_step_script_with_secrets(cmd))) {
        free(v);
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    }
    *out = v;
    return 0;
}

/* Before the step: cmd->seed becomes <upper>/<seed_at>.  Parent dirs are
 * made with the metadata the top-most lower that has them gives (else
 * root's 0755), so the layer does not change them. */
static int seed_upper(const char *upper, const bld_step_cmd *cmd, const lowers *low,
                      sbx_error *err)
{
    _cleanup_free_ char *rel = strdup(cmd->seed_at);
    _cleanup_free_ char *dest = sbx__strdup_printf("%s/%s", upper, cmd->seed_at);
    if (!rel || !dest)
        return sbx_error_set(err, SBX_ENOMEM, "prepare step");
    for (char *slash = strchr(rel, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        struct stat st = {.st_mode = S_IFDIR | 0755};
        for (size_t i = 0; i < low->n; i++) {
            _cleanup_free_ char *p = sbx__strdup_printf("%s/%s", low->dirs[i], rel);
            if (p && lstat(p, &st) == 0)
                break;
            st = (struct stat){.st_mode = S_IFDIR | 0755};
        }
        _cleanup_free_ char *d = sbx__strdup_printf("%s/%s", upper, rel);
        if (!d)
            return sbx_error_set(err, SBX_ENOMEM, "prepare step");
        if (!S_ISDIR(st.st_mode))
            return sbx_error_set(err, SBX_EUNSUPPORTED, "the image's /%s is not a directory",
                                 rel);
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        if ((mkdir(d, st.st_mode & 07777) < 0 && errno != EEXIST) ||
            chmod(d, st.st_mode & 07777) < 0 || lchown(d, st.st_uid, st.st_gid) < 0 ||
            (st.st_mtim.tv_sec && utimensat(AT_FDCWD, d, ts, AT_SYMLINK_NOFOLLOW) < 0))
            return sbx_error_sys(err, SBX_EIO, errno, "prepare step: '%s'", d);
        *slash = '/';
    }
    if (rename(cmd->seed, dest) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "prepare step: moving '%s' to '%s'", cmd->seed,
                             dest);
    return 0;
}

/* Run cmd on the state `config` (step index, 0 = add_python); on success add
 * the captured layer (if any) and a history entry to config. */
static int run_step(build_ctx *c, json_t *config, size_t index, const char *summary,
                    const bld_step_cmd *cmd, sbx_error *err)
{
    lowers low = {0};
    uint64_t t0 = sbx__now_monotonic_ns();
    if (lowers_get(&low, c, config, err) < 0)
        return err->code;
    uint64_t t1 = sbx__now_monotonic_ns();
    if (low.n == 0) {
        lowers_free(&low);
        return sbx_error_set(err, SBX_EUNSUPPORTED,
                             "run '%s': the image has no layers to run commands in", summary);
    }
    sbx_scratch *scratch = scratch_new(c, err);
    if (!scratch) {
        lowers_free(&low);
        return err->code;
    }
    _cleanup_free_ char *upper = sbx__strdup_printf("%s/upper", sbx_scratch_path(scratch));
    _cleanup_free_ char *work = sbx__strdup_printf("%s/work", sbx_scratch_path(scratch));
    _cleanup_free_ const char **env = bld_config_env(config);
    int rc = 0;
    if (!upper || !work || !env)
        rc = sbx_error_set(err, SBX_ENOMEM, "prepare step");
    if (rc == 0 && (sbx__mkdir_p(upper, 0755, err) < 0 || sbx__mkdir_p(work, 0700, err) < 0))
        rc = err->code;
    if (rc == 0 && cmd->seed)
        rc = seed_upper(upper, cmd, &low, err);
    _cleanup_free_ bld_secret *secrets = NULL;
    _cleanup_free_ char *script = NULL;
    if (rc == 0)
        rc = step_secrets(&secrets, &script, c, cmd, index, err);

    bld_sandbox_result sr = BLD_SANDBOX_RESULT_INIT;
    if (rc == 0) {
        const char *argv[] = {"/bin/sh", "-c", script ? script : cmd->script, NULL};
        bld_sandbox_options so = BLD_SANDBOX_OPTIONS_INIT;
        so.store = c->s;
        so.lowers = (const char *const *)low.dirs;
        so.nlowers = low.n;
        so.upper = upper;
        so.work = work;
        so.argv = argv;
        so.env = env;
        so.cwd = bld_config_get_string(config, "WorkingDir");
        so.user = cmd->user ? cmd->user : bld_config_get_string(config, "User");
        int net = c->o ? c->o->network : SBX_BUILD_NETWORK_ISOLATED;
        so.network = net == SBX_BUILD_NETWORK_NONE   ? BLD_NETWORK_NONE
                     : net == SBX_BUILD_NETWORK_HOST ? BLD_NETWORK_HOST
                                                     : BLD_NETWORK_ISOLATED;
        so.timeout_sec = step_timeout(c);
        so.pids_limit = c->pids_limit;
        so.memory_bytes = c->memory_bytes;
        so.cpu_millis = c->cpu_millis;
        so.disk_bytes = c->disk_bytes;
        so.runtime = c->runtime;
        so.on_output = on_output;
        so.output_ud = c;
        so.keep_lines = SBX_BUILD_TAIL_LINES;
        so.secrets = secrets;
        so.nsecrets = cmd->n_secrets;
        c->cur_index = index;
        rc = bld_sandbox_run(&sr, &so, c->ctx, err);
        if (rc < 0) {
            fail_info(c, index, summary, cmd->display, &sr);
            if (sr.exited && sr.exit_code >= BLD_STEP_EXIT_UNAVAILABLE &&
                sr.exit_code <= BLD_STEP_EXIT_UNAVAILABLE_MUSL && cmd->python) {
                c->unavailable = sr.exit_code;
                rc = sbx_error_set(err, SBX_EUNSUPPORTED, "%s", last_line(sr.tail));
            }
            else if (sr.timed_out)
                rc = so.timeout_sec < c->timeout
                         ? sbx_error_set(err, SBX_ETIMEOUT, "the build's time (%u s) ran out after "
                                         "%u seconds of this step", c->o->build_timeout_seconds,
                                         so.timeout_sec)
                         : sbx_error_set(err, SBX_ETIMEOUT, "timed out after %u seconds",
                                         c->timeout);
            else if (sr.cancelled)
                rc = sbx_error_set(err, SBX_ECANCELED, "cancelled");
            else if (sr.hit_disk_limit || sr.hit_memory_limit) {
                char lim[48];
                bld_limit_format(sr.hit_disk_limit ? c->disk_bytes : c->memory_bytes, lim,
                                 sizeof lim);
                rc = sr.hit_disk_limit
                         ? sbx_error_set(err, SBX_ELIMIT, "the step wrote more than its disk "
                                         "limit (%s; raise it with --disk-limit)", lim)
                         : sbx_error_set(err, SBX_ESTEP, "command killed (SIGKILL), most likely "
                                         "by its memory limit (%s; raise it with --memory)",
                                         lim);
            } else if (sr.hit_pids_limit)
                rc = sbx_error_set(err, SBX_ESTEP, "command failed with exit code %d after a "
                                   "fork failed: the step hit its process limit (%u; raise it "
                                   "with --pids-limit)", sr.exit_code, c->pids_limit);
            else if (sr.exited)
                rc = sbx_error_set(err, SBX_ESTEP, "command failed with exit code %d",
                                   sr.exit_code);
            else if (sr.term_signal)
                rc = sbx_error_set(err, SBX_ESTEP, "command killed by signal %d",
                                   sr.term_signal);
        }
    }
    uint64_t t2 = sbx__now_monotonic_ns();
    if (rc == 0) {
        sbx_capture_options co = SBX_CAPTURE_OPTIONS_INIT;
        sbx_capture_result cr;
        rc = sbx_rootfs_capture(&cr, c->s, upper, &co, c->ctx, err);
        if (rc < 0)
            sbx_error_wrap(err, "capture the layer");
        else
            rc = bld_config_add_history(config, cr.changed ? cr.diff_id : NULL, summary, err);
        if (rc == 0)
            sbx__log(c->ctx, SBX_LOG_DEBUG, "step %zu: %llu tar bytes captured", index,
                    (unsigned long long)cr.size);
    }
    uint64_t t3 = sbx__now_monotonic_ns();
    sbx__log(c->ctx, SBX_LOG_DEBUG, "step %zu: layers ready %.3fs, ran %.3fs, captured %.3fs", index,
            (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9, (double)(t3 - t2) / 1e9);
    bld_sandbox_result_clear(&sr);
    scratch_free(c, scratch);
    lowers_free(&low);
    return rc;
}

/* python: VERSION and add_python (index 0): the base's package manager,
 * else a standalone CPython for the base's C library from the pinned
 * source (build_python.h) as /usr/local, checked by running it. */
static int python_step(build_ctx *c, json_t *config, size_t index, const char *summary,
                       const char *version, sbx_error *err)
{
    bld_step_cmd cmd = {.user = "0", .python = true};
    cmd.script = bld_step_python_script(version);
    cmd.display = sbx__strdup_printf("install python %s from the base's package manager", version);
    int rc = !cmd.script || !cmd.display ? sbx_error_set(err, SBX_ENOMEM, "prepare '%s'", summary)
                                         : 0;
    c->unavailable = 0;
    if (rc == 0)
        rc = run_step(c, config, index, summary, &cmd, err);
    bld_step_cmd_free(&cmd);
    if (rc == 0 || !c->unavailable)
        return rc;
    const char *libc = c->unavailable == BLD_STEP_EXIT_UNAVAILABLE_GNU    ? "gnu"
                       : c->unavailable == BLD_STEP_EXIT_UNAVAILABLE_MUSL ? "musl"
                                                                           : NULL;
    /* the base's machine, which a --platform build under emulation is */
    const char *arch = bld_python_machine(bld_config_get_string(config, "architecture"));
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", err->msg);
    if (!libc)
        return sbx_error_set(err, SBX_EUNSUPPORTED, "%s; nor can a standalone CPython run: the "
                             "base has neither glibc's nor musl's dynamic loader for %s", why,
                             arch);
    const bld_python_pin *pin = bld_python_pick(&c->py, version, arch, libc);
    if (!pin)
        return sbx_error_set(err, SBX_EUNSUPPORTED, "%s; and no standalone CPython %s is pinned "
                             "for %s-%s in %s", why, version, arch, libc,
                             c->py.pins_file ? c->py.pins_file : "the builder's pins (see "
                             "--python-pins)");
    sbx_error_clear(err);
    fail_clear(c);
    char mm[32];
    bld_python_minor(mm, sizeof mm, pin);
    _cleanup_free_ char *line = sbx__strdup_printf("standalone CPython %s (%s-%s) from %s%s",
                                                   pin->version, arch, libc, c->py.url, pin->path);
    if (line) {
        c->cur_index = index;
        on_output(c, line, strlen(line));
    }
    sbx_scratch *sc = scratch_new(c, err);
    if (!sc)
        return err->code;
    sbx_registry_options ro;
    bld_registry_opts(&ro, c->s, c->o);
    _cleanup_free_ char *tree = NULL;
    rc = bld_python_fetch(&tree, sbx_scratch_path(sc), &c->py, pin, &ro, c->ctx, err);
    if (rc == 0) {
        bld_step_cmd chk = {.user = "0", .seed = tree, .seed_at = "usr/local"};
        chk.script = bld_step_python_check_script(pin->version, mm);
        chk.display = sbx__strdup_printf("install standalone CPython %s from %s%s", pin->version,
                                         c->py.url, pin->path);
        rc = !chk.script || !chk.display ? sbx_error_set(err, SBX_ENOMEM, "prepare '%s'", summary)
                                         : run_step(c, config, index, summary, &chk, err);
        bld_step_cmd_free(&chk);
    } else {
        fail_info(c, index, summary, NULL, NULL);
    }
    scratch_free(c, sc);
    return rc;
}

static int copy_step(build_ctx *c, json_t *config, const sbx_step *st, const char *summary,
                     sbx_error *err)
{
    lowers low = {0};
    if (lowers_get(&low, c, config, err) < 0)
        return err->code;
    sbx_scratch *scratch = scratch_new(c, err);
    if (!scratch) {
        lowers_free(&low);
        return err->code;
    }
    _cleanup_free_ char *stage = sbx__strdup_printf("%s/stage", sbx_scratch_path(scratch));
    int rc = stage ? sbx__mkdir_p(stage, 0755, err)
                   : sbx_error_set(err, SBX_ENOMEM, "prepare copy");
    if (rc == 0)
        rc = bld_copy_stage(stage, sbx_recipe_context_dir(c->r), st,
                            (const char *const *)low.dirs, low.n, c->ctx, err);
    if (rc == 0) {
        sbx_capture_options co = SBX_CAPTURE_OPTIONS_INIT;
        co.overlay_upper = false;
        sbx_capture_result cr;
        rc = sbx_rootfs_capture(&cr, c->s, stage, &co, c->ctx, err);
        if (rc < 0)
            sbx_error_wrap(err, "capture the layer");
        else
            rc = bld_config_add_history(config, cr.changed ? cr.diff_id : NULL, summary, err);
    }
    scratch_free(c, scratch);
    lowers_free(&low);
    return rc;
}

static int config_step(json_t *config, const sbx_step *st, const char *summary, sbx_error *err)
{
    int rc = 0;
    switch (st->kind) {
    case SBX_STEP_ENV:
        for (size_t i = 0; i < st->u.env.n && rc == 0; i++)
            rc = bld_config_set_env(config, st->u.env.names[i], st->u.env.values[i], err);
        break;
    case SBX_STEP_WORKDIR: rc = bld_config_set_string(config, "WorkingDir", st->u.workdir.path, err);
        break;
    case SBX_STEP_USER: rc = bld_config_set_string(config, "User", st->u.user.name, err); break;
    default: return sbx_error_set(err, SBX_EINTERNAL, "'%s' is not a config step", summary);
    }
    return rc < 0 ? rc : bld_config_add_history(config, NULL, summary, err);
}

/* One step of the recipe (1-based index) applied to config in place. */
static int apply_step(build_ctx *c, json_t *config, size_t index, const sbx_step *st,
                      const char *summary, sbx_error *err)
{
    switch (st->kind) {
    case SBX_STEP_ENV:
    case SBX_STEP_WORKDIR:
    case SBX_STEP_USER: return config_step(config, st, summary, err);
    case SBX_STEP_COPY: return copy_step(c, config, st, summary, err);
    case SBX_STEP_PYTHON: return python_step(c, config, index, summary, st->u.python.version, err);
    default: break;
    }
    bld_step_cmd cmd;
    int k = bld_step_script(&cmd, st, bld_config_get_string(config, "User"),
                            bld_config_get_string(config, "WorkingDir"));
    if (k < 0)
        return sbx_error_set(err, SBX_ENOMEM, "prepare '%s'", summary);
    if (k == 0)
        return sbx_error_set(err, SBX_EINTERNAL, "no command for '%s'", summary);
    cmd.secrets = st->secrets;
    cmd.n_secrets = st->n_secrets;
    int rc = run_step(c, config, index, summary, &cmd, err);
    bld_step_cmd_free(&cmd);
    return rc;
}

/* ---- the build ------------------------------------------------------------ */

/* Names are set in a synced transaction; a no-op rebuild should not pay it. */
static int name_set_if_changed(sbx_store *s, const char *name, const char *digest,
                               sbx_error *err)
{
    char cur[SBX_DIGEST_BUFSZ];
    sbx_error e2 = SBX_ERROR_INIT;
    if (sbx_store_name_get(s, name, cur, &e2) == 0 && !strcmp(cur, digest))
        return 0;
    return sbx_store_name_set(s, name, digest, err);
}

/* LRU eviction (gc --max-bytes) orders names by last use in seconds; an
 * update per use would cost every no-op rebuild a synced transaction, so a
 * name's last use is refreshed only when it is older than this. */
#define SBX_BUILD_TOUCH_SECONDS 60

/* Mark the manifest `name` points to as used, if its last use is stale.
 * Best effort: a failed touch only makes eviction less accurate. */
static void touch_if_stale(sbx_store *s, const char *name, const sbx_ctx *ctx)
{
    sbx_name_entry *v = NULL;
    size_t n = 0;
    sbx_error e = SBX_ERROR_INIT;
    if (sbx_store_name_list(s, name, &v, &n, &e) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].name, name) != 0)
            continue;
        if (sbx__now_unix() - v[i].last_used >= SBX_BUILD_TOUCH_SECONDS &&
            sbx_store_touch(s, v[i].digest, &e) < 0)
            sbx__log(ctx, SBX_LOG_DEBUG, "mark '%s' used: %s", name, e.msg);
        break;
    }
    sbx_name_entries_free(v, n);
}

/* 1 when the image and every name it should have are already in place
 * (the manifest is read back, not leased: a no-op rebuild writes nothing). */
static int image_named(build_ctx *c, const char *name, const char *digest)
{
    char cur[SBX_DIGEST_BUFSZ];
    sbx_error e = SBX_ERROR_INIT;
    if (sbx_store_name_get(c->s, name, cur, &e) < 0 || strcmp(cur, digest) != 0)
        return 0;
    for (size_t i = 0; c->o && i < c->o->n_tags; i++) {
        char tag[sizeof ((sbx_ref *)0)->str];
        if (sbx_image_tag_name(tag, sizeof tag, c->o->tags[i], &e) < 0 ||
            sbx_store_name_get(c->s, tag, cur, &e) < 0 || strcmp(cur, digest) != 0)
            return 0;
    }
    return sbx_image_readable(c->s, digest);
}

static int finish_image(build_ctx *c, json_t *config, const char *recipe_digest,
                        sbx_error *err)
{
    size_t n = 0;
    const char *const *start = sbx_recipe_get_start_cmd(c->r, &n);
    if (start) {
        json_t *cmd = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(cmd, json_string(start[i]));
        json_t *cc = json_object_get(config, "config");
        json_object_set_new(cc, "Cmd", cmd);
        json_object_del(cc, "Entrypoint");
    }
    const char *const *ready = sbx_recipe_get_ready_cmd(c->r, &n);
    if (ready) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, json_string(ready[i]));
        _cleanup_free_ char *s = json_dumps(a, JSON_COMPACT);
        json_decref(a);
        if (!s || bld_config_set_label(config, BLD_LABEL_READY_CMD, s, err) < 0)
            return err->code ? err->code : sbx_error_set(err, SBX_ENOMEM, "set ready command");
    }
    for (size_t i = 0; c->o && i < c->o->n_labels; i++) {
        const char *kv = c->o->labels[i], *eq = strchr(kv, '=');
        _cleanup_free_ char *key = eq ? strndup(kv, (size_t)(eq - kv)) : NULL;
        if (!key)
            return sbx_error_set(err, SBX_ENOMEM, "set label '%s'", kv);
        if (bld_config_set_label(config, key, eq + 1, err) < 0)
            return err->code;
    }
    _cleanup_free_ char *name = sbx__strdup_printf("recipe:%s", recipe_digest);
    if (!name)
        return sbx_error_set(err, SBX_ENOMEM, "name the image");
    /* A no-op rebuild: the same manifest, already named; write nothing. */
    if (bld_config_digest(c->s, config, c->res->digest, err) < 0)
        return err->code;
    if (image_named(c, name, c->res->digest)) {
        touch_if_stale(c->s, name, c->ctx);
        return 0;
    }
    if (bld_config_commit(c->s, config, c->res->digest, err) < 0)
        return err->code;
    if (name_set_if_changed(c->s, name, c->res->digest, err) < 0)
        return sbx_error_wrap(err, "name the image '%s'", name);
    for (size_t i = 0; c->o && i < c->o->n_tags; i++) {
        char tag[sizeof ((sbx_ref *)0)->str];
        if (sbx_image_tag_name(tag, sizeof tag, c->o->tags[i], err) < 0 ||
            name_set_if_changed(c->s, tag, c->res->digest, err) < 0)
            return sbx_error_wrap(err, "tag the image '%s'", c->o->tags[i]);
    }
    return 0;
}

/* The state after key 0: the base, plus add_python when asked (only then is
 * it stored and named cache:<key 0>). */
static int base_state(build_ctx *c, json_t **config, const char *key0, sbx_error *err)
{
    const sbx_recipe_base *b = sbx_recipe_get_base(c->r);
    char d[SBX_DIGEST_BUFSZ];
    sbx_registry_options ro;
    bld_registry_opts(&ro, c->s, c->o);
    if (!(c->o && c->o->no_cache) && bld_cache_lookup(config, d, c->s, key0, &ro, c->ctx)) {
        int have = sbx_store_has_blob(c->s, d, err); /* steps run on it: lease it */
        if (have != 0) {
            if (have < 0) {
                json_decref(*config);
                *config = NULL;
            }
            return have < 0 ? have : 0;
        }
        json_decref(*config); /* gone since the lookup: made again below */
        *config = NULL;
    }
    if (bld_base_fetch(c->s, b, c->res->base_digest, c->o, c->ctx, err) < 0)
        return err->code;
    if (bld_config_load(config, c->s, c->res->base_digest, err) < 0)
        return sbx_error_wrap(err, "read base '%s'", b->ref);
    if (b->kind == SBX_BASE_REGISTRY && b->add_python) {
        _cleanup_free_ char *summary = sbx__strdup_printf("add_python %s", b->add_python);
        int rc = !summary ? sbx_error_set(err, SBX_ENOMEM, "prepare add_python") : 0;
        if (rc == 0) {
            emit(c, SBX_BUILD_EV_START, 0, summary, NULL, NULL, 0);
            uint64_t t0 = sbx__now_monotonic_ns();
            rc = python_step(c, *config, 0, summary, b->add_python, err);
            double secs = (double)(sbx__now_monotonic_ns() - t0) / 1e9;
            emit(c, rc < 0 ? SBX_BUILD_EV_FAILED : SBX_BUILD_EV_DONE, 0, summary, NULL, NULL,
                 secs);
            if (rc < 0)
                sbx_error_wrap(err, "add_python %s", b->add_python);
        }
        size_t nl = bld_config_nlayers(*config);
        if (rc == 0 && (bld_config_commit(c->s, *config, d, err) < 0 ||
                        bld_config_made_here(c->s, *config, d,
                                             nl ? bld_config_layer(*config, nl - 1) : NULL,
                                             err) < 0 ||
                        bld_cache_store(c->s, key0, d, err) < 0))
            rc = err->code;
        if (rc < 0) {
            json_decref(*config);
            *config = NULL;
            return rc;
        }
    }
    /* Without add_python the state is the base itself: nothing to store. */
    return 0;
}

static int build_steps(build_ctx *c, const char *recipe_digest, sbx_error *err)
{
    size_t n = c->total;
    char(*keys)[SBX_DIGEST_BUFSZ] = calloc(n + 1, sizeof *keys);
    if (!keys)
        return sbx_error_set(err, SBX_ENOMEM, "compute cache keys");
    int rc = 0;
    _cleanup_free_ bool *bound = calloc(n + 1, sizeof *bound);
    for (size_t i = 0; i <= n && rc == 0; i++)
        rc = sbx_recipe_cache_key(keys[i], c->r, i, c->res->base_digest, err);
    if (rc == 0)
        rc = bound ? bld_cache_bind_secrets(keys, bound, n, c->r, c->o, c->s, err)
                   : sbx_error_set(err, SBX_ENOMEM, "compute cache keys");
    if (rc == 0 && c->py.url) {
        sbx_platform pf;
        sbx_error pe = SBX_ERROR_INIT;
        bool given = c->o && c->o->platform && sbx_platform_parse(&pf, c->o->platform, &pe) == 0;
        rc = bld_python_bind_keys(keys, n, c->r, &c->py,
                                  bld_python_machine(given ? pf.architecture : NULL), err);
    }
    if (rc < 0) {
        free(keys);
        return rc;
    }
    json_t *config = NULL;
    size_t start = 0; /* steps 1..start come from the cache */
    char d[SBX_DIGEST_BUFSZ];
    bool remote = c->o && c->o->n_cache_from && !c->o->no_cache;
    _cleanup_free_ bool *dead = remote ? calloc(c->o->n_cache_from, sizeof *dead) : NULL;
    remote = remote && dead;
    sbx_registry_options ro;
    bld_registry_opts(&ro, c->s, c->o);
    /* States from a cache repository, and those built on one, are named in
     * that repository's namespace (bld_cache_ns_key): a build that does not
     * list it never finds them.  ns: the repository this build's states
     * build on, if any. */
    const char *ns = NULL;
    char nk[SBX_DIGEST_BUFSZ];
    if (!c->o || !c->o->no_cache) {
        /* the deepest state here, else the deepest a cache repository has */
        for (size_t k = n; k >= 1 && !config; k--) {
            if (bld_cache_lookup(&config, d, c->s, keys[k], &ro, c->ctx)) {
                start = k;
                break;
            }
            for (size_t r = 0; remote && !bound[k] && r < c->o->n_cache_from && !config; r++) {
                bld_cache_ns_key(nk, keys[k], c->o->cache_from[r]);
                if (bld_cache_lookup(&config, d, c->s, nk, &ro, c->ctx))
                    ns = c->o->cache_from[r];
            }
            size_t hit = 0;
            if (!config && remote && !bound[k] &&
                bld_cache_fetch(c->s, c->o->cache_from, dead, c->o->n_cache_from, keys[k], &ro,
                                c->ctx, &hit) == 1) {
                bld_cache_ns_key(nk, keys[k], c->o->cache_from[hit]);
                if (bld_cache_lookup(&config, d, c->s, nk, &ro, c->ctx))
                    ns = c->o->cache_from[hit];
            }
            if (config)
                start = k;
        }
    }
    if (config && start < n) {
        /* Steps run on this state: lease it (and its layers) against gc. */
        int have = sbx_store_has_blob(c->s, d, err);
        if (have < 0) {
            json_decref(config);
            free(keys);
            return have;
        }
        if (have == 0) { /* gone since the lookup: build from the base */
            json_decref(config);
            config = NULL;
            start = 0;
        }
    } else if (config) {
        char name[SBX_DIGEST_BUFSZ + 16];
        if (ns)
            bld_cache_ns_key(nk, keys[n], ns);
        if (keys[n][0] && bld_cache_name(name, sizeof name, ns ? nk : keys[n]) == 0)
            touch_if_stale(c->s, name, c->ctx);
    }
    if (!config) {
        /* the base state (add_python) from a cache repository, when one has it */
        size_t hit = 0;
        const char *key0 = keys[0];
        if (remote && !c->o->no_cache &&
            bld_cache_fetch(c->s, c->o->cache_from, dead, c->o->n_cache_from, keys[0], &ro,
                            c->ctx, &hit) == 1) {
            ns = c->o->cache_from[hit];
            bld_cache_ns_key(nk, keys[0], ns);
            key0 = nk;
        }
        rc = base_state(c, &config, key0, err);
    }
    for (size_t i = 1; i <= n && rc == 0; i++) {
        const sbx_step *st = sbx_recipe_step(c->r, i - 1);
        _cleanup_free_ char *summary = bld_step_summary(st);
        if (!summary) {
            rc = sbx_error_set(err, SBX_ENOMEM, "describe step %zu", i);
            break;
        }
        if (i > start &&
            ((rc = sbx__check_cancel(c->ctx, err)) < 0 || (rc = check_deadline(c, err)) < 0)) {
            sbx_error_wrap(err, "step %zu/%zu '%s'", i, n, summary);
            break;
        }
        if (i <= start) {
            c->res->steps_cached++;
            emit(c, SBX_BUILD_EV_CACHED, i, summary, NULL, NULL, 0);
            continue;
        }
        char outcome[64];
        step_outcome(c, outcome, sizeof outcome);
        if (c->waited_since &&
            (rc = bld_record_shared_failure(c->s, keys[i], outcome, c->waited_since, err)) < 0) {
            /* the build this one waited for failed here: the same failure */
            fail_info(c, i, summary, NULL, NULL);
            emit(c, SBX_BUILD_EV_FAILED, i, summary, NULL, NULL, 0);
            sbx_error_wrap(err, "step %zu/%zu '%s'", i, n, summary);
            break;
        }
        emit(c, SBX_BUILD_EV_START, i, summary, NULL, NULL, 0);
        uint64_t t0 = sbx__now_monotonic_ns();
        size_t layers_before = bld_config_nlayers(config);
        rc = apply_step(c, config, i, st, summary, err);
        double secs = (double)(sbx__now_monotonic_ns() - t0) / 1e9;
        if (rc == SBX_ESTEP)
            bld_record_step_failed(c->rec, keys[i], outcome, err);
        if (rc < 0) {
            if (!c->res->failed_step)
                fail_info(c, i, summary, NULL, NULL);
            emit(c, SBX_BUILD_EV_FAILED, i, summary, NULL, NULL, secs);
            sbx_error_wrap(err, "step %zu/%zu '%s'", i, n, summary);
            if (st->where && !err->where[0])
                sbx_error_where(err, "%s", st->where);
            break;
        }
        c->res->steps_run++;
        size_t layers_after = bld_config_nlayers(config);
        const char *diff_id =
            layers_after > layers_before ? bld_config_layer(config, layers_after - 1) : NULL;
        rc = bld_config_commit(c->s, config, d, err);
        if (rc == 0)
            rc = bld_config_made_here(c->s, config, d, diff_id, err);
        if (ns)
            bld_cache_ns_key(nk, keys[i], ns);
        if (rc == 0 && keys[i][0])
            rc = bld_cache_store(c->s, ns ? nk : keys[i], d, err);
        emit(c, rc < 0 ? SBX_BUILD_EV_FAILED : SBX_BUILD_EV_DONE, i, summary,
             diff_id || st->kind == SBX_STEP_ENV || st->kind == SBX_STEP_WORKDIR ||
                     st->kind == SBX_STEP_USER
                 ? NULL
                 : "no changes",
             diff_id, secs);
    }
    if (rc == 0)
        rc = finish_image(c, config, recipe_digest, err);
    if (rc == 0 && c->o && c->o->cache_to) {
        /* states bound to secret values are this store's alone; the others
         * are tagged by their key, found under their name here */
        const char **kv = calloc(n + 1, sizeof *kv), **names = calloc(n + 1, sizeof *names);
        char(*nks)[SBX_DIGEST_BUFSZ] = calloc(n + 1, sizeof *nks);
        size_t pushed = 0, nkeys = 0;
        for (size_t i = 0; kv && names && nks && i <= n; i++) {
            if (bound[i])
                continue;
            if (ns)
                bld_cache_ns_key(nks[i], keys[i], ns);
            kv[nkeys] = keys[i];
            names[nkeys++] = ns && i >= start ? nks[i] : keys[i];
        }
        rc = kv && names && nks ? bld_cache_publish(c->s, c->o->cache_to, kv, names, nkeys, &ro,
                                                    c->ctx, &pushed, err)
                                : sbx_error_set(err, SBX_ENOMEM, "out of memory");
        if (rc == 0 && sbx_recipe_get_base(c->r)->kind == SBX_BASE_SBX) {
            /* the base the keys chain from, for the stores that --cache-from it */
            bld_base_params bp;
            bld_base_sbx_params(&bp, c->o);
            rc = bld_cache_base_publish(c->s, c->o->cache_to, bp.name, c->res->base_digest, &ro,
                                        c->ctx, err);
        }
        if (rc == 0)
            sbx__log(c->ctx, SBX_LOG_INFO, "cache: %zu entries published to %s", pushed,
                     c->o->cache_to);
        free(kv);
        free(names);
        free(nks);
    }
    json_decref(config);
    free(keys);
    return rc;
}

/* The steps' process limit: the option, else $SBX_BUILD_PIDS_LIMIT, else the
 * default; 0 out means none. */
static int pids_limit(unsigned *out, const sbx_build_options *opts, sbx_error *err)
{
    unsigned v = opts ? opts->pids_limit : 0;
    const char *env = getenv("SBX_BUILD_PIDS_LIMIT");
    if (!v && env && *env) {
        char *end;
        unsigned long n = strtoul(env, &end, 10);
        if (!strcmp(env, "max"))
            v = SBX_PIDS_UNLIMITED;
        else if (*end || n == 0 || n >= SBX_PIDS_UNLIMITED)
            return sbx_error_set(err, SBX_EINVAL, "SBX_BUILD_PIDS_LIMIT must be 'max' or a "
                                 "positive number, not '%s'", env);
        else
            v = (unsigned)n;
    }
    if (!v)
        v = SBX_BUILD_PIDS_DEFAULT;
    *out = v == SBX_PIDS_UNLIMITED ? 0 : v;
    return 0;
}

/* A size limit: the option, else the environment variable, else def;
 * 0 out means none. */
static int size_limit(uint64_t *out, uint64_t opt, const char *var, uint64_t def,
                      sbx_error *err)
{
    const char *env = getenv(var);
    uint64_t v = opt;
    if (!v && env && *env) {
        if (!strcmp(env, "max"))
            v = SBX_LIMIT_NONE;
        else if (sbx_bytes_parse(env, &v, err) < 0 || v == 0)
            return sbx_error_set(err, SBX_EINVAL, "%s must be 'max' or a size such as 4G, not "
                                 "'%s'", var, env);
    }
    *out = !v ? def : v == SBX_LIMIT_NONE ? 0 : v;
    return 0;
}

/* Memory, CPU and disk for each step (see sbx_build_options). */
static int step_limits(build_ctx *c, const sbx_build_options *opts, sbx_error *err)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    uint64_t half = pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz / 2 : 0;
    uint64_t mem_def = half && half < SBX_BUILD_MEMORY_MAX_DEFAULT ? half
                                                                   : SBX_BUILD_MEMORY_MAX_DEFAULT;
    if (size_limit(&c->memory_bytes, opts ? opts->memory_bytes : 0, "SBX_BUILD_MEMORY", mem_def,
                   err) < 0 ||
        size_limit(&c->disk_bytes, opts ? opts->disk_bytes : 0, "SBX_BUILD_DISK_LIMIT",
                   SBX_BUILD_DISK_DEFAULT, err) < 0)
        return err->code;
    unsigned cpu = opts ? opts->cpu_millis : 0;
    const char *env = getenv("SBX_BUILD_CPUS");
    if (!cpu && env && *env && strcmp(env, "max") != 0) {
        char *end;
        double v = strtod(env, &end);
        if (*end || !(v >= 0.01 && v <= 4096))
            return sbx_error_set(err, SBX_EINVAL, "SBX_BUILD_CPUS must be 'max' or a number of "
                                 "cores such as 1.5, not '%s'", env);
        cpu = (unsigned)(v * 1000 + 0.5);
    }
    c->cpu_millis = cpu == (unsigned)SBX_LIMIT_NONE ? 0 : cpu;
    return 0;
}

static int coalesce(int *lock, build_ctx *c, const char *recipe_digest, sbx_error *err)
{
    char name[32];
    snprintf(name, sizeof name, "build-%.16s", recipe_digest + 7);
    unsigned wait = c->o ? c->o->wait_timeout_seconds : 0;
    unsigned left = c->deadline_ns ? step_timeout(c) : 0; /* the build's own bound */
    if (left && (!wait || left < wait))
        wait = left;
    /* taken within a second: no one else was building it (nothing to say) */
    unsigned first = 1;
    int64_t t0 = sbx__now_unix();
    int r = sbx_store_lock_named_wait(lock, c->s, name, first, c->ctx, err);
    if (r == 0 || r != SBX_ETIMEOUT || (wait && wait <= first))
        return r == SBX_ETIMEOUT
                   ? sbx_error_set(err, SBX_ETIMEOUT, "another build of recipe %s is still "
                                   "running after %u s of waiting", recipe_digest, wait)
                   : r;
    sbx__log(c->ctx, SBX_LOG_INFO, "another build of this recipe is running: waiting for it");
    c->waited_since = t0;
    if (sbx_store_lock_named_wait(lock, c->s, name, wait ? wait - first : 0, c->ctx, err) < 0)
        return err->code == SBX_ETIMEOUT
                   ? sbx_error_set(err, SBX_ETIMEOUT, "another build of recipe %s is still "
                                   "running after %u s of waiting", recipe_digest, wait)
                   : err->code;
    return 0;
}

static int build_run(build_ctx *c, sbx_error *err);

int sbx_build(sbx_build_result *result, sbx_store *store, const sbx_recipe *recipe,
              const sbx_build_options *opts, sbx_ctx *ctx, sbx_error *err)
{
    sbx_build_result none = SBX_BUILD_RESULT_INIT;
    *result = none;
    build_ctx c = {.s = store, .r = recipe, .o = opts, .ctx = ctx, .res = result,
                   .total = sbx_recipe_n_steps(recipe)};
    if (opts && opts->runtime && bld_runtime_parse(&c.runtime, opts->runtime, err) < 0)
        return err->code;
    c.timeout = opts && opts->timeout_seconds ? opts->timeout_seconds : 0;
    if (opts && opts->build_timeout_seconds)
        c.deadline_ns =
            sbx__now_monotonic_ns() + (uint64_t)opts->build_timeout_seconds * 1000000000ull;
    if (!c.timeout) {
        const char *t = getenv("SBX_BUILD_TIMEOUT");
        c.timeout = t && atoi(t) > 0 ? (unsigned)atoi(t) : 3600;
    }
    if (pids_limit(&c.pids_limit, opts, err) < 0 || step_limits(&c, opts, err) < 0)
        return err->code;
    for (size_t i = 0; opts && i < opts->n_tags; i++) {
        char tag[sizeof ((sbx_ref *)0)->str]; /* an image name as docker writes one, without a digest */
        if (sbx_image_tag_name(tag, sizeof tag, opts->tags[i], err) < 0)
            return err->code;
    }
    for (size_t i = 0; opts && i < opts->n_cache_from; i++)
        if (bld_cache_check_repo(opts->cache_from[i], err) < 0)
            return err->code;
    for (size_t i = 0; opts && i < opts->n_labels; i++) {
        const char *kv = opts->labels[i], *eq = kv ? strchr(kv, '=') : NULL;
        if (!eq || eq == kv)
            return sbx_error_set(err, SBX_EINVAL, "label '%s': give KEY=VALUE", kv ? kv : "");
        if (!strncmp(kv, "sh.sbx.", 7))
            return sbx_error_set(err, SBX_EINVAL, "label '%s': keys under sh.sbx. are the "
                                 "tool's own", kv);
    }
    if (opts && opts->cache_to && bld_cache_check_repo(opts->cache_to, err) < 0)
        return err->code;
    if (sbx_recipe_digest(result->recipe_digest, recipe, err) < 0)
        return err->code;
    /* a bad pins file fails now, not after the steps before python ran */
    if (bld_python_used(recipe) && bld_python_src_load(&c.py, opts, err) < 0)
        return err->code;

    /* Its record, its log, and a cancel from another process: on the
     * caller's context, or one of its own when the caller gave none. */
    sbx_ctx *own = NULL;
    if (!ctx && sbx_ctx_new(&own, err) < 0) {
        bld_python_src_free(&c.py);
        return err->code;
    }
    c.ctx = ctx ? ctx : own;
    int rc = bld_record_begin(&c.rec, store, result->recipe_digest, err);
    if (rc == 0) {
        snprintf(result->build_id, sizeof result->build_id, "%s", bld_record_id(c.rec));
        sbx__log(c.ctx, SBX_LOG_DEBUG, "build %s", result->build_id);
        bld_record_watch_cancel(c.rec, c.ctx);
        rc = build_run(&c, err);
        bld_record_end(c.rec, rc, rc == 0 ? result->digest : NULL, err);
    }
    sbx_ctx_free(own);
    bld_python_src_free(&c.py);
    return rc;
}

/* What sbx_build does once its record exists. */
static int build_run(build_ctx *c, sbx_error *err)
{
    sbx_store *store = c->s;
    const sbx_recipe *recipe = c->r;
    const sbx_build_options *opts = c->o;
    sbx_ctx *ctx = c->ctx;
    sbx_build_result *result = c->res;
    sbx_error e2 = SBX_ERROR_INIT;
    if (bld_sandbox_cleanup_stale(store, NULL, ctx, &e2) < 0)
        sbx__log(ctx, SBX_LOG_WARN, "clean up after killed builds: %s", e2.msg);

    const sbx_recipe_base *b = sbx_recipe_get_base(recipe);
    if (b->kind == SBX_BASE_SBX)
        emit_base(c, b, NULL);
    if (bld_base_resolve(result->base_digest, store, b, opts, ctx, err) < 0)
        return err->code;
    /* a use of the base: its names' expiry moves (best effort: a base not
     * pulled yet has no names here) */
    sbx_error te = SBX_ERROR_INIT;
    sbx_store_touch(store, result->base_digest, &te);
    if (b->kind != SBX_BASE_SBX)
        emit_base(c, b, result->base_digest);
    /* One build per recipe at a time in a store: a second one waits, then
     * finds every step the first ran cached (the same digest, no step run
     * twice).  The lock dies with its holder, so a killed builder's waiter
     * takes over from the last step it cached. */
    _cleanup_close_ int lock = -1;
    if (coalesce(&lock, c, result->recipe_digest, err) < 0)
        return err->code;
    bld_record_running(c->rec);
    return build_steps(c, result->recipe_digest, err);
}

void sbx_build_result_free(sbx_build_result *r)
{
    if (!r)
        return;
    free(r->failed_summary);
    free(r->failed_command);
    free(r->tail);
    r->failed_summary = r->failed_command = r->tail = NULL;
}
