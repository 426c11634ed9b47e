/* Users and paths inside an image's root filesystem.
 *
 * The rootfs is untrusted: /etc/passwd may be a symlink to the host's
 * /etc/shadow.  Every lookup goes through openat2(RESOLVE_IN_ROOT), which
 * resolves "..", absolute links and symlinks as if rootfs were "/".
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "sandbox_internal.h"
#include "sbx_common.h"

int bld_open_in_root(int rootfd, const char *path, int flags)
{
    while (*path == '/')
        path++;
    if (!*path)
        path = ".";
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
}

int bld_mkdir_in_root(int rootfd, const char *path, sbx_error *err)
{
    _cleanup_free_ char *copy = strdup(path);
    if (!copy)
        return sbx_error_set(err, SBX_ENOMEM, "creating '%s': out of memory", path);
    int fd = dup(rootfd);
    char *save = NULL;
    for (char *part = strtok_r(copy, "/", &save); part && fd >= 0;
         part = strtok_r(NULL, "/", &save)) {
        if (!strcmp(part, "."))
            continue;
        if (!strcmp(part, ".."))
            break; /* resolved against fd by openat2 below, staying in root */
        if (mkdirat(fd, part, 0755) < 0 && errno != EEXIST) {
            int e = errno;
            close(fd);
            return sbx_error_sys(err, SBX_EIO, e, "creating directory '%s' in the image", path);
        }
        int next = bld_open_in_root(fd, part, O_RDONLY | O_DIRECTORY);
        close(fd);
        fd = next;
    }
    if (fd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "creating directory '%s' in the image", path);
    close(fd);
    return 0;
}

/* Read etc/passwd or etc/group of the rootfs; *out NULL when absent. */
static int read_db(char **out, int rootfd, const char *name, sbx_error *err)
{
    *out = NULL;
    _cleanup_close_ int fd = bld_open_in_root(rootfd, name, O_RDONLY);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return sbx_error_sys(err, SBX_EIO, errno, "reading '/%s' of the image", name);
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (16 << 20))
        return sbx_error_set(err, SBX_ELIMIT, "reading '/%s' of the image: not a regular file "
                             "under 16 MiB", name);
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return sbx_error_set(err, SBX_ENOMEM, "reading '/%s': out of memory", name);
    ssize_t n = sbx__read_full(fd, buf, (size_t)st.st_size);
    if (n < 0) {
        free(buf);
        return sbx_error_sys(err, SBX_EIO, errno, "reading '/%s' of the image", name);
    }
    buf[n] = '\0';
    *out = buf;
    return 0;
}

static bool parse_id(const char *s, uint32_t *out)
{
    if (!*s)
        return false;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > 0xfffffffeUL || *s == '-' || *s == '+')
        return false;
    *out = (uint32_t)v;
    return true;
}

/* Find a passwd/group line by name (by_name) or by id (field 3); fields split
 * in place.  Returns the number of fields or 0. */
static int find_line(char *db, const char *name, uint32_t id, bool by_name, char **f, int maxf)
{
    char *save = NULL;
    for (char *line = strtok_r(db, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int n = 0;
        char *p = line;
        f[n++] = p;
        while (n < maxf && (p = strchr(p, ':'))) {
            *p++ = '\0';
            f[n++] = p;
        }
        if (n < 3)
            continue;
        uint32_t v;
        if (by_name ? !strcmp(f[0], name) : (parse_id(f[2], &v) && v == id))
            return n;
    }
    return 0;
}

static bool member_of(const char *members, const char *user)
{
    size_t ul = strlen(user);
    for (const char *p = members; p && *p;) {
        size_t n = strcspn(p, ",");
        if (n == ul && !strncmp(p, user, n))
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

static int resolve_group(uint32_t *gid, int rootfd, const char *group, const char *user,
                         sbx_error *err)
{
    if (parse_id(group, gid))
        return 0;
    _cleanup_free_ char *db = NULL;
    int r = read_db(&db, rootfd, "etc/group", err);
    if (r < 0)
        return r;
    char *f[4];
    if (!db || find_line(db, group, 0, true, f, 4) < 3 || !parse_id(f[2], gid))
        return sbx_error_set(err, SBX_ENOTFOUND, "resolving user '%s': no group '%s' in the "
                             "image's /etc/group", user, group);
    return 0;
}

static int add_groups(bld_user_ids *out, int rootfd, const char *name, sbx_error *err)
{
    _cleanup_free_ char *db = NULL;
    int r = read_db(&db, rootfd, "etc/group", err);
    if (r < 0 || !db)
        return r;
    char *save = NULL;
    for (char *line = strtok_r(db, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f[4] = {0};
        int n = 0;
        char *p = line;
        f[n++] = p;
        while (n < 4 && (p = strchr(p, ':'))) {
            *p++ = '\0';
            f[n++] = p;
        }
        uint32_t g;
        if (n == 4 && member_of(f[3], name) && parse_id(f[2], &g) && g != out->gid &&
            out->ngroups < SBX_ARRAY_LEN(out->groups))
            out->groups[out->ngroups++] = g;
    }
    return 0;
}

int bld_user_resolve(bld_user_ids *out, const char *rootfs, const char *user, sbx_error *err)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->home, sizeof(out->home), "/root");
    if (!user || !*user || !strcmp(user, "root") || !strcmp(user, "0"))
        user = "0";
    _cleanup_free_ char *spec = strdup(user);
    if (!spec)
        return sbx_error_set(err, SBX_ENOMEM, "resolving user: out of memory");
    char *group = strchr(spec, ':');
    if (group)
        *group++ = '\0';
    if (!*spec || (group && !*group) || strchr(spec, '\n') || (group && strchr(group, ':')))
        return sbx_error_set(err, SBX_EINVAL, "resolving user '%s': want NAME, UID, UID:GID or "
                             "NAME:GROUP", user);

    _cleanup_close_ int rootfd = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "resolving user '%s': opening '%s'", user,
                             rootfs);
    _cleanup_free_ char *db = NULL;
    int r = read_db(&db, rootfd, "etc/passwd", err);
    if (r < 0)
        return r;

    uint32_t uid;
    bool numeric = parse_id(spec, &uid);
    char *f[7];
    int nf = db ? find_line(db, spec, numeric ? uid : 0, !numeric, f, 7) : 0;
    if (!numeric && nf < 4)
        return sbx_error_set(err, SBX_ENOTFOUND, "resolving user '%s': no user '%s' in the "
                             "image's /etc/passwd", user, spec);
    if (nf >= 4) {
        if (!parse_id(f[2], &out->uid) || !parse_id(f[3], &out->gid))
            return sbx_error_set(err, SBX_EINVAL, "resolving user '%s': bad /etc/passwd line "
                                 "for '%s'", user, f[0]);
        if (nf >= 6 && f[5][0] == '/')
            snprintf(out->home, sizeof(out->home), "%s", f[5]);
        r = add_groups(out, rootfd, f[0], err);
        if (r < 0)
            return r;
    } else {
        out->uid = uid;
        out->gid = 0;
        snprintf(out->home, sizeof(out->home), uid == 0 ? "/root" : "/");
    }
    if (group) {
        r = resolve_group(&out->gid, rootfd, group, user, err);
        if (r < 0)
            return r;
    }
    return 0;
}
