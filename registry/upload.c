/* Blob uploads (push), over the Distribution API's upload sessions.
 *
 * POST opens a session (or mounts the blob from another repository of the
 * registry); a blob larger than the chunk size goes in PATCHes of that size,
 * each answered with the session's next location and the bytes it holds
 * (Range: 0-N, the offset trusted over our own count); a PUT ?digest= with
 * the rest closes it.  A smaller blob (or any, with chunk 0) is one PUT.
 *
 * A failure worth another try (a reset, a stall, 5xx, 429) is not retried
 * blindly: after the back-off the session is asked where it stands (GET on
 * its location, 204 with Range), and the upload goes on from there, so a
 * chunk lost on the way costs that chunk.  A registry that dropped the
 * session (CNCF distribution does when part of a body reached it; 404) gets
 * a new one and the blob from the start.  A registry that refuses PATCH
 * (405, 501) gets the rest in the PUT, and no more PATCHes from this client.
 * The bound on attempts is the client's retry bound, per blob. */
#include <inttypes.h>
#include <string.h>

#include "registry_internal.h"

/* Open a session: 1 when the registry mounted the blob instead, else 0 and
 * *loc the session's absolute location. */
static int start_session(reg_client *c, const reg_upload *u, bool mount, const char *what,
                         char **loc, int64_t *chunk_min, sbx_error *err)
{
    const char *repo = reg_client_repo(c);
    _cleanup_free_ char *path =
        mount ? sbx__strdup_printf("/v2/%s/blobs/uploads/?mount=%s&from=%s", repo, u->digest,
                                   u->mount_from)
              : sbx__strdup_printf("/v2/%s/blobs/uploads/", repo);
    if (!path)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    reg_resp resp = {.content_length = -1};
    reg_req rq = {.method = "POST", .path = path, .what = what};
    int rc = reg_request(c, &rq, &resp, err);
    if (rc == 0 && mount && resp.status == 201) {
        reg_resp_clear(&resp);
        return 1;
    }
    if (rc == 0 && (resp.status != 202 || !resp.location[0]))
        rc = sbx_error_set(err, SBX_ENET, "%s: '%s' answered HTTP %ld without an upload "
                           "location", what, reg_client_name(c), resp.status);
    _cleanup_free_ char *base = rc == 0 ? reg_client_url(c, path) : NULL;
    *loc = base ? reg_resolve_location(base, resp.location) : NULL;
    *chunk_min = resp.chunk_min;
    reg_resp_clear(&resp);
    if (rc < 0)
        return rc;
    if (!*loc)
        return sbx_error_set(err, SBX_ENET, "%s: '%s' gave an unusable upload location", what,
                             reg_client_name(c));
    return 0;
}

/* Bytes an upload holds from its Range ("0-N" or "bytes=0-N"): N + 1, but
 * 0 for "0-0" and "0--1" (what empty sessions say; distribution's "0-0"
 * could also mean one byte, which chunks of at least 1 MiB never leave).
 * -1 when malformed. */
static int64_t held_bytes(const char *range)
{
    if (!strncmp(range, "bytes=", 6))
        range += 6;
    long long end;
    int used = 0;
    if (strncmp(range, "0-", 2) || sscanf(range + 2, "%lld%n", &end, &used) != 1 ||
        range[2 + used] != '\0' || end >= INT64_MAX || end < -1)
        return -1;
    return end <= 0 ? 0 : (int64_t)end + 1;
}

/* The session's next location from an answer, if it names one. */
static int follow(char **loc, const reg_resp *r)
{
    if (!r->location[0])
        return 0;
    char *next = reg_resolve_location(*loc, r->location);
    if (!next)
        return -1;
    free(*loc);
    *loc = next;
    return 0;
}

