/* A standalone CPython for python: VERSION and add_python when the base's
 * package manager lacks the version (or the base has none), as Modal's
 * add_python does: python-build-standalone's install_only archives, whose
 * python/ dir becomes /usr/local.
 *
 * Where they come from is the host's choice, never the recipe's (recipes
 * stay portable and their digest does not change): a pins file lists, per
 * version, machine and C library, an archive's path under a base URL and
 * its SHA-256; a mirror replaces the base URL and keeps the pins.  The
 * pins built in below are python-build-standalone's release assets (the
 * newest patch release of each minor version at the time of writing).
 * The download is the host's (sbx_registry_fetch_url): steps never see the
 * network for it, and bytes that do not hash to the pin are refused. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "build_python.h"
#include "sbx/recipe.h"
#include "sbx/rootfs.h"
#include "sbx_common.h"

#define PBS_DEFAULT_URL "https://github.com/astral-sh/python-build-standalone/releases/download/"
/* An install_only archive is 20-40 MB and unpacks to about 150 MB;
 * refuse what is far past that (the pins may be a site's, not ours). */
#define PBS_MAX_BYTES (512ull << 20)
#define PBS_MAX_TAR_BYTES (4ull << 30)

static const bld_python_pin builtin_pins[] = {
    {"3.9.25", "aarch64", "gnu",
     "20251031/cpython-3.9.25%2B20251031-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz",
     "2f17406709afd0f07674dd3ce92a4b23c6adf8baac3f402555d192e0f3333bef"},
    {"3.9.25", "aarch64", "musl",
     "20251031/cpython-3.9.25%2B20251031-aarch64-unknown-linux-musl-install_only_stripped.tar.gz",
     "602e2bf8ddc335df82d09d64b0bddf722194af27db45503b98b9c163f8a22672"},
    {"3.9.25", "x86_64", "gnu",
     "20251031/cpython-3.9.25%2B20251031-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz",
     "fe04e8b27bd69ca2144fc542428f8b9b5287b6a2e45516a4acfe2c2bc3102773"},
    {"3.9.25", "x86_64", "musl",
     "20251031/cpython-3.9.25%2B20251031-x86_64-unknown-linux-musl-install_only_stripped.tar.gz",
     "255581699cfbea492318e579cec93252410cfd30fba800fa6abdea8a2c239c5e"},
    {"3.10.21", "aarch64", "gnu",
     "20260814/cpython-3.10.21%2B20260814-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz",
     "686077ed8d668e3446f03f202bc3c99955d350a0db0ace5f8ce45f1b451b54b7"},
    {"3.10.21", "aarch64", "musl",
     "20260814/cpython-3.10.21%2B20260814-aarch64-unknown-linux-musl-install_only_stripped.tar.gz",
     "d0310c4f190680a16bf6ca1dc05211f1455d2b2aa6e1fadc7ea721c9471b9b0c"},
    {"3.10.21", "x86_64", "gnu",
     "20260814/cpython-3.10.21%2B20260814-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz",
     "807bb6746dd8b7a347fe833ee1cc2543457e5c2c98059dc454600468ee7cae7b"},
    {"3.10.21", "x86_64", "musl",
     "20260814/cpython-3.10.21%2B20260814-x86_64-unknown-linux-musl-install_only_stripped.tar.gz",
     "05bddd8942f4dfec45e37c8cd72c8b6323e2c7015be6e1f509904762430957fc"},
    {"3.11.16", "aarch64", "gnu",
     "20260814/cpython-3.11.16%2B20260814-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz",
     "6a250f5c9326eebaa528d5d132cd66ebd1d7540cf45ac703f19e13f41d1be9b6"},
    {"3.11.16", "aarch64", "musl",
     "20260814/cpython-3.11.16%2B20260814-aarch64-unknown-linux-musl-install_only_stripped.tar.gz",
     "24f6a6a45c2007cf4c883bef736a6d3776dc8895c7c38aae16d6cae1eb51b768"},
    {"3.11.16", "x86_64", "gnu",
     "20260814/cpython-3.11.16%2B20260814-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz",
     "3b437f08720d3ddd9c1904532476ec9fb373e800d1598c72c907dd6d5f29b79b"},
    {"3.11.16", "x86_64", "musl",
     "20260814/cpython-3.11.16%2B20260814-x86_64-unknown-linux-musl-install_only_stripped.tar.gz",
     "8aff4da777da0c10846ae602db71ce0419f4f70b46eb30f2b5c7bf8fb0db5bba"},
    {"3.12.14", "aarch64", "gnu",
     "20260814/cpython-3.12.14%2B20260814-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz",
     "2d8e17dfd732102cfeb18e0e1fa6769b24caa034e159981129590fe409c7157a"},
    {"3.12.14", "aarch64", "musl",
     "20260814/cpython-3.12.14%2B20260814-aarch64-unknown-linux-musl-install_only_stripped.tar.gz",
     "4167705abc3e40767c7bd8f006ae5dbe677397391a2d9f7549e7759e3806180a"},
    {"3.12.14", "x86_64", "gnu",
     "20260814/cpython-3.12.14%2B20260814-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz",
     "5acfa3e9ba26b51ae161c83aff278da915b590d22373a424b2ba55b8afe91fcc"},
    {"3.12.14", "x86_64", "musl",
     "20260814/cpython-3.12.14%2B20260814-x86_64-unknown-linux-musl-install_only_stripped.tar.gz",
     "25adbf9d865ada81c728ba9ee6cd042736b6b46dcd3a889198038da04eed9c4a"},
    {"3.13.15", "aarch64", "gnu",
     "20260814/cpython-3.13.15%2B20260814-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz",
     "985efd78c1c6521b379f7c64c2a25e6a1130f07441d1af8be441aa05260886aa"},
    {"3.13.15", "aarch64", "musl",
     "20260814/cpython-3.13.15%2B20260814-aarch64-unknown-linux-musl-install_only_stripped.tar.gz",
     "6e0de96340a1096cac81c9b95226c410c71cdf81e3d4419c536ccad9b57ae1f7"},
    {"3.13.15", "x86_64", "gnu",
     "20260814/cpython-3.13.15%2B20260814-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz",
     "aaca2af2ab4d7b68a712660d1334c0cfd5ec13c0312ccd30c29122d8d0342320"},
    {"3.13.15", "x86_64", "musl",
     "20260814/cpython-3.13.15%2B20260814-x86_64-unknown-linux-musl-install_only_stripped.tar.gz",
     "cec161969cbd60f306c366066701a7ab2d40b78718e7d372281cabe5743423e6"},
    {"3.14.7", "aarch64", "gnu",
     "20260814/cpython-3.14.7%2B20260814-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz",
     "86dfb106b303fa6a1991f7da42ced3e11576f777be299b3162e06617b6d22542"},
    {"3.14.7", "aarch64", "musl",
     "20260814/cpython-3.14.7%2B20260814-aarch64-unknown-linux-musl-install_only_stripped.tar.gz",
     "1bdbb1d5267120b5ba8531332be695693ba49567d28c40dd670545b6a25b70a7"},
    {"3.14.7", "x86_64", "gnu",
     "20260814/cpython-3.14.7%2B20260814-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz",
     "cefba034445d2875408d1fd4d5700ae6731563aeb54dcb39fd8164ab5c457533"},
    {"3.14.7", "x86_64", "musl",
     "20260814/cpython-3.14.7%2B20260814-x86_64-unknown-linux-musl-install_only_stripped.tar.gz",
     "d92793e7c75f88e0ebfe3f6dc9a80b1571e287537938c536b07c60f9c23d6360"},
};

