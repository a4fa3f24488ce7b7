/* Encoder plugins (convnet, mlp) through the public API: output shapes for each head and input
 * size, parameter and buffer counts worked out from the architecture, a finite-difference
 * gradient of the features w.r.t. the input in training mode, and train vs eval batch-norm. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "invar/graph.h"
#include "invar/registry.h"
#include "invar/train.h"

#include "gradcheck.h"

static struct invar_registry *reg;
static void *configs[16];
static int n_configs;

static void suite_init(void)
{
    struct invar_error err = {0};
    cr_assert_eq(invar_registry_create(&reg), INVAR_OK);
    cr_assert_eq(invar_registry_scan(reg, NULL, &err), INVAR_OK, "%s", err.msg);
}

static void suite_fini(void)
{
    for (int i = 0; i < n_configs; i++)
        invar_plugin_config_destroy(configs[i]);
    n_configs = 0;
    invar_registry_destroy(reg);
    reg = NULL;
}

TestSuite(encoders, .init = suite_init, .fini = suite_fini);

/* An encoder plugin with its defaults and the given KEY, VALUE pairs (NULL-terminated). */
static struct invar_plugin_use encoder_use(const char *name, const char *const *kv)
{
    const struct invar_registry_entry *e = invar_registry_find(reg, INVAR_KIND_ENCODER, name);
    cr_assert_not_null(e, "encoder %s is not in the build tree", name);
    struct invar_error err = {0};
    void *cfg = NULL;
    cr_assert_eq(invar_plugin_config_create(e->desc, &cfg, &err), INVAR_OK, "%s", err.msg);
    cr_assert_lt(n_configs, 16);
    configs[n_configs++] = cfg;
    for (; kv && kv[0]; kv += 2) {
        const struct invar_param_spec *s = invar_param_find(e->desc->params, kv[0]);
        cr_assert_not_null(s, "%s has no parameter %s", name, kv[0]);
        cr_assert_eq(invar_param_set(s, cfg, kv[1], 0, &err), INVAR_OK, "%s", err.msg);
    }
    return (struct invar_plugin_use){e->desc, cfg, 1};
}

static struct invar_encoder *encoder_new(const char *name, const char *const *kv,
                                         const int64_t in[3])
{
    struct invar_plugin_use use = encoder_use(name, kv);
    struct invar_encoder *enc = NULL;
    struct invar_error err = {0};
    cr_assert_eq(invar_encoder_create(&enc, &use, in, 7, &err), INVAR_OK, "%s", err.msg);
    return enc;
}

/* Uniform [-1, 1) inputs (N, C, H, W) in g's arena. */
static struct invar_tensor *random_input(struct invar_graph *g, int64_t n, const int64_t in[3],
                                         uint64_t seed)
{
    struct invar_tensor *x = invar_graph_tensor(g, 4, (int64_t[]){n, in[0], in[1], in[2]});
    struct invar_rng r;
    invar_rng_init(&r, seed, 0);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = invar_rng_range(&r, -1, 1);
    return x;
}

static size_t tensor_count(struct invar_params *p, unsigned flag)
{
    size_t n = 0;
    for (size_t i = 0; i < invar_params_count(p); i++) {
        unsigned f;
        invar_params_at(p, i, NULL, &f);
        n += (f & flag) != 0;
    }
    return n;
}

/* ---- shapes and counts ---------------------------------------------------------------------- */

struct shape_case {
    const char *head;
    int64_t c, hw;
    int64_t dim;    /* expected feature size */
    size_t weights; /* trainable floats */
};

/* width 0.5: channels 16, 16, 32, 32, 64. Conv weights (no bias):
 *   16*C*9 + 16*16*9 + 32*16*9 + 32*32*9 + 64*32*9 = 144C + 2304 + 4608 + 9216 + 18432
 * BN gamma+beta: 2*(16+16+32+32+64) = 320, running mean+var the same 320 as buffers.
 * Heads on the 64 pooled features: linear 64*16+16 = 1040; mlp (hidden 32) 64*32+32 + 32*16+16
 * = 2608; none adds nothing and leaves 64 features. */
static const struct shape_case shape_cases[] = {
    {"linear", 1, 28, 16, 144 + 34560 + 320 + 1040},
    {"mlp", 1, 28, 16, 144 + 34560 + 320 + 2608},
    {"none", 1, 28, 64, 144 + 34560 + 320},
    {"linear", 3, 32, 16, 432 + 34560 + 320 + 1040},
    {"mlp", 3, 32, 16, 432 + 34560 + 320 + 2608},
    {"none", 3, 32, 64, 432 + 34560 + 320},
};

