/* Inside the engine: how an op records itself. Not installed; ops and tests only.
 *
 * An op computes its output eagerly, then (when recording) calls graph_record, which returns
 * a node with `ctx_bytes` of zeroed op state in the arena. Backward functions are called in
 * reverse order of recording, only for nodes whose output received a gradient, and only after
 * every input with requires_grad has a grad buffer (zeroed arena memory, or a parameter's
 * persistent gradient): a backward accumulates (+=) into in[i]->grad and never assigns.
 *
 *     struct relu_ctx { int unused; };
 *     static void relu_backward(struct invar_graph *g, struct invar_node *n) { ... }
 *     struct invar_tensor *invar_relu(struct invar_graph *g, struct invar_tensor *x) {
 *         struct invar_tensor *y = graph_new_like(g, x);
 *         ... forward ...
 *         graph_record(g, "relu", y, &x, 1, relu_backward, 0);
 *         return y;
 *     }
 */
#ifndef INVAR_GRAPH_INTERNAL_H
#define INVAR_GRAPH_INTERNAL_H

#include "invar/graph.h"

#define GRAPH_HIDDEN __attribute__((visibility("hidden")))

struct invar_node;
typedef void (*graph_backward_fn)(struct invar_graph *g, struct invar_node *n);

struct invar_node {
    const char *name;             /* op name, for debugging and tests */
    graph_backward_fn backward;
    struct invar_tensor *out;
    struct invar_tensor **in;     /* (n_in) inputs, in the op's argument order */
    int n_in;
    void *ctx;                    /* op state saved for backward, in the arena */
    /* Bit i of may_overwrite: the backward writes every element of input i's gradient when
     * told it is fresh, instead of adding to it. graph backward then hands such an input, if
     * nothing has written its gradient yet, an uninitialised buffer and sets bit i of fresh
     * (saving a zeroing pass and a read of the buffer). */
    unsigned may_overwrite, fresh;
    struct invar_node *prev;      /* recorded before this one */
};

struct graph_memo;

struct invar_graph {
    struct invar_arena arena;
    struct invar_node *last;      /* most recently recorded node */
    struct graph_memo *memo;      /* values derived from inputs, kept until the reset */
    size_t n_nodes;
    int grad_enabled;
    int training;
    int bn_splits;                /* batch-norm statistics per this many sub-batches */
    float bn_momentum;            /* > 0: every batch-norm's running-statistics momentum */
};

/* A contiguous tensor in the step arena (contents undefined). */
GRAPH_HIDDEN struct invar_tensor *graph_new(struct invar_graph *g, int ndim,
                                            const int64_t *shape);
GRAPH_HIDDEN struct invar_tensor *graph_new_like(struct invar_graph *g,
                                                 const struct invar_tensor *x);
/* Scratch memory in the step arena. */
GRAPH_HIDDEN void *graph_alloc(struct invar_graph *g, size_t bytes);
/* 1 when an op on these inputs must record: grad mode on and some input requires grad. */
GRAPH_HIDDEN int graph_needs_grad(const struct invar_graph *g, struct invar_tensor *const *in,
                                  int n_in);
/* Records a node when graph_needs_grad; marks out as requiring grad. Returns the node (its ctx
 * zeroed, ctx_bytes long) or NULL when nothing is recorded. The input array is copied. */
GRAPH_HIDDEN struct invar_node *graph_record(struct invar_graph *g, const char *name,
                                             struct invar_tensor *out,
                                             struct invar_tensor *const *in, int n_in,
                                             graph_backward_fn backward, size_t ctx_bytes);

/* A value an op derived from `bytes` of input data at src (a layer's weights packed for its
 * kernels, say), kept in the arena until the graph's reset so that the other views of a step
 * reuse it. The lookup matches src, the op's tag and a copy of the data taken when the value was
 * stored, so a value is never returned for data changed since (an optimizer step inside one
 * graph). graph_memo_find returns the value or NULL; graph_memo_put stores one. */
GRAPH_HIDDEN void *graph_memo_find(const struct invar_graph *g, const void *src, size_t bytes,
                                   const int64_t tag[4]);
GRAPH_HIDDEN void graph_memo_put(struct invar_graph *g, const void *src, size_t bytes,
                                 const int64_t tag[4], void *value);

#endif
