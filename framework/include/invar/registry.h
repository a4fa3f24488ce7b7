/* invar/registry.h — finding and loading plugins, and typing values through parameter tables.
 *
 *     struct invar_registry *reg;
 *     struct invar_error err = {0};
 *     if (invar_registry_create(&reg) != INVAR_OK) ...
 *     invar_registry_scan(reg, opt_plugin_path, &err);       // refusals are recorded, not fatal
 *     for (size_t i = 0; i < invar_registry_refusal_count(reg); i++)
 *         fprintf(stderr, "invar: %s\n", invar_registry_refusal_at(reg, i)->msg);
 *
 *     const struct invar_registry_entry *e = invar_registry_find(reg, INVAR_KIND_OBJECTIVE, name);
 *     if (!e) {
 *         const char *near = invar_registry_suggest(reg, INVAR_KIND_OBJECTIVE, name);
 *         ...  // "did you mean `moco`?"
 *     }
 *     void *cfg;
 *     invar_plugin_config_create(e->desc, &cfg, &err);         // every default filled in
 *     const struct invar_param_spec *s = invar_param_find(e->desc->params, "momentum");
 *     invar_param_set(s, cfg, "0.99", 0, &err);                // typed, range-checked
 *     char buf[INVAR_PARAM_TEXT_MAX];
 *     invar_param_format(s, cfg, buf, sizeof buf);             // "0.99", canonical
 *     ...
 *     invar_plugin_config_destroy(cfg);
 *     invar_registry_destroy(reg);                             // dlcloses every plugin
 *
 * Search order of invar_registry_scan: the plugin_path argument (--plugin-path, colon-separated),
 * $INVAR_PLUGIN_PATH (colon-separated), the build tree's plugins directory and its kind
 * subdirectories ($INVAR_BUILD_ROOT/plugins when that variable is set, else the build tree this
 * libinvar was configured in, but only when the running program lives inside it), then the
 * installed pluginsdir unless $INVAR_NO_INSTALLED_PLUGINS is set to anything but "0". A name
 * found in an earlier directory shadows the same name in a later one (recorded, see
 * invar_registry_shadowed_at); the same name twice within one directory is a refusal. Within
 * a directory files are loaded in name order.
 *
 * Ownership: every pointer returned by a registry function (entries, descriptors, paths,
 * messages, suggestions) stays valid until invar_registry_destroy. Nothing here prints.
 * Threads: loading and scanning must not race with anything; lookups may run concurrently.
 * Numbers are parsed and printed with the C library in the "C" numeric locale, which is the
 * default unless the program calls setlocale(LC_NUMERIC, ...).
 * Tools that load plugins must link the shared libinvar, the one the plugins link against.
 */
#ifndef INVAR_REGISTRY_H
#define INVAR_REGISTRY_H

#include <stdio.h>

#include "core.h"
#include "plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Enough for any formatted value: a STRING holds at most INVAR_STR_MAX - 1 bytes. */
#define INVAR_PARAM_TEXT_MAX (INVAR_STR_MAX + 64)

/* ---- kinds ------------------------------------------------------------------------------ */

/* "dataset", "augment", "encoder", "objective"; "unknown" otherwise. */
INVAR_API const char *invar_plugin_kind_name(uint32_t kind);
/* Accepts the singular and the plural ("augment", "datasets"); 0 when unknown. */
INVAR_API uint32_t invar_plugin_kind_parse(const char *name);

/* ---- the registry ----------------------------------------------------------------------- */

struct invar_registry;

struct invar_registry_entry {
    const struct invar_plugin *desc;
    const char *path; /* the shared object it came from, as found */
};

/* A plugin that loaded but lost to the same name in an earlier search directory. */
struct invar_registry_shadowed {
    uint32_t kind;
    const char *name;
    const char *version;
    const char *path;    /* the shadowed file */
    const char *by_path; /* the file that won */
};

/* A file that was refused during a scan; msg names the file (and both versions for ABI). */
struct invar_registry_refusal {
    const char *path;
    enum invar_status status;
    const char *msg;
};

INVAR_API enum invar_status invar_registry_create(struct invar_registry **out);
/* dlcloses every loaded plugin; takes NULL. */
INVAR_API void invar_registry_destroy(struct invar_registry *reg);

/* Loads one shared object and registers every descriptor it exports. The file is refused as
 * a whole (and dlclosed) when anything is wrong: dlopen fails, no entry symbol, a wrong ABI
 * version, a short descriptor, an unknown kind, a bad name, a name already registered (the
 * message names both files), a missing required vtable function, a malformed parameter
 * table, or a failing init(). Returns INVAR_ERR_PLUGIN with the reason in err. Loading a file
 * that is already loaded (same real path) is a no-op. */
INVAR_API enum invar_status invar_registry_load_file(struct invar_registry *reg, const char *path,
                                                     struct invar_error *err);

/* Loads every "*.so" of the search directories (see the top of this file); plugin_path may be
 * NULL. Refusals are recorded, not returned: only running out of memory fails a scan. */
INVAR_API enum invar_status invar_registry_scan(struct invar_registry *reg, const char *plugin_path,
                                                struct invar_error *err);

