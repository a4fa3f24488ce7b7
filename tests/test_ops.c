/* The non-spatial ops: a finite-difference gradient check for each, values against numbers
 * worked out by hand, graph bookkeeping (no-grad mode, shared inputs), and a training step that
 * allocates nothing once the arena has settled. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "invar/graph.h"

#define EPS 1e-3
#define TOL 1e-2

/* Asserts |got - want| <= tol, naming the element. */
static void assert_close(const float *got, const double *want, int64_t n, double tol)
{
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= tol, "element %lld: got %.9g, want %.9g", (long long)i,
                  got[i], want[i]);
}

/* A heap tensor holding the given values. */
static struct invar_tensor *tensor_of(int ndim, const int64_t *shape, const float *v, int rg)
{
    struct invar_tensor *t = gc_tensor(ndim, shape, rg);
    memcpy(t->data, v, (size_t)t->numel * sizeof(float));
    return t;
}

/* Runs gc_check on freshly made random inputs of the given shapes, then frees them. */
static void check(gc_fn f, int n_in, const int ndim[], const int64_t shapes[][INVAR_MAX_DIMS],
                  void *ctx)
{
    struct invar_tensor *in[8];
    cr_assert(n_in <= 8);
    for (int k = 0; k < n_in; k++)
        in[k] = gc_tensor(ndim[k], shapes[k], 1);
    gc_check(f, in, n_in, ctx, EPS, TOL);
    for (int k = 0; k < n_in; k++)
        gc_free(in[k]);
}

/* ---- elementwise ------------------------------------------------------------------------ */

static struct invar_tensor *f_add(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_add(g, in[0], in[1]);
}
static struct invar_tensor *f_sub(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_sub(g, in[0], in[1]);
}
static struct invar_tensor *f_mul(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_mul(g, in[0], in[1]);
}

Test(ops, grad_add_sub_mul)
{
    const int nd[] = {3, 3};
    const int64_t sh[][INVAR_MAX_DIMS] = {{3, 4, 5}, {3, 4, 5}};
    check(f_add, 2, nd, sh, NULL);
    check(f_sub, 2, nd, sh, NULL);
    check(f_mul, 2, nd, sh, NULL);
}

static struct invar_tensor *f_add_bias(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_add_bias(g, in[0], in[1]);
}

Test(ops, grad_add_bias_2d_and_4d)
{
    const int nd[] = {2, 1};
    const int64_t sh2[][INVAR_MAX_DIMS] = {{4, 3}, {3}};
    check(f_add_bias, 2, nd, sh2, NULL);
    const int nd4[] = {4, 1};
    const int64_t sh4[][INVAR_MAX_DIMS] = {{2, 3, 4, 5}, {3}};
    check(f_add_bias, 2, nd4, sh4, NULL);
}

static struct invar_tensor *f_scale(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_scale(g, in[0], -1.7f, 0.3f);
}
static struct invar_tensor *f_exp(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_exp(g, in[0]);
}

Test(ops, grad_scale_exp)
{
    const int nd[] = {2};
    const int64_t sh[][INVAR_MAX_DIMS] = {{3, 7}};
    check(f_scale, 1, nd, sh, NULL);
    check(f_exp, 1, nd, sh, NULL);
}

static struct invar_tensor *f_relu(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_relu(g, in[0]);
}
static struct invar_tensor *f_log(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_log(g, in[0]);
}

Test(ops, grad_relu_away_from_zero)
{
    struct invar_tensor *x = gc_tensor(2, (int64_t[]){4, 6}, 1);
    int pos = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        /* keep every element at least 0.1 from the kink so +-EPS never crosses it */
        float v = x->data[i];
        x->data[i] = v >= 0 ? v + 0.1f : v - 0.1f;
        pos += v >= 0;
    }
    cr_assert(pos > 0 && pos < x->numel, "want both signs");
    gc_check(f_relu, &x, 1, NULL, EPS, TOL);
    gc_free(x);
}

Test(ops, grad_log_positive)
{
    struct invar_tensor *x = gc_tensor(2, (int64_t[]){3, 5}, 1);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = fabsf(x->data[i]) + 0.5f;
    gc_check(f_log, &x, 1, NULL, EPS, TOL);
    gc_free(x);
}

