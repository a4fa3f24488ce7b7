/* invar/kmeans.h — clustering on features: k-means, PCA-whitening, Sinkhorn–Knopp, and the
 * scores that compare partitions (NMI, clustering accuracy with Hungarian matching).
 *
 *     // pseudo-labels for 60000 features of dimension 128 (DeepCluster's epoch start)
 *     float *cent = malloc(100 * 128 * sizeof *cent);        // (k, D)
 *     int32_t *assign = malloc(60000 * sizeof *assign);      // (N)
 *     double inertia;
 *     struct invar_error err = {0};
 *     if (invar_kmeans(feats, 60000, 128, 100, 20, seed, cent, assign, &inertia, &err) != INVAR_OK)
 *         ...;
 *     double nmi, acc;
 *     invar_nmi(assign, labels, 60000, &nmi, &err);            // 1 = the same partition
 *     invar_cluster_accuracy(assign, labels, 60000, 100, &acc, &err);
 *
 * k-means is k-means++ seeding (counter-based RNG, so the same seed gives the same centroids on
 * every machine) followed by Lloyd iterations. The assignment step is one GEMM per chunk of
 * rows, ||x||^2 - 2 x c^T + ||c||^2, so it runs at BLAS speed; the distance of each point to its
 * chosen centroid (and so the inertia) is then recomputed exactly in double. A cluster left empty
 * by an assignment step is re-seeded with the point farthest from its centroid (among clusters
 * that keep at least one other point; ties go to the lowest index), so every cluster is used.
 * Iterations stop when no assignment changes or after `iters` centroid updates.
 *
 * Every function allocates its own scratch with malloc (they run between training steps, not in
 * them; invar_sinkhorn, which runs inside steps, can take the caller's scratch instead) and returns
 * INVAR_ERR_NOMEM when that fails; sizes out of their domain are INVAR_ERR_INVALID. Nothing here
 * keeps state between calls, so all of it is thread-safe.
 */
#ifndef INVAR_KMEANS_H
#define INVAR_KMEANS_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

struct invar_kmeans_stats {
    int64_t iters;    /* centroid updates performed (<= iters asked) */
    int64_t reseeded; /* empty clusters re-seeded over all iterations */
    int converged;    /* 1 when the last assignment step changed nothing */
};

/* Each row of x (N, D) divided by its L2 norm (summed in double), in place; a row of norm below
 * 1e-12 is scaled by 1e12 instead, so an all-zero row stays zero. Features are compared by
 * cosine, so clustering them starts here. */
INVAR_API void invar_l2_normalize_rows(float *x, int64_t n, int64_t d);

/* k-means++ seeding: the first centroid is a uniform draw, each next one a draw with
 * probability proportional to the squared distance to the nearest centroid chosen so far.
 * x (N, D), centroids (k, D) out. 1 <= k <= n. */
INVAR_API enum invar_status invar_kmeans_init(const float *x, int64_t n, int64_t d, int64_t k,
                                              uint64_t seed, float *centroids,
                                              struct invar_error *err);

/* Lloyd iterations from the given centroids (k, D), updated in place. assign (N) out: the
 * nearest centroid of each row for the final centroids (ties: lowest index); inertia out: the
 * sum over rows of the squared distance to that centroid. stats may be NULL. iters = 0 only
 * assigns. */
INVAR_API enum invar_status invar_kmeans_lloyd(const float *x, int64_t n, int64_t d, int64_t k,
                                               int64_t iters, float *centroids, int32_t *assign,
                                               double *inertia, struct invar_kmeans_stats *stats,
                                               struct invar_error *err);

/* invar_kmeans_init then invar_kmeans_lloyd. */
INVAR_API enum invar_status invar_kmeans(const float *x, int64_t n, int64_t d, int64_t k,
                                         int64_t iters, uint64_t seed, float *centroids,
                                         int32_t *assign, double *inertia, struct invar_error *err);

/* PCA-whitening: out (N, out_dim) = (x - mean) V diag(1 / sqrt(lambda + eps)), where lambda
 * and V are the out_dim largest eigenvalues and their eigenvectors of the (biased, 1/N)
 * covariance of x (N, D). The eigen-decomposition is a cyclic Jacobi solver in double (D is a
 * feature size, at most a few hundred). Each eigenvector's sign is fixed so that its largest
 * component is positive, making the output deterministic. 1 <= out_dim <= d <= 4096, n >= 2. */
INVAR_API enum invar_status invar_pca_whiten(const float *x, int64_t n, int64_t d, int64_t out_dim,
                                             double eps, float *out, struct invar_error *err);

/* Sinkhorn–Knopp on scores (B, K) (SwAV's code computation): Q = exp(scores / eps) scaled to
 * sum 1, then `iters` rounds of making every column (prototype) sum to 1/K and then every row
 * (sample) sum to 1/B. codes (B, K) out = B Q, so each row is a distribution over prototypes
 * and prototypes are used equally (exactly so only in the limit of many iterations). Computed in
 * double, with the largest score subtracted first so that exp never overflows. work is scratch
 * of b * k + k doubles (a training step passes memory from its graph arena), or NULL to let the
 * function allocate its own. */
INVAR_API enum invar_status invar_sinkhorn(const float *scores, int64_t b, int64_t k, double eps,
                                           int iters, float *codes, double *work,
                                           struct invar_error *err);

/* Normalised mutual information of two labelings (N), labels in [0, 2^20):
 *     NMI = I(A; B) / ((H(A) + H(B)) / 2)          (arithmetic-mean normalisation, natural logs)
 * 1 for identical partitions (up to renaming), about 0 for independent ones. When both
 * labelings have a single cluster, H(A) = H(B) = 0 and NMI is 1 (they agree); when only one
 * does, NMI is 0. */
INVAR_API enum invar_status invar_nmi(const int32_t *a, const int32_t *b, int64_t n, double *nmi,
                                      struct invar_error *err);

/* Clustering accuracy: the fraction of rows whose cluster, mapped one-to-one onto classes by
 * the matching that maximises agreement (Hungarian algorithm on the k x k contingency table),
 * equals the true class. pred and truth in [0, k). With more clusters than classes, at most
 * one cluster per class scores (the strict one-to-one convention). */
INVAR_API enum invar_status invar_cluster_accuracy(const int32_t *pred, const int32_t *truth,
                                                   int64_t n, int64_t k, double *accuracy,
                                                   struct invar_error *err);

/* The assignment problem: row_to_col (n) out minimises sum_i cost[i, row_to_col[i]] over
 * permutations of a square cost (n, n); *total (may be NULL) is that sum. O(n^3), the
 * Hungarian algorithm with row/column potentials. */
INVAR_API enum invar_status invar_hungarian(const double *cost, int64_t n, int64_t *row_to_col,
                                            double *total, struct invar_error *err);

#ifdef __cplusplus
}
#endif
#endif
