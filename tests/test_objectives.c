/* Objective plugins (moco, instdisc) driven by hand: a context built in the test around a
 * one-layer mlp encoder (depth 0: y = W x + b) whose weights are set to known values, losses
 * against the formulas recomputed here in double, the EMA and queue bookkeeping, the memory
 * bank update, NCE's normaliser, and finite-difference gradients w.r.t. the input view. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "invar/graph.h"
#include "invar/registry.h"
#include "invar/train.h"

#include "gradcheck.h"
#include "registry_fixture.h"

#define F 2 /* input features: views are (B, 1, 1, F) */
#define D 3 /* feature size */

TestSuite(objectives, .init = rf_init, .fini = rf_fini);

/* ---- a hand-built objective context --------------------------------------------------------- */

struct harness {
    struct invar_plugin_use enc_use, obj_use;
    const struct invar_objective_ops *ops;
    struct invar_objective_ctx ctx;
    struct invar_encoder *online;
    struct invar_encoder *clones[4];
    int n_clones;
    void *obj;
};

static const int64_t in_shape[3] = {1, 1, F};

static enum invar_status test_clone(struct invar_objective_ctx *ctx, struct invar_encoder **out,
                                    struct invar_error *err)
{
    struct harness *h = ctx->framework;
    cr_assert_lt(h->n_clones, 4);
    enum invar_status st = invar_encoder_create(out, &h->enc_use, in_shape, 99, err);
    if (st != INVAR_OK)
        return st;
    invar_params_copy(invar_encoder_params(*out), invar_encoder_params(ctx->online));
    h->clones[h->n_clones++] = *out;
    return INVAR_OK;
}

/* W (D, F) and b (D) of a depth-0 mlp */
static void set_linear(struct invar_encoder *e, const float w[D][F], const float b[D])
{
    struct invar_params *p = invar_encoder_params(e);
    struct invar_tensor *tw = invar_params_find(p, "out.w"), *tb = invar_params_find(p, "out.b");
    cr_assert_not_null(tw);
    cr_assert_not_null(tb);
    cr_assert_eq(tw->numel, D * F);
    memcpy(tw->data, w, sizeof(float) * D * F);
    memcpy(tb->data, b, sizeof(float) * D);
}

static void harness_open_with(struct harness *h, const char *const *enc_kv,
                              const char *objective, const char *const *kv, int64_t dataset_size,
                              int64_t batch, int n_views)
{
    memset(h, 0, sizeof *h);
    h->enc_use = rf_use(INVAR_KIND_ENCODER, "mlp", enc_kv);
    h->obj_use = rf_use(INVAR_KIND_OBJECTIVE, objective, kv);
    h->ops = h->obj_use.plugin->ops.objective;
    struct invar_error err = {0};
    cr_assert_eq(invar_encoder_create(&h->online, &h->enc_use, in_shape, 1, &err), INVAR_OK, "%s",
                 err.msg);
    cr_assert_eq(invar_encoder_dim(h->online), D);
    h->ctx = (struct invar_objective_ctx){.dataset_size = dataset_size,
                                          .batch_size = batch,
                                          .n_views = n_views,
                                          .feature_dim = D,
                                          .steps_per_epoch = dataset_size / batch,
                                          .epochs = 1,
                                          .seed = 5,
                                          .online = h->online,
                                          .params = invar_params_create(),
                                          .encoder_clone = test_clone,
                                          .framework = h};
    cr_assert_eq(h->ops->create(h->obj_use.config, &h->ctx, &h->obj, &err), INVAR_OK, "%s",
                 err.msg);
    cr_assert_eq(invar_params_finalize(h->ctx.params, 11, &err), INVAR_OK, "%s", err.msg);
    if (h->ops->init_state)
        cr_assert_eq(h->ops->init_state(h->obj, &err), INVAR_OK, "%s", err.msg);
}

static void harness_open(struct harness *h, const char *objective, const char *const *kv,
                         int64_t dataset_size, int64_t batch, int n_views)
{
    harness_open_with(h, (const char *[]){"depth", "0", "dim", "3", NULL}, objective, kv,
                      dataset_size, batch, n_views);
}

static void harness_close(struct harness *h)
{
    h->ops->destroy(h->obj);
    invar_params_destroy(h->ctx.params);
    for (int i = 0; i < h->n_clones; i++)
        invar_encoder_destroy(h->clones[i]);
    invar_encoder_destroy(h->online);
}

/* A view (B, 1, 1, F) in the graph's arena. */
static struct invar_tensor *view(struct invar_graph *g, int64_t b, const float *x)
{
    struct invar_tensor *t = invar_graph_tensor(g, 4, (int64_t[]){b, 1, 1, F});
    memcpy(t->data, x, (size_t)(b * F) * sizeof(float));
    return t;
}

/* normalize(W x + b) in double */
static void embed(const float *w, const float *b, const float *x, double out[D])
{
    double ss = 0;
    for (int o = 0; o < D; o++) {
        out[o] = b[o];
        for (int i = 0; i < F; i++)
            out[o] += (double)w[o * F + i] * x[i];
        ss += out[o] * out[o];
    }
    for (int o = 0; o < D; o++)
        out[o] /= sqrt(ss);
}

static double dot(const double *a, const float *b)
{
    double s = 0;
    for (int j = 0; j < D; j++)
        s += a[j] * b[j];
    return s;
}

