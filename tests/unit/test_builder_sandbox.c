/* The step sandbox against real runtimes (runc, crun with the hybrid-cgroup
 * workaround), real overlayfs and a busybox-static rootfs. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "sbx/rootfs.h"
#include "sandbox.h"
#include "sbx_common.h"
#include "testutil.h"

/* ---- fixtures ----------------------------------------------------------- */

static char *g_base;  /* a busybox rootfs used as the bottom lower */
static char *g_work;  /* per-test scratch */
static sbx_store *g_store; /* <g_work>/store */

static void must(int r, const sbx_error *err)
{
    if (r != 0)
        fail_msg("code %d: %s (where '%s')", r, err->msg, err->where);
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st != 0)
        fail_msg("command failed (%d): %s", st, cmd);
}

static int make_base(void **state)
{
    (void)state;
    g_base = tu_tmpdir();
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "set -e; cd %s; mkdir -p bin etc proc dev sys tmp data/dir home/builder; "
             "cp /bin/busybox bin/busybox; "
             "for a in sh ls cat echo id rm mkdir touch true false sleep grep wc ip env pwd "
             "hostname chmod ln test head unshare; do ln -s busybox bin/$a; done; "
             "printf 'root:x:0:0:root:/root:/bin/sh\\n"
             "builder:x:1000:1000::/home/builder:/bin/sh\\n'"
             " > etc/passwd; "
             "printf 'root:x:0:\\nbuilder:x:1000:\\nextra:x:2000:builder\\n' > etc/group; "
             "echo old > etc/deleteme; echo old > data/dir/old; echo keep > data/keep; "
             "echo '127.0.0.1 localhost' > etc/hosts; touch etc/resolv.conf; "
             "cc -static -O1 -pthread -o bin/nscheck \"$SBX_SOURCE_DIR/tests/unit/nscheck.c\"",
             g_base);
    return system(cmd) == 0 ? 0 : -1;
}

static int drop_base(void **state)
{
    (void)state;
    tu_tmpdir_free(g_base);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    g_work = tu_tmpdir();
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s/store %s/upper %s/work", g_work, g_work, g_work);
    if (system(cmd) != 0)
        return -1;
    snprintf(cmd, sizeof(cmd), "%s/store", g_work);
    sbx_error err = SBX_ERROR_INIT;
    return sbx_store_open(&g_store, cmd, &err) == 0 ? 0 : -1;
}

static int teardown_test(void **state)
{
    (void)state;
    sbx_store_free(g_store);
    g_store = NULL;
    tu_tmpdir_free(g_work);
    g_work = NULL;
    return 0;
}

typedef struct run_ctx {
    bld_sandbox_options o;
    const char *lowers[2];
    char store[512], upper[512], work[512];
    char out[8192];
    size_t outlen;
    int lines;
} run_ctx;

static void on_line(void *ud, const char *line, size_t len)
{
    run_ctx *c = ud;
    c->lines++;
    if (c->outlen + len + 2 < sizeof(c->out)) {
        memcpy(c->out + c->outlen, line, len);
        c->outlen += len;
        c->out[c->outlen++] = '\n';
        c->out[c->outlen] = '\0';
    }
}

static void ctx_init(run_ctx *c, bld_runtime_kind rt, const char *script)
{
    memset(c, 0, sizeof(*c));
    bld_sandbox_options o = BLD_SANDBOX_OPTIONS_INIT;
    c->o = o;
    snprintf(c->store, sizeof(c->store), "%s/store", g_work);
    snprintf(c->upper, sizeof(c->upper), "%s/upper", g_work);
    snprintf(c->work, sizeof(c->work), "%s/work", g_work);
    c->lowers[0] = g_base;
    c->o.store = g_store;
    c->o.lowers = c->lowers;
    c->o.nlowers = 1;
    c->o.upper = c->upper;
    c->o.work = c->work;
    static const char *argv[4];
    argv[0] = "/bin/sh";
    argv[1] = "-c";
    argv[2] = script;
    argv[3] = NULL;
    c->o.argv = argv;
    c->o.runtime = rt;
    c->o.on_output = on_line;
    c->o.output_ud = c;
}

/* No mount, bundle or container of ours is left. */
static void assert_nothing_left(const char *store)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "grep -q '%s' /proc/self/mountinfo", store);
    assert_int_not_equal(system(cmd), 0);
    /* no bundle (scratch dir tmp/run.<id>) */
    snprintf(cmd, sizeof(cmd), "ls -a %s/tmp | grep -q 'run\\.'", store);
    assert_int_not_equal(system(cmd), 0);
    /* `list` shows each container's bundle path, which lies in the store */
    snprintf(cmd, sizeof(cmd), "(runc list; crun list; runsc list) 2>/dev/null | grep -q '%s'",
             store);
    assert_int_not_equal(system(cmd), 0);
}

/* ---- tests -------------------------------------------------------------- */

