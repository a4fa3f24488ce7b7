/* Matrix ops on OpenBLAS: matmul (with transposes), linear, transpose.
 *
 * All matrices are contiguous row-major, so a matrix's leading dimension is its column count.
 * Backward passes are GEMMs too, with beta = 1 so they accumulate into the input grads.
 * OpenBLAS partitions a GEMM over the output, not over K, so a given thread count always
 * produces the same sums.
 */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "graph_internal.h"

static enum CBLAS_TRANSPOSE tr(int t)
{
    return t ? CblasTrans : CblasNoTrans;
}

/* CBLAS takes int sizes. */
static void assert_matrix(const struct invar_tensor *t)
{
    INVAR_ASSERT(t->ndim == 2 && invar_tensor_is_contiguous(t));
    INVAR_ASSERT(t->shape[0] <= INT_MAX && t->shape[1] <= INT_MAX);
}

/* ---- matmul: C (M, N) = op(A) (M, K) @ op(B) (K, N) ------------------------------------- */

struct matmul_ctx {
    int trans_a, trans_b;
};

static void matmul_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    const struct matmul_ctx *c = n->ctx;
    struct invar_tensor *a = n->in[0], *b = n->in[1], *y = n->out;
    const int M = (int)y->shape[0], N = (int)y->shape[1];
    const int K = (int)(c->trans_a ? a->shape[0] : a->shape[1]);
    const int lda = (int)a->shape[1], ldb = (int)b->shape[1];
    const float *dc = y->grad; // (M, N)
    if (a->grad) {
        if (!c->trans_a) /* dA (M, K) = dC op(B)^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, tr(!c->trans_b), M, K, N, 1.0f, dc, N, b->data,
                        ldb, 1.0f, a->grad, lda);
        else /* dA (K, M) = op(B) dC^T */
            cblas_sgemm(CblasRowMajor, tr(c->trans_b), CblasTrans, K, M, N, 1.0f, b->data, ldb, dc,
                        N, 1.0f, a->grad, lda);
    }
    if (b->grad) {
        if (!c->trans_b) /* dB (K, N) = op(A)^T dC */
            cblas_sgemm(CblasRowMajor, tr(!c->trans_a), CblasNoTrans, K, N, M, 1.0f, a->data, lda,
                        dc, N, 1.0f, b->grad, ldb);
        else /* dB (N, K) = dC^T op(A) */
            cblas_sgemm(CblasRowMajor, CblasTrans, tr(c->trans_a), N, K, M, 1.0f, dc, N, a->data,
                        lda, 1.0f, b->grad, ldb);
    }
}

struct invar_tensor *invar_matmul(struct invar_graph *g, struct invar_tensor *a,
                                  struct invar_tensor *b, int trans_a, int trans_b)
{
    assert_matrix(a);
    assert_matrix(b);
    const int64_t M = trans_a ? a->shape[1] : a->shape[0];
    const int64_t K = trans_a ? a->shape[0] : a->shape[1];
    const int64_t Kb = trans_b ? b->shape[1] : b->shape[0];
    const int64_t N = trans_b ? b->shape[0] : b->shape[1];
    INVAR_ASSERT(K == Kb);
    struct invar_tensor *y = graph_new(g, 2, (int64_t[]){M, N});
    cblas_sgemm(CblasRowMajor, tr(trans_a), tr(trans_b), (int)M, (int)N, (int)K, 1.0f, a->data,
                (int)a->shape[1], b->data, (int)b->shape[1], 0.0f, y->data, (int)N);
    struct invar_tensor *in[2] = {a, b};
    struct invar_node *n =
        graph_record(g, "matmul", y, in, 2, matmul_backward, sizeof(struct matmul_ctx));
    if (n) {
        struct matmul_ctx *c = n->ctx;
        c->trans_a = trans_a != 0;
        c->trans_b = trans_b != 0;
    }
    return y;
}

/* ---- linear: y (N, O) = x (N, I) @ w (O, I)^T + b (O) ------------------------------------ */
/* (I, O) are spelled Di, Do here: I is a macro of <complex.h>, which cblas.h pulls in. */

