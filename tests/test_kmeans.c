/* kmeans: k-means++ and Lloyd, PCA-whitening, NMI, Hungarian matching, cluster accuracy. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "invar/kmeans.h"
#include "invar/rng.h"

/* n_per points around each of k centres (k, d), uniform noise in [-noise, noise). */
static float *toy_blobs(const float *centres, int64_t k, int64_t d, int64_t n_per, float noise,
                        uint64_t seed, int32_t *truth)
{
    float *x = malloc((size_t)(k * n_per * d) * sizeof *x);
    struct invar_rng r;
    invar_rng_init(&r, seed, 3);
    for (int64_t i = 0; i < k * n_per; i++) {
        int64_t c = i % k; /* interleaved, so cluster ids do not follow row order */
        truth[i] = (int32_t)c;
        for (int64_t j = 0; j < d; j++)
            x[i * d + j] = centres[c * d + j] + invar_rng_range(&r, -noise, noise);
    }
    return x;
}

static const float blob_centres[4 * 3] = {0, 0, 0, 10, 0, 0, 0, 10, 0, 0, 0, 10};

Test(kmeans, recovers_separable_blobs_for_every_seed)
{
    enum { K = 4, D = 3, PER = 40, N = K * PER };
    int32_t truth[N], assign[N];
    float *x = toy_blobs(blob_centres, K, D, PER, 1.0f, 7, truth);
    float cent[K * D];
    for (uint64_t seed = 1; seed <= 8; seed++) {
        double inertia = -1, nmi = 0, acc = 0;
        struct invar_error err = {0};
        cr_assert_eq(invar_kmeans(x, N, D, K, 50, seed, cent, assign, &inertia, &err), INVAR_OK,
                     "%s", err.msg);
        cr_assert_eq(invar_cluster_accuracy(assign, truth, N, K, &acc, &err), INVAR_OK);
        cr_assert_eq(invar_nmi(assign, truth, N, &nmi, &err), INVAR_OK);
        cr_assert_float_eq(acc, 1.0, 1e-12, "seed %llu: accuracy %g", (unsigned long long)seed,
                           acc);
        cr_assert_float_eq(nmi, 1.0, 1e-9, "seed %llu: NMI %g", (unsigned long long)seed, nmi);
        /* each centroid is the mean of its blob: within the noise of the true centre */
        for (int c = 0; c < K; c++) {
            int t = truth[0];
            for (int i = 0; i < N; i++)
                if (assign[i] == c)
                    t = truth[i];
            for (int j = 0; j < D; j++)
                cr_assert(fabsf(cent[c * D + j] - blob_centres[t * D + j]) < 0.5f);
        }
        /* inertia is the exact sum of squared distances to the assigned centroids */
        double check = 0;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < D; j++) {
                double t = (double)x[i * D + j] - cent[assign[i] * D + j];
                check += t * t;
            }
        cr_assert_float_eq(inertia, check, 1e-6 * check);
    }
    free(x);
}

Test(kmeans, plusplus_is_deterministic_per_seed)
{
    enum { K = 4, D = 3, PER = 40, N = K * PER };
    int32_t truth[N];
    float *x = toy_blobs(blob_centres, K, D, PER, 1.0f, 8, truth);
    float a[K * D], b[K * D], c[K * D];
    struct invar_error err = {0};
    cr_assert_eq(invar_kmeans_init(x, N, D, K, 42, a, &err), INVAR_OK);
    cr_assert_eq(invar_kmeans_init(x, N, D, K, 42, b, &err), INVAR_OK);
    cr_assert_eq(invar_kmeans_init(x, N, D, K, 43, c, &err), INVAR_OK);
    cr_assert_eq(memcmp(a, b, sizeof a), 0, "same seed, different centroids");
    cr_assert_neq(memcmp(a, c, sizeof a), 0, "seeds 42 and 43 chose the same centroids");
    /* every centroid is a data point, and D^2 seeding puts one in each separated blob */
    int seen[K] = {0};
    for (int j = 0; j < K; j++) {
        int found = -1;
        for (int i = 0; i < N && found < 0; i++)
            if (memcmp(x + i * D, a + j * D, D * sizeof(float)) == 0)
                found = i;
        cr_assert(found >= 0, "centroid %d is not a data point", j);
        seen[truth[found]]++;
    }
    for (int t = 0; t < K; t++)
        cr_assert_eq(seen[t], 1, "blob %d got %d seeds", t, seen[t]);
    free(x);
}

