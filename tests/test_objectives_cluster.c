/* objectives_cluster: Sinkhorn, swav and deepcluster against independent computations,
 * gradient checks through both losses, deepcluster's clustering of a separable toy set. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "invar/kmeans.h"
#include "invar/train.h"
#include "plugin_harness.h"

/* ---- a hand-built objective context over an in-memory dataset --------------------------- */

#define MAX_CLONES 4

struct fixture {
    struct ph_plugin enc_plugin, obj_plugin;
    struct invar_plugin_use enc_use;
    struct invar_encoder *online;
    struct invar_encoder *clones[MAX_CLONES];
    int n_clones;
    struct invar_objective_ctx ctx;
    void *obj;
    const struct invar_objective_ops *ops;
    const float *data; /* (N, 1, 1, IN) */
    const int32_t *truth; /* (N) labels for ctx->label_nmi, or NULL: none */
    int64_t n, in;
};

static enum invar_status fx_clone(struct invar_objective_ctx *ctx, struct invar_encoder **out,
                                  struct invar_error *err)
{
    struct fixture *f = ctx->framework;
    cr_assert(f->n_clones < MAX_CLONES);
    enum invar_status st = invar_encoder_create(out, &f->enc_use, (int64_t[]){1, 1, f->in}, 1, err);
    if (st != INVAR_OK)
        return st;
    invar_params_copy(invar_encoder_params(*out), invar_encoder_params(f->online));
    f->clones[f->n_clones++] = *out;
    return INVAR_OK;
}

static enum invar_status fx_embed(struct invar_objective_ctx *ctx, struct invar_encoder *e,
                                  float *out, struct invar_error *err)
{
    (void)err;
    struct fixture *f = ctx->framework;
    struct invar_graph *g = invar_graph_create(1 << 20);
    invar_graph_set_grad(g, 0);
    invar_graph_set_training(g, 0);
    struct invar_tensor *x = invar_graph_tensor(g, 4, (int64_t[]){f->n, 1, 1, f->in});
    memcpy(x->data, f->data, (size_t)(f->n * f->in) * sizeof(float));
    struct invar_tensor *y = invar_encoder_forward(e, g, x);
    memcpy(out, y->data, (size_t)y->numel * sizeof(float));
    invar_graph_destroy(g);
    return INVAR_OK;
}

static enum invar_status fx_label_nmi(struct invar_objective_ctx *ctx, const int32_t *assign,
                                      double *nmi, struct invar_error *err)
{
    struct fixture *f = ctx->framework;
    return invar_nmi(assign, f->truth, f->n, nmi, err);
}

/* An mlp encoder with no hidden layer: features = W x + b, W (dim, in). The objective's
 * parameters are set with ph_set on f->obj_plugin between fx_open and fx_create. */
static void fx_open(struct fixture *f, const char *objective, int64_t in, int64_t dim)
{
    memset(f, 0, sizeof *f);
    ph_open(&f->enc_plugin, "encoders", "mlp");
    ph_set(&f->enc_plugin, "depth", "0");
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)dim);
    ph_set(&f->enc_plugin, "dim", buf);
    f->enc_use = (struct invar_plugin_use){f->enc_plugin.desc, f->enc_plugin.config, 1};
    f->in = in;
    struct invar_error err = {0};
    cr_assert_eq(invar_encoder_create(&f->online, &f->enc_use, (int64_t[]){1, 1, in}, 3, &err),
                 INVAR_OK, "%s", err.msg);
    ph_open(&f->obj_plugin, "objectives", objective);
    f->ops = f->obj_plugin.desc->ops.objective;
}

static void fx_create(struct fixture *f, const float *data, int64_t n, int64_t batch,
                      int64_t n_views)
{
    f->data = data;
    f->n = n;
    f->ctx = (struct invar_objective_ctx){.dataset_size = n,
                                          .batch_size = batch,
                                          .n_views = n_views,
                                          .feature_dim = invar_encoder_dim(f->online),
                                          .steps_per_epoch = n / batch,
                                          .epochs = 3,
                                          .seed = 5,
                                          .online = f->online,
                                          .params = invar_params_create(),
                                          .encoder_clone = fx_clone,
                                          .embed_train = fx_embed,
                                          .framework = f,
                                          .label_nmi = f->truth ? fx_label_nmi : NULL};
    struct invar_error err = {0};
    cr_assert_eq(f->ops->create(f->obj_plugin.config, &f->ctx, &f->obj, &err), INVAR_OK, "%s",
                 err.msg);
    cr_assert_eq(invar_params_finalize(f->ctx.params, 9, &err), INVAR_OK, "%s", err.msg);
    if (f->ops->init_state)
        cr_assert_eq(f->ops->init_state(f->obj, &err), INVAR_OK, "%s", err.msg);
}

