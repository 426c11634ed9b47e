/* sbx-image: the OCI distribution client.
 *
 * Resolves image refs to manifest digests and pulls images into the store
 * (include/sbx/store.h).  Talks the Distribution API v2 over libcurl: bearer
 * tokens from WWW-Authenticate challenges, basic auth, Docker config
 * credentials and helpers, TLS verified with per-registry CAs, docker.io
 * mirrors.
 *
 * Trust: nothing from the network reaches the store unverified.  Manifests
 * are size-limited before they are read and checked against the digest the
 * registry announces and the digest a pinned ref names; layers are checked
 * against the descriptor digest (compressed) and the config's diff_id
 * (uncompressed) before they are committed.  Credentials and tokens never
 * appear in logs or error messages.
 *
 * Threads: the functions here may be called from several threads at once
 * when each call has its own store handle (a store handle is one thread at a
 * time).  Call sbx_registry_global_init() once before starting threads.
 */
#ifndef SBX_REGISTRY_H
#define SBX_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "sbx/context.h"
#include "sbx/error.h"
#include "sbx/image.h"
#include "sbx/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- options -------------------------------------------------------------- */

typedef struct sbx_registry_options {
    /* Store: required by pull; used by resolve for its cache and by inspect
     * to answer from local data.  May be NULL for resolve (no cache). */
    sbx_store *store;
    /* "os/arch[/variant]"; NULL means this host's platform. */
    const char *platform;
    /* Per-call credentials (the control plane passes these with a sandbox
     * create request).  When set they are used for the ref's registry
     * instead of the Docker config.  Either username+password, or an
     * identity token (an OAuth2 refresh token, as Docker's `identitytoken`),
     * or a registry token sent as is as the bearer token. */
    const char *username;
    const char *password;
    const char *identity_token;
    const char *registry_token;
    /* Overrides; NULL means the environment or the default:
     * docker_config: path of config.json ($DOCKER_CONFIG/config.json, ~/.docker/config.json)
     * certs_dir: $SBX_CERTS_DIR, /etc/sbx-image/certs.d (<host[:port]>/ca.crt)
     * registries_config: $SBX_REGISTRIES_CONFIG, /etc/sbx-image/registries.json */
    const char *docker_config;
    const char *certs_dir;
    const char *registries_config;
    /* Resolve cache lifetime for tags in seconds; -1 means $SBX_RESOLVE_TTL
     * or 60; 0 disables the cache for this call.  Digests are cached forever. */
    int64_t resolve_ttl;
    /* Layers downloaded (pull) or blobs uploaded (push) at once; 0 means
     * the default (2). */
    unsigned parallel;
    /* push: layers as gzip (deterministic: the same image, the same
     * digests) for clients that cannot read zstd; false: zstd as stored. */
    bool push_gzip;
    /* How long the registry's answer to "may these credentials pull from
     * this private repository?" is trusted, in seconds; -1 means
     * $SBX_ACCESS_TTL or 60; 0 asks every time (see sbx_registry_gate). */
    int64_t access_ttl;
    /* An auth file (containers-auth.json, the format of Docker's config)
     * to take credentials from instead of the default chain: NULL means
     * REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json, then
     * $XDG_CONFIG_HOME (~/.config)/containers/auth.json, then the Docker
     * config, as podman and skopeo look.  Per-call credentials win. */
    const char *authfile;
    /* push: a blob larger than this many bytes goes in chunks of it (PATCH),
     * each resumable on its own; 0 sends every blob in one PUT; -1 means
     * the default (32 MiB).  A registry's OCI-Chunk-Min-Length raises it. */
    int64_t push_chunk;
    /* pull: a second consumer of each downloaded layer's tar stream (NULL:
     * none), such as the rootfs module's unpacker (pull --unpack). */
    const struct sbx_layer_tap *layer_tap;
} sbx_registry_options;

/* A consumer of the uncompressed tar stream of every layer a pull
 * downloads, beside the store.  begin, before a layer's first byte, with
 * the puller's store handle (for its root only: it serves another thread)
 * and the layer's expected diff_id: a handle, or NULL (with err clear: not
 * wanted; set: the pull fails).  write gets the bytes in order.  end comes
 * once per handle: commit true only after the blob's digest and size and
 * the diff_id were verified and the layer is in the store; false on any
 * failure, or when the download starts over (a new begin follows).  An
 * error from end with commit fails the pull (the layer stays stored).
 * Called on the pull's download threads. */
typedef struct sbx_layer_tap {
    void *(*begin)(void *ud, sbx_store *store, const char *diff_id, sbx_ctx *ctx,
                   sbx_error *err);
    int (*write)(void *layer, const void *buf, size_t len, sbx_error *err);
    int (*end)(void *layer, bool commit, sbx_error *err);
    void *ud;
} sbx_layer_tap;

#define SBX_PUSH_CHUNK_DEFAULT (32ll << 20)
#define SBX_PUSH_CHUNK_MIN (1ll << 20)

#define SBX_REGISTRY_OPTIONS_INIT \
    {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, 0, false, -1, NULL, -1, NULL}

