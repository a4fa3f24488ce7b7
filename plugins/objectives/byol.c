/* byol — Bootstrap Your Own Latent (Grill et al. 2020).
 *
 * Online network: encoder f, projector g, predictor q (trained). Target network: f', g', an
 * exponential moving average of f and g (never optimized). For views x1, x2:
 *     p1 = q(g(f(x1)))  (B, P)      z2' = g'(f'(x2))  (B, P), no gradient
 *     loss = mean_i [2 - 2 cos(p1_i, z2'_i)] + mean_i [2 - 2 cos(p2_i, z1'_i)]
 * (the second term swaps the views). Views 2.. (multi-crop, e.g. smaller crops) go through
 * the online network only, each predicting both targets; the loss is then the mean over the
 * 2 (V - 1) (view, target) pairs, times 2. After each optimizer step k of K:
 *     tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2        (tau_base at k = 0, 1 at K)
 *     theta' <- tau_k theta' + (1 - tau_k) theta     for f' and for g'
 * f' is a framework clone of the encoder; g' is declared as buffers in ctx->params (so it is
 * checkpointed but not optimized) and averaged here. Batch-norm running statistics are not
 * averaged: the target keeps its own, estimated from the batches it sees.
 * With proj_hidden: 0 the objective has no projector of its own and g is the identity: the
 * encoder's projection head (convnet's head: mlp_bn, the same layers) serves as g, f' (its
 * clone) as f' and g', and the predictor maps the encoder's output size to itself; evaluation
 * can then read the projection (eval features: head) or the representation under it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <invar/plugin.h>

#include "heads.h"

#define BYOL_PI 3.14159265358979323846

struct byol_config {
    double tau_base;
    int64_t proj_hidden;
    int64_t proj_dim;
    int64_t pred_hidden;
};

static const struct invar_param_spec byol_params[] = {
    INVAR_PARAM_FLOAT(struct byol_config, tau_base, "0.99", 0, 1,
                      "target EMA coefficient at the first step; it rises to 1 along a cosine"),
    INVAR_PARAM_INT(struct byol_config, proj_hidden, "512", 0, 65536,
                    "hidden width of the projector; 0 = no projector of the objective's own "
                    "(the encoder's output is projected and predicted)"),
    INVAR_PARAM_INT(struct byol_config, proj_dim, "128", 1, 65536,
                    "output size of the projector and of the predictor (the encoder's output "
                    "size with proj_hidden 0)"),
    INVAR_PARAM_INT(struct byol_config, pred_hidden, "512", 1, 65536,
                    "hidden width of the predictor"),
    INVAR_PARAM_END,
};

struct byol {
    struct byol_config cfg;
    struct invar_objective_ctx *ctx;
    struct invar_encoder *target;
    int has_proj;                /* cfg.proj_hidden > 0 */
    struct mlp_head proj, pred;  /* online, trained; proj unused without has_proj */
    struct mlp_head target_proj; /* buffers; unused without has_proj */
    double tau;                  /* used by the last after_step */
    double proj_std, cos_sum;    /* running sums since the last metrics call */
    int64_t n_steps;
};

/* tau at step k of K: tau_base at 0, (1 + tau_base) / 2 halfway, 1 at K. */
static double byol_tau(double tau_base, int64_t k, int64_t total)
{
    double frac = total > 0 ? (double)k / (double)total : 1.0;
    if (frac > 1)
        frac = 1;
    return 1.0 - (1.0 - tau_base) * (cos(BYOL_PI * frac) + 1.0) * 0.5;
}

static enum invar_status byol_create(const void *config, struct invar_objective_ctx *ctx,
                                     void **self, struct invar_error *err)
{
    if (ctx->n_views < 2)
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "byol: needs 2 views, the experiment has %lld",
                               (long long)ctx->n_views);
    struct byol *m = calloc(1, sizeof *m);
    if (!m)
        return invar_error_set(err, INVAR_ERR_NOMEM, "byol: out of memory");
    memcpy(&m->cfg, config, sizeof m->cfg);
    m->ctx = ctx;
    m->tau = m->cfg.tau_base;
    enum invar_status st = ctx->encoder_clone(ctx, &m->target, err);
    if (st != INVAR_OK) {
        free(m);
        return st;
    }
    const struct byol_config *c = &m->cfg;
    m->has_proj = c->proj_hidden > 0;
    int64_t z_dim = m->has_proj ? c->proj_dim : ctx->feature_dim;
    if (m->has_proj)
        mlp_head_declare(&m->proj, ctx->params, "byol.proj", ctx->feature_dim, c->proj_hidden,
                         c->proj_dim, HEAD_OUT_LINEAR, 0);
    mlp_head_declare(&m->pred, ctx->params, "byol.pred", z_dim, c->pred_hidden, z_dim,
                     HEAD_OUT_LINEAR, 0);
    if (m->has_proj)
        mlp_head_declare(&m->target_proj, ctx->params, "byol.target_proj", ctx->feature_dim,
                         c->proj_hidden, c->proj_dim, HEAD_OUT_LINEAR, INVAR_P_BUFFER);
    *self = m;
    return INVAR_OK;
}