Test(kmeans, empty_cluster_is_reseeded_from_the_farthest_point)
{
    /* 1-D: two groups; the third initial centroid is so far away that it gets no point. */
    const float x[6] = {0, 1, 2, 10, 11, 12};
    float cent[3] = {1, 11, 1000};
    int32_t assign[6];
    double inertia = 0;
    struct invar_kmeans_stats st;
    struct invar_error err = {0};
    cr_assert_eq(invar_kmeans_lloyd(x, 6, 1, 3, 10, cent, assign, &inertia, &st, &err), INVAR_OK);
    /* Distances to the first centroids are 1,0,1,1,0,1: the farthest (ties: lowest index)
     * is x[0] = 0, which becomes cluster 2; cluster 0 keeps {1, 2}. */
    cr_assert_eq(st.reseeded, 1);
    cr_assert(st.converged);
    cr_assert_float_eq(cent[0], 1.5f, 1e-6f);
    cr_assert_float_eq(cent[1], 11.0f, 1e-6f);
    cr_assert_float_eq(cent[2], 0.0f, 1e-6f);
    const int32_t want[6] = {2, 0, 0, 1, 1, 1};
    cr_assert_arr_eq(assign, want, sizeof want);
    cr_assert_float_eq(inertia, 0.25 + 0.25 + 1 + 0 + 1, 1e-9);
}

Test(kmeans, inertia_never_increases)
{
    enum { N = 300, D = 4, K = 9 };
    float *x = malloc(N * D * sizeof *x);
    struct invar_rng r;
    invar_rng_init(&r, 5, 0);
    for (int i = 0; i < N * D; i++)
        x[i] = invar_rng_normal(&r);
    float init[K * D], cent[K * D];
    int32_t assign[N];
    struct invar_error err = {0};
    cr_assert_eq(invar_kmeans_init(x, N, D, K, 9, init, &err), INVAR_OK);
    double prev = INFINITY, first = 0, last = 0;
    for (int t = 0; t <= 12; t++) {
        memcpy(cent, init, sizeof cent);
        double in;
        cr_assert_eq(invar_kmeans_lloyd(x, N, D, K, t, cent, assign, &in, NULL, &err), INVAR_OK);
        cr_assert(in <= prev * (1 + 1e-9), "iteration %d: inertia %g after %g", t, in, prev);
        if (t == 0)
            first = in;
        last = in;
        prev = in;
    }
    cr_assert(last < 0.9 * first, "Lloyd did not improve on the seeding (%g -> %g)", first, last);
    free(x);
}

Test(kmeans, bad_sizes_are_errors)
{
    float x[4] = {0, 1, 2, 3}, c[10];
    int32_t a[4];
    double in;
    struct invar_error err = {0};
    cr_assert_eq(invar_kmeans(x, 4, 1, 5, 3, 1, c, a, &in, &err), INVAR_ERR_INVALID);
    cr_assert(strstr(err.msg, "k <= n") != NULL, "%s", err.msg);
}

