/* Spatial ops: conv2d, pooling, batch-norm. Finite-difference gradients on random shapes, plus
 * values against a direct convolution and hand-computed numbers. */
#include <criterion/criterion.h>
#include <math.h>

#include "gradcheck.h"
#include "ops/graph_internal.h"

/* conv.c's test hook: chunk size and kept-col limit in bytes, smallest loop split across
 * threads; (0, 0, 0) restores the defaults. */
void conv_set_limits(size_t chunk_bytes, size_t keep_bytes, int64_t par_min);
/* conv.c's test hook: stride-1 layers take the direct path by shape (0), always (1), never (-1) */
void conv_set_direct(int mode);
/* conv.c's test hook: 3x3 pad-1 layers take Winograd F(2x2, 3x3) by channel count (0), always
 * (1), never (-1) */
void conv_set_winograd(int mode);
/* conv.c's default chunk size, given explicitly so that par_min can be set alone */
#define CONV_TEST_CHUNK ((size_t)16 << 20)

/* ---- conv2d -------------------------------------------------------------------------------- */

struct conv_case {
    int64_t n, c, h, w, o, k;
    int stride, pad, bias;
};

/* non-square images, batch > 1, stride 1 and 2, padding 0 and 1, kernels 1/3/5, C_in != C_out */
// clang-format off
static const struct conv_case conv_cases[] = {
    {2, 3, 5, 7, 4, 3, 1, 1, 1},
    {3, 2, 7, 6, 3, 3, 2, 1, 0},
    {2, 3, 6, 5, 2, 1, 1, 0, 1},
    {2, 2, 8, 9, 3, 5, 2, 0, 1},
    {2, 1, 6, 7, 3, 5, 1, 1, 0},
    {2, 4, 5, 4, 2, 3, 2, 0, 1},
};
// clang-format on

struct conv_args {
    int stride, pad;
};

static struct invar_tensor *conv_f(struct invar_graph *g, struct invar_tensor **in, void *ctx)
{
    const struct conv_args *a = ctx;
    return invar_conv2d(g, in[0], in[1], in[2]->numel ? in[2] : NULL, a->stride, a->pad);
}

/* direct convolution in double: (N, O, OH, OW) */
static void conv_naive(double *y, const struct invar_tensor *x, const struct invar_tensor *w,
                       const struct invar_tensor *b, int stride, int pad, int64_t oh, int64_t ow)
{
    const int64_t n = x->shape[0], c = x->shape[1], h = x->shape[2], wd = x->shape[3];
    const int64_t o = w->shape[0], kh = w->shape[2], kw = w->shape[3];
    for (int64_t i = 0; i < n; i++)
        for (int64_t oc = 0; oc < o; oc++)
            for (int64_t oy = 0; oy < oh; oy++)
                for (int64_t ox = 0; ox < ow; ox++) {
                    double acc = b ? b->data[oc] : 0.0;
                    for (int64_t ic = 0; ic < c; ic++)
                        for (int64_t ky = 0; ky < kh; ky++)
                            for (int64_t kx = 0; kx < kw; kx++) {
                                const int64_t iy = oy * stride - pad + ky;
                                const int64_t ix = ox * stride - pad + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= wd)
                                    continue;
                                acc += (double)x->data[((i * c + ic) * h + iy) * wd + ix] *
                                       w->data[((oc * c + ic) * kh + ky) * kw + kx];
                            }
                    y[((i * o + oc) * oh + oy) * ow + ox] = acc;
                }
}

static void conv_run_gradchecks(void)
{
    for (size_t t = 0; t < sizeof conv_cases / sizeof conv_cases[0]; t++) {
        const struct conv_case *cc = &conv_cases[t];
        struct invar_tensor *in[3] = {
            gc_tensor(4, (int64_t[]){cc->n, cc->c, cc->h, cc->w}, 1),
            gc_tensor(4, (int64_t[]){cc->o, cc->c, cc->k, cc->k}, 1),
            gc_tensor(1, (int64_t[]){cc->bias ? cc->o : 0}, cc->bias),
        };
        struct conv_args a = {cc->stride, cc->pad};
        gc_check(conv_f, in, 3, &a, 1e-2, 1e-2);
        for (int i = 0; i < 3; i++)
            gc_free(in[i]);
    }
}

Test(conv, gradcheck)
{
    conv_run_gradchecks();
}

/* One image per chunk and nothing kept: the chunked rebuild-in-backward path. */
Test(conv, gradcheck_chunked)
{
    conv_set_limits(1, 0, INT64_MAX);
    conv_run_gradchecks();
    conv_set_limits(0, 0, 0);
}

/* Every stride-1 case through the direct path (tiny planes would otherwise take im2col),
 * single-threaded and split across threads. */
Test(conv, gradcheck_direct_path)
{
    conv_set_direct(1);
    conv_run_gradchecks();
    conv_set_limits(CONV_TEST_CHUNK, CONV_TEST_CHUNK, 1);
    conv_run_gradchecks();
    conv_set_limits(0, 0, 0);
    conv_set_direct(0);
}

/* An input read by a convolution and by another op: the op that runs first in backward gets a
 * fresh gradient buffer (the direct path writes it without zeroing), the other adds to it.
 * Both recording orders, through the direct path and through im2col. */