static char *env_or(const char *v, const char *var)
{
    if (v && *v)
        return (char *)v;
    const char *e = getenv(var);
    return e && *e ? (char *)e : NULL;
}

static bool version_ok(const char *v, int parts_min)
{
    int parts = 0;
    const char *p = v;
    for (;;) {
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
        parts++;
        if (!*p)
            return parts >= parts_min && parts <= 3;
        if (*p++ != '.')
            return false;
    }
}

static bool hex64(const char *s)
{
    return s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* A path under the base URL: no scheme, no absolute path, no "..". */
static bool rel_path_ok(const char *p)
{
    if (!p || !*p || *p == '/' || strstr(p, "://") || strchr(p, '\\'))
        return false;
    for (const char *s = p; *s;) {
        size_t n = strcspn(s, "/");
        if (n == 2 && s[0] == '.' && s[1] == '.')
            return false;
        s += n;
        while (*s == '/')
            s++;
    }
    return true;
}

static int pins_from_file(bld_python_src *s, const char *path, sbx_error *err)
{
    json_error_t je;
    s->json = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!s->json && je.line < 1) /* not JSON at all: unreadable */
        return sbx_error_set(err, SBX_EINVAL, "python pins '%s': %s", path, je.text);
    if (!s->json)
        return sbx_error_set(err, SBX_EINVAL, "python pins '%s': line %d: %s", path, je.line,
                             je.text);
    json_t *list = json_object_get(s->json, "pythons");
    if (!json_is_object(s->json) || !json_is_array(list))
        return sbx_error_set(err, SBX_EINVAL, "python pins '%s': expected an object with a "
                             "\"pythons\" array", path);
    size_t n = json_array_size(list);
    s->owned = calloc(n ? n : 1, sizeof *s->owned);
    if (!s->owned)
        return sbx_error_set(err, SBX_ENOMEM, "python pins: out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(list, i);
        bld_python_pin *p = &s->owned[i];
        p->version = json_string_value(json_object_get(e, "version"));
        p->arch = json_string_value(json_object_get(e, "arch"));
        p->libc = json_string_value(json_object_get(e, "libc"));
        p->path = json_string_value(json_object_get(e, "path"));
        p->sha256 = json_string_value(json_object_get(e, "sha256"));
        const char *bad = !json_is_object(e)                       ? "not an object"
                          : !p->version || !version_ok(p->version, 3) ? "\"version\" is not like "
                                                                      "\"3.12.7\""
                          : !p->arch || !*p->arch || strchr(p->arch, '/') ? "no \"arch\" (uname -m)"
                          : !p->libc || (strcmp(p->libc, "gnu") && strcmp(p->libc, "musl"))
                              ? "\"libc\" is not \"gnu\" or \"musl\""
                          : !rel_path_ok(p->path) ? "\"path\" is not a relative path under the URL"
                          : !hex64(p->sha256)      ? "\"sha256\" is not 64 lowercase hex digits"
                                                   : NULL;
        if (bad)
            return sbx_error_set(err, SBX_EINVAL, "python pins '%s': entry %zu: %s", path, i + 1,
                                 bad);
    }
    s->pins = s->owned;
    s->n = n;
    s->pins_file = path;
    const char *url = json_string_value(json_object_get(s->json, "url"));
    if (json_object_get(s->json, "url") && !url)
        return sbx_error_set(err, SBX_EINVAL, "python pins '%s': \"url\" is not a string", path);
    if (url && !(s->url = strdup(url)))
        return sbx_error_set(err, SBX_ENOMEM, "python pins: out of memory");
    return 0;
}

