/* Encoder plugins (convnet, mlp, resnet) through the public API: output shapes for each head
 * and input size, parameter and buffer counts worked out from the architecture, finite-difference
 * gradients in training mode, and train vs eval batch-norm. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "invar/graph.h"
#include "invar/registry.h"
#include "invar/train.h"

#include "gradcheck.h"
#include "registry_fixture.h"

TestSuite(encoders, .init = rf_init, .fini = rf_fini);

/* An encoder plugin with its defaults and the given KEY, VALUE pairs (NULL-terminated). */
static struct invar_plugin_use encoder_use(const char *name, const char *const *kv)
{
    return rf_use(INVAR_KIND_ENCODER, name, kv);
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

/* The backbone op: the representation under the head. With a linear head, forward(x) is
 * W backbone(x) + b exactly as the head's own weights compute it; without a head the two are
 * the same; its size is the pooled width; an encoder without the op (mlp) answers with forward. */
static void check_backbone(const char *name, const char *const *kv, const int64_t in[3],
                           int64_t want_dim)
{
    struct invar_encoder *enc = encoder_new(name, kv, in);
    cr_assert_eq(invar_encoder_backbone_dim(enc), want_dim, "%s: backbone dim %lld", name,
                 (long long)invar_encoder_backbone_dim(enc));
    struct invar_graph *g = invar_graph_create(1 << 22);
    invar_graph_set_grad(g, 0);
    invar_graph_set_training(g, 0);
    struct invar_tensor *x = random_input(g, 3, in, 21);
    struct invar_tensor *y = invar_encoder_forward(enc, g, x);
    struct invar_tensor *h = invar_encoder_backbone(enc, g, x);
    cr_assert_eq(h->ndim, 2);
    cr_assert_eq(h->shape[0], 3);
    cr_assert_eq(h->shape[1], want_dim);
    struct invar_params *p = invar_encoder_params(enc);
    const struct invar_tensor *w = invar_params_find(p, "head.fc.w");
    const struct invar_tensor *b = invar_params_find(p, "head.fc.b");
    const int64_t dim = invar_encoder_dim(enc);
    for (int64_t i = 0; i < 3; i++)
        for (int64_t o = 0; o < dim; o++) {
            double want;
            if (w) {
                want = b->data[o];
                for (int64_t j = 0; j < want_dim; j++)
                    want += (double)w->data[o * want_dim + j] * h->data[i * want_dim + j];
            } else { /* no head: the backbone is the output */
                cr_assert_eq(dim, want_dim);
                want = h->data[i * want_dim + o];
            }
            const float got = y->data[i * dim + o];
            cr_assert(fabs(got - want) <= 1e-5 * (1 + fabs(want)), "%s: y[%lld][%lld] %.9g, "
                      "head of the backbone %.9g", name, (long long)i, (long long)o, got, want);
        }
    invar_graph_destroy(g);
    invar_encoder_destroy(enc);
}

Test(encoders, backbone_is_the_representation_under_the_head)
{
    const int64_t in28[3] = {1, 28, 28}, in32[3] = {3, 32, 32};
    check_backbone("convnet", (const char *[]){"width", "0.5", "dim", "16", NULL}, in28, 64);
    check_backbone("convnet", (const char *[]){"head", "none", NULL}, in28, 128);
    check_backbone("resnet",
                   (const char *[]){"depth", "10", "width", "0.125", "dim", "8", NULL}, in32, 64);
    check_backbone("mlp", (const char *[]){"depth", "1", "hidden", "8", "dim", "5", NULL}, in28,
                   5);
}

/* A descriptor whose ops_size predates the backbone op (0: a hand-made or older descriptor)
 * is never read past its first vtable: the backbone is then forward's output. */
Test(encoders, backbone_is_not_read_from_an_older_vtable)
{
    const int64_t in[3] = {1, 28, 28};
    struct invar_plugin_use use =
        encoder_use("convnet", (const char *[]){"width", "0.25", "dim", "8", NULL});
    cr_assert_geq(use.plugin->ops_size, sizeof(struct invar_encoder_ops));
    struct invar_plugin old = *use.plugin;
    old.ops_size = 0;
    use.plugin = &old;
    struct invar_encoder *enc = NULL;
    struct invar_error err = {0};
    cr_assert_eq(invar_encoder_create(&enc, &use, in, 7, &err), INVAR_OK, "%s", err.msg);
    cr_assert_eq(invar_encoder_backbone_dim(enc), 8);
    struct invar_graph *g = invar_graph_create(1 << 22);
    invar_graph_set_grad(g, 0);
    invar_graph_set_training(g, 0);
    struct invar_tensor *x = random_input(g, 2, in, 4);
    struct invar_tensor *y = invar_encoder_forward(enc, g, x), *h = invar_encoder_backbone(enc, g, x);
    cr_assert_eq(h->numel, y->numel);
    cr_assert(memcmp(h->data, y->data, (size_t)y->numel * sizeof(float)) == 0);
    invar_graph_destroy(g);
    invar_encoder_destroy(enc);
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
 * = 2608; mlp_bn 64*32 (no bias) + BN 2*32 + 32*16+16 = 2640, and 2*32 BN buffers; none adds
 * nothing and leaves 64 features. */
static const struct shape_case shape_cases[] = {
    {"linear", 1, 28, 16, 144 + 34560 + 320 + 1040},
    {"mlp", 1, 28, 16, 144 + 34560 + 320 + 2608},
    {"none", 1, 28, 64, 144 + 34560 + 320},
    {"mlp_bn", 1, 28, 16, 144 + 34560 + 320 + 2640},
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
        int bn_head = strcmp(c->head, "mlp_bn") == 0;
        cr_expect_eq(invar_params_buffer_numel(p), bn_head ? 384u : 320u);
        /* five conv-BN units: w, gamma, beta + 2 buffers each; heads 2, 4, 7 (2 buffers) or 0
         * tensors */
        size_t head_tensors = strcmp(c->head, "linear") == 0 ? 2
                              : strcmp(c->head, "mlp") == 0  ? 4
                              : bn_head                      ? 7
                                                             : 0;
        cr_expect_eq(invar_params_count(p), 25 + head_tensors);
        cr_expect_eq(tensor_count(p, INVAR_P_BUFFER), bn_head ? 12u : 10u);

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
        (const char *[]){"width", "0.125", "dim", "3", "head", "mlp", "hidden", "16", NULL}, in);
    struct invar_tensor *x = gc_tensor(4, (int64_t[]){2, 1, 8, 8}, 1);
    /* training mode is the graph's default: batch statistics, so the two samples interact */
    double worst = gc_check(forward_fn, &x, 1, enc, 1e-3, 2e-2);
    cr_log_info("convnet input gradient: worst scaled error %.3g", worst);
    gc_free(x);
    invar_encoder_destroy(enc);
}

/* The mlp_bn head's batch-norm couples the samples of a batch: the gradient says so too. */
Test(encoders, convnet_mlp_bn_head_input_gradient_in_training_mode)
{
    int64_t in[3] = {1, 8, 8};
    struct invar_encoder *enc = encoder_new(
        "convnet",
        (const char *[]){"width", "0.125", "dim", "3", "head", "mlp_bn", "hidden", "16", NULL},
        in);
    struct invar_tensor *x = gc_tensor(4, (int64_t[]){4, 1, 8, 8}, 1);
    double worst = gc_check(forward_fn, &x, 1, enc, 1e-3, 2e-2);
    cr_log_info("convnet mlp_bn input gradient: worst scaled error %.3g", worst);
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

/* Train-mode passes on shifted inputs (seeds seed..seed+2) must move the running statistics rm
 * and rv (every channel when all, else at least one); then an eval-mode pass differs from the
 * training pass, leaves the buffers alone, repeats bit for bit, and gives sample 1 alone the
 * same features (dim 4) as inside the batch. */
static void check_eval_mode(struct invar_encoder *enc, const int64_t in[3],
                            const struct invar_tensor *rm, const struct invar_tensor *rv,
                            uint64_t seed, int all)
{
    struct invar_params *p = invar_encoder_params(enc);
    struct invar_graph *g = invar_graph_create(1 << 22);
    for (int s = 0; s < 3; s++) {
        invar_graph_reset(g);
        struct invar_tensor *x = random_input(g, 4, in, seed + (uint64_t)s);
        for (int64_t i = 0; i < x->numel; i++)
            x->data[i] = 3.0f * x->data[i] + 2.0f;
        invar_encoder_forward(enc, g, x);
    }
    int moved = 0;
    for (int64_t c = 0; c < rv->numel; c++)
        moved += all ? rv->data[c] != 1.0f && rm->data[c] != 0.0f
                     : rv->data[c] != 1.0f || rm->data[c] != 0.0f;
    if (all)
        cr_assert_eq(moved, rv->numel, "running statistics did not all move in training mode");
    else
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

    /* eval is deterministic and per-sample */
    struct invar_tensor *again = invar_encoder_forward(enc, g, x);
    cr_expect_eq(memcmp(again->data, yeval->data, (size_t)yeval->numel * sizeof(float)), 0);
    const int64_t img = in[0] * in[1] * in[2];
    struct invar_tensor *x1 = invar_graph_tensor(g, 4, (int64_t[]){1, in[0], in[1], in[2]});
    memcpy(x1->data, x->data + img, (size_t)img * sizeof(float));
    struct invar_tensor *y1 = invar_encoder_forward(enc, g, x1);
    for (int64_t j = 0; j < 4; j++)
        cr_expect_float_eq(y1->data[j], yeval->data[4 + j], 1e-5);
    free(saved);
    invar_graph_destroy(g);
}

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
    check_eval_mode(enc, in, rm, rv, 100, 0);
    invar_encoder_destroy(enc);
}

/* d(sum w * backbone(x))/dx in training mode, x (n, in) copied from x0: malloc'ed. */
static float *backbone_input_grad(struct invar_encoder *e, const float *x0, int64_t n,
                                  const int64_t in[3], const float *w)
{
    struct invar_graph *g = invar_graph_create(1 << 22);
    struct invar_tensor *x = invar_graph_tensor(g, 4, (int64_t[]){n, in[0], in[1], in[2]});
    memcpy(x->data, x0, (size_t)x->numel * sizeof(float));
    x->requires_grad = 1;
    invar_graph_backward(g, gc_dot(g, invar_encoder_backbone(e, g, x), w));
    cr_assert_not_null(x->grad);
    float *gx = malloc((size_t)x->numel * sizeof *gx);
    memcpy(gx, x->grad, (size_t)x->numel * sizeof *gx);
    invar_graph_destroy(g);
    return gx;
}

/* out_bn: a batch-norm without scale and shift on the pooled features. It adds four buffers of
 * the pooled width (gamma 1 and beta 0, held, and the running statistics) and no trainable
 * weight. With the same weights as a convnet without it, its backbone in training mode is the
 * other's standardised over the batch channel by channel, its running statistics move 0.1 of
 * the way to the batch's, and in eval mode it divides by them; the head reads the standardised
 * features; and the input gradient through its coupling of the batch checks. */
Test(encoders, convnet_out_bn_standardises_the_representation)
{
    const int64_t in[3] = {1, 12, 12}, n = 6, c = 16; /* width 0.125: 16 pooled channels */
    const char *kv[] = {"width", "0.125", "dim", "5", "out_bn", "true", NULL};
    struct invar_encoder *plain =
        encoder_new("convnet", (const char *[]){"width", "0.125", "dim", "5", NULL}, in);
    struct invar_encoder *enc = encoder_new("convnet", kv, in);
    struct invar_params *pp = invar_encoder_params(plain), *p = invar_encoder_params(enc);
    cr_assert_eq(invar_params_numel(p), invar_params_numel(pp), "no trainable weight more");
    cr_assert_eq(invar_params_buffer_numel(p), invar_params_buffer_numel(pp) + 4 * (size_t)c);
    cr_assert_eq(tensor_count(p, INVAR_P_BUFFER), tensor_count(pp, INVAR_P_BUFFER) + 4);
    memcpy(invar_params_data(p), invar_params_data(pp), invar_params_numel(p) * sizeof(float));
    struct invar_tensor *rm = invar_params_find(p, "out_bn.running_mean");
    struct invar_tensor *rv = invar_params_find(p, "out_bn.running_var");
    cr_assert_not_null(rm);
    cr_assert_not_null(rv);

    struct invar_graph *g = invar_graph_create(1 << 22);
    invar_graph_set_grad(g, 0);
    struct invar_tensor *x = random_input(g, n, in, 33);
    struct invar_tensor *h = invar_encoder_backbone(plain, g, x);
    struct invar_tensor *z = invar_encoder_backbone(enc, g, x);
    struct invar_tensor *y = invar_encoder_forward(enc, g, x); /* moves the statistics again */
    invar_encoder_forward(plain, g, x);                        /* and the plain one's */
    const struct invar_tensor *w = invar_params_find(p, "head.fc.w");
    const struct invar_tensor *b = invar_params_find(p, "head.fc.b");
    cr_assert_eq(z->shape[1], c);
    double mean[16], sd[16]; /* h's batch statistics, channel by channel (biased variance) */
    for (int64_t k = 0; k < c; k++) {
        double m = 0, v = 0;
        for (int64_t i = 0; i < n; i++)
            m += h->data[i * c + k];
        m /= (double)n;
        for (int64_t i = 0; i < n; i++)
            v += (h->data[i * c + k] - m) * (h->data[i * c + k] - m);
        mean[k] = m, sd[k] = sqrt(v / (double)n + 1e-5);
        for (int64_t i = 0; i < n; i++) {
            const double want = (h->data[i * c + k] - m) / sd[k];
            cr_assert(fabs(z->data[i * c + k] - want) < 1e-4, "z[%lld][%lld] %g vs %g",
                      (long long)i, (long long)k, z->data[i * c + k], want);
        }
        /* two training-mode passes at momentum 0.1 from 0 and 1 */
        const double unb = v / (double)(n - 1);
        cr_assert_float_eq(rm->data[k], 0.19 * m, 1e-6, "running mean %g", rm->data[k]);
        cr_assert_float_eq(rv->data[k], 0.81 + 0.19 * unb, 1e-5, "running var %g", rv->data[k]);
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < 5; o++) {
            double want = b->data[o];
            for (int64_t k = 0; k < c; k++)
                want += (double)w->data[o * c + k] * z->data[i * c + k];
            cr_assert(fabs(y->data[i * 5 + o] - want) < 1e-4, "the head reads z");
        }
    invar_graph_set_training(g, 0);
    struct invar_tensor *he = invar_encoder_backbone(plain, g, x);
    struct invar_tensor *ze = invar_encoder_backbone(enc, g, x);
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < c; k++) {
            const double want = (he->data[i * c + k] - rm->data[k]) / sqrt(rv->data[k] + 1e-5);
            cr_assert(fabs(ze->data[i * c + k] - want) < 1e-4, "eval: %g vs %g",
                      ze->data[i * c + k], want);
        }

