/* What each recipe step means to the builder: a one-line summary for
 * progress, and for the steps that run commands, the shell script the
 * sandbox runs and the user it runs as.  Every value from the recipe that
 * reaches a script is single-quoted here; nothing is interpolated by the
 * host shell (there is none: the script goes to /bin/sh -c in the sandbox).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build_steps.h"
#include "sbx_common.h"

/* A growable string; on ENOMEM `oom` sticks and the result is NULL. */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *t, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, t, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *t) { sb_add(b, t, strlen(t)); }

static void __attribute__((format(printf, 2, 3))) sb_fmt(sbuf *b, const char *fmt, ...)
{
    char *t = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&t, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    sb_add(b, t, (size_t)n);
    free(t);
}

/* POSIX shell single quoting: 'it'\''s'. */
static void sb_quote(sbuf *b, const char *t)
{
    sb_str(b, "'");
    for (const char *p = t; *p; p++) {
        if (*p == '\'')
            sb_str(b, "'\\''");
        else
            sb_add(b, p, 1);
    }
    sb_str(b, "'");
}

static void sb_list(sbuf *b, const char *const *v, size_t n, int quote)
{
    for (size_t i = 0; i < n; i++) {
        sb_str(b, " ");
        if (quote)
            sb_quote(b, v[i]);
        else
            sb_str(b, v[i]);
    }
}

static char *sb_take(sbuf *b)
{
    if (b->oom) {
        free(b->s);
        return NULL;
    }
    if (!b->s)
        return strdup("");
    return b->s;
}

static const char *kind_name(sbx_step_kind k)
{
    switch (k) {
    case SBX_STEP_PYTHON: return "python";
    case SBX_STEP_APT_INSTALL: return "apt_install";
    case SBX_STEP_PIP_INSTALL: return "pip_install";
    case SBX_STEP_NPM_INSTALL: return "npm_install";
    case SBX_STEP_RUN_CMD: return "run_cmd";
    case SBX_STEP_ENV: return "env";
    case SBX_STEP_WORKDIR: return "workdir";
    case SBX_STEP_USER: return "user";
    case SBX_STEP_COPY: return "copy";
    }
    return "step";
}