Test(ops, elementwise_values)
{
    struct invar_graph *g = invar_graph_create(1 << 16);
    float av[] = {1, -2, 3, 0.5f}, bv[] = {4, 5, -6, 2};
    struct invar_tensor *a = tensor_of(2, (int64_t[]){2, 2}, av, 0);
    struct invar_tensor *b = tensor_of(2, (int64_t[]){2, 2}, bv, 0);
    assert_close(invar_add(g, a, b)->data, (double[]){5, 3, -3, 2.5}, 4, 0);
    assert_close(invar_sub(g, a, b)->data, (double[]){-3, -7, 9, -1.5}, 4, 0);
    assert_close(invar_mul(g, a, b)->data, (double[]){4, -10, -18, 1}, 4, 0);
    assert_close(invar_scale(g, a, 2, 1)->data, (double[]){3, -3, 7, 2}, 4, 0);
    assert_close(invar_relu(g, a)->data, (double[]){1, 0, 3, 0.5}, 4, 0);
    assert_close(invar_exp(g, a)->data,
                 (double[]){2.718281828, 0.135335283, 20.08553692, 1.648721271}, 4, 1e-5);
    float cv[] = {4, 5, 0.25f, 1};
    struct invar_tensor *c = tensor_of(2, (int64_t[]){2, 2}, cv, 0);
    assert_close(invar_log(g, c)->data, (double[]){1.386294361, 1.609437912, -1.386294361, 0}, 4,
                 1e-6);
    /* x (2, 2) + bias along dim 1 */
    float biasv[] = {10, 20};
    struct invar_tensor *bias = tensor_of(1, (int64_t[]){2}, biasv, 0);
    assert_close(invar_add_bias(g, a, bias)->data, (double[]){11, 18, 13, 20.5}, 4, 0);
    gc_free(a);
    gc_free(b);
    gc_free(c);
    gc_free(bias);
    invar_graph_destroy(g);
}

/* ---- linear algebra --------------------------------------------------------------------- */

struct mm_ctx {
    int ta, tb;
};

static struct invar_tensor *f_matmul(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    const struct mm_ctx *m = c;
    return invar_matmul(g, in[0], in[1], m->ta, m->tb);
}

Test(ops, grad_matmul_all_transposes)
{
    const int64_t M = 3, K = 4, N = 5;
    const int nd[] = {2, 2};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            const int64_t sh[][INVAR_MAX_DIMS] = {{ta ? K : M, ta ? M : K},
                                                  {tb ? N : K, tb ? K : N}};
            struct mm_ctx c = {ta, tb};
            check(f_matmul, 2, nd, sh, &c);
        }
}

Test(ops, matmul_values_with_transposes)
{
    struct invar_graph *g = invar_graph_create(1 << 16);
    /* a (2, 3), b (3, 2); a @ b worked out by hand */
    float av[] = {1, 2, 3, 4, 5, 6}, bv[] = {7, 8, 9, 10, 11, 12};
    struct invar_tensor *a = tensor_of(2, (int64_t[]){2, 3}, av, 0);
    struct invar_tensor *b = tensor_of(2, (int64_t[]){3, 2}, bv, 0);
    struct invar_tensor *y = invar_matmul(g, a, b, 0, 0);
    cr_assert(y->shape[0] == 2 && y->shape[1] == 2);
    assert_close(y->data, (double[]){58, 64, 139, 154}, 4, 0);
    /* a^T (3, 2) @ a (2, 3): the Gram matrix of a's columns */
    y = invar_matmul(g, a, a, 1, 0);
    cr_assert(y->shape[0] == 3 && y->shape[1] == 3);
    assert_close(y->data, (double[]){17, 22, 27, 22, 29, 36, 27, 36, 45}, 9, 0);
    /* a (2, 3) @ a^T (3, 2) */
    y = invar_matmul(g, a, a, 0, 1);
    assert_close(y->data, (double[]){14, 32, 32, 77}, 4, 0);
    /* b^T (2, 3) @ a^T (3, 2) = (a b)^T */
    y = invar_matmul(g, b, a, 1, 1);
    assert_close(y->data, (double[]){58, 139, 64, 154}, 4, 0);
    /* transpose */
    y = invar_transpose(g, a);
    cr_assert(y->shape[0] == 3 && y->shape[1] == 2);
    assert_close(y->data, (double[]){1, 4, 2, 5, 3, 6}, 6, 0);
    gc_free(a);
    gc_free(b);
    invar_graph_destroy(g);
}

static struct invar_tensor *f_matmul_self(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_matmul(g, in[0], in[0], 0, 1); /* x x^T: both gradients land on x */
}

Test(ops, grad_matmul_same_tensor_twice)
{
    const int nd[] = {2};
    const int64_t sh[][INVAR_MAX_DIMS] = {{3, 5}};
    check(f_matmul_self, 1, nd, sh, NULL);
}

static struct invar_tensor *f_linear(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_linear(g, in[0], in[1], in[2]);
}
static struct invar_tensor *f_linear_nobias(struct invar_graph *g, struct invar_tensor **in,
                                            void *c)
{
    (void)c;
    return invar_linear(g, in[0], in[1], NULL);
}
static struct invar_tensor *f_transpose(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_transpose(g, in[0]);
}

Test(ops, grad_linear_and_transpose)
{
    const int nd[] = {2, 2, 1};
    const int64_t sh[][INVAR_MAX_DIMS] = {{4, 6}, {3, 6}, {3}};
    check(f_linear, 3, nd, sh, NULL);
    check(f_linear_nobias, 2, nd, sh, NULL);
    const int nd1[] = {2};
    const int64_t sht[][INVAR_MAX_DIMS] = {{37, 5}}; /* crosses a 32-wide tile */
    check(f_transpose, 1, nd1, sht, NULL);
}

