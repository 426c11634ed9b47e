/* sbx_store_tool: drives the store library from test scripts (crash,
 * concurrency, disk-full tests) and the main job.  Not installed.
 *
 *   sbx_store_tool STORE put-blob FILE [EXPECTED]      prints the digest
 *   sbx_store_tool STORE put-layer FILE                prints the diff_id
 *   sbx_store_tool STORE put-image NAME SEED SIZE      generated layer + config +
 *                                                      manifest, named; prints digest
 *   sbx_store_tool STORE put-manifest FILE NAME KIND:DIGEST...
 *                                                      KIND blob|layer|manifest; NAME - for
 *                                                      none; prints the digest
 *   sbx_store_tool STORE layer-info DIFF_ID            diff_id size stored_size stored_digest
 *   sbx_store_tool STORE read-layer DIFF_ID [OUT]      streams the tar out, checks it
 *   sbx_store_tool STORE verify-all                    every name's image reads back
 *   sbx_store_tool STORE worker ID ROUNDS              concurrency test worker
 *
 * Exit status: 0, or the negated SBX_E* code of the failure (5 = disk full). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sbx/store.h"
#include "sbx_common.h"

static int fail(const sbx_error *err, const char *what)
{
    char buf[2048];
    fprintf(stderr, "sbx_store_tool: error: %s%s%s\n", what ? what : "", what ? ": " : "",
            sbx_error_format(err, buf, sizeof buf));
    return err->code < 0 ? -err->code : 1;
}

/* Deterministic, partly compressible bytes for a seed. */
static void gen(unsigned char *b, size_t n, uint64_t *x)
{
    for (size_t i = 0; i < n; i++) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        b[i] = (i & 1024) ? (unsigned char)('a' + (*x % 3)) : (unsigned char)*x;
    }
}

static int put_layer_gen(sbx_store *s, unsigned seed, size_t size, char diff[SBX_DIGEST_BUFSZ],
                         sbx_error *err)
{
    sbx_layer_writer *w = NULL;
    if (sbx_store_layer_begin(&w, s, NULL, err) < 0)
        return err->code;
    static unsigned char buf[1 << 16];
    uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (size_t done = 0; done < size;) {
        size_t n = size - done < sizeof buf ? size - done : sizeof buf;
        gen(buf, n, &x);
        if (sbx_layer_writer_write(w, buf, n, err) < 0) {
            sbx_layer_writer_abort(w);
            return err->code;
        }
        done += n;
    }
    return sbx_layer_writer_commit(w, diff, err);
}

static int put_image(sbx_store *s, const char *name, unsigned seed, size_t size,
                     char m[SBX_DIGEST_BUFSZ], sbx_error *err)
{
    char diff[SBX_DIGEST_BUFSZ], cfg[SBX_DIGEST_BUFSZ];
    if (put_layer_gen(s, seed, size, diff, err) < 0)
        return err->code;
    char c[256], man[512];
    snprintf(c, sizeof c, "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]},\"seed\":%u}",
             diff, seed);
    if (sbx_store_put_blob(s, c, strlen(c), "application/vnd.oci.image.config.v1+json", NULL,
                           cfg, err) < 0)
        return err->code;
    snprintf(man, sizeof man, "{\"schemaVersion\":2,\"config\":\"%s\",\"layers\":[\"%s\"]}", cfg,
             diff);
    sbx_store_child kids[] = {{SBX_CHILD_BLOB, cfg}, {SBX_CHILD_LAYER, diff}};
    if (sbx_store_put_manifest(s, man, strlen(man), "application/vnd.oci.image.manifest.v1+json",
                               NULL, kids, 2, m, err) < 0)
        return err->code;
    return name ? sbx_store_name_set(s, name, m, err) : 0;
}

static int put_file(sbx_store *s, const char *path, int layer, const char *expected,
                    sbx_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "open '%s'", path);
    sbx_blob_writer *bw = NULL;
    sbx_layer_writer *lw = NULL;
    int rc = layer ? sbx_store_layer_begin(&lw, s, expected, err)
                   : sbx_store_blob_begin(&bw, s, expected, err);
    static char buf[1 << 20];
    ssize_t n;
    while (rc == 0 && (n = sbx__read_full(fd, buf, sizeof buf)) > 0)
        rc = layer ? sbx_layer_writer_write(lw, buf, (size_t)n, err)
                   : sbx_blob_writer_write(bw, buf, (size_t)n, err);
    close(fd);
    char d[SBX_DIGEST_BUFSZ];
    if (rc == 0)
        rc = layer ? sbx_layer_writer_commit(lw, d, err) : sbx_blob_writer_commit(bw, d, err);
    else if (layer)
        sbx_layer_writer_abort(lw);
    else
        sbx_blob_writer_abort(bw);
    if (rc == 0)
        printf("%s\n", d);
    return rc;
}