static void fx_close(struct fixture *f)
{
    if (f->obj)
        f->ops->destroy(f->obj);
    invar_params_destroy(f->ctx.params);
    for (int i = 0; i < f->n_clones; i++)
        invar_encoder_destroy(f->clones[i]);
    invar_encoder_destroy(f->online);
    ph_close(&f->obj_plugin);
    ph_close(&f->enc_plugin);
}

/* Features W x + b of one sample, computed here from the encoder's weights. */
static void fx_features(struct fixture *f, const float *x, double *out)
{
    struct invar_params *p = invar_encoder_params(f->online);
    const struct invar_tensor *w = invar_params_find(p, "out.w"),
                              *b = invar_params_find(p, "out.b");
    int64_t dim = w->shape[0];
    for (int64_t o = 0; o < dim; o++) {
        double s = b->data[o];
        for (int64_t i = 0; i < f->in; i++)
            s += (double)w->data[o * f->in + i] * x[i];
        out[o] = s;
    }
}

/* ---- Sinkhorn ---------------------------------------------------------------------------- */

Test(objectives_cluster, sinkhorn_marginals)
{
    enum { B = 24, K = 10 };
    float s[B * K], q[B * K];
    struct invar_rng r;
    invar_rng_init(&r, 4, 0);
    for (int i = 0; i < B * K; i++) /* cosine-like scores */
        s[i] = invar_rng_range(&r, -1, 1);
    struct invar_error err = {0};
    double prev_col_err = INFINITY;
    const int iters[] = {0, 1, 3, 10, 100};
    for (int t = 0; t < 5; t++) {
        cr_assert_eq(invar_sinkhorn(s, B, K, 0.05, iters[t], q, NULL, &err), INVAR_OK);
        double col_err = 0;
        for (int j = 0; j < K; j++) {
            double c = 0;
            for (int i = 0; i < B; i++)
                c += q[i * K + j] / B; /* Q = codes / B */
            col_err = fmax(col_err, fabs(c - 1.0 / K));
        }
        if (iters[t] > 0) {
            for (int i = 0; i < B; i++) { /* each sample's mass is exactly 1/B */
                double rs = 0;
                for (int j = 0; j < K; j++) {
                    cr_assert(q[i * K + j] >= 0);
                    rs += q[i * K + j] / B;
                }
                cr_assert_float_eq(rs, 1.0 / B, 1e-6, "iters %d row %d", iters[t], i);
            }
            cr_assert(col_err < prev_col_err, "iters %d: prototype marginals got worse", iters[t]);
        }
        /* With eps = 0.05 random cosines are sharp (exp(40) apart): 3 iterations, the paper's
         * setting, leave the prototype marginals a few percent off on this input, and the
         * iteration converges to them; the samples' marginals are exact after any iteration
         * because it ends with them. */
        if (iters[t] == 100)
            cr_assert(col_err < 1e-3, "iters %d: prototype marginal off by %g", iters[t], col_err);
        prev_col_err = col_err;
    }
    /* smooth scores (|s| <= 0.02, so exp(s / eps) within a factor 2.3): 3 iterations give the
     * 1e-3 marginals */
    for (int i = 0; i < B * K; i++)
        s[i] *= 0.02f;
    cr_assert_eq(invar_sinkhorn(s, B, K, 0.05, 3, q, NULL, &err), INVAR_OK);
    for (int j = 0; j < K; j++) {
        double c = 0;
        for (int i = 0; i < B; i++)
            c += q[i * K + j] / B;
        cr_assert_float_eq(c, 1.0 / K, 1e-3, "prototype %d: marginal %g", j, c);
    }
    /* SwAV's codes for a batch the prototypes already split evenly are near one-hot */
    float s2[4 * 2] = {1, -1, 1, -1, -1, 1, -1, 1}, q2[8];
    cr_assert_eq(invar_sinkhorn(s2, 4, 2, 0.05, 3, q2, NULL, &err), INVAR_OK);
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(q2[i * 2 + (i < 2 ? 0 : 1)], 1.0f, 1e-6f);
}

/* ---- swav -------------------------------------------------------------------------------- */

/* Scores (K) of one raw sample: normalize(W x + b) . prototype_p. */
static void ref_scores(struct fixture *f, const float *x, double *out)
{
    const struct invar_tensor *c = invar_params_find(f->ctx.params, "swav.prototypes");
    int64_t k = c->shape[0], d = c->shape[1];
    double z[16], nz = 0;
    fx_features(f, x, z);
    for (int64_t j = 0; j < d; j++)
        nz += z[j] * z[j];
    nz = sqrt(nz);
    for (int64_t p = 0; p < k; p++) {
        double dot = 0;
        for (int64_t j = 0; j < d; j++)
            dot += z[j] / nz * c->data[p * d + j];
        out[p] = dot;
    }
}