/* Scalar state through the objective's save/load, kept in memory. */
struct mem_io {
    struct invar_state_io io;
    char keys[8][64];
    unsigned char data[8][256];
    size_t bytes[8];
    int n;
};

static enum invar_status mem_put(struct invar_state_io *io, const char *key, const void *data,
                                 size_t bytes)
{
    struct mem_io *m = io->impl;
    cr_assert_lt(m->n, 8);
    cr_assert_leq(bytes, 256u);
    snprintf(m->keys[m->n], 64, "%s", key);
    memcpy(m->data[m->n], data, bytes);
    m->bytes[m->n++] = bytes;
    return INVAR_OK;
}

static enum invar_status mem_get(struct invar_state_io *io, const char *key, void *data,
                                 size_t bytes)
{
    struct mem_io *m = io->impl;
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->keys[i], key) == 0 && m->bytes[i] == bytes) {
            memcpy(data, m->data[i], bytes);
            return INVAR_OK;
        }
    return INVAR_ERR_NOT_FOUND;
}

static void mem_io_init(struct mem_io *m)
{
    memset(m, 0, sizeof *m);
    m->io = (struct invar_state_io){mem_put, mem_get, m};
}

static const void *mem_find(struct mem_io *m, const char *key, size_t bytes)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->keys[i], key) == 0) {
            cr_assert_eq(m->bytes[i], bytes, "state %s: %zu bytes", key, m->bytes[i]);
            return m->data[i];
        }
    cr_assert_fail("no saved state %s", key);
    return NULL;
}

/* Metrics emitted by an objective. */
struct metric_box {
    const char *key;
    double value;
    int seen;
};

static void metric_catch(void *user, const char *key, double value)
{
    struct metric_box *b = user;
    if (strcmp(key, b->key) == 0) {
        b->value = value;
        b->seen++;
    }
}

/* Known weights: online (query) and a different key encoder. */
static const float wq[D][F] = {{0.5f, -1.0f}, {1.5f, 0.25f}, {-0.75f, 2.0f}};
static const float bq[D] = {0.1f, -0.2f, 0.3f};
static const float wk0[D][F] = {{-1.0f, 0.5f}, {0.25f, 1.0f}, {2.0f, -0.5f}};
static const float bk0[D] = {-0.3f, 0.4f, 0.05f};

static struct invar_encoder *moco_key_encoder(struct harness *h)
{
    cr_assert_eq(h->n_clones, 1, "moco should clone the encoder once");
    return h->clones[0];
}

/* ---- moco ----------------------------------------------------------------------------------- */

Test(objectives, moco_loss_matches_infonce_and_ema_is_exact)
{
    struct harness h;
    harness_open(&h, "moco",
                 (const char *[]){"queue", "3", "momentum", "0.75", "temperature", "0.2", NULL}, 10,
                 2, 2);
    struct invar_encoder *key = moco_key_encoder(&h);
    set_linear(h.online, wq, bq);
    set_linear(key, wk0, bk0);
    struct invar_tensor *queue = invar_params_find(h.ctx.params, "moco.queue");
    cr_assert_not_null(queue);
    cr_assert_eq(queue->shape[0], 3);
    cr_assert_eq(queue->shape[1], D);
    static const float qv[3][D] = {{0.6f, 0.8f, 0.0f}, {0.0f, -0.6f, 0.8f}, {1.0f, 0.0f, 0.0f}};
    memcpy(queue->data, qv, sizeof qv);

    /* the expected key weights, in float exactly as an EMA would compute them */
    float wk[D][F], bk[D];
    const float m = 0.75f, one_m = 1.0f - m;
    for (int o = 0; o < D; o++) {
        for (int i = 0; i < F; i++)
            wk[o][i] = m * wk0[o][i] + one_m * wq[o][i];
        bk[o] = m * bk0[o] + one_m * bq[o];
    }

    static const float x0[2 * F] = {1.0f, 2.0f, -0.5f, 0.75f};
    static const float x1[2 * F] = {0.9f, 2.2f, -0.4f, 0.5f};
    struct invar_graph *g = invar_graph_create(1 << 16);
    struct invar_tensor *views[2] = {view(g, 2, x0), view(g, 2, x1)};
    int64_t idx[2] = {3, 7};
    struct invar_step_info info = {0, 0, 0, 1, 0.1};
    struct invar_tensor *loss = h.ops->loss(h.obj, g, views, 2, idx, &info);
    cr_assert_eq(loss->numel, 1);

    struct invar_params *kp = invar_encoder_params(key);
    struct invar_tensor *kw = invar_params_find(kp, "out.w"), *kb = invar_params_find(kp, "out.b");
    for (int o = 0; o < D; o++) {
        for (int i = 0; i < F; i++)
            cr_expect_eq(kw->data[o * F + i], wk[o][i], "key w[%d][%d] %.9g, want %.9g", o, i,
                         kw->data[o * F + i], wk[o][i]);
        cr_expect_eq(kb->data[o], bk[o]);
    }

    double want = 0;
    for (int b = 0; b < 2; b++) {
        double q[D], k[D], logits[4];
        embed(wq[0], bq, x0 + b * F, q);
        embed(wk[0], bk, x1 + b * F, k);
        logits[0] = 0;
        for (int j = 0; j < D; j++)
            logits[0] += q[j] * k[j];
        for (int r = 0; r < 3; r++)
            logits[1 + r] = dot(q, qv[r]);
        for (int r = 0; r < 4; r++)
            logits[r] /= 0.2;
        want += gc_nll(logits, 4, 0) / 2;
    }
    cr_expect_float_eq(loss->data[0], want, 1e-5, "moco loss %.7g, InfoNCE %.7g", loss->data[0],
                       want);
    invar_graph_destroy(g);
    harness_close(&h);
}

