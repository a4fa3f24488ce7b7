/* Shape ops: concat, slice, reshape, gather_rows, scatter_rows.
 *
 * concat and slice see a tensor along `dim` as (outer, len, inner): outer is the product of the
 * dims before it, inner of those after, so each (outer) step moves one contiguous run of
 * len * inner floats. Backward moves the same runs the other way, adding.
 */
#include <string.h>

#include "graph_internal.h"

static int64_t dims_product(const struct invar_tensor *t, int from, int to)
{
    int64_t p = 1;
    for (int i = from; i < to; i++)
        p *= t->shape[i];
    return p;
}

/* dst[i] += src[i] */
static void add_into(float *restrict dst, const float *restrict src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] += src[i];
}

/* ---- concat: y (..., sum of len_k, ...) = [xs_0, xs_1, ...] along dim -------------------- */

struct concat_ctx {
    int dim;
};

static void concat_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const int dim = ((const struct concat_ctx *)n->ctx)->dim;
    struct invar_tensor *y = n->out;
    const int64_t outer = dims_product(y, 0, dim), inner = dims_product(y, dim + 1, y->ndim);
    const int64_t run_y = y->shape[dim] * inner;
    int64_t off = 0;
    for (int k = 0; k < n->n_in; k++) {
        struct invar_tensor *x = n->in[k];
        const int64_t run = x->shape[dim] * inner;
        if (x->grad)
            for (int64_t o = 0; o < outer; o++)
                add_into(x->grad + o * run, y->grad + o * run_y + off, run);
        off += run;
    }
}

struct invar_tensor *invar_concat(struct invar_graph *g, struct invar_tensor **xs, int n, int dim)
{
    INVAR_ASSERT(n >= 1 && dim >= 0 && dim < xs[0]->ndim);
    int64_t shape[INVAR_MAX_DIMS];
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[dim] = 0;
    for (int k = 0; k < n; k++) {
        INVAR_ASSERT(xs[k]->ndim == xs[0]->ndim && invar_tensor_is_contiguous(xs[k]));
        for (int i = 0; i < xs[0]->ndim; i++)
            INVAR_ASSERT(i == dim || xs[k]->shape[i] == xs[0]->shape[i]);
        shape[dim] += xs[k]->shape[dim];
    }
    struct invar_tensor *y = graph_new(g, xs[0]->ndim, shape);
    const int64_t outer = dims_product(y, 0, dim), inner = dims_product(y, dim + 1, y->ndim);
    const int64_t run_y = y->shape[dim] * inner;
    int64_t off = 0;
    for (int k = 0; k < n; k++) {
        const int64_t run = xs[k]->shape[dim] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy(y->data + o * run_y + off, xs[k]->data + o * run, (size_t)run * sizeof(float));
        off += run;
    }
    struct invar_node *node =
        graph_record(g, "concat", y, xs, n, concat_backward, sizeof(struct concat_ctx));
    if (node)
        ((struct concat_ctx *)node->ctx)->dim = dim;
    return y;
}

/* ---- slice: y (..., len, ...) = x[..., start:start+len, ...] along dim ------------------- */

struct slice_ctx {
    int dim;
    int64_t start;
};

static void slice_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const struct slice_ctx *c = n->ctx;
    struct invar_tensor *x = n->in[0], *y = n->out;
    const int64_t outer = dims_product(x, 0, c->dim), inner = dims_product(x, c->dim + 1, x->ndim);
    const int64_t run_x = x->shape[c->dim] * inner, run_y = y->shape[c->dim] * inner;
    for (int64_t o = 0; o < outer; o++)
        add_into(x->grad + o * run_x + c->start * inner, y->grad + o * run_y, run_y);
}

struct invar_tensor *invar_slice(struct invar_graph *g, struct invar_tensor *x, int dim,
                                 int64_t start, int64_t len)
{
    INVAR_ASSERT(dim >= 0 && dim < x->ndim && invar_tensor_is_contiguous(x));
    INVAR_ASSERT(start >= 0 && len >= 1 && start + len <= x->shape[dim]);
    int64_t shape[INVAR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[dim] = len;
    struct invar_tensor *y = graph_new(g, x->ndim, shape);
    const int64_t outer = dims_product(x, 0, dim), inner = dims_product(x, dim + 1, x->ndim);
    const int64_t run_x = x->shape[dim] * inner, run_y = len * inner;
    for (int64_t o = 0; o < outer; o++)
        memcpy(y->data + o * run_y, x->data + o * run_x + start * inner,
               (size_t)run_y * sizeof(float));
    struct invar_node *n =
        graph_record(g, "slice", y, &x, 1, slice_backward, sizeof(struct slice_ctx));
    if (n) {
        struct slice_ctx *c = n->ctx;
        c->dim = dim;
        c->start = start;
    }
    return y;
}

/* ---- reshape: a view over x's data with a new shape -------------------------------------- */

/* The view has its own grad buffer (allocated by backward), so its gradient is added back. */
static void reshape_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    add_into(n->in[0]->grad, n->out->grad, n->out->numel);
}