static void run_output_and_exit(bld_runtime_kind rt)
{
    run_ctx c;
    /* runc copies stdout and stderr through separate pipes, so their
     * interleaving is only kept across a pause */
    ctx_init(&c, rt, "echo hello; sleep 0.1; echo oops >&2; sleep 0.1; hostname; pwd");
    c.o.cwd = "/srv/app";
    c.o.keep_lines = 3;
    bld_sandbox_result res;
    sbx_error err = SBX_ERROR_INIT;
    must(bld_sandbox_run(&res, &c.o, NULL, &err), &err);
    assert_true(res.exited);
    assert_int_equal(res.exit_code, 0);
    assert_int_equal(res.runtime, rt);
    assert_string_equal(c.out, "hello\noops\nsbx-build\n/srv/app\n");
    assert_int_equal(c.lines, 4);
    assert_string_equal(res.tail, "oops\nsbx-build\n/srv/app");
    bld_sandbox_result_clear(&res);
    assert_nothing_left(c.store);

    /* only the working directory landed in the upper layer */
    sbx_capture_options co = SBX_CAPTURE_OPTIONS_INIT;
    sbx_capture_result cr;
    char path[600];
    snprintf(path, sizeof(path), "%s/srv/app", c.upper);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "rm -rf %s/srv", c.upper);
    sh("%s", cmd);
    int r = sbx_rootfs_capture_stream(&cr, c.upper, &co, NULL, NULL, NULL, &err);
    assert_int_equal(r, 0);
    assert_false(cr.changed);
}

static void test_runc_output_and_exit(void **state)
{
    (void)state;
    run_output_and_exit(BLD_RUNTIME_RUNC);
}

static void test_crun_output_and_exit(void **state)
{
    (void)state;
    run_output_and_exit(BLD_RUNTIME_CRUN);
    bld_runtime_info rt;
    sbx_error err = SBX_ERROR_INIT;
    char store[600];
    snprintf(store, sizeof(store), "%s/store", g_work);
    must(bld_runtime_detect(&rt, BLD_RUNTIME_CRUN, g_store, NULL, &err), &err);
    /* the workaround is there exactly when mountinfo shows a hybrid layout */
    int v2 = system("grep -q ' - cgroup2 ' /proc/self/mountinfo") == 0;
    int v1 = system("grep -q ' - cgroup ' /proc/self/mountinfo") == 0;
    assert_int_equal(rt.cgroup_workaround, v1 && v2);
    assert_int_equal(bld_cgroup_is_hybrid(), v1 && v2);
}

static void test_nonzero_exit(void **state)
{
    (void)state;
    run_ctx c;
    ctx_init(&c, BLD_RUNTIME_RUNC, "echo before; exit 3");
    c.o.cwd = ""; /* unset WorkingDir / User in an image config */
    c.o.user = "";
    bld_sandbox_result res;
    sbx_error err = SBX_ERROR_INIT;
    assert_int_equal(bld_sandbox_run(&res, &c.o, NULL, &err), SBX_ESTEP);
    tu_assert_error(&err, SBX_ESTEP, "exited with status 3");
    assert_true(res.exited);
    assert_int_equal(res.exit_code, 3);
    assert_string_equal(res.tail, "before");
    bld_sandbox_result_clear(&res);
    assert_nothing_left(c.store);
}

static void test_timeout_kills_and_cleans(void **state)
{
    (void)state;
    run_ctx c;
    /* A sleep length no other process on the host is likely to use, so the
     * check below sees only what this sandbox started. */
    char cmd[96], pat[64];
    unsigned secs = 100000 + (unsigned)getpid() % 100000;
    snprintf(cmd, sizeof(cmd), "echo started; sleep %u & sleep %u", secs, secs);
    snprintf(pat, sizeof(pat), "pgrep -f 'slee[p] %u' >/dev/null", secs);
    ctx_init(&c, BLD_RUNTIME_CRUN, cmd);
    c.o.timeout_sec = 1;
    bld_sandbox_result res;
    sbx_error err = SBX_ERROR_INIT;
    uint64_t t0 = sbx__now_monotonic_ns();
    assert_int_equal(bld_sandbox_run(&res, &c.o, NULL, &err), SBX_ETIMEOUT);
    uint64_t ms = (sbx__now_monotonic_ns() - t0) / 1000000;
    tu_assert_error(&err, SBX_ETIMEOUT, "timed out after 1s");
    assert_true(res.timed_out);
    assert_false(res.exited);
    assert_string_equal(res.tail, "started");
    assert_true(ms < 10000);
    bld_sandbox_result_clear(&res);
    assert_nothing_left(c.store);
    assert_int_not_equal(system(pat), 0);
}

static void test_whiteouts_and_opaque(void **state)
{
    (void)state;
    run_ctx c;
    ctx_init(&c, BLD_RUNTIME_RUNC,
             "rm /etc/deleteme && rm -rf /data/dir && mkdir /data/dir && echo x > /data/dir/new");
    bld_sandbox_result res;
    sbx_error err = SBX_ERROR_INIT;
    must(bld_sandbox_run(&res, &c.o, NULL, &err), &err);
    bld_sandbox_result_clear(&res);

    sbx_capture_options co = SBX_CAPTURE_OPTIONS_INIT;
    co.epoch = 0;
    sbx_capture_result cr1, cr2;
    must(sbx_rootfs_capture_stream(&cr1, c.upper, &co, NULL, NULL, NULL, &err), &err);
    assert_true(cr1.changed);
    /* deterministic: a second capture gives the same diff_id */
    must(sbx_rootfs_capture_stream(&cr2, c.upper, &co, NULL, NULL, NULL, &err), &err);
    assert_string_equal(cr1.diff_id, cr2.diff_id);

    char path[700];
    struct stat st;
    snprintf(path, sizeof(path), "%s/etc/deleteme", c.upper);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISCHR(st.st_mode) && st.st_rdev == 0);
    snprintf(path, sizeof(path), "%s/data/dir", c.upper);
    char v[4] = "";
    assert_int_equal(getxattr(path, "trusted.overlay.opaque", v, sizeof(v)), 1);
    assert_int_equal(v[0], 'y');
    assert_nothing_left(c.store);
}

