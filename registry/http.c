/* One registry endpoint over libcurl: scheme choice, auth, retries, redirects.
 *
 * - Scheme: https, verified, with <certs_dir>/<host>/ca.crt when present.
 *   Loopback and insecure-listed registries fall back to http only when the
 *   server does not speak TLS; a certificate that fails verification is an
 *   error that says where the CA goes.
 * - Auth: requests go out without credentials until a 401 challenge
 *   decides Bearer or Basic (no /v2/ ping: one round trip less).  Bearer tokens come from the realm (anonymous, with basic
 *   credentials, or an OAuth2 refresh token) and are cached per
 *   (realm, service, scope, credentials) until they expire.
 * - Redirects are followed here, not by curl: the Authorization header goes
 *   only to the registry's own origin, never to a CDN or another scheme.
 * - 429, 5xx and transport failures are retried with exponential backoff
 *   that honors Retry-After (up to REG_RETRY_AFTER_MAX seconds).  A streamed
 *   blob resumes with Range and accepts only a 206 starting where it stopped.
 * - Stalls: a progress callback abandons a transfer after SBX_STALL_TIMEOUT
 *   seconds without a byte (libcurl's LOW_SPEED_* averages and reacts late).
 * - Connections outlive a client: a freed client's curl handle goes to a
 *   small process-wide pool with its open connections, so the next resolve
 *   in the same process (the control plane makes one per sandbox create)
 *   skips the TCP and TLS handshakes.  A handle serves one client at a time,
 *   so no connection is ever used by two threads at once (libcurl does not
 *   support sharing one connection cache between threads).  Sockets are
 *   close-on-exec, so the OCI runtimes a build starts never inherit them.
 * Secrets never appear in logs or errors; URLs logged carry none. */
#include <errno.h>
#include <poll.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "curl_lazy.h"
#include "registry_internal.h"

typedef enum { AUTH_UNKNOWN = 0, AUTH_NONE, AUTH_BEARER, AUTH_BASIC } auth_kind;

