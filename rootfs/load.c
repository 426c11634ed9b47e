/* sbx_rootfs_load: images made by other tools into the store.
 *
 * Sources: an OCI image layout directory (skopeo copy oci:, umoci, buildah
 * push oci:), an OCI archive (the same as a tar), or a docker-archive tar
 * (docker save, podman save, skopeo copy docker-archive:).  A tar is first
 * extracted into a scratch dir of the store, file by file, refusing any
 * name that is not a plain relative path (no "..", no links, no devices).
 *
 * Trust: every blob is checked against its descriptor's digest and size, the
 * config against its digest, and every layer's uncompressed stream against
 * the config's diff_id, all before anything is stored: a bad source is a
 * clear error and the store gets nothing.  Then the layers are stored (by
 * diff_id: a gzip or zstd file as it is, which the store's writer
 * decompresses and checks again, a plain tar compressed as zstd; their
 * compressed form recorded as a source), the config, and
 * the manifest: an OCI layout's exact manifest bytes (its digest kept), or
 * for a docker-archive, which has no manifest, the OCI manifest
 * sbx_image_write makes over the stored layers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

#include "archive_lazy.h"
#include "rootfs_internal.h"
#include "sbx/image.h"

#define LOAD_INDEX_MAX (4u << 20)

typedef int (*chunk_fn)(void *ud, const void *buf, size_t len, sbx_error *err);

/* ---- reading blobs ------------------------------------------------------------ */

static char *blob_file(const char *root, const char *digest)
{
    if (!sbx__digest_valid(digest))
        return NULL;
    return sbx__strdup_printf("%s/blobs/sha256/%s", root, digest + 7);
}

/* The whole blob, checked against digest (and size when known). */
static int read_blob(char **out, size_t *len, const char *root, const char *digest,
                     int64_t size, size_t max, const char *what, sbx_error *err)
{
    _cleanup_free_ char *p = blob_file(root, digest);
    if (!p)
        return sbx_error_set(err, SBX_EINVAL, "loading: %s has a bad digest '%s'", what, digest);
    if (sbx__read_file(out, len, p, max, err) < 0)
        return sbx_error_wrap(err, "loading %s", what);
    char got[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(*out, *len, got);
    if (strcmp(got, digest) != 0 || (size >= 0 && (int64_t)*len != size)) {
        free(*out);
        *out = NULL;
        return sbx_error_set(err, SBX_EDIGEST, "loading: %s '%s' does not match its digest or "
                             "size (it hashes to %s)", what, digest, got);
    }
    return 0;
}

static int stream_decompressed(int fd, const char *path, const char *what, uint64_t max,
                               chunk_fn fn, void *ud, sbx_ctx *ctx, sbx_error *err);

/* Stream a layer file, decompressed (gzip, zstd or none, by its bytes), to
 * fn, once the file's own sha256 is expect (when given); no further than a
 * pulled layer of its size may expand (sbx__expansion_cap). */
static int layer_stream(const char *path, const char *expect, chunk_fn fn, void *ud,
                        sbx_ctx *ctx, sbx_error *err)
{
    char digest_out[SBX_DIGEST_BUFSZ];
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sbx_error_sys(err, errno == ENOENT ? SBX_ENOTFOUND : SBX_EIO, errno,
                             "loading: opening '%s'", path);
    /* the file's own digest first (a separate read: libarchive reads ahead) */
    _cleanup_sha256_ sbx__sha256 *h = NULL;
    if (sbx__sha256_new(&h, err) < 0)
        return err->code;
    char buf[65536];
    ssize_t n;
    uint64_t size = 0;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        sbx__sha256_update(h, buf, (size_t)n);
        size += (uint64_t)n;
    }
    if (n < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "loading: reading '%s'", path);
    sbx__sha256_final(h, digest_out);
    if (expect && strcmp(expect, digest_out) != 0)
        return sbx_error_set(err, SBX_EDIGEST, "loading: '%s' does not match its digest '%s' "
                             "(it hashes to %s)", path, expect, digest_out);
    if (lseek(fd, 0, SEEK_SET) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "loading: '%s'", path);
    return stream_decompressed(fd, path, "loading", sbx__expansion_cap(size, ctx), fn, ud, ctx,
                               err);
}

