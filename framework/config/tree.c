/* YAML -> a small tree with positions: libyaml's event API, anchors expanded by copy under a
 * node budget, merge keys, `base:` inheritance and KEY=VALUE overrides. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config_internal.h"

/* ---- context, strings, errors ------------------------------------------------------------ */

void cfg_ctx_init(struct cfg_ctx *c, struct invar_error *err)
{
    memset(c, 0, sizeof *c);
    c->err = err;
}

void cfg_ctx_deinit(struct cfg_ctx *c)
{
    for (size_t i = 0; i < c->n_strs; i++)
        free(c->strs[i]);
    free(c->strs);
    for (size_t i = 0; i < c->n_grave; i++)
        cfg_node_free(c->graveyard[i]);
    free(c->graveyard);
    memset(c, 0, sizeof *c);
}

const char *cfg_intern(struct cfg_ctx *c, const char *s)
{
    for (size_t i = 0; i < c->n_strs; i++)
        if (strcmp(c->strs[i], s) == 0)
            return c->strs[i];
    if (c->n_strs == c->cap_strs) {
        size_t cap = c->cap_strs ? 2 * c->cap_strs : 8;
        char **p = realloc(c->strs, cap * sizeof *p);
        if (!p)
            return NULL;
        c->strs = p;
        c->cap_strs = cap;
    }
    char *d = strdup(s);
    if (!d)
        return NULL;
    c->strs[c->n_strs++] = d;
    return d;
}

static void ctx_bury(struct cfg_ctx *c, struct cfg_node *n)
{
    if (!n)
        return;
    if (c->n_grave == c->cap_grave) {
        size_t cap = c->cap_grave ? 2 * c->cap_grave : 8;
        struct cfg_node **p = realloc(c->graveyard, cap * sizeof *p);
        if (!p) {
            /* Cannot keep it: leaking beats a dangling anchor. */
            return;
        }
        c->graveyard = p;
        c->cap_grave = cap;
    }
    c->graveyard[c->n_grave++] = n;
}

enum invar_status cfg_vfail(struct cfg_ctx *c, enum invar_status st, const struct cfg_pos *pos,
                            const char *path, const char *fmt, va_list ap)
{
    char what[INVAR_ERROR_MAX];
    vsnprintf(what, sizeof what, fmt, ap);
    char where[INVAR_ERROR_MAX / 2] = "";
    if (pos && pos->override)
        snprintf(where, sizeof where, "<command line>: %s: ", pos->override);
    else if (pos && pos->file)
        snprintf(where, sizeof where, "%s:%d:%d: ", pos->file, pos->line, pos->col);
    if (path && *path)
        return invar_error_set(c->err, st, "%s%s: %s", where, path, what);
    return invar_error_set(c->err, st, "%s%s", where, what);
}

enum invar_status cfg_fail(struct cfg_ctx *c, const struct cfg_pos *pos, const char *path,
                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum invar_status st = cfg_vfail(c, INVAR_ERR_CONFIG, pos, path, fmt, ap);
    va_end(ap);
    return st;
}

static enum invar_status fail_nomem(struct cfg_ctx *c)
{
    return invar_error_set(c->err, INVAR_ERR_NOMEM, "out of memory while reading an experiment");
}

/* Copies by hand: paths are cut at cap, which snprintf would (rightly) warn about. */
static void append(char *out, size_t cap, size_t *n, const char *s)
{
    for (; *s && *n + 1 < cap; s++)
        out[(*n)++] = *s;
    out[*n] = '\0';
}

void cfg_path_join(char *out, size_t cap, const char *path, const char *key, long index)
{
    size_t n = 0;
    if (out == path)
        n = strlen(out);
    else
        append(out, cap, &n, path ? path : "");
    if (key) {
        if (n)
            append(out, cap, &n, ".");
        append(out, cap, &n, key);
    } else {
        char idx[32];
        snprintf(idx, sizeof idx, "[%ld]", index);
        append(out, cap, &n, idx);
    }
}

size_t cfg_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

void cfg_buf_puts(struct cfg_buf *b, const char *s)
{
    size_t k = strlen(s);
    if (b->oom)
        return;
    if (b->n + k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + k + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, k + 1);
    b->n += k;
}

