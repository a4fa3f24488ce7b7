/* Elementwise ops: add, sub, mul, add_bias, scale, relu, exp, log, stop_gradient.
 *
 * Inputs must be contiguous (every op output is), so each forward and backward is one flat
 * loop over numel that the compiler can vectorise. Backward loops handle one input at a time:
 * the same tensor may be passed as both inputs (x + x, x * x), and accumulating into its grad
 * twice, one loop after the other, is then exactly right.
 */
#include <math.h>

#include "graph_internal.h"

static void assert_same_contiguous(const struct invar_tensor *a, const struct invar_tensor *b)
{
    INVAR_ASSERT(invar_tensor_same_shape(a, b));
    INVAR_ASSERT(invar_tensor_is_contiguous(a) && invar_tensor_is_contiguous(b));
}

/* g[i] += s * dy[i] */
static void grad_axpy(float *restrict g, const float *restrict dy, float s, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        g[i] += s * dy[i];
}

/* ---- add / sub: y = a + s * b ---------------------------------------------------------- */

static void add_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const float *dy = n->out->grad;
    if (n->in[0]->grad)
        grad_axpy(n->in[0]->grad, dy, 1.0f, n->out->numel);
    if (n->in[1]->grad)
        grad_axpy(n->in[1]->grad, dy, 1.0f, n->out->numel);
}

static void sub_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const float *dy = n->out->grad;
    if (n->in[0]->grad)
        grad_axpy(n->in[0]->grad, dy, 1.0f, n->out->numel);
    if (n->in[1]->grad)
        grad_axpy(n->in[1]->grad, dy, -1.0f, n->out->numel);
}

static struct invar_tensor *add_scaled(struct invar_graph *g, struct invar_tensor *a,
                                       struct invar_tensor *b, float s, const char *name,
                                       graph_backward_fn backward)
{
    assert_same_contiguous(a, b);
    struct invar_tensor *y = graph_new_like(g, a);
    float *restrict yd = y->data;
    const float *ad = a->data, *bd = b->data;
    for (int64_t i = 0; i < y->numel; i++)
        yd[i] = ad[i] + s * bd[i];
    struct invar_tensor *in[2] = {a, b};
    graph_record(g, name, y, in, 2, backward, 0);
    return y;
}

struct invar_tensor *invar_add(struct invar_graph *g, struct invar_tensor *a,
                               struct invar_tensor *b)
{
    return add_scaled(g, a, b, 1.0f, "add", add_backward);
}

struct invar_tensor *invar_sub(struct invar_graph *g, struct invar_tensor *a,
                               struct invar_tensor *b)
{
    return add_scaled(g, a, b, -1.0f, "sub", sub_backward);
}

/* ---- mul: y = a * b --------------------------------------------------------------------- */

/* g[i] += dy[i] * v[i] */
static void grad_mul(float *restrict g, const float *restrict dy, const float *restrict v,
                     int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        g[i] += dy[i] * v[i];
}

static void mul_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    struct invar_tensor *a = n->in[0], *b = n->in[1];
    if (a->grad)
        grad_mul(a->grad, n->out->grad, b->data, n->out->numel);
    if (b->grad)
        grad_mul(b->grad, n->out->grad, a->data, n->out->numel);
}

struct invar_tensor *invar_mul(struct invar_graph *g, struct invar_tensor *a,
                               struct invar_tensor *b)
{
    assert_same_contiguous(a, b);
    struct invar_tensor *y = graph_new_like(g, a);
    float *restrict yd = y->data;
    const float *ad = a->data, *bd = b->data;
    for (int64_t i = 0; i < y->numel; i++)
        yd[i] = ad[i] * bd[i];
    struct invar_tensor *in[2] = {a, b};
    graph_record(g, "mul", y, in, 2, mul_backward, 0);
    return y;
}

/* ---- add_bias: y (N, C, inner) = x (N, C, inner) + b (C) -------------------------------- */

static void add_bias_backward(struct invar_graph *g, struct invar_node *n)
{
    struct invar_tensor *x = n->in[0], *b = n->in[1], *y = n->out;
    int64_t N = y->shape[0], C = y->shape[1], inner = y->numel / (N * C);
    const float *dy = y->grad;
    if (x->grad)
        grad_axpy(x->grad, dy, 1.0f, y->numel);
    if (b->grad) {
        /* Per-channel sums in double, always in the same (n, c, i) order. */
        double *restrict acc = graph_alloc(g, (size_t)C * sizeof *acc); // (C)
        for (int64_t c = 0; c < C; c++)
            acc[c] = 0;
        for (int64_t i = 0; i < N; i++) {
            if (inner == 1) { /* (N, C): one vectorisable pass per row */
                const float *restrict row = dy + i * C;
                for (int64_t c = 0; c < C; c++)
                    acc[c] += row[c];
                continue;
            }
            for (int64_t c = 0; c < C; c++) {
                const float *restrict plane = dy + (i * C + c) * inner;
                double s = 0;
                for (int64_t k = 0; k < inner; k++)
                    s += plane[k];
                acc[c] += s;
            }
        }
        for (int64_t c = 0; c < C; c++)
            b->grad[c] += (float)acc[c];
    }
}

