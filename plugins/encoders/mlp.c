/* mlp — flattens its input and applies `depth` hidden layers (linear, BN, ReLU) then a linear
 * layer to `dim`. A baseline encoder, and the one for 1-D sequences. */
#include <stdlib.h>

#include <invar/plugin.h>

#include "layers.h"

#define MLP_MAX_DEPTH 8

struct mlp_config {
    int64_t hidden;
    int64_t depth;
    int64_t dim;
};

static const struct invar_param_spec mlp_params[] = {
    INVAR_PARAM_INT(struct mlp_config, hidden, "512", 1, 65536, "width of each hidden layer"),
    INVAR_PARAM_INT(struct mlp_config, depth, "2", 0, MLP_MAX_DEPTH, "number of hidden layers"),
    INVAR_PARAM_INT(struct mlp_config, dim, "128", 1, 65536, "output feature size"),
    INVAR_PARAM_END,
};

struct mlp {
    int64_t in_features;
    int64_t depth;
    struct linear fc[MLP_MAX_DEPTH + 1];
    struct bn bn[MLP_MAX_DEPTH];
};

static enum invar_status mlp_create(const void *config, const int64_t in_shape[3],
                                    struct invar_params *params, void **self, int64_t *out_dim,
                                    struct invar_error *err)
{
    const struct mlp_config *c = config;
    struct mlp *m = calloc(1, sizeof *m);
    if (!m)
        return invar_error_set(err, INVAR_ERR_NOMEM, "mlp: out of memory");
    m->in_features = in_shape[0] * in_shape[1] * in_shape[2];
    m->depth = c->depth;
    int64_t prev = m->in_features;
    for (int64_t i = 0; i < c->depth; i++) {
        char name[32];
        snprintf(name, sizeof name, "fc%lld", (long long)i + 1);
        linear_declare(&m->fc[i], params, name, prev, c->hidden, 0);
        snprintf(name, sizeof name, "bn%lld", (long long)i + 1);
        bn_declare(&m->bn[i], params, name, c->hidden);
        prev = c->hidden;
    }
    linear_declare(&m->fc[c->depth], params, "out", prev, c->dim, 1);
    *out_dim = c->dim;
    *self = m;
    return INVAR_OK;
}

static struct invar_tensor *mlp_forward(void *self, struct invar_graph *g, struct invar_tensor *x)
{
    struct mlp *m = self;
    x = invar_reshape(g, x, 2, (int64_t[]){x->shape[0], m->in_features}); /* (N, C*H*W) */
    for (int64_t i = 0; i < m->depth; i++)
        x = bn_relu_forward(&m->bn[i], g, linear_forward(&m->fc[i], g, x));
    return linear_forward(&m->fc[m->depth], g, x); /* (N, dim) */
}

static void mlp_destroy(void *self) { free(self); }

static const struct invar_encoder_ops mlp_ops = {
    .create = mlp_create,
    .forward = mlp_forward,
    .destroy = mlp_destroy,
};

INVAR_PLUGIN_DEFINE(invar_encoder, "mlp", "1.0.0",
                    "multilayer perceptron on flattened inputs (linear-BN-ReLU blocks)",
                    struct mlp_config, mlp_params, mlp_ops)
