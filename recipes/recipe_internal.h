/* Internal to the recipes module: field validators shared by the API and the
 * YAML front end (so both reject the same inputs with the same words), path
 * cleaning, .sbxignore matching and the file hash cache. */
#ifndef SBX_RECIPE_INTERNAL_H
#define SBX_RECIPE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbx/recipe.h"
#include "sbx_common.h"

#define SBX_RECIPE_MAX_FILE (1u << 20) /* recipe files over 1 MiB are refused */
#define SBX_RECIPE_MAX_STEPS 4096
#define SBX_RECIPE_MAX_LIST 4096       /* packages, commands, env vars per step */

/* Record where the last step came from ("file:line:col"); the YAML front end
 * calls it on a recipe only it holds.  -1 when out of memory. */
int rcp_recipe_set_last_where(sbx_recipe *r, const char *where);

/* A step's canonical JSON (canonical.c); NULL when out of memory. */
char *rcp_step_canonical_json(const sbx_step *s);

/* ---- validators: 0 or SBX_EINVAL with "expected ..." in err->msg ---------- */
/* Any text: valid UTF-8, no control characters but tab (and newline/CR when
 * multiline).  what names the field in the message. */
int rcp_rv_text(const char *s, const char *what, bool multiline, sbx_error *err);
/* A package name or spec: non-empty, no whitespace for apt, not starting with '-'. */
int rcp_rv_package(const char *s, const char *what, bool allow_spaces, sbx_error *err);
/* "3", "3.12", "3.12.1" */
int rcp_rv_version(const char *s, const char *what, sbx_error *err);
/* [A-Za-z_][A-Za-z0-9_]* */
int rcp_rv_env_name(const char *s, sbx_error *err);
/* A build secret's id: [A-Za-z0-9_.-]{1,64}, not "." or "..". */
int rcp_rv_secret_id(const char *s, sbx_error *err);
/* A URL in a recipe holds no credentials (user:password@): they would be
 * in the digest and in every log; secrets carry them. */
int rcp_rv_url_no_userinfo(const char *s, const char *what, sbx_error *err);
/* non-empty, no whitespace or control characters, at most one ':' */
int rcp_rv_user(const char *s, const char *what, sbx_error *err);
int rcp_rv_abs_path(const char *s, const char *what, sbx_error *err);
/* relative, stays inside the context lexically */
int rcp_rv_rel_path(const char *s, const char *what, sbx_error *err);
/* An image ref / name: non-empty, no whitespace or control characters. */
int rcp_rv_ref(const char *s, const char *what, sbx_error *err);
/* A mode written in octal ("0755", "755", "0o755") -> 0..07777. */
int rcp_rv_mode(int *out, const char *s, sbx_error *err);

/* Lexical path cleaning as Go's path.Clean ("" -> "."); caller frees.
 * keep_trailing_slash keeps one trailing '/' when the input had one. */
char *rcp_path_clean(const char *p, bool keep_trailing_slash);

/* ---- .sbxignore (dockerignore syntax) ------------------------------------ */
typedef struct rcp_ignore rcp_ignore;
/* Load <context>/.sbxignore; a missing file gives an empty matcher. */
int rcp_ignore_load(rcp_ignore **out, const char *context_dir, sbx_error *err);
/* Parse patterns from text (one per line). */
int rcp_ignore_parse(rcp_ignore **out, const char *text, sbx_error *err);
void rcp_ignore_free(rcp_ignore *ig);
/* relpath is relative to the context, '/'-separated, cleaned.  true when the
 * last pattern matching the path or one of its parents is not negated. */
bool rcp_ignore_match(const rcp_ignore *ig, const char *relpath);
/* true when some pattern is negated (then excluded directories must still be
 * walked, since something below may be re-included). */
bool rcp_ignore_has_negations(const rcp_ignore *ig);

/* ---- copy tree: walked once, hashed in parallel --------------------------- */
typedef struct rcp_copy_node rcp_copy_node;
struct rcp_copy_node {
    char *name;   /* entry name ("" for the root) */
    char *relpath; /* relative to src */
    char *path;   /* absolute */
    mode_t type;
    bool executable;
    char *link_target;
    uint64_t size, dev, ino;
    int64_t mtime_ns, ctime_ns;
    rcp_copy_node **children; /* directories: sorted by name */
    size_t n_children;
    unsigned char hash[32];   /* files: content; links: target; dirs: Merkle */
};
/* Build the tree of what `copy src` takes from context_dir. */
int rcp_copy_tree_build(rcp_copy_node **out, const char *context_dir, const char *src,
                        sbx_error *err);
void rcp_copy_tree_free(rcp_copy_node *n);

/* ---- per-file hash cache ------------------------------------------------- */
typedef struct rcp_hash_cache rcp_hash_cache;
/* Load from dir (NULL: sbx_recipe_cache_dir()); an unreadable or corrupt
 * cache file is an empty cache, never an error. */
rcp_hash_cache *rcp_hash_cache_open(const char *dir, const sbx_ctx *ctx);
bool rcp_hash_cache_get(rcp_hash_cache *c, const rcp_copy_node *n, unsigned char out[32]);
void rcp_hash_cache_put(rcp_hash_cache *c, const rcp_copy_node *n, const unsigned char h[32]);
/* Tests: keep at most n entries in the file (0: the default, 262,144). */
void rcp_hash_cache_set_keep(size_t n);
/* Write back atomically when something changed; failures are only logged. */
void rcp_hash_cache_close(rcp_hash_cache *c);
/* Cache statistics of the last sbx_recipe_copy_digest in this thread (tests). */
typedef struct rcp_copy_stats {
    size_t files, cache_hits, bytes_hashed;
} rcp_copy_stats;
extern __thread rcp_copy_stats rcp_copy_last_stats;

#endif
