/* sbx_rootfs_export: an image in the store -> an OCI image layout directory.
 *
 * The image is looked up in the store only and leased for the whole call
 * (as sbx_rootfs_unpack does).  Layers are written as the store keeps them
 * (zstd, or gzip as pulled), read from the store's file and re-hashed while
 * copied: the store is
 * a trust boundary, and a blob is only written under a digest it matches.
 * Manifests and configs come from sbx_store_read_blob (re-hashed there) and
 * are hashed again before they are written.
 *
 * If the manifest is an OCI one and references exactly the stored streams
 * (digest and size of every layer, as every built image and every image
 * pulled as gzip or zstd does), its bytes are exported as they are.
 * Otherwise (a Docker manifest, which an OCI layout does not hold, or
 * layers the store compressed itself and records the pulled blobs of only
 * as sources) a new OCI manifest is written over the stored layers with
 * the same config, and the result says so.
 *
 * The layout is built in ".<name>.sbx-export-<pid>-<n>" beside the
 * destination, flock'ed by its maker, synced and renamed (RENAME_NOREPLACE)
 * into place; one whose lock can be taken belongs to a dead process and is
 * removed by the next export there.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "outdir.h"
#include "sbx_common.h"
#include "sbx/rootfs.h"
#include "sbx/context.h"

#define COPY_CHUNK (1u << 20)

typedef struct exporter {
    sbx_store *s;
    const sbx_export_options *o;
    sbx_ctx *ctx;
    int blobs_fd; /* <tmp>/blobs/sha256 */
    sbx_export_result *out;
} exporter;

static int check_cancel(const sbx_ctx *ctx, sbx_error *err)
{
    if (sbx__check_cancel(ctx, err) < 0)
        return sbx_error_wrap(err, "exporting");
    return 0;
}

/* ---- the destination and its temp dir ------------------------------------- */

/* Export writes a new directory: dest must not exist at all. */
static int check_dest(rfs_outdir *d, sbx_error *err)
{
    struct stat st;
    if (lstat(d->path, &st) == 0)
        return sbx_error_set(err, SBX_EINVAL,
                             "exporting: '%s' already exists (export writes a new directory; "
                             "remove it or choose another)", d->path);
    if (errno != ENOENT)
        return sbx_error_sys(err, SBX_EIO, errno, "exporting: checking '%s'", d->path);
    return 0;
}

/* ---- writing blobs ---------------------------------------------------------- */

/* Create blobs/sha256/<hex>; *fd_out -1 when this blob was already written
 * (an image may reference one layer twice). */
static int blob_create(int *fd_out, exporter *c, const char *digest, sbx_error *err)
{
    const char *hex;
    *fd_out = -1;
    if (sbx__digest_parse(&hex, digest, err) < 0)
        return sbx_error_wrap(err, "exporting");
    int fd = openat(c->blobs_fd, hex, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST)
        return sbx_error_sys(err, sbx__errno_code(errno), errno, "exporting: creating blob '%s'",
                             digest);
    *fd_out = fd;
    return 0;
}

static int blob_finish(int fd, exporter *c, const char *digest, uint64_t size, sbx_error *err)
{
    int r = 0;
    if (fsync(fd) < 0)
        r = sbx_error_sys(err, sbx__errno_code(errno), errno, "exporting: syncing blob '%s'",
                          digest);
    if (close(fd) < 0 && r == 0)
        r = sbx_error_sys(err, sbx__errno_code(errno), errno, "exporting: writing blob '%s'",
                          digest);
    if (r == 0) {
        c->out->blobs++;
        c->out->bytes += size;
    }
    return r;
}

/* A manifest, config or index entry held in memory, written under digest
 * only if it hashes to it. */
