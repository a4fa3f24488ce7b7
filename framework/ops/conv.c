/* conv2d, forward and backward side by side, by one of two paths: stride-1 layers on planes at
 * least CONV_DIRECT_MIN_OW wide take the direct path (further down: register-tiled kernels over
 * flat padded planes, no im2col, no OpenBLAS; for 3x3 kernels with padding 1 and at least
 * WINO_MIN_C input channels, forward, dx and dw through Winograd F(2x2, 3x3) on the same
 * kernels);
 * every other layer takes im2col + one sgemm per chunk of images, described here.
 *
 * Layout. A chunk of nb images is unrolled into col (K, P) with K = C*KH*KW rows ordered like
 * the weight's (c, kh, kw) and P = nb*OH*OW columns ordered (n, oh, ow), so each GEMM has the
 * whole chunk's pixels as its big dimension:
 *     forward   yc (O, P)   = w (O, K) @ col (K, P)
 *     backward  dw (O, K)  += dyc (O, P) @ col (K, P)^T
 *               dx, stride 1: the full correlation of dy with the flipped kernel, again an
 *                   im2col + GEMM: dxc (C, nb*H*W) = wt (C, O*KH*KW) @ dycol (O*KH*KW, nb*H*W)
 *               dx, stride > 1: dcol (K, P) = w (O, K)^T @ dyc (O, P), then col2im
 * The stride-1 form gives its GEMM a reduction of O*KH*KW instead of O and gathers instead of
 * scattering. yc and dyc are (O, P) while images are NCHW, i.e. (nb, O, OH*OW): moving between
 * the two is a copy of OH*OW contiguous floats per (n, o), far cheaper than a transpose.
 *
 * Chunks are a fixed function of the shape (never of the thread count), and dw accumulates over
 * them in order, so results are bitwise reproducible. The chunk bounds col's size so it stays
 * near the cache instead of streaming hundreds of MB through memory. When the whole batch's col
 * is small it is kept in the arena from forward to backward instead of being rebuilt.
 *
 * Threads. The GEMMs run on OpenBLAS's threads. The memory-bound loops around them (im2col,
 * col2im, the (O, P) <-> NCHW copies, the bias gradient) are split into CONV_THREADS fixed
 * slices, each writing outputs no other slice touches, so results never depend on scheduling.
 * A slice runs on a thread started for it, so no pool sits spinning while OpenBLAS wants the
 * cores (an OpenMP team waiting actively after each loop made this benchmark several times
 * slower on two shared cores).
 */
#include <cblas.h>
#include <pthread.h>
#include <string.h>

#include "graph_internal.h"
#include "parallel.h"

/* Target size of one chunk's col buffer (at least one image per chunk), and the largest
 * whole-batch col kept for backward. 16 MB beat 6 and 48 MB on the ops benchmark: fewer GEMM
 * calls and thread hand-offs, while col still fits the 32 MB L3. Variables only so tests can
 * force every path. */
#define CONV_CHUNK_BYTES ((size_t)16 << 20)
#define CONV_KEEP_BYTES ((size_t)32 << 20)
static size_t conv_chunk_bytes = CONV_CHUNK_BYTES;
static size_t conv_keep_bytes = CONV_KEEP_BYTES;

/* Loops over fewer elements stay on the calling thread: starting one costs tens of us. */
#define CONV_PAR_MIN ((int64_t)1 << 17)
static int64_t conv_par_min = CONV_PAR_MIN;

/* Test hook: sets the limits (par_min: smallest loop split across threads); (0, 0, 0) restores
 * the defaults. */
GRAPH_HIDDEN void conv_set_limits(size_t chunk_bytes, size_t keep_bytes, int64_t par_min);
void conv_set_limits(size_t chunk_bytes, size_t keep_bytes, int64_t par_min)
{
    const int dflt = chunk_bytes == 0;
    conv_chunk_bytes = dflt ? CONV_CHUNK_BYTES : chunk_bytes;
    conv_keep_bytes = dflt ? CONV_KEEP_BYTES : keep_bytes;
    conv_par_min = dflt ? CONV_PAR_MIN : par_min;
    ops_set_par_min(dflt ? 0 : par_min); /* the direct path's slices */
}

/* How images (C, H, W) unroll under a KH x KW window into (OH, OW) positions. */
struct im2col_geom {
    int64_t c, h, w, kh, kw, oh, ow;
    int stride, ph, pw;
};

#define CONV_THREADS 2
/* Everything one of the sliced loops needs; each loop reads the fields it documents. */
struct conv_job {
    float *dst;
    const float *src;
    const struct im2col_geom *q;
    const float *bias; /* (O) or NULL */
    int64_t nb, o, sp; /* images, channels, pixels per channel */
};
typedef void (*conv_slice_fn)(const struct conv_job *job, int64_t lo, int64_t hi);

/* One loop of a parallel section: fn over [0, n). */
struct conv_task {
    conv_slice_fn fn;
    struct conv_job job;
    int64_t n;
};

/* Thread t's share of a section: slice t of every task. */
struct conv_part {
    const struct conv_task *tasks;
    int n_tasks, t;
};

static void *conv_part_run(void *arg)
{
    const struct conv_part *pt = arg;
    for (int i = 0; i < pt->n_tasks; i++) {
        const struct conv_task *k = &pt->tasks[i];
        k->fn(&k->job, k->n * pt->t / CONV_THREADS, k->n * (pt->t + 1) / CONV_THREADS);
    }
    return NULL;
}

/* Runs the tasks, split into CONV_THREADS equal slices each when work (elements touched) is
 * large: one thread hand-off for the whole section. The slices are the same whether or not
 * their threads start, so a failed start only costs speed. */
static void conv_run(const struct conv_task *tasks, int n_tasks, int64_t work)
{
    if (work < conv_par_min) {
        for (int i = 0; i < n_tasks; i++)
            tasks[i].fn(&tasks[i].job, 0, tasks[i].n);
        return;
    }
    struct conv_part pt[CONV_THREADS];
    pthread_t th[CONV_THREADS];
    int started[CONV_THREADS] = {0};
    for (int t = 0; t < CONV_THREADS; t++)
        pt[t] = (struct conv_part){tasks, n_tasks, t};
    for (int t = 1; t < CONV_THREADS; t++)
        started[t] = pthread_create(&th[t], NULL, conv_part_run, &pt[t]) == 0;
    conv_part_run(&pt[0]);
    for (int t = 1; t < CONV_THREADS; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            conv_part_run(&pt[t]);
    }
}

static void conv_parallel(conv_slice_fn fn, const struct conv_job *job, int64_t n, int64_t work)
{
    const struct conv_task task = {fn, *job, n};
    conv_run(&task, 1, work);
}

struct conv_shape {
    int64_t n, o;           /* batch, output channels */
    struct im2col_geom fwd; /* x (C, H, W) -> y (O, OH, OW) */
    struct im2col_geom bwd; /* dy (O, OH, OW) -> dx (C, H, W), stride 1 only */
    int dx_gemm;            /* dx by the flipped-kernel GEMM (else col2im) */
    int64_t k, kt;          /* C*KH*KW and O*KH*KW */
    int64_t chunk;          /* images per chunk */
};

struct conv_ctx {
    struct conv_shape s;
    float *col; /* (K, N*OH*OW) chunk after chunk, or NULL: rebuilt in backward */
    int direct; /* the forward took the direct path */
};

static void conv_shape_init(struct conv_shape *s, const struct invar_tensor *x,
                            const struct invar_tensor *w, int stride, int pad)
{
    const int64_t h = x->shape[2], wd = x->shape[3], kh = w->shape[2], kw = w->shape[3];
    s->n = x->shape[0], s->o = w->shape[0];
    const int64_t oh = (h + 2 * pad - kh) / stride + 1, ow = (wd + 2 * pad - kw) / stride + 1;
    s->fwd = (struct im2col_geom){.c = x->shape[1],
                                  .h = h,
                                  .w = wd,
                                  .kh = kh,
                                  .kw = kw,
                                  .oh = oh,
                                  .ow = ow,
                                  .stride = stride,
                                  .ph = pad,
                                  .pw = pad};
    /* dx is dy, padded by k-1-pad, correlated with the flipped kernel: needs pad <= k-1 */
    s->dx_gemm = stride == 1 && pad <= kh - 1 && pad <= kw - 1;
    s->bwd = (struct im2col_geom){.c = s->o,
                                  .h = oh,
                                  .w = ow,
                                  .kh = kh,
                                  .kw = kw,
                                  .oh = h,
                                  .ow = wd,
                                  .stride = 1,
                                  .ph = (int)(kh - 1 - pad),
                                  .pw = (int)(kw - 1 - pad)};
    s->k = s->fwd.c * kh * kw, s->kt = s->o * kh * kw;
    int64_t per_image = s->k * oh * ow;
    /* dx's col counts only when dx will be computed (not for a first layer) */
    if (s->dx_gemm && x->requires_grad && s->kt * h * wd > per_image)
        per_image = s->kt * h * wd;
    s->chunk = (int64_t)(conv_chunk_bytes / ((size_t)per_image * sizeof(float)));
    if (s->chunk < 1)
        s->chunk = 1;
    if (s->chunk > s->n)
        s->chunk = s->n;
}

/* The output columns [lo, hi) whose input column ox*stride - pw + kx lies inside the image. */
static void im2col_span(const struct im2col_geom *q, int64_t kx, int64_t *lo, int64_t *hi)
{
    int64_t a = 0, b = q->ow;
    while (a < q->ow && a * q->stride - q->pw + kx < 0)
        a++;
    while (b > a && (b - 1) * q->stride - q->pw + kx >= q->w)
        b--;
    *lo = a, *hi = b;
}

