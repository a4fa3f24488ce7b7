/* Pooling over (N, C, H, W): max, average (count_include_pad) and global average.
 *
 * Max pooling with 2x2 windows, stride 2 and no padding (the encoders' pooling) has its own
 * loops: the same scan order and tie rule as the general one, the winner kept as a byte (its
 * place in the window) instead of an int32 plane index, and planes split over two threads in
 * fixed slices (parallel.h), so the results do not depend on the path or the scheduling.
 */
#include <math.h>

#include "graph_internal.h"
#include "parallel.h"

struct pool_ctx {
    int k, stride, pad;
    int32_t *argmax; /* (N, C, OH, OW) flat index into the (H, W) plane; max pooling only */
    uint8_t *win;    /* (N, C, OH, OW) the 2x2 fast path's winner: dy * 2 + dx */
};

/* ---- max, 2x2 windows, stride 2 ------------------------------------------------------------ */

struct pool2_job {
    const float *x;  // (P, H, W)
    float *y;        // (P, OH, OW)
    float *dx;       // (P, H, W) backward
    const float *dy; // (P, OH, OW) backward
    uint8_t *win;    // (P, OH, OW) or NULL
    int64_t h, w, oh, ow;
};

static void maxpool2_planes(void *arg, int slice, int64_t lo, int64_t hi)
{
    (void)slice;
    const struct pool2_job *j = arg;
    for (int64_t p = lo; p < hi; p++) {
        const float *src = j->x + p * j->h * j->w; // (H, W)
        float *dst = j->y + p * j->oh * j->ow;     // (OH, OW)
        uint8_t *win = j->win ? j->win + p * j->oh * j->ow : NULL;
        for (int64_t oy = 0; oy < j->oh; oy++) {
            const float *r0 = src + 2 * oy * j->w, *r1 = r0 + j->w;
            for (int64_t ox = 0; ox < j->ow; ox++) {
                /* row by row, strict >: ties go to the first cell, as in the general loop */
                float best = r0[2 * ox];
                uint8_t at = 0;
                if (r0[2 * ox + 1] > best)
                    best = r0[2 * ox + 1], at = 1;
                if (r1[2 * ox] > best)
                    best = r1[2 * ox], at = 2;
                if (r1[2 * ox + 1] > best)
                    best = r1[2 * ox + 1], at = 3;
                dst[oy * j->ow + ox] = best;
                if (win)
                    win[oy * j->ow + ox] = at;
            }
        }
    }
}

static void maxpool2_backward_planes(void *arg, int slice, int64_t lo, int64_t hi)
{
    (void)slice;
    const struct pool2_job *j = arg;
    for (int64_t p = lo; p < hi; p++) {
        float *dx = j->dx + p * j->h * j->w;         // (H, W)
        const float *dy = j->dy + p * j->oh * j->ow; // (OH, OW)
        const uint8_t *win = j->win + p * j->oh * j->ow;
        for (int64_t oy = 0; oy < j->oh; oy++)
            for (int64_t ox = 0; ox < j->ow; ox++) {
                const uint8_t at = win[oy * j->ow + ox];
                dx[(2 * oy + (at >> 1)) * j->w + 2 * ox + (at & 1)] += dy[oy * j->ow + ox];
            }
    }
}

static void maxpool2_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const struct pool_ctx *ctx = n->ctx;
    struct invar_tensor *x = n->in[0], *y = n->out;
    struct pool2_job j = {.dx = x->grad,
                          .dy = y->grad,
                          .win = ctx->win,
                          .h = x->shape[2],
                          .w = x->shape[3],
                          .oh = y->shape[2],
                          .ow = y->shape[3]};
    ops_parallel_for(maxpool2_backward_planes, &j, x->shape[0] * x->shape[1], x->numel);
}

