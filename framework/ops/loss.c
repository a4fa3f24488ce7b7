/* Losses: log_softmax, cross_entropy (fused), mse.
 *
 * Softmax rows are shifted by their maximum before exponentiating, so exp never overflows
 * and the largest term is exactly 1: logits of +-1e4 (or any finite size) stay finite.
 *
 * Cross-entropy over wide rows (instdisc's (256, 60000) logits against the memory bank) is
 * most of a step's non-GEMM time: its rows are split over threads (ops_parallel_for; a row's
 * numbers never depend on the thread) and, with AVX2 and glibc's libmvec, eight expf are
 * computed at once (_ZGVdN8v_expf, within 4 ulp of expf). Sums of exponentials run in float
 * lanes over short blocks and are added up in double, in a fixed order.
 */
#include <math.h>
#include <string.h>

#include "graph_internal.h"
#include "parallel.h"

#if defined(INVAR_HAVE_LIBMVEC) && defined(__AVX2__)
#include <immintrin.h>
#define LOSS_VEC 8
__m256 _ZGVdN8v_expf(__m256 x); /* libmvec */

static inline float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline double hsum8(__m256 v)
{
    float t[8];
    _mm256_storeu_ps(t, v);
    double s = 0;
    for (int k = 0; k < 8; k++)
        s += t[k];
    return s;
}
#else
#define LOSS_VEC 1
#endif

#define LOSS_BLOCK 256 /* values per float partial before it joins the double sum */

/* max_j x[j] (a NaN anywhere reaches the sum below, which then reports it) */
static float row_max(const float *restrict x, int64_t C)
{
    float m = x[0];
    int64_t j = 0;
#if LOSS_VEC == 8
    if (C >= 8) {
        __m256 v = _mm256_loadu_ps(x);
        for (j = 8; j + 8 <= C; j += 8)
            v = _mm256_max_ps(v, _mm256_loadu_ps(x + j));
        m = hmax8(v);
    }
#endif
    for (; j < C; j++)
        m = x[j] > m ? x[j] : m;
    return m;
}

/* sum_j exp(x[j] - m) in double over float blocks */
static double row_sum_exp(const float *restrict x, int64_t C, float m)
{
    double s = 0;
    int64_t j = 0;
#if LOSS_VEC == 8
    const __m256 vm = _mm256_set1_ps(m);
    while (j + 8 <= C) {
        __m256 acc = _mm256_setzero_ps();
        const int64_t end = j + LOSS_BLOCK <= C ? j + LOSS_BLOCK : C;
        for (; j + 8 <= end; j += 8)
            acc = _mm256_add_ps(acc, _ZGVdN8v_expf(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm)));
        s += hsum8(acc);
    }
#endif
    for (; j < C; j++)
        s += expf(x[j] - m);
    return s;
}

/* dx[j] (= or +=) d * exp((x[j] - m) - lse) */
static void row_softmax_grad(float *restrict dx, const float *restrict x, int64_t C, float m,
                             float lse, float d, int fresh)
{
    int64_t j = 0;
#if LOSS_VEC == 8
    const __m256 vm = _mm256_set1_ps(m), vl = _mm256_set1_ps(lse), vd = _mm256_set1_ps(d);
    for (; j + 8 <= C; j += 8) {
        const __m256 e = _ZGVdN8v_expf(
            _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm), vl));
        const __m256 v = _mm256_mul_ps(vd, e);
        _mm256_storeu_ps(dx + j, fresh ? v : _mm256_add_ps(_mm256_loadu_ps(dx + j), v));
    }
#endif
    for (; j < C; j++) {
        const float v = d * expf((x[j] - m) - lse);
        dx[j] = fresh ? v : dx[j] + v;
    }
}

/* Row maximum and log(sum(exp(x - max))), the latter accumulated in double. */
static void row_logsumexp(const float *restrict x, int64_t C, float *max_out, float *lse_out)
{
    const float m = row_max(x, C);
    *max_out = m;
    *lse_out = (float)log(row_sum_exp(x, C, m));
}

/* ---- log_softmax: y (N, C) = x - max - log(sum(exp(x - max))) --------------------------- */

/* dx = dy - softmax * sum(dy), softmax = exp(y). */
static void log_softmax_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    struct invar_tensor *y = n->out;
    const int64_t N = y->shape[0], C = y->shape[1];
    for (int64_t i = 0; i < N; i++) {
        const float *restrict yr = y->data + i * C, *restrict dyr = y->grad + i * C;
        float *restrict dxr = n->in[0]->grad + i * C;
        double s = 0;
        for (int64_t j = 0; j < C; j++)
            s += dyr[j];
        const float sf = (float)s;
        for (int64_t j = 0; j < C; j++)
            dxr[j] += dyr[j] - expf(yr[j]) * sf;
    }
}

struct invar_tensor *invar_log_softmax(struct invar_graph *g, struct invar_tensor *x)
{
    INVAR_ASSERT(x->ndim == 2 && invar_tensor_is_contiguous(x) && x->shape[1] > 0);
    const int64_t N = x->shape[0], C = x->shape[1];
    struct invar_tensor *y = graph_new_like(g, x);
    for (int64_t i = 0; i < N; i++) {
        const float *restrict xr = x->data + i * C;
        float *restrict yr = y->data + i * C;
        float m, lse;
        row_logsumexp(xr, C, &m, &lse);
        for (int64_t j = 0; j < C; j++)
            yr[j] = (xr[j] - m) - lse;
    }
    graph_record(g, "log_softmax", y, &x, 1, log_softmax_backward, 0);
    return y;
}

