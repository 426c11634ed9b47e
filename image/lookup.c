/* One naming model for everything that finds an image in the store
 * (sbx_image_lookup): open, unpack, mount, export, inspect, a recipe's
 * `image:` base, rm.  A name a person writes is read, in this order, as
 *  1. a manifest digest ("sha256:<64 hex>") the store holds;
 *  2. a pinned ref's digest ("repo@sha256:...");
 *  3. the name its ref normalizes to ("busybox" and "busybox:latest" are
 *     "docker.io/library/busybox:latest", as pull, build --tag, commit
 *     --tag and load name images);
 *  4. the name exactly as written (recipe:..., snapshot:..., sbx-base:...,
 *     and names set before tags were normalized);
 *  5. a digest prefix of at least 12 hex digits, as `images` prints it,
 *     matching exactly one named image.
 * So a pulled `busybox` and a built `--tag busybox` are one name: the
 * later one wins, as with docker. */
#include <string.h>

#include "image_internal.h"

#define SHORT_DIGEST_MIN 12

static bool is_hex_prefix(const char *s)
{
    const char *h = strncmp(s, "sha256:", 7) ? s : s + 7;
    size_t n = strlen(h);
    return n >= SHORT_DIGEST_MIN && n < SBX_SHA256_HEXLEN &&
           strspn(h, "0123456789abcdef") == n;
}

/* 5: the one named image whose digest starts with the prefix. */
static int by_prefix(char digest[SBX_DIGEST_BUFSZ], sbx_store *s, const char *words,
                     sbx_error *err)
{
    const char *h = strncmp(words, "sha256:", 7) ? words : words + 7;
    size_t hl = strlen(h);
    sbx_name_entry *v = NULL;
    size_t n = 0;
    if (sbx_store_name_list(s, NULL, &v, &n, err) < 0)
        return err->code;
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(v[i].name, "cache:", 6) == 0 || strncmp(v[i].digest + 7, h, hl) != 0)
            continue;
        if (found && strcmp(digest, v[i].digest) != 0) {
            found = 2;
            break;
        }
        snprintf(digest, SBX_DIGEST_BUFSZ, "%s", v[i].digest);
        found = 1;
    }
    sbx_name_entries_free(v, n);
    if (found == 2)
        return sbx_error_set(err, SBX_EINVAL, "'%s' is the start of more than one image's "
                             "digest: give more of it", words);
    return found ? 0 : SBX_ENOTFOUND;
}

/* A stored blob that parses as an image manifest or index. */
static bool is_manifest(sbx_store *s, const char *digest)
{
    _cleanup_free_ char *raw = NULL;
    size_t len = 0;
    sbx_manifest m = {0};
    sbx_error e = SBX_ERROR_INIT;
    bool ok = sbx_store_read_blob(s, digest, SBX_MANIFEST_MAX, &raw, &len, &e) == 0 &&
              sbx_manifest_parse(&m, NULL, raw, len, &e) == 0;
    sbx_manifest_free(&m);
    return ok;
}

int sbx_image_lookup(char digest_out[SBX_DIGEST_BUFSZ], char *name_out, size_t name_len,
                     sbx_store *s, const char *words, sbx_error *err)
{
    sbx_error e = SBX_ERROR_INIT;
    if (name_out && name_len)
        name_out[0] = '\0';
    if (sbx__digest_valid(words)) {
        int have = sbx_store_has_blob(s, words, err);
        if (have < 0)
            return have;
        if (have && !is_manifest(s, words))
            return sbx_error_set(err, SBX_EINVAL, "'%s' is a stored blob but no image manifest "
                                 "or index (a config?)", words);
        if (have) {
            snprintf(digest_out, SBX_DIGEST_BUFSZ, "%s", words);
            return 0;
        }
    } else {
        sbx_ref ref;
        bool parsed = sbx_ref_parse(&ref, words, &e) == 0;
        if (parsed && ref.digest[0]) {
            int have = sbx_store_has_blob(s, ref.digest, err);
            if (have < 0)
                return have;
            if (have) {
                snprintf(digest_out, SBX_DIGEST_BUFSZ, "%s", ref.digest);
                return 0;
            }
        }
        const char *names[2] = {parsed ? ref.str : NULL, words};
        for (int i = 0; i < 2; i++) {
            if (!names[i] || sbx_store_name_get(s, names[i], digest_out, &e) < 0)
                continue;
            if (name_out && name_len)
                snprintf(name_out, name_len, "%s", names[i]);
            return 0;
        }
        if (is_hex_prefix(words)) {
            int r = by_prefix(digest_out, s, words, err);
            if (r != SBX_ENOTFOUND)
                return r;
        }
    }
    sbx_error_set(err, SBX_ENOTFOUND,
                  "no such image in the store '%s' (pull it first: sbx-image pull %s)",
                  sbx_store_root(s), words);
    sbx_error_where(err, "%s", words);
    return SBX_ENOTFOUND;
}

int sbx_image_platform_manifest(char out[SBX_DIGEST_BUFSZ], sbx_store *s, const char *digest,
                                const char *platform, sbx_error *err)
{
    _cleanup_free_ char *raw = NULL;
    size_t len = 0;
    sbx_manifest m = {0};
    int r = img_read(&raw, &len, s, digest, SBX_MANIFEST_MAX, "manifest", err);
    if (r == 0 && (r = sbx_manifest_parse(&m, NULL, raw, len, err)) < 0)
        sbx_error_wrap(err, "reading the manifest '%s'", digest);
    if (r == 0 && m.kind != SBX_MANIFEST_INDEX)
        snprintf(out, SBX_DIGEST_BUFSZ, "%s", digest);
    if (r == 0 && m.kind == SBX_MANIFEST_INDEX) {
        sbx_platform want;
        const sbx_descriptor *d = NULL;
        if (platform && *platform)
            r = sbx_platform_parse(&want, platform, err);
        else
            sbx_platform_host(&want);
        if (r == 0)
            r = sbx_manifest_pick(&d, &m, &want, err);
        if (r == 0)
            snprintf(out, SBX_DIGEST_BUFSZ, "%s", d->digest);
    }
    sbx_manifest_free(&m);
    return r;
}

int sbx_image_tag_name(char *out, size_t len, const char *tag, sbx_error *err)
{
    sbx_ref ref;
    if (sbx_ref_parse(&ref, tag, err) < 0)
        return sbx_error_wrap(err, "tag '%s'", tag);
    if (ref.digest[0])
        return sbx_error_set(err, SBX_EINVAL, "tag '%s': a tag names no digest", tag);
    if ((size_t)snprintf(out, len, "%s", ref.str) >= len)
        return sbx_error_set(err, SBX_ELIMIT, "tag '%s': too long", tag);
    return 0;
}
