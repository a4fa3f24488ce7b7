/* instdisc — Instance Discrimination (Wu et al. 2018): every image is its own class.
 *
 * v = normalize(f(x)) (B, D). A memory bank (N, D) holds one embedding per training image.
 *  - nonparametric: P(i|v) = exp(f_i.v/T) / sum_j exp(f_j.v/T), loss = -log P(i|v) over the
 *    whole bank (one (B, D) x (D, N) GEMM).
 *  - nce: P(i|v) = exp(f_i.v/T) / Z, Z estimated once from the first batch as
 *    Z = N * mean(exp(s/T)) over that batch's positive and noise scores (as the authors' code
 *    does) and then fixed; with K noise samples drawn uniformly (Pn = 1/N) and
 *    h(i, v) = P(i|v) / (P(i|v) + K Pn), loss = -log h(positive) - sum_noise log(1 - h).
 *    The K noise indices are drawn once per batch and shared by its rows, so the noise scores
 *    are one (B, D) x (D, K) GEMM instead of B*K scattered dot products.
 *  - parametric: a trained N-way linear classifier, softmax(W v / T).
 * After each step the bank rows of the batch become normalize(mu f_i + (1 - mu) v_i).
 *
 * Proximal regularisation (the paper's section 3.4, `proximal: lambda`, 0 = off by default):
 * every variant adds lambda * mean_i |v_i - f_i|^2, the distance of this step's embedding from
 * the image's bank row (its representation at the previous visit), which damps the oscillation
 * of a class that is seen once an epoch; the term vanishes as training converges.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <invar/plugin.h>

enum { SOFTMAX_NONPARAMETRIC, SOFTMAX_NCE, SOFTMAX_PARAMETRIC };

struct instdisc_config {
    int softmax;
    double temperature;
    double bank_momentum;
    int64_t nce_k;
    double nce_z;
    double proximal;
};

static const struct invar_param_spec instdisc_params[] = {
    INVAR_PARAM_ENUM(struct instdisc_config, softmax, "nonparametric",
                     "nonparametric|nce|parametric",
                     "softmax over the memory bank, its NCE approximation, or a trained classifier"),
    INVAR_PARAM_FLOAT(struct instdisc_config, temperature, "0.07", 1e-4, 100, "T"),
    INVAR_PARAM_FLOAT(struct instdisc_config, bank_momentum, "0.5", 0, 1,
                      "mu: weight of the old bank entry in the update"),
    INVAR_PARAM_INT(struct instdisc_config, nce_k, "4096", 1, 1 << 24,
                    "m: noise samples per batch for nce"),
    INVAR_PARAM_FLOAT(struct instdisc_config, nce_z, "0", 0, 1e30,
                      "Z: NCE normaliser; 0 estimates it from the first batch"),
    INVAR_PARAM_FLOAT(struct instdisc_config, proximal, "0", 0, 1e6,
                      "lambda: weight of the proximal term |v_i - bank_i|^2 (0: off)"),
    INVAR_PARAM_END,
};

struct instdisc {
    struct instdisc_config cfg;
    struct invar_objective_ctx *ctx;
    struct invar_tensor *bank;    /* (N, D) buffer */
    struct invar_tensor *weight;  /* (N, D) parametric classifier */
    double z;                     /* NCE normaliser; 0 until estimated */
    const struct invar_tensor *v; /* this step's embeddings (B, D), in the graph arena */
    const int64_t *indices;       /* (B) */
    struct invar_rng rng;
    double prox;                  /* this step's mean |v_i - bank_i|^2 */
};

static enum invar_status instdisc_create(const void *config, struct invar_objective_ctx *ctx,
                                         void **self, struct invar_error *err)
{
    if (ctx->n_views != 1)
        return invar_error_set(err, INVAR_ERR_CONFIG,
                               "instdisc: reads one view per image (the bank holds the other "
                               "side), the experiment has %lld: set train.views: 1",
                               (long long)ctx->n_views);
    struct instdisc *m = calloc(1, sizeof *m);
    if (!m)
        return invar_error_set(err, INVAR_ERR_NOMEM, "instdisc: out of memory");
    memcpy(&m->cfg, config, sizeof m->cfg);
    m->ctx = ctx;
    int64_t n = ctx->dataset_size, d = ctx->feature_dim;
    if (m->cfg.softmax == SOFTMAX_NCE && m->cfg.nce_k >= n) {
        invar_error_set(err, INVAR_ERR_CONFIG,
                        "instdisc: nce_k (%lld) must be smaller than the dataset (%lld)",
                        (long long)m->cfg.nce_k, (long long)n);
        free(m);
        return INVAR_ERR_CONFIG;
    }
    /* U(-s, s), s = 1/sqrt(D/3): the initialisation of the authors' code (unit variance
     * per row in expectation). */
    double s = 1.0 / sqrt((double)d / 3.0);
    m->bank = invar_params_add(ctx->params, "instdisc.bank", 2, (int64_t[]){n, d},
                               invar_init_uniform(-s, s), INVAR_P_BUFFER);
    if (m->cfg.softmax == SOFTMAX_PARAMETRIC)
        m->weight = invar_params_add(ctx->params, "instdisc.classifier", 2, (int64_t[]){n, d},
                                     invar_init_kaiming_uniform((double)d), 0);
    m->z = m->cfg.nce_z;
    invar_rng_init(&m->rng, ctx->seed, invar_rng_stream(0x1d, 0, 0, 0));
    *self = m;
    return INVAR_OK;
}

