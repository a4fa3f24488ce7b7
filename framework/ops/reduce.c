/* Reductions: sum, mean, sum_rows, l2_normalize, cosine_similarity.
 *
 * Sums run in double and in index order, so a result never depends on the thread count or on
 * how the compiler vectorised a loop.
 */
#include <math.h>

#include "graph_internal.h"

static double sum_f64(const float *restrict x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += x[i];
    return s;
}

static double dot_f64(const float *restrict a, const float *restrict b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* ---- sum, mean: scalar (1) = s * sum(x) ------------------------------------------------- */

struct sum_ctx {
    float s; /* 1 for sum, 1/numel for mean */
};

static void sum_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const struct sum_ctx *c = n->ctx;
    float *restrict dx = n->in[0]->grad;
    const float d = c->s * n->out->grad[0];
    for (int64_t i = 0; i < n->in[0]->numel; i++)
        dx[i] += d;
}

static struct invar_tensor *sum_scaled(struct invar_graph *g, struct invar_tensor *x, int mean)
{
    INVAR_ASSERT(invar_tensor_is_contiguous(x) && x->numel > 0);
    struct invar_tensor *y = graph_new(g, 1, (int64_t[]){1});
    double s = sum_f64(x->data, x->numel);
    y->data[0] = (float)(mean ? s / (double)x->numel : s);
    struct invar_node *n =
        graph_record(g, mean ? "mean" : "sum", y, &x, 1, sum_backward, sizeof(struct sum_ctx));
    if (n)
        ((struct sum_ctx *)n->ctx)->s = mean ? (float)(1.0 / (double)x->numel) : 1.0f;
    return y;
}

struct invar_tensor *invar_sum(struct invar_graph *g, struct invar_tensor *x)
{
    return sum_scaled(g, x, 0);
}

struct invar_tensor *invar_mean(struct invar_graph *g, struct invar_tensor *x)
{
    return sum_scaled(g, x, 1);
}

/* ---- sum_rows: y (N) = sum over D of x (N, D) ------------------------------------------- */

static void sum_rows_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    struct invar_tensor *x = n->in[0];
    const int64_t N = x->shape[0], D = x->shape[1];
    for (int64_t i = 0; i < N; i++) {
        float *restrict dx = x->grad + i * D;
        const float d = n->out->grad[i];
        for (int64_t j = 0; j < D; j++)
            dx[j] += d;
    }
}

struct invar_tensor *invar_sum_rows(struct invar_graph *g, struct invar_tensor *x)
{
    INVAR_ASSERT(x->ndim == 2 && invar_tensor_is_contiguous(x));
    const int64_t N = x->shape[0], D = x->shape[1];
    struct invar_tensor *y = graph_new(g, 1, (int64_t[]){N});
    for (int64_t i = 0; i < N; i++)
        y->data[i] = (float)sum_f64(x->data + i * D, D);
    graph_record(g, "sum_rows", y, &x, 1, sum_rows_backward, 0);
    return y;
}

/* ---- l2_normalize: y (N, D) = x / m, m = max(||x_row||, eps) ----------------------------- */

struct l2_ctx {
    float *m; /* (N) the clamped norms */
    float eps;
};

/* Where the norm is not clamped, dx = (dy - y (y . dy)) / m; where it is, m is a constant
 * and dx = dy / m. */
static void l2_normalize_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const struct l2_ctx *c = n->ctx;
    struct invar_tensor *y = n->out;
    const int64_t N = y->shape[0], D = y->shape[1];
    for (int64_t i = 0; i < N; i++) {
        const float *restrict yr = y->data + i * D, *restrict dyr = y->grad + i * D;
        float *restrict dxr = n->in[0]->grad + i * D;
        const float inv = 1.0f / c->m[i];
        const float p = c->m[i] > c->eps ? (float)dot_f64(yr, dyr, D) : 0.0f;
        for (int64_t j = 0; j < D; j++)
            dxr[j] += (dyr[j] - yr[j] * p) * inv;
    }
}

