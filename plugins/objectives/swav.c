/* swav — Swapping Assignments between Views (Caron et al. 2020).
 *
 * K trainable prototypes C (K, D), kept on the unit sphere. For views x_v (v < V):
 *     z_v = normalize(f(x_v))  (B, D)        s_v = z_v C^T  (B, K)
 *     q_a = sinkhorn(s_a) (B, K) for the two assignment views a in {0, 1}: computed without
 *           gradient, in double, eps = 0.05, 3 iterations (invar_sinkhorn), optionally over the
 *           batch together with a queue of past z_a so that small batches still spread over
 *           all prototypes
 *     loss = -1/(2 B (V - 1)) sum_a sum_{v != a} sum_i q_a[i] . log softmax(s_v[i] / T)
 * so each assignment view is predicted by every other view (multi-crop: views 2.. only
 * predict). After every optimizer step the prototypes are re-normalised and the queue takes
 * this step's z_0, z_1.
 *
 * Freezing: during the first freeze_iters steps the prototypes enter the loss through
 * stop_gradient, so they get no gradient at all. The optimizer may still move them along
 * themselves (weight decay, and a momentum buffer fed only by weight decay): a purely radial
 * change that the re-normalisation after the step undoes, so their directions stay exactly
 * as initialised, which is what freezing means for vectors that live on the sphere.
 *
 * Queue (queue > 0): a ring of the last `queue` z_a per assignment view, used from epoch
 * queue_start on once it is full (earlier its zero rows would distort the marginals). Its
 * contents are buffers and its fill level and write position are saved state.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <invar/kmeans.h>
#include <invar/plugin.h>

struct swav_config {
    int64_t prototypes;
    double temperature;
    double epsilon;
    int64_t sinkhorn_iters;
    int64_t queue;
    int64_t queue_start;
    int64_t freeze_iters;
};

static const struct invar_param_spec swav_params[] = {
    INVAR_PARAM_INT(struct swav_config, prototypes, "100", 1, 1 << 20,
                    "K: number of prototypes (100 for Fashion-MNIST, 3000 in the paper)"),
    INVAR_PARAM_FLOAT(struct swav_config, temperature, "0.1", 1e-4, 100,
                      "T: prototype scores are divided by it in the softmax"),
    INVAR_PARAM_FLOAT(struct swav_config, epsilon, "0.05", 1e-4, 100,
                      "Sinkhorn regularisation: codes are exp(score / epsilon), balanced"),
    INVAR_PARAM_INT(struct swav_config, sinkhorn_iters, "3", 0, 1000, "Sinkhorn iterations"),
    INVAR_PARAM_INT(struct swav_config, queue, "0", 0, 1 << 20,
                    "past features per assignment view added to Sinkhorn; 0 = no queue"),
    INVAR_PARAM_INT(struct swav_config, queue_start, "0", 0, 1 << 20,
                    "first epoch (0-based) that uses the queue"),
    INVAR_PARAM_INT(struct swav_config, freeze_iters, "234", 0, 1 << 30,
                    "steps during which the prototypes get no gradient (234: one epoch of "
                    "Fashion-MNIST at batch 256)"),
    INVAR_PARAM_END,
};

struct swav {
    struct swav_config cfg;
    struct invar_objective_ctx *ctx;
    struct invar_tensor *protos;     /* (K, D) */
    struct invar_tensor *queue;      /* (2, L, D) buffer, when queue > 0 */
    int64_t fill, ptr;               /* valid queue rows (per view), next row to write */
    const struct invar_tensor *z[2]; /* this step's z_0, z_1 (B, D), in the graph arena */
    double used;                     /* fraction of prototypes that are some row's argmax */
};