static struct invar_tensor *conv_shared_f(struct invar_graph *g, struct invar_tensor **in,
                                          void *ctx)
{
    const int conv_last = *(const int *)ctx;
    struct invar_tensor *sq = NULL, *y = NULL;
    if (conv_last) {
        sq = invar_mul(g, in[0], in[0]);
        y = invar_conv2d(g, in[0], in[1], NULL, 1, 1);
    } else {
        y = invar_conv2d(g, in[0], in[1], NULL, 1, 1);
        sq = invar_mul(g, in[0], in[0]);
    }
    struct invar_tensor *parts[2] = {invar_reshape(g, y, 1, (int64_t[]){y->numel}),
                                     invar_reshape(g, sq, 1, (int64_t[]){sq->numel})};
    return invar_concat(g, parts, 2, 0);
}

Test(conv, gradient_of_an_input_shared_with_another_op)
{
    for (int direct = -1; direct <= 1; direct += 2) {
        conv_set_direct(direct);
        for (int conv_last = 0; conv_last < 2; conv_last++) {
            struct invar_tensor *in[2] = {gc_tensor(4, (int64_t[]){2, 3, 5, 6}, 1),
                                          gc_tensor(4, (int64_t[]){4, 3, 3, 3}, 1)};
            gc_check(conv_shared_f, in, 2, &conv_last, 1e-2, 1e-2);
            gc_free(in[0]), gc_free(in[1]);
        }
    }
    conv_set_direct(0);
}

/* A first layer: the input needs no gradient, so dx is skipped while dw and db still flow. */
Test(conv, gradcheck_no_input_grad)
{
    struct invar_tensor *in[3] = {
        gc_tensor(4, (int64_t[]){3, 1, 6, 5}, 0),
        gc_tensor(4, (int64_t[]){4, 1, 3, 3}, 1),
        gc_tensor(1, (int64_t[]){4}, 1),
    };
    struct conv_args a = {1, 1};
    gc_check(conv_f, in, 3, &a, 1e-2, 1e-2);
    cr_assert_null(in[0]->grad);
    for (int i = 0; i < 3; i++)
        gc_free(in[i]);
}

static void conv_check_values(void)
{
    for (size_t t = 0; t < sizeof conv_cases / sizeof conv_cases[0]; t++) {
        const struct conv_case *cc = &conv_cases[t];
        struct invar_tensor *x = gc_tensor(4, (int64_t[]){cc->n, cc->c, cc->h, cc->w}, 0);
        struct invar_tensor *w = gc_tensor(4, (int64_t[]){cc->o, cc->c, cc->k, cc->k}, 0);
        struct invar_tensor *b = cc->bias ? gc_tensor(1, (int64_t[]){cc->o}, 0) : NULL;
        struct invar_graph *g = invar_graph_create(1 << 20);
        struct invar_tensor *y = invar_conv2d(g, x, w, b, cc->stride, cc->pad);
        const int64_t oh = (cc->h + 2 * cc->pad - cc->k) / cc->stride + 1;
        const int64_t ow = (cc->w + 2 * cc->pad - cc->k) / cc->stride + 1;
        cr_assert(y->ndim == 4 && y->shape[0] == cc->n && y->shape[1] == cc->o &&
                      y->shape[2] == oh && y->shape[3] == ow,
                  "case %zu: wrong output shape", t);
        double *ref = malloc((size_t)y->numel * sizeof *ref);
        conv_naive(ref, x, w, b, cc->stride, cc->pad, oh, ow);
        for (int64_t i = 0; i < y->numel; i++)
            cr_assert(fabs(y->data[i] - ref[i]) < 1e-5 * (1 + fabs(ref[i])),
                      "case %zu element %lld: %g vs direct %g", t, (long long)i, y->data[i],
                      ref[i]);
        free(ref);
        invar_graph_destroy(g);
        gc_free(x), gc_free(w), gc_free(b);
    }
}

Test(conv, matches_direct_convolution)
{
    conv_check_values();
    conv_set_limits(1, 0, 1);
    conv_check_values();
    conv_set_direct(1);
    conv_check_values();
    conv_set_limits(0, 0, 0);
    conv_check_values();
    conv_set_direct(0);
}

/* Gradients against the direct formulas at sizes large enough that the copy loops split across
 * threads and the batch spans several chunks: dx[n,c,iy,ix] = sum dy * w over the windows that
 * read the cell, dw[o,c,ky,kx] = sum dy * x under the tap, db[o] = sum dy. */