/* The SwAV loss computed independently, in the paper's orientation: Q = exp(S^T / eps)
 * (K, B + L) over the batch and the l queued samples queue[a] (raw inputs whose features the
 * queue holds), normalised, then rows (prototypes) to 1/K and columns (samples) to 1/(B + L),
 * times B + L; the batch's columns are the codes. */
static double swav_reference(struct fixture *f, const float *const *views, int n_views, int64_t b,
                             double t, double eps, int iters, const float *const *queue, int64_t l)
{
    const struct invar_tensor *c = invar_params_find(f->ctx.params, "swav.prototypes");
    int64_t k = c->shape[0], n = b + l;
    double *s = calloc((size_t)(n_views * b * k), sizeof *s); /* (V, B, K) */
    double *q = calloc((size_t)(2 * k * n), sizeof *q);       /* (2, K, B + L) */
    double *row = calloc((size_t)k, sizeof *row);
    for (int v = 0; v < n_views; v++)
        for (int64_t i = 0; i < b; i++)
            ref_scores(f, views[v] + i * f->in, s + (v * b + i) * k);
    for (int a = 0; a < 2; a++) {
        double *Q = q + a * k * n, tot = 0;
        for (int64_t i = 0; i < n; i++) {
            if (i < b)
                memcpy(row, s + (a * b + i) * k, (size_t)k * sizeof *row);
            else
                ref_scores(f, queue[a] + (i - b) * f->in, row);
            for (int64_t p = 0; p < k; p++)
                tot += Q[p * n + i] = exp(row[p] / eps);
        }
        for (int64_t x = 0; x < k * n; x++)
            Q[x] /= tot;
        for (int it = 0; it < iters; it++) {
            for (int64_t p = 0; p < k; p++) {
                double rs = 0;
                for (int64_t i = 0; i < n; i++)
                    rs += Q[p * n + i];
                for (int64_t i = 0; i < n; i++)
                    Q[p * n + i] /= rs * (double)k;
            }
            for (int64_t i = 0; i < n; i++) {
                double cs = 0;
                for (int64_t p = 0; p < k; p++)
                    cs += Q[p * n + i];
                for (int64_t p = 0; p < k; p++)
                    Q[p * n + i] /= cs * (double)n;
            }
        }
        for (int64_t x = 0; x < k * n; x++)
            Q[x] *= (double)n;
    }
    double loss = 0;
    for (int a = 0; a < 2; a++) {
        double sub = 0;
        for (int v = 0; v < n_views; v++) {
            if (v == a)
                continue;
            for (int64_t i = 0; i < b; i++) {
                double m = -INFINITY, lse = 0;
                for (int64_t p = 0; p < k; p++)
                    m = fmax(m, s[(v * b + i) * k + p] / t);
                for (int64_t p = 0; p < k; p++)
                    lse += exp(s[(v * b + i) * k + p] / t - m);
                lse = m + log(lse);
                for (int64_t p = 0; p < k; p++)
                    sub -= q[(a * k + p) * n + i] * (s[(v * b + i) * k + p] / t - lse);
            }
        }
        loss += sub / (double)b / (double)(n_views - 1);
    }
    free(s), free(q), free(row);
    return loss / 2;
}

static struct invar_tensor *view_tensor(float *data, int64_t b, int64_t in)
{
    struct invar_tensor *t = calloc(1, sizeof *t);
    invar_tensor_wrap(t, data, 4, (int64_t[]){b, 1, 1, in});
    return t;
}

