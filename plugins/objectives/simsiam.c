/* simsiam — SimSiam (Chen & He 2021): a Siamese network without negatives or a momentum
 * encoder, kept from collapsing by a predictor and a stop-gradient.
 *
 * Encoder f, projector g (linear-BN-ReLU-linear-BN, the paper's CIFAR variant; proj_layers 3
 * puts a second linear-BN-ReLU before the last linear, its ImageNet one), predictor h
 * (linear-BN-ReLU-linear, a bottleneck). The projector's output BN has a learned scale and shift
 * unless proj_out_affine is false (the reference code's BN without them, which holds every output
 * dimension at unit variance over the batch). For views x1, x2:
 *     z_v = g(f(x_v))  (B, P)      p_v = h(z_v)  (B, P)
 *     loss = -1/2 mean_i cos(p1_i, sg(z2_i)) - 1/2 mean_i cos(p2_i, sg(z1_i))
 * sg() is a stop-gradient: each z receives gradient only through its own prediction, never as
 * a target. Views 2.. (multi-crop, e.g. smaller crops) only predict: p_v against sg(z1) and
 * sg(z2), the loss then the mean over the 2 (V - 1) (prediction, target) pairs. Both
 * branches share f and g; there is no EMA. The loss is -1 at its minimum; a
 * collapse shows as projector outputs whose normalised std over the batch falls to 0
 * (simsiam/proj_std, healthy near 1/sqrt(P)). `predictor: false` and `stop_gradient: false`
 * are the paper's two ablations, both of which collapse: for showing what collapse looks like.
 * `fix_pred_lr` keeps the predictor's rate at optim.lr while the schedule decays the rest, as
 * the authors' code does (the paper: the predictor should adapt to the latest representations).
 * With proj_hidden: 0 the objective has no projector of its own and g is the identity: the
 * encoder's head (e.g. convnet's mlp_bn) is the projector, so kNN on the encoder's output reads
 * the projection, and the predictor maps the encoder's dim to itself (byol's proj_hidden: 0).
 */
#include <stdlib.h>
#include <string.h>

#include <invar/plugin.h>

#include "heads.h"

struct simsiam_config {
    int64_t proj_hidden;
    int64_t proj_dim;
    int64_t proj_layers;
    int64_t pred_hidden;
    int proj_out_bn;
    int proj_out_affine;
    int predictor;
    int stop_gradient;
    int fix_pred_lr;
};

static const struct invar_param_spec simsiam_params[] = {
    INVAR_PARAM_INT(struct simsiam_config, proj_hidden, "512", 0, 65536,
                    "hidden width of the projector; 0: no projector, the encoder's head is it"),
    INVAR_PARAM_INT(struct simsiam_config, proj_dim, "512", 1, 65536,
                    "output size of the projector and of the predictor (the encoder's dim "
                    "with proj_hidden 0)"),
    INVAR_PARAM_INT(struct simsiam_config, proj_layers, "2", 2, 3,
                    "linear layers in the projector: 2 (the paper's CIFAR variant) or 3 (its "
                    "ImageNet one), each but the last followed by batch-norm and ReLU"),
    INVAR_PARAM_INT(struct simsiam_config, pred_hidden, "128", 1, 65536,
                    "hidden width of the predictor (the paper's bottleneck: proj_dim / 4)"),
    INVAR_PARAM_BOOL(struct simsiam_config, proj_out_bn, "true",
                     "batch-norm on the projector's output, as in the paper"),
    INVAR_PARAM_BOOL(struct simsiam_config, proj_out_affine, "true",
                     "a learned scale and shift in that batch-norm (false: the reference "
                     "code's, every output dimension held at unit variance)"),
    INVAR_PARAM_BOOL(struct simsiam_config, predictor, "true",
                     "false: p = z (the paper's ablation; collapses)"),
    INVAR_PARAM_BOOL(struct simsiam_config, stop_gradient, "true",
                     "false: gradient also flows through the targets (ablation; collapses)"),
    INVAR_PARAM_BOOL(struct simsiam_config, fix_pred_lr, "false",
                     "step the predictor at optim.lr throughout, not the schedule's rate"),
    INVAR_PARAM_END,
};

struct simsiam {
    struct simsiam_config cfg;
    struct invar_objective_ctx *ctx;
    int has_proj;               /* cfg.proj_hidden > 0 */
    struct mlp_head proj, pred; /* proj unused without has_proj */
    double proj_std;            /* running sum since the last metrics call */
    int64_t n_steps;
};

