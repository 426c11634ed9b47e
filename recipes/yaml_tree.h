/* A minimal YAML node tree with source positions (internal). */
#ifndef SBX_YAML_TREE_H
#define SBX_YAML_TREE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "sbx_common.h"

enum { YNODE_SCALAR = 1, YNODE_SEQ, YNODE_MAP };

typedef struct ynode ynode;
struct ynode {
    int type;
    size_t line, col; /* 1-based */
    char *value;      /* scalars: NUL-terminated (may hold earlier NULs: see len) */
    size_t len;
    bool plain;       /* plain (unquoted, untagged) scalar: may be null or a boolean */
    ynode **items;    /* SEQ: items; MAP: key0, value0, key1, value1, ... */
    size_t n;
};

/* Load exactly one document.  Errors: SBX_EINVAL with where "name:line:col". */
int ytree_load(ynode **out, const char *data, size_t len, const char *name, sbx_error *err);
void ytree_free(ynode *n);
/* Set SBX_EINVAL with where at n (or just name when n is NULL). */
int ytree_fail(sbx_error *err, const char *name, const ynode *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
