/* Clustering on features: k-means (k-means++ seeding, GEMM Lloyd steps), PCA-whitening with a
 * Jacobi eigensolver, Sinkhorn–Knopp, NMI, and clustering accuracy by Hungarian matching. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "invar/kmeans.h"
#include "invar/rng.h"

/* Rows per GEMM in the assignment step: the (rows, k) distance block stays near 4 MiB. */
#define KMEANS_BLOCK_FLOATS (1 << 20)
#define PCA_CHUNK 4096
#define PCA_MAX_DIM 4096
#define JACOBI_MAX_SWEEPS 100
#define NMI_MAX_LABEL (1 << 20)
#define ACC_MAX_K 4096

static enum invar_status check_sizes(const char *fn, int64_t n, int64_t d, int64_t k,
                                     struct invar_error *err)
{
    if (n < 1 || d < 1 || k < 1 || k > n || n > (int64_t)UINT32_MAX || k > INT32_MAX)
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "%s: need 1 <= k <= n < 2^32 and d >= 1 (n %lld, d %lld, k %lld)",
                               fn, (long long)n, (long long)d, (long long)k);
    return INVAR_OK;
}

static double sqdist(const float *a, const float *b, int64_t d)
{
    double s = 0;
    for (int64_t j = 0; j < d; j++) {
        double t = (double)a[j] - b[j];
        s += t * t;
    }
    return s;
}

/* ---- k-means++ ------------------------------------------------------------------------- */

enum invar_status invar_kmeans_init(const float *x, int64_t n, int64_t d, int64_t k, uint64_t seed,
                                    float *centroids, struct invar_error *err)
{
    enum invar_status st = check_sizes("kmeans", n, d, k, err);
    if (st != INVAR_OK)
        return st;
    double *mind = malloc((size_t)n * sizeof *mind); /* (N) squared distance to nearest chosen */
    if (!mind)
        return invar_error_set(err, INVAR_ERR_NOMEM, "kmeans: out of memory");
    struct invar_rng r;
    invar_rng_init(&r, seed, invar_rng_stream(0x6b6d65616e73ULL, 0, 0, 0)); /* "kmeans" */
    int64_t pick = invar_rng_below(&r, (uint32_t)n);
    for (int64_t c = 0;; c++) {
        memcpy(centroids + c * d, x + pick * d, (size_t)d * sizeof(float));
        if (c + 1 == k)
            break;
        double total = 0;
        for (int64_t i = 0; i < n; i++) {
            double s = sqdist(x + i * d, centroids + c * d, d);
            mind[i] = c == 0 || s < mind[i] ? s : mind[i];
            total += mind[i];
        }
        if (total <= 0) { /* every point sits on a centroid: any choice is as good */
            pick = invar_rng_below(&r, (uint32_t)n);
            continue;
        }
        /* 53 random bits scaled to [0, total); the scan lands on a point with mind > 0. */
        double u = (double)(invar_rng_u64(&r) >> 11) * 0x1p-53 * total, acc = 0;
        pick = -1;
        for (int64_t i = 0; i < n; i++) {
            if (mind[i] <= 0)
                continue;
            pick = i;
            acc += mind[i];
            if (acc > u)
                break;
        }
    }
    free(mind);
    return INVAR_OK;
}

/* ---- Lloyd ----------------------------------------------------------------------------- */

struct lloyd {
    const float *x; /* (N, D) */
    int64_t n, d, k;
    float *c;        /* (k, D) centroids */
    int32_t *assign; /* (N) */
    float *cn;       /* (k) ||c||^2 */
    float *block;    /* (rows, k) */
    int64_t rows;
    double *dist;   /* (N) exact squared distance to the assigned centroid */
    double *sums;   /* (k, D) */
    int64_t *count; /* (k) */
};