Test(objectives, moco_momentum_zero_copies_the_encoder)
{
    struct harness h;
    harness_open(&h, "moco", (const char *[]){"queue", "4", "momentum", "0", NULL}, 10, 2, 2);
    struct invar_encoder *key = moco_key_encoder(&h);
    set_linear(h.online, wq, bq);
    set_linear(key, wk0, bk0);
    static const float x[2 * F] = {1, 2, 3, 4};
    struct invar_graph *g = invar_graph_create(1 << 16);
    struct invar_tensor *views[2] = {view(g, 2, x), view(g, 2, x)};
    int64_t idx[2] = {0, 1};
    struct invar_step_info info = {0};
    h.ops->loss(h.obj, g, views, 2, idx, &info);
    struct invar_params *kp = invar_encoder_params(key), *qp = invar_encoder_params(h.online);
    cr_assert_eq(invar_params_numel(kp), invar_params_numel(qp));
    cr_expect_eq(memcmp(invar_params_data(kp), invar_params_data(qp),
                        invar_params_numel(qp) * sizeof(float)),
                 0, "momentum 0: the key encoder is not a copy of the query encoder");
    invar_graph_destroy(g);
    harness_close(&h);
}

Test(objectives, moco_queue_wraps_around_when_k_is_not_a_multiple_of_b)
{
    struct harness h;
    harness_open(&h, "moco", (const char *[]){"queue", "5", "momentum", "0.5", NULL}, 10, 2, 2);
    struct invar_encoder *key = moco_key_encoder(&h);
    set_linear(h.online, wq, bq);
    set_linear(key, wk0, bk0);
    struct invar_tensor *queue = invar_params_find(h.ctx.params, "moco.queue");
    float initial[5 * D];
    memcpy(initial, queue->data, sizeof initial);
    /* the initial keys are random unit vectors */
    for (int r = 0; r < 5; r++) {
        double ss = 0;
        for (int j = 0; j < D; j++)
            ss += (double)initial[r * D + j] * initial[r * D + j];
        cr_expect_float_eq(ss, 1.0, 1e-5, "initial queue row %d is not unit length", r);
    }

    double wk[D][F], bk[D];
    for (int o = 0; o < D; o++) {
        for (int i = 0; i < F; i++)
            wk[o][i] = wk0[o][i];
        bk[o] = bk0[o];
    }
    double keys[3][2][D]; /* the keys of each step, computed here */
    struct invar_graph *g = invar_graph_create(1 << 16);
    for (int s = 0; s < 3; s++) {
        float x[2 * F];
        for (int i = 0; i < 2 * F; i++)
            x[i] = (float)(0.3 * (s + 1) + 0.7 * i - 1.1 * (i % 3));
        invar_graph_reset(g);
        struct invar_tensor *views[2] = {view(g, 2, x), view(g, 2, x)};
        int64_t idx[2] = {2 * s, 2 * s + 1};
        struct invar_step_info info = {0, s, s, 3, 0.1};
        h.ops->loss(h.obj, g, views, 2, idx, &info);
        h.ops->after_step(h.obj, g, &info);
        float wf[D][F], bf[D];
        for (int o = 0; o < D; o++) {
            for (int i = 0; i < F; i++)
                wf[o][i] = (float)(wk[o][i] = 0.5 * wk[o][i] + 0.5 * wq[o][i]);
            bf[o] = (float)(bk[o] = 0.5 * bk[o] + 0.5 * bq[o]);
        }
        for (int b = 0; b < 2; b++)
            embed(wf[0], bf, x + b * F, keys[s][b]);
    }
    /* rows 0,1 <- step 0; rows 2,3 <- step 1; rows 4,0 <- step 2 (wrap-around) */
    static const int src_step[5] = {2, 0, 1, 1, 2}, src_row[5] = {1, 1, 0, 1, 0};
    for (int r = 0; r < 5; r++)
        for (int j = 0; j < D; j++)
            cr_expect_float_eq(queue->data[r * D + j], keys[src_step[r]][src_row[r]][j], 1e-5,
                               "queue row %d col %d: %.7g, want %.7g", r, j, queue->data[r * D + j],
                               keys[src_step[r]][src_row[r]][j]);
    struct mem_io io;
    mem_io_init(&io);
    cr_assert_eq(h.ops->save(h.obj, &io.io), INVAR_OK);
    int64_t ptr;
    memcpy(&ptr, mem_find(&io, "moco.ptr", sizeof ptr), sizeof ptr);
    cr_expect_eq(ptr, 1, "queue pointer %lld after 6 keys in a queue of 5", (long long)ptr);
    invar_graph_destroy(g);
    harness_close(&h);
}

/* symmetric: both directions against the same queue, averaged; 2B = 4 keys enqueued into a
 * queue of 3, the keys of view 1 (first direction) first, so the last one wraps to row 0. */
