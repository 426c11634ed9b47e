/* libyaml events -> a small node tree with positions.
 *
 * Trust: recipe files are untrusted input.  The tree is built from events
 * (not libyaml's document loader) so that what we do not support is refused
 * where it appears rather than silently expanded: anchors, aliases (and so
 * merge keys' usual form), tags other than !!str, non-scalar keys, duplicate
 * keys, more than one document, nesting deeper than YTREE_MAX_DEPTH.
 */
#include <string.h>
#include <yaml.h>

#include "yaml_tree.h"

#define YTREE_MAX_DEPTH 32
#define YTREE_MAX_ITEMS 8192 /* per list or mapping: keeps the duplicate-key check cheap */

void ytree_free(ynode *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        ytree_free(n->items[i]);
    free(n->items);
    free(n->value);
    free(n);
}

int ytree_fail(sbx_error *err, const char *name, const ynode *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof err->msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sbx_error_set(err, SBX_EINVAL, "%s", msg);
    if (n)
        sbx_error_where(err, "%s:%zu:%zu", name, n->line, n->col);
    else
        sbx_error_where(err, "%s", name);
    return SBX_EINVAL;
}

static int fail_mark(sbx_error *err, const char *name, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_mark(sbx_error *err, const char *name, yaml_mark_t m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof err->msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sbx_error_set(err, SBX_EINVAL, "%s", msg);
    sbx_error_where(err, "%s:%zu:%zu", name, m.line + 1, m.column + 1);
    return SBX_EINVAL;
}

typedef struct loader {
    yaml_parser_t parser;
    const char *name;
    sbx_error *err;
} loader;

static int next_event(loader *l, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&l->parser, ev)) {
        yaml_parser_t *p = &l->parser;
        yaml_mark_t m = p->problem_mark;
        if (p->error == YAML_MEMORY_ERROR)
            return sbx_error_set(l->err, SBX_ENOMEM, "parse YAML: out of memory");
        if (p->context)
            return fail_mark(l->err, l->name, m, "parse YAML: %s %s (line %zu)", p->problem,
                             p->context, p->context_mark.line + 1);
        return fail_mark(l->err, l->name, m, "parse YAML: %s",
                         p->problem ? p->problem : "invalid input");
    }
    return 0;
}

static int check_props(loader *l, yaml_event_t *ev, const yaml_char_t *anchor,
                       const yaml_char_t *tag, bool scalar)
{
    if (anchor)
        return fail_mark(l->err, l->name, ev->start_mark,
                         "expected plain YAML: anchors ('&%s') and aliases are not supported",
                         (const char *)anchor);
    if (tag && !(scalar && !strcmp((const char *)tag, YAML_STR_TAG)))
        return fail_mark(l->err, l->name, ev->start_mark,
                         "expected plain YAML: tags ('%s') are not supported, except !!str",
                         (const char *)tag);
    return 0;
}

static ynode *node_new(loader *l, int type, yaml_mark_t m)
{
    ynode *n = calloc(1, sizeof *n);
    if (!n) {
        sbx_error_set(l->err, SBX_ENOMEM, "parse YAML: out of memory");
        return NULL;
    }
    n->type = type;
    n->line = m.line + 1;
    n->col = m.column + 1;
    return n;
}

static int push(loader *l, ynode *parent, ynode *child)
{
    if (parent->n % 16 == 0) {
        ynode **ni = realloc(parent->items, (parent->n + 16) * sizeof *ni);
        if (!ni)
            return sbx_error_set(l->err, SBX_ENOMEM, "parse YAML: out of memory");
        parent->items = ni;
    }
    parent->items[parent->n++] = child;
    return 0;
}

static int load_node(loader *l, yaml_event_t *ev, int depth, ynode **out);

/* After a mapping key is loaded: refuse duplicates and merge keys. */
static int check_key(loader *l, const ynode *map, const ynode *key)
{
    if (key->type != YNODE_SCALAR)
        return ytree_fail(l->err, l->name, key, "expected a string as mapping key");
    if (key->plain && !strcmp(key->value, "<<"))
        return ytree_fail(l->err, l->name, key,
                          "expected plain YAML: merge keys ('<<') are not supported");
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const ynode *k = map->items[i];
        if (k->len == key->len && !memcmp(k->value, key->value, k->len))
            return ytree_fail(l->err, l->name, key,
                              "duplicate key '%s' (first at line %zu, column %zu)", key->value,
                              k->line, k->col);
    }
    return 0;
}

