/* Internals of the config module: a small YAML tree with positions, shared by the parser
 * (tree.c), the resolver (resolve.c) and the hash (sha256.c). Never installed. */
#ifndef INVAR_CONFIG_INTERNAL_H
#define INVAR_CONFIG_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include "invar/config.h"

/* Where a node came from: a file position, or an override (file "<command line>"). */
struct cfg_pos {
    const char *file;     /* interned in the context */
    int line, col;        /* 1-based; 0 for overrides */
    const char *override; /* the whole "key=value" when the node came from one, else NULL */
};

enum cfg_kind { CFG_SCALAR, CFG_MAP, CFG_SEQ };

struct cfg_node;

struct cfg_entry {
    char *key;           /* NULL in sequences */
    struct cfg_pos kpos; /* the key's position (the item's in sequences) */
    struct cfg_node *val;
};

struct cfg_node {
    enum cfg_kind kind;
    struct cfg_pos pos;
    char *text;              /* scalars: the value, never NULL */
    int quoted;              /* scalars: quoted or tagged !!str, so never typed */
    struct cfg_entry *items; /* maps (in insertion order) and sequences */
    size_t n, cap;
};

/* Owns interned strings and counts nodes against INVAR_CONFIG_MAX_NODES. */
struct cfg_ctx {
    char **strs;
    size_t n_strs, cap_strs;
    struct cfg_node **graveyard; /* nodes detached while anchors may still point at them */
    size_t n_grave, cap_grave;
    size_t nodes;
    int too_deep; /* a copy was refused for nesting past the bound */
    struct invar_error *err;
};

void cfg_ctx_init(struct cfg_ctx *c, struct invar_error *err);
void cfg_ctx_deinit(struct cfg_ctx *c);
const char *cfg_intern(struct cfg_ctx *c, const char *s);

/* Writes "where: path: what" into c->err and returns INVAR_ERR_CONFIG (or st). */
enum invar_status cfg_fail(struct cfg_ctx *c, const struct cfg_pos *pos, const char *path,
                           const char *fmt, ...) INVAR_PRINTF(4, 5);
enum invar_status cfg_vfail(struct cfg_ctx *c, enum invar_status st, const struct cfg_pos *pos,
                            const char *path, const char *fmt, va_list ap);

struct cfg_node *cfg_node_new(struct cfg_ctx *c, enum cfg_kind kind, const struct cfg_pos *pos);
void cfg_node_free(struct cfg_node *n);
struct cfg_node *cfg_node_copy(struct cfg_ctx *c, const struct cfg_node *n, int depth);
enum invar_status cfg_node_push(struct cfg_node *n, char *key, const struct cfg_pos *kpos,
                                struct cfg_node *val);
struct cfg_entry *cfg_map_find(const struct cfg_node *map, const char *key);
void cfg_map_remove(struct cfg_node *map, size_t i); /* frees key and value */

/* Parses one YAML document (file name used in messages) into *root; NULL root never
 * returned on success. text must be NUL-terminated, n its length. */
enum invar_status cfg_parse(struct cfg_ctx *c, const char *file, const char *text, size_t n,
                            const char *override, struct cfg_node **root);
/* Reads path, follows `base:` chains (relative to each file), deep-merges. */
enum invar_status cfg_load_file(struct cfg_ctx *c, const char *path, struct cfg_node **root);
enum invar_status cfg_load_text(struct cfg_ctx *c, const char *name, const char *text,
                                struct cfg_node **root);
/* Applies one "key.path[i].x=value" override to root (a map). */
enum invar_status cfg_apply_override(struct cfg_ctx *c, struct cfg_node *root, const char *ov);
/* Puts val (owned) at a key path inside root, creating maps on the way; the new keys get
 * position kpos. */
enum invar_status cfg_set_path(struct cfg_ctx *c, struct cfg_node *root, const char *keypath,
                               size_t keylen, struct cfg_node *val, const struct cfg_pos *kpos);

/* Appends "key" or "[i]" to a dotted path buffer of size cap. */
void cfg_path_join(char *out, size_t cap, const char *path, const char *key, long index);

/* Runs the registry's table checks over the framework's own sections (tests). */
enum invar_status cfg_check_framework_tables(struct invar_error *err);

/* Edit distance for suggestions. */
size_t cfg_edit_distance(const char *a, const char *b);

/* A growable text buffer. */
struct cfg_buf {
    char *s;
    size_t n, cap;
    int oom;
};
void cfg_buf_puts(struct cfg_buf *b, const char *s);
void cfg_buf_printf(struct cfg_buf *b, const char *fmt, ...) INVAR_PRINTF(2, 3);

#endif