/* fd's bytes, decompressed (gzip, zstd or none, by its bytes), to fn, at
 * most max of them (SBX_ELIMIT past that); messages start with what and
 * name path. */
static int stream_decompressed(int fd, const char *path, const char *what, uint64_t max,
                               chunk_fn fn, void *ud, sbx_ctx *ctx, sbx_error *err)
{
    uint64_t total = 0;
    if (rfs_archive_load(err) < 0)
        return err->code;
    struct archive *a = archive_read_new();
    if (!a)
        return sbx_error_set(err, SBX_ENOMEM, "%s: out of memory", what);
    int rc = 0;
    struct archive_entry *e;
    if (archive_read_support_filter_gzip(a) != ARCHIVE_OK ||
        archive_read_support_filter_zstd(a) != ARCHIVE_OK ||
        archive_read_support_filter_none(a) != ARCHIVE_OK ||
        archive_read_support_format_raw(a) != ARCHIVE_OK ||
        archive_read_open_fd(a, fd, 65536) != ARCHIVE_OK ||
        archive_read_next_header(a, &e) != ARCHIVE_OK)
        rc = sbx_error_set(err, SBX_EINVAL, "%s: '%s' is not a tar, gzip or zstd file: %s", what,
                           path, archive_error_string(a));
    while (rc == 0) {
        const void *b;
        size_t len;
        la_int64_t off;
        int r = archive_read_data_block(a, &b, &len, &off);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK) {
            rc = sbx_error_set(err, SBX_EINVAL, "%s: decompressing '%s': %s", what, path,
                               archive_error_string(a));
            break;
        }
        if (len > max - total) {
            rc = sbx_error_set(err, SBX_ELIMIT, "%s: '%s' expands past %llu bytes (a "
                               "decompression bomb?  SBX_MAX_EXPANSION, SBX_EXPANSION_FLOOR)",
                               what, path, (unsigned long long)max);
            break;
        }
        total += len;
        if ((rc = sbx__check_cancel(ctx, err)) == 0)
            rc = fn(ud, b, len, err);
    }
    archive_read_free(a);
    return rc;
}

static int fd_chunk(void *ud, const void *buf, size_t len, sbx_error *err)
{
    return sbx__write_all(*(int *)ud, buf, len, err);
}

int sbx_rootfs_decompress_fd(int in, int out, uint64_t max_bytes, const char *name,
                             sbx_ctx *ctx, sbx_error *err)
{
    return stream_decompressed(in, name, "decompressing", max_bytes, fd_chunk, &out, ctx, err);
}

static int hash_chunk(void *ud, const void *buf, size_t len, sbx_error *err)
{
    (void)err;
    sbx__sha256_update(ud, buf, len);
    return 0;
}

static int store_chunk(void *ud, const void *buf, size_t len, sbx_error *err)
{
    return sbx_layer_writer_write(ud, buf, len, err);
}

/* ---- the image to load, whatever the source ------------------------------------ */

typedef struct src_layer {
    char *path;
    char digest[SBX_DIGEST_BUFSZ]; /* the file's (an OCI descriptor's, checked) */
    char media_type[128];
    char diff_id[SBX_DIGEST_BUFSZ];
} src_layer;

typedef struct src_image {
    char *config;
    size_t config_len;
    char *manifest; /* NULL for a docker-archive */
    size_t manifest_len;
    char manifest_type[128];
    char manifest_digest[SBX_DIGEST_BUFSZ];
    src_layer *layers;
    size_t nlayers;
    char *name; /* the source's own name for it, or NULL */
} src_image;

static void src_free(src_image *si)
{
    free(si->config);
    free(si->manifest);
    for (size_t i = 0; i < si->nlayers; i++)
        free(si->layers[i].path);
    free(si->layers);
    free(si->name);
    memset(si, 0, sizeof *si);
}

