/* sbx-image mount / umount / mounts / commit: root filesystems for runtime
 * hosts and sandbox snapshots (docs/runtime.md). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "sbx/registry.h"
#include "sbx/rootfs.h"

static const char MOUNT_USAGE[] =
    "usage: sbx-image mount [--read-only] [--no-mount] [--pull] [--platform P]\n"
    "                       [--json] IMAGE DIR\n"
    "\n"
    "Make DIR the root filesystem of IMAGE for a sandbox: an overlay of the store's\n"
    "cached unpacked layers (each unpacked once, then shared by every mount) and a\n"
    "fresh writable upper directory the store owns.  Costs one mount(2) and no file\n"
    "copies, whatever the image's size.  IMAGE is a store name, a ref as pulled, a\n"
    "snapshot from `commit`, or a manifest digest; it is looked up in the store\n"
    "only, unless --pull (else run `sbx-image pull REF` first).  DIR is created when\n"
    "missing, else must be an empty directory that is not a mount point.  Mounting\n"
    "a snapshot resumes or forks a sandbox; mounting an older one rolls it back.\n"
    "The image, its layers and the upper directory are kept by gc while the mount\n"
    "lives.  Needs root (CAP_SYS_ADMIN).\n"
    "\n"
    "options:\n"
    "  --read-only        no upper directory: the image as it is, mounted read-only\n"
    "  --no-mount         record the mount but let the runtime mount it, in its own\n"
    "                     mount namespace, as --json's type, source and options say\n"
    "                     (keep the source: gc knows the mount by it).  Lives until\n"
    "                     umount or a reboot, mounted or not; DIR need not exist\n"
    "  --pull             IMAGE not in the store: pull it (a ref), each layer\n"
    "                     unpacked while it downloads (pull --unpack), then mount\n"
    "  --platform OS/ARCH[/VARIANT]  the entry to use when IMAGE names an index\n"
    "  --creds USER:PASSWORD  credentials for a private image's registry: an image\n"
    "                     pulled with credentials is mounted only after that registry\n"
    "                     accepts these (default: the Docker config)\n"
    CLI_CREDS_MORE_HELP
    "  --json             print {id, image, digest, dir, type, source, options,\n"
    "                     lowers, upper, work, layers, flattened, mounted}: the\n"
    "                     overlay (lowers top-most first).  Give a runtime DIR as its\n"
    "                     root (or bind-mount it), or with --no-mount the mount\n"
    "                     itself; never a second overlay on the same upper\n"
    "  --store DIR        store to use\n"
    "  -v, --verbose      debug messages on stderr\n"
    "\n"
    "output: the mount id on stdout.  Exit 1 on error (nothing is mounted or left),\n"
    "2 on usage errors, 128+N when stopped by signal N.\n"
    "\n"
    "examples:\n"
    "  sbx-image mount node:22\n"
    "  sbx-image mount --read-only --json myapp:1\n";

static const char UMOUNT_USAGE[] =
    "usage: sbx-image umount [--json] ID|DIR\n"
    "\n"
    "Unmount a mount made by `sbx-image mount` (by its id or directory) and remove\n"
    "its writable upper directory: whatever was not committed is gone.  Fails, and\n"
    "changes nothing, while a process still uses the mount (stop the sandbox\n"
    "first) or while it is in use elsewhere (a bind mount, or the root of a\n"
    "runtime's container).\n"
    "\n"
    "options:\n"
    "  --json             print {id, dir}\n"
    "  --store DIR        store to use\n"
    "  -v, --verbose      debug messages on stderr\n"
    "\n"
    "examples:\n"
    "  sbx-image umount 9c1e4f0a2b3d\n";

static const char MOUNTS_USAGE[] =
    "usage: sbx-image mounts [--json]\n"
    "\n"
    "List the store's mounts: ID, IMAGE (as it was named), DIGEST (12 hex digits),\n"
    "CREATED (UTC), DIR, and MODE (rw, ro; \"ext\" for one the runtime mounts,\n"
    "--no-mount; \"new\" for one not finished: being made, or left by a killed\n"
    "mount for the next command to remove).\n"
    "\n"
    "options:\n"
    "  --json             print [{id, image, digest, dir, created, read_only, ready,\n"
    "                     external, upper}] (created in unix seconds)\n"
    "  --store DIR        store to use\n"
    "  -v, --verbose      debug messages on stderr\n"
    "\n"
    "examples:\n"
    "  sbx-image mounts --json\n";

static const char COMMIT_USAGE[] =
    "usage: sbx-image commit [--tag NAME] [--expires-in DURATION] [--json] ID|DIR\n"
    "\n"
    "Snapshot a sandbox: capture what changed in a mount's upper directory (new and\n"
    "modified files with owners, modes, xattrs and times; deletions and replaced\n"
    "directories as OCI whiteouts) as a deterministic zstd layer on top of the\n"
    "mounted image, and store an image whose config is the mounted image's plus\n"
    "that layer.  The same changes on the same parent give the same digest.  The\n"
    "mount stays; a later commit again captures everything changed since mount.\n"
    "Stop or freeze the sandbox first: a file written during the capture may be\n"
    "captured torn, or not at all.  Nothing changed: the snapshot is the parent.\n"
    "\n"
    "options:\n"
    "  --tag NAME         name the snapshot (default: \"snapshot:<digest>\")\n"
    "  --expires-in DURATION  the name goes once unused this long (each mount,\n"
    "                     unpack or build from it starts the time again); gc removes\n"
    "                     expired names first.  DURATION: seconds, or a number with\n"
    "                     s, m, h, d (\"90s\", \"30m\", \"12h\", \"7d\").  Default: never.\n"
    "  --json             print {digest, parent, name, diff_id, changed, size_bytes,\n"
    "                     total_bytes, expires_at}: size_bytes is the stored\n"
    "                     compressed bytes no other named image holds (the snapshot's\n"
    "                     own cost), total_bytes all it reaches, expires_at unix\n"
    "                     seconds (0: never)\n"
    "  --store DIR        store to use\n"
    "  -v, --verbose      debug messages on stderr\n"
    "\n"
    "output: the snapshot's digest on stdout.\n"
    "\n"
    "examples:\n"
    "  sbx-image commit --tag snapshot:sb-42 --expires-in 7d 9c1e4f0a2b3d\n";

/* ---- mount ------------------------------------------------------------------ */

