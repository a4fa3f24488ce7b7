/* deepcluster — DeepCluster (Caron et al. 2018): cluster the features, learn to predict the
 * clusters, repeat.
 *
 * At the start of every epoch:
 *     F = f(X)  (N, D), the un-augmented training set under the online encoder (eval mode)
 *     F <- PCA-whiten(F) to pca_dim dims (when pca_dim > 0), then L2-normalise the rows
 *     y = k-means(F, k)  (N): the pseudo-labels, k-means++ seeded from (seed, epoch)
 *     the classifier head W (k, D), b (k) is re-initialised: W ~ N(0, head_std^2), b = 0
 * and every step minimises the cross-entropy of the head on the online features of each view
 * against the pseudo-labels:
 *     loss = -1/(B V) sum_v sum_i w[y_i] log softmax(W f(x_v,i) + b)[y_i]
 * with w[c] = N / (k' n_c) (n_c: cluster size, k': non-empty clusters), so that every cluster
 * weighs the same in expectation: DeepCluster samples images uniformly over pseudo-labels, and
 * re-weighting the loss is the equivalent that needs nothing from the loader (reweight: false
 * gives the plain mean).
 *
 * With `classifier: centroids` (DeepCluster-v2, Caron et al. 2020) there is no trained head:
 * the logits are cosines to this epoch's k-means centroids at a temperature T,
 *     loss = -1/(B V) sum_v sum_i w[y_i] log softmax(C^ n(f(x_v,i)) / T)[y_i]
 * (n: L2 normalisation, C^ (k, D): the centroids, L2-normalised, a buffer that no gradient
 * reaches), so every step pulls the features towards their own cluster's centroid on the sphere
 * from the first step of the epoch, where a fresh linear head must first be learnt. The
 * centroids are those of the features the logits read, so the PCA-whitening (which
 * clusters in another space) is refused with it.
 *
 * The head's re-initialisation writes its weights only: the optimizer's state for it (momentum)
 * lives in the trainer and carries over, as in the authors' code, which re-creates the last
 * layer but keeps one optimizer for the trunk (their head has its own optimizer; ours decays
 * momentum within a few steps).
 *
 * Metrics: deepcluster/nmi_prev, the NMI between this epoch's assignment and the previous one
 * (from the second epoch on): how much the clusters still move; deepcluster/inertia; and
 * deepcluster/largest_cluster, the fraction of the set in the largest cluster (1 = collapsed).
 * deepcluster/nmi_labels, the NMI between this epoch's assignment and the true labels (the
 * paper's measure of how much the clusters say about the classes), through ctx->label_nmi:
 * the objective never sees the labels themselves, and without them (label_nmi NULL) the metric
 * is not logged. `invar eval RUN --cluster` scores a trained encoder's test features alike.
 *
 * The pseudo-labels and the weights are buffers, so a resumed run has them; the previous
 * assignment needed for nmi_prev is the labels buffer itself, read before it is overwritten.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <invar/kmeans.h>
#include <invar/plugin.h>

enum { CLASSIFIER_LINEAR, CLASSIFIER_CENTROIDS };

struct deepcluster_config {
    int64_t k;
    int64_t pca_dim;
    int64_t kmeans_iters;
    int reweight;
    double head_std;
    int classifier;
    double temperature;
};

static const struct invar_param_spec deepcluster_params[] = {
    INVAR_PARAM_INT(struct deepcluster_config, k, "100", 2, 1 << 20,
                    "clusters (pseudo-classes); 100 for Fashion-MNIST's 10 classes, 10x over"),
    INVAR_PARAM_INT(struct deepcluster_config, pca_dim, "0", 0, 4096,
                    "PCA-whiten the features to this many dims before k-means; 0 = no PCA"),
    INVAR_PARAM_INT(struct deepcluster_config, kmeans_iters, "20", 0, 1000,
                    "Lloyd iterations per epoch (fewer when converged)"),
    INVAR_PARAM_BOOL(struct deepcluster_config, reweight, "true",
                     "weight the loss by inverse cluster size (uniform over pseudo-labels)"),
    INVAR_PARAM_FLOAT(struct deepcluster_config, head_std, "0.01", 0, 10,
                      "std of the classifier head's weights at each re-initialisation"),
    INVAR_PARAM_ENUM(struct deepcluster_config, classifier, "linear", "linear|centroids",
                     "a linear head re-initialised each epoch, or cosines to the centroids / T "
                     "(DeepCluster-v2)"),
    INVAR_PARAM_FLOAT(struct deepcluster_config, temperature, "0.1", 1e-4, 100,
                      "T of the centroids classifier"),
    INVAR_PARAM_END,
};

struct deepcluster {
    struct deepcluster_config cfg;
    struct invar_objective_ctx *ctx;
    struct invar_tensor *head_w;  /* (k, D); linear classifier */
    struct invar_tensor *head_b;  /* (k); linear classifier */
    struct invar_tensor *cent;    /* (k, D) buffer: L2-normalised centroids; centroids classifier */
    struct invar_tensor *labels;  /* (N) buffer: pseudo-labels as floats, -1 before the first */
    struct invar_tensor *weights; /* (k) buffer: loss weight of each cluster */
    float *feats;                 /* (N, D) scratch for clustering */
    float *white;                 /* (N, pca_dim) scratch, when pca_dim > 0 */
    float *centroids;             /* (k, dim) */
    int32_t *assign, *prev;       /* (N) */
    double nmi_prev, nmi_labels, inertia, largest;
};