void cfg_buf_printf(struct cfg_buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    cfg_buf_puts(b, tmp);
}

/* ---- nodes -------------------------------------------------------------------------------- */

struct cfg_node *cfg_node_new(struct cfg_ctx *c, enum cfg_kind kind, const struct cfg_pos *pos)
{
    if (++c->nodes > INVAR_CONFIG_MAX_NODES)
        return NULL;
    struct cfg_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->kind = kind;
    n->pos = *pos;
    return n;
}

void cfg_node_free(struct cfg_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++) {
        free(n->items[i].key);
        cfg_node_free(n->items[i].val);
    }
    free(n->items);
    free(n->text);
    free(n);
}

enum invar_status cfg_node_push(struct cfg_node *n, char *key, const struct cfg_pos *kpos,
                                struct cfg_node *val)
{
    if (n->n == n->cap) {
        size_t cap = n->cap ? 2 * n->cap : 4;
        struct cfg_entry *p = realloc(n->items, cap * sizeof *p);
        if (!p)
            return INVAR_ERR_NOMEM;
        n->items = p;
        n->cap = cap;
    }
    n->items[n->n++] = (struct cfg_entry){key, *kpos, val};
    return INVAR_OK;
}

struct cfg_entry *cfg_map_find(const struct cfg_node *map, const char *key)
{
    for (size_t i = 0; i < map->n; i++)
        if (map->items[i].key && strcmp(map->items[i].key, key) == 0)
            return &map->items[i];
    return NULL;
}

void cfg_map_remove(struct cfg_node *map, size_t i)
{
    free(map->items[i].key);
    cfg_node_free(map->items[i].val);
    memmove(&map->items[i], &map->items[i + 1], (map->n - i - 1) * sizeof map->items[0]);
    map->n--;
}

/* Deep copy; NULL when out of memory or over the node budget (c->nodes tells which). */
struct cfg_node *cfg_node_copy(struct cfg_ctx *c, const struct cfg_node *n, int depth)
{
    if (depth > INVAR_CONFIG_MAX_DEPTH) {
        c->too_deep = 1;
        return NULL;
    }
    struct cfg_node *d = cfg_node_new(c, n->kind, &n->pos);
    if (!d)
        return NULL;
    d->quoted = n->quoted;
    if (n->text && !(d->text = strdup(n->text)))
        goto fail;
    for (size_t i = 0; i < n->n; i++) {
        char *key = NULL;
        if (n->items[i].key && !(key = strdup(n->items[i].key)))
            goto fail;
        struct cfg_node *v = cfg_node_copy(c, n->items[i].val, depth + 1);
        if (!v || cfg_node_push(d, key, &n->items[i].kpos, v) != INVAR_OK) {
            free(key);
            cfg_node_free(v);
            goto fail;
        }
    }
    return d;
fail:
    cfg_node_free(d);
    return NULL;
}

/* ---- the parser --------------------------------------------------------------------------- */

struct frame {
    struct cfg_node *node;
    char *key; /* maps: the key whose value comes next, else NULL */
    struct cfg_pos kpos;
    char *anchor;
};

struct anchor {
    char *name;
    const struct cfg_node *node;
};

struct parser {
    struct cfg_ctx *c;
    const char *file;
    const char *override;
    struct frame stack[INVAR_CONFIG_MAX_DEPTH + 1];
    int depth;
    struct anchor *anchors;
    size_t n_anchors, cap_anchors;
    struct cfg_node *root;
    int docs;
};

static struct cfg_pos mark_pos(const struct parser *p, yaml_mark_t m)
{
    return (struct cfg_pos){p->file, (int)m.line + 1, (int)m.column + 1, p->override};
}

/* The dotted path of the node about to be attached. */
static void stack_path(const struct parser *p, char *out, size_t cap)
{
    out[0] = '\0';
    for (int i = 0; i < p->depth; i++) {
        const struct frame *f = &p->stack[i];
        if (f->node->kind == CFG_MAP) {
            if (!f->key)
                break;
            cfg_path_join(out, cap, out, f->key, 0);
        } else {
            cfg_path_join(out, cap, out, NULL, (long)f->node->n);
        }
    }
}

