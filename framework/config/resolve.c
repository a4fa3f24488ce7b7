/* Resolution: the merged YAML tree -> typed sections through parameter tables, the plugins'
 * configs, the canonical text and its hash, the flattened (key, value) pairs, the sweep. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "invar/registry.h"

/* ---- the framework's own parameter tables --------------------------------------------- */

struct top_section {
    char name[INVAR_STR_MAX];
    int64_t seed;
};

static const struct invar_param_spec top_params[] = {
    INVAR_PARAM_STRING(struct top_section, name, "", "run name; default: the file's stem"),
    INVAR_PARAM_INT(struct top_section, seed, "0", 0, 9007199254740992.0, "random seed"),
    INVAR_PARAM_END,
};

static const struct invar_param_spec data_params[] = {
    INVAR_PARAM_INT(struct invar_data_section, limit, "0", 0, 1e12, "first N samples; 0 = all"),
    INVAR_PARAM_INT(struct invar_data_section, holdout, "0", 0, 1e12,
                    "keep the last N training samples (after limit) out of training and evaluate "
                    "on them instead of the test split; 0 = the test split"),
    INVAR_PARAM_BOOL(struct invar_data_section, normalize, "true",
                     "standardise by the training set's mean and std"),
    INVAR_PARAM_END,
};

static const struct invar_param_spec augment_params[] = {
    INVAR_PARAM_FLOAT(struct invar_plugin_use, p, "1", 0, 1, "probability of applying it"),
    INVAR_PARAM_END,
};

static const struct invar_param_spec optim_params[] = {
    INVAR_PARAM_ENUM(struct invar_optim_section, name, "sgd", "sgd|lars|adamw", "optimizer"),
    INVAR_PARAM_FLOAT(struct invar_optim_section, lr, "0.03", 0, 1e3, "base learning rate"),
    INVAR_PARAM_FLOAT(struct invar_optim_section, momentum, "0.9", 0, 1, "SGD/LARS momentum"),
    INVAR_PARAM_BOOL(struct invar_optim_section, nesterov, "false", "Nesterov momentum (SGD)"),
    INVAR_PARAM_FLOAT(struct invar_optim_section, weight_decay, "0.0005", 0, 1, "weight decay"),
    INVAR_PARAM_FLOAT(struct invar_optim_section, lars_eta, "0.001", 0, 1,
                      "LARS trust coefficient"),
    INVAR_PARAM_RANGE(struct invar_optim_section, betas, "[0.9, 0.999]", 0, 1, "AdamW betas"),
    INVAR_PARAM_FLOAT(struct invar_optim_section, eps, "1e-8", 0, 1, "AdamW epsilon"),
    INVAR_PARAM_ENUM(struct invar_optim_section, schedule, "cosine", "constant|step|cosine",
                     "learning-rate schedule after warm-up"),
    INVAR_PARAM_INT(struct invar_optim_section, warmup_epochs, "0", 0, 1e6, "linear warm-up"),
    INVAR_PARAM_INT(struct invar_optim_section, step_epochs, "30", 1, 1e6,
                    "step: multiply by step_gamma every N epochs"),
    INVAR_PARAM_FLOAT(struct invar_optim_section, step_gamma, "0.1", 0, 1, "step: factor"),
    INVAR_PARAM_FLOAT(struct invar_optim_section, final_lr, "0", 0, 1e3, "cosine: last value"),
    INVAR_PARAM_FLOAT(struct invar_optim_section, clip_norm, "0", 0, 1e9,
                      "gradients scaled down to this global L2 norm when above it; 0 = never"),
    INVAR_PARAM_END,
};

static const struct invar_param_spec train_params[] = {
    INVAR_PARAM_INT(struct invar_train_section, epochs, "20", 1, 1e6, "training epochs"),
    INVAR_PARAM_INT(struct invar_train_section, batch_size, "256", 1, 1 << 20, "batch size"),
    INVAR_PARAM_INT(struct invar_train_section, threads, "2", 1, 1024, "worker threads"),
    INVAR_PARAM_INT(struct invar_train_section, views, "2", 1, INVAR_CONFIG_MAX_VIEWS,
                    "views per sample (with `augment`)"),
    INVAR_PARAM_INT(struct invar_train_section, checkpoint_every, "0", 0, 1e6,
                    "epochs between checkpoints; 0 = at the end only"),
    INVAR_PARAM_INT(struct invar_train_section, log_every, "50", 0, 1e9,
                    "steps between step_loss rows; 0 = none"),
    INVAR_PARAM_END,
};

struct knn_section {
    int64_t k;
    double t;
    int64_t every;
    int features;
    int64_t size;
    int64_t precise_bn;
};
struct linear_section {
    int64_t epochs;
    double lr;
    int64_t batch_size;
    double weight_decay;
    int features;
    int64_t size;
    int64_t precise_bn;
};

/* What an evaluation classifies: the encoder's output, or the representation under its
 * projection head (enum invar_eval_features). */
#define FEATURES_ALLOWED "head|backbone"
/* The side (square) the un-augmented images are resized to before they are embedded: views
 * cropped and resized smaller than the images show objects smaller than the stored images do. */
#define SIZE_HELP                                                                           \
    "side (square) the un-augmented images are resized to (bilinear) before they are "     \
    "embedded; 0 = as stored"
/* Precise batch-norm (Wu & Johnson 2021): statistics of the images as this evaluation embeds
 * them, in place of the running ones that training's augmented views left. */
#define PRECISE_BN_HELP                                                                     \
    "training images (unaugmented, at this evaluation's size) whose batch statistics "      \
    "replace the encoder's running batch-norm statistics for this evaluation; 0 = the "     \
    "running ones"

static const struct invar_param_spec knn_params[] = {
    INVAR_PARAM_INT(struct knn_section, k, "200", 1, 1e6, "neighbours"),
    INVAR_PARAM_FLOAT(struct knn_section, t, "0.07", 1e-6, 1e3, "temperature of exp(s/t)"),
    INVAR_PARAM_INT(struct knn_section, every, "0", 0, 1e6, "epochs between evaluations; 0 = end"),
    INVAR_PARAM_ENUM(struct knn_section, features, "head", FEATURES_ALLOWED,
                     "classify the encoder's output (head, Wu et al.'s embedding) or the "
                     "representation under the projection head (backbone)"),
    INVAR_PARAM_INT(struct knn_section, size, "0", 0, 4096, SIZE_HELP),
    INVAR_PARAM_INT(struct knn_section, precise_bn, "0", 0, 1e9, PRECISE_BN_HELP),
    INVAR_PARAM_END,
};

