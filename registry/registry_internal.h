/* Internal interfaces of the registry client (not installed).
 *
 * Layers:  auth.c                 WWW-Authenticate parsing, token cache, credentials
 *          config.c               registries.json, certs.d, environment knobs
 *          http.c                 one registry endpoint: scheme, auth, retries, redirects
 * *          blob.c                 streamed layer download into the store
 *          pull.c resolve.c inspect.c   the public operations */
#ifndef SBX_REGISTRY_INTERNAL_H
#define SBX_REGISTRY_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "sbx/registry.h"
#include "sbx_common.h"

/* ---- limits (the image model's are in sbx/image.h) ----------------------- */
#define REG_ERRBODY_MAX 4096         /* error bodies kept for messages */
#define REG_TOKEN_MAX (64u << 10)    /* token endpoint answers */
#define REG_MAX_REDIRECTS 5
#define REG_RETRY_AFTER_MAX 60
#define REG_CACHE_KEY_MAX 900

/* What a manifest GET accepts: the four types the image model reads. */
#define REG_ACCEPT                                                                        \
    SBX_MT_OCI_INDEX ", " SBX_MT_OCI_MANIFEST ", " SBX_MT_DOCKER_LIST ", " SBX_MT_DOCKER_MANIFEST

/* ---- auth ------------------------------------------------------------------ */
typedef struct reg_challenge {
    char scheme[16];   /* "bearer" or "basic" (lowercased); "" when none usable */
    char realm[1024];
    char service[256];
    char scope[1024];
    char error[64];    /* error="insufficient_scope" etc. */
} reg_challenge;

/* Parse a WWW-Authenticate header value (RFC 7235: one or more challenges,
 * auth-params with token or quoted-string values).  Picks the first Bearer
 * challenge, else the first Basic one.  SBX_EINVAL on malformed input or
 * when no Bearer/Basic challenge is present. */
int reg_challenge_parse(reg_challenge *out, const char *header, sbx_error *err);

typedef struct reg_creds {
    char *username;
    char *password;
    char *identity_token; /* OAuth2 refresh token */
    char *registry_token; /* a bearer token used as is */
} reg_creds;
void reg_creds_clear(reg_creds *c); /* wipes and frees the strings */
bool reg_creds_empty(const reg_creds *c);

/* Look up credentials for host ("docker.io", "127.0.0.1:5000") in a Docker
 * config file (path NULL = $DOCKER_CONFIG/config.json or ~/.docker/config.json):
 * credHelpers[host], else auths[host] (auth base64, username/password,
 * identitytoken), else credsStore.  0 when found, SBX_ENOTFOUND when the config
 * has nothing for host, other codes on a broken config or helper. */
int reg_docker_creds(reg_creds *out, const char *config_path, const char *host,
                     sbx_error *err);
/* Credentials for a repository when none were given per call: opts'
 * authfile alone when set, else REGISTRY_AUTH_FILE (or the runtime dir's
 * containers/auth.json), the config dir's containers/auth.json, then the
 * Docker config; keys naming the repository or a namespace of it win over
 * the registry's.  SBX_ENOTFOUND when none has any. */
int reg_lookup_creds(reg_creds *out, const sbx_registry_options *opts, const char *host,
                     const char *repo_path, sbx_error *err);
/* The auth file login writes: opts' authfile, REGISTRY_AUTH_FILE,
 * $XDG_RUNTIME_DIR/containers/auth.json, /run/containers/UID/auth.json. */
char *reg_default_authfile(const sbx_registry_options *opts);
/* Run docker-credential-<helper> get for server (exposed for tests). */
int reg_cred_helper_get(reg_creds *out, const char *helper, const char *server,
                        sbx_error *err);

/* Parse a token endpoint answer: token or access_token, expires_in (default 60). */
int reg_token_parse(char **token_out, int64_t *expires_in, const char *body, size_t len,
                    sbx_error *err);

/* Process-wide token cache keyed by (realm, service, scope, credential identity). */
char *reg_token_cache_get(const char *key);
void reg_token_cache_put(const char *key, const char *token, int64_t expires_in);

/* base64 helpers (OpenSSL). Caller frees. */
char *reg_base64_encode(const void *data, size_t len);
int reg_base64_decode(char **out, size_t *outlen, const char *in, sbx_error *err);