Test(ops, linear_values)
{
    struct invar_graph *g = invar_graph_create(1 << 16);
    float xv[] = {1, 2, 3, 4}, wv[] = {1, 0, 0, 1, 1, -1}, bv[] = {0.5f, -1, 2};
    struct invar_tensor *x = tensor_of(2, (int64_t[]){2, 2}, xv, 0);
    struct invar_tensor *w = tensor_of(2, (int64_t[]){3, 2}, wv, 0);
    struct invar_tensor *b = tensor_of(1, (int64_t[]){3}, bv, 0);
    struct invar_tensor *y = invar_linear(g, x, w, b); // (2, 3)
    assert_close(y->data, (double[]){1.5, 1, 1, 3.5, 3, 1}, 6, 0);
    y = invar_linear(g, x, w, NULL);
    assert_close(y->data, (double[]){1, 2, -1, 3, 4, -1}, 6, 0);
    gc_free(x);
    gc_free(w);
    gc_free(b);
    invar_graph_destroy(g);
}

/* ---- reductions ------------------------------------------------------------------------- */

static struct invar_tensor *f_sum(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_sum(g, in[0]);
}
static struct invar_tensor *f_mean(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_mean(g, in[0]);
}
static struct invar_tensor *f_sum_rows(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_sum_rows(g, in[0]);
}

Test(ops, grad_sum_mean_sum_rows)
{
    const int nd[] = {3};
    const int64_t sh[][INVAR_MAX_DIMS] = {{2, 3, 4}};
    check(f_sum, 1, nd, sh, NULL);
    check(f_mean, 1, nd, sh, NULL);
    const int nd2[] = {2};
    const int64_t sh2[][INVAR_MAX_DIMS] = {{4, 6}};
    check(f_sum_rows, 1, nd2, sh2, NULL);
}

static struct invar_tensor *f_l2(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_l2_normalize(g, in[0], 1e-2f);
}
static struct invar_tensor *f_cos(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_cosine_similarity(g, in[0], in[1], 1e-2f);
}

Test(ops, grad_l2_normalize_including_clamped_row)
{
    struct invar_tensor *x = gc_tensor(2, (int64_t[]){4, 6}, 1);
    /* row 3 well below eps = 1e-2 (even after a +-EPS nudge): its norm is clamped */
    for (int j = 0; j < 6; j++)
        x->data[3 * 6 + j] *= 1e-4f;
    gc_check(f_l2, &x, 1, NULL, EPS, TOL);
    gc_free(x);
}

Test(ops, grad_cosine_including_clamped_row)
{
    struct invar_tensor *in[2] = {gc_tensor(2, (int64_t[]){5, 7}, 1),
                                  gc_tensor(2, (int64_t[]){5, 7}, 1)};
    for (int j = 0; j < 7; j++)
        in[0]->data[4 * 7 + j] *= 1e-4f;
    gc_check(f_cos, in, 2, NULL, EPS, TOL);
    gc_free(in[0]);
    gc_free(in[1]);
}

Test(ops, reduction_values)
{
    struct invar_graph *g = invar_graph_create(1 << 16);
    float xv[] = {3, 4, 0, -5, 12, 0};
    struct invar_tensor *x = tensor_of(2, (int64_t[]){2, 3}, xv, 0);
    assert_close(invar_sum(g, x)->data, (double[]){14}, 1, 0);
    assert_close(invar_mean(g, x)->data, (double[]){14.0 / 6}, 1, 1e-6);
    assert_close(invar_sum_rows(g, x)->data, (double[]){7, 7}, 2, 0);
    /* rows (3, 4, 0) and (-5, 12, 0) have norms 5 and 13 */
    assert_close(invar_l2_normalize(g, x, 1e-6f)->data,
                 (double[]){0.6, 0.8, 0, -5.0 / 13, 12.0 / 13, 0}, 6, 1e-6);
    /* a norm below eps divides by eps instead */
    float tv[] = {3e-3f, 4e-3f};
    struct invar_tensor *t = tensor_of(2, (int64_t[]){1, 2}, tv, 0);
    assert_close(invar_l2_normalize(g, t, 0.1f)->data, (double[]){0.03, 0.04}, 2, 1e-7);
    /* cos((3, 4, 0), (1, 0, 0)) = 0.6; cos((-5, 12, 0), (0, 1, 0)) = 12/13 */
    float uv[] = {1, 0, 0, 0, 1, 0};
    struct invar_tensor *u = tensor_of(2, (int64_t[]){2, 3}, uv, 0);
    assert_close(invar_cosine_similarity(g, x, u, 1e-8f)->data, (double[]){0.6, 12.0 / 13}, 2,
                 1e-6);
    gc_free(x);
    gc_free(t);
    gc_free(u);
    invar_graph_destroy(g);
}

/* ---- losses ----------------------------------------------------------------------------- */

static struct invar_tensor *f_log_softmax(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_log_softmax(g, in[0]);
}
static struct invar_tensor *f_ce(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    return invar_cross_entropy(g, in[0], c);
}
static struct invar_tensor *f_mse(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_mse(g, in[0], in[1]);
}

