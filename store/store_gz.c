/* Gzip layers kept as a registry sent them: decompressed here for the
 * writer (diff_id), the readers and fsck.  ISA-L's inflate, one member after
 * another (concatenated gzip is valid gzip), each member's CRC-32 and length
 * checked by ISA-L. */
#include <stdlib.h>
#include <isa-l/igzip_lib.h>

#include "store_internal.h"

struct sbx_store__gz {
    struct inflate_state z;
    bool started, ended;
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
    default: return "inflate error";
    }
}

int sbx_store__gz_step(sbx_store__gz *g, const unsigned char *in, size_t ilen, size_t *ipos,
                       unsigned char *out, size_t ocap, size_t *opos)
{
    while (*opos < ocap) {
        if (!g->started || g->ended) {
            if (*ipos == ilen)
                break; /* a member ended with the input: another may follow */
            isal_inflate_init(&g->z);
            g->z.crc_flag = ISAL_GZIP;
            g->started = true;
            g->ended = false;
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
            return r < 0 ? r : -100;
        bool stuck = ai == g->z.avail_in && ao == g->z.avail_out &&
                     g->z.block_state != ISAL_BLOCK_FINISH;
        if (stuck && ai > 0)
            return -100; /* no progress with input and room: never expected */
        if (g->z.block_state == ISAL_BLOCK_FINISH)
            g->ended = true;
        else if (stuck || (*ipos == ilen && *opos < ocap))
            break; /* all input taken, all output given: more input needed */
    }
    return 0;
}