/* ---- the NCE loss as one fused op ------------------------------------------------------- */

struct nce_ctx {
    double inv_t;
    float *rpos, *rneg; /* (B), (B, K): c / (P + c) and P / (P + c), saved by the forward */
};

/* P = exp(s/T) / Z;  -log h = log(1 + c/P);  -log(1 - h) = log(1 + P/c);
 * d/ds: -(1/T) c/(P + c) for the data sample, (1/T) P/(P + c) for a noise sample. */
static void nce_backward(struct invar_tensor *out, struct invar_tensor **in, int n_in, void *vctx)
{
    (void)n_in;
    const struct nce_ctx *c = vctx;
    struct invar_tensor *spos = in[0], *sneg = in[1]; /* (B), (B, K) */
    int64_t b = spos->numel, k = sneg->shape[1];
    const float gs = (float)(out->grad[0] / (double)b * c->inv_t);
    if (spos->grad)
        for (int64_t i = 0; i < b; i++)
            spos->grad[i] -= gs * c->rpos[i];
    if (sneg->grad)
        for (int64_t i = 0; i < b * k; i++)
            sneg->grad[i] += gs * c->rneg[i];
}

static struct invar_tensor *nce_loss(struct invar_graph *g, struct invar_tensor *spos,
                                     struct invar_tensor *sneg, double inv_t, double z,
                                     double c)
{
    int64_t b = spos->numel, k = sneg->shape[1];
    struct invar_arena *a = invar_graph_arena(g);
    struct nce_ctx *ctx = invar_arena_alloc(a, sizeof *ctx);
    ctx->inv_t = inv_t;
    ctx->rpos = invar_arena_alloc(a, (size_t)b * sizeof(float));
    ctx->rneg = invar_arena_alloc(a, (size_t)(b * k) * sizeof(float));
    const double lz = log(z);
    double total = 0;
    for (int64_t i = 0; i < b; i++) {
        const double p = exp(spos->data[i] * inv_t - lz);
        total += log1p(c / p);
        ctx->rpos[i] = (float)(c / (p + c));
    }
    for (int64_t i = 0; i < b * k; i++) {
        const double p = exp(sneg->data[i] * inv_t - lz);
        total += log1p(p / c);
        ctx->rneg[i] = (float)(p / (p + c));
    }
    struct invar_tensor *out = invar_graph_tensor(g, 1, (int64_t[]){1});
    out->data[0] = (float)(total / (double)b);
    struct invar_tensor *in[2] = {spos, sneg};
    return invar_custom_op(g, "nce_loss", out, in, 2, nce_backward, ctx);
}

