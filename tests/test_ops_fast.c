/* The fast paths of the memory-bound ops against their plain definitions: fused batch-norm +
 * ReLU (finite differences, equal to the unfused composition and to the textbook formulas in
 * double), batch-norm statistics far from zero, 2x2 max pooling against its definition, and
 * results that stay bitwise the same when the loops are split over threads. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "gradcheck.h"
#include "ops/parallel.h"

/* ---- batch-norm + ReLU ---------------------------------------------------------------------- */

struct bnr_args {
    int training, fused;
    struct invar_tensor *rm, *rv; /* (C) */
    int splits;                   /* invar_graph_set_bn_splits; 0 means 1 */
};

static struct invar_tensor *bnr_f(struct invar_graph *g, struct invar_tensor **in, void *ctx)
{
    const struct bnr_args *a = ctx;
    invar_graph_set_training(g, a->training);
    invar_graph_set_bn_splits(g, a->splits ? a->splits : 1);
    struct invar_tensor *rm = a->training ? NULL : a->rm, *rv = a->training ? NULL : a->rv;
    if (a->fused)
        return invar_batchnorm_relu(g, in[0], in[1], in[2], rm, rv, 0.1f, 1e-5f);
    return invar_relu(g, invar_batchnorm(g, in[0], in[1], in[2], rm, rv, 0.1f, 1e-5f));
}

static struct bnr_args bnr_args_make(int64_t c, int training, int fused)
{
    struct bnr_args a = {training, fused, gc_tensor(1, (int64_t[]){c}, 0),
                         gc_tensor(1, (int64_t[]){c}, 0), 1};
    for (int64_t i = 0; i < c; i++)
        a.rv->data[i] = 0.5f + a.rv->data[i] * a.rv->data[i]; /* a positive variance */
    return a;
}

/* x, gamma, beta requiring grad; beta is shifted so that some outputs are cut by the ReLU and
 * some are not, and no pre-activation sits within the finite-difference step of the kink. */
static void bnr_inputs(struct invar_tensor *in[3], int ndim, const int64_t *shape)
{
    const int64_t c = shape[1];
    in[0] = gc_tensor(ndim, shape, 1);
    in[1] = gc_tensor(1, (int64_t[]){c}, 1);
    in[2] = gc_tensor(1, (int64_t[]){c}, 1);
    for (int64_t i = 0; i < c; i++)
        in[2]->data[i] *= 0.5f;
}

static void bnr_gradcheck_split(int ndim, const int64_t *shape, int training, int splits)
{
    struct invar_tensor *in[3];
    bnr_inputs(in, ndim, shape);
    struct bnr_args a = bnr_args_make(shape[1], training, 1);
    a.splits = splits;
    /* Keep every pre-activation away from 0, where the ReLU has no derivative: nudge the
     * offending x outward until none is left (moving x moves the batch statistics too). */
    const int64_t sp = ndim == 4 ? shape[2] * shape[3] : 1;
    int cut = 0, kept = 0, near = 1;
    for (int round = 0; near && round < 50; round++) {
        struct invar_graph *g = invar_graph_create(1 << 16);
        invar_graph_set_grad(g, 0);
        invar_graph_set_training(g, training);
        invar_graph_set_bn_splits(g, splits);
        struct invar_tensor *pre = invar_batchnorm(g, in[0], in[1], in[2], training ? NULL : a.rm,
                                                   training ? NULL : a.rv, 0.1f, 1e-5f);
        near = cut = kept = 0;
        for (int64_t i = 0; i < pre->numel; i++) {
            if (fabsf(pre->data[i]) < 0.05f) { /* x moves y along the sign of gamma */
                const int64_t ch = (i / sp) % shape[1];
                const float away = (pre->data[i] < 0) == (in[1]->data[ch] < 0) ? 0.05f : -0.05f;
                in[0]->data[i] += away;
                near++;
            }
            cut += pre->data[i]<0, kept += pre->data[i]> 0;
        }
        invar_graph_destroy(g);
    }
    cr_assert(!near, "%d pre-activations stay near the ReLU's kink", near);
    cr_assert(cut > 0 && kept > 0, "the ReLU should both cut and pass (%d, %d)", cut, kept);
    gc_check(bnr_f, in, 3, &a, 1e-3, 2e-2);
    for (int i = 0; i < 3; i++)
        gc_free(in[i]);
    gc_free(a.rm), gc_free(a.rv);
}

