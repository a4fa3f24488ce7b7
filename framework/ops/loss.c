/* Losses: log_softmax, cross_entropy (fused), mse.
 *
 * Softmax rows are shifted by their maximum before exponentiating, so exp never overflows
 * and the largest term is exactly 1: logits of +-1e4 (or any finite size) stay finite.
 */
#include <math.h>
#include <string.h>

#include "graph_internal.h"

/* Row maximum and log(sum(exp(x - max))), the latter accumulated in double. x - max is a
 * float already, and expf of it is within an ulp: the double exp this replaced cost twice as
 * much on the (256, 60000) logits of instdisc for nothing the float result can show. */
static void row_logsumexp(const float *restrict x, int64_t C, float *max_out, float *lse_out)
{
    float m = x[0];
    for (int64_t j = 1; j < C; j++)
        m = x[j] > m ? x[j] : m;
    double s = 0;
    for (int64_t j = 0; j < C; j++)
        s += expf(x[j] - m);
    *max_out = m;
    *lse_out = (float)log(s);
}

/* ---- log_softmax: y (N, C) = x - max - log(sum(exp(x - max))) --------------------------- */

/* dx = dy - softmax * sum(dy), softmax = exp(y). */
static void log_softmax_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    struct invar_tensor *y = n->out;
    const int64_t N = y->shape[0], C = y->shape[1];
    for (int64_t i = 0; i < N; i++) {
        const float *restrict yr = y->data + i * C, *restrict dyr = y->grad + i * C;
        float *restrict dxr = n->in[0]->grad + i * C;
        double s = 0;
        for (int64_t j = 0; j < C; j++)
            s += dyr[j];
        const float sf = (float)s;
        for (int64_t j = 0; j < C; j++)
            dxr[j] += dyr[j] - expf(yr[j]) * sf;
    }
}

struct invar_tensor *invar_log_softmax(struct invar_graph *g, struct invar_tensor *x)
{
    INVAR_ASSERT(x->ndim == 2 && invar_tensor_is_contiguous(x) && x->shape[1] > 0);
    const int64_t N = x->shape[0], C = x->shape[1];
    struct invar_tensor *y = graph_new_like(g, x);
    for (int64_t i = 0; i < N; i++) {
        const float *restrict xr = x->data + i * C;
        float *restrict yr = y->data + i * C;
        float m, lse;
        row_logsumexp(xr, C, &m, &lse);
        for (int64_t j = 0; j < C; j++)
            yr[j] = (xr[j] - m) - lse;
    }
    graph_record(g, "log_softmax", y, &x, 1, log_softmax_backward, 0);
    return y;
}

/* ---- cross_entropy: scalar = mean_i (logsumexp(x_i) - x_i[label_i]) ---------------------- */

struct ce_ctx {
    int32_t *labels;  /* (N) copied: the caller's array need not outlive the call */
    float *max, *lse; /* (N) row maxima and log-sum-exp of the shifted row */
};

/* dx_i = dy / N * (softmax(x_i) - onehot(label_i)); softmax rebuilt from the saved row stats,
 * with the shift applied before exp so large logits lose no precision. */
static void cross_entropy_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const struct ce_ctx *c = n->ctx;
    struct invar_tensor *x = n->in[0];
    const int64_t N = x->shape[0], C = x->shape[1];
    const float d = n->out->grad[0] / (float)N;
    for (int64_t i = 0; i < N; i++) {
        const float *restrict xr = x->data + i * C;
        float *restrict dxr = x->grad + i * C;
        const float m = c->max[i], lse = c->lse[i];
        for (int64_t j = 0; j < C; j++)
            dxr[j] += d * expf((xr[j] - m) - lse);
        dxr[c->labels[i]] -= d;
    }
}

struct invar_tensor *invar_cross_entropy(struct invar_graph *g, struct invar_tensor *logits,
                                         const int32_t *labels)
{
    struct invar_tensor *x = logits;
    INVAR_ASSERT(x->ndim == 2 && invar_tensor_is_contiguous(x) && x->shape[1] > 0);
    const int64_t N = x->shape[0], C = x->shape[1];
    struct invar_tensor *y = graph_new(g, 1, (int64_t[]){1});
    float *max = graph_alloc(g, (size_t)N * sizeof *max); // (N)
    float *lse = graph_alloc(g, (size_t)N * sizeof *lse); // (N)
    double total = 0;
    for (int64_t i = 0; i < N; i++) {
        INVAR_ASSERT(labels[i] >= 0 && labels[i] < C);
        const float *xr = x->data + i * C;
        row_logsumexp(xr, C, &max[i], &lse[i]);
        /* -log p = lse - (x_label - max): both terms are small, whatever the logits' size. */
        total += (double)lse[i] - (double)(xr[labels[i]] - max[i]);
    }
    y->data[0] = (float)(total / (double)N);
    struct invar_node *n =
        graph_record(g, "cross_entropy", y, &x, 1, cross_entropy_backward, sizeof(struct ce_ctx));
    if (n) {
        struct ce_ctx *c = n->ctx;
        c->labels = graph_alloc(g, (size_t)N * sizeof *c->labels);
        memcpy(c->labels, labels, (size_t)N * sizeof *c->labels);
        c->max = max;
        c->lse = lse;
    }
    return y;
}

/* ---- mse: scalar = mean((a - b)^2) ------------------------------------------------------ */

/* g[i] += s * (a[i] - b[i]) */
static void mse_grad(float *restrict g, const float *restrict a, const float *restrict b, float s,
                     int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        g[i] += s * (a[i] - b[i]);
}

static void mse_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    struct invar_tensor *a = n->in[0], *b = n->in[1];
    const float s = 2.0f * n->out->grad[0] / (float)a->numel;
    if (a->grad)
        mse_grad(a->grad, a->data, b->data, s, a->numel);
    if (b->grad)
        mse_grad(b->grad, b->data, a->data, s, a->numel);
}

struct invar_tensor *invar_mse(struct invar_graph *g, struct invar_tensor *a,
                               struct invar_tensor *b)
{
    INVAR_ASSERT(invar_tensor_same_shape(a, b) && a->numel > 0);
    INVAR_ASSERT(invar_tensor_is_contiguous(a) && invar_tensor_is_contiguous(b));
    struct invar_tensor *y = graph_new(g, 1, (int64_t[]){1});
    const float *restrict ad = a->data, *restrict bd = b->data;
    double s = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        const double d = (double)ad[i] - bd[i];
        s += d * d;
    }
    y->data[0] = (float)(s / (double)a->numel);
    struct invar_tensor *in[2] = {a, b};
    graph_record(g, "mse", y, in, 2, mse_backward, 0);
    return y;
}
