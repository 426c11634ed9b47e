/* login and logout: credentials checked against a registry, kept in the
 * auth file podman and skopeo read (containers-auth.json: the "auths" of
 * Docker's config, {"auths": {"host": {"auth": base64("user:password")}}}).
 * The file is replaced atomically with mode 0600 in a 0700 directory; other
 * keys and entries are kept as they are. */
#include <errno.h>
#include <openssl/crypto.h>
#include <string.h>

#include <jansson.h>

#include "registry_internal.h"

/* The file's JSON object, or a new one when it does not exist. */
static int load_authfile(json_t **out, const char *path, sbx_error *err)
{
    *out = NULL;
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    sbx_error rerr = SBX_ERROR_INIT;
    if (sbx__read_file(&data, &len, path, 4u << 20, &rerr) < 0) {
        if (rerr.sys_errno != ENOENT) {
            *err = rerr;
            return sbx_error_wrap(err, "reading the auth file '%s'", path);
        }
        *out = json_object();
        return *out ? 0 : sbx_error_set(err, SBX_ENOMEM, "out of memory");
    }
    json_error_t jerr;
    *out = json_loadb(data, len, 0, &jerr);
    OPENSSL_cleanse(data, len);
    if (!*out || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        sbx_error_where(err, "%s:%d", path, jerr.line);
        return sbx_error_set(err, SBX_EINVAL, "parsing the auth file '%s': %s", path,
                             "not a JSON object");
    }
    return 0;
}

static int save_authfile(json_t *root, const char *path, sbx_error *err)
{
    _cleanup_free_ char *dir = strdup(path);
    if (!dir)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (sbx__mkdir_p(dir, 0700, err) < 0)
            return sbx_error_wrap(err, "writing the auth file '%s'", path);
    }
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!text)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    size_t n = strlen(text);
    int rc = sbx__write_file_atomic(path, text, n, 0600, err);
    OPENSSL_cleanse(text, n);
    free(text);
    return rc < 0 ? sbx_error_wrap(err, "writing the auth file '%s'", path) : 0;
}

int sbx_registry_login(char **path_out, const char *registry, const sbx_registry_options *opts,
                       sbx_ctx *ctx, sbx_error *err)
{
    if (path_out)
        *path_out = NULL;
    if (!opts || !opts->username || !*opts->username || !opts->password || !*opts->password)
        return sbx_error_set(err, SBX_EINVAL, "logging in to '%s': a username and a password "
                             "are needed", registry ? registry : "");
    if (strchr(opts->username, ':'))
        return sbx_error_set(err, SBX_EINVAL, "logging in to '%s': a username cannot hold ':'",
                             registry);
    /* any repository: the ref only carries the registry */
    _cleanup_free_ char *refstr = sbx__strdup_printf("%s/login/check", registry ? registry : "");
    if (!refstr)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    reg_session s;
    reg_client *c = NULL;
    int rc = reg_session_init(&s, refstr, opts, ctx, err);
    bool hub = !strcmp(registry, "docker.io") || !strcmp(registry, "index.docker.io") ||
               !strcmp(registry, "registry-1.docker.io");
    if (rc == 0 && (strchr(registry, '/') || (!hub && strcmp(s.ref.domain, registry) != 0)))
        rc = sbx_error_set(err, SBX_EINVAL, "'%s' is not a registry host[:port]", registry);
    if (rc == 0)
        rc = reg_client_new(&c, &s.ref, "", opts, &s.cfg, ctx, err);
    if (rc == 0)
        rc = reg_ping(c, err);
    if (rc == 0)
        reg_client_remember(c, opts->store);
    reg_client_free(c);
    char host[SBX_REF_DOMAIN_MAX + 1];
    snprintf(host, sizeof host, "%s", s.ref.domain);
    reg_session_free(&s);
    if (rc < 0)
        return sbx_error_wrap(err, "logging in to '%s'", registry);

    _cleanup_free_ char *path = reg_default_authfile(opts);
    if (!path)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    json_t *root = NULL;
    if ((rc = load_authfile(&root, path, err)) < 0)
        return rc;
    json_t *auths = json_object_get(root, "auths");
    if (!json_is_object(auths)) {
        auths = json_object();
        json_object_set_new(root, "auths", auths);
    }
    _cleanup_free_ char *up = sbx__strdup_printf("%s:%s", opts->username, opts->password);
    char *b64 = up ? reg_base64_encode(up, strlen(up)) : NULL;
    if (up)
        OPENSSL_cleanse(up, strlen(up));
    if (!b64) {
        json_decref(root);
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    }
    json_object_set_new(auths, !strcmp(host, "docker.io") ? "docker.io" : host,
                        json_pack("{s:s}", "auth", b64));
    OPENSSL_cleanse(b64, strlen(b64));
    free(b64);
    rc = save_authfile(root, path, err);
    json_decref(root);
    if (rc == 0 && path_out)
        *path_out = SBX_STEAL(path);
    return rc;
}

int sbx_registry_logout(char **path_out, const char *registry, const sbx_registry_options *opts,
                        sbx_error *err)
{
    if (path_out)
        *path_out = NULL;
    _cleanup_free_ char *path = reg_default_authfile(opts);
    if (!path)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    json_t *root = NULL;
    int rc = load_authfile(&root, path, err);
    if (rc < 0)
        return rc;
    json_t *auths = json_object_get(root, "auths");
    size_t removed = 0;
    if (json_is_object(auths)) {
        if (!registry) {
            removed = json_object_size(auths);
            json_object_clear(auths);
        } else {
            sbx_ref r;
            sbx_error e = SBX_ERROR_INIT;
            _cleanup_free_ char *refstr = sbx__strdup_printf("%s/x", registry);
            const char *host = refstr && sbx_ref_parse(&r, refstr, &e) == 0 ? r.domain : registry;
            const char *key;
            void *tmp;
            json_t *val;
            json_object_foreach_safe(auths, tmp, key, val) {
                (void)val;
                const char *k = key;
                if (!strncmp(k, "https://", 8))
                    k += 8;
                else if (!strncmp(k, "http://", 7))
                    k += 7;
                size_t n = strcspn(k, "/");
                if ((strlen(host) == n && !strncasecmp(k, host, n)) || !strcmp(key, registry)) {
                    json_object_del(auths, key);
                    removed++;
                }
            }
        }
    }
    if (removed == 0) {
        json_decref(root);
        return sbx_error_set(err, SBX_ENOTFOUND, "not logged in to '%s' (in '%s')",
                             registry ? registry : "any registry", path);
    }
    rc = save_authfile(root, path, err);
    json_decref(root);
    if (rc == 0 && path_out)
        *path_out = SBX_STEAL(path);
    return rc;
}
