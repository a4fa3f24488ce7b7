/* invar/data.h — datasets in memory and the multi-view batch pipeline.
 *
 *     struct invar_dataset *train;
 *     invar_dataset_open(&train, &(struct invar_plugin_use){idx_plugin, idx_config}, "train",
 *                        limit, &err);
 *     struct invar_loader_config lc = { .views = views, .n_views = 2, .batch_size = 256,
 *                                       .seed = 1, .threads = 1 };
 *     struct invar_loader *ld;
 *     invar_loader_create(&ld, train, &lc, &err);
 *     invar_loader_start_epoch(ld, epoch);
 *     const struct invar_batch *b;
 *     while ((b = invar_loader_next(ld)) != NULL)
 *         train_step(b->views[0], b->views[1], b->indices);   // (B, C, H, W) each
 *     invar_loader_destroy(ld);
 *
 * A dataset split is read once through its plugin into memory (float32, (N, C, H, W)),
 * truncated to `limit` samples. The loader composes each view's augmentations per sample with
 * randomness keyed by (seed, epoch, sample, view) — results never depend on thread count or
 * timing — normalises, and assembles batches on a worker thread one batch ahead of training,
 * in two fixed batch buffers (bounded memory, no allocation after creation).
 */
#ifndef INVAR_DATA_H
#define INVAR_DATA_H

#include "plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

#define INVAR_MAX_VIEWS 8
#define INVAR_MAX_AUGMENTS 32

/* A plugin chosen by an experiment with its filled config (and, for augmentations, the
 * probability that it applies). */
struct invar_plugin_use {
    const struct invar_plugin *plugin;
    const void *config;  /* plugin->config_size bytes */
    double p;            /* augments: probability of applying it; 1 for other kinds */
};

struct invar_dataset;

INVAR_API enum invar_status invar_dataset_open(struct invar_dataset **out,
                                               const struct invar_plugin_use *use,
                                               const char *split, int64_t limit,
                                               struct invar_error *err);
INVAR_API void invar_dataset_destroy(struct invar_dataset *d);
/* Moves the last n_last samples (1 <= n_last < count) into a new dataset *out and leaves d
 * with the ones before them: a validation split held out of training (data.holdout). */
INVAR_API enum invar_status invar_dataset_split_off(struct invar_dataset *d, int64_t n_last,
                                                    struct invar_dataset **out,
                                                    struct invar_error *err);
INVAR_API int64_t invar_dataset_count(const struct invar_dataset *d);
INVAR_API const int64_t *invar_dataset_shape(const struct invar_dataset *d); /* (C, H, W) */
INVAR_API int32_t invar_dataset_num_classes(const struct invar_dataset *d);
INVAR_API const float *invar_dataset_sample(const struct invar_dataset *d, int64_t i);
INVAR_API const int32_t *invar_dataset_labels(const struct invar_dataset *d); /* (N) */
/* Per-channel mean and std over the split (for normalisation). */
INVAR_API void invar_dataset_stats(const struct invar_dataset *d, float *mean, float *std);

/* in (C, H, W) resized to out (C, oh, ow) bilinearly: half-pixel centres (align_corners
 * false), edges clamped, no antialiasing; the same bits resized_crop gives for a box of the
 * whole image. Sizes equal to the input's copy it. How evaluations see images at eval.size. */
INVAR_API void invar_image_resize(const float *in, const int64_t in_shape[3], float *out,
                                  int64_t oh, int64_t ow);

struct invar_view {
    const struct invar_plugin_use *augs; /* applied in order */
    size_t n_augs;
};

/* Applies one view's chain to one sample: out must hold the chain's output shape
 * (invar_view_out_shape); scratch holds scratch_numel floats, at least
 * invar_view_scratch_numel (computed once by the caller, not per sample).
 * Randomness: (seed, epoch, sample, view). */
INVAR_API void invar_view_out_shape(const struct invar_view *v, const int64_t in[3],
                                    int64_t out[3]);
INVAR_API int64_t invar_view_scratch_numel(const struct invar_view *v, const int64_t in[3]);
INVAR_API void invar_view_apply(const struct invar_view *v, uint64_t seed, int64_t epoch,
                                int64_t sample, int64_t view, const float *in,
                                const int64_t in_shape[3], float *out, float *scratch,
                                int64_t scratch_numel);

struct invar_loader_config {
    const struct invar_view *views;  /* (n_views) */
    int n_views;
    int64_t batch_size;
    uint64_t seed;
    int threads;          /* augmentation workers (>= 1) */
    int shuffle;          /* a new permutation each epoch, keyed by (seed, epoch) */
    int drop_last;        /* skip a final partial batch */
    const float *mean;    /* (C) normalisation applied after augmentation; NULL = none */
    const float *std;     /* (C) */
};

struct invar_batch {
    int64_t size;                              /* B (the last batch may be smaller) */
    int64_t index;                             /* batch number within the epoch */
    struct invar_tensor views[INVAR_MAX_VIEWS];/* (B, C, H, W) each, views' own shapes */
    const int64_t *indices;                    /* (B) dataset positions */
    const int32_t *labels;                     /* (B) */
};

struct invar_loader;

INVAR_API enum invar_status invar_loader_create(struct invar_loader **out,
                                                const struct invar_dataset *d,
                                                const struct invar_loader_config *cfg,
                                                struct invar_error *err);
INVAR_API void invar_loader_destroy(struct invar_loader *l);
INVAR_API int64_t invar_loader_batches(const struct invar_loader *l); /* per epoch */
/* Begins an epoch (stopping any epoch in progress); batches start being prepared at once. */
INVAR_API void invar_loader_start_epoch(struct invar_loader *l, int64_t epoch);
/* The next batch of the epoch, or NULL at its end. Valid until the next call. */
INVAR_API const struct invar_batch *invar_loader_next(struct invar_loader *l);

/* Writes a PNG grid to path: one row per sample (the first n of d), the original then each
 * view's augmented image (epoch 0, keyed by seed like the loader), values clamped to [0, 1]
 * and scaled to 0-255, grayscale or RGB cells of the largest view size, 1-px white gaps. */
INVAR_API enum invar_status invar_preview_write(const char *path, const struct invar_dataset *d,
                                                const struct invar_view *views, int n_views,
                                                uint64_t seed, int64_t n,
                                                struct invar_error *err);

#ifdef __cplusplus
}
#endif
#endif
