/* Building blocks shared by the objectives that put their own layers on top of the encoder
 * (SimCLR, BYOL, SimSiam): a two-layer MLP with batch-norm, its EMA copy, and the spread of
 * L2-normalised outputs that shows a collapse. Static inline: each plugin is one shared object
 * and sees only the public SDK.
 *
 *     struct mlp_head proj;
 *     mlp_head_declare(&proj, ctx->params, "byol.proj", ctx->feature_dim, 512, 128, 0, 0);
 *     ...                                            // after finalize
 *     struct invar_tensor *z = mlp_head_forward(&proj, g, y);   // (N, 128)
 */
#ifndef INVAR_PLUGINS_OBJECTIVES_HEADS_H
#define INVAR_PLUGINS_OBJECTIVES_HEADS_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <invar/plugin.h>

#define HEAD_BN_MOMENTUM 0.1f
#define HEAD_BN_EPS 1e-5f
#define HEAD_NAME_MAX 128
#define HEAD_MAX_TENSORS 11

/* linear(no bias) -> BN -> ReLU -> linear [-> BN]. The first linear has no bias because BN
 * follows it; the second has one unless the output BN (SimSiam's projector) follows. */
struct mlp_head {
    int out_bn;
    struct invar_tensor *w1;                  /* (H, I) */
    struct invar_tensor *g1, *b1, *rm1, *rv1; /* (H) BN affine and running statistics */
    struct invar_tensor *w2;                  /* (O, H) */
    struct invar_tensor *bias2;               /* (O), NULL with out_bn */
    struct invar_tensor *g2, *b2, *rm2, *rv2; /* (O) output BN, NULL without out_bn */
};