static enum invar_status parse_fail(struct parser *p, const struct cfg_pos *pos, const char *fmt,
                                    ...) INVAR_PRINTF(3, 4);
static enum invar_status parse_fail(struct parser *p, const struct cfg_pos *pos, const char *fmt,
                                    ...)
{
    /* Inside an override's value the path would be relative to the value: leave it out. */
    char path[512] = "";
    if (!p->override)
        stack_path(p, path, sizeof path);
    va_list ap;
    va_start(ap, fmt);
    enum invar_status st = cfg_vfail(p->c, INVAR_ERR_CONFIG, pos, path, fmt, ap);
    va_end(ap);
    return st;
}

static enum invar_status budget_fail(struct parser *p, const struct cfg_pos *pos)
{
    if (p->c->nodes > INVAR_CONFIG_MAX_NODES)
        return parse_fail(p, pos,
                          "the document expands to more than %d nodes (aliases or merge "
                          "keys repeated too often)",
                          INVAR_CONFIG_MAX_NODES);
    if (p->c->too_deep)
        return parse_fail(p, pos, "nesting deeper than %d levels once aliases are expanded",
                          INVAR_CONFIG_MAX_DEPTH);
    return fail_nomem(p->c);
}

static enum invar_status add_anchor(struct parser *p, char *name, const struct cfg_node *n)
{
    if (p->n_anchors == p->cap_anchors) {
        size_t cap = p->cap_anchors ? 2 * p->cap_anchors : 8;
        struct anchor *a = realloc(p->anchors, cap * sizeof *a);
        if (!a) {
            free(name);
            return fail_nomem(p->c);
        }
        p->anchors = a;
        p->cap_anchors = cap;
    }
    p->anchors[p->n_anchors++] = (struct anchor){name, n};
    return INVAR_OK;
}

/* Hands a finished node to its parent (or makes it the root); takes ownership of anchor. */
static enum invar_status attach(struct parser *p, struct cfg_node *n, char *anchor)
{
    if (p->depth == 0) {
        p->root = n;
    } else {
        struct frame *top = &p->stack[p->depth - 1];
        if (top->node->kind == CFG_MAP && !top->key) {
            if (n->kind != CFG_SCALAR) {
                enum invar_status st = parse_fail(p, &n->pos, "a key must be a scalar");
                cfg_node_free(n);
                free(anchor);
                return st;
            }
            const struct cfg_entry *dup = cfg_map_find(top->node, n->text);
            if (dup && strcmp(n->text, "<<") != 0) {
                char path[512];
                stack_path(p, path, sizeof path);
                cfg_path_join(path, sizeof path, path, n->text, 0);
                enum invar_status st = cfg_fail(p->c, &n->pos, path,
                                                "duplicate key `%s` (first at line %d, column %d)",
                                                n->text, dup->kpos.line, dup->kpos.col);
                cfg_node_free(n);
                free(anchor);
                return st;
            }
            top->key = n->text;
            top->kpos = n->pos;
            n->text = NULL;
            if (anchor) {
                ctx_bury(p->c, n);
                return add_anchor(p, anchor, n);
            }
            cfg_node_free(n);
            return INVAR_OK;
        }
        char *key = top->node->kind == CFG_MAP ? top->key : NULL;
        struct cfg_pos kpos = top->node->kind == CFG_MAP ? top->kpos : n->pos;
        if (cfg_node_push(top->node, key, &kpos, n) != INVAR_OK) {
            cfg_node_free(n);
            free(anchor);
            return fail_nomem(p->c);
        }
        top->key = NULL;
    }
    return anchor ? add_anchor(p, anchor, n) : INVAR_OK;
}

/* `<<: *base` or `<<: [*a, *b]`: copy the keys the map does not set itself (earlier sources
 * win over later ones, explicit keys over all). */