static void deepcluster_destroy(void *self)
{
    struct deepcluster *m = self;
    if (!m)
        return;
    free(m->feats), free(m->white), free(m->centroids), free(m->assign), free(m->prev);
    free(m);
}

static enum invar_status deepcluster_create(const void *config, struct invar_objective_ctx *ctx,
                                            void **self, struct invar_error *err)
{
    struct deepcluster *m = calloc(1, sizeof *m);
    if (!m)
        return invar_error_set(err, INVAR_ERR_NOMEM, "deepcluster: out of memory");
    memcpy(&m->cfg, config, sizeof m->cfg);
    m->ctx = ctx;
    int64_t n = ctx->dataset_size, d = ctx->feature_dim, k = m->cfg.k;
    if (k > n) {
        deepcluster_destroy(m);
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "deepcluster: k (%lld) is larger than the dataset (%lld)",
                               (long long)k, (long long)n);
    }
    if (m->cfg.classifier == CLASSIFIER_CENTROIDS && m->cfg.pca_dim > 0) {
        invar_error_set(err, INVAR_ERR_CONFIG,
                        "deepcluster: classifier centroids needs pca_dim 0 (the centroids must "
                        "live where the features do), not %lld",
                        (long long)m->cfg.pca_dim);
        deepcluster_destroy(m);
        return INVAR_ERR_CONFIG;
    }
    if (m->cfg.pca_dim > d) {
        invar_error_set(err, INVAR_ERR_CONFIG,
                        "deepcluster: pca_dim (%lld) exceeds the feature size (%lld)",
                        (long long)m->cfg.pca_dim, (long long)d);
        deepcluster_destroy(m);
        return INVAR_ERR_CONFIG;
    }
    int64_t dim = m->cfg.pca_dim > 0 ? m->cfg.pca_dim : d;
    m->feats = malloc((size_t)(n * d) * sizeof *m->feats);
    m->white = m->cfg.pca_dim > 0 ? malloc((size_t)(n * dim) * sizeof *m->white) : NULL;
    m->centroids = malloc((size_t)(k * dim) * sizeof *m->centroids);
    m->assign = malloc((size_t)n * sizeof *m->assign);
    m->prev = malloc((size_t)n * sizeof *m->prev);
    if (!m->feats || (m->cfg.pca_dim > 0 && !m->white) || !m->centroids || !m->assign || !m->prev) {
        deepcluster_destroy(m);
        return invar_error_set(err, INVAR_ERR_NOMEM, "deepcluster: out of memory");
    }
    if (m->cfg.classifier == CLASSIFIER_CENTROIDS) {
        m->cent = invar_params_add(ctx->params, "deepcluster.centroids", 2, (int64_t[]){k, d},
                                   invar_init_zeros(), INVAR_P_BUFFER);
    } else {
        m->head_w = invar_params_add(ctx->params, "deepcluster.head.w", 2, (int64_t[]){k, d},
                                     invar_init_normal(0, m->cfg.head_std), 0);
        m->head_b = invar_params_add(ctx->params, "deepcluster.head.b", 1, (int64_t[]){k},
                                     invar_init_zeros(), INVAR_P_NO_DECAY);
    }
    m->labels = invar_params_add(ctx->params, "deepcluster.labels", 1, (int64_t[]){n},
                                 invar_init_const(-1), INVAR_P_BUFFER);
    m->weights = invar_params_add(ctx->params, "deepcluster.weights", 1, (int64_t[]){k},
                                  invar_init_const(1), INVAR_P_BUFFER);
    m->nmi_prev = m->nmi_labels = NAN;
    *self = m;
    return INVAR_OK;
}


static enum invar_status deepcluster_epoch_begin(void *self, int64_t epoch, struct invar_error *err)
{
    struct deepcluster *m = self;
    struct invar_objective_ctx *ctx = m->ctx;
    int64_t n = ctx->dataset_size, d = ctx->feature_dim, k = m->cfg.k;
    enum invar_status st = ctx->embed_train(ctx, ctx->online, m->feats, err);
    if (st != INVAR_OK)
        return st;
    float *x = m->feats;
    int64_t dim = d;
    if (m->cfg.pca_dim > 0) {
        st = invar_pca_whiten(m->feats, n, d, m->cfg.pca_dim, 1e-5, m->white, err);
        if (st != INVAR_OK)
            return st;
        x = m->white;
        dim = m->cfg.pca_dim;
    }
    invar_l2_normalize_rows(x, n, dim);
    uint64_t seed = invar_rng_stream(ctx->seed, (uint64_t)epoch, 0xdc, 0);
    st = invar_kmeans(x, n, dim, k, m->cfg.kmeans_iters, seed, m->centroids, m->assign, &m->inertia,
                      err);
    if (st != INVAR_OK)
        return st;