static enum invar_status byol_init_state(void *self, struct invar_error *err)
{
    (void)err;
    struct byol *m = self;
    if (m->has_proj)
        mlp_head_ema(&m->target_proj, &m->proj, 0.0f, 1); /* the target starts as a copy */
    return INVAR_OK;
}

/* (1) = mean_i [2 - 2 cos(p_i, zt_i)] */
static struct invar_tensor *byol_regress(struct invar_graph *g, struct invar_tensor *p,
                                         struct invar_tensor *zt)
{
    return invar_scale(g, invar_mean(g, invar_cosine_similarity(g, p, zt, 1e-12f)), -2.0f, 2.0f);
}

static struct invar_tensor *byol_loss(void *self, struct invar_graph *g,
                                      struct invar_tensor **views, int64_t n_views,
                                      const int64_t *indices, const struct invar_step_info *info)
{
    (void)indices, (void)info;
    struct byol *m = self;
    struct invar_tensor **p = invar_arena_alloc(invar_graph_arena(g), (size_t)n_views * sizeof *p);
    struct invar_tensor *zt[2];
    for (int64_t v = 0; v < n_views; v++) {
        struct invar_tensor *z = invar_encoder_forward(m->ctx->online, g, views[v]);
        if (m->has_proj)
            z = mlp_head_forward(&m->proj, g, z);
        p[v] = mlp_head_forward(&m->pred, g, z); /* (B, P) */
        if (v < 2)
            m->proj_std += 0.5 * head_collapse_std(g, z);
    }
    int was = invar_graph_set_grad(g, 0);
    for (int v = 0; v < 2; v++) { /* (B, P), no gradient */
        zt[v] = invar_encoder_forward(m->target, g, views[v]);
        if (m->has_proj)
            zt[v] = mlp_head_forward(&m->target_proj, g, zt[v]);
    }
    invar_graph_set_grad(g, was);
    struct invar_tensor *loss =
        invar_add(g, byol_regress(g, p[0], zt[1]), byol_regress(g, p[1], zt[0]));
    if (n_views > 2) { /* multi-crop: each further view predicts both targets */
        for (int64_t v = 2; v < n_views; v++)
            loss = invar_add(
                g, loss, invar_add(g, byol_regress(g, p[v], zt[0]), byol_regress(g, p[v], zt[1])));
        loss = invar_scale(g, loss, (float)(1.0 / (double)(n_views - 1)), 0);
    }
    m->cos_sum += 1.0 - loss->data[0] / 4.0; /* mean cosine over the pairs */
    m->n_steps++;
    return loss;
}

static void byol_after_step(void *self, struct invar_graph *g, const struct invar_step_info *info)
{
    (void)g;
    struct byol *m = self;
    m->tau = byol_tau(m->cfg.tau_base, info->global_step, info->total_steps);
    invar_params_ema(invar_encoder_params(m->target), invar_encoder_params(m->ctx->online),
                     (float)m->tau);
    if (m->has_proj)
        mlp_head_ema(&m->target_proj, &m->proj, (float)m->tau, 0);
}

static void byol_metrics(void *self, invar_metric_fn emit, void *user)
{
    struct byol *m = self;
    emit(user, "byol/tau", m->tau);
    if (m->n_steps == 0)
        return;
    double k = 1.0 / (double)m->n_steps;
    emit(user, "byol/proj_std", m->proj_std * k);
    emit(user, "byol/cos", m->cos_sum * k);
    m->proj_std = m->cos_sum = 0;
    m->n_steps = 0;
}

static void byol_destroy(void *self)
{
    free(self);
}

static const struct invar_objective_ops byol_ops = {
    .create = byol_create,
    .init_state = byol_init_state,
    .loss = byol_loss,
    .after_step = byol_after_step,
    .metrics = byol_metrics,
    .destroy = byol_destroy,
};

INVAR_PLUGIN_DEFINE(invar_objective, "byol", "1.0.0",
                    "BYOL: predict an EMA target's projection of the other view (2 - 2 cos)",
                    struct byol_config, byol_params, byol_ops)