static enum invar_status apply_merges(struct parser *p, struct cfg_node *map)
{
    struct cfg_node *sources[64];
    size_t n_src = 0;
    for (size_t i = 0; i < map->n;) {
        if (strcmp(map->items[i].key, "<<") != 0) {
            i++;
            continue;
        }
        struct cfg_node *v = map->items[i].val;
        int ok = v->kind == CFG_MAP;
        if (v->kind == CFG_SEQ) {
            ok = 1;
            for (size_t k = 0; k < v->n; k++)
                ok &= v->items[k].val->kind == CFG_MAP;
        }
        if (!ok || n_src + (v->kind == CFG_SEQ ? v->n : 1) > 64)
            return parse_fail(p, &v->pos,
                              "a merge key `<<` takes a map or a list of at most "
                              "64 maps");
        if (v->kind == CFG_MAP)
            sources[n_src++] = v;
        else
            for (size_t k = 0; k < v->n; k++)
                sources[n_src++] = v->items[k].val;
        /* The value may carry an anchor: keep it alive until the context goes. */
        free(map->items[i].key);
        ctx_bury(p->c, v);
        memmove(&map->items[i], &map->items[i + 1], (map->n - i - 1) * sizeof map->items[0]);
        map->n--;
    }
    for (size_t s = 0; s < n_src; s++) {
        for (size_t k = 0; k < sources[s]->n; k++) {
            const struct cfg_entry *e = &sources[s]->items[k];
            if (cfg_map_find(map, e->key))
                continue;
            char *key = strdup(e->key);
            struct cfg_node *v = key ? cfg_node_copy(p->c, e->val, p->depth) : NULL;
            if (!v || cfg_node_push(map, key, &e->kpos, v) != INVAR_OK) {
                free(key);
                cfg_node_free(v);
                return budget_fail(p, &map->pos);
            }
        }
    }
    return INVAR_OK;
}

static enum invar_status on_event(struct parser *p, yaml_event_t *ev)
{
    struct cfg_pos pos = mark_pos(p, ev->start_mark);
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++p->docs > 1)
            return parse_fail(p, &pos,
                              "more than one YAML document (an experiment is one "
                              "document)");
        return INVAR_OK;
    case YAML_SCALAR_EVENT: {
        struct cfg_node *n = cfg_node_new(p->c, CFG_SCALAR, &pos);
        if (!n)
            return budget_fail(p, &pos);
        n->text = malloc(ev->data.scalar.length + 1);
        if (!n->text) {
            cfg_node_free(n);
            return fail_nomem(p->c);
        }
        memcpy(n->text, ev->data.scalar.value, ev->data.scalar.length);
        n->text[ev->data.scalar.length] = '\0';
        if (strlen(n->text) != ev->data.scalar.length) {
            cfg_node_free(n);
            return parse_fail(p, &pos, "a NUL character inside a string");
        }
        const char *tag = (const char *)ev->data.scalar.tag;
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                    (tag && strcmp(tag, YAML_STR_TAG) == 0);
        char *anchor = ev->data.scalar.anchor ? strdup((char *)ev->data.scalar.anchor) : NULL;
        return attach(p, n, anchor);
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        if (p->depth >= INVAR_CONFIG_MAX_DEPTH)
            return parse_fail(p, &pos, "nesting deeper than %d levels", INVAR_CONFIG_MAX_DEPTH);
        int is_map = ev->type == YAML_MAPPING_START_EVENT;
        struct cfg_node *n = cfg_node_new(p->c, is_map ? CFG_MAP : CFG_SEQ, &pos);
        if (!n)
            return budget_fail(p, &pos);
        yaml_char_t *a = is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
        p->stack[p->depth++] = (struct frame){n, NULL, {0}, a ? strdup((char *)a) : NULL};
        return INVAR_OK;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: {
        struct frame f = p->stack[--p->depth];
        if (f.node->kind == CFG_MAP) {
            p->depth++; /* merge errors report the map's own path */
            enum invar_status st = apply_merges(p, f.node);
            p->depth--;
            if (st != INVAR_OK) {
                cfg_node_free(f.node);
                free(f.anchor);
                return st;
            }
        }
        return attach(p, f.node, f.anchor);
    }
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        for (int i = 0; i < p->depth; i++)
            if (p->stack[i].anchor && strcmp(p->stack[i].anchor, name) == 0)
                return parse_fail(p, &pos,
                                  "alias `*%s` refers to a node that contains it "
                                  "(an alias loop)",
                                  name);
        const struct cfg_node *target = NULL;
        for (size_t i = p->n_anchors; i-- > 0;)
            if (strcmp(p->anchors[i].name, name) == 0) {
                target = p->anchors[i].node;
                break;
            }
        if (!target)
            return parse_fail(p, &pos, "alias `*%s` names no anchor defined before it", name);
        struct cfg_node *n = cfg_node_copy(p->c, target, p->depth);
        if (!n)
            return budget_fail(p, &pos);
        return attach(p, n, NULL);
    }
    default:
        return INVAR_OK;
    }
}

