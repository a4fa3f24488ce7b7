/* invar/train.h — one training run from start (or a checkpoint) to evaluation.
 *
 *     struct invar_job job = { .seed = 1, .dataset = {idx, idx_cfg}, .views = views,
 *                              .n_views = 2, .encoder = {convnet, cfg}, .objective = {moco, cfg},
 *                              .optim = optim_cfg, .epochs = 20, .batch_size = 256, ... ,
 *                              .on_metric = log_to_db, .user = db };
 *     enum invar_status st = invar_train(&job, &result, &err);
 *     // INVAR_ERR_DIVERGED: the loss went NaN/inf (a result, not a crash)
 *     // INVAR_ERR_INTERRUPTED: *job.stop was raised; the last checkpoint is intact
 *
 * The trainer owns the whole loop: it opens the dataset splits, creates the encoder, the
 * objective (which may clone the encoder), the optimizer and the loader; steps through the
 * epochs logging loss, lr and img/s (and every log_every steps, over the steps since the last
 * such row, the mean and the worst loss and the largest gradient norm); runs the kNN monitor;
 * writes checkpoints atomically; and evaluates at the end (weighted kNN and a linear probe on
 * the test split). Every number it produces goes through on_metric, nothing is printed.
 */
#ifndef INVAR_TRAIN_H
#define INVAR_TRAIN_H

#include <signal.h>

#include "data.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

struct invar_progress {
    int64_t epoch, epochs;      /* 0-based epoch in progress */
    int64_t step, steps;        /* within the epoch */
    double loss;                /* running mean over the epoch so far */
    double img_per_s;
    double elapsed_s, eta_s;
    const char *phase;          /* "train", "knn", "linear" */
};

struct invar_eval_config {
    int64_t knn_k;         /* 200 */
    double knn_t;          /* 0.07 */
    int64_t knn_every;     /* epochs between kNN monitors; 0 = only at the end */
    int64_t linear_epochs; /* 0 = no linear probe */
    double linear_lr;
    int64_t linear_batch;
    double linear_wd;
    enum invar_eval_features knn_features;    /* head */
    enum invar_eval_features linear_features; /* backbone */
    /* The side the un-augmented images are resized to (invar_image_resize) before they are
     * embedded for kNN (and the collapse monitor) and for the probe; 0 = as stored. */
    int64_t knn_size, linear_size;
    /* Training images whose batch statistics stand in for the encoder's running batch-norm
     * statistics while kNN (and the collapse monitor), or the probe, embed; 0 = off. */
    int64_t knn_precise_bn, linear_precise_bn;
};

struct invar_job {
    uint64_t seed;
    struct invar_plugin_use dataset;
    int64_t limit;             /* first N training samples; 0 = all */
    int64_t test_limit;        /* first N test samples; 0 = all */
    int64_t holdout;           /* the last N training samples (after limit) evaluate in the
                                * test split's place; 0 = the test split */
    int normalize;             /* standardise inputs with the training split's statistics */
    const struct invar_view *views; /* (n_views) */
    int n_views;
    struct invar_plugin_use encoder;
    struct invar_plugin_use objective;
    struct invar_optim_config optim; /* warmup_steps/step_every are derived from the below */
    double warmup_epochs;
    double step_epochs;
    int64_t epochs;
    int64_t batch_size;
    int threads;               /* augmentation workers and BLAS threads */
    int64_t checkpoint_every;  /* epochs; 0 = only at the end */
    int64_t log_every;         /* steps between step_loss rows within an epoch, and one for
                                * its last steps; 0 = none */
    struct invar_eval_config eval;
    const char *checkpoint_path; /* NULL = no checkpoints */
    int resume;                /* continue from checkpoint_path */

    void (*on_metric)(void *user, const char *key, int64_t step, int64_t epoch, double value);
    void (*on_progress)(void *user, const struct invar_progress *p);
    void *user;
    volatile sig_atomic_t *stop; /* raised by a signal handler: stop at the next step */
};

struct invar_result {
    int64_t epochs_done;
    double final_loss;
    double knn_top1, knn_top5; /* percent; -1 when not evaluated */
    double linear_top1;        /* percent; -1 when not evaluated */
};

/* The splits a job trains and evaluates on: *train is the dataset's training split (first
 * job->limit samples) less its last job->holdout samples; *test is those held-out samples when
 * job->holdout > 0, else the test split (first job->test_limit samples). test may be NULL when
 * only the training split is wanted. Free both with invar_dataset_destroy. */