static int load_children(loader *l, ynode *n, int depth, yaml_event_type_t end)
{
    for (;;) {
        yaml_event_t ev;
        if (next_event(l, &ev) < 0)
            return l->err->code;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (n->n >= (n->type == YNODE_MAP ? 2 : 1) * YTREE_MAX_ITEMS) {
            int rc = fail_mark(l->err, l->name, ev.start_mark,
                               "expected at most %d entries in a list or mapping", YTREE_MAX_ITEMS);
            yaml_event_delete(&ev);
            return rc;
        }
        ynode *c = NULL;
        int rc = load_node(l, &ev, depth + 1, &c);
        yaml_event_delete(&ev);
        if (rc == 0 && n->type == YNODE_MAP && n->n % 2 == 0)
            rc = check_key(l, n, c);
        if (rc == 0)
            rc = push(l, n, c);
        if (rc < 0) {
            ytree_free(c);
            return rc;
        }
    }
}

static int load_node(loader *l, yaml_event_t *ev, int depth, ynode **out)
{
    *out = NULL;
    if (depth > YTREE_MAX_DEPTH)
        return fail_mark(l->err, l->name, ev->start_mark,
                         "expected at most %d levels of nesting", YTREE_MAX_DEPTH);
    ynode *n = NULL;
    int rc = 0;
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        return fail_mark(l->err, l->name, ev->start_mark,
                         "expected plain YAML: aliases ('*%s') are not supported",
                         (const char *)ev->data.alias.anchor);
    case YAML_SCALAR_EVENT:
        if (check_props(l, ev, ev->data.scalar.anchor, ev->data.scalar.tag, true) < 0)
            return l->err->code;
        if (!(n = node_new(l, YNODE_SCALAR, ev->start_mark)))
            return l->err->code;
        n->len = ev->data.scalar.length;
        n->value = malloc(n->len + 1);
        if (!n->value) {
            ytree_free(n);
            return sbx_error_set(l->err, SBX_ENOMEM, "parse YAML: out of memory");
        }
        memcpy(n->value, ev->data.scalar.value, n->len);
        n->value[n->len] = '\0';
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev->data.scalar.tag;
        break;
    case YAML_SEQUENCE_START_EVENT:
        if (check_props(l, ev, ev->data.sequence_start.anchor, ev->data.sequence_start.tag,
                        false) < 0)
            return l->err->code;
        if (!(n = node_new(l, YNODE_SEQ, ev->start_mark)))
            return l->err->code;
        rc = load_children(l, n, depth, YAML_SEQUENCE_END_EVENT);
        break;
    case YAML_MAPPING_START_EVENT:
        if (check_props(l, ev, ev->data.mapping_start.anchor, ev->data.mapping_start.tag,
                        false) < 0)
            return l->err->code;
        if (!(n = node_new(l, YNODE_MAP, ev->start_mark)))
            return l->err->code;
        rc = load_children(l, n, depth, YAML_MAPPING_END_EVENT);
        break;
    default:
        return fail_mark(l->err, l->name, ev->start_mark, "parse YAML: unexpected event");
    }
    if (rc < 0) {
        ytree_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

/* Expect an event of type t (consuming it). */
static int expect(loader *l, yaml_event_type_t t, yaml_event_t *ev)
{
    if (next_event(l, ev) < 0)
        return l->err->code;
    if (ev->type != t) {
        int rc = fail_mark(l->err, l->name, ev->start_mark, "parse YAML: unexpected event");
        yaml_event_delete(ev);
        return rc;
    }
    return 0;
}

int ytree_load(ynode **out, const char *data, size_t len, const char *name, sbx_error *err)
{
    *out = NULL;
    loader l = {.name = name, .err = err};
    if (!yaml_parser_initialize(&l.parser))
        return sbx_error_set(err, SBX_ENOMEM, "parse YAML: out of memory");
    yaml_parser_set_input_string(&l.parser, (const unsigned char *)data, len);
    yaml_event_t ev;
    ynode *root = NULL;
    int rc = expect(&l, YAML_STREAM_START_EVENT, &ev);
    if (rc < 0)
        goto out;
    yaml_event_delete(&ev);
    if ((rc = next_event(&l, &ev)) < 0)
        goto out;
    if (ev.type == YAML_STREAM_END_EVENT) {
        rc = fail_mark(err, name, ev.start_mark, "expected a recipe (a mapping), got an empty file");
        yaml_event_delete(&ev);
        goto out;
    }
    yaml_event_delete(&ev); /* DOCUMENT-START */
    if ((rc = next_event(&l, &ev)) < 0)
        goto out;
    rc = load_node(&l, &ev, 0, &root);
    yaml_event_delete(&ev);
    if (rc < 0)
        goto out;
    if ((rc = expect(&l, YAML_DOCUMENT_END_EVENT, &ev)) < 0)
        goto out;
    yaml_event_delete(&ev);
    if ((rc = next_event(&l, &ev)) < 0)
        goto out;
    if (ev.type != YAML_STREAM_END_EVENT) {
        rc = fail_mark(err, name, ev.start_mark,
                       "expected one YAML document, found a second one");
        yaml_event_delete(&ev);
        goto out;
    }
    yaml_event_delete(&ev);
    *out = SBX_STEAL(root);
out:
    ytree_free(root);
    yaml_parser_delete(&l.parser);
    return rc;
}
