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
};

TRAIN_HIDDEN enum invar_status encoder_create(struct invar_encoder **out,
                                              const struct invar_plugin_use *use,
                                              const int64_t in_shape[3], uint64_t seed,
                                              struct invar_error *err);
TRAIN_HIDDEN void encoder_destroy(struct invar_encoder *e);

/* Features (N, dim) of every sample of d under e: eval mode, no grad, normalised inputs. */
TRAIN_HIDDEN enum invar_status encoder_embed(struct invar_encoder *e,
                                             const struct invar_dataset *d, const float *mean,
                                             const float *std, float *out,
                                             struct invar_graph *g, struct invar_error *err);

#endif
