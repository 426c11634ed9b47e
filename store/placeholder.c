/* store: placeholder until the module lands. */
#include "sbx/store.h"
int sbx_store_open(sbx_store **out, const char *root, sbx_error *err)
{
    (void)out; (void)root;
    err->code = SBX_EUNSUPPORTED;
    return SBX_EUNSUPPORTED;
}
