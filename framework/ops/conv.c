/* conv2d: im2col + one sgemm per chunk of images, forward and backward side by side.
 *
 * Layout. A chunk of nb images is unrolled into col (K, P) with K = C*KH*KW rows ordered like
 * the weight's (c, kh, kw) and P = nb*OH*OW columns ordered (n, oh, ow), so each GEMM has the
 * whole chunk's pixels as its big dimension:
 *     forward   yc (O, P)  = w (O, K) @ col (K, P)
 *     backward  dw (O, K) += dyc (O, P) @ col (K, P)^T
 *               dcol (K, P) = w (O, K)^T @ dyc (O, P)       then col2im adds dcol into dx
 * yc and dyc are (O, P) while images are NCHW, i.e. (nb, O, OH*OW): moving between the two is a
 * memcpy of OH*OW floats per (n, o), far cheaper than a transpose.
 *
 * Chunks are a fixed function of the shape (never of the thread count), and dw accumulates over
 * them in order, so results are bitwise reproducible. The chunk bounds col's size so it stays
 * near the cache instead of streaming hundreds of MB through memory. When the whole batch's col
 * is small it is kept in the arena from forward to backward instead of being rebuilt.
 */
#include <cblas.h>
#include <string.h>

#include "graph_internal.h"

/* Target size of one chunk's col buffer (at least one image per chunk), and the largest
 * whole-batch col kept for backward. Variables only so tests can force every path. */
#define CONV_CHUNK_BYTES ((size_t)6 << 20)
#define CONV_KEEP_BYTES ((size_t)32 << 20)
static size_t conv_chunk_bytes = CONV_CHUNK_BYTES;
static size_t conv_keep_bytes = CONV_KEEP_BYTES;

/* Test hook: sets both limits; (0, 0) restores the defaults. */
GRAPH_HIDDEN void conv_set_limits(size_t chunk_bytes, size_t keep_bytes);
void conv_set_limits(size_t chunk_bytes, size_t keep_bytes)
{
    conv_chunk_bytes = chunk_bytes ? chunk_bytes : CONV_CHUNK_BYTES;
    conv_keep_bytes = chunk_bytes ? keep_bytes : CONV_KEEP_BYTES;
}

struct conv_shape {
    int64_t n, c, h, w;     /* input (N, C, H, W) */
    int64_t o, kh, kw;      /* weight (O, C, KH, KW) */
    int64_t oh, ow;         /* output (N, O, OH, OW) */
    int64_t k;              /* C*KH*KW: GEMM reduction size of forward */
    int stride, pad;
    int64_t chunk;          /* images per chunk */
};

struct conv_ctx {
    struct conv_shape s;
    float *col;             /* (K, N*OH*OW) chunk after chunk, or NULL: rebuilt in backward */
};

static void conv_shape_init(struct conv_shape *s, const struct invar_tensor *x,
                            const struct invar_tensor *w, int stride, int pad)
{
    s->n = x->shape[0], s->c = x->shape[1], s->h = x->shape[2], s->w = x->shape[3];
    s->o = w->shape[0], s->kh = w->shape[2], s->kw = w->shape[3];
    s->stride = stride, s->pad = pad;
    s->oh = (s->h + 2 * pad - s->kh) / stride + 1;
    s->ow = (s->w + 2 * pad - s->kw) / stride + 1;
    s->k = s->c * s->kh * s->kw;
    size_t per_image = (size_t)(s->k * s->oh * s->ow) * sizeof(float);
    s->chunk = (int64_t)(conv_chunk_bytes / per_image);
    if (s->chunk < 1)
        s->chunk = 1;
    if (s->chunk > s->n)
        s->chunk = s->n;
}

