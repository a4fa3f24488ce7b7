/* Experiments in YAML: every error class with its message and position, override typing,
 * base inheritance, canonical form and hash, flattened pairs, the sweep block. The plugins are
 * small descriptors defined here: resolution needs only their parameter tables. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"
#include "invar/config.h"
#include "invar/registry.h"

/* ---- test plugins ------------------------------------------------------------------------- */

struct idx_config {
    char path[INVAR_STR_MAX];
};
static const struct invar_param_spec idx_params[] = {
    INVAR_PARAM_STRING(struct idx_config, path, "/usr/share/datasets", "directory"),
    INVAR_PARAM_END,
};

struct rotate_config {
    double degrees;
};
static const struct invar_param_spec rotate_params[] = {
    INVAR_PARAM_FLOAT(struct rotate_config, degrees, "10", 0, 180, "max angle"),
    INVAR_PARAM_END,
};

struct crop_config {
    double scale[2];
    int64_t size;
};
static const struct invar_param_spec crop_params[] = {
    INVAR_PARAM_RANGE(struct crop_config, scale, "[0.2, 1.0]", 0, 1, "area fraction"),
    INVAR_PARAM_INT(struct crop_config, size, "28", 1, 4096, "output side"),
    INVAR_PARAM_END,
};

struct convnet_config {
    int64_t width, dim;
};
static const struct invar_param_spec convnet_params[] = {
    INVAR_PARAM_INT(struct convnet_config, width, "16", 1, 1024, "channels"),
    INVAR_PARAM_INT(struct convnet_config, dim, "64", 1, 4096, "feature size"),
    INVAR_PARAM_END,
};

struct moco_config {
    int64_t queue;
    double momentum, temperature;
    int symmetric;
};
static const struct invar_param_spec moco_params[] = {
    INVAR_PARAM_INT(struct moco_config, queue, "4096", 1, 1 << 20, "queue length"),
    INVAR_PARAM_FLOAT(struct moco_config, momentum, "0.999", 0, 1, "key encoder EMA"),
    INVAR_PARAM_FLOAT(struct moco_config, temperature, "0.07", 1e-4, 10, "softmax temperature"),
    INVAR_PARAM_BOOL(struct moco_config, symmetric, "false", "symmetrised loss"),
    INVAR_PARAM_END,
};

/* A cross-field check, as a plugin's `check` runs after its table's own checks. */
static enum invar_status convnet_check(const void *config, struct invar_error *err)
{
    const struct convnet_config *c = config;
    if (c->width > c->dim)
        return invar_error_set(err, INVAR_ERR_CONFIG, "width %lld exceeds dim %lld",
                               (long long)c->width, (long long)c->dim);
    return INVAR_OK;
}

#define DESC_CHECK(KIND, NAME, CFG, PARAMS, CHECK)                                                 \
    {                                                                                              \
        INVAR_ABI_VERSION, sizeof(struct invar_plugin), KIND, 0, NAME, "1.0.0", "test", PARAMS,    \
            sizeof(CFG), NULL, CHECK,                                                              \
        {                                                                                          \
            NULL                                                                                   \
        }                                                                                          \
    }
#define DESC(KIND, NAME, CFG, PARAMS) DESC_CHECK(KIND, NAME, CFG, PARAMS, NULL)

static const struct invar_plugin p_idx =
    DESC(INVAR_KIND_DATASET, "idx", struct idx_config, idx_params);
static const struct invar_plugin p_rotate =
    DESC(INVAR_KIND_AUGMENT, "rotate", struct rotate_config, rotate_params);
static const struct invar_plugin p_crop =
    DESC(INVAR_KIND_AUGMENT, "resized_crop", struct crop_config, crop_params);
static const struct invar_plugin p_convnet =
    DESC_CHECK(INVAR_KIND_ENCODER, "convnet", struct convnet_config, convnet_params, convnet_check);
static const struct invar_plugin p_moco =
    DESC(INVAR_KIND_OBJECTIVE, "moco", struct moco_config, moco_params);
/* An augmentation whose table reuses the framework's `p`. */
struct clash_config {
    double p;
};
static const struct invar_param_spec clash_params[] = {
    INVAR_PARAM_FLOAT(struct clash_config, p, "0.5", 0, 1, "its own probability"),
    INVAR_PARAM_END,
};
static const struct invar_plugin p_clash =
    DESC(INVAR_KIND_AUGMENT, "clash", struct clash_config, clash_params);
static const struct invar_plugin *const plugins[] = {&p_idx,  &p_rotate, &p_crop, &p_convnet,
                                                     &p_moco, &p_clash,  NULL};

#define SECTIONS                                                                                   \
    "data: {plugin: idx, path: /data/fmnist}\n"                                                    \
    "augment: [{plugin: resized_crop, scale: [0.3, 1.0]}, {plugin: rotate, degrees: 15, p: "       \
    "0.5}]\n"                                                                                      \
    "encoder: {plugin: convnet, width: 32}\n"                                                      \
    "objective: {plugin: moco, momentum: 0.999}\n"

static struct invar_experiment *load_ok(const char *text, const char *const *ov, size_t n)
{
    struct invar_experiment *e = NULL;
    struct invar_error err = {{0}};
    enum invar_status st = invar_experiment_load_with(&e, "exp.yaml", text, ov, n, plugins, &err);
    cr_assert_eq(st, INVAR_OK, "load failed: %s", err.msg);
    cr_assert_not_null(e);
    return e;
}

static void expect_fail(const char *text, const char *const *ov, size_t n, const char *msg)
{
    struct invar_experiment *e = (struct invar_experiment *)1;
    struct invar_error err = {{0}};
    enum invar_status st = invar_experiment_load_with(&e, "exp.yaml", text, ov, n, plugins, &err);
    cr_assert_neq(st, INVAR_OK, "expected a failure: %s", msg);
    cr_assert_null(e);
    cr_assert_str_eq(err.msg, msg);
    cr_assert_null(strchr(err.msg, '\n'), "one line");
}