static enum invar_status swav_create(const void *config, struct invar_objective_ctx *ctx,
                                     void **self, struct invar_error *err)
{
    struct swav *m = calloc(1, sizeof *m);
    if (!m)
        return invar_error_set(err, INVAR_ERR_NOMEM, "swav: out of memory");
    memcpy(&m->cfg, config, sizeof m->cfg);
    m->ctx = ctx;
    if (ctx->n_views < 2) {
        free(m);
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "swav: needs at least 2 views (swapped prediction), the "
                               "experiment has %lld",
                               (long long)ctx->n_views);
    }
    int64_t d = ctx->feature_dim;
    m->protos = invar_params_add(ctx->params, "swav.prototypes", 2,
                                 (int64_t[]){m->cfg.prototypes, d}, invar_init_normal(0, 1), 0);
    if (m->cfg.queue > 0)
        m->queue = invar_params_add(ctx->params, "swav.queue", 3, (int64_t[]){2, m->cfg.queue, d},
                                    invar_init_zeros(), INVAR_P_BUFFER);
    *self = m;
    return INVAR_OK;
}

static enum invar_status swav_init_state(void *self, struct invar_error *err)
{
    (void)err;
    struct swav *m = self;
    invar_l2_normalize_rows(m->protos->data, m->protos->shape[0], m->protos->shape[1]);
    m->fill = m->ptr = 0;
    return INVAR_OK;
}

/* Codes (B, K) of assignment view a from its scores s (B, K), with the queue when in use. */
static float *swav_codes(struct swav *m, struct invar_graph *g, int a, const struct invar_tensor *s,
                         int use_queue)
{
    struct invar_arena *arena = invar_graph_arena(g);
    int64_t b = s->shape[0], k = s->shape[1], l = use_queue ? m->cfg.queue : 0;
    float *all = invar_arena_alloc(arena, (size_t)((l + b) * k) * sizeof *all); /* (L+B, K) */
    float *codes = invar_arena_alloc(arena, (size_t)((l + b) * k) * sizeof *codes);
    double *work = invar_arena_alloc(arena, (size_t)((l + b) * k + k) * sizeof *work);
    if (l > 0) {
        int was = invar_graph_set_grad(g, 0);
        struct invar_tensor qa;
        int64_t d = m->queue->shape[2];
        invar_tensor_wrap(&qa, m->queue->data + a * l * d, 2, (int64_t[]){l, d});
        struct invar_tensor *qs = invar_matmul(g, &qa, m->protos, 0, 1); /* (L, K) */
        invar_graph_set_grad(g, was);
        memcpy(all, qs->data, (size_t)(l * k) * sizeof *all);
    }
    memcpy(all + l * k, s->data, (size_t)(b * k) * sizeof *all);
    /* Arguments are valid by construction (b, k >= 1, eps > 0 by the parameter table). */
    enum invar_status st = invar_sinkhorn(all, l + b, k, m->cfg.epsilon, (int)m->cfg.sinkhorn_iters,
                                          codes, work, NULL);
    INVAR_ASSERT(st == INVAR_OK);
    return codes + l * k; /* the batch's rows come last */
}