/* Collect a capture into memory and list it. */
typedef struct mem {
    char *d;
    size_t n;
} mem;
static int mem_sink(void *ud, const void *buf, size_t len, sbx_error *err)
{
    mem *m = ud;
    char *p = realloc(m->d, m->n + len);
    if (!p)
        return sbx_error_set(err, SBX_ENOMEM, "oom");
    memcpy(p + m->n, buf, len);
    m->d = p;
    m->n += len;
    return 0;
}

static void test_whiteout_entries_in_layer(void **state)
{
    (void)state;
    run_ctx c;
    ctx_init(&c, BLD_RUNTIME_CRUN, "rm /etc/deleteme; rm -rf /data/dir; mkdir /data/dir");
    bld_sandbox_result res;
    sbx_error err = SBX_ERROR_INIT;
    must(bld_sandbox_run(&res, &c.o, NULL, &err), &err);
    bld_sandbox_result_clear(&res);
    sbx_capture_options co = SBX_CAPTURE_OPTIONS_INIT;
    sbx_capture_result cr;
    mem m = {0};
    must(sbx_rootfs_capture_stream(&cr, c.upper, &co, mem_sink, &m, NULL, &err), &err);
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    assert_int_equal(archive_read_open_memory(a, m.d, m.n), ARCHIVE_OK);
    struct archive_entry *e;
    char names[1024] = "";
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        strcat(names, archive_entry_pathname(e));
        strcat(names, " ");
    }
    archive_read_free(a);
    free(m.d);
    /* exactly the changes: no resolv.conf, hosts, proc, dev or sys mount points */
    assert_string_equal(names, "data/ data/dir/ data/dir/.wh..wh..opq etc/ etc/.wh.deleteme ");
}

static void test_no_change_no_layer(void **state)
{
    (void)state;
    /* a base without the mount points the runtime needs */
    char *bare = tu_path(g_work, "bare");
    sh("mkdir -p %s/bin && cp -a %s/bin/. %s/bin/ && mkdir -p %s/etc && cp %s/etc/passwd "
       "%s/etc/", bare, g_base, bare, bare, g_base, bare);
    run_ctx c;
    ctx_init(&c, BLD_RUNTIME_RUNC, "true");
    c.lowers[0] = bare;
    bld_sandbox_result res;
    sbx_error err = SBX_ERROR_INIT;
    must(bld_sandbox_run(&res, &c.o, NULL, &err), &err);
    bld_sandbox_result_clear(&res);
    sbx_capture_options co = SBX_CAPTURE_OPTIONS_INIT;
    sbx_capture_result cr;
    must(sbx_rootfs_capture_stream(&cr, c.upper, &co, NULL, NULL, NULL, &err), &err);
    assert_false(cr.changed);
    assert_int_equal(tu_count_files(c.upper), 0);
    free(bare);
}

static char *run_capture(bld_runtime_kind rt, const char *user, const char *script,
                         bld_network_mode net, int *code, sbx_error *err)
{
    run_ctx c;
    ctx_init(&c, rt, script);
    c.o.user = user;
    c.o.network = net;
    bld_sandbox_result res;
    *code = bld_sandbox_run(&res, &c.o, NULL, err);
    bld_sandbox_result_clear(&res);
    return strdup(c.out);
}

static void test_user_switching(void **state)
{
    (void)state;
    sbx_error err = SBX_ERROR_INIT;
    int code;
    char *out = run_capture(BLD_RUNTIME_RUNC, "builder", "id -u; id -g; id -G; echo $HOME",
                            BLD_NETWORK_HOST, &code, &err);
    must(code, &err);
    assert_string_equal(out, "1000\n1000\n1000 2000\n/home/builder\n");
    free(out);
    out = run_capture(BLD_RUNTIME_CRUN, "1000:2000", "id -u; id -g", BLD_NETWORK_HOST, &code,
                      &err);
    must(code, &err);
    assert_string_equal(out, "1000\n2000\n");
    free(out);
    out = run_capture(BLD_RUNTIME_RUNC, "4242", "id -u; id -g", BLD_NETWORK_HOST, &code, &err);
    must(code, &err);
    assert_string_equal(out, "4242\n0\n");
    free(out);

    out = run_capture(BLD_RUNTIME_RUNC, "nobody2", "true", BLD_NETWORK_HOST, &code, &err);
    assert_int_equal(code, SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "no user 'nobody2' in the image's /etc/passwd");
    free(out);
    sbx_error_clear(&err);
    out = run_capture(BLD_RUNTIME_RUNC, "builder:nogroup", "true", BLD_NETWORK_HOST, &code,
                      &err);
    assert_int_equal(code, SBX_ENOTFOUND);
    tu_assert_error(&err, SBX_ENOTFOUND, "no group 'nogroup'");
    free(out);
    char store[600];
    snprintf(store, sizeof(store), "%s/store", g_work);
    assert_nothing_left(store);
}

