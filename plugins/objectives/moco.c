/* moco — Momentum Contrast (He et al. 2019).
 *
 * A query encoder (the online encoder, trained) and a key encoder (its exponential moving
 * average); a FIFO queue of the K most recent keys serves as negatives. For a batch of query
 * views x_q and key views x_k (views[0] and views[1]):
 *     theta_k <- m theta_k + (1 - m) theta_q        (before the keys are encoded)
 *     q = normalize(f_q(x_q))  (B, D)     k = normalize(f_k(x_k))  (B, D), no gradient
 *     logits = [q.k, q queue^T] / T  (B, 1 + K),    loss = cross-entropy with label 0
 * after the step the keys are enqueued (any K >= 1; K need not be a multiple of B).
 * symmetric also swaps the two views; views 2.. (multi-crop, e.g. smaller crops) are further
 * queries against the same keys and are never encoded as keys. The loss is the mean over the
 * (query view, key view) pairs.
 *
 * Shuffled batch-norm (shuffle_bn: G > 1), the paper's remedy for a leak through batch-norm:
 * with one set of batch statistics, a query and its positive key are normalised by the
 * statistics of the same images, and the encoders can learn to match batches instead of
 * images. Both encoders then normalise G sub-batches separately (as G devices would), and the
 * key encoder sees the batch in a random order that is undone on its output, so a query's key
 * is normalised with (most likely) other images than the query. The order comes from
 * (seed, global step): runs and resumes repeat it exactly.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <invar/plugin.h>

struct moco_config {
    int64_t queue;
    double momentum;
    double temperature;
    int symmetric;
    int64_t shuffle_bn;
};

static const struct invar_param_spec moco_params[] = {
    INVAR_PARAM_INT(struct moco_config, queue, "4096", 1, 1 << 24,
                    "K: negative keys kept in the FIFO queue"),
    INVAR_PARAM_FLOAT(struct moco_config, momentum, "0.999", 0, 1,
                      "m: key encoder EMA coefficient (0 copies the query encoder each step)"),
    INVAR_PARAM_FLOAT(struct moco_config, temperature, "0.07", 1e-4, 100,
                      "T: logits are divided by it"),
    INVAR_PARAM_BOOL(struct moco_config, symmetric, "false",
                     "also swap the views (loss averaged over both directions)"),
    INVAR_PARAM_INT(struct moco_config, shuffle_bn, "1", 1, 4096,
                    "G: batch-norm statistics over G sub-batches, keys shuffled across them "
                    "(1: one batch, no shuffle); must divide the batch size"),
    INVAR_PARAM_END,
};

struct moco {
    struct moco_config cfg;
    struct invar_objective_ctx *ctx;
    struct invar_encoder *key_enc;
    struct invar_tensor *queue;         /* (K, D) buffer: normalised keys */
    int64_t ptr;                        /* next queue row to overwrite */
    const struct invar_tensor *keys[2]; /* this step's keys (B, D), in the graph arena */
    int n_keys;
    double pos_sim, neg_sim;
};

static enum invar_status moco_create(const void *config, struct invar_objective_ctx *ctx,
                                     void **self, struct invar_error *err)
{
    struct moco *m = calloc(1, sizeof *m);
    if (!m)
        return invar_error_set(err, INVAR_ERR_NOMEM, "moco: out of memory");
    memcpy(&m->cfg, config, sizeof m->cfg);
    m->ctx = ctx;
    if (ctx->batch_size % m->cfg.shuffle_bn != 0) {
        int64_t b = ctx->batch_size, gs = m->cfg.shuffle_bn;
        free(m);
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "moco: shuffle_bn %lld does not divide the batch size %lld",
                               (long long)gs, (long long)b);
    }
    if (ctx->n_views < 2) {
        free(m);
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "moco: needs 2 views (a query and a key), the experiment has %lld",
                               (long long)ctx->n_views);
    }
    enum invar_status st = ctx->encoder_clone(ctx, &m->key_enc, err);
    if (st != INVAR_OK) {
        free(m);
        return st;
    }
    /* Random unit keys to start with, as the reference implementation does. */
    m->queue =
        invar_params_add(ctx->params, "moco.queue", 2, (int64_t[]){m->cfg.queue, ctx->feature_dim},
                         invar_init_normal(0, 1), INVAR_P_BUFFER);
    *self = m;
    return INVAR_OK;
}