INVAR_API enum invar_status invar_job_open_splits(const struct invar_job *job,
                                                  struct invar_dataset **train,
                                                  struct invar_dataset **test,
                                                  struct invar_error *err);

INVAR_API enum invar_status invar_train(const struct invar_job *job, struct invar_result *res,
                                        struct invar_error *err);

/* ---- encoders outside the trainer ------------------------------------------------------ */

/* An instance of an encoder plugin for inputs (C, H, W) with its own finalized weights
 * (initialised from seed). For tests, tools and objectives' own helpers. */
INVAR_API enum invar_status invar_encoder_create(struct invar_encoder **out,
                                                 const struct invar_plugin_use *use,
                                                 const int64_t in_shape[3], uint64_t seed,
                                                 struct invar_error *err);
INVAR_API void invar_encoder_destroy(struct invar_encoder *e);
/* Features of b images x (b, C, H, W), each channel c standardised as (x - mean[c]) / std[c]
 * when mean is set (the trainer's inputs), through e in g's current mode: the encoder's output
 * or its backbone representation (which). Resets g first; the result lives in g's arena. */
INVAR_API struct invar_tensor *invar_encoder_embed_batch(struct invar_encoder *e,
                                                         struct invar_graph *g, const float *x,
                                                         int64_t b, const int64_t shape[3],
                                                         const float *mean, const float *std,
                                                         enum invar_eval_features which);

/* ---- evaluation on features ------------------------------------------------------------ */

/* Weighted kNN (Wu et al. 2018): cosine similarity of each test row to every train row, the
 * k nearest vote for their class with weight exp(s / t). Rows need not be normalised (they
 * are normalised here). Writes top-1 and top-5 accuracy in percent. */
INVAR_API enum invar_status invar_knn_eval(const float *train, const int32_t *train_labels,
                                           int64_t n_train, const float *test,
                                           const int32_t *test_labels, int64_t n_test,
                                           int64_t dim, int32_t n_classes, int64_t k, double t,
                                           double *top1, double *top5, struct invar_error *err);

/* Mean over feature dims of the std across samples of the L2-normalised features: about
 * 1/sqrt(dim) when healthy, 0 when the representation has collapsed to a point. */
INVAR_API double invar_collapse_std(const float *features, int64_t n, int64_t dim);

/* ---- trained encoders from checkpoints (framework/train/restore.c) ---------------------- */

/* The epoch a checkpoint would continue from (= epochs completed). */
INVAR_API enum invar_status invar_checkpoint_next_epoch(const char *path, int64_t *next_epoch,
                                                        struct invar_error *err);

/* A checkpoint's online encoder as the trainer built it: job's encoder for the output shape
 * of its first view on samples of data_shape (C, H, W), weights and BN statistics ("online.*")
 * loaded from path. Free with invar_encoder_destroy. For measurements on inputs of one's own
 * (`invar eval --invariance` embeds augmented images). */
INVAR_API enum invar_status invar_checkpoint_encoder(const struct invar_job *job, const char *path,
                                                     const int64_t data_shape[3],
                                                     struct invar_encoder **out,
                                                     struct invar_error *err);

/* Features of one dataset split under a checkpoint's online encoder. */
struct invar_embedding {
    int64_t n, dim;
    float *features;  /* (n, dim), owned; freed by invar_embedding_deinit */
    int32_t *labels;  /* (n) */
    int32_t classes;  /* the dataset's declared class count */
};

/* Rebuilds job's encoder for the shape of its first view, loads its weights and BN statistics
 * ("online.*") from path, and embeds split ("train" or "test", as invar_job_open_splits
 * opens them) in eval mode, each image resized to size x size first when size is set
 * (0: as stored) and inputs normalised by the training split's statistics when job->normalize
 * is set, exactly as the trainer's evaluation does. which: the encoder's output or the
 * representation under its head (out->dim is then the backbone's size). */
INVAR_API enum invar_status invar_checkpoint_embed(const struct invar_job *job, const char *path,
                                                   const char *split,
                                                   enum invar_eval_features which,
                                                   int64_t size, struct invar_embedding *out,
                                                   struct invar_error *err);
INVAR_API void invar_embedding_deinit(struct invar_embedding *e);

#ifdef __cplusplus
}
#endif
#endif
