/* Private content: the origins of stored digests and the caller's check.
 *
 * A pull records, for every digest it stores (index, manifest, config,
 * layers), the repository it came from and whether an anonymous caller was
 * refused there.  A digest is public when any origin is public (anyone may
 * pull it from there) or when it has none (built, committed, loaded here);
 * otherwise each of its private repositories is a way to prove access.
 * An image is usable when every private piece it reaches is: so an image
 * built on a private base, or a snapshot of a sandbox of one, stays
 * private without any bookkeeping of its own, through the base's layers. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "store_internal.h"

#define ORIGIN_REPO_MAX 512

/* The origin repository of what was made here: not "host/path", so no
 * registry's. */
#define ORIGIN_LOCAL "local"

/* ref_digest NULL: each digest is its own. */
static int origin_insert(sbx_store *s, const char *const *digests, size_t ndigests,
                         const char *repo, const char *ref_digest, bool is_private,
                         sbx_error *err)
{
    for (size_t i = 0; i < ndigests; i++)
        if (!sbx__digest_valid(digests[i]))
            return sbx_error_set(err, SBX_EINVAL, "record origin: bad digest '%.80s'",
                                 digests[i]);
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st,
                           "INSERT INTO origins(digest, repo, ref, private, stamp)"
                           " VALUES(?, ?, ?, ?, ?) ON CONFLICT(digest, repo) DO UPDATE SET"
                           " ref=excluded.ref, private=excluded.private, stamp=excluded.stamp",
                           err) < 0)
        return err->code;
    if (sbx_store__begin(s, err) < 0)
        return err->code;
    int64_t now = sbx__now_unix();
    for (size_t i = 0; i < ndigests; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, digests[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, repo, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, ref_digest ? ref_digest : digests[i], -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, is_private ? 1 : 0);
        sqlite3_bind_int64(st, 5, now);
        if (sqlite3_step(st) != SQLITE_DONE) {
            sbx_store__sql_err(s, err, "record origin");
            sbx_store__rollback(s);
            return err->code;
        }
    }
    return sbx_store__commit(s, err);
}

int sbx_store_origin_set(sbx_store *s, const char *const *digests, size_t ndigests,
                         const char *repo, const char *ref_digest, bool is_private,
                         sbx_error *err)
{
    if (!repo || !strchr(repo, '/') || strlen(repo) > ORIGIN_REPO_MAX ||
        !sbx__digest_valid(ref_digest))
        return sbx_error_set(err, SBX_EINVAL, "record origin: bad repository or digest");
    return origin_insert(s, digests, ndigests, repo, ref_digest, is_private, err);
}

int sbx_store_origin_local(sbx_store *s, const char *const *digests, size_t ndigests,
                           sbx_error *err)
{
    return origin_insert(s, digests, ndigests, ORIGIN_LOCAL, NULL, false, err);
}

void sbx_store_set_access(sbx_store *s, sbx_access_fn fn, void *arg)
{
    s->access = fn;
    s->access_arg = fn ? arg : NULL;
}

/* Every origin of digest and what it reaches, grouped by digest. */
static const char *const REACH_SQL =
    "WITH RECURSIVE reach(d) AS (SELECT ?1 UNION"
    " SELECT c.child FROM children c JOIN reach r ON c.parent = r.d)"
    " SELECT o.digest, o.repo, o.ref, o.private FROM origins o JOIN reach r ON o.digest = r.d"
    " ORDER BY o.digest, o.private, o.repo";

typedef struct {
    char repo[ORIGIN_REPO_MAX + 1];
    int verdict; /* 0 unknown, 1 allowed, -1 refused */
} repo_verdict;

typedef struct {
    repo_verdict *v;
    size_t n, cap;
    sbx_error last; /* the last refusal, for the message */
} verdicts;