Test(objectives, moco_symmetric_loss_and_enqueue)
{
    struct harness h;
    harness_open(&h, "moco",
                 (const char *[]){"queue", "3", "momentum", "1", "temperature", "0.5", "symmetric",
                                  "true", NULL},
                 10, 2, 2);
    struct invar_encoder *key = moco_key_encoder(&h);
    set_linear(h.online, wq, bq);
    set_linear(key, wk0, bk0); /* momentum 1: the key encoder keeps these */
    struct invar_tensor *queue = invar_params_find(h.ctx.params, "moco.queue");
    static const float qv[3][D] = {{0.0f, 0.0f, 1.0f}, {0.8f, -0.6f, 0.0f}, {0.0f, 1.0f, 0.0f}};
    memcpy(queue->data, qv, sizeof qv);
    static const float x0[2 * F] = {0.2f, -1.0f, 1.3f, 0.4f};
    static const float x1[2 * F] = {-0.6f, 0.8f, 0.5f, 1.5f};
    struct invar_graph *g = invar_graph_create(1 << 16);
    struct invar_tensor *views[2] = {view(g, 2, x0), view(g, 2, x1)};
    int64_t idx[2] = {0, 1};
    struct invar_step_info info = {0};
    struct invar_tensor *loss = h.ops->loss(h.obj, g, views, 2, idx, &info);
    double want = 0, keys[2][2][D]; /* [direction][row] */
    for (int dir = 0; dir < 2; dir++)
        for (int b = 0; b < 2; b++) {
            const float *xq = (dir ? x1 : x0) + b * F, *xk = (dir ? x0 : x1) + b * F;
            double q[D], logits[4];
            embed(wq[0], bq, xq, q);
            embed(wk0[0], bk0, xk, keys[dir][b]);
            logits[0] = 0;
            for (int j = 0; j < D; j++)
                logits[0] += q[j] * keys[dir][b][j];
            for (int r = 0; r < 3; r++)
                logits[1 + r] = dot(q, qv[r]);
            for (int r = 0; r < 4; r++)
                logits[r] /= 0.5;
            want += gc_nll(logits, 4, 0) / 4;
        }
    cr_expect_float_eq(loss->data[0], want, 1e-5, "symmetric loss %.7g, want %.7g", loss->data[0],
                       want);
    h.ops->after_step(h.obj, g, &info);
    /* in order: dir0 row0 -> 0 (overwritten), dir0 row1 -> 1, dir1 row0 -> 2, dir1 row1 -> 0 */
    static const int src_dir[3] = {1, 0, 1}, src_row[3] = {1, 1, 0};
    for (int r = 0; r < 3; r++)
        for (int j = 0; j < D; j++)
            cr_expect_float_eq(queue->data[r * D + j], keys[src_dir[r]][src_row[r]][j], 1e-5,
                               "queue row %d col %d", r, j);
    struct mem_io io;
    mem_io_init(&io);
    cr_assert_eq(h.ops->save(h.obj, &io.io), INVAR_OK);
    int64_t ptr;
    memcpy(&ptr, mem_find(&io, "moco.ptr", sizeof ptr), sizeof ptr);
    cr_expect_eq(ptr, 1);
    invar_graph_destroy(g);
    harness_close(&h);
}

/* Multi-crop: views 2.. are queries only. Four views, plain and symmetric: the loss is the mean
 * InfoNCE over the (query view, key view) pairs (0-1, 2-1, 3-1; symmetric adds 1-0, 2-0, 3-0),
 * and only the key views' keys reach the queue. */
Test(objectives, moco_multi_crop_queries_share_the_keys)
{
    static const float qv[3][D] = {{0.0f, 0.6f, 0.8f}, {-0.8f, 0.0f, 0.6f}, {0.6f, -0.8f, 0.0f}};
    static const float x[4][2 * F] = {{0.2f, -1.0f, 1.3f, 0.4f},
                                      {-0.6f, 0.8f, 0.5f, 1.5f},
                                      {1.1f, 0.3f, -0.2f, 0.7f},
                                      {0.4f, 0.9f, -1.4f, 0.1f}};
    for (int sym = 0; sym < 2; sym++) {
        struct harness h;
        harness_open(&h, "moco",
                     (const char *[]){"queue", "3", "momentum", "1", "temperature", "0.5",
                                      "symmetric", sym ? "true" : "false", NULL},
                     10, 2, 4);
        struct invar_encoder *key = moco_key_encoder(&h);
        set_linear(h.online, wq, bq);
        set_linear(key, wk0, bk0);
        struct invar_tensor *queue = invar_params_find(h.ctx.params, "moco.queue");
        memcpy(queue->data, qv, sizeof qv);
        struct invar_graph *g = invar_graph_create(1 << 16);
        struct invar_tensor *views[4];
        for (int v = 0; v < 4; v++)
            views[v] = view(g, 2, x[v]);
        int64_t idx[2] = {0, 1};
        struct invar_step_info info = {0};
        struct invar_tensor *loss = h.ops->loss(h.obj, g, views, 4, idx, &info);
        static const int pairs[6][2] = {{0, 1}, {2, 1}, {3, 1}, {1, 0}, {2, 0}, {3, 0}};
        const int n_pairs = sym ? 6 : 3;
        double want = 0, keys[2][2][D]; /* [key view][row] */
        for (int kv = 0; kv < 2; kv++)
            for (int b = 0; b < 2; b++)
                embed(wk0[0], bk0, x[kv] + b * F, keys[kv][b]);
        for (int p = 0; p < n_pairs; p++)
            for (int b = 0; b < 2; b++) {
                double q[D], logits[4];
                embed(wq[0], bq, x[pairs[p][0]] + b * F, q);
                logits[0] = 0;
                for (int j = 0; j < D; j++)
                    logits[0] += q[j] * keys[pairs[p][1]][b][j];
                for (int r = 0; r < 3; r++)
                    logits[1 + r] = dot(q, qv[r]);
                for (int r = 0; r < 4; r++)
                    logits[r] /= 0.5;
                want += gc_nll(logits, 4, 0) / (2.0 * n_pairs);
            }
        cr_expect_float_eq(loss->data[0], want, 1e-5, "symmetric %d: loss %.7g, want %.7g", sym,
                           loss->data[0], want);
        h.ops->after_step(h.obj, g, &info);
        /* plain: view 1's two keys at rows 0, 1; symmetric: then view 0's, wrapping to row 0 */
        const int src_view[2][3] = {{1, 1, -1}, {0, 1, 0}}, src_row[2][3] = {{0, 1, 2}, {1, 1, 0}};
        for (int r = 0; r < 3; r++)
            for (int j = 0; j < D; j++) {
                double w =
                    src_view[sym][r] < 0 ? qv[r][j] : keys[src_view[sym][r]][src_row[sym][r]][j];
                cr_expect_float_eq(queue->data[r * D + j], w, 1e-5, "symmetric %d: queue %d %d",
                                   sym, r, j);
            }
        invar_graph_destroy(g);
        harness_close(&h);
    }
}