static void stamp_override(struct cfg_node *n, const char *ov)
{
    n->pos.override = ov;
    for (size_t i = 0; i < n->n; i++) {
        n->items[i].kpos.override = ov;
        stamp_override(n->items[i].val, ov);
    }
}

/* Binary files are refused before libyaml sees them, with the offending byte's position. */
static enum invar_status check_text(struct cfg_ctx *c, const char *file, const char *text, size_t n)
{
    int line = 1, col = 1;
    for (size_t i = 0; i < n;) {
        unsigned char b = (unsigned char)text[i];
        struct cfg_pos pos = {file, line, col, NULL};
        if (b == 0)
            return cfg_fail(c, &pos, NULL, "binary file (a NUL byte)");
        size_t len = b < 0x80             ? 1
                     : (b & 0xE0) == 0xC0 ? 2
                     : (b & 0xF0) == 0xE0 ? 3
                     : (b & 0xF8) == 0xF0 ? 4
                                          : 0;
        uint32_t cp = len == 1 ? b : len == 2 ? (b & 0x1Fu) : len == 3 ? (b & 0x0Fu) : (b & 0x07u);
        int ok = len != 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) {
            unsigned char cb = (unsigned char)text[i + k];
            ok = (cb & 0xC0) == 0x80;
            cp = (cp << 6) | (cb & 0x3Fu);
        }
        /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8 either. */
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (ok && (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)))
            ok = 0;
        if (!ok)
            return cfg_fail(c, &pos, NULL, "binary file or invalid UTF-8 (byte 0x%02x)", b);
        if (b == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
        i += len;
    }
    return INVAR_OK;
}

enum invar_status cfg_parse(struct cfg_ctx *c, const char *file, const char *text, size_t n,
                            const char *override, struct cfg_node **root)
{
    *root = NULL;
    enum invar_status st = check_text(c, file, text, n);
    if (st != INVAR_OK)
        return st;
    struct parser p = {.c = c, .file = file, .override = override};
    yaml_parser_t yp;
    if (!yaml_parser_initialize(&yp))
        return fail_nomem(c);
    yaml_parser_set_input_string(&yp, (const unsigned char *)text, n);
    for (int done = 0; !done && st == INVAR_OK;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&yp, &ev)) {
            if (yp.error == YAML_MEMORY_ERROR) {
                st = fail_nomem(c);
                break;
            }
            struct cfg_pos pos = mark_pos(&p, yp.problem_mark);
            if (yp.context)
                st = parse_fail(&p, &pos, "%s %s", yp.problem, yp.context);
            else
                st = parse_fail(&p, &pos, "%s", yp.problem ? yp.problem : "invalid YAML");
            break;
        }
        done = ev.type == YAML_STREAM_END_EVENT;
        st = on_event(&p, &ev);
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&yp);
    for (int i = 0; i < p.depth; i++) {
        free(p.stack[i].key);
        free(p.stack[i].anchor);
        cfg_node_free(p.stack[i].node);
    }
    for (size_t i = 0; i < p.n_anchors; i++)
        free(p.anchors[i].name);
    free(p.anchors);
    if (st != INVAR_OK) {
        cfg_node_free(p.root);
        return st;
    }
    if (p.root && override)
        stamp_override(p.root, override);
    *root = p.root;
    return INVAR_OK;
}

/* ---- files and `base:` -------------------------------------------------------------------- */

