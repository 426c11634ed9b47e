/* Step meanings for the builder (steps.c): summaries and scripts. */
#ifndef SBX_BUILD_STEPS_H
#define SBX_BUILD_STEPS_H

#include <stdbool.h>

#include "sbx/recipe.h"

/* Exit statuses a python step uses when the version is not available (the
 * last output line then names what is), telling what C library the base
 * has for a standalone build: none known, glibc's or musl's loader. */
#define BLD_STEP_EXIT_UNAVAILABLE 86
#define BLD_STEP_EXIT_UNAVAILABLE_S "86"
#define BLD_STEP_EXIT_UNAVAILABLE_GNU_S "87"
#define BLD_STEP_EXIT_UNAVAILABLE_MUSL_S "88"
#define BLD_STEP_EXIT_UNAVAILABLE_GNU 87
#define BLD_STEP_EXIT_UNAVAILABLE_MUSL 88

typedef struct bld_step_cmd {
    char *script;     /* owned: given to /bin/sh -c in the sandbox */
    char *display;    /* owned: the command as shown in errors */
    const char *user; /* borrowed: run as (NULL: the image's user, else root) */
    const sbx_step_secret *secrets; /* borrowed: the step's build secrets */
    size_t n_secrets;
    /* borrowed: a dir moved to <upper>/<seed_at> before the step runs (on
     * the same filesystem as the store's scratch dirs), so the step starts
     * with it in its layer: a standalone CPython as usr/local */
    const char *seed;
    const char *seed_at;
    bool python; /* the package-manager script: exits 86-88 mean "not there" */
} bld_step_cmd;

/* cmd's script after lines that export each secret with an env name from
 * its file (VAR="$(cat /run/secrets/ID)"); owned by the caller. */
char *bld_step_script_with_secrets(const bld_step_cmd *cmd);
/* "apt_install curl git": one line, owned by the caller; NULL on ENOMEM. */
char *bld_step_summary(const sbx_step *st);
/* Fill out for a step that runs commands: 1 when it does, 0 when it is a
 * config, copy or python step (out zeroed; python: is two scripts,
 * bld_step_python_script then a standalone build's check), -1 on ENOMEM.  cur_user/cur_workdir:
 * the image state before the step (may be NULL). */
int bld_step_script(bld_step_cmd *out, const sbx_step *st, const char *cur_user,
                    const char *cur_workdir);
void bld_step_cmd_free(bld_step_cmd *s);
/* The script of python: VERSION / add_python (owned; NULL on ENOMEM). */
char *bld_step_python_script(const char *version);
/* The check once a standalone CPython is /usr/local: bin/python<mm> runs
 * and says it is version (owned; NULL on ENOMEM). */
char *bld_step_python_check_script(const char *version, const char *mm);

#endif
