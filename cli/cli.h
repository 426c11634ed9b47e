/* The command line: the only code that prints or exits.  One file per verb
 * (cmd_<verb>.c) over the library.  stdout carries results (a digest, a table,
 * or --json), stderr carries progress and errors. */
#ifndef SBX_CLI_H
#define SBX_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>

#include "sbx/error.h"
#include "sbx/context.h"
#include "sbx/store.h"

enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

typedef struct sbx_cli {
    const char *store_root; /* --store DIR, else NULL (SBX_STORE or the default) */
    int json;               /* --json: machine-readable results on stdout */
    int verbose;            /* -v: debug logs */
    int quiet;              /* -q: no progress, step output or info logs; results and
                             * errors only (images: only the digests) */
    int tty;                /* stderr is a terminal: draw progress bars */
    sbx_ctx *ctx;           /* the command's one operation: sinks, cancel on a signal */
} sbx_cli;

/* Options every verb accepts; put at the end of a verb's long options. */
#define CLI_COMMON_OPTS                                    \
    {"json", no_argument, NULL, 'J'},                      \
    {"store", required_argument, NULL, 'S'},               \
    {"verbose", no_argument, NULL, 'v'},                   \
    {"quiet", no_argument, NULL, 'q'},                     \
    {"help", no_argument, NULL, 'h'}
#define CLI_COMMON_SHORT "vqh"

/* Handle a common option; returns 1 when it was one. */
int cli_common_opt(sbx_cli *cli, int c, const char *arg);
/* getopt_long over a verb's longopts (which end with CLI_COMMON_OPTS),
 * handling the common options: the verb's next option, -1 at the end, or
 * CLI_OPT_HELP for -h/--help (the verb prints its usage and exits 0). */
#define CLI_OPT_HELP (-2)
int cli_next_opt(sbx_cli *cli, int argc, char **argv, const struct option *longopts);

/* Print "sbx-image: error: <where>: <msg>" to stderr; returns the exit
 * status: 128+N when signal N cancelled the call (SBX_ECANCELED), else
 * CLI_EXIT_FAIL. */
int cli_fail(const sbx_error *err);
/* With --json: cli_fail prints {"event": "error", "message", "code",
 * "where"} (cli_error_json) on stderr instead of the text line. */
void cli_set_json_errors(int on);
json_t *cli_error_json(const sbx_error *err);
/* The --json log and progress sinks: one {"event": "log"|"progress", ...}
 * line each on stderr. */
void cli_json_log(void *ud, sbx_log_level level, const char *op_id, const char *msg);
void cli_json_progress(void *ud, const sbx_progress *p);
/* The exit status cli_fail would return, without printing. */
int cli_fail_status(const sbx_error *err);
/* "--store needs a directory" on stderr; returns CLI_EXIT_USAGE. */
int cli_store_empty(void);
/* Print "sbx-image <verb>: <message>" and a hint to --help; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Open the store chosen by --store / SBX_STORE / default; prints on failure.
 * It must exist (read-only commands never create one); _create makes it
 * (pull, build); _or_none gives *out NULL for a store that is not there
 * (listing commands: nothing in it). */
int cli_open_store(sbx_cli *cli, sbx_store **out);
/* The registry commands' --platform ('p') and --creds USER:PASSWORD ('c')
 * into opts: 1 when c was one of them, -1 on a usage error (said), else 0. */
struct sbx_registry_options;
int cli_registry_opt(struct sbx_registry_options *opts, int c, char *arg, const char *verb);
/* --creds USER:PASSWORD alone (verbs where 'c' means something else):
 * 0, or CLI_EXIT_USAGE after saying why.  Hides the password in argv. */
int cli_registry_creds(struct sbx_registry_options *opts, char *arg, const char *verb);
/* The long option value of --creds in those verbs. */
#define CLI_OPT_CREDS 0x1001
/* --password-stdin (cli_registry_opt takes it too): the password of
 * --creds USER is stdin's first line.  After parsing, cli_registry_finish
 * reads it (or says what is missing): 0, or CLI_EXIT_USAGE. */
#define CLI_OPT_PASSWORD_STDIN 0x1002
#define CLI_PASSWORD_STDIN_OPT {"password-stdin", no_argument, NULL, CLI_OPT_PASSWORD_STDIN}
#define CLI_PASSWORD_STDIN_HELP                                                        \
    "  --password-stdin   with --creds USER: the password is stdin's first line\n"
int cli_registry_finish(struct sbx_registry_options *opts, const char *verb);
/* --authfile FILE (cli_registry_opt takes it too): credentials from that
 * containers-auth.json only. */
#define CLI_OPT_AUTHFILE 0x1003
/* The long options that go with --creds on every verb that takes it. */
#define CLI_CREDS_MORE_OPTS                                                            \
    CLI_PASSWORD_STDIN_OPT, {"authfile", required_argument, NULL, CLI_OPT_AUTHFILE}
#define CLI_CREDS_MORE_HELP                                                            \
    CLI_PASSWORD_STDIN_HELP                                                            \
    "  --authfile FILE    credentials from this auth file only (default:\n"            \
    "                     $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,\n" \
    "                     ~/.config/containers/auth.json, the Docker config)\n"
/* A verb's options (the common ones, and extra, each handed to opt:
 * 0 taken, -1 unknown, -2 a usage error it said) and exactly npos
 * non-empty arguments (what names them in the error).  0 to go on; else
 * -(exit status) - 1: --help printed (0) or a usage error said (2). */
