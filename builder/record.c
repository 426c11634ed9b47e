/* Build records: what the control plane asks about a build once its
 * process is gone, and the way to stop one from another process.
 *
 * A record is a JSON document in the store's metadata (namespace "build",
 * key the build id): id, recipe digest, state (queued, running, succeeded,
 * failed, cancelled), created/started/ended, the image digest or the error,
 * and per step its summary, state and seconds.  The full log (every event
 * line and every line of the steps' output) is <store>/builds/<id>.log.
 *
 * Liveness, as everywhere in the store, is an flock: the builder holds the
 * log file exclusively until the record is final.  A record still saying
 * queued or running whose log can be locked belongs to a builder that died:
 * readers say (and write) "failed".
 *
 * Cancel from another process: sbx_build_cancel creates builds/<id>.cancel;
 * the builder watches for it (a thread, every 100 ms) and cancels its call's
 * context: a running step's container is killed, nothing half-built is
 * kept, the record says cancelled.
 *
 * Records and logs older than $SBX_BUILD_RECORDS_DAYS (default 7) are
 * removed when a build starts, at most once an hour. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "build_internal.h"
#include "sbx/builder.h"
#include "sbx_common.h"

#define RECORD_NS "build"
#define RECORD_DAYS_DEFAULT 7
#define PRUNE_NS "build-prune"
#define PRUNE_EVERY_SECONDS 3600
#define FAILED_NS "build-step-failed"

struct bld_record {
    sbx_store *s;
    char id[SBX_BUILD_ID_BUFSZ];
    int log_fd; /* flock()ed while the build lives */
    json_t *doc;
    char *cancel_path;
    /* the cancel watcher */
    pthread_t th;
    bool watching;
    int stop_fd[2];
    sbx_ctx *ctx;
};

static void new_id(char out[SBX_BUILD_ID_BUFSZ])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[12];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        uint64_t x = sbx__now_monotonic_ns() ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < sizeof r; i++, x = x * 6364136223846793005ull + 1)
            r[i] = (unsigned char)(x >> 56);
    }
    for (size_t i = 0; i < sizeof r; i++)
        out[i] = alphabet[r[i] % (sizeof alphabet - 1)];
    out[12] = '\0';
}

static char *builds_path(sbx_store *s, const char *id, const char *ext)
{
    return sbx__strdup_printf("%s/builds/%s%s", sbx_store_root(s), id, ext);
}

static int save(bld_record *r, sbx_error *err)
{
    char *v = json_dumps(r->doc, JSON_COMPACT | JSON_SORT_KEYS);
    if (!v)
        return sbx_error_set(err, SBX_ENOMEM, "build record: out of memory");
    int rc = sbx_store_meta_set(r->s, RECORD_NS, r->id, v, err);
    free(v);
    return rc;
}

