/* bench_pull_unpack STORE DIFF_ID...: unpack each stored layer into its cached
 * directory, the way a runtime host materializes an image for overlayfs (one
 * directory per layer, whiteouts converted), through the builder's
 * sbx_layer_unpack.  sbx-image has no unpack verb yet; bench/pull/run.sh uses
 * this to time pull + unpack against skopeo copy + umoci unpack. */
#include <stdio.h>

#include "sbx/error.h"
#include "sbx/store.h"
#include "../../builder/layers.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s STORE DIFF_ID...\n", argv[0]);
        return 2;
    }
    sbx_error err = {0};
    sbx_store *s = NULL;
    if (sbx_store_open(&s, argv[1], &err) < 0) {
        fprintf(stderr, "bench_pull_unpack: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    for (int i = 2; i < argc && rc == 0; i++) {
        char path[4096];
        if (sbx_layer_unpack(s, argv[i], path, sizeof path, &err) < 0) {
            fprintf(stderr, "bench_pull_unpack: %s: %s\n", argv[i], err.msg);
            rc = 1;
        } else {
            printf("%s\n", path);
        }
    }
    sbx_store_free(s);
    return rc;
}