static void conv_check_backward_shape(int64_t n, int64_t c, int64_t h, int64_t wd, int64_t o,
                                      int stride, int pad, int bias)
{
    const int64_t k = 3;
    struct invar_tensor *x = gc_tensor(4, (int64_t[]){n, c, h, wd}, 1);
    struct invar_tensor *w = gc_tensor(4, (int64_t[]){o, c, k, k}, 1);
    struct invar_tensor *b = bias ? gc_tensor(1, (int64_t[]){o}, 1) : NULL;
    struct invar_graph *g = invar_graph_create(1 << 20);
    struct invar_tensor *y = invar_conv2d(g, x, w, b, stride, pad);
    const int64_t oh = y->shape[2], ow = y->shape[3];
    struct invar_tensor *dy = gc_tensor(4, y->shape, 0);
    struct invar_tensor *loss = invar_graph_tensor(g, 1, (int64_t[]){1});
    loss->data[0] = 0;
    struct gc_dot_ctx dc = {dy->data};
    invar_custom_op(g, "dot", loss, &y, 1, gc_dot_backward, &dc);
    invar_graph_backward(g, loss);

    double *dx = calloc((size_t)x->numel, sizeof *dx), *dw = calloc((size_t)w->numel, sizeof *dw);
    double *db = calloc((size_t)o, sizeof *db);
    for (int64_t i = 0; i < n; i++)
        for (int64_t oc = 0; oc < o; oc++)
            for (int64_t oy = 0; oy < oh; oy++)
                for (int64_t ox = 0; ox < ow; ox++) {
                    const double d = dy->data[((i * o + oc) * oh + oy) * ow + ox];
                    db[oc] += d;
                    for (int64_t ic = 0; ic < c; ic++)
                        for (int64_t ky = 0; ky < k; ky++)
                            for (int64_t kx = 0; kx < k; kx++) {
                                const int64_t iy = oy * stride - pad + ky;
                                const int64_t ix = ox * stride - pad + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= wd)
                                    continue;
                                const int64_t xi = ((i * c + ic) * h + iy) * wd + ix;
                                const int64_t wi = ((oc * c + ic) * k + ky) * k + kx;
                                dx[xi] += d * w->data[wi];
                                dw[wi] += d * x->data[xi];
                            }
                }
    for (int64_t i = 0; i < x->numel; i++)
        cr_assert(fabs(x->grad[i] - dx[i]) < 1e-4 * (1 + fabs(dx[i])), "dx[%lld]: %g vs %g",
                  (long long)i, x->grad[i], dx[i]);
    for (int64_t i = 0; i < w->numel; i++)
        cr_assert(fabs(w->grad[i] - dw[i]) < 1e-4 * (1 + fabs(dw[i])), "dw[%lld]: %g vs %g",
                  (long long)i, w->grad[i], dw[i]);
    for (int64_t i = 0; b && i < o; i++)
        cr_assert(fabs(b->grad[i] - db[i]) < 1e-4 * (1 + fabs(db[i])), "db[%lld]: %g vs %g",
                  (long long)i, b->grad[i], db[i]);
    free(dx), free(dw), free(db);
    invar_graph_destroy(g);
    gc_free(x), gc_free(w), gc_free(b), gc_free(dy);
}

static void conv_check_backward(int stride, int pad, int bias)
{
    conv_check_backward_shape(5, 8, 26, 23, 6, stride, pad, bias);
}

Test(conv, backward_matches_direct)
{
    conv_check_backward(1, 1, 1);
    conv_check_backward(2, 1, 0);
    conv_check_backward(1, 0, 0);
    /* two images per chunk, col rebuilt in backward, every loop split across threads */
    conv_set_limits(2 * 72 * 26 * 23 * sizeof(float), 0, 1);
    conv_check_backward(1, 1, 1);
    conv_check_backward(2, 0, 1);
    conv_set_limits(0, 0, 0);
    /* 23 columns take the direct path by default; the im2col path at stride 1 too */
    conv_set_direct(-1);
    conv_check_backward(1, 1, 1);
    conv_check_backward(1, 0, 0);
    conv_set_direct(1);
    conv_check_backward(1, 2, 1); /* pad > k-1: direct forward, im2col backward */
    conv_set_direct(0);
}

/* Every 3x3 pad-1 case through Winograd F(2x2, 3x3), forward, dx and dw, whatever its channel
 * count: odd and even planes (a last block half outside), one and several vectors of blocks per
 * row, a plane narrower than a vector. */
Test(conv, winograd_matches_direct_convolution)
{
    conv_set_direct(1);
    conv_set_winograd(1);
    conv_check_values();
    conv_check_backward(1, 1, 1); /* 26 x 23: 13 x 12 blocks, two vectors a row */
    conv_check_backward(1, 1, 0);
    conv_set_limits(CONV_TEST_CHUNK, CONV_TEST_CHUNK, 1);
    conv_check_backward(1, 1, 1);
    conv_set_limits(0, 0, 0);
    conv_run_gradchecks();
    conv_set_winograd(0);
    conv_set_direct(0);
}

/* Planes narrower than the direct path's 7 columns take it when their forward goes through
 * Winograd (8 input channels or more), with several images' blocks in one GEMM: 4 x 5 and 3 x 3
 * planes, 6 and 4 blocks an image, and a first-layer-like 1-channel input that keeps im2col. */
Test(conv, winograd_on_narrow_planes)
{
    conv_check_backward_shape(7, 12, 4, 5, 9, 1, 1, 1);
    conv_check_backward_shape(9, 8, 3, 3, 16, 1, 1, 0);
    conv_check_backward_shape(3, 1, 4, 4, 8, 1, 1, 1);
    conv_set_limits(CONV_TEST_CHUNK, CONV_TEST_CHUNK, 1);
    conv_check_backward_shape(7, 12, 4, 5, 9, 1, 1, 1);
    conv_set_limits(0, 0, 0);
}

static void conv_backward_of(struct invar_graph *g, struct invar_tensor **y, int n,
                             const struct invar_tensor *dy)
{
    struct invar_tensor *loss = invar_graph_tensor(g, 1, (int64_t[]){1});
    loss->data[0] = 0;
    struct gc_dot_ctx dc = {dy->data};
    invar_custom_op(g, "dot", loss, y, n, gc_dot_backward, &dc);
    invar_graph_backward(g, loss);
}

/* The kernels' packed weights are kept for the rest of the graph's step (the other views reuse
 * them), but never once the weights have changed. In one graph: y_a = conv(x, w); w changes in
 * place; y_b and y_c = conv(x, w), both backpropagated. y_b and y_c have the bits of y in a
 * fresh graph and dx is twice its dx, on the direct path and on Winograd. */
