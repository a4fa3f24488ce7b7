/* invar/config.h — experiments in YAML: parse, inherit, override, type, hash.
 *
 *     const char *ov[] = { "train.epochs=1", "data.limit=2048" };
 *     struct invar_experiment *exp;
 *     struct invar_error err = {0};
 *     if (invar_experiment_load(&exp, "experiments/moco.yaml", ov, 2, reg, &err) != INVAR_OK) {
 *         fprintf(stderr, "invar: %s\n", err.msg);   // "moco.yaml:7:10: train.epoch: unknown key
 *         return 1;                                  //  `epoch`, did you mean `epochs`?"
 *     }
 *     const struct invar_train_section *t = invar_experiment_train(exp);
 *     printf("%s %s\n", invar_experiment_name(exp), invar_experiment_hash(exp));
 *     invar_experiment_destroy(exp);
 *
 * Loading runs four steps: the YAML file becomes a tree whose nodes remember file, line and
 * column; `base: other.yaml` files are deep-merged under it (maps merge, lists replace);
 * KEY=VALUE overrides are applied; then every section is typed and validated by parameter
 * tables (struct invar_param_spec, the same shape plugins use), plugin sections by the
 * plugin's own table. Every failure is one line, "file:line:column: key.path: what", or
 * "<command line>: KEY=VALUE: key.path: what" for an override.
 *
 * The resolved experiment (defaults filled, overrides applied) has a canonical text — sorted
 * keys, values printed by type, so 1e-3, 0.001 and 1.0e-3 print alike — whose SHA-256 is the
 * experiment's hash. The sweep block is kept apart as data and is not hashed.
 *
 * Plugins come from a registry (or, with invar_experiment_load_with, a NULL-terminated list of
 * descriptors); the registry must outlive the experiment, which points into it.
 */
#ifndef INVAR_CONFIG_H
#define INVAR_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "data.h" /* struct invar_plugin_use, struct invar_view */
#include "optim.h"
#include "plugin.h"
#include "registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bounds that keep hostile files cheap: expanded nodes (aliases and merges count each copy,
 * so a "billion laughs" file fails fast), nesting depth, file size. */
#define INVAR_CONFIG_MAX_NODES 100000
#define INVAR_CONFIG_MAX_DEPTH 64
#define INVAR_CONFIG_MAX_BYTES (16u << 20)
#define INVAR_CONFIG_MAX_VIEWS INVAR_MAX_VIEWS

struct invar_data_section {
    struct invar_plugin_use use;
    int64_t limit; /* first N samples; 0 = all */
    int64_t holdout; /* the last N of them evaluate in the test split's place; 0 = none */
    int normalize; /* standardise inputs by the training set's mean and std */
};

enum invar_optim_name { INVAR_OPTIM_NAME_SGD, INVAR_OPTIM_NAME_LARS, INVAR_OPTIM_NAME_ADAMW };
enum invar_schedule_name {
    INVAR_SCHEDULE_NAME_CONSTANT,
    INVAR_SCHEDULE_NAME_STEP,
    INVAR_SCHEDULE_NAME_COSINE,
};

/* `optim:` as written (epochs, not steps); invar_experiment_optim_config converts. */
struct invar_optim_section {
    int name; /* enum invar_optim_name */
    double lr;
    double momentum;
    int nesterov;
    double weight_decay;
    double lars_eta;
    double betas[2];
    double eps;
    int schedule; /* enum invar_schedule_name */
    int64_t warmup_epochs;
    int64_t step_epochs;
    double step_gamma;
    double final_lr;
    double clip_norm;
};

struct invar_train_section {
    int64_t epochs;
    int64_t batch_size;
    int64_t threads;
    int64_t views;            /* number of views (with `augment`), or the length of `views` */
    int64_t checkpoint_every; /* epochs; 0 = only at the end */
    int64_t log_every;        /* steps between step_loss rows; 0 = none */
};

struct invar_eval_section {
    struct {
        int64_t k;
        double t;
        int64_t every;
        int features; /* enum invar_eval_features */
        int64_t size; /* side the images are resized to; 0 = as stored */
        /* training images batch-norm statistics are recomputed on; 0 = off */
        int64_t precise_bn;
    } knn; /* every: epochs; 0 = only at the end */
    struct {
        int64_t epochs;
        double lr;
        int64_t batch_size;
        double weight_decay;
        int features; /* enum invar_eval_features */
        int64_t size;
        int64_t precise_bn;
    } linear;
};