    /* the gradient: through the batch-norm's backward, worked out by hand, then the plain
     * backbone's (finite differences are too coarse here: the standardisation magnifies the
     * ReLU and max-pool kinks a step of 1e-3 crosses) */
    float up[6 * 16], u[6 * 16];
    struct invar_rng r;
    invar_rng_init(&r, 5, 0);
    for (int64_t i = 0; i < n * c; i++)
        up[i] = invar_rng_range(&r, -1, 1);
    for (int64_t k = 0; k < c; k++) { /* dL/dh = (g - mean g - z mean(g z)) / sd, z = (h - m)/sd */
        double mw = 0, mwz = 0;
        for (int64_t i = 0; i < n; i++) {
            mw += up[i * c + k] / (double)n;
            mwz += up[i * c + k] * (h->data[i * c + k] - mean[k]) / sd[k] / (double)n;
        }
        for (int64_t i = 0; i < n; i++)
            u[i * c + k] = (float)((up[i * c + k] - mw -
                                    (h->data[i * c + k] - mean[k]) / sd[k] * mwz) /
                                   sd[k]);
    }
    float *gz = backbone_input_grad(enc, x->data, n, in, up);
    float *gh = backbone_input_grad(plain, x->data, n, in, u);
    double worst = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        const double e = fabs(gz[i] - gh[i]) / fmax(1e-3, fabs(gh[i]));
        worst = fmax(worst, e);
        cr_assert(e < 1e-3, "dx[%lld] %g, by hand %g", (long long)i, gz[i], gh[i]);
    }
    cr_log_info("convnet out_bn input gradient: worst relative error %.3g", worst);
    free(gz), free(gh);
    invar_graph_destroy(g);
    invar_encoder_destroy(enc);
    invar_encoder_destroy(plain);
}