Test(conv, packed_weights_follow_the_weights_within_a_graph)
{
    for (int wino = -1; wino <= 1; wino += 2) {
        conv_set_direct(1);
        conv_set_winograd(wino);
        struct invar_tensor *x = gc_tensor(4, (int64_t[]){3, 8, 9, 10}, 1);
        struct invar_tensor *w = gc_tensor(4, (int64_t[]){6, 8, 3, 3}, 1);
        struct invar_tensor *dy = gc_tensor(4, (int64_t[]){3, 6, 9, 10}, 0);
        const size_t ny = 3 * 6 * 9 * 10, nx = (size_t)x->numel;
        x->grad = calloc(nx, sizeof(float)), w->grad = calloc((size_t)w->numel, sizeof(float));
        struct invar_graph *g = invar_graph_create(1 << 20);
        struct invar_tensor *y[3];
        y[0] = invar_conv2d(g, x, w, NULL, 1, 1);
        w->data[7] += 0.25f;
        y[1] = invar_conv2d(g, x, w, NULL, 1, 1);
        y[2] = invar_conv2d(g, x, w, NULL, 1, 1);
        conv_backward_of(g, y + 1, 2, dy);
        float *dx = malloc(nx * sizeof(float));
        memcpy(dx, x->grad, nx * sizeof(float));

        struct invar_graph *fresh = invar_graph_create(1 << 20);
        memset(x->grad, 0, nx * sizeof(float));
        struct invar_tensor *yr = invar_conv2d(fresh, x, w, NULL, 1, 1);
        conv_backward_of(fresh, &yr, 1, dy);
        cr_assert(memcmp(y[0]->data, yr->data, ny * sizeof(float)),
                  "winograd %d: the change of w changed nothing", wino);
        for (int k = 1; k < 3; k++)
            cr_assert(!memcmp(y[k]->data, yr->data, ny * sizeof(float)),
                      "winograd %d: conv %d after w changed: other bits than a fresh graph's", wino,
                      k);
        for (size_t i = 0; i < nx; i++)
            cr_assert(dx[i] == 2 * x->grad[i], "winograd %d: dx[%zu] %.9g, a fresh graph's %.9g",
                      wino, i, dx[i], x->grad[i]);
        invar_graph_destroy(g), invar_graph_destroy(fresh);
        free(dx), free(x->grad), free(w->grad);
        gc_free(x), gc_free(w), gc_free(dy);
    }
    conv_set_winograd(0);
    conv_set_direct(0);
}

/* One forward+backward at a size where the direct path runs: y, dx, dw, db into out. */
static void conv_direct_step(float *out, const struct invar_tensor *x0,
                             const struct invar_tensor *w0, const struct invar_tensor *b0,
                             const struct invar_tensor *dy)
{
    struct invar_tensor *x = gc_tensor(4, x0->shape, 1), *w = gc_tensor(4, w0->shape, 1);
    struct invar_tensor *b = gc_tensor(1, b0->shape, 1);
    memcpy(x->data, x0->data, (size_t)x->numel * sizeof(float));
    memcpy(w->data, w0->data, (size_t)w->numel * sizeof(float));
    memcpy(b->data, b0->data, (size_t)b->numel * sizeof(float));
    struct invar_graph *g = invar_graph_create(1 << 20);
    struct invar_tensor *y = invar_conv2d(g, x, w, b, 1, 1);
    struct invar_tensor *loss = invar_graph_tensor(g, 1, (int64_t[]){1});
    loss->data[0] = 0;
    struct gc_dot_ctx dc = {dy->data};
    invar_custom_op(g, "dot", loss, &y, 1, gc_dot_backward, &dc);
    invar_graph_backward(g, loss);
    const struct invar_tensor *parts[4] = {y, x, w, b};
    for (int i = 0; i < 4; i++) {
        const float *src = i == 0 ? parts[i]->data : parts[i]->grad;
        memcpy(out, src, (size_t)parts[i]->numel * sizeof(float));
        out += parts[i]->numel;
    }
    invar_graph_destroy(g);
    gc_free(x), gc_free(w), gc_free(b);
}

/* A layer (n, c, h, wd) -> o stepped on one thread and split across two with set(mode), then
 * with set(ref_mode): asserts the same bits from one thread and two (the slices are fixed) and
 * agreement with the reference path to float rounding. Returns how many elements differ from
 * the reference at all. */
static int64_t conv_check_paths(int64_t n, int64_t c, int64_t h, int64_t wd, int64_t o,
                                void (*set)(int), int mode, int ref_mode)
{
    struct invar_tensor *x = gc_tensor(4, (int64_t[]){n, c, h, wd}, 0);
    struct invar_tensor *w = gc_tensor(4, (int64_t[]){o, c, 3, 3}, 0);
    struct invar_tensor *b = gc_tensor(1, (int64_t[]){o}, 0);
    struct invar_tensor *dy = gc_tensor(4, (int64_t[]){n, o, h, wd}, 0);
    const int64_t total = dy->numel + x->numel + w->numel + b->numel; // y, dx, dw, db
    float *one = malloc((size_t)total * sizeof(float)), *two = malloc((size_t)total * sizeof(float));
    float *ref = malloc((size_t)total * sizeof(float));
    set(mode);
    conv_set_limits(CONV_TEST_CHUNK, CONV_TEST_CHUNK, INT64_MAX);
    conv_direct_step(one, x, w, b, dy);
    conv_set_limits(CONV_TEST_CHUNK, CONV_TEST_CHUNK, 1);
    conv_direct_step(two, x, w, b, dy);
    set(ref_mode);
    conv_direct_step(ref, x, w, b, dy);
    conv_set_limits(0, 0, 0);
    set(0);
    cr_assert(memcmp(one, two, (size_t)total * sizeof(float)) == 0,
              "%lld -> %lld channels at %lld x %lld: one thread and two differ", (long long)c,
              (long long)o, (long long)h, (long long)wd);
    int64_t differ = 0;
    for (int64_t i = 0; i < total; i++) {
        cr_assert(fabsf(one[i] - ref[i]) < 1e-4f * (1 + fabsf(ref[i])), "element %lld: %g vs %g",
                  (long long)i, one[i], ref[i]);
        differ += one[i] != ref[i];
    }
    free(one), free(two), free(ref);
    gc_free(x), gc_free(w), gc_free(b), gc_free(dy);
    return differ;
}