static void bnr_gradcheck(int ndim, const int64_t *shape, int training)
{
    bnr_gradcheck_split(ndim, shape, training, 1);
}

Test(batchnorm_relu, gradcheck_train_2d)
{
    bnr_gradcheck(2, (int64_t[]){7, 3}, 1);
}
Test(batchnorm_relu, gradcheck_train_4d)
{
    bnr_gradcheck(4, (int64_t[]){3, 2, 3, 4}, 1);
}
Test(batchnorm_relu, gradcheck_train_4d_wide_planes)
{
    /* planes longer than the 16 summing lanes, with a ragged tail */
    bnr_gradcheck(4, (int64_t[]){2, 2, 5, 7}, 1);
}
Test(batchnorm_relu, gradcheck_eval_2d)
{
    bnr_gradcheck(2, (int64_t[]){5, 3}, 0);
}
Test(batchnorm_relu, gradcheck_eval_4d)
{
    bnr_gradcheck(4, (int64_t[]){2, 3, 4, 3}, 0);
}

/* An input read by batch-norm and by another op, in both recording orders: whichever runs
 * first in backward gets the fresh gradient buffer (batch-norm then writes it without zeroing),
 * the other adds to it. */
static struct invar_tensor *bn_shared_f(struct invar_graph *g, struct invar_tensor **in, void *ctx)
{
    const int bn_last = *(const int *)ctx;
    struct invar_tensor *sq = NULL, *y = NULL;
    if (bn_last) {
        sq = invar_mul(g, in[0], in[0]);
        y = invar_batchnorm(g, in[0], in[1], in[2], NULL, NULL, 0.1f, 1e-5f);
    } else {
        y = invar_batchnorm(g, in[0], in[1], in[2], NULL, NULL, 0.1f, 1e-5f);
        sq = invar_mul(g, in[0], in[0]);
    }
    return invar_add(g, y, sq);
}

Test(batchnorm, gradient_of_an_input_shared_with_another_op)
{
    for (int nd = 2; nd <= 4; nd += 2)
        for (int bn_last = 0; bn_last < 2; bn_last++) {
            const int64_t *shape = nd == 4 ? (int64_t[]){3, 2, 4, 5} : (int64_t[]){6, 3};
            struct invar_tensor *in[3] = {gc_tensor(nd, shape, 1),
                                          gc_tensor(1, (int64_t[]){shape[1]}, 1),
                                          gc_tensor(1, (int64_t[]){shape[1]}, 1)};
            gc_check(bn_shared_f, in, 3, &bn_last, 1e-3, 2e-2);
            for (int k = 0; k < 3; k++)
                gc_free(in[k]);
        }
}

/* Split batch-norm: every sub-batch normalised by its own statistics, so a sub-batch's outputs
 * depend on the other sub-batches not at all; the finite differences see that too. */
Test(batchnorm_relu, gradcheck_train_split_4d)
{
    bnr_gradcheck_split(4, (int64_t[]){6, 2, 3, 4}, 1, 3);
}
Test(batchnorm_relu, gradcheck_train_split_2d)
{
    bnr_gradcheck_split(2, (int64_t[]){8, 3}, 1, 2);
}

/* Splits G: outputs and input gradients bitwise equal to G separate calls on the sub-batches,
 * gamma/beta gradients their sums, and the running statistics moved toward the mean over the
 * sub-batches of each one's mean and unbiased variance (computed here in double). In eval mode
 * the setting changes nothing. */