/* ---- resnet ------------------------------------------------------------------------------- */

/* Trainable floats of a CIFAR-style ResNet, written out from the architecture: stem conv3x3
 * C->c0 + BN; per BasicBlock cin->c (stride s) conv3x3 cin*c*9 + conv3x3 c*c*9 + two BNs 4c,
 * plus a projection shortcut cin*c + BN 2c when s != 1 or cin != c; then the head. */
static size_t resnet_weights(int64_t c_in, const int blocks[4], double width, const char *head,
                             int64_t dim, int64_t hidden, int64_t *features)
{
    static const int base[4] = {64, 128, 256, 512};
    int64_t prev = (int64_t)(64 * width + 0.5);
    size_t n = (size_t)(9 * c_in * prev + 2 * prev);
    for (int s = 0; s < 4; s++) {
        const int64_t c = (int64_t)(base[s] * width + 0.5);
        for (int i = 0; i < blocks[s]; i++) {
            const int stride = s > 0 && i == 0 ? 2 : 1;
            n += (size_t)(9 * prev * c + 9 * c * c + 4 * c);
            if (stride != 1 || prev != c)
                n += (size_t)(prev * c + 2 * c);
            prev = c;
        }
    }
    *features = prev;
    if (strcmp(head, "linear") == 0) {
        n += (size_t)(prev * dim + dim);
        *features = dim;
    } else if (strcmp(head, "mlp") == 0) {
        n += (size_t)(prev * hidden + hidden + hidden * dim + dim);
        *features = dim;
    }
    return n;
}