/* The direct path (forced; 6 input channels keep it off Winograd) against im2col. */
Test(conv, direct_path_is_reproducible_and_matches_im2col)
{
    conv_check_paths(5, 6, 14, 17, 7, conv_set_direct, 1, -1);
    /* 11 outputs: dy goes onto dw's grid as one block of 8 channels and 3 single ones */
    conv_check_paths(3, 6, 14, 17, 11, conv_set_direct, 1, -1);
}

/* Winograd at the reference encoder's channel counts (taken by shape, not forced) against the
 * direct kernels. A 9 x 10 plane is 25 blocks, so three images share a GEMM: the fixed slices
 * of 2 and 3 images make groups of 2 and of 3. */
Test(conv, winograd_is_reproducible_and_matches_direct)
{
    /* y, dx and dw went through Winograd (else this compared the direct kernels with themselves) */
    cr_assert(conv_check_paths(5, 16, 9, 10, 12, conv_set_winograd, 0, -1) > 0,
              "Winograd was not taken at 16 -> 12 channels");
}

/* FNV-1a, continued from h, over the bits of a layer's y, dx, dw and db, stepped through
 * conv_direct_step with inputs drawn from a fixed stream (the RNG is bitwise the same
 * everywhere). */
static uint64_t conv_step_hash(uint64_t h, int64_t n, int64_t c, int64_t ht, int64_t wd, int64_t o,
                               uint64_t seed)
{
    const int64_t xs[4] = {n, c, ht, wd}, ws[4] = {o, c, 3, 3}, bs[1] = {o};
    const int64_t ys[4] = {n, o, ht, wd};
    struct invar_tensor *t[4];
    struct invar_rng r;
    invar_rng_init(&r, seed, 0);
    const int64_t *shapes[4] = {xs, ws, bs, ys};
    int64_t total = 0;
    for (int i = 0; i < 4; i++) {
        t[i] = gc_tensor(i == 2 ? 1 : 4, shapes[i], 0);
        for (int64_t j = 0; j < t[i]->numel; j++)
            t[i]->data[j] = 2.0f * invar_rng_uniform(&r) - 1.0f;
        total += t[i]->numel;
    }
    float *out = malloc((size_t)total * sizeof(float));
    conv_direct_step(out, t[0], t[1], t[2], t[3]);
    const unsigned char *b = (const unsigned char *)out;
    for (size_t i = 0; i < (size_t)total * sizeof(float); i++)
        h = (h ^ b[i]) * 0x100000001b3u;
    free(out);
    for (int i = 0; i < 4; i++)
        gc_free(t[i]);
    return h;
}

/* The direct and Winograd kernels have an AVX2 form (tiles of 24 positions) and an AVX-512 one
 * (tiles of 48, registers of 16), chosen by the build's -march; each output sums the same
 * products in the same order in both, so a step's bits are the same on either machine. The
 * hashes were taken from an AVX2 build (-Dmarch=haswell); a change that reorders a sum changes
 * them, and should say so here. The direct planes' flat lengths (rows padded by 2) leave last
 * tiles of every width: 14 x 17 (266 positions), 5 x 10 (60), 3 x 10 (36), 7 x 8 (70), 4 x 9
 * (44), 9 x 9 (99), at 1 to 7 input channels (dw tiles of 6 and of 3 taps); Winograd runs at
 * 16 -> 12 channels on 9 x 10 (rows of 5 blocks) and at 8 -> 5 on 6 x 35 (rows of 18: vectors
 * of 8 or 16 blocks and a last one spilling into the next row). */
Test(conv, kernels_give_the_same_bits_at_every_vector_width)
{
#if defined(__AVX2__) && defined(__FMA__) && (defined(__x86_64__) || defined(__i386__))
    static const int64_t planes[6][4] = {{3, 6, 14, 17}, {2, 7, 5, 10}, {2, 1, 3, 10},
                                         {2, 5, 7, 8},   {3, 3, 4, 9},  {2, 4, 9, 9}};
    uint64_t direct = 0xcbf29ce484222325u;
    conv_set_direct(1);
    for (int i = 0; i < 6; i++)
        direct = conv_step_hash(direct, planes[i][0], planes[i][1], planes[i][2], planes[i][3], 7,
                                (uint64_t)(11 + i));
    conv_set_direct(0);
    conv_set_winograd(1);
    uint64_t wino = conv_step_hash(0xcbf29ce484222325u, 5, 16, 9, 10, 12, 13);
    wino = conv_step_hash(wino, 2, 8, 6, 35, 5, 14);
    conv_set_winograd(0);
    cr_log_info("hashes %#018llx %#018llx", (unsigned long long)direct, (unsigned long long)wino);
    cr_expect(direct == 0xcc797ecc8cbe04c7u, "direct: %#018llx", (unsigned long long)direct);
    cr_expect(wino == 0x7b7c6cbf466dd7bbu, "winograd: %#018llx", (unsigned long long)wino);
#else
    cr_skip_test("the direct and Winograd kernels need AVX2 and FMA");
#endif
}