static struct invar_tensor *maxpool2(struct invar_graph *g, struct invar_tensor *x,
                                     struct invar_tensor *y)
{
    const int record = graph_needs_grad(g, &x, 1);
    struct pool2_job j = {.x = x->data,
                          .y = y->data,
                          .win = record ? graph_alloc(g, (size_t)y->numel) : NULL,
                          .h = x->shape[2],
                          .w = x->shape[3],
                          .oh = y->shape[2],
                          .ow = y->shape[3]};
    ops_parallel_for(maxpool2_planes, &j, x->shape[0] * x->shape[1], x->numel);
    struct invar_node *n =
        graph_record(g, "maxpool2d", y, &x, 1, maxpool2_backward, sizeof(struct pool_ctx));
    if (n) {
        struct pool_ctx *ctx = n->ctx;
        *ctx = (struct pool_ctx){2, 2, 0, NULL, j.win};
    }
    return y;
}

static struct invar_tensor *pool_output(struct invar_graph *g, const struct invar_tensor *x, int k,
                                        int stride, int pad)
{
    INVAR_ASSERT(x->ndim == 4 && invar_tensor_is_contiguous(x));
    INVAR_ASSERT(k >= 1 && stride >= 1 && pad >= 0);
    /* PyTorch's rule: every window then holds at least one real cell */
    INVAR_ASSERT(2 * pad <= k);
    INVAR_ASSERT(x->shape[2] + 2 * pad >= k && x->shape[3] + 2 * pad >= k);
    const int64_t oh = (x->shape[2] + 2 * pad - k) / stride + 1;
    const int64_t ow = (x->shape[3] + 2 * pad - k) / stride + 1;
    return graph_new(g, 4, (int64_t[]){x->shape[0], x->shape[1], oh, ow});
}

/* ---- max ----------------------------------------------------------------------------------- */

static void maxpool_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const struct pool_ctx *ctx = n->ctx;
    struct invar_tensor *x = n->in[0], *y = n->out;
    const int64_t planes = x->shape[0] * x->shape[1], hw = x->shape[2] * x->shape[3];
    const int64_t ohw = y->shape[2] * y->shape[3];
    for (int64_t p = 0; p < planes; p++) {
        float *dx = x->grad + p * hw;        // (H, W)
        const float *dy = y->grad + p * ohw; // (OH, OW)
        const int32_t *am = ctx->argmax + p * ohw;
        for (int64_t j = 0; j < ohw; j++)
            dx[am[j]] += dy[j];
    }
}

struct invar_tensor *invar_maxpool2d(struct invar_graph *g, struct invar_tensor *x, int k,
                                     int stride, int pad)
{
    struct invar_tensor *y = pool_output(g, x, k, stride, pad);
    if (k == 2 && stride == 2 && pad == 0)
        return maxpool2(g, x, y);
    const int64_t planes = x->shape[0] * x->shape[1], h = x->shape[2], w = x->shape[3];
    const int64_t oh = y->shape[2], ow = y->shape[3];
    const int record = graph_needs_grad(g, &x, 1);
    int32_t *argmax = record ? graph_alloc(g, (size_t)y->numel * sizeof(int32_t)) : NULL;
    for (int64_t p = 0; p < planes; p++) {
        const float *src = x->data + p * h * w; // (H, W)
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                const int64_t y0 = oy * stride - pad, x0 = ox * stride - pad;
                float best = -INFINITY;
                int64_t at = -1;
                /* padding is skipped, never compared; strict > gives ties to the first max */
                for (int64_t iy = y0 < 0 ? 0 : y0; iy < y0 + k && iy < h; iy++)
                    for (int64_t ix = x0 < 0 ? 0 : x0; ix < x0 + k && ix < w; ix++)
                        if (at < 0 || src[iy * w + ix] > best) {
                            best = src[iy * w + ix];
                            at = iy * w + ix;
                        }
                const int64_t j = p * oh * ow + oy * ow + ox;
                y->data[j] = best;
                if (argmax)
                    argmax[j] = (int32_t)at;
            }
    }
    struct invar_node *n =
        graph_record(g, "maxpool2d", y, &x, 1, maxpool_backward, sizeof(struct pool_ctx));
    if (n) {
        struct pool_ctx *ctx = n->ctx;
        *ctx = (struct pool_ctx){k, stride, pad, argmax, NULL};
    }
    return y;
}

