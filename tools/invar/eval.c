/* invar eval RUN [--knn] [--linear] [--cluster [--k N]] [--invariance] [eval.KEY=VALUE...]
 * and invar embed RUN --out F.npy [--split train|test] */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <invar/graph.h>
#include <invar/kmeans.h>

#include "job.h"

/* A run, its stored experiment and its checkpoint, ready to rebuild the encoder. */
struct loaded_run {
    struct invar_registry *reg;
    struct invar_store *db;
    struct invar_store_run row;
    struct cli_experiment x;
    struct cli_job j;
};

static void loaded_run_deinit(struct loaded_run *l)
{
    cli_experiment_unload(&l->x);
    invar_store_run_deinit(&l->row);
    invar_store_close(l->db);
    invar_registry_destroy(l->reg);
}

/* overrides: eval.knn.* and eval.linear.* settings over the stored experiment's (cmd_eval). */
static int loaded_run_init(struct loaded_run *l, const struct cli_globals *g, const char *ref,
                           const char *const *overrides, size_t n_overrides)
{
    struct invar_error err = {{0}};
    int64_t id;
    l->reg = cli_registry_open(g, 0);
    if (!l->reg || !(l->db = cli_store_open(g)))
        return 1;
    if (invar_store_find_run(l->db, ref, &id, &err) != INVAR_OK ||
        invar_store_get_run(l->db, id, &l->row, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    if (!l->row.checkpoint) {
        cli_error("%s: run %lld has no checkpoint", g->db, (long long)id);
        return 1;
    }
    char name[128];
    snprintf(name, sizeof name, "run %lld (%s)", (long long)id, l->row.uuid);
    if (cli_experiment_load(&l->x, name, l->row.config, overrides, n_overrides, l->reg) ||
        cli_job_init(&l->j, &l->x))
        return 1;
    return 0;
}

struct eval_ctx {
    struct invar_store *db;
    int64_t run_id;
    int failed;
};

static void eval_metric(void *user, const char *key, int64_t step, int64_t epoch, double value)
{
    struct eval_ctx *c = user;
    struct invar_error err = {{0}};
    if (invar_store_log_metric(c->db, c->run_id, key, step, epoch, value, &err) != INVAR_OK &&
        !c->failed++)
        cli_warn("%s", err.msg);
}

/* ---- clustering (--cluster) ------------------------------------------------------------- */

/* The clustering protocol. It is fixed, not configurable, so that cluster_acc and cluster_nmi
 * of two runs are comparable and a run's figures are reproducible to the bit: the test split's
 * features (the held-out training samples under data.holdout), L2-normalised (the geometry
 * kNN's cosine similarity uses) and not PCA-whitened, k-means++ then Lloyd, restarted with
 * seeds SEED, SEED + 1, ... and the restart with the lowest inertia kept (the first one on a
 * tie). */
#define CLUSTER_SPLIT "test"
#define CLUSTER_RESTARTS 10
#define CLUSTER_ITERS 100
#define CLUSTER_SEED 1
#define CLUSTER_MAX_K 4096 /* invar_cluster_accuracy's bound on the contingency table */

struct cluster_result {
    int64_t n, dim;  /* features clustered */
    int64_t k;       /* clusters */
    int32_t classes; /* the dataset's number of classes */
    double inertia;  /* of the kept restart */
    double acc;      /* percent, Hungarian matching of clusters to classes */
    double nmi;      /* in [0, 1] */
    enum invar_eval_features which;
    int64_t size;    /* images resized to size x size; 0 = as stored */
};

/* The split every evaluation scores: the test split, or the training samples data.holdout
 * keeps out of training (invar_job_open_splits). */
static const char *split_text(const struct invar_job *job)
{
    return job->holdout > 0 ? "holdout" : "test";
}

/* What --features chose, as the protocol rows describe it. */

static const char *features_text(enum invar_eval_features which)
{
    return which == INVAR_FEATURES_BACKBONE
               ? "online encoder backbone (the representation under its head), eval mode, "
                 "un-augmented normalised images"
               : "online encoder output, eval mode, un-augmented normalised images";
}

/* Unit rows; an all-zero row stays zero (it has no direction to keep). */

/* k-means on the run's test features (k = the dataset's classes when k_opt is 0), scored
 * against the true labels. Prints and returns nonzero on failure. */
static int cluster_eval(const struct loaded_run *l, int64_t k_opt,
                        enum invar_eval_features which, int64_t size, struct cluster_result *r)
{
    const struct invar_job *job = &l->j.job;
    struct invar_error err = {{0}};
    struct invar_embedding e = {0};
    float *cent = NULL;
    int32_t *assign = NULL, *best = NULL;
    int rc = 1;
    r->which = which;
    r->size = size;
    if (invar_checkpoint_embed(job, l->row.checkpoint, CLUSTER_SPLIT, which, size, &e, &err) !=
        INVAR_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    /* The dataset's declared class count: a limited test split may miss a class among its
     * labels, and k still follows the dataset. */
    r->classes = e.classes;
    if (r->classes < 1 || r->classes > CLUSTER_MAX_K) {
        cli_error("eval: the dataset has %ld classes: --cluster scores clusters against 1 to %d "
                  "classes",
                  (long)r->classes, CLUSTER_MAX_K);
        goto done;
    }
    r->k = k_opt > 0 ? k_opt : r->classes; /* k_opt is within [1, CLUSTER_MAX_K] */
    r->n = e.n;
    r->dim = e.dim;
    if (r->k > e.n) {
        cli_error("eval: --k %lld is more clusters than the %lld samples of the %s split",
                  (long long)r->k, (long long)e.n, split_text(job));
        goto done;
    }
    for (int64_t i = 0; i < e.n; i++)
        if (e.labels[i] < 0 || e.labels[i] >= r->classes) {
            cli_error("eval: sample %lld of the %s split has label %ld outside its %ld classes",
                      (long long)i, split_text(job), (long)e.labels[i], (long)r->classes);
            goto done;
        }
    invar_l2_normalize_rows(e.features, e.n, e.dim);
    cent = malloc((size_t)(r->k * e.dim) * sizeof *cent); // (k, D)
    assign = malloc((size_t)e.n * sizeof *assign);        // (N) of the current restart
    best = malloc((size_t)e.n * sizeof *best);            // (N) of the kept one
    if (!cent || !assign || !best) {
        cli_error("eval: out of memory for k-means (%lld x %lld features)", (long long)e.n,
                  (long long)e.dim);
        goto done;
    }
    r->inertia = INFINITY;
    for (int64_t s = 0; s < CLUSTER_RESTARTS; s++) {
        double inertia;
        if (invar_kmeans(e.features, e.n, e.dim, r->k, CLUSTER_ITERS, CLUSTER_SEED + (uint64_t)s,
                         cent, assign, &inertia, &err) != INVAR_OK) {
            cli_error("%s", err.msg);
            goto done;
        }
        if (inertia < r->inertia) {
            r->inertia = inertia;
            memcpy(best, assign, (size_t)e.n * sizeof *best);
        }
    }
    /* Accuracy matches clusters to classes one-to-one on a square table: with fewer clusters
     * than classes, the classes left unmatched count as misses. */
    int64_t side = r->k > r->classes ? r->k : r->classes;
    double acc;
    if (invar_cluster_accuracy(best, e.labels, e.n, side, &acc, &err) != INVAR_OK ||
        invar_nmi(best, e.labels, e.n, &r->nmi, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    r->acc = 100.0 * acc;
    rc = 0;
done:
    free(cent), free(assign), free(best);
    invar_embedding_deinit(&e);
    return rc;
}

/* The step of the run's last loss, which is the step of its final kNN evaluation: where the
 * figures computed here are stored, beside the trainer's own. */
static int final_step(const struct loaded_run *l, int64_t *step)
{
    struct invar_error err = {{0}};
    struct invar_store_metric_list ms = {0};
    if (invar_store_read_metrics(l->db, l->row.id, "loss", &ms, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    *step = ms.count ? ms.items[ms.count - 1].step : 0;
    invar_store_metric_list_deinit(&ms);
    return 0;
}

/* The protocol beside the results (DESIGN §6), then the two metrics at the run's last step
 * and epoch, where the trainer's own final evaluation logs. A later --cluster with another
 * --k replaces these params: they describe the latest cluster_* rows. */
static int cluster_store(const struct loaded_run *l, int64_t epoch, const struct cluster_result *r)
{
    struct invar_error err = {{0}};
    char k[32], restarts[32], iters[32], seed[32], size[32];
    snprintf(k, sizeof k, "%lld", (long long)r->k);
    snprintf(size, sizeof size, "%lld", (long long)r->size);
    snprintf(restarts, sizeof restarts, "%d", CLUSTER_RESTARTS);
    snprintf(iters, sizeof iters, "%d", CLUSTER_ITERS);
    snprintf(seed, sizeof seed, "%d", CLUSTER_SEED);
    const struct invar_store_param ps[] = {
        {"eval.cluster.split", split_text(&l->j.job)},
        {"eval.cluster.features", features_text(r->which)},
        {"eval.cluster.size", size},
        {"eval.cluster.l2_normalize", "1"},
        {"eval.cluster.pca_whiten", "0"},
        {"eval.cluster.k", k},
        {"eval.cluster.init", "k-means++"},
        {"eval.cluster.restarts", restarts},
        {"eval.cluster.iters", iters},
        {"eval.cluster.seed", seed},
        {"eval.cluster.keep", "lowest inertia"},
        {"eval.cluster.match", "hungarian"},
    };
    int64_t step;
    if (final_step(l, &step))
        return 1;
    const struct invar_store_metric m[] = {
        {"cluster_acc", step, epoch, r->acc, 0},
        {"cluster_nmi", step, epoch, r->nmi, 0},
    };
    if (invar_store_log_params(l->db, l->row.id, ps, sizeof ps / sizeof ps[0], &err) != INVAR_OK ||
        invar_store_log_metrics(l->db, l->row.id, m, sizeof m / sizeof m[0], &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    return 0;
}

/* ---- invariance (--invariance) ---------------------------------------------------------- */

/* The invariance protocol, fixed like clustering's so that two runs' figures compare and a
 * run's figures reproduce to the bit. For each distinct augmentation step of the experiment
 * (every entry of `augment:`, or of the per-view `views:` lists, a step repeated with the same
 * plugin, p and parameters counted once), every test image x_i (held-out training image
 * under data.holdout) is augmented by that step alone, as the loader applies it: its
 * probability p drawn first, randomness keyed by (INVARIANCE_SEED, epoch 0, sample i, view 0).
 * Both x_i and its augmented copy are normalised like the trainer's inputs and embedded by the
 * checkpoint's online encoder in eval mode; the figure is the mean over i of the cosine similarity
 * of the two features, so 1 means the features do not move at all. An all-zero feature has no
 * direction and scores 0.
 * Cosines are taken in double from the float features and clamped to [-1, 1].
 * The baseline is the same mean for two different images, x_i against x_(i + N/2) mod N, so
 * that a high figure can be told apart from features that are alike for every image. */
#define INVARIANCE_SEED 1
#define INVARIANCE_BATCH 256
#define INVARIANCE_MAX_STEPS (INVAR_MAX_VIEWS * INVAR_MAX_AUGMENTS)

struct invariance_step {
    const struct invar_plugin_use *use;
    char key[128]; /* "invariance/<plugin>" or, for a plugin with several steps, ".<k>" */
    double value;  /* mean cosine similarity, in [-1, 1] */
};

struct invariance_result {
    struct invariance_step steps[INVARIANCE_MAX_STEPS];
    size_t n;
    double baseline;
    int64_t images, dim;
    enum invar_eval_features which;
};

static int same_step(const struct invar_plugin_use *a, const struct invar_plugin_use *b)
{
    return a == b || (a->plugin == b->plugin && a->p == b->p &&
                      memcmp(a->config, b->config, a->plugin->config_size) == 0);
}

/* The experiment's distinct steps in order of first appearance, and their metric names: the
 * plugin's name, suffixed ".1", ".2", ... by order of appearance when the plugin has more than
 * one distinct step (byol's two gaussian_blur steps with p 1 and p 0.1). */
static void invariance_steps(const struct invar_job *job, struct invariance_result *r)
{
    r->n = 0;
    for (int v = 0; v < job->n_views; v++)
        for (size_t i = 0; i < job->views[v].n_augs; i++) {
            const struct invar_plugin_use *u = &job->views[v].augs[i];
            size_t j = 0;
            while (j < r->n && !same_step(r->steps[j].use, u))
                j++;
            if (j == r->n) /* cli_job_init bounds views and steps per view */
                r->steps[r->n++].use = u;
        }
    for (size_t j = 0; j < r->n; j++) {
        const char *name = r->steps[j].use->plugin->name;
        size_t nth = 0, total = 0;
        for (size_t k = 0; k < r->n; k++)
            if (!strcmp(r->steps[k].use->plugin->name, name)) {
                total++;
                if (k <= j)
                    nth++;
            }
        if (total > 1)
            snprintf(r->steps[j].key, sizeof r->steps[j].key, "invariance/%s.%zu", name, nth);
        else
            snprintf(r->steps[j].key, sizeof r->steps[j].key, "invariance/%s", name);
    }
}

/* Features (b, dim) of b images x (b, C, H, W): the encoder's output or its backbone (which),
 * inputs normalised like the trainer's when mean is set. */
static void embed_images(struct invar_encoder *enc, struct invar_graph *g, const float *x,
                         int64_t b, const int64_t shape[3], const float *mean, const float *std,
                         enum invar_eval_features which, float *out)
{
    struct invar_tensor *f = invar_encoder_embed_batch(enc, g, x, b, shape, mean, std, which);
    memcpy(out, f->data, (size_t)f->numel * sizeof *out);
}

/* Cosine similarity in double; 0 when either feature is all zeros (it has no direction).
 * Clamped to [-1, 1]: the rounding of float features can carry a feature's similarity with
 * itself a few ulps past 1. */
static double cosine(const float *a, const float *b, int64_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    if (aa == 0 || bb == 0)
        return 0;
    double c = ab / sqrt(aa * bb);
    return c > 1 ? 1 : c < -1 ? -1 : c;
}

/* Computes every step's figure and the baseline. Prints and returns nonzero on failure. */
static int invariance_eval(const struct loaded_run *l, enum invar_eval_features which,
                           struct invariance_result *r)
{
    const struct invar_job *job = &l->j.job;
    struct invar_error err = {{0}};
    struct invar_dataset *train = NULL, *test = NULL;
    struct invar_encoder *enc = NULL;
    struct invar_graph *g = NULL;
    float *orig = NULL, *feat = NULL, *img = NULL, *scratch = NULL;
    float mean[4], std[4];
    int rc = 1;
    invariance_steps(job, r);
    r->which = which;
    /* The training split gives the encoder's input shape and the normalisation statistics,
     * as in the trainer. */
    if (invar_job_open_splits(job, &train, &test, &err) != INVAR_OK ||
        invar_checkpoint_encoder(job, l->row.checkpoint, invar_dataset_shape(train), &enc, &err) !=
            INVAR_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    const int64_t *shape = invar_dataset_shape(test);
    if (job->normalize) {
        if (shape[0] > 4) {
            cli_error("eval: normalize: at most 4 channels");
            goto done;
        }
        invar_dataset_stats(train, mean, std);
    }
    const float *pm = job->normalize ? mean : NULL, *ps = job->normalize ? std : NULL;
    int64_t n = invar_dataset_count(test);
    int64_t dim = r->which == INVAR_FEATURES_BACKBONE ? invar_encoder_backbone_dim(enc)
                                                      : invar_encoder_dim(enc);
    r->images = n;
    r->dim = dim;
    if (n < 2) {
        cli_error("eval: --invariance needs at least 2 images in the %s split, it has %lld",
                  split_text(job), (long long)n);
        goto done;
    }
    /* The largest image any step makes, and the scratch its chain needs. */
    int64_t most = shape[0] * shape[1] * shape[2], scratch_n = 0;
    for (size_t j = 0; j < r->n; j++) {
        struct invar_view one = {r->steps[j].use, 1};
        int64_t out[3], s = invar_view_scratch_numel(&one, shape);
        invar_view_out_shape(&one, shape, out);
        if (out[0] != shape[0]) {
            cli_error("eval: %s: %s turns %lld channels into %lld: the encoder takes %lld",
                      r->steps[j].key, r->steps[j].use->plugin->name, (long long)shape[0],
                      (long long)out[0], (long long)shape[0]);
            goto done;
        }
        most = out[0] * out[1] * out[2] > most ? out[0] * out[1] * out[2] : most;
        scratch_n = s > scratch_n ? s : scratch_n;
    }
    g = invar_graph_create(64u << 20);
    orig = malloc((size_t)(n * dim) * sizeof *orig);                // (N, D)
    feat = malloc((size_t)(INVARIANCE_BATCH * dim) * sizeof *feat); // (B, D)
    img = malloc((size_t)(INVARIANCE_BATCH * most) * sizeof *img);  // (B, C, H', W')
    scratch = malloc((size_t)(scratch_n ? scratch_n : 1) * sizeof *scratch);
    if (!g || !orig || !feat || !img || !scratch) {
        cli_error("eval: out of memory for --invariance (%lld images of %lld features)",
                  (long long)n, (long long)dim);
        goto done;
    }
    invar_graph_set_grad(g, 0);
    invar_graph_set_training(g, 0);
    for (int64_t s = 0; s < n; s += INVARIANCE_BATCH) {
        int64_t b = n - s < INVARIANCE_BATCH ? n - s : INVARIANCE_BATCH;
        embed_images(enc, g, invar_dataset_sample(test, s), b, shape, pm, ps, r->which,
                     orig + s * dim);
    }
    /* Sums in sample order, in double. */
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += cosine(orig + i * dim, orig + ((i + n / 2) % n) * dim, dim);
    r->baseline = sum / (double)n;
    for (size_t j = 0; j < r->n; j++) {
        struct invar_view one = {r->steps[j].use, 1};
        int64_t out[3];
        invar_view_out_shape(&one, shape, out);
        int64_t numel = out[0] * out[1] * out[2];
        sum = 0;
        for (int64_t s = 0; s < n; s += INVARIANCE_BATCH) {
            int64_t b = n - s < INVARIANCE_BATCH ? n - s : INVARIANCE_BATCH;
            for (int64_t i = 0; i < b; i++)
                invar_view_apply(&one, INVARIANCE_SEED, 0, s + i, 0,
                                 invar_dataset_sample(test, s + i), shape, img + i * numel, scratch,
                                 scratch_n);
            embed_images(enc, g, img, b, out, pm, ps, r->which, feat);
            for (int64_t i = 0; i < b; i++)
                sum += cosine(orig + (s + i) * dim, feat + i * dim, dim);
        }
        r->steps[j].value = sum / (double)n;
    }
    rc = 0;
done:
    free(orig), free(feat), free(img), free(scratch);
    invar_graph_destroy(g);
    invar_encoder_destroy(enc);
    invar_dataset_destroy(test);
    invar_dataset_destroy(train);
    return rc;
}

/* The protocol beside the results, then one metric per step and the baseline at the run's
 * last step and epoch. */
static int invariance_store(const struct loaded_run *l, int64_t epoch,
                            const struct invariance_result *r)
{
    struct invar_error err = {{0}};
    char seed[32], images[32], batch[32];
    snprintf(seed, sizeof seed, "%d", INVARIANCE_SEED);
    snprintf(images, sizeof images, "%lld", (long long)r->images);
    snprintf(batch, sizeof batch, "%d", INVARIANCE_BATCH);
    const struct invar_store_param ps[] = {
        {"eval.invariance.split", split_text(&l->j.job)},
        {"eval.invariance.images", images},
        {"eval.invariance.features", features_text(r->which)},
        {"eval.invariance.similarity", "cosine"},
        {"eval.invariance.augment", "each distinct step alone, with its probability p"},
        {"eval.invariance.rng", "seed, epoch 0, sample index, view 0"},
        {"eval.invariance.seed", seed},
        {"eval.invariance.batch", batch},
        {"eval.invariance.baseline", "image i against image (i + N/2) mod N"},
    };
    struct invar_store_metric m[INVARIANCE_MAX_STEPS + 1];
    int64_t step;
    if (final_step(l, &step))
        return 1;
    for (size_t j = 0; j < r->n; j++)
        m[j] = (struct invar_store_metric){r->steps[j].key, step, epoch, r->steps[j].value, 0};
    m[r->n] = (struct invar_store_metric){"invariance/baseline", step, epoch, r->baseline, 0};
    if (invar_store_log_params(l->db, l->row.id, ps, sizeof ps / sizeof ps[0], &err) != INVAR_OK ||
        invar_store_log_metrics(l->db, l->row.id, m, r->n + 1, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    return 0;
}

/* ---- invar eval --------------------------------------------------------------------------- */

/* "--features head|backbone" (the names eval.knn.features takes); -1 after a message. */
static int parse_features(const char *cmd, const char *s)
{
    if (!s) {
        cli_error("%s: --features needs head or backbone", cmd);
        return -1;
    }
    if (!strcmp(s, "head"))
        return INVAR_FEATURES_HEAD;
    if (!strcmp(s, "backbone"))
        return INVAR_FEATURES_BACKBONE;
    cli_error("%s: --features %s: head (the encoder's output) or backbone (the representation "
              "under its head)",
              cmd, s);
    return -1;
}

/* What --features or --size set for kNN (and, when it ran, the probe), in the rows the run's
 * own evaluation wrote (eval.knn.<what>, eval.linear.<what>), so that the params describe the
 * latest knn_* and linear_* figures. Written after the figures. */
static int protocol_store(const struct loaded_run *l, int linear, const char *what,
                          const char *value)
{
    char knn_key[64], linear_key[64];
    snprintf(knn_key, sizeof knn_key, "eval.knn.%s", what);
    snprintf(linear_key, sizeof linear_key, "eval.linear.%s", what);
    const struct invar_store_param ps[] = {{knn_key, value}, {linear_key, value}};
    struct invar_error err = {{0}};
    if (invar_store_log_params(l->db, l->row.id, ps, linear ? 2u : 1u, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    return 0;
}

/* ---- eval.KEY=VALUE --------------------------------------------------------------------- */

#define EVAL_MAX_OVERRIDES 32

/* The evaluation's own settings are all that may change after training: the checkpoint was
 * trained with the rest. eval.knn.every schedules the monitor during training. */
static int override_check(const char *kv)
{
    size_t n = strcspn(kv, "=");
    size_t prefix = !strncmp(kv, "eval.knn.", 9) ? 9 : !strncmp(kv, "eval.linear.", 12) ? 12 : 0;
    if (!prefix || n == prefix) { /* another section, or no key after the prefix */
        cli_error("eval: `%s`: only eval.knn.* and eval.linear.* settings can change after "
                  "training (the checkpoint was trained with the others)",
                  kv);
        return 1;
    }
    if (n == strlen("eval.knn.every") && !strncmp(kv, "eval.knn.every", n)) {
        cli_error("eval: `%s`: eval.knn.every schedules the kNN monitor during training; "
                  "eval runs kNN once",
                  kv);
        return 1;
    }
    return 0;
}

/* Whether one of the overrides sets key. */
static int overrides_set(const char *const *ov, size_t n, const char *key)
{
    size_t len = strlen(key);
    for (size_t i = 0; i < n; i++)
        if (!strncmp(ov[i], key, len) && ov[i][len] == '=')
            return 1;
    return 0;
}

/* The settings this evaluation ran with, as the experiment resolved them with the overrides:
 * every eval.knn.* row (and eval.linear.* when the probe ran), written over the rows of the
 * run's own evaluation or of an earlier `invar eval`, so that the params describe the latest
 * figures (a setting overridden before and not now goes back to the run's). --features and
 * --size are written after, by protocol_store. Written after the figures. */
static int settings_store(const struct loaded_run *l, int linear, int64_t linear_epochs)
{
    struct invar_store_param ps[64];
    char epochs[32];
    snprintf(epochs, sizeof epochs, "%lld", (long long)linear_epochs);
    size_t m = 0;
    for (size_t j = 0; j < l->x.n_params && m < sizeof ps / sizeof ps[0]; j++) {
        const char *key, *value;
        cli_experiment_param(&l->x, j, &key, &value);
        if (!strncmp(key, "eval.knn.", 9) || (linear && !strncmp(key, "eval.linear.", 12))) {
            if (!strcmp(key, "eval.linear.epochs")) /* as the probe ran: 10 for the run's 0 */
                value = epochs;
            ps[m++] = (struct invar_store_param){key, value};
        }
    }
    struct invar_error err = {{0}};
    if (m && invar_store_log_params(l->db, l->row.id, ps, m, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        return 1;
    }
    return 0;
}

/* "--size N": 1 <= N <= 4096 (eval.knn.size's range but 0, which is the default already),
 * the whole argument a decimal number; -1 after a message. */
static int64_t parse_size(const char *cmd, const char *s)
{
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < 1 || v > 4096) {
        cli_error("%s: --size %s: the side the images are resized to must be an integer from 1 "
                  "to 4096",
                  cmd, s ? s : "(missing)");
        return -1;
    }
    return v;
}

/* "--k N": 1 <= N <= CLUSTER_MAX_K, the whole argument a decimal number. */
static int parse_k(const char *s, int64_t *k)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > CLUSTER_MAX_K) {
        cli_error("eval: --k %s: the number of clusters must be an integer from 1 to %d", s,
                  CLUSTER_MAX_K);
        return 1;
    }
    *k = v;
    return 0;
}

int cmd_eval(const struct cli_globals *g, int argc, char **argv)
{
    const char *ref = NULL;
    int knn = 0, linear = 0, cluster = 0, invariance = 0, feat = -1; /* -1: the run's own */
    int64_t k = 0;     /* 0: the dataset's number of classes */
    int64_t size = 0;  /* 0: the run's own (kNN, the probe); as stored (--cluster) */
    const char *overrides[EVAL_MAX_OVERRIDES];
    size_t n_over = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--features")) {
            if ((feat = parse_features("eval", i + 1 < argc ? argv[++i] : NULL)) < 0)
                return 2;
        } else if (!strcmp(argv[i], "--size")) {
            if ((size = parse_size("eval", i + 1 < argc ? argv[++i] : NULL)) < 0)
                return 2;
        } else if (!strcmp(argv[i], "--knn"))
            knn = 1;
        else if (!strcmp(argv[i], "--linear"))
            linear = 1;
        else if (!strcmp(argv[i], "--cluster"))
            cluster = 1;
        else if (!strcmp(argv[i], "--invariance"))
            invariance = 1;
        else if (!strcmp(argv[i], "--k")) {
            if (i + 1 == argc) {
                cli_error("eval: --k needs a number of clusters");
                return 2;
            }
            if (parse_k(argv[++i], &k))
                return 2;
        } else if (argv[i][0] != '-' && strchr(argv[i], '=')) {
            if (override_check(argv[i]))
                return 2;
            if (n_over == EVAL_MAX_OVERRIDES) {
                cli_error("eval: more than %d settings", EVAL_MAX_OVERRIDES);
                return 2;
            }
            overrides[n_over++] = argv[i];
        } else if (argv[i][0] != '-' && !ref)
            ref = argv[i];
        else {
            cli_error("eval: unexpected argument `%s` (see `invar eval --help`)", argv[i]);
            return 2;
        }
    }
    if (!ref) {
        cli_error("eval: which run? (an id, a uuid prefix or `latest`)");
        return 2;
    }
    if (k && !cluster) {
        /* Not silently ignored, and not taken for kNN's k (the experiment's eval.knn.k). */
        cli_error("eval: --k sets the number of clusters and needs --cluster");
        return 2;
    }
    /* No flag at all: the trainer's own final evaluation, kNN and the linear probe. */
    if (!knn && !linear && !cluster && !invariance)
        knn = linear = 1;
    if (size && !knn && !linear && !cluster) {
        /* Not silently ignored: --invariance compares the images as the augmentations make
         * them. */
        cli_error("eval: --size applies to --knn, --linear and --cluster, not --invariance");
        return 2;
    }
    for (size_t i = 0; i < n_over; i++) {
        /* Not silently ignored: the settings are kNN's and the probe's, and --size or
         * --features would overwrite a size or features given here. */
        int lin = !strncmp(overrides[i], "eval.linear.", 12);
        if (!(lin ? linear : (knn || linear))) { /* --linear runs kNN too */
            cli_error("eval: `%s` sets %s: add %s", overrides[i], lin ? "the probe" : "kNN",
                      lin ? "--linear" : "--knn");
            return 2;
        }
        const char *sub = overrides[i] + (lin ? 12 : 9);
        if ((size && !strncmp(sub, "size=", 5)) || (feat >= 0 && !strncmp(sub, "features=", 9))) {
            cli_error("eval: `%s` and --%s both set it: give one", overrides[i],
                      sub[0] == 's' ? "size" : "features");
            return 2;
        }
    }
    static struct loaded_run l;
    memset(&l, 0, sizeof l);
    int rc = 1;
    if (loaded_run_init(&l, g, ref, overrides, n_over))
        goto out;
    struct invar_error err = {{0}};
    int64_t next_epoch = 0;
    if (invar_checkpoint_next_epoch(l.row.checkpoint, &next_epoch, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        goto out;
    }
    /* Before the trainer's evaluation, which sets OpenBLAS's thread count to the
     * experiment's: GEMM's rounding depends on it, and the figures are the same to the bit
     * whether --knn or --linear come along or not. */
    /* --cluster and --invariance classify the encoder's output unless told otherwise; kNN and
     * the probe follow the experiment's eval.knn.features and eval.linear.features. */
    const enum invar_eval_features which = feat < 0 ? INVAR_FEATURES_HEAD
                                                    : (enum invar_eval_features)feat;
    static struct invariance_result ir;
    if (invariance &&
        (invariance_eval(&l, which, &ir) || invariance_store(&l, next_epoch - 1, &ir)))
        goto out;
    struct invar_result res = {.knn_top1 = -1, .knn_top5 = -1, .linear_top1 = -1};
    if (knn || linear) {
        /* Resuming at the checkpoint's own epoch trains nothing and evaluates: the trainer's
         * evaluation, with its protocol, on the restored encoder. */
        struct invar_job *job = &l.j.job;
        job->epochs = next_epoch;
        job->resume = 1;
        job->checkpoint_path = l.row.checkpoint;
        job->eval.knn_every = 0;
        if (!linear)
            job->eval.linear_epochs = 0;
        else if (job->eval.linear_epochs == 0) {
            if (overrides_set(overrides, n_over, "eval.linear.epochs")) {
                cli_error("eval: eval.linear.epochs=0 trains no probe: drop --linear or give "
                          "a number of epochs");
                goto out;
            }
            job->eval.linear_epochs = 10;
        }
        if (feat >= 0)
            job->eval.knn_features = job->eval.linear_features = which;
        if (size)
            job->eval.knn_size = job->eval.linear_size = size;
        struct eval_ctx c = {l.db, l.row.id, 0};
        job->on_metric = eval_metric;
        job->user = &c;
        if (invar_train(job, &res, &err) != INVAR_OK) {
            cli_error("%s", err.msg);
            goto out;
        }
        char size_text[32];
        snprintf(size_text, sizeof size_text, "%lld", (long long)size);
        if (settings_store(&l, linear, job->eval.linear_epochs))
            goto out;
        if (feat >= 0 && protocol_store(&l, linear, "features",
                                        which == INVAR_FEATURES_BACKBONE ? "backbone" : "head"))
            goto out;
        if (size && protocol_store(&l, linear, "size", size_text))
            goto out;
    }
    struct cluster_result cr = {0};
    if (cluster &&
        (cluster_eval(&l, k, which, size, &cr) || cluster_store(&l, next_epoch - 1, &cr)))
        goto out;
    printf("run %lld epoch %lld", (long long)l.row.id, (long long)next_epoch);
    if (knn || linear) /* the trainer's evaluation always includes kNN */
        printf(" knn_top1 %.2f knn_top5 %.2f", res.knn_top1, res.knn_top5);
    if (res.linear_top1 >= 0)
        printf(" linear_top1 %.2f", res.linear_top1);
    if (cluster)
        printf(" cluster_acc %.2f cluster_nmi %.4f", cr.acc, cr.nmi);
    printf("\n");
    if (cluster)
        fprintf(stderr,
                "cluster: k-means, k %lld, %lld x %lld L2-normalised %s features, best of %d "
                "restarts (inertia %.6g), %ld classes\n",
                (long long)cr.k, (long long)cr.n, (long long)cr.dim, split_text(&l.j.job),
                CLUSTER_RESTARTS, cr.inertia, (long)cr.classes);
    /* One line per figure, the metric's name then its value, so that a script can read them
     * as it reads the database. */
    for (size_t j = 0; invariance && j < ir.n; j++)
        printf("%s %.6f\n", ir.steps[j].key, ir.steps[j].value);
    if (invariance) {
        printf("invariance/baseline %.6f\n", ir.baseline);
        fprintf(stderr,
                "invariance: mean cosine similarity over the %lld %s images (%lld features) of "
                "each image and its augmented copy (baseline: another image)\n",
                (long long)ir.images, split_text(&l.j.job), (long long)ir.dim);
    }
    rc = 0;
out:
    loaded_run_deinit(&l);
    return rc;
}

/* NumPy .npy version 1.0: magic, a little-endian u16 header length, a Python dict literal
 * padded with spaces so the data starts on a 64-byte boundary, then the raw array. */
static int npy_write(const char *path, const char *descr, int64_t rows, int64_t cols,
                     const void *data, size_t elem)
{
    char dict[256];
    int n = cols > 0 ? snprintf(dict, sizeof dict,
                                "{'descr': '%s', 'fortran_order': False, 'shape': (%lld, %lld), }",
                                descr, (long long)rows, (long long)cols)
                     : snprintf(dict, sizeof dict,
                                "{'descr': '%s', 'fortran_order': False, 'shape': (%lld,), }",
                                descr, (long long)rows);
    size_t total = 10 + (size_t)n + 1, pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    FILE *f = fopen(path, "wb");
    if (!f) {
        cli_error("%s: %s", path, strerror(errno));
        return 1;
    }
    unsigned char pre[10] = {0x93,
                             'N',
                             'U',
                             'M',
                             'P',
                             'Y',
                             1,
                             0,
                             (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    size_t count = (size_t)(rows * (cols > 0 ? cols : 1));
    int ok =
        fwrite(pre, 1, sizeof pre, f) == sizeof pre && fwrite(dict, 1, (size_t)n, f) == (size_t)n;
    for (size_t i = 0; ok && i < pad; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF && fwrite(data, elem, count, f) == count;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok) {
        cli_error("%s: write failed: %s", path, strerror(errno));
        return 1;
    }
    return 0;
}

int cmd_embed(const struct cli_globals *g, int argc, char **argv)
{
    const char *ref = NULL, *out = NULL, *split = "test";
    int feat = INVAR_FEATURES_HEAD;
    int64_t size = 0; /* as stored */
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--features")) {
            if ((feat = parse_features("embed", i + 1 < argc ? argv[++i] : NULL)) < 0)
                return 2;
            continue;
        }
        if (!strcmp(argv[i], "--size")) {
            if ((size = parse_size("embed", i + 1 < argc ? argv[++i] : NULL)) < 0)
                return 2;
            continue;
        }
        const char **opt = !strcmp(argv[i], "--out")     ? &out
                           : !strcmp(argv[i], "-o")      ? &out
                           : !strcmp(argv[i], "--split") ? &split
                                                         : NULL;
        if (opt && i + 1 < argc)
            *opt = argv[++i];
        else if (argv[i][0] != '-' && !ref)
            ref = argv[i];
        else {
            cli_error("embed: unexpected argument `%s` (see `invar embed --help`)", argv[i]);
            return 2;
        }
    }
    if (!ref || !out) {
        cli_error("embed: usage: invar embed RUN --out F.npy [--split train|test] "
                  "[--features head|backbone] [--size N]");
        return 2;
    }
    size_t len = strlen(out);
    if (len < 4 || strcmp(out + len - 4, ".npy") != 0 || len > 4000) {
        cli_error("embed: %s: the output name must end in .npy", out);
        return 2;
    }
    static struct loaded_run l;
    memset(&l, 0, sizeof l);
    struct invar_embedding e = {0};
    int rc = 1;
    if (loaded_run_init(&l, g, ref, NULL, 0))
        goto done;
    struct invar_error err = {{0}};
    if (invar_checkpoint_embed(&l.j.job, l.row.checkpoint, split, (enum invar_eval_features)feat,
                               size, &e, &err) != INVAR_OK) {
        cli_error("%s", err.msg);
        goto done;
    }
    char labels[4200];
    snprintf(labels, sizeof labels, "%.*s.labels.npy", (int)(len - 4), out);
    if (npy_write(out, "<f4", e.n, e.dim, e.features, sizeof(float)) ||
        npy_write(labels, "<i4", e.n, 0, e.labels, sizeof(int32_t)))
        goto done;
    fprintf(stderr, "%s: %lld x %lld float32 (%s split); labels in %s\n", out, (long long)e.n,
            (long long)e.dim, strcmp(split, "test") == 0 ? split_text(&l.j.job) : split, labels);
    rc = 0;
done:
    invar_embedding_deinit(&e);
    loaded_run_deinit(&l);
    return rc;
}
