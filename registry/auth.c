/* Authentication: WWW-Authenticate challenges (RFC 7235), token answers, a
 * process-wide token cache, and base64.
 *
 * Secrets (passwords, tokens) never enter error messages or logs: messages
 * here name hosts, realms and fields, never values. */
#include <ctype.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

#include "registry_internal.h"

/* ---- challenge parser --------------------------------------------------------- */

static bool is_tchar(char c)
{
    return isalnum((unsigned char)c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Read a token; returns its end (== p when none). */
static const char *scan_token(const char *p)
{
    while (is_tchar(*p))
        p++;
    return p;
}

/* Is there an auth-param ("name = value") at p? */
static bool at_param(const char *p)
{
    p = skip_ows(p);
    const char *e = scan_token(p);
    if (e == p)
        return false;
    e = skip_ows(e);
    return *e == '=' && e[1] != '=';
}

/* Read a token or quoted-string value into buf.  Returns the position after
 * it, or NULL on malformed or too long input. */
static const char *scan_value(const char *p, char *buf, size_t len)
{
    size_t n = 0;
    if (*p == '"') {
        p++;
        for (;;) {
            char c = *p++;
            if (c == '\0')
                return NULL; /* unterminated */
            if (c == '"')
                break;
            if (c == '\\') {
                c = *p++;
                if (c == '\0')
                    return NULL;
            }
            if (n + 1 >= len)
                return NULL;
            buf[n++] = c;
        }
    } else {
        const char *e = scan_token(p);
        if (e == p)
            return NULL;
        if ((size_t)(e - p) + 1 > len)
            return NULL;
        memcpy(buf, p, (size_t)(e - p));
        n = (size_t)(e - p);
        p = e;
    }
    buf[n] = '\0';
    return p;
}

int reg_challenge_parse(reg_challenge *out, const char *header, sbx_error *err)
{
    memset(out, 0, sizeof *out);
    if (!header)
        header = "";
    reg_challenge cur, basic;
    bool have_basic = false;
    const char *p = header;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *se = scan_token(p);
        if (se == p || (size_t)(se - p) >= sizeof cur.scheme)
            return sbx_error_set(err, SBX_EINVAL,
                                 "parsing WWW-Authenticate: expected an auth scheme at '%.40s'", p);
        memset(&cur, 0, sizeof cur);
        for (size_t i = 0; i < (size_t)(se - p); i++)
            cur.scheme[i] = (char)tolower((unsigned char)p[i]);
        p = skip_ows(se);
        /* token68 form ("Basic abc=="): skip it */
        if (*p && *p != ',' && !at_param(p)) {
            while (*p && *p != ',' && *p != ' ')
                p++;
        }
        /* auth-params, comma separated, until a new scheme starts */
        for (;;) {
            const char *q = p;
            while (*q == ' ' || *q == '\t' || *q == ',')
                q++;
            if (!*q || !at_param(q)) {
                p = q;
                break;
            }
            const char *ne = scan_token(q);
            char name[32];
            size_t nl = (size_t)(ne - q);
            if (nl >= sizeof name)
                nl = sizeof name - 1;
            for (size_t i = 0; i < nl; i++)
                name[i] = (char)tolower((unsigned char)q[i]);
            name[nl] = '\0';
            q = skip_ows(skip_ows(ne) + 1); /* past '=' */
            char *dst = NULL;
            size_t dlen = 0;
            char scratch[2048];
            if (!strcmp(name, "realm"))
                dst = cur.realm, dlen = sizeof cur.realm;
            else if (!strcmp(name, "service"))
                dst = cur.service, dlen = sizeof cur.service;
            else if (!strcmp(name, "scope"))
                dst = cur.scope, dlen = sizeof cur.scope;
            else if (!strcmp(name, "error"))
                dst = cur.error, dlen = sizeof cur.error;
            else
                dst = scratch, dlen = sizeof scratch;
            const char *ve = scan_value(q, dst, dlen);
            if (!ve)
                return sbx_error_set(err, SBX_EINVAL,
                                     "parsing WWW-Authenticate: bad or too long value of '%s'",
                                     name);
            p = skip_ows(ve);
            if (*p && *p != ',')
                return sbx_error_set(err, SBX_EINVAL,
                                     "parsing WWW-Authenticate: expected ',' after '%s'", name);
        }
        if (!strcmp(cur.scheme, "bearer")) {
            if (!cur.realm[0])
                return sbx_error_set(err, SBX_EINVAL,
                                     "parsing WWW-Authenticate: Bearer challenge without realm");
            *out = cur;
            return 0;
        }
        if (!strcmp(cur.scheme, "basic") && !have_basic) {
            basic = cur;
            have_basic = true;
        }
    }
    if (have_basic) {
        *out = basic;
        return 0;
    }
    return sbx_error_set(err, SBX_EINVAL,
                         "parsing WWW-Authenticate: no Bearer or Basic challenge in '%.100s'",
                         header);
}

/* ---- token answers ------------------------------------------------------------ */

int reg_token_parse(char **token_out, int64_t *expires_in, const char *body, size_t len,
                    sbx_error *err)
{
    *token_out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return sbx_error_set(err, SBX_ENET, "parsing token answer: not a JSON object");
    }
    const char *tok = json_string_value(json_object_get(root, "token"));
    if (!tok || !*tok)
        tok = json_string_value(json_object_get(root, "access_token"));
    if (!tok || !*tok) {
        json_decref(root);
        return sbx_error_set(err, SBX_EAUTH, "parsing token answer: no token in it");
    }
    json_t *exp = json_object_get(root, "expires_in");
    int64_t e = json_is_integer(exp) ? (int64_t)json_integer_value(exp) : 0;
    /* RFC 6750 / Docker: absent or too small means 60 seconds */
    if (e < 60)
        e = 60;
    if (e > 86400)
        e = 86400;
    *expires_in = e;
    *token_out = strdup(tok);
    json_decref(root);
    if (!*token_out)
        return sbx_error_set(err, SBX_ENOMEM, "parsing token answer: out of memory");
    return 0;
}