/* col (C*KH*KW, nb*OH*OW) from images src (nb, C, H, W), rows [lo, hi); padding reads as zero. */
static void im2col_rows(const struct conv_job *job, int64_t lo, int64_t hi)
{
    const struct im2col_geom *q = job->q;
    const int64_t nb = job->nb, ohw = q->oh * q->ow, p = nb * ohw, kk = q->kh * q->kw;
    for (int64_t k = lo; k < hi; k++) {
        const int64_t c = k / kk, ky = (k / q->kw) % q->kh, kx = k % q->kw;
        int64_t a, b;
        im2col_span(q, kx, &a, &b);
        for (int64_t i = 0; i < nb; i++) {
            const float *plane = job->src + (i * q->c + c) * q->h * q->w; // (H, W)
            float *dst = job->dst + k * p + i * ohw;                      // (OH, OW)
            for (int64_t oy = 0; oy < q->oh; oy++, dst += q->ow) {
                const int64_t iy = oy * q->stride - q->ph + ky;
                if (iy < 0 || iy >= q->h) {
                    memset(dst, 0, (size_t)q->ow * sizeof *dst);
                    continue;
                }
                const float *row = plane + iy * q->w - q->pw + kx;
                for (int64_t ox = 0; ox < a; ox++)
                    dst[ox] = 0;
                if (q->stride == 1)
                    memcpy(dst + a, row + a, (size_t)(b - a) * sizeof *dst);
                else
                    for (int64_t ox = a; ox < b; ox++)
                        dst[ox] = row[ox * q->stride];
                for (int64_t ox = b; ox < q->ow; ox++)
                    dst[ox] = 0;
            }
        }
    }
}

static void conv_im2col(float *col, const float *x, int64_t nb, const struct im2col_geom *q)
{
    const struct conv_job job = {.dst = col, .src = x, .q = q, .nb = nb};
    const int64_t rows = q->c * q->kh * q->kw;
    conv_parallel(im2col_rows, &job, rows, rows * nb * q->oh * q->ow);
}

/* dx (nb, C, H, W) += col2im(dcol (C*KH*KW, nb*OH*OW)) for planes (n, c) in [lo, hi); padding
 * cells are dropped. A plane only receives the rows of its own c, so slices never collide. */
static void col2im_planes(const struct conv_job *job, int64_t lo, int64_t hi)
{
    const struct im2col_geom *q = job->q;
    const int64_t ohw = q->oh * q->ow, p = job->nb * ohw, kk = q->kh * q->kw;
    for (int64_t pl = lo; pl < hi; pl++) {
        const int64_t i = pl / q->c, c = pl % q->c;
        float *plane = job->dst + pl * q->h * q->w; // (H, W)
        for (int64_t r = 0; r < kk; r++) {
            const int64_t ky = r / q->kw, kx = r % q->kw;
            int64_t a, b;
            im2col_span(q, kx, &a, &b);
            const float *src = job->src + (c * kk + r) * p + i * ohw; // (OH, OW)
            for (int64_t oy = 0; oy < q->oh; oy++, src += q->ow) {
                const int64_t iy = oy * q->stride - q->ph + ky;
                if (iy < 0 || iy >= q->h)
                    continue;
                float *row = plane + iy * q->w - q->pw + kx;
                for (int64_t ox = a; ox < b; ox++)
                    row[ox * q->stride] += src[ox];
            }
        }
    }
}

static void conv_col2im(float *dx, const float *dcol, int64_t nb, const struct im2col_geom *q)
{
    const struct conv_job job = {.dst = dx, .src = dcol, .q = q, .nb = nb};
    conv_parallel(col2im_planes, &job, nb * q->c, nb * q->c * q->kh * q->kw * q->oh * q->ow);
}

/* The (O, nb*S) <-> (nb, O, S) moves, over planes (n, o) in [lo, hi). */
static void gather_planes(const struct conv_job *job, int64_t lo, int64_t hi)
{
    for (int64_t pl = lo; pl < hi; pl++) {
        const int64_t i = pl / job->o, c = pl % job->o;
        memcpy(job->dst + (c * job->nb + i) * job->sp, job->src + pl * job->sp,
               (size_t)job->sp * sizeof(float));
    }
}

static void scatter_add_planes(const struct conv_job *job, int64_t lo, int64_t hi)
{
    for (int64_t pl = lo; pl < hi; pl++) {
        const int64_t i = pl / job->o, c = pl % job->o;
        float *d = job->dst + pl * job->sp;
        const float *s = job->src + (c * job->nb + i) * job->sp;
        for (int64_t j = 0; j < job->sp; j++)
            d[j] += s[j];
    }
}

/* y planes = yc planes + bias: the forward's scatter assigns. */
static void scatter_bias_planes(const struct conv_job *job, int64_t lo, int64_t hi)
{
    for (int64_t pl = lo; pl < hi; pl++) {
        const int64_t i = pl / job->o, c = pl % job->o;
        float *d = job->dst + pl * job->sp;
        const float *s = job->src + (c * job->nb + i) * job->sp;
        const float bo = job->bias ? job->bias[c] : 0.0f;
        for (int64_t j = 0; j < job->sp; j++)
            d[j] = s[j] + bo;
    }
}

/* dst (nb, O, S) += src (O, nb*S) */
static void conv_scatter_add(float *dst, const float *src, int64_t nb, int64_t o, int64_t sp)
{
    const struct conv_job job = {.dst = dst, .src = src, .nb = nb, .o = o, .sp = sp};
    conv_parallel(scatter_add_planes, &job, nb * o, nb * o * sp);
}

/* db[o] += sum of dy (N, O, S) over n and s, channels [lo, hi), image by image in order. */
static void bias_grad_channels(const struct conv_job *job, int64_t lo, int64_t hi)
{
    for (int64_t o = lo; o < hi; o++)
        for (int64_t i = 0; i < job->nb; i++) {
            const float *d = job->src + (i * job->o + o) * job->sp;
            float acc = 0;
            for (int64_t j = 0; j < job->sp; j++)
                acc += d[j];
            job->dst[o] += acc;
        }
}

/* ---- the direct path: stride 1, no im2col --------------------------------------------------
 *
 * A stride-1 convolution reads, for output (oy, ox) and tap (c, ky, kx), the padded input at
 * (c, oy+ky, ox+kx). Laid out as flat padded planes xp (C, HP*WP), that is xp[c][q + ky*WP + kx]
 * for the flat position q = oy*WP + ox: every tap is the same flat vector shifted by a constant
 * offset. So the convolution is a GEMM whose "col" matrix is never built: a tile of 4 output
 * channels x 24 consecutive positions loops over the C*KH*KW taps, loading 24 contiguous
 * inputs at the tap's offset and broadcasting 4 weights, 12 FMAs per 7 loads, all in registers
 * (a plane's last tile only 8 or 16 positions wide when that covers what is left of it).
 * Positions with ox >= OW (the last KW-1 columns of each flat row) are computed and dropped:
 * 2/30 of the work at 28x28, 2/16 at 14x14, 2/9 at 7x7; narrower planes keep the im2col path.
 *     forward  y  (O, Q) = w (O, K) "@" xp        per image, into a flat buffer, then copied
 *     dx       dx (C, Q') = flip(w)^T "@" dyp     the same kernel on dy padded by KH-1-PH
 *     dw       dw^T (K, O) += xp^T "@" dyt (Q, O)  dyt is dy transposed onto the flat grid,
 *                                                 zero at dropped positions: a tile of 6 taps x
 *                                                 16 channels broadcasts 6 inputs per position
 *                                                 against 2 vectors of dy, 12 FMAs per 8 loads
 * With AVX-512 the same tiles are 48 positions wide (three registers of 16) and a dw tile's 16
 * channels are one register; every output sums the same products in the same order, so the bits
 * do not depend on the vector width (test_conv pins them).
 * Each of ops_parallel_for's fixed slices (half the batch) has its own buffers and its own dw
 * partial, and the partials are summed in a fixed order: results depend on neither scheduling
 * nor whether a thread ran. The GEMMs here never go through OpenBLAS. */
#define DIR_MR 4  /* output channels per tile */
#ifdef __AVX512F__
#define DIR_NR 48 /* flat positions per tile: three registers of 16 */
#else
#define DIR_NR 24 /* flat positions per tile: three vectors of 8 */
#endif
#define DIR_DO 16 /* output channels per dw tile: two vectors of 8, or one of 16 */
#define DIR_DK 6  /* taps per dw tile (a tile of dot products along positions, 3 x 3, needed a
                   * horizontal sum per entry and ran a third slower) */

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CONV_HAVE_DIRECT 1
#else
#define CONV_HAVE_DIRECT 0
#endif

/* Planes narrower than this keep the im2col path: the dropped columns and short rows would
 * cost more than OpenBLAS's packing. At 7 (the reference encoder's last layer, 7/9 of the work
 * kept) the direct path measured 69-70 ms against im2col's 79 ms, forward and backward. */
#define CONV_DIRECT_MIN_OW 7
static int conv_direct_mode; /* test hook: 0 by shape, 1 always (stride 1), -1 never */

GRAPH_HIDDEN void conv_set_direct(int mode);
void conv_set_direct(int mode) { conv_direct_mode = mode; }

/* One stride-1 convolution on flat padded planes: src (C, H, W) -> dst (O, OH, OW). */
struct direct_geom {
    int64_t c, h, w, o, or4; /* channels in and out (or4: rounded up to DIR_MR) */
    int64_t kh, kw, ph, pw;
    int64_t wp, hpwp; /* padded row and plane */
    int64_t oh, ow;   /* valid output plane */
    int64_t q, qr;    /* flat output positions oh*wp, rounded up to DIR_NR */
    int64_t k;        /* taps c*kh*kw */
    int64_t xp_len;   /* floats of one padded image, with the tiles' read slack */
};

static void direct_geom_init(struct direct_geom *d, int64_t c, int64_t h, int64_t w, int64_t o,
                             int64_t kh, int64_t kw, int64_t ph, int64_t pw)
{
    *d = (struct direct_geom){.c = c, .h = h, .w = w, .o = o, .kh = kh, .kw = kw, .ph = ph,
                              .pw = pw};
    d->or4 = (o + DIR_MR - 1) / DIR_MR * DIR_MR;
    d->wp = w + 2 * pw;
    d->hpwp = (h + 2 * ph) * d->wp;
    d->oh = h + 2 * ph - kh + 1, d->ow = d->wp - kw + 1;
    d->q = d->oh * d->wp;
    d->qr = (d->q + DIR_NR - 1) / DIR_NR * DIR_NR;
    d->k = c * kh * kw;
    /* the last tile reads up to (c-1)*hpwp + (kh-1)*wp + kw-1 + qr-1 < c*hpwp + kw + DIR_NR */
    d->xp_len = c * d->hpwp + kw + DIR_NR;
}