Test(ops, grad_log_softmax_cross_entropy_mse)
{
    const int nd[] = {2, 2};
    const int64_t sh[][INVAR_MAX_DIMS] = {{4, 7}, {4, 7}};
    check(f_log_softmax, 1, nd, sh, NULL);
    int32_t labels[] = {6, 0, 3, 3};
    check(f_ce, 1, nd, sh, labels);
    check(f_mse, 2, nd, sh, NULL);
}

Test(ops, cross_entropy_by_hand)
{
    /* Row 0 (1, 2, 3), label 2: -log(e^3 / (e + e^2 + e^3)) = log(1 + e^-1 + e^-2)
     * = log(1.503214724) = 0.407605964. Row 1 (1, 1, 1), label 0: log 3 = 1.098612289.
     * Mean 0.753109126. */
    struct invar_graph *g = invar_graph_create(1 << 16);
    float xv[] = {1, 2, 3, 1, 1, 1};
    struct invar_tensor *x = tensor_of(2, (int64_t[]){2, 3}, xv, 1);
    int32_t labels[] = {2, 0};
    struct invar_tensor *loss = invar_cross_entropy(g, x, labels);
    assert_close(loss->data, (double[]){0.753109126}, 1, 1e-6);
    invar_graph_backward(g, loss);
    /* d/dx = (softmax - onehot) / 2: row 0 softmax (0.090030573, 0.244728471, 0.665240956) */
    assert_close(x->grad,
                 (double[]){0.090030573 / 2, 0.244728471 / 2, (0.665240956 - 1) / 2,
                            (1.0 / 3 - 1) / 2, 1.0 / 6, 1.0 / 6},
                 6, 1e-6);
    gc_free(x);
    invar_graph_destroy(g);
}

Test(ops, cross_entropy_huge_logits_finite_and_exact)
{
    /* Row 0 (1e4, -1e4, 0), label 0: the right class dominates, loss 0 (e^-1e4 underflows).
     * Row 1 (-1e4, 1e4, 0), label 2: loss = 1e4 - 0 + log(1 + e^-1e4 + e^-2e4) = 1e4.
     * Row 2 (1e4, 1e4, -1e4), label 1: two equal winners, loss log 2. */
    struct invar_graph *g = invar_graph_create(1 << 16);
    float xv[] = {1e4f, -1e4f, 0, -1e4f, 1e4f, 0, 1e4f, 1e4f, -1e4f};
    struct invar_tensor *x = tensor_of(2, (int64_t[]){3, 3}, xv, 1);
    int32_t labels[] = {0, 2, 1};
    struct invar_tensor *loss = invar_cross_entropy(g, x, labels);
    cr_assert(isfinite(loss->data[0]));
    assert_close(loss->data, (double[]){(0 + 1e4 + 0.693147181) / 3}, 1, 1e-3);
    invar_graph_backward(g, loss);
    const double t = 1.0 / 3;
    assert_close(x->grad, (double[]){0, 0, 0, 0, t, -t, t / 2, t / 2 - t, 0}, 9, 1e-6);
    /* log_softmax agrees and stays finite */
    struct invar_tensor *ls = invar_log_softmax(g, x);
    for (int i = 0; i < 9; i++)
        cr_assert(isfinite(ls->data[i]), "log_softmax[%d] = %g", i, ls->data[i]);
    assert_close(ls->data, (double[]){0, -2e4, -1e4, -2e4, 0, -1e4}, 6, 1e-3);
    assert_close(ls->data + 6, (double[]){-0.693147181, -0.693147181}, 2, 1e-6);
    gc_free(x);
    invar_graph_destroy(g);
}

Test(ops, softmax_rows_sum_to_one)
{
    struct invar_graph *g = invar_graph_create(1 << 16);
    struct invar_tensor *x = gc_tensor(2, (int64_t[]){5, 9}, 0);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] *= 30; /* spread wide enough that a naive exp would lose mass */
    struct invar_tensor *ls = invar_log_softmax(g, x);
    for (int i = 0; i < 5; i++) {
        double s = 0;
        for (int j = 0; j < 9; j++) {
            cr_assert(ls->data[i * 9 + j] <= 0);
            s += exp(ls->data[i * 9 + j]);
        }
        cr_assert(fabs(s - 1) < 1e-5, "row %d sums to %.9g", i, s);
    }
    gc_free(x);
    invar_graph_destroy(g);
}

Test(ops, mse_values)
{
    struct invar_graph *g = invar_graph_create(1 << 16);
    float av[] = {1, 2, 3, 4}, bv[] = {0, 2, 5, 1};
    struct invar_tensor *a = tensor_of(2, (int64_t[]){2, 2}, av, 1);
    struct invar_tensor *b = tensor_of(2, (int64_t[]){2, 2}, bv, 0);
    struct invar_tensor *loss = invar_mse(g, a, b);
    assert_close(loss->data, (double[]){(1 + 0 + 4 + 9) / 4.0}, 1, 1e-7);
    invar_graph_backward(g, loss);
    assert_close(a->grad, (double[]){0.5, 0, -1, 1.5}, 4, 1e-7);
    cr_assert_null(b->grad, "b does not require grad");
    gc_free(a);
    gc_free(b);
    invar_graph_destroy(g);
}

