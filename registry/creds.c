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
    if (!strncmp(k, "https://", 8))
        k += 8;
    else if (!strncmp(k, "http://", 7))
        k += 7;
    size_t n = strcspn(k, "/");
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

int reg_docker_creds(reg_creds *out, const char *config_path, const char *host, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    _cleanup_free_ char *path = NULL;
    if (config_path && *config_path)
        path = strdup(config_path);
    else if (getenv("DOCKER_CONFIG") && *getenv("DOCKER_CONFIG"))
        path = sbx__strdup_printf("%s/config.json", getenv("DOCKER_CONFIG"));
    else if (getenv("HOME"))
        path = sbx__strdup_printf("%s/.docker/config.json", getenv("HOME"));
    if (!path)
        return SBX_ENOTFOUND;
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    sbx_error rerr = SBX_ERROR_INIT;
    if (sbx__read_file(&data, &len, path, 4u << 20, &rerr) < 0) {
        if (rerr.sys_errno == ENOENT)
            return SBX_ENOTFOUND;
        *err = rerr;
        return sbx_error_wrap(err, "reading Docker config");
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
    json_t *helper = find_key(json_object_get(root, "credHelpers"), host);
    json_t *entry = find_key(json_object_get(root, "auths"), host);
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