/* off[j]: tap j = (c, ky, kx)'s offset in the flat padded image. */
static void direct_offsets(const struct direct_geom *d, int32_t *off)
{
    for (int64_t j = 0; j < d->k; j++) {
        const int64_t c = j / (d->kh * d->kw), ky = j / d->kw % d->kh, kx = j % d->kw;
        off[j] = (int32_t)(c * d->hpwp + ky * d->wp + kx);
    }
}

/* src (N, C, H, W) image i into the interior of xp; the padding was zeroed once and is never
 * written. */
static void pad_planes(float *xp, const float *src, int64_t c, int64_t h, int64_t w,
                       int64_t plane, int64_t wp, int64_t ph, int64_t pw)
{
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t y = 0; y < h; y++)
            memcpy(xp + ch * plane + (y + ph) * wp + pw, src + (ch * h + y) * w,
                   (size_t)w * sizeof(float));
}

static void direct_pad(const struct direct_geom *d, float *xp, const float *src)
{
    pad_planes(xp, src, d->c, d->h, d->w, d->hpwp, d->wp, d->ph, d->pw);
}

#if CONV_HAVE_DIRECT
/* t[r * ts + c] = s[c * ss + r] for an 8 x 8 block */
static inline void transpose8(float *t, int64_t ts, const float *s, int64_t ss)
{
    __m256 r[8], u[8];
    for (int c = 0; c < 8; c++)
        r[c] = _mm256_loadu_ps(s + c * ss);
    for (int c = 0; c < 8; c += 2) {
        u[c] = _mm256_unpacklo_ps(r[c], r[c + 1]);
        u[c + 1] = _mm256_unpackhi_ps(r[c], r[c + 1]);
    }
    for (int c = 0; c < 8; c += 4) {
        r[c] = _mm256_shuffle_ps(u[c], u[c + 2], 0x44);
        r[c + 1] = _mm256_shuffle_ps(u[c], u[c + 2], 0xEE);
        r[c + 2] = _mm256_shuffle_ps(u[c + 1], u[c + 3], 0x44);
        r[c + 3] = _mm256_shuffle_ps(u[c + 1], u[c + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        _mm256_storeu_ps(t + c * ts, _mm256_permute2f128_ps(r[c], r[c + 4], 0x20));
        _mm256_storeu_ps(t + (c + 4) * ts, _mm256_permute2f128_ps(r[c], r[c + 4], 0x31));
    }
}
#endif

/* dy (o, h, w) onto a channel-minor grid: position (y, x) of channel ch at
 * dst[(y*row + x)*o16 + ch]; cells outside the plane are left as they are. A copy, so the
 * order of the moves does not matter: with AVX2, blocks of 8 channels x 8 positions go
 * through a register transpose and land as 8 consecutive floats, instead of one float per
 * cache line. */
static void grid_planes(float *dst, const float *src, int64_t o, int64_t h, int64_t w,
                        int64_t row, int64_t o16)
{
    int64_t ch0 = 0;
#if CONV_HAVE_DIRECT
    for (; ch0 + 8 <= o; ch0 += 8)
        for (int64_t y = 0; y < h; y++) {
            const float *s = src + (ch0 * h + y) * w;
            float *t = dst + y * row * o16 + ch0;
            int64_t x = 0;
            for (; x + 8 <= w; x += 8)
                transpose8(t + x * o16, o16, s + x, h * w);
            for (; x < w; x++)
                for (int c = 0; c < 8; c++)
                    t[x * o16 + c] = s[c * h * w + x];
        }
#endif
    for (int64_t ch = ch0; ch < o; ch++)
        for (int64_t y = 0; y < h; y++) {
            const float *s = src + (ch * h + y) * w;
            float *t = dst + y * row * o16 + ch;
            for (int64_t x = 0; x < w; x++)
                t[x * o16] = s[x];
        }
}

#if CONV_HAVE_DIRECT
#ifdef __AVX512F__
/* y (4, 8 * nv) rows ys apart = sum over taps j of wp[j] (4) outer x[off[j] .. +8*nv], nv = 2 nz
 * + ny: nz registers of 16 positions and ny (0 or 1) of 8 per channel. With AVX-512 a tile is up
 * to 48 positions (12 accumulators), each lane the same multiply-add in the same order as in
 * AVX2's 24-wide tiles. nz and ny are constants at every call, so the loops over them unroll
 * and the accumulators stay in registers. */
static inline __attribute__((always_inline)) void direct_tile512(int nz, int ny, const float *x,
                                                                 const int32_t *off,
                                                                 const float *wp, int64_t k,
                                                                 float *y, int64_t ys)
{
    __m512 a[DIR_MR][3];
    __m256 t[DIR_MR];
    for (int r = 0; r < DIR_MR; r++) {
        t[r] = _mm256_setzero_ps();
        for (int i = 0; i < nz; i++)
            a[r][i] = _mm512_setzero_ps();
    }
#pragma GCC unroll 2
    for (int64_t j = 0; j < k; j++, wp += DIR_MR) {
        const float *s = x + off[j];
        __m512 v[3];
        for (int i = 0; i < nz; i++)
            v[i] = _mm512_loadu_ps(s + 16 * i);
        const __m256 u = ny ? _mm256_loadu_ps(s + 16 * nz) : _mm256_setzero_ps();
        for (int r = 0; r < DIR_MR; r++) {
            const __m512 b = _mm512_set1_ps(wp[r]);
            for (int i = 0; i < nz; i++)
                a[r][i] = _mm512_fmadd_ps(b, v[i], a[r][i]);
            if (ny)
                t[r] = _mm256_fmadd_ps(_mm512_castps512_ps256(b), u, t[r]);
        }
    }
    for (int r = 0; r < DIR_MR; r++, y += ys) {
        for (int i = 0; i < nz; i++)
            _mm512_storeu_ps(y + 16 * i, a[r][i]);
        if (ny)
            _mm256_storeu_ps(y + 16 * nz, t[r]);
    }
}

/* One tile of positions [q0, q0 + 8*nv): nv = 6, or for a plane's last positions the narrowest
 * that covers them. */
static void direct_tile(const float *x, const int32_t *off, const float *wp, int64_t k, float *y,
                        int64_t ys, int nv)
{
    switch (nv) {
    case 6: direct_tile512(3, 0, x, off, wp, k, y, ys); break;
    case 5: direct_tile512(2, 1, x, off, wp, k, y, ys); break;
    case 4: direct_tile512(2, 0, x, off, wp, k, y, ys); break;
    case 3: direct_tile512(1, 1, x, off, wp, k, y, ys); break;
    case 2: direct_tile512(1, 0, x, off, wp, k, y, ys); break;
    default: direct_tile512(0, 1, x, off, wp, k, y, ys); break;
    }
}
#else
/* y (4, 24) rows ys apart = sum over taps j of wp[j] (4) outer x[off[j] .. +24]. Written out
 * by hand: a version over arrays of accumulators indexed by a constant width compiled to a
 * loop 30-40 % slower on the ops benchmark. */
static inline void direct_tile24(const float *x, const int32_t *off, const float *wp, int64_t k,
                                 float *y, int64_t ys)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    __m256 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    /* two taps per iteration: 32->32 and 64->64 forward 36-38 -> 34-37 ms in A/B runs */
#pragma GCC unroll 2
    for (int64_t j = 0; j < k; j++, wp += DIR_MR) {
        const float *s = x + off[j];
        const __m256 x0 = _mm256_loadu_ps(s), x1 = _mm256_loadu_ps(s + 8);
        const __m256 x2 = _mm256_loadu_ps(s + 16);
        __m256 b = _mm256_broadcast_ss(wp);
        a0 = _mm256_fmadd_ps(b, x0, a0), a1 = _mm256_fmadd_ps(b, x1, a1);
        a2 = _mm256_fmadd_ps(b, x2, a2);
        b = _mm256_broadcast_ss(wp + 1);
        a3 = _mm256_fmadd_ps(b, x0, a3), a4 = _mm256_fmadd_ps(b, x1, a4);
        a5 = _mm256_fmadd_ps(b, x2, a5);
        b = _mm256_broadcast_ss(wp + 2);
        a6 = _mm256_fmadd_ps(b, x0, a6), a7 = _mm256_fmadd_ps(b, x1, a7);
        a8 = _mm256_fmadd_ps(b, x2, a8);
        b = _mm256_broadcast_ss(wp + 3);
        a9 = _mm256_fmadd_ps(b, x0, a9), a10 = _mm256_fmadd_ps(b, x1, a10);
        a11 = _mm256_fmadd_ps(b, x2, a11);
    }
    _mm256_storeu_ps(y, a0), _mm256_storeu_ps(y + 8, a1), _mm256_storeu_ps(y + 16, a2);
    y += ys;
    _mm256_storeu_ps(y, a3), _mm256_storeu_ps(y + 8, a4), _mm256_storeu_ps(y + 16, a5);
    y += ys;
    _mm256_storeu_ps(y, a6), _mm256_storeu_ps(y + 8, a7), _mm256_storeu_ps(y + 16, a8);
    y += ys;
    _mm256_storeu_ps(y, a9), _mm256_storeu_ps(y + 8, a10), _mm256_storeu_ps(y + 16, a11);
}

/* The same for the last 16 positions of a plane. */
static inline void direct_tile16(const float *x, const int32_t *off, const float *wp, int64_t k,
                                 float *y, int64_t ys)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a3 = a0, a4 = a0, a6 = a0, a7 = a0, a9 = a0;
    __m256 a10 = a0;
#pragma GCC unroll 2
    for (int64_t j = 0; j < k; j++, wp += DIR_MR) {
        const float *s = x + off[j];
        const __m256 x0 = _mm256_loadu_ps(s), x1 = _mm256_loadu_ps(s + 8);
        __m256 b = _mm256_broadcast_ss(wp);
        a0 = _mm256_fmadd_ps(b, x0, a0), a1 = _mm256_fmadd_ps(b, x1, a1);
        b = _mm256_broadcast_ss(wp + 1);
        a3 = _mm256_fmadd_ps(b, x0, a3), a4 = _mm256_fmadd_ps(b, x1, a4);
        b = _mm256_broadcast_ss(wp + 2);
        a6 = _mm256_fmadd_ps(b, x0, a6), a7 = _mm256_fmadd_ps(b, x1, a7);
        b = _mm256_broadcast_ss(wp + 3);
        a9 = _mm256_fmadd_ps(b, x0, a9), a10 = _mm256_fmadd_ps(b, x1, a10);
    }
    _mm256_storeu_ps(y, a0), _mm256_storeu_ps(y + 8, a1);
    y += ys;
    _mm256_storeu_ps(y, a3), _mm256_storeu_ps(y + 8, a4);
    y += ys;
    _mm256_storeu_ps(y, a6), _mm256_storeu_ps(y + 8, a7);
    y += ys;
    _mm256_storeu_ps(y, a9), _mm256_storeu_ps(y + 8, a10);
}

