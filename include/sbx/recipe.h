/* sbx-image: recipes, the identity of an image.
 *
 * A recipe is a base plus an ordered list of steps plus the start and ready
 * commands.  It is immutable and reference counted: every step function
 * returns a NEW recipe that shares the old one's steps (nothing is copied but
 * an array of pointers), so variants are cheap.  Reference counts are atomic:
 * a recipe may be read and extended from many threads at once; the only rule
 * is the usual one that a thread must hold a reference to what it reads.
 *
 * Every recipe has a canonical form (compact JSON with sorted keys, see
 * docs/recipe-digest.md) and a digest "sha256:<hex of the canonical bytes>".
 * The canonical form of a `copy` step includes the Merkle hash of what it
 * copies, computed when the step is added (so the digest is a snapshot of the
 * build context at that time).
 *
 * The YAML parser (docs/recipe-format.md) is one front end to this API; the
 * step functions below are another.  None of this touches a store or the
 * network.
 */
#ifndef SBX_RECIPE_H
#define SBX_RECIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sbx/context.h"
#include "sbx/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sbx_recipe sbx_recipe; /* opaque, immutable, refcounted */

/* ---- the base ------------------------------------------------------------ */

typedef enum sbx_base_kind {
    SBX_BASE_REGISTRY = 1, /* from_registry: REF (optionally add_python)   */
    SBX_BASE_SBX = 2,      /* base: sbx, the platform base image            */
    SBX_BASE_IMAGE = 3,    /* image: NAME|DIGEST, an image the store built  */
} sbx_base_kind;

typedef struct sbx_recipe_base {
    sbx_base_kind kind;
    /* REGISTRY: the ref exactly as written (a tag stays a tag; the builder
     * resolves it and passes the manifest digest to sbx_recipe_cache_key).
     * IMAGE: the name or digest.  SBX: "sbx". */
    const char *ref;
    const char *add_python; /* REGISTRY only: a version like "3.12", else NULL */
} sbx_recipe_base;

/* ---- steps --------------------------------------------------------------- */

typedef enum sbx_step_kind {
    SBX_STEP_PYTHON = 1,
    SBX_STEP_APT_INSTALL,
    SBX_STEP_PIP_INSTALL,
    SBX_STEP_NPM_INSTALL,
    SBX_STEP_RUN_CMD,
    SBX_STEP_ENV,
    SBX_STEP_WORKDIR,
    SBX_STEP_USER,
    SBX_STEP_COPY,
} sbx_step_kind;

/* A build secret a step uses (BuildKit's meaning): the step sees its value
 * as the file /run/secrets/ID (tmpfs, mode 0400, the step's user's), and
 * also as the environment variable env when env is not NULL.  Only the id
 * and env are part of the recipe (and its digest); the value is given to
 * the build (sbx_build_options.secrets) and reaches no layer, config, cache
 * key, log or message. */
typedef struct sbx_step_secret {
    const char *id;  /* [A-Za-z0-9_.-]{1,64}, not "." or ".." */
    const char *env; /* NULL, or an environment variable name */
} sbx_step_secret;

/* A step, read-only.  Strings and arrays belong to the step and live as long
 * as any recipe that holds it.  Optional strings are NULL when absent. */
