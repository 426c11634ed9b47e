/* Private images: who may use what the store pulled with credentials.
 *
 * The model (docs/registry.md, "Private images"), after Kubernetes'
 * "ensure secret pulled images" (KEP-2535): what a registry gives an
 * anonymous caller is public; what it refuses to one is private to that
 * repository, and the store gives it only to a caller whose credentials
 * the registry accepts for the repository now -- a manifest HEAD with
 * them.  Verdicts are cached in the store's "access" namespace under a
 * keyed hash of the credentials (never the secret) for $SBX_ACCESS_TTL
 * seconds (default 60): "<identity> <repo>" -> "ok" or "denied".  Only an
 * anonymous refusal is cached as such (it is what makes a repository
 * private); a refused caller is asked again next time. */
#include <openssl/crypto.h>
#include <string.h>

#include "registry_internal.h"

#define META_ACCESS "access"

static int64_t access_ttl(const sbx_registry_options *opts)
{
    if (opts && opts->access_ttl >= 0)
        return opts->access_ttl;
    return sbx__env_int("SBX_ACCESS_TTL", 60, 0, 7 * 86400, NULL);
}

void reg_repo_of(char *buf, size_t len, const sbx_ref *ref)
{
    snprintf(buf, len, "%s/%s", ref->domain, ref->path);
}

static bool identity_of(char id[REG_IDENTITY_BUFSZ], reg_client *c, sbx_store *s)
{
    unsigned char key[32];
    sbx_error e = SBX_ERROR_INIT;
    if (sbx_store_secret_key(s, key, &e) < 0)
        return false;
    reg_client_identity(c, key, id);
    OPENSSL_cleanse(key, sizeof key);
    return true;
}

/* 1 ok, -1 denied, 0 nothing fresh; *ever_ok: an "ok" of any age. */
static int verdict_get(sbx_store *s, const char *id, const char *repo, int64_t ttl,
                       bool *ever_ok)
{
    _cleanup_free_ char *key = sbx__strdup_printf("%s %s", id, repo);
    _cleanup_free_ char *val = NULL;
    int64_t stamp = 0;
    sbx_error e = SBX_ERROR_INIT;
    if (ever_ok)
        *ever_ok = false;
    if (!key || sbx_store_meta_get(s, META_ACCESS, key, &val, &stamp, &e) < 0 || !val)
        return 0;
    bool ok = !strcmp(val, "ok");
    if (ever_ok)
        *ever_ok = ok;
    int64_t age = sbx__now_unix() - stamp;
    if (ttl == 0 || age < 0 || age >= ttl)
        return 0;
    return ok ? 1 : -1;
}

static void verdict_put(sbx_store *s, const char *id, const char *repo, bool ok)
{
    _cleanup_free_ char *key = sbx__strdup_printf("%s %s", id, repo);
    sbx_error e = SBX_ERROR_INIT;
    if (key)
        sbx_store_meta_set(s, META_ACCESS, key, ok ? "ok" : "denied", &e);
}

/* HEAD the manifest (GET where HEAD is refused, as resolve does). */
static int probe(reg_client *c, const char *digest, sbx_error *err)
{
    reg_resp resp = {.content_length = -1};
    int rc = reg_get_manifest(c, digest, true, &resp, err);
    if (rc < 0 && rc != SBX_ENOTFOUND && rc != SBX_EAUTH && resp.status >= 400 &&
        resp.status < 500 && resp.status != 429) {
        reg_resp_clear(&resp);
        sbx_error_clear(err);
        rc = reg_get_manifest(c, digest, false, &resp, err);
    }
    reg_resp_clear(&resp);
    return rc;
}