/* And for the last 8. */
static inline void direct_tile8(const float *x, const int32_t *off, const float *wp, int64_t k,
                                float *y, int64_t ys)
{
    __m256 a0 = _mm256_setzero_ps(), a3 = a0, a6 = a0, a9 = a0;
#pragma GCC unroll 2
    for (int64_t j = 0; j < k; j++, wp += DIR_MR) {
        const __m256 x0 = _mm256_loadu_ps(x + off[j]);
        a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(wp), x0, a0);
        a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(wp + 1), x0, a3);
        a6 = _mm256_fmadd_ps(_mm256_broadcast_ss(wp + 2), x0, a6);
        a9 = _mm256_fmadd_ps(_mm256_broadcast_ss(wp + 3), x0, a9);
    }
    _mm256_storeu_ps(y, a0);
    _mm256_storeu_ps(y + ys, a3);
    _mm256_storeu_ps(y + 2 * ys, a6);
    _mm256_storeu_ps(y + 3 * ys, a9);
}

/* One tile of positions [q0, q0 + 8*nv): nv = 3, or for a plane's last positions the narrowest
 * that covers them. Each position sums its taps in the same order whatever the width, so the
 * results do not depend on it. */
static void direct_tile(const float *x, const int32_t *off, const float *wp, int64_t k, float *y,
                        int64_t ys, int nv)
{
    if (nv == 3)
        direct_tile24(x, off, wp, k, y, ys);
    else if (nv == 2)
        direct_tile16(x, off, wp, k, y, ys);
    else
        direct_tile8(x, off, wp, k, y, ys);
}
#endif

#ifdef __AVX512F__
/* dwt (nr, 16) rows o16 apart += sum over positions p < q of x[off[j] + p] * dyt[p] (16): with
 * AVX-512 the 16 channels are one register, so nr FMAs per position instead of 2 * nr, each lane
 * the same multiply-add in the same order as AVX2's. nr is a constant at every call, so the nr
 * accumulators stay in registers. */
static inline __attribute__((always_inline)) void direct_dw_tile(int nr, const float *dyt,
                                                                 int64_t o16, const float *x,
                                                                 const int32_t *off, int64_t q,
                                                                 float *dwt)
{
    __m512 a[DIR_DK];
    const float *xs[DIR_DK];
    for (int j = 0; j < nr; j++) {
        a[j] = _mm512_setzero_ps();
        xs[j] = x + off[j];
    }
    for (int64_t p = 0; p < q; p++, dyt += o16) {
        __m512 g = _mm512_loadu_ps(dyt);
        /* keep it in a register: the compiler would otherwise fold a load into each FMA */
        __asm__("" : "+v"(g));
        for (int j = 0; j < nr; j++)
            a[j] = _mm512_fmadd_ps(g, _mm512_set1_ps(xs[j][p]), a[j]);
    }
    for (int j = 0; j < nr; j++) {
        float *d = dwt + j * o16;
        _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), a[j]));
    }
}
#else
/* dwt (nr, 16) rows o16 apart += sum over positions p < q of x[off[j] + p] * dyt[p] (16). nr is a
 * constant at every call, so the 2 * nr accumulators stay in registers. */
static inline __attribute__((always_inline)) void direct_dw_tile(int nr, const float *dyt,
                                                                 int64_t o16, const float *x,
                                                                 const int32_t *off, int64_t q,
                                                                 float *dwt)
{
    __m256 a[DIR_DK][2];
    const float *xs[DIR_DK];
    for (int j = 0; j < nr; j++) {
        a[j][0] = a[j][1] = _mm256_setzero_ps();
        xs[j] = x + off[j];
    }
    for (int64_t p = 0; p < q; p++, dyt += o16) {
        __m256 g0 = _mm256_loadu_ps(dyt), g1 = _mm256_loadu_ps(dyt + 8);
        /* keep both in registers: the compiler would otherwise fold a load into each FMA */
        __asm__("" : "+x"(g0), "+x"(g1));
        for (int j = 0; j < nr; j++) {
            const __m256 b = _mm256_broadcast_ss(xs[j] + p);
            a[j][0] = _mm256_fmadd_ps(g0, b, a[j][0]);
            a[j][1] = _mm256_fmadd_ps(g1, b, a[j][1]);
        }
    }
    for (int j = 0; j < nr; j++) {
        float *d = dwt + j * o16;
        _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), a[j][0]));
        _mm256_storeu_ps(d + 8, _mm256_add_ps(_mm256_loadu_ps(d + 8), a[j][1]));
    }
}
#endif
#else
static void direct_tile(const float *x, const int32_t *off, const float *wp, int64_t k, float *y,
                        int64_t ys, int nv)
{
    (void)x, (void)off, (void)wp, (void)k, (void)y, (void)ys, (void)nv;
    INVAR_ASSERT(!"the direct conv path needs AVX2 and FMA");
}
#endif

/* dwt (k, o16) += sum over positions p < q of x[off[j] + p] (j < k) times dyt[p] (o16), in
 * tiles of 6 taps x 16 channels. */
static void direct_dw_tiles(const float *dyt, int64_t o16, const float *x, const int32_t *off,
                            int64_t k, int64_t q, float *dwt)
{
#if CONV_HAVE_DIRECT
    for (int64_t o0 = 0; o0 < o16; o0 += DIR_DO)
        for (int64_t j = 0; j < k; j += DIR_DK) {
            const float *dy = dyt + o0;
            float *dw = dwt + j * o16 + o0;
            /* nr as a constant: one specialised tile per case */
#define DW_TILE(N) direct_dw_tile(N, dy, o16, x, off + j, q, dw)
            switch (k - j < DIR_DK ? k - j : DIR_DK) {
            case 6: DW_TILE(6); break;
            case 5: DW_TILE(5); break;
            case 4: DW_TILE(4); break;
            case 3: DW_TILE(3); break;
            case 2: DW_TILE(2); break;
            default: DW_TILE(1); break;
            }
#undef DW_TILE
        }
#else
    (void)dyt, (void)o16, (void)x, (void)off, (void)k, (void)q, (void)dwt;
    INVAR_ASSERT(!"the direct conv path needs AVX2 and FMA");
#endif
}

/* Rows of dw^T, (K, o16), += the image's padded input "@" its dy on the flat grid (q, o16). */
static void direct_dw_image(const struct direct_geom *d, const int32_t *off, const float *xp,
                            const float *dyt, int64_t o16, float *dwt)
{
    direct_dw_tiles(dyt, o16, xp, off, d->k, d->q, dwt);
}

/* dst (o, h, w) (=, + bias | +=) the valid part of planes staged with wider rows: plane p's
 * row y starts at src + p*plane + y*row. */
static void conv_store_planes(const float *src, int64_t plane, int64_t row, int64_t o, int64_t h,
                              int64_t w, float *dst, const float *bias, int accumulate)
{
    for (int64_t p = 0; p < o; p++)
        for (int64_t y = 0; y < h; y++) {
            const float *r = src + p * plane + y * row;
            float *out = dst + (p * h + y) * w;
            if (accumulate) {
                for (int64_t x = 0; x < w; x++)
                    out[x] += r[x];
            } else {
                const float bo = bias ? bias[p] : 0.0f;
                for (int64_t x = 0; x < w; x++)
                    out[x] = r[x] + bo;
            }
        }
}

/* dst (O, OH, OW) (=, + bias | +=) the convolution of the padded image xp, through yf. */
static void direct_image(const struct direct_geom *d, const int32_t *off, const float *wpk,
                         const float *xp, float *yf, float *dst, const float *bias, int accumulate)
{
    for (int64_t q0 = 0; q0 < d->q; q0 += DIR_NR) {
        /* the last tile only as wide as the plane needs: at 9x9 (wp 11, q 99) 104 positions
         * instead of 120 */
        const int64_t left = d->q - q0;
        const int nv = left >= DIR_NR ? DIR_NR / 8 : (int)((left + 7) / 8);
        for (int64_t ob = 0; ob < d->or4 / DIR_MR; ob++)
            direct_tile(xp + q0, off, wpk + ob * d->k * DIR_MR, d->k, yf + ob * DIR_MR * d->qr + q0,
                        d->qr, nv);
    }
    conv_store_planes(yf, d->qr, d->wp, d->o, d->oh, d->ow, dst, bias, accumulate);
}

/* ---- Winograd F(2x2, 3x3) (Lavin & Gray 2016) on the direct kernel -------------------------
 *
 * A 3x3 convolution with padding 1 (forward, and dx: the same shape of convolution on dy with
 * the flipped kernel) computes each 2x2 block of outputs from the 4x4 input patch under it as
 *     Y (2x2) = A^T [ sum over c of (G g_oc G^T) (.) (B^T d_c B) ] A
 * with 16 multiplies per (block, c, o) instead of the direct path's 36. Per entry xi of the
 * transformed 4x4 the sum over c is a GEMM, M_xi (O, T) = U_xi (O, C) @ V_xi (C, T) over the
 * image's T blocks, which is direct_tile with tap c at offset c*16*TP in V_xi: only the three
 * transforms are new. Input and output transforms run on 8 blocks of a row at once. Every
 * block sums its channels in one fixed order, so results are reproducible like the direct
 * path's, and differ from it only by rounding (the transforms add a few ulps).
 *     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
 *     A^T = [1 1 1 0; 0 1 -1 -1] */