/* The check for repo, asked at most once per call. */
static bool allowed(sbx_store *s, sbx_access_fn fn, void *arg, verdicts *vs, const char *repo,
                    const char *ref)
{
    for (size_t i = 0; i < vs->n; i++)
        if (!strcmp(vs->v[i].repo, repo))
            return vs->v[i].verdict > 0;
    if (vs->n == vs->cap) {
        size_t cap = vs->cap ? vs->cap * 2 : 4;
        repo_verdict *nv = realloc(vs->v, cap * sizeof *nv);
        if (!nv)
            return false;
        vs->v = nv;
        vs->cap = cap;
    }
    repo_verdict *v = &vs->v[vs->n++];
    snprintf(v->repo, sizeof v->repo, "%s", repo);
    sbx_error e = SBX_ERROR_INIT;
    if (!fn) {
        sbx_error_set(&e, SBX_EAUTH, "it was pulled with credentials from '%s' and no "
                      "credentials were checked for this use", repo);
        v->verdict = -1;
    } else {
        v->verdict = fn(arg, s, repo, ref, &e) == 0 ? 1 : -1;
        if (v->verdict < 0 && !e.code)
            sbx_error_set(&e, SBX_EAUTH, "access to '%s' refused", repo);
    }
    if (v->verdict < 0)
        vs->last = e;
    return v->verdict > 0;
}

int sbx_store_access_check(sbx_store *s, const char *digest, sbx_error *err)
{
    return sbx_store_access_check_with(s, digest, s->access, s->access_arg, err);
}

int sbx_store_access_check_with(sbx_store *s, const char *digest, sbx_access_fn fn, void *arg,
                                sbx_error *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (sbx_store__prepare(s, &st, REACH_SQL, err) < 0)
        return err->code;
    sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
    verdicts vs = {0};
    int rc = 0;
    /* rows of one digest in a row: public ones first (private = 0) */
    char cur[SBX_DIGEST_BUFSZ] = "";
    bool cur_public = false, cur_ok = false;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(st, 0);
        const char *repo = (const char *)sqlite3_column_text(st, 1);
        const char *ref = (const char *)sqlite3_column_text(st, 2);
        bool priv = sqlite3_column_int(st, 3) != 0;
        if (strcmp(d, cur) != 0) {
            if (cur[0] && !cur_public && !cur_ok)
                break; /* the previous piece had no way in */
            snprintf(cur, sizeof cur, "%s", d);
            cur_public = !priv;
            cur_ok = false;
        }
        if (cur_public || cur_ok)
            continue;
        cur_ok = allowed(s, fn, arg, &vs, repo, ref);
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        rc = sbx_store__sql_err(s, err, "check access");
    else if (cur[0] && !cur_public && !cur_ok) {
        if (vs.last.code) {
            *err = vs.last;
            sbx_error_wrap(err, "'%.19s' is private", digest);
        } else {
            sbx_error_set(err, SBX_ENOMEM, "check access: out of memory");
        }
        err->code = err->code == SBX_ENOMEM ? SBX_ENOMEM
                    : err->code == SBX_ENET ? SBX_ENET
                                            : SBX_EAUTH;
        rc = err->code;
    }
    free(vs.v);
    return rc;
}

int sbx_store_secret_key(sbx_store *s, unsigned char key[32], sbx_error *err)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = openat(s->root_fd, "access.key", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
            ssize_t n = sbx__read_full(fd, key, 32);
            close(fd);
            if (n == 32)
                return 0;
            return sbx_error_set(err, SBX_ECORRUPT, "the store's key '%s/access.key' is not "
                                 "32 bytes (remove it: a new one is made)", s->root);
        }
        if (errno != ENOENT)
            return sbx_store__io_err(s, err, errno, "reading access.key");
        /* make one: a private temp file linked into place, so two first
         * uses agree on one key */
        unsigned char fresh[32];
        if (getrandom(fresh, sizeof fresh, 0) != (ssize_t)sizeof fresh)
            return sbx_error_sys(err, SBX_EIO, errno, "making the store's key");
        char tmp[64];
        snprintf(tmp, sizeof tmp, "tmp/access.key.%ld", (long)getpid());
        fd = openat(s->root_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return sbx_store__io_err(s, err, errno, "making the store's key");
        int rc = sbx__write_all(fd, fresh, sizeof fresh, err);
        if (rc == 0 && fsync(fd) < 0)
            rc = sbx_store__io_err(s, err, errno, "making the store's key");
        close(fd);
        if (rc == 0 && linkat(s->root_fd, tmp, s->root_fd, "access.key", 0) < 0 &&
            errno != EEXIST)
            rc = sbx_store__io_err(s, err, errno, "making the store's key");
        unlinkat(s->root_fd, tmp, 0);
        explicit_bzero(fresh, sizeof fresh);
        if (rc < 0)
            return rc;
    }
    return sbx_error_set(err, SBX_EIO, "reading the store's key: it vanished");
}