/* ---- shape ops -------------------------------------------------------------------------- */

struct dim_ctx {
    int dim;
    int64_t start, len;
};

static struct invar_tensor *f_concat3(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    return invar_concat(g, in, 3, ((struct dim_ctx *)c)->dim);
}
static struct invar_tensor *f_slice(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    const struct dim_ctx *d = c;
    return invar_slice(g, in[0], d->dim, d->start, d->len);
}

Test(ops, grad_concat_dims_0_and_1)
{
    const int nd[] = {2, 2, 2};
    const int64_t sh0[][INVAR_MAX_DIMS] = {{2, 5}, {3, 5}, {1, 5}};
    check(f_concat3, 3, nd, sh0, &(struct dim_ctx){.dim = 0});
    const int64_t sh1[][INVAR_MAX_DIMS] = {{3, 2}, {3, 4}, {3, 1}};
    check(f_concat3, 3, nd, sh1, &(struct dim_ctx){.dim = 1});
    const int nd4[] = {4, 4, 4};
    const int64_t sh4[][INVAR_MAX_DIMS] = {{2, 1, 3, 2}, {2, 2, 3, 2}, {2, 3, 3, 2}};
    check(f_concat3, 3, nd4, sh4, &(struct dim_ctx){.dim = 1});
}

Test(ops, grad_concat_with_constant_input)
{
    struct invar_tensor *in[3] = {gc_tensor(2, (int64_t[]){3, 2}, 1),
                                  gc_tensor(2, (int64_t[]){3, 4}, 0),
                                  gc_tensor(2, (int64_t[]){3, 1}, 1)};
    gc_check(f_concat3, in, 3, &(struct dim_ctx){.dim = 1}, EPS, TOL);
    cr_assert_null(in[1]->grad);
    for (int k = 0; k < 3; k++)
        gc_free(in[k]);
}

Test(ops, grad_slice_dims_0_and_1)
{
    const int nd[] = {2};
    const int64_t sh[][INVAR_MAX_DIMS] = {{5, 6}};
    check(f_slice, 1, nd, sh, &(struct dim_ctx){.dim = 0, .start = 1, .len = 3});
    check(f_slice, 1, nd, sh, &(struct dim_ctx){.dim = 1, .start = 2, .len = 4});
    const int nd3[] = {3};
    const int64_t sh3[][INVAR_MAX_DIMS] = {{2, 3, 5}};
    check(f_slice, 1, nd3, sh3, &(struct dim_ctx){.dim = 2, .start = 4, .len = 1});
}

Test(ops, concat_slice_values)
{
    struct invar_graph *g = invar_graph_create(1 << 16);
    float av[] = {1, 2, 3, 4}, bv[] = {5, 6};
    struct invar_tensor *a = tensor_of(2, (int64_t[]){2, 2}, av, 0);
    struct invar_tensor *b = tensor_of(2, (int64_t[]){2, 1}, bv, 0);
    struct invar_tensor *c = tensor_of(2, (int64_t[]){1, 2}, bv, 0);
    struct invar_tensor *y = invar_concat(g, (struct invar_tensor *[]){a, b}, 2, 1); // (2, 3)
    cr_assert(y->shape[0] == 2 && y->shape[1] == 3);
    assert_close(y->data, (double[]){1, 2, 5, 3, 4, 6}, 6, 0);
    y = invar_concat(g, (struct invar_tensor *[]){a, c}, 2, 0); // (3, 2)
    cr_assert(y->shape[0] == 3 && y->shape[1] == 2);
    assert_close(y->data, (double[]){1, 2, 3, 4, 5, 6}, 6, 0);
    struct invar_tensor *s = invar_slice(g, y, 1, 1, 1); // (3, 1)
    cr_assert(s->shape[0] == 3 && s->shape[1] == 1);
    assert_close(s->data, (double[]){2, 4, 6}, 3, 0);
    s = invar_slice(g, y, 0, 1, 2); // (2, 2)
    assert_close(s->data, (double[]){3, 4, 5, 6}, 4, 0);
    gc_free(a);
    gc_free(b);
    gc_free(c);
    invar_graph_destroy(g);
}

static struct invar_tensor *f_reshape_then_mul(struct invar_graph *g, struct invar_tensor **in,
                                               void *c)
{
    (void)c;
    /* (2, 3, 4) viewed as (6, 4), then x * x so the view's gradient depends on its data */
    struct invar_tensor *v = invar_reshape(g, in[0], 2, (int64_t[]){6, 4});
    return invar_mul(g, v, v);
}
static struct invar_tensor *f_reshape(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    (void)c;
    return invar_reshape(g, in[0], 3, (int64_t[]){4, 3, 2});
}