Test(objectives_cluster, swav_loss_matches_independent_computation)
{
    enum { B = 5, IN = 6, DIM = 4 };
    for (int n_views = 2; n_views <= 3; n_views++) {
        struct fixture f;
        fx_open(&f, "swav", IN, DIM);
        ph_set(&f.obj_plugin, "prototypes", "7");
        fx_create(&f, NULL, 100, B, n_views);
        float data[3][B * IN];
        struct invar_rng r;
        invar_rng_init(&r, 21, 0);
        for (int v = 0; v < n_views; v++)
            for (int i = 0; i < B * IN; i++)
                data[v][i] = invar_rng_range(&r, -1, 1);
        struct invar_tensor *views[3];
        for (int v = 0; v < n_views; v++)
            views[v] = view_tensor(data[v], B, IN);
        struct invar_graph *g = invar_graph_create(1 << 20);
        int64_t idx[B] = {0, 1, 2, 3, 4};
        struct invar_step_info info = {0, 0, 0, 10, 0.1};
        struct invar_tensor *loss = f.ops->loss(f.obj, g, views, n_views, idx, &info);
        const float *vp[3] = {data[0], data[1], data[2]};
        double want = swav_reference(&f, vp, n_views, B, 0.1, 0.05, 3, NULL, 0);
        cr_assert_float_eq(loss->data[0], want, 1e-5 * fmax(1, fabs(want)),
                           "%d views: loss %.7g, reference %.7g", n_views, loss->data[0], want);
        /* the prototypes are unit vectors after init_state */
        const struct invar_tensor *c = invar_params_find(f.ctx.params, "swav.prototypes");
        for (int64_t p = 0; p < c->shape[0]; p++) {
            double ss = 0;
            for (int64_t j = 0; j < DIM; j++)
                ss += (double)c->data[p * DIM + j] * c->data[p * DIM + j];
            cr_assert_float_eq(ss, 1.0, 1e-5);
        }
        invar_graph_destroy(g);
        for (int v = 0; v < n_views; v++)
            free(views[v]);
        fx_close(&f);
    }
}

struct loss_call {
    struct fixture *f;
    int64_t n_views;
    const int64_t *idx;
    struct invar_step_info info;
};

static struct invar_tensor *loss_fn(struct invar_graph *g, struct invar_tensor **in, void *vctx)
{
    struct loss_call *c = vctx;
    return c->f->ops->loss(c->f->obj, g, in, c->n_views, c->idx, &c->info);
}

Test(objectives_cluster, swav_gradient_through_a_predicting_view)
{
    /* Codes come from views 0 and 1 and are constants of the loss (no gradient through
     * Sinkhorn), so finite differences agree with backward for a view that only predicts:
     * the third (multi-crop) view. */
    enum { B = 4, IN = 5, DIM = 3 };
    struct fixture f;
    fx_open(&f, "swav", IN, DIM);
    ph_set(&f.obj_plugin, "prototypes", "6");
    fx_create(&f, NULL, 100, B, 3);
    struct invar_tensor *v[3];
    for (int i = 0; i < 3; i++)
        v[i] = gc_tensor(4, (int64_t[]){B, 1, 1, IN}, i == 2);
    int64_t idx[B] = {0, 1, 2, 3};
    struct loss_call c = {&f, 3, idx, {0, 0, 1000, 2000, 0.1}};
    gc_check(loss_fn, v, 3, &c, 1e-3, 2e-2);
    for (int i = 0; i < 3; i++)
        gc_free(v[i]);
    fx_close(&f);
}

Test(objectives_cluster, swav_prototypes_frozen_then_trained)
{
    enum { B = 4, IN = 5, DIM = 3 };
    struct fixture f;
    fx_open(&f, "swav", IN, DIM);
    ph_set(&f.obj_plugin, "prototypes", "6");
    ph_set(&f.obj_plugin, "freeze_iters", "10");
    fx_create(&f, NULL, 100, B, 2);
    struct invar_tensor *v[2];
    for (int i = 0; i < 2; i++)
        v[i] = gc_tensor(4, (int64_t[]){B, 1, 1, IN}, 0);
    struct invar_tensor *c = invar_params_find(f.ctx.params, "swav.prototypes");
    int64_t idx[B] = {0, 1, 2, 3};
    struct invar_graph *g = invar_graph_create(1 << 20);
    for (int64_t step = 9; step <= 10; step++) {
        invar_graph_reset(g);
        struct invar_step_info info = {0, step, step, 100, 0.1};
        invar_params_zero_grad(f.ctx.params);
        invar_graph_backward(g, f.ops->loss(f.obj, g, v, 2, idx, &info));
        double gn = 0;
        for (int64_t i = 0; i < c->numel; i++)
            gn += fabs(c->grad[i]);
        if (step < 10)
            cr_assert_eq(gn, 0.0, "prototypes got a gradient at step %lld", (long long)step);
        else
            cr_assert(gn > 1e-6, "prototypes got no gradient after the freeze");
    }
    /* after_step puts a scaled prototype back on the sphere (weight decay is undone) */
    for (int64_t i = 0; i < c->numel; i++)
        c->data[i] *= 0.5f;
    f.ops->after_step(f.obj, g, &(struct invar_step_info){0, 10, 10, 100, 0.1});
    for (int64_t p = 0; p < c->shape[0]; p++) {
        double ss = 0;
        for (int64_t j = 0; j < DIM; j++)
            ss += (double)c->data[p * DIM + j] * c->data[p * DIM + j];
        cr_assert_float_eq(ss, 1.0, 1e-5);
    }
    invar_graph_destroy(g);
    gc_free(v[0]), gc_free(v[1]);
    fx_close(&f);
}

