/* sbx-image: the library the platform links.  One header per module, in
 * dependency order. */
#ifndef SBX_H
#define SBX_H
#include "sbx/error.h"
#include "sbx/context.h"
#include "sbx/store.h"
#include "sbx/recipe.h"
#include "sbx/image.h"
#include "sbx/rootfs.h"
#include "sbx/registry.h"
#include "sbx/builder.h"
#endif
