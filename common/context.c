/* The per-call context (include/sbx/context.h).
 *
 * Cancel is an atomic flag plus an eventfd: the flag for the cheap checks
 * between units of work, the eventfd so a call waiting in poll() (a running
 * build step) wakes at once.  Both are set with async-signal-safe
 * operations.  Callbacks run under a recursive mutex, so the worker threads
 * of one call never enter a callback together. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/file.h>

#include "sbx_common.h"

struct sbx_ctx {
    pthread_mutex_t lock;
    sbx_log_fn log;
    void *log_ud;
    sbx_log_level level;
    sbx_progress_fn progress;
    void *progress_ud;
    char *op_id;
    atomic_int cancelled;
    int efd;
};

int sbx_ctx_new(sbx_ctx **out, sbx_error *err)
{
    *out = NULL;
    sbx_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return sbx_error_set(err, SBX_ENOMEM, "creating a context: out of memory");
    c->level = SBX_LOG_INFO;
    c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->efd < 0) {
        int e = errno;
        free(c);
        return sbx_error_sys(err, sbx__errno_code(e), e, "creating a context: eventfd");
    }
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&c->lock, &a);
    pthread_mutexattr_destroy(&a);
    *out = c;
    return 0;
}

void sbx_ctx_free(sbx_ctx *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->lock);
    close(c->efd);
    free(c->op_id);
    free(c);
}

void sbx_ctx_set_log(sbx_ctx *c, sbx_log_fn fn, void *ud, sbx_log_level min_level)
{
    c->log = fn;
    c->log_ud = ud;
    c->level = min_level;
}

void sbx_ctx_set_progress(sbx_ctx *c, sbx_progress_fn fn, void *ud)
{
    c->progress = fn;
    c->progress_ud = ud;
}

int sbx_ctx_set_op_id(sbx_ctx *c, const char *op_id, sbx_error *err)
{
    char *copy = op_id ? strdup(op_id) : NULL;
    if (op_id && !copy)
        return sbx_error_set(err, SBX_ENOMEM, "setting an operation id: out of memory");
    free(c->op_id);
    c->op_id = copy;
    return 0;
}

const char *sbx_ctx_op_id(const sbx_ctx *c) { return c ? c->op_id : NULL; }

void sbx_ctx_cancel(sbx_ctx *c)
{
    if (!c)
        return;
    atomic_store(&c->cancelled, 1);
    uint64_t one = 1;
    ssize_t n = write(c->efd, &one, sizeof one); /* EAGAIN: already signalled */
    (void)n;
}

bool sbx_ctx_cancelled(const sbx_ctx *c)
{
    return c && atomic_load(&((sbx_ctx *)c)->cancelled);
}

int sbx__ctx_cancel_fd(const sbx_ctx *c) { return c ? c->efd : -1; }

int sbx__check_cancel(const sbx_ctx *c, sbx_error *err)
{
    if (!sbx_ctx_cancelled(c))
        return 0;
    return sbx_error_set(err, SBX_ECANCELED, "cancelled");
}

int sbx__flock_wait(int fd, int op, const sbx_ctx *c, sbx_error *err)
{
    return sbx__flock_wait_until(fd, op, c, 0, err);
}

int sbx__flock_wait_until(int fd, int op, const sbx_ctx *c, uint64_t deadline_ns,
                          sbx_error *err)
{
    /* flock cannot wait on a second fd: try, and sleep on the cancel fd
     * between tries (a held lock is a running build: 50 ms is nothing). */
    for (;;) {
        if (flock(fd, op | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return sbx_error_sys(err, SBX_EIO, errno, "flock");
        if (sbx__check_cancel(c, err) < 0)
            return err->code;
        if (deadline_ns && sbx__now_monotonic_ns() >= deadline_ns)
            return sbx_error_set(err, SBX_ETIMEOUT, "gave up waiting for a lock");
        struct pollfd p = {sbx__ctx_cancel_fd(c), POLLIN, 0};
        poll(&p, 1, 50);
    }
}

bool sbx__log_enabled(const sbx_ctx *c, sbx_log_level level)
{
    return c && c->log && level >= c->level;
}

void sbx__log(const sbx_ctx *cc, sbx_log_level level, const char *fmt, ...)
{
    sbx_ctx *c = (sbx_ctx *)cc;
    if (!sbx__log_enabled(c, level))
        return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&c->lock);
    c->log(c->log_ud, level, c->op_id, buf);
    pthread_mutex_unlock(&c->lock);
}

void sbx__progress(const sbx_ctx *cc, const char *id, const char *phase, uint64_t done,
                   uint64_t total)
{
    sbx_ctx *c = (sbx_ctx *)cc;
    if (!c || !c->progress)
        return;
    sbx_progress p = {.op_id = c->op_id, .id = id, .phase = phase, .done = done, .total = total};
    pthread_mutex_lock(&c->lock);
    c->progress(c->progress_ud, &p);
    pthread_mutex_unlock(&c->lock);
}
