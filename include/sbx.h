/* sbx-image: the library the platform links.  One header per module. */
#ifndef SBX_H
#define SBX_H
#include "sbx/error.h"
#include "sbx/log.h"
#include "sbx/recipe.h"
#include "sbx/registry.h"
#include "sbx/store.h"
#include "sbx/builder.h"
#include "sbx/rootfs.h"
#include "sbx/export.h"
#endif