/* ---- cross_entropy: scalar = mean_i (logsumexp(x_i) - x_i[label_i]) ---------------------- */

struct ce_ctx {
    int32_t *labels;  /* (N) copied: the caller's array need not outlive the call */
    float *max, *lse; /* (N) row maxima and log-sum-exp of the shifted row */
};

struct ce_job {
    const float *x; /* (N, C) */
    float *dx;      /* (N, C) backward */
    int64_t c;
    float *max, *lse;
    const int32_t *labels;
    float d;        /* backward: dloss / N */
    int fresh;      /* backward: dx is uninitialised */
};

static void ce_forward_rows(void *arg, int slice, int64_t lo, int64_t hi)
{
    (void)slice;
    const struct ce_job *j = arg;
    for (int64_t i = lo; i < hi; i++)
        row_logsumexp(j->x + i * j->c, j->c, &j->max[i], &j->lse[i]);
}

/* dx_i = dy / N * (softmax(x_i) - onehot(label_i)); softmax rebuilt from the saved row stats,
 * with the shift applied before exp so large logits lose no precision. */
static void ce_backward_rows(void *arg, int slice, int64_t lo, int64_t hi)
{
    (void)slice;
    const struct ce_job *j = arg;
    for (int64_t i = lo; i < hi; i++) {
        float *dxr = j->dx + i * j->c;
        row_softmax_grad(dxr, j->x + i * j->c, j->c, j->max[i], j->lse[i], j->d, j->fresh);
        dxr[j->labels[i]] -= j->d;
    }
}

static void cross_entropy_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const struct ce_ctx *c = n->ctx;
    struct invar_tensor *x = n->in[0];
    const int64_t N = x->shape[0], C = x->shape[1];
    struct ce_job j = {.x = x->data, .dx = x->grad, .c = C, .max = c->max, .lse = c->lse,
                       .labels = c->labels, .d = n->out->grad[0] / (float)N,
                       .fresh = (int)(n->fresh & 1)};
    ops_parallel_for(ce_backward_rows, &j, N, 3 * N * C);
}

struct invar_tensor *invar_cross_entropy(struct invar_graph *g, struct invar_tensor *logits,
                                         const int32_t *labels)
{
    struct invar_tensor *x = logits;
    INVAR_ASSERT(x->ndim == 2 && invar_tensor_is_contiguous(x) && x->shape[1] > 0);
    const int64_t N = x->shape[0], C = x->shape[1];
    for (int64_t i = 0; i < N; i++)
        INVAR_ASSERT(labels[i] >= 0 && labels[i] < C);
    struct invar_tensor *y = graph_new(g, 1, (int64_t[]){1});
    float *max = graph_alloc(g, (size_t)N * sizeof *max); // (N)
    float *lse = graph_alloc(g, (size_t)N * sizeof *lse); // (N)
    struct ce_job j = {.x = x->data, .c = C, .max = max, .lse = lse};
    ops_parallel_for(ce_forward_rows, &j, N, 2 * N * C);
    double total = 0;
    for (int64_t i = 0; i < N; i++) {
        const float *xr = x->data + i * C;
        /* -log p = lse - (x_label - max): both terms are small, whatever the logits' size. */
        total += (double)lse[i] - (double)(xr[labels[i]] - max[i]);
    }
    y->data[0] = (float)(total / (double)N);
    struct invar_node *n =
        graph_record(g, "cross_entropy", y, &x, 1, cross_entropy_backward, sizeof(struct ce_ctx));
    if (n) {
        n->may_overwrite = 1; /* every element of dx */
        struct ce_ctx *c = n->ctx;
        c->labels = graph_alloc(g, (size_t)N * sizeof *c->labels);
        memcpy(c->labels, labels, (size_t)N * sizeof *c->labels);
        c->max = max;
        c->lse = lse;
    }
    return y;
}

/* ---- mse: scalar = mean((a - b)^2) ------------------------------------------------------ */

/* g[i] += s * (a[i] - b[i]) */
static void mse_grad(float *restrict g, const float *restrict a, const float *restrict b, float s,
                     int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        g[i] += s * (a[i] - b[i]);
}

static void mse_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    struct invar_tensor *a = n->in[0], *b = n->in[1];
    const float s = 2.0f * n->out->grad[0] / (float)a->numel;
    if (a->grad)
        mse_grad(a->grad, a->data, b->data, s, a->numel);
    if (b->grad)
        mse_grad(b->grad, b->data, a->data, s, a->numel);
}

struct invar_tensor *invar_mse(struct invar_graph *g, struct invar_tensor *a,
                               struct invar_tensor *b)
{
    INVAR_ASSERT(invar_tensor_same_shape(a, b) && a->numel > 0);
    INVAR_ASSERT(invar_tensor_is_contiguous(a) && invar_tensor_is_contiguous(b));
    struct invar_tensor *y = graph_new(g, 1, (int64_t[]){1});
    const float *restrict ad = a->data, *restrict bd = b->data;
    double s = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        const double d = (double)ad[i] - bd[i];
        s += d * d;
    }
    y->data[0] = (float)(s / (double)a->numel);
    struct invar_tensor *in[2] = {a, b};
    graph_record(g, "mse", y, in, 2, mse_backward, 0);
    return y;
}