/* Stream a layer back, hash it, compare with its diff_id. */
static int read_layer(sbx_store *s, const char *diff, int outfd, sbx_error *err)
{
    sbx_layer_reader *r = NULL;
    if (sbx_store_layer_open(&r, s, diff, err) < 0)
        return err->code;
    _cleanup_sha256_ sbx__sha256 *h = NULL;
    if (sbx__sha256_new(&h, err) < 0) {
        sbx_layer_reader_free(r);
        return err->code;
    }
    static char buf[1 << 17];
    size_t n;
    int rc;
    while ((rc = sbx_layer_reader_read(r, buf, sizeof buf, &n, err)) == 0 && n > 0) {
        sbx__sha256_update(h, buf, n);
        if (outfd >= 0 && sbx__write_all(outfd, buf, n, err) < 0) {
            rc = err->code;
            break;
        }
    }
    sbx_layer_reader_free(r);
    if (rc < 0)
        return rc;
    char got[SBX_DIGEST_BUFSZ];
    sbx__sha256_final(h, got);
    if (strcmp(got, diff) != 0)
        return sbx_error_set(err, SBX_EDIGEST, "layer '%s' reads back as '%s'", diff, got);
    return 0;
}

/* Read a manifest the way this tool writes them and check all it names. */
static int verify_image(sbx_store *s, const char *m, sbx_error *err)
{
    char *man = NULL;
    size_t len;
    if (sbx_store_read_blob(s, m, 1 << 20, &man, &len, err) < 0)
        return err->code;
    int rc = 0;
    const char *p = man;
    while (rc == 0 && (p = strstr(p, "sha256:"))) {
        char d[SBX_DIGEST_BUFSZ];
        snprintf(d, sizeof d, "%.71s", p);
        p += 71;
        if (sbx_store_has_layer(s, d, NULL)) {
            rc = read_layer(s, d, -1, err);
        } else {
            char *b = NULL;
            rc = sbx_store_read_blob(s, d, 1 << 20, &b, &len, err);
            free(b);
        }
    }
    free(man);
    return rc;
}

static int put_manifest_file(sbx_store *s, const char *path, const char *name, int n,
                             char **kids, sbx_error *err)
{
    char *data = NULL;
    size_t len = 0;
    if (sbx__read_file(&data, &len, path, 4 << 20, err) < 0)
        return err->code;
    sbx_store_child *c = calloc((size_t)n + 1, sizeof *c);
    int rc = c ? 0 : sbx_error_set(err, SBX_ENOMEM, "out of memory");
    for (int i = 0; rc == 0 && i < n; i++) {
        const char *colon = strchr(kids[i], ':');
        if (!colon)
            rc = sbx_error_set(err, SBX_EINVAL, "child '%s': want KIND:DIGEST", kids[i]);
        else if (!strncmp(kids[i], "blob:", 5))
            c[i] = (sbx_store_child){SBX_CHILD_BLOB, colon + 1};
        else if (!strncmp(kids[i], "layer:", 6))
            c[i] = (sbx_store_child){SBX_CHILD_LAYER, colon + 1};
        else if (!strncmp(kids[i], "manifest:", 9))
            c[i] = (sbx_store_child){SBX_CHILD_MANIFEST, colon + 1};
        else
            rc = sbx_error_set(err, SBX_EINVAL, "child '%s': unknown kind", kids[i]);
    }
    char m[SBX_DIGEST_BUFSZ];
    if (rc == 0)
        rc = sbx_store_put_manifest(s, data, len, "application/vnd.oci.image.manifest.v1+json",
                                    NULL, c, (size_t)n, m, err);
    if (rc == 0 && strcmp(name, "-") != 0)
        rc = sbx_store_name_set(s, name, m, err);
    if (rc == 0)
        printf("%s\n", m);
    free(c);
    free(data);
    return rc;
}

static int verify_all(sbx_store *s, sbx_error *err)
{
    sbx_name_entry *v = NULL;
    size_t n = 0;
    if (sbx_store_name_list(s, NULL, &v, &n, err) < 0)
        return err->code;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if ((rc = verify_image(s, v[i].digest, err)) < 0)
            sbx_error_wrap(err, "image '%s'", v[i].name);
    if (rc == 0)
        printf("%zu images verified\n", n);
    sbx_name_entries_free(v, n);
    return rc;
}

/* Concurrency worker: shared and own images, an explicitly leased blob that
 * only the lease protects, everything read back. */
