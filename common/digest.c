#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "sbx_common.h"

struct sbx__sha256 {
    EVP_MD_CTX *ctx;
};

int sbx__sha256_new(sbx__sha256 **out, sbx_error *err)
{
    sbx__sha256 *h = calloc(1, sizeof *h);
    if (!h || !(h->ctx = EVP_MD_CTX_new())) {
        free(h);
        return sbx_error_set(err, SBX_ENOMEM, "allocate sha256 context");
    }
    if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        sbx__sha256_free(h);
        return sbx_error_set(err, SBX_EINTERNAL, "initialize sha256");
    }
    *out = h;
    return 0;
}

void sbx__sha256_update(sbx__sha256 *h, const void *data, size_t len)
{
    EVP_DigestUpdate(h->ctx, data, len);
}

void sbx__sha256_final(sbx__sha256 *h, char out[SBX_DIGEST_BUFSZ])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(h->ctx, md, &n);
    memcpy(out, "sha256:", 7);
    sbx__hex_encode(md, 32, out + 7);
    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}

void sbx__sha256_free(sbx__sha256 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void sbx__sha256_raw(const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

void sbx__sha256_buf(const void *data, size_t len, char out[SBX_DIGEST_BUFSZ])
{
    unsigned char md[32];
    sbx__sha256_raw(data, len, md);
    memcpy(out, "sha256:", 7);
    sbx__hex_encode(md, 32, out + 7);
}

int sbx__hmac_sha256_hex(const unsigned char key[32], const void *data, size_t len,
                         char out[SBX_SHA256_HEXLEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (!HMAC(EVP_sha256(), key, 32, data, len, mac, &n) || n != 32)
        return -1;
    sbx__hex_encode(mac, 32, out);
    OPENSSL_cleanse(mac, sizeof mac);
    return 0;
}

void sbx__hex_encode(const unsigned char *in, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * len] = '\0';
}

bool sbx__digest_valid(const char *s)
{
    if (!s || strncmp(s, "sha256:", 7) != 0)
        return false;
    s += 7;
    for (int i = 0; i < SBX_SHA256_HEXLEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[SBX_SHA256_HEXLEN] == '\0';
}

int sbx__digest_parse(const char **hex_out, const char *digest, sbx_error *err)
{
    if (!sbx__digest_valid(digest))
        return sbx_error_set(err, SBX_EINVAL,
                             "parse digest '%.80s': expected 'sha256:' and 64 lowercase hex digits",
                             digest ? digest : "(null)");
    if (hex_out)
        *hex_out = digest + 7;
    return 0;
}