#define WINO_MIN_C 8 /* fewer input channels (a first layer): the transforms would dominate */
#define WINO_BLOCKS 96 /* blocks per GEMM at least, from several images of a small plane */
static int conv_wino_mode; /* test hook: 0 by shape, 1 whenever 3x3 with padding 1, -1 never */

GRAPH_HIDDEN void conv_set_winograd(int mode);
void conv_set_winograd(int mode) { conv_wino_mode = mode; }

struct wino_geom {
    int64_t c, h, w, o, or4;
    int64_t th, tw, t; /* blocks down, across, per image */
    int64_t g, tp;     /* images per GEMM; rows of V and M, g*t and a vector's spill */
    int64_t hp, wp;        /* the padded plane, 2*th + 2 rows of 2*tw + 2 */
    int64_t xp_len;        /* c planes and the transform's read slack */
    int64_t ys;            /* row of the staged output: 2*tw and a store's slack */
    int64_t vlen;          /* floats of V, (c, 16, tp) */
};

static void wino_geom_init(struct wino_geom *d, int64_t c, int64_t h, int64_t w, int64_t o)
{
    *d = (struct wino_geom){.c = c, .h = h, .w = w, .o = o};
    d->or4 = (o + DIR_MR - 1) / DIR_MR * DIR_MR;
    d->th = (h + 1) / 2, d->tw = (w + 1) / 2, d->t = d->th * d->tw;
    /* small planes share their GEMMs, so a vector of blocks is rarely half empty */
    d->g = WINO_BLOCKS / d->t > 1 ? WINO_BLOCKS / d->t : 1;
    /* a row's last vector of 8 blocks writes past the row: up to block g*t + 6 */
    d->tp = (d->g * d->t + 7 + 7) / 8 * 8;
    d->hp = 2 * d->th + 2, d->wp = 2 * d->tw + 2;
    /* a vector of blocks reads 18 floats from 2*tx0: at most wp + 14 past its row's start */
    d->xp_len = c * d->hp * d->wp + 16;
    d->ys = 2 * d->tw + 16;
    d->vlen = c * 16 * d->tp;
}

/* Scratch: [xp | V (c, 16, tp) | M (16, or4, tp) | staged output (o, 2*th, ys)]; image k of a
 * group has blocks [k*t, (k+1)*t) of V and M. */
static size_t wino_buf_floats(const struct wino_geom *d)
{
    return (size_t)(d->xp_len + d->vlen + 16 * d->or4 * d->tp + d->o * 2 * d->th * d->ys);
}

/* The part of that scratch a slice zeroes before its first group: xp, whose padding and slack
 * must be zero, and V, whose columns past a group's last block are never written but go through
 * the GEMM's FMAs (into lanes no output uses; zero, they cannot be slow denormals). What of M and
 * the staged rows is read before it is written goes only to lanes no output uses. */
static size_t wino_zero_floats(const struct wino_geom *d)
{
    return (size_t)(d->xp_len + d->vlen);
}

static int wino_shape_ok(int64_t c, int64_t kh, int64_t kw, int64_t ph, int64_t pw)
{
    if (conv_wino_mode < 0 || kh != 3 || kw != 3 || ph != 1 || pw != 1)
        return 0;
    return conv_wino_mode > 0 || c >= WINO_MIN_C;
}

/* U_xi for every xi, packed like direct_pack: (16, rows/4, K, 4), rows past `rows` zero.
 * flip: the dx kernel, rows = the layer's input channels, K its output channels, taps reversed.
 * Like direct_pack, packed once per graph for the same weights (graph_memo). */
static float *wino_pack(struct invar_graph *g, const float *w, int64_t o, int64_t c, int flip)
{
    const int64_t rows = flip ? c : o, k = flip ? o : c;
    const int64_t r4 = (rows + DIR_MR - 1) / DIR_MR * DIR_MR;
    const int64_t tag[4] = {2 + flip, o, c, 3 * 16 + 3}; /* direct_pack's kinds are 0 and 1 */
    const size_t w_bytes = (size_t)(o * c * 9) * sizeof(float);
    float *p = graph_memo_find(g, w, w_bytes, tag);
    if (p)
        return p;
    p = graph_alloc(g, (size_t)(16 * r4 * k) * sizeof(float));
    memset(p, 0, (size_t)(16 * r4 * k) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < k; j++) {
            double gk[3][3], t[4][3];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++)
                    gk[ky][kx] = flip ? w[((j * c + r) * 3 + 2 - ky) * 3 + 2 - kx]
                                      : w[((r * c + j) * 3 + ky) * 3 + kx];
            for (int kx = 0; kx < 3; kx++) { /* G g */
                t[0][kx] = gk[0][kx];
                t[1][kx] = 0.5 * (gk[0][kx] + gk[1][kx] + gk[2][kx]);
                t[2][kx] = 0.5 * (gk[0][kx] - gk[1][kx] + gk[2][kx]);
                t[3][kx] = gk[2][kx];
            }
            for (int i = 0; i < 4; i++) { /* (G g) G^T */
                const double u[4] = {t[i][0], 0.5 * (t[i][0] + t[i][1] + t[i][2]),
                                     0.5 * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
                for (int jj = 0; jj < 4; jj++)
                    p[(((i * 4 + jj) * (r4 / DIR_MR) + r / DIR_MR) * k + j) * DIR_MR +
                      r % DIR_MR] = (float)u[jj];
            }
        }
    graph_memo_put(g, w, w_bytes, tag, p);
    return p;
}

/* off[j] = j*16*tp: "tap" j of the GEMM is channel j's row of V_xi (V_xi starts at xi*tp). */
static int32_t *wino_offsets(struct invar_graph *g, const struct wino_geom *d)
{
    int32_t *off = graph_alloc(g, (size_t)d->c * sizeof *off);
    for (int64_t j = 0; j < d->c; j++)
        off[j] = (int32_t)(j * 16 * d->tp);
    return off;
}

