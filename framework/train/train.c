/* The training loop: datasets, encoder, objective, optimizer, loader, checkpoints, evaluation. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "invar/graph.h"
#include "invar/kmeans.h"
#include "invar/optim.h"
#include "train/checkpoint.h"
#include "train/train_internal.h"

#define MAX_CLONES 8
#define EMBED_BATCH 500

/* OpenBLAS's own thread control; declared here so the trainer needs no OpenBLAS-only header. */
extern void openblas_set_num_threads(int n);

struct trainer {
    const struct invar_job *job;
    struct invar_dataset *train, *test;
    float mean[4], std[4];
    const float *pmean, *pstd;
    struct invar_encoder *online;
    struct invar_encoder *clones[MAX_CLONES];
    int n_clones;
    struct invar_objective_ctx ctx;
    void *obj;
    struct invar_optim *opt;
    struct invar_optim_config ocfg;
    struct invar_loader *loader;
    struct invar_graph *g;
    int64_t steps_per_epoch, total_steps, start_epoch;
    int64_t metric_step, metric_epoch; /* where objective metrics are logged */
    struct timespec t0;
    struct invar_error *err;
    /* Within one evaluation: the statistics recomputed for (recal_size, recal_n), so that a
     * second protocol asking the same does not recompute them; recal_n 0 = none yet. */
    float *recal;
    int64_t recal_size, recal_n;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void emit(struct trainer *t, const char *key, int64_t step, int64_t epoch, double v)
{
    if (t->job->on_metric)
        t->job->on_metric(t->job->user, key, step, epoch, v);
}

/* The steps since the last step_loss row: their mean loss, their worst, and their largest
 * gradient norm (before any clipping), which show a spike that the epoch's mean averages away. */
struct loss_window {
    double sum, max, grad_max;
    int64_t n;
};

static void window_add(struct loss_window *w, double l, double grad_norm)
{
    w->max = w->n == 0 || l > w->max ? l : w->max;
    w->grad_max = grad_norm > w->grad_max ? grad_norm : w->grad_max;
    w->sum += l;
    w->n++;
}

static void window_emit(struct trainer *t, struct loss_window *w, int64_t step, int64_t epoch)
{
    emit(t, "step_loss", step, epoch, w->sum / (double)w->n);
    emit(t, "step_loss_max", step, epoch, w->max);
    emit(t, "step_grad_norm_max", step, epoch, w->grad_max);
    *w = (struct loss_window){0};
}

/* ---- objective context services ----------------------------------------------------------- */

static enum invar_status ctx_clone(struct invar_objective_ctx *ctx, struct invar_encoder **out,
                                   struct invar_error *err)
{
    struct trainer *t = ctx->framework;
    if (t->n_clones == MAX_CLONES)
        return invar_error_set(err, INVAR_ERR_INVALID, "objective: more than %d encoder clones",
                               MAX_CLONES);
    enum invar_status st = encoder_create(out, &t->job->encoder, t->online->in_shape,
                                          t->job->seed, err);
    if (st != INVAR_OK)
        return st;
    invar_params_copy(invar_encoder_params(*out), invar_encoder_params(t->online));
    t->clones[t->n_clones++] = *out;
    return INVAR_OK;
}

/* One pass over d's first n images in batches of EMBED_BATCH, resized to size and normalised,
 * without gradients. out set: eval mode, the features go to out. out NULL: recalibration,
 * training mode over whole batches only, batch k moving every batch-norm's running statistics
 * by 1/(k+1) so that they end as the mean of the batches' statistics; the features are
 * dropped. */
static enum invar_status embed_pass(struct invar_encoder *e, const struct invar_dataset *d,
                                    const float *mean, const float *std, float *out, int which,
                                    int64_t size, int64_t n, struct invar_graph *g,
                                    struct invar_error *err)
{
    const int64_t *shape = invar_dataset_shape(d);
    const int64_t in_numel = shape[0] * shape[1] * shape[2];
    const int recal = out == NULL;
    if (recal && n > EMBED_BATCH)
        n -= n % EMBED_BATCH; /* a short last batch would weigh as much as a whole one */
    /* Resized copies of one batch at a time (the images stay as stored in the dataset). */
    float *resized = NULL;
    int64_t rshape[3];
    eval_image_shape(shape, size, rshape);
    const int64_t r_numel = rshape[0] * rshape[1] * rshape[2];
    int resize = memcmp(rshape, shape, sizeof rshape) != 0;
    if (resize) {
        resized = malloc((size_t)(EMBED_BATCH * r_numel) * sizeof *resized);
        if (!resized)
            return invar_error_set(err, INVAR_ERR_NOMEM, "embed: out of memory");
    }
    int was_grad = invar_graph_set_grad(g, 0), was_train = invar_graph_set_training(g, recal);
    float was_momentum = invar_graph_set_bn_momentum(g, 0);
    for (int64_t s = 0; s < n; s += EMBED_BATCH) {
        int64_t b = n - s < EMBED_BATCH ? n - s : EMBED_BATCH;
        const float *x = invar_dataset_sample(d, s);
        if (resize)
            for (int64_t i = 0; i < b; i++)
                invar_image_resize(x + i * in_numel, shape, resized + i * r_numel, rshape[1],
                                   rshape[2]);
        if (recal)
            invar_graph_set_bn_momentum(g, 1.0f / (float)(s / EMBED_BATCH + 1));
        struct invar_tensor *f =
            invar_encoder_embed_batch(e, g, resize ? resized : x, b, resize ? rshape : shape, mean,
                                      std, recal ? INVAR_FEATURES_HEAD : which);
        if (!recal)
            memcpy(out + s * f->shape[1], f->data, (size_t)f->numel * sizeof(float));
    }
    invar_graph_reset(g);
    invar_graph_set_grad(g, was_grad);
    invar_graph_set_training(g, was_train);
    invar_graph_set_bn_momentum(g, was_momentum);
    free(resized);
    return INVAR_OK;
}

enum invar_status encoder_embed(struct invar_encoder *e, const struct invar_dataset *d,
                                const float *mean, const float *std, float *out, int which,
                                int64_t size, struct invar_graph *g, struct invar_error *err)
{
    return embed_pass(e, d, mean, std, out, which, size, invar_dataset_count(d), g, err);
}

enum invar_status encoder_recalibrate_bn(struct invar_encoder *e, const struct invar_dataset *d,
                                         const float *mean, const float *std, int64_t size,
                                         int64_t n, struct invar_graph *g, struct invar_error *err)
{
    if (n > invar_dataset_count(d))
        n = invar_dataset_count(d);
    return embed_pass(e, d, mean, std, NULL, INVAR_FEATURES_HEAD, size, n, g, err);
}

static enum invar_status ctx_embed_train(struct invar_objective_ctx *ctx, struct invar_encoder *e,
                                         float *out, struct invar_error *err)
{
    struct trainer *t = ctx->framework;
    /* Its own graph: the caller may be in the middle of building the step's graph. */
    struct invar_graph *g = invar_graph_create(64u << 20);
    if (!g)
        return invar_error_set(err, INVAR_ERR_NOMEM, "embed: out of memory");
    enum invar_status st =
        encoder_embed(e, t->train, t->pmean, t->pstd, out, INVAR_FEATURES_HEAD, 0, g, err);
    invar_graph_destroy(g);
    return st;
}

static enum invar_status ctx_label_nmi(struct invar_objective_ctx *ctx, const int32_t *assign,
                                       double *nmi, struct invar_error *err)
{
    struct trainer *t = ctx->framework;
    return invar_nmi(assign, invar_dataset_labels(t->train), invar_dataset_count(t->train), nmi,
                     err);
}

/* ---- checkpoints -------------------------------------------------------------------------- */

static void put_params(struct ckpt_writer *w, const char *prefix, struct invar_params *p)
{
    char name[128];
    snprintf(name, sizeof name, "%s.weights", prefix);
    ckpt_put(w, name, invar_params_data(p), invar_params_numel(p) * sizeof(float));
    snprintf(name, sizeof name, "%s.buffers", prefix);
    ckpt_put(w, name, invar_params_buffers(p), invar_params_buffer_numel(p) * sizeof(float));
}

static enum invar_status get_params(struct ckpt_reader *r, const char *prefix,
                                    struct invar_params *p)
{
    char name[128];
    snprintf(name, sizeof name, "%s.weights", prefix);
    enum invar_status st =
        ckpt_get(r, name, invar_params_data(p), invar_params_numel(p) * sizeof(float));
    snprintf(name, sizeof name, "%s.buffers", prefix);
    if (st == INVAR_OK)
        st = ckpt_get(r, name, invar_params_buffers(p),
                      invar_params_buffer_numel(p) * sizeof(float));
    return st;
}

static enum invar_status checkpoint_save(struct trainer *t, int64_t next_epoch)
{
    struct ckpt_writer w;
    enum invar_status st = ckpt_writer_open(&w, t->job->checkpoint_path, t->err);
    if (st != INVAR_OK)
        return st;
    ckpt_put(&w, "next_epoch", &next_epoch, sizeof next_epoch);
    put_params(&w, "online", invar_encoder_params(t->online));
    put_params(&w, "objective", t->ctx.params);
    for (int i = 0; i < t->n_clones; i++) {
        char name[32];
        snprintf(name, sizeof name, "clone%d", i);
        put_params(&w, name, invar_encoder_params(t->clones[i]));
    }
    ckpt_put(&w, "optim.state", invar_optim_state(t->opt),
             invar_optim_state_numel(t->opt) * sizeof(float));
    int64_t taken = invar_optim_steps_taken(t->opt);
    ckpt_put(&w, "optim.steps", &taken, sizeof taken);
    const struct invar_objective_ops *ops = t->job->objective.plugin->ops.objective;
    if (ops->save && w.st == INVAR_OK) {
        st = ops->save(t->obj, &w.io);
        if (st != INVAR_OK && w.st == INVAR_OK)
            w.st = st;
    }
    return ckpt_writer_commit(&w);
}

static enum invar_status checkpoint_load(struct trainer *t)
{
    struct ckpt_reader r;
    enum invar_status st = ckpt_reader_open(&r, t->job->checkpoint_path, t->err);
    if (st == INVAR_OK)
        st = ckpt_get(&r, "next_epoch", &t->start_epoch, sizeof t->start_epoch);
    if (st == INVAR_OK)
        st = get_params(&r, "online", invar_encoder_params(t->online));
    if (st == INVAR_OK)
        st = get_params(&r, "objective", t->ctx.params);
    for (int i = 0; st == INVAR_OK && i < t->n_clones; i++) {
        char name[32];
        snprintf(name, sizeof name, "clone%d", i);
        st = get_params(&r, name, invar_encoder_params(t->clones[i]));
    }
    if (st == INVAR_OK)
        st = ckpt_get(&r, "optim.state", invar_optim_state(t->opt),
                      invar_optim_state_numel(t->opt) * sizeof(float));
    int64_t taken = 0;
    if (st == INVAR_OK)
        st = ckpt_get(&r, "optim.steps", &taken, sizeof taken);
    if (st == INVAR_OK)
        invar_optim_set_steps_taken(t->opt, taken);
    const struct invar_objective_ops *ops = t->job->objective.plugin->ops.objective;
    if (st == INVAR_OK && ops->load)
        st = ops->load(t->obj, &r.io);
    ckpt_reader_close(&r);
    return st;
}

/* ---- evaluation --------------------------------------------------------------------------- */

/* Softmax classifier on frozen, standardised features; returns test top-1 in percent. */
static enum invar_status linear_probe(struct trainer *t, const float *ftr, const float *fte,
                                      int64_t dim, double *top1)
{
    const struct invar_eval_config *ec = &t->job->eval;
    int64_t ntr = invar_dataset_count(t->train), nte = invar_dataset_count(t->test);
    int32_t nc = invar_dataset_num_classes(t->train);
    float *xtr = malloc((size_t)(ntr * dim) * sizeof *xtr);
    float *xte = malloc((size_t)(nte * dim) * sizeof *xte);
    int64_t *perm = malloc((size_t)ntr * sizeof *perm);
    double *mu = calloc((size_t)dim, sizeof *mu), *sd = calloc((size_t)dim, sizeof *sd);
    struct invar_params *p = invar_params_create();
    struct invar_graph *g = invar_graph_create(16u << 20);
    struct invar_optim *opt = NULL;
    enum invar_status st = INVAR_OK;
    if (!xtr || !xte || !perm || !mu || !sd || !p || !g) {
        st = invar_error_set(t->err, INVAR_ERR_NOMEM, "linear probe: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < ntr; i++)
        for (int64_t j = 0; j < dim; j++) {
            mu[j] += ftr[i * dim + j];
            sd[j] += (double)ftr[i * dim + j] * ftr[i * dim + j];
        }
    for (int64_t j = 0; j < dim; j++) {
        mu[j] /= (double)ntr;
        double v = sd[j] / (double)ntr - mu[j] * mu[j];
        sd[j] = sqrt(v > 1e-12 ? v : 1e-12);
    }
    for (int64_t i = 0; i < ntr; i++)
        for (int64_t j = 0; j < dim; j++)
            xtr[i * dim + j] = (float)((ftr[i * dim + j] - mu[j]) / sd[j]);
    for (int64_t i = 0; i < nte; i++)
        for (int64_t j = 0; j < dim; j++)
            xte[i * dim + j] = (float)((fte[i * dim + j] - mu[j]) / sd[j]);

    struct invar_tensor *w = invar_params_add(p, "probe.w", 2, (int64_t[]){nc, dim},
                                              invar_init_zeros(), 0);
    struct invar_tensor *b = invar_params_add(p, "probe.b", 1, (int64_t[]){nc},
                                              invar_init_zeros(), INVAR_P_NO_DECAY);
    st = invar_params_finalize(p, t->job->seed, t->err);
    if (st != INVAR_OK)
        goto done;
    struct invar_optim_config oc = {.kind = INVAR_OPTIM_ADAMW, .lr = ec->linear_lr,
                                    .weight_decay = ec->linear_wd, .beta1 = 0.9, .beta2 = 0.999,
                                    .eps = 1e-8, .schedule = INVAR_SCHED_COSINE};
    st = invar_optim_create(&opt, &oc, &p, 1, t->err);
    if (st != INVAR_OK)
        goto done;
    int64_t bs = ec->linear_batch > 0 ? ec->linear_batch : 256;
    int64_t per_epoch = (ntr + bs - 1) / bs, total = per_epoch * ec->linear_epochs, step = 0;
    struct invar_rng rng;
    for (int64_t e = 0; e < ec->linear_epochs; e++) {
        for (int64_t i = 0; i < ntr; i++)
            perm[i] = i;
        invar_rng_init(&rng, t->job->seed, invar_rng_stream((uint64_t)e, 0x11ea, 0, 0));
        invar_rng_permutation(&rng, perm, ntr);
        for (int64_t s = 0; s < ntr; s += bs, step++) {
            int64_t m = ntr - s < bs ? ntr - s : bs;
            invar_graph_reset(g);
            struct invar_tensor *x = invar_graph_tensor(g, 2, (int64_t[]){m, dim});
            int32_t *y = invar_arena_alloc(invar_graph_arena(g), (size_t)m * sizeof *y);
            const int32_t *labels = invar_dataset_labels(t->train);
            for (int64_t i = 0; i < m; i++) {
                memcpy(x->data + i * dim, xtr + perm[s + i] * dim, (size_t)dim * sizeof(float));
                y[i] = labels[perm[s + i]];
            }
            struct invar_tensor *loss = invar_cross_entropy(g, invar_linear(g, x, w, b), y);
            invar_params_zero_grad(p);
            invar_graph_backward(g, loss);
            invar_optim_step(opt, invar_optim_lr(&oc, step, total));
        }
    }
    /* accuracy */
    int64_t correct = 0;
    const int32_t *yte = invar_dataset_labels(t->test);
    invar_graph_set_grad(g, 0);
    for (int64_t s = 0; s < nte; s += 1000) {
        int64_t m = nte - s < 1000 ? nte - s : 1000;
        invar_graph_reset(g);
        struct invar_tensor *x = invar_graph_tensor(g, 2, (int64_t[]){m, dim});
        memcpy(x->data, xte + s * dim, (size_t)(m * dim) * sizeof(float));
        struct invar_tensor *logits = invar_linear(g, x, w, b);
        for (int64_t i = 0; i < m; i++) {
            int32_t best = 0;
            for (int32_t c = 1; c < nc; c++)
                if (logits->data[i * nc + c] > logits->data[i * nc + best])
                    best = c;
            correct += best == yte[s + i];
        }
    }
    *top1 = 100.0 * (double)correct / (double)nte;
done:
    invar_optim_destroy(opt);
    invar_graph_destroy(g);
    invar_params_destroy(p);
    free(xtr), free(xte), free(perm), free(mu), free(sd);
    return st;
}

/* Features of the training and test splits as `which` chooses, images at size (0: as
 * stored), with precise_bn > 0 under batch-norm statistics recomputed on that many training
 * images (the running ones are put back after): *ftr, *fte malloc'ed. */
static enum invar_status embed_splits(struct trainer *t, int which, int64_t size,
                                      int64_t precise_bn, float **ftr, float **fte, int64_t *dim)
{
    int64_t ntr = invar_dataset_count(t->train), nte = invar_dataset_count(t->test);
    *dim = encoder_out_dim(t->online, which);
    *ftr = malloc((size_t)(ntr * *dim) * sizeof **ftr);
    *fte = malloc((size_t)(nte * *dim) * sizeof **fte);
    if (!*ftr || !*fte)
        return invar_error_set(t->err, INVAR_ERR_NOMEM, "evaluation: out of memory");
    struct invar_params *p = invar_encoder_params(t->online);
    const size_t nbuf = invar_params_buffer_numel(p);
    float *running = NULL;
    enum invar_status st = INVAR_OK;
    if (precise_bn > 0 && nbuf > 0) {
        running = malloc(nbuf * sizeof *running);
        if (!running)
            return invar_error_set(t->err, INVAR_ERR_NOMEM, "evaluation: out of memory");
        memcpy(running, invar_params_buffers(p), nbuf * sizeof *running);
        if (t->recal_n == precise_bn && t->recal_size == size) {
            memcpy(invar_params_buffers(p), t->recal, nbuf * sizeof *running);
        } else {
            st = encoder_recalibrate_bn(t->online, t->train, t->pmean, t->pstd, size, precise_bn,
                                        t->g, t->err);
            if (st == INVAR_OK && (t->recal || (t->recal = malloc(nbuf * sizeof *t->recal)))) {
                memcpy(t->recal, invar_params_buffers(p), nbuf * sizeof *t->recal);
                t->recal_size = size, t->recal_n = precise_bn;
            }
        }
    }
    if (st == INVAR_OK)
        st = encoder_embed(t->online, t->train, t->pmean, t->pstd, *ftr, which, size, t->g,
                           t->err);
    if (st == INVAR_OK)
        st = encoder_embed(t->online, t->test, t->pmean, t->pstd, *fte, which, size, t->g,
                           t->err);
    if (running) { /* training goes on, and the checkpoint keeps, the running statistics */
        memcpy(invar_params_buffers(p), running, nbuf * sizeof *running);
        free(running);
    }
    return st;
}

/* kNN on the test split (and, at the end, the linear probe); logs at (step, epoch). Each
 * protocol classifies the features its eval.*.features names, of images at its eval.*.size;
 * the collapse monitor watches the encoder's output at kNN's size. */
static enum invar_status evaluate(struct trainer *t, int64_t step, int64_t epoch, int final,
                                  struct invar_result *res)
{
    const struct invar_eval_config *ec = &t->job->eval;
    int64_t ntr = invar_dataset_count(t->train), nte = invar_dataset_count(t->test);
    float *ftr = NULL, *fte = NULL, *htr = NULL, *hte = NULL;
    int64_t dim = 0, hdim = 0;
    t->recal_n = 0; /* the weights have moved since the last evaluation */
    if (t->job->on_progress)
        t->job->on_progress(t->job->user, &(struct invar_progress){
                                              .epoch = epoch, .epochs = t->job->epochs,
                                              .phase = "knn"});
    enum invar_status st =
        embed_splits(t, (int)ec->knn_features, ec->knn_size, ec->knn_precise_bn, &ftr, &fte, &dim);
    if (st != INVAR_OK)
        goto done;
    double top1, top5;
    st = invar_knn_eval(ftr, invar_dataset_labels(t->train), ntr, fte,
                        invar_dataset_labels(t->test), nte, dim,
                        invar_dataset_num_classes(t->train), ec->knn_k, ec->knn_t, &top1, &top5,
                        t->err);
    if (st != INVAR_OK)
        goto done;
    emit(t, "knn_top1", step, epoch, top1);
    emit(t, "knn_top5", step, epoch, top5);
    if (ec->knn_features == INVAR_FEATURES_HEAD) {
        emit(t, "collapse_std", step, epoch, invar_collapse_std(ftr, ntr, dim));
    } else {
        st = embed_splits(t, INVAR_FEATURES_HEAD, ec->knn_size, ec->knn_precise_bn, &htr, &hte,
                          &hdim);
        if (st != INVAR_OK)
            goto done;
        emit(t, "collapse_std", step, epoch, invar_collapse_std(htr, ntr, hdim));
    }
    res->knn_top1 = top1;
    res->knn_top5 = top5;
    if (final && ec->linear_epochs > 0) {
        if (t->job->on_progress)
            t->job->on_progress(t->job->user, &(struct invar_progress){
                                                  .epoch = epoch, .epochs = t->job->epochs,
                                                  .phase = "linear"});
        if (ec->linear_features != ec->knn_features || ec->linear_size != ec->knn_size ||
            ec->linear_precise_bn != ec->knn_precise_bn) {
            free(ftr), free(fte);
            ftr = fte = NULL;
            st = embed_splits(t, (int)ec->linear_features, ec->linear_size, ec->linear_precise_bn,
                              &ftr, &fte, &dim);
            if (st != INVAR_OK)
                goto done;
        }
        double lin = 0;
        st = linear_probe(t, ftr, fte, dim, &lin);
        if (st == INVAR_OK) {
            emit(t, "linear_top1", step, epoch, lin);
            res->linear_top1 = lin;
        }
    }
done:
    free(ftr), free(fte), free(htr), free(hte);
    return st;
}

/* ---- setup and the loop ------------------------------------------------------------------- */

enum invar_status invar_job_open_splits(const struct invar_job *job, struct invar_dataset **train,
                                        struct invar_dataset **test, struct invar_error *err)
{
    *train = NULL;
    if (test)
        *test = NULL;
    enum invar_status st = invar_dataset_open(train, &job->dataset, "train", job->limit, err);
    if (st != INVAR_OK)
        return st;
    if (job->holdout > 0) {
        int64_t n = invar_dataset_count(*train);
        struct invar_dataset *held = NULL;
        if (job->holdout >= n)
            st = invar_error_set(err, INVAR_ERR_CONFIG,
                                 "data.holdout (%lld) leaves nothing to train on: the training "
                                 "split has %lld samples",
                                 (long long)job->holdout, (long long)n);
        else
            st = invar_dataset_split_off(*train, job->holdout, &held, err);
        if (st == INVAR_OK && test)
            *test = held;
        else
            invar_dataset_destroy(held);
    } else if (test) {
        st = invar_dataset_open(test, &job->dataset, "test", job->test_limit, err);
    }
    if (st != INVAR_OK) {
        invar_dataset_destroy(*train);
        *train = NULL;
    }
    return st;
}

static void metric_relay(void *user, const char *key, double value)
{
    struct trainer *t = user;
    emit(t, key, t->metric_step, t->metric_epoch, value);
}

static enum invar_status setup(struct trainer *t)
{
    const struct invar_job *job = t->job;
    enum invar_status st;
    st = invar_job_open_splits(job, &t->train, &t->test, t->err);
    if (st != INVAR_OK)
        return st;
    const int64_t *shape = invar_dataset_shape(t->train);
    if (shape[0] > 4)
        return invar_error_set(t->err, INVAR_ERR_CONFIG, "normalize: at most 4 channels");
    if (job->normalize) {
        invar_dataset_stats(t->train, t->mean, t->std);
        t->pmean = t->mean;
        t->pstd = t->std;
    }
    if (invar_dataset_count(t->train) < job->batch_size)
        return invar_error_set(t->err, INVAR_ERR_CONFIG,
                               "train.batch_size (%lld) is larger than the training set (%lld)",
                               (long long)job->batch_size,
                               (long long)invar_dataset_count(t->train));
    /* The encoder sees the augmented view's shape (a crop may resize). */
    int64_t in_shape[3];
    invar_view_out_shape(&job->views[0], shape, in_shape);
    st = encoder_create(&t->online, &job->encoder, in_shape, job->seed, t->err);
    if (st != INVAR_OK)
        return st;
    /* The evaluations' images, as stored or resized, must fit the encoder: said now, not
     * after the training. */
    int64_t knn_shape[3], lin_shape[3];
    eval_image_shape(shape, job->eval.knn_size, knn_shape);
    eval_image_shape(shape, job->eval.linear_size, lin_shape);
    st = encoder_check_input(t->online, knn_shape, "eval.knn.size", t->err);
    if (st == INVAR_OK && job->eval.linear_epochs > 0)
        st = encoder_check_input(t->online, lin_shape, "eval.linear.size", t->err);
    if (st != INVAR_OK)
        return st;

    t->steps_per_epoch = invar_dataset_count(t->train) / job->batch_size; /* drop_last */
    t->ctx = (struct invar_objective_ctx){
        .dataset_size = invar_dataset_count(t->train),
        .batch_size = job->batch_size,
        .n_views = job->n_views,
        .feature_dim = t->online->dim,
        .steps_per_epoch = t->steps_per_epoch,
        .epochs = job->epochs,
        .seed = job->seed,
        .online = t->online,
        .params = invar_params_create(),
        .encoder_clone = ctx_clone,
        .embed_train = ctx_embed_train,
        .label_nmi = ctx_label_nmi,
        .framework = t,
    };
    if (!t->ctx.params)
        return invar_error_set(t->err, INVAR_ERR_NOMEM, "objective: out of memory");
    const struct invar_objective_ops *ops = job->objective.plugin->ops.objective;
    st = ops->create(job->objective.config, &t->ctx, &t->obj, t->err);
    if (st == INVAR_OK)
        st = invar_params_finalize(t->ctx.params, job->seed ^ 0x0b1ec7ULL, t->err);
    if (st == INVAR_OK && ops->init_state)
        st = ops->init_state(t->obj, t->err);
    if (st != INVAR_OK) {
        invar_error_prefix(t->err, "objective %s", job->objective.plugin->name);
        return st;
    }

    t->ocfg = job->optim;
    t->total_steps = t->steps_per_epoch * job->epochs;
    t->ocfg.warmup_steps = (int64_t)(job->warmup_epochs * (double)t->steps_per_epoch);
    t->ocfg.step_every = (int64_t)(job->step_epochs * (double)t->steps_per_epoch);
    struct invar_params *groups[2] = {invar_encoder_params(t->online), t->ctx.params};
    st = invar_optim_create(&t->opt, &t->ocfg, groups, 2, t->err);
    if (st != INVAR_OK)
        return st;

    struct invar_loader_config lc = {
        .views = job->views, .n_views = job->n_views, .batch_size = job->batch_size,
        .seed = job->seed, .threads = 1, .shuffle = 1, .drop_last = 1,
        .mean = t->pmean, .std = t->pstd};
    st = invar_loader_create(&t->loader, t->train, &lc, t->err);
    if (st != INVAR_OK)
        return st;
    t->g = invar_graph_create(256u << 20);
    if (!t->g)
        return invar_error_set(t->err, INVAR_ERR_NOMEM, "graph: out of memory");
    if (job->resume) {
        st = checkpoint_load(t);
        if (st != INVAR_OK)
            return st;
    }
    return INVAR_OK;
}

static void teardown(struct trainer *t)
{
    invar_loader_destroy(t->loader);
    if (t->obj)
        t->job->objective.plugin->ops.objective->destroy(t->obj);
    invar_optim_destroy(t->opt);
    invar_params_destroy(t->ctx.params);
    for (int i = 0; i < t->n_clones; i++)
        encoder_destroy(t->clones[i]);
    encoder_destroy(t->online);
    invar_graph_destroy(t->g);
    free(t->recal);
    invar_dataset_destroy(t->train);
    invar_dataset_destroy(t->test);
}

enum invar_status invar_train(const struct invar_job *job, struct invar_result *res,
                              struct invar_error *err)
{
    struct trainer tr = {.job = job, .err = err};
    struct trainer *t = &tr;
    *res = (struct invar_result){.knn_top1 = -1, .knn_top5 = -1, .linear_top1 = -1};
    if (job->threads > 0)
        openblas_set_num_threads(job->threads);
    enum invar_status st = setup(t);
    const struct invar_objective_ops *ops = job->objective.plugin->ops.objective;
    double t_start = now_s();
    int64_t global = t->start_epoch * t->steps_per_epoch;
    for (int64_t epoch = t->start_epoch; st == INVAR_OK && epoch < job->epochs; epoch++) {
        invar_loader_start_epoch(t->loader, epoch);
        if (ops->epoch_begin) { /* clustering objectives recompute their pseudo-labels */
            st = ops->epoch_begin(t->obj, epoch, err);
            if (st != INVAR_OK) {
                invar_error_prefix(err, "objective %s", job->objective.plugin->name);
                break;
            }
        }
        double loss_sum = 0, t_epoch = now_s(), lr = 0;
        struct loss_window win = {0};
        int64_t step = 0, images = 0;
        const struct invar_batch *b;
        while ((b = invar_loader_next(t->loader)) != NULL) {
            if (job->stop && *job->stop) {
                st = invar_error_set(err, INVAR_ERR_INTERRUPTED,
                                     "interrupted at epoch %lld step %lld", (long long)epoch + 1,
                                     (long long)step);
                break;
            }
            invar_graph_reset(t->g);
            struct invar_tensor *views[INVAR_MAX_VIEWS];
            for (int v = 0; v < job->n_views; v++) { /* leaves over the loader's buffers */
                views[v] = invar_arena_alloc(invar_graph_arena(t->g), sizeof *views[v]);
                *views[v] = b->views[v];
            }
            lr = invar_optim_lr(&t->ocfg, global, t->total_steps);
            struct invar_step_info info = {epoch, step, global, t->total_steps, lr};
            struct invar_tensor *loss = ops->loss(t->obj, t->g, views, job->n_views,
                                                  b->indices, &info);
            double l = loss->data[0];
            if (!isfinite(l)) {
                emit(t, "loss", global, epoch, l);
                st = invar_error_set(err, INVAR_ERR_DIVERGED,
                                     "loss is %s at epoch %lld step %lld", isnan(l) ? "nan" : "inf",
                                     (long long)epoch + 1, (long long)step);
                break;
            }
            invar_params_zero_grad(invar_encoder_params(t->online));
            invar_params_zero_grad(t->ctx.params);
            invar_graph_backward(t->g, loss);
            const double grad_norm = job->log_every > 0 ? invar_optim_grad_norm(t->opt) : 0;
            invar_optim_step(t->opt, lr);
            if (ops->after_step)
                ops->after_step(t->obj, t->g, &info);
            loss_sum += l;
            images += b->size;
            step++;
            global++;
            window_add(&win, l, grad_norm);
            if (job->log_every > 0 && step % job->log_every == 0)
                window_emit(t, &win, global, epoch);
            if (job->on_progress) {
                double el = now_s() - t_start, ep = now_s() - t_epoch;
                double rate = ep > 0 ? (double)images / ep : 0;
                int64_t left = t->total_steps - global;
                double step_s = (double)step > 0 ? ep / (double)step : 0;
                job->on_progress(job->user, &(struct invar_progress){
                                                .epoch = epoch, .epochs = job->epochs,
                                                .step = step, .steps = t->steps_per_epoch,
                                                .loss = loss_sum / (double)step,
                                                .img_per_s = rate, .elapsed_s = el,
                                                .eta_s = step_s * (double)left,
                                                .phase = "train"});
            }
        }
        if (st != INVAR_OK)
            break;
        if (job->log_every > 0 && win.n > 0) /* the epoch's last steps, fewer than log_every */
            window_emit(t, &win, global, epoch);
        double secs = now_s() - t_epoch;
        res->final_loss = step ? loss_sum / (double)step : 0;
        emit(t, "loss", global, epoch, res->final_loss);
        emit(t, "lr", global, epoch, lr);
        emit(t, "img_per_s", global, epoch, secs > 0 ? (double)images / secs : 0);
        if (ops->metrics) {
            t->metric_step = global;
            t->metric_epoch = epoch;
            ops->metrics(t->obj, metric_relay, t);
        }
        res->epochs_done = epoch + 1;
        int last = epoch + 1 == job->epochs;
        if (!last && job->eval.knn_every > 0 && (epoch + 1) % job->eval.knn_every == 0)
            st = evaluate(t, global, epoch, 0, res);
        if (st == INVAR_OK && job->checkpoint_path &&
            (last || (job->checkpoint_every > 0 && (epoch + 1) % job->checkpoint_every == 0)))
            st = checkpoint_save(t, epoch + 1);
    }
    if (st == INVAR_OK)
        st = evaluate(t, global, job->epochs - 1, 1, res);
    teardown(t);
    return st;
}