struct reg_client {
    CURL *curl;
    sbx_ref ref;
    char host[SBX_REF_DOMAIN_MAX + 1]; /* host[:port]: creds, certs, messages */
    char base[1200];                   /* "https://host:port" or a mirror URL */
    bool fixed_scheme;                 /* mirror URL: no probing */
    bool may_fallback_http;            /* loopback or insecure */
    bool http_from_memory;             /* plain HTTP because the store remembered it */
    bool learned_http;                 /* fell back to plain HTTP in this session */
    bool unlearned_http;               /* remembered plain HTTP turned out wrong */
    bool probed;                       /* TLS probe done (or not needed) */
    const volatile int *cancel;        /* nonzero: abandon transfers (a sibling failed) */
    sbx_ctx *ctx;                      /* the call's: logs, and its cancel ends transfers */
    char certs_dir[PATH_MAX];
    reg_creds creds;
    auth_kind auth;
    bool push;                         /* ask for tokens with push scope */
    bool sent_creds;                   /* a request carried what the credentials got */
    bool login;                        /* tokens without a scope (reg_ping) */
    reg_challenge chal;
    char *token;
    char token_key[SBX_DIGEST_BUFSZ];
    char cred_id[SBX_DIGEST_BUFSZ];
    const sbx_registry_options *opts;
    const reg_config *cfg;
    int retry_max;
    int64_t retry_base_ms;
    long stall;
    bool no_patch;                     /* the registry refused a chunked upload */
};

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_rc;
static void curl_init_once(void) { g_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

int reg_global_init(sbx_error *err)
{
    int rc = reg_curl_load(err);
    if (rc < 0)
        return rc;
    pthread_once(&g_curl_once, curl_init_once);
    if (g_curl_rc != CURLE_OK)
        return sbx_error_set(err, SBX_EINTERNAL, "initialising libcurl: %s",
                             curl_easy_strerror(g_curl_rc));
    return 0;
}

int sbx_registry_global_init(sbx_error *err) { return reg_global_init(err); }

const char *reg_client_name(const reg_client *c) { return c->host; }
const char *reg_client_repo(const reg_client *c) { return c->ref.path; }
const sbx_registry_options *reg_client_opts(const reg_client *c) { return c->opts; }

void reg_resp_clear(reg_resp *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
    r->content_length = -1;
}

/* ---- client lifecycle ------------------------------------------------------- */

static void cred_identity(reg_client *c)
{
    _cleanup_free_ char *s = sbx__strdup_printf(
        "%s\n%s\n%s\n%s", c->creds.username ? c->creds.username : "",
        c->creds.password ? c->creds.password : "",
        c->creds.identity_token ? c->creds.identity_token : "",
        c->creds.registry_token ? c->creds.registry_token : "");
    if (reg_creds_empty(&c->creds) || !s)
        snprintf(c->cred_id, sizeof c->cred_id, "anonymous");
    else
        sbx__sha256_buf(s, strlen(s), c->cred_id);
    if (s)
        OPENSSL_cleanse(s, strlen(s));
}

static int dup_creds(reg_creds *dst, const reg_creds *src)
{
    memset(dst, 0, sizeof *dst);
#define DUP(f) if (src->f && !(dst->f = strdup(src->f))) return SBX_ENOMEM;
    DUP(username) DUP(password) DUP(identity_token) DUP(registry_token)
#undef DUP
    return 0;
}

/* ---- idle handles and their connections --------------------------------- */

#define REG_POOL_MAX 8
static pthread_mutex_t g_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static CURL *g_pool[REG_POOL_MAX];
static size_t g_pool_n;

static CURL *pool_take(void)
{
    CURL *h = NULL;
    pthread_mutex_lock(&g_pool_mu);
    if (g_pool_n)
        h = g_pool[--g_pool_n];
    pthread_mutex_unlock(&g_pool_mu);
    return h ? h : curl_easy_init();
}

static void pool_give(CURL *h)
{
    curl_easy_reset(h); /* drops the options, keeps the connections */
    pthread_mutex_lock(&g_pool_mu);
    if (g_pool_n < REG_POOL_MAX) {
        g_pool[g_pool_n++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&g_pool_mu);
    if (h)
        curl_easy_cleanup(h);
}

void reg_close_idle(void)
{
    CURL *idle[REG_POOL_MAX];
    pthread_mutex_lock(&g_pool_mu);
    size_t n = g_pool_n;
    memcpy(idle, g_pool, n * sizeof *idle);
    g_pool_n = 0;
    pthread_mutex_unlock(&g_pool_mu);
    for (size_t i = 0; i < n; i++)
        curl_easy_cleanup(idle[i]);
}

void sbx_registry_close_idle(void) { reg_close_idle(); }

/* ---- schemes learned in this process -------------------------------------- */

/* For hosts that may speak plain HTTP (loopback, insecure-listed): what this
 * process found, so a second call neither probes again nor needs a store
 * (which remembers it across processes). */
#define REG_SCHEMES_MAX 32
static pthread_mutex_t g_schemes_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char host[SBX_REF_DOMAIN_MAX + 1];
    bool http;
} g_schemes[REG_SCHEMES_MAX];
static size_t g_schemes_n, g_schemes_next;

/* 1: plain HTTP, 0: TLS, -1: not known. */
static int scheme_get(const char *host)
{
    int r = -1;
    pthread_mutex_lock(&g_schemes_mu);
    for (size_t i = 0; i < g_schemes_n && r < 0; i++)
        if (!strcmp(g_schemes[i].host, host))
            r = g_schemes[i].http;
    pthread_mutex_unlock(&g_schemes_mu);
    return r;
}

static void scheme_put(const char *host, bool http)
{
    pthread_mutex_lock(&g_schemes_mu);
    size_t i = 0;
    while (i < g_schemes_n && strcmp(g_schemes[i].host, host))
        i++;
    if (i == g_schemes_n) {
        if (g_schemes_n < REG_SCHEMES_MAX)
            g_schemes_n++;
        else
            i = g_schemes_next++ % REG_SCHEMES_MAX; /* full: replace in turn */
        snprintf(g_schemes[i].host, sizeof g_schemes[i].host, "%s", host);
    }
    g_schemes[i].http = http;
    pthread_mutex_unlock(&g_schemes_mu);
}

static curl_socket_t open_socket_cb(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)ud;
    (void)purpose;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static int client_alloc(reg_client **out, sbx_error *err)
{
    reg_client *c = calloc(1, sizeof *c);
    if (!c)
        return sbx_error_set(err, SBX_ENOMEM, "creating registry client: out of memory");
    if (!(c->curl = pool_take())) {
        free(c);
        return sbx_error_set(err, SBX_EINTERNAL, "creating registry client: curl_easy_init failed");
    }
    *out = c;
    return 0;
}

int reg_client_new(reg_client **out, const sbx_ref *ref, const char *endpoint,
                   const sbx_registry_options *opts, const reg_config *cfg, sbx_ctx *ctx,
                   sbx_error *err)
{
    int rc = reg_global_init(err);
    if (rc < 0)
        return rc;
    reg_client *c;
    if ((rc = client_alloc(&c, err)) < 0)
        return rc;
    c->ref = *ref;
    c->ctx = ctx;
    c->opts = opts;
    c->cfg = cfg;
    snprintf(c->certs_dir, sizeof c->certs_dir, "%s", reg_certs_dir(opts));
    c->retry_max = (int)sbx__env_int("SBX_RETRY_MAX", 5, 1, 100, ctx);
    c->retry_base_ms = sbx__env_int("SBX_RETRY_BASE_MS", 500, 0, 60000, ctx);
    c->stall = (long)sbx__env_int("SBX_STALL_TIMEOUT", 30, 1, 3600, ctx);
    if (endpoint && *endpoint) {
        /* a mirror: "scheme://host[:port][/prefix]" */
        size_t n = strlen(endpoint);
        while (n && endpoint[n - 1] == '/')
            n--;
        snprintf(c->base, sizeof c->base, "%.*s", (int)n, endpoint);
        const char *h = strstr(c->base, "://") + 3;
        snprintf(c->host, sizeof c->host, "%.*s", (int)strcspn(h, "/"), h);
        c->fixed_scheme = true;
    } else {
        const char *d = ref->domain;
        snprintf(c->host, sizeof c->host, "%s", d);
        if (!strcmp(d, "docker.io"))
            snprintf(c->base, sizeof c->base, "https://registry-1.docker.io");
        else
            snprintf(c->base, sizeof c->base, "https://%s", d);
        c->may_fallback_http = reg_host_is_loopback(d) || (cfg && reg_config_is_insecure(cfg, d));
        /* A host that did not speak TLS last time: start with plain HTTP and
         * skip the failing handshake (and loading the CA bundle for it). */
        _cleanup_free_ char *mem = NULL;
        int64_t stamp;
        sbx_error merr = SBX_ERROR_INIT;
        if (c->may_fallback_http && opts && opts->store &&
            sbx_store_meta_get(opts->store, REG_META_SCHEME, d, &mem, &stamp, &merr) == 0 && mem &&
            !strcmp(mem, "http")) {
            snprintf(c->base, sizeof c->base, "http://%s", d);
            c->http_from_memory = true;
        } else if (c->may_fallback_http) {
            int known = scheme_get(d);
            if (known == 1) {
                snprintf(c->base, sizeof c->base, "http://%s", d);
                c->http_from_memory = true;
            } else if (known == 0) {
                c->probed = true;
            }
        }
    }
    /* Credentials: per call for the ref's own registry, else Docker config. */
    bool per_call = opts && (opts->username || opts->password || opts->identity_token ||
                             opts->registry_token);
    if (per_call && !c->fixed_scheme) {
#define SETC(f) if (opts->f && !(c->creds.f = strdup(opts->f))) rc = SBX_ENOMEM;
        SETC(username) SETC(password) SETC(identity_token) SETC(registry_token)
#undef SETC
        if (rc < 0) {
            reg_client_free(c);
            return sbx_error_set(err, SBX_ENOMEM, "copying credentials: out of memory");
        }
    } else {
        rc = reg_lookup_creds(&c->creds, opts, c->fixed_scheme ? c->host : ref->domain,
                              ref->path, err);
        if (rc < 0 && rc != SBX_ENOTFOUND) {
            reg_client_free(c);
            return rc;
        }
        rc = 0;
    }
    cred_identity(c);
    *out = c;
    return 0;
}

int reg_client_clone(reg_client **out, reg_client *src, sbx_error *err)
{
    reg_client *c;
    int rc = client_alloc(&c, err);
    if (rc < 0)
        return rc;
    CURL *curl = c->curl;
    *c = *src;
    c->curl = curl;
    c->token = src->token ? strdup(src->token) : NULL;
    if (dup_creds(&c->creds, &src->creds) < 0 || (src->token && !c->token)) {
        reg_client_free(c);
        return sbx_error_set(err, SBX_ENOMEM, "creating registry client: out of memory");
    }
    *out = c;
    return 0;
}

int reg_client_anonymous(reg_client **out, reg_client *src, sbx_error *err)
{
    int rc = reg_client_clone(out, src, err);
    if (rc < 0)
        return rc;
    reg_client *c = *out;
    reg_creds_clear(&c->creds);
    if (c->token) {
        OPENSSL_cleanse(c->token, strlen(c->token));
        free(c->token);
        c->token = NULL;
    }
    c->auth = AUTH_UNKNOWN;
    c->sent_creds = false;
    c->token_key[0] = '\0';
    cred_identity(c);
    return 0;
}

bool reg_client_sent_creds(const reg_client *c) { return c->sent_creds; }

void reg_client_identity(const reg_client *c, const unsigned char key[32],
                         char out[REG_IDENTITY_BUFSZ])
{
    if (reg_creds_empty(&c->creds)) {
        snprintf(out, REG_IDENTITY_BUFSZ, "anonymous");
        return;
    }
    /* the same fields cred_identity hashes, keyed: the store never holds
     * anything a password could be recovered or tried against from */
    _cleanup_free_ char *s = sbx__strdup_printf(
        "%s\n%s\n%s\n%s\n%s", c->host, c->creds.username ? c->creds.username : "",
        c->creds.password ? c->creds.password : "",
        c->creds.identity_token ? c->creds.identity_token : "",
        c->creds.registry_token ? c->creds.registry_token : "");
    if (!s || sbx__hmac_sha256_hex(key, s, strlen(s), out) < 0)
        snprintf(out, REG_IDENTITY_BUFSZ, "unknown"); /* matches no cached verdict */
    if (s)
        OPENSSL_cleanse(s, strlen(s));
}

void reg_client_set_cancel(reg_client *c, const volatile int *flag) { c->cancel = flag; }

void reg_client_set_push(reg_client *c) { c->push = true; }

sbx_ctx *reg_client_ctx(const reg_client *c) { return c->ctx; }

void reg_client_remember(reg_client *c, sbx_store *store)
{
    if (!store || !(c->learned_http || c->unlearned_http))
        return;
    sbx_error e = SBX_ERROR_INIT;
    sbx_store_meta_set(store, REG_META_SCHEME, c->host, c->learned_http ? "http" : "https", &e);
}

void reg_client_free(reg_client *c)
{
    if (!c)
        return;
    if (c->curl)
        pool_give(c->curl);
    reg_creds_clear(&c->creds);
    if (c->token) {
        OPENSSL_cleanse(c->token, strlen(c->token));
        free(c->token);
    }
    free(c);
}

/* ---- one transfer ------------------------------------------------------------ */

typedef struct xfer {
    reg_resp *resp;
    size_t max_body;   /* buffered bodies of 2xx */
    reg_sink *sink;    /* streamed bodies of 200/206 */
    uint64_t range_from;
    bool started;      /* first body byte seen */
    bool bad_range;    /* 206 not starting where asked */
    int abort_code;    /* our own reason to abort */
    bool sink_failed;  /* ... given by the sink, its message already in err */
    sbx_error *err;
    size_t cap;
    curl_off_t last_now;  /* stall watch: bytes seen at the last progress */
    uint64_t last_ns;
    uint64_t stall_ns;
    bool stalled;
    const volatile int *cancel;
    const sbx_ctx *ctx;
    curl_off_t last_ul;   /* the same for an upload */
    /* an upload's body: bytes [up_base, up_base + up_len) of a buffer or
     * a file; up_off counts what was read */
    const char *up_buf;
    int up_fd;
    uint64_t up_base, up_len, up_off;
    bool read_failed;    /* the upload's file could not be read */
    const char *prog_id; /* upload progress under this id, of prog_total */
    uint64_t prog_total, last_emit_ns;
} xfer;

static size_t read_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    xfer *x = ud;
    size_t want = size * nitems;
    uint64_t left = x->up_len - x->up_off;
    if (want > left)
        want = (size_t)left;
    if (want == 0)
        return 0;
    if (x->up_buf) {
        memcpy(buf, x->up_buf + x->up_base + x->up_off, want);
    } else {
        ssize_t n;
        while ((n = pread(x->up_fd, buf, want, (off_t)(x->up_base + x->up_off))) < 0 &&
               errno == EINTR)
            ;
        if (n <= 0) {
            x->read_failed = true;
            return CURL_READFUNC_ABORT; /* the file shrank or failed: fail the request */
        }
        want = (size_t)n;
    }
    x->up_off += want;
    uint64_t now = sbx__now_monotonic_ns();
    if (x->prog_id && now - x->last_emit_ns > 100000000ull) {
        x->last_emit_ns = now;
        sbx__progress(x->ctx, x->prog_id, "push", x->up_base + x->up_off, x->prog_total);
    }
    return want;
}

