/* The graph: per-step arena, node recording, reverse-mode backward, custom ops. */
#include <stdlib.h>
#include <string.h>

#include "graph_internal.h"

struct invar_graph *invar_graph_create(size_t initial_bytes)
{
    struct invar_graph *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    invar_arena_init(&g->arena, initial_bytes);
    g->grad_enabled = 1;
    g->training = 1;
    g->bn_splits = 1;
    return g;
}

void invar_graph_destroy(struct invar_graph *g)
{
    if (!g)
        return;
    invar_arena_deinit(&g->arena);
    free(g);
}

void invar_graph_reset(struct invar_graph *g)
{
    invar_arena_reset(&g->arena);
    g->last = NULL;
    g->n_nodes = 0;
    g->memo = NULL;
}

int invar_graph_set_grad(struct invar_graph *g, int enabled)
{
    int old = g->grad_enabled;
    g->grad_enabled = enabled != 0;
    return old;
}

int invar_graph_grad_enabled(const struct invar_graph *g) { return g->grad_enabled; }

int invar_graph_set_training(struct invar_graph *g, int training)
{
    int old = g->training;
    g->training = training != 0;
    return old;
}

int invar_graph_training(const struct invar_graph *g) { return g->training; }

int invar_graph_set_bn_splits(struct invar_graph *g, int splits)
{
    INVAR_ASSERT(splits >= 1);
    int old = g->bn_splits;
    g->bn_splits = splits;
    return old;
}

int invar_graph_bn_splits(const struct invar_graph *g) { return g->bn_splits; }

float invar_graph_set_bn_momentum(struct invar_graph *g, float momentum)
{
    INVAR_ASSERT(momentum >= 0 && momentum <= 1);
    float old = g->bn_momentum;
    g->bn_momentum = momentum;
    return old;
}

struct invar_arena *invar_graph_arena(struct invar_graph *g) { return &g->arena; }

size_t invar_graph_node_count(const struct invar_graph *g) { return g->n_nodes; }

void *graph_alloc(struct invar_graph *g, size_t bytes)
{
    return invar_arena_alloc(&g->arena, bytes);
}

struct graph_memo {
    struct graph_memo *next;
    const void *src;
    size_t bytes;
    int64_t tag[4];
    void *copy, *value;
};

void *graph_memo_find(const struct invar_graph *g, const void *src, size_t bytes,
                      const int64_t tag[4])
{
    for (const struct graph_memo *m = g->memo; m; m = m->next)
        if (m->src == src && m->bytes == bytes && !memcmp(m->tag, tag, sizeof m->tag) &&
            !memcmp(m->copy, src, bytes))
            return m->value;
    return NULL;
}

void graph_memo_put(struct invar_graph *g, const void *src, size_t bytes, const int64_t tag[4],
                    void *value)
{
    struct graph_memo *m = graph_alloc(g, sizeof *m);
    *m = (struct graph_memo){.next = g->memo, .src = src, .bytes = bytes, .value = value};
    memcpy(m->tag, tag, sizeof m->tag);
    m->copy = graph_alloc(g, bytes);
    memcpy(m->copy, src, bytes);
    g->memo = m;
}

struct invar_tensor *graph_new(struct invar_graph *g, int ndim, const int64_t *shape)
{
    struct invar_tensor *t = invar_arena_alloc(&g->arena, sizeof *t);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    invar_tensor_wrap(t, invar_arena_alloc(&g->arena, (size_t)n * sizeof(float)), ndim, shape);
    return t;
}

struct invar_tensor *graph_new_like(struct invar_graph *g, const struct invar_tensor *x)
{
    return graph_new(g, x->ndim, x->shape);
}

struct invar_tensor *invar_graph_tensor(struct invar_graph *g, int ndim, const int64_t *shape)
{
    return graph_new(g, ndim, shape);
}

struct invar_tensor *invar_graph_zeros(struct invar_graph *g, int ndim, const int64_t *shape)
{
    struct invar_tensor *t = graph_new(g, ndim, shape);
    memset(t->data, 0, (size_t)t->numel * sizeof(float));
    return t;
}

int graph_needs_grad(const struct invar_graph *g, struct invar_tensor *const *in, int n_in)
{
    if (!g->grad_enabled)
        return 0;
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->requires_grad)
            return 1;
    return 0;
}

struct invar_node *graph_record(struct invar_graph *g, const char *name,
                                struct invar_tensor *out, struct invar_tensor *const *in,
                                int n_in, graph_backward_fn backward, size_t ctx_bytes)
{
    if (!graph_needs_grad(g, in, n_in))
        return NULL;
    struct invar_node *n = invar_arena_alloc(&g->arena, sizeof *n);
    n->name = name;
    n->backward = backward;
    n->out = out;
    n->n_in = n_in;
    n->in = invar_arena_alloc(&g->arena, (size_t)n_in * sizeof *n->in);
    memcpy(n->in, in, (size_t)n_in * sizeof *n->in);
    n->ctx = ctx_bytes ? invar_arena_calloc(&g->arena, ctx_bytes) : NULL;
    n->may_overwrite = n->fresh = 0;
    n->prev = g->last;
    g->last = n;
    g->n_nodes++;
    out->requires_grad = 1;
    out->node = n;
    return n;
}

static void ensure_grad(struct invar_graph *g, struct invar_tensor *t)
{
    if (t && t->requires_grad && !t->grad)
        t->grad = invar_arena_calloc(&g->arena, (size_t)t->numel * sizeof(float));
}

void invar_graph_backward(struct invar_graph *g, struct invar_tensor *loss)
{
    INVAR_ASSERT(loss->numel == 1);
    if (!loss->requires_grad)
        return;
    ensure_grad(g, loss);
    loss->grad[0] += 1.0f;
    for (struct invar_node *n = g->last; n; n = n->prev) {
        if (!n->out->grad)
            continue; /* nothing downstream of this node reached the loss */
        n->fresh = 0;
        for (int i = 0; i < n->n_in; i++) {
            struct invar_tensor *t = n->in[i];
            if (t && (n->may_overwrite >> i & 1) && t->requires_grad && !t->grad) {
                t->grad = invar_arena_alloc(&g->arena, (size_t)t->numel * sizeof(float));
                n->fresh |= 1u << i;
            }
            ensure_grad(g, t);
        }
        n->backward(g, n);
    }
}

/* ---- custom ops ---------------------------------------------------------------------------- */

struct custom_ctx {
    invar_custom_backward_fn backward;
    void *user;
};

static void custom_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    struct custom_ctx *c = n->ctx;
    c->backward(n->out, n->in, n->n_in, c->user);
}

struct invar_tensor *invar_custom_op(struct invar_graph *g, const char *name,
                                     struct invar_tensor *out, struct invar_tensor **in,
                                     int n_in, invar_custom_backward_fn backward, void *ctx)
{
    struct invar_node *n = graph_record(g, name, out, in, n_in, custom_backward,
                                        sizeof(struct custom_ctx));
    if (n) {
        struct custom_ctx *c = n->ctx;
        c->backward = backward;
        c->user = ctx;
    }
    return out;
}
