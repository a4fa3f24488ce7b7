/* Building blocks shared by the encoder plugins: a conv-BN-ReLU unit, a BN-ed linear and the
 * projection head, declared into an invar_params block. Static inline: each plugin is one
 * shared object and sees only the public SDK. */
#ifndef INVAR_PLUGINS_ENCODERS_LAYERS_H
#define INVAR_PLUGINS_ENCODERS_LAYERS_H

#include <stdio.h>

#include <invar/plugin.h>

#include <string.h>

#define BN_MOMENTUM 0.1f
#define LAYER_NAME_MAX 128

/* "prefix.suffix" into buf (LAYER_NAME_MAX), cut if it ever were longer. */
static inline const char *layer_name(char *buf, const char *prefix, const char *suffix)
{
    size_t p = strnlen(prefix, LAYER_NAME_MAX - 2), s = strlen(suffix);
    if (p + 1 + s >= LAYER_NAME_MAX)
        s = LAYER_NAME_MAX - 2 - p;
    memcpy(buf, prefix, p);
    buf[p] = '.';
    memcpy(buf + p + 1, suffix, s);
    buf[p + 1 + s] = '\0';
    return buf;
}
#define BN_EPS 1e-5f

struct bn {
    struct invar_tensor *gamma, *beta;        /* (C) */
    struct invar_tensor *mean, *var;          /* (C) running statistics (buffers) */
};

/* gamma and beta flagged `affine` (INVAR_P_NO_DECAY: trained; INVAR_P_BUFFER: held at 1 and 0,
 * a batch-norm without scale and shift), the running statistics as buffers. */
static inline void bn_declare_as(struct bn *b, struct invar_params *p, const char *prefix,
                                 int64_t c, unsigned affine)
{
    char name[LAYER_NAME_MAX];
    int64_t shape[1] = {c};
    b->gamma = invar_params_add(p, layer_name(name, prefix, "gamma"), 1, shape, invar_init_const(1), affine);
    b->beta = invar_params_add(p, layer_name(name, prefix, "beta"), 1, shape, invar_init_zeros(), affine);
    b->mean = invar_params_add(p, layer_name(name, prefix, "running_mean"), 1, shape, invar_init_zeros(), INVAR_P_BUFFER);
    b->var = invar_params_add(p, layer_name(name, prefix, "running_var"), 1, shape, invar_init_const(1), INVAR_P_BUFFER);
}

static inline void bn_declare(struct bn *b, struct invar_params *p, const char *prefix,
                              int64_t c)
{
    bn_declare_as(b, p, prefix, c, INVAR_P_NO_DECAY);
}

static inline struct invar_tensor *bn_forward(const struct bn *b, struct invar_graph *g,
                                              struct invar_tensor *x)
{
    return invar_batchnorm(g, x, b->gamma, b->beta, b->mean, b->var, BN_MOMENTUM, BN_EPS);
}

/* relu(bn(x)), fused: one pass each way and no intermediate tensor */
static inline struct invar_tensor *bn_relu_forward(const struct bn *b, struct invar_graph *g,
                                                   struct invar_tensor *x)
{
    return invar_batchnorm_relu(g, x, b->gamma, b->beta, b->mean, b->var, BN_MOMENTUM, BN_EPS);
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
    char name[LAYER_NAME_MAX];
    l->w = invar_params_add(p, layer_name(name, prefix, "w"), 4, (int64_t[]){c_out, c_in, 3, 3},
                            invar_init_kaiming_normal((double)c_in * 9), 0);
    bn_declare(&l->bn, p, layer_name(name, prefix, "bn"), c_out);
    l->stride = stride;
}

static inline struct invar_tensor *conv_bn_forward(const struct conv_bn *l, struct invar_graph *g,
                                                   struct invar_tensor *x)
{
    return bn_relu_forward(&l->bn, g, invar_conv2d(g, x, l->w, NULL, l->stride, 1));
}

/* conv3x3 -> BN without the ReLU: the second unit of a residual block, whose ReLU comes after
 * the shortcut is added. */
static inline struct invar_tensor *
conv_bn_forward_linear(const struct conv_bn *l, struct invar_graph *g, struct invar_tensor *x)
{
    return bn_forward(&l->bn, g, invar_conv2d(g, x, l->w, NULL, l->stride, 1));
}

/* conv1x1 (stride s, no padding, no bias) -> BN, no ReLU: a residual block's projection
 * shortcut when the stride or the channel count changes. */
struct conv1x1_bn {
    struct invar_tensor *w; /* (O, C, 1, 1) */
    struct bn bn;
    int stride;
};

static inline void conv1x1_bn_declare(struct conv1x1_bn *l, struct invar_params *p,
                                      const char *prefix, int64_t c_in, int64_t c_out, int stride)
{
    char name[LAYER_NAME_MAX];
    l->w = invar_params_add(p, layer_name(name, prefix, "w"), 4, (int64_t[]){c_out, c_in, 1, 1},
                            invar_init_kaiming_normal((double)c_in), 0);
    bn_declare(&l->bn, p, layer_name(name, prefix, "bn"), c_out);
    l->stride = stride;
}

static inline struct invar_tensor *conv1x1_bn_forward(const struct conv1x1_bn *l,
                                                      struct invar_graph *g, struct invar_tensor *x)
{
    return bn_forward(&l->bn, g, invar_conv2d(g, x, l->w, NULL, l->stride, 0));
}

struct linear {
    struct invar_tensor *w; /* (O, I) */
    struct invar_tensor *b; /* (O) */
};

static inline void linear_declare(struct linear *l, struct invar_params *p, const char *prefix,
                                  int64_t in, int64_t out, int bias)
{
    char name[LAYER_NAME_MAX];
    l->w = invar_params_add(p, layer_name(name, prefix, "w"), 2, (int64_t[]){out, in}, invar_init_kaiming_uniform((double)in),
                            0);
    l->b = NULL;
    if (bias) {
        l->b = invar_params_add(p, layer_name(name, prefix, "b"), 1, (int64_t[]){out},
                                invar_init_kaiming_uniform((double)in), INVAR_P_NO_DECAY);
    }
}

static inline struct invar_tensor *linear_forward(const struct linear *l, struct invar_graph *g,
                                                  struct invar_tensor *x)
{
    return invar_linear(g, x, l->w, l->b);
}

/* The projection head on top of a backbone's pooled features: one linear layer (MoCo v1,
 * InstDisc), linear-ReLU-linear (MoCo v2, SimCLR), or linear-BN-ReLU-linear (mlp_bn: batch-norm
 * on the hidden layer, as SimCLR's and MoCo v3's projectors; the first linear has no bias). */
enum { HEAD_LINEAR, HEAD_MLP, HEAD_NONE, HEAD_MLP_BN };
#define HEAD_ALLOWED "linear|mlp|none|mlp_bn"

struct head {
    int kind;
    struct linear fc1, fc2;
    struct bn bn1; /* mlp_bn */
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
    case HEAD_MLP_BN:
        linear_declare(&h->fc1, p, "head.fc1", in, hidden, 0);
        bn_declare(&h->bn1, p, "head.bn1", hidden);
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
    case HEAD_MLP_BN:
        return linear_forward(&h->fc2, g,
                              bn_relu_forward(&h->bn1, g, linear_forward(&h->fc1, g, x)));
    default:
        return x;
    }
}

#endif
