/* A threaded host embedding libsbx, built against the installed library:
 * it runs a build on one thread while another sends the process SIGINT and
 * then cancels the build through its context.
 *
 *   host_build STORE BASE_ROOTFS
 *
 * Checks, exit 0 when all hold: the host's own SIGINT handler ran (the
 * library neither blocks nor consumes signals) and the build kept running
 * through it; sbx_ctx_cancel from the other thread stopped the running step
 * within seconds with SBX_ECANCELED; the result names no image.
 *
 *   host_build STORE BASE_ROOTFS coalesce
 *
 * Eight threads, each with its own store handle, build one new 2-step
 * recipe at once: the steps run once in all (the sum of steps_run is 2) and
 * every thread gets the same image digest. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sbx.h>

static volatile sig_atomic_t g_sigints;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static int g_started, g_done;
static sbx_ctx *g_ctx;
static double g_cancel_at;

static void on_sigint(int sig)
{
    (void)sig;
    g_sigints++;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_output(void *ud, size_t index, const char *line)
{
    (void)ud;
    printf("step %zu: %s\n", index, line);
    fflush(stdout);
    if (strstr(line, "step-started")) {
        pthread_mutex_lock(&g_lock);
        g_started = 1;
        pthread_cond_signal(&g_cond);
        pthread_mutex_unlock(&g_lock);
    }
}

static void *canceller(void *arg)
{
    (void)arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 300;
    pthread_mutex_lock(&g_lock);
    while (!g_started && !g_done)
        if (pthread_cond_timedwait(&g_cond, &g_lock, &until) != 0)
            break;
    pthread_mutex_unlock(&g_lock);
    kill(getpid(), SIGINT); /* the host's handler, not the library, gets it */
    sleep(1);
    g_cancel_at = now();
    sbx_ctx_cancel(g_ctx);
    return NULL;
}

static int check(int ok, const char *what)
{
    printf("%s - %s\n", ok ? "ok" : "FAIL", what);
    return ok ? 0 : 1;
}

#define NTHREADS 8

typedef struct {
    const char *store;
    const sbx_recipe *recipe;
    int rc;
    sbx_build_result res;
    char msg[1024];
} job;

static void *build_one(void *arg)
{
    job *j = arg;
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *s = NULL;
    sbx_build_options bo = SBX_BUILD_OPTIONS_INIT;
    j->rc = sbx_store_open(&s, j->store, &err);
    if (j->rc == 0)
        j->rc = sbx_build(&j->res, s, j->recipe, &bo, NULL, &err);
    if (j->rc < 0)
        sbx_error_format(&err, j->msg, sizeof j->msg);
    sbx_store_free(s);
    return NULL;
}

static int coalesce(const char *store, const sbx_recipe *recipe)
{
    pthread_t th[NTHREADS];
    job jobs[NTHREADS];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < NTHREADS; i++) {
        jobs[i].store = store;
        jobs[i].recipe = recipe;
        pthread_create(&th[i], NULL, build_one, &jobs[i]);
    }
    size_t ran = 0;
    int failed = 0, same = 1;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].rc < 0) {
            printf("thread %d: %s\n", i, jobs[i].msg);
            failed++;
            continue;
        }
        ran += jobs[i].res.steps_run;
        same &= !strcmp(jobs[i].res.digest, jobs[0].res.digest);
        printf("thread %d: %s, %zu steps run\n", i, jobs[i].res.digest, jobs[i].res.steps_run);
    }
    int bad = 0;
    bad |= check(!failed, "every thread's build succeeded");
    bad |= check(same, "every thread got the same image");
    bad |= check(ran == 2, "the 2 steps ran once in all");
    for (int i = 0; i < NTHREADS; i++)
        sbx_build_result_free(&jobs[i].res);
    return bad;
}

int main(int argc, char **argv)
{
    int mode_coalesce = argc == 4 && !strcmp(argv[3], "coalesce");
    if (argc != 3 && !mode_coalesce) {
        fprintf(stderr, "usage: host_build STORE BASE_ROOTFS [coalesce]\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_sigint}; /* no SA_RESTART: EINTR everywhere */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    sbx_error err = SBX_ERROR_INIT;
    sbx_store *store = NULL;
    sbx_recipe *recipe = NULL;
    char base[SBX_DIGEST_BUFSZ];
    /* HOST_BUILD_MARK names this run's step, so the test finds its own
     * process and no other run's on the machine */
    const char *mark = getenv("HOST_BUILD_MARK");
    char cancel_yaml[256];
    snprintf(cancel_yaml, sizeof cancel_yaml,
             "image: host-base\n"
             "steps:\n"
             "  - run_cmd: echo step-started; sleep 300; echo %s\n",
             mark ? mark : "done");
    char coalesce_yaml[256];
    snprintf(coalesce_yaml, sizeof coalesce_yaml,
             "image: host-base\n"
             "steps:\n"
             "  - run_cmd: sleep 1; echo %ld > /one\n"
             "  - run_cmd: sleep 1; echo two > /two\n",
             (long)time(NULL) ^ (long)getpid());
    const char *yaml = mode_coalesce ? coalesce_yaml : cancel_yaml;
    if (sbx_ctx_new(&g_ctx, &err) < 0 || sbx_store_open(&store, argv[1], &err) < 0 ||
        sbx_build_image_from_dir(base, store, argv[2], "host-base", "busybox", NULL, &err) < 0 ||
        sbx_recipe_parse_buffer(&recipe, yaml, strlen(yaml), "host.yaml", NULL, NULL,
                                &err) < 0) {
        char buf[2048];
        fprintf(stderr, "host_build: setup: %s\n", sbx_error_format(&err, buf, sizeof buf));
        return 1;
    }
    if (mode_coalesce) {
        sbx_store_free(store); /* each thread has its own handle */
        int bad = coalesce(argv[1], recipe);
        sbx_recipe_unref(recipe);
        sbx_ctx_free(g_ctx);
        return bad;
    }
    pthread_t th;
    pthread_create(&th, NULL, canceller, NULL);
    sbx_build_options bo = SBX_BUILD_OPTIONS_INIT;
    bo.on_output = on_output;
    sbx_build_result res = SBX_BUILD_RESULT_INIT;
    int rc = sbx_build(&res, store, recipe, &bo, g_ctx, &err);
    double returned_at = now();
    pthread_mutex_lock(&g_lock);
    g_done = 1;
    pthread_cond_signal(&g_cond);
    pthread_mutex_unlock(&g_lock);
    pthread_join(th, NULL);

    char buf[2048];
    printf("sbx_build returned %d: %s\n", rc, rc < 0 ? sbx_error_format(&err, buf, sizeof buf) : "");
    int bad = 0;
    bad |= check(g_started, "the step ran");
    bad |= check(g_sigints == 1, "the host's SIGINT handler ran once");
    bad |= check(g_cancel_at > 0 && returned_at >= g_cancel_at,
                 "the build kept running through SIGINT until cancelled");
    bad |= check(rc == SBX_ECANCELED, "sbx_build returned SBX_ECANCELED");
    bad |= check(returned_at - g_cancel_at < 30, "cancel stopped the step within seconds");
    bad |= check(res.digest[0] == '\0', "no image digest in the result");
    sbx_build_result_free(&res);
    sbx_recipe_unref(recipe);
    sbx_store_free(store);
    sbx_ctx_free(g_ctx);
    return bad;
}
