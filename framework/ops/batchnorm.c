/* Batch-norm over dim 1 of (N, C) or (N, C, H, W), training and eval modes, alone or fused with
 * the ReLU that follows it in every conv-BN-ReLU unit.
 *
 * Per channel c, over its m = N*H*W values:
 *     xhat = (x - mean) * istd,   istd = 1 / sqrt(var + eps),   y = gamma * xhat + beta
 *     fused: y = max(gamma * xhat + beta, 0)
 * Training uses the batch's mean and biased variance and moves the running statistics toward
 * the batch's (unbiased variance, PyTorch's convention); eval uses the running statistics, which
 * are then constants, so backward is a per-channel scale.
 *
 * Speed. Batch-norm is memory-bound: the work is passes over x (and dy). Images are NCHW, so a
 * channel is N planes of S = H*W contiguous floats. Statistics take one pass over memory: each
 * plane's sum and centred sum of squares are accumulated in 16 float lanes (independent chains
 * the compiler turns into vector adds; the plane's second pass reads L1), and planes are merged
 * in double with Chan's pairwise update, so the variance keeps float accuracy at any batch
 * size and any offset. Backward sums the same way. The fused op saves the ReLU's pass, its
 * output and its gradient buffer, and the BN output's gradient buffer (a zeroing pass). Channels
 * are split into fixed slices over two threads (parallel.h): a channel's numbers never depend on
 * which thread ran it. (N, C) inputs (S = 1) take a row-wise path with per-channel double sums.
 */
#include <math.h>
#include <string.h>

#include "graph_internal.h"
#include "parallel.h"

struct bn_ctx {
    float *mean; /* (splits, C) the statistics the forward used */
    float *istd; /* (splits, C) */
    int training, relu, splits;
};

/* x as (N, C, S): S = H*W, or 1 for (N, C). */
static int64_t bn_spatial(const struct invar_tensor *x)
{
    return x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
}

/* Sums run in 16 float lanes, two 8-float vectors (GCC/Clang vector types: plain elementwise
 * float arithmetic, no reassociation), over a group of whole planes of about BN_GROUP values:
 * each plane's full vectors go to the lanes and its ragged end to 16 tail lanes, and the group's
 * lanes are then summed in double. Lanes are independent chains that vectorise; groups keep
 * every float partial short (float accuracy) and the per-group costs amortised over small
 * planes (7x7); and the grouping is a function of the shape alone, so results are too. */
#define BN_LANES 16
typedef float bn_vec __attribute__((vector_size(32), aligned(4)));
typedef int32_t bn_ivec __attribute__((vector_size(32), aligned(4)));

struct bn_lanes {
    bn_vec a, b;
    float tail[BN_LANES];
};