Test(encoders, resnet18_default_parameter_count)
{
    /* ResNet-18, width 1, no head, 3-channel input, stage by stage:
     *   stem      64*3*9 + 2*64                                                =     1,856
     *   layer1    2 * (2*64*64*9 + 4*64)                                        =   147,968
     *   layer2    128*64*9 + 128*128*9 + 4*128 + 64*128 + 2*128  (shortcut)
     *             + 2*128*128*9 + 4*128                                         =   525,568
     *   layer3    256*128*9 + 256*256*9 + 6*256 + 128*256 + 2*256*256*9 + 4*256 = 2,099,712
     *   layer4    512*256*9 + 512*512*9 + 6*512 + 256*512 + 2*512*512*9 + 4*512 = 8,393,728
     *   total                                                                   = 11,168,832
     * (the CIFAR ResNet-18's familiar 11,173,962 less its 10-way classifier, 512*10 + 10).
     * A 1-channel input has 64*2*9 = 1,152 fewer stem weights. */
    static const struct {
        int64_t c;
        size_t weights;
    } cases[] = {{3, 11168832}, {1, 11168832 - 1152}};
    for (size_t k = 0; k < 2; k++) {
        int64_t in[3] = {cases[k].c, 32, 32};
        struct invar_encoder *enc =
            encoder_new("resnet", (const char *[]){"head", "none", NULL}, in);
        struct invar_params *p = invar_encoder_params(enc);
        int64_t feat = 0;
        cr_expect_eq(resnet_weights(cases[k].c, (const int[]){2, 2, 2, 2}, 1, "none", 0, 0, &feat),
                     cases[k].weights);
        cr_expect_eq(invar_params_numel(p), cases[k].weights, "C=%lld: %zu weights",
                     (long long)cases[k].c, invar_params_numel(p));
        cr_expect_eq(invar_encoder_dim(enc), 512);
        /* BN channels: stem 64, layer1 4*64, layer2 5*128, layer3 5*256, layer4 5*512 = 4800;
         * running mean and var of each are buffers */
        cr_expect_eq(invar_params_buffer_numel(p), 2u * 4800);
        /* 17 conv3x3 + 3 shortcut units, each w, gamma, beta and 2 buffers */
        cr_expect_eq(invar_params_count(p), 100u);
        cr_expect_eq(tensor_count(p, INVAR_P_BUFFER), 40u);
        invar_encoder_destroy(enc);
    }
}