/* Nearest centroid of every row; returns how many assignments changed. */
static int64_t lloyd_assign(struct lloyd *L, double *inertia)
{
    int64_t n = L->n, d = L->d, k = L->k, changed = 0;
    for (int64_t j = 0; j < k; j++) {
        double s = 0;
        for (int64_t t = 0; t < d; t++)
            s += (double)L->c[j * d + t] * L->c[j * d + t];
        L->cn[j] = (float)s;
    }
    double total = 0;
    for (int64_t s = 0; s < n; s += L->rows) {
        int64_t m = n - s < L->rows ? n - s : L->rows;
        /* block = x_chunk (m, D) @ c^T (D, k); ||x||^2 is the same for every centroid */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)k, (int)d, 1.0f,
                    L->x + s * d, (int)d, L->c, (int)d, 0.0f, L->block, (int)k);
        for (int64_t i = 0; i < m; i++) {
            const float *row = L->block + i * k;
            int32_t best = 0;
            float bv = L->cn[0] - 2 * row[0];
            for (int64_t j = 1; j < k; j++) {
                float v = L->cn[j] - 2 * row[j];
                if (v < bv) {
                    bv = v;
                    best = (int32_t)j;
                }
            }
            changed += L->assign[s + i] != best;
            L->assign[s + i] = best;
            L->dist[s + i] = sqdist(L->x + (s + i) * d, L->c + best * d, d);
            total += L->dist[s + i];
        }
    }
    *inertia = total;
    return changed;
}

/* Centroids become the means of their rows; empty clusters take the farthest rows first.
 * Returns the number of clusters re-seeded. */
static int64_t lloyd_update(struct lloyd *L)
{
    int64_t n = L->n, d = L->d, k = L->k, reseeded = 0;
    memset(L->sums, 0, (size_t)(k * d) * sizeof *L->sums);
    memset(L->count, 0, (size_t)k * sizeof *L->count);
    for (int64_t i = 0; i < n; i++) {
        int32_t a = L->assign[i];
        L->count[a]++;
        for (int64_t t = 0; t < d; t++)
            L->sums[a * d + t] += L->x[i * d + t];
    }
    for (int64_t j = 0; j < k; j++) {
        if (L->count[j] > 0)
            continue;
        /* The row farthest from its centroid, in a cluster that keeps another row. k <= n
         * guarantees one exists while a cluster is empty. */
        int64_t far = -1;
        for (int64_t i = 0; i < n; i++)
            if (L->dist[i] >= 0 && L->count[L->assign[i]] > 1 &&
                (far < 0 || L->dist[i] > L->dist[far]))
                far = i;
        INVAR_ASSERT(far >= 0);
        int32_t from = L->assign[far];
        L->count[from]--;
        for (int64_t t = 0; t < d; t++) {
            L->sums[from * d + t] -= L->x[far * d + t];
            L->sums[j * d + t] = L->x[far * d + t];
        }
        L->count[j] = 1;
        L->assign[far] = (int32_t)j;
        L->dist[far] = -1; /* never moved twice */
        reseeded++;
    }
    for (int64_t j = 0; j < k; j++)
        for (int64_t t = 0; t < d; t++)
            L->c[j * d + t] = (float)(L->sums[j * d + t] / (double)L->count[j]);
    return reseeded;
}