static inline bn_vec vload(const float *p)
{
    bn_vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void lanes_zero(struct bn_lanes *l)
{
    memset(l, 0, sizeof *l);
}

static double lanes_total(const struct bn_lanes *l)
{
    float v[BN_LANES];
    memcpy(v, &l->a, sizeof l->a);
    memcpy(v + 8, &l->b, sizeof l->b);
    double s = 0;
    for (int k = 0; k < BN_LANES; k++)
        s += (double)v[k] + (double)l->tail[k];
    return s;
}

/* s += p[0..n) */
static inline void lanes_add(struct bn_lanes *restrict s, const float *restrict p, int64_t n)
{
    bn_vec a = s->a, b = s->b;
    int64_t j = 0;
    for (; j + BN_LANES <= n; j += BN_LANES) {
        a += vload(p + j);
        b += vload(p + j + 8);
    }
    s->a = a, s->b = b;
    for (int64_t k = 0; j + k < n; k++)
        s->tail[k] += p[j + k];
}

/* d += p - c, d2 += (p - c)^2 over p[0..n) */
static inline void lanes_add_centred(struct bn_lanes *restrict d, struct bn_lanes *restrict d2,
                                     const float *restrict p, int64_t n, float c)
{
    bn_vec a1 = d->a, b1 = d->b, a2 = d2->a, b2 = d2->b;
    int64_t j = 0;
    for (; j + BN_LANES <= n; j += BN_LANES) {
        const bn_vec da = vload(p + j) - c, db = vload(p + j + 8) - c;
        a1 += da, b1 += db;
        a2 += da * da, b2 += db * db;
    }
    d->a = a1, d->b = b1, d2->a = a2, d2->b = b2;
    for (int64_t k = 0; j + k < n; k++) {
        const float v = p[j + k] - c;
        d->tail[k] += v;
        d2->tail[k] += v * v;
    }
}

/* The gradient reaching the BN output: dy, or dy where the ReLU passed (y > 0). */
static inline float bn_gate(float dy, float y, int relu)
{
    return relu ? (y > 0.0f ? dy : 0.0f) : dy;
}

static inline bn_vec vgate(const float *dy, const float *y, int relu)
{
    const bn_vec g = vload(dy);
    if (!relu)
        return g;
    const bn_vec zero = {0};
    return (bn_vec)((bn_ivec)(vload(y) > zero) & (bn_ivec)g);
}

/* sg += g, sgx += g * (x - mu) over a plane, g = bn_gate(dy, y) */
static inline void lanes_add_grad(struct bn_lanes *restrict sg, struct bn_lanes *restrict sgx,
                                  const float *restrict dy, const float *restrict y,
                                  const float *restrict x, int64_t n, float mu, int relu)
{
    bn_vec a1 = sg->a, b1 = sg->b, a2 = sgx->a, b2 = sgx->b;
    int64_t j = 0;
    for (; j + BN_LANES <= n; j += BN_LANES) {
        const bn_vec ga = vgate(dy + j, y + j, relu), gb = vgate(dy + j + 8, y + j + 8, relu);
        a1 += ga, b1 += gb;
        a2 += ga * (vload(x + j) - mu), b2 += gb * (vload(x + j + 8) - mu);
    }
    sg->a = a1, sg->b = b1, sgx->a = a2, sgx->b = b2;
    for (int64_t k = 0; j + k < n; k++) {
        const float g = bn_gate(dy[j + k], y[j + k], relu);
        sg->tail[k] += g;
        sgx->tail[k] += g * (x[j + k] - mu);
    }
}

/* Per-channel state of one call, in the step arena. */
struct bn_chan {
    struct bn_lanes l1, l2; /* the current group's sums */
    double cnt, mu, m2;     /* forward: statistics merged so far; backward: -, sum g, sum g*x */
    float gm;               /* forward: the current group's mean */
    float scale, shift;     /* forward: y = x*scale + shift; backward: scale, a */
    float sb;               /* backward: dx = scale*(g - a) - sb*(x - mu) */
};

/* Everything one call needs; the slices read it and write only their channels. */
struct bn_job {
    const float *x;            // (N, C, S)
    float *y;                  // (N, C, S)
    const float *dy;           // (N, C, S) backward
    float *dx;                 // (N, C, S) backward, or NULL
    const float *gamma, *beta; // (C)
    float *dgamma, *dbeta;     // (C) or NULL
    float *mean, *istd;        // (C)
    float *rmean, *rvar;       // (C) running statistics or NULL
    struct bn_chan *ch;        // (C) scratch
    float momentum, eps;
    int64_t n, c, sp;
    int64_t group; /* images per group */
    int training, relu;
    int dx_fresh;  /* backward: dx is uninitialised, write it (else add to it) */
};

/* Images per group: about BN_GROUP_BYTES of the whole batch's channels, so that a slice's share
 * of a group stays in its core's L2 between the two passes over it, and at most BN_GROUP_MAX
 * values per channel, so that float partial sums stay short. A function of the shape alone. */
#define BN_GROUP_BYTES ((int64_t)256 << 10)
#define BN_GROUP_MAX 4096
static int64_t bn_group(int64_t c, int64_t sp)
{
    int64_t g = BN_GROUP_BYTES / (c * sp * (int64_t)sizeof(float));
    if (g > BN_GROUP_MAX / sp)
        g = BN_GROUP_MAX / sp;
    return g < 1 ? 1 : g;
}

/* Planes are visited image by image, channels [lo, hi) inside each image: the slice streams
 * through memory in order (a channel's planes lie C*S floats apart, and for 7x7 planes visiting
 * them channel by channel made every plane a cache miss). */
#define BN_PLANE(base, i, ch) ((base) + ((i)*j->c + (ch)) * j->sp)

/* The batch statistics of channels [lo, hi): per group of images, the sums, then the sums of
 * squares around each channel's group mean (the group is still in L2), merged across groups in
 * double with Chan's pairwise update. */
static void bn_stats(const struct bn_job *j, int64_t lo, int64_t hi)
{
    for (int64_t ch = lo; ch < hi; ch++)
        j->ch[ch].cnt = j->ch[ch].mu = j->ch[ch].m2 = 0;
    for (int64_t i0 = 0; i0 < j->n; i0 += j->group) {
        const int64_t i1 = i0 + j->group < j->n ? i0 + j->group : j->n;
        const double gn = (double)((i1 - i0) * j->sp);
        for (int64_t ch = lo; ch < hi; ch++)
            lanes_zero(&j->ch[ch].l1), lanes_zero(&j->ch[ch].l2);
        for (int64_t i = i0; i < i1; i++)
            for (int64_t ch = lo; ch < hi; ch++)
                lanes_add(&j->ch[ch].l1, BN_PLANE(j->x, i, ch), j->sp);
        for (int64_t ch = lo; ch < hi; ch++) {
            j->ch[ch].gm = (float)(lanes_total(&j->ch[ch].l1) / gn);
            lanes_zero(&j->ch[ch].l1);
        }
        for (int64_t i = i0; i < i1; i++)
            for (int64_t ch = lo; ch < hi; ch++)
                lanes_add_centred(&j->ch[ch].l1, &j->ch[ch].l2, BN_PLANE(j->x, i, ch), j->sp,
                                  j->ch[ch].gm);
        for (int64_t ch = lo; ch < hi; ch++) {
            struct bn_chan *q = &j->ch[ch];
            /* centred on the group's exact mean: gm + lin/gn, with M2 = sq - lin^2/gn */
            const double lin = lanes_total(&q->l1), sq = lanes_total(&q->l2);
            const double gmean = (double)q->gm + lin / gn, gm2 = sq - lin * lin / gn;
            const double tot = q->cnt + gn, delta = gmean - q->mu;
            q->mu += delta * gn / tot;
            q->m2 += gm2 + delta * delta * q->cnt * gn / tot;
            q->cnt = tot;
        }
    }
}

static void bn_forward_channels(void *arg, int slice, int64_t lo, int64_t hi)
{
    (void)slice;
    const struct bn_job *j = arg;
    const int64_t m = j->n * j->sp;
    if (j->training)
        bn_stats(j, lo, hi);
    for (int64_t ch = lo; ch < hi; ch++) {
        struct bn_chan *q = &j->ch[ch];
        float mu, var;
        if (j->training) {
            const double m2 = q->m2 > 0 ? q->m2 : 0;
            mu = (float)q->mu, var = (float)(m2 / (double)m);
            if (j->rmean)
                j->rmean[ch] = (1 - j->momentum) * j->rmean[ch] + j->momentum * mu;
            if (j->rvar)
                j->rvar[ch] =
                    (1 - j->momentum) * j->rvar[ch] + j->momentum * (float)(m2 / (double)(m - 1));
        } else {
            mu = j->rmean[ch], var = j->rvar[ch];
        }
        j->mean[ch] = mu;
        j->istd[ch] = 1.0f / sqrtf(var + j->eps);
        q->scale = j->gamma[ch] * j->istd[ch];
        q->shift = j->beta[ch] - mu * q->scale;
    }
    for (int64_t i = 0; i < j->n; i++)
        for (int64_t ch = lo; ch < hi; ch++) {
            const float *restrict xs = BN_PLANE(j->x, i, ch); // (S)
            float *restrict ys = BN_PLANE(j->y, i, ch);       // (S)
            const float scale = j->ch[ch].scale, shift = j->ch[ch].shift;
            if (j->relu)
                for (int64_t k = 0; k < j->sp; k++) {
                    const float v = xs[k] * scale + shift;
                    ys[k] = v > 0.0f ? v : 0.0f;
                }
            else
                for (int64_t k = 0; k < j->sp; k++)
                    ys[k] = xs[k] * scale + shift;
        }
}

static void bn_backward_channels(void *arg, int slice, int64_t lo, int64_t hi)
{
    (void)slice;
    const struct bn_job *j = arg;
    const int64_t m = j->n * j->sp;
    for (int64_t ch = lo; ch < hi; ch++)
        j->ch[ch].mu = j->ch[ch].m2 = 0;
    for (int64_t i0 = 0; i0 < j->n; i0 += j->group) {
        const int64_t i1 = i0 + j->group < j->n ? i0 + j->group : j->n;
        for (int64_t ch = lo; ch < hi; ch++)
            lanes_zero(&j->ch[ch].l1), lanes_zero(&j->ch[ch].l2);
        for (int64_t i = i0; i < i1; i++)
            for (int64_t ch = lo; ch < hi; ch++)
                lanes_add_grad(&j->ch[ch].l1, &j->ch[ch].l2, BN_PLANE(j->dy, i, ch),
                               BN_PLANE(j->y, i, ch), BN_PLANE(j->x, i, ch), j->sp, j->mean[ch],
                               j->relu);
        for (int64_t ch = lo; ch < hi; ch++) {
            j->ch[ch].mu += lanes_total(&j->ch[ch].l1);
            j->ch[ch].m2 += lanes_total(&j->ch[ch].l2);
        }
    }
    for (int64_t ch = lo; ch < hi; ch++) {
        struct bn_chan *q = &j->ch[ch];
        const float is = j->istd[ch];
        const double sdy = q->mu, sdyx = q->m2 * is; /* sum g, sum g * xhat */
        if (j->dgamma)
            j->dgamma[ch] += (float)sdyx;
        if (j->dbeta)
            j->dbeta[ch] += (float)sdy;
        /* training: mean and variance depend on x too, which removes the mean of g and the
         * part of g along xhat: dx = scale * (g - a) - scale * is * b * (x - mu) */
        q->scale = j->gamma[ch] * is;
        q->shift = j->training ? (float)(sdy / (double)m) : 0.0f;
        q->sb = j->training ? q->scale * is * (float)(sdyx / (double)m) : 0.0f;
    }
    if (!j->dx)
        return;
    for (int64_t i = 0; i < j->n; i++)
        for (int64_t ch = lo; ch < hi; ch++) {
            const float *restrict xs = BN_PLANE(j->x, i, ch), *restrict dy = BN_PLANE(j->dy, i, ch);
            const float *restrict ys = BN_PLANE(j->y, i, ch);
            float *restrict dx = BN_PLANE(j->dx, i, ch);
            const float scale = j->ch[ch].scale, a = j->ch[ch].shift, sb = j->ch[ch].sb;
            const float mu = j->mean[ch];
            if (j->dx_fresh) {
                if (j->relu)
                    for (int64_t k = 0; k < j->sp; k++) {
                        const float g = ys[k] > 0.0f ? dy[k] : 0.0f;
                        dx[k] = scale * (g - a) - sb * (xs[k] - mu);
                    }
                else
                    for (int64_t k = 0; k < j->sp; k++)
                        dx[k] = scale * (dy[k] - a) - sb * (xs[k] - mu);
            } else {
                if (j->relu)
                    for (int64_t k = 0; k < j->sp; k++) {
                        const float g = ys[k] > 0.0f ? dy[k] : 0.0f;
                        dx[k] += scale * (g - a) - sb * (xs[k] - mu);
                    }
                else
                    for (int64_t k = 0; k < j->sp; k++)
                        dx[k] += scale * (dy[k] - a) - sb * (xs[k] - mu);
            }
        }
}

/* ---- (N, C): rows of channels, per-channel sums in double ------------------------------- */

static void bn_forward_rows(struct invar_graph *g, const struct bn_job *j)
{
    const int64_t n = j->n, c = j->c;
    if (j->training) {
        double *s = graph_alloc(g, (size_t)c * sizeof *s),
               *ss = graph_alloc(g, (size_t)c * sizeof *ss);
        for (int64_t ch = 0; ch < c; ch++)
            s[ch] = ss[ch] = 0;
        for (int64_t i = 0; i < n; i++) /* two passes: the mean, then squares around it */
            for (int64_t ch = 0; ch < c; ch++)
                s[ch] += j->x[i * c + ch];
        for (int64_t ch = 0; ch < c; ch++)
            s[ch] /= (double)n;
        for (int64_t i = 0; i < n; i++)
            for (int64_t ch = 0; ch < c; ch++) {
                const double d = j->x[i * c + ch] - s[ch];
                ss[ch] += d * d;
            }
        for (int64_t ch = 0; ch < c; ch++) {
            j->mean[ch] = (float)s[ch];
            const float var = (float)(ss[ch] / (double)n);
            if (j->rmean)
                j->rmean[ch] = (1 - j->momentum) * j->rmean[ch] + j->momentum * j->mean[ch];
            if (j->rvar)
                j->rvar[ch] = (1 - j->momentum) * j->rvar[ch] +
                              j->momentum * (float)(ss[ch] / (double)(n - 1));
            j->istd[ch] = 1.0f / sqrtf(var + j->eps);
        }
    } else {
        for (int64_t ch = 0; ch < c; ch++) {
            j->mean[ch] = j->rmean[ch];
            j->istd[ch] = 1.0f / sqrtf(j->rvar[ch] + j->eps);
        }
    }
    float *scale = graph_alloc(g, (size_t)c * sizeof *scale); // (C)
    float *shift = graph_alloc(g, (size_t)c * sizeof *shift); // (C)
    for (int64_t ch = 0; ch < c; ch++) {
        scale[ch] = j->gamma[ch] * j->istd[ch];
        shift[ch] = j->beta[ch] - j->mean[ch] * scale[ch];
    }
    for (int64_t i = 0; i < n; i++) {
        const float *restrict xr = j->x + i * c;
        float *restrict yr = j->y + i * c;
        for (int64_t ch = 0; ch < c; ch++) {
            const float v = xr[ch] * scale[ch] + shift[ch];
            yr[ch] = j->relu ? (v > 0.0f ? v : 0.0f) : v;
        }
    }
}

static void bn_backward_rows(struct invar_graph *g, const struct bn_job *j)
{
    const int64_t n = j->n, c = j->c;
    double *sg = graph_alloc(g, (size_t)c * sizeof *sg),
           *sgx = graph_alloc(g, (size_t)c * sizeof *sgx);
    for (int64_t ch = 0; ch < c; ch++)
        sg[ch] = sgx[ch] = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            const int64_t k = i * c + ch;
            const float gk = bn_gate(j->dy[k], j->y[k], j->relu);
            sg[ch] += gk;
            sgx[ch] += (double)gk * ((j->x[k] - j->mean[ch]) * j->istd[ch]);
        }
    float *a = graph_alloc(g, (size_t)c * sizeof *a), *sb = graph_alloc(g, (size_t)c * sizeof *sb);
    float *scale = graph_alloc(g, (size_t)c * sizeof *scale);
    for (int64_t ch = 0; ch < c; ch++) {
        if (j->dgamma)
            j->dgamma[ch] += (float)sgx[ch];
        if (j->dbeta)
            j->dbeta[ch] += (float)sg[ch];
        scale[ch] = j->gamma[ch] * j->istd[ch];
        a[ch] = j->training ? (float)(sg[ch] / (double)n) : 0.0f;
        sb[ch] = j->training ? scale[ch] * j->istd[ch] * (float)(sgx[ch] / (double)n) : 0.0f;
    }
    if (!j->dx)
        return;
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            const int64_t k = i * c + ch;
            const float gk = bn_gate(j->dy[k], j->y[k], j->relu);
            const float v = scale[ch] * (gk - a[ch]) - sb[ch] * (j->x[k] - j->mean[ch]);
            j->dx[k] = j->dx_fresh ? v : j->dx[k] + v;
        }
}