Test(encoders, convnet_shapes_and_counts)
{
    for (size_t k = 0; k < sizeof shape_cases / sizeof *shape_cases; k++) {
        const struct shape_case *c = &shape_cases[k];
        int64_t in[3] = {c->c, c->hw, c->hw};
        struct invar_encoder *enc = encoder_new(
            "convnet",
            (const char *[]){"width", "0.5", "dim", "16", "hidden", "32", "head", c->head, NULL},
            in);
        struct invar_params *p = invar_encoder_params(enc);
        cr_expect_eq(invar_encoder_dim(enc), c->dim, "%s %lld: dim %lld", c->head, (long long)c->hw,
                     (long long)invar_encoder_dim(enc));
        cr_expect_eq(invar_params_numel(p), c->weights, "%s %lld: %zu weights", c->head,
                     (long long)c->hw, invar_params_numel(p));
        cr_expect_eq(invar_params_buffer_numel(p), 320u);
        /* five conv-BN units: w, gamma, beta + 2 buffers each; heads 2, 4 or 0 tensors */
        size_t head_tensors = strcmp(c->head, "linear") == 0 ? 2
                              : strcmp(c->head, "mlp") == 0  ? 4
                                                             : 0;
        cr_expect_eq(invar_params_count(p), 25 + head_tensors);
        cr_expect_eq(tensor_count(p, INVAR_P_BUFFER), 10u);

        struct invar_graph *g = invar_graph_create(1 << 22);
        struct invar_tensor *y = invar_encoder_forward(enc, g, random_input(g, 3, in, k));
        cr_expect_eq(y->ndim, 2);
        cr_expect_eq(y->shape[0], 3);
        cr_expect_eq(y->shape[1], c->dim);
        for (int64_t i = 0; i < y->numel; i++)
            cr_assert(isfinite(y->data[i]));
        invar_graph_destroy(g);
        invar_encoder_destroy(enc);
    }
}

Test(encoders, mlp_shapes_and_counts)
{
    int64_t in[3] = {1, 28, 28};
    struct invar_encoder *enc =
        encoder_new("mlp", (const char *[]){"hidden", "32", "depth", "2", "dim", "16", NULL}, in);
    struct invar_params *p = invar_encoder_params(enc);
    cr_expect_eq(invar_encoder_dim(enc), 16);
    /* fc1 784*32 (no bias, BN follows) + bn1 64 + fc2 32*32 + bn2 64 + out 32*16+16 */
    cr_expect_eq(invar_params_numel(p), 25088u + 64 + 1024 + 64 + 528);
    cr_expect_eq(invar_params_buffer_numel(p), 128u);
    cr_expect_eq(invar_params_count(p), 12u);

    struct invar_graph *g = invar_graph_create(1 << 20);
    struct invar_tensor *y = invar_encoder_forward(enc, g, random_input(g, 4, in, 3));
    cr_expect_eq(y->shape[0], 4);
    cr_expect_eq(y->shape[1], 16);
    invar_graph_destroy(g);
    invar_encoder_destroy(enc);

    /* depth 0 is one linear layer: y = W x + b, checked against the weights */
    int64_t in2[3] = {1, 1, 3};
    enc = encoder_new("mlp", (const char *[]){"depth", "0", "dim", "2", NULL}, in2);
    p = invar_encoder_params(enc);
    cr_assert_eq(invar_params_numel(p), 8u);
    struct invar_tensor *w = invar_params_find(p, "out.w"), *b = invar_params_find(p, "out.b");
    cr_assert_not_null(w);
    cr_assert_not_null(b);
    g = invar_graph_create(1 << 16);
    struct invar_tensor *x = random_input(g, 2, in2, 5);
    y = invar_encoder_forward(enc, g, x);
    for (int64_t n = 0; n < 2; n++)
        for (int64_t o = 0; o < 2; o++) {
            double want = b->data[o];
            for (int64_t i = 0; i < 3; i++)
                want += (double)w->data[o * 3 + i] * x->data[n * 3 + i];
            cr_expect_float_eq(y->data[n * 2 + o], want, 1e-6);
        }
    invar_graph_destroy(g);
    invar_encoder_destroy(enc);
}

/* ---- gradients -------------------------------------------------------------------------- */