Test(ops, grad_reshape)
{
    const int nd[] = {3};
    const int64_t sh[][INVAR_MAX_DIMS] = {{2, 3, 4}};
    check(f_reshape, 1, nd, sh, NULL);
    check(f_reshape_then_mul, 1, nd, sh, NULL);
}

struct rows_ctx_t {
    const int64_t *idx;
    int64_t n;
};

static struct invar_tensor *f_gather(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    const struct rows_ctx_t *r = c;
    return invar_gather_rows(g, in[0], r->idx, r->n);
}
static struct invar_tensor *f_scatter(struct invar_graph *g, struct invar_tensor **in, void *c)
{
    const struct rows_ctx_t *r = c;
    return invar_scatter_rows(g, in[0], r->idx, r->n, in[1]);
}

Test(ops, grad_gather_rows_repeated_indices)
{
    const int64_t idx[] = {2, 0, 2, 4, 2};
    const int nd[] = {2};
    const int64_t sh[][INVAR_MAX_DIMS] = {{6, 3}};
    check(f_gather, 1, nd, sh, &(struct rows_ctx_t){idx, 5});
}

Test(ops, grad_scatter_rows)
{
    const int64_t idx[] = {4, 1};
    const int nd[] = {2, 2};
    const int64_t sh[][INVAR_MAX_DIMS] = {{5, 3}, {2, 3}};
    check(f_scatter, 2, nd, sh, &(struct rows_ctx_t){idx, 2});
}

Test(ops, gather_scatter_values)
{
    struct invar_graph *g = invar_graph_create(1 << 16);
    float xv[] = {0, 1, 10, 11, 20, 21}, sv[] = {-1, -2};
    struct invar_tensor *x = tensor_of(2, (int64_t[]){3, 2}, xv, 1);
    struct invar_tensor *src = tensor_of(2, (int64_t[]){1, 2}, sv, 0);
    const int64_t idx[] = {2, 2, 0};
    struct invar_tensor *y = invar_gather_rows(g, x, idx, 3); // (3, 2)
    assert_close(y->data, (double[]){20, 21, 20, 21, 0, 1}, 6, 0);
    struct invar_tensor *loss = invar_sum(g, y);
    invar_graph_backward(g, loss);
    /* row 2 was gathered twice, row 1 never */
    assert_close(x->grad, (double[]){1, 1, 0, 0, 2, 2}, 6, 0);
    struct invar_tensor *z = invar_scatter_rows(g, x, (int64_t[]){1}, 1, src);
    assert_close(z->data, (double[]){0, 1, -1, -2, 20, 21}, 6, 0);
    gc_free(x);
    gc_free(src);
    invar_graph_destroy(g);
}

/* ---- graph bookkeeping ------------------------------------------------------------------ */

Test(ops, stop_gradient_shares_data_and_blocks_grad)
{
    struct invar_graph *g = invar_graph_create(1 << 16);
    float xv[] = {1, -2, 3};
    struct invar_tensor *x = tensor_of(1, (int64_t[]){3}, xv, 1);
    struct invar_tensor *s = invar_stop_gradient(g, x);
    cr_assert_eq(s->data, x->data);
    cr_assert_eq(s->requires_grad, 0);
    cr_assert_null(s->node);
    /* d/dx sum(sg(x) * x) = sg(x) = x, not 2x */
    struct invar_tensor *loss = invar_sum(g, invar_mul(g, s, x));
    invar_graph_backward(g, loss);
    assert_close(x->grad, (double[]){1, -2, 3}, 3, 0);
    gc_free(x);
    invar_graph_destroy(g);
}

Test(ops, second_consumer_accumulates)
{
    struct invar_graph *g = invar_graph_create(1 << 16);
    float xv[] = {1, -2, 3, -0.5f};
    struct invar_tensor *x = tensor_of(1, (int64_t[]){4}, xv, 1);
    /* L = sum(relu(x)) + sum(3x): dL/dx = [x > 0] + 3 */
    struct invar_tensor *loss =
        invar_add(g, invar_sum(g, invar_relu(g, x)), invar_sum(g, invar_scale(g, x, 3, 0)));
    invar_graph_backward(g, loss);
    assert_close(x->grad, (double[]){4, 3, 4, 3}, 4, 0);
    gc_free(x);
    invar_graph_destroy(g);
}

/* Every backward must add to a gradient buffer, never overwrite it: parameters share one
 * persistent buffer across consumers and steps. Two backward passes without zeroing must
 * leave exactly twice the gradient of one. */
struct accum_case {
    const char *name;
    gc_fn f;
    int n_in;
    int ndim[3];
    int64_t shape[3][INVAR_MAX_DIMS];
    void *ctx;
    int positive; /* inputs must be > 0 (log) */
};

