/* The HTTP layer against a scripted in-process server on 127.0.0.1:
 * resuming an interrupted blob with Range (a good 206, a 200 that ignores
 * the range, a 206 from the wrong offset), Retry-After, the bearer flow, and
 * a redirect to another origin that must not receive Authorization.  Cases
 * the real-registry harness cannot produce. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "registry_internal.h"
#include "testutil.h"

#define BLOB_LEN (300 * 1024)

typedef enum {
    MODE_GOOD_206,  /* cut half way, then honor Range */
    MODE_IGNORE_RANGE, /* cut half way, then send 200 with the whole blob */
    MODE_BAD_206,   /* cut half way, then a 206 from the wrong offset */
    MODE_RETRY_AFTER, /* 429 Retry-After: 1, then the blob */
    MODE_REDIRECT,  /* bearer auth, blob GET redirected to "localhost" */
    MODE_REFRESH,   /* bearer auth where the token comes from an OAuth2 refresh token */
    MODE_NO_HEAD,   /* manifests: HEAD answers 405, GET works */
} srv_mode;

#define MANIFEST_BODY                                                                       \
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","     \
    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":"    \
    "\"sha256:1111111111111111111111111111111111111111111111111111111111111111\",\"size\":2},"  \
    "\"layers\":[]}"

typedef struct srv {
    int lfd;
    int port;
    srv_mode mode;
    pthread_t tid;
    unsigned char *blob;
    char digest[SBX_DIGEST_BUFSZ];
    /* what the server saw */
    int blob_gets;
    char ranges[8][64];       /* Range header of each blob GET ("" if none) */
    int auth_on_registry;     /* blob GETs to 127.0.0.1 with Authorization */
    int auth_on_cdn;          /* GETs to the redirect target with Authorization */
    int cdn_gets;
    int token_gets;
    int token_posts;
    char post_body[1024];
    int heads, manifest_gets;
    int accepts;              /* TCP connections accepted */
    uint64_t first_ns, second_ns;
} srv;

static int send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void sendf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sendf(int fd, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    send_all(fd, buf, (size_t)n);
}

static const char *header(const char *req, const char *name, char *out, size_t len)
{
    out[0] = '\0';
    const char *p = req;
    size_t nl = strlen(name);
    while ((p = strchr(p, '\n'))) {
        p++;
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t n = strcspn(v, "\r\n");
            snprintf(out, len, "%.*s", (int)n, v);
            return out;
        }
    }
    return NULL;
}