/* col (K, nb*OH*OW) from images x (nb, C, H, W); padding reads as zero. */
static void conv_im2col(float *col, const float *x, int64_t nb, const struct conv_shape *s)
{
    const int64_t ohw = s->oh * s->ow, p = nb * ohw;
    for (int64_t k = 0; k < s->k; k++) {
        const int64_t c = k / (s->kh * s->kw), ky = (k / s->kw) % s->kh, kx = k % s->kw;
        /* the output columns whose input column stays inside the image */
        int64_t ow_lo = 0, ow_hi = s->ow;
        while (ow_lo < s->ow && ow_lo * s->stride - s->pad + kx < 0)
            ow_lo++;
        while (ow_hi > ow_lo && (ow_hi - 1) * s->stride - s->pad + kx >= s->w)
            ow_hi--;
        for (int64_t i = 0; i < nb; i++) {
            const float *plane = x + (i * s->c + c) * s->h * s->w; // (H, W)
            float *dst = col + k * p + i * ohw;                     // (OH, OW)
            for (int64_t oy = 0; oy < s->oh; oy++, dst += s->ow) {
                const int64_t iy = oy * s->stride - s->pad + ky;
                if (iy < 0 || iy >= s->h) {
                    memset(dst, 0, (size_t)s->ow * sizeof *dst);
                    continue;
                }
                const float *row = plane + iy * s->w - s->pad + kx;
                for (int64_t ox = 0; ox < ow_lo; ox++)
                    dst[ox] = 0;
                if (s->stride == 1)
                    memcpy(dst + ow_lo, row + ow_lo, (size_t)(ow_hi - ow_lo) * sizeof *dst);
                else
                    for (int64_t ox = ow_lo; ox < ow_hi; ox++)
                        dst[ox] = row[ox * s->stride];
                for (int64_t ox = ow_hi; ox < s->ow; ox++)
                    dst[ox] = 0;
            }
        }
    }
}

/* dx (nb, C, H, W) += col2im(dcol (K, nb*OH*OW)); padding cells are dropped. Each (n, c) plane
 * only receives rows of its own c, so the loop order keeps writes local. */
static void conv_col2im(float *dx, const float *dcol, int64_t nb, const struct conv_shape *s)
{
    const int64_t ohw = s->oh * s->ow, p = nb * ohw, kk = s->kh * s->kw;
    for (int64_t i = 0; i < nb; i++) {
        for (int64_t c = 0; c < s->c; c++) {
            float *plane = dx + (i * s->c + c) * s->h * s->w; // (H, W)
            for (int64_t r = 0; r < kk; r++) {
                const int64_t ky = r / s->kw, kx = r % s->kw;
                int64_t ow_lo = 0, ow_hi = s->ow;
                while (ow_lo < s->ow && ow_lo * s->stride - s->pad + kx < 0)
                    ow_lo++;
                while (ow_hi > ow_lo && (ow_hi - 1) * s->stride - s->pad + kx >= s->w)
                    ow_hi--;
                const float *src = dcol + (c * kk + r) * p + i * ohw; // (OH, OW)
                for (int64_t oy = 0; oy < s->oh; oy++, src += s->ow) {
                    const int64_t iy = oy * s->stride - s->pad + ky;
                    if (iy < 0 || iy >= s->h)
                        continue;
                    float *row = plane + iy * s->w - s->pad + kx;
                    if (s->stride == 1)
                        for (int64_t ox = ow_lo; ox < ow_hi; ox++)
                            row[ox] += src[ox];
                    else
                        for (int64_t ox = ow_lo; ox < ow_hi; ox++)
                            row[ox * s->stride] += src[ox];
                }
            }
        }
    }
}

static void conv_backward(struct invar_graph *g, struct invar_node *node)
{
    const struct conv_ctx *ctx = node->ctx;
    const struct conv_shape *s = &ctx->s;
    struct invar_tensor *x = node->in[0], *w = node->in[1];
    struct invar_tensor *b = node->n_in > 2 ? node->in[2] : NULL;
    const float *dy = node->out->grad; // (N, O, OH, OW)
    const int64_t ohw = s->oh * s->ow, img_in = s->c * s->h * s->w, img_out = s->o * ohw;

    if (b && b->requires_grad && b->grad) {
        for (int64_t i = 0; i < s->n; i++)
            for (int64_t o = 0; o < s->o; o++) {
                const float *d = dy + i * img_out + o * ohw;
                float acc = 0;
                for (int64_t j = 0; j < ohw; j++)
                    acc += d[j];
                b->grad[o] += acc;
            }
    }
    const int need_dx = x->requires_grad && x->grad, need_dw = w->requires_grad && w->grad;
    if (!need_dx && !need_dw)
        return;

    const int64_t pmax = s->chunk * ohw;
    float *dyc = graph_alloc(g, (size_t)(s->o * pmax) * sizeof(float));              // (O, P)
    float *col = ctx->col || !need_dw ? NULL : graph_alloc(g, (size_t)(s->k * pmax) * sizeof(float));
    float *dcol = need_dx ? graph_alloc(g, (size_t)(s->k * pmax) * sizeof(float)) : NULL; // (K, P)
    for (int64_t n0 = 0; n0 < s->n; n0 += s->chunk) {
        const int64_t nb = s->n - n0 < s->chunk ? s->n - n0 : s->chunk, p = nb * ohw;
        for (int64_t i = 0; i < nb; i++)
            for (int64_t o = 0; o < s->o; o++)
                memcpy(dyc + o * p + i * ohw, dy + (n0 + i) * img_out + o * ohw,
                       (size_t)ohw * sizeof(float));
        if (need_dw) {
            const float *colc = ctx->col ? ctx->col + s->k * n0 * ohw : col;
            if (!ctx->col)
                conv_im2col(col, x->data + n0 * img_in, nb, s);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->o, (int)s->k, (int)p,
                        1.0f, dyc, (int)p, colc, (int)p, 1.0f, w->grad, (int)s->k);
        }
        if (need_dx) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)s->k, (int)p, (int)s->o,
                        1.0f, w->data, (int)s->k, dyc, (int)p, 0.0f, dcol, (int)p);
            conv_col2im(x->grad + n0 * img_in, dcol, nb, s);
        }
    }
}

