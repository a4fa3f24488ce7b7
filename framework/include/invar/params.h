/* invar/params.h — a model's weights, gradients and buffers in flat blocks.
 *
 *     struct invar_params *p = invar_params_create();
 *     struct invar_tensor *w = invar_params_add(p, "fc.w", 2, (int64_t[]){10, 784},
 *                                               invar_init_kaiming_uniform(784), 0);
 *     struct invar_tensor *b = invar_params_add(p, "fc.b", 1, (int64_t[]){10},
 *                                               invar_init_kaiming_uniform(784), INVAR_P_NO_DECAY);
 *     invar_params_finalize(p, seed, &err);   // allocates the blocks, runs the initialisers
 *     ... w->data, w->grad are now valid ...
 *
 * Two phases, as in llm.c: a module declares its tensors (whose struct pointers stay valid
 * for the life of p), then finalize carves them out of one weights block, one gradients block
 * and one buffers block. Zero-grad, optimizers, EMA, checkpoints and all-reduce are flat loops.
 * Trainable weights come first in declaration order; buffers (batch-norm statistics, memory
 * banks, queues) have no gradient and are never touched by optimizers or EMA.
 *
 * Each block is one 64-byte-aligned allocation holding its tensors back to back (no padding
 * between them), so invar_params_data(p)[0 .. numel) is every trainable float, in order.
 */
#ifndef INVAR_PARAMS_H
#define INVAR_PARAMS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

enum invar_param_flag {
    INVAR_P_NO_DECAY = 1u << 0, /* excluded from weight decay (and LARS adaptation) */
    INVAR_P_BUFFER = 1u << 1,   /* state, not a weight: no grad, not optimized, checkpointed */
    INVAR_P_FIXED_LR = 1u << 2, /* stepped at the base lr throughout, warm-up and schedule aside */
};

enum invar_init_kind {
    INVAR_INIT_ZEROS,
    INVAR_INIT_CONST,           /* a */
    INVAR_INIT_UNIFORM,         /* U(a, b) */
    INVAR_INIT_NORMAL,          /* N(a, b^2) */
    INVAR_INIT_KAIMING_UNIFORM, /* U(-1/sqrt(a), 1/sqrt(a)), a = fan_in: PyTorch's default */
    INVAR_INIT_KAIMING_NORMAL,  /* N(0, 2/a), a = fan_in: for ReLU layers */
};

struct invar_init {
    enum invar_init_kind kind;
    double a, b;
};

static inline struct invar_init invar_init_zeros(void) { return (struct invar_init){INVAR_INIT_ZEROS, 0, 0}; }
static inline struct invar_init invar_init_const(double v) { return (struct invar_init){INVAR_INIT_CONST, v, 0}; }
static inline struct invar_init invar_init_uniform(double lo, double hi) { return (struct invar_init){INVAR_INIT_UNIFORM, lo, hi}; }
static inline struct invar_init invar_init_normal(double mean, double std) { return (struct invar_init){INVAR_INIT_NORMAL, mean, std}; }
static inline struct invar_init invar_init_kaiming_uniform(double fan_in) { return (struct invar_init){INVAR_INIT_KAIMING_UNIFORM, fan_in, 0}; }
static inline struct invar_init invar_init_kaiming_normal(double fan_in) { return (struct invar_init){INVAR_INIT_KAIMING_NORMAL, fan_in, 0}; }

struct invar_params;

INVAR_API struct invar_params *invar_params_create(void);
INVAR_API void invar_params_destroy(struct invar_params *p);
/* Declares a tensor; data/grad are NULL until finalize. The name is copied. Aborts on a
 * duplicate name or on a call after finalize (both are bugs). */
INVAR_API struct invar_tensor *invar_params_add(struct invar_params *p, const char *name,
                                                int ndim, const int64_t *shape,
                                                struct invar_init init, unsigned flags);
/* Allocates the blocks (zeroed) and runs every initialiser with the counter-based RNG keyed
 * by (seed, tensor index), so the weights do not depend on declaration timing or threads. */
INVAR_API enum invar_status invar_params_finalize(struct invar_params *p, uint64_t seed,
                                                  struct invar_error *err);

INVAR_API size_t invar_params_count(const struct invar_params *p);      /* tensors */
INVAR_API struct invar_tensor *invar_params_at(struct invar_params *p, size_t i,
                                               const char **name, unsigned *flags);
INVAR_API struct invar_tensor *invar_params_find(struct invar_params *p, const char *name);
INVAR_API size_t invar_params_numel(const struct invar_params *p);      /* trainable floats */
INVAR_API size_t invar_params_buffer_numel(const struct invar_params *p);
INVAR_API float *invar_params_data(struct invar_params *p);    /* (numel) weights */
INVAR_API float *invar_params_grad(struct invar_params *p);    /* (numel) gradients */
INVAR_API float *invar_params_buffers(struct invar_params *p); /* (buffer_numel) */

INVAR_API void invar_params_zero_grad(struct invar_params *p);
/* dst <- src, weights and buffers; the two must have been declared alike. */
INVAR_API void invar_params_copy(struct invar_params *dst, const struct invar_params *src);
/* dst <- m * dst + (1 - m) * src over trainable weights only (a momentum encoder). */
INVAR_API void invar_params_ema(struct invar_params *dst, const struct invar_params *src,
                                float m);

#ifdef __cplusplus
}
#endif
#endif
