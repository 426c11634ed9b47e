/* python: VERSION and add_python beyond the base's package manager: a
 * standalone CPython (python-build-standalone's install_only layout) from a
 * configurable source, pinned by SHA-256 (python.c, docs/builder.md). */
#ifndef SBX_BUILD_PYTHON_H
#define SBX_BUILD_PYTHON_H

#include <jansson.h>
#include <stdbool.h>

#include "sbx/builder.h"
#include "sbx/registry.h"

typedef struct bld_python_pin {
    const char *version; /* "3.12.14" */
    const char *arch;    /* uname -m: "x86_64", "aarch64" */
    const char *libc;    /* "gnu", "musl" */
    const char *path;    /* under the source URL */
    const char *sha256;  /* hex */
} bld_python_pin;

typedef struct bld_python_src {
    char *url;               /* ends with '/' */
    const bld_python_pin *pins;
    size_t n;
    const char *pins_file;   /* where the pins came from; NULL: built in */
    bld_python_pin *owned;   /* pins read from a file, their strings in json */
    json_t *json;
} bld_python_src;

/* The source this build uses: o's python_pins / python_mirror, else
 * $SBX_PYTHON_PINS / $SBX_PYTHON_MIRROR, else the pins built in and
 * python-build-standalone's release downloads.  A bad pins file is
 * SBX_EINVAL naming it and the entry. */
int bld_python_src_load(bld_python_src *out, const sbx_build_options *o, sbx_error *err);
void bld_python_src_free(bld_python_src *s);
/* The pin for version ("3.12": the newest 3.12.x pinned; "3.12.7": that
 * one) on arch with libc; NULL when none. */
const bld_python_pin *bld_python_pick(const bld_python_src *s, const char *version,
                                      const char *arch, const char *libc);
/* "3.12" of pin's version "3.12.14" into buf. */
void bld_python_minor(char *buf, size_t len, const bld_python_pin *pin);
/* The machine as pins name it (uname -m) for an OCI architecture (amd64 ->
 * x86_64, arm64 -> aarch64); NULL or "": this host's. */
const char *bld_python_machine(const char *oci_arch);
/* Whether the recipe installs python anywhere (add_python or a python step). */
bool bld_python_used(const sbx_recipe *r);
/* Bind each keys[k] after a python step (or add_python) to the pins (both C
 * libraries, on machine arch) of the python steps at or before k: another
 * pinned build means another state from its step on.  Steps the package
 * manager served are bound too (which source serves them is known only when
 * they run).  Empty keys stay empty. */
int bld_python_bind_keys(char (*keys)[SBX_DIGEST_BUFSZ], size_t n, const sbx_recipe *r,
                         const bld_python_src *s, const char *arch, sbx_error *err);
/* Download pin into scratch dir dir, check its SHA-256, unpack it: *tree
 * (owned) is the python/ dir, owned by root, with python3/python/pip3/pip
 * links beside pythonX.Y in bin/. */
int bld_python_fetch(char **tree, const char *dir, const bld_python_src *s,
                     const bld_python_pin *pin, const sbx_registry_options *ro, sbx_ctx *ctx,
                     sbx_error *err);

#endif