static char *data_path(const char *name)
{
    static char buf[4096];
    const char *root = getenv("INVAR_TEST_DATA");
    cr_assert_not_null(root, "INVAR_TEST_DATA is set by meson");
    snprintf(buf, sizeof buf, "%s/config/%s", root, name);
    return buf;
}

static const char *param(const struct invar_experiment *e, const char *key)
{
    for (size_t i = 0; i < invar_experiment_n_params(e); i++) {
        const char *k, *v;
        invar_experiment_param(e, i, &k, &v);
        if (strcmp(k, key) == 0)
            return v;
    }
    return NULL;
}

/* ---- resolution ----------------------------------------------------------------------------- */

Test(config, resolves_sections_and_defaults)
{
    struct invar_experiment *e =
        load_ok("seed: 7\n" SECTIONS "train: {epochs: 3, views: 3}\n", NULL, 0);
    cr_assert_str_eq(invar_experiment_name(e), "exp", "default name is the file's stem");
    cr_assert_eq(invar_experiment_seed(e), 7);
    const struct invar_data_section *d = invar_experiment_data(e);
    cr_assert_eq(d->use.plugin, &p_idx);
    cr_assert_str_eq(((const struct idx_config *)d->use.config)->path, "/data/fmnist");
    cr_assert_eq(d->limit, 0);
    cr_assert_eq(d->holdout, 0);
    cr_assert_eq(d->normalize, 1);
    cr_assert_eq(invar_experiment_n_views(e), 3);
    for (size_t v = 0; v < 3; v++) {
        const struct invar_view *view = invar_experiment_view(e, v);
        cr_assert_eq(view->n_augs, 2);
        cr_assert_eq(view->augs[0].plugin, &p_crop);
        cr_assert_eq(view->augs[0].p, 1.0);
        const struct crop_config *cc = view->augs[0].config;
        cr_assert_eq(cc->scale[0], 0.3);
        cr_assert_eq(cc->scale[1], 1.0);
        cr_assert_eq(cc->size, 28, "plugin default");
        cr_assert_eq(view->augs[1].plugin, &p_rotate);
        cr_assert_eq(view->augs[1].p, 0.5);
        cr_assert_eq(((const struct rotate_config *)view->augs[1].config)->degrees, 15.0);
    }
    const struct convnet_config *enc = invar_experiment_encoder(e)->config;
    cr_assert_eq(enc->width, 32);
    cr_assert_eq(enc->dim, 64);
    const struct moco_config *m = invar_experiment_objective(e)->config;
    cr_assert_eq(m->momentum, 0.999);
    cr_assert_eq(m->queue, 4096);
    const struct invar_optim_section *o = invar_experiment_optim(e);
    cr_assert_eq(o->name, INVAR_OPTIM_NAME_SGD);
    cr_assert_eq(o->schedule, INVAR_SCHEDULE_NAME_COSINE);
    cr_assert_eq(o->betas[0], 0.9);
    cr_assert_eq(o->betas[1], 0.999);
    cr_assert_eq(invar_experiment_train(e)->epochs, 3);
    cr_assert_eq(invar_experiment_train(e)->batch_size, 256);
    cr_assert_eq(invar_experiment_eval(e)->knn.k, 200);
    cr_assert_eq(invar_experiment_eval(e)->knn.t, 0.07);
    cr_assert_eq(invar_experiment_eval(e)->knn.features, INVAR_FEATURES_HEAD);
    cr_assert_eq(invar_experiment_eval(e)->linear.features, INVAR_FEATURES_BACKBONE);
    cr_assert_eq(invar_experiment_eval(e)->knn.size, 0);
    cr_assert_eq(invar_experiment_eval(e)->linear.size, 0);
    cr_assert_eq(invar_experiment_sweep(e)->n_grid, 0);
    invar_experiment_destroy(e);
}

Test(config, framework_tables_pass_the_registry_checks)
{
    struct invar_error err = {{0}};
    cr_assert_eq(cfg_check_framework_tables(&err), INVAR_OK, "%s", err.msg);
}

Test(config, views_list_of_lists)
{
    struct invar_experiment *e =
        load_ok("data: {plugin: idx}\nencoder: {plugin: convnet}\nobjective: {plugin: moco}\n"
                "views:\n  - [{plugin: rotate, degrees: 5}]\n  - []\n  - [{plugin: rotate}, "
                "{plugin: resized_crop, p: 0.25}]\n",
                NULL, 0);
    cr_assert_eq(invar_experiment_n_views(e), 3);
    cr_assert_eq(invar_experiment_train(e)->views, 3);
    cr_assert_eq(invar_experiment_view(e, 0)->n_augs, 1);
    cr_assert_eq(
        ((const struct rotate_config *)invar_experiment_view(e, 0)->augs[0].config)->degrees, 5.0);
    cr_assert_eq(invar_experiment_view(e, 1)->n_augs, 0);
    cr_assert_eq(invar_experiment_view(e, 2)->n_augs, 2);
    cr_assert_eq(invar_experiment_view(e, 2)->augs[1].p, 0.25);
    cr_assert_str_eq(param(e, "views[2][1].plugin"), "resized_crop");
    cr_assert_str_eq(param(e, "train.views"), "3");
    /* the stored form loads back (a run's config is re-read by eval and --resume) */
    struct invar_experiment *again = load_ok(invar_experiment_canonical(e), NULL, 0);
    cr_assert_eq(invar_experiment_n_views(again), 3);
    cr_assert_str_eq(invar_experiment_canonical(again), invar_experiment_canonical(e));
    invar_experiment_destroy(again);
    invar_experiment_destroy(e);
}

Test(config, merge_keys_and_aliases)
{
    struct invar_experiment *e =
        load_ok("data: {plugin: idx}\nencoder: {plugin: convnet}\n"
                "objective: &obj {plugin: moco, momentum: 0.9, queue: 10}\n"
                "optim: {name: adamw, lr: &lr 0.001, final_lr: *lr}\n"
                "augment: [&rot {plugin: rotate, degrees: 3}, {<<: *rot, degrees: 4}]\n",
                NULL, 0);
    cr_assert_eq(invar_experiment_optim(e)->final_lr, 0.001);
    cr_assert_eq(invar_experiment_optim(e)->name, INVAR_OPTIM_NAME_ADAMW);
    const struct invar_view *v = invar_experiment_view(e, 0);
    cr_assert_eq(v->augs[1].plugin, &p_rotate, "merged from the anchor");
    cr_assert_eq(((const struct rotate_config *)v->augs[1].config)->degrees, 4.0,
                 "explicit keys win over merged ones");
    invar_experiment_destroy(e);
}