Test(kmeans, nmi_identical_independent_and_by_hand)
{
    enum { N = 1600 };
    static int32_t a[N], b[N], c[N];
    for (int i = 0; i < N; i++) {
        a[i] = i % 4;
        b[i] = (i / 4) % 4; /* every (a, b) pair equally often: independent */
        c[i] = 3 - a[i];    /* a renamed */
    }
    double v;
    struct invar_error err = {0};
    cr_assert_eq(invar_nmi(a, c, N, &v, &err), INVAR_OK);
    cr_assert_float_eq(v, 1.0, 1e-12);
    cr_assert_eq(invar_nmi(a, b, N, &v, &err), INVAR_OK);
    cr_assert_float_eq(v, 0.0, 1e-12);

    /* a = {0,0,1,1}, b = {0,0,0,1}: joint counts (0,0) 2, (1,0) 1, (1,1) 1; marginals a 2,2
     * and b 3,1. I = 1/2 ln(4*2/(2*3)) + 1/4 ln(4/(2*3)) + 1/4 ln(4/(2*1)), H(a) = ln 2,
     * H(b) = -(3/4 ln 3/4 + 1/4 ln 1/4); NMI = I / ((H(a) + H(b)) / 2) = 0.343711... */
    const int32_t ha[4] = {0, 0, 1, 1}, hb[4] = {0, 0, 0, 1};
    double mi = 0.5 * log(4.0 / 3) + 0.25 * log(2.0 / 3) + 0.25 * log(2.0);
    double want = mi / (0.5 * (log(2.0) - (0.75 * log(0.75) + 0.25 * log(0.25))));
    cr_assert_eq(invar_nmi(ha, hb, 4, &v, &err), INVAR_OK);
    cr_assert_float_eq(v, want, 1e-12);
    cr_assert_float_eq(v, 0.343711, 1e-6);
    /* symmetric */
    cr_assert_eq(invar_nmi(hb, ha, 4, &v, &err), INVAR_OK);
    cr_assert_float_eq(v, want, 1e-12);
    /* a single cluster on both sides agrees; on one side only, shares nothing */
    const int32_t z[4] = {0, 0, 0, 0};
    cr_assert_eq(invar_nmi(z, z, 4, &v, &err), INVAR_OK);
    cr_assert_float_eq(v, 1.0, 1e-12);
    cr_assert_eq(invar_nmi(z, ha, 4, &v, &err), INVAR_OK);
    cr_assert_float_eq(v, 0.0, 1e-12);
    const int32_t neg[4] = {0, -1, 0, 0};
    cr_assert_eq(invar_nmi(neg, ha, 4, &v, &err), INVAR_ERR_INVALID);
}

Test(kmeans, hungarian_known_optimum)
{
    /* rows 0,1,2 -> columns 1,0,2: 1 + 2 + 2 = 5; every other permutation costs more */
    const double cost[9] = {4, 1, 3, 2, 0, 5, 3, 2, 2};
    int64_t m[3];
    double total;
    struct invar_error err = {0};
    cr_assert_eq(invar_hungarian(cost, 3, m, &total, &err), INVAR_OK);
    cr_assert_eq(m[0], 1);
    cr_assert_eq(m[1], 0);
    cr_assert_eq(m[2], 2);
    cr_assert_float_eq(total, 5.0, 1e-12);
}

static void brute_force(const double *cost, int n, int *perm, int depth, int used, double sum,
                        double *best)
{
    if (depth == n) {
        if (sum < *best)
            *best = sum;
        return;
    }
    for (int j = 0; j < n; j++)
        if (!(used & (1 << j))) {
            perm[depth] = j;
            brute_force(cost, n, perm, depth + 1, used | (1 << j), sum + cost[depth * n + j], best);
        }
}

Test(kmeans, hungarian_matches_brute_force)
{
    enum { N = 6 };
    struct invar_rng r;
    for (uint64_t trial = 0; trial < 20; trial++) {
        invar_rng_init(&r, 100 + trial, 0);
        double cost[N * N];
        for (int i = 0; i < N * N; i++) /* small integers: many ties */
            cost[i] = (double)invar_rng_below(&r, 10);
        int64_t m[N];
        double total, best = INFINITY;
        int perm[N];
        struct invar_error err = {0};
        cr_assert_eq(invar_hungarian(cost, N, m, &total, &err), INVAR_OK);
        brute_force(cost, N, perm, 0, 0, 0, &best);
        cr_assert_float_eq(total, best, 1e-9, "trial %llu", (unsigned long long)trial);
        int seen = 0;
        double check = 0;
        for (int i = 0; i < N; i++) {
            seen |= 1 << m[i];
            check += cost[i * N + m[i]];
        }
        cr_assert_eq(seen, (1 << N) - 1, "not a permutation");
        cr_assert_float_eq(check, total, 1e-12);
    }
}