/* libcurl rewinds an upload's body when it sends the request again (a
 * reused connection that turned out closed, an auth round). */
static int seek_cb(void *ud, curl_off_t offset, int origin)
{
    xfer *x = ud;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > x->up_len)
        return CURL_SEEKFUNC_CANTSEEK;
    x->up_off = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* libcurl's LOW_SPEED_* averages speed over a window, so a silent body is
 * only noticed seconds late; this watches for no new byte at all. */
static int xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    xfer *x = ud;
    if ((x->cancel && __atomic_load_n(x->cancel, __ATOMIC_RELAXED)) || sbx_ctx_cancelled(x->ctx))
        return 1;
    uint64_t now = sbx__now_monotonic_ns();
    if (dlnow != x->last_now || ulnow != x->last_ul) {
        x->last_now = dlnow;
        x->last_ul = ulnow;
        x->last_ns = now;
        return 0;
    }
    if (now - x->last_ns > x->stall_ns) {
        x->stalled = true;
        return 1;
    }
    return 0;
}

static void trim_copy(char *dst, size_t len, const char *v, size_t vlen)
{
    while (vlen && (v[0] == ' ' || v[0] == '\t'))
        v++, vlen--;
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    if (vlen >= len)
        vlen = len - 1;
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    xfer *x = ud;
    size_t n = size * nitems;
    reg_resp *r = x->resp;
    if (n >= 5 && !strncmp(buf, "HTTP/", 5)) {
        /* a new response (after 100-continue, or our own hop): reset fields */
        char *b = r->body;
        memset(r, 0, sizeof *r);
        r->body = b;
        r->content_length = -1;
        const char *sp = memchr(buf, ' ', n);
        if (sp)
            r->status = strtol(sp + 1, NULL, 10);
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon)
        return n;
    size_t kl = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vl = n - kl - 1;
#define HDR(name) (kl == sizeof(name) - 1 && !strncasecmp(buf, name, kl))
    if (HDR("content-type"))
        trim_copy(r->content_type, sizeof r->content_type, v, vl);
    else if (HDR("docker-content-digest"))
        trim_copy(r->docker_digest, sizeof r->docker_digest, v, vl);
    else if (HDR("content-range"))
        trim_copy(r->content_range, sizeof r->content_range, v, vl);
    else if (HDR("www-authenticate") && !r->www_authenticate[0])
        trim_copy(r->www_authenticate, sizeof r->www_authenticate, v, vl);
    else if (HDR("location"))
        trim_copy(r->location, sizeof r->location, v, vl);
    else if (HDR("retry-after"))
        trim_copy(r->retry_after, sizeof r->retry_after, v, vl);
    else if (HDR("range"))
        trim_copy(r->range, sizeof r->range, v, vl);
    else if (HDR("oci-chunk-min-length")) {
        char tmp[32], *end;
        trim_copy(tmp, sizeof tmp, v, vl);
        errno = 0;
        long long m = strtoll(tmp, &end, 10);
        if (!errno && *end == '\0' && m > 0)
            r->chunk_min = m;
    }
    else if (HDR("content-length")) {
        char tmp[32];
        trim_copy(tmp, sizeof tmp, v, vl);
        char *end;
        errno = 0;
        long long cl = strtoll(tmp, &end, 10);
        if (!errno && *end == '\0' && cl >= 0)
            r->content_length = cl;
    }
#undef HDR
    return n;
}

static bool status_ok(long s) { return s == 200 || s == 206; }

/* Where a "bytes A-B/T" Content-Range starts; -1 when malformed. */
static int64_t content_range_start(const char *cr)
{
    if (strncasecmp(cr, "bytes ", 6) != 0)
        return -1;
    char *end;
    errno = 0;
    long long a = strtoll(cr + 6, &end, 10);
    if (errno || end == cr + 6 || *end != '-' || a < 0)
        return -1;
    return a;
}

static int buffer_append(xfer *x, const char *buf, size_t n, size_t max)
{
    reg_resp *r = x->resp;
    if (r->len + n > max)
        return -1;
    if (r->len + n + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 16384;
        while (cap < r->len + n + 1)
            cap *= 2;
        if (cap > max + 1)
            cap = max + 1;
        char *b = realloc(r->body, cap);
        if (!b)
            return -2;
        r->body = b;
        x->cap = cap;
    }
    memcpy(r->body + r->len, buf, n);
    r->len += n;
    r->body[r->len] = '\0';
    return 0;
}

static size_t write_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    xfer *x = ud;
    size_t n = size * nitems;
    reg_resp *r = x->resp;
    if (r->status >= 300 && r->status < 400)
        return n; /* redirect bodies are ignored */
    if (!status_ok(r->status)) {
        /* keep the start of an error body for the message */
        if (r->len < REG_ERRBODY_MAX)
            buffer_append(x, buf, n < REG_ERRBODY_MAX - r->len ? n : REG_ERRBODY_MAX - r->len,
                          REG_ERRBODY_MAX);
        return n;
    }
    if (x->sink) {
        if (!x->started) {
            x->started = true;
            if (r->status == 206) {
                if (content_range_start(r->content_range) != (int64_t)x->range_from) {
                    x->bad_range = true;
                    return 0;
                }
            } else if (x->range_from > 0) {
                /* the server sent the whole blob: start over cleanly */
                if (x->sink->reset(x->sink->ud, x->err) < 0) {
                    x->abort_code = x->err->code ? x->err->code : SBX_EINTERNAL;
                    x->sink_failed = true;
                    return 0;
                }
                x->sink->offset = 0;
            }
        }
        if (x->sink->write(x->sink->ud, buf, n) != 0) {
            x->abort_code = x->err->code ? x->err->code : SBX_EINTERNAL;
            x->sink_failed = true;
            return 0;
        }
        x->sink->offset += n;
        return n;
    }
    if (!x->started) {
        x->started = true;
        /* refuse a declared size over the limit before reading any of it */
        if (r->content_length > (int64_t)x->max_body) {
            x->abort_code = SBX_ELIMIT;
            return 0;
        }
    }
    int b = buffer_append(x, buf, n, x->max_body);
    if (b < 0) {
        x->abort_code = b == -1 ? SBX_ELIMIT : SBX_ENOMEM;
        return 0;
    }
    return n;
}

/* Apply TLS settings for the origin of url: the registry's CA for its own
 * host, certs.d for others. */
/* Loading the whole system bundle costs tens of milliseconds per process
 * (most of a resolve); the hashed directory beside it holds the same
 * certificates (update-ca-certificates writes both) and is looked up only
 * for the issuers a server actually presents.  Used when libcurl's default
 * bundle is the one in that directory. */