struct invar_tensor *invar_conv2d(struct invar_graph *g, struct invar_tensor *x,
                                  struct invar_tensor *w, struct invar_tensor *b, int stride,
                                  int pad)
{
    INVAR_ASSERT(x->ndim == 4 && w->ndim == 4 && x->shape[1] == w->shape[1]);
    INVAR_ASSERT(stride >= 1 && pad >= 0);
    INVAR_ASSERT(invar_tensor_is_contiguous(x) && invar_tensor_is_contiguous(w));
    INVAR_ASSERT(!b || (b->numel == w->shape[0] && invar_tensor_is_contiguous(b)));
    INVAR_ASSERT(x->shape[2] + 2 * pad >= w->shape[2] && x->shape[3] + 2 * pad >= w->shape[3]);
    struct conv_shape s;
    conv_shape_init(&s, x, w, stride, pad);
    struct invar_tensor *y = graph_new(g, 4, (int64_t[]){s.n, s.o, s.oh, s.ow});

    struct invar_tensor *in[3] = {x, w, b};
    const int n_in = b ? 3 : 2;
    const int record = graph_needs_grad(g, in, n_in);
    const int64_t ohw = s.oh * s.ow, img_in = s.c * s.h * s.w, img_out = s.o * ohw;
    const size_t col_all = (size_t)(s.k * s.n * ohw) * sizeof(float);
    /* dw needs col again in backward; keep it when it is cheap to hold */
    const int keep = record && w->requires_grad && col_all <= conv_keep_bytes;
    float *kept = keep ? graph_alloc(g, col_all) : NULL;
    float *col = keep ? NULL : graph_alloc(g, (size_t)(s.k * s.chunk * ohw) * sizeof(float));
    float *yc = graph_alloc(g, (size_t)(s.o * s.chunk * ohw) * sizeof(float)); // (O, P)

    for (int64_t n0 = 0; n0 < s.n; n0 += s.chunk) {
        const int64_t nb = s.n - n0 < s.chunk ? s.n - n0 : s.chunk, p = nb * ohw;
        float *colc = keep ? kept + s.k * n0 * ohw : col; // (K, P)
        conv_im2col(colc, x->data + n0 * img_in, nb, &s);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s.o, (int)p, (int)s.k,
                    1.0f, w->data, (int)s.k, colc, (int)p, 0.0f, yc, (int)p);
        for (int64_t i = 0; i < nb; i++)
            for (int64_t o = 0; o < s.o; o++) {
                float *dst = y->data + (n0 + i) * img_out + o * ohw;
                const float *src = yc + o * p + i * ohw;
                const float bo = b ? b->data[o] : 0.0f;
                for (int64_t j = 0; j < ohw; j++)
                    dst[j] = src[j] + bo;
            }
    }

    struct invar_node *node = graph_record(g, "conv2d", y, in, n_in, conv_backward,
                                           sizeof(struct conv_ctx));
    if (node) {
        struct conv_ctx *ctx = node->ctx;
        ctx->s = s;
        ctx->col = kept;
    }
    return y;
}