/* 3x3 "same" conv of ones by ones counts the real cells under each window: 4 at corners, 6 on
 * edges, 9 inside (times C_in), which pins down the zero padding. */
Test(conv, padding_counts_cells)
{
    float xs[2 * 4 * 5], ws[2 * 2 * 9];
    for (int i = 0; i < 40; i++)
        xs[i] = 1;
    for (int i = 0; i < 18; i++)
        ws[i] = 1;
    struct invar_tensor x, w;
    invar_tensor_wrap(&x, xs, 4, (int64_t[]){1, 2, 4, 5});
    invar_tensor_wrap(&w, ws, 4, (int64_t[]){1, 2, 3, 3});
    struct invar_graph *g = invar_graph_create(1 << 16);
    struct invar_tensor *y = invar_conv2d(g, &x, &w, NULL, 1, 1);
    const float want[20] = {8,  12, 12, 12, 8,  12, 18, 18, 18, 12,
                            12, 18, 18, 18, 12, 8,  12, 12, 12, 8};
    for (int i = 0; i < 20; i++)
        cr_assert_float_eq(y->data[i], want[i], 1e-6, "cell %d: %g", i, y->data[i]);
    invar_graph_destroy(g);
}

/* ---- pooling ------------------------------------------------------------------------------- */

struct pool_args {
    int kind; /* 0 max, 1 avg, 2 global */
    int k, stride, pad;
};

static struct invar_tensor *pool_f(struct invar_graph *g, struct invar_tensor **in, void *ctx)
{
    const struct pool_args *a = ctx;
    if (a->kind == 0)
        return invar_maxpool2d(g, in[0], a->k, a->stride, a->pad);
    if (a->kind == 1)
        return invar_avgpool2d(g, in[0], a->k, a->stride, a->pad);
    return invar_global_avgpool(g, in[0]);
}

/* Distinct values 0.05 apart (a scrambled ramp, shifted below zero), so +-eps never changes a
 * window's argmax. 7919 is prime and so coprime with every size used here. */
static struct invar_tensor *tie_free(int64_t n, int64_t c, int64_t h, int64_t w)
{
    struct invar_tensor *x = gc_tensor(4, (int64_t[]){n, c, h, w}, 1);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = 0.05f * (float)((i * 7919) % x->numel) - 0.03f * (float)x->numel;
    return x;
}

Test(pool, maxpool_gradcheck)
{
    const struct pool_args cases[] = {{0, 2, 2, 0}, {0, 3, 2, 1}, {0, 3, 1, 1}, {0, 2, 1, 1}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        struct invar_tensor *x = tie_free(2, 3, 7, 6);
        gc_check(pool_f, &x, 1, (void *)&cases[t], 1e-3, 1e-2);
        gc_free(x);
    }
}

Test(pool, avgpool_gradcheck)
{
    const struct pool_args cases[] = {{1, 2, 2, 0}, {1, 3, 2, 1}, {1, 3, 1, 1}, {2, 0, 0, 0}};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        struct invar_tensor *x = gc_tensor(4, (int64_t[]){2, 3, 7, 6}, 1);
        gc_check(pool_f, &x, 1, (void *)&cases[t], 1e-2, 1e-2);
        gc_free(x);
    }
}

/* All-negative input with padding: a zero pad cell would win if padding took part. */
Test(pool, maxpool_padding_never_wins)
{
    float xs[4] = {-4, -3, -2, -1};
    struct invar_tensor x;
    invar_tensor_wrap(&x, xs, 4, (int64_t[]){1, 1, 2, 2});
    struct invar_graph *g = invar_graph_create(1 << 16);
    struct invar_tensor *y = invar_maxpool2d(g, &x, 2, 1, 1); // (1, 1, 3, 3)
    const float want[9] = {-4, -3, -3, -2, -1, -1, -2, -1, -1};
    for (int i = 0; i < 9; i++)
        cr_assert_float_eq(y->data[i], want[i], 0, "cell %d: %g", i, y->data[i]);
    invar_graph_destroy(g);
}

/* Ties: the first maximum in scan order takes the whole gradient. */
static void count_backward(struct invar_tensor *out, struct invar_tensor **in, int n_in, void *ctx)
{
    (void)out, (void)n_in, (void)ctx;
    for (int64_t i = 0; i < in[0]->numel; i++)
        in[0]->grad[i] += 1;
}

Test(pool, maxpool_tie_goes_to_first)
{
    float xs[4] = {1, 5, 5, 5};
    struct invar_tensor x;
    invar_tensor_wrap(&x, xs, 4, (int64_t[]){1, 1, 2, 2});
    x.requires_grad = 1;
    struct invar_graph *g = invar_graph_create(1 << 16);
    struct invar_tensor *y = invar_maxpool2d(g, &x, 2, 2, 0); // (1, 1, 1, 1)
    cr_assert_float_eq(y->data[0], 5, 0);
    struct invar_tensor *loss = invar_graph_tensor(g, 1, (int64_t[]){1});
    loss->data[0] = y->data[0];
    invar_custom_op(g, "count", loss, &y, 1, count_backward, NULL);
    invar_graph_backward(g, loss);
    const float want[4] = {0, 1, 0, 0};
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(x.grad[i], want[i], 0, "cell %d: %g", i, x.grad[i]);
    invar_graph_destroy(g);
}