/* Serve one request; returns 0 to keep the connection, -1 to close it. */
static int serve(srv *s, int fd, const char *req, const char *body)
{
    char method[16], path[512], range[64], auth[256], host[128];
    if (sscanf(req, "%15s %511s", method, path) != 2)
        return -1;
    header(req, "Range", range, sizeof range);
    bool has_auth = header(req, "Authorization", auth, sizeof auth) != NULL;
    header(req, "Host", host, sizeof host);
    bool is_blob = strstr(path, "/blobs/") != NULL;
    if (!strcmp(path, "/token?service=svc&scope=repository%3At%2Fx%3Apull")) {
        s->token_gets++;
        const char *tok = "{\"token\":\"tok-123\",\"expires_in\":300}";
        sendf(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
              strlen(tok), tok);
        return 0;
    }
    if (!strcmp(method, "POST") && !strcmp(path, "/token")) {
        s->token_posts++;
        snprintf(s->post_body, sizeof s->post_body, "%s", body);
        const char *tok = "{\"access_token\":\"tok-456\",\"expires_in\":300}";
        sendf(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
              strlen(tok), tok);
        return 0;
    }
    if (strstr(path, "/manifests/")) {
        char dg[SBX_DIGEST_BUFSZ];
        sbx__sha256_buf(MANIFEST_BODY, strlen(MANIFEST_BODY), dg);
        if (!strcmp(method, "HEAD")) {
            s->heads++;
            sendf(fd, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
            return 0;
        }
        s->manifest_gets++;
        sendf(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                  "Docker-Content-Digest: %s\r\nContent-Length: %zu\r\n\r\n%s",
              dg, strlen(MANIFEST_BODY), MANIFEST_BODY);
        return 0;
    }
    if (!strncmp(path, "/cdn/", 5)) {
        s->cdn_gets++;
        if (has_auth)
            s->auth_on_cdn++;
        sendf(fd, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BLOB_LEN);
        send_all(fd, s->blob, BLOB_LEN);
        return 0;
    }
    if (!is_blob) {
        sendf(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        return 0;
    }
    if (s->mode == MODE_REFRESH) {
        if (!has_auth || strcmp(auth, "Bearer tok-456") != 0) {
            sendf(fd, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nWWW-Authenticate: Bearer "
                      "realm=\"http://127.0.0.1:%d/token\",service=\"svc2\",scope=\"repository:t/x:pull\""
                      "\r\n\r\n",
                  s->port);
            return 0;
        }
        sendf(fd, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BLOB_LEN);
        send_all(fd, s->blob, BLOB_LEN);
        return 0;
    }
    if (s->mode == MODE_REDIRECT) {
        if (!has_auth || strcmp(auth, "Bearer tok-123") != 0) {
            sendf(fd, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nWWW-Authenticate: Bearer "
                      "realm=\"http://127.0.0.1:%d/token\",service=\"svc\"\r\n\r\n",
                  s->port);
            return 0;
        }
        s->auth_on_registry++;
        sendf(fd, "HTTP/1.1 307 Temporary Redirect\r\nContent-Length: 0\r\n"
                  "Location: http://localhost:%d/cdn/%s?X-Amz-Signature=x\r\n\r\n",
              s->port, s->digest);
        return 0;
    }
    int n = s->blob_gets++;
    if (n < 8)
        snprintf(s->ranges[n], sizeof s->ranges[n], "%s", range);
    if (n == 0)
        s->first_ns = sbx__now_monotonic_ns();
    else if (n == 1)
        s->second_ns = sbx__now_monotonic_ns();
    if (s->mode == MODE_RETRY_AFTER && n == 0) {
        sendf(fd, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n");
        return 0;
    }
    if (s->mode != MODE_RETRY_AFTER && n == 0) {
        /* half the blob, then the connection drops */
        sendf(fd, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BLOB_LEN);
        send_all(fd, s->blob, BLOB_LEN / 2);
        return -1;
    }
    long from = 0;
    if (range[0])
        sscanf(range, "bytes=%ld-", &from);
    if (s->mode == MODE_GOOD_206 && range[0]) {
        sendf(fd, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %ld-%d/%d\r\n"
                  "Content-Length: %ld\r\n\r\n",
              from, BLOB_LEN - 1, BLOB_LEN, BLOB_LEN - from);
        send_all(fd, s->blob + from, (size_t)(BLOB_LEN - from));
        return 0;
    }
    if (s->mode == MODE_BAD_206 && range[0]) {
        long wrong = from - 1000;
        sendf(fd, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %ld-%d/%d\r\n"
                  "Content-Length: %ld\r\n\r\n",
              wrong, BLOB_LEN - 1, BLOB_LEN, BLOB_LEN - wrong);
        send_all(fd, s->blob + wrong, (size_t)(BLOB_LEN - wrong));
        return 0;
    }
    sendf(fd, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BLOB_LEN);
    send_all(fd, s->blob, BLOB_LEN);
    return 0;
}

typedef struct conn {
    srv *s;
    int fd;
} conn;

static pthread_mutex_t g_srv_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_live_conns;

/* One connection: requests in sequence until either side closes. */
static void *conn_main(void *arg)
{
    conn *cn = arg;
    char req[8192];
    size_t have = 0;
    for (;;) {
        ssize_t r = recv(cn->fd, req + have, sizeof req - 1 - have, 0);
        if (r <= 0)
            break;
        have += (size_t)r;
        req[have] = '\0';
        if ((unsigned char)req[0] == 0x16) /* a TLS ClientHello: not here */
            break;
        char *end = strstr(req, "\r\n\r\n");
        if (!end)
            continue;
        size_t used = (size_t)(end + 4 - req);
        char one[8192], cl[32], body[2048] = "";
        memcpy(one, req, used);
        one[used] = '\0';
        memmove(req, req + used, have - used);
        have -= used;
        size_t blen = header(one, "Content-Length", cl, sizeof cl) ? (size_t)atol(cl) : 0;
        if (blen >= sizeof body)
            break;
        while (have < blen) {
            ssize_t r2 = recv(cn->fd, req + have, sizeof req - 1 - have, 0);
            if (r2 <= 0)
                break;
            have += (size_t)r2;
        }
        if (have < blen)
            break;
        memcpy(body, req, blen);
        body[blen] = '\0';
        memmove(req, req + blen, have - blen);
        have -= blen;
        pthread_mutex_lock(&g_srv_lock);
        int keep = serve(cn->s, cn->fd, one, body);
        pthread_mutex_unlock(&g_srv_lock);
        if (keep < 0)
            break;
    }
    close(cn->fd);
    free(cn);
    pthread_mutex_lock(&g_srv_lock);
    g_live_conns--;
    pthread_mutex_unlock(&g_srv_lock);
    return NULL;
}

static void *srv_main(void *arg)
{
    srv *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        conn *cn = malloc(sizeof *cn);
        pthread_mutex_lock(&g_srv_lock);
        g_live_conns++;
        s->accepts++;
        pthread_mutex_unlock(&g_srv_lock);
        cn->s = s;
        cn->fd = fd;
        pthread_t t;
        pthread_create(&t, NULL, conn_main, cn);
        pthread_detach(t);
    }
}

static void srv_start(srv *s, srv_mode mode)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->blob = malloc(BLOB_LEN);
    assert_non_null(s->blob);
    for (size_t i = 0; i < BLOB_LEN; i++)
        s->blob[i] = (unsigned char)((i * 2654435761u) >> 13);
    sbx__sha256_buf(s->blob, BLOB_LEN, s->digest);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(listen(s->lfd, 16), 0);
    assert_int_equal(pthread_create(&s->tid, NULL, srv_main, s), 0);
}

static void srv_stop(srv *s)
{
    reg_close_idle(); /* the client's pooled connections to this server */
    shutdown(s->lfd, SHUT_RDWR);
    close(s->lfd);
    pthread_join(s->tid, NULL);
    /* the client has closed its connections; let their threads finish */
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&g_srv_lock);
        int live = g_live_conns;
        pthread_mutex_unlock(&g_srv_lock);
        if (!live)
            break;
        usleep(10000);
    }
    free(s->blob);
}