/* ---- the ops --------------------------------------------------------------------------- */

/* Split batch-norm (invar_graph_set_bn_splits): sub-batch s is images [s*N/G, (s+1)*N/G), a
 * contiguous block of x; each is one ordinary call on that block with its own statistics. */
static int64_t bn_split_offset(const struct invar_tensor *x, int splits, int s)
{
    return x->numel / splits * s;
}

static void batchnorm_backward(struct invar_graph *g, struct invar_node *n)
{
    const struct bn_ctx *ctx = n->ctx;
    struct invar_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2], *y = n->out;
    const int64_t c = x->shape[1];
    for (int s = 0; s < ctx->splits; s++) {
        const int64_t off = bn_split_offset(x, ctx->splits, s);
        struct bn_job j = {
            .x = x->data + off,
            .y = y->data + off,
            .dy = y->grad + off,
            .dx = x->requires_grad ? x->grad + off : NULL,
            .gamma = gamma->data,
            .dgamma = gamma->requires_grad ? gamma->grad : NULL,
            .dbeta = beta->requires_grad ? beta->grad : NULL,
            .mean = ctx->mean + s * c,
            .istd = ctx->istd + s * c,
            .n = x->shape[0] / ctx->splits,
            .c = c,
            .sp = bn_spatial(x),
            .training = ctx->training,
            .relu = ctx->relu,
            .dx_fresh = (int)(n->fresh & 1),
        };
        if (x->ndim == 2) {
            bn_backward_rows(g, &j);
            continue;
        }
        j.ch = graph_alloc(g, (size_t)j.c * sizeof *j.ch);
        j.group = bn_group(j.c, j.sp);
        ops_parallel_for(bn_backward_channels, &j, j.c, 4 * x->numel / ctx->splits);
    }
}