static void test_user_resolve_stays_in_root(void **state)
{
    (void)state;
    /* /etc/passwd pointing at the host's file is read inside the rootfs */
    char *root = tu_path(g_work, "r");
    sh("mkdir -p %s/etc && ln -s /etc/hostpasswd %s/etc/passwd && "
       "echo 'evil:x:7:7::/:/bin/sh' > %s/etc/hostpasswd", root, root, root);
    bld_user_ids u;
    sbx_error err = SBX_ERROR_INIT;
    must(bld_user_resolve(&u, root, "evil", &err), &err);
    assert_int_equal(u.uid, 7);
    assert_int_equal(bld_user_resolve(&u, root, "root", &err), 0);
    assert_int_equal(u.uid, 0);
    assert_int_equal(bld_user_resolve(&u, root, "sshd", &err), SBX_ENOTFOUND);
    sbx_error_clear(&err);
    assert_int_equal(bld_user_resolve(&u, root, "a:b:c", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "want NAME, UID, UID:GID or NAME:GROUP");
    free(root);
}

static void test_network_none(void **state)
{
    (void)state;
    sbx_error err = SBX_ERROR_INIT;
    int code;
    char *out = run_capture(BLD_RUNTIME_RUNC, NULL,
                            "grep : /proc/net/dev | while read a b; do echo ${a%%:*}; done",
                            BLD_NETWORK_NONE, &code, &err);
    must(code, &err);
    assert_string_equal(out, "lo\n");
    free(out);
    out = run_capture(BLD_RUNTIME_CRUN, NULL,
                      "grep : /proc/net/dev | while read a b; do echo ${a%%:*}; done",
                      BLD_NETWORK_NONE, &code, &err);
    must(code, &err);
    assert_string_equal(out, "lo\n");
    free(out);
    /* the host network has more than loopback */
    out = run_capture(BLD_RUNTIME_RUNC, NULL, "grep -c : /proc/net/dev", BLD_NETWORK_HOST,
                      &code, &err);
    must(code, &err);
    assert_true(atoi(out) >= 1);
    free(out);
}

static void test_runtime_errors(void **state)
{
    (void)state;
    sbx_error err = SBX_ERROR_INIT;
    bld_runtime_kind k;
    assert_int_equal(bld_runtime_parse(&k, "docker", &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "unknown runtime 'docker'");
    assert_int_equal(bld_runtime_parse(&k, "runsc", &err), 0);
    assert_int_equal(k, BLD_RUNTIME_RUNSC);
    assert_string_equal(bld_runtime_name(BLD_RUNTIME_CRUN), "crun");

    bld_runtime_info rt;
    char store[600];
    snprintf(store, sizeof(store), "%s/store", g_work);
    sbx_error_clear(&err);
    must(bld_runtime_detect(&rt, BLD_RUNTIME_AUTO, g_store, NULL, &err), &err);
    assert_int_equal(rt.kind, BLD_RUNTIME_CRUN); /* crun works here, with the workaround */
    if (access("/usr/bin/runsc", X_OK) != 0 && access("/usr/sbin/runsc", X_OK) != 0) {
        assert_int_equal(bld_runtime_detect(&rt, BLD_RUNTIME_RUNSC, g_store, NULL, &err),
                         SBX_EUNSUPPORTED);
        tu_assert_error(&err, SBX_EUNSUPPORTED, "runsc: not installed");
        assert_non_null(strstr(err.msg, "Debian package 'runsc'"));
    }

    run_ctx c;
    ctx_init(&c, BLD_RUNTIME_RUNC, "true");
    c.o.nlowers = 0;
    bld_sandbox_result res;
    sbx_error_clear(&err);
    assert_int_equal(bld_sandbox_run(&res, &c.o, NULL, &err), SBX_EINVAL);
    tu_assert_error(&err, SBX_EINVAL, "no lower dirs and no rootfs");
    assert_nothing_left(store);
}

static void test_runsc(void **state)
{
    (void)state;
    /* gVisor: the same bundle, its own kernel; network none still has lo */
    sbx_error err = SBX_ERROR_INIT;
    int code;
    char *out = run_capture(BLD_RUNTIME_RUNSC, "builder",
                            "id -u; grep : /proc/net/dev | while read a b; do echo ${a%%:*}; done",
                            BLD_NETWORK_NONE, &code, &err);
    must(code, &err);
    assert_string_equal(out, "1000\nlo\n");
    free(out);
    run_ctx c;
    ctx_init(&c, BLD_RUNTIME_RUNSC, "echo gone > /data/new; rm /etc/deleteme; exit 4");
    bld_sandbox_result res;
    assert_int_equal(bld_sandbox_run(&res, &c.o, NULL, &err), SBX_ESTEP);
    assert_int_equal(res.exit_code, 4);
    assert_int_equal(res.runtime, BLD_RUNTIME_RUNSC);
    bld_sandbox_result_clear(&res);
    char path[700];
    struct stat st;
    snprintf(path, sizeof(path), "%s/etc/deleteme", c.upper);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    assert_nothing_left(c.store);
}

/* Many layers with long paths: the overlay option string must stay under a
 * page, which the sandbox manages with short links in the bundle. */
static void test_many_lowers(void **state)
{
    (void)state;
    enum { N = 120 };
    static char paths[N][300];
    const char *lowers[N + 1];
    for (int i = 0; i < N; i++) {
        snprintf(paths[i], sizeof(paths[i]),
                 "%s/layers/%064d/a-rather-long-directory-name-for-layer-%03d", g_work, i, i);
        sh("mkdir -p %s && echo %d > %s/f%03d", paths[i], i, paths[i], i);
        lowers[i] = paths[i];
    }
    lowers[N] = g_base;
    run_ctx c;
    ctx_init(&c, BLD_RUNTIME_CRUN, "cat /f000 /f119; ls / | grep -c '^f'");
    c.o.lowers = lowers;
    c.o.nlowers = N + 1;
    bld_sandbox_result res;
    sbx_error err = SBX_ERROR_INIT;
    must(bld_sandbox_run(&res, &c.o, NULL, &err), &err);
    bld_sandbox_result_clear(&res);
    assert_string_equal(c.out, "0\n119\n120\n");
    assert_nothing_left(c.store);
}

/* A plain rootfs dir, no overlay: writes land in it; scratch upper/work
 * (none given) are discarded with the bundle. */
static void test_plain_rootfs_and_scratch_upper(void **state)
{
    (void)state;
    char *root = tu_path(g_work, "plain");
    sh("cp -a %s %s", g_base, root);
    run_ctx c;
    ctx_init(&c, BLD_RUNTIME_RUNC, "echo made > /made");
    c.o.nlowers = 0;
    c.o.rootfs = root;
    c.o.upper = c.o.work = NULL;
    bld_sandbox_result res;
    sbx_error err = SBX_ERROR_INIT;
    must(bld_sandbox_run(&res, &c.o, NULL, &err), &err);
    bld_sandbox_result_clear(&res);
    sh("test \"$(cat %s/made)\" = made", root);

    ctx_init(&c, BLD_RUNTIME_RUNC, "echo lost > /lost; cat /lost");
    c.o.upper = c.o.work = NULL;
    must(bld_sandbox_run(&res, &c.o, NULL, &err), &err);
    bld_sandbox_result_clear(&res);
    assert_string_equal(c.out, "lost\n");
    assert_int_equal(tu_count_files(c.upper), 0);
    assert_nothing_left(c.store);
    free(root);
}

/* A step cannot make namespaces (seccomp refuses unshare with EPERM). */
static void test_seccomp_refuses_unshare(void **state)
{
    (void)state;
    sbx_error err = SBX_ERROR_INIT;
    int code;
    const char *script = "unshare -U true 2>&1 | grep -q 'Operation not permitted' && echo refused";
    char *out = run_capture(BLD_RUNTIME_RUNC, NULL, script, BLD_NETWORK_HOST, &code, &err);
    must(code, &err);
    assert_string_equal(out, "refused\n");
    free(out);
    out = run_capture(BLD_RUNTIME_CRUN, NULL, script, BLD_NETWORK_HOST, &code, &err);
    must(code, &err);
    assert_string_equal(out, "refused\n");
    free(out);
}

/* Namespaces through clone(2) flags and clone3 are refused as unshare is
 * (Docker's default profile): a step must not make a user namespace with
 * full capabilities, nor a network namespace to use them in.  Plain forks
 * work, and libc's fork falls back from clone3's ENOSYS. */
static void test_seccomp_refuses_namespace_clones(void **state)
{
    (void)state;
    static const char want[] = "fork: ok\n"
                               "clone newuser: EPERM\n"
                               "clone newnet: EPERM\n"
                               "clone newns: EPERM\n"
                               "clone newuser|newnet: EPERM\n"
                               "clone3: ENOSYS\n"
                               "clone3 newuser: ENOSYS\n"
                               "libc fork: ok\n"
                               "thread: ok\n";
    bld_runtime_kind rts[] = {BLD_RUNTIME_CRUN, BLD_RUNTIME_RUNC, BLD_RUNTIME_RUNSC};
    for (size_t i = 0; i < SBX_ARRAY_LEN(rts); i++) {
        sbx_error err = SBX_ERROR_INIT;
        int code;
        char *out = run_capture(rts[i], NULL, "/bin/nscheck", BLD_NETWORK_HOST, &code, &err);
        must(code, &err);
        if (strcmp(out, want) != 0)
            fail_msg("%s:\n%s", bld_runtime_name(rts[i]), out);
        free(out);
        /* and as a user (no capabilities at all) */
        out = run_capture(rts[i], "builder", "/bin/nscheck", BLD_NETWORK_HOST, &code, &err);
        must(code, &err);
        if (strcmp(out, want) != 0)
            fail_msg("%s as builder:\n%s", bld_runtime_name(rts[i]), out);
        free(out);
    }
}

/* A fork bomb is stopped by the step's process limit (crun and runc put the
 * step in a pids cgroup; runsc runs its own kernel, cgroups ignored): the
 * step fails at once instead of starving the host until the timeout. */
static void test_pids_limit_stops_a_fork_bomb(void **state)
{
    (void)state;
    const char *bomb = "i=0; while [ $i -lt 300 ]; do sleep 20 & i=$((i+1)); done; echo all started";
    bld_runtime_kind rts[] = {BLD_RUNTIME_CRUN, BLD_RUNTIME_RUNC};
    for (size_t i = 0; i < SBX_ARRAY_LEN(rts); i++) {
        run_ctx c;
        ctx_init(&c, rts[i], bomb);
        c.o.pids_limit = 64;
        bld_sandbox_result res;
        sbx_error err = SBX_ERROR_INIT;
        uint64_t t0 = sbx__now_monotonic_ns();
        assert_int_equal(bld_sandbox_run(&res, &c.o, NULL, &err), SBX_ESTEP);
        assert_true(sbx__now_monotonic_ns() - t0 < 15ull * 1000000000ull);
        assert_null(strstr(c.out, "all started"));
        assert_non_null(strstr(err.msg, "process limit (64;"));
        bld_sandbox_result_clear(&res);
        assert_nothing_left(c.store);
    }
    /* without a limit the same script starts them all */
    run_ctx c;
    ctx_init(&c, BLD_RUNTIME_CRUN, "i=0; while [ $i -lt 300 ]; do sleep 1 & i=$((i+1)); done; "
                                   "echo all started; wait");
    bld_sandbox_result res;
    sbx_error err = SBX_ERROR_INIT;
    must(bld_sandbox_run(&res, &c.o, NULL, &err), &err);
    assert_non_null(strstr(c.out, "all started"));
    bld_sandbox_result_clear(&res);
}

/* A step that grows past its memory limit is killed by the kernel (the
 * memory cgroup of crun and runc); the error names the limit.  Within it,
 * the same shell works. */
static void test_memory_limit_stops_a_hog(void **state)
{
    (void)state;
    const char *hog = "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived ${#x}";
    bld_runtime_kind rts[] = {BLD_RUNTIME_CRUN, BLD_RUNTIME_RUNC};
    for (size_t i = 0; i < SBX_ARRAY_LEN(rts); i++) {
        run_ctx c;
        ctx_init(&c, rts[i], hog);
        c.o.memory_bytes = 64u << 20;
        bld_sandbox_result res;
        sbx_error err = SBX_ERROR_INIT;
        assert_int_equal(bld_sandbox_run(&res, &c.o, NULL, &err), SBX_ESTEP);
        assert_null(strstr(c.out, "survived"));
        assert_true(res.hit_memory_limit);
        assert_non_null(strstr(err.msg, "memory limit (64 MiB; raise it with --memory)"));
        bld_sandbox_result_clear(&res);
        assert_nothing_left(c.store);
    }
    run_ctx c;
    ctx_init(&c, BLD_RUNTIME_CRUN, "x=$(head -c 8000000 /dev/zero | tr '\\0' a); echo kept ${#x}");
    c.o.memory_bytes = 64u << 20;
    bld_sandbox_result res;
    sbx_error err = SBX_ERROR_INIT;
    must(bld_sandbox_run(&res, &c.o, NULL, &err), &err);
    assert_non_null(strstr(c.out, "kept 8000000"));
    bld_sandbox_result_clear(&res);
}

/* The CPU settings reach the step's cpu cgroup: read from the host while
 * the step, which printed its cgroup, waits. */
typedef struct cg_probe {
    run_ctx c;
    char quota[32], shares[32];
} cg_probe;

static void read_first_line(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    out[0] = '\0';
    if (f && fgets(out, (int)len, f))
        out[strcspn(out, "\n")] = '\0';
    if (f)
        fclose(f);
}

static void on_cgroup_line(void *ud, const char *line, size_t len)
{
    cg_probe *p = ud;
    on_line(&p->c, line, len);
    /* "4:cpu,cpuacct:/path" or "4:cpu:/path" */
    const char *colon = memchr(line, ':', len);
    const char *ctl = colon ? colon + 1 : NULL;
    const char *path = ctl ? memchr(ctl, ':', len - (size_t)(ctl - line)) : NULL;
    if (!path || !(strncmp(ctl, "cpu,", 4) == 0 || strncmp(ctl, "cpu:", 4) == 0))
        return;
    char dir[600], f[700];
    snprintf(dir, sizeof dir, "/sys/fs/cgroup/%.*s%.*s", (int)(path - ctl), ctl,
             (int)(len - (size_t)(path + 1 - line)), path + 1);
    snprintf(f, sizeof f, "%s/cpu.cfs_quota_us", dir);
    read_first_line(f, p->quota, sizeof p->quota);
    snprintf(f, sizeof f, "%s/cpu.shares", dir);
    read_first_line(f, p->shares, sizeof p->shares);
}

static void test_cpu_limit_reaches_the_cgroup(void **state)
{
    (void)state;
    if (access("/sys/fs/cgroup/cpu/cpu.shares", F_OK) != 0)
        skip(); /* no v1 cpu controller (a cgroup v2 host: the runtime converts) */
    bld_runtime_kind rts[] = {BLD_RUNTIME_CRUN, BLD_RUNTIME_RUNC};
    for (size_t i = 0; i < SBX_ARRAY_LEN(rts); i++) {
        cg_probe p;
        memset(&p, 0, sizeof p);
        ctx_init(&p.c, rts[i], "grep -E ':cpu[,:]' /proc/self/cgroup; sleep 1");
        p.c.o.on_output = on_cgroup_line;
        p.c.o.output_ud = &p;
        p.c.o.cpu_millis = 500;
        bld_sandbox_result res;
        sbx_error err = SBX_ERROR_INIT;
        must(bld_sandbox_run(&res, &p.c.o, NULL, &err), &err);
        bld_sandbox_result_clear(&res);
        assert_string_equal(p.quota, "50000"); /* half of the 100000 us period */
        assert_string_equal(p.shares, "512");
    }
}

/* A step that writes more than its disk limit to its layer is stopped
 * while it runs, and one that ends first is caught at its end. */
/* A fresh upper and work dir for c, named by n. */
static void fresh_upper(run_ctx *c, int n)
{
    snprintf(c->upper, sizeof c->upper, "%s/upper%d", g_work, n);
    snprintf(c->work, sizeof c->work, "%s/work%d", g_work, n);
    assert_int_equal(mkdir(c->upper, 0755), 0);
    assert_int_equal(mkdir(c->work, 0755), 0);
}

static void test_disk_limit_stops_a_writer(void **state)
{
    (void)state;
    const char *scripts[] = {"head -c 50000000 /dev/zero > /big; sleep 30; echo done",
                             "head -c 50000000 /dev/zero > /big"};
    for (size_t i = 0; i < SBX_ARRAY_LEN(scripts); i++) {
        run_ctx c;
        ctx_init(&c, BLD_RUNTIME_CRUN, scripts[i]);
        fresh_upper(&c, (int)i);
        c.o.disk_bytes = 8u << 20;
        bld_sandbox_result res;
        sbx_error err = SBX_ERROR_INIT;
        uint64_t t0 = sbx__now_monotonic_ns();
        assert_int_equal(bld_sandbox_run(&res, &c.o, NULL, &err), SBX_ELIMIT);
        assert_true(sbx__now_monotonic_ns() - t0 < 15ull * 1000000000ull);
        assert_true(res.hit_disk_limit);
        assert_true(res.upper_bytes > (8u << 20));
        assert_null(strstr(c.out, "done"));
        assert_non_null(strstr(err.msg, "disk limit (8 MiB; raise it with --disk-limit)"));
        bld_sandbox_result_clear(&res);
        assert_nothing_left(c.store);
    }
    run_ctx c;
    ctx_init(&c, BLD_RUNTIME_CRUN, "head -c 1000000 /dev/zero > /small");
    fresh_upper(&c, 9);
    c.o.disk_bytes = 8u << 20;
    bld_sandbox_result res;
    sbx_error err = SBX_ERROR_INIT;
    must(bld_sandbox_run(&res, &c.o, NULL, &err), &err);
    assert_false(res.hit_disk_limit);
    bld_sandbox_result_clear(&res);
}

/* Device nodes are guarded: runc keeps the rootfs nodev (a node shipped in an
 * image, say for the host's disk, does not open); crun on this hybrid host
 * runs in its own v1 devices cgroup rather than with cgroups disabled. */
static void test_device_guards(void **state)
{
    (void)state;
    sbx_error err = SBX_ERROR_INIT;
    int code;
    char *out = run_capture(BLD_RUNTIME_RUNC, NULL, "grep ' / / ' /proc/self/mountinfo",
                            BLD_NETWORK_HOST, &code, &err);
    must(code, &err);
    assert_non_null(strstr(out, "nodev"));
    free(out);
    out = run_capture(BLD_RUNTIME_CRUN, NULL, "grep :devices: /proc/self/cgroup",
                      BLD_NETWORK_HOST, &code, &err);
    if (system("grep -q ' - cgroup .*devices' /proc/self/mountinfo") == 0) {
        must(code, &err);
        assert_non_null(strstr(out, ":devices:/sbx-"));
    }
    free(out);
}

/* The child is a host program: its own SIGINT/SIGTERM handler records the
 * signal and cancels the context (the library neither blocks nor reads
 * signals).  Exit 40+N after a cancelled run: 42 SIGINT, 55 SIGTERM. */
static sbx_ctx *g_child_ctx;
static volatile sig_atomic_t g_child_sig;

static void child_on_signal(int sig)
{
    g_child_sig = sig;
    sbx_ctx_cancel(g_child_ctx);
}

/* A run killed with SIGKILL leaves a bundle, a mount and a container; the
 * next cleanup removes them. */
static pid_t start_child_run(const char *store, bld_runtime_kind rt, const char *script)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        run_ctx c;
        ctx_init(&c, rt, script);
        snprintf(c.store, sizeof(c.store), "%s", store);
        /* every mount a step may have: the overlay, a secret's tmpfs, an
         * isolated network's namespace */
        static const bld_secret sec = {"tok", "child-secret-value", 18};
        c.o.secrets = &sec;
        c.o.nsecrets = 1;
        c.o.network = BLD_NETWORK_ISOLATED;
        bld_sandbox_result res;
        sbx_error err = SBX_ERROR_INIT;
        if (sbx_store_open(&c.o.store, store, &err) < 0 || sbx_ctx_new(&g_child_ctx, &err) < 0)
            _exit(1);
        struct sigaction sa = {.sa_handler = child_on_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        int r = bld_sandbox_run(&res, &c.o, g_child_ctx, &err);
        _exit(r == SBX_ECANCELED && res.cancelled ? 40 + g_child_sig : 1);
    }
    return pid;
}

/* The step's script touches /ready once it runs; it lands in the upper dir. */
static void wait_running(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "for i in $(seq 200); do test -e %s/upper/ready && exit 0; "
             "sleep 0.05; done; exit 1", g_work);
    sh("%s", cmd);
}