static enum invar_status read_file(struct cfg_ctx *c, const char *path, char **text, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return invar_error_set(c->err, INVAR_ERR_IO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return fail_nomem(c);
            }
            buf = b;
        }
        size_t k = fread(buf + len, 1, cap - len - 1, f);
        len += k;
        if (len > INVAR_CONFIG_MAX_BYTES) {
            free(buf);
            fclose(f);
            return invar_error_set(c->err, INVAR_ERR_CONFIG, "%s: larger than %u bytes", path,
                                   INVAR_CONFIG_MAX_BYTES);
        }
        if (k == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return invar_error_set(c->err, INVAR_ERR_IO, "%s: read error", path);
    }
    buf[len] = '\0';
    *text = buf;
    *n = len;
    return INVAR_OK;
}

/* dst and src are maps: src's keys win, maps merge recursively, anything else is replaced.
 * src's entries are moved out (its values become NULL). */
static void deep_merge(struct cfg_node *dst, struct cfg_node *src, int *oom)
{
    for (size_t i = 0; i < src->n; i++) {
        struct cfg_entry *s = &src->items[i];
        struct cfg_entry *d = cfg_map_find(dst, s->key);
        if (d && d->val->kind == CFG_MAP && s->val->kind == CFG_MAP) {
            deep_merge(d->val, s->val, oom);
            d->kpos = s->kpos;
        } else if (d) {
            cfg_node_free(d->val);
            d->val = s->val;
            d->kpos = s->kpos;
            s->val = NULL;
        } else if (cfg_node_push(dst, s->key, &s->kpos, s->val) == INVAR_OK) {
            s->key = NULL;
            s->val = NULL;
        } else {
            *oom = 1;
        }
    }
}

#define MAX_BASE_CHAIN 16

struct chain {
    const char *files[MAX_BASE_CHAIN]; /* display names */
    char *real[MAX_BASE_CHAIN];        /* canonical paths, for cycle detection */
    int n;
};

static enum invar_status load_doc(struct cfg_ctx *c, const char *file, const char *text, size_t n,
                                  struct chain *ch, struct cfg_node **root);

static void dir_of(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, cap, ".");
    else if (slash == path)
        snprintf(out, cap, "/");
    else
        snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

static enum invar_status load_base(struct cfg_ctx *c, const char *from, struct cfg_entry *b,
                                   struct chain *ch, struct cfg_node **root)
{
    struct cfg_node *v = b->val;
    if (v->kind != CFG_SCALAR || !*v->text)
        return cfg_fail(c, &v->pos, "base", "expected a file name");
    char dir[PATH_MAX], joined[PATH_MAX * 2];
    dir_of(from, dir, sizeof dir);
    if (v->text[0] == '/')
        snprintf(joined, sizeof joined, "%s", v->text);
    else
        snprintf(joined, sizeof joined, "%s/%s", dir, v->text);
    char *real = realpath(joined, NULL);
    if (!real) {
        cfg_fail(c, &v->pos, "base", "cannot open `%s`: %s", joined, strerror(errno));
        return INVAR_ERR_IO;
    }
    for (int i = 0; i < ch->n; i++) {
        if (ch->real[i] && strcmp(ch->real[i], real) == 0) {
            free(real);
            return cfg_fail(c, &v->pos, "base", "`%s` includes `%s` again (a cycle of base files)",
                            from, ch->files[i]);
        }
    }
    if (ch->n >= MAX_BASE_CHAIN) {
        free(real);
        return cfg_fail(c, &v->pos, "base", "more than %d base files in a chain", MAX_BASE_CHAIN);
    }
    const char *name = cfg_intern(c, joined);
    if (!name) {
        free(real);
        return fail_nomem(c);
    }
    char *text;
    size_t n;
    enum invar_status st = read_file(c, real, &text, &n);
    if (st != INVAR_OK) {
        free(real);
        invar_error_prefix(c->err, "%s:%d:%d: base", v->pos.file, v->pos.line, v->pos.col);
        return st;
    }
    ch->files[ch->n] = name;
    ch->real[ch->n++] = real;
    st = load_doc(c, name, text, n, ch, root);
    free(text);
    return st;
}

