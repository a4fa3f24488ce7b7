/* invar/plugin.h — the plugin ABI: one descriptor per plugin, a parameter table, a vtable.
 *
 * A complete augmentation plugin:
 *
 *     #include <invar/plugin.h>
 *
 *     struct invert_config { double max; };   // filled by the framework
 *
 *     static const struct invar_param_spec invert_params[] = {
 *         INVAR_PARAM_FLOAT(struct invert_config, max, "1.0", 0, 1e9, "value that maps to 0"),
 *         INVAR_PARAM_END
 *     };
 *
 *     static void invert_apply(const void *cfg, struct invar_rng *rng,
 *                              const struct invar_image *in, struct invar_image *out) {
 *         const struct invert_config *c = cfg;
 *         (void)rng;
 *         for (int64_t i = 0; i < invar_image_numel(in); i++)
 *             out->data[i] = (float)c->max - in->data[i];
 *     }
 *
 *     static const struct invar_augment_ops invert_ops = { .apply = invert_apply };
 *
 *     INVAR_PLUGIN_DEFINE(invar_augment, "invert", "1.0.0", "colour: x -> max - x",
 *                         struct invert_config, invert_params, invert_ops)
 *
 * The framework dlopens the shared object (RTLD_NOW | RTLD_LOCAL), calls invar_plugin_entry()
 * and checks abi_version and struct_size before it reads anything else. Descriptors and
 * vtables only ever grow at the end: a field is never removed or reordered, and the framework
 * reads a newer field only when struct_size says the plugin has it.
 *
 * Every plugin has a config struct that the framework fills from YAML and KEY=VALUE overrides
 * using the parameter table (defaults first, then validated values). The plugin never parses
 * text. Types: BOOL -> int, INT -> int64_t, FLOAT -> double, STRING -> char[INVAR_STR_MAX],
 * ENUM -> int (index into the '|'-separated allowed list), RANGE -> double[2] (lo <= hi).
 */
#ifndef INVAR_PLUGIN_H
#define INVAR_PLUGIN_H

#include <stddef.h>

#include "core.h"
#include "graph.h"
#include "params.h"
#include "rng.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define INVAR_ABI_VERSION 1u
#define INVAR_STR_MAX 512
#define INVAR_PLUGIN_ENTRY_SYMBOL "invar_plugin_entry"

enum invar_plugin_kind {
    INVAR_KIND_DATASET = 1,
    INVAR_KIND_AUGMENT = 2,
    INVAR_KIND_ENCODER = 3,
    INVAR_KIND_OBJECTIVE = 4,
};

/* ---- the parameter table ---------------------------------------------------------------- */

enum invar_param_type {
    INVAR_TYPE_BOOL = 1,
    INVAR_TYPE_INT,
    INVAR_TYPE_FLOAT,
    INVAR_TYPE_STRING,
    INVAR_TYPE_ENUM,
    INVAR_TYPE_RANGE,
};

struct invar_param_spec {
    const char *key;            /* YAML key; NULL ends the table */
    enum invar_param_type type;
    size_t offset;              /* into the plugin's config struct */
    const char *def;            /* default, written as in YAML ("0.07", "[0.2, 1.0]", "nce") */
    double min, max;            /* inclusive bounds for INT, FLOAT and both ends of RANGE */
    const char *allowed;        /* ENUM: "nonparametric|nce|parametric" */
    const char *doc;            /* one line */
};

