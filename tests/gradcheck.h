/* Central finite-difference gradient check shared by the op and objective suites.
 *
 *     static struct invar_tensor *f(struct invar_graph *g, struct invar_tensor **in, void *ctx)
 *     { return invar_relu(g, in[0]); }
 *     ...
 *     struct invar_tensor *x = gc_tensor(2, (int64_t[]){3, 5}, 1);   // random, requires grad
 *     gc_check(f, &x, 1, NULL, 1e-3, 2e-2);                           // Criterion asserts
 *
 * The scalar under test is L = sum_i w_i * out_i with w a fixed random vector, so every output
 * element matters and errors cannot cancel. The analytic gradient comes from one backward pass;
 * the numeric one perturbs every element of every input that requires grad by +-eps (forward
 * in no-grad mode, L summed in double). An element fails when
 * |analytic - numeric| > tol * max(1, |analytic|, |numeric|).
 */
#ifndef INVAR_TESTS_GRADCHECK_H
#define INVAR_TESTS_GRADCHECK_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "invar/graph.h"
#include "invar/rng.h"

typedef struct invar_tensor *(*gc_fn)(struct invar_graph *g, struct invar_tensor **in,
                                      void *ctx);

static uint64_t gc_seed = 12345;

/* -log softmax(logits)[label] in double: the by-hand side of the loss tests. */
static inline double gc_nll(const double *logits, int n, int label)
{
    double mx = logits[0];
    for (int i = 1; i < n; i++)
        mx = fmax(mx, logits[i]);
    double s = 0;
    for (int i = 0; i < n; i++)
        s += exp(logits[i] - mx);
    return log(s) + mx - logits[label];
}

/* A heap tensor of uniform values in [-1, 1) (freed with gc_free). */
static inline struct invar_tensor *gc_tensor(int ndim, const int64_t *shape, int requires_grad)
{
    struct invar_tensor *t = calloc(1, sizeof *t);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    invar_tensor_wrap(t, calloc((size_t)n, sizeof(float)), ndim, shape);
    struct invar_rng r;
    invar_rng_init(&r, gc_seed++, 0);
    for (int64_t i = 0; i < n; i++)
        t->data[i] = 2.0f * invar_rng_uniform(&r) - 1.0f;
    t->requires_grad = requires_grad;
    return t;
}

static inline void gc_free(struct invar_tensor *t)
{
    if (!t)
        return;
    free(t->data);
    free(t);
}

struct gc_dot_ctx {
    const float *w;
};

/* sum(w * x) over each input x (all of w's shape) */
static void gc_dot_backward(struct invar_tensor *out, struct invar_tensor **in, int n_in,
                            void *ctx)
{
    const float *w = ((struct gc_dot_ctx *)ctx)->w;
    for (int k = 0; k < n_in; k++)
        for (int64_t i = 0; i < in[k]->numel; i++)
            in[k]->grad[i] += out->grad[0] * w[i];
}

/* L = sum(w * out) as a one-element tensor of g, recorded so that backward adds w times L's
 * gradient to out's. */
static inline struct invar_tensor *gc_dot(struct invar_graph *g, struct invar_tensor *out,
                                          const float *w)
{
    struct invar_tensor *loss = invar_graph_tensor(g, 1, (int64_t[]){1});
    double s = 0;
    for (int64_t i = 0; i < out->numel; i++)
        s += (double)w[i] * out->data[i];
    loss->data[0] = (float)s;
    struct gc_dot_ctx *dc = invar_arena_alloc(invar_graph_arena(g), sizeof *dc);
    dc->w = w;
    invar_custom_op(g, "gc_dot", loss, &out, 1, gc_dot_backward, dc);
    return loss;
}

static inline double gc_loss(gc_fn f, struct invar_tensor **in, void *ctx, const float *w,
                             int64_t *out_numel)
{
    struct invar_graph *g = invar_graph_create(1 << 20);
    invar_graph_set_grad(g, 0);
    struct invar_tensor *out = f(g, in, ctx);
    double s = 0;
    if (w)
        for (int64_t i = 0; i < out->numel; i++)
            s += (double)w[i] * out->data[i];
    if (out_numel)
        *out_numel = out->numel;
    invar_graph_destroy(g);
    return s;
}

/* Returns the largest scaled error seen; asserts it is within tol. */
static inline double gc_check(gc_fn f, struct invar_tensor **in, int n_in, void *ctx,
                              double eps, double tol)
{
    int64_t n_out = 0;
    gc_loss(f, in, ctx, NULL, &n_out);
    float *w = malloc((size_t)n_out * sizeof *w);
    struct invar_rng r;
    invar_rng_init(&r, 777, 1);
    for (int64_t i = 0; i < n_out; i++)
        w[i] = 2.0f * invar_rng_uniform(&r) - 1.0f;

    /* analytic */
    float **analytic = calloc((size_t)n_in, sizeof *analytic);
    struct invar_graph *g = invar_graph_create(1 << 20);
    for (int k = 0; k < n_in; k++)
        in[k]->grad = NULL;
    struct invar_tensor *out = f(g, in, ctx);
    cr_assert(out->requires_grad, "output does not require grad: was a node recorded?");
    invar_graph_backward(g, gc_dot(g, out, w));
    for (int k = 0; k < n_in; k++) {
        if (!in[k]->requires_grad)
            continue;
        cr_assert_not_null(in[k]->grad, "input %d received no gradient", k);
        analytic[k] = malloc((size_t)in[k]->numel * sizeof(float));
        memcpy(analytic[k], in[k]->grad, (size_t)in[k]->numel * sizeof(float));
        in[k]->grad = NULL;
    }
    invar_graph_destroy(g);

    /* numeric */
    double worst = 0;
    for (int k = 0; k < n_in; k++) {
        if (!in[k]->requires_grad)
            continue;
        for (int64_t i = 0; i < in[k]->numel; i++) {
            float saved = in[k]->data[i];
            in[k]->data[i] = saved + (float)eps;
            double lp = gc_loss(f, in, ctx, w, NULL);
            in[k]->data[i] = saved - (float)eps;
            double lm = gc_loss(f, in, ctx, w, NULL);
            in[k]->data[i] = saved;
            double num = (lp - lm) / (2 * eps);
            double ana = analytic[k][i];
            double scale = fmax(1.0, fmax(fabs(ana), fabs(num)));
            double e = fabs(ana - num) / scale;
            if (e > worst)
                worst = e;
            cr_assert(e <= tol, "input %d element %lld: analytic %.6g, numeric %.6g", k,
                      (long long)i, ana, num);
        }
        free(analytic[k]);
    }
    free(analytic);
    free(w);
    return worst;
}

#endif