int reg_put_blob(reg_client *c, const reg_upload *u, sbx_error *err)
{
    _cleanup_free_ char *what = sbx__strdup_printf("uploading blob '%s'", u->digest);
    if (!what)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    char *loc = NULL;
    int64_t chunk_min = 0;
    int rc = start_session(c, u, u->mount_from != NULL, what, &loc, &chunk_min, err);
    if (rc != 0)
        return rc;
    uint64_t chunk = u->chunk;
    if (chunk && chunk_min > 0 && (uint64_t)chunk_min > chunk)
        chunk = (uint64_t)chunk_min;
    uint64_t off = 0;
    int failures = 0;
    bool ask = false; /* where does the session stand? */
    for (;;) {
        reg_resp resp = {.content_length = -1};
        if (ask) {
            reg_req st = {.method = "GET", .url = loc, .what = what,
                          .max_body = REG_ERRBODY_MAX, .once = true};
            rc = reg_request(c, &st, &resp, err);
            if (rc == 0) {
                int64_t held = resp.range[0] ? held_bytes(resp.range) : 0;
                if (held < 0 || (uint64_t)held > u->len) {
                    rc = sbx_error_set(err, SBX_ENET, "%s: '%s' says the upload holds '%s' of "
                                       "a blob of %" PRIu64 " bytes", what, reg_client_name(c),
                                       resp.range, u->len);
                } else if (follow(&loc, &resp) < 0) {
                    rc = sbx_error_set(err, SBX_ENET, "%s: '%s' gave an unusable upload "
                                       "location", what, reg_client_name(c));
                } else {
                    off = (uint64_t)held;
                    ask = false;
                    sbx__log(reg_client_ctx(c), SBX_LOG_INFO, "%s: resuming at byte %" PRIu64
                             " of %" PRIu64, what, off, u->len);
                }
            } else if (resp.transient) {
                rc = reg_retry_pause(c, ++failures, &resp, what, err);
            } else if (resp.status == 404 || resp.status == 400) {
                /* the session is gone: closed by a PUT whose answer was lost
                 * (the blob is there), or dropped (a new one, from byte 0) */
                sbx_error_clear(err);
                int have = reg_blob_exists(c, u->digest, err);
                if (have == 1) { /* there: done */
                    reg_resp_clear(&resp);
                    rc = 0;
                    break;
                }
                if (have == 0) {
                    sbx__log(reg_client_ctx(c), SBX_LOG_INFO, "%s: '%s' dropped the upload; "
                             "sending the blob again from the start", what, reg_client_name(c));
                    free(loc);
                    loc = NULL;
                    rc = start_session(c, u, false, what, &loc, &chunk_min, err);
                    off = 0;
                    ask = false;
                } else {
                    rc = have;
                }
            }
            reg_resp_clear(&resp);
            if (rc < 0)
                break;
            continue;
        }
        bool patch = chunk && !reg_client_patch_refused(c) && u->len - off > chunk;
        uint64_t n = patch ? chunk : u->len - off;
        char crange[64] = "";
        if (patch || off > 0)
            snprintf(crange, sizeof crange, "%" PRIu64 "-%" PRIu64, off, off + n - (n > 0));
        _cleanup_free_ char *url =
            patch ? strdup(loc)
                  : sbx__strdup_printf("%s%cdigest=%s", loc, strchr(loc, '?') ? '&' : '?',
                                       u->digest);
        if (!url) {
            rc = sbx_error_set(err, SBX_ENOMEM, "out of memory");
            break;
        }
        reg_req rq = {.method = patch ? "PATCH" : "PUT", .url = url, .what = what,
                      .content_type = "application/octet-stream", .body = u->buf,
                      .body_fd = u->fd, .body_off = off, .body_len = n,
                      .content_range = crange[0] && n > 0 ? crange : NULL,
                      .progress_id = u->progress_id, .progress_total = u->len, .once = true};
        rc = reg_request(c, &rq, &resp, err);
        if (rc == 0 && patch) {
            int64_t held = resp.range[0] ? held_bytes(resp.range) : (int64_t)(off + n);
            if (follow(&loc, &resp) < 0) {
                rc = sbx_error_set(err, SBX_ENET, "%s: '%s' gave an unusable upload location",
                                   what, reg_client_name(c));
            } else if (held <= (int64_t)off || (uint64_t)held > u->len) {
                /* no progress, or more than the blob: ask again (bounded) */
                rc = sbx_error_set(err, SBX_ENET, "%s: '%s' says the upload holds '%s' after "
                                   "bytes %s", what, reg_client_name(c), resp.range, crange);
                resp.transient = true;
            } else {
                off = (uint64_t)held;
            }
        } else if (rc == 0) {
            if (resp.status != 201 && resp.status != 204)
                rc = sbx_error_set(err, SBX_ENET, "%s: '%s' answered HTTP %ld to the upload",
                                   what, reg_client_name(c), resp.status);
            else if (resp.docker_digest[0] && strcmp(resp.docker_digest, u->digest) != 0)
                rc = sbx_error_set(err, SBX_EDIGEST, "%s: '%s' stored it as '%s'", what,
                                   reg_client_name(c), resp.docker_digest);
            reg_resp_clear(&resp);
            break; /* done, or a final answer */
        }
        if (rc < 0 && patch && (resp.status == 405 || resp.status == 501)) {
            /* the refused PATCH took nothing: the rest goes in the PUT */
            sbx__log(reg_client_ctx(c), SBX_LOG_DEBUG, "%s: '%s' refuses chunked uploads; "
                     "one PUT from here", what, reg_client_name(c));
            reg_client_refuse_patch(c);
            sbx_error_clear(err);
            rc = 0;
        } else if (rc < 0 && (resp.transient || resp.status == 404 || resp.status == 416)) {
            /* 404: the session is gone; 416: it holds other bytes than we
             * thought (a body libcurl sent again); the status tells */
            rc = reg_retry_pause(c, ++failures, &resp, what, err);
            ask = true;
        }
        reg_resp_clear(&resp);
        if (rc < 0)
            break;
    }
    free(loc);
    return rc < 0 ? rc : 0;
}