typedef struct sbx_step {
    sbx_step_kind kind;
    const char *canonical; /* this step's canonical JSON (docs/recipe-digest.md) */
    const char *where;     /* "recipe.yaml:12:5" when parsed from a file, else NULL */
    /* The build secrets this step uses (apt_install, pip_install,
     * npm_install and run_cmd only); n_secrets 0 for none. */
    const sbx_step_secret *secrets;
    size_t n_secrets;
    union {
        struct { /* python: VERSION */
            const char *version;
        } python;
        struct { /* apt_install: [pkgs] */
            const char *const *packages;
            size_t n_packages;
        } apt_install;
        struct { /* pip_install: {packages, user, index_url, extra_index_urls, find_links, pre} */
            const char *const *packages;
            size_t n_packages;
            const char *user; /* run pip as this user (NULL: the recipe's current user) */
            const char *index_url;
            const char *const *extra_index_urls;
            size_t n_extra_index_urls;
            const char *const *find_links;
            size_t n_find_links;
            bool pre; /* allow pre-releases (pip --pre) */
            /* `user: true` (the SDK's pip_install(user=True)): pip --user,
             * into the current recipe user's home; user is then NULL */
            bool user_install;
        } pip_install;
        struct { /* npm_install: {packages, global} */
            const char *const *packages;
            size_t n_packages;
            bool global; /* npm install -g; else into the working directory */
        } npm_install;
        struct { /* run_cmd: {commands, user}; each command runs with /bin/sh -c, in order */
            const char *const *commands;
            size_t n_commands;
            const char *user; /* NULL: the recipe's current user */
        } run_cmd;
        struct { /* env: {K: V}; sorted by name, names unique */
            const char *const *names;
            const char *const *values;
            size_t n;
        } env;
        struct { /* workdir: PATH (absolute, cleaned) */
            const char *path;
        } workdir;
        struct { /* user: NAME (or NAME:GROUP, UID:GID) */
            const char *name;
        } user;
        struct { /* copy: {src, dest, owner, mode} */
            const char *src;   /* cleaned, relative to the context ("." is the context) */
            const char *dest;  /* absolute; a trailing '/' means "into this directory" */
            const char *owner; /* "user", "user:group", "uid:gid"; NULL: root */
            /* Permission bits 0..07777 of every copied regular file; -1:
             * 0755 when owner-executable else 0644.  Directories are 0755,
             * symlinks as they are (only the executable bit is in the digest,
             * so the image must not depend on other source bits). */
            int mode;
            const char *content_digest; /* Merkle hash of src (sbx_recipe_copy_digest) */
        } copy;
    } u;
} sbx_step;

/* ---- building a recipe through the API ----------------------------------- */

/* Start a recipe.  context_dir is the build context that copy sources are
 * relative to (NULL: the current directory); it must exist and is stored as
 * an absolute, symlink-free path.  *out is owned by the caller (unref it).
 * Errors: SBX_EINVAL for a bad ref/version, SBX_EIO for a bad context_dir. */
SBX_API int sbx_recipe_from_registry(sbx_recipe **out, const char *ref, const char *add_python,
                                     const char *context_dir, sbx_error *err);
SBX_API int sbx_recipe_from_sbx(sbx_recipe **out, const char *context_dir, sbx_error *err);
SBX_API int sbx_recipe_from_image(sbx_recipe **out, const char *name_or_digest,
                                  const char *context_dir, sbx_error *err);

/* r with its last step (apt_install, pip_install, npm_install or run_cmd)
 * using these build secrets instead of the ones it had (n 0: none).  Ids
 * are unique; env names are unique and valid.  SBX_EINVAL otherwise, or
 * when the last step runs no commands. */
SBX_API int sbx_recipe_with_secrets(sbx_recipe **out, const sbx_recipe *r,
                                    const sbx_step_secret *secrets, size_t n, sbx_error *err);

/* Step functions: each returns in *out a new recipe (caller owns it) that is
 * r plus one step; r is untouched and still owned by the caller.  Inputs are
 * copied.  Validation failures return SBX_EINVAL with a message saying what
 * was expected; *out is then NULL. */
SBX_API int sbx_recipe_python(sbx_recipe **out, const sbx_recipe *r, const char *version,
                              sbx_error *err);
SBX_API int sbx_recipe_apt_install(sbx_recipe **out, const sbx_recipe *r, const char *const *pkgs,
                                   size_t n, sbx_error *err);

typedef struct sbx_pip_opts {
    const char *const *packages;
    size_t n_packages;
    const char *user;
    const char *index_url;
    const char *const *extra_index_urls;
    size_t n_extra_index_urls;
    const char *const *find_links;
    size_t n_find_links;
    bool pre;
    bool user_install; /* pip --user (then user must be NULL) */
} sbx_pip_opts;
#define SBX_PIP_OPTS_INIT {NULL, 0, NULL, NULL, NULL, 0, NULL, 0, false, false}
SBX_API int sbx_recipe_pip_install(sbx_recipe **out, const sbx_recipe *r, const sbx_pip_opts *opts,
                                   sbx_error *err);