typedef struct fixture {
    char *dir, *certs, *dcfg, *rcfg;
    sbx_store *store;
    srv s;
} fixture;

/* Pull the server's blob as an uncompressed layer (diff_id = digest). */
static void test_opts(fixture *f, sbx_registry_options *opts)
{
    opts->certs_dir = f->certs;
    opts->docker_config = f->dcfg;
    opts->registries_config = f->rcfg;
}

static int pull_blob_with(fixture *f, const char *identity_token, sbx_error *err)
{
    char refs[128];
    snprintf(refs, sizeof refs, "127.0.0.1:%d/t/x", f->s.port);
    sbx_ref ref;
    assert_int_equal(sbx_ref_parse(&ref, refs, err), 0);
    sbx_registry_options opts = SBX_REGISTRY_OPTIONS_INIT;
    test_opts(f, &opts);
    opts.identity_token = identity_token;
    reg_config cfg;
    assert_int_equal(reg_config_load(&cfg, f->rcfg, err), 0);
    reg_client *c = NULL;
    assert_int_equal(reg_client_new(&c, &ref, "", &opts, &cfg, NULL, err), 0);
    sbx_descriptor d = {.size = BLOB_LEN};
    snprintf(d.digest, sizeof d.digest, "%s", f->s.digest);
    snprintf(d.media_type, sizeof d.media_type, "application/vnd.oci.image.layer.v1.tar");
    int rc = reg_pull_layer(c, f->store, &d, f->s.digest, "test", err);
    reg_client_free(c);
    reg_config_free(&cfg);
    return rc;
}

static int pull_blob(fixture *f, sbx_error *err) { return pull_blob_with(f, NULL, err); }

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir();
    char *root = tu_path(f->dir, "store");
    sbx_error err = SBX_ERROR_INIT;
    if (sbx_store_open(&f->store, root, &err) < 0)
        fail_msg("opening the store: %s", err.msg);
    free(root);
    f->certs = tu_path(f->dir, "certs.d");
    f->dcfg = tu_path(f->dir, "docker.json");
    f->rcfg = tu_path(f->dir, "registries.json");
    setenv("SBX_RETRY_BASE_MS", "10", 1);
    setenv("SBX_RETRY_MAX", "4", 1);
    setenv("SBX_STALL_TIMEOUT", "5", 1);
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    srv_stop(&f->s);
    sbx_store_free(f->store);
    free(f->certs);
    free(f->dcfg);
    free(f->rcfg);
    tu_tmpdir_free(f->dir);
    free(f);
    return 0;
}