/* Initialise libcurl's global state.  Idempotent; the functions below call
 * it themselves, but a threaded program should call it first. */
SBX_API int sbx_registry_global_init(sbx_error *err);

/* Connections to registries stay open after a call returns (a few idle
 * handles per process, each with its connections), so the next resolve or
 * pull to the same registry skips the TCP and TLS handshakes.  This closes
 * them now; calls after it open new ones.  Safe from any thread. */
SBX_API void sbx_registry_close_idle(void);

/* ---- resolve ---------------------------------------------------------------- */

typedef struct sbx_resolve_result {
    char ref[sizeof(((sbx_ref *)0)->str)];   /* normalized ref */
    char digest[SBX_DIGEST_BUFSZ];           /* manifest digest for the platform */
    char media_type[128];                    /* that manifest's media type */
    char index_digest[SBX_DIGEST_BUFSZ];     /* what the ref names (an index), or = digest */
    sbx_platform platform;                   /* the platform chosen */
    int cached;                              /* answered from the store's cache */
} sbx_resolve_result;

/* Resolve ref to the digest of the image manifest for the platform (an
 * index is followed to its matching entry).  Uses HEAD where the registry
 * allows.  Tag answers are cached in opts->store for the TTL; digest answers
 * forever.  Errors: SBX_EINVAL (bad ref), SBX_ENOTFOUND (no such manifest),
 * SBX_ENOPLATFORM (no entry for the platform: the message lists the
 * image's platforms), SBX_EAUTH,
 * SBX_ENET, SBX_EDIGEST, SBX_EUNSUPPORTED (schema1), SBX_ELIMIT. */
SBX_API int sbx_registry_resolve(char digest_out[SBX_DIGEST_BUFSZ], const char *ref,
                                 const sbx_registry_options *opts, sbx_ctx *ctx, sbx_error *err);
/* As sbx_registry_resolve, with details. */
SBX_API int sbx_registry_resolve_ex(sbx_resolve_result *out, const char *ref,
                                    const sbx_registry_options *opts, sbx_ctx *ctx, sbx_error *err);

/* ---- pull ------------------------------------------------------------------- */

typedef struct sbx_pull_layer {
    char digest[SBX_DIGEST_BUFSZ];  /* compressed blob digest (descriptor) */
    char diff_id[SBX_DIGEST_BUFSZ]; /* uncompressed tar digest (config rootfs) */
    char media_type[128];
    uint64_t size;                  /* compressed size (descriptor) */
    int present;                    /* already in the store: not downloaded */
} sbx_pull_layer;

typedef struct sbx_pull_result {
    char ref[sizeof(((sbx_ref *)0)->str)]; /* normalized ref, the store name set */
    char digest[SBX_DIGEST_BUFSZ];         /* image manifest for the platform */
    char media_type[128];
    char index_digest[SBX_DIGEST_BUFSZ];   /* what the ref names, or = digest */
    char config[SBX_DIGEST_BUFSZ];         /* config blob digest */
    sbx_platform platform;
    size_t nlayers;
    sbx_pull_layer *layers;                /* owned; free with sbx_pull_result_free */
} sbx_pull_result;

/* Pull ref into opts->store: manifest(s), config and layers (layers the
 * store already has, by blob digest or diff_id, are not downloaded; several
 * download at once).  On success the store names the normalized ref ->
 * image manifest digest (for an index, the index is stored too and the
 * name points at the platform's manifest).  Progress on ctx
 * with id = layer digest (short) and phases "present", "download",
 * "commit", "done".  Errors as resolve, plus store errors. */
SBX_API int sbx_registry_pull(sbx_pull_result *out, const char *ref,
                              const sbx_registry_options *opts,
                              sbx_ctx *ctx, sbx_error *err);
/* Frees what the result owns (not the struct).  Accepts NULL. */
SBX_API void sbx_pull_result_free(sbx_pull_result *r);

/* ---- push ------------------------------------------------------------------ */

typedef struct sbx_push_result {
    char ref[SBX_REF_DOMAIN_MAX + SBX_REF_PATH_MAX + SBX_REF_TAG_MAX + SBX_DIGEST_BUFSZ + 4];
    char digest[SBX_DIGEST_BUFSZ]; /* the manifest pushed */
    size_t blobs_pushed, blobs_existing; /* layers and config: sent, or already there */
    size_t blobs_mounted; /* not sent: mounted from another repository of the registry */
    uint64_t bytes_pushed;
    /* The manifest was made anew over the stored layers (layers the store
     * compressed itself, or --compression gzip): its digest differs from the
     * stored one. */
    bool recompressed;
} sbx_push_result;

/* Push `image` (looked up in the store only, as unpack does; platform from
 * opts for an index) to `dest` (a ref; NULL or "": image's own name): every
 * layer as stored (zstd) and the config, each only when the repository
 * lacks it (HEAD first), in one PUT each; the manifest last, under dest's
 * tag (or its digest, which must be the manifest's).  Credentials as pull
 * takes them; tokens with push scope.  Progress on ctx: "layer N/M <digest>"
 * and "config" with phase "exists" or "push", then "manifest" "done".
 * Errors: SBX_ENOTFOUND (not in the store), SBX_EAUTH (push refused),
 * SBX_ENET, SBX_EDIGEST, SBX_ECANCELED, store errors. */