static void bn_split_matches_separate_calls(int ndim, const int64_t *shape, int splits)
{
    const int64_t n = shape[0], c = shape[1], per = n / splits;
    const int64_t sp = ndim == 4 ? shape[2] * shape[3] : 1, block = per * c * sp;
    struct invar_tensor *in[3];
    bnr_inputs(in, ndim, shape);
    struct invar_tensor *w = gc_tensor(ndim, shape, 0);
    struct bnr_args a = bnr_args_make(c, 1, 1);
    float rm0[16], rv0[16];
    cr_assert(c <= 16);
    memcpy(rm0, a.rm->data, (size_t)c * sizeof(float));
    memcpy(rv0, a.rv->data, (size_t)c * sizeof(float));

    /* one call with splits */
    struct invar_graph *g = invar_graph_create(1 << 16);
    cr_assert_eq(invar_graph_bn_splits(g), 1);
    cr_assert_eq(invar_graph_set_bn_splits(g, splits), 1);
    for (int k = 0; k < 3; k++)
        in[k]->grad = invar_graph_zeros(g, in[k]->ndim, in[k]->shape)->data;
    struct invar_tensor *y = invar_batchnorm_relu(g, in[0], in[1], in[2], a.rm, a.rv, 0.1f, 1e-5f);
    invar_graph_backward(g, invar_sum(g, invar_mul(g, y, w)));

    /* the same sub-batches one by one, each a plain batch-norm of its own */
    struct invar_graph *h = invar_graph_create(1 << 16);
    float dgamma[16] = {0}, dbeta[16] = {0};
    for (int s = 0; s < splits; s++) {
        invar_graph_reset(h);
        int64_t sub_shape[4] = {per, shape[1], ndim == 4 ? shape[2] : 0, ndim == 4 ? shape[3] : 0};
        struct invar_tensor *xs = invar_graph_tensor(h, ndim, sub_shape);
        struct invar_tensor *ws = invar_graph_tensor(h, ndim, sub_shape);
        memcpy(xs->data, in[0]->data + s * block, (size_t)block * sizeof(float));
        memcpy(ws->data, w->data + s * block, (size_t)block * sizeof(float));
        xs->requires_grad = 1;
        xs->grad = invar_graph_zeros(h, ndim, sub_shape)->data;
        struct invar_tensor gm = *in[1], bt = *in[2];
        gm.grad = invar_graph_zeros(h, 1, (int64_t[]){c})->data;
        bt.grad = invar_graph_zeros(h, 1, (int64_t[]){c})->data;
        struct invar_tensor *ys = invar_batchnorm_relu(h, xs, &gm, &bt, NULL, NULL, 0.1f, 1e-5f);
        invar_graph_backward(h, invar_sum(h, invar_mul(h, ys, ws)));
        for (int64_t i = 0; i < block; i++) {
            cr_assert(ys->data[i] == y->data[s * block + i], "split %d: y[%lld] %.9g vs %.9g", s,
                      (long long)i, y->data[s * block + i], ys->data[i]);
            cr_assert(xs->grad[i] == in[0]->grad[s * block + i], "split %d: dx[%lld] differs", s,
                      (long long)i);
        }
        for (int64_t ch = 0; ch < c; ch++)
            dgamma[ch] += gm.grad[ch], dbeta[ch] += bt.grad[ch];
    }
    for (int64_t ch = 0; ch < c; ch++) {
        cr_assert(fabsf(dgamma[ch] - in[1]->grad[ch]) <= 1e-5f * (1 + fabsf(dgamma[ch])));
        cr_assert(fabsf(dbeta[ch] - in[2]->grad[ch]) <= 1e-5f * (1 + fabsf(dbeta[ch])));
        double mean_of_means = 0, mean_of_vars = 0;
        for (int s = 0; s < splits; s++) {
            double sum = 0, ss = 0;
            for (int64_t i = 0; i < per; i++)
                for (int64_t k = 0; k < sp; k++)
                    sum += in[0]->data[((s * per + i) * c + ch) * sp + k];
            const double mu = sum / (double)(per * sp);
            for (int64_t i = 0; i < per; i++)
                for (int64_t k = 0; k < sp; k++) {
                    const double d = in[0]->data[((s * per + i) * c + ch) * sp + k] - mu;
                    ss += d * d;
                }
            mean_of_means += mu / splits;
            mean_of_vars += ss / (double)(per * sp - 1) / splits;
        }
        const double want_m = 0.9 * rm0[ch] + 0.1 * mean_of_means;
        const double want_v = 0.9 * rv0[ch] + 0.1 * mean_of_vars;
        cr_assert(fabs(a.rm->data[ch] - want_m) <= 1e-6 * (1 + fabs(want_m)),
                  "running mean[%lld] %.9g, want %.9g", (long long)ch, a.rm->data[ch], want_m);
        cr_assert(fabs(a.rv->data[ch] - want_v) <= 1e-6 * (1 + fabs(want_v)),
                  "running var[%lld] %.9g, want %.9g", (long long)ch, a.rv->data[ch], want_v);
    }

    /* eval: running statistics, whatever the splits */
    invar_graph_reset(g);
    invar_graph_set_training(g, 0);
    struct invar_tensor *e1 = invar_batchnorm_relu(g, in[0], in[1], in[2], a.rm, a.rv, 0.1f, 1e-5f);
    invar_graph_set_bn_splits(g, 1);
    struct invar_tensor *e2 = invar_batchnorm_relu(g, in[0], in[1], in[2], a.rm, a.rv, 0.1f, 1e-5f);
    cr_assert(memcmp(e1->data, e2->data, (size_t)e1->numel * sizeof(float)) == 0);

    for (int k = 0; k < 3; k++)
        in[k]->grad = NULL, gc_free(in[k]);
    invar_graph_destroy(g), invar_graph_destroy(h);
    gc_free(w), gc_free(a.rm), gc_free(a.rv);
}