struct mount_opts {
    sbx_mount_options o;
    sbx_registry_options r;
    bool pull;
};

static int mount_opt(void *ud, int c, const char *arg)
{
    struct mount_opts *m = ud;
    switch (c) {
    case 'r': m->o.read_only = true; return 0;
    case 'p': m->o.platform = arg; return 0;
    case 'n': m->o.no_mount = true; return 0;
    case 'P': m->pull = true; return 0;
    case CLI_OPT_CREDS: return cli_registry_creds(&m->r, (char *)arg, "mount") ? -2 : 0;
    case CLI_OPT_PASSWORD_STDIN:
    case CLI_OPT_AUTHFILE: return cli_registry_opt(&m->r, c, (char *)arg, "mount") < 0 ? -2 : 0;
    default: return -1;
    }
}

static json_t *strv_json(char **v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

int cmd_mount(sbx_cli *cli, int argc, char **argv)
{
    static const struct option extra[] = {{"read-only", no_argument, NULL, 'r'},
                                          {"platform", required_argument, NULL, 'p'},
                                          {"no-mount", no_argument, NULL, 'n'},
                                          {"pull", no_argument, NULL, 'P'},
                                          {"creds", required_argument, NULL, CLI_OPT_CREDS},
                                          CLI_CREDS_MORE_OPTS};
    struct mount_opts m = {SBX_MOUNT_OPTIONS_INIT, SBX_REGISTRY_OPTIONS_INIT, false};
    int r = cli_parse_verb(cli, "mount", MOUNT_USAGE, extra, 7, mount_opt, &m, argc, argv, 2,
                  "IMAGE and DIR");
    if (r < 0)
        return -r - 1;
    const char *image = argv[optind], *dir = argv[optind + 1];
    if (cli_registry_finish(&m.r, "mount"))
        return CLI_EXIT_USAGE;
    if (cli_need_root("mount", m.o.no_mount ? "its upper dir belongs to the store, owned by root"
                                            : "mounting an overlay needs CAP_SYS_ADMIN") != 0)
        return CLI_EXIT_FAIL;
    sbx_store *s = NULL;
    if ((m.pull ? cli_open_store_create(cli, &s) : cli_open_store(cli, &s)) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    sbx_error err = SBX_ERROR_INIT;
    sbx_mount_result res;
    sbx_registry_gate(s, &m.r);
    r = sbx_rootfs_mount(&res, s, image, dir, &m.o, cli->ctx, &err);
    if (r == SBX_ENOTFOUND && m.pull) {
        /* not stored: pulled, its layers unpacked while they download */
        sbx_error_clear(&err);
        r = cli_pull_unpacking(cli, s, image, &m.r, m.o.platform, &err);
        if (r == 0)
            r = sbx_rootfs_mount(&res, s, image, dir, &m.o, cli->ctx, &err);
    }
    sbx_store_free(s);
    cli_progress_done();
    if (r < 0)
        return cli_fail(&err);
    int rc = CLI_EXIT_OK;
    if (cli->json)
        rc = cli_print_json(
            stdout, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s?, s:s?, s:I, s:b, "
                              "s:b}", "id", res.id, "image", image, "digest", res.digest, "dir",
                              res.dir, "type", "overlay", "source", res.source, "options",
                              res.options, "lowers", strv_json(res.lowers, res.nlowers),
                              "upper", res.upper, "work", res.work, "layers",
                              (json_int_t)res.layers, "flattened", res.flattened, "mounted",
                              !m.o.no_mount));
    else
        printf("%s\n", res.id);
    sbx_mount_result_clear(&res);
    return rc;
}

/* ---- umount ----------------------------------------------------------------- */

int cmd_umount(sbx_cli *cli, int argc, char **argv)
{
    int r = cli_parse_verb(cli, "umount", UMOUNT_USAGE, NULL, 0, NULL, NULL, argc, argv, 1, "ID or DIR");
    if (r < 0)
        return -r - 1;
    const char *what = argv[optind];
    if (cli_need_root("umount", "unmounting needs CAP_SYS_ADMIN") != 0)
        return CLI_EXIT_FAIL;
    sbx_store *s = NULL;
    if (cli_open_store(cli, &s) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    sbx_error err = SBX_ERROR_INIT;
    sbx_mount_entry e;
    r = sbx_store_mount_find(&e, s, what, &err);
    if (r == 0)
        r = sbx_rootfs_umount(s, e.id, cli->ctx, &err);
    sbx_store_free(s);
    if (r < 0) {
        sbx_mount_entry_clear(&e);
        return cli_fail(&err);
    }
    int rc = cli->json ? cli_print_json(stdout, json_pack("{s:s, s:s}", "id", e.id, "dir", e.dir))
                       : CLI_EXIT_OK;
    sbx_mount_entry_clear(&e);
    return rc;
}

/* ---- mounts ------------------------------------------------------------------ */

int cmd_mounts(sbx_cli *cli, int argc, char **argv)
{
    int r = cli_parse_verb(cli, "mounts", MOUNTS_USAGE, NULL, 0, NULL, NULL, argc, argv, 0, "no arguments");
    if (r < 0)
        return -r - 1;
    sbx_store *s = NULL;
    if (cli_open_store_or_none(cli, &s) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    sbx_error err = SBX_ERROR_INIT;
    sbx_mount_entry *v = NULL;
    size_t n = 0;
    r = s ? sbx_store_mount_list(&v, &n, s, &err) : 0;
    sbx_store_free(s);
    if (r < 0)
        return cli_fail(&err);
    json_t *arr = cli->json ? json_array() : NULL;
    if (!cli->json)
        printf("%-12s  %-24s  %-12s  %-19s  %-4s  %s\n", "ID", "IMAGE", "DIGEST", "CREATED",
               "MODE", "DIR");
    for (size_t i = 0; i < n; i++) {
        if (arr) {
            char *upper = v[i].read_only ? NULL : malloc(strlen(v[i].path) + 3);
            if (upper)
                sprintf(upper, "%s/u", v[i].path);
            json_array_append_new(
                arr, json_pack("{s:s, s:s, s:s, s:s, s:I, s:b, s:b, s:b, s:s?}", "id", v[i].id,
                               "image", v[i].image, "digest", v[i].digest, "dir", v[i].dir,
                               "created", (json_int_t)v[i].created, "read_only",
                               v[i].read_only, "ready", v[i].ready, "external", v[i].external,
                               "upper", upper));
            free(upper);
            continue;
        }
        char when[32];
        time_t t = (time_t)v[i].created;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        printf("%-12s  %-24s  %-12.12s  %s  %-4s  %s\n", v[i].id, v[i].image, v[i].digest + 7,
               when, !v[i].ready ? "new" : v[i].external ? "ext" : v[i].read_only ? "ro" : "rw",
               v[i].dir);
    }
    sbx_mount_entries_free(v, n);
    return arr ? cli_print_json(stdout, arr) : CLI_EXIT_OK;
}

/* ---- commit ------------------------------------------------------------------ */

/* "3600", "90s", "30m", "12h", "7d", "1h30m" -> seconds; -1 when malformed. */
static int64_t parse_duration(const char *s)
{
    int64_t total = 0;
    if (!*s)
        return -1;
    while (*s) {
        if (!isdigit((unsigned char)*s))
            return -1;
        errno = 0;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (errno || v < 0 || v > SBX_NAME_TTL_MAX)
            return -1;
        int64_t mult = 1;
        switch (*end) {
        case 's': mult = 1; end++; break;
        case 'm': mult = 60; end++; break;
        case 'h': mult = 3600; end++; break;
        case 'd': mult = 86400; end++; break;
        case '\0': break;
        default: return -1;
        }
        total += v * mult;
        if (total > SBX_NAME_TTL_MAX)
            return -1;
        s = end;
    }
    return total;
}

struct commit_opts {
    sbx_commit_options o;
};

static int commit_opt(void *ud, int c, const char *arg)
{
    struct commit_opts *m = ud;
    switch (c) {
    case 't':
        if (!*arg) {
            cli_usage_error("commit", "--tag needs a name");
            return -2;
        }
        m->o.tag = arg;
        return 0;
    case 'e':
        m->o.expires_in = parse_duration(arg);
        if (m->o.expires_in <= 0) {
            cli_usage_error("commit", "--expires-in: '%s' is not a duration (seconds, or a "
                            "number with s, m, h, d: 30m, 7d)", arg);
            return -2;
        }
        return 0;
    default: return -1;
    }
}

int cmd_commit(sbx_cli *cli, int argc, char **argv)
{
    static const struct option extra[] = {{"tag", required_argument, NULL, 't'},
                                          {"expires-in", required_argument, NULL, 'e'}};
    struct commit_opts m = {SBX_COMMIT_OPTIONS_INIT};
    int r = cli_parse_verb(cli, "commit", COMMIT_USAGE, extra, 2, commit_opt, &m, argc, argv, 1,
                  "ID or DIR");
    if (r < 0)
        return -r - 1;
    sbx_store *s = NULL;
    if (cli_open_store(cli, &s) != CLI_EXIT_OK)
        return CLI_EXIT_FAIL;
    sbx_error err = SBX_ERROR_INIT;
    sbx_commit_result res;
    r = sbx_rootfs_commit(&res, s, argv[optind], &m.o, cli->ctx, &err);
    sbx_store_free(s);
    cli_progress_done();
    if (r < 0)
        return cli_fail(&err);
    if (cli->json)
        return cli_print_json(
            stdout, json_pack("{s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:I}", "digest", res.digest,
                              "parent", res.parent, "name", res.name, "diff_id", res.diff_id,
                              "changed", res.changed, "size_bytes",
                              (json_int_t)res.usage.size_bytes, "total_bytes",
                              (json_int_t)res.usage.total_bytes, "expires_at",
                              (json_int_t)res.expires_at));
    printf("%s\n", res.digest);
    return CLI_EXIT_OK;
}