Test(ops, every_backward_accumulates)
{
    static const int64_t gather_idx[] = {1, 3, 1}, scatter_idx[] = {2, 0};
    static int32_t labels[] = {1, 6, 0, 3};
    static struct mm_ctx mm = {1, 0};
    static struct dim_ctx concat1 = {.dim = 1}, slice0 = {.dim = 0, .start = 1, .len = 2};
    static struct rows_ctx_t gather = {gather_idx, 3}, scatter = {scatter_idx, 2};
    const struct accum_case cases[] = {
        {"add", f_add, 2, {2, 2}, {{3, 4}, {3, 4}}, NULL, 0},
        {"sub", f_sub, 2, {2, 2}, {{3, 4}, {3, 4}}, NULL, 0},
        {"mul", f_mul, 2, {2, 2}, {{3, 4}, {3, 4}}, NULL, 0},
        {"add_bias", f_add_bias, 2, {4, 1}, {{2, 3, 2, 2}, {3}}, NULL, 0},
        {"scale", f_scale, 1, {2}, {{3, 4}}, NULL, 0},
        {"relu", f_relu, 1, {2}, {{3, 4}}, NULL, 0},
        {"exp", f_exp, 1, {2}, {{3, 4}}, NULL, 0},
        {"log", f_log, 1, {2}, {{3, 4}}, NULL, 1},
        {"matmul", f_matmul, 2, {2, 2}, {{4, 3}, {4, 5}}, &mm, 0},
        {"linear", f_linear, 3, {2, 2, 1}, {{4, 6}, {3, 6}, {3}}, NULL, 0},
        {"transpose", f_transpose, 1, {2}, {{3, 5}}, NULL, 0},
        {"sum", f_sum, 1, {2}, {{3, 4}}, NULL, 0},
        {"mean", f_mean, 1, {2}, {{3, 4}}, NULL, 0},
        {"sum_rows", f_sum_rows, 1, {2}, {{3, 4}}, NULL, 0},
        {"l2_normalize", f_l2, 1, {2}, {{3, 4}}, NULL, 0},
        {"cosine", f_cos, 2, {2, 2}, {{3, 4}, {3, 4}}, NULL, 0},
        {"log_softmax", f_log_softmax, 1, {2}, {{4, 7}}, NULL, 0},
        {"cross_entropy", f_ce, 1, {2}, {{4, 7}}, labels, 0},
        {"mse", f_mse, 2, {2, 2}, {{3, 4}, {3, 4}}, NULL, 0},
        {"concat", f_concat3, 3, {2, 2, 2}, {{3, 1}, {3, 2}, {3, 3}}, &concat1, 0},
        {"slice", f_slice, 1, {2}, {{4, 3}}, &slice0, 0},
        {"reshape", f_reshape, 1, {3}, {{2, 3, 4}}, NULL, 0},
        {"gather_rows", f_gather, 1, {2}, {{5, 3}}, &gather, 0},
        {"scatter_rows", f_scatter, 2, {2, 2}, {{4, 3}, {2, 3}}, &scatter, 0},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const struct accum_case *c = &cases[t];
        struct invar_tensor *in[3];
        float *once[3];
        for (int k = 0; k < c->n_in; k++) {
            in[k] = gc_tensor(c->ndim[k], c->shape[k], 1);
            for (int64_t i = 0; c->positive && i < in[k]->numel; i++)
                in[k]->data[i] = fabsf(in[k]->data[i]) + 0.5f;
            in[k]->grad = calloc((size_t)in[k]->numel, sizeof(float));
            once[k] = malloc((size_t)in[k]->numel * sizeof(float));
        }
        for (int pass = 0; pass < 2; pass++) {
            struct invar_graph *g = invar_graph_create(1 << 16);
            struct invar_tensor *out = c->f(g, in, c->ctx);
            /* weight the outputs so no gradient is uniformly zero (softmax rows, l2 rows) */
            struct invar_tensor *w = invar_graph_tensor(g, out->ndim, out->shape);
            for (int64_t i = 0; i < w->numel; i++)
                w->data[i] = 0.25f + (float)(i % 7) / 8;
            invar_graph_backward(g, invar_sum(g, invar_mul(g, out, w)));
            invar_graph_destroy(g);
            for (int k = 0; pass == 0 && k < c->n_in; k++)
                memcpy(once[k], in[k]->grad, (size_t)in[k]->numel * sizeof(float));
        }
        for (int k = 0; k < c->n_in; k++) {
            int nonzero = 0;
            for (int64_t i = 0; i < in[k]->numel; i++) {
                nonzero += once[k][i] != 0;
                cr_assert(fabsf(in[k]->grad[i] - 2 * once[k][i]) <=
                              1e-5f * fmaxf(1, fabsf(once[k][i])),
                          "%s input %d element %lld: %g after two passes, %g after one", c->name, k,
                          (long long)i, in[k]->grad[i], once[k][i]);
            }
            cr_assert(nonzero > 0, "%s input %d got no gradient", c->name, k);
            free(in[k]->grad);
            in[k]->grad = NULL;
            free(once[k]);
            gc_free(in[k]);
        }
    }
}

