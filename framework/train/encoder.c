/* struct invar_encoder: one instance of an encoder plugin with its own parameter block. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_internal.h"

enum invar_status encoder_create(struct invar_encoder **out, const struct invar_plugin_use *use,
                                 const int64_t in_shape[3], uint64_t seed,
                                 struct invar_error *err)
{
    *out = NULL;
    struct invar_encoder *e = calloc(1, sizeof *e);
    if (!e)
        return invar_error_set(err, INVAR_ERR_NOMEM, "encoder: out of memory");
    e->use = *use;
    memcpy(e->in_shape, in_shape, sizeof e->in_shape);
    e->params = invar_params_create();
    enum invar_status st = e->params ? INVAR_OK
                                     : invar_error_set(err, INVAR_ERR_NOMEM, "encoder: out of memory");
    if (st == INVAR_OK)
        st = use->plugin->ops.encoder->create(use->config, in_shape, e->params, &e->self, &e->dim,
                                             err);
    if (st == INVAR_OK)
        st = invar_params_finalize(e->params, seed, err);
    if (st != INVAR_OK) {
        invar_error_prefix(err, "encoder %s", use->plugin->name);
        encoder_destroy(e);
        return st;
    }
    *out = e;
    return INVAR_OK;
}

enum invar_status encoder_check_input(const struct invar_encoder *e, const int64_t shape[3],
                                      const char *key, struct invar_error *err)
{
    if (!memcmp(shape, e->in_shape, sizeof e->in_shape))
        return INVAR_OK;
    struct invar_encoder *probe;
    enum invar_status st = encoder_create(&probe, &e->use, shape, 0, err);
    if (st != INVAR_OK) {
        invar_error_prefix(err, "%s: the images at %lldx%lldx%lld", key, (long long)shape[0],
                           (long long)shape[1], (long long)shape[2]);
        return st;
    }
    size_t want = invar_params_numel(e->params), got = invar_params_numel(probe->params);
    int64_t dim = probe->dim;
    encoder_destroy(probe);
    if (got != want || dim != e->dim)
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "%s: encoder %s was built for %lldx%lldx%lld views and its "
                               "weights depend on the input size: it cannot embed images of "
                               "%lldx%lldx%lld (set %s to %lld)",
                               key, e->use.plugin->name, (long long)e->in_shape[0],
                               (long long)e->in_shape[1], (long long)e->in_shape[2],
                               (long long)shape[0], (long long)shape[1], (long long)shape[2], key,
                               (long long)e->in_shape[1]);
    return INVAR_OK;
}

void encoder_destroy(struct invar_encoder *e)
{
    if (!e)
        return;
    if (e->self)
        e->use.plugin->ops.encoder->destroy(e->self);
    invar_params_destroy(e->params);
    free(e);
}

struct invar_tensor *invar_encoder_forward(struct invar_encoder *e, struct invar_graph *g,
                                           struct invar_tensor *x)
{
    return e->use.plugin->ops.encoder->forward(e->self, g, x);
}

/* The plugin's backbone op, if its vtable is recent enough to have the field and fills it. */
static struct invar_tensor *(*encoder_backbone_op(const struct invar_encoder *e))(
    void *, struct invar_graph *, struct invar_tensor *)
{
    const struct invar_plugin *p = e->use.plugin;
    if (p->ops_size < offsetof(struct invar_encoder_ops, backbone) + sizeof p->ops.encoder->backbone)
        return NULL;
    return p->ops.encoder->backbone;
}

struct invar_tensor *invar_encoder_backbone(struct invar_encoder *e, struct invar_graph *g,
                                            struct invar_tensor *x)
{
    struct invar_tensor *(*op)(void *, struct invar_graph *, struct invar_tensor *) =
        encoder_backbone_op(e);
    return op ? op(e->self, g, x) : invar_encoder_forward(e, g, x);
}

int64_t invar_encoder_backbone_dim(struct invar_encoder *e)
{
    if (!encoder_backbone_op(e))
        return e->dim;
    if (!e->backbone_dim) { /* the plugin declares only its output size: run one image */
        struct invar_graph *g = invar_graph_create(1u << 20);
        INVAR_ASSERT(g);
        invar_graph_set_grad(g, 0);
        invar_graph_set_training(g, 0);
        struct invar_tensor *x = invar_graph_zeros(
            g, 4, (int64_t[]){1, e->in_shape[0], e->in_shape[1], e->in_shape[2]});
        struct invar_tensor *f = invar_encoder_backbone(e, g, x);
        INVAR_ASSERT(f->ndim == 2 && f->shape[0] == 1);
        e->backbone_dim = f->shape[1];
        invar_graph_destroy(g);
    }
    return e->backbone_dim;
}

struct invar_tensor *encoder_features(struct invar_encoder *e, struct invar_graph *g,
                                      struct invar_tensor *x, int which)
{
    return which == INVAR_FEATURES_BACKBONE ? invar_encoder_backbone(e, g, x)
                                            : invar_encoder_forward(e, g, x);
}

struct invar_tensor *invar_encoder_embed_batch(struct invar_encoder *e, struct invar_graph *g,
                                               const float *x, int64_t b, const int64_t shape[3],
                                               const float *mean, const float *std,
                                               enum invar_eval_features which)
{
    const int64_t hw = shape[1] * shape[2], numel = shape[0] * hw;
    invar_graph_reset(g);
    struct invar_tensor *t = invar_graph_tensor(g, 4, (int64_t[]){b, shape[0], shape[1], shape[2]});
    memcpy(t->data, x, (size_t)(b * numel) * sizeof *x);
    if (mean)
        for (int64_t i = 0; i < b; i++)
            for (int64_t c = 0; c < shape[0]; c++) {
                float *p = t->data + i * numel + c * hw, m = mean[c], inv = 1.0f / std[c];
                for (int64_t j = 0; j < hw; j++)
                    p[j] = (p[j] - m) * inv;
            }
    return encoder_features(e, g, t, (int)which);
}

int64_t encoder_out_dim(struct invar_encoder *e, int which)
{
    return which == INVAR_FEATURES_BACKBONE ? invar_encoder_backbone_dim(e) : e->dim;
}

struct invar_params *invar_encoder_params(struct invar_encoder *e) { return e->params; }

int64_t invar_encoder_dim(const struct invar_encoder *e) { return e->dim; }

enum invar_status invar_encoder_create(struct invar_encoder **out,
                                       const struct invar_plugin_use *use,
                                       const int64_t in_shape[3], uint64_t seed,
                                       struct invar_error *err)
{
    return encoder_create(out, use, in_shape, seed, err);
}

void invar_encoder_destroy(struct invar_encoder *e) { encoder_destroy(e); }