int bld_python_src_load(bld_python_src *out, const sbx_build_options *o, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    const char *pins = env_or(o ? o->python_pins : NULL, "SBX_PYTHON_PINS");
    const char *mirror = env_or(o ? o->python_mirror : NULL, "SBX_PYTHON_MIRROR");
    int rc = 0;
    if (pins) {
        rc = pins_from_file(out, pins, err);
    } else {
        out->pins = builtin_pins;
        out->n = sizeof builtin_pins / sizeof *builtin_pins;
    }
    const char *url = mirror ? mirror : out->url ? out->url : PBS_DEFAULT_URL;
    if (rc == 0 && strncmp(url, "https://", 8) && strncmp(url, "http://", 7))
        rc = sbx_error_set(err, SBX_EINVAL, "python source '%s' (%s) is not an http:// or "
                           "https:// URL", url, mirror ? "mirror" : pins);
    /* credentials in a URL would reach logs and messages: none */
    const char *host = rc == 0 ? strstr(url, "://") + 3 : NULL;
    if (host && memchr(host, '@', strcspn(host, "/")))
        rc = sbx_error_set(err, SBX_EINVAL, "python source (%s): a URL with credentials is "
                           "refused; give the mirror access another way", mirror ? "mirror" : pins);
    if (rc == 0) {
        size_t len = strlen(url);
        char *u = sbx__strdup_printf("%s%s", url, len && url[len - 1] == '/' ? "" : "/");
        if (!u)
            rc = sbx_error_set(err, SBX_ENOMEM, "python source: out of memory");
        free(out->url);
        out->url = u;
    }
    if (rc < 0)
        bld_python_src_free(out);
    return rc;
}

