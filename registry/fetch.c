/* Plain files over HTTP(S): a pinned artifact (a standalone CPython build)
 * downloaded with the registry client's transfer machinery -- retries,
 * Range resumption, stall limit, cancellation, TLS settings -- and checked
 * against its SHA-256 as it streams. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "registry_internal.h"

typedef struct fetch_sink {
    int fd;
    off_t start;
    sbx__sha256 *h;
    uint64_t n, max;
    const char *url, *pid;
    sbx_ctx *ctx;
    sbx_error *err;
    bool over;
} fetch_sink;

static int fetch_write(void *ud, const void *buf, size_t len)
{
    fetch_sink *f = ud;
    if (f->n + len > f->max) {
        f->over = true;
        return sbx_error_set(f->err, SBX_ELIMIT, "'%s' is larger than %llu bytes", f->url,
                             (unsigned long long)f->max);
    }
    if (sbx__write_all(f->fd, buf, len, f->err) < 0)
        return -1;
    sbx__sha256_update(f->h, buf, len);
    f->n += len;
    sbx__progress(f->ctx, f->pid, "download", f->n, 0);
    return 0;
}

static int fetch_reset(void *ud, sbx_error *err)
{
    fetch_sink *f = ud;
    if (ftruncate(f->fd, f->start) < 0 || lseek(f->fd, f->start, SEEK_SET) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "restarting the download of '%s'", f->url);
    sbx__sha256_free(f->h);
    f->h = NULL;
    f->n = 0;
    return sbx__sha256_new(&f->h, err);
}

int sbx_registry_fetch_url(int fd, const char *url, const char *sha256_hex, uint64_t max_bytes,
                           const char *progress_id, const sbx_registry_options *opts,
                           sbx_ctx *ctx, sbx_error *err)
{
    bool https = !strncmp(url, "https://", 8);
    if (!https && strncmp(url, "http://", 7) != 0)
        return sbx_error_set(err, SBX_EINVAL, "'%s' is not an http:// or https:// URL", url);
    if (!sha256_hex || strlen(sha256_hex) != SBX_SHA256_HEXLEN ||
        strspn(sha256_hex, "0123456789abcdef") != SBX_SHA256_HEXLEN)
        return sbx_error_set(err, SBX_EINVAL, "'%s': the pinned SHA-256 is not 64 hex digits",
                             url);
    const char *host = url + (https ? 8 : 7);
    size_t hl = strcspn(host, "/?#");
    sbx_ref ref = {0};
    if (hl == 0 || hl > SBX_REF_DOMAIN_MAX || memchr(host, '@', hl))
        return sbx_error_set(err, SBX_EINVAL, "'%s': no usable host in the URL", url);
    memcpy(ref.domain, host, hl);
    _cleanup_free_ char *origin = sbx__strdup_printf("%.*s", (int)(host - url + hl), url);
    if (!origin)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    reg_client *named = NULL, *c = NULL;
    int rc = reg_client_new(&named, &ref, origin, opts, NULL, ctx, err);
    if (rc == 0) /* whatever credentials the host has stay home */
        rc = reg_client_anonymous(&c, named, err);
    reg_client_free(named);
    if (rc < 0)
        return rc;
    fetch_sink f = {.fd = fd, .max = max_bytes, .url = url, .ctx = ctx, .err = err,
                    .pid = progress_id ? progress_id : url};
    f.start = lseek(fd, 0, SEEK_CUR);
    if (f.start < 0)
        rc = sbx_error_sys(err, SBX_EIO, errno, "downloading '%s'", url);
    if (rc == 0)
        rc = sbx__sha256_new(&f.h, err);
    if (rc == 0) {
        _cleanup_free_ char *what = sbx__strdup_printf("downloading '%s'", url);
        reg_sink sink = {.write = fetch_write, .reset = fetch_reset, .ud = &f};
        rc = what ? reg_get_url(c, url, what, &sink, err)
                  : sbx_error_set(err, SBX_ENOMEM, "out of memory");
    }
    if (rc == 0) {
        char got[SBX_DIGEST_BUFSZ];
        sbx__sha256_final(f.h, got);
        const char *hex = strchr(got, ':') + 1;
        if (strcmp(hex, sha256_hex) != 0)
            rc = sbx_error_set(err, SBX_EDIGEST, "'%s' does not match its pinned SHA-256 %s "
                               "(it hashes to %s, %llu bytes)", url, sha256_hex, hex,
                               (unsigned long long)f.n);
        else
            sbx__progress(ctx, f.pid, "done", f.n, f.n);
    }
    sbx__sha256_free(f.h);
    reg_client_free(c);
    return rc;
}