static struct invar_tensor *swav_loss(void *self, struct invar_graph *g,
                                      struct invar_tensor **views, int64_t n_views,
                                      const int64_t *indices, const struct invar_step_info *info)
{
    (void)indices;
    struct swav *m = self;
    int64_t k = m->cfg.prototypes;
    struct invar_tensor *c = m->protos;
    if (info->global_step < m->cfg.freeze_iters)
        c = invar_stop_gradient(g, c);
    int use_queue = m->queue && info->epoch >= m->cfg.queue_start && m->fill == m->cfg.queue;

    struct invar_tensor **scores = /* (B, K) per view */
        invar_arena_alloc(invar_graph_arena(g), (size_t)n_views * sizeof *scores);
    for (int64_t v = 0; v < n_views; v++) {
        struct invar_tensor *z =
            invar_l2_normalize(g, invar_encoder_forward(m->ctx->online, g, views[v]), 1e-12f);
        if (v < 2)
            m->z[v] = z;
        scores[v] = invar_matmul(g, z, c, 0, 1);
    }
    int64_t b = scores[0]->shape[0];
    float *q[2];
    for (int a = 0; a < 2; a++)
        q[a] = swav_codes(m, g, a, scores[a], use_queue);

    /* prototypes in use: argmax of view 0's codes */
    int64_t hit = 0;
    char *seen = invar_arena_calloc(invar_graph_arena(g), (size_t)k);
    for (int64_t i = 0; i < b; i++) {
        int64_t best = 0;
        for (int64_t j = 1; j < k; j++)
            best = q[0][i * k + j] > q[0][i * k + best] ? j : best;
        hit += !seen[best];
        seen[best] = 1;
    }
    m->used = (double)hit / (double)k;

    /* target of view v: -(sum of the codes of the assignment views other than v) / norm */
    float norm = (float)(2 * b * (n_views - 1));
    struct invar_tensor *loss = NULL;
    for (int64_t v = 0; v < n_views; v++) {
        struct invar_tensor *t = invar_graph_zeros(g, 2, (int64_t[]){b, k});
        for (int a = 0; a < 2; a++)
            if (a != v)
                for (int64_t i = 0; i < b * k; i++)
                    t->data[i] -= q[a][i] / norm;
        struct invar_tensor *ls =
            invar_log_softmax(g, invar_scale(g, scores[v], (float)(1.0 / m->cfg.temperature), 0));
        struct invar_tensor *l = invar_sum(g, invar_mul(g, ls, t));
        loss = loss ? invar_add(g, loss, l) : l;
    }
    return loss;
}

static void swav_after_step(void *self, struct invar_graph *g, const struct invar_step_info *info)
{
    (void)g, (void)info;
    struct swav *m = self;
    invar_l2_normalize_rows(m->protos->data, m->protos->shape[0], m->protos->shape[1]);
    if (!m->queue)
        return;
    int64_t l = m->cfg.queue, d = m->queue->shape[2], b = m->z[0]->shape[0];
    /* Only the last L rows of a batch larger than the queue survive anyway. */
    int64_t first = b > l ? b - l : 0;
    for (int64_t i = first; i < b; i++) {
        for (int a = 0; a < 2; a++)
            memcpy(m->queue->data + (a * l + m->ptr) * d, m->z[a]->data + i * d,
                   (size_t)d * sizeof(float));
        m->ptr = (m->ptr + 1) % l;
    }
    m->fill = m->fill + (b - first) < l ? m->fill + (b - first) : l;
}

static void swav_metrics(void *self, invar_metric_fn emit, void *user)
{
    struct swav *m = self;
    emit(user, "swav/prototypes_used", m->used);
}

static enum invar_status swav_save(void *self, struct invar_state_io *io)
{
    struct swav *m = self;
    enum invar_status st = io->put(io, "swav.fill", &m->fill, sizeof m->fill);
    if (st == INVAR_OK)
        st = io->put(io, "swav.ptr", &m->ptr, sizeof m->ptr);
    return st;
}

static enum invar_status swav_load(void *self, struct invar_state_io *io)
{
    struct swav *m = self;
    enum invar_status st = io->get(io, "swav.fill", &m->fill, sizeof m->fill);
    if (st == INVAR_OK)
        st = io->get(io, "swav.ptr", &m->ptr, sizeof m->ptr);
    return st;
}

static void swav_destroy(void *self)
{
    free(self);
}

static const struct invar_objective_ops swav_ops = {
    .create = swav_create,
    .init_state = swav_init_state,
    .loss = swav_loss,
    .after_step = swav_after_step,
    .metrics = swav_metrics,
    .save = swav_save,
    .load = swav_load,
    .destroy = swav_destroy,
};

INVAR_PLUGIN_DEFINE(invar_objective, "swav", "1.0.0",
                    "SwAV: swapped prediction of Sinkhorn-balanced prototype codes between views",
                    struct swav_config, swav_params, swav_ops)