void bld_python_src_free(bld_python_src *s)
{
    free(s->url);
    free(s->owned);
    json_decref(s->json);
    memset(s, 0, sizeof *s);
}

/* 1 when pin version p ("3.12.7") is version v ("3", "3.12", "3.12.7") or
 * a release of it; *rank orders releases (minor, then patch). */
static bool version_match(const char *p, const char *v, long *rank)
{
    size_t n = strlen(v);
    if (strncmp(p, v, n) != 0 || (p[n] != '\0' && p[n] != '.'))
        return false;
    const char *dot = strchr(p, '.');
    char *end = NULL;
    long minor = dot ? strtol(dot + 1, &end, 10) : 0;
    long patch = end && *end == '.' ? strtol(end + 1, NULL, 10) : 0;
    *rank = minor * 100000 + patch;
    return true;
}

const bld_python_pin *bld_python_pick(const bld_python_src *s, const char *version,
                                      const char *arch, const char *libc)
{
    const bld_python_pin *best = NULL;
    long best_rank = -1, rank;
    for (size_t i = 0; i < s->n; i++) {
        const bld_python_pin *p = &s->pins[i];
        if (!strcmp(p->arch, arch) && !strcmp(p->libc, libc) &&
            version_match(p->version, version, &rank) && rank > best_rank) {
            best = p;
            best_rank = rank;
        }
    }
    return best;
}

void bld_python_minor(char *buf, size_t len, const bld_python_pin *pin)
{
    /* pins' versions are X.Y.Z (pins_from_file, the table above) */
    const char *dot2 = strchr(strchr(pin->version, '.') + 1, '.');
    snprintf(buf, len, "%.*s", (int)(dot2 - pin->version), pin->version);
}

const char *bld_python_machine(const char *oci_arch)
{
    if (oci_arch && !strcmp(oci_arch, "amd64"))
        return "x86_64";
    if (oci_arch && !strcmp(oci_arch, "arm64"))
        return "aarch64";
    if (oci_arch && *oci_arch)
        return oci_arch;
    static char machine[sizeof ((struct utsname *)0)->machine];
    if (!machine[0]) {
        struct utsname u;
        snprintf(machine, sizeof machine, "%s", uname(&u) == 0 ? u.machine : "unknown");
    }
    return machine;
}

bool bld_python_used(const sbx_recipe *r)
{
    const sbx_recipe_base *b = sbx_recipe_get_base(r);
    if (b->kind == SBX_BASE_REGISTRY && b->add_python)
        return true;
    for (size_t i = 0; i < sbx_recipe_n_steps(r); i++)
        if (sbx_recipe_step(r, i)->kind == SBX_STEP_PYTHON)
            return true;
    return false;
}

int bld_python_bind_keys(char (*keys)[SBX_DIGEST_BUFSZ], size_t n, const sbx_recipe *r,
                         const bld_python_src *s, const char *arch, sbx_error *err)
{
    /* material: a running hash of the pins (both C libraries) of every
     * python step at or before k, so a pin change reruns from its step */
    char material[SBX_DIGEST_BUFSZ] = "";
    const sbx_recipe_base *b = sbx_recipe_get_base(r);
    for (size_t k = 0; k <= n; k++) {
        const char *v = NULL;
        if (k == 0)
            v = b->kind == SBX_BASE_REGISTRY ? b->add_python : NULL;
        else if (sbx_recipe_step(r, k - 1)->kind == SBX_STEP_PYTHON)
            v = sbx_recipe_step(r, k - 1)->u.python.version;
        if (v) {
            _cleanup_sha256_ sbx__sha256 *m = NULL;
            if (sbx__sha256_new(&m, err) < 0)
                return err->code;
            sbx__sha256_update(m, material, strlen(material) + 1);
            static const char *const libcs[] = {"gnu", "musl"};
            for (size_t l = 0; l < 2; l++) {
                const bld_python_pin *p = bld_python_pick(s, v, arch, libcs[l]);
                sbx__sha256_update(m, v, strlen(v) + 1);
                sbx__sha256_update(m, p ? p->sha256 : "-", p ? 65 : 2);
            }
            sbx__sha256_final(m, material);
        }
        if (!material[0] || !keys[k][0])
            continue;
        _cleanup_sha256_ sbx__sha256 *h = NULL;
        if (sbx__sha256_new(&h, err) < 0)
            return err->code;
        static const char tag[] = "sbx-python-standalone-pins";
        sbx__sha256_update(h, tag, sizeof tag);
        sbx__sha256_update(h, keys[k], strlen(keys[k]) + 1);
        sbx__sha256_update(h, material, strlen(material));
        sbx__sha256_final(h, keys[k]);
    }
    return 0;
}