static enum invar_status load_doc(struct cfg_ctx *c, const char *file, const char *text, size_t n,
                                  struct chain *ch, struct cfg_node **root)
{
    struct cfg_node *tree;
    enum invar_status st = cfg_parse(c, file, text, n, NULL, &tree);
    if (st != INVAR_OK)
        return st;
    struct cfg_pos first = {file, 1, 1, NULL};
    if (!tree || (tree->kind == CFG_SCALAR && !tree->quoted && !*tree->text)) {
        cfg_node_free(tree);
        return cfg_fail(c, &first, NULL,
                        "empty file (an experiment needs at least `data`, "
                        "`encoder` and `objective`)");
    }
    if (tree->kind != CFG_MAP) {
        st = cfg_fail(c, &tree->pos, NULL,
                      "an experiment is a map of sections (`data:`, "
                      "`encoder:`, ...), not a %s",
                      tree->kind == CFG_SEQ ? "list" : "scalar");
        cfg_node_free(tree);
        return st;
    }
    for (size_t i = 0; i < tree->n; i++) {
        if (strcmp(tree->items[i].key, "base") != 0)
            continue;
        struct cfg_node *parent;
        st = load_base(c, file, &tree->items[i], ch, &parent);
        if (st != INVAR_OK) {
            cfg_node_free(tree);
            return st;
        }
        cfg_map_remove(tree, i);
        int oom = 0;
        deep_merge(parent, tree, &oom);
        cfg_node_free(tree);
        tree = parent;
        if (oom) {
            cfg_node_free(tree);
            return fail_nomem(c);
        }
        break;
    }
    *root = tree;
    return INVAR_OK;
}

static void chain_free(struct chain *ch)
{
    for (int i = 0; i < ch->n; i++)
        free(ch->real[i]);
}

enum invar_status cfg_load_file(struct cfg_ctx *c, const char *path, struct cfg_node **root)
{
    *root = NULL;
    const char *name = cfg_intern(c, path);
    if (!name)
        return fail_nomem(c);
    char *text;
    size_t n;
    enum invar_status st = read_file(c, path, &text, &n);
    if (st != INVAR_OK)
        return st;
    struct chain ch = {.n = 1};
    ch.files[0] = name;
    ch.real[0] = realpath(path, NULL);
    st = load_doc(c, name, text, n, &ch, root);
    chain_free(&ch);
    free(text);
    return st;
}

enum invar_status cfg_load_text(struct cfg_ctx *c, const char *name, const char *text,
                                struct cfg_node **root)
{
    *root = NULL;
    const char *file = cfg_intern(c, name);
    if (!file)
        return fail_nomem(c);
    struct chain ch = {.n = 1};
    ch.files[0] = file;
    ch.real[0] = realpath(name, NULL); /* usually NULL: the text need not be a file */
    enum invar_status st = load_doc(c, file, text, strlen(text), &ch, root);
    chain_free(&ch);
    return st;
}

/* ---- overrides ---------------------------------------------------------------------------- */

struct segment {
    char name[128];
    long index[8];
    int n_index;
};

static int parse_key_path(const char *k, size_t len, struct segment *segs, int max)
{
    int n = 0;
    size_t i = 0;
    while (i < len) {
        if (n == max)
            return -1;
        struct segment *s = &segs[n++];
        size_t start = i;
        while (i < len && k[i] != '.' && k[i] != '[')
            i++;
        if (i == start || i - start >= sizeof s->name)
            return -1;
        memcpy(s->name, k + start, i - start);
        s->name[i - start] = '\0';
        s->n_index = 0;
        while (i < len && k[i] == '[') {
            char *end;
            long v = strtol(k + i + 1, &end, 10);
            if (end == k + i + 1 || *end != ']' || v < 0 || s->n_index == 8)
                return -1;
            s->index[s->n_index++] = v;
            i = (size_t)(end - k) + 1;
        }
        if (i < len) {
            if (k[i] != '.' || i + 1 == len)
                return -1;
            i++;
        }
    }
    return n;
}

