/* invar/graph.h — define-by-run autograd.
 *
 *     struct invar_graph *g = invar_graph_create(64 << 20);
 *     for (step = 0; step < steps; step++) {
 *         invar_graph_reset(g);                                     // frees last step's nodes
 *         struct invar_tensor *x = invar_graph_tensor(g, 2, (int64_t[]){B, 784});  // (B, 784)
 *         fill(x->data);
 *         struct invar_tensor *h = invar_relu(g, invar_linear(g, x, w1, b1));      // (B, 256)
 *         struct invar_tensor *loss = invar_cross_entropy(g, invar_linear(g, h, w2, b2), y);
 *         invar_params_zero_grad(params);
 *         invar_graph_backward(g, loss);                            // fills w1->grad, ...
 *         invar_optim_step(opt, lr);
 *     }
 *     invar_graph_destroy(g);
 *
 * Every op allocates its output (and any saved scratch) from the graph's per-step arena and, when
 * gradients are enabled and an input requires them, records a node; invar_graph_backward walks
 * the nodes in reverse. Parameters are leaves whose grad points into their invar_params block:
 * backward accumulates into it. Outputs stay valid until the next reset.
 *
 * Shape mismatches are bugs in the caller and abort through INVAR_ASSERT.
 */
#ifndef INVAR_GRAPH_H
#define INVAR_GRAPH_H

#include "arena.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

struct invar_graph;

INVAR_API struct invar_graph *invar_graph_create(size_t initial_bytes);
INVAR_API void invar_graph_destroy(struct invar_graph *g);
/* Forgets every node and tensor of the previous step; O(1) once the arena has settled. */
INVAR_API void invar_graph_reset(struct invar_graph *g);
/* d(loss)/d(every tensor that requires grad); loss must have one element. */
INVAR_API void invar_graph_backward(struct invar_graph *g, struct invar_tensor *loss);

/* No-grad mode: ops compute outputs but record nothing (key encoders, evaluation).
 * Returns the previous setting so callers can restore it. */
INVAR_API int invar_graph_set_grad(struct invar_graph *g, int enabled);
INVAR_API int invar_graph_grad_enabled(const struct invar_graph *g);
/* Training mode (batch-norm uses batch statistics and updates running ones). Default: on. */
INVAR_API int invar_graph_set_training(struct invar_graph *g, int training);
INVAR_API int invar_graph_training(const struct invar_graph *g);
/* Split batch-norm: in training, batch-norm normalises each of `splits` equal, consecutive
 * sub-batches with its own statistics, as if each ran on its own device, and moves the running
 * statistics toward the sub-batches' mean statistics (MoCo's shuffled BN uses this to keep a
 * query and its key out of one normalisation). The batch must divide evenly. Default 1;
 * returns the previous setting. */
INVAR_API int invar_graph_set_bn_splits(struct invar_graph *g, int splits);
INVAR_API int invar_graph_bn_splits(const struct invar_graph *g);
/* Batch-norm momentum override: when > 0, every batch-norm in training mode moves its running
 * statistics by this fraction instead of by its own momentum (1/(k+1) for the k-th batch from 0
 * leaves them the mean of the batches' statistics: recalibration). Default 0, off; returns the
 * previous setting. */
INVAR_API float invar_graph_set_bn_momentum(struct invar_graph *g, float momentum);

INVAR_API struct invar_arena *invar_graph_arena(struct invar_graph *g);
/* A fresh contiguous leaf tensor in the step arena; contents undefined (_zeros: zero-filled). */
INVAR_API struct invar_tensor *invar_graph_tensor(struct invar_graph *g, int ndim,
                                                  const int64_t *shape);
INVAR_API struct invar_tensor *invar_graph_zeros(struct invar_graph *g, int ndim,
                                                 const int64_t *shape);
/* Nodes recorded since the last reset (tests and debugging). */
INVAR_API size_t invar_graph_node_count(const struct invar_graph *g);

/* ---- ops: outputs first in docs, shapes in comments ------------------------------------- */

