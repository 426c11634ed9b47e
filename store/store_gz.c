/* Gzip layers kept as a registry sent them: decompressed here for the
 * writer (diff_id), the readers and fsck.  ISA-L's inflate, one member after
 * another (concatenated gzip is valid gzip), each member's CRC-32 and length
 * checked by ISA-L.
 *
 * Each member's header is read with isal_read_gzip_header into a header
 * struct kept here, then its deflate data inflated with the trailer checked
 * (ISAL_GZIP_NO_HDR_VER).  Letting isal_inflate parse the header itself
 * (ISAL_GZIP) is wrong for a header that arrives in two pieces: ISA-L 2.30
 * keeps that parse's state in a local struct, so a header with FHCRC or
 * FEXTRA split between calls fails or passes depending on where the caller's
 * buffers happen to end, and the writer, the readers and fsck, which cut the
 * same file at different places, would disagree about the same bytes. */
#include <stdlib.h>
#include <string.h>
#include <isa-l/igzip_lib.h>

#include "store_internal.h"

/* our own codes, beside ISA-L's negative ones */
#define GZ_STUCK (-100)
#define GZ_RESERVED (-101)
#define GZ_TRAILING (-102)

struct sbx_store__gz {
    struct inflate_state z;
    struct isal_gzip_header h;
    bool started, ended, in_header;
    unsigned char head[4]; /* a member's ID1 ID2 CM FLG */
    size_t nhead;
    uint64_t members; /* complete so far */
};

sbx_store__gz *sbx_store__gz_new(void) { return calloc(1, sizeof(sbx_store__gz)); }

void sbx_store__gz_free(sbx_store__gz *g) { free(g); }

bool sbx_store__gz_ended(const sbx_store__gz *g) { return g->started && g->ended; }

const char *sbx_store__gz_reason(int r)
{
    switch (r) {
    case ISAL_INVALID_BLOCK: return "invalid block";
    case ISAL_INVALID_SYMBOL: return "invalid symbol";
    case ISAL_INVALID_LOOKBACK: return "invalid distance";
    case ISAL_INVALID_WRAPPER: return "not a gzip header";
    case ISAL_UNSUPPORTED_METHOD: return "unknown compression method";
    case ISAL_INCORRECT_CHECKSUM: return "incorrect data check";
    case GZ_RESERVED: return "reserved gzip header flags set";
    case GZ_TRAILING: return "bytes after the last member that are not another gzip member";
    default: return "inflate error";
    }
}

static void member_start(sbx_store__gz *g)
{
    isal_inflate_init(&g->z);
    isal_gzip_header_init(&g->h);
    g->h.flags = 0; /* ISA-L 2.30's init leaves it unset; the parse reads it */
    g->z.crc_flag = ISAL_GZIP_NO_HDR_VER;
    g->started = g->in_header = true;
    g->ended = false;
    g->nhead = 0;
}

/* The member's header, as far as the input goes: 1 when it is complete,
 * 0 when more input is needed, <0 when it is not a gzip header. */
static int read_header(sbx_store__gz *g, const unsigned char *in, size_t ilen, size_t *ipos)
{
    size_t left = ilen - *ipos, take = sizeof g->head - g->nhead;
    if (take > left)
        take = left;
    /* the member's first 4 bytes are always the header's own */
    memcpy(g->head + g->nhead, in + *ipos, take);
    g->nhead += take;
    /* the magic, judged as it arrives (ISA-L waits for a whole header, so
     * a few stray bytes at the end would read as a cut-off member) */
    if ((g->nhead >= 1 && g->head[0] != 0x1f) || (g->nhead >= 2 && g->head[1] != 0x8b))
        return g->members > 0 ? GZ_TRAILING : ISAL_INVALID_WRAPPER;
    g->z.next_in = (uint8_t *)in + *ipos;
    g->z.avail_in = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
    uint32_t ai = g->z.avail_in;
    int r = isal_read_gzip_header(&g->z, &g->h);
    *ipos += ai - g->z.avail_in;
    if (r == ISAL_END_INPUT)
        return 0;
    if (r != ISAL_DECOMP_OK)
        return g->members > 0 && r == ISAL_INVALID_WRAPPER ? GZ_TRAILING : r < 0 ? r : GZ_STUCK;
    if (g->head[3] & 0xE0)
        return GZ_RESERVED; /* gzip(1) and zlib refuse these too */
    g->in_header = false;
    return 1;
}

int sbx_store__gz_step(sbx_store__gz *g, const unsigned char *in, size_t ilen, size_t *ipos,
                       unsigned char *out, size_t ocap, size_t *opos)
{
    while (*opos < ocap) {
        if (!g->started || g->ended) {
            if (*ipos == ilen)
                break; /* a member ended with the input: another may follow */
            member_start(g);
        }
        if (g->in_header) {
            int r = read_header(g, in, ilen, ipos);
            if (r < 0)
                return r;
            if (r == 0)
                break; /* the rest of the header in the next input */
        }
        size_t in_left = ilen - *ipos, out_left = ocap - *opos;
        /* ISA-L counts in 32 bits */
        g->z.next_in = (uint8_t *)in + *ipos;
        g->z.avail_in = in_left > UINT32_MAX ? UINT32_MAX : (uint32_t)in_left;
        g->z.next_out = out + *opos;
        g->z.avail_out = out_left > UINT32_MAX ? UINT32_MAX : (uint32_t)out_left;
        uint32_t ai = g->z.avail_in, ao = g->z.avail_out;
        int r = isal_inflate(&g->z);
        *ipos += ai - g->z.avail_in;
        *opos += ao - g->z.avail_out;
        if (r != ISAL_DECOMP_OK && r != ISAL_END_INPUT && r != ISAL_OUT_OVERFLOW)
            return r < 0 ? r : GZ_STUCK;
        bool stuck = ai == g->z.avail_in && ao == g->z.avail_out &&
                     g->z.block_state != ISAL_BLOCK_FINISH;
        if (stuck && ai > 0)
            return GZ_STUCK; /* no progress with input and room: never expected */
        if (g->z.block_state == ISAL_BLOCK_FINISH) {
            g->ended = true;
            g->members++;
        } else if (stuck || (*ipos == ilen && *opos < ocap)) {
            break; /* all input taken, all output given: more input needed */
        }
    }
    return 0;
}