static int diff_ids(src_image *si, size_t want, sbx_error *err)
{
    sbx_image_config c;
    if (sbx_image_config_parse(&c, si->config, si->config_len, err) < 0)
        return sbx_error_wrap(err, "loading the image config");
    int rc = 0;
    if (c.ndiff_ids != want)
        rc = sbx_error_set(err, SBX_EINVAL, "loading: the config lists %zu layers, the image "
                           "%zu", c.ndiff_ids, want);
    for (size_t i = 0; rc == 0 && i < want; i++)
        snprintf(si->layers[i].diff_id, SBX_DIGEST_BUFSZ, "%s", c.diff_ids[i]);
    sbx_image_config_free(&c);
    return rc;
}

/* OCI image layout at root: index.json -> (index ->) image manifest. */
static int from_layout(src_image *si, const char *root, const char *platform, sbx_error *err)
{
    _cleanup_free_ char *ipath = sbx__strdup_printf("%s/index.json", root);
    _cleanup_free_ char *ibuf = NULL;
    size_t ilen = 0;
    if (!ipath || sbx__read_file(&ibuf, &ilen, ipath, LOAD_INDEX_MAX, err) < 0)
        return sbx_error_wrap(err, "loading the OCI layout '%s'", root);
    sbx_manifest idx;
    if (sbx_manifest_parse(&idx, SBX_MT_OCI_INDEX, ibuf, ilen, err) < 0)
        return sbx_error_wrap(err, "loading '%s'", ipath);
    int rc = 0;
    if (idx.kind != SBX_MANIFEST_INDEX || idx.nentries == 0)
        rc = sbx_error_set(err, SBX_EINVAL, "loading: '%s' lists no image", ipath);
    /* the layout's own name for it: the annotation skopeo and umoci write */
    json_error_t je;
    json_t *ij = rc == 0 ? json_loadb(ibuf, ilen, 0, &je) : NULL;
    const char *refname = json_string_value(json_object_get(
        json_object_get(json_array_get(json_object_get(ij, "manifests"), 0), "annotations"),
        "org.opencontainers.image.ref.name"));
    if (refname && idx.nentries == 1)
        si->name = strdup(refname);
    json_decref(ij);
    sbx_descriptor d = idx.nentries ? idx.entries[0] : (sbx_descriptor){0};
    if (rc == 0 && idx.nentries > 1) {
        sbx_platform want;
        const sbx_descriptor *pick = NULL;
        if (platform ? sbx_platform_parse(&want, platform, err) < 0 : (sbx_platform_host(&want), 0))
            rc = err->code;
        if (rc == 0 && (rc = sbx_manifest_pick(&pick, &idx, &want, err)) == 0)
            d = *pick;
    }
    sbx_manifest_free(&idx);
    /* the manifest (or a nested index: then the platform's entry) */
    for (int depth = 0; rc == 0; depth++) {
        free(si->manifest);
        si->manifest = NULL;
        if ((rc = read_blob(&si->manifest, &si->manifest_len, root, d.digest, (int64_t)d.size,
                            SBX_MANIFEST_MAX, "manifest", err)) < 0)
            break;
        sbx_manifest m;
        if ((rc = sbx_manifest_parse(&m, d.media_type, si->manifest, si->manifest_len, err)) < 0)
            break;
        if (m.kind == SBX_MANIFEST_INDEX && depth == 0) {
            sbx_platform want;
            const sbx_descriptor *pick = NULL;
            if (platform ? sbx_platform_parse(&want, platform, err) < 0
                         : (sbx_platform_host(&want), 0))
                rc = err->code;
            if (rc == 0 && (rc = sbx_manifest_pick(&pick, &m, &want, err)) == 0)
                d = *pick;
            sbx_manifest_free(&m);
            continue;
        }
        if (m.kind != SBX_MANIFEST_IMAGE) {
            sbx_manifest_free(&m);
            rc = sbx_error_set(err, SBX_EINVAL, "loading: '%s' is not an image manifest",
                               d.digest);
            break;
        }
        snprintf(si->manifest_digest, sizeof si->manifest_digest, "%s", d.digest);
        snprintf(si->manifest_type, sizeof si->manifest_type, "%s", m.media_type);
        rc = read_blob(&si->config, &si->config_len, root, m.config.digest,
                       (int64_t)m.config.size, SBX_CONFIG_MAX, "config", err);
        if (rc == 0 && !(si->layers = calloc(m.nlayers + 1, sizeof *si->layers)))
            rc = sbx_error_set(err, SBX_ENOMEM, "loading: out of memory");
        for (size_t i = 0; rc == 0 && i < m.nlayers; i++) {
            src_layer *l = &si->layers[si->nlayers++];
            if (!(l->path = blob_file(root, m.layers[i].digest)))
                rc = sbx_error_set(err, SBX_EINVAL, "loading: layer %zu has a bad digest", i + 1);
            snprintf(l->digest, sizeof l->digest, "%s", m.layers[i].digest);
            snprintf(l->media_type, sizeof l->media_type, "%s", m.layers[i].media_type);
        }
        if (rc == 0)
            rc = diff_ids(si, m.nlayers, err);
        sbx_manifest_free(&m);
        break;
    }
    return rc;
}