#define INVAR_PARAM_BOOL(T, f, def, doc) \
    {#f, INVAR_TYPE_BOOL, offsetof(T, f), def, 0, 1, NULL, doc}
#define INVAR_PARAM_INT(T, f, def, lo, hi, doc) \
    {#f, INVAR_TYPE_INT, offsetof(T, f), def, lo, hi, NULL, doc}
#define INVAR_PARAM_FLOAT(T, f, def, lo, hi, doc) \
    {#f, INVAR_TYPE_FLOAT, offsetof(T, f), def, lo, hi, NULL, doc}
#define INVAR_PARAM_STRING(T, f, def, doc) \
    {#f, INVAR_TYPE_STRING, offsetof(T, f), def, 0, 0, NULL, doc}
#define INVAR_PARAM_ENUM(T, f, def, allowed, doc) \
    {#f, INVAR_TYPE_ENUM, offsetof(T, f), def, 0, 0, allowed, doc}
#define INVAR_PARAM_RANGE(T, f, def, lo, hi, doc) \
    {#f, INVAR_TYPE_RANGE, offsetof(T, f), def, lo, hi, NULL, doc}
#define INVAR_PARAM_END {NULL, (enum invar_param_type)0, 0, NULL, 0, 0, NULL, NULL}

/* ---- datasets ----------------------------------------------------------------------------- */

struct invar_dataset_info {
    int64_t count;        /* samples in the split */
    int64_t shape[3];     /* (C, H, W) of one sample; a sequence is (C, 1, T) */
    int32_t num_classes;  /* 0 when unlabelled */
    int32_t is_sequence;
};

struct invar_dataset_ops {
    /* Opens split "train" or "test" (a plugin may accept others). The whole file is validated
     * here: a truncated or corrupt file is an INVAR_ERR_FORMAT naming the file. */
    enum invar_status (*open)(const void *config, const char *split, void **handle,
                              struct invar_dataset_info *info, struct invar_error *err);
    /* Sample index into out (C*H*W floats; images in [0, 1]) and its label (-1 if none).
     * Must be safe to call from several threads at once. */
    enum invar_status (*read)(void *handle, int64_t index, float *out, int32_t *label,
                              struct invar_error *err);
    void (*close)(void *handle);
};

/* ---- augmentations ------------------------------------------------------------------------ */

struct invar_image {
    float *data;  /* (C, H, W), contiguous */
    int64_t c, h, w;
};

static inline int64_t invar_image_numel(const struct invar_image *im)
{
    return im->c * im->h * im->w;
}

enum invar_augment_flag {
    INVAR_AUG_IMAGES = 1u << 0,    /* accepts (C, H, W) images */
    INVAR_AUG_SEQUENCES = 1u << 1, /* accepts (C, 1, T) sequences */
};

struct invar_augment_ops {
    unsigned flags;   /* 0 means INVAR_AUG_IMAGES */
    /* Output shape for an input shape; NULL means the shape is unchanged. */
    void (*out_shape)(const void *config, const int64_t in[3], int64_t out[3]);
    /* A pure function of (config, rng draws, in): thread-safe, no globals, no allocation.
     * out->data has room for out_shape(in) elements and never aliases in->data; the plugin
     * sets out->c, out->h, out->w. The framework handles the application probability `p`
     * (it copies the input when the draw says skip), so apply always transforms. */
    void (*apply)(const void *config, struct invar_rng *rng, const struct invar_image *in,
                  struct invar_image *out);
};

/* ---- encoders ----------------------------------------------------------------------------- */

struct invar_encoder_ops {
    /* Declares weights and buffers in params (the framework finalizes them) and returns an
     * instance for inputs of shape in_shape (C, H, W); *out_dim is the feature size. */
    enum invar_status (*create)(const void *config, const int64_t in_shape[3],
                                struct invar_params *params, void **self, int64_t *out_dim,
                                struct invar_error *err);
    /* (N, out_dim) features of x (N, C, H, W). Training mode comes from the graph. */
    struct invar_tensor *(*forward)(void *self, struct invar_graph *g, struct invar_tensor *x);
    void (*destroy)(void *self);
    /* Optional (added after the first version: read when the descriptor's ops_size covers
     * it): (N, F) the representation under the projection head (a convnet's pooled features),
     * which the evaluation protocols may classify instead of forward's output
     * (eval.knn.features, eval.linear.features: backbone). NULL: the representation is
     * forward's output itself. */
    struct invar_tensor *(*backbone)(void *self, struct invar_graph *g, struct invar_tensor *x);
};

/* ---- objectives --------------------------------------------------------------------------- */

/* A framework-owned instance of the experiment's encoder with its own weights. */
struct invar_encoder;

INVAR_API struct invar_tensor *invar_encoder_forward(struct invar_encoder *e,
                                                     struct invar_graph *g,
                                                     struct invar_tensor *x);
INVAR_API struct invar_params *invar_encoder_params(struct invar_encoder *e);
INVAR_API int64_t invar_encoder_dim(const struct invar_encoder *e);
/* The representation under the projection head (the plugin's backbone op; forward's output
 * when it has none), and its feature size. */
INVAR_API struct invar_tensor *invar_encoder_backbone(struct invar_encoder *e,
                                                      struct invar_graph *g,
                                                      struct invar_tensor *x);
INVAR_API int64_t invar_encoder_backbone_dim(struct invar_encoder *e);

/* What an evaluation classifies (eval.knn.features, eval.linear.features): the encoder's
 * output, or the representation under its projection head (invar_encoder_backbone). */
enum invar_eval_features { INVAR_FEATURES_HEAD, INVAR_FEATURES_BACKBONE };

struct invar_objective_ctx {
    int64_t dataset_size;      /* training samples (after limit) */
    int64_t batch_size;
    int64_t n_views;
    int64_t feature_dim;       /* the encoder's out_dim */
    int64_t steps_per_epoch;
    int64_t epochs;
    uint64_t seed;
    struct invar_encoder *online;  /* trained by the optimizer */
    /* The objective's own weights (heads, predictors, prototypes, classifiers) are declared
     * here and optimized with the online encoder; its state (memory bank, queue) is declared
     * with INVAR_P_BUFFER and is checkpointed with everything else. */
    struct invar_params *params;
    /* Another instance of the encoder with the online weights copied in: a momentum or
     * target encoder. Not optimized; checkpointed. Owned by the framework. */
    enum invar_status (*encoder_clone)(struct invar_objective_ctx *ctx,
                                       struct invar_encoder **out, struct invar_error *err);
    /* Features (N, D) of the un-augmented training set under e, in eval mode and no-grad,
     * written to out (dataset_size * dim floats): for clustering at epoch_begin. The images
     * as stored (eval.size is the evaluations' choice, not training's). */
    enum invar_status (*embed_train)(struct invar_objective_ctx *ctx, struct invar_encoder *e,
                                     float *out, struct invar_error *err);
    void *framework;           /* private to the framework */
    /* The NMI between an assignment of the training samples (dataset_size ids >= 0, for
     * example this epoch's pseudo-labels) and their true labels: a monitor for clustering
     * objectives, which never see the labels themselves. NULL when there are none to score
     * against. */
    enum invar_status (*label_nmi)(struct invar_objective_ctx *ctx, const int32_t *assign,
                                   double *nmi, struct invar_error *err);
};

struct invar_step_info {
    int64_t epoch;        /* 0-based */
    int64_t step;         /* within the epoch */
    int64_t global_step;  /* since the start of training */
    int64_t total_steps;
    double lr;
};

/* Save and load extra scalar state by key (the queue pointer, an NCE normaliser). Tensors
 * declared in ctx->params are saved by the framework and need no call here. */
struct invar_state_io {
    enum invar_status (*put)(struct invar_state_io *io, const char *key, const void *data,
                             size_t bytes);
    enum invar_status (*get)(struct invar_state_io *io, const char *key, void *data,
                             size_t bytes);
    void *impl;
};

typedef void (*invar_metric_fn)(void *user, const char *key, double value);

struct invar_objective_ops {
    /* Declares weights/state in ctx->params, clones encoders as needed. The framework
     * finalizes ctx->params after create returns, then calls init_state. */
    enum invar_status (*create)(const void *config, struct invar_objective_ctx *ctx,
                                void **self, struct invar_error *err);
    /* Optional: after weights exist (initialise a memory bank, copy into a target). */
    enum invar_status (*init_state)(void *self, struct invar_error *err);
    /* Optional: at the start of every epoch (clustering and pseudo-labels). */
    enum invar_status (*epoch_begin)(void *self, int64_t epoch, struct invar_error *err);
    /* Scalar loss for one batch. views[v] is (B, C, H, W) for v < n_views, indices (B) are
     * dataset positions of the batch's samples. Build the graph on g. */
    struct invar_tensor *(*loss)(void *self, struct invar_graph *g, struct invar_tensor **views,
                                 int64_t n_views, const int64_t *indices,
                                 const struct invar_step_info *info);
    /* Optional: after the optimizer step (EMA, enqueue keys, update a memory bank). The
     * graph still holds this step's tensors. */
    void (*after_step)(void *self, struct invar_graph *g, const struct invar_step_info *info);
    /* Optional: extra metrics for the step just taken or the epoch just ended. */
    void (*metrics)(void *self, invar_metric_fn emit, void *user);
    /* Optional: scalar state beyond ctx->params. */
    enum invar_status (*save)(void *self, struct invar_state_io *io);
    enum invar_status (*load)(void *self, struct invar_state_io *io);
    void (*destroy)(void *self);
};

/* ---- the descriptor ----------------------------------------------------------------------- */

struct invar_plugin {
    uint32_t abi_version;  /* INVAR_ABI_VERSION at build time: checked first */
    uint32_t struct_size;  /* sizeof(struct invar_plugin) at build time */
    uint32_t kind;         /* enum invar_plugin_kind */
    /* sizeof the kind's ops struct at build time (INVAR_PLUGIN_DEFINE fills it): an op added
     * to the end of a vtable is read only when ops_size covers it. 0 (a hand-made descriptor,
     * or one built before this field) means each vtable's first version. */
    uint32_t ops_size;
    const char *name;      /* unique across all loaded plugins; [a-z0-9_] */
    const char *version;   /* the plugin's own version, "1.2.0" */
    const char *summary;   /* one line */
    const struct invar_param_spec *params; /* ends with INVAR_PARAM_END; NULL = none */
    size_t config_size;    /* sizeof the config struct the table fills */
    /* Optional, called once after loading; a failure refuses the plugin. */
    enum invar_status (*init)(struct invar_error *err);
    /* Optional: checks across fields after the table's own checks (e.g. lo < hi). */
    enum invar_status (*check)(const void *config, struct invar_error *err);
    union {
        const struct invar_dataset_ops *dataset;
        const struct invar_augment_ops *augment;
        const struct invar_encoder_ops *encoder;
        const struct invar_objective_ops *objective;
        const void *any;
    } ops;
};

typedef const struct invar_plugin *const *(*invar_plugin_entry_fn)(void);

#if defined(__GNUC__)
#define INVAR_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define INVAR_PLUGIN_EXPORT
#endif

#define INVAR_KIND_FIELD_invar_dataset INVAR_KIND_DATASET
#define INVAR_KIND_FIELD_invar_augment INVAR_KIND_AUGMENT
#define INVAR_KIND_FIELD_invar_encoder INVAR_KIND_ENCODER
#define INVAR_KIND_FIELD_invar_objective INVAR_KIND_OBJECTIVE
#define INVAR_OPS_FIELD_invar_dataset dataset
#define INVAR_OPS_FIELD_invar_augment augment
#define INVAR_OPS_FIELD_invar_encoder encoder
#define INVAR_OPS_FIELD_invar_objective objective
#define INVAR_CAT_(a, b) a##b
#define INVAR_CAT(a, b) INVAR_CAT_(a, b)

/* Defines the descriptor and the entry symbol of a one-plugin shared object.
 * KIND is one of invar_dataset, invar_augment, invar_encoder, invar_objective; CONFIG is the
 * config struct type; PARAMS the parameter table; OPS the kind's ops struct. To add init or
 * check, fill a struct invar_plugin by hand and use INVAR_PLUGIN_EXPORT_TABLE. */
#define INVAR_PLUGIN_DEFINE(KIND, NAME, VERSION, SUMMARY, CONFIG, PARAMS, OPS)              \
    static const struct invar_plugin invar_plugin_descriptor_ = {                            \
        .abi_version = INVAR_ABI_VERSION,                                                    \
        .struct_size = sizeof(struct invar_plugin),                                          \
        .kind = INVAR_CAT(INVAR_KIND_FIELD_, KIND),                                          \
        .name = NAME,                                                                        \
        .version = VERSION,                                                                  \
        .summary = SUMMARY,                                                                  \
        .params = PARAMS,                                                                    \
        .config_size = sizeof(CONFIG),                                                       \
        .ops_size = sizeof(OPS),                                                             \
        .ops = {.INVAR_CAT(INVAR_OPS_FIELD_, KIND) = &OPS},                                  \
    };                                                                                       \
    INVAR_PLUGIN_EXPORT_TABLE(&invar_plugin_descriptor_)

/* The entry symbol for one or more descriptors in one shared object. */
#define INVAR_PLUGIN_EXPORT_TABLE(...)                                                       \
    INVAR_PLUGIN_EXPORT const struct invar_plugin *const *invar_plugin_entry(void);         \
    INVAR_PLUGIN_EXPORT const struct invar_plugin *const *invar_plugin_entry(void)          \
    {                                                                                        \
        static const struct invar_plugin *const table[] = {__VA_ARGS__, NULL};              \
        return table;                                                                        \
    }

#ifdef __cplusplus
}
#endif
#endif
