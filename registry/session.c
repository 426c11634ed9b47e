/* A pull or resolve session: the parsed ref, the wanted platform, the
 * registries config, and fetching verified manifests from the endpoints in
 * order (docker.io mirrors first, then the source). */
#include <string.h>

#include "registry_internal.h"

int reg_session_init(reg_session *s, const char *ref, const sbx_registry_options *opts,
                     sbx_ctx *ctx, sbx_error *err)
{
    memset(s, 0, sizeof *s);
    s->opts = opts;
    s->ctx = ctx;
    int rc = sbx_ref_parse(&s->ref, ref, err);
    if (rc < 0)
        return rc;
    s->parsed = true;
    if (opts && opts->platform && *opts->platform) {
        if ((rc = sbx_platform_parse(&s->want, opts->platform, err)) < 0) {
            sbx_error_where(err, "%s", s->ref.str);
            return rc;
        }
    } else {
        sbx_platform_host(&s->want);
    }
    /* libcurl is loaded by reg_client_new, so an answer from the resolve
     * cache never pays for loading it. */
    return reg_config_load(&s->cfg, opts ? opts->registries_config : NULL, err);
}

void reg_session_free(reg_session *s) { reg_config_free(&s->cfg); }

void reg_fetched_free(reg_fetched *f)
{
    free(f->top_raw);
    free(f->raw);
    sbx_manifest_free(&f->top);
    sbx_manifest_free(&f->image);
    memset(f, 0, sizeof *f);
}

/* Verify a manifest body against what the registry announced and what we
 * asked for; fill digest_out. */
static int verify_manifest(const reg_client *c, const reg_resp *resp, const char *want_digest,
                           char digest_out[SBX_DIGEST_BUFSZ], sbx_error *err)
{
    sbx__sha256_buf(resp->body ? resp->body : "", resp->len, digest_out);
    if (resp->docker_digest[0] && sbx__digest_valid(resp->docker_digest) &&
        strcmp(resp->docker_digest, digest_out) != 0)
        return sbx_error_set(err, SBX_EDIGEST,
                             "manifest from '%s' has digest '%s' but the registry announced '%s'",
                             reg_client_name(c), digest_out, resp->docker_digest);
    if (want_digest && strcmp(want_digest, digest_out) != 0)
        return sbx_error_set(err, SBX_EDIGEST,
                             "manifest from '%s' has digest '%s', expected '%s'",
                             reg_client_name(c), digest_out, want_digest);
    return 0;
}

static int fetch_one(reg_fetched *out, reg_client *c, reg_session *s, sbx_error *err)
{
    reg_resp resp = {.content_length = -1};
    const char *reference = sbx_ref_reference(&s->ref);
    int rc = reg_get_manifest(c, reference, false, &resp, err);
    /* parse first: a schema1 manifest is refused as what it is, not as a
     * digest mismatch (its announced digest covers the unsigned payload) */
    if (rc == 0)
        rc = sbx_manifest_parse(&out->top, resp.content_type, resp.body ? resp.body : "",
                                resp.len, err);
    if (rc == 0)
        rc = verify_manifest(c, &resp, s->ref.digest[0] ? s->ref.digest : NULL, out->top_digest,
                             err);
    if (rc < 0) {
        reg_resp_clear(&resp);
        return rc;
    }
    snprintf(out->top_media_type, sizeof out->top_media_type, "%s", out->top.media_type);
    out->top_raw = resp.body ? SBX_STEAL(resp.body) : strdup("");
    out->top_len = resp.len;
    reg_resp_clear(&resp);
    if (!out->top_raw)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");

    if (out->top.kind == SBX_MANIFEST_IMAGE) {
        memcpy(out->digest, out->top_digest, sizeof out->digest);
        snprintf(out->media_type, sizeof out->media_type, "%s", out->top_media_type);
        if (!(out->raw = malloc(out->top_len + 1)))
            return sbx_error_set(err, SBX_ENOMEM, "out of memory");
        memcpy(out->raw, out->top_raw, out->top_len + 1);
        out->len = out->top_len;
        return sbx_manifest_parse(&out->image, out->top_media_type, out->raw, out->len, err);
    }
    const sbx_descriptor *d;
    if ((rc = sbx_manifest_pick(&d, &out->top, &s->want, err)) < 0)
        return rc;
    if (d->size > SBX_MANIFEST_MAX)
        return sbx_error_set(err, SBX_ELIMIT, "manifest '%s' declares %llu bytes (limit %u)",
                             d->digest, (unsigned long long)d->size, SBX_MANIFEST_MAX);
    rc = reg_get_manifest(c, d->digest, false, &resp, err);
    if (rc == 0)
        rc = verify_manifest(c, &resp, d->digest, out->digest, err);
    if (rc == 0 && resp.len != d->size)
        rc = sbx_error_set(err, SBX_EDIGEST, "manifest '%s' is %zu bytes, the index says %llu",
                           d->digest, resp.len, (unsigned long long)d->size);
    const char *ct = resp.content_type[0] ? resp.content_type : d->media_type;
    if (rc == 0)
        rc = sbx_manifest_parse(&out->image, sbx_media_is_manifest(d->media_type) ? d->media_type
                                                                                  : ct,
                                resp.body ? resp.body : "", resp.len, err);
    if (rc == 0 && out->image.kind != SBX_MANIFEST_IMAGE)
        rc = sbx_error_set(err, SBX_EUNSUPPORTED, "index entry '%s' is not an image manifest",
                           d->digest);
    if (rc < 0) {
        reg_resp_clear(&resp);
        return rc;
    }
    snprintf(out->media_type, sizeof out->media_type, "%s", out->image.media_type);
    out->raw = resp.body ? SBX_STEAL(resp.body) : strdup("");
    out->len = resp.len;
    reg_resp_clear(&resp);
    return out->raw ? 0 : sbx_error_set(err, SBX_ENOMEM, "out of memory");
}

int reg_fetch_image(reg_fetched *out, reg_client **client, reg_session *s, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    *client = NULL;
    bool mirrors = !strcmp(s->ref.domain, "docker.io");
    size_t n = mirrors ? s->cfg.nmirrors : 0;
    int rc = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *ep = i < n ? s->cfg.mirrors[i] : "";
        reg_client *c = NULL;
        sbx_error_clear(err);
        rc = reg_client_new(&c, &s->ref, ep, s->opts, &s->cfg, s->ctx, err);
        if (rc == 0)
            rc = fetch_one(out, c, s, err);
        if (rc == 0) {
            reg_client_remember(c, s->opts ? s->opts->store : NULL);
            *client = c;
            return 0;
        }
        reg_fetched_free(out);
        reg_client_free(c);
        if (i < n) {
            char buf[1400], shown[1200];
            sbx__log(s->ctx, SBX_LOG_WARN, "mirror '%s' failed (%s); trying the next source",
                        sbx__url_redact(shown, sizeof shown, ep, true),
                    sbx_error_format(err, buf, sizeof buf));
        }
    }
    return rc;
}