/* ---- configuration --------------------------------------------------------- */
typedef struct reg_config {
    char **insecure;
    size_t ninsecure;
    char **mirrors; /* for docker.io, "scheme://host[:port][/prefix]" */
    size_t nmirrors;
} reg_config;
int reg_config_load(reg_config *out, const char *path, sbx_error *err);
void reg_config_free(reg_config *c);
bool reg_config_is_insecure(const reg_config *c, const char *host);
bool reg_host_is_loopback(const char *host);
const char *reg_certs_dir(const sbx_registry_options *opts);

/* ---- HTTP client for one endpoint ------------------------------------------ */
typedef struct reg_client reg_client;

typedef struct reg_resp {
    long status;
    char content_type[256];
    char docker_digest[SBX_DIGEST_BUFSZ + 8];
    char content_range[128];
    char www_authenticate[2048];
    char location[4096];
    char retry_after[64];
    int64_t content_length; /* -1 when absent */
    char *body;             /* buffered body (NUL-terminated) when no sink */
    size_t len;
    char range[64];         /* an upload's "Range: 0-N" */
    int64_t chunk_min;      /* OCI-Chunk-Min-Length; 0 when absent */
    bool transient;         /* a `once` request failed in a way worth trying again */
} reg_resp;
void reg_resp_clear(reg_resp *r);

/* A streaming body consumer for GETs of large blobs.  `offset` is how many
 * bytes were consumed so far: a retry asks for Range from there. */
typedef struct reg_sink {
    /* Called with body bytes of a 200/206; nonzero aborts the transfer. */
    int (*write)(void *ud, const void *buf, size_t len);
    /* Start over from byte 0 (the server ignored or botched our Range). */
    int (*reset)(void *ud, sbx_error *err);
    void *ud;
    uint64_t offset;
    uint64_t size;  /* the whole body's bytes when known (a blob's), else 0 */
    sbx_error *err; /* where write() puts its error */
} reg_sink;

/* Create a client for `ref`'s repository at `endpoint` ("" = the ref's own
 * registry; else a mirror base URL).  Loads credentials (per-call or Docker
 * config), CA and scheme rules. */
int reg_client_new(reg_client **out, const sbx_ref *ref, const char *endpoint,
                   const sbx_registry_options *opts, const reg_config *cfg, sbx_ctx *ctx,
                   sbx_error *err);
void reg_client_free(reg_client *c);
/* A sibling client for another thread: same endpoint, own curl handle. */
int reg_client_clone(reg_client **out, reg_client *c, sbx_error *err);
const char *reg_client_name(const reg_client *c); /* "host[:port]" for messages */
const char *reg_client_repo(const reg_client *c); /* the repository's path */
const sbx_registry_options *reg_client_opts(const reg_client *c); /* NULL: defaults */
/* Record in the store what was learned about the endpoint's scheme (main
 * thread only: store handles are one thread at a time). */
void reg_client_remember(reg_client *c, sbx_store *store);
/* Transfers of c stop soon after *flag becomes nonzero (read atomically):
 * a sibling download failed.  They also stop when the context is cancelled
 * (SBX_ECANCELED). */
void reg_client_set_cancel(reg_client *c, const volatile int *flag);
/* A sibling with no credentials at all: what an anonymous caller gets. */
int reg_client_anonymous(reg_client **out, reg_client *c, sbx_error *err);
/* Did a request of c carry the credentials (basic, or a token they got)? */
bool reg_client_sent_creds(const reg_client *c);
/* Who c's credentials are, as a keyed hash (HMAC-SHA256 under the store's
 * key, hex) of the host and the secrets; "anonymous" without any. */
#define REG_IDENTITY_BUFSZ (SBX_SHA256_HEXLEN + 1)
void reg_client_identity(const reg_client *c, const unsigned char key[32],
                         char out[REG_IDENTITY_BUFSZ]);
/* Tokens asked for from now on carry push scope ("pull,push"). */
void reg_client_set_push(reg_client *c);
/* The context of the call the client serves. */
sbx_ctx *reg_client_ctx(const reg_client *c);

/* GET /v2/ with the client's credentials (tokens asked for without a
 * scope, as docker login does): 0 when the registry accepts them. */
int reg_ping(reg_client *c, sbx_error *err);
/* Fetch a manifest by tag or digest (HEAD when head_only); buffered, limited
 * to SBX_MANIFEST_MAX.  SBX_ENOTFOUND on 404. */