void reg_access_learn(bool *is_private, reg_client *c, sbx_store *s, const char *repo,
                      const char *ref_digest, const sbx_registry_options *opts)
{
    *is_private = false;
    if (!s || !reg_client_sent_creds(c))
        return; /* it came without credentials: anyone gets it */
    *is_private = true;
    char id[REG_IDENTITY_BUFSZ];
    if (identity_of(id, c, s))
        verdict_put(s, id, repo, true);
    int known = verdict_get(s, "anonymous", repo, access_ttl(opts), NULL);
    if (known) {
        *is_private = known < 0;
        return;
    }
    reg_client *anon = NULL;
    sbx_error e = SBX_ERROR_INIT;
    if (reg_client_anonymous(&anon, c, &e) < 0)
        return;
    int rc = probe(anon, ref_digest, &e);
    reg_client_free(anon);
    if (rc == 0 || rc == SBX_EAUTH || rc == SBX_ENOTFOUND) {
        *is_private = rc != 0;
        verdict_put(s, "anonymous", repo, rc == 0);
    }
    sbx__log(reg_client_ctx(c), SBX_LOG_DEBUG, "'%s' is %s (anonymous: %s)", repo,
             *is_private ? "private" : "public", rc == 0 ? "allowed" : e.msg);
}

int reg_access_check(sbx_store *s, const char *repo, const char *ref_digest,
                     const sbx_registry_options *opts, sbx_ctx *ctx, sbx_error *err)
{
    int64_t ttl = access_ttl(opts);
    _cleanup_free_ char *refstr = sbx__strdup_printf("%s@%s", repo, ref_digest);
    if (!refstr)
        return sbx_error_set(err, SBX_ENOMEM, "out of memory");
    reg_session sess;
    int rc = reg_session_init(&sess, refstr, opts, ctx, err);
    reg_client *c = NULL;
    if (rc == 0)
        rc = reg_client_new(&c, &sess.ref, "", opts, &sess.cfg, ctx, err);
    char id[REG_IDENTITY_BUFSZ] = "unknown"; /* (no key: matches no cached verdict) */
    if (rc == 0)
        identity_of(id, c, s);
    bool ever_ok = false;
    int v = rc == 0 ? verdict_get(s, id, repo, ttl, &ever_ok) : 0;
    if (v > 0) {
        rc = 0;
    } else if (rc == 0) {
        rc = probe(c, ref_digest, err);
        reg_client_remember(c, s);
        if (rc == 0) {
            verdict_put(s, id, repo, true);
        } else if (rc == SBX_EAUTH || rc == SBX_ENOTFOUND) {
            bool anon = !strcmp(id, "anonymous");
            sbx_error_clear(err);
            rc = sbx_error_set(err, SBX_EAUTH,
                               anon ? "it was pulled with credentials from '%s'; give "
                                      "credentials that may pull from there"
                                    : "the credentials given may not pull from '%s' (the "
                                      "registry refused them)",
                               repo);
        } else if (ever_ok && sbx__env_int("SBX_ACCESS_OFFLINE_KNOWN", 0, 0, 1, ctx) == 1) {
            char buf[600];
            sbx__log(ctx, SBX_LOG_WARN, "cannot check access to '%s' (%s); these credentials "
                     "were accepted there before, and SBX_ACCESS_OFFLINE_KNOWN=1 allows that",
                     repo, sbx_error_format(err, buf, sizeof buf));
            sbx_error_clear(err);
            rc = 0;
        } else {
            sbx_error_wrap(err, "cannot check access to the private repository '%s'", repo);
        }
    }
    reg_client_free(c);
    reg_session_free(&sess);
    return rc;
}

static int gate_fn(void *arg, sbx_store *s, const char *repo, const char *ref_digest,
                   sbx_error *err)
{
    return reg_access_check(s, repo, ref_digest, arg, NULL, err);
}

int sbx_registry_access_check(sbx_store *s, const char *digest,
                              const sbx_registry_options *opts, sbx_error *err)
{
    return sbx_store_access_check_with(s, digest, gate_fn, (void *)opts, err);
}

void sbx_registry_gate(sbx_store *s, const sbx_registry_options *opts)
{
    static const sbx_registry_options defaults = SBX_REGISTRY_OPTIONS_INIT;
    sbx_store_set_access(s, gate_fn, (void *)(opts ? opts : &defaults));
}