Test(config, optim_config_in_steps)
{
    struct invar_experiment *e =
        load_ok(SECTIONS "optim: {name: lars, lr: 0.3, warmup_epochs: 2, schedule: step, "
                         "step_epochs: 5, betas: [0.8, 0.9], clip_norm: 2.5}\n",
                NULL, 0);
    struct invar_optim_config oc;
    invar_experiment_optim_config(e, 100, &oc);
    cr_assert_eq(oc.kind, INVAR_OPTIM_LARS);
    cr_assert_eq(oc.schedule, INVAR_SCHED_STEP);
    cr_assert_eq(oc.lr, 0.3);
    cr_assert_eq(oc.warmup_steps, 200);
    cr_assert_eq(oc.step_every, 500);
    cr_assert_eq(oc.beta1, 0.8);
    cr_assert_eq(oc.beta2, 0.9);
    cr_assert_eq(oc.momentum, 0.9);
    cr_assert_eq(oc.clip_norm, 2.5);
    invar_experiment_destroy(e);
}

/* ---- layer 1: the document ---------------------------------------------------------------- */

Test(config, syntax_error_has_libyaml_position)
{
    expect_fail("data: {plugin: idx\nencoder: x\n", NULL, 0,
                "exp.yaml:2:8: data: did not find expected ',' or '}' while parsing a flow "
                "mapping");
    expect_fail("train:\n  epochs: 1\n bad: 2\n", NULL, 0,
                "exp.yaml:3:2: did not find expected key while parsing a block mapping");
}

Test(config, duplicate_keys)
{
    expect_fail(SECTIONS "train:\n  epochs: 1\n  batch_size: 8\n  epochs: 2\n", NULL, 0,
                "exp.yaml:8:3: train.epochs: duplicate key `epochs` (first at line 6, column 3)");
    expect_fail("data: {plugin: idx}\ndata: {plugin: idx}\n", NULL, 0,
                "exp.yaml:2:1: data: duplicate key `data` (first at line 1, column 1)");
}

Test(config, alias_loop)
{
    expect_fail("seed: 1\naugment: &a [{plugin: rotate}, *a]\n", NULL, 0,
                "exp.yaml:2:32: augment[1]: alias `*a` refers to a node that contains it (an "
                "alias loop)");
    expect_fail("seed: *nothing\n", NULL, 0,
                "exp.yaml:1:7: seed: alias `*nothing` names no anchor defined before it");
}

