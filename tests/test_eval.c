/* Evaluation on features: the weighted kNN of Wu et al. (cosine similarity, the k nearest vote
 * with weight exp(s/t)) on hand-made sets whose answers are worked out below, and the collapse
 * monitor on collapsed and orthogonal features. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "invar/train.h"

static void unit(float *row, double degrees, double scale)
{
    double a = degrees * M_PI / 180.0;
    row[0] = (float)(scale * cos(a));
    row[1] = (float)(scale * sin(a));
}

/* One query at angle 0, labelled 0. Class 0 has one neighbour at 0 degrees (s = 1); class 1 two
 * at +-60 degrees (s = 0.5 each); class 2 one at 180 degrees (s = -1), outside k = 3. Rows have
 * different lengths: only their directions count.
 *   t = 0.1: votes e^10 = 22026 (class 0) vs 2 e^5 = 297 (class 1): class 0 wins.
 *   t = 10:  votes e^0.1 = 1.105 vs 2 e^0.05 = 2.103: class 1 wins, as a plain majority would. */
Test(eval, knn_weighting_beats_majority)
{
    float train[4 * 2], test[2];
    unit(train + 0, 0, 3.0);
    unit(train + 2, 60, 0.5);
    unit(train + 4, -60, 2.0);
    unit(train + 6, 180, 1.0);
    unit(test, 0, 7.0);
    int32_t ytr[4] = {0, 1, 1, 2}, yte[1] = {0};
    struct invar_error err = {0};
    double top1 = -1, top5 = -1;
    cr_assert_eq(invar_knn_eval(train, ytr, 4, test, yte, 1, 2, 3, 3, 0.1, &top1, &top5, &err),
                 INVAR_OK, "%s", err.msg);
    cr_expect_eq(top1, 100.0);
    cr_expect_eq(top5, 100.0);
    cr_assert_eq(invar_knn_eval(train, ytr, 4, test, yte, 1, 2, 3, 3, 10.0, &top1, &top5, &err),
                 INVAR_OK, "%s", err.msg);
    cr_expect_eq(top1, 0.0, "t = 10 should let the two class-1 neighbours outvote class 0");
    cr_expect_eq(top5, 100.0); /* only three classes: the truth is second */

    /* k = 1 sees only the nearest neighbour, class 0, whatever t */
    cr_assert_eq(invar_knn_eval(train, ytr, 4, test, yte, 1, 2, 3, 1, 10.0, &top1, &top5, &err),
                 INVAR_OK);
    cr_expect_eq(top1, 100.0);
    /* k = 4 brings in class 2 at s = -1; at t = 0.1 its vote e^-10 changes nothing */
    cr_assert_eq(invar_knn_eval(train, ytr, 4, test, yte, 1, 2, 3, 4, 0.1, &top1, &top5, &err),
                 INVAR_OK);
    cr_expect_eq(top1, 100.0);
}

/* Seven classes; classes 0..5 have one neighbour each at 0, 10, 20, 30, 40, 50 degrees, so the
 * votes fall with the class id; class 6 has none. Queries at 0 degrees labelled 0 (rank 0),
 * 4 (rank 4: top-5 only), 5 (rank 5: neither) and 6 (no votes: neither).
 * top-1 = 1/4 = 25 %, top-5 = 2/4 = 50 %. */
Test(eval, knn_top5)
{
    float train[6 * 2], test[4 * 2];
    for (int c = 0; c < 6; c++)
        unit(train + 2 * c, 10.0 * c, 1.0 + c);
    for (int i = 0; i < 4; i++)
        unit(test + 2 * i, 0, 1.0);
    int32_t ytr[6] = {0, 1, 2, 3, 4, 5}, yte[4] = {0, 4, 5, 6};
    struct invar_error err = {0};
    double top1, top5;
    cr_assert_eq(invar_knn_eval(train, ytr, 6, test, yte, 4, 2, 7, 200, 0.07, &top1, &top5, &err),
                 INVAR_OK, "%s", err.msg);
    cr_expect_float_eq(top1, 25.0, 1e-12);
    cr_expect_float_eq(top5, 50.0, 1e-12);
}

Test(eval, knn_rejects_bad_arguments)
{
    float x[2] = {1, 0};
    int32_t y[1] = {0};
    struct invar_error err = {0};
    double top1, top5;
    cr_expect_eq(invar_knn_eval(x, y, 1, x, y, 1, 2, 1, 0, 0.07, &top1, &top5, &err),
                 INVAR_ERR_INVALID);
    cr_expect_eq(invar_knn_eval(x, y, 1, x, y, 1, 2, 1, 5, 0, &top1, &top5, &err),
                 INVAR_ERR_INVALID);
    cr_expect_eq(invar_knn_eval(x, y, 0, x, y, 1, 2, 1, 5, 0.07, &top1, &top5, &err),
                 INVAR_ERR_INVALID);
    cr_expect(err.msg[0] != 0);
}

Test(eval, collapse_std)
{
    /* every row points the same way (lengths differ): after normalisation all rows are equal */
    float collapsed[5 * 3];
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 3; j++)
            collapsed[i * 3 + j] = (float)((i + 1) * (j + 1));
    cr_expect_float_eq(invar_collapse_std(collapsed, 5, 3), 0.0, 1e-7);

    /* four orthogonal rows in 4-D (scaled): each column holds one 1 and three 0s after
     * normalisation, mean 1/4, sample variance (1 - 4/16) / 3 = 1/4, std 1/2 = 1/sqrt(dim) */
    float ortho[4 * 4] = {0};
    for (int i = 0; i < 4; i++)
        ortho[i * 4 + i] = (float)(i + 2);
    cr_expect_float_eq(invar_collapse_std(ortho, 4, 4), 0.5, 1e-7);

    /* two rows (1, 0) and (0, 1): column values {1, 0}, sample std sqrt(1/2) */
    float two[4] = {5, 0, 0, 0.5f};
    cr_expect_float_eq(invar_collapse_std(two, 2, 2), sqrt(0.5), 1e-7);
}