static enum invar_status simsiam_create(const void *config, struct invar_objective_ctx *ctx,
                                        void **self, struct invar_error *err)
{
    if (ctx->n_views < 2)
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "simsiam: needs 2 views, the experiment has %lld",
                               (long long)ctx->n_views);
    struct simsiam *m = calloc(1, sizeof *m);
    if (!m)
        return invar_error_set(err, INVAR_ERR_NOMEM, "simsiam: out of memory");
    memcpy(&m->cfg, config, sizeof m->cfg);
    m->ctx = ctx;
    const struct simsiam_config *c = &m->cfg;
    m->has_proj = c->proj_hidden > 0;
    int64_t z_dim = m->has_proj ? c->proj_dim : ctx->feature_dim;
    if (m->has_proj)
        mlp_head_declare_n(&m->proj, ctx->params, "simsiam.proj", ctx->feature_dim, c->proj_hidden,
                           (int)c->proj_layers - 1, c->proj_dim,
                           !c->proj_out_bn      ? HEAD_OUT_LINEAR
                           : c->proj_out_affine ? HEAD_OUT_BN
                                                : HEAD_OUT_BN_PLAIN,
                           0);
    if (c->predictor)
        mlp_head_declare(&m->pred, ctx->params, "simsiam.pred", z_dim, c->pred_hidden, z_dim,
                         HEAD_OUT_LINEAR, c->fix_pred_lr ? INVAR_P_FIXED_LR : 0);
    *self = m;
    return INVAR_OK;
}

/* z = g(f(x)) */
static struct invar_tensor *simsiam_project(const struct simsiam *m, struct invar_graph *g,
                                            struct invar_tensor *x)
{
    struct invar_tensor *y = invar_encoder_forward(m->ctx->online, g, x);
    return m->has_proj ? mlp_head_forward(&m->proj, g, y) : y;
}

/* (1) = -1/2 mean_i cos(p_i, sg(z_i)) */
static struct invar_tensor *simsiam_half(const struct simsiam *m, struct invar_graph *g,
                                         struct invar_tensor *p, struct invar_tensor *z)
{
    if (m->cfg.stop_gradient)
        z = invar_stop_gradient(g, z);
    struct invar_tensor *c = invar_cosine_similarity(g, p, z, 1e-12f);
    return invar_scale(g, invar_mean(g, c), -0.5f, 0);
}

static struct invar_tensor *simsiam_loss(void *self, struct invar_graph *g,
                                         struct invar_tensor **views, int64_t n_views,
                                         const int64_t *indices, const struct invar_step_info *info)
{
    (void)indices, (void)info;
    struct simsiam *m = self;
    struct invar_tensor *z[2], *p[2];
    for (int v = 0; v < 2; v++) {
        z[v] = simsiam_project(m, g, views[v]);
        p[v] = m->cfg.predictor ? mlp_head_forward(&m->pred, g, z[v]) : z[v]; /* (B, P) */
        m->proj_std += 0.5 * head_collapse_std(g, z[v]);
    }
    m->n_steps++;
    struct invar_tensor *loss =
        invar_add(g, simsiam_half(m, g, p[0], z[1]), simsiam_half(m, g, p[1], z[0]));
    if (n_views == 2)
        return loss;
    for (int64_t v = 2; v < n_views; v++) { /* multi-crop: each further view predicts both */
        struct invar_tensor *zv = simsiam_project(m, g, views[v]);
        struct invar_tensor *pv = m->cfg.predictor ? mlp_head_forward(&m->pred, g, zv) : zv;
        loss = invar_add(g, loss,
                         invar_add(g, simsiam_half(m, g, pv, z[0]), simsiam_half(m, g, pv, z[1])));
    }
    return invar_scale(g, loss, (float)(1.0 / (double)(n_views - 1)), 0);
}

static void simsiam_metrics(void *self, invar_metric_fn emit, void *user)
{
    struct simsiam *m = self;
    if (m->n_steps == 0)
        return;
    emit(user, "simsiam/proj_std", m->proj_std / (double)m->n_steps);
    m->proj_std = 0;
    m->n_steps = 0;
}

static void simsiam_destroy(void *self)
{
    free(self);
}

static const struct invar_objective_ops simsiam_ops = {
    .create = simsiam_create,
    .loss = simsiam_loss,
    .metrics = simsiam_metrics,
    .destroy = simsiam_destroy,
};

INVAR_PLUGIN_DEFINE(invar_objective, "simsiam", "1.0.0",
                    "SimSiam: predictor + stop-gradient, symmetric negative cosine, no negatives",
                    struct simsiam_config, simsiam_params, simsiam_ops)
