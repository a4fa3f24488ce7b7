/* conv2d: im2col + one sgemm per chunk of images, forward and backward side by side.
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

    struct invar_node *node =
        graph_record(g, "conv2d", y, in, n_in, conv_backward, sizeof(struct conv_ctx));
    if (node) {
        struct conv_ctx *ctx = node->ctx;
        ctx->s = s;
        ctx->col = kept;
    }
    return y;
}