int cli_parse_verb(sbx_cli *cli, const char *verb, const char *usage,
                   const struct option *extra, size_t nextra,
                   int (*opt)(void *ud, int c, const char *arg), void *ud, int argc, char **argv,
                   int npos, const char *what);
/* CLI_EXIT_OK as root; else one line saying verb needs root and why, and
 * CLI_EXIT_FAIL: said before anything is opened or made. */
int cli_need_root(const char *verb, const char *why);
int cli_open_store_create(sbx_cli *cli, sbx_store **out);
int cli_open_store_or_none(sbx_cli *cli, sbx_store **out);
/* Print o as one line of compact JSON to f and take ownership of it (NULL,
 * a failed json_pack, is an out-of-memory error).  Returns CLI_EXIT_OK, or
 * CLI_EXIT_FAIL after printing the error. */
int cli_print_json(FILE *f, json_t *o);
/* SIGINT, SIGTERM and SIGHUP cancel ctx (the running call stops and
 * cleans up; the command exits 128+N); a second signal ends the process at
 * once. */
void cli_catch_signals(sbx_ctx *ctx);
/* When status is 128+N for the signal N that cancelled the command: die of
 * N now (the command has cleaned up); else return. */
void cli_exit_like_signal(int status);
/* Progress may be redrawn in place with escape codes: stderr is a terminal
 * that understands them (not TERM=dumb or unset) and NO_COLOR is not set. */
int cli_draws_in_place(void);
/* "debug: <msg>" on stderr with -v. */
void cli_debug(const sbx_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The rootfs module's unpacker as the registry's layer tap (pull --unpack). */
struct sbx_layer_tap;
struct sbx_registry_options;
extern const struct sbx_layer_tap cli_unpack_tap;
/* --pull of unpack and mount: pull ref into s with the verb's registry
 * options, each layer unpacked into the cache while it downloads. */
int cli_pull_unpacking(sbx_cli *cli, sbx_store *s, const char *ref,
                       const struct sbx_registry_options *ro, const char *platform,
                       sbx_error *err);
/* --parallel N (1 to 8) of verb: 0, or a usage error (exit status 2). */
int cli_parallel_opt(const char *arg, const char *verb, unsigned *out);
/* Human-readable byte count ("12.3 MB"). */
const char *cli_human_bytes(unsigned long long n, char *buf, size_t len);
/* Install the default log and progress sinks on cli->ctx (tty bars or plain
 * lines), at the level -v asks for. */
void cli_install_sinks(sbx_cli *cli);
/* Install a command's own sinks on cli->ctx (NULL: drop those messages). */
void cli_set_sinks(sbx_cli *cli, sbx_log_fn log, sbx_progress_fn progress);
/* Finish any progress line in place (before printing results). */
void cli_progress_done(void);
/* Erase an open progress line instead (a terminal UI that prints what
 * follows in its place). */
void cli_progress_clear(void);
/* Put indent before each progress line on a terminal ("" by default). */
void cli_progress_set_indent(const char *indent);
/* "debug", "info", "warning", "error". */
const char *cli_log_level_name(sbx_log_level level);
/* A library message as a line on stderr: as is for info, else
 * "<level>: <msg>". */
void cli_print_log(sbx_log_level level, const char *msg);
/* printf precision that shows a progress id: a digest as its first 12 hex
 * digits ("sha256:1b2d9827e7a9"), anything else whole. */
int cli_id_width(const char *id);

typedef int (*cli_cmd_fn)(sbx_cli *cli, int argc, char **argv);

#define CLI_COMMANDS(X)                                                                 \
    X(build, "build an image from a recipe")                                            \
    X(builds, "list build records (state, timings, image or error)")                    \
    X(build_log, "print a build's log (--follow while it runs)")                        \
    X(build_cancel, "stop a queued or running build from any process")                  \
    X(pull, "pull an image from a registry into the store")                             \
    X(push, "push an image from the store to a registry")                               \
    X(login, "check credentials with a registry and keep them in the auth file")        \
    X(logout, "remove a registry's credentials from the auth file")                     \
    X(resolve, "print the manifest digest an image ref points to")                      \
    X(inspect, "show an image's manifest, config and layers")                           \
    X(history, "show how an image was made, step by step")                              \
    X(unpack, "materialize an image's root filesystem into a directory")                \
    X(export, "write an image as an OCI image layout directory")                        \
    X(load, "bring in an image from an OCI layout or archive, or docker save")          \
    X(mount, "mount an image as a sandbox's root filesystem (overlay, instant)")       \
    X(umount, "unmount a mount and drop its writable layer")                            \
    X(mounts, "list the store's mounts")                                               \
    X(commit, "snapshot a mount's changes as a new image")                              \
    X(images, "list named images in the store")                                         \
    X(tag, "give an image in the store another name")                                   \
    X(rm, "remove names from the store")                                                \
    X(gc, "delete what no name or lease reaches")                                       \
    X(fsck, "verify every blob and repair the store's records")                         \
    X(df, "show bytes stored against bytes the images take uncompressed")               \
    X(digest, "print a recipe's digest")                                                \
    X(recipe, "work with recipes (show the canonical form)")

#define X(name, summary) int cmd_##name(sbx_cli *cli, int argc, char **argv);
CLI_COMMANDS(X)
#undef X

#endif