struct resnet_case {
    const char *head;
    const char *depth;
    int64_t c, hw;
};

/* Both input sizes through each head and depth; 28 -> 28, 14, 7, 4 exercises odd sizes under
 * the stride-2 3x3 conv and 1x1 shortcut, whose outputs must agree for the add. */
static const struct resnet_case resnet_cases[] = {
    {"linear", "18", 1, 28}, {"mlp", "18", 1, 28}, {"none", "18", 1, 28},
    {"linear", "18", 3, 32}, {"mlp", "18", 3, 32}, {"none", "18", 3, 32},
    {"linear", "10", 1, 28}, {"mlp", "34", 3, 32},
};

Test(encoders, resnet_shapes_and_counts)
{
    static const int depth_blocks[3][4] = {{1, 1, 1, 1}, {2, 2, 2, 2}, {3, 4, 6, 3}};
    for (size_t k = 0; k < sizeof resnet_cases / sizeof *resnet_cases; k++) {
        const struct resnet_case *c = &resnet_cases[k];
        const int d = strcmp(c->depth, "10") == 0 ? 0 : strcmp(c->depth, "18") == 0 ? 1 : 2;
        int64_t in[3] = {c->c, c->hw, c->hw};
        struct invar_encoder *enc =
            encoder_new("resnet",
                        (const char *[]){"width", "0.125", "depth", c->depth, "dim", "16", "hidden",
                                         "32", "head", c->head, NULL},
                        in);
        struct invar_params *p = invar_encoder_params(enc);
        int64_t feat = 0;
        size_t want = resnet_weights(c->c, depth_blocks[d], 0.125, c->head, 16, 32, &feat);
        cr_expect_eq(invar_params_numel(p), want, "%s depth %s %lld: %zu weights, want %zu",
                     c->head, c->depth, (long long)c->hw, invar_params_numel(p), want);
        cr_expect_eq(invar_encoder_dim(enc), feat);
        cr_expect_eq(feat, strcmp(c->head, "none") == 0 ? 64 : 16);
        /* identity shortcut where the shape holds, projection where it changes */
        cr_expect_null(invar_params_find(p, "layer1.0.shortcut.w"));
        cr_expect_null(invar_params_find(p, "layer2.1.shortcut.w"));
        struct invar_tensor *sc = invar_params_find(p, "layer2.0.shortcut.w");
        cr_assert_not_null(sc);
        cr_expect_eq(sc->shape[0], 16);
        cr_expect_eq(sc->shape[1], 8);
        cr_expect_eq(sc->shape[2], 1);
        cr_expect_eq(sc->shape[3], 1);

        struct invar_graph *g = invar_graph_create(1 << 22);
        struct invar_tensor *y = invar_encoder_forward(enc, g, random_input(g, 3, in, k));
        cr_expect_eq(y->ndim, 2);
        cr_expect_eq(y->shape[0], 3);
        cr_expect_eq(y->shape[1], feat);
        for (int64_t i = 0; i < y->numel; i++)
            cr_assert(isfinite(y->data[i]));
        invar_graph_destroy(g);
        invar_encoder_destroy(enc);
    }
}

