/* resnet — a CIFAR-style ResNet (He et al. 2016) for small images such as 28x28 and 32x32:
 *   stem: conv3x3 C->64w stride 1, BN, ReLU (no max-pool: the input is already small);
 *   four stages of BasicBlocks with 64w, 128w, 256w, 512w channels and strides 1, 2, 2, 2;
 *   global average pool; head (linear 512w->dim, an MLP, or none).
 * BasicBlock: conv3x3 (stride s)-BN-ReLU-conv3x3-BN, plus the shortcut (identity, or conv1x1
 * stride s + BN when the shape changes), add, ReLU.
 * depth picks the blocks per stage: 10 = [1,1,1,1], 18 = [2,2,2,2], 34 = [3,4,6,3]. The
 * parameter table has no list type, hence a named depth rather than a free block list.
 * Spatial sizes follow OH = (H + 2 - 3) / s + 1, e.g. 28 -> 28, 14, 7, 4 and 32 -> 32, 16, 8, 4;
 * the 1x1 shortcut, (H - 1) / s + 1, lands on the same size for odd H too. */
#include <stdlib.h>

#include <invar/plugin.h>

#include "layers.h"

#define RESNET_STAGES 4
#define RESNET_MAX_BLOCKS 16

/* Rows in the order of the depth enum's allowed words. */
#define RESNET_DEPTHS "10|18|34"
static const int resnet_stage_blocks[][RESNET_STAGES] = {
    {1, 1, 1, 1}, /* 10 */
    {2, 2, 2, 2}, /* 18 */
    {3, 4, 6, 3}, /* 34 */
};

struct resnet_config {
    double width;
    int depth;
    int64_t dim;
    int head;
    int64_t hidden;
};

static const struct invar_param_spec resnet_params[] = {
    INVAR_PARAM_FLOAT(struct resnet_config, width, "1", 0.015625, 16,
                      "width multiplier: stem and stages have 64w, 64w, 128w, 256w, 512w channels"),
    INVAR_PARAM_ENUM(struct resnet_config, depth, "18", RESNET_DEPTHS,
                     "blocks per stage: 10 = 1,1,1,1; 18 = 2,2,2,2; 34 = 3,4,6,3"),
    INVAR_PARAM_INT(struct resnet_config, dim, "128", 1, 65536, "output feature size"),
    INVAR_PARAM_ENUM(struct resnet_config, head, "linear", HEAD_ALLOWED,
                     "projection head: linear (MoCo v1), mlp (MoCo v2), mlp_bn (batch-norm on "
                     "the hidden layer: SimCLR, MoCo v3) or none (pooled features)"),
    INVAR_PARAM_INT(struct resnet_config, hidden, "512", 1, 65536,
                    "hidden size of the mlp and mlp_bn heads"),
    INVAR_PARAM_END,
};

struct basic_block {
    struct conv_bn conv1, conv2; /* conv1 carries the block's stride */
    struct conv1x1_bn shortcut;  /* used only when has_shortcut */
    int has_shortcut;
};

struct resnet {
    struct conv_bn stem;
    struct basic_block blocks[RESNET_MAX_BLOCKS];
    int n_blocks;
    struct head head;
};

static void block_declare(struct basic_block *b, struct invar_params *p, const char *prefix,
                          int64_t c_in, int64_t c_out, int stride)
{
    char name[LAYER_NAME_MAX];
    conv_bn_declare(&b->conv1, p, layer_name(name, prefix, "conv1"), c_in, c_out, stride);
    conv_bn_declare(&b->conv2, p, layer_name(name, prefix, "conv2"), c_out, c_out, 1);
    b->has_shortcut = stride != 1 || c_in != c_out;
    if (b->has_shortcut)
        conv1x1_bn_declare(&b->shortcut, p, layer_name(name, prefix, "shortcut"), c_in, c_out,
                           stride);
}