/* One swept key and its values, each written so that "key=value" is a valid override. */
struct invar_sweep_axis {
    const char *key;
    const char *const *values;
    size_t n_values;
};

/* `sweep:` kept as data for the sweep runner: every grid axis is crossed with every other
 * and with the zip block (whose axes advance together) and the seeds. */
struct invar_sweep {
    const struct invar_sweep_axis *grid;
    size_t n_grid;
    const struct invar_sweep_axis *zip;
    size_t n_zip; /* all zip axes have the same number of values */
    const int64_t *seeds;
    size_t n_seeds;
};

struct invar_experiment;

/* Loads path, applies overrides ("key.path=value", value parsed as a YAML flow scalar or
 * sequence) and resolves plugin sections against the registry's plugins. On failure *out is
 * NULL and err holds one line. */
INVAR_API enum invar_status invar_experiment_load(struct invar_experiment **out, const char *path,
                                                  const char *const *overrides, size_t n_overrides,
                                                  const struct invar_registry *reg,
                                                  struct invar_error *err);
/* The same from text in memory; name is used in messages and as the default `name`
 * (its stem); base: paths are relative to name's directory. */
INVAR_API enum invar_status
invar_experiment_load_string(struct invar_experiment **out, const char *name, const char *text,
                             const char *const *overrides, size_t n_overrides,
                             const struct invar_registry *reg, struct invar_error *err);
/* Either of the above (text NULL: read the file name) against an explicit NULL-terminated
 * list of descriptors instead of a registry: for embedding and tests. */
INVAR_API enum invar_status
invar_experiment_load_with(struct invar_experiment **out, const char *name, const char *text,
                           const char *const *overrides, size_t n_overrides,
                           const struct invar_plugin *const *plugins, struct invar_error *err);
INVAR_API void invar_experiment_destroy(struct invar_experiment *e);

/* Accessors: pointers stay valid until invar_experiment_destroy. */
INVAR_API const char *invar_experiment_name(const struct invar_experiment *e);
INVAR_API int64_t invar_experiment_seed(const struct invar_experiment *e);
INVAR_API const struct invar_data_section *invar_experiment_data(const struct invar_experiment *e);
INVAR_API size_t invar_experiment_n_views(const struct invar_experiment *e);
INVAR_API const struct invar_view *invar_experiment_view(const struct invar_experiment *e,
                                                         size_t i);
INVAR_API const struct invar_plugin_use *invar_experiment_encoder(const struct invar_experiment *e);
INVAR_API const struct invar_plugin_use *
invar_experiment_objective(const struct invar_experiment *e);
INVAR_API const struct invar_optim_section *
invar_experiment_optim(const struct invar_experiment *e);
INVAR_API const struct invar_train_section *
invar_experiment_train(const struct invar_experiment *e);
INVAR_API const struct invar_eval_section *invar_experiment_eval(const struct invar_experiment *e);
INVAR_API const struct invar_sweep *invar_experiment_sweep(const struct invar_experiment *e);

/* The optimizer config for training with steps_per_epoch steps per epoch. */
INVAR_API void invar_experiment_optim_config(const struct invar_experiment *e,
                                             int64_t steps_per_epoch,
                                             struct invar_optim_config *oc);

/* Canonical YAML of the resolved experiment without `sweep` (it loads back to the same
 * experiment), and the lowercase hex SHA-256 of that text (64 chars). */
INVAR_API const char *invar_experiment_canonical(const struct invar_experiment *e);
INVAR_API const char *invar_experiment_hash(const struct invar_experiment *e);

/* The resolved experiment as (key, value) pairs in canonical order, for the results
 * database: "objective.momentum" -> "0.999", "augment[0].plugin" -> "resized_crop". */
INVAR_API size_t invar_experiment_n_params(const struct invar_experiment *e);
INVAR_API void invar_experiment_param(const struct invar_experiment *e, size_t i, const char **key,
                                      const char **value);

/* Lowercase hex SHA-256 (FIPS 180-4) of n bytes into hex (65 bytes with the NUL). */
INVAR_API void invar_sha256_hex(const void *data, size_t n, char hex[65]);

#ifdef __cplusplus
}
#endif
#endif