enum invar_status invar_kmeans_lloyd(const float *x, int64_t n, int64_t d, int64_t k, int64_t iters,
                                     float *centroids, int32_t *assign, double *inertia,
                                     struct invar_kmeans_stats *stats, struct invar_error *err)
{
    enum invar_status st = check_sizes("kmeans", n, d, k, err);
    if (st != INVAR_OK)
        return st;
    if (iters < 0)
        return invar_error_set(err, INVAR_ERR_INVALID, "kmeans: iters must be >= 0");
    if (d > INT32_MAX)
        return invar_error_set(err, INVAR_ERR_INVALID, "kmeans: d too large for BLAS");
    struct lloyd L = {.x = x, .n = n, .d = d, .k = k, .c = centroids, .assign = assign};
    L.rows = KMEANS_BLOCK_FLOATS / k;
    L.rows = L.rows < 1 ? 1 : L.rows > n ? n : L.rows;
    L.cn = malloc((size_t)k * sizeof *L.cn);
    L.block = malloc((size_t)(L.rows * k) * sizeof *L.block);
    L.dist = malloc((size_t)n * sizeof *L.dist);
    L.sums = malloc((size_t)(k * d) * sizeof *L.sums);
    L.count = malloc((size_t)k * sizeof *L.count);
    if (!L.cn || !L.block || !L.dist || !L.sums || !L.count) {
        st = invar_error_set(err, INVAR_ERR_NOMEM, "kmeans: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        assign[i] = -1;
    struct invar_kmeans_stats s = {0};
    double in = 0;
    for (int64_t it = 0;; it++) {
        if (lloyd_assign(&L, &in) == 0) {
            s.converged = 1;
            break;
        }
        if (it == iters)
            break;
        s.reseeded += lloyd_update(&L);
        s.iters++;
    }
    *inertia = in;
    if (stats)
        *stats = s;
done:
    free(L.cn), free(L.block), free(L.dist), free(L.sums), free(L.count);
    return st;
}

void invar_l2_normalize_rows(float *x, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++) {
        float *row = x + i * d; // (D)
        double ss = 0;
        for (int64_t j = 0; j < d; j++)
            ss += (double)row[j] * row[j];
        const float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
        for (int64_t j = 0; j < d; j++)
            row[j] *= inv;
    }
}

enum invar_status invar_kmeans(const float *x, int64_t n, int64_t d, int64_t k, int64_t iters,
                               uint64_t seed, float *centroids, int32_t *assign, double *inertia,
                               struct invar_error *err)
{
    enum invar_status st = invar_kmeans_init(x, n, d, k, seed, centroids, err);
    if (st == INVAR_OK)
        st = invar_kmeans_lloyd(x, n, d, k, iters, centroids, assign, inertia, NULL, err);
    return st;
}

/* ---- PCA-whitening ------------------------------------------------------------------------ */

/* Eigen-decomposition of the symmetric a (d, d) by cyclic Jacobi rotations: on return the
 * diagonal of a holds the eigenvalues and the columns of v the eigenvectors. */
static void jacobi_eigen(double *a, double *v, int64_t d)
{
    for (int64_t i = 0; i < d * d; i++)
        v[i] = 0;
    for (int64_t i = 0; i < d; i++)
        v[i * d + i] = 1;
    double total = 0;
    for (int64_t i = 0; i < d * d; i++)
        total += a[i] * a[i];
    for (int sweep = 0; sweep < JACOBI_MAX_SWEEPS; sweep++) {
        double off = 0;
        for (int64_t p = 0; p < d; p++)
            for (int64_t q = p + 1; q < d; q++)
                off += 2 * a[p * d + q] * a[p * d + q];
        if (off <= 1e-24 * total || off == 0)
            return;
        for (int64_t p = 0; p < d; p++)
            for (int64_t q = p + 1; q < d; q++) {
                double apq = a[p * d + q];
                if (apq == 0)
                    continue;
                /* t = tan(phi), the smaller root of t^2 + 2 theta t - 1 = 0, zeroes a[p][q] */
                double theta = (a[q * d + q] - a[p * d + p]) / (2 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int64_t r = 0; r < d; r++) { /* a <- a J */
                    double arp = a[r * d + p], arq = a[r * d + q];
                    a[r * d + p] = c * arp - s * arq;
                    a[r * d + q] = s * arp + c * arq;
                }
                for (int64_t r = 0; r < d; r++) { /* a <- J^T a */
                    double apr = a[p * d + r], aqr = a[q * d + r];
                    a[p * d + r] = c * apr - s * aqr;
                    a[q * d + r] = s * apr + c * aqr;
                }
                for (int64_t r = 0; r < d; r++) { /* v <- v J */
                    double vrp = v[r * d + p], vrq = v[r * d + q];
                    v[r * d + p] = c * vrp - s * vrq;
                    v[r * d + q] = s * vrp + c * vrq;
                }
            }
    }
}

struct eig {
    double value;
    int64_t index;
};

static int eig_descending(const void *pa, const void *pb)
{
    const struct eig *a = pa, *b = pb;
    if (a->value != b->value)
        return a->value > b->value ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

enum invar_status invar_pca_whiten(const float *x, int64_t n, int64_t d, int64_t out_dim,
                                   double eps, float *out, struct invar_error *err)
{
    if (n < 2 || d < 1 || d > PCA_MAX_DIM || out_dim < 1 || out_dim > d || !(eps >= 0))
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "pca: need n >= 2, 1 <= out_dim <= d <= %d, eps >= 0 (n %lld, d "
                               "%lld, out_dim %lld)",
                               PCA_MAX_DIM, (long long)n, (long long)d, (long long)out_dim);
    int64_t rows = n < PCA_CHUNK ? n : PCA_CHUNK;
    double *mean = calloc((size_t)d, sizeof *mean);
    double *cov = calloc((size_t)(d * d), sizeof *cov);
    double *vec = malloc((size_t)(d * d) * sizeof *vec);
    double *chunk = malloc((size_t)(rows * d) * sizeof *chunk);
    float *fchunk = malloc((size_t)(rows * d) * sizeof *fchunk);
    float *w = malloc((size_t)(d * out_dim) * sizeof *w);
    struct eig *eig = malloc((size_t)d * sizeof *eig);
    enum invar_status st = INVAR_OK;
    if (!mean || !cov || !vec || !chunk || !fchunk || !w || !eig) {
        st = invar_error_set(err, INVAR_ERR_NOMEM, "pca: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            mean[j] += x[i * d + j];
    for (int64_t j = 0; j < d; j++)
        mean[j] /= (double)n;
    /* cov = sum over chunks of xc^T xc, upper triangle, in double */
    for (int64_t s = 0; s < n; s += rows) {
        int64_t m = n - s < rows ? n - s : rows;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < d; j++)
                chunk[i * d + j] = x[(s + i) * d + j] - mean[j];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)d, (int)m, 1.0, chunk, (int)d, 1.0,
                    cov, (int)d);
    }
    for (int64_t p = 0; p < d; p++)
        for (int64_t q = p; q < d; q++) {
            cov[p * d + q] /= (double)n;
            cov[q * d + p] = cov[p * d + q];
        }
    jacobi_eigen(cov, vec, d);
    for (int64_t j = 0; j < d; j++)
        eig[j] = (struct eig){cov[j * d + j], j};
    qsort(eig, (size_t)d, sizeof *eig, eig_descending);
    /* w (D, out_dim): eigenvector columns, sign fixed, scaled by 1/sqrt(lambda + eps) */
    for (int64_t o = 0; o < out_dim; o++) {
        int64_t col = eig[o].index, big = 0;
        for (int64_t r = 1; r < d; r++)
            if (fabs(vec[r * d + col]) > fabs(vec[big * d + col]))
                big = r;
        double sign = vec[big * d + col] < 0 ? -1.0 : 1.0;
        double lambda = eig[o].value > 0 ? eig[o].value : 0;
        double scale = sign / sqrt(lambda + eps);
        if (!isfinite(scale)) {
            st =
                invar_error_set(err, INVAR_ERR_INVALID,
                                "pca: component %lld has zero variance; use eps > 0", (long long)o);
            goto done;
        }
        for (int64_t r = 0; r < d; r++)
            w[r * out_dim + o] = (float)(vec[r * d + col] * scale);
    }
    for (int64_t s = 0; s < n; s += rows) {
        int64_t m = n - s < rows ? n - s : rows;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < d; j++)
                fchunk[i * d + j] = (float)(x[(s + i) * d + j] - mean[j]);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)out_dim, (int)d, 1.0f,
                    fchunk, (int)d, w, (int)out_dim, 0.0f, out + s * out_dim, (int)out_dim);
    }