static int write_blob_buf(exporter *c, const char *digest, const void *data, size_t len,
                          const char *what, sbx_error *err)
{
    char got[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(data, len, got);
    if (strcmp(got, digest) != 0)
        return sbx_error_set(err, SBX_EDIGEST, "exporting: the %s read from the store hashes to "
                             "'%s', not '%s' (run sbx-image fsck)", what, got, digest);
    int fd, r = blob_create(&fd, c, digest, err);
    if (r < 0 || fd < 0)
        return r;
    if ((r = sbx__write_all(fd, data, len, err)) < 0) {
        close(fd);
        return sbx_error_wrap(err, "exporting: writing blob '%s'", digest);
    }
    return blob_finish(fd, c, digest, len, err);
}

/* Copy src to dst, hashing what is read; the digest and size are checked by
 * the caller.  Progress under id. */
static int copy_hashed(int src, int dst, const char *id, uint64_t total, exporter *c,
                       char got[SBX_DIGEST_BUFSZ], uint64_t *copied, sbx_error *err)
{
    _cleanup_sha256_ sbx__sha256 *h = NULL;
    _cleanup_free_ char *buf = malloc(COPY_CHUNK);
    if (!buf)
        return sbx_error_set(err, SBX_ENOMEM, "exporting: out of memory");
    int r = sbx__sha256_new(&h, err);
    if (r < 0)
        return r;
    *copied = 0;
    sbx__progress(c->ctx, id, "copy", 0, total);
    for (;;) {
        if ((r = check_cancel(c->ctx, err)) < 0)
            return r;
        ssize_t n = read(src, buf, COPY_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "exporting: reading the store");
        if (n == 0)
            break;
        sbx__sha256_update(h, buf, (size_t)n);
        if ((r = sbx__write_all(dst, buf, (size_t)n, err)) < 0)
            return r;
        *copied += (uint64_t)n;
        sbx__progress(c->ctx, id, "copy", *copied, total);
    }
    sbx__sha256_final(h, got);
    return 0;
}

/* Layer i of n as the store keeps it (zstd or gzip), verified against its record. */
static int write_layer(exporter *c, size_t i, size_t n, const sbx_layer_info *li, sbx_error *err)
{
    char path[4096], id[96], got[SBX_DIGEST_BUFSZ];
    int r = sbx_store_layer_path(c->s, li->diff_id, path, sizeof path, err);
    if (r < 0)
        return r;
    _cleanup_close_ int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "exporting: opening layer '%s' in the store",
                             li->diff_id);
    int dst;
    if ((r = blob_create(&dst, c, li->stored_digest, err)) < 0 || dst < 0)
        return r;
    snprintf(id, sizeof id, "layer %zu/%zu %.19s", i + 1, n, li->stored_digest);
    uint64_t copied = 0;
    r = copy_hashed(src, dst, id, li->stored_size, c, got, &copied, err);
    if (r == 0 && (strcmp(got, li->stored_digest) != 0 || copied != li->stored_size))
        r = sbx_error_set(err, SBX_EDIGEST, "exporting: layer %zu/%zu '%s': the store's file "
                          "does not match its record (%s, %llu bytes; recorded %s, %llu bytes; "
                          "run sbx-image fsck)", i + 1, n, li->diff_id, got,
                          (unsigned long long)copied, li->stored_digest,
                          (unsigned long long)li->stored_size);
    if (r < 0) {
        close(dst);
        return r;
    }
    return blob_finish(dst, c, li->stored_digest, copied, err);
}

/* ---- manifests and the index ----------------------------------------------- */

/* The stored form of every layer; *same when the manifest references exactly
 * those streams. */
