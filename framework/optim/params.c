/* Parameter blocks: tensors are declared one by one, then carved out of three flat blocks
 * (weights, gradients, buffers) so every whole-model operation is a single loop. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "invar/params.h"
#include "invar/rng.h"

/* Domain tag of the initialisers' RNG streams ("params" in ASCII), so they never coincide
 * with the (epoch, sample, view, op) streams of the data pipeline for small integers. */
#define PARAMS_STREAM_TAG 0x706172616d73ull

#define PARAMS_ALIGN 64

struct params_entry {
    char *name;             /* owned copy */
    struct invar_tensor *t; /* owned; its address is handed out and never moves */
    struct invar_init init;
    unsigned flags;
    size_t offset; /* into the weights (or buffers) block, in floats */
};

struct invar_params {
    struct params_entry *entries; /* (count) in declaration order */
    size_t count, cap;
    size_t numel, buffer_numel;
    float *data;    // (numel) trainable weights, declaration order
    float *grad;    // (numel) their gradients, same layout
    float *buffers; // (buffer_numel)
    int finalized;
};

struct invar_params *invar_params_create(void)
{
    return calloc(1, sizeof(struct invar_params));
}

void invar_params_destroy(struct invar_params *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->count; i++) {
        free(p->entries[i].name);
        free(p->entries[i].t);
    }
    free(p->entries);
    free(p->data);
    free(p->grad);
    free(p->buffers);
    free(p);
}

static struct params_entry *params_lookup(const struct invar_params *p, const char *name)
{
    for (size_t i = 0; i < p->count; i++)
        if (strcmp(p->entries[i].name, name) == 0)
            return &p->entries[i];
    return NULL;
}

/* Declaration happens once at model construction: running out of memory there leaves nothing
 * to train, so it aborts like the arena does rather than threading a status through every
 * module constructor. */
static void *params_xalloc(void *old, size_t bytes)
{
    void *q = realloc(old, bytes);
    INVAR_ASSERT(q != NULL && "out of memory declaring parameters");
    return q;
}

struct invar_tensor *invar_params_add(struct invar_params *p, const char *name, int ndim,
                                      const int64_t *shape, struct invar_init init, unsigned flags)
{
    INVAR_ASSERT(p && name);
    INVAR_ASSERT(!p->finalized && "invar_params_add after finalize");
    INVAR_ASSERT(params_lookup(p, name) == NULL && "duplicate parameter name");
    INVAR_ASSERT(ndim >= 1 && ndim <= INVAR_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        INVAR_ASSERT(shape[i] > 0);
    if (p->count == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        p->entries = params_xalloc(p->entries, p->cap * sizeof *p->entries);
    }
    struct params_entry *e = &p->entries[p->count++];
    size_t len = strlen(name) + 1;
    e->name = params_xalloc(NULL, len);
    memcpy(e->name, name, len);
    e->t = params_xalloc(NULL, sizeof *e->t);
    invar_tensor_wrap(e->t, NULL, ndim, shape);
    e->t->requires_grad = !(flags & INVAR_P_BUFFER);
    e->init = init;
    e->flags = flags;
    e->offset = 0;
    return e->t;
}

/* A zeroed block rounded up to whole cache lines; NULL (and success) for an empty one. */
static enum invar_status params_block(float **out, size_t n, const char *what,
                                      struct invar_error *err)
{
    *out = NULL;
    if (n == 0)
        return INVAR_OK;
    size_t bytes = (n * sizeof(float) + PARAMS_ALIGN - 1) / PARAMS_ALIGN * PARAMS_ALIGN;
    *out = aligned_alloc(PARAMS_ALIGN, bytes);
    if (!*out)
        return invar_error_set(err, INVAR_ERR_NOMEM, "cannot allocate %zu bytes of %s", bytes,
                               what);
    memset(*out, 0, bytes);
    return INVAR_OK;
}

static enum invar_status params_check_init(const struct params_entry *e, struct invar_error *err)
{
    const struct invar_init *in = &e->init;
    int ok;
    switch (in->kind) {
    case INVAR_INIT_ZEROS:
        ok = 1;
        break;
    case INVAR_INIT_CONST:
        ok = isfinite(in->a);
        break;
    case INVAR_INIT_UNIFORM:
        ok = isfinite(in->a) && isfinite(in->b) && in->a <= in->b;
        break;
    case INVAR_INIT_NORMAL:
        ok = isfinite(in->a) && isfinite(in->b) && in->b >= 0;
        break;
    case INVAR_INIT_KAIMING_UNIFORM:
    case INVAR_INIT_KAIMING_NORMAL:
        ok = isfinite(in->a) && in->a > 0;
        break;
    default:
        ok = 0;
        break;
    }
    if (!ok)
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "parameter %s: invalid initialiser (kind %d, a=%g, b=%g)", e->name,
                               (int)in->kind, in->a, in->b);
    return INVAR_OK;
}