done:
    free(mean), free(cov), free(vec), free(chunk), free(fchunk), free(w), free(eig);
    return st;
}

/* ---- Sinkhorn–Knopp ---------------------------------------------------------------------- */

enum invar_status invar_sinkhorn(const float *scores, int64_t b, int64_t k, double eps, int iters,
                                 float *codes, double *work, struct invar_error *err)
{
    if (b < 1 || k < 1 || !(eps > 0) || iters < 0)
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "sinkhorn: need b, k >= 1, eps > 0, iters >= 0");
    double *own = NULL;
    if (!work) {
        own = work = malloc((size_t)(b * k + k) * sizeof *work);
        if (!own)
            return invar_error_set(err, INVAR_ERR_NOMEM, "sinkhorn: out of memory");
    }
    double *q = work;              /* (B, K) */
    double *colsum = work + b * k; /* (K) */
    double top = -INFINITY;
    for (int64_t i = 0; i < b * k; i++)
        top = scores[i] > top ? scores[i] : top;
    double total = 0;
    for (int64_t i = 0; i < b * k; i++) {
        q[i] = exp(((double)scores[i] - top) / eps);
        total += q[i];
    }
    for (int64_t i = 0; i < b * k; i++)
        q[i] /= total;
    for (int it = 0; it < iters; it++) {
        for (int64_t j = 0; j < k; j++)
            colsum[j] = 0;
        for (int64_t i = 0; i < b; i++)
            for (int64_t j = 0; j < k; j++)
                colsum[j] += q[i * k + j];
        for (int64_t i = 0; i < b; i++) /* each prototype's mass -> 1/K */
            for (int64_t j = 0; j < k; j++)
                q[i * k + j] /= colsum[j] > 0 ? colsum[j] * (double)k : 1;
        for (int64_t i = 0; i < b; i++) { /* each sample's mass -> 1/B */
            double rs = 0;
            for (int64_t j = 0; j < k; j++)
                rs += q[i * k + j];
            double f = rs > 0 ? 1 / (rs * (double)b) : 0;
            for (int64_t j = 0; j < k; j++)
                q[i * k + j] *= f;
        }
    }
    for (int64_t i = 0; i < b * k; i++)
        codes[i] = (float)(q[i] * (double)b);
    free(own);
    return INVAR_OK;
}