/* count_include_pad: the corner windows hold one real cell and three zeros. */
Test(pool, avgpool_counts_padding)
{
    float xs[4] = {1, 2, 3, 4};
    struct invar_tensor x;
    invar_tensor_wrap(&x, xs, 4, (int64_t[]){1, 1, 2, 2});
    struct invar_graph *g = invar_graph_create(1 << 16);
    struct invar_tensor *y = invar_avgpool2d(g, &x, 2, 1, 1); // (1, 1, 3, 3)
    const float want[9] = {0.25f, 0.75f, 0.5f, 1.0f, 2.5f, 1.5f, 0.75f, 1.75f, 1.0f};
    for (int i = 0; i < 9; i++)
        cr_assert_float_eq(y->data[i], want[i], 1e-6, "cell %d: %g", i, y->data[i]);
    invar_graph_destroy(g);
}

Test(pool, global_avgpool_by_hand)
{
    float xs[8] = {1, 2, 3, 4, 5, 6, 7, 9};
    struct invar_tensor x;
    invar_tensor_wrap(&x, xs, 4, (int64_t[]){1, 2, 2, 2});
    struct invar_graph *g = invar_graph_create(1 << 16);
    struct invar_tensor *y = invar_global_avgpool(g, &x);
    cr_assert(y->ndim == 2 && y->shape[0] == 1 && y->shape[1] == 2);
    cr_assert_float_eq(y->data[0], 2.5f, 1e-6);
    cr_assert_float_eq(y->data[1], 6.75f, 1e-6);
    invar_graph_destroy(g);
}

/* ---- batch-norm ---------------------------------------------------------------------------- */

struct bn_args {
    int training;
    struct invar_tensor *rm, *rv; /* (C) */
};

static struct invar_tensor *bn_f(struct invar_graph *g, struct invar_tensor **in, void *ctx)
{
    const struct bn_args *a = ctx;
    invar_graph_set_training(g, a->training);
    /* training mode must not depend on the running statistics: none are passed */
    return invar_batchnorm(g, in[0], in[1], in[2], a->training ? NULL : a->rm,
                           a->training ? NULL : a->rv, 0.1f, 1e-5f);
}

static void bn_gradcheck(int ndim, const int64_t *shape, int training)
{
    const int64_t c = shape[1];
    struct invar_tensor *in[3] = {
        gc_tensor(ndim, shape, 1),
        gc_tensor(1, (int64_t[]){c}, 1),
        gc_tensor(1, (int64_t[]){c}, 1),
    };
    struct bn_args a = {training, gc_tensor(1, (int64_t[]){c}, 0), gc_tensor(1, (int64_t[]){c}, 0)};
    for (int64_t i = 0; i < c; i++)
        a.rv->data[i] = 0.5f + a.rv->data[i] * a.rv->data[i]; /* a positive variance */
    gc_check(bn_f, in, 3, &a, 1e-3, 2e-2);
    for (int i = 0; i < 3; i++)
        gc_free(in[i]);
    gc_free(a.rm), gc_free(a.rv);
}

Test(batchnorm, gradcheck_train_2d)
{
    bn_gradcheck(2, (int64_t[]){6, 3}, 1);
}
Test(batchnorm, gradcheck_train_4d)
{
    bn_gradcheck(4, (int64_t[]){3, 2, 3, 4}, 1);
}
Test(batchnorm, gradcheck_eval_2d)
{
    bn_gradcheck(2, (int64_t[]){5, 3}, 0);
}
Test(batchnorm, gradcheck_eval_4d)
{
    bn_gradcheck(4, (int64_t[]){2, 3, 4, 3}, 0);
}

/* Two training steps on (4, 2) batches, momentum 0.1, from mean 0 / var 1:
 *   step 1: ch0 {1,2,3,4} mean 2.5 unbiased var 5/3; ch1 {0,0,1,1} mean 0.5 var 1/3
 *           rm = (0.25, 0.05), rv = (0.9 + 1/6, 0.9 + 1/30) = (1.0666667, 0.9333333)
 *   step 2: ch0 {2,4,6,8} mean 5 var 20/3; ch1 {-1,1,-1,1} mean 0 var 4/3
 *           rm = (0.9*0.25 + 0.5, 0.9*0.05) = (0.725, 0.045)
 *           rv = (0.96 + 2/3, 0.84 + 2/15) = (1.6266667, 0.9733333) */
Test(batchnorm, running_stats_two_steps)
{
    float x1[8] = {1, 0, 2, 0, 3, 1, 4, 1}, x2[8] = {2, -1, 4, 1, 6, -1, 8, 1};
    float gs[2] = {1, 1}, bs[2] = {0, 0}, rms[2] = {0, 0}, rvs[2] = {1, 1};
    struct invar_tensor x, gamma, beta, rm, rv;
    invar_tensor_wrap(&gamma, gs, 1, (int64_t[]){2});
    invar_tensor_wrap(&beta, bs, 1, (int64_t[]){2});
    invar_tensor_wrap(&rm, rms, 1, (int64_t[]){2});
    invar_tensor_wrap(&rv, rvs, 1, (int64_t[]){2});
    struct invar_graph *g = invar_graph_create(1 << 16);
    float *steps[2] = {x1, x2};
    for (int s = 0; s < 2; s++) {
        invar_graph_reset(g);
        invar_tensor_wrap(&x, steps[s], 2, (int64_t[]){4, 2});
        struct invar_tensor *y = invar_batchnorm(g, &x, &gamma, &beta, &rm, &rv, 0.1f, 1e-5f);
        /* normalised with the biased variance: ch0 of step 1 is (x - 2.5) / sqrt(1.25) */
        if (s == 0)
            cr_assert_float_eq(y->data[0], -1.5f / sqrtf(1.25f + 1e-5f), 1e-6);
    }
    cr_assert_float_eq(rms[0], 0.725f, 1e-6, "%g", rms[0]);
    cr_assert_float_eq(rms[1], 0.045f, 1e-6, "%g", rms[1]);
    cr_assert_float_eq(rvs[0], 1.6266667f, 1e-6, "%g", rvs[0]);
    cr_assert_float_eq(rvs[1], 0.9733333f, 1e-6, "%g", rvs[1]);
    invar_graph_destroy(g);
}