static struct invar_tensor *instdisc_loss(void *self, struct invar_graph *g,
                                          struct invar_tensor **views, int64_t n_views,
                                          const int64_t *indices,
                                          const struct invar_step_info *info)
{
    (void)n_views, (void)info;
    struct instdisc *m = self;
    struct invar_tensor *v =
        invar_l2_normalize(g, invar_encoder_forward(m->ctx->online, g, views[0]), 1e-12f);
    int64_t b = v->shape[0], n = m->bank->shape[0];
    m->v = v;
    m->indices = indices;
    double inv_t = 1.0 / m->cfg.temperature;
    struct invar_arena *a = invar_graph_arena(g);
    int32_t *labels = invar_arena_alloc(a, (size_t)b * sizeof *labels);
    for (int64_t i = 0; i < b; i++)
        labels[i] = (int32_t)indices[i];

    struct invar_tensor *loss, *fpos = NULL; /* fpos: the batch's bank rows (B, D) */
    switch (m->cfg.softmax) {
    case SOFTMAX_NONPARAMETRIC:
    case SOFTMAX_PARAMETRIC: {
        /* v / T (B, D) rather than logits / T: the (B, N) logits come out of the GEMM already
         * scaled, sparing a pass, a tensor and a gradient buffer of B x N floats each way */
        struct invar_tensor *vt = invar_scale(g, v, (float)inv_t, 0);
        struct invar_tensor *w = m->cfg.softmax == SOFTMAX_PARAMETRIC ? m->weight : m->bank;
        struct invar_tensor *logits = invar_matmul(g, vt, w, 0, 1); /* (B, N) */
        loss = invar_cross_entropy(g, logits, labels);
        break;
    }
    default: { /* SOFTMAX_NCE */
        int64_t k = m->cfg.nce_k;
        int64_t *noise = invar_arena_alloc(a, (size_t)k * sizeof *noise);
        for (int64_t j = 0; j < k; j++)
            noise[j] = invar_rng_below(&m->rng, (uint32_t)n);
        fpos = invar_gather_rows(g, m->bank, indices, b);                        /* (B, D) */
        struct invar_tensor *fneg = invar_gather_rows(g, m->bank, noise, k);     /* (K, D) */
        struct invar_tensor *spos = invar_sum_rows(g, invar_mul(g, v, fpos));    /* (B) */
        struct invar_tensor *sneg = invar_matmul(g, v, fneg, 0, 1);              /* (B, K) */
        if (m->z == 0) {
            double s = 0;
            for (int64_t i = 0; i < b; i++)
                s += exp(spos->data[i] * inv_t);
            for (int64_t i = 0; i < b * k; i++)
                s += exp(sneg->data[i] * inv_t);
            m->z = s / (double)(b * (k + 1)) * (double)n;
        }
        loss = nce_loss(g, spos, sneg, inv_t, m->z, (double)k / (double)n);
        break;
    }
    }
    if (m->cfg.proximal > 0) {
        /* lambda * mean over rows of |v_i - f_i|^2 = lambda * D * (mean over elements) */
        if (!fpos)
            fpos = invar_gather_rows(g, m->bank, indices, b);
        struct invar_tensor *dist = invar_mse(g, v, fpos);
        m->prox = dist->data[0] * (double)v->shape[1];
        loss = invar_add(g, loss, invar_scale(g, dist, (float)(m->cfg.proximal * v->shape[1]), 0));
    }
    return loss;
}

static void instdisc_after_step(void *self, struct invar_graph *g,
                                const struct invar_step_info *info)
{
    (void)g, (void)info;
    struct instdisc *m = self;
    int64_t b = m->v->shape[0], d = m->v->shape[1];
    float mu = (float)m->cfg.bank_momentum;
    for (int64_t i = 0; i < b; i++) {
        float *row = m->bank->data + m->indices[i] * d;
        const float *v = m->v->data + i * d;
        double ss = 0;
        for (int64_t j = 0; j < d; j++) {
            row[j] = mu * row[j] + (1 - mu) * v[j];
            ss += (double)row[j] * row[j];
        }
        float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
        for (int64_t j = 0; j < d; j++)
            row[j] *= inv;
    }
}

static void instdisc_metrics(void *self, invar_metric_fn emit, void *user)
{
    struct instdisc *m = self;
    if (m->cfg.softmax == SOFTMAX_NCE)
        emit(user, "instdisc/nce_z", m->z);
    if (m->cfg.proximal > 0)
        emit(user, "instdisc/proximal", m->prox);
}

static enum invar_status instdisc_save(void *self, struct invar_state_io *io)
{
    struct instdisc *m = self;
    enum invar_status st = io->put(io, "instdisc.z", &m->z, sizeof m->z);
    if (st == INVAR_OK)
        st = io->put(io, "instdisc.rng", &m->rng, sizeof m->rng);
    return st;
}

static enum invar_status instdisc_load(void *self, struct invar_state_io *io)
{
    struct instdisc *m = self;
    enum invar_status st = io->get(io, "instdisc.z", &m->z, sizeof m->z);
    if (st == INVAR_OK)
        st = io->get(io, "instdisc.rng", &m->rng, sizeof m->rng);
    return st;
}

static void instdisc_destroy(void *self) { free(self); }

static const struct invar_objective_ops instdisc_ops = {
    .create = instdisc_create,
    .loss = instdisc_loss,
    .after_step = instdisc_after_step,
    .metrics = instdisc_metrics,
    .save = instdisc_save,
    .load = instdisc_load,
    .destroy = instdisc_destroy,
};

INVAR_PLUGIN_DEFINE(invar_objective, "instdisc", "1.0.0",
                    "Instance Discrimination: memory bank with non-parametric softmax, NCE or "
                    "a parametric classifier",
                    struct instdisc_config, instdisc_params, instdisc_ops)