static pthread_once_t g_ca_once = PTHREAD_ONCE_INIT;
static const char *g_ca_dir;

static void ca_dir_init(void)
{
    static const char dir[] = "/etc/ssl/certs";
    struct stat st;
    CURL *h = curl_easy_init();
    char *def = NULL;
    if (h && curl_easy_getinfo(h, CURLINFO_CAINFO, &def) == CURLE_OK && def &&
        !strncmp(def, dir, sizeof dir - 1) && def[sizeof dir - 1] == '/' &&
        stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        g_ca_dir = dir;
    if (h)
        curl_easy_cleanup(h);
}

static const char *system_ca_dir(void)
{
    pthread_once(&g_ca_once, ca_dir_init);
    return g_ca_dir;
}

static void set_tls(reg_client *c, const char *host_port)
{
    char path[PATH_MAX + 400]; /* certs dir, host[:port] (up to 300), file */
    struct stat st;
    const char *ca_dir = system_ca_dir();
    if (ca_dir) {
        curl_easy_setopt(c->curl, CURLOPT_CAINFO, NULL);
        curl_easy_setopt(c->curl, CURLOPT_CAPATH, ca_dir);
    }
    snprintf(path, sizeof path, "%s/%s/ca.crt", c->certs_dir, host_port);
    if (stat(path, &st) == 0)
        curl_easy_setopt(c->curl, CURLOPT_CAINFO, path);
    snprintf(path, sizeof path, "%s/%s/client.cert", c->certs_dir, host_port);
    if (stat(path, &st) == 0) {
        curl_easy_setopt(c->curl, CURLOPT_SSLCERT, path);
        snprintf(path, sizeof path, "%s/%s/client.key", c->certs_dir, host_port);
        curl_easy_setopt(c->curl, CURLOPT_SSLKEY, path);
    }
}

/* "host[:port]" of an absolute URL (as written: default ports omitted). */
static void url_hostport(const char *url, char *buf, size_t len)
{
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t n = strcspn(h, "/?#");
    const char *at = memchr(h, '@', n);
    if (at) {
        n -= (size_t)(at + 1 - h);
        h = at + 1;
    }
    snprintf(buf, len, "%.*s", (int)n, h);
}

typedef struct perform_args {
    const char *method; /* GET, HEAD, POST, PUT, PATCH */
    const char *url;
    const char *accept;
    const char *authorization; /* full header value or NULL */
    const char *postfields;    /* POST form body */
    size_t max_body;
    reg_sink *sink;
    uint64_t range_from;
    /* PUT, PATCH: the body, bytes [body_off, body_off + body_len) of a
     * buffer or a file, its type and Content-Range */
    const char *content_type;
    const char *body;
    int body_fd;
    uint64_t body_off, body_len;
    const char *content_range;
    const char *progress_id;
    uint64_t progress_total;
} perform_args;

/* One HTTP exchange.  Returns the CURLcode; *abort_code is set when our own
 * callbacks aborted (limit, sink error, bad range), with err filled. */
static CURLcode perform(reg_client *c, const perform_args *a, reg_resp *resp, xfer *x,
                        char *errbuf)
{
    CURL *h = c->curl;
    curl_easy_reset(h);
    reg_resp_clear(resp);
    memset(x, 0, sizeof *x);
    x->resp = resp;
    x->max_body = a->max_body;
    x->sink = a->sink;
    x->range_from = a->range_from;
    x->err = a->sink ? a->sink->err : NULL;
    x->last_ns = sbx__now_monotonic_ns();
    x->stall_ns = (uint64_t)c->stall * 1000000000ull;
    x->cancel = c->cancel;
    x->ctx = c->ctx;
    errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, a->url);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "sbx-image/0.1");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->stall < 30 ? c->stall : 30L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 131072L);
    char hp[300];
    url_hostport(a->url, hp, sizeof hp);
    set_tls(c, hp);
    if (!strcmp(a->method, "HEAD")) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(a->method, "POST")) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, a->postfields ? a->postfields : "");
    } else if (!strcmp(a->method, "PUT") || !strcmp(a->method, "PATCH")) {
        x->up_buf = a->body;
        x->up_fd = a->body_fd;
        x->up_base = a->body_off;
        x->up_len = a->body_len;
        x->prog_id = a->progress_id;
        x->prog_total = a->progress_total;
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        if (!strcmp(a->method, "PATCH"))
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH");
        curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(h, CURLOPT_READDATA, x);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, x);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)a->body_len);
    }
    char range[64];
    if (a->range_from > 0) {
        snprintf(range, sizeof range, "%llu-", (unsigned long long)a->range_from);
        curl_easy_setopt(h, CURLOPT_RANGE, range);
    }
    struct curl_slist *hdrs = NULL;
    char *accept = NULL, *auth = NULL, *ctype = NULL, *crange = NULL;
    if (a->accept && (accept = sbx__strdup_printf("Accept: %s", a->accept)))
        hdrs = curl_slist_append(hdrs, accept);
    if (a->content_type && (ctype = sbx__strdup_printf("Content-Type: %s", a->content_type)))
        hdrs = curl_slist_append(hdrs, ctype);
    if (a->content_range && (crange = sbx__strdup_printf("Content-Range: %s", a->content_range)))
        hdrs = curl_slist_append(hdrs, crange);
    if (!strcmp(a->method, "PUT") || !strcmp(a->method, "PATCH")) /* no 100-continue */
        hdrs = curl_slist_append(hdrs, "Expect:");
    if (a->authorization && (auth = sbx__strdup_printf("Authorization: %s", a->authorization)))
        hdrs = curl_slist_append(hdrs, auth);
    if (hdrs)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    CURLcode cc = curl_easy_perform(h);
    if (cc == CURLE_ABORTED_BY_CALLBACK && x->stalled) {
        cc = CURLE_OPERATION_TIMEDOUT;
        snprintf(errbuf, CURL_ERROR_SIZE, "no data for %ld s", c->stall);
    }
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (code)
        resp->status = code;
    curl_slist_free_all(hdrs);
    free(accept);
    free(ctype);
    free(crange);
    if (auth) {
        OPENSSL_cleanse(auth, strlen(auth));
        free(auth);
    }
    /* no query string: presigned redirect targets carry signatures there */
    char shown[1200];
    sbx__log(c->ctx, SBX_LOG_DEBUG, "%s %s -> %ld%s%s", a->method,
             sbx__url_redact(shown, sizeof shown, a->url, true), resp->status, cc ? " " : "",
             cc ? curl_easy_strerror(cc) : "");
    return cc;
}

/* ---- error helpers ------------------------------------------------------------ */

/* The registry's own message from an error body {"errors":[{code,message}]}. */
static void registry_message(const reg_resp *r, char *buf, size_t len)
{
    buf[0] = '\0';
    if (!r->body || !r->len)
        return;
    json_error_t jerr;
    json_t *root = json_loadb(r->body, r->len, 0, &jerr);
    json_t *e0 = json_array_get(json_object_get(root, "errors"), 0);
    const char *code = json_string_value(json_object_get(e0, "code"));
    const char *msg = json_string_value(json_object_get(e0, "message"));
    if (code || msg)
        snprintf(buf, len, ": %s%s%.200s", code ? code : "", code && msg ? ": " : "",
                 msg ? msg : "");
    json_decref(root);
}

static bool retryable_curl(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
        return true;
    default:
        return false;
    }
}