SBX_API int sbx_recipe_npm_install(sbx_recipe **out, const sbx_recipe *r, const char *const *pkgs,
                                   size_t n, bool global, sbx_error *err);
/* user may be NULL. */
SBX_API int sbx_recipe_run_cmd(sbx_recipe **out, const sbx_recipe *r, const char *const *commands,
                               size_t n, const char *user, sbx_error *err);
/* names[i]=values[i]; names must be unique and match [A-Za-z_][A-Za-z0-9_]*. */
SBX_API int sbx_recipe_env(sbx_recipe **out, const sbx_recipe *r, const char *const *names,
                           const char *const *values, size_t n, sbx_error *err);
SBX_API int sbx_recipe_workdir(sbx_recipe **out, const sbx_recipe *r, const char *path,
                               sbx_error *err);
SBX_API int sbx_recipe_user(sbx_recipe **out, const sbx_recipe *r, const char *name,
                            sbx_error *err);

typedef struct sbx_copy_opts {
    const char *src;   /* relative to the recipe's context */
    const char *dest;  /* absolute */
    const char *owner; /* NULL: root */
    int mode;          /* -1: 0644/0755 by the executable bit (see sbx_step) */
} sbx_copy_opts;
#define SBX_COPY_OPTS_INIT {NULL, NULL, NULL, -1}
/* Hashes the source now (sbx_recipe_copy_digest).  Errors as that function,
 * plus SBX_EINVAL for a relative dest or a bad owner/mode. */
SBX_API int sbx_recipe_copy(sbx_recipe **out, const sbx_recipe *r, const sbx_copy_opts *opts,
                            sbx_ctx *ctx, sbx_error *err);

/* The command the sandbox starts with, and the one the platform polls for
 * readiness, as an argv (n >= 1).  The YAML string form "CMD" is stored as
 * {"/bin/sh", "-c", "CMD"}.  Setting again replaces. */
SBX_API int sbx_recipe_start_cmd(sbx_recipe **out, const sbx_recipe *r, const char *const *argv,
                                 size_t n, sbx_error *err);
SBX_API int sbx_recipe_ready_cmd(sbx_recipe **out, const sbx_recipe *r, const char *const *argv,
                                 size_t n, sbx_error *err);

/* Reference counting (atomic).  unref accepts NULL and frees at zero. */
SBX_API sbx_recipe *sbx_recipe_ref(const sbx_recipe *r);
SBX_API void sbx_recipe_unref(sbx_recipe *r);

/* ---- the YAML front end -------------------------------------------------- */

/* Parse a recipe file (docs/recipe-format.md); "-" is standard input.
 * context_dir NULL means the directory that holds the file (for "-", the
 * current directory).  Errors: SBX_EINVAL with err->where set to
 * "FILE:LINE:COL" (1-based) and err->msg saying what was expected; SBX_EIO
 * when the file or a copy source cannot be read; SBX_ELIMIT for a file over
 * 1 MiB.  *out is owned by the caller. */
SBX_API int sbx_recipe_parse_file(sbx_recipe **out, const char *path, const char *context_dir,
                                  sbx_ctx *ctx, sbx_error *err);
/* The same over a buffer; name is used in err->where (NULL: "<recipe>"),
 * context_dir NULL means the current directory. */
SBX_API int sbx_recipe_parse_buffer(sbx_recipe **out, const char *data, size_t len,
                                    const char *name,
                                    const char *context_dir, sbx_ctx *ctx, sbx_error *err);

/* ---- reading a recipe ---------------------------------------------------- */

SBX_API const sbx_recipe_base *sbx_recipe_get_base(const sbx_recipe *r);
SBX_API size_t sbx_recipe_n_steps(const sbx_recipe *r);
/* Step i (0-based), or NULL when out of range.  Valid while r is held. */
SBX_API const sbx_step *sbx_recipe_step(const sbx_recipe *r, size_t i);
/* argv (NULL when unset), count in *n. */
SBX_API const char *const *sbx_recipe_get_start_cmd(const sbx_recipe *r, size_t *n);
SBX_API const char *const *sbx_recipe_get_ready_cmd(const sbx_recipe *r, size_t *n);
/* Absolute, symlink-free build context directory. */
SBX_API const char *sbx_recipe_context_dir(const sbx_recipe *r);