struct invar_tensor *invar_add_bias(struct invar_graph *g, struct invar_tensor *x,
                                    struct invar_tensor *b)
{
    INVAR_ASSERT(x->ndim >= 2 && b->numel == x->shape[1]);
    INVAR_ASSERT(invar_tensor_is_contiguous(x) && invar_tensor_is_contiguous(b));
    struct invar_tensor *y = graph_new_like(g, x);
    int64_t N = x->shape[0], C = x->shape[1], inner = x->numel / (N * C);
    const float *restrict bd = b->data;
    for (int64_t i = 0; i < N; i++) {
        if (inner == 1) { /* (N, C): add the bias vector to each row */
            const float *restrict xr = x->data + i * C;
            float *restrict yr = y->data + i * C;
            for (int64_t c = 0; c < C; c++)
                yr[c] = xr[c] + bd[c];
            continue;
        }
        for (int64_t c = 0; c < C; c++) {
            const float *restrict xr = x->data + (i * C + c) * inner;
            float *restrict yr = y->data + (i * C + c) * inner;
            const float bc = bd[c];
            for (int64_t k = 0; k < inner; k++)
                yr[k] = xr[k] + bc;
        }
    }
    struct invar_tensor *in[2] = {x, b};
    graph_record(g, "add_bias", y, in, 2, add_bias_backward, 0);
    return y;
}

/* ---- scale: y = s * x + c --------------------------------------------------------------- */

struct scale_ctx {
    float s;
};

static void scale_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const struct scale_ctx *c = n->ctx;
    grad_axpy(n->in[0]->grad, n->out->grad, c->s, n->out->numel);
}

struct invar_tensor *invar_scale(struct invar_graph *g, struct invar_tensor *x, float s, float c)
{
    INVAR_ASSERT(invar_tensor_is_contiguous(x));
    struct invar_tensor *y = graph_new_like(g, x);
    float *restrict yd = y->data;
    const float *restrict xd = x->data;
    for (int64_t i = 0; i < y->numel; i++)
        yd[i] = s * xd[i] + c;
    struct invar_node *n =
        graph_record(g, "scale", y, &x, 1, scale_backward, sizeof(struct scale_ctx));
    if (n)
        ((struct scale_ctx *)n->ctx)->s = s;
    return y;
}

/* ---- relu: y = max(x, 0) ---------------------------------------------------------------- */

static void relu_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    float *restrict dx = n->in[0]->grad;
    const float *restrict dy = n->out->grad;
    const float *restrict y = n->out->data;
    for (int64_t i = 0; i < n->out->numel; i++)
        dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
}

struct invar_tensor *invar_relu(struct invar_graph *g, struct invar_tensor *x)
{
    INVAR_ASSERT(invar_tensor_is_contiguous(x));
    struct invar_tensor *y = graph_new_like(g, x);
    float *restrict yd = y->data;
    const float *restrict xd = x->data;
    for (int64_t i = 0; i < y->numel; i++)
        yd[i] = xd[i] > 0.0f ? xd[i] : 0.0f;
    graph_record(g, "relu", y, &x, 1, relu_backward, 0);
    return y;
}

/* ---- exp: y = e^x, dy/dx = y ------------------------------------------------------------ */

static void exp_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    grad_mul(n->in[0]->grad, n->out->grad, n->out->data, n->out->numel);
}

struct invar_tensor *invar_exp(struct invar_graph *g, struct invar_tensor *x)
{
    INVAR_ASSERT(invar_tensor_is_contiguous(x));
    struct invar_tensor *y = graph_new_like(g, x);
    float *restrict yd = y->data;
    const float *restrict xd = x->data;
    for (int64_t i = 0; i < y->numel; i++)
        yd[i] = expf(xd[i]);
    graph_record(g, "exp", y, &x, 1, exp_backward, 0);
    return y;
}

/* ---- log: y = ln x, dy/dx = 1/x --------------------------------------------------------- */

static void log_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    float *restrict dx = n->in[0]->grad;
    const float *restrict dy = n->out->grad;
    const float *restrict x = n->in[0]->data;
    for (int64_t i = 0; i < n->out->numel; i++)
        dx[i] += dy[i] / x[i];
}

struct invar_tensor *invar_log(struct invar_graph *g, struct invar_tensor *x)
{
    INVAR_ASSERT(invar_tensor_is_contiguous(x));
    struct invar_tensor *y = graph_new_like(g, x);
    float *restrict yd = y->data;
    const float *restrict xd = x->data;
    for (int64_t i = 0; i < y->numel; i++)
        yd[i] = logf(xd[i]);
    graph_record(g, "log", y, &x, 1, log_backward, 0);
    return y;
}

/* ---- stop_gradient: a new leaf over the same data ---------------------------------------- */

struct invar_tensor *invar_stop_gradient(struct invar_graph *g, struct invar_tensor *x)
{
    struct invar_tensor *y = graph_alloc(g, sizeof *y);
    *y = *x;
    y->grad = NULL;
    y->node = NULL;
    y->requires_grad = 0;
    return y;
}