static const struct invar_param_spec linear_params[] = {
    INVAR_PARAM_INT(struct linear_section, epochs, "20", 0, 1e4, "probe epochs; 0 = no probe"),
    INVAR_PARAM_FLOAT(struct linear_section, lr, "0.1", 0, 1e3, "probe learning rate"),
    INVAR_PARAM_INT(struct linear_section, batch_size, "256", 1, 1 << 20, "probe batch size"),
    INVAR_PARAM_FLOAT(struct linear_section, weight_decay, "0", 0, 1, "probe weight decay"),
    INVAR_PARAM_ENUM(struct linear_section, features, "backbone", FEATURES_ALLOWED,
                     "train the probe on the representation under the projection head "
                     "(backbone, the MoCo and SimCLR protocol) or on the encoder's output (head)"),
    INVAR_PARAM_INT(struct linear_section, size, "0", 0, 4096, SIZE_HELP),
    INVAR_PARAM_INT(struct linear_section, precise_bn, "0", 0, 1e9, PRECISE_BN_HELP),
    INVAR_PARAM_END,
};

static const char *const top_keys[] = {"name",      "seed",  "data",  "augment", "views", "encoder",
                                       "objective", "optim", "train", "eval",    "sweep", NULL};

enum invar_status cfg_check_framework_tables(struct invar_error *err)
{
    static const struct {
        const struct invar_param_spec *spec;
        size_t size;
        const char *name;
    } tables[] = {
        {top_params, sizeof(struct top_section), "experiment"},
        {data_params, sizeof(struct invar_data_section), "data"},
        {augment_params, sizeof(struct invar_plugin_use), "augment"},
        {optim_params, sizeof(struct invar_optim_section), "optim"},
        {train_params, sizeof(struct invar_train_section), "train"},
        {knn_params, sizeof(struct knn_section), "eval.knn"},
        {linear_params, sizeof(struct linear_section), "eval.linear"},
    };
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        enum invar_status st = invar_param_check_table(tables[i].spec, tables[i].size, err);
        if (st != INVAR_OK) {
            invar_error_prefix(err, "%s", tables[i].name);
            return st;
        }
    }
    return INVAR_OK;
}

/* ---- the experiment ----------------------------------------------------------------------- */

struct invar_experiment {
    struct cfg_ctx ctx;
    char file_stem[INVAR_STR_MAX];
    struct top_section top;
    struct invar_data_section data;
    struct invar_plugin_use encoder, objective;
    struct invar_plugin_use *augs; /* every view's items, back to back */
    size_t n_augs;
    struct invar_view views[INVAR_CONFIG_MAX_VIEWS];
    size_t n_views;
    struct invar_optim_section optim;
    struct invar_train_section train;
    struct invar_eval_section eval;
    void **owned; /* plugin configs */
    size_t n_owned, cap_owned;

    struct cfg_node *canon; /* resolved tree with canonical scalars */
    char *canonical;
    char hash[65];
    char **flat; /* key, value, key, value, ... */
    size_t n_flat, cap_flat;

    struct invar_sweep sweep;
    struct invar_sweep_axis *axes; /* grid then zip */
    char **sweep_strs;
    size_t n_sweep_strs, cap_sweep_strs;
    int64_t *seeds;
};

struct res {
    struct invar_experiment *e;
    struct cfg_ctx *c;
    const struct invar_plugin *const *plugins;
};

struct table {
    const struct invar_param_spec *spec;
    void *base;
};

static enum invar_status nomem(struct res *r)
{
    return invar_error_set(r->c->err, INVAR_ERR_NOMEM,
                           "out of memory while resolving an "
                           "experiment");
}

static const char *suggest(const char *word, const char *const *cands, size_t n)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t d = cfg_edit_distance(word, cands[i]);
        if (d < best_d) {
            best_d = d;
            best = cands[i];
        }
    }
    size_t len = strlen(word);
    if (best && (best_d <= 2 || best_d <= len / 3) && best_d < len)
        return best;
    /* A shortened or lengthened name ("optimizer" for "optim", "temp" for "temperature"). */
    for (size_t i = 0; len >= 3 && i < n; i++) {
        size_t lc = strlen(cands[i]);
        if (lc >= 3 && strncmp(word, cands[i], len < lc ? len : lc) == 0)
            return cands[i];
    }
    return NULL;
}