static int curl_error(reg_client *c, CURLcode cc, const char *errbuf, const char *what,
                      sbx_error *err)
{
    const char *detail = errbuf && errbuf[0] ? errbuf : curl_easy_strerror(cc);
    if (cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CACERT_BADFILE)
        return sbx_error_set(err, SBX_ENET,
                             "%s: TLS certificate of '%s' not trusted (%s); put the "
                             "registry's CA certificate in '%s/%s/ca.crt'",
                             what, c->host, detail, c->certs_dir, c->host);
    if (cc == CURLE_SSL_CONNECT_ERROR && !c->may_fallback_http && !c->fixed_scheme)
        return sbx_error_set(err, SBX_ENET,
                             "%s: TLS handshake with '%s' failed (%s); if it is a plain-HTTP "
                             "registry you trust, list it under \"insecure\" in the registries "
                             "config ($SBX_REGISTRIES_CONFIG, /etc/sbx-image/registries.json)",
                             what, c->host, detail);
    if (cc == CURLE_OPERATION_TIMEDOUT)
        return sbx_error_set(err, SBX_ETIMEOUT, "%s: '%s' stalled: %s", what, c->host, detail);
    return sbx_error_set(err, SBX_ENET, "%s: talking to '%s': %s", what, c->host, detail);
}

/* Milliseconds to wait before attempt number `attempt` (1-based retry). */
static int64_t backoff_ms(reg_client *c, int attempt, const reg_resp *r, bool *too_long)
{
    *too_long = false;
    if (r && r->retry_after[0]) {
        char *end;
        long long s = strtoll(r->retry_after, &end, 10);
        if (*end != '\0') {
            time_t t = curl_getdate(r->retry_after, NULL);
            s = t < 0 ? -1 : (long long)(t - time(NULL));
            if (t >= 0 && s < 0)
                s = 0;
        }
        if (s >= 0) {
            if (s > REG_RETRY_AFTER_MAX) {
                *too_long = true;
                return 0;
            }
            return s * 1000;
        }
    }
    int64_t ms = c->retry_base_ms;
    for (int i = 1; i < attempt && ms < 30000; i++)
        ms *= 2;
    if (ms > 30000)
        ms = 30000;
    /* jitter: up to a quarter more, so parallel pulls do not retry in step */
    if (ms > 0)
        ms += (int64_t)((uint64_t)sbx__now_monotonic_ns() % (uint64_t)(ms / 4 + 1));
    return ms;
}

/* Wait before a retry; a cancel of the call's context ends the wait at once
 * (SBX_ECANCELED, naming what was being retried). */
static int sleep_ms(const reg_client *c, int64_t ms, const char *what, sbx_error *err)
{
    uint64_t end = sbx__now_monotonic_ns() + (uint64_t)ms * 1000000ull;
    for (;;) {
        if (sbx_ctx_cancelled(c->ctx))
            return sbx_error_set(err, SBX_ECANCELED, "%s: cancelled", what);
        if (c->cancel && __atomic_load_n(c->cancel, __ATOMIC_RELAXED))
            return sbx_error_set(err, SBX_EINTERNAL, "%s: abandoned (another transfer failed)",
                                 what);
        uint64_t now = sbx__now_monotonic_ns();
        if (now >= end)
            return 0;
        struct pollfd p = {sbx__ctx_cancel_fd(c->ctx), POLLIN, 0};
        int left = (int)((end - now) / 1000000ull) + 1;
        if (poll(&p, p.fd >= 0 ? 1 : 0, left) < 0 && errno != EINTR)
            return 0;
    }
}

/* ---- auth ---------------------------------------------------------------------- */

static char *basic_header(const reg_creds *cr)
{
    _cleanup_free_ char *up =
        sbx__strdup_printf("%s:%s", cr->username ? cr->username : "", cr->password ? cr->password : "");
    if (!up)
        return NULL;
    char *b = reg_base64_encode(up, strlen(up));
    OPENSSL_cleanse(up, strlen(up));
    char *h = b ? sbx__strdup_printf("Basic %s", b) : NULL;
    if (b) {
        OPENSSL_cleanse(b, strlen(b));
        free(b);
    }
    return h;
}

static char *auth_header(reg_client *c)
{
    if (c->auth == AUTH_BEARER && c->token) {
        c->sent_creds |= !reg_creds_empty(&c->creds);
        return sbx__strdup_printf("Bearer %s", c->token);
    }
    if (c->auth == AUTH_BASIC && (c->creds.username || c->creds.password)) {
        c->sent_creds = true;
        return basic_header(&c->creds);
    }
    return NULL;
}

static char *esc(CURL *h, const char *s) { return curl_easy_escape(h, s ? s : "", 0); }

/* SBX_TOKEN_REALM=same-host: credentials go to a token realm only on the
 * registry's own host name (any port); the default, "any", sends them to
 * whatever realm the registry names, as Docker does (over TLS or to
 * loopback only, see below). */
static bool realm_allowed(const reg_client *c, const char *realm_host)
{
    const char *pol = getenv("SBX_TOKEN_REALM");
    if (!pol || !*pol || !strcmp(pol, "any"))
        return true;
    char a[300], b[300];
    snprintf(a, sizeof a, "%s", realm_host);
    snprintf(b, sizeof b, "%s", c->host);
    /* strip ":port" (not inside "[v6]") */
    char *pa = strrchr(a, ':'), *pb = strrchr(b, ':');
    if (pa && !strchr(pa, ']'))
        *pa = '\0';
    if (pb && !strchr(pb, ']'))
        *pb = '\0';
    return !strcasecmp(a, b);
}

/* Ask the challenge's realm for a token with `scope`. */
static int fetch_token(reg_client *c, const char *scope, sbx_error *err)
{
    const reg_challenge *ch = &c->chal;
    _cleanup_free_ char *keysrc =
        sbx__strdup_printf("%s\n%s\n%s\n%s", ch->realm, ch->service, scope, c->cred_id);
    if (!keysrc)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    sbx__sha256_buf(keysrc, strlen(keysrc), c->token_key);
    char *cached = reg_token_cache_get(c->token_key);
    if (c->creds.registry_token && !cached)
        cached = strdup(c->creds.registry_token);
    if (cached) {
        if (c->token) {
            OPENSSL_cleanse(c->token, strlen(c->token));
            free(c->token);
        }
        c->token = cached;
        return 0;
    }
    if (strncmp(ch->realm, "https://", 8) && strncmp(ch->realm, "http://", 7))
        return sbx_error_set(err, SBX_EAUTH, "authenticating to '%s': token realm '%.200s' is "
                             "not an http(s) URL", c->host, ch->realm);
    char realm_host[300];
    url_hostport(ch->realm, realm_host, sizeof realm_host);
    bool has_secret = !reg_creds_empty(&c->creds);
    if (has_secret && !realm_allowed(c, realm_host))
        return sbx_error_set(err, SBX_EAUTH,
                             "authenticating to '%s': the token realm is on another host ('%s') "
                             "and SBX_TOKEN_REALM=same-host keeps credentials from it",
                             c->host, realm_host);
    if (has_secret && !strncmp(ch->realm, "http://", 7) && !reg_host_is_loopback(realm_host) &&
        !(c->cfg && reg_config_is_insecure(c->cfg, realm_host)))
        return sbx_error_set(err, SBX_EAUTH,
                             "authenticating to '%s': refusing to send credentials over plain "
                             "HTTP to '%s'", c->host, realm_host);
    _cleanup_free_ char *e_service = esc(c->curl, ch->service);
    _cleanup_free_ char *e_scope = esc(c->curl, scope);
    _cleanup_free_ char *url = NULL, *form = NULL, *authz = NULL;
    perform_args a = {.method = "GET", .max_body = REG_TOKEN_MAX};
    if (c->creds.identity_token) {
        _cleanup_free_ char *e_tok = esc(c->curl, c->creds.identity_token);
        form = sbx__strdup_printf("grant_type=refresh_token&client_id=sbx-image&service=%s&scope=%s"
                                 "&refresh_token=%s", e_service, e_scope, e_tok);
        if (e_tok)
            OPENSSL_cleanse(e_tok, strlen(e_tok));
        url = strdup(ch->realm);
        a.method = "POST";
        a.postfields = form;
    } else {
        bool q = strchr(ch->realm, '?') != NULL;
        url = *scope ? sbx__strdup_printf("%s%cservice=%s&scope=%s", ch->realm, q ? '&' : '?',
                                         e_service, e_scope)
                     : sbx__strdup_printf("%s%cservice=%s", ch->realm, q ? '&' : '?', e_service);
        if (c->creds.username || c->creds.password)
            authz = basic_header(&c->creds);
    }
    if (!url || (c->creds.identity_token && !form))
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    a.url = url;
    a.authorization = authz;
    reg_resp resp = {.content_length = -1};
    xfer x;
    char errbuf[CURL_ERROR_SIZE];
    int rc = 0;
    for (int attempt = 1;; attempt++) {
        CURLcode cc = perform(c, &a, &resp, &x, errbuf);
        bool retry = false;
        if (cc == CURLE_OK && resp.status == 200) {
            char *tok = NULL;
            int64_t exp = 60;
            rc = reg_token_parse(&tok, &exp, resp.body ? resp.body : "", resp.len, err);
            if (rc == 0) {
                reg_token_cache_put(c->token_key, tok, exp);
                if (c->token) {
                    OPENSSL_cleanse(c->token, strlen(c->token));
                    free(c->token);
                }
                c->token = tok;
            } else {
                sbx_error_wrap(err, "authenticating to '%s' via '%s'", c->host, realm_host);
            }
            break;
        } else if (cc == CURLE_OK && (resp.status == 401 || resp.status == 403)) {
            rc = sbx_error_set(err, SBX_EAUTH,
                               has_secret ? "authenticating to '%s': token server '%s' refused "
                                            "the credentials (HTTP %ld)"
                                          : "authenticating to '%s': token server '%s' refused "
                                            "anonymous access (HTTP %ld); give credentials",
                               c->host, realm_host, resp.status);
            break;
        } else if (cc == CURLE_OK && resp.status != 429 && resp.status < 500) {
            rc = sbx_error_set(err, SBX_EAUTH,
                               "authenticating to '%s': token server '%s' answered HTTP %ld",
                               c->host, realm_host, resp.status);
            break;
        } else if (cc != CURLE_OK && !retryable_curl(cc)) {
            rc = curl_error(c, cc, errbuf, "authenticating", err);
            break;
        }
        retry = true;
        bool too_long;
        int64_t ms = backoff_ms(c, attempt, cc == CURLE_OK ? &resp : NULL, &too_long);
        if (!retry || attempt >= c->retry_max || too_long) {
            rc = cc != CURLE_OK ? curl_error(c, cc, errbuf, "authenticating", err)
                                : sbx_error_set(err, SBX_ENET,
                                                "authenticating to '%s': token server '%s' "
                                                "answered HTTP %ld after %d attempts",
                                                c->host, realm_host, resp.status, attempt);
            break;
        }
        if ((rc = sleep_ms(c, ms, "authenticating", err)) < 0)
            break;
    }
    if (form)
        OPENSSL_cleanse(form, strlen(form));
    if (authz)
        OPENSSL_cleanse(authz, strlen(authz));
    if (resp.body)
        OPENSSL_cleanse(resp.body, resp.len);
    reg_resp_clear(&resp);
    return rc;
}