/* The graph's momentum override (recalibration): the same two batches, on a 4-d layout this
 * time ((2, 2, 1, 2): planes of 2), moved by 1/(k+1) at batch k whatever momentum the op asks
 * for, leave the mean of the batches' statistics, the starting values forgotten:
 *   rm = ((2.5 + 5) / 2, (0.5 + 0) / 2) = (3.75, 0.25)
 *   rv = ((5/3 + 20/3) / 2, (1/3 + 4/3) / 2) = (4.1666667, 0.8333333)
 * and with the override back at 0 the op's own momentum applies again. */
Test(batchnorm, momentum_override_averages_the_batches)
{
    /* (n, c, w): image 0 holds values 0 and 1 of each channel, image 1 values 2 and 3 */
    float x1[8] = {1, 2, 0, 0, 3, 4, 1, 1}, x2[8] = {2, 4, -1, 1, 6, 8, -1, 1};
    float gs[2] = {1, 1}, bs[2] = {0, 0}, rms[2] = {7, -7}, rvs[2] = {9, 9};
    struct invar_tensor x, gamma, beta, rm, rv;
    invar_tensor_wrap(&gamma, gs, 1, (int64_t[]){2});
    invar_tensor_wrap(&beta, bs, 1, (int64_t[]){2});
    invar_tensor_wrap(&rm, rms, 1, (int64_t[]){2});
    invar_tensor_wrap(&rv, rvs, 1, (int64_t[]){2});
    struct invar_graph *g = invar_graph_create(1 << 16);
    cr_assert_eq(invar_graph_set_bn_momentum(g, 0), 0.0f, "off by default");
    float *steps[2] = {x1, x2};
    for (int s = 0; s < 2; s++) {
        invar_graph_reset(g);
        invar_graph_set_bn_momentum(g, 1.0f / (float)(s + 1));
        invar_tensor_wrap(&x, steps[s], 4, (int64_t[]){2, 2, 1, 2});
        invar_batchnorm_relu(g, &x, &gamma, &beta, &rm, &rv, 0.1f, 1e-5f);
    }
    cr_assert_float_eq(rms[0], 3.75f, 1e-6, "%g", rms[0]);
    cr_assert_float_eq(rms[1], 0.25f, 1e-6, "%g", rms[1]);
    cr_assert_float_eq(rvs[0], 4.1666667f, 1e-6, "%g", rvs[0]);
    cr_assert_float_eq(rvs[1], 0.8333333f, 1e-6, "%g", rvs[1]);
    cr_assert_float_eq(invar_graph_set_bn_momentum(g, 0), 0.5f, 0, "returns the setting");
    invar_graph_reset(g);
    invar_tensor_wrap(&x, x1, 4, (int64_t[]){2, 2, 1, 2});
    invar_batchnorm(g, &x, &gamma, &beta, &rm, &rv, 0.1f, 1e-5f);
    cr_assert_float_eq(rms[0], 0.9f * 3.75f + 0.25f, 1e-6, "the op's 0.1 again: %g", rms[0]);
    invar_graph_destroy(g);
}

/* Eval mode: y = gamma (x - running_mean) / sqrt(running_var + eps) + beta, and the running
 * statistics stay untouched. */
Test(batchnorm, eval_uses_running_stats)
{
    struct invar_tensor *x = gc_tensor(4, (int64_t[]){2, 3, 2, 3}, 0);
    float gs[3] = {1.5f, -0.5f, 2}, bs[3] = {0.1f, 0.2f, -0.3f};
    float rms[3] = {0.2f, -0.1f, 0.05f}, rvs[3] = {0.5f, 2.0f, 0.25f};
    struct invar_tensor gamma, beta, rm, rv;
    invar_tensor_wrap(&gamma, gs, 1, (int64_t[]){3});
    invar_tensor_wrap(&beta, bs, 1, (int64_t[]){3});
    invar_tensor_wrap(&rm, rms, 1, (int64_t[]){3});
    invar_tensor_wrap(&rv, rvs, 1, (int64_t[]){3});
    struct invar_graph *g = invar_graph_create(1 << 16);
    invar_graph_set_training(g, 0);
    const float eps = 1e-3f;
    struct invar_tensor *y = invar_batchnorm(g, x, &gamma, &beta, &rm, &rv, 0.1f, eps);
    for (int64_t i = 0; i < x->numel; i++) {
        const int64_t c = (i / 6) % 3;
        const double want = gs[c] * (x->data[i] - rms[c]) / sqrt(rvs[c] + eps) + bs[c];
        cr_assert(fabs(y->data[i] - want) < 1e-5, "element %lld: %g vs %g", (long long)i,
                  y->data[i], want);
    }
    cr_assert(rms[0] == 0.2f && rvs[2] == 0.25f, "eval mode moved the running statistics");
    invar_graph_destroy(g);
    gc_free(x);
}