Test(objectives_cluster, swav_queue_fills_and_joins_sinkhorn)
{
    /* queue 8 with batches of 4: full after two steps, then the codes are computed over
     * 12 rows, which changes them (and so the loss) for the same batch. */
    enum { B = 4, IN = 5, DIM = 3 };
    struct fixture f;
    fx_open(&f, "swav", IN, DIM);
    ph_set(&f.obj_plugin, "prototypes", "6");
    ph_set(&f.obj_plugin, "queue", "8");
    fx_create(&f, NULL, 100, B, 2);
    struct invar_tensor *v[2];
    for (int i = 0; i < 2; i++)
        v[i] = gc_tensor(4, (int64_t[]){B, 1, 1, IN}, 0);
    int64_t idx[B] = {0, 1, 2, 3};
    struct invar_graph *g = invar_graph_create(1 << 20);
    struct invar_step_info info = {0, 0, 0, 100, 0.1};
    float first = f.ops->loss(f.obj, g, v, 2, idx, &info)->data[0];
    const struct invar_tensor *z0 = invar_l2_normalize(g, invar_encoder_forward(f.online, g, v[0]),
                                                       1e-12f); /* what the queue should get */
    f.ops->after_step(f.obj, g, &info);
    const struct invar_tensor *q = invar_params_find(f.ctx.params, "swav.queue");
    for (int i = 0; i < B * DIM; i++)
        cr_assert_float_eq(q->data[i], z0->data[i], 1e-6f);
    invar_graph_reset(g);
    float second = f.ops->loss(f.obj, g, v, 2, idx, &info)->data[0];
    cr_assert_float_eq(first, second, 1e-6f, "queue used before it was full");
    /* a different batch fills the queue (the same batch again would not change the codes:
     * Sinkhorn gives repeated rows the codes it gives one copy) */
    struct invar_tensor *w[2];
    for (int i = 0; i < 2; i++)
        w[i] = gc_tensor(4, (int64_t[]){B, 1, 1, IN}, 0);
    invar_graph_reset(g);
    f.ops->loss(f.obj, g, w, 2, idx, &info);
    f.ops->after_step(f.obj, g, &info);
    invar_graph_reset(g);
    float third = f.ops->loss(f.obj, g, v, 2, idx, &info)->data[0];
    /* the queue of view a holds view a's features of both batches */
    float qin[2][2 * B * IN];
    for (int a = 0; a < 2; a++) {
        memcpy(qin[a], v[a]->data, B * IN * sizeof(float));
        memcpy(qin[a] + B * IN, w[a]->data, B * IN * sizeof(float));
    }
    const float *vp[2] = {v[0]->data, v[1]->data}, *qp[2] = {qin[0], qin[1]};
    double want = swav_reference(&f, vp, 2, B, 0.1, 0.05, 3, qp, 2 * B);
    cr_assert_float_eq(third, want, 1e-5 * fmax(1, fabs(want)), "with queue: %.7g, reference %.7g",
                       third, want);
    gc_free(w[0]), gc_free(w[1]);
    cr_assert(fabsf(third - first) > 1e-6f, "full queue did not change the codes");
    invar_graph_destroy(g);
    gc_free(v[0]), gc_free(v[1]);
    fx_close(&f);
}

/* ---- deepcluster ------------------------------------------------------------------------- */

enum { DC_IN = 4, DC_N = 24 };

/* Three groups (6, 8 and 10 samples, interleaved) in different directions of R^4. */
static void dc_toy(float *x, int32_t *truth)
{
    static const float dirs[3][DC_IN] = {{5, 0, 0, 0}, {0, 5, 0, 0}, {0, 0, 4, 4}};
    static const int32_t group[DC_N] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2,
                                        0, 1, 2, 0, 1, 2, 1, 2, 1, 2, 2, 2};
    struct invar_rng r;
    invar_rng_init(&r, 31, 0);
    for (int i = 0; i < DC_N; i++) {
        truth[i] = group[i];
        for (int j = 0; j < DC_IN; j++)
            x[i * DC_IN + j] = dirs[group[i]][j] + invar_rng_range(&r, -0.3f, 0.3f);
    }
}

/* Encoder = identity so that features are the inputs. */
static void set_identity(struct fixture *f)
{
    struct invar_params *p = invar_encoder_params(f->online);
    struct invar_tensor *w = invar_params_find(p, "out.w"), *b = invar_params_find(p, "out.b");
    for (int64_t i = 0; i < w->numel; i++)
        w->data[i] = (i / DC_IN == i % DC_IN) ? 1.0f : 0.0f;
    memset(b->data, 0, (size_t)b->numel * sizeof(float));
}