/* ---- NMI ------------------------------------------------------------------------------------ */

static int cmp_i64(const void *pa, const void *pb)
{
    int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    return (a > b) - (a < b);
}

static double entropy_of(const int64_t *count, int64_t m, double n)
{
    double h = 0;
    for (int64_t i = 0; i < m; i++)
        if (count[i] > 0) {
            double p = (double)count[i] / n;
            h -= p * log(p);
        }
    return h;
}

enum invar_status invar_nmi(const int32_t *a, const int32_t *b, int64_t n, double *nmi,
                            struct invar_error *err)
{
    if (n < 1)
        return invar_error_set(err, INVAR_ERR_INVALID, "nmi: empty labelings");
    int32_t ma = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        if (a[i] < 0 || a[i] >= NMI_MAX_LABEL || b[i] < 0 || b[i] >= NMI_MAX_LABEL)
            return invar_error_set(err, INVAR_ERR_INVALID,
                                   "nmi: label out of [0, 2^20) at row %lld", (long long)i);
        ma = a[i] > ma ? a[i] : ma;
        mb = b[i] > mb ? b[i] : mb;
    }
    int64_t *ca = calloc((size_t)ma + 1, sizeof *ca), *cb = calloc((size_t)mb + 1, sizeof *cb);
    int64_t *pair = malloc((size_t)n * sizeof *pair); /* (a << 20 | b), sorted: joint counts */
    if (!ca || !cb || !pair) {
        free(ca), free(cb), free(pair);
        return invar_error_set(err, INVAR_ERR_NOMEM, "nmi: out of memory");
    }
    for (int64_t i = 0; i < n; i++) {
        ca[a[i]]++;
        cb[b[i]]++;
        pair[i] = (int64_t)a[i] << 20 | b[i];
    }
    qsort(pair, (size_t)n, sizeof *pair, cmp_i64);
    double dn = (double)n, mi = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && pair[j] == pair[i])
            j++;
        double nij = (double)(j - i);
        double ai = (double)ca[pair[i] >> 20], bj = (double)cb[pair[i] & (NMI_MAX_LABEL - 1)];
        mi += nij / dn * log(dn * nij / (ai * bj));
        i = j;
    }
    double ha = entropy_of(ca, (int64_t)ma + 1, dn), hb = entropy_of(cb, (int64_t)mb + 1, dn);
    if (ha == 0 && hb == 0)
        *nmi = 1;
    else
        *nmi = fmax(0, mi / (0.5 * (ha + hb)));
    free(ca), free(cb), free(pair);
    return INVAR_OK;
}

