/* invar/tensor.h — float32 tensors with explicit shape and strides.
 *
 *     // a (2, 3) view over caller memory
 *     float buf[6] = {1, 2, 3, 4, 5, 6};
 *     struct invar_tensor t;
 *     invar_tensor_wrap(&t, buf, 2, (int64_t[]){2, 3});
 *     float x = t.data[1 * t.stride[0] + 2 * t.stride[1]];   // 6
 *
 * Tensors are row-major; images are NCHW. A tensor never owns its memory: data (and grad, when
 * gradients flow) point into an arena, into a parameter block, or into caller memory. Every op
 * in invar/graph.h produces contiguous outputs and asserts contiguous inputs where it needs them.
 */
#ifndef INVAR_TENSOR_H
#define INVAR_TENSOR_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define INVAR_MAX_DIMS 4

struct invar_node;

struct invar_tensor {
    float *data;                     /* (numel) elements, laid out by stride */
    float *grad;                     /* same layout as data; NULL while no gradient flows */
    int64_t shape[INVAR_MAX_DIMS];   /* unused trailing dims are 1 */
    int64_t stride[INVAR_MAX_DIMS];  /* in elements */
    int64_t numel;
    int ndim;
    int requires_grad;               /* a parameter, or computed from one */
    struct invar_node *node;         /* the op that produced it; NULL for leaves */
};

/* Fills shape, contiguous strides and numel; grad = NULL, node = NULL, requires_grad = 0. */
INVAR_API void invar_tensor_wrap(struct invar_tensor *t, float *data, int ndim,
                                 const int64_t *shape);
INVAR_API int invar_tensor_is_contiguous(const struct invar_tensor *t);
INVAR_API int invar_tensor_same_shape(const struct invar_tensor *a, const struct invar_tensor *b);
/* Writes "(2, 3, 28, 28)" into buf; returns buf. */
INVAR_API const char *invar_tensor_shape_str(const struct invar_tensor *t, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