#if CONV_HAVE_DIRECT
/* The even and the odd floats of the 16 at s, in order. */
static inline void wino_deinterleave(const float *s, __m256 *even, __m256 *odd)
{
    const __m256 lo = _mm256_loadu_ps(s), hi = _mm256_loadu_ps(s + 8);
    *even = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
    *odd = _mm256_castpd_ps(
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
}

/* V (c, 16, tp) = B^T d B for every block of the padded image xp, 8 blocks of a row at once. A
 * row's last vector spills into the next row's first blocks, which that row then overwrites.
 * A channel's 16 entries are side by side so that its 16 stores a vector land in one 16*tp
 * stretch: with the entries outermost, (16, c, tp), they went to 16 places c*tp apart and this
 * transform took 1.8 times as long (CPU samples of a SimSiam epoch); the GEMM's reads of V, now
 * 16*tp apart from channel to channel, cost less than that. Channels grouped by 4 did worse. */
static void wino_input(const struct wino_geom *d, const float *xp, float *v)
{
    const int64_t ct = d->tp; /* from entry to entry */
    for (int64_t ch = 0; ch < d->c; ch++)
        for (int64_t ty = 0; ty < d->th; ty++) {
            const float *r = xp + ch * d->hp * d->wp + 2 * ty * d->wp;
            float *vt = v + ch * 16 * d->tp + ty * d->tw;
            for (int64_t tx = 0; tx < d->tw; tx += 8) {
                __m256 h[4][4]; /* row i of the patch, transformed along x */
                for (int i = 0; i < 4; i++) {
                    __m256 d0, d1, d2, d3;
                    wino_deinterleave(r + i * d->wp + 2 * tx, &d0, &d1);
                    wino_deinterleave(r + i * d->wp + 2 * tx + 2, &d2, &d3);
                    h[i][0] = _mm256_sub_ps(d0, d2), h[i][1] = _mm256_add_ps(d1, d2);
                    h[i][2] = _mm256_sub_ps(d2, d1), h[i][3] = _mm256_sub_ps(d1, d3);
                }
                for (int j = 0; j < 4; j++) { /* and along y */
                    _mm256_storeu_ps(vt + (0 * 4 + j) * ct + tx, _mm256_sub_ps(h[0][j], h[2][j]));
                    _mm256_storeu_ps(vt + (1 * 4 + j) * ct + tx, _mm256_add_ps(h[1][j], h[2][j]));
                    _mm256_storeu_ps(vt + (2 * 4 + j) * ct + tx, _mm256_sub_ps(h[2][j], h[1][j]));
                    _mm256_storeu_ps(vt + (3 * 4 + j) * ct + tx, _mm256_sub_ps(h[1][j], h[3][j]));
                }
            }
        }
}

/* Staged output rows (o, 2*th, ys) = A^T M A, 8 blocks at once, the two columns of each block
 * interleaved into 16 consecutive floats. */
static void wino_output(const struct wino_geom *d, const float *m, float *yo)
{
    const int64_t ot = d->or4 * d->tp;
    for (int64_t o = 0; o < d->o; o++)
        for (int64_t ty = 0; ty < d->th; ty++) {
            const float *mt = m + o * d->tp + ty * d->tw;
            float *y0 = yo + (o * 2 * d->th + 2 * ty) * d->ys, *y1 = y0 + d->ys;
            for (int64_t tx = 0; tx < d->tw; tx += 8) {
                __m256 s[4], e[4]; /* row i of M, through A along x: s = m0+m1+m2, e = m1-m2-m3 */
                for (int i = 0; i < 4; i++) {
                    const __m256 m0 = _mm256_loadu_ps(mt + (i * 4 + 0) * ot + tx);
                    const __m256 m1 = _mm256_loadu_ps(mt + (i * 4 + 1) * ot + tx);
                    const __m256 m2 = _mm256_loadu_ps(mt + (i * 4 + 2) * ot + tx);
                    const __m256 m3 = _mm256_loadu_ps(mt + (i * 4 + 3) * ot + tx);
                    s[i] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
                    e[i] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
                }
                const __m256 y00 = _mm256_add_ps(_mm256_add_ps(s[0], s[1]), s[2]);
                const __m256 y01 = _mm256_add_ps(_mm256_add_ps(e[0], e[1]), e[2]);
                const __m256 y10 = _mm256_sub_ps(_mm256_sub_ps(s[1], s[2]), s[3]);
                const __m256 y11 = _mm256_sub_ps(_mm256_sub_ps(e[1], e[2]), e[3]);
                __m256 lo = _mm256_unpacklo_ps(y00, y01), hi = _mm256_unpackhi_ps(y00, y01);
                _mm256_storeu_ps(y0 + 2 * tx, _mm256_permute2f128_ps(lo, hi, 0x20));
                _mm256_storeu_ps(y0 + 2 * tx + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
                lo = _mm256_unpacklo_ps(y10, y11), hi = _mm256_unpackhi_ps(y10, y11);
                _mm256_storeu_ps(y1 + 2 * tx, _mm256_permute2f128_ps(lo, hi, 0x20));
                _mm256_storeu_ps(y1 + 2 * tx + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
            }
        }
}
#endif

/* dst (n, O, H, W) (=, + bias | +=) the 3x3 pad-1 convolution of src (n, C, H, W) by the
 * packed u, n <= g images in one GEMM per xi. buf: wino_buf_floats of scratch whose padding ring
 * and slack are zero (and stay so). */
static void wino_group(const struct wino_geom *d, const int32_t *off, const float *u,
                       const float *src, int64_t n, float *buf, float *dst, const float *bias,
                       int accumulate)
{
#if CONV_HAVE_DIRECT
    float *xp = buf, *v = xp + d->xp_len, *m = v + d->vlen;
    float *yo = m + 16 * d->or4 * d->tp;
    for (int64_t k = 0; k < n; k++) {
        pad_planes(xp, src + k * d->c * d->h * d->w, d->c, d->h, d->w, d->hp * d->wp, d->wp, 1,
                   1);
        wino_input(d, xp, v + k * d->t);
    }
    const int64_t nb = d->or4 / DIR_MR, tn = n * d->t;
    for (int xi = 0; xi < 16; xi++) {
        const float *vx = v + xi * d->tp, *ux = u + xi * nb * d->c * DIR_MR;
        float *mx = m + xi * d->or4 * d->tp;
        for (int64_t t0 = 0; t0 < tn; t0 += DIR_NR) {
            const int64_t left = tn - t0;
            const int nv = left >= DIR_NR ? DIR_NR / 8 : (int)((left + 7) / 8);
            for (int64_t ob = 0; ob < nb; ob++)
                direct_tile(vx + t0, off, ux + ob * d->c * DIR_MR, d->c,
                            mx + ob * DIR_MR * d->tp + t0, d->tp, nv);
        }
    }
    for (int64_t k = 0; k < n; k++) {
        wino_output(d, m + k * d->t, yo);
        conv_store_planes(yo, 2 * d->th * d->ys, d->ys, d->o, d->h, d->w,
                          dst + k * d->o * d->h * d->w, bias, accumulate);
    }
#else
    (void)d, (void)off, (void)u, (void)src, (void)n, (void)buf, (void)dst, (void)bias;
    (void)accumulate;
    INVAR_ASSERT(!"the Winograd path needs AVX2 and FMA");
#endif
}

/* dw through the same transform: the forward's Y = A^T [U (.) V] A gives
 *     dL/dg = G^T [ sum over blocks of (A dY A^T) (.) (B^T d B) ] G
 * so per entry xi a GEMM over a group's blocks, Ghat_xi (C, O) += V_xi (C, T) @ Yhat_xi^T,
 * which is direct_dw_tile with channel c's row of V_xi as its tap, accumulated over the slice's
 * images into (16, C, o16) and taken back through G^T . G once the slices are summed.
 * Scratch after wino_buf_floats' xp and V: one image's dy on the flat grid (2*th, 2*tw, o16),
 * zero outside the plane, and the group's Yhat (16, tp, o16). */
static size_t wino_dw_buf_floats(const struct wino_geom *d, int64_t o16)
{
    return (size_t)(d->xp_len + d->vlen + 4 * d->t * o16 + 16 * d->tp * o16);
}

#if CONV_HAVE_DIRECT
/* One image's Yhat, rows [0, t) of yh (xi planes plane floats apart) = A dY A^T for every 2x2
 * block of dyt (2*th, 2*tw, o16), 8 channels at once: A dY's rows are [a b], [a+c b+d],
 * [a-c b-d], [-c -d], and each row [p q] becomes [p, p+q, p-q, -q]. */
static void wino_dy(const struct wino_geom *d, int64_t o16, const float *dyt, float *yh,
                    int64_t plane)
{
    const int64_t row = 2 * d->tw * o16;
    for (int64_t ty = 0; ty < d->th; ty++)
        for (int64_t tx = 0; tx < d->tw; tx++) {
            const float *s = dyt + 2 * ty * row + 2 * tx * o16;
            float *yt = yh + (ty * d->tw + tx) * o16;
            for (int64_t o = 0; o < o16; o += 8) {
                const __m256 a = _mm256_loadu_ps(s + o), b = _mm256_loadu_ps(s + o16 + o);
                const __m256 c = _mm256_loadu_ps(s + row + o);
                const __m256 e = _mm256_loadu_ps(s + row + o16 + o);
                const __m256 z = _mm256_setzero_ps();
                const __m256 p[4] = {a, _mm256_add_ps(a, c), _mm256_sub_ps(a, c),
                                     _mm256_sub_ps(z, c)};
                const __m256 q[4] = {b, _mm256_add_ps(b, e), _mm256_sub_ps(b, e),
                                     _mm256_sub_ps(z, e)};
                for (int i = 0; i < 4; i++) {
                    float *y = yt + i * 4 * plane + o;
                    _mm256_storeu_ps(y, p[i]);
                    _mm256_storeu_ps(y + plane, _mm256_add_ps(p[i], q[i]));
                    _mm256_storeu_ps(y + 2 * plane, _mm256_sub_ps(p[i], q[i]));
                    _mm256_storeu_ps(y + 3 * plane, _mm256_sub_ps(z, q[i]));
                }
            }
        }
}
#endif

/* ghat (16, c, o16) += the sum over the blocks of n <= g images, src (n, C, H, W) and
 * dy (n, O, H, W); buf as in wino_dw_buf_floats, its padding ring and the grid's margins zero. */
static void wino_dw_group(const struct wino_geom *d, const int32_t *off, int64_t o16,
                          const float *src, const float *dy, int64_t n, float *buf, float *ghat)
{
#if CONV_HAVE_DIRECT
    float *xp = buf, *v = xp + d->xp_len, *dyt = v + d->vlen;
    float *yh = dyt + 4 * d->t * o16;
    for (int64_t k = 0; k < n; k++) {
        pad_planes(xp, src + k * d->c * d->h * d->w, d->c, d->h, d->w, d->hp * d->wp, d->wp, 1,
                   1);
        wino_input(d, xp, v + k * d->t);
        grid_planes(dyt, dy + k * d->o * d->h * d->w, d->o, d->h, d->w, 2 * d->tw, o16);
        wino_dy(d, o16, dyt, yh + k * d->t * o16, d->tp * o16);
    }
    for (int xi = 0; xi < 16; xi++)
        direct_dw_tiles(yh + xi * d->tp * o16, o16, v + xi * d->tp, off, d->c, n * d->t,
                        ghat + xi * d->c * o16);
#else
    (void)d, (void)off, (void)o16, (void)src, (void)dy, (void)n, (void)buf, (void)ghat;
    INVAR_ASSERT(!"the Winograd path needs AVX2 and FMA");
#endif
}

/* w->grad (O, C, 3, 3) += G^T ghat G, ghat summed over the slices' partials in a fixed order. */
static void wino_dw_finish(const float *parts, int n_parts, int64_t o, int64_t c, int64_t o16,
                           float *dw)
{
    const int64_t part = 16 * c * o16;
    for (int64_t oc = 0; oc < o; oc++)
        for (int64_t ch = 0; ch < c; ch++) {
            float gh[4][4];
            for (int xi = 0; xi < 16; xi++) {
                float acc = 0.0f;
                for (int t = 0; t < n_parts; t++)
                    acc += parts[t * part + (xi * c + ch) * o16 + oc];
                gh[xi / 4][xi % 4] = acc;
            }
            double r[3][4]; /* G^T ghat */
            for (int jj = 0; jj < 4; jj++) {
                r[0][jj] = gh[0][jj] + 0.5 * (gh[1][jj] + gh[2][jj]);
                r[1][jj] = 0.5 * (gh[1][jj] - gh[2][jj]);
                r[2][jj] = 0.5 * (gh[1][jj] + gh[2][jj]) + gh[3][jj];
            }
            float *g = dw + (oc * c + ch) * 9;
            for (int ky = 0; ky < 3; ky++) { /* (G^T ghat) G */
                g[ky * 3 + 0] += (float)(r[ky][0] + 0.5 * (r[ky][1] + r[ky][2]));
                g[ky * 3 + 1] += (float)(0.5 * (r[ky][1] - r[ky][2]));
                g[ky * 3 + 2] += (float)(0.5 * (r[ky][1] + r[ky][2]) + r[ky][3]);
            }
        }
}

/* Everything a direct pass needs, shared by the threads; bufs are per thread. */
struct direct_job {
    const struct direct_geom *fg, *bg; /* forward geometry; dx's (backward) or NULL */
    const int32_t *foff, *boff;
    const float *wpk, *wtpk; /* packed w (forward) and flipped w^T (dx), (or4/4, K, 4) */
    const struct wino_geom *fw, *bw; /* forward's or dx's Winograd geometry, or NULL */
    const int32_t *fwoff, *bwoff;
    const float *wu, *wtu; /* their packed transformed kernels */
    const struct wino_geom *dww; /* dw's Winograd geometry (the forward's), or NULL */
    const int32_t *dwwoff;
    const float *x, *bias;   /* (N, C, H, W), (O) or NULL */
    float *y;                /* forward output (N, O, OH, OW) */
    const float *dy;         /* backward: (N, O, OH, OW) */
    float *dx, *dw;          /* backward: x->grad or NULL; per-thread dw partials or NULL */
    int dx_fresh;            /* dx is uninitialised: write it (else add to it) */
    float *bufs[OPS_THREADS]; /* per slice */
    size_t buf_floats;
};

/* dy's transposed rows are padded to whole dw tiles; the padding stays zero. */
static int64_t direct_o16(const struct direct_geom *f)
{
    return (f->o + DIR_DO - 1) / DIR_DO * DIR_DO;
}

/* The per-thread scratch: forward [xp | yf]; backward [xp | dyt | dyp | dxf]. */
static size_t direct_buf_floats(const struct direct_job *j)
{
    const struct direct_geom *f = j->fg, *b = j->bg;
    if (!j->dy)
        return j->fw ? wino_buf_floats(j->fw) : (size_t)(f->xp_len + f->or4 * f->qr);
    size_t n = 0;
    if (j->dw)
        n += j->dww ? wino_dw_buf_floats(j->dww, direct_o16(f))
                    : (size_t)(f->xp_len + f->q * direct_o16(f));
    if (j->dx)
        n += j->bw ? wino_buf_floats(j->bw) : (size_t)(b->xp_len + b->or4 * b->qr);
    return n;
}

/* Images [lo, hi) of one of ops_parallel_for's fixed slices, with slice t's buffers. */
static void direct_forward_slice(void *arg, int t, int64_t lo, int64_t hi)
{
    const struct direct_job *j = arg;
    const struct direct_geom *d = j->fg;
    if (j->fw) {
        memset(j->bufs[t], 0, wino_zero_floats(j->fw) * sizeof(float));
        for (int64_t i = lo; i < hi; i += j->fw->g)
            wino_group(j->fw, j->fwoff, j->wu, j->x + i * d->c * d->h * d->w,
                       hi - i < j->fw->g ? hi - i : j->fw->g, j->bufs[t],
                       j->y + i * d->o * d->oh * d->ow, j->bias, 0);
        return;
    }
    float *xp = j->bufs[t], *yf = xp + d->xp_len;
    memset(xp, 0, (size_t)d->xp_len * sizeof *xp);
    for (int64_t i = lo; i < hi; i++) {
        direct_pad(d, xp, j->x + i * d->c * d->h * d->w);
        direct_image(d, j->foff, j->wpk, xp, yf, j->y + i * d->o * d->oh * d->ow, j->bias, 0);
    }
}

static void direct_backward_slice(void *arg, int t, int64_t lo, int64_t hi)
{
    const struct direct_job *j = arg;
    const struct direct_geom *f = j->fg, *b = j->bg;
    float *p = j->bufs[t];
    float *xp = NULL, *dyt = NULL, *dyp = NULL, *dxf = NULL;
    const int64_t o16 = direct_o16(f);
    if (j->dw && j->dww) {
        xp = p, p += wino_dw_buf_floats(j->dww, o16);
        memset(xp, 0, (size_t)(p - xp) * sizeof *p);
    } else if (j->dw) {
        xp = p, dyt = xp + f->xp_len, p = dyt + f->q * o16;
        memset(xp, 0, (size_t)(p - xp) * sizeof *p);
    }
    if (j->dx && j->bw) {
        dyp = p; /* Winograd scratch */
        memset(dyp, 0, wino_zero_floats(j->bw) * sizeof *p);
    } else if (j->dx) {
        dyp = p, dxf = dyp + b->xp_len;
        memset(dyp, 0, (size_t)b->xp_len * sizeof *p);
    }
    /* (K, o16), or Winograd's (16, C, o16) */
    const int64_t dw_part = j->dww ? 16 * f->c * o16 : f->k * o16;
    float *dwt = j->dw ? j->dw + (int64_t)t * dw_part : NULL;
    if (dwt)
        memset(dwt, 0, (size_t)dw_part * sizeof *dwt);
    const int64_t img_in = f->c * f->h * f->w, img_out = f->o * f->oh * f->ow;
    /* dw's and dx's Winograd planes are the same size: the same groups */
    const int64_t gs = j->dww ? j->dww->g : j->bw ? j->bw->g : 1;
    for (int64_t i0 = lo; i0 < hi; i0 += gs) {
        const int64_t n = hi - i0 < gs ? hi - i0 : gs;
        if (dwt && j->dww)
            wino_dw_group(j->dww, j->dwwoff, o16, j->x + i0 * img_in, j->dy + i0 * img_out, n,
                          xp, dwt);
        if (j->dx && j->bw)
            wino_group(j->bw, j->bwoff, j->wtu, j->dy + i0 * img_out, n, dyp,
                       j->dx + i0 * img_in, NULL, !j->dx_fresh);
        for (int64_t i = i0; i < i0 + n; i++) {
            const float *dy = j->dy + i * img_out; // (O, OH, OW)
            if (dwt && !j->dww) {
                direct_pad(f, xp, j->x + i * img_in);
                grid_planes(dyt, dy, f->o, f->oh, f->ow, f->wp, o16);
                direct_dw_image(f, j->foff, xp, dyt, o16, dwt);
            }
            if (j->dx && !j->bw) {
                direct_pad(b, dyp, dy);
                direct_image(b, j->boff, j->wtpk, dyp, dxf, j->dx + i * img_in, NULL,
                             !j->dx_fresh);
            }
        }
    }
}

/* w (O, C, KH, KW) packed as (or4/4, K, 4): tile ob's 4 weights of tap j side by side; rows
 * past O are zero. flip: the dx kernel, (C, O*KH*KW) with the taps reversed. The packing is
 * kept in the graph (graph_memo): a step's other views, through the same layer with the same
 * weights, take it instead of packing again. */
static float *direct_pack(struct invar_graph *g, const float *w, int64_t o, int64_t c, int64_t kh,
                          int64_t kw, int flip)
{
    const int64_t rows = flip ? c : o, k = (flip ? o : c) * kh * kw, kk = kh * kw;
    const int64_t r4 = (rows + DIR_MR - 1) / DIR_MR * DIR_MR;
    const int64_t tag[4] = {flip, o, c, kh * 16 + kw}; /* kind, shape */
    const size_t w_bytes = (size_t)(o * c * kk) * sizeof(float);
    float *p = graph_memo_find(g, w, w_bytes, tag);
    if (p)
        return p;
    p = graph_alloc(g, (size_t)(r4 * k) * sizeof(float));
    for (int64_t r = 0; r < r4; r++)
        for (int64_t j = 0; j < k; j++) {
            float v = 0.0f;
            if (r < rows && !flip)
                v = w[r * k + j];
            else if (r < rows) /* j = (o, tap): w[o][r][kk-1-tap] */
                v = w[((j / kk) * c + r) * kk + kk - 1 - j % kk];
            p[((r / DIR_MR) * k + j) * DIR_MR + r % DIR_MR] = v;
        }
    graph_memo_put(g, w, w_bytes, tag, p);
    return p;
}

/* Whether a stride-1 layer of this shape takes the direct path: wide planes, and narrow ones
 * whose forward goes through Winograd (its blocks from several images share a GEMM). */
static int conv_direct_ok(const struct conv_shape *s)
{
    const struct im2col_geom *q = &s->fwd;
    if (!CONV_HAVE_DIRECT || q->stride != 1 || conv_direct_mode < 0)
        return 0;
    return conv_direct_mode > 0 || q->ow >= CONV_DIRECT_MIN_OW ||
           wino_shape_ok(q->c, q->kh, q->kw, q->ph, q->pw);
}

static void conv_forward_direct(struct invar_graph *g, const struct conv_shape *s,
                                const struct invar_tensor *x, const struct invar_tensor *w,
                                const struct invar_tensor *b, struct invar_tensor *y)
{
    const struct im2col_geom *q = &s->fwd;
    struct direct_geom d;
    direct_geom_init(&d, q->c, q->h, q->w, s->o, q->kh, q->kw, q->ph, q->pw);
    struct direct_job j = {.fg = &d, .x = x->data, .bias = b ? b->data : NULL, .y = y->data};
    struct wino_geom fw;
    if (wino_shape_ok(q->c, q->kh, q->kw, q->ph, q->pw)) {
        wino_geom_init(&fw, q->c, q->h, q->w, s->o);
        j.fw = &fw;
        j.fwoff = wino_offsets(g, &fw);
        j.wu = wino_pack(g, w->data, s->o, q->c, 0);
    } else {
        int32_t *off = graph_alloc(g, (size_t)d.k * sizeof *off);
        direct_offsets(&d, off);
        j.foff = off;
        j.wpk = direct_pack(g, w->data, s->o, q->c, q->kh, q->kw, 0);
    }
    j.buf_floats = direct_buf_floats(&j);
    for (int t = 0; t < OPS_THREADS; t++)
        j.bufs[t] = graph_alloc(g, j.buf_floats * sizeof(float));
    ops_parallel_for(direct_forward_slice, &j, s->n, s->n * s->o * d.q * d.k);
}

static void conv_backward_direct(struct invar_graph *g, const struct conv_shape *s,
                                 struct invar_tensor *x, struct invar_tensor *w, const float *dy,
                                 int need_dx, int need_dw, int dx_fresh)
{
    const struct im2col_geom *q = &s->fwd, *bq = &s->bwd;
    struct direct_geom f, bk;
    direct_geom_init(&f, q->c, q->h, q->w, s->o, q->kh, q->kw, q->ph, q->pw);
    direct_geom_init(&bk, s->o, q->oh, q->ow, q->c, q->kh, q->kw, bq->ph, bq->pw);
    struct direct_job j = {.fg = &f, .bg = &bk, .x = x->data, .dy = dy};
    const int64_t o16 = direct_o16(&f);
    struct wino_geom dww; /* per-thread dw partials: (16, C, o16) for Winograd, else (K, o16) */
    if (need_dw && wino_shape_ok(q->c, q->kh, q->kw, q->ph, q->pw)) {
        wino_geom_init(&dww, q->c, q->h, q->w, s->o);
        j.dww = &dww;
        j.dwwoff = wino_offsets(g, &dww);
        j.dw = graph_alloc(g, (size_t)(OPS_THREADS * 16 * f.c * o16) * sizeof(float));
    } else if (need_dw) {
        int32_t *off = graph_alloc(g, (size_t)f.k * sizeof *off);
        direct_offsets(&f, off);
        j.foff = off;
        j.dw = graph_alloc(g, (size_t)(OPS_THREADS * f.k * o16) * sizeof(float));
    }
    struct wino_geom bw;
    if (need_dx && wino_shape_ok(s->o, q->kh, q->kw, bq->ph, bq->pw)) {
        wino_geom_init(&bw, s->o, q->oh, q->ow, q->c);
        j.bw = &bw;
        j.bwoff = wino_offsets(g, &bw);
        j.wtu = wino_pack(g, w->data, s->o, q->c, 1);
    } else if (need_dx) {
        int32_t *boff = graph_alloc(g, (size_t)bk.k * sizeof *boff);
        direct_offsets(&bk, boff);
        j.boff = boff;
        j.wtpk = direct_pack(g, w->data, s->o, q->c, q->kh, q->kw, 1);
    }
    if (need_dx)
        j.dx = x->grad, j.dx_fresh = dx_fresh;
    j.buf_floats = direct_buf_floats(&j);
    for (int t = 0; t < OPS_THREADS; t++)
        j.bufs[t] = graph_alloc(g, j.buf_floats * sizeof(float));
    ops_parallel_for(direct_backward_slice, &j, s->n, s->n * s->o * f.q * f.k * (need_dx + need_dw));
    /* the partials in a fixed order, whoever finished first, back to (O, K) */
    if (need_dw && j.dww) {
        wino_dw_finish(j.dw, OPS_THREADS, f.o, f.c, o16, w->grad);
        return;
    }
    for (int64_t o = 0; need_dw && o < f.o; o++)
        for (int64_t k = 0; k < f.k; k++) {
            float acc = 0.0f;
            for (int t = 0; t < OPS_THREADS; t++)
                acc += j.dw[(t * f.k + k) * o16 + o];
            w->grad[o * f.k + k] += acc;
        }
}

static void conv_backward(struct invar_graph *g, struct invar_node *node)
{
    const struct conv_ctx *ctx = node->ctx;
    const struct conv_shape *s = &ctx->s;
    const struct im2col_geom *q = &s->fwd;
    struct invar_tensor *x = node->in[0], *w = node->in[1];
    struct invar_tensor *b = node->n_in > 2 ? node->in[2] : NULL;
    const float *dy = node->out->grad; // (N, O, OH, OW)
    const int64_t ohw = q->oh * q->ow, hw = q->h * q->w;
    const int64_t img_in = q->c * hw, img_out = s->o * ohw;

    if (b && b->requires_grad && b->grad) {
        const struct conv_job job = {.dst = b->grad, .src = dy, .nb = s->n, .o = s->o, .sp = ohw};
        conv_parallel(bias_grad_channels, &job, s->o, s->n * img_out);
    }
    const int need_dx = x->requires_grad && x->grad, need_dw = w->requires_grad && w->grad;
    if (!need_dx && !need_dw)
        return;
    const int dx_fresh = (int)(node->fresh & 1);
    if (ctx->direct && (!need_dx || s->dx_gemm)) {
        conv_backward_direct(g, s, x, w, dy, need_dx, need_dw, dx_fresh);
        return;
    }
    if (need_dx && dx_fresh) /* only the direct path overwrites; the others add */
        memset(x->grad, 0, (size_t)x->numel * sizeof(float));

    const int64_t m = s->chunk;
    const int need_dyc = need_dw || (need_dx && !s->dx_gemm);
    float *dyc = need_dyc ? graph_alloc(g, (size_t)(s->o * m * ohw) * sizeof(float)) : NULL;
    float *col = need_dw && !ctx->col ? graph_alloc(g, (size_t)(s->k * m * ohw) * sizeof(float))
                                      : NULL; // (K, P)
    float *dcol = NULL, *dxc = NULL, *wt = NULL;
    if (need_dx && s->dx_gemm) {
        dcol = graph_alloc(g, (size_t)(s->kt * m * hw) * sizeof(float)); // (O*KH*KW, nb*H*W)
        dxc = graph_alloc(g, (size_t)(q->c * m * hw) * sizeof(float));   // (C, nb*H*W)
        wt = graph_alloc(g, (size_t)(q->c * s->kt) * sizeof(float));     // (C, O*KH*KW)
        const int64_t kk = q->kh * q->kw;
        for (int64_t o = 0; o < s->o; o++)
            for (int64_t c = 0; c < q->c; c++)
                for (int64_t r = 0; r < kk; r++)
                    wt[c * s->kt + o * kk + r] = w->data[(o * q->c + c) * kk + kk - 1 - r];
    } else if (need_dx) {
        dcol = graph_alloc(g, (size_t)(s->k * m * ohw) * sizeof(float)); // (K, P)
    }
    for (int64_t n0 = 0; n0 < s->n; n0 += m) {
        const int64_t nb = s->n - n0 < m ? s->n - n0 : m, p = nb * ohw;
        /* the chunk's memory-bound preparation, as one parallel section */
        struct conv_task prep[3];
        int n_prep = 0;
        int64_t work = 0;
        if (need_dyc) {
            prep[n_prep++] = (struct conv_task){
                gather_planes,
                {.dst = dyc, .src = dy + n0 * img_out, .nb = nb, .o = s->o, .sp = ohw},
                nb * s->o};
            work += nb * img_out;
        }
        if (need_dw && !ctx->col) {
            prep[n_prep++] = (struct conv_task){
                im2col_rows, {.dst = col, .src = x->data + n0 * img_in, .q = q, .nb = nb}, s->k};
            work += s->k * p;
        }
        if (need_dx && s->dx_gemm) {
            prep[n_prep++] =
                (struct conv_task){im2col_rows,
                                   {.dst = dcol, .src = dy + n0 * img_out, .q = &s->bwd, .nb = nb},
                                   s->kt};
            work += s->kt * nb * hw;
        }
        conv_run(prep, n_prep, work);
        if (need_dw) {
            const float *colc = ctx->col ? ctx->col + s->k * n0 * ohw : col;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->o, (int)s->k, (int)p, 1.0f,
                        dyc, (int)p, colc, (int)p, 1.0f, w->grad, (int)s->k);
        }
        if (need_dx && s->dx_gemm) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)q->c, (int)(nb * hw),
                        (int)s->kt, 1.0f, wt, (int)s->kt, dcol, (int)(nb * hw), 0.0f, dxc,
                        (int)(nb * hw));
            conv_scatter_add(x->grad + n0 * img_in, dxc, nb, q->c, hw);
        } else if (need_dx) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)s->k, (int)p, (int)s->o, 1.0f,
                        w->data, (int)s->k, dyc, (int)p, 0.0f, dcol, (int)p);
            conv_col2im(x->grad + n0 * img_in, dcol, nb, q);
        }
    }
}

