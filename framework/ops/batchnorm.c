/* Batch-norm over dim 1 of (N, C) or (N, C, H, W), training and eval modes.
 *
 * Per channel c, over its m = N*H*W values:
 *     xhat = (x - mean) * istd,   istd = 1 / sqrt(var + eps),   y = gamma * xhat + beta
 * Training uses the batch's mean and biased variance and moves the running statistics toward
 * the batch's (unbiased variance, PyTorch's convention); eval uses the running statistics, which
 * are then constants, so backward is a per-channel scale.
 */
#include <math.h>

#include "graph_internal.h"

struct bn_ctx {
    float *mean; /* (C) the statistics the forward used */
    float *istd; /* (C) */
    int training;
};

/* x as (N, C, S): S = H*W, or 1 for (N, C). */
static int64_t bn_spatial(const struct invar_tensor *x)
{
    return x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
}

static void batchnorm_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const struct bn_ctx *ctx = n->ctx;
    struct invar_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2], *y = n->out;
    const int64_t bn = x->shape[0], c = x->shape[1], sp = bn_spatial(x), m = bn * sp;
    for (int64_t ch = 0; ch < c; ch++) {
        const float mu = ctx->mean[ch], is = ctx->istd[ch];
        double sdy = 0, sdyx = 0; /* sum dy, sum dy * xhat */
        for (int64_t i = 0; i < bn; i++) {
            const float *xs = x->data + (i * c + ch) * sp, *dy = y->grad + (i * c + ch) * sp;
            for (int64_t j = 0; j < sp; j++) {
                sdy += dy[j];
                sdyx += (double)dy[j] * ((xs[j] - mu) * is);
            }
        }
        if (gamma->requires_grad && gamma->grad)
            gamma->grad[ch] += (float)sdyx;
        if (beta->requires_grad && beta->grad)
            beta->grad[ch] += (float)sdy;
        if (!(x->requires_grad && x->grad))
            continue;
        const float scale = gamma->data[ch] * is;
        /* training: mean and variance depend on x too, which removes the mean of dy and the
         * part of dy along xhat */
        const float a = ctx->training ? (float)(sdy / (double)m) : 0.0f;
        const float bcoef = ctx->training ? (float)(sdyx / (double)m) : 0.0f;
        for (int64_t i = 0; i < bn; i++) {
            const float *xs = x->data + (i * c + ch) * sp, *dy = y->grad + (i * c + ch) * sp;
            float *dx = x->grad + (i * c + ch) * sp;
            for (int64_t j = 0; j < sp; j++)
                dx[j] += scale * (dy[j] - a - (xs[j] - mu) * is * bcoef);
        }
    }
}

struct invar_tensor *invar_batchnorm(struct invar_graph *g, struct invar_tensor *x,
                                     struct invar_tensor *gamma, struct invar_tensor *beta,
                                     struct invar_tensor *running_mean,
                                     struct invar_tensor *running_var, float momentum, float eps)
{
    INVAR_ASSERT((x->ndim == 2 || x->ndim == 4) && invar_tensor_is_contiguous(x));
    const int64_t bn = x->shape[0], c = x->shape[1], sp = bn_spatial(x), m = bn * sp;
    INVAR_ASSERT(gamma && beta && gamma->numel == c && beta->numel == c);
    INVAR_ASSERT(!running_mean || running_mean->numel == c);
    INVAR_ASSERT(!running_var || running_var->numel == c);
    const int training = invar_graph_training(g);
    INVAR_ASSERT(training || (running_mean && running_var));
    INVAR_ASSERT(!training || m > 1); /* one value per channel has no variance */

    struct invar_tensor *y = graph_new_like(g, x);
    float *mean = graph_alloc(g, (size_t)c * sizeof(float)); // (C)
    float *istd = graph_alloc(g, (size_t)c * sizeof(float)); // (C)
    for (int64_t ch = 0; ch < c; ch++) {
        float mu, var;
        if (training) {
            /* two passes in double: exact enough for any batch, and deterministic */
            double s = 0, ss = 0;
            for (int64_t i = 0; i < bn; i++) {
                const float *xs = x->data + (i * c + ch) * sp;
                for (int64_t j = 0; j < sp; j++)
                    s += xs[j];
            }
            const double dmu = s / (double)m;
            for (int64_t i = 0; i < bn; i++) {
                const float *xs = x->data + (i * c + ch) * sp;
                for (int64_t j = 0; j < sp; j++)
                    ss += (xs[j] - dmu) * (xs[j] - dmu);
            }
            mu = (float)dmu, var = (float)(ss / (double)m);
            if (running_mean)
                running_mean->data[ch] = (1 - momentum) * running_mean->data[ch] + momentum * mu;
            if (running_var)
                running_var->data[ch] = (1 - momentum) * running_var->data[ch] +
                                        momentum * (float)(ss / (double)(m - 1));
        } else {
            mu = running_mean->data[ch], var = running_var->data[ch];
        }
        mean[ch] = mu;
        istd[ch] = 1.0f / sqrtf(var + eps);
        const float scale = gamma->data[ch] * istd[ch], shift = beta->data[ch] - mu * scale;
        for (int64_t i = 0; i < bn; i++) {
            const float *xs = x->data + (i * c + ch) * sp;
            float *ys = y->data + (i * c + ch) * sp;
            for (int64_t j = 0; j < sp; j++)
                ys[j] = xs[j] * scale + shift;
        }
    }
    struct invar_tensor *in[3] = {x, gamma, beta};
    struct invar_node *n =
        graph_record(g, "batchnorm", y, in, 3, batchnorm_backward, sizeof(struct bn_ctx));
    if (n) {
        struct bn_ctx *ctx = n->ctx;
        *ctx = (struct bn_ctx){mean, istd, training};
    }
    return y;
}