Test(config, billion_laughs_is_bounded)
{
    /* 10^6 nodes once expanded; the bound stops it at 10^5. */
    char text[2048];
    int k = snprintf(text, sizeof text, "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i <= 5; i++)
        k += snprintf(text + k, sizeof text - (size_t)k,
                      "l%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n", i,
                      i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
    struct invar_experiment *e = NULL;
    struct invar_error err = {{0}};
    cr_assert_eq(invar_experiment_load_with(&e, "exp.yaml", text, NULL, 0, plugins, &err),
                 INVAR_ERR_CONFIG);
    cr_assert(strstr(err.msg, "expands to more than 100000 nodes"), "%s", err.msg);
    cr_assert_eq(strncmp(err.msg, "exp.yaml:5:", 11), 0, "fails while expanding l4: %s", err.msg);
    /* The same through merge keys. */
    k = snprintf(text, sizeof text, "m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}\n");
    for (int i = 1; i <= 6; i++)
        k += snprintf(text + k, sizeof text - (size_t)k,
                      "m%d: &m%d {a: *m%d, b: *m%d, c: *m%d, d: *m%d, e: *m%d, f: *m%d, g: *m%d, "
                      "h: *m%d}\n",
                      i, i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
    cr_assert_eq(invar_experiment_load_with(&e, "exp.yaml", text, NULL, 0, plugins, &err),
                 INVAR_ERR_CONFIG);
    cr_assert(strstr(err.msg, "expands to more than 100000 nodes"), "%s", err.msg);
}

Test(config, empty_files)
{
    expect_fail("", NULL, 0,
                "exp.yaml:1:1: empty file (an experiment needs at least `data`, "
                "`encoder` and `objective`)");
    expect_fail("# only a comment\n\n", NULL, 0,
                "exp.yaml:1:1: empty file (an experiment needs at least `data`, `encoder` and "
                "`objective`)");
    expect_fail("---\n...\n", NULL, 0,
                "exp.yaml:1:1: empty file (an experiment needs at least `data`, `encoder` and "
                "`objective`)");
    struct invar_experiment *e;
    struct invar_error err = {{0}};
    char path[4096];
    snprintf(path, sizeof path, "%s", data_path("empty.yaml"));
    cr_assert_eq(invar_experiment_load_with(&e, path, NULL, NULL, 0, plugins, &err),
                 INVAR_ERR_CONFIG);
    char want[8192];
    snprintf(want, sizeof want,
             "%s:1:1: empty file (an experiment needs at least `data`, "
             "`encoder` and `objective`)",
             path);
    cr_assert_str_eq(err.msg, want);
}

Test(config, binary_files)
{
    struct invar_experiment *e;
    struct invar_error err = {{0}};
    char path[4096];
    snprintf(path, sizeof path, "%s", data_path("binary.yaml"));
    cr_assert_eq(invar_experiment_load_with(&e, path, NULL, NULL, 0, plugins, &err),
                 INVAR_ERR_CONFIG);
    char want[8192];
    snprintf(want, sizeof want, "%s:2:1: binary file (a NUL byte)", path);
    cr_assert_str_eq(err.msg, want);
    expect_fail("name: caf\xe9\n", NULL, 0,
                "exp.yaml:1:10: binary file or invalid UTF-8 (byte 0xe9)");
    expect_fail("name: \xc3\xa9t\xc3\xa9\nseed: \xc0\xaf\n", NULL, 0,
                "exp.yaml:2:7: binary file or invalid UTF-8 (byte 0xc0)");
    expect_fail("name: \xed\xa0\x80\n", NULL, 0,
                "exp.yaml:1:7: binary file or invalid UTF-8 (byte 0xed)");
}

Test(config, multiple_documents)
{
    expect_fail(SECTIONS "---\nseed: 2\n", NULL, 0,
                "exp.yaml:5:1: more than one YAML document (an experiment is one document)");
}

Test(config, scalar_needed)
{
    expect_fail(SECTIONS "name: [a, b]\n", NULL, 0,
                "exp.yaml:5:7: name: expected a string, got a list");
    expect_fail(SECTIONS "train: {epochs: {n: 1}}\n", NULL, 0,
                "exp.yaml:5:17: train.epochs: expected an integer, got a map");
    expect_fail(SECTIONS "train: [1]\n", NULL, 0,
                "exp.yaml:5:8: train: expected a map, got a list");
    expect_fail("[1, 2]\n", NULL, 0,
                "exp.yaml:1:1: an experiment is a map of sections (`data:`, `encoder:`, ...), "
                "not a list");
    expect_fail(SECTIONS "{a: 1}: 2\n", NULL, 0, "exp.yaml:5:1: a key must be a scalar");
}

Test(config, nesting_is_bounded)
{
    /* Each alias nests the last one a level deeper: 70 levels once expanded. */
    char deep[4096];
    int n = snprintf(deep, sizeof deep, "a0: &a0 [1]\n");
    for (int i = 1; i < 70; i++)
        n += snprintf(deep + n, sizeof deep - (size_t)n, "a%d: &a%d [*a%d]\n", i, i, i - 1);
    struct invar_experiment *e;
    struct invar_error err = {{0}};
    cr_assert_eq(invar_experiment_load_with(&e, "exp.yaml", deep, NULL, 0, plugins, &err),
                 INVAR_ERR_CONFIG);
    cr_assert(strstr(err.msg, "nesting deeper than 64 levels once aliases are expanded"), "%s",
              err.msg);
    char text[512];
    int k = snprintf(text, sizeof text, "seed: ");
    for (int i = 0; i < 100; i++)
        text[k++] = '[';
    text[k] = '\0';
    expect_fail(text, NULL, 0,
                "exp.yaml:1:70: seed[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: nesting deeper than 64 "
                "levels");
}

/* ---- layer 3: typing ---------------------------------------------------------------------- */

Test(config, unknown_keys_suggest)
{
    expect_fail(SECTIONS "train: {epoch: 5}\n", NULL, 0,
                "exp.yaml:5:9: train.epoch: unknown key `epoch`, did you mean `epochs`?");
    expect_fail(SECTIONS "optimizer: {lr: 0.1}\n", NULL, 0,
                "exp.yaml:5:1: optimizer: unknown section `optimizer`, did you mean `optim`?");
    expect_fail(
        "data: {plugin: idx, pth: /x}\nencoder: {plugin: convnet}\nobjective: {plugin: moco}\n",
        NULL, 0, "exp.yaml:1:21: data.pth: unknown key `pth`, did you mean `path`?");
    expect_fail(SECTIONS "eval: {knn: {kk: 3}}\n", NULL, 0,
                "exp.yaml:5:14: eval.knn.kk: unknown key `kk`, did you mean `k`?");
    expect_fail(SECTIONS "eval: {linear: {features: pooled}}\n", NULL, 0,
                "exp.yaml:5:27: eval.linear.features: 'pooled' is not one of head|backbone");
    expect_fail(SECTIONS "eval: {knn: {size: -2}}\n", NULL, 0,
                "exp.yaml:5:20: eval.knn.size: -2 is out of range [0, 4096]");
    expect_fail(SECTIONS "eval: {size: 22}\n", NULL, 0,
                "exp.yaml:5:8: eval.size: unknown key `size` (valid: knn, linear)");
    expect_fail(SECTIONS "train: {zzzzzz: 1}\n", NULL, 0,
                "exp.yaml:5:9: train.zzzzzz: unknown key `zzzzzz` (valid: epochs, batch_size, "
                "threads, views, checkpoint_every, log_every)");
}

Test(config, wrong_types_and_ranges)
{
    expect_fail(SECTIONS "train: {epochs: five}\n", NULL, 0,
                "exp.yaml:5:17: train.epochs: expected an integer, got 'five'");
    expect_fail(SECTIONS "train: {epochs: 2.5}\n", NULL, 0,
                "exp.yaml:5:17: train.epochs: expected an integer, got '2.5'");
    expect_fail(SECTIONS "train: {epochs: 0}\n", NULL, 0,
                "exp.yaml:5:17: train.epochs: 0 is out of range [1, 1000000]");
    expect_fail(SECTIONS "objective: {plugin: moco, momentum: \"0.9\"}\n", NULL, 0,
                "exp.yaml:5:1: objective: duplicate key `objective` (first at line 4, column 1)");
    expect_fail("data: {plugin: idx}\nencoder: {plugin: convnet}\n"
                "objective: {plugin: moco, momentum: \"0.9\"}\n",
                NULL, 0,
                "exp.yaml:3:37: objective.momentum: expected a number, got the string \"0.9\" "
                "(a quoted value stays a string)");
    expect_fail(SECTIONS "data: {normalize: yes}\n", NULL, 0,
                "exp.yaml:5:1: data: duplicate key `data` (first at line 1, column 1)");
    expect_fail("data: {plugin: idx, normalize: yes}\nencoder: {plugin: convnet}\n"
                "objective: {plugin: moco}\n",
                NULL, 0, "exp.yaml:1:32: data.normalize: expected true or false, got 'yes'");
    expect_fail(SECTIONS "optim: {name: sdg}\n", NULL, 0,
                "exp.yaml:5:15: optim.name: 'sdg' is not one of sgd|lars|adamw");
    expect_fail(SECTIONS "optim: {betas: [0.99, 0.9]}\n", NULL, 0,
                "exp.yaml:5:16: optim.betas: lo 0.99 is greater than hi 0.9");
    struct invar_experiment *e;
    struct invar_error err = {{0}};
    cr_assert_eq(
        invar_experiment_load_with(&e, "exp.yaml",
                                   "data: {plugin: idx}\n"
                                   "encoder: {plugin: convnet}\nobjective: {plugin: moco}\n"
                                   "augment: [{plugin: rotate, degrees: 500}]\n",
                                   NULL, 0, plugins, &err),
        INVAR_ERR_CONFIG);
    /* The bounds' spelling is the registry's business. */
    const char *want = "exp.yaml:4:37: augment[0].degrees: 500 is out of range [0, ";
    cr_assert_eq(strncmp(err.msg, want, strlen(want)), 0, "%s", err.msg);
    expect_fail("data: {plugin: idx}\nencoder: {plugin: convnet}\nobjective: {plugin: moco}\n"
                "augment: [{plugin: rotate, p: 1.5}]\n",
                NULL, 0, "exp.yaml:4:31: augment[0].p: 1.5 is out of range [0, 1]");
}

Test(config, plugins_unknown_missing_or_of_another_kind)
{
    expect_fail("data: {plugin: idx}\nencoder: {plugin: convnt}\nobjective: {plugin: moco}\n", NULL,
                0,
                "exp.yaml:2:19: encoder.plugin: unknown encoder plugin `convnt`, did "
                "you mean `convnet`?");
    expect_fail("data: {plugin: idx}\nencoder: {plugin: moco}\nobjective: {plugin: moco}\n", NULL,
                0,
                "exp.yaml:2:19: encoder.plugin: `moco` is an objective plugin, not an "
                "encoder plugin");
    expect_fail("data: {plugin: idx}\nobjective: {plugin: moco}\n", NULL, 0,
                "exp.yaml:1:1: encoder: missing (every experiment names its encoder plugin: "
                "`encoder: {plugin: NAME}`)");
    expect_fail("data: {plugin: idx}\nencoder: {width: 3}\nobjective: {plugin: moco}\n", NULL, 0,
                "exp.yaml:2:10: encoder.plugin: missing: which encoder plugin?");
}

Test(config, plugin_check_and_registry)
{
    expect_fail("data: {plugin: idx}\nencoder: {plugin: convnet, width: 100}\n"
                "objective: {plugin: moco}\n",
                NULL, 0, "exp.yaml:2:10: encoder: convnet: width 100 exceeds dim 64");
    expect_fail("data: {plugin: idx}\nencoder: {plugin: convnet}\nobjective: {plugin: moco}\n"
                "augment: [{plugin: clash}]\n",
                NULL, 0, "plugin clash: parameter `p` clashes with the framework's `augment.p`");
    /* Through a registry: an empty one knows no plugins, and says so. */
    struct invar_registry *reg;
    cr_assert_eq(invar_registry_create(&reg), INVAR_OK);
    struct invar_experiment *e;
    struct invar_error err = {{0}};
    cr_assert_eq(invar_experiment_load_string(&e, "exp.yaml", SECTIONS, NULL, 0, reg, &err),
                 INVAR_ERR_CONFIG);
    cr_assert_str_eq(err.msg, "exp.yaml:1:16: data.plugin: unknown dataset plugin `idx` (no "
                              "dataset plugins are loaded)");
    invar_registry_destroy(reg);
}

Test(config, views_conflicts)
{
    expect_fail(SECTIONS "views: [[]]\n", NULL, 0,
                "exp.yaml:5:1: views: give either `augment` (one list for every view) or "
                "`views`, not both");
    expect_fail("data: {plugin: idx}\nencoder: {plugin: convnet}\nobjective: {plugin: moco}\n"
                "views: [[], []]\ntrain: {views: 3}\n",
                NULL, 0, "exp.yaml:5:16: train.views: is 3 but `views` lists 2 views");
}

/* ---- layer 2: overrides and base ---------------------------------------------------------- */

Test(config, override_typing)
{
    const char *ov[] = {"objective.momentum=1e-4",
                        "data.limit=2048",
                        "data.holdout=500",
                        "data.normalize=false",
                        "augment[1].degrees=30",
                        "augment[0].scale=[0.2,1.0]",
                        "data.path=/a b: c",
                        "train.epochs=1",
                        "eval.knn.k=20",
                        "name=\"123\""};
    struct invar_experiment *e = load_ok(SECTIONS, ov, sizeof ov / sizeof ov[0]);
    cr_assert_eq(((const struct moco_config *)invar_experiment_objective(e)->config)->momentum,
                 1e-4);
    cr_assert_eq(invar_experiment_data(e)->limit, 2048);
    cr_assert_eq(invar_experiment_data(e)->holdout, 500);
    cr_assert_eq(invar_experiment_data(e)->normalize, 0);
    cr_assert_str_eq(((const struct idx_config *)invar_experiment_data(e)->use.config)->path,
                     "/a b: c");
    const struct invar_view *v = invar_experiment_view(e, 0);
    cr_assert_eq(((const struct rotate_config *)v->augs[1].config)->degrees, 30.0);
    cr_assert_eq(((const struct crop_config *)v->augs[0].config)->scale[0], 0.2);
    cr_assert_eq(invar_experiment_train(e)->epochs, 1);
    cr_assert_eq(invar_experiment_eval(e)->knn.k, 20);
    cr_assert_str_eq(invar_experiment_name(e), "123");
    invar_experiment_destroy(e);
    /* A whole list replaced from the command line. */
    const char *none[] = {"augment=[]", "train.views=4"};
    e = load_ok(SECTIONS, none, 2);
    cr_assert_eq(invar_experiment_n_views(e), 4);
    cr_assert_eq(invar_experiment_view(e, 3)->n_augs, 0);
    cr_assert_str_eq(param(e, "augment"), "[]");
    invar_experiment_destroy(e);
    /* One past the end appends: a new augmentation on top of a file's chain. */
    const char *append[] = {"augment[2]={plugin: rotate, degrees: 7, p: 0.25}",
                            "augment[2].degrees=8"};
    e = load_ok(SECTIONS, append, 2);
    const struct invar_view *av = invar_experiment_view(e, 0);
    cr_assert_eq(av->n_augs, 3);
    cr_assert_eq(av->augs[1].plugin, &p_rotate);
    cr_assert_eq(((const struct rotate_config *)av->augs[1].config)->degrees, 15.0);
    cr_assert_eq(av->augs[2].plugin, &p_rotate);
    cr_assert_eq(av->augs[2].p, 0.25);
    cr_assert_eq(((const struct rotate_config *)av->augs[2].config)->degrees, 8.0);
    cr_assert_str_eq(param(e, "augment[2].degrees"), "8");
    invar_experiment_destroy(e);
    const char *one[] = {"augment=[{plugin: rotate, degrees: 1e1}]"};
    e = load_ok(SECTIONS, one, 1);
    cr_assert_eq(invar_experiment_view(e, 0)->n_augs, 1);
    cr_assert_eq(
        ((const struct rotate_config *)invar_experiment_view(e, 0)->augs[0].config)->degrees, 10.0);
    invar_experiment_destroy(e);
}

Test(config, override_errors)
{
    const char *quoted[] = {"objective.momentum=\"1e-4\""};
    expect_fail(SECTIONS, quoted, 1,
                "<command line>: objective.momentum=\"1e-4\": objective.momentum: expected a "
                "number, got the string \"1e-4\" (a quoted value stays a string)");
    const char *unknown[] = {"train.epoch=5"};
    expect_fail(SECTIONS, unknown, 1,
                "<command line>: train.epoch=5: train.epoch: unknown key `epoch`, did you mean "
                "`epochs`?");
    const char *section[] = {"objectiv.momentum=0.9"};
    expect_fail(SECTIONS, section, 1,
                "<command line>: objectiv.momentum=0.9: objectiv: unknown section `objectiv`, "
                "did you mean `objective`?");
    const char *index[] = {"augment[5].degrees=1"};
    expect_fail(SECTIONS, index, 1,
                "<command line>: augment[5].degrees=1: augment: index [5] is out of range (the "
                "list has 2 items)");
    const char *gap[] = {"augment[3]={plugin: rotate}"};
    expect_fail(SECTIONS, gap, 1,
                "<command line>: augment[3]={plugin: rotate}: augment: index [3] is out of range "
                "(the list has 2 items; [2] appends one)");
    const char *noeq[] = {"train.epochs"};
    expect_fail(SECTIONS, noeq, 1,
                "<command line>: train.epochs: expected KEY=VALUE (like train.epochs=10)");
    const char *badkey[] = {"train..epochs=1"};
    expect_fail(SECTIONS, badkey, 1,
                "<command line>: train..epochs=1: `train..epochs` is not a key path (like "
                "augment[1].degrees)");
    const char *type[] = {"train.epochs=true"};
    expect_fail(SECTIONS, type, 1,
                "<command line>: train.epochs=true: train.epochs: expected an integer, got "
                "'true'");
    const char *flow[] = {"augment[0].scale=[0.2, 1.0"};
    expect_fail(SECTIONS, flow, 1,
                "<command line>: augment[0].scale=[0.2, 1.0: did not find expected ',' or ']' "
                "while parsing a flow sequence");
    const char *deep[] = {"seed.x=1"};
    expect_fail(SECTIONS "seed: 4\n", deep, 1,
                "<command line>: seed.x=1: seed: not a map, so it has no key `x`");
}

Test(config, base_inheritance)
{
    struct invar_experiment *e;
    struct invar_error err = {{0}};
    cr_assert_eq(
        invar_experiment_load_with(&e, data_path("child.yaml"), NULL, NULL, 0, plugins, &err),
        INVAR_OK, "%s", err.msg);
    cr_assert_str_eq(invar_experiment_name(e), "child");
    cr_assert_eq(invar_experiment_seed(e), 3, "inherited");
    const struct moco_config *m = invar_experiment_objective(e)->config;
    cr_assert_eq(m->momentum, 0.99, "overridden inside a merged map");
    cr_assert_eq(m->queue, 4096, "kept from the base");
    cr_assert_eq(invar_experiment_data(e)->limit, 1000);
    cr_assert_eq(invar_experiment_train(e)->epochs, 5);
    cr_assert_eq(invar_experiment_train(e)->batch_size, 256);
    cr_assert_eq(invar_experiment_view(e, 0)->n_augs, 1, "lists replace, never merge");
    cr_assert_eq(invar_experiment_view(e, 0)->augs[0].plugin, &p_rotate);
    invar_experiment_destroy(e);

    /* Two levels, through a relative path; overrides apply on top of the merge. */
    const char *ov[] = {"objective.queue=64"};
    cr_assert_eq(
        invar_experiment_load_with(&e, data_path("grandchild.yaml"), NULL, ov, 1, plugins, &err),
        INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_experiment_seed(e), 9);
    cr_assert_str_eq(invar_experiment_name(e), "child");
    m = invar_experiment_objective(e)->config;
    cr_assert_eq(m->momentum, 0.99);
    cr_assert_eq(m->queue, 64);
    invar_experiment_destroy(e);

    /* Errors in an inherited file name that file. */
    char dir[4096], text[8192], want[8192];
    snprintf(dir, sizeof dir, "%s", data_path("inline.yaml"));
    snprintf(text, sizeof text, "base: base.yaml\ntrain: {epochs: 2}\nencoder: {widht: 3}\n");
    cr_assert_eq(invar_experiment_load_with(&e, dir, text, NULL, 0, plugins, &err),
                 INVAR_ERR_CONFIG);
    snprintf(want, sizeof want,
             "%s:3:11: encoder.widht: unknown key `widht`, did you mean "
             "`width`?",
             dir);
    cr_assert_str_eq(err.msg, want);
    snprintf(text, sizeof text, "base: base.yaml\n");
    const char *bad[] = {"encoder.dim=0"};
    cr_assert_eq(invar_experiment_load_with(&e, dir, text, bad, 1, plugins, &err),
                 INVAR_ERR_CONFIG);
    cr_assert_str_eq(err.msg, "<command line>: encoder.dim=0: encoder.dim: 0 is out of range "
                              "[1, 4096]");
    snprintf(text, sizeof text, "base: base.yaml\nobjective: {plugin: mocov2}\n");
    cr_assert_eq(invar_experiment_load_with(&e, dir, text, NULL, 0, plugins, &err),
                 INVAR_ERR_CONFIG);
    snprintf(want, sizeof want,
             "%s:2:21: objective.plugin: unknown objective plugin `mocov2`, "
             "did you mean `moco`?",
             dir);
    cr_assert_str_eq(err.msg, want);
    const char *base_ov[] = {"base=base.yaml"};
    expect_fail(SECTIONS, base_ov, 1,
                "<command line>: base=base.yaml: base: `base:` works inside a file only");
}

Test(config, base_cycles_and_missing)
{
    struct invar_experiment *e;
    struct invar_error err = {{0}};
    char a[4096], want[16384];
    snprintf(a, sizeof a, "%s", data_path("cycle_a.yaml"));
    cr_assert_eq(invar_experiment_load_with(&e, a, NULL, NULL, 0, plugins, &err), INVAR_ERR_CONFIG);
    const char *root = getenv("INVAR_TEST_DATA");
    /* Paths are joined as written: the including file's directory, then the base name. */
    snprintf(want, sizeof want,
             "%s/config/cycle_b.yaml:2:7: base: `%s/config/cycle_b.yaml` "
             "includes `%s` again (a cycle of base files)",
             root, root, a);
    cr_assert_str_eq(err.msg, want);

    snprintf(a, sizeof a, "%s", data_path("missing_base.yaml"));
    cr_assert_eq(invar_experiment_load_with(&e, a, NULL, NULL, 0, plugins, &err), INVAR_ERR_IO);
    snprintf(want, sizeof want,
             "%s:1:7: base: cannot open `%s/config/nowhere.yaml`: No such "
             "file or directory",
             a, root);
    cr_assert_str_eq(err.msg, want);

    cr_assert_eq(
        invar_experiment_load_with(&e, "/nonexistent/x.yaml", NULL, NULL, 0, plugins, &err),
        INVAR_ERR_IO);
    cr_assert_str_eq(err.msg, "/nonexistent/x.yaml: No such file or directory");
}

/* ---- layer 4: canonical form, hash, pairs ------------------------------------------------- */

static void hash_of(const char *text, const char *const *ov, size_t n, char out[65])
{
    struct invar_experiment *e = load_ok(text, ov, n);
    memcpy(out, invar_experiment_hash(e), 65);
    cr_assert_eq(strlen(out), 64);
    invar_experiment_destroy(e);
}

Test(config, hash_ignores_spelling)
{
    char h0[65], h[65];
    hash_of("seed: 1\n"
            "data: {plugin: idx, path: /d}\n"
            "encoder: {plugin: convnet, width: 32}\n"
            "objective: {plugin: moco, momentum: 0.999, temperature: 0.07}\n"
            "optim: {lr: 0.001, weight_decay: 5e-4}\n"
            "augment: [{plugin: rotate, degrees: 15}]\n",
            NULL, 0, h0);
    /* Key order, number spelling, quoting of strings, comments, flow vs block, defaults
     * written out: the same experiment. */
    hash_of("# the same experiment, spelled differently\n"
            "augment:\n"
            "  - degrees: 15.0   # a float written with a point\n"
            "    plugin: 'rotate'\n"
            "    p: 1\n"
            "optim:\n"
            "  weight_decay: 0.0005\n"
            "  lr: 1.0e-3\n"
            "  name: sgd\n"
            "objective:\n"
            "  temperature: 7e-2\n"
            "  momentum: 0.9990\n"
            "  plugin: moco\n"
            "encoder: {width: 32, plugin: \"convnet\", dim: 64}\n"
            "data: {path: \"/d\", plugin: idx}\n"
            "train: {views: 2}\n"
            "seed: 1\n",
            NULL, 0, h);
    cr_assert_str_eq(h, h0);
    /* An override gives the same experiment as the file edit. */
    const char *ov[] = {"objective.momentum=0.99"};
    hash_of("seed: 1\n"
            "data: {plugin: idx, path: /d}\n"
            "encoder: {plugin: convnet, width: 32}\n"
            "objective: {plugin: moco, momentum: 0.999, temperature: 0.07}\n"
            "optim: {lr: 0.001, weight_decay: 5e-4}\n"
            "augment: [{plugin: rotate, degrees: 15}]\n",
            ov, 1, h);
    char h2[65];
    hash_of("seed: 1\n"
            "data: {plugin: idx, path: /d}\n"
            "encoder: {plugin: convnet, width: 32}\n"
            "objective: {plugin: moco, momentum: 0.99, temperature: 0.07}\n"
            "optim: {lr: 0.001, weight_decay: 5e-4}\n"
            "augment: [{plugin: rotate, degrees: 15}]\n",
            NULL, 0, h2);
    cr_assert_str_eq(h, h2);
    cr_assert_str_neq(h, h0, "a changed value changes the hash");
}

Test(config, hash_sees_every_change_but_not_the_sweep)
{
    char h0[65], h[65];
    hash_of(SECTIONS, NULL, 0, h0);
    static const char *const changes[] = {
        "seed=1",
        "name=other",
        "data.limit=10",
        "data.path=/data/fmnisT",
        "augment[1].p=0.25",
        "augment[0].scale=[0.3, 0.9]",
        "encoder.dim=65",
        "objective.symmetric=true",
        "optim.name=adamw",
        "train.views=3",
        "eval.linear.lr=0.2",
    };
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        hash_of(SECTIONS, &changes[i], 1, h);
        cr_assert_str_neq(h, h0, "%s must change the hash", changes[i]);
    }
    hash_of(SECTIONS "sweep: {grid: {objective.momentum: [0.9, 0.99]}, seeds: [1, 2]}\n", NULL, 0,
            h);
    cr_assert_str_eq(h, h0, "the sweep block is not hashed");
}

Test(config, canonical_text_round_trips)
{
    struct invar_experiment *e = load_ok("name: \"quote\\\" and \\\\ back\"\n" SECTIONS, NULL, 0);
    const char *canon = invar_experiment_canonical(e);
    cr_assert_str_eq(invar_experiment_name(e), "quote\" and \\ back");
    /* Sorted keys: augment < data < encoder < eval < name < objective < optim < seed < train. */
    const char *order[] = {"augment:",   "data:",  "encoder:", "eval:", "name:",
                           "objective:", "optim:", "seed:",    "train:"};
    const char *at = canon;
    for (size_t i = 0; i < 9; i++) {
        char line[32];
        snprintf(line, sizeof line, "\n%s", order[i]);
        const char *p =
            i == 0 ? (strncmp(canon, order[0], 8) == 0 ? canon : NULL) : strstr(at, line);
        cr_assert_not_null(p, "%s after the previous section in:\n%s", order[i], canon);
        at = p + 1;
    }
    cr_assert(strstr(canon, "\nobjective:\n  momentum: 0.999\n"), "%s", canon);
    cr_assert(strstr(canon, "  - p: 1\n    plugin: \"resized_crop\"\n"), "%s", canon);
    /* Loading the canonical text gives the same experiment and the same text. */
    struct invar_experiment *again = load_ok(canon, NULL, 0);
    cr_assert_str_eq(invar_experiment_canonical(again), canon);
    cr_assert_str_eq(invar_experiment_hash(again), invar_experiment_hash(e));
    invar_experiment_destroy(again);
    invar_experiment_destroy(e);
}

Test(config, flattened_pairs)
{
    const char *ov[] = {"data.limit=2048", "eval.linear.size=22"};
    struct invar_experiment *e = load_ok(SECTIONS, ov, 2);
    cr_assert_eq(invar_experiment_eval(e)->linear.size, 22);
    cr_assert_str_eq(param(e, "objective.momentum"), "0.999");
    cr_assert_str_eq(param(e, "objective.plugin"), "moco");
    cr_assert_str_eq(param(e, "augment[0].plugin"), "resized_crop");
    cr_assert_str_eq(param(e, "augment[0].scale"), "[0.3, 1]");
    cr_assert_str_eq(param(e, "augment[1].p"), "0.5");
    cr_assert_str_eq(param(e, "data.limit"), "2048");
    cr_assert_str_eq(param(e, "data.path"), "/data/fmnist");
    cr_assert_str_eq(param(e, "optim.betas"), "[0.9, 0.999]");
    cr_assert_str_eq(param(e, "optim.eps"), "1e-8");
    cr_assert_str_eq(param(e, "eval.knn.k"), "200");
    cr_assert_str_eq(param(e, "eval.knn.features"), "head");
    cr_assert_str_eq(param(e, "eval.linear.features"), "backbone");
    cr_assert_str_eq(param(e, "eval.knn.size"), "0");
    cr_assert_str_eq(param(e, "eval.linear.size"), "22");
    cr_assert_str_eq(param(e, "name"), "exp");
    cr_assert_null(param(e, "sweep"));
    /* Keys are unique and sorted. */
    for (size_t i = 1; i < invar_experiment_n_params(e); i++) {
        const char *k0, *k1, *v;
        invar_experiment_param(e, i - 1, &k0, &v);
        invar_experiment_param(e, i, &k1, &v);
        cr_assert_neq(strcmp(k0, k1), 0);
    }
    invar_experiment_destroy(e);
}

/* ---- the sweep block ---------------------------------------------------------------------- */

Test(config, sweep_block)
{
    struct invar_experiment *e =
        load_ok(SECTIONS "sweep:\n"
                         "  grid:\n"
                         "    objective.momentum: [0.9, 0.99, 1e-3]\n"
                         "    augment[1].degrees: [0, 30]\n"
                         "  zip: {optim.lr: [0.1, 0.2], optim.name: [sgd, lars]}\n"
                         "  seeds: [1, 2, 3]\n",
                NULL, 0);
    const struct invar_sweep *s = invar_experiment_sweep(e);
    cr_assert_eq(s->n_grid, 2);
    cr_assert_str_eq(s->grid[0].key, "objective.momentum");
    cr_assert_eq(s->grid[0].n_values, 3);
    cr_assert_str_eq(s->grid[0].values[2], "1e-3");
    cr_assert_str_eq(s->grid[1].key, "augment[1].degrees");
    cr_assert_eq(s->n_zip, 2);
    cr_assert_str_eq(s->zip[1].values[1], "lars");
    cr_assert_eq(s->n_seeds, 3);
    cr_assert_eq(s->seeds[2], 3);
    invar_experiment_destroy(e);

    expect_fail(SECTIONS "sweep: {grid: {objective.momentun: [0.9]}}\n", NULL, 0,
                "exp.yaml:5:16: objective.momentun: unknown key `momentun`, did you mean "
                "`momentum`?");
    expect_fail(SECTIONS "sweep: {grid: {objective.momentum: [0.9, \"x\"]}}\n", NULL, 0,
                "exp.yaml:5:42: objective.momentum: expected a "
                "number, got the string \"x\" (a quoted value stays a string)");
    expect_fail(SECTIONS "sweep: {zip: {optim.lr: [0.1, 0.2], optim.name: [sgd]}}\n", NULL, 0,
                "exp.yaml:5:49: sweep.zip.optim.name: has 1 values but `optim.lr` has 2 (zip "
                "axes advance together)");
    expect_fail(SECTIONS "sweep: {grids: {}}\n", NULL, 0,
                "exp.yaml:5:9: sweep.grids: unknown key `grids`, did you mean `grid`?");
    expect_fail(SECTIONS "sweep: {seeds: [1, x]}\n", NULL, 0,
                "exp.yaml:5:20: sweep.seeds[1]: expected an integer, got 'x'");
}

/* ---- SHA-256 against FIPS 180-4 / NIST CAVS vectors ------------------------------------- */

Test(config, sha256_vectors)
{
    char hex[65];
    invar_sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    invar_sha256_hex("", 0, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    invar_sha256_hex(two, strlen(two), hex);
    cr_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *four = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
                       "jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    invar_sha256_hex(four, strlen(four), hex);
    cr_assert_str_eq(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    char *million = malloc(1000000);
    memset(million, 'a', 1000000);
    invar_sha256_hex(million, 1000000, hex);
    free(million);
    cr_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