static void repo_scope(reg_client *c, char *buf, size_t len)
{
    if (c->login)
        snprintf(buf, len, "%s", "");
    else
        snprintf(buf, len, "repository:%s:%s", c->ref.path, c->push ? "pull,push" : "pull");
}

/* React to a 401: parse the challenge and get a token (or switch to basic).
 * Returns 0 when the request should be tried again. */
static int handle_401(reg_client *c, const reg_resp *r, sbx_error *err)
{
    reg_challenge ch;
    /* a token the registry refused is not offered again, by anyone */
    if (c->auth == AUTH_BEARER && c->token && c->token_key[0])
        reg_token_cache_put(c->token_key, "", 0);
    if (reg_challenge_parse(&ch, r->www_authenticate, err) < 0)
    {
        sbx_error_wrap(err, "authenticating to '%s'", c->host);
        err->code = SBX_EAUTH;
        return SBX_EAUTH;
    }
    c->chal = ch;
    if (!strcmp(ch.scheme, "basic")) {
        if (c->auth == AUTH_BASIC || (!c->creds.username && !c->creds.password))
            return sbx_error_set(err, SBX_EAUTH,
                                 c->auth == AUTH_BASIC
                                     ? "authenticating to '%s': credentials refused (basic auth)"
                                     : "authenticating to '%s': registry wants a username and "
                                       "password (basic auth); none given",
                                 c->host);
        c->auth = AUTH_BASIC;
        return 0;
    }
    char scope[1100];
    if (ch.scope[0])
        snprintf(scope, sizeof scope, "%s", ch.scope);
    else
        repo_scope(c, scope, sizeof scope);
    c->auth = AUTH_BEARER;
    return fetch_token(c, scope, err);
}

/* ---- the request loop --------------------------------------------------------- */


static bool same_origin(const char *a, const char *b)
{
    CURLU *ua = curl_url(), *ub = curl_url();
    bool same = false;
    char *sa = NULL, *sb = NULL, *ha = NULL, *hb = NULL, *pa = NULL, *pb = NULL;
    if (ua && ub && !curl_url_set(ua, CURLUPART_URL, a, 0) &&
        !curl_url_set(ub, CURLUPART_URL, b, 0) && !curl_url_get(ua, CURLUPART_SCHEME, &sa, 0) &&
        !curl_url_get(ub, CURLUPART_SCHEME, &sb, 0) && !curl_url_get(ua, CURLUPART_HOST, &ha, 0) &&
        !curl_url_get(ub, CURLUPART_HOST, &hb, 0) &&
        !curl_url_get(ua, CURLUPART_PORT, &pa, CURLU_DEFAULT_PORT) &&
        !curl_url_get(ub, CURLUPART_PORT, &pb, CURLU_DEFAULT_PORT))
        same = !strcasecmp(sa, sb) && !strcasecmp(ha, hb) && !strcmp(pa, pb);
    curl_free(sa), curl_free(sb), curl_free(ha), curl_free(hb), curl_free(pa), curl_free(pb);
    curl_url_cleanup(ua);
    curl_url_cleanup(ub);
    return same;
}

/* Resolve a Location against the current URL; caller frees. */
static char *resolve_location(const char *cur, const char *loc)
{
    CURLU *u = curl_url();
    char *out = NULL, *res = NULL;
    if (u && !curl_url_set(u, CURLUPART_URL, cur, 0) && !curl_url_set(u, CURLUPART_URL, loc, 0) &&
        !curl_url_get(u, CURLUPART_URL, &out, 0))
        res = strdup(out);
    curl_free(out);
    curl_url_cleanup(u);
    if (res && strncmp(res, "http://", 7) && strncmp(res, "https://", 8)) {
        free(res);
        res = NULL;
    }
    return res;
}

/* For a registry allowed to speak plain HTTP whose scheme is not known yet:
 * does it speak TLS?  A connect-only handshake without verification sends
 * nothing but a ClientHello and spares loading the CA store when the answer
 * is no (verification happens on the real requests when it is yes). */
static void probe_tls(reg_client *c)
{
    c->probed = true;
    if (!c->may_fallback_http || c->fixed_scheme || strncmp(c->base, "https://", 8) != 0)
        return;
    CURL *h = curl_easy_init();
    if (!h)
        return;
    _cleanup_free_ char *url = sbx__strdup_printf("%s/v2/", c->base);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->stall < 30 ? c->stall : 30L);
    CURLcode cc = url ? curl_easy_perform(h) : CURLE_OUT_OF_MEMORY;
    curl_easy_cleanup(h);
    if (cc == CURLE_OK)
        scheme_put(c->host, false);
    if (cc == CURLE_SSL_CONNECT_ERROR) {
        scheme_put(c->host, true);
        char tmp[sizeof c->base];
        snprintf(tmp, sizeof tmp, "http://%s", c->base + 8);
        snprintf(c->base, sizeof c->base, "%s", tmp);
        c->learned_http = true;
        sbx__log(c->ctx, SBX_LOG_DEBUG, "'%s' does not speak TLS; using plain HTTP", c->host);
    }
}

