/* sbx-image: the OCI image model.
 *
 * What every other module agrees on about images: references and
 * platforms, the one table of media types, manifests, indexes and configs
 * (parsed from untrusted bytes, written deterministically), and images in
 * the store opened by name, ref or digest.
 *
 * Trust: the parsers take bytes from registries, archives and the store.
 * Sizes are checked before anything is allocated for them (SBX_*_MAX), every
 * digest is validated, and a document that contradicts its media type is
 * refused.  Nothing here touches the network.
 */
#ifndef SBX_IMAGE_H
#define SBX_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbx/error.h"
#include "sbx/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- references ----------------------------------------------------------- */

/* Limits from the Docker reference grammar. */
#define SBX_REF_DOMAIN_MAX 255
#define SBX_REF_PATH_MAX 255
#define SBX_REF_TAG_MAX 128

/* A parsed, normalized image reference (a value type: no free needed). */
typedef struct sbx_ref {
    char domain[SBX_REF_DOMAIN_MAX + 1]; /* "docker.io", "127.0.0.1:5000", "[::1]:5000" */
    char path[SBX_REF_PATH_MAX + 1];     /* "library/node", "a/b" */
    char tag[SBX_REF_TAG_MAX + 1];       /* "22"; "latest" when neither tag nor digest given;
                                            "" for a digest-only ref */
    char digest[SBX_DIGEST_BUFSZ];       /* "sha256:..." or "" ; when set it wins over tag */
    /* Normalized full form: "docker.io/library/node:22",
     * "host:5000/a/b@sha256:...", "docker.io/library/node:22@sha256:...". */
    char str[SBX_REF_DOMAIN_MAX + SBX_REF_PATH_MAX + SBX_REF_TAG_MAX + SBX_DIGEST_BUFSZ + 4];
} sbx_ref;

/* Parse and normalize a ref as Docker does: "node:22" ->
 * "docker.io/library/node:22"; "index.docker.io" and "registry-1.docker.io"
 * are docker.io; a first component with '.', ':' or "localhost" is a
 * registry host; default tag "latest" unless a digest is given.
 * Returns SBX_EINVAL with a message saying what is wrong (uppercase
 * repository, bad digest, empty component, too long ...), where = the ref. */
SBX_API int sbx_ref_parse(sbx_ref *out, const char *s, sbx_error *err);

/* The manifest reference to ask the registry for: the digest if set, else the tag. */
SBX_API const char *sbx_ref_reference(const sbx_ref *r);

/* ---- platforms ------------------------------------------------------------ */

typedef struct sbx_platform {
    char os[32];           /* "linux" */
    char architecture[32]; /* "amd64", "arm64", "arm" */
    char variant[32];      /* "" or "v8", "v7"; normalized as containerd does */
} sbx_platform;

/* Parse "os/arch[/variant]" (also "arch" alone = linux/arch) and normalize
 * (aarch64 -> arm64, x86_64 -> amd64, arm64 -> arm64/v8, arm -> arm/v7,
 * amd64/v1 -> amd64 ...).  SBX_EINVAL on a malformed string. */
SBX_API int sbx_platform_parse(sbx_platform *out, const char *s, sbx_error *err);
/* The platform of this host, normalized. */
SBX_API void sbx_platform_host(sbx_platform *out);
/* Normalize in place (fields as found in an index or a config). */
SBX_API void sbx_platform_normalize(sbx_platform *p);
/* "linux/arm64/v8" into buf; returns buf. */
SBX_API const char *sbx_platform_format(const sbx_platform *p, char *buf, size_t len);
/* 1 when an image entry `have` (normalized) satisfies the wanted platform. */
SBX_API int sbx_platform_match(const sbx_platform *want, const sbx_platform *have);

/* ---- media types -------------------------------------------------------- */

#define SBX_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define SBX_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define SBX_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define SBX_MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define SBX_MT_OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define SBX_MT_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#define SBX_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define SBX_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define SBX_MT_DOCKER_V1 "application/vnd.docker.distribution.manifest.v1+json"
#define SBX_MT_DOCKER_V1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"
#define SBX_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define SBX_MT_DOCKER_LAYER "application/vnd.docker.image.rootfs.diff.tar"
#define SBX_MT_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"

typedef enum {
    SBX_MEDIA_UNKNOWN = 0,
    SBX_MEDIA_INDEX,    /* OCI index, Docker manifest list */
    SBX_MEDIA_MANIFEST, /* OCI or Docker schema2 image manifest */
    SBX_MEDIA_SCHEMA1,  /* Docker schema1: recognised only to be refused */
    SBX_MEDIA_CONFIG,   /* image config */
    SBX_MEDIA_LAYER,    /* a layer tar, compressed or not */
} sbx_media_kind;