int reg_get_manifest(reg_client *c, const char *reference, bool head_only, reg_resp *resp,
                     sbx_error *err);
/* Fetch a small blob into memory, refusing more than max bytes, verified
 * against digest. */
int reg_get_blob_small(reg_client *c, const char *digest, size_t max, char **out, size_t *len,
                       sbx_error *err);
/* Stream a blob into sink, resuming with Range on interruption, and asking
 * again for the rest after a 206 that ends short of sink->size (a server
 * that limits the length of ranges). */
int reg_get_blob_stream(reg_client *c, const char *digest, reg_sink *sink, sbx_error *err);
/* Stream an absolute URL (redirects followed, no credentials) into sink,
 * resuming as blobs do; what names it in messages. */
int reg_get_url(reg_client *c, const char *url, const char *what, reg_sink *sink,
                sbx_error *err);

/* Push: whether the repository has a blob (HEAD: 1 yes, 0 no); put a
 * manifest under a tag or digest. */
int reg_blob_exists(reg_client *c, const char *digest, sbx_error *err);
int reg_put_manifest(reg_client *c, const char *reference, const char *media_type,
                     const char *body, size_t len, sbx_error *err);

/* One request with the client's auth, redirects and (unless once) retries. */
typedef struct reg_req {
    const char *method;
    const char *path; /* "/v2/..." */
    const char *url;  /* instead of path: an absolute URL (an upload's Location) */
    const char *accept;
    size_t max_body;
    reg_sink *sink;
    const char *what;         /* "fetching manifest 'x'" for messages */
    const char *content_type; /* PUT, PATCH */
    const char *body;         /* PUT, PATCH: a buffer ... */
    int body_fd;              /* ... or a file (body NULL) */
    uint64_t body_off, body_len; /* the bytes sent: [body_off, body_off + body_len) */
    const char *content_range;
    const char *progress_id;  /* upload progress ("push" events) under this id */
    uint64_t progress_total;
    /* No retry: a failure worth another try returns an error with
     * resp->transient set, for the caller to decide (an upload asks the
     * registry where it stands first).  2xx (and 204) are success. */
    bool once;
} reg_req;
int reg_request(reg_client *c, const reg_req *rq, reg_resp *resp, sbx_error *err);
/* After the failed attempt number `attempt` (err says why): wait as a retry
 * does (Retry-After of r, else backoff) and clear err; or, past the retry
 * bound, keep err and say so. */
int reg_retry_pause(reg_client *c, int attempt, const reg_resp *r, const char *what,
                    sbx_error *err);
/* The client's base URL + path, and a Location resolved against a URL
 * (caller frees both). */
char *reg_client_url(const reg_client *c, const char *path);
char *reg_resolve_location(const char *cur, const char *loc);
/* The registry answered a PATCH with 405 or 501: no more chunked uploads. */
bool reg_client_patch_refused(const reg_client *c);
void reg_client_refuse_patch(reg_client *c);

/* Upload one blob (upload.c): POST for a session (first asking to mount it
 * from repository mount_from, when set), then, for a blob larger than
 * `chunk` (0: never), PATCHes of `chunk` bytes, and a PUT ?digest= with the
 * rest.  After a failure worth another try it asks the registry where the
 * upload stands (GET on the session) and goes on from there, or starts a
 * new session when the registry dropped it.  1 when mounted, 0 when sent. */
typedef struct reg_upload {
    const char *digest;
    int fd;           /* the body: a file (buf NULL), read with pread ... */
    const char *buf;  /* ... or a buffer */
    uint64_t len;
    const char *mount_from;
    uint64_t chunk;
    const char *progress_id;
} reg_upload;
int reg_put_blob(reg_client *c, const reg_upload *u, sbx_error *err);

/* ---- transfers on worker threads (jobs.c) ---------------------------------- */

/* Job i of a batch, run on a worker's own client and store handle (the
 * caller's when the batch runs inline). */
typedef int (*reg_job_fn)(void *ud, size_t i, reg_client *c, sbx_store *store, sbx_error *err);
typedef struct reg_workers reg_workers;
/* Run njobs jobs, `parallel` at once (inline when 1 or a single job), on
 * clones of client; with own_stores each worker opens its own handle on
 * store's root, else fn gets a NULL store on a worker (the caller's when
 * inline).  The
 * first failure cancels the others' transfers and is returned.  *out keeps
 * the workers' handles open until reg_workers_free (pull keeps their store
 * leases until the manifest is stored). */
