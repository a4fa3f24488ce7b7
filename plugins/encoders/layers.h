/* Building blocks shared by the encoder plugins: a conv-BN-ReLU unit, a BN-ed linear and the
 * projection head, declared into an invar_params block. Static inline: each plugin is one
 * shared object and sees only the public SDK. */
#ifndef INVAR_PLUGINS_ENCODERS_LAYERS_H
#define INVAR_PLUGINS_ENCODERS_LAYERS_H

#include <stdio.h>

#include <invar/plugin.h>

#define BN_MOMENTUM 0.1f
#define BN_EPS 1e-5f

struct bn {
    struct invar_tensor *gamma, *beta;        /* (C) */
    struct invar_tensor *mean, *var;          /* (C) running statistics (buffers) */
};

static inline void bn_declare(struct bn *b, struct invar_params *p, const char *prefix,
                              int64_t c)
{
    char name[128];
    int64_t shape[1] = {c};
    snprintf(name, sizeof name, "%s.gamma", prefix);
    b->gamma = invar_params_add(p, name, 1, shape, invar_init_const(1), INVAR_P_NO_DECAY);
    snprintf(name, sizeof name, "%s.beta", prefix);
    b->beta = invar_params_add(p, name, 1, shape, invar_init_zeros(), INVAR_P_NO_DECAY);
    snprintf(name, sizeof name, "%s.running_mean", prefix);
    b->mean = invar_params_add(p, name, 1, shape, invar_init_zeros(), INVAR_P_BUFFER);
    snprintf(name, sizeof name, "%s.running_var", prefix);
    b->var = invar_params_add(p, name, 1, shape, invar_init_const(1), INVAR_P_BUFFER);
}

static inline struct invar_tensor *bn_forward(const struct bn *b, struct invar_graph *g,
                                              struct invar_tensor *x)
{
    return invar_batchnorm(g, x, b->gamma, b->beta, b->mean, b->var, BN_MOMENTUM, BN_EPS);
}

/* conv3x3 (no bias: BN follows) -> BN -> ReLU */
struct conv_bn {
    struct invar_tensor *w; /* (O, C, 3, 3) */
    struct bn bn;
    int stride;
};

static inline void conv_bn_declare(struct conv_bn *l, struct invar_params *p, const char *prefix,
                                   int64_t c_in, int64_t c_out, int stride)
{
    char name[128];
    snprintf(name, sizeof name, "%s.w", prefix);
    l->w = invar_params_add(p, name, 4, (int64_t[]){c_out, c_in, 3, 3},
                            invar_init_kaiming_normal((double)c_in * 9), 0);
    snprintf(name, sizeof name, "%s.bn", prefix);
    bn_declare(&l->bn, p, name, c_out);
    l->stride = stride;
}

static inline struct invar_tensor *conv_bn_forward(const struct conv_bn *l, struct invar_graph *g,
                                                   struct invar_tensor *x)
{
    return invar_relu(g, bn_forward(&l->bn, g, invar_conv2d(g, x, l->w, NULL, l->stride, 1)));
}

struct linear {
    struct invar_tensor *w; /* (O, I) */
    struct invar_tensor *b; /* (O) */
};

static inline void linear_declare(struct linear *l, struct invar_params *p, const char *prefix,
                                  int64_t in, int64_t out, int bias)
{
    char name[128];
    snprintf(name, sizeof name, "%s.w", prefix);
    l->w = invar_params_add(p, name, 2, (int64_t[]){out, in}, invar_init_kaiming_uniform((double)in),
                            0);
    l->b = NULL;
    if (bias) {
        snprintf(name, sizeof name, "%s.b", prefix);
        l->b = invar_params_add(p, name, 1, (int64_t[]){out},
                                invar_init_kaiming_uniform((double)in), INVAR_P_NO_DECAY);
    }
}

static inline struct invar_tensor *linear_forward(const struct linear *l, struct invar_graph *g,
                                                  struct invar_tensor *x)
{
    return invar_linear(g, x, l->w, l->b);
}

/* The projection head on top of a backbone's pooled features: one linear layer (MoCo v1,
 * InstDisc) or linear-ReLU-linear (MoCo v2, SimCLR). */
enum { HEAD_LINEAR, HEAD_MLP, HEAD_NONE };
#define HEAD_ALLOWED "linear|mlp|none"

struct head {
    int kind;
    struct linear fc1, fc2;
};

static inline int64_t head_declare(struct head *h, struct invar_params *p, int kind, int64_t in,
                                   int64_t hidden, int64_t dim)
{
    h->kind = kind;
    switch (kind) {
    case HEAD_LINEAR:
        linear_declare(&h->fc1, p, "head.fc", in, dim, 1);
        return dim;
    case HEAD_MLP:
        linear_declare(&h->fc1, p, "head.fc1", in, hidden, 1);
        linear_declare(&h->fc2, p, "head.fc2", hidden, dim, 1);
        return dim;
    default:
        return in;
    }
}

static inline struct invar_tensor *head_forward(const struct head *h, struct invar_graph *g,
                                                struct invar_tensor *x)
{
    switch (h->kind) {
    case HEAD_LINEAR:
        return linear_forward(&h->fc1, g, x);
    case HEAD_MLP:
        return linear_forward(&h->fc2, g, invar_relu(g, linear_forward(&h->fc1, g, x)));
    default:
        return x;
    }
}

#endif
