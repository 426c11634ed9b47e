/* Credentials from the Docker config (auths, credHelpers, credsStore) and
 * docker-credential-* helpers.  Values are never logged or put in errors. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>

#include "registry_internal.h"

extern char **environ;

/* The server string Docker uses for a registry host. */
static const char *docker_server(const char *host)
{
    return !strcmp(host, "docker.io") ? "https://index.docker.io/v1/" : host;
}

/* Does a config key ("https://host:5000/v2/", "host:5000", ...) name host? */
static bool key_matches(const char *key, const char *host)
{
    const char *k = key;
    bool url = true;
    if (!strncmp(k, "https://", 8))
        k += 8;
    else if (!strncmp(k, "http://", 7))
        k += 7;
    else
        url = false;
    size_t n = strcspn(k, "/");
    /* "host/ns/repo" names a repository (containers-auth.json): not the
     * whole registry; a URL's path ("https://host/v1/") does not count */
    const char *p = k + n;
    if (!url && *p && strcmp(p, "/") && strcmp(p, "/v1/") && strcmp(p, "/v2/") &&
        strcmp(p, "/v1") && strcmp(p, "/v2"))
        return false;
    if (!strcmp(host, "docker.io")) {
        static const char *aliases[] = {"docker.io", "index.docker.io", "registry-1.docker.io"};
        for (size_t i = 0; i < SBX_ARRAY_LEN(aliases); i++)
            if (strlen(aliases[i]) == n && !strncasecmp(k, aliases[i], n))
                return true;
        return false;
    }
    return strlen(host) == n && !strncasecmp(k, host, n);
}

static json_t *find_key(json_t *obj, const char *host)
{
    const char *key;
    json_t *val;
    if (!json_is_object(obj))
        return NULL;
    json_object_foreach(obj, key, val) {
        if (key_matches(key, host))
            return val;
    }
    return NULL;
}

/* containers-auth.json keys may name a repository or a namespace
 * ("quay.io/team/app", "quay.io/team"): the most specific key covering the
 * repository wins, then the registry's own key. */
static json_t *find_key_repo(json_t *obj, const char *host, const char *path)
{
    if (!json_is_object(obj))
        return NULL;
    if (path && *path) {
        char cand[REG_REPO_BUFSZ];
        snprintf(cand, sizeof cand, "%s/%s", host, path);
        size_t hostlen = strlen(host);
        for (;;) {
            json_t *v = json_object_get(obj, cand);
            if (v)
                return v;
            char *slash = strrchr(cand, '/');
            if (!slash || (size_t)(slash - cand) <= hostlen)
                break;
            *slash = '\0';
        }
    }
    return find_key(obj, host);
}

static bool helper_name_ok(const char *name)
{
    if (!*name || strlen(name) > 64)
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_.-", *p))
            return false;
    return true;
}

