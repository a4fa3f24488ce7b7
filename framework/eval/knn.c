/* Weighted kNN on features (Wu et al. 2018) and the collapse monitor. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "invar/train.h"

#define KNN_CHUNK 256

static float *normalized_copy(const float *x, int64_t n, int64_t d)
{
    float *y = malloc((size_t)(n * d) * sizeof *y + 1);
    if (!y)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        double ss = 0;
        for (int64_t j = 0; j < d; j++)
            ss += (double)x[i * d + j] * x[i * d + j];
        float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
        for (int64_t j = 0; j < d; j++)
            y[i * d + j] = x[i * d + j] * inv;
    }
    return y;
}

/* Min-heap of (similarity, index) keeping the k largest; ties prefer the lower index. */
struct hit {
    float s;
    int64_t i;
};

static int hit_less(struct hit a, struct hit b) { return a.s < b.s || (a.s == b.s && a.i > b.i); }

static void heap_sift_down(struct hit *h, int64_t n, int64_t i)
{
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && hit_less(h[l], h[m]))
            m = l;
        if (r < n && hit_less(h[r], h[m]))
            m = r;
        if (m == i)
            return;
        struct hit t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_push(struct hit *h, int64_t *n, int64_t cap, struct hit x)
{
    if (*n < cap) {
        int64_t i = (*n)++;
        h[i] = x;
        while (i > 0 && hit_less(h[i], h[(i - 1) / 2])) {
            struct hit t = h[i];
            h[i] = h[(i - 1) / 2];
            h[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
    } else if (hit_less(h[0], x)) {
        h[0] = x;
        heap_sift_down(h, *n, 0);
    }
}

enum invar_status invar_knn_eval(const float *train, const int32_t *train_labels,
                                 int64_t n_train, const float *test, const int32_t *test_labels,
                                 int64_t n_test, int64_t dim, int32_t n_classes, int64_t k,
                                 double t, double *top1, double *top5, struct invar_error *err)
{
    if (n_train < 1 || n_test < 1 || n_classes < 1 || k < 1 || t <= 0)
        return invar_error_set(err, INVAR_ERR_INVALID,
                               "knn: needs train and test samples, classes, k >= 1 and t > 0");
    if (k > n_train)
        k = n_train;
    float *tr = normalized_copy(train, n_train, dim);
    float *te = normalized_copy(test, n_test, dim);
    float *sims = malloc((size_t)(KNN_CHUNK * n_train) * sizeof *sims);
    struct hit *heap = malloc((size_t)k * sizeof *heap);
    double *votes = malloc((size_t)n_classes * sizeof *votes);
    if (!tr || !te || !sims || !heap || !votes) {
        free(tr), free(te), free(sims), free(heap), free(votes);
        return invar_error_set(err, INVAR_ERR_NOMEM, "knn: out of memory");
    }
    int64_t c1 = 0, c5 = 0;
    for (int64_t s = 0; s < n_test; s += KNN_CHUNK) {
        int64_t m = n_test - s < KNN_CHUNK ? n_test - s : KNN_CHUNK;
        /* sims (m, n_train) = te[s:s+m] (m, dim) @ tr^T (dim, n_train) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n_train, (int)dim,
                    1.0f, te + s * dim, (int)dim, tr, (int)dim, 0.0f, sims, (int)n_train);
        for (int64_t r = 0; r < m; r++) {
            const float *row = sims + r * n_train;
            int64_t hn = 0;
            for (int64_t j = 0; j < n_train; j++)
                heap_push(heap, &hn, k, (struct hit){row[j], j});
            memset(votes, 0, (size_t)n_classes * sizeof *votes);
            for (int64_t j = 0; j < hn; j++) {
                int32_t c = train_labels[heap[j].i];
                if (c >= 0 && c < n_classes)
                    votes[c] += exp(heap[j].s / t);
            }
            int32_t truth = test_labels[s + r];
            /* rank of the true class: how many classes beat it (ties by lower class id) */
            int rank = 0;
            for (int32_t c = 0; c < n_classes; c++)
                if (c != truth && (truth < 0 || truth >= n_classes || votes[c] > votes[truth] ||
                                   (votes[c] == votes[truth] && c < truth)))
                    rank++;
            c1 += rank < 1;
            c5 += rank < 5;
        }
    }
    *top1 = 100.0 * (double)c1 / (double)n_test;
    *top5 = 100.0 * (double)c5 / (double)n_test;
    free(tr), free(te), free(sims), free(heap), free(votes);
    return INVAR_OK;
}

double invar_collapse_std(const float *features, int64_t n, int64_t dim)
{
    if (n < 2 || dim < 1)
        return 0;
    double *s = calloc((size_t)dim, sizeof *s), *ss = calloc((size_t)dim, sizeof *ss);
    if (!s || !ss) {
        free(s), free(ss);
        return NAN;
    }
    for (int64_t i = 0; i < n; i++) {
        const float *x = features + i * dim;
        double norm = 0;
        for (int64_t j = 0; j < dim; j++)
            norm += (double)x[j] * x[j];
        norm = 1.0 / fmax(sqrt(norm), 1e-12);
        for (int64_t j = 0; j < dim; j++) {
            double v = x[j] * norm;
            s[j] += v;
            ss[j] += v * v;
        }
    }
    double total = 0;
    for (int64_t j = 0; j < dim; j++) {
        double m = s[j] / (double)n;
        double var = (ss[j] - (double)n * m * m) / (double)(n - 1);
        total += sqrt(var > 0 ? var : 0);
    }
    free(s), free(ss);
    return total / (double)dim;
}