Test(batchnorm, splits_match_separate_calls_4d)
{
    bn_split_matches_separate_calls(4, (int64_t[]){8, 5, 6, 7}, 4);
}
Test(batchnorm, splits_match_separate_calls_2d)
{
    bn_split_matches_separate_calls(2, (int64_t[]){12, 6}, 3);
}

/* Output, running statistics and every gradient of the fused op against relu(batchnorm(x)) on
 * the same inputs, through the same downstream loss. */
static void bnr_matches_composition(int ndim, const int64_t *shape, int training)
{
    const int64_t c = shape[1];
    struct invar_tensor *in[3];
    bnr_inputs(in, ndim, shape);
    struct invar_tensor *w = gc_tensor(ndim, shape, 0); /* L = sum(w * y) */
    float *grads[2][3], *outs[2], *stats[2][2];
    float rm0[64], rv0[64];
    cr_assert(c <= 64);
    struct bnr_args a = bnr_args_make(c, training, 0);
    memcpy(rm0, a.rm->data, (size_t)c * sizeof(float));
    memcpy(rv0, a.rv->data, (size_t)c * sizeof(float));
    for (int fused = 0; fused < 2; fused++) {
        memcpy(a.rm->data, rm0, (size_t)c * sizeof(float));
        memcpy(a.rv->data, rv0, (size_t)c * sizeof(float));
        struct invar_graph *g = invar_graph_create(1 << 16);
        invar_graph_set_training(g, training);
        for (int k = 0; k < 3; k++)
            in[k]->grad = invar_graph_zeros(g, in[k]->ndim, in[k]->shape)->data;
        struct invar_tensor *y =
            fused ? invar_batchnorm_relu(g, in[0], in[1], in[2], a.rm, a.rv, 0.1f, 1e-5f)
                  : invar_relu(g, invar_batchnorm(g, in[0], in[1], in[2], a.rm, a.rv, 0.1f, 1e-5f));
        cr_assert_eq(invar_graph_node_count(g), fused ? 1u : 2u);
        struct invar_tensor *loss = invar_sum(g, invar_mul(g, y, w));
        invar_graph_backward(g, loss);
        outs[fused] = malloc((size_t)y->numel * sizeof(float));
        memcpy(outs[fused], y->data, (size_t)y->numel * sizeof(float));
        for (int k = 0; k < 3; k++) {
            grads[fused][k] = malloc((size_t)in[k]->numel * sizeof(float));
            memcpy(grads[fused][k], in[k]->grad, (size_t)in[k]->numel * sizeof(float));
            in[k]->grad = NULL;
        }
        for (int s = 0; s < 2; s++) {
            stats[fused][s] = malloc((size_t)c * sizeof(float));
            memcpy(stats[fused][s], (s ? a.rv : a.rm)->data, (size_t)c * sizeof(float));
        }
        invar_graph_destroy(g);
    }
    const int64_t n = in[0]->numel;
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabsf(outs[0][i] - outs[1][i]) <= 1e-6f * (1 + fabsf(outs[0][i])),
                  "y[%lld]: %.9g vs %.9g", (long long)i, outs[0][i], outs[1][i]);
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < in[k]->numel; i++)
            cr_assert(fabsf(grads[0][k][i] - grads[1][k][i]) <= 1e-5f * (1 + fabsf(grads[0][k][i])),
                      "grad %d[%lld]: unfused %.9g, fused %.9g", k, (long long)i, grads[0][k][i],
                      grads[1][k][i]);
    for (int s = 0; s < 2; s++)
        for (int64_t i = 0; i < c; i++)
            cr_assert(stats[0][s][i] == stats[1][s][i], "running %s[%lld] differs",
                      s ? "var" : "mean", (long long)i);
    for (int f = 0; f < 2; f++) {
        free(outs[f]);
        for (int k = 0; k < 3; k++)
            free(grads[f][k]);
        free(stats[f][0]), free(stats[f][1]);
    }
    for (int k = 0; k < 3; k++)
        gc_free(in[k]);
    gc_free(w), gc_free(a.rm), gc_free(a.rv);
}