static void test_resume_with_range(void **state)
{
    fixture *f = *state;
    srv_start(&f->s, MODE_GOOD_206);
    sbx_error err = SBX_ERROR_INIT;
    if (pull_blob(f, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(f->s.blob_gets, 2);
    assert_string_equal(f->s.ranges[0], "");
    char want[64];
    snprintf(want, sizeof want, "bytes=%d-", BLOB_LEN / 2);
    assert_string_equal(f->s.ranges[1], want); /* resumed where it stopped */
    assert_int_equal(sbx_store_has_layer(f->store, f->s.digest, NULL), 1);
}

static void test_resume_ignored_restarts_cleanly(void **state)
{
    fixture *f = *state;
    srv_start(&f->s, MODE_IGNORE_RANGE);
    sbx_error err = SBX_ERROR_INIT;
    if (pull_blob(f, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(f->s.blob_gets, 2);
    assert_true(f->s.ranges[1][0] != '\0'); /* asked for a range, got 200: started over */
    assert_int_equal(sbx_store_has_layer(f->store, f->s.digest, NULL), 1);
}

static void test_resume_wrong_offset_restarts(void **state)
{
    fixture *f = *state;
    srv_start(&f->s, MODE_BAD_206);
    sbx_error err = SBX_ERROR_INIT;
    if (pull_blob(f, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(f->s.blob_gets, 3);
    assert_true(f->s.ranges[1][0] != '\0');
    assert_string_equal(f->s.ranges[2], ""); /* the 206 was refused: whole blob again */
    assert_int_equal(sbx_store_has_layer(f->store, f->s.digest, NULL), 1);
}

static void test_retry_after(void **state)
{
    fixture *f = *state;
    srv_start(&f->s, MODE_RETRY_AFTER);
    sbx_error err = SBX_ERROR_INIT;
    if (pull_blob(f, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(f->s.blob_gets, 2);
    /* waited the second the server asked for, not the 10 ms backoff */
    assert_true(f->s.second_ns - f->s.first_ns >= 900000000ull);
}

static void test_redirect_drops_authorization(void **state)
{
    fixture *f = *state;
    srv_start(&f->s, MODE_REDIRECT);
    sbx_error err = SBX_ERROR_INIT;
    if (pull_blob(f, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(f->s.token_gets, 1);
    assert_int_equal(f->s.auth_on_registry, 1); /* the registry got the token */
    assert_int_equal(f->s.cdn_gets, 1);
    assert_int_equal(f->s.auth_on_cdn, 0);      /* the other origin did not */
    assert_int_equal(sbx_store_has_layer(f->store, f->s.digest, NULL), 1);
}

static void test_identity_token(void **state)
{
    fixture *f = *state;
    srv_start(&f->s, MODE_REFRESH);
    sbx_error err = SBX_ERROR_INIT;
    if (pull_blob_with(f, "refresh/abc=", &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(f->s.token_posts, 1);
    assert_non_null(strstr(f->s.post_body, "grant_type=refresh_token"));
    assert_non_null(strstr(f->s.post_body, "refresh_token=refresh%2Fabc%3D"));
    assert_non_null(strstr(f->s.post_body, "service=svc2"));
    assert_non_null(strstr(f->s.post_body, "scope=repository%3At%2Fx%3Apull"));
    assert_int_equal(sbx_store_has_layer(f->store, f->s.digest, NULL), 1);
}

static void test_resolve_without_head(void **state)
{
    fixture *f = *state;
    srv_start(&f->s, MODE_NO_HEAD);
    char ref[128], want[SBX_DIGEST_BUFSZ];
    snprintf(ref, sizeof ref, "127.0.0.1:%d/t/x:v1", f->s.port);
    sbx__sha256_buf(MANIFEST_BODY, strlen(MANIFEST_BODY), want);
    sbx_registry_options opts = SBX_REGISTRY_OPTIONS_INIT;
    test_opts(f, &opts);
    opts.store = f->store;
    sbx_resolve_result r;
    sbx_error err = SBX_ERROR_INIT;
    if (sbx_registry_resolve_ex(&r, ref, &opts, NULL, &err) < 0)
        fail_msg("%s", err.msg);
    assert_string_equal(r.digest, want);
    assert_int_equal(f->s.heads, 1);
    assert_int_equal(f->s.manifest_gets, 1);
    assert_int_equal(r.cached, 0);
    /* the second answer comes from the store's cache: no request */
    assert_int_equal(sbx_registry_resolve_ex(&r, ref, &opts, NULL, &err), 0);
    assert_int_equal(r.cached, 1);
    assert_string_equal(r.digest, want);
    assert_int_equal(f->s.heads + f->s.manifest_gets, 2);
    /* ttl 0: asked again */
    opts.resolve_ttl = 0;
    assert_int_equal(sbx_registry_resolve_ex(&r, ref, &opts, NULL, &err), 0);
    assert_int_equal(r.cached, 0);
    assert_int_equal(f->s.manifest_gets, 2);
}

static void must(int r, const sbx_error *err)
{
    if (r < 0)
        fail_msg("%s", err->msg);
}

static int accepts(srv *s)
{
    pthread_mutex_lock(&g_srv_lock);
    int n = s->accepts;
    pthread_mutex_unlock(&g_srv_lock);
    return n;
}

/* Calls in one process reuse the connection a previous call left open. */
static void test_connection_reused_across_calls(void **state)
{
    fixture *f = *state;
    srv_start(&f->s, MODE_NO_HEAD);
    char ref[128];
    snprintf(ref, sizeof ref, "127.0.0.1:%d/t/x:v1", f->s.port);
    sbx_registry_options opts = SBX_REGISTRY_OPTIONS_INIT;
    test_opts(f, &opts);
    opts.store = f->store;
    opts.resolve_ttl = 0;
    char d[SBX_DIGEST_BUFSZ];
    sbx_error err = SBX_ERROR_INIT;
    for (int i = 0; i < 3; i++)
        if (sbx_registry_resolve(d, ref, &opts, NULL, &err) < 0)
            fail_msg("%s", err.msg);
    assert_int_equal(f->s.manifest_gets, 3);
    /* the first call may probe for TLS on its own connection; after that
     * every request rides the one the first call opened */
    int after_three = accepts(&f->s);
    assert_in_range(after_three, 1, 2);
    must(sbx_registry_resolve(d, ref, &opts, NULL, &err), &err);
    assert_int_equal(accepts(&f->s), after_three);
    /* closing the idle connections makes the next call connect again */
    sbx_registry_close_idle();
    must(sbx_registry_resolve(d, ref, &opts, NULL, &err), &err);
    assert_int_equal(accepts(&f->s), after_three + 1);
}

typedef struct resolver {
    const char *ref;
    fixture *f;
    int failures;
} resolver;

static void *resolve_loop(void *arg)
{
    resolver *r = arg;
    sbx_registry_options opts = SBX_REGISTRY_OPTIONS_INIT;
    test_opts(r->f, &opts);
    opts.resolve_ttl = 0;
    for (int i = 0; i < 10; i++) {
        char d[SBX_DIGEST_BUFSZ];
        sbx_error err = SBX_ERROR_INIT;
        if (sbx_registry_resolve(d, r->ref, &opts, NULL, &err) < 0)
            r->failures++;
    }
    return NULL;
}

/* Threads resolving at once each get their own handle: every call
 * succeeds, and no more connections are opened than threads (plus probes). */
static void test_concurrent_resolves(void **state)
{
    fixture *f = *state;
    srv_start(&f->s, MODE_NO_HEAD);
    char ref[128];
    snprintf(ref, sizeof ref, "127.0.0.1:%d/t/x:v1", f->s.port);
    sbx_error err = SBX_ERROR_INIT;
    must(sbx_registry_global_init(&err), &err);
    enum { N = 6 };
    pthread_t t[N];
    resolver r[N];
    for (int i = 0; i < N; i++) {
        r[i] = (resolver){.ref = ref, .f = f};
        assert_int_equal(pthread_create(&t[i], NULL, resolve_loop, &r[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].failures, 0);
    }
    assert_int_equal(f->s.manifest_gets, N * 10);
    assert_in_range(accepts(&f->s), 1, 2 * N);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_resume_with_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_ignored_restarts_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_wrong_offset_restarts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_drops_authorization, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_without_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_reused_across_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_resolves, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