struct metric_log {
    double nmi_prev, nmi_labels, largest;
    int has_nmi, has_nmi_labels;
};

static void grab_metric(void *user, const char *key, double value)
{
    struct metric_log *m = user;
    if (strcmp(key, "deepcluster/nmi_prev") == 0) {
        m->nmi_prev = value;
        m->has_nmi = 1;
    } else if (strcmp(key, "deepcluster/nmi_labels") == 0) {
        m->nmi_labels = value;
        m->has_nmi_labels = 1;
    } else if (strcmp(key, "deepcluster/largest_cluster") == 0) {
        m->largest = value;
    }
}

enum { DC_B = 5 };
static const int64_t dc_idx[DC_B] = {3, 0, 17, 22, 9};

/* The loss on two views of DC_B random inputs in [-2, 2) (written to data) as the samples
 * dc_idx. */
static float dc_loss_on_random_views(struct fixture *f, float data[2][DC_B * DC_IN])
{
    struct invar_rng r;
    invar_rng_init(&r, 8, 0);
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < DC_B * DC_IN; i++)
            data[v][i] = invar_rng_range(&r, -2, 2);
    struct invar_tensor *views[2] = {view_tensor(data[0], DC_B, DC_IN),
                                     view_tensor(data[1], DC_B, DC_IN)};
    struct invar_graph *g = invar_graph_create(1 << 20);
    struct invar_step_info info = {0, 0, 0, 10, 0.1};
    float loss = f->ops->loss(f->obj, g, views, 2, dc_idx, &info)->data[0];
    invar_graph_destroy(g);
    free(views[0]), free(views[1]);
    return loss;
}

/* Finite differences through the loss on two random views of four samples. */
static void dc_check_gradient(struct fixture *f)
{
    struct invar_tensor *v[2];
    for (int i = 0; i < 2; i++)
        v[i] = gc_tensor(4, (int64_t[]){4, 1, 1, DC_IN}, 1);
    int64_t idx[4] = {1, 5, 20, 23};
    struct loss_call c = {f, 2, idx, {0, 0, 0, 10, 0.1}};
    gc_check(loss_fn, v, 2, &c, 1e-3, 2e-2);
    gc_free(v[0]), gc_free(v[1]);
}

/* with_labels: the fixture offers the true groups to ctx->label_nmi (the clusters found are
 * the groups: NMI 1); without, nmi_labels is not logged. */
static void dc_check_epoch_begin(const char *pca_dim, int with_labels)
{
    float x[DC_N * DC_IN];
    int32_t truth[DC_N], pred[DC_N];
    dc_toy(x, truth);
    struct fixture f;
    fx_open(&f, "deepcluster", DC_IN, DC_IN);
    ph_set(&f.obj_plugin, "k", "3");
    ph_set(&f.obj_plugin, "pca_dim", pca_dim);
    f.truth = with_labels ? truth : NULL;
    fx_create(&f, x, DC_N, 4, 1);
    set_identity(&f);
    struct invar_tensor *hw = invar_params_find(f.ctx.params, "deepcluster.head.w");
    for (int64_t i = 0; i < hw->numel; i++)
        hw->data[i] = 5.0f; /* to see the re-initialisation */
    struct invar_error err = {0};
    struct metric_log ml = {0};
    cr_assert_eq(f.ops->epoch_begin(f.obj, 0, &err), INVAR_OK, "%s", err.msg);
    f.ops->metrics(f.obj, grab_metric, &ml);
    cr_assert(!ml.has_nmi, "nmi_prev emitted without a previous assignment");
    cr_assert_eq(ml.has_nmi_labels, with_labels);
    if (with_labels)
        cr_assert_float_eq(ml.nmi_labels, 1.0, 1e-9);
    cr_assert_float_eq(ml.largest, 10.0 / DC_N, 1e-12);

    const struct invar_tensor *lab = invar_params_find(f.ctx.params, "deepcluster.labels");
    const struct invar_tensor *w = invar_params_find(f.ctx.params, "deepcluster.weights");
    for (int i = 0; i < DC_N; i++)
        pred[i] = (int32_t)lab->data[i];
    double acc = 0;
    cr_assert_eq(invar_cluster_accuracy(pred, truth, DC_N, 3, &acc, &err), INVAR_OK);
    cr_assert_float_eq(acc, 1.0, 1e-12, "pca_dim %s: accuracy %g", pca_dim, acc);
    /* weights N / (k n_c): 24/18, 24/24, 24/30 for the groups of 6, 8, 10 */
    const double want[3] = {24.0 / 18, 1.0, 0.8};
    for (int i = 0; i < DC_N; i++)
        cr_assert_float_eq(w->data[pred[i]], want[truth[i]], 1e-6);
    for (int64_t i = 0; i < hw->numel; i++)
        cr_assert(fabsf(hw->data[i]) < 0.1f, "head not re-initialised");

    /* a second epoch with the same encoder finds the same partition */
    cr_assert_eq(f.ops->epoch_begin(f.obj, 1, &err), INVAR_OK, "%s", err.msg);
    f.ops->metrics(f.obj, grab_metric, &ml);
    cr_assert(ml.has_nmi);
    cr_assert_float_eq(ml.nmi_prev, 1.0, 1e-9);
    fx_close(&f);
}