static void linear_backward(struct invar_graph *g, struct invar_node *n)
{
    struct invar_tensor *x = n->in[0], *w = n->in[1], *y = n->out;
    struct invar_tensor *b = n->n_in > 2 ? n->in[2] : NULL;
    const int N = (int)x->shape[0], Di = (int)x->shape[1], Do = (int)w->shape[0];
    const float *dy = y->grad; // (N, Do)
    if (x->grad)               /* dx (N, Di) = dy (N, Do) @ w (Do, Di) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, Di, Do, 1.0f, dy, Do, w->data, Di,
                    1.0f, x->grad, Di);
    if (w->grad) /* dw (Do, Di) = dy^T (Do, N) @ x (N, Di) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Do, Di, N, 1.0f, dy, Do, x->data, Di,
                    1.0f, w->grad, Di);
    if (b && b->grad) {
        /* db (Do) = column sums of dy, in double, rows in order. */
        double *restrict acc = graph_alloc(g, (size_t)Do * sizeof *acc); // (Do)
        for (int o = 0; o < Do; o++)
            acc[o] = 0;
        for (int i = 0; i < N; i++) {
            const float *restrict row = dy + (int64_t)i * Do;
            for (int o = 0; o < Do; o++)
                acc[o] += row[o];
        }
        for (int o = 0; o < Do; o++)
            b->grad[o] += (float)acc[o];
    }
}

struct invar_tensor *invar_linear(struct invar_graph *g, struct invar_tensor *x,
                                  struct invar_tensor *w, struct invar_tensor *b)
{
    assert_matrix(x);
    assert_matrix(w);
    const int64_t N = x->shape[0], Di = x->shape[1], Do = w->shape[0];
    INVAR_ASSERT(w->shape[1] == Di);
    struct invar_tensor *y = graph_new(g, 2, (int64_t[]){N, Do});
    float beta = 0.0f;
    if (b) {
        /* Start from the bias rows and let the GEMM add on top of them. */
        INVAR_ASSERT(b->numel == Do && invar_tensor_is_contiguous(b));
        for (int64_t i = 0; i < N; i++)
            memcpy(y->data + i * Do, b->data, (size_t)Do * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)Do, (int)Di, 1.0f, x->data,
                (int)Di, w->data, (int)Di, beta, y->data, (int)Do);
    struct invar_tensor *in[3] = {x, w, b};
    graph_record(g, "linear", y, in, b ? 3 : 2, linear_backward, 0);
    return y;
}

/* ---- transpose: y (N, M) = x (M, N)^T --------------------------------------------------- */

/* dst (cols, rows) += or = src (rows, cols)^T, in tiles so both sides stay in cache. */
#define TRANSPOSE_TILE 32

static void transpose_into(float *restrict dst, const float *restrict src, int64_t rows,
                           int64_t cols, int accumulate)
{
    for (int64_t i0 = 0; i0 < rows; i0 += TRANSPOSE_TILE)
        for (int64_t j0 = 0; j0 < cols; j0 += TRANSPOSE_TILE) {
            int64_t i1 = i0 + TRANSPOSE_TILE < rows ? i0 + TRANSPOSE_TILE : rows;
            int64_t j1 = j0 + TRANSPOSE_TILE < cols ? j0 + TRANSPOSE_TILE : cols;
            for (int64_t j = j0; j < j1; j++)
                for (int64_t i = i0; i < i1; i++) {
                    float v = src[i * cols + j];
                    dst[j * rows + i] = accumulate ? dst[j * rows + i] + v : v;
                }
        }
}

static void transpose_backward(struct invar_graph *g, struct invar_node *n)
{
    (void)g;
    struct invar_tensor *y = n->out;
    /* dx (M, N) += dy (N, M)^T */
    transpose_into(n->in[0]->grad, y->grad, y->shape[0], y->shape[1], 1);
}

struct invar_tensor *invar_transpose(struct invar_graph *g, struct invar_tensor *x)
{
    assert_matrix(x);
    struct invar_tensor *y = graph_new(g, 2, (int64_t[]){x->shape[1], x->shape[0]});
    transpose_into(y->data, x->data, x->shape[0], x->shape[1], 0);
    graph_record(g, "transpose", y, &x, 1, transpose_backward, 0);
    return y;
}