static struct invar_tensor *batchnorm_op(struct invar_graph *g, struct invar_tensor *x,
                                         struct invar_tensor *gamma, struct invar_tensor *beta,
                                         struct invar_tensor *running_mean,
                                         struct invar_tensor *running_var, float momentum,
                                         float eps, int relu)
{
    INVAR_ASSERT((x->ndim == 2 || x->ndim == 4) && invar_tensor_is_contiguous(x));
    const int64_t bn = x->shape[0], c = x->shape[1], sp = bn_spatial(x), m = bn * sp;
    INVAR_ASSERT(gamma && beta && gamma->numel == c && beta->numel == c);
    INVAR_ASSERT(!running_mean || running_mean->numel == c);
    INVAR_ASSERT(!running_var || running_var->numel == c);
    const int training = invar_graph_training(g);
    const int splits = training ? g->bn_splits : 1;
    INVAR_ASSERT(training || (running_mean && running_var));
    if (g->bn_momentum > 0)
        momentum = g->bn_momentum;
    INVAR_ASSERT(bn % splits == 0);
    INVAR_ASSERT(!training || m / splits > 1); /* one value per channel has no variance */

    struct invar_tensor *y = graph_new_like(g, x);
    float *mean = graph_alloc(g, (size_t)(splits * c) * sizeof(float)); // (splits, C)
    float *istd = graph_alloc(g, (size_t)(splits * c) * sizeof(float)); // (splits, C)
    /* With splits, each sub-batch writes its own mean and unbiased variance into bmean/bvar
     * (a running average with momentum 1 from 0 is exactly the batch's statistic), and the
     * running statistics move toward their average over the sub-batches. */
    float *bmean = NULL, *bvar = NULL;
    if (splits > 1 && (running_mean || running_var)) {
        bmean = graph_alloc(g, (size_t)(splits * c) * sizeof(float));
        bvar = graph_alloc(g, (size_t)(splits * c) * sizeof(float));
        memset(bmean, 0, (size_t)(splits * c) * sizeof(float));
        memset(bvar, 0, (size_t)(splits * c) * sizeof(float));
    }
    for (int s = 0; s < splits; s++) {
        const int64_t off = bn_split_offset(x, splits, s);
        struct bn_job j = {
            .x = x->data + off,
            .y = y->data + off,
            .gamma = gamma->data,
            .beta = beta->data,
            .mean = mean + s * c,
            .istd = istd + s * c,
            .rmean = bmean ? bmean + s * c : splits == 1 && running_mean ? running_mean->data : NULL,
            .rvar = bvar ? bvar + s * c : splits == 1 && running_var ? running_var->data : NULL,
            .momentum = bmean ? 1.0f : momentum,
            .eps = eps,
            .n = bn / splits,
            .c = c,
            .sp = sp,
            .training = training,
            .relu = relu,
        };
        if (x->ndim == 2) {
            bn_forward_rows(g, &j);
        } else {
            j.ch = graph_alloc(g, (size_t)c * sizeof *j.ch);
            j.group = bn_group(c, sp);
            ops_parallel_for(bn_forward_channels, &j, c, 2 * x->numel / splits);
        }
    }
    if (bmean)
        for (int64_t ch = 0; ch < c; ch++) {
            double sm = 0, sv = 0;
            for (int s = 0; s < splits; s++)
                sm += bmean[s * c + ch], sv += bvar[s * c + ch];
            if (running_mean)
                running_mean->data[ch] =
                    (1 - momentum) * running_mean->data[ch] + momentum * (float)(sm / splits);
            if (running_var)
                running_var->data[ch] =
                    (1 - momentum) * running_var->data[ch] + momentum * (float)(sv / splits);
        }
    struct invar_tensor *in[3] = {x, gamma, beta};
    struct invar_node *n = graph_record(g, relu ? "batchnorm_relu" : "batchnorm", y, in, 3,
                                        batchnorm_backward, sizeof(struct bn_ctx));
    if (n) {
        n->may_overwrite = 1; /* every element of dx, in every sub-batch */
        struct bn_ctx *ctx = n->ctx;
        *ctx = (struct bn_ctx){mean, istd, training, relu, splits};
    }
    return y;
}

struct invar_tensor *invar_batchnorm(struct invar_graph *g, struct invar_tensor *x,
                                     struct invar_tensor *gamma, struct invar_tensor *beta,
                                     struct invar_tensor *running_mean,
                                     struct invar_tensor *running_var, float momentum, float eps)
{
    return batchnorm_op(g, x, gamma, beta, running_mean, running_var, momentum, eps, 0);
}

struct invar_tensor *invar_batchnorm_relu(struct invar_graph *g, struct invar_tensor *x,
                                          struct invar_tensor *gamma, struct invar_tensor *beta,
                                          struct invar_tensor *running_mean,
                                          struct invar_tensor *running_var, float momentum,
                                          float eps)
{
    return batchnorm_op(g, x, gamma, beta, running_mean, running_var, momentum, eps, 1);
}