/* A small MLP: logits (N, 5) = linear(relu(linear(x, w1, b1)), w2, b2). */
struct mlp {
    struct invar_tensor *w1, *b1, *w2, *b2; // (H, I), (H), (5, H), (5)
};

static struct invar_tensor *mlp_loss(struct invar_graph *g, const struct mlp *m,
                                     struct invar_tensor *x, const int32_t *labels)
{
    struct invar_tensor *h = invar_relu(g, invar_linear(g, x, m->w1, m->b1));
    return invar_cross_entropy(g, invar_linear(g, h, m->w2, m->b2), labels);
}

static struct mlp mlp_create(int64_t in, int64_t hidden, int64_t out)
{
    struct mlp m = {gc_tensor(2, (int64_t[]){hidden, in}, 1), gc_tensor(1, (int64_t[]){hidden}, 1),
                    gc_tensor(2, (int64_t[]){out, hidden}, 1), gc_tensor(1, (int64_t[]){out}, 1)};
    struct invar_tensor *p[] = {m.w1, m.b1, m.w2, m.b2};
    for (int k = 0; k < 4; k++) {
        for (int64_t i = 0; i < p[k]->numel; i++)
            p[k]->data[i] *= 0.5f;
        p[k]->grad = calloc((size_t)p[k]->numel, sizeof(float)); /* persistent grad buffer */
    }
    return m;
}

static void mlp_destroy(struct mlp *m)
{
    struct invar_tensor *p[] = {m->w1, m->b1, m->w2, m->b2};
    for (int k = 0; k < 4; k++) {
        free(p[k]->grad);
        p[k]->grad = NULL;
        gc_free(p[k]);
    }
}

Test(ops, no_grad_records_nothing_yet_computes_the_same)
{
    struct mlp m = mlp_create(6, 8, 5);
    struct invar_tensor *x = gc_tensor(2, (int64_t[]){4, 6}, 0);
    int32_t labels[] = {0, 4, 2, 2};
    struct invar_graph *g = invar_graph_create(1 << 16);
    float with_grad = mlp_loss(g, &m, x, labels)->data[0];
    cr_assert_eq(invar_graph_node_count(g), 4); /* linear, relu, linear, cross_entropy */
    invar_graph_reset(g);
    cr_assert_eq(invar_graph_set_grad(g, 0), 1);
    struct invar_tensor *loss = mlp_loss(g, &m, x, labels);
    cr_assert_eq(invar_graph_node_count(g), 0);
    cr_assert_eq(loss->requires_grad, 0);
    cr_assert_eq(loss->data[0], with_grad, "no-grad %.9g vs grad %.9g", loss->data[0], with_grad);
    /* grad mode on, but nothing requires grad: still no node */
    invar_graph_set_grad(g, 1);
    invar_graph_reset(g);
    struct invar_tensor *y = invar_exp(g, invar_sum(g, x));
    cr_assert_eq(invar_graph_node_count(g), 0);
    cr_assert_eq(y->requires_grad, 0);
    cr_assert(fabsf(y->data[0] - expf(invar_sum(g, x)->data[0])) <= 1e-6f * y->data[0]);
    invar_graph_destroy(g);
    gc_free(x);
    mlp_destroy(&m);
}

Test(ops, no_heap_allocation_in_a_training_step_after_the_first)
{
    struct mlp m = mlp_create(12, 32, 5);
    struct invar_tensor *params[] = {m.w1, m.b1, m.w2, m.b2};
    struct invar_tensor *x = gc_tensor(2, (int64_t[]){16, 12}, 0);
    int32_t labels[16];
    for (int i = 0; i < 16; i++)
        labels[i] = (i * 7) % 5;
    /* Start small so the first step must outgrow the arena. */
    struct invar_graph *g = invar_graph_create(4096);
    uint64_t settled = 0;
    float first = 0, last = 0;
    for (int step = 0; step < 1000; step++) {
        invar_graph_reset(g);
        if (step == 1)
            settled = invar_graph_arena(g)->sys_allocs;
        for (int k = 0; k < 4; k++)
            memset(params[k]->grad, 0, (size_t)params[k]->numel * sizeof(float));
        struct invar_tensor *loss = mlp_loss(g, &m, x, labels);
        invar_graph_backward(g, loss);
        for (int k = 0; k < 4; k++) /* plain SGD */
            for (int64_t i = 0; i < params[k]->numel; i++)
                params[k]->data[i] -= 0.1f * params[k]->grad[i];
        if (step == 0)
            first = loss->data[0];
        last = loss->data[0];
    }
    cr_assert_gt(settled, 1, "the first step should have outgrown a 4 KiB arena");
    cr_assert_eq(invar_graph_arena(g)->sys_allocs, settled,
                 "%llu system allocations after the first step",
                 (unsigned long long)(invar_graph_arena(g)->sys_allocs - settled));
    /* and the gradients were real: the MLP fits its 16 points */
    cr_assert_lt(last, 0.1f * first, "loss %.4g -> %.4g", first, last);
    invar_graph_destroy(g);
    gc_free(x);
    mlp_destroy(&m);
}