static void test_killed_run_cleaned_next_time(void **state)
{
    (void)state;
    char store[600];
    snprintf(store, sizeof(store), "%s/store", g_work);
    pid_t pid = start_child_run(store, BLD_RUNTIME_RUNC, "touch /ready; sleep 101");
    wait_running();
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    char cmd[4096];
    /* the container lives on, but nothing of it is mounted here: its
     * rootfs, secrets and network namespace are in the runtime's own mount
     * namespace, which goes with it */
    snprintf(cmd, sizeof(cmd), "runc list | grep -q '%s'", store);
    sh("%s", cmd);
    snprintf(cmd, sizeof(cmd), "grep -q '%s/tmp' /proc/self/mountinfo", store);
    assert_int_not_equal(system(cmd), 0);

    /* a bundle whose maker lives (holds its lock) is not touched, nor is
     * it by the store's generic reaper, as its module reaps it */
    sbx_error err = SBX_ERROR_INIT;
    sbx_scratch *live = NULL;
    must(sbx_store_scratch_new(&live, g_store, "run", SBX_SCRATCH_OWNER_REAPS, &err), &err);
    unsigned removed = 0;
    must(sbx_store_scratch_reap(g_store, NULL, NULL, NULL, &removed, &err), &err);
    assert_int_equal(removed, 0); /* the dead bundle is its module's to reap */
    must(bld_sandbox_cleanup_stale(g_store, &removed, NULL, &err), &err);
    assert_int_equal(removed, 1);
    snprintf(cmd, sizeof(cmd), "grep -q '%s/tmp' /proc/self/mountinfo", store);
    assert_int_not_equal(system(cmd), 0);
    assert_int_not_equal(system("pgrep -f 'slee[p] 101' >/dev/null"), 0);
    snprintf(cmd, sizeof(cmd), "runc list | grep -q '%s'", store);
    assert_int_not_equal(system(cmd), 0);
    struct stat st;
    char live_path[1024];
    snprintf(live_path, sizeof live_path, "%s", sbx_scratch_path(live));
    assert_int_equal(stat(live_path, &st), 0);
    snprintf(cmd, sizeof(cmd), "test $(ls %s/tmp | grep -c '^run\\.') = 1", store);
    sh("%s", cmd);
    must(sbx_scratch_free(live, &err), &err);
    assert_int_equal(stat(live_path, &st), -1);
}