Test(batchnorm_relu, equals_relu_of_batchnorm_train_4d)
{
    bnr_matches_composition(4, (int64_t[]){4, 5, 6, 7}, 1);
}
Test(batchnorm_relu, equals_relu_of_batchnorm_train_2d)
{
    bnr_matches_composition(2, (int64_t[]){9, 6}, 1);
}
Test(batchnorm_relu, equals_relu_of_batchnorm_eval_4d)
{
    bnr_matches_composition(4, (int64_t[]){3, 4, 5, 5}, 0);
}

/* ---- batch-norm statistics ------------------------------------------------------------------ */

/* A channel far from zero with a small spread (1000 + U(-1, 1)) over many planes: the batch
 * variance reaching the running variance must match a double-precision two-pass reference to
 * float accuracy, which a float sum of squares would lose entirely (1e6 vs 1/3). */
Test(batchnorm, variance_keeps_float_accuracy_far_from_zero)
{
    const int64_t n = 64, c = 2, h = 9, w = 11, sp = h * w;
    struct invar_tensor *x = gc_tensor(4, (int64_t[]){n, c, h, w}, 0);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] += (i / sp) % c ? -250.0f : 1000.0f;
    float gs[2] = {1, 1}, bs[2] = {0, 0}, rms[2] = {0, 0}, rvs[2] = {0, 0};
    struct invar_tensor gamma, beta, rm, rv;
    invar_tensor_wrap(&gamma, gs, 1, (int64_t[]){2});
    invar_tensor_wrap(&beta, bs, 1, (int64_t[]){2});
    invar_tensor_wrap(&rm, rms, 1, (int64_t[]){2});
    invar_tensor_wrap(&rv, rvs, 1, (int64_t[]){2});
    struct invar_graph *g = invar_graph_create(1 << 20);
    /* momentum 1: the running statistics become the batch's (unbiased variance) */
    struct invar_tensor *y = invar_batchnorm(g, x, &gamma, &beta, &rm, &rv, 1.0f, 1e-5f);
    for (int64_t ch = 0; ch < c; ch++) {
        double s = 0, ss = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < sp; k++)
                s += x->data[(i * c + ch) * sp + k];
        const double mu = s / (double)(n * sp);
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < sp; k++) {
                const double d = x->data[(i * c + ch) * sp + k] - mu;
                ss += d * d;
            }
        const double var = ss / (double)(n * sp - 1);
        cr_assert(fabs(rms[ch] - mu) <= 1e-6 * fabs(mu), "mean %.9g vs %.9g", rms[ch], mu);
        cr_assert(fabs(rvs[ch] - var) <= 1e-5 * var, "variance %.9g vs %.9g", rvs[ch], var);
        /* and the output is standardised: mean 0, biased variance 1 */
        double ys = 0, yss = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < sp; k++) {
                const double v = y->data[(i * c + ch) * sp + k];
                ys += v, yss += v * v;
            }
        cr_assert(fabs(ys / (double)(n * sp)) < 1e-4, "output mean %g", ys / (double)(n * sp));
        cr_assert(fabs(yss / (double)(n * sp) - 1) < 1e-3, "output variance %g",
                  yss / (double)(n * sp));
    }
    invar_graph_destroy(g);
    gc_free(x);
}