typedef enum {
    SBX_COMP_AUTO = 0, /* unknown: decided from the stream's magic bytes */
    SBX_COMP_NONE,
    SBX_COMP_GZIP,
    SBX_COMP_ZSTD,
} sbx_compression;

typedef struct sbx_media_type {
    const char *name;
    sbx_media_kind kind;
    sbx_compression compression; /* layers */
    bool docker;                 /* a Docker (not OCI) type */
} sbx_media_type;

/* The table's entry for a media type (parameters after ';' ignored), or NULL
 * for a type it does not list. */
SBX_API const sbx_media_type *sbx_media_type_find(const char *media_type);
/* Shortcuts over the table; false/SBX_COMP_AUTO for NULL or unknown types
 * (an unlisted layer type ending in +gzip, .gzip, +zstd or .tar is read by
 * its suffix, as containerd does). */
SBX_API bool sbx_media_is_index(const char *media_type);
SBX_API bool sbx_media_is_manifest(const char *media_type);
SBX_API sbx_compression sbx_media_layer_compression(const char *media_type);
/* The OCI media type of a layer stored in format f (zstd or gzip). */
SBX_API const char *sbx_media_stored_layer(sbx_layer_format f);

/* ---- manifests, indexes, configs ------------------------------------------ */

/* Limits on untrusted documents, checked before anything is allocated. */
#define SBX_MANIFEST_MAX (4u << 20)  /* manifests and indexes, bytes */
#define SBX_CONFIG_MAX (8u << 20)    /* image config JSON, bytes */
#define SBX_MAX_LAYERS 1000
#define SBX_MAX_INDEX_ENTRIES 10000

typedef struct sbx_descriptor {
    char media_type[128];
    char digest[SBX_DIGEST_BUFSZ];
    uint64_t size;
    bool has_platform;
    sbx_platform platform;
} sbx_descriptor;

typedef enum { SBX_MANIFEST_IMAGE = 1, SBX_MANIFEST_INDEX = 2 } sbx_manifest_kind;

typedef struct sbx_manifest {
    sbx_manifest_kind kind;
    char media_type[128];
    sbx_descriptor config;   /* image */
    sbx_descriptor *layers;  /* image */
    size_t nlayers;
    sbx_descriptor *entries; /* index */
    size_t nentries;
} sbx_manifest;

/* Parse manifest or index bytes.  The media type is content_type when it
 * names one of the four supported types (some manifests, umoci's among them,
 * carry no mediaType field), else the document's mediaType, else guessed
 * from its shape.  Errors: SBX_EUNSUPPORTED (schema1, or an unknown type),
 * SBX_EINVAL (malformed; the message says what), SBX_ELIMIT (too many
 * layers or entries).  *out owned by the caller: sbx_manifest_free. */
SBX_API int sbx_manifest_parse(sbx_manifest *out, const char *content_type, const char *body,
                               size_t len, sbx_error *err);
SBX_API void sbx_manifest_free(sbx_manifest *m);
/* The index entry for want (the best match, as containerd ranks them).
 * SBX_ENOPLATFORM when none matches: the message lists the platforms. */
SBX_API int sbx_manifest_pick(const sbx_descriptor **out, const sbx_manifest *index,
                              const sbx_platform *want, sbx_error *err);

typedef struct sbx_image_config {
    sbx_platform platform;
    char **diff_ids;
    size_t ndiff_ids;
} sbx_image_config;

/* Parse an image config: its platform and rootfs.diff_ids.  SBX_EINVAL,
 * SBX_ELIMIT.  *out owned by the caller: sbx_image_config_free. */
SBX_API int sbx_image_config_parse(sbx_image_config *out, const char *body, size_t len,
                                   sbx_error *err);
SBX_API void sbx_image_config_free(sbx_image_config *c);

/* ---- images in the store ------------------------------------------------- */

typedef struct sbx_image_layer {
    char digest[SBX_DIGEST_BUFSZ];  /* the manifest's descriptor (compressed) */
    char diff_id[SBX_DIGEST_BUFSZ]; /* the config's rootfs.diff_ids entry */
    char media_type[128];
    uint64_t size;                  /* compressed size (descriptor) */
} sbx_image_layer;

/* An image opened from the store: read-only, and held by a store lease until
 * sbx_image_close, so gc in any process keeps its manifest, config and
 * layers meanwhile. */
typedef struct sbx_image {
    char name[512];                      /* as asked for */
    char digest[SBX_DIGEST_BUFSZ];       /* the image manifest */
    char media_type[128];
    char index_digest[SBX_DIGEST_BUFSZ]; /* the index it was picked from, or "" */
    char *manifest_raw;                  /* exact bytes */
    size_t manifest_len;
    char config_digest[SBX_DIGEST_BUFSZ];
    char *config_raw;                    /* exact bytes */
    size_t config_len;
    sbx_platform platform;               /* from the config */
    size_t nlayers;
    sbx_image_layer *layers;             /* bottom first */
    sbx_lease *lease;                    /* private */
} sbx_image;