/* The rows of normalize(e(x)) for a (b, 1, 1, F) batch x, in training mode, one batch-norm. */
static void encode_rows(struct invar_encoder *e, int64_t b, const float *x, double out[][D])
{
    struct invar_graph *g = invar_graph_create(1 << 16);
    invar_graph_set_grad(g, 0);
    struct invar_tensor *y = invar_encoder_forward(e, g, view(g, b, x));
    for (int64_t i = 0; i < b; i++) {
        double ss = 0;
        for (int j = 0; j < D; j++)
            ss += (double)y->data[i * D + j] * y->data[i * D + j];
        for (int j = 0; j < D; j++)
            out[i][j] = y->data[i * D + j] / sqrt(ss);
    }
    invar_graph_destroy(g);
}

/* shuffle_bn 2 on a batch of 6 through an encoder with batch-norm (mlp, one hidden layer):
 * queries are normalised in the sub-batches {0, 1, 2} and {3, 4, 5}; every key is the encoding
 * of its own image normalised together with exactly two others (recovered here by trying every
 * pair), the sub-batches partition the batch, the keys land in the queue in batch order (the
 * shuffle is undone), the loss is InfoNCE over those queries and keys, and over a few steps
 * the keys are grouped otherwise than the queries. A batch the splits do not divide is refused. */
Test(objectives, moco_shuffled_bn_normalises_keys_in_other_sub_batches)
{
    enum { B = 6, S = 3 }; /* batch, sub-batch */
    const char *enc[] = {"depth", "1", "hidden", "4", "dim", "3", NULL};
    struct harness h;
    harness_open_with(&h, enc, "moco",
                      (const char *[]){"queue", "6", "momentum", "1", "temperature", "0.5",
                                       "shuffle_bn", "2", NULL},
                      24, B, 2);
    struct invar_encoder *key = moco_key_encoder(&h);
    struct invar_tensor *queue = invar_params_find(h.ctx.params, "moco.queue");
    static const float x0[B * F] = {1.0f, -0.5f, 0.3f, 2.0f,  -1.2f, 0.7f,
                                    0.4f, -0.9f, 1.7f, -1.1f, -0.3f, 0.6f};
    static const float x1[B * F] = {0.8f, -0.2f, 0.1f, 1.6f,  -1.5f, 0.2f,
                                    0.9f, -0.6f, 1.2f, -1.4f, -0.1f, 0.9f};
    double q[B][D];
    encode_rows(h.online, S, x0, q);
    encode_rows(h.online, S, x0 + S * F, q + S);
    int crossed = 0; /* steps whose keys were not grouped as the queries were */
    for (int64_t step = 0; step < 4; step++) {
        float qv[B * D];
        memcpy(qv, queue->data, sizeof qv);
        struct invar_graph *g = invar_graph_create(1 << 16);
        struct invar_tensor *views[2] = {view(g, B, x0), view(g, B, x1)};
        int64_t idx[B] = {0, 1, 2, 3, 4, 5};
        struct invar_step_info info = {0, step, step, 4, 0.1};
        struct invar_tensor *loss = h.ops->loss(h.obj, g, views, 2, idx, &info);
        cr_assert_eq(invar_graph_bn_splits(g), 1, "the graph's setting is restored");
        h.ops->after_step(h.obj, g, &info); /* K = B: the keys fill the queue in batch order */

        double k[B][D];
        unsigned group[B]; /* bit set of the images key i was normalised with, itself included */
        for (int i = 0; i < B; i++) {
            group[i] = 0;
            for (int j = 0; j < B; j++)
                for (int l = j + 1; l < B; l++) {
                    if (j == i || l == i)
                        continue;
                    float trio[S * F];
                    double e[S][D];
                    memcpy(trio, x1 + i * F, F * sizeof(float));
                    memcpy(trio + F, x1 + j * F, F * sizeof(float));
                    memcpy(trio + 2 * F, x1 + l * F, F * sizeof(float));
                    encode_rows(key, S, trio, e);
                    int same = 1;
                    for (int c = 0; c < D; c++)
                        same &= fabs(e[0][c] - queue->data[i * D + c]) < 1e-5;
                    if (same) {
                        cr_assert_eq(group[i], 0u, "key %d matches two sub-batches", i);
                        group[i] = 1u << i | 1u << j | 1u << l;
                        memcpy(k[i], e[0], sizeof k[i]);
                    }
                }
            cr_assert_neq(group[i], 0u, "step %lld: key %d is not its image normalised with two "
                          "others", (long long)step, i);
        }
        for (int i = 0; i < B; i++)
            for (int j = 0; j < B; j++)
                if (group[i] >> j & 1)
                    cr_assert_eq(group[j], group[i], "sub-batches partition the batch");
        crossed += group[0] != 07u;

        double want = 0;
        for (int b = 0; b < B; b++) {
            double logits[1 + B] = {0};
            for (int j = 0; j < D; j++)
                logits[0] += q[b][j] * k[b][j];
            for (int r = 0; r < B; r++)
                logits[1 + r] = dot(q[b], qv + r * D);
            for (int r = 0; r < 1 + B; r++)
                logits[r] /= 0.5;
            want += gc_nll(logits, 1 + B, 0) / B;
        }
        cr_expect_float_eq(loss->data[0], want, 1e-5, "step %lld: loss %.7g, want %.7g",
                           (long long)step, loss->data[0], want);
        invar_graph_destroy(g);
    }
    cr_expect_gt(crossed, 0, "the keys were never shuffled across sub-batches");
    harness_close(&h);

    struct invar_plugin_use use = rf_use(INVAR_KIND_OBJECTIVE, "moco",
                                         (const char *[]){"shuffle_bn", "4", NULL});
    struct invar_objective_ctx ctx = {.batch_size = 6, .n_views = 2, .feature_dim = D};
    struct invar_error err = {0};
    void *obj = NULL;
    cr_assert_eq(use.plugin->ops.objective->create(use.config, &ctx, &obj, &err),
                 INVAR_ERR_CONFIG);
    cr_assert(strstr(err.msg, "shuffle_bn 4 does not divide the batch size 6"), "%s", err.msg);
}