enum invar_status cfg_apply_override(struct cfg_ctx *c, struct cfg_node *root, const char *ov)
{
    const char *ovi = cfg_intern(c, ov);
    if (!ovi)
        return fail_nomem(c);
    struct cfg_pos pos = {"<command line>", 0, 0, ovi};
    const char *eq = strchr(ov, '=');
    if (!eq)
        return cfg_fail(c, &pos, NULL, "expected KEY=VALUE (like train.epochs=10)");
    const char *value = eq + 1;
    struct cfg_node *val = NULL;
    if (value[0] && strchr("[{\"'", value[0])) {
        enum invar_status st = cfg_parse(c, "<command line>", value, strlen(value), ovi, &val);
        if (st != INVAR_OK)
            return st;
        if (!val)
            return cfg_fail(c, &pos, NULL, "missing value");
    } else {
        /* A plain value is taken whole, so `data.path=/a: b` needs no quoting. */
        val = cfg_node_new(c, CFG_SCALAR, &pos);
        if (!val || !(val->text = strdup(value))) {
            cfg_node_free(val);
            return fail_nomem(c);
        }
    }
    return cfg_set_path(c, root, ov, (size_t)(eq - ov), val, &pos);
}

enum invar_status cfg_set_path(struct cfg_ctx *c, struct cfg_node *root, const char *keypath,
                               size_t keylen, struct cfg_node *val, const struct cfg_pos *kpos)
{
    struct cfg_pos pos = *kpos;
    struct segment segs[16];
    int n_seg = parse_key_path(keypath, keylen, segs, 16);
    if (n_seg <= 0) {
        cfg_node_free(val);
        return cfg_fail(c, &pos, NULL, "`%.*s` is not a key path (like augment[1].degrees)",
                        (int)keylen, keypath);
    }
    char path[512] = "";
    struct cfg_node *cur = root;
    for (int s = 0; s < n_seg; s++) {
        if (cur->kind != CFG_MAP) {
            cfg_node_free(val);
            return cfg_fail(c, &pos, path, "not a map, so it has no key `%s`", segs[s].name);
        }
        cfg_path_join(path, sizeof path, path, segs[s].name, 0);
        struct cfg_entry *e = cfg_map_find(cur, segs[s].name);
        int last = s == n_seg - 1 && segs[s].n_index == 0;
        if (last && e) {
            cfg_node_free(e->val);
            e->val = val;
            e->kpos = pos;
            return INVAR_OK;
        }
        if (!e) {
            if (segs[s].n_index > 0) {
                cfg_node_free(val);
                return cfg_fail(c, &pos, path, "no list to index");
            }
            struct cfg_node *child = last ? val : cfg_node_new(c, CFG_MAP, &pos);
            char *key = strdup(segs[s].name);
            if (!child || !key || cfg_node_push(cur, key, &pos, child) != INVAR_OK) {
                free(key);
                if (child != val)
                    cfg_node_free(child);
                cfg_node_free(val);
                return fail_nomem(c);
            }
            if (last)
                return INVAR_OK;
            cur = child;
            continue;
        }
        cur = e->val;
        for (int k = 0; k < segs[s].n_index; k++) {
            long idx = segs[s].index[k];
            if (cur->kind != CFG_SEQ) {
                cfg_node_free(val);
                return cfg_fail(c, &pos, path, "not a list, so it has no item [%ld]", idx);
            }
            int final = s == n_seg - 1 && k == segs[s].n_index - 1;
            if (final && (size_t)idx == cur->n) { /* one past the end appends */
                if (cfg_node_push(cur, NULL, &pos, val) != INVAR_OK) {
                    cfg_node_free(val);
                    return fail_nomem(c);
                }
                return INVAR_OK;
            }
            if ((size_t)idx >= cur->n) {
                cfg_node_free(val);
                if (final)
                    return cfg_fail(c, &pos, path,
                                    "index [%ld] is out of range (the list has %zu items; "
                                    "[%zu] appends one)",
                                    idx, cur->n, cur->n);
                return cfg_fail(c, &pos, path,
                                "index [%ld] is out of range (the list has %zu items)", idx,
                                cur->n);
            }
            cfg_path_join(path, sizeof path, path, NULL, idx);
            if (final) {
                cfg_node_free(cur->items[idx].val);
                cur->items[idx].val = val;
                cur->items[idx].kpos = pos;
                return INVAR_OK;
            }
            cur = cur->items[idx].val;
        }
    }
    cfg_node_free(val);
    return INVAR_ERR_INTERNAL;
}