static void log_line(bld_record *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(bld_record *r, const char *fmt, ...)
{
    if (!r || r->log_fd < 0)
        return;
    char buf[4400];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    sbx_error ignore = SBX_ERROR_INIT;
    sbx__write_all(r->log_fd, buf, (size_t)n, &ignore); /* O_APPEND */
}

/* Remove records and logs older than the retention. */
static void prune(sbx_store *s)
{
    const char *env = getenv("SBX_BUILD_RECORDS_DAYS");
    long days = env && atol(env) > 0 ? atol(env) : RECORD_DAYS_DEFAULT;
    int64_t now = sbx__now_unix(), before = now - days * 86400, last = 0;
    sbx_build_record *v = NULL;
    size_t n = 0;
    sbx_error err = SBX_ERROR_INIT;
    /* at most once an hour: a busy build host has many records, and every
     * build would otherwise read them all */
    char *seen = NULL;
    if (sbx_store_meta_get(s, PRUNE_NS, "last", &seen, &last, &err) == 0 &&
        now - last < PRUNE_EVERY_SECONDS) {
        free(seen);
        return;
    }
    free(seen);
    sbx_store_meta_set(s, PRUNE_NS, "last", "", &err);
    if (sbx_build_records(&v, &n, s, &err) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (v[i].created >= before || !strcmp(v[i].state, "queued") ||
            !strcmp(v[i].state, "running"))
            continue;
        _cleanup_free_ char *log = builds_path(s, v[i].id, ".log");
        _cleanup_free_ char *cancel = builds_path(s, v[i].id, ".cancel");
        if (log)
            unlink(log);
        if (cancel)
            unlink(cancel);
        sbx_store_meta_delete(s, RECORD_NS, v[i].id, &err);
    }
    sbx_build_records_free(v, n);
    /* failures are only for the builds that waited: an hour is plenty */
    char **keys = NULL, **vals = NULL;
    if (sbx_store_meta_list(s, FAILED_NS, &keys, &vals, &n, &err) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        char *val = NULL;
        int64_t stamp = 0;
        if (sbx_store_meta_get(s, FAILED_NS, keys[i], &val, &stamp, &err) == 0 &&
            now - stamp > PRUNE_EVERY_SECONDS)
            sbx_store_meta_delete(s, FAILED_NS, keys[i], &err);
        free(val);
        free(keys[i]);
        free(vals[i]);
    }
    free(keys);
    free(vals);
}

void bld_record_step_failed(bld_record *r, const char *key, const char *outcome,
                            const sbx_error *failure)
{
    if (!r || !key[0])
        return;
    _cleanup_free_ char *v = sbx__strdup_printf("%s %s %s", outcome, r->id, failure->msg);
    sbx_error ignore = SBX_ERROR_INIT;
    if (v)
        sbx_store_meta_set(r->s, FAILED_NS, key, v, &ignore);
}

int bld_record_shared_failure(sbx_store *s, const char *key, const char *outcome, int64_t since,
                              sbx_error *err)
{
    _cleanup_free_ char *v = NULL;
    int64_t stamp = 0;
    sbx_error e = SBX_ERROR_INIT;
    if (!key[0] || sbx_store_meta_get(s, FAILED_NS, key, &v, &stamp, &e) < 0 || stamp < since)
        return 0;
    size_t ol = strlen(outcome);
    if (strncmp(v, outcome, ol) != 0 || v[ol] != ' ')
        return 0;
    const char *id = v + ol + 1, *sp = strchr(id, ' ');
    if (!sp)
        return 0;
    return sbx_error_set(err, SBX_ESTEP, "failed in build %.*s of this recipe, which this build "
                         "waited for (sbx-image build-log %.*s): %s",
                         (int)(sp - id), id, (int)(sp - id), id, sp + 1);
}

int bld_record_begin(bld_record **out, sbx_store *s, const char *recipe_digest, sbx_error *err)
{
    *out = NULL;
    prune(s);
    bld_record *r = calloc(1, sizeof *r);
    if (!r)
        return sbx_error_set(err, SBX_ENOMEM, "build record: out of memory");
    r->s = s;
    r->log_fd = -1;
    r->stop_fd[0] = r->stop_fd[1] = -1;
    _cleanup_free_ char *dir = sbx__strdup_printf("%s/builds", sbx_store_root(s));
    if (!dir || (mkdir(dir, 0700) < 0 && errno != EEXIST)) {
        free(r);
        return sbx_error_sys(err, SBX_EIO, errno, "build record: creating '%s'",
                             dir ? dir : "builds");
    }
    for (int attempt = 0; attempt < 8 && r->log_fd < 0; attempt++) {
        new_id(r->id);
        _cleanup_free_ char *log = builds_path(s, r->id, ".log");
        if (!log)
            break;
        r->log_fd = open(log, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
        if (r->log_fd >= 0 && flock(r->log_fd, LOCK_EX) < 0) {
            close(r->log_fd);
            r->log_fd = -1;
        }
    }
    if (r->log_fd < 0) {
        free(r);
        return sbx_error_sys(err, SBX_EIO, errno, "build record: creating its log");
    }
    r->cancel_path = builds_path(s, r->id, ".cancel");
    r->doc = json_pack("{s:s, s:s, s:s, s:I, s:[]}", "id", r->id, "recipe_digest", recipe_digest,
                       "state", "queued", "created", (json_int_t)sbx__now_unix(), "steps");
    if (!r->doc || !r->cancel_path || save(r, err) < 0) {
        int rc = r->doc && r->cancel_path ? err->code
                                          : sbx_error_set(err, SBX_ENOMEM, "build record");
        bld_record_end(r, rc, NULL, err);
        return rc;
    }
    log_line(r, "build %s of recipe %s", r->id, recipe_digest);
    *out = r;
    return 0;
}

const char *bld_record_id(const bld_record *r) { return r ? r->id : ""; }

void bld_record_running(bld_record *r)
{
    if (!r)
        return;
    json_object_set_new(r->doc, "state", json_string("running"));
    json_object_set_new(r->doc, "started", json_integer(sbx__now_unix()));
    sbx_error ignore = SBX_ERROR_INIT;
    save(r, &ignore);
}

const char *sbx_build_event_name(sbx_build_event_kind k)
{
    switch (k) {
    case SBX_BUILD_EV_BASE: return "base";
    case SBX_BUILD_EV_START: return "start";
    case SBX_BUILD_EV_CACHED: return "cached";
    case SBX_BUILD_EV_DONE: return "done";
    case SBX_BUILD_EV_FAILED: return "failed";
    }
    return "event";
}

void bld_record_event(bld_record *r, const sbx_build_event *ev)
{
    if (!r)
        return;
    if (ev->kind == SBX_BUILD_EV_BASE) {
        log_line(r, "[base] %s %s%s%s", ev->summary ? ev->summary : "",
                 ev->detail ? ev->detail : "", ev->digest ? " -> " : "",
                 ev->digest ? ev->digest : "");
        return;
    }
    log_line(r, "[%zu/%zu] %s: %s%s%s", ev->index, ev->total, ev->summary ? ev->summary : "",
             sbx_build_event_name(ev->kind), ev->detail ? " " : "", ev->detail ? ev->detail : "");
    if (ev->kind == SBX_BUILD_EV_START)
        return;
    json_t *step = json_pack("{s:I, s:s, s:s, s:f}", "index", (json_int_t)ev->index, "summary",
                             ev->summary ? ev->summary : "", "state", sbx_build_event_name(ev->kind),
                             "seconds", ev->seconds);
    if (step)
        json_array_append_new(json_object_get(r->doc, "steps"), step);
    sbx_error ignore = SBX_ERROR_INIT;
    save(r, &ignore);
}

void bld_record_output(bld_record *r, size_t index, const char *line)
{
    log_line(r, "  %zu| %s", index, line);
}

/* ---- cancel from another process ------------------------------------------ */

static void *watch(void *p)
{
    bld_record *r = p;
    for (;;) {
        struct pollfd pf = {r->stop_fd[0], POLLIN, 0};
        if (poll(&pf, 1, 100) > 0)
            return NULL;
        if (access(r->cancel_path, F_OK) == 0) {
            log_line(r, "cancel requested");
            sbx_ctx_cancel(r->ctx);
            return NULL;
        }
    }
}

void bld_record_watch_cancel(bld_record *r, sbx_ctx *ctx)
{
    if (!r || !ctx || pipe2(r->stop_fd, O_CLOEXEC) < 0)
        return;
    r->ctx = ctx;
    r->watching = pthread_create(&r->th, NULL, watch, r) == 0;
}

void bld_record_end(bld_record *r, int rc, const char *digest, const sbx_error *err)
{
    if (!r)
        return;
    if (r->watching) {
        char b = 1;
        ssize_t w = write(r->stop_fd[1], &b, 1);
        (void)w;
        pthread_join(r->th, NULL);
    }
    if (r->stop_fd[0] >= 0) {
        close(r->stop_fd[0]);
        close(r->stop_fd[1]);
    }
    const char *state = rc == 0 ? "succeeded" : rc == SBX_ECANCELED ? "cancelled" : "failed";
    if (r->doc) {
        json_object_set_new(r->doc, "state", json_string(state));
        json_object_set_new(r->doc, "ended", json_integer(sbx__now_unix()));
        if (rc == 0 && digest)
            json_object_set_new(r->doc, "digest", json_string(digest));
        if (rc < 0 && err) {
            char buf[1400];
            json_object_set_new(r->doc, "error",
                                json_string(sbx_error_format(err, buf, sizeof buf)));
        }
        sbx_error ignore = SBX_ERROR_INIT;
        save(r, &ignore);
    }
    log_line(r, "build %s %s%s%s", r->id, state, digest && rc == 0 ? ": " : "",
             digest && rc == 0 ? digest : "");
    if (r->cancel_path)
        unlink(r->cancel_path);
    if (r->log_fd >= 0)
        close(r->log_fd); /* drops the lock: the record is final */
    json_decref(r->doc);
    free(r->cancel_path);
    free(r);
}

/* ---- reading (public) -------------------------------------------------------- */

void sbx_build_record_clear(sbx_build_record *rec)
{
    if (!rec)
        return;
    free(rec->error);
    free(rec->json);
    memset(rec, 0, sizeof *rec);
}

void sbx_build_records_free(sbx_build_record *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        sbx_build_record_clear(&v[i]);
    free(v);
}

/* Whether a record's builder is alive (holds its log). */
static bool builder_alive(sbx_store *s, const char *id)
{
    _cleanup_free_ char *log = builds_path(s, id, ".log");
    _cleanup_close_ int fd = log ? open(log, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return false;
    return flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
}

static int parse_record(sbx_build_record *out, sbx_store *s, const char *key, const char *value,
                        sbx_error *err)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *d = json_loads(value, 0, &je);
    if (!json_is_object(d)) {
        json_decref(d);
        return sbx_error_set(err, SBX_ECORRUPT, "build record '%s' is not JSON", key);
    }
    const char *state = json_string_value(json_object_get(d, "state"));
    /* a builder that died: the record is final now */
    if (state && (!strcmp(state, "queued") || !strcmp(state, "running")) &&
        !builder_alive(s, key)) {
        json_object_set_new(d, "state", json_string("failed"));
        json_object_set_new(d, "error", json_string("the builder died before the build ended"));
        char *v = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
        sbx_error ignore = SBX_ERROR_INIT;
        if (v)
            sbx_store_meta_set(s, RECORD_NS, key, v, &ignore);
        free(v);
        state = "failed";
    }
    snprintf(out->id, sizeof out->id, "%s", key);
    snprintf(out->recipe_digest, sizeof out->recipe_digest, "%s",
             json_string_value(json_object_get(d, "recipe_digest")) ?: "");
    snprintf(out->state, sizeof out->state, "%s", state ? state : "failed");
    snprintf(out->digest, sizeof out->digest, "%s",
             json_string_value(json_object_get(d, "digest")) ?: "");
    out->created = json_integer_value(json_object_get(d, "created"));
    out->started = json_integer_value(json_object_get(d, "started"));
    out->ended = json_integer_value(json_object_get(d, "ended"));
    const char *e = json_string_value(json_object_get(d, "error"));
    out->error = e ? strdup(e) : NULL;
    out->json = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(d);
    if (!out->json || (e && !out->error)) {
        sbx_build_record_clear(out);
        return sbx_error_set(err, SBX_ENOMEM, "build record: out of memory");
    }
    return 0;
}

static int cmp_created_desc(const void *a, const void *b)
{
    const sbx_build_record *x = a, *y = b;
    if (x->created != y->created)
        return x->created < y->created ? 1 : -1;
    return strcmp(x->id, y->id);
}

int sbx_build_records(sbx_build_record **out, size_t *n, sbx_store *s, sbx_error *err)
{
    *out = NULL;
    *n = 0;
    char **keys = NULL, **values = NULL;
    size_t nk = 0;
    if (sbx_store_meta_list(s, RECORD_NS, &keys, &values, &nk, err) < 0)
        return sbx_error_wrap(err, "list builds");
    sbx_build_record *v = calloc(nk + 1, sizeof *v);
    int rc = v ? 0 : sbx_error_set(err, SBX_ENOMEM, "list builds: out of memory");
    size_t len = 0;
    for (size_t i = 0; rc == 0 && i < nk; i++) {
        sbx_error one = SBX_ERROR_INIT;
        if (parse_record(&v[len], s, keys[i], values[i], &one) == 0)
            len++;
        else if (one.code == SBX_ENOMEM)
            rc = sbx_error_set(err, SBX_ENOMEM, "list builds: out of memory");
    }
    for (size_t i = 0; i < nk; i++) {
        free(keys[i]);
        free(values[i]);
    }
    free(keys);
    free(values);
    if (rc < 0) {
        sbx_build_records_free(v, len);
        return rc;
    }
    qsort(v, len, sizeof *v, cmp_created_desc);
    *out = v;
    *n = len;
    return 0;
}

int sbx_build_record_get(sbx_build_record *out, sbx_store *s, const char *id_or_recipe,
                         sbx_error *err)
{
    memset(out, 0, sizeof *out);
    sbx_build_record *v = NULL;
    size_t n = 0;
    if (sbx_build_records(&v, &n, s, err) < 0)
        return err->code;
    for (size_t i = 0; i < n; i++) /* newest first: a recipe digest gives its last build */
        if (!strcmp(v[i].id, id_or_recipe) || !strcmp(v[i].recipe_digest, id_or_recipe)) {
            *out = v[i];
            memset(&v[i], 0, sizeof v[i]);
            sbx_build_records_free(v, n);
            return 0;
        }
    sbx_build_records_free(v, n);
    sbx_error_set(err, SBX_ENOTFOUND, "no build '%s' in store '%s' (see sbx-image builds)",
                  id_or_recipe, sbx_store_root(s));
    sbx_error_where(err, "%s", id_or_recipe);
    return SBX_ENOTFOUND;
}

int sbx_build_log(sbx_store *s, const char *id_or_recipe, bool follow, sbx_build_log_fn fn,
                  void *ud, sbx_ctx *ctx, sbx_error *err)
{
    sbx_build_record rec;
    if (sbx_build_record_get(&rec, s, id_or_recipe, err) < 0)
        return err->code;
    _cleanup_free_ char *log = builds_path(s, rec.id, ".log");
    sbx_build_record_clear(&rec);
    _cleanup_close_ int fd = log ? open(log, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return sbx_error_sys(err, SBX_ENOTFOUND, errno, "build log '%s'", log ? log : "");
    char buf[65536];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return sbx_error_sys(err, SBX_EIO, errno, "reading build log '%s'", log);
        if (r > 0) {
            fn(ud, buf, (size_t)r);
            continue;
        }
        if (!follow)
            return 0;
        /* at the end: done when the builder let go of the log (then read
         * what it wrote last), else wait for more */
        if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
            while ((r = read(fd, buf, sizeof buf)) > 0)
                fn(ud, buf, (size_t)r);
            return 0;
        }
        if (sbx__check_cancel(ctx, err) < 0)
            return err->code;
        struct pollfd p = {sbx__ctx_cancel_fd(ctx), POLLIN, 0};
        poll(&p, 1, 100);
    }
}

int sbx_build_cancel(sbx_store *s, const char *id_or_recipe, sbx_error *err)
{
    sbx_build_record rec;
    if (sbx_build_record_get(&rec, s, id_or_recipe, err) < 0)
        return err->code;
    int rc = 0;
    if (strcmp(rec.state, "queued") != 0 && strcmp(rec.state, "running") != 0)
        rc = sbx_error_set(err, SBX_EINVAL, "build %s already ended (%s)", rec.id, rec.state);
    _cleanup_free_ char *p = rc == 0 ? builds_path(s, rec.id, ".cancel") : NULL;
    if (rc == 0) {
        int fd = p ? open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600) : -1;
        if (fd < 0)
            rc = sbx_error_sys(err, SBX_EIO, errno, "requesting cancel of build %s", rec.id);
        else
            close(fd);
    }
    sbx_build_record_clear(&rec);
    return rc;
}