Test(objectives_cluster, deepcluster_epoch_begin_clusters_separable_set)
{
    dc_check_epoch_begin("0", 1);
}

Test(objectives_cluster, deepcluster_epoch_begin_with_pca_whitening)
{
    dc_check_epoch_begin("3", 0);
}

Test(objectives_cluster, deepcluster_loss_matches_weighted_cross_entropy)
{
    float x[DC_N * DC_IN];
    int32_t truth[DC_N];
    dc_toy(x, truth);
    struct fixture f;
    fx_open(&f, "deepcluster", DC_IN, 3);
    ph_set(&f.obj_plugin, "k", "3");
    ph_set(&f.obj_plugin, "head_std", "0.5"); /* logits far from uniform */
    fx_create(&f, x, DC_N, 5, 2);
    struct invar_error err = {0};
    cr_assert_eq(f.ops->epoch_begin(f.obj, 0, &err), INVAR_OK, "%s", err.msg);
    const struct invar_tensor *lab = invar_params_find(f.ctx.params, "deepcluster.labels");
    const struct invar_tensor *w = invar_params_find(f.ctx.params, "deepcluster.weights");
    const struct invar_tensor *hw = invar_params_find(f.ctx.params, "deepcluster.head.w");
    const struct invar_tensor *hb = invar_params_find(f.ctx.params, "deepcluster.head.b");
    enum { B = DC_B };
    const int64_t *idx = dc_idx;
    float data[2][B * DC_IN];
    float loss = dc_loss_on_random_views(&f, data);
    double want = 0, feat[3];
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < B; i++) {
            fx_features(&f, data[v] + i * DC_IN, feat);
            double logit[3];
            for (int c = 0; c < 3; c++) {
                logit[c] = hb->data[c];
                for (int j = 0; j < 3; j++)
                    logit[c] += (double)hw->data[c * 3 + j] * feat[j];
            }
            int y = (int)lab->data[idx[i]];
            want += w->data[y] * gc_nll(logit, 3, y);
        }
    want /= 2 * B;
    cr_assert_float_eq(loss, want, 1e-5, "loss %.7g, by hand %.7g", loss, want);
    fx_close(&f);
}

Test(objectives_cluster, deepcluster_gradient_wrt_views)
{
    float x[DC_N * DC_IN];
    int32_t truth[DC_N];
    dc_toy(x, truth);
    struct fixture f;
    fx_open(&f, "deepcluster", DC_IN, 3);
    ph_set(&f.obj_plugin, "k", "3");
    ph_set(&f.obj_plugin, "head_std", "0.5");
    fx_create(&f, x, DC_N, 4, 2);
    struct invar_error err = {0};
    cr_assert_eq(f.ops->epoch_begin(f.obj, 0, &err), INVAR_OK, "%s", err.msg);
    dc_check_gradient(&f);
    fx_close(&f);
}

/* classifier centroids (DeepCluster-v2): after epoch_begin the classifier is the k-means
 * centroids of the L2-normalised features, renormalised (checked against the means of each
 * found cluster, computed here), no head is declared, and the loss is the weighted cross-entropy
 * of the cosines to the centroids over T, by hand; the gradient through it by finite
 * differences. */