static int worker(const char *root, int id, int rounds, sbx_error *err)
{
    sbx_store *s = NULL;
    if (sbx_store_open(&s, root, err) < 0)
        return err->code;
    int rc = 0;
    for (int r = 0; rc == 0 && r < rounds; r++) {
        char name[64], m[SBX_DIGEST_BUFSZ], d[SBX_DIGEST_BUFSZ];
        snprintf(name, sizeof name, "shared-%d", r % 3);
        rc = put_image(s, name, 1000 + (unsigned)(r % 3), 300000, m, err);
        if (rc == 0)
            rc = verify_image(s, m, err);
        snprintf(name, sizeof name, "w%d-%d", id, r);
        if (rc == 0)
            rc = put_image(s, name, (unsigned)(id * 100 + r), 200000, m, err);
        if (rc == 0)
            rc = verify_image(s, m, err);
        if (rc == 0 && r >= 2) {
            snprintf(name, sizeof name, "w%d-%d", id, r - 2);
            rc = sbx_store_name_remove(s, name, err); /* gives gc work */
            if (rc == SBX_ENOTFOUND)
                rc = 0; /* gc --max-bytes evicted it first */
        }
        /* A blob only an explicit lease holds: write it through a handle
         * that then goes away, so its process lease is gone too. */
        sbx_store *tmp = NULL;
        sbx_lease *l = NULL;
        char payload[64];
        snprintf(payload, sizeof payload, "leased blob %d/%d", id, r);
        if (rc == 0)
            rc = sbx_store_lease_acquire(&l, s, 600, err);
        if (rc == 0)
            rc = sbx_store_open(&tmp, root, err);
        if (rc == 0)
            rc = sbx_store_put_blob(tmp, payload, strlen(payload), NULL, NULL, d, err);
        if (rc == 0)
            rc = sbx_lease_add(l, d, err);
        sbx_store_free(tmp);
        if (rc == 0) {
            usleep(20000 + (useconds_t)(rand() % 30000)); /* let gc run meanwhile */
            char *b = NULL;
            size_t len;
            rc = sbx_store_read_blob(s, d, 1024, &b, &len, err);
            if (rc == 0 && (len != strlen(payload) || memcmp(b, payload, len) != 0))
                rc = sbx_error_set(err, SBX_EDIGEST, "leased blob changed");
            if (rc < 0)
                sbx_error_wrap(err, "leased blob '%s' (round %d)", d, r);
            free(b);
        }
        sbx_lease_release(l);
    }
    sbx_store_free(s);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sbx_store_tool STORE COMMAND [ARGS]\n");
        return 2;
    }
    const char *root = argv[1], *cmd = argv[2];
    sbx_error err = SBX_ERROR_INIT;
    if (!strcmp(cmd, "worker") && argc == 5) {
        srand((unsigned)getpid());
        return worker(root, atoi(argv[3]), atoi(argv[4]), &err) < 0 ? fail(&err, "worker") : 0;
    }
    sbx_store *s = NULL;
    if (sbx_store_open(&s, root, &err) < 0)
        return fail(&err, NULL);
    int rc = 2;
    if (!strcmp(cmd, "put-blob") && (argc == 4 || argc == 5)) {
        rc = put_file(s, argv[3], 0, argc == 5 ? argv[4] : NULL, &err);
    } else if (!strcmp(cmd, "put-layer") && argc == 4) {
        rc = put_file(s, argv[3], 1, NULL, &err);
    } else if (!strcmp(cmd, "put-image") && argc == 6) {
        char m[SBX_DIGEST_BUFSZ];
        rc = put_image(s, argv[3], (unsigned)atoi(argv[4]), (size_t)atoll(argv[5]), m, &err);
        if (rc == 0)
            printf("%s\n", m);
    } else if (!strcmp(cmd, "put-manifest") && argc >= 5) {
        rc = put_manifest_file(s, argv[3], argv[4], argc - 5, argv + 5, &err);
    } else if (!strcmp(cmd, "layer-info") && argc == 4) {
        sbx_layer_info li;
        rc = sbx_store_layer_info(s, argv[3], &li, &err);
        if (rc == 0)
            printf("%s %llu %llu %s\n", li.diff_id, (unsigned long long)li.size,
                   (unsigned long long)li.stored_size, li.stored_digest);
    } else if (!strcmp(cmd, "read-layer") && (argc == 4 || argc == 5)) {
        int fd = argc == 5 ? open(argv[4], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
        if (argc == 5 && fd < 0)
            rc = sbx_error_sys(&err, SBX_EIO, errno, "open '%s'", argv[4]);
        else
            rc = read_layer(s, argv[3], fd, &err);
        if (fd >= 0)
            close(fd);
    } else if (!strcmp(cmd, "verify-all") && argc == 3) {
        rc = verify_all(s, &err);
    } else {
        fprintf(stderr, "sbx_store_tool: bad command line\n");
        sbx_store_free(s);
        return 2;
    }
    sbx_store_free(s);
    return rc < 0 ? fail(&err, cmd) : rc;
}