int reg_run_jobs(size_t njobs, unsigned parallel, reg_client *client, sbx_store *store,
                 bool own_stores, reg_job_fn fn, void *ud, reg_workers **out, sbx_error *err);
void reg_workers_free(reg_workers *w);

/* ---- blobs ----------------------------------------------------------------- */

/* Download one layer into store: verify compressed digest and size against
 * desc, diff_id against expected_diff_id; record the source.  progress_id
 * names the layer in progress events. */
int reg_pull_layer(reg_client *c, sbx_store *store, const sbx_descriptor *desc,
                   const char *expected_diff_id, const char *progress_id, sbx_error *err);


/* ---- shared operations ----------------------------------------------------- */
int reg_global_init(sbx_error *err);
/* Close the idle pooled handles and their connections. */
void reg_close_idle(void);
/* Open clients in order (mirrors first for docker.io, then the source). */
typedef struct reg_session {
    sbx_ref ref;
    sbx_platform want;
    reg_config cfg;
    const sbx_registry_options *opts;
    sbx_ctx *ctx;
    bool parsed; /* ref parsed: errors name it ("pulling 'x': ...") */
} reg_session;
int reg_session_init(reg_session *s, const char *ref, const sbx_registry_options *opts,
                     sbx_ctx *ctx, sbx_error *err);
void reg_session_free(reg_session *s);

/* Fetch the manifest the ref names and, for an index, the platform's
 * manifest, verified; tries mirrors then the source.  On success *client is
 * the endpoint that answered (caller frees). */
typedef struct reg_fetched {
    char top_digest[SBX_DIGEST_BUFSZ];
    char top_media_type[128];
    char *top_raw;
    size_t top_len;
    sbx_manifest top;
    char digest[SBX_DIGEST_BUFSZ];
    char media_type[128];
    char *raw; /* the platform manifest (== top_raw's copy when not an index) */
    size_t len;
    sbx_manifest image;
} reg_fetched;
int reg_fetch_image(reg_fetched *out, reg_client **client, reg_session *s, sbx_error *err);
void reg_fetched_free(reg_fetched *f);

/* Store meta namespace: normalized ref -> digest of what it named at the last
 * pull (an index or the manifest), so inspect can show every platform. */
#define REG_META_TOP "ref-top"
/* Store meta namespace: host -> "http" for a loopback/insecure registry that
 * did not speak TLS, so later runs skip the failing handshake. */
#define REG_META_SCHEME "scheme"
/* ---- private content (access.c) -------------------------------------------- */
/* "host/path" of a ref: the unit of access. */
#define REG_REPO_BUFSZ (SBX_REF_DOMAIN_MAX + SBX_REF_PATH_MAX + 2)
void reg_repo_of(char *buf, size_t len, const sbx_ref *ref);
/* After client c fetched ref_digest from its repository: remember that the
 * caller may pull from it, and find out (cached per repository) whether an
 * anonymous caller may: *is_private when not.  Never fails: an anonymous
 * probe that cannot be made counts as private. */
void reg_access_learn(bool *is_private, reg_client *c, sbx_store *s, const char *repo,
                      const char *ref_digest, const sbx_registry_options *opts);
/* May the caller described by opts (its credentials, else the Docker
 * config) pull repo@ref_digest?  Cached per identity and repository for
 * $SBX_ACCESS_TTL seconds; else a manifest HEAD.  0, SBX_EAUTH, or the
 * network's error when the registry cannot be asked (and policy does not
 * allow a known identity through). */
int reg_access_check(sbx_store *s, const char *repo, const char *ref_digest,
                     const sbx_registry_options *opts, sbx_ctx *ctx, sbx_error *err);

/* Resolve cache key in the store's "resolve" meta namespace: "<ref> <platform>". */
void reg_cache_key(char *buf, size_t len, const sbx_ref *ref, const sbx_platform *want);
/* Its value: "<digest> <media type> <what the ref names> public|private". */
void reg_cache_value(char *buf, size_t len, const char *digest, const char *media_type,
                     const char *top, bool is_private);

#endif