char *bld_step_summary(const sbx_step *st)
{
    sbuf b = {0};
    sb_str(&b, kind_name(st->kind));
    switch (st->kind) {
    case SBX_STEP_PYTHON: sb_fmt(&b, " %s", st->u.python.version); break;
    case SBX_STEP_APT_INSTALL:
        sb_list(&b, st->u.apt_install.packages, st->u.apt_install.n_packages, 0);
        break;
    case SBX_STEP_PIP_INSTALL:
        sb_list(&b, st->u.pip_install.packages, st->u.pip_install.n_packages, 0);
        break;
    case SBX_STEP_NPM_INSTALL:
        if (st->u.npm_install.global)
            sb_str(&b, " -g");
        if (!st->u.npm_install.n_packages)
            sb_str(&b, " (package.json)");
        sb_list(&b, st->u.npm_install.packages, st->u.npm_install.n_packages, 0);
        break;
    case SBX_STEP_RUN_CMD:
        for (size_t i = 0; i < st->u.run_cmd.n_commands; i++)
            sb_fmt(&b, "%s%s", i ? " && " : " ", st->u.run_cmd.commands[i]);
        if (st->u.run_cmd.user)
            sb_fmt(&b, " (as %s)", st->u.run_cmd.user);
        break;
    case SBX_STEP_ENV:
        for (size_t i = 0; i < st->u.env.n; i++)
            sb_fmt(&b, " %s=%s", st->u.env.names[i], st->u.env.values[i]);
        break;
    case SBX_STEP_WORKDIR: sb_fmt(&b, " %s", st->u.workdir.path); break;
    case SBX_STEP_USER: sb_fmt(&b, " %s", st->u.user.name); break;
    case SBX_STEP_COPY:
        sb_fmt(&b, " %s %s", st->u.copy.src, st->u.copy.dest);
        if (st->u.copy.owner)
            sb_fmt(&b, " owner=%s", st->u.copy.owner);
        if (st->u.copy.mode >= 0)
            sb_fmt(&b, " mode=%04o", st->u.copy.mode);
        break;
    }
    /* One line: live output and errors quote it. */
    char *s = sb_take(&b);
    for (char *p = s; p && *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return s;
}

/* Shared by python: VERSION and add_python: install pythonX.Y from the
 * base's package manager, or print what is available as the last line and
 * exit BLD_STEP_EXIT_UNAVAILABLE(_GNU/_MUSL) naming the C library a
 * standalone build could use (its dynamic loader as the kernel's machine
 * names it). */
static void python_script(sbuf *b, const char *version)
{
    sb_str(b, "set -e\nv=");
    sb_quote(b, version);
    sb_str(b,
           "\n"
           "unavailable() {\n"
           "  echo \"$1\"\n"
           "  m=$(uname -m 2>/dev/null) || m=unknown\n"
           "  case $m in x86_64) g=/lib64/ld-linux-x86-64.so.2 ;; aarch64) "
           "g=/lib/ld-linux-aarch64.so.1 ;; *) g= ;; esac\n"
           "  if [ -e \"/lib/ld-musl-$m.so.1\" ]; then exit " BLD_STEP_EXIT_UNAVAILABLE_MUSL_S "; fi\n"
           "  if [ -n \"$g\" ] && [ -e \"$g\" ]; then exit " BLD_STEP_EXIT_UNAVAILABLE_GNU_S "; fi\n"
           "  exit " BLD_STEP_EXIT_UNAVAILABLE_S "\n"
           "}\n"
           "if command -v apt-get >/dev/null 2>&1; then\n"
           "  export DEBIAN_FRONTEND=noninteractive\n"
           "  apt-get update -q || echo \"apt-get update failed: looking in what apt has\"\n"
           "  if apt-cache show \"python$v\" >/dev/null 2>&1; then\n"
           "    pkgs=\"python$v\"\n"
           "    if apt-cache show python3 2>/dev/null | grep -q \"^Depends:.*python$v\\b\"; then\n"
           "      pkgs=\"$pkgs python3 python3-pip python3-venv\"\n"
           "    fi\n"
           "    apt-get install -y -q --no-install-recommends $pkgs\n"
           "    apt-get clean\n"
           "    rm -rf /var/lib/apt/lists/*\n"
           "    exit 0\n"
           "  fi\n"
           "  avail=$(apt-cache pkgnames python3. | grep -E '^python3\\.[0-9]+$' | sed "
           "'s/^python//' | sort -V | tr '\\n' ' ')\n"
           "  rm -rf /var/lib/apt/lists/*\n"
           "  unavailable \"python $v is not available from apt; available: ${avail:-none}\"\n"
           "elif command -v apk >/dev/null 2>&1; then\n"
           "  have=$(apk search -x python3 | sed -n 's/^python3-\\([0-9]*\\.[0-9]*\\).*/\\1/p')\n"
           "  if [ \"$have\" = \"$v\" ]; then apk add --no-cache python3 py3-pip; exit 0; fi\n"
           "  unavailable \"python $v is not available from apk; available: ${have:-none}\"\n"
           "fi\n"
           "unavailable \"python $v: the base has no package manager this builder knows "
           "(apt-get, apk); available: none\"\n");
}

char *bld_step_python_check_script(const char *version, const char *mm)
{
    sbuf b = {0};
    sb_str(&b, "v=");
    sb_quote(&b, version);
    sb_str(&b, "\nout=$(/usr/local/bin/python");
    sb_quote(&b, mm);
    sb_str(&b, " --version 2>&1) || {\n"
               "  echo \"the standalone CPython does not run on this base: $out\"; exit 1; }\n"
               "case \"$out\" in\n"
               "  \"Python $v\" | \"Python $v\".*) echo \"$out (standalone CPython in /usr/local)\" ;;\n"
               "  *) echo \"the standalone CPython says '$out', not $v\"; exit 1 ;;\n"
               "esac\n");
    return sb_take(&b);
}

char *bld_step_python_script(const char *version)
{
    sbuf b = {0};
    python_script(&b, version);
    return sb_take(&b);
}

int bld_step_script(bld_step_cmd *out, const sbx_step *st, const char *cur_user,
                    const char *cur_workdir)
{
    sbuf b = {0}, disp = {0};
    memset(out, 0, sizeof *out);
    out->user = cur_user;
    switch (st->kind) {
    case SBX_STEP_APT_INSTALL:
        sb_str(&b, "set -e\nexport DEBIAN_FRONTEND=noninteractive\napt-get update -q\n"
                   "apt-get install -y -q --no-install-recommends");
        sb_list(&b, st->u.apt_install.packages, st->u.apt_install.n_packages, 1);
        sb_str(&b, "\napt-get clean\nrm -rf /var/lib/apt/lists/*\n");
        sb_str(&disp, "apt-get install -y --no-install-recommends");
        sb_list(&disp, st->u.apt_install.packages, st->u.apt_install.n_packages, 0);
        out->user = "0";
        break;
    case SBX_STEP_PIP_INSTALL: {
        const typeof(st->u.pip_install) *p = &st->u.pip_install;
        sbuf cmd = {0};
        sb_str(&cmd, "python3 -m pip install --no-cache-dir --disable-pip-version-check");
        if (p->index_url) {
            sb_str(&cmd, " --index-url ");
            sb_quote(&cmd, p->index_url);
        }
        for (size_t i = 0; i < p->n_extra_index_urls; i++) {
            sb_str(&cmd, " --extra-index-url ");
            sb_quote(&cmd, p->extra_index_urls[i]);
        }
        for (size_t i = 0; i < p->n_find_links; i++) {
            sb_str(&cmd, " --find-links ");
            sb_quote(&cmd, p->find_links[i]);
        }
        if (p->pre)
            sb_str(&cmd, " --pre");
        if (p->user_install)
            sb_str(&cmd, " --user");
        sb_list(&cmd, p->packages, p->n_packages, 1);
        char *c = sb_take(&cmd);
        if (!c) {
            free(b.s);
            free(disp.s);
            return -1;
        }
        /* PEP 668: the image is ours to change, so an externally managed
         * system Python is installed into anyway (docs/builder.md). */
        sb_str(&b, "set -e\n"
                   "command -v python3 >/dev/null 2>&1 || { echo 'pip_install: python3 is not "
                   "installed in the image (add a python: step or apt_install python3-pip)'; "
                   "exit 127; }\n"
                   "python3 -m pip --version >/dev/null 2>&1 || { echo 'pip_install: pip is not "
                   "installed in the image (apt_install python3-pip first)'; exit 127; }\n"
                   "export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore\n");
        sb_str(&b, c);
        sb_str(&b, "\n");
        sb_str(&disp, c);
        free(c);
        if (p->user)
            out->user = p->user;
        break;
    }
    case SBX_STEP_NPM_INSTALL: {
        sbuf cmd = {0};
        if (st->u.npm_install.n_packages == 0) {
            /* the project: `npm ci` from its lockfile, else `npm install` */
            sb_str(&cmd, "if [ ! -f package.json ]; then echo \"npm_install: no packages given and "
                         "no package.json in $(pwd) (copy the project there first)\"; exit 1; fi\n"
                         "if [ -f package-lock.json ] || [ -f npm-shrinkwrap.json ]; then "
                         "echo 'npm_install: npm ci (the lockfile)'; "
                         "npm ci --no-audit --no-fund --no-update-notifier; else "
                         "echo 'npm_install: npm install (package.json, no lockfile)'; "
                         "npm install --no-audit --no-fund --no-update-notifier; fi");
        } else {
            sb_str(&cmd, "npm install --no-audit --no-fund --no-update-notifier");
            if (st->u.npm_install.global)
                sb_str(&cmd, " -g");
            sb_list(&cmd, st->u.npm_install.packages, st->u.npm_install.n_packages, 1);
        }
        char *c = sb_take(&cmd);
        if (!c) {
            free(b.s);
            free(disp.s);
            return -1;
        }
        sb_str(&b, "set -e\ncommand -v npm >/dev/null 2>&1 || { echo 'npm_install: npm is not "
                   "installed in the image (apt_install npm first)'; exit 127; }\n");
        if (!st->u.npm_install.global) {
            sb_str(&b, "mkdir -p ");
            sb_quote(&b, cur_workdir ? cur_workdir : "/");
            sb_str(&b, " && cd ");
            sb_quote(&b, cur_workdir ? cur_workdir : "/");
            sb_str(&b, "\n");
        }
        sb_str(&b, c);
        sb_str(&b, "\nrm -rf \"${HOME:-/root}/.npm/_cacache\" \"${HOME:-/root}/.npm/_logs\" "
                   "2>/dev/null || true\n");
        sb_str(&disp, c);
        free(c);
        break;
    }
    case SBX_STEP_RUN_CMD: {
        const typeof(st->u.run_cmd) *r = &st->u.run_cmd;
        if (r->n_commands == 1) {
            sb_str(&b, r->commands[0]);
        } else {
            for (size_t i = 0; i < r->n_commands; i++) {
                sb_str(&b, i ? " && /bin/sh -c " : "/bin/sh -c ");
                sb_quote(&b, r->commands[i]);
            }
        }
        for (size_t i = 0; i < r->n_commands; i++)
            sb_fmt(&disp, "%s%s", i ? " && " : "", r->commands[i]);
        if (r->user)
            out->user = r->user;
        break;
    }
    default:
        return 0; /* no command */
    }
    out->script = sb_take(&b);
    out->display = sb_take(&disp);
    if (!out->script || !out->display)
        goto oom;
    return 1;
oom:
    free(out->script);
    free(out->display);
    memset(out, 0, sizeof *out);
    return -1;
}

void bld_step_cmd_free(bld_step_cmd *s)
{
    if (!s)
        return;
    free(s->script);
    free(s->display);
    memset(s, 0, sizeof *s);
}

char *bld_step_script_with_secrets(const bld_step_cmd *cmd)
{
    sbuf b = {0};
    for (size_t i = 0; i < cmd->n_secrets; i++) {
        const sbx_step_secret *s = &cmd->secrets[i];
        if (s->env) /* id and env were validated: no quoting needed */
            sb_fmt(&b, "%s=\"$(cat /run/secrets/%s)\" && export %s\n", s->env, s->id, s->env);
    }
    sb_str(&b, cmd->script);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