Test(kmeans, cluster_accuracy_matches_best_renaming)
{
    /* clusters are classes renamed 0->2, 1->0, 2->1, with two of ten rows wrong */
    const int32_t truth[10] = {0, 0, 0, 1, 1, 1, 2, 2, 2, 2};
    const int32_t pred[10] = {2, 2, 0, 0, 0, 0, 1, 1, 1, 2};
    double acc;
    struct invar_error err = {0};
    cr_assert_eq(invar_cluster_accuracy(pred, truth, 10, 3, &acc, &err), INVAR_OK);
    cr_assert_float_eq(acc, 0.8, 1e-12);
    /* more clusters than classes: one cluster per class scores */
    const int32_t split[10] = {0, 0, 1, 2, 2, 2, 3, 3, 3, 3};
    cr_assert_eq(invar_cluster_accuracy(split, truth, 10, 4, &acc, &err), INVAR_OK);
    cr_assert_float_eq(acc, 0.9, 1e-12);
}

Test(kmeans, pca_whitening_gives_identity_covariance)
{
    enum { N = 2000, D = 6 };
    float *x = malloc(N * D * sizeof *x), *out = malloc(N * D * sizeof *out);
    struct invar_rng r;
    invar_rng_init(&r, 11, 0);
    /* x = A z + offset with a fixed mixing A of very different scales */
    float amix[D * D];
    for (int i = 0; i < D * D; i++)
        amix[i] = invar_rng_range(&r, -1, 1) * (float)(1 + i % D);
    for (int i = 0; i < N; i++) {
        float z[D];
        for (int j = 0; j < D; j++)
            z[j] = invar_rng_normal(&r);
        for (int j = 0; j < D; j++) {
            float s = 5.0f + (float)j;
            for (int t = 0; t < D; t++)
                s += amix[j * D + t] * z[t];
            x[i * D + j] = s;
        }
    }
    struct invar_error err = {0};
    for (int od = D; od >= 3; od -= 3) {
        cr_assert_eq(invar_pca_whiten(x, N, D, od, 1e-9, out, &err), INVAR_OK, "%s", err.msg);
        for (int p = 0; p < od; p++) {
            double mp = 0;
            for (int i = 0; i < N; i++)
                mp += out[i * od + p];
            cr_assert(fabs(mp / N) < 1e-4, "component %d has mean %g", p, mp / N);
            for (int q = 0; q < od; q++) {
                double s = 0;
                for (int i = 0; i < N; i++)
                    s += (double)out[i * od + p] * out[i * od + q];
                cr_assert_float_eq(s / N, p == q ? 1.0 : 0.0, 1e-3, "cov[%d][%d] = %g", p, q,
                                   s / N);
            }
        }
    }
    /* The kept components are the leading ones, in order: axis-aligned data with standard
     * deviations (1, 5, 2, 4, 3, 0.5) whitens to x1/5, x3/4, x4/3 (signs fixed positive). */
    const float sd[D] = {1, 5, 2, 4, 3, 0.5f};
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++)
            x[i * D + j] = 2.0f + sd[j] * invar_rng_normal(&r);
    cr_assert_eq(invar_pca_whiten(x, N, D, 3, 1e-9, out, &err), INVAR_OK);
    const int axis[3] = {1, 3, 4};
    for (int p = 0; p < 3; p++) {
        double sxy = 0, sxx = 0, mx = 0;
        for (int i = 0; i < N; i++)
            mx += x[i * D + axis[p]];
        mx /= N;
        for (int i = 0; i < N; i++) {
            double xc = x[i * D + axis[p]] - mx;
            sxy += xc * out[i * 3 + p];
            sxx += xc * xc;
        }
        /* out has unit variance, so this is the correlation */
        double corr = sxy / sqrt(sxx * N);
        cr_assert(corr > 0.99, "component %d vs axis %d: correlation %g", p, axis[p], corr);
    }
    free(x), free(out);
}

/* (3, 4) -> (0.6, 0.8) by hand; a zero row stays zero; every other row ends at norm 1. */
Test(kmeans, l2_normalize_rows_by_hand)
{
    float x[3 * 2] = {3, 4, 0, 0, -1e-3f, 2e-3f};
    invar_l2_normalize_rows(x, 3, 2);
    cr_assert_float_eq(x[0], 0.6f, 1e-7);
    cr_assert_float_eq(x[1], 0.8f, 1e-7);
    cr_assert(x[2] == 0.0f && x[3] == 0.0f);
    cr_assert_float_eq((double)x[4] * x[4] + (double)x[5] * x[5], 1.0, 1e-6);
    cr_assert_float_eq(x[4], -1.0f / sqrtf(5.0f), 1e-6);
}