static float *conv_forward_im2col(struct invar_graph *g, const struct conv_shape *sp,
                                  const struct invar_tensor *x, const struct invar_tensor *w,
                                  const struct invar_tensor *b, struct invar_tensor *y, int record)
{
    const struct conv_shape s = *sp;
    const struct im2col_geom *q = &s.fwd;
    const int64_t ohw = q->oh * q->ow, img_in = q->c * q->h * q->w, img_out = s.o * ohw;
    const size_t col_all = (size_t)(s.k * s.n * ohw) * sizeof(float);
    /* dw needs col again in backward; keep it when it is cheap to hold */
    const int keep = record && w->requires_grad && col_all <= conv_keep_bytes;
    float *kept = keep ? graph_alloc(g, col_all) : NULL;
    float *col = keep ? NULL : graph_alloc(g, (size_t)(s.k * s.chunk * ohw) * sizeof(float));
    float *yc = graph_alloc(g, (size_t)(s.o * s.chunk * ohw) * sizeof(float)); // (O, P)
    for (int64_t n0 = 0; n0 < s.n; n0 += s.chunk) {
        const int64_t nb = s.n - n0 < s.chunk ? s.n - n0 : s.chunk, p = nb * ohw;
        float *colc = keep ? kept + s.k * n0 * ohw : col; // (K, P)
        conv_im2col(colc, x->data + n0 * img_in, nb, q);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s.o, (int)p, (int)s.k, 1.0f,
                    w->data, (int)s.k, colc, (int)p, 0.0f, yc, (int)p);
        const struct conv_job job = {.dst = y->data + n0 * img_out,
                                     .src = yc,
                                     .bias = b ? b->data : NULL,
                                     .nb = nb,
                                     .o = s.o,
                                     .sp = ohw};
        conv_parallel(scatter_bias_planes, &job, nb * s.o, nb * img_out);
    }
    return kept;
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
    const struct im2col_geom *q = &s.fwd;
    struct invar_tensor *y = graph_new(g, 4, (int64_t[]){s.n, s.o, q->oh, q->ow});

    struct invar_tensor *in[3] = {x, w, b};
    const int n_in = b ? 3 : 2;
    const int record = graph_needs_grad(g, in, n_in);
    const int direct = conv_direct_ok(&s);
    float *kept = NULL;
    if (direct)
        conv_forward_direct(g, &s, x, w, b, y);
    else
        kept = conv_forward_im2col(g, &s, x, w, b, y, record);

    struct invar_node *node =
        graph_record(g, "conv2d", y, in, n_in, conv_backward, sizeof(struct conv_ctx));
    if (node) {
        struct conv_ctx *ctx = node->ctx;
        node->may_overwrite = direct && s.dx_gemm; /* the direct dx writes every element */
        ctx->s = s;
        ctx->col = kept;
        ctx->direct = direct;
    }
    return y;
}