/* A path inside an archive that is safe to make under root. */
static bool plain_name(const char *p)
{
    if (!*p || p[0] == '/' || strlen(p) > 512)
        return false;
    for (const char *s = p; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-' || *s == '/' || *s == ':' || *s == '+'))
            return false;
    return !strstr(p, "..") && strcmp(p, ".") != 0;
}

/* docker save's manifest.json -> config, layer files, RepoTags[0]. */
static int from_docker_archive(src_image *si, const char *root, sbx_error *err)
{
    _cleanup_free_ char *mpath = sbx__strdup_printf("%s/manifest.json", root);
    _cleanup_free_ char *mbuf = NULL;
    size_t mlen = 0;
    if (!mpath || sbx__read_file(&mbuf, &mlen, mpath, LOAD_INDEX_MAX, err) < 0)
        return sbx_error_wrap(err, "loading the docker archive");
    json_error_t je;
    json_t *j = json_loadb(mbuf, mlen, 0, &je);
    json_t *img = json_array_get(j, 0);
    const char *cfg = json_string_value(json_object_get(img, "Config"));
    json_t *layers = json_object_get(img, "Layers");
    int rc = 0;
    if (!cfg || !json_is_array(layers) || !plain_name(cfg))
        rc = sbx_error_set(err, SBX_EINVAL, "loading: '%s' is not a docker save manifest", mpath);
    else if (json_array_size(j) > 1)
        rc = sbx_error_set(err, SBX_EUNSUPPORTED, "loading: the archive holds %zu images; load "
                           "takes one", json_array_size(j));
    const char *tag = json_string_value(json_array_get(json_object_get(img, "RepoTags"), 0));
    if (rc == 0 && tag)
        si->name = strdup(tag);
    if (rc == 0) {
        _cleanup_free_ char *cpath = sbx__strdup_printf("%s/%s", root, cfg);
        if (!cpath || sbx__read_file(&si->config, &si->config_len, cpath, SBX_CONFIG_MAX, err) < 0)
            rc = sbx_error_wrap(err, "loading the image config '%s'", cfg);
    }
    size_t n = json_array_size(layers);
    if (rc == 0 && !(si->layers = calloc(n + 1, sizeof *si->layers)))
        rc = sbx_error_set(err, SBX_ENOMEM, "loading: out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *p = json_string_value(json_array_get(layers, i));
        if (!p || !plain_name(p)) {
            rc = sbx_error_set(err, SBX_EINVAL, "loading: layer %zu has a bad path", i + 1);
            break;
        }
        src_layer *l = &si->layers[si->nlayers++];
        l->path = sbx__strdup_printf("%s/%s", root, p);
        snprintf(l->media_type, sizeof l->media_type, "%s", SBX_MT_DOCKER_LAYER);
        if (!l->path)
            rc = sbx_error_set(err, SBX_ENOMEM, "loading: out of memory");
    }
    json_decref(j);
    if (rc == 0)
        rc = diff_ids(si, n, err);
    return rc;
}

/* entry's symlink target, resolved inside the archive (docker-archive
 * writes <id>/layer.tar -> ../<digest>.tar): "" when it leaves it. */
static void resolve_inside(char *out, size_t len, const char *entry, const char *target)
{
    char buf[1200];
    const char *slash = strrchr(entry, '/');
    snprintf(buf, sizeof buf, "%.*s%s%s", slash ? (int)(slash - entry) : 0, entry,
             slash ? "/" : "", target);
    char *parts[64];
    size_t n = 0;
    out[0] = '\0';
    for (char *save = NULL, *p = strtok_r(buf, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
        if (!strcmp(p, "."))
            continue;
        if (!strcmp(p, "..")) {
            if (n == 0)
                return; /* above the archive's root */
            n--;
            continue;
        }
        if (n == SBX_ARRAY_LEN(parts))
            return;
        parts[n++] = p;
    }
    size_t w = 0;
    for (size_t i = 0; i < n && w < len; i++)
        w += (size_t)snprintf(out + w, len - w, "%s%s", i ? "/" : "", parts[i]);
    if (w >= len || !plain_name(out))
        out[0] = '\0';
}

/* Extract a tar into dir, plain files and directories only (a symlink to
 * a file inside the archive becomes a hardlink to it). */
static int extract(const char *tarpath, const char *dir, sbx_error *err)
{
    _cleanup_close_ int fd = open(tarpath, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sbx_error_sys(err, errno == ENOENT ? SBX_ENOTFOUND : SBX_EIO, errno,
                             "loading: opening '%s'", tarpath);
    struct archive *a = archive_read_new();
    if (!a)
        return sbx_error_set(err, SBX_ENOMEM, "loading: out of memory");
    int rc = 0;
    if (archive_read_support_format_tar(a) != ARCHIVE_OK ||
        archive_read_support_format_gnutar(a) != ARCHIVE_OK ||
        archive_read_open_fd(a, fd, 65536) != ARCHIVE_OK)
        rc = sbx_error_set(err, SBX_EINVAL, "loading: '%s': %s", tarpath,
                           archive_error_string(a));
    struct archive_entry *e;
    int r;
    char(*links)[2][600] = calloc(64, sizeof *links); /* on the heap: a host thread's stack is small */
    size_t nlinks = 0;
    if (!links)
        rc = sbx_error_set(err, SBX_ENOMEM, "loading: out of memory");
    while (rc == 0 && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        while (name && !strncmp(name, "./", 2))
            name += 2;
        unsigned type = archive_entry_filetype(e);
        if (!name || !*name || (type == AE_IFDIR && !strcmp(name, "")))
            continue;
        char clean[600];
        snprintf(clean, sizeof clean, "%s", name);
        for (size_t l = strlen(clean); l > 0 && clean[l - 1] == '/'; l--)
            clean[l - 1] = '\0';
        if (type == AE_IFLNK && plain_name(clean) && nlinks < 64) {
            const char *t = archive_entry_symlink(e);
            resolve_inside(links[nlinks][1], sizeof links[nlinks][1], clean, t ? t : "");
            if (links[nlinks][1][0]) {
                snprintf(links[nlinks][0], sizeof links[nlinks][0], "%s", clean);
                nlinks++;
                continue;
            }
        }
        if (!plain_name(clean) || (type != AE_IFREG && type != AE_IFDIR)) {
            rc = sbx_error_set(err, SBX_EINVAL, "loading: '%s' holds '%s', which is not a plain "
                               "file or directory name an image archive has", tarpath, name);
            break;
        }
        _cleanup_free_ char *p = sbx__strdup_printf("%s/%s", dir, clean);
        if (!p) {
            rc = sbx_error_set(err, SBX_ENOMEM, "loading: out of memory");
            break;
        }
        char *slash = strrchr(p, '/');
        *slash = '\0';
        rc = sbx__mkdir_p(p, 0700, err);
        *slash = '/';
        if (rc < 0 || type == AE_IFDIR) {
            if (rc == 0 && mkdir(p, 0700) < 0 && errno != EEXIST)
                rc = sbx_error_sys(err, SBX_EIO, errno, "loading: creating '%s'", p);
            continue;
        }
        _cleanup_close_ int out = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                       0600);
        if (out < 0) {
            rc = sbx_error_sys(err, SBX_EINVAL, errno, "loading: '%s' twice, or unwritable", clean);
            break;
        }
        for (;;) {
            const void *b;
            size_t len;
            la_int64_t off;
            int d = archive_read_data_block(a, &b, &len, &off);
            if (d == ARCHIVE_EOF)
                break;
            if (d != ARCHIVE_OK) {
                rc = sbx_error_set(err, SBX_EINVAL, "loading: reading '%s': %s", tarpath,
                                   archive_error_string(a));
                break;
            }
            if (pwrite(out, b, len, off) != (ssize_t)len) {
                rc = sbx_error_sys(err, sbx__errno_code(errno), errno, "loading: writing '%s'",
                                   p);
                break;
            }
        }
    }
    if (rc == 0 && r != ARCHIVE_EOF)
        rc = sbx_error_set(err, SBX_EINVAL, "loading: '%s' is not a whole tar: %s", tarpath,
                           archive_error_string(a));
    archive_read_free(a);
    for (size_t i = 0; rc == 0 && i < nlinks; i++) {
        _cleanup_free_ char *from = sbx__strdup_printf("%s/%s", dir, links[i][1]);
        _cleanup_free_ char *to = sbx__strdup_printf("%s/%s", dir, links[i][0]);
        struct stat st;
        if (!from || !to)
            rc = sbx_error_set(err, SBX_ENOMEM, "loading: out of memory");
        else if (lstat(from, &st) < 0 || !S_ISREG(st.st_mode))
            rc = sbx_error_set(err, SBX_EINVAL, "loading: '%s' in '%s' links to '%s', which "
                               "the archive does not hold as a file", links[i][0], tarpath,
                               links[i][1]);
        else if ((rc = sbx__mkdir_p(to, 0700, err)) == 0 && rmdir(to) == 0 && link(from, to) < 0)
            rc = sbx_error_sys(err, SBX_EIO, errno, "loading: linking '%s'", links[i][0]);
    }
    free(links);
    return rc;
}

/* ---- check everything, then store --------------------------------------------- */

static int verify_layers(const src_image *si, bool check_file_digest, sbx_ctx *ctx,
                         sbx_error *err)
{
    for (size_t i = 0; i < si->nlayers; i++) {
        const src_layer *l = &si->layers[i];
        _cleanup_sha256_ sbx__sha256 *h = NULL;
        char got[SBX_DIGEST_BUFSZ];
        char id[96];
        snprintf(id, sizeof id, "layer %zu/%zu %.19s", i + 1, si->nlayers, l->diff_id);
        sbx__progress(ctx, id, "verify", 0, 0);
        if (sbx__sha256_new(&h, err) < 0 ||
            layer_stream(l->path, check_file_digest ? l->digest : NULL, hash_chunk, h, ctx,
                         err) < 0)
            return sbx_error_wrap(err, "loading layer %zu/%zu", i + 1, si->nlayers);
        sbx__sha256_final(h, got);
        if (strcmp(got, l->diff_id) != 0)
            return sbx_error_set(err, SBX_EDIGEST, "loading: layer %zu/%zu does not match the "
                                 "config's diff_id '%s' (it is %s)", i + 1, si->nlayers,
                                 l->diff_id, got);
    }
    return 0;
}

typedef struct {
    const char *path;
    uint64_t n, max;
} tar_count;

/* The tar of a compressed file being stored: no further than a pulled
 * layer of its size may expand (verify_layers checked the same file). */
static int count_tar(void *ud, const void *tar, size_t len, sbx_error *err)
{
    (void)tar;
    tar_count *c = ud;
    c->n += len;
    if (c->n > c->max)
        return sbx_error_set(err, SBX_ELIMIT, "loading: '%s' expands past %llu bytes",
                             c->path, (unsigned long long)c->max);
    return 0;
}

/* A gzip or zstd file goes to the writer as it is (stored as it is; *kept
 * says so, and *refused that the writer's decoder refused it); a plain tar
 * is compressed by it. */
static int write_layer(sbx_layer_writer *w, const src_layer *l, bool *kept, bool *refused,
                       sbx_ctx *ctx, sbx_error *err)
{
    _cleanup_close_ int fd = open(l->path, O_RDONLY | O_CLOEXEC);
    unsigned char buf[1u << 16];
    ssize_t n = fd < 0 ? -1 : pread(fd, buf, 4, 0);
    struct stat st;
    if (n < 0 || fstat(fd, &st) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "loading: reading '%s'", l->path);
    int fmt = *kept ? sbx_layer_sniff(buf, (size_t)n) : -1;
    *kept = fmt >= 0;
    if (fmt < 0)
        return layer_stream(l->path, NULL, store_chunk, w, ctx, err);
    tar_count c = {l->path, 0, sbx__expansion_cap((uint64_t)st.st_size, ctx)};
    if (sbx_layer_writer_compressed_input(w, (sbx_layer_format)fmt, count_tar, &c, err) < 0)
        return err->code;
    while ((n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "loading: reading '%s'", l->path);
        if (sbx__check_cancel(ctx, err) < 0)
            return err->code;
        if (sbx_layer_writer_write(w, buf, (size_t)n, err) < 0) {
            *refused = true;
            return err->code;
        }
    }
    char got[SBX_DIGEST_BUFSZ];
    if (sbx_layer_writer_input_digest(w, got, err) < 0)
        return err->code;
    if (sbx__digest_valid(l->digest) && strcmp(got, l->digest) != 0)
        return sbx_error_set(err, SBX_EDIGEST, "loading: '%s' changed while it was loaded (it "
                             "hashes to %s, not %s)", l->path, got, l->digest);
    return 0;
}

/* Store one verified layer; a file the writer does not keep as it is
 * (gzip with padding after its last member, which libarchive reads past)
 * is stored from its tar instead. */
static int store_layer(sbx_store *s, const src_layer *l, size_t i, size_t n, sbx_ctx *ctx,
                       sbx_error *err)
{
    for (bool keep = true;; keep = false) {
        sbx_layer_writer *w = NULL;
        if (sbx_store_layer_begin(&w, s, l->diff_id, err) < 0)
            return err->code;
        bool kept = keep, refused = false;
        int rc = write_layer(w, l, &kept, &refused, ctx, err);
        if (rc < 0) {
            sbx_layer_writer_abort(w);
        } else {
            rc = sbx_layer_writer_commit(w, NULL, err);
            refused = rc < 0; /* a stream cut short, or not the tar libarchive read */
        }
        /* the writer's own refusal of the stream, not a file that changed
         * since it was verified */
        if (rc == SBX_EDIGEST && kept && refused) {
            sbx__log(ctx, SBX_LOG_INFO, "loading layer %zu/%zu: not stored as it is (%s); "
                     "storing its tar", i + 1, n, err->msg);
            sbx_error_clear(err);
            continue;
        }
        return rc < 0 ? sbx_error_wrap(err, "loading layer %zu/%zu", i + 1, n) : 0;
    }
}

static int store_image(sbx_load_result *out, sbx_store *s, src_image *si, sbx_ctx *ctx,
                       sbx_error *err)
{
    for (size_t i = 0; i < si->nlayers; i++) {
        src_layer *l = &si->layers[i];
        char id[96];
        snprintf(id, sizeof id, "layer %zu/%zu %.19s", i + 1, si->nlayers, l->diff_id);
        /* an unchecked layer another image claimed counts only if it checks out */
        int have = sbx_store_layer_trusted(s, l->diff_id, err);
        if (have < 0)
            return have;
        sbx__progress(ctx, id, have ? "present" : "store", 0, 0);
        if (!have && store_layer(s, l, i, si->nlayers, ctx, err) < 0)
            return err->code;
        out->layers++;
    }
    char cfg[SBX_DIGEST_BUFSZ];
    if (sbx_store_put_blob(s, si->config, si->config_len, SBX_MT_OCI_CONFIG, NULL, cfg, err) < 0)
        return sbx_error_wrap(err, "loading the config");
    if (!si->manifest) /* a docker-archive: the OCI manifest over the stored layers */
        return sbx_image_write(out->digest, s, si->config, si->config_len, err);
    /* the layout's exact manifest, its compressed forms recorded as sources */
    sbx_store_child *kids = calloc(si->nlayers + 1, sizeof *kids);
    if (!kids)
        return sbx_error_set(err, SBX_ENOMEM, "loading: out of memory");
    kids[0] = (sbx_store_child){SBX_CHILD_BLOB, cfg};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < si->nlayers; i++) {
        kids[i + 1] = (sbx_store_child){SBX_CHILD_LAYER, si->layers[i].diff_id};
        struct stat st;
        if (stat(si->layers[i].path, &st) == 0)
            rc = sbx_store_layer_add_source(s, si->layers[i].diff_id, si->layers[i].digest,
                                            si->layers[i].media_type, (uint64_t)st.st_size, err);
    }
    if (rc == 0)
        rc = sbx_store_put_manifest(s, si->manifest, si->manifest_len, si->manifest_type,
                                    si->manifest_digest, kids, si->nlayers + 1, out->digest, err);
    free(kids);
    return rc;
}

static int load_from(sbx_load_result *out, sbx_store *s, const char *root, bool layout,
                     const sbx_load_options *o, sbx_ctx *ctx, sbx_error *err)
{
    src_image si = {0};
    int rc = layout ? from_layout(&si, root, o->platform, err)
                    : from_docker_archive(&si, root, err);
    if (rc == 0)
        rc = verify_layers(&si, layout, ctx, err);
    const char *name = o->tag ? o->tag : si.name;
    sbx_ref ref;
    if (rc == 0 && !name)
        rc = sbx_error_set(err, SBX_EINVAL, "loading: the source names no image; give it a name "
                           "(--tag NAME)");
    if (rc == 0 && sbx_ref_parse(&ref, name, err) < 0)
        rc = sbx_error_wrap(err, "loading: the name '%s'", name);
    if (rc == 0)
        rc = store_image(out, s, &si, ctx, err);
    if (rc == 0) {
        snprintf(out->name, sizeof out->name, "%s", ref.str);
        out->recompressed = !si.manifest;
        rc = sbx_store_name_set(s, out->name, out->digest, err);
    }
    src_free(&si);
    return rc;
}

int sbx_rootfs_load(sbx_load_result *out, sbx_store *s, const char *source,
                    const sbx_load_options *opts, sbx_ctx *ctx, sbx_error *err)
{
    static const sbx_load_options defaults = SBX_LOAD_OPTIONS_INIT;
    const sbx_load_options *o = opts ? opts : &defaults;
    memset(out, 0, sizeof *out);
    if (!source || !*source)
        return sbx_error_set(err, SBX_EINVAL, "loading: give a layout directory or an archive");
    int rc = rfs_archive_load(err);
    if (rc < 0)
        return sbx_error_wrap(err, "loading");
    struct stat st;
    if (stat(source, &st) < 0)
        return sbx_error_sys(err, errno == ENOENT ? SBX_ENOTFOUND : SBX_EIO, errno,
                             "loading: '%s'", source);
    sbx_scratch *sc = NULL;
    const char *root = source;
    if (!S_ISDIR(st.st_mode)) {
        if ((rc = sbx_store_scratch_new(&sc, s, "load", 0, err)) < 0)
            return sbx_error_wrap(err, "loading");
        root = sbx_scratch_path(sc);
        rc = extract(source, root, err);
    }
    _cleanup_free_ char *marker = sbx__strdup_printf("%s/oci-layout", root);
    _cleanup_free_ char *docker = sbx__strdup_printf("%s/manifest.json", root);
    bool layout = marker && access(marker, F_OK) == 0;
    if (rc == 0 && !layout && (!docker || access(docker, F_OK) != 0))
        rc = sbx_error_set(err, SBX_EINVAL, "loading: '%s' is neither an OCI layout (no "
                           "oci-layout) nor a docker archive (no manifest.json)", source);
    if (rc == 0)
        rc = load_from(out, s, root, layout, o, ctx, err);
    sbx_error fe = SBX_ERROR_INIT;
    sbx_scratch_free(sc, &fe);
    if (rc < 0 && !err->where[0])
        sbx_error_where(err, "%s", source);
    return rc;
}