    float *labels = m->labels->data, *w = m->weights->data;
    m->nmi_prev = m->nmi_labels = NAN;
    if (ctx->label_nmi) {
        st = ctx->label_nmi(ctx, m->assign, &m->nmi_labels, err);
        if (st != INVAR_OK)
            return st;
    }
    if (labels[0] >= 0) {
        for (int64_t i = 0; i < n; i++)
            m->prev[i] = (int32_t)labels[i];
        st = invar_nmi(m->assign, m->prev, n, &m->nmi_prev, err);
        if (st != INVAR_OK)
            return st;
    }
    for (int64_t c = 0; c < k; c++)
        w[c] = 0;
    for (int64_t i = 0; i < n; i++) {
        labels[i] = (float)m->assign[i];
        w[m->assign[i]] += 1; /* sizes for now */
    }
    int64_t used = 0;
    double largest = 0;
    for (int64_t c = 0; c < k; c++) {
        used += w[c] > 0;
        largest = fmax(largest, w[c]);
    }
    m->largest = largest / (double)n;
    for (int64_t c = 0; c < k; c++)
        w[c] = !m->cfg.reweight ? 1.0f
               : w[c] > 0       ? (float)((double)n / ((double)used * w[c]))
                                : 0.0f;

    if (m->cent) {
        /* k-means ran on the L2-normalised features (no PCA): its centroids, renormalised,
         * are the classifier. */
        memcpy(m->cent->data, m->centroids, (size_t)(k * d) * sizeof(float));
        invar_l2_normalize_rows(m->cent->data, k, d);
        return INVAR_OK;
    }
    /* A fresh head: last epoch's classes mean nothing for this epoch's clusters. */
    struct invar_rng r;
    invar_rng_init(&r, ctx->seed, invar_rng_stream((uint64_t)epoch, 0xdc, 1, 0));
    for (int64_t i = 0; i < m->head_w->numel; i++)
        m->head_w->data[i] = (float)m->cfg.head_std * invar_rng_normal(&r);
    memset(m->head_b->data, 0, (size_t)m->head_b->numel * sizeof(float));
    return INVAR_OK;
}

static struct invar_tensor *deepcluster_loss(void *self, struct invar_graph *g,
                                             struct invar_tensor **views, int64_t n_views,
                                             const int64_t *indices,
                                             const struct invar_step_info *info)
{
    (void)info;
    struct deepcluster *m = self;
    int64_t b = views[0]->shape[0], k = m->cfg.k;
    /* mask (B, k): -w[y_i] / (B V) at (i, y_i), so sum(mask * log_softmax) is the loss */
    struct invar_tensor *mask = invar_graph_zeros(g, 2, (int64_t[]){b, k});
    float scale = 1.0f / (float)(b * n_views);
    for (int64_t i = 0; i < b; i++) {
        float y = m->labels->data[indices[i]];
        INVAR_ASSERT(y >= 0); /* epoch_begin assigns every sample before the first step */
        int64_t c = (int64_t)y;
        mask->data[i * k + c] = -m->weights->data[c] * scale;
    }
    struct invar_tensor *loss = NULL;
    for (int64_t v = 0; v < n_views; v++) {
        struct invar_tensor *f = invar_encoder_forward(m->ctx->online, g, views[v]); /* (B, D) */
        struct invar_tensor *logits; /* (B, k) */
        if (m->cent) {
            struct invar_tensor *z = invar_l2_normalize(g, f, 1e-12f);
            struct invar_tensor *cos = invar_linear(g, z, m->cent, NULL);
            logits = invar_scale(g, cos, (float)(1.0 / m->cfg.temperature), 0);
        } else {
            logits = invar_linear(g, f, m->head_w, m->head_b);
        }
        struct invar_tensor *l = invar_sum(g, invar_mul(g, invar_log_softmax(g, logits), mask));
        loss = loss ? invar_add(g, loss, l) : l;
    }
    return loss;
}

static void deepcluster_metrics(void *self, invar_metric_fn emit, void *user)
{
    struct deepcluster *m = self;
    if (!isnan(m->nmi_prev))
        emit(user, "deepcluster/nmi_prev", m->nmi_prev);
    if (!isnan(m->nmi_labels))
        emit(user, "deepcluster/nmi_labels", m->nmi_labels);
    emit(user, "deepcluster/inertia", m->inertia);
    emit(user, "deepcluster/largest_cluster", m->largest);
}

static const struct invar_objective_ops deepcluster_ops = {
    .create = deepcluster_create,
    .epoch_begin = deepcluster_epoch_begin,
    .loss = deepcluster_loss,
    .metrics = deepcluster_metrics,
    .destroy = deepcluster_destroy,
};

INVAR_PLUGIN_DEFINE(invar_objective, "deepcluster", "1.0.0",
                    "DeepCluster: k-means pseudo-labels each epoch, a re-initialised classifier "
                    "trained on them (or the centroids as one: DeepCluster-v2)",
                    struct deepcluster_config, deepcluster_params, deepcluster_ops)