/* (N, O, OH, OW) from x (N, C, H, W), OH = (H - 1) / stride + 1 */
static struct invar_tensor *block_forward(const struct basic_block *b, struct invar_graph *g,
                                          struct invar_tensor *x)
{
    struct invar_tensor *h = conv_bn_forward(&b->conv1, g, x); /* (N, O, OH, OW) */
    h = conv_bn_forward_linear(&b->conv2, g, h);
    struct invar_tensor *s = b->has_shortcut ? conv1x1_bn_forward(&b->shortcut, g, x) : x;
    return invar_relu(g, invar_add(g, h, s));
}

static int64_t scaled_channels(int base, double width)
{
    int64_t c = (int64_t)(base * width + 0.5);
    return c < 1 ? 1 : c;
}

static enum invar_status resnet_create(const void *config, const int64_t in_shape[3],
                                       struct invar_params *params, void **self, int64_t *out_dim,
                                       struct invar_error *err)
{
    const struct resnet_config *c = config;
    const int n_depths = (int)(sizeof resnet_stage_blocks / sizeof *resnet_stage_blocks);
    if (c->depth < 0 || c->depth >= n_depths)
        return invar_error_set(err, INVAR_ERR_CONFIG, "resnet: depth #%d is not one of %s",
                               c->depth, RESNET_DEPTHS);
    if (in_shape[0] < 1 || in_shape[1] < 1 || in_shape[2] < 1)
        return invar_error_set(err, INVAR_ERR_CONFIG, "resnet: empty input %lldx%lldx%lld",
                               (long long)in_shape[0], (long long)in_shape[1],
                               (long long)in_shape[2]);
    struct resnet *n = calloc(1, sizeof *n);
    if (!n)
        return invar_error_set(err, INVAR_ERR_NOMEM, "resnet: out of memory");

    static const int stage_base[RESNET_STAGES] = {64, 128, 256, 512};
    int64_t prev = scaled_channels(64, c->width);
    conv_bn_declare(&n->stem, params, "stem", in_shape[0], prev, 1);
    for (int s = 0; s < RESNET_STAGES; s++) {
        const int64_t ch = scaled_channels(stage_base[s], c->width);
        for (int i = 0; i < resnet_stage_blocks[c->depth][s]; i++) {
            INVAR_ASSERT(n->n_blocks < RESNET_MAX_BLOCKS);
            char prefix[32];
            snprintf(prefix, sizeof prefix, "layer%d.%d", s + 1, i);
            const int stride = s > 0 && i == 0 ? 2 : 1;
            block_declare(&n->blocks[n->n_blocks++], params, prefix, prev, ch, stride);
            prev = ch;
        }
    }
    *out_dim = head_declare(&n->head, params, c->head, prev, c->hidden, c->dim);
    *self = n;
    return INVAR_OK;
}

/* (N, 512w): the pooled representation under the head */
static struct invar_tensor *resnet_backbone(void *self, struct invar_graph *g,
                                            struct invar_tensor *x)
{
    struct resnet *n = self;
    x = conv_bn_forward(&n->stem, g, x); /* (N, 64w, H, W) */
    for (int i = 0; i < n->n_blocks; i++)
        x = block_forward(&n->blocks[i], g, x); /* ... (N, 512w, ~H/8, ~W/8) */
    return invar_global_avgpool(g, x);          /* (N, 512w) */
}

static struct invar_tensor *resnet_forward(void *self, struct invar_graph *g,
                                           struct invar_tensor *x)
{
    struct resnet *n = self;
    return head_forward(&n->head, g, resnet_backbone(self, g, x)); /* (N, dim) */
}

static void resnet_destroy(void *self)
{
    free(self);
}

static const struct invar_encoder_ops resnet_ops = {
    .create = resnet_create,
    .forward = resnet_forward,
    .destroy = resnet_destroy,
    .backbone = resnet_backbone,
};

INVAR_PLUGIN_DEFINE(invar_encoder, "resnet", "1.0.0",
                    "CIFAR-style ResNet-10/18/34: conv3x3 stem, four BasicBlock stages, global "
                    "average pool",
                    struct resnet_config, resnet_params, resnet_ops)