/* InstDisc encodes view 0 only (the bank is the other side of each pair): a second view would
 * be augmented and never read, so the experiment is refused with the key to change. */
Test(objectives, instdisc_refuses_a_second_view)
{
    struct invar_plugin_use use = rf_use(INVAR_KIND_OBJECTIVE, "instdisc", NULL);
    struct invar_objective_ctx ctx = {
        .dataset_size = 16, .batch_size = 2, .n_views = 2, .feature_dim = D};
    struct invar_error err = {0};
    void *obj = NULL;
    cr_assert_eq(use.plugin->ops.objective->create(use.config, &ctx, &obj, &err),
                 INVAR_ERR_CONFIG);
    cr_assert(strstr(err.msg, "the experiment has 2: set train.views: 1"), "%s", err.msg);
}

struct loss_fn_ctx {
    struct harness *h;
    int64_t idx[4];
    struct mem_io *restore; /* state loaded before every evaluation (NCE's noise stream) */
};

static struct invar_tensor *loss_fn(struct invar_graph *g, struct invar_tensor **in, void *vctx)
{
    struct loss_fn_ctx *c = vctx;
    if (c->restore)
        cr_assert_eq(c->h->ops->load(c->h->obj, &c->restore->io), INVAR_OK);
    struct invar_step_info info = {0};
    return c->h->ops->loss(c->h->obj, g, in, c->h->ctx.n_views, c->idx, &info);
}

Test(objectives, moco_gradient_wrt_query_view)
{
    struct harness h;
    /* momentum 0 keeps the key encoder equal to the query encoder, so every evaluation of the
     * loss sees the same keys */
    harness_open(&h, "moco",
                 (const char *[]){"queue", "3", "momentum", "0", "temperature", "0.5", NULL}, 10, 2,
                 2);
    set_linear(h.online, wq, bq);
    struct invar_tensor *xs[2] = {gc_tensor(4, (int64_t[]){2, 1, 1, F}, 1),
                                  gc_tensor(4, (int64_t[]){2, 1, 1, F}, 0)};
    struct loss_fn_ctx c = {&h, {0, 1}, NULL};
    gc_check(loss_fn, xs, 2, &c, 1e-3, 1e-2);
    gc_free(xs[0]);
    gc_free(xs[1]);
    harness_close(&h);
}

/* ---- instdisc ------------------------------------------------------------------------------- */

#define N 6
static const float bank0[N][D] = {{0.6f, 0.8f, 0.0f},  {0.0f, 0.6f, 0.8f},  {0.8f, 0.0f, -0.6f},
                                  {-0.6f, 0.0f, 0.8f}, {0.0f, -0.8f, 0.6f}, {1.0f, 0.0f, 0.0f}};
static const float xa[2 * F] = {0.4f, -1.2f, 1.5f, 0.3f};
static const float xb[2 * F] = {-0.7f, 0.2f, 0.9f, 1.1f};

static struct invar_tensor *instdisc_bank(struct harness *h)
{
    struct invar_tensor *bank = invar_params_find(h->ctx.params, "instdisc.bank");
    cr_assert_not_null(bank);
    cr_assert_eq(bank->shape[0], N);
    cr_assert_eq(bank->shape[1], D);
    memcpy(bank->data, bank0, sizeof bank0);
    return bank;
}