struct invar_tensor *invar_l2_normalize(struct invar_graph *g, struct invar_tensor *x, float eps)
{
    INVAR_ASSERT(x->ndim == 2 && invar_tensor_is_contiguous(x) && eps > 0);
    const int64_t N = x->shape[0], D = x->shape[1];
    struct invar_tensor *y = graph_new_like(g, x);
    float *m = graph_alloc(g, (size_t)N * sizeof *m); // (N)
    for (int64_t i = 0; i < N; i++) {
        const float *restrict xr = x->data + i * D;
        float *restrict yr = y->data + i * D;
        const float norm = (float)sqrt(dot_f64(xr, xr, D));
        m[i] = norm > eps ? norm : eps;
        const float inv = 1.0f / m[i];
        for (int64_t j = 0; j < D; j++)
            yr[j] = xr[j] * inv;
    }
    struct invar_node *n =
        graph_record(g, "l2_normalize", y, &x, 1, l2_normalize_backward, sizeof(struct l2_ctx));
    if (n) {
        struct l2_ctx *c = n->ctx;
        c->m = m;
        c->eps = eps;
    }
    return y;
}

/* ---- cosine_similarity: y (N) = a.b / (ma mb), ma = max(||a_row||, eps) ------------------ */

struct cosine_ctx {
    float *ma, *mb; /* (N) the clamped norms */
    float eps;
};

/* d y / d a = b / (ma mb) - y a / ma^2, the second term only where ||a|| was not clamped;
 * symmetric in b. */
static void cosine_grad(float *restrict da, const float *restrict a, const float *restrict b,
                        float dy, float y, float ma, float mb, float eps, int64_t D)
{
    const float cb = dy / (ma * mb);
    const float ca = ma > eps ? dy * y / (ma * ma) : 0.0f;
    for (int64_t j = 0; j < D; j++)
        da[j] += cb * b[j] - ca * a[j];
}

static void cosine_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const struct cosine_ctx *c = n->ctx;
    struct invar_tensor *a = n->in[0], *b = n->in[1], *y = n->out;
    const int64_t N = a->shape[0], D = a->shape[1];
    for (int64_t i = 0; i < N; i++) {
        const float *ar = a->data + i * D, *br = b->data + i * D;
        if (a->grad)
            cosine_grad(a->grad + i * D, ar, br, y->grad[i], y->data[i], c->ma[i], c->mb[i], c->eps,
                        D);
        if (b->grad)
            cosine_grad(b->grad + i * D, br, ar, y->grad[i], y->data[i], c->mb[i], c->ma[i], c->eps,
                        D);
    }
}

struct invar_tensor *invar_cosine_similarity(struct invar_graph *g, struct invar_tensor *a,
                                             struct invar_tensor *b, float eps)
{
    INVAR_ASSERT(a->ndim == 2 && invar_tensor_same_shape(a, b) && eps > 0);
    INVAR_ASSERT(invar_tensor_is_contiguous(a) && invar_tensor_is_contiguous(b));
    const int64_t N = a->shape[0], D = a->shape[1];
    struct invar_tensor *y = graph_new(g, 1, (int64_t[]){N});
    float *ma = graph_alloc(g, (size_t)N * sizeof *ma); // (N)
    float *mb = graph_alloc(g, (size_t)N * sizeof *mb); // (N)
    for (int64_t i = 0; i < N; i++) {
        const float *ar = a->data + i * D, *br = b->data + i * D;
        const double na = sqrt(dot_f64(ar, ar, D)), nb = sqrt(dot_f64(br, br, D));
        ma[i] = na > eps ? (float)na : eps;
        mb[i] = nb > eps ? (float)nb : eps;
        y->data[i] = (float)(dot_f64(ar, br, D) / ((double)ma[i] * mb[i]));
    }
    struct invar_tensor *in[2] = {a, b};
    struct invar_node *n =
        graph_record(g, "cosine_similarity", y, in, 2, cosine_backward, sizeof(struct cosine_ctx));
    if (n) {
        struct cosine_ctx *c = n->ctx;
        c->ma = ma;
        c->mb = mb;
        c->eps = eps;
    }
    return y;
}