static struct invar_tensor *forward_fn(struct invar_graph *g, struct invar_tensor **in, void *ctx)
{
    return invar_encoder_forward(ctx, g, in[0]);
}

Test(encoders, convnet_input_gradient_in_training_mode)
{
    int64_t in[3] = {1, 8, 8};
    struct invar_encoder *enc = encoder_new(
        "convnet",
        (const char *[]){"width", "0.125", "dim", "3", "head", "mlp", "hidden", "5", NULL}, in);
    struct invar_tensor *x = gc_tensor(4, (int64_t[]){2, 1, 8, 8}, 1);
    /* training mode is the graph's default: batch statistics, so the two samples interact */
    double worst = gc_check(forward_fn, &x, 1, enc, 1e-3, 2e-2);
    cr_log_info("convnet input gradient: worst scaled error %.3g", worst);
    gc_free(x);
    invar_encoder_destroy(enc);
}

Test(encoders, mlp_input_gradient_in_training_mode)
{
    int64_t in[3] = {1, 2, 3};
    struct invar_encoder *enc =
        encoder_new("mlp", (const char *[]){"hidden", "4", "depth", "2", "dim", "3", NULL}, in);
    struct invar_tensor *x = gc_tensor(4, (int64_t[]){3, 1, 2, 3}, 1);
    gc_check(forward_fn, &x, 1, enc, 1e-3, 2e-2);
    gc_free(x);
    invar_encoder_destroy(enc);
}

/* ---- train vs eval ------------------------------------------------------------------------ */

Test(encoders, eval_mode_uses_running_statistics)
{
    int64_t in[3] = {1, 8, 8};
    struct invar_encoder *enc =
        encoder_new("convnet", (const char *[]){"width", "0.125", "dim", "4", NULL}, in);
    struct invar_params *p = invar_encoder_params(enc);
    struct invar_tensor *rm = invar_params_find(p, "conv1.bn.running_mean");
    struct invar_tensor *rv = invar_params_find(p, "conv1.bn.running_var");
    cr_assert_not_null(rm);
    cr_assert_not_null(rv);
    for (int64_t c = 0; c < rm->numel; c++) {
        cr_assert_eq(rm->data[c], 0.0f);
        cr_assert_eq(rv->data[c], 1.0f);
    }
    struct invar_graph *g = invar_graph_create(1 << 22);
    /* a few training-mode passes on shifted inputs move the running statistics */
    for (int s = 0; s < 3; s++) {
        invar_graph_reset(g);
        struct invar_tensor *x = random_input(g, 4, in, 100 + (uint64_t)s);
        for (int64_t i = 0; i < x->numel; i++)
            x->data[i] = 3.0f * x->data[i] + 2.0f;
        invar_encoder_forward(enc, g, x);
    }
    int moved = 0;
    for (int64_t c = 0; c < rm->numel; c++)
        moved += rm->data[c] != 0.0f || rv->data[c] != 1.0f;
    cr_assert_gt(moved, 0, "running statistics did not move in training mode");
    size_t nb = invar_params_buffer_numel(p);
    float *saved = malloc(nb * sizeof *saved);

    invar_graph_reset(g);
    struct invar_tensor *x = random_input(g, 2, in, 9);
    struct invar_tensor *ytrain = invar_encoder_forward(enc, g, x);
    memcpy(saved, invar_params_buffers(p), nb * sizeof *saved); /* after the training pass */
    invar_graph_set_training(g, 0);
    struct invar_tensor *yeval = invar_encoder_forward(enc, g, x);
    double diff = 0;
    for (int64_t i = 0; i < yeval->numel; i++)
        diff = fmax(diff, fabs((double)yeval->data[i] - ytrain->data[i]));
    cr_expect_gt(diff, 1e-3, "eval and train outputs agree (max diff %g)", diff);
    cr_expect_eq(memcmp(saved, invar_params_buffers(p), nb * sizeof *saved), 0,
                 "an eval-mode pass changed the running statistics");

    /* eval mode treats samples independently: sample 1 alone gives the same features */
    struct invar_tensor *x1 = invar_graph_tensor(g, 4, (int64_t[]){1, 1, 8, 8});
    memcpy(x1->data, x->data + 64, 64 * sizeof(float));
    struct invar_tensor *y1 = invar_encoder_forward(enc, g, x1);
    for (int64_t j = 0; j < 4; j++)
        cr_expect_float_eq(y1->data[j], yeval->data[4 + j], 1e-5);
    free(saved);
    invar_graph_destroy(g);
    invar_encoder_destroy(enc);
}