Test(objectives, instdisc_nonparametric_loss_and_bank_update)
{
    struct harness h;
    harness_open(&h, "instdisc",
                 (const char *[]){"softmax", "nonparametric", "temperature", "0.1", "bank_momentum",
                                  "0.25", NULL},
                 N, 2, 1);
    set_linear(h.online, wq, bq);
    struct invar_tensor *bank = instdisc_bank(&h);
    struct invar_graph *g = invar_graph_create(1 << 16);
    struct invar_tensor *views[1] = {view(g, 2, xa)};
    int64_t idx[2] = {4, 1};
    struct invar_step_info info = {0};
    struct invar_tensor *loss = h.ops->loss(h.obj, g, views, 1, idx, &info);
    double want = 0, v[2][D];
    for (int b = 0; b < 2; b++) {
        embed(wq[0], bq, xa + b * F, v[b]);
        double logits[N];
        for (int j = 0; j < N; j++)
            logits[j] = dot(v[b], bank0[j]) / 0.1;
        want += gc_nll(logits, N, (int)idx[b]) / 2;
    }
    cr_expect_float_eq(loss->data[0], want, 1e-5, "loss %.7g, want %.7g", loss->data[0], want);

    h.ops->after_step(h.obj, g, &info);
    for (int r = 0; r < N; r++) {
        int b = r == 4 ? 0 : r == 1 ? 1 : -1;
        if (b < 0) {
            cr_expect_eq(memcmp(bank->data + r * D, bank0[r], sizeof bank0[r]), 0,
                         "bank row %d changed but is not in the batch", r);
            continue;
        }
        double u[D], ss = 0;
        for (int j = 0; j < D; j++) {
            u[j] = 0.25 * bank0[r][j] + 0.75 * v[b][j];
            ss += u[j] * u[j];
        }
        for (int j = 0; j < D; j++)
            cr_expect_float_eq(bank->data[r * D + j], u[j] / sqrt(ss), 1e-6,
                               "bank row %d col %d: %.7g, want %.7g", r, j, bank->data[r * D + j],
                               u[j] / sqrt(ss));
    }
    invar_graph_destroy(g);
    harness_close(&h);
}

/* The proximal term (Wu et al. 2018, section 3.4): lambda * mean_i |v_i - bank_i|^2 on top of the
 * softmax's loss, the bank row being the image's representation before this step. */
Test(objectives, instdisc_proximal_term)
{
    const double lambda = 2.5;
    struct harness h;
    harness_open(
        &h, "instdisc",
        (const char *[]){"softmax", "nonparametric", "temperature", "0.1", "proximal", "2.5", NULL},
        N, 2, 1);
    set_linear(h.online, wq, bq);
    instdisc_bank(&h);
    struct invar_graph *g = invar_graph_create(1 << 16);
    struct invar_tensor *views[1] = {view(g, 2, xb)};
    int64_t idx[2] = {3, 0};
    struct invar_step_info info = {0};
    struct invar_tensor *loss = h.ops->loss(h.obj, g, views, 1, idx, &info);
    double want = 0, dist = 0;
    for (int b = 0; b < 2; b++) {
        double v[D], logits[N], d2 = 0;
        embed(wq[0], bq, xb + b * F, v);
        for (int j = 0; j < N; j++)
            logits[j] = dot(v, bank0[j]) / 0.1;
        for (int j = 0; j < D; j++)
            d2 += (v[j] - bank0[idx[b]][j]) * (v[j] - bank0[idx[b]][j]);
        want += (gc_nll(logits, N, (int)idx[b]) + lambda * d2) / 2;
        dist += d2 / 2;
    }
    cr_expect_float_eq(loss->data[0], want, 1e-5, "loss %.7g, want %.7g", loss->data[0], want);
    struct metric_box mb = {"instdisc/proximal", 0, 0};
    h.ops->metrics(h.obj, metric_catch, &mb);
    cr_assert_eq(mb.seen, 1, "instdisc/proximal was not emitted");
    cr_expect_float_eq(mb.value, dist, 1e-6, "proximal %.7g, want %.7g", mb.value, dist);
    invar_graph_destroy(g);
    harness_close(&h);
}

Test(objectives, instdisc_parametric_loss)
{
    struct harness h;
    harness_open(&h, "instdisc",
                 (const char *[]){"softmax", "parametric", "temperature", "0.5", NULL}, N, 2, 1);
    set_linear(h.online, wq, bq);
    struct invar_tensor *w = invar_params_find(h.ctx.params, "instdisc.classifier");
    cr_assert_not_null(w);
    cr_assert_eq(w->numel, N * D);
    float wc[N][D];
    for (int r = 0; r < N; r++)
        for (int j = 0; j < D; j++)
            wc[r][j] = (float)(0.5 * (r - 2) - 0.3 * j + 0.1 * r * j);
    memcpy(w->data, wc, sizeof wc);
    struct invar_graph *g = invar_graph_create(1 << 16);
    struct invar_tensor *views[1] = {view(g, 2, xb)};
    int64_t idx[2] = {0, 5};
    struct invar_step_info info = {0};
    struct invar_tensor *loss = h.ops->loss(h.obj, g, views, 1, idx, &info);
    double want = 0;
    for (int b = 0; b < 2; b++) {
        double v[D], logits[N];
        embed(wq[0], bq, xb + b * F, v);
        for (int r = 0; r < N; r++)
            logits[r] = dot(v, wc[r]) / 0.5;
        want += gc_nll(logits, N, (int)idx[b]) / 2;
    }
    cr_expect_float_eq(loss->data[0], want, 1e-5, "loss %.7g, want %.7g", loss->data[0], want);
    invar_graph_destroy(g);
    harness_close(&h);
}

