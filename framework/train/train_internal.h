/* Inside the trainer; not installed. */
#ifndef INVAR_TRAIN_INTERNAL_H
#define INVAR_TRAIN_INTERNAL_H

#include "invar/train.h"

#define TRAIN_HIDDEN __attribute__((visibility("hidden")))

struct invar_encoder {
    struct invar_plugin_use use;
    int64_t in_shape[3];
    struct invar_params *params;
    void *self;
    int64_t dim;
    int64_t backbone_dim; /* 0 until asked (encoder_out_dim) */
};

TRAIN_HIDDEN enum invar_status encoder_create(struct invar_encoder **out,
                                              const struct invar_plugin_use *use,
                                              const int64_t in_shape[3], uint64_t seed,
                                              struct invar_error *err);
TRAIN_HIDDEN void encoder_destroy(struct invar_encoder *e);
/* INVAR_OK when e can embed images of shape (C, H, W): its own input shape, or one for which
 * the plugin builds the same weights (a convnet pools globally; an mlp's first layer follows
 * the input size). Otherwise an error naming key (the setting that chose the shape). */
TRAIN_HIDDEN enum invar_status encoder_check_input(const struct invar_encoder *e,
                                                   const int64_t shape[3], const char *key,
                                                   struct invar_error *err);

/* The shape an evaluation embeds images of data_shape (C, H, W) at: C x size x size, or as
 * stored when size is 0 (eval.knn.size, eval.linear.size). */
static inline void eval_image_shape(const int64_t data_shape[3], int64_t size, int64_t out[3])
{
    out[0] = data_shape[0];
    out[1] = size ? size : data_shape[1];
    out[2] = size ? size : data_shape[2];
}

/* Features of a whole dataset in eval mode without gradients, inputs normalised when mean is
 * set, which (enum invar_eval_features) choosing the encoder's output or its backbone
 * representation; each image resized to size x size first when size is set (0: as stored).
 * out holds count * encoder_out_dim(e, which) floats. */
TRAIN_HIDDEN enum invar_status encoder_embed(struct invar_encoder *e,
                                             const struct invar_dataset *d, const float *mean,
                                             const float *std, float *out, int which,
                                             int64_t size, struct invar_graph *g,
                                             struct invar_error *err);
/* Precise batch-norm statistics: the encoder's running statistics recomputed on d's first n
 * images (all when n exceeds them), unaugmented, normalised and resized like encoder_embed's,
 * as the mean of whole batches' statistics in training mode without gradients. Only the
 * batch-norm statistics (among the encoder's buffers) change. */
TRAIN_HIDDEN enum invar_status
encoder_recalibrate_bn(struct invar_encoder *e, const struct invar_dataset *d, const float *mean,
                       const float *std, int64_t size, int64_t n, struct invar_graph *g,
                       struct invar_error *err);
/* forward (INVAR_FEATURES_HEAD) or the backbone representation */
TRAIN_HIDDEN struct invar_tensor *encoder_features(struct invar_encoder *e, struct invar_graph *g,
                                                   struct invar_tensor *x, int which);
/* The feature size of encoder_features(e, ., ., which). */
TRAIN_HIDDEN int64_t encoder_out_dim(struct invar_encoder *e, int which);

#endif