static int do_request(reg_client *c, const reg_req *rq, reg_resp *resp, sbx_error *err)
{
    int rc;
    if (!c->probed)
        probe_tls(c);
    bool auth_retried = false, restart_clean = false;
    char errbuf[CURL_ERROR_SIZE];
    for (int attempt = 1;;) {
        _cleanup_free_ char *url =
            rq->url ? strdup(rq->url) : sbx__strdup_printf("%s%s", c->base, rq->path);
        if (!url)
            return sbx_error_set(err, SBX_ENOMEM, "out of memory");
        if (restart_clean && rq->sink) {
            if ((rc = rq->sink->reset(rq->sink->ud, err)) < 0)
                return rc;
            rq->sink->offset = 0;
            restart_clean = false;
        }
        /* Credentials stay with the registry: an upload location the
         * registry names on another origin gets none, as a redirect does */
        bool send_auth = !rq->url || same_origin(rq->url, c->base), hopped = false;
        CURLcode cc = CURLE_OK;
        xfer x;
        for (int hop = 0;; hop++) {
            _cleanup_free_ char *authz = send_auth ? auth_header(c) : NULL;
            perform_args a = {.method = rq->method, .url = url, .accept = rq->accept,
                              .authorization = authz, .max_body = rq->max_body, .sink = rq->sink,
                              .range_from = rq->sink ? rq->sink->offset : 0,
                              .content_type = rq->content_type, .body = rq->body,
                              .body_fd = rq->body_fd, .body_off = rq->body_off,
                              .body_len = rq->body_len, .content_range = rq->content_range,
                              .progress_id = rq->progress_id,
                              .progress_total = rq->progress_total};
            cc = perform(c, &a, resp, &x, errbuf);
            if (authz)
                OPENSSL_cleanse(authz, strlen(authz));
            if (cc != CURLE_OK || resp->status < 300 || resp->status >= 400 ||
                resp->status == 304 || !resp->location[0])
                break;
            if (hop >= REG_MAX_REDIRECTS)
                return sbx_error_set(err, SBX_ENET, "%s: more than %d redirects from '%s'",
                                     rq->what, REG_MAX_REDIRECTS, c->host);
            char *next = resolve_location(url, resp->location);
            if (!next)
                return sbx_error_set(err, SBX_ENET, "%s: '%s' redirected to an unusable location",
                                     rq->what, c->host);
            /* Credentials stay with the registry: never to another origin. */
            if (!same_origin(next, url))
                send_auth = false;
            free(url);
            url = next;
            hopped = true;
        }
        if (cc == CURLE_SSL_CONNECT_ERROR && c->may_fallback_http &&
            !strncmp(c->base, "https://", 8)) {
            /* no TLS there: a loopback or insecure registry may speak plain HTTP */
            char tmp[sizeof c->base];
            snprintf(tmp, sizeof tmp, "http://%s", c->base + 8);
            snprintf(c->base, sizeof c->base, "%s", tmp);
            sbx__log(c->ctx, SBX_LOG_DEBUG, "'%s' does not speak TLS; using plain HTTP", c->host);
            c->learned_http = true;
            scheme_put(c->host, true);
            continue;
        }
        if (c->http_from_memory && !strncmp(c->base, "http://", 7) &&
            ((cc != CURLE_OK && cc != CURLE_OPERATION_TIMEDOUT && cc != CURLE_COULDNT_CONNECT) ||
             (cc == CURLE_OK && resp->status == 400))) {
            /* it speaks TLS now: forget what we remembered */
            char tmp[sizeof c->base];
            snprintf(tmp, sizeof tmp, "https://%s", c->base + 7);
            snprintf(c->base, sizeof c->base, "%s", tmp);
            c->http_from_memory = false;
            c->unlearned_http = true;
            scheme_put(c->host, false);
            sbx__log(c->ctx, SBX_LOG_DEBUG, "'%s' no longer speaks plain HTTP; trying HTTPS", c->host);
            continue;
        }
        if (cc == CURLE_ABORTED_BY_CALLBACK && sbx_ctx_cancelled(c->ctx))
            return sbx_error_set(err, SBX_ECANCELED, "%s: cancelled", rq->what);
        if (cc == CURLE_ABORTED_BY_CALLBACK && x.read_failed)
            return sbx_error_set(err, SBX_EIO, "%s: reading what is uploaded failed (the file "
                                 "shrank or could not be read)", rq->what);
        if (cc == CURLE_ABORTED_BY_CALLBACK)
            return sbx_error_set(err, SBX_EINTERNAL, "%s: abandoned (another transfer failed)",
                                 rq->what);
        if (x.abort_code && x.sink_failed)
            return x.abort_code; /* the sink's own error, already in err */
        if (x.abort_code == SBX_ELIMIT)
            return sbx_error_set(err, SBX_ELIMIT, "%s: answer from '%s' exceeds %zu bytes",
                                 rq->what, c->host, rq->max_body);
        if (x.abort_code == SBX_ENOMEM)
            return sbx_error_set(err, SBX_ENOMEM, "%s: out of memory", rq->what);
        if (x.abort_code)
            return x.abort_code; /* the sink's own error, already in err */
        /* a challenge counts only from the registry itself, not from a CDN */
        if (cc == CURLE_OK && resp->status == 401 && !auth_retried && send_auth) {
            auth_retried = true;
            if ((rc = handle_401(c, resp, err)) < 0)
                return rc;
            continue;
        }
        if (cc == CURLE_OK && status_ok(resp->status))
            return 0;
        if (cc == CURLE_OK && resp->status == 200 && !rq->sink)
            return 0;
        if (cc == CURLE_OK && strcmp(rq->method, "GET") && resp->status >= 200 &&
            resp->status < 300)
            return 0;
        if (cc == CURLE_OK && rq->once && resp->status == 204)
            return 0; /* an upload's status */
        bool retry;
        if (cc == CURLE_OK && resp->status == 416 && rq->sink && rq->sink->offset > 0) {
            /* the range we asked to resume from is refused: start over */
            retry = true;
            restart_clean = true;
        } else if (x.bad_range) {
            retry = true;
            restart_clean = true;
            sbx__log(c->ctx, SBX_LOG_WARN, "%s: '%s' answered the range request from the wrong offset; "
                    "starting over", rq->what, c->host);
        } else if (cc != CURLE_OK) {
            retry = retryable_curl(cc);
            if (!retry)
                return curl_error(c, cc, errbuf, rq->what, err);
        } else {
            retry = resp->status == 429 || resp->status >= 500 || resp->status == 408;
        }
        if (retry && rq->once) {
            /* the caller decides what to do again (an upload asks where it stands) */
            resp->transient = true;
            if (cc != CURLE_OK)
                return curl_error(c, cc, errbuf, rq->what, err);
            char msg[300];
            registry_message(resp, msg, sizeof msg);
            return sbx_error_set(err, SBX_ENET, "%s: '%s' answered HTTP %ld%s", rq->what,
                                 c->host, resp->status, msg);
        }
        if (!retry) {
            char msg[300], who[300];
            registry_message(resp, msg, sizeof msg);
            /* name the host that answered: a redirect target is not the registry */
            url_hostport(url, who, sizeof who);
            if (resp->status == 404 && hopped)
                return sbx_error_set(err, SBX_ENOTFOUND,
                                     "%s: not found on '%s' (redirected there by '%s')%s",
                                     rq->what, who, c->host, msg);
            if (resp->status == 404)
                return sbx_error_set(err, SBX_ENOTFOUND, "%s: not found on '%s'%s", rq->what,
                                     c->host, msg);
            if (resp->status == 401 || resp->status == 403)
                return sbx_error_set(err, SBX_EAUTH, "%s: access denied by '%s' (HTTP %ld)%s%s",
                                     rq->what, c->host, resp->status, msg,
                                     reg_creds_empty(&c->creds)
                                         ? "; no credentials were given (--creds, or the Docker "
                                           "config)"
                                         : "");
            return sbx_error_set(err, SBX_ENET, "%s: '%s' answered HTTP %ld%s", rq->what, c->host,
                                 resp->status, msg);
        }
        bool too_long;
        int64_t ms = backoff_ms(c, attempt, cc == CURLE_OK ? resp : NULL, &too_long);
        if (too_long)
            return sbx_error_set(err, SBX_ENET,
                                 "%s: '%s' asked to retry after '%s' (more than %d s)", rq->what,
                                 c->host, resp->retry_after, REG_RETRY_AFTER_MAX);
        if (attempt >= c->retry_max) {
            if (cc != CURLE_OK) {
                curl_error(c, cc, errbuf, rq->what, err);
                return sbx_error_wrap(err, "giving up after %d attempts", attempt);
            }
            char msg[300];
            registry_message(resp, msg, sizeof msg);
            return sbx_error_set(err, SBX_ENET, "%s: '%s' answered HTTP %ld%s; gave up after %d "
                                 "attempts", rq->what, c->host, resp->status, msg, attempt);
        }
        sbx__log(c->ctx, SBX_LOG_INFO, "%s: %s from '%s', retrying in %lld ms (attempt %d of %d)",
                rq->what, cc != CURLE_OK ? curl_easy_strerror(cc) : "server error", c->host,
                (long long)ms, attempt + 1, c->retry_max);
        if ((rc = sleep_ms(c, ms, rq->what, err)) < 0)
            return rc;
        attempt++;
    }
}