static int layer_infos(sbx_layer_info *infos, bool *same, sbx_store *s, const sbx_image *in,
                       sbx_ctx *ctx, sbx_error *err)
{
    *same = true;
    for (size_t i = 0; i < in->nlayers; i++) {
        const sbx_image_layer *l = &in->layers[i];
        if (!sbx__digest_valid(l->diff_id))
            return sbx_error_set(err, SBX_ENOTFOUND, "exporting: layer %zu has no diff_id in the "
                                 "image config", i + 1);
        int have = sbx_store_has_layer(s, l->diff_id, err);
        if (have < 0)
            return sbx_error_wrap(err, "exporting");
        if (have == 0)
            return sbx_error_set(err, SBX_ENOTFOUND,
                                 "exporting: layer %zu/%zu '%s' is not in the store (pull the "
                                 "image again: sbx-image pull)", i + 1, in->nlayers, l->diff_id);
        bool replaced = false;
        int r = sbx_store_layer_shippable(s, l->diff_id, &infos[i], &replaced, err);
        if (r < 0)
            return sbx_error_wrap(err, "exporting: layer %zu/%zu", i + 1, in->nlayers);
        if (replaced)
            sbx__log(ctx, SBX_LOG_WARN, "layer %zu/%zu '%s': its stored gzip blob is one zlib "
                     "refuses; stored again as zstd, which is what goes", i + 1, in->nlayers,
                     l->diff_id);
        if (strcmp(l->digest, infos[i].stored_digest) != 0 || l->size != infos[i].stored_size)
            *same = false;
    }
    return 0;
}

static int json_oom(json_t *o, sbx_error *err)
{
    json_decref(o);
    return sbx_error_set(err, SBX_ENOMEM, "exporting: out of memory");
}

/* A new OCI manifest: the same config (as an OCI config), each layer as its
 * stored stream, the old manifest's annotations. */
static int rereference(char **out, size_t *len, const sbx_image *in,
                       const sbx_layer_info *infos, sbx_error *err)
{
    json_t *old = json_loadb(in->manifest_raw, in->manifest_len, 0, NULL);
    json_t *cfg = json_object_get(old, "config");
    json_t *size = json_object_get(cfg, "size");
    const char *cmt = json_string_value(json_object_get(cfg, "mediaType"));
    if (!json_is_integer(size)) {
        json_decref(old);
        return sbx_error_set(err, SBX_EINVAL, "exporting: manifest '%s' has no config size",
                             in->digest);
    }
    if (!cmt || !strcmp(cmt, SBX_MT_DOCKER_CONFIG))
        cmt = SBX_MT_OCI_CONFIG; /* the same JSON; OCI's name for it */
    json_t *layers = json_array();
    json_t *m = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:o}", "schemaVersion", 2, "mediaType",
                          SBX_MT_OCI_MANIFEST, "config", "mediaType", cmt, "digest", in->config_digest,
                          "size", json_integer_value(size), "layers", layers);
    json_t *ann = json_object_get(old, "annotations");
    if (m && json_is_object(ann))
        json_object_set(m, "annotations", ann);
    json_decref(old);
    if (!m)
        return json_oom(NULL, err);
    for (size_t i = 0; i < in->nlayers; i++)
        if (json_array_append_new(layers, json_pack("{s:s, s:s, s:I}", "mediaType",
                                                    sbx_media_stored_layer(infos[i].format),
                                                    "digest", infos[i].stored_digest, "size",
                                                    (json_int_t)infos[i].stored_size)) < 0)
            return json_oom(m, err);
    *out = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(m);
    if (!*out)
        return sbx_error_set(err, SBX_ENOMEM, "exporting: out of memory");
    *len = strlen(*out);
    return 0;
}

/* The index.json entry's platform, from the config as written there. */
static json_t *platform_of(const sbx_image *in)
{
    json_t *cfg = json_loadb(in->config_raw, in->config_len, 0, NULL);
    const char *os = json_string_value(json_object_get(cfg, "os"));
    const char *arch = json_string_value(json_object_get(cfg, "architecture"));
    const char *variant = json_string_value(json_object_get(cfg, "variant"));
    json_t *p = NULL;
    if (os && *os && arch && *arch) {
        p = json_pack("{s:s, s:s}", "os", os, "architecture", arch);
        if (p && variant && *variant)
            json_object_set_new(p, "variant", json_string(variant));
    }
    json_decref(cfg);
    return p;
}