/* Forward and backward of the fused op on a batch large enough to be summed in several groups
 * of images, against the textbook formulas evaluated in double in this test:
 *     y = max(gamma xhat + beta, 0),  g = dy [y > 0],
 *     dx = gamma istd (g - mean(g) - xhat mean(g xhat)),  dgamma = sum g xhat,  dbeta = sum g */
Test(batchnorm_relu, matches_double_reference_over_many_groups)
{
    const int64_t n = 40, c = 3, h = 11, w = 13, sp = h * w, m = n * sp;
    const int64_t shape[4] = {n, c, h, w};
    struct invar_tensor *in[3];
    bnr_inputs(in, 4, shape);
    struct invar_tensor *dy = gc_tensor(4, shape, 0);
    struct invar_graph *g = invar_graph_create(1 << 20);
    for (int k = 0; k < 3; k++)
        in[k]->grad = invar_graph_zeros(g, in[k]->ndim, in[k]->shape)->data;
    struct invar_tensor *y = invar_batchnorm_relu(g, in[0], in[1], in[2], NULL, NULL, 0.1f, 1e-5f);
    invar_graph_backward(g, invar_sum(g, invar_mul(g, y, dy))); /* dL/dy = dy */
    const float *x = in[0]->data;
    for (int64_t ch = 0; ch < c; ch++) {
        double s = 0, ss = 0, sg = 0, sgx = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < sp; k++)
                s += x[(i * c + ch) * sp + k];
        const double mu = s / (double)m;
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < sp; k++)
                ss += (x[(i * c + ch) * sp + k] - mu) * (x[(i * c + ch) * sp + k] - mu);
        const double istd = 1 / sqrt(ss / (double)m + 1e-5);
        const double gam = in[1]->data[ch], bet = in[2]->data[ch];
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < sp; k++) {
                const int64_t e = (i * c + ch) * sp + k;
                const double xh = (x[e] - mu) * istd, pre = gam * xh + bet;
                const double want = pre > 0 ? pre : 0;
                cr_assert(fabs(y->data[e] - want) <= 2e-5 * (1 + fabs(want)),
                          "y[%lld] %.9g vs %.9g", (long long)e, y->data[e], want);
                const double gg = pre > 0 ? dy->data[e] : 0;
                sg += gg, sgx += gg * xh;
            }
        cr_assert(fabs(in[1]->grad[ch] - sgx) <= 1e-4 * (1 + fabs(sgx)), "dgamma %g vs %g",
                  in[1]->grad[ch], sgx);
        cr_assert(fabs(in[2]->grad[ch] - sg) <= 1e-4 * (1 + fabs(sg)), "dbeta %g vs %g",
                  in[2]->grad[ch], sg);
        for (int64_t i = 0; i < n; i++)
            for (int64_t k = 0; k < sp; k++) {
                const int64_t e = (i * c + ch) * sp + k;
                const double xh = (x[e] - mu) * istd, pre = gam * xh + bet;
                const double gg = pre > 0 ? dy->data[e] : 0;
                const double want = gam * istd * (gg - sg / (double)m - xh * sgx / (double)m);
                cr_assert(fabs(in[0]->grad[e] - want) <= 1e-4 * (1 + fabs(want)),
                          "dx[%lld] %.9g vs %.9g", (long long)e, in[0]->grad[e], want);
            }
    }
    for (int k = 0; k < 3; k++)
        in[k]->grad = NULL, gc_free(in[k]);
    gc_free(dy);
    invar_graph_destroy(g);
}

/* ---- threads ----------------------------------------------------------------------------------
 */

