/* simclr — SimCLR (Chen et al. 2020): NT-Xent over the 2B views of a batch.
 *
 * For the two views x1, x2 (views[0], views[1], each (B, C, H, W)):
 *     z = normalize(g(f(x)))  (2B, P), rows 0..B-1 from x1, B..2B-1 from x2
 *     s_ij = z_i . z_j / T    (2B, 2B), with s_ii replaced by a large negative constant
 *     loss = mean_i [ -log softmax(s_i)[pos(i)] ],  pos(i) = i + B mod 2B
 * so each row's positive is its other view and the 2B - 2 remaining rows are its negatives.
 * g is the projection head linear-BN-ReLU-linear on the encoder output; the encoder output
 * (before g) is what evaluation sees. With hidden: 0 the objective has no head of its own and
 * g is the identity: the loss is on the encoder's output, so an encoder with a projection head
 * (convnet's head: mlp_bn, the same layers) lets evaluation choose between the projection
 * (eval features: head) and the representation under it (backbone), as for MoCo.
 * The masked entry is -1e9 rather than -inf: exp of it underflows to exactly 0 in the fused
 * (max-subtracted) cross-entropy, so it drops out of the normaliser and receives no gradient,
 * and no inf - inf can arise.
 * The temperature defaults to 0.5, the paper's choice for its MLP head and batch sizes of a
 * few hundred (0.1 suits batches of thousands).
 */
#include <stdlib.h>
#include <string.h>

#include <invar/plugin.h>

#include "heads.h"

#define SIMCLR_MASK (-1e9f)

struct simclr_config {
    double temperature;
    int64_t hidden;
    int64_t dim;
};

static const struct invar_param_spec simclr_params[] = {
    INVAR_PARAM_FLOAT(struct simclr_config, temperature, "0.5", 1e-4, 100,
                      "T: cosine similarities are divided by it"),
    INVAR_PARAM_INT(struct simclr_config, hidden, "512", 0, 65536,
                    "hidden width of the projection head; 0 = no head of the objective's own "
                    "(the loss is on the encoder's output)"),
    INVAR_PARAM_INT(struct simclr_config, dim, "128", 1, 65536,
                    "output size of the projection head (where the loss is computed; unused "
                    "with hidden 0)"),
    INVAR_PARAM_END,
};

struct simclr {
    struct simclr_config cfg;
    struct invar_objective_ctx *ctx;
    struct mlp_head proj; /* unused with cfg.hidden 0 */
    /* running sums since the last metrics call */
    double proj_std, pos_acc, pos_sim, neg_sim;
    int64_t n_steps;
};

static enum invar_status simclr_create(const void *config, struct invar_objective_ctx *ctx,
                                       void **self, struct invar_error *err)
{
    if (ctx->n_views != 2)
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "simclr: reads exactly 2 views, the experiment has %lld "
                               "(further views are read by moco, byol, simsiam and swav)",
                               (long long)ctx->n_views);
    if (ctx->batch_size < 2)
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "simclr: needs a batch of at least 2 (negatives come from it)");
    struct simclr *m = calloc(1, sizeof *m);
    if (!m)
        return invar_error_set(err, INVAR_ERR_NOMEM, "simclr: out of memory");
    memcpy(&m->cfg, config, sizeof m->cfg);
    m->ctx = ctx;
    if (m->cfg.hidden > 0)
        mlp_head_declare(&m->proj, ctx->params, "simclr.proj", ctx->feature_dim, m->cfg.hidden,
                         m->cfg.dim, HEAD_OUT_LINEAR, 0);
    *self = m;
    return INVAR_OK;
}

/* Monitors from the (2B, 2B) similarities before scaling: how often the positive is the
 * nearest row, and the mean positive and negative cosine. */
static void simclr_observe(struct simclr *m, const struct invar_tensor *sim, int64_t b)
{
    int64_t n = 2 * b;
    double hits = 0, pos = 0, neg = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *row = sim->data + i * n;
        int64_t p = (i + b) % n, best = p;
        for (int64_t j = 0; j < n; j++) {
            if (j == i)
                continue;
            if (j != p)
                neg += row[j];
            if (row[j] > row[best])
                best = j;
        }
        hits += best == p;
        pos += row[p];
    }
    m->pos_acc += hits / (double)n;
    m->pos_sim += pos / (double)n;
    m->neg_sim += neg / (double)(n * (n - 2 > 0 ? n - 2 : 1));
}

static struct invar_tensor *simclr_loss(void *self, struct invar_graph *g,
                                        struct invar_tensor **views, int64_t n_views,
                                        const int64_t *indices, const struct invar_step_info *info)
{
    (void)n_views, (void)indices, (void)info;
    struct simclr *m = self;
    int64_t b = views[0]->shape[0], n = 2 * b;
    struct invar_tensor *z[2];
    for (int v = 0; v < 2; v++) { /* (B, P) each; BN statistics per view, as for the encoder */
        z[v] = invar_encoder_forward(m->ctx->online, g, views[v]);
        if (m->cfg.hidden > 0)
            z[v] = mlp_head_forward(&m->proj, g, z[v]);
    }
    struct invar_tensor *zn = invar_l2_normalize(g, invar_concat(g, z, 2, 0), 1e-12f); /* (2B, P) */
    struct invar_tensor *sim = invar_matmul(g, zn, zn, 0, 1); /* (2B, 2B) */

    struct invar_tensor *mask = invar_graph_zeros(g, 2, (int64_t[]){n, n}); /* (2B, 2B) */
    for (int64_t i = 0; i < n; i++)
        mask->data[i * n + i] = SIMCLR_MASK;
    struct invar_tensor *logits =
        invar_add(g, invar_scale(g, sim, (float)(1.0 / m->cfg.temperature), 0), mask);
    int32_t *labels = invar_arena_alloc(invar_graph_arena(g), (size_t)n * sizeof *labels);
    for (int64_t i = 0; i < n; i++)
        labels[i] = (int32_t)((i + b) % n);

    simclr_observe(m, sim, b);
    m->proj_std += head_collapse_std(g, zn);
    m->n_steps++;
    return invar_cross_entropy(g, logits, labels);
}

static void simclr_metrics(void *self, invar_metric_fn emit, void *user)
{
    struct simclr *m = self;
    if (m->n_steps == 0)
        return;
    double k = 1.0 / (double)m->n_steps;
    emit(user, "simclr/proj_std", m->proj_std * k);
    emit(user, "simclr/pos_acc", m->pos_acc * k);
    emit(user, "simclr/pos_sim", m->pos_sim * k);
    emit(user, "simclr/neg_sim", m->neg_sim * k);
    m->proj_std = m->pos_acc = m->pos_sim = m->neg_sim = 0;
    m->n_steps = 0;
}

static void simclr_destroy(void *self)
{
    free(self);
}

static const struct invar_objective_ops simclr_ops = {
    .create = simclr_create,
    .loss = simclr_loss,
    .metrics = simclr_metrics,
    .destroy = simclr_destroy,
};

INVAR_PLUGIN_DEFINE(invar_objective, "simclr", "1.0.0",
                    "SimCLR: NT-Xent over both views of a batch, MLP projection head",
                    struct simclr_config, simclr_params, simclr_ops)
