/* What a control plane does with libsbx before it creates a sandbox:
 * resolve the image ref to an exact digest, pull that digest into the
 * runtime host's store, and materialize its root filesystem.
 *
 *   cc control-plane.c $(pkg-config --cflags --libs sbx) -o control-plane
 *   ./control-plane STORE REF DIR
 *
 * One context per operation: its log and progress callbacks carry the
 * operation id, and the host's own SIGINT handler cancels it (the library
 * installs no handler and blocks no signal).  Exit 0, 1 on error, 130 when
 * interrupted. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <sbx.h>

static sbx_ctx *g_ctx;
static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
    sbx_ctx_cancel(g_ctx); /* async-signal-safe */
}

static void on_log(void *ud, sbx_log_level level, const char *op_id, const char *msg)
{
    (void)ud;
    fprintf(stderr, "[%s] log %d: %s\n", op_id ? op_id : "-", (int)level, msg);
}

static void on_progress(void *ud, const sbx_progress *p)
{
    unsigned *events = ud;
    (*events)++;
    if (!strcmp(p->phase, "done"))
        fprintf(stderr, "[%s] %s: done\n", p->op_id ? p->op_id : "-", p->id);
}

static int fail(const char *what, const sbx_error *err)
{
    char buf[2048];
    fprintf(stderr, "control-plane: %s: %s\n", what, sbx_error_format(err, buf, sizeof buf));
    return err->code == SBX_ECANCELED && g_interrupted ? 130 : 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: control-plane STORE REF DIR\n");
        return 2;
    }
    const char *root = argv[1], *ref = argv[2], *dir = argv[3];
    sbx_error err = SBX_ERROR_INIT;
    sbx_store *store = NULL;
    unsigned events = 0;
    if (sbx_registry_global_init(&err) < 0 || sbx_ctx_new(&g_ctx, &err) < 0 ||
        sbx_ctx_set_op_id(g_ctx, "sandbox-create-1", &err) < 0)
        return fail("setting up", &err);
    sbx_ctx_set_log(g_ctx, on_log, NULL, SBX_LOG_INFO);
    sbx_ctx_set_progress(g_ctx, on_progress, &events);
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    int rc = 0;
    if (sbx_store_open(&store, root, &err) < 0) {
        rc = fail("opening the store", &err);
        goto out;
    }
    sbx_registry_options ro = SBX_REGISTRY_OPTIONS_INIT;
    ro.store = store;
    char digest[SBX_DIGEST_BUFSZ];
    if (sbx_registry_resolve(digest, ref, &ro, g_ctx, &err) < 0) {
        rc = fail("resolving", &err);
        goto out;
    }
    printf("resolved %s %s\n", ref, digest);

    /* Pull exactly what was resolved, even if the tag moves meanwhile. */
    char pinned[1024];
    const char *at = strchr(ref, '@');
    snprintf(pinned, sizeof pinned, "%.*s@%s", at ? (int)(at - ref) : (int)strlen(ref), ref,
             digest);
    sbx_pull_result pr;
    if (sbx_registry_pull(&pr, pinned, &ro, g_ctx, &err) < 0) {
        rc = fail("pulling", &err);
        goto out;
    }
    printf("pulled %s %zu layers\n", pr.digest, pr.nlayers);
    sbx_pull_result_free(&pr);

    sbx_rootfs_result ur;
    if (sbx_rootfs_unpack(&ur, store, digest, dir, NULL, g_ctx, &err) < 0) {
        rc = fail("unpacking", &err);
        goto out;
    }
    printf("unpacked %s into %s (%u progress events)\n", digest, dir, events);
out:
    sbx_store_free(store);
    sbx_ctx_free(g_ctx);
    return rc;
}