/* d(sum_i w_i y_i)/d(parameter) by backward against central differences, on spread-out
 * elements of named parameters, in training mode (batch statistics couple the samples).
 * A deep ReLU net is piecewise smooth: a +-eps step now and then carries some unit across its
 * kink and one numeric entry is off by a few percent (eps 1e-4 instead trades this for float32
 * noise). So each entry keeps the closer of two step sizes' differences, and each tensor is
 * judged by the relative error of its vector of checked entries,
 * ||analytic - numeric|| / ||analytic||. On the test's input the worst tensor is at 0.7 %
 * (other random inputs reached 7 %); a stop-gradient on the identity shortcut gives 65 % on
 * the stem, one on the projection shortcut 280 %. Returns the worst tensor's error. */
static double resnet_param_gradcheck(struct invar_encoder *enc, struct invar_tensor *x,
                                     const char *const *names, int per_tensor, double tol)
{
    struct invar_params *p = invar_encoder_params(enc);
    int64_t n_out = 0;
    gc_loss(forward_fn, &x, enc, NULL, &n_out);
    float *w = malloc((size_t)n_out * sizeof *w);
    struct invar_rng r;
    invar_rng_init(&r, 4242, 0);
    for (int64_t i = 0; i < n_out; i++)
        w[i] = invar_rng_range(&r, -1, 1);

    invar_params_zero_grad(p);
    struct invar_graph *g = invar_graph_create(1 << 22);
    invar_graph_backward(g, gc_dot(g, invar_encoder_forward(enc, g, x), w));
    invar_graph_destroy(g);

    /* two step sizes: a kink crossed under one is rarely crossed under the other, and float32
     * noise, which grows as the step shrinks, is small at both */
    static const double eps[2] = {1e-3, 2.5e-4};
    double worst = 0;
    for (const char *const *name = names; *name; name++) {
        struct invar_tensor *t = invar_params_find(p, *name);
        cr_assert_not_null(t, "no parameter %s", *name);
        double err2 = 0, ana2 = 0;
        for (int k = 0; k < per_tensor; k++) {
            const int64_t i = (int64_t)k * t->numel / per_tensor + (t->numel > per_tensor);
            const float saved = t->data[i];
            const double ana = t->grad[i];
            double num = 0;
            for (int e = 0; e < 2; e++) {
                t->data[i] = saved + (float)eps[e];
                const double lp = gc_loss(forward_fn, &x, enc, w, NULL);
                t->data[i] = saved - (float)eps[e];
                const double lm = gc_loss(forward_fn, &x, enc, w, NULL);
                t->data[i] = saved;
                const double n = (lp - lm) / (2 * eps[e]);
                if (e == 0 || fabs(n - ana) < fabs(num - ana))
                    num = n;
            }
            err2 += (ana - num) * (ana - num);
            ana2 += ana * ana;
        }
        /* a parameter with no gradient at all would pass vacuously */
        cr_assert_gt(sqrt(ana2), 1e-5, "%s: gradient norm %g", *name, sqrt(ana2));
        const double e = sqrt(err2 / ana2);
        worst = fmax(worst, e);
        cr_expect_leq(e, tol, "%s: relative error %.3g of the checked gradient entries", *name, e);
        cr_log_info("resnet %s: relative error %.3g, norm %.3g", *name, e, sqrt(ana2));
    }
    free(w);
    return worst;
}