static enum invar_status moco_init_state(void *self, struct invar_error *err)
{
    (void)err;
    struct moco *m = self;
    int64_t k = m->queue->shape[0], d = m->queue->shape[1];
    for (int64_t i = 0; i < k; i++) {
        float *row = m->queue->data + i * d;
        double ss = 0;
        for (int64_t j = 0; j < d; j++)
            ss += (double)row[j] * row[j];
        float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
        for (int64_t j = 0; j < d; j++)
            row[j] *= inv;
    }
    m->ptr = 0;
    return INVAR_OK;
}

/* Normalised keys (B, D) of xk (B, C, H, W) encoded in a random order, rows back in xk's
 * order: the key encoder's batch-norm sub-batches hold other images than the query's. */
static struct invar_tensor *moco_shuffled_keys(struct moco *m, struct invar_graph *g,
                                               struct invar_tensor *xk, int64_t step, int dir)
{
    const int64_t b = xk->shape[0], row = xk->numel / b;
    int64_t *perm = invar_arena_alloc(invar_graph_arena(g), (size_t)b * sizeof *perm);
    struct invar_rng r;
    invar_rng_init(&r, m->ctx->seed,
                   invar_rng_stream((uint64_t)step, (uint64_t)dir, 0x6d6f636f, 0));
    invar_rng_permutation(&r, perm, b);
    struct invar_tensor *xs = invar_graph_tensor(g, xk->ndim, xk->shape); /* xs[i] = xk[perm[i]] */
    for (int64_t i = 0; i < b; i++)
        memcpy(xs->data + i * row, xk->data + perm[i] * row, (size_t)row * sizeof(float));
    struct invar_tensor *ks =
        invar_l2_normalize(g, invar_encoder_forward(m->key_enc, g, xs), 1e-12f); /* (B, D) */
    const int64_t d = ks->shape[1];
    struct invar_tensor *k = invar_graph_tensor(g, 2, ks->shape);
    for (int64_t i = 0; i < b; i++)
        memcpy(k->data + perm[i] * d, ks->data + i * d, (size_t)d * sizeof(float));
    return k;
}

/* Normalised keys (B, D) of xk from the key encoder, without gradient; kept for the queue. */
static struct invar_tensor *moco_keys(struct moco *m, struct invar_graph *g,
                                      struct invar_tensor *xk, int64_t step, int dir)
{
    int old_splits = invar_graph_set_bn_splits(g, (int)m->cfg.shuffle_bn);
    int was = invar_graph_set_grad(g, 0);
    struct invar_tensor *k;
    if (m->cfg.shuffle_bn > 1)
        k = moco_shuffled_keys(m, g, xk, step, dir);
    else
        k = invar_l2_normalize(g, invar_encoder_forward(m->key_enc, g, xk), 1e-12f); /* (B, D) */
    invar_graph_set_grad(g, was);
    invar_graph_set_bn_splits(g, old_splits);
    m->keys[m->n_keys++] = k;
    return k;
}

/* InfoNCE of the queries of view xq against the keys k (their positives) and the queue. */
static struct invar_tensor *moco_infonce(struct moco *m, struct invar_graph *g,
                                         struct invar_tensor *xq, struct invar_tensor *k)
{
    int old_splits = invar_graph_set_bn_splits(g, (int)m->cfg.shuffle_bn);
    struct invar_tensor *q =
        invar_l2_normalize(g, invar_encoder_forward(m->ctx->online, g, xq), 1e-12f); /* (B, D) */
    invar_graph_set_bn_splits(g, old_splits);
    int64_t b = q->shape[0];
    struct invar_tensor *lpos =
        invar_reshape(g, invar_sum_rows(g, invar_mul(g, q, k)), 2, (int64_t[]){b, 1}); /* (B, 1) */
    struct invar_tensor *lneg = invar_matmul(g, q, m->queue, 0, 1);                    /* (B, K) */
    struct invar_tensor *parts[2] = {lpos, lneg};
    struct invar_tensor *logits = invar_scale(g, invar_concat(g, parts, 2, 1),
                                              (float)(1.0 / m->cfg.temperature), 0); /* (B, 1+K) */
    int32_t *labels = invar_arena_calloc(invar_graph_arena(g), (size_t)b * sizeof *labels);