/* ---- average ------------------------------------------------------------------------------- */

static void avgpool_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const struct pool_ctx *ctx = n->ctx;
    struct invar_tensor *x = n->in[0], *y = n->out;
    const int k = ctx->k, stride = ctx->stride, pad = ctx->pad;
    const int64_t planes = x->shape[0] * x->shape[1], h = x->shape[2], w = x->shape[3];
    const int64_t oh = y->shape[2], ow = y->shape[3];
    const float inv = 1.0f / (float)(k * k);
    for (int64_t p = 0; p < planes; p++) {
        float *dx = x->grad + p * h * w;         // (H, W)
        const float *dy = y->grad + p * oh * ow; // (OH, OW)
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                const int64_t y0 = oy * stride - pad, x0 = ox * stride - pad;
                const float d = dy[oy * ow + ox] * inv;
                for (int64_t iy = y0 < 0 ? 0 : y0; iy < y0 + k && iy < h; iy++)
                    for (int64_t ix = x0 < 0 ? 0 : x0; ix < x0 + k && ix < w; ix++)
                        dx[iy * w + ix] += d;
            }
    }
}

struct invar_tensor *invar_avgpool2d(struct invar_graph *g, struct invar_tensor *x, int k,
                                     int stride, int pad)
{
    struct invar_tensor *y = pool_output(g, x, k, stride, pad);
    const int64_t planes = x->shape[0] * x->shape[1], h = x->shape[2], w = x->shape[3];
    const int64_t oh = y->shape[2], ow = y->shape[3];
    /* count_include_pad: padded cells count as zeros, so the divisor is always k*k */
    const float inv = 1.0f / (float)(k * k);
    for (int64_t p = 0; p < planes; p++) {
        const float *src = x->data + p * h * w; // (H, W)
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                const int64_t y0 = oy * stride - pad, x0 = ox * stride - pad;
                float acc = 0;
                for (int64_t iy = y0 < 0 ? 0 : y0; iy < y0 + k && iy < h; iy++)
                    for (int64_t ix = x0 < 0 ? 0 : x0; ix < x0 + k && ix < w; ix++)
                        acc += src[iy * w + ix];
                y->data[p * oh * ow + oy * ow + ox] = acc * inv;
            }
    }
    struct invar_node *n =
        graph_record(g, "avgpool2d", y, &x, 1, avgpool_backward, sizeof(struct pool_ctx));
    if (n) {
        struct pool_ctx *ctx = n->ctx;
        *ctx = (struct pool_ctx){k, stride, pad, NULL, NULL};
    }
    return y;
}

/* ---- global average ------------------------------------------------------------------------ */

static void global_avgpool_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    struct invar_tensor *x = n->in[0], *y = n->out;
    const int64_t hw = x->shape[2] * x->shape[3];
    const float inv = 1.0f / (float)hw;
    for (int64_t p = 0; p < y->numel; p++) {
        const float d = y->grad[p] * inv;
        float *dx = x->grad + p * hw;
        for (int64_t j = 0; j < hw; j++)
            dx[j] += d;
    }
}

struct invar_tensor *invar_global_avgpool(struct invar_graph *g, struct invar_tensor *x)
{
    INVAR_ASSERT(x->ndim == 4 && invar_tensor_is_contiguous(x));
    struct invar_tensor *y = graph_new(g, 2, (int64_t[]){x->shape[0], x->shape[1]}); // (N, C)
    const int64_t hw = x->shape[2] * x->shape[3];
    for (int64_t p = 0; p < y->numel; p++) {
        const float *src = x->data + p * hw;
        float acc = 0;
        for (int64_t j = 0; j < hw; j++)
            acc += src[j];
        y->data[p] = acc / (float)hw;
    }
    graph_record(g, "global_avgpool", y, &x, 1, global_avgpool_backward, 0);
    return y;
}