/* ---- Hungarian matching --------------------------------------------------------------------- */

enum invar_status invar_hungarian(const double *cost, int64_t n, int64_t *row_to_col, double *total,
                                  struct invar_error *err)
{
    if (n < 1)
        return invar_error_set(err, INVAR_ERR_INVALID, "hungarian: n must be >= 1");
    /* 1-based with a virtual column 0; u, v are row and column potentials with
     * cost[i][j] - u[i] - v[j] >= 0, tight on matched pairs. match[j] is the row of column j. */
    double *u = calloc((size_t)n + 1, sizeof *u), *v = calloc((size_t)n + 1, sizeof *v);
    double *minv = malloc(((size_t)n + 1) * sizeof *minv);
    int64_t *match = calloc((size_t)n + 1, sizeof *match);
    int64_t *way = calloc((size_t)n + 1, sizeof *way);
    char *used = malloc((size_t)n + 1);
    if (!u || !v || !minv || !match || !way || !used) {
        free(u), free(v), free(minv), free(match), free(way), free(used);
        return invar_error_set(err, INVAR_ERR_NOMEM, "hungarian: out of memory");
    }
    for (int64_t i = 1; i <= n; i++) {
        /* Grow an alternating tree from row i along tight edges (Dijkstra on reduced costs)
         * until it reaches a free column, then flip the path. */
        match[0] = i;
        int64_t j0 = 0;
        for (int64_t j = 0; j <= n; j++) {
            minv[j] = INFINITY;
            used[j] = 0;
        }
        do {
            used[j0] = 1;
            int64_t i0 = match[j0], j1 = 0;
            double delta = INFINITY;
            for (int64_t j = 1; j <= n; j++) {
                if (used[j])
                    continue;
                double cur = cost[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                if (cur < minv[j]) {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if (minv[j] < delta) {
                    delta = minv[j];
                    j1 = j;
                }
            }
            for (int64_t j = 0; j <= n; j++) {
                if (used[j]) {
                    u[match[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
        } while (match[j0] != 0);
        do {
            int64_t j1 = way[j0];
            match[j0] = match[j1];
            j0 = j1;
        } while (j0 != 0);
    }
    double sum = 0;
    for (int64_t j = 1; j <= n; j++) {
        row_to_col[match[j] - 1] = j - 1;
        sum += cost[(match[j] - 1) * n + (j - 1)];
    }
    if (total)
        *total = sum;
    free(u), free(v), free(minv), free(match), free(way), free(used);
    return INVAR_OK;
}

enum invar_status invar_cluster_accuracy(const int32_t *pred, const int32_t *truth, int64_t n,
                                         int64_t k, double *accuracy, struct invar_error *err)
{
    if (n < 1 || k < 1 || k > ACC_MAX_K)
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "cluster accuracy: need n >= 1 and 1 <= k <= %d", ACC_MAX_K);
    for (int64_t i = 0; i < n; i++)
        if (pred[i] < 0 || pred[i] >= k || truth[i] < 0 || truth[i] >= k)
            return invar_error_set(err, INVAR_ERR_INVALID,
                                   "cluster accuracy: label out of [0, %lld) at row %lld",
                                   (long long)k, (long long)i);
    double *count = calloc((size_t)(k * k), sizeof *count); /* (clusters, classes) */
    double *cost = malloc((size_t)(k * k) * sizeof *cost);
    int64_t *match = malloc((size_t)k * sizeof *match);
    enum invar_status st = INVAR_OK;
    if (!count || !cost || !match) {
        st = invar_error_set(err, INVAR_ERR_NOMEM, "cluster accuracy: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        count[pred[i] * k + truth[i]] += 1;
    for (int64_t i = 0; i < k * k; i++)
        cost[i] = (double)n - count[i]; /* maximise agreement = minimise n - count */
    st = invar_hungarian(cost, k, match, NULL, err);
    if (st != INVAR_OK)
        goto done;
    double hit = 0;
    for (int64_t c = 0; c < k; c++)
        hit += count[c * k + match[c]];
    *accuracy = hit / (double)n;
done:
    free(count), free(cost), free(match);
    return st;
}