static int write_file_at(int dirfd_, const char *name, const char *data, size_t len,
                         sbx_error *err)
{
    int fd = openat(dirfd_, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return sbx_error_sys(err, sbx__errno_code(errno), errno, "exporting: creating '%s'", name);
    int r = sbx__write_all(fd, data, len, err);
    if (r == 0 && fsync(fd) < 0)
        r = sbx_error_sys(err, sbx__errno_code(errno), errno, "exporting: syncing '%s'", name);
    if (close(fd) < 0 && r == 0)
        r = sbx_error_sys(err, sbx__errno_code(errno), errno, "exporting: writing '%s'", name);
    return r;
}

static int write_index(int dfd, const char *media_type, const char *digest, size_t len,
                       const sbx_image *in, const sbx_export_options *o, sbx_error *err)
{
    json_t *desc = json_pack("{s:s, s:s, s:I}", "mediaType", media_type, "digest", digest, "size",
                             (json_int_t)len);
    if (!desc)
        return json_oom(NULL, err);
    json_t *plat = platform_of(in);
    if (plat)
        json_object_set_new(desc, "platform", plat);
    if (o->tag && *o->tag)
        json_object_set_new(desc, "annotations",
                            json_pack("{s:s}", "org.opencontainers.image.ref.name", o->tag));
    json_t *idx = json_pack("{s:i, s:s, s:[o]}", "schemaVersion", 2, "mediaType", SBX_MT_OCI_INDEX,
                            "manifests", desc);
    if (!idx)
        return json_oom(NULL, err);
    _cleanup_free_ char *s = json_dumps(idx, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(idx);
    if (!s)
        return sbx_error_set(err, SBX_ENOMEM, "exporting: out of memory");
    static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
    int r = write_file_at(dfd, "oci-layout", layout, sizeof layout - 1, err);
    return r < 0 ? r : write_file_at(dfd, "index.json", s, strlen(s), err);
}

/* ---- the work ---------------------------------------------------------------- */

static int sync_dirs(const rfs_outdir *d, sbx_error *err)
{
    static const char *const sub[] = {"blobs/sha256", "blobs", "."};
    for (size_t i = 0; i < SBX_ARRAY_LEN(sub); i++) {
        int fd = openat(d->lock_fd, sub[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r = fd < 0 ? -1 : fsync(fd);
        int e = errno;
        if (fd >= 0)
            close(fd);
        if (r < 0)
            return sbx_error_sys(err, sbx__errno_code(e), e, "exporting: syncing '%s/%s'", d->tmp,
                                 sub[i]);
    }
    if (fchmod(d->lock_fd, 0755) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "exporting: setting mode of '%s'", d->tmp);
    return 0;
}

static int write_layout(exporter *c, rfs_outdir *d, const sbx_image *in, const sbx_layer_info *infos,
                        const char *man, size_t man_len, sbx_error *err)
{
    int r;
    if (mkdirat(d->lock_fd, "blobs", 0755) < 0 || mkdirat(d->lock_fd, "blobs/sha256", 0755) < 0)
        return sbx_error_sys(err, sbx__errno_code(errno), errno, "exporting: creating '%s/blobs'",
                             d->tmp);
    c->blobs_fd = openat(d->lock_fd, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->blobs_fd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "exporting: opening '%s/blobs'", d->tmp);
    for (size_t i = 0; i < in->nlayers; i++)
        if ((r = check_cancel(c->ctx, err)) < 0 || (r = write_layer(c, i, in->nlayers, &infos[i],
                                                                  err)) < 0)
            return r;
    if ((r = write_blob_buf(c, in->config_digest, in->config_raw, in->config_len, "config",
                            err)) < 0 ||
        (r = write_blob_buf(c, c->out->digest, man, man_len, "manifest", err)) < 0)
        return r;
    const char *mt = c->out->recompressed || !in->media_type[0] ? SBX_MT_OCI_MANIFEST : in->media_type;
    if ((r = write_index(d->lock_fd, mt, c->out->digest, man_len, in, c->o, err)) < 0)
        return r;
    if ((r = sync_dirs(d, err)) < 0 || (r = check_cancel(c->ctx, err)) < 0)
        return r;
    if (renameat2(AT_FDCWD, d->tmp, AT_FDCWD, d->path, RENAME_NOREPLACE) < 0)
        return errno == EEXIST
                   ? sbx_error_set(err, SBX_EINVAL, "exporting: '%s' was created by someone else "
                                   "meanwhile", d->path)
                   : sbx_error_sys(err, SBX_EIO, errno, "exporting: renaming '%s' to '%s'",
                                   d->tmp, d->path);
    free(d->tmp);
    d->tmp = NULL;
    sbx_error fe = SBX_ERROR_INIT;
    sbx__fsync_dir(d->parent, &fe);
    return 0;
}

static int check_manifest_type(const sbx_image *in, sbx_error *err)
{
    if (!in->media_type[0] || !strcmp(in->media_type, SBX_MT_OCI_MANIFEST) ||
        !strcmp(in->media_type, SBX_MT_DOCKER_MANIFEST))
        return 0;
    return sbx_error_set(err, SBX_EUNSUPPORTED, "exporting: manifest '%s' is '%s', not an image "
                         "manifest this can export", in->digest, in->media_type);
}

static int run(sbx_export_result *out, sbx_store *s, const char *image, rfs_outdir *d,
               const sbx_export_options *o, sbx_error *err)
{
    sbx_image *in = NULL;
    int r = rfs_open_image(&in, s, image, o->platform, "exporting", err);
    if (r < 0)
        return r;
    sbx_layer_info *infos = NULL;
    char *man = NULL;
    size_t man_len = 0;
    exporter c = {.s = s, .o = o, .ctx = d->ctx, .blobs_fd = -1, .out = out};
    if ((r = check_manifest_type(in, err)) < 0)
        goto done;
    snprintf(out->stored_digest, sizeof out->stored_digest, "%s", in->digest);
    bool same;
    if (!(infos = calloc(in->nlayers + 1, sizeof *infos))) {
        r = sbx_error_set(err, SBX_ENOMEM, "exporting: out of memory");
        goto done;
    }
    if ((r = layer_infos(infos, &same, s, in, d->ctx, err)) < 0)
        goto done;
    if (same && !strcmp(in->media_type, SBX_MT_DOCKER_MANIFEST))
        same = false; /* an OCI layout holds OCI manifests */
    if (same) {
        man = in->manifest_raw;
        man_len = in->manifest_len;
        snprintf(out->digest, sizeof out->digest, "%s", in->digest);
    } else {
        if ((r = rereference(&man, &man_len, in, infos, err)) < 0)
            goto done;
        sbx__sha256_buf(man, man_len, out->digest);
        out->recompressed = true;
    }
    if ((r = check_cancel(d->ctx, err)) < 0 || (r = rfs_outdir_make_tmp(d, err)) < 0)
        goto done;
    if ((r = write_layout(&c, d, in, infos, man, man_len, err)) < 0)
        goto done;
    sbx_error fe = SBX_ERROR_INIT;
    sbx_store_touch(s, out->stored_digest, &fe);
    sbx__progress(d->ctx, "layout", "done", out->bytes, out->bytes);
done:
    if (c.blobs_fd >= 0)
        close(c.blobs_fd);
    if (in && man != in->manifest_raw)
        free(man);
    free(infos);
    sbx_image_close(in);
    return r;
}

struct call {
    sbx_export_result *out;
    sbx_store *s;
    const char *image;
    const sbx_export_options *o;
};

static int work(rfs_outdir *d, void *ud, sbx_error *err)
{
    struct call *c = ud;
    return run(c->out, c->s, c->image, d, c->o, err);
}

int sbx_rootfs_export(sbx_export_result *out, sbx_store *store, const char *image,
                      const char *dir, const sbx_export_options *opts, sbx_ctx *ctx,
                      sbx_error *err)
{
    static const sbx_export_options defaults = SBX_EXPORT_OPTIONS_INIT;
    const sbx_export_options *o = opts ? opts : &defaults;
    memset(out, 0, sizeof *out);
    if (!image || !*image || !dir || !*dir)
        return sbx_error_set(err, SBX_EINVAL, "exporting: an image and a directory are needed");
    struct call c = {out, store, image, o};
    return rfs_outdir_run(dir, "exporting", "export", check_dest, work, &c, ctx, err);
}