/* The fused op's output, running statistics and gradients, computed once on the calling thread
 * and once split over threads, must agree bit for bit. */
Test(batchnorm_relu, threaded_slices_are_bitwise_identical)
{
    const int64_t shape[4] = {5, 7, 6, 5}, c = 7;
    struct invar_tensor *in[3];
    bnr_inputs(in, 4, shape);
    struct invar_tensor *w = gc_tensor(4, shape, 0);
    float *res[2][5];
    for (int split = 0; split < 2; split++) {
        ops_set_par_min(split ? 1 : ((int64_t)1 << 40));
        float rms[7] = {0}, rvs[7] = {1, 1, 1, 1, 1, 1, 1};
        struct invar_tensor rm, rv;
        invar_tensor_wrap(&rm, rms, 1, (int64_t[]){c});
        invar_tensor_wrap(&rv, rvs, 1, (int64_t[]){c});
        struct invar_graph *g = invar_graph_create(1 << 16);
        for (int k = 0; k < 3; k++)
            in[k]->grad = invar_graph_zeros(g, in[k]->ndim, in[k]->shape)->data;
        struct invar_tensor *y =
            invar_batchnorm_relu(g, in[0], in[1], in[2], &rm, &rv, 0.1f, 1e-5f);
        invar_graph_backward(g, invar_sum(g, invar_mul(g, y, w)));
        const float *src[5] = {y->data, in[0]->grad, in[1]->grad, rms, rvs};
        const int64_t len[5] = {y->numel, in[0]->numel, c, c, c};
        for (int k = 0; k < 5; k++) {
            res[split][k] = malloc((size_t)len[k] * sizeof(float));
            memcpy(res[split][k], src[k], (size_t)len[k] * sizeof(float));
        }
        for (int k = 0; k < 3; k++)
            in[k]->grad = NULL;
        invar_graph_destroy(g);
        if (split)
            cr_assert(memcmp(res[0][0], res[1][0], (size_t)len[0] * sizeof(float)) == 0,
                      "output differs");
        for (int k = 1; split && k < 5; k++)
            cr_assert(memcmp(res[0][k], res[1][k], (size_t)len[k] * sizeof(float)) == 0,
                      "result %d differs between one thread and two", k);
    }
    ops_set_par_min(0);
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 5; k++)
            free(res[s][k]);
    for (int k = 0; k < 3; k++)
        gc_free(in[k]);
    gc_free(w);
}

/* ---- max pooling 2x2 / 2 -------------------------------------------------------------------- */

/* Odd sizes (the last row and column are dropped), ties (values on a coarse grid), split over
 * threads or not: y and dx against a direct evaluation of the definition, first maximum wins. */
Test(maxpool2, matches_definition_threaded_or_not)
{
    const int64_t n = 3, c = 5, h = 7, w = 9, oh = 3, ow = 4;
    struct invar_tensor *x = gc_tensor(4, (int64_t[]){n, c, h, w}, 1);
    for (int64_t i = 0; i < x->numel; i++) /* a grid of 5 values: many ties */
        x->data[i] = roundf(x->data[i] * 2) / 2;
    struct invar_tensor *dy = gc_tensor(4, (int64_t[]){n, c, oh, ow}, 0);
    float *first = NULL;
    for (int split = 0; split < 2; split++) {
        ops_set_par_min(split ? 1 : ((int64_t)1 << 40));
        struct invar_graph *g = invar_graph_create(1 << 16);
        x->grad = invar_graph_zeros(g, 4, x->shape)->data;
        struct invar_tensor *y = invar_maxpool2d(g, x, 2, 2, 0);
        cr_assert(y->shape[2] == oh && y->shape[3] == ow);
        invar_graph_backward(g, invar_sum(g, invar_mul(g, y, dy)));
        for (int64_t p = 0; p < n * c; p++)
            for (int64_t oy = 0; oy < oh; oy++)
                for (int64_t ox = 0; ox < ow; ox++) {
                    int64_t at = -1;
                    for (int64_t ky = 0; ky < 2; ky++)
                        for (int64_t kx = 0; kx < 2; kx++) {
                            const int64_t e = p * h * w + (2 * oy + ky) * w + 2 * ox + kx;
                            if (at < 0 || x->data[e] > x->data[at])
                                at = e;
                        }
                    const int64_t o = p * oh * ow + oy * ow + ox;
                    cr_assert(y->data[o] == x->data[at], "y[%lld]", (long long)o);
                    cr_assert(x->grad[at] == dy->data[o], "dx at the winner of %lld", (long long)o);
                }
        double total = 0, want = 0;
        for (int64_t i = 0; i < x->numel; i++)
            total += x->grad[i];
        for (int64_t i = 0; i < dy->numel; i++)
            want += dy->data[i];
        cr_assert(fabs(total - want) < 1e-5, "gradient reached cells that did not win");
        if (!split) {
            first = malloc((size_t)x->numel * sizeof *first);
            memcpy(first, x->grad, (size_t)x->numel * sizeof *first);
        } else {
            cr_assert(memcmp(first, x->grad, (size_t)x->numel * sizeof *first) == 0);
        }
        x->grad = NULL;
        invar_graph_destroy(g);
    }
    ops_set_par_min(0);
    free(first);
    gc_free(x), gc_free(dy);
}