/* (M, N) = op(a) @ op(b); op transposes when trans_* is set. a (M, K) or (K, M). */
INVAR_API struct invar_tensor *invar_matmul(struct invar_graph *g, struct invar_tensor *a,
                                            struct invar_tensor *b, int trans_a, int trans_b);
/* (N, O) = x (N, I) @ w (O, I)^T + b (O); b may be NULL. */
INVAR_API struct invar_tensor *invar_linear(struct invar_graph *g, struct invar_tensor *x,
                                            struct invar_tensor *w, struct invar_tensor *b);
/* Elementwise, same shapes. */
INVAR_API struct invar_tensor *invar_add(struct invar_graph *g, struct invar_tensor *a,
                                         struct invar_tensor *b);
INVAR_API struct invar_tensor *invar_sub(struct invar_graph *g, struct invar_tensor *a,
                                         struct invar_tensor *b);
INVAR_API struct invar_tensor *invar_mul(struct invar_graph *g, struct invar_tensor *a,
                                         struct invar_tensor *b);
/* x (N, C, ...) + b (C): the bias runs along dim 1. */
INVAR_API struct invar_tensor *invar_add_bias(struct invar_graph *g, struct invar_tensor *x,
                                              struct invar_tensor *b);
/* s * x + c */
INVAR_API struct invar_tensor *invar_scale(struct invar_graph *g, struct invar_tensor *x,
                                           float s, float c);
INVAR_API struct invar_tensor *invar_relu(struct invar_graph *g, struct invar_tensor *x);
INVAR_API struct invar_tensor *invar_exp(struct invar_graph *g, struct invar_tensor *x);
/* log(x); x > 0 */
INVAR_API struct invar_tensor *invar_log(struct invar_graph *g, struct invar_tensor *x);

/* (N, O, OH, OW) = conv(x (N, C, H, W), w (O, C, KH, KW)) + b (O); b may be NULL.
 * OH = (H + 2*pad - KH) / stride + 1. The whole batch goes through one GEMM per layer. */
INVAR_API struct invar_tensor *invar_conv2d(struct invar_graph *g, struct invar_tensor *x,
                                            struct invar_tensor *w, struct invar_tensor *b,
                                            int stride, int pad);
/* (N, C, OH, OW), OH = (H + 2*pad - k) / stride + 1; padding never wins a max. */
INVAR_API struct invar_tensor *invar_maxpool2d(struct invar_graph *g, struct invar_tensor *x,
                                               int k, int stride, int pad);
/* Average over the window; padded cells count as zeros (count_include_pad). */
INVAR_API struct invar_tensor *invar_avgpool2d(struct invar_graph *g, struct invar_tensor *x,
                                               int k, int stride, int pad);
/* (N, C) = mean over H, W of x (N, C, H, W). */
INVAR_API struct invar_tensor *invar_global_avgpool(struct invar_graph *g,
                                                    struct invar_tensor *x);
/* Batch-norm over dim 1 of x (N, C) or (N, C, H, W) with gamma, beta (C).
 * Training: batch statistics (biased variance for normalising); running_mean/var (C) are
 * updated as r = (1 - momentum) r + momentum * batch (unbiased variance), PyTorch's convention.
 * Eval: running statistics. running_* may be NULL in training (no tracking). */
INVAR_API struct invar_tensor *invar_batchnorm(struct invar_graph *g, struct invar_tensor *x,
                                               struct invar_tensor *gamma,
                                               struct invar_tensor *beta,
                                               struct invar_tensor *running_mean,
                                               struct invar_tensor *running_var,
                                               float momentum, float eps);
/* max(invar_batchnorm(...), 0) as one op: the same arguments and statistics, one pass each way
 * instead of three, and no intermediate tensor (conv-BN-ReLU units use it). */
INVAR_API struct invar_tensor *invar_batchnorm_relu(struct invar_graph *g, struct invar_tensor *x,
                                                    struct invar_tensor *gamma,
                                                    struct invar_tensor *beta,
                                                    struct invar_tensor *running_mean,
                                                    struct invar_tensor *running_var,
                                                    float momentum, float eps);