/* "did you mean `x`?" or the list of valid names. */
static void hint(char *out, size_t cap, const char *word, const char *const *cands, size_t n)
{
    const char *s = suggest(word, cands, n);
    if (s) {
        snprintf(out, cap, ", did you mean `%s`?", s);
        return;
    }
    size_t k = (size_t)snprintf(out, cap, " (valid: ");
    for (size_t i = 0; i < n && k < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%s", i ? ", " : "", cands[i]);
    if (k < cap)
        snprintf(out + k, cap - k, ")");
}

static const char *kind_name(unsigned kind)
{
    return invar_plugin_kind_name(kind);
}

static const char *a_kind(unsigned kind)
{
    static const char *const names[] = {"a ?", "a dataset", "an augment", "an encoder",
                                        "an objective"};
    return kind <= INVAR_KIND_OBJECTIVE ? names[kind] : "a ?";
}

static const char *node_kind_name(const struct cfg_node *n)
{
    return n->kind == CFG_MAP ? "a map" : n->kind == CFG_SEQ ? "a list" : "a scalar";
}

/* ---- typed values ------------------------------------------------------------------------- */

/* The registry types a value from its text and quoting; here we add where it came from. Its
 * messages open with "key: ", which the key path in front already says. */
static enum invar_status param_fail(struct res *r, const struct invar_param_spec *sp,
                                    const struct cfg_node *n, const char *path,
                                    const struct invar_error *perr)
{
    const char *msg = perr->msg;
    size_t k = strlen(sp->key);
    if (strncmp(msg, sp->key, k) == 0 && msg[k] == ':' && msg[k + 1] == ' ')
        msg += k + 2;
    return cfg_fail(r->c, &n->pos, path, "%s", msg);
}

static enum invar_status set_param(struct res *r, const struct invar_param_spec *sp, void *base,
                                   const struct cfg_node *n, const char *path)
{
    struct invar_error perr = {{0}};
    enum invar_status st;
    if (n->kind == CFG_SCALAR) {
        st = invar_param_set(sp, base, n->text, n->quoted, &perr);
    } else if (sp->type == INVAR_TYPE_RANGE && n->kind == CFG_SEQ && n->n == 2 &&
               n->items[0].val->kind == CFG_SCALAR && n->items[1].val->kind == CFG_SCALAR) {
        const struct cfg_node *lo = n->items[0].val, *hi = n->items[1].val;
        st = invar_param_set_range(sp, base, lo->text, lo->quoted, hi->text, hi->quoted, &perr);
    } else {
        static const char *const expected[] = {
            [INVAR_TYPE_BOOL] = "true or false",
            [INVAR_TYPE_INT] = "an integer",
            [INVAR_TYPE_FLOAT] = "a number",
            [INVAR_TYPE_STRING] = "a string",
            [INVAR_TYPE_ENUM] = "one word",
            [INVAR_TYPE_RANGE] = "a list of two numbers [lo, hi]",
        };
        const char *want = (unsigned)sp->type <= INVAR_TYPE_RANGE && expected[sp->type]
                               ? expected[sp->type]
                               : "a value";
        if (sp->type == INVAR_TYPE_ENUM)
            return cfg_fail(r->c, &n->pos, path, "expected one of %s, got %s", sp->allowed,
                            node_kind_name(n));
        return cfg_fail(r->c, &n->pos, path, "expected %s, got %s", want, node_kind_name(n));
    }
    return st == INVAR_OK ? INVAR_OK : param_fail(r, sp, n, path, &perr);
}

static struct cfg_node *scalar_node(struct res *r, const char *text, int quoted)
{
    static const struct cfg_pos none = {"<resolved>", 0, 0, NULL};
    struct cfg_node *n = calloc(1, sizeof *n);
    if (!n || !(n->text = strdup(text))) {
        free(n);
        return NULL;
    }
    (void)r;
    n->kind = CFG_SCALAR;
    n->pos = none;
    n->quoted = quoted;
    return n;
}

static struct cfg_node *container_node(enum cfg_kind kind)
{
    static const struct cfg_pos none = {"<resolved>", 0, 0, NULL};
    struct cfg_node *n = calloc(1, sizeof *n);
    if (n) {
        n->kind = kind;
        n->pos = none;
    }
    return n;
}

static enum invar_status canon_put(struct res *r, struct cfg_node *map, const char *key,
                                   struct cfg_node *v)
{
    static const struct cfg_pos none = {"<resolved>", 0, 0, NULL};
    char *k = key ? strdup(key) : NULL;
    if (!v || (key && !k) || cfg_node_push(map, k, &none, v) != INVAR_OK) {
        free(k);
        cfg_node_free(v);
        return nomem(r);
    }
    return INVAR_OK;
}

/* Canonical text of a field: floats in their shortest round-trip form, so 1e-3, 0.001 and
 * 1.0e-3 print alike; strings stay quoted so they load back as strings; a range "[lo, hi]"
 * is written as flow text. */
static struct cfg_node *format_param(struct res *r, const struct invar_param_spec *sp,
                                     const void *base)
{
    char buf[INVAR_PARAM_TEXT_MAX];
    invar_param_format(sp, base, buf, sizeof buf);
    return scalar_node(r, buf, sp->type == INVAR_TYPE_STRING);
}

/* Fills the tables' structs from map (defaults first), refuses unknown keys, and appends the
 * resolved values to canon. extra: keys handled by the caller. */
static enum invar_status fill_section(struct res *r, const struct cfg_node *map, const char *path,
                                      const struct table *tabs, int n_tabs,
                                      const char *const *extra, const char *owner,
                                      struct cfg_node *canon)
{
    const char *cands[256];
    size_t n_cands = 0;
    for (size_t i = 0; extra && extra[i] && n_cands < 256; i++)
        cands[n_cands++] = extra[i];
    for (int t = 0; t < n_tabs; t++) {
        struct invar_error perr = {{0}};
        if (tabs[t].spec && invar_param_defaults(tabs[t].spec, tabs[t].base, &perr) != INVAR_OK)
            return invar_error_set(r->c->err, INVAR_ERR_PLUGIN,
                                   "%s: a default does not fit its "
                                   "own parameter table: %s",
                                   owner, perr.msg);
        for (const struct invar_param_spec *sp = tabs[t].spec; sp && sp->key; sp++)
            if (n_cands < 256)
                cands[n_cands++] = sp->key;
    }
    if (map && map->kind != CFG_MAP)
        return cfg_fail(r->c, &map->pos, path, "expected a map, got %s", node_kind_name(map));
    for (size_t i = 0; map && i < map->n; i++) {
        const struct cfg_entry *e = &map->items[i];
        char kpath[600];
        cfg_path_join(kpath, sizeof kpath, path, e->key, 0);
        int handled = 0;
        for (size_t k = 0; extra && extra[k]; k++)
            handled |= strcmp(extra[k], e->key) == 0;
        for (int t = 0; t < n_tabs && !handled; t++) {
            for (const struct invar_param_spec *sp = tabs[t].spec; sp && sp->key; sp++) {
                if (strcmp(sp->key, e->key) == 0) {
                    enum invar_status st = set_param(r, sp, tabs[t].base, e->val, kpath);
                    if (st != INVAR_OK)
                        return st;
                    handled = 1;
                    break;
                }
            }
        }
        if (!handled) {
            char h[700];
            hint(h, sizeof h, e->key, cands, n_cands);
            return cfg_fail(r->c, &e->kpos, kpath, "unknown key `%s`%s", e->key, h);
        }
    }
    for (int t = 0; t < n_tabs; t++) {
        for (const struct invar_param_spec *sp = tabs[t].spec; sp && sp->key; sp++) {
            enum invar_status st = canon_put(r, canon, sp->key, format_param(r, sp, tabs[t].base));
            if (st != INVAR_OK)
                return st;
        }
    }
    return INVAR_OK;
}

static enum invar_status own(struct res *r, void *p)
{
    struct invar_experiment *e = r->e;
    if (e->n_owned == e->cap_owned) {
        size_t cap = e->cap_owned ? 2 * e->cap_owned : 8;
        void **q = realloc(e->owned, cap * sizeof *q);
        if (!q) {
            free(p);
            return nomem(r);
        }
        e->owned = q;
        e->cap_owned = cap;
    }
    e->owned[e->n_owned++] = p;
    return INVAR_OK;
}

/* A plugin section: {plugin: NAME, framework keys..., the plugin's own keys...}. */
static enum invar_status resolve_plugin(struct res *r, const struct cfg_node *map,
                                        const struct cfg_pos *where, const char *path,
                                        unsigned kind, const struct table *fw, int n_fw,
                                        struct invar_plugin_use *use, struct cfg_node *canon)
{
    if (!map)
        return cfg_fail(r->c, where, path,
                        "missing (every experiment names its %s plugin: "
                        "`%s: {plugin: NAME}`)",
                        kind_name(kind), path);
    if (map->kind != CFG_MAP)
        return cfg_fail(r->c, &map->pos, path, "expected a map with `plugin: NAME`, got %s",
                        node_kind_name(map));
    const struct cfg_entry *pe = cfg_map_find(map, "plugin");
    char ppath[600];
    cfg_path_join(ppath, sizeof ppath, path, "plugin", 0);
    if (!pe)
        return cfg_fail(r->c, &map->pos, ppath, "missing: which %s plugin?", kind_name(kind));
    if (pe->val->kind != CFG_SCALAR)
        return cfg_fail(r->c, &pe->val->pos, ppath, "expected a plugin name, got %s",
                        node_kind_name(pe->val));
    const char *name = pe->val->text;
    const struct invar_plugin *plugin = NULL, *other = NULL;
    const char *cands[256];
    size_t n_cands = 0;
    for (size_t i = 0; r->plugins && r->plugins[i]; i++) {
        const struct invar_plugin *pl = r->plugins[i];
        if (pl->kind == kind && n_cands < 256)
            cands[n_cands++] = pl->name;
        if (strcmp(pl->name, name) == 0) {
            if (pl->kind == kind)
                plugin = pl;
            else
                other = pl;
        }
    }
    if (!plugin && other)
        return cfg_fail(r->c, &pe->val->pos, ppath, "`%s` is %s plugin, not %s plugin", name,
                        a_kind(other->kind), a_kind(kind));
    if (!plugin) {
        char h[700] = "";
        if (n_cands)
            hint(h, sizeof h, name, cands, n_cands);
        else
            snprintf(h, sizeof h, " (no %s plugins are loaded)", kind_name(kind));
        return cfg_fail(r->c, &pe->val->pos, ppath, "unknown %s plugin `%s`%s", kind_name(kind),
                        name, h);
    }
    /* The framework's keys in this section belong to it; a plugin may not reuse them. */
    for (const struct invar_param_spec *sp = plugin->params; sp && sp->key; sp++) {
        int taken = strcmp(sp->key, "plugin") == 0;
        for (int i = 0; i < n_fw && !taken; i++)
            taken = invar_param_find(fw[i].spec, sp->key) != NULL;
        if (taken)
            return invar_error_set(r->c->err, INVAR_ERR_PLUGIN,
                                   "plugin %s: parameter `%s` "
                                   "clashes with the framework's `%s.%s`",
                                   plugin->name, sp->key, kind_name(kind), sp->key);
    }
    void *config = calloc(1, plugin->config_size ? plugin->config_size : 1);
    if (!config || own(r, config) != INVAR_OK)
        return nomem(r);
    struct table tabs[4];
    for (int i = 0; i < n_fw; i++)
        tabs[i] = fw[i];
    tabs[n_fw] = (struct table){plugin->params, config};
    static const char *const extra[] = {"plugin", NULL};
    enum invar_status st = canon_put(r, canon, "plugin", scalar_node(r, plugin->name, 1));
    if (st == INVAR_OK)
        st = fill_section(r, map, path, tabs, n_fw + 1, extra, plugin->name, canon);
    if (st != INVAR_OK)
        return st;
    if (plugin->check) {
        struct invar_error perr = {{0}};
        if (plugin->check(config, &perr) != INVAR_OK)
            return cfg_fail(r->c, &map->pos, path, "%s: %s", plugin->name, perr.msg);
    }
    use->plugin = plugin;
    use->config = config;
    if (kind != INVAR_KIND_AUGMENT)
        use->p = 1;
    return INVAR_OK;
}

static const struct cfg_node *section(const struct cfg_node *root, const char *key)
{
    const struct cfg_entry *e = cfg_map_find(root, key);
    return e ? e->val : NULL;
}

/* An augment list: each item {plugin, p, ...}; out receives the items. */
static enum invar_status resolve_augs(struct res *r, const struct cfg_node *list, const char *path,
                                      struct invar_plugin_use *out, struct cfg_node *canon)
{
    if (list->kind != CFG_SEQ)
        return cfg_fail(r->c, &list->pos, path, "expected a list of augmentations, got %s",
                        node_kind_name(list));
    for (size_t i = 0; i < list->n; i++) {
        char ipath[600];
        cfg_path_join(ipath, sizeof ipath, path, NULL, (long)i);
        struct cfg_node *item = container_node(CFG_MAP);
        enum invar_status st = canon_put(r, canon, NULL, item);
        if (st != INVAR_OK)
            return st;
        struct table fw = {augment_params, &out[i]};
        st = resolve_plugin(r, list->items[i].val, &list->items[i].kpos, ipath, INVAR_KIND_AUGMENT,
                            &fw, 1, &out[i], item);
        if (st != INVAR_OK)
            return st;
    }
    return INVAR_OK;
}

static enum invar_status resolve_views(struct res *r, const struct cfg_node *root,
                                       struct cfg_node *canon)
{
    struct invar_experiment *e = r->e;
    const struct cfg_entry *aug = cfg_map_find(root, "augment");
    const struct cfg_entry *views = cfg_map_find(root, "views");
    if (aug && views)
        return cfg_fail(r->c, &views->kpos, "views",
                        "give either `augment` (one list for "
                        "every view) or `views`, not both");
    if (views) {
        const struct cfg_node *v = views->val;
        if (v->kind != CFG_SEQ || v->n == 0 || v->n > INVAR_CONFIG_MAX_VIEWS)
            return cfg_fail(r->c, &v->pos, "views",
                            "expected a list of 1 to %d lists of "
                            "augmentations",
                            INVAR_CONFIG_MAX_VIEWS);
        const struct cfg_node *train = section(root, "train");
        const struct cfg_entry *tv =
            train && train->kind == CFG_MAP ? cfg_map_find(train, "views") : NULL;
        if (tv && e->train.views != (int64_t)v->n)
            return cfg_fail(r->c, &tv->val->pos, "train.views",
                            "is %lld but `views` lists %zu "
                            "views",
                            (long long)e->train.views, v->n);
        e->train.views = (int64_t)v->n;
        /* The canonical text says so too, so that a stored config loads back. */
        struct cfg_entry *ct = cfg_map_find(canon, "train");
        struct cfg_entry *cv = ct ? cfg_map_find(ct->val, "views") : NULL;
        if (cv) {
            char buf[24];
            snprintf(buf, sizeof buf, "%zu", v->n);
            char *text = strdup(buf);
            if (!text)
                return nomem(r);
            free(cv->val->text);
            cv->val->text = text;
        }
    }
    size_t total = 0;
    if (views)
        for (size_t i = 0; i < views->val->n; i++)
            total += views->val->items[i].val->kind == CFG_SEQ ? views->val->items[i].val->n : 0;
    else if (aug)
        total = aug->val->kind == CFG_SEQ ? aug->val->n : 0;
    e->augs = calloc(total ? total : 1, sizeof *e->augs);
    if (!e->augs)
        return nomem(r);
    e->n_augs = total;
    struct cfg_node *list = container_node(CFG_SEQ);
    enum invar_status st = canon_put(r, canon, views ? "views" : "augment", list);
    if (st != INVAR_OK)
        return st;
    if (!views) {
        if (aug) {
            st = resolve_augs(r, aug->val, "augment", e->augs, list);
            if (st != INVAR_OK)
                return st;
        }
        e->n_views = (size_t)e->train.views;
        for (size_t i = 0; i < e->n_views; i++)
            e->views[i] = (struct invar_view){e->augs, total};
        return INVAR_OK;
    }
    size_t at = 0;
    e->n_views = views->val->n;
    for (size_t i = 0; i < views->val->n; i++) {
        char vpath[64];
        cfg_path_join(vpath, sizeof vpath, "views", NULL, (long)i);
        const struct cfg_node *one = views->val->items[i].val;
        struct cfg_node *sub = container_node(CFG_SEQ);
        st = canon_put(r, list, NULL, sub);
        if (st == INVAR_OK)
            st = resolve_augs(r, one, vpath, e->augs + at, sub);
        if (st != INVAR_OK)
            return st;
        e->views[i] = (struct invar_view){e->augs + at, one->n};
        at += one->n;
    }
    return INVAR_OK;
}

/* A plain fixed section (optim, train, eval.knn, ...). */
static enum invar_status resolve_fixed(struct res *r, const struct cfg_node *parent,
                                       const char *key, const char *path,
                                       const struct invar_param_spec *spec, void *base,
                                       struct cfg_node *canon_parent)
{
    struct cfg_node *canon = container_node(CFG_MAP);
    enum invar_status st = canon_put(r, canon_parent, key, canon);
    if (st != INVAR_OK)
        return st;
    struct table t = {spec, base};
    return fill_section(r, parent ? section(parent, key) : NULL, path, &t, 1, NULL, path, canon);
}

static enum invar_status resolve_eval(struct res *r, const struct cfg_node *root,
                                      struct cfg_node *canon)
{
    const struct cfg_node *ev = section(root, "eval");
    if (ev && ev->kind != CFG_MAP)
        return cfg_fail(r->c, &ev->pos, "eval", "expected a map, got %s", node_kind_name(ev));
    static const char *const keys[] = {"knn", "linear"};
    for (size_t i = 0; ev && i < ev->n; i++)
        if (strcmp(ev->items[i].key, "knn") != 0 && strcmp(ev->items[i].key, "linear") != 0) {
            char path[300], h[300];
            cfg_path_join(path, sizeof path, "eval", ev->items[i].key, 0);
            hint(h, sizeof h, ev->items[i].key, keys, 2);
            return cfg_fail(r->c, &ev->items[i].kpos, path, "unknown key `%s`%s", ev->items[i].key,
                            h);
        }
    struct cfg_node *node = container_node(CFG_MAP);
    enum invar_status st = canon_put(r, canon, "eval", node);
    struct knn_section knn;
    struct linear_section lin;
    if (st == INVAR_OK)
        st = resolve_fixed(r, ev, "knn", "eval.knn", knn_params, &knn, node);
    if (st == INVAR_OK)
        st = resolve_fixed(r, ev, "linear", "eval.linear", linear_params, &lin, node);
    if (st != INVAR_OK)
        return st;
    r->e->eval.knn.k = knn.k;
    r->e->eval.knn.t = knn.t;
    r->e->eval.knn.every = knn.every;
    r->e->eval.knn.features = knn.features;
    r->e->eval.knn.size = knn.size;
    r->e->eval.knn.precise_bn = knn.precise_bn;
    r->e->eval.linear.size = lin.size;
    r->e->eval.linear.precise_bn = lin.precise_bn;
    r->e->eval.linear.features = lin.features;
    r->e->eval.linear.epochs = lin.epochs;
    r->e->eval.linear.lr = lin.lr;
    r->e->eval.linear.batch_size = lin.batch_size;
    r->e->eval.linear.weight_decay = lin.weight_decay;
    return INVAR_OK;
}

/* Everything but the sweep block. */
static enum invar_status resolve_tree(struct res *r, const struct cfg_node *root)
{
    struct invar_experiment *e = r->e;
    struct cfg_node *canon = container_node(CFG_MAP);
    if (!canon)
        return nomem(r);
    e->canon = canon;
    for (size_t i = 0; i < root->n; i++) {
        const char *key = root->items[i].key;
        int known = 0;
        for (size_t k = 0; top_keys[k]; k++)
            known |= strcmp(top_keys[k], key) == 0;
        /* A file's own `base:` is consumed while loading; one that is left came from an
         * override. */
        if (strcmp(key, "base") == 0)
            return cfg_fail(r->c, &root->items[i].kpos, key, "`base:` works inside a file only");
        if (!known) {
            char h[700];
            hint(h, sizeof h, key, top_keys, sizeof top_keys / sizeof top_keys[0] - 1);
            return cfg_fail(r->c, &root->items[i].kpos, key, "unknown section `%s`%s", key, h);
        }
    }
    /* name and seed sit at the top; fill_section sees only those two keys. */
    struct cfg_node top = *root;
    struct cfg_entry only[2];
    top.n = 0;
    top.items = only;
    for (size_t i = 0; i < root->n; i++)
        if (strcmp(root->items[i].key, "name") == 0 || strcmp(root->items[i].key, "seed") == 0)
            only[top.n++] = root->items[i];
    struct table tt = {top_params, &e->top};
    enum invar_status st = fill_section(r, &top, "", &tt, 1, NULL, "experiment", canon);
    if (st != INVAR_OK)
        return st;
    if (!cfg_map_find(root, "name")) {
        snprintf(e->top.name, sizeof e->top.name, "%s", e->file_stem);
        for (size_t i = 0; i < canon->n; i++)
            if (strcmp(canon->items[i].key, "name") == 0) {
                free(canon->items[i].val->text);
                canon->items[i].val->text = strdup(e->file_stem);
                if (!canon->items[i].val->text)
                    return nomem(r);
            }
    }
    struct cfg_pos top_pos = root->pos;
    struct cfg_node *dn = container_node(CFG_MAP);
    st = canon_put(r, canon, "data", dn);
    struct table dt = {data_params, &e->data};
    if (st == INVAR_OK)
        st = resolve_plugin(r, section(root, "data"), &top_pos, "data", INVAR_KIND_DATASET, &dt, 1,
                            &e->data.use, dn);
    if (st == INVAR_OK)
        st = resolve_fixed(r, root, "train", "train", train_params, &e->train, canon);
    if (st == INVAR_OK)
        st = resolve_views(r, root, canon);
    struct cfg_node *en = NULL, *on = NULL;
    if (st == INVAR_OK)
        st = canon_put(r, canon, "encoder", en = container_node(CFG_MAP));
    if (st == INVAR_OK)
        st = resolve_plugin(r, section(root, "encoder"), &top_pos, "encoder", INVAR_KIND_ENCODER,
                            NULL, 0, &e->encoder, en);
    if (st == INVAR_OK)
        st = canon_put(r, canon, "objective", on = container_node(CFG_MAP));
    if (st == INVAR_OK)
        st = resolve_plugin(r, section(root, "objective"), &top_pos, "objective",
                            INVAR_KIND_OBJECTIVE, NULL, 0, &e->objective, on);
    if (st == INVAR_OK)
        st = resolve_fixed(r, root, "optim", "optim", optim_params, &e->optim, canon);
    if (st == INVAR_OK)
        st = resolve_eval(r, root, canon);
    return st;
}

/* ---- canonical text, hash, flat pairs ------------------------------------------------------ */

static int entry_cmp(const void *a, const void *b)
{
    const struct cfg_entry *x = *(const struct cfg_entry *const *)a;
    const struct cfg_entry *y = *(const struct cfg_entry *const *)b;
    return strcmp(x->key, y->key);
}

/* The map's entries sorted by key (a fresh array the caller frees). */
static const struct cfg_entry **sorted(const struct cfg_node *map)
{
    const struct cfg_entry **v = malloc((map->n ? map->n : 1) * sizeof *v);
    if (!v)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        v[i] = &map->items[i];
    qsort(v, map->n, sizeof *v, entry_cmp);
    return v;
}

static void emit_scalar(struct cfg_buf *b, const struct cfg_node *n)
{
    if (!n->quoted) {
        cfg_buf_puts(b, n->text);
        return;
    }
    cfg_buf_puts(b, "\"");
    for (const unsigned char *s = (const unsigned char *)n->text; *s; s++) {
        if (*s == '"' || *s == '\\')
            cfg_buf_printf(b, "\\%c", *s);
        else if (*s < 0x20 || *s == 0x7f)
            cfg_buf_printf(b, "\\x%02x", *s);
        else
            cfg_buf_printf(b, "%c", *s);
    }
    cfg_buf_puts(b, "\"");
}

static void emit_key(struct cfg_buf *b, const char *key)
{
    int plain = *key != 0;
    for (const char *s = key; *s; s++)
        plain &= (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                 *s == '_';
    if (plain) {
        cfg_buf_puts(b, key);
        return;
    }
    struct cfg_node tmp = {.kind = CFG_SCALAR, .text = (char *)key, .quoted = 1};
    emit_scalar(b, &tmp);
}

/* Written on one line: scalars, empty containers and lists of scalars. Maps go in blocks so
 * a stored config reads one key per line. */
static int is_flat(const struct cfg_node *n)
{
    if (n->kind == CFG_SCALAR || n->n == 0)
        return 1;
    if (n->kind == CFG_MAP)
        return 0;
    for (size_t i = 0; i < n->n; i++)
        if (n->items[i].val->kind != CFG_SCALAR)
            return 0;
    return 1;
}

static void emit_flow(struct cfg_buf *b, const struct cfg_node *n)
{
    if (n->kind == CFG_SCALAR) {
        emit_scalar(b, n);
        return;
    }
    if (n->kind == CFG_SEQ) {
        cfg_buf_puts(b, "[");
        for (size_t i = 0; i < n->n; i++) {
            cfg_buf_puts(b, i ? ", " : "");
            emit_flow(b, n->items[i].val);
        }
        cfg_buf_puts(b, "]");
        return;
    }
    const struct cfg_entry **v = sorted(n);
    if (!v) {
        b->oom = 1;
        return;
    }
    cfg_buf_puts(b, "{");
    for (size_t i = 0; i < n->n; i++) {
        cfg_buf_puts(b, i ? ", " : "");
        emit_key(b, v[i]->key);
        cfg_buf_puts(b, ": ");
        emit_flow(b, v[i]->val);
    }
    cfg_buf_puts(b, "}");
    free(v);
}

/* Block YAML; when inline_first, the cursor already sits at column indent (after "- "). */
static void emit_block(struct cfg_buf *b, const struct cfg_node *n, int indent, int inline_first)
{
    if (n->kind == CFG_MAP) {
        const struct cfg_entry **v = sorted(n);
        if (!v) {
            b->oom = 1;
            return;
        }
        for (size_t i = 0; i < n->n; i++) {
            if (i || !inline_first)
                cfg_buf_printf(b, "%*s", indent, "");
            emit_key(b, v[i]->key);
            cfg_buf_puts(b, ":");
            if (is_flat(v[i]->val)) {
                cfg_buf_puts(b, " ");
                emit_flow(b, v[i]->val);
                cfg_buf_puts(b, "\n");
            } else {
                cfg_buf_puts(b, "\n");
                emit_block(b, v[i]->val, indent + 2, 0);
            }
        }
        free(v);
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        if (i || !inline_first)
            cfg_buf_printf(b, "%*s", indent, "");
        const struct cfg_node *it = n->items[i].val;
        if (is_flat(it) && (it->kind != CFG_MAP || it->n == 0)) {
            cfg_buf_puts(b, "- ");
            emit_flow(b, it);
            cfg_buf_puts(b, "\n");
        } else {
            cfg_buf_puts(b, "- ");
            emit_block(b, it, indent + 2, 1);
        }
    }
}

static enum invar_status flat_push(struct res *r, const char *key, const char *value)
{
    struct invar_experiment *e = r->e;
    if (e->n_flat + 2 > e->cap_flat) {
        size_t cap = e->cap_flat ? 2 * e->cap_flat : 64;
        char **p = realloc(e->flat, cap * sizeof *p);
        if (!p)
            return nomem(r);
        e->flat = p;
        e->cap_flat = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return nomem(r);
    }
    e->flat[e->n_flat++] = k;
    e->flat[e->n_flat++] = v;
    return INVAR_OK;
}

/* Scalars and lists of scalars are one value each; maps and lists of maps are walked. */
static enum invar_status flatten(struct res *r, const struct cfg_node *n, const char *path)
{
    if (n->kind == CFG_SCALAR)
        return flat_push(r, path, n->text);
    if (n->kind == CFG_SEQ && is_flat(n)) {
        struct cfg_buf b = {0};
        emit_flow(&b, n);
        enum invar_status st = b.oom ? nomem(r) : flat_push(r, path, b.s ? b.s : "[]");
        free(b.s);
        return st;
    }
    if (n->kind == CFG_SEQ) {
        for (size_t i = 0; i < n->n; i++) {
            char p[600];
            cfg_path_join(p, sizeof p, path, NULL, (long)i);
            enum invar_status st = flatten(r, n->items[i].val, p);
            if (st != INVAR_OK)
                return st;
        }
        return INVAR_OK;
    }
    const struct cfg_entry **v = sorted(n);
    if (!v)
        return nomem(r);
    enum invar_status st = INVAR_OK;
    for (size_t i = 0; i < n->n && st == INVAR_OK; i++) {
        char p[600];
        cfg_path_join(p, sizeof p, path, v[i]->key, 0);
        st = flatten(r, v[i]->val, p);
    }
    free(v);
    return st;
}

static enum invar_status finish(struct res *r)
{
    struct invar_experiment *e = r->e;
    struct cfg_buf b = {0};
    emit_block(&b, e->canon, 0, 0);
    if (b.oom || !b.s) {
        free(b.s);
        return nomem(r);
    }
    e->canonical = b.s;
    invar_sha256_hex(b.s, b.n, e->hash);
    return flatten(r, e->canon, "");
}

/* ---- the sweep block ---------------------------------------------------------------------- */

static const char *sweep_str(struct res *r, const char *s)
{
    struct invar_experiment *e = r->e;
    if (e->n_sweep_strs == e->cap_sweep_strs) {
        size_t cap = e->cap_sweep_strs ? 2 * e->cap_sweep_strs : 16;
        char **p = realloc(e->sweep_strs, cap * sizeof *p);
        if (!p)
            return NULL;
        e->sweep_strs = p;
        e->cap_sweep_strs = cap;
    }
    char *d = strdup(s);
    if (d)
        e->sweep_strs[e->n_sweep_strs++] = d;
    return d;
}

static enum invar_status resolve_into(struct invar_experiment *e, struct cfg_node *root,
                                      const struct invar_plugin *const *plugins);

/* Every value of every axis must give a valid experiment: resolve a copy with it set. */
static enum invar_status check_axis_value(struct res *r, const struct cfg_node *root,
                                          const struct cfg_entry *axis, const struct cfg_node *v)
{
    /* Copies for checking are not part of the document: they do not count against the
     * node budget. */
    size_t budget = r->c->nodes;
    r->c->nodes = 0;
    struct cfg_node *copy = cfg_node_copy(r->c, root, 0);
    struct cfg_node *val = cfg_node_copy(r->c, v, 0);
    r->c->nodes = budget;
    if (!copy || !val) {
        cfg_node_free(copy);
        cfg_node_free(val);
        return nomem(r);
    }
    for (size_t i = 0; i < copy->n; i++)
        if (strcmp(copy->items[i].key, "sweep") == 0) {
            cfg_map_remove(copy, i);
            break;
        }
    enum invar_status st = cfg_set_path(r->c, copy, axis->key, strlen(axis->key), val, &axis->kpos);
    if (st == INVAR_OK) {
        struct invar_experiment *scratch = calloc(1, sizeof *scratch);
        if (!scratch) {
            cfg_node_free(copy);
            return nomem(r);
        }
        scratch->ctx = *r->c; /* borrows the strings and the error buffer */
        memcpy(scratch->file_stem, r->e->file_stem, sizeof scratch->file_stem);
        st = resolve_into(scratch, copy, r->plugins);
        *r->c = scratch->ctx;
        memset(&scratch->ctx, 0, sizeof scratch->ctx);
        invar_experiment_destroy(scratch);
    }
    /* Errors point into the sweep block: the value's position, or the axis key's for a key
     * that does not exist. */
    cfg_node_free(copy);
    return st;
}

static enum invar_status resolve_axes(struct res *r, const struct cfg_node *root,
                                      const struct cfg_node *m, const char *what,
                                      struct invar_sweep_axis *out, size_t *n_out)
{
    char path[64];
    snprintf(path, sizeof path, "sweep.%s", what);
    if (m->kind != CFG_MAP)
        return cfg_fail(r->c, &m->pos, path, "expected a map of key: [values]");
    for (size_t i = 0; i < m->n; i++) {
        const struct cfg_entry *a = &m->items[i];
        char apath[600];
        cfg_path_join(apath, sizeof apath, path, a->key, 0);
        if (a->val->kind != CFG_SEQ || a->val->n == 0)
            return cfg_fail(r->c, &a->val->pos, apath, "expected a non-empty list of values");
        if (!strcmp(what, "zip") && i > 0 && a->val->n != m->items[0].val->n)
            return cfg_fail(r->c, &a->val->pos, apath,
                            "has %zu values but `%s` has %zu (zip "
                            "axes advance together)",
                            a->val->n, m->items[0].key, m->items[0].val->n);
        const char **vals = calloc(a->val->n, sizeof *vals);
        if (!vals || own(r, vals) != INVAR_OK)
            return nomem(r);
        for (size_t k = 0; k < a->val->n; k++) {
            enum invar_status st = check_axis_value(r, root, a, a->val->items[k].val);
            if (st != INVAR_OK)
                return st;
            struct cfg_buf b = {0};
            emit_flow(&b, a->val->items[k].val);
            vals[k] = b.oom ? NULL : sweep_str(r, b.s ? b.s : "");
            free(b.s);
            if (!vals[k])
                return nomem(r);
        }
        const char *key = sweep_str(r, a->key);
        if (!key)
            return nomem(r);
        out[(*n_out)++] = (struct invar_sweep_axis){key, vals, a->val->n};
    }
    return INVAR_OK;
}

static enum invar_status resolve_sweep(struct res *r, const struct cfg_node *root)
{
    const struct cfg_node *sw = section(root, "sweep");
    if (!sw)
        return INVAR_OK;
    if (sw->kind != CFG_MAP)
        return cfg_fail(r->c, &sw->pos, "sweep", "expected a map with `grid`, `zip`, `seeds`");
    static const char *const keys[] = {"grid", "zip", "seeds"};
    size_t n_axes = 0;
    for (size_t i = 0; i < sw->n; i++) {
        const struct cfg_entry *e = &sw->items[i];
        int known = 0;
        for (size_t k = 0; k < 3; k++)
            known |= strcmp(keys[k], e->key) == 0;
        if (!known) {
            char path[300], h[300];
            cfg_path_join(path, sizeof path, "sweep", e->key, 0);
            hint(h, sizeof h, e->key, keys, 3);
            return cfg_fail(r->c, &e->kpos, path, "unknown key `%s`%s", e->key, h);
        }
        if (strcmp(e->key, "seeds") != 0 && e->val->kind == CFG_MAP)
            n_axes += e->val->n;
    }
    struct invar_experiment *e = r->e;
    e->axes = calloc(n_axes ? n_axes : 1, sizeof *e->axes);
    if (!e->axes)
        return nomem(r);
    size_t n_grid = 0, n_zip = 0;
    const struct cfg_node *grid = section(sw, "grid"), *zip = section(sw, "zip");
    enum invar_status st = INVAR_OK;
    if (grid)
        st = resolve_axes(r, root, grid, "grid", e->axes, &n_grid);
    if (st == INVAR_OK && zip)
        st = resolve_axes(r, root, zip, "zip", e->axes + n_grid, &n_zip);
    if (st != INVAR_OK)
        return st;
    e->sweep.grid = e->axes;
    e->sweep.n_grid = n_grid;
    e->sweep.zip = e->axes + n_grid;
    e->sweep.n_zip = n_zip;
    const struct cfg_node *seeds = section(sw, "seeds");
    if (seeds) {
        if (seeds->kind != CFG_SEQ || seeds->n == 0)
            return cfg_fail(r->c, &seeds->pos, "sweep.seeds",
                            "expected a non-empty list of "
                            "integers");
        e->seeds = calloc(seeds->n, sizeof *e->seeds);
        if (!e->seeds)
            return nomem(r);
        for (size_t i = 0; i < seeds->n; i++) {
            char p[64];
            cfg_path_join(p, sizeof p, "sweep.seeds", NULL, (long)i);
            struct top_section tmp;
            st = set_param(r, &top_params[1], &tmp, seeds->items[i].val, p);
            if (st != INVAR_OK)
                return st;
            e->seeds[i] = tmp.seed;
        }
        e->sweep.seeds = e->seeds;
        e->sweep.n_seeds = seeds->n;
    }
    return INVAR_OK;
}

/* ---- entry points ------------------------------------------------------------------------- */

static enum invar_status resolve_into(struct invar_experiment *e, struct cfg_node *root,
                                      const struct invar_plugin *const *plugins)
{
    struct res r = {e, &e->ctx, plugins};
    enum invar_status st = resolve_tree(&r, root);
    if (st == INVAR_OK)
        st = finish(&r);
    return st;
}

static void set_stem(struct invar_experiment *e, const char *name)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (n >= sizeof e->file_stem)
        n = sizeof e->file_stem - 1;
    memcpy(e->file_stem, base, n);
    e->file_stem[n] = '\0';
}

static enum invar_status load(struct invar_experiment **out, const char *name, const char *text,
                              const char *const *overrides, size_t n_overrides,
                              const struct invar_plugin *const *plugins, struct invar_error *err)
{
    *out = NULL;
    struct invar_experiment *e = calloc(1, sizeof *e);
    if (!e)
        return invar_error_set(err, INVAR_ERR_NOMEM, "out of memory");
    cfg_ctx_init(&e->ctx, err);
    set_stem(e, name);
    struct cfg_node *root = NULL;
    enum invar_status st =
        text ? cfg_load_text(&e->ctx, name, text, &root) : cfg_load_file(&e->ctx, name, &root);
    for (size_t i = 0; st == INVAR_OK && i < n_overrides; i++)
        st = cfg_apply_override(&e->ctx, root, overrides[i]);
    if (st == INVAR_OK)
        st = resolve_into(e, root, plugins);
    if (st == INVAR_OK) {
        struct res r = {e, &e->ctx, plugins};
        st = resolve_sweep(&r, root);
    }
    cfg_node_free(root);
    if (st != INVAR_OK) {
        invar_experiment_destroy(e);
        return st;
    }
    e->ctx.err = NULL;
    *out = e;
    return INVAR_OK;
}

enum invar_status invar_experiment_load_with(struct invar_experiment **out, const char *name,
                                             const char *text, const char *const *overrides,
                                             size_t n_overrides,
                                             const struct invar_plugin *const *plugins,
                                             struct invar_error *err)
{
    return load(out, name, text, overrides, n_overrides, plugins, err);
}

/* The registry's descriptors as the NULL-terminated list resolution reads. */
static enum invar_status load_registry(struct invar_experiment **out, const char *name,
                                       const char *text, const char *const *overrides,
                                       size_t n_overrides, const struct invar_registry *reg,
                                       struct invar_error *err)
{
    *out = NULL;
    size_t n = reg ? invar_registry_count(reg) : 0;
    const struct invar_plugin **list = calloc(n + 1, sizeof *list);
    if (!list)
        return invar_error_set(err, INVAR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        list[i] = invar_registry_at(reg, i)->desc;
    enum invar_status st = load(out, name, text, overrides, n_overrides, list, err);
    free(list);
    return st;
}

enum invar_status invar_experiment_load(struct invar_experiment **out, const char *path,
                                        const char *const *overrides, size_t n_overrides,
                                        const struct invar_registry *reg, struct invar_error *err)
{
    return load_registry(out, path, NULL, overrides, n_overrides, reg, err);
}

enum invar_status invar_experiment_load_string(struct invar_experiment **out, const char *name,
                                               const char *text, const char *const *overrides,
                                               size_t n_overrides, const struct invar_registry *reg,
                                               struct invar_error *err)
{
    return load_registry(out, name, text, overrides, n_overrides, reg, err);
}

void invar_experiment_destroy(struct invar_experiment *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n_owned; i++)
        free(e->owned[i]);
    free(e->owned);
    free(e->augs);
    cfg_node_free(e->canon);
    free(e->canonical);
    for (size_t i = 0; i < e->n_flat; i++)
        free(e->flat[i]);
    free(e->flat);
    for (size_t i = 0; i < e->n_sweep_strs; i++)
        free(e->sweep_strs[i]);
    free(e->sweep_strs);
    free(e->axes);
    free(e->seeds);
    cfg_ctx_deinit(&e->ctx);
    free(e);
}

const char *invar_experiment_name(const struct invar_experiment *e)
{
    return e->top.name;
}
int64_t invar_experiment_seed(const struct invar_experiment *e)
{
    return e->top.seed;
}
const struct invar_data_section *invar_experiment_data(const struct invar_experiment *e)
{
    return &e->data;
}
size_t invar_experiment_n_views(const struct invar_experiment *e)
{
    return e->n_views;
}
const struct invar_view *invar_experiment_view(const struct invar_experiment *e, size_t i)
{
    INVAR_ASSERT(i < e->n_views);
    return &e->views[i];
}
const struct invar_plugin_use *invar_experiment_encoder(const struct invar_experiment *e)
{
    return &e->encoder;
}
const struct invar_plugin_use *invar_experiment_objective(const struct invar_experiment *e)
{
    return &e->objective;
}
const struct invar_optim_section *invar_experiment_optim(const struct invar_experiment *e)
{
    return &e->optim;
}
const struct invar_train_section *invar_experiment_train(const struct invar_experiment *e)
{
    return &e->train;
}
const struct invar_eval_section *invar_experiment_eval(const struct invar_experiment *e)
{
    return &e->eval;
}
const struct invar_sweep *invar_experiment_sweep(const struct invar_experiment *e)
{
    return &e->sweep;
}
const char *invar_experiment_canonical(const struct invar_experiment *e)
{
    return e->canonical;
}
const char *invar_experiment_hash(const struct invar_experiment *e)
{
    return e->hash;
}
size_t invar_experiment_n_params(const struct invar_experiment *e)
{
    return e->n_flat / 2;
}
void invar_experiment_param(const struct invar_experiment *e, size_t i, const char **key,
                            const char **value)
{
    INVAR_ASSERT(2 * i + 1 < e->n_flat);
    *key = e->flat[2 * i];
    *value = e->flat[2 * i + 1];
}

void invar_experiment_optim_config(const struct invar_experiment *e, int64_t steps_per_epoch,
                                   struct invar_optim_config *oc)
{
    static const enum invar_optim_kind kinds[] = {INVAR_OPTIM_SGD, INVAR_OPTIM_LARS,
                                                  INVAR_OPTIM_ADAMW};
    static const enum invar_schedule scheds[] = {INVAR_SCHED_CONSTANT, INVAR_SCHED_STEP,
                                                 INVAR_SCHED_COSINE};
    const struct invar_optim_section *o = &e->optim;
    memset(oc, 0, sizeof *oc);
    oc->kind = kinds[o->name];
    oc->lr = o->lr;
    oc->momentum = o->momentum;
    oc->nesterov = o->nesterov;
    oc->weight_decay = o->weight_decay;
    oc->lars_eta = o->lars_eta;
    oc->beta1 = o->betas[0];
    oc->beta2 = o->betas[1];
    oc->eps = o->eps;
    oc->schedule = scheds[o->schedule];
    oc->warmup_steps = o->warmup_epochs * steps_per_epoch;
    oc->step_every = o->step_epochs * steps_per_epoch;
    oc->step_gamma = o->step_gamma;
    oc->final_lr = o->final_lr;
    oc->clip_norm = o->clip_norm;
}