    double ps = 0, ns = 0;
    for (int64_t i = 0; i < b; i++)
        ps += lpos->data[i];
    for (int64_t i = 0; i < lneg->numel; i++)
        ns += lneg->data[i];
    m->pos_sim += ps / (double)b;
    m->neg_sim += ns / (double)lneg->numel;
    return invar_cross_entropy(g, logits, labels);
}

static struct invar_tensor *moco_loss(void *self, struct invar_graph *g,
                                      struct invar_tensor **views, int64_t n_views,
                                      const int64_t *indices, const struct invar_step_info *info)
{
    (void)indices;
    struct moco *m = self;
    /* The key encoder follows the query encoder before it encodes this batch's keys. */
    invar_params_ema(invar_encoder_params(m->key_enc), invar_encoder_params(m->ctx->online),
                     (float)m->cfg.momentum);
    m->n_keys = 0;
    m->pos_sim = m->neg_sim = 0;
    const int64_t step = info->global_step;
    struct invar_tensor *k1 = moco_keys(m, g, views[1], step, 0), *k0 = NULL;
    struct invar_tensor *loss = moco_infonce(m, g, views[0], k1);
    int terms = 1;
    if (m->cfg.symmetric) {
        k0 = moco_keys(m, g, views[0], step, 1);
        loss = invar_add(g, loss, moco_infonce(m, g, views[1], k0));
        terms++;
    }
    /* Multi-crop: every further view is a query only, its positives the keys of view 1 (and,
     * symmetric, of view 0 too). */
    for (int64_t v = 2; v < n_views; v++) {
        loss = invar_add(g, loss, moco_infonce(m, g, views[v], k1));
        terms++;
        if (k0) {
            loss = invar_add(g, loss, moco_infonce(m, g, views[v], k0));
            terms++;
        }
    }
    if (terms > 1) {
        loss = invar_scale(g, loss, (float)(1.0 / terms), 0);
        m->pos_sim /= terms;
        m->neg_sim /= terms;
    }
    return loss;
}

static void moco_after_step(void *self, struct invar_graph *g, const struct invar_step_info *info)
{
    (void)g, (void)info;
    struct moco *m = self;
    int64_t k = m->queue->shape[0], d = m->queue->shape[1];
    for (int j = 0; j < m->n_keys; j++) {
        const struct invar_tensor *keys = m->keys[j];
        int64_t b = keys->shape[0];
        /* When a batch holds more keys than the queue, only the last K survive anyway. */
        int64_t first = b > k ? b - k : 0;
        for (int64_t i = first; i < b; i++) {
            memcpy(m->queue->data + m->ptr * d, keys->data + i * d, (size_t)d * sizeof(float));
            m->ptr = (m->ptr + 1) % k;
        }
    }
    m->n_keys = 0;
}

static void moco_metrics(void *self, invar_metric_fn emit, void *user)
{
    struct moco *m = self;
    emit(user, "moco/pos_sim", m->pos_sim);
    emit(user, "moco/neg_sim", m->neg_sim);
}

static enum invar_status moco_save(void *self, struct invar_state_io *io)
{
    struct moco *m = self;
    return io->put(io, "moco.ptr", &m->ptr, sizeof m->ptr);
}

static enum invar_status moco_load(void *self, struct invar_state_io *io)
{
    struct moco *m = self;
    return io->get(io, "moco.ptr", &m->ptr, sizeof m->ptr);
}

static void moco_destroy(void *self)
{
    free(self);
}

static const struct invar_objective_ops moco_ops = {
    .create = moco_create,
    .init_state = moco_init_state,
    .loss = moco_loss,
    .after_step = moco_after_step,
    .metrics = moco_metrics,
    .save = moco_save,
    .load = moco_load,
    .destroy = moco_destroy,
};

INVAR_PLUGIN_DEFINE(invar_objective, "moco", "1.0.0",
                    "MoCo: InfoNCE against a FIFO queue of keys from a momentum encoder",
                    struct moco_config, moco_params, moco_ops)