static int chown_root(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return lchown(path, 0, 0) < 0 ? -1 : 0;
}

/* bin/name -> target, unless bin has name or lacks target. */
static int link_if_missing(int bin, const char *name, const char *target)
{
    struct stat st;
    if (fstatat(bin, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ||
        fstatat(bin, target, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    if (symlinkat(target, bin, name) < 0 || fchownat(bin, name, 0, 0, AT_SYMLINK_NOFOLLOW) < 0)
        return -1;
    return 0;
}

int bld_python_fetch(char **tree, const char *dir, const bld_python_src *s,
                     const bld_python_pin *pin, const sbx_registry_options *ro, sbx_ctx *ctx,
                     sbx_error *err)
{
    *tree = NULL;
    _cleanup_free_ char *url = sbx__strdup_printf("%s%s", s->url, pin->path);
    _cleanup_free_ char *arc = sbx__strdup_printf("%s/python.archive", dir);
    _cleanup_free_ char *tar = sbx__strdup_printf("%s/python.tar", dir);
    /* unpacked one level down: the unpacker locks dest's parent, and the
     * scratch dir is already locked by its owner (us) */
    _cleanup_free_ char *up = sbx__strdup_printf("%s/unpack", dir);
    _cleanup_free_ char *out = sbx__strdup_printf("%s/unpack/tree", dir);
    _cleanup_free_ char *py = sbx__strdup_printf("%s/unpack/tree/python", dir);
    char mm[32], exe[64], pip[64]; /* "3.12.14" -> bin/python3.12, bin/pip3.12 */
    bld_python_minor(mm, sizeof mm, pin);
    snprintf(exe, sizeof exe, "python%s", mm);
    snprintf(pip, sizeof pip, "pip%s", mm);
    if (!url || !arc || !tar || !up || !out || !py)
        return sbx_error_set(err, SBX_ENOMEM, "standalone python: out of memory");
    if (mkdir(up, 0700) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "standalone python: creating '%s'", up);
    _cleanup_close_ int afd = open(arc, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (afd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "standalone python: creating '%s'", arc);
    if (sbx_registry_fetch_url(afd, url, pin->sha256, PBS_MAX_BYTES, "python", ro, ctx, err) < 0)
        return err->code;
    _cleanup_close_ int tfd = open(tar, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (tfd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "standalone python: creating '%s'", tar);
    if (lseek(afd, 0, SEEK_SET) < 0 || sbx_rootfs_decompress_fd(afd, tfd, PBS_MAX_TAR_BYTES, url, ctx, err) < 0 ||
        lseek(tfd, 0, SEEK_SET) < 0)
        return err->code ? err->code
                         : sbx_error_sys(err, SBX_EIO, errno, "standalone python: '%s'", tar);
    unlink(arc);
    if (sbx_rootfs_unpack_tar_fd(tfd, out, err) < 0)
        return sbx_error_wrap(err, "standalone python: unpacking '%s'", url);
    unlink(tar);
    _cleanup_close_ int bin = -1;
    _cleanup_free_ char *bindir = sbx__strdup_printf("%s/bin", py);
    struct stat st;
    if (!bindir)
        return sbx_error_set(err, SBX_ENOMEM, "standalone python: out of memory");
    if (fstatat(AT_FDCWD, py, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode) ||
        (bin = open(bindir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
        fstatat(bin, exe, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return sbx_error_set(err, SBX_EINVAL, "'%s' is not a standalone CPython %s: it has no "
                             "python/bin/%s", url, pin->version, exe);
    /* owners as an install by root would leave them */
    if (nftw(py, chown_root, 64, FTW_PHYS) != 0 || link_if_missing(bin, "python3", exe) < 0 ||
        link_if_missing(bin, "python", "python3") < 0 || link_if_missing(bin, "pip3", pip) < 0 ||
        link_if_missing(bin, "pip", "pip3") < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "standalone python: preparing '%s'", py);
    *tree = py;
    py = NULL;
    return 0;
}