int reg_cred_helper_get(reg_creds *out, const char *helper, const char *server, sbx_error *err)
{
    if (!helper_name_ok(helper))
        return sbx_error_set(err, SBX_EINVAL, "running credential helper: bad helper name '%.64s'",
                             helper);
    char prog[128];
    snprintf(prog, sizeof prog, "docker-credential-%s", helper);
    int in[2], outp[2];
    if (pipe2(in, O_CLOEXEC) < 0)
        return sbx_error_sys(err, SBX_EIO, errno, "running '%s'", prog);
    if (pipe2(outp, O_CLOEXEC) < 0) {
        int e = errno;
        close(in[0]);
        close(in[1]);
        return sbx_error_sys(err, SBX_EIO, e, "running '%s'", prog);
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    char *argv[] = {prog, "get", NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(outp[1]);
    if (rc != 0) {
        close(in[1]);
        close(outp[0]);
        return sbx_error_sys(err, SBX_EAUTH, rc, "running credential helper '%s'", prog);
    }
    /* The server name is short: one write cannot block on a fresh pipe. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigaction(SIGPIPE, &ign, &old);
    sbx_error werr = SBX_ERROR_INIT;
    sbx__write_all(in[1], server, strlen(server), &werr);
    close(in[1]);
    sigaction(SIGPIPE, &old, NULL);
    char buf[65536];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(outp[0], buf + n, sizeof buf - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == sizeof buf - 1)
            break;
    }
    close(outp[0]);
    buf[n] = '\0';
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        bool not_found = strstr(buf, "credentials not found") != NULL;
        OPENSSL_cleanse(buf, n);
        if (not_found)
            return sbx_error_set(err, SBX_ENOTFOUND, "'%s' has no credentials for '%s'", prog,
                                 server);
        return sbx_error_set(err, SBX_EAUTH, "credential helper '%s' failed for '%s'", prog,
                             server);
    }
    json_error_t jerr;
    json_t *root = json_loadb(buf, n, 0, &jerr);
    OPENSSL_cleanse(buf, n);
    const char *user = json_string_value(json_object_get(root, "Username"));
    const char *secret = json_string_value(json_object_get(root, "Secret"));
    if (!root || !secret) {
        json_decref(root);
        return sbx_error_set(err, SBX_EAUTH, "credential helper '%s' gave no Secret for '%s'",
                             prog, server);
    }
    memset(out, 0, sizeof *out);
    if (user && !strcmp(user, "<token>")) {
        out->identity_token = strdup(secret);
    } else {
        out->username = strdup(user ? user : "");
        out->password = strdup(secret);
    }
    json_decref(root);
    if (reg_creds_empty(out))
        return sbx_error_set(err, SBX_ENOMEM, "reading credentials: out of memory");
    return 0;
}

static int creds_from_auth_entry(reg_creds *out, json_t *entry, const char *path, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    const char *auth = json_string_value(json_object_get(entry, "auth"));
    const char *user = json_string_value(json_object_get(entry, "username"));
    const char *pass = json_string_value(json_object_get(entry, "password"));
    const char *idt = json_string_value(json_object_get(entry, "identitytoken"));
    const char *rtok = json_string_value(json_object_get(entry, "registrytoken"));
    if (auth && *auth) {
        char *dec = NULL;
        size_t len = 0;
        if (reg_base64_decode(&dec, &len, auth, err) < 0) {
            sbx_error_where(err, "%s", path);
            return sbx_error_wrap(err, "reading 'auth' in '%s'", path);
        }
        char *colon = memchr(dec, ':', len);
        if (!colon) {
            OPENSSL_cleanse(dec, len);
            free(dec);
            sbx_error_where(err, "%s", path);
            return sbx_error_set(err, SBX_EINVAL,
                                 "reading 'auth' in '%s': not base64 of 'user:password'", path);
        }
        *colon = '\0';
        out->username = strdup(dec);
        out->password = strdup(colon + 1);
        OPENSSL_cleanse(dec, len);
        free(dec);
    } else if (user && pass) {
        out->username = strdup(user);
        out->password = strdup(pass);
    }
    if (idt && *idt)
        out->identity_token = strdup(idt);
    if (rtok && *rtok)
        out->registry_token = strdup(rtok);
    return reg_creds_empty(out) ? SBX_ENOTFOUND : 0;
}

/* Credentials for host (and repository path) from one auth file in the
 * Docker config / containers-auth.json format; SBX_ENOTFOUND when it has
 * none, or when the file is missing and missing_ok. */
static int creds_from_file(reg_creds *out, const char *path, const char *host,
                           const char *repo_path, bool missing_ok, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    sbx_error rerr = SBX_ERROR_INIT;
    if (sbx__read_file(&data, &len, path, 4u << 20, &rerr) < 0) {
        if (rerr.sys_errno == ENOENT && missing_ok)
            return SBX_ENOTFOUND;
        *err = rerr;
        sbx_error_where(err, "%s", path);
        return sbx_error_wrap(err, "reading the auth file '%s'", path);
    }
    json_error_t jerr;
    json_t *root = json_loadb(data, len, 0, &jerr);
    OPENSSL_cleanse(data, len);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        sbx_error_where(err, "%s:%d", path, jerr.line);
        return sbx_error_set(err, SBX_EINVAL, "parsing Docker config '%s': %s", path,
                             root ? "not a JSON object" : jerr.text);
    }
    int rc = SBX_ENOTFOUND;
    json_t *helper = find_key_repo(json_object_get(root, "credHelpers"), host, repo_path);
    json_t *entry = find_key_repo(json_object_get(root, "auths"), host, repo_path);
    const char *store = json_string_value(json_object_get(root, "credsStore"));
    if (json_is_string(helper)) {
        rc = reg_cred_helper_get(out, json_string_value(helper), docker_server(host), err);
    } else if (entry && (rc = creds_from_auth_entry(out, entry, path, err)) != SBX_ENOTFOUND) {
        /* found, or a broken entry */
    } else if (store && *store) {
        rc = reg_cred_helper_get(out, store, docker_server(host), err);
    }
    json_decref(root);
    if (rc == SBX_ENOTFOUND)
        sbx_error_clear(err);
    return rc;
}

static char *docker_config_path(const char *config_path)
{
    if (config_path && *config_path)
        return strdup(config_path);
    if (getenv("DOCKER_CONFIG") && *getenv("DOCKER_CONFIG"))
        return sbx__strdup_printf("%s/config.json", getenv("DOCKER_CONFIG"));
    if (getenv("HOME"))
        return sbx__strdup_printf("%s/.docker/config.json", getenv("HOME"));
    return NULL;
}

int reg_docker_creds(reg_creds *out, const char *config_path, const char *host, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    _cleanup_free_ char *path = docker_config_path(config_path);
    if (!path)
        return SBX_ENOTFOUND;
    return creds_from_file(out, path, host, NULL, true, err);
}

char *reg_default_authfile(const sbx_registry_options *opts)
{
    if (opts && opts->authfile && *opts->authfile)
        return strdup(opts->authfile);
    const char *e = getenv("REGISTRY_AUTH_FILE");
    if (e && *e)
        return strdup(e);
    e = getenv("XDG_RUNTIME_DIR");
    if (e && *e)
        return sbx__strdup_printf("%s/containers/auth.json", e);
    return sbx__strdup_printf("/run/containers/%u/auth.json", (unsigned)getuid());
}

int reg_lookup_creds(reg_creds *out, const sbx_registry_options *opts, const char *host,
                     const char *repo_path, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    if (opts && opts->authfile && *opts->authfile) /* that file only, as podman has it */
        return creds_from_file(out, opts->authfile, host, repo_path, false, err);
    /* podman's and skopeo's order: REGISTRY_AUTH_FILE, the runtime dir's
     * auth.json, the config dir's, then Docker's config */
    char *paths[4] = {0};
    size_t n = 0;
    const char *e = getenv("REGISTRY_AUTH_FILE");
    if (e && *e)
        paths[n++] = strdup(e);
    else
        paths[n++] = reg_default_authfile(NULL);
    e = getenv("XDG_CONFIG_HOME");
    if (e && *e)
        paths[n++] = sbx__strdup_printf("%s/containers/auth.json", e);
    else if (getenv("HOME"))
        paths[n++] = sbx__strdup_printf("%s/.config/containers/auth.json", getenv("HOME"));
    paths[n++] = docker_config_path(opts ? opts->docker_config : NULL);
    int rc = SBX_ENOTFOUND;
    for (size_t i = 0; i < n && rc == SBX_ENOTFOUND; i++)
        if (paths[i])
            rc = creds_from_file(out, paths[i], host, repo_path, true, err);
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    return rc;
}