/* What a person's words name in the store (never a registry), in this
 * order: a stored manifest digest; a pinned ref's digest; the name the
 * words normalize to as a ref ("busybox" -> "docker.io/library/
 * busybox:latest", the name pull, build --tag, commit --tag and load set);
 * the words as a literal store name ("recipe:sha256:...", "snapshot:...");
 * a digest prefix of 12 to 63 hex digits (as `images` prints) matching one
 * named image.  digest_out gets the manifest (or index) digest; name_out
 * (may be NULL) the name that matched, "" for a digest.  SBX_ENOTFOUND
 * (where = words), SBX_EINVAL (an ambiguous prefix), store errors. */
SBX_API int sbx_image_lookup(char digest_out[SBX_DIGEST_BUFSZ], char *name_out, size_t name_len,
                             sbx_store *s, const char *words, sbx_error *err);
/* The image manifest digest names for platform ("os/arch[/variant]";
 * NULL: this host): digest itself when it is a manifest, its entry for
 * the platform when it is an index (the entry may not be stored).  Reads
 * without a lease.  SBX_ENOPLATFORM, SBX_EINVAL, store errors. */
SBX_API int sbx_image_platform_manifest(char out[SBX_DIGEST_BUFSZ], sbx_store *s, const char *digest,
                                        const char *platform, sbx_error *err);
/* The store name a tag gives an image (build --tag, commit --tag): its
 * normalized ref ("app" -> "docker.io/library/app:latest").  SBX_EINVAL
 * for a tag that is no ref or that holds a digest. */
SBX_API int sbx_image_tag_name(char *out, size_t len, const char *tag, sbx_error *err);

/* Open `name` from the store only (never a registry): a manifest digest, a
 * pinned ref ("repo@sha256:..."), a ref as pull names it
 * ("docker.io/library/node:22", or any form sbx_ref_parse accepts), or a
 * store name as set by build --tag.  When it names an index, the entry for
 * `platform` ("os/arch[/variant]"; NULL: this host) is opened.  Every
 * document is re-hashed as it is read.  Errors: SBX_ENOTFOUND (no such
 * image; where = name), SBX_ENOPLATFORM (an index without that platform),
 * SBX_EINVAL (not an image manifest, a malformed document or platform),
 * SBX_EDIGEST (a damaged store file), store errors.  *out owned by the
 * caller: sbx_image_close. */
SBX_API int sbx_image_open(sbx_image **out, sbx_store *s, const char *name, const char *platform,
                           sbx_error *err);
/* Release the lease and free.  Accepts NULL. */
SBX_API void sbx_image_close(sbx_image *img);

/* 1 when the manifest `digest` is stored and reads back, else 0.  Takes no
 * lease and writes nothing (unlike sbx_store_has_blob): what a no-op
 * rebuild checks. */
SBX_API int sbx_image_readable(sbx_store *s, const char *digest);

/* Store an image whose layers are all in the store: the config bytes as
 * given, and an OCI manifest whose layer descriptors are the stored forms
 * (zstd, or gzip as pulled) of the config's rootfs.diff_ids.  Same config bytes, same manifest
 * bytes, same digest.  A manifest already stored is not written again.
 * Errors: SBX_ENOTFOUND (a layer is not stored), SBX_EINVAL (a bad config),
 * store errors. */
SBX_API int sbx_image_write(char digest_out[SBX_DIGEST_BUFSZ], sbx_store *s, const char *config,
                            size_t config_len, sbx_error *err);
/* A new config: `config` with diff_id on top of its rootfs.diff_ids and,
 * when the parent's history is in step with its layers, a history entry
 * {created_by, comment (NULL: none)}; everything else (the top-level
 * "created" too) is kept, so the same layer on the same parent always gives
 * the same config.  Compact JSON with sorted keys; *out owned by the caller.
 * SBX_EINVAL (not a config with rootfs.diff_ids), SBX_ELIMIT. */
SBX_API int sbx_image_config_add_layer(char **out, size_t *out_len, const char *config,
                                       size_t len, const char *diff_id, const char *created_by,
                                       const char *comment, sbx_error *err);
/* The manifest digest sbx_image_write would give, writing nothing. */
SBX_API int sbx_image_write_digest(char digest_out[SBX_DIGEST_BUFSZ], sbx_store *s,
                                   const char *config,
                                   size_t config_len, sbx_error *err);

#ifdef __cplusplus
}
#endif
#endif