static inline struct invar_tensor *head_add(struct invar_params *p, const char *prefix,
                                            const char *suffix, int64_t n0, int64_t n1,
                                            struct invar_init init, unsigned flags)
{
    char name[HEAD_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    if (n1 > 0)
        return invar_params_add(p, name, 2, (int64_t[]){n0, n1}, init, flags);
    return invar_params_add(p, name, 1, (int64_t[]){n0}, init, flags);
}

/* Declares the head's tensors as "prefix.fc1.w", "prefix.bn1.gamma", ... extra_flags is
 * INVAR_P_BUFFER for a target copy that is never optimized (its values are copied in later). */
static inline void mlp_head_declare(struct mlp_head *h, struct invar_params *p, const char *prefix,
                                    int64_t in, int64_t hidden, int64_t out, int out_bn,
                                    unsigned extra_flags)
{
    unsigned nd = INVAR_P_NO_DECAY | extra_flags, buf = INVAR_P_BUFFER;
    memset(h, 0, sizeof *h);
    h->out_bn = out_bn;
    h->w1 = head_add(p, prefix, "fc1.w", hidden, in, invar_init_kaiming_uniform((double)in),
                     extra_flags);
    h->g1 = head_add(p, prefix, "bn1.gamma", hidden, 0, invar_init_const(1), nd);
    h->b1 = head_add(p, prefix, "bn1.beta", hidden, 0, invar_init_zeros(), nd);
    h->rm1 = head_add(p, prefix, "bn1.running_mean", hidden, 0, invar_init_zeros(), buf);
    h->rv1 = head_add(p, prefix, "bn1.running_var", hidden, 0, invar_init_const(1), buf);
    h->w2 = head_add(p, prefix, "fc2.w", out, hidden, invar_init_kaiming_uniform((double)hidden),
                     extra_flags);
    if (!out_bn) {
        h->bias2 =
            head_add(p, prefix, "fc2.b", out, 0, invar_init_kaiming_uniform((double)hidden), nd);
        return;
    }
    h->g2 = head_add(p, prefix, "bn2.gamma", out, 0, invar_init_const(1), nd);
    h->b2 = head_add(p, prefix, "bn2.beta", out, 0, invar_init_zeros(), nd);
    h->rm2 = head_add(p, prefix, "bn2.running_mean", out, 0, invar_init_zeros(), buf);
    h->rv2 = head_add(p, prefix, "bn2.running_var", out, 0, invar_init_const(1), buf);
}

/* (N, O) = head(x (N, I)); BN follows the graph's training mode. */
static inline struct invar_tensor *mlp_head_forward(const struct mlp_head *h, struct invar_graph *g,
                                                    struct invar_tensor *x)
{
    x = invar_linear(g, x, h->w1, NULL); /* (N, H) */
    x = invar_relu(
        g, invar_batchnorm(g, x, h->g1, h->b1, h->rm1, h->rv1, HEAD_BN_MOMENTUM, HEAD_BN_EPS));
    x = invar_linear(g, x, h->w2, h->bias2); /* (N, O) */
    if (h->out_bn)
        x = invar_batchnorm(g, x, h->g2, h->b2, h->rm2, h->rv2, HEAD_BN_MOMENTUM, HEAD_BN_EPS);
    return x;
}

/* The head's weights (what an EMA averages), then, with stats set, its running statistics.
 * Writes at most HEAD_MAX_TENSORS pointers; returns how many. */
static inline int mlp_head_tensors(const struct mlp_head *h, int stats, struct invar_tensor **out)
{
    struct invar_tensor *all[HEAD_MAX_TENSORS] = {h->w1, h->g1,  h->b1,  h->w2,  h->bias2, h->g2,
                                                  h->b2, h->rm1, h->rv1, h->rm2, h->rv2};
    int n_weights = 7, n = 0;
    for (int i = 0; i < (stats ? HEAD_MAX_TENSORS : n_weights); i++)
        if (all[i])
            out[n++] = all[i];
    return n;
}

/* dst <- m * dst + (1 - m) * src over the weights (m = 0 copies them; stats also copies the
 * running statistics). The two heads must have been declared alike. The arithmetic is the
 * one of invar_params_ema, so an encoder and its head follow the same rule. */
static inline void mlp_head_ema(struct mlp_head *dst, const struct mlp_head *src, float m,
                                int stats)
{
    struct invar_tensor *d[HEAD_MAX_TENSORS], *s[HEAD_MAX_TENSORS];
    int n = mlp_head_tensors(dst, stats, d);
    int n_src = mlp_head_tensors(src, stats, s);
    INVAR_ASSERT(n == n_src);
    const float one_minus_m = 1.0f - m;
    for (int i = 0; i < n; i++) {
        INVAR_ASSERT(d[i]->numel == s[i]->numel);
        for (int64_t j = 0; j < d[i]->numel; j++)
            d[i]->data[j] = m * d[i]->data[j] + one_minus_m * s[i]->data[j];
    }
}

/* Mean over dims of the (n - 1)-normalised std across rows of the L2-normalised rows of
 * x (N, D): about 1/sqrt(D) for a healthy spread, 0 when every row points the same way (the
 * definition of invar_collapse_std, computed here with scratch from the graph arena). */
static inline double head_collapse_std(struct invar_graph *g, const struct invar_tensor *x)
{
    int64_t n = x->shape[0], d = x->shape[1];
    if (n < 2)
        return 0;
    double *inv = invar_arena_alloc(invar_graph_arena(g), (size_t)n * sizeof *inv); /* (N) */
    for (int64_t i = 0; i < n; i++) {
        double norm = 0;
        for (int64_t k = 0; k < d; k++)
            norm += (double)x->data[i * d + k] * x->data[i * d + k];
        inv[i] = 1.0 / fmax(sqrt(norm), 1e-12);
    }
    double total = 0;
    for (int64_t j = 0; j < d; j++) {
        double s = 0, ss = 0;
        for (int64_t i = 0; i < n; i++) {
            double v = x->data[i * d + j] * inv[i];
            s += v;
            ss += v * v;
        }
        double mean = s / (double)n, var = (ss - (double)n * mean * mean) / (double)(n - 1);
        total += sqrt(var > 0 ? var : 0);
    }
    return total / (double)d;
}

#endif
