/* sbx-image login / logout: credentials in the auth file podman and skopeo
 * read (containers-auth.json), checked against the registry first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "sbx/registry.h"

static const char LOGIN_USAGE[] =
    "usage: sbx-image login [-u USER] [--password-stdin] [--authfile FILE] REGISTRY\n"
    "\n"
    "Check a username and password with REGISTRY (host[:port]; docker.io for Docker\n"
    "Hub) and, when it accepts them, keep them in the auth file that pull, resolve,\n"
    "inspect, push, build, unpack, mount and export read (and podman and skopeo\n"
    "too).  The file is replaced atomically, mode 0600; other entries are kept.\n"
    "\n"
    "options:\n"
    "  -u, --username USER  the user (default: asked on a terminal)\n"
    "  --password-stdin   the password is stdin's first line (default: asked on a\n"
    "                     terminal, without echo); never on the command line\n"
    "  --authfile FILE    the auth file to write (default: $REGISTRY_AUTH_FILE, else\n"
    "                     $XDG_RUNTIME_DIR/containers/auth.json, else\n"
    "                     /run/containers/UID/auth.json)\n"
    "  -v, --verbose      debug messages (requests) on stderr\n"
    "\n"
    "output: \"Login Succeeded\" and the file on stderr.  Exit 1 when the registry\n"
    "refuses the credentials (the file is not touched), 2 on usage errors.\n"
    "\n"
    "examples:\n"
    "  sbx-image login -u ci --password-stdin registry.example.com < token.txt\n";

static const char LOGOUT_USAGE[] =
    "usage: sbx-image logout [--authfile FILE] (REGISTRY | --all)\n"
    "\n"
    "Remove REGISTRY's credentials (every registry's with --all) from the auth file\n"
    "login writes.  Other files (the Docker config) are not changed.\n"
    "\n"
    "options:\n"
    "  --all              remove every entry\n"
    "  --authfile FILE    the auth file (default: as login)\n"
    "\n"
    "Exit 1 when the file has no such entry, 2 on usage errors.\n"
    "\n"
    "examples:\n"
    "  sbx-image logout registry.example.com\n"
    "  sbx-image logout --all\n";

/* One line from the terminal, echo off for a secret; NULL without one. */
static char *ask(const char *prompt, bool secret)
{
    if (!isatty(STDIN_FILENO))
        return NULL;
    fputs(prompt, stderr);
    fflush(stderr);
    struct termios old, quiet;
    bool restore = secret && tcgetattr(STDIN_FILENO, &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (restore) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (n <= 0) {
        free(line);
        return NULL;
    }
    line[strcspn(line, "\r\n")] = '\0';
    return line;
}

struct login_opts {
    sbx_registry_options r;
    const char *user;
    bool pw_stdin, all;
};

static int login_opt(void *ud, int c, const char *arg)
{
    struct login_opts *o = ud;
    switch (c) {
    case 'u': o->user = arg; return 0;
    case CLI_OPT_PASSWORD_STDIN: o->pw_stdin = true; return 0;
    case CLI_OPT_AUTHFILE:
        if (!*arg)
            return cli_usage_error("login", "--authfile needs a file"), -2;
        o->r.authfile = arg;
        return 0;
    case 'a': o->all = true; return 0;
    default: return -1;
    }
}

int cmd_login(sbx_cli *cli, int argc, char **argv)
{
    static const struct option extra[] = {{"username", required_argument, NULL, 'u'},
                                          CLI_CREDS_MORE_OPTS};
    struct login_opts o = {SBX_REGISTRY_OPTIONS_INIT, NULL, false, false};
    int r = cli_parse_verb(cli, "login", LOGIN_USAGE, extra, 3, login_opt, &o, argc, argv, 1,
                           "REGISTRY");
    if (r < 0)
        return -r - 1;
    const char *registry = argv[optind];
    char *asked = NULL, *pw = NULL;
    if (!o.user && !(o.user = asked = ask("Username: ", false)))
        return cli_usage_error("login", "give the user with -u USER");
    if (o.pw_stdin) {
        size_t cap = 0;
        ssize_t n = getline(&pw, &cap, stdin);
        if (n > 0)
            pw[strcspn(pw, "\r\n")] = '\0';
        if (n <= 0 || !*pw) {
            free(pw);
            free(asked);
            return cli_usage_error("login", "--password-stdin: stdin gave no password");
        }
    } else if (!(pw = ask("Password: ", true))) {
        free(asked);
        return cli_usage_error("login", "give the password with --password-stdin");
    }
    o.r.username = o.user;
    o.r.password = pw;
    sbx_error err = SBX_ERROR_INIT;
    char *path = NULL;
    r = sbx_registry_login(&path, registry, &o.r, cli->ctx, &err);
    explicit_bzero(pw, strlen(pw));
    free(pw);
    free(asked);
    if (r < 0)
        return cli_fail(&err);
    fprintf(stderr, "Login Succeeded (%s)\n", path);
    free(path);
    return CLI_EXIT_OK;
}

int cmd_logout(sbx_cli *cli, int argc, char **argv)
{
    static const struct option extra[] = {{"all", no_argument, NULL, 'a'},
                                          {"authfile", required_argument, NULL, CLI_OPT_AUTHFILE}};
    struct login_opts o = {SBX_REGISTRY_OPTIONS_INIT, NULL, false, false};
    bool all = false; /* decides how many arguments there are */
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--all") || !strcmp(argv[i], "-a"))
            all = true;
    int r = cli_parse_verb(cli, "logout", LOGOUT_USAGE, extra, 2, login_opt, &o, argc, argv,
                           all ? 0 : 1, all ? "no REGISTRY with --all" : "REGISTRY (or --all)");
    if (r < 0)
        return -r - 1;
    sbx_error err = SBX_ERROR_INIT;
    char *path = NULL;
    r = sbx_registry_logout(&path, o.all ? NULL : argv[optind], &o.r, &err);
    if (r < 0)
        return cli_fail(&err);
    fprintf(stderr, "Removed login credentials for %s (%s)\n",
            o.all ? "every registry" : argv[optind], path);
    free(path);
    return CLI_EXIT_OK;
}