Test(objectives_cluster, deepcluster_centroids_classifier_loss_and_gradient)
{
    float x[DC_N * DC_IN];
    int32_t truth[DC_N];
    dc_toy(x, truth);
    struct fixture f;
    fx_open(&f, "deepcluster", DC_IN, DC_IN);
    ph_set(&f.obj_plugin, "k", "3");
    ph_set(&f.obj_plugin, "classifier", "centroids");
    ph_set(&f.obj_plugin, "temperature", "0.25");
    fx_create(&f, x, DC_N, 5, 2);
    set_identity(&f);
    cr_assert_null(invar_params_find(f.ctx.params, "deepcluster.head.w"));
    cr_assert_null(invar_params_find(f.ctx.params, "deepcluster.head.b"));
    struct invar_error err = {0};
    cr_assert_eq(f.ops->epoch_begin(f.obj, 0, &err), INVAR_OK, "%s", err.msg);
    const struct invar_tensor *lab = invar_params_find(f.ctx.params, "deepcluster.labels");
    const struct invar_tensor *w = invar_params_find(f.ctx.params, "deepcluster.weights");
    const struct invar_tensor *cent = invar_params_find(f.ctx.params, "deepcluster.centroids");
    cr_assert_not_null(cent);

    /* the centroids: mean of each cluster's normalised features, normalised */
    double c[3][DC_IN] = {{0}};
    for (int i = 0; i < DC_N; i++) {
        double nrm = 0;
        for (int j = 0; j < DC_IN; j++)
            nrm += (double)x[i * DC_IN + j] * x[i * DC_IN + j];
        int y = (int)lab->data[i];
        for (int j = 0; j < DC_IN; j++)
            c[y][j] += x[i * DC_IN + j] / sqrt(nrm);
    }
    for (int y = 0; y < 3; y++) {
        double nrm = 0;
        for (int j = 0; j < DC_IN; j++)
            nrm += c[y][j] * c[y][j];
        for (int j = 0; j < DC_IN; j++) {
            c[y][j] /= sqrt(nrm);
            cr_assert_float_eq(cent->data[y * DC_IN + j], c[y][j], 1e-5, "centroid %d[%d]", y, j);
        }
    }

    enum { B = DC_B };
    const int64_t *idx = dc_idx;
    float data[2][B * DC_IN];
    float loss = dc_loss_on_random_views(&f, data);
    double want = 0;
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < B; i++) {
            const float *q = data[v] + i * DC_IN; /* identity encoder: the features */
            double nq = 0, logit[3];
            for (int j = 0; j < DC_IN; j++)
                nq += (double)q[j] * q[j];
            for (int y = 0; y < 3; y++) {
                logit[y] = 0;
                for (int j = 0; j < DC_IN; j++)
                    logit[y] += c[y][j] * q[j] / sqrt(nq);
                logit[y] /= 0.25;
            }
            int y = (int)lab->data[idx[i]];
            want += w->data[y] * gc_nll(logit, 3, y);
        }
    want /= 2 * B;
    cr_assert_float_eq(loss, want, 1e-5, "loss %.7g, by hand %.7g", loss, want);

    dc_check_gradient(&f);
    fx_close(&f);
}

Test(objectives_cluster, configuration_errors_name_the_problem)
{
    struct fixture f;
    struct invar_error err = {0};
    void *obj = NULL;

    fx_open(&f, "deepcluster", DC_IN, 3);
    ph_set(&f.obj_plugin, "k", "30");
    f.ctx = (struct invar_objective_ctx){.dataset_size = 24,
                                         .batch_size = 4,
                                         .n_views = 1,
                                         .feature_dim = 3,
                                         .online = f.online,
                                         .params = invar_params_create()};
    cr_assert_eq(f.ops->create(f.obj_plugin.config, &f.ctx, &obj, &err), INVAR_ERR_CONFIG);
    cr_assert(strstr(err.msg, "k (30) is larger than the dataset (24)"), "%s", err.msg);
    ph_set(&f.obj_plugin, "k", "3");
    ph_set(&f.obj_plugin, "pca_dim", "4");
    cr_assert_eq(f.ops->create(f.obj_plugin.config, &f.ctx, &obj, &err), INVAR_ERR_CONFIG);
    cr_assert(strstr(err.msg, "pca_dim (4) exceeds the feature size (3)"), "%s", err.msg);
    ph_set(&f.obj_plugin, "pca_dim", "2");
    ph_set(&f.obj_plugin, "classifier", "centroids");
    cr_assert_eq(f.ops->create(f.obj_plugin.config, &f.ctx, &obj, &err), INVAR_ERR_CONFIG);
    cr_assert(strstr(err.msg, "classifier centroids needs pca_dim 0"), "%s", err.msg);
    fx_close(&f);

    fx_open(&f, "swav", DC_IN, 3);
    f.ctx = (struct invar_objective_ctx){.dataset_size = 24,
                                         .batch_size = 4,
                                         .n_views = 1,
                                         .feature_dim = 3,
                                         .online = f.online,
                                         .params = invar_params_create()};
    cr_assert_eq(f.ops->create(f.obj_plugin.config, &f.ctx, &obj, &err), INVAR_ERR_CONFIG);
    cr_assert(strstr(err.msg, "needs at least 2 views"), "%s", err.msg);
    fx_close(&f);
}
