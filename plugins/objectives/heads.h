/* Building blocks shared by the objectives that put their own layers on top of the encoder
 * (SimCLR, BYOL, SimSiam): an MLP with batch-norm (one or two hidden layers), its EMA copy, and
 * the spread of L2-normalised outputs that shows a collapse. Static inline: each plugin is one
 * shared object and sees only the public SDK.
 *
 *     struct mlp_head proj;
 *     mlp_head_declare(&proj, ctx->params, "byol.proj", ctx->feature_dim, 512, 128,
 *                      HEAD_OUT_LINEAR, 0);
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
#define HEAD_MAX_HIDDEN 2
#define HEAD_MAX_TENSORS (5 * HEAD_MAX_HIDDEN + 6)

/* What follows the last linear: nothing (it has a bias), or a batch-norm with a learned scale
 * and shift, or one without (gamma 1 and beta 0 held fixed: every output dimension has unit
 * variance over the batch, as SimSiam's reference projector). */
enum { HEAD_OUT_LINEAR = 0, HEAD_OUT_BN = 1, HEAD_OUT_BN_PLAIN = 2 };

/* n_hidden times linear(no bias) -> BN -> ReLU, then linear [-> BN]. The hidden linears have
 * no bias because BN follows them; the last has one unless the output BN (SimSiam's projector)
 * follows. Tensors are named fc1, bn1, fc2, ... in order, the output layer's last. */
struct mlp_head {
    int n_hidden;
    struct {
        struct invar_tensor *w;               /* (H, I) or (H, H) */
        struct invar_tensor *g, *b, *rm, *rv; /* (H) BN affine and running statistics */
    } hid[HEAD_MAX_HIDDEN];
    struct invar_tensor *w_out;                           /* (O, H) */
    struct invar_tensor *bias_out;                        /* (O), NULL with an output BN */
    struct invar_tensor *g_out, *b_out, *rm_out, *rv_out; /* (O) output BN, NULL without */
};

static inline struct invar_tensor *head_add(struct invar_params *p, const char *prefix,
                                            const char *layer, int index, const char *suffix,
                                            int64_t n0, int64_t n1, struct invar_init init,
                                            unsigned flags)
{
    char name[HEAD_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s%d.%s", prefix, layer, index, suffix);
    if (n1 > 0)
        return invar_params_add(p, name, 2, (int64_t[]){n0, n1}, init, flags);
    return invar_params_add(p, name, 1, (int64_t[]){n0}, init, flags);
}

/* Declares the head's tensors as "prefix.fc1.w", "prefix.bn1.gamma", ... with n_hidden hidden
 * layers (1 or 2) of width hidden. out_bn is one of HEAD_OUT_*. extra_flags is INVAR_P_BUFFER
 * for a target copy that is never optimized (its values are copied in later). */
static inline void mlp_head_declare_n(struct mlp_head *h, struct invar_params *p,
                                      const char *prefix, int64_t in, int64_t hidden, int n_hidden,
                                      int64_t out, int out_bn, unsigned extra_flags)
{
    INVAR_ASSERT(n_hidden >= 1 && n_hidden <= HEAD_MAX_HIDDEN);
    unsigned nd = INVAR_P_NO_DECAY | extra_flags, buf = INVAR_P_BUFFER;
    memset(h, 0, sizeof *h);
    h->n_hidden = n_hidden;
    int64_t prev = in;
    for (int l = 0; l < n_hidden; l++) {
        int i = l + 1;
        h->hid[l].w = head_add(p, prefix, "fc", i, "w", hidden, prev,
                               invar_init_kaiming_uniform((double)prev), extra_flags);
        h->hid[l].g = head_add(p, prefix, "bn", i, "gamma", hidden, 0, invar_init_const(1), nd);
        h->hid[l].b = head_add(p, prefix, "bn", i, "beta", hidden, 0, invar_init_zeros(), nd);
        h->hid[l].rm =
            head_add(p, prefix, "bn", i, "running_mean", hidden, 0, invar_init_zeros(), buf);
        h->hid[l].rv =
            head_add(p, prefix, "bn", i, "running_var", hidden, 0, invar_init_const(1), buf);
        prev = hidden;
    }
    int o = n_hidden + 1;
    h->w_out = head_add(p, prefix, "fc", o, "w", out, hidden,
                        invar_init_kaiming_uniform((double)hidden), extra_flags);
    if (out_bn == HEAD_OUT_LINEAR) {
        h->bias_out = head_add(p, prefix, "fc", o, "b", out, 0,
                               invar_init_kaiming_uniform((double)hidden), nd);
        return;
    }
    unsigned affine = out_bn == HEAD_OUT_BN_PLAIN ? buf : nd;
    h->g_out = head_add(p, prefix, "bn", o, "gamma", out, 0, invar_init_const(1), affine);
    h->b_out = head_add(p, prefix, "bn", o, "beta", out, 0, invar_init_zeros(), affine);
    h->rm_out = head_add(p, prefix, "bn", o, "running_mean", out, 0, invar_init_zeros(), buf);
    h->rv_out = head_add(p, prefix, "bn", o, "running_var", out, 0, invar_init_const(1), buf);
}

/* The two-layer head: linear -> BN -> ReLU -> linear [-> BN]. */
static inline void mlp_head_declare(struct mlp_head *h, struct invar_params *p, const char *prefix,
                                    int64_t in, int64_t hidden, int64_t out, int out_bn,
                                    unsigned extra_flags)
{
    mlp_head_declare_n(h, p, prefix, in, hidden, 1, out, out_bn, extra_flags);
}

/* (N, O) = head(x (N, I)); BN follows the graph's training mode. */
static inline struct invar_tensor *mlp_head_forward(const struct mlp_head *h, struct invar_graph *g,
                                                    struct invar_tensor *x)
{
    for (int l = 0; l < h->n_hidden; l++) {
        x = invar_linear(g, x, h->hid[l].w, NULL); /* (N, H) */
        x = invar_relu(g, invar_batchnorm(g, x, h->hid[l].g, h->hid[l].b, h->hid[l].rm,
                                          h->hid[l].rv, HEAD_BN_MOMENTUM, HEAD_BN_EPS));
    }
    x = invar_linear(g, x, h->w_out, h->bias_out); /* (N, O) */
    if (h->g_out)                                  /* an output BN, with or without its affine */
        x = invar_batchnorm(g, x, h->g_out, h->b_out, h->rm_out, h->rv_out, HEAD_BN_MOMENTUM,
                            HEAD_BN_EPS);
    return x;
}

/* The head's weights (what an EMA averages), then, with stats set, its running statistics.
 * Writes at most HEAD_MAX_TENSORS pointers; returns how many. */
static inline int mlp_head_tensors(const struct mlp_head *h, int stats, struct invar_tensor **out)
{
    int n = 0;
    for (int l = 0; l < h->n_hidden; l++) {
        out[n++] = h->hid[l].w;
        out[n++] = h->hid[l].g;
        out[n++] = h->hid[l].b;
    }
    struct invar_tensor *last[4] = {h->w_out, h->bias_out, h->g_out, h->b_out};
    for (int i = 0; i < 4; i++)
        if (last[i])
            out[n++] = last[i];
    if (!stats)
        return n;
    for (int l = 0; l < h->n_hidden; l++) {
        out[n++] = h->hid[l].rm;
        out[n++] = h->hid[l].rv;
    }
    if (h->rm_out) {
        out[n++] = h->rm_out;
        out[n++] = h->rv_out;
    }
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
