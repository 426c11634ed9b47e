/* Configuration: registries.json (insecure registries, docker.io mirrors),
 * certs.d, and the environment knobs for timeouts and retries. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "registry_internal.h"

static int load_strings(char ***out, size_t *n, json_t *arr, const char *what, const char *path,
                        sbx_error *err)
{
    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return sbx_error_set(err, SBX_EINVAL, "parsing '%s': '%s' must be a list of strings",
                             path, what);
    size_t cnt = json_array_size(arr);
    if (cnt > 1000)
        return sbx_error_set(err, SBX_ELIMIT, "parsing '%s': too many entries in '%s'", path,
                             what);
    *out = calloc(cnt ? cnt : 1, sizeof(char *));
    if (!*out)
        return sbx_error_set(err, SBX_ENOMEM, "parsing '%s': out of memory", path);
    for (size_t i = 0; i < cnt; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s || !*s)
            return sbx_error_set(err, SBX_EINVAL,
                                 "parsing '%s': entry %zu of '%s' must be a non-empty string",
                                 path, i, what);
        if (!((*out)[i] = strdup(s)))
            return sbx_error_set(err, SBX_ENOMEM, "parsing '%s': out of memory", path);
        (*n)++;
    }
    return 0;
}

int reg_config_load(reg_config *out, const char *path, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    if (!path || !*path)
        path = getenv("SBX_REGISTRIES_CONFIG");
    if (!path || !*path)
        path = "/etc/sbx-image/registries.json";
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    sbx_error rerr = SBX_ERROR_INIT;
    if (sbx__read_file(&data, &len, path, 1u << 20, &rerr) < 0) {
        if (rerr.sys_errno == ENOENT)
            return 0; /* optional */
        *err = rerr;
        return sbx_error_wrap(err, "reading registries config");
    }
    json_error_t jerr;
    json_t *root = json_loadb(data, len, 0, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        sbx_error_where(err, "%s:%d:%d", path, jerr.line, jerr.column);
        return sbx_error_set(err, SBX_EINVAL, "parsing '%s': %s", path,
                             root ? "expected a JSON object" : jerr.text);
    }
    int rc = load_strings(&out->insecure, &out->ninsecure, json_object_get(root, "insecure"),
                          "insecure", path, err);
    json_t *mirrors = json_object_get(root, "mirrors");
    if (rc == 0 && mirrors && !json_is_object(mirrors))
        rc = sbx_error_set(err, SBX_EINVAL, "parsing '%s': 'mirrors' must be an object", path);
    if (rc == 0 && mirrors) {
        const char *key;
        json_t *val;
        json_object_foreach(mirrors, key, val) {
            if (strcmp(key, "docker.io") != 0) {
                rc = sbx_error_set(err, SBX_EUNSUPPORTED,
                                   "parsing '%s': mirrors are supported for 'docker.io' only, "
                                   "not '%.100s'",
                                   path, key);
                break;
            }
            rc = load_strings(&out->mirrors, &out->nmirrors, val, "mirrors.docker.io", path, err);
        }
    }
    for (size_t i = 0; rc == 0 && i < out->nmirrors; i++) {
        const char *m = out->mirrors[i];
        if (strncmp(m, "http://", 7) && strncmp(m, "https://", 8)) {
            rc = sbx_error_set(err, SBX_EINVAL,
                               "parsing '%s': mirror '%.200s' must start with http:// or https://",
                               path, m);
        } else {
            const char *auth = strstr(m, "://") + 3;
            size_t n = strcspn(auth, "/?#");
            /* never echo it: it may hold a password */
            if (memchr(auth, '@', n))
                rc = sbx_error_set(err, SBX_EINVAL,
                                   "parsing '%s': mirror %zu has credentials in its URL; put them "
                                   "in the Docker config instead",
                                   path, i + 1);
            else if (n == 0)
                rc = sbx_error_set(err, SBX_EINVAL, "parsing '%s': mirror %zu has no host", path,
                                   i + 1);
        }
    }
    json_decref(root);
    if (rc < 0) {
        sbx_error_where(err, "%s", path);
        reg_config_free(out);
    }
    return rc;
}

void reg_config_free(reg_config *c)
{
    for (size_t i = 0; i < c->ninsecure; i++)
        free(c->insecure[i]);
    for (size_t i = 0; i < c->nmirrors; i++)
        free(c->mirrors[i]);
    free(c->insecure);
    free(c->mirrors);
    memset(c, 0, sizeof *c);
}

bool reg_config_is_insecure(const reg_config *c, const char *host)
{
    for (size_t i = 0; i < c->ninsecure; i++)
        if (!strcasecmp(c->insecure[i], host))
            return true;
    return false;
}

/* host may carry a port: "127.0.0.1:5000", "[::1]:5000", "localhost". */
bool reg_host_is_loopback(const char *host)
{
    char h[256];
    if (host[0] == '[') {
        const char *rb = strchr(host, ']');
        if (!rb || (size_t)(rb - host - 1) >= sizeof h)
            return false;
        memcpy(h, host + 1, (size_t)(rb - host - 1));
        h[rb - host - 1] = '\0';
        struct in6_addr a6;
        return inet_pton(AF_INET6, h, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    snprintf(h, sizeof h, "%s", host);
    char *colon = strchr(h, ':');
    if (colon)
        *colon = '\0';
    if (!strcasecmp(h, "localhost"))
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, h, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return false;
}

const char *reg_certs_dir(const sbx_registry_options *opts)
{
    if (opts && opts->certs_dir && *opts->certs_dir)
        return opts->certs_dir;
    const char *e = getenv("SBX_CERTS_DIR");
    if (e && *e)
        return e;
    return "/etc/sbx-image/certs.d";
}