struct invar_tensor *invar_reshape(struct invar_graph *g, struct invar_tensor *x, int ndim,
                                   const int64_t *shape)
{
    INVAR_ASSERT(invar_tensor_is_contiguous(x));
    struct invar_tensor *y = graph_alloc(g, sizeof *y);
    invar_tensor_wrap(y, x->data, ndim, shape);
    INVAR_ASSERT(y->numel == x->numel);
    graph_record(g, "reshape", y, &x, 1, reshape_backward, 0);
    return y;
}

/* ---- gather_rows: y (B, D) = x[idx[b], :] for x (N, D) ----------------------------------- */

struct rows_ctx {
    int64_t *idx;       /* (B) copied from the caller */
    unsigned char *hit; /* (N) scatter_rows: 1 where a row was replaced */
};

/* Scatter-add, rows in index order: a row gathered twice receives both gradients. */
static void gather_rows_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const struct rows_ctx *c = n->ctx;
    struct invar_tensor *x = n->in[0], *y = n->out;
    const int64_t B = y->shape[0], D = y->shape[1];
    for (int64_t b = 0; b < B; b++)
        add_into(x->grad + c->idx[b] * D, y->grad + b * D, D);
}

static int64_t *copy_idx(struct invar_graph *g, const int64_t *idx, int64_t n)
{
    int64_t *p = graph_alloc(g, (size_t)n * sizeof *p);
    memcpy(p, idx, (size_t)n * sizeof *p);
    return p;
}

struct invar_tensor *invar_gather_rows(struct invar_graph *g, struct invar_tensor *x,
                                       const int64_t *idx, int64_t n_idx)
{
    INVAR_ASSERT(x->ndim == 2 && invar_tensor_is_contiguous(x) && n_idx >= 1);
    const int64_t N = x->shape[0], D = x->shape[1];
    struct invar_tensor *y = graph_new(g, 2, (int64_t[]){n_idx, D});
    for (int64_t b = 0; b < n_idx; b++) {
        INVAR_ASSERT(idx[b] >= 0 && idx[b] < N);
        memcpy(y->data + b * D, x->data + idx[b] * D, (size_t)D * sizeof(float));
    }
    struct invar_node *n =
        graph_record(g, "gather_rows", y, &x, 1, gather_rows_backward, sizeof(struct rows_ctx));
    if (n)
        ((struct rows_ctx *)n->ctx)->idx = copy_idx(g, idx, n_idx);
    return y;
}

/* ---- scatter_rows: y (N, D) = x with y[idx[b], :] = src[b, :] ---------------------------- */

/* Replaced rows pass their gradient to src only; the others to x only. */
static void scatter_rows_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const struct rows_ctx *c = n->ctx;
    struct invar_tensor *x = n->in[0], *src = n->in[1], *y = n->out;
    const int64_t N = y->shape[0], D = y->shape[1], B = src->shape[0];
    if (x->grad)
        for (int64_t r = 0; r < N; r++)
            if (!c->hit[r])
                add_into(x->grad + r * D, y->grad + r * D, D);
    if (src->grad)
        for (int64_t b = 0; b < B; b++)
            add_into(src->grad + b * D, y->grad + c->idx[b] * D, D);
}

struct invar_tensor *invar_scatter_rows(struct invar_graph *g, struct invar_tensor *x,
                                        const int64_t *idx, int64_t n_idx, struct invar_tensor *src)
{
    INVAR_ASSERT(x->ndim == 2 && src->ndim == 2 && n_idx >= 1);
    INVAR_ASSERT(src->shape[0] == n_idx && src->shape[1] == x->shape[1]);
    INVAR_ASSERT(invar_tensor_is_contiguous(x) && invar_tensor_is_contiguous(src));
    const int64_t N = x->shape[0], D = x->shape[1];
    struct invar_tensor *y = graph_new_like(g, x);
    memcpy(y->data, x->data, (size_t)x->numel * sizeof(float));
    unsigned char *hit = graph_alloc(g, (size_t)N); // (N)
    memset(hit, 0, (size_t)N);
    for (int64_t b = 0; b < n_idx; b++) {
        INVAR_ASSERT(idx[b] >= 0 && idx[b] < N && !hit[idx[b]]);
        hit[idx[b]] = 1;
        memcpy(y->data + idx[b] * D, src->data + b * D, (size_t)D * sizeof(float));
    }
    struct invar_tensor *in[2] = {x, src};
    struct invar_node *n =
        graph_record(g, "scatter_rows", y, in, 2, scatter_rows_backward, sizeof(struct rows_ctx));
    if (n) {
        struct rows_ctx *c = n->ctx;
        c->idx = copy_idx(g, idx, n_idx);
        c->hit = hit;
    }
    return y;
}