/* Calls fn once per search directory, in search order, with recursive = 1 for the build
 * tree's plugins directory (searched one level down). Directories need not exist. For
 * `invar plugins --verbose` and tests. */
typedef void (*invar_registry_dir_fn)(void *user, const char *dir, int recursive);
INVAR_API void invar_registry_search_dirs(const char *plugin_path, invar_registry_dir_fn fn,
                                          void *user);

/* Registered plugins in load order. */
INVAR_API size_t invar_registry_count(const struct invar_registry *reg);
INVAR_API const struct invar_registry_entry *invar_registry_at(const struct invar_registry *reg,
                                                               size_t i);
/* kind 0 matches any kind; NULL when not found. */
INVAR_API const struct invar_registry_entry *invar_registry_find(const struct invar_registry *reg,
                                                                 uint32_t kind, const char *name);
/* The registered name (of that kind, 0 = any) nearest to name by edit distance, or NULL when
 * nothing is close enough to be a plausible typo. */
INVAR_API const char *invar_registry_suggest(const struct invar_registry *reg, uint32_t kind,
                                             const char *name);

INVAR_API size_t invar_registry_refusal_count(const struct invar_registry *reg);
INVAR_API const struct invar_registry_refusal *
invar_registry_refusal_at(const struct invar_registry *reg, size_t i);
INVAR_API size_t invar_registry_shadowed_count(const struct invar_registry *reg);
INVAR_API const struct invar_registry_shadowed *
invar_registry_shadowed_at(const struct invar_registry *reg, size_t i);

/* ---- parameter tables -------------------------------------------------------------------- */

/* "bool", "int", "float", "string", "enum", "range"; "unknown" otherwise. */
INVAR_API const char *invar_param_type_name(enum invar_param_type type);
/* Entries before INVAR_PARAM_END; 0 for a NULL table. */
INVAR_API size_t invar_param_count(const struct invar_param_spec *table);
/* The entry named key, or NULL. */
INVAR_API const struct invar_param_spec *invar_param_find(const struct invar_param_spec *table,
                                                          const char *key);
/* The key nearest to key by edit distance ("epchs" -> "epochs"), or NULL when none is close. */
INVAR_API const char *invar_param_suggest(const struct invar_param_spec *table, const char *key);

/* Checks a table against its config struct: keys ([a-z0-9_], unique), types, bounds
 * (min <= max), ENUM allowed lists, offset + size within config_size, and that every default
 * parses for its own type and range. The loader runs this on every plugin. */
INVAR_API enum invar_status invar_param_check_table(const struct invar_param_spec *table,
                                                    size_t config_size, struct invar_error *err);

/* Writes every default of table into config (a zeroed config struct of the table's plugin). */
INVAR_API enum invar_status invar_param_defaults(const struct invar_param_spec *table, void *config,
                                                 struct invar_error *err);

/* Parses one scalar as YAML would and stores it in spec's field, with type and range
 * checks. Messages begin with "KEY: " (the spec's key) so a caller can prepend a position
 * and a key path. quoted != 0 means the text was quoted (a YAML string): an error for numeric, bool
 * and range fields. BOOL: true/false. INT: decimal integer. FLOAT: integer or decimal, with
 * an optional exponent (1e-4 is a float). STRING: any text shorter than INVAR_STR_MAX.
 * ENUM: one of the allowed words. RANGE: "[lo, hi]". Messages name the key, the value and
 * what is allowed. On error the field is unchanged. */
INVAR_API enum invar_status invar_param_set(const struct invar_param_spec *spec, void *config,
                                            const char *text, int quoted, struct invar_error *err);
/* RANGE from its two elements, as a YAML reader sees a two-element sequence. */
INVAR_API enum invar_status invar_param_set_range(const struct invar_param_spec *spec, void *config,
                                                  const char *lo, int lo_quoted, const char *hi,
                                                  int hi_quoted, struct invar_error *err);

/* Writes the field's value canonically into buf (always NUL-terminated when n > 0) and
 * returns the length it needs, as snprintf does. Floats print in the shortest form that
 * reads back to the same double, so format -> set -> format is the identity and equal values
 * always print alike. BOOL "true"/"false", ENUM its word, RANGE "[lo, hi]", STRING as is. */
INVAR_API size_t invar_param_format(const struct invar_param_spec *spec, const void *config,
                                    char *buf, size_t n);

/* ---- plugin configs ---------------------------------------------------------------------- */

/* A heap config struct of desc->config_size bytes with every default filled in. */
INVAR_API enum invar_status invar_plugin_config_create(const struct invar_plugin *desc, void **out,
                                                       struct invar_error *err);
INVAR_API void invar_plugin_config_destroy(void *config);
/* Runs the plugin's own cross-field check (desc->check) when it has one. */
INVAR_API enum invar_status invar_plugin_config_check(const struct invar_plugin *desc,
                                                      const void *config, struct invar_error *err);

/* Writes a human description of the plugin to out: kind, name, version, summary, then one
 * line per parameter with type, default, range or allowed values, and doc. desc must be one
 * the registry accepted (its table checked). */
INVAR_API enum invar_status invar_plugin_describe(const struct invar_plugin *desc, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