/* The noise indices instdisc draws: the same generator, keyed as the plugin keys it. */
static void nce_noise(struct invar_rng *r, int64_t *noise, int k)
{
    for (int j = 0; j < k; j++)
        noise[j] = invar_rng_below(r, N);
}

Test(objectives, instdisc_nce_normaliser_and_loss)
{
    enum { K = 3, B = 2 };
    const double t = 0.2;
    struct harness h;
    harness_open(&h, "instdisc",
                 (const char *[]){"softmax", "nce", "temperature", "0.2", "nce_k", "3", NULL}, N, B,
                 1);
    set_linear(h.online, wq, bq);
    instdisc_bank(&h);
    struct invar_rng rng;
    invar_rng_init(&rng, h.ctx.seed, invar_rng_stream(0x1d, 0, 0, 0));
    struct invar_graph *g = invar_graph_create(1 << 16);
    int64_t idx[B] = {2, 3};
    double z = 0;
    for (int step = 0; step < 2; step++) {
        const float *x = step == 0 ? xa : xb;
        invar_graph_reset(g);
        struct invar_tensor *views[1] = {view(g, B, x)};
        struct invar_step_info info = {0, step, step, 2, 0.1};
        struct invar_tensor *loss = h.ops->loss(h.obj, g, views, 1, idx, &info);
        int64_t noise[K];
        nce_noise(&rng, noise, K);
        double v[B][D], spos[B], sneg[B][K];
        for (int b = 0; b < B; b++) {
            embed(wq[0], bq, x + b * F, v[b]);
            spos[b] = dot(v[b], bank0[idx[b]]);
            for (int j = 0; j < K; j++)
                sneg[b][j] = dot(v[b], bank0[noise[j]]);
        }
        if (step == 0) { /* Z = N * mean of exp(s/T) over the first batch's B*(K+1) scores */
            double s = 0;
            for (int b = 0; b < B; b++) {
                s += exp(spos[b] / t);
                for (int j = 0; j < K; j++)
                    s += exp(sneg[b][j] / t);
            }
            z = N * s / (B * (K + 1));
        }
        struct metric_box mb = {"instdisc/nce_z", 0, 0};
        h.ops->metrics(h.obj, metric_catch, &mb);
        cr_assert_eq(mb.seen, 1, "instdisc/nce_z was not emitted");
        cr_expect_float_eq(mb.value, z, 1e-5 * z, "step %d: Z %.9g, want %.9g", step, mb.value, z);
        /* h = P / (P + K Pn), P = exp(s/T) / Z, Pn = 1/N */
        double c = (double)K / N, want = 0;
        for (int b = 0; b < B; b++) {
            double p = exp(spos[b] / t) / z;
            want -= log(p / (p + c));
            for (int j = 0; j < K; j++) {
                double pn = exp(sneg[b][j] / t) / z;
                want -= log(1 - pn / (pn + c));
            }
        }
        want /= B;
        cr_expect_float_eq(loss->data[0], want, 1e-5 * fmax(1, want),
                           "step %d: NCE loss %.7g, want %.7g", step, loss->data[0], want);
    }
    /* the bank was not updated (no after_step): the second batch saw the original rows */
    invar_graph_destroy(g);
    harness_close(&h);
}

Test(objectives, instdisc_gradients_wrt_the_view)
{
    static const char *const variants[] = {"nonparametric", "parametric", "nce"};
    for (int vp = 0; vp < 6; vp++) {
        int v = vp % 3;
        const char *prox = vp < 3 ? "0" : "3"; /* without and with the proximal term */
        struct harness h;
        harness_open(&h, "instdisc",
                     (const char *[]){"softmax", variants[v], "temperature", "0.5", "nce_k", "4",
                                      "proximal", prox, NULL},
                     N, 3, 1);
        set_linear(h.online, wq, bq);
        instdisc_bank(&h);
        struct mem_io io;
        mem_io_init(&io);
        struct loss_fn_ctx c = {&h, {5, 0, 2}, NULL};
        if (v == 2) {
            /* estimate Z once, then replay the same noise draws at every evaluation */
            struct invar_graph *g = invar_graph_create(1 << 16);
            static const float x[3 * F] = {0.1f, 0.2f, -0.3f, 0.4f, 0.5f, -0.6f};
            struct invar_tensor *views[1] = {view(g, 3, x)};
            struct invar_step_info info = {0};
            h.ops->loss(h.obj, g, views, 1, c.idx, &info);
            invar_graph_destroy(g);
            cr_assert_eq(h.ops->save(h.obj, &io.io), INVAR_OK);
            c.restore = &io;
        }
        struct invar_tensor *x = gc_tensor(4, (int64_t[]){3, 1, 1, F}, 1);
        double worst = gc_check(loss_fn, &x, 1, &c, 1e-3, 1e-2);
        cr_log_info("instdisc %s, proximal %s: worst scaled gradient error %.3g", variants[v], prox,
                    worst);
        gc_free(x);
        harness_close(&h);
    }
}