static void signal_during_step_cleans(bld_runtime_kind rt, int sig, const char *script)
{
    char store[600];
    snprintf(store, sizeof(store), "%s/store", g_work);
    pid_t pid = start_child_run(store, rt, script);
    wait_running();
    kill(pid, sig);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 40 + sig);
    assert_nothing_left(store);
}

static void test_sigterm_during_step_cleans(void **state)
{
    (void)state;
    signal_during_step_cleans(BLD_RUNTIME_CRUN, SIGTERM, "touch /ready; sleep 102");
    assert_int_not_equal(system("pgrep -f 'slee[p] 102' >/dev/null"), 0);
}

static void test_sigint_during_step_cleans(void **state)
{
    (void)state;
    signal_during_step_cleans(BLD_RUNTIME_RUNC, SIGINT, "touch /ready; sleep 103");
    assert_int_not_equal(system("pgrep -f 'slee[p] 103' >/dev/null"), 0);
}

/* A threaded host cancels a running step from another thread: the
 * container is killed at once and everything is torn down. */
static void *cancel_when_running(void *ctx)
{
    wait_running();
    sbx_ctx_cancel(ctx);
    return NULL;
}

static void test_cancel_from_another_thread(void **state)
{
    (void)state;
    run_ctx c;
    ctx_init(&c, BLD_RUNTIME_CRUN, "touch /ready; sleep 104");
    sbx_error err = SBX_ERROR_INIT;
    sbx_ctx *ctx;
    must(sbx_ctx_new(&ctx, &err), &err);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_when_running, ctx), 0);
    bld_sandbox_result res;
    uint64_t t0 = sbx__now_monotonic_ns();
    assert_int_equal(bld_sandbox_run(&res, &c.o, ctx, &err), SBX_ECANCELED);
    pthread_join(th, NULL);
    assert_true(res.cancelled);
    assert_non_null(strstr(err.msg, "cancelled"));
    /* far below the step's 104 s: the kill did not wait for the process */
    assert_true(sbx__now_monotonic_ns() - t0 < 60ull * 1000000000ull);
    bld_sandbox_result_clear(&res);
    sbx_ctx_free(ctx);
    assert_nothing_left(c.store);
    assert_int_not_equal(system("pgrep -f 'slee[p] 104' >/dev/null"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_runc_output_and_exit, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_crun_output_and_exit, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_nonzero_exit, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_timeout_kills_and_cleans, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_whiteouts_and_opaque, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_whiteout_entries_in_layer, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_no_change_no_layer, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_user_switching, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_user_resolve_stays_in_root, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_network_none, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_runtime_errors, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_runsc, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_many_lowers, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_plain_rootfs_and_scratch_upper, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_device_guards, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_seccomp_refuses_unshare, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_pids_limit_stops_a_fork_bomb, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_memory_limit_stops_a_hog, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_cpu_limit_reaches_the_cgroup, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_disk_limit_stops_a_writer, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_seccomp_refuses_namespace_clones, setup,
                                        teardown_test),
        cmocka_unit_test_setup_teardown(test_killed_run_cleaned_next_time, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_sigterm_during_step_cleans, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_sigint_during_step_cleans, setup, teardown_test),
        cmocka_unit_test_setup_teardown(test_cancel_from_another_thread, setup, teardown_test),
    };
    return cmocka_run_group_tests(tests, make_base, drop_base);
}