Test(encoders, resnet_parameter_gradients_in_training_mode)
{
    /* 12x12 goes 12 -> 6 -> 3 -> 2 through the stages: the 6 -> 3 -> 2 steps are odd sizes under
     * stride 2, and layer4's batch-norm still sees 2*2*2 values per channel (8x8 inputs would
     * leave it 2 values, normalised to +-1 whatever the input, and nothing below it would get a
     * measurable gradient). */
    int64_t in[3] = {1, 12, 12};
    struct invar_encoder *enc =
        encoder_new("resnet",
                    (const char *[]){"width", "0.125", "depth", "10", "dim", "3", "head", "mlp",
                                     "hidden", "16", NULL},
                    in);
    struct invar_tensor *x = gc_tensor(4, (int64_t[]){2, 1, 12, 12}, 0);
    static const char *const names[] = {
        "stem.w", /* through every block and both paths of each */
        "stem.bn.gamma",
        "layer1.0.conv1.w", /* the residual branch of an identity block */
        "layer1.0.conv2.bn.beta",
        "layer2.0.shortcut.w",        /* a projection shortcut (stride 2, 12x12 -> 6x6) */
        "layer3.0.shortcut.bn.gamma", /* 6x6 -> 3x3 */
        "layer3.0.conv2.bn.gamma",
        "layer4.0.conv1.w",
        "head.fc1.w",
        "head.fc2.b",
        NULL,
    };
    resnet_param_gradcheck(enc, x, names, 8, 0.1);
    gc_free(x);
    invar_encoder_destroy(enc);
}

Test(encoders, resnet_eval_mode_uses_running_statistics)
{
    int64_t in[3] = {3, 12, 12};
    struct invar_encoder *enc = encoder_new(
        "resnet", (const char *[]){"width", "0.125", "depth", "10", "dim", "4", NULL}, in);
    struct invar_params *p = invar_encoder_params(enc);
    /* the deepest batch-norm: running statistics must reach it through every block */
    struct invar_tensor *rv = invar_params_find(p, "layer4.0.conv2.bn.running_var");
    struct invar_tensor *rm = invar_params_find(p, "layer4.0.shortcut.bn.running_mean");
    cr_assert_not_null(rv);
    cr_assert_not_null(rm);
    check_eval_mode(enc, in, rm, rv, 200, 1);
    invar_encoder_destroy(enc);
}