/* ---- token cache ---------------------------------------------------------------- */

typedef struct tok_entry {
    char key[SBX_DIGEST_BUFSZ]; /* sha256 of realm|service|scope|identity */
    char *token;
    uint64_t expires_ns;        /* monotonic */
} tok_entry;

#define TOK_CACHE_SIZE 64
static tok_entry g_tokens[TOK_CACHE_SIZE];
static pthread_mutex_t g_tok_lock = PTHREAD_MUTEX_INITIALIZER;

char *reg_token_cache_get(const char *key)
{
    char *res = NULL;
    uint64_t now = sbx__now_monotonic_ns();
    pthread_mutex_lock(&g_tok_lock);
    for (size_t i = 0; i < TOK_CACHE_SIZE; i++) {
        tok_entry *e = &g_tokens[i];
        if (e->token && !strcmp(e->key, key)) {
            if (e->expires_ns > now)
                res = strdup(e->token);
            break;
        }
    }
    pthread_mutex_unlock(&g_tok_lock);
    return res;
}

void reg_token_cache_put(const char *key, const char *token, int64_t expires_in)
{
    uint64_t now = sbx__now_monotonic_ns();
    /* Use it for 90% of its life, so a token never expires in flight. */
    uint64_t life = (uint64_t)expires_in * 900000000ull;
    pthread_mutex_lock(&g_tok_lock);
    tok_entry *slot = NULL, *oldest = &g_tokens[0];
    for (size_t i = 0; i < TOK_CACHE_SIZE; i++) {
        tok_entry *e = &g_tokens[i];
        if (e->token && !strcmp(e->key, key)) {
            slot = e;
            break;
        }
        if (!e->token && !slot)
            slot = e;
        if (e->expires_ns < oldest->expires_ns)
            oldest = e;
    }
    if (!slot)
        slot = oldest;
    if (slot->token) {
        OPENSSL_cleanse(slot->token, strlen(slot->token));
        free(slot->token);
    }
    slot->token = strdup(token);
    snprintf(slot->key, sizeof slot->key, "%s", key);
    slot->expires_ns = now + life;
    pthread_mutex_unlock(&g_tok_lock);
}

/* ---- credentials ---------------------------------------------------------------- */

static void wipe_free(char **s)
{
    if (*s) {
        OPENSSL_cleanse(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

void reg_creds_clear(reg_creds *c)
{
    wipe_free(&c->username);
    wipe_free(&c->password);
    wipe_free(&c->identity_token);
    wipe_free(&c->registry_token);
}

bool reg_creds_empty(const reg_creds *c)
{
    return !c->username && !c->password && !c->identity_token && !c->registry_token;
}

/* ---- base64 ----------------------------------------------------------------------- */

char *reg_base64_encode(const void *data, size_t len)
{
    if (len > (1u << 20))
        return NULL;
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (!out)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

int reg_base64_decode(char **out, size_t *outlen, const char *in, sbx_error *err)
{
    size_t n = strlen(in);
    if (n > (1u << 20) || n % 4 != 0)
        return sbx_error_set(err, SBX_EINVAL, "decoding base64: bad length");
    char *buf = malloc(n / 4 * 3 + 1);
    if (!buf)
        return sbx_error_set(err, SBX_ENOMEM, "decoding base64: out of memory");
    int r = EVP_DecodeBlock((unsigned char *)buf, (const unsigned char *)in, (int)n);
    if (r < 0) {
        free(buf);
        return sbx_error_set(err, SBX_EINVAL, "decoding base64: invalid characters");
    }
    /* EVP_DecodeBlock counts padding as zero bytes */
    size_t len = (size_t)r;
    if (n >= 1 && in[n - 1] == '=')
        len--;
    if (n >= 2 && in[n - 2] == '=')
        len--;
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return 0;
}
