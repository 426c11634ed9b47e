/* Transfers on worker threads: pull's layer downloads and push's blob
 * uploads.  Each worker has its own curl handle (a clone of the caller's
 * client) and, when asked, its own store handle (store handles serve one
 * thread at a time).  The first failure stops the others: their running
 * transfers are cancelled and no new job starts. */
#include <string.h>

#include "registry_internal.h"

struct reg_workers {
    pthread_mutex_t lock;
    size_t njobs, next;
    bool failed;
    volatile int cancel; /* set with failed: running transfers stop */
    sbx_error err;
    reg_job_fn fn;
    void *ud;
    size_t n;
    struct reg_worker {
        pthread_t tid;
        struct reg_workers *p;
        sbx_store *store;
        reg_client *client;
        bool started;
    } *w;
};

static void jobs_fail(reg_workers *p, const sbx_error *e)
{
    pthread_mutex_lock(&p->lock);
    if (!p->failed) {
        p->failed = true;
        p->err = *e;
        __atomic_store_n(&p->cancel, 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&p->lock);
}

static void *worker_main(void *arg)
{
    struct reg_worker *w = arg;
    reg_workers *p = w->p;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        size_t i = (!p->failed && p->next < p->njobs) ? p->next++ : SIZE_MAX;
        pthread_mutex_unlock(&p->lock);
        if (i == SIZE_MAX)
            break;
        sbx_error e = SBX_ERROR_INIT;
        if (p->fn(p->ud, i, w->client, w->store, &e) < 0) {
            jobs_fail(p, &e);
            break;
        }
    }
    return NULL;
}

int reg_run_jobs(size_t njobs, unsigned parallel, reg_client *client, sbx_store *store,
                 bool own_stores, reg_job_fn fn, void *ud, reg_workers **out, sbx_error *err)
{
    *out = NULL;
    if (njobs == 0)
        return 0;
    if (parallel <= 1 || njobs == 1) {
        for (size_t i = 0; i < njobs; i++) {
            int rc = fn(ud, i, client, store, err);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    reg_workers *p = calloc(1, sizeof *p);
    size_t nw = parallel < njobs ? parallel : njobs;
    if (p)
        p->w = calloc(nw, sizeof *p->w);
    if (!p || !p->w) {
        free(p);
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    }
    p->njobs = njobs;
    p->fn = fn;
    p->ud = ud;
    p->n = nw;
    pthread_mutex_init(&p->lock, NULL);
    int rc = 0;
    for (size_t i = 0; i < nw && rc == 0; i++) {
        struct reg_worker *w = &p->w[i];
        w->p = p;
        if (own_stores && (rc = sbx_store_open(&w->store, sbx_store_root(store), err)) < 0) {
            w->store = NULL;
            break;
        }
        if ((rc = reg_client_clone(&w->client, client, err)) < 0)
            break;
        reg_client_set_cancel(w->client, &p->cancel);
        if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
            rc = sbx_error_set(err, SBX_EINTERNAL, "starting a transfer thread");
            break;
        }
        w->started = true;
    }
    if (rc < 0) {
        pthread_mutex_lock(&p->lock);
        p->failed = true; /* stop the others */
        __atomic_store_n(&p->cancel, 1, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&p->lock);
    }
    for (size_t i = 0; i < nw; i++)
        if (p->w[i].started)
            pthread_join(p->w[i].tid, NULL);
    if (rc == 0 && p->failed) {
        *err = p->err;
        rc = err->code ? err->code : SBX_EINTERNAL;
    }
    *out = p;
    return rc;
}

void reg_workers_free(reg_workers *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        reg_client_free(p->w[i].client);
        sbx_store_free(p->w[i].store);
    }
    pthread_mutex_destroy(&p->lock);
    free(p->w);
    free(p);
}