SBX_API int sbx_registry_push(sbx_push_result *out, sbx_store *store, const char *image,
                              const char *dest, const sbx_registry_options *opts, sbx_ctx *ctx,
                              sbx_error *err);

/* ---- plain files ----------------------------------------------------------------- */

/* Download url (http or https; redirects followed; no credentials sent) into
 * fd (written from its current offset, truncated back on a restart), with
 * the retries, resumption and stall limit of blob downloads and TLS
 * settings from opts (certs.d; NULL: defaults).  The bytes must hash to
 * sha256_hex (64 hex digits) and be at most max_bytes: SBX_EDIGEST or
 * SBX_ELIMIT otherwise, naming the URL.  Progress on ctx under progress_id,
 * phase "download".  For pinned artifacts such as a standalone CPython. */
SBX_API int sbx_registry_fetch_url(int fd, const char *url, const char *sha256_hex,
                                   uint64_t max_bytes, const char *progress_id,
                                   const sbx_registry_options *opts, sbx_ctx *ctx,
                                   sbx_error *err);

/* ---- private images ------------------------------------------------------------ */

/* Install on store handle s the check that lets its caller use private
 * content (pulled with credentials, refused to anonymous callers): the
 * caller's credentials in opts (NULL: the Docker config) must be accepted
 * by the registry repository the content came from -- a manifest HEAD, its
 * verdict cached per keyed credential identity for opts->access_ttl.
 * sbx_image_open (unpack, mount, export, push) and builds then use it;
 * without one, private content is refused.  opts must outlive the
 * handle's use; install again for another caller.  resolve, pull, inspect
 * and push check with their own opts and need none.  docs/registry.md,
 * "Private images". */
SBX_API void sbx_registry_gate(sbx_store *s, const sbx_registry_options *opts);
/* The same check once, for digest and all it reaches, without installing
 * anything: 0, or SBX_EAUTH naming the repository. */
SBX_API int sbx_registry_access_check(sbx_store *s, const char *digest,
                                      const sbx_registry_options *opts, sbx_error *err);

/* ---- login ------------------------------------------------------------------ */

/* Check opts' username and password against registry ("host[:port]") and,
 * when it accepts them, keep them in the auth file (opts->authfile, else
 * the default one podman writes: REGISTRY_AUTH_FILE or
 * $XDG_RUNTIME_DIR/containers/auth.json), mode 0600, replaced atomically.
 * *path_out (may be NULL) gets the file's path; caller frees.  Errors:
 * SBX_EAUTH (refused), SBX_ENET, SBX_EINVAL, SBX_EIO. */
SBX_API int sbx_registry_login(char **path_out, const char *registry,
                               const sbx_registry_options *opts, sbx_ctx *ctx, sbx_error *err);
/* Remove registry's entry (NULL: every entry) from the auth file;
 * SBX_ENOTFOUND when it had none. */
SBX_API int sbx_registry_logout(char **path_out, const char *registry,
                                const sbx_registry_options *opts, sbx_error *err);

/* ---- inspect ---------------------------------------------------------------- */

typedef struct sbx_image_platform {
    sbx_platform platform;
    char digest[SBX_DIGEST_BUFSZ];
    char media_type[128];
    uint64_t size;
} sbx_image_platform;

typedef struct sbx_image_info {
    char ref[sizeof(((sbx_ref *)0)->str)];
    int from_store;                        /* 1: answered from the store */
    char top_digest[SBX_DIGEST_BUFSZ];     /* what the ref names */
    char top_media_type[128];
    char *top_raw;                         /* exact bytes of that manifest/index */
    size_t top_len;
    size_t nplatforms;                     /* entries of an index; 0 for a single manifest */
    sbx_image_platform *platforms;
    char digest[SBX_DIGEST_BUFSZ];         /* the platform's image manifest */
    char media_type[128];
    char *manifest_raw;                    /* its exact bytes */
    size_t manifest_len;
    char config_digest[SBX_DIGEST_BUFSZ];
    char *config_raw;                      /* the config JSON bytes */
    size_t config_len;
    sbx_platform platform;                 /* from the config */
    size_t nlayers;
    sbx_pull_layer *layers;                /* present = in the store */
} sbx_image_info;

/* Describe an image: from opts->store when it names ref (or holds the
 * pinned digest), else from the registry (manifests and config only, no
 * layers downloaded).  *out owned by the caller: sbx_image_info_free. */
SBX_API int sbx_registry_inspect(sbx_image_info **out, const char *ref,
                                 const sbx_registry_options *opts,
                                 sbx_ctx *ctx, sbx_error *err);
SBX_API void sbx_image_info_free(sbx_image_info *info);

#ifdef __cplusplus
}
#endif
#endif
