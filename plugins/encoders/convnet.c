/* convnet — the reference encoder "convnet-s" for 28x28 and 32x32 inputs:
 *   conv3x3 C->32w, BN, ReLU; conv3x3 32w->32w, BN, ReLU; maxpool 2;
 *   conv3x3 32w->64w, BN, ReLU; conv3x3 64w->64w, BN, ReLU; maxpool 2;
 *   conv3x3 64w->128w, BN, ReLU; global average pool; [BN without scale and shift;]
 *   head (linear 128w->dim, or an MLP).
 * w is the width multiplier. The optional BN (out_bn) standardises the pooled features channel
 * by channel. A projector that begins linear -> BN (SimSiam's, BYOL's) cannot see a shift of
 * its input, so the loss leaves the features' per-channel mean to drift, and their scale is
 * free up to what the linear layer absorbs; yet a large shared mean or a few large channels
 * dominate the cosine similarity kNN ranks neighbours by. */
#include <stdlib.h>

#include <invar/plugin.h>

#include "layers.h"

struct convnet_config {
    double width;
    int64_t dim;
    int head;
    int64_t hidden;
    int out_bn;
};

static const struct invar_param_spec convnet_params[] = {
    INVAR_PARAM_FLOAT(struct convnet_config, width, "1", 0.125, 16,
                      "width multiplier: channels are 32w, 32w, 64w, 64w, 128w"),
    INVAR_PARAM_INT(struct convnet_config, dim, "128", 1, 65536, "output feature size"),
    INVAR_PARAM_ENUM(struct convnet_config, head, "linear", HEAD_ALLOWED,
                     "projection head: linear (MoCo v1), mlp (MoCo v2), mlp_bn (batch-norm on "
                     "the hidden layer: SimCLR, MoCo v3) or none (pooled features)"),
    INVAR_PARAM_INT(struct convnet_config, hidden, "512", 1, 65536,
                    "hidden size of the mlp and mlp_bn heads"),
    INVAR_PARAM_BOOL(struct convnet_config, out_bn, "false",
                     "batch-norm without scale and shift on the pooled features: the "
                     "representation standardised channel by channel (eval.knn.precise_bn "
                     "and eval.linear.precise_bn give it the evaluated images' statistics)"),
    INVAR_PARAM_END,
};

struct convnet {
    struct conv_bn conv[5];
    struct bn out; /* out_bn: gamma NULL when off */
    struct head head;
};

static enum invar_status convnet_create(const void *config, const int64_t in_shape[3],
                                        struct invar_params *params, void **self,
                                        int64_t *out_dim, struct invar_error *err)
{
    const struct convnet_config *c = config;
    if (in_shape[1] < 4 || in_shape[2] < 4)
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "convnet: input %lldx%lld is too small (two 2x2 poolings)",
                               (long long)in_shape[1], (long long)in_shape[2]);
    struct convnet *n = calloc(1, sizeof *n);
    if (!n)
        return invar_error_set(err, INVAR_ERR_NOMEM, "convnet: out of memory");
    int64_t w[5];
    static const int base[5] = {32, 32, 64, 64, 128};
    for (int i = 0; i < 5; i++) {
        w[i] = (int64_t)(base[i] * c->width + 0.5);
        if (w[i] < 1)
            w[i] = 1;
    }
    int64_t prev = in_shape[0];
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "conv%d", i + 1);
        conv_bn_declare(&n->conv[i], params, name, prev, w[i], 1);
        prev = w[i];
    }
    if (c->out_bn)
        bn_declare_as(&n->out, params, "out_bn", prev, INVAR_P_BUFFER);
    *out_dim = head_declare(&n->head, params, c->head, prev, c->hidden, c->dim);
    *self = n;
    return INVAR_OK;
}

/* (N, 128w): the pooled representation under the head */
static struct invar_tensor *convnet_backbone(void *self, struct invar_graph *g,
                                             struct invar_tensor *x)
{
    struct convnet *n = self;
    x = conv_bn_forward(&n->conv[0], g, x);     /* (N, 32w, H, W) */
    x = conv_bn_forward(&n->conv[1], g, x);
    x = invar_maxpool2d(g, x, 2, 2, 0);         /* (N, 32w, H/2, W/2) */
    x = conv_bn_forward(&n->conv[2], g, x);     /* (N, 64w, H/2, W/2) */
    x = conv_bn_forward(&n->conv[3], g, x);
    x = invar_maxpool2d(g, x, 2, 2, 0);         /* (N, 64w, H/4, W/4) */
    x = conv_bn_forward(&n->conv[4], g, x);     /* (N, 128w, H/4, W/4) */
    x = invar_global_avgpool(g, x);             /* (N, 128w) */
    return n->out.gamma ? bn_forward(&n->out, g, x) : x;
}

static struct invar_tensor *convnet_forward(void *self, struct invar_graph *g,
                                            struct invar_tensor *x)
{
    struct convnet *n = self;
    return head_forward(&n->head, g, convnet_backbone(self, g, x)); /* (N, dim) */
}

static void convnet_destroy(void *self) { free(self); }

static const struct invar_encoder_ops convnet_ops = {
    .create = convnet_create,
    .forward = convnet_forward,
    .destroy = convnet_destroy,
    .backbone = convnet_backbone,
};

INVAR_PLUGIN_DEFINE(invar_encoder, "convnet", "1.0.0",
                    "convnet-s: five conv3x3-BN-ReLU layers, two max-pools, global average pool",
                    struct convnet_config, convnet_params, convnet_ops)