/* ---- identity ------------------------------------------------------------- */

/* The canonical form (compact JSON, no trailing newline); *out is
 * NUL-terminated and owned by the caller. */
SBX_API int sbx_recipe_canonical(char **out, const sbx_recipe *r, sbx_error *err);
/* "sha256:" + hex sha256 of the canonical form. */
SBX_API int sbx_recipe_digest(char out[SBX_DIGEST_BUFSZ], const sbx_recipe *r, sbx_error *err);
/* The canonical form of the base alone ({"kind":...}). */
SBX_API int sbx_recipe_base_canonical(char **out, const sbx_recipe *r, sbx_error *err);

/* Cache key of the state after the first n steps (n = 0: the base itself),
 * chained: key(0) = sha256("sbx-cache-v1\n" base-canonical "\n" resolved),
 * key(i) = sha256(key(i-1) "\n" step(i-1).canonical).  resolved_base_digest is
 * the manifest digest the builder resolved the base to (required, a valid
 * "sha256:..."), so a moved tag never hits an old key.  start/ready commands
 * are not part of any step key (they only touch the final config).
 * Errors: SBX_EINVAL for n > n_steps or a bad digest. */
SBX_API int sbx_recipe_cache_key(char out[SBX_DIGEST_BUFSZ], const sbx_recipe *r, size_t n,
                                 const char *resolved_base_digest, sbx_error *err);

/* ---- copy sources -------------------------------------------------------- */

/* One entry of a copy source, visited in canonical order: pre-order, children
 * of a directory sorted by name (bytewise). */
typedef struct sbx_copy_entry {
    const char *relpath; /* relative to src; "" for src itself */
    const char *path;    /* absolute path on the host */
    mode_t type;         /* S_IFREG, S_IFDIR or S_IFLNK */
    bool executable;     /* S_IFREG: owner-executable bit set */
    const char *link_target; /* S_IFLNK: the target as stored */
    uint64_t size;           /* S_IFREG: bytes */
} sbx_copy_entry;
typedef int (*sbx_copy_visit_fn)(const sbx_copy_entry *e, void *ud, sbx_error *err);

/* Walk what `copy: {src: SRC}` copies from context_dir: src resolved (".."
 * and symlinks) and refused with SBX_EINVAL when it lands outside the
 * context; entries excluded by <context>/.sbxignore skipped; sockets, fifos
 * and devices refused with SBX_EUNSUPPORTED; SBX_ENOTFOUND when src does not
 * exist or is itself excluded.  A visitor returning < 0 stops the walk with
 * that code.  The builder copies exactly these entries, so the image matches
 * the digest. */
SBX_API int sbx_recipe_copy_walk(const char *context_dir, const char *src, sbx_copy_visit_fn fn,
                                 void *ud, sbx_error *err);

/* The Merkle content hash of a copy source (docs/recipe-digest.md): relative
 * paths, file contents, symlink targets and the executable bit; not times,
 * owners or other mode bits.  Files are hashed in parallel; per-file hashes
 * are cached under sbx_recipe_cache_dir() keyed by (dev, inode, size,
 * mtime, ctime) and only for files older than the run (so an edit in the
 * same clock tick is never hidden).  Errors as sbx_recipe_copy_walk, plus
 * SBX_EIO when a file changes size while it is read.  Thread-safe. */
SBX_API int sbx_recipe_copy_digest(char out[SBX_DIGEST_BUFSZ], const char *context_dir,
                                   const char *src, sbx_ctx *ctx, sbx_error *err);

/* Where the per-file hash cache lives: $SBX_CACHE_DIR, else
 * /var/cache/sbx-image for root, else $XDG_CACHE_HOME/sbx-image
 * (~/.cache/sbx-image). */
SBX_API int sbx_recipe_cache_dir(char *buf, size_t len, sbx_error *err);

#ifdef __cplusplus
}
#endif
#endif