/* Fills x (n floats) from the entry's initialiser with its own generator. */
static void params_run_init(const struct invar_init *in, float *x, size_t n, struct invar_rng *r)
{
    double lo = 0, hi = 0, mean = 0, std = 0;
    switch (in->kind) {
    case INVAR_INIT_ZEROS:
        return; /* the block is already zeroed */
    case INVAR_INIT_CONST:
        for (size_t i = 0; i < n; i++)
            x[i] = (float)in->a;
        return;
    case INVAR_INIT_UNIFORM:
        lo = in->a, hi = in->b;
        break;
    case INVAR_INIT_KAIMING_UNIFORM:
        hi = 1.0 / sqrt(in->a), lo = -hi;
        break;
    case INVAR_INIT_NORMAL:
        mean = in->a, std = in->b;
        break;
    case INVAR_INIT_KAIMING_NORMAL:
        std = sqrt(2.0 / in->a);
        break;
    }
    if (in->kind == INVAR_INIT_UNIFORM || in->kind == INVAR_INIT_KAIMING_UNIFORM)
        for (size_t i = 0; i < n; i++)
            x[i] = invar_rng_range(r, (float)lo, (float)hi);
    else
        for (size_t i = 0; i < n; i++)
            x[i] = (float)(mean + std * invar_rng_normal(r));
}

enum invar_status invar_params_finalize(struct invar_params *p, uint64_t seed,
                                        struct invar_error *err)
{
    INVAR_ASSERT(p && !p->finalized);
    enum invar_status st;
    for (size_t i = 0; i < p->count; i++)
        if ((st = params_check_init(&p->entries[i], err)) != INVAR_OK)
            return st;

    /* Weights are laid out in declaration order, buffers likewise in their own block. */
    size_t nw = 0, nb = 0;
    for (size_t i = 0; i < p->count; i++) {
        struct params_entry *e = &p->entries[i];
        size_t n = (size_t)e->t->numel;
        if (e->flags & INVAR_P_BUFFER)
            e->offset = nb, nb += n;
        else
            e->offset = nw, nw += n;
    }
    if ((st = params_block(&p->data, nw, "weights", err)) != INVAR_OK ||
        (st = params_block(&p->grad, nw, "gradients", err)) != INVAR_OK ||
        (st = params_block(&p->buffers, nb, "buffers", err)) != INVAR_OK) {
        free(p->data), free(p->grad), free(p->buffers);
        p->data = p->grad = p->buffers = NULL;
        return st;
    }
    p->numel = nw;
    p->buffer_numel = nb;
    for (size_t i = 0; i < p->count; i++) {
        struct params_entry *e = &p->entries[i];
        if (e->flags & INVAR_P_BUFFER) {
            e->t->data = p->buffers + e->offset;
        } else {
            e->t->data = p->data + e->offset;
            e->t->grad = p->grad + e->offset;
        }
        struct invar_rng r;
        invar_rng_init(&r, seed, invar_rng_stream(PARAMS_STREAM_TAG, i, 0, 0));
        params_run_init(&e->init, e->t->data, (size_t)e->t->numel, &r);
    }
    p->finalized = 1;
    return INVAR_OK;
}

size_t invar_params_count(const struct invar_params *p)
{
    return p->count;
}

struct invar_tensor *invar_params_at(struct invar_params *p, size_t i, const char **name,
                                     unsigned *flags)
{
    INVAR_ASSERT(i < p->count);
    if (name)
        *name = p->entries[i].name;
    if (flags)
        *flags = p->entries[i].flags;
    return p->entries[i].t;
}

struct invar_tensor *invar_params_find(struct invar_params *p, const char *name)
{
    struct params_entry *e = params_lookup(p, name);
    return e ? e->t : NULL;
}

size_t invar_params_numel(const struct invar_params *p)
{
    return p->numel;
}
size_t invar_params_buffer_numel(const struct invar_params *p)
{
    return p->buffer_numel;
}
float *invar_params_data(struct invar_params *p)
{
    return p->data;
}
float *invar_params_grad(struct invar_params *p)
{
    return p->grad;
}
float *invar_params_buffers(struct invar_params *p)
{
    return p->buffers;
}

void invar_params_zero_grad(struct invar_params *p)
{
    INVAR_ASSERT(p->finalized);
    if (p->numel)
        memset(p->grad, 0, p->numel * sizeof *p->grad);
}

/* Same tensors, same shapes, same flags, same names, in the same order. */
static void params_assert_alike(const struct invar_params *a, const struct invar_params *b)
{
    INVAR_ASSERT(a->finalized && b->finalized);
    INVAR_ASSERT(a->count == b->count && a->numel == b->numel &&
                 a->buffer_numel == b->buffer_numel);
    for (size_t i = 0; i < a->count; i++) {
        const struct params_entry *x = &a->entries[i], *y = &b->entries[i];
        INVAR_ASSERT(x->flags == y->flags && invar_tensor_same_shape(x->t, y->t));
        INVAR_ASSERT(strcmp(x->name, y->name) == 0);
    }
}

void invar_params_copy(struct invar_params *dst, const struct invar_params *src)
{
    params_assert_alike(dst, src);
    if (dst->numel)
        memcpy(dst->data, src->data, dst->numel * sizeof *dst->data);
    if (dst->buffer_numel)
        memcpy(dst->buffers, src->buffers, dst->buffer_numel * sizeof *dst->buffers);
}

void invar_params_ema(struct invar_params *dst, const struct invar_params *src, float m)
{
    params_assert_alike(dst, src);
    float *d = dst->data;
    const float *s = src->data;
    const float one_minus_m = 1.0f - m;
    for (size_t i = 0; i < dst->numel; i++)
        d[i] = m * d[i] + one_minus_m * s[i];
}