/* ---- public-to-the-module operations ------------------------------------------- */

int reg_request(reg_client *c, const reg_req *rq, reg_resp *resp, sbx_error *err)
{
    return do_request(c, rq, resp, err);
}

int reg_retry_pause(reg_client *c, int attempt, const reg_resp *r, const char *what,
                    sbx_error *err)
{
    if (attempt >= c->retry_max)
        return sbx_error_wrap(err, "gave up after %d attempts", attempt);
    bool too_long;
    int64_t ms = backoff_ms(c, attempt, r, &too_long);
    if (too_long)
        return sbx_error_set(err, SBX_ENET, "%s: '%s' asked to retry after '%s' (more than %d s)",
                             what, c->host, r->retry_after, REG_RETRY_AFTER_MAX);
    sbx__log(c->ctx, SBX_LOG_INFO, "%s, retrying in %lld ms (attempt %d of %d)", err->msg,
             (long long)ms, attempt + 1, c->retry_max);
    sbx_error_clear(err);
    return sleep_ms(c, ms, what, err);
}

char *reg_client_url(const reg_client *c, const char *path)
{
    return sbx__strdup_printf("%s%s", c->base, path);
}

char *reg_resolve_location(const char *cur, const char *loc) { return resolve_location(cur, loc); }

bool reg_client_patch_refused(const reg_client *c) { return c->no_patch; }
void reg_client_refuse_patch(reg_client *c) { c->no_patch = true; }

int reg_ping(reg_client *c, sbx_error *err)
{
    c->login = true;
    reg_resp resp = {.content_length = -1};
    reg_req rq = {.method = "GET", .path = "/v2/", .max_body = REG_ERRBODY_MAX,
                  .what = "logging in"};
    int rc = do_request(c, &rq, &resp, err);
    reg_resp_clear(&resp);
    c->login = false;
    return rc;
}

int reg_get_manifest(reg_client *c, const char *reference, bool head_only, reg_resp *resp,
                     sbx_error *err)
{
    _cleanup_free_ char *path = sbx__strdup_printf("/v2/%s/manifests/%s", c->ref.path, reference);
    _cleanup_free_ char *what = sbx__strdup_printf("fetching manifest '%s'", reference);
    if (!path || !what)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    reg_req rq = {.method = head_only ? "HEAD" : "GET", .path = path, .accept = REG_ACCEPT,
                  .max_body = SBX_MANIFEST_MAX, .what = what};
    int rc = do_request(c, &rq, resp, err);
    if (rc == 0 && !head_only && resp->content_length > (int64_t)SBX_MANIFEST_MAX)
        rc = sbx_error_set(err, SBX_ELIMIT, "%s: manifest larger than %u bytes", what,
                           SBX_MANIFEST_MAX);
    return rc;
}

int reg_get_blob_small(reg_client *c, const char *digest, size_t max, char **out, size_t *len,
                       sbx_error *err)
{
    _cleanup_free_ char *path = sbx__strdup_printf("/v2/%s/blobs/%s", c->ref.path, digest);
    _cleanup_free_ char *what = sbx__strdup_printf("fetching blob '%s'", digest);
    if (!path || !what)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    reg_resp resp = {.content_length = -1};
    reg_req rq = {.method = "GET", .path = path, .max_body = max, .what = what};
    int rc = do_request(c, &rq, &resp, err);
    if (rc < 0) {
        reg_resp_clear(&resp);
        return rc;
    }
    char got[SBX_DIGEST_BUFSZ];
    sbx__sha256_buf(resp.body ? resp.body : "", resp.len, got);
    if (strcmp(got, digest) != 0) {
        reg_resp_clear(&resp);
        return sbx_error_set(err, SBX_EDIGEST, "%s: content from '%s' has digest '%s'", what,
                             c->host, got);
    }
    *out = resp.body ? resp.body : strdup("");
    *len = resp.len;
    resp.body = NULL;
    return *out ? 0 : sbx_error_set(err, SBX_ENOMEM, "out of memory");
}

int reg_get_blob_stream(reg_client *c, const char *digest, reg_sink *sink, sbx_error *err)
{
    _cleanup_free_ char *path = sbx__strdup_printf("/v2/%s/blobs/%s", c->ref.path, digest);
    _cleanup_free_ char *what = sbx__strdup_printf("fetching blob '%s'", digest);
    if (!path || !what)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    sink->err = err;
    int rc;
    for (int idle = 0;;) {
        uint64_t before = sink->offset;
        reg_resp resp = {.content_length = -1};
        reg_req rq = {.method = "GET", .path = path, .sink = sink, .max_body = 0, .what = what};
        rc = do_request(c, &rq, &resp, err);
        long status = resp.status;
        reg_resp_clear(&resp);
        if (rc < 0 || status != 206 || !sink->size || sink->offset >= sink->size)
            break;
        /* a whole 206 that ends short of the blob: the server limits ranges;
         * ask for the rest (the caller's size check ends one that never
         * moves on) */
        if (sink->offset == before && ++idle >= 3)
            break;
        sbx__log(c->ctx, SBX_LOG_DEBUG, "%s: '%s' sent up to byte %llu of %llu; asking for the "
                 "rest", what, c->host, (unsigned long long)sink->offset,
                 (unsigned long long)sink->size);
    }
    return rc;
}

int reg_get_url(reg_client *c, const char *url, const char *what, reg_sink *sink,
                sbx_error *err)
{
    reg_resp resp = {.content_length = -1};
    sink->err = err;
    reg_req rq = {.method = "GET", .url = url, .sink = sink, .max_body = 0, .what = what};
    int rc = do_request(c, &rq, &resp, err);
    reg_resp_clear(&resp);
    return rc;
}

/* ---- uploads (push) ------------------------------------------------------------- */

int reg_blob_exists(reg_client *c, const char *digest, sbx_error *err)
{
    _cleanup_free_ char *path = sbx__strdup_printf("/v2/%s/blobs/%s", c->ref.path, digest);
    _cleanup_free_ char *what = sbx__strdup_printf("checking blob '%s'", digest);
    if (!path || !what)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    reg_resp resp = {.content_length = -1};
    reg_req rq = {.method = "HEAD", .path = path, .what = what};
    int rc = do_request(c, &rq, &resp, err);
    reg_resp_clear(&resp);
    if (rc == SBX_ENOTFOUND) {
        sbx_error_clear(err);
        return 0;
    }
    return rc < 0 ? rc : 1;
}

int reg_put_manifest(reg_client *c, const char *reference, const char *media_type,
                     const char *body, size_t len, sbx_error *err)
{
    _cleanup_free_ char *path = sbx__strdup_printf("/v2/%s/manifests/%s", c->ref.path, reference);
    _cleanup_free_ char *what = sbx__strdup_printf("uploading manifest '%s'", reference);
    if (!path || !what)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    reg_resp resp = {.content_length = -1};
    reg_req rq = {.method = "PUT", .path = path, .what = what, .content_type = media_type,
                  .body = body, .body_fd = -1, .body_len = len};
    int rc = do_request(c, &rq, &resp, err);
    reg_resp_clear(&resp);
    return rc;
}