/* ---- cross-entropy ----------------------------------------------------------------------------
 */

/* Wide rows (a ragged 1003 columns, logits over +-30 and a few far below the max, where exp
 * underflows): the loss and every gradient against log-sum-exp and softmax in double. */
/* Rows wider than a vector block with a ragged end, large logits: loss and gradient against
 * double precision; then the same bits whether the rows run on one thread or two, and whether
 * the gradient buffer is fresh (written) or already exists (added to). */
Test(cross_entropy, wide_rows_match_double_reference)
{
    const int64_t n = 3, c = 1003;
    struct invar_tensor *x = gc_tensor(2, (int64_t[]){n, c}, 1);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] *= i % 97 == 5 ? 200.0f : 30.0f;
    const int32_t labels[3] = {0, 500, 1002};
    float *first = malloc((size_t)x->numel * sizeof(float)), first_loss = 0;
    for (int variant = 0; variant < 4; variant++) {
        const int split = variant & 1, fresh = variant >> 1;
        ops_set_par_min(split ? 1 : ((int64_t)1 << 40));
        struct invar_graph *g = invar_graph_create(1 << 20);
        x->grad = fresh ? NULL : invar_graph_zeros(g, 2, x->shape)->data;
        struct invar_tensor *loss = invar_cross_entropy(g, x, labels);
        invar_graph_backward(g, loss);
        if (variant == 0) {
            double want = 0;
            for (int64_t i = 0; i < n; i++) {
                const float *r = x->data + i * c;
                double m = r[0], s = 0;
                for (int64_t j = 1; j < c; j++)
                    m = r[j] > m ? r[j] : m;
                for (int64_t j = 0; j < c; j++)
                    s += exp(r[j] - m);
                const double lse = m + log(s);
                want += (lse - r[labels[i]]) / (double)n;
                for (int64_t j = 0; j < c; j++) {
                    const double p = exp(r[j] - lse), d = (p - (j == labels[i])) / (double)n;
                    const float got = x->grad[i * c + j];
                    cr_assert(fabs(got - d) <= 1e-6 * fabs(d) + 1e-12,
                              "dx[%lld][%lld] %.9g vs %.9g", (long long)i, (long long)j, got, d);
                }
            }
            cr_assert(fabs(loss->data[0] - want) <= 1e-6 * fabs(want), "loss %.9g vs %.9g",
                      loss->data[0], want);
            memcpy(first, x->grad, (size_t)x->numel * sizeof(float));
            first_loss = loss->data[0];
        } else {
            cr_assert(loss->data[0] == first_loss, "variant %d: loss differs", variant);
            cr_assert(memcmp(first, x->grad, (size_t)x->numel * sizeof(float)) == 0,
                      "variant %d: gradient bits differ", variant);
        }
        x->grad = NULL;
        invar_graph_destroy(g);
    }
    ops_set_par_min(0);
    free(first);
    gc_free(x);
}