/* Rows of x (N, D) divided by max(||row||, eps). */
INVAR_API struct invar_tensor *invar_l2_normalize(struct invar_graph *g, struct invar_tensor *x,
                                                  float eps);
/* (N) = cos(a_i, b_i) for a, b (N, D); norms clamped at eps. */
INVAR_API struct invar_tensor *invar_cosine_similarity(struct invar_graph *g,
                                                       struct invar_tensor *a,
                                                       struct invar_tensor *b, float eps);
/* Joins n tensors along dim; other dims must agree. */
INVAR_API struct invar_tensor *invar_concat(struct invar_graph *g, struct invar_tensor **xs,
                                            int n, int dim);
/* x[..., start:start+len, ...] along dim, copied to a contiguous output. */
INVAR_API struct invar_tensor *invar_slice(struct invar_graph *g, struct invar_tensor *x,
                                           int dim, int64_t start, int64_t len);
/* Same elements, new shape (numel must agree). */
INVAR_API struct invar_tensor *invar_reshape(struct invar_graph *g, struct invar_tensor *x,
                                             int ndim, const int64_t *shape);
/* (N, M) = x (M, N)^T */
INVAR_API struct invar_tensor *invar_transpose(struct invar_graph *g, struct invar_tensor *x);
/* (B, D) = x[idx[b], :] for x (N, D), idx (B). Backward scatter-adds (repeats accumulate). */
INVAR_API struct invar_tensor *invar_gather_rows(struct invar_graph *g, struct invar_tensor *x,
                                                 const int64_t *idx, int64_t n_idx);
/* (N, D) = x with rows idx[b] replaced by src (B, D); idx must not repeat. */
INVAR_API struct invar_tensor *invar_scatter_rows(struct invar_graph *g, struct invar_tensor *x,
                                                  const int64_t *idx, int64_t n_idx,
                                                  struct invar_tensor *src);
/* Row-wise log-softmax of x (N, C), stable for logits of any magnitude. */
INVAR_API struct invar_tensor *invar_log_softmax(struct invar_graph *g, struct invar_tensor *x);
/* Scalar mean over rows of -log softmax(logits (N, C))[labels[i]]; fused and stable. */
INVAR_API struct invar_tensor *invar_cross_entropy(struct invar_graph *g,
                                                   struct invar_tensor *logits,
                                                   const int32_t *labels);
/* Scalar mean of (a - b)^2 over all elements. */
INVAR_API struct invar_tensor *invar_mse(struct invar_graph *g, struct invar_tensor *a,
                                         struct invar_tensor *b);
/* Scalars: sum and mean of all elements. */
INVAR_API struct invar_tensor *invar_sum(struct invar_graph *g, struct invar_tensor *x);
INVAR_API struct invar_tensor *invar_mean(struct invar_graph *g, struct invar_tensor *x);
/* (N) = sum over dim 1 of x (N, D). */
INVAR_API struct invar_tensor *invar_sum_rows(struct invar_graph *g, struct invar_tensor *x);
/* Same values, no gradient flows back through it. */
INVAR_API struct invar_tensor *invar_stop_gradient(struct invar_graph *g, struct invar_tensor *x);

/* A plugin's own fused op. The caller computes out (from invar_graph_tensor) itself, then
 * records it: backward receives out->grad filled and must accumulate into in[i]->grad for each
 * input with requires_grad (grad buffers are allocated and zeroed by the framework beforehand).
 * ctx should live in the graph arena. Returns out, marked as produced by this node. */
typedef void (*invar_custom_backward_fn)(struct invar_tensor *out, struct invar_tensor **in,
                                         int n_in, void *ctx);
INVAR_API struct invar_tensor *invar_custom_op(struct invar_graph *g, const char *name,
                                               struct invar_tensor *out,
                                               struct invar_tensor **in, int n_in,
                                               invar_custom_backward_fn backward, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
